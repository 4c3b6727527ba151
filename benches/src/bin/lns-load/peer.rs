//! `lns-load --peer l2tpns`: this LNS beside Debian's l2tpns, in the same
//! lab, with the same frames.
//!
//! Sessions are real for both: lns-lacsim (the LAC emulator, in the LAC
//! namespace) brings them up against the LNS under test and holds them,
//! and writes their data messages (`--trafgen-out`); from those the
//! harness takes each session's tunnel and session id and subscriber
//! address and builds the frames both LNSes get, upstream (L2TP from the
//! LAC, to 203.0.113.99 in the core) and downstream (IPv4 from
//! 203.0.113.99 to the subscriber). Either LNS forwards to a next hop the
//! harness made permanent; the sinks drop the subscriber traffic in XDP
//! (the LAC's sink passes L2TP control and PPP control, so lacsim keeps
//! its tunnel and sessions).
//!
//! Subjects, one at a time on 192.0.2.1:
//! - `lns` (path fast): lns-dataplane (one worker, core 1) and
//!   lns-controlplane with local users;
//! - `lns` (path slow): the exception path, the LAC configured
//!   slow-path-only (`--peer 192.0.2.2,fast-path=no`), so the XDP program
//!   passes its sessions' packets to the kernel both ways. Upstream, the
//!   access link's MTU is 1,300 and the LAC's frames are outer IPv4
//!   fragments (two per packet, as the LAC's kernel makes them), which the
//!   kernel reassembles for the control plane's UDP socket; the control
//!   plane hands the packets to the kernel through its TUN device.
//!   Downstream, the kernel routes core packets into the TUN device and the
//!   control plane encapsulates them and sends them from its socket;
//! - `l2tpns`: Debian's l2tpns (a TUN-based LNS, one process) with
//!   FreeRADIUS deciding who gets in (l2tpns authenticates only by RADIUS).
//!   It gets the same frames as `lns` on the same path.
//!
//! Besides the delivered and loss-free rates, each row has the whole
//! machine's CPU per packet (both cores, /proc/stat, over the window the
//! sink received in): on veth, the receive side of a frame (XDP, the
//! stack, a UDP socket's queue) runs in softirq on the sending core, the
//! generator's, so the LNS's processes' own time misses part of its work.
//! The generator's share of the machine's time is measured alone in the
//! same run (`gen` row: the same frames dropped in XDP on the LNS's
//! receiving interface) and subtracted in the `net` column.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etherparse::PacketBuilder;
use lns_testlab::{workspace_bin, Lab, NsProcess, PinDir};
use serde::Serialize;

use super::{per, saturate_and_search, Args, Dir, Flow, Macs, Sinks, TempFile, Trial};

/// Where subscriber traffic goes upstream: an address in the core's
/// subnet that nobody owns, with a permanent neighbour entry on the LNS.
pub const CORE_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
const LNS_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LAC_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const RADIUS_SECRET: &str = "lns-load-secret";
/// The access link's MTU on the slow path upstream (issue 18's case).
const SMALL_MTU: u32 = 1300;

/// One established session as lacsim reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Established {
    pub tunnel: u16,
    pub session: u16,
    pub address: Ipv4Addr,
    /// lacsim's UDP port, and the LNS's for this tunnel.
    pub lac_port: u16,
    pub lns_port: u16,
    /// The L2TP header and PPP header bytes lacsim sends before the IP
    /// packet (the L2TP length field, if any, is rewritten per frame).
    pub header: Vec<u8>,
}

