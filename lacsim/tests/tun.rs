//! `lns-lacsim --tun`: a subscriber as a host of the LAC namespace. Real
//! programs run over its session: ping to the core host in IPv4 and IPv6
//! (from the IPCP address and the address formed from the Router
//! Advertisement), and iperf3 TCP, whose rate is printed.

mod common;
use common::{resolve_neighbours, run_in, start_dp, tun_subscriber};

use std::time::{Duration, Instant};

use lns_testlab::{Lab, Netns, NsProcess, PinDir};

/// Waits until `ip addr show dev DEV` in `ns` shows every one of `want`.
fn wait_for_addresses(ns: &Netns, dev: &str, want: &[&str], lacsim: &mut NsProcess) -> String {
    let t0 = Instant::now();
    loop {
        let out =
            ns.ip(&["addr", "show", "dev", dev]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let text = out.unwrap_or_default();
        if want.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(lacsim.alive(), "lns-lacsim exited: {:?}", lacsim.output());
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{dev} never got {want:?}: {text}\n{:?}",
            lacsim.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ping_and_iperf3_over_a_subscriber_tun_device() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let _cp = lab.start_controlplane(pins.path(), 1, &[]).unwrap();
    resolve_neighbours(&lab);
    // IPv6 neighbours too, both ways across the core link: the fast path
    // drops what has no next hop yet.
    lab.lns.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::7"]).unwrap();
    lab.core.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::1"]).unwrap();
    let mut sim = tun_subscriber(&lab, "sub0", &["--ncp", "dual"]);
    let addrs = wait_for_addresses(
        &lab.lac,
        "sub0",
        &["inet 198.51.100.", "inet6 2001:db8:100:", "inet6 fe80::"],
        &mut sim,
    );
    println!("{addrs}");

    for (family, target) in [("-4", "203.0.113.7"), ("-6", "2001:db8:c0::7")] {
        let out = run_in(&lab.lac, "ping", &[family, "-c", "3", "-i", "0.2", "-W", "2", target]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ping {target} through the session: {text}\n{:?}", sim.output());
        assert!(text.contains("3 received"), "{text}");
    }

    // iperf3: the core host serves, the subscriber sends, then receives.
    let iperf3 = std::path::Path::new("/usr/bin/iperf3");
    let _server = NsProcess::spawn(&lab.core, iperf3, &["-s", "-B", "203.0.113.7", "-p", "5201"]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for reverse in [false, true] {
        let mut args = vec!["-c", "203.0.113.7", "-p", "5201", "-t", "3", "-J"];
        if reverse {
            args.push("-R");
        }
        let out = run_in(&lab.lac, "iperf3", &args);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let bps = report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
        let bytes = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        let dir = if reverse { "core -> subscriber" } else { "subscriber -> core" };
        println!("iperf3 TCP {dir} over the session: {:.1} Mbit/s ({bytes} bytes in 3 s)", bps / 1e6);
        assert!(bytes > 0, "iperf3 {dir}: {}\n{:?}", String::from_utf8_lossy(&out.stdout), sim.output());
    }

    assert!(sim.stop(10).is_some_and(|s| s.success()), "lns-lacsim ends on SIGTERM: {:?}", sim.output());
    let (stdout, _) = sim.output();
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().find(|l| l.starts_with('{')).unwrap_or("{}")).unwrap();
    assert_eq!(summary["sessions_up"].as_u64(), Some(1), "{summary}");
    // The device leaves with the process.
    assert!(lab.lac.ip(&["link", "show", "dev", "sub0"]).is_err());
}
