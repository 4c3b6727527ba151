//! Attribute-value pairs (RFC 2661 §4) and the RFC 5515 access-line AVPs.
//!
//! ```text
//! |M|H| rsvd  |      Length       |           Vendor ID           |
//! |         Attribute Type        |        Attribute Value...     |
//! ```
//!
//! Hidden AVPs (§4.3) are decoded while parsing a message, using the most
//! recent Random Vector AVP of that message and the tunnel secret.

use super::header::{SessionId, TunnelId};
use super::message_type::MessageType;
use super::Error;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// IETF AVPs (RFC 2661 and later RFCs that took IANA numbers).
pub const VENDOR_IETF: u16 = 0;
/// The Broadband Forum (ex ADSL Forum) enterprise number, which RFC 5515
/// uses for the access-line information AVPs.
pub const VENDOR_BBF: u16 = 3561;

const FLAG_M: u16 = 0x8000;
const FLAG_H: u16 = 0x4000;
const RESERVED_MASK: u16 = 0x3c00;
const LENGTH_MASK: u16 = 0x03ff;
/// M/H/rsvd/Length + Vendor ID + Attribute Type.
pub const AVP_HEADER_LEN: usize = 6;
const MAX_AVP_LEN: usize = LENGTH_MASK as usize;

/// IETF attribute types (RFC 2661 §4.4, RFC 5515 §4).
pub mod attr {
    pub const MESSAGE_TYPE: u16 = 0;
    pub const RESULT_CODE: u16 = 1;
    pub const PROTOCOL_VERSION: u16 = 2;
    pub const FRAMING_CAPABILITIES: u16 = 3;
    pub const BEARER_CAPABILITIES: u16 = 4;
    pub const TIE_BREAKER: u16 = 5;
    pub const FIRMWARE_REVISION: u16 = 6;
    pub const HOST_NAME: u16 = 7;
    pub const VENDOR_NAME: u16 = 8;
    pub const ASSIGNED_TUNNEL_ID: u16 = 9;
    pub const RECEIVE_WINDOW_SIZE: u16 = 10;
    pub const CHALLENGE: u16 = 11;
    pub const Q931_CAUSE_CODE: u16 = 12;
    pub const CHALLENGE_RESPONSE: u16 = 13;
    pub const ASSIGNED_SESSION_ID: u16 = 14;
    pub const CALL_SERIAL_NUMBER: u16 = 15;
    pub const MINIMUM_BPS: u16 = 16;
    pub const MAXIMUM_BPS: u16 = 17;
    pub const BEARER_TYPE: u16 = 18;
    pub const FRAMING_TYPE: u16 = 19;
    pub const CALLED_NUMBER: u16 = 21;
    pub const CALLING_NUMBER: u16 = 22;
    pub const SUB_ADDRESS: u16 = 23;
    pub const TX_CONNECT_SPEED: u16 = 24;
    pub const PHYSICAL_CHANNEL_ID: u16 = 25;
    pub const INITIAL_RECEIVED_LCP_CONFREQ: u16 = 26;
    pub const LAST_SENT_LCP_CONFREQ: u16 = 27;
    pub const LAST_RECEIVED_LCP_CONFREQ: u16 = 28;
    pub const PROXY_AUTHEN_TYPE: u16 = 29;
    pub const PROXY_AUTHEN_NAME: u16 = 30;
    pub const PROXY_AUTHEN_CHALLENGE: u16 = 31;
    pub const PROXY_AUTHEN_ID: u16 = 32;
    pub const PROXY_AUTHEN_RESPONSE: u16 = 33;
    pub const CALL_ERRORS: u16 = 34;
    pub const ACCM: u16 = 35;
    pub const RANDOM_VECTOR: u16 = 36;
    pub const PRIVATE_GROUP_ID: u16 = 37;
    pub const RX_CONNECT_SPEED: u16 = 38;
    pub const SEQUENCING_REQUIRED: u16 = 39;
    /// RFC 5515 §4.4 (IANA-assigned, vendor 0).
    pub const CONNECT_SPEED_UPDATE: u16 = 97;
    /// RFC 5515 §4.5 (IANA-assigned, vendor 0).
    pub const CONNECT_SPEED_UPDATE_ENABLE: u16 = 98;
}

/// Broadband Forum attribute types carried under [`VENDOR_BBF`] (RFC 5515
/// §4.1–4.3, numbered like the TR-101 RADIUS attributes).
pub mod bbf {
    pub const AGENT_CIRCUIT_ID: u16 = 1;
    pub const AGENT_REMOTE_ID: u16 = 2;
    pub const ACTUAL_DATA_RATE_UPSTREAM: u16 = 129;
    pub const ACTUAL_DATA_RATE_DOWNSTREAM: u16 = 130;
    pub const MINIMUM_DATA_RATE_UPSTREAM: u16 = 131;
    pub const MINIMUM_DATA_RATE_DOWNSTREAM: u16 = 132;
    pub const ATTAINABLE_DATA_RATE_UPSTREAM: u16 = 133;
    pub const ATTAINABLE_DATA_RATE_DOWNSTREAM: u16 = 134;
    pub const MAXIMUM_DATA_RATE_UPSTREAM: u16 = 135;
    pub const MAXIMUM_DATA_RATE_DOWNSTREAM: u16 = 136;
    pub const MINIMUM_DATA_RATE_UPSTREAM_LOW_POWER: u16 = 137;
    pub const MINIMUM_DATA_RATE_DOWNSTREAM_LOW_POWER: u16 = 138;
    pub const MAXIMUM_INTERLEAVING_DELAY_UPSTREAM: u16 = 139;
    pub const ACTUAL_INTERLEAVING_DELAY_UPSTREAM: u16 = 140;
    pub const MAXIMUM_INTERLEAVING_DELAY_DOWNSTREAM: u16 = 141;
    pub const ACTUAL_INTERLEAVING_DELAY_DOWNSTREAM: u16 = 142;
    pub const ACCESS_LOOP_ENCAPSULATION: u16 = 144;
    pub const ANCP_ACCESS_LINE_TYPE: u16 = 145;
}