/// The sessions of a configuration written by `lns-lacsim --trafgen-out`:
/// one block per session, after a comment naming its subscriber.
pub fn parse_lacsim_trafgen(text: &str) -> Result<Vec<Established>> {
    let mut out = Vec::new();
    let mut address = None;
    for line in text.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("/* subscriber ").and_then(|r| r.strip_suffix(" */")) {
            // "ADDR" or "ADDR, LNS port P": the port is read from the frame.
            let a = a.split(',').next().unwrap_or(a).trim();
            address = Some(a.parse::<Ipv4Addr>().with_context(|| format!("subscriber {a:?}"))?);
            continue;
        }
        let Some(body) = line.strip_prefix('{').and_then(|b| b.strip_suffix('}')) else { continue };
        let bytes: Vec<u8> = body
            .split(',')
            .map(|b| u8::from_str_radix(b.trim().trim_start_matches("0x"), 16))
            .collect::<Result<_, _>>()
            .context("a frame's bytes")?;
        let address = address.take().context("a frame without its subscriber")?;
        // Ethernet 14, IPv4 20 (lacsim writes no options), UDP 8, then L2TP.
        let l2tp = bytes.get(42..).context("frame too short")?;
        let lac_port = u16::from_be_bytes([bytes[34], bytes[35]]);
        // The LNS may answer a tunnel from a port of its own (RFC 2661
        // lets it): its later messages go there.
        let lns_port = u16::from_be_bytes([bytes[36], bytes[37]]);
        if l2tp.len() < 6 || l2tp[0] & 0x80 != 0 {
            bail!("not an L2TP data message");
        }
        let flags = l2tp[0];
        let mut at = 2;
        if flags & 0x40 != 0 {
            at += 2; // length
        }
        let tunnel = u16::from_be_bytes([l2tp[at], l2tp[at + 1]]);
        let session = u16::from_be_bytes([l2tp[at + 2], l2tp[at + 3]]);
        // The IP packet is the rest after PPP's protocol 0x0021 (or 0x21).
        let ip_at = (at + 4..l2tp.len().saturating_sub(1))
            .find(|&i| l2tp[i] == 0x21 && l2tp.get(i + 1) == Some(&0x45))
            .context("no IPv4 packet in the PPP frame")?
            + 1;
        out.push(Established {
            tunnel,
            session,
            address,
            lac_port,
            lns_port,
            header: l2tp[..ip_at].to_vec(),
        });
    }
    Ok(out)
}

/// A session as lacsim would report it (the generator's run needs frames
/// of the right sizes, not an LNS that knows them).
fn synthetic(k: u32) -> Established {
    let (t, s) = (1u16, (k + 1) as u16);
    let mut header = vec![0x40, 0x02, 0, 0];
    header.extend_from_slice(&t.to_be_bytes());
    header.extend_from_slice(&s.to_be_bytes());
    header.extend_from_slice(&[0xff, 0x03, 0x00, 0x21]);
    Established {
        tunnel: t,
        session: s,
        address: Ipv4Addr::new(198, 51, 100, (k + 2) as u8),
        lac_port: 1701,
        lns_port: 1701,
        header,
    }
}

/// An IPv4/UDP packet of `size` bytes (at least 28).
fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport)
        .write(&mut v, &vec![0x5a; size.saturating_sub(28)])
        .expect("building a packet");
    v
}

/// The frames of one session: upstream, the L2TP data message from the
/// LAC (as IPv4 fragments of at most `mtu` bytes when it does not fit);
/// downstream, the IP packet from the core.
pub fn session_frames(dir: Dir, m: &Macs, s: &Established, size: usize, mtu: usize) -> Vec<Vec<u8>> {
    match dir {
        Dir::Upstream => {
            let inner = ipv4_udp(s.address, CORE_HOST, 4000, 9, size);
            let mut l2tp = s.header.clone();
            if l2tp[0] & 0x40 != 0 {
                let len = (l2tp.len() + inner.len()) as u16;
                l2tp[2..4].copy_from_slice(&len.to_be_bytes());
            }
            l2tp.extend_from_slice(&inner);
            let mut udp = Vec::with_capacity(8 + l2tp.len());
            udp.extend_from_slice(&s.lac_port.to_be_bytes());
            udp.extend_from_slice(&s.lns_port.to_be_bytes());
            udp.extend_from_slice(&((8 + l2tp.len()) as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]); // no checksum, as lacsim and most LACs send
            udp.extend_from_slice(&l2tp);
            ipv4_fragments(&udp, LAC_ADDR, LNS_ADDR, mtu)
                .into_iter()
                .map(|ip| ether(m.acc0, m.lac0, &ip))
                .collect()
        }
        Dir::Downstream => vec![ether(m.core0, m.core0p, &ipv4_udp(CORE_HOST, s.address, 9, 4000, size))],
    }
}

fn ether(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + ip.len());
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[0x08, 0x00]);
    v.extend_from_slice(ip);
    v
}

