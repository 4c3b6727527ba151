//! The DHCPv6 server on the PPP links (RFC 8415 §18.3): prefix delegation
//! (IA_PD) to the subscriber's router, an address (IA_NA) where
//! configured, and DNS servers (RFC 3646).
//!
//! A client on a PPP link sends to `ff02::1:2` port 547 from its
//! link-local address; the data plane passes link-local and multicast
//! IPv6 to the control plane, where [`Core::dhcpv6_input`] takes UDP to
//! port 547 before PPP sees it. The answer goes back from our link-local
//! address (our IPv6CP interface identifier) down the session.
//!
//! Bindings are the session's (one client, the router at the end of the
//! link): a message can only reach the bindings of the session it arrived
//! on, so nobody is ever answered with another subscriber's lease.
//!
//! The delegated prefix is the Access-Accept's Delegated-IPv6-Prefix
//! (RFC 4818) when there is one, else one from an `[[ipv6_pd_pool]]`
//! (taken when offered, held while bound, given back when the binding
//! ends). It is in the session's fast-path entry (`delegated_prefix`, so
//! the data plane routes it through `lns_sub_v6_lpm` and takes it as a
//! source) while IPv6CP is up and the binding lives: Release, expiry, the
//! end of IPv6CP and of the session take it out. A RADIUS prefix is also
//! routed from IPv6CP up until the client releases it, as before this
//! server existed, for routers configured by hand.
//!
//! The IA_NA address is one of an `[[ipv6_na_pool]]`'s when `[ppp]
//! default_ipv6_na_pool` names one (taken when offered, held while bound,
//! given back when the binding ends, as a pooled prefix is): while it is
//! bound and IPv6CP is up it is routed as a /128 beside the session's
//! entry ([`Effect::AddressRoute`]; the entry has room for two prefixes,
//! the /64 and the delegated one), so the data plane forwards to it and
//! takes it as a source. A Decline of it gives it back (the pool's cursor
//! moves on, so the next offer is another). Without a pool it is one of
//! the session's /64 (interface identifier `::d6c9:0:0:1`, never the LNS's
//! own link-local), routed with the /64; a Decline of it stops offering it
//! on this session.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use lns_wire::dhcpv6::{
    message_type as mt, option_code, status_code, Error as WireError, Ia, IaAddress, IaPd, IaPrefix, Repr,
    Status, Udp6, ALL_SERVERS, CLIENT_PORT, SERVER_PORT,
};
use serde::{Deserialize, Serialize};

use super::{Core, Effect, MapOp, SessionKey};
use crate::daemon::aaa::Ipv6PoolEntry;
use crate::l2tp::header::Sequence;

/// What the server hands out, from the configuration.
#[derive(Debug, Clone)]
pub struct Dhcpv6Config {
    /// Prefix pools for delegation (`[[ipv6_pd_pool]]`), kept with the
    /// IPv6 pools (one allocator, so none is given twice).
    pub pd_pools: Vec<Ipv6PoolEntry>,
    /// `[ppp] default_ipv6_pd_pool`: the pool of sessions without a
    /// Delegated-IPv6-Prefix; None: no delegation for them.
    pub default_pd_pool: Option<String>,
    /// Answer IA_NA (and set the Router Advertisement's M flag): with an
    /// address of `default_na_pool`, or of the session's /64 without one.
    pub ia_na: bool,
    /// Address pools for IA_NA (`[[ipv6_na_pool]]`, /128s), kept with the
    /// IPv6 pools.
    pub na_pools: Vec<Ipv6PoolEntry>,
    /// `[ppp] default_ipv6_na_pool`: where IA_NA addresses come from.
    pub default_na_pool: Option<String>,
    /// DNS recursive name servers (RFC 3646).
    pub dns: Vec<Ipv6Addr>,
    /// Lifetimes of bindings; T1 and T2 are 0.5 and 0.8 of the preferred
    /// lifetime (RFC 8415 §21.4).
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    /// Commit at once on a Solicit with Rapid Commit (§18.3.1).
    pub rapid_commit: bool,
}

impl Default for Dhcpv6Config {
    fn default() -> Self {
        Dhcpv6Config {
            pd_pools: Vec::new(),
            default_pd_pool: None,
            ia_na: false,
            na_pools: Vec::new(),
            default_na_pool: None,
            dns: Vec::new(),
            preferred_lifetime: 3600,
            valid_lifetime: 7200,
            rapid_commit: true,
        }
    }
}

