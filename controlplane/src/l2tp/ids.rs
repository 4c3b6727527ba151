//! Allocation of tunnel and session ids.
//!
//! Ids are random (so they are hard to guess for a spoofer injecting
//! StopCCN/CDN) and not reused for a hold-down time after release, so a
//! late retransmission for an old tunnel or session cannot land on a new
//! one. 0 is never allocated: it means "not yet assigned" (§3.1).

use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct IdAllocator {
    in_use: HashSet<u16>,
    held: HashMap<u16, Instant>,
    /// Release order, for expiring `held` cheaply.
    held_order: VecDeque<(Instant, u16)>,
    hold_down: Duration,
}

impl IdAllocator {
    pub(crate) fn new(hold_down: Duration) -> Self {
        IdAllocator { in_use: HashSet::new(), held: HashMap::new(), held_order: VecDeque::new(), hold_down }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(until, id)) = self.held_order.front() {
            if until > now {
                break;
            }
            self.held_order.pop_front();
            if self.held.get(&id) == Some(&until) {
                self.held.remove(&id);
            }
        }
    }

    fn free(&self, id: u16) -> bool {
        id != 0 && !self.in_use.contains(&id) && !self.held.contains_key(&id)
    }

    /// A fresh id, or None when all 65535 are taken or held.
    pub(crate) fn allocate(&mut self, now: Instant, rng: &mut StdRng) -> Option<u16> {
        self.expire(now);
        // Random probes first; they almost always succeed.
        for _ in 0..32 {
            let id: u16 = rng.gen();
            if self.free(id) {
                self.in_use.insert(id);
                return Some(id);
            }
        }
        // Crowded: scan from a random start.
        let start: u16 = rng.gen();
        (0..=u16::MAX).map(|i| start.wrapping_add(i)).find(|&id| self.free(id)).inspect(|&id| {
            self.in_use.insert(id);
        })
    }

    pub(crate) fn release(&mut self, now: Instant, id: u16) {
        if self.in_use.remove(&id) {
            let until = now + self.hold_down;
            self.held.insert(id, until);
            self.held_order.push_back((until, id));
        }
    }

    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn no_reuse_during_hold_down() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut a = IdAllocator::new(Duration::from_secs(10));
        // Fill everything but one id, then release one: the only id left
        // free is the never-used one, not the released one.
        let mut all = Vec::new();
        while let Some(id) = a.allocate(t0, &mut rng) {
            all.push(id);
            if all.len() == 65534 {
                break;
            }
        }
        assert_eq!(all.len(), 65534);
        assert!(!all.contains(&0));
        let released = all[0];
        a.release(t0, released);
        let last = a.allocate(t0, &mut rng).expect("one left");
        assert_ne!(last, released);
        assert_eq!(a.allocate(t0 + Duration::from_secs(9), &mut rng), None);
        assert_eq!(a.allocate(t0 + Duration::from_secs(10), &mut rng), Some(released));
        assert_eq!(a.in_use(), 65535);
    }
}
