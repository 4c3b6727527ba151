use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use lns_bpf::abi::{Session, SessionState, XdpMeta};

use super::*;

const SUB: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const CORE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const SUB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x10, 0, 0, 0, 0x42);
const CORE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 0, 0, 0, 0, 7);

fn meta(dir: u8, version: u8, inner_offset: u16) -> XdpMeta {
    XdpMeta {
        session_index: 3,
        inner_offset,
        direction: dir,
        ip_version: version,
        egress_ifindex: 9,
        smac: [2, 0, 0, 0, 0, 0xaa],
        dmac: [2, 0, 0, 0, 0, 0xbb],
        ..Default::default()
    }
}

fn session(v6_outer: bool, flags: u32) -> Session {
    let mut s = Session {
        state: SessionState::Forwarding as u32,
        flags,
        local_tunnel_id: 100,
        local_session_id: 200,
        peer_tunnel_id: 7,
        peer_session_id: 9,
        mtu: 1460,
        ipv4: SUB.octets(),
        ..Default::default()
    };
    if v6_outer {
        s.set_peer(SocketAddr::new("2001:db8:ac::2".parse().unwrap(), 1701));
        s.set_local(SocketAddr::new("2001:db8:ac::1".parse().unwrap(), 1701));
    } else {
        s.set_peer(SocketAddr::new("192.0.2.2".parse().unwrap(), 40000));
        s.set_local(SocketAddr::new("192.0.2.1".parse().unwrap(), 1701));
    }
    s
}

fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), ttl).udp(4000, 5000).write(&mut v, payload).unwrap();
    v
}

fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(4000, 5000).write(&mut v, payload).unwrap();
    v
}

/// meta + Ethernet/IPv4/UDP/L2TP(flags 0x0002)/PPP(ff03 proto) + inner, in a 2 KiB buffer.
fn upstream_buf(inner: &[u8], proto: u16) -> (Vec<u8>, usize, u16) {
    let mut l2tp = vec![0x00, 0x02, 0, 100, 0, 200, 0xff, 0x03];
    l2tp.extend_from_slice(&proto.to_be_bytes());
    l2tp.extend_from_slice(inner);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 2], [192, 0, 2, 1], 64)
        .udp(1701, 1701)
        .write(&mut frame, &l2tp)
        .unwrap();
    let inner_offset = (frame.len() - inner.len()) as u16;
    let mut buf = vec![0u8; 2048];
    buf[..XdpMeta::LEN].copy_from_slice(bytemuck::bytes_of(&meta(1, 4, inner_offset)));
    buf[META_LEN..META_LEN + frame.len()].copy_from_slice(&frame);
    (buf, META_LEN + frame.len(), inner_offset)
}

/// meta + Ethernet + inner as it arrives from the core.
fn downstream_buf(inner: &[u8], version: u8) -> (Vec<u8>, usize, XdpMeta) {
    downstream_buf_at(inner, version, 0)
}

