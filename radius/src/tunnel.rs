//! RFC 2868 tunnel attributes: the Tag octet that groups the attributes
//! describing one tunnel, and Tunnel-Password's salt encryption.
//!
//! ```text
//! integer (Tunnel-Type, Tunnel-Medium-Type, Tunnel-Preference):
//!   Type | Length | Tag | Value (3 octets)
//! string (Tunnel-Client-Endpoint, Tunnel-Server-Endpoint, ...):
//!   Type | Length | [Tag] | String        (a first octet > 0x1F is text)
//! Tunnel-Password:
//!   Type | Length | Tag | Salt (2) | String (encrypted)
//! ```

use crate::attribute::{AttributeRepr, AttributeType};
use crate::error::{Error, Result};
use crate::hiding;

/// A tunnel Tag, 0x01..=0x1F (RFC 2868 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(u8);

impl Tag {
    pub const MAX: u8 = 0x1f;

    pub fn new(v: u8) -> Option<Tag> {
        (1..=Tag::MAX).contains(&v).then_some(Tag(v))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// Tunnel-Type values (RFC 2868 §3.1, RFC 3580 for VLAN).
pub mod tunnel_type {
    pub const PPTP: u32 = 1;
    pub const L2F: u32 = 2;
    pub const L2TP: u32 = 3;
    pub const ATMP: u32 = 4;
    pub const VTP: u32 = 5;
    pub const AH: u32 = 6;
    pub const IP_IP: u32 = 7;
    pub const MIN_IP_IP: u32 = 8;
    pub const ESP: u32 = 9;
    pub const GRE: u32 = 10;
    pub const DVS: u32 = 11;
    pub const IP_IN_IP: u32 = 12;
    pub const VLAN: u32 = 13;
}

/// Tunnel-Medium-Type values (RFC 2868 §3.2, from the IANA address
/// family numbers).
pub mod tunnel_medium_type {
    pub const IPV4: u32 = 1;
    pub const IPV6: u32 = 2;
    pub const NSAP: u32 = 3;
    pub const HDLC: u32 = 4;
    pub const BBN_1822: u32 = 5;
    pub const IEEE_802: u32 = 6;
    pub const E163: u32 = 7;
    pub const E164: u32 = 8;
}

/// Is this a tagged attribute of RFC 2868 (or RFC 2867's Tunnel-ID
/// family, which shares the format)?
pub fn is_tagged(typ: AttributeType) -> bool {
    matches!(
        typ,
        AttributeType::TUNNEL_TYPE
            | AttributeType::TUNNEL_MEDIUM_TYPE
            | AttributeType::TUNNEL_CLIENT_ENDPOINT
            | AttributeType::TUNNEL_SERVER_ENDPOINT
            | AttributeType::TUNNEL_PASSWORD
            | AttributeType::TUNNEL_PRIVATE_GROUP_ID
            | AttributeType::TUNNEL_ASSIGNMENT_ID
            | AttributeType::TUNNEL_PREFERENCE
            | AttributeType::TUNNEL_CLIENT_AUTH_ID
            | AttributeType::TUNNEL_SERVER_AUTH_ID
    )
}

/// Tag then a 24-bit value (RFC 2868 §3.1): values above 0xFFFFFF do not
/// fit.
pub(crate) fn tagged_integer(tag: Tag, v: u32) -> Result<Vec<u8>> {
    if v > 0x00ff_ffff {
        return Err(Error::Invalid("tagged integer over 24 bits"));
    }
    let [_, a, b, c] = v.to_be_bytes();
    Ok(vec![tag.0, a, b, c])
}

/// The Tag octet is always there for integers; 0 means "unused".
pub(crate) fn parse_tagged_integer(value: &[u8]) -> Result<(Option<Tag>, u32)> {
    let [t, a, b, c]: [u8; 4] = value.try_into().map_err(|_| Error::Malformed("tagged integer"))?;
    if t > Tag::MAX {
        return Err(Error::Malformed("tag over 0x1F"));
    }
    Ok((Tag::new(t), u32::from_be_bytes([0, a, b, c])))
}

pub(crate) fn tagged_string(tag: Option<Tag>, v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 1);
    if let Some(t) = tag {
        out.push(t.0);
    }
    out.extend_from_slice(v);
    out
}

/// RFC 2868 §3.3: "If the Tag field is greater than 0x1F, it SHOULD be
/// interpreted as the first byte of the following String field." A zero
/// first octet is likewise text, as FreeRADIUS reads it.
pub(crate) fn parse_tagged_string(value: &[u8]) -> (Option<Tag>, &[u8]) {
    match value.split_first() {
        Some((&t, rest)) if Tag::new(t).is_some() => (Tag::new(t), rest),
        _ => (None, value),
    }
}

/// Tagged attributes. Defined here rather than in [`crate::attribute`] so
/// that the generic attribute codec does not depend on this format.
impl AttributeRepr {
    /// RFC 2868 §3.1-style tagged integer: Tag (1 octet) then the low 24
    /// bits of the value.
    pub fn tagged_integer(typ: AttributeType, tag: Tag, v: u32) -> Result<AttributeRepr> {
        AttributeRepr::new(typ, tagged_integer(tag, v)?)
    }

