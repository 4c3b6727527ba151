//! The real `lns-controlplane` process over real UDP, in a namespace lab,
//! driven by the project's own L2TP endpoint as the LAC: sessions enter the
//! data plane's pinned maps on ICCN and leave on CDN (either side), StopCCN
//! (either side), retransmission timeout, `lnsctl ... kill` and SIGTERM.

mod common;

use std::time::Duration;

use common::{wait_for, Lac, Lns};
use lns_bpf::abi::{Session, SessionKey, SessionState};
use lns_bpf::{LoadOptions, Maps, Steering};
use lns_controlplane::l2tp::avp::{cdn, stopccn};
use lns_controlplane::l2tp::{Event, SessionDownCause, SessionId, SessionInfo, TunnelDownReason, TunnelId};
use lns_testlab::{Lab, PinDir};

fn key(t: TunnelId, s: SessionId) -> SessionKey {
    SessionKey { tunnel_id: t.0, session_id: s.0 }
}

fn entry(maps: &Maps, t: TunnelId, s: SessionId) -> Option<Session> {
    let i = maps.find_session(key(t, s)).expect("lookup")?;
    maps.read_session(i).ok()
}

/// Waits (pumping the LAC, which must ack) until the entry is present or gone.
fn wait_entry(lac: &mut Lac, maps: &Maps, t: TunnelId, s: SessionId, present: bool) -> bool {
    lac.pump_until(10, |_| entry(maps, t, s).is_some() == present)
}

fn load(pins: &PinDir) -> Steering {
    Steering::load(&LoadOptions { pin_dir: Some(pins.path().into()), max_sessions: 64, ..Default::default() })
        .expect("load the steering program")
}

