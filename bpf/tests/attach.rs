//! The program attached to real veths in both XDP modes, with real packets
//! sent from a LAC namespace; detached when its owner goes away, and a copy
//! left attached the old way (netlink) by an earlier run does not block the
//! next start.

use lns_bpf::abi::{Counter, Iface};
use lns_bpf::{LoadOptions, Steering, XdpMode};
use lns_testlab::Netns;

struct Wire {
    lns: Netns,
    lac: Netns,
}

fn wire() -> Wire {
    let lns = Netns::new("lnsa").unwrap();
    let lac = Netns::new("laca").unwrap();
    lns.add_veth_pair("acc0", "lac0", 1).unwrap();
    lns.ip(&["link", "set", "lac0", "netns", lac.name()]).unwrap();
    lns.ip(&["addr", "add", "192.0.2.1/24", "dev", "acc0"]).unwrap();
    lac.ip(&["addr", "add", "192.0.2.2/24", "dev", "lac0"]).unwrap();
    lac.ip(&["link", "set", "lac0", "up"]).unwrap();
    lac.exec("ethtool", &["-K", "lac0", "tx", "off"]).unwrap();
    Wire { lns, lac }
}

fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let out = ns.ip(&["-d", "link", "show", dev]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// An L2TP data message (session 0x0102/0x0304, unknown) and a ping.
fn send_traffic(lac: &Netns) {
    let l2tp = r#"printf '\x00\x02\x01\x02\x03\x04\xff\x03\x00\x21' > /dev/udp/192.0.2.1/1701"#;
    for _ in 0..3 {
        lac.exec("bash", &["-c", l2tp]).unwrap();
    }
    lac.exec("ping", &["-c", "3", "-i", "0.2", "-W", "1", "192.0.2.1"]).unwrap();
}

#[test]
fn real_frames_are_steered_in_native_and_skb_mode() {
    for mode in [XdpMode::Native, XdpMode::Skb] {
        let w = wire();
        let entered = w.lns.enter().unwrap();
        let acc = lns_bpf::ifindex("acc0").unwrap();
        let mut steering = Steering::load(&LoadOptions { max_sessions: 64, ..Default::default() }).unwrap();
        steering.maps().set_iface(acc, &Iface { roles: Iface::ACCESS, xsk_base: 0 }).unwrap();
        steering.attach(acc, mode).unwrap();
        drop(entered);
        assert!(xdp_attached(&w.lns, "acc0"));

        send_traffic(&w.lac);
        let c = steering.maps().counters().unwrap();
        assert_eq!(c.get(Counter::DropUnknownSession), 3, "{mode:?}: {c:?}");
        // Echo requests pass to the stack (the replies prove it), and ARP too.
        assert!(c.get(Counter::PassNotL2tp) >= 3, "{mode:?}: {c:?}");
        assert!(c.get(Counter::PassNotIp) >= 1, "{mode:?}: {c:?}");
        let others: u64 = Counter::ALL.iter().filter(|c| **c != Counter::Rx).map(|k| c.get(*k)).sum();
        assert_eq!(c.get(Counter::Rx), others);

        drop(steering);
        assert!(!xdp_attached(&w.lns, "acc0"), "{mode:?}: program left attached");
    }
}

#[test]
fn a_copy_left_attached_by_netlink_is_replaced() {
    let w = wire();
    let entered = w.lns.enter().unwrap();
    let acc = lns_bpf::ifindex("acc0").unwrap();
    {
        // An earlier run that attached without a link and died.
        let old = Steering::load(&LoadOptions { max_sessions: 64, ..Default::default() }).unwrap();
        libbpf_rs::Xdp::new(old.program_fd()).attach(acc as i32, libbpf_rs::XdpFlags::SKB_MODE).unwrap();
    }
    drop(entered);
    assert!(xdp_attached(&w.lns, "acc0"), "the old copy stays attached");

    let entered = w.lns.enter().unwrap();
    let mut steering = Steering::load(&LoadOptions { max_sessions: 64, ..Default::default() }).unwrap();
    steering.maps().set_iface(acc, &Iface { roles: Iface::ACCESS, xsk_base: 0 }).unwrap();
    steering.attach(acc, XdpMode::Skb).expect("replaces the leftover");
    drop(entered);
    send_traffic(&w.lac);
    assert_eq!(steering.maps().counters().unwrap().get(Counter::DropUnknownSession), 3);
    drop(steering);
    assert!(!xdp_attached(&w.lns, "acc0"));
}
