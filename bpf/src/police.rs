//! What the rate fields of a session entry mean: a token bucket per
//! direction, as the workers (and the control plane's slow path) enforce it.
//!
//! The bucket is kept in its GCRA form (ITU-T I.371, the "virtual
//! scheduling" algorithm): one number per bucket, the theoretical arrival
//! time (`tat`) of the next byte, in nanoseconds. A packet of `len` bytes
//! at `now` conforms when `max(tat, now) + len × 8/rate ≤ now + burst × 8/rate`,
//! and then moves `tat` to `max(tat, now) + len × 8/rate`. That is exactly
//! a token bucket of depth `burst` bytes filled at `rate`, in one word: so
//! several workers can share a bucket with one compare-and-swap and no lock
//! (see [`AtomicBucket`]), and a shaper knows when a packet over the limit
//! will conform (`max(tat, now) + len × 8/rate − burst × 8/rate`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds per byte at 1 kbit/s: 8 bits / 1000 bit/s = 8 ms.
const NS_PER_BYTE_AT_1KBPS: u64 = 8_000_000;

/// A rate limit as the session entry carries it: kbit/s and a depth in
/// bytes. `kbps == 0` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limit {
    pub kbps: u32,
    pub burst: u32,
}

impl Limit {
    pub fn new(kbps: u32, burst: u32) -> Limit {
        Limit { kbps, burst }
    }

    pub fn is_limited(&self) -> bool {
        self.kbps != 0
    }

    /// How long `bytes` take at the rate, in nanoseconds.
    #[inline]
    pub fn cost_ns(&self, bytes: u64) -> u64 {
        bytes.saturating_mul(NS_PER_BYTE_AT_1KBPS) / u64::from(self.kbps.max(1))
    }

    /// The bucket's depth in nanoseconds at the rate.
    #[inline]
    pub fn tolerance_ns(&self) -> u64 {
        self.cost_ns(u64::from(self.burst))
    }
}

/// The default depth of a bucket at `kbps`: what TCP needs to reach the
/// rate through a policer, about one round trip's worth of data at the rate
/// (a window arrives as a burst: ACK compression, slow start, offloads),
/// `burst_ms` of it, and never less than `floor` bytes (ten full-size
/// packets, so a slow subscriber still gets a window through). With 100 ms
/// the first 10 s of a flow at four times the rate get 1 % more than the
/// rate; Cisco's 1.5 s (`rate × 1.5 s`) would give 15 %.
pub fn default_burst(kbps: u32, burst_ms: u32, floor: u32) -> u32 {
    let bytes = u64::from(kbps) * 1000 / 8 * u64::from(burst_ms) / 1000;
    bytes.clamp(u64::from(floor), u64::from(u32::MAX)) as u32
}

/// The verdict of a bucket on one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: send now.
    Conform,
    /// Over the limit, within `delay` of the time it would conform, and
    /// counted in the bucket: send it at `at` (shaping).
    Later { at: u64 },
    /// Over the limit: drop.
    Exceed,
}

/// One bucket of a single owner (the slow path; tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Theoretical arrival time, ns on the owner's clock.
    pub tat: u64,
}

/// The bucket's arithmetic: the new `tat` if the packet is taken (now or
/// within `max_delay_ns`), and when it may leave.
#[inline]
fn decide(tat: u64, now: u64, len: u64, limit: Limit, max_delay_ns: u64) -> Option<(u64, u64)> {
    if tat <= now && len <= u64::from(limit.burst) {
        // The bucket is full and the packet fits in it: it conforms, and
        // one division (its cost) says where the bucket stands after it.
        // This is what every packet of a subscriber below its rate takes;
        // the general case below gives the same (the division rounds down,
        // so cost(len) <= cost(burst) when len <= burst).
        return Some((now.saturating_add(limit.cost_ns(len)), now));
    }
    let next = tat.max(now).saturating_add(limit.cost_ns(len));
    // When it conforms: its bucket has room from then on.
    let at = next.saturating_sub(limit.tolerance_ns()).max(now);
    (at - now <= max_delay_ns).then_some((next, at))
}

impl Bucket {
    /// Polices a packet of `len` bytes at `now` (ns): conform or exceed.
    pub fn police(&mut self, now: u64, len: u64, limit: Limit) -> bool {
        matches!(self.shape(now, len, limit, 0), Verdict::Conform)
    }

