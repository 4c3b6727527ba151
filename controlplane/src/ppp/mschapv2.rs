//! MS-CHAP-V2 (RFC 2759): the Response value layout, the NT-Response and
//! authenticator-response computations (§8), the Success and Failure message
//! formats (§5, §6), and MPPE key derivation (RFC 3079 §3).
//!
//! MS-CHAP-V2 travels in CHAP packets (RFC 1994) with Algorithm 0x81; the
//! packet codec is in [`super::chap`].

use super::error::Error;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use md4::{Digest as _, Md4};
use sha1::Sha1;
use std::fmt::Write as _;

/// RFC 2759 §4: the Challenge value is 16 octets.
pub const CHALLENGE_LEN: usize = 16;
/// RFC 2759 §4: the Response value is 49 octets.
pub const RESPONSE_LEN: usize = 49;

/// RFC 2759 §6 Failure error codes.
pub mod error_code {
    pub const RESTRICTED_LOGON_HOURS: u32 = 646;
    pub const ACCOUNT_DISABLED: u32 = 647;
    pub const PASSWORD_EXPIRED: u32 = 648;
    pub const NO_DIALIN_PERMISSION: u32 = 649;
    pub const AUTHENTICATION_FAILURE: u32 = 691;
    pub const CHANGING_PASSWORD: u32 = 709;
}

/// The 49-octet Response value (RFC 2759 §4): Peer-Challenge, 8 reserved
/// zero octets, NT-Response, Flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseValue {
    pub peer_challenge: [u8; 16],
    pub nt_response: [u8; 24],
    pub flags: u8,
}

impl ResponseValue {
    pub fn parse(value: &[u8]) -> Result<Self, Error> {
        if value.len() != RESPONSE_LEN {
            return Err(Error::Malformed("MS-CHAP-V2 response length"));
        }
        let mut peer_challenge = [0u8; 16];
        let mut nt_response = [0u8; 24];
        peer_challenge.copy_from_slice(value.get(0..16).ok_or(Error::Truncated)?);
        nt_response.copy_from_slice(value.get(24..48).ok_or(Error::Truncated)?);
        Ok(ResponseValue {
            peer_challenge,
            nt_response,
            flags: value.get(48).copied().ok_or(Error::Truncated)?,
        })
    }

    pub fn to_bytes(&self) -> [u8; RESPONSE_LEN] {
        let mut out = [0u8; RESPONSE_LEN];
        out[..16].copy_from_slice(&self.peer_challenge);
        out[24..48].copy_from_slice(&self.nt_response);
        out[48] = self.flags;
        out
    }
}

/// RFC 2759 §8.3 NtPasswordHash: MD4 of the UTF-16LE password.
pub fn nt_password_hash(password: &str) -> [u8; 16] {
    let unicode: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Md4::digest(&unicode).into()
}

/// RFC 2759 §8.4 HashNtPasswordHash.
pub fn hash_nt_password_hash(password_hash: &[u8; 16]) -> [u8; 16] {
    Md4::digest(password_hash).into()
}

/// RFC 2759 §8.2: only the user name without any "DOMAIN\" prefix enters
/// the challenge hash.
fn strip_domain(username: &[u8]) -> &[u8] {
    match username.iter().rposition(|b| *b == b'\\') {
        Some(i) => username.get(i + 1..).unwrap_or(&[]),
        None => username,
    }
}

/// RFC 2759 §8.2 ChallengeHash.
pub fn challenge_hash(
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    username: &[u8],
) -> [u8; 8] {
    let digest = Sha1::new()
        .chain_update(peer_challenge)
        .chain_update(authenticator_challenge)
        .chain_update(strip_domain(username))
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Spread 7 key octets over 8 DES key octets (RFC 2759 §8.6 DesEncrypt; the
/// parity bit is ignored by DES).
fn des_key(seven: &[u8]) -> [u8; 8] {
    let mut k = [0u8; 7];
    for (d, s) in k.iter_mut().zip(seven) {
        *d = *s;
    }
    [
        k[0] & 0xfe,
        (k[0] << 7) | (k[1] >> 1),
        (k[1] << 6) | (k[2] >> 2),
        (k[2] << 5) | (k[3] >> 3),
        (k[3] << 4) | (k[4] >> 4),
        (k[4] << 3) | (k[5] >> 5),
        (k[5] << 2) | (k[6] >> 6),
        k[6] << 1,
    ]
}

fn des_encrypt(clear: &[u8; 8], key7: &[u8]) -> [u8; 8] {
    let cipher = des::Des::new(&GenericArray::from(des_key(key7)));
    let mut block = GenericArray::from(*clear);
    cipher.encrypt_block(&mut block);
    block.into()
}

/// RFC 2759 §8.5 ChallengeResponse: three DES encryptions keyed by the
/// zero-padded 21-octet password hash.
pub fn challenge_response(challenge: &[u8; 8], password_hash: &[u8; 16]) -> [u8; 24] {
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(password_hash);
    let mut out = [0u8; 24];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&des_encrypt(challenge, &z[i * 7..i * 7 + 7]));
    }
    out
}

