//! lns-lacsim against the real LNS: lns-dataplane and lns-controlplane in
//! the LNS namespace, lns-lacsim in the LAC namespace, a UDP echo server in
//! the core namespace. Sessions come up with CHAP, PAP or MS-CHAPv2, get
//! addresses from the pool, and their traffic crosses the fast path both
//! ways (the echoes come back through it).

mod common;
use common::{resolve_neighbours, start_dp, Subscribers};

use std::time::{Duration, Instant};

use lns_testlab::{workspace_bin, Lab, PinDir, UdpEcho};

#[test]
fn sessions_come_up_and_traffic_crosses_the_fast_path() {
    let lab = Lab::new(2).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "2", "native");
    let cp = lab.start_controlplane(pins.path(), 200, &["--log", "debug"]).unwrap();
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let runs: &[(&str, u32, u32)] = if std::env::var_os("LACSIM_E2E_DEBUG").is_some() {
        &[("chap", 1, 1)]
    } else {
        &[("chap", 4, 25), ("pap", 1, 10), ("mschapv2", 1, 10)]
    };
    for &(auth, tunnels, per) in runs {
        let s = Subscribers::new(tunnels, per)
            .arg("--auth", auth)
            .traffic("20,200")
            .hold("1.5")
            .arg("--rate", "500")
            .run(&lab);
        eprintln!("{auth}: {s}");
        if std::env::var_os("LACSIM_E2E_DEBUG").is_some() {
            eprintln!("{}", cp.proc.output().1);
        }
        let n = (tunnels * per) as u64;
        assert_eq!(s["sessions_up"].as_u64(), Some(n), "{auth}: {s}");
        assert_eq!(s["sessions_failed"].as_u64(), Some(0), "{auth}: {s}");
        let sent = s["data_sent"].as_u64().unwrap();
        let received = s["data_received"].as_u64().unwrap();
        assert!(sent >= n * 20, "{auth}: every session sent traffic: {s}");
        // The last packet of each session may still be in flight when it hangs up.
        assert!(received + n >= sent, "{auth}: echoes came back through the fast path: {s}");
    }
    assert!(echo.stop() > 0);
    // Every session the LNS wrote is gone once lacsim hung up.
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let t0 = Instant::now();
    while !maps.sessions().unwrap().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "sessions left in the maps: {:?}",
            maps.sessions().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(maps.address_entries(), 0);
    let counts = maps.entry_counts();
    assert_eq!((counts["lns_sub_v4_flat"], counts["lns_sub_v6_flat"]), (0, 0), "flat tables emptied too");
    let c = maps.counters().unwrap();
    // Downstream to the subscribers' own addresses in the declared pools:
    // by pool unit, without the program's lookups.
    assert!(
        c.get(lns_bpf::abi::Counter::RedirectUpstreamCheck) > 0
            && c.get(lns_bpf::abi::Counter::RedirectDownstreamCheck) > 0,
        "{c:?}"
    );
    assert_eq!(c.get(lns_bpf::abi::Counter::RedirectDownstream), 0, "{c:?}");
}

