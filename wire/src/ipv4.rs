//! The IPv4 header (RFC 791 §3.1), as far as a router's slow path needs
//! it: the checks before answering a packet, and fragmentation (§3.2).
//!
//! ```text
//!  0: Version | IHL | Type of Service |        Total Length
//!  4:        Identification           |Flags|  Fragment Offset
//!  8:   TTL   |    Protocol           |      Header Checksum
//! 12: Source Address;  16: Destination Address;  20: Options, to IHL * 4
//! ```

use crate::checksum;

/// Don't Fragment, in the flags and fragment offset word.
pub const DF: u16 = 0x4000;
/// More Fragments.
pub const MF: u16 = 0x2000;
/// The fragment offset, in 8-byte units.
pub const OFFSET_MASK: u16 = 0x1fff;

/// Checks the header of the IPv4 packet at the start of `packet`: version
/// 4, IHL of at least 5, a total length between the header's and the
/// buffer's (bytes after it are link padding), a correct header checksum
/// (RFC 1812 §5.2.2). Returns the header length and the total length.
pub(crate) fn header(packet: &[u8]) -> Option<(usize, usize)> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || packet.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < ihl || total > packet.len() || checksum::of(&packet[..ihl]) != 0 {
        return None;
    }
    Some((ihl, total))
}

/// The option types whose copy bit (RFC 791 §3.1: "the copied flag
/// indicates that this option is copied into all fragments") is set.
const COPIED: u8 = 0x80;
/// End of Option List and No Operation, the two one-octet options.
const END: u8 = 0;
const NOP: u8 = 1;

