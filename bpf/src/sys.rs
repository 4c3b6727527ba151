//! Loading, pinning, attaching and test-running the XDP program: the one
//! module of this crate that talks to libbpf and the bpf(2) syscall directly.

use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle, OpenObject, Xdp, XdpFlags};

use crate::abi::{self, Config, XdpMeta};
use crate::maps::{FlatTable, Maps, MAP_NAMES};
use crate::skel::{LnsXdpSkel, LnsXdpSkelBuilder};
use crate::Error;

/// Where an instance pins its maps unless told otherwise.
pub fn default_pin_dir(instance: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/lns").join(instance)
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`); fails where the driver lacks XDP.
    Native,
    /// Generic XDP on the skb (`XDP_FLAGS_SKB_MODE`); works everywhere, slower.
    Skb,
    /// Native where the driver supports it, else generic (no flag).
    Auto,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Native => libbpf_rs::libbpf_sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Skb => libbpf_rs::libbpf_sys::XDP_FLAGS_SKB_MODE,
            XdpMode::Auto => 0,
        }
    }
}

/// What [`Steering::load`] needs to know.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Pin the maps here so other processes can open them; `None` keeps them
    /// private to this process (unit tests).
    pub pin_dir: Option<PathBuf>,
    /// Reuse maps already pinned in `pin_dir` (a restart keeps its
    /// sessions). When false, stale pins are removed first.
    pub reuse_pinned: bool,
    /// Size of the session table and of the session-id and address maps.
    pub max_sessions: u32,
    /// Workers that keep per-session counters (rows of `lns_session_stats`).
    pub max_workers: u32,
    /// UDP port L2TP arrives on.
    pub l2tp_port: u16,
    /// The control plane's own ports of tunnels: L2TP arrives on these
    /// too ([`abi::Config::set_tunnel_ports`]).
    pub tunnel_ports: Option<(u16, u16)>,
    /// Pass data of unknown sessions to the stack instead of dropping it.
    pub pass_unknown_sessions: bool,
    /// Next-hop cache lifetime in milliseconds (0: no cache).
    pub nh_cache_ms: u32,
    /// The workers check the L2TP data of fast slots (`lns_fast_slots`),
    /// so the program reads no session for it
    /// ([`abi::Config::WORKER_CHECKS`]); false: the program checks every
    /// frame.
    pub worker_checks: bool,
    /// Subscriber pools declared to the program (`lns_config.pools`):
    /// downstream, a forwarding session's own unit in one of them goes to
    /// the workers without the program reading a subscriber table.
    pub pools: Vec<abi::PoolSpec>,
    /// Entries of `lns_pool_bits` / `lns_pool_sessions`, shared by the
    /// pools (their units together may not exceed it).
    pub pool_units: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pin_dir: None,
            reuse_pinned: false,
            max_sessions: abi::DEFAULT_MAX_SESSIONS,
            max_workers: abi::DEFAULT_MAX_WORKERS,
            l2tp_port: abi::L2TP_PORT,
            tunnel_ports: None,
            pass_unknown_sessions: false,
            nh_cache_ms: 1000,
            worker_checks: true,
            pools: Vec::new(),
            pool_units: abi::DEFAULT_POOL_UNITS,
        }
    }
}

/// An XDP attachment through a BPF link: the kernel detaches the program when
/// the last reference to the link goes, its descriptors and its pin. Without
/// a pin a crashed process leaves nothing behind on the interface; with one
/// ([`Steering::attach_kept`]) the program stays attached after the process.
#[derive(Debug)]
pub struct Attachment {
    pub ifindex: u32,
    pub mode: XdpMode,
    link: OwnedFd,
    /// Where the link is pinned, if it is.
    pub pinned: Option<PathBuf>,
}

/// How [`Steering::attach_kept`] came by its link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// No link was pinned for the interface: a new one.
    Created,
    /// A pinned link (an earlier run's) now runs this program, swapped in by
    /// BPF_LINK_UPDATE: the interface was never without one.
    Replaced { old_prog_id: u32 },
    /// A pinned link could not be kept (the interface is gone or another,
    /// or it runs in another XDP mode than asked): removed and a new one
    /// made, with a moment without a program.
    Recreated { why: String },
}

/// Pins of kept links in a pin directory start with this, then the
/// interface's name.
const LINK_PIN_PREFIX: &str = "lns_link_";

/// Where the kept link of interface `ifname` is pinned in `dir`.
pub fn link_pin_path(dir: &Path, ifname: &str) -> PathBuf {
    dir.join(format!("{LINK_PIN_PREFIX}{ifname}"))
}

/// The interfaces whose links are pinned in `dir`, with the pins.
pub fn pinned_links(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(ifname) = name.strip_prefix(LINK_PIN_PREFIX) {
            out.push((ifname.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes the pinned links in `dir` but those of `keep` (interface names):
/// the program leaves each such interface as soon as no process holds its
/// link (at once when no data plane runs). Returns the interfaces.
pub fn unpin_links(dir: &Path, keep: &[&str]) -> Result<Vec<String>, Error> {
    let mut gone = Vec::new();
    for (ifname, path) in pinned_links(dir)? {
        if keep.contains(&ifname.as_str()) {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => gone.push(ifname),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(gone)
}

impl Attachment {
    pub fn link_fd(&self) -> RawFd {
        self.link.as_raw_fd()
    }
}

/// XDP return codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    Other(u32),
}

impl XdpAction {
    fn from_raw(v: u32) -> Self {
        match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            v => XdpAction::Other(v),
        }
    }
}

/// What one BPF_PROG_TEST_RUN of the program returned.
#[derive(Clone, Debug)]
pub struct TestRunResult {
    pub action: XdpAction,
    /// The frame after the program (without the metadata).
    pub frame: Vec<u8>,
    /// The metadata the program prepended, if it did.
    pub meta: Option<XdpMeta>,
}

/// Context given to a test run, as `struct xdp_md` on input.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestRunContext {
    /// Interface the frame "arrived" on; 0 means the loopback device of the
    /// calling thread's network namespace, as the kernel defaults it.
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
}

/// The loaded steering program and its maps.
pub struct Steering {
    skel: LnsXdpSkel<'static>,
    maps: Maps,
    pin_dir: Option<PathBuf>,
    attachments: Vec<Attachment>,
}

impl Steering {
    /// Opens the embedded object, sizes and pins its maps, loads it into the
    /// kernel (the verifier runs here) and writes the configuration.
    pub fn load(opts: &LoadOptions) -> Result<Steering, Error> {
        // The skeleton borrows its object storage for as long as it lives;
        // a loaded program lives as long as the process that loaded it, so
        // the few bytes of storage are leaked on purpose.
        if let Some(dir) = &opts.pin_dir {
            check_pin_dir(dir)?;
        }
        let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = LnsXdpSkelBuilder::default()
            .open(storage)
            .map_err(|e| Error::bpf("opening the XDP object", e))?;

        let maps = &mut open.maps;
        for map in [
            &mut maps.lns_sessions,
            &mut maps.lns_session_ids,
            &mut maps.lns_sub_v4,
            &mut maps.lns_sub_v6,
            &mut maps.lns_session_ns,
        ] {
            map.set_max_entries(opts.max_sessions).map_err(|e| Error::bpf("sizing the session maps", e))?;
        }
        // A subscriber holds a SLAAC prefix and a delegated prefix, and some
        // have framed routes: room for two prefixes per session.
        for map in [
            &mut maps.lns_sub_v4_lpm,
            &mut maps.lns_sub_v6_lpm,
            &mut maps.lns_sub_v6_64,
            &mut maps.lns_sub_v6_long,
        ] {
            map.set_max_entries(opts.max_sessions.saturating_mul(2).max(abi::MAX_PREFIXES))
                .map_err(|e| Error::bpf("sizing the prefix maps", e))?;
        }
        // One bit per session slot; one entry per slot for the marks.
        maps.lns_fast_slots
            .set_max_entries(opts.max_sessions.div_ceil(64).max(1))
            .map_err(|e| Error::bpf("sizing lns_fast_slots", e))?;
        maps.lns_slot_marks
            .set_max_entries(opts.max_sessions)
            .map_err(|e| Error::bpf("sizing lns_slot_marks", e))?;
        let pools = pool_table(&opts.pools, opts.pool_units)?;
        maps.lns_pool_bits
            .set_max_entries(opts.pool_units.div_ceil(64).max(1))
            .map_err(|e| Error::bpf("sizing lns_pool_bits", e))?;
        maps.lns_pool_sessions
            .set_max_entries(opts.pool_units.max(1))
            .map_err(|e| Error::bpf("sizing lns_pool_sessions", e))?;
        let flat = abi::flat_entries(opts.max_sessions);
        for map in [&mut maps.lns_sub_v4_flat, &mut maps.lns_sub_v6_flat] {
            map.set_max_entries(flat).map_err(|e| Error::bpf("sizing the flat subscriber tables", e))?;
        }
        // One row of per-session counters per worker.
        let stats_rows = opts
            .max_sessions
            .checked_mul(opts.max_workers.max(1))
            .ok_or(Error::Missing("a session table this large"))?;
        maps.lns_session_stats
            .set_max_entries(stats_rows)
            .map_err(|e| Error::bpf("sizing lns_session_stats", e))?;

        if let Some(dir) = &opts.pin_dir {
            fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            if !opts.reuse_pinned {
                remove_pins(dir)?;
            }
            for (map, name) in [
                (&mut maps.lns_config, "lns_config"),
                (&mut maps.lns_ifaces, "lns_ifaces"),
                (&mut maps.lns_xsks, "lns_xsks"),
                (&mut maps.lns_sessions, "lns_sessions"),
                (&mut maps.lns_session_ids, "lns_session_ids"),
                (&mut maps.lns_sub_v4, "lns_sub_v4"),
                (&mut maps.lns_sub_v6, "lns_sub_v6"),
                (&mut maps.lns_sub_v6_64, "lns_sub_v6_64"),
                (&mut maps.lns_sub_v6_long, "lns_sub_v6_long"),
                (&mut maps.lns_sub_v4_flat, "lns_sub_v4_flat"),
                (&mut maps.lns_sub_v6_flat, "lns_sub_v6_flat"),
                (&mut maps.lns_sub_v4_lpm, "lns_sub_v4_lpm"),
                (&mut maps.lns_sub_v6_lpm, "lns_sub_v6_lpm"),
                (&mut maps.lns_counters, "lns_counters"),
                (&mut maps.lns_neigh_miss, "lns_neigh_miss"),
                (&mut maps.lns_session_stats, "lns_session_stats"),
                (&mut maps.lns_nh_cache, "lns_nh_cache"),
                (&mut maps.lns_session_ns, "lns_session_ns"),
                (&mut maps.lns_fast_slots, "lns_fast_slots"),
                (&mut maps.lns_slot_marks, "lns_slot_marks"),
                (&mut maps.lns_pool_bits, "lns_pool_bits"),
                (&mut maps.lns_pool_sessions, "lns_pool_sessions"),
            ] {
                debug_assert!(MAP_NAMES.contains(&name));
                map.set_pin_path(dir.join(name)).map_err(|e| Error::bpf("setting a pin path", e))?;
            }
        }

        let skel = open.load().map_err(|e| Error::bpf("loading the XDP program (verifier)", e))?;
        let m = &skel.maps;
        let handle = |map: &libbpf_rs::Map<'_>| {
            MapHandle::try_from(map).map_err(|e| Error::bpf("duplicating a map descriptor", e))
        };
        let maps = Maps {
            config: handle(&m.lns_config)?,
            ifaces: handle(&m.lns_ifaces)?,
            xsks: handle(&m.lns_xsks)?,
            sessions: handle(&m.lns_sessions)?,
            sessions_mm: std::sync::Arc::new(MmapArray::map(&handle(&m.lns_sessions)?)?),
            session_ids: handle(&m.lns_session_ids)?,
            sub_v4: handle(&m.lns_sub_v4)?,
            sub_v6: handle(&m.lns_sub_v6)?,
            sub_v6_64: handle(&m.lns_sub_v6_64)?,
            sub_v6_long: handle(&m.lns_sub_v6_long)?,
            sub_v4_flat: FlatTable::map(&handle(&m.lns_sub_v4_flat)?, abi::flat_shift(flat))?,
            sub_v6_flat: FlatTable::map(&handle(&m.lns_sub_v6_flat)?, abi::flat_shift(flat))?,
            sub_v4_lpm: handle(&m.lns_sub_v4_lpm)?,
            sub_v6_lpm: handle(&m.lns_sub_v6_lpm)?,
            counters: handle(&m.lns_counters)?,
            neigh_miss: handle(&m.lns_neigh_miss)?,
            session_stats: handle(&m.lns_session_stats)?,
            session_ns_mm: std::sync::Arc::new(MmapArray::map(&handle(&m.lns_session_ns)?)?),
            fast_slots: MmapArray::map(&handle(&m.lns_fast_slots)?)?,
            slot_marks: MmapArray::map(&handle(&m.lns_slot_marks)?)?,
            pool_bits: MmapArray::map(&handle(&m.lns_pool_bits)?)?,
            pool_sessions: MmapArray::map(&handle(&m.lns_pool_sessions)?)?,
            pool_sessions_map: handle(&m.lns_pool_sessions)?,
            pools: pools.clone(),
        };
        let mut config = Config {
            abi_version: abi::ABI_VERSION,
            flags: if opts.pass_unknown_sessions { Config::PASS_UNKNOWN_SESSION } else { 0 }
                | if opts.worker_checks { Config::WORKER_CHECKS } else { 0 },
            l2tp_port: abi::Be16::from_host(opts.l2tp_port),
            nh_cache_ms: opts.nh_cache_ms,
            session_bank_mask: abi::session_bank_mask(opts.max_sessions),
            sub_flat_shift: abi::flat_shift(flat),
            pool_count: pools.len() as u32,
            ..Config::default()
        };
        config.pools[..pools.len()].copy_from_slice(&pools);
        config.set_tunnel_ports(opts.tunnel_ports);
        maps.write_config(&config)?;
        // Pinned maps kept from a previous run may have had other pools:
        // the units are derived again from the sessions.
        maps.rebuild_pool_units()?;
        Ok(Steering { skel, maps, pin_dir: opts.pin_dir.clone(), attachments: Vec::new() })
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// The loaded program, for tools that attach it some other way.
    pub fn program_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.skel.progs.lns_xdp.as_fd()
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// A handle on `lns_nh_resolve` for a worker thread (its own
    /// descriptor, so it outlives nothing it borrows).
    pub fn nh_resolver(&self) -> Result<NhResolver, Error> {
        let fd = self
            .skel
            .progs
            .lns_nh_resolve
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("duplicating the resolver's descriptor".into(), e))?;
        Ok(NhResolver { prog: fd })
    }

    /// Attaches the program to `ifindex` through a BPF link.
    ///
    /// An XDP program attached the old way (netlink, no link) makes the
    /// kernel refuse a link. If it is a copy of this program left by an
    /// earlier run, it is detached and the attach retried; anything else is
    /// reported, never removed.
    pub fn attach(&mut self, ifindex: u32, mode: XdpMode) -> Result<&Attachment, Error> {
        let prog_fd = self.skel.progs.lns_xdp.as_fd().as_raw_fd();
        let link = match link_create(prog_fd, ifindex, mode) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EEXIST) => {
                let xdp = Xdp::new(self.skel.progs.lns_xdp.as_fd());
                let id = xdp.query_id(ifindex as i32, XdpFlags::NONE).unwrap_or(0);
                let name = program_name(id);
                if name.as_deref() != Some("lns_xdp") {
                    return Err(Error::Busy { ifindex, prog_id: id, name: name.unwrap_or_default() });
                }
                for flags in [XdpFlags::NONE, XdpFlags::SKB_MODE, XdpFlags::DRV_MODE] {
                    let _ = xdp.detach(ifindex as i32, flags);
                }
                link_create(prog_fd, ifindex, mode)
                    .map_err(|e| Error::io(format!("attaching XDP to ifindex {ifindex}"), e))?
            }
            Err(e) => return Err(Error::io(format!("attaching XDP ({mode:?}) to ifindex {ifindex}"), e)),
        };
        self.attachments.push(Attachment { ifindex, mode, link, pinned: None });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Attaches the program to `ifname` through a link that outlives the
    /// process when `keep`: pinned in the pin directory
    /// ([`link_pin_path`]), so a restart (or a crash) leaves the program on
    /// the interface, passing to the kernel what it would give the
    /// sockets that are gone.
    ///
    /// A link an earlier run pinned there is taken over: BPF_LINK_UPDATE
    /// swaps this program in atomically, so no frame meets an interface
    /// without one. Without `keep` that link's pin is removed, and the
    /// program leaves the interface with this process.
    pub fn attach_kept(&mut self, ifname: &str, mode: XdpMode, keep: bool) -> Result<Takeover, Error> {
        let ifindex = ifindex(ifname)?;
        let dir = self.pin_dir.clone().ok_or(Error::Missing("a pin directory to keep links in"))?;
        let path = link_pin_path(&dir, ifname);
        let prog_fd = self.skel.progs.lns_xdp.as_fd().as_raw_fd();
        let mut takeover = Takeover::Created;
        if let Some(old) = open_pinned_link(&path)? {
            match kept_link_fits(&old, ifindex, mode) {
                Ok(old_prog_id) => {
                    link_update(old.as_raw_fd(), prog_fd)
                        .map_err(|e| Error::io(format!("replacing the program of {}", path.display()), e))?;
                    if !keep {
                        remove_pin(&path)?;
                    }
                    let pinned = keep.then_some(path);
                    self.attachments.push(Attachment { ifindex, mode, link: old, pinned });
                    return Ok(Takeover::Replaced { old_prog_id });
                }
                Err(why) => {
                    // The pin was the last reference but for `old`: the
                    // old program leaves with it.
                    remove_pin(&path)?;
                    drop(old);
                    takeover = Takeover::Recreated { why };
                }
            }
        }
        self.attach(ifindex, mode)?;
        if keep {
            let a = self.attachments.last_mut().expect("just attached");
            pin_link(a.link.as_raw_fd(), &path)?;
            a.pinned = Some(path);
        }
        Ok(takeover)
    }

    /// Detaches from every interface (also done on drop).
    pub fn detach_all(&mut self) {
        self.attachments.clear();
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Removes the pinned maps and links (the process keeps using them until
    /// it exits; the program leaves the interfaces then).
    pub fn unpin(&self) -> Result<(), Error> {
        match &self.pin_dir {
            Some(dir) => {
                remove_pins(dir)?;
                unpin_links(dir, &[])?;
                let _ = fs::remove_dir(dir);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN.
    pub fn test_run(&self, frame: &[u8], ctx: TestRunContext) -> Result<TestRunResult, Error> {
        self.test_run_repeat(frame, ctx, 1).map(|(r, _)| r)
    }

    /// Runs the program `repeat` times in live-frame mode
    /// (BPF_F_TEST_XDP_LIVE_FRAMES): each run gets a fresh copy of `frame`
    /// and its verdict is carried out, redirects into AF_XDP sockets
    /// included. Returns the kernel's average time per frame.
    pub fn test_run_live(
        &self,
        frame: &[u8],
        ctx: TestRunContext,
        repeat: u32,
    ) -> Result<std::time::Duration, Error> {
        xdp_test_run_live(&self.skel.progs.lns_xdp, frame, ctx, repeat)
    }

    /// Runs the program `repeat` times on `frame` in the kernel and returns
    /// the last result with the kernel's average time per run.
    pub fn test_run_repeat(
        &self,
        frame: &[u8],
        ctx: TestRunContext,
        repeat: u32,
    ) -> Result<(TestRunResult, std::time::Duration), Error> {
        let (action, per_run, data) = xdp_test_run(&self.skel.progs.lns_xdp, frame, ctx, repeat)?;
        // The program prepends lns_xdp_meta to frames it redirects and
        // otherwise leaves the length alone.
        let (meta, frame) = if data.len() == frame.len() + XdpMeta::ROOM {
            (XdpMeta::from_bytes(&data), data[XdpMeta::ROOM..].to_vec())
        } else {
            (None, data)
        };
        Ok((TestRunResult { action, frame, meta }, per_run))
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// The ABI entries of `specs`, their units laid out one pool after the
/// other; refuses pools that overlap, too many, or more units than the
/// maps hold.
fn pool_table(specs: &[abi::PoolSpec], capacity: u32) -> Result<Vec<abi::Pool>, Error> {
    if specs.len() > abi::MAX_POOLS {
        return Err(Error::Pool(format!("{} pools; at most {}", specs.len(), abi::MAX_POOLS)));
    }
    let mut out: Vec<abi::Pool> = Vec::new();
    let mut base = 0u32;
    for spec in specs {
        let pool = spec.to_pool(base).map_err(Error::Pool)?;
        let end = base.checked_add(pool.units).filter(|&e| e <= capacity).ok_or_else(|| {
            Error::Pool(format!(
                "the pools hold more than --pool-units ({capacity}) units; {spec} does not fit"
            ))
        })?;
        // Prefixes overlap when one contains the other's first address.
        for (other, o) in specs.iter().zip(&out) {
            let inside = |a: &abi::Pool, b: &abi::Pool| {
                a.ip_version == b.ip_version && {
                    let width = if a.ip_version == 4 { 32 } else { 64 };
                    let shift = width - u32::from(a.prefix_len);
                    (a.net >> shift) == (b.net >> shift)
                }
            };
            if inside(&pool, o) || inside(o, &pool) {
                return Err(Error::Pool(format!("pools {other} and {spec} overlap")));
            }
        }
        out.push(pool);
        base = end;
    }
    Ok(out)
}

/// `lns_nh_resolve`, run by a worker with BPF_PROG_TEST_RUN: the kernel's
/// next hop toward an address, the same answer the steering program's
/// bpf_fib_lookup gets (one syscall; for a LAC once per cache lifetime,
/// never per frame).
#[derive(Debug)]
pub struct NhResolver {
    prog: OwnedFd,
}

impl NhResolver {
    /// The next hop toward `dst` from `src` (both of one family), looked up
    /// as if arriving on `ifindex`. The answer's `result` is an
    /// [`abi::NhResult`].
    pub fn resolve(
        &self,
        ifindex: u32,
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
    ) -> Result<abi::NhQuery, Error> {
        let query = abi::NhQuery {
            ifindex,
            ip_version: if dst.is_ipv4() { 4 } else { 6 },
            src: abi::mapped(src),
            dst: abi::mapped(dst),
            ..abi::NhQuery::default()
        };
        let mut out = query;
        let size = std::mem::size_of::<abi::NhQuery>() as u32;
        // SAFETY: an all-zero bpf_test_run_opts is the documented "no
        // options" value; sz tells libbpf which version we pass.
        let mut opts: libbpf_rs::libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of_val(&opts) as _;
        opts.data_in = (&query as *const abi::NhQuery).cast();
        opts.data_size_in = size;
        opts.data_out = (&mut out as *mut abi::NhQuery).cast();
        opts.data_size_out = size;
        // SAFETY: the descriptor is a loaded XDP program we own; data_in
        // and data_out point at live structs of data_size_* bytes for the
        // duration of the call (the kernel copies out at most
        // data_size_out bytes).
        let rc = unsafe { libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if rc < 0 {
            return Err(Error::io(
                "BPF_PROG_TEST_RUN of lns_nh_resolve".into(),
                io::Error::from_raw_os_error(-rc),
            ));
        }
        if opts.retval != 2 {
            // XDP_PASS is the answer; anything else refused the query.
            out.result = abi::NhResult::BadQuery as u32;
        }
        Ok(out)
    }
}

/// Removes this program's map pins from `dir`, leaving anything else.
fn remove_pins(dir: &Path) -> Result<(), Error> {
    for name in MAP_NAMES {
        let p = dir.join(name);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", p.display()), e)),
        }
    }
    Ok(())
}

fn link_create(prog_fd: RawFd, ifindex: u32, mode: XdpMode) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero bpf_link_create_opts is the documented "no options"
    // value; sz tells libbpf which version of the struct we pass.
    let mut opts: libbpf_rs::libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    opts.flags = mode.flags();
    // SAFETY: prog_fd is a loaded XDP program owned by the skeleton for the
    // duration of the call; opts is a valid, initialised struct.
    let fd = unsafe {
        libbpf_rs::libbpf_sys::bpf_link_create(prog_fd, ifindex as i32, libbpf_rs::libbpf_sys::BPF_XDP, &opts)
    };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: bpf_link_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The link pinned at `path`, if there is one.
fn open_pinned_link(path: &Path) -> Result<Option<OwnedFd>, Error> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Missing("a pin path without NUL bytes"))?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    let fd = unsafe { libbpf_rs::libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd == -libc::ENOENT {
        return Ok(None);
    }
    if fd < 0 {
        return Err(Error::io(format!("opening {}", path.display()), io::Error::from_raw_os_error(-fd)));
    }
    // SAFETY: bpf_obj_get returned a new descriptor that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether a kept link can take this run's program: an XDP link still on
/// `ifindex` (a link whose interface went away is defunct, ifindex 0) in
/// the mode asked for. Its program's id when it can, else why not.
fn kept_link_fits(link: &OwnedFd, ifindex: u32, mode: XdpMode) -> Result<u32, String> {
    // SAFETY: bpf_link_info is plain data; all zeroes is a valid value.
    let mut info: libbpf_rs::libbpf_sys::bpf_link_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: the descriptor is a live link; info is writable for len bytes,
    // and the kernel writes at most len.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_link_get_info_by_fd(link.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        return Err(format!("not a readable link: {}", io::Error::from_raw_os_error(-rc)));
    }
    if info.type_ != libbpf_rs::libbpf_sys::BPF_LINK_TYPE_XDP {
        return Err(format!("not an XDP link (type {})", info.type_));
    }
    // SAFETY: the `xdp` member of the union is the one an XDP link fills.
    let on = unsafe { info.__bindgen_anon_1.xdp.ifindex };
    if on != ifindex {
        return Err(if on == 0 {
            "its interface is gone".to_string()
        } else {
            format!("it is on ifindex {on}, not {ifindex}")
        });
    }
    // The mode is the link's for its life: a kept link in generic mode
    // cannot become native.
    // SAFETY: an all-zero bpf_xdp_query_opts is the documented "no options"
    // value; sz tells libbpf which version we pass.
    let mut q: libbpf_rs::libbpf_sys::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    q.sz = std::mem::size_of_val(&q) as _;
    // SAFETY: q is a valid, initialised struct for the duration of the call.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut q) };
    if rc < 0 {
        return Err(format!("querying XDP on ifindex {ifindex}: {}", io::Error::from_raw_os_error(-rc)));
    }
    let in_mode = match mode {
        XdpMode::Native => q.drv_prog_id,
        XdpMode::Skb => q.skb_prog_id,
        XdpMode::Auto => info.prog_id,
    };
    if in_mode != info.prog_id {
        return Err(format!("it is not attached in {mode:?} mode"));
    }
    Ok(info.prog_id)
}

/// BPF_LINK_UPDATE: `link` runs `prog` from now on, atomically.
fn link_update(link: RawFd, prog: RawFd) -> io::Result<()> {
    // SAFETY: both descriptors are live for the call; no options (NULL).
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_link_update(link, prog, std::ptr::null()) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

fn pin_link(link: RawFd, path: &Path) -> Result<(), Error> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Missing("a pin path without NUL bytes"))?;
    // SAFETY: link is a live descriptor and c a valid NUL-terminated path
    // for the duration of the call.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_obj_pin(link, c.as_ptr()) };
    if rc < 0 {
        return Err(Error::io(format!("pinning {}", path.display()), io::Error::from_raw_os_error(-rc)));
    }
    Ok(())
}

fn remove_pin(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// The name of the loaded program with this id, if there is one.
fn program_name(id: u32) -> Option<String> {
    if id == 0 {
        return None;
    }
    libbpf_rs::query::ProgInfoIter::default()
        .find(|p| p.id == id)
        .map(|p| p.name.to_string_lossy().into_owned())
}

/// Opens the maps an instance pinned in `dir` (for the control plane and
/// lnsctl), refusing maps written by a build with another ABI.
pub fn open_pinned(dir: &Path) -> Result<Maps, Error> {
    check_pin_dir(dir)?;
    let open = |name: &str| {
        let path = dir.join(name);
        MapHandle::from_pinned_path(&path).map_err(|e| Error::bpf_path("opening a pinned map", path, e))
    };
    let config = MapHandle::from_pinned_path(dir.join("lns_config"))
        .map_err(|e| Error::bpf_path("opening a pinned map", dir.join("lns_config"), e))?;
    // The version first: the rest of the config is read in its layout.
    let found = crate::maps::read_config(&config)?;
    if found.abi_version != abi::ABI_VERSION {
        return Err(Error::AbiMismatch { found: found.abi_version, expected: abi::ABI_VERSION });
    }
    let shift = found.sub_flat_shift;
    let maps = Maps {
        config,
        ifaces: open("lns_ifaces")?,
        xsks: open("lns_xsks")?,
        sessions: open("lns_sessions")?,
        sessions_mm: std::sync::Arc::new(MmapArray::map(&open("lns_sessions")?)?),
        session_ids: open("lns_session_ids")?,
        sub_v4: open("lns_sub_v4")?,
        sub_v6: open("lns_sub_v6")?,
        sub_v6_64: open("lns_sub_v6_64")?,
        sub_v6_long: open("lns_sub_v6_long")?,
        sub_v4_flat: FlatTable::map(&open("lns_sub_v4_flat")?, shift)?,
        sub_v6_flat: FlatTable::map(&open("lns_sub_v6_flat")?, shift)?,
        sub_v4_lpm: open("lns_sub_v4_lpm")?,
        sub_v6_lpm: open("lns_sub_v6_lpm")?,
        counters: open("lns_counters")?,
        neigh_miss: open("lns_neigh_miss")?,
        session_stats: open("lns_session_stats")?,
        session_ns_mm: std::sync::Arc::new(MmapArray::map(&open("lns_session_ns")?)?),
        fast_slots: MmapArray::map(&open("lns_fast_slots")?)?,
        slot_marks: MmapArray::map(&open("lns_slot_marks")?)?,
        pool_bits: MmapArray::map(&open("lns_pool_bits")?)?,
        pool_sessions: MmapArray::map(&open("lns_pool_sessions")?)?,
        pool_sessions_map: open("lns_pool_sessions")?,
        pools: found.pools().to_vec(),
    };
    let config = maps.read_config()?;
    if config.abi_version != abi::ABI_VERSION {
        return Err(Error::AbiMismatch { found: config.abi_version, expected: abi::ABI_VERSION });
    }
    // The value sizes are the other half of the ABI: a pinned map from a
    // build whose structs differ must not be written with ours.
    let expect = [
        (&maps.sessions, std::mem::size_of::<abi::Session>()),
        (&maps.ifaces, std::mem::size_of::<abi::Iface>()),
        (&maps.config, std::mem::size_of::<Config>()),
    ];
    for (map, size) in expect {
        if map.value_size() as usize != size {
            return Err(Error::AbiMismatch { found: map.value_size(), expected: size as u32 });
        }
    }
    Ok(maps)
}

/// `if_nametoindex(3)`.
pub fn ifindex(name: &str) -> Result<u32, Error> {
    let c = CString::new(name).map_err(|_| Error::NoSuchInterface(name.to_string()))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(Error::NoSuchInterface(name.to_string()));
    }
    Ok(idx)
}

/// Rx queues of an interface in this process's network namespace, from
/// its kernel: `ETHTOOL_GCHANNELS` (rx plus combined channels, what AF_XDP
/// binds to), or, for a device without channels, `IFLA_NUM_RX_QUEUES` by
/// rtnetlink. Not sysfs: under `nsenter --net` /sys still shows the
/// namespace it was mounted in.
pub fn rx_queue_count(name: &str) -> Result<u32, Error> {
    let what = || format!("counting the rx queues of {name}");
    let index = ifindex(name)?;
    match ethtool_channels(name) {
        Ok(ch) if ch.rx_count + ch.combined_count > 0 => Ok(ch.rx_count + ch.combined_count),
        Ok(_) => link_rx_queues(index).map_err(|e| Error::io(what(), e)),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            link_rx_queues(index).map_err(|e| Error::io(what(), e))
        }
        Err(e) => Err(Error::io(what(), e)),
    }
}

/// `struct ethtool_channels` of linux/ethtool.h.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

fn ethtool_channels(name: &str) -> io::Result<EthtoolChannels> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    // SAFETY: ifreq is plain data (a name and a union of plain fields);
    // all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: SIOCETHTOOL reads the NUL-terminated name (shorter than
    // IFNAMSIZ, checked above) and writes one struct ethtool_channels
    // through ifru_data, which points at `ch`, alive across the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ch)
}

/// `IFLA_NUM_RX_QUEUES` of one link by `RTM_GETLINK`: every device has it.
fn link_rx_queues(index: u32) -> io::Result<u32> {
    const IFLA_NUM_RX_QUEUES: u16 = 32;
    const NLMSG_ERROR: u16 = 2;
    // SAFETY: plain socket(2); the result is checked before use.
    let fd =
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // struct nlmsghdr (16 bytes) and struct ifinfomsg (16 bytes), native
    // byte order.
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[20..24].copy_from_slice(&(index as i32).to_ne_bytes());
    // SAFETY: req is valid for its length; the kernel is the destination
    // of an unbound netlink socket.
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 32 * 1024];
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let msg = &buf[..n as usize];
    let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short RTM_NEWLINK");
    let len = msg.get(0..4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]) as usize).ok_or_else(bad)?;
    let msg = msg.get(..len).ok_or_else(bad)?;
    if u16_at(msg, 4) == Some(NLMSG_ERROR) {
        let errno = msg.get(16..20).map(|s| i32::from_ne_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(bad)?;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    let mut at = 32;
    while let (Some(alen), Some(kind)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let alen = usize::from(alen);
        if alen < 4 {
            break;
        }
        if kind == IFLA_NUM_RX_QUEUES {
            let v = msg.get(at + 4..at + 8).ok_or_else(bad)?;
            return Ok(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
        }
        at += alen.div_ceil(4) * 4;
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "no IFLA_NUM_RX_QUEUES"))
}

/// `BPF_FS_MAGIC` of linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Refuses a pin directory that is not on a BPF filesystem, where pins
/// would fail or be seen by no other process. `ip netns exec` is the usual
/// cause: it gives the process a /sys of its own, without the bpffs
/// mounted on /sys/fs/bpf.
pub fn check_pin_dir(dir: &Path) -> Result<(), Error> {
    // The nearest directory that exists: the pin directory is made later.
    let Some(existing) = dir.ancestors().find(|p| p.exists()) else { return Ok(()) };
    let c = CString::new(existing.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::NotBpffs { dir: dir.to_path_buf() })?;
    // SAFETY: statfs is plain data; all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid statfs to
    // write, both alive across the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } < 0 {
        return Err(Error::io(format!("statfs {}", existing.display()), io::Error::last_os_error()));
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(Error::NotBpffs { dir: dir.to_path_buf() });
    }
    Ok(())
}

/// A BPF array map created with `BPF_F_MMAPABLE`, mapped into this process:
/// the data plane reads sessions and writes counters without a syscall.
pub struct MmapArray<T: bytemuck::Pod> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
    map_len: usize,
}

// SAFETY: the mapping is shared memory owned by the kernel map, valid until
// munmap in Drop; every access goes through volatile reads and writes of
// plain-old-data values, so sharing the handle between threads is as sound
// as the kernel's own concurrent access to the map.
unsafe impl<T: bytemuck::Pod> Send for MmapArray<T> {}
// SAFETY: see Send.
unsafe impl<T: bytemuck::Pod> Sync for MmapArray<T> {}

impl<T: bytemuck::Pod> MmapArray<T> {
    pub(crate) fn map(map: &MapHandle) -> Result<Self, Error> {
        if map.value_size() as usize != std::mem::size_of::<T>() {
            return Err(Error::AbiMismatch {
                found: map.value_size(),
                expected: std::mem::size_of::<T>() as u32,
            });
        }
        let len = map.max_entries() as usize;
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = len * std::mem::size_of::<T>();
        let map_len = bytes.div_ceil(page) * page;
        // SAFETY: mapping a BPF array fd (BPF_F_MMAPABLE) shared, read-write,
        // at offset 0 for its whole rounded-up size, as bpf(2) documents.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::io("mmap of a BPF array".into(), io::Error::last_os_error()));
        }
        let ptr = std::ptr::NonNull::new(p.cast::<T>()).ok_or(Error::Missing("mmap address"))?;
        Ok(MmapArray { ptr, len, map_len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of entry `i`. Another process may be rewriting it at the same
    /// moment; the copy can then mix old and new fields, which callers
    /// tolerate (a session changes while forwarding only to stop).
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        // SAFETY: i < len, so the entry lies inside the live mapping; T is
        // Pod, so any bit pattern read is a valid T.
        Some(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(i)) })
    }

    /// Asks the CPU to bring entry `i` into the cache ahead of its use (a
    /// worker does this for a whole batch before processing it, so the
    /// misses overlap instead of following one another). No effect on
    /// other architectures, or when `i` is out of range.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if i >= self.len {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: i < len, so the address lies inside the live mapping;
            // a prefetch reads nothing architecturally and cannot fault.
            unsafe {
                let p = self.ptr.as_ptr().add(i) as *const i8;
                std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0);
                if std::mem::size_of::<T>() > 64 {
                    std::arch::x86_64::_mm_prefetch(p.add(64), std::arch::x86_64::_MM_HINT_T0);
                }
            }
        }
    }

    /// Overwrites entry `i` (for the entry's single writer).
    #[inline]
    pub fn set(&self, i: usize, v: T) -> bool {
        if i >= self.len {
            return false;
        }
        // SAFETY: as in get; the mapping is writable (PROT_WRITE).
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(i), v) };
        true
    }
}

/// Atomic access to the entries of arrays of words, which other processes
/// mapping the same array (and the program) read and write at once.
macro_rules! atomic_words {
    ($($word:ty => $atomic:ty),*) => {$(
        impl MmapArray<$word> {
            #[inline]
            fn atomic(&self, i: usize) -> Option<&$atomic> {
                if i >= self.len {
                    return None;
                }
                // SAFETY: i < len so the entry is inside the live mapping
                // (which lives as long as &self); it is aligned for its size
                // (the mapping is page aligned, entries packed); other
                // writers use atomic operations and the program reads a word
                // with one load.
                Some(unsafe { &*(self.ptr.as_ptr().add(i) as *const $atomic) })
            }

            /// Entry `i`, read atomically (sequentially consistent).
            #[inline]
            pub fn load(&self, i: usize) -> Option<$word> {
                self.atomic(i).map(|a| a.load(std::sync::atomic::Ordering::SeqCst))
            }

            /// Atomically stores `v` in entry `i` (sequentially consistent).
            #[inline]
            pub fn store(&self, i: usize, v: $word) -> bool {
                self.atomic(i).map(|a| a.store(v, std::sync::atomic::Ordering::SeqCst)).is_some()
            }

            /// Atomically ORs `bits` into entry `i` (sequentially consistent:
            /// the writers of `lns_fast_slots` order it against their other
            /// reads).
            #[inline]
            pub fn fetch_or(&self, i: usize, bits: $word) -> Option<$word> {
                Some(self.atomic(i)?.fetch_or(bits, std::sync::atomic::Ordering::SeqCst))
            }

            /// Atomically ANDs `bits` into entry `i` (sequentially consistent).
            #[inline]
            pub fn fetch_and(&self, i: usize, bits: $word) -> Option<$word> {
                Some(self.atomic(i)?.fetch_and(bits, std::sync::atomic::Ordering::SeqCst))
            }

            /// Replaces entry `i` with `new` if it still holds `current`
            /// (other processes mapping the same array may be writing it
            /// too); the value found otherwise.
            #[inline]
            pub fn compare_exchange(&self, i: usize, current: $word, new: $word) -> Result<$word, $word> {
                let a = self.atomic(i).ok_or(current)?;
                a.compare_exchange(
                    current,
                    new,
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                )
            }
        }
    )*};
}

atomic_words!(u64 => std::sync::atomic::AtomicU64, u32 => std::sync::atomic::AtomicU32);

impl MmapArray<u64> {
    /// Atomically adds 1 to entry `i` and returns the value before: other
    /// processes mapping the same array take numbers from the same counter.
    #[inline]
    pub fn fetch_add(&self, i: usize) -> Option<u64> {
        Some(self.atomic(i)?.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl<T: bytemuck::Pod> std::fmt::Debug for MmapArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapArray").field("len", &self.len).finish()
    }
}

impl<T: bytemuck::Pod> Drop for MmapArray<T> {
    fn drop(&mut self) {
        // SAFETY: ptr and map_len are exactly what mmap returned and took.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

/// The `struct xdp_md` a test run starts from: data, data_end, data_meta,
/// ingress_ifindex, rx_queue_index, egress_ifindex. On input `data` is the
/// metadata's length (none) and `data_end` the frame's.
fn xdp_md_in(frame: &[u8], ctx: TestRunContext) -> Vec<u8> {
    let md = [0, frame.len() as u32, 0, ctx.ingress_ifindex, ctx.rx_queue_index, 0];
    md.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Runs an XDP program `repeat` times in live-frame mode
/// (BPF_F_TEST_XDP_LIVE_FRAMES) and returns the kernel's average time per
/// frame: the steering program's and the bare reflector's cost are measured
/// the same way.
pub(crate) fn xdp_test_run_live(
    prog: &libbpf_rs::ProgramMut<'_>,
    frame: &[u8],
    ctx: TestRunContext,
    repeat: u32,
) -> Result<std::time::Duration, Error> {
    let mut ctx_in_bytes = xdp_md_in(frame, ctx);
    let input = libbpf_rs::ProgramInput {
        context_in: Some(&mut ctx_in_bytes[..]),
        data_in: Some(frame),
        repeat,
        flags: libbpf_rs::libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    let out = prog.test_run(input).map_err(|e| Error::bpf("BPF_PROG_TEST_RUN (live frames)", e))?;
    Ok(out.duration)
}

/// Runs an XDP program `repeat` times on `frame` (BPF_PROG_TEST_RUN, the
/// verdict not carried out) and returns its verdict, the kernel's average
/// time per run and the frame as the program left it.
pub(crate) fn xdp_test_run(
    prog: &libbpf_rs::ProgramMut<'_>,
    frame: &[u8],
    ctx: TestRunContext,
    repeat: u32,
) -> Result<(XdpAction, std::time::Duration, Vec<u8>), Error> {
    let mut ctx_in_bytes = xdp_md_in(frame, ctx);
    let mut ctx_out = [0u8; 24];
    let mut data_out = vec![0u8; frame.len() + 256];
    // Without an interface or queue the kernel runs the program on its
    // own; the context is passed only when it says something.
    let with_ctx = ctx.ingress_ifindex != 0 || ctx.rx_queue_index != 0;
    let input = libbpf_rs::ProgramInput {
        context_in: with_ctx.then_some(&mut ctx_in_bytes[..]),
        context_out: with_ctx.then_some(&mut ctx_out[..]),
        data_in: Some(frame),
        data_out: Some(&mut data_out[..]),
        repeat,
        ..Default::default()
    };
    let out = prog.test_run(input).map_err(|e| Error::bpf("BPF_PROG_TEST_RUN", e))?;
    let data = out.data.map(|d| d.to_vec()).unwrap_or_default();
    Ok((XdpAction::from_raw(out.return_value), out.duration, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_queues_from_ethtool_or_rtnetlink() {
        // Loopback has no channels (EOPNOTSUPP): rtnetlink answers.
        assert_eq!(link_rx_queues(ifindex("lo").unwrap()).unwrap(), 1);
        assert_eq!(rx_queue_count("lo").unwrap(), 1);
        assert!(matches!(rx_queue_count("no-such-if0"), Err(Error::NoSuchInterface(_))));
        assert!(link_rx_queues(u32::MAX >> 1).is_err(), "no such index");
    }

    #[test]
    fn pin_dirs_must_be_on_bpffs() {
        let err = check_pin_dir(&std::env::temp_dir().join("lns-not-bpffs")).unwrap_err();
        assert!(err.to_string().contains("nsenter --net"), "{err}");
        if Path::new("/sys/fs/bpf").exists() && check_pin_dir(Path::new("/sys/fs/bpf")).is_ok() {
            // Not yet made: its nearest directory decides.
            check_pin_dir(Path::new("/sys/fs/bpf/lns/not-made-yet")).unwrap();
        }
    }
}
