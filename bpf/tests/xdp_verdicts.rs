//! The real XDP program under BPF_PROG_TEST_RUN: every verdict, every
//! combination of L2TP header options, both PPP header forms, VLAN and IPv6
//! outer headers, and every truncation of valid frames.
//!
//! Needs root (bpf(2), namespaces). Each test makes its own namespace.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use lns_bpf::abi::{Config, Counter, Direction, FlatEntry, Iface, Session, SessionState};
use lns_bpf::{LoadOptions, TestRunContext, XdpAction};

fn all_outers() -> [Outer; 4] {
    [
        Outer { ipv6: false, vlan: false },
        Outer { ipv6: false, vlan: true },
        Outer { ipv6: true, vlan: false },
        Outer { ipv6: true, vlan: true },
    ]
}

/// A forwarding session (100, 200) at slot 5, not at its direct slot 200:
/// the program finds it through the hash and checks its frames itself
/// (fast slots, whose frames the workers check, have tests of their own).
fn forwarding_lab(outer: Outer) -> Lab {
    let lab = Lab::new();
    let mut s = Lab::session(SessionState::Forwarding);
    if outer.ipv6 {
        s.set_peer((IpAddr::V6(LAC_V6), LAC_PORT).into());
    }
    lab.install(5, &s);
    lab
}

#[test]
fn upstream_ipv4_and_ipv6_are_redirected_with_metadata() {
    for outer in all_outers() {
        let lab = forwarding_lab(outer);
        let xsk = BoundXsk::bind(&lab.access_name, 0);
        lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();

        let frame = data_frame(outer, L2tpOpts::default(), PPP_FULL);
        let r = lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream);
        let meta = r.meta.expect("metadata in front of the frame");
        assert_eq!(meta.session_index, 5);
        assert_eq!(meta.direction(), Some(Direction::Upstream));
        assert_eq!(meta.ip_version, 4);
        let inner = &frame[meta.inner_offset as usize..];
        assert_eq!(inner, &inner_v4(SUB_V4, CORE_V4, b"subscriber data")[..]);

        let frame = data_frame_v6(outer, L2tpOpts::default(), PPP_FULL);
        let r = lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream);
        let meta = r.meta.unwrap();
        assert_eq!(meta.ip_version, 6);
        assert_eq!(&frame[meta.inner_offset as usize..], &inner_v6(SUB_V6, CORE_V6, b"subscriber data")[..]);

        // A source inside the delegated prefix is the subscriber's too.
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0x42, 0, 0, 0, 1);
        let inner = inner_v6(src, CORE_V6, b"from the LAN");
        let frame = lac_frame(
            outer,
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x57, &inner),
        );
        lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream);
    }
}

/// A fast slot's frames carry offsets the worker can trust, whatever the
/// outer family, VLAN tag and L2TP options: the ids at `l2tp_ids`, the
/// LAC's address in the IP header at `outer_l3`, its port at `outer_l4`.
#[test]
fn fast_slot_metadata_points_at_what_the_worker_checks() {
    for outer in all_outers() {
        let lab = Lab::new();
        let maps = lab.steering.maps();
        let xsk = BoundXsk::bind(&lab.access_name, 0);
        maps.set_xsk(0, xsk.fd()).unwrap();
        let mut s = Lab::session(SessionState::Forwarding);
        if outer.ipv6 {
            s.set_peer((IpAddr::V6(LAC_V6), LAC_PORT).into());
        }
        lab.install(200, &s);
        assert!(maps.fast_slot(200));
        for (length, sequence, offset) in
            [(false, false, None), (true, true, Some(3)), (true, false, Some(0))]
        {
            let opts = L2tpOpts { length, sequence, offset, ..Default::default() };
            for (frame, version) in
                [(data_frame(outer, opts, PPP_FULL), 4), (data_frame_v6(outer, opts, PPP_FULL), 6)]
            {
                let r = lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstreamCheck);
                let m = r.meta.unwrap();
                let (l3, l4, ids) = (m.outer_l3 as usize, m.outer_l4 as usize, m.l2tp_ids as usize);
                assert_eq!((m.flags, m.ip_version), (lns_bpf::abi::XdpMeta::CHECK, version));
                assert_eq!(l3, if outer.vlan { 18 } else { 14 });
                assert_eq!(frame[l3] >> 4, m.outer_ip_version);
                assert_eq!(m.outer_ip_version, if outer.ipv6 { 6 } else { 4 });
                let src = if outer.ipv6 { &frame[l3 + 8..l3 + 24] } else { &frame[l3 + 12..l3 + 16] };
                let lac = match lns_bpf::abi::unmap(s.peer_addr) {
                    IpAddr::V4(v) => v.octets().to_vec(),
                    IpAddr::V6(v) => v.octets().to_vec(),
                };
                assert_eq!(src, &lac[..]);
                assert_eq!(&frame[l4..l4 + 2], &LAC_PORT.to_be_bytes());
                assert_eq!(&frame[ids..ids + 4], &[0, 100, 0, 200]);
            }
        }
    }
}

#[test]
fn every_l2tp_option_and_ppp_form_is_parsed() {
    let lab = forwarding_lab(Outer::default());
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();
    let mut lab6 = None;
    let mut runs = 0;
    for outer in all_outers() {
        if outer.ipv6 && lab6.is_none() {
            lab6 = Some(forwarding_lab(outer));
        }
        for bits in 0..16u8 {
            for offset in [0u16, 3, 64] {
                if bits & 4 == 0 && offset != 0 {
                    continue;
                }
                for ppp in [
                    PppHdr { address_control: true, short_protocol: false },
                    PppHdr { address_control: false, short_protocol: false },
                    PppHdr { address_control: true, short_protocol: true },
                    PppHdr { address_control: false, short_protocol: true },
                ] {
                    let opts = L2tpOpts {
                        length: bits & 1 != 0,
                        sequence: bits & 2 != 0,
                        offset: (bits & 4 != 0).then_some(offset),
                        priority: bits & 8 != 0,
                        ..Default::default()
                    };
                    for v6 in [false, true] {
                        let frame =
                            if v6 { data_frame_v6(outer, opts, ppp) } else { data_frame(outer, opts, ppp) };
                        let l = if outer.ipv6 { lab6.as_ref().unwrap() } else { &lab };
                        // lab6 has no socket: its verdict is the counted
                        // no-socket pass, which still proves the parse.
                        let (action, counter) = if outer.ipv6 {
                            (XdpAction::Pass, Counter::PassNoSocket)
                        } else {
                            (XdpAction::Redirect, Counter::RedirectUpstream)
                        };
                        let r = l.expect(l.access, &frame, action, counter);
                        if let Some(meta) = r.meta {
                            let want = if v6 {
                                inner_v6(SUB_V6, CORE_V6, b"subscriber data")
                            } else {
                                inner_v4(SUB_V4, CORE_V4, b"subscriber data")
                            };
                            assert_eq!(&frame[meta.inner_offset as usize..], &want[..], "{opts:?} {ppp:?}");
                        }
                        runs += 1;
                    }
                }
            }
        }
    }
    assert_eq!(runs, 4 * (8 + 8 * 3) * 4 * 2);
}

/// While no socket is bound on the queue (a data plane restarting under
/// its kept program), what would go to a worker goes to the kernel as it
/// arrived, without the metadata (`expect` compares the frame): L2TP to
/// the control plane's socket, core packets into its TUN device, the slow
/// path. A socket in the slot takes them again, and its leaving gives
/// them back to the kernel.
#[test]
fn no_socket_on_the_queue_passes_to_the_kernel() {
    // The program's own checks (a session away from its direct slot), then
    // the workers' (a fast slot whose pool units are set). One lab at a
    // time: a lab's thread is in its namespace.
    passes_without_a_socket(
        forwarding_lab(Outer::default()),
        [Counter::RedirectUpstream, Counter::RedirectDownstream],
    );
    let lab = pool_lab();
    lab.install(200, &Lab::session(SessionState::Forwarding));
    passes_without_a_socket(lab, [Counter::RedirectUpstreamCheck, Counter::RedirectDownstreamCheck]);
}

fn passes_without_a_socket(lab: Lab, redirects: [Counter; 2]) {
    let up = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    let down = core_frame(IpAddr::V4(SUB_V4), false);
    let maps = lab.steering.maps();
    let no_socket = || {
        lab.expect(lab.access, &up, XdpAction::Pass, Counter::PassNoSocket);
        lab.expect(lab.core, &down, XdpAction::Pass, Counter::PassNoSocket);
    };
    let redirected = || {
        let r = lab.expect(lab.access, &up, XdpAction::Redirect, redirects[0]);
        assert!(r.meta.is_some(), "the metadata in front of a redirected frame");
        lab.expect(lab.core, &down, XdpAction::Redirect, redirects[1]);
    };
    no_socket();
    let (acc, core) = (BoundXsk::bind(&lab.access_name, 0), BoundXsk::bind(&lab.core_name, 0));
    maps.set_xsk(0, acc.fd()).unwrap();
    maps.set_xsk(64, core.fd()).unwrap();
    redirected();
    // A data plane stopping takes its sockets out of the map first.
    maps.clear_xsk(0).unwrap();
    maps.clear_xsk(64).unwrap();
    no_socket();
    maps.set_xsk(0, acc.fd()).unwrap();
    maps.set_xsk(64, core.fd()).unwrap();
    redirected();
    // Closing them takes them out too, as a killed data plane's are, once
    // the last copy of the descriptor is gone (a child another test thread
    // was starting may hold one for a moment).
    drop((acc, core));
    let t0 = std::time::Instant::now();
    while [(lab.access, &up), (lab.core, &down)]
        .iter()
        .any(|(i, f)| lab.run_on(*i, f).action != XdpAction::Pass)
        && t0.elapsed() < std::time::Duration::from_secs(5)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    no_socket();
}

