//! The exception path: subscriber data the fast path did not take.
//!
//! Upstream, an L2TP data message of a forwarding session that reached the
//! control plane's socket (the kernel reassembled its fragments, IPsec
//! decrypted it, the XDP program passed it for a missing neighbour) is
//! checked as the fast path checks it (the session forwards that family,
//! the inner source is the subscriber's), its PPP header removed, TCP MSS
//! clamped, and handed to the kernel ([`Effect::Deliver`], a TUN device of
//! the instance), which routes it, queueing it while it resolves a
//! neighbour.
//!
//! Downstream, the kernel routes the subscribers' addresses and prefixes
//! into that device ([`Effect::Route`], added and removed with what the
//! sessions forward); a core packet the XDP program passed instead of
//! redirecting arrives at [`Core::handle_tun_packet`], is clamped, put in
//! PPP as the link negotiated (ACFC, PFC) and in an L2TP data message
//! (Ns when the LAC asked for sequencing) and sent from the L2TP socket,
//! where the kernel fragments the outer packet if it must and applies
//! IPsec when a policy covers it. An inner packet larger than the link's
//! MRU is fragmented (IPv4 without DF) or answered with ICMP "too big", as
//! a router does.
//!
//! The routes and their index are derived from the sessions (rebuilt on
//! restore), never state of their own.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::{Core, Datagram, Effect, NsFill, SessionKey};
use crate::daemon::aaa::mask;
use crate::l2tp::header::Sequence;

/// What the core needs to run the slow path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlowPathConfig {
    /// Clamp the TCP MSS of SYNs both ways to what the link carries.
    pub mss_clamp: bool,
    /// Where ICMP errors of the LNS come from (per family; none: not sent).
    pub icmp_source_v4: Option<Ipv4Addr>,
    pub icmp_source_v6: Option<Ipv6Addr>,
}

/// A route the driver keeps in the kernel: `prefix/len` into the TUN.
pub type Route = (IpAddr, u8);

/// Which session owns a destination, for packets from the TUN.
#[derive(Debug, Default)]
pub(super) struct RouteIndex {
    v4: HashMap<Ipv4Addr, SessionKey>,
    /// Keyed by the masked prefix's bytes: a u128 aligns the key to 16
    /// bytes, 32 with the length, where these are 17 (a B-tree node of
    /// them 40 % smaller, a session's route about 25 bytes less).
    v6: BTreeMap<([u8; 16], u8), SessionKey>,
    /// Prefix lengths in `v6`, longest first when looked up.
    v6_lengths: BTreeMap<u8, usize>,
    /// What each session has routed now, sorted (a slice of one or two
    /// routes, where a set would take a B-tree node of eleven).
    routed: BTreeMap<SessionKey, Box<[Route]>>,
}

impl RouteIndex {
    fn insert(&mut self, key: SessionKey, (prefix, len): Route) {
        match prefix {
            IpAddr::V4(a) => {
                self.v4.insert(a, key);
            }
            IpAddr::V6(p) => {
                if self.v6.insert((mask(p.into(), len).to_be_bytes(), len), key).is_none() {
                    *self.v6_lengths.entry(len).or_default() += 1;
                }
            }
        }
    }

    fn remove(&mut self, (prefix, len): Route) {
        match prefix {
            IpAddr::V4(a) => {
                self.v4.remove(&a);
            }
            IpAddr::V6(p) => {
                if self.v6.remove(&(mask(p.into(), len).to_be_bytes(), len)).is_some() {
                    if let Some(n) = self.v6_lengths.get_mut(&len) {
                        *n -= 1;
                        if *n == 0 {
                            self.v6_lengths.remove(&len);
                        }
                    }
                }
            }
        }
    }

    fn lookup(&self, dst: IpAddr) -> Option<SessionKey> {
        match dst {
            IpAddr::V4(a) => self.v4.get(&a).copied(),
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6_lengths
                    .keys()
                    .rev()
                    .find_map(|&len| self.v6.get(&(mask(a, len).to_be_bytes(), len)).copied())
            }
        }
    }

    /// The session's routes as `want`; returns what to add and remove.
    fn set(&mut self, key: SessionKey, mut want: Vec<Route>) -> (Vec<Route>, Vec<Route>) {
        want.sort_unstable();
        want.dedup();
        let had = self.routed.remove(&key).unwrap_or_default();
        let add: Vec<Route> = want.iter().filter(|r| had.binary_search(r).is_err()).copied().collect();
        let remove: Vec<Route> = had.iter().filter(|r| want.binary_search(r).is_err()).copied().collect();
        for r in &remove {
            self.remove(*r);
        }
        for r in &add {
            self.insert(key, *r);
        }
        if !want.is_empty() {
            self.routed.insert(key, want.into_boxed_slice());
        }
        (add, remove)
    }
}

fn ip_version(packet: &[u8]) -> Option<u8> {
    packet.first().map(|b| b >> 4)
}

