//! trafgen configurations that replay established sessions' data messages.
//!
//! Load tests bring sessions up with the emulator, then hand the data path
//! to trafgen: one frame per session, cycled, with the exact Ethernet, IP,
//! UDP, L2TP and PPP headers the LNS expects from that LAC.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use lns_wire::checksum;

/// The outer headers of the tunnel as the LNS sees them (the LNS's port
/// is each tunnel's: see [`config`]).
#[derive(Clone, Copy, Debug)]
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub lac: SocketAddrV4,
    pub lns: SocketAddrV4,
}

/// Ethernet/IPv4/UDP around one L2TP message (UDP checksum 0, allowed over
/// IPv4 and what LACs commonly send).
pub fn frame(o: &Outer, l2tp: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(42 + l2tp.len());
    v.extend_from_slice(&o.dst_mac);
    v.extend_from_slice(&o.src_mac);
    v.extend_from_slice(&[0x08, 0x00]);
    let total = (28 + l2tp.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&o.lac.ip().octets());
    ip[16..20].copy_from_slice(&o.lns.ip().octets());
    let c = checksum::of(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(&ip);
    v.extend_from_slice(&o.lac.port().to_be_bytes());
    v.extend_from_slice(&o.lns.port().to_be_bytes());
    v.extend_from_slice(&((8 + l2tp.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(l2tp);
    v
}

/// A trafgen configuration: one packet block per session, in order; each
/// message goes to its tunnel's port of the LNS (the second field).
pub fn config(o: &Outer, messages: &[(Ipv4Addr, u16, Vec<u8>)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "/* lns-lacsim: {} sessions, LAC {} -> LNS {} */", messages.len(), o.lac, o.lns);
    for (addr, port, l2tp) in messages {
        let _ = writeln!(s, "/* subscriber {addr}, LNS port {port} */");
        let o = Outer { lns: SocketAddrV4::new(*o.lns.ip(), *port), ..*o };
        s.push('{');
        for (i, b) in frame(&o, l2tp).iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "0x{b:02x}");
        }
        s.push_str("}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_valid_ipv4_headers_and_the_message() {
        let o = Outer {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            lac: "192.0.2.2:1701".parse().unwrap(),
            lns: "192.0.2.1:1701".parse().unwrap(),
        };
        let f = frame(&o, &[0, 2, 0, 7, 0, 9, 0xff, 0x03, 0, 0x21]);
        assert_eq!(f.len(), 14 + 20 + 8 + 10);
        assert_eq!(checksum::of(&f[14..34]), 0, "IPv4 header checksum");
        assert_eq!(&f[26..30], &[192, 0, 2, 2]);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 18);
        let cfg = config(&o, &[("198.51.100.10".parse().unwrap(), 20001, vec![0, 2, 0, 7, 0, 9])]);
        assert!(cfg.contains("{0x02,0x00,0x00,0x00,0x00,0x02,"));
        assert_eq!(cfg.matches('{').count(), 1);
        // The tunnel's port of the LNS: 20001 = 0x4e21, after the LAC's 1701.
        assert!(cfg.contains(",0x06,0xa5,0x4e,0x21,"), "{cfg}");
    }
}