#[test]
fn spoofed_inner_sources_are_dropped() {
    let lab = forwarding_lab(Outer::default());
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();
    // A second subscriber's address is not this session's either.
    let mut other = Lab::session(SessionState::Forwarding);
    other.local_session_id = 201;
    other.ipv4 = [198, 51, 100, 11];
    other.ipv6_prefix_len = 0;
    other.delegated_prefix_len = 0;
    lab.install(6, &other);

    for src in [Ipv4Addr::new(198, 51, 100, 11), Ipv4Addr::new(203, 0, 113, 99), Ipv4Addr::UNSPECIFIED] {
        let inner = inner_v4(src, CORE_V4, b"x");
        let frame = lac_frame(
            Outer::default(),
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x21, &inner),
        );
        lab.expect(lab.access, &frame, XdpAction::Drop, Counter::DropSpoofed);
    }
    for src in [
        Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x11, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0x201, 0, 0, 0, 0, 1),
    ] {
        let inner = inner_v6(src, CORE_V6, b"x");
        let frame = lac_frame(
            Outer::default(),
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x57, &inner),
        );
        lab.expect(lab.access, &frame, XdpAction::Drop, Counter::DropSpoofed);
    }
}

#[test]
fn control_messages_and_ppp_control_go_to_the_stack() {
    let lab = forwarding_lab(Outer::default());
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();

    // SCCRQ-like control message (T, L, S set), and a ZLB.
    let ctl = L2tpOpts { control: true, length: true, sequence: true, ..Default::default() };
    let mut body = l2tp_payload(ctl, 0, 0, PPP_FULL, 0, &[]);
    body.truncate(12);
    body[2..4].copy_from_slice(&12u16.to_be_bytes());
    for outer in [Outer::default(), Outer { ipv6: false, vlan: true }] {
        let frame = lac_frame(outer, LAC_PORT, 1701, &body);
        lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassL2tpControl);
    }

    // LCP, PAP, CHAP, IPCP, IPv6CP, CCP, and an unknown protocol the control
    // plane will Protocol-Reject: all to the stack even while forwarding.
    for proto in [0xc021u16, 0xc023, 0xc223, 0x8021, 0x8057, 0x80fd, 0x0031, 0x002b] {
        for ppp in [PPP_FULL, PppHdr { address_control: false, short_protocol: true }] {
            let payload = [1u8, 1, 0, 4];
            let frame = lac_frame(
                Outer::default(),
                LAC_PORT,
                1701,
                &l2tp_payload(L2tpOpts::default(), 100, 200, ppp, proto, &payload),
            );
            lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassPppControl);
        }
    }

    // Router solicitation from a link-local source, DHCPv6 to multicast,
    // a global source to a link-local destination (neighbour discovery
    // answered to the router's link-local address).
    let rs = inner_v6("fe80::1".parse().unwrap(), "ff02::2".parse().unwrap(), b"rs");
    let dhcp = inner_v6(SUB_V6, "ff02::1:2".parse().unwrap(), b"solicit");
    let to_link_local = inner_v6(SUB_V6, "fe80::1".parse().unwrap(), b"na");
    let rs_unspecified = inner_v6(Ipv6Addr::UNSPECIFIED, "ff02::2".parse().unwrap(), b"rs");
    for inner in [rs, dhcp, to_link_local, rs_unspecified] {
        let frame = lac_frame(
            Outer::default(),
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x57, &inner),
        );
        lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassIpv6LinkLocal);
    }
}

#[test]
fn a_session_still_negotiating_goes_to_the_stack() {
    let lab = Lab::new();
    lab.install(3, &Lab::session(SessionState::Control));
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassSessionNotForwarding);
    // Its LCP is PPP control all the same.
    let lcp = lac_frame(
        Outer::default(),
        LAC_PORT,
        1701,
        &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0xc021, &[9, 1, 0, 8, 0, 0, 0, 1]),
    );
    lab.expect(lab.access, &lcp, XdpAction::Pass, Counter::PassPppControl);
    // Core traffic to its address (installed before forwarding) is not redirected.
    lab.expect(
        lab.core,
        &core_frame(IpAddr::V4(SUB_V4), false),
        XdpAction::Pass,
        Counter::PassSubscriberNotForwarding,
    );
}

#[test]
fn unknown_sessions_are_dropped_unless_configured_to_pass() {
    let lab = forwarding_lab(Outer::default());
    for (t, s) in [(100u16, 201u16), (101, 200), (0, 0)] {
        let inner = inner_v4(SUB_V4, CORE_V4, b"x");
        let frame = lac_frame(
            Outer::default(),
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), t, s, PPP_FULL, 0x21, &inner),
        );
        lab.expect(lab.access, &frame, XdpAction::Drop, Counter::DropUnknownSession);
    }
    let maps = lab.steering.maps();
    let mut cfg = maps.read_config().unwrap();
    cfg.flags |= Config::PASS_UNKNOWN_SESSION;
    maps.write_config(&cfg).unwrap();
    let inner = inner_v4(SUB_V4, CORE_V4, b"x");
    let frame = lac_frame(
        Outer::default(),
        LAC_PORT,
        1701,
        &l2tp_payload(L2tpOpts::default(), 100, 999, PPP_FULL, 0x21, &inner),
    );
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassUnknownSession);

    // A removed session is unknown again, and leaves no entry behind.
    let mut s = maps.read_session(5).unwrap();
    s.generation = 7;
    maps.update_session(5, &s).unwrap();
    let removed = maps.remove_session(5).unwrap().expect("was installed");
    assert_eq!(removed.local_session_id, 200);
    assert_eq!(maps.address_entries(), 0);
    assert!(maps.sessions().unwrap().is_empty());
    // The freed entry keeps its generation, for the slot's next session
    // to be the next one.
    let freed = maps.read_session(5).unwrap();
    assert_eq!(freed.session_state(), Some(lns_bpf::abi::SessionState::Free));
    assert_eq!((freed.generation, removed.generation), (7, 7));
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassUnknownSession);
}

#[test]
fn frames_from_another_peer_are_dropped() {
    let lab = forwarding_lab(Outer::default());
    let payload =
        l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x21, &inner_v4(SUB_V4, CORE_V4, b"x"));
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
    lab.expect(
        lab.access,
        &lac_frame_from(Outer::default(), other, LAC_PORT, 1701, &payload),
        XdpAction::Drop,
        Counter::DropPeerMismatch,
    );
    // Right address, wrong port.
    lab.expect(
        lab.access,
        &lac_frame(Outer::default(), 40000, 1701, &payload),
        XdpAction::Drop,
        Counter::DropPeerMismatch,
    );
    // The v4-mapped peer must not match an IPv6 LAC.
    let v6 = Outer { ipv6: true, vlan: false };
    lab.expect(
        lab.access,
        &lac_frame(v6, LAC_PORT, 1701, &payload),
        XdpAction::Drop,
        Counter::DropPeerMismatch,
    );
}

#[test]
fn core_packets_to_subscribers_are_redirected() {
    let lab = forwarding_lab(Outer::default());
    let xsk = BoundXsk::bind(&lab.core_name, 0);
    lab.steering.maps().set_xsk(64, xsk.fd()).unwrap();
    let maps = lab.steering.maps();
    maps.add_subscriber_v6(Ipv6Addr::new(0x2001, 0xdb8, 0x300, 0, 0, 0, 0, 1), 5).unwrap();
    maps.add_route_v4(Ipv4Addr::new(203, 0, 113, 128), 25, 5).unwrap();

    let dests: [IpAddr; 6] = [
        IpAddr::V4(SUB_V4),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200)), // framed route
        IpAddr::V6(SUB_V6),                          // SLAAC /64
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0xff, 1, 2, 3, 4)), // delegated /56
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x300, 0, 0, 0, 0, 1)), // exact /128
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x10, 0, 0, 0, 1)),
    ];
    for vlan in [false, true] {
        for d in dests {
            let frame = core_frame(d, vlan);
            let r = lab.expect(lab.core, &frame, XdpAction::Redirect, Counter::RedirectDownstream);
            let meta = r.meta.unwrap();
            assert_eq!(meta.session_index, 5);
            assert_eq!(meta.direction(), Some(Direction::Downstream));
            assert_eq!(meta.inner_offset, if vlan { 18 } else { 14 });
            assert_eq!(meta.ip_version, if d.is_ipv4() { 4 } else { 6 });
        }
        // Not a subscriber: the stack routes it.
        for d in [
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 12)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x201, 0, 0, 0, 0, 1)),
        ] {
            lab.expect(lab.core, &core_frame(d, vlan), XdpAction::Pass, Counter::PassNotL2tp);
        }
    }
    // L2TP arriving on the core interface is not steered as L2TP.
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    lab.expect(lab.core, &frame, XdpAction::Pass, Counter::PassNotL2tp);
}

#[test]
fn one_arm_interface_does_both_directions() {
    let lab = forwarding_lab(Outer::default());
    let maps = lab.steering.maps();
    maps.set_iface(lab.access, &Iface { roles: Iface::ACCESS | Iface::CORE, xsk_base: 0 }).unwrap();
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    maps.set_xsk(0, xsk.fd()).unwrap();
    lab.expect(
        lab.access,
        &data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL),
        XdpAction::Redirect,
        Counter::RedirectUpstream,
    );
    lab.expect(
        lab.access,
        &core_frame(IpAddr::V4(SUB_V4), false),
        XdpAction::Redirect,
        Counter::RedirectDownstream,
    );
    lab.expect(lab.access, &core_frame(IpAddr::V4(CORE_V4), false), XdpAction::Pass, Counter::PassNotL2tp);
}

#[test]
fn other_traffic_is_passed_by_reason() {
    let lab = forwarding_lab(Outer::default());
    // ARP
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&LAC_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    lab.expect(lab.access, &arp, XdpAction::Pass, Counter::PassNotIp);
    // UDP to another port, e.g. RADIUS.
    lab.expect(
        lab.access,
        &lac_frame(Outer::default(), 1812, 1812, b"radius"),
        XdpAction::Pass,
        Counter::PassNotL2tp,
    );
    // Outer IPv4 fragments: first (MF) and a later one.
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    for frag in [0x2000u16, 0x0010] {
        let mut f = frame.clone();
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        fix_ipv4_checksum(&mut f, 14);
        lab.expect(lab.access, &f, XdpAction::Pass, Counter::PassFragment);
    }
    // An interface the instance does not know.
    lab.expect(1, &frame, XdpAction::Pass, Counter::PassUnknownIface);
}

