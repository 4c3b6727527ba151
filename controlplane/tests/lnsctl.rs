//! lnsctl static-session against the real pinned maps of a loaded program
//! (no data plane process needed): what it writes is what the program and
//! other processes see, and bad input is refused with a clear error.

use std::process::Command;

use lns_bpf::abi::{SessionKey, SessionState};
use lns_bpf::{LoadOptions, Steering};
use lns_testlab::PinDir;

fn lnsctl(pins: &PinDir, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lnsctl"))
        .arg("--bpf-pin-dir")
        .arg(pins.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn static_sessions_are_written_listed_and_removed() {
    let pins = PinDir::new().unwrap();
    let steering = Steering::load(&LoadOptions {
        pin_dir: Some(pins.path().into()),
        max_sessions: 64,
        ..Default::default()
    })
    .unwrap();
    let add = [
        "static-session",
        "add",
        "--local-tunnel",
        "10",
        "--local-session",
        "20",
        "--peer-tunnel",
        "30",
        "--peer-session",
        "40",
        "--lac",
        "192.0.2.2:1701",
        "--local",
        "192.0.2.1:1701",
        "--ipv4",
        "198.51.100.5",
        "--delegated-prefix",
        "2001:db8:200::/56",
        "--mtu",
        "1400",
        "--sequencing",
    ];
    let out = lnsctl(&pins, &add);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let maps = steering.maps();
    let idx = maps.find_session(SessionKey { tunnel_id: 10, session_id: 20 }).unwrap().expect("installed");
    let s = maps.read_session(idx).unwrap();
    assert_eq!(s.session_state(), Some(SessionState::Forwarding));
    assert_eq!((s.peer_tunnel_id, s.peer_session_id, s.mtu), (30, 40, 1400));
    assert_eq!(s.peer().to_string(), "192.0.2.2:1701");
    assert_eq!(s.subscriber_delegated_prefix().unwrap().1, 56);
    assert_eq!(maps.address_entries(), 2);

    // The same ids twice is refused.
    let again = lnsctl(&pins, &add);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already installed"));

    let list = lnsctl(&pins, &["--json", "static-session", "list"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["local_session"], 20);
    assert_eq!(rows[0]["ipv4"], "198.51.100.5");

    let del = lnsctl(&pins, &["static-session", "del", "--tunnel", "10", "--session", "20"]);
    assert!(del.status.success());
    assert_eq!(maps.sessions().unwrap().len(), 0);
    assert_eq!(maps.address_entries(), 0, "no entry left behind");
    let counts = maps.entry_counts();
    assert_eq!((counts["lns_sub_v4_flat"], counts["lns_sub_v6_flat"]), (0, 0), "flat tables emptied too");

    // Nonsense is an error, not a crash.
    let bad = lnsctl(
        &pins,
        &[
            "static-session",
            "add",
            "--local-tunnel",
            "1",
            "--local-session",
            "2",
            "--peer-tunnel",
            "3",
            "--peer-session",
            "4",
            "--lac",
            "192.0.2.2:1701",
            "--local",
            "[2001:db8::1]:1701",
        ],
    );
    assert!(!bad.status.success());
    let missing = Command::new(env!("CARGO_BIN_EXE_lnsctl"))
        .args(["--bpf-pin-dir", "/sys/fs/bpf/lns-no-such", "static-session", "list"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is lns-dataplane running"));
}
