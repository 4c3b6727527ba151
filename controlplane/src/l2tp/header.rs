//! The L2TP header (RFC 2661 §3.1), zero-copy.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |T|L|x|x|S|x|O|P|x|x|x|x|  Ver  |          Length (opt)         |
//! |           Tunnel ID           |           Session ID          |
//! |             Ns (opt)          |             Nr (opt)          |
//! |      Offset Size (opt)        |    Offset pad... (opt)
//! ```
//!
//! The optional fields make every offset after the flags depend on the flag
//! bits, so [`Packet::new_checked`] validates all of them once and the
//! accessors afterwards only index ranges that were proven to exist.

use super::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A tunnel identifier: locally significant, chosen by the receiver of the
/// messages that carry it (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct TunnelId(pub u16);

/// A session identifier, locally significant within a tunnel (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct SessionId(pub u16);

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Flag bits of the first 16-bit word, and the only version this module
/// speaks (§3.1: Ver MUST be 2; 1 is L2F): one definition with the data
/// plane's encapsulation, in lns-wire.
pub use lns_wire::l2tp::{flags, VERSION};

/// Byte ranges of the fixed fields; the rest are computed from the flags.
mod field {
    use std::ops::Range;
    pub const FLAGS: Range<usize> = 0..2;
}

/// A read (or write) view of an L2TP header over a byte buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some([x, y]) => u16::from_be_bytes([*x, *y]),
        _ => 0,
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without validating; accessors may return zeros on a short
    /// buffer but never panic.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap and validate every length the flags imply.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validate that all optional fields, the offset padding and the Length
    /// field fit the buffer, and that the version is 2.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::FLAGS.end {
            return Err(Error::Truncated);
        }
        if self.version() != VERSION {
            return Err(Error::Version(self.version()));
        }
        // Fixed part before the offset padding.
        if len < self.fixed_len() {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if len < header_len {
            return Err(Error::Truncated);
        }
        if let Some(l) = self.length() {
            let l_us = usize::from(l);
            if l_us < header_len || l_us > len {
                return Err(Error::Length(l));
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// T bit: 1 for control messages, 0 for data.
    pub fn is_control(&self) -> bool {
        self.flags() & flags::TYPE != 0
    }
    pub fn has_length(&self) -> bool {
        self.flags() & flags::LENGTH != 0
    }
    pub fn has_sequence(&self) -> bool {
        self.flags() & flags::SEQUENCE != 0
    }
    pub fn has_offset(&self) -> bool {
        self.flags() & flags::OFFSET != 0
    }
    pub fn priority(&self) -> bool {
        self.flags() & flags::PRIORITY != 0
    }
    pub fn version(&self) -> u8 {
        (self.flags() & flags::VERSION_MASK) as u8
    }

    fn tunnel_at(&self) -> usize {
        if self.has_length() {
            4
        } else {
            2
        }
    }
    fn seq_at(&self) -> usize {
        self.tunnel_at() + 4
    }
    fn offset_at(&self) -> usize {
        self.seq_at() + if self.has_sequence() { 4 } else { 0 }
    }
    /// Header length up to and including Offset Size, excluding padding.
    fn fixed_len(&self) -> usize {
        self.offset_at() + if self.has_offset() { 2 } else { 0 }
    }

    pub fn length(&self) -> Option<u16> {
        self.has_length().then(|| be16(self.buffer.as_ref(), 2))
    }
    pub fn tunnel_id(&self) -> TunnelId {
        TunnelId(be16(self.buffer.as_ref(), self.tunnel_at()))
    }
    pub fn session_id(&self) -> SessionId {
        SessionId(be16(self.buffer.as_ref(), self.tunnel_at() + 2))
    }
    pub fn ns(&self) -> Option<u16> {
        self.has_sequence().then(|| be16(self.buffer.as_ref(), self.seq_at()))
    }
    pub fn nr(&self) -> Option<u16> {
        self.has_sequence().then(|| be16(self.buffer.as_ref(), self.seq_at() + 2))
    }
    pub fn offset_size(&self) -> Option<u16> {
        self.has_offset().then(|| be16(self.buffer.as_ref(), self.offset_at()))
    }
    /// Length of the whole header including offset padding.
    pub fn header_len(&self) -> usize {
        self.fixed_len() + usize::from(self.offset_size().unwrap_or(0))
    }
    /// Total message length: the Length field if present, else the buffer.
    pub fn total_len(&self) -> usize {
        let buf_len = self.buffer.as_ref().len();
        match self.length() {
            Some(l) => usize::from(l).min(buf_len),
            None => buf_len,
        }
    }
    /// The bytes after the header (AVPs for control, PPP frame for data);
    /// bytes past the Length field are ignored (§3.1).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(self.header_len()..self.total_len()).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put16(&mut self, at: usize, v: u16) {
        if let Some(s) = self.buffer.as_mut().get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
    pub fn set_flags(&mut self, v: u16) {
        self.put16(0, v)
    }
    pub fn set_length(&mut self, v: u16) {
        if self.has_length() {
            self.put16(2, v)
        }
    }
    pub fn set_tunnel_id(&mut self, v: TunnelId) {
        let at = self.tunnel_at();
        self.put16(at, v.0)
    }
    pub fn set_session_id(&mut self, v: SessionId) {
        let at = self.tunnel_at() + 2;
        self.put16(at, v.0)
    }
    pub fn set_ns_nr(&mut self, ns: u16, nr: u16) {
        if self.has_sequence() {
            let at = self.seq_at();
            self.put16(at, ns);
            self.put16(at + 2, nr);
        }
    }
    pub fn set_offset_size(&mut self, v: u16) {
        if self.has_offset() {
            let at = self.offset_at();
            self.put16(at, v);
        }
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        self.buffer.as_mut().get_mut(start..end).unwrap_or(&mut [])
    }
}

/// Whether a header belongs to a control or a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Control,
    Data,
}

/// Sequence numbers, present on every control message (§3.1) and on data
/// messages only when sequencing is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    pub ns: u16,
    pub nr: u16,
}