#[test]
fn malformed_headers_are_passed_and_counted() {
    let lab = forwarding_lab(Outer::default());
    let inner = inner_v4(SUB_V4, CORE_V4, b"x");
    // L2TPv3-over-UDP style version field.
    let v3 = lac_frame(
        Outer::default(),
        LAC_PORT,
        1701,
        &l2tp_payload(L2tpOpts { version: 3, ..Default::default() }, 100, 200, PPP_FULL, 0x21, &inner),
    );
    lab.expect(lab.access, &v3, XdpAction::Pass, Counter::PassMalformed);
    // Offset Size beyond what the program follows.
    let big = lac_frame(
        Outer::default(),
        LAC_PORT,
        1701,
        &l2tp_payload(
            L2tpOpts { offset: Some(3000), ..Default::default() },
            100,
            200,
            PPP_FULL,
            0x21,
            &inner,
        ),
    );
    lab.expect(lab.access, &big, XdpAction::Pass, Counter::PassMalformed);
    // L2TP Length shorter than its own header.
    let mut short =
        l2tp_payload(L2tpOpts { length: true, ..Default::default() }, 100, 200, PPP_FULL, 0x21, &inner);
    short[2..4].copy_from_slice(&4u16.to_be_bytes());
    lab.expect(
        lab.access,
        &lac_frame(Outer::default(), LAC_PORT, 1701, &short),
        XdpAction::Pass,
        Counter::PassMalformed,
    );
    // PPP address FF followed by something other than the UI control 03.
    let mut bad_ctl = l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x21, &inner);
    bad_ctl[7] = 0x05;
    lab.expect(
        lab.access,
        &lac_frame(Outer::default(), LAC_PORT, 1701, &bad_ctl),
        XdpAction::Pass,
        Counter::PassMalformed,
    );
    // IPv4 protocol number, IPv6 packet inside.
    let v6in4 = l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x21, &inner_v6(SUB_V6, CORE_V6, b"x"));
    lab.expect(
        lab.access,
        &lac_frame(Outer::default(), LAC_PORT, 1701, &v6in4),
        XdpAction::Pass,
        Counter::PassMalformed,
    );
    // Outer IPv4 header length below 5 words.
    let mut f = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    f[14] = 0x44;
    lab.expect(lab.access, &f, XdpAction::Pass, Counter::PassMalformed);
    // UDP length pointing past the IP packet.
    let mut f = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    let ulen = u16::from_be_bytes([f[38], f[39]]) + 10;
    f[38..40].copy_from_slice(&ulen.to_be_bytes());
    lab.expect(lab.access, &f, XdpAction::Pass, Counter::PassMalformed);
}

#[test]
fn ethernet_padding_after_a_short_frame_is_ignored() {
    let lab = forwarding_lab(Outer::default());
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();
    let inner = inner_v4(SUB_V4, CORE_V4, b"");
    let mut frame = lac_frame(
        Outer::default(),
        LAC_PORT,
        1701,
        &l2tp_payload(
            L2tpOpts { length: true, ..Default::default() },
            100,
            200,
            PppHdr { address_control: false, short_protocol: true },
            0x21,
            &inner,
        ),
    );
    frame.resize(frame.len().max(60) + 4, 0);
    lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream);
}

#[test]
fn every_truncation_is_counted_and_never_redirected() {
    for outer in all_outers() {
        let lab = forwarding_lab(outer);
        let xsk = BoundXsk::bind(&lab.access_name, 0);
        lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();
        let frames = [
            data_frame(outer, L2tpOpts::default(), PPP_FULL),
            data_frame(
                outer,
                L2tpOpts {
                    length: true,
                    sequence: true,
                    offset: Some(2),
                    priority: true,
                    ..Default::default()
                },
                PppHdr { address_control: false, short_protocol: true },
            ),
            data_frame_v6(outer, L2tpOpts { length: true, ..Default::default() }, PPP_FULL),
        ];
        for frame in frames {
            // The whole frame is redirected: the truncations below fail only
            // because of their length.
            lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream);
            for len in 0..frame.len() {
                let cut = &frame[..len];
                let before = lab.counters();
                match lab
                    .steering
                    .test_run(cut, TestRunContext { ingress_ifindex: lab.access, rx_queue_index: 0 })
                {
                    Ok(r) => {
                        assert_eq!(r.action, XdpAction::Pass, "{len} bytes of {outer:?}");
                        assert_only(&lab.counters().since(&before), Counter::PassTruncated);
                    }
                    Err(_) => {
                        // The kernel refuses test frames shorter than an
                        // Ethernet header; no NIC delivers one either.
                        assert!(len < 14, "test run refused a {len}-byte frame");
                        assert_eq!(lab.counters(), before);
                    }
                }
            }
        }
        // Core side: a truncated packet to a subscriber.
        let xsk_core = BoundXsk::bind(&lab.core_name, 0);
        lab.steering.maps().set_xsk(64, xsk_core.fd()).unwrap();
        let dst = if outer.ipv6 { IpAddr::V6(SUB_V6) } else { IpAddr::V4(SUB_V4) };
        let frame = core_frame(dst, outer.vlan);
        lab.expect(lab.core, &frame, XdpAction::Redirect, Counter::RedirectDownstream);
        for len in 14..frame.len() {
            let before = lab.counters();
            let r = lab.run_on(lab.core, &frame[..len]);
            assert_eq!(r.action, XdpAction::Pass);
            assert_only(&lab.counters().since(&before), Counter::PassTruncated);
        }
    }
}

#[test]
fn pinned_maps_are_shared_with_a_second_process_view() {
    let pins = lns_testlab::PinDir::new().unwrap();
    let lab = Lab::with_options(LoadOptions {
        pin_dir: Some(pins.path().to_path_buf()),
        max_sessions: 512,
        ..Default::default()
    });
    // Another process (the control plane, lnsctl) opens the pins.
    let other = lns_bpf::open_pinned(pins.path()).expect("open pinned maps");
    assert_eq!(other.max_sessions(), 512);
    assert_eq!(other.read_config().unwrap().l2tp_port.to_host(), 1701);
    other.install_session(9, &Lab::session(SessionState::Forwarding)).unwrap();
    // ... and the program sees it.
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassNoSocket);
    // Counters are readable by name through the pins.
    assert_eq!(other.counters().unwrap().get(Counter::from_name("pass_no_socket").unwrap()), 1);
    // A slot in use is refused, a session moves to forwarding by update.
    assert!(other.install_session(9, &Lab::session(SessionState::Forwarding)).is_err());
    let mut s = other.read_session(9).unwrap();
    s.state = SessionState::Control as u32;
    other.update_session(9, &s).unwrap();
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassSessionNotForwarding);
    // One Ns counter per session for every process: two mappings (the
    // control plane's and a worker's) take numbers from the same sequence,
    // and installing a session starts it again at 0.
    let (a, b) = (other.mmap_session_ns().unwrap(), lab.steering.maps().mmap_session_ns().unwrap());
    assert_eq!((a.fetch_add(9), b.fetch_add(9), a.fetch_add(9)), (Some(0), Some(1), Some(2)));
    assert_eq!(a.fetch_add(512), None, "out of range");
    other.remove_session(9).unwrap();
    other.install_session(9, &Lab::session(SessionState::Control)).unwrap();
    assert_eq!(b.fetch_add(9), Some(0));
    other.remove_session(9).unwrap();
    assert_eq!(other.address_entries(), 0);
    // Out-of-range slots are an error, not a crash.
    assert!(other.install_session(512, &Lab::session(SessionState::Forwarding)).is_err());

    // Unpinning removes every pin of the instance.
    lab.steering.unpin().unwrap();
    assert!(lns_bpf::open_pinned(pins.path()).is_err());
}

#[test]
fn abi_mismatch_is_refused() {
    let pins = lns_testlab::PinDir::new().unwrap();
    let lab = Lab::with_options(LoadOptions {
        pin_dir: Some(pins.path().to_path_buf()),
        max_sessions: 64,
        ..Default::default()
    });
    let maps = lab.steering.maps();
    let mut cfg = maps.read_config().unwrap();
    cfg.abi_version = 999;
    maps.write_config(&cfg).unwrap();
    match lns_bpf::open_pinned(pins.path()) {
        Err(lns_bpf::Error::AbiMismatch { found: 999, .. }) => {}
        other => panic!("expected an ABI mismatch, got {other:?}"),
    }
}

fn fix_ipv4_checksum(f: &mut [u8], l3: usize) {
    f[l3 + 10] = 0;
    f[l3 + 11] = 0;
    let sum = lns_wire::checksum::of(&f[l3..l3 + 20]);
    f[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn next_hops_come_from_the_kernel_tables() {
    let lab = forwarding_lab(Outer::default());
    let maps = lab.steering.maps();
    let mut cfg = maps.read_config().unwrap();
    cfg.nh_cache_ms = 0;
    maps.write_config(&cfg).unwrap();
    let xa = BoundXsk::bind(&lab.access_name, 0);
    let xc = BoundXsk::bind(&lab.core_name, 0);
    lab.steering.maps().set_xsk(0, xa.fd()).unwrap();
    lab.steering.maps().set_xsk(64, xc.fd()).unwrap();
    let mac = |dev: &str| -> [u8; 6] {
        let out = lab.ns.exec("cat", &[&format!("/sys/class/net/{dev}/address")]).unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let v: Vec<u8> = s.trim().split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
        v.try_into().unwrap()
    };

    // Upstream: toward the core next hop, out of the core interface.
    for frame in [
        data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL),
        data_frame_v6(Outer::default(), L2tpOpts::default(), PPP_FULL),
    ] {
        let m = lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream).meta.unwrap();
        assert_eq!(m.egress_ifindex, lab.core);
        assert_eq!(m.dmac, [2, 0, 0, 0, 0, 3]);
        assert_eq!(m.smac, mac("core0"));
    }
    // Downstream: toward the session's LAC, out of the access interface.
    let m = lab
        .expect(
            lab.core,
            &core_frame(IpAddr::V4(SUB_V4), false),
            XdpAction::Redirect,
            Counter::RedirectDownstream,
        )
        .meta
        .unwrap();
    assert_eq!(m.egress_ifindex, lab.access);
    assert_eq!(m.dmac, LAC_MAC);
    assert_eq!(m.smac, mac("acc0"));

    // An unresolved next hop goes to the stack, and is remembered for the
    // data plane to have resolved.
    lab.ns.ip(&["neigh", "del", "203.0.113.7", "dev", "core0"]).unwrap();
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassNoNeighbour);
    assert_eq!(lab.steering.maps().neighbour_misses().unwrap(), vec![IpAddr::V4(CORE_V4)]);
    assert!(lab.steering.maps().neighbour_misses().unwrap().is_empty(), "reading drains the misses");

    // A blackholed destination is dropped.
    lab.ns.ip(&["route", "add", "blackhole", "203.0.113.7/32"]).unwrap();
    lab.expect(lab.access, &frame, XdpAction::Drop, Counter::DropNoRoute);

    // Forwarding off: the kernel decides.
    lab.ns
        .exec("sysctl", &["-qw", "net.ipv4.conf.all.forwarding=0", "net.ipv4.conf.acc0.forwarding=0"])
        .unwrap();
    lab.ns.ip(&["route", "del", "blackhole", "203.0.113.7/32"]).unwrap();
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassNotForwarded);
}