/// RFC 2759 §8.1 GenerateNTResponse.
pub fn generate_nt_response(
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    username: &[u8],
    password: &str,
) -> [u8; 24] {
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, username);
    challenge_response(&challenge, &nt_password_hash(password))
}

/// RFC 2759 §8.7 GenerateAuthenticatorResponse from the password hash:
/// returns the 42-character "S=<40 hex digits>" string.
pub fn generate_authenticator_response(
    password_hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    username: &[u8],
) -> String {
    const MAGIC1: &[u8] = b"Magic server to client signing constant";
    const MAGIC2: &[u8] = b"Pad to make it do more than one iteration";
    let hash_hash = hash_nt_password_hash(password_hash);
    let digest =
        Sha1::new().chain_update(hash_hash).chain_update(nt_response).chain_update(MAGIC1).finalize();
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, username);
    let digest = Sha1::new().chain_update(digest).chain_update(challenge).chain_update(MAGIC2).finalize();
    let mut s = String::from("S=");
    for b in digest {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Constant-time equality, so that comparing secrets leaks no timing.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 2759 §5 Success message: `S=<auth_string> M=<message>`.
pub fn success_message(authenticator_response: &str, message: &str) -> String {
    format!("{authenticator_response} M={message}")
}

/// Split a Success message into its authenticator response ("S=..." of 42
/// characters) and the text after "M=". RFC 2759 §5.
pub fn parse_success_message(message: &[u8]) -> Result<(String, String), Error> {
    let text = std::str::from_utf8(message).map_err(|_| Error::Malformed("success message"))?;
    let auth = text.get(..42).filter(|s| s.starts_with("S=")).ok_or(Error::Malformed("success message"))?;
    let rest = text.get(42..).unwrap_or("");
    let msg = rest.trim_start().strip_prefix("M=").unwrap_or("");
    Ok((auth.to_string(), msg.to_string()))
}

/// RFC 2759 §6 Failure message fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureMessage {
    /// E=: an [`error_code`].
    pub error: u32,
    /// R=: whether the peer may retry.
    pub retry: bool,
    /// C=: the next challenge (only meaningful with retry).
    pub challenge: Option<[u8; 16]>,
    /// V=: password-change protocol version (3).
    pub version: u32,
    /// M=: free text.
    pub message: String,
}

impl FailureMessage {
    pub fn authentication_failure(challenge: [u8; 16], message: &str) -> Self {
        FailureMessage {
            error: error_code::AUTHENTICATION_FAILURE,
            retry: false,
            challenge: Some(challenge),
            version: 3,
            message: message.to_string(),
        }
    }

    pub fn to_message(&self) -> String {
        let mut s = format!("E={} R={}", self.error, u8::from(self.retry));
        if let Some(c) = self.challenge {
            s.push_str(" C=");
            for b in c {
                let _ = write!(s, "{b:02X}");
            }
        }
        let _ = write!(s, " V={} M={}", self.version, self.message);
        s
    }