/// The same `at` bytes into the buffer (the room the worker leaves).
fn downstream_buf_at(inner: &[u8], version: u8, at: usize) -> (Vec<u8>, usize, XdpMeta) {
    let mut buf = vec![0u8; 2048];
    let m = meta(2, version, 14);
    buf[at..at + XdpMeta::LEN].copy_from_slice(bytemuck::bytes_of(&m));
    let eth = at + META_LEN;
    buf[eth..eth + 6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    buf[eth + 6..eth + 12].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
    buf[eth + 12..eth + 14].copy_from_slice(&if version == 4 { [8, 0] } else { [0x86, 0xdd] });
    buf[eth + 14..eth + 14 + inner.len()].copy_from_slice(inner);
    (buf, eth + 14 + inner.len(), m)
}

fn ipv4_header_ok(h: &[u8]) -> bool {
    checksum::of(&h[..((h[0] & 0xf) as usize) * 4]) == 0
}

#[test]
fn decap_ipv4_strips_the_tunnel_and_routes() {
    let inner = udp_v4(SUB, CORE, 64, b"hello core");
    let (mut buf, len, off) = upstream_buf(&inner, 0x21);
    let m = meta(1, 4, off);
    let Outcome::Forward { start, len: out } = decap(&mut buf, 0, len, &m, MssClamp::Off, 1460) else {
        panic!()
    };
    assert_eq!(out, 14 + inner.len());
    assert_eq!(start, META_LEN + off as usize - 14, "the packet stays, the header goes right before it");
    let buf = &buf[start..];
    assert_eq!(&buf[0..6], &m.dmac);
    assert_eq!(&buf[6..12], &m.smac);
    assert_eq!(&buf[12..14], &[8, 0]);
    let ip = &buf[14..out];
    let mut want = inner.clone();
    want[8] = 63;
    assert_eq!(&ip[..8], &want[..8]);
    assert_eq!(ip[8], 63);
    assert_eq!(&ip[12..], &want[12..]);
    assert!(ipv4_header_ok(ip), "TTL change kept the header checksum valid");
}

#[test]
fn decap_ipv6_decrements_the_hop_limit() {
    let inner = udp_v6(SUB6, CORE6, b"hello");
    let (mut buf, len, off) = upstream_buf(&inner, 0x57);
    let m = meta(1, 6, off);
    let Outcome::Forward { start, len: out } = decap(&mut buf, 0, len, &m, MssClamp::Off, 1460) else {
        panic!()
    };
    let buf = &buf[start..];
    assert_eq!(&buf[12..14], &[0x86, 0xdd]);
    assert_eq!(buf[14 + 7], 63);
    assert_eq!(&buf[14 + 8..out], &inner[8..]);
}

#[test]
fn expiring_ttl_is_dropped() {
    let inner = udp_v4(SUB, CORE, 1, b"x");
    let (mut buf, len, off) = upstream_buf(&inner, 0x21);
    assert_eq!(
        decap(&mut buf, 0, len, &meta(1, 4, off), MssClamp::Off, 1460),
        Outcome::Drop(DropReason::TtlExceeded)
    );
}

fn check_encap(out: &[u8], s: &Session, inner: &[u8], version: u8) {
    let p = SlicedPacket::from_ethernet(out).expect("parses");
    let Some(NetSlice::Ipv4(_) | NetSlice::Ipv6(_)) = &p.net else { panic!("no IP") };
    if let Some(NetSlice::Ipv4(v4)) = &p.net {
        assert!(ipv4_header_ok(v4.header().slice()));
        assert_eq!(v4.header().destination(), [192, 0, 2, 2]);
        assert!(v4.header().dont_fragment());
    }
    let Some(TransportSlice::Udp(udp)) = &p.transport else { panic!("no UDP") };
    assert_eq!(udp.source_port(), s.local_port.to_host());
    assert_eq!(udp.destination_port(), s.peer_port.to_host());
    let udp_hdr = udp.to_header();
    match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            if s.flags & Session::UDP_CSUM_ZERO != 0 {
                assert_eq!(udp.checksum(), 0);
            } else {
                assert_eq!(
                    udp.checksum(),
                    udp_hdr.calc_checksum_ipv4(&v4.header().to_header(), udp.payload()).unwrap()
                );
            }
        }
        Some(NetSlice::Ipv6(v6)) => {
            assert_eq!(
                udp.checksum(),
                udp_hdr.calc_checksum_ipv6(&v6.header().to_header(), udp.payload()).unwrap()
            );
        }
        _ => unreachable!(),
    }
    let l2tp = udp.payload();
    let flags = u16::from_be_bytes([l2tp[0], l2tp[1]]);
    assert_eq!(flags & 0x8000, 0, "data message");
    assert_eq!(flags & 0xf, 2);
    let mut o = 2;
    if s.flags & Session::LENGTH != 0 {
        assert_eq!(flags & 0x4000, 0x4000);
        assert_eq!(u16::from_be_bytes([l2tp[2], l2tp[3]]) as usize, l2tp.len());
        o += 2;
    }
    assert_eq!(&l2tp[o..o + 4], &[0, 7, 0, 9], "peer tunnel and session ids");
    o += 4;
    if s.flags & Session::SEQUENCING != 0 {
        assert_eq!(flags & 0x0800, 0x0800);
        assert_eq!(&l2tp[o..o + 2], &[0, 5]);
        o += 4;
    }
    if s.flags & Session::ACFC == 0 {
        assert_eq!(&l2tp[o..o + 2], &[0xff, 0x03]);
        o += 2;
    }
    let proto: u16 = if version == 4 { 0x21 } else { 0x57 };
    if s.flags & Session::PFC != 0 {
        assert_eq!(l2tp[o] as u16, proto);
        o += 1;
    } else {
        assert_eq!(u16::from_be_bytes([l2tp[o], l2tp[o + 1]]), proto);
        o += 2;
    }
    let got = &l2tp[o..];
    assert_eq!(got.len(), inner.len());
    // Only the hop limit (and the IPv4 header checksum) changed.
    if version == 4 {
        assert_eq!(got[8], inner[8] - 1);
        assert!(ipv4_header_ok(got));
        assert_eq!(&got[12..], &inner[12..]);
    } else {
        assert_eq!(got[7], inner[7] - 1);
        assert_eq!(&got[8..], &inner[8..]);
    }
}

