//! Load harness: trafgen against lns-dataplane in a namespace lab.
//!
//! For each configuration (1 or N sessions, upstream or downstream, inner
//! packet size) it measures two subjects in turn: the bare AF_XDP
//! reflector (`lns-reflect`: a minimal XDP program that sends every frame
//! of the queue to the socket, a worker that swaps MAC addresses and sends
//! the frame back) and the LNS (`lns-dataplane` with one worker and the
//! sessions installed). trafgen sends as fast as it can from the LAC or
//! core namespace and the far side's counters say what arrived. It prints
//! delivered packets per second, loss, the worker's CPU time per packet and
//! the ratio of lns to bare measured in the same run.
//!
//! `--peer l2tpns` measures the LNS beside Debian's l2tpns instead (see
//! the `peer` module).
//!
//! Subscribers are IPv6 (a /64 each under 2001:db8:1000::/36): IPv4
//! documentation ranges hold a few hundred addresses, not 100,000.
//! The far ends drop what they receive as cheaply as a kernel can: the
//! destinations are addresses the sink namespaces do not own.

#![forbid(unsafe_code)]

#[path = "lns-load/peer.rs"]
mod peer;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use etherparse::PacketBuilder;
use lns_benches::MachineTicks;
use lns_bpf::abi::{Session, SessionState};
use lns_testlab::{Lab, Netns, PinDir};
use serde::Serialize;

#[derive(Parser)]
#[command(about = "trafgen against lns-dataplane: delivered pps, loss, CPU per packet, lns/bare")]
struct Args {
    /// Session counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,100000")]
    sessions: Vec<u32>,
    /// Inner (subscriber) IP packet sizes.
    #[arg(long, value_delimiter = ',', default_value = "64,1400")]
    sizes: Vec<usize>,
    /// Packets trafgen sends per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// XDP mode of the data plane.
    #[arg(long, default_value = "native")]
    xdp_mode: String,
    /// Directions to measure.
    #[arg(long, value_delimiter = ',', default_value = "upstream,downstream")]
    directions: Vec<String>,
    /// Print the data plane's own report after each measurement.
    #[arg(long)]
    verbose: bool,
    /// Steps of the loss-free rate search (0: saturation only).
    #[arg(long, default_value_t = 4)]
    search_steps: u32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Run the LNS interfaces' receive (and so the XDP program) in NAPI
    /// threads pinned to the worker's core. On a veth the receiver's NAPI
    /// otherwise runs on the sender's core, so trafgen pays for the XDP
    /// program and the comparison measures the generator; with threads the
    /// data path (XDP + worker) is what saturates, in both modes.
    #[arg(long)]
    threaded_napi: bool,
    /// Run the data plane's workers with --busy-poll (spin instead of
    /// sleeping in poll(2) when idle), in both modes.
    #[arg(long)]
    busy_poll: bool,
    /// Packets of an unmeasured trafgen run before each measurement.
    #[arg(long, default_value_t = 200_000)]
    warmup: u64,
    /// Leave kernel.bpf_stats_enabled alone (the "xdp ns" column is then 0).
    #[arg(long)]
    no_bpf_stats: bool,
    /// Measure each configuration this many times, bare and lns taking
    /// turns (B L B L ...), and print the median of the rounds' ratios: the
    /// VM's speed drifts by several percent within minutes, and a pair
    /// measured back to back shares the drift.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Extra argument for lns-dataplane (repeat it:
    /// `--dataplane-arg=--frames --dataplane-arg=4096`).
    #[arg(long = "dataplane-arg", allow_hyphen_values = true)]
    dataplane_args: Vec<String>,
    /// Send the sessions' frames session by session instead of in a fixed
    /// scattered order (the default). In order, consecutive frames touch
    /// neighbouring session entries (the direct slots are consecutive),
    /// which the caches and the prefetcher reward; subscribers' traffic
    /// does not arrive that way.
    #[arg(long)]
    in_order: bool,
    /// Send the sessions' frames in the scattered order, which is the
    /// default: this flag changes nothing.
    #[arg(long, hide = true, conflicts_with = "in_order")]
    shuffle: bool,
    /// One trafgen template per 256 sessions instead of one per session:
    /// trafgen counts the session id's low byte and the matching byte of the
    /// subscriber address up together (`dinc`) and fixes the inner UDP
    /// checksum (`csumudp6`). With a frame per session, trafgen streams
    /// 100,000 templates (13 MB at 64 bytes, 147 MB at 1400) through the
    /// caches of the core that also runs the steering program, which a
    /// NIC does not do; with this its working set is 391 frames.
    /// Consecutive frames come from consecutive templates (in the scattered
    /// order unless --in-order), so they are 256 sessions (32 KiB of
    /// session entries) apart or more.
    #[arg(long)]
    lean: bool,
    /// Do not declare the subscribers' pool to the data plane (`--pool`):
    /// downstream frames then take the steering program's lookups (a
    /// subscriber table and the session, per frame) instead of going to the
    /// workers by pool unit.
    #[arg(long)]
    no_pools: bool,
    /// Measure this LNS beside another, in the same lab with the same
    /// frames, instead of beside the bare reflector: `l2tpns` (Debian's,
    /// installed by scripts/setup.sh). Sessions (1 to 250, IPv4) come from
    /// lns-lacsim for both.
    #[arg(long, value_parser = ["l2tpns"])]
    peer: Option<String>,
    /// With --peer: the LNS's paths to measure, `fast` (AF_XDP) and `slow`
    /// (the exception path through its TUN device: the LAC's sessions kept
    /// off the fast path, so the data plane's program passes their frames
    /// to the kernel both ways; upstream as outer fragments over a
    /// 1,300-byte access link).
    #[arg(long, value_delimiter = ',', default_value = "fast", value_parser = ["fast", "slow"])]
    path: Vec<String>,
    /// With --peer: attach a do-nothing XDP program (XDP_PASS) where the
    /// generator's frames reach l2tpns, as this LNS's program is attached
    /// there. On a veth any XDP program costs the sending core a copy of
    /// every frame (trafgen's zero-copy frames into a page of the veth's
    /// pool, skb_pp_cow_data), which a NIC's native XDP does not: with
    /// this both LNSes pay it, and the generator offers both alike.
    #[arg(long, requires = "peer")]
    peer_xdp_pass: bool,
    /// Give every session a rate limit of this many kbit/s each way (far
    /// above what one session is sent, so nothing is dropped): what
    /// policing costs per packet, against a run without it (0: none).
    #[arg(long, default_value_t = 0)]
    rate_limit_kbps: u32,
    /// With --rate-limit-kbps: measure the LNS without limits and with
    /// them in turn (A B A B ..., --rounds pairs, 5 unless given) instead
    /// of beside the bare reflector, and print the medians of both and
    /// the ratio with / without: the cost of policing measured in one run,
    /// where the machine's drift hits both alike.
    #[arg(long, requires = "rate_limit_kbps")]
    compare: bool,
    /// Shape downstream instead of policing: lns-dataplane `--shape-ms`
    /// (a frame over the limit waits up to this long). With a limit that
    /// is not reached, `--compare` then gives the shaper's cost per packet
    /// (every downstream frame takes the shaper's check) against no limits.
    #[arg(long, default_value_t = 0)]
    shape_ms: u32,
}