#[test]
fn sessions_enter_and_leave_the_maps() {
    let lab = Lab::new(1).expect("lab");
    let pins = PinDir::new().expect("pin dir");
    let steering = load(&pins);
    let maps = steering.maps();
    let pin_dir = pins.path().to_str().expect("utf-8");
    let mut lns = Lns::start(&lab.lns, &["--bpf-pin-dir", pin_dir, "--peer", "192.0.2.0/24"]);
    let mut lac = Lac::new(&lab.lac, "192.0.2.2:0", None, "lac1");

    let (t1, lns_t1) = lac.connect();
    let seq_call = SessionInfo {
        sequencing_required: true,
        calling_number: Some(b"0123456".to_vec()),
        tx_connect_speed: Some(10_000_000),
        ..Default::default()
    };
    let (a, lns_a) = lac.call(t1, seq_call);
    let (b, lns_b) = lac.call(t1, SessionInfo::default());
    assert!(wait_entry(&mut lac, maps, lns_t1, lns_a, true), "session A written on ICCN");
    assert!(wait_entry(&mut lac, maps, lns_t1, lns_b, true), "session B written on ICCN");

    // The entries say what the data plane needs to reach the LAC.
    let ea = entry(maps, lns_t1, lns_a).expect("A");
    assert_eq!(ea.session_state(), Some(SessionState::Control), "PPP negotiates first");
    assert_eq!((ea.peer_tunnel_id, ea.peer_session_id), (t1.0, a.0));
    assert_eq!(ea.peer(), lac.local_addr());
    assert_eq!(ea.local().to_string(), "192.0.2.1:1701");
    assert_eq!(ea.flags & Session::SEQUENCING, Session::SEQUENCING);
    assert_eq!(ea.access_ifindex, lab.lns.ifindex("acc0").expect("ifindex"));
    assert!(ea.generation >= 1);
    let eb = entry(maps, lns_t1, lns_b).expect("B");
    assert_eq!(eb.flags & Session::SEQUENCING, 0);
    assert_eq!(eb.peer_session_id, b.0);

    // The control socket shows them, through lnsctl too.
    let rows = lns.sessions();
    assert_eq!(rows.len(), 2);
    let row_a = rows.iter().find(|r| r.session_id == lns_a.0).expect("A listed");
    assert_eq!(row_a.dataplane_state.as_deref(), Some("control"));
    assert_eq!(row_a.calling_number.as_deref(), Some("0123456"));
    assert_eq!(row_a.slot, maps.find_session(key(lns_t1, lns_a)).expect("lookup"));
    let out = lns.lnsctl(&["--json", "tunnel", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tunnels: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(tunnels[0]["tunnel_id"], lns_t1.0);
    assert_eq!(tunnels[0]["state"], "established");
    assert_eq!(tunnels[0]["peer_host_name"], "lac1");
    assert_eq!(tunnels[0]["sessions"], 2);
    let human = lns.lnsctl(&["session", "list"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains(&format!("{}/{}", lns_t1.0, lns_a.0)) && text.contains("control"), "{text}");

    // PPP from the subscriber (an LCP Configure-Request) reaches the
    // session's hook in the control plane.
    lac.send_ppp(t1, a, &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4]);
    assert!(
        lac.pump_until(5, |_| lns.sessions().iter().any(|r| r.session_id == lns_a.0 && r.ppp_frames_rx == 1))
    );

    // CDN from the LAC removes A; B stays.
    let mark = lac.events.len();
    lac.hang_up(t1, a, cdn::LOST_CARRIER);
    assert!(wait_entry(&mut lac, maps, lns_t1, lns_a, false), "A gone after the LAC's CDN");
    assert!(entry(maps, lns_t1, lns_b).is_some());

    // lnsctl session kill: the LAC gets a CDN, B leaves the maps.
    let out = lns.lnsctl(&["session", "kill", &lns_b.0.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lac.pump_until(5, |l| l.saw(mark, t1, |e| matches!(e,
        Event::SessionDown { session_id, cause: SessionDownCause { by_peer: true, result: Some(r), .. } }
            if *session_id == b && r.result == cdn::ADMINISTRATIVE))));
    assert!(wait_entry(&mut lac, maps, lns_t1, lns_b, false), "B gone after session kill");
    let again = lns.lnsctl(&["session", "kill", &lns_b.0.to_string()]);
    assert!(!again.status.success(), "killing a gone session is an error");

    // lnsctl tunnel kill: StopCCN to the LAC, C goes with the tunnel.
    let (_c, lns_c) = lac.call(t1, SessionInfo::default());
    assert!(wait_entry(&mut lac, maps, lns_t1, lns_c, true));
    let mark = lac.events.len();
    let out = lns.lnsctl(&["tunnel", "kill", &lns_t1.0.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lac.pump_until(5, |l| l.saw(mark, t1, |e| matches!(e, Event::TunnelDown {
        reason: TunnelDownReason::PeerStopCcn(Some(r)) } if r.result == stopccn::GENERAL_REQUEST))));
    assert!(wait_entry(&mut lac, maps, lns_t1, lns_c, false), "C gone with its tunnel");

    // StopCCN from the LAC.
    let (t2, lns_t2) = lac.connect();
    let (_d, lns_d) = lac.call(t2, SessionInfo::default());
    assert!(wait_entry(&mut lac, maps, lns_t2, lns_d, true));
    lac.stop_tunnel(t2);
    assert!(wait_entry(&mut lac, maps, lns_t2, lns_d, false), "D gone after the LAC's StopCCN");

    // SIGTERM: StopCCN to every LAC, every entry removed, socket gone.
    let (t3, lns_t3) = lac.connect();
    let (_e, lns_e) = lac.call(t3, SessionInfo::default());
    let (_f, lns_f) = lac.call(t3, SessionInfo::default());
    assert!(wait_entry(&mut lac, maps, lns_t3, lns_f, true));
    assert!(entry(maps, lns_t3, lns_e).is_some());
    let stats = lns.stats();
    assert_eq!((stats.sessions, stats.slots_in_use), (2, 2));
    let established: Vec<u16> =
        lns.tunnels().iter().filter(|t| t.state == "established").map(|t| t.tunnel_id).collect();
    assert_eq!(established, vec![lns_t3.0]);
    assert_eq!(stats.sessions_up_total, 6);
    assert!(stats.dataplane && stats.xdp.is_some());
    let sock = lns.sock();
    let mark = lac.events.len();
    // The LAC must ack the StopCCN while the LNS waits for it.
    let stopper = std::thread::spawn(move || {
        let status = lns.proc.stop(10);
        (status, lns)
    });
    assert!(lac.pump_until(10, |l| l.saw(mark, t3, |e| matches!(e, Event::TunnelDown {
        reason: TunnelDownReason::PeerStopCcn(Some(r)) } if r.result == stopccn::SHUTTING_DOWN))));
    let (status, lns) = stopper.join().expect("stopper");
    assert!(status.is_some_and(|s| s.success()), "clean exit: {}", lns.log());
    assert_eq!(maps.sessions().expect("sessions"), vec![], "no entry left behind");
    assert_eq!(maps.address_entries(), 0);
    assert!(!sock.exists(), "control socket removed");
    let log = lns.log();
    assert!(log.contains("session up") && log.contains("tunnel_id="), "spans in the log: {log}");
}

#[test]
fn silent_lac_times_out_and_its_sessions_leave() {
    let lab = Lab::new(1).expect("lab");
    let pins = PinDir::new().expect("pin dir");
    let steering = load(&pins);
    let maps = steering.maps();
    let lns = Lns::start(
        &lab.lns,
        &[
            "--bpf-pin-dir",
            pins.path().to_str().expect("utf-8"),
            "--peer",
            "192.0.2.2",
            "--hello-interval",
            "300ms",
            "--retransmit-timeout",
            "100ms",
            "--max-retransmissions",
            "2",
        ],
    );
    let mut lac = Lac::new(&lab.lac, "192.0.2.2:0", None, "lac1");
    let (t, lns_t) = lac.connect();
    let (_s, lns_s) = lac.call(t, SessionInfo::default());
    assert!(wait_entry(&mut lac, maps, lns_t, lns_s, true));
    // Keep answering HELLOs for a while: the tunnel stays.
    lac.pump(Duration::from_millis(800));
    assert!(entry(maps, lns_t, lns_s).is_some(), "a LAC that acks keeps its tunnel");
    // Then the LAC goes silent: HELLO is not acknowledged, retransmissions
    // run out (§5.8) and the tunnel and its session are gone.
    drop(lac);
    assert!(wait_for(10, || entry(maps, lns_t, lns_s).is_none()), "session left the maps after the timeout");
    let stats = lns.stats();
    assert_eq!((stats.tunnels, stats.sessions, stats.slots_in_use), (0, 0, 0));
    assert_eq!(stats.tunnels_down_total, 1);
    assert!(lns.log().contains("retransmit limit"), "{}", lns.log());
}

#[test]
fn runs_without_a_data_plane_only_when_told() {
    let lab = Lab::new(1).expect("lab");
    // No maps and no --no-dataplane: a clear error, not a silent start.
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lns-controlplane"))
        .args(["--bpf-pin-dir", "/sys/fs/bpf/lns-no-such-instance", "--peer", "192.0.2.2"])
        .arg("--control-socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-dataplane") && err.contains("lns-no-such-instance"), "{err}");

    // From a config file: allow-list with a secret (tunnel authentication).
    let conf = dir.path().join("lns.toml");
    std::fs::write(
        &conf,
        "no_dataplane = true\nhost_name = \"lns-test\"\n\
         [[peer]]\nnetwork = \"192.0.2.2/32\"\nsecret = \"s3cret\"\nhost_name = \"lac1\"\n",
    )
    .expect("write config");
    let lns = Lns::start(&lab.lns, &["--config", conf.to_str().expect("utf-8")]);

    // The right secret: up, and the session lives in the control plane only.
    let mut lac = Lac::new(&lab.lac, "192.0.2.2:0", Some(b"s3cret"), "lac1");
    let (t, lns_t) = lac.connect();
    assert_eq!(lac.ep.tunnel(t).expect("tunnel").peer_host_name(), b"lns-test");
    let (_s, lns_s) = lac.call(t, SessionInfo::default());
    assert!(lac.pump_until(5, |_| lns.sessions().len() == 1));
    let row = &lns.sessions()[0];
    assert_eq!((row.tunnel_id, row.session_id, row.slot), (lns_t.0, lns_s.0, None));
    assert!(!lns.stats().dataplane);

    // A wrong secret: our challenge response does not verify at the LAC.
    let mut bad = Lac::new(&lab.lac, "192.0.2.2:0", Some(b"guess"), "lac1");
    let tid = bad.ep.connect(std::time::Instant::now(), bad.lns).expect("connect");
    assert!(bad.pump_until(5, |l| l
        .saw(0, tid, |e| matches!(e, Event::TunnelDown { reason: TunnelDownReason::AuthenticationFailed }))));
    assert!(!bad.saw(0, tid, |e| matches!(e, Event::TunnelUp { .. })));

    // The wrong host name, or an address not on the list: no answer at all.
    let mut stranger = Lac::new(&lab.lac, "192.0.2.2:0", Some(b"s3cret"), "lac9");
    let tid = stranger.ep.connect(std::time::Instant::now(), stranger.lns).expect("connect");
    stranger.pump(Duration::from_millis(300));
    assert!(!stranger.saw(0, tid, |e| matches!(e, Event::TunnelUp { .. })));
    let stats = lns.stats();
    assert!(stats.dropped.get("not_allowed").copied().unwrap_or(0) >= 1, "{stats:?}");
    assert_eq!(stats.tunnels_up_total, 1);

    // The human stats output names the counters.
    let out = lns.lnsctl(&["show", "stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sessions_up_total") && text.contains("dropped.not_allowed"), "{text}");
    drop(lac);
}

#[test]
fn a_restart_after_sigkill_removes_what_the_dead_process_left() {
    let lab = Lab::new(1).expect("lab");
    let pins = PinDir::new().expect("pin dir");
    let steering = load(&pins);
    let maps = steering.maps();
    let pin_dir = pins.path().to_str().expect("utf-8");
    // An operator's static session, which no control plane may touch.
    let mut static_s = Session {
        state: SessionState::Forwarding as u32,
        local_tunnel_id: 7,
        local_session_id: 7,
        ..Default::default()
    };
    static_s.set_peer("192.0.2.9:1701".parse().expect("addr"));
    maps.install_session(40, &static_s).expect("static session");

    let mut lns = Lns::start(&lab.lns, &["--bpf-pin-dir", pin_dir, "--peer", "192.0.2.0/24"]);
    let mut lac = Lac::new(&lab.lac, "192.0.2.2:0", None, "lac1");
    let (t, lns_t) = lac.connect();
    let (_s, lns_s) = lac.call(t, SessionInfo::default());
    assert!(wait_entry(&mut lac, maps, lns_t, lns_s, true));
    assert_eq!(entry(maps, lns_t, lns_s).expect("entry").owner, Session::OWNER_CONTROL_PLANE);

    // SIGKILL: no chance to clean up.
    lns.proc.kill();
    assert!(entry(maps, lns_t, lns_s).is_some(), "left behind by the dead process");

    let _lns2 = Lns::start(&lab.lns, &["--bpf-pin-dir", pin_dir, "--peer", "192.0.2.0/24"]);
    assert!(entry(maps, lns_t, lns_s).is_none(), "reclaimed at start");
    let left = maps.sessions().expect("sessions");
    assert_eq!(left.len(), 1, "the static session stays: {left:?}");
    assert_eq!(left[0].1.local_session_id, 7);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let lab = Lab::new(1).expect("lab");
    let lns = Lns::start(&lab.lns, &["--no-dataplane", "--peer", "192.0.2.0/24", "--log-format", "json"]);
    let log = lns.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["fields"]["message"] == "lns-controlplane ready" && v["level"] == "INFO"),
        "{log}"
    );
}

#[test]
fn without_its_tun_device_the_lns_runs_on_the_fast_path_alone() {
    let lab = Lab::new(1).expect("lab");
    // `lo` exists and is no TUN device: creating it fails.
    let lns = Lns::start(&lab.lns, &["--no-dataplane", "--peer", "192.0.2.0/24", "--tun-name", "lo"]);
    let log = lns.log();
    assert!(log.contains("slow path off"), "{log}");
    assert!(!log.contains("subscriber routes into the TUN device"), "{log}");
}
