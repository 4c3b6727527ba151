//! The RFC 1661 §5 control packet: Code, Identifier, Length, Data.
//!
//! One packet layout serves LCP (RFC 1661 §5), the NCPs (IPCP RFC 1332 §2,
//! IPv6CP RFC 5072 §3, CCP RFC 1962 §2) and the authentication protocols
//! (PAP RFC 1334 §2.2, CHAP RFC 1994 §4), and one option layout (Type,
//! Length, Data, RFC 1661 §6) serves every protocol that negotiates:
//! [`Packet`] and [`Repr`] are therefore generic over the option type, and
//! know nothing of any one protocol.

use super::error::{be16, be32, put, Error};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use std::fmt;

/// RFC 1661 §5 packet header length: Code, Identifier, Length.
pub const HEADER_LEN: usize = 4;

/// The RFC 1661 §6.1 default MRU, assumed when the option is not negotiated.
pub const DEFAULT_MRU: u16 = 1500;

/// Packet codes (RFC 1661 §5; 8–11 are LCP's own, RFC 1570 §2 adds 12
/// and 13). NCPs use 1–7 (RFC 1332 §2, RFC 5072 §3).
pub mod code {
    pub const CONFIGURE_REQUEST: u8 = 1;
    pub const CONFIGURE_ACK: u8 = 2;
    pub const CONFIGURE_NAK: u8 = 3;
    pub const CONFIGURE_REJECT: u8 = 4;
    pub const TERMINATE_REQUEST: u8 = 5;
    pub const TERMINATE_ACK: u8 = 6;
    pub const CODE_REJECT: u8 = 7;
    pub const PROTOCOL_REJECT: u8 = 8;
    pub const ECHO_REQUEST: u8 = 9;
    pub const ECHO_REPLY: u8 = 10;
    pub const DISCARD_REQUEST: u8 = 11;
    pub const IDENTIFICATION: u8 = 12;
    pub const TIME_REMAINING: u8 = 13;
}

/// Byte ranges of the RFC 1661 §5 header.
mod field {
    use std::ops::{Range, RangeFrom};
    pub const CODE: usize = 0;
    pub const IDENTIFIER: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const DATA: RangeFrom<usize> = 4..;
}

/// A view of an RFC 1661 §5 packet (also PAP, RFC 1334 §2.2, and CHAP,
/// RFC 1994 §4, which use the same header).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Validate the header and the Length field once. RFC 1661 §5: octets
    /// beyond Length are padding and ignored; a Length beyond the buffer
    /// makes the packet invalid.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let length = usize::from(be16(data, field::LENGTH.start).ok_or(Error::Truncated)?);
        if length < HEADER_LEN || length > data.len() {
            return Err(Error::BadLength);
        }
        Ok(Packet { buffer })
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref().get(field::CODE).copied().unwrap_or(0)
    }

    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref().get(field::IDENTIFIER).copied().unwrap_or(0)
    }

    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start).unwrap_or(0)
    }

    /// The packet bounded by its Length field (padding removed).
    pub fn packet_bytes(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = usize::from(self.length()).min(data.len());
        data.get(..end).unwrap_or(&[])
    }

    /// The Data field, bounded by Length.
    pub fn data(&self) -> &[u8] {
        self.packet_bytes().get(field::DATA).unwrap_or(&[])
    }
}

/// Write a packet header and return the total length, for the emitters.
pub(crate) fn emit_header(buf: &mut [u8], code: u8, identifier: u8, len: usize) -> Result<(), Error> {
    let len16 = u16::try_from(len).map_err(|_| Error::BufferTooSmall)?;
    if buf.len() < len {
        return Err(Error::BufferTooSmall);
    }
    put(buf, field::CODE, &[code, identifier])?;
    put(buf, field::LENGTH.start, &len16.to_be_bytes())
}

