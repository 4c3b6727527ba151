//! The program attached to real veths in both XDP modes, with real packets
//! sent from a LAC namespace; detached when its owner goes away, unless its
//! link is kept pinned for the next run, which takes it over; and a copy
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

/// The id of the XDP program on `dev` (`prog/xdp id N`), 0 for none.
fn attached_id(ns: &Netns, dev: &str) -> u32 {
    let out = ns.ip(&["-d", "link", "show", dev]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("prog/xdp id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or(0)
}

/// `--keep-attached`: the link pinned beside the maps keeps the program on
/// the interface after its process, on the pinned maps; the next run's
/// program takes its place in the same link (BPF_LINK_UPDATE); a kept link
/// of another XDP mode is made anew; removing the pins detaches.
#[test]
fn a_kept_link_outlives_its_process_and_takes_the_next_program() {
    let w = wire();
    let pins = lns_testlab::PinDir::new().unwrap();
    let opts = |reuse_pinned| LoadOptions {
        max_sessions: 64,
        pin_dir: Some(pins.path().to_path_buf()),
        reuse_pinned,
        ..Default::default()
    };
    let entered = w.lns.enter().unwrap();
    let acc = lns_bpf::ifindex("acc0").unwrap();
    let mut first = Steering::load(&opts(false)).unwrap();
    first.maps().set_iface(acc, &Iface { roles: Iface::ACCESS, xsk_base: 0 }).unwrap();
    assert_eq!(first.attach_kept("acc0", XdpMode::Skb, true).unwrap(), lns_bpf::Takeover::Created);
    assert!(lns_bpf::link_pin_path(pins.path(), "acc0").exists());
    drop(first);
    drop(entered);
    assert!(xdp_attached(&w.lns, "acc0"), "kept after its process");
    let old_id = attached_id(&w.lns, "acc0");

    // The kept program goes on steering on the pinned maps.
    send_traffic(&w.lac);
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(maps.counters().unwrap().get(Counter::DropUnknownSession), 3);

    // The next run takes the link over.
    let entered = w.lns.enter().unwrap();
    let mut second = Steering::load(&opts(true)).unwrap();
    let t = second.attach_kept("acc0", XdpMode::Skb, true).unwrap();
    assert_eq!(t, lns_bpf::Takeover::Replaced { old_prog_id: old_id });
    drop(entered);
    let new_id = attached_id(&w.lns, "acc0");
    assert!(new_id != 0 && new_id != old_id, "this run's program runs: {old_id} -> {new_id}");
    send_traffic(&w.lac);
    assert_eq!(second.maps().counters().unwrap().get(Counter::DropUnknownSession), 6, "same maps");
    drop(second);
    assert_eq!(attached_id(&w.lns, "acc0"), new_id, "kept again");

    // Another mode cannot be had by an update: a new link.
    let entered = w.lns.enter().unwrap();
    let mut third = Steering::load(&opts(true)).unwrap();
    let t = third.attach_kept("acc0", XdpMode::Native, false).unwrap();
    assert!(matches!(t, lns_bpf::Takeover::Recreated { .. }), "{t:?}");
    assert!(lns_bpf::pinned_links(pins.path()).unwrap().is_empty(), "not kept: no pin");
    drop(third);
    drop(entered);
    assert!(!xdp_attached(&w.lns, "acc0"), "without a pin it leaves with its owner");

    // Kept, then taken off by removing the pins (`lns-dataplane --detach`).
    let entered = w.lns.enter().unwrap();
    let mut fourth = Steering::load(&opts(true)).unwrap();
    fourth.attach_kept("acc0", XdpMode::Native, true).unwrap();
    drop(fourth);
    drop(entered);
    assert!(xdp_attached(&w.lns, "acc0"));
    assert_eq!(lns_bpf::unpin_links(pins.path(), &[]).unwrap(), ["acc0"]);
    assert!(!xdp_attached(&w.lns, "acc0"), "detached with its last pin");
}
