//! Neighbour Discovery over PPP: Router Solicitation and Router
//! Advertisement (RFC 4861 §4.1, §4.2) carried in PPP protocol 0x0057, as
//! RFC 5072 §5 has a PPP link address itself.
//!
//! IPv6CP only agrees on interface identifiers; the subscriber learns its
//! /64 from our Router Advertisement (SLAAC, RFC 4862) and addresses itself
//! `prefix::interface-id`. Three parts:
//! * the wire format: [`Packet`] (a zero-copy view of an IPv6 packet
//!   carrying ICMPv6) and [`Repr`] (RS/RA with their options), parse and
//!   emit, with the ICMPv6 checksum over the pseudo-header;
//! * [`Router`]: the LNS side, unsolicited advertisements on the RFC 4861
//!   §6.2.4 schedule and answers to solicitations (§6.2.6);
//! * [`Host`]: the subscriber side (for the LAC emulator), solicitations on
//!   the §6.3.7 schedule until an advertisement brings a prefix.
//!
//! Both machines are sans-IO: fed the time and packets, drained of packets.
//! Untrusted bytes never panic: every length is checked before it is used.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use super::error::{be16, be32, Error};

/// IPv6 Next Header of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// IPv6 Next Header of UDP.
pub const NEXT_HEADER_UDP: u8 = 17;
/// RFC 4861 §4.1.
pub const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
/// RFC 4861 §4.2.
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
/// RFC 4861 §4.6: option types.
pub mod option_type {
    pub const SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
    pub const PREFIX_INFORMATION: u8 = 3;
    pub const MTU: u8 = 5;
}

/// `ff02::1`, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// `ff02::2`, where solicitations go.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// ND packets carry hop limit 255, so that a receiver can tell they were
/// not forwarded (RFC 4861 §6.1).
pub const HOP_LIMIT: u8 = 255;

const IPV6_HEADER_LEN: usize = 40;
/// Type, Code, Checksum, and the 4 bytes every ICMPv6 message has.
const ICMPV6_MIN_LEN: usize = 8;
/// RS: Type, Code, Checksum, Reserved.
const RS_LEN: usize = 8;
/// RA: the above plus Reachable Time and Retrans Timer.
const RA_LEN: usize = 16;
const PREFIX_INFORMATION_LEN: usize = 32;
const MTU_OPTION_LEN: usize = 8;

/// The link-local address of an interface identifier (RFC 5072 §5).
pub fn link_local(interface_identifier: [u8; 8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8..].copy_from_slice(&interface_identifier);
    Ipv6Addr::from(a)
}

/// `prefix` (its first 64 bits) followed by the interface identifier:
/// the address SLAAC forms (RFC 4862 §5.5.3).
pub fn slaac_address(prefix: Ipv6Addr, interface_identifier: [u8; 8]) -> Ipv6Addr {
    let mut a = prefix.octets();
    a[8..].copy_from_slice(&interface_identifier);
    Ipv6Addr::from(a)
}

/// `fe80::/10`.
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[0] == 0xfe && (o[1] & 0xc0) == 0x80
}

fn addr(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

/// RFC 1071 sum of the ICMPv6 message and the RFC 8200 §8.1 pseudo-header,
/// complemented. Over a message whose checksum field is filled in, 0 means
/// valid.
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    lns_wire::checksum::ipv6_upper_layer(src.octets(), dst.octets(), NEXT_HEADER_ICMPV6, message)
}

/// A zero-copy view of an IPv6 packet (fixed header, no extension headers:
/// ND packets on a PPP link have none) carrying ICMPv6.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// The view, once [`Packet::check_len`] passed.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Version 6, a payload length that fits the buffer (bytes after it are
    /// PPP padding and ignored), and room for the ICMPv6 header.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < IPV6_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b.first().map(|v| v >> 4) != Some(6) {
            return Err(Error::Malformed("IPv6 version"));
        }
        let plen = usize::from(be16(b, 4).ok_or(Error::Truncated)?);
        if IPV6_HEADER_LEN + plen > b.len() {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref().get(6).copied().unwrap_or(0)
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref().get(7).copied().unwrap_or(0)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), 8).unwrap_or(Ipv6Addr::UNSPECIFIED)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), 24).unwrap_or(Ipv6Addr::UNSPECIFIED)
    }

    /// The IPv6 payload, as long as the Payload Length says.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let plen = usize::from(be16(b, 4).unwrap_or(0));
        b.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + plen).unwrap_or(&[])
    }
}

