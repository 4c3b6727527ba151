//! Microsoft vendor-specific attributes (RFC 2548), Vendor-Id 311: the
//! MS-CHAP values relayed between the PPP peer and the RADIUS server, the
//! MPPE keys in their salt encryption (§2.4.2-3), and the DNS servers.

use std::net::Ipv4Addr;

use crate::attribute::AttributeRepr;
use crate::error::{Error, Result};
use crate::hiding;
use crate::packet::Repr;
use crate::vendor::{VendorAttribute, VendorSpecific};

/// SMI private enterprise code of Microsoft.
pub const VENDOR_ID: u32 = 311;

/// Vendor-Types of RFC 2548 §2.
pub mod ms {
    pub const CHAP_RESPONSE: u8 = 1;
    pub const CHAP_ERROR: u8 = 2;
    pub const CHAP_CPW_1: u8 = 3;
    pub const CHAP_CPW_2: u8 = 4;
    pub const CHAP_LM_ENC_PW: u8 = 5;
    pub const CHAP_NT_ENC_PW: u8 = 6;
    pub const MPPE_ENCRYPTION_POLICY: u8 = 7;
    pub const MPPE_ENCRYPTION_TYPES: u8 = 8;
    pub const RAS_VENDOR: u8 = 9;
    pub const CHAP_DOMAIN: u8 = 10;
    pub const CHAP_CHALLENGE: u8 = 11;
    pub const CHAP_MPPE_KEYS: u8 = 12;
    pub const BAP_USAGE: u8 = 13;
    pub const LINK_UTILIZATION_THRESHOLD: u8 = 14;
    pub const LINK_DROP_TIME_LIMIT: u8 = 15;
    pub const MPPE_SEND_KEY: u8 = 16;
    pub const MPPE_RECV_KEY: u8 = 17;
    pub const RAS_VERSION: u8 = 18;
    pub const OLD_ARAP_PASSWORD: u8 = 19;
    pub const NEW_ARAP_PASSWORD: u8 = 20;
    pub const ARAP_PASSWORD_CHANGE_REASON: u8 = 21;
    pub const FILTER: u8 = 22;
    pub const ACCT_AUTH_TYPE: u8 = 23;
    pub const ACCT_EAP_TYPE: u8 = 24;
    pub const CHAP2_RESPONSE: u8 = 25;
    pub const CHAP2_SUCCESS: u8 = 26;
    pub const CHAP2_CPW: u8 = 27;
    pub const PRIMARY_DNS_SERVER: u8 = 28;
    pub const SECONDARY_DNS_SERVER: u8 = 29;
    pub const PRIMARY_NBNS_SERVER: u8 = 30;
    pub const SECONDARY_NBNS_SERVER: u8 = 31;
}

/// A Vendor-Specific attribute holding one Microsoft sub-attribute.
pub fn attribute(vendor_type: u8, value: impl Into<Vec<u8>>) -> Result<AttributeRepr> {
    AttributeRepr::vendor_specific(&VendorSpecific::single(VENDOR_ID, vendor_type, value))
}

/// MS-CHAP-Challenge (§2.3.3 of RFC 2548 for v1, 16 octets for v2): the
/// challenge the authenticator sent the peer.
pub fn chap_challenge(challenge: &[u8]) -> Result<AttributeRepr> {
    attribute(ms::CHAP_CHALLENGE, challenge.to_vec())
}

/// MS-CHAP2-Response (RFC 2548 §2.3.2): Ident, Flags, Peer-Challenge (16),
/// Reserved (8, zero), Response (24) — 50 octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsChap2Response {
    pub ident: u8,
    pub flags: u8,
    pub peer_challenge: [u8; 16],
    pub nt_response: [u8; 24],
}

impl MsChap2Response {
    pub const LEN: usize = 50;

