//! Signing and verifying packets with the shared secret, a step after
//! emit: the Request and Response Authenticators (RFC 2865 §3, RFC 2866
//! §3, RFC 5176 §2.3) and Message-Authenticator (RFC 3579 §3.2, RFC 2869
//! §5.14, RFC 5176 §3.1) are computed over the bytes
//! [`Repr::emit`](crate::packet::Repr::emit) wrote, and checked over the
//! bytes received. Also CHAP responses (RFC 1994 §4.1).
//!
//! The hiding of attribute values (User-Password, salt encryption) lives
//! in [`crate::hiding`], below the packet codec, and is re-exported here so
//! that everything keyed by the secret is found in one place.

use hmac::{Hmac, Mac};
use md5::Md5;

use crate::attribute::{Attribute, AttributeIter, AttributeType};
use crate::error::{Error, Result};
use crate::hiding::md5;
pub use crate::hiding::{
    hide_user_password, recover_user_password, salt_decrypt, salt_encrypt, MAX_USER_PASSWORD_LEN,
};
use crate::packet::{Code, Packet, Repr, AUTHENTICATOR, HEADER_LEN};

type HmacMd5 = Hmac<Md5>;

/// Comparison whose time does not depend on where the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 1994 §4.1 (and RFC 2865 §5.3 CHAP-Password): MD5(Identifier +
/// secret + Challenge).
pub fn chap_md5_response(identifier: u8, password: &[u8], challenge: &[u8]) -> [u8; 16] {
    md5(&[&[identifier], password, challenge])
}

/// The offset of the first Message-Authenticator's Value in `packet`.
/// Errors if one has a length other than 18 (RFC 3579 §3.2).
fn message_authenticator_offset(packet: &Packet<&[u8]>) -> Result<Option<usize>> {
    let mut at = HEADER_LEN;
    let mut found = None;
    for a in packet.attributes() {
        if a.typ() == AttributeType::MESSAGE_AUTHENTICATOR {
            if a.value().len() != 16 {
                return Err(Error::Malformed("Message-Authenticator length"));
            }
            if found.is_some() {
                // RFC 3579 §3.2: at most one.
                return Err(Error::Malformed("two Message-Authenticators"));
            }
            found = Some(at + 2);
        }
        at += usize::from(a.length());
    }
    Ok(found)
}

/// HMAC-MD5 over the packet with `authenticator` in the Authenticator
/// field and the Message-Authenticator value (at `ma`) as zeros.
fn hmac_md5(bytes: &[u8], secret: &[u8], authenticator: &[u8; 16], ma: usize) -> Result<[u8; 16]> {
    let mut mac = HmacMd5::new_from_slice(secret).map_err(|_| Error::Invalid("secret"))?;
    mac.update(bytes.get(..AUTHENTICATOR.start).ok_or(Error::Malformed("packet"))?);
    mac.update(authenticator);
    mac.update(bytes.get(AUTHENTICATOR.end..ma).ok_or(Error::Malformed("packet"))?);
    mac.update(&[0u8; 16]);
    mac.update(bytes.get(ma + 16..).ok_or(Error::Malformed("packet"))?);
    Ok(mac.finalize().into_bytes().into())
}