#[test]
fn maps_are_sized_by_the_loader() {
    let pins = lns_testlab::PinDir::new().unwrap();
    let opts = LoadOptions {
        pin_dir: Some(pins.path().to_path_buf()),
        max_sessions: 40000,
        max_workers: 3,
        ..Default::default()
    };
    let _s = lns_bpf::Steering::load(&opts).unwrap();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(maps.max_sessions(), 40000);
    assert_eq!(maps.stats_rows(), 3, "one row of per-session counters per worker");
    // Two prefixes per session fit (SLAAC and delegated): more than the
    // 65,536 of the program's static definition.
    for k in 0..70_000u32 {
        let p = Ipv6Addr::new(0x2001, 0xdb8, 0x1000 + (k >> 16) as u16, k as u16, 0, 0, 0, 0);
        maps.add_route_v6(p, 64, k % 40_000).unwrap();
    }
}

/// Cached next hops last until the epoch moves (the data plane moves it
/// every --nh-cache-ms and on a flush), and each CPU's cache holds two
/// destinations per set.
#[test]
fn cached_next_hops_last_until_the_epoch_moves() {
    // The cache is per CPU and a test run runs on the caller's CPU.
    assert!(core_affinity::set_for_current(core_affinity::CoreId { id: 0 }), "pinning the test thread");
    let lab = forwarding_lab(Outer::default());
    let xc = BoundXsk::bind(&lab.core_name, 0);
    let maps = lab.steering.maps();
    maps.set_xsk(64, xc.fd()).unwrap();
    let mut cfg = maps.read_config().unwrap();
    cfg.nh_cache_ms = 300;
    maps.write_config(&cfg).unwrap();
    let frame = core_frame(IpAddr::V4(SUB_V4), false);
    let dmac = |lab: &Lab| {
        lab.expect(lab.core, &frame, XdpAction::Redirect, Counter::RedirectDownstream).meta.unwrap().dmac
    };
    let replace = |mac: &str| {
        lab.ns
            .ip(&["neigh", "replace", "192.0.2.2", "lladdr", mac, "dev", "acc0", "nud", "permanent"])
            .unwrap();
    };
    assert_eq!(dmac(&lab), LAC_MAC);
    // The LAC's MAC changes (a failover): the cached one is used until the
    // epoch moves, then the kernel's new answer.
    replace("02:00:00:00:00:99");
    std::thread::sleep(std::time::Duration::from_millis(350));
    assert_eq!(dmac(&lab), LAC_MAC, "cached: only the epoch ages entries");
    let epoch = maps.read_config().unwrap().nh_epoch;
    maps.flush_nexthops().unwrap();
    assert_eq!(maps.read_config().unwrap().nh_epoch, epoch.wrapping_add(1));
    assert_eq!(dmac(&lab), [2, 0, 0, 0, 0, 0x99], "looked up again");
    replace("02:00:00:00:00:98");
    assert_eq!(dmac(&lab), [2, 0, 0, 0, 0, 0x99], "cached again");
    maps.flush_nexthops().unwrap();
    assert_eq!(dmac(&lab), [2, 0, 0, 0, 0, 0x98]);

    // With caching off every frame asks the kernel.
    cfg = maps.read_config().unwrap();
    cfg.nh_cache_ms = 0;
    maps.write_config(&cfg).unwrap();
    replace("02:00:00:00:00:97");
    assert_eq!(dmac(&lab), [2, 0, 0, 0, 0, 0x97]);
}

/// IPv6CP opens after the session was installed (prefix added by an
/// update), closes again (prefix removed), and the session ends: the LPM
/// entry follows each step, and the core side sees it.
#[test]
fn ipv6_prefix_added_and_removed_by_update() {
    let lab = Lab::new();
    let maps = lab.steering.maps();
    let xsk = BoundXsk::bind(&lab.core_name, 0);
    maps.set_xsk(64, xsk.fd()).unwrap();
    let mut s = Lab::session(SessionState::Control);
    s.ipv4 = [0; 4];
    s.ipv6_prefix_len = 0;
    s.ipv6_prefix = [0; 16];
    s.delegated_prefix_len = 0;
    s.delegated_prefix = [0; 16];
    lab.install(3, &s);
    let count = |name: &str| maps.entry_counts()[name];
    assert_eq!((count("lns_sessions"), count("lns_session_ids"), count("lns_sub_v6_64")), (1, 1, 0));
    let to_sub = core_frame(IpAddr::V6(SUB_V6), false);
    lab.expect(lab.core, &to_sub, XdpAction::Pass, Counter::PassNotL2tp);

    // IPv6CP up: prefix and Forwarding in one update.
    s.state = SessionState::Forwarding as u32;
    s.ipv6_prefix = SUB_PREFIX.octets();
    s.ipv6_prefix_len = 64;
    maps.update_session(3, &s).unwrap();
    assert_eq!((count("lns_sub_v6_64"), count("lns_sub_v6_lpm")), (1, 0), "a /64 goes to the /64 hash");
    let r = lab.expect(lab.core, &to_sub, XdpAction::Redirect, Counter::RedirectDownstream);
    assert_eq!(r.meta.unwrap().session_index, 3);
    // An IPv6-only session: an IPv4 source is spoofed, its prefix is not.
    let up = |inner: &[u8], proto: u16| {
        lac_frame(
            Outer::default(),
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, proto, inner),
        )
    };
    let xsk_access = BoundXsk::bind(&lab.access_name, 0);
    maps.set_xsk(0, xsk_access.fd()).unwrap();
    lab.expect(
        lab.access,
        &up(&inner_v6(SUB_V6, CORE_V6, b"x"), 0x57),
        XdpAction::Redirect,
        Counter::RedirectUpstream,
    );
    lab.expect(
        lab.access,
        &up(&inner_v4(SUB_V4, CORE_V4, b"x"), 0x21),
        XdpAction::Drop,
        Counter::DropSpoofed,
    );

    // IPv6CP down: the prefix goes, the entry stays.
    s.state = SessionState::Control as u32;
    s.ipv6_prefix = [0; 16];
    s.ipv6_prefix_len = 0;
    maps.update_session(3, &s).unwrap();
    assert_eq!((count("lns_sessions"), count("lns_sub_v6_64")), (1, 0));
    lab.expect(lab.core, &to_sub, XdpAction::Pass, Counter::PassNotL2tp);

    // Up again, then the session ends: nothing left anywhere.
    s.state = SessionState::Forwarding as u32;
    s.ipv6_prefix = SUB_PREFIX.octets();
    s.ipv6_prefix_len = 64;
    maps.update_session(3, &s).unwrap();
    maps.remove_session(3).unwrap();
    assert!(maps.entry_counts().values().all(|n| *n == 0), "{:?}", maps.entry_counts());
}

/// A session at its direct slot is found without the hash; one whose
/// direct slot holds another session is still found (through the hash),
/// and the other session does not capture its frames.
#[test]
fn sessions_are_found_at_their_direct_slot_and_elsewhere() {
    let lab = Lab::new();
    let maps = lab.steering.maps();
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    maps.set_xsk(0, xsk.fd()).unwrap();
    let s = Lab::session(SessionState::Forwarding);
    let direct = lns_bpf::abi::direct_slot(s.key(), maps.max_sessions()).unwrap();
    assert_eq!(direct, 200, "one bank: the session id is the slot");
    assert_eq!(maps.free_direct_slot(s.key()).unwrap(), Some(200));
    lab.install(direct, &s);
    assert_eq!(maps.free_direct_slot(s.key()).unwrap(), None, "taken");
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    // At its direct slot and forwarding: a fast slot, sent to the worker
    // unchecked, with what the worker needs to check it.
    assert!(maps.fast_slot(200));
    let r = lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstreamCheck);
    let meta = r.meta.unwrap();
    assert_eq!(meta.session_index, 200);
    assert_eq!(meta.flags, lns_bpf::abi::XdpMeta::CHECK);
    assert_eq!((meta.outer_l3, meta.outer_l4, meta.l2tp_ids, meta.outer_ip_version), (14, 34, 44, 4));
    assert_eq!(&frame[44..48], &[0, 100, 0, 200], "the ids are where the worker is told");

    // Session 300 of tunnel 101 has direct slot 300 in one bank; an
    // operator's session of tunnel 100 sits there, so 300/101 lives at 7.
    let v4_only = |tunnel: u16, session: u16, last: u8| {
        let mut s = Lab::session(SessionState::Forwarding);
        (s.local_tunnel_id, s.local_session_id) = (tunnel, session);
        s.ipv4 = [198, 51, 100, last];
        s.ipv6_prefix_len = 0;
        s.delegated_prefix_len = 0;
        s
    };
    lab.install(300, &v4_only(100, 300, 30));
    assert!(maps.fast_slot(300));
    lab.install(7, &v4_only(101, 300, 31));
    // 300/101's key names slot 300 too: its occupant's frames are checked
    // by the program again, which can tell the two keys apart.
    assert_eq!(maps.slot_marks(300), lns_bpf::abi::slot_mark::DISPLACED);
    assert!(!maps.fast_slot(300) && !maps.fast_slot(7));
    let from = |tunnel: u16, session: u16, src: Ipv4Addr| {
        let inner = inner_v4(src, CORE_V4, b"x");
        lac_frame(
            Outer::default(),
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), tunnel, session, PPP_FULL, 0x21, &inner),
        )
    };
    let r = lab.expect(
        lab.access,
        &from(101, 300, Ipv4Addr::new(198, 51, 100, 31)),
        XdpAction::Redirect,
        Counter::RedirectUpstream,
    );
    assert_eq!(r.meta.unwrap().session_index, 7, "found through the hash");
    let r = lab.expect(
        lab.access,
        &from(100, 300, Ipv4Addr::new(198, 51, 100, 30)),
        XdpAction::Redirect,
        Counter::RedirectUpstream,
    );
    assert_eq!(r.meta.unwrap().session_index, 300);
    // Tunnel 101's frame does not pass as the squatter's (its source is not
    // the squatter's address, and the slot's key differs anyway).
    lab.expect(
        lab.access,
        &from(101, 300, Ipv4Addr::new(198, 51, 100, 30)),
        XdpAction::Drop,
        Counter::DropSpoofed,
    );
    // Removed, the direct slot no longer answers: an unknown session.
    maps.remove_session(200).unwrap();
    assert!(!maps.fast_slot(200));
    lab.expect(lab.access, &frame, XdpAction::Drop, Counter::DropUnknownSession);
    // The displaced session gone, slot 300 is a fast slot again.
    maps.remove_session(7).unwrap();
    assert_eq!(maps.slot_marks(300), 0);
    assert!(maps.fast_slot(300));
    let r = lab.expect(
        lab.access,
        &from(100, 300, Ipv4Addr::new(198, 51, 100, 30)),
        XdpAction::Redirect,
        Counter::RedirectUpstreamCheck,
    );
    assert_eq!(r.meta.unwrap().session_index, 300);
}

