//! Typed access to the steering program's maps, for the process that loaded
//! them and for processes that open their pins (control plane, lnsctl).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::abi::{
    self, Config, Counter, FlatEntry, Iface, LpmV4, LpmV6, Session, SessionKey, SessionState, SessionStats,
};
use crate::Error;
use crate::MmapArray;

/// Every map the program defines, by the name it is pinned under.
pub const MAP_NAMES: [&str; 22] = [
    "lns_config",
    "lns_ifaces",
    "lns_xsks",
    "lns_sessions",
    "lns_session_ids",
    "lns_sub_v4",
    "lns_sub_v6",
    "lns_sub_v6_64",
    "lns_sub_v6_long",
    "lns_sub_v4_flat",
    "lns_sub_v6_flat",
    "lns_sub_v4_lpm",
    "lns_sub_v6_lpm",
    "lns_counters",
    "lns_neigh_miss",
    "lns_session_stats",
    "lns_nh_cache",
    "lns_session_ns",
    "lns_fast_slots",
    "lns_slot_marks",
    "lns_pool_bits",
    "lns_pool_sessions",
];

/// Descriptors of every map of one instance.
#[derive(Debug)]
pub struct Maps {
    pub(crate) config: MapHandle,
    pub(crate) ifaces: MapHandle,
    pub(crate) xsks: MapHandle,
    pub(crate) sessions: MapHandle,
    pub(crate) session_ids: MapHandle,
    pub(crate) sub_v4: MapHandle,
    pub(crate) sub_v6: MapHandle,
    pub(crate) sub_v6_64: MapHandle,
    pub(crate) sub_v6_long: MapHandle,
    pub(crate) sub_v4_flat: FlatTable,
    pub(crate) sub_v6_flat: FlatTable,
    pub(crate) sub_v4_lpm: MapHandle,
    pub(crate) sub_v6_lpm: MapHandle,
    pub(crate) counters: MapHandle,
    pub(crate) neigh_miss: MapHandle,
    pub(crate) session_stats: MapHandle,
    pub(crate) session_ns: MapHandle,
    /// `lns_fast_slots`, one bit per slot ([`Maps::refresh_fast_slot`]).
    pub(crate) fast_slots: MmapArray<u64>,
    /// `lns_slot_marks` ([`abi::slot_mark`]).
    pub(crate) slot_marks: MmapArray<u32>,
    /// `lns_pool_bits`, one bit per pool unit ([`Maps::refresh_pool_unit`]).
    pub(crate) pool_bits: MmapArray<u64>,
    /// `lns_pool_sessions`: session index + 1 per pool unit.
    pub(crate) pool_sessions: MmapArray<u32>,
    pub(crate) pool_sessions_map: MapHandle,
    /// The pools of `lns_config`, fixed by the loader.
    pub(crate) pools: Vec<abi::Pool>,
}

pub(crate) fn read_config(config: &MapHandle) -> Result<Config, Error> {
    let v = config
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(ctx("reading lns_config"))?
        .ok_or(Error::Missing("lns_config entry"))?;
    bytemuck::try_pod_read_unaligned(&v).map_err(|_| Error::Missing("lns_config value size"))
}

/// A flat subscriber table (`lns_sub_v4_flat`, `lns_sub_v6_flat`), mapped
/// into this process: open addressing over an mmap'd array, written with
/// compare-and-swap so that several processes (control plane, lnsctl) can
/// write it at once and the program never sees half an entry. It only
/// speeds lookups up: the program checks every entry against the session
/// it names and falls back to the hash maps, so an entry that cannot be
/// placed (its probe run full) or is lost to a race costs speed, not
/// correctness. (Hand-written: no crate does open addressing over memory
/// shared with a BPF program.)
pub(crate) struct FlatTable {
    words: MmapArray<u64>,
    /// 0: no table (then nothing is written).
    shift: u32,
}

impl std::fmt::Debug for FlatTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatTable").field("entries", &self.words.len()).field("shift", &self.shift).finish()
    }
}

