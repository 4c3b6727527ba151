//! The L2TP side of a subscriber: a call is accepted (ICRQ), connects
//! (ICCN) and PPP starts on it, and it leaves (CDN either way, StopCCN, a
//! tunnel that stopped answering).

use std::time::Instant;

use super::accounting::Counters;
use super::{Calling, Core, DownReason, Effect, Link, MapOp, Notice, SessionKey, Subscriber};
use crate::l2tp::avp::proxy_authen;
use crate::l2tp::{Event, SessionId, SessionInfo, TunnelId};
use crate::ppp::{self, ProxyAuth, ProxyLcp, DEFAULT_MRU};

impl Core {
    pub(super) fn on_l2tp_event(&mut self, now: Instant, tid: TunnelId, ev: Event) {
        match ev {
            Event::TunnelUp { peer_tunnel_id, peer_host_name } => {
                self.counters.tunnels_up_total += 1;
                self.notice(Notice::TunnelUp {
                    tunnel: tid,
                    peer_tunnel_id: peer_tunnel_id.0,
                    host_name: String::from_utf8_lossy(&peer_host_name).into_owned(),
                });
            }
            Event::TunnelDown { reason } => {
                self.counters.tunnels_down_total += 1;
                *self.counters.tunnels_down.entry(tunnel_down_cause(&reason)).or_default() += 1;
                self.notice(Notice::TunnelDown { tunnel: tid, reason });
                // Its sessions were reported down before; anything left is
                // removed all the same.
                let left: Vec<SessionKey> = self
                    .sessions
                    .keys()
                    .chain(self.calling.keys())
                    .filter(|k| k.tunnel == tid)
                    .copied()
                    .collect();
                for key in left {
                    if let Some(a) = self.sessions.get_mut(&key).and_then(|s| s.acct.as_mut()) {
                        a.cause(lns_radius::attribute::acct_terminate_cause::LOST_CARRIER);
                    }
                    self.session_down(now, key, DownReason::TunnelDown);
                }
            }
            Event::IncomingCall { session_id, peer_session_id } => {
                self.incoming_call(SessionKey::new(tid, session_id), peer_session_id)
            }
            Event::SessionUp { session_id, peer_session_id, info } => {
                self.session_up(now, SessionKey::new(tid, session_id), peer_session_id, info)
            }
            Event::SessionDown { session_id, cause } => {
                let key = SessionKey::new(tid, session_id);
                if let Some(a) = self.sessions.get_mut(&key).and_then(|s| s.acct.as_mut()) {
                    a.cause(super::reason::terminate_cause_of_down(&cause));
                }
                self.session_down(now, key, DownReason::Cdn(cause));
            }
            // Reported by the L2TP layer; nothing here depends on them.
            Event::WanErrorNotify { .. } | Event::SetLinkInfo { .. } => {}
            Event::ConnectSpeedUpdate { updates } => {
                for u in updates {
                    if let Some(s) = self.sessions.get_mut(&SessionKey::new(tid, u.remote_session_id)) {
                        s.info.update(|i| {
                            i.tx_connect_speed = Some(u.tx_bps);
                            i.rx_connect_speed = Some(u.rx_bps);
                        });
                    }
                }
            }
        }
    }

    /// ICRQ accepted: the call goes into the data plane now, in state
    /// Control, so that its first PPP frames (which may overtake the
    /// ICCN) reach us; if that fails, ICCN tries again.
    fn incoming_call(&mut self, key: SessionKey, peer_sid: SessionId) {
        let Some(peer_tunnel) = self.endpoint.tunnel(key.tunnel).map(|t| t.peer_id()) else { return };
        let link = Link { mtu: DEFAULT_MRU, acfc: false, pfc: false, sequencing: false };
        if let Some(entry) = self.entry_of(key, peer_tunnel, peer_sid, link) {
            self.effects.push_back(Effect::WriteSession { key, entry, op: MapOp::Call });
        }
        self.calling.insert(key, Calling::default());
    }