/// MD5(Code + Identifier + Length + `authenticator` + Attributes + secret).
fn md5_authenticator(bytes: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Result<[u8; 16]> {
    let head = bytes.get(..AUTHENTICATOR.start).ok_or(Error::Malformed("packet"))?;
    let attrs = bytes.get(AUTHENTICATOR.end..).ok_or(Error::Malformed("packet"))?;
    Ok(md5(&[head, authenticator, attrs, secret]))
}

/// What stands in the Authenticator field while Message-Authenticator is
/// computed. RFC 3579 §3.2: Access-Request its own Request Authenticator;
/// Access-Accept/Reject/Challenge the Access-Request's. RFC 5176 §3.1:
/// CoA/Disconnect requests zeros, their ACK/NAK the request's. Accounting
/// follows the same rule (what FreeRADIUS does for Accounting-Request).
fn hmac_authenticator(code: Code, own: [u8; 16], request: Option<&[u8; 16]>) -> Result<[u8; 16]> {
    if code.has_random_authenticator() {
        Ok(own)
    } else if code.has_computed_request_authenticator() {
        Ok([0; 16])
    } else if code.is_response() {
        request.copied().ok_or(Error::Invalid("a response is signed with its request's authenticator"))
    } else {
        Err(Error::Invalid("cannot sign this code"))
    }
}

/// Sign an emitted packet in place: first the Message-Authenticator if the
/// packet carries one (its value is overwritten), then the Authenticator
/// field for the codes where it is computed (accounting, CoA and
/// Disconnect requests; every response). Access-Request and Status-Server
/// keep the random Request Authenticator the caller put in.
pub fn sign(bytes: &mut [u8], secret: &[u8], request_authenticator: Option<&[u8; 16]>) -> Result<()> {
    let (code, own, ma, len) = {
        let p = Packet::new_checked(&bytes[..])?;
        (p.code(), p.authenticator(), message_authenticator_offset(&p)?, usize::from(p.length()))
    };
    let bytes = bytes.get_mut(..len).ok_or(Error::Malformed("packet"))?;
    let field_value = hmac_authenticator(code, own, request_authenticator)?;
    if let Some(ma) = ma {
        let mac = hmac_md5(bytes, secret, &field_value, ma)?;
        bytes.get_mut(ma..ma + 16).ok_or(Error::Malformed("packet"))?.copy_from_slice(&mac);
    }
    let auth = if code.has_random_authenticator() {
        return Ok(());
    } else if code.has_computed_request_authenticator() {
        md5_authenticator(bytes, secret, &[0; 16])?
    } else {
        md5_authenticator(bytes, secret, &field_value)?
    };
    bytes.get_mut(AUTHENTICATOR).ok_or(Error::Malformed("packet"))?.copy_from_slice(&auth);
    Ok(())
}

impl Repr {
    /// Emit and sign: Message-Authenticator (if the packet carries one) and
    /// then the Authenticator field, as [`sign`] describes.
    /// `request_authenticator` is the request's, for responses.
    ///
    /// Defined here rather than in [`crate::packet`] so that the codec
    /// does not depend on signing: signing depends on the codec.
    pub fn encode(&self, secret: &[u8], request_authenticator: Option<&[u8; 16]>) -> Result<Vec<u8>> {
        let mut buf = self.to_bytes()?;
        sign(&mut buf, secret, request_authenticator)?;
        Ok(buf)
    }
}

fn verify_message_authenticator(
    bytes: &[u8],
    secret: &[u8],
    candidates: &[[u8; 16]],
    ma: usize,
) -> Result<()> {
    let got = bytes.get(ma..ma + 16).ok_or(Error::Malformed("packet"))?;
    for c in candidates {
        if ct_eq(&hmac_md5(bytes, secret, c, ma)?, got) {
            return Ok(());
        }
    }
    Err(Error::BadMessageAuthenticator)
}

/// Verify a response to a request whose Request Authenticator was
/// `request_authenticator`: the Response Authenticator (RFC 2865 §3) and
/// the Message-Authenticator (RFC 3579 §3.2), which must be present when
/// `require_message_authenticator` (BlastRADIUS: every Access-Accept,
/// Access-Reject and Access-Challenge).
pub fn verify_response(
    bytes: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
    require_message_authenticator: bool,
) -> Result<()> {
    let p = Packet::new_checked(bytes)?;
    let bytes = p.as_bytes();
    if !p.code().is_response() {
        return Err(Error::Invalid("not a response code"));
    }
    let expected = md5_authenticator(bytes, secret, request_authenticator)?;
    if !ct_eq(&expected, &p.authenticator()) {
        return Err(Error::BadAuthenticator);
    }
    match message_authenticator_offset(&p)? {
        Some(ma) => {
            // FreeRADIUS computes it for Accounting-Response and the
            // CoA/Disconnect ACK/NAK with a zero Authenticator field,
            // RFC 5176 §3.1 with the request's: accept either.
            let zero_too = matches!(
                p.code(),
                Code::AccountingResponse
                    | Code::CoaAck
                    | Code::CoaNak
                    | Code::DisconnectAck
                    | Code::DisconnectNak
            );
            let candidates: &[[u8; 16]] =
                if zero_too { &[*request_authenticator, [0; 16]] } else { &[*request_authenticator] };
            verify_message_authenticator(bytes, secret, candidates, ma)
        }
        None if require_message_authenticator => Err(Error::MissingMessageAuthenticator),
        None => Ok(()),
    }
}

/// Verify a received request. Accounting, CoA and Disconnect requests: the
/// Request Authenticator (RFC 2866 §3, RFC 5176 §2.3). Every request: the
/// Message-Authenticator if present, and its presence when required
/// (RFC 5176 §3.1 lets a NAS demand it; RFC 5997 §3 for Status-Server).
pub fn verify_request(bytes: &[u8], secret: &[u8], require_message_authenticator: bool) -> Result<()> {
    let p = Packet::new_checked(bytes)?;
    let bytes = p.as_bytes();
    let code = p.code();
    if code.has_computed_request_authenticator() {
        let expected = md5_authenticator(bytes, secret, &[0; 16])?;
        if !ct_eq(&expected, &p.authenticator()) {
            return Err(Error::BadAuthenticator);
        }
    } else if !code.has_random_authenticator() {
        return Err(Error::Invalid("not a request code"));
    }
    let require = require_message_authenticator || code == Code::StatusServer;
    match message_authenticator_offset(&p)? {
        Some(ma) => verify_message_authenticator(
            bytes,
            secret,
            &[hmac_authenticator(code, p.authenticator(), None)?],
            ma,
        ),
        None if require => Err(Error::MissingMessageAuthenticator),
        None => Ok(()),
    }
}

/// Does the attribute area hold a Message-Authenticator? (For callers that
/// only need to know, e.g. to log policy violations.)
pub fn has_message_authenticator(attributes: &[u8]) -> bool {
    AttributeIter::new(attributes).any(|a: Attribute<&[u8]>| a.typ() == AttributeType::MESSAGE_AUTHENTICATOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttributeRepr;
    use crate::packet::tests::{hex, RFC2865_7_1_ACCEPT, RFC2865_7_1_REQUEST};

    // RFC 2865 §7.1's Access-Request and Access-Accept (shared secret
    // "xyzzy5461"), whose parse and emit are tested in crate::packet.

    #[test]
    fn rfc2865_access_request_signing_leaves_it_unchanged() {
        let bytes = hex(RFC2865_7_1_REQUEST);
        let r = Repr::from_bytes(&bytes).expect("parse");
        // No Message-Authenticator and a random authenticator: signing
        // leaves the bytes unchanged.
        assert_eq!(r.encode(b"xyzzy5461", None).expect("encode"), bytes);
    }

    #[test]
    fn rfc2865_access_accept_response_authenticator() {
        let req = hex(RFC2865_7_1_REQUEST);
        let acc = hex(RFC2865_7_1_ACCEPT);
        let req_auth: [u8; 16] = req[4..20].try_into().expect("16");
        verify_response(&acc, b"xyzzy5461", &req_auth, false).expect("verifies");
        assert_eq!(verify_response(&acc, b"xyzzy5460", &req_auth, false), Err(Error::BadAuthenticator));
        // Rebuild it: same response authenticator.
        let mut again = Repr::from_bytes(&acc).expect("parse");
        again.authenticator = [0; 16];
        assert_eq!(again.encode(b"xyzzy5461", Some(&req_auth)).expect("encode"), acc);
    }

    #[test]
    fn chap_response() {
        // RFC 1994: MD5(ident || secret || challenge); checked against a
        // direct MD5 of the concatenation.
        let r = chap_md5_response(1, b"pw", &[1, 2, 3]);
        assert_eq!(r, md5(&[&[1, b'p', b'w', 1, 2, 3]]));
    }

    fn access_request() -> Repr {
        let mut r = Repr::new(Code::AccessRequest, 42);
        r.authenticator = [0x33; 16];
        r.ensure_message_authenticator();
        r.push(AttributeRepr::string(AttributeType::USER_NAME, "bob").expect("a"));
        r
    }

    #[test]
    fn message_authenticator_round_trip_and_tamper() {
        let req = access_request();
        let bytes = req.encode(b"secret", None).expect("encode");
        // Authenticator untouched, MA filled in.
        assert_eq!(bytes[4..20], [0x33; 16]);
        assert_ne!(bytes[22..38], [0; 16]);
        verify_request(&bytes, b"secret", true).expect("verifies");
        assert_eq!(verify_request(&bytes, b"secreT", true), Err(Error::BadMessageAuthenticator));
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            // Flipping a length octet may make it malformed instead.
            assert!(verify_request(&t, b"secret", true).is_err(), "flip at {i}");
        }
        let mut bare = req.clone();
        bare.remove_all(AttributeType::MESSAGE_AUTHENTICATOR);
        let bare = bare.encode(b"secret", None).expect("encode");
        assert_eq!(verify_request(&bare, b"secret", true), Err(Error::MissingMessageAuthenticator));
        verify_request(&bare, b"secret", false).expect("not required");

        // The reply: Message-Authenticator over the request's authenticator,
        // then the Response Authenticator over that.
        let mut accept = Repr::new(Code::AccessAccept, 42);
        accept.ensure_message_authenticator();
        accept.push(AttributeRepr::ipv4(AttributeType::FRAMED_IP_ADDRESS, [192, 0, 2, 7].into()));
        let reply = accept.encode(b"secret", Some(&[0x33; 16])).expect("encode");
        verify_response(&reply, b"secret", &[0x33; 16], true).expect("verifies");
        assert_eq!(verify_response(&reply, b"secret", &[0x34; 16], true), Err(Error::BadAuthenticator));
        for i in 0..reply.len() {
            let mut t = reply.clone();
            t[i] ^= 0x80;
            assert!(verify_response(&t, b"secret", &[0x33; 16], true).is_err(), "flip at {i}");
        }
        // BlastRADIUS: a reply without Message-Authenticator is refused
        // when required even though its Response Authenticator is right.
        let mut bare = accept.clone();
        bare.remove_all(AttributeType::MESSAGE_AUTHENTICATOR);
        let bare = bare.encode(b"secret", Some(&[0x33; 16])).expect("encode");
        assert_eq!(
            verify_response(&bare, b"secret", &[0x33; 16], true),
            Err(Error::MissingMessageAuthenticator)
        );
        verify_response(&bare, b"secret", &[0x33; 16], false).expect("not required");
        // A Message-Authenticator recomputed without the secret (zeros) is
        // caught even if the attacker fixes up nothing else.
        let mut forged = reply.clone();
        forged[22..38].copy_from_slice(&[0; 16]);
        assert!(verify_response(&forged, b"secret", &[0x33; 16], true).is_err());
    }

    #[test]
    fn accounting_request_authenticator() {
        let mut r = Repr::new(Code::AccountingRequest, 3);
        r.push(AttributeRepr::integer(AttributeType::ACCT_STATUS_TYPE, 1));
        r.push(AttributeRepr::string(AttributeType::ACCT_SESSION_ID, "abc").expect("a"));
        let b = r.encode(b"secret", None).expect("encode");
        let mut zeroed = b.clone();
        zeroed[4..20].copy_from_slice(&[0; 16]);
        assert_eq!(b[4..20], md5(&[&zeroed, b"secret"]), "RFC 2866 §3");
        verify_request(&b, b"secret", false).expect("verifies");
        assert_eq!(verify_request(&b, b"other", false), Err(Error::BadAuthenticator));
        // With a Message-Authenticator, both verify; it is computed first
        // over a zero Authenticator (RFC 5176 §3.1 order).
        r.ensure_message_authenticator();
        let b = r.encode(b"secret", None).expect("encode");
        verify_request(&b, b"secret", true).expect("verifies");
        // A response to it, as FreeRADIUS signs (zero field) and as RFC
        // 5176 describes (request's field): both accepted.
        let req_auth: [u8; 16] = b[4..20].try_into().expect("16");
        let mut resp = Repr::new(Code::AccountingResponse, 3);
        resp.ensure_message_authenticator();
        let rb = resp.encode(b"secret", Some(&req_auth)).expect("encode");
        verify_response(&rb, b"secret", &req_auth, true).expect("RFC style");
        let mut fr = resp.to_bytes().expect("emit");
        let mac = hmac_md5(&fr, b"secret", &[0; 16], 22).expect("hmac");
        fr[22..38].copy_from_slice(&mac);
        let ra = md5_authenticator(&fr, b"secret", &req_auth).expect("md5");
        fr[4..20].copy_from_slice(&ra);
        verify_response(&fr, b"secret", &req_auth, true).expect("FreeRADIUS style");
    }

    #[test]
    fn bad_message_authenticator_shapes() {
        let mut r = access_request();
        r.push(AttributeRepr::new(AttributeType::MESSAGE_AUTHENTICATOR, vec![0; 15]).expect("a"));
        assert!(r.encode(b"s", None).is_err(), "two, one of them short");
        let mut r = Repr::new(Code::AccessRequest, 1);
        r.push(AttributeRepr::new(AttributeType::MESSAGE_AUTHENTICATOR, vec![0; 17]).expect("a"));
        assert!(r.encode(b"s", None).is_err());
        let accept = Repr::new(Code::AccessAccept, 1);
        assert!(accept.encode(b"s", None).is_err(), "a response needs its request's authenticator");
    }
}
