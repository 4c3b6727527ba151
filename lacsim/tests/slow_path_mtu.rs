//! MTU done right (issue 18.3), end to end: on an access link of MTU 1300
//! the LNS proposes an MRU of 1260 (1300 less IPv4, UDP, L2TP with Length
//! and PPP) and sends no larger packet down a session; a subscriber that
//! is a real host of the LAC namespace (`lns-lacsim --tun`) pings the core
//! host and is pinged by it with 1300-byte packets, both ways, and every
//! reply comes back intact (ping checks each byte of its pattern):
//! upstream the LAC's kernel fragments the L2TP datagrams and the slow
//! path takes them; downstream the XDP program passes what is larger than
//! the session's MTU (`pass_too_big`) and the slow path fragments it
//! (IPv4, no DF) for the subscriber's kernel to reassemble. A ping with
//! DF set gets the ICMP "fragmentation needed" a router sends, naming the
//! session's MTU; and TCP (iperf3) runs with its MSS clamped to the link.
//!
//! The data plane runs without `--pool`, so the program itself reads each
//! session for core packets (with pools the workers do, and fragment what
//! is too big themselves).

mod common;
use common::{lnsctl_json, resolve_neighbours, run_in, tun_subscriber, wait_for_ipv4};

use std::time::Duration;

use lns_testlab::{Lab, Netns, NsProcess, PinDir};

#[test]
fn pings_of_1300_bytes_cross_a_1300_byte_access_link_both_ways() {
    let lab = Lab::new(1).unwrap();
    for (ns, dev) in [(&lab.lac, "lac0"), (&lab.lns, "acc0")] {
        ns.ip(&["link", "set", "dev", dev, "mtu", "1300"]).unwrap();
    }
    let pins = PinDir::new().unwrap();
    let _dp = lab
        .start_dataplane(
            pins.path(),
            &["--queues", "1", "--xdp-mode", "skb", "--bind", "copy", "--stats-interval", "0"],
        )
        .unwrap();
    let cp = lab.start_controlplane(pins.path(), 1, &[]).unwrap();
    resolve_neighbours(&lab);
    // The subscriber's device takes 1500 as a host on a LAN would: its
    // 1300-byte packets go up whole, and the LAC's kernel fragments them.
    let mut sim = tun_subscriber(&lab, "sub0", &["--tun-mtu", "1500"]);
    let sub = wait_for_ipv4(&lab.lac, "sub0", &mut sim);
    let sessions = lnsctl_json(&cp.socket, &["session", "list"]);
    assert_eq!(sessions[0]["mtu"].as_u64(), Some(1260), "the MRU from the access link: {sessions}");

    // 1272 bytes of ICMP payload: 1300-byte IP packets, each byte checked
    // by ping against its pattern.
    let ping = |ns: &Netns, target: &str, extra: &[&str]| {
        let mut args = vec!["-c", "3", "-i", "0.3", "-W", "3", "-s", "1272", "-p", "a55a0ff0"];
        args.extend_from_slice(extra);
        args.push(target);
        let out = run_in(ns, "ping", &args);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = ping(&lab.lac, "203.0.113.7", &[]);
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    assert!(ok && text.contains("3 received"), "subscriber -> core: {text}\n{stats}\n{:?}", sim.output());
    assert!(!text.contains("wrong data"), "{text}");
    // DF clear (`-M dont`; by default ping sets DF and learns the path's
    // MTU first, see below): the slow path fragments each request.
    let (ok, text) = ping(&lab.core, &sub, &["-M", "dont"]);
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    assert!(ok && text.contains("3 received"), "core -> subscriber: {text}\n{stats}\n{:?}", sim.output());
    assert!(!text.contains("wrong data"), "{text}");
    let xdp = &stats["xdp"];
    assert!(xdp["pass_too_big"].as_u64().unwrap_or(0) >= 6, "the big ones went to the kernel: {stats}");
    assert!(stats["slow_path"]["fragmented"].as_u64().unwrap_or(0) >= 6, "and were fragmented: {stats}");
    assert!(xdp["pass_fragment"].as_u64().unwrap_or(0) >= 12, "upstream came in outer fragments: {stats}");
    let sessions = lnsctl_json(&cp.socket, &["session", "list"]);
    let slow = &sessions[0]["slow_path"];
    assert!(slow["up_packets"].as_u64().unwrap_or(0) >= 6, "counted for the session: {sessions}");
    assert!(slow["down_packets"].as_u64().unwrap_or(0) >= 12, "two fragments per reply: {sessions}");

    // DF set: not fragmented; the sender learns the session's MTU.
    let (ok, text) = ping(&lab.core, &sub, &["-M", "do"]);
    assert!(!ok, "{text}");
    let out = run_in(&lab.core, "ping", &["-c", "1", "-W", "2", "-s", "1272", "-M", "do", &sub]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("mtu = 1260") || all.contains("mtu=1260"), "ICMP fragmentation needed: {all}");

    // TCP: the SYNs' MSS is clamped to what the session carries, so the
    // transfer needs no fragments.
    let server =
        NsProcess::spawn(&lab.core, std::path::Path::new("/usr/bin/iperf3"), &["-s", "-1", "-p", "5299"])
            .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = run_in(&lab.lac, "iperf3", &["-c", "203.0.113.7", "-p", "5299", "-t", "2", "-J"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let bytes = report["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    assert!(
        bytes > 0.0,
        "iperf3 over the session: {}\n{:?}",
        String::from_utf8_lossy(&out.stdout),
        server.output()
    );
    let mss = report["start"]["tcp_mss_default"].as_u64();
    println!("iperf3: {bytes} bytes in 2 s, MSS {mss:?}");
    if let Some(mss) = mss {
        assert!(mss <= 1220, "MSS clamped to 1260 - 40: {mss}");
    }
    sim.kill();
}
