//! TCP MSS clamping (RFC 879, RFC 6691 §2; RFC 4459 §3.2 for why tunnels
//! do it): a router on a path of smaller MTU lowers the Maximum Segment
//! Size option of SYNs going through it, so the ends never send segments
//! that would need fragmenting or a Packet Too Big.
//!
//! ```text
//!  TCP header (RFC 9293 §3.1)          MSS option (§3.2)
//!  12: Data Offset | flags             +--------+--------+---------+--------+
//!  13: CWR ECE URG ACK PSH RST SYN FIN | kind=2 | len=4  |   MSS (16 bits)  |
//!  16: Checksum                        +--------+--------+---------+--------+
//!  20: options, to Data Offset * 4
//! ```
//!
//! One implementation for both paths: the data plane calls
//! [`clamp_mss_at`] on the packet in its frame, the control plane's slow
//! path [`clamp_mss`] on a packet of its own.

use crate::checksum;

/// IP protocol number of TCP.
pub const PROTOCOL: u8 = 6;
/// The SYN flag, in the flags octet (offset 13).
const SYN: u8 = 0x02;
/// Option kinds (RFC 9293 §3.2).
const END: u8 = 0;
const NOP: u8 = 1;
const MSS: u8 = 2;

/// Lowers the MSS option of a TCP SYN in `packet`, an IP packet from its
/// header on (the version from its first nibble, 4 or 6), to `mss` when it
/// is larger, updating the TCP checksum incrementally (RFC 1624). Returns
/// whether it changed anything.
///
/// Only the first header counts: an IPv4 fragment (MF or an offset) and
/// an IPv6 packet whose Next Header is not TCP (extension headers) are
/// left alone, as is anything truncated or malformed; it never panics.
/// Bytes after the IP header's length (link padding) are ignored.
pub fn clamp_mss(packet: &mut [u8], mss: u16) -> bool {
    let len = packet.len();
    clamp_mss_at(packet, 0, len, mss)
}

