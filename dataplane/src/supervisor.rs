//! Starts and stops the data plane: the program, the sockets, the workers,
//! and the slow duties beside them (neighbour resolution, statistics).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use lns_bpf::abi::{self, Iface};
use lns_bpf::{LoadOptions, Steering, Takeover, XdpMode};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

use crate::packet::{DropReason, MssClamp};
use crate::ring::{BindMode, Rings};
use crate::worker::{LacNexthops, Shared, Worker, WorkerConfig, WorkerCounters};

#[derive(Clone, Debug)]
pub struct Options {
    pub access_if: String,
    pub core_if: String,
    pub queues: u32,
    pub cores: Vec<usize>,
    pub xdp_mode: XdpMode,
    pub bind: BindMode,
    pub frames: u32,
    pub ring_size: u32,
    pub batch: usize,
    pub busy_poll: bool,
    pub l2tp_port: u16,
    /// The control plane's own ports of tunnels: L2TP arrives on these too.
    pub tunnel_ports: Option<(u16, u16)>,
    pub pin_dir: PathBuf,
    pub max_sessions: u32,
    pub mss: MssClamp,
    pub pass_unknown_sessions: bool,
    /// The workers check upstream data of fast slots (`--session-checks`).
    pub worker_checks: bool,
    pub nh_cache_ms: u32,
    pub unpin_on_exit: bool,
    /// The program stays on the interfaces after the process, through
    /// links pinned beside the maps (`--keep-attached`).
    pub keep_attached: bool,
    /// Subscriber pools declared to the program (`--pool`).
    pub pools: Vec<abi::PoolSpec>,
    /// Units the pools may hold together (`--pool-units`).
    pub pool_units: u32,
    /// Downstream shaping: the longest a frame over its session's rate
    /// waits, ms (`--shape-ms`); 0 drops it (policing).
    pub shape_ms: u32,
}

/// bpf_fib_lookup answers only for interfaces that forward, as a router's.
fn enable_forwarding(ifname: &str) -> Result<()> {
    for fam in ["ipv4", "ipv6"] {
        let p = format!("/proc/sys/net/{fam}/conf/{ifname}/forwarding");
        std::fs::write(&p, "1").with_context(|| format!("enabling forwarding: {p}"))?;
    }
    Ok(())
}

pub struct Stop {
    pub stop: AtomicBool,
}

pub struct Running {
    steering: Steering,
    shared: Arc<Shared>,
    stop: Arc<Stop>,
    workers: Vec<(JoinHandle<()>, Arc<WorkerCounters>)>,
    slots: Vec<u32>,
    unpin_on_exit: bool,
    keep_attached: bool,
    /// How each interface got its program at start.
    takeovers: Vec<(String, Takeover)>,
    icmp4: Option<Socket>,
    icmp6: Option<Socket>,
    probe_seq: u16,
    /// Echoes sent by [`Running::resolve_neighbours`].
    probes: u64,
}

