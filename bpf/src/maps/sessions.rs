//! The session table and its keys: `lns_sessions` (one slot per session),
//! `lns_session_ids` ((tunnel, session) → slot) and `lns_session_ns` (the
//! data messages' Ns). A session is installed, rewritten and removed here,
//! in an order that never lets the program find a key or an address whose
//! slot is half written, and that keeps each slot's fast bit and marks
//! (`fast_slots`) and its addresses' pool units (`pool_units`) in step.

use std::net::IpAddr;

use libbpf_rs::{MapCore, MapFlags};

use super::{ctx, delete_if_present, Maps};
use crate::abi::{self, Session, SessionKey, SessionState};
use crate::Error;

impl Maps {
    pub fn max_sessions(&self) -> u32 {
        self.sessions.max_entries()
    }

    pub(super) fn check_index(&self, index: u32) -> Result<(), Error> {
        if index >= self.sessions.max_entries() {
            return Err(Error::SessionIndex { index, max: self.sessions.max_entries() });
        }
        Ok(())
    }

    /// The entry in slot `index`, read from the mapped table: what the
    /// last write left there (writes go through the map's file descriptor
    /// and land in the same memory).
    pub fn read_session(&self, index: u32) -> Result<Session, Error> {
        self.check_index(index)?;
        self.sessions_mm.get(index as usize).ok_or(Error::Missing("lns_sessions entry"))
    }

