//! The control plane's own ports of tunnels (RFC 2661 §8.1): L2TP data to
//! a port of `tunnel_ports` is the program's as data to 1701 is; a port
//! outside the range, or any port without one, is not L2TP. Under
//! BPF_PROG_TEST_RUN, like `xdp_verdicts.rs`.

mod common;

use common::*;
use lns_bpf::abi::{Counter, SessionState};
use lns_bpf::{LoadOptions, XdpAction};

fn frame_to(outer: Outer, port: u16) -> Vec<u8> {
    let inner = inner_v4(SUB_V4, CORE_V4, b"subscriber data");
    lac_frame(outer, LAC_PORT, port, &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, 0x21, &inner))
}

#[test]
fn data_to_any_port_of_the_range_is_taken() {
    for outer in [Outer { ipv6: false, vlan: false }, Outer { ipv6: true, vlan: true }] {
        let lab = Lab::with_options(LoadOptions { tunnel_ports: Some((20000, 20999)), ..Default::default() });
        assert_eq!(lab.steering.maps().read_config().unwrap().tunnel_ports(), Some((20000, 20999)));
        let mut s = Lab::session(SessionState::Forwarding);
        if outer.ipv6 {
            s.set_peer((std::net::IpAddr::V6(LAC_V6), LAC_PORT).into());
        }
        lab.install(5, &s);
        let xsk = BoundXsk::bind(&lab.access_name, 0);
        lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();
        for port in [1701, 20000, 20417, 20999] {
            let frame = frame_to(outer, port);
            let r = lab.expect(lab.access, &frame, XdpAction::Redirect, Counter::RedirectUpstream);
            assert_eq!(r.meta.expect("metadata").session_index, 5, "port {port}");
        }
        for port in [19999, 21000, 1702] {
            lab.expect(lab.access, &frame_to(outer, port), XdpAction::Pass, Counter::PassNotL2tp);
        }
    }
}

#[test]
fn without_a_range_only_the_l2tp_port_is_taken() {
    let lab = Lab::new();
    assert_eq!(lab.steering.maps().read_config().unwrap().tunnel_ports(), None);
    lab.install(5, &Lab::session(SessionState::Forwarding));
    let xsk = BoundXsk::bind(&lab.access_name, 0);
    lab.steering.maps().set_xsk(0, xsk.fd()).unwrap();
    let outer = Outer { ipv6: false, vlan: false };
    lab.expect(lab.access, &frame_to(outer, 1701), XdpAction::Redirect, Counter::RedirectUpstream);
    for port in [0, 1, 20000] {
        lab.expect(lab.access, &frame_to(outer, port), XdpAction::Pass, Counter::PassNotL2tp);
    }
}
