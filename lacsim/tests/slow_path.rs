//! The exception path end to end: on an access link of MTU 1300 (a LAC
//! behind a tunnel), the LAC's kernel fragments the L2TP packets of
//! 1,400-byte subscriber packets; the XDP program passes the fragments,
//! the LNS's kernel reassembles them, and the control plane's slow path
//! decapsulates them and hands them to the kernel through its TUN device,
//! which routes them to the core. Before it, none of them arrived.
//!
//! (The replies, 1,400 bytes inside, are encapsulated by the fast path into
//! frames larger than the access link takes: deriving the session's MTU
//! from the access link is still to come, so they are not checked here.)

mod common;
use common::{lnsctl_json, resolve_neighbours, start_dp, Subscribers};

use lns_testlab::{Lab, PinDir, UdpEcho};

#[test]
fn fragmented_l2tp_from_a_small_access_link_crosses_the_slow_path() {
    let lab = Lab::new(1).unwrap();
    for (ns, dev) in [(&lab.lac, "lac0"), (&lab.lns, "acc0")] {
        ns.ip(&["link", "set", "dev", dev, "mtu", "1300"]).unwrap();
    }
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane(pins.path(), 10, &[]).unwrap();
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let s = Subscribers::new(1, 2).traffic("20,1400").hold("2").run(&lab);
    assert_eq!(s["sessions_up"].as_u64(), Some(2), "{s}");
    let sent = s["data_sent"].as_u64().unwrap();
    let echoed = echo.stop();
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    assert!(sent >= 40, "{s}");
    // Every packet reached the core host (the last of each session may be
    // in flight at hang-up).
    assert!(echoed + 2 >= sent, "1,400-byte packets reached the core: {echoed} of {sent}\n{s}\n{stats}");
    let up = stats["slow_path"]["up_packets"].as_u64().unwrap_or(0);
    assert!(up + 2 >= sent && up >= echoed, "upstream went by the slow path: {stats}");
    assert!(stats["xdp"]["pass_fragment"].as_u64().unwrap_or(0) >= 2 * up, "as fragments: {stats}");
    assert_eq!(stats["slow_path"]["spoofed"].as_u64(), None, "{stats}");
}