/// Set by SIGINT or SIGTERM: the trafgen run under way is stopped and the
/// error returned from main, so the lab (namespaces, data plane, pins) is
/// torn down by its destructors instead of outliving the harness.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A file removed when it goes out of scope, error or not.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

const LAC_PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
const SINK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 0, 0, 0, 0, 0x99);

/// Sessions per tunnel: session ids 256..=65535, so that the low byte of a
/// session id runs through all 256 values under each high byte (what
/// `--lean` counts with).
const PER_TUNNEL: u32 = 65280;

/// The `k`th session's subscriber address: a /64 named by its tunnel and
/// session id, so that the session id's low byte is the address's byte 7.
fn subscriber(k: u32) -> Ipv6Addr {
    let (t, s) = ids(k);
    Ipv6Addr::new(0x2001, 0xdb8, 0x1000 + t, s, 0, 0, 0, 1)
}

/// The length of the prefix under 2001:db8:1000::/36 that holds the /64s
/// of `sessions` subscribers (at least a /46).
fn pool_len(sessions: u32) -> u32 {
    let last_tunnel = u32::from(ids(sessions.max(1) - 1).0);
    48 - (last_tunnel + 1).next_power_of_two().trailing_zeros().max(2)
}

fn ids(k: u32) -> (u16, u16) {
    ((1 + k / PER_TUNNEL) as u16, (256 + k % PER_TUNNEL) as u16)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Dir {
    Upstream,
    Downstream,
}

#[derive(Serialize)]
struct Row {
    mode: &'static str,
    sessions: u32,
    direction: Dir,
    inner_size: usize,
    sent: u64,
    delivered: u64,
    seconds: f64,
    delivered_pps: f64,
    loss_pct: f64,
    /// Highest rate found with at most LOSS_FREE_PCT loss.
    loss_free_pps: f64,
    worker_ns_per_packet: f64,
    /// Of the worker's CPU, the share in the kernel (%).
    worker_sys_pct: f64,
    /// The whole machine's busy time (both cores, /proc/stat) per packet
    /// the sink saw, and the share of it in softirq (%).
    machine_ns_per_packet: f64,
    softirq_pct: f64,
    /// CPU of the LNS interfaces' NAPI threads (the XDP program and the
    /// kernel's receive path) per delivered packet; 0 without --threaded-napi.
    napi_ns_per_packet: f64,
    /// The steering program's own run time per frame it saw on the LNS's
    /// receiving interface (kernel BPF statistics, kernel.bpf_stats_enabled).
    /// On a veth it runs on the generator's core, so it is what separates
    /// the two modes' rates when trafgen is the bottleneck.
    xdp_ns_per_frame: f64,
    /// Frames per batch the worker took from its rings over the data
    /// plane's whole run (its final report): near 1, the worker waits for
    /// frames, its CPU goes to per-batch costs (a sendto per batch) and
    /// ns/pkt says little about its per-packet work; near the batch size
    /// (64), it is the bottleneck.
    frames_per_batch: f64,
    ratio_to_bare: Option<f64>,
}

struct Macs {
    lac0: [u8; 6],
    acc0: [u8; 6],
    core0: [u8; 6],
    core0p: [u8; 6],
}

fn inner(src: Ipv6Addr, dst: Ipv6Addr, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    let payload = vec![0x5a; size.saturating_sub(48)];
    PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
        .udp(4000, 9)
        .write(&mut v, &payload)
        .expect("building a packet");
    v
}

fn frame(dir: Dir, m: &Macs, k: u32, size: usize) -> Vec<u8> {
    let mut v = Vec::new();
    match dir {
        Dir::Upstream => {
            let (t, s) = ids(k);
            let mut l2tp = vec![0x00, 0x02];
            l2tp.extend_from_slice(&t.to_be_bytes());
            l2tp.extend_from_slice(&s.to_be_bytes());
            l2tp.extend_from_slice(&[0xff, 0x03, 0x00, 0x57]);
            l2tp.extend_from_slice(&inner(subscriber(k), SINK6, size));
            PacketBuilder::ethernet2(m.lac0, m.acc0)
                .ipv4(LAC_PEER.octets(), [192, 0, 2, 1], 64)
                .udp(1701, 1701)
                .write(&mut v, &l2tp)
                .expect("building a frame");
        }
        Dir::Downstream => {
            v.extend_from_slice(&m.core0);
            v.extend_from_slice(&m.core0p);
            v.extend_from_slice(&[0x86, 0xdd]);
            v.extend_from_slice(&inner(SINK6, subscriber(k), size));
        }
    }
    v
}

/// Sessions that share one trafgen template with `--lean`: as many as a
/// byte counts.
const LEAN_GROUP: u32 = 256;

/// A trafgen configuration cycling through the sessions' frames, in
/// session order or in the order of [`shuffled`], with one template per
/// `group` sessions (1, or [`LEAN_GROUP`] for `--lean`). In a template for
/// several, the L2TP session id's low byte and byte 7 of the subscriber
/// address (downstream: of the destination) count up together, and the
/// inner UDP checksum is recomputed for each frame; the outer UDP checksum
/// is left zero (IPv4 allows it), as it would go stale.
fn trafgen_config(dir: Dir, m: &Macs, sessions: u32, size: usize, shuffle: bool, group: u32) -> String {
    // Templates: (first session, how many share it), never across a tunnel.
    let mut templates = Vec::new();
    let mut k = 0;
    while k < sessions {
        let n = group.max(1).min(sessions - k).min(PER_TUNNEL - k % PER_TUNNEL);
        templates.push((k, n));
        k += n;
    }
    let count = templates.len() as u32;
    let mul = scatter_multiplier(count);
    let mut s = String::new();
    for j in 0..count {
        let (k0, n) = templates[if shuffle { shuffled(j, count, mul) } else { j } as usize];
        let mut fr = frame(dir, m, k0, size);
        let inner_at = fr.len() - size.max(48);
        // Where the counted bytes are: the L2TP session id's low byte sits
        // 5 bytes before the inner packet (then FF 03 00 57); the address's
        // byte 7 in the inner header's source (upstream) or destination
        // (downstream).
        let (counted, addr_at) = match dir {
            Dir::Upstream => (Some(inner_at - 5), inner_at + 8 + 7),
            Dir::Downstream => (None, inner_at + 24 + 7),
        };
        if group > 1 && dir == Dir::Upstream {
            fr[40..42].fill(0); // outer UDP checksum
        }
        // A checksum function takes the place of the field it fills.
        let udp_at = inner_at + 40;
        let csum_at = udp_at + 6;
        s.push('{');
        for (i, b) in fr.iter().enumerate() {
            if n > 1 && i == csum_at + 1 {
                continue;
            }
            if i > 0 {
                s.push(',');
            }
            if n > 1 && (Some(i) == counted || i == addr_at) {
                let _ = write!(s, "dinc({b}, {}, 1)", u32::from(*b) + n - 1);
            } else if n > 1 && i == csum_at {
                let _ = write!(s, "csumudp6({inner_at}, {udp_at})");
            } else {
                let _ = write!(s, "0x{b:02x}");
            }
        }
        s.push_str("}\n");
    }
    s
}

/// The median of sorted values: the mean of the middle two for an even
/// count (the upper one alone would favour the better round).
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A multiplier prime to `count`, near count / golden ratio: `n` times it,
/// modulo `count`, is a permutation that puts neighbours far apart.
fn scatter_multiplier(count: u32) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let count = u64::from(count.max(1));
    let mut mul = (count * 618_034 / 1_000_000).max(1);
    while gcd(mul, count) != 1 {
        mul += 1;
    }
    mul
}