/// The LNS's sessions as lnsctl lists them.
fn lns_sessions(pins: &lns_testlab::PinDir, sock: &std::path::Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args([
            "--bpf-pin-dir",
            pins.path().to_str().unwrap(),
            "--control-socket",
            sock.to_str().unwrap(),
            "--json",
            "session",
            "list",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().cloned().unwrap_or_default()
}

fn wait_forwarding(pins: &lns_testlab::PinDir, sock: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        let rows = lns_sessions(pins, sock);
        if rows.iter().filter(|r| r["dataplane_state"] == "forwarding").count() == n {
            return rows;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "sessions not forwarding: {rows:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_session_killed_with_lnsctl_ends_on_the_lac_too() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane(pins.path(), 10, &[]).unwrap();
    let mut sim = Subscribers::new(1, 5).hold("3").arg("--auth", "chap").spawn(&lab);
    let rows = wait_forwarding(&pins, &cp.socket, 5);
    let victim = &rows[0];
    let (sid, tid) = (victim["session_id"].to_string(), victim["tunnel_id"].to_string());
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args(["--control-socket", cp.socket.to_str().unwrap(), "session", "kill", &sid, "--tunnel", &tid])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let t0 = Instant::now();
    while maps.sessions().unwrap().len() != 4 {
        assert!(t0.elapsed() < Duration::from_secs(5), "killed session still in the maps");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = {
        let t0 = Instant::now();
        while sim.alive() {
            assert!(t0.elapsed() < Duration::from_secs(20), "lacsim did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
        sim.stop(1)
    };
    assert!(status.is_none_or(|s| s.success()));
    let (out, err) = sim.output();
    let s: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(s["sessions_up"].as_u64(), Some(5), "{out} {err}");
    assert_eq!(s["sessions_ended_by_lns"].as_u64(), Some(1), "the LAC saw the kill: {out}");
}

#[test]
fn a_silent_lac_is_detected_and_its_sessions_removed() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab
        .start_controlplane(
            pins.path(),
            10,
            &["--hello-interval", "1s", "--retransmit-timeout", "200ms", "--max-retransmissions", "2"],
        )
        .unwrap();
    let mut sim = Subscribers::new(2, 3).hold("60").arg("--auth", "chap").spawn(&lab);
    wait_forwarding(&pins, &cp.socket, 6);
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(maps.sessions().unwrap().len(), 6);
    // The LAC dies without a word: only HELLO finds out.
    sim.kill();
    let t0 = Instant::now();
    while !maps.sessions().unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(15), "a silent LAC's sessions stay in the maps");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(maps.address_entries(), 0);
    let counts = maps.entry_counts();
    assert_eq!((counts["lns_sub_v4_flat"], counts["lns_sub_v6_flat"]), (0, 0), "flat tables emptied too");
    assert!(lns_sessions(&pins, &cp.socket).is_empty());
}

#[test]
fn trafgen_replays_the_established_sessions_through_the_fast_path() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "native");
    let cp = lab.start_controlplane(pins.path(), 20, &[]).unwrap();
    resolve_neighbours(&lab);
    let cfg = std::env::temp_dir().join(format!("{}.trafgen", lns_testlab::unique_name("tg")));
    let mut sim = Subscribers::new(2, 10)
        .hold("6")
        .traffic("0,100")
        .arg("--trafgen-out", cfg.to_str().unwrap())
        .arg("--trafgen-dev", "lac0")
        .arg("--auth", "chap")
        .spawn(&lab);
    wait_forwarding(&pins, &cp.socket, 20);
    let t0 = Instant::now();
    while !cfg.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no trafgen configuration written: {:?}",
            sim.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(text.matches('{').count(), 20, "one frame per session");
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let before = maps.counters().unwrap();
    lab.lac
        .exec(
            "trafgen",
            &[
                "--dev",
                "lac0",
                "--conf",
                cfg.to_str().unwrap(),
                "--cpus",
                "1",
                "--no-sock-mem",
                "-q",
                "-n",
                "2000",
            ],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let d = maps.counters().unwrap().since(&before);
    use lns_bpf::abi::Counter;
    // The control plane puts every session at its direct slot with only its
    // own addresses: fast slots, whose frames the workers check.
    assert_eq!(d.get(Counter::RedirectUpstreamCheck), 2000, "every replayed frame took the fast path: {d:?}");
    assert_eq!(
        d.get(Counter::DropSpoofed) + d.get(Counter::DropUnknownSession) + d.get(Counter::DropPeerMismatch),
        0
    );
    let _ = std::fs::remove_file(&cfg);
    sim.stop(10);
}

#[test]
fn session_and_idle_timeouts_end_sessions_from_the_lns() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "native");
    resolve_neighbours(&lab);
    let _echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let run = |ppp: &str, traffic: &str| -> serde_json::Value {
        let cp = lab.start_controlplane_with(pins.path(), 10, ppp, &[]).unwrap();
        let mut round = Subscribers::new(1, 3).hold("4.5");
        if !traffic.is_empty() {
            round = round.traffic(traffic);
        }
        let s = round.run(&lab);
        drop(cp);
        s
    };
    // Session-Timeout: traffic or not, the LNS hangs up after 2 s.
    let s = run("session_timeout = \"2s\"", "20,100");
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_ended_by_lns"].as_u64()), (Some(3), Some(3)), "{s}");
    // Idle timeout: traffic through the fast path keeps sessions up...
    let s = run("idle_timeout = \"2s\"", "20,100");
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_ended_by_lns"].as_u64()), (Some(3), Some(0)), "{s}");
    // ... and silence ends them.
    let s = run("idle_timeout = \"2s\"", "");
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_ended_by_lns"].as_u64()), (Some(3), Some(3)), "{s}");
}

/// `lnsctl show stats` as JSON.
fn lns_stats(sock: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args(["--control-socket", sock.to_str().unwrap(), "--json", "show", "stats"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Neighbours the fast path needs resolved before traffic, IPv6 included
/// (a miss sends the packet through the stack, which these tests forbid).
fn resolve_neighbours_v6(lab: &Lab) {
    resolve_neighbours(lab);
    lab.lns.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::7"]).unwrap();
    lab.core.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::1"]).unwrap();
}

/// After the LAC hung up: no session entry, key, address or prefix left in
/// the maps, no address or prefix held by the control plane.
fn assert_all_released(pins: &PinDir, sock: &std::path::Path) {
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let t0 = Instant::now();
    loop {
        let counts = maps.entry_counts();
        let stats = lns_stats(sock);
        let held = (
            stats["slots_in_use"].as_u64(),
            stats["addresses_in_use"].as_u64(),
            stats["ipv6_prefixes_in_use"].as_u64(),
        );
        if counts.values().all(|n| *n == 0) && held == (Some(0), Some(0), Some(0)) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "left behind: maps {counts:?}, control plane {held:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The issue's scenario: 1,000 CHAP subscribers over 10 tunnels, IPv6 only
/// (the IPv4 documentation ranges cannot address 1,000). Each gets a /64 by
/// Router Advertisement, forms its address, and sends UDP to the core
/// through the fast path; every one of them must get replies back through
/// it. Then the LAC hangs up and nothing may be left.
#[test]
fn a_thousand_ipv6_sessions_over_ten_tunnels_carry_traffic_and_leave_nothing() {
    let t_start = Instant::now();
    let lab = Lab::new(2).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "2", "native");
    let log = std::env::var("LACSIM_E2E_LOG").unwrap_or_else(|_| "warn".into());
    let cp = lab.start_controlplane(pins.path(), 1000, &["--log", &log]).unwrap();
    resolve_neighbours_v6(&lab);
    let echo = UdpEcho::start(&lab.core, "[2001:db8:c0::7]:7").unwrap();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let before = maps.counters().unwrap();
    let rate = std::env::var("LACSIM_E2E_RATE").unwrap_or_else(|_| "1000".into());
    let s = Subscribers::new(10, 100)
        .arg("--auth", "chap")
        .arg("--ncp", "ipv6")
        .traffic("4,100")
        .hold("2")
        .arg("--rate", &rate)
        .arg("--timeout", "60")
        .run(&lab);
    let d = maps.counters().unwrap().since(&before);
    eprintln!("lacsim: {s}\nxdp: {d:?}");
    if std::env::var_os("LACSIM_E2E_LOG").is_some() {
        std::fs::write("/tmp/lacsim-e2e-cp.log", cp.proc.output().1).unwrap();
    }
    assert_eq!(s["sessions_up"].as_u64(), Some(1000), "{s}");
    assert_eq!(s["ipv6_sessions_up"].as_u64(), Some(1000), "{s}");
    assert_eq!(s["sessions_failed"].as_u64(), Some(0), "{s}");
    assert_eq!(s["sessions_ended_by_lns"].as_u64(), Some(0), "{s}");
    // Per session: every one sent and had replies.
    assert_eq!(s["sessions_answered"].as_u64(), Some(1000), "{s}");
    assert_eq!(s["sessions_unanswered"].as_array().map(Vec::len), Some(0), "{s}");
    let (sent, received) = (s["data_sent_v6"].as_u64().unwrap(), s["data_received_v6"].as_u64().unwrap());
    assert!(sent >= 1000 * 4, "{s}");
    assert_eq!(s["data_sent"].as_u64(), Some(sent), "IPv6 only: {s}");
    // Through AF_XDP both ways: every upstream packet was redirected by the
    // program (and so was every echo), none went through the stack.
    use lns_bpf::abi::Counter;
    assert!(d.get(Counter::RedirectUpstreamCheck) >= sent, "{d:?}");
    // The /64s the control plane hands out lie in the declared /48: by
    // pool unit.
    assert!(d.get(Counter::RedirectDownstreamCheck) >= received, "{d:?}");
    assert_eq!(d.get(Counter::PassNoNeighbour) + d.get(Counter::PassNotForwarded), 0, "{d:?}");
    assert_eq!(d.get(Counter::DropSpoofed), 0, "{d:?}");
    // The subscribers wait up to a second before soliciting (RFC 4861
    // §6.3.7) and the LNS advertises when IPv6CP opens: few solicit at
    // all, only those whose delay was shorter than the advertisement's
    // way.
    let solicited = d.get(Counter::PassIpv6LinkLocal) + d.get(Counter::PassSessionNotForwarding);
    assert!(solicited < 100, "{solicited} of 1,000 solicited: {d:?}");
    assert!(echo.stop() >= received);
    assert_all_released(&pins, &cp.socket);
    let stats = lns_stats(&cp.socket);
    assert_eq!(stats["sessions_up_total"].as_u64(), Some(1000), "{stats}");
    assert_eq!(stats["dropped"]["ipv6_not_nd"].as_u64().unwrap_or(0), 0, "{stats}");
    // Each session sat at its direct slot: the program found it without a
    // hash lookup.
    assert_eq!(stats["slots_off_direct"].as_u64(), Some(0), "{stats}");
    eprintln!("1,000 IPv6 sessions, traffic and teardown in {:.1} s", t_start.elapsed().as_secs_f64());
}

/// Dual stack: IPCP and IPv6CP on one session, traffic in both families
/// both ways through the fast path.
#[test]
fn a_dual_stack_session_carries_ipv4_and_ipv6() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "native");
    let cp = lab.start_controlplane(pins.path(), 10, &[]).unwrap();
    resolve_neighbours_v6(&lab);
    let _echo4 = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let _echo6 = UdpEcho::start(&lab.core, "[2001:db8:c0::7]:7").unwrap();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let before = maps.counters().unwrap();
    let s = Subscribers::new(1, 3).arg("--ncp", "dual").traffic("20,200").hold("1.5").run(&lab);
    let d = maps.counters().unwrap().since(&before);
    eprintln!("{s}\n{d:?}");
    assert_eq!((s["sessions_up"].as_u64(), s["ipv6_sessions_up"].as_u64()), (Some(3), Some(3)), "{s}");
    assert_eq!(s["sessions_answered"].as_u64(), Some(3), "both families answered, per session: {s}");
    let (sent, received) = (s["data_sent"].as_u64().unwrap(), s["data_received"].as_u64().unwrap());
    let (sent6, received6) = (s["data_sent_v6"].as_u64().unwrap(), s["data_received_v6"].as_u64().unwrap());
    assert!(sent6 >= 3 * 20 && sent - sent6 >= 3 * 20, "{s}");
    assert!(received6 > 0 && received - received6 > 0, "{s}");
    // The progress line's counts, kept as things happen, agree with the
    // summary's sums over the subscribers.
    let p = &s["progress"];
    assert_eq!((p["data_sent"].as_u64(), p["data_received"].as_u64()), (Some(sent), Some(received)), "{s}");
    assert_eq!((p["sessions_up"].as_u64(), p["sessions_pending"].as_u64()), (Some(3), Some(0)), "{s}");
    use lns_bpf::abi::Counter;
    assert!(d.get(Counter::RedirectUpstreamCheck) >= sent, "{d:?}");
    assert!(d.get(Counter::RedirectDownstreamCheck) >= received, "{d:?}");
    assert_all_released(&pins, &cp.socket);
}

/// An IPv4-only subscriber (lacsim's default) against an LNS that offers
/// IPv6CP: it rejects IPv6CP, keeps IPv4, and holds no prefix.
#[test]
fn an_ipv4_only_subscriber_holds_no_prefix() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane(pins.path(), 10, &[]).unwrap();
    let mut sim = Subscribers::new(1, 2).hold("2").arg("--auth", "chap").spawn(&lab);
    let rows = wait_forwarding(&pins, &cp.socket, 2);
    assert!(rows.iter().all(|r| r["ipv4"].is_string() && r["ipv6_prefix"].is_null()), "{rows:?}");
    assert_eq!(lns_stats(&cp.socket)["ipv6_prefixes_in_use"].as_u64(), Some(0));
    let t0 = Instant::now();
    while sim.alive() {
        assert!(t0.elapsed() < Duration::from_secs(20), "lacsim did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_all_released(&pins, &cp.socket);
}

/// An exhausted IPv6 pool refuses IPv6CP: an IPv6-only subscriber is ended
/// (no network protocol left), the others keep their prefixes.
#[test]
fn an_exhausted_ipv6_pool_refuses_the_next_subscriber() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    // Two /64s in the pool the LNS hands out.
    let tiny = "default_ipv6_pool = \"tiny\"\n[[ipv6_pool]]\nname = \"tiny\"\nprefix = \"2001:db8:1ff::/63\"\nlength = 64\n";
    let cp = lab.start_controlplane_with(pins.path(), 10, tiny, &[]).unwrap();
    let s = Subscribers::new(1, 3).arg("--rate", "5").arg("--ncp", "ipv6").hold("0.5").run(&lab);
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()), (Some(2), Some(1)), "{s}");
    let stats = lns_stats(&cp.socket);
    assert_eq!(stats["dropped"]["ipv6_no_prefix"].as_u64(), Some(1), "{stats}");
    assert_all_released(&pins, &cp.socket);
}

/// One configuration file for both processes: lns-dataplane takes its
/// interfaces and modes from `[dataplane]` and its pool units from the
/// control plane's `[[pool]]` and `[[ipv6_pool]]` (no `--pool`), and
/// lns-controlplane reads the same file. Downstream packets to the
/// subscribers then go to the workers by pool unit.
#[test]
fn both_processes_read_one_file_and_the_pools_are_declared_once() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let dir = std::env::temp_dir().join(lns_testlab::unique_name("lnsconf"));
    std::fs::create_dir_all(&dir).unwrap();
    let users: String =
        (1..=5).map(|i| format!("[[user]]\nname = \"user{i}\"\npassword = \"pw{i}\"\n")).collect();
    std::fs::write(dir.join("users.toml"), users).unwrap();
    let (conf, sock) = (dir.join("lns.toml"), dir.join("ctl.sock"));
    std::fs::write(
        &conf,
        format!(
            r#"listen = "0.0.0.0:1701"
bpf_pin_dir = "{pins}"
control_socket = "{sock}"

[[peer]]
network = "192.0.2.2"

[ppp]
users_file = "{users}"
local_ipv4 = "203.0.113.1"

[dataplane]
access_if = "acc0"
core_if = "core0"
queues = 1
xdp_mode = "native"
bind = "copy"
max_sessions = 4096
stats_interval = 0

[[pool]]
name = "default"
ranges = ["198.51.100.0/25", "198.51.100.128/25"]

[[ipv6_pool]]
name = "default"
prefix = "2001:db8:100::/48"
length = 64
"#,
            pins = pins.path().display(),
            sock = sock.display(),
            users = dir.join("users.toml").display(),
        ),
    )
    .unwrap();
    let conf_arg = conf.to_str().unwrap();
    let dp = lab.start_dataplane_args(&["--config", conf_arg]).unwrap();
    let mut cp = lns_testlab::NsProcess::spawn(
        &lab.lns,
        &workspace_bin("lns-controlplane").unwrap(),
        &["--config", conf_arg],
    )
    .unwrap();
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(cp.alive() && t0.elapsed() < Duration::from_secs(10), "{:?}", cp.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = dp.output().1;
    assert!(
        started.contains("pools: 198.51.100.0/24,32 2001:db8:100::/48,64 (from "),
        "the file's pools, the two /25s as one /24: {started}"
    );
    resolve_neighbours(&lab);
    let _echo4 = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let _echo6 = UdpEcho::start(&lab.core, "[2001:db8:c0::7]:7").unwrap();
    lab.lns.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::7"]).unwrap();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let before = maps.counters().unwrap();
    let s = Subscribers::new(1, 5).arg("--ncp", "dual").traffic("20,200").hold("1.5").run(&lab);
    let d = maps.counters().unwrap().since(&before);
    eprintln!("{s}\n{d:?}");
    assert_eq!((s["sessions_up"].as_u64(), s["ipv6_sessions_up"].as_u64()), (Some(5), Some(5)), "{s}");
    let received = s["data_received"].as_u64().unwrap();
    assert!(received > 0, "{s}");
    use lns_bpf::abi::Counter;
    // Every echo to a subscriber, IPv4 and IPv6, by its pool unit: the
    // file's pools reached the program.
    assert!(d.get(Counter::RedirectDownstreamCheck) >= received, "{d:?}");
    assert_eq!(d.get(Counter::RedirectDownstream), 0, "{d:?}");
    cp.stop(5);
    drop(dp);
    let _ = std::fs::remove_dir_all(&dir);
}