impl FlatTable {
    pub(crate) fn map(handle: &MapHandle, shift: u32) -> Result<FlatTable, Error> {
        let words = MmapArray::map(handle)?;
        if shift != 0 && (shift > 31 || 1usize << (32 - shift) != words.len()) {
            return Err(Error::Missing("a flat subscriber table of the size lns_config gives"));
        }
        Ok(FlatTable { words, shift })
    }

    fn run(&self, tag: u32) -> impl Iterator<Item = usize> + '_ {
        let first = abi::flat_first_slot(tag, self.shift) as usize;
        let mask = self.words.len().wrapping_sub(1);
        (0..FlatEntry::PROBES as usize).map(move |i| (first + i) & mask)
    }

    fn entry(&self, slot: usize) -> FlatEntry {
        FlatEntry::from_word(self.words.load(slot).unwrap_or(0))
    }

    /// Points `tag` at session `index`: an entry of the tag whose session
    /// `replaces` says it replaces is rewritten, else the first free slot of
    /// the run is taken. False when the run is full (the hash maps alone
    /// then answer for it).
    fn insert(&self, tag: u32, index: u32, replaces: impl Fn(u32) -> bool) -> bool {
        if self.shift == 0 {
            return false;
        }
        let new = FlatEntry::new(tag, index);
        // A lost race (another writer changed the slot) starts over; a
        // handful of rounds is plenty for the few writers there are.
        for _ in 0..16 {
            let mut free = None;
            let mut raced = false;
            for slot in self.run(tag) {
                let e = self.entry(slot);
                match e.session() {
                    Some(s) if e.tag == tag && (s == index || replaces(s)) => {
                        match self.words.compare_exchange(slot, e.to_word(), new.to_word()) {
                            Ok(_) => return true,
                            Err(_) => {
                                raced = true;
                                break;
                            }
                        }
                    }
                    Some(_) => {}
                    None => {
                        free.get_or_insert((slot, e));
                        if e.session_plus1 == FlatEntry::EMPTY {
                            break;
                        }
                    }
                }
            }
            if raced {
                continue;
            }
            let Some((slot, e)) = free else { return false };
            if self.words.compare_exchange(slot, e.to_word(), new.to_word()).is_ok() {
                return true;
            }
        }
        false
    }

    /// Removes the entries of `tag` whose session `matches`.
    fn remove(&self, tag: u32, matches: impl Fn(u32) -> bool) {
        if self.shift == 0 {
            return;
        }
        let run: Vec<usize> = self.run(tag).collect();
        for slot in run {
            let e = self.entry(slot);
            if e.session_plus1 == FlatEntry::EMPTY {
                break;
            }
            if e.tag != tag || !e.session().is_some_and(&matches) {
                continue;
            }
            let tomb = FlatEntry { tag, session_plus1: FlatEntry::TOMBSTONE };
            if self.words.compare_exchange(slot, e.to_word(), tomb.to_word()).is_err() {
                continue; // rewritten meanwhile: no longer this entry
            }
            // Tombstones at the end of a run (an empty slot after them)
            // end no lookup early: they become empty again, so runs do not
            // fill up with them. Any entry placed beyond an empty slot would
            // have taken that slot instead.
            let next = (slot + 1) & self.words.len().wrapping_sub(1);
            if self.entry(next).session_plus1 == FlatEntry::EMPTY {
                let mut j = slot;
                loop {
                    let t = self.entry(j);
                    if t.session_plus1 != FlatEntry::TOMBSTONE
                        || self.words.compare_exchange(j, t.to_word(), 0).is_err()
                    {
                        break;
                    }
                    j = j.wrapping_sub(1) & self.words.len().wrapping_sub(1);
                }
            }
        }
    }

    /// Live entries and size.
    pub(crate) fn occupancy(&self) -> (usize, usize) {
        let live = (0..self.words.len()).filter(|&i| self.entry(i).session().is_some()).count();
        (live, self.words.len())
    }
}

/// Per-reason totals over all CPUs, as read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot(pub BTreeMap<&'static str, u64>);

