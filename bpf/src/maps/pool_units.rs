//! Which pool units' downstream frames the workers route without the
//! program's lookups: one bit per unit in `lns_pool_bits`, and in
//! `lns_pool_sessions` the session each unit belongs to (read by the
//! workers). A unit follows its address in the subscriber tables: when the
//! address is pointed at a session whose own address it is, the unit names
//! that session; any other write takes the unit off the fast path, and its
//! bit is settled after every change ([`Maps::refresh_pool_unit`]).

use std::net::IpAddr;

use super::sessions::own_addresses;
use super::words::{bit_set, settle_bit};
use super::Maps;
use crate::abi::{self, SessionState};
use crate::Error;

impl Maps {
    /// The subscriber pools the loader declared.
    pub fn pools(&self) -> &[abi::Pool] {
        &self.pools
    }

    /// The pool unit that `addr`/`len` is exactly, if any.
    pub fn pool_unit(&self, addr: IpAddr, len: u8) -> Option<u32> {
        self.pools.iter().find_map(|p| p.unit_of(addr, len))
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
        self.pool_sessions.store(u as usize, if own { index.wrapping_add(1) } else { 0 });
        self.refresh_pool_unit(u)
    }

    /// After `addr`/`len` left the address maps: its unit leaves the fast path.
    pub(super) fn drop_unit(&self, addr: IpAddr, len: u8) -> Result<(), Error> {
        let Some(u) = self.pool_unit(addr, len) else { return Ok(()) };
        self.pool_sessions.store(u as usize, 0);
        self.refresh_pool_unit(u)
    }

    /// Should unit `unit`'s bit be set? (`lns_abi.h`: its entry names a
    /// forwarding session one of whose own addresses is the unit.)
    fn pool_wanted(&self, unit: u32) -> Result<bool, Error> {
        let Some(index) = self.pool_sessions.load(unit as usize).and_then(|v| v.checked_sub(1)) else {
            return Ok(false);
        };
        let Ok(s) = self.read_session(index) else { return Ok(false) };
        Ok(s.session_state() == Some(SessionState::Forwarding)
            && own_addresses(&s).any(|(a, l)| self.pool_unit(a, l) == Some(unit)))
    }

    /// Brings unit `unit`'s bit in line with its entry and session (see
    /// [`settle_bit`]).
    pub fn refresh_pool_unit(&self, unit: u32) -> Result<(), Error> {
        settle_bit(&self.pool_bits, unit, || self.pool_wanted(unit))
    }

    /// Is pool unit `unit`'s bit set (its downstream frames go to the
    /// workers without the program's lookups)?
    pub fn pool_unit_fast(&self, unit: u32) -> bool {
        bit_set(&self.pool_bits, unit)
    }

    /// The session that pool unit `unit` names, if any.
    pub fn pool_unit_session(&self, unit: u32) -> Option<u32> {
        self.pool_sessions.load(unit as usize).and_then(|v| v.checked_sub(1))
    }

    /// Clears every unit and derives them again from the installed
    /// sessions (the loader, when the pools may have changed).
    pub(crate) fn rebuild_pool_units(&self) -> Result<(), Error> {
        for w in 0..self.pool_bits.len() {
            self.pool_bits.fetch_and(w, 0);
        }
        for u in 0..self.pool_sessions.len() {
            self.pool_sessions.store(u, 0);
        }
        if self.pools.is_empty() {
            return Ok(());
        }
        for (index, s) in self.sessions()? {
            for (addr, len) in own_addresses(&s) {
                if let Some(u) = self.pool_unit(addr, len) {
                    self.pool_sessions.store(u as usize, index.wrapping_add(1));
                    self.refresh_pool_unit(u)?;
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
