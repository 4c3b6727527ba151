//! The RADIUS packet (RFC 2865 §3): Code, Identifier, Length,
//! Authenticator, then attributes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Authenticator (16)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attributes ...
//! ```

use core::fmt;
use core::ops::Range;

use crate::attribute::{Attribute, AttributeIter, AttributeRepr, AttributeType};
use crate::error::{Error, Result};
use crate::vendor::{VendorAttribute, VendorSpecific};

mod field {
    use core::ops::Range;
    pub const CODE: usize = 0;
    pub const IDENTIFIER: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const AUTHENTICATOR: Range<usize> = 4..20;
    pub const ATTRIBUTES: usize = 20;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::ATTRIBUTES;
/// RFC 2865 §3: "The minimum length is 20 and maximum length is 4096."
pub const MAX_LEN: usize = 4096;
/// Length of the Authenticator field.
pub const AUTHENTICATOR_LEN: usize = 16;
/// Where the Authenticator sits, for the signing step ([`crate::crypto`]).
pub(crate) const AUTHENTICATOR: Range<usize> = field::AUTHENTICATOR;

/// RADIUS packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5997 §2, RFC 5176 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    AccessRequest,
    AccessAccept,
    AccessReject,
    AccountingRequest,
    AccountingResponse,
    AccessChallenge,
    StatusServer,
    StatusClient,
    DisconnectRequest,
    DisconnectAck,
    DisconnectNak,
    CoaRequest,
    CoaAck,
    CoaNak,
    /// RFC 2865 §3: unknown codes are silently discarded by receivers;
    /// the codec still carries them so that a capture re-emits unchanged.
    Unknown(u8),
}

impl From<u8> for Code {
    fn from(v: u8) -> Code {
        match v {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            13 => Code::StatusClient,
            40 => Code::DisconnectRequest,
            41 => Code::DisconnectAck,
            42 => Code::DisconnectNak,
            43 => Code::CoaRequest,
            44 => Code::CoaAck,
            45 => Code::CoaNak,
            v => Code::Unknown(v),
        }
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> u8 {
        match c {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::AccessChallenge => 11,
            Code::StatusServer => 12,
            Code::StatusClient => 13,
            Code::DisconnectRequest => 40,
            Code::DisconnectAck => 41,
            Code::DisconnectNak => 42,
            Code::CoaRequest => 43,
            Code::CoaAck => 44,
            Code::CoaNak => 45,
            Code::Unknown(v) => v,
        }
    }
}

impl Code {
    /// Requests whose Authenticator is a random nonce (RFC 2865 §3,
    /// RFC 5997 §3) rather than an MD5 over the packet.
    pub fn has_random_authenticator(self) -> bool {
        matches!(self, Code::AccessRequest | Code::StatusServer | Code::StatusClient)
    }

    /// Requests whose Request Authenticator is MD5 over the packet with a
    /// zero Authenticator field (RFC 2866 §3, RFC 5176 §2.3).
    pub fn has_computed_request_authenticator(self) -> bool {
        matches!(self, Code::AccountingRequest | Code::DisconnectRequest | Code::CoaRequest)
    }

    /// Packets sent in answer to a request: their Authenticator is the
    /// Response Authenticator (RFC 2865 §3).
    pub fn is_response(self) -> bool {
        matches!(
            self,
            Code::AccessAccept
                | Code::AccessReject
                | Code::AccessChallenge
                | Code::AccountingResponse
                | Code::DisconnectAck
                | Code::DisconnectNak
                | Code::CoaAck
                | Code::CoaNak
        )
    }