    /// Writes slot `index` through the mapped table. The kernel's own
    /// update of an array entry is a plain copy too, so a reader (the
    /// program, a worker) racing a rewrite sees what it would have seen
    /// then; the fence orders the entry before whatever the caller
    /// publishes next (a key, an address, a fast bit).
    fn write_session(&self, index: u32, s: &Session) -> Result<(), Error> {
        if !self.sessions_mm.set(index as usize, *s) {
            return Err(Error::SessionIndex { index, max: self.sessions.max_entries() });
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Installs a session in slot `index`: the entry, its (tunnel, session)
    /// key and the subscriber addresses it holds (IPv4 /32, SLAAC prefix,
    /// delegated prefix).
    ///
    /// The entry is written before anything points at it, so the program
    /// never finds a key or an address whose slot is half written.
    ///
    /// A key another slot holds is refused ([`Error::KeyInUse`]) and the
    /// slot left free: the key is published only if absent
    /// (`BPF_NOEXIST`), which is also what checks for it, in the one
    /// syscall that writes it.
    pub fn install_session(&self, index: u32, s: &Session) -> Result<(), Error> {
        let old = self.read_session(index)?;
        if old.session_state() != Some(SessionState::Free) {
            return Err(Error::SlotInUse(index));
        }
        self.write_session(index, s)?;
        // A new session's data messages are numbered from 0 (RFC 2661 §5.4).
        if !self.session_ns_mm.store(index as usize, 0) {
            return Err(Error::SessionIndex { index, max: self.sessions.max_entries() });
        }
        let key = s.key();
        let publish = || match self.session_ids.update(
            bytemuck::bytes_of(&key),
            &index.to_ne_bytes(),
            MapFlags::NO_EXIST,
        ) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => {
                Err(Error::KeyInUse { tunnel: key.tunnel_id, session: key.session_id })
            }
            Err(e) => Err(Error::bpf("writing lns_session_ids", e)),
        };
        // A session away from its direct slot: the program must look up
        // the key in the hash whenever it names that slot, so the slot is
        // marked around the key becoming findable.
        let displaced = self.displaced_slot(key, index);
        let published = match displaced {
            Some(d) => self.fast().mark_around(d, abi::slot_mark::DISPLACED, publish),
            None => publish(),
        };
        if let Err(e) = published {
            // Nothing points at the slot: it goes back to free as it was
            // (its generation too), and a mark put on for nothing comes
            // off unless another displaced session still needs it.
            self.write_session(index, &old)?;
            if let Some(d) = displaced {
                self.release_displaced(d)?;
            }
            return Err(e);
        }
        self.install_addresses(index, s)?;
        self.refresh_fast_slot(index)
    }

    /// Rewrites a live session (state change, new addresses after IPCP),
    /// keeping its key. Addresses it no longer holds are removed first.
    pub fn update_session(&self, index: u32, s: &Session) -> Result<(), Error> {
        let old = self.read_session(index)?;
        if old.session_state() == Some(SessionState::Free) {
            return Err(Error::Missing("session to update"));
        }
        if old.key() != s.key() {
            return Err(Error::KeyChange(index));
        }
        self.remove_addresses(&old)?;
        self.write_session(index, s)?;
        self.install_addresses(index, s)?;
        self.refresh_fast_slot(index)
    }

    /// Removes a session and everything that points at it, in the reverse
    /// order of [`Maps::install_session`]. Returns the entry it removed.
    pub fn remove_session(&self, index: u32) -> Result<Option<Session>, Error> {
        let old = self.read_session(index)?;
        if old.session_state() == Some(SessionState::Free) {
            return Ok(None);
        }
        self.remove_addresses(&old)?;
        delete_if_present(
            &self.session_ids,
            bytemuck::bytes_of(&old.key()),
            "deleting from lns_session_ids",
        )?;
        // Free, keeping its generation: the next session here is the
        // next generation (a worker's per-slot state, its policing bucket,
        // starts over), and writers need not remember it elsewhere.
        self.write_session(index, &Session { generation: old.generation, ..Session::default() })?;
        // Addresses the caller added besides the session's own were the
        // caller's to remove; the next session here starts without.
        self.fast().unmark(index, abi::slot_mark::EXTRA, || self.session_fast(index))?;
        if let Some(d) = self.displaced_slot(old.key(), index) {
            self.release_displaced(d)?;
        }
        Ok(Some(old))
    }

    /// The direct slot of `key` when a session with it lives in `index`
    /// instead: the slot its "displaced" mark goes on.
    fn displaced_slot(&self, key: SessionKey, index: u32) -> Option<u32> {
        abi::direct_slot(key, self.max_sessions()).filter(|&d| d != index)
    }

    /// Takes the "displaced" mark off direct slot `d` unless a session
    /// still lives away from it.
    fn release_displaced(&self, d: u32) -> Result<(), Error> {
        self.fast().release(d, abi::slot_mark::DISPLACED, || self.displaced_from(d), || self.session_fast(d))
    }

    /// Is a session other than the one in `index` still living away from
    /// its direct slot `index`? A walk over every key: only for removing
    /// such a session, which only an operator's static sessions are.
    fn displaced_from(&self, index: u32) -> Result<bool, Error> {
        for key in self.session_ids.keys() {
            let Ok(k) = bytemuck::try_pod_read_unaligned::<SessionKey>(&key) else { continue };
            if abi::direct_slot(k, self.max_sessions()) == Some(index)
                && self.find_session(k)?.is_some_and(|i| i != index)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn install_addresses(&self, index: u32, s: &Session) -> Result<(), Error> {
        if let Some(v4) = s.subscriber_ipv4() {
            self.put_subscriber_v4(v4, index)?;
        }
        if let Some((p, len)) = s.subscriber_ipv6_prefix() {
            self.put_route_v6(p, len, index)?;
        }
        if let Some((p, len)) = s.subscriber_delegated_prefix() {
            self.put_route_v6(p, len, index)?;
        }
        Ok(())
    }

    /// Each removal takes the address's pool unit off the fast path before
    /// the address leaves the maps ([`Maps::remove_subscriber_v4`],
    /// [`Maps::remove_route_v6`]).
    fn remove_addresses(&self, s: &Session) -> Result<(), Error> {
        if let Some(v4) = s.subscriber_ipv4() {
            self.remove_subscriber_v4(v4)?;
        }
        if let Some((p, len)) = s.subscriber_ipv6_prefix() {
            self.remove_route_v6(p, len)?;
        }
        if let Some((p, len)) = s.subscriber_delegated_prefix() {
            self.remove_route_v6(p, len)?;
        }
        Ok(())
    }

    /// The slot of the session with these local ids.
    pub fn find_session(&self, key: SessionKey) -> Result<Option<u32>, Error> {
        let v = self
            .session_ids
            .lookup(bytemuck::bytes_of(&key), MapFlags::ANY)
            .map_err(ctx("reading lns_session_ids"))?;
        Ok(v.and_then(|b| bytemuck::try_pod_read_unaligned::<u32>(&b).ok()))
    }

    /// Every installed session, by slot (a syscall per slot: for tools and
    /// tests, not for a packet path).
    pub fn sessions(&self) -> Result<Vec<(u32, Session)>, Error> {
        let mut out = Vec::new();
        for key in self.session_ids.keys() {
            if let Ok(k) = bytemuck::try_pod_read_unaligned::<SessionKey>(&key) {
                if let Some(i) = self.find_session(k)? {
                    out.push((i, self.read_session(i)?));
                }
            }
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// The slot the program looks at first for `key` ([`crate::abi::direct_slot`]),
    /// if it is in the table and free: where a writer should put the session.
    pub fn free_direct_slot(&self, key: SessionKey) -> Result<Option<u32>, Error> {
        let Some(slot) = crate::abi::direct_slot(key, self.max_sessions()) else { return Ok(None) };
        let s = self.read_session(slot)?;
        Ok((s.session_state() == Some(SessionState::Free)).then_some(slot))
    }

    /// The session table mapped into this process (the one mapping these
    /// maps hold).
    pub fn mmap_sessions(&self) -> Result<std::sync::Arc<crate::MmapArray<Session>>, Error> {
        Ok(self.sessions_mm.clone())
    }

    /// The per-session Ns counters (`lns_session_ns`) mapped into this
    /// process; take numbers with [`crate::MmapArray::fetch_add`].
    pub fn mmap_session_ns(&self) -> Result<std::sync::Arc<crate::MmapArray<u64>>, Error> {
        Ok(self.session_ns_mm.clone())
    }
}

/// A session's own addresses with their lengths: its IPv4 /32, SLAAC
/// prefix and delegated prefix.
pub(super) fn own_addresses(s: &Session) -> impl Iterator<Item = (IpAddr, u8)> {
    let v4 = s.subscriber_ipv4().map(|a| (IpAddr::V4(a), 32));
    let v6 = s.subscriber_ipv6_prefix().map(|(a, l)| (IpAddr::V6(a), l));
    let pd = s.subscriber_delegated_prefix().map(|(a, l)| (IpAddr::V6(a), l));
    v4.into_iter().chain(v6).chain(pd)
}
