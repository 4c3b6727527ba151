//! RADIUS for the LNS.
//!
//! * The codec, after smoltcp's `wire` module: a zero-copy view
//!   ([`Packet`], [`Attribute`]) over a buffer whose lengths are checked
//!   once, and owned representations ([`PacketRepr`], [`AttributeRepr`])
//!   with `parse`, `emit` and `buffer_len`. One module per concern:
//!   [`packet`] (RFC 2865 §3 header, codes), [`attribute`] (RFC 2865 §5,
//!   2866, 2869, 3162, 4818, 5176 types and data formats), [`vendor`]
//!   (Vendor-Specific, RFC 2865 §5.26), [`microsoft`] (RFC 2548),
//!   [`tunnel`] (RFC 2868 tagged attributes), [`crypto`] (hiding,
//!   salt encryption, authenticators, Message-Authenticator), and
//!   [`dictionary`] (FreeRADIUS dictionary files).
//! * Message builders and readers in the RFCs' terms: [`access`]
//!   (Access-Request for PAP, CHAP-MD5, MS-CHAPv2; what an Access-Accept
//!   authorizes), [`accounting`] (RFC 2866 records with Gigawords) and
//!   [`dynauth`] (RFC 5176 requests and their ACK/NAK).
//! * The client, after quinn-proto: a sans-IO engine ([`client::Client`])
//!   fed datagrams and time, and a thin tokio driver ([`driver`]).

pub mod access;
pub mod accounting;
pub mod attribute;
pub mod client;
pub mod crypto;
pub mod dictionary;
pub mod driver;
pub mod dynauth;
pub mod error;
pub mod microsoft;
pub mod packet;
pub mod tunnel;
pub mod vendor;

pub use attribute::{Attribute, AttributeRepr, AttributeType};
pub use error::Error;
pub use packet::{Code, Packet, Repr as PacketRepr};
pub use vendor::{VendorAttribute, VendorSpecific};