/// RFC 791 §3.2 fragmentation: `packet` (an IPv4 packet from its header
/// on; bytes past its total length are ignored) cut into fragments whose
/// total length is at most `mtu`.
///
/// Each fragment but the last carries a multiple of 8 bytes of data; the
/// offsets count 8-byte units from the original's own offset, and MF is
/// set on all but the last, which keeps the original's MF (so a fragment
/// is fragmented again correctly). The first fragment has the original
/// header and options; the others only the options whose copy bit is set,
/// padded with End of Option List to a 32-bit boundary. Every header's
/// checksum is recomputed. A packet within `mtu` comes back whole, alone.
///
/// None when DF is set (the answer is [`crate::icmp::too_big`]), when
/// `mtu` is below 68 (RFC 791: "every internet module must be able to
/// forward a datagram of 68 octets without further fragmentation"), and for
/// malformed input: a bad version, IHL, total length or header checksum,
/// or an option whose length runs past the header.
pub fn fragment(packet: &[u8], mtu: u16) -> Option<Vec<Vec<u8>>> {
    let (ihl, total) = header(packet)?;
    let p = &packet[..total];
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & DF != 0 || mtu < 68 {
        return None;
    }
    let copied = copied_options(&p[20..ihl])?;
    if total <= usize::from(mtu) {
        return Some(vec![p.to_vec()]);
    }
    let mtu = usize::from(mtu);
    let base = usize::from(frag & OFFSET_MASK) * 8;
    let data = &p[ihl..];
    let later_ihl = 20 + copied.len();
    let mut fragments = Vec::with_capacity(data.len() / ((mtu - later_ihl) & !7) + 1);
    let mut at = 0;
    while at < data.len() {
        let hlen = if at == 0 { ihl } else { later_ihl };
        // mtu >= 68 and hlen <= 60, so at least 8 bytes go in each.
        let take = ((mtu - hlen) & !7).min(data.len() - at);
        let last = at + take == data.len();
        let offset = (base + at) / 8;
        if offset > usize::from(OFFSET_MASK) {
            return None;
        }
        let mut f = Vec::with_capacity(hlen + take);
        if at == 0 {
            f.extend_from_slice(&p[..ihl]);
        } else {
            f.extend_from_slice(&p[..20]);
            f.extend_from_slice(&copied);
            f[0] = 0x40 | (later_ihl / 4) as u8;
        }
        f.extend_from_slice(&data[at..at + take]);
        f[2..4].copy_from_slice(&((hlen + take) as u16).to_be_bytes());
        let mf = if last { frag & MF } else { MF };
        f[6..8].copy_from_slice(&(mf | offset as u16).to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::of(&f[..hlen]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        fragments.push(f);
        at += take;
    }
    Some(fragments)
}

/// The options of `options` (a header's bytes after the first 20) that go
/// into every fragment, padded to 32 bits; None if one is malformed.
fn copied_options(options: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            END => break,
            NOP => at += 1,
            kind => {
                let len = usize::from(*options.get(at + 1)?);
                if len < 2 || at + len > options.len() {
                    return None;
                }
                if kind & COPIED != 0 {
                    out.extend_from_slice(&options[at..at + len]);
                }
                at += len;
            }
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push(END);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook header checksum, independent of `checksum`.
    fn sum16(bytes: &[u8]) -> u16 {
        crate::reference::sum16(&[bytes])
    }

    /// A packet 198.51.100.10 → 203.0.113.7 with `options` (a multiple of
    /// 4 bytes) and `n` bytes of data.
    fn packet(frag: u16, options: &[u8], n: usize) -> Vec<u8> {
        let ihl = 20 + options.len();
        let mut p = vec![0x40 | (ihl / 4) as u8, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[198, 51, 100, 10, 203, 0, 113, 7]);
        p.extend_from_slice(options);
        p[2..4].copy_from_slice(&((ihl + n) as u16).to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        let c = sum16(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend((0..n).map(|i| (i * 7 + i / 251) as u8));
        p
    }

    fn ihl(f: &[u8]) -> usize {
        usize::from(f[0] & 0x0f) * 4
    }

    /// Checks every fragment's header (length, checksum, MF, offset, the
    /// fields copied from the original) and puts their data back together.
    fn reassemble(original: &[u8], fragments: &[Vec<u8>], mtu: u16) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, f) in fragments.iter().enumerate() {
            assert!(f.len() <= usize::from(mtu), "fragment {i} of {} > {mtu}", f.len());
            assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
            assert_eq!(sum16(&f[..ihl(f)]), 0, "header checksum of {i}");
            // Everything but length, flags/offset and checksum (and the
            // options after the first) is the original's.
            assert_eq!(&f[..2], &[0x40 | (ihl(f) / 4) as u8, original[1]]);
            assert_eq!(&f[4..6], &original[4..6]);
            assert_eq!(&f[8..10], &original[8..10]);
            assert_eq!(&f[12..20], &original[12..20]);
            let word = u16::from_be_bytes([f[6], f[7]]);
            let last = i + 1 == fragments.len();
            let orig = u16::from_be_bytes([original[6], original[7]]);
            assert_eq!(word & MF, if last { orig & MF } else { MF }, "MF of {i}");
            assert_eq!(word & DF, 0);
            let at = usize::from(word & OFFSET_MASK) * 8 - usize::from(orig & OFFSET_MASK) * 8;
            let payload = &f[ihl(f)..];
            if !last {
                assert!(payload.len().is_multiple_of(8), "fragment {i} data not in 8-byte units");
            }
            assert_eq!(at, data.len(), "offset of {i}");
            data.extend_from_slice(payload);
        }
        data
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        for n in [1usize, 8, 100, 1379, 1380, 1381, 1472, 3000, 65_515] {
            for mtu in [68u16, 576, 1280, 1400, 1500] {
                let p = packet(0, &[], n);
                let f = fragment(&p, mtu).expect("fragments");
                assert_eq!(reassemble(&p, &f, mtu), &p[20..], "{n} bytes at {mtu}");
                let want =
                    if p.len() <= usize::from(mtu) { 1 } else { n.div_ceil((usize::from(mtu) - 20) & !7) };
                assert_eq!(f.len(), want, "{n} bytes at {mtu}");
            }
        }
    }

    #[test]
    fn known_split() {
        // 1500 bytes (1480 of data) at 576: 552 + 552 + 376, offsets 0, 69, 138.
        let p = packet(0, &[], 1480);
        let f = fragment(&p, 576).expect("fragments");
        let words: Vec<(usize, u16)> =
            f.iter().map(|f| (f.len(), u16::from_be_bytes([f[6], f[7]]))).collect();
        assert_eq!(words, [(572, 0x2000), (572, 0x2000 | 69), (396, 138)]);
    }

    #[test]
    fn a_small_packet_comes_back_whole() {
        let p = packet(0, &[], 100);
        assert_eq!(fragment(&p, 120), Some(vec![p.clone()]));
        assert_eq!(fragment(&p, 1500), Some(vec![p.clone()]));
        // Link padding is dropped.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(fragment(&padded, 1500), Some(vec![p]));
    }

    #[test]
    fn fragmenting_a_fragment() {
        // A middle fragment (MF, offset 100 units) and a last one.
        for frag in [MF | 100, 100] {
            let p = packet(frag, &[], 1000);
            let f = fragment(&p, 300).expect("fragments");
            assert_eq!(u16::from_be_bytes([f[0][6], f[0][7]]), MF | 100);
            assert_eq!(reassemble(&p, &f, 300), &p[20..]);
        }
        // Offsets that would run past 16 bits.
        let p = packet(OFFSET_MASK, &[], 1000);
        assert_eq!(fragment(&p, 300), None);
    }

    #[test]
    fn only_copied_options_go_into_later_fragments() {
        // Security (130, copied, 11 bytes), NOP, Record Route (7, not
        // copied, 7 bytes), Stream ID (136, copied, 4 bytes), EOL, pad.
        let mut options = vec![130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 7, 7, 4, 0, 0, 0, 0];
        options.extend_from_slice(&[136, 4, 0xab, 0xcd, 0]);
        let p = packet(0, &options, 2000);
        assert_eq!(ihl(&p), 44);
        let f = fragment(&p, 600).expect("fragments");
        assert_eq!(
            &f[0][..44],
            &{
                let mut h = p[..44].to_vec();
                h[2..4].copy_from_slice(&(f[0].len() as u16).to_be_bytes());
                h[6..8].copy_from_slice(&MF.to_be_bytes());
                h[10..12].copy_from_slice(&f[0][10..12]);
                h
            }[..]
        );
        for later in &f[1..] {
            assert_eq!(ihl(later), 36);
            assert_eq!(&later[20..36], &[130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 136, 4, 0xab, 0xcd, 0]);
        }
        assert_eq!(reassemble(&p, &f, 600), &p[44..]);
        // No copied options: later fragments have a bare header.
        let p = packet(0, &[7, 7, 4, 0, 0, 0, 0, 0], 1000);
        let f = fragment(&p, 300).expect("fragments");
        assert_eq!(ihl(&f[0]), 28);
        assert!(f[1..].iter().all(|f| ihl(f) == 20));
        assert_eq!(reassemble(&p, &f, 300), &p[28..]);
        // The largest header at the smallest MTU: 8 bytes a fragment.
        let mut security = vec![0u8; 40];
        security[..2].copy_from_slice(&[130, 40]);
        let p = packet(0, &security, 100);
        let f = fragment(&p, 68).expect("fragments");
        assert!(f.iter().all(|f| ihl(f) == 60));
        assert_eq!(f.len(), 13);
        assert_eq!(reassemble(&p, &f, 68), &p[60..]);
    }

    #[test]
    fn refusals() {
        let p = packet(DF, &[], 2000);
        assert_eq!(fragment(&p, 1500), None);
        assert_eq!(fragment(&packet(DF, &[], 10), 1500), None);
        let p = packet(0, &[], 2000);
        assert_eq!(fragment(&p, 67), None);
        assert!(fragment(&p, 68).is_some());
        // Bad checksum, version, IHL, total length.
        for (at, v) in
            [(10usize, 0u16), (0, 0x6500), (0, 0x4400), (0, 0x4f00), (2, 19), (2, 2021), (2, 0xffff)]
        {
            let mut q = p.clone();
            if at == 0 {
                q[0] = (v >> 8) as u8;
            } else {
                q[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            if at != 10 {
                q[10..12].copy_from_slice(&[0, 0]);
                let c = sum16(&q[..20]);
                q[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(fragment(&q, 576), None, "byte {at} = {v:#x}");
        }
        // An option running past the header, or of length 0 or 1.
        for options in [[7u8, 9, 4, 0], [1, 7, 0, 0], [1, 1, 7, 1]] {
            assert_eq!(fragment(&packet(0, &options, 1000), 576), None, "{options:?}");
        }
    }

    #[test]
    fn every_truncation() {
        let p = packet(0, &[130, 4, 0, 0], 200);
        assert!(fragment(&p, 100).is_some());
        for n in 0..p.len() {
            assert_eq!(fragment(&p[..n], 100), None, "cut at {n}");
        }
    }

    #[test]
    fn etherparse_reads_the_fragments() {
        let p = packet(0, &[], 1000);
        for f in fragment(&p, 400).expect("fragments") {
            let (h, _) = etherparse::Ipv4Header::from_slice(&f).expect("parses");
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            assert_eq!(usize::from(h.total_len), f.len());
        }
    }
}
