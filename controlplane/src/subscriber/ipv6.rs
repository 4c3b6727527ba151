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

use std::time::Instant;

use super::{Core, MapOp, NcpRefusal, Notice, SessionKey};
use crate::ppp;

impl Core {
    /// Can a session get a prefix if it opens IPv6CP? (Then an exhausted
    /// IPv4 pool does not refuse it.)
    pub(super) fn ipv6_possible(&self, fixed_prefix: bool, pool: Option<&str>) -> bool {
        self.cfg.ppp.ipv6cp.is_some()
            && (fixed_prefix
                || pool.or(self.cfg.default_ipv6_pool.as_deref()).is_some_and(|p| self.ipv6_pools.has(p)))
    }

    /// IPv6CP opened: a prefix for the session, into the fast path, then
    /// announced.
    pub(super) fn ipv6_up(&mut self, now: Instant, key: SessionKey) {
        let Some(s) = self.sessions.get_mut(&key) else { return };
        let prefix = match s.ipv6.prefix {
            Some(p) => Some(p),
            None => match s.ipv6.granted_prefix {
                Some((p, len)) => self.ipv6_pools.reserve(p, len).then_some((p, len)),
                None => s
                    .ipv6
                    .granted_pool
                    .as_deref()
                    .or(self.cfg.default_ipv6_pool.as_deref())
                    .and_then(|pool| self.ipv6_pools.allocate(pool)),
            },
        };
        let Some((p, len)) = prefix else {
            s.ppp.close_ncp(now, ppp::Protocol::IPV6CP);
            *self.counters.dropped.entry("ipv6_no_prefix").or_default() += 1;
            let why = NcpRefusal::NoPrefix;
            self.notice(Notice::NcpRefused { key, protocol: ppp::Protocol::IPV6CP.0, why });
            return;
        };
        s.ipv6.prefix = Some((p, len));
        self.dhcpv6_ipv6_up(key);
        let Some(s) = self.sessions.get_mut(&key) else { return };
        s.network_up.get_or_insert(now);
        s.last_activity = now;
        if !s.ipv6.dhcpv6.dns.is_empty() {
            // DNS servers from the Access-Accept (RFC 6911), answered by
            // DHCPv6: the advertisements say there is other configuration
            // even when the configuration alone has none to give.
            s.ppp.set_ra_other_config(true);
        }
        s.ppp.set_ipv6_prefix(now, Some((p, len)));
        let delegated = s.ipv6.delegated;
        self.write_entry(key, MapOp::Ipv6Up);
        self.acct_network_up(key, None, Some((p, len)), delegated);
        self.reclock(key, now, now);
        self.notice(Notice::Ipv6Up { key, prefix: p, len });
    }

    /// IPv6CP left Opened: the prefix leaves the fast path and its pool.
    pub(super) fn ipv6_down(&mut self, now: Instant, key: SessionKey) {
        if !self.ipv6_release(key) {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&key) {
            s.ppp.set_ipv6_prefix(now, None);
        }
        self.write_entry(key, MapOp::Change);
    }

    /// Gives the session's prefix back (its entry is written by the
    /// caller); false if it held none.
    pub(super) fn ipv6_release(&mut self, key: SessionKey) -> bool {
        // DHCPv6 bindings end with IPv6CP (a pooled delegated prefix goes
        // back to its pool).
        self.dhcpv6_ipv6_down(key);
        let Some(s) = self.sessions.get_mut(&key) else { return false };
        match s.ipv6.prefix.take() {
            Some((p, len)) => {
                self.ipv6_pools.release(p, len);
                true
            }
            None => false,
        }
    }
}