/// A configuration option type of one control protocol (RFC 1661 §6 layout).
///
/// Options are plain data (serde) since a negotiation in progress is part
/// of a session's snapshot.
pub trait ConfigOption: Sized + Clone + PartialEq + fmt::Debug + Serialize + DeserializeOwned {
    /// The Type octet.
    fn kind(&self) -> u8;
    /// Parse the Data of an option whose Type is `kind`.
    fn parse(kind: u8, data: &[u8]) -> Result<Self, Error>;
    /// Length of the Data (Length minus 2).
    fn data_len(&self) -> usize;
    /// Write the Data into `buf`, which is exactly `data_len()` long.
    fn emit_data(&self, buf: &mut [u8]) -> Result<(), Error>;
}

/// An option kept as raw Type and Data (protocols whose options this
/// implementation does not interpret, e.g. CCP or CDPCP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawOption {
    pub kind: u8,
    pub data: Vec<u8>,
}

impl ConfigOption for RawOption {
    fn kind(&self) -> u8 {
        self.kind
    }
    fn parse(kind: u8, data: &[u8]) -> Result<Self, Error> {
        Ok(RawOption { kind, data: data.to_vec() })
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
    fn emit_data(&self, buf: &mut [u8]) -> Result<(), Error> {
        put(buf, 0, &self.data)
    }
}

/// Parse a list of options (RFC 1661 §6: Type, Length ≥ 2, Data).
pub fn parse_options<O: ConfigOption>(mut data: &[u8]) -> Result<Vec<O>, Error> {
    let mut options = Vec::new();
    while !data.is_empty() {
        let kind = *data.first().ok_or(Error::Truncated)?;
        let len = usize::from(*data.get(1).ok_or(Error::BadOption { kind })?);
        if len < 2 || len > data.len() {
            return Err(Error::BadOption { kind });
        }
        let body = data.get(2..len).ok_or(Error::BadOption { kind })?;
        options.push(O::parse(kind, body)?);
        data = data.get(len..).unwrap_or(&[]);
    }
    Ok(options)
}

/// Encoded length of a list of options.
pub fn options_len<O: ConfigOption>(options: &[O]) -> usize {
    options.iter().map(|o| o.data_len() + 2).sum()
}

/// Emit a list of options into `buf`; returns the number of bytes written.
pub fn emit_options<O: ConfigOption>(options: &[O], buf: &mut [u8]) -> Result<usize, Error> {
    let mut at = 0;
    for option in options {
        let len = option.data_len() + 2;
        let len8 = u8::try_from(len).map_err(|_| Error::BadOption { kind: option.kind() })?;
        put(buf, at, &[option.kind(), len8])?;
        let body = buf.get_mut(at + 2..at + len).ok_or(Error::BufferTooSmall)?;
        option.emit_data(body)?;
        at += len;
    }
    Ok(at)
}

/// The owned form of a control packet, generic over the option type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr<O> {
    ConfigureRequest {
        identifier: u8,
        options: Vec<O>,
    },
    ConfigureAck {
        identifier: u8,
        options: Vec<O>,
    },
    ConfigureNak {
        identifier: u8,
        options: Vec<O>,
    },
    ConfigureReject {
        identifier: u8,
        options: Vec<O>,
    },
    TerminateRequest {
        identifier: u8,
        data: Vec<u8>,
    },
    TerminateAck {
        identifier: u8,
        data: Vec<u8>,
    },
    /// RFC 1661 §5.6: carries the rejected packet.
    CodeReject {
        identifier: u8,
        rejected_packet: Vec<u8>,
    },
    /// RFC 1661 §5.7 (LCP only).
    ProtocolReject {
        identifier: u8,
        rejected_protocol: u16,
        rejected_information: Vec<u8>,
    },
    /// RFC 1661 §5.8 (LCP only).
    EchoRequest {
        identifier: u8,
        magic_number: u32,
        data: Vec<u8>,
    },
    EchoReply {
        identifier: u8,
        magic_number: u32,
        data: Vec<u8>,
    },
    DiscardRequest {
        identifier: u8,
        magic_number: u32,
        data: Vec<u8>,
    },
    /// RFC 1570 §2.1 (LCP only).
    Identification {
        identifier: u8,
        magic_number: u32,
        message: Vec<u8>,
    },
    /// RFC 1570 §2.2 (LCP only).
    TimeRemaining {
        identifier: u8,
        magic_number: u32,
        seconds: u32,
        message: Vec<u8>,
    },
    /// A code this protocol does not define (answered with Code-Reject).
    Unknown {
        code: u8,
        identifier: u8,
        data: Vec<u8>,
    },
}