/// The `n`th of `count` sessions in the scattered order of `mul`
/// ([`scatter_multiplier`]).
fn shuffled(n: u32, count: u32, mul: u64) -> u32 {
    ((u64::from(n) * mul) % u64::from(count.max(1))) as u32
}

/// An interface's packet counters, read from /proc/net/dev of its namespace
/// through a file opened inside it (procfs keeps the namespace it was opened
/// in). Reading it costs a read(2); spawning `ip netns exec cat` every 20 ms
/// cost both cores a fork, an exec and a sysfs mount during every
/// measurement.
struct DevCounters {
    file: std::fs::File,
    dev: String,
}

impl DevCounters {
    fn open(ns: &Netns, dev: &str) -> Result<DevCounters> {
        let _in = ns.enter()?;
        let file = std::fs::File::open("/proc/thread-self/net/dev").context("opening /proc/net/dev")?;
        Ok(DevCounters { file, dev: dev.to_string() })
    }

    /// (rx_packets, tx_packets).
    fn read(&self) -> Result<(u64, u64)> {
        use std::io::{Read, Seek};
        let mut f = &self.file;
        f.seek(std::io::SeekFrom::Start(0))?;
        let mut text = String::new();
        f.read_to_string(&mut text)?;
        for line in text.lines() {
            let Some((name, rest)) = line.split_once(':') else { continue };
            if name.trim() != self.dev {
                continue;
            }
            // rx: bytes packets errs drop fifo frame compressed multicast;
            // tx: bytes packets ...
            let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            if f.len() >= 10 {
                return Ok((f[1], f[9]));
            }
        }
        bail!("{} not in /proc/net/dev", self.dev)
    }

    fn rx(&self) -> Result<u64> {
        Ok(self.read()?.0)
    }

    fn tx(&self) -> Result<u64> {
        Ok(self.read()?.1)
    }
}

/// CPU time (ns) of the data plane's worker thread.
fn worker_cpu_ns(pid: u32) -> u64 {
    let (user, system) = worker_cpu_split_ns(pid);
    user + system
}

/// (user, system) CPU time (ns) of the data plane's (or the reflector's)
/// worker threads: user time is the worker's own per-packet work, system
/// time the kernel's (copy-mode transmit in sendto, poll).
fn worker_cpu_split_ns(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (0, 0) };
    let tick = 1_000_000_000 / 100; // USER_HZ
    let (mut user, mut system) = (0, 0);
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("lns-worker") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            user += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * tick;
            system += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * tick;
        }
    }
    (user, system)
}

/// NAPI kernel threads of the LNS's interfaces ("napi/acc0-N", ...).
fn napi_threads(devs: &[&str]) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|p| {
            let pid: u32 = p.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(p.path().join("comm")).ok()?;
            let dev = comm.trim().strip_prefix("napi/")?.rsplit_once('-')?.0.to_string();
            devs.contains(&dev.as_str()).then_some(pid)
        })
        .collect()
}

