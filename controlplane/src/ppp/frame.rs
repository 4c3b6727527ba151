//! The PPP frame header: optional HDLC Address/Control (RFC 1662 §3.1, may be
//! elided after ACFC, RFC 1661 §6.6) followed by a 1- or 2-octet Protocol
//! field (RFC 1661 §2, 1-octet form after PFC, §6.5).

use super::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The RFC 1662 All-Stations address.
pub const ADDRESS: u8 = 0xff;
/// The RFC 1662 Unnumbered Information control octet.
pub const CONTROL: u8 = 0x03;

/// A PPP Protocol field value (IANA "PPP DLL Protocol Numbers").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Protocol(pub u16);

impl Protocol {
    pub const IPV4: Protocol = Protocol(0x0021);
    pub const VJ_COMPRESSED: Protocol = Protocol(0x002d);
    pub const VJ_UNCOMPRESSED: Protocol = Protocol(0x002f);
    pub const IPV6: Protocol = Protocol(0x0057);
    pub const MULTILINK: Protocol = Protocol(0x003d);
    pub const COMPRESSED_DATAGRAM: Protocol = Protocol(0x00fd);
    pub const IPCP: Protocol = Protocol(0x8021);
    pub const IPV6CP: Protocol = Protocol(0x8057);
    pub const ECP: Protocol = Protocol(0x8053);
    pub const CCP: Protocol = Protocol(0x80fd);
    pub const CDPCP: Protocol = Protocol(0x8207);
    pub const LCP: Protocol = Protocol(0xc021);
    pub const PAP: Protocol = Protocol(0xc023);
    pub const LQR: Protocol = Protocol(0xc025);
    pub const CHAP: Protocol = Protocol(0xc223);
    pub const EAP: Protocol = Protocol(0xc227);

    /// RFC 1661 §2: values in 0x8000–0xbfff are Network Control Protocols.
    pub fn is_network_control(self) -> bool {
        (0x8000..=0xbfff).contains(&self.0)
    }

    /// RFC 1661 §2: values in 0xc000–0xffff are link-layer control protocols.
    pub fn is_link_control(self) -> bool {
        self.0 >= 0xc000
    }

    /// RFC 1661 §2: the least significant octet is odd and the most
    /// significant octet even.
    pub fn is_valid(self) -> bool {
        self.0 & 0x0001 == 1 && self.0 & 0x0100 == 0
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Protocol::IPV4 => "IPv4",
            Protocol::IPV6 => "IPv6",
            Protocol::IPCP => "IPCP",
            Protocol::IPV6CP => "IPv6CP",
            Protocol::CCP => "CCP",
            Protocol::LCP => "LCP",
            Protocol::PAP => "PAP",
            Protocol::CHAP => "CHAP",
            _ => return write!(f, "Protocol({:#06x})", self.0),
        };
        f.write_str(name)
    }
}

/// A read-only (or writable) view of a PPP frame.
///
/// `new_checked` validates once that the header is complete; afterwards the
/// accessors cannot fail or panic.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap a buffer without validation (accessors still never panic, they
    /// return neutral values on short buffers).
    pub fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wrap a buffer, checking that Address/Control (if any) and the Protocol
    /// field are complete and the protocol number is well formed.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let frame = Frame { buffer };
        frame.check()?;
        Ok(frame)
    }

    fn check(&self) -> Result<(), Error> {
        let data = self.buffer.as_ref();
        // RFC 1662 §3.1: a leading 0xFF is the All-Stations Address and must
        // be followed by the UI Control octet (0x00ff as a compressed
        // protocol number is reserved, so there is no ambiguity).
        if data.first() == Some(&ADDRESS) && !self.has_address_control() {
            return Err(if data.len() < 2 { Error::Truncated } else { Error::Malformed("address/control") });
        }
        let at = self.protocol_offset();
        let first = *data.get(at).ok_or(Error::Truncated)?;
        if first & 1 == 0 {
            // Two-octet form: the second octet must be present and odd.
            let second = *data.get(at + 1).ok_or(Error::Truncated)?;
            if second & 1 == 0 {
                return Err(Error::BadProtocol);
            }
        }
        Ok(())
    }

    /// RFC 1662 §3.1: the frame starts with FF 03 unless ACFC elided them.
    pub fn has_address_control(&self) -> bool {
        self.buffer.as_ref().get(..2) == Some(&[ADDRESS, CONTROL][..])
    }

    fn protocol_offset(&self) -> usize {
        if self.has_address_control() {
            2
        } else {
            0
        }
    }

    /// RFC 1661 §6.5: a Protocol field whose first octet is odd is the
    /// compressed one-octet form.
    pub fn is_protocol_compressed(&self) -> bool {
        let at = self.protocol_offset();
        self.buffer.as_ref().get(at).is_some_and(|b| b & 1 == 1)
    }

    /// Length of Address/Control plus Protocol.
    pub fn header_len(&self) -> usize {
        self.protocol_offset() + if self.is_protocol_compressed() { 1 } else { 2 }
    }

    pub fn protocol(&self) -> Protocol {
        let data = self.buffer.as_ref();
        let at = self.protocol_offset();
        if self.is_protocol_compressed() {
            Protocol(u16::from(data.get(at).copied().unwrap_or(0)))
        } else {
            Protocol(super::be16(data, at).unwrap_or(0))
        }
    }

    /// The Information field (and any padding).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The owned form of a PPP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRepr {
    /// FF 03 present.
    pub address_control: bool,
    /// One-octet Protocol field (only valid for protocols below 0x100).
    pub protocol_compressed: bool,
    pub protocol: Protocol,
}

