//! LCP (RFC 1661 §5–§6) and the packet format it shares with every NCP.
//!
//! RFC 1661 §5 defines one packet layout (Code, Identifier, Length, Data) and
//! one option layout (Type, Length, Data) that IPCP (RFC 1332 §2), IPv6CP
//! (RFC 5072 §3), CCP (RFC 1962 §2) and others reuse; [`Packet`] and
//! [`Repr`] are therefore generic over the option type.

use super::auth::AuthMethod;
use super::fsm::{OptionPolicy, Verdict};
use super::{be16, be32, put, Error};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// RFC 1661 §5 packet header length: Code, Identifier, Length.
pub const HEADER_LEN: usize = 4;

/// The RFC 1661 §6.1 default MRU, assumed when the option is not negotiated.
pub const DEFAULT_MRU: u16 = 1500;

/// Bytes a tunnelled PPP frame costs on top of its Information field when
/// carried over L2TPv2/UDP/IPv4 as this LNS sends it: IPv4 20, UDP 8, L2TP
/// data header with Length bit 8 (RFC 2661 §3.1, no sequence numbers on
/// data), Address/Control 2, Protocol 2.
pub const L2TP_IPV4_OVERHEAD: u16 = 20 + 8 + 8 + 2 + 2;

/// LCP packet codes (RFC 1661 §5, RFC 1570 §2 for 12 and 13).
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

/// The owned form of an LCP-family packet, generic over the option type.
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

/// LCP packets use the whole alphabet.
pub type LcpRepr = Repr<LcpOption>;

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

/// LCP option types (RFC 1661 §6, IANA "LCP Option Types").
pub mod option_type {
    pub const MAXIMUM_RECEIVE_UNIT: u8 = 1;
    pub const ASYNC_CONTROL_CHARACTER_MAP: u8 = 2;
    pub const AUTHENTICATION_PROTOCOL: u8 = 3;
    pub const QUALITY_PROTOCOL: u8 = 4;
    pub const MAGIC_NUMBER: u8 = 5;
    pub const PROTOCOL_FIELD_COMPRESSION: u8 = 7;
    pub const ADDRESS_CONTROL_FIELD_COMPRESSION: u8 = 8;
    pub const CALLBACK: u8 = 13;
    pub const MRRU: u8 = 17;
    pub const ENDPOINT_DISCRIMINATOR: u8 = 19;
}

/// CHAP Algorithm values (RFC 1994 §3, RFC 2433, RFC 2759 §2).
pub mod chap_algorithm {
    pub const MD5: u8 = 5;
    pub const MS_CHAP: u8 = 0x80;
    pub const MS_CHAP_V2: u8 = 0x81;
}

/// The Authentication-Protocol option's value (RFC 1661 §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthProtocol {
    /// 0xc023 with no data (RFC 1334 §3.1).
    Pap,
    /// 0xc223 with a one-octet Algorithm (RFC 1994 §3).
    Chap { algorithm: u8 },
    /// Anything else (EAP, malformed PAP/CHAP data), kept raw.
    Other { protocol: u16, data: Vec<u8> },
}

impl AuthProtocol {
    fn parse(data: &[u8]) -> Result<Self, Error> {
        let protocol =
            be16(data, 0).ok_or(Error::BadOption { kind: option_type::AUTHENTICATION_PROTOCOL })?;
        let rest = data.get(2..).unwrap_or(&[]);
        Ok(match (protocol, rest) {
            (0xc023, []) => AuthProtocol::Pap,
            (0xc223, [algorithm]) => AuthProtocol::Chap { algorithm: *algorithm },
            _ => AuthProtocol::Other { protocol, data: rest.to_vec() },
        })
    }

    fn data_len(&self) -> usize {
        2 + match self {
            AuthProtocol::Pap => 0,
            AuthProtocol::Chap { .. } => 1,
            AuthProtocol::Other { data, .. } => data.len(),
        }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        match self {
            AuthProtocol::Pap => put(buf, 0, &0xc023u16.to_be_bytes()),
            AuthProtocol::Chap { algorithm } => {
                put(buf, 0, &0xc223u16.to_be_bytes())?;
                put(buf, 2, &[*algorithm])
            }
            AuthProtocol::Other { protocol, data } => {
                put(buf, 0, &protocol.to_be_bytes())?;
                put(buf, 2, data)
            }
        }
    }
}

