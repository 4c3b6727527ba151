//! The Internet checksum (RFC 1071): the one's complement of the one's
//! complement sum of 16-bit big-endian words, a trailing odd byte padded
//! with a zero byte.
//!
//! A checksum is computed in two steps so that the pieces (a pseudo-header,
//! a header in place, the payload) need not be contiguous: a running `u64`
//! sum starts at 0 and takes bytes ([`add`]) and wide words ([`add_word`]),
//! then [`fold`] turns it into the value for the checksum field. [`of`] is
//! both steps over one slice. Pieces given to [`add`] one after the other
//! must each have an even length except the last, as RFC 1071 §2(B) sums
//! 16-bit words across the whole message.
//!
//! Verifying is computing over the message with its checksum field filled
//! in: the result is 0 when it is right.
//!
//! Byte order: the sum is of big-endian words and [`fold`] returns the
//! field's value as a number, written with `to_be_bytes`.

/// Adds `data` to a running one's-complement sum (RFC 1071 §4.1, in
/// 64-bit words as its §2(C) allows): not yet folded or complemented.
#[inline]
pub fn add(mut sum: u64, data: &[u8]) -> u64 {
    // Summing 8 bytes at a time is what makes it cheap on the data plane's
    // hot path (every IPv4 header and, with UDP checksums on, every packet).
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        sum = add_word(sum, u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum = add_word(sum, u16::from_be_bytes([rest[i], rest[i + 1]]) as u64);
        i += 2;
    }
    if i < rest.len() {
        // RFC 1071 §4.1: "Add left-over byte, if any" as the high byte.
        sum = add_word(sum, (rest[i] as u64) << 8);
    }
    sum
}

/// Adds a value to a running one's-complement sum with end-around carry,
/// so the sum never overflows whatever it already holds. A value wider
/// than 16 bits counts as the sum of its 16-bit words (2^16 ≡ 1 modulo
/// 2^16 - 1), so e.g. a pseudo-header's protocol and length may be added
/// as one number.
#[inline]
pub fn add_word(sum: u64, v: u64) -> u64 {
    let (s, carry) = sum.overflowing_add(v);
    s + carry as u64
}

/// Folds a running sum to 16 bits and complements it: the value to put in
/// a checksum field (0 when verifying a correct message).
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of `data` alone (an IPv4 header, an ICMPv4 message).
#[inline]
pub fn of(data: &[u8]) -> u16 {
    fold(add(0, data))
}

/// RFC 1624 §3 (eqn. 3) incremental update of checksum field `csum` when
/// one 16-bit word of what it covers changes from `old` to `new`:
/// HC' = ~(~HC + ~m + m'). Unlike RFC 1141's eqn. 2 it never turns a
/// correct checksum into 0xffff where a full recomputation gives 0.
#[inline]
pub fn replace16(csum: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!csum as u32) + (!old as u32 & 0xffff) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The running sum of the IPv4 pseudo-header of an upper-layer packet of
/// `len` bytes (RFC 768, RFC 793 §3.1): source, destination, zero,
/// protocol, length.
#[inline]
pub fn pseudo_ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, len: usize) -> u64 {
    let sum = add(add(0, &src), &dst);
    add_word(sum, protocol as u64 + len as u64)
}

/// The running sum of the IPv6 pseudo-header of an upper-layer packet of
/// `len` bytes (RFC 8200 §8.1): source, destination, 32-bit length, three
/// zero bytes, next header.
#[inline]
pub fn pseudo_ipv6(src: [u8; 16], dst: [u8; 16], next_header: u8, len: usize) -> u64 {
    let sum = add(add(0, &src), &dst);
    add_word(sum, next_header as u64 + len as u64)
}

/// The checksum of an upper-layer message over IPv4 (UDP, TCP), with its
/// pseudo-header.
#[inline]
pub fn ipv4_upper_layer(src: [u8; 4], dst: [u8; 4], protocol: u8, message: &[u8]) -> u16 {
    fold(add(pseudo_ipv4(src, dst, protocol, message.len()), message))
}

/// The checksum of an upper-layer message over IPv6 (ICMPv6, UDP, TCP),
/// with its pseudo-header.
#[inline]
pub fn ipv6_upper_layer(src: [u8; 16], dst: [u8; 16], next_header: u8, message: &[u8]) -> u16 {
    fold(add(pseudo_ipv6(src, dst, next_header, message.len()), message))
}

