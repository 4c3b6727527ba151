//! PAP (RFC 1334 §2): Authenticate-Request/Ack/Nak, the authenticator that
//! waits for a request and asks its owner to verify, and the peer that sends
//! its credentials until answered.

use super::auth::{
    AuthConfig, AuthDecision, AuthFailure, AuthMaterial, AuthMethod, AuthOutput, AuthRequest, Credentials,
};
use super::error::{put, Error};
use super::packet::{emit_header, Packet, HEADER_LEN};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// RFC 1334 §2.2 codes.
pub mod code {
    pub const AUTHENTICATE_REQUEST: u8 = 1;
    pub const AUTHENTICATE_ACK: u8 = 2;
    pub const AUTHENTICATE_NAK: u8 = 3;
}

/// An owned PAP packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PapRepr {
    AuthenticateRequest { identifier: u8, peer_id: Vec<u8>, password: Vec<u8> },
    AuthenticateAck { identifier: u8, message: Vec<u8> },
    AuthenticateNak { identifier: u8, message: Vec<u8> },
}

/// Read a one-octet length followed by that many octets.
fn counted(data: &[u8], at: usize) -> Result<(&[u8], usize), Error> {
    let len = usize::from(*data.get(at).ok_or(Error::Truncated)?);
    let field = data.get(at + 1..at + 1 + len).ok_or(Error::Truncated)?;
    Ok((field, at + 1 + len))
}

impl PapRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        let identifier = packet.identifier();
        let data = packet.data();
        match packet.code() {
            code::AUTHENTICATE_REQUEST => {
                let (peer_id, at) = counted(data, 0)?;
                let (password, _) = counted(data, at)?;
                Ok(PapRepr::AuthenticateRequest {
                    identifier,
                    peer_id: peer_id.to_vec(),
                    password: password.to_vec(),
                })
            }
            c @ (code::AUTHENTICATE_ACK | code::AUTHENTICATE_NAK) => {
                // RFC 1334 §2.2.2: Msg-Length then Message. Some peers omit
                // both; treat that as an empty message.
                let message = if data.is_empty() { Vec::new() } else { counted(data, 0)?.0.to_vec() };
                Ok(if c == code::AUTHENTICATE_ACK {
                    PapRepr::AuthenticateAck { identifier, message }
                } else {
                    PapRepr::AuthenticateNak { identifier, message }
                })
            }
            _ => Err(Error::Malformed("PAP code")),
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                PapRepr::AuthenticateRequest { peer_id, password, .. } => 2 + peer_id.len() + password.len(),
                PapRepr::AuthenticateAck { message, .. } | PapRepr::AuthenticateNak { message, .. } => {
                    1 + message.len()
                }
            }
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        let counted_len =
            |f: &[u8]| u8::try_from(f.len()).map_err(|_| Error::Malformed("PAP field over 255 octets"));
        match self {
            PapRepr::AuthenticateRequest { identifier, peer_id, password } => {
                let (a, b) = (counted_len(peer_id)?, counted_len(password)?);
                emit_header(buf, code::AUTHENTICATE_REQUEST, *identifier, len)?;
                put(buf, 4, &[a])?;
                put(buf, 5, peer_id)?;
                put(buf, 5 + peer_id.len(), &[b])?;
                put(buf, 6 + peer_id.len(), password)?;
            }
            PapRepr::AuthenticateAck { identifier, message }
            | PapRepr::AuthenticateNak { identifier, message } => {
                let c = if matches!(self, PapRepr::AuthenticateAck { .. }) {
                    code::AUTHENTICATE_ACK
                } else {
                    code::AUTHENTICATE_NAK
                };
                let m = counted_len(message)?;
                emit_header(buf, c, *identifier, len)?;
                put(buf, 4, &[m])?;
                put(buf, 5, message)?;
            }
        }
        Ok(len)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum ServerState {
    /// Waiting for an Authenticate-Request until the deadline.
    Waiting,
    /// Asked the owner to verify this request.
    Pending { identifier: u8, username: Vec<u8> },
    /// Answered; `reply` is resent to a retransmitted request.
    Done { success: bool, reply: PapRepr },
}

/// The PAP authenticator (the LNS side).
#[derive(Debug, Serialize, Deserialize)]
pub struct PapAuthenticator {
    state: ServerState,
    #[serde(with = "crate::snapshot::opt_instant")]
    deadline: Option<Instant>,
    outputs: crate::lazy_box::LazyQueue<AuthOutput>,
}

