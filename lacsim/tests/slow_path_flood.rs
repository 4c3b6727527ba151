//! The slow path under a flood, and what it refuses (issue 18.5).
//!
//! Outer IPv4 fragments of L2TP data messages are what the XDP program
//! always passes to the kernel (`pass_fragment`): the kernel reassembles
//! them and hands them to the control plane's L2TP socket, the socket that
//! also carries every control message. A LAC behind a small link sends its
//! subscribers' large packets that way, and anyone can send such fragments
//! at any rate. trafgen floods the LNS with about 100,000 fragments a
//! second, half of them a forwarding session's upstream packets (which the
//! slow path delivers to the core), half data for a session that does not
//! exist; meanwhile lns-lacsim sets up 100 sessions. They all come up, the
//! control plane answers lnsctl, its memory stays bounded, and every flood
//! datagram that arrived is accounted for: delivered, or dropped and
//! counted (the slow path's full queue, the socket's overflows, the unknown
//! session, the kernel's reassembly failures), and none of the drops was
//! the control socket's (the kernel sorts control messages and PPP control
//! into a socket of their own).
//!
//! And without a flood, data for an unknown session or tunnel that comes
//! in fragments is dropped and counted as the fast path drops it, and
//! reaches neither the TUN device nor the core. (A spoofed source on the
//! slow path is slow_path_neighbours.rs's.)

mod common;
use common::{lacsim, lnsctl_json, resolve_neighbours, start_dp};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lns_testlab::frames::{eth_ip, l2tp_data, udp_v4};
use lns_testlab::{workspace_bin, Lab, Netns, NsProcess, PinDir, RawSocket};
use lns_wire::checksum;

/// The flood's offered rate, in Ethernet frames (outer fragments) a second.
const FLOOD_PPS: u64 = 100_000;

/// Subscriber packets of this size (IPv4, UDP) in the flood: their L2TP
/// datagrams (1,418 bytes of UDP) take two fragments each.
const INNER_LEN: usize = 1400;

/// Bytes of the outer UDP datagram in the first fragment (a multiple of 8).
const FIRST_FRAGMENT: usize = 1280;

/// The core host's port the subscriber packets go to (a sink counts them).
const SINK: &str = "203.0.113.7:9";

