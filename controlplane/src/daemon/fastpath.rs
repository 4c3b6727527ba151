//! The sessions this control plane writes into the data plane's pinned
//! maps: slot allocation, install, removal, and removal of everything on
//! the way out.
//!
//! The table is shared with other writers (`lnsctl static-session`), so a
//! slot is only ever taken when it is free in the map, and a (tunnel,
//! session) key already present is refused rather than overwritten.

use std::collections::BTreeSet;

use lns_bpf::abi::{Session, SessionState};
use lns_bpf::Maps;

use super::config::Dataplane;

#[derive(Debug, thiserror::Error)]
pub enum FastpathError {
    #[error(
        "opening the data plane's maps in {dir}: {source}; start lns-dataplane for this instance, \
         or pass --no-dataplane to run the control plane alone"
    )]
    Open { dir: String, source: lns_bpf::Error },
    #[error("the data plane's session table is full")]
    Full,
    #[error("tunnel {tunnel} session {session} is already in the data plane (a static session?)")]
    KeyInUse { tunnel: u16, session: u16 },
    #[error(transparent)]
    Map(#[from] lns_bpf::Error),
}

pub struct SessionTable {
    maps: Option<Maps>,
    /// The data plane's per-session Ns counters, mapped here.
    ns: Option<std::sync::Arc<lns_bpf::MmapArray<u64>>>,
    /// The data plane's per-session counters, mapped here (one row of
    /// `size` entries per worker): read without a syscall.
    stats: Option<lns_bpf::MmapArray<lns_bpf::abi::SessionStats>>,
    /// Slots believed free.
    free: SlotSet,
    /// Slots holding a session we wrote.
    ours: SlotSet,
    size: u32,
    /// Sessions placed off their direct slot (found by the program through
    /// its hash, a little slower): 0 unless another writer took the slot.
    direct_misses: u64,
}

impl SessionTable {
    /// Opens the pinned maps, or none when the configuration says so.
    pub fn open(dp: &Dataplane) -> Result<SessionTable, FastpathError> {
        Ok(SessionTable::open_adopting(dp, false)?.0)
    }

    /// Opens the pinned maps. Entries a previous control plane left are
    /// taken over when `adopt` (a restart that keeps sessions: they come
    /// back, slot and entry, for the caller to match with what it
    /// restored), else removed (it died, and its tunnels with it).
    pub fn open_adopting(
        dp: &Dataplane,
        adopt: bool,
    ) -> Result<(SessionTable, Vec<(u32, Session)>), FastpathError> {
        let Dataplane::PinDir(dir) = dp else {
            let table = SessionTable {
                maps: None,
                ns: None,
                stats: None,
                free: SlotSet::new(0),
                ours: SlotSet::new(0),
                size: 0,
                direct_misses: 0,
            };
            return Ok((table, Vec::new()));
        };
        let maps = lns_bpf::open_pinned(dir)
            .map_err(|source| FastpathError::Open { dir: dir.display().to_string(), source })?;
        let size = maps.max_sessions();
        let mut taken = BTreeSet::new();
        let mut reclaimed = 0;
        let mut adopted = Vec::new();
        for (slot, s) in maps.sessions()? {
            if s.owner == Session::OWNER_CONTROL_PLANE && adopt {
                taken.insert(slot);
                adopted.push((slot, s));
            } else if s.owner == Session::OWNER_CONTROL_PLANE {
                // Left by a control plane that died without cleaning up:
                // its tunnels died with it, so the entries are stale.
                maps.remove_session(slot)?;
                reclaimed += 1;
            } else {
                taken.insert(slot);
            }
        }
        if reclaimed > 0 {
            tracing::warn!(reclaimed, "removed sessions a previous lns-controlplane left in the data plane");
        }
        let mut free = SlotSet::new(size);
        for i in (0..size).filter(|i| !taken.contains(i)) {
            free.insert(i);
        }
        let mut ours = SlotSet::new(size);
        for (slot, _) in &adopted {
            ours.insert(*slot);
        }
        let ns = Some(maps.mmap_session_ns()?);
        let stats = Some(maps.mmap_session_stats()?);
        let table = SessionTable { maps: Some(maps), ns, stats, free, ours, size, direct_misses: 0 };
        Ok((table, adopted))
    }

    /// Leaves every entry this process wrote in the maps when it goes (a
    /// restart that keeps sessions: the next control plane adopts them).
    pub fn keep_on_exit(&mut self) {
        self.ours.clear();
    }

    pub fn has_dataplane(&self) -> bool {
        self.maps.is_some()
    }

    pub fn maps(&self) -> Option<&Maps> {
        self.maps.as_ref()
    }