impl PapAuthenticator {
    /// RFC 1334 §2.1: the authenticator waits for the peer's request; give
    /// up after `config.wait_timeout`.
    pub fn new(config: AuthConfig, now: Instant) -> Self {
        PapAuthenticator {
            state: ServerState::Waiting,
            deadline: Some(now + config.wait_timeout),
            outputs: Default::default(),
        }
    }

    /// Accept the LAC's captured PAP exchange (RFC 2661 §4.4.5 proxy
    /// authentication) as if the peer had sent it now.
    pub fn proxy(&mut self, identifier: u8, peer_id: &[u8], password: &[u8]) {
        self.request(identifier, peer_id, password, true);
    }

    fn request(&mut self, identifier: u8, peer_id: &[u8], password: &[u8], proxied: bool) {
        self.deadline = None;
        self.state = ServerState::Pending { identifier, username: peer_id.to_vec() };
        self.outputs.push_back(AuthOutput::Request(AuthRequest {
            method: AuthMethod::Pap,
            username: peer_id.to_vec(),
            material: AuthMaterial::Pap { password: password.to_vec() },
            proxied,
        }));
    }

    pub fn input(&mut self, _now: Instant, packet: &[u8]) -> Result<(), Error> {
        let view = Packet::new_checked(packet)?;
        let PapRepr::AuthenticateRequest { identifier, peer_id, password } = PapRepr::parse(&view)? else {
            // Ack/Nak are meaningless to the authenticator.
            return Ok(());
        };
        match &self.state {
            ServerState::Waiting => self.request(identifier, &peer_id, &password, false),
            // A retransmission while the verifier works: nothing to add.
            ServerState::Pending { .. } => {}
            ServerState::Done { success, reply } => {
                // RFC 1334 §2.2.1: every request is answered; the peer
                // retransmits when our reply was lost. A rejected peer gets
                // the same Nak again.
                let _ = success;
                let reply = match reply.clone() {
                    PapRepr::AuthenticateAck { message, .. } => {
                        PapRepr::AuthenticateAck { identifier, message }
                    }
                    PapRepr::AuthenticateNak { message, .. } => {
                        PapRepr::AuthenticateNak { identifier, message }
                    }
                    other => other,
                };
                if let Ok(bytes) = reply.to_bytes() {
                    self.outputs.push_back(AuthOutput::Send(bytes));
                }
            }
        }
        Ok(())
    }

    /// Apply the owner's decision; false when no request was pending.
    pub fn decide(&mut self, decision: &AuthDecision) -> bool {
        let ServerState::Pending { identifier, username } = &self.state else {
            return false;
        };
        let (identifier, username) = (*identifier, username.clone());
        // Messages longer than a PAP field allows are cut (RFC 1334 §2.2.2).
        let message: Vec<u8> = decision.message.as_bytes().iter().take(255).copied().collect();
        let reply = if decision.accept {
            PapRepr::AuthenticateAck { identifier, message }
        } else {
            PapRepr::AuthenticateNak { identifier, message }
        };
        if let Ok(bytes) = reply.to_bytes() {
            self.outputs.push_back(AuthOutput::Send(bytes));
        }
        self.outputs.push_back(if decision.accept {
            AuthOutput::Success { username, authenticator_response: None }
        } else {
            AuthOutput::Failure(AuthFailure::Rejected { message: decision.message.clone() })
        });
        self.state = ServerState::Done { success: decision.accept, reply };
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) && self.state == ServerState::Waiting {
            self.deadline = None;
            self.outputs.push_back(AuthOutput::Failure(AuthFailure::Timeout));
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn poll_output(&mut self) -> Option<AuthOutput> {
        self.outputs.pop_front()
    }
}

/// The PAP peer (the subscriber side).
#[derive(Debug, Serialize, Deserialize)]
pub struct PapPeer {
    credentials: Credentials,
    config: AuthConfig,
    identifier: u8,
    transmissions: u32,
    #[serde(with = "crate::snapshot::opt_instant")]
    deadline: Option<Instant>,
    done: bool,
    outputs: crate::lazy_box::LazyQueue<AuthOutput>,
}

impl PapPeer {
    /// `rng` picks the first Identifier.
    pub fn new(credentials: Credentials, config: AuthConfig, now: Instant, rng: &mut impl Rng) -> Self {
        let mut peer = PapPeer {
            credentials,
            config,
            identifier: rng.gen(),
            transmissions: 0,
            deadline: None,
            done: false,
            outputs: Default::default(),
        };
        peer.send(now);
        peer
    }