/// CPU time (ns) of kernel threads, from schedstat (ns on CPU).
fn threads_cpu_ns(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Turns on threaded NAPI for the LNS's interfaces. A veth has NAPI only
/// with GRO on or an XDP program attached; GRO gives it one before the data
/// plane starts, and attaching XDP keeps it.
fn thread_napi(lab: &Lab) -> Result<()> {
    for dev in ["acc0", "core0"] {
        lab.lns.exec("ethtool", &["-K", dev, "gro", "on"])?;
        let out = lab.lns.exec("sh", &["-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")])?;
        anyhow::ensure!(
            out.status.success(),
            "threaded NAPI on {dev}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Raises the default socket send buffer for the run and puts it back
/// after. With threaded NAPI the frames trafgen sent wait in the veth's
/// ring, holding the socket's send memory, and trafgen (which cannot raise
/// its buffer inside a namespace: --no-sock-mem) fails with EAGAIN. The
/// setting is global (not per namespace), hence the restore.
struct WmemDefault(Option<String>);

impl WmemDefault {
    const PATH: &'static str = "/proc/sys/net/core/wmem_default";

    fn raise(bytes: u64) -> Result<WmemDefault> {
        let old = std::fs::read_to_string(Self::PATH)?.trim().to_string();
        std::fs::write(Self::PATH, bytes.to_string()).context("raising net.core.wmem_default")?;
        Ok(WmemDefault(Some(old)))
    }
}

impl Drop for WmemDefault {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = std::fs::write(Self::PATH, old);
        }
    }
}

/// Pins the NAPI threads to the worker's core (1), so core 0 is trafgen's,
/// at real-time priority.
fn pin_napi(pids: &[u32]) -> Result<()> {
    for p in pids {
        let st = std::process::Command::new("taskset").args(["-p", "-c", "1", &p.to_string()]).output()?;
        anyhow::ensure!(st.status.success(), "pinning NAPI thread {p}");
        // Real-time, as a NIC's softirq is: it preempts the worker when
        // frames arrive, so the veth's 256-frame ring does not overflow
        // while the worker has the core; the AF_XDP ring absorbs the burst.
        let st = std::process::Command::new("chrt").args(["-f", "-p", "10", &p.to_string()]).output()?;
        anyhow::ensure!(st.status.success(), "making NAPI thread {p} real-time");
    }
    Ok(())
}

/// The subject under test, started for one measurement.
struct Subject {
    proc: lns_testlab::NsProcess,
    /// lns-dataplane's pins (kept until the measurement ends).
    _pins: Option<PinDir>,
}

/// Starts `lns-reflect` in the LNS namespace on the interface the
/// generator's frames arrive on, its worker on core 1, and waits until its
/// program is attached.
fn start_bare(lab: &Lab, dev: &str, busy_poll: bool) -> Result<Subject> {
    let mut a = vec!["--dev", dev, "--core", "1"];
    if busy_poll {
        a.push("--busy-poll");
    }
    let mut proc = lns_testlab::NsProcess::spawn(&lab.lns, &lns_testlab::workspace_bin("lns-reflect")?, &a)?;
    let t0 = Instant::now();
    loop {
        let out = lab.lns.ip(&["-d", "link", "show", dev])?;
        if String::from_utf8_lossy(&out.stdout).contains("prog/xdp") {
            return Ok(Subject { proc, _pins: None });
        }
        if !proc.alive() || t0.elapsed() > Duration::from_secs(20) {
            bail!("lns-reflect did not attach: {:?}", proc.output());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts lns-dataplane with one worker on core 1 and installs `sessions`.
fn start_lns(lab: &Lab, sessions: u32, args: &Args, mode: &str) -> Result<Subject> {
    let pins = PinDir::new()?;
    // Session ids start at 256 (`ids`): the table reaches past the highest.
    let max = (sessions + 256 + 16).next_power_of_two().max(1024).to_string();
    let mut dp_args = vec![
        "--queues",
        "1",
        "--cores",
        "1",
        "--xdp-mode",
        args.xdp_mode.as_str(),
        "--bind",
        "copy",
        "--stats-interval",
        "0",
        "--json",
        "--max-sessions",
        &max,
        "--mss-clamp",
        "off",
    ];
    if args.busy_poll {
        dp_args.push("--busy-poll");
    }
    // The /64s `subscriber` hands out: tunnels 1 to 3 (up to 195,840
    // sessions) lie in a /46, up to 15 tunnels in a /44, up to 31 (a
    // million sessions are 16) in a /43.
    let pool = format!("2001:db8:1000::/{}", pool_len(sessions));
    // A unit a /64: past the data plane's default 1,048,576 (a /44), room
    // for the whole pool.
    let units = 1u64 << (64 - pool_len(sessions));
    let units_arg = units.to_string();
    if !args.no_pools {
        dp_args.extend(["--pool", &pool]);
        if units > 1 << 20 {
            dp_args.extend(["--pool-units", &units_arg]);
        }
    }
    let shape_ms = args.shape_ms.to_string();
    if args.shape_ms > 0 {
        dp_args.extend(["--shape-ms", &shape_ms]);
    }
    dp_args.extend(args.dataplane_args.iter().map(String::as_str));
    let proc = lab.start_dataplane(pins.path(), &dp_args)?;
    // --compare measures "lns" without limits and "limited" with them.
    let rate = if args.compare && mode != "limited" { 0 } else { args.rate_limit_kbps };
    install_sessions(pins.path(), sessions, rate)?;
    Ok(Subject { proc, _pins: Some(pins) })
}

fn measure(
    lab: &Lab,
    m: &Macs,
    mode: &'static str,
    sessions: u32,
    dir: Dir,
    size: usize,
    args: &Args,
) -> Result<Row> {
    // The LNS interface the generator's frames arrive on (the reflector
    // sends them back out of it).
    let rx_dev = if dir == Dir::Upstream { "acc0" } else { "core0" };
    let mut subject = if mode == "bare" {
        start_bare(lab, rx_dev, args.busy_poll)?
    } else {
        start_lns(lab, sessions, args, mode)?
    };
    let napi = if args.threaded_napi { napi_threads(&["acc0", "core0"]) } else { Vec::new() };
    if args.threaded_napi {
        anyhow::ensure!(!napi.is_empty(), "no NAPI threads for acc0/core0");
        pin_napi(&napi)?;
    }

    let cfg = TempFile(std::env::temp_dir().join(format!("{}.trafgen", lns_testlab::unique_name("tg"))));
    let group = if args.lean { LEAN_GROUP } else { 1 };
    std::fs::write(&cfg.0, trafgen_config(dir, m, sessions, size, !args.in_order, group))?;
    let (gen_ns, gen_dev, sink_ns, sink_dev) = match (mode, dir) {
        ("bare", Dir::Upstream) => (&lab.lac, "lac0", &lab.lac, "lac0"),
        ("bare", Dir::Downstream) => (&lab.core, "core0p", &lab.core, "core0p"),
        (_, Dir::Upstream) => (&lab.lac, "lac0", &lab.core, "core0p"),
        (_, Dir::Downstream) => (&lab.core, "core0p", &lab.lac, "lac0"),
    };
    let path = Flow {
        gen: (gen_ns, gen_dev),
        sink: (sink_ns, sink_dev),
        lns_rx: (&lab.lns, rx_dev),
        cfg: &cfg.0,
        pid: subject.proc.pid(),
        napi: &napi,
        procs: &[],
        frames_per_packet: 1,
    };
    let (sat, lo) = saturate_and_search(&path, args, |t| t.loss_pct())?;
    subject.proc.stop(10);
    let report = subject.proc.output().0.lines().last().unwrap_or_default().to_string();
    if std::env::var_os("LNS_LOAD_VERBOSE").is_some() {
        eprintln!("{mode} {dir:?}: {report}");
    }
    let frames_per_batch = serde_json::from_str::<serde_json::Value>(&report)
        .ok()
        .and_then(|v| {
            let w = v.get("workers")?.as_array()?.first()?.clone();
            let (rx, batches) = (w.get("rx")?.as_f64()?, w.get("batches")?.as_f64()?);
            (batches > 0.0).then(|| rx / batches)
        })
        .unwrap_or(0.0);
    let (sent, delivered) = (sat.sent, sat.delivered);
    Ok(Row {
        mode,
        sessions,
        direction: dir,
        inner_size: size,
        sent,
        delivered,
        seconds: sat.seconds,
        delivered_pps: sat.delivered_pps,
        loss_pct: sat.loss_pct(),
        loss_free_pps: lo,
        worker_ns_per_packet: per(sat.cpu_ns, delivered),
        worker_sys_pct: 100.0 * per(sat.worker_sys_ns, sat.cpu_ns),
        machine_ns_per_packet: per(sat.machine.busy() * NS_PER_TICK, sat.window_packets),
        softirq_pct: 100.0 * per(sat.machine.softirq, sat.machine.busy()),
        napi_ns_per_packet: per(sat.napi_ns, delivered),
        xdp_ns_per_frame: per(sat.xdp_ns, sat.xdp_runs),
        frames_per_batch,
        ratio_to_bare: None,
    })
}

/// `total` per `n`, 0 for none.
fn per(total: u64, n: u64) -> f64 {
    if n > 0 {
        total as f64 / n as f64
    } else {
        0.0
    }
}

/// Where one measurement's frames go and what it watches.
struct Flow<'a> {
    gen: (&'a Netns, &'a str),
    sink: (&'a Netns, &'a str),
    /// The LNS's interface the frames arrive on (its XDP statistics).
    lns_rx: (&'a Netns, &'a str),
    cfg: &'a Path,
    /// The process whose `lns-worker*` threads' CPU is counted.
    pid: u32,
    napi: &'a [u32],
    /// Processes whose whole CPU time is counted (`Trial::procs_ns`).
    procs: &'a [u32],
    /// Frames the generator sends per packet (2: outer fragments).
    frames_per_packet: u64,
}

/// A trafgen run of `packets` at `rate` (None: as fast as it goes) over
/// `path`; trafgen now and then gives up flushing its TX ring on a veth
/// (EAGAIN), which says nothing about the subject, so it is tried again.
fn run_path(path: &Flow, rate: Option<u64>, packets: u64) -> Result<Trial> {
    let mut last = None;
    for _ in 0..3 {
        match run_trafgen(path, rate, packets) {
            Ok(t) => return Ok(t),
            Err(e) if interrupted() => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("trafgen did not run")))
}

/// A warm-up run, then saturation (trafgen as fast as it goes), then a
/// binary search for the loss-free rate under the delivered rate at
/// saturation, each step a rate-limited trafgen run; `loss` says a trial's
/// loss in percent. Returns the saturation trial and the loss-free rate.
fn saturate_and_search(path: &Flow, args: &Args, loss: impl Fn(&Trial) -> f64) -> Result<(Trial, f64)> {
    // A first run warms what the measured one uses (the worker's pages,
    // trafgen's, caches); the very first run of a process came out up to
    // 10 % slow.
    if args.warmup > 0 {
        run_path(path, None, args.warmup)?;
    }
    let sat = run_path(path, None, args.packets)?;
    let mut lo = 0.0f64;
    let mut hi = sat.delivered_pps.max(1.0);
    if loss(&sat) <= LOSS_FREE_PCT {
        lo = sat.delivered_pps;
    } else {
        for _ in 0..args.search_steps {
            let mid = (lo + hi) / 2.0;
            let n = (mid * 1.5) as u64;
            let t = run_path(path, Some(mid as u64), n.max(1000))?;
            if loss(&t) <= LOSS_FREE_PCT {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    Ok((sat, lo))
}

/// Loss at or below this counts as loss-free (veths drop the odd frame).
const LOSS_FREE_PCT: f64 = 0.1;

struct Trial {
    sent: u64,
    delivered: u64,
    /// Between the first and the last frame the sink saw.
    seconds: f64,
    delivered_pps: f64,
    cpu_ns: u64,
    /// Of `cpu_ns`, the time in the kernel.
    worker_sys_ns: u64,
    napi_ns: u64,
    xdp_ns: u64,
    xdp_runs: u64,
    /// The whole machine's CPU between the first and last frame the sink
    /// saw, and the packets the sink saw in that window.
    machine: MachineTicks,
    window_packets: u64,
    procs_ns: u64,
}

impl Trial {
    fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        100.0 * self.sent.saturating_sub(self.delivered) as f64 / self.sent as f64
    }
}

/// One trafgen run; the delivered rate is measured on the sink's counter
/// between the first and the last frame it saw, so trafgen's start-up (it
/// compiles its configuration first) does not count.
#[allow(clippy::too_many_arguments)]
fn run_trafgen(f: &Flow, rate: Option<u64>, packets: u64) -> Result<Trial> {
    let ((gen_ns, gen_dev), (sink_ns, sink_dev), (lns_ns, lns_dev)) = (f.gen, f.sink, f.lns_rx);
    let (cfg, pid, napi) = (f.cfg, f.pid, f.napi);
    let procs0 = procs_cpu_ns(f.procs);
    let gen = DevCounters::open(gen_ns, gen_dev)?;
    let sink = DevCounters::open(sink_ns, sink_dev)?;
    let napi0 = threads_cpu_ns(napi);
    let (xdp_ns0, xdp_runs0) = xdp_run_stats(lns_ns, lns_dev);
    let rx0 = sink.rx()?;
    let tx0 = gen.tx()?;
    let cpu0 = worker_cpu_split_ns(pid);
    let n = packets.to_string();
    let rate_arg = rate.map(|r| format!("{r}pps"));
    let mut a: Vec<&str> =
        vec!["netns", "exec", gen_ns.name(), "taskset", "-c", "0", "trafgen", "--dev", gen_dev, "--conf"];
    let cfg_s = cfg.to_str().context("cfg path")?;
    a.push(cfg_s);
    a.extend_from_slice(&["--cpus", "1", "--no-sock-mem", "-q", "-n", &n]);
    if let Some(r) = &rate_arg {
        a.extend_from_slice(&["-b", r]);
    }
    let mut child = std::process::Command::new("ip")
        .args(&a)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting trafgen")?;
    // The window opens when trafgen starts sending (it compiles its
    // configuration first, seconds for 100,000 frames, while stray frames
    // such as neighbour discovery may reach the sink) and closes with the
    // last frame the sink sees.
    let mut first: Option<(Instant, u64)> = None;
    let mut last: Option<(Instant, u64)> = None;
    // The whole machine's CPU over the same window.
    let (mut stat_first, mut stat_last) = (None, None);
    let mut prev = rx0;
    let mut quiet_since: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if interrupted() {
            // trafgen stops its per-CPU children itself on SIGINT; killed,
            // they would outlive it.
            let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
            bail!("interrupted");
        }
        let now = Instant::now();
        let rx = sink.rx()?;
        if first.is_none() && gen.tx()? > tx0 + 16 {
            first = Some((now, rx));
            stat_first = MachineTicks::read();
        }
        if rx > prev {
            if first.is_some() {
                last = Some((now, rx));
                stat_last = MachineTicks::read();
            }
            quiet_since = None;
        } else if child.try_wait()?.is_some() {
            // trafgen is done and nothing arrives any more.
            let q = *quiet_since.get_or_insert(now);
            if now.duration_since(q) > Duration::from_millis(200) {
                break;
            }
        }
        prev = rx;
    }
    let status = child.wait()?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("trafgen failed: {err}");
    }
    let sent = (gen.tx()? - tx0) / f.frames_per_packet.max(1);
    let delivered = (sink.rx()? - rx0).min(sent);
    let machine = match (stat_first, stat_last) {
        (Some(a), Some(b)) => b.since(&a),
        _ => MachineTicks::default(),
    };
    // Packets the sink saw in the window the machine's CPU was read over.
    let window_packets = match (first, last) {
        (Some((_, r1)), Some((_, r2))) => r2 - r1,
        _ => 0,
    };
    let (seconds, pps) = match (first, last) {
        (Some((t1, r1)), Some((t2, r2))) if t2 > t1 => {
            let s = t2.duration_since(t1).as_secs_f64();
            (s, (r2 - r1) as f64 / s)
        }
        _ => (0.0, 0.0),
    };
    Ok(Trial {
        sent,
        delivered,
        seconds,
        delivered_pps: pps,
        cpu_ns: worker_cpu_ns(pid).saturating_sub(cpu0.0 + cpu0.1),
        worker_sys_ns: worker_cpu_split_ns(pid).1.saturating_sub(cpu0.1),
        napi_ns: threads_cpu_ns(napi).saturating_sub(napi0),
        xdp_ns: xdp_run_stats(lns_ns, lns_dev).0.saturating_sub(xdp_ns0),
        xdp_runs: xdp_run_stats(lns_ns, lns_dev).1.saturating_sub(xdp_runs0),
        machine,
        window_packets,
        procs_ns: procs_cpu_ns(f.procs).saturating_sub(procs0),
    })
}

/// /proc's clock ticks (USER_HZ, 100 a second) in ns.
const NS_PER_TICK: u64 = 10_000_000;

/// CPU time (ns) of whole processes (all their threads), from
/// /proc/PID/stat (utime + stime).
fn procs_cpu_ns(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| lns_benches::proc_cpu_ticks(&stat))
        .map(|ticks| ticks * NS_PER_TICK)
        .sum()
}

/// The XDP program attached to `dev`: its total run time (ns) and run count
/// from the kernel's BPF statistics (zeros when they are off or unreadable).
fn xdp_run_stats(ns: &Netns, dev: &str) -> (u64, u64) {
    let id = ns
        .exec("ip", &["-d", "-j", "link", "show", "dev", dev])
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v[0]["xdp"]["prog"]["id"].as_u64());
    let Some(id) = id else { return (0, 0) };
    let info = lns_testlab::run("bpftool", &["-j", "prog", "show", "id", &id.to_string()])
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    match info {
        Some(v) => (v["run_time_ns"].as_u64().unwrap_or(0), v["run_cnt"].as_u64().unwrap_or(0)),
        None => (0, 0),
    }
}

/// Turns on the kernel's BPF run-time statistics for the run (they cost two
/// clock reads per program run, the same in both modes) and restores the
/// setting after.
struct BpfStats(Option<String>);

impl BpfStats {
    const PATH: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> BpfStats {
        let old = std::fs::read_to_string(Self::PATH).ok().map(|s| s.trim().to_string());
        if old.is_some() && std::fs::write(Self::PATH, "1").is_err() {
            return BpfStats(None);
        }
        BpfStats(old)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = std::fs::write(Self::PATH, old);
        }
    }
}