pub fn start(o: Options) -> Result<Running> {
    let access = lns_bpf::ifindex(&o.access_if)?;
    let core = lns_bpf::ifindex(&o.core_if)?;
    let one_arm = access == core;
    if o.queues > abi::MAX_QUEUES {
        bail!("at most {} queues", abi::MAX_QUEUES);
    }
    let mut load = LoadOptions {
        pin_dir: Some(o.pin_dir.clone()),
        reuse_pinned: true,
        max_sessions: o.max_sessions,
        max_workers: o.queues,
        l2tp_port: o.l2tp_port,
        tunnel_ports: o.tunnel_ports,
        pass_unknown_sessions: o.pass_unknown_sessions,
        nh_cache_ms: o.nh_cache_ms,
        worker_checks: o.worker_checks,
        pools: o.pools.clone(),
        pool_units: o.pool_units,
    };
    let mut steering = match Steering::load(&load) {
        Ok(s) => s,
        // Pools the maps cannot hold, and a pin directory other processes
        // would not see, are the operator's to fix.
        Err(e @ (lns_bpf::Error::Pool(_) | lns_bpf::Error::NotBpffs { .. })) => return Err(e.into()),
        Err(e) => {
            // Pins of another size or layout cannot be reused; the sessions
            // in them are lost and the control plane must write them again.
            warn!("cannot reuse the maps pinned in {}: {e}; starting with fresh maps", o.pin_dir.display());
            load.reuse_pinned = false;
            Steering::load(&load).context("loading the XDP program")?
        }
    };
    let maps = steering.maps();
    // The next-hop epoch the workers start from (pinned maps keep theirs).
    let cfg = maps.read_config()?;
    let access_roles = if one_arm { Iface::ACCESS | Iface::CORE } else { Iface::ACCESS };
    maps.set_iface(access, &Iface { roles: access_roles, xsk_base: 0 })?;
    if !one_arm {
        maps.set_iface(core, &Iface { roles: Iface::CORE, xsk_base: abi::MAX_QUEUES })?;
    }
    enable_forwarding(&o.access_if)?;
    if !one_arm {
        enable_forwarding(&o.core_if)?;
    }

    let shared = Arc::new(Shared {
        sessions: maps.mmap_sessions()?,
        stats: maps.mmap_session_stats()?,
        max_sessions: maps.max_sessions() as usize,
        stats_rows: maps.stats_rows() as usize,
        ns: maps.mmap_session_ns()?,
        pool_sessions: maps.mmap_pool_sessions()?,
        nh_epoch: std::sync::atomic::AtomicU32::new(cfg.nh_epoch),
        police: crate::police::PoliceTable::new(maps.max_sessions() as usize),
        stop: AtomicBool::new(false),
    });
    let stop = Arc::new(Stop { stop: AtomicBool::new(false) });

    let mut ifaces = vec![(o.access_if.clone(), access)];
    if !one_arm {
        ifaces.push((o.core_if.clone(), core));
    }
    let mut workers = Vec::new();
    let mut slots = Vec::new();
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    for q in 0..o.queues {
        let rings = Rings::new(&ifaces, q, o.frames, o.ring_size, o.bind)?;
        for (i, _) in ifaces.iter().enumerate() {
            let slot = if i == 0 { q } else { abi::MAX_QUEUES + q };
            steering.maps().set_xsk(slot, rings.fd(i))?;
            slots.push(slot);
        }
        let counters = Arc::new(WorkerCounters { batch_ns: Mutex::new(None), ..Default::default() });
        let cfg = WorkerConfig {
            id: q as usize,
            batch: o.batch,
            busy_poll: o.busy_poll,
            mss: o.mss,
            nh_cache: o.nh_cache_ms > 0,
            shape_ns: u64::from(o.shape_ms) * 1_000_000,
            // A quarter of the UMEM: the rest keeps the fill and transmit
            // rings going while the shaper holds its most.
            shape_frames: o.frames as usize / 4,
        };
        let lacs = LacNexthops::new(Some(steering.nh_resolver()?));
        let worker = Worker::new(cfg, rings, Arc::clone(&shared), Arc::clone(&counters), lacs);
        let pin = o.cores.get(q as usize).and_then(|c| core_ids.iter().find(|id| id.id == *c).copied());
        let handle = std::thread::Builder::new()
            .name(format!("lns-worker-{q}"))
            .spawn(move || {
                if let Some(id) = pin {
                    core_affinity::set_for_current(id);
                }
                worker.run();
            })
            .context("spawning a worker")?;
        workers.push((handle, counters));
    }

    // Attach last: until every socket is in the XSKMAP, the program passes
    // to the kernel what it would redirect. A program an earlier run kept
    // attached is running already (on these maps, when they were reused)
    // and redirects into the sockets as they enter the map; its link takes
    // this run's program without a moment with none.
    let keep = o.keep_attached && !o.unpin_on_exit;
    let mut takeovers = Vec::new();
    let mut names = vec![o.access_if.as_str()];
    if !one_arm {
        names.push(o.core_if.as_str());
    }
    for ifname in &names {
        let t = steering
            .attach_kept(ifname, o.xdp_mode, keep)
            .with_context(|| format!("attaching XDP to {ifname}"))?;
        if let Takeover::Recreated { why } = &t {
            warn!("the XDP link kept for {ifname} could not take this program ({why}): attached anew");
        }
        takeovers.push((ifname.to_string(), t));
    }
    // Links an earlier run kept on interfaces this one does not serve.
    for gone in lns_bpf::unpin_links(&o.pin_dir, &names)? {
        warn!("XDP kept on {gone} by an earlier run, not an interface of this one: detached");
    }
    let icmp4 = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).ok();
    let icmp6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).ok();
    Ok(Running {
        steering,
        shared,
        stop,
        workers,
        slots,
        unpin_on_exit: o.unpin_on_exit,
        keep_attached: keep,
        takeovers,
        icmp4,
        icmp6,
        probe_seq: 0,
        probes: 0,
    })
}