/// A Prefix Information option (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixInformation {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: hosts may form addresses from it (SLAAC).
    pub autonomous: bool,
    /// Seconds; `u32::MAX` is infinity.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
}

/// The ND messages this module speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// RFC 4861 §4.1. Options are not kept: on PPP there is no link-layer
    /// address to learn.
    RouterSolicitation,
    /// RFC 4861 §4.2.
    RouterAdvertisement {
        cur_hop_limit: u8,
        /// M: addresses from DHCPv6.
        managed: bool,
        /// O: other configuration from DHCPv6.
        other: bool,
        /// Seconds this router is a default router; 0: it is not.
        router_lifetime: u16,
        reachable_time: u32,
        retrans_timer: u32,
        mtu: Option<u32>,
        prefixes: Vec<PrefixInformation>,
    },
}

/// An ND packet: the IPv6 header fields that matter and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub message: Message,
}

/// Iterates over ND options: (type, whole option bytes). An option of
/// length 0, or one that runs past the end, makes the packet invalid
/// (RFC 4861 §6.1.1, §6.1.2).
fn options(mut b: &[u8]) -> Result<Vec<(u8, &[u8])>, Error> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let kind = *b.first().ok_or(Error::Truncated)?;
        let units = usize::from(*b.get(1).ok_or(Error::Truncated)?);
        if units == 0 {
            return Err(Error::BadOption { kind });
        }
        let len = units * 8;
        let opt = b.get(..len).ok_or(Error::BadOption { kind })?;
        out.push((kind, opt));
        b = b.get(len..).unwrap_or(&[]);
    }
    Ok(out)
}

