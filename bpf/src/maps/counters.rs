//! What the program and the workers count and report back: the per-CPU
//! verdict counters (`lns_counters`), the per-session counters each worker
//! keeps in its own row (`lns_session_stats`), and the next hops that had
//! no neighbour entry (`lns_neigh_miss`). Only read here, never written:
//! their writers are the program and the workers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use libbpf_rs::{MapCore, MapFlags};

use super::{ctx, delete_if_present, Maps};
use crate::abi::{Counter, SessionStats};
use crate::Error;

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

impl Maps {
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

    /// The per-session counters mapped into this process; worker `w` owns
    /// entries `w * max_sessions ..` of it.
    pub fn mmap_session_stats(&self) -> Result<crate::MmapArray<SessionStats>, Error> {
        crate::MmapArray::map(&self.session_stats)
    }

    /// Rows of `lns_session_stats`: the most workers that can keep counters.
    pub fn stats_rows(&self) -> u32 {
        self.session_stats.max_entries() / self.sessions.max_entries().max(1)
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
}
