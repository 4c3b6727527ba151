//! LCP (RFC 1661 §5–§6): its options, what it negotiated, and the option
//! policy the [`super::fsm::Fsm`] runs for it. The packet format it shares
//! with every NCP is [`super::packet`].

use super::auth::AuthMethod;
pub use super::auth::{chap_algorithm, AuthProtocol};
use super::error::{be16, be32, put, Error};
use super::fsm::{OptionPolicy, Verdict};
use super::packet::{ConfigOption, DEFAULT_MRU};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// LCP packets use the whole alphabet of [`super::packet::code`].
pub type LcpRepr = super::packet::Repr<LcpOption>;

/// Bytes a tunnelled PPP frame costs on top of its Information field when
/// carried over L2TPv2/UDP/IPv4 as this LNS sends it: IPv4 20, UDP 8, L2TP
/// data header with Length bit 8 (RFC 2661 §3.1, no sequence numbers on
/// data), Address/Control 2, Protocol 2.
pub const L2TP_IPV4_OVERHEAD: u16 = 20 + 8 + 8 + 2 + 2;

/// LCP option types (RFC 1661 §6, IANA "LCP Option Types").
pub mod option_type {
    pub const MAXIMUM_RECEIVE_UNIT: u8 = 1;
    pub const ASYNC_CONTROL_CHARACTER_MAP: u8 = 2;
    pub const AUTHENTICATION_PROTOCOL: u8 = 3;
    pub const QUALITY_PROTOCOL: u8 = 4;
    pub const MAGIC_NUMBER: u8 = 5;
    pub const PROTOCOL_FIELD_COMPRESSION: u8 = 7;
    pub const ADDRESS_CONTROL_FIELD_COMPRESSION: u8 = 8;
    pub const CALLBACK: u8 = 13;
    pub const MRRU: u8 = 17;
    pub const ENDPOINT_DISCRIMINATOR: u8 = 19;
}

/// An LCP configuration option (RFC 1661 §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LcpOption {
    MaximumReceiveUnit(u16),
    AsyncControlCharacterMap(u32),
    AuthenticationProtocol(AuthProtocol),
    QualityProtocol {
        protocol: u16,
        data: Vec<u8>,
    },
    MagicNumber(u32),
    ProtocolFieldCompression,
    AddressControlFieldCompression,
    /// Options this implementation does not negotiate (MRRU, Endpoint
    /// Discriminator, Callback, ...), kept raw so they can be rejected
    /// verbatim (RFC 1661 §5.4).
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
}

impl ConfigOption for LcpOption {
    fn kind(&self) -> u8 {
        use option_type::*;
        match self {
            LcpOption::MaximumReceiveUnit(_) => MAXIMUM_RECEIVE_UNIT,
            LcpOption::AsyncControlCharacterMap(_) => ASYNC_CONTROL_CHARACTER_MAP,
            LcpOption::AuthenticationProtocol(_) => AUTHENTICATION_PROTOCOL,
            LcpOption::QualityProtocol { .. } => QUALITY_PROTOCOL,
            LcpOption::MagicNumber(_) => MAGIC_NUMBER,
            LcpOption::ProtocolFieldCompression => PROTOCOL_FIELD_COMPRESSION,
            LcpOption::AddressControlFieldCompression => ADDRESS_CONTROL_FIELD_COMPRESSION,
            LcpOption::Unknown { kind, .. } => *kind,
        }
    }

    fn parse(kind: u8, data: &[u8]) -> Result<Self, Error> {
        use option_type::*;
        let bad = Error::BadOption { kind };
        // Fixed-length options must have exactly their RFC 1661 §6 length.
        let exact = |n: usize| if data.len() == n { Ok(()) } else { Err(bad) };
        Ok(match kind {
            MAXIMUM_RECEIVE_UNIT => {
                exact(2)?;
                LcpOption::MaximumReceiveUnit(be16(data, 0).ok_or(bad)?)
            }
            ASYNC_CONTROL_CHARACTER_MAP => {
                exact(4)?;
                LcpOption::AsyncControlCharacterMap(be32(data, 0).ok_or(bad)?)
            }
            AUTHENTICATION_PROTOCOL => LcpOption::AuthenticationProtocol(AuthProtocol::parse(data)?),
            QUALITY_PROTOCOL => LcpOption::QualityProtocol {
                protocol: be16(data, 0).ok_or(bad)?,
                data: data.get(2..).unwrap_or(&[]).to_vec(),
            },
            MAGIC_NUMBER => {
                exact(4)?;
                LcpOption::MagicNumber(be32(data, 0).ok_or(bad)?)
            }
            PROTOCOL_FIELD_COMPRESSION => {
                exact(0)?;
                LcpOption::ProtocolFieldCompression
            }
            ADDRESS_CONTROL_FIELD_COMPRESSION => {
                exact(0)?;
                LcpOption::AddressControlFieldCompression
            }
            _ => LcpOption::Unknown { kind, data: data.to_vec() },
        })
    }

