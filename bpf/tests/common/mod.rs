//! Frames and a lab for running the real XDP program under BPF_PROG_TEST_RUN.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{PacketBuilder, VlanId};
use lns_bpf::abi::{Counter, Iface, Session, SessionState};
use lns_bpf::{CounterSnapshot, LoadOptions, Steering, TestRunContext, TestRunResult, XdpAction};
use lns_testlab::{Netns, NetnsEntered};

pub const LAC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const LNS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const LAC_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const LNS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const LAC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xac, 0, 0, 0, 0, 2);
pub const LNS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xac, 0, 0, 0, 0, 1);
pub const LAC_PORT: u16 = 1701;
pub const SUB_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const SUB_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x10, 0, 0, 0, 0);
pub const SUB_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x10, 0, 0, 0, 0x42);
pub const SUB_PD: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0x0, 0, 0, 0, 0);
pub const CORE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
pub const CORE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 0, 0, 0, 0, 7);

/// L2TP header options of a data message (RFC 2661 section 3.1).
#[derive(Clone, Copy, Debug, Default)]
pub struct L2tpOpts {
    pub control: bool,
    pub length: bool,
    pub sequence: bool,
    /// Offset Size field with this many pad bytes.
    pub offset: Option<u16>,
    pub priority: bool,
    pub version: u8,
}

/// How the PPP header is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PppHdr {
    /// Address/Control FF 03 present.
    pub address_control: bool,
    /// One-byte protocol field.
    pub short_protocol: bool,
}

pub const PPP_FULL: PppHdr = PppHdr { address_control: true, short_protocol: false };

#[derive(Clone, Copy, Debug, Default)]
pub struct Outer {
    pub ipv6: bool,
    pub vlan: bool,
}

/// An L2TP header followed by a PPP header and payload.
pub fn l2tp_payload(
    o: L2tpOpts,
    tunnel: u16,
    session: u16,
    ppp: PppHdr,
    proto: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut flags: u16 = if o.version == 0 { 2 } else { o.version as u16 };
    if o.control {
        flags |= 0x8000;
    }
    if o.length {
        flags |= 0x4000;
    }
    if o.sequence {
        flags |= 0x0800;
    }
    if o.offset.is_some() {
        flags |= 0x0200;
    }
    if o.priority {
        flags |= 0x0100;
    }
    let mut v = flags.to_be_bytes().to_vec();
    if o.length {
        v.extend_from_slice(&[0, 0]); // patched below
    }
    v.extend_from_slice(&tunnel.to_be_bytes());
    v.extend_from_slice(&session.to_be_bytes());
    if o.sequence {
        v.extend_from_slice(&[0, 7, 0, 3]);
    }
    if let Some(pad) = o.offset {
        v.extend_from_slice(&pad.to_be_bytes());
        v.extend(std::iter::repeat_n(0xaa, pad as usize));
    }
    if ppp.address_control {
        v.extend_from_slice(&[0xff, 0x03]);
    }
    if ppp.short_protocol && proto < 0x100 {
        v.push(proto as u8);
    } else {
        v.extend_from_slice(&proto.to_be_bytes());
    }
    v.extend_from_slice(payload);
    if o.length {
        let len = v.len() as u16;
        v[2..4].copy_from_slice(&len.to_be_bytes());
    }
    v
}

/// Ethernet [+ VLAN] / IPv4 or IPv6 / UDP from the LAC to the LNS carrying `payload`.
pub fn lac_frame(outer: Outer, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    lac_frame_from(
        outer,
        if outer.ipv6 { IpAddr::V6(LAC_V6) } else { IpAddr::V4(LAC_V4) },
        sport,
        dport,
        payload,
    )
}

pub fn lac_frame_from(outer: Outer, src: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(LAC_MAC, LNS_MAC);
    let mut out = Vec::new();
    match (src, outer.vlan) {
        (IpAddr::V4(s), false) => {
            eth.ipv4(s.octets(), LNS_V4.octets(), 64).udp(sport, dport).write(&mut out, payload)
        }
        (IpAddr::V4(s), true) => eth
            .single_vlan(VlanId::try_new(100).unwrap())
            .ipv4(s.octets(), LNS_V4.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, payload),
        (IpAddr::V6(s), false) => {
            eth.ipv6(s.octets(), LNS_V6.octets(), 64).udp(sport, dport).write(&mut out, payload)
        }
        (IpAddr::V6(s), true) => eth
            .single_vlan(VlanId::try_new(100).unwrap())
            .ipv6(s.octets(), LNS_V6.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, payload),
    }
    .unwrap();
    out
}

/// A subscriber's IPv4/UDP packet.
pub fn inner_v4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(4000, 5000).write(&mut out, payload).unwrap();
    out
}