#[test]
fn encap_builds_every_header_form() {
    let flag_sets = [
        0,
        Session::LENGTH,
        Session::SEQUENCING,
        Session::ACFC | Session::PFC,
        Session::UDP_CSUM_ZERO,
        Session::LENGTH | Session::SEQUENCING | Session::ACFC | Session::PFC | Session::UDP_CSUM_ZERO,
    ];
    for v6_outer in [false, true] {
        for flags in flag_sets {
            for version in [4u8, 6] {
                let s = session(v6_outer, flags);
                let inner = if version == 4 {
                    udp_v4(CORE, SUB, 64, b"to the subscriber")
                } else {
                    udp_v6(CORE6, SUB6, b"to the subscriber")
                };
                // The headers go in front of the packet, over the Ethernet
                // header and the metadata's room, and with the worker's 64
                // bytes of room before that; the packet only moves when
                // they do not fit.
                for at in [0, 64] {
                    let (mut buf, len, m) = downstream_buf_at(&inner, version, at);
                    let mut st = EncapState::default();
                    let Outcome::Forward { start, len: out } =
                        encap(&mut buf, at, len, &m, &s, MssClamp::Off, Some(5), &mut st)
                    else {
                        panic!()
                    };
                    assert_eq!(out, encap_overhead(&s) + inner.len());
                    let ip = at + META_LEN + 14;
                    if ip < encap_overhead(&s) {
                        assert_eq!(start, 0, "moved");
                    } else {
                        assert_eq!(start + encap_overhead(&s), ip, "in place");
                    }
                    assert_eq!(&buf[start..start + 6], &m.dmac);
                    check_encap(&buf[start..start + out], &s, &inner, version);
                }
            }
        }
    }
}

