//! The Authenticate phase (RFC 1661 §3.5): the machine each end runs,
//! whichever the method negotiated by LCP, and the local password check.

use super::auth::{AuthConfig, AuthDecision, AuthMaterial, AuthMethod, AuthOutput, AuthRequest, Credentials};
use super::chap::{self, ChapAnswered, ChapAuthenticator, ChapPeer};
use super::error::Error;
use super::mschapv2::{self, ct_eq};
use super::pap::{PapAuthenticator, PapPeer};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Check `request` against a known cleartext password (the local verifier).
/// For MS-CHAP-V2 an accepting decision carries the authenticator response.
pub fn verify_password(request: &AuthRequest, password: &str) -> AuthDecision {
    let ok = match &request.material {
        AuthMaterial::Pap { password: given } => ct_eq(given, password.as_bytes()),
        AuthMaterial::ChapMd5 { identifier, challenge, response } => {
            ct_eq(&chap::md5_response(*identifier, password.as_bytes(), challenge), response)
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

/// The authenticator side, whichever the method.
#[derive(Debug, Serialize, Deserialize)]
pub enum Authenticator {
    Pap(Box<PapAuthenticator>),
    Chap(Box<ChapAuthenticator>),
    /// CHAP once answered and quiet: only what a retransmitted Response
    /// gets again (RFC 1994 §4.2); the rest of the exchange is let go,
    /// since an open link holds its authenticator until LCP goes down.
    ChapAnswered(ChapAnswered),
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
            AuthMethod::Pap => Authenticator::Pap(Box::new(PapAuthenticator::new(config, now))),
            AuthMethod::ChapMd5 | AuthMethod::MsChapV2 => {
                Authenticator::Chap(Box::new(ChapAuthenticator::new(method, name, config, now, rng)))
            }
        }
    }

    pub fn method(&self) -> AuthMethod {
        match self {
            Authenticator::Pap(_) => AuthMethod::Pap,
            Authenticator::Chap(c) => c.method(),
            Authenticator::ChapAnswered(c) => c.method(),
        }
    }

    pub fn input(&mut self, now: Instant, packet: &[u8]) -> Result<(), Error> {
        match self {
            Authenticator::Pap(a) => a.input(now, packet),
            Authenticator::Chap(a) => a.input(now, packet),
            Authenticator::ChapAnswered(a) => a.input(packet),
        }
    }

    pub fn decide(&mut self, decision: &AuthDecision) -> bool {
        match self {
            Authenticator::Pap(a) => a.decide(decision),
            Authenticator::Chap(a) => a.decide(decision),
            // Answered: nothing is pending.
            Authenticator::ChapAnswered(_) => false,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            Authenticator::Pap(a) => a.handle_timeout(now),
            Authenticator::Chap(a) => a.handle_timeout(now),
            Authenticator::ChapAnswered(_) => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Authenticator::Pap(a) => a.poll_timeout(),
            Authenticator::Chap(a) => a.poll_timeout(),
            Authenticator::ChapAnswered(_) => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<AuthOutput> {
        match self {
            Authenticator::Pap(a) => a.poll_output(),
            Authenticator::Chap(a) => a.poll_output(),
            Authenticator::ChapAnswered(a) => a.poll_output(),
        }
    }

    /// A CHAP authenticator that answered and has nothing left to say or
    /// wait for keeps only its answer ([`Authenticator::ChapAnswered`]).
    pub fn compact(&mut self) {
        if let Authenticator::Chap(c) = self {
            if let Some(answered) = c.answered() {
                *self = Authenticator::ChapAnswered(answered);
            }
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
        let check = |r: &AuthRequest| verify_password(r, "clientPass");
        // PAP.
        let pap = request(AuthMaterial::Pap { password: b"clientPass".to_vec() }, AuthMethod::Pap);
        assert!(check(&pap).accept);
        let bad = request(AuthMaterial::Pap { password: b"nope".to_vec() }, AuthMethod::Pap);
        assert!(!check(&bad).accept);
        // CHAP-MD5.
        let challenge = vec![7u8; 16];
        let response = chap::md5_response(3, b"clientPass", &challenge).to_vec();
        let chap = request(
            AuthMaterial::ChapMd5 { identifier: 3, challenge: challenge.clone(), response },
            AuthMethod::ChapMd5,
        );
        assert!(check(&chap).accept);
        let chap_bad_id = request(
            AuthMaterial::ChapMd5 {
                identifier: 4,
                challenge,
                response: chap::md5_response(3, b"clientPass", &[7u8; 16]).to_vec(),
            },
            AuthMethod::ChapMd5,
        );
        assert!(!check(&chap_bad_id).accept);
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
        let d = check(&ms);
        assert!(d.accept);
        assert_eq!(d.authenticator_response.as_deref(), Some("S=407A5589115FD0D6209F510FE9C04566932CDA56"));
    }
}
