//! Dynamic Authorization (RFC 5176): what a Disconnect-Request or
//! CoA-Request asks of the NAS, and the ACK/NAK it answers with. The
//! server that receives them (allow-list, replay window, reply cache)
//! is built on these and on [`crate::crypto::verify_request`].

use std::net::Ipv4Addr;

use crate::attribute::{error_cause, service_type, AttributeRepr, AttributeType as T};
use crate::error::{Error, Result};
use crate::packet::{Code, Repr};
use crate::rate::RateLimits;

/// Which session(s) a request names (RFC 5176 §3: the "session
/// identification attributes").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSelector {
    pub acct_session_id: Option<String>,
    pub user_name: Option<Vec<u8>>,
    pub framed_ip_address: Option<Ipv4Addr>,
    pub nas_port: Option<u32>,
    pub calling_station_id: Option<String>,
}

impl SessionSelector {
    pub fn is_empty(&self) -> bool {
        *self == SessionSelector::default()
    }
}

/// A parsed Disconnect-Request or CoA-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynAuthRequest {
    pub code: Code,
    pub selector: SessionSelector,
    /// NAS identification in the request (RFC 5176 §3: must match the
    /// NAS, else NAK 403).
    pub nas_ip_address: Option<Ipv4Addr>,
    pub nas_identifier: Option<String>,
    /// RFC 5176 §3 / RFC 2869 §5.3: replay protection window input.
    pub event_timestamp: Option<u32>,
    /// CoA: new limits for the session.
    pub session_timeout: Option<u32>,
    pub idle_timeout: Option<u32>,
    /// CoA: new rate limits (see [`crate::rate`]).
    pub rates: RateLimits,
    /// RFC 5176 §3.2: Service-Type Authorize-Only asks the NAS to
    /// re-authorize; echoed State.
    pub authorize_only: bool,
    pub state: Option<Vec<u8>>,
}

impl DynAuthRequest {
    /// Read a request; the error is the Error-Cause for the NAK.
    pub fn from_packet(p: &Repr) -> core::result::Result<DynAuthRequest, u32> {
        Self::from_packet_with(p, None)
    }

    /// [`DynAuthRequest::from_packet`], where the text attribute `rate`
    /// (if any) carries rate limits as `"down/up"` ([`crate::rate`]).
    pub fn from_packet_with(p: &Repr, rate: Option<T>) -> core::result::Result<DynAuthRequest, u32> {
        if !matches!(p.code, Code::DisconnectRequest | Code::CoaRequest) {
            return Err(error_cause::INVALID_REQUEST);
        }
        let bad = |_: Error| error_cause::INVALID_ATTRIBUTE_VALUE;
        let mut r = DynAuthRequest {
            code: p.code,
            selector: SessionSelector::default(),
            nas_ip_address: None,
            nas_identifier: None,
            event_timestamp: None,
            session_timeout: None,
            idle_timeout: None,
            rates: RateLimits::default(),
            authorize_only: false,
            state: None,
        };
        for a in &p.attributes {
            match a.typ() {
                T::ACCT_SESSION_ID => {
                    r.selector.acct_session_id = Some(a.as_text().map_err(bad)?.to_string())
                }
                T::USER_NAME => r.selector.user_name = Some(a.value().to_vec()),
                T::FRAMED_IP_ADDRESS => r.selector.framed_ip_address = Some(a.as_ipv4().map_err(bad)?),
                T::NAS_PORT => r.selector.nas_port = Some(a.as_integer().map_err(bad)?),
                T::CALLING_STATION_ID => {
                    r.selector.calling_station_id = Some(a.as_text().map_err(bad)?.to_string())
                }
                T::NAS_IP_ADDRESS => r.nas_ip_address = Some(a.as_ipv4().map_err(bad)?),
                T::NAS_IDENTIFIER => r.nas_identifier = Some(a.as_text().map_err(bad)?.to_string()),
                T::EVENT_TIMESTAMP => r.event_timestamp = Some(a.as_integer().map_err(bad)?),
                T::SESSION_TIMEOUT if p.code == Code::CoaRequest => {
                    r.session_timeout = Some(a.as_integer().map_err(bad)?)
                }
                T::IDLE_TIMEOUT if p.code == Code::CoaRequest => {
                    r.idle_timeout = Some(a.as_integer().map_err(bad)?)
                }
                T::SERVICE_TYPE => {
                    r.authorize_only = a.as_integer().map_err(bad)? == service_type::AUTHORIZE_ONLY
                }
                T::STATE => r.state = Some(a.value().to_vec()),
                t if Some(t) == rate && p.code == Code::CoaRequest => {}
                T::MESSAGE_AUTHENTICATOR
                | T::PROXY_STATE
                | T::VENDOR_SPECIFIC
                | T::CLASS
                | T::REPLY_MESSAGE => {}
                // RFC 5176 §3.5: attributes the NAS cannot act on.
                _ => return Err(error_cause::UNSUPPORTED_ATTRIBUTE),
            }
        }
        if r.selector.is_empty() {
            return Err(error_cause::MISSING_ATTRIBUTE);
        }
        if p.code == Code::CoaRequest {
            r.rates = RateLimits::from_packet(p, rate).map_err(|_| error_cause::INVALID_ATTRIBUTE_VALUE)?;
        }
        Ok(r)
    }
}