/// A slot's bit in lns_fast_slots follows its session: set while it
/// forwards at its direct slot with only its own addresses, clear otherwise.
#[test]
fn fast_slots_follow_state_placement_and_extra_addresses() {
    let lab = Lab::new();
    let maps = lab.steering.maps();
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    maps.set_xsk(0, xsk.fd()).unwrap();
    let mut s = Lab::session(SessionState::Control);
    lab.install(200, &s);
    assert!(!maps.fast_slot(200), "negotiating");
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassSessionNotForwarding);
    s.state = SessionState::Forwarding as u32;
    maps.update_session(200, &s).unwrap();
    assert!(maps.fast_slot(200), "forwarding at its direct slot");
    lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstreamCheck);

    // What a fast slot's frames still meet in the program: PPP control and
    // link-local IPv6 go to the control plane; a spoofed source or a wrong
    // LAC port goes to the worker, which drops it (tested in the data
    // plane's tests); an unknown key on another slot is dropped here.
    let lcp = session_frame(LAC_PORT, 0xc021, &[1, 1, 0, 4]);
    lab.expect(lab.access, &lcp, XdpAction::Pass, Counter::PassPppControl);
    let ll = inner_v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1), CORE_V6, b"x");
    let ll = session_frame(LAC_PORT, 0x57, &ll);
    lab.expect(lab.access, &ll, XdpAction::Pass, Counter::PassIpv6LinkLocal);
    let spoofed = inner_v4(Ipv4Addr::new(203, 0, 113, 99), CORE_V4, b"x");
    let spoofed = session_frame(LAC_PORT + 1, 0x21, &spoofed);
    lab.expect(lab.access, &spoofed, XdpAction::Redirect, Counter::RedirectUpstreamCheck);
    let unknown = lac_frame(
        Outer::default(),
        LAC_PORT,
        1701,
        &l2tp_payload(L2tpOpts::default(), 100, 201, PPP_FULL, 0x21, &inner_v4(SUB_V4, CORE_V4, b"x")),
    );
    lab.expect(lab.access, &unknown, XdpAction::Drop, Counter::DropUnknownSession);

    // Re-adding its own address changes nothing; a framed route makes the
    // program check the session's frames, for as long as it lives.
    maps.add_subscriber_v4(SUB_V4, 200).unwrap();
    assert!(maps.fast_slot(200));
    maps.add_route_v4(Ipv4Addr::new(203, 0, 113, 128), 25, 200).unwrap();
    assert_eq!(maps.slot_marks(200), lns_bpf::abi::slot_mark::EXTRA);
    assert!(!maps.fast_slot(200));
    let routed = inner_v4(Ipv4Addr::new(203, 0, 113, 130), CORE_V4, b"x");
    let routed = session_frame(LAC_PORT, 0x21, &routed);
    lab.expect(lab.access, &routed, XdpAction::Redirect, Counter::RedirectUpstream);
    maps.update_session(200, &s).unwrap();
    assert!(!maps.fast_slot(200), "the mark outlives updates");
    maps.remove_route_v4(Ipv4Addr::new(203, 0, 113, 128), 25).unwrap();
    maps.remove_session(200).unwrap();
    assert_eq!(maps.slot_marks(200), 0, "and ends with the session");
    assert!(!maps.fast_slot(200));
    lab.install(200, &s);
    assert!(maps.fast_slot(200));
    maps.add_subscriber_v6(Ipv6Addr::new(0x2001, 0xdb8, 0x300, 0, 0, 0, 0, 1), 200).unwrap();
    assert!(!maps.fast_slot(200), "an extra IPv6 address too");
}

/// With the workers' checks off, the program checks every frame, fast slot
/// or not.
#[test]
fn without_worker_checks_the_program_checks_fast_slots_too() {
    let lab =
        Lab::with_options(LoadOptions { max_sessions: 1024, worker_checks: false, ..Default::default() });
    let maps = lab.steering.maps();
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    maps.set_xsk(0, xsk.fd()).unwrap();
    lab.install(200, &Lab::session(SessionState::Forwarding));
    assert!(maps.fast_slot(200));
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    let r = lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream);
    assert_eq!(r.meta.unwrap().flags, 0);
    let spoofed = inner_v4(Ipv4Addr::new(203, 0, 113, 99), CORE_V4, b"x");
    let spoofed = session_frame(LAC_PORT, 0x21, &spoofed);
    lab.expect(lab.access, &spoofed, XdpAction::Drop, Counter::DropSpoofed);
}

/// Two banks: the tunnel id's low bit picks the bank.
#[test]
fn direct_slots_span_banks() {
    use lns_bpf::abi::{direct_slot, session_bank_mask, SessionKey};
    assert_eq!(session_bank_mask(1024), 0);
    assert_eq!(session_bank_mask(65536), 0);
    assert_eq!(session_bank_mask(65537), 1);
    assert_eq!(session_bank_mask(131072), 1);
    assert_eq!(session_bank_mask(200_000), 3);
    let key = |tunnel_id, session_id| SessionKey { tunnel_id, session_id };
    assert_eq!(direct_slot(key(3, 5), 131072), Some(65536 + 5));
    assert_eq!(direct_slot(key(2, 5), 131072), Some(5));
    assert_eq!(direct_slot(key(3, 5), 100_000), Some(65541));
    assert_eq!(direct_slot(key(3, 40000), 100_000), None, "beyond the table");
    assert_eq!(direct_slot(key(9, 2000), 1024), None);

    let pins = lns_testlab::PinDir::new().unwrap();
    let opts =
        LoadOptions { pin_dir: Some(pins.path().to_path_buf()), max_sessions: 131072, ..Default::default() };
    let _s = lns_bpf::Steering::load(&opts).unwrap();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(maps.read_config().unwrap().session_bank_mask, 1, "the program gets the same mask");
}

/// The /64 hash answers before the trie and the /128s, so the writers
/// refuse what it would shadow.
#[test]
fn a_longer_prefix_inside_another_sessions_64_is_refused() {
    let lab = Lab::new();
    let maps = lab.steering.maps();
    let net = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 1, 0, 0, 0, 0);
    maps.add_route_v6(net, 64, 1).unwrap();
    let inside = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 1, 0, 0, 0, 0x42);
    assert!(matches!(maps.add_subscriber_v6(inside, 2), Err(lns_bpf::Error::PrefixOverlap { other: 1, .. })));
    assert!(matches!(maps.add_route_v6(inside, 96, 2), Err(lns_bpf::Error::PrefixOverlap { other: 1, .. })));
    maps.add_route_v6(inside, 96, 1).unwrap();
    // A shorter prefix around it (a delegated /56) is fine: the /64 is the
    // longer match.
    maps.add_route_v6(Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 0), 56, 3).unwrap();
    // And a /64 over another session's longer entry is refused.
    maps.add_subscriber_v6(Ipv6Addr::new(0x2001, 0xdb8, 0x78, 1, 0, 0, 0, 1), 4).unwrap();
    assert!(matches!(
        maps.add_route_v6(Ipv6Addr::new(0x2001, 0xdb8, 0x78, 1, 0, 0, 0, 0), 64, 5),
        Err(lns_bpf::Error::PrefixOverlap { other: 4, .. })
    ));
    // Once that entry is gone, the /64 may be routed; the tally is empty.
    assert!(maps.remove_subscriber_v6(Ipv6Addr::new(0x2001, 0xdb8, 0x78, 1, 0, 0, 0, 1)).unwrap());
    maps.add_route_v6(Ipv6Addr::new(0x2001, 0xdb8, 0x78, 1, 0, 0, 0, 0), 64, 5).unwrap();
    assert!(maps.remove_route_v6(net, 64).unwrap());
    assert!(!maps.remove_route_v6(net, 64).unwrap());
    assert!(maps.remove_route_v6(inside, 96).unwrap());
    assert_eq!(maps.entry_counts()["lns_sub_v6_long"], 0, "every longer entry counted out");
}

/// The flat subscriber tables, seen from outside: raw reads and writes of
/// the pinned arrays (as any process could do them), the program's answers.
struct FlatLab {
    lab: Lab,
    v4: libbpf_rs::MapHandle,
    v6: libbpf_rs::MapHandle,
    hash_v4: libbpf_rs::MapHandle,
    hash_v6_64: libbpf_rs::MapHandle,
    shift: u32,
    _xsk: BoundXsk,
    _pins: lns_testlab::PinDir,
}

impl FlatLab {
    fn new() -> FlatLab {
        use libbpf_rs::MapHandle;
        let pins = lns_testlab::PinDir::new().unwrap();
        let lab = Lab::with_options(LoadOptions {
            pin_dir: Some(pins.path().to_path_buf()),
            max_sessions: 1024,
            ..Default::default()
        });
        let xsk = BoundXsk::bind(&lab.core_name, 0);
        lab.steering.maps().set_xsk(64, xsk.fd()).unwrap();
        let open = |n: &str| MapHandle::from_pinned_path(pins.path().join(n)).unwrap();
        let shift = lab.steering.maps().read_config().unwrap().sub_flat_shift;
        assert_eq!(shift, lns_bpf::abi::flat_shift(lns_bpf::abi::flat_entries(1024)));
        FlatLab {
            v4: open("lns_sub_v4_flat"),
            v6: open("lns_sub_v6_flat"),
            hash_v4: open("lns_sub_v4"),
            hash_v6_64: open("lns_sub_v6_64"),
            shift,
            lab,
            _xsk: xsk,
            _pins: pins,
        }
    }