    fn data_len(&self) -> usize {
        match self {
            LcpOption::MaximumReceiveUnit(_) => 2,
            LcpOption::AsyncControlCharacterMap(_) | LcpOption::MagicNumber(_) => 4,
            LcpOption::AuthenticationProtocol(p) => p.data_len(),
            LcpOption::QualityProtocol { data, .. } => 2 + data.len(),
            LcpOption::ProtocolFieldCompression | LcpOption::AddressControlFieldCompression => 0,
            LcpOption::Unknown { data, .. } => data.len(),
        }
    }

    fn emit_data(&self, buf: &mut [u8]) -> Result<(), Error> {
        match self {
            LcpOption::MaximumReceiveUnit(v) => put(buf, 0, &v.to_be_bytes()),
            LcpOption::AsyncControlCharacterMap(v) | LcpOption::MagicNumber(v) => {
                put(buf, 0, &v.to_be_bytes())
            }
            LcpOption::AuthenticationProtocol(p) => p.emit(buf),
            LcpOption::QualityProtocol { protocol, data } => {
                put(buf, 0, &protocol.to_be_bytes())?;
                put(buf, 2, data)
            }
            LcpOption::ProtocolFieldCompression | LcpOption::AddressControlFieldCompression => Ok(()),
            LcpOption::Unknown { data, .. } => put(buf, 0, data),
        }
    }
}

/// Local LCP wishes and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LcpConfig {
    /// The MRU we announce. Chosen so that a full frame still fits the
    /// access network once tunnelled: see [`LcpConfig::mru_for_access_mtu`].
    pub mru: u16,
    /// A peer MRU below this is Nak'ed up to it (RFC 1661 §6.1 lets either
    /// side suggest a value).
    pub min_peer_mru: u16,
    /// Negotiate a Magic-Number (RFC 1661 §6.4) for loop detection.
    pub magic_number: bool,
    /// Authentication we require from the peer, most preferred first (the
    /// authenticator role). Empty: none.
    pub require_auth: Vec<AuthMethod>,
    /// Authentication we agree to perform when the peer asks (the peer role),
    /// most preferred first. Empty: reject the option.
    pub accept_auth: Vec<AuthMethod>,
    /// Accept the peer's Protocol-Field-Compression request.
    pub accept_pfc: bool,
    /// Accept the peer's Address-and-Control-Field-Compression request.
    pub accept_acfc: bool,
    /// Request PFC / ACFC ourselves.
    pub request_pfc: bool,
    pub request_acfc: bool,
    /// How many repeated Magic-Number collisions mean the link is looped back
    /// (RFC 1661 §6.4).
    pub loopback_threshold: u32,
}

/// Bytes a tunnelled PPP frame costs on top of its Information field on
/// an access link: the outer IP header (IPv4 20, IPv6 40), UDP 8, the
/// L2TP data header with its Length field (RFC 2661 §3.1: LACs commonly
/// set L; this LNS does not) and, when the session is sequenced (§5.4),
/// Ns and Nr, then PPP Address/Control and a 2-byte Protocol (what a
/// frame carries when ACFC and PFC are not negotiated, which LCP has not
/// decided yet when the MRU is proposed).
pub fn l2tp_overhead(ipv6: bool, sequencing: bool) -> u16 {
    let ip = if ipv6 { 40 } else { 20 };
    ip + 8 + 8 + if sequencing { 4 } else { 0 } + 2 + 2
}

/// The largest MRU derived from an access link: the RFC 1661 §6.1 default.
/// A jumbo access link does not raise it: subscribers expect 1500, and
/// the data plane's frames hold a 1500-byte packet plus its tunnel.
pub const MAX_DERIVED_MRU: u16 = DEFAULT_MRU;

impl LcpConfig {
    /// RFC 1661 §6.1 MRU such that a full-size frame from the subscriber,
    /// once put into L2TP/UDP/IPv4, fits a path MTU of `mtu`.
    pub fn mru_for_access_mtu(mtu: u16) -> u16 {
        mtu.saturating_sub(L2TP_IPV4_OVERHEAD).max(64)
    }

