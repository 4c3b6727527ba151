//! A control plane started with `--keep-sessions` restarts under its
//! subscribers: SIGTERM commits its last changes to its session store,
//! closes it and leaves the data plane's entries, the next start takes
//! every session back, the LAC and the subscribers notice nothing (no CDN,
//! no StopCCN, echoes answered, traffic carried throughout), and a new
//! subscriber comes up at once. `lnsctl shutdown` still ends everything
//! and empties the store; without `--keep-sessions` SIGTERM does the same
//! and no store is kept. (`kill -9` is crash.rs.)

mod common;
use common::{forwarding, resolve_neighbours, start_dp, stats, summary, wait_for, Subscribers};

use std::path::Path;

use lns_controlplane::daemon::store::{Store, FILE};
use lns_controlplane::l2tp::{SessionId, TunnelId};
use lns_controlplane::subscriber::{Changes, RecordKey, SessionKey};
use lns_testlab::{workspace_bin, Lab, PinDir, UdpEcho};

#[test]
fn a_restart_keeps_every_session() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_string();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let keep = ["--keep-sessions", "--state-dir", state_dir.as_str()];
    let mut cp = lab.start_controlplane(pins.path(), 20, &keep).unwrap();
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let mut resident = Subscribers::new(1, 5).hold("12").traffic("100,200").spawn(&lab);
    assert!(wait_for(20, || forwarding(&cp.socket) == 5), "5 sessions up: {}", stats(&cp.socket));

    // SIGTERM: the state is written down, the entries stay.
    let status = cp.proc.stop(10).expect("stopped");
    assert!(status.success(), "{:?}", cp.proc.output());
    let log = cp.proc.output().1;
    assert!(log.contains("its sessions stay in the data plane"), "{log}");
    let store = state.path().join(FILE);
    assert_eq!(Store::session_keys(&store).unwrap().len(), 5, "the store holds the five");
    assert!(wal_folded(state.path()), "closed: the log folded into the database");
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(maps.sessions().unwrap().len(), 5, "the entries stay while no control plane runs");
    // A DHCPv6 address routed to one of them after the last commit (the
    // store never heard of it): the next start takes the route out.
    let (slot, _) = maps.sessions().unwrap()[0];
    let stray: std::net::Ipv6Addr = "2001:db8:4ff::9".parse().unwrap();
    maps.add_route_v6(stray, 128, slot).unwrap();
    assert_eq!(maps.host_routes_v6().unwrap(), vec![(stray, slot)]);

    // The next start takes them back.
    let cp2 = lab.start_controlplane(pins.path(), 20, &keep).unwrap();
    let s = stats(&cp2.socket);
    assert_eq!((s["sessions_restored"].as_u64(), s["sessions"].as_u64()), (Some(5), Some(5)), "{s}");
    assert_eq!(s["sessions_reconciled"].as_u64(), Some(0), "{s}");
    assert_eq!(s["sessions_reconciled_by"]["address_route_not_in_store"].as_u64(), Some(1), "{s}");
    assert!(maps.host_routes_v6().unwrap().is_empty(), "the stray /128 is gone");
    // The store goes on being written as the sessions change.
    assert_eq!(Store::session_keys(&store).unwrap().len(), 5);
    // A new subscriber right after.
    let mut fresh = Subscribers::new(1, 1).hold("1").spawn(&lab);
    if !wait_for(20, || !fresh.alive()) {
        panic!("a new subscriber after the restart: {:?}\n{}", fresh.output(), cp2.proc.output().1);
    }
    let f = summary(&mut fresh, 1);
    assert_eq!(f["sessions_up"].as_u64(), Some(1), "{f}");

    // The resident subscribers never noticed.
    if !wait_for(40, || !resident.alive()) {
        let log = cp2.proc.output().1;
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!("the resident subscribers did not finish: {:?}\n{}", resident.output(), tail.join("\n"));
    }
    let r = summary(&mut resident, 1);
    assert_eq!(r["sessions_up"].as_u64(), Some(5), "{r}");
    assert_eq!(r["sessions_ended_by_lns"].as_u64(), Some(0), "no CDN, no Terminate-Request: {r}");
    let (sent, received) = (r["data_sent"].as_u64().unwrap(), r["data_received"].as_u64().unwrap());
    assert!(sent > 0 && received + 5 >= sent, "traffic carried throughout: {r}");
    assert!(echo.stop() > 0);
    // They hung up: the new control plane saw their CDNs.
    assert!(wait_for(10, || maps.sessions().unwrap().is_empty()), "entries left");
    let s = stats(&cp2.socket);
    assert_eq!(s["sessions"].as_u64(), Some(0), "{s}");
    assert_eq!(s["addresses_in_use"].as_u64(), Some(0), "{s}");
    assert!(wait_for(10, || Store::session_keys(&store).unwrap().is_empty()), "records left");
}

