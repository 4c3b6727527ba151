//! The error a router sends back for a packet too big for its next hop:
//! ICMP Destination Unreachable, Fragmentation Needed and DF Set, with the
//! next-hop MTU (RFC 792, RFC 1191 §4), and ICMPv6 Packet Too Big
//! (RFC 4443 §3.2).
//!
//! ```text
//!  ICMP (RFC 1191 §4)                  ICMPv6 (RFC 4443 §3.2)
//! +------+------+-------------+       +------+------+-------------+
//! | 3    | 4    | Checksum    |       | 2    | 0    | Checksum    |
//! +------+------+-------------+       +------+------+-------------+
//! | unused = 0  | Next-Hop MTU|       |            MTU            |
//! +-------------+-------------+       +---------------------------+
//! | IP header + 8 bytes       |       | as much of the packet as  |
//! |                           |       | fits in 1280 bytes        |
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{checksum, ipv4};

/// IP protocol number of ICMP.
pub const PROTOCOL: u8 = 1;
/// Next Header value of ICMPv6.
pub const PROTOCOL_V6: u8 = 58;
/// Destination Unreachable (RFC 792).
pub const DESTINATION_UNREACHABLE: u8 = 3;
/// Its code "fragmentation needed and DF set" (RFC 792, RFC 1191 §4).
pub const FRAGMENTATION_NEEDED: u8 = 4;
/// ICMPv6 Packet Too Big (RFC 4443 §3.2).
pub const PACKET_TOO_BIG: u8 = 2;
/// The hop limit of the errors sent.
pub const HOP_LIMIT: u8 = 64;
/// RFC 4443 §2.4(c): an ICMPv6 error is at most the IPv6 minimum MTU.
pub const IPV6_MIN_MTU: usize = 1280;

/// The ICMP error (a whole IP packet, from `source` to the packet's
/// source) telling the sender of `packet` (an IP packet from its header on,
/// the version from its first nibble) that it is too big for a next hop of
/// `mtu` bytes.
///
/// IPv4: only for a packet with DF set (without it, the router fragments:
/// [`ipv4::fragment`]); type 3 code 4 with the next-hop MTU, quoting the IP
/// header and the first 8 bytes of its data (RFC 792), TTL 64, DF set and
/// identification 0 (an atomic datagram, RFC 6864 §4.1), precedence
/// internetwork control (RFC 1812 §4.3.2.5). IPv6: Packet Too Big quoting
/// as much of the packet as keeps the error within 1280 bytes, hop limit 64.
///
/// None, as RFC 1122 §3.2.2 and RFC 4443 §2.4(e) require, for an ICMP
/// error (never answered with one), a packet whose source is not one host
/// (unspecified, multicast; for IPv4 also broadcast, loopback and class E),
/// an IPv4 packet to a multicast or the limited broadcast address (RFC 4443
/// §2.4(e.3) allows Packet Too Big for IPv6 multicast), an IPv4 fragment
/// other than the first; and for malformed input: truncated, a bad IPv4
/// header checksum (RFC 1812 §5.2.2), IPv6 extension headers running past
/// the packet, `source` of the other family or itself unspecified or
/// multicast. Bytes past the IP header's length (link padding) are ignored.
pub fn too_big(packet: &[u8], mtu: u16, source: IpAddr) -> Option<Vec<u8>> {
    match (packet.first()? >> 4, source) {
        (4, IpAddr::V4(s)) => too_big_v4(packet, mtu, s),
        (6, IpAddr::V6(s)) => too_big_v6(packet, mtu, s),
        _ => None,
    }
}

/// RFC 792: the ICMP error types (the rest are queries and replies).
fn is_error_v4(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// RFC 1122 §3.2.2: addresses that do not name one host.
fn one_host_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.octets()[0] >= 240)
}

fn too_big_v4(packet: &[u8], mtu: u16, source: Ipv4Addr) -> Option<Vec<u8>> {
    let (ihl, total) = ipv4::header(packet)?;
    let p = &packet[..total];
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & ipv4::DF == 0 || frag & ipv4::OFFSET_MASK != 0 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    if !one_host_v4(src) || dst.is_multicast() || dst.is_broadcast() || !one_host_v4(source) {
        return None;
    }
    if p[9] == PROTOCOL && is_error_v4(*p.get(ihl)?) {
        return None;
    }
    let quote = &p[..total.min(ihl + 8)];
    let len = 20 + 8 + quote.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0x45, 0xc0]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, HOP_LIMIT, PROTOCOL, 0, 0]);
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&src.octets());
    let c = checksum::of(&out);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&[DESTINATION_UNREACHABLE, FRAGMENTATION_NEEDED, 0, 0, 0, 0]);
    out.extend_from_slice(&mtu.to_be_bytes());
    out.extend_from_slice(quote);
    let c = checksum::of(&out[20..]);
    out[22..24].copy_from_slice(&c.to_be_bytes());
    Some(out)
}