/// `payload` (a UDP datagram) in IPv4 packets of at most `mtu` bytes, as
/// the sender's kernel fragments it (RFC 791: offsets in 8-byte units,
/// MF on all but the last, one identification).
pub fn ipv4_fragments(payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr, mtu: usize) -> Vec<Vec<u8>> {
    let room = (mtu - 20) / 8 * 8;
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let end = (off + room).min(payload.len());
        let more = end < payload.len();
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x4c4eu16.to_be_bytes());
        let frag = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&payload[off..end]);
        out.push(ip);
        if !more {
            return out;
        }
        off = end;
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A trafgen configuration: every session's frames, one block each.
fn trafgen_config(frames: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for f in frames {
        s.push('{');
        s.push_str(&f.iter().map(|b| format!("0x{b:02x}")).collect::<Vec<_>>().join(","));
        s.push_str("}\n");
    }
    s
}

/// Which LNS, on which of its paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Lns,
    L2tpns,
    /// The generator alone: the frames dropped in XDP where the LNS would
    /// receive them.
    Gen,
}

/// What is running for one subject; stopped on drop.
struct Running {
    procs: Vec<NsProcess>,
    /// lns-dataplane's process, whose worker threads are counted apart.
    dataplane: Option<u32>,
    _pins: Option<PinDir>,
    _cp: Option<lns_testlab::ControlPlane>,
    _radius: Option<lns_testlab::freeradius::FreeRadius>,
    _dir: Option<TempDir>,
    lacsim: Option<NsProcess>,
}

impl Running {
    /// Processes whose CPU counts as the LNS's.
    fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.procs.iter().map(NsProcess::pid).collect();
        if let Some(cp) = &self._cp {
            v.push(cp.proc.pid());
        }
        v
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The subscribers hang up first, while their LNS still answers.
        if let Some(l) = self.lacsim.as_mut() {
            l.stop(5);
        }
        for p in self.procs.iter_mut().rev() {
            p.stop(5);
        }
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// l2tpns's configuration (startup-config(5)) for the lab: L2TP on
/// 192.0.2.1, RADIUS (its only way to authenticate subscribers) at
/// `radius`, no accounting, no gratuitous ARP, its TUN device `tun0`. It
/// looks up its cluster interface's address at start even without
/// cluster peers (default eth0, which the lab has not): the access side.
pub fn l2tpns_config(dir: &Path, radius: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        "set debug 1\n\
         set log_file \"{d}/l2tpns.log\"\n\
         set pid_file \"{d}/l2tpns.pid\"\n\
         set bind_address {LNS_ADDR}\n\
         set cluster_interface \"acc0\"\n\
         set cli_bind_address 127.0.0.1\n\
         set send_garp no\n\
         set tundevicename \"tun0\"\n\
         set primary_dns 0.0.0.0\n\
         set secondary_dns 0.0.0.0\n\
         set primary_radius {radius}\n\
         set radius_secret \"{RADIUS_SECRET}\"\n\
         set radius_authtypes \"chap\"\n\
         set radius_accounting no\n\
         set ppp_keepalive yes\n"
    )
}

/// Starts l2tpns and FreeRADIUS in the LNS namespace (subscribers user1..
/// userN, password pwN, address 198.51.100.(N+1)) and waits until l2tpns
/// has its TUN device.
fn start_l2tpns(lab: &Lab, sessions: u32) -> Result<Running> {
    anyhow::ensure!(Path::new("/usr/sbin/l2tpns").exists(), "no /usr/sbin/l2tpns: run scripts/setup.sh");
    let users: String = (1..=sessions)
        .map(|i| {
            format!(
                "user{i}\tCleartext-Password := \"pw{i}\"\n\tFramed-IP-Address = 198.51.100.{}\n\n",
                i + 1
            )
        })
        .collect();
    let radius =
        lns_testlab::freeradius::FreeRadius::start_stock(&lab.lns, LNS_ADDR.into(), RADIUS_SECRET, &users)
            .context("starting FreeRADIUS for l2tpns")?;
    let dir = TempDir(std::env::temp_dir().join(lns_testlab::unique_name("l2tpns")));
    std::fs::create_dir_all(&dir.0)?;
    let conf = dir.0.join("startup-config");
    std::fs::write(&conf, l2tpns_config(&dir.0, LNS_ADDR))?;
    // Routed subscriber traffic through tun0 both ways.
    lab.lns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    // In a session of its own: at exit l2tpns signals its whole process
    // group, which would otherwise be this harness's.
    let mut p = NsProcess::spawn(
        &lab.lns,
        Path::new("/usr/bin/setsid"),
        &["/usr/sbin/l2tpns", "-c", conf.to_str().context("path")?],
    )?;
    let t0 = Instant::now();
    let up = || {
        lab.lns.ip(&["link", "show", "tun0"]).is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("UP"))
    };
    while !up() {
        if !p.alive() || t0.elapsed() > Duration::from_secs(15) {
            let log = std::fs::read_to_string(dir.0.join("l2tpns.log")).unwrap_or_default();
            bail!("l2tpns did not start: {:?}\n{log}", p.output());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Running {
        procs: vec![p],
        dataplane: None,
        _pins: None,
        _cp: None,
        _radius: Some(radius),
        _dir: Some(dir),
        lacsim: None,
    })
}