    fn send(&mut self, now: Instant) {
        // RFC 1334 §2.2.1: a new Identifier for every transmission.
        self.identifier = self.identifier.wrapping_add(1);
        self.transmissions += 1;
        self.deadline = Some(now + self.config.restart_interval);
        let repr = PapRepr::AuthenticateRequest {
            identifier: self.identifier,
            peer_id: self.credentials.username.as_bytes().to_vec(),
            password: self.credentials.password.as_bytes().to_vec(),
        };
        match repr.to_bytes() {
            Ok(bytes) => self.outputs.push_back(AuthOutput::Send(bytes)),
            Err(_) => self.finish(AuthOutput::Failure(AuthFailure::Rejected {
                message: "credentials too long for PAP".into(),
            })),
        }
    }

    fn finish(&mut self, output: AuthOutput) {
        self.done = true;
        self.deadline = None;
        self.outputs.push_back(output);
    }

    pub fn input(&mut self, _now: Instant, packet: &[u8]) -> Result<(), Error> {
        let view = Packet::new_checked(packet)?;
        let repr = PapRepr::parse(&view)?;
        if self.done {
            return Ok(());
        }
        match repr {
            PapRepr::AuthenticateAck { identifier, .. } if identifier == self.identifier => {
                self.finish(AuthOutput::Success {
                    username: self.credentials.username.as_bytes().to_vec(),
                    authenticator_response: None,
                })
            }
            PapRepr::AuthenticateNak { identifier, message } if identifier == self.identifier => {
                self.finish(AuthOutput::Failure(AuthFailure::Rejected {
                    message: String::from_utf8_lossy(&message).into_owned(),
                }))
            }
            _ => {}
        }
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired = matches!(self.deadline, Some(d) if d <= now);
        if self.done || !expired {
            return;
        }
        if self.transmissions >= self.config.max_transmissions {
            self.finish(AuthOutput::Failure(AuthFailure::Timeout));
        } else {
            self.send(now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn poll_output(&mut self) -> Option<AuthOutput> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::test_rng as rng;
    use std::time::Duration;

    // l2tpns-lns_ppp-pap-ipcp.pcap frame 17 (PAP part).
    const REQUEST: [u8; 24] = [
        0x01, 0x01, 0x00, 0x18, 0x09, b'f', b'i', b'x', b'e', b'd', b'u', b's', b'e', b'r', 0x09, b'f', b'i',
        b'x', b'e', b'd', b'p', b'a', b's', b's',
    ];

    #[test]
    fn parse_emit_known_request() {
        let packet = Packet::new_checked(&REQUEST[..]).expect("packet");
        let repr = PapRepr::parse(&packet).expect("repr");
        assert_eq!(
            repr,
            PapRepr::AuthenticateRequest {
                identifier: 1,
                peer_id: b"fixeduser".to_vec(),
                password: b"fixedpass".to_vec()
            }
        );
        assert_eq!(repr.to_bytes().expect("emit"), REQUEST.to_vec());
    }

    #[test]
    fn truncations_are_errors() {
        for n in 0..REQUEST.len() {
            let mut buf = REQUEST[..n].to_vec();
            if n >= 4 {
                buf[3] = n as u8;
            }
            let parsed = Packet::new_checked(&buf[..]).and_then(|p| PapRepr::parse(&p));
            assert!(parsed.is_err(), "len {n}");
        }
        // Ack without Msg-Length, and with one.
        let ack = Packet::new_checked(&[2, 1, 0, 4][..]).expect("packet");
        assert_eq!(PapRepr::parse(&ack), Ok(PapRepr::AuthenticateAck { identifier: 1, message: vec![] }));
        let nak = [3, 1, 0, 7, 2, b'n', b'o'];
        let nak_repr = PapRepr::parse(&Packet::new_checked(&nak[..]).expect("p")).expect("r");
        assert_eq!(nak_repr.to_bytes().expect("emit"), nak.to_vec());
        // Msg-Length beyond the data.
        let bad = Packet::new_checked(&[3, 1, 0, 6, 9, b'x'][..]).expect("packet");
        assert!(PapRepr::parse(&bad).is_err());
        assert!(PapRepr::parse(&Packet::new_checked(&[4, 1, 0, 4][..]).expect("p")).is_err());
        // Over-long fields cannot be emitted.
        let long = PapRepr::AuthenticateRequest { identifier: 0, peer_id: vec![b'a'; 256], password: vec![] };
        assert!(long.to_bytes().is_err());
    }

    fn outputs<F: FnMut() -> Option<AuthOutput>>(f: F) -> Vec<AuthOutput> {
        std::iter::from_fn(f).collect()
    }

    #[test]
    fn authenticator_and_peer() {
        let now = Instant::now();
        let config = AuthConfig::default();
        let creds = Credentials { username: "fixeduser".into(), password: "fixedpass".into() };
        let mut server = PapAuthenticator::new(config, now);
        let mut client = PapPeer::new(creds, config, now, &mut rng());
        let out = outputs(|| client.poll_output());
        let [AuthOutput::Send(req)] = out.as_slice() else { panic!("{out:?}") };
        server.input(now, req).expect("input");
        let out = outputs(|| server.poll_output());
        let [AuthOutput::Request(r)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(r.username, b"fixeduser");
        assert_eq!(r.material, AuthMaterial::Pap { password: b"fixedpass".to_vec() });
        // Retransmission while pending is ignored.
        server.input(now, req).expect("input");
        assert!(server.poll_output().is_none());
        assert!(server.decide(&AuthDecision::accept()));
        assert!(!server.decide(&AuthDecision::accept()));
        let out = outputs(|| server.poll_output());
        let AuthOutput::Send(ack) = &out[0] else { panic!() };
        assert!(matches!(out[1], AuthOutput::Success { .. }));
        client.input(now, ack).expect("input");
        assert!(matches!(client.poll_output(), Some(AuthOutput::Success { .. })));
        assert_eq!(client.poll_timeout(), None);
        // A retransmitted request after success gets the Ack again.
        server.input(now, req).expect("input");
        assert!(matches!(server.poll_output(), Some(AuthOutput::Send(p)) if p[0] == 2));
    }

    #[test]
    fn rejection_and_timeouts() {
        let now = Instant::now();
        let config = AuthConfig::default();
        let creds = Credentials { username: "u".into(), password: "p".into() };
        let mut server = PapAuthenticator::new(config, now);
        let mut client = PapPeer::new(creds.clone(), config, now, &mut rng());
        let Some(AuthOutput::Send(req)) = client.poll_output() else { panic!() };
        server.input(now, &req).expect("input");
        server.poll_output();
        server.decide(&AuthDecision::reject("bad"));
        let Some(AuthOutput::Send(nak)) = server.poll_output() else { panic!() };
        assert_eq!(
            server.poll_output(),
            Some(AuthOutput::Failure(AuthFailure::Rejected { message: "bad".into() }))
        );
        client.input(now, &nak).expect("input");
        assert_eq!(
            client.poll_output(),
            Some(AuthOutput::Failure(AuthFailure::Rejected { message: "bad".into() }))
        );

        // Authenticator gives up when nothing arrives.
        let mut server = PapAuthenticator::new(config, now);
        server.handle_timeout(now + Duration::from_secs(29));
        assert!(server.poll_output().is_none());
        server.handle_timeout(now + Duration::from_secs(30));
        assert_eq!(server.poll_output(), Some(AuthOutput::Failure(AuthFailure::Timeout)));

        // Peer retransmits with new identifiers, then gives up.
        let mut client = PapPeer::new(creds, config, now, &mut rng());
        let mut ids = vec![];
        loop {
            while let Some(o) = client.poll_output() {
                match o {
                    AuthOutput::Send(p) => ids.push(p[1]),
                    AuthOutput::Failure(f) => {
                        assert_eq!(f, AuthFailure::Timeout);
                        assert_eq!(ids.len(), 10);
                        ids.dedup();
                        assert_eq!(ids.len(), 10);
                        return;
                    }
                    other => panic!("{other:?}"),
                }
            }
            let t = client.poll_timeout().expect("timer");
            client.handle_timeout(t);
            assert!(t < now + Duration::from_secs(60));
        }
    }
}