fn tcp_syn(mss: u16) -> Vec<u8> {
    let mut v = Vec::new();
    let mut opts = vec![2, 4];
    opts.extend_from_slice(&mss.to_be_bytes());
    opts.extend_from_slice(&[1, 3, 3, 7]); // NOP, window scale
    PacketBuilder::ipv4(SUB.octets(), CORE.octets(), 64)
        .tcp(40000, 443, 1, 65535)
        .syn()
        .options_raw(&opts)
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn tcp_checksum_ok(ip: &[u8]) -> bool {
    let ihl = ((ip[0] & 0xf) as usize) * 4;
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let (src, dst) = (ip[12..16].try_into().unwrap(), ip[16..20].try_into().unwrap());
    checksum::ipv4_upper_layer(src, dst, tcp::PROTOCOL, &ip[ihl..tot]) == 0
}

#[test]
fn mss_is_clamped_on_syn_both_ways() {
    // Upstream, auto from a 1400-byte MTU.
    let syn = tcp_syn(1460);
    let (mut buf, len, off) = upstream_buf(&syn, 0x21);
    let Outcome::Forward { start, len: out } =
        decap(&mut buf, 0, len, &meta(1, 4, off), MssClamp::Auto, 1400)
    else {
        panic!()
    };
    let ip = &buf[start + 14..start + out];
    assert_eq!(u16::from_be_bytes([ip[20 + 22], ip[20 + 23]]), 1360);
    assert!(tcp_checksum_ok(ip));
    // Downstream, fixed.
    let s = session(false, Session::UDP_CSUM_ZERO);
    let (mut buf, len, m) = downstream_buf(&tcp_syn(1460), 4);
    let Outcome::Forward { start, len: out } =
        encap(&mut buf, 0, len, &m, &s, MssClamp::Fixed(1200), None, &mut EncapState::default())
    else {
        panic!()
    };
    let ip = &buf[start + encap_overhead(&s)..start + out];
    assert_eq!(u16::from_be_bytes([ip[20 + 22], ip[20 + 23]]), 1200);
    assert!(tcp_checksum_ok(ip));
    // A smaller MSS is left alone, and so is a non-SYN.
    let mut p = tcp_syn(500);
    let n = p.len();
    assert!(!tcp::clamp_mss_at(&mut p, 0, n, 1200));
}

#[test]
fn oversized_downstream_gets_icmp_or_fragmentation() {
    let s = Session { mtu: 600, ..session(false, 0) };
    // DF set: ICMP fragmentation needed back to the source.
    let big = udp_v4(CORE, SUB, 64, &[0x55; 1000]);
    let (mut buf, len, m) = downstream_buf(&big, 4);
    let Outcome::Reply { len: out } =
        encap(&mut buf, 0, len, &m, &s, MssClamp::Off, None, &mut EncapState::default())
    else {
        panic!()
    };
    assert_eq!(&buf[0..6], &[2, 0, 0, 0, 0, 3], "back to the sender's next hop");
    let p = SlicedPacket::from_ethernet(&buf[..out]).unwrap();
    let Some(NetSlice::Ipv4(v4)) = &p.net else { panic!() };
    assert_eq!(v4.header().destination(), CORE.octets());
    assert_eq!(v4.header().source(), SUB.octets());
    assert!(ipv4_header_ok(v4.header().slice()));
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!() };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 600
        })
    );
    assert_eq!(checksum::of(icmp.slice()), 0);

    // IPv6: packet too big.
    let big6 = udp_v6(CORE6, SUB6, &[0x66; 1000]);
    let (mut buf, len, m) = downstream_buf(&big6, 6);
    let Outcome::Reply { len: out } =
        encap(&mut buf, 0, len, &m, &s, MssClamp::Off, None, &mut EncapState::default())
    else {
        panic!()
    };
    let p = SlicedPacket::from_ethernet(&buf[..out]).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!() };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 600 });
    let Some(NetSlice::Ipv6(v6)) = &p.net else { panic!() };
    assert_eq!(
        icmp.icmp_type()
            .calc_checksum(v6.header().source(), v6.header().destination(), icmp.payload())
            .unwrap(),
        icmp.checksum()
    );

    // No DF: fragments, each within the MTU, that add up to the original.
    let mut nodf = udp_v4(CORE, SUB, 64, &[0x77; 1000]);
    nodf[6] = 0;
    let c = {
        nodf[10] = 0;
        nodf[11] = 0;
        checksum::of(&nodf[..20])
    };
    nodf[10..12].copy_from_slice(&c.to_be_bytes());
    let (mut buf, len, m) = downstream_buf(&nodf, 4);
    let Outcome::Fragment { inner, inner_len } =
        encap(&mut buf, 0, len, &m, &s, MssClamp::Off, None, &mut EncapState::default())
    else {
        panic!()
    };
    let mut payload = Vec::new();
    let n = fragment_v4(&buf[inner..inner + inner_len], s.mtu, |f| {
        assert!(f.len() <= 600);
        assert!(ipv4_header_ok(f));
        let off = (u16::from_be_bytes([f[6], f[7]]) & 0x1fff) as usize * 8;
        assert_eq!(off, payload.len());
        payload.extend_from_slice(&f[20..]);
    });
    assert_eq!(n, 2);
    assert_eq!(payload, nodf[20..]);
}

