//! One pinned worker per queue: receive a batch, decapsulate or encapsulate
//! each frame in place, send, recycle. No syscall per packet: the only ones
//! are the transmit kick once per batch and a poll when idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lns_bpf::abi::{self, Direction, NhResult, Session, SessionState, SessionStats, XdpMeta};
use lns_bpf::{MmapArray, NhResolver};
use xsk_rs::FrameDesc;

use crate::packet::{self, DropReason, EncapState, MssClamp, Outcome};
use crate::police::{self, PoliceTable, Shaper};
use crate::ring::Rings;
use lns_bpf::police::Verdict;

/// Bytes a worker claims before a received frame's metadata for the outer
/// headers of encapsulation: at least the largest overhead (Ethernet, IPv6,
/// UDP, L2TP with length and sequence numbers, PPP: 78) less the 46 bytes of
/// metadata and Ethernet header already there.
const PREPEND_ROOM: usize = 64;

/// How often a worker publishes its counters and batch-time histogram.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a worker keeps a failed next-hop lookup toward a LAC before
/// asking again (the data plane probes a missing neighbour every 100 ms).
const NEGATIVE_NEXTHOP: Duration = Duration::from_millis(10);

/// LACs a worker remembers next hops for; past it the cache starts over.
const MAX_LACS: usize = 65536;

/// Upper bounds, in nanoseconds, of the buckets of a worker's batch-time
/// histogram (`lns_worker_batch_seconds`): 1, 2, 5 per decade from 1 µs to
/// 100 ms; one bucket more counts the longer batches.
pub const BATCH_BOUNDS_NS: [u64; 16] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
];

/// Batches per bucket of [`BATCH_BOUNDS_NS`] (the last one past 100 ms)
/// and their total time, since the worker started.
///
/// Its cost per batch: no clock read of its own (it takes the batch time
/// the worker measures anyway, two `Instant` reads, for its hdrhistogram),
/// a binary search of 16 bounds (4 comparisons) and two additions to the
/// worker's own counters, in its cache; the worker publishes them with its
/// other counters (relaxed stores, no lock, no allocation) at most every
/// 20 ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchTimes {
    pub counts: [u64; BATCH_BOUNDS_NS.len() + 1],
    pub sum_ns: u64,
}

impl BatchTimes {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        // The first bound at or above ns: Prometheus's buckets are `le`.
        let i = BATCH_BOUNDS_NS.partition_point(|b| *b < ns);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// State shared by all workers and the management thread.
pub struct Shared {
    pub sessions: std::sync::Arc<MmapArray<Session>>,
    pub stats: MmapArray<SessionStats>,
    pub max_sessions: usize,
    /// Rows of `stats`: workers with an id at or above it keep no
    /// per-session counters.
    pub stats_rows: usize,
    /// Next Ns of each session's data messages (sessions that sequence),
    /// shared with the control plane, which numbers its PPP frames from the
    /// same counters (`lns_session_ns`).
    pub ns: std::sync::Arc<MmapArray<u64>>,
    /// `lns_pool_sessions`: the session of each pool unit, for downstream
    /// frames the program sent by prefix alone.
    pub pool_sessions: MmapArray<u32>,
    /// `lns_config.nh_epoch` as the management thread last read it: next
    /// hops a worker resolved under another epoch are stale, as the
    /// program's are.
    pub nh_epoch: AtomicU32,
    /// Every session slot's rate-limit buckets (see [`crate::police`]).
    pub police: PoliceTable,
    pub stop: AtomicBool,
}

/// Counters one worker publishes once per batch.
#[derive(Default)]
pub struct WorkerCounters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    pub upstream: AtomicU64,
    pub downstream: AtomicU64,
    pub icmp: AtomicU64,
    pub fragments: AtomicU64,
    pub drops: [AtomicU64; DropReason::ALL.len()],
    pub no_egress: AtomicU64,
    pub tx_ring_full: AtomicU64,
    pub batches: AtomicU64,
    /// Next-hop lookups toward LACs this worker made (lns_nh_resolve).
    pub nh_lookups: AtomicU64,
    /// Downstream frames held by the shaper until they conform, since the
    /// start, and how many it holds now.
    pub shaped: AtomicU64,
    pub shaper_held: AtomicU64,
    /// Nanoseconds per batch; the worker merges its own into it now and then.
    pub batch_ns: Mutex<Option<Histogram<u64>>>,
    /// [`BatchTimes`] as published: batches per bucket, and their time.
    pub batch_counts: [AtomicU64; BATCH_BOUNDS_NS.len() + 1],
    pub batch_sum_ns: AtomicU64,
}