/// Result Code AVP (§4.4.2): result, optional error code, optional text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultCode {
    pub result: u16,
    pub error: Option<u16>,
    pub message: Option<Vec<u8>>,
}

impl ResultCode {
    pub fn new(result: u16) -> Self {
        ResultCode { result, error: None, message: None }
    }
    pub fn with_error(result: u16, error: u16, message: &str) -> Self {
        ResultCode {
            result,
            error: Some(error),
            message: (!message.is_empty()).then(|| message.as_bytes().to_vec()),
        }
    }
}

/// StopCCN result codes (§4.4.2).
pub mod stopccn {
    pub const GENERAL_REQUEST: u16 = 1;
    pub const GENERAL_ERROR: u16 = 2;
    pub const ALREADY_EXISTS: u16 = 3;
    pub const NOT_AUTHORIZED: u16 = 4;
    pub const PROTOCOL_VERSION: u16 = 5;
    pub const SHUTTING_DOWN: u16 = 6;
    pub const FSM_ERROR: u16 = 7;
}

/// CDN result codes (§4.4.2).
pub mod cdn {
    pub const LOST_CARRIER: u16 = 1;
    pub const GENERAL_ERROR: u16 = 2;
    pub const ADMINISTRATIVE: u16 = 3;
    pub const NO_FACILITIES_TEMPORARY: u16 = 4;
    pub const NO_FACILITIES_PERMANENT: u16 = 5;
    pub const INVALID_DESTINATION: u16 = 6;
    pub const NO_CARRIER: u16 = 7;
    pub const BUSY: u16 = 8;
    pub const NO_DIAL_TONE: u16 = 9;
    pub const TIMEOUT: u16 = 10;
    pub const NO_FRAMING: u16 = 11;
}

/// General error codes (§4.4.2), used with result code "general error".
pub mod error_code {
    pub const NO_ERROR: u16 = 0;
    pub const NO_CONTROL_CONNECTION: u16 = 1;
    pub const BAD_LENGTH: u16 = 2;
    pub const BAD_VALUE: u16 = 3;
    pub const INSUFFICIENT_RESOURCES: u16 = 4;
    pub const INVALID_SESSION_ID: u16 = 5;
    pub const VENDOR_SPECIFIC: u16 = 6;
    pub const TRY_ANOTHER: u16 = 7;
    pub const UNKNOWN_MANDATORY_AVP: u16 = 8;
}

/// Q.931 Cause Code AVP (§4.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q931Cause {
    pub cause: u16,
    pub message: u8,
    pub advisory: Vec<u8>,
}

/// Call Errors AVP (§4.4.6), sent in WEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallErrors {
    pub crc_errors: u32,
    pub framing_errors: u32,
    pub hardware_overruns: u32,
    pub buffer_overruns: u32,
    pub timeout_errors: u32,
    pub alignment_errors: u32,
}

/// ACCM AVP (§4.4.6), sent in SLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accm {
    pub send: u32,
    pub receive: u32,
}

/// Connect Speed Update AVP (RFC 5515 §4.4), L2TPv2 form: reserved(2),
/// remote session id(2), current Tx and Rx speed in bit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectSpeedUpdate {
    pub remote_session_id: SessionId,
    pub tx_bps: u32,
    pub rx_bps: u32,
}

/// RFC 5515 access-line information (vendor [`VENDOR_BBF`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessLine {
    AgentCircuitId(Vec<u8>),
    AgentRemoteId(Vec<u8>),
    /// One of the data-rate AVPs (types 129–138), 64-bit bit/s.
    DataRate {
        attr: u16,
        bps: u64,
    },
}

/// RFC 3145 PPP Disconnect Cause Code AVP (vendor 0): why PPP ended, in a CDN.
pub const PPP_DISCONNECT_CAUSE: u16 = 46;

/// An AVP the module does not model, kept as it was on the wire (still
/// hidden if H is set) so it can be logged, re-emitted and judged by its M
/// bit (§4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawAvp {
    pub vendor: u16,
    pub attr: u16,
    /// The four reserved flag bits; non-zero makes the AVP unrecognised.
    pub reserved: u8,
    pub value: Vec<u8>,
}

/// The value of an AVP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AvpValue {
    MessageType(MessageType),
    ResultCode(ResultCode),
    ProtocolVersion {
        version: u8,
        revision: u8,
    },
    FramingCapabilities(u32),
    BearerCapabilities(u32),
    TieBreaker([u8; 8]),
    FirmwareRevision(u16),
    HostName(Vec<u8>),
    VendorName(Vec<u8>),
    AssignedTunnelId(TunnelId),
    ReceiveWindowSize(u16),
    Challenge(Vec<u8>),
    Q931CauseCode(Q931Cause),
    ChallengeResponse([u8; 16]),
    AssignedSessionId(SessionId),
    CallSerialNumber(u32),
    MinimumBps(u32),
    MaximumBps(u32),
    BearerType(u32),
    FramingType(u32),
    CalledNumber(Vec<u8>),
    CallingNumber(Vec<u8>),
    SubAddress(Vec<u8>),
    TxConnectSpeed(u32),
    PhysicalChannelId(u32),
    InitialReceivedLcpConfreq(Vec<u8>),
    LastSentLcpConfreq(Vec<u8>),
    LastReceivedLcpConfreq(Vec<u8>),
    ProxyAuthenType(u16),
    ProxyAuthenName(Vec<u8>),
    ProxyAuthenChallenge(Vec<u8>),
    /// Low byte of the 16-bit field; the high byte is reserved (§4.4.5).
    ProxyAuthenId(u8),
    ProxyAuthenResponse(Vec<u8>),
    CallErrors(CallErrors),
    Accm(Accm),
    RandomVector(Vec<u8>),
    PrivateGroupId(Vec<u8>),
    RxConnectSpeed(u32),
    SequencingRequired,
    ConnectSpeedUpdate(ConnectSpeedUpdate),
    ConnectSpeedUpdateEnable,
    AccessLine(AccessLine),
    Unknown(RawAvp),
}