    pub fn in_use(&self) -> usize {
        self.ours.len()
    }

    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// Sessions installed off their direct slot since start.
    pub fn direct_misses(&self) -> u64 {
        self.direct_misses
    }

    /// Session-id banks of the table (`abi::session_bank_mask` + 1): the
    /// L2TP endpoint gives tunnels whose ids agree in those low bits one
    /// session-id space, so every session has a direct slot of its own.
    /// None without a data plane.
    pub fn session_id_banks(&self) -> Option<u32> {
        self.maps.as_ref().map(|_| lns_bpf::abi::session_bank_mask(self.size) + 1)
    }

    /// (bank, session id) pairs the endpoint must never allocate: their
    /// direct slot lies beyond the table, or another writer holds it.
    pub fn direct_slot_reservations(&self) -> Vec<(u32, u16)> {
        let Some(banks) = self.session_id_banks() else { return Vec::new() };
        let mut out = Vec::new();
        for bank in 0..banks {
            for sid in 1..=u16::MAX {
                let slot = (bank << 16) | u32::from(sid);
                if slot >= self.size || (!self.free.contains(slot) && !self.ours.contains(slot)) {
                    out.push((bank, sid));
                }
            }
        }
        out
    }

    /// Writes `s` into a free slot and returns the slot; Ok(None) without a
    /// data plane. `s.generation` is set here.
    pub fn install(&mut self, s: &Session) -> Result<Option<u32>, FastpathError> {
        let Some(maps) = &self.maps else { return Ok(None) };
        // Its direct slot when free: the program then finds the session
        // without a hash lookup (session ids are allocated so that it is,
        // see `direct_slot_reservations`). Any free slot otherwise: the
        // program finds it through the hash.
        let mut direct = lns_bpf::abi::direct_slot(s.key(), self.size).filter(|&d| self.free.contains(d));
        loop {
            let slot = match direct.take() {
                Some(d) => {
                    self.free.remove(d);
                    d
                }
                None => {
                    self.direct_misses += 1;
                    self.free.pop_last().ok_or(FastpathError::Full)?
                }
            };
            // Read through the maps' mapping of the table: no syscall.
            let old = maps.read_session(slot)?;
            if old.session_state() != Some(SessionState::Free) {
                // Taken by another writer since we looked: not ours to
                // hand out until it is seen free again at the next open.
                continue;
            }
            // A freed entry keeps its generation (lns-bpf's remove).
            let mut s = *s;
            s.generation = old.generation.wrapping_add(1);
            s.owner = Session::OWNER_CONTROL_PLANE;
            // The slot's counters start from zero: what `lnsctl session
            // show` reads is then the session's own, with no baseline
            // kept per session (a million of them were 150 bytes each).
            // Zeroed before the entry is published, when no worker counts
            // for the slot; only a worker still finishing a batch of the
            // slot's previous session in that microsecond could add to it.
            self.zero_stats(slot);
            match maps.install_session(slot, &s) {
                Ok(()) => {
                    self.ours.insert(slot);
                    return Ok(Some(slot));
                }
                Err(lns_bpf::Error::SlotInUse(_)) => continue,
                // Checked where the key is published (BPF_NOEXIST): the
                // slot was left free as it was.
                Err(lns_bpf::Error::KeyInUse { tunnel, session }) => {
                    self.free.insert(slot);
                    return Err(FastpathError::KeyInUse { tunnel, session });
                }
                Err(e) => {
                    // Half written: take back what may have gone in.
                    let _ = maps.remove_session(slot);
                    self.free.insert(slot);
                    return Err(e.into());
                }
            }
        }
    }

    /// Rewrites a session we installed (state, addresses), keeping its key
    /// and generation.
    pub fn update(&mut self, slot: u32, s: &Session) -> Result<(), FastpathError> {
        let Some(maps) = &self.maps else { return Ok(()) };
        let mut s = *s;
        // Read through the mapping: the generation install wrote.
        s.generation = maps.read_session(slot)?.generation;
        s.owner = Session::OWNER_CONTROL_PLANE;
        maps.update_session(slot, &s)?;
        Ok(())
    }

    /// The next Ns of `slot`'s data messages (shared with the workers).
    pub fn next_ns(&self, slot: u32) -> Option<u16> {
        self.ns.as_ref()?.fetch_add(slot as usize).map(|v| v as u16)
    }

    /// Where each worker's row keeps `slot`'s counters in the mapped
    /// `lns_session_stats` (none without the mapping).
    fn stats_entries(&self, slot: u32) -> impl Iterator<Item = usize> {
        let size = self.size as usize;
        let rows = match &self.stats {
            Some(stats) if size > 0 => stats.len() / size,
            _ => 0,
        };
        (0..rows).map(move |w| w * size + slot as usize)
    }