/// The far ends' XDP programs, compiled once per run.
///
/// Both far ends drop subscriber traffic in XDP (counted in the veth's
/// rx_packets), so what a sink's kernel would do with it is the same for
/// every subject and direction and costs next to nothing: the sinks'
/// receive work runs on the worker's core when the worker transmits into a
/// veth. The core's sink drops every frame. The LAC's drops L2TP data
/// messages carrying IPv4 or IPv6 (and IPv4 fragments, which only data
/// makes) and passes the rest, so that lns-lacsim, holding the sessions of
/// `--peer`, still hears L2TP and PPP control (Hello, LCP Echo).
pub struct Sinks {
    dir: std::path::PathBuf,
}

const SINK_C: &str = r#"
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define bpf_htons(x) __builtin_bswap16(x)
#else
#define bpf_htons(x) (x)
#endif

__attribute__((section("xdp"), used)) int xdp_sink(struct xdp_md *ctx) { return XDP_DROP; }

__attribute__((section("xdp"), used)) int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }

__attribute__((section("xdp"), used)) int xdp_sink_data(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;
	unsigned char *l2tp, *ppp;
	unsigned int off = 6;
	unsigned short proto;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->frag_off & bpf_htons(0x3fff))
		return XDP_DROP;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	l2tp = (void *)(udp + 1);
	if ((void *)(l2tp + 12) > end)
		return XDP_PASS;
	if (l2tp[0] & 0x80 || l2tp[0] & 0x02)
		return XDP_PASS; /* control, or an offset this does not follow */
	if (l2tp[0] & 0x40)
		off += 2;
	if (l2tp[0] & 0x08)
		off += 4;
	ppp = l2tp + off;
	if ((void *)(ppp + 4) > end)
		return XDP_PASS;
	if (ppp[0] == 0xff && ppp[1] == 0x03)
		ppp += 2;
	if ((void *)(ppp + 2) > end)
		return XDP_PASS;
	proto = ppp[0] & 1 ? ppp[0] : (ppp[0] << 8 | ppp[1]);
	return proto == 0x21 || proto == 0x57 ? XDP_DROP : XDP_PASS;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
