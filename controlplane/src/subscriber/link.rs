//! The PPP side of a subscriber: frames in and out, authentication, the
//! address it is given, and its network protocols opening and closing.

use std::time::Instant;

use super::{AuthAnswer, AuthJob, Core, Effect, MapOp, NcpRefusal, Notice, NsFill, SessionKey, Subscriber};
use crate::daemon::aaa::{AuthContext, Authorization};
use crate::l2tp::header::{flags, Sequence};
use crate::ppp::{self, AuthDecision, NetworkConfig, SessionEvent};

impl Core {
    /// PPP arriving on the control path (LCP, authentication, NCPs, and
    /// anything while the session is not forwarding). IPv6 that is not
    /// router discovery (the data plane passes link-local and multicast
    /// IPv6 up) is dropped and counted; a malformed frame is silently
    /// discarded (RFC 1661 §5).
    pub(super) fn on_ppp_frame(&mut self, now: Instant, key: SessionKey, frame: &[u8]) {
        if self.dhcpv6_input(now, key, frame) {
            return;
        }
        let Some(s) = self.established_ppp(key) else { return };
        s.ppp_frames_rx += 1;
        if let Err(ppp::Error::NotNeighbourDiscovery) = s.ppp.handle_frame(now, frame) {
            self.drop_datagram("ipv6_not_nd");
        }
    }

    /// A session to hand PPP a frame or a timer. Once established, what
    /// PPP does without an event (echoes, router solicitations answered,
    /// its timers) goes to the store with the session's next change that
    /// matters, not at once: each would rewrite the session's record, every
    /// session's every few seconds. What matters comes with an event (a
    /// link or a network protocol up or down, authentication), and
    /// [`Core::on_ppp_event`] notes it. Before, it is noted (the store
    /// writes a negotiating session once, whatever is noted).
    pub(super) fn established_ppp(&mut self, key: SessionKey) -> Option<&mut Subscriber> {
        if self.sessions.get(&key)?.network_up.is_some() {
            self.sessions.untracked().get_mut(&key).map(|s| &mut **s)
        } else {
            self.sessions.get_mut(&key).map(|s| &mut **s)
        }
    }

