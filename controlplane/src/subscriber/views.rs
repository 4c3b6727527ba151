//! What `lnsctl` asks of the core: tunnels and sessions as rows, the
//! counters, and the operator's kills. The driver adds what only it knows
//! (data-plane slots, the socket's counters, XDP verdicts).

use std::net::SocketAddr;
use std::time::Instant;

use super::{Core, EndReason, Notice, SessionKey};
use crate::ctl::{Request, Response, SessionRow, Stats, TunnelRow};
use crate::l2tp::avp::{error_code, stopccn};
use crate::l2tp::session::SessionState as CallState;
use crate::l2tp::{ResultCode, SessionId, TunnelId, TunnelState};

pub(super) fn tunnel_state_name(s: TunnelState) -> &'static str {
    match s {
        TunnelState::Idle => "idle",
        TunnelState::WaitCtlReply => "wait-ctl-reply",
        TunnelState::WaitCtlConn => "wait-ctl-conn",
        TunnelState::Established => "established",
        TunnelState::Closing => "closing",
        TunnelState::Closed => "closed",
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Core {
    /// An operator's request (`Request::Radius` is the driver's).
    pub fn handle_request(&mut self, now: Instant, req: Request) -> Response {
        let response = match req {
            Request::TunnelList => Response::Tunnels { tunnels: self.tunnel_rows(now) },
            Request::SessionList => Response::Sessions { sessions: self.session_rows(now) },
            Request::ShowStats => Response::Stats { stats: self.stats(now) },
            Request::Radius => Response::Radius { radius: Default::default() },
            // The driver reads the file and calls Core::reconfigure.
            Request::Reload | Request::Shutdown => Response::Error { message: "the driver's".into() },
            Request::TunnelKill { tunnel_id } => self.kill_tunnel(now, TunnelId(tunnel_id)),
            Request::SessionKill { session_id, tunnel_id } => self.kill_session(now, session_id, tunnel_id),
        };
        self.pump(now);
        response
    }

    fn kill_tunnel(&mut self, now: Instant, tid: TunnelId) -> Response {
        let rc =
            ResultCode::with_error(stopccn::GENERAL_REQUEST, error_code::NO_ERROR, "closed by the operator");
        // Untracked: the cause only matters to the Stops of sessions the
        // StopCCN ends, whose records are removed (or written whole once
        // more when they wait for their Stop); noting every session of
        // the tunnel would write each again just before it goes.
        for (_, s) in self.sessions.untracked().iter_mut().filter(|(k, _)| k.tunnel == tid) {
            if let Some(a) = s.acct.as_mut() {
                a.cause(EndReason::Operator.acct_terminate_cause());
            }
        }
        match self.endpoint.close_tunnel(now, tid, rc) {
            Ok(()) => {
                self.notice(Notice::TunnelClosing { tunnel: tid, by: EndReason::Operator });
                Response::Killed { tunnel_id: tid.0, session_id: None }
            }
            Err(e) => Response::Error { message: format!("tunnel {}: {e}", tid.0) },
        }
    }

    /// Session ids are unique per tunnel only: without a tunnel the id
    /// must name one session.
    fn kill_session(&mut self, now: Instant, session_id: u16, tunnel_id: Option<u16>) -> Response {
        let sid = SessionId(session_id);
        let mut candidates: Vec<TunnelId> = self
            .endpoint
            .tunnel_ids()
            .filter(|t| tunnel_id.is_none_or(|want| t.0 == want))
            .filter(|t| self.endpoint.tunnel(*t).is_some_and(|t| t.session(sid).is_some()))
            .collect();
        candidates.sort();
        let tid = match candidates.as_slice() {
            [] => return Response::Error { message: format!("no session {session_id}") },
            [t] => *t,
            many => {
                let list: Vec<String> = many.iter().map(|t| t.0.to_string()).collect();
                return Response::Error {
                    message: format!(
                        "session id {session_id} exists in tunnels {}: say which with --tunnel",
                        list.join(", ")
                    ),
                };
            }
        };
        let key = SessionKey::new(tid, sid);
        if let Some(a) = self.sessions.get_mut(&key).and_then(|s| s.acct.as_mut()) {
            a.cause(EndReason::Operator.acct_terminate_cause());
        }
        let rc = EndReason::Operator.cdn_result();
        match self.endpoint.close_session(now, tid, sid, rc) {
            Ok(()) => {
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.ending.get_or_insert(EndReason::Operator);
                }
                self.notice(Notice::Ending { key, reason: EndReason::Operator });
                Response::Killed { tunnel_id: tid.0, session_id: Some(session_id) }
            }
            Err(e) => Response::Error { message: format!("session {session_id}: {e}") },
        }
    }

    pub fn tunnel_rows(&self, now: Instant) -> Vec<TunnelRow> {
        let mut ids: Vec<TunnelId> = self.endpoint.tunnel_ids().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| {
                let t = self.endpoint.tunnel(id)?;
                let rec = self.tunnels.get(&id);
                Some(TunnelRow {
                    tunnel_id: id.0,
                    peer_tunnel_id: t.peer_id().0,
                    peer: rec.map(|r| r.peer.to_string()).unwrap_or_default(),
                    local: rec
                        .map(|r| SocketAddr::new(r.local, self.cfg.listen.port()).to_string())
                        .unwrap_or_default(),
                    peer_host_name: lossy(t.peer_host_name()),
                    state: tunnel_state_name(t.state()).to_string(),
                    sessions: t.session_count(),
                    age_secs: rec.map(|r| now.saturating_duration_since(r.since).as_secs()).unwrap_or(0),
                    retransmissions: t.reliable().retransmissions,
                    srtt_ms: t.reliable().srtt().map(|d| d.as_secs_f64() * 1000.0),
                    rto_ms: t.reliable().rto().as_secs_f64() * 1000.0,
                })
            })
            .collect()
    }

    /// Every session of every tunnel; `slot` is the driver's to fill, and
    /// `dataplane_state` says what the core last wrote.
    pub fn session_rows(&self, now: Instant) -> Vec<SessionRow> {
        let mut rows = Vec::new();
        for id in self.endpoint.tunnel_ids() {
            let Some(t) = self.endpoint.tunnel(id) else { continue };
            let peer = self.tunnels.get(&id).map(|r| r.peer.to_string()).unwrap_or_default();
            for s in t.sessions() {
                let rec = self.sessions.get(&SessionKey::new(id, s.local_id));
                let packed = rec.map(|r| r.info.get());
                let info = packed.as_ref().unwrap_or(s.info());
                let forwarding = rec.map(|r| r.ipv4_forwarding || r.ipv6.prefix.is_some());
                rows.push(SessionRow {
                    tunnel_id: id.0,
                    session_id: s.local_id.0,
                    peer_tunnel_id: t.peer_id().0,
                    peer_session_id: s.peer_id.0,
                    peer: peer.clone(),
                    state: match s.state {
                        CallState::WaitConnect => "wait-connect",
                        CallState::WaitReply => "wait-reply",
                        CallState::Established => "established",
                    }
                    .to_string(),
                    slot: None,
                    dataplane_state: forwarding.map(|f| if f { "forwarding" } else { "control" }.to_string()),
                    sequencing: info.sequencing_required,
                    calling_number: info.calling_number.as_deref().map(lossy),
                    called_number: info.called_number.as_deref().map(lossy),
                    tx_connect_speed: info.tx_connect_speed,
                    rx_connect_speed: info.rx_connect_speed,
                    ppp_frames_rx: rec.map(|r| r.ppp_frames_rx).unwrap_or(0),
                    ppp_phase: rec.map(|r| format!("{:?}", r.ppp.phase()).to_lowercase()),
                    username: rec.and_then(|r| r.username.as_deref().map(String::from)),
                    ipv4: rec.and_then(|r| r.ipv4).map(|a| a.to_string()),
                    ipv6_prefix: rec.and_then(|r| r.ipv6.prefix).map(|(p, l)| format!("{p}/{l}")),
                    delegated_prefix: rec
                        .filter(|r| r.ipv6.prefix.is_some())
                        .and_then(|r| r.ipv6.delegated)
                        .map(|(p, l)| format!("{p}/{l}")),
                    dhcpv6_address: rec
                        .and_then(|r| r.ipv6.dhcpv6.na.as_ref())
                        .filter(|na| na.committed)
                        .map(|na| na.address.to_string()),
                    age_secs: rec.map(|r| now.saturating_duration_since(r.since).as_secs()).unwrap_or(0),
                    acct_session_id: rec.and_then(|r| r.acct.as_ref()).map(|a| a.session_id.clone()),
                    mtu: rec.map(|r| r.link.mtu),
                    slow_path: rec.map(|r| *r.slow_path).unwrap_or_default(),
                    rate_down: rec.map_or(0, |r| self.effective_rates(r).0),
                    rate_up: rec.map_or(0, |r| self.effective_rates(r).1),
                    policed: Default::default(),
                    fast_path: Default::default(),
                });
            }
        }
        rows.sort_by_key(|r| (r.tunnel_id, r.session_id));
        rows
    }

    /// The core's counters; the data plane's and the socket's are the
    /// driver's to fill.
    pub fn stats(&self, now: Instant) -> Stats {
        let c = &self.counters;
        Stats {
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tunnels: self.endpoint.tunnel_count(),
            tunnels_half_open: self.endpoint.half_open_count(),
            sessions: self.sessions.len(),
            tunnels_up_total: c.tunnels_up_total,
            tunnels_down_total: c.tunnels_down_total,
            sessions_up_total: c.sessions_up_total,
            sessions_down_total: c.sessions_down_total,
            datagrams_rx: c.datagrams_rx,
            control_rx: c.control_rx,
            data_rx: c.data_rx,
            map_errors: c.map_errors,
            addresses_in_use: self.pools.in_use(),
            ipv6_prefixes_in_use: self.ipv6_pools.in_use(),
            dropped: c.dropped.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            sessions_down: c.sessions_down.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            tunnels_down: c.tunnels_down.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            sessions_restored: c.sessions_restored,
            sessions_reconciled: c.sessions_reconciled,
            tunnels_restored: c.tunnels_restored,
            sessions_reconciled_by: c.reconciled.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            slow_path: c.slow_path.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Stats::default()
        }
    }
}
