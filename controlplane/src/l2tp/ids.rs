//! Allocation of tunnel and session ids.
//!
//! Ids are random (so they are hard to guess for a spoofer injecting
//! StopCCN/CDN) and not reused for a hold-down time after release, so a
//! late retransmission for an old tunnel or session cannot land on a new
//! one. 0 is never allocated: it means "not yet assigned" (§3.1).

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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

/// A snapshot keeps only the reserved ids, as runs (the data plane reserves
/// long runs: a few pairs, not 8 KiB of bits). Which ids are taken is
/// known from the tunnels that hold them; [`IdAllocator::relink`] marks
/// them again when the endpoint that shares the space is restored.
impl Serialize for SessionIdSpace {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bits = self.bits();
        let mut runs: Vec<(u16, u16)> = Vec::new();
        for id in (0..=u16::MAX).filter(|id| bit(&bits.reserved, *id)) {
            match runs.last_mut() {
                Some((_, last)) if last.wrapping_add(1) == id => *last = id,
                _ => runs.push((id, id)),
            }
        }
        runs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SessionIdSpace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let space = SessionIdSpace::default();
        {
            let mut bits = space.bits();
            for (first, last) in Vec::<(u16, u16)>::deserialize(d)? {
                for id in first..=last {
                    set_bit(&mut bits.reserved, id, true);
                }
            }
        }
        Ok(space)
    }
}

#[derive(Debug)]
struct SpaceBits {
    taken: Box<[u64; WORDS]>,
    reserved: Box<[u64; WORDS]>,
    taken_count: usize,
}

/// 65,536 ids, one bit each.
const WORDS: usize = 1024;

impl Default for SpaceBits {
    fn default() -> Self {
        SpaceBits { taken: Box::new([0; WORDS]), reserved: Box::new([0; WORDS]), taken_count: 0 }
    }
}

fn bit(map: &[u64; WORDS], id: u16) -> bool {
    map[usize::from(id >> 6)] & (1 << (id & 63)) != 0
}

fn set_bit(map: &mut [u64; WORDS], id: u16, on: bool) {
    let (w, b) = (usize::from(id >> 6), 1u64 << (id & 63));
    if on {
        map[w] |= b;
    } else {
        map[w] &= !b;
    }
}

/// The positions of the set bits of `word`, lowest first.
fn ones(mut word: u64) -> impl Iterator<Item = u16> {
    std::iter::from_fn(move || {
        if word == 0 {
            return None;
        }
        let b = word.trailing_zeros() as u16;
        word &= word - 1;
        Some(b)
    })
}

impl SpaceBits {
    /// Ids of word `w` that no tunnel holds and nobody reserved (0 never).
    fn free_word(&self, w: usize) -> u64 {
        let free = !(self.taken[w] | self.reserved[w]);
        if w == 0 {
            free & !1
        } else {
            free
        }
    }

    fn free(&self, id: u16) -> bool {
        self.free_word(usize::from(id >> 6)) & (1 << (id & 63)) != 0
    }

    fn free_count(&self) -> u32 {
        (0..WORDS).map(|w| self.free_word(w).count_ones()).sum()
    }

    /// The `k`-th free id, counting from 0 upwards.
    fn nth_free(&self, mut k: u32) -> Option<u16> {
        for w in 0..WORDS {
            let free = self.free_word(w);
            let n = free.count_ones();
            if k < n {
                let b = ones(free).nth(k as usize)?;
                return Some((w as u16) << 6 | b);
            }
            k -= n;
        }
        None
    }

