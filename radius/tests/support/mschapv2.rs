//! The peer's side of MS-CHAPv2 (RFC 2759 §8), so the tests can log in
//! through RADIUS as a PPP client would. Checked against RFC 2759 §9.2.

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use md4::{Digest, Md4};
use sha1::Sha1;

/// RFC 2759 §8.2 ChallengeHash.
pub fn challenge_hash(peer: &[u8; 16], authenticator: &[u8; 16], user: &[u8]) -> [u8; 8] {
    let d = Sha1::new().chain_update(peer).chain_update(authenticator).chain_update(user).finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// RFC 2759 §8.3 NtPasswordHash.
pub fn nt_password_hash(password: &str) -> [u8; 16] {
    let unicode: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Md4::digest(&unicode).into()
}

/// Seven key octets spread over eight DES key octets (parity bits unused).
fn des_key(s: &[u8]) -> [u8; 8] {
    let k = [
        s[0] >> 1,
        ((s[0] & 0x01) << 6) | (s[1] >> 2),
        ((s[1] & 0x03) << 5) | (s[2] >> 3),
        ((s[2] & 0x07) << 4) | (s[3] >> 4),
        ((s[3] & 0x0f) << 3) | (s[4] >> 5),
        ((s[4] & 0x1f) << 2) | (s[5] >> 6),
        ((s[5] & 0x3f) << 1) | (s[6] >> 7),
        s[6] & 0x7f,
    ];
    k.map(|b| b << 1)
}

/// RFC 2759 §8.5 ChallengeResponse.
fn challenge_response(challenge: &[u8; 8], hash: &[u8; 16]) -> [u8; 24] {
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(hash);
    let mut out = [0u8; 24];
    for i in 0..3 {
        let cipher = des::Des::new_from_slice(&des_key(&z[i * 7..i * 7 + 7])).expect("key");
        let mut block = GenericArray::clone_from_slice(challenge);
        cipher.encrypt_block(&mut block);
        out[i * 8..i * 8 + 8].copy_from_slice(&block);
    }
    out
}

/// RFC 2759 §8.1 GenerateNTResponse.
pub fn nt_response(authenticator: &[u8; 16], peer: &[u8; 16], user: &[u8], password: &str) -> [u8; 24] {
    challenge_response(&challenge_hash(peer, authenticator, user), &nt_password_hash(password))
}

/// RFC 2759 §8.7 GenerateAuthenticatorResponse: "S=" and 40 hex digits.
pub fn authenticator_response(
    password: &str,
    nt_response: &[u8; 24],
    peer: &[u8; 16],
    authenticator: &[u8; 16],
    user: &[u8],
) -> String {
    const MAGIC1: &[u8] = b"Magic server to client signing constant";
    const MAGIC2: &[u8] = b"Pad to make it do more than one iteration";
    let hash_hash: [u8; 16] = Md4::digest(nt_password_hash(password)).into();
    let d = Sha1::new().chain_update(hash_hash).chain_update(nt_response).chain_update(MAGIC1).finalize();
    let d = Sha1::new()
        .chain_update(d)
        .chain_update(challenge_hash(peer, authenticator, user))
        .chain_update(MAGIC2)
        .finalize();
    let hex: String = d.iter().map(|b| format!("{b:02X}")).collect();
    format!("S={hex}")
}

#[test]
fn rfc2759_section_9_2_vectors() {
    let auth =
        [0x5B, 0x5D, 0x7C, 0x7D, 0x7B, 0x3F, 0x2F, 0x3E, 0x3C, 0x2C, 0x60, 0x21, 0x32, 0x26, 0x26, 0x28];
    let peer =
        [0x21, 0x40, 0x23, 0x24, 0x25, 0x5E, 0x26, 0x2A, 0x28, 0x29, 0x5F, 0x2B, 0x3A, 0x33, 0x7C, 0x7E];
    assert_eq!(challenge_hash(&peer, &auth, b"User"), [0xD0, 0x2E, 0x43, 0x86, 0xBC, 0xE9, 0x12, 0x26]);
    assert_eq!(
        nt_password_hash("clientPass"),
        [0x44, 0xEB, 0xBA, 0x8D, 0x53, 0x12, 0xB8, 0xD6, 0x11, 0x47, 0x44, 0x11, 0xF5, 0x69, 0x89, 0xAE]
    );
    let nt = nt_response(&auth, &peer, b"User", "clientPass");
    assert_eq!(
        nt,
        [
            0x82, 0x30, 0x9E, 0xCD, 0x8D, 0x70, 0x8B, 0x5E, 0xA0, 0x8F, 0xAA, 0x39, 0x81, 0xCD, 0x83, 0x54,
            0x42, 0x33, 0x11, 0x4A, 0x3D, 0x85, 0xD6, 0xDF
        ]
    );
    assert_eq!(
        authenticator_response("clientPass", &nt, &peer, &auth, b"User"),
        "S=407A5589115FD0D6209F510FE9C04566932CDA56"
    );
}