/// An LCP configuration option (RFC 1661 §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LcpOption {
    MaximumReceiveUnit(u16),
    AsyncControlCharacterMap(u32),
    AuthenticationProtocol(AuthProtocol),
    QualityProtocol {
        protocol: u16,
        data: Vec<u8>,
    },
    MagicNumber(u32),
    ProtocolFieldCompression,
    AddressControlFieldCompression,
    /// Options this implementation does not negotiate (MRRU, Endpoint
    /// Discriminator, Callback, ...), kept raw so they can be rejected
    /// verbatim (RFC 1661 §5.4).
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
}

impl ConfigOption for LcpOption {
    fn kind(&self) -> u8 {
        use option_type::*;
        match self {
            LcpOption::MaximumReceiveUnit(_) => MAXIMUM_RECEIVE_UNIT,
            LcpOption::AsyncControlCharacterMap(_) => ASYNC_CONTROL_CHARACTER_MAP,
            LcpOption::AuthenticationProtocol(_) => AUTHENTICATION_PROTOCOL,
            LcpOption::QualityProtocol { .. } => QUALITY_PROTOCOL,
            LcpOption::MagicNumber(_) => MAGIC_NUMBER,
            LcpOption::ProtocolFieldCompression => PROTOCOL_FIELD_COMPRESSION,
            LcpOption::AddressControlFieldCompression => ADDRESS_CONTROL_FIELD_COMPRESSION,
            LcpOption::Unknown { kind, .. } => *kind,
        }
    }

    fn parse(kind: u8, data: &[u8]) -> Result<Self, Error> {
        use option_type::*;
        let bad = Error::BadOption { kind };
        // Fixed-length options must have exactly their RFC 1661 §6 length.
        let exact = |n: usize| if data.len() == n { Ok(()) } else { Err(bad) };
        Ok(match kind {
            MAXIMUM_RECEIVE_UNIT => {
                exact(2)?;
                LcpOption::MaximumReceiveUnit(be16(data, 0).ok_or(bad)?)
            }
            ASYNC_CONTROL_CHARACTER_MAP => {
                exact(4)?;
                LcpOption::AsyncControlCharacterMap(be32(data, 0).ok_or(bad)?)
            }
            AUTHENTICATION_PROTOCOL => LcpOption::AuthenticationProtocol(AuthProtocol::parse(data)?),
            QUALITY_PROTOCOL => LcpOption::QualityProtocol {
                protocol: be16(data, 0).ok_or(bad)?,
                data: data.get(2..).unwrap_or(&[]).to_vec(),
            },
            MAGIC_NUMBER => {
                exact(4)?;
                LcpOption::MagicNumber(be32(data, 0).ok_or(bad)?)
            }
            PROTOCOL_FIELD_COMPRESSION => {
                exact(0)?;
                LcpOption::ProtocolFieldCompression
            }
            ADDRESS_CONTROL_FIELD_COMPRESSION => {
                exact(0)?;
                LcpOption::AddressControlFieldCompression
            }
            _ => LcpOption::Unknown { kind, data: data.to_vec() },
        })
    }

    fn data_len(&self) -> usize {
        match self {
            LcpOption::MaximumReceiveUnit(_) => 2,
            LcpOption::AsyncControlCharacterMap(_) | LcpOption::MagicNumber(_) => 4,
            LcpOption::AuthenticationProtocol(p) => p.data_len(),
            LcpOption::QualityProtocol { data, .. } => 2 + data.len(),
            LcpOption::ProtocolFieldCompression | LcpOption::AddressControlFieldCompression => 0,
            LcpOption::Unknown { data, .. } => data.len(),
        }
    }

    fn emit_data(&self, buf: &mut [u8]) -> Result<(), Error> {
        match self {
            LcpOption::MaximumReceiveUnit(v) => put(buf, 0, &v.to_be_bytes()),
            LcpOption::AsyncControlCharacterMap(v) | LcpOption::MagicNumber(v) => {
                put(buf, 0, &v.to_be_bytes())
            }
            LcpOption::AuthenticationProtocol(p) => p.emit(buf),
            LcpOption::QualityProtocol { protocol, data } => {
                put(buf, 0, &protocol.to_be_bytes())?;
                put(buf, 2, data)
            }
            LcpOption::ProtocolFieldCompression | LcpOption::AddressControlFieldCompression => Ok(()),
            LcpOption::Unknown { data, .. } => put(buf, 0, data),
        }
    }
}