    /// The MRU for a session whose LAC is reached over a link of MTU
    /// `mtu` (outer IPv6 when `ipv6`, L2TP sequenced when `sequencing`):
    /// a frame of that size, tunnelled either way, fits the link without
    /// fragments. At most [`MAX_DERIVED_MRU`], at least 64.
    pub fn mru_for_access_link(mtu: u16, ipv6: bool, sequencing: bool) -> u16 {
        mtu.saturating_sub(l2tp_overhead(ipv6, sequencing)).clamp(64, MAX_DERIVED_MRU)
    }
}

impl Default for LcpConfig {
    fn default() -> Self {
        LcpConfig {
            mru: LcpConfig::mru_for_access_mtu(1500),
            min_peer_mru: 128,
            magic_number: true,
            require_auth: Vec::new(),
            accept_auth: Vec::new(),
            accept_pfc: true,
            accept_acfc: true,
            request_pfc: false,
            request_acfc: false,
            loopback_threshold: 3,
        }
    }
}

/// What one direction of the link negotiated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LcpNegotiated {
    /// MRU (RFC 1661 §6.1 default 1500 when absent).
    pub mru: u16,
    pub magic_number: Option<u32>,
    /// The authentication this direction's requester demanded.
    pub auth: Option<AuthProtocol>,
    pub pfc: bool,
    pub acfc: bool,
}

impl LcpNegotiated {
    fn from_options(options: &[LcpOption]) -> Self {
        let mut n = LcpNegotiated { mru: DEFAULT_MRU, ..Default::default() };
        for option in options {
            match option {
                LcpOption::MaximumReceiveUnit(v) => n.mru = *v,
                LcpOption::MagicNumber(v) => n.magic_number = Some(*v),
                LcpOption::AuthenticationProtocol(p) => n.auth = Some(p.clone()),
                LcpOption::ProtocolFieldCompression => n.pfc = true,
                LcpOption::AddressControlFieldCompression => n.acfc = true,
                _ => {}
            }
        }
        n
    }
}

/// The LCP configuration a policy reads: its link's (shared by the links
/// of one configuration, as [`super::session::Session`] holds it), or one
/// of its own (read back from a snapshot, or given alone). Serialized as
/// the [`LcpConfig`].
#[derive(Debug, Clone)]
pub enum LcpConfigRef {
    Link(std::sync::Arc<super::session::SessionConfig>),
    Own(std::sync::Arc<LcpConfig>),
}

impl std::ops::Deref for LcpConfigRef {
    type Target = LcpConfig;
    fn deref(&self) -> &LcpConfig {
        match self {
            LcpConfigRef::Link(c) => &c.lcp,
            LcpConfigRef::Own(c) => c,
        }
    }
}

impl From<LcpConfig> for LcpConfigRef {
    fn from(c: LcpConfig) -> Self {
        LcpConfigRef::Own(std::sync::Arc::new(c))
    }
}

impl Serialize for LcpConfigRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for LcpConfigRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        LcpConfig::deserialize(d).map(LcpConfigRef::from)
    }
}

/// The LCP option policy for the [`super::fsm::Fsm`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LcpPolicy {
    pub config: LcpConfigRef,
    want_mru: Option<u16>,
    want_auth: Option<usize>,
    want_magic: Option<u32>,
    want_pfc: bool,
    want_acfc: bool,
    /// The peer refused every authentication protocol we can require.
    auth_refused: bool,
    /// Magic-Number we last suggested in a Configure-Nak.
    last_nak_magic: Option<u32>,
    loop_suspicions: u32,
    looped: bool,
    /// What the peer acknowledged of our request (our receive side).
    pub local: LcpNegotiated,
    /// What we acknowledged of the peer's request (the peer's receive side).
    pub peer: LcpNegotiated,
}

/// RFC 1661 §6.4: a Magic-Number chosen at random, never zero, and not one
/// of `avoid` (ours or the peer's, on a collision).
fn random_magic(rng: &mut impl Rng, avoid: &[u32]) -> u32 {
    loop {
        let m: u32 = rng.gen();
        if m != 0 && !avoid.contains(&m) {
            return m;
        }
    }
}