#[test]
fn truncated_or_lying_buffers_never_panic() {
    let inner = udp_v4(SUB, CORE, 64, b"hello core");
    let (buf, len, off) = upstream_buf(&inner, 0x21);
    for cut in 0..=len {
        let mut b = buf.clone();
        b.truncate(cut.max(1));
        let l = cut.min(b.len());
        let _ = decap(&mut b, 0, l, &meta(1, 4, off), MssClamp::Auto, 1460);
        let mut b = buf.clone();
        b.truncate(cut.max(1));
        let s = session(false, 0);
        let l = cut.min(b.len());
        let _ = encap(&mut b, 0, l, &meta(2, 4, off), &s, MssClamp::Auto, None, &mut EncapState::default());
    }
    // Metadata pointing anywhere.
    for off in [0u16, 1, 500, 2000, u16::MAX] {
        let mut b = buf.clone();
        assert!(matches!(
            decap(&mut b, 0, len, &meta(1, 4, off), MssClamp::Off, 1460),
            Outcome::Drop(_) | Outcome::Forward { .. }
        ));
    }
}

/// The session's SLAAC /64 (SUB6's) and delegated /56.
fn own_prefixes(s: &mut Session) {
    s.ipv6_prefix = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x10, 0, 0, 0, 0).octets();
    s.ipv6_prefix_len = 64;
    s.delegated_prefix = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0).octets();
    s.delegated_prefix_len = 56;
}

/// An upstream frame of session (100, 200) from 192.0.2.2:1701 as the
/// program sends it unchecked, with the offsets it gives the worker; the
/// session that sits in its slot.
fn unchecked_upstream(inner: &[u8], proto: u16) -> (Vec<u8>, XdpMeta, Session) {
    let (buf, len, off) = upstream_buf(inner, proto);
    let m = XdpMeta {
        flags: XdpMeta::CHECK,
        outer_l3: 14,
        outer_l4: 34,
        l2tp_ids: 44,
        outer_ip_version: 4,
        ip_version: if proto == 0x21 { 4 } else { 6 },
        ..meta(1, 4, off)
    };
    let mut s = session(false, 0);
    s.set_peer(SocketAddr::new("192.0.2.2".parse().unwrap(), 1701));
    own_prefixes(&mut s);
    (buf[META_LEN..len].to_vec(), m, s)
}

#[test]
fn check_upstream_accepts_the_slot_s_own_session_from_its_lac() {
    let (frame, m, s) = unchecked_upstream(&udp_v4(SUB, CORE, 64, b"x"), 0x21);
    assert_eq!(check_upstream(&frame, &m, &s), Ok(()));
    // IPv6 from the SLAAC prefix and from the delegated one.
    let (frame, m, s) = unchecked_upstream(&udp_v6(SUB6, CORE6, b"x"), 0x57);
    assert_eq!(check_upstream(&frame, &m, &s), Ok(()));
    let pd = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0xff, 0, 0, 0, 1);
    let (frame, m, s) = unchecked_upstream(&udp_v6(pd, CORE6, b"x"), 0x57);
    assert_eq!(check_upstream(&frame, &m, &s), Ok(()));
}

#[test]
fn check_upstream_drops_what_the_program_would_have() {
    let inner = udp_v4(SUB, CORE, 64, b"x");
    // Another session's ids in the slot, or none.
    let (frame, m, mut s) = unchecked_upstream(&inner, 0x21);
    s.local_session_id = 201;
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::UnknownSession));
    let (frame, m, mut s) = unchecked_upstream(&inner, 0x21);
    s.state = SessionState::Free as u32;
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::UnknownSession));
    // Not the LAC's address, or not its port.
    let (frame, m, mut s) = unchecked_upstream(&inner, 0x21);
    s.set_peer(SocketAddr::new("192.0.2.3".parse().unwrap(), 1701));
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::PeerMismatch));
    let (frame, m, mut s) = unchecked_upstream(&inner, 0x21);
    s.set_peer(SocketAddr::new("192.0.2.2".parse().unwrap(), 1702));
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::PeerMismatch));
    let (frame, m, mut s) = unchecked_upstream(&inner, 0x21);
    s.set_peer(SocketAddr::new("2001:db8:ac::2".parse().unwrap(), 1701));
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::PeerMismatch));
    // Still negotiating.
    let (frame, m, mut s) = unchecked_upstream(&inner, 0x21);
    s.state = SessionState::Control as u32;
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::SessionGone));
    // A source the session does not own, in either family.
    let (frame, m, s) = unchecked_upstream(&udp_v4(Ipv4Addr::new(198, 51, 100, 11), CORE, 64, b"x"), 0x21);
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::Spoofed));
    let (frame, m, mut s) = unchecked_upstream(&inner, 0x21);
    s.ipv4 = [0; 4];
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::Spoofed));
    let other = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x11, 0, 0, 0, 1);
    let (frame, m, s) = unchecked_upstream(&udp_v6(other, CORE6, b"x"), 0x57);
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::Spoofed));
    let beyond_pd = Ipv6Addr::new(0x2001, 0xdb8, 0x201, 0, 0, 0, 0, 1);
    let (frame, m, s) = unchecked_upstream(&udp_v6(beyond_pd, CORE6, b"x"), 0x57);
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::Spoofed));
}

