//! Per-subscriber rate limits in the workers: the buckets of every session
//! slot, and the downstream shaper's queue of held frames.
//!
//! The limits are the session entry's (`rate_down_kbps`, `burst_down`, ...);
//! the bucket is [`lns_bpf::police`]'s: one 8-byte word per direction. The
//! workers keep them in one table indexed by session slot, beside the entry
//! and never in the map (the program does not police), reset when the
//! entry's generation says another session took the slot.
//!
//! Which worker polices a session: the one whose queue its traffic
//! arrives on. Upstream that is always one (the NIC hashes the outer
//! header, and a tunnel is one 5-tuple). Downstream, RSS hashes the
//! subscriber's own flows, so one subscriber's traffic may arrive on
//! several queues at once: the workers then share the session's bucket
//! with a compare-and-swap, and the subscriber gets its rate, not a rate
//! per queue (buckets at rate/N per worker would give one TCP flow, which
//! lands on one queue, a fraction of its rate). No lock: a CAS on a line
//! only one worker writes (the common case) costs what a plain store does;
//! a line two workers write moves between their caches, as the per-session
//! Ns counter of a sequencing session already does.
//!
//! Shaping (downstream, `--shape-ms`): a packet over the limit that will
//! conform within the bound is counted in the bucket now and held, its
//! UMEM frame in a timer wheel of the worker, until it conforms; then it
//! is sent. Past the bound (the session's queue is full), or when the
//! worker holds its cap of frames, it is dropped as a policer does. The
//! queue of a session is thus bounded in time (bytes = bound × rate), and
//! its frames leave in order of their departure times, which the shared
//! bucket hands out in increasing order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lns_bpf::abi::Session;
use lns_bpf::police::{AtomicBucket, Limit, Verdict};

/// The buckets of one session slot (a half cache line: two slots per line).
#[repr(C, align(32))]
#[derive(Default)]
struct Slot {
    /// The entry's generation the buckets belong to.
    generation: AtomicU64,
    down: AtomicBucket,
    up: AtomicBucket,
}

/// Every slot's buckets, shared by the workers of the process.
pub struct PoliceTable {
    epoch: Instant,
    slots: Box<[Slot]>,
}

impl PoliceTable {
    pub fn new(max_sessions: usize) -> PoliceTable {
        PoliceTable { epoch: Instant::now(), slots: (0..max_sessions).map(|_| Slot::default()).collect() }
    }

    /// The buckets' clock: nanoseconds since the table was made.
    #[inline]
    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    #[inline]
    pub fn prefetch(&self, i: usize) {
        let Some(slot) = self.slots.get(i) else { return };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a reference to a live slot; a prefetch reads nothing
        // architecturally and cannot fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch(slot as *const Slot as *const i8, std::arch::x86_64::_MM_HINT_T0);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// The verdict on `len` bytes of subscriber IP for session `s` in slot
    /// `idx` at `now` (see [`PoliceTable::ns`]); `max_delay_ns` > 0 shapes.
    #[inline]
    pub fn check(
        &self,
        idx: usize,
        s: &Session,
        upstream: bool,
        now: u64,
        len: u64,
        max_delay_ns: u64,
    ) -> Verdict {
        let limit = limit(s, upstream);
        if !limit.is_limited() {
            return Verdict::Conform;
        }
        let Some(slot) = self.slots.get(idx) else { return Verdict::Conform };
        if slot.generation.load(Ordering::Relaxed) != s.generation {
            // Another session in the slot: full buckets. Two workers doing
            // this at once both fill them; no harm.
            slot.down.reset(now);
            slot.up.reset(now);
            slot.generation.store(s.generation, Ordering::Relaxed);
        }
        let bucket = if upstream { &slot.up } else { &slot.down };
        bucket.shape(now, len, limit, max_delay_ns)
    }
}

/// The entry's limit for one direction.
#[inline]
pub fn limit(s: &Session, upstream: bool) -> Limit {
    if upstream {
        Limit::new(s.rate_up_kbps, s.burst_up)
    } else {
        Limit::new(s.rate_down_kbps, s.burst_down)
    }
}

/// Nanoseconds per tick of the wheel (131 µs): finer than a worker sleeps
/// (1 ms) and than TCP can tell.
const TICK_SHIFT: u32 = 17;

/// Frames held until their departure time, in a hashed timer wheel: one
/// bucket per tick, the wheel as long as the longest delay. `T` is a frame
/// (an UMEM descriptor and its output port in the worker).
pub struct Shaper<T> {
    wheel: Vec<Vec<T>>,
    /// The next tick to release.
    next_tick: u64,
    held: usize,
    max_held: usize,
    /// The longest a frame waits (the per-session queue's bound).
    pub max_delay_ns: u64,
}

impl<T> Shaper<T> {
    /// A wheel for delays up to `max_delay_ns`, holding at most `max_held`
    /// frames (the worker's share of its UMEM it may keep out of the rings).
    pub fn new(max_delay_ns: u64, max_held: usize, now: u64) -> Shaper<T> {
        let ticks = ((max_delay_ns >> TICK_SHIFT) + 2).next_power_of_two() as usize;
        Shaper {
            wheel: (0..ticks).map(|_| Vec::new()).collect(),
            next_tick: now >> TICK_SHIFT,
            held: 0,
            max_held,
            max_delay_ns,
        }
    }