/// Framing Capabilities / Framing Type bits (§4.4.3).
pub mod framing {
    pub const SYNC: u32 = 0x1;
    pub const ASYNC: u32 = 0x2;
}

/// Bearer Capabilities / Bearer Type bits (§4.4.3).
pub mod bearer {
    pub const DIGITAL: u32 = 0x1;
    pub const ANALOG: u32 = 0x2;
}

/// Proxy Authen Type values (§4.4.5).
pub mod proxy_authen {
    pub const TEXTUAL: u16 = 1;
    pub const CHAP: u16 = 2;
    pub const PAP: u16 = 3;
    pub const NONE: u16 = 4;
    pub const MSCHAPV1: u16 = 5;
}

/// One AVP: flags plus value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avp {
    pub mandatory: bool,
    pub hidden: bool,
    pub value: AvpValue,
}

impl Avp {
    /// An AVP with the M bit the RFC prescribes for it, not hidden.
    pub fn new(value: AvpValue) -> Self {
        Avp { mandatory: value.default_mandatory(), hidden: false, value }
    }
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }
}

impl From<AvpValue> for Avp {
    fn from(v: AvpValue) -> Self {
        Avp::new(v)
    }
}

fn u16_of(v: &[u8], attr: u16) -> Result<u16, Error> {
    match v {
        [a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(Error::AvpValueLength { attr, len: v.len() }),
    }
}

fn u32_of(v: &[u8], attr: u16) -> Result<u32, Error> {
    match v {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(Error::AvpValueLength { attr, len: v.len() }),
    }
}

fn be32_at(v: &[u8], at: usize) -> u32 {
    match v.get(at..at + 4) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn non_empty(v: &[u8], attr: u16) -> Result<Vec<u8>, Error> {
    if v.is_empty() {
        Err(Error::AvpValueLength { attr, len: 0 })
    } else {
        Ok(v.to_vec())
    }
}

impl AvpValue {
    /// (vendor, attribute type) on the wire.
    pub fn kind(&self) -> (u16, u16) {
        use attr::*;
        use AvpValue::*;
        let t = match self {
            MessageType(_) => MESSAGE_TYPE,
            ResultCode(_) => RESULT_CODE,
            ProtocolVersion { .. } => PROTOCOL_VERSION,
            FramingCapabilities(_) => FRAMING_CAPABILITIES,
            BearerCapabilities(_) => BEARER_CAPABILITIES,
            TieBreaker(_) => TIE_BREAKER,
            FirmwareRevision(_) => FIRMWARE_REVISION,
            HostName(_) => HOST_NAME,
            VendorName(_) => VENDOR_NAME,
            AssignedTunnelId(_) => ASSIGNED_TUNNEL_ID,
            ReceiveWindowSize(_) => RECEIVE_WINDOW_SIZE,
            Challenge(_) => CHALLENGE,
            Q931CauseCode(_) => Q931_CAUSE_CODE,
            ChallengeResponse(_) => CHALLENGE_RESPONSE,
            AssignedSessionId(_) => ASSIGNED_SESSION_ID,
            CallSerialNumber(_) => CALL_SERIAL_NUMBER,
            MinimumBps(_) => MINIMUM_BPS,
            MaximumBps(_) => MAXIMUM_BPS,
            BearerType(_) => BEARER_TYPE,
            FramingType(_) => FRAMING_TYPE,
            CalledNumber(_) => CALLED_NUMBER,
            CallingNumber(_) => CALLING_NUMBER,
            SubAddress(_) => SUB_ADDRESS,
            TxConnectSpeed(_) => TX_CONNECT_SPEED,
            PhysicalChannelId(_) => PHYSICAL_CHANNEL_ID,
            InitialReceivedLcpConfreq(_) => INITIAL_RECEIVED_LCP_CONFREQ,
            LastSentLcpConfreq(_) => LAST_SENT_LCP_CONFREQ,
            LastReceivedLcpConfreq(_) => LAST_RECEIVED_LCP_CONFREQ,
            ProxyAuthenType(_) => PROXY_AUTHEN_TYPE,
            ProxyAuthenName(_) => PROXY_AUTHEN_NAME,
            ProxyAuthenChallenge(_) => PROXY_AUTHEN_CHALLENGE,
            ProxyAuthenId(_) => PROXY_AUTHEN_ID,
            ProxyAuthenResponse(_) => PROXY_AUTHEN_RESPONSE,
            CallErrors(_) => CALL_ERRORS,
            Accm(_) => ACCM,
            RandomVector(_) => RANDOM_VECTOR,
            PrivateGroupId(_) => PRIVATE_GROUP_ID,
            RxConnectSpeed(_) => RX_CONNECT_SPEED,
            SequencingRequired => SEQUENCING_REQUIRED,
            ConnectSpeedUpdate(_) => CONNECT_SPEED_UPDATE,
            ConnectSpeedUpdateEnable => CONNECT_SPEED_UPDATE_ENABLE,
            AccessLine(a) => {
                let t = match a {
                    self::AccessLine::AgentCircuitId(_) => bbf::AGENT_CIRCUIT_ID,
                    self::AccessLine::AgentRemoteId(_) => bbf::AGENT_REMOTE_ID,
                    self::AccessLine::DataRate { attr, .. } => *attr,
                };
                return (VENDOR_BBF, t);
            }
            Unknown(r) => return (r.vendor, r.attr),
        };
        (VENDOR_IETF, t)
    }

    /// The M bit RFC 2661 §4.4 prescribes for each AVP when we send it.
    pub fn default_mandatory(&self) -> bool {
        use AvpValue::*;
        !matches!(
            self,
            TieBreaker(_)
                | FirmwareRevision(_)
                | VendorName(_)
                | PhysicalChannelId(_)
                | InitialReceivedLcpConfreq(_)
                | LastSentLcpConfreq(_)
                | LastReceivedLcpConfreq(_)
                | ProxyAuthenType(_)
                | ProxyAuthenName(_)
                | ProxyAuthenChallenge(_)
                | ProxyAuthenId(_)
                | ProxyAuthenResponse(_)
                | PrivateGroupId(_)
                | RxConnectSpeed(_)
                | ConnectSpeedUpdate(_)
                | ConnectSpeedUpdateEnable
                | AccessLine(_)
                // Attributes this core does not type (RFC 3145's PPP
                // Disconnect Cause, vendor extensions) go out optional: a
                // peer that does not know them must not drop the tunnel.
                | Unknown(_)
        )
    }

    /// Decode a value from its (plain, un-hidden) bytes.
    pub fn decode(vendor: u16, attr_type: u16, reserved: u8, v: &[u8]) -> Result<AvpValue, Error> {
        use attr::*;
        use AvpValue as A;
        let raw = || A::Unknown(RawAvp { vendor, attr: attr_type, reserved, value: v.to_vec() });
        // §4.1: an AVP with a reserved bit set MUST be treated as unrecognised.
        if reserved != 0 {
            return Ok(raw());
        }
        if vendor == VENDOR_BBF {
            return Ok(match attr_type {
                bbf::AGENT_CIRCUIT_ID => A::AccessLine(AccessLine::AgentCircuitId(non_empty(v, attr_type)?)),
                bbf::AGENT_REMOTE_ID => A::AccessLine(AccessLine::AgentRemoteId(non_empty(v, attr_type)?)),
                bbf::ACTUAL_DATA_RATE_UPSTREAM..=bbf::MINIMUM_DATA_RATE_DOWNSTREAM_LOW_POWER => match v {
                    [a, b, c, d, e, f, g, h] => A::AccessLine(AccessLine::DataRate {
                        attr: attr_type,
                        bps: u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]),
                    }),
                    // Some LACs send 32-bit rates as in the TR-101 RADIUS
                    // VSAs; keep those raw rather than reject the message.
                    _ => raw(),
                },
                _ => raw(),
            });
        }
        if vendor != VENDOR_IETF {
            return Ok(raw());
        }
        let a = attr_type;
        Ok(match a {
            MESSAGE_TYPE => A::MessageType(MessageType::from(u16_of(v, a)?)),
            RESULT_CODE => {
                let (result, error, message) = match v {
                    [r0, r1] => (u16::from_be_bytes([*r0, *r1]), None, None),
                    [r0, r1, e0, e1, rest @ ..] => (
                        u16::from_be_bytes([*r0, *r1]),
                        Some(u16::from_be_bytes([*e0, *e1])),
                        (!rest.is_empty()).then(|| rest.to_vec()),
                    ),
                    _ => return Err(Error::AvpValueLength { attr: a, len: v.len() }),
                };
                A::ResultCode(ResultCode { result, error, message })
            }
            PROTOCOL_VERSION => match v {
                [version, revision] => A::ProtocolVersion { version: *version, revision: *revision },
                _ => return Err(Error::AvpValueLength { attr: a, len: v.len() }),
            },
            FRAMING_CAPABILITIES => A::FramingCapabilities(u32_of(v, a)?),
            BEARER_CAPABILITIES => A::BearerCapabilities(u32_of(v, a)?),
            TIE_BREAKER => match <[u8; 8]>::try_from(v) {
                Ok(t) => A::TieBreaker(t),
                Err(_) => return Err(Error::AvpValueLength { attr: a, len: v.len() }),
            },
            FIRMWARE_REVISION => A::FirmwareRevision(u16_of(v, a)?),
            HOST_NAME => A::HostName(non_empty(v, a)?),
            VENDOR_NAME => A::VendorName(v.to_vec()),
            ASSIGNED_TUNNEL_ID => A::AssignedTunnelId(TunnelId(u16_of(v, a)?)),
            RECEIVE_WINDOW_SIZE => A::ReceiveWindowSize(u16_of(v, a)?),
            CHALLENGE => A::Challenge(non_empty(v, a)?),
            Q931_CAUSE_CODE => match v {
                [c0, c1, m, adv @ ..] => A::Q931CauseCode(Q931Cause {
                    cause: u16::from_be_bytes([*c0, *c1]),
                    message: *m,
                    advisory: adv.to_vec(),
                }),
                _ => return Err(Error::AvpValueLength { attr: a, len: v.len() }),
            },
            CHALLENGE_RESPONSE => match <[u8; 16]>::try_from(v) {
                Ok(r) => A::ChallengeResponse(r),
                Err(_) => return Err(Error::AvpValueLength { attr: a, len: v.len() }),
            },
            ASSIGNED_SESSION_ID => A::AssignedSessionId(SessionId(u16_of(v, a)?)),
            CALL_SERIAL_NUMBER => A::CallSerialNumber(u32_of(v, a)?),
            MINIMUM_BPS => A::MinimumBps(u32_of(v, a)?),
            MAXIMUM_BPS => A::MaximumBps(u32_of(v, a)?),
            BEARER_TYPE => A::BearerType(u32_of(v, a)?),
            FRAMING_TYPE => A::FramingType(u32_of(v, a)?),
            CALLED_NUMBER => A::CalledNumber(v.to_vec()),
            CALLING_NUMBER => A::CallingNumber(v.to_vec()),
            SUB_ADDRESS => A::SubAddress(v.to_vec()),
            TX_CONNECT_SPEED => A::TxConnectSpeed(u32_of(v, a)?),
            PHYSICAL_CHANNEL_ID => A::PhysicalChannelId(u32_of(v, a)?),
            INITIAL_RECEIVED_LCP_CONFREQ => A::InitialReceivedLcpConfreq(v.to_vec()),
            LAST_SENT_LCP_CONFREQ => A::LastSentLcpConfreq(v.to_vec()),
            LAST_RECEIVED_LCP_CONFREQ => A::LastReceivedLcpConfreq(v.to_vec()),
            PROXY_AUTHEN_TYPE => A::ProxyAuthenType(u16_of(v, a)?),
            PROXY_AUTHEN_NAME => A::ProxyAuthenName(v.to_vec()),
            PROXY_AUTHEN_CHALLENGE => A::ProxyAuthenChallenge(v.to_vec()),
            PROXY_AUTHEN_ID => match v {
                [0, id] => A::ProxyAuthenId(*id),
                // Non-zero reserved byte: keep verbatim.
                [_, _] => raw(),
                _ => return Err(Error::AvpValueLength { attr: a, len: v.len() }),
            },
            PROXY_AUTHEN_RESPONSE => A::ProxyAuthenResponse(v.to_vec()),
            CALL_ERRORS => {
                if v.len() != 26 {
                    return Err(Error::AvpValueLength { attr: a, len: v.len() });
                }
                A::CallErrors(CallErrors {
                    crc_errors: be32_at(v, 2),
                    framing_errors: be32_at(v, 6),
                    hardware_overruns: be32_at(v, 10),
                    buffer_overruns: be32_at(v, 14),
                    timeout_errors: be32_at(v, 18),
                    alignment_errors: be32_at(v, 22),
                })
            }
            ACCM => {
                if v.len() != 10 {
                    return Err(Error::AvpValueLength { attr: a, len: v.len() });
                }
                A::Accm(Accm { send: be32_at(v, 2), receive: be32_at(v, 6) })
            }
            RANDOM_VECTOR => A::RandomVector(non_empty(v, a)?),
            PRIVATE_GROUP_ID => A::PrivateGroupId(v.to_vec()),
            RX_CONNECT_SPEED => A::RxConnectSpeed(u32_of(v, a)?),
            SEQUENCING_REQUIRED => {
                if !v.is_empty() {
                    return Err(Error::AvpValueLength { attr: a, len: v.len() });
                }
                A::SequencingRequired
            }
            CONNECT_SPEED_UPDATE => {
                if v.len() != 12 {
                    // The 20-byte form is L2TPv3's; not ours to interpret.
                    return Ok(raw());
                }
                A::ConnectSpeedUpdate(ConnectSpeedUpdate {
                    remote_session_id: SessionId(be32_at(v, 0) as u16),
                    tx_bps: be32_at(v, 4),
                    rx_bps: be32_at(v, 8),
                })
            }
            CONNECT_SPEED_UPDATE_ENABLE => {
                if !v.is_empty() {
                    return Err(Error::AvpValueLength { attr: a, len: v.len() });
                }
                A::ConnectSpeedUpdateEnable
            }
            _ => raw(),
        })
    }

    /// The plain (un-hidden) value bytes.
    pub fn encode(&self) -> Vec<u8> {
        use AvpValue::*;
        fn w16(v: u16) -> Vec<u8> {
            v.to_be_bytes().to_vec()
        }
        fn w32(v: u32) -> Vec<u8> {
            v.to_be_bytes().to_vec()
        }
        match self {
            MessageType(t) => w16(u16::from(*t)),
            ResultCode(r) => {
                let mut o = w16(r.result);
                if let Some(e) = r.error {
                    o.extend_from_slice(&e.to_be_bytes());
                    if let Some(m) = &r.message {
                        o.extend_from_slice(m);
                    }
                }
                o
            }
            ProtocolVersion { version, revision } => vec![*version, *revision],
            FramingCapabilities(x)
            | BearerCapabilities(x)
            | CallSerialNumber(x)
            | MinimumBps(x)
            | MaximumBps(x)
            | BearerType(x)
            | FramingType(x)
            | TxConnectSpeed(x)
            | PhysicalChannelId(x)
            | RxConnectSpeed(x) => w32(*x),
            TieBreaker(t) => t.to_vec(),
            FirmwareRevision(x) | ReceiveWindowSize(x) | ProxyAuthenType(x) => w16(*x),
            AssignedTunnelId(t) => w16(t.0),
            AssignedSessionId(s) => w16(s.0),
            HostName(b)
            | VendorName(b)
            | Challenge(b)
            | CalledNumber(b)
            | CallingNumber(b)
            | SubAddress(b)
            | InitialReceivedLcpConfreq(b)
            | LastSentLcpConfreq(b)
            | LastReceivedLcpConfreq(b)
            | ProxyAuthenName(b)
            | ProxyAuthenChallenge(b)
            | ProxyAuthenResponse(b)
            | RandomVector(b)
            | PrivateGroupId(b) => b.clone(),
            Q931CauseCode(q) => {
                let mut o = w16(q.cause);
                o.push(q.message);
                o.extend_from_slice(&q.advisory);
                o
            }
            ChallengeResponse(r) => r.to_vec(),
            ProxyAuthenId(id) => vec![0, *id],
            CallErrors(c) => {
                let mut o = vec![0, 0];
                for x in [
                    c.crc_errors,
                    c.framing_errors,
                    c.hardware_overruns,
                    c.buffer_overruns,
                    c.timeout_errors,
                    c.alignment_errors,
                ] {
                    o.extend_from_slice(&x.to_be_bytes());
                }
                o
            }
            Accm(a) => {
                let mut o = vec![0, 0];
                o.extend_from_slice(&a.send.to_be_bytes());
                o.extend_from_slice(&a.receive.to_be_bytes());
                o
            }
            SequencingRequired | ConnectSpeedUpdateEnable => Vec::new(),
            ConnectSpeedUpdate(c) => {
                let mut o = vec![0, 0];
                o.extend_from_slice(&c.remote_session_id.0.to_be_bytes());
                o.extend_from_slice(&c.tx_bps.to_be_bytes());
                o.extend_from_slice(&c.rx_bps.to_be_bytes());
                o
            }
            AccessLine(a) => match a {
                self::AccessLine::AgentCircuitId(b) | self::AccessLine::AgentRemoteId(b) => b.clone(),
                self::AccessLine::DataRate { bps, .. } => bps.to_be_bytes().to_vec(),
            },
            Unknown(r) => r.value.clone(),
        }
    }
}

