//! Control messages (RFC 2661 §6): a header plus a list of AVPs whose first
//! is Message Type; an empty list is a ZLB acknowledgement (§5.8).
//!
//! Parsing is split in two on purpose. [`Message::parse`] only fails on
//! malformed framing: such datagrams are dropped without touching Ns/Nr.
//! [`Message::validate`] then applies §4.2 and §6 (unknown mandatory AVPs,
//! missing mandatory AVPs) *after* reliable delivery has accepted the
//! message, so the peer still gets its acknowledgement and the teardown
//! (StopCCN or CDN) travels on a consistent sequence space.

use super::avp::{self, attr, Accm, Avp, AvpValue, CallErrors, Codec, Q931Cause, ResultCode};
use super::header::{Kind, Packet, Repr, SessionId, TunnelId};
use super::Error;
use serde::{Deserialize, Serialize};

pub use super::message_type::{MessageType, Scope};

/// The per-message rules that need the AVP attribute numbers (so they live
/// here, above [`super::avp`], not in [`super::message_type`]).
impl MessageType {
    /// Mandatory AVPs per message (§6.1–§6.14), besides Message Type.
    pub fn required_avps(self) -> &'static [u16] {
        use attr::*;
        use MessageType::*;
        match self {
            Sccrq | Sccrp => &[PROTOCOL_VERSION, HOST_NAME, FRAMING_CAPABILITIES, ASSIGNED_TUNNEL_ID],
            StopCcn => &[ASSIGNED_TUNNEL_ID, RESULT_CODE],
            Icrq => &[ASSIGNED_SESSION_ID, CALL_SERIAL_NUMBER],
            Icrp | Ocrp => &[ASSIGNED_SESSION_ID],
            Iccn | Occn => &[TX_CONNECT_SPEED, FRAMING_TYPE],
            Ocrq => &[
                ASSIGNED_SESSION_ID,
                CALL_SERIAL_NUMBER,
                MINIMUM_BPS,
                MAXIMUM_BPS,
                BEARER_TYPE,
                FRAMING_TYPE,
                CALLED_NUMBER,
            ],
            Cdn => &[RESULT_CODE, ASSIGNED_SESSION_ID],
            Wen => &[CALL_ERRORS],
            Sli => &[ACCM],
            Scccn | Hello | Csun | Csurq | Other(_) => &[],
        }
    }
}

/// Why a well-framed message must not be acted upon (§4.1, §6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("unknown AVP vendor {vendor} type {attr} with M bit in {message_type:?}")]
    UnknownMandatoryAvp { message_type: MessageType, vendor: u16, attr: u16 },
    #[error("{message_type:?} lacks mandatory AVP {attr}")]
    MissingAvp { message_type: MessageType, attr: u16 },
    #[error("unknown message type {0} with M bit")]
    UnknownMessageType(u16),
}

impl ValidationError {
    /// What the error tears down.
    pub fn scope(&self) -> Scope {
        match self {
            ValidationError::UnknownMandatoryAvp { message_type, .. }
            | ValidationError::MissingAvp { message_type, .. } => message_type.scope(),
            ValidationError::UnknownMessageType(_) => Scope::Tunnel,
        }
    }

    /// The Result Code to put in the StopCCN or CDN (§4.4.2).
    pub fn result_code(&self) -> ResultCode {
        let general = match self.scope() {
            Scope::Tunnel => avp::stopccn::GENERAL_ERROR,
            Scope::Session => avp::cdn::GENERAL_ERROR,
        };
        match self {
            ValidationError::UnknownMandatoryAvp { .. } | ValidationError::UnknownMessageType(_) => {
                ResultCode::with_error(general, avp::error_code::UNKNOWN_MANDATORY_AVP, "")
            }
            ValidationError::MissingAvp { .. } => {
                ResultCode::with_error(general, avp::error_code::BAD_VALUE, "missing mandatory AVP")
            }
        }
    }
}

/// A control message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The recipient's tunnel id (0 in SCCRQ, §6.1).
    pub tunnel_id: TunnelId,
    /// The recipient's session id (0 for tunnel messages and ICRQ/OCRQ).
    pub session_id: SessionId,
    pub ns: u16,
    pub nr: u16,
    /// Empty for a ZLB acknowledgement.
    pub avps: Vec<Avp>,
}