impl Dhcpv6Config {
    /// Is there anything to serve besides DNS? (The Router
    /// Advertisement's O flag is set when the server runs at all.)
    pub fn serves(&self) -> bool {
        !self.pd_pools.is_empty() || self.ia_na || !self.dns.is_empty()
    }
}

/// How long an offered prefix is held for the Request that takes it.
const OFFER_HOLD: Duration = Duration::from_secs(60);

/// The interface identifier of the IA_NA address in the session's /64.
const IA_NA_INTERFACE_ID: u64 = 0xd6c9_0000_0000_0001;

/// A delegated prefix and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdBinding {
    pub iaid: u32,
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// From a pool (given back when the binding ends), not from RADIUS.
    pub pooled: bool,
    /// Requested (bound): routed; otherwise only offered.
    pub committed: bool,
    #[serde(with = "crate::snapshot::instant")]
    pub expires: Instant,
}

/// An address given by IA_NA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NaBinding {
    pub iaid: u32,
    pub address: Ipv6Addr,
    pub committed: bool,
    #[serde(with = "crate::snapshot::instant")]
    pub expires: Instant,
    /// From an `[[ipv6_na_pool]]` (given back when the binding ends, and
    /// routed as a /128 while committed), not from the session's /64.
    #[serde(default)]
    pub pooled: bool,
}

impl NaBinding {
    /// The /128 routed beside the session's entry (and into the slow
    /// path's TUN), if any.
    pub(super) fn route(&self) -> Option<Ipv6Addr> {
        (self.pooled && self.committed).then_some(self.address)
    }
}

/// A session's DHCPv6 state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bindings {
    /// The client's DUID the bindings are for.
    pub client_id: Option<Vec<u8>>,
    pub pd: Option<PdBinding>,
    pub na: Option<NaBinding>,
    /// The Access-Accept's Delegated-IPv6-Prefix, kept when the routed one
    /// is released.
    pub authorized_pd: Option<(Ipv6Addr, u8)>,
    /// The client declined the IA_NA address: not offered again.
    pub na_declined: bool,
    /// The Access-Accept's DNS-Server-IPv6-Address (RFC 6911): answered
    /// instead of the configured servers when there are any.
    #[serde(default)]
    pub dns: Vec<Ipv6Addr>,
    /// Messages answered.
    pub replies: u64,
}

impl crate::lazy_box::Empty for Bindings {
    const EMPTY: &'static Self = &Bindings {
        client_id: None,
        pd: None,
        na: None,
        authorized_pd: None,
        na_declined: false,
        dns: Vec::new(),
        replies: 0,
    };
}

/// DUID-EN (RFC 8415 §11.3) of the server: enterprise number 32473 (RFC
/// 5612, for documentation) and a hash of the LNS's host name, the same
/// across restarts.
pub fn server_duid(host_name: &[u8]) -> Vec<u8> {
    // FNV-1a, 64 bits: stable and needs no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host_name {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut d = vec![0, 2, 0, 0, 0x7e, 0xd9];
    d.extend_from_slice(&h.to_be_bytes());
    d
}

/// The Router Advertisement's M and O flags (RFC 4861 §4.2) as the server
/// answers: M when it gives addresses (IA_NA), O when it has anything to
/// give (delegation pools, addresses, DNS servers).
pub(super) fn set_ra_flags(cfg: &mut super::CoreConfig) {
    cfg.ppp.nd.managed = cfg.dhcpv6.ia_na;
    cfg.ppp.nd.other = cfg.dhcpv6.serves();
}

/// The IPv6 pool entries the core's allocator holds: the SLAAC pools, the
/// delegation pools and the address pools.
pub(super) fn pool_entries(ipv6: &[Ipv6PoolEntry], cfg: &Dhcpv6Config) -> Vec<Ipv6PoolEntry> {
    ipv6.iter().chain(cfg.pd_pools.iter()).chain(cfg.na_pools.iter()).cloned().collect()
}

