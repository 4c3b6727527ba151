//! IPv6CP (RFC 5072): Interface-Identifier negotiation.

use super::fsm::{OptionPolicy, Verdict};
use super::lcp::{ConfigOption, Repr};
use super::{be16, put, Error};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// IPv6CP option types (RFC 5072 §4).
pub mod option_type {
    pub const INTERFACE_IDENTIFIER: u8 = 1;
    pub const IPV6_COMPRESSION_PROTOCOL: u8 = 2;
}

/// An IPv6CP configuration option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ipv6cpOption {
    /// RFC 5072 §4.1: 64-bit interface identifier.
    InterfaceIdentifier([u8; 8]),
    /// RFC 5072 §4.2.
    Ipv6CompressionProtocol {
        protocol: u16,
        data: Vec<u8>,
    },
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
}

/// IPv6CP packets (RFC 5072 §3: codes 1–7).
pub type Ipv6cpRepr = Repr<Ipv6cpOption>;

impl ConfigOption for Ipv6cpOption {
    fn kind(&self) -> u8 {
        match self {
            Ipv6cpOption::InterfaceIdentifier(_) => option_type::INTERFACE_IDENTIFIER,
            Ipv6cpOption::Ipv6CompressionProtocol { .. } => option_type::IPV6_COMPRESSION_PROTOCOL,
            Ipv6cpOption::Unknown { kind, .. } => *kind,
        }
    }

    fn parse(kind: u8, data: &[u8]) -> Result<Self, Error> {
        Ok(match kind {
            option_type::INTERFACE_IDENTIFIER => {
                Ipv6cpOption::InterfaceIdentifier(data.try_into().map_err(|_| Error::BadOption { kind })?)
            }
            option_type::IPV6_COMPRESSION_PROTOCOL => Ipv6cpOption::Ipv6CompressionProtocol {
                protocol: be16(data, 0).ok_or(Error::BadOption { kind })?,
                data: data.get(2..).unwrap_or(&[]).to_vec(),
            },
            _ => Ipv6cpOption::Unknown { kind, data: data.to_vec() },
        })
    }

    fn data_len(&self) -> usize {
        match self {
            Ipv6cpOption::InterfaceIdentifier(_) => 8,
            Ipv6cpOption::Ipv6CompressionProtocol { data, .. } => 2 + data.len(),
            Ipv6cpOption::Unknown { data, .. } => data.len(),
        }
    }

    fn emit_data(&self, buf: &mut [u8]) -> Result<(), Error> {
        match self {
            Ipv6cpOption::InterfaceIdentifier(id) => put(buf, 0, id),
            Ipv6cpOption::Ipv6CompressionProtocol { protocol, data } => {
                put(buf, 0, &protocol.to_be_bytes())?;
                put(buf, 2, data)
            }
            Ipv6cpOption::Unknown { data, .. } => put(buf, 0, data),
        }
    }
}

/// IPv6CP settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6cpConfig {
    /// Our interface identifier; random when None (RFC 5072 §4.1 asks for a
    /// unique, preferably random, value).
    pub interface_identifier: Option<[u8; 8]>,
    /// LNS: the identifier to give the peer when it proposes zero or ours.
    pub peer_interface_identifier: Option<[u8; 8]>,
}

/// What IPv6CP settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6cpNegotiated {
    pub local_interface_identifier: Option<[u8; 8]>,
    pub peer_interface_identifier: Option<[u8; 8]>,
}

/// The IPv6CP option policy (the same for both roles).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ipv6cpPolicy {
    pub config: Ipv6cpConfig,
    want: Option<[u8; 8]>,
    pub negotiated: Ipv6cpNegotiated,
}

/// RFC 5072 §4.1: a random, non-zero identifier other than `avoid`.
fn random_identifier(rng: &mut impl Rng, avoid: &[[u8; 8]]) -> [u8; 8] {
    loop {
        let id: [u8; 8] = rng.gen();
        if id != [0; 8] && !avoid.contains(&id) {
            return id;
        }
    }
}

impl Ipv6cpPolicy {
    /// `rng` draws our interface identifier unless one is configured.
    pub fn new(config: Ipv6cpConfig, rng: &mut ChaCha8Rng) -> Self {
        let mut p = Ipv6cpPolicy { config, want: None, negotiated: Ipv6cpNegotiated::default() };
        p.reset(rng);
        p
    }

    /// The identifier we currently propose for ourselves.
    pub fn local_identifier(&self) -> Option<[u8; 8]> {
        self.want
    }
}

impl OptionPolicy for Ipv6cpPolicy {
    type Option = Ipv6cpOption;

    fn reset(&mut self, rng: &mut ChaCha8Rng) {
        self.want = Some(self.config.interface_identifier.unwrap_or_else(|| random_identifier(rng, &[])));
        self.negotiated = Ipv6cpNegotiated::default();
    }

    fn request(&mut self) -> Vec<Ipv6cpOption> {
        self.want.map(Ipv6cpOption::InterfaceIdentifier).into_iter().collect()
    }

