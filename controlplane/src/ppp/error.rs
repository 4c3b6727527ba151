//! What every PPP codec reports, and the bounds-checked byte access they
//! share (the bottom of the module graph: it imports nothing of `ppp`).

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