    /// Every worker's counters of `slot` back to zero.
    fn zero_stats(&self, slot: u32) {
        let Some(stats) = &self.stats else { return };
        for i in self.stats_entries(slot) {
            stats.set(i, lns_bpf::abi::SessionStats::default());
        }
    }

    /// Packets the fast path carried for `slot`, both directions, all
    /// workers (0 without a data plane).
    pub fn packets(&self, slot: u32) -> u64 {
        let s = self.stats(slot);
        s.up_packets.wrapping_add(s.down_packets)
    }

    /// Packets and bytes the fast path carried for `slot`, summed over the
    /// workers (never reset: callers subtract a baseline).
    pub fn stats(&self, slot: u32) -> lns_bpf::abi::SessionStats {
        let mut total = lns_bpf::abi::SessionStats::default();
        match &self.stats {
            Some(stats) if self.size > 0 => {
                for s in self.stats_entries(slot).filter_map(|i| stats.get(i)) {
                    total.add(&s);
                }
            }
            _ => {
                if let Some(maps) = &self.maps {
                    total = maps.session_stats(slot).unwrap_or_default();
                }
            }
        }
        total
    }

    pub fn read(&self, slot: u32) -> Option<Session> {
        self.maps.as_ref().and_then(|m| m.read_session(slot).ok())
    }

    pub fn remove(&mut self, slot: u32) -> Result<(), FastpathError> {
        let Some(maps) = &self.maps else { return Ok(()) };
        if !self.ours.remove(slot) {
            return Ok(());
        }
        let r = maps.remove_session(slot);
        self.free.insert(slot);
        r?;
        Ok(())
    }

    /// Removes every entry this process wrote (shutdown). Returns how many
    /// could not be removed.
    pub fn remove_all(&mut self) -> usize {
        let slots: Vec<u32> = self.ours.iter().collect();
        slots.into_iter().filter(|s| self.remove(*s).is_err()).count()
    }
}

/// A set of session slots, one bit each: the table's free slots and ours
/// (a million slots are 128 KiB each, where a `BTreeSet<u32>` took about
/// 8 bytes a slot and a tree walk for each change). Hand-written: it is
/// the few operations the table needs, with the count kept as it changes
/// (a bit-set crate counts by walking every word).
#[derive(Debug, Clone)]
struct SlotSet {
    words: Vec<u64>,
    size: u32,
    len: usize,
}

impl SlotSet {
    fn new(size: u32) -> SlotSet {
        SlotSet { words: vec![0; (size as usize).div_ceil(64)], size, len: 0 }
    }

    fn contains(&self, slot: u32) -> bool {
        self.words.get(slot as usize / 64).is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// Adds `slot`; false if it was in already (or lies outside the set).
    fn insert(&mut self, slot: u32) -> bool {
        if slot >= self.size {
            return false;
        }
        let Some(w) = self.words.get_mut(slot as usize / 64) else { return false };
        let bit = 1 << (slot % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.len += 1;
        true
    }

    /// Takes `slot` out; false if it was not in.
    fn remove(&mut self, slot: u32) -> bool {
        let Some(w) = self.words.get_mut(slot as usize / 64) else { return false };
        let bit = 1 << (slot % 64);
        if *w & bit == 0 {
            return false;
        }
        *w &= !bit;
        self.len -= 1;
        true
    }

    /// The highest slot in the set.
    fn last(&self) -> Option<u32> {
        let (i, w) = self.words.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
        Some(i as u32 * 64 + 63 - w.leading_zeros())
    }

    /// Takes out the highest slot: slots off their direct one (rare) are
    /// taken from the top, away from where direct slots are dense.
    fn pop_last(&mut self) -> Option<u32> {
        let slot = self.last()?;
        self.remove(slot);
        Some(slot)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.len = 0;
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let b = rest.trailing_zeros();
                rest &= rest - 1;
                Some(i as u32 * 64 + b)
            })
        })
    }
}