/// Local LCP wishes and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LcpConfig {
    /// The MRU we announce. Chosen so that a full frame still fits the
    /// access network once tunnelled: see [`LcpConfig::mru_for_access_mtu`].
    pub mru: u16,
    /// A peer MRU below this is Nak'ed up to it (RFC 1661 §6.1 lets either
    /// side suggest a value).
    pub min_peer_mru: u16,
    /// Negotiate a Magic-Number (RFC 1661 §6.4) for loop detection.
    pub magic_number: bool,
    /// Authentication we require from the peer, most preferred first (the
    /// authenticator role). Empty: none.
    pub require_auth: Vec<AuthMethod>,
    /// Authentication we agree to perform when the peer asks (the peer role),
    /// most preferred first. Empty: reject the option.
    pub accept_auth: Vec<AuthMethod>,
    /// Accept the peer's Protocol-Field-Compression request.
    pub accept_pfc: bool,
    /// Accept the peer's Address-and-Control-Field-Compression request.
    pub accept_acfc: bool,
    /// Request PFC / ACFC ourselves.
    pub request_pfc: bool,
    pub request_acfc: bool,
    /// How many repeated Magic-Number collisions mean the link is looped back
    /// (RFC 1661 §6.4).
    pub loopback_threshold: u32,
}

impl LcpConfig {
    /// RFC 1661 §6.1 MRU such that a full-size frame from the subscriber,
    /// once put into L2TP/UDP/IPv4, fits a path MTU of `mtu`.
    pub fn mru_for_access_mtu(mtu: u16) -> u16 {
        mtu.saturating_sub(L2TP_IPV4_OVERHEAD).max(64)
    }
}

impl Default for LcpConfig {
    fn default() -> Self {
        LcpConfig {
            mru: LcpConfig::mru_for_access_mtu(1500),
            min_peer_mru: 128,
            magic_number: true,
            require_auth: Vec::new(),
            accept_auth: Vec::new(),
            accept_pfc: true,
            accept_acfc: true,
            request_pfc: false,
            request_acfc: false,
            loopback_threshold: 3,
        }
    }
}

/// What one direction of the link negotiated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LcpNegotiated {
    /// MRU (RFC 1661 §6.1 default 1500 when absent).
    pub mru: u16,
    pub magic_number: Option<u32>,
    /// The authentication this direction's requester demanded.
    pub auth: Option<AuthProtocol>,
    pub pfc: bool,
    pub acfc: bool,
}

impl LcpNegotiated {
    fn from_options(options: &[LcpOption]) -> Self {
        let mut n = LcpNegotiated { mru: DEFAULT_MRU, ..Default::default() };
        for option in options {
            match option {
                LcpOption::MaximumReceiveUnit(v) => n.mru = *v,
                LcpOption::MagicNumber(v) => n.magic_number = Some(*v),
                LcpOption::AuthenticationProtocol(p) => n.auth = Some(p.clone()),
                LcpOption::ProtocolFieldCompression => n.pfc = true,
                LcpOption::AddressControlFieldCompression => n.acfc = true,
                _ => {}
            }
        }
        n
    }
}

/// The LCP option policy for the [`super::fsm::Fsm`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LcpPolicy {
    pub config: LcpConfig,
    want_mru: Option<u16>,
    want_auth: Option<usize>,
    want_magic: Option<u32>,
    want_pfc: bool,
    want_acfc: bool,
    /// The peer refused every authentication protocol we can require.
    auth_refused: bool,
    /// Magic-Number we last suggested in a Configure-Nak.
    last_nak_magic: Option<u32>,
    loop_suspicions: u32,
    looped: bool,
    /// What the peer acknowledged of our request (our receive side).
    pub local: LcpNegotiated,
    /// What we acknowledged of the peer's request (the peer's receive side).
    pub peer: LcpNegotiated,
}

/// RFC 1661 §6.4: a Magic-Number chosen at random, never zero, and not one
/// of `avoid` (ours or the peer's, on a collision).
fn random_magic(rng: &mut impl Rng, avoid: &[u32]) -> u32 {
    loop {
        let m: u32 = rng.gen();
        if m != 0 && !avoid.contains(&m) {
            return m;
        }
    }
}