impl Repr {
    /// Parses and validates an RS or RA the way RFC 4861 §6.1.1 and §6.1.2
    /// ask: hop limit 255, ICMP code 0, a correct checksum, enough length,
    /// well-formed options; an RA from a link-local source; an RS from the
    /// unspecified address without a source link-layer address option.
    /// Anything else (other ICMPv6 types, other next headers) is an error.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, Error> {
        p.check_len()?;
        if p.next_header() != NEXT_HEADER_ICMPV6 {
            return Err(Error::Malformed("not ICMPv6"));
        }
        let (src, dst, hop_limit) = (p.src_addr(), p.dst_addr(), p.hop_limit());
        let icmp = p.payload();
        if icmp.len() < ICMPV6_MIN_LEN {
            return Err(Error::Truncated);
        }
        if icmpv6_checksum(&src, &dst, icmp) != 0 {
            return Err(Error::Malformed("ICMPv6 checksum"));
        }
        let (kind, code) = (icmp.first().copied().unwrap_or(0), icmp.get(1).copied().unwrap_or(0));
        if hop_limit != HOP_LIMIT {
            return Err(Error::Malformed("ND hop limit not 255"));
        }
        if code != 0 {
            return Err(Error::Malformed("ND code"));
        }
        let message = match kind {
            ICMPV6_ROUTER_SOLICITATION => {
                let opts = options(icmp.get(RS_LEN..).ok_or(Error::Truncated)?)?;
                if src.is_unspecified()
                    && opts.iter().any(|(k, _)| *k == option_type::SOURCE_LINK_LAYER_ADDRESS)
                {
                    return Err(Error::Malformed("RS from :: with a link-layer address"));
                }
                Message::RouterSolicitation
            }
            ICMPV6_ROUTER_ADVERTISEMENT => {
                if !is_link_local(&src) {
                    return Err(Error::Malformed("RA source not link-local"));
                }
                if icmp.len() < RA_LEN {
                    return Err(Error::Truncated);
                }
                let flags = icmp.get(5).copied().unwrap_or(0);
                let mut mtu = None;
                let mut prefixes = Vec::new();
                for (k, opt) in options(icmp.get(RA_LEN..).ok_or(Error::Truncated)?)? {
                    match k {
                        option_type::MTU if opt.len() == MTU_OPTION_LEN => mtu = be32(opt, 4),
                        option_type::MTU => return Err(Error::BadOption { kind: k }),
                        option_type::PREFIX_INFORMATION if opt.len() == PREFIX_INFORMATION_LEN => {
                            let prefix_len = opt.get(2).copied().unwrap_or(0);
                            if prefix_len > 128 {
                                return Err(Error::BadOption { kind: k });
                            }
                            let pflags = opt.get(3).copied().unwrap_or(0);
                            prefixes.push(PrefixInformation {
                                prefix: addr(opt, 16).ok_or(Error::BadOption { kind: k })?,
                                prefix_len,
                                on_link: pflags & 0x80 != 0,
                                autonomous: pflags & 0x40 != 0,
                                valid_lifetime: be32(opt, 4).unwrap_or(0),
                                preferred_lifetime: be32(opt, 8).unwrap_or(0),
                            });
                        }
                        option_type::PREFIX_INFORMATION => return Err(Error::BadOption { kind: k }),
                        // RFC 4861 §4.2: unknown options are ignored.
                        _ => {}
                    }
                }
                Message::RouterAdvertisement {
                    cur_hop_limit: icmp.get(4).copied().unwrap_or(0),
                    managed: flags & 0x80 != 0,
                    other: flags & 0x40 != 0,
                    router_lifetime: be16(icmp, 6).unwrap_or(0),
                    reachable_time: be32(icmp, 8).unwrap_or(0),
                    retrans_timer: be32(icmp, 12).unwrap_or(0),
                    mtu,
                    prefixes,
                }
            }
            _ => return Err(Error::Malformed("ICMPv6 type other than RS/RA")),
        };
        Ok(Repr { src, dst, hop_limit, message })
    }

    /// Parses a whole IPv6 packet.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Repr, Error> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// The ICMPv6 message, checksum zero.
    fn emit_icmp(&self) -> Vec<u8> {
        match &self.message {
            Message::RouterSolicitation => vec![ICMPV6_ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0],
            Message::RouterAdvertisement {
                cur_hop_limit,
                managed,
                other,
                router_lifetime,
                reachable_time,
                retrans_timer,
                mtu,
                prefixes,
            } => {
                let mut m =
                    Vec::with_capacity(RA_LEN + MTU_OPTION_LEN + PREFIX_INFORMATION_LEN * prefixes.len());
                m.extend_from_slice(&[ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, 0, *cur_hop_limit]);
                m.push(if *managed { 0x80 } else { 0 } | if *other { 0x40 } else { 0 });
                m.extend_from_slice(&router_lifetime.to_be_bytes());
                m.extend_from_slice(&reachable_time.to_be_bytes());
                m.extend_from_slice(&retrans_timer.to_be_bytes());
                if let Some(mtu) = mtu {
                    m.extend_from_slice(&[option_type::MTU, 1, 0, 0]);
                    m.extend_from_slice(&mtu.to_be_bytes());
                }
                for p in prefixes {
                    m.extend_from_slice(&[option_type::PREFIX_INFORMATION, 4, p.prefix_len]);
                    m.push(if p.on_link { 0x80 } else { 0 } | if p.autonomous { 0x40 } else { 0 });
                    m.extend_from_slice(&p.valid_lifetime.to_be_bytes());
                    m.extend_from_slice(&p.preferred_lifetime.to_be_bytes());
                    m.extend_from_slice(&[0; 4]);
                    m.extend_from_slice(&p.prefix.octets());
                }
                m
            }
        }
    }

    /// The whole IPv6 packet, checksum filled in.
    pub fn emit(&self) -> Vec<u8> {
        let mut icmp = self.emit_icmp();
        let c = icmpv6_checksum(&self.src, &self.dst, &icmp);
        if let Some(f) = icmp.get_mut(2..4) {
            f.copy_from_slice(&c.to_be_bytes());
        }
        let mut out = Vec::with_capacity(IPV6_HEADER_LEN + icmp.len());
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&[NEXT_HEADER_ICMPV6, self.hop_limit]);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        out.extend_from_slice(&icmp);
        out
    }
}