/// High-level representation of an L2TP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub kind: Kind,
    /// L bit; always true for control messages.
    pub with_length: bool,
    /// P bit (data only; §3.1 says it is for data messages, l2tpns sets it
    /// on PPP control frames).
    pub priority: bool,
    pub tunnel_id: TunnelId,
    pub session_id: SessionId,
    pub sequence: Option<Sequence>,
    /// O bit with Offset Size; the padding is emitted as zeros.
    pub offset_size: Option<u16>,
    /// Length of what follows the header.
    pub payload_len: usize,
}

impl Repr {
    /// A control-message header (§3.1: L=1, S=1, O=0).
    pub fn control(tunnel_id: TunnelId, session_id: SessionId, ns: u16, nr: u16, payload_len: usize) -> Self {
        Repr {
            kind: Kind::Control,
            with_length: true,
            priority: false,
            tunnel_id,
            session_id,
            sequence: Some(Sequence { ns, nr }),
            offset_size: None,
            payload_len,
        }
    }

    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        packet.check_len()?;
        let kind = if packet.is_control() { Kind::Control } else { Kind::Data };
        let sequence = match (packet.ns(), packet.nr()) {
            (Some(ns), Some(nr)) => Some(Sequence { ns, nr }),
            _ => None,
        };
        if kind == Kind::Control && (!packet.has_length() || sequence.is_none() || packet.has_offset()) {
            return Err(Error::ControlFlags);
        }
        Ok(Repr {
            kind,
            with_length: packet.has_length(),
            priority: packet.priority(),
            tunnel_id: packet.tunnel_id(),
            session_id: packet.session_id(),
            sequence,
            offset_size: packet.offset_size(),
            payload_len: packet.payload().len(),
        })
    }

    pub fn flags(&self) -> u16 {
        let mut f = u16::from(VERSION);
        if self.kind == Kind::Control {
            f |= flags::TYPE;
        }
        if self.with_length {
            f |= flags::LENGTH;
        }
        if self.sequence.is_some() {
            f |= flags::SEQUENCE;
        }
        if self.offset_size.is_some() {
            f |= flags::OFFSET;
        }
        if self.priority {
            f |= flags::PRIORITY;
        }
        f
    }

    /// Header length, including offset padding.
    pub fn buffer_len(&self) -> usize {
        let mut n = 6;
        if self.with_length {
            n += 2;
        }
        if self.sequence.is_some() {
            n += 4;
        }
        if let Some(o) = self.offset_size {
            n += 2 + usize::from(o);
        }
        n
    }

    /// Write the header into the front of `buf`, which must hold
    /// `buffer_len() + payload_len` bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let total = self.buffer_len() + self.payload_len;
        if buf.len() < total {
            return Err(Error::Truncated);
        }
        if self.with_length && total > usize::from(u16::MAX) {
            return Err(Error::TooLong);
        }
        let mut p = Packet::new_unchecked(&mut *buf);
        p.set_flags(self.flags());
        p.set_length(total as u16);
        p.set_tunnel_id(self.tunnel_id);
        p.set_session_id(self.session_id);
        if let Some(s) = self.sequence {
            p.set_ns_nr(s.ns, s.nr);
        }
        if let Some(o) = self.offset_size {
            p.set_offset_size(o);
            let start = self.buffer_len() - usize::from(o);
            if let Some(pad) = buf.get_mut(start..start + usize::from(o)) {
                pad.fill(0);
            }
        }
        Ok(())
    }

    /// Emit header followed by `payload` into a new vector.
    pub fn to_vec(&self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let mut r = self.clone();
        r.payload_len = payload.len();
        let mut v = vec![0u8; r.buffer_len() + payload.len()];
        r.emit(&mut v)?;
        let hl = r.buffer_len();
        if let Some(dst) = v.get_mut(hl..) {
            dst.copy_from_slice(payload);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Frame 3 of xl2tpd-lac_l2tpns-lns_control.pcap: SCCCN, header only
    // plus its Message Type AVP.
    const SCCCN: [u8; 20] = [
        0xc8, 0x02, 0x00, 0x14, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x80, 0x08, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x03,
    ];

    #[test]
    fn parse_control() {
        let p = Packet::new_checked(&SCCCN[..]).expect("valid");
        assert!(p.is_control() && p.has_length() && p.has_sequence() && !p.has_offset());
        assert_eq!(p.length(), Some(20));
        assert_eq!(p.tunnel_id(), TunnelId(2));
        assert_eq!(p.session_id(), SessionId(0));
        assert_eq!((p.ns(), p.nr()), (Some(1), Some(1)));
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.payload().len(), 8);
        let r = Repr::parse(&p).expect("repr");
        assert_eq!(r, Repr::control(TunnelId(2), SessionId(0), 1, 1, 8));
        let out = r.to_vec(p.payload()).expect("emit");
        assert_eq!(out, SCCCN);
    }

    #[test]
    fn data_with_offset_and_priority() {
        // T=0 L=0 S=0 O=1 P=1, offset 3 with padding, payload ff 03.
        let bytes = [0x03, 0x02, 0x12, 0x34, 0x56, 0x78, 0x00, 0x03, 9, 9, 9, 0xff, 0x03];
        let p = Packet::new_checked(&bytes[..]).expect("valid");
        assert!(!p.is_control() && p.priority());
        assert_eq!(p.offset_size(), Some(3));
        assert_eq!(p.payload(), &[0xff, 0x03]);
        let r = Repr::parse(&p).expect("repr");
        assert_eq!(r.kind, Kind::Data);
        let out = r.to_vec(&[0xff, 0x03]).expect("emit");
        // Padding is re-emitted as zeros.
        assert_eq!(out, [0x03, 0x02, 0x12, 0x34, 0x56, 0x78, 0x00, 0x03, 0, 0, 0, 0xff, 0x03]);
    }

    #[test]
    fn l2tpns_data_flags() {
        // l2tpns sends data with flags 0x0002 and PPP control with 0x0102.
        let bytes = [0x01, 0x02, 0, 1, 0, 2, 0xff, 0x03, 0xc0, 0x21];
        let p = Packet::new_checked(&bytes[..]).expect("valid");
        let r = Repr::parse(&p).expect("repr");
        assert!(r.priority && !r.with_length && r.sequence.is_none());
        assert_eq!(r.to_vec(p.payload()).expect("emit"), bytes);
    }

    #[test]
    fn every_truncation_fails() {
        for n in 0..SCCCN.len() {
            let cut = &SCCCN[..n];
            // Length says 20; any shorter buffer must be rejected.
            assert!(Packet::new_checked(cut).is_err(), "len {n}");
        }
        let bytes = [0x02, 0x02, 0, 1, 0, 2, 0x00, 0x05, 1, 2];
        for n in 0..bytes.len() {
            assert!(Packet::new_checked(&bytes[..n]).is_err(), "len {n}");
        }
    }

    #[test]
    fn rejects_bad_version_length_and_control_flags() {
        let mut b = SCCCN;
        b[1] = 0x03;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Version(3)));
        let mut b = SCCCN;
        b[3] = 8; // Length shorter than the header
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Length(8)));
        // Control message without the S bit.
        let b = [0xc0, 0x02, 0x00, 0x08, 0, 1, 0, 0];
        let p = Packet::new_checked(&b[..]).expect("header fits");
        assert_eq!(Repr::parse(&p), Err(Error::ControlFlags));
    }

    #[test]
    fn trailing_bytes_beyond_length_ignored() {
        let mut v = SCCCN.to_vec();
        v.extend_from_slice(&[0xde, 0xad]);
        let p = Packet::new_checked(&v[..]).expect("valid");
        assert_eq!(p.payload().len(), 8);
    }
}
