//! Wire helpers shared by every crate of the LNS.
//!
//! The data plane, the control plane, the LAC emulator and the test labs
//! each need the Internet checksum and the L2TP flag bits; they used to
//! carry their own copies, which could drift apart. These are the one
//! definition:
//!
//! * [`checksum`]: the Internet checksum (RFC 1071) with the IPv4 and IPv6
//!   pseudo-headers and the RFC 1624 incremental update. The 64-bit
//!   summing is the data plane's hot-path version.
//! * [`l2tp`]: the L2TPv2 header's flag bits and version (RFC 2661 §3.1).
//! * [`ppp`]: the PPP header of a frame in L2TP, with and without ACFC
//!   and PFC (RFC 1661 §6.5, §6.6).
//! * [`tcp`]: MSS clamping of TCP SYNs, in place, for the data plane's
//!   fast path and the control plane's slow path alike.
//! * [`icmp`]: the ICMP and ICMPv6 errors for a packet too big for the
//!   next hop (RFC 1191, RFC 4443).
//! * [`ipv4`]: IPv4 fragmentation (RFC 791) and the header's checks.
//! * [`dhcpv6`]: DHCPv6 messages (RFC 8415) for the server on the PPP
//!   links, and the IPv6/UDP packet around them.
//!
//! No dependencies and no `unsafe`, so anything (a fuzz target, a bench,
//! the protocol cores) can use it.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod dhcpv6;
pub mod icmp;
pub mod ipv4;
pub mod l2tp;
pub mod ppp;
pub mod tcp;

#[cfg(test)]
mod reference;