/// RFC 4861 §6.2.1 and §10 router variables, as the LNS uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterConfig {
    /// MaxRtrAdvInterval: the longest time between unsolicited
    /// advertisements (4 s to 1800 s).
    pub max_interval: Duration,
    /// AdvDefaultLifetime: how long the subscriber keeps us as its default
    /// router (at least `max_interval`).
    pub router_lifetime: Duration,
    /// AdvValidLifetime / AdvPreferredLifetime of the prefix, in seconds.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    /// AdvManagedFlag (M): addresses are also available by DHCPv6.
    #[serde(default)]
    pub managed: bool,
    /// AdvOtherConfigFlag (O): other configuration (DNS servers, prefix
    /// delegation) by DHCPv6.
    #[serde(default)]
    pub other: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_interval: Duration::from_secs(600),
            // RFC 4861 §6.2.1 default: 3 * MaxRtrAdvInterval.
            router_lifetime: Duration::from_secs(1800),
            valid_lifetime: 2_592_000,
            preferred_lifetime: 604_800,
            managed: false,
            other: false,
        }
    }
}

impl RouterConfig {
    /// MinRtrAdvInterval: 0.33 * MaxRtrAdvInterval (RFC 4861 §6.2.1
    /// default), never under 3 s.
    pub fn min_interval(&self) -> Duration {
        self.max_interval.mul_f64(0.33).max(MIN_RTR_ADV_INTERVAL)
    }
}

/// RFC 4861 §6.2.1: MinRtrAdvInterval may not go below 3 s.
pub const MIN_RTR_ADV_INTERVAL: Duration = Duration::from_secs(3);
/// RFC 4861 §10 router constants.
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u32 = 3;
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// RFC 4861 §10 host constants.
pub const RTR_SOLICITATION_INTERVAL: Duration = Duration::from_secs(4);
pub const MAX_RTR_SOLICITATIONS: u32 = 3;
pub const MAX_RTR_SOLICITATION_DELAY: Duration = Duration::from_secs(1);

/// The LNS's advertising interface for one PPP link: one prefix, our
/// link-local address from our IPv6CP interface identifier.
#[derive(Debug, Serialize, Deserialize)]
pub struct Router {
    config: RouterConfig,
    local: Ipv6Addr,
    prefix: PrefixInformation,
    mtu: Option<u32>,
    /// Advertisements sent so far (the first few come quicker).
    sent: u32,
    #[serde(with = "crate::snapshot::opt_instant")]
    last_sent: Option<Instant>,
    #[serde(with = "crate::snapshot::instant")]
    next: Instant,
    transmit: crate::lazy_box::LazyQueue<Vec<u8>>,
    /// Solicitations answered, and ND input refused (bad checks).
    pub solicitations: u64,
}

impl Router {
    /// Starts advertising `prefix/prefix_len` at once (§6.2.4: an interface
    /// that becomes an advertising interface sends an advertisement).
    pub fn new(
        now: Instant,
        config: RouterConfig,
        interface_identifier: [u8; 8],
        prefix: Ipv6Addr,
        prefix_len: u8,
        mtu: Option<u32>,
    ) -> Router {
        let prefix = PrefixInformation {
            prefix,
            prefix_len,
            on_link: true,
            autonomous: true,
            valid_lifetime: config.valid_lifetime,
            preferred_lifetime: config.preferred_lifetime.min(config.valid_lifetime),
        };
        Router {
            config,
            local: link_local(interface_identifier),
            prefix,
            mtu,
            sent: 0,
            last_sent: None,
            next: now,
            transmit: Default::default(),
            solicitations: 0,
        }
    }

    pub fn prefix(&self) -> (Ipv6Addr, u8) {
        (self.prefix.prefix, self.prefix.prefix_len)
    }

    /// The advertisement this router sends.
    pub fn advertisement(&self) -> Repr {
        Repr {
            src: self.local,
            dst: ALL_NODES,
            hop_limit: HOP_LIMIT,
            message: Message::RouterAdvertisement {
                // Unspecified: the subscriber keeps its own default.
                cur_hop_limit: 64,
                managed: self.config.managed,
                other: self.config.other,
                router_lifetime: u16::try_from(self.config.router_lifetime.as_secs()).unwrap_or(9000),
                reachable_time: 0,
                retrans_timer: 0,
                mtu: self.mtu,
                prefixes: vec![self.prefix],
            },
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }

    /// `rng` spreads the next advertisement (RFC 4861 §6.2.4 jitter).
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut impl Rng) {
        if now < self.next {
            return;
        }
        self.transmit.push_back(self.advertisement().emit());
        self.sent += 1;
        self.last_sent = Some(now);
        // §6.2.4: uniformly between Min and Max; the first few at most
        // MAX_INITIAL_RTR_ADVERT_INTERVAL apart.
        let (lo, hi) = (self.config.min_interval(), self.config.max_interval.max(MIN_RTR_ADV_INTERVAL));
        let mut interval = if hi > lo { lo + (hi - lo).mul_f64(rng.gen::<f64>()) } else { lo };
        if self.sent < MAX_INITIAL_RTR_ADVERTISEMENTS {
            interval = interval.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
        }
        self.next = now + interval;
    }