/// What the data plane has done, for the stats line and `--json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub xdp: BTreeMap<&'static str, u64>,
    pub workers: Vec<WorkerReport>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerReport {
    pub rx: u64,
    pub tx: u64,
    pub upstream: u64,
    pub downstream: u64,
    pub icmp: u64,
    pub fragments: u64,
    pub drops: BTreeMap<&'static str, u64>,
    pub no_egress: u64,
    pub tx_ring_full: u64,
    pub batches: u64,
    /// Next-hop lookups toward LACs (pool units' frames), not per frame.
    pub nh_lookups: u64,
    pub batch_ns_p50: u64,
    pub batch_ns_p99: u64,
    pub batch_ns_max: u64,
}

impl Report {
    pub fn text(&self) -> String {
        let nz: Vec<String> =
            self.xdp.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
        let mut s = format!("xdp: {}", nz.join(" "));
        for (i, w) in self.workers.iter().enumerate() {
            let drops: Vec<String> =
                w.drops.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!(
                "\nworker {i}: rx={} tx={} up={} down={} icmp={} frag={} no_egress={} tx_full={} nh_lookups={} drops[{}] batch p50={}ns p99={}ns max={}ns",
                w.rx, w.tx, w.upstream, w.downstream, w.icmp, w.fragments, w.no_egress, w.tx_ring_full,
                w.nh_lookups, drops.join(" "), w.batch_ns_p50, w.batch_ns_p99, w.batch_ns_max
            ));
        }
        s
    }
}

impl Running {
    pub fn stop_handle(&self) -> Arc<Stop> {
        Arc::clone(&self.stop)
    }

    pub fn queues(&self) -> usize {
        self.workers.len()
    }

    pub fn pin_dir(&self) -> &Path {
        self.steering.pin_dir().unwrap_or(Path::new(""))
    }

