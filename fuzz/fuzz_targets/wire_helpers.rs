//! Arbitrary bytes into the slow path's packet helpers of lns-wire: the
//! PPP header, MSS clamping, the ICMP too-big error and IPv4
//! fragmentation. Invariants: no panic, whatever arrives; and what they
//! produce holds up (a PPP frame parses back, a clamped segment's checksum
//! stays right, an ICMP error's checksums verify and fits its limit,
//! fragments fit the MTU and put back together give the original data).
//!
//! Input: MSS (2 bytes), MTU (2 bytes), then the packet (or PPP frame).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use lns_wire::{checksum, icmp, ipv4, ppp, tcp};

fuzz_target!(|data: &[u8]| {
    let Some((head, packet)) = data.split_first_chunk::<4>() else { return };
    let mss = u16::from_be_bytes([head[0], head[1]]);
    let mtu = u16::from_be_bytes([head[2], head[3]]);

    if let Some((protocol, at)) = ppp::decapsulate(packet) {
        assert!(at <= packet.len() && (1..=4).contains(&at));
        for (acfc, pfc) in [(false, false), (true, true)] {
            let frame = ppp::encapsulate(protocol, acfc, pfc, &packet[at..]);
            let (p, a) = ppp::decapsulate(&frame).expect("our own frame parses");
            assert_eq!((p, &frame[a..]), (protocol, &packet[at..]));
        }
    }

    let mut clamped = packet.to_vec();
    let before = upper_layer_sum(packet);
    if tcp::clamp_mss(&mut clamped, mss) {
        assert_eq!(clamped.len(), packet.len());
        assert!(!tcp::clamp_mss(&mut clamped.clone(), mss), "clamped twice");
        // A right checksum stays right (the incremental update keeps the
        // one's complement sum; a wrong one stays wrong by as much).
        assert_eq!(upper_layer_sum(&clamped).map(|s| s == 0), before.map(|s| s == 0));
    }

    let sources: [IpAddr; 2] =
        [Ipv4Addr::new(192, 0, 2, 1).into(), Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into()];
    for source in sources {
        if let Some(e) = icmp::too_big(packet, mtu, source) {
            if source.is_ipv4() {
                assert_eq!(checksum::of(&e[..20]), 0);
                assert_eq!(checksum::of(&e[20..]), 0);
                assert!(e.len() <= 20 + 8 + 60 + 8);
            } else {
                assert!(e.len() <= icmp::IPV6_MIN_MTU);
                let (s, d) = (e[8..24].try_into().unwrap(), e[24..40].try_into().unwrap());
                assert_eq!(checksum::ipv6_upper_layer(s, d, icmp::PROTOCOL_V6, &e[40..]), 0);
            }
        }
    }

    if let Some(fragments) = ipv4::fragment(packet, mtu) {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let mut data = Vec::new();
        for f in &fragments {
            assert!(f.len() <= usize::from(mtu));
            assert_eq!(checksum::of(&f[..usize::from(f[0] & 0x0f) * 4]), 0);
            data.extend_from_slice(&f[usize::from(f[0] & 0x0f) * 4..]);
        }
        assert_eq!(data, &packet[ihl..total]);
    }
});

/// The TCP checksum over a whole IPv4 or IPv6 packet that carries TCP
/// directly (0 when right), None for anything else.
fn upper_layer_sum(p: &[u8]) -> Option<u16> {
    match p.first()? >> 4 {
        4 => {
            let h = p.get(..20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let segment = p.get(ihl..total)?;
            let (s, d) = (h[12..16].try_into().ok()?, h[16..20].try_into().ok()?);
            (h[9] == tcp::PROTOCOL).then(|| checksum::ipv4_upper_layer(s, d, tcp::PROTOCOL, segment))
        }
        6 => {
            let h = p.get(..40)?;
            let total = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
            let segment = p.get(40..total)?;
            let (s, d) = (h[8..24].try_into().ok()?, h[24..40].try_into().ok()?);
            (h[6] == tcp::PROTOCOL).then(|| checksum::ipv6_upper_layer(s, d, tcp::PROTOCOL, segment))
        }
        _ => None,
    }
}
