//! The PPP header of a frame carried in L2TP (RFC 2661 §5.4 strips the
//! HDLC flags, FCS and escaping, RFC 1662, and keeps the rest): an optional
//! Address/Control pair FF 03 (omitted after ACFC, RFC 1661 §6.6), then a
//! Protocol field of two octets, or one after PFC (RFC 1661 §6.5).
//!
//! ```text
//! +----------+----------+----------+-------------+---------
//! | Address  | Control  | Protocol | (Protocol)  | Information
//! |   0xFF   |   0x03   | odd: 1 B | even: 2 B   |
//! +----------+----------+----------+-------------+---------
//! ```
//!
//! The control plane's slow path and its codec (`controlplane/src/ppp/
//! frame.rs`) read the same header the same way; this is the small form
//! for code that only wants the protocol and where the datagram starts.

/// RFC 1662 §3.1: the All-Stations address.
pub const ADDRESS: u8 = 0xff;
/// RFC 1662 §3.1: the Unnumbered Information control octet.
pub const CONTROL: u8 = 0x03;
/// Internet Protocol version 4 (RFC 1332 §2).
pub const IPV4: u16 = 0x0021;
/// Internet Protocol version 6 (RFC 5072 §3).
pub const IPV6: u16 = 0x0057;
/// Link Control Protocol (RFC 1661 §5): never sent with its header
/// compressed.
pub const LCP: u16 = 0xc021;

/// The protocol of a PPP frame and the offset of its Information field.
///
/// None when the header is cut short or malformed: a leading 0xFF not
/// followed by 0x03 (0x00FF is reserved, so a compressed protocol never
/// starts with 0xFF), or a two-octet protocol whose low octet is even
/// (RFC 1661 §2: "all Protocols MUST be odd; the least significant bit of
/// the most significant octet MUST equal 0"). The Information field may be
/// empty (the offset is then the frame's length).
pub fn decapsulate(frame: &[u8]) -> Option<(u16, usize)> {
    let at = match frame {
        [ADDRESS, CONTROL, ..] => 2,
        [ADDRESS, ..] => return None,
        _ => 0,
    };
    let first = *frame.get(at)?;
    if first & 1 == 1 {
        // RFC 1661 §6.5: an odd first octet is the compressed form.
        return Some((u16::from(first), at + 1));
    }
    let second = *frame.get(at + 1)?;
    if second & 1 == 0 {
        return None;
    }
    Some((u16::from_be_bytes([first, second]), at + 2))
}

/// A PPP frame of `protocol` around `payload`.
///
/// `acfc` and `pfc` say what the peer accepted in LCP (Address-and-Control-
/// Field-Compression, Protocol-Field-Compression): with `acfc` FF 03 is
/// left out, except on LCP frames (RFC 1661 §6.6: "MUST NOT be compressed
/// when sending any LCP packet"); with `pfc` a protocol below 0x100 whose
/// value is odd goes in one octet (§6.5; others cannot be compressed and
/// keep two), except 0x00FF, whose one octet would read as the Address
/// (RFC 1661 §2 reserves it "(compression inefficient)").
pub fn encapsulate(protocol: u16, acfc: bool, pfc: bool, payload: &[u8]) -> Vec<u8> {
    let (h, n) = header(protocol, acfc, pfc);
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(h.get(..n).unwrap_or_default());
    out.extend_from_slice(payload);
    out
}

