//! What passes between the authentication machines (PAP, CHAP-MD5,
//! MS-CHAP-V2), their owner and the verifier, whichever the method.
//!
//! The authenticator never decides by itself: it emits an [`AuthRequest`]
//! carrying everything a verifier needs (a local users file, RADIUS...), and
//! the owner answers later with an [`AuthDecision`]. The machines that run
//! each method are in [`super::pap`] and [`super::chap`]; which one runs,
//! and the local password check, are in [`super::authenticate`].

use super::error::{be16, put, Error};
use super::frame::Protocol;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An authentication protocol this implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthMethod {
    /// RFC 1334.
    Pap,
    /// RFC 1994 with MD5.
    ChapMd5,
    /// RFC 2759.
    MsChapV2,
}

impl AuthMethod {
    /// The Authentication-Protocol option value that asks for this method.
    pub fn to_protocol(self) -> AuthProtocol {
        match self {
            AuthMethod::Pap => AuthProtocol::Pap,
            AuthMethod::ChapMd5 => AuthProtocol::Chap { algorithm: chap_algorithm::MD5 },
            AuthMethod::MsChapV2 => AuthProtocol::Chap { algorithm: chap_algorithm::MS_CHAP_V2 },
        }
    }

    pub fn from_protocol(protocol: &AuthProtocol) -> Option<Self> {
        match protocol {
            AuthProtocol::Pap => Some(AuthMethod::Pap),
            AuthProtocol::Chap { algorithm: chap_algorithm::MD5 } => Some(AuthMethod::ChapMd5),
            AuthProtocol::Chap { algorithm: chap_algorithm::MS_CHAP_V2 } => Some(AuthMethod::MsChapV2),
            _ => None,
        }
    }

    /// The PPP protocol number its packets use.
    pub fn ppp_protocol(self) -> Protocol {
        match self {
            AuthMethod::Pap => Protocol::PAP,
            AuthMethod::ChapMd5 | AuthMethod::MsChapV2 => Protocol::CHAP,
        }
    }
}

/// What the client side authenticates with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Everything a verifier needs, per method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMaterial {
    /// RFC 1334 §2.2.1: the cleartext password.
    Pap { password: Vec<u8> },
    /// RFC 1994 §4.1: Response = MD5(Identifier ‖ secret ‖ Challenge).
    ChapMd5 { identifier: u8, challenge: Vec<u8>, response: Vec<u8> },
    /// RFC 2759 §4: what RADIUS would carry in MS-CHAP-Challenge and
    /// MS-CHAP2-Response (RFC 2548 §2.3.2).
    MsChapV2 {
        identifier: u8,
        authenticator_challenge: [u8; 16],
        peer_challenge: [u8; 16],
        nt_response: [u8; 24],
        flags: u8,
    },
}

/// The authenticator asks its owner to check a peer's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub method: AuthMethod,
    /// Peer-ID (PAP) or Name (CHAP), as sent.
    pub username: Vec<u8>,
    pub material: AuthMaterial,
    /// The credentials came from L2TP proxy authentication AVPs
    /// (RFC 2661 §4.4.5) rather than from the peer over PPP.
    pub proxied: bool,
}

/// The owner's answer to an [`AuthRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthDecision {
    pub accept: bool,
    /// Text for the PAP Ack/Nak message or CHAP Success/Failure "M=".
    pub message: String,
    /// MS-CHAP-V2 only: the "S=..." authenticator response (RFC 2759 §5),
    /// e.g. from RADIUS MS-CHAP2-Success. Required to accept MS-CHAP-V2.
    pub authenticator_response: Option<String>,
}

impl AuthDecision {
    pub fn accept() -> Self {
        AuthDecision { accept: true, message: String::new(), authenticator_response: None }
    }

    pub fn reject(message: &str) -> Self {
        AuthDecision { accept: false, message: message.to_string(), authenticator_response: None }
    }
}

/// Why an authentication exchange ended badly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthFailure {
    /// No answer in time (RFC 3145 cause 13).
    Timeout,
    /// Credentials refused (cause 16), with the message sent or received.
    Rejected { message: String },
    /// MS-CHAP-V2: the authenticator's "S=" did not verify (RFC 2759 §5
    /// mutual authentication failed).
    BadAuthenticatorResponse,
}

/// Output of the authentication machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOutput {
    /// A packet of the method's protocol (no PPP header).
    Send(Vec<u8>),
    /// Authenticator: please verify.
    Request(AuthRequest),
    /// Done: authenticated (authenticator: the peer is; peer: we are).
    Success {
        username: Vec<u8>,
        authenticator_response: Option<String>,
    },
    Failure(AuthFailure),
}

/// Timers of the authentication machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// Retransmission interval of Challenges / Authenticate-Requests.
    pub restart_interval: Duration,
    /// Transmissions before giving up.
    pub max_transmissions: u32,
    /// How long the authenticator waits for a PAP Authenticate-Request, and
    /// the peer for a Challenge or result.
    pub wait_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            restart_interval: Duration::from_secs(3),
            max_transmissions: 10,
            wait_timeout: Duration::from_secs(30),
        }
    }
}

/// RFC 1661 §6.2: the Type of the Authentication-Protocol LCP option.
const AUTHENTICATION_PROTOCOL_OPTION: u8 = 3;

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
    /// Anything else (EAP, malformed PAP/CHAP data), kept raw (a boxed
    /// slice, which serializes as the Vec it was: 16 bytes where a Vec
    /// made every link's two negotiated LCP records 8 bytes larger).
    Other { protocol: u16, data: Box<[u8]> },
}

impl AuthProtocol {
    /// The option's Data (RFC 1661 §6.2: Authentication-Protocol, then
    /// protocol-specific data), as carried in the LCP option.
    pub(crate) fn parse(data: &[u8]) -> Result<Self, Error> {
        let protocol = be16(data, 0).ok_or(Error::BadOption { kind: AUTHENTICATION_PROTOCOL_OPTION })?;
        let rest = data.get(2..).unwrap_or(&[]);
        Ok(match (protocol, rest) {
            (0xc023, []) => AuthProtocol::Pap,
            (0xc223, [algorithm]) => AuthProtocol::Chap { algorithm: *algorithm },
            _ => AuthProtocol::Other { protocol, data: rest.into() },
        })
    }

    pub(crate) fn data_len(&self) -> usize {
        2 + match self {
            AuthProtocol::Pap => 0,
            AuthProtocol::Chap { .. } => 1,
            AuthProtocol::Other { data, .. } => data.len(),
        }
    }

    pub(crate) fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_protocol_mapping() {
        for m in [AuthMethod::Pap, AuthMethod::ChapMd5, AuthMethod::MsChapV2] {
            assert_eq!(AuthMethod::from_protocol(&m.to_protocol()), Some(m));
        }
        assert_eq!(
            AuthMethod::from_protocol(&AuthProtocol::Chap { algorithm: chap_algorithm::MS_CHAP }),
            None
        );
        assert_eq!(AuthMethod::MsChapV2.ppp_protocol(), Protocol::CHAP);
    }
}