impl Message {
    /// Build a message of `message_type` from its other AVPs.
    pub fn new(message_type: MessageType, avps: impl IntoIterator<Item = AvpValue>) -> Self {
        let mut v = vec![Avp::new(AvpValue::MessageType(message_type))];
        v.extend(avps.into_iter().map(Avp::new));
        Message { tunnel_id: TunnelId(0), session_id: SessionId(0), ns: 0, nr: 0, avps: v }
    }

    pub fn zlb(tunnel_id: TunnelId, ns: u16, nr: u16) -> Self {
        Message { tunnel_id, session_id: SessionId(0), ns, nr, avps: Vec::new() }
    }

    /// Parse a control message; hidden AVPs need the tunnel `secret`.
    pub fn parse(bytes: &[u8], secret: Option<&[u8]>) -> Result<Message, Error> {
        let packet = Packet::new_checked(bytes)?;
        let repr = Repr::parse(&packet)?;
        let seq = match (repr.kind, repr.sequence) {
            (Kind::Control, Some(s)) => s,
            _ => return Err(Error::ControlFlags),
        };
        let avps = Codec::new(secret).parse_all(packet.payload())?;
        match avps.first() {
            None => {}
            Some(Avp { value: AvpValue::MessageType(_), hidden: false, .. }) => {}
            Some(_) => return Err(Error::NoMessageType),
        }
        Ok(Message { tunnel_id: repr.tunnel_id, session_id: repr.session_id, ns: seq.ns, nr: seq.nr, avps })
    }

    /// Encode only the AVPs (what reliable delivery stores for resending).
    pub fn encode_body(avps: &[Avp], secret: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        Codec::new(secret).emit_all(avps, &mut out)?;
        Ok(out)
    }

    /// Encode the whole message.
    pub fn emit(&self, secret: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let body = Self::encode_body(&self.avps, secret)?;
        Repr::control(self.tunnel_id, self.session_id, self.ns, self.nr, body.len()).to_vec(&body)
    }

    pub fn is_zlb(&self) -> bool {
        self.avps.is_empty()
    }

    pub fn message_type(&self) -> Option<MessageType> {
        match self.avps.first() {
            Some(Avp { value: AvpValue::MessageType(t), .. }) => Some(*t),
            _ => None,
        }
    }

    /// Apply §4.1 (unknown M-bit AVPs) and the mandatory-AVP lists of §6.
    /// Ok(false) means "ignore this message" (unknown type without M bit).
    pub fn validate(&self) -> Result<bool, ValidationError> {
        let Some(first) = self.avps.first() else {
            return Ok(true);
        };
        let Some(mt) = self.message_type() else {
            return Ok(false);
        };
        if let MessageType::Other(t) = mt {
            // §3.2/§4.1: an unknown message type with M set tears the
            // tunnel down; without M it is ignored.
            return if first.mandatory { Err(ValidationError::UnknownMessageType(t)) } else { Ok(false) };
        }
        for a in &self.avps {
            if let AvpValue::Unknown(r) = &a.value {
                if a.mandatory {
                    return Err(ValidationError::UnknownMandatoryAvp {
                        message_type: mt,
                        vendor: r.vendor,
                        attr: r.attr,
                    });
                }
            }
        }
        for &req in mt.required_avps() {
            let present = self.avps.iter().any(|a| {
                a.value.kind() == (avp::VENDOR_IETF, req) && !matches!(a.value, AvpValue::Unknown(_))
            });
            if !present {
                return Err(ValidationError::MissingAvp { message_type: mt, attr: req });
            }
        }
        Ok(true)
    }

    pub fn find<T>(&self, f: impl Fn(&AvpValue) -> Option<T>) -> Option<T> {
        self.avps.iter().find_map(|a| f(&a.value))
    }