    /// A valid Router Solicitation (§6.2.6): an advertisement goes out now,
    /// or MIN_DELAY_BETWEEN_RAS after the last one if that was sooner.
    pub fn handle_solicitation(&mut self, now: Instant, rng: &mut impl Rng) {
        self.solicitations += 1;
        let earliest = self.last_sent.map_or(now, |t| (t + MIN_DELAY_BETWEEN_RAS).max(now));
        self.next = self.next.min(earliest);
        self.handle_timeout(now, rng);
    }

    /// The next IPv6 packet to send over the link.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }
}

/// A subscriber's end: solicits until an advertisement brings an
/// autonomous prefix it can form an address from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Host {
    interface_identifier: [u8; 8],
    sent: u32,
    #[serde(with = "crate::snapshot::opt_instant")]
    next: Option<Instant>,
    transmit: crate::lazy_box::LazyQueue<Vec<u8>>,
    learned: Option<PrefixInformation>,
}

impl Host {
    /// Solicits after `delay` (§6.3.7: a random time up to
    /// MAX_RTR_SOLICITATION_DELAY, [`Host::solicitation_delay`]), unless an
    /// advertisement came first: the router advertises when the link
    /// comes up, and a host that solicited at once crossed it and had the
    /// router answer a second time, MIN_DELAY_BETWEEN_RAS later. A zero
    /// delay solicits at once.
    pub fn new(now: Instant, interface_identifier: [u8; 8], delay: Duration) -> Host {
        let mut h = Host {
            interface_identifier,
            sent: 0,
            next: Some(now + delay),
            transmit: Default::default(),
            learned: None,
        };
        h.handle_timeout(now);
        h
    }

    /// A delay for the first solicitation, uniform up to
    /// MAX_RTR_SOLICITATION_DELAY (§6.3.7).
    pub fn solicitation_delay(rng: &mut impl Rng) -> Duration {
        MAX_RTR_SOLICITATION_DELAY.mul_f64(rng.gen::<f64>())
    }