impl<O: ConfigOption> Repr<O> {
    /// Parse an LCP packet (codes 1–13).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        Self::parse_codes(packet, code::TIME_REMAINING)
    }

    /// Parse an NCP packet: RFC 1332 §2 and RFC 5072 §3 only define codes
    /// 1–7; anything else is kept as [`Repr::Unknown`].
    pub fn parse_ncp<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        Self::parse_codes(packet, code::CODE_REJECT)
    }

    fn parse_codes<T: AsRef<[u8]>>(packet: &Packet<T>, max_code: u8) -> Result<Self, Error> {
        let identifier = packet.identifier();
        let data = packet.data();
        let magic = || be32(data, 0).ok_or(Error::Truncated);
        let rest = |at: usize| data.get(at..).unwrap_or(&[]).to_vec();
        let c = packet.code();
        if c > max_code || c == 0 {
            return Ok(Repr::Unknown { code: c, identifier, data: data.to_vec() });
        }
        Ok(match c {
            code::CONFIGURE_REQUEST => Repr::ConfigureRequest { identifier, options: parse_options(data)? },
            code::CONFIGURE_ACK => Repr::ConfigureAck { identifier, options: parse_options(data)? },
            code::CONFIGURE_NAK => Repr::ConfigureNak { identifier, options: parse_options(data)? },
            code::CONFIGURE_REJECT => Repr::ConfigureReject { identifier, options: parse_options(data)? },
            code::TERMINATE_REQUEST => Repr::TerminateRequest { identifier, data: data.to_vec() },
            code::TERMINATE_ACK => Repr::TerminateAck { identifier, data: data.to_vec() },
            code::CODE_REJECT => Repr::CodeReject { identifier, rejected_packet: data.to_vec() },
            code::PROTOCOL_REJECT => Repr::ProtocolReject {
                identifier,
                rejected_protocol: be16(data, 0).ok_or(Error::Truncated)?,
                rejected_information: rest(2),
            },
            code::ECHO_REQUEST => Repr::EchoRequest { identifier, magic_number: magic()?, data: rest(4) },
            code::ECHO_REPLY => Repr::EchoReply { identifier, magic_number: magic()?, data: rest(4) },
            code::DISCARD_REQUEST => {
                Repr::DiscardRequest { identifier, magic_number: magic()?, data: rest(4) }
            }
            code::IDENTIFICATION => {
                Repr::Identification { identifier, magic_number: magic()?, message: rest(4) }
            }
            code::TIME_REMAINING => Repr::TimeRemaining {
                identifier,
                magic_number: magic()?,
                seconds: be32(data, 4).ok_or(Error::Truncated)?,
                message: rest(8),
            },
            _ => Repr::Unknown { code: c, identifier, data: data.to_vec() },
        })
    }

    pub fn code(&self) -> u8 {
        match self {
            Repr::ConfigureRequest { .. } => code::CONFIGURE_REQUEST,
            Repr::ConfigureAck { .. } => code::CONFIGURE_ACK,
            Repr::ConfigureNak { .. } => code::CONFIGURE_NAK,
            Repr::ConfigureReject { .. } => code::CONFIGURE_REJECT,
            Repr::TerminateRequest { .. } => code::TERMINATE_REQUEST,
            Repr::TerminateAck { .. } => code::TERMINATE_ACK,
            Repr::CodeReject { .. } => code::CODE_REJECT,
            Repr::ProtocolReject { .. } => code::PROTOCOL_REJECT,
            Repr::EchoRequest { .. } => code::ECHO_REQUEST,
            Repr::EchoReply { .. } => code::ECHO_REPLY,
            Repr::DiscardRequest { .. } => code::DISCARD_REQUEST,
            Repr::Identification { .. } => code::IDENTIFICATION,
            Repr::TimeRemaining { .. } => code::TIME_REMAINING,
            Repr::Unknown { code, .. } => *code,
        }
    }

    pub fn identifier(&self) -> u8 {
        match self {
            Repr::ConfigureRequest { identifier, .. }
            | Repr::ConfigureAck { identifier, .. }
            | Repr::ConfigureNak { identifier, .. }
            | Repr::ConfigureReject { identifier, .. }
            | Repr::TerminateRequest { identifier, .. }
            | Repr::TerminateAck { identifier, .. }
            | Repr::CodeReject { identifier, .. }
            | Repr::ProtocolReject { identifier, .. }
            | Repr::EchoRequest { identifier, .. }
            | Repr::EchoReply { identifier, .. }
            | Repr::DiscardRequest { identifier, .. }
            | Repr::Identification { identifier, .. }
            | Repr::TimeRemaining { identifier, .. }
            | Repr::Unknown { identifier, .. } => *identifier,
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Repr::ConfigureRequest { options, .. }
                | Repr::ConfigureAck { options, .. }
                | Repr::ConfigureNak { options, .. }
                | Repr::ConfigureReject { options, .. } => options_len(options),
                Repr::TerminateRequest { data, .. }
                | Repr::TerminateAck { data, .. }
                | Repr::Unknown { data, .. } => data.len(),
                Repr::CodeReject { rejected_packet, .. } => rejected_packet.len(),
                Repr::ProtocolReject { rejected_information, .. } => 2 + rejected_information.len(),
                Repr::EchoRequest { data, .. }
                | Repr::EchoReply { data, .. }
                | Repr::DiscardRequest { data, .. } => 4 + data.len(),
                Repr::Identification { message, .. } => 4 + message.len(),
                Repr::TimeRemaining { message, .. } => 8 + message.len(),
            }
    }

    /// Emit into `buf` (at least `buffer_len()` long); returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        emit_header(buf, self.code(), self.identifier(), len)?;
        let body = buf.get_mut(HEADER_LEN..len).ok_or(Error::BufferTooSmall)?;
        match self {
            Repr::ConfigureRequest { options, .. }
            | Repr::ConfigureAck { options, .. }
            | Repr::ConfigureNak { options, .. }
            | Repr::ConfigureReject { options, .. } => {
                emit_options(options, body)?;
            }
            Repr::TerminateRequest { data, .. }
            | Repr::TerminateAck { data, .. }
            | Repr::Unknown { data, .. } => put(body, 0, data)?,
            Repr::CodeReject { rejected_packet, .. } => put(body, 0, rejected_packet)?,
            Repr::ProtocolReject { rejected_protocol, rejected_information, .. } => {
                put(body, 0, &rejected_protocol.to_be_bytes())?;
                put(body, 2, rejected_information)?;
            }
            Repr::EchoRequest { magic_number, data, .. }
            | Repr::EchoReply { magic_number, data, .. }
            | Repr::DiscardRequest { magic_number, data, .. } => {
                put(body, 0, &magic_number.to_be_bytes())?;
                put(body, 4, data)?;
            }
            Repr::Identification { magic_number, message, .. } => {
                put(body, 0, &magic_number.to_be_bytes())?;
                put(body, 4, message)?;
            }
            Repr::TimeRemaining { magic_number, seconds, message, .. } => {
                put(body, 0, &magic_number.to_be_bytes())?;
                put(body, 4, &seconds.to_be_bytes())?;
                put(body, 8, message)?;
            }
        }
        Ok(len)
    }

    /// Emit into a fresh vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }
}
