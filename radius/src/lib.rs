//! RADIUS for the LNS.
//!
//! * The codec, after smoltcp's `wire` module: a zero-copy view
//!   ([`Packet`], [`Attribute`]) over a buffer whose lengths are checked
//!   once, and owned representations ([`PacketRepr`], [`AttributeRepr`])
//!   with `parse`, `emit` and `buffer_len`. One module per concern:
//!   [`packet`] (RFC 2865 §3 header, codes), [`attribute`] (RFC 2865 §5,
//!   2866, 2869, 3162, 4818, 5176 types and data formats), [`vendor`]
//!   (Vendor-Specific, RFC 2865 §5.26), [`microsoft`] (RFC 2548),
//!   [`tunnel`] (RFC 2868 tagged attributes), [`rate`] (subscriber rate
//!   limits: WISPr bandwidth, a "down/up" text), [`hiding`] (User-Password
//!   hiding, salt encryption), [`crypto`] (authenticators,
//!   Message-Authenticator), and [`dictionary`] (FreeRADIUS dictionary
//!   files).
//! * Message builders and readers in the RFCs' terms: [`access`]
//!   (Access-Request for PAP, CHAP-MD5, MS-CHAPv2; what an Access-Accept
//!   authorizes), [`accounting`] (RFC 2866 records with Gigawords) and
//!   [`dynauth`] (RFC 5176 requests and their ACK/NAK).
//! * The client, after quinn-proto: a sans-IO engine ([`client::Client`])
//!   fed datagrams and time, and a thin tokio driver ([`driver`]).
//!
//! # Layering
//!
//! Each module uses only modules on lines above its own, so the module
//! graph has no cycle (`tests/layering.rs` checks it):
//!
//! ```text
//! error
//! attribute                  Type-Length-Value, RFC 8044 data formats
//! vendor, hiding             Vendor-Specific; values hidden with the secret
//! tunnel, packet             tagged attributes, Tunnel-Password; the header and Repr::emit
//! crypto, microsoft, rate    signing after emit, verifying; MS attributes, MPPE keys; rate limits
//! dictionary, access         FreeRADIUS dictionaries; Access-Request, Access-Accept
//! accounting, dynauth        RFC 2866 records; RFC 5176 requests
//! client                     the sans-IO engine
//! driver                     its tokio driver
//! ```
//!
//! Signing is a step after emit: [`packet`] writes the bytes with the
//! Authenticator field and any Message-Authenticator as the `Repr` holds
//! them, and [`crypto::sign`] fills both in over those bytes
//! ([`PacketRepr::encode`], defined in [`crypto`], does both steps).
//! Likewise the Vendor-Specific and tagged constructors and accessors of
//! [`AttributeRepr`] are defined in [`vendor`] and [`tunnel`], which build
//! on [`attribute`] rather than the other way round.

#![forbid(unsafe_code)]

pub mod access;
pub mod accounting;
pub mod attribute;
pub mod client;
pub mod crypto;
pub mod dictionary;
pub mod driver;
pub mod dynauth;
pub mod error;
pub mod hiding;
pub mod microsoft;
pub mod packet;
pub mod rate;
pub mod tunnel;
pub mod vendor;

pub use attribute::{Attribute, AttributeRepr, AttributeType};
pub use error::Error;
pub use packet::{Code, Packet, Repr as PacketRepr};
pub use vendor::{VendorAttribute, VendorSpecific};
