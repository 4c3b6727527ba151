//! IPv6 subscribers: a prefix per session while IPv6CP is opened.
//!
//! The prefix is taken when IPv6CP opens, not at authentication: only then
//! is it known that the subscriber speaks IPv6 at all, so IPv4-only
//! subscribers hold none, and a pool that is exhausted refuses IPv6CP
//! alone (an IPv4 session stays up; an IPv6-only one ends, having no
//! network protocol left). It is released when IPv6CP goes down and when
//! the session ends. The prefix goes into the session's fast-path entry
//! (the data plane routes it through `lns_sub_v6_lpm` and checks sources
//! against it) and into the PPP session, which announces it by Router
//! Advertisement.

use std::net::Ipv6Addr;
use std::time::Instant;

use lns_bpf::abi;
use tracing::{info, warn};

use super::{Lns, SessionRecord};
use crate::l2tp::{SessionId, TunnelId};

/// A session's IPv6: what the backend granted and what it holds.
#[derive(Debug, Default)]
pub(super) struct Ipv6Record {
    /// A fixed prefix from the backend (RADIUS Framed-IPv6-Prefix).
    pub granted_prefix: Option<(Ipv6Addr, u8)>,
    /// The pool the backend named (RADIUS Framed-IPv6-Pool).
    pub granted_pool: Option<String>,
    /// The prefix the session holds now.
    pub prefix: Option<(Ipv6Addr, u8)>,
    /// A prefix routed to the subscriber's router (RADIUS
    /// Delegated-IPv6-Prefix), in the fast path while IPv6CP is open.
    pub delegated: Option<(Ipv6Addr, u8)>,
}

/// Can this session get a prefix if it opens IPv6CP? (Then an exhausted
/// IPv4 pool does not refuse it.)
pub(super) fn possible(
    ppp: &crate::ppp::SessionConfig,
    pools: &crate::daemon::aaa::Ipv6Pools,
    default_pool: Option<&str>,
    fixed_prefix: bool,
    pool: Option<&str>,
) -> bool {
    ppp.ipv6cp.is_some() && (fixed_prefix || pool.or(default_pool).is_some_and(|p| pools.has(p)))
}

/// Forwarding while either address family is up: IPCP and IPv6CP come and
/// go independently, and neither takes the other's traffic down.
pub(super) fn state_for(entry: &abi::Session) -> u32 {
    if entry.subscriber_ipv4().is_some() || entry.subscriber_ipv6_prefix().is_some() {
        abi::SessionState::Forwarding as u32
    } else {
        abi::SessionState::Control as u32
    }
}

impl Lns {
    /// IPv6CP opened: a prefix for the session, into the fast path, then
    /// announced.
    pub(super) fn ipv6_up(&mut self, now: Instant, tid: TunnelId, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(&(tid, sid)) else { return };
        let prefix = match s.ipv6.prefix {
            Some(p) => Some(p),
            None => match s.ipv6.granted_prefix {
                Some((p, len)) => self.ipv6_pools.reserve(p, len).then_some((p, len)),
                None => s
                    .ipv6
                    .granted_pool
                    .as_deref()
                    .or(self.default_ipv6_pool.as_deref())
                    .and_then(|pool| self.ipv6_pools.allocate(pool)),
            },
        };
        let Some((p, len)) = prefix else {
            warn!(user = ?s.username, "no IPv6 prefix for the subscriber: IPv6CP closed");
            *self.counters.dropped.entry("ipv6_no_prefix").or_default() += 1;
            s.ppp.close_ncp(now, crate::ppp::Protocol::IPV6CP);
            return;
        };
        s.ipv6.prefix = Some((p, len));
        s.entry.ipv6_prefix = p.octets();
        s.entry.ipv6_prefix_len = len;
        if let Some((d, dlen)) = s.ipv6.delegated {
            s.entry.delegated_prefix = d.octets();
            s.entry.delegated_prefix_len = dlen;
        }
        s.entry.state = state_for(&s.entry);
        let (slot, entry) = (s.slot, s.entry);
        if let Some(slot) = slot {
            if let Err(e) = self.table.update(slot, &entry) {
                self.counters.map_errors += 1;
                warn!(slot, error = %e, "writing the IPv6 prefix to the data plane");
                self.ipv6_release(tid, sid);
                if let Some(s) = self.sessions.get_mut(&(tid, sid)) {
                    s.ppp.close_ncp(now, crate::ppp::Protocol::IPV6CP);
                }
                return;
            }
        }
        if let Some(s) = self.sessions.get_mut(&(tid, sid)) {
            s.network_up.get_or_insert(now);
            s.last_activity = now;
            s.ppp.set_ipv6_prefix(now, Some((p, len)));
        }
        let delegated = self.sessions.get(&(tid, sid)).and_then(|s| s.ipv6.delegated);
        self.acct_start(now, tid, sid, None, Some((p, len)), delegated);
        info!(prefix = %p, len, "IPv6CP opened: forwarding, prefix announced");
    }