    pub fn solicitation(&self) -> Repr {
        Repr {
            src: link_local(self.interface_identifier),
            dst: ALL_ROUTERS,
            hop_limit: HOP_LIMIT,
            message: Message::RouterSolicitation,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next.is_none_or(|t| now < t) || self.learned.is_some() {
            return;
        }
        self.transmit.push_back(self.solicitation().emit());
        self.sent += 1;
        self.next = (self.sent < MAX_RTR_SOLICITATIONS).then_some(now + RTR_SOLICITATION_INTERVAL);
    }

    /// A parsed advertisement: the first autonomous /64 in it, as the
    /// address formed from it. Later advertisements refresh, not change, it.
    pub fn handle_advertisement(&mut self, repr: &Repr) -> Option<(PrefixInformation, Ipv6Addr)> {
        let Message::RouterAdvertisement { prefixes, .. } = &repr.message else { return None };
        let p = prefixes.iter().find(|p| p.autonomous && p.prefix_len == 64 && p.valid_lifetime > 0)?;
        if self.learned.is_some() {
            return None;
        }
        self.learned = Some(*p);
        self.next = None;
        Some((*p, slaac_address(p.prefix, self.interface_identifier)))
    }

    pub fn learned(&self) -> Option<Ipv6Addr> {
        self.learned.map(|p| slaac_address(p.prefix, self.interface_identifier))
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::test_rng as rng;

    const IFID: [u8; 8] = [0x02, 0, 0, 0, 0, 0, 0, 0x01];
    const PEER: [u8; 8] = [0x0a, 0xb, 0xc, 0xd, 1, 2, 3, 4];

    fn prefix() -> Ipv6Addr {
        "2001:db8:100:7::".parse().expect("prefix")
    }

    #[test]
    fn advertisement_round_trips_with_a_valid_checksum() {
        let t0 = Instant::now();
        let r = Router::new(t0, RouterConfig::default(), IFID, prefix(), 64, Some(1492));
        let ra = r.advertisement();
        let bytes = ra.emit();
        assert_eq!(bytes.len(), 40 + 16 + 8 + 32);
        assert_eq!(bytes[7], 255, "hop limit");
        assert_eq!(&bytes[24..40], &ALL_NODES.octets());
        let icmp = &bytes[40..];
        assert_eq!(icmpv6_checksum(&ra.src, &ra.dst, icmp), 0);
        let back = Repr::parse_bytes(&bytes).expect("parse");
        assert_eq!(back, ra);
        assert_eq!(back.src, "fe80::200:0:0:1".parse::<Ipv6Addr>().expect("ll"));
        let Message::RouterAdvertisement { managed, other, prefixes, mtu, router_lifetime, .. } =
            back.message
        else {
            panic!("not an RA")
        };
        assert!(!managed && !other);
        assert_eq!((mtu, router_lifetime), (Some(1492), 1800));
        // With a DHCPv6 server: M and O as configured.
        let cfg = RouterConfig { managed: true, other: true, ..RouterConfig::default() };
        let ra = Router::new(t0, cfg, IFID, prefix(), 64, None).advertisement().emit();
        assert_eq!(ra[40 + 5], 0xc0, "M and O flags");
        assert!(matches!(
            Repr::parse_bytes(&ra).expect("parse").message,
            Message::RouterAdvertisement { managed: true, other: true, .. }
        ));
        assert_eq!(prefixes.len(), 1);
        assert!(prefixes[0].on_link && prefixes[0].autonomous);
        assert_eq!((prefixes[0].prefix, prefixes[0].prefix_len), (prefix(), 64));
    }

    /// A Router Solicitation laid out by hand the way the Linux kernel sends
    /// one over PPP (no link-layer address, so no options): fe80::... ->
    /// ff02::2, hop limit 255.
    #[test]
    fn linux_router_solicitation_parses() {
        let src: Ipv6Addr = "fe80::a8bb:ccff:fedd:eeff".parse().expect("src");
        let mut icmp = vec![133, 0, 0, 0, 0, 0, 0, 0];
        let c = icmpv6_checksum(&src, &ALL_ROUTERS, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut pkt = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        pkt.extend_from_slice(&src.octets());
        pkt.extend_from_slice(&ALL_ROUTERS.octets());
        pkt.extend_from_slice(&icmp);
        let r = Repr::parse_bytes(&pkt).expect("RS");
        assert_eq!(r.message, Message::RouterSolicitation);
        assert_eq!(r.src, src);
        // The same from Host::solicitation.
        let h = Host::new(Instant::now(), [0xa8, 0xbb, 0xcc, 0xff, 0xfe, 0xdd, 0xee, 0xff], Duration::ZERO);
        assert_eq!(h.solicitation().emit(), pkt);
    }

    #[test]
    fn invalid_nd_is_refused() {
        let rs = Host::new(Instant::now(), PEER, Duration::ZERO).solicitation();
        let good = rs.emit();
        assert!(Repr::parse_bytes(&good).is_ok());
        // Hop limit below 255: forwarded from elsewhere (§6.1.1).
        let mut b = good.clone();
        b[7] = 64;
        assert_eq!(Repr::parse_bytes(&b), Err(Error::Malformed("ND hop limit not 255")));
        // Checksum.
        let mut b = good.clone();
        b[42] ^= 1;
        assert_eq!(Repr::parse_bytes(&b), Err(Error::Malformed("ICMPv6 checksum")));
        // Code not 0 (checksum fixed so the code check is what fails).
        let mut b = good.clone();
        b[41] = 1;
        b[42..44].copy_from_slice(&[0, 0]);
        let c = icmpv6_checksum(&rs.src, &rs.dst, &b[40..]);
        b[42..44].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Repr::parse_bytes(&b), Err(Error::Malformed("ND code")));
        // An option of length zero.
        let with_opt = |opt: &[u8], src: Ipv6Addr| {
            let mut icmp = vec![133, 0, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(opt);
            let c = icmpv6_checksum(&src, &ALL_ROUTERS, &icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut pkt = vec![0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 255];
            pkt.extend_from_slice(&src.octets());
            pkt.extend_from_slice(&ALL_ROUTERS.octets());
            pkt.extend_from_slice(&icmp);
            pkt
        };
        let ll = link_local(PEER);
        assert_eq!(
            Repr::parse_bytes(&with_opt(&[1, 0, 0, 0, 0, 0, 0, 0], ll)),
            Err(Error::BadOption { kind: 1 })
        );
        // Running past the end.
        assert_eq!(
            Repr::parse_bytes(&with_opt(&[1, 2, 0, 0, 0, 0, 0, 0], ll)),
            Err(Error::BadOption { kind: 1 })
        );
        // From :: with a source link-layer address option.
        let slla = [1, 1, 0, 1, 2, 3, 4, 5];
        assert!(Repr::parse_bytes(&with_opt(&slla, ll)).is_ok());
        assert!(Repr::parse_bytes(&with_opt(&slla, Ipv6Addr::UNSPECIFIED)).is_err());
        // An RA from a global source.
        let mut ra =
            Router::new(Instant::now(), RouterConfig::default(), IFID, prefix(), 64, None).advertisement();
        ra.src = "2001:db8::1".parse().expect("global");
        assert_eq!(Repr::parse_bytes(&ra.emit()), Err(Error::Malformed("RA source not link-local")));
        // Not ICMPv6, not ND, truncated, wrong version.
        let mut udp = good.clone();
        udp[6] = 17;
        assert!(Repr::parse_bytes(&udp).is_err());
        let mut echo = good.clone();
        echo[40] = 128;
        assert!(Repr::parse_bytes(&echo).is_err());
        for n in 0..good.len() {
            assert!(Repr::parse_bytes(&good[..n]).is_err(), "truncated at {n}");
        }
        let mut v4 = good.clone();
        v4[0] = 0x45;
        assert!(Repr::parse_bytes(&v4).is_err());
        // Padding after the stated length is ignored.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 6]);
        assert!(Repr::parse_bytes(&padded).is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let good = Router::new(Instant::now(), RouterConfig::default(), IFID, prefix(), 64, Some(1500))
            .advertisement()
            .emit();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = good.clone();
            let n = (seed % 4) as usize + 1;
            for k in 0..n {
                let at = ((seed >> (8 * k + 8)) as usize) % b.len();
                b[at] = (seed >> (8 * k)) as u8;
            }
            b.truncate((seed >> 40) as usize % (good.len() + 8));
            let _ = Repr::parse_bytes(&b);
        }
    }

    #[test]
    fn unsolicited_advertisements_follow_rfc4861_schedule() {
        let t0 = Instant::now();
        let cfg = RouterConfig { max_interval: Duration::from_secs(600), ..RouterConfig::default() };
        let mut r = Router::new(t0, cfg, IFID, prefix(), 64, None);
        // The first at once.
        assert_eq!(r.poll_timeout(), Some(t0));
        r.handle_timeout(t0, &mut rng());
        assert!(r.poll_transmit().is_some());
        assert!(r.poll_transmit().is_none());
        // The next two at most 16 s apart, then between Min and Max.
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let next = r.poll_timeout().expect("scheduled");
            // Nothing before its time.
            r.handle_timeout(next - Duration::from_millis(1), &mut rng());
            assert!(r.poll_transmit().is_none());
            r.handle_timeout(next, &mut rng());
            assert!(r.poll_transmit().is_some());
            gaps.push(next - now);
            now = next;
        }
        for g in &gaps[..2] {
            assert!(*g >= MIN_RTR_ADV_INTERVAL && *g <= MAX_INITIAL_RTR_ADVERT_INTERVAL, "{gaps:?}");
        }
        for g in &gaps[2..] {
            assert!(*g >= cfg.min_interval() && *g <= cfg.max_interval, "{gaps:?}");
        }
        assert_eq!(cfg.min_interval(), Duration::from_secs_f64(198.0));
        let short = RouterConfig { max_interval: Duration::from_secs(4), ..cfg };
        assert_eq!(short.min_interval(), Duration::from_secs(3));
    }

    #[test]
    fn solicitations_are_answered_at_most_every_three_seconds() {
        let t0 = Instant::now();
        let mut r = Router::new(t0, RouterConfig::default(), IFID, prefix(), 64, None);
        r.handle_timeout(t0, &mut rng());
        assert!(r.poll_transmit().is_some());
        // Right after the unsolicited one: the answer waits until t0 + 3 s.
        let t1 = t0 + Duration::from_secs(1);
        r.handle_solicitation(t1, &mut rng());
        assert!(r.poll_transmit().is_none());
        assert_eq!(r.poll_timeout(), Some(t0 + MIN_DELAY_BETWEEN_RAS));
        r.handle_timeout(t0 + MIN_DELAY_BETWEEN_RAS, &mut rng());
        assert!(r.poll_transmit().is_some());
        // Later: at once.
        let t2 = t0 + Duration::from_secs(100);
        r.handle_solicitation(t2, &mut rng());
        assert!(r.poll_transmit().is_some());
        assert_eq!(r.solicitations, 2);
    }

    #[test]
    fn host_solicits_three_times_and_learns_the_prefix() {
        let t0 = Instant::now();
        let mut h = Host::new(t0, PEER, Duration::ZERO);
        let rs = h.poll_transmit().expect("first RS at once");
        assert_eq!(Repr::parse_bytes(&rs).map(|r| r.message), Ok(Message::RouterSolicitation));
        let mut now = t0;
        let mut n = 1;
        while let Some(t) = h.poll_timeout() {
            assert_eq!(t - now, RTR_SOLICITATION_INTERVAL);
            now = t;
            h.handle_timeout(now);
            while h.poll_transmit().is_some() {
                n += 1;
            }
        }
        assert_eq!(n, MAX_RTR_SOLICITATIONS);
        let r = Router::new(t0, RouterConfig::default(), IFID, prefix(), 64, None);
        let ra = Repr::parse_bytes(&r.advertisement().emit()).expect("RA");
        let (p, a) = h.handle_advertisement(&ra).expect("learned");
        assert_eq!((p.prefix, p.prefix_len), (prefix(), 64));
        assert_eq!(a, "2001:db8:100:7:a0b:c0d:102:304".parse::<Ipv6Addr>().expect("addr"));
        assert_eq!(h.learned(), Some(a));
        assert!(h.handle_advertisement(&ra).is_none(), "refreshes are not news");
        // A prefix without A, or not /64, teaches nothing.
        let mut h2 = Host::new(t0, PEER, Duration::ZERO);
        let mut no_a = ra.clone();
        if let Message::RouterAdvertisement { prefixes, .. } = &mut no_a.message {
            prefixes[0].autonomous = false;
        }
        assert!(h2.handle_advertisement(&no_a).is_none());
    }

    /// §6.3.7: the first solicitation waits a random time up to a second;
    /// an advertisement within it leaves nothing to solicit.
    #[test]
    fn host_waits_before_soliciting_and_an_advertisement_meanwhile_ends_it() {
        let t0 = Instant::now();
        let mut rng = rng();
        let delays: Vec<Duration> = (0..50).map(|_| Host::solicitation_delay(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= MAX_RTR_SOLICITATION_DELAY));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(300)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(700)));
        let delay = Duration::from_millis(400);
        let mut h = Host::new(t0, PEER, delay);
        assert!(h.poll_transmit().is_none(), "nothing at once");
        assert_eq!(h.poll_timeout(), Some(t0 + delay));
        h.handle_timeout(t0 + delay);
        assert!(h.poll_transmit().is_some(), "the first RS after the delay");
        // The router's advertisement arrives first: no solicitation ever.
        let mut quiet = Host::new(t0, PEER, delay);
        let r = Router::new(t0, RouterConfig::default(), IFID, prefix(), 64, None);
        let ra = Repr::parse_bytes(&r.advertisement().emit()).expect("RA");
        assert!(quiet.handle_advertisement(&ra).is_some());
        assert_eq!(quiet.poll_timeout(), None);
        quiet.handle_timeout(t0 + delay);
        assert!(quiet.poll_transmit().is_none());
    }
}