fn in_prefix(a: Ipv6Addr, (p, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(u32::from(128 - len.min(128))).unwrap_or(0);
    u128::from(a) & mask == u128::from(p) & mask
}

/// Counts a drop by its name in `lnsctl show stats`.
fn drop_name(e: &WireError) -> &'static str {
    match e {
        WireError::TooLong => "dhcpv6_oversized",
        _ => "dhcpv6_malformed",
    }
}

impl Core {
    /// PPP from a subscriber: if it is IPv6 UDP to the DHCPv6 server port,
    /// served (or dropped and counted) here and true; else false, for PPP.
    pub(super) fn dhcpv6_input(&mut self, now: Instant, key: SessionKey, frame: &[u8]) -> bool {
        let Some((lns_wire::ppp::IPV6, at)) = lns_wire::ppp::decapsulate(frame) else { return false };
        let Some(packet) = frame.get(at..) else { return false };
        // Next Header UDP, destination port 547: the fixed header only
        // (a client on a PPP link sends no extension headers).
        if packet.get(6) != Some(&17) || packet.get(42..44) != Some(&SERVER_PORT.to_be_bytes()[..]) {
            return false;
        }
        let Some(s) = self.sessions.get(&key) else { return true };
        let (Some(prefix), Some(local)) = (s.ipv6.prefix, s.ppp.ipv6_link_local()) else {
            self.drop_datagram("dhcpv6_not_up");
            return true;
        };
        let udp = match Udp6::parse(packet) {
            Ok(u) => u,
            Err(e) => {
                self.drop_datagram(drop_name(&e));
                return true;
            }
        };
        // §7.1, §18.4: to the servers' multicast address, or to us.
        if udp.dst != ALL_SERVERS && udp.dst != local {
            self.drop_datagram("dhcpv6_not_for_us");
            return true;
        }
        let request = match Repr::parse_bytes(udp.payload) {
            Ok(r) => r,
            Err(e) => {
                self.drop_datagram(drop_name(&e));
                return true;
            }
        };
        let duid = server_duid(&self.cfg.endpoint.tunnel.host_name);
        let reply = self.dhcpv6_serve(now, key, prefix, &duid, &request);
        // A binding made, extended or released moved its expiry.
        self.reclock(key, now, now);
        let Some(reply) = reply else { return true };
        let payload = reply.to_bytes();
        let out = Udp6 {
            src: local,
            dst: udp.src,
            src_port: SERVER_PORT,
            dst_port: if udp.src_port == 0 { CLIENT_PORT } else { udp.src_port },
            hop_limit: 255,
            payload: &payload,
        }
        .emit();
        self.dhcpv6_send(key, &out);
        true
    }

    /// One IPv6 packet down the session, as data.
    fn dhcpv6_send(&mut self, key: SessionKey, packet: &[u8]) {
        let Some(s) = self.sessions.get_mut(&key) else { return };
        s.ipv6.dhcpv6.replies += 1;
        let link = s.link;
        let frame = lns_wire::ppp::encapsulate(lns_wire::ppp::IPV6, link.acfc, link.pfc, packet);
        let sequence = link.sequencing.then_some(Sequence { ns: 0, nr: 0 });
        let Some(t) = self.endpoint.encapsulate(key.tunnel, key.session, &frame, sequence, false) else {
            return;
        };
        let ns = link.sequencing.then(|| super::NsFill { key, offset: super::link::ns_offset(&t.payload) });
        let from = self.peer_local.get(&t.destination).copied();
        self.effects.push_back(super::Effect::Send(super::Datagram {
            to: t.destination,
            from,
            source_port: t.source_port,
            payload: t.payload,
            ns,
        }));
    }

