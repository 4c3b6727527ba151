//! Per-subscriber rate limits: which rates a session gets, how they go
//! into its data-plane entry, and the slow path's own policing.
//!
//! A session's rate each way is, first to last: what its backend granted
//! (the users file's `rate_down`/`rate_up`, RADIUS WISPr-Bandwidth-Max-*
//! or the configured "down/up" attribute) or a CoA-Request set since,
//! then its pool's `rate_down`/`rate_up`, then `[ppp] rate_down`/`rate_up`.
//! 0 is no limit. The workers enforce the rates written in the entry
//! (kbit/s and a bucket depth); the exception path, which carries what
//! the fast path did not, polices each session with a bucket of its own
//! at the same rate ([`Core::police_slow_path`]).

use std::time::Instant;

use lns_bpf::abi;
use lns_bpf::police::{default_burst, Bucket, Limit};
use serde::{Deserialize, Serialize};

use super::{Core, SessionKey, Subscriber};

/// The smallest bucket: ten full-size packets, so a slow subscriber's TCP
/// still gets a window through.
pub const MIN_BURST: u32 = 15_000;

/// Defaults of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDefaults {
    /// `[ppp] rate_down`, `rate_up`: bits per second, 0 for none.
    pub down: u64,
    pub up: u64,
    /// `[ppp] rate_burst`: the bucket's depth in time at the rate, ms.
    pub burst_ms: u32,
}

impl Default for RateDefaults {
    fn default() -> Self {
        RateDefaults { down: 0, up: 0, burst_ms: 100 }
    }
}

/// A session's rates, bits per second; None: not set at this level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub down: Option<u64>,
    pub up: Option<u64>,
}

impl Rates {
    /// These over `under` where unset.
    pub fn or(self, under: Rates) -> Rates {
        Rates { down: self.down.or(under.down), up: self.up.or(under.up) }
    }
}

impl From<lns_radius::rate::RateLimits> for Rates {
    fn from(r: lns_radius::rate::RateLimits) -> Self {
        Rates { down: r.down, up: r.up }
    }
}

/// Bits per second as the entry's kbit/s: rounded up, so a limit never
/// becomes none; saturating.
pub fn kbps(bps: u64) -> u32 {
    bps.div_ceil(1000).min(u64::from(u32::MAX)) as u32
}

/// The slow path's buckets of one session (not kept across a restart: a
/// restored session starts with full buckets).
#[derive(Debug, Clone, Copy, Default)]
pub struct SlowPathBuckets {
    /// The buckets' clock starts at the first packet.
    pub epoch: Option<Instant>,
    pub down: Bucket,
    pub up: Bucket,
}

impl Core {
    /// The rates a session gets: its own (backend, CoA), then its pool's,
    /// then the configured defaults.
    pub(super) fn effective_rates(&self, s: &Subscriber) -> (u64, u64) {
        let pool = s.pool.as_deref().and_then(|p| self.cfg.pools.iter().find(|e| e.name == p));
        let pool = pool.map_or(Rates::default(), |p| Rates {
            down: p.rate_down.map(|r| r.0),
            up: p.rate_up.map(|r| r.0),
        });
        let r = s.rates.or(pool);
        (r.down.unwrap_or(self.cfg.rates.down), r.up.unwrap_or(self.cfg.rates.up))
    }

    /// The limits of the entry for `s`.
    pub(super) fn limits(&self, s: &Subscriber) -> (Limit, Limit) {
        let (down, up) = self.effective_rates(s);
        let limit = |bps: u64| {
            let k = kbps(bps);
            Limit::new(k, if k == 0 { 0 } else { default_burst(k, self.cfg.rates.burst_ms, MIN_BURST) })
        };
        (limit(down), limit(up))
    }

    /// Puts the session's rate limits in its entry.
    pub(super) fn set_entry_rates(&self, entry: &mut abi::Session, s: &Subscriber) {
        let (down, up) = self.limits(s);
        entry.rate_down_kbps = down.kbps;
        entry.burst_down = down.burst;
        entry.rate_up_kbps = up.kbps;
        entry.burst_up = up.burst;
    }

    /// The slow path's policer: true when `len` bytes of subscriber IP of
    /// `key` may pass now, one way. Over the limit the packet is dropped
    /// and counted (`policed_up`, `policed_down` of the slow path).
    pub(super) fn police_slow_path(
        &mut self,
        now: Instant,
        key: SessionKey,
        upstream: bool,
        len: usize,
    ) -> bool {
        let Some(s) = self.sessions.get(&key) else { return true };
        let (down, up) = self.limits(s);
        let limit = if upstream { up } else { down };
        if !limit.is_limited() {
            return true;
        }
        // Untracked by the store: the buckets are not in its records, and
        // a write per packet would be the slow path's whole cost.
        let Some(s) = self.sessions.untracked().get_mut(&key) else { return true };
        let buckets = s.slow_path_buckets.get_or_insert_with(Default::default);
        let epoch = *buckets.epoch.get_or_insert(now);
        let ns = now.saturating_duration_since(epoch).as_nanos() as u64;
        let bucket = if upstream { &mut buckets.up } else { &mut buckets.down };
        if bucket.police(ns, len as u64, limit) {
            return true;
        }
        let name = if upstream { "policed_up" } else { "policed_down" };
        *self.counters.slow_path.entry(name).or_default() += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbit_rounds_up_and_saturates() {
        assert_eq!(kbps(0), 0);
        assert_eq!(kbps(1), 1);
        assert_eq!(kbps(512_000), 512);
        assert_eq!(kbps(2_000_001), 2001);
        assert_eq!(kbps(u64::MAX), u32::MAX);
    }

    #[test]
    fn a_session_s_own_rates_come_first() {
        let own = Rates { down: Some(1), up: None };
        let pool = Rates { down: Some(2), up: Some(3) };
        assert_eq!(own.or(pool), Rates { down: Some(1), up: Some(3) });
    }
}