impl CounterSnapshot {
    pub fn get(&self, c: Counter) -> u64 {
        self.0.get(c.name()).copied().unwrap_or(0)
    }

    /// Counts accumulated since `earlier`.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot(
            self.0
                .iter()
                .map(|(k, v)| (*k, v.saturating_sub(earlier.0.get(k).copied().unwrap_or(0))))
                .collect(),
        )
    }
}

fn ctx(what: &'static str) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |e| Error::bpf(what, e)
}

fn delete_if_present(map: &MapHandle, key: &[u8], what: &'static str) -> Result<bool, Error> {
    match map.delete(key) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::bpf(what, e)),
    }
}

impl Maps {
    pub fn max_sessions(&self) -> u32 {
        self.sessions.max_entries()
    }

    pub fn read_config(&self) -> Result<Config, Error> {
        read_config(&self.config)
    }

    pub fn write_config(&self, c: &Config) -> Result<(), Error> {
        self.config
            .update(&0u32.to_ne_bytes(), bytemuck::bytes_of(c), MapFlags::ANY)
            .map_err(ctx("writing lns_config"))
    }

    /// Declares an interface's roles and where its AF_XDP sockets live in
    /// `lns_xsks`.
    pub fn set_iface(&self, ifindex: u32, iface: &Iface) -> Result<(), Error> {
        self.ifaces
            .update(&ifindex.to_ne_bytes(), bytemuck::bytes_of(iface), MapFlags::ANY)
            .map_err(ctx("writing lns_ifaces"))
    }

    pub fn remove_iface(&self, ifindex: u32) -> Result<bool, Error> {
        delete_if_present(&self.ifaces, &ifindex.to_ne_bytes(), "deleting from lns_ifaces")
    }