/// A subscriber's IPv6/UDP packet.
pub fn inner_v6(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(4000, 5000).write(&mut out, payload).unwrap();
    out
}

/// A packet from the core to `dst` as it arrives on the core interface.
pub fn core_frame(dst: IpAddr, vlan: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x03], LNS_MAC);
    let mut out = Vec::new();
    let payload = b"from the core";
    match (dst, vlan) {
        (IpAddr::V4(d), false) => {
            eth.ipv4(CORE_V4.octets(), d.octets(), 64).udp(80, 4000).write(&mut out, payload)
        }
        (IpAddr::V4(d), true) => eth
            .single_vlan(VlanId::try_new(7).unwrap())
            .ipv4(CORE_V4.octets(), d.octets(), 64)
            .udp(80, 4000)
            .write(&mut out, payload),
        (IpAddr::V6(d), false) => {
            eth.ipv6(CORE_V6.octets(), d.octets(), 64).udp(80, 4000).write(&mut out, payload)
        }
        (IpAddr::V6(d), true) => eth
            .single_vlan(VlanId::try_new(7).unwrap())
            .ipv6(CORE_V6.octets(), d.octets(), 64)
            .udp(80, 4000)
            .write(&mut out, payload),
    }
    .unwrap();
    out
}

/// The standard upstream data frame: session (100, 200) carrying IPv4 from the subscriber.
pub fn data_frame(outer: Outer, opts: L2tpOpts, ppp: PppHdr) -> Vec<u8> {
    let inner = inner_v4(SUB_V4, CORE_V4, b"subscriber data");
    lac_frame(outer, LAC_PORT, 1701, &l2tp_payload(opts, 100, 200, ppp, 0x0021, &inner))
}

/// A data message of session (100, 200) from the LAC's port `sport`,
/// carrying PPP protocol `proto` with `payload`.
pub fn session_frame(sport: u16, proto: u16, payload: &[u8]) -> Vec<u8> {
    lac_frame(
        Outer::default(),
        sport,
        1701,
        &l2tp_payload(L2tpOpts::default(), 100, 200, PPP_FULL, proto, payload),
    )
}

pub fn data_frame_v6(outer: Outer, opts: L2tpOpts, ppp: PppHdr) -> Vec<u8> {
    let inner = inner_v6(SUB_V6, CORE_V6, b"subscriber data");
    lac_frame(outer, LAC_PORT, 1701, &l2tp_payload(opts, 100, 200, ppp, 0x0057, &inner))
}

/// The program loaded into a fresh namespace with two interfaces: `access`
/// (LAC-facing) and `core`. Fields drop in order: the program first, then the
/// thread leaves the namespace, then the namespace goes.
pub struct Lab {
    pub steering: Steering,
    pub access: u32,
    pub core: u32,
    pub access_name: String,
    pub core_name: String,
    entered: NetnsEntered,
    pub ns: Netns,
}

impl Lab {
    pub fn new() -> Lab {
        Self::with_options(LoadOptions { max_sessions: 1024, ..Default::default() })
    }

    pub fn with_options(opts: LoadOptions) -> Lab {
        let ns = Netns::new("lnsx").expect("netns");
        let access_name = "acc0".to_string();
        let core_name = "core0".to_string();
        ns.add_veth_pair(&access_name, "lacside", 2).expect("veth");
        ns.add_veth_pair(&core_name, "coreside", 2).expect("veth");
        let access = ns.ifindex(&access_name).unwrap();
        let core = ns.ifindex(&core_name).unwrap();
        // A router's view: addresses on both sides, the LAC and the core
        // next hop resolved, forwarding on (bpf_fib_lookup requires it).
        for cmd in [
            vec!["addr", "add", "192.0.2.1/24", "dev", "acc0"],
            vec!["addr", "add", "2001:db8:ac::1/64", "dev", "acc0", "nodad"],
            vec!["addr", "add", "203.0.113.1/24", "dev", "core0"],
            vec!["addr", "add", "2001:db8:c0::1/64", "dev", "core0", "nodad"],
            vec![
                "neigh",
                "add",
                "192.0.2.2",
                "lladdr",
                "02:00:00:00:00:01",
                "dev",
                "acc0",
                "nud",
                "permanent",
            ],
            vec![
                "neigh",
                "add",
                "2001:db8:ac::2",
                "lladdr",
                "02:00:00:00:00:01",
                "dev",
                "acc0",
                "nud",
                "permanent",
            ],
            vec![
                "neigh",
                "add",
                "203.0.113.7",
                "lladdr",
                "02:00:00:00:00:03",
                "dev",
                "core0",
                "nud",
                "permanent",
            ],
            vec![
                "neigh",
                "add",
                "2001:db8:c0::7",
                "lladdr",
                "02:00:00:00:00:03",
                "dev",
                "core0",
                "nud",
                "permanent",
            ],
        ] {
            ns.ip(&cmd).expect("lab addressing");
        }
        ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"])
            .unwrap();
        let entered = ns.enter().expect("enter netns");
        let steering = Steering::load(&opts).expect("load XDP program");
        let maps = steering.maps();
        maps.set_iface(access, &Iface { roles: Iface::ACCESS, xsk_base: 0 }).unwrap();
        maps.set_iface(core, &Iface { roles: Iface::CORE, xsk_base: 64 }).unwrap();
        Lab { steering, access, core, access_name, core_name, entered, ns }
    }