impl WorkerCounters {
    /// The batch-time histogram as last published.
    pub fn batch_times(&self) -> BatchTimes {
        BatchTimes {
            counts: std::array::from_fn(|i| self.batch_counts[i].load(Ordering::Relaxed)),
            sum_ns: self.batch_sum_ns.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Local {
    rx: u64,
    tx: u64,
    upstream: u64,
    downstream: u64,
    icmp: u64,
    fragments: u64,
    drops: [u64; DropReason::ALL.len()],
    no_egress: u64,
    tx_ring_full: u64,
    batches: u64,
    shaped: u64,
    batch_times: BatchTimes,
}

impl Local {
    fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }

    fn publish(&self, c: &WorkerCounters) {
        c.rx.store(self.rx, Ordering::Relaxed);
        c.tx.store(self.tx, Ordering::Relaxed);
        c.upstream.store(self.upstream, Ordering::Relaxed);
        c.downstream.store(self.downstream, Ordering::Relaxed);
        c.icmp.store(self.icmp, Ordering::Relaxed);
        c.fragments.store(self.fragments, Ordering::Relaxed);
        for (a, v) in c.drops.iter().zip(self.drops) {
            a.store(v, Ordering::Relaxed);
        }
        c.no_egress.store(self.no_egress, Ordering::Relaxed);
        c.tx_ring_full.store(self.tx_ring_full, Ordering::Relaxed);
        c.batches.store(self.batches, Ordering::Relaxed);
        c.shaped.store(self.shaped, Ordering::Relaxed);
        for (a, v) in c.batch_counts.iter().zip(self.batch_times.counts) {
            a.store(v, Ordering::Relaxed);
        }
        c.batch_sum_ns.store(self.batch_times.sum_ns, Ordering::Relaxed);
    }
}

pub struct WorkerConfig {
    pub id: usize,
    pub batch: usize,
    pub busy_poll: bool,
    pub mss: MssClamp,
    /// Next hops toward LACs are reused for the rest of their epoch
    /// (`--nh-cache-ms` > 0); false: for one batch.
    pub nh_cache: bool,
    /// Downstream shaping: the longest a frame over its session's rate
    /// waits (`--shape-ms`); 0 polices (drops) instead.
    pub shape_ns: u64,
    /// Frames the shaper may hold at once (of the worker's UMEM).
    pub shape_frames: usize,
}

/// Next hops toward LACs, for downstream frames the program did not look
/// up (pool units): the worker asks the kernel through `lns_nh_resolve`
/// once per LAC per epoch, not per frame.
pub struct LacNexthops {
    resolver: Option<NhResolver>,
    cache: HashMap<LacKey, LacNexthop, rustc_hash::FxBuildHasher>,
    /// The entry the last frame used: a batch's frames mostly go to one
    /// LAC (a few LACs carry many subscribers each), and a compare of the
    /// key is cheaper than hashing it. perf put SipHash and memcmp of the
    /// 36-byte key at 7 % of a worker's downstream time before.
    last: Option<(LacKey, LacNexthop)>,
    /// Lookups made (`nh_lookups` in the report).
    lookups: u64,
}

/// (LNS address, LAC address, interface the lookup is made from), the
/// addresses as integers so that comparing keys is two compares.
type LacKey = (u128, u128, u32);

#[derive(Clone, Copy)]
struct LacNexthop {
    epoch: u32,
    batch: u64,
    at: Instant,
    answer: Result<(u32, [u8; 6], [u8; 6]), DropReason>,
}

impl LacNexthops {
    /// `resolver`: None answers every query with [`DropReason::NoRoute`].
    pub fn new(resolver: Option<NhResolver>) -> LacNexthops {
        LacNexthops { resolver, cache: HashMap::default(), last: None, lookups: 0 }
    }

    /// The egress interface and Ethernet addresses toward `s`'s LAC.
    fn get(
        &mut self,
        s: &Session,
        ifindex: u32,
        epoch: u32,
        batch: u64,
        now: Instant,
        keep: bool,
    ) -> Result<(u32, [u8; 6], [u8; 6]), DropReason> {
        let key = (u128::from_ne_bytes(s.local_addr), u128::from_ne_bytes(s.peer_addr), ifindex);
        let fresh = |e: &LacNexthop| {
            e.epoch == epoch
                && (keep || e.batch == batch)
                && (e.answer.is_ok() || now.saturating_duration_since(e.at) < NEGATIVE_NEXTHOP)
        };
        match &self.last {
            Some((k, e)) if *k == key && fresh(e) => return e.answer,
            _ => {}
        }
        if let Some(e) = self.cache.get(&key).copied() {
            if fresh(&e) {
                self.last = Some((key, e));
                return e.answer;
            }
        }
        self.lookups += 1;
        let answer = match &self.resolver {
            Some(r) => match r.resolve(ifindex, abi::unmap(s.local_addr), abi::unmap(s.peer_addr)) {
                Ok(q) => match NhResult::from_raw(q.result) {
                    NhResult::Forward => Ok((q.out_ifindex, q.smac, q.dmac)),
                    NhResult::NoNeighbour => Err(DropReason::NoNeighbour),
                    _ => Err(DropReason::NoRoute),
                },
                Err(_) => Err(DropReason::NoRoute),
            },
            None => Err(DropReason::NoRoute),
        };
        if self.cache.len() >= MAX_LACS {
            self.cache.clear();
        }
        let e = LacNexthop { epoch, batch, at: now, answer };
        self.cache.insert(key, e);
        self.last = Some((key, e));
        answer
    }
}

/// Where a processed frame goes.
enum Action {
    Send(usize),
    /// Send on this port once the session's bucket says so (ns).
    Hold(usize, u64),
    Free,
}

pub struct Worker {
    cfg: WorkerConfig,
    rings: Rings,
    shared: Arc<Shared>,
    counters: Arc<WorkerCounters>,
    local: Local,
    hist: Histogram<u64>,
    encap: EncapState,
    lacs: LacNexthops,
    /// When the batch being processed started.
    now: Instant,
    /// The same on the buckets' clock ([`PoliceTable::ns`]).
    now_ns: u64,
    /// Downstream frames over their session's rate, held until they
    /// conform (`--shape-ms`), with their output port.
    shaper: Option<Shaper<(FrameDesc, usize)>>,
    /// When counters and histogram were last published.
    published: Instant,
    rx: Vec<FrameDesc>,
    pending: Vec<Vec<FrameDesc>>,
    scratch: Vec<FrameDesc>,
}

impl Worker {
    pub fn new(
        cfg: WorkerConfig,
        rings: Rings,
        shared: Arc<Shared>,
        counters: Arc<WorkerCounters>,
        lacs: LacNexthops,
    ) -> Worker {
        let ports = rings.ports.len();
        let batch = cfg.batch.max(1);
        let now_ns = shared.police.ns(Instant::now());
        let shaper = (cfg.shape_ns > 0).then(|| Shaper::new(cfg.shape_ns, cfg.shape_frames, now_ns));
        Worker {
            now_ns,
            shaper,
            rx: vec![FrameDesc::default(); batch],
            pending: (0..ports).map(|_| Vec::with_capacity(batch * 2)).collect(),
            scratch: vec![FrameDesc::default(); batch * 4],
            cfg,
            rings,
            shared,
            counters,
            local: Local::default(),
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static histogram bounds"),
            encap: EncapState::default(),
            lacs,
            now: Instant::now(),
            published: Instant::now(),
        }
    }

    pub fn run(mut self) {
        let ports = self.rings.ports.len();
        while !self.shared.stop.load(Ordering::Relaxed) {
            for p in 0..ports {
                let mut scratch = std::mem::take(&mut self.scratch);
                while self.rings.complete(p, &mut scratch) == scratch.len() {}
                self.scratch = scratch;
                self.rings.refill(p);
            }
            self.release_shaped();
            let mut received = 0;
            for p in 0..ports {
                received += self.poll_port(p);
            }
            for p in 0..ports {
                // Copy mode sends at most 32 frames per sendto: kick as often
                // as the backlog needs (bounded, so one port cannot starve
                // the others), collecting completions in between.
                let mut kicks = 0;
                while self.rings.ports[p].tx_outstanding > 0 && kicks < 16 {
                    self.rings.kick(p);
                    let mut scratch = std::mem::take(&mut self.scratch);
                    let done = self.rings.complete(p, &mut scratch);
                    self.scratch = scratch;
                    kicks += 1;
                    if done == 0 {
                        break;
                    }
                }
            }
            if received == 0 {
                let outstanding = self.rings.ports.iter().any(|p| p.tx_outstanding > 0);
                // Held frames: wake up when the first is due (the wheel's
                // tick is finer than a millisecond; a frame waits at most
                // one more).
                let due = self.shaper.as_ref().and_then(Shaper::next_due).map(|at| {
                    let now = self.shared.police.ns(Instant::now());
                    at.saturating_sub(now).div_ceil(1_000_000).min(10) as i32
                });
                if self.cfg.busy_poll {
                    std::hint::spin_loop();
                } else if due != Some(0) {
                    let _ = self.rings.wait(if outstanding { 0 } else { due.unwrap_or(10) });
                }
            }
            // Merging the batch-time histogram walks all its buckets: at most
            // every PUBLISH_EVERY (it was 11 % of the worker's time when done
            // on every idle pass).
            if (received == 0 || self.local.batches.is_multiple_of(256))
                && self.published.elapsed() >= PUBLISH_EVERY
            {
                self.publish();
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        self.published = Instant::now();
        self.local.publish(&self.counters);
        self.counters.nh_lookups.store(self.lacs.lookups, Ordering::Relaxed);
        let held = self.shaper.as_ref().map_or(0, Shaper::held);
        self.counters.shaper_held.store(held as u64, Ordering::Relaxed);
        if let Ok(mut h) = self.counters.batch_ns.try_lock() {
            match h.as_mut() {
                Some(shared) => {
                    let _ = shared.add(&self.hist);
                }
                None => *h = Some(self.hist.clone()),
            }
            self.hist.reset();
        }
    }

    fn poll_port(&mut self, port: usize) -> usize {
        let mut rx = std::mem::take(&mut self.rx);
        let n = self.rings.receive(port, &mut rx);
        if n > 0 {
            let t0 = Instant::now();
            self.now = t0;
            self.now_ns = self.shared.police.ns(t0);
            self.local.rx += n as u64;
            self.local.batches += 1;
            // With many subscribers their sessions and counters are not in
            // the cache: ask for all of the batch's at once, so the misses
            // overlap instead of costing one after the other. A pool unit
            // names its session through lns_pool_sessions: those entries
            // first, then (a second pass) the sessions they name.
            let mut units = false;
            for d in rx.iter().take(n) {
                let Some(m) = self.rings.peek_meta(d) else { continue };
                if is_pool_unit(&m) {
                    self.shared.pool_sessions.prefetch(m.session_index as usize);
                    units = true;
                } else {
                    self.prefetch_session(m.session_index as usize);
                }
            }
            if units {
                for d in rx.iter().take(n) {
                    let Some(m) = self.rings.peek_meta(d).filter(is_pool_unit) else { continue };
                    if let Some(i) = self.unit_session(m.session_index) {
                        self.prefetch_session(i);
                    }
                }
            }
            for d in rx.iter_mut().take(n) {
                let mut desc = *d;
                match self.process(port, &mut desc) {
                    Action::Send(out) => self.pending[out].push(desc),
                    Action::Hold(out, at) => self.hold(desc, out, at),
                    Action::Free => self.rings.free.push(desc),
                }
            }
            self.flush();
            let ns = t0.elapsed().as_nanos().max(1) as u64;
            let _ = self.hist.record(ns);
            self.local.batch_times.record(ns);
        }
        self.rx = rx;
        n
    }

    fn prefetch_session(&self, i: usize) {
        self.shared.sessions.prefetch(i);
        self.shared.police.prefetch(i);
        if let Some(slot) = self.stats_slot(i) {
            self.shared.stats.prefetch(slot);
        }
    }

    /// The session pool unit `unit` names (`lns_pool_sessions`).
    fn unit_session(&self, unit: u32) -> Option<usize> {
        self.shared.pool_sessions.load(unit as usize).and_then(|v| v.checked_sub(1)).map(|i| i as usize)
    }

    fn flush(&mut self) {
        for out in 0..self.pending.len() {
            if self.pending[out].is_empty() {
                continue;
            }
            let sent = self.rings.send(out, &self.pending[out]);
            self.local.tx += sent as u64;
            let rest = self.pending[out].len() - sent;
            if rest > 0 {
                self.local.tx_ring_full += rest as u64;
                let left: Vec<FrameDesc> = self.pending[out].drain(sent..).collect();
                self.rings.free.extend(left);
            }
            self.pending[out].clear();
        }
    }

    /// A shaped frame: into the wheel until `at`. The bucket has counted
    /// it already and the wheel had room when it was asked (one worker,
    /// one thread), so it is refused only past the wheel's end, which the
    /// bucket's bound keeps it from.
    fn hold(&mut self, desc: FrameDesc, out: usize, at: u64) {
        let Some(shaper) = self.shaper.as_mut() else {
            self.pending[out].push(desc);
            return;
        };
        match shaper.hold(self.now_ns, at, (desc, out)) {
            Ok(()) => self.local.shaped += 1,
            Err((desc, _)) => {
                self.local.drop(DropReason::Policed);
                self.rings.free.push(desc);
            }
        }
    }

    /// Sends the held frames that are due.
    fn release_shaped(&mut self) {
        let Some(shaper) = self.shaper.as_mut() else { return };
        if shaper.held() == 0 {
            return;
        }
        let now = self.shared.police.ns(Instant::now());
        let pending = &mut self.pending;
        shaper.release(now, |(d, out)| pending[out].push(d));
        self.flush();
    }

    fn port_of(&self, ifindex: u32) -> Option<usize> {
        self.rings.ports.iter().position(|p| p.ifindex == ifindex)
    }

    fn process(&mut self, port: usize, desc: &mut FrameDesc) -> Action {
        let in_ifindex = self.rings.ports[port].ifindex;
        // Room for the outer headers before the received bytes (the kernel
        // leaves 256 bytes before a packet, the program took 32 for the
        // metadata): encapsulation writes them there instead of moving the
        // packet. Without it (a frame whose start moved), the packet moves.
        let at = if self.rings.move_start(desc, -(PREPEND_ROOM as isize)) { PREPEND_ROOM } else { 0 };
        // `len` counts from the new start: the room, the metadata, the frame.
        let (mut d, len) = self.rings.frame(desc);
        let buf = d.contents_mut();
        let Some(mut meta) = buf.get(at..).and_then(XdpMeta::from_bytes) else {
            self.local.drop(DropReason::Malformed);
            return Action::Free;
        };
        let unit = is_pool_unit(&meta);
        let idx = if unit {
            let Some(i) = self.unit_session(meta.session_index) else {
                self.local.drop(DropReason::NoSubscriber);
                return Action::Free;
            };
            i
        } else {
            meta.session_index as usize
        };
        let shared = &self.shared;
        let Some(s) = shared.sessions.get(idx) else {
            self.local.drop(DropReason::Malformed);
            return Action::Free;
        };
        if meta.flags & XdpMeta::CHECK != 0 {
            let frame = buf.get(at + packet::META_LEN..len).unwrap_or(&[]);
            let checked = if unit {
                packet::check_downstream(frame, &meta, &s)
            } else {
                packet::check_upstream(frame, &meta, &s)
            };
            if let Err(r) = checked {
                self.local.drop(r);
                return Action::Free;
            }
        }
        if unit {
            let epoch = shared.nh_epoch.load(Ordering::Relaxed);
            let batch = self.local.batches;
            match self.lacs.get(&s, in_ifindex, epoch, batch, self.now, self.cfg.nh_cache) {
                Ok((ifindex, smac, dmac)) => {
                    meta.egress_ifindex = ifindex;
                    meta.smac = smac;
                    meta.dmac = dmac;
                }
                Err(r) => {
                    self.local.drop(r);
                    return Action::Free;
                }
            }
        }
        if s.state != SessionState::Forwarding as u32 {
            self.local.drop(DropReason::SessionGone);
            return Action::Free;
        }
        // The session's rate limit, before any work (and before a
        // sequencing session's Ns is taken).
        let mut hold_until = None;
        if s.rate_down_kbps | s.rate_up_kbps != 0 {
            let upstream = meta.direction == Direction::Upstream as u8;
            if police::limit(&s, upstream).is_limited() {
                // A length the frame does not hold: decap/encap drop it.
                let ilen = packet::inner_len(buf, at, len, &meta).unwrap_or(0) as u64;
                let max_delay = match &self.shaper {
                    Some(sh) if !upstream && sh.has_room() => sh.max_delay_ns,
                    _ => 0,
                };
                match shared.police.check(idx, &s, upstream, self.now_ns, ilen, max_delay) {
                    Verdict::Conform => {}
                    Verdict::Later { at } => hold_until = Some(at),
                    Verdict::Exceed => {
                        self.policed(idx, upstream, ilen);
                        return Action::Free;
                    }
                }
            }
        }
        let (outcome, inner_bytes) = match meta.direction() {
            Some(Direction::Upstream) => {
                let o = packet::decap(buf, at, len, &meta, self.cfg.mss, s.mtu);
                let bytes = match o {
                    Outcome::Forward { len, .. } => len - packet::ETH_LEN,
                    _ => 0,
                };
                (o, bytes)
            }
            Some(Direction::Downstream) => {
                let ns = (s.flags & Session::SEQUENCING != 0)
                    .then(|| shared.ns.fetch_add(idx).map(|v| v as u16).unwrap_or(0));
                let o = packet::encap(buf, at, len, &meta, &s, self.cfg.mss, ns, &mut self.encap);
                let bytes = match o {
                    Outcome::Forward { len, .. } => len - packet::encap_overhead(&s),
                    _ => 0,
                };
                (o, bytes)
            }
            None => (Outcome::Drop(DropReason::Malformed), 0),
        };
        match outcome {
            Outcome::Forward { start, len } => {
                // Send from where the frame now starts: the data ends at
                // start + len, then its start moves up to `start`.
                d.cursor().set_pos(start + len);
                if !self.rings.move_start(desc, start as isize) {
                    self.local.drop(DropReason::NoRoom);
                    return Action::Free;
                }
                let Some(out) = self.port_of(meta.egress_ifindex) else {
                    self.local.no_egress += 1;
                    return Action::Free;
                };
                self.account(idx, meta.direction == Direction::Upstream as u8, inner_bytes);
                match hold_until {
                    Some(at) => Action::Hold(out, at),
                    None => Action::Send(out),
                }
            }
            Outcome::Reply { len } => {
                d.cursor().set_pos(len);
                self.local.icmp += 1;
                Action::Send(port)
            }
            Outcome::Fragment { inner, inner_len } => {
                // Rare: copy the packet out, then build each fragment in a
                // frame of its own.
                let mut pkt = [0u8; 2048];
                let n = inner_len.min(pkt.len()).min(buf.len().saturating_sub(inner));
                pkt[..n].copy_from_slice(&buf[inner..inner + n]);
                self.fragment(&pkt[..n], &meta, &s, idx);
                Action::Free
            }
            Outcome::Drop(r) => {
                self.local.drop(r);
                Action::Free
            }
        }
    }

    fn fragment(&mut self, pkt: &[u8], meta: &XdpMeta, s: &Session, idx: usize) {
        let Some(out) = self.port_of(meta.egress_ifindex) else {
            self.local.no_egress += 1;
            return;
        };
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        packet::fragment_v4(pkt, s.mtu, |f| pieces.push(f.to_vec()));
        for piece in pieces {
            let Some(mut desc) = self.rings.free.pop() else {
                self.local.drop(DropReason::NoRoom);
                return;
            };
            let ns = (s.flags & Session::SEQUENCING != 0)
                .then(|| self.shared.ns.fetch_add(idx).map(|v| v as u16).unwrap_or(0));
            let (mut d, _) = self.rings.frame(&mut desc);
            let buf = d.contents_mut();
            // Build the piece far enough in that the headers fit before it.
            let at = 256.min(buf.len());
            if at + piece.len() > buf.len() {
                self.rings.free.push(desc);
                self.local.drop(DropReason::NoRoom);
                continue;
            }
            buf[at..at + piece.len()].copy_from_slice(&piece);
            match packet::encap_at(buf, at, piece.len(), 4, meta, s, ns, &mut self.encap) {
                Outcome::Forward { start, len } => {
                    d.cursor().set_pos(start + len);
                    if !self.rings.move_start(&mut desc, start as isize) {
                        self.rings.free.push(desc);
                        self.local.drop(DropReason::NoRoom);
                        continue;
                    }
                    self.local.fragments += 1;
                    self.account(idx, false, piece.len());
                    self.pending[out].push(desc);
                }
                _ => {
                    self.rings.free.push(desc);
                    self.local.drop(DropReason::NoRoom);
                }
            }
        }
    }

    /// Session `idx`'s entry in this worker's row of `lns_session_stats`;
    /// None for a worker beyond the rows.
    fn stats_slot(&self, idx: usize) -> Option<usize> {
        (self.cfg.id < self.shared.stats_rows).then(|| self.cfg.id * self.shared.max_sessions + idx)
    }

    /// A frame over its session's rate, dropped: counted per worker and in
    /// the session's policed counters.
    fn policed(&mut self, idx: usize, upstream: bool, bytes: u64) {
        self.local.drop(DropReason::Policed);
        let Some(slot) = self.stats_slot(idx) else { return };
        if let Some(mut st) = self.shared.stats.get(slot) {
            if upstream {
                st.up_policed_packets += 1;
                st.up_policed_bytes += bytes;
            } else {
                st.down_policed_packets += 1;
                st.down_policed_bytes += bytes;
            }
            self.shared.stats.set(slot, st);
        }
    }

    /// Per-session counters in this worker's row: a single writer, so a
    /// plain read and write, no lock and no atomic read-modify-write.
    fn account(&mut self, idx: usize, upstream: bool, bytes: usize) {
        if upstream {
            self.local.upstream += 1;
        } else {
            self.local.downstream += 1;
        }
        let Some(slot) = self.stats_slot(idx) else { return };
        if let Some(mut st) = self.shared.stats.get(slot) {
            if upstream {
                st.up_packets += 1;
                st.up_bytes += bytes as u64;
            } else {
                st.down_packets += 1;
                st.down_bytes += bytes as u64;
            }
            self.shared.stats.set(slot, st);
        }
    }
}

/// A downstream frame the program sent by its pool unit alone: the
/// metadata's session index is the unit.
fn is_pool_unit(m: &XdpMeta) -> bool {
    m.direction == Direction::Downstream as u8 && m.flags & XdpMeta::CHECK != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(lac: u8) -> Session {
        let mut s = Session::default();
        s.local_addr[15] = 1;
        s.peer_addr[15] = lac;
        s
    }

    /// The cache asks the kernel once per LAC per epoch (per batch without
    /// `keep`), whether the frames of two LACs alternate or not; an answer
    /// that there is no route is asked again after NEGATIVE_NEXTHOP.
    #[test]
    fn next_hops_are_looked_up_once_per_lac_and_epoch() {
        let mut nh = LacNexthops::new(None);
        let t0 = Instant::now();
        let (a, b) = (session(2), session(3));
        for _ in 0..3 {
            assert_eq!(nh.get(&a, 4, 1, 1, t0, true), Err(DropReason::NoRoute));
            assert_eq!(nh.get(&b, 4, 1, 1, t0, true), Err(DropReason::NoRoute));
        }
        assert_eq!(nh.lookups, 2, "one per LAC");
        assert_eq!(nh.get(&a, 5, 1, 1, t0, true), Err(DropReason::NoRoute));
        assert_eq!(nh.lookups, 3, "another interface is another key");
        nh.get(&a, 4, 2, 1, t0, true).unwrap_err();
        assert_eq!(nh.lookups, 4, "a new epoch asks again");
        nh.get(&a, 4, 2, 2, t0, true).unwrap_err();
        assert_eq!(nh.lookups, 4, "kept across batches");
        nh.get(&a, 4, 2, 3, t0, false).unwrap_err();
        assert_eq!(nh.lookups, 5, "without keep, once per batch");
        nh.get(&b, 4, 2, 3, t0, true).unwrap_err();
        nh.get(&b, 4, 2, 3, t0 + NEGATIVE_NEXTHOP / 2, true).unwrap_err();
        assert_eq!(nh.lookups, 6);
        nh.get(&b, 4, 2, 3, t0 + NEGATIVE_NEXTHOP, true).unwrap_err();
        assert_eq!(nh.lookups, 7, "a negative answer expires");
    }
}
