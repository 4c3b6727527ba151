//! The exception path for what the fast path cannot forward yet: the first
//! packet toward a core next hop or a LAC whose neighbour entry is gone.
//! The XDP program passes it (`pass_no_neighbour`); upstream the L2TP
//! datagram reaches the control plane's socket and the slow path hands
//! the subscriber's packet to the kernel, downstream the kernel routes the
//! core's packet into the slow path's TUN device and the control plane
//! sends it down the session; either way the kernel queues it while it
//! resolves the neighbour, as a router does, and nothing is lost. The
//! subscriber is a real host of the LAC namespace (`lns-lacsim --tun`).
//!
//! Also: a subscriber packet from an address that is not the session's,
//! on the slow path (too big for the access link, so it arrives in
//! fragments), is dropped and counted as the fast path drops it.

mod common;
use common::{lnsctl_json, resolve_neighbours, run_in, start_dp_with, tun_subscriber, wait_for_ipv4};

use lns_testlab::{Lab, PinDir};

fn xdp(cp: &lns_testlab::ControlPlane, name: &str) -> u64 {
    lnsctl_json(&cp.socket, &["show", "stats"])["xdp"][name].as_u64().unwrap_or(0)
}

#[test]
fn first_packets_to_unresolved_neighbours_and_spoofed_sources_on_the_slow_path() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    // The program looks every frame's next hop up itself (with worker
    // checks the workers do, from a cache of their own).
    let _dp = start_dp_with(&lab, &pins, "1", "skb", &["--session-checks", "xdp", "--nh-cache-ms", "0"]);
    let cp = lab.start_controlplane(pins.path(), 1, &[]).unwrap();
    resolve_neighbours(&lab);
    let mut sim = tun_subscriber(&lab, "sub0", &["--tun-mtu", "1500"]);
    let sub = wait_for_ipv4(&lab.lac, "sub0", &mut sim);
    // A first ping resolves everything; the next ones are the fast path's.
    let out = run_in(&lab.lac, "ping", &["-c", "2", "-i", "0.3", "-W", "3", "203.0.113.7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    for (from, to, what) in [(&lab.lac, "203.0.113.7", "upstream"), (&lab.core, sub.as_str(), "downstream")] {
        // The LNS forgets its neighbours: the first packet each way finds
        // none. The control plane's own datagrams to the LAC (answers to
        // the subscriber's LCP echoes) may have the kernel resolve the
        // LAC again between the flush and the ping; then the ping goes by
        // the fast path, so it is tried again, up to three times. Every
        // ping must arrive; one at least must have found no neighbour.
        let mut by_kernel = false;
        let mut stats = serde_json::Value::Null;
        for _ in 0..3 {
            let before = xdp(&cp, "pass_no_neighbour");
            lab.lns.ip(&["neigh", "flush", "all"]).unwrap();
            let out = run_in(from, "ping", &["-c", "1", "-W", "5", to]);
            let text = String::from_utf8_lossy(&out.stdout);
            stats = lnsctl_json(&cp.socket, &["show", "stats"]);
            assert!(
                out.status.success() && text.contains("1 received"),
                "{what}: the first packet: {text}\n{stats}"
            );
            if xdp(&cp, "pass_no_neighbour") > before {
                by_kernel = true;
                break;
            }
        }
        assert!(by_kernel, "{what}: went by the kernel in none of three tries: {stats}");
    }
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    assert!(stats["slow_path"]["up_packets"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(stats["slow_path"]["down_packets"].as_u64().unwrap_or(0) >= 1, "{stats}");

    // A source that is not the session's: on the fast path dropped by the
    // program, on the slow path (1,500 bytes: the LAC fragments their datagrams) by the control
    // plane; counted either way.
    lab.lac.ip(&["addr", "add", "198.51.100.250/32", "dev", "sub0"]).unwrap();
    let spoofed_before =
        lnsctl_json(&cp.socket, &["show", "stats"])["slow_path"]["spoofed"].as_u64().unwrap_or(0);
    let _ = run_in(
        &lab.lac,
        "ping",
        &["-c", "2", "-i", "0.3", "-W", "1", "-s", "1472", "-I", "198.51.100.250", "203.0.113.7"],
    );
    let _ =
        run_in(&lab.lac, "ping", &["-c", "2", "-i", "0.3", "-W", "1", "-I", "198.51.100.250", "203.0.113.7"]);
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    let spoofed = stats["slow_path"]["spoofed"].as_u64().unwrap_or(0);
    assert!(spoofed >= spoofed_before + 2, "dropped on the slow path: {stats}");
    assert!(stats["xdp"]["drop_spoofed"].as_u64().unwrap_or(0) >= 2, "and on the fast path: {stats}");
    sim.kill();
}