    /// The server's answer to `request` on session `key`, whose /64 is
    /// `prefix`; None: no answer (§16 validation, or nothing to say).
    fn dhcpv6_serve(
        &mut self,
        now: Instant,
        key: SessionKey,
        prefix: (Ipv6Addr, u8),
        duid: &[u8],
        request: &Repr,
    ) -> Option<Repr> {
        let client_required = !matches!(request.msg_type, mt::INFORMATION_REQUEST);
        let server_forbidden = matches!(request.msg_type, mt::SOLICIT | mt::CONFIRM | mt::REBIND);
        let server_required = matches!(request.msg_type, mt::REQUEST | mt::RENEW | mt::RELEASE | mt::DECLINE);
        let known = matches!(
            request.msg_type,
            mt::SOLICIT
                | mt::REQUEST
                | mt::CONFIRM
                | mt::RENEW
                | mt::REBIND
                | mt::RELEASE
                | mt::DECLINE
                | mt::INFORMATION_REQUEST
        );
        let valid = known
            && (!client_required || request.client_id.is_some())
            && !(server_forbidden && request.server_id.is_some())
            && (!server_required || request.server_id.is_some())
            && request.server_id.as_deref().is_none_or(|id| id == duid);
        if !valid {
            // §16: discarded. Another server's, or not a client's message.
            self.drop_datagram(if known { "dhcpv6_invalid" } else { "dhcpv6_unexpected" });
            return None;
        }
        let mut reply = Repr::new(mt::REPLY, request.transaction_id);
        reply.server_id = Some(duid.to_vec());
        reply.client_id = request.client_id.clone();
        if request.oro.contains(&option_code::DNS_SERVERS) {
            let authorized = self.sessions.get(&key).map(|s| s.ipv6.dhcpv6.dns.clone()).unwrap_or_default();
            reply.dns_servers = if authorized.is_empty() { self.cfg.dhcpv6.dns.clone() } else { authorized };
        }
        let client = request.client_id.clone().unwrap_or_default();
        match request.msg_type {
            mt::INFORMATION_REQUEST => {}
            mt::SOLICIT => {
                let commit = request.rapid_commit && self.cfg.dhcpv6.rapid_commit;
                if commit {
                    reply.rapid_commit = true;
                } else {
                    reply.msg_type = mt::ADVERTISE;
                    // The only server on the link: take us at once (§18.2.1).
                    reply.preference = Some(255);
                }
                self.dhcpv6_new_client(key, &client);
                self.dhcpv6_assign(now, key, prefix, request, &mut reply, commit);
                let served = reply.ia_pd.iter().any(|ia| !ia.entries.is_empty())
                    || reply.ia_na.iter().any(|ia| !ia.entries.is_empty());
                let asked = !request.ia_pd.is_empty() || !request.ia_na.is_empty();
                if asked && !commit && !served {
                    // §18.3.9: an Advertise that will assign nothing says
                    // so at the top level.
                    reply.status = Some(Status::new(status_code::NO_ADDRS_AVAIL, "nothing to assign"));
                }
            }
            mt::REQUEST => {
                self.dhcpv6_new_client(key, &client);
                self.dhcpv6_assign(now, key, prefix, request, &mut reply, true);
            }
            mt::RENEW | mt::REBIND => {
                let ours = self.dhcpv6_is_client(key, &client);
                self.dhcpv6_extend(now, key, ours, request, &mut reply);
            }
            mt::RELEASE | mt::DECLINE => {
                let ours = self.dhcpv6_is_client(key, &client);
                self.dhcpv6_release(key, ours, request, &mut reply);
                reply.dns_servers.clear();
                reply.status = Some(Status::new(status_code::SUCCESS, ""));
            }
            mt::CONFIRM => {
                let addresses: Vec<Ipv6Addr> =
                    request.ia_na.iter().flat_map(|ia| ia.entries.iter().map(|e| e.address)).collect();
                if addresses.is_empty() {
                    // §18.3.3: nothing to confirm, no Reply.
                    return None;
                }
                let on_link = addresses.iter().all(|a| in_prefix(*a, prefix));
                reply.dns_servers.clear();
                reply.status = Some(if on_link {
                    Status::new(status_code::SUCCESS, "")
                } else {
                    Status::new(status_code::NOT_ON_LINK, "not on this link")
                });
            }
            _ => return None,
        }
        Some(reply)
    }

