//! The IPv4 header (RFC 791 §3.1), as far as a router's slow path needs it.
//!
//! ```text
//!  0: Version | IHL | Type of Service |        Total Length
//!  4:        Identification           |Flags|  Fragment Offset
//!  8:   TTL   |    Protocol           |      Header Checksum
//! 12: Source Address;  16: Destination Address;  20: Options, to IHL * 4
//! ```

use crate::checksum;

/// Don't Fragment, in the flags and fragment offset word.
pub const DF: u16 = 0x4000;
/// More Fragments.
pub const MF: u16 = 0x2000;
/// The fragment offset, in 8-byte units.
pub const OFFSET_MASK: u16 = 0x1fff;

/// Checks the header of the IPv4 packet at the start of `packet`: version
/// 4, IHL of at least 5, a total length between the header's and the
/// buffer's (bytes after it are link padding), a correct header checksum
/// (RFC 1812 §5.2.2). Returns the header length and the total length.
pub(crate) fn header(packet: &[u8]) -> Option<(usize, usize)> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || packet.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < ihl || total > packet.len() || checksum::of(&packet[..ihl]) != 0 {
        return None;
    }
    Some((ihl, total))
}