/// Starts this LNS: lns-dataplane (one worker on core 1) and
/// lns-controlplane with local users (user1.. userN, pwN) on the lab's
/// pool 198.51.100.0/24; with `slow`, the LAC's sessions are kept off the
/// fast path (`fast-path=no`).
fn start_lns(lab: &Lab, sessions: u32, slow: bool, args: &Args) -> Result<Running> {
    let pins = PinDir::new()?;
    let mut procs = Vec::new();
    {
        let mut a = vec![
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
            "1024",
            "--pool",
            "198.51.100.0/24",
        ];
        if args.busy_poll {
            a.push("--busy-poll");
        }
        a.extend(args.dataplane_args.iter().map(String::as_str));
        procs.push(lab.start_dataplane(pins.path(), &a)?);
    }
    let dataplane_pid = procs.first().map(NsProcess::pid);
    let extra: &[&str] = if slow { &["--peer", "192.0.2.2,fast-path=no"] } else { &[] };
    let cp = lab.start_controlplane(pins.path(), sessions, extra)?;
    Ok(Running {
        procs,
        dataplane: dataplane_pid,
        _pins: Some(pins),
        _cp: Some(cp),
        _radius: None,
        _dir: None,
        lacsim: None,
    })
}

/// Brings `n` subscribers up with lacsim in one tunnel and keeps them up;
/// returns what it established.
fn bring_up(lab: &Lab, run: &mut Running, n: u32) -> Result<Vec<Established>> {
    let out = TempFile(std::env::temp_dir().join(format!("{}.trafgen", lns_testlab::unique_name("lacsim"))));
    let (n_s, out_s) = (n.to_string(), out.0.to_str().context("path")?.to_string());
    let a = [
        "--server",
        "192.0.2.1:1701",
        "--tunnels",
        "1",
        "--sessions-per-tunnel",
        &n_s,
        "--rate",
        "200",
        "--auth",
        "chap",
        "--user",
        "user%d",
        "--password",
        "pw%d",
        "--hold",
        "1000000",
        "--timeout",
        "30",
        "--trafgen-out",
        &out_s,
        "--trafgen-dev",
        "lac0",
    ];
    let mut p = NsProcess::spawn(&lab.lac, &workspace_bin("lns-lacsim")?, &a)?;
    let t0 = Instant::now();
    let sessions = loop {
        if let Ok(text) = std::fs::read_to_string(&out.0) {
            if text.lines().filter(|l| l.starts_with('{')).count() as u32 >= n
                || t0.elapsed() > Duration::from_secs(40)
            {
                break parse_lacsim_trafgen(&text)?;
            }
        }
        if !p.alive() || t0.elapsed() > Duration::from_secs(45) {
            bail!("lns-lacsim brought nothing up: {:?}", p.output());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    run.lacsim = Some(p);
    anyhow::ensure!(sessions.len() as u32 == n, "{} of {n} sessions up", sessions.len());
    // lacsim writes the file as the sessions settle; the LNS's fast path
    // takes a session once the control plane has written it.
    std::thread::sleep(Duration::from_millis(500));
    Ok(sessions)
}

/// One row of the side-by-side table.
#[derive(Serialize)]
pub struct PeerRow {
    pub path: &'static str,
    pub subject: Subject,
    pub sessions: u32,
    pub direction: Dir,
    pub inner_size: usize,
    pub sent: u64,
    pub delivered: u64,
    pub delivered_pps: f64,
    pub loss_pct: f64,
    pub loss_free_pps: f64,
    /// The whole machine's busy time (both cores) per packet the sink saw.
    pub machine_ns_per_packet: f64,
    /// The same less the generator's (the `gen` row's) per packet.
    pub net_ns_per_packet: f64,
    /// Shares of the machine's busy time: user, system, softirq.
    pub user_pct: f64,
    pub system_pct: f64,
    pub softirq_pct: f64,
    /// The LNS's processes' own CPU time per delivered packet.
    pub process_ns_per_packet: f64,
    /// lns-dataplane's worker thread's CPU per delivered packet.
    pub worker_ns_per_packet: f64,
}

fn row(
    path: &'static str,
    subject: Subject,
    sessions: u32,
    dir: Dir,
    size: usize,
    sat: &Trial,
    lo: f64,
) -> PeerRow {
    let busy = sat.machine.busy();
    let share = |x: u64| if busy > 0 { 100.0 * x as f64 / busy as f64 } else { 0.0 };
    PeerRow {
        path,
        subject,
        sessions,
        direction: dir,
        inner_size: size,
        sent: sat.sent,
        delivered: sat.delivered,
        delivered_pps: sat.delivered_pps,
        loss_pct: sat.loss_pct(),
        loss_free_pps: lo,
        machine_ns_per_packet: per(busy, sat.window_packets),
        net_ns_per_packet: 0.0,
        user_pct: share(sat.machine.user),
        system_pct: share(sat.machine.system),
        softirq_pct: share(sat.machine.softirq),
        process_ns_per_packet: per(sat.procs_ns, sat.delivered),
        worker_ns_per_packet: per(sat.cpu_ns, sat.delivered),
    }
}

/// Measures one subject on one path with the frames of its own sessions.
#[allow(clippy::too_many_arguments)]
fn measure_subject(
    lab: &Lab,
    m: &Macs,
    sinks: &Sinks,
    subject: Subject,
    path: &'static str,
    sessions: u32,
    dir: Dir,
    size: usize,
    args: &Args,
) -> Result<PeerRow> {
    let slow = path == "slow";
    let fragmented = slow && dir == Dir::Upstream;
    let mtu = if fragmented { SMALL_MTU } else { 1500 };
    for (ns, dev) in [(&lab.lac, "lac0"), (&lab.lns, "acc0")] {
        ns.ip(&["link", "set", "dev", dev, "mtu", &mtu.to_string()])?;
    }
    let (run, established) = match subject {
        Subject::Lns | Subject::L2tpns => {
            let mut run = if subject == Subject::Lns {
                start_lns(lab, sessions, slow, args)?
            } else {
                start_l2tpns(lab, sessions)?
            };
            let established = bring_up(lab, &mut run, sessions)?;
            (Some(run), established)
        }
        // The generator alone needs no LNS, only frames of the same sizes.
        Subject::Gen => (None, (0..sessions).map(synthetic).collect()),
    };
    let rx_dev = if dir == Dir::Upstream { "acc0" } else { "core0" };
    let frames: Vec<Vec<u8>> =
        established.iter().flat_map(|s| session_frames(dir, m, s, size, mtu as usize)).collect();
    let per_packet = (frames.len() / established.len().max(1)) as u64;
    let cfg = TempFile(std::env::temp_dir().join(format!("{}.trafgen", lns_testlab::unique_name("tg"))));
    std::fs::write(&cfg.0, trafgen_config(&frames))?;
    let (sink_ns, sink_dev) = match (subject, dir) {
        (Subject::Gen, _) => (&lab.lns, rx_dev),
        (_, Dir::Upstream) => (&lab.core, "core0p"),
        (_, Dir::Downstream) => (&lab.lac, "lac0"),
    };
    let (gen_ns, gen_dev) = if dir == Dir::Upstream { (&lab.lac, "lac0") } else { (&lab.core, "core0p") };
    // The generator's frames end at the LNS's interface.
    let _drop = if subject == Subject::Gen { Some(sinks.drop_all_on(&lab.lns, rx_dev)?) } else { None };
    // Where this LNS's program is, l2tpns gets one that passes everything.
    let _pass = if subject == Subject::L2tpns && args.peer_xdp_pass {
        Some(sinks.pass_all_on(&lab.lns, rx_dev)?)
    } else {
        None
    };
    let pids = run.as_ref().map(Running::pids).unwrap_or_default();
    let flow = Flow {
        gen: (gen_ns, gen_dev),
        sink: (sink_ns, sink_dev),
        lns_rx: (&lab.lns, rx_dev),
        cfg: &cfg.0,
        pid: run.as_ref().and_then(|r| r.dataplane).unwrap_or(0),
        napi: &[],
        procs: &pids,
        frames_per_packet: per_packet,
    };
    let (sat, lo) = saturate_and_search(&flow, args, Trial::loss_pct)?;
    drop(run);
    for (ns, dev) in [(&lab.lac, "lac0"), (&lab.lns, "acc0")] {
        ns.ip(&["link", "set", "dev", dev, "mtu", "1500"])?;
    }
    Ok(row(path, subject, sessions, dir, size, &sat, lo))
}

/// The side-by-side table: per path, direction and size, the generator
/// alone, this LNS and l2tpns, `rounds` times (LNS and l2tpns taking
/// turns), and the medians of the ratios.
pub fn run(lab: &Lab, m: &Macs, sinks: &Sinks, args: &Args) -> Result<()> {
    if !args.json {
        println!(
            "{:<4} {:<7} {:>5} {:<10} {:>5} {:>9} {:>9} {:>6} {:>9} {:>7} {:>7} {:>5} {:>5} {:>5} {:>7} {:>7}",
            "path",
            "subject",
            "sess",
            "direction",
            "size",
            "sent",
            "sat_pps",
            "loss%",
            "lossfree",
            "mach ns",
            "net ns",
            "usr%",
            "sys%",
            "sirq%",
            "proc ns",
            "wrk ns"
        );
    }
    for path in &args.path {
        let path: &'static str = if path == "slow" { "slow" } else { "fast" };
        for &sessions in &args.sessions {
            anyhow::ensure!(
                (1..=250).contains(&sessions),
                "--peer: 1 to 250 sessions (IPv4 subscribers in 198.51.100.0/24)"
            );
            for dir in [Dir::Upstream, Dir::Downstream] {
                if !args.directions.iter().any(|d| d == &format!("{dir:?}").to_lowercase()) {
                    continue;
                }
                for &size in &args.sizes {
                    let size = size.max(28);
                    let gen = measure_subject(lab, m, sinks, Subject::Gen, path, sessions, dir, size, args)?;
                    print_row(&gen, args.json)?;
                    let (mut rate, mut cpu) = (Vec::new(), Vec::new());
                    for _ in 0..args.rounds.max(1) {
                        if super::interrupted() {
                            bail!("interrupted");
                        }
                        let mut rows = Vec::new();
                        for subject in [Subject::Lns, Subject::L2tpns] {
                            let mut r =
                                measure_subject(lab, m, sinks, subject, path, sessions, dir, size, args)?;
                            r.net_ns_per_packet =
                                (r.machine_ns_per_packet - gen.machine_ns_per_packet).max(0.0);
                            print_row(&r, args.json)?;
                            rows.push(r);
                        }
                        if rows[1].loss_free_pps > 0.0 {
                            rate.push(rows[0].loss_free_pps / rows[1].loss_free_pps);
                        }
                        if rows[1].net_ns_per_packet > 0.0 {
                            cpu.push(rows[0].net_ns_per_packet / rows[1].net_ns_per_packet);
                        }
                    }
                    rate.sort_by(f64::total_cmp);
                    cpu.sort_by(f64::total_cmp);
                    let (mr, mc) = (super::median(&rate), super::median(&cpu));
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({"path": path, "sessions": sessions, "direction": dir,
                                "inner_size": size, "lossfree_lns_over_l2tpns": rate,
                                "net_cpu_lns_over_l2tpns": cpu,
                                "median_lossfree_ratio": mr, "median_net_cpu_ratio": mc})
                        );
                    } else {
                        println!(
                            "ratio {path} {sessions} {} {size}: loss-free lns/l2tpns {mr:.2} ({}), net CPU per packet lns/l2tpns {mc:.2} ({})",
                            format!("{dir:?}").to_lowercase(),
                            rate.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" "),
                            cpu.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" "),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_row(r: &PeerRow, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        let subject = match r.subject {
            Subject::Lns => "lns",
            Subject::L2tpns => "l2tpns",
            Subject::Gen => "gen",
        };
        println!(
            "{:<4} {:<7} {:>5} {:<10} {:>5} {:>9} {:>9.0} {:>6.2} {:>9.0} {:>7.0} {:>7.0} {:>5.0} {:>5.0} {:>5.0} {:>7.0} {:>7.0}",
            r.path,
            subject,
            r.sessions,
            format!("{:?}", r.direction).to_lowercase(),
            r.inner_size,
            r.sent,
            r.delivered_pps,
            r.loss_pct,
            r.loss_free_pps,
            r.machine_ns_per_packet,
            r.net_ns_per_packet,
            r.user_pct,
            r.system_pct,
            r.softirq_pct,
            r.process_ns_per_packet,
            r.worker_ns_per_packet
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_reassemble_to_the_datagram() {
        let payload: Vec<u8> = (0..1450u32).map(|i| i as u8).collect();
        let f = ipv4_fragments(&payload, LAC_ADDR, LNS_ADDR, 1300);
        assert_eq!(f.len(), 2);
        let mut back = vec![0u8; payload.len()];
        for ip in &f {
            assert!(ip.len() <= 1300);
            assert_eq!(checksum(&ip[..20]), 0, "header checksum");
            let fo = u16::from_be_bytes([ip[6], ip[7]]);
            let off = usize::from(fo & 0x1fff) * 8;
            back[off..off + ip.len() - 20].copy_from_slice(&ip[20..]);
        }
        assert_eq!(u16::from_be_bytes([f[0][6], f[0][7]]) & 0x2000, 0x2000, "MF on the first");
        assert_eq!(u16::from_be_bytes([f[1][6], f[1][7]]) & 0x2000, 0, "not on the last");
        assert_eq!(back, payload);
        assert_eq!(ipv4_fragments(&payload[..100], LAC_ADDR, LNS_ADDR, 1500).len(), 1);
    }

    #[test]
    fn lacsim_s_trafgen_file_gives_ids_addresses_and_headers() {
        let outer = lns_lacsim_frame();
        let text =
            format!("/* lns-lacsim: 1 sessions */\n/* subscriber 198.51.100.5, LNS port 1701 */\n{outer}\n");
        let s = parse_lacsim_trafgen(&text).unwrap();
        assert_eq!(
            s,
            vec![Established {
                tunnel: 0x1234,
                session: 0x0007,
                address: Ipv4Addr::new(198, 51, 100, 5),
                lac_port: 40000,
                lns_port: 1701,
                header: vec![0x40, 0x02, 0x00, 0x30, 0x12, 0x34, 0x00, 0x07, 0xff, 0x03, 0x00, 0x21],
            }]
        );
        // The length field follows the packet's size.
        let m = Macs { lac0: [2; 6], acc0: [3; 6], core0: [4; 6], core0p: [5; 6] };
        let f = session_frames(Dir::Upstream, &m, &s[0], 100, 1500);
        assert_eq!(f.len(), 1);
        assert_eq!(u16::from_be_bytes([f[0][44], f[0][45]]), 12 + 100);
        assert_eq!(&f[0][54..56], &[0x45, 0x00]);
    }

    /// A frame as lacsim writes it: Ethernet, IPv4, UDP 40000 -> 1701,
    /// L2TP with the length bit, PPP with address and control, IPv4.
    fn lns_lacsim_frame() -> String {
        let inner = ipv4_udp(Ipv4Addr::new(198, 51, 100, 5), CORE_HOST, 4000, 9, 36);
        let mut l2tp = vec![0x40, 0x02, 0x00, 0x30, 0x12, 0x34, 0x00, 0x07, 0xff, 0x03, 0x00, 0x21];
        l2tp.extend_from_slice(&inner);
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4(LAC_ADDR.octets(), LNS_ADDR.octets(), 64)
            .udp(40000, 1701)
            .write(&mut v, &l2tp)
            .unwrap();
        format!("{{{}}}", v.iter().map(|b| format!("0x{b:02x}")).collect::<Vec<_>>().join(","))
    }
}