/// The MD5 keystream of §4.3: b1 = MD5(type + secret + RV), then
/// b(i) = MD5(secret + c(i-1)) over the previous *ciphertext* block.
fn hide_xor(attr_type: u16, secret: &[u8], rv: &[u8], data: &mut [u8], encrypt: bool) {
    let mut prev: Option<[u8; 16]> = None;
    for chunk in data.chunks_mut(16) {
        let mut h = Md5::new();
        match prev {
            None => {
                h.update(attr_type.to_be_bytes());
                h.update(secret);
                h.update(rv);
            }
            Some(c) => {
                h.update(secret);
                h.update(c);
            }
        }
        let b = h.finalize();
        let mut cipher = [0u8; 16];
        for (i, byte) in chunk.iter_mut().enumerate() {
            let k = b.get(i).copied().unwrap_or(0);
            if encrypt {
                *byte ^= k;
                if let Some(c) = cipher.get_mut(i) {
                    *c = *byte;
                }
            } else {
                if let Some(c) = cipher.get_mut(i) {
                    *c = *byte;
                }
                *byte ^= k;
            }
        }
        prev = Some(cipher);
    }
}

/// Hide `plain` (§4.3): 2-byte original length, value, padding, XORed.
pub fn hide(attr_type: u16, secret: &[u8], rv: &[u8], plain: &[u8], padding: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(2 + plain.len() + padding);
    buf.extend_from_slice(&(plain.len() as u16).to_be_bytes());
    buf.extend_from_slice(plain);
    buf.resize(2 + plain.len() + padding, 0);
    hide_xor(attr_type, secret, rv, &mut buf, true);
    buf
}