impl LcpPolicy {
    /// `rng` draws the first Magic-Number (RFC 1661 §6.4).
    pub fn new(config: LcpConfig, rng: &mut ChaCha8Rng) -> Self {
        let mut policy = LcpPolicy {
            config,
            want_mru: None,
            want_auth: None,
            want_magic: None,
            want_pfc: false,
            want_acfc: false,
            auth_refused: false,
            last_nak_magic: None,
            loop_suspicions: 0,
            looped: false,
            local: LcpNegotiated::default(),
            peer: LcpNegotiated::default(),
        };
        policy.reset(rng);
        policy
    }

    /// The peer Nak'ed or Rejected every authentication protocol we can
    /// require: the link cannot proceed (RFC 3145 cause 15).
    pub fn auth_refused(&self) -> bool {
        self.auth_refused
    }

    /// Magic-Number collisions repeated past the threshold: the link is
    /// looped back (RFC 1661 §6.4, RFC 3145 cause 7).
    pub fn looped_back(&self) -> bool {
        self.looped
    }

    /// Our current Magic-Number (0 when not negotiated, RFC 1661 §5.8).
    pub fn magic_number(&self) -> u32 {
        self.local.magic_number.or(self.want_magic).unwrap_or(0)
    }

    /// The authentication protocol currently requested from the peer.
    pub fn requested_auth(&self) -> Option<AuthMethod> {
        self.want_auth.and_then(|i| self.config.require_auth.get(i).copied())
    }

    /// Adopt options a LAC negotiated on our behalf (RFC 2661 §4.4.5 proxy
    /// LCP AVPs): `sent` is what the LAC requested as us, `received` what the
    /// peer requested and the LAC acknowledged. Returns false (leaving the
    /// policy untouched) when the result is not acceptable to us, so LCP must
    /// be renegotiated.
    pub fn adopt_proxy(&mut self, sent: &[LcpOption], received: &[LcpOption], rng: &mut ChaCha8Rng) -> bool {
        let local = LcpNegotiated::from_options(sent);
        if !self.config.require_auth.is_empty() {
            let acceptable = local
                .auth
                .as_ref()
                .and_then(AuthMethod::from_protocol)
                .is_some_and(|m| self.config.require_auth.contains(&m));
            if !acceptable {
                return false;
            }
        }
        let saved = (self.last_nak_magic, self.loop_suspicions);
        let verdict = self.judge(received, rng);
        (self.last_nak_magic, self.loop_suspicions) = saved;
        if verdict != Verdict::Ack {
            return false;
        }
        self.local = local;
        self.peer = LcpNegotiated::from_options(received);
        true
    }
}

impl OptionPolicy for LcpPolicy {
    type Option = LcpOption;

    fn reset(&mut self, rng: &mut ChaCha8Rng) {
        self.want_mru = Some(self.config.mru);
        self.want_auth = if self.config.require_auth.is_empty() { None } else { Some(0) };
        self.want_magic = self.config.magic_number.then(|| random_magic(rng, &[]));
        self.want_pfc = self.config.request_pfc;
        self.want_acfc = self.config.request_acfc;
        self.auth_refused = false;
        self.last_nak_magic = None;
        self.loop_suspicions = 0;
        self.looped = false;
        self.local = LcpNegotiated::default();
        self.peer = LcpNegotiated::default();
    }

    fn request(&mut self) -> Vec<LcpOption> {
        let mut options = Vec::new();
        if let Some(mru) = self.want_mru {
            options.push(LcpOption::MaximumReceiveUnit(mru));
        }
        if let Some(method) = self.requested_auth() {
            options.push(LcpOption::AuthenticationProtocol(method.to_protocol()));
        }
        if let Some(magic) = self.want_magic {
            options.push(LcpOption::MagicNumber(magic));
        }
        if self.want_pfc {
            options.push(LcpOption::ProtocolFieldCompression);
        }
        if self.want_acfc {
            options.push(LcpOption::AddressControlFieldCompression);
        }
        options
    }