    /// The standard session: ours (100, 200), the LAC's (7, 9), subscriber
    /// SUB_V4, SLAAC prefix SUB_PREFIX/64, delegated prefix SUB_PD/56.
    pub fn session(state: SessionState) -> Session {
        let mut s = Session {
            state: state as u32,
            local_tunnel_id: 100,
            local_session_id: 200,
            peer_tunnel_id: 7,
            peer_session_id: 9,
            mtu: 1460,
            ipv4: SUB_V4.octets(),
            ipv6_prefix: SUB_PREFIX.octets(),
            ipv6_prefix_len: 64,
            delegated_prefix: SUB_PD.octets(),
            delegated_prefix_len: 56,
            ..Default::default()
        };
        s.set_peer(SocketAddr::new(IpAddr::V4(LAC_V4), LAC_PORT));
        s.set_local(SocketAddr::new(IpAddr::V4(LNS_V4), 1701));
        s
    }

    pub fn install(&self, index: u32, s: &Session) {
        self.steering.maps().install_session(index, s).expect("install session");
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.steering.maps().counters().unwrap()
    }

    pub fn run_on(&self, ifindex: u32, frame: &[u8]) -> TestRunResult {
        self.steering
            .test_run(frame, TestRunContext { ingress_ifindex: ifindex, rx_queue_index: 0 })
            .expect("test run")
    }

    /// Runs a frame and checks the one counter it must land in.
    pub fn expect(&self, ifindex: u32, frame: &[u8], action: XdpAction, counter: Counter) -> TestRunResult {
        let before = self.counters();
        let r = self.run_on(ifindex, frame);
        let delta = self.counters().since(&before);
        assert_eq!(r.action, action, "action for frame {frame:02x?}; counters {delta:?}");
        assert_only(&delta, counter);
        // The program never changes the frame it passes on.
        assert_eq!(r.frame, frame);
        r
    }
}

/// Exactly one frame was seen and it was counted under `counter` only.
pub fn assert_only(delta: &CounterSnapshot, counter: Counter) {
    for c in Counter::ALL {
        let want = if *c == Counter::Rx || *c == counter { 1 } else { 0 };
        assert_eq!(delta.get(*c), want, "counter {} in {delta:?}", c.name());
    }
}

/// An AF_XDP socket bound to (ifname, queue) in the current thread's
/// namespace, so the XSKMAP has something to redirect to.
pub struct BoundXsk {
    pub rx: xsk_rs::RxQueue,
    pub tx: xsk_rs::TxQueue,
    pub fq_cq: Option<(xsk_rs::FillQueue, xsk_rs::CompQueue)>,
    pub umem: xsk_rs::Umem,
}

impl BoundXsk {
    pub fn bind(ifname: &str, queue: u32) -> BoundXsk {
        use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, SocketConfig, UmemConfig};
        let (umem, _descs) =
            xsk_rs::Umem::new(UmemConfig::default(), 64.try_into().unwrap(), false).expect("umem");
        let cfg = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY)
            .build();
        let ifname: Interface = ifname.parse().unwrap();
        // SAFETY: the UMEM is not shared with another socket on this
        // (interface, queue), and libxdp is told not to load its program.
        let (tx, rx, fq_cq) =
            unsafe { xsk_rs::Socket::new(cfg, &umem, &ifname, queue) }.expect("bind AF_XDP socket");
        // libxdp opens the socket without SOCK_CLOEXEC: a process another
        // test thread starts would keep a copy, and the socket in the
        // map, after this one is closed.
        use std::os::fd::AsRawFd;
        // SAFETY: F_SETFD on a descriptor the queues own and keep open.
        unsafe { libc::fcntl(rx.fd().as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        BoundXsk { rx, tx, fq_cq, umem }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the descriptor stays open as long as self (the queues hold it).
        unsafe { BorrowedFd::borrow_raw(self.rx.fd().as_raw_fd()) }
    }
}