    /// ICCN received: the session's entry is written (still Control: its
    /// PPP negotiation reaches us until a network protocol opens) and PPP
    /// starts.
    fn session_up(&mut self, now: Instant, key: SessionKey, peer_sid: SessionId, info: Box<SessionInfo>) {
        if !self.tunnels.contains_key(&key.tunnel) {
            return;
        }
        let Some(peer_tunnel_id) = self.endpoint.tunnel(key.tunnel).map(|t| t.peer_id()) else { return };
        let early_ppp = self.calling.remove(&key).map(|c| c.early_ppp).unwrap_or_default();
        let mru = self.session_mru(key.tunnel, info.sequencing_required);
        let link = Link { mtu: mru, acfc: false, pfc: false, sequencing: info.sequencing_required };
        self.counters.sessions_up_total += 1;
        let up = Notice::SessionUp {
            key,
            peer_session_id: peer_sid.0,
            sequencing: info.sequencing_required,
            calling_number: String::from_utf8_lossy(info.calling_number.as_deref().unwrap_or_default())
                .into_owned(),
        };
        let config = self.ppp_config(mru);
        let mut ppp = ppp::Session::new(config, self.link_rng());
        match proxy_of(&info) {
            Some((lcp, auth)) => ppp.open_with_proxy(now, &lcp, auth),
            None => ppp.open(now),
        }
        self.sessions.insert(
            key,
            Box::new(Subscriber {
                peer_tunnel_id,
                peer_session_id: peer_sid,
                info: (&*info).into(),
                since: now,
                ppp_frames_rx: 0,
                ppp: Box::new(ppp),
                link,
                mru,
                slow_path: Default::default(),
                username: None,
                ipv4: None,
                ipv4_forwarding: false,
                ipv6: Default::default(),
                network_up: None,
                traffic: 0,
                last_activity: now,
                ending: None,
                auth_seq: 0,
                session_timeout: None,
                idle_timeout: None,
                acct: None,
                pool: None,
                rates: Default::default(),
                slow_path_buckets: Default::default(),
                link_down: None,
                timer: None,
                clock: None,
            }),
        );
        // The entry first: the notice names its slot.
        self.write_entry(key, MapOp::Connect);
        self.notice(up);
        for frame in &early_ppp {
            self.on_ppp_frame(now, key, frame);
        }
        self.drive_ppp(now, key);
    }

    /// The PPP configuration of a new link proposing `mru`, shared with
    /// the other links of that MRU.
    pub(super) fn ppp_config(&mut self, mru: u16) -> std::sync::Arc<ppp::SessionConfig> {
        if let Some(c) = self.ppp_configs.iter().find(|c| c.lcp.mru == mru) {
            return c.clone();
        }
        let mut config = self.cfg.ppp.clone();
        config.lcp.mru = mru;
        if config.credentials.is_none() {
            // As ppp::Session::new would for each link (else each copies it).
            config.lcp.accept_auth.clear();
        }
        let config = std::sync::Arc::new(config);
        self.ppp_configs.push(config.clone());
        config
    }

    /// The session is gone (or never connected): its entry leaves the data
    /// plane and its addresses their pools, after the Accounting Stop,
    /// which waits for the last counter sample.
    pub(super) fn session_down(&mut self, now: Instant, key: SessionKey, reason: DownReason) {
        if self.calling.remove(&key).is_some() {
            // A call that ended before ICCN.
            self.effects.push_back(Effect::RemoveSession { key });
        }
        let Some(rec) = self.sessions.remove(&key) else { return };
        if let Some(t) = rec.timer {
            self.ppp_timers.remove(&(t, key));
        }
        if let Some(t) = rec.clock {
            self.session_clock.remove(&(t, key));
        }
        self.counters.sessions_down_total += 1;
        *self.counters.sessions_down.entry(down_cause(&rec, &reason)).or_default() += 1;
        self.notice(Notice::SessionDown { key, reason, ppp_frames_rx: rec.ppp_frames_rx });
        let _ = now;
        if rec.acct.as_ref().is_some_and(|a| a.started() || a.start_pending) {
            self.stopping.insert(key, rec);
            self.effects.push_back(Effect::SampleCounters { keys: vec![key] });
        } else {
            self.release(key, rec);
        }
    }

