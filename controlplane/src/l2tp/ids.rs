//! Allocation of tunnel and session ids.
//!
//! Ids are random (so they are hard to guess for a spoofer injecting
//! StopCCN/CDN) and not reused for a hold-down time after release, so a
//! late retransmission for an old tunnel or session cannot land on a new
//! one. 0 is never allocated: it means "not yet assigned" (§3.1).

use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Session ids taken across several tunnels: the tunnels of one bank
/// (local tunnel ids equal in their low bits) draw from one space, so that
/// (bank, session id) names one session on the whole LNS and the data
/// plane can keep it at a slot computed from the ids, found without a hash.
/// The hold-down stays per tunnel: a late message for an old session of
/// tunnel A can only be mistaken for a session of tunnel A.
#[derive(Debug, Clone, Default)]
pub struct SessionIdSpace(Arc<Mutex<SpaceBits>>);

#[derive(Debug)]
struct SpaceBits {
    taken: Box<[u64; 1024]>,
    reserved: Box<[u64; 1024]>,
    taken_count: usize,
}

impl Default for SpaceBits {
    fn default() -> Self {
        SpaceBits { taken: Box::new([0; 1024]), reserved: Box::new([0; 1024]), taken_count: 0 }
    }
}

fn bit(map: &[u64; 1024], id: u16) -> bool {
    map[usize::from(id >> 6)] & (1 << (id & 63)) != 0
}

fn set_bit(map: &mut [u64; 1024], id: u16, on: bool) {
    let (w, b) = (usize::from(id >> 6), 1u64 << (id & 63));
    if on {
        map[w] |= b;
    } else {
        map[w] &= !b;
    }
}

impl SessionIdSpace {
    fn bits(&self) -> MutexGuard<'_, SpaceBits> {
        // A panic elsewhere while holding it leaves plain bits behind.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids some tunnel of the space holds.
    pub fn in_use(&self) -> usize {
        self.bits().taken_count
    }

    /// Keeps `id` from ever being allocated (its data-plane slot belongs to
    /// someone else). False when a tunnel holds it now.
    pub fn reserve(&self, id: u16) -> bool {
        let mut b = self.bits();
        if bit(&b.taken, id) {
            return false;
        }
        set_bit(&mut b.reserved, id, true);
        true
    }

    pub fn unreserve(&self, id: u16) {
        set_bit(&mut self.bits().reserved, id, false);
    }

    fn available(&self, id: u16) -> bool {
        let b = self.bits();
        !bit(&b.taken, id) && !bit(&b.reserved, id)
    }

    /// Takes `id` if it is available.
    fn take(&self, id: u16) -> bool {
        let mut b = self.bits();
        if bit(&b.taken, id) || bit(&b.reserved, id) {
            return false;
        }
        set_bit(&mut b.taken, id, true);
        b.taken_count += 1;
        true
    }

    fn give_back(&self, id: u16) {
        let mut b = self.bits();
        if bit(&b.taken, id) {
            set_bit(&mut b.taken, id, false);
            b.taken_count -= 1;
        }
    }
}

#[derive(Debug)]
pub(crate) struct IdAllocator {
    /// Ids this allocator handed out and not yet released.
    in_use: HashSet<u16>,
    /// The space shared with other allocators, if any: an id is free only
    /// if no allocator of the space holds it.
    shared: Option<SessionIdSpace>,
    held: HashMap<u16, Instant>,
    /// Release order, for expiring `held` cheaply.
    held_order: VecDeque<(Instant, u16)>,
    hold_down: Duration,
}

impl IdAllocator {
    pub(crate) fn new(hold_down: Duration) -> Self {
        IdAllocator {
            in_use: HashSet::new(),
            shared: None,
            held: HashMap::new(),
            held_order: VecDeque::new(),
            hold_down,
        }
    }

    /// Draws ids from `space` (together with its other allocators) from now
    /// on; ids already handed out move into it.
    pub(crate) fn share(&mut self, space: SessionIdSpace) {
        for id in &self.in_use {
            space.take(*id);
        }
        if let Some(old) = self.shared.replace(space) {
            for id in &self.in_use {
                old.give_back(*id);
            }
        }
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
        id != 0
            && !self.in_use.contains(&id)
            && !self.held.contains_key(&id)
            && self.shared.as_ref().is_none_or(|s| s.available(id))
    }

    /// Takes `id` if it is free here and in the shared space.
    fn claim(&mut self, id: u16) -> bool {
        if id == 0 || self.in_use.contains(&id) || self.held.contains_key(&id) {
            return false;
        }
        if let Some(s) = &self.shared {
            if !s.take(id) {
                return false;
            }
        }
        self.in_use.insert(id);
        true
    }

    /// A fresh id, or None when all 65535 are taken or held.
    pub(crate) fn allocate(&mut self, now: Instant, rng: &mut StdRng) -> Option<u16> {
        self.expire(now);
        // Random probes first; they almost always succeed.
        for _ in 0..32 {
            let id: u16 = rng.gen();
            if self.claim(id) {
                return Some(id);
            }
        }
        // Crowded: scan from a random start.
        let start: u16 = rng.gen();
        (0..=u16::MAX).map(|i| start.wrapping_add(i)).find(|&id| self.free(id) && self.claim(id))
    }

    pub(crate) fn release(&mut self, now: Instant, id: u16) {
        if self.in_use.remove(&id) {
            if let Some(s) = &self.shared {
                s.give_back(id);
            }
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

impl Drop for IdAllocator {
    /// A tunnel that goes away returns whatever ids it still held.
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            for id in &self.in_use {
                s.give_back(*id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_shared_space_hands_each_id_to_one_allocator() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let space = SessionIdSpace::default();
        let mut a = IdAllocator::new(Duration::from_secs(60));
        let mut b = IdAllocator::new(Duration::from_secs(60));
        a.share(space.clone());
        b.share(space.clone());
        assert!(space.reserve(7));
        let mut seen = HashSet::new();
        for i in 0..65534 {
            let id = if i % 2 == 0 { a.allocate(t0, &mut rng) } else { b.allocate(t0, &mut rng) };
            let id = id.expect("room left");
            assert_ne!(id, 7, "reserved");
            assert!(seen.insert(id), "{id} handed out twice");
        }
        assert_eq!(space.in_use(), 65534);
        assert_eq!(a.allocate(t0, &mut rng), None, "full: 65,535 ids minus the reserved one");
        // Released by a, held down for a, free at once for b.
        let id = *seen.iter().find(|id| a.in_use.contains(id)).unwrap();
        a.release(t0, id);
        assert_eq!(a.allocate(t0, &mut rng), None);
        assert_eq!(b.allocate(t0, &mut rng), Some(id));
        // A dropped allocator gives its ids back.
        drop(a);
        assert_eq!(space.in_use(), b.in_use());
        drop(b);
        assert_eq!(space.in_use(), 0);
        space.unreserve(7);
        let mut c = IdAllocator::new(Duration::from_secs(60));
        c.share(space.clone());
        assert!(c.claim(7));
        assert!(!space.reserve(7), "held: cannot be reserved");
    }

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