/// Whether the IPv6 packet `p` (its length checked) carries an ICMPv6
/// error, through its extension headers; None when they run past it.
fn is_error_v6(p: &[u8]) -> Option<bool> {
    let mut next = p[6];
    let mut at = 40;
    loop {
        let len = match next {
            PROTOCOL_V6 => return Some(*p.get(at)? < 128),
            // Hop-by-Hop, Routing, Destination Options (RFC 8200 §4.3-4.6).
            0 | 43 | 60 => (usize::from(*p.get(at + 1)?) + 1) * 8,
            // Fragment (§4.5): a later fragment does not hold the upper
            // header, so nothing says it is an error.
            44 => {
                if u16::from_be_bytes([*p.get(at + 2)?, *p.get(at + 3)?]) & 0xfff8 != 0 {
                    return Some(false);
                }
                8
            }
            // Authentication Header (RFC 4302 §2.2): in 32-bit words, minus 2.
            51 => (usize::from(*p.get(at + 1)?) + 2) * 4,
            _ => return Some(false),
        };
        next = *p.get(at)?;
        at += len;
        if at > p.len() {
            return None;
        }
    }
}

fn too_big_v6(packet: &[u8], mtu: u16, source: Ipv6Addr) -> Option<Vec<u8>> {
    let head = packet.get(..40)?;
    let total = 40 + usize::from(u16::from_be_bytes([head[4], head[5]]));
    let p = packet.get(..total)?;
    let mut src = [0u8; 16];
    src.copy_from_slice(&p[8..24]);
    let src_addr = Ipv6Addr::from(src);
    if src_addr.is_unspecified() || src_addr.is_multicast() {
        return None;
    }
    if source.is_unspecified() || source.is_multicast() {
        return None;
    }
    if is_error_v6(p)? {
        return None;
    }
    let quote = &p[..p.len().min(IPV6_MIN_MTU - 40 - 8)];
    let plen = 8 + quote.len();
    let mut out = Vec::with_capacity(40 + plen);
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(plen as u16).to_be_bytes());
    out.extend_from_slice(&[PROTOCOL_V6, HOP_LIMIT]);
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&src);
    out.extend_from_slice(&[PACKET_TOO_BIG, 0, 0, 0]);
    out.extend_from_slice(&u32::from(mtu).to_be_bytes());
    out.extend_from_slice(quote);
    let c = checksum::ipv6_upper_layer(source.octets(), src, PROTOCOL_V6, &out[40..]);
    out[42..44].copy_from_slice(&c.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const HOST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const PEER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];

    use crate::reference::sum16;

    /// An IPv4 packet 198.51.100.10 → 203.0.113.7 with DF, of `protocol`
    /// and `payload`.
    fn v4(protocol: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
        let mut p =
            vec![0x45, 0, 0, 0, 0xbe, 0xef, 0, 0, 57, protocol, 0, 0, 198, 51, 100, 10, 203, 0, 113, 7];
        p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        let c = sum16(&[&p]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn v6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, next, 57];
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&HOST6);
        p.extend_from_slice(&PEER6);
        p.extend_from_slice(payload);
        p
    }

    fn udp(n: usize) -> Vec<u8> {
        let mut u = vec![0x9c, 0x40, 0x00, 0x35, 0, 0, 0, 0];
        u[4..6].copy_from_slice(&(n as u16).to_be_bytes());
        u.extend((8..n).map(|i| i as u8));
        u
    }

    #[test]
    fn ipv4_with_df() {
        let p = v4(17, 0x4000, &udp(1472));
        let e = too_big(&p, 1400, ROUTER4.into()).expect("an error");
        assert_eq!(e.len(), 20 + 8 + 28);
        // IP header: from the router to the packet's source, TTL 64.
        assert_eq!(&e[..12], &[0x45, 0xc0, 0, 56, 0, 0, 0x40, 0, 64, 1, e[10], e[11]]);
        assert_eq!(&e[12..16], &ROUTER4.octets());
        assert_eq!(&e[16..20], &[198, 51, 100, 10]);
        assert_eq!(sum16(&[&e[..20]]), 0);
        // ICMP: 3/4, next-hop MTU, the header and 8 bytes quoted.
        assert_eq!(&e[20..22], &[3, 4]);
        assert_eq!(&e[24..28], &[0, 0, 0x05, 0x78]);
        assert_eq!(&e[28..], &p[..28]);
        assert_eq!(sum16(&[&e[20..]]), 0);
    }

    #[test]
    fn ipv4_quote_is_header_and_8_bytes_with_options() {
        // IHL 6: a 4-byte option (NOP x3, EOL), and a 3-byte payload.
        let mut p = v4(17, 0x4000, &[1, 2, 3]);
        p[0] = 0x46;
        p.splice(20..20, [1, 1, 1, 0]);
        p[2..4].copy_from_slice(&27u16.to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = sum16(&[&p[..24]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let e = too_big(&p, 576, ROUTER4.into()).expect("an error");
        assert_eq!(&e[28..], &p[..]);
        let p = {
            let mut q = p[..24].to_vec();
            q.extend_from_slice(&[9; 100]);
            q[2..4].copy_from_slice(&124u16.to_be_bytes());
            q[10..12].copy_from_slice(&[0, 0]);
            let c = sum16(&[&q[..24]]);
            q[10..12].copy_from_slice(&c.to_be_bytes());
            q
        };
        let e = too_big(&p, 576, ROUTER4.into()).expect("an error");
        assert_eq!(&e[28..], &p[..32]);
        assert_eq!(sum16(&[&e[20..]]), 0);
    }

    #[test]
    fn ipv4_refusals() {
        let ok = v4(17, 0x4000, &udp(100));
        assert!(too_big(&ok, 1400, ROUTER4.into()).is_some());
        // No DF: the caller fragments.
        assert_eq!(too_big(&v4(17, 0, &udp(100)), 1400, ROUTER4.into()), None);
        // A later fragment (DF with an offset is odd, but refused).
        assert_eq!(too_big(&v4(17, 0x4010, &udp(100)), 1400, ROUTER4.into()), None);
        // The other family's source.
        assert_eq!(too_big(&ok, 1400, ROUTER6.into()), None);
        // Sources that are not one host, destinations that are many.
        for (at, addr) in [
            (12, [0, 0, 0, 0]),
            (12, [224, 0, 0, 5]),
            (12, [255, 255, 255, 255]),
            (12, [127, 0, 0, 1]),
            (12, [240, 0, 0, 1]),
            (16, [239, 1, 2, 3]),
            (16, [255, 255, 255, 255]),
        ] {
            let mut p = ok.clone();
            p[at..at + 4].copy_from_slice(&addr);
            p[10..12].copy_from_slice(&[0, 0]);
            let c = sum16(&[&p[..20]]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(too_big(&p, 1400, ROUTER4.into()), None, "{at} {addr:?}");
        }
        assert_eq!(too_big(&ok, 1400, Ipv4Addr::UNSPECIFIED.into()), None);
        // A bad header checksum.
        let mut p = ok.clone();
        p[10] ^= 1;
        assert_eq!(too_big(&p, 1400, ROUTER4.into()), None);
        // Bad IHL, version.
        let mut p = ok.clone();
        p[0] = 0x44;
        assert_eq!(too_big(&p, 1400, ROUTER4.into()), None);
        let mut p = ok;
        p[0] = 0x55;
        assert_eq!(too_big(&p, 1400, ROUTER4.into()), None);
        assert_eq!(too_big(&[], 1400, ROUTER4.into()), None);
    }

    #[test]
    fn never_an_error_for_an_icmp_error() {
        for (t, answered) in
            [(0u8, true), (8, true), (13, true), (3, false), (4, false), (5, false), (11, false), (12, false)]
        {
            let p = v4(1, 0x4000, &[t, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
            assert_eq!(too_big(&p, 68, ROUTER4.into()).is_some(), answered, "type {t}");
        }
        // ICMP with no type byte at all.
        assert_eq!(too_big(&v4(1, 0x4000, &[]), 68, ROUTER4.into()), None);
        for (t, answered) in
            [(128u8, true), (129, true), (135, true), (1, false), (2, false), (3, false), (4, false)]
        {
            let p = v6(58, &[t, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(too_big(&p, 1280, ROUTER6.into()).is_some(), answered, "type {t}");
            // Behind a Hop-by-Hop and a Destination Options header.
            let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0, 58, 0, 1, 4, 0, 0, 0, 0];
            ext.extend_from_slice(&[t, 0, 0, 0, 0, 0, 0, 0]);
            let p = v6(0, &ext);
            assert_eq!(too_big(&p, 1280, ROUTER6.into()).is_some(), answered, "type {t} after extensions");
        }
        // A first fragment of an ICMPv6 error is one; a later fragment
        // cannot be told apart and is answered.
        let p = v6(44, &[58, 0, 0, 0x00, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(too_big(&p, 1280, ROUTER6.into()), None);
        let p = v6(44, &[58, 0, 0, 0x08, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(too_big(&p, 1280, ROUTER6.into()).is_some());
        // Extension headers running past the packet.
        assert_eq!(too_big(&v6(0, &[58, 1, 0, 0, 0, 0, 0, 0]), 1280, ROUTER6.into()), None);
        assert_eq!(too_big(&v6(60, &[58]), 1280, ROUTER6.into()), None);
    }

    #[test]
    fn ipv6_packet_too_big() {
        for n in [100usize, 1232, 1233, 1452] {
            let p = v6(17, &udp(n));
            let e = too_big(&p, 1280, ROUTER6.into()).expect("an error");
            let quoted = (40 + n).min(1232);
            assert_eq!(e.len(), 40 + 8 + quoted, "{n}");
            assert!(e.len() <= 1280);
            assert_eq!(&e[..4], &[0x60, 0, 0, 0]);
            assert_eq!(usize::from(u16::from_be_bytes([e[4], e[5]])), 8 + quoted);
            assert_eq!(&e[6..8], &[58, 64]);
            assert_eq!(&e[8..24], &ROUTER6.octets());
            assert_eq!(&e[24..40], &HOST6);
            assert_eq!(&e[40..42], &[2, 0]);
            assert_eq!(&e[44..48], &1280u32.to_be_bytes());
            assert_eq!(&e[48..], &p[..quoted]);
            // The pseudo-header (RFC 8200 §8.1) and the message.
            let len = ((8 + quoted) as u32).to_be_bytes();
            assert_eq!(sum16(&[&ROUTER6.octets(), &HOST6, &len, &[0, 0, 0, 58], &e[40..]]), 0, "{n}");
        }
    }

    #[test]
    fn ipv6_refusals() {
        let ok = v6(17, &udp(100));
        assert!(too_big(&ok, 1280, ROUTER6.into()).is_some());
        assert_eq!(too_big(&ok, 1280, ROUTER4.into()), None);
        assert_eq!(too_big(&ok, 1280, Ipv6Addr::UNSPECIFIED.into()), None);
        for src in [[0u8; 16], [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]] {
            let mut p = ok.clone();
            p[8..24].copy_from_slice(&src);
            assert_eq!(too_big(&p, 1280, ROUTER6.into()), None);
        }
        // To a multicast group: RFC 4443 §2.4(e.3) allows Packet Too Big.
        let mut p = ok;
        p[24] = 0xff;
        assert!(too_big(&p, 1280, ROUTER6.into()).is_some());
    }

    #[test]
    fn every_truncation() {
        for p in [v4(17, 0x4000, &udp(40)), v6(17, &udp(40))] {
            let source: IpAddr = if p[0] >> 4 == 4 { ROUTER4.into() } else { ROUTER6.into() };
            assert!(too_big(&p, 576, source).is_some());
            for n in 0..p.len() {
                assert_eq!(too_big(&p[..n], 576, source), None, "cut at {n}");
            }
            // Link padding after the packet is not quoted.
            let mut padded = p.clone();
            padded.extend_from_slice(&[0xee; 20]);
            assert_eq!(too_big(&padded, 576, source), too_big(&p, 576, source));
        }
    }

    #[test]
    fn etherparse_agrees() {
        use etherparse::{Icmpv4Type, Icmpv6Type, IpNumber, SlicedPacket};
        let p = v4(17, 0x4000, &udp(1472));
        let e = too_big(&p, 1400, ROUTER4.into()).expect("an error");
        let s = SlicedPacket::from_ip(&e).expect("parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else { panic!("not IPv4: {:?}", s.net) };
        assert_eq!(ip.header().protocol(), IpNumber::ICMP);
        assert_eq!(ip.header().to_header().calc_header_checksum(), ip.header().header_checksum());
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &s.transport else { panic!() };
        let Icmpv4Type::DestinationUnreachable(d) = icmp.icmp_type() else {
            panic!("{:?}", icmp.icmp_type())
        };
        assert_eq!(d, etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 });
        assert_eq!(icmp.header().checksum, icmp.icmp_type().calc_checksum(icmp.payload()));

        let p = v6(17, &udp(1452));
        let e = too_big(&p, 1400, ROUTER6.into()).expect("an error");
        let s = SlicedPacket::from_ip(&e).expect("parses");
        let Some(etherparse::NetSlice::Ipv6(ip)) = &s.net else { panic!() };
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = &s.transport else { panic!() };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1400 });
        let want = icmp
            .icmp_type()
            .calc_checksum(ip.header().source(), ip.header().destination(), icmp.payload())
            .expect("checksum");
        assert_eq!(icmp.header().checksum, want);
    }
}
