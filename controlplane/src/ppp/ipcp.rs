//! IPCP (RFC 1332) with the RFC 1877 name-server options, and its policies
//! for the LNS (assigns the peer's address) and the client (asks for one).

use super::fsm::{OptionPolicy, Verdict};
use super::lcp::{ConfigOption, Repr};
use super::{be16, put, Error};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// IPCP option types.
pub mod option_type {
    /// RFC 1172, deprecated by RFC 1332 §3.
    pub const IP_ADDRESSES: u8 = 1;
    pub const IP_COMPRESSION_PROTOCOL: u8 = 2;
    pub const IP_ADDRESS: u8 = 3;
    pub const PRIMARY_DNS: u8 = 129;
    pub const PRIMARY_NBNS: u8 = 130;
    pub const SECONDARY_DNS: u8 = 131;
    pub const SECONDARY_NBNS: u8 = 132;
}

/// An IPCP configuration option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpcpOption {
    /// RFC 1332 §3.2 (e.g. Van Jacobson 0x002d with its parameters).
    IpCompressionProtocol {
        protocol: u16,
        data: Vec<u8>,
    },
    /// RFC 1332 §3.3.
    IpAddress(Ipv4Addr),
    /// RFC 1877 §1.1–§1.4.
    PrimaryDns(Ipv4Addr),
    PrimaryNbns(Ipv4Addr),
    SecondaryDns(Ipv4Addr),
    SecondaryNbns(Ipv4Addr),
    /// Anything else (including the deprecated IP-Addresses), kept raw.
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
}

/// IPCP packets (RFC 1332 §2: codes 1–7 of RFC 1661).
pub type IpcpRepr = Repr<IpcpOption>;

fn addr(kind: u8, data: &[u8]) -> Result<Ipv4Addr, Error> {
    let octets: [u8; 4] = data.try_into().map_err(|_| Error::BadOption { kind })?;
    Ok(Ipv4Addr::from(octets))
}

impl ConfigOption for IpcpOption {
    fn kind(&self) -> u8 {
        use option_type::*;
        match self {
            IpcpOption::IpCompressionProtocol { .. } => IP_COMPRESSION_PROTOCOL,
            IpcpOption::IpAddress(_) => IP_ADDRESS,
            IpcpOption::PrimaryDns(_) => PRIMARY_DNS,
            IpcpOption::PrimaryNbns(_) => PRIMARY_NBNS,
            IpcpOption::SecondaryDns(_) => SECONDARY_DNS,
            IpcpOption::SecondaryNbns(_) => SECONDARY_NBNS,
            IpcpOption::Unknown { kind, .. } => *kind,
        }
    }

    fn parse(kind: u8, data: &[u8]) -> Result<Self, Error> {
        use option_type::*;
        Ok(match kind {
            IP_COMPRESSION_PROTOCOL => IpcpOption::IpCompressionProtocol {
                protocol: be16(data, 0).ok_or(Error::BadOption { kind })?,
                data: data.get(2..).unwrap_or(&[]).to_vec(),
            },
            IP_ADDRESS => IpcpOption::IpAddress(addr(kind, data)?),
            PRIMARY_DNS => IpcpOption::PrimaryDns(addr(kind, data)?),
            PRIMARY_NBNS => IpcpOption::PrimaryNbns(addr(kind, data)?),
            SECONDARY_DNS => IpcpOption::SecondaryDns(addr(kind, data)?),
            SECONDARY_NBNS => IpcpOption::SecondaryNbns(addr(kind, data)?),
            _ => IpcpOption::Unknown { kind, data: data.to_vec() },
        })
    }

    fn data_len(&self) -> usize {
        match self {
            IpcpOption::IpCompressionProtocol { data, .. } => 2 + data.len(),
            IpcpOption::Unknown { data, .. } => data.len(),
            _ => 4,
        }
    }