    fn slot(&self, tag: u32, i: u32) -> u32 {
        let entries = 1u32 << (32 - self.shift);
        (lns_bpf::abi::flat_first_slot(tag, self.shift) + i) & (entries - 1)
    }

    fn read(&self, table: &libbpf_rs::MapHandle, slot: u32) -> FlatEntry {
        use libbpf_rs::{MapCore, MapFlags};
        let v = table.lookup(&slot.to_ne_bytes(), MapFlags::ANY).unwrap().unwrap();
        bytemuck::pod_read_unaligned(&v)
    }

    fn write(&self, table: &libbpf_rs::MapHandle, slot: u32, e: FlatEntry) {
        use libbpf_rs::{MapCore, MapFlags};
        table.update(&slot.to_ne_bytes(), bytemuck::bytes_of(&e), MapFlags::ANY).unwrap();
    }

    /// The live entries of a tag's run, in order.
    fn run(&self, table: &libbpf_rs::MapHandle, tag: u32) -> Vec<u32> {
        (0..FlatEntry::PROBES)
            .map(|i| self.read(table, self.slot(tag, i)))
            .filter(|e| e.tag == tag)
            .filter_map(FlatEntry::session)
            .collect()
    }

    /// The session the program sends a core packet for `dst` to, if any.
    fn owner(&self, dst: IpAddr) -> Option<u32> {
        let r = self.lab.run_on(self.lab.core, &core_frame(dst, false));
        match r.action {
            XdpAction::Redirect => Some(r.meta.unwrap().session_index),
            XdpAction::Pass => None,
            other => panic!("{dst}: {other:?}"),
        }
    }
}

fn net64(a: Ipv6Addr) -> [u8; 8] {
    a.octets()[..8].try_into().unwrap()
}

#[test]
fn flat_tables_answer_alone_and_a_stale_entry_never_misdirects() {
    use libbpf_rs::MapCore;
    let f = FlatLab::new();
    let maps = f.lab.steering.maps();
    f.lab.install(5, &Lab::session(SessionState::Forwarding));
    let mut other = Lab::session(SessionState::Forwarding);
    other.local_session_id = 201;
    other.ipv4 = [198, 51, 100, 11];
    other.ipv6_prefix = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x11, 0, 0, 0, 0).octets();
    other.delegated_prefix_len = 0;
    other.delegated_prefix = [0; 16];
    f.lab.install(6, &other);
    let t4 = lns_bpf::abi::flat_tag_v4(SUB_V4);
    let t6 = lns_bpf::abi::flat_tag_v6(net64(SUB_PREFIX));
    // The writers put each address where the program looks (the tags and
    // slots computed here in Rust are the program's).
    assert_eq!(f.run(&f.v4, t4), vec![5]);
    assert_eq!(f.run(&f.v6, t6), vec![5]);
    let counts = maps.entry_counts();
    assert_eq!((counts["lns_sub_v4_flat"], counts["lns_sub_v6_flat"]), (2, 2));

    // Without the hash entries the flat tables answer alone...
    f.hash_v4.delete(&SUB_V4.octets()).unwrap();
    f.hash_v6_64.delete(&net64(SUB_PREFIX)).unwrap();
    assert_eq!(f.owner(IpAddr::V4(SUB_V4)), Some(5));
    assert_eq!(f.owner(IpAddr::V6(SUB_V6)), Some(5));
    // ... and without either, nobody owns the address.
    let saved4 = f.read(&f.v4, f.slot(t4, 0));
    let saved6 = f.read(&f.v6, f.slot(t6, 0));
    f.write(&f.v4, f.slot(t4, 0), FlatEntry::default());
    f.write(&f.v6, f.slot(t6, 0), FlatEntry::default());
    assert_eq!(f.owner(IpAddr::V4(SUB_V4)), None);
    assert_eq!(f.owner(IpAddr::V6(SUB_V6)), None);
    // Put back, hashes too.
    maps.add_subscriber_v4(SUB_V4, 5).unwrap();
    maps.add_route_v6(SUB_PREFIX, 64, 5).unwrap();
    assert_eq!(f.read(&f.v4, f.slot(t4, 0)), saved4);
    assert_eq!(f.read(&f.v6, f.slot(t6, 0)), saved6);

    // Entries a writer lost track of, or half-written ones: one naming a
    // session that does not own the address (6), one naming a free slot
    // (9), one beyond the table; ahead of the real entry in the run. The
    // program skips them all and finds 5.
    for (i, session_plus1) in [(0, 6 + 1), (1, 9 + 1), (2, 5000), (3, FlatEntry::TOMBSTONE)] {
        f.write(&f.v4, f.slot(t4, i), FlatEntry { tag: t4, session_plus1 });
        f.write(&f.v6, f.slot(t6, i), FlatEntry { tag: t6, session_plus1 });
    }
    f.write(&f.v4, f.slot(t4, 4), FlatEntry::new(t4, 5));
    f.write(&f.v6, f.slot(t6, 4), FlatEntry::new(t6, 5));
    assert_eq!(f.owner(IpAddr::V4(SUB_V4)), Some(5));
    assert_eq!(f.owner(IpAddr::V6(SUB_V6)), Some(5));
    // Stale entries only: the hash maps answer (still 5, never 6).
    f.write(&f.v4, f.slot(t4, 4), FlatEntry::default());
    f.write(&f.v6, f.slot(t6, 4), FlatEntry::default());
    assert_eq!(f.owner(IpAddr::V4(SUB_V4)), Some(5));
    assert_eq!(f.owner(IpAddr::V6(SUB_V6)), Some(5));
    // Session 6's own addresses are unaffected.
    assert_eq!(f.owner(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11))), Some(6));
    assert_eq!(f.owner(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x11, 0, 0, 0, 1))), Some(6));
}

#[test]
fn flat_runs_fill_up_share_tags_and_empty_again() {
    let f = FlatLab::new();
    let maps = f.lab.steering.maps();
    // Ten /64s whose tags all start at the same slot: eight fit in the run,
    // the ninth and tenth only in the hash map; all are found.
    let base = lns_bpf::abi::flat_first_slot(lns_bpf::abi::flat_tag_v6(net64(SUB_PREFIX)), f.shift);
    let prefixes: Vec<Ipv6Addr> = (0u16..=0xffff)
        .map(|n| Ipv6Addr::new(0x2001, 0xdb8, 0x400, n, 0, 0, 0, 0))
        .filter(|p| lns_bpf::abi::flat_first_slot(lns_bpf::abi::flat_tag_v6(net64(*p)), f.shift) == base)
        .take(10)
        .collect();
    assert_eq!(prefixes.len(), 10);
    for (i, p) in prefixes.iter().enumerate() {
        f.lab.install(10 + i as u32, &prefix_only_session(300 + i as u16, *p));
    }
    assert_eq!(maps.entry_counts()["lns_sub_v6_flat"], 8);
    for (i, p) in prefixes.iter().enumerate() {
        let mut o = p.octets();
        o[15] = 1;
        assert_eq!(f.owner(IpAddr::V6(Ipv6Addr::from(o))), Some(10 + i as u32), "{p}");
    }
    // Two /64s with one tag (the halves XORed): both in the table, each
    // found for its own session.
    let a = Ipv6Addr::new(0x2001, 0xdb8, 0x500, 1, 0, 0, 0, 0);
    let b = {
        // Both halves of b's /64 differ from a's by the same bits.
        let mut o = a.octets();
        for (i, d) in [0x0f, 0x00, 0x12, 0x34].into_iter().enumerate() {
            o[i] ^= d;
            o[i + 4] ^= d;
        }
        Ipv6Addr::from(o)
    };
    assert_eq!(lns_bpf::abi::flat_tag_v6(net64(a)), lns_bpf::abi::flat_tag_v6(net64(b)));
    assert_ne!(net64(a), net64(b));
    for (i, p) in [a, b].iter().enumerate() {
        f.lab.install(30 + i as u32, &prefix_only_session(400 + i as u16, *p));
    }
    let tag = lns_bpf::abi::flat_tag_v6(net64(a));
    assert_eq!(f.run(&f.v6, tag), vec![30, 31]);
    assert_eq!(f.owner(IpAddr::V6(a)), Some(30));
    assert_eq!(f.owner(IpAddr::V6(b)), Some(31));
    // Removing one leaves the other's entry alone.
    maps.remove_route_v6(a, 64).unwrap();
    assert_eq!(f.run(&f.v6, tag), vec![31]);
    assert_eq!(f.owner(IpAddr::V6(b)), Some(31));
    maps.remove_session(31).unwrap();
    maps.remove_session(30).unwrap();

    // The crowded run empties again: a removed entry leaves a tombstone
    // while entries follow it, so the later ones are still found; once the
    // run after it is empty it, and the tombstones before it, are empty.
    let slot = |i: u32| f.slot(lns_bpf::abi::flat_tag_v6(net64(prefixes[0])), i);
    for i in 0..4 {
        maps.remove_session(10 + i).unwrap();
    }
    for i in 0..4 {
        assert_eq!(f.read(&f.v6, slot(i)).session_plus1, FlatEntry::TOMBSTONE);
    }
    for (i, p) in prefixes.iter().enumerate().skip(4) {
        let mut o = p.octets();
        o[15] = 1;
        assert_eq!(f.owner(IpAddr::V6(Ipv6Addr::from(o))), Some(10 + i as u32), "{p}");
    }
    // A newcomer takes the first tombstone.
    f.lab.install(40, &prefix_only_session(500, prefixes[0]));
    assert_eq!(f.read(&f.v6, slot(0)), FlatEntry::new(lns_bpf::abi::flat_tag_v6(net64(prefixes[0])), 40));
    maps.remove_session(40).unwrap();
    for i in 4..10 {
        maps.remove_session(10 + i).unwrap();
    }
    assert_eq!(maps.entry_counts()["lns_sub_v6_flat"], 0);
    assert_eq!(maps.address_entries(), 0);
    for i in 0..FlatEntry::PROBES {
        assert_eq!(f.read(&f.v6, slot(i)), FlatEntry::default(), "slot {i} of the run");
    }
}

/// A forwarding session whose only address is the /64 `prefix`.
fn prefix_only_session(local_session_id: u16, prefix: Ipv6Addr) -> Session {
    let mut s = Lab::session(SessionState::Forwarding);
    s.local_session_id = local_session_id;
    s.ipv4 = [0; 4];
    s.ipv6_prefix = prefix.octets();
    s.delegated_prefix_len = 0;
    s.delegated_prefix = [0; 16];
    s
}