    /// Polices, or with `max_delay_ns` > 0 accepts a packet that conforms
    /// within that time ([`Verdict::Later`]), counting it now.
    pub fn shape(&mut self, now: u64, len: u64, limit: Limit, max_delay_ns: u64) -> Verdict {
        if !limit.is_limited() {
            return Verdict::Conform;
        }
        match decide(self.tat, now, len, limit, max_delay_ns) {
            Some((next, at)) => {
                self.tat = next;
                if at <= now {
                    Verdict::Conform
                } else {
                    Verdict::Later { at }
                }
            }
            None => Verdict::Exceed,
        }
    }
}

/// A bucket several threads share without a lock: a session whose traffic
/// arrives on several queues (RSS spreads a subscriber's downstream flows)
/// is held to one rate, not to one rate per queue. With one thread using
/// it (the usual case: a line only its worker writes) the compare-and-swap
/// always succeeds at the first try.
#[derive(Debug, Default)]
pub struct AtomicBucket {
    tat: AtomicU64,
}

impl AtomicBucket {
    /// [`Bucket::shape`] on the shared word.
    #[inline]
    pub fn shape(&self, now: u64, len: u64, limit: Limit, max_delay_ns: u64) -> Verdict {
        if !limit.is_limited() {
            return Verdict::Conform;
        }
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let Some((next, at)) = decide(tat, now, len, limit, max_delay_ns) else {
                return Verdict::Exceed;
            };
            match self.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return if at <= now { Verdict::Conform } else { Verdict::Later { at } },
                Err(seen) => tat = seen,
            }
        }
    }

    /// Forgets the past: the bucket is full at `now` (a new session in the
    /// slot, or a new rate).
    pub fn reset(&self, now: u64) {
        self.tat.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    /// Offers `len`-byte packets at `offered_kbps` for `secs` and returns
    /// the bytes that conform.
    fn run(limit: Limit, offered_kbps: u64, len: u64, secs: u64, max_delay: u64) -> u64 {
        let mut b = Bucket { tat: 0 };
        let gap = len * 8_000_000 / offered_kbps;
        let (mut t, mut passed) = (0, 0);
        while t < secs * SEC {
            match b.shape(t, len, limit, max_delay) {
                Verdict::Conform | Verdict::Later { .. } => passed += len,
                Verdict::Exceed => {}
            }
            t += gap;
        }
        passed
    }

    #[test]
    fn four_times_the_rate_passes_the_rate_plus_the_burst() {
        // 2 Mbit/s, 100 ms of burst, 1,500-byte packets at 8 Mbit/s for 10 s.
        let limit = Limit::new(2000, default_burst(2000, 100, 15_000));
        assert_eq!(limit.burst, 25_000);
        let passed = run(limit, 8000, 1500, 10, 0);
        let expected = 2_000_000 / 8 * 10 + 25_000;
        assert!(passed.abs_diff(expected) <= 1500, "{passed} bytes, expected {expected} ± one packet");
    }

    #[test]
    fn under_the_rate_everything_passes() {
        let limit = Limit::new(2000, 25_000);
        assert_eq!(run(limit, 1900, 1500, 10, 0), run(Limit::default(), 1900, 1500, 10, 0));
    }

    #[test]
    fn a_full_bucket_takes_a_burst_of_its_depth_then_refills_at_the_rate() {
        let limit = Limit::new(8, 3000); // 1 byte per ms, 3,000 bytes deep
        let mut b = Bucket { tat: 0 };
        let t0 = 10 * SEC; // long idle: full
        assert!(b.police(t0, 1500, limit));
        assert!(b.police(t0, 1500, limit));
        assert!(!b.police(t0, 1, limit), "empty after its depth");
        assert!(!b.police(t0 + 999 * MS, 1000, limit), "999 bytes of tokens");
        assert!(b.police(t0 + 1000 * MS, 1000, limit), "1,000 bytes after 1 s");
        // A refused packet takes nothing.
        assert!(!b.police(t0 + 1000 * MS, 1, limit));
        assert!(b.police(t0 + 1001 * MS, 1, limit));
    }

    #[test]
    fn idle_time_never_fills_more_than_the_depth() {
        let limit = Limit::new(8, 3000);
        let mut b = Bucket { tat: 0 };
        let t0 = 1000 * SEC;
        assert!(b.police(t0, 3000, limit));
        assert!(!b.police(t0, 1, limit));
    }

    #[test]
    fn no_limit_passes_everything() {
        let mut b = Bucket::default();
        for t in 0..1000 {
            assert!(b.police(t, 9000, Limit::default()));
        }
        assert_eq!(b.tat, 0, "an unlimited bucket keeps no state");
    }

    #[test]
    fn shaping_delays_up_to_its_bound_and_keeps_the_rate() {
        let limit = Limit::new(8, 1500); // 1 byte per ms
        let mut b = Bucket { tat: 0 };
        let t0 = 10 * SEC;
        assert_eq!(b.shape(t0, 1500, limit, 3 * SEC), Verdict::Conform);
        assert_eq!(b.shape(t0, 1500, limit, 3 * SEC), Verdict::Later { at: t0 + 1500 * MS });
        assert_eq!(b.shape(t0, 1500, limit, 3 * SEC), Verdict::Later { at: t0 + 3000 * MS });
        assert_eq!(b.shape(t0, 1500, limit, 3 * SEC), Verdict::Exceed, "past the queue's bound");
        // Over 100 s at 4× the rate, shaped, the rate passes (plus what
        // the queue and the bucket hold).
        let passed = run(Limit::new(2000, 25_000), 8000, 1500, 100, 50 * MS);
        let rate_bytes = 2_000_000 / 8 * 100;
        assert!(passed >= rate_bytes && passed <= rate_bytes + 25_000 + 12_500 + 1500, "{passed}");
    }

    #[test]
    fn a_shared_bucket_holds_several_threads_to_one_rate() {
        let limit = Limit::new(8000, 10_000); // 1,000 bytes per ms
        let b = std::sync::Arc::new(AtomicBucket::default());
        // Four threads offer 1,000-byte packets at the same virtual times,
        // each at the full rate: together four times the limit.
        let passed: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let b = &b;
                    s.spawn(move || {
                        (0..10_000u64)
                            .filter(|i| matches!(b.shape(i * MS, 1000, limit, 0), Verdict::Conform))
                            .count() as u64
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // The threads' clocks are not in step, so one thread running ahead
        // finds tokens the others have not taken yet; never more than the
        // rate over the span plus the depth for each thread that runs ahead.
        assert!((9_000..=10_000 + 40).contains(&passed), "{passed} packets of 1,000 bytes over 10 s");
    }

    #[test]
    fn costs_do_not_overflow() {
        let l = Limit::new(1, u32::MAX);
        assert_eq!(l.cost_ns(1500), 1500 * 8_000_000);
        assert!(l.tolerance_ns() > 0);
        let mut b = Bucket { tat: u64::MAX - 5 };
        assert!(!b.police(0, 1500, Limit::new(1, 1500)));
        assert_eq!(
            default_burst(u32::MAX, 100, 15_000),
            (u32::MAX as u64 * 1000 / 8 / 10).min(u32::MAX as u64) as u32
        );
        assert_eq!(default_burst(512, 100, 15_000), 15_000);
    }

    /// The full bucket's shortcut decides as the general case does, for
    /// buckets full or not, packets within the depth or not, shaping or
    /// not (a fixed pseudo-random walk over the space).
    #[test]
    fn the_shortcut_decides_as_the_general_case() {
        fn general(tat: u64, now: u64, len: u64, limit: Limit, max_delay_ns: u64) -> Option<(u64, u64)> {
            let next = tat.max(now).saturating_add(limit.cost_ns(len));
            let at = next.saturating_sub(limit.tolerance_ns()).max(now);
            (at - now <= max_delay_ns).then_some((next, at))
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let now = next() % (10 * SEC) + SEC;
            let tat = now.saturating_add_signed((next() % (2 * SEC)) as i64 - SEC as i64);
            let limit = Limit::new((next() % 10_000_000) as u32 + 1, (next() % 200_000) as u32);
            let len = next() % 70_000;
            let delay = [0, 50 * MS][(next() % 2) as usize];
            assert_eq!(
                decide(tat, now, len, limit, delay),
                general(tat, now, len, limit, delay),
                "tat {tat} now {now} len {len} {limit:?} delay {delay}"
            );
        }
    }
}