    fn judge(&mut self, request: &[LcpOption], rng: &mut ChaCha8Rng) -> Verdict<LcpOption> {
        // RFC 1661 §6.4: a request carrying our own Magic-Number may be our
        // own request looped back. Answer only that with a Nak carrying a
        // different value, so that a loop shows up as repeated collisions
        // rather than as a rejection of our other options.
        if let Some(ours) = self.want_magic {
            if request.contains(&LcpOption::MagicNumber(ours)) {
                let suggestion = random_magic(rng, &[ours]);
                self.last_nak_magic = Some(suggestion);
                return Verdict::Nak(vec![LcpOption::MagicNumber(suggestion)]);
            }
        }
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        for option in request {
            match option {
                LcpOption::MaximumReceiveUnit(v) => {
                    if *v < self.config.min_peer_mru {
                        naks.push(LcpOption::MaximumReceiveUnit(self.config.min_peer_mru));
                    }
                }
                // Over L2TP the LAC does the async framing (RFC 2661 §4.4.5),
                // so any ACCM is harmless to acknowledge.
                LcpOption::AsyncControlCharacterMap(_) => {}
                LcpOption::AuthenticationProtocol(p) => {
                    let method = AuthMethod::from_protocol(p);
                    match (method, self.config.accept_auth.first()) {
                        (Some(m), _) if self.config.accept_auth.contains(&m) => {}
                        // RFC 1661 §6.2: Nak with the protocol we prefer.
                        (_, Some(preferred)) => {
                            naks.push(LcpOption::AuthenticationProtocol(preferred.to_protocol()))
                        }
                        (_, None) => rejects.push(option.clone()),
                    }
                }
                // Any Magic-Number but ours (handled above) is acceptable.
                LcpOption::MagicNumber(_) => {}
                LcpOption::ProtocolFieldCompression if self.config.accept_pfc => {}
                LcpOption::AddressControlFieldCompression if self.config.accept_acfc => {}
                _ => rejects.push(option.clone()),
            }
        }
        if !rejects.is_empty() {
            Verdict::Reject(rejects)
        } else if !naks.is_empty() {
            Verdict::Nak(naks)
        } else {
            Verdict::Ack
        }
    }

    fn peer_acknowledged(&mut self, request: &[LcpOption]) {
        self.peer = LcpNegotiated::from_options(request);
    }

    fn acknowledged(&mut self, options: &[LcpOption]) {
        self.local = LcpNegotiated::from_options(options);
    }

    fn naked(&mut self, options: &[LcpOption], rng: &mut ChaCha8Rng) {
        for option in options {
            match option {
                LcpOption::MaximumReceiveUnit(v) => {
                    // A smaller MRU is always safe for us; a larger one
                    // cannot be promised through the tunnel, so fall back to
                    // not asking (the RFC 1661 default then applies).
                    self.want_mru = if (64..=self.config.mru).contains(v) { Some(*v) } else { None };
                }
                LcpOption::AuthenticationProtocol(p) => {
                    let Some(current) = self.want_auth else {
                        continue;
                    };
                    let list = &self.config.require_auth;
                    let suggested = AuthMethod::from_protocol(p)
                        .and_then(|m| list.iter().position(|x| *x == m))
                        .filter(|i| *i != current);
                    match suggested {
                        Some(i) => self.want_auth = Some(i),
                        None if current + 1 < list.len() => self.want_auth = Some(current + 1),
                        None => self.auth_refused = true,
                    }
                }
                LcpOption::MagicNumber(v) if self.want_magic.is_some() => {
                    // RFC 1661 §6.4: a Nak carrying the value we last
                    // suggested ourselves makes a loop more likely.
                    if Some(*v) == self.last_nak_magic {
                        self.loop_suspicions += 1;
                        if self.loop_suspicions >= self.config.loopback_threshold {
                            self.looped = true;
                        }
                    }
                    let old = self.want_magic.unwrap_or(0);
                    self.want_magic = Some(random_magic(rng, &[old, *v]));
                }
                LcpOption::ProtocolFieldCompression => self.want_pfc = false,
                LcpOption::AddressControlFieldCompression => self.want_acfc = false,
                _ => {}
            }
        }
    }

