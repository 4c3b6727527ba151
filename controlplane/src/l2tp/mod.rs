//! L2TPv2 (RFC 2661), LNS and LAC roles.
//!
//! Sans-IO: nothing here owns a socket or reads a clock. The caller feeds
//! datagrams and the current time in, and takes datagrams, events and the
//! next timer deadline out (see [`Endpoint`] and [`Tunnel`]).
//!
//! Layers, bottom up; each module uses only those above it in this list
//! (and the crate-level [`Error`]), so the module graph has no cycle:
//! - [`header`]: the L2TP header (§3.1), zero-copy, for control and data.
//! - [`message_type`]: the Message Type values (§3.2) and their scope
//!   (tunnel or session, §4.1), needed by both layers below.
//! - [`avp`]: attribute-value pairs (§4), including hidden AVPs (§4.3) and
//!   the RFC 5515 access-line AVPs.
//! - [`message`]: control messages (§6) and their mandatory-AVP rules.
//! - [`reliable`]: the control channel's reliable delivery (§5.8, App. A);
//!   it sees only headers and opaque bodies.
//! - `ids`: tunnel and session id allocation (no protocol knowledge).
//! - [`session`], then [`tunnel`]: the state machines (§7).
//! - [`endpoint`]: demultiplexing, id allocation and admission limits.
//!
//! Driving an [`Endpoint`] from an event loop (one UDP socket):
//!
//! ```
//! use lns_controlplane::l2tp::{DatagramEvent, Endpoint, EndpointConfig, Event};
//! use std::time::Instant;
//!
//! let mut ep = Endpoint::new(EndpointConfig { allow_unlisted_peers: true, ..Default::default() });
//! let (now, from) = (Instant::now(), "192.0.2.2:1701".parse().unwrap());
//! // On every received datagram:
//! match ep.handle_datagram(now, from, &[0xc8, 0x02, 0x00, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0]) {
//!     DatagramEvent::Data { .. } => { /* PPP frame: hand to the data path or PPP */ }
//!     DatagramEvent::Control(_) | DatagramEvent::Dropped(_) => {}
//! }
//! // Then, and whenever the timer fires (after `ep.handle_timeout(now)`):
//! while let Some(t) = ep.poll_transmit(now) { /* socket.send_to(&t.payload, t.destination) */ }
//! while let Some((_tunnel, ev)) = ep.poll_event() {
//!     if let Event::SessionUp { .. } = ev { /* start PPP / AAA */ }
//! }
//! let _sleep_until = ep.poll_timeout();
//! ```

pub mod avp;
pub mod endpoint;
pub mod header;
mod ids;
pub mod message;
pub mod message_type;
pub mod reliable;
mod serde_maps;
pub mod session;
pub mod tunnel;

#[cfg(test)]
mod captures;
#[cfg(test)]
mod sim;

pub use avp::{Avp, AvpValue, Q931Cause, ResultCode};
pub use endpoint::{
    DatagramEvent, DropReason, Endpoint, EndpointConfig, EndpointError, PeerConfig, Transmit,
};
pub use header::{Packet, SessionId, TunnelId};
pub use ids::SessionIdSpace;
pub use message::{Message, MessageType};
pub use reliable::ReliableConfig;
pub use session::{PackedSessionInfo, SessionDownCause, SessionInfo};
pub use tunnel::{Event, Role, Tunnel, TunnelConfig, TunnelDownReason, TunnelError, TunnelState};

/// Wire-format errors: the datagram or AVP is malformed and is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("buffer too short")]
    Truncated,
    #[error("unsupported L2TP version {0}")]
    Version(u8),
    #[error("length field {0} does not fit the datagram")]
    Length(u16),
    #[error("control message must have L=1, S=1, O=0 (RFC 2661 §3.1)")]
    ControlFlags,
    #[error("AVP length {0} is invalid")]
    AvpLength(u16),
    #[error("AVP {attr} value has a bad length {len}")]
    AvpValueLength { attr: u16, len: usize },
    #[error("hidden AVP {0} but no Random Vector precedes it (RFC 2661 §4.3)")]
    HiddenWithoutRandomVector(u16),
    #[error("hidden AVP {0} but no shared secret is configured")]
    HiddenWithoutSecret(u16),
    #[error("hidden AVP {0} decodes to an impossible original length")]
    HiddenLength(u16),
    #[error("first AVP must be Message Type (RFC 2661 §4.4.1)")]
    NoMessageType,
    #[error("value too long to encode")]
    TooLong,
}