"#;

impl Sinks {
    /// Compiles the programs and attaches them to the lab's far ends.
    fn attach(lab: &Lab) -> Result<Sinks> {
        let dir = std::env::temp_dir().join(lns_testlab::unique_name("sink"));
        std::fs::create_dir_all(&dir)?;
        let sinks = Sinks { dir };
        let src = sinks.dir.join("sink.c");
        std::fs::write(&src, SINK_C)?;
        let arch = std::process::Command::new("gcc").arg("-dumpmachine").output()?;
        let inc = format!("-I/usr/include/{}", String::from_utf8_lossy(&arch.stdout).trim());
        let out = std::process::Command::new("clang")
            .args(["-O2", "-target", "bpf", &inc, "-c"])
            .arg(&src)
            .arg("-o")
            .arg(sinks.obj())
            .output()
            .context("clang")?;
        anyhow::ensure!(
            out.status.success(),
            "compiling the sinks: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let o = sinks.obj();
        let o = o.to_str().context("path")?;
        lab.lac.ip(&[
            "link",
            "set",
            "dev",
            "lac0",
            "xdpdrv",
            "obj",
            o,
            "sec",
            "xdp",
            "program",
            "xdp_sink_data",
        ])?;
        lab.core
            .ip(&["link", "set", "dev", "core0p", "xdpdrv", "obj", o, "sec", "xdp", "program", "xdp_sink"])?;
        Ok(sinks)
    }

    fn obj(&self) -> std::path::PathBuf {
        self.dir.join("sink.o")
    }

    /// Drops every frame arriving on `dev` in `ns` until the guard goes.
    fn drop_all_on<'a>(&self, ns: &'a Netns, dev: &'a str) -> Result<DropAll<'a>> {
        let o = self.obj();
        let o = o.to_str().context("path")?;
        ns.ip(&["link", "set", "dev", dev, "xdpdrv", "obj", o, "sec", "xdp", "program", "xdp_sink"])?;
        Ok(DropAll { ns, dev })
    }

    /// Passes every frame arriving on `dev` in `ns` through an XDP program
    /// that does nothing (`--peer-xdp-pass`) until the guard goes.
    fn pass_all_on<'a>(&self, ns: &'a Netns, dev: &'a str) -> Result<DropAll<'a>> {
        let o = self.obj();
        let o = o.to_str().context("path")?;
        ns.ip(&["link", "set", "dev", dev, "xdpdrv", "obj", o, "sec", "xdp", "program", "xdp_pass"])?;
        Ok(DropAll { ns, dev })
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// [`Sinks::drop_all_on`]'s (or [`Sinks::pass_all_on`]'s) program,
/// detached on drop.
pub struct DropAll<'a> {
    ns: &'a Netns,
    dev: &'a str,
}

impl Drop for DropAll<'_> {
    fn drop(&mut self) {
        let _ = self.ns.ip(&["link", "set", "dev", self.dev, "xdpdrv", "off"]);
    }
}

fn install_sessions(pins: &Path, n: u32, rate_limit_kbps: u32) -> Result<()> {
    let maps = lns_bpf::open_pinned(pins)?;
    for k in 0..n {
        let (t, s) = ids(k);
        let mut sess = Session {
            state: SessionState::Forwarding as u32,
            flags: Session::UDP_CSUM_ZERO,
            local_tunnel_id: t,
            local_session_id: s,
            peer_tunnel_id: t,
            peer_session_id: s,
            mtu: 1500,
            ipv6_prefix: subscriber(k).octets(),
            ipv6_prefix_len: 64,
            generation: 1,
            rate_down_kbps: rate_limit_kbps,
            rate_up_kbps: rate_limit_kbps,
            burst_down: 1 << 20,
            burst_up: 1 << 20,
            ..Default::default()
        };
        sess.set_peer(SocketAddr::new(LAC_PEER.into(), 1701));
        sess.set_local(SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 1701));
        // At its direct slot, as the control plane places its sessions.
        let slot = lns_bpf::abi::direct_slot(sess.key(), maps.max_sessions())
            .context("the session table has no direct slot for these ids")?;
        maps.install_session(slot, &sess)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    ctrlc::set_handler(|| INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed))
        .context("installing the SIGINT/SIGTERM handler")?;
    let lab = Lab::new(1)?;
    let m = Macs {
        lac0: Lab::mac(&lab.lac, "lac0")?,
        acc0: Lab::mac(&lab.lns, "acc0")?,
        core0: Lab::mac(&lab.lns, "core0")?,
        core0p: Lab::mac(&lab.core, "core0p")?,
    };
    // Next hops the LNS forwards to but nobody answers for: the sinks drop
    // frames for addresses they do not own, the cheapest drop there is.
    let mac = |b: [u8; 6]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    lab.lns.ip(&["neigh", "add", "192.0.2.99", "lladdr", &mac(m.lac0), "dev", "acc0", "nud", "permanent"])?;
    lab.lns.ip(&[
        "-6",
        "neigh",
        "add",
        "2001:db8:c0::99",
        "lladdr",
        &mac(m.core0p),
        "dev",
        "core0",
        "nud",
        "permanent",
    ])?;