    fn judge(&mut self, request: &[Ipv6cpOption], rng: &mut ChaCha8Rng) -> Verdict<Ipv6cpOption> {
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        for option in request {
            match option {
                Ipv6cpOption::InterfaceIdentifier(id) => {
                    let ours = self.want.unwrap_or([0; 8]);
                    // RFC 5072 §4.1: zero means "please suggest one"; equal
                    // to ours is a collision. Either way Nak with a value
                    // that is neither.
                    if *id == [0; 8] || *id == ours {
                        let suggestion = self
                            .config
                            .peer_interface_identifier
                            .filter(|s| *s != ours && *s != [0; 8])
                            .unwrap_or_else(|| random_identifier(rng, &[ours, *id]));
                        naks.push(Ipv6cpOption::InterfaceIdentifier(suggestion));
                    }
                }
                // No header compression in the data plane.
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

    fn peer_acknowledged(&mut self, request: &[Ipv6cpOption]) {
        for option in request {
            if let Ipv6cpOption::InterfaceIdentifier(id) = option {
                self.negotiated.peer_interface_identifier = Some(*id);
            }
        }
    }

    fn acknowledged(&mut self, options: &[Ipv6cpOption]) {
        for option in options {
            if let Ipv6cpOption::InterfaceIdentifier(id) = option {
                self.negotiated.local_interface_identifier = Some(*id);
            }
        }
    }

    fn naked(&mut self, options: &[Ipv6cpOption], rng: &mut ChaCha8Rng) {
        for option in options {
            if let Ipv6cpOption::InterfaceIdentifier(id) = option {
                // RFC 5072 §4.1: adopt the suggestion unless it is zero.
                self.want = Some(if *id == [0; 8] {
                    random_identifier(rng, &[self.want.unwrap_or([0; 8])])
                } else {
                    *id
                });
            }
        }
    }

    fn rejected(&mut self, options: &[Ipv6cpOption]) {
        for option in options {
            if let Ipv6cpOption::InterfaceIdentifier(_) = option {
                // RFC 5072 §4.1: the peer will not negotiate identifiers; we
                // keep ours without announcing it.
                self.negotiated.local_interface_identifier = self.want;
                self.want = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::lcp::Packet;
    use crate::ppp::test_rng as rng;

    #[test]
    fn parse_emit_and_bad_lengths() {
        let bytes = [0x01, 0x05, 0x00, 0x0e, 0x01, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8];
        let repr = Ipv6cpRepr::parse_ncp(&Packet::new_checked(&bytes[..]).expect("p")).expect("r");
        assert_eq!(
            repr,
            Repr::ConfigureRequest {
                identifier: 5,
                options: vec![Ipv6cpOption::InterfaceIdentifier([1, 2, 3, 4, 5, 6, 7, 8])]
            }
        );
        assert_eq!(repr.to_bytes().expect("emit"), bytes.to_vec());
        for n in 5..bytes.len() {
            let mut buf = bytes[..n].to_vec();
            buf[3] = n as u8;
            let p = Packet::new_checked(&buf[..]).expect("p");
            assert!(Ipv6cpRepr::parse_ncp(&p).is_err(), "len {n}");
        }
        // Interface-Identifier with length 9.
        let bad = [0x01, 0x05, 0x00, 0x0d, 0x01, 0x09, 1, 2, 3, 4, 5, 6, 7];
        assert!(Ipv6cpRepr::parse_ncp(&Packet::new_checked(&bad[..]).expect("p")).is_err());
    }

    #[test]
    fn collisions_and_zero_are_naked() {
        let mut p = Ipv6cpPolicy::new(
            Ipv6cpConfig {
                interface_identifier: Some([0, 0, 0, 0, 0, 0, 0, 1]),
                peer_interface_identifier: None,
            },
            &mut rng(),
        );
        assert_eq!(p.request(), vec![Ipv6cpOption::InterfaceIdentifier([0, 0, 0, 0, 0, 0, 0, 1])]);
        for asked in [[0u8; 8], [0, 0, 0, 0, 0, 0, 0, 1]] {
            match p.judge(&[Ipv6cpOption::InterfaceIdentifier(asked)], &mut rng()) {
                Verdict::Nak(v) => match v.as_slice() {
                    [Ipv6cpOption::InterfaceIdentifier(s)] => {
                        assert_ne!(*s, [0; 8]);
                        assert_ne!(*s, [0, 0, 0, 0, 0, 0, 0, 1]);
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(p.judge(&[Ipv6cpOption::InterfaceIdentifier([9; 8])], &mut rng()), Verdict::Ack);
        let comp = Ipv6cpOption::Ipv6CompressionProtocol { protocol: 0x61, data: vec![] };
        assert_eq!(p.judge(std::slice::from_ref(&comp), &mut rng()), Verdict::Reject(vec![comp]));
        p.naked(&[Ipv6cpOption::InterfaceIdentifier([7; 8])], &mut rng());
        assert_eq!(p.local_identifier(), Some([7; 8]));
        p.rejected(&[Ipv6cpOption::InterfaceIdentifier([7; 8])]);
        assert_eq!(p.request(), vec![]);
        assert_eq!(p.negotiated.local_interface_identifier, Some([7; 8]));
        // A configured peer identifier is what the LNS suggests.
        let mut s = Ipv6cpPolicy::new(
            Ipv6cpConfig { interface_identifier: None, peer_interface_identifier: Some([5; 8]) },
            &mut rng(),
        );
        assert_eq!(
            s.judge(&[Ipv6cpOption::InterfaceIdentifier([0; 8])], &mut rng()),
            Verdict::Nak(vec![Ipv6cpOption::InterfaceIdentifier([5; 8])])
        );
    }
}