/// The header [`encapsulate`] puts in front of the payload: its first
/// `n` octets (2 to 4), for a caller that writes the frame into a buffer
/// of its own instead of copying the payload into a new one.
pub fn header(protocol: u16, acfc: bool, pfc: bool) -> ([u8; 4], usize) {
    let address_control = !acfc || protocol == LCP;
    let compressed = pfc && protocol < 0x100 && protocol & 1 == 1 && protocol != 0x00ff;
    let mut h = [0u8; 4];
    let mut n = 0;
    if address_control {
        h[..2].copy_from_slice(&[ADDRESS, CONTROL]);
        n = 2;
    }
    if compressed {
        h[n] = protocol as u8;
        n += 1;
    } else {
        h[n..n + 2].copy_from_slice(&protocol.to_be_bytes());
        n += 2;
    }
    (h, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [0x45, 0x00, 0x00, 0x14];

    #[test]
    fn known_frames() {
        // Every header form of an IPv4 datagram.
        assert_eq!(decapsulate(&[0xff, 0x03, 0x00, 0x21, 0x45]), Some((IPV4, 4)));
        assert_eq!(decapsulate(&[0xff, 0x03, 0x21, 0x45]), Some((IPV4, 3)));
        assert_eq!(decapsulate(&[0x00, 0x21, 0x45]), Some((IPV4, 2)));
        assert_eq!(decapsulate(&[0x21, 0x45]), Some((IPV4, 1)));
        assert_eq!(decapsulate(&[0x57, 0x60]), Some((IPV6, 1)));
        // An LCP Configure-Request from testdata/captures (xl2tpd).
        let lcp = [0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x04];
        assert_eq!(decapsulate(&lcp), Some((LCP, 4)));
        // IPCP, and an empty Information field.
        assert_eq!(decapsulate(&[0x80, 0x21]), Some((0x8021, 2)));
        assert_eq!(decapsulate(&[0xff, 0x03, 0x21]), Some((IPV4, 3)));
    }

    #[test]
    fn malformed_headers() {
        // FF not followed by 03.
        assert_eq!(decapsulate(&[0xff, 0x00, 0x00, 0x21]), None);
        assert_eq!(decapsulate(&[0xff, 0xff, 0x03, 0x21]), None);
        // Two-octet protocols with an even low octet.
        assert_eq!(decapsulate(&[0x00, 0x20, 0x45]), None);
        assert_eq!(decapsulate(&[0xff, 0x03, 0xc0, 0x20]), None);
    }

    #[test]
    fn every_truncation() {
        for frame in [&[0xff, 0x03, 0x00, 0x21][..], &[0xff, 0x03, 0x21][..], &[0x00, 0x21][..], &[0x21][..]]
        {
            for n in 0..frame.len() {
                assert_eq!(decapsulate(&frame[..n]), None, "{frame:02x?} cut at {n}");
            }
            assert_eq!(decapsulate(frame), Some((IPV4, frame.len())));
        }
    }

    #[test]
    fn encapsulate_each_form() {
        assert_eq!(encapsulate(IPV4, false, false, &IP), [0xff, 0x03, 0x00, 0x21, 0x45, 0, 0, 0x14]);
        assert_eq!(encapsulate(IPV4, true, false, &IP), [0x00, 0x21, 0x45, 0, 0, 0x14]);
        assert_eq!(encapsulate(IPV4, false, true, &IP), [0xff, 0x03, 0x21, 0x45, 0, 0, 0x14]);
        assert_eq!(encapsulate(IPV4, true, true, &IP), [0x21, 0x45, 0, 0, 0x14]);
        assert_eq!(encapsulate(IPV6, true, true, &[]), [0x57]);
        // No PFC for protocols of 0x100 and above, nor for even values.
        assert_eq!(encapsulate(0x8021, true, true, &[]), [0x80, 0x21]);
        assert_eq!(encapsulate(0x0020, true, true, &[]), [0x00, 0x20]);
        // 0x00FF in one octet would be the Address (found by the
        // wire_helpers fuzz target): it keeps two.
        assert_eq!(encapsulate(0x00ff, true, true, &[3]), [0x00, 0xff, 3]);
        assert_eq!(decapsulate(&[0x00, 0xff, 3]), Some((0x00ff, 2)));
        // LCP keeps FF 03 whatever was negotiated.
        assert_eq!(encapsulate(LCP, true, true, &[1]), [0xff, 0x03, 0xc0, 0x21, 1]);
    }

    #[test]
    fn round_trips() {
        for protocol in [IPV4, IPV6, 0x0023, 0x00fd, 0x00ff, 0x8021, 0x8057, LCP, 0xc023, 0xc223] {
            for acfc in [false, true] {
                for pfc in [false, true] {
                    let f = encapsulate(protocol, acfc, pfc, &IP);
                    let (p, at) = decapsulate(&f).expect("parses");
                    assert_eq!((p, &f[at..]), (protocol, &IP[..]), "{protocol:#06x} {acfc} {pfc}");
                }
            }
        }
    }

    #[test]
    fn any_two_bytes() {
        // Every header of up to two bytes either parses within the frame or
        // is refused; none panics.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                if let Some((_, at)) = decapsulate(&[a, b]) {
                    assert!(at <= 2);
                }
            }
        }
    }
}