/// Writers racing on one slot (its session's state changing while another
/// session is displaced from it and removed again, as the control plane and
/// lnsctl may) leave its fast bit right once they are done.
#[test]
fn fast_bits_settle_right_under_racing_writers() {
    let steering =
        lns_bpf::Steering::load(&LoadOptions { max_sessions: 1024, ..Default::default() }).expect("load");
    let maps = steering.maps();
    let mut occupant = Lab::session(SessionState::Forwarding);
    (occupant.local_tunnel_id, occupant.local_session_id) = (100, 300);
    occupant.ipv6_prefix_len = 0;
    occupant.delegated_prefix_len = 0;
    maps.install_session(300, &occupant).unwrap();
    let mut displaced = occupant;
    displaced.local_tunnel_id = 101;
    displaced.ipv4 = [198, 51, 100, 31];
    std::thread::scope(|t| {
        t.spawn(|| {
            for _ in 0..300 {
                maps.install_session(7, &displaced).unwrap();
                assert!(!maps.fast_slot(7));
                maps.remove_session(7).unwrap();
            }
            maps.install_session(7, &displaced).unwrap();
        });
        t.spawn(|| {
            let mut s = occupant;
            for i in 0..600 {
                s.state = if i % 2 == 0 { SessionState::Control } else { SessionState::Forwarding } as u32;
                maps.update_session(300, &s).unwrap();
            }
        });
    });
    assert_eq!(maps.read_session(300).unwrap().session_state(), Some(SessionState::Forwarding));
    assert_eq!(maps.slot_marks(300), lns_bpf::abi::slot_mark::DISPLACED);
    assert!(!maps.fast_slot(300), "a session is displaced from slot 300");
    maps.remove_session(7).unwrap();
    assert_eq!(maps.slot_marks(300), 0);
    assert!(maps.fast_slot(300), "forwarding at its direct slot, nothing displaced");
}

/// The pools the standard session's own addresses come from: IPv4 /32s,
/// SLAAC /64s and delegated /56s.
fn pool_lab() -> Lab {
    Lab::with_options(LoadOptions {
        max_sessions: 1024,
        pools: vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8:100::/48".parse().unwrap(),
            "2001:db8:200::/40,56".parse().unwrap(),
        ],
        pool_units: 1 << 18,
        ..Default::default()
    })
}

/// Downstream, a forwarding session's own units go to the worker flagged
/// for its checks, with the unit and no next hop; everything else in and
/// out of the pools takes the program's lookups as before.
#[test]
fn pool_units_of_forwarding_sessions_go_to_the_workers() {
    let lab = pool_lab();
    let maps = lab.steering.maps();
    let xsk = BoundXsk::bind(&lab.core_name, 0);
    maps.set_xsk(64, xsk.fd()).unwrap();
    let v4_unit = 10; // 198.51.100.10 in the first pool
    let v6_unit = 256 + 0x10; // 2001:db8:100:10::/64 in the second
    let pd_unit = 256 + 65536; // 2001:db8:200::/56, the third pool's unit 0
    let units = [
        (IpAddr::V4(SUB_V4), v4_unit),
        (IpAddr::V6(SUB_V6), v6_unit),
        (IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0xff, 1, 2, 3, 4)), pd_unit),
    ];

    let mut s = Lab::session(SessionState::Control);
    lab.install(200, &s);
    for (_, u) in units {
        assert_eq!(maps.pool_unit_session(u), Some(200));
        assert!(!maps.pool_unit_fast(u), "negotiating");
    }
    lab.expect(
        lab.core,
        &core_frame(IpAddr::V4(SUB_V4), false),
        XdpAction::Pass,
        Counter::PassSubscriberNotForwarding,
    );

    s.state = SessionState::Forwarding as u32;
    maps.update_session(200, &s).unwrap();
    for vlan in [false, true] {
        for (d, u) in units {
            assert!(maps.pool_unit_fast(u));
            let r = lab.expect(
                lab.core,
                &core_frame(d, vlan),
                XdpAction::Redirect,
                Counter::RedirectDownstreamCheck,
            );
            let m = r.meta.unwrap();
            assert_eq!(m.session_index, u);
            assert_eq!(m.flags, lns_bpf::abi::XdpMeta::CHECK);
            assert_eq!(m.direction(), Some(Direction::Downstream));
            assert_eq!(m.inner_offset, if vlan { 18 } else { 14 });
            assert_eq!(m.ip_version, if d.is_ipv4() { 4 } else { 6 });
            assert_eq!(
                (m.egress_ifindex, m.dmac, m.smac),
                (0, [0; 6], [0; 6]),
                "the worker finds the next hop"
            );
        }
    }

    // Units nobody owns, and addresses outside the pools: the program's
    // lookups, which find nobody.
    for d in [
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x11, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0x100, 0, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 101, 10)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x101, 0x10, 0, 0, 0, 1)),
    ] {
        lab.expect(lab.core, &core_frame(d, false), XdpAction::Pass, Counter::PassNotL2tp);
    }

    // A framed route or an extra address inside a pool is not a unit of
    // the session's own: its frames take the program's lookups.
    maps.add_subscriber_v4(Ipv4Addr::new(198, 51, 100, 20), 200).unwrap();
    assert_eq!(maps.pool_unit_session(20), None);
    assert!(!maps.pool_unit_fast(20));
    let r = lab.expect(
        lab.core,
        &core_frame(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20)), false),
        XdpAction::Redirect,
        Counter::RedirectDownstream,
    );
    assert_eq!(r.meta.unwrap().session_index, 200);
    maps.remove_subscriber_v4(Ipv4Addr::new(198, 51, 100, 20)).unwrap();
    // Another session pointed at this one's own address takes the unit
    // off the fast path (the address maps now answer the other session).
    let mut other = Lab::session(SessionState::Forwarding);
    other.local_session_id = 300;
    other.ipv4 = [0; 4];
    other.ipv6_prefix_len = 0;
    other.delegated_prefix_len = 0;
    lab.install(300, &other);
    maps.add_subscriber_v4(SUB_V4, 300).unwrap();
    assert!(!maps.pool_unit_fast(v4_unit));
    let r = lab.expect(
        lab.core,
        &core_frame(IpAddr::V4(SUB_V4), false),
        XdpAction::Redirect,
        Counter::RedirectDownstream,
    );
    assert_eq!(r.meta.unwrap().session_index, 300);
    maps.remove_session(300).unwrap();

    // Leaving forwarding or leaving altogether clears the units.
    s.state = SessionState::Control as u32;
    maps.update_session(200, &s).unwrap();
    assert!(units.iter().all(|(_, u)| !maps.pool_unit_fast(*u)));
    s.state = SessionState::Forwarding as u32;
    maps.update_session(200, &s).unwrap();
    assert!(units.iter().all(|(_, u)| maps.pool_unit_fast(*u)));
    maps.remove_session(200).unwrap();
    for (d, u) in units {
        assert!(!maps.pool_unit_fast(u));
        assert_eq!(maps.pool_unit_session(u), None);
        lab.expect(lab.core, &core_frame(d, false), XdpAction::Pass, Counter::PassNotL2tp);
    }

    // A delegated prefix of another length than the pool's unit is no
    // unit: the trie answers for it.
    s.delegated_prefix_len = 48;
    s.delegated_prefix = Ipv6Addr::new(0x2001, 0xdb8, 0x201, 0, 0, 0, 0, 0).octets();
    lab.install(200, &s);
    assert_eq!(maps.pool_unit_session(pd_unit + 256), None);
    let r = lab.expect(
        lab.core,
        &core_frame(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x201, 5, 0, 0, 0, 1)), false),
        XdpAction::Redirect,
        Counter::RedirectDownstream,
    );
    assert_eq!(r.meta.unwrap().session_index, 200);

    // A SLAAC prefix written with bits set past its length is still its
    // /64, as the address maps take it.
    maps.remove_session(200).unwrap();
    let mut s = Lab::session(SessionState::Forwarding);
    s.ipv6_prefix = SUB_V6.octets();
    lab.install(200, &s);
    assert!(maps.pool_unit_fast(v6_unit));
    lab.expect(
        lab.core,
        &core_frame(IpAddr::V6(SUB_V6), false),
        XdpAction::Redirect,
        Counter::RedirectDownstreamCheck,
    );
}

/// With the workers' checks off the pools change nothing.
#[test]
fn without_worker_checks_pools_take_the_programs_lookups() {
    let lab = Lab::with_options(LoadOptions {
        max_sessions: 1024,
        worker_checks: false,
        pools: vec!["198.51.100.0/24".parse().unwrap()],
        ..Default::default()
    });
    let maps = lab.steering.maps();
    let xsk = BoundXsk::bind(&lab.core_name, 0);
    maps.set_xsk(64, xsk.fd()).unwrap();
    lab.install(200, &Lab::session(SessionState::Forwarding));
    assert!(maps.pool_unit_fast(10));
    let r = lab.expect(
        lab.core,
        &core_frame(IpAddr::V4(SUB_V4), false),
        XdpAction::Redirect,
        Counter::RedirectDownstream,
    );
    assert_eq!(r.meta.unwrap().session_index, 200);
}

#[test]
fn pools_the_maps_cannot_hold_are_refused_at_load() {
    for pools in [
        vec!["198.51.100.0/24", "198.51.100.128/25"],
        vec!["2001:db8:100::/48", "2001:db8::/32,48"],
        vec!["2001:db8:100::/40"], // 2^24 /64s, more than the 2^17 units given
    ] {
        let opts = LoadOptions {
            max_sessions: 1024,
            pools: pools.iter().map(|p| p.parse().unwrap()).collect(),
            pool_units: 1 << 17,
            ..Default::default()
        };
        match lns_bpf::Steering::load(&opts) {
            Err(lns_bpf::Error::Pool(_)) => {}
            other => panic!("{pools:?}: {:?}", other.map(|_| ())),
        }
    }
}

