//! Which session slots' L2TP data the workers check instead of the
//! program: one bit per slot in `lns_fast_slots`, and in `lns_slot_marks`
//! the reasons a slot's bit must stay clear (a session displaced from it,
//! an address that is not the session's own). The bit is a cache of its
//! inputs that the program trusts: a bit wrongly set would let frames past
//! checks only the program makes. Any process may change an input at any
//! moment, without a lock, so every change is followed by a settle of the
//! bit ([`Maps::refresh_fast_slot`]), and a mark goes on before what it
//! guards exists. The protocol is [`FastSlots`], over any
//! [`AtomicWords`], so it is tested on plain memory.

use super::words::{bit_set, set_bit, settle_bit, AtomicWords};
use super::Maps;
use crate::abi::{self, Session, SessionState};
use crate::{Error, MmapArray};

/// The fast-slot protocol over `lns_fast_slots` (`bits`) and
/// `lns_slot_marks` (`marks`). A slot's bit may be set only while it has
/// no marks and its session is one whose frames the workers may check
/// (`session_fast`, read by the caller from the session table).
pub(super) struct FastSlots<'a, B: ?Sized, M: ?Sized> {
    pub bits: &'a B,
    pub marks: &'a M,
}

impl<B, M> FastSlots<'_, B, M>
where
    B: AtomicWords<Word = u64> + ?Sized,
    M: AtomicWords<Word = u32> + ?Sized,
{
    pub fn is_set(&self, index: u32) -> bool {
        bit_set(self.bits, index)
    }

    pub fn marks(&self, index: u32) -> u32 {
        self.marks.load(index as usize).unwrap_or(0)
    }

    /// Sets `mark` ([`abi::slot_mark`]) on `index`, then clears its bit: a
    /// concurrent [`FastSlots::refresh`] either sees the mark when it looks
    /// again after setting the bit, or set it before this clears it.
    pub fn mark(&self, index: u32, mark: u32) {
        self.marks.fetch_or(index as usize, mark);
        set_bit(self.bits, index, false);
    }

    /// Marks `index` around `publish`, which makes findable what the mark
    /// guards (a displaced session's key). Before, so the bit is clear
    /// before the program can find it; again after, so that a writer
    /// releasing the mark ([`FastSlots::release`]) that did not see it
    /// published cannot have left the mark clear.
    pub fn mark_around<E>(
        &self,
        index: u32,
        mark: u32,
        publish: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        self.mark(index, mark);
        publish()?;
        self.mark(index, mark);
        Ok(())
    }

    /// Takes `mark` off `index` unless `needed` (which looks for what the
    /// mark guards) still finds something, and settles the bit. `needed`
    /// is asked again after the clear: what a [`FastSlots::mark_around`]
    /// published meanwhile is findable by then, and its second mark may
    /// have come before this clear.
    pub fn release<E>(
        &self,
        index: u32,
        mark: u32,
        needed: impl Fn() -> Result<bool, E>,
        session_fast: impl Fn() -> Result<bool, E>,
    ) -> Result<(), E> {
        if needed()? {
            return Ok(());
        }
        self.marks.fetch_and(index as usize, !mark);
        if needed()? {
            self.mark(index, mark);
        }
        self.refresh(index, session_fast)
    }

    /// Takes `mark` off `index` once what it guarded is gone by this
    /// writer's own hand (the extra addresses of the slot's session, which
    /// is being removed), and settles the bit.
    pub fn unmark<E>(
        &self,
        index: u32,
        mark: u32,
        session_fast: impl Fn() -> Result<bool, E>,
    ) -> Result<(), E> {
        self.marks.fetch_and(index as usize, !mark);
        self.refresh(index, session_fast)
    }

    /// Brings slot `index`'s bit in line with its marks and session (see
    /// [`settle_bit`]). The marks are read first: a marked slot's session
    /// is not read at all.
    pub fn refresh<E>(&self, index: u32, session_fast: impl Fn() -> Result<bool, E>) -> Result<(), E> {
        settle_bit(self.bits, index, || {
            if self.marks.load(index as usize).unwrap_or(u32::MAX) != 0 {
                return Ok(false);
            }
            session_fast()
        })
    }
}