    pub fn assigned_tunnel_id(&self) -> Option<TunnelId> {
        self.find(|v| match v {
            AvpValue::AssignedTunnelId(t) => Some(*t),
            _ => None,
        })
    }
    pub fn assigned_session_id(&self) -> Option<SessionId> {
        self.find(|v| match v {
            AvpValue::AssignedSessionId(s) => Some(*s),
            _ => None,
        })
    }
    pub fn host_name(&self) -> Option<Vec<u8>> {
        self.find(|v| match v {
            AvpValue::HostName(h) => Some(h.clone()),
            _ => None,
        })
    }
    pub fn protocol_version(&self) -> Option<(u8, u8)> {
        self.find(|v| match v {
            AvpValue::ProtocolVersion { version, revision } => Some((*version, *revision)),
            _ => None,
        })
    }
    pub fn receive_window_size(&self) -> Option<u16> {
        self.find(|v| match v {
            AvpValue::ReceiveWindowSize(w) => Some(*w),
            _ => None,
        })
    }
    pub fn challenge(&self) -> Option<Vec<u8>> {
        self.find(|v| match v {
            AvpValue::Challenge(c) => Some(c.clone()),
            _ => None,
        })
    }
    pub fn challenge_response(&self) -> Option<[u8; 16]> {
        self.find(|v| match v {
            AvpValue::ChallengeResponse(r) => Some(*r),
            _ => None,
        })
    }
    pub fn tie_breaker(&self) -> Option<[u8; 8]> {
        self.find(|v| match v {
            AvpValue::TieBreaker(t) => Some(*t),
            _ => None,
        })
    }
    pub fn result_code(&self) -> Option<ResultCode> {
        self.find(|v| match v {
            AvpValue::ResultCode(r) => Some(r.clone()),
            _ => None,
        })
    }
    pub fn q931_cause(&self) -> Option<Q931Cause> {
        self.find(|v| match v {
            AvpValue::Q931CauseCode(q) => Some(q.clone()),
            _ => None,
        })
    }
    pub fn call_serial_number(&self) -> Option<u32> {
        self.find(|v| match v {
            AvpValue::CallSerialNumber(n) => Some(*n),
            _ => None,
        })
    }
    pub fn call_errors(&self) -> Option<CallErrors> {
        self.find(|v| match v {
            AvpValue::CallErrors(c) => Some(*c),
            _ => None,
        })
    }
    pub fn accm(&self) -> Option<Accm> {
        self.find(|v| match v {
            AvpValue::Accm(a) => Some(*a),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame 1 of xl2tpd-lac_l2tpns-lns_control.pcap (SCCRQ), L2TP part.
    pub(crate) const SCCRQ: &[u8] = &[
        0xc8, 0x02, 0x00, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
        0x80, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // Message Type SCCRQ
        0x80, 0x08, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00, // Protocol Version 1.0
        0x80, 0x0a, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, // Framing caps
        0x80, 0x0a, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, // Bearer caps
        0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x06, 0x90, // Firmware Revision
        0x80, 0x08, 0x00, 0x00, 0x00, 0x07, b'v', b'm', // Host Name
        0x00, 0x13, 0x00, 0x00, 0x00, 0x08, b'x', b'e', b'l', b'e', b'r', b'a', b'n', b'c', b'e', b'.', b'c',
        b'o', b'm', // Vendor Name
        0x80, 0x08, 0x00, 0x00, 0x00, 0x09, 0xa9, 0xdb, // Assigned Tunnel ID 43483
        0x80, 0x08, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x04, // Receive Window Size 4
    ];

    #[test]
    fn parse_known_sccrq() {
        let m = Message::parse(SCCRQ, None).expect("parse");
        assert_eq!(m.message_type(), Some(MessageType::Sccrq));
        assert_eq!(m.tunnel_id, TunnelId(0));
        assert_eq!(m.assigned_tunnel_id(), Some(TunnelId(43483)));
        assert_eq!(m.host_name().as_deref(), Some(&b"vm"[..]));
        assert_eq!(m.receive_window_size(), Some(4));
        assert_eq!(m.protocol_version(), Some((1, 0)));
        assert_eq!(m.validate(), Ok(true));
        assert_eq!(m.emit(None).expect("emit"), SCCRQ);
    }

    #[test]
    fn emit_known_repr() {
        // The capture's SCCCN (frame 3): tunnel 2, Ns 1, Nr 1.
        let mut m = Message::new(MessageType::Scccn, []);
        m.tunnel_id = TunnelId(2);
        m.ns = 1;
        m.nr = 1;
        let expect = [
            0xc8, 0x02, 0x00, 0x14, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x80, 0x08, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x03,
        ];
        assert_eq!(m.emit(None).expect("emit"), expect);
        // A ZLB is the bare 12-byte header.
        let z = Message::zlb(TunnelId(43483), 1, 2).emit(None).expect("emit");
        assert_eq!(z, [0xc8, 0x02, 0x00, 0x0c, 0xa9, 0xdb, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02]);
        assert!(Message::parse(&z, None).expect("parse").is_zlb());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for n in 0..SCCRQ.len() {
            assert!(Message::parse(&SCCRQ[..n], None).is_err(), "cut {n}");
            // Also with the Length field patched to the cut size, so the
            // AVP parser (not the header check) sees the short buffer.
            if n >= 4 {
                let mut v = SCCRQ[..n].to_vec();
                v[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                let r = Message::parse(&v, None);
                // Only cuts on an AVP boundary may still parse.
                if let Ok(m) = r {
                    let re = m.emit(None).expect("emit");
                    assert_eq!(re, v);
                }
            }
        }
    }

    #[test]
    fn first_avp_must_be_message_type() {
        let m = Message {
            tunnel_id: TunnelId(1),
            session_id: SessionId(0),
            ns: 0,
            nr: 0,
            avps: vec![Avp::new(AvpValue::ReceiveWindowSize(4))],
        };
        let b = m.emit(None).expect("emit");
        assert_eq!(Message::parse(&b, None), Err(Error::NoMessageType));
    }

    #[test]
    fn data_message_is_not_control() {
        let b = [0x40, 0x02, 0x00, 0x08, 0, 1, 0, 2];
        assert_eq!(Message::parse(&b, None), Err(Error::ControlFlags));
    }

    fn with_unknown(mt: MessageType, mandatory: bool) -> Message {
        let mut m = Message::new(
            mt,
            [
                AvpValue::AssignedSessionId(SessionId(5)),
                AvpValue::CallSerialNumber(1),
                AvpValue::ResultCode(ResultCode::new(1)),
                AvpValue::AssignedTunnelId(TunnelId(3)),
            ],
        );
        m.avps.push(Avp {
            mandatory,
            hidden: false,
            value: AvpValue::Unknown(avp::RawAvp { vendor: 0, attr: 250, reserved: 0, value: vec![1] }),
        });
        m
    }

    #[test]
    fn unknown_mandatory_avp_scope() {
        let e = with_unknown(MessageType::Icrq, true).validate().expect_err("M set");
        assert_eq!(e.scope(), Scope::Session);
        assert_eq!(e.result_code().error, Some(avp::error_code::UNKNOWN_MANDATORY_AVP));
        let e = with_unknown(MessageType::StopCcn, true).validate().expect_err("M set");
        assert_eq!(e.scope(), Scope::Tunnel);
        // Optional unknown AVPs are ignored.
        assert_eq!(with_unknown(MessageType::Icrq, false).validate(), Ok(true));
    }

    #[test]
    fn missing_mandatory_avps() {
        let all = [
            MessageType::Sccrq,
            MessageType::Sccrp,
            MessageType::StopCcn,
            MessageType::Icrq,
            MessageType::Icrp,
            MessageType::Iccn,
            MessageType::Ocrq,
            MessageType::Ocrp,
            MessageType::Occn,
            MessageType::Cdn,
            MessageType::Wen,
            MessageType::Sli,
        ];
        for mt in all {
            let e = Message::new(mt, []).validate().expect_err("missing");
            assert!(matches!(e, ValidationError::MissingAvp { .. }), "{mt:?}");
        }
        assert_eq!(Message::new(MessageType::Hello, []).validate(), Ok(true));
        assert_eq!(Message::new(MessageType::Scccn, []).validate(), Ok(true));
    }

    #[test]
    fn unknown_message_type() {
        let mut m = Message::new(MessageType::Other(99), []);
        assert_eq!(m.validate(), Err(ValidationError::UnknownMessageType(99)));
        m.avps[0].mandatory = false;
        assert_eq!(m.validate(), Ok(false));
    }

    #[test]
    fn message_type_numbers_round_trip() {
        for v in 0..40u16 {
            assert_eq!(u16::from(MessageType::from(v)), v);
        }
    }
}