impl LcpPolicy {
    /// `rng` draws the first Magic-Number (RFC 1661 §6.4).
    pub fn new(config: impl Into<LcpConfigRef>, rng: &mut ChaCha8Rng) -> Self {
        let mut policy = LcpPolicy {
            config: config.into(),
            want_mru: None,
            want_auth: None,
            want_magic: None,
            want_pfc: false,
            want_acfc: false,
            auth_refused: false,
            last_nak_magic: None,
            loop_suspicions: 0,
            looped: false,
            local: LcpNegotiated::default(),
            peer: LcpNegotiated::default(),
        };
        policy.reset(rng);
        policy
    }

    /// The peer Nak'ed or Rejected every authentication protocol we can
    /// require: the link cannot proceed (RFC 3145 cause 15).
    pub fn auth_refused(&self) -> bool {
        self.auth_refused
    }

    /// Magic-Number collisions repeated past the threshold: the link is
    /// looped back (RFC 1661 §6.4, RFC 3145 cause 7).
    pub fn looped_back(&self) -> bool {
        self.looped
    }

    /// Our current Magic-Number (0 when not negotiated, RFC 1661 §5.8).
    pub fn magic_number(&self) -> u32 {
        self.local.magic_number.or(self.want_magic).unwrap_or(0)
    }

    /// The authentication protocol currently requested from the peer.
    pub fn requested_auth(&self) -> Option<AuthMethod> {
        self.want_auth.and_then(|i| self.config.require_auth.get(i).copied())
    }

    /// Adopt options a LAC negotiated on our behalf (RFC 2661 §4.4.5 proxy
    /// LCP AVPs): `sent` is what the LAC requested as us, `received` what the
    /// peer requested and the LAC acknowledged. Returns false (leaving the
    /// policy untouched) when the result is not acceptable to us, so LCP must
    /// be renegotiated.
    pub fn adopt_proxy(&mut self, sent: &[LcpOption], received: &[LcpOption], rng: &mut ChaCha8Rng) -> bool {
        let local = LcpNegotiated::from_options(sent);
        if !self.config.require_auth.is_empty() {
            let acceptable = local
                .auth
                .as_ref()
                .and_then(AuthMethod::from_protocol)
                .is_some_and(|m| self.config.require_auth.contains(&m));
            if !acceptable {
                return false;
            }
        }
        let saved = (self.last_nak_magic, self.loop_suspicions);
        let verdict = self.judge(received, rng);
        (self.last_nak_magic, self.loop_suspicions) = saved;
        if verdict != Verdict::Ack {
            return false;
        }
        self.local = local;
        self.peer = LcpNegotiated::from_options(received);
        true
    }
}

impl OptionPolicy for LcpPolicy {
    type Option = LcpOption;

    fn reset(&mut self, rng: &mut ChaCha8Rng) {
        self.want_mru = Some(self.config.mru);
        self.want_auth = if self.config.require_auth.is_empty() { None } else { Some(0) };
        self.want_magic = self.config.magic_number.then(|| random_magic(rng, &[]));
        self.want_pfc = self.config.request_pfc;
        self.want_acfc = self.config.request_acfc;
        self.auth_refused = false;
        self.last_nak_magic = None;
        self.loop_suspicions = 0;
        self.looped = false;
        self.local = LcpNegotiated::default();
        self.peer = LcpNegotiated::default();
    }

    fn request(&mut self) -> Vec<LcpOption> {
        let mut options = Vec::new();
        if let Some(mru) = self.want_mru {
            options.push(LcpOption::MaximumReceiveUnit(mru));
        }
        if let Some(method) = self.requested_auth() {
            options.push(LcpOption::AuthenticationProtocol(method.to_protocol()));
        }
        if let Some(magic) = self.want_magic {
            options.push(LcpOption::MagicNumber(magic));
        }
        if self.want_pfc {
            options.push(LcpOption::ProtocolFieldCompression);
        }
        if self.want_acfc {
            options.push(LcpOption::AddressControlFieldCompression);
        }
        options
    }