    /// The last sample of a session that ended: its Stop, then its entry
    /// and addresses go.
    pub(super) fn session_stopped(&mut self, now: Instant, key: SessionKey, sample: Option<Counters>) {
        let Some(rec) = self.stopping.remove(&key) else { return };
        if let Some(acct) = rec.acct.as_ref().filter(|a| a.started()) {
            let context = self.context_of(key, &rec);
            let record = acct.record(super::AcctKind::Stop, now, sample.or(rec_sample(acct)), context);
            self.effects.push_back(Effect::Accounting(Box::new(record)));
        }
        self.release(key, rec);
    }

    fn release(&mut self, key: SessionKey, rec: Box<Subscriber>) {
        self.dhcpv6_unroute(key, &rec);
        self.effects.push_back(Effect::RemoveSession { key });
        self.sync_routes(key);
        if let Some(a) = rec.ipv4 {
            self.pools.release(a);
        }
        for (p, len) in Core::dhcpv6_pooled(&rec) {
            self.ipv6_pools.release(p, len);
        }
        if let Some((p, len)) = rec.ipv6.prefix {
            self.ipv6_pools.release(p, len);
        }
    }
}

/// Without a sample (no data plane), the Stop reports what the baseline
/// says: nothing.
fn rec_sample(acct: &super::accounting::Accounting) -> Option<Counters> {
    acct.baseline
}

/// The LAC's proxy LCP and authentication (RFC 2661 §4.4.5), if it sent
/// them; whether they are adopted is the PPP configuration's call.
fn proxy_of(info: &SessionInfo) -> Option<(ProxyLcp, Option<ProxyAuth>)> {
    let lcp = ProxyLcp {
        initial_received: info.initial_received_lcp_confreq.clone()?,
        last_sent: info.last_sent_lcp_confreq.clone()?,
        last_received: info.last_received_lcp_confreq.clone()?,
    };
    let username = info.proxy_authen_name.clone().unwrap_or_default();
    let identifier = info.proxy_authen_id.unwrap_or(0);
    let auth = match info.proxy_authen_type {
        Some(proxy_authen::PAP) => Some(ProxyAuth::Pap {
            identifier,
            username,
            password: info.proxy_authen_response.clone().unwrap_or_default(),
        }),
        Some(proxy_authen::CHAP) => Some(ProxyAuth::Chap {
            identifier,
            challenge: info.proxy_authen_challenge.clone().unwrap_or_default(),
            username,
            response: info.proxy_authen_response.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    Some((lcp, auth))
}

/// Why a session ended, as a metric's label: what the LNS decided, or
/// what it was told.
fn down_cause(rec: &Subscriber, reason: &DownReason) -> &'static str {
    if let Some(r) = rec.ending {
        return r.label();
    }
    match (reason, rec.link_down) {
        (DownReason::Cdn(c), _) if c.by_peer => "peer_cdn",
        (DownReason::Cdn(_), Some(code)) if code == ppp::DisconnectCode::LCP_ECHO_TIMEOUT.0 => {
            "lcp_echo_timeout"
        }
        (DownReason::Cdn(_), Some(_)) => "ppp_closed",
        (DownReason::Cdn(_), None) => "local_cdn",
        (DownReason::TunnelDown, _) => "tunnel_down",
        (DownReason::Stopping, _) => "shutdown",
    }
}

/// Why a tunnel went down, as a metric's label.
fn tunnel_down_cause(reason: &crate::l2tp::TunnelDownReason) -> &'static str {
    use crate::l2tp::TunnelDownReason as R;
    match reason {
        R::LocalClose(_) => "local_stopccn",
        R::PeerStopCcn(_) => "peer_stopccn",
        R::RetransmitLimit => "retransmit_limit",
        R::AuthenticationFailed => "authentication_failed",
        R::ProtocolError(_) => "protocol_error",
        R::TieBreakerLost => "tie_breaker_lost",
    }
}