    pub fn report(&self) -> Report {
        let xdp = self.steering.maps().counters().map(|c| c.0).unwrap_or_default();
        let workers = self
            .workers
            .iter()
            .map(|(_, c)| {
                let (p50, p99, max) = match c.batch_ns.lock() {
                    Ok(h) => h
                        .as_ref()
                        .map(|h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()))
                        .unwrap_or_default(),
                    Err(_) => (0, 0, 0),
                };
                WorkerReport {
                    rx: c.rx.load(Ordering::Relaxed),
                    tx: c.tx.load(Ordering::Relaxed),
                    upstream: c.upstream.load(Ordering::Relaxed),
                    downstream: c.downstream.load(Ordering::Relaxed),
                    icmp: c.icmp.load(Ordering::Relaxed),
                    fragments: c.fragments.load(Ordering::Relaxed),
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.name(), c.drops[*r as usize].load(Ordering::Relaxed)))
                        .collect(),
                    no_egress: c.no_egress.load(Ordering::Relaxed),
                    tx_ring_full: c.tx_ring_full.load(Ordering::Relaxed),
                    batches: c.batches.load(Ordering::Relaxed),
                    nh_lookups: c.nh_lookups.load(Ordering::Relaxed),
                    batch_ns_p50: p50,
                    batch_ns_p99: p99,
                    batch_ns_max: max,
                }
            })
            .collect();
        Report { xdp, workers }
    }

    /// What `/metrics` reports: the report, the workers' batch-time
    /// histograms, the neighbour probes.
    pub fn metrics(&self) -> crate::metrics::Snapshot {
        crate::metrics::Snapshot {
            report: self.report(),
            batch_times: self.workers.iter().map(|(_, c)| c.batch_times()).collect(),
            neighbour_probes: self.probes,
        }
    }

    /// Whether the maps stay pinned at exit (`--unpin-on-exit` unset).
    pub fn keeps_pins(&self) -> bool {
        !self.unpin_on_exit
    }

    /// Whether the program stays on the interfaces at exit
    /// (`--keep-attached`, without `--unpin-on-exit`).
    pub fn keeps_attached(&self) -> bool {
        self.keep_attached
    }

    /// How each interface got this run's program: a new link, or a kept
    /// one that took it by BPF_LINK_UPDATE.
    pub fn takeovers(&self) -> &[(String, Takeover)] {
        &self.takeovers
    }

    /// The program cannot resolve a next hop; the kernel does when it has
    /// something to send there. An ICMP echo to each destination that missed
    /// makes it resolve the next hop toward it, and the following packets
    /// take the fast path.
    pub fn resolve_neighbours(&mut self) {
        let Ok(misses) = self.steering.maps().neighbour_misses() else { return };
        for addr in misses {
            self.probe_seq = self.probe_seq.wrapping_add(1);
            let seq = self.probe_seq.to_be_bytes();
            let sent = match addr {
                IpAddr::V4(_) => {
                    let mut m = [8u8, 0, 0, 0, 0x4c, 0x4e, seq[0], seq[1]];
                    let c = lns_wire::checksum::of(&m);
                    m[2..4].copy_from_slice(&c.to_be_bytes());
                    self.icmp4.as_ref().map(|s| s.send_to(&m, &SocketAddr::new(addr, 0).into()))
                }
                IpAddr::V6(_) => {
                    // The kernel fills in the ICMPv6 checksum on raw sockets.
                    let m = [128u8, 0, 0, 0, 0x4c, 0x4e, seq[0], seq[1]];
                    self.icmp6.as_ref().map(|s| s.send_to(&m, &SocketAddr::new(addr, 0).into()))
                }
            };
            if matches!(sent, Some(Ok(_))) {
                self.probes += 1;
            }
        }
    }

    /// Moves the next-hop cache's epoch: every next hop the program cached
    /// is looked up again (the expiry of `--nh-cache-ms`).
    pub fn age_nexthops(&mut self) {
        if let Err(e) = self.steering.maps().flush_nexthops() {
            warn!("ageing the next-hop cache: {e}");
        }
        self.sync_nh_epoch();
    }

    /// Tells the workers the program's next-hop epoch, so the next hops
    /// they resolved themselves age and flush with the program's (a flush
    /// may come from another process).
    pub fn sync_nh_epoch(&self) {
        if let Ok(c) = self.steering.maps().read_config() {
            self.shared.nh_epoch.store(c.nh_epoch, Ordering::Relaxed);
        }
    }

    /// Empties the XSKMAP, stops the workers and detaches the program (but
    /// for the links kept pinned).
    pub fn shutdown(mut self) -> Result<()> {
        // The sockets leave the map first: from then on the program passes
        // their frames to the kernel (and a kept program goes on so) rather
        // than into rings no worker reads any more.
        for slot in &self.slots {
            let _ = self.steering.maps().clear_xsk(*slot);
        }
        self.stop.stop.store(true, Ordering::Relaxed);
        self.shared.stop.store(true, Ordering::Relaxed);
        for (h, _) in self.workers.drain(..) {
            let _ = h.join();
        }
        self.steering.detach_all();
        if self.unpin_on_exit {
            self.steering.unpin()?;
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
