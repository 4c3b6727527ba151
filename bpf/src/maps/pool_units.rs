//! Which pool units' downstream frames the workers route without the
//! program's lookups: one bit per unit in `lns_pool_bits`, and in
//! `lns_pool_sessions` the session each unit belongs to (read by the
//! workers). A unit follows its address in the subscriber tables: when the
//! address is pointed at a session whose own address it is, the unit names
//! that session; any other write takes the unit off the fast path. Writers
//! in several processes change entries and sessions without a lock, so
//! each change is followed by a settle of the unit's bit
//! ([`Maps::refresh_pool_unit`]). The protocol is [`PoolUnits`], over any
//! [`AtomicWords`], so it is tested on plain memory.

use std::net::IpAddr;

use super::sessions::own_addresses;
use super::words::{bit_set, bits_set, settle_bit, AtomicWords};
use super::Maps;
use crate::abi::{self, SessionState};
use crate::{Error, MmapArray};

/// The pool-unit protocol over `lns_pool_bits` (`bits`) and
/// `lns_pool_sessions` (`sessions`: session index + 1, 0 for none). A
/// unit's bit may be set only while its entry names a session that `owns`
/// it (read by the caller from the session table: forwarding, and one of
/// its own addresses is the unit).
pub(super) struct PoolUnits<'a, B: ?Sized, S: ?Sized> {
    pub bits: &'a B,
    pub sessions: &'a S,
}

impl<B, S> PoolUnits<'_, B, S>
where
    B: AtomicWords<Word = u64> + ?Sized,
    S: AtomicWords<Word = u32> + ?Sized,
{
    pub fn is_set(&self, unit: u32) -> bool {
        bit_set(self.bits, unit)
    }

    /// The session that `unit`'s entry names, if any.
    pub fn session(&self, unit: u32) -> Option<u32> {
        self.sessions.load(unit as usize).and_then(|v| v.checked_sub(1))
    }

    /// Points `unit` at `session` (`None`: at none, off the fast path),
    /// then settles its bit: the entry is written first, so a settle that
    /// runs after this one's reads it.
    pub fn point<E>(
        &self,
        unit: u32,
        session: Option<u32>,
        owns: impl Fn(u32) -> Result<bool, E>,
    ) -> Result<(), E> {
        self.sessions.store(unit as usize, session.map_or(0, |i| i.wrapping_add(1)));
        self.refresh(unit, owns)
    }

    /// Brings `unit`'s bit in line with its entry and the session it names
    /// (see [`settle_bit`]).
    pub fn refresh<E>(&self, unit: u32, owns: impl Fn(u32) -> Result<bool, E>) -> Result<(), E> {
        settle_bit(self.bits, unit, || match self.session(unit) {
            Some(index) => owns(index),
            None => Ok(false),
        })
    }

    /// Every bit and entry cleared (before deriving them again).
    pub fn clear(&self) {
        for w in 0..self.bits.len() {
            self.bits.fetch_and(w, 0);
        }
        for u in 0..self.sessions.len() {
            self.sessions.store(u, 0);
        }
    }

    /// Units that name a session, and bits set, for leak checks.
    pub fn occupancy(&self) -> (usize, usize) {
        let named = (0..self.sessions.len()).filter(|&u| self.sessions.load(u) != Some(0)).count();
        (named, bits_set(self.bits))
    }
}