    /// IPv6CP left Opened: the prefix leaves the fast path and its pool.
    pub(super) fn ipv6_down(&mut self, now: Instant, tid: TunnelId, sid: SessionId) {
        self.ipv6_release(tid, sid);
        let Some(s) = self.sessions.get_mut(&(tid, sid)) else { return };
        s.ppp.set_ipv6_prefix(now, None);
        let (slot, entry) = (s.slot, s.entry);
        if let Some(slot) = slot {
            if let Err(e) = self.table.update(slot, &entry) {
                self.counters.map_errors += 1;
                warn!(slot, error = %e, "removing the IPv6 prefix from the data plane");
            }
        }
    }

    /// Gives the session's prefix back and clears it from its entry (not
    /// from the maps: the caller writes or removes the entry).
    fn ipv6_release(&mut self, tid: TunnelId, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(&(tid, sid)) else { return };
        if let Some((p, len)) = s.ipv6.prefix.take() {
            self.ipv6_pools.release(p, len);
        }
        s.entry.ipv6_prefix = [0; 16];
        s.entry.ipv6_prefix_len = 0;
        s.entry.delegated_prefix = [0; 16];
        s.entry.delegated_prefix_len = 0;
        s.entry.state = state_for(&s.entry);
    }

    /// A session that ended gives its prefix back.
    pub(super) fn ipv6_session_down(&mut self, rec: &SessionRecord) {
        if let Some((p, len)) = rec.ipv6.prefix {
            self.ipv6_pools.release(p, len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_family_keeps_the_session_forwarding() {
        let mut e = abi::Session::default();
        assert_eq!(state_for(&e), abi::SessionState::Control as u32);
        e.ipv4 = [198, 51, 100, 7];
        assert_eq!(state_for(&e), abi::SessionState::Forwarding as u32);
        e.ipv6_prefix = "2001:db8:100:7::".parse::<Ipv6Addr>().expect("prefix").octets();
        e.ipv6_prefix_len = 64;
        // IPCP down: IPv6 still forwards.
        e.ipv4 = [0; 4];
        assert_eq!(state_for(&e), abi::SessionState::Forwarding as u32);
        // IPv6CP down too: back to the control plane.
        e.ipv6_prefix_len = 0;
        assert_eq!(state_for(&e), abi::SessionState::Control as u32);
    }

    #[test]
    fn ipv6_is_possible_with_ipv6cp_and_a_prefix_source() {
        let mut ppp = crate::ppp::SessionConfig::server("lns");
        let pools = crate::daemon::aaa::Ipv6Pools::new(&[crate::daemon::aaa::Ipv6PoolEntry {
            name: "v6".into(),
            prefix: "2001:db8:100::/40".into(),
            length: 64,
        }])
        .expect("pools");
        assert!(!possible(&ppp, &pools, Some("v6"), false, None), "no IPv6CP");
        ppp.ipv6cp = Some(Default::default());
        assert!(possible(&ppp, &pools, Some("v6"), false, None));
        assert!(possible(&ppp, &pools, None, true, None), "a fixed prefix");
        assert!(!possible(&ppp, &pools, None, false, None));
        assert!(!possible(&ppp, &pools, Some("v6"), false, Some("other")), "the backend's pool wins");
    }
}