/// RFC 5176 §3: "When Event-Timestamp is present ... the NAS MUST check
/// that it is current within an acceptable time window" (300 s
/// suggested); `now` and `ts` are seconds since the epoch.
pub fn event_timestamp_fresh(now: u64, ts: u32, window: u64) -> bool {
    now.abs_diff(u64::from(ts)) <= window
}

/// The ACK or NAK answering `request` (whose Identifier it copies and
/// whose Proxy-State attributes it echoes, RFC 5176 §3.1), signed with a
/// Message-Authenticator and the Response Authenticator.
pub fn answer(request: &Repr, ack: bool, error_cause: Option<u32>, secret: &[u8]) -> Result<Vec<u8>> {
    let code = match (request.code, ack) {
        (Code::DisconnectRequest, true) => Code::DisconnectAck,
        (Code::DisconnectRequest, false) => Code::DisconnectNak,
        (Code::CoaRequest, true) => Code::CoaAck,
        (Code::CoaRequest, false) => Code::CoaNak,
        _ => return Err(Error::Invalid("not a Dynamic Authorization request")),
    };
    let mut r = Repr::new(code, request.identifier);
    r.ensure_message_authenticator();
    if let Some(c) = error_cause {
        r.push(AttributeRepr::integer(T::ERROR_CAUSE, c));
    }
    for ps in request.get_all(T::PROXY_STATE) {
        r.push(ps.clone());
    }
    r.encode(secret, Some(&request.authenticator))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto;

    #[test]
    fn disconnect_round_trip() {
        let mut req = Repr::new(Code::DisconnectRequest, 9);
        req.ensure_message_authenticator();
        req.push(AttributeRepr::string(T::ACCT_SESSION_ID, "S1").expect("a"));
        req.push(AttributeRepr::time(T::EVENT_TIMESTAMP, 1_700_000_000));
        req.push(AttributeRepr::string(T::PROXY_STATE, "ps").expect("a"));
        let bytes = req.encode(b"coa-secret", None).expect("encode");
        crypto::verify_request(&bytes, b"coa-secret", true).expect("verifies");
        let parsed = Repr::from_bytes(&bytes).expect("parse");
        let d = DynAuthRequest::from_packet(&parsed).expect("request");
        assert_eq!(d.selector.acct_session_id.as_deref(), Some("S1"));
        assert!(event_timestamp_fresh(1_700_000_100, d.event_timestamp.unwrap_or(0), 300));
        assert!(!event_timestamp_fresh(1_700_000_400, d.event_timestamp.unwrap_or(0), 300));
        let ack = answer(&parsed, true, None, b"coa-secret").expect("ack");
        crypto::verify_response(&ack, b"coa-secret", &parsed.authenticator, true).expect("ack verifies");
        let ack = Repr::from_bytes(&ack).expect("parse");
        assert_eq!((ack.code, ack.identifier), (Code::DisconnectAck, 9));
        assert_eq!(ack.get(T::PROXY_STATE).map(|a| a.value()), Some(&b"ps"[..]));
    }

    #[test]
    fn coa_and_naks() {
        let mut req = Repr::new(Code::CoaRequest, 1);
        req.push(AttributeRepr::string(T::USER_NAME, "bob").expect("a"));
        req.push(AttributeRepr::integer(T::SESSION_TIMEOUT, 60));
        req.push(AttributeRepr::integer(T::IDLE_TIMEOUT, 30));
        let d = DynAuthRequest::from_packet(&req).expect("coa");
        assert_eq!((d.session_timeout, d.idle_timeout), (Some(60), Some(30)));
        req.push(AttributeRepr::string(T::FILTER_ID, "x").expect("a"));
        assert_eq!(DynAuthRequest::from_packet(&req), Err(error_cause::UNSUPPORTED_ATTRIBUTE));
        let empty = Repr::new(Code::DisconnectRequest, 1);
        assert_eq!(DynAuthRequest::from_packet(&empty), Err(error_cause::MISSING_ATTRIBUTE));
        let nak = answer(&empty, false, Some(error_cause::MISSING_ATTRIBUTE), b"s").expect("nak");
        let nak = Repr::from_bytes(&nak).expect("parse");
        assert_eq!(nak.code, Code::DisconnectNak);
        assert_eq!(nak.get(T::ERROR_CAUSE).and_then(|a| a.as_integer().ok()), Some(402));
        assert!(answer(&Repr::new(Code::AccessRequest, 1), true, None, b"s").is_err());
    }
}