    /// Room for one more frame?
    #[inline]
    pub fn has_room(&self) -> bool {
        self.held < self.max_held
    }

    pub fn held(&self) -> usize {
        self.held
    }

    /// Holds `frame` until `at` (ns), asked at `now`. Err gives it back:
    /// no room, or `at` beyond the wheel (the caller drops it).
    pub fn hold(&mut self, now: u64, at: u64, frame: T) -> Result<(), T> {
        if self.held == 0 {
            // An empty wheel is not released (the worker skips it), so its
            // next tick stays where the last frame left it: measured from
            // there, any delay after an idle spell would lie beyond the
            // wheel and every frame be refused (the shaper a policer).
            self.next_tick = self.next_tick.max(now >> TICK_SHIFT);
        }
        let tick = (at >> TICK_SHIFT).max(self.next_tick);
        if !self.has_room() || tick - self.next_tick >= self.wheel.len() as u64 {
            return Err(frame);
        }
        let mask = self.wheel.len() - 1;
        self.wheel[tick as usize & mask].push(frame);
        self.held += 1;
        Ok(())
    }

    /// Hands every frame due by `now` to `send`, in departure order.
    pub fn release(&mut self, now: u64, mut send: impl FnMut(T)) {
        let now_tick = now >> TICK_SHIFT;
        if self.held == 0 {
            self.next_tick = self.next_tick.max(now_tick + 1);
            return;
        }
        let mask = self.wheel.len() - 1;
        // A worker late by more than the wheel (stopped, descheduled) sends
        // everything: each slot once.
        let last = now_tick.min(self.next_tick + mask as u64);
        while self.next_tick <= last {
            let slot = &mut self.wheel[self.next_tick as usize & mask];
            self.held -= slot.len();
            for f in slot.drain(..) {
                send(f);
            }
            self.next_tick += 1;
        }
        self.next_tick = self.next_tick.max(now_tick + 1);
    }

    /// When the next held frame is due (ns), if any: the worker sleeps no
    /// longer.
    pub fn next_due(&self) -> Option<u64> {
        (self.held > 0).then_some(self.next_tick << TICK_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_wheel_releases_in_order_when_due() {
        let mut s: Shaper<u32> = Shaper::new(100 * MS, 10, 0);
        s.hold(0, 5 * MS, 1).unwrap();
        s.hold(0, 5 * MS, 2).unwrap();
        s.hold(0, 2 * MS, 3).unwrap();
        s.hold(0, 90 * MS, 4).unwrap();
        assert_eq!(s.held(), 4);
        let mut out = Vec::new();
        s.release(MS, |f| out.push(f));
        assert!(out.is_empty());
        s.release(6 * MS, |f| out.push(f));
        assert_eq!(out, [3, 1, 2]);
        assert_eq!(s.held(), 1);
        assert!(s.next_due().unwrap() <= 90 * MS);
        s.release(95 * MS, |f| out.push(f));
        assert_eq!(out, [3, 1, 2, 4]);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn the_wheel_refuses_past_its_length_and_its_cap() {
        let mut s: Shaper<u32> = Shaper::new(10 * MS, 2, 0);
        assert_eq!(s.hold(0, 200 * MS, 1), Err(1), "beyond the wheel");
        s.hold(0, MS, 1).unwrap();
        s.hold(0, MS, 2).unwrap();
        assert_eq!(s.hold(0, MS, 3), Err(3), "at its cap");
        // Late by far more than the wheel: everything goes, once.
        let mut out = Vec::new();
        s.release(10_000 * MS, |f| out.push(f));
        assert_eq!(out, [1, 2]);
        // Due in the past: sent at the next release.
        s.hold(10_000 * MS, MS, 5).unwrap();
        s.release(10_001 * MS, |f| out.push(f));
        assert_eq!(out, [1, 2, 5]);
    }

    #[test]
    fn an_idle_wheel_takes_frames_again() {
        // Emptied at 1 ms, then idle (nothing held, so never released)
        // for far longer than the wheel: a frame due within the bound is
        // taken, and leaves when due.
        let mut s: Shaper<u32> = Shaper::new(50 * MS, 10, 0);
        s.hold(0, MS, 1).unwrap();
        let mut out = Vec::new();
        s.release(2 * MS, |f| out.push(f));
        assert_eq!(out, [1]);
        let now = 5_000 * MS;
        s.hold(now, now + 40 * MS, 2).unwrap();
        s.release(now + 39 * MS, |f| out.push(f));
        assert_eq!(out, [1]);
        s.release(now + 41 * MS, |f| out.push(f));
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn a_new_session_in_the_slot_starts_with_a_full_bucket() {
        let t = PoliceTable::new(4);
        let mut s = Session { rate_up_kbps: 8, burst_up: 1500, generation: 1, ..Default::default() };
        let now = 1_000 * MS;
        assert_eq!(t.check(2, &s, true, now, 1500, 0), Verdict::Conform);
        assert_eq!(t.check(2, &s, true, now, 1500, 0), Verdict::Exceed);
        assert_eq!(t.check(2, &s, false, now, 1500, 0), Verdict::Conform, "downstream is not limited");
        s.generation = 2;
        assert_eq!(t.check(2, &s, true, now, 1500, 0), Verdict::Conform);
        assert_eq!(t.check(9, &s, true, now, 1500, 0), Verdict::Conform, "out of range: not policed");
    }
}