    /// Parse `E=eeeeeeeeee R=r C=cccc... V=vvvvvvvvvv M=<msg>`; fields other
    /// than E are optional in practice.
    pub fn parse(message: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(message).map_err(|_| Error::Malformed("failure message"))?;
        let (head, msg) = match text.find("M=") {
            Some(i) => (text.get(..i).unwrap_or(""), text.get(i + 2..).unwrap_or("")),
            None => (text, ""),
        };
        let mut out =
            FailureMessage { error: 0, retry: false, challenge: None, version: 0, message: msg.to_string() };
        let mut have_error = false;
        for field in head.split_whitespace() {
            let (key, value) = field.split_at_checked(2).unwrap_or(("", ""));
            match key {
                "E=" => {
                    out.error = value.parse().map_err(|_| Error::Malformed("E="))?;
                    have_error = true;
                }
                "R=" => out.retry = value == "1",
                "V=" => out.version = value.parse().unwrap_or(0),
                "C=" => {
                    let mut c = [0u8; 16];
                    if value.len() == 32 {
                        for (i, b) in c.iter_mut().enumerate() {
                            let hex = value.get(2 * i..2 * i + 2).ok_or(Error::Malformed("C="))?;
                            *b = u8::from_str_radix(hex, 16).map_err(|_| Error::Malformed("C="))?;
                        }
                        out.challenge = Some(c);
                    }
                }
                _ => {}
            }
        }
        if !have_error {
            return Err(Error::Malformed("failure message without E="));
        }
        Ok(out)
    }
}

