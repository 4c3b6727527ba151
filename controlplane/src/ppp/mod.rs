//! PPP (RFC 1661 and its NCPs and authentication protocols).
//!
//! Sans-IO: nothing here owns a socket or reads a clock. A [`session::Session`]
//! is fed PPP frames (as carried in L2TP data messages) and the current
//! [`std::time::Instant`], and is drained of frames to send, events and the
//! next deadline, in the manner of `quinn-proto`.
//!
//! Layout, one file per protocol:
//! * [`frame`]: the PPP header (Address/Control, Protocol) and protocol numbers.
//! * [`lcp`]: the RFC 1661 §5 packet format shared by LCP and the NCPs, LCP
//!   options and the LCP option policy.
//! * [`ipcp`], [`ipv6cp`], [`ccp`]: NCP options and policies.
//! * [`nd`]: Router Solicitation/Advertisement over the link once IPv6CP
//!   is up, so the subscriber learns its prefix (SLAAC).
//! * [`fsm`]: the one RFC 1661 §4 option-negotiation automaton.
//! * [`pap`], [`chap`], [`mschapv2`], [`auth`]: authentication codecs,
//!   authenticator and peer machines, and the pluggable credential check.
//! * [`session`]: the PPP link (phases, keepalive, proxy LCP, both roles).

pub mod auth;
pub mod ccp;
pub mod chap;
pub mod frame;
pub mod fsm;
pub mod ipcp;
pub mod ipv6cp;
pub mod lcp;
pub mod mschapv2;
pub mod nd;
pub mod pap;
pub mod session;

#[cfg(test)]
mod capture_tests;

pub use auth::{
    verify_password, AuthConfig, AuthDecision, AuthMaterial, AuthMethod, AuthRequest, Credentials, LocalUsers,
};
pub use frame::{FrameRepr, Protocol};
pub use fsm::FsmConfig;
pub use ipcp::IpcpConfig;
pub use ipv6cp::Ipv6cpConfig;
pub use lcp::{LcpConfig, LcpNegotiated};
/// The generator a [`Session`] draws from, and the trait that seeds it,
/// re-exported so that drivers seed sessions without naming the crates.
pub use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng;
pub use session::{
    Direction, DisconnectCause, DisconnectCode, EchoConfig, NetworkConfig, Phase, ProxyAuth, ProxyLcp, Role,
    Session, SessionConfig, SessionEvent,
};

/// Why a PPP packet could not be parsed or emitted.
///
/// RFC 1661 §5: malformed packets are silently discarded by the receiver, so
/// these errors never tear a link down on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the fixed part of the packet.
    #[error("truncated packet")]
    Truncated,
    /// A Length field is smaller than the header or larger than the buffer.
    #[error("length field inconsistent with the buffer")]
    BadLength,
    /// A configuration option has a length that its type does not allow.
    #[error("malformed configuration option of type {kind}")]
    BadOption {
        /// The option's Type octet.
        kind: u8,
    },
    /// The Protocol field does not follow the RFC 1661 §2 numbering rules.
    #[error("malformed protocol field")]
    BadProtocol,
    /// A field is present but its contents are invalid.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The output buffer is too small for the representation.
    #[error("buffer too small to emit")]
    BufferTooSmall,
    /// An IPv6 frame on the control path that is not Neighbour Discovery
    /// we answer (the data plane passes link-local and multicast IPv6 up).
    #[error("IPv6 frame other than router discovery")]
    NotNeighbourDiscovery,
}

/// A fixed-seed generator for unit tests: every test run draws the same
/// identifiers, magic numbers and challenges.
#[cfg(test)]
pub(crate) fn test_rng() -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(1661)
}

/// Read a big-endian u16 at `at`, if the slice is long enough.
pub(crate) fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// Read a big-endian u32 at `at`, if the slice is long enough.
pub(crate) fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Some(u32::from_be_bytes(a))
}

/// Copy `src` into `dst` at `at`, failing instead of panicking when short.
pub(crate) fn put(dst: &mut [u8], at: usize, src: &[u8]) -> Result<(), Error> {
    let end = at.checked_add(src.len()).ok_or(Error::BufferTooSmall)?;
    dst.get_mut(at..end).ok_or(Error::BufferTooSmall)?.copy_from_slice(src);
    Ok(())
}