    pub fn parse(value: &[u8]) -> Result<MsChap2Response> {
        if value.len() != Self::LEN {
            return Err(Error::Malformed("MS-CHAP2-Response length"));
        }
        let get = |r: core::ops::Range<usize>| value.get(r).ok_or(Error::Malformed("MS-CHAP2-Response"));
        Ok(MsChap2Response {
            ident: value.first().copied().unwrap_or(0),
            flags: value.get(1).copied().unwrap_or(0),
            peer_challenge: get(2..18)?.try_into().map_err(|_| Error::Malformed("MS-CHAP2-Response"))?,
            nt_response: get(26..50)?.try_into().map_err(|_| Error::Malformed("MS-CHAP2-Response"))?,
        })
    }

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut v = [0u8; Self::LEN];
        v[0] = self.ident;
        v[1] = self.flags;
        v[2..18].copy_from_slice(&self.peer_challenge);
        v[26..50].copy_from_slice(&self.nt_response);
        v
    }

    pub fn to_attribute(&self) -> Result<AttributeRepr> {
        attribute(ms::CHAP2_RESPONSE, self.to_bytes().to_vec())
    }
}

/// MS-CHAP2-Success (RFC 2548 §2.3.3): Ident, then the authenticator
/// response "S=<40 hex digits>" (RFC 2759 §5) the LNS hands to the peer in
/// its CHAP Success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsChap2Success {
    pub ident: u8,
    pub message: String,
}

impl MsChap2Success {
    pub fn parse(value: &[u8]) -> Result<MsChap2Success> {
        let (&ident, text) = value.split_first().ok_or(Error::Malformed("MS-CHAP2-Success"))?;
        let message = core::str::from_utf8(text).map_err(|_| Error::Malformed("MS-CHAP2-Success text"))?;
        if !message.starts_with("S=") {
            return Err(Error::Malformed("MS-CHAP2-Success without S="));
        }
        Ok(MsChap2Success { ident, message: message.to_string() })
    }

    /// The "S=..." part alone (a server may append " M=...").
    pub fn authenticator_response(&self) -> &str {
        self.message.split(' ').next().unwrap_or("")
    }

    pub fn to_attribute(&self) -> Result<AttributeRepr> {
        let mut v = vec![self.ident];
        v.extend_from_slice(self.message.as_bytes());
        attribute(ms::CHAP2_SUCCESS, v)
    }
}

/// MS-CHAP-Error (RFC 2548 §2.1.5): Ident, then the failure text
/// ("E=691 R=0 C=... V=3 M=...", RFC 2759 §6) for the CHAP Failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsChapError {
    pub ident: u8,
    pub message: String,
}

impl MsChapError {
    pub fn parse(value: &[u8]) -> Result<MsChapError> {
        let (&ident, text) = value.split_first().ok_or(Error::Malformed("MS-CHAP-Error"))?;
        Ok(MsChapError { ident, message: String::from_utf8_lossy(text).into_owned() })
    }

    /// The E= error code, if the text has one.
    pub fn error_code(&self) -> Option<u32> {
        self.message.split(' ').find_map(|f| f.strip_prefix("E=")).and_then(|e| e.parse().ok())
    }

    pub fn to_attribute(&self) -> Result<AttributeRepr> {
        let mut v = vec![self.ident];
        v.extend_from_slice(self.message.as_bytes());
        attribute(ms::CHAP_ERROR, v)
    }
}

/// An MS-MPPE-Send-Key or MS-MPPE-Recv-Key (RFC 2548 §2.4.2-3) value:
/// Salt then the encrypted key, keyed by the Access-Request's Request
/// Authenticator.
pub fn mppe_key_attribute(
    vendor_type: u8,
    key: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
    salt: u16,
) -> Result<AttributeRepr> {
    attribute(vendor_type, hiding::salt_encrypt(key, secret, request_authenticator, salt)?)
}

/// Decrypt an MS-MPPE-Send-Key or -Recv-Key value.
pub fn mppe_key(value: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Result<Vec<u8>> {
    hiding::salt_decrypt(value, secret, request_authenticator)
}

/// The MS-CHAP values a reply carries, read from any packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsReply {
    pub chap2_success: Option<MsChap2Success>,
    pub chap_error: Option<MsChapError>,
    pub primary_dns: Option<Ipv4Addr>,
    pub secondary_dns: Option<Ipv4Addr>,
}

