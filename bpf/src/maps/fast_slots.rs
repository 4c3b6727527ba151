//! Which session slots' L2TP data the workers check instead of the
//! program: one bit per slot in `lns_fast_slots`, and in `lns_slot_marks`
//! the reasons a slot's bit must stay clear (a session displaced from it,
//! an address that is not the session's own). The bit is a cache of its
//! inputs that the program trusts: a bit wrongly set would let frames past
//! checks only the program makes, so every writer that changes an input
//! settles the bit after ([`Maps::refresh_fast_slot`]), and marks go on
//! before what they guard exists.

use super::words::{bit_set, set_bit, settle_bit};
use super::Maps;
use crate::abi::{self, Session, SessionState};
use crate::Error;

impl Maps {
    /// Sets `mark` ([`abi::slot_mark`]) on `index`, then clears its fast bit:
    /// a concurrent [`Maps::refresh_fast_slot`] either sees the mark when it
    /// looks again after setting the bit, or set it before this clears it.
    pub(super) fn mark_slot(&self, index: u32, mark: u32) {
        self.slot_marks.fetch_or(index as usize, mark);
        set_bit(&self.fast_slots, index, false);
    }

    /// Should slot `index`'s bit in `lns_fast_slots` be set? (See
    /// `lns_abi.h`: a forwarding session at its direct slot, no marks.)
    fn fast_wanted(&self, index: u32) -> Result<bool, Error> {
        if self.slot_marks.load(index as usize).unwrap_or(u32::MAX) != 0 {
            return Ok(false);
        }
        let s = self.read_session(index)?;
        Ok(s.session_state() == Some(SessionState::Forwarding)
            && abi::direct_slot(s.key(), self.max_sessions()) == Some(index))
    }

    /// Brings slot `index`'s fast bit in line with its session and marks
    /// (see [`settle_bit`]); every change to either is followed by this.
    pub fn refresh_fast_slot(&self, index: u32) -> Result<(), Error> {
        settle_bit(&self.fast_slots, index, || self.fast_wanted(index))
    }

    /// Is slot `index`'s bit set in `lns_fast_slots` (its L2TP data goes to
    /// the workers unchecked when the config says so)?
    pub fn fast_slot(&self, index: u32) -> bool {
        bit_set(&self.fast_slots, index)
    }

    /// The marks of slot `index` ([`abi::slot_mark`]).
    pub fn slot_marks(&self, index: u32) -> u32 {
        self.slot_marks.load(index as usize).unwrap_or(0)
    }

    /// An address the caller points at slot `index` that is not one of
    /// the session's own (ipv4, SLAAC and delegated prefix): the workers
    /// check only those, so the program checks this slot's frames from
    /// now on (until the session is removed). Marked before the address
    /// exists, so no frame from it meets a worker's check.
    pub(super) fn note_address(&self, index: u32, own: impl Fn(&Session) -> bool) -> Result<(), Error> {
        let s = self.read_session(index)?;
        if s.session_state() == Some(SessionState::Free) || !own(&s) {
            self.mark_slot(index, abi::slot_mark::EXTRA);
        }
        Ok(())
    }
}