impl FrameRepr {
    /// The uncompressed header this implementation always sends for control
    /// protocols: RFC 1661 §6.5/§6.6 forbid compressing LCP frames, and an
    /// uncompressed header is always acceptable to a peer.
    pub fn full(protocol: Protocol) -> Self {
        FrameRepr { address_control: true, protocol_compressed: false, protocol }
    }

    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Self, Error> {
        frame.check()?;
        Ok(FrameRepr {
            address_control: frame.has_address_control(),
            protocol_compressed: frame.is_protocol_compressed(),
            protocol: frame.protocol(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        (if self.address_control { 2 } else { 0 }) + if self.protocol_compressed { 1 } else { 2 }
    }

    /// Write the header at the start of `buf`; returns the header length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut at = 0;
        if self.address_control {
            super::put(buf, 0, &[ADDRESS, CONTROL])?;
            at = 2;
        }
        if self.protocol_compressed {
            let byte = u8::try_from(self.protocol.0).map_err(|_| Error::BadProtocol)?;
            super::put(buf, at, &[byte])?;
            at += 1;
        } else {
            super::put(buf, at, &self.protocol.0.to_be_bytes())?;
            at += 2;
        }
        Ok(at)
    }

    /// Header followed by `payload`, as one frame.
    pub fn encapsulate(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; self.buffer_len() + payload.len()];
        // The buffer was sized from buffer_len, so only a compressed protocol
        // above 0xff can fail; fall back to the full form in that case.
        let n = match self.emit(&mut out) {
            Ok(n) => n,
            Err(_) => {
                let full = FrameRepr { protocol_compressed: false, ..*self };
                out = vec![0u8; full.buffer_len() + payload.len()];
                full.emit(&mut out).unwrap_or(0)
            }
        };
        out.truncate(n);
        out.extend_from_slice(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full_header() {
        let bytes = [0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x04];
        let frame = Frame::new_checked(&bytes[..]).expect("valid");
        assert!(frame.has_address_control());
        assert!(!frame.is_protocol_compressed());
        assert_eq!(frame.protocol(), Protocol::LCP);
        assert_eq!(frame.payload(), &[0x01, 0x01, 0x00, 0x04]);
        let repr = FrameRepr::parse(&frame).expect("repr");
        assert_eq!(repr, FrameRepr::full(Protocol::LCP));
        assert_eq!(repr.encapsulate(frame.payload()), bytes.to_vec());
    }

    #[test]
    fn parse_acfc_and_pfc() {
        // ACFC + PFC: IPv4 as the single octet 0x21.
        let bytes = [0x21, 0x45, 0x00];
        let frame = Frame::new_checked(&bytes[..]).expect("valid");
        assert!(!frame.has_address_control());
        assert!(frame.is_protocol_compressed());
        assert_eq!(frame.protocol(), Protocol::IPV4);
        assert_eq!(frame.payload(), &[0x45, 0x00]);
        let repr = FrameRepr::parse(&frame).expect("repr");
        assert_eq!(repr.buffer_len(), 1);
        assert_eq!(repr.encapsulate(frame.payload()), bytes.to_vec());

        // Address/Control present but protocol compressed.
        let bytes = [0xff, 0x03, 0x57, 0x60];
        let frame = Frame::new_checked(&bytes[..]).expect("valid");
        assert_eq!(frame.protocol(), Protocol::IPV6);
        assert_eq!(frame.header_len(), 3);

        // ACFC without PFC.
        let bytes = [0x80, 0x21, 0x01];
        let frame = Frame::new_checked(&bytes[..]).expect("valid");
        assert_eq!(frame.protocol(), Protocol::IPCP);
        assert_eq!(frame.payload(), &[0x01]);
    }

    #[test]
    fn truncations_and_bad_protocols() {
        let bytes = [0xff, 0x03, 0xc0, 0x21];
        for n in 0..bytes.len() {
            assert!(Frame::new_checked(&bytes[..n]).is_err(), "len {n}");
        }
        // Two-octet protocol whose low octet is even is invalid.
        assert_eq!(Frame::new_checked(&[0xff, 0x03, 0xc0, 0x20][..]).err(), Some(Error::BadProtocol));
        // 0xFF must be followed by the UI control octet.
        assert!(Frame::new_checked(&[0xff, 0x05, 0xc0, 0x21][..]).is_err());
        // Unchecked accessors on an empty buffer do not panic.
        let empty = Frame::new_unchecked(&[][..]);
        assert_eq!(empty.protocol(), Protocol(0));
        assert!(empty.payload().is_empty());
    }

    #[test]
    fn compressed_emit_of_large_protocol_fails() {
        let repr = FrameRepr { address_control: false, protocol_compressed: true, protocol: Protocol::LCP };
        let mut buf = [0u8; 4];
        assert_eq!(repr.emit(&mut buf), Err(Error::BadProtocol));
        assert_eq!(repr.encapsulate(&[]), vec![0xc0, 0x21]);
    }

    #[test]
    fn protocol_classes() {
        assert!(Protocol::IPCP.is_network_control());
        assert!(Protocol::LCP.is_link_control());
        assert!(!Protocol::IPV4.is_network_control());
        assert!(Protocol::IPV4.is_valid());
        assert!(!Protocol(0x0100).is_valid());
    }
}