    /// RFC 2868 §3.3-style tagged string: the Tag octet (if any) then the
    /// string.
    pub fn tagged_string(typ: AttributeType, tag: Option<Tag>, v: impl AsRef<[u8]>) -> Result<AttributeRepr> {
        AttributeRepr::new(typ, tagged_string(tag, v.as_ref()))
    }

    /// Tagged integer (Tunnel-Type, Tunnel-Medium-Type): (tag, value).
    pub fn as_tagged_integer(&self) -> Result<(Option<Tag>, u32)> {
        parse_tagged_integer(self.value())
    }

    /// Tagged string (Tunnel-Server-Endpoint and the like): (tag, value).
    pub fn as_tagged_string(&self) -> (Option<Tag>, &[u8]) {
        parse_tagged_string(self.value())
    }
}

/// A decoded Tunnel-Password (RFC 2868 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPassword {
    pub tag: Option<Tag>,
    pub password: Vec<u8>,
}

impl TunnelPassword {
    /// Encrypt into a Tunnel-Password attribute. `request_authenticator`
    /// is the Access-Request's (the attribute travels in the reply);
    /// `salt` must differ for each attribute of a packet (its top bit is
    /// set here, as §3.5 requires).
    pub fn to_attribute(
        &self,
        secret: &[u8],
        request_authenticator: &[u8; 16],
        salt: u16,
    ) -> Result<AttributeRepr> {
        let mut value = vec![self.tag.map_or(0, Tag::get)];
        value.extend_from_slice(&hiding::salt_encrypt(&self.password, secret, request_authenticator, salt)?);
        AttributeRepr::new(AttributeType::TUNNEL_PASSWORD, value)
    }

    /// The Tag octet is always present here (the salt follows it).
    pub fn from_attribute(
        a: &AttributeRepr,
        secret: &[u8],
        request_authenticator: &[u8; 16],
    ) -> Result<Self> {
        if a.typ() != AttributeType::TUNNEL_PASSWORD {
            return Err(Error::Invalid("not a Tunnel-Password"));
        }
        let (&tag, salted) = a.value().split_first().ok_or(Error::Malformed("Tunnel-Password"))?;
        if tag > Tag::MAX {
            return Err(Error::Malformed("Tunnel-Password tag"));
        }
        let password = hiding::salt_decrypt(salted, secret, request_authenticator)?;
        Ok(TunnelPassword { tag: Tag::new(tag), password })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_integers() {
        let t = Tag::new(1).expect("tag");
        let a = AttributeRepr::tagged_integer(AttributeType::TUNNEL_TYPE, t, tunnel_type::L2TP).expect("a");
        assert_eq!(a.value(), [1, 0, 0, 3]);
        assert_eq!(a.as_tagged_integer(), Ok((Some(t), 3)));
        let untagged = AttributeRepr::new(AttributeType::TUNNEL_MEDIUM_TYPE, vec![0, 0, 0, 1]).expect("a");
        assert_eq!(untagged.as_tagged_integer(), Ok((None, tunnel_medium_type::IPV4)));
        assert!(AttributeRepr::tagged_integer(AttributeType::TUNNEL_TYPE, t, 1 << 24).is_err());
        for bad in [&[][..], &[1, 0, 3], &[0x20, 0, 0, 3], &[1, 0, 0, 0, 3]] {
            assert!(parse_tagged_integer(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Tag::new(0), None);
        assert_eq!(Tag::new(0x20), None);
    }

    #[test]
    fn tagged_strings() {
        let t = Tag::new(0x1f);
        let a =
            AttributeRepr::tagged_string(AttributeType::TUNNEL_SERVER_ENDPOINT, t, "192.0.2.1").expect("a");
        assert_eq!(a.value()[0], 0x1f);
        assert_eq!(a.as_tagged_string(), (t, &b"192.0.2.1"[..]));
        // No tag: a printable first octet is text.
        let a = AttributeRepr::tagged_string(AttributeType::TUNNEL_CLIENT_ENDPOINT, None, "lac1").expect("a");
        assert_eq!(a.as_tagged_string(), (None, &b"lac1"[..]));
        assert_eq!(parse_tagged_string(&[]), (None, &[][..]));
        assert_eq!(parse_tagged_string(&[0, b'x']), (None, &[0, b'x'][..]));
    }

    #[test]
    fn tunnel_password_round_trip() {
        let auth = [0x5a; 16];
        for len in [0usize, 1, 15, 16, 17, 100, 239] {
            let tp = TunnelPassword { tag: Tag::new(2), password: vec![b'p'; len] };
            let a = tp.to_attribute(b"s3cret", &auth, 0x1234).expect("encrypt");
            assert_eq!(a.value()[0], 2);
            assert_eq!(a.value()[1] & 0x80, 0x80, "salt's top bit set");
            assert_eq!((a.value().len() - 3) % 16, 0);
            assert_ne!(&a.value()[3..], &tp.password[..]);
            assert_eq!(TunnelPassword::from_attribute(&a, b"s3cret", &auth), Ok(tp.clone()));
            // Another secret garbles it (or fails the length check).
            assert_ne!(TunnelPassword::from_attribute(&a, b"other", &auth), Ok(tp));
        }
        let too_long = TunnelPassword { tag: None, password: vec![0; 240] };
        assert!(too_long.to_attribute(b"s", &auth, 1).is_err());
    }
}