    /// Sends a session's PPP frames to the LAC and acts on its events,
    /// until it has nothing more; then files its next deadline.
    pub(super) fn drive_ppp(&mut self, now: Instant, key: SessionKey) {
        loop {
            // As established_ppp, borrowing the sessions alone.
            let s = if self.sessions.get(&key).is_some_and(|s| s.network_up.is_some()) {
                self.sessions.untracked().get_mut(&key)
            } else {
                self.sessions.get_mut(&key)
            };
            let Some(s) = s else { return };
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| s.ppp.poll_transmit()).collect();
            let events: Vec<SessionEvent> = std::iter::from_fn(|| s.ppp.poll_event()).collect();
            if frames.is_empty() && events.is_empty() {
                let next = s.ppp.poll_timeout();
                if next != s.timer {
                    if let Some(old) = s.timer {
                        self.ppp_timers.remove(&(old, key));
                    }
                    if let Some(new) = next {
                        self.ppp_timers.insert((new, key));
                    }
                    s.timer = next;
                }
                return;
            }
            // §5.4: a session that asked for sequencing gets Ns on our PPP
            // frames too, from the counter the data plane numbers IP with.
            let sequenced = s.link.sequencing;
            for f in frames {
                let sequence = sequenced.then_some(Sequence { ns: 0, nr: 0 });
                // P bit: PPP control frames go ahead of data at the LAC (§3.1).
                let Some(t) = self.endpoint.encapsulate(key.tunnel, key.session, &f, sequence, true) else {
                    continue;
                };
                let ns = sequenced.then(|| NsFill { key, offset: ns_offset(&t.payload) });
                let from = self.peer_local.get(&t.destination).copied();
                self.effects.push_back(Effect::Send(super::Datagram {
                    to: t.destination,
                    from,
                    source_port: t.source_port,
                    payload: t.payload,
                    ns,
                }));
            }
            for ev in events {
                self.on_ppp_event(now, key, ev);
            }
        }
    }

    fn on_ppp_event(&mut self, now: Instant, key: SessionKey, ev: SessionEvent) {
        let Some(s) = self.sessions.get_mut(&key) else { return };
        match ev {
            SessionEvent::LinkUp { peer, .. } => {
                // What the subscriber can receive: its MRU, but no more
                // than the access link carries (our own MRU, derived from
                // it), and compressed headers if it asked for them
                // (written with the next change of the entry).
                s.link.mtu = peer.mru.min(s.mru);
                s.link.acfc = peer.acfc;
                s.link.pfc = peer.pfc;
            }
            SessionEvent::AuthRequest(request) => {
                // The backend answers in its own time (handle_auth_answer).
                s.auth_seq += 1;
                let seq = s.auth_seq;
                let context = self.context_of(key, &self.sessions[&key]);
                self.effects.push_back(Effect::Authenticate(Box::new(AuthJob {
                    key,
                    seq,
                    request,
                    context,
                })));
            }
            SessionEvent::Authenticated { .. } => {}
            SessionEvent::NetworkUp(NetworkConfig::Ipv4 { peer, .. }) => {
                if s.ipv4.is_none() {
                    // An IPv6-only session (no IPv4 address was left): IPCP
                    // goes, IPv6CP carries the session.
                    s.ppp.close_ncp(now, ppp::Protocol::IPCP);
                    let why = NcpRefusal::NoAddress;
                    self.notice(Notice::NcpRefused { key, protocol: ppp::Protocol::IPCP.0, why });
                    return;
                }
                if s.ipv4 != Some(peer) {
                    // IPCP only acknowledges the address we assigned; any
                    // other must not reach the fast path.
                    s.ppp.close(now, None);
                    let why = NcpRefusal::NotAssigned;
                    self.notice(Notice::NcpRefused { key, protocol: ppp::Protocol::IPCP.0, why });
                    return;
                }
                s.ipv4_forwarding = true;
                s.network_up.get_or_insert(now);
                s.last_activity = now;
                let mtu = s.link.mtu;
                self.write_entry(key, MapOp::Ipv4Up);
                self.acct_network_up(key, Some(peer), None, None);
                self.reclock(key, now, now);
                self.notice(Notice::Ipv4Up { key, address: peer, mtu });
            }
            SessionEvent::NetworkUp(NetworkConfig::Ipv6 { .. }) => self.ipv6_up(now, key),
            SessionEvent::NetworkDown(proto) => {
                if proto == ppp::Protocol::IPV6CP {
                    self.ipv6_down(now, key);
                } else if proto == ppp::Protocol::IPCP && s.ipv4_forwarding {
                    // Renegotiation: IPv4 goes back through us until IPCP
                    // reopens; IPv6 keeps forwarding if it is up.
                    s.ipv4_forwarding = false;
                    self.write_entry(key, MapOp::Change);
                }
                self.notice(Notice::NcpDown { key, protocol: proto.0 });
            }
            // A client's event: the LNS announces prefixes, it learns none.
            SessionEvent::Ipv6AddressUp { .. } => {}
            SessionEvent::EchoFailure { unanswered } => self.notice(Notice::EchoFailure { key, unanswered }),
            SessionEvent::LinkDown { cause } => {
                s.link_down = Some(cause.code.0);
                if let Some(acct) = s.acct.as_mut() {
                    acct.cause(super::reason::terminate_cause_of_link_down(&cause));
                }
                self.notice(Notice::LinkDown { key, code: cause.code.0, message: cause.message.clone() });
                let rc = super::reason::cdn_of_link_down(&cause);
                let ppp_cause = Some(cause.to_avp_value());
                let _ =
                    self.endpoint.close_session_with_ppp_cause(now, key.tunnel, key.session, rc, ppp_cause);
            }
        }
    }

    /// A backend's answer: an address for an accepted subscriber (its
    /// fixed one, or from its pool), then the result to PPP. An answer for
    /// a session that is gone, or that asked again since, is dropped.
    pub fn handle_auth_answer(&mut self, now: Instant, a: AuthAnswer) {
        let key = a.key;
        let fresh = self.sessions.get(&key).is_some_and(|s| s.auth_seq == a.seq);
        if !fresh {
            self.notice(Notice::StaleAuthAnswer { key });
            return;
        }
        let user = String::from_utf8_lossy(&a.request.username).into_owned();
        let (class, interim) = (a.authorization.class.clone(), a.authorization.interim_interval);
        let rates = super::Rates::from(a.authorization.rates);
        let Authorization {
            mut decision,
            ipv4: fixed,
            pool,
            session_timeout,
            idle_timeout,
            ipv6_prefix,
            ipv6_pool,
            delegated_prefix,
            dns,
            dns_ipv6,
            ..
        } = a.authorization;
        let pool = pool.or_else(|| self.cfg.default_pool.clone());
        let ipv6_possible = self.ipv6_possible(ipv6_prefix.is_some(), ipv6_pool.as_deref());
        let Some(s) = self.sessions.get_mut(&key) else { return };
        if decision.accept && s.ipv4.is_none() {
            let address = match fixed {
                Some(a) => self.pools.reserve(a).then_some(a),
                None => pool.as_deref().and_then(|p| self.pools.allocate(p)),
            };
            match address {
                Some(a) => {
                    s.ipv4 = Some(a);
                    s.ppp.set_peer_ipv4(a);
                }
                // IPv6 may still carry the session (its prefix is taken
                // when IPv6CP opens); IPCP then gets no address.
                None => {
                    self.effects.push_back(Effect::Notice(Notice::NoIpv4Address {
                        key,
                        user: user.clone(),
                        ipv6_only: ipv6_possible,
                    }));
                    if !ipv6_possible {
                        decision = AuthDecision::reject("No address available");
                    }
                }
            }
        }
        let accepted = decision.accept;
        if accepted {
            s.username = Some(user.as_str().into());
            s.pool = pool.as_deref().map(Into::into);
            s.rates = rates;
            s.session_timeout = session_timeout;
            s.idle_timeout = idle_timeout;
            // Taken when IPv6CP opens (see the ipv6 module).
            s.ipv6.granted_prefix = ipv6_prefix;
            s.ipv6.granted_pool = ipv6_pool.map(String::into_boxed_str);
            s.ipv6.delegated = delegated_prefix;
            if dns_ipv6 != s.ipv6.dhcpv6.dns {
                // Written only when it changes: the bindings stay out of
                // memory for the links that have none.
                s.ipv6.dhcpv6.dns = dns_ipv6;
            }
            if let Some(&primary) = dns.first() {
                s.ppp.set_peer_dns(Some(primary), dns.get(1).copied());
            }
        }
        s.ppp.auth_result(now, decision);
        self.notice(Notice::Authentication {
            key,
            user,
            method: a.request.method,
            proxied: a.request.proxied,
            accepted,
        });
        if accepted {
            self.acct_begin(key, &a.request.username, class, interim);
            // Its timeouts (a reauthentication may change them).
            self.reclock(key, now, now);
        }
        self.drive_ppp(now, key);
        self.pump(now);
    }

    /// What the LNS knows of a call, as backends and RADIUS see it.
    pub(super) fn context_of(&self, key: SessionKey, s: &Subscriber) -> AuthContext {
        let t = self.tunnels.get(&key.tunnel);
        AuthContext {
            tunnel_id: key.tunnel.0,
            session_id: key.session.0,
            lac: t.map_or(self.cfg.listen, |t| t.peer),
            local: t.map_or(self.cfg.listen, |t| std::net::SocketAddr::new(t.local, self.cfg.listen.port())),
            lac_hostname: self
                .endpoint
                .tunnel(key.tunnel)
                .map(|t| t.peer_host_name().to_vec())
                .unwrap_or_default(),
            info: s.info.get(),
        }
    }
}

/// Where Ns sits in a data message this LNS built (§3.1: flags and
/// version, the Length if L is set, tunnel and session ids, then Ns).
pub(super) fn ns_offset(payload: &[u8]) -> usize {
    let f = payload.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    if f & flags::LENGTH != 0 {
        8
    } else {
        6
    }
}