impl Maps {
    pub(super) fn units(&self) -> PoolUnits<'_, MmapArray<u64>, MmapArray<u32>> {
        PoolUnits { bits: &self.pool_bits, sessions: &self.pool_sessions }
    }

    /// The subscriber pools the loader declared.
    pub fn pools(&self) -> &[abi::Pool] {
        &self.pools
    }

    /// The pool unit that `addr`/`len` is exactly, if any.
    pub fn pool_unit(&self, addr: IpAddr, len: u8) -> Option<u32> {
        self.pools.iter().find_map(|p| p.unit_of(addr, len))
    }

    /// Does session `index` own `unit` (`lns_abi.h`: a forwarding session,
    /// not kept off the fast path, one of whose own addresses is the
    /// unit)? A slot that cannot be read owns nothing.
    fn unit_owned(&self, unit: u32, index: u32) -> Result<bool, Error> {
        let Ok(s) = self.read_session(index) else { return Ok(false) };
        Ok(s.session_state() == Some(SessionState::Forwarding)
            && s.flags & abi::Session::SLOW_PATH == 0
            && own_addresses(&s).any(|(a, l)| self.pool_unit(a, l) == Some(unit)))
    }

    /// After `addr`/`len` was pointed at session `index` in the address
    /// maps: a pool unit follows it when it is the session's own address;
    /// otherwise the unit leaves the fast path (whoever had it), so the
    /// program's lookups, which now answer `index`, decide.
    pub(super) fn follow_unit(&self, addr: IpAddr, len: u8, index: u32) -> Result<(), Error> {
        let Some(u) = self.pool_unit(addr, len) else { return Ok(()) };
        let s = self.read_session(index)?;
        // Compared as units: a SLAAC prefix may be written with bits set
        // past its length, which the address maps' keys drop.
        let own = s.session_state() != Some(SessionState::Free)
            && own_addresses(&s).any(|(a, l)| self.pool_unit(a, l) == Some(u));
        self.units().point(u, own.then_some(index), |i| self.unit_owned(u, i))
    }

    /// After `addr`/`len` left the address maps: its unit leaves the fast path.
    pub(super) fn drop_unit(&self, addr: IpAddr, len: u8) -> Result<(), Error> {
        let Some(u) = self.pool_unit(addr, len) else { return Ok(()) };
        self.units().point(u, None, |i| self.unit_owned(u, i))
    }

    /// Brings unit `unit`'s bit in line with its entry and session
    /// ([`PoolUnits::refresh`]).
    pub fn refresh_pool_unit(&self, unit: u32) -> Result<(), Error> {
        self.units().refresh(unit, |i| self.unit_owned(unit, i))
    }

    /// Is pool unit `unit`'s bit set (its downstream frames go to the
    /// workers without the program's lookups)?
    pub fn pool_unit_fast(&self, unit: u32) -> bool {
        self.units().is_set(unit)
    }

    /// The session that pool unit `unit` names, if any.
    pub fn pool_unit_session(&self, unit: u32) -> Option<u32> {
        self.units().session(unit)
    }

    /// Clears every unit and derives them again from the installed
    /// sessions (the loader, when the pools may have changed).
    pub(crate) fn rebuild_pool_units(&self) -> Result<(), Error> {
        self.units().clear();
        if self.pools.is_empty() {
            return Ok(());
        }
        for (index, s) in self.sessions()? {
            for (addr, len) in own_addresses(&s) {
                if let Some(u) = self.pool_unit(addr, len) {
                    self.units().point(u, Some(index), |i| self.unit_owned(u, i))?;
                }
            }
        }
        Ok(())
    }

    /// `lns_pool_sessions` mapped into this process, for a worker.
    pub fn mmap_pool_sessions(&self) -> Result<crate::MmapArray<u32>, Error> {
        crate::MmapArray::map(&self.pool_sessions_map)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};

    use super::super::words::testing::{pause, race, Shaky};
    use super::*;

    /// Units in one word; session `i`'s own address is unit `i % UNITS`,
    /// so two sessions compete for each unit (an address moving from one
    /// subscriber to the next).
    const UNITS: usize = 4;
    const SESSIONS: usize = 2 * UNITS;
    const ROUNDS: usize = 4000;

    struct Model {
        bits: Shaky<AtomicU64>,
        entries: Shaky<AtomicU32>,
        forwarding: Vec<AtomicBool>,
    }

    impl Model {
        fn new() -> Model {
            Model {
                bits: Shaky::new(1, || AtomicU64::new(0)),
                entries: Shaky::new(UNITS, || AtomicU32::new(0)),
                forwarding: (0..SESSIONS).map(|_| AtomicBool::new(false)).collect(),
            }
        }

        fn units(&self) -> PoolUnits<'_, Shaky<AtomicU64>, Shaky<AtomicU32>> {
            PoolUnits { bits: &self.bits, sessions: &self.entries }
        }

        fn own(index: u32, unit: u32) -> bool {
            index as usize % UNITS == unit as usize
        }

        /// The session table as a writer reads it, the other writers
        /// running on before it acts on what it read.
        fn owns(&self, unit: u32) -> impl Fn(u32) -> Result<bool, Infallible> + '_ {
            move |index| {
                let v = self.forwarding.get(index as usize).is_some_and(|f| f.load(SeqCst))
                    && Self::own(index, unit);
                pause();
                Ok(v)
            }
        }

        /// An address of `unit` pointed at session `index` (its own
        /// address or not), as [`Maps::follow_unit`] does.
        fn follow(&self, unit: u32, index: u32) {
            let session = Self::own(index, unit).then_some(index);
            self.units().point(unit, session, self.owns(unit)).unwrap();
        }

        fn drop_unit(&self, unit: u32) {
            self.units().point(unit, None, self.owns(unit)).unwrap();
        }

        /// A session's state changes, then its unit is settled.
        fn set_forwarding(&self, index: u32, on: bool) {
            self.forwarding[index as usize].store(on, SeqCst);
            pause();
            let unit = index % UNITS as u32;
            self.units().refresh(unit, self.owns(unit)).unwrap();
        }

        /// Entries and bits agree once the writers are done.
        fn check(&self) -> Option<String> {
            (0..UNITS as u32).find_map(|unit| {
                let named = self.units().session(unit);
                let want =
                    named.is_some_and(|i| self.forwarding[i as usize].load(SeqCst) && Self::own(i, unit));
                let got = self.units().is_set(unit);
                (got != want).then(|| format!("unit {unit}: bit {got}, entry names {named:?}, want {want}"))
            })
        }
    }

    #[test]
    fn bit_follows_entry_and_session() {
        let m = Model::new();
        m.set_forwarding(1, true);
        m.follow(1, 1);
        assert_eq!(m.units().session(1), Some(1));
        assert!(m.units().is_set(1));
        assert!(!m.units().is_set(0) && !m.units().is_set(2), "neighbours in the word untouched");

        m.follow(1, 2);
        assert_eq!(m.units().session(1), None, "another session's address: off the fast path");
        assert!(!m.units().is_set(1));

        m.follow(1, 5);
        assert_eq!(m.units().session(1), Some(5));
        assert!(!m.units().is_set(1), "its session is not forwarding");
        m.set_forwarding(5, true);
        assert!(m.units().is_set(1));

        m.drop_unit(1);
        assert_eq!(m.units().session(1), None);
        assert!(!m.units().is_set(1));
        assert_eq!(m.units().occupancy(), (0, 0));

        m.follow(1, 5);
        m.follow(2, 2);
        assert_eq!(m.units().occupancy(), (2, 1));
        m.units().clear();
        assert_eq!(m.units().occupancy(), (0, 0));
    }

    /// Writers follow, drop and change the sessions of one unit at once
    /// (and now and then of another unit of the word); the unit's entry
    /// and bit must agree in every round.
    #[test]
    fn entries_and_bits_agree_after_racing_follow_and_drop() {
        let m = Model::new();
        race(
            3,
            ROUNDS,
            0x5eed_0004,
            |round, _, rng| {
                let unit = (round % UNITS) as u32;
                let session = unit + UNITS as u32 * rng.below(2) as u32;
                match rng.below(5) {
                    0 | 1 => m.follow(unit, session),
                    2 => m.follow(unit, rng.below(SESSIONS as u64) as u32),
                    3 => m.drop_unit(unit),
                    _ => m.set_forwarding(session, rng.coin()),
                }
                if rng.below(4) == 0 {
                    let other = (unit + 1) % UNITS as u32;
                    m.follow(other, other + UNITS as u32 * rng.below(2) as u32);
                }
            },
            |_| m.check(),
        );
    }
}