    /// A Solicit or Request from `client`: a different client on the link
    /// (the router was replaced, or its DUID changed) takes the link's
    /// bindings over; the old ones end.
    fn dhcpv6_new_client(&mut self, key: SessionKey, client: &[u8]) {
        let Some(s) = self.sessions.get(&key) else { return };
        if s.ipv6.dhcpv6.client_id.as_deref() == Some(client) {
            return;
        }
        self.dhcpv6_end_pd(key);
        self.dhcpv6_end_na(key);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.ipv6.dhcpv6.client_id = Some(client.to_vec());
        }
    }

    fn dhcpv6_is_client(&self, key: SessionKey, client: &[u8]) -> bool {
        self.sessions.get(&key).is_some_and(|s| s.ipv6.dhcpv6.client_id.as_deref() == Some(client))
    }

    fn lifetimes(&self) -> (u32, u32, u32, u32) {
        let c = &self.cfg.dhcpv6;
        let preferred = c.preferred_lifetime.min(c.valid_lifetime);
        (preferred, c.valid_lifetime, preferred / 2, preferred / 5 * 4)
    }

    /// Solicit and Request: the first IA_PD gets the session's delegated
    /// prefix, the first IA_NA an address (when configured); the others
    /// are told none is available. `commit` binds (Request, Rapid
    /// Commit); else the prefix is only held for the Request.
    fn dhcpv6_assign(
        &mut self,
        now: Instant,
        key: SessionKey,
        prefix: (Ipv6Addr, u8),
        request: &Repr,
        reply: &mut Repr,
        commit: bool,
    ) {
        let (preferred, valid, t1, t2) = self.lifetimes();
        for (i, ia) in request.ia_pd.iter().enumerate() {
            let got = if i == 0 { self.dhcpv6_take_pd(now, key, ia.iaid, commit) } else { None };
            reply.ia_pd.push(match got {
                Some((p, len)) => Ia {
                    iaid: ia.iaid,
                    t1,
                    t2,
                    entries: vec![IaPrefix {
                        preferred_lifetime: preferred,
                        valid_lifetime: valid,
                        prefix_len: len,
                        prefix: p,
                        status: None,
                    }],
                    status: None,
                },
                None => no_prefix(ia.iaid),
            });
        }
        for (i, ia) in request.ia_na.iter().enumerate() {
            let got = if i == 0 { self.dhcpv6_take_na(now, key, prefix, ia.iaid, commit) } else { None };
            reply.ia_na.push(match got {
                Some(address) => Ia {
                    iaid: ia.iaid,
                    t1,
                    t2,
                    entries: vec![IaAddress {
                        address,
                        preferred_lifetime: preferred,
                        valid_lifetime: valid,
                        status: None,
                    }],
                    status: None,
                },
                None => Ia {
                    iaid: ia.iaid,
                    t1: 0,
                    t2: 0,
                    entries: vec![],
                    status: Some(Status::new(status_code::NO_ADDRS_AVAIL, "no address for this IA")),
                },
            });
        }
        if commit {
            self.write_entry(key, MapOp::Change);
            self.dhcpv6_route_na(key);
        }
    }

    /// The session's delegated prefix for IA `iaid`: the one bound or
    /// offered already, the Access-Accept's, or one from the pool.
    fn dhcpv6_take_pd(
        &mut self,
        now: Instant,
        key: SessionKey,
        iaid: u32,
        commit: bool,
    ) -> Option<(Ipv6Addr, u8)> {
        let hold = now
            + if commit {
                Duration::from_secs(u64::from(self.cfg.dhcpv6.valid_lifetime))
            } else {
                OFFER_HOLD
            };
        let default_pool = self.cfg.dhcpv6.default_pd_pool.clone();
        let s = self.sessions.get_mut(&key)?;
        let b = &mut s.ipv6.dhcpv6;
        if b.pd.is_none() {
            let (prefix, pooled) = match b.authorized_pd.or(s.ipv6.delegated) {
                Some(p) => (p, false),
                None => (self.ipv6_pools.allocate(default_pool.as_deref()?)?, true),
            };
            b.pd = Some(PdBinding {
                iaid,
                prefix: prefix.0,
                len: prefix.1,
                pooled,
                committed: false,
                expires: hold,
            });
        }
        let pd = b.pd.as_mut()?;
        pd.iaid = iaid;
        pd.expires = pd.expires.max(hold);
        if commit {
            pd.committed = true;
            pd.expires = hold;
            s.ipv6.delegated = Some((pd.prefix, pd.len));
        }
        Some((pd.prefix, pd.len))
    }

    fn dhcpv6_take_na(
        &mut self,
        now: Instant,
        key: SessionKey,
        prefix: (Ipv6Addr, u8),
        iaid: u32,
        commit: bool,
    ) -> Option<Ipv6Addr> {
        if !self.cfg.dhcpv6.ia_na {
            return None;
        }
        let hold = now
            + if commit {
                Duration::from_secs(u64::from(self.cfg.dhcpv6.valid_lifetime))
            } else {
                OFFER_HOLD
            };
        let pool = self.cfg.dhcpv6.default_na_pool.clone();
        let s = self.sessions.get_mut(&key)?;
        let b = &mut s.ipv6.dhcpv6;
        if b.na.is_none() {
            let (address, pooled) = match pool {
                Some(pool) => (self.ipv6_pools.allocate(&pool)?.0, true),
                None if b.na_declined || prefix.1 > 64 => return None,
                None => (
                    Ipv6Addr::from(
                        u128::from(prefix.0) & !u128::from(u64::MAX) | u128::from(IA_NA_INTERFACE_ID),
                    ),
                    false,
                ),
            };
            b.na = Some(NaBinding { iaid, address, committed: false, expires: hold, pooled });
        }
        let na = b.na.as_mut()?;
        na.iaid = iaid;
        na.expires = if commit { hold } else { na.expires.max(hold) };
        na.committed |= commit;
        Some(na.address)
    }

    /// Renew and Rebind: bindings the client names are extended; the
    /// ones it names that it does not hold get NoBinding (Renew), or their
    /// prefixes with lifetimes 0 (Rebind, §18.3.5: they are not for this
    /// link).
    fn dhcpv6_extend(&mut self, now: Instant, key: SessionKey, ours: bool, request: &Repr, reply: &mut Repr) {
        let (preferred, valid, t1, t2) = self.lifetimes();
        let hold = now + Duration::from_secs(u64::from(valid));
        let rebind = request.msg_type == mt::REBIND;
        let mut rewrite = false;
        let Some(s) = self.sessions.get_mut(&key) else { return };
        let b = &mut s.ipv6.dhcpv6;
        for ia in &request.ia_pd {
            match b.pd.as_mut().filter(|pd| ours && pd.iaid == ia.iaid && pd.committed) {
                Some(pd) => {
                    pd.expires = hold;
                    if s.ipv6.delegated != Some((pd.prefix, pd.len)) {
                        s.ipv6.delegated = Some((pd.prefix, pd.len));
                        rewrite = true;
                    }
                    reply.ia_pd.push(Ia {
                        iaid: ia.iaid,
                        t1,
                        t2,
                        entries: vec![IaPrefix {
                            preferred_lifetime: preferred,
                            valid_lifetime: valid,
                            prefix_len: pd.len,
                            prefix: pd.prefix,
                            status: None,
                        }],
                        status: None,
                    });
                }
                None if rebind => reply.ia_pd.push(Ia {
                    iaid: ia.iaid,
                    t1: 0,
                    t2: 0,
                    entries: ia
                        .entries
                        .iter()
                        .map(|e| IaPrefix {
                            preferred_lifetime: 0,
                            valid_lifetime: 0,
                            status: None,
                            ..e.clone()
                        })
                        .collect(),
                    status: None,
                }),
                None => reply.ia_pd.push(no_binding(ia.iaid)),
            }
        }
        for ia in &request.ia_na {
            match b.na.as_mut().filter(|na| ours && na.iaid == ia.iaid && na.committed) {
                Some(na) => {
                    na.expires = hold;
                    reply.ia_na.push(Ia {
                        iaid: ia.iaid,
                        t1,
                        t2,
                        entries: vec![IaAddress {
                            address: na.address,
                            preferred_lifetime: preferred,
                            valid_lifetime: valid,
                            status: None,
                        }],
                        status: None,
                    });
                }
                None if rebind => reply.ia_na.push(Ia {
                    iaid: ia.iaid,
                    t1: 0,
                    t2: 0,
                    entries: ia
                        .entries
                        .iter()
                        .map(|e| IaAddress {
                            preferred_lifetime: 0,
                            valid_lifetime: 0,
                            status: None,
                            ..e.clone()
                        })
                        .collect(),
                    status: None,
                }),
                None => reply.ia_na.push(Ia {
                    iaid: ia.iaid,
                    t1: 0,
                    t2: 0,
                    entries: vec![],
                    status: no_binding_status(),
                }),
            }
        }
        if rewrite {
            self.write_entry(key, MapOp::Change);
        }
    }

    /// Release and Decline: the bindings named end (the prefix leaves the
    /// fast path); those the client does not hold get NoBinding.
    fn dhcpv6_release(&mut self, key: SessionKey, ours: bool, request: &Repr, reply: &mut Repr) {
        let decline = request.msg_type == mt::DECLINE;
        let Some(s) = self.sessions.get(&key) else { return };
        let b = &s.ipv6.dhcpv6;
        let pd_named =
            request.ia_pd.iter().any(|ia| b.pd.as_ref().is_some_and(|pd| ours && pd.iaid == ia.iaid));
        let na_named =
            request.ia_na.iter().any(|ia| b.na.as_ref().is_some_and(|na| ours && na.iaid == ia.iaid));
        for ia in &request.ia_pd {
            if !(ours && b.pd.as_ref().is_some_and(|pd| pd.iaid == ia.iaid)) {
                reply.ia_pd.push(no_binding(ia.iaid));
            }
        }
        for ia in &request.ia_na {
            if !(ours && b.na.as_ref().is_some_and(|na| na.iaid == ia.iaid)) {
                reply.ia_na.push(Ia {
                    iaid: ia.iaid,
                    t1: 0,
                    t2: 0,
                    entries: vec![],
                    status: no_binding_status(),
                });
            }
        }
        // §18.3.8: Decline is for addresses; a prefix in one is ignored.
        if pd_named && !decline {
            self.dhcpv6_end_pd(key);
            if let Some(s) = self.sessions.get_mut(&key) {
                // Released: not routed until requested again.
                s.ipv6.delegated = None;
            }
            self.write_entry(key, MapOp::Change);
        }
        if na_named {
            let pooled = self.dhcpv6_end_na(key);
            if let Some(s) = self.sessions.get_mut(&key) {
                // A pool's next offer is another address; the /64's
                // would be the same one.
                s.ipv6.dhcpv6.na_declined |= decline && !pooled;
            }
        }
    }

    /// Ends the delegated-prefix binding: a pooled prefix goes back to
    /// its pool and out of the entry (written by the caller); the
    /// Access-Accept's stays the session's.
    fn dhcpv6_end_pd(&mut self, key: SessionKey) {
        // Read first: a session taken mutably counts as changed for the
        // session store.
        if self.sessions.get(&key).is_none_or(|s| s.ipv6.dhcpv6.pd.is_none()) {
            return;
        }
        let Some(s) = self.sessions.get_mut(&key) else { return };
        let Some(pd) = s.ipv6.dhcpv6.pd.take() else { return };
        if s.ipv6.delegated == Some((pd.prefix, pd.len)) {
            s.ipv6.delegated = None;
        }
        if pd.pooled {
            self.ipv6_pools.release(pd.prefix, pd.len);
        }
    }

    /// IPv6CP opened: the Access-Accept's prefix is kept aside, so that
    /// it can be delegated again after a Release.
    pub(super) fn dhcpv6_ipv6_up(&mut self, key: SessionKey) {
        let keep = self
            .sessions
            .get(&key)
            .is_some_and(|s| s.ipv6.dhcpv6.authorized_pd.is_none() && s.ipv6.delegated.is_some());
        if !keep {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&key) {
            if s.ipv6.dhcpv6.authorized_pd.is_none() {
                s.ipv6.dhcpv6.authorized_pd = s.ipv6.delegated;
            }
        }
    }

    /// IPv6CP closed or the session ended: the bindings end with the
    /// link-local addresses they were made over; the Access-Accept's
    /// prefix is the session's again for the next IPv6CP.
    pub(super) fn dhcpv6_ipv6_down(&mut self, key: SessionKey) {
        self.dhcpv6_end_pd(key);
        self.dhcpv6_end_na(key);
        let idle = self.sessions.get(&key).is_none_or(|s| {
            let b = &s.ipv6.dhcpv6;
            b.na.is_none()
                && b.client_id.is_none()
                && b.authorized_pd.is_none_or(|p| s.ipv6.delegated == Some(p))
        });
        if idle {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&key) {
            let b = &mut s.ipv6.dhcpv6;
            b.na = None;
            b.client_id = None;
            if b.authorized_pd.is_some() {
                s.ipv6.delegated = b.authorized_pd;
            }
        }
    }

    /// Bindings of `keys` (the sessions the clock looked at) whose valid
    /// lifetime is over, and offers not taken, end.
    pub(super) fn dhcpv6_expire(&mut self, now: Instant, keys: &[SessionKey]) {
        let expired: Vec<(SessionKey, bool, bool)> = keys
            .iter()
            .filter_map(|k| {
                let b = &self.sessions.get(k)?.ipv6.dhcpv6;
                let pd = b.pd.as_ref().is_some_and(|pd| pd.expires <= now);
                let na = b.na.as_ref().is_some_and(|na| na.expires <= now);
                (pd || na).then_some((*k, pd, na))
            })
            .collect();
        for (key, pd, na) in expired {
            if na {
                self.dhcpv6_end_na(key);
            }
            if pd {
                let routed = self
                    .sessions
                    .get(&key)
                    .is_some_and(|s| s.ipv6.dhcpv6.pd.as_ref().is_some_and(|p| p.committed));
                self.dhcpv6_end_pd(key);
                if routed {
                    self.write_entry(key, MapOp::Change);
                }
            }
        }
    }

    /// The DHCPv6 addresses routed beside their sessions' entries (bound
    /// IA_NA addresses from a pool), for a restart to match against the
    /// data plane's.
    pub fn address_routes(&self) -> Vec<(SessionKey, Ipv6Addr)> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.ipv6.prefix.is_some())
            .filter_map(|(k, s)| s.ipv6.dhcpv6.na.as_ref().and_then(NaBinding::route).map(|a| (*k, a)))
            .collect()
    }

    /// The pooled delegated prefix and address a session holds (for a
    /// pool rebuild, and to give them back when it ends).
    pub(super) fn dhcpv6_pooled(s: &super::Subscriber) -> impl Iterator<Item = (Ipv6Addr, u8)> {
        let b = &s.ipv6.dhcpv6;
        let pd = b.pd.as_ref().filter(|pd| pd.pooled).map(|pd| (pd.prefix, pd.len));
        let na = b.na.as_ref().filter(|na| na.pooled).map(|na| (na.address, 128));
        pd.into_iter().chain(na)
    }

    /// Ends the IA_NA binding: a pooled address leaves the fast path and
    /// goes back to its pool. Returns whether it was pooled.
    fn dhcpv6_end_na(&mut self, key: SessionKey) -> bool {
        // Read first: a session taken mutably counts as changed for the
        // session store.
        if self.sessions.get(&key).is_none_or(|s| s.ipv6.dhcpv6.na.is_none()) {
            return false;
        }
        let Some(s) = self.sessions.get_mut(&key) else { return false };
        let Some(na) = s.ipv6.dhcpv6.na.take() else { return false };
        if let Some(address) = na.route() {
            self.effects.push_back(Effect::AddressRoute { key, address, add: false });
        }
        if na.pooled {
            self.ipv6_pools.release(na.address, 128);
        }
        self.sync_routes(key);
        na.pooled
    }

    /// The session's pooled IA_NA address, bound, into the fast path (as
    /// a /128 beside its entry) after a commit (again for a Request of a
    /// bound one is harmless: the same route).
    fn dhcpv6_route_na(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get(&key) else { return };
        if s.ipv6.prefix.is_none() {
            return;
        }
        if let Some(address) = s.ipv6.dhcpv6.na.as_ref().and_then(NaBinding::route) {
            self.effects.push_back(Effect::AddressRoute { key, address, add: true });
        }
        self.sync_routes(key);
    }

    /// A session that ended (already out of the table): its routed
    /// address leaves the fast path before its entry does.
    pub(super) fn dhcpv6_unroute(&mut self, key: SessionKey, s: &super::Subscriber) {
        if let Some(address) = s.ipv6.dhcpv6.na.as_ref().and_then(NaBinding::route) {
            self.effects.push_back(Effect::AddressRoute { key, address, add: false });
        }
    }
}

fn no_binding_status() -> Option<Status> {
    Some(Status::new(status_code::NO_BINDING, "no binding for this IA"))
}

fn no_binding(iaid: u32) -> IaPd {
    Ia { iaid, t1: 0, t2: 0, entries: vec![], status: no_binding_status() }
}

fn no_prefix(iaid: u32) -> IaPd {
    Ia {
        iaid,
        t1: 0,
        t2: 0,
        entries: vec![],
        status: Some(Status::new(status_code::NO_PREFIX_AVAIL, "no prefix for this IA")),
    }
}