/// The write-ahead log of a store closed well is empty (or gone).
fn wal_folded(state: &Path) -> bool {
    std::fs::metadata(state.join(format!("{FILE}-wal"))).map_or(true, |m| m.len() == 0)
}

#[test]
fn lnsctl_shutdown_ends_every_session_even_when_sigterm_would_keep_them() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_string();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let mut cp = lab
        .start_controlplane(pins.path(), 10, &["--keep-sessions", "--state-dir", state_dir.as_str()])
        .unwrap();
    let mut sim = Subscribers::new(1, 3).hold("5").spawn(&lab);
    assert!(wait_for(20, || forwarding(&cp.socket) == 3), "3 sessions up: {}", stats(&cp.socket));
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .arg("--control-socket")
        .arg(&cp.socket)
        .arg("shutdown")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_for(10, || !cp.proc.alive()), "the control plane stops");
    let r = summary(&mut sim, 30);
    assert_eq!(r["sessions_up"].as_u64(), Some(3), "{r}");
    assert_eq!(r["sessions_ended_by_lns"].as_u64(), Some(3), "{r}");
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert!(maps.sessions().unwrap().is_empty(), "nothing kept");
    let store = state.path().join(FILE);
    assert!(Store::session_keys(&store).unwrap().is_empty(), "the store emptied");
    assert!(wal_folded(state.path()));
}

/// Without `--keep-sessions` SIGTERM is a stop: a CDN or StopCCN for every
/// session, nothing left in the data plane, and no session store (one an
/// earlier start with `--keep-sessions` left is removed at start).
#[test]
fn sigterm_without_keep_sessions_ends_every_session() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_string();
    // What an earlier start with --keep-sessions would have left.
    let store = state.path().join(FILE);
    let mut old = Store::open(&store).unwrap();
    let key = SessionKey::new(TunnelId(9), SessionId(9));
    old.commit(
        &Changes(vec![(RecordKey::Session(key), Some(b"old".to_vec()))]),
        std::time::SystemTime::now(),
    )
    .unwrap();
    old.close().unwrap();
    assert_eq!(Store::session_keys(&store).unwrap(), vec![key]);

    let _dp = start_dp(&lab, &pins, "1", "skb");
    let mut cp = lab.start_controlplane(pins.path(), 10, &["--state-dir", state_dir.as_str()]).unwrap();
    assert!(!store.exists(), "the old store removed at start: {}", cp.proc.output().1);
    let mut sim = Subscribers::new(2, 2).hold("30").spawn(&lab);
    assert!(wait_for(20, || forwarding(&cp.socket) == 4), "4 sessions up: {}", stats(&cp.socket));
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(maps.sessions().unwrap().len(), 4);

    let status = cp.proc.stop(15).expect("stopped");
    assert!(status.success(), "{:?}", cp.proc.output());
    let log = cp.proc.output().1;
    assert!(log.contains("stopping: StopCCN to every tunnel"), "{log}");
    assert!(!log.contains("stay in the data plane"), "{log}");
    let r = summary(&mut sim, 40);
    assert_eq!(r["sessions_up"].as_u64(), Some(4), "{r}");
    assert_eq!(r["sessions_ended_by_lns"].as_u64(), Some(4), "CDN or StopCCN for each: {r}");
    assert!(maps.sessions().unwrap().is_empty(), "nothing kept in the data plane");
    assert!(!store.exists(), "no store without --keep-sessions");
}