#[test]
fn check_upstream_survives_offsets_past_the_frame() {
    let (frame, m, s) = unchecked_upstream(&udp_v4(SUB, CORE, 64, b"x"), 0x21);
    for cut in 0..frame.len() {
        let _ = check_upstream(&frame[..cut], &m, &s);
    }
    for (i, off) in [0u16, 1, 13, 60, 1000, u16::MAX].into_iter().enumerate() {
        let mut m = m;
        match i % 4 {
            0 => m.outer_l3 = off,
            1 => m.outer_l4 = off,
            2 => m.l2tp_ids = off,
            _ => m.inner_offset = off,
        }
        let _ = check_upstream(&frame, &m, &s);
    }
    let mut m = m;
    m.outer_ip_version = 5;
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::Malformed));
}

#[test]
fn check_upstream_reads_an_ipv6_lac_behind_a_vlan_tag() {
    let inner = udp_v4(SUB, CORE, 64, b"x");
    let mut l2tp = vec![0x40, 0x02, 0, 0, 0, 100, 0, 200, 0xff, 0x03, 0x00, 0x21];
    l2tp.extend_from_slice(&inner);
    let len = l2tp.len() as u16;
    l2tp[2..4].copy_from_slice(&len.to_be_bytes());
    let lac: Ipv6Addr = "2001:db8:ac::2".parse().unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(100).unwrap())
        .ipv6(lac.octets(), "2001:db8:ac::1".parse::<Ipv6Addr>().unwrap().octets(), 64)
        .udp(1701, 1701)
        .write(&mut frame, &l2tp)
        .unwrap();
    let m = XdpMeta {
        flags: XdpMeta::CHECK,
        outer_l3: 18,
        outer_l4: 58,
        l2tp_ids: 58 + 8 + 4,
        outer_ip_version: 6,
        ..meta(1, 4, (frame.len() - inner.len()) as u16)
    };
    let mut s = session(true, 0);
    assert_eq!(check_upstream(&frame, &m, &s), Ok(()));
    s.set_peer(SocketAddr::new("2001:db8:ac::3".parse().unwrap(), 1701));
    assert_eq!(check_upstream(&frame, &m, &s), Err(DropReason::PeerMismatch));
}

/// A downstream frame the program sent by its pool unit (no session read,
/// no next hop), and the session the unit names.
fn unchecked_downstream(inner: &[u8], version: u8) -> (Vec<u8>, XdpMeta, Session) {
    let (buf, len, m) = downstream_buf(inner, version);
    let m = XdpMeta { flags: XdpMeta::CHECK, egress_ifindex: 0, smac: [0; 6], dmac: [0; 6], ..m };
    let mut s = session(false, 0);
    own_prefixes(&mut s);
    (buf[META_LEN..len].to_vec(), m, s)
}