fn src_dst(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match ip_version(packet)? {
        4 => {
            let s: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        6 => {
            let s: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

fn in_prefix(a: Ipv6Addr, (p, len): (Ipv6Addr, u8)) -> bool {
    mask(a.into(), len) == mask(p.into(), len)
}

/// IPv6 the PPP session answers itself: router discovery and the rest of
/// link-local and multicast traffic (the fast path passes it up too).
fn for_the_link(dst: Ipv6Addr) -> bool {
    dst.is_multicast() || (dst.segments()[0] & 0xffc0) == 0xfe80
}

impl Core {
    fn slow_drop(&mut self, reason: &'static str) {
        *self.counters.slow_path.entry(reason).or_default() += 1;
    }

    /// The routes a session's state calls for: its IPv4 address while
    /// IPCP forwards it, its IPv6 prefix, delegated prefix and DHCPv6
    /// address from a pool (IA_NA, bound) while IPv6CP does. Emits the
    /// differences.
    pub(super) fn sync_routes(&mut self, key: SessionKey) {
        if self.cfg.slow_path.is_none() {
            return;
        }
        let want: Vec<Route> = match self.sessions.get(&key) {
            Some(s) => {
                let mut w = Vec::new();
                if let (true, Some(a)) = (s.ipv4_forwarding, s.ipv4) {
                    w.push((IpAddr::V4(a), 32));
                }
                if let Some((p, len)) = s.ipv6.prefix {
                    w.push((IpAddr::V6(p), len));
                    if let Some((d, dlen)) = s.ipv6.delegated {
                        w.push((IpAddr::V6(d), dlen));
                    }
                    if let Some(a) = s.ipv6.dhcpv6.na.as_ref().and_then(super::dhcpv6::NaBinding::route) {
                        w.push((IpAddr::V6(a), 128));
                    }
                }
                w
            }
            None => Vec::new(),
        };
        let (add, remove) = self.routes.set(key, want);
        for (prefix, len) in remove {
            self.effects.push_back(Effect::Route { prefix, len, add: false });
        }
        for (prefix, len) in add {
            self.effects.push_back(Effect::Route { prefix, len, add: true });
        }
    }

    /// Upstream: a PPP frame of a connected session. Returns false when it
    /// is not the slow path's (PPP control, link-local IPv6, the slow path
    /// off): the PPP session takes it.
    /// `reassembled`: the datagram was larger than its link's MTU (the
    /// kernel put it together from fragments), counted as the reason.
    pub(super) fn slow_path_up(
        &mut self,
        now: Instant,
        key: SessionKey,
        frame: &[u8],
        reassembled: bool,
    ) -> bool {
        if self.cfg.slow_path.is_none() {
            return false;
        }
        let Some((protocol, at)) = lns_wire::ppp::decapsulate(frame) else { return false };
        if protocol != lns_wire::ppp::IPV4 && protocol != lns_wire::ppp::IPV6 {
            return false;
        }
        let Some(s) = self.sessions.get(&key) else { return false };
        let packet = frame.get(at..).unwrap_or_default();
        let Some((src, dst)) = src_dst(packet) else {
            self.slow_drop("malformed");
            return true;
        };
        let own = match (src, dst) {
            (IpAddr::V6(_), IpAddr::V6(d)) if for_the_link(d) => return false,
            (IpAddr::V4(a), _) => s.ipv4_forwarding && s.ipv4 == Some(a),
            (IpAddr::V6(a), _) => {
                s.ipv6.prefix.is_some_and(|p| in_prefix(a, p))
                    || s.ipv6.prefix.and(s.ipv6.delegated).is_some_and(|p| in_prefix(a, p))
                    || s.ipv6.prefix.and(s.ipv6.dhcpv6.na.as_ref().and_then(super::dhcpv6::NaBinding::route))
                        == Some(a)
            }
        };
        let forwarding = match src {
            IpAddr::V4(_) => s.ipv4_forwarding,
            IpAddr::V6(_) => s.ipv6.prefix.is_some(),
        };
        if !forwarding {
            // RFC 1661 §3.5: data before its NCP is up is discarded.
            self.slow_drop("not_forwarding");
            return true;
        }
        if !own {
            self.slow_drop("spoofed");
            return true;
        }
        let mut packet = packet.to_vec();
        let mtu = s.link.mtu;
        self.clamp(&mut packet, mtu);
        // The session's rate limit, as the fast path enforces it (a
        // bucket of the slow path's own: packets here are few).
        if !self.police_slow_path(now, key, true, packet.len()) {
            return true;
        }
        *self.counters.slow_path.entry("up_packets").or_default() += 1;
        *self
            .counters
            .slow_path
            .entry(if reassembled { "up_reassembled" } else { "up_whole" })
            .or_default() += 1;
        // Untracked by the store: counters alone are not worth a write;
        // they go with the session's next one (an accounting record is
        // one, so what was reported is always in the store).
        if let Some(s) = self.sessions.untracked().get_mut(&key) {
            s.slow_path.up_packets += 1;
            s.slow_path.up_bytes += packet.len() as u64;
        }
        self.effects.push_back(Effect::Deliver { packet });
        true
    }

    fn clamp(&self, packet: &mut [u8], mtu: u16) {
        if self.cfg.slow_path.as_ref().is_some_and(|c| c.mss_clamp) {
            let headers = if ip_version(packet) == Some(4) { 40 } else { 60 };
            lns_wire::tcp::clamp_mss(packet, mtu.saturating_sub(headers));
        }
    }

    /// Downstream: an IP packet the kernel routed into the TUN device.
    pub fn handle_tun_packet(&mut self, now: Instant, packet: &[u8]) {
        let Some(cfg) = self.cfg.slow_path.as_ref() else { return };
        let (icmp_v4, icmp_v6) = (cfg.icmp_source_v4, cfg.icmp_source_v6);
        let Some((_, dst)) = src_dst(packet) else {
            self.slow_drop("malformed");
            return;
        };
        if let IpAddr::V6(d) = dst {
            if for_the_link(d) {
                // The kernel's own IPv6 on the device (router
                // solicitations, MLD): nobody's, and not a drop.
                return;
            }
        }
        let Some(key) = self.routes.lookup(dst) else {
            self.slow_drop("no_session");
            return;
        };
        if !self.police_slow_path(now, key, false, packet.len()) {
            return;
        }
        let Some(s) = self.sessions.get(&key) else {
            self.slow_drop("no_session");
            return;
        };
        let link = s.link;
        if packet.len() <= usize::from(link.mtu) {
            self.send_down(key, dst.is_ipv4(), packet);
            return;
        }
        let source = match dst {
            IpAddr::V4(_) => icmp_v4.map(IpAddr::V4),
            IpAddr::V6(_) => icmp_v6.map(IpAddr::V6),
        };
        match lns_wire::ipv4::fragment(packet, link.mtu) {
            Some(fragments) if dst.is_ipv4() => {
                *self.counters.slow_path.entry("fragmented").or_default() += 1;
                for f in &fragments {
                    if !self.send_down(key, true, f) {
                        return;
                    }
                }
            }
            _ => {
                if let Some(icmp) = source.and_then(|from| lns_wire::icmp::too_big(packet, link.mtu, from)) {
                    *self.counters.slow_path.entry("icmp_too_big").or_default() += 1;
                    self.effects.push_back(Effect::Deliver { packet: icmp });
                } else {
                    self.slow_drop("too_big");
                }
            }
        }
    }

    /// One IP packet (or fragment) that fits the link, down the session:
    /// PPP and L2TP written in front of it in the datagram's own buffer
    /// (one allocation per packet, the datagram the socket sends), the MSS
    /// clamped there. False when the session has no L2TP session (left).
    fn send_down(&mut self, key: SessionKey, ipv4: bool, packet: &[u8]) -> bool {
        let Some(s) = self.sessions.get(&key) else {
            self.slow_drop("no_session");
            return false;
        };
        let link = s.link;
        let protocol = if ipv4 { lns_wire::ppp::IPV4 } else { lns_wire::ppp::IPV6 };
        let (ppp, ppp_len) = lns_wire::ppp::header(protocol, link.acfc, link.pfc);
        let clamp_to = self
            .cfg
            .slow_path
            .as_ref()
            .filter(|c| c.mss_clamp)
            .map(|_| link.mtu.saturating_sub(if ipv4 { 40 } else { 60 }));
        let sequence = link.sequencing.then_some(Sequence { ns: 0, nr: 0 });
        let fill = |out: &mut [u8]| {
            let (header, ip) = out.split_at_mut(ppp_len);
            header.copy_from_slice(ppp.get(..ppp_len).unwrap_or_default());
            ip.copy_from_slice(packet);
            if let Some(mss) = clamp_to {
                lns_wire::tcp::clamp_mss(ip, mss);
            }
        };
        let Some(t) =
            self.endpoint.encapsulate_with(key.tunnel, key.session, ppp_len + packet.len(), sequence, fill)
        else {
            self.slow_drop("no_session");
            return false;
        };
        let ns = link.sequencing.then(|| NsFill { key, offset: super::link::ns_offset(&t.payload) });
        let from = self.peer_local.get(&t.destination).copied();
        *self.counters.slow_path.entry("down_packets").or_default() += 1;
        // Untracked, as upstream.
        if let Some(s) = self.sessions.untracked().get_mut(&key) {
            s.slow_path.down_packets += 1;
            s.slow_path.down_bytes += packet.len() as u64;
        }
        self.effects.push_back(Effect::Send(Datagram {
            to: t.destination,
            from,
            source_port: t.source_port,
            payload: t.payload,
            ns,
        }));
        true
    }
}