/// RFC 3079 §3.4 GetMasterKey.
pub fn master_key(password_hash_hash: &[u8; 16], nt_response: &[u8; 24]) -> [u8; 16] {
    const MAGIC1: &[u8] = b"This is the MPPE Master Key";
    let digest = Sha1::new()
        .chain_update(password_hash_hash)
        .chain_update(nt_response)
        .chain_update(MAGIC1)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// RFC 3079 §3.4 GetAsymmetricStartKey: `key_len` is 8 (40/56-bit) or 16
/// (128-bit); `send` and `server` select the magic constant.
pub fn asymmetric_start_key(master_key: &[u8; 16], key_len: usize, send: bool, server: bool) -> Vec<u8> {
    const MAGIC2: &[u8] =
        b"On the client side, this is the send key; on the server side, it is the receive key.";
    const MAGIC3: &[u8] =
        b"On the client side, this is the receive key; on the server side, it is the send key.";
    const PAD1: [u8; 40] = [0; 40];
    const PAD2: [u8; 40] = [0xf2; 40];
    let magic = if send == server { MAGIC3 } else { MAGIC2 };
    let digest = Sha1::new()
        .chain_update(master_key)
        .chain_update(PAD1)
        .chain_update(magic)
        .chain_update(PAD2)
        .finalize();
    digest.get(..key_len.min(16)).unwrap_or(&[]).to_vec()
}

/// MPPE send and receive start keys of one side (RFC 3079 §3.4), as RADIUS
/// would hand them to the NAS in MS-MPPE-Send-Key / MS-MPPE-Recv-Key.
pub fn mppe_keys(password: &str, nt_response: &[u8; 24], server: bool) -> ([u8; 16], [u8; 16]) {
    let hash_hash = hash_nt_password_hash(&nt_password_hash(password));
    let master = master_key(&hash_hash, nt_response);
    let mut send = [0u8; 16];
    let mut recv = [0u8; 16];
    send.copy_from_slice(&asymmetric_start_key(&master, 16, true, server));
    recv.copy_from_slice(&asymmetric_start_key(&master, 16, false, server));
    (send, recv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        hex(s).try_into().expect("length")
    }

    // RFC 2759 §9.2 test vectors.
    const USER: &[u8] = b"User";
    const PASSWORD: &str = "clientPass";
    const AUTH_CHALLENGE: &str = "5B 5D 7C 7D 7B 3F 2F 3E 3C 2C 60 21 32 26 26 28";
    const PEER_CHALLENGE: &str = "21 40 23 24 25 5E 26 2A 28 29 5F 2B 3A 33 7C 7E";
    const CHALLENGE: &str = "D0 2E 43 86 BC E9 12 26";
    const PASSWORD_HASH: &str = "44 EB BA 8D 53 12 B8 D6 11 47 44 11 F5 69 89 AE";
    const NT_RESPONSE: &str = "82 30 9E CD 8D 70 8B 5E A0 8F AA 39 81 CD 83 54 42 33 11 4A 3D 85 D6 DF";
    const PASSWORD_HASH_HASH: &str = "41 C0 0C 58 4B D2 D9 1C 40 17 A2 A1 2F A5 9F 3F";
    const AUTHENTICATOR_RESPONSE: &str = "S=407A5589115FD0D6209F510FE9C04566932CDA56";

    #[test]
    fn rfc2759_vectors() {
        let auth: [u8; 16] = arr(AUTH_CHALLENGE);
        let peer: [u8; 16] = arr(PEER_CHALLENGE);
        assert_eq!(nt_password_hash(PASSWORD), arr::<16>(PASSWORD_HASH));
        assert_eq!(hash_nt_password_hash(&arr(PASSWORD_HASH)), arr::<16>(PASSWORD_HASH_HASH));
        assert_eq!(challenge_hash(&peer, &auth, USER), arr::<8>(CHALLENGE));
        assert_eq!(challenge_response(&arr(CHALLENGE), &arr(PASSWORD_HASH)), arr::<24>(NT_RESPONSE));
        let nt = generate_nt_response(&auth, &peer, USER, PASSWORD);
        assert_eq!(nt, arr::<24>(NT_RESPONSE));
        assert_eq!(
            generate_authenticator_response(&arr(PASSWORD_HASH), &nt, &peer, &auth, USER),
            AUTHENTICATOR_RESPONSE
        );
        // A domain prefix does not change the challenge hash.
        assert_eq!(challenge_hash(&peer, &auth, b"CORP\\User"), arr::<8>(CHALLENGE));
        // A wrong password gives a different NT-Response.
        assert_ne!(generate_nt_response(&auth, &peer, USER, "clientpass"), nt);
    }

    #[test]
    fn rfc3079_keys() {
        // RFC 3079 §3.5.3 (128-bit keys from the RFC 2759 vectors).
        let master = master_key(&arr(PASSWORD_HASH_HASH), &arr(NT_RESPONSE));
        assert_eq!(master, arr::<16>("FD EC E3 71 7A 8C 83 8C B3 88 E5 27 AE 3C DD 31"));
        let send = asymmetric_start_key(&master, 16, true, true);
        assert_eq!(send, hex("8B 7C DC 14 9B 99 3A 1B A1 18 CB 15 3F 56 DC CB"));
        // The server's send key is the client's receive key.
        assert_eq!(asymmetric_start_key(&master, 16, false, false), send);
        // 40/56-bit start keys are the first 8 octets (§3.5.1).
        assert_eq!(asymmetric_start_key(&master, 8, true, true), send[..8].to_vec());
        let (server_send, server_recv) = mppe_keys(PASSWORD, &arr(NT_RESPONSE), true);
        let (client_send, client_recv) = mppe_keys(PASSWORD, &arr(NT_RESPONSE), false);
        assert_eq!(server_send.to_vec(), send);
        assert_eq!(server_send, client_recv);
        assert_eq!(server_recv, client_send);
        assert_ne!(server_send, server_recv);
    }

    #[test]
    fn response_value_layout() {
        let value =
            ResponseValue { peer_challenge: arr(PEER_CHALLENGE), nt_response: arr(NT_RESPONSE), flags: 0 };
        let bytes = value.to_bytes();
        assert_eq!(&bytes[16..24], &[0u8; 8]);
        assert_eq!(ResponseValue::parse(&bytes), Ok(value));
        for n in 0..RESPONSE_LEN {
            assert!(ResponseValue::parse(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn success_and_failure_messages() {
        let m = success_message(AUTHENTICATOR_RESPONSE, "Welcome");
        assert_eq!(m, "S=407A5589115FD0D6209F510FE9C04566932CDA56 M=Welcome");
        assert_eq!(
            parse_success_message(m.as_bytes()),
            Ok((AUTHENTICATOR_RESPONSE.to_string(), "Welcome".to_string()))
        );
        // Windows servers may send the bare authenticator response.
        assert_eq!(
            parse_success_message(AUTHENTICATOR_RESPONSE.as_bytes()),
            Ok((AUTHENTICATOR_RESPONSE.to_string(), String::new()))
        );
        assert!(parse_success_message(b"S=12").is_err());
        assert!(parse_success_message(b"X=407A5589115FD0D6209F510FE9C04566932CDA56").is_err());

        let f = FailureMessage::authentication_failure(arr(AUTH_CHALLENGE), "bad password");
        let text = f.to_message();
        assert_eq!(text, "E=691 R=0 C=5B5D7C7D7B3F2F3E3C2C602132262628 V=3 M=bad password");
        assert_eq!(FailureMessage::parse(text.as_bytes()), Ok(f));
        let bare = FailureMessage::parse(b"E=649 R=0").expect("parse");
        assert_eq!(bare.error, error_code::NO_DIALIN_PERMISSION);
        assert!(FailureMessage::parse(b"R=1 M=x").is_err());
        assert!(FailureMessage::parse(b"E=abc").is_err());
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