/// A computed UDP checksum as it goes in the field: RFC 768 sends a
/// computed zero as all ones, since a zero field means "no checksum"
/// (allowed over IPv4 only, RFC 8200 §8.1).
#[inline]
pub fn udp_field(computed: u16) -> u16 {
    if computed == 0 {
        0xffff
    } else {
        computed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, 16 bits at a time in a `u32`, to check the
    /// 64-bit version against.
    fn reference(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for c in data.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    /// Deterministic bytes (a linear congruential generator).
    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn rfc1071_numerical_example() {
        // RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(of(&data), !0xddf2);
        // §2(B): any grouping of even-length pieces gives the same sum.
        for split in [0, 2, 4, 6, 8] {
            assert_eq!(fold(add(add(0, &data[..split]), &data[split..])), !0xddf2, "split {split}");
        }
        // §2(C): the sum of the 32-bit words folds to the same value.
        assert_eq!(fold(add_word(add_word(0, 0x0001_f203), 0xf4f5_f6f7)), !0xddf2);
    }

    #[test]
    fn odd_lengths_pad_with_a_zero_byte() {
        assert_eq!(of(&[]), 0xffff);
        assert_eq!(of(&[0xab]), !0xab00);
        assert_eq!(of(&[0x00, 0x01, 0xf2]), !0xf201);
        // Every length through the 8-byte chunks and each remainder, and
        // every alignment of the slice.
        let data = bytes(200, 7);
        for start in 0..8 {
            for len in 0..=120 {
                let d = &data[start..start + len];
                assert_eq!(of(d), reference(d), "start {start} len {len}");
            }
        }
    }

    #[test]
    fn large_inputs_match_the_reference() {
        for (n, seed) in [(1400, 1), (1501, 2), (9000, 3), (65_535, 4)] {
            let d = bytes(n, seed);
            assert_eq!(of(&d), reference(&d), "{n}");
        }
        // All ones: the sum is -0 and the checksum 0, never 0xffff.
        assert_eq!(of(&[0xff; 1400]), 0);
    }

    #[test]
    fn sums_never_overflow() {
        // Found by the dataplane_packet fuzz target: a running sum near
        // u64::MAX plus the pseudo-header's length overflowed.
        let s = add(u64::MAX - 1, &[0xff; 64]);
        let s = add_word(s, u64::MAX);
        let _ = fold(s);
        assert_eq!(fold(add(0, &[0xff, 0xff])), 0);
        assert_eq!(fold(add_word(u64::MAX, u64::MAX)), 0);
    }

    // Known packets, from testdata/captures/l2tpns-lns_ppp-chap-ipcp.pcap
    // (frames 24 and 25: checksums checked correct by tshark) and an
    // ICMPv6 echo request recorded from Linux (`ping -6 -s 13`, correct
    // per tshark): each checksum is recomputed with its field zeroed, and
    // the message with its field in place verifies to 0.

    /// The outer IPv4 header of frame 24 (192.0.2.2 → 192.0.2.1, L2TP).
    const OUTER_IPV4: &str = "45 00 00 58 2a 76 40 00 40 11 8c 1b c0 00 02 02 c0 00 02 01";
    /// The subscriber's IPv4 header inside it (198.51.100.1 → 203.0.113.1).
    const INNER_IPV4: &str = "45 00 00 30 00 01 40 00 40 11 d4 85 c6 33 64 01 cb 00 71 01";
    /// Its UDP datagram, 40000 → 9, "hello through l2tpns".
    const INNER_UDP: &str =
        "9c 40 00 09 00 1c a5 cd 68 65 6c 6c 6f 20 74 68 72 6f 75 67 68 20 6c 32 74 70 6e 73";
    /// Frame 25's ICMP echo request (56 bytes).
    const ICMP_ECHO: &str = "08 00 3a b9 53 54 00 01 70 70 70 64 2d 73 74 61 6e 64 69 6e 70 70 70 64 2d 73
        74 61 6e 64 69 6e 70 70 70 64 2d 73 74 61 6e 64 69 6e 70 70 70 64 2d 73 74 61 6e 64 69 6e";
    /// ICMPv6 echo request 2001:db8::1 → 2001:db8::1, 21 bytes (odd).
    const ICMPV6_ECHO: &str = "80 00 11 ae 4a 05 00 01 41 41 41 41 41 41 41 41 41 41 41 41 41";

    fn recomputed(msg: &[u8], field: usize, sum: impl Fn(&[u8]) -> u16) -> u16 {
        let mut m = msg.to_vec();
        m[field..field + 2].copy_from_slice(&[0, 0]);
        sum(&m)
    }

    #[test]
    fn ipv4_headers_from_a_capture() {
        for (h, want) in [(OUTER_IPV4, 0x8c1b), (INNER_IPV4, 0xd485)] {
            let h = hex(h);
            assert_eq!(recomputed(&h, 10, of), want);
            assert_eq!(of(&h), 0, "verifies");
        }
    }

    #[test]
    fn udp_and_icmp_from_a_capture() {
        let (src, dst) = ([198, 51, 100, 1], [203, 0, 113, 1]);
        let udp = hex(INNER_UDP);
        assert_eq!(recomputed(&udp, 6, |m| ipv4_upper_layer(src, dst, 17, m)), 0xa5cd);
        assert_eq!(ipv4_upper_layer(src, dst, 17, &udp), 0);
        let icmp = hex(ICMP_ECHO);
        assert_eq!(recomputed(&icmp, 2, of), 0x3ab9);
        assert_eq!(of(&icmp), 0);
    }

    #[test]
    fn icmpv6_odd_length_from_linux() {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let m = hex(ICMPV6_ECHO);
        assert_eq!(recomputed(&m, 2, |m| ipv6_upper_layer(a, a, 58, m)), 0x11ae);
        assert_eq!(ipv6_upper_layer(a, a, 58, &m), 0);
        // The next header is part of the sum.
        assert_ne!(ipv6_upper_layer(a, a, 17, &m), 0);
    }

    #[test]
    fn pseudo_headers_are_the_rfcs_layouts() {
        let (s4, d4) = ([192, 0, 2, 2], [192, 0, 2, 1]);
        let mut p4 = Vec::new();
        p4.extend_from_slice(&s4);
        p4.extend_from_slice(&d4);
        p4.extend_from_slice(&[0, 17]);
        p4.extend_from_slice(&1234u16.to_be_bytes());
        assert_eq!(fold(pseudo_ipv4(s4, d4, 17, 1234)), reference(&p4));

        let s6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0xac, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let d6 = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        // A jumbogram length (over 16 bits) uses the whole 32-bit field.
        for len in [8usize, 1400, 70_000] {
            let mut p6 = Vec::new();
            p6.extend_from_slice(&s6);
            p6.extend_from_slice(&d6);
            p6.extend_from_slice(&(len as u32).to_be_bytes());
            p6.extend_from_slice(&[0, 0, 0, 58]);
            assert_eq!(fold(pseudo_ipv6(s6, d6, 58, len)), reference(&p6), "{len}");
        }
    }

    #[test]
    fn rfc1624_incremental_update() {
        // RFC 1624 §4: m = 0x5555 → 0x3285 where the rest sums to 0xcd7a:
        // HC = 0xdd2f, and eqn. 3 gives 0x0000 (eqn. 2 gave 0xffff).
        assert_eq!(replace16(0xdd2f, 0x5555, 0x3285), 0x0000);
        // A TTL/protocol word rewritten in a real header, every value:
        // the same as recomputing the whole header.
        let h = hex(INNER_IPV4);
        let old = u16::from_be_bytes([h[8], h[9]]);
        for ttl in 0..=255u8 {
            let mut n = h.clone();
            n[8] = ttl;
            let new = u16::from_be_bytes([n[8], n[9]]);
            assert_eq!(replace16(0xd485, old, new), recomputed(&n, 10, of), "ttl {ttl}");
        }
    }

    #[test]
    fn udp_zero_goes_out_as_all_ones() {
        assert_eq!(udp_field(0), 0xffff);
        assert_eq!(udp_field(0x1234), 0x1234);
        assert_eq!(udp_field(0xffff), 0xffff);
    }
}