impl Drop for SessionTable {
    /// Last line of defence: no entry outlives the process that wrote it,
    /// even when the loop ends with an error.
    fn drop(&mut self) {
        let failed = self.remove_all();
        if failed > 0 {
            tracing::error!(failed, "could not remove session entries from the data plane's maps");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lns_bpf::abi::{SessionState, SessionStats};
    use lns_bpf::{LoadOptions, Steering};

    fn session(id: u16) -> Session {
        let mut s = Session {
            state: SessionState::Forwarding as u32,
            local_tunnel_id: 1,
            local_session_id: id,
            peer_tunnel_id: 7,
            peer_session_id: 9,
            mtu: 1460,
            ipv4: [198, 51, 100, 10],
            ..Default::default()
        };
        s.set_peer("192.0.2.2:1701".parse().expect("address"));
        s.set_local("192.0.2.1:1701".parse().expect("address"));
        s
    }

    /// The steering program loaded with a table of 64 slots, pinned in a
    /// directory of its own, and this process's table over it (the pin
    /// directory and the program live as long as the test holds them).
    fn table_of_64() -> (lns_testlab::PinDir, Steering, SessionTable) {
        let pins = lns_testlab::PinDir::new().expect("pin dir");
        let steering = Steering::load(&LoadOptions {
            pin_dir: Some(pins.path().into()),
            max_sessions: 64,
            ..Default::default()
        })
        .expect("load the steering program");
        let table = SessionTable::open(&Dataplane::PinDir(pins.path().into())).expect("open");
        (pins, steering, table)
    }

    /// A slot taken again starts with its counters at zero (no baseline is
    /// kept per session) and the next generation (kept in the freed entry,
    /// not in a table of this process).
    #[test]
    fn a_slot_taken_again_starts_from_zero_counters_and_the_next_generation() {
        let (_pins, _steering, mut table) = table_of_64();
        let slot = table.install(&session(5)).expect("install").expect("a slot");
        let first = table.maps().expect("maps").read_session(slot).expect("read").generation;
        // A worker counts the session's traffic in its row.
        let rows = table.maps().expect("maps").mmap_session_stats().expect("mmap");
        let counted = SessionStats { up_packets: 3, up_bytes: 300, down_packets: 4, ..Default::default() };
        rows.set(slot as usize, counted);
        assert_eq!(table.packets(slot), 7);
        // An update keeps the generation install wrote.
        table.update(slot, &session(5)).expect("update");
        assert_eq!(table.maps().expect("maps").read_session(slot).expect("read").generation, first);
        table.remove(slot).expect("remove");
        // The same key: its direct slot again.
        let again = table.install(&session(5)).expect("install").expect("a slot");
        assert_eq!(again, slot);
        assert_eq!(table.packets(slot), 0);
        assert_eq!(table.stats(slot), SessionStats::default());
        assert_eq!(table.maps().expect("maps").read_session(slot).expect("read").generation, first + 1);
    }

    /// A key another slot holds is refused where it is published, and the
    /// slot the refused session was written to is free again, as it was:
    /// nothing leaks, the session that holds the key is untouched, and its
    /// slot carries no mark for a displaced session that never was.
    #[test]
    fn a_key_installed_already_is_refused_and_its_slot_left_free() {
        let (_pins, _steering, mut table) = table_of_64();
        let slot = table.install(&session(5)).expect("install").expect("a slot");
        let free = table.free.len();
        let fast = table.maps().expect("maps").fast_slot(slot);
        match table.install(&session(5)) {
            Err(FastpathError::KeyInUse { tunnel: 1, session: 5 }) => {}
            other => panic!("a second install of the key gave {other:?}"),
        }
        assert_eq!(table.free.len(), free, "the slot tried goes back to the free ones");
        let maps = table.maps().expect("maps");
        assert_eq!(maps.entry_counts()["lns_sessions"], 1, "only the first session is in the table");
        assert_eq!(maps.find_session(session(5).key()).expect("find"), Some(slot));
        assert_eq!(maps.read_session(slot).expect("read").local_session_id, 5);
        assert_eq!(maps.slot_marks(slot), 0, "no session is displaced from the key's slot");
        assert_eq!(maps.fast_slot(slot), fast, "the first session's slot is as fast as it was");
        // The slot tried is free as it was: the next session there is its
        // first generation.
        let tried = table.free.last().expect("free slots");
        assert_eq!(maps.read_session(tried).expect("read"), Session::default());
        let other = table.install(&session(6)).expect("install").expect("a slot");
        assert_ne!(other, slot);
    }

    #[test]
    fn a_slot_set_counts_finds_the_highest_and_lists_in_order() {
        let mut set = SlotSet::new(130);
        assert_eq!((set.len(), set.last(), set.pop_last()), (0, None, None));
        for slot in [0, 63, 64, 129, 7] {
            assert!(set.insert(slot), "{slot}");
        }
        assert!(!set.insert(7), "twice");
        assert!(!set.insert(130), "outside");
        assert!(!set.contains(130) && set.contains(64) && !set.contains(65));
        assert_eq!(set.len(), 5);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 7, 63, 64, 129]);
        assert_eq!(set.pop_last(), Some(129));
        assert_eq!(set.last(), Some(64));
        assert!(set.remove(64) && !set.remove(64));
        assert_eq!((set.len(), set.last()), (3, Some(63)));
        set.clear();
        assert_eq!((set.len(), set.iter().count(), set.last()), (0, 0, None));
    }
}
