//! Attribute values hidden with the shared secret: User-Password
//! (RFC 2865 §5.2) and the salt encryption of Tunnel-Password (RFC 2868
//! §3.5) and the MS-MPPE keys (RFC 2548 §2.4.2-3).
//!
//! These work on one attribute's Value and know nothing of packets, so the
//! attribute formats built on them ([`crate::tunnel`], [`crate::microsoft`])
//! sit below the packet codec; signing a whole packet is
//! [`crate::crypto`]'s, a step after emit.

use md5::{Digest, Md5};

use crate::error::{Error, Result};

/// RFC 2865 §5.2: the password is padded to a multiple of 16 and at most
/// 128 octets long.
pub const MAX_USER_PASSWORD_LEN: usize = 128;
/// Salt-encrypted values: the longest ciphertext that fits an attribute
/// after a Tag and Salt (253 - 3) or a VSA header and Salt (253 - 8).
const MAX_SALTED_CIPHER_LEN: usize = 240;

/// MD5 of the concatenation of `parts`.
pub(crate) fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The RFC 2865 §5.2 chain: c(1) = p(1) xor MD5(S + first), c(i) =
/// p(i) xor MD5(S + c(i-1)). `first` is the Request Authenticator
/// (User-Password) or Request Authenticator + Salt (RFC 2868 §3.5).
fn chain_encrypt(plain: &mut [u8], secret: &[u8], first: &[&[u8]]) {
    let mut h = Md5::new();
    h.update(secret);
    for p in first {
        h.update(p);
    }
    let mut b: [u8; 16] = h.finalize().into();
    for block in plain.chunks_mut(16) {
        for (p, k) in block.iter_mut().zip(b.iter()) {
            *p ^= k;
        }
        b = md5(&[secret, block]);
    }
}

fn chain_decrypt(cipher: &mut [u8], secret: &[u8], first: &[&[u8]]) {
    let mut h = Md5::new();
    h.update(secret);
    for p in first {
        h.update(p);
    }
    let mut b: [u8; 16] = h.finalize().into();
    for block in cipher.chunks_mut(16) {
        let next = md5(&[secret, block]);
        for (c, k) in block.iter_mut().zip(b.iter()) {
            *c ^= k;
        }
        b = next;
    }
}

/// RFC 2865 §5.2: hide `password` (at most 128 octets) with the Request
/// Authenticator of the Access-Request that carries it.
pub fn hide_user_password(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Result<Vec<u8>> {
    if password.len() > MAX_USER_PASSWORD_LEN {
        return Err(Error::Invalid("User-Password over 128 octets"));
    }
    // An empty password still takes one block (Length is at least 18).
    let padded = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded, 0);
    chain_encrypt(&mut out, secret, &[authenticator]);
    Ok(out)
}

/// The inverse of [`hide_user_password`]; trailing NUL padding is removed.
pub fn recover_user_password(hidden: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Result<Vec<u8>> {
    if hidden.is_empty() || !hidden.len().is_multiple_of(16) || hidden.len() > MAX_USER_PASSWORD_LEN {
        return Err(Error::Malformed("User-Password length"));
    }
    let mut out = hidden.to_vec();
    chain_decrypt(&mut out, secret, &[authenticator]);
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// Salt encryption of RFC 2868 §3.5 (Tunnel-Password) and RFC 2548
/// §2.4.2 (MS-MPPE-Send-Key, MS-MPPE-Recv-Key): the plaintext is a length
/// octet, the data, and zero padding to 16; the chain starts from
/// MD5(secret + Request Authenticator + Salt). Returns Salt + ciphertext.
/// The Salt's most significant bit is forced on, as both RFCs require.
pub fn salt_encrypt(
    data: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
    salt: u16,
) -> Result<Vec<u8>> {
    let len = u8::try_from(data.len()).map_err(|_| Error::Invalid("salted value over 255 octets"))?;
    let padded = (data.len() + 1).div_ceil(16) * 16;
    if padded > MAX_SALTED_CIPHER_LEN {
        return Err(Error::Invalid("salted value too long for one attribute"));
    }
    let salt = (salt | 0x8000).to_be_bytes();
    let mut plain = Vec::with_capacity(padded);
    plain.push(len);
    plain.extend_from_slice(data);
    plain.resize(padded, 0);
    chain_encrypt(&mut plain, secret, &[request_authenticator, &salt]);
    let mut out = salt.to_vec();
    out.extend_from_slice(&plain);
    Ok(out)
}

/// The inverse of [`salt_encrypt`]: `salted` is Salt + ciphertext.
pub fn salt_decrypt(salted: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Result<Vec<u8>> {
    let salt = salted.get(..2).ok_or(Error::Malformed("salted value without salt"))?;
    let cipher = salted.get(2..).unwrap_or(&[]);
    if cipher.is_empty() || cipher.len() % 16 != 0 {
        return Err(Error::Malformed("salted value length"));
    }
    let mut plain = cipher.to_vec();
    chain_decrypt(&mut plain, secret, &[request_authenticator, salt]);
    let (&len, rest) = plain.split_first().ok_or(Error::Malformed("salted value"))?;
    // A length octet beyond the decrypted data means a wrong secret or a
    // damaged attribute.
    let data = rest.get(..usize::from(len)).ok_or(Error::Malformed("salted value length octet"))?;
    Ok(data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_password_multi_block() {
        let auth = [7u8; 16];
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 128] {
            let pw: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let hidden = hide_user_password(&pw, b"secret", &auth).expect("hide");
            assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
            assert_eq!(recover_user_password(&hidden, b"secret", &auth).expect("recover"), pw);
            if len > 16 {
                // The second block depends on the first ciphertext block
                // (RFC 2865 §5.2), not only on the secret.
                let mut other = pw.clone();
                other[0] ^= 1;
                let h2 = hide_user_password(&other, b"secret", &auth).expect("hide");
                assert_ne!(hidden[16..32], h2[16..32]);
            }
        }
        assert!(hide_user_password(&[b'x'; 129], b"s", &auth).is_err());
        for bad in [0usize, 15, 17, 144] {
            assert!(recover_user_password(&vec![0; bad], b"s", &auth).is_err(), "{bad}");
        }
    }

    #[test]
    fn salt_encryption_round_trip_and_checks() {
        let auth = [9u8; 16];
        let key = [0x11u8; 16];
        let s = salt_encrypt(&key, b"secret", &auth, 0x0102).expect("encrypt");
        assert_eq!(s[..2], [0x81, 0x02]);
        assert_eq!(s.len(), 2 + 32, "1 + 16 octets pad to 32");
        assert_eq!(salt_decrypt(&s, b"secret", &auth).expect("decrypt"), key);
        // A different salt gives a different ciphertext for the same key.
        let s2 = salt_encrypt(&key, b"secret", &auth, 0x0103).expect("encrypt");
        assert_ne!(s[2..], s2[2..]);
        for bad in [&[][..], &[0x80], &[0x80, 1], &[0x80, 1, 2, 3]] {
            assert!(salt_decrypt(bad, b"secret", &auth).is_err(), "{bad:?}");
        }
        assert!(salt_encrypt(&[0; 240], b"s", &auth, 0).is_err());
        assert!(salt_encrypt(&[0; 239], b"s", &auth, 0).is_ok());
    }
}