    fn judge(&mut self, request: &[LcpOption], rng: &mut ChaCha8Rng) -> Verdict<LcpOption> {
        // RFC 1661 §6.4: a request carrying our own Magic-Number may be our
        // own request looped back. Answer only that with a Nak carrying a
        // different value, so that a loop shows up as repeated collisions
        // rather than as a rejection of our other options.
        if let Some(ours) = self.want_magic {
            if request.contains(&LcpOption::MagicNumber(ours)) {
                let suggestion = random_magic(rng, &[ours]);
                self.last_nak_magic = Some(suggestion);
                return Verdict::Nak(vec![LcpOption::MagicNumber(suggestion)]);
            }
        }
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        for option in request {
            match option {
                LcpOption::MaximumReceiveUnit(v) => {
                    if *v < self.config.min_peer_mru {
                        naks.push(LcpOption::MaximumReceiveUnit(self.config.min_peer_mru));
                    }
                }
                // Over L2TP the LAC does the async framing (RFC 2661 §4.4.5),
                // so any ACCM is harmless to acknowledge.
                LcpOption::AsyncControlCharacterMap(_) => {}
                LcpOption::AuthenticationProtocol(p) => {
                    let method = AuthMethod::from_protocol(p);
                    match (method, self.config.accept_auth.first()) {
                        (Some(m), _) if self.config.accept_auth.contains(&m) => {}
                        // RFC 1661 §6.2: Nak with the protocol we prefer.
                        (_, Some(preferred)) => {
                            naks.push(LcpOption::AuthenticationProtocol(preferred.to_protocol()))
                        }
                        (_, None) => rejects.push(option.clone()),
                    }
                }
                // Any Magic-Number but ours (handled above) is acceptable.
                LcpOption::MagicNumber(_) => {}
                LcpOption::ProtocolFieldCompression if self.config.accept_pfc => {}
                LcpOption::AddressControlFieldCompression if self.config.accept_acfc => {}
                _ => rejects.push(option.clone()),
            }
        }
        if !rejects.is_empty() {
            Verdict::Reject(rejects)
        } else if !naks.is_empty() {
            Verdict::Nak(naks)
        } else {
            Verdict::Ack
        }
    }

    fn peer_acknowledged(&mut self, request: &[LcpOption]) {
        self.peer = LcpNegotiated::from_options(request);
    }

    fn acknowledged(&mut self, options: &[LcpOption]) {
        self.local = LcpNegotiated::from_options(options);
    }

    fn naked(&mut self, options: &[LcpOption], rng: &mut ChaCha8Rng) {
        for option in options {
            match option {
                LcpOption::MaximumReceiveUnit(v) => {
                    // A smaller MRU is always safe for us; a larger one
                    // cannot be promised through the tunnel, so fall back to
                    // not asking (the RFC 1661 default then applies).
                    self.want_mru = if (64..=self.config.mru).contains(v) { Some(*v) } else { None };
                }
                LcpOption::AuthenticationProtocol(p) => {
                    let Some(current) = self.want_auth else {
                        continue;
                    };
                    let list = &self.config.require_auth;
                    let suggested = AuthMethod::from_protocol(p)
                        .and_then(|m| list.iter().position(|x| *x == m))
                        .filter(|i| *i != current);
                    match suggested {
                        Some(i) => self.want_auth = Some(i),
                        None if current + 1 < list.len() => self.want_auth = Some(current + 1),
                        None => self.auth_refused = true,
                    }
                }
                LcpOption::MagicNumber(v) if self.want_magic.is_some() => {
                    // RFC 1661 §6.4: a Nak carrying the value we last
                    // suggested ourselves makes a loop more likely.
                    if Some(*v) == self.last_nak_magic {
                        self.loop_suspicions += 1;
                        if self.loop_suspicions >= self.config.loopback_threshold {
                            self.looped = true;
                        }
                    }
                    let old = self.want_magic.unwrap_or(0);
                    self.want_magic = Some(random_magic(rng, &[old, *v]));
                }
                LcpOption::ProtocolFieldCompression => self.want_pfc = false,
                LcpOption::AddressControlFieldCompression => self.want_acfc = false,
                _ => {}
            }
        }
    }