    fn emit_data(&self, buf: &mut [u8]) -> Result<(), Error> {
        match self {
            IpcpOption::IpCompressionProtocol { protocol, data } => {
                put(buf, 0, &protocol.to_be_bytes())?;
                put(buf, 2, data)
            }
            IpcpOption::IpAddress(a)
            | IpcpOption::PrimaryDns(a)
            | IpcpOption::PrimaryNbns(a)
            | IpcpOption::SecondaryDns(a)
            | IpcpOption::SecondaryNbns(a) => put(buf, 0, &a.octets()),
            IpcpOption::Unknown { data, .. } => put(buf, 0, data),
        }
    }
}

/// IPCP settings. For the LNS: `local_address` is ours, `peer_address` the
/// one we assign (may be set later, e.g. from RADIUS Framed-IP-Address), and
/// the name servers we hand out. For a client: everything is learnt, and
/// `request_dns` asks for name servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcpConfig {
    pub local_address: Option<Ipv4Addr>,
    pub peer_address: Option<Ipv4Addr>,
    pub primary_dns: Option<Ipv4Addr>,
    pub secondary_dns: Option<Ipv4Addr>,
    pub primary_nbns: Option<Ipv4Addr>,
    pub secondary_nbns: Option<Ipv4Addr>,
    /// Client: ask for DNS servers with 0.0.0.0 (RFC 1877 §1.1).
    pub request_dns: bool,
}

/// What IPCP settled, reported when it opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcpNegotiated {
    pub local_address: Option<Ipv4Addr>,
    pub peer_address: Option<Ipv4Addr>,
    pub primary_dns: Option<Ipv4Addr>,
    pub secondary_dns: Option<Ipv4Addr>,
}

/// The IPCP option policy; `server` selects the LNS behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpcpPolicy {
    pub config: IpcpConfig,
    server: bool,
    want_address: Option<Ipv4Addr>,
    want_primary_dns: Option<Ipv4Addr>,
    want_secondary_dns: Option<Ipv4Addr>,
    /// The peer refused the address we insisted on (RFC 3145 cause 19/20).
    address_refused: bool,
    pub negotiated: IpcpNegotiated,
}

impl IpcpPolicy {
    pub fn new(config: IpcpConfig, server: bool) -> Self {
        let mut p = IpcpPolicy {
            config,
            server,
            want_address: None,
            want_primary_dns: None,
            want_secondary_dns: None,
            address_refused: false,
            negotiated: IpcpNegotiated::default(),
        };
        p.start_over();
        p
    }

    /// Set the address to assign to the peer (LNS), e.g. once RADIUS
    /// answered; takes effect in the next judgement.
    pub fn set_peer_address(&mut self, address: Ipv4Addr) {
        self.config.peer_address = Some(address);
    }

    /// Set the name servers to hand out (LNS), e.g. RADIUS
    /// MS-Primary/Secondary-DNS-Server; takes effect in the next judgement.
    pub fn set_dns(&mut self, primary: Option<Ipv4Addr>, secondary: Option<Ipv4Addr>) {
        self.config.primary_dns = primary;
        self.config.secondary_dns = secondary;
    }

    pub fn address_refused(&self) -> bool {
        self.address_refused
    }