#[test]
fn check_downstream_accepts_the_unit_s_own_session() {
    let (frame, m, s) = unchecked_downstream(&udp_v4(CORE, SUB, 64, b"x"), 4);
    assert_eq!(check_downstream(&frame, &m, &s), Ok(()));
    let (frame, m, s) = unchecked_downstream(&udp_v6(CORE6, SUB6, b"x"), 6);
    assert_eq!(check_downstream(&frame, &m, &s), Ok(()));
    let pd = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0xff, 0, 0, 0, 1);
    let (frame, m, s) = unchecked_downstream(&udp_v6(CORE6, pd, b"x"), 6);
    assert_eq!(check_downstream(&frame, &m, &s), Ok(()));
}

#[test]
fn check_downstream_drops_what_the_session_does_not_own() {
    // A unit whose session changed under it, or left forwarding.
    let (frame, m, s) = unchecked_downstream(&udp_v4(CORE, Ipv4Addr::new(198, 51, 100, 11), 64, b"x"), 4);
    assert_eq!(check_downstream(&frame, &m, &s), Err(DropReason::NoSubscriber));
    let (frame, m, mut s) = unchecked_downstream(&udp_v4(CORE, SUB, 64, b"x"), 4);
    s.ipv4 = [0; 4];
    assert_eq!(check_downstream(&frame, &m, &s), Err(DropReason::NoSubscriber));
    let other = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0x11, 0, 0, 0, 1);
    let (frame, m, s) = unchecked_downstream(&udp_v6(CORE6, other, b"x"), 6);
    assert_eq!(check_downstream(&frame, &m, &s), Err(DropReason::NoSubscriber));
    let beyond_pd = Ipv6Addr::new(0x2001, 0xdb8, 0x201, 0, 0, 0, 0, 1);
    let (frame, m, s) = unchecked_downstream(&udp_v6(CORE6, beyond_pd, b"x"), 6);
    assert_eq!(check_downstream(&frame, &m, &s), Err(DropReason::NoSubscriber));
    for state in [SessionState::Control, SessionState::Free] {
        let (frame, m, mut s) = unchecked_downstream(&udp_v4(CORE, SUB, 64, b"x"), 4);
        s.state = state as u32;
        assert_eq!(check_downstream(&frame, &m, &s), Err(DropReason::SessionGone));
    }
}

#[test]
fn check_downstream_survives_offsets_past_the_frame() {
    for (inner, v) in [(udp_v4(CORE, SUB, 64, b"x"), 4), (udp_v6(CORE6, SUB6, b"x"), 6)] {
        let (frame, m, s) = unchecked_downstream(&inner, v);
        for cut in 0..frame.len() {
            let r = check_downstream(&frame[..cut], &m, &s);
            assert!(r.is_ok() || r == Err(DropReason::Malformed), "{cut}: {r:?}");
        }
        for off in [1u16, 13, 60, 1000, u16::MAX] {
            let _ = check_downstream(&frame, &XdpMeta { inner_offset: off, ..m }, &s);
        }
        assert_eq!(check_downstream(&frame, &XdpMeta { ip_version: 5, ..m }, &s), Err(DropReason::Malformed));
    }
}

#[test]
fn in_prefix_compares_the_prefix_length_s_bits_only() {
    let p: [u8; 16] = "2001:db8:100:ff00::".parse::<Ipv6Addr>().unwrap().octets();
    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
    assert!(in_prefix(&a("2001:db8:100:ff12::1"), &p, 56));
    assert!(!in_prefix(&a("2001:db8:100:fe12::1"), &p, 56), "the 56th bit differs");
    assert!(in_prefix(&a("2001:db8:100:ff01::1"), &p, 60));
    assert!(!in_prefix(&a("2001:db8:100:ff10::1"), &p, 60), "a bit inside the last partial byte");
    assert!(in_prefix(&a("2001:db8:100:ff00::"), &p, 128));
    assert!(!in_prefix(&a("2001:db8:100:ff00::1"), &p, 128));
    assert!(in_prefix(&a("3000::"), &p, 1) == in_prefix(&a("2001::"), &p, 1));
    assert!(!in_prefix(&a("a001::"), &p, 1), "the first bit");
    assert!(!in_prefix(&p, &p, 0), "no prefix owns nothing");
    assert!(!in_prefix(&p, &p, 129), "a length past 128 owns nothing");
    assert!(!in_prefix(&p[..15], &p, 8), "an address of the wrong length");
}
