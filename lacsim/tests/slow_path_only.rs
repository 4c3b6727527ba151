//! A session configured slow-path-only (`[[peer]] fast_path = false`, here
//! `--peer 192.0.2.2,fast-path=no`) forwards both ways with nothing
//! redirected to AF_XDP: the XDP program passes its L2TP data to the
//! kernel, which hands it to the control plane's socket, and the core's
//! packets to its address to the kernel, which routes them into the slow
//! path's TUN device; the control plane carries both directions.

mod common;
use common::{lnsctl_json, resolve_neighbours, start_dp, Subscribers};

use lns_testlab::{Lab, PinDir, UdpEcho};

#[test]
fn a_session_configured_slow_path_only_forwards_both_ways_without_af_xdp() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane(pins.path(), 10, &["--peer", "192.0.2.2,fast-path=no"]).unwrap();
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let s = Subscribers::new(1, 2).traffic("20,200").hold("2").run(&lab);
    let echoed = echo.stop();
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    assert_eq!(s["sessions_up"].as_u64(), Some(2), "{s}");
    let (sent, received) = (s["data_sent"].as_u64().unwrap(), s["data_received"].as_u64().unwrap());
    assert!(sent >= 40, "{s}");
    // Both ways: the echoes came back to the subscribers (the last of each
    // session may be in flight at hang-up).
    assert!(echoed + 2 >= sent, "upstream reached the core: {echoed} of {sent}\n{stats}");
    assert!(received + 4 >= sent, "downstream reached the subscribers: {received} of {sent}\n{s}\n{stats}");
    let xdp = &stats["xdp"];
    for redirect in
        ["redirect_upstream", "redirect_downstream", "redirect_upstream_check", "redirect_downstream_check"]
    {
        assert_eq!(xdp[redirect].as_u64().unwrap_or(0), 0, "{redirect}: nothing to AF_XDP\n{stats}");
    }
    let slow = &stats["slow_path"];
    let (up, down) = (slow["up_packets"].as_u64().unwrap_or(0), slow["down_packets"].as_u64().unwrap_or(0));
    assert!(up >= echoed && down >= received, "both ways by the slow path: {stats}");
    let passed = xdp["pass_slow_path_session"].as_u64().unwrap_or(0);
    assert!(passed >= up + received, "the program passed them as a slow-path session's: {stats}");
}