    fn judge_server(&self, request: &[IpcpOption]) -> Verdict<IpcpOption> {
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        let mut saw_address = false;
        let nak_or_reject = |configured: Option<Ipv4Addr>,
                             asked: Ipv4Addr,
                             option: &IpcpOption,
                             make: fn(Ipv4Addr) -> IpcpOption,
                             naks: &mut Vec<IpcpOption>,
                             rejects: &mut Vec<IpcpOption>| match configured {
            Some(v) if v == asked => {}
            // RFC 1877 §1: Nak with the server we want the peer to use.
            Some(v) => naks.push(make(v)),
            // RFC 1877 §1: nothing to offer, so Reject.
            None => rejects.push(option.clone()),
        };
        for option in request {
            match option {
                IpcpOption::IpAddress(asked) => {
                    saw_address = true;
                    match self.config.peer_address {
                        Some(assigned) if assigned == *asked => {}
                        // RFC 1332 §3.3: 0.0.0.0 asks us for an address; a
                        // different one is corrected with a Nak.
                        Some(assigned) => naks.push(IpcpOption::IpAddress(assigned)),
                        None => rejects.push(option.clone()),
                    }
                }
                IpcpOption::PrimaryDns(a) => nak_or_reject(
                    self.config.primary_dns,
                    *a,
                    option,
                    IpcpOption::PrimaryDns,
                    &mut naks,
                    &mut rejects,
                ),
                IpcpOption::SecondaryDns(a) => nak_or_reject(
                    self.config.secondary_dns,
                    *a,
                    option,
                    IpcpOption::SecondaryDns,
                    &mut naks,
                    &mut rejects,
                ),
                IpcpOption::PrimaryNbns(a) => nak_or_reject(
                    self.config.primary_nbns,
                    *a,
                    option,
                    IpcpOption::PrimaryNbns,
                    &mut naks,
                    &mut rejects,
                ),
                IpcpOption::SecondaryNbns(a) => nak_or_reject(
                    self.config.secondary_nbns,
                    *a,
                    option,
                    IpcpOption::SecondaryNbns,
                    &mut naks,
                    &mut rejects,
                ),
                // The data plane does no Van Jacobson compression.
                _ => rejects.push(option.clone()),
            }
        }
        if !saw_address && rejects.is_empty() {
            // RFC 1661 §5.3 lets a Nak suggest an option the peer left out:
            // hint the address we assign.
            if let Some(assigned) = self.config.peer_address {
                naks.push(IpcpOption::IpAddress(assigned));
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

    fn judge_client(&self, request: &[IpcpOption]) -> Verdict<IpcpOption> {
        let mut rejects = Vec::new();
        for option in request {
            match option {
                // The server's own address: anything but 0.0.0.0 is fine.
                IpcpOption::IpAddress(a) if !a.is_unspecified() => {}
                _ => rejects.push(option.clone()),
            }
        }
        if rejects.is_empty() {
            Verdict::Ack
        } else {
            Verdict::Reject(rejects)
        }
    }
}

impl IpcpPolicy {
    /// Back to the configured wishes (a negotiation starts again).
    fn start_over(&mut self) {
        self.want_address = if self.server {
            self.config.local_address
        } else {
            Some(self.config.local_address.unwrap_or(Ipv4Addr::UNSPECIFIED))
        };
        let ask = (!self.server && self.config.request_dns).then_some(Ipv4Addr::UNSPECIFIED);
        self.want_primary_dns = ask;
        self.want_secondary_dns = ask;
        self.address_refused = false;
        self.negotiated = IpcpNegotiated::default();
    }
}

impl OptionPolicy for IpcpPolicy {
    type Option = IpcpOption;

    fn reset(&mut self, _: &mut ChaCha8Rng) {
        self.start_over();
    }

    fn request(&mut self) -> Vec<IpcpOption> {
        let mut options = Vec::new();
        if let Some(a) = self.want_address {
            options.push(IpcpOption::IpAddress(a));
        }
        if let Some(a) = self.want_primary_dns {
            options.push(IpcpOption::PrimaryDns(a));
        }
        if let Some(a) = self.want_secondary_dns {
            options.push(IpcpOption::SecondaryDns(a));
        }
        options
    }

    fn judge(&mut self, request: &[IpcpOption], _: &mut ChaCha8Rng) -> Verdict<IpcpOption> {
        if self.server {
            self.judge_server(request)
        } else {
            self.judge_client(request)
        }
    }

    fn peer_acknowledged(&mut self, request: &[IpcpOption]) {
        for option in request {
            if let IpcpOption::IpAddress(a) = option {
                self.negotiated.peer_address = Some(*a);
            }
        }
    }

    fn acknowledged(&mut self, options: &[IpcpOption]) {
        for option in options {
            match option {
                IpcpOption::IpAddress(a) => self.negotiated.local_address = Some(*a),
                IpcpOption::PrimaryDns(a) => self.negotiated.primary_dns = Some(*a),
                IpcpOption::SecondaryDns(a) => self.negotiated.secondary_dns = Some(*a),
                _ => {}
            }
        }
        if self.server {
            self.negotiated.primary_dns = self.config.primary_dns;
            self.negotiated.secondary_dns = self.config.secondary_dns;
        }
    }

    fn naked(&mut self, options: &[IpcpOption], _: &mut ChaCha8Rng) {
        for option in options {
            match option {
                IpcpOption::IpAddress(a) => {
                    if self.server {
                        // Our own address is configuration, not negotiable;
                        // keep asking and let Max-Failure decide.
                        continue;
                    }
                    if !a.is_unspecified() {
                        self.want_address = Some(*a);
                    }
                }
                IpcpOption::PrimaryDns(a) if self.want_primary_dns.is_some() => {
                    self.want_primary_dns = Some(*a)
                }
                IpcpOption::SecondaryDns(a) if self.want_secondary_dns.is_some() => {
                    self.want_secondary_dns = Some(*a)
                }
                _ => {}
            }
        }
    }

    fn rejected(&mut self, options: &[IpcpOption]) {
        for option in options {
            match option {
                IpcpOption::IpAddress(_) => {
                    self.want_address = None;
                    if !self.server {
                        // A client without an address has no IPv4 service.
                        self.address_refused = true;
                    }
                }
                IpcpOption::PrimaryDns(_) => self.want_primary_dns = None,
                IpcpOption::SecondaryDns(_) => self.want_secondary_dns = None,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::lcp::Packet;
    use crate::ppp::test_rng as rng;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    #[test]
    fn parse_emit_known_packets() {
        // cisco-ios_pppoe-bng capture: Configure-Request with IP-Address,
        // Primary DNS and Secondary DNS all zero.
        let request =
            [0x01, 0x01, 0x00, 0x16, 0x03, 0x06, 0, 0, 0, 0, 0x81, 0x06, 0, 0, 0, 0, 0x83, 0x06, 0, 0, 0, 0];
        let repr = IpcpRepr::parse_ncp(&Packet::new_checked(&request[..]).expect("p")).expect("r");
        assert_eq!(
            repr,
            Repr::ConfigureRequest {
                identifier: 1,
                options: vec![
                    IpcpOption::IpAddress(Ipv4Addr::UNSPECIFIED),
                    IpcpOption::PrimaryDns(Ipv4Addr::UNSPECIFIED),
                    IpcpOption::SecondaryDns(Ipv4Addr::UNSPECIFIED),
                ]
            }
        );
        assert_eq!(repr.to_bytes().expect("emit"), request.to_vec());
        // Van Jacobson with parameters and an unknown option survive a round
        // trip.
        let vj = [0x01, 0x02, 0x00, 0x10, 0x02, 0x06, 0x00, 0x2d, 0x0f, 0x01, 0x01, 0x06, 0, 0, 0, 0];
        let repr = IpcpRepr::parse_ncp(&Packet::new_checked(&vj[..]).expect("p")).expect("r");
        assert_eq!(repr.to_bytes().expect("emit"), vj.to_vec());
    }

    #[test]
    fn bad_lengths_and_truncations() {
        for body in [&[0x03, 0x05, 0, 0, 0][..], &[0x81, 0x07, 0, 0, 0, 0, 0], &[0x02, 0x03, 0]] {
            let mut buf = vec![0x01, 0x01, 0x00, (4 + body.len()) as u8];
            buf.extend_from_slice(body);
            let p = Packet::new_checked(&buf[..]).expect("p");
            assert!(IpcpRepr::parse_ncp(&p).is_err(), "{body:02x?}");
        }
        let request = [0x01, 0x01, 0x00, 0x0a, 0x03, 0x06, 10, 0, 0, 1];
        for n in 0..request.len() {
            let mut buf = request[..n].to_vec();
            if n >= 4 {
                buf[3] = n as u8;
            }
            let parsed = Packet::new_checked(&buf[..]).and_then(|p| IpcpRepr::parse_ncp(&p));
            assert_eq!(parsed.is_ok(), n == 4, "len {n}");
        }
    }

    fn server() -> IpcpPolicy {
        IpcpPolicy::new(
            IpcpConfig {
                local_address: Some(ip(192, 0, 2, 1)),
                peer_address: Some(ip(198, 51, 100, 7)),
                primary_dns: Some(ip(192, 0, 2, 53)),
                ..Default::default()
            },
            true,
        )
    }

    #[test]
    fn server_assigns_address_and_dns() {
        let mut p = server();
        assert_eq!(p.request(), vec![IpcpOption::IpAddress(ip(192, 0, 2, 1))]);
        let z = Ipv4Addr::UNSPECIFIED;
        assert_eq!(
            p.judge(&[IpcpOption::IpAddress(z), IpcpOption::PrimaryDns(z)], &mut rng()),
            Verdict::Nak(vec![
                IpcpOption::IpAddress(ip(198, 51, 100, 7)),
                IpcpOption::PrimaryDns(ip(192, 0, 2, 53))
            ])
        );
        // A wrong address is corrected too.
        assert_eq!(
            p.judge(&[IpcpOption::IpAddress(ip(10, 0, 0, 1))], &mut rng()),
            Verdict::Nak(vec![IpcpOption::IpAddress(ip(198, 51, 100, 7))])
        );
        // Secondary DNS is not configured: Reject. VJ: Reject.
        let vj = IpcpOption::IpCompressionProtocol { protocol: 0x2d, data: vec![15, 1] };
        assert_eq!(
            p.judge(&[IpcpOption::IpAddress(z), IpcpOption::SecondaryDns(z), vj.clone()], &mut rng()),
            Verdict::Reject(vec![IpcpOption::SecondaryDns(z), vj])
        );
        // The right values are acknowledged.
        assert_eq!(
            p.judge(
                &[IpcpOption::IpAddress(ip(198, 51, 100, 7)), IpcpOption::PrimaryDns(ip(192, 0, 2, 53))],
                &mut rng()
            ),
            Verdict::Ack
        );
        // No IP-Address at all: hint it.
        assert_eq!(p.judge(&[], &mut rng()), Verdict::Nak(vec![IpcpOption::IpAddress(ip(198, 51, 100, 7))]));
        // Without an address to assign, the option is rejected.
        let mut none = IpcpPolicy::new(IpcpConfig::default(), true);
        assert_eq!(
            none.judge(&[IpcpOption::IpAddress(z)], &mut rng()),
            Verdict::Reject(vec![IpcpOption::IpAddress(z)])
        );
        assert_eq!(none.request(), vec![]);
        none.set_peer_address(ip(1, 2, 3, 4));
        assert_eq!(none.judge(&[IpcpOption::IpAddress(ip(1, 2, 3, 4))], &mut rng()), Verdict::Ack);
    }

    #[test]
    fn client_learns_from_naks() {
        let mut c = IpcpPolicy::new(IpcpConfig { request_dns: true, ..Default::default() }, false);
        let z = Ipv4Addr::UNSPECIFIED;
        assert_eq!(
            c.request(),
            vec![IpcpOption::IpAddress(z), IpcpOption::PrimaryDns(z), IpcpOption::SecondaryDns(z)]
        );
        c.naked(
            &[IpcpOption::IpAddress(ip(198, 51, 100, 7)), IpcpOption::PrimaryDns(ip(192, 0, 2, 53))],
            &mut rng(),
        );
        c.rejected(&[IpcpOption::SecondaryDns(z)]);
        let req = c.request();
        assert_eq!(
            req,
            vec![IpcpOption::IpAddress(ip(198, 51, 100, 7)), IpcpOption::PrimaryDns(ip(192, 0, 2, 53))]
        );
        c.acknowledged(&req);
        assert_eq!(c.negotiated.local_address, Some(ip(198, 51, 100, 7)));
        assert_eq!(c.negotiated.primary_dns, Some(ip(192, 0, 2, 53)));
        // The server's own address is accepted unless zero.
        assert_eq!(c.judge(&[IpcpOption::IpAddress(ip(192, 0, 2, 1))], &mut rng()), Verdict::Ack);
        assert_eq!(
            c.judge(&[IpcpOption::IpAddress(z)], &mut rng()),
            Verdict::Reject(vec![IpcpOption::IpAddress(z)])
        );
        c.rejected(&[IpcpOption::IpAddress(z)]);
        assert!(c.address_refused());
    }
}