    /// Does `self` answer a request of code `request` (RFC 2865 §4,
    /// RFC 2866 §4, RFC 5997 §3, RFC 5176 §2)?
    pub fn answers(self, request: Code) -> bool {
        match request {
            Code::AccessRequest => {
                matches!(self, Code::AccessAccept | Code::AccessReject | Code::AccessChallenge)
            }
            Code::AccountingRequest => self == Code::AccountingResponse,
            // RFC 5997 §3: Access-Accept from an authentication port,
            // Accounting-Response from an accounting port.
            Code::StatusServer => matches!(self, Code::AccessAccept | Code::AccountingResponse),
            Code::DisconnectRequest => matches!(self, Code::DisconnectAck | Code::DisconnectNak),
            Code::CoaRequest => matches!(self, Code::CoaAck | Code::CoaNak),
            _ => false,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccountingRequest => "Accounting-Request",
            Code::AccountingResponse => "Accounting-Response",
            Code::AccessChallenge => "Access-Challenge",
            Code::StatusServer => "Status-Server",
            Code::StatusClient => "Status-Client",
            Code::DisconnectRequest => "Disconnect-Request",
            Code::DisconnectAck => "Disconnect-ACK",
            Code::DisconnectNak => "Disconnect-NAK",
            Code::CoaRequest => "CoA-Request",
            Code::CoaAck => "CoA-ACK",
            Code::CoaNak => "CoA-NAK",
            Code::Unknown(v) => return write!(f, "Code-{v}"),
        };
        f.write_str(s)
    }
}

/// A read/write view of a RADIUS packet in a buffer.
///
/// After [`Packet::new_checked`] every accessor is infallible: the header
/// is present, Length is in range and fits the buffer, and the attributes
/// up to Length are a well-formed chain of Type-Length-Value. Accessors of
/// an unchecked view never panic either; they read zeros past the end.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks, for emitting into a fresh buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of received bytes, validated once.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// RFC 2865 §3: "If the packet is shorter than the Length field
    /// indicates, it MUST be silently discarded"; octets past Length are
    /// padding and ignored. RFC 2865 §5 and RFC 6929 §2.8: an attribute
    /// whose Length is below 2 or overruns the packet makes the packet
    /// malformed.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated { need: HEADER_LEN, have: data.len() });
        }
        let len = usize::from(self.length());
        if !(HEADER_LEN..=MAX_LEN).contains(&len) {
            return Err(Error::BadLength(len));
        }
        if data.len() < len {
            return Err(Error::Truncated { need: len, have: data.len() });
        }
        let mut rest = data.get(HEADER_LEN..len).unwrap_or(&[]);
        while !rest.is_empty() {
            let attr = Attribute::new_checked(rest)?;
            rest = rest.get(usize::from(attr.length())..).unwrap_or(&[]);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    pub fn code(&self) -> Code {
        Code::from(self.byte(field::CODE))
    }

    pub fn identifier(&self) -> u8 {
        self.byte(field::IDENTIFIER)
    }

    /// The Length field.
    pub fn length(&self) -> u16 {
        u16::from_be_bytes([self.byte(field::LENGTH.start), self.byte(field::LENGTH.start + 1)])
    }

    pub fn authenticator(&self) -> [u8; AUTHENTICATOR_LEN] {
        let mut a = [0u8; AUTHENTICATOR_LEN];
        if let Some(src) = self.buffer.as_ref().get(field::AUTHENTICATOR) {
            a.copy_from_slice(src);
        }
        a
    }

    /// The packet as far as Length says (padding after it excluded).
    pub fn as_bytes(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        data.get(..usize::from(self.length())).unwrap_or(data)
    }

    /// The attribute area, `20..Length`.
    pub fn attributes_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..usize::from(self.length())).unwrap_or(&[])
    }

    /// The attributes in wire order.
    pub fn attributes(&self) -> AttributeIter<'_> {
        AttributeIter::new(self.attributes_bytes())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_byte(&mut self, i: usize, v: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(i) {
            *b = v;
        }
    }

    pub fn set_code(&mut self, code: Code) {
        self.set_byte(field::CODE, code.into());
    }

    pub fn set_identifier(&mut self, id: u8) {
        self.set_byte(field::IDENTIFIER, id);
    }

    pub fn set_length(&mut self, len: u16) {
        let [a, b] = len.to_be_bytes();
        self.set_byte(field::LENGTH.start, a);
        self.set_byte(field::LENGTH.start + 1, b);
    }

    pub fn set_authenticator(&mut self, auth: &[u8; AUTHENTICATOR_LEN]) {
        if let Some(dst) = self.buffer.as_mut().get_mut(field::AUTHENTICATOR) {
            dst.copy_from_slice(auth);
        }
    }

    /// The attribute area from offset 20 to the end of the buffer.
    pub fn attributes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(HEADER_LEN..).unwrap_or(&mut [])
    }
}