    let sinks = Sinks::attach(&lab)?;
    let _bpf_stats = if args.no_bpf_stats { None } else { Some(BpfStats::enable()) };
    let _wmem = if args.threaded_napi {
        thread_napi(&lab)?;
        let max: u64 = std::fs::read_to_string("/proc/sys/net/core/wmem_max")?.trim().parse()?;
        Some(WmemDefault::raise(max)?)
    } else {
        None
    };

    if args.peer.is_some() {
        // Subscriber traffic upstream goes to peer::CORE_HOST, which nobody
        // owns; the LAC is lacsim at 192.0.2.2. Permanent entries keep both
        // next hops fixed through the run.
        lab.lns.ip(&[
            "neigh",
            "add",
            &peer::CORE_HOST.to_string(),
            "lladdr",
            &mac(m.core0p),
            "dev",
            "core0",
            "nud",
            "permanent",
        ])?;
        lab.lns.ip(&[
            "neigh",
            "add",
            "192.0.2.2",
            "lladdr",
            &mac(m.lac0),
            "dev",
            "acc0",
            "nud",
            "permanent",
        ])?;
        return peer::run(&lab, &m, &sinks, &args);
    }
    let mut rows = Vec::new();
    if !args.json {
        println!(
            "{:<8} {:>8} {:<10} {:>5} {:>10} {:>10} {:>10} {:>7} {:>11} {:>8} {:>5} {:>8} {:>5} {:>8} {:>8} {:>6} {:>8}",
            "mode",
            "sessions",
            "direction",
            "size",
            "sent",
            "delivered",
            "sat_pps",
            "loss%",
            "lossfree_pps",
            "ns/pkt",
            "wsys%",
            "mach ns",
            "sirq%",
            "napi ns",
            "xdp ns",
            "f/bat",
            "lns/bare"
        );
    }
    for &sessions in &args.sessions {
        for dir in [Dir::Upstream, Dir::Downstream] {
            if !args.directions.iter().any(|d| d == &format!("{dir:?}").to_lowercase()) {
                continue;
            }
            for &size in &args.sizes {
                let mut ratios = Vec::new();
                // Saturation rates' ratios: the loss-free search rides on
                // trafgen's rate-limited mode, which the VM's noise shakes
                // more than a run as fast as trafgen goes.
                let mut sat_ratios = Vec::new();
                // --compare: the LNS without limits in the reference's place.
                let (reference, subject) = if args.compare { ("lns", "limited") } else { ("bare", "lns") };
                let mut pairs = Vec::new();
                let rounds = if args.compare && args.rounds == 1 { 5 } else { args.rounds.max(1) };
                for _ in 0..rounds {
                    if interrupted() {
                        bail!("interrupted");
                    }
                    let bare = measure(&lab, &m, reference, sessions, dir, size, &args)?;
                    let mut lns = measure(&lab, &m, subject, sessions, dir, size, &args)?;
                    lns.ratio_to_bare =
                        (bare.loss_free_pps > 0.0).then(|| lns.loss_free_pps / bare.loss_free_pps);
                    ratios.extend(lns.ratio_to_bare);
                    if bare.delivered_pps > 0.0 {
                        sat_ratios.push(lns.delivered_pps / bare.delivered_pps);
                    }
                    if args.compare {
                        pairs.push(ComparePair::of(&bare, &lns));
                    }
                    for r in [bare, lns] {
                        if args.json {
                            println!("{}", serde_json::to_string(&r)?);
                        } else {
                            println!(
                            "{:<8} {:>8} {:<10} {:>5} {:>10} {:>10} {:>10.0} {:>7.2} {:>11.0} {:>8.0} {:>5.0} {:>8.0} {:>5.0} {:>8.0} {:>8.0} {:>6.1} {:>8}",
                            r.mode,
                            r.sessions,
                            format!("{:?}", r.direction).to_lowercase(),
                            r.inner_size,
                            r.sent,
                            r.delivered,
                            r.delivered_pps,
                            r.loss_pct,
                            r.loss_free_pps,
                            r.worker_ns_per_packet,
                            r.worker_sys_pct,
                            r.machine_ns_per_packet,
                            r.softirq_pct,
                            r.napi_ns_per_packet,
                            r.xdp_ns_per_frame,
                            r.frames_per_batch,
                            r.ratio_to_bare.map(|x| format!("{x:.3}")).unwrap_or_default()
                        );
                        }
                        rows.push(r);
                    }
                }
                if args.compare {
                    print_compare(
                        &pairs,
                        sessions,
                        dir,
                        size,
                        args.rate_limit_kbps,
                        args.shape_ms,
                        args.json,
                    )?;
                } else if args.rounds > 1 && !ratios.is_empty() {
                    ratios.sort_by(f64::total_cmp);
                    sat_ratios.sort_by(f64::total_cmp);
                    let median_sat = self::median(&sat_ratios);
                    let median = median(&ratios);
                    let list: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
                    let sat_list: Vec<String> = sat_ratios.iter().map(|r| format!("{r:.3}")).collect();
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({"sessions": sessions, "direction": dir, "inner_size": size,
                                "ratios": ratios, "median_ratio": median,
                                "saturation_ratios": sat_ratios, "median_saturation_ratio": median_sat})
                        );
                    } else {
                        println!(
                            "median   {sessions:>8} {:<10} {size:>5} lns/bare over {} rounds: loss-free {median:.3} ({}), saturation {median_sat:.3} ({})",
                            format!("{dir:?}").to_lowercase(),
                            ratios.len(),
                            list.join(" "),
                            sat_list.join(" ")
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// One round of `--compare`: the LNS without limits, then with them.
struct ComparePair {
    /// Worker CPU per packet (ns) at saturation, without and with.
    ns: [f64; 2],
    /// Delivered rate at saturation (packets/s), without and with: the
    /// loss-free rate is 0 with --search-steps 0 and a lossy saturation.
    pps: [f64; 2],
}

impl ComparePair {
    fn of(without: &Row, with: &Row) -> ComparePair {
        ComparePair {
            ns: [without.worker_ns_per_packet, with.worker_ns_per_packet],
            pps: [without.delivered_pps, with.delivered_pps],
        }
    }
}

/// The medians of `--compare`'s rounds: ns/packet and delivered rate
/// without and with limits, and with / without of each (the median of the
/// rounds' own ratios: a pair measured back to back shares the drift).
fn print_compare(
    pairs: &[ComparePair],
    sessions: u32,
    dir: Dir,
    size: usize,
    kbps: u32,
    shape_ms: u32,
    json: bool,
) -> Result<()> {
    let med = |f: &dyn Fn(&ComparePair) -> f64| {
        let mut v: Vec<f64> = pairs.iter().map(f).filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        median(&v)
    };
    let ns = [med(&|p| p.ns[0]), med(&|p| p.ns[1])];
    let pps = [med(&|p| p.pps[0]), med(&|p| p.pps[1])];
    let ns_ratio = med(&|p| p.ns[1] / p.ns[0]);
    let pps_ratio = med(&|p| p.pps[1] / p.pps[0]);
    let dir_name = format!("{dir:?}").to_lowercase();
    // Each round's own ratio, so the spread (the machine's noise) shows
    // beside the median.
    let list = |f: &dyn Fn(&ComparePair) -> f64| {
        pairs.iter().map(|p| format!("{:.3}", f(p))).collect::<Vec<_>>().join(" ")
    };
    let ns_list = list(&|p| p.ns[1] / p.ns[0]);
    let pps_list = list(&|p| p.pps[1] / p.pps[0]);
    // Downstream is shaped with --shape-ms; upstream is always policed.
    let how = if shape_ms > 0 && dir == Dir::Downstream { "shaped" } else { "policed" };
    if json {
        println!(
            "{}",
            serde_json::json!({"compare": "rate_limit", "limit": how, "shape_ms": shape_ms,
                "rate_limit_kbps": kbps, "sessions": sessions,
                "direction": dir, "inner_size": size, "rounds": pairs.len(),
                "median_ns_per_packet": {"without": ns[0], "with": ns[1]},
                "median_delivered_pps": {"without": pps[0], "with": pps[1]},
                "median_ratio_ns_per_packet": ns_ratio, "median_ratio_delivered_pps": pps_ratio,
                "rounds_ratio_ns_per_packet": ns_list, "rounds_ratio_delivered_pps": pps_list})
        );
    } else {
        println!(
            "median   {sessions:>8} {dir_name:<10} {size:>5} over {} rounds, without / with a {kbps} kbit/s limit ({how}): \
             ns/pkt {:.1} / {:.1} (with/without {ns_ratio:.3}), sat pps {:.0} / {:.0} (with/without {pps_ratio:.3})",
            pairs.len(),
            ns[0],
            ns[1],
            pps[0],
            pps[1],
        );
        println!("         rounds' with/without: ns/pkt {ns_list}; sat pps {pps_list}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        frame, median, pool_len, scatter_multiplier, shuffled, subscriber, trafgen_config, Dir, Macs,
        LEAN_GROUP,
    };

    /// The frames trafgen makes of one template line when its counters
    /// stand at `v`: `None` for the bytes a checksum function fills.
    fn expand(line: &str, v: u32) -> Vec<Option<u8>> {
        let body = line.trim().trim_start_matches('{').trim_end_matches('}');
        let (mut out, mut depth, mut tok) = (Vec::new(), 0, String::new());
        for c in body.chars().chain(std::iter::once(',')) {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if c == ',' && depth == 0 {
                let t = tok.trim();
                if let Some(args) = t.strip_prefix("dinc(") {
                    let min: u32 = args.split(',').next().unwrap().trim().parse().unwrap();
                    out.push(Some((min + v) as u8));
                } else if t.starts_with("csumudp6(") {
                    out.extend([None, None]);
                } else {
                    out.push(Some(u8::from_str_radix(t.trim_start_matches("0x"), 16).unwrap()));
                }
                tok.clear();
            } else {
                tok.push(c);
            }
        }
        out
    }

    #[test]
    fn lean_templates_count_each_session_s_frame_once() {
        let m = Macs {
            lac0: [2, 0, 0, 0, 0, 1],
            acc0: [2, 0, 0, 0, 0, 2],
            core0: [2, 0, 0, 0, 0, 3],
            core0p: [2, 0, 0, 0, 0, 4],
        };
        // Past a tunnel's 65,280 sessions, both directions, both sizes.
        for (dir, sessions, size, shuffle) in [
            (Dir::Upstream, 66_000, 64, true),
            (Dir::Downstream, 66_000, 64, false),
            (Dir::Upstream, 600, 1400, false),
            (Dir::Downstream, 600, 1400, true),
            (Dir::Upstream, 1, 64, true),
        ] {
            let config = trafgen_config(dir, &m, sessions, size, shuffle, LEAN_GROUP);
            let mut seen = vec![false; sessions as usize];
            for line in config.lines() {
                let counters = line.matches("dinc(").count();
                assert!(counters == 0 || counters == if dir == Dir::Upstream { 2 } else { 1 }, "{line}");
                let span = if counters == 0 {
                    1
                } else {
                    let args = &line[line.find("dinc(").unwrap() + 5..];
                    let mut it =
                        args.split(',').map(|x| x.trim().trim_end_matches(')').parse::<u32>().unwrap());
                    let (min, max) = (it.next().unwrap(), it.next().unwrap());
                    max - min + 1
                };
                // Which session the template starts at, from its address
                // (2001:db8:1000+tunnel:session::1); the frames compared
                // below say whether that was right.
                let first = expand(line, 0);
                let at = first.len() - size.max(48) + if dir == Dir::Upstream { 8 } else { 24 };
                let word =
                    |i: usize| u32::from(first[at + i].unwrap()) << 8 | u32::from(first[at + i + 1].unwrap());
                let k0 = (word(4) - 0x1001) * super::PER_TUNNEL + word(6) - 256;
                for v in 0..span {
                    let mut want = frame(dir, &m, k0 + v, size);
                    if dir == Dir::Upstream {
                        want[40..42].fill(0);
                    }
                    let got = expand(line, v);
                    assert_eq!(got.len(), want.len());
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(g.is_none_or(|g| g == *w), "session {} byte {i}", k0 + v);
                    }
                    assert!(!seen[(k0 + v) as usize], "session {} twice", k0 + v);
                    seen[(k0 + v) as usize] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "every session has frames");
        }
    }

    #[test]
    fn the_pool_holds_every_subscriber_s_prefix() {
        for sessions in [1u32, 2, 65_280, 65_281, 195_840, 195_841, 979_200, 979_201, 1_000_000, 2_000_000] {
            let len = pool_len(sessions);
            let pool = u128::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x1000, 0, 0, 0, 0, 0));
            for k in [0, sessions / 2, sessions - 1] {
                let a = u128::from(subscriber(k));
                assert_eq!(
                    a >> (128 - len),
                    pool >> (128 - len),
                    "{sessions} sessions: {k}th outside the /{len}"
                );
            }
        }
        assert_eq!(pool_len(100_000), 46);
        assert_eq!(pool_len(1_000_000), 43);
    }

    #[test]
    fn median_of_an_even_count_is_the_middle_pair_s_mean() {
        assert_eq!(median(&[0.9, 1.1]), 1.0);
        assert_eq!(median(&[0.8, 0.9, 1.3]), 0.9);
        assert_eq!(median(&[0.7, 0.8, 1.0, 1.2]), 0.9);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn shuffled_is_a_permutation_that_scatters_neighbours() {
        for count in [1u32, 2, 3, 7, 1000, 100_000, 131_072] {
            let mul = scatter_multiplier(count);
            let mut seen = vec![false; count as usize];
            for n in 0..count {
                let k = shuffled(n, count, mul);
                assert!(k < count && !seen[k as usize], "count {count}: {n} -> {k}");
                seen[k as usize] = true;
            }
        }
        // Consecutive frames land on sessions far apart (not in one page
        // of 128-byte entries).
        let mul = scatter_multiplier(100_000);
        let far = (0..1000)
            .filter(|&n| shuffled(n + 1, 100_000, mul).abs_diff(shuffled(n, 100_000, mul)) > 32)
            .count();
        assert_eq!(far, 1000);
    }
}