/// The workers' next-hop lookup toward a LAC answers what the program's
/// bpf_fib_lookup does, and records a missing neighbour for the data plane.
#[test]
fn the_resolver_program_answers_from_the_kernel_tables() {
    use lns_bpf::abi::NhResult;
    let lab = Lab::new();
    let resolver = lab.steering.nh_resolver().unwrap();
    let mac = |dev: &str| -> [u8; 6] {
        let out = lab.ns.exec("cat", &[&format!("/sys/class/net/{dev}/address")]).unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let v: Vec<u8> = s.trim().split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
        v.try_into().unwrap()
    };
    for (src, dst) in [(IpAddr::V4(LNS_V4), IpAddr::V4(LAC_V4)), (IpAddr::V6(LNS_V6), IpAddr::V6(LAC_V6))] {
        let q = resolver.resolve(lab.core, src, dst).unwrap();
        assert_eq!(NhResult::from_raw(q.result), NhResult::Forward, "{dst}");
        assert_eq!(q.out_ifindex, lab.access);
        assert_eq!(q.dmac, LAC_MAC);
        assert_eq!(q.smac, mac("acc0"));
    }
    lab.ns.ip(&["neigh", "del", "192.0.2.2", "dev", "acc0"]).unwrap();
    let q = resolver.resolve(lab.core, IpAddr::V4(LNS_V4), IpAddr::V4(LAC_V4)).unwrap();
    assert_eq!(NhResult::from_raw(q.result), NhResult::NoNeighbour);
    assert_eq!(lab.steering.maps().neighbour_misses().unwrap(), vec![IpAddr::V4(LAC_V4)]);
    lab.ns.ip(&["route", "add", "blackhole", "192.0.2.2/32"]).unwrap();
    let q = resolver.resolve(lab.core, IpAddr::V4(LNS_V4), IpAddr::V4(LAC_V4)).unwrap();
    assert_eq!(NhResult::from_raw(q.result), NhResult::NoRoute);
    // Outside every route: the FIB declines.
    let q = resolver.resolve(lab.core, IpAddr::V4(LNS_V4), IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))).unwrap();
    assert_eq!(NhResult::from_raw(q.result), NhResult::NotForwarded);
}

/// Pool units are shared through the pins with the other writers, and a
/// data plane restarted on the same pins with other pools derives them
/// again from the sessions it keeps.
#[test]
fn pool_units_are_rebuilt_from_the_sessions_on_a_restart() {
    let pins = lns_testlab::PinDir::new().unwrap();
    let opts = |pools: &[&str]| LoadOptions {
        pin_dir: Some(pins.path().to_path_buf()),
        reuse_pinned: true,
        max_sessions: 512,
        pools: pools.iter().map(|p| p.parse().unwrap()).collect(),
        pool_units: 1 << 17,
        ..Default::default()
    };
    let lab = Lab::with_options(opts(&["198.51.100.0/24"]));
    let other = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(other.pools().len(), 1);
    other.install_session(200, &Lab::session(SessionState::Forwarding)).unwrap();
    let maps = lab.steering.maps();
    assert!(maps.pool_unit_fast(10) && maps.pool_unit_session(10) == Some(200));

    let restarted = lns_bpf::Steering::load(&opts(&["2001:db8:100::/48", "198.51.100.0/24"])).unwrap();
    let m = restarted.maps();
    assert_eq!(m.read_session(200).unwrap().state, SessionState::Forwarding as u32, "sessions kept");
    let v4_unit = 65536 + 10;
    assert!(m.pool_unit_fast(0x10) && m.pool_unit_session(0x10) == Some(200), "its /64");
    assert!(m.pool_unit_fast(v4_unit) && m.pool_unit_session(v4_unit) == Some(200), "its IPv4 address");
    assert!(!m.pool_unit_fast(10) && m.pool_unit_session(10).is_none(), "the old layout's unit");
    let counts = m.entry_counts();
    assert_eq!((counts["lns_pool_sessions"], counts["lns_pool_bits"]), (2, 2));
    let fresh = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(fresh.pool_unit(IpAddr::V4(SUB_V4), 32), Some(v4_unit));
    fresh.remove_session(200).unwrap();
    let counts = m.entry_counts();
    assert_eq!((counts["lns_pool_sessions"], counts["lns_pool_bits"]), (0, 0));
    lab.steering.unpin().unwrap();
}

/// A session flagged SLOW_PATH (an IPsec peer's, or kept off AF_XDP by
/// configuration) never reaches a socket: its L2TP data and the core's
/// packets to its addresses go to the kernel, counted, its slot's fast bit
/// and its pool units stay clear; without the flag the same session is on
/// the fast path again.
#[test]
fn a_slow_path_session_is_passed_both_ways() {
    let lab = pool_lab();
    let maps = lab.steering.maps();
    let (access_xsk, core_xsk) = (BoundXsk::bind(&lab.access_name, 0), BoundXsk::bind(&lab.core_name, 0));
    maps.set_xsk(0, access_xsk.fd()).unwrap();
    maps.set_xsk(64, core_xsk.fd()).unwrap();
    let (v4_unit, v6_unit) = (10, 256 + 0x10);
    let mut s = Lab::session(SessionState::Forwarding);
    s.flags |= Session::SLOW_PATH;
    lab.install(200, &s);
    assert!(!maps.fast_slot(200), "a slow-path session's slot is not fast");
    assert!(!maps.pool_unit_fast(v4_unit) && !maps.pool_unit_fast(v6_unit));
    for outer in all_outers() {
        let mut s6 = s;
        if outer.ipv6 {
            s6.set_peer((IpAddr::V6(LAC_V6), LAC_PORT).into());
            maps.update_session(200, &s6).unwrap();
        }
        for frame in [
            data_frame(outer, L2tpOpts::default(), PPP_FULL),
            data_frame_v6(outer, L2tpOpts::default(), PPP_FULL),
        ] {
            lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassSlowPathSession);
        }
        // PPP control is the control plane's as for every session.
        let lcp = lac_frame(
            outer,
            LAC_PORT,
            1701,
            &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0xc021, &[9, 1, 0, 8, 0, 0, 0, 1]),
        );
        lab.expect(lab.access, &lcp, XdpAction::Pass, Counter::PassPppControl);
        // The peer check still comes first.
        let stranger = lac_frame(
            outer,
            LAC_PORT + 1,
            1701,
            &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x21, &inner_v4(SUB_V4, CORE_V4, b"x")),
        );
        lab.expect(lab.access, &stranger, XdpAction::Drop, Counter::DropPeerMismatch);
        maps.update_session(200, &s).unwrap();
    }
    for vlan in [false, true] {
        for d in [IpAddr::V4(SUB_V4), IpAddr::V6(SUB_V6)] {
            lab.expect(lab.core, &core_frame(d, vlan), XdpAction::Pass, Counter::PassSlowPathSession);
        }
    }

    // The flag off: the same session is the workers' again.
    s.flags &= !Session::SLOW_PATH;
    maps.update_session(200, &s).unwrap();
    assert!(maps.fast_slot(200) && maps.pool_unit_fast(v4_unit));
    let frame = data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL);
    lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstreamCheck);
    lab.expect(
        lab.core,
        &core_frame(IpAddr::V4(SUB_V4), false),
        XdpAction::Redirect,
        Counter::RedirectDownstreamCheck,
    );
    // And on again: off the fast path at once.
    s.flags |= Session::SLOW_PATH;
    maps.update_session(200, &s).unwrap();
    assert!(!maps.fast_slot(200) && !maps.pool_unit_fast(v4_unit));
    lab.expect(lab.access, &frame, XdpAction::Pass, Counter::PassSlowPathSession);
    lab.expect(
        lab.core,
        &core_frame(IpAddr::V4(SUB_V4), false),
        XdpAction::Pass,
        Counter::PassSlowPathSession,
    );
}

/// A core frame to `dst` whose IP packet is `ip_len` bytes.
fn core_frame_of(dst: IpAddr, vlan: bool, ip_len: usize) -> Vec<u8> {
    let eth = etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x03], LNS_MAC);
    let mut out = Vec::new();
    let vlan_id = etherparse::VlanId::try_new(7).unwrap();
    match dst {
        IpAddr::V4(d) => {
            let payload = vec![0x5a; ip_len - 28];
            if vlan {
                eth.single_vlan(vlan_id)
                    .ipv4(CORE_V4.octets(), d.octets(), 64)
                    .udp(80, 4000)
                    .write(&mut out, &payload)
            } else {
                eth.ipv4(CORE_V4.octets(), d.octets(), 64).udp(80, 4000).write(&mut out, &payload)
            }
        }
        IpAddr::V6(d) => {
            let payload = vec![0x5a; ip_len - 48];
            if vlan {
                eth.single_vlan(vlan_id)
                    .ipv6(CORE_V6.octets(), d.octets(), 64)
                    .udp(80, 4000)
                    .write(&mut out, &payload)
            } else {
                eth.ipv6(CORE_V6.octets(), d.octets(), 64).udp(80, 4000).write(&mut out, &payload)
            }
        }
    }
    .unwrap();
    out
}

/// A core packet larger than its session's MTU (what the access link
/// carries once tunnelled) would not fit toward the LAC: the program
/// passes it to the kernel (pass_too_big), which routes it to the slow
/// path to be fragmented or answered with ICMP; one of exactly the MTU
/// goes to the workers. The session's MTU decides (here the 1260 of a
/// 1300-byte access link, then 1460).
#[test]
fn core_packets_larger_than_the_session_mtu_go_to_the_kernel() {
    let lab = forwarding_lab(Outer::default());
    let xsk = BoundXsk::bind(&lab.core_name, 0);
    lab.steering.maps().set_xsk(64, xsk.fd()).unwrap();
    for mtu in [1260u16, 1460] {
        let mut s = Lab::session(SessionState::Forwarding);
        s.mtu = mtu;
        lab.steering.maps().update_session(5, &s).unwrap();
        for vlan in [false, true] {
            for d in [IpAddr::V4(SUB_V4), IpAddr::V6(SUB_V6)] {
                let at_mtu = core_frame_of(d, vlan, usize::from(mtu));
                lab.expect(lab.core, &at_mtu, XdpAction::Redirect, Counter::RedirectDownstream);
                let over = core_frame_of(d, vlan, usize::from(mtu) + 1);
                lab.expect(lab.core, &over, XdpAction::Pass, Counter::PassTooBig);
                let ping_1300 = core_frame_of(d, vlan, 1300);
                let want = if mtu < 1300 {
                    (XdpAction::Pass, Counter::PassTooBig)
                } else {
                    (XdpAction::Redirect, Counter::RedirectDownstream)
                };
                lab.expect(lab.core, &ping_1300, want.0, want.1);
            }
        }
    }
}
