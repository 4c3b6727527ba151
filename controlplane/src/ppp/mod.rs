//! PPP (RFC 1661 and its NCPs and authentication protocols).
//!
//! Sans-IO: nothing here owns a socket or reads a clock. A [`session::Session`]
//! is fed PPP frames (as carried in L2TP data messages) and the current
//! [`std::time::Instant`], and is drained of frames to send, events and the
//! next deadline, in the manner of `quinn-proto`.
//!
//! Layout, one file per protocol, in layers: a module only imports from
//! the layers below it, so the module graph has no cycle.
//!
//! 1. [`error`]: the [`Error`] every codec reports and the bounds-checked
//!    byte access they share. Imports nothing of `ppp`.
//! 2. Codecs that know no other protocol:
//!    * [`frame`]: the PPP header (Address/Control, Protocol) and protocol
//!      numbers;
//!    * [`packet`]: the RFC 1661 §5 control packet (Code, Identifier,
//!      Length) and §6 option list, generic over the option type, used by
//!      LCP, every NCP, PAP and CHAP; the RFC 1661 §6.1 [`DEFAULT_MRU`];
//!    * [`mschapv2`]: the RFC 2759 computations;
//!    * [`nd`]: Router Solicitation/Advertisement over the link once IPv6CP
//!      is up, so the subscriber learns its prefix (SLAAC).
//! 3. [`fsm`] (the one RFC 1661 §4 option-negotiation automaton, over
//!    [`packet`]) and [`auth`] (what passes between the authentication
//!    machines, their owner and the verifier: methods, credentials,
//!    requests, decisions; over [`frame`]).
//! 4. Each protocol, over layers 1–3: [`lcp`] (options and policy; needs
//!    [`auth`] for the Authentication-Protocol option), [`ipcp`],
//!    [`ipv6cp`], [`ccp`] (NCP options and policies), [`pap`] and [`chap`]
//!    (codecs, authenticator and peer machines).
//! 5. [`authenticate`]: which authentication machine runs, whichever the
//!    method, and the local password check ([`verify_password`]).
//! 6. [`session`]: the PPP link (phases, keepalive, proxy LCP, both roles).
//!
//! This file only declares the modules and re-exports their public face.

pub mod auth;
pub mod authenticate;
pub mod ccp;
pub mod chap;
pub mod error;
pub mod frame;
pub mod fsm;
pub mod ipcp;
pub mod ipv6cp;
pub mod lcp;
pub mod link_rng;
pub mod mschapv2;
pub mod nd;
pub mod packet;
pub mod pap;
pub mod session;

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod loss_tests;

pub use auth::{AuthConfig, AuthDecision, AuthMaterial, AuthMethod, AuthRequest, Credentials};
pub use authenticate::verify_password;
pub use error::Error;
pub use frame::{FrameRepr, Protocol};
pub use fsm::FsmConfig;
pub use ipcp::IpcpConfig;
pub use ipv6cp::Ipv6cpConfig;
pub use lcp::{LcpConfig, LcpNegotiated};
pub use packet::DEFAULT_MRU;
/// The generator a [`Session`] draws from, and the trait that seeds it,
/// re-exported so that drivers seed sessions without naming the crates.
pub use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng;
pub use session::{
    Direction, DisconnectCause, DisconnectCode, EchoConfig, NetworkConfig, Phase, ProxyAuth, ProxyLcp, Role,
    Session, SessionConfig, SessionEvent,
};

/// A fixed-seed generator for unit tests: every test run draws the same
/// identifiers, magic numbers and challenges.
#[cfg(test)]
pub(crate) fn test_rng() -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(1661)
}