    fn rejected(&mut self, options: &[LcpOption]) {
        for option in options {
            match option {
                LcpOption::MaximumReceiveUnit(_) => self.want_mru = None,
                LcpOption::AuthenticationProtocol(_) if self.want_auth.is_some() => {
                    self.auth_refused = true;
                }
                LcpOption::MagicNumber(_) => self.want_magic = None,
                LcpOption::ProtocolFieldCompression => self.want_pfc = false,
                LcpOption::AddressControlFieldCompression => self.want_acfc = false,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::packet::*;
    use crate::ppp::test_rng as rng;

    // From l2tpns-lns_ppp-chap-ipcp.pcap frame 9: MRU 1462, CHAP-MD5, magic,
    // MRRU, endpoint discriminator (class 2, 192.0.2.1).
    const L2TPNS_REQUEST: [u8; 30] = [
        0x01, 0x01, 0x00, 0x1e, 0x01, 0x04, 0x05, 0xb6, 0x03, 0x05, 0xc2, 0x23, 0x05, 0x05, 0x06, 0x6b, 0x02,
        0x7b, 0x5b, 0x11, 0x04, 0x06, 0x4e, 0x13, 0x07, 0x02, 0xc0, 0x00, 0x02, 0x01,
    ];

    #[test]
    fn parse_known_configure_request() {
        let packet = Packet::new_checked(&L2TPNS_REQUEST[..]).expect("packet");
        assert_eq!(packet.code(), code::CONFIGURE_REQUEST);
        assert_eq!(packet.identifier(), 1);
        assert_eq!(packet.length(), 30);
        let repr = LcpRepr::parse(&packet).expect("repr");
        assert_eq!(
            repr,
            Repr::ConfigureRequest {
                identifier: 1,
                options: vec![
                    LcpOption::MaximumReceiveUnit(1462),
                    LcpOption::AuthenticationProtocol(AuthProtocol::Chap { algorithm: chap_algorithm::MD5 }),
                    LcpOption::MagicNumber(0x6b02_7b5b),
                    LcpOption::Unknown { kind: option_type::MRRU, data: vec![0x06, 0x4e] },
                    LcpOption::Unknown {
                        kind: option_type::ENDPOINT_DISCRIMINATOR,
                        data: vec![0x02, 0xc0, 0x00, 0x02, 0x01]
                    },
                ]
            }
        );
        assert_eq!(repr.buffer_len(), L2TPNS_REQUEST.len());
        assert_eq!(repr.to_bytes().expect("emit"), L2TPNS_REQUEST.to_vec());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for n in 0..L2TPNS_REQUEST.len() {
            let buf = &L2TPNS_REQUEST[..n];
            assert!(Packet::new_checked(buf).is_err(), "len {n}");
        }
        // Truncating the Length field consistently leaves a broken option.
        for n in 5..L2TPNS_REQUEST.len() {
            let mut buf = L2TPNS_REQUEST[..n].to_vec();
            buf[3] = n as u8;
            let packet = Packet::new_checked(&buf[..]).expect("header ok");
            let options_end_on_boundary = [4, 8, 13, 19, 23].contains(&n);
            assert_eq!(LcpRepr::parse(&packet).is_ok(), options_end_on_boundary, "len {n}");
        }
    }

    #[test]
    fn bad_option_lengths() {
        // MRU with length 3, length 0, length past the end, magic of length 5.
        for body in [
            &[0x01, 0x03, 0x05][..],
            &[0x01, 0x00],
            &[0x01, 0x09, 0x00, 0x00],
            &[0x05, 0x05, 0, 0, 0],
            &[0x07, 0x03, 0x00],
            &[0x03, 0x03, 0xc0],
            &[0x02],
        ] {
            let mut buf = vec![0x01, 0x07, 0x00, (4 + body.len()) as u8];
            buf.extend_from_slice(body);
            let packet = Packet::new_checked(&buf[..]).expect("header");
            assert!(LcpRepr::parse(&packet).is_err(), "{body:02x?}");
        }
        // Length field smaller than the header.
        assert_eq!(Packet::new_checked(&[1, 1, 0, 3][..]).err(), Some(Error::BadLength));
    }

    #[test]
    fn padding_is_ignored() {
        let mut buf = vec![0x09, 0x00, 0x00, 0x08, 0x8a, 0xf0, 0x55, 0x47];
        buf.extend_from_slice(&[0; 20]);
        let packet = Packet::new_checked(&buf[..]).expect("packet");
        let repr = LcpRepr::parse(&packet).expect("repr");
        assert_eq!(repr, Repr::EchoRequest { identifier: 0, magic_number: 0x8af0_5547, data: vec![] });
        assert_eq!(repr.to_bytes().expect("emit"), buf[..8].to_vec());
    }

    #[test]
    fn round_trip_every_code() {
        let reprs: Vec<LcpRepr> = vec![
            Repr::ConfigureAck {
                identifier: 2,
                options: vec![
                    LcpOption::AsyncControlCharacterMap(0),
                    LcpOption::AuthenticationProtocol(AuthProtocol::Pap),
                    LcpOption::QualityProtocol { protocol: 0xc025, data: vec![0, 0, 0, 10] },
                    LcpOption::ProtocolFieldCompression,
                    LcpOption::AddressControlFieldCompression,
                    LcpOption::AuthenticationProtocol(AuthProtocol::Other {
                        protocol: 0xc227,
                        data: Box::new([]),
                    }),
                ],
            },
            Repr::ConfigureNak { identifier: 3, options: vec![LcpOption::MaximumReceiveUnit(1400)] },
            Repr::ConfigureReject { identifier: 4, options: vec![] },
            Repr::TerminateRequest { identifier: 5, data: b"bye".to_vec() },
            Repr::TerminateAck { identifier: 5, data: vec![] },
            Repr::CodeReject { identifier: 6, rejected_packet: vec![0x42, 0, 0, 4] },
            Repr::ProtocolReject {
                identifier: 7,
                rejected_protocol: 0x80fd,
                rejected_information: vec![1, 1, 0, 4],
            },
            Repr::EchoReply { identifier: 8, magic_number: 1, data: vec![9, 9] },
            Repr::DiscardRequest { identifier: 9, magic_number: 2, data: vec![] },
            Repr::Identification { identifier: 10, magic_number: 3, message: b"MSRASV5.20".to_vec() },
            Repr::TimeRemaining { identifier: 11, magic_number: 4, seconds: 3600, message: vec![] },
            Repr::Unknown { code: 42, identifier: 12, data: vec![1, 2, 3] },
        ];
        for repr in reprs {
            let bytes = repr.to_bytes().expect("emit");
            let packet = Packet::new_checked(&bytes[..]).expect("packet");
            assert_eq!(LcpRepr::parse(&packet).expect("parse"), repr);
            // Every truncation of the emitted packet is refused or re-parsed
            // without panicking.
            for n in 0..bytes.len() {
                if let Ok(p) = Packet::new_checked(&bytes[..n]) {
                    let _ = LcpRepr::parse(&p);
                }
            }
            // A too-small output buffer is an error, not a panic.
            let mut small = vec![0u8; bytes.len() - 1];
            assert_eq!(repr.emit(&mut small), Err(Error::BufferTooSmall));
        }
    }

    #[test]
    fn ncp_parse_keeps_lcp_only_codes_unknown() {
        let bytes = [0x09, 0x01, 0x00, 0x08, 0, 0, 0, 0];
        let packet = Packet::new_checked(&bytes[..]).expect("packet");
        let repr = Repr::<RawOption>::parse_ncp(&packet).expect("repr");
        assert_eq!(repr, Repr::Unknown { code: 9, identifier: 1, data: vec![0, 0, 0, 0] });
    }

    #[test]
    fn echo_without_magic_is_an_error() {
        let bytes = [0x09, 0x01, 0x00, 0x06, 0, 0];
        let packet = Packet::new_checked(&bytes[..]).expect("packet");
        assert_eq!(LcpRepr::parse(&packet), Err(Error::Truncated));
    }

    #[test]
    fn mru_from_access_mtu() {
        assert_eq!(LcpConfig::mru_for_access_mtu(1500), 1460);
        assert_eq!(LcpConfig::default().mru, 1460);
        assert_eq!(LcpConfig::mru_for_access_mtu(10), 64);
        // 1300 - (20 + 8 + 8 + 4), and 4 less sequenced, 20 less over IPv6.
        assert_eq!(LcpConfig::mru_for_access_link(1300, false, false), 1260);
        assert_eq!(LcpConfig::mru_for_access_link(1300, false, true), 1256);
        assert_eq!(LcpConfig::mru_for_access_link(1300, true, false), 1240);
        assert_eq!(LcpConfig::mru_for_access_link(1500, false, false), LcpConfig::default().mru);
        assert_eq!(LcpConfig::mru_for_access_link(9000, false, false), 1500, "not above the default");
        assert_eq!(LcpConfig::mru_for_access_link(68, true, true), 64);
    }

    fn server_policy() -> LcpPolicy {
        LcpPolicy::new(
            LcpConfig {
                require_auth: vec![AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap],
                ..LcpConfig::default()
            },
            &mut rng(),
        )
    }

    #[test]
    fn policy_judges_peer_options() {
        let mut p = server_policy();
        // Acceptable request.
        let ok = [
            LcpOption::MaximumReceiveUnit(1500),
            LcpOption::AsyncControlCharacterMap(0),
            LcpOption::MagicNumber(7),
            LcpOption::ProtocolFieldCompression,
            LcpOption::AddressControlFieldCompression,
        ];
        assert_eq!(p.judge(&ok, &mut rng()), Verdict::Ack);
        // Tiny MRU Nak'ed up.
        assert_eq!(
            p.judge(&[LcpOption::MaximumReceiveUnit(20)], &mut rng()),
            Verdict::Nak(vec![LcpOption::MaximumReceiveUnit(128)])
        );
        // Unknown options and auth asked of the server are rejected verbatim.
        let mrru = LcpOption::Unknown { kind: option_type::MRRU, data: vec![5, 0xd4] };
        let auth = LcpOption::AuthenticationProtocol(AuthProtocol::Pap);
        assert_eq!(
            p.judge(&[LcpOption::MaximumReceiveUnit(20), mrru.clone(), auth.clone()], &mut rng()),
            Verdict::Reject(vec![mrru, auth])
        );
        // Our own magic: Nak with another value.
        let ours = p.magic_number();
        match p.judge(&[LcpOption::MagicNumber(ours)], &mut rng()) {
            Verdict::Nak(v) => match v.as_slice() {
                [LcpOption::MagicNumber(m)] => assert_ne!(*m, ours),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policy_client_auth_acceptance() {
        let mut p = LcpPolicy::new(
            LcpConfig { accept_auth: vec![AuthMethod::ChapMd5, AuthMethod::Pap], ..LcpConfig::default() },
            &mut rng(),
        );
        let pap = LcpOption::AuthenticationProtocol(AuthProtocol::Pap);
        assert_eq!(p.judge(&[pap], &mut rng()), Verdict::Ack);
        let v2 = LcpOption::AuthenticationProtocol(AuthMethod::MsChapV2.to_protocol());
        assert_eq!(
            p.judge(&[v2], &mut rng()),
            Verdict::Nak(vec![LcpOption::AuthenticationProtocol(AuthMethod::ChapMd5.to_protocol())])
        );
    }

    #[test]
    fn policy_auth_nak_walks_the_list() {
        let mut p = server_policy();
        assert_eq!(p.requested_auth(), Some(AuthMethod::MsChapV2));
        // Peer suggests PAP, which we accept: jump to it.
        p.naked(&[LcpOption::AuthenticationProtocol(AuthProtocol::Pap)], &mut rng());
        assert_eq!(p.requested_auth(), Some(AuthMethod::Pap));
        assert!(!p.auth_refused());
        p.reset(&mut rng());
        // Peer suggests EAP, which we do not do: next in our list.
        let eap =
            LcpOption::AuthenticationProtocol(AuthProtocol::Other { protocol: 0xc227, data: Box::new([]) });
        p.naked(std::slice::from_ref(&eap), &mut rng());
        assert_eq!(p.requested_auth(), Some(AuthMethod::ChapMd5));
        p.naked(std::slice::from_ref(&eap), &mut rng());
        assert_eq!(p.requested_auth(), Some(AuthMethod::Pap));
        p.naked(std::slice::from_ref(&eap), &mut rng());
        assert!(p.auth_refused());
        p.reset(&mut rng());
        p.rejected(&[eap]);
        assert!(p.auth_refused());
    }

    #[test]
    fn policy_mru_nak_and_reject() {
        let mut p = server_policy();
        p.naked(&[LcpOption::MaximumReceiveUnit(1400)], &mut rng());
        assert!(p.request().contains(&LcpOption::MaximumReceiveUnit(1400)));
        p.naked(&[LcpOption::MaximumReceiveUnit(1500)], &mut rng());
        assert!(!p.request().iter().any(|o| matches!(o, LcpOption::MaximumReceiveUnit(_))));
        p.reset(&mut rng());
        p.rejected(&[LcpOption::MagicNumber(1)]);
        assert!(!p.request().iter().any(|o| matches!(o, LcpOption::MagicNumber(_))));
        assert_eq!(p.magic_number(), 0);
    }

    #[test]
    fn proxy_adoption() {
        let mut p = server_policy();
        let sent = [
            LcpOption::MaximumReceiveUnit(1460),
            LcpOption::AuthenticationProtocol(AuthProtocol::Pap),
            LcpOption::MagicNumber(5),
        ];
        let received = [LcpOption::MagicNumber(6), LcpOption::MaximumReceiveUnit(1492)];
        assert!(p.adopt_proxy(&sent, &received, &mut rng()));
        assert_eq!(p.local.auth, Some(AuthProtocol::Pap));
        assert_eq!(p.peer.mru, 1492);
        // No authentication negotiated by the LAC: unacceptable.
        assert!(!p.adopt_proxy(&[LcpOption::MagicNumber(5)], &received, &mut rng()));
        // The LAC acknowledged something we would reject.
        let bad = [LcpOption::Unknown { kind: option_type::CALLBACK, data: vec![6] }];
        assert!(!p.adopt_proxy(&sent, &bad, &mut rng()));
    }
}
