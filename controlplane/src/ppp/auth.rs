//! Authentication plumbing shared by PAP, CHAP-MD5 and MS-CHAP-V2.
//!
//! The authenticator never decides by itself: it emits an [`AuthRequest`]
//! carrying everything a verifier needs (a local users file, RADIUS...), and
//! the owner answers later with an [`AuthDecision`]. [`LocalUsers`] and
//! [`verify_password`] are the local verifier.

use super::chap::{ChapAuthenticator, ChapPeer};
use super::frame::Protocol;
use super::lcp::{chap_algorithm, AuthProtocol};
use super::mschapv2::{self, ct_eq};
use super::pap::{PapAuthenticator, PapPeer};
use super::Error;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// Check `request` against a known cleartext password (the local verifier).
/// For MS-CHAP-V2 an accepting decision carries the authenticator response.
pub fn verify_password(request: &AuthRequest, password: &str) -> AuthDecision {
    let ok = match &request.material {
        AuthMaterial::Pap { password: given } => ct_eq(given, password.as_bytes()),
        AuthMaterial::ChapMd5 { identifier, challenge, response } => {
            ct_eq(&super::chap::md5_response(*identifier, password.as_bytes(), challenge), response)
        }
        AuthMaterial::MsChapV2 { authenticator_challenge, peer_challenge, nt_response, .. } => {
            let expected = mschapv2::generate_nt_response(
                authenticator_challenge,
                peer_challenge,
                &request.username,
                password,
            );
            if ct_eq(&expected, nt_response) {
                return AuthDecision {
                    accept: true,
                    message: String::new(),
                    authenticator_response: Some(mschapv2::generate_authenticator_response(
                        &mschapv2::nt_password_hash(password),
                        nt_response,
                        peer_challenge,
                        authenticator_challenge,
                        &request.username,
                    )),
                };
            }
            false
        }
    };
    if ok {
        AuthDecision::accept()
    } else {
        AuthDecision::reject("Authentication failed")
    }
}

/// A local users table (user name → cleartext password).
#[derive(Debug, Clone, Default)]
pub struct LocalUsers {
    users: HashMap<Vec<u8>, String>,
}