    fn rejected(&mut self, options: &[LcpOption]) {
        for option in options {
            match option {
                LcpOption::MaximumReceiveUnit(_) => self.want_mru = None,
                LcpOption::AuthenticationProtocol(_) if self.want_auth.is_some() => {
                    self.auth_refused = true;
                }
                LcpOption::MagicNumber(_) => self.want_magic = None,
                LcpOption::ProtocolFieldCompression => self.want_pfc = false,
                LcpOption::AddressControlFieldCompression => self.want_acfc = false,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::test_rng as rng;

    // From l2tpns-lns_ppp-chap-ipcp.pcap frame 9: MRU 1462, CHAP-MD5, magic,
    // MRRU, endpoint discriminator (class 2, 192.0.2.1).
    const L2TPNS_REQUEST: [u8; 30] = [
        0x01, 0x01, 0x00, 0x1e, 0x01, 0x04, 0x05, 0xb6, 0x03, 0x05, 0xc2, 0x23, 0x05, 0x05, 0x06, 0x6b, 0x02,
        0x7b, 0x5b, 0x11, 0x04, 0x06, 0x4e, 0x13, 0x07, 0x02, 0xc0, 0x00, 0x02, 0x01,
    ];

    #[test]
    fn parse_known_configure_request() {
        let packet = Packet::new_checked(&L2TPNS_REQUEST[..]).expect("packet");
        assert_eq!(packet.code(), code::CONFIGURE_REQUEST);
        assert_eq!(packet.identifier(), 1);
        assert_eq!(packet.length(), 30);
        let repr = LcpRepr::parse(&packet).expect("repr");
        assert_eq!(
            repr,
            Repr::ConfigureRequest {
                identifier: 1,
                options: vec![
                    LcpOption::MaximumReceiveUnit(1462),
                    LcpOption::AuthenticationProtocol(AuthProtocol::Chap { algorithm: chap_algorithm::MD5 }),
                    LcpOption::MagicNumber(0x6b02_7b5b),
                    LcpOption::Unknown { kind: option_type::MRRU, data: vec![0x06, 0x4e] },
                    LcpOption::Unknown {
                        kind: option_type::ENDPOINT_DISCRIMINATOR,
                        data: vec![0x02, 0xc0, 0x00, 0x02, 0x01]
                    },
                ]
            }
        );
        assert_eq!(repr.buffer_len(), L2TPNS_REQUEST.len());
        assert_eq!(repr.to_bytes().expect("emit"), L2TPNS_REQUEST.to_vec());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for n in 0..L2TPNS_REQUEST.len() {
            let buf = &L2TPNS_REQUEST[..n];
            assert!(Packet::new_checked(buf).is_err(), "len {n}");
        }
        // Truncating the Length field consistently leaves a broken option.
        for n in 5..L2TPNS_REQUEST.len() {
            let mut buf = L2TPNS_REQUEST[..n].to_vec();
            buf[3] = n as u8;
            let packet = Packet::new_checked(&buf[..]).expect("header ok");
            let options_end_on_boundary = [4, 8, 13, 19, 23].contains(&n);
            assert_eq!(LcpRepr::parse(&packet).is_ok(), options_end_on_boundary, "len {n}");
        }
    }

    #[test]
    fn bad_option_lengths() {
        // MRU with length 3, length 0, length past the end, magic of length 5.
        for body in [
            &[0x01, 0x03, 0x05][..],
            &[0x01, 0x00],
            &[0x01, 0x09, 0x00, 0x00],
            &[0x05, 0x05, 0, 0, 0],
            &[0x07, 0x03, 0x00],
            &[0x03, 0x03, 0xc0],
            &[0x02],
        ] {
            let mut buf = vec![0x01, 0x07, 0x00, (4 + body.len()) as u8];
            buf.extend_from_slice(body);
            let packet = Packet::new_checked(&buf[..]).expect("header");
            assert!(LcpRepr::parse(&packet).is_err(), "{body:02x?}");
        }
        // Length field smaller than the header.
        assert_eq!(Packet::new_checked(&[1, 1, 0, 3][..]).err(), Some(Error::BadLength));
    }

    #[test]
    fn padding_is_ignored() {
        let mut buf = vec![0x09, 0x00, 0x00, 0x08, 0x8a, 0xf0, 0x55, 0x47];
        buf.extend_from_slice(&[0; 20]);
        let packet = Packet::new_checked(&buf[..]).expect("packet");
        let repr = LcpRepr::parse(&packet).expect("repr");
        assert_eq!(repr, Repr::EchoRequest { identifier: 0, magic_number: 0x8af0_5547, data: vec![] });
        assert_eq!(repr.to_bytes().expect("emit"), buf[..8].to_vec());
    }

    #[test]
    fn round_trip_every_code() {
        let reprs: Vec<LcpRepr> = vec![
            Repr::ConfigureAck {
                identifier: 2,
                options: vec![
                    LcpOption::AsyncControlCharacterMap(0),
                    LcpOption::AuthenticationProtocol(AuthProtocol::Pap),
                    LcpOption::QualityProtocol { protocol: 0xc025, data: vec![0, 0, 0, 10] },
                    LcpOption::ProtocolFieldCompression,
                    LcpOption::AddressControlFieldCompression,
                    LcpOption::AuthenticationProtocol(AuthProtocol::Other { protocol: 0xc227, data: vec![] }),
                ],
            },
            Repr::ConfigureNak { identifier: 3, options: vec![LcpOption::MaximumReceiveUnit(1400)] },
            Repr::ConfigureReject { identifier: 4, options: vec![] },
            Repr::TerminateRequest { identifier: 5, data: b"bye".to_vec() },
            Repr::TerminateAck { identifier: 5, data: vec![] },
            Repr::CodeReject { identifier: 6, rejected_packet: vec![0x42, 0, 0, 4] },
            Repr::ProtocolReject {
                identifier: 7,
                rejected_protocol: 0x80fd,
                rejected_information: vec![1, 1, 0, 4],
            },
            Repr::EchoReply { identifier: 8, magic_number: 1, data: vec![9, 9] },
            Repr::DiscardRequest { identifier: 9, magic_number: 2, data: vec![] },
            Repr::Identification { identifier: 10, magic_number: 3, message: b"MSRASV5.20".to_vec() },
            Repr::TimeRemaining { identifier: 11, magic_number: 4, seconds: 3600, message: vec![] },
            Repr::Unknown { code: 42, identifier: 12, data: vec![1, 2, 3] },
        ];
        for repr in reprs {
            let bytes = repr.to_bytes().expect("emit");
            let packet = Packet::new_checked(&bytes[..]).expect("packet");
            assert_eq!(LcpRepr::parse(&packet).expect("parse"), repr);
            // Every truncation of the emitted packet is refused or re-parsed
            // without panicking.
            for n in 0..bytes.len() {
                if let Ok(p) = Packet::new_checked(&bytes[..n]) {
                    let _ = LcpRepr::parse(&p);
                }
            }
            // A too-small output buffer is an error, not a panic.
            let mut small = vec![0u8; bytes.len() - 1];
            assert_eq!(repr.emit(&mut small), Err(Error::BufferTooSmall));
        }
    }

    #[test]
    fn ncp_parse_keeps_lcp_only_codes_unknown() {
        let bytes = [0x09, 0x01, 0x00, 0x08, 0, 0, 0, 0];
        let packet = Packet::new_checked(&bytes[..]).expect("packet");
        let repr = Repr::<RawOption>::parse_ncp(&packet).expect("repr");
        assert_eq!(repr, Repr::Unknown { code: 9, identifier: 1, data: vec![0, 0, 0, 0] });
    }

    #[test]
    fn echo_without_magic_is_an_error() {
        let bytes = [0x09, 0x01, 0x00, 0x06, 0, 0];
        let packet = Packet::new_checked(&bytes[..]).expect("packet");
        assert_eq!(LcpRepr::parse(&packet), Err(Error::Truncated));
    }

    #[test]
    fn mru_from_access_mtu() {
        assert_eq!(LcpConfig::mru_for_access_mtu(1500), 1460);
        assert_eq!(LcpConfig::default().mru, 1460);
        assert_eq!(LcpConfig::mru_for_access_mtu(10), 64);
    }

    fn server_policy() -> LcpPolicy {
        LcpPolicy::new(
            LcpConfig {
                require_auth: vec![AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap],
                ..LcpConfig::default()
            },
            &mut rng(),
        )
    }

    #[test]
    fn policy_judges_peer_options() {
        let mut p = server_policy();
        // Acceptable request.
        let ok = [
            LcpOption::MaximumReceiveUnit(1500),
            LcpOption::AsyncControlCharacterMap(0),
            LcpOption::MagicNumber(7),
            LcpOption::ProtocolFieldCompression,
            LcpOption::AddressControlFieldCompression,
        ];
        assert_eq!(p.judge(&ok, &mut rng()), Verdict::Ack);
        // Tiny MRU Nak'ed up.
        assert_eq!(
            p.judge(&[LcpOption::MaximumReceiveUnit(20)], &mut rng()),
            Verdict::Nak(vec![LcpOption::MaximumReceiveUnit(128)])
        );
        // Unknown options and auth asked of the server are rejected verbatim.
        let mrru = LcpOption::Unknown { kind: option_type::MRRU, data: vec![5, 0xd4] };
        let auth = LcpOption::AuthenticationProtocol(AuthProtocol::Pap);
        assert_eq!(
            p.judge(&[LcpOption::MaximumReceiveUnit(20), mrru.clone(), auth.clone()], &mut rng()),
            Verdict::Reject(vec![mrru, auth])
        );
        // Our own magic: Nak with another value.
        let ours = p.magic_number();
        match p.judge(&[LcpOption::MagicNumber(ours)], &mut rng()) {
            Verdict::Nak(v) => match v.as_slice() {
                [LcpOption::MagicNumber(m)] => assert_ne!(*m, ours),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policy_client_auth_acceptance() {
        let mut p = LcpPolicy::new(
            LcpConfig { accept_auth: vec![AuthMethod::ChapMd5, AuthMethod::Pap], ..LcpConfig::default() },
            &mut rng(),
        );
        let pap = LcpOption::AuthenticationProtocol(AuthProtocol::Pap);
        assert_eq!(p.judge(&[pap], &mut rng()), Verdict::Ack);
        let v2 = LcpOption::AuthenticationProtocol(AuthMethod::MsChapV2.to_protocol());
        assert_eq!(
            p.judge(&[v2], &mut rng()),
            Verdict::Nak(vec![LcpOption::AuthenticationProtocol(AuthMethod::ChapMd5.to_protocol())])
        );
    }

    #[test]
    fn policy_auth_nak_walks_the_list() {
        let mut p = server_policy();
        assert_eq!(p.requested_auth(), Some(AuthMethod::MsChapV2));
        // Peer suggests PAP, which we accept: jump to it.
        p.naked(&[LcpOption::AuthenticationProtocol(AuthProtocol::Pap)], &mut rng());
        assert_eq!(p.requested_auth(), Some(AuthMethod::Pap));
        assert!(!p.auth_refused());
        p.reset(&mut rng());
        // Peer suggests EAP, which we do not do: next in our list.
        let eap = LcpOption::AuthenticationProtocol(AuthProtocol::Other { protocol: 0xc227, data: vec![] });
        p.naked(std::slice::from_ref(&eap), &mut rng());
        assert_eq!(p.requested_auth(), Some(AuthMethod::ChapMd5));
        p.naked(std::slice::from_ref(&eap), &mut rng());
        assert_eq!(p.requested_auth(), Some(AuthMethod::Pap));
        p.naked(std::slice::from_ref(&eap), &mut rng());
        assert!(p.auth_refused());
        p.reset(&mut rng());
        p.rejected(&[eap]);
        assert!(p.auth_refused());
    }

    #[test]
    fn policy_mru_nak_and_reject() {
        let mut p = server_policy();
        p.naked(&[LcpOption::MaximumReceiveUnit(1400)], &mut rng());
        assert!(p.request().contains(&LcpOption::MaximumReceiveUnit(1400)));
        p.naked(&[LcpOption::MaximumReceiveUnit(1500)], &mut rng());
        assert!(!p.request().iter().any(|o| matches!(o, LcpOption::MaximumReceiveUnit(_))));
        p.reset(&mut rng());
        p.rejected(&[LcpOption::MagicNumber(1)]);
        assert!(!p.request().iter().any(|o| matches!(o, LcpOption::MagicNumber(_))));
        assert_eq!(p.magic_number(), 0);
    }

    #[test]
    fn proxy_adoption() {
        let mut p = server_policy();
        let sent = [
            LcpOption::MaximumReceiveUnit(1460),
            LcpOption::AuthenticationProtocol(AuthProtocol::Pap),
            LcpOption::MagicNumber(5),
        ];
        let received = [LcpOption::MagicNumber(6), LcpOption::MaximumReceiveUnit(1492)];
        assert!(p.adopt_proxy(&sent, &received, &mut rng()));
        assert_eq!(p.local.auth, Some(AuthProtocol::Pap));
        assert_eq!(p.peer.mru, 1492);
        // No authentication negotiated by the LAC: unacceptable.
        assert!(!p.adopt_proxy(&[LcpOption::MagicNumber(5)], &received, &mut rng()));
        // The LAC acknowledged something we would reject.
        let bad = [LcpOption::Unknown { kind: option_type::CALLBACK, data: vec![6] }];
        assert!(!p.adopt_proxy(&sent, &bad, &mut rng()));
    }
}
