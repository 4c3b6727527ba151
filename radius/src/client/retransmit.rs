//! The retransmission timer of RFC 5080 §2.2.1 (borrowed from RFC 3315
//! §14): the first timeout is IRT + RAND*IRT, each later one 2*RTprev +
//! RAND*RTprev, capped near MRT, with RAND uniform in [-0.1, +0.1] so that
//! clients that lost the same server do not retransmit in step. A request
//! gives up on a server after MRC retransmissions or MRD of trying.

use std::time::Duration;

/// Timer parameters for one server attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// Initial retransmission time.
    pub irt: Duration,
    /// Maximum retransmission count (not counting the first transmission).
    pub mrc: u32,
    /// Maximum retransmission time.
    pub mrt: Duration,
    /// Maximum retransmission duration on one server.
    pub mrd: Duration,
}

impl Default for RetransmitConfig {
    /// RFC 5080 §2.2.1 suggests IRT 2 s, MRT 16 s and MRD 30 s; with two
    /// retransmissions a server is given up after 2 + 4 + 8 ≈ 14 s.
    fn default() -> Self {
        RetransmitConfig {
            irt: Duration::from_secs(2),
            mrc: 2,
            mrt: Duration::from_secs(16),
            mrd: Duration::from_secs(30),
        }
    }
}

/// `base` scaled by 1 + rand, rand in [-0.1, 0.1] given as `jitter` in
/// [-1.0, 1.0].
fn jittered(base: Duration, jitter: f64) -> Duration {
    base.mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0))
}

impl RetransmitConfig {
    pub fn first(&self, jitter: f64) -> Duration {
        jittered(self.irt, jitter)
    }

    pub fn next(&self, previous: Duration, jitter: f64) -> Duration {
        let rt = previous.mul_f64(2.0 + 0.1 * jitter.clamp(-1.0, 1.0));
        if rt > self.mrt {
            jittered(self.mrt, jitter)
        } else {
            rt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_with_bounded_jitter_and_cap() {
        let c = RetransmitConfig {
            irt: Duration::from_secs(2),
            mrc: 5,
            mrt: Duration::from_secs(10),
            mrd: Duration::from_secs(60),
        };
        assert_eq!(c.first(0.0), Duration::from_secs(2));
        assert_eq!(c.first(1.0), Duration::from_millis(2200));
        assert_eq!(c.first(-1.0), Duration::from_millis(1800));
        assert_eq!(c.next(Duration::from_secs(2), 0.0), Duration::from_secs(4));
        assert_eq!(c.next(Duration::from_secs(4), 1.0), Duration::from_millis(8400));
        assert_eq!(c.next(Duration::from_secs(8), 0.0), Duration::from_secs(10), "MRT caps");
        assert_eq!(c.next(Duration::from_secs(8), -1.0), Duration::from_secs(9), "MRT + RAND*MRT");
    }
}