/// Reveal a hidden value (§4.3), checking the original-length field.
pub fn unhide(attr_type: u16, secret: &[u8], rv: &[u8], hidden: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buf = hidden.to_vec();
    hide_xor(attr_type, secret, rv, &mut buf, false);
    let (len, rest) = match buf.as_slice() {
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => return Err(Error::HiddenLength(attr_type)),
    };
    rest.get(..len).map(<[u8]>::to_vec).ok_or(Error::HiddenLength(attr_type))
}

/// Padding for hidden AVPs: round the sub-format up to a 16-byte block so
/// the length of short secrets (passwords, names) is not revealed.
fn hidden_padding(plain_len: usize) -> usize {
    let sub = 2 + plain_len;
    (16 - sub % 16) % 16
}

/// State carried across the AVPs of one message: the secret and the most
/// recent Random Vector (§4.3: it applies to all hidden AVPs after it).
#[derive(Debug, Clone, Default)]
pub struct Codec<'a> {
    pub secret: Option<&'a [u8]>,
    random_vector: Option<Vec<u8>>,
}

impl<'a> Codec<'a> {
    pub fn new(secret: Option<&'a [u8]>) -> Self {
        Codec { secret, random_vector: None }
    }

    /// Parse one AVP from the front of `buf`; returns it and its length.
    pub fn parse_one(&mut self, buf: &[u8]) -> Result<(Avp, usize), Error> {
        let (w0, vendor, attr_type) = match buf {
            [a, b, c, d, e, f, ..] => {
                (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]), u16::from_be_bytes([*e, *f]))
            }
            _ => return Err(Error::Truncated),
        };
        let len = w0 & LENGTH_MASK;
        let ulen = usize::from(len);
        if ulen < AVP_HEADER_LEN {
            return Err(Error::AvpLength(len));
        }
        let value = buf.get(AVP_HEADER_LEN..ulen).ok_or(Error::AvpLength(len))?;
        let mandatory = w0 & FLAG_M != 0;
        let hidden = w0 & FLAG_H != 0;
        let reserved = ((w0 & RESERVED_MASK) >> 10) as u8;
        let known = reserved == 0 && (vendor == VENDOR_IETF || vendor == VENDOR_BBF);
        let value = if hidden && known {
            let rv = self.random_vector.as_deref().ok_or(Error::HiddenWithoutRandomVector(attr_type))?;
            let secret = self.secret.ok_or(Error::HiddenWithoutSecret(attr_type))?;
            let plain = unhide(attr_type, secret, rv, value)?;
            match AvpValue::decode(vendor, attr_type, reserved, &plain)? {
                // Not a value we model: keep the ciphertext, so re-emitting
                // gives back what was received.
                AvpValue::Unknown(_) => {
                    AvpValue::Unknown(RawAvp { vendor, attr: attr_type, reserved, value: value.to_vec() })
                }
                v => v,
            }
        } else if hidden {
            // Unknown and hidden: keep the ciphertext as it came.
            AvpValue::Unknown(RawAvp { vendor, attr: attr_type, reserved, value: value.to_vec() })
        } else {
            AvpValue::decode(vendor, attr_type, reserved, value)?
        };
        if let AvpValue::RandomVector(rv) = &value {
            self.random_vector = Some(rv.clone());
        }
        Ok((Avp { mandatory, hidden, value }, ulen))
    }

    /// Parse a whole AVP list.
    pub fn parse_all(&mut self, mut buf: &[u8]) -> Result<Vec<Avp>, Error> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let (avp, n) = self.parse_one(buf)?;
            out.push(avp);
            buf = buf.get(n..).unwrap_or(&[]);
        }
        Ok(out)
    }

    /// Append one AVP to `out`, hiding it if asked.
    pub fn emit_one(&mut self, avp: &Avp, out: &mut Vec<u8>) -> Result<(), Error> {
        let (vendor, attr_type) = avp.value.kind();
        let plain = avp.value.encode();
        let reserved = match &avp.value {
            AvpValue::Unknown(r) => u16::from(r.reserved & 0x0f) << 10,
            _ => 0,
        };
        let value = if avp.hidden && !matches!(avp.value, AvpValue::Unknown(_)) {
            let rv = self.random_vector.as_deref().ok_or(Error::HiddenWithoutRandomVector(attr_type))?;
            let secret = self.secret.ok_or(Error::HiddenWithoutSecret(attr_type))?;
            hide(attr_type, secret, rv, &plain, hidden_padding(plain.len()))
        } else {
            plain
        };
        let total = AVP_HEADER_LEN + value.len();
        if total > MAX_AVP_LEN {
            return Err(Error::TooLong);
        }
        let mut w0 = total as u16 | reserved;
        if avp.mandatory {
            w0 |= FLAG_M;
        }
        if avp.hidden {
            w0 |= FLAG_H;
        }
        out.extend_from_slice(&w0.to_be_bytes());
        out.extend_from_slice(&vendor.to_be_bytes());
        out.extend_from_slice(&attr_type.to_be_bytes());
        out.extend_from_slice(&value);
        if let AvpValue::RandomVector(rv) = &avp.value {
            self.random_vector = Some(rv.clone());
        }
        Ok(())
    }

    pub fn emit_all(&mut self, avps: &[Avp], out: &mut Vec<u8>) -> Result<(), Error> {
        avps.iter().try_for_each(|a| self.emit_one(a, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_value() -> Vec<AvpValue> {
        use AvpValue::*;
        vec![
            MessageType(super::MessageType::Sccrq),
            ResultCode(super::ResultCode::new(1)),
            ResultCode(super::ResultCode { result: 2, error: Some(6), message: None }),
            ResultCode(super::ResultCode::with_error(2, 8, "unknown AVP")),
            ProtocolVersion { version: 1, revision: 0 },
            FramingCapabilities(3),
            BearerCapabilities(0),
            TieBreaker([1, 2, 3, 4, 5, 6, 7, 8]),
            FirmwareRevision(0x0690),
            HostName(b"lns".to_vec()),
            VendorName(b"example".to_vec()),
            AssignedTunnelId(TunnelId(43483)),
            ReceiveWindowSize(4),
            Challenge(vec![9; 16]),
            Q931CauseCode(Q931Cause { cause: 16, message: 0x5a, advisory: b"normal".to_vec() }),
            ChallengeResponse([7; 16]),
            AssignedSessionId(SessionId(63045)),
            CallSerialNumber(0xdead_beef),
            MinimumBps(9600),
            MaximumBps(1_000_000),
            BearerType(bearer::ANALOG),
            FramingType(framing::SYNC),
            CalledNumber(b"1234".to_vec()),
            CallingNumber(b"5678".to_vec()),
            SubAddress(b"sub".to_vec()),
            TxConnectSpeed(100_000_000),
            PhysicalChannelId(42),
            InitialReceivedLcpConfreq(vec![1, 4, 5, 0xdc]),
            LastSentLcpConfreq(vec![3, 6, 1, 2, 3, 4]),
            LastReceivedLcpConfreq(vec![1, 4, 5, 0xd4]),
            ProxyAuthenType(proxy_authen::CHAP),
            ProxyAuthenName(b"user@realm".to_vec()),
            ProxyAuthenChallenge(vec![1; 16]),
            ProxyAuthenId(7),
            ProxyAuthenResponse(vec![2; 16]),
            CallErrors(super::CallErrors {
                crc_errors: 1,
                framing_errors: 2,
                hardware_overruns: 3,
                buffer_overruns: 4,
                timeout_errors: 5,
                alignment_errors: 6,
            }),
            Accm(super::Accm { send: 0xffff_ffff, receive: 0 }),
            RandomVector(vec![0xaa; 16]),
            PrivateGroupId(b"group".to_vec()),
            RxConnectSpeed(20_000_000),
            SequencingRequired,
            ConnectSpeedUpdate(super::ConnectSpeedUpdate {
                remote_session_id: SessionId(5),
                tx_bps: 1000,
                rx_bps: 2000,
            }),
            ConnectSpeedUpdateEnable,
            AccessLine(super::AccessLine::AgentCircuitId(b"dslam1 atm 1/1/1:8.35".to_vec())),
            AccessLine(super::AccessLine::AgentRemoteId(b"cust-42".to_vec())),
            AccessLine(super::AccessLine::DataRate {
                attr: bbf::ACTUAL_DATA_RATE_DOWNSTREAM,
                bps: 24_000_000,
            }),
            Unknown(RawAvp { vendor: 9, attr: 1, reserved: 0, value: vec![1, 2, 3] }),
            Unknown(RawAvp { vendor: 0, attr: 200, reserved: 0, value: vec![] }),
        ]
    }

    #[test]
    fn every_avp_round_trips() {
        for v in every_value() {
            let avp = Avp::new(v.clone());
            let mut out = Vec::new();
            Codec::new(None).emit_one(&avp, &mut out).expect("emit");
            let (back, n) = Codec::new(None).parse_one(&out).expect("parse");
            assert_eq!(n, out.len());
            assert_eq!(back, avp, "{v:?}");
            // Every truncation of a valid AVP is an error, never a panic.
            for cut in 0..out.len() {
                let mut c = out[..cut].to_vec();
                assert!(Codec::new(None).parse_one(&c).is_err(), "{v:?} cut {cut}");
                // And with the length field claiming the cut size.
                if cut >= 2 {
                    let w0 = (u16::from_be_bytes([c[0], c[1]]) & !LENGTH_MASK) | cut as u16;
                    c[..2].copy_from_slice(&w0.to_be_bytes());
                    let _ = Codec::new(None).parse_one(&c);
                }
            }
        }
    }

    #[test]
    fn known_bytes() {
        // Receive Window Size 4 from the xl2tpd SCCRQ in the capture.
        let b = [0x80, 0x08, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x04];
        let (a, _) = Codec::new(None).parse_one(&b).expect("parse");
        assert_eq!(a, Avp::new(AvpValue::ReceiveWindowSize(4)));
        // Vendor Name "xelerance.com", M=0.
        let mut v = vec![0x00, 0x13, 0x00, 0x00, 0x00, 0x08];
        v.extend_from_slice(b"xelerance.com");
        let (a, _) = Codec::new(None).parse_one(&v).expect("parse");
        assert_eq!(a, Avp::new(AvpValue::VendorName(b"xelerance.com".to_vec())));
        let mut out = Vec::new();
        Codec::new(None).emit_one(&a, &mut out).expect("emit");
        assert_eq!(out, v);
    }

    #[test]
    fn bad_lengths_are_errors() {
        // Length below the 6-byte header.
        for l in 0..6u8 {
            let b = [0x80, l, 0, 0, 0, 9, 0, 1];
            assert_eq!(Codec::new(None).parse_one(&b).err(), Some(Error::AvpLength(l.into())));
        }
        // Length beyond the buffer.
        let b = [0x80, 0x09, 0, 0, 0, 9, 0, 1];
        assert_eq!(Codec::new(None).parse_one(&b).err(), Some(Error::AvpLength(9)));
        // Fixed-size values of the wrong size.
        for (attr, len) in
            [(9u16, 1usize), (9, 3), (2, 1), (5, 7), (13, 15), (34, 25), (35, 9), (39, 1), (1, 3), (12, 2)]
        {
            let mut b = vec![0x80, (6 + len) as u8, 0, 0];
            b.extend_from_slice(&attr.to_be_bytes());
            b.extend(vec![0u8; len]);
            assert!(
                matches!(Codec::new(None).parse_one(&b), Err(Error::AvpValueLength { .. })),
                "attr {attr} len {len}"
            );
        }
        // Empty Host Name is invalid (§4.4.3: at least one octet).
        let b = [0x80, 6, 0, 0, 0, 7];
        assert!(Codec::new(None).parse_one(&b).is_err());
    }

    #[test]
    fn reserved_bits_make_an_avp_unknown() {
        // §4.1: treated as unrecognised, even with a known type.
        let b = [0x84, 0x08, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x04];
        let (a, _) = Codec::new(None).parse_one(&b).expect("parse");
        assert!(a.mandatory);
        assert!(matches!(a.value, AvpValue::Unknown(RawAvp { reserved: 1, attr: 10, .. })));
        let mut out = Vec::new();
        Codec::new(None).emit_one(&a, &mut out).expect("emit");
        assert_eq!(out, b);
    }

    #[test]
    fn hidden_round_trip() {
        let secret = b"s3cret";
        let avps = vec![
            Avp::new(AvpValue::RandomVector(vec![0x11, 0x22, 0x33, 0x44])),
            Avp::new(AvpValue::ProxyAuthenName(b"a-rather-long-user-name@example.net".to_vec())).hidden(),
            Avp::new(AvpValue::AssignedSessionId(SessionId(77))).hidden(),
        ];
        let mut out = Vec::new();
        Codec::new(Some(secret)).emit_all(&avps, &mut out).expect("emit");
        // The plain name must not appear on the wire.
        assert!(!out.windows(6).any(|w| w == b"rather"));
        let back = Codec::new(Some(secret)).parse_all(&out).expect("parse");
        assert_eq!(back, avps);
        // Wrong secret: the length check catches it or the value differs.
        match Codec::new(Some(b"other")).parse_all(&out) {
            Ok(v) => assert_ne!(v, avps),
            Err(e) => assert!(matches!(e, Error::HiddenLength(_) | Error::AvpValueLength { .. })),
        }
        assert_eq!(
            Codec::new(None).parse_all(&out).err(),
            Some(Error::HiddenWithoutSecret(attr::PROXY_AUTHEN_NAME))
        );
        // Hidden without a preceding Random Vector cannot be emitted or parsed.
        let lone = [Avp::new(AvpValue::AssignedSessionId(SessionId(1))).hidden()];
        assert!(Codec::new(Some(secret)).emit_all(&lone, &mut Vec::new()).is_err());
    }

    #[test]
    fn hidden_known_vector() {
        // Computed independently (Python hashlib) for attribute type 14
        // (Assigned Session ID = 0x1234), secret "secret", RV 01 02 03 04,
        // sub-format 00 02 12 34 with no padding:
        // MD5(00 0e | "secret" | 01020304) = b1, output = sub ^ b1[..4].
        let hidden_bytes = hide(14, b"secret", &[1, 2, 3, 4], &[0x12, 0x34], 0);
        assert_eq!(hidden_bytes, KNOWN_HIDDEN);
        assert_eq!(unhide(14, b"secret", &[1, 2, 3, 4], &KNOWN_HIDDEN), Ok(vec![0x12, 0x34]));
        // A two-block value exercises the MD5 chaining over ciphertext.
        let long: Vec<u8> = (0u8..30).collect();
        let h = hide(30, b"secret", &[9; 16], &long, 0);
        assert_eq!(h, KNOWN_HIDDEN_LONG);
        assert_eq!(unhide(30, b"secret", &[9; 16], &h), Ok(long));
    }

    // From an independent Python (hashlib) computation of §4.3.
    const KNOWN_HIDDEN: [u8; 4] = [0xae, 0x89, 0x3d, 0x14];
    const KNOWN_HIDDEN_LONG: [u8; 32] = [
        0x73, 0x0d, 0xe0, 0x3d, 0xa4, 0x64, 0x0c, 0x65, 0xbd, 0x6d, 0x68, 0xda, 0x21, 0x9b, 0x8f, 0x08, 0xe7,
        0xdf, 0x7a, 0x3c, 0x33, 0xe3, 0x9e, 0xf9, 0xd9, 0x8e, 0x20, 0x12, 0x1a, 0xbc, 0xe5, 0xfd,
    ];
}
