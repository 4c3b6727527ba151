//! Subscribers' host addresses: `lns_sub_v4` (IPv4 /32s), `lns_sub_v6`
//! (IPv6 /128s), the flat tables that copy them for one-probe lookups
//! (`lns_sub_v4_flat`, `lns_sub_v6_flat`), and the tally of entries longer
//! than /64 per /64 (`lns_sub_v6_long`) that keeps a host address and
//! another session's /64 from shadowing each other. Prefixes are in
//! `routes`; a session's own addresses are written through both on its
//! install (`sessions`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::{ctx, delete_if_present, read_index, Maps};
use crate::abi::{self, FlatEntry};
use crate::Error;
use crate::MmapArray;

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
    pub(super) fn insert(&self, tag: u32, index: u32, replaces: impl Fn(u32) -> bool) -> bool {
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
    pub(super) fn remove(&self, tag: u32, matches: impl Fn(u32) -> bool) {
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

impl Maps {
    /// An IPv4 host address of the subscriber (besides the session's own:
    /// the program then checks the session's frames itself).
    pub fn add_subscriber_v4(&self, addr: Ipv4Addr, index: u32) -> Result<(), Error> {
        self.note_address(index, |s| s.subscriber_ipv4() == Some(addr))?;
        self.put_subscriber_v4(addr, index)
    }

    pub(super) fn put_subscriber_v4(&self, addr: Ipv4Addr, index: u32) -> Result<(), Error> {
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
        let fresh = read_index(&self.sub_v6, &addr.octets(), "reading lns_sub_v6")?.is_none();
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

    /// Counts an entry longer than /64 in (or out of) its /64's tally in
    /// `lns_sub_v6_long`, so that adding a /64 over another session's
    /// longer entries is refused without walking the maps.
    pub(super) fn count_long(&self, addr: Ipv6Addr, index: u32, add: bool) -> Result<(), Error> {
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
    pub(super) fn check_not_inside_other_64(&self, addr: Ipv6Addr, len: u8, index: u32) -> Result<(), Error> {
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

    /// Entries in the address maps (not the flat tables, their copies:
    /// see [`Maps::entry_counts`]), for leak checks.
    pub fn address_entries(&self) -> usize {
        [&self.sub_v4, &self.sub_v6, &self.sub_v6_64, &self.sub_v4_lpm, &self.sub_v6_lpm]
            .iter()
            .map(|m| m.keys().count())
            .sum()
    }
}