/// An owned, parsed RADIUS packet. Attributes keep their wire order and
/// exact values, so parse followed by emit reproduces the bytes.
///
/// Attribute values that depend on the shared secret (User-Password,
/// Tunnel-Password, MS-MPPE keys) are stored as on the wire; see
/// [`crate::hiding`] to hide and recover them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub code: Code,
    pub identifier: u8,
    pub authenticator: [u8; AUTHENTICATOR_LEN],
    pub attributes: Vec<AttributeRepr>,
}

impl Repr {
    /// A packet with no attributes and a zero Authenticator.
    pub fn new(code: Code, identifier: u8) -> Repr {
        Repr { code, identifier, authenticator: [0; AUTHENTICATOR_LEN], attributes: Vec::new() }
    }

    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let attributes = packet.attributes().map(|a| AttributeRepr::parse(&a)).collect::<Result<Vec<_>>>()?;
        Ok(Repr {
            code: packet.code(),
            identifier: packet.identifier(),
            authenticator: packet.authenticator(),
            attributes,
        })
    }

    /// Parse raw bytes (a datagram).
    pub fn from_bytes(bytes: &[u8]) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.attributes.iter().map(AttributeRepr::buffer_len).sum::<usize>()
    }

    /// Write the packet as it stands (no signing) into `packet`, whose
    /// buffer holds at least [`Repr::buffer_len`] octets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let len = self.buffer_len();
        if len > MAX_LEN {
            return Err(Error::TooLong(len));
        }
        let have = packet.buffer.as_ref().len();
        if have < len {
            return Err(Error::BufferTooSmall { need: len, have });
        }
        packet.set_code(self.code);
        packet.set_identifier(self.identifier);
        packet.set_length(len as u16);
        packet.set_authenticator(&self.authenticator);
        let mut at = 0;
        let area = packet.attributes_mut();
        for a in &self.attributes {
            let n = a.buffer_len();
            let dst = area.get_mut(at..at + n).ok_or(Error::BufferTooSmall { need: len, have })?;
            a.emit(dst)?;
            at += n;
        }
        Ok(())
    }

    /// The packet's bytes as it stands, unsigned: the Authenticator field
    /// and any Message-Authenticator as they are in the `Repr`.
    /// [`Repr::encode`] (in [`crate::crypto`]) emits and signs.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut Packet::new_unchecked(&mut buf[..]))?;
        Ok(buf)
    }

    /// The first attribute of type `typ`.
    pub fn get(&self, typ: AttributeType) -> Option<&AttributeRepr> {
        self.attributes.iter().find(|a| a.typ() == typ)
    }

    /// Every attribute of type `typ`, in order.
    pub fn get_all(&self, typ: AttributeType) -> impl Iterator<Item = &AttributeRepr> {
        self.attributes.iter().filter(move |a| a.typ() == typ)
    }

    pub fn push(&mut self, attribute: AttributeRepr) {
        self.attributes.push(attribute);
    }

    /// Replace every attribute of `attribute`'s type by it (in the place of
    /// the first one, or at the end).
    pub fn set(&mut self, attribute: AttributeRepr) {
        let typ = attribute.typ();
        match self.attributes.iter().position(|a| a.typ() == typ) {
            Some(i) => {
                self.attributes.retain(|a| a.typ() != typ);
                self.attributes.insert(i.min(self.attributes.len()), attribute);
            }
            None => self.attributes.push(attribute),
        }
    }

    pub fn remove_all(&mut self, typ: AttributeType) {
        self.attributes.retain(|a| a.typ() != typ);
    }

    /// Sub-attributes of every well-formed Vendor-Specific attribute of
    /// `vendor_id` (RFC 2865 §5.26 recommended format). Malformed ones are
    /// skipped: a reader that needs to know uses [`VendorSpecific::parse`].
    pub fn vendor_attributes(&self, vendor_id: u32) -> impl Iterator<Item = VendorAttribute> + '_ {
        self.get_all(AttributeType::VENDOR_SPECIFIC)
            .filter_map(|a| VendorSpecific::parse(a.value()).ok())
            .filter(move |v| v.vendor_id == vendor_id)
            .flat_map(|v| v.attributes)
    }

    /// The first sub-attribute `vendor_type` of vendor `vendor_id`.
    pub fn vendor_attribute(&self, vendor_id: u32, vendor_type: u8) -> Option<VendorAttribute> {
        self.vendor_attributes(vendor_id).find(|a| a.vendor_type == vendor_type)
    }

    /// Put a Message-Authenticator placeholder first if there is none.
    /// BlastRADIUS (CVE-2024-3596) mitigation: placing it first means a
    /// forged prefix cannot precede it.
    pub fn ensure_message_authenticator(&mut self) {
        if self.get(AttributeType::MESSAGE_AUTHENTICATOR).is_none() {
            self.attributes.insert(0, AttributeRepr::message_authenticator_placeholder());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attribute::AttributeType as T;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    // RFC 2865 §7.1: Access-Request from NAS 192.168.1.16 for user "nemo"
    // with password "arctangent", shared secret "xyzzy5461".
    pub(crate) const RFC2865_7_1_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
        98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee
        04 06 c0 a8 01 10 05 06 00 00 00 03";
    pub(crate) const RFC2865_7_1_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
        9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03";

    #[test]
    fn parse_rfc2865_access_request() {
        let bytes = hex(RFC2865_7_1_REQUEST);
        let p = Packet::new_checked(&bytes[..]).expect("checked");
        assert_eq!(p.code(), Code::AccessRequest);
        assert_eq!(p.identifier(), 0);
        assert_eq!(p.length(), 56);
        let r = Repr::parse(&p).expect("parse");
        assert_eq!(r.get(T::USER_NAME).map(|a| a.value()), Some(&b"nemo"[..]));
        assert_eq!(r.get(T::NAS_IP_ADDRESS).and_then(|a| a.as_ipv4().ok()), Some([192, 168, 1, 16].into()));
        assert_eq!(r.get(T::NAS_PORT).and_then(|a| a.as_integer().ok()), Some(3));
        let hidden = r.get(T::USER_PASSWORD).expect("password").value();
        let clear =
            crate::hiding::recover_user_password(hidden, b"xyzzy5461", &r.authenticator).expect("recover");
        assert_eq!(clear, b"arctangent");
        assert_eq!(r.to_bytes().expect("emit"), bytes);
    }

    #[test]
    fn emit_rfc2865_access_request() {
        let bytes = hex(RFC2865_7_1_REQUEST);
        let auth: [u8; 16] = bytes[4..20].try_into().expect("16");
        let mut r = Repr::new(Code::AccessRequest, 0);
        r.authenticator = auth;
        r.push(AttributeRepr::new(T::USER_NAME, b"nemo".to_vec()).expect("attr"));
        let hidden = crate::hiding::hide_user_password(b"arctangent", b"xyzzy5461", &auth).expect("hide");
        r.push(AttributeRepr::new(T::USER_PASSWORD, hidden).expect("attr"));
        r.push(AttributeRepr::ipv4(T::NAS_IP_ADDRESS, [192, 168, 1, 16].into()));
        r.push(AttributeRepr::integer(T::NAS_PORT, 3));
        assert_eq!(r.buffer_len(), bytes.len());
        assert_eq!(r.to_bytes().expect("emit"), bytes);
    }

    #[test]
    fn parse_rfc2865_access_accept() {
        let acc = hex(RFC2865_7_1_ACCEPT);
        let r = Repr::from_bytes(&acc).expect("parse");
        assert_eq!(r.code, Code::AccessAccept);
        assert_eq!(r.get(T::SERVICE_TYPE).and_then(|a| a.as_integer().ok()), Some(1));
        assert_eq!(r.get(T::LOGIN_SERVICE).and_then(|a| a.as_integer().ok()), Some(0));
        assert_eq!(r.get(T::LOGIN_IP_HOST).and_then(|a| a.as_ipv4().ok()), Some([192, 168, 1, 3].into()));
        assert_eq!(r.to_bytes().expect("emit"), acc);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for s in [RFC2865_7_1_REQUEST, RFC2865_7_1_ACCEPT] {
            let bytes = hex(s);
            for n in 0..bytes.len() {
                assert!(Packet::new_checked(&bytes[..n]).is_err(), "prefix {n}");
                assert!(Repr::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
            }
            // Padding after Length is ignored (RFC 2865 §3).
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0xaa; 7]);
            assert_eq!(Repr::from_bytes(&padded).expect("padded").to_bytes().expect("emit"), bytes);
        }
    }

    #[test]
    fn malformed_lengths() {
        let good = hex(RFC2865_7_1_REQUEST);
        // Length field below 20 and above 4096.
        for len in [0u16, 19, 4097, 0xffff] {
            let mut b = good.clone();
            b[2..4].copy_from_slice(&len.to_be_bytes());
            assert!(Packet::new_checked(&b[..]).is_err(), "{len}");
        }
        // An attribute of length 0, 1, or running past Length.
        for (at, v) in [(21, 0u8), (21, 1), (21, 200), (27, 0x13)] {
            let mut b = good.clone();
            b[at] = v;
            assert!(Packet::new_checked(&b[..]).is_err(), "{at} {v}");
        }
        // Length shorter than the buffer cuts an attribute in half.
        let mut b = good.clone();
        b[2..4].copy_from_slice(&55u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).is_err());
    }

    #[test]
    fn too_long_is_refused_on_emit() {
        let mut r = Repr::new(Code::AccessRequest, 1);
        for _ in 0..17 {
            r.push(AttributeRepr::new(T::CLASS, vec![0; 253]).expect("attr"));
        }
        assert!(r.buffer_len() > MAX_LEN);
        assert_eq!(r.to_bytes(), Err(Error::TooLong(r.buffer_len())));
        let mut small = [0u8; 10];
        let r = Repr::new(Code::AccessRequest, 1);
        assert!(matches!(
            r.emit(&mut Packet::new_unchecked(&mut small[..])),
            Err(Error::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Code::from(v)), v);
        }
        assert!(Code::AccessAccept.answers(Code::AccessRequest));
        assert!(Code::AccountingResponse.answers(Code::StatusServer));
        assert!(!Code::CoaAck.answers(Code::DisconnectRequest));
    }

    #[test]
    fn set_replaces_in_place() {
        let mut r = Repr::new(Code::AccountingRequest, 1);
        r.push(AttributeRepr::integer(T::ACCT_STATUS_TYPE, 1));
        r.push(AttributeRepr::integer(T::ACCT_DELAY_TIME, 0));
        r.push(AttributeRepr::integer(T::NAS_PORT, 0));
        r.set(AttributeRepr::integer(T::ACCT_DELAY_TIME, 5));
        assert_eq!(r.attributes[1], AttributeRepr::integer(T::ACCT_DELAY_TIME, 5));
        r.ensure_message_authenticator();
        assert_eq!(r.attributes[0].typ(), T::MESSAGE_AUTHENTICATOR);
        r.ensure_message_authenticator();
        assert_eq!(r.get_all(T::MESSAGE_AUTHENTICATOR).count(), 1);
    }
}