impl Maps {
    pub(super) fn fast(&self) -> FastSlots<'_, MmapArray<u64>, MmapArray<u32>> {
        FastSlots { bits: &self.fast_slots, marks: &self.slot_marks }
    }

    /// Are the frames of slot `index`'s session ones a worker may check?
    /// (See `lns_abi.h`: a forwarding session at its direct slot, not kept
    /// off the fast path.)
    pub(super) fn session_fast(&self, index: u32) -> Result<bool, Error> {
        let s = self.read_session(index)?;
        Ok(s.session_state() == Some(SessionState::Forwarding)
            && s.flags & Session::SLOW_PATH == 0
            && abi::direct_slot(s.key(), self.max_sessions()) == Some(index))
    }

    /// Brings slot `index`'s fast bit in line with its session and marks
    /// ([`FastSlots::refresh`]); every change to either is followed by this.
    pub fn refresh_fast_slot(&self, index: u32) -> Result<(), Error> {
        self.fast().refresh(index, || self.session_fast(index))
    }

    /// Is slot `index`'s bit set in `lns_fast_slots` (its L2TP data goes to
    /// the workers unchecked when the config says so)?
    pub fn fast_slot(&self, index: u32) -> bool {
        self.fast().is_set(index)
    }

    /// The marks of slot `index` ([`abi::slot_mark`]).
    pub fn slot_marks(&self, index: u32) -> u32 {
        self.fast().marks(index)
    }

    /// An address the caller points at slot `index` that is not one of
    /// the session's own (ipv4, SLAAC and delegated prefix): the workers
    /// check only those, so the program checks this slot's frames from
    /// now on (until the session is removed). Marked before the address
    /// exists, so no frame from it meets a worker's check.
    pub(super) fn note_address(&self, index: u32, own: impl Fn(&Session) -> bool) -> Result<(), Error> {
        let s = self.read_session(index)?;
        if s.session_state() == Some(SessionState::Free) || !own(&s) {
            self.fast().mark(index, abi::slot_mark::EXTRA);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};

    use super::super::words::testing::{pause, race, Shaky};
    use super::*;
    use abi::slot_mark::{DISPLACED, EXTRA};

    /// Slots in one word, so that writers of different slots also race on
    /// the word.
    const SLOTS: usize = 4;
    const ROUNDS: usize = 4000;

    /// The two arrays in plain memory, and each slot's session input.
    struct Model {
        bits: Shaky<AtomicU64>,
        marks: Shaky<AtomicU32>,
        session_fast: Vec<AtomicBool>,
    }

    impl Model {
        fn new() -> Model {
            Model {
                bits: Shaky::new(1, || AtomicU64::new(0)),
                marks: Shaky::new(SLOTS, || AtomicU32::new(0)),
                session_fast: (0..SLOTS).map(|_| AtomicBool::new(false)).collect(),
            }
        }

        fn fast(&self) -> FastSlots<'_, Shaky<AtomicU64>, Shaky<AtomicU32>> {
            FastSlots { bits: &self.bits, marks: &self.marks }
        }

        /// The session input of `slot` as a writer reads it, the other
        /// writers running on before it acts on what it read.
        fn session(&self, slot: usize) -> impl Fn() -> Result<bool, Infallible> + '_ {
            move || {
                let v = self.session_fast[slot].load(SeqCst);
                pause();
                Ok(v)
            }
        }

        fn refresh(&self, slot: usize) {
            self.fast().refresh(slot as u32, self.session(slot)).unwrap();
        }

        /// A writer changing the session (installed, forwarding, removed),
        /// then settling the bit.
        fn set_session(&self, slot: usize, fast: bool) {
            self.session_fast[slot].store(fast, SeqCst);
            pause();
            self.refresh(slot);
        }

        /// What every bit must be once the writers are done.
        fn check(&self) -> Option<String> {
            (0..SLOTS).find_map(|slot| {
                let marks = self.fast().marks(slot as u32);
                let want = marks == 0 && self.session_fast[slot].load(SeqCst);
                let got = self.fast().is_set(slot as u32);
                (got != want).then(|| format!("slot {slot}: bit {got}, marks {marks:#x}, want {want}"))
            })
        }
    }

    #[test]
    fn bit_follows_session_and_marks() {
        let m = Model::new();
        m.set_session(1, true);
        assert!(m.fast().is_set(1));
        assert!(!m.fast().is_set(0) && !m.fast().is_set(2), "neighbours in the word untouched");
        m.set_session(1, false);
        assert!(!m.fast().is_set(1));

        m.set_session(2, true);
        m.fast().mark(2, EXTRA);
        assert!(!m.fast().is_set(2), "an extra address clears the bit");
        m.refresh(2);
        assert!(!m.fast().is_set(2), "and keeps it clear");
        m.fast().unmark(2, EXTRA, m.session(2)).unwrap();
        assert!(m.fast().is_set(2), "the session's own addresses alone again");
        assert_eq!(m.fast().marks(2), 0);
    }

    #[test]
    fn displaced_mark_goes_with_the_last_displaced_session() {
        let m = Model::new();
        let displaced = [AtomicBool::new(false), AtomicBool::new(false)];
        let needed = || Ok::<_, Infallible>(displaced.iter().any(|d| d.load(SeqCst)));
        m.set_session(0, true);
        for d in &displaced {
            let publish = || {
                d.store(true, SeqCst);
                Ok::<_, Infallible>(())
            };
            m.fast().mark_around(0, DISPLACED, publish).unwrap();
            assert!(!m.fast().is_set(0));
        }
        displaced[0].store(false, SeqCst);
        m.fast().release(0, DISPLACED, needed, m.session(0)).unwrap();
        assert_eq!(m.fast().marks(0), DISPLACED, "one displaced session left");
        assert!(!m.fast().is_set(0));
        displaced[1].store(false, SeqCst);
        m.fast().release(0, DISPLACED, needed, m.session(0)).unwrap();
        assert_eq!(m.fast().marks(0), 0);
        assert!(m.fast().is_set(0));
    }

    #[test]
    fn a_publish_that_fails_leaves_the_mark() {
        let m = Model::new();
        m.set_session(0, true);
        assert_eq!(m.fast().mark_around(0, DISPLACED, || Err("full")), Err("full"));
        assert_eq!(m.fast().marks(0), DISPLACED);
        assert!(!m.fast().is_set(0));
    }

    /// The plain arrays themselves, without the pauses.
    #[test]
    fn out_of_range_slots_are_never_fast() {
        let bits: Vec<AtomicU64> = (0..1).map(|_| AtomicU64::new(0)).collect();
        let marks: Vec<AtomicU32> = (0..64).map(|_| AtomicU32::new(0)).collect();
        let fast = FastSlots { bits: &bits[..], marks: &marks[..] };
        fast.refresh(3, || Ok::<_, Infallible>(true)).unwrap();
        assert!(fast.is_set(3));
        fast.refresh(64, || Ok::<_, Infallible>(true)).unwrap();
        fast.mark(64, EXTRA);
        assert!(!fast.is_set(64));
        assert_eq!(fast.marks(64), 0);
        assert_eq!(bits[0].load(SeqCst), 1 << 3);
    }

    /// Writers change one slot's session at once and settle its bit; the
    /// bit must end as the last change calls for, in every round.
    #[test]
    fn racing_writers_settle_on_the_final_inputs() {
        let m = Model::new();
        race(
            3,
            ROUNDS,
            0x5eed_0001,
            |round, _, rng| {
                let slot = round % SLOTS;
                m.set_session(slot, rng.coin());
                // A writer of another slot of the same word.
                if rng.below(4) == 0 {
                    m.set_session((slot + 1) % SLOTS, rng.coin());
                }
            },
            |_| m.check(),
        );
    }

    /// Sessions displaced from slot 0 come and go (each writer its own)
    /// while another writer changes slot 0's session: while one lives
    /// elsewhere, the mark stays and the bit stays clear.
    #[test]
    fn displaced_mark_keeps_the_bit_clear_under_races() {
        let m = Model::new();
        let displaced: Vec<AtomicBool> = (0..2).map(|_| AtomicBool::new(false)).collect();
        let needed = || {
            let v = displaced.iter().any(|d| d.load(SeqCst));
            pause();
            Ok::<_, Infallible>(v)
        };
        race(
            3,
            ROUNDS,
            0x5eed_0002,
            |_, writer, rng| {
                let Some(mine) = displaced.get(writer) else {
                    m.set_session(0, rng.coin());
                    return;
                };
                match (mine.load(SeqCst), rng.coin()) {
                    (_, false) => {}
                    (false, true) => {
                        let publish = || {
                            pause();
                            mine.store(true, SeqCst);
                            Ok::<_, Infallible>(())
                        };
                        m.fast().mark_around(0, DISPLACED, publish).unwrap();
                    }
                    (true, true) => {
                        mine.store(false, SeqCst);
                        pause();
                        m.fast().release(0, DISPLACED, needed, m.session(0)).unwrap();
                    }
                }
            },
            |_| {
                let living = displaced.iter().any(|d| d.load(SeqCst));
                if living && m.fast().marks(0) & DISPLACED == 0 {
                    return Some("a displaced session lives but its slot is not marked".into());
                }
                m.check()
            },
        );
    }

    /// One writer points an extra address at slot 0 or removes the
    /// session's extras, while others change its session.
    #[test]
    fn extra_mark_keeps_the_bit_clear_under_races() {
        let m = Model::new();
        race(
            3,
            ROUNDS,
            0x5eed_0003,
            |_, writer, rng| match (writer, rng.below(3)) {
                (0, 0) => m.fast().unmark(0, EXTRA, m.session(0)).unwrap(),
                (0, _) => m.fast().mark(0, EXTRA),
                _ => m.set_session(0, rng.coin()),
            },
            |_| {
                if m.fast().marks(0) & EXTRA != 0 && m.fast().is_set(0) {
                    return Some("an extra address but the bit is set".into());
                }
                m.check()
            },
        );
    }
}