/// [`clamp_mss`] on the IP packet at `buf[ip..ip + len]`, in place in a
/// larger buffer (the data plane's frame). False when that range is not
/// within `buf`.
#[inline]
pub fn clamp_mss_at(buf: &mut [u8], ip: usize, len: usize, mss: u16) -> bool {
    let Some(p) = ip.checked_add(len).and_then(|end| buf.get_mut(ip..end)) else { return false };
    // The protocol first: on the fast path nearly every packet leaves
    // there, so that test comes before the rest of the header's.
    let (l4, total) = match &*p {
        [first @ 0x40..=0x4f, _, t0, t1, _, _, f0, f1, _, PROTOCOL, _, _, _, _, _, _, _, _, _, _, ..] => {
            let ihl = usize::from(*first & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*t0, *t1]));
            // MF or a fragment offset: only a whole datagram is looked at.
            let fragment = u16::from_be_bytes([*f0, *f1]) & 0x3fff;
            if ihl < 20 || total < ihl || fragment != 0 {
                return false;
            }
            (ihl, total)
        }
        [0x60..=0x6f, _, _, _, l0, l1, PROTOCOL, _, ..] if p.len() >= 40 => {
            (40, 40 + usize::from(u16::from_be_bytes([*l0, *l1])))
        }
        _ => return false,
    };
    let Some(tcp) = p.get_mut(l4..total) else { return false };
    if tcp.len() < 20 || tcp[13] & SYN == 0 {
        return false;
    }
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    if data_offset < 20 || data_offset > tcp.len() {
        return false;
    }
    let mut o = 20;
    while o < data_offset {
        match tcp[o] {
            END => return false,
            NOP => o += 1,
            kind => {
                let Some(&olen) = tcp.get(o + 1) else { return false };
                let olen = usize::from(olen);
                if olen < 2 || o + olen > data_offset {
                    return false;
                }
                if kind == MSS && olen == 4 {
                    let current = u16::from_be_bytes([tcp[o + 2], tcp[o + 3]]);
                    if current <= mss {
                        return false;
                    }
                    tcp[o + 2..o + 4].copy_from_slice(&mss.to_be_bytes());
                    // After an odd number of NOPs the value straddles two
                    // 16-bit words of the sum: its bytes count swapped
                    // (RFC 1071 §2(B), byte order independence).
                    let (old, new) = if o.is_multiple_of(2) {
                        (current, mss)
                    } else {
                        (current.swap_bytes(), mss.swap_bytes())
                    };
                    let c = u16::from_be_bytes([tcp[16], tcp[17]]);
                    tcp[16..18].copy_from_slice(&checksum::replace16(c, old, new).to_be_bytes());
                    return true;
                }
                o += olen;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4_SRC: [u8; 4] = [198, 51, 100, 10];
    const V4_DST: [u8; 4] = [203, 0, 113, 7];
    const V6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const V6_DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];

    /// A SYN's TCP header with the given options (padded to 32 bits), its
    /// checksum left zero.
    fn tcp(flags: u8, options: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        while !opts.len().is_multiple_of(4) {
            opts.push(END);
        }
        let mut t = vec![0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0];
        t.push((((20 + opts.len()) / 4) as u8) << 4);
        t.push(flags);
        t.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        t.extend_from_slice(&opts);
        t
    }

    /// Linux's SYN options: MSS, SACK permitted, timestamps, NOP, window scale.
    fn linux_options(mss: u16) -> Vec<u8> {
        let m = mss.to_be_bytes();
        vec![2, 4, m[0], m[1], 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]
    }

    fn v4(segment: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, PROTOCOL, 0, 0];
        p[2..4].copy_from_slice(&((20 + segment.len()) as u16).to_be_bytes());
        p.extend_from_slice(&V4_SRC);
        p.extend_from_slice(&V4_DST);
        let c = checksum::of(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let mut s = segment.to_vec();
        let c = checksum::ipv4_upper_layer(V4_SRC, V4_DST, PROTOCOL, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&s);
        p
    }

    fn v6(segment: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, PROTOCOL, 64];
        p[4..6].copy_from_slice(&(segment.len() as u16).to_be_bytes());
        p.extend_from_slice(&V6_SRC);
        p.extend_from_slice(&V6_DST);
        let mut s = segment.to_vec();
        let c = checksum::ipv6_upper_layer(V6_SRC, V6_DST, PROTOCOL, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&s);
        p
    }

    fn mss_of(p: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([p[at], p[at + 1]])
    }

    /// The TCP checksum recomputed from scratch over the whole segment
    /// (0 when the field is right).
    fn verify(p: &[u8]) -> u16 {
        if p[0] >> 4 == 4 {
            checksum::ipv4_upper_layer(V4_SRC, V4_DST, PROTOCOL, &p[20..])
        } else {
            checksum::ipv6_upper_layer(V6_SRC, V6_DST, PROTOCOL, &p[40..])
        }
    }

    #[test]
    fn clamps_a_v4_syn() {
        let mut p = v4(&tcp(SYN, &linux_options(1460)));
        assert_eq!(verify(&p), 0);
        assert!(clamp_mss(&mut p, 1400));
        assert_eq!(mss_of(&p, 42), 1400);
        assert_eq!(verify(&p), 0);
        // Already small enough: nothing changes.
        let before = p.clone();
        assert!(!clamp_mss(&mut p, 1400));
        assert!(!clamp_mss(&mut p, 1452));
        assert_eq!(p, before);
    }

    #[test]
    fn clamps_a_v6_syn_ack() {
        let mut p = v6(&tcp(SYN | 0x10, &linux_options(1440)));
        assert!(clamp_mss(&mut p, 1380));
        assert_eq!(mss_of(&p, 62), 1380);
        assert_eq!(verify(&p), 0);
    }

    #[test]
    fn every_mss_keeps_the_checksum_right() {
        for (from, to) in [(65535, 0), (1460, 536), (0x8000, 0x7fff), (0x0100, 0x00ff), (2, 1)] {
            for p in [v4(&tcp(SYN, &linux_options(from))), v6(&tcp(SYN, &linux_options(from)))] {
                let mut p = p;
                assert!(clamp_mss(&mut p, to));
                assert_eq!(verify(&p), 0, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn mss_after_other_options() {
        // NOPs, a window scale, then the MSS: at an odd offset (the value
        // across two words of the checksum) and, with one more NOP, even.
        for (options, at) in
            [(&[1, 1, 3, 3, 7, 2, 4, 0x05, 0xb4][..], 7), (&[1, 1, 1, 3, 3, 7, 2, 4, 0x05, 0xb4], 8)]
        {
            for wrap in [v4 as fn(&[u8]) -> Vec<u8>, v6] {
                let mut p = wrap(&tcp(SYN, options));
                let l4 = if p[0] >> 4 == 4 { 20 } else { 40 };
                for mss in [1200, 1199, 536, 0x00ff, 0] {
                    assert!(clamp_mss(&mut p, mss));
                    assert_eq!(mss_of(&p, l4 + 20 + at), mss);
                    assert_eq!(verify(&p), 0, "{options:?} {mss}");
                }
            }
        }
    }

    #[test]
    fn left_alone() {
        let opts = linux_options(1460);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not a SYN", v4(&tcp(0x10, &opts))),
            ("no MSS", v4(&tcp(SYN, &[1, 3, 3, 7]))),
            ("no options", v4(&tcp(SYN, &[]))),
            ("MSS after END", v4(&tcp(SYN, &[0, 0, 0, 0, 2, 4, 5, 0xb4]))),
            ("MSS of a bad length", v4(&tcp(SYN, &[2, 3, 5, 0xb4]))),
            ("option length 0", v4(&tcp(SYN, &[3, 0, 2, 4, 5, 0xb4]))),
            ("option past the header", v4(&tcp(SYN, &[1, 1, 3, 9]))),
            ("udp", {
                let mut p = v4(&tcp(SYN, &opts));
                p[9] = 17;
                p
            }),
            ("v6 extension header first", {
                let mut p = v6(&tcp(SYN, &opts));
                p[6] = 0;
                p
            }),
            ("version 5", {
                let mut p = v4(&tcp(SYN, &opts));
                p[0] = 0x55;
                p
            }),
        ];
        for (what, mut p) in cases {
            let before = p.clone();
            assert!(!clamp_mss(&mut p, 536), "{what}");
            assert_eq!(p, before, "{what}");
        }
    }

    #[test]
    fn fragments_are_left_alone() {
        for frag in [0x2000u16, 0x0001, 0x3fff, 0x6000] {
            let mut p = v4(&tcp(SYN, &linux_options(1460)));
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            assert!(!clamp_mss(&mut p, 536), "{frag:#x}");
        }
        // DF alone is not a fragment.
        let mut p = v4(&tcp(SYN, &linux_options(1460)));
        p[6] = 0x40;
        assert!(clamp_mss(&mut p, 536));
    }

    #[test]
    fn bad_ip_headers() {
        for ihl in [0u8, 1, 4, 15] {
            let mut p = v4(&tcp(SYN, &linux_options(1460)));
            p[0] = 0x40 | ihl;
            assert!(!clamp_mss(&mut p, 536), "ihl {ihl}");
        }
        // A total length beyond the buffer, or below the header.
        for total in [0u16, 19, 41, 1000, 0xffff] {
            let mut p = v4(&tcp(SYN, &linux_options(1460)));
            p[2..4].copy_from_slice(&total.to_be_bytes());
            assert!(!clamp_mss(&mut p, 536), "total {total}");
        }
        // An IPv6 payload length beyond the buffer.
        let mut p = v6(&tcp(SYN, &linux_options(1460)));
        p[4..6].copy_from_slice(&1000u16.to_be_bytes());
        assert!(!clamp_mss(&mut p, 536));
    }

    #[test]
    fn link_padding_is_ignored() {
        let mut p = v4(&tcp(SYN, &linux_options(1460)));
        let n = p.len();
        p.extend_from_slice(&[2, 4, 0xff, 0xff, 0, 0]);
        assert!(clamp_mss(&mut p, 1000));
        assert_eq!(checksum::ipv4_upper_layer(V4_SRC, V4_DST, PROTOCOL, &p[20..n]), 0);
        assert_eq!(&p[n..], [2, 4, 0xff, 0xff, 0, 0]);
    }

    #[test]
    fn every_truncation() {
        // Cut anywhere (and with the IP length then claiming more than is
        // there, or fixed to match): no panic, and a change only when the
        // whole TCP header is present.
        for p in [v4(&tcp(SYN, &linux_options(1460))), v6(&tcp(SYN, &linux_options(1460)))] {
            let hdr = if p[0] >> 4 == 4 { 20 } else { 40 };
            for n in 0..p.len() {
                let mut cut = p[..n].to_vec();
                assert!(!clamp_mss(&mut cut, 536), "cut at {n}");
                if n >= hdr {
                    let mut fixed = p[..n].to_vec();
                    if hdr == 20 {
                        fixed[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                    } else {
                        fixed[4..6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
                    }
                    assert!(!clamp_mss(&mut fixed, 536), "fixed at {n}");
                }
            }
        }
    }

    #[test]
    fn in_place_in_a_frame() {
        let p = v4(&tcp(SYN, &linux_options(1460)));
        let mut frame = vec![0xee; 100];
        frame.extend_from_slice(&p);
        frame.extend_from_slice(&[0xee; 30]);
        assert!(clamp_mss_at(&mut frame, 100, p.len(), 1000));
        assert_eq!(mss_of(&frame, 100 + 42), 1000);
        assert_eq!(checksum::ipv4_upper_layer(V4_SRC, V4_DST, PROTOCOL, &frame[120..100 + p.len()]), 0);
        assert!(frame[..100].iter().chain(&frame[100 + p.len()..]).all(|&b| b == 0xee));
        // Ranges outside the buffer.
        let n = frame.len();
        assert!(!clamp_mss_at(&mut frame, n - 10, 20, 500));
        assert!(!clamp_mss_at(&mut frame, usize::MAX, 2, 500));
        assert!(!clamp_mss_at(&mut frame, 5, usize::MAX, 500));
        assert!(!clamp_mss_at(&mut [], 0, 0, 500));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A SYN with its bytes overwritten one at a time with every value.
        let base = v4(&tcp(SYN, &linux_options(1460)));
        for i in 0..base.len() {
            for b in 0..=255u8 {
                let mut p = base.clone();
                p[i] = b;
                let _ = clamp_mss(&mut p, 536);
            }
        }
    }
}