impl LocalUsers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, username: &str, password: &str) {
        self.users.insert(username.as_bytes().to_vec(), password.to_string());
    }

    /// Parse a users file: one "username password" pair per line, blank
    /// lines and lines starting with '#' ignored.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut users = LocalUsers::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next(), fields.next()) {
                (Some(user), Some(password), None) => users.insert(user, password),
                _ => return Err(Error::Malformed("users file line")),
            }
        }
        Ok(users)
    }

    pub fn check(&self, request: &AuthRequest) -> AuthDecision {
        match self.users.get(&request.username) {
            Some(password) => verify_password(request, password),
            None => AuthDecision::reject("Authentication failed"),
        }
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

/// The authenticator side, whichever the method.
#[derive(Debug, Serialize, Deserialize)]
pub enum Authenticator {
    Pap(PapAuthenticator),
    Chap(ChapAuthenticator),
}

impl Authenticator {
    /// Start authenticating the peer with `method`; `name` is our CHAP Name.
    pub fn start(
        method: AuthMethod,
        name: &[u8],
        config: AuthConfig,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Self {
        match method {
            AuthMethod::Pap => Authenticator::Pap(PapAuthenticator::new(config, now)),
            AuthMethod::ChapMd5 | AuthMethod::MsChapV2 => {
                Authenticator::Chap(ChapAuthenticator::new(method, name, config, now, rng))
            }
        }
    }

    pub fn method(&self) -> AuthMethod {
        match self {
            Authenticator::Pap(_) => AuthMethod::Pap,
            Authenticator::Chap(c) => c.method(),
        }
    }

    pub fn input(&mut self, now: Instant, packet: &[u8]) -> Result<(), Error> {
        match self {
            Authenticator::Pap(a) => a.input(now, packet),
            Authenticator::Chap(a) => a.input(now, packet),
        }
    }

    pub fn decide(&mut self, decision: &AuthDecision) -> bool {
        match self {
            Authenticator::Pap(a) => a.decide(decision),
            Authenticator::Chap(a) => a.decide(decision),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            Authenticator::Pap(a) => a.handle_timeout(now),
            Authenticator::Chap(a) => a.handle_timeout(now),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Authenticator::Pap(a) => a.poll_timeout(),
            Authenticator::Chap(a) => a.poll_timeout(),
        }
    }

    pub fn poll_output(&mut self) -> Option<AuthOutput> {
        match self {
            Authenticator::Pap(a) => a.poll_output(),
            Authenticator::Chap(a) => a.poll_output(),
        }
    }
}

/// The peer (authenticatee) side, whichever the method.
#[derive(Debug, Serialize, Deserialize)]
pub enum AuthPeer {
    Pap(PapPeer),
    Chap(ChapPeer),
}

impl AuthPeer {
    pub fn start(
        method: AuthMethod,
        credentials: Credentials,
        config: AuthConfig,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Self {
        match method {
            AuthMethod::Pap => AuthPeer::Pap(PapPeer::new(credentials, config, now, rng)),
            AuthMethod::ChapMd5 | AuthMethod::MsChapV2 => {
                AuthPeer::Chap(ChapPeer::new(method, credentials, config, now))
            }
        }
    }

    pub fn method(&self) -> AuthMethod {
        match self {
            AuthPeer::Pap(_) => AuthMethod::Pap,
            AuthPeer::Chap(c) => c.method(),
        }
    }

    pub fn input(&mut self, now: Instant, packet: &[u8], rng: &mut impl Rng) -> Result<(), Error> {
        match self {
            AuthPeer::Pap(p) => p.input(now, packet),
            AuthPeer::Chap(p) => p.input(now, packet, rng),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            AuthPeer::Pap(p) => p.handle_timeout(now),
            AuthPeer::Chap(p) => p.handle_timeout(now),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            AuthPeer::Pap(p) => p.poll_timeout(),
            AuthPeer::Chap(p) => p.poll_timeout(),
        }
    }

    pub fn poll_output(&mut self) -> Option<AuthOutput> {
        match self {
            AuthPeer::Pap(p) => p.poll_output(),
            AuthPeer::Chap(p) => p.poll_output(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(material: AuthMaterial, method: AuthMethod) -> AuthRequest {
        AuthRequest { method, username: b"User".to_vec(), material, proxied: false }
    }

    #[test]
    fn local_verifier_for_each_method() {
        let users = LocalUsers::parse("# comment\n\nUser clientPass\nother x\n").expect("parse");
        // PAP.
        let pap = request(AuthMaterial::Pap { password: b"clientPass".to_vec() }, AuthMethod::Pap);
        assert!(users.check(&pap).accept);
        let bad = request(AuthMaterial::Pap { password: b"nope".to_vec() }, AuthMethod::Pap);
        assert!(!users.check(&bad).accept);
        // CHAP-MD5.
        let challenge = vec![7u8; 16];
        let response = super::super::chap::md5_response(3, b"clientPass", &challenge).to_vec();
        let chap = request(
            AuthMaterial::ChapMd5 { identifier: 3, challenge: challenge.clone(), response },
            AuthMethod::ChapMd5,
        );
        assert!(users.check(&chap).accept);
        let chap_bad_id = request(
            AuthMaterial::ChapMd5 {
                identifier: 4,
                challenge,
                response: super::super::chap::md5_response(3, b"clientPass", &[7u8; 16]).to_vec(),
            },
            AuthMethod::ChapMd5,
        );
        assert!(!users.check(&chap_bad_id).accept);
        // MS-CHAP-V2 with the RFC 2759 vectors: accept and S= computed.
        let auth =
            [0x5B, 0x5D, 0x7C, 0x7D, 0x7B, 0x3F, 0x2F, 0x3E, 0x3C, 0x2C, 0x60, 0x21, 0x32, 0x26, 0x26, 0x28];
        let peer =
            [0x21, 0x40, 0x23, 0x24, 0x25, 0x5E, 0x26, 0x2A, 0x28, 0x29, 0x5F, 0x2B, 0x3A, 0x33, 0x7C, 0x7E];
        let nt = mschapv2::generate_nt_response(&auth, &peer, b"User", "clientPass");
        let ms = request(
            AuthMaterial::MsChapV2 {
                identifier: 1,
                authenticator_challenge: auth,
                peer_challenge: peer,
                nt_response: nt,
                flags: 0,
            },
            AuthMethod::MsChapV2,
        );
        let d = users.check(&ms);
        assert!(d.accept);
        assert_eq!(d.authenticator_response.as_deref(), Some("S=407A5589115FD0D6209F510FE9C04566932CDA56"));
        // Unknown user.
        let mut unknown = pap.clone();
        unknown.username = b"nobody".to_vec();
        assert!(!users.check(&unknown).accept);
        // Malformed users file.
        assert!(LocalUsers::parse("onlyname\n").is_err());
        assert!(LocalUsers::parse("a b c\n").is_err());
    }

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
