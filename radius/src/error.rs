//! Codec errors. Every way untrusted bytes can be wrong has a variant, so
//! callers can count and log them without panicking.

/// Why bytes are not an acceptable RADIUS packet, attribute or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: {need} octets needed, {have} present")]
    Truncated { need: usize, have: usize },
    /// RFC 2865 §3: Length is 20..=4096.
    #[error("packet Length field {0} outside 20..=4096")]
    BadLength(usize),
    /// RFC 2865 §5: an attribute's Length is at least 2 and must fit.
    #[error("attribute type {typ} with bad length {len}")]
    BadAttributeLength { typ: u8, len: usize },
    #[error("attribute value of {0} octets exceeds 253")]
    ValueTooLong(usize),
    #[error("packet of {0} octets exceeds 4096")]
    TooLong(usize),
    #[error("buffer of {have} octets, {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// RFC 2865 §3: the Response (or accounting Request) Authenticator
    /// does not verify with the shared secret.
    #[error("authenticator does not verify")]
    BadAuthenticator,
    /// RFC 3579 §3.2 and the BlastRADIUS mitigation: a reply without
    /// Message-Authenticator where one is required.
    #[error("Message-Authenticator missing")]
    MissingMessageAuthenticator,
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
    #[error("{0}")]
    Invalid(&'static str),
}

pub type Result<T> = core::result::Result<T, Error>;
