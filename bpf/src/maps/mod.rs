//! Typed access to the steering program's maps, for the process that loaded
//! them and for processes that open their pins (control plane, lnsctl).
//!
//! One [`Maps`] handle holds every map; its methods are split by what the
//! maps they write keep, so a writer finds the rules of a map beside it:
//!
//! - `config`: the program's settings and sockets (`lns_config`,
//!   `lns_ifaces`, `lns_xsks`);
//! - `sessions`: the session table and its keys (`lns_sessions`,
//!   `lns_session_ids`, `lns_session_ns`), and the order in which a session
//!   and everything pointing at it come and go;
//! - `fast_slots`: which slots' frames the workers check instead of the
//!   program (`lns_fast_slots`, `lns_slot_marks`);
//! - `pool_units`: which pool units' frames the workers route without the
//!   program's lookups (`lns_pool_bits`, `lns_pool_sessions`);
//! - `subscribers`: host addresses (`lns_sub_v4`, `lns_sub_v6`, the flat
//!   tables, the /64 tally `lns_sub_v6_long`);
//! - `routes`: prefixes (`lns_sub_v4_lpm`, `lns_sub_v6_lpm`, `lns_sub_v6_64`);
//! - `counters`: what the program and the workers count;
//! - `words`: the bitmaps over arrays of atomic words that several
//!   processes write at once, and the settle loop that keeps a bit right.

use std::collections::BTreeMap;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::abi::{self, Config, SessionState};
use crate::Error;
use crate::MmapArray;

mod config;
mod counters;
mod fast_slots;
mod pool_units;
mod routes;
mod sessions;
mod subscribers;
mod words;

pub use counters::CounterSnapshot;
pub(crate) use subscribers::FlatTable;

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
    /// `lns_sessions` mapped into this process, once: entries are read and
    /// written here without a system call (a session's installation,
    /// update and removal read and write its slot several times), and
    /// [`Maps::mmap_sessions`] hands out the same mapping. A BPF array's
    /// mapping is resident in full from the start (the kernel maps every
    /// page at mmap), so each extra one would count the whole table again
    /// in the process's resident memory.
    pub(crate) sessions_mm: std::sync::Arc<MmapArray<abi::Session>>,
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
    /// `lns_session_ns` mapped: the workers take numbers with atomic adds.
    pub(crate) session_ns_mm: std::sync::Arc<MmapArray<u64>>,
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

fn read_index(map: &MapHandle, key: &[u8], what: &'static str) -> Result<Option<u32>, Error> {
    let v = map.lookup(key, MapFlags::ANY).map_err(ctx(what))?;
    Ok(v.and_then(|b| bytemuck::try_pod_read_unaligned::<u32>(&b).ok()))
}

impl Maps {
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
            ("lns_pool_sessions", self.units().occupancy().0),
            ("lns_pool_bits", self.units().occupancy().1),
        ])
    }
}