impl MsReply {
    pub fn from_packet(p: &Repr) -> Result<MsReply> {
        let mut r = MsReply::default();
        for VendorAttribute { vendor_type, value } in p.vendor_attributes(VENDOR_ID) {
            let ip = |v: &[u8]| -> Result<Ipv4Addr> {
                let b: [u8; 4] = v.try_into().map_err(|_| Error::Malformed("MS DNS server"))?;
                Ok(b.into())
            };
            match vendor_type {
                ms::CHAP2_SUCCESS => r.chap2_success = Some(MsChap2Success::parse(&value)?),
                ms::CHAP_ERROR => r.chap_error = Some(MsChapError::parse(&value)?),
                ms::PRIMARY_DNS_SERVER => r.primary_dns = Some(ip(&value)?),
                ms::SECONDARY_DNS_SERVER => r.secondary_dns = Some(ip(&value)?),
                _ => {}
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Code;

    #[test]
    fn chap2_response_layout() {
        let r = MsChap2Response { ident: 7, flags: 0, peer_challenge: [1; 16], nt_response: [2; 24] };
        let b = r.to_bytes();
        assert_eq!(b[18..26], [0; 8], "reserved");
        assert_eq!(MsChap2Response::parse(&b), Ok(r));
        assert!(MsChap2Response::parse(&b[..49]).is_err());
        let a = r.to_attribute().expect("attr");
        // Vendor-Id 311, Vendor-Type 25, Vendor-Length 52.
        assert_eq!(a.value()[..6], [0, 0, 1, 0x37, 25, 52]);
    }

    #[test]
    fn success_error_dns() {
        let mut p = Repr::new(Code::AccessAccept, 1);
        let s = "S=407A5589115FD0D6209F510FE9C04566932CDA56";
        p.push(MsChap2Success { ident: 9, message: s.into() }.to_attribute().expect("a"));
        p.push(attribute(ms::PRIMARY_DNS_SERVER, vec![192, 0, 2, 53]).expect("a"));
        p.push(attribute(ms::SECONDARY_DNS_SERVER, vec![192, 0, 2, 54]).expect("a"));
        let r = MsReply::from_packet(&Repr::from_bytes(&p.to_bytes().expect("emit")).expect("parse"))
            .expect("ms");
        assert_eq!(r.chap2_success.as_ref().map(|s| s.authenticator_response()), Some(s));
        assert_eq!(r.primary_dns, Some(Ipv4Addr::new(192, 0, 2, 53)));
        assert_eq!(r.secondary_dns, Some(Ipv4Addr::new(192, 0, 2, 54)));
        let e = MsChapError { ident: 1, message: "E=691 R=0 C=00 V=3 M=no".into() };
        assert_eq!(
            MsChapError::parse(&e.to_attribute().expect("a").value()[6..]).map(|e| e.error_code()),
            Ok(Some(691))
        );
        assert!(MsChap2Success::parse(b"\x01E=691").is_err());
        assert!(MsChap2Success::parse(b"").is_err());
        let mut bad = Repr::new(Code::AccessAccept, 1);
        bad.push(attribute(ms::PRIMARY_DNS_SERVER, vec![1, 2, 3]).expect("a"));
        assert!(MsReply::from_packet(&bad).is_err());
    }

    #[test]
    fn mppe_keys_round_trip() {
        let auth = [0xa5; 16];
        let send = [0x10u8; 16];
        let recv: Vec<u8> = (0..32).collect();
        let mut p = Repr::new(Code::AccessAccept, 1);
        p.push(mppe_key_attribute(ms::MPPE_SEND_KEY, &send, b"secret", &auth, 0x8001).expect("a"));
        p.push(mppe_key_attribute(ms::MPPE_RECV_KEY, &recv, b"secret", &auth, 0x8002).expect("a"));
        let p = Repr::from_bytes(&p.to_bytes().expect("emit")).expect("parse");
        let s = p.vendor_attribute(VENDOR_ID, ms::MPPE_SEND_KEY).expect("send");
        let r = p.vendor_attribute(VENDOR_ID, ms::MPPE_RECV_KEY).expect("recv");
        assert_eq!(s.value.len(), 2 + 32);
        assert_eq!(mppe_key(&s.value, b"secret", &auth), Ok(send.to_vec()));
        assert_eq!(mppe_key(&r.value, b"secret", &auth), Ok(recv));
        assert_ne!(mppe_key(&s.value, b"secret", &[0; 16]), Ok(send.to_vec()));
    }
}