    /// Puts an AF_XDP socket in slot `slot` of `lns_xsks`.
    pub fn set_xsk(&self, slot: u32, socket: impl AsFd) -> Result<(), Error> {
        let fd = socket.as_fd().as_raw_fd() as u32;
        self.xsks
            .update(&slot.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_xsks"))
    }

    pub fn clear_xsk(&self, slot: u32) -> Result<bool, Error> {
        delete_if_present(&self.xsks, &slot.to_ne_bytes(), "deleting from lns_xsks")
    }

    fn check_index(&self, index: u32) -> Result<(), Error> {
        if index >= self.sessions.max_entries() {
            return Err(Error::SessionIndex { index, max: self.sessions.max_entries() });
        }
        Ok(())
    }

    pub fn read_session(&self, index: u32) -> Result<Session, Error> {
        self.check_index(index)?;
        let v = self
            .sessions
            .lookup(&index.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("reading lns_sessions"))?
            .ok_or(Error::Missing("lns_sessions entry"))?;
        bytemuck::try_pod_read_unaligned(&v).map_err(|_| Error::Missing("lns_sessions value size"))
    }

    fn write_session(&self, index: u32, s: &Session) -> Result<(), Error> {
        self.sessions
            .update(&index.to_ne_bytes(), bytemuck::bytes_of(s), MapFlags::ANY)
            .map_err(ctx("writing lns_sessions"))
    }

    /// Installs a session in slot `index`: the entry, its (tunnel, session)
    /// key and the subscriber addresses it holds (IPv4 /32, SLAAC prefix,
    /// delegated prefix).
    ///
    /// The entry is written before anything points at it, so the program
    /// never finds a key or an address whose slot is half written.
    pub fn install_session(&self, index: u32, s: &Session) -> Result<(), Error> {
        self.check_index(index)?;
        if let Ok(old) = self.read_session(index) {
            if old.session_state() != Some(SessionState::Free) {
                return Err(Error::SlotInUse(index));
            }
        }
        self.write_session(index, s)?;
        // A new session's data messages are numbered from 0 (RFC 2661 §5.4).
        self.session_ns
            .update(&index.to_ne_bytes(), &0u64.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_session_ns"))?;
        let key = s.key();
        // A session away from its direct slot: the program must look up
        // the key in the hash whenever it names that slot, so the slot's
        // fast bit goes before the key becomes findable.
        let displaced_from = abi::direct_slot(key, self.max_sessions()).filter(|&d| d != index);
        if let Some(d) = displaced_from {
            self.mark_slot(d, abi::slot_mark::DISPLACED);
        }
        let idx = index.to_ne_bytes();
        self.session_ids
            .update(bytemuck::bytes_of(&key), &idx, MapFlags::ANY)
            .map_err(ctx("writing lns_session_ids"))?;
        // Again, now that the key is findable: a writer that was clearing
        // the mark (the last displaced session of the slot leaving) and did
        // not see this key yet cannot have left it clear.
        if let Some(d) = displaced_from {
            self.mark_slot(d, abi::slot_mark::DISPLACED);
        }
        self.install_addresses(index, s)?;
        self.refresh_fast_slot(index)
    }

    /// Sets `mark` ([`abi::slot_mark`]) on `index`, then clears its fast bit:
    /// a concurrent [`Maps::refresh_fast_slot`] either sees the mark when it
    /// looks again after setting the bit, or set it before this clears it.
    fn mark_slot(&self, index: u32, mark: u32) {
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
    fn note_address(&self, index: u32, own: impl Fn(&Session) -> bool) -> Result<(), Error> {
        let s = self.read_session(index)?;
        if s.session_state() == Some(SessionState::Free) || !own(&s) {
            self.mark_slot(index, abi::slot_mark::EXTRA);
        }
        Ok(())
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
    fn follow_unit(&self, addr: IpAddr, len: u8, index: u32) -> Result<(), Error> {
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
    fn drop_unit(&self, addr: IpAddr, len: u8) -> Result<(), Error> {
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
        self.write_session(index, &Session::default())?;
        // Addresses the caller added besides the session's own were the
        // caller's to remove; the next session here starts without.
        self.slot_marks.fetch_and(index as usize, !abi::slot_mark::EXTRA);
        self.refresh_fast_slot(index)?;
        if let Some(d) = abi::direct_slot(old.key(), self.max_sessions()).filter(|&d| d != index) {
            if !self.displaced_from(d)? {
                self.slot_marks.fetch_and(d as usize, !abi::slot_mark::DISPLACED);
                // A session displaced meanwhile marks the slot again after
                // its key is findable; look once more, after the clear.
                if self.displaced_from(d)? {
                    self.mark_slot(d, abi::slot_mark::DISPLACED);
                }
                self.refresh_fast_slot(d)?;
            }
        }
        Ok(Some(old))
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

    /// An IPv4 host address of the subscriber (besides the session's own:
    /// the program then checks the session's frames itself).
    pub fn add_subscriber_v4(&self, addr: Ipv4Addr, index: u32) -> Result<(), Error> {
        self.note_address(index, |s| s.subscriber_ipv4() == Some(addr))?;
        self.put_subscriber_v4(addr, index)
    }

    fn put_subscriber_v4(&self, addr: Ipv4Addr, index: u32) -> Result<(), Error> {
        self.sub_v4
            .update(&addr.octets(), &index.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_sub_v4"))?;
        // The tag is the address: any entry of it is this address's.
        self.sub_v4_flat.insert(abi::flat_tag_v4(addr), index, |_| true);
        self.follow_unit(IpAddr::V4(addr), 32, index)
    }

    pub fn remove_subscriber_v4(&self, addr: Ipv4Addr) -> Result<bool, Error> {
        self.drop_unit(IpAddr::V4(addr), 32)?;
        self.sub_v4_flat.remove(abi::flat_tag_v4(addr), |_| true);
        delete_if_present(&self.sub_v4, &addr.octets(), "deleting from lns_sub_v4")
    }

    /// An exact IPv6 host address (Framed-IPv6-Address).
    pub fn add_subscriber_v6(&self, addr: Ipv6Addr, index: u32) -> Result<(), Error> {
        self.check_not_inside_other_64(addr, 128, index)?;
        self.note_address(index, |_| false)?;
        let fresh = self.read_index(&self.sub_v6, &addr.octets(), "reading lns_sub_v6")?.is_none();
        self.sub_v6
            .update(&addr.octets(), &index.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_sub_v6"))?;
        if fresh {
            self.count_long(addr, index, true)?;
        }
        Ok(())
    }

    pub fn remove_subscriber_v6(&self, addr: Ipv6Addr) -> Result<bool, Error> {
        let removed = delete_if_present(&self.sub_v6, &addr.octets(), "deleting from lns_sub_v6")?;
        if removed {
            self.count_long(addr, 0, false)?;
        }
        Ok(removed)
    }

    /// A routed IPv4 prefix behind the subscriber (Framed-Route).
    pub fn add_route_v4(&self, prefix: Ipv4Addr, len: u8, index: u32) -> Result<(), Error> {
        let key = lpm_v4(prefix, len)?;
        self.note_address(index, |_| false)?;
        self.sub_v4_lpm
            .update(bytemuck::bytes_of(&key), &index.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_sub_v4_lpm"))
    }

    pub fn remove_route_v4(&self, prefix: Ipv4Addr, len: u8) -> Result<bool, Error> {
        let key = lpm_v4(prefix, len)?;
        delete_if_present(&self.sub_v4_lpm, bytemuck::bytes_of(&key), "deleting from lns_sub_v4_lpm")
    }

    /// An IPv6 prefix of the subscriber (SLAAC /64, delegated prefix).
    /// A /64 goes to the /64 hash (one lookup), anything else to the trie.
    /// The program looks in the /64 hash first, so an entry longer than /64
    /// inside another session's /64 (or a /64 over another session's longer
    /// entries) would be shadowed: refused ([`Error::PrefixOverlap`]).
    pub fn add_route_v6(&self, prefix: Ipv6Addr, len: u8, index: u32) -> Result<(), Error> {
        let own = |s: &Session| {
            s.subscriber_ipv6_prefix() == Some((prefix, len))
                || s.subscriber_delegated_prefix() == Some((prefix, len))
        };
        self.note_address(index, own)?;
        self.put_route_v6(prefix, len, index)
    }

    fn put_route_v6(&self, prefix: Ipv6Addr, len: u8, index: u32) -> Result<(), Error> {
        let key = lpm_v6(prefix, len)?;
        let net: [u8; 8] = key.addr[..8].try_into().expect("8 of 16 bytes");
        if len == 64 {
            let long = self
                .sub_v6_long
                .lookup(&net, MapFlags::ANY)
                .map_err(ctx("reading lns_sub_v6_long"))?
                .and_then(|v| bytemuck::try_pod_read_unaligned::<[u32; 2]>(&v).ok());
            if let Some([owner, count]) = long {
                if count > 0 && owner != index {
                    return Err(Error::PrefixOverlap { prefix: Ipv6Addr::from(key.addr), len, other: owner });
                }
            }
            // Different /64s may share a tag: only the entry of the
            // session that held this /64 before is replaced.
            let old = self.read_index(&self.sub_v6_64, &net, "reading lns_sub_v6_64")?;
            self.sub_v6_64
                .update(&net, &index.to_ne_bytes(), MapFlags::ANY)
                .map_err(ctx("writing lns_sub_v6_64"))?;
            self.sub_v6_flat.insert(abi::flat_tag_v6(net), index, |s| Some(s) == old);
            return self.follow_unit(IpAddr::V6(Ipv6Addr::from(key.addr)), len, index);
        }
        self.check_not_inside_other_64(Ipv6Addr::from(key.addr), len, index)?;
        let k = bytemuck::bytes_of(&key);
        let fresh = len > 64 && self.read_index(&self.sub_v6_lpm, k, "reading lns_sub_v6_lpm")?.is_none();
        self.sub_v6_lpm
            .update(k, &index.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_sub_v6_lpm"))?;
        if fresh {
            self.count_long(Ipv6Addr::from(key.addr), index, true)?;
        }
        self.follow_unit(IpAddr::V6(Ipv6Addr::from(key.addr)), len, index)
    }

    pub fn remove_route_v6(&self, prefix: Ipv6Addr, len: u8) -> Result<bool, Error> {
        let key = lpm_v6(prefix, len)?;
        self.drop_unit(IpAddr::V6(Ipv6Addr::from(key.addr)), len)?;
        if len == 64 {
            let net: [u8; 8] = key.addr[..8].try_into().expect("8 of 16 bytes");
            let old = match self.sub_v6_64.lookup_and_delete(&net) {
                Ok(v) => v.and_then(|b| bytemuck::try_pod_read_unaligned::<u32>(&b).ok()),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::bpf("deleting from lns_sub_v6_64", e)),
            };
            if let Some(old) = old {
                self.sub_v6_flat.remove(abi::flat_tag_v6(net), |s| s == old);
            }
            return Ok(old.is_some());
        }
        let removed =
            delete_if_present(&self.sub_v6_lpm, bytemuck::bytes_of(&key), "deleting from lns_sub_v6_lpm")?;
        if removed && len > 64 {
            self.count_long(Ipv6Addr::from(key.addr), 0, false)?;
        }
        Ok(removed)
    }

    /// Counts an entry longer than /64 in (or out of) its /64's tally in
    /// `lns_sub_v6_long`, so that adding a /64 over another session's
    /// longer entries is refused without walking the maps.
    fn count_long(&self, addr: Ipv6Addr, index: u32, add: bool) -> Result<(), Error> {
        const MIXED: u32 = u32::MAX;
        let net: [u8; 8] = addr.octets()[..8].try_into().expect("8 of 16 bytes");
        let cur = self
            .sub_v6_long
            .lookup(&net, MapFlags::ANY)
            .map_err(ctx("reading lns_sub_v6_long"))?
            .and_then(|v| bytemuck::try_pod_read_unaligned::<[u32; 2]>(&v).ok());
        let next = match (cur, add) {
            (None, true) => Some([index, 1]),
            (Some([owner, count]), true) => Some([if owner == index { owner } else { MIXED }, count + 1]),
            (Some([owner, count]), false) if count > 1 => Some([owner, count - 1]),
            _ => None,
        };
        match next {
            Some(v) => self
                .sub_v6_long
                .update(&net, bytemuck::bytes_of(&v), MapFlags::ANY)
                .map_err(ctx("writing lns_sub_v6_long")),
            None => delete_if_present(&self.sub_v6_long, &net, "deleting from lns_sub_v6_long").map(|_| ()),
        }
    }

    /// Refuses an entry longer than /64 that falls in another session's
    /// /64 (it would never be found: the /64 hash answers first).
    fn check_not_inside_other_64(&self, addr: Ipv6Addr, len: u8, index: u32) -> Result<(), Error> {
        if len <= 64 {
            return Ok(());
        }
        let net: [u8; 8] = addr.octets()[..8].try_into().expect("8 of 16 bytes");
        let owner = self
            .sub_v6_64
            .lookup(&net, MapFlags::ANY)
            .map_err(ctx("reading lns_sub_v6_64"))?
            .and_then(|v| bytemuck::try_pod_read_unaligned::<u32>(&v).ok());
        match owner {
            Some(other) if other != index => Err(Error::PrefixOverlap { prefix: addr, len, other }),
            _ => Ok(()),
        }
    }

    fn read_index(&self, map: &MapHandle, key: &[u8], what: &'static str) -> Result<Option<u32>, Error> {
        let v = map.lookup(key, MapFlags::ANY).map_err(ctx(what))?;
        Ok(v.and_then(|b| bytemuck::try_pod_read_unaligned::<u32>(&b).ok()))
    }

    /// Entries of every map a session writes, by map name, and the
    /// session slots not free (`lns_sessions`), for leak checks (a syscall
    /// per entry: for tools and tests).
    pub fn entry_counts(&self) -> BTreeMap<&'static str, usize> {
        let used = (0..self.sessions.max_entries())
            .filter(|i| self.read_session(*i).is_ok_and(|s| s.session_state() != Some(SessionState::Free)))
            .count();
        BTreeMap::from([
            ("lns_sessions", used),
            ("lns_session_ids", self.session_ids.keys().count()),
            ("lns_sub_v4", self.sub_v4.keys().count()),
            ("lns_sub_v6", self.sub_v6.keys().count()),
            ("lns_sub_v6_64", self.sub_v6_64.keys().count()),
            ("lns_sub_v6_long", self.sub_v6_long.keys().count()),
            ("lns_sub_v4_lpm", self.sub_v4_lpm.keys().count()),
            ("lns_sub_v6_lpm", self.sub_v6_lpm.keys().count()),
            ("lns_sub_v4_flat", self.sub_v4_flat.occupancy().0),
            ("lns_sub_v6_flat", self.sub_v6_flat.occupancy().0),
            (
                "lns_pool_sessions",
                (0..self.pool_sessions.len()).filter(|&u| self.pool_sessions.load(u) != Some(0)).count(),
            ),
            (
                "lns_pool_bits",
                (0..self.pool_bits.len())
                    .map(|w| self.pool_bits.load(w).unwrap_or(0).count_ones() as usize)
                    .sum(),
            ),
        ])
    }

    /// Entries in the address maps (not the flat tables, their copies:
    /// see [`Maps::entry_counts`]), for leak checks.
    pub fn address_entries(&self) -> usize {
        [&self.sub_v4, &self.sub_v6, &self.sub_v6_64, &self.sub_v4_lpm, &self.sub_v6_lpm]
            .iter()
            .map(|m| m.keys().count())
            .sum()
    }

    /// Destinations whose next hop had no neighbour entry since the last
    /// call, which also forgets them.
    pub fn neighbour_misses(&self) -> Result<Vec<IpAddr>, Error> {
        let keys: Vec<Vec<u8>> = self.neigh_miss.keys().collect();
        let mut out = Vec::new();
        for k in keys {
            if let Ok(raw) = <[u8; 16]>::try_from(k.as_slice()) {
                out.push(crate::abi::unmap(raw));
            }
            delete_if_present(&self.neigh_miss, &k, "deleting from lns_neigh_miss")?;
        }
        Ok(out)
    }

    /// Forgets every cached next hop on every CPU (after a route change
    /// that must take effect at once): entries of an older epoch are stale.
    pub fn flush_nexthops(&self) -> Result<(), Error> {
        let mut c = self.read_config()?;
        c.nh_epoch = c.nh_epoch.wrapping_add(1);
        self.write_config(&c)
    }

    /// The slot the program looks at first for `key` ([`crate::abi::direct_slot`]),
    /// if it is in the table and free: where a writer should put the session.
    pub fn free_direct_slot(&self, key: SessionKey) -> Result<Option<u32>, Error> {
        let Some(slot) = crate::abi::direct_slot(key, self.max_sessions()) else { return Ok(None) };
        let s = self.read_session(slot)?;
        Ok((s.session_state() == Some(SessionState::Free)).then_some(slot))
    }

    /// Per-session counters of slot `index`, summed over every worker's row.
    pub fn session_stats(&self, index: u32) -> Result<SessionStats, Error> {
        self.check_index(index)?;
        let max = self.sessions.max_entries();
        let rows = self.session_stats.max_entries() / max.max(1);
        let mut total = SessionStats::default();
        for w in 0..rows {
            let key = w * max + index;
            if let Some(v) = self
                .session_stats
                .lookup(&key.to_ne_bytes(), MapFlags::ANY)
                .map_err(ctx("reading lns_session_stats"))?
            {
                if let Ok(s) = bytemuck::try_pod_read_unaligned::<SessionStats>(&v) {
                    total.add(&s);
                }
            }
        }
        Ok(total)
    }

    /// The session table mapped into this process.
    pub fn mmap_sessions(&self) -> Result<crate::MmapArray<Session>, Error> {
        crate::MmapArray::map(&self.sessions)
    }

    /// The per-session counters mapped into this process; worker `w` owns
    /// entries `w * max_sessions ..` of it.
    pub fn mmap_session_stats(&self) -> Result<crate::MmapArray<SessionStats>, Error> {
        crate::MmapArray::map(&self.session_stats)
    }

    /// The per-session Ns counters (`lns_session_ns`) mapped into this
    /// process; take numbers with [`crate::MmapArray::fetch_add`].
    pub fn mmap_session_ns(&self) -> Result<crate::MmapArray<u64>, Error> {
        crate::MmapArray::map(&self.session_ns)
    }

    /// Rows of `lns_session_stats`: the most workers that can keep counters.
    pub fn stats_rows(&self) -> u32 {
        self.session_stats.max_entries() / self.sessions.max_entries().max(1)
    }

    /// Sums every counter over all CPUs.
    pub fn counters(&self) -> Result<CounterSnapshot, Error> {
        let mut out = BTreeMap::new();
        for c in Counter::ALL {
            let per_cpu = self
                .counters
                .lookup_percpu(&(*c as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(ctx("reading lns_counters"))?
                .unwrap_or_default();
            let total = per_cpu
                .iter()
                .filter_map(|v| bytemuck::try_pod_read_unaligned::<u64>(v).ok())
                .fold(0u64, u64::wrapping_add);
            out.insert(c.name(), total);
        }
        Ok(CounterSnapshot(out))
    }
}

/// Where bit `i` of a bitmap of words (`lns_fast_slots`, `lns_pool_bits`)
/// lies: word and mask.
fn bit_of(i: u32) -> (usize, u64) {
    (i as usize / 64, 1u64 << (i % 64))
}

fn bit_set(words: &MmapArray<u64>, i: u32) -> bool {
    let (word, bit) = bit_of(i);
    words.load(word).is_some_and(|w| w & bit != 0)
}

fn set_bit(words: &MmapArray<u64>, i: u32, on: bool) {
    let (word, bit) = bit_of(i);
    if on {
        words.fetch_or(word, bit);
    } else {
        words.fetch_and(word, !bit);
    }
}

/// Brings bit `i` in line with `wanted` (which reads the bit's inputs);
/// every change to the inputs is followed by this. Several processes write
/// the maps: after setting the bit, the inputs are read again, and a change
/// meanwhile (whose writer may have read them before this one wrote) goes
/// round again, so the last writer leaves the right bit. A bit that will
/// not settle stays clear: the program then makes its own lookups.
fn settle_bit(words: &MmapArray<u64>, i: u32, wanted: impl Fn() -> Result<bool, Error>) -> Result<(), Error> {
    for _ in 0..64 {
        let want = wanted()?;
        set_bit(words, i, want);
        if wanted()? == want {
            return Ok(());
        }
    }
    set_bit(words, i, false);
    Ok(())
}

/// A session's own addresses with their lengths: its IPv4 /32, SLAAC
/// prefix and delegated prefix.
fn own_addresses(s: &Session) -> impl Iterator<Item = (IpAddr, u8)> {
    let v4 = s.subscriber_ipv4().map(|a| (IpAddr::V4(a), 32));
    let v6 = s.subscriber_ipv6_prefix().map(|(a, l)| (IpAddr::V6(a), l));
    let pd = s.subscriber_delegated_prefix().map(|(a, l)| (IpAddr::V6(a), l));
    v4.into_iter().chain(v6).chain(pd)
}

fn lpm_v4(prefix: Ipv4Addr, len: u8) -> Result<LpmV4, Error> {
    if len > 32 {
        return Err(Error::PrefixLength(len));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok(LpmV4 { prefixlen: len.into(), addr: (u32::from(prefix) & mask).to_be_bytes() })
}

fn lpm_v6(prefix: Ipv6Addr, len: u8) -> Result<LpmV6, Error> {
    if len > 128 {
        return Err(Error::PrefixLength(len));
    }
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    Ok(LpmV6 { prefixlen: len.into(), addr: (u128::from(prefix) & mask).to_be_bytes() })
}