/// The two labs would share two cores: one at a time, the flood's figures
/// being the flood's alone.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A UDP socket of the core host counting what arrives.
struct Sink {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(ns: &Netns) -> Sink {
        let sock = {
            let _in = ns.enter().unwrap();
            std::net::UdpSocket::bind(SINK).unwrap()
        };
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let (count, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (c, s) = (count.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut b = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if sock.recv(&mut b).is_ok() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Sink { count, stop, handle: Some(handle) }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The forwarding session lns-lacsim holds: the LNS's ids (what the LAC
/// puts in its data messages), the subscriber's address and the LAC's
/// L2TP address.
struct Held {
    tunnel: u16,
    session: u16,
    ipv4: [u8; 4],
    lac: SocketAddr,
}

/// Starts lns-lacsim with one session of `user` held for a long time and
/// waits until the LNS forwards for it.
fn hold_one_session(lab: &Lab, cp: &lns_testlab::ControlPlane, user: u32) -> (NsProcess, Held) {
    let (u, p) = (format!("user{user}"), format!("pw{user}"));
    let mut sim = NsProcess::spawn(
        &lab.lac,
        &workspace_bin("lns-lacsim").unwrap(),
        &["--server", "192.0.2.1:1701", "--json", "--user", &u, "--password", &p, "--hold", "3600"],
    )
    .unwrap();
    let t0 = Instant::now();
    loop {
        let sessions = lnsctl_json(&cp.socket, &["session", "list"]);
        let up = sessions.as_array().and_then(|a| {
            a.iter().find(|s| {
                s["username"].as_str() == Some(u.as_str())
                    && s["dataplane_state"].as_str() == Some("forwarding")
                    && s["ipv4"].is_string()
            })
        });
        if let Some(s) = up {
            let ipv4: std::net::Ipv4Addr = s["ipv4"].as_str().unwrap().parse().unwrap();
            return (
                sim,
                Held {
                    tunnel: s["tunnel_id"].as_u64().unwrap() as u16,
                    session: s["session_id"].as_u64().unwrap() as u16,
                    ipv4: ipv4.octets(),
                    lac: s["peer"].as_str().unwrap().parse().unwrap(),
                },
            );
        }
        assert!(sim.alive(), "lns-lacsim exited: {:?}", sim.output());
        assert!(t0.elapsed() < Duration::from_secs(30), "no session: {sessions}\n{:?}", sim.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The outer IPv4 packet (DF set, as udp_v4 builds it) of an L2TP data
/// message from the LAC carrying a subscriber's UDP packet to the sink.
fn l2tp_datagram(lac_port: u16, tunnel: u16, session: u16, src: [u8; 4]) -> Vec<u8> {
    let payload: Vec<u8> = (0..INNER_LEN - 28).map(|i| i as u8).collect();
    let inner = udp_v4(src, 40000, [203, 0, 113, 7], 9, 64, &payload);
    udp_v4([192, 0, 2, 2], lac_port, [192, 0, 2, 1], 1701, 64, &l2tp_data(tunnel, session, 0x21, &inner))
}

/// The two fragments of an IPv4 packet, identification `id`, the first
/// carrying [`FIRST_FRAGMENT`] bytes of its payload (RFC 791 §3.2).
fn fragments(packet: &[u8], id: u16) -> [Vec<u8>; 2] {
    let (header, payload) = packet.split_at(20);
    let parts = [
        (&payload[..FIRST_FRAGMENT], 0u16, true),
        (&payload[FIRST_FRAGMENT..], FIRST_FRAGMENT as u16 / 8, false),
    ];
    parts.map(|(part, offset, more)| {
        let mut h = header.to_vec();
        h[2..4].copy_from_slice(&(20 + part.len() as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6..8].copy_from_slice(&(offset | if more { 0x2000 } else { 0 }).to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::of(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(part);
        h
    })
}

/// A trafgen packet block for an Ethernet frame carrying an IPv4
/// fragment, its identification `high`:counter (the counter goes up by one
/// each time trafgen sends the block, so the two blocks of a datagram keep
/// the same identification) and the header checksum recomputed.
fn trafgen_block(frame: &[u8], high: u8) -> String {
    let mut s = String::from("{ ");
    for (i, b) in frame.iter().enumerate() {
        let item = match i {
            18 => format!("0x{high:02x}"),
            19 => "dinc(0, 255, 1)".to_string(),
            24 => "csumip(14, 33)".to_string(),
            25 => continue,
            _ => format!("0x{b:02x}"),
        };
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&item);
    }
    s.push_str(" }\n");
    s
}

/// A counter of a device of the namespace, from its /sys.
fn dev_stat(ns: &Netns, dev: &str, name: &str) -> u64 {
    let out = ns.exec("cat", &[&format!("/sys/class/net/{dev}/statistics/{name}")]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// A counter of the namespace's /proc/net/snmp or /proc/net/netstat
/// (`section` as the file names it: `Ip`, `Udp`, `IpExt`...).
fn net_stat(ns: &Netns, file: &str, section: &str, name: &str) -> u64 {
    let out = ns.exec("cat", &[&format!("/proc/net/{file}")]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{section}:");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    for pair in lines.chunks(2) {
        if let [names, values] = pair {
            let at = names.split_whitespace().position(|n| n == name);
            if let Some(v) = at.and_then(|i| values.split_whitespace().nth(i)) {
                return v.parse().unwrap_or(0);
            }
        }
    }
    0
}

/// The process's resident memory, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn at(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// Waits until the LNS has `n` sessions.
fn wait_sessions(cp: &lns_testlab::ControlPlane, n: u64) {
    let t0 = Instant::now();
    loop {
        let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
        if stats["sessions"].as_u64() == Some(n) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{n} sessions: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A burst of 100 session set-ups (four tunnels of 25): lacsim's summary
/// and its wall time.
fn burst(lab: &Lab) -> (serde_json::Value, Duration) {
    let t0 = Instant::now();
    let s = lacsim(
        lab,
        &[
            "--tunnels",
            "4",
            "--sessions-per-tunnel",
            "25",
            "--user",
            "user%d",
            "--password",
            "pw%d",
            "--hold",
            "1",
            "--timeout",
            "120",
        ],
    );
    (s, t0.elapsed())
}

/// 100 / setup_rate: from the first call to the last session up.
fn setup_secs(s: &serde_json::Value) -> f64 {
    s["sessions_up"].as_f64().unwrap_or(0.0) / s["setup_rate"].as_f64().unwrap_or(f64::INFINITY)
}

#[test]
fn a_burst_of_session_set_ups_succeeds_under_a_flood_of_fragmented_data() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane(pins.path(), 101, &[]).unwrap();
    resolve_neighbours(&lab);
    let sink = Sink::start(&lab.core);
    let (mut held_sim, held) = hold_one_session(&lab, &cp, 101);

    // The same burst without a flood first, for comparison.
    let (quiet, quiet_wall) = burst(&lab);
    assert_eq!(quiet["sessions_up"].as_u64(), Some(100), "without a flood: {quiet}");
    wait_sessions(&cp, 1);

    // The flood: four datagrams of the held session (delivered to the
    // core), four for a session id its tunnel does not have, each two
    // fragments, cycled; identifications by datagram, 256 each.
    let unknown = held.session ^ 0x4000;
    let mut cfg = String::from("/* slow_path_flood: outer fragments of L2TP data */\n");
    let (lac_mac, lns_mac) = (Lab::mac(&lab.lac, "lac0").unwrap(), Lab::mac(&lab.lns, "acc0").unwrap());
    for k in 0..8u8 {
        let session = if k % 2 == 0 { held.session } else { unknown };
        let packet = l2tp_datagram(held.lac.port(), held.tunnel, session, held.ipv4);
        for f in fragments(&packet, 0) {
            cfg.push_str(&trafgen_block(&eth_ip(lns_mac, lac_mac, &f), k));
        }
    }
    let cfg_path = std::env::temp_dir().join(format!("{}.cfg", lns_testlab::unique_name("flood")));
    std::fs::write(&cfg_path, cfg).unwrap();

    // The kernel's receive path for the flood (generic XDP, reassembly,
    // UDP) on the other core, as a NIC's queues would spread it; otherwise
    // it runs in trafgen's own sends and caps the rate.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        let _ = lab.lns.exec("sh", &["-c", "echo 2 > /sys/class/net/acc0/queues/rx-0/rps_cpus"]);
    }
    let before = lnsctl_json(&cp.socket, &["show", "stats"]);
    let rss_before = vm_rss_kib(cp.proc.pid());
    let reasm_fails_before = net_stat(&lab.lns, "snmp", "Ip", "ReasmFails");
    let rcvbuf_errors_before = net_stat(&lab.lns, "snmp", "Udp", "RcvbufErrors");
    let sink_before = sink.count();
    let flood_start = Instant::now();
    let rate = format!("{FLOOD_PPS}pps");
    let mut trafgen = NsProcess::spawn(
        &lab.lac,
        std::path::Path::new("/usr/sbin/trafgen"),
        &["--dev", "lac0", "--conf", cfg_path.to_str().unwrap(), "--no-sock-mem", "--cpus", "1", "-b", &rate],
    )
    .unwrap();
    // Flowing: fragments reach the program and the slow path delivers.
    let window_start = loop {
        let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
        let fragments = at(&stats, &["xdp", "pass_fragment"]) - at(&before, &["xdp", "pass_fragment"]);
        let delivered = at(&stats, &["slow_path", "up_packets"]) - at(&before, &["slow_path", "up_packets"]);
        if fragments >= 10_000 && delivered > 0 {
            break (Instant::now(), at(&stats, &["xdp", "pass_fragment"]));
        }
        assert!(trafgen.alive(), "trafgen exited: {:?}", trafgen.output());
        assert!(flood_start.elapsed() < Duration::from_secs(30), "no flood arrives: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    };

    let (flooded, flooded_wall) = burst(&lab);
    // lnsctl answers meanwhile (five asks, the slowest reported).
    let mut slowest = Duration::ZERO;
    let mut during = serde_json::Value::Null;
    for _ in 0..5 {
        let t = Instant::now();
        during = lnsctl_json(&cp.socket, &["show", "stats"]);
        slowest = slowest.max(t.elapsed());
        assert!(
            during["sessions"].as_u64().is_some(),
            "lnsctl show stats answered during the flood: {during}"
        );
    }
    let window =
        (window_start.0.elapsed().as_secs_f64(), at(&during, &["xdp", "pass_fragment"]) - window_start.1);
    let rss_during = vm_rss_kib(cp.proc.pid());
    assert!(trafgen.alive(), "the flood lasted the burst: {:?}", trafgen.output());
    // SIGINT: trafgen reports what it sent.
    // (To its worker processes too, as a terminal's ^C would.)
    let pid = trafgen.pid();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for p in children.split_whitespace().chain([pid.to_string().as_str()]) {
        let _ = std::process::Command::new("kill").args(["-INT", p]).status();
    }
    let t = Instant::now();
    while trafgen.alive() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = !trafgen.alive();
    trafgen.stop(1);
    let flood_secs = flood_start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&cfg_path);
    let (trafgen_out, _) = trafgen.output();
    let trafgen_sent = trafgen_out
        .lines()
        .find(|l| l.contains("packets outgoing"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(exited && trafgen_sent.is_some(), "trafgen: {trafgen_out}");
    let trafgen_sent = trafgen_sent.unwrap_or(0);

    assert_eq!(flooded["sessions_up"].as_u64(), Some(100), "under the flood: {flooded}\n{during}");

    // The queues drain, then the books close.
    let mut after = lnsctl_json(&cp.socket, &["show", "stats"]);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = lnsctl_json(&cp.socket, &["show", "stats"]);
        let settled = at(&now, &["slow_path", "up_packets"]) == at(&after, &["slow_path", "up_packets"])
            && at(&now, &["dropped", "unknown_session"]) == at(&after, &["dropped", "unknown_session"]);
        after = now;
        if settled {
            break;
        }
    }
    let rss_after = vm_rss_kib(cp.proc.pid());
    let delta = |path: &[&str]| at(&after, path).saturating_sub(at(&before, path));
    let fragments_passed = delta(&["xdp", "pass_fragment"]);
    let arrived = fragments_passed / 2;
    let delivered = delta(&["slow_path", "up_packets"]);
    let unknown_session = delta(&["dropped", "unknown_session"]);
    let queue_full = delta(&["slow_path", "up_queue_full"]);
    let overflows = delta(&["slow_path", "socket_overflows"]);
    let reasm_fails = net_stat(&lab.lns, "snmp", "Ip", "ReasmFails") - reasm_fails_before;
    let at_core = sink.count() - sink_before;
    // The socket's overflow count reaches the control plane with the next
    // datagram it reads (SO_RXQ_OVFL): what overflowed after its last read
    // is in the kernel's own count only.
    let rcvbuf_errors = net_stat(&lab.lns, "snmp", "Udp", "RcvbufErrors") - rcvbuf_errors_before;
    let accounted = delivered + unknown_session + queue_full + overflows.max(rcvbuf_errors) + reasm_fails;

    println!(
        "flood: trafgen sent {trafgen_sent} frames in {flood_secs:.1} s, {fragments_passed} reached the XDP program \
         (pass_fragment); during the burst {:.0} frames/s ({:.0} L2TP datagrams/s) over {:.1} s",
        window.1 as f64 / window.0,
        window.1 as f64 / window.0 / 2.0,
        window.0,
    );
    println!(
        "flood datagrams: {arrived} arrived; {delivered} delivered by the slow path ({at_core} at the core host), \
         dropped: {unknown_session} unknown_session, {queue_full} up_queue_full, {overflows} socket_overflows, \
         {reasm_fails} reassembly failures"
    );
    println!(
        "100 set-ups without a flood: {:.2} s (p99 {:.1} ms, lacsim run {:.1} s); under it: {:.2} s (p99 {:.1} ms, \
         lacsim run {:.1} s); lnsctl show stats during the flood answered within {:.1} ms",
        setup_secs(&quiet),
        quiet["setup_latency_ms_p99"].as_f64().unwrap_or(0.0),
        quiet_wall.as_secs_f64(),
        setup_secs(&flooded),
        flooded["setup_latency_ms_p99"].as_f64().unwrap_or(0.0),
        flooded_wall.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0,
    );
    println!(
        "control plane VmRSS: {} KiB before, {} KiB during, {} KiB after the flood",
        rss_before, rss_during, rss_after
    );

    // Every flood datagram that arrived is delivered or counted where it
    // was dropped (a little slack for fragments still in reassembly).
    assert!(
        accounted + arrived / 100 + 64 >= arrived && accounted <= arrived + 64,
        "{arrived} arrived, {accounted} accounted for (kernel UDP receive-buffer errors {rcvbuf_errors})\n{before}\n{after}"
    );
    assert!(delivered > 0 && unknown_session > 0, "{after}");
    assert!(unknown_session + queue_full + overflows > 0, "the drops counted: {after}");
    // The control messages have a socket of their own, which the flood
    // does not fill.
    assert_eq!(at(&after, &["dropped", "control_socket_overflows"]), 0, "{after}");
    for rss in [rss_during, rss_after] {
        assert!(rss < rss_before + 200 * 1024, "memory bounded: {rss_before} KiB -> {rss} KiB");
    }
    // The held session's keepalives were served through it all.
    let sessions = lnsctl_json(&cp.socket, &["session", "list"]);
    assert!(
        sessions
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["session_id"].as_u64() == Some(held.session.into()))),
        "the held session is still up: {sessions}"
    );
    assert!(held_sim.alive(), "{:?}", held_sim.output());
    held_sim.kill();
}

#[test]
fn unknown_sessions_and_tunnels_on_the_slow_path_are_dropped_and_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane(pins.path(), 1, &[]).unwrap();
    resolve_neighbours(&lab);
    let sink = Sink::start(&lab.core);
    let (mut sim, held) = hold_one_session(&lab, &cp, 1);
    let tun = "lns-default";
    let raw = RawSocket::open(&lab.lac, "lac0").unwrap();
    let (lac_mac, lns_mac) = (Lab::mac(&lab.lac, "lac0").unwrap(), Lab::mac(&lab.lns, "acc0").unwrap());
    let mut id = 1u16;
    let mut send = |tunnel: u16, session: u16, n: usize| {
        let packet = l2tp_datagram(held.lac.port(), tunnel, session, held.ipv4);
        for _ in 0..n {
            for f in fragments(&packet, id) {
                raw.send(&eth_ip(lns_mac, lac_mac, &f)).unwrap();
            }
            id += 1;
            // Paced: this test is not about floods.
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let counters = || {
        let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
        [
            at(&stats, &["dropped", "unknown_session"]),
            at(&stats, &["dropped", "unknown_tunnel"]),
            at(&stats, &["slow_path", "up_packets"]),
            at(&stats, &["xdp", "pass_fragment"]),
            dev_stat(&lab.lns, tun, "rx_packets"),
            sink.count(),
        ]
    };
    let wait_for = |want: &dyn Fn(&[u64; 6]) -> bool| {
        let t0 = Instant::now();
        loop {
            let c = counters();
            if want(&c) || t0.elapsed() > Duration::from_secs(10) {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // The path works: the session's own fragmented datagrams arrive.
    let n = 20;
    let base = counters();
    send(held.tunnel, held.session, n);
    let c = wait_for(&|c| c[5] >= base[5] + n as u64);
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    assert_eq!(c[3] - base[3], 2 * n as u64, "all went as fragments: {stats}");
    assert_eq!(c[2] - base[2], n as u64, "by the slow path: {stats}");
    assert_eq!(c[4] - base[4], n as u64, "through the TUN device: {stats}");
    assert_eq!(c[5] - base[5], n as u64, "to the core: {stats}");

    // A session id the tunnel does not have, then a tunnel id the LNS
    // does not have: counted, and nothing further.
    let unknown_tunnel = held.tunnel ^ 0x4000;
    for (tunnel, session, counter, what) in [
        (held.tunnel, held.session ^ 0x4000, 0, "unknown_session"),
        (unknown_tunnel, held.session, 1, "unknown_tunnel"),
    ] {
        let base = counters();
        send(tunnel, session, n);
        let c = wait_for(&|c| c[counter] >= base[counter] + n as u64);
        // Time for anything delivered by mistake to show.
        std::thread::sleep(Duration::from_millis(500));
        let c2 = counters();
        let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
        assert_eq!(c[3] - base[3], 2 * n as u64, "{what}: all went as fragments: {stats}");
        assert_eq!(c2[counter] - base[counter], n as u64, "{what}: each dropped and counted: {stats}");
        assert_eq!(c2[2], base[2], "{what}: nothing through the slow path: {stats}");
        assert_eq!(c2[4], base[4], "{what}: nothing to the TUN device: {stats}");
        assert_eq!(c2[5], base[5], "{what}: nothing at the core: {stats}");
    }
    assert!(sim.alive(), "{:?}", sim.output());
    sim.kill();
}