    /// The free ids from `start` on, wrapping around, each once.
    fn free_from(&self, start: u16) -> impl Iterator<Item = u16> + '_ {
        let (w0, b0) = (usize::from(start >> 6), u32::from(start & 63));
        // The first word is visited twice: its ids from `start` on first,
        // those below `start` last.
        (0..=WORDS).flat_map(move |i| {
            let w = (w0 + i) % WORDS;
            let mask = match i {
                0 => !0u64 << b0,
                WORDS => !(!0u64 << b0),
                _ => !0,
            };
            ones(self.free_word(w) & mask).map(move |b| (w as u16) << 6 | b)
        })
    }

    fn take(&mut self, id: u16) -> bool {
        if !self.free(id) {
            return false;
        }
        set_bit(&mut self.taken, id, true);
        self.taken_count += 1;
        true
    }

    fn give_back(&mut self, id: u16) {
        if bit(&self.taken, id) {
            set_bit(&mut self.taken, id, false);
            self.taken_count -= 1;
        }
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
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub(crate) struct IdAllocator {
    /// Ids this allocator handed out and not yet released.
    in_use: HashSet<u16>,
    /// The space shared with other allocators, if any: an id is free only
    /// if no allocator of the space holds it. A snapshot says only whether
    /// there is one: the space is the endpoint's, restored there and
    /// handed back through [`IdAllocator::relink`]; until then a restored
    /// allocator has a space of its own with its ids taken.
    #[serde(with = "shares")]
    shared: Option<SessionIdSpace>,
    #[serde(with = "super::serde_maps::instant_values")]
    held: HashMap<u16, Instant>,
    /// Release order, for expiring `held` cheaply.
    #[serde(with = "super::serde_maps::instant_queue")]
    held_order: VecDeque<(Instant, u16)>,
    hold_down: Duration,
}

mod shares {
    use super::*;

    pub(super) fn serialize<S: Serializer>(shared: &Option<SessionIdSpace>, s: S) -> Result<S::Ok, S::Error> {
        shared.is_some().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SessionIdSpace>, D::Error> {
        Ok(bool::deserialize(d)?.then(SessionIdSpace::default))
    }
}

/// `#[serde(with = "without_in_use")]`: an allocator without the ids it
/// holds, for a store that keeps them elsewhere (a tunnel's session ids
/// are its sessions' ids; an endpoint's tunnel ids its tunnels'). The
/// reader takes each again with [`IdAllocator::hold`].
pub(crate) mod without_in_use {
    use super::*;

    #[derive(Serialize)]
    struct AllocatorRef<'a> {
        shared: bool,
        #[serde(with = "crate::l2tp::serde_maps::instant_values")]
        held: &'a HashMap<u16, Instant>,
        #[serde(with = "crate::l2tp::serde_maps::instant_queue")]
        held_order: &'a VecDeque<(Instant, u16)>,
        hold_down: Duration,
    }

    #[derive(Deserialize)]
    struct Allocator {
        shared: bool,
        #[serde(with = "crate::l2tp::serde_maps::instant_values")]
        held: HashMap<u16, Instant>,
        #[serde(with = "crate::l2tp::serde_maps::instant_queue")]
        held_order: VecDeque<(Instant, u16)>,
        hold_down: Duration,
    }

    pub(crate) fn serialize<A: std::borrow::Borrow<IdAllocator>, S: Serializer>(
        a: &A,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let a = a.borrow();
        AllocatorRef {
            shared: a.shared.is_some(),
            held: &a.held,
            held_order: &a.held_order,
            hold_down: a.hold_down,
        }
        .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IdAllocator, D::Error> {
        let a = Allocator::deserialize(d)?;
        Ok(IdAllocator {
            in_use: HashSet::new(),
            shared: a.shared.then(SessionIdSpace::default),
            held: a.held,
            held_order: a.held_order,
            hold_down: a.hold_down,
        })
    }
}

impl Serialize for IdAllocator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        IdAllocator::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for IdAllocator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let a = IdAllocator::deserialize(d)?;
        // The placeholder space must know the ids this allocator holds, or
        // it would hand them out again.
        if let Some(space) = &a.shared {
            let mut bits = space.bits();
            for id in &a.in_use {
                bits.take(*id);
            }
        }
        Ok(a)
    }
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
    /// on. Only before the first id is handed out: one this allocator holds
    /// may be held by another of the space too. False (and nothing changes)
    /// after.
    pub(crate) fn share(&mut self, space: SessionIdSpace) -> bool {
        if !self.in_use.is_empty() {
            return false;
        }
        self.shared = Some(space);
        true
    }

    /// Read back from a store that kept the ids in use elsewhere: `id` is
    /// held again (and taken in the placeholder space, until
    /// [`IdAllocator::relink`]).
    pub(crate) fn hold(&mut self, id: u16) {
        if self.in_use.insert(id) {
            if let Some(space) = &self.shared {
                space.bits().take(id);
            }
        }
    }

    /// After a restore: draw from `space` again, the endpoint's restored
    /// copy of the space this allocator shared, and mark the ids it holds
    /// as taken there. Nothing for an allocator that shared no space.
    pub(crate) fn relink(&mut self, space: &SessionIdSpace) {
        if self.shared.is_none() {
            return;
        }
        {
            let mut bits = space.bits();
            for id in &self.in_use {
                // Taken twice only in a snapshot that was not one
                // endpoint's: the id stays with whoever marked it first.
                bits.take(*id);
            }
        }
        if let Some(old) = self.shared.replace(space.clone()) {
            let mut bits = old.bits();
            for id in &self.in_use {
                bits.give_back(*id);
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
        id != 0 && !self.in_use.contains(&id) && !self.held.contains_key(&id)
    }

    /// A fresh id, or None when all 65535 are taken, reserved or held.
    pub(crate) fn allocate<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Option<u16> {
        self.expire(now);
        let id = match &self.shared {
            Some(space) => Self::allocate_shared(&mut space.bits(), &self.held, rng)?,
            None => self.allocate_own(rng)?,
        };
        self.in_use.insert(id);
        Some(id)
    }

    fn allocate_own<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<u16> {
        // Random probes first; they almost always succeed.
        for _ in 0..32 {
            let id: u16 = rng.gen();
            if self.free(id) {
                return Some(id);
            }
        }
        // Crowded: scan from a random start.
        let start: u16 = rng.gen();
        (0..=u16::MAX).map(|i| start.wrapping_add(i)).find(|&id| self.free(id))
    }

    /// Under one lock, on the bits: the data plane reserves every id whose
    /// slot lies beyond its table, one long run, so a bank is often mostly
    /// reserved, and a scan id by id from a random start would both walk
    /// that run for every call and hand out the ids just after it in order.
    fn allocate_shared<R: Rng + ?Sized>(
        bits: &mut SpaceBits,
        held: &HashMap<u16, Instant>,
        rng: &mut R,
    ) -> Option<u16> {
        // Ids this tunnel holds are taken in the space; those it holds
        // down are free there, and another tunnel may have them.
        let usable = |bits: &SpaceBits, id: u16| bits.free(id) && !held.contains_key(&id);
        let mut id = (0..32).map(|_| rng.gen::<u16>()).find(|&id| usable(bits, id));
        if id.is_none() {
            // Crowded: from a free id drawn uniformly, the next this tunnel
            // does not hold down.
            let free = bits.free_count();
            if free == 0 {
                return None;
            }
            let start = bits.nth_free(rng.gen_range(0..free))?;
            id = bits.free_from(start).find(|id| !held.contains_key(id));
        }
        let id = id?;
        // Found free under this same lock.
        let taken = bits.take(id);
        debug_assert!(taken);
        Some(id)
    }

    pub(crate) fn release(&mut self, now: Instant, id: u16) {
        if self.in_use.remove(&id) {
            if let Some(s) = &self.shared {
                s.bits().give_back(id);
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
            let mut bits = s.bits();
            for id in &self.in_use {
                bits.give_back(*id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn a_shared_space_hands_each_id_to_one_allocator() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let space = SessionIdSpace::default();
        let mut a = IdAllocator::new(Duration::from_secs(60));
        let mut b = IdAllocator::new(Duration::from_secs(60));
        assert!(a.share(space.clone()));
        assert!(b.share(space.clone()));
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
        // Unreserved, 7 is the one id left; then held, it cannot be reserved.
        for id in (1..=u16::MAX).filter(|id| *id != 7) {
            assert!(space.reserve(id));
        }
        space.unreserve(7);
        let mut c = IdAllocator::new(Duration::from_secs(60));
        assert!(c.share(space.clone()));
        assert_eq!(c.allocate(t0, &mut rng), Some(7));
        assert!(!space.reserve(7), "held: cannot be reserved");
        assert!(!c.share(SessionIdSpace::default()), "too late: 7 is handed out");
    }

    /// The data plane reserves every id whose slot lies beyond its table,
    /// one long run: the few ids left still come out in random order (a
    /// scan from a random start would mostly land at the run's end and go
    /// on from there, 1, 2, 3...), and ids held down are skipped.
    #[test]
    fn a_mostly_reserved_space_still_hands_out_random_ids() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let space = SessionIdSpace::default();
        for id in 1025..=u16::MAX {
            assert!(space.reserve(id));
        }
        let mut a = IdAllocator::new(Duration::from_secs(60));
        let mut b = IdAllocator::new(Duration::from_secs(60));
        assert!(a.share(space.clone()));
        assert!(b.share(space.clone()));
        let ids: Vec<u16> = std::iter::from_fn(|| a.allocate(t0, &mut rng)).collect();
        assert_eq!(ids.len(), 1024);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1024);
        let in_order = ids.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
        assert!(in_order < 20, "{in_order} of 1023 follow their predecessor");
        // Free in the space but held down in a: for b only.
        a.release(t0, ids[0]);
        a.release(t0, ids[1]);
        assert_eq!(a.allocate(t0, &mut rng), None);
        let mut got = [b.allocate(t0, &mut rng), b.allocate(t0, &mut rng)];
        got.sort();
        let mut want = [Some(ids[0]), Some(ids[1])];
        want.sort();
        assert_eq!(got, want);
        assert_eq!(b.allocate(t0, &mut rng), None);
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
