//! The DHCPv6 server on virtual time: a subscriber's router (the test, as
//! the LAC's subscriber) sends DHCPv6 over its PPP link; the answers come
//! back down the session, and the delegated prefix goes in and out of the
//! session's fast-path entry.

use std::net::Ipv6Addr;

use lns_wire::dhcpv6::{message_type as mt, status_code, Ia, IaAddress, IaPrefix, Repr, Udp6, ALL_SERVERS};

use super::*;

const CLIENT_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99);

fn dhcpv6_config() -> CoreConfig {
    let mut cfg = base_config();
    cfg.ppp.ipv6cp = Some(Default::default());
    cfg.default_ipv6_pool = Some("v6".into());
    cfg.dhcpv6 = Dhcpv6Config {
        pd_pools: vec![Ipv6PoolEntry { name: "pd".into(), prefix: "2001:db8:8000::/48".into(), length: 56 }],
        default_pd_pool: Some("pd".into()),
        ia_na: true,
        dns: vec!["2001:db8::53".parse().expect("dns")],
        preferred_lifetime: 100,
        valid_lifetime: 200,
        rapid_commit: true,
        ..Dhcpv6Config::default()
    };
    cfg
}

fn duid(n: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n]
}

/// A client message with an IA_PD (IAID 7) and an IA_NA (IAID 8).
fn message(msg_type: u8, client: u8) -> Repr {
    let mut r = Repr::new(msg_type, [msg_type, 0, client]);
    r.client_id = Some(duid(client));
    r.oro = vec![23];
    r.elapsed_time = Some(0);
    r.ia_pd = vec![Ia { iaid: 7, t1: 0, t2: 0, entries: vec![], status: None }];
    r.ia_na = vec![Ia { iaid: 8, t1: 0, t2: 0, entries: vec![], status: None }];
    r
}

impl Lab {
    /// `user`'s router sends `payload` to the servers' address (or where
    /// `to` says) in UDP from port 546; returns what the LNS answered.
    fn dhcpv6_raw(&mut self, user: &str, packet: &[u8]) -> Vec<Repr> {
        let (t, s) = self.lac_call(user);
        self.lac_ip.clear();
        let frame = lns_wire::ppp::encapsulate(lns_wire::ppp::IPV6, false, false, packet);
        let tx = self.lac.encapsulate(t, s, &frame, None, false).expect("data message");
        let now = self.now;
        self.core.handle_datagram(now, lac_addr(), Some(lns_addr().ip()), Some(2), &tx.payload);
        self.carry_out();
        self.run_for(Duration::from_millis(50));
        self.lac_ip
            .iter()
            .filter(|(k, _)| *k == (t, s))
            .filter_map(|(_, p)| Udp6::parse(p).ok().filter(|u| u.dst_port == 546 && u.dst == CLIENT_LL))
            .map(|u| Repr::parse_bytes(u.payload).expect("the LNS's DHCPv6 parses"))
            .collect()
    }

    fn dhcpv6(&mut self, user: &str, m: &Repr) -> Option<Repr> {
        let bytes = m.to_bytes();
        let packet = udp(&bytes);
        let mut replies = self.dhcpv6_raw(user, &packet);
        assert!(replies.len() <= 1, "{replies:?}");
        let r = replies.pop()?;
        assert_eq!(r.transaction_id, m.transaction_id);
        assert_eq!(r.client_id, m.client_id);
        Some(r)
    }

    fn delegated(&self, user: &str) -> Option<(Ipv6Addr, u8)> {
        self.entries.get(&self.key(user)).and_then(|e| e.subscriber_delegated_prefix())
    }

    fn dropped(&self, why: &str) -> u64 {
        self.core.counters().dropped.get(why).copied().unwrap_or(0)
    }
}

fn udp(payload: &[u8]) -> Vec<u8> {
    Udp6 { src: CLIENT_LL, dst: ALL_SERVERS, src_port: 546, dst_port: 547, hop_limit: 1, payload }.emit()
}

fn prefix_of(r: &Repr) -> Option<(Ipv6Addr, u8)> {
    let p = r.ia_pd.first()?.entries.first()?;
    (p.valid_lifetime > 0).then_some((p.prefix, p.prefix_len))
}

fn up(cfg: CoreConfig, users: &[&str]) -> Lab {
    let mut lab = Lab::new(cfg);
    lab.dial(users);
    lab.run_for(Duration::from_secs(5));
    for u in users {
        assert!(
            lab.entries.get(&lab.key(u)).and_then(|e| e.subscriber_ipv6_prefix()).is_some(),
            "{u}: IPv6 up"
        );
    }
    lab
}

/// Solicit, Advertise, Request, Reply: the prefix is offered from the
/// pool, routed only once requested; DNS servers and an address come too.
#[test]
fn solicit_advertise_request_reply() {
    let mut lab = up(dhcpv6_config(), &["alice"]);
    // The Router Advertisement says: addresses and other configuration by DHCPv6.
    assert!(lab.core.cfg.ppp.nd.managed && lab.core.cfg.ppp.nd.other);
    let adv = lab.dhcpv6("alice", &message(mt::SOLICIT, 1)).expect("Advertise");
    assert_eq!((adv.msg_type, adv.preference), (mt::ADVERTISE, Some(255)));
    let offered = prefix_of(&adv).expect("a prefix offered");
    assert_eq!(offered.1, 56);
    assert!(offered.0.segments()[..3] == [0x2001, 0xdb8, 0x8000], "{offered:?}");
    assert_eq!(adv.dns_servers, ["2001:db8::53".parse::<Ipv6Addr>().expect("dns")]);
    let slaac = lab.entries[&lab.key("alice")].subscriber_ipv6_prefix().expect("/64");
    let address = adv.ia_na[0].entries[0].address;
    assert_eq!(address.segments()[..4], slaac.0.segments()[..4], "the address is in the session's /64");
    assert_eq!(lab.delegated("alice"), None, "offered is not routed");

    let mut req = message(mt::REQUEST, 1);
    req.server_id = adv.server_id.clone();
    let reply = lab.dhcpv6("alice", &req).expect("Reply");
    assert_eq!(reply.msg_type, mt::REPLY);
    assert_eq!(prefix_of(&reply), Some(offered));
    let pd = &reply.ia_pd[0];
    assert_eq!(
        (pd.t1, pd.t2, pd.entries[0].preferred_lifetime, pd.entries[0].valid_lifetime),
        (50, 80, 100, 200)
    );
    assert_eq!(lab.delegated("alice"), Some(offered), "bound: in the fast path");
    assert_eq!(lab.core.session(lab.key("alice")).expect("s").ipv6.delegated, Some(offered));
}

#[test]
fn rapid_commit_binds_at_once() {
    let mut lab = up(dhcpv6_config(), &["alice"]);
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    let reply = lab.dhcpv6("alice", &sol).expect("Reply");
    assert_eq!((reply.msg_type, reply.rapid_commit), (mt::REPLY, true));
    assert_eq!(lab.delegated("alice"), prefix_of(&reply));
    assert!(lab.delegated("alice").is_some());
}

/// Bound, then renewed before it expires, rebound, and released: the
/// prefix leaves the fast path and goes back to its pool.
#[test]
fn renew_rebind_release_and_expiry() {
    let mut lab = up(dhcpv6_config(), &["alice"]);
    let in_use = lab.core.ipv6_prefixes_in_use();
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    let bound = lab.dhcpv6("alice", &sol).expect("Reply");
    let p = prefix_of(&bound).expect("prefix");
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use + 1);
    // T1 is 50 s: renew at 150 s, past the first valid lifetime's 200 s.
    for (at, kind) in [(150, mt::RENEW), (300, mt::REBIND)] {
        lab.run_for(Duration::from_secs(at) - (lab.now - lab.t0));
        let mut m = message(kind, 1);
        if kind == mt::RENEW {
            m.server_id = bound.server_id.clone();
        }
        m.ia_pd[0].entries = vec![IaPrefix {
            preferred_lifetime: 0,
            valid_lifetime: 0,
            prefix_len: p.1,
            prefix: p.0,
            status: None,
        }];
        let r = lab.dhcpv6("alice", &m).expect("Reply");
        assert_eq!(prefix_of(&r), Some(p), "{kind}: extended");
        assert_eq!(lab.delegated("alice"), Some(p), "{kind}: still routed");
    }
    let mut rel = message(mt::RELEASE, 1);
    rel.server_id = bound.server_id.clone();
    let r = lab.dhcpv6("alice", &rel).expect("Reply");
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(status_code::SUCCESS));
    assert_eq!(lab.delegated("alice"), None, "released: out of the fast path");
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use, "and back in its pool");
    // A renewal of what was released: no binding.
    let mut renew = message(mt::RENEW, 1);
    renew.server_id = bound.server_id.clone();
    let r = lab.dhcpv6("alice", &renew).expect("Reply");
    assert_eq!(r.ia_pd[0].status.as_ref().map(|s| s.code), Some(status_code::NO_BINDING));

    // Bound again and left to expire: out of the fast path, back in the pool.
    let again = lab.dhcpv6("alice", &sol).expect("Reply");
    assert!(prefix_of(&again).is_some() && lab.delegated("alice").is_some());
    lab.run_for(Duration::from_secs(202));
    assert_eq!(lab.delegated("alice"), None, "expired");
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use);
    assert!(lab.forwarding(lab.key("alice")), "the session goes on");
}

#[test]
fn decline_confirm_and_information_request() {
    let mut lab = up(dhcpv6_config(), &["alice"]);
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    let bound = lab.dhcpv6("alice", &sol).expect("Reply");
    let address = bound.ia_na[0].entries[0].address;
    let ia_na = |a: Ipv6Addr| Ia {
        iaid: 8,
        t1: 0,
        t2: 0,
        entries: vec![IaAddress { address: a, preferred_lifetime: 0, valid_lifetime: 0, status: None }],
        status: None,
    };
    // Confirm: on this link, or not.
    let mut confirm = message(mt::CONFIRM, 1);
    confirm.ia_pd.clear();
    confirm.ia_na = vec![ia_na(address)];
    let r = lab.dhcpv6("alice", &confirm).expect("Reply");
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(status_code::SUCCESS));
    confirm.ia_na = vec![ia_na("2001:db8:ffff::1".parse().expect("a"))];
    let r = lab.dhcpv6("alice", &confirm).expect("Reply");
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(status_code::NOT_ON_LINK));
    confirm.ia_na = vec![];
    assert!(lab.dhcpv6("alice", &confirm).is_none(), "nothing to confirm: no Reply");
    // Decline: the address is not offered again; the prefix stays.
    let mut decline = message(mt::DECLINE, 1);
    decline.server_id = bound.server_id.clone();
    decline.ia_pd.clear();
    decline.ia_na = vec![ia_na(address)];
    let r = lab.dhcpv6("alice", &decline).expect("Reply");
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(status_code::SUCCESS));
    assert!(lab.delegated("alice").is_some());
    let adv = lab.dhcpv6("alice", &message(mt::SOLICIT, 1)).expect("Advertise");
    assert_eq!(adv.ia_na[0].status.as_ref().map(|s| s.code), Some(status_code::NO_ADDRS_AVAIL));
    // Information-Request: DNS servers, no IAs, no client identifier needed.
    let mut info = Repr::new(mt::INFORMATION_REQUEST, [9, 9, 9]);
    info.oro = vec![23];
    let r = lab.dhcpv6("alice", &info).expect("Reply");
    assert_eq!(r.dns_servers.len(), 1);
    assert!(r.ia_pd.is_empty() && r.ia_na.is_empty());
}

/// The Access-Accept's Delegated-IPv6-Prefix is the one delegated; the
/// pool is not touched.
#[test]
fn the_access_accept_prefix_is_delegated() {
    let mut lab = Lab::new(dhcpv6_config());
    let radius: (Ipv6Addr, u8) = ("2001:db8:200:100::".parse().expect("p"), 56);
    lab.backend = Backend::Radius(Box::new(move |req| {
        let (decision, _) = LocalUsers::parse(USERS).expect("users").check(req);
        Authorization { decision, delegated_prefix: Some(radius), ..Authorization::accept() }
    }));
    lab.dial(&["alice"]);
    lab.run_for(Duration::from_secs(5));
    let in_use = lab.core.ipv6_prefixes_in_use();
    let adv = lab.dhcpv6("alice", &message(mt::SOLICIT, 1)).expect("Advertise");
    assert_eq!(prefix_of(&adv), Some(radius));
    let mut rel = message(mt::RELEASE, 1);
    rel.server_id = adv.server_id.clone();
    let mut req = message(mt::REQUEST, 1);
    req.server_id = adv.server_id.clone();
    assert_eq!(prefix_of(&lab.dhcpv6("alice", &req).expect("Reply")), Some(radius));
    assert_eq!(lab.delegated("alice"), Some(radius));
    lab.dhcpv6("alice", &rel).expect("Reply");
    assert_eq!(lab.delegated("alice"), None);
    // Asked for again, it is the same one.
    assert_eq!(prefix_of(&lab.dhcpv6("alice", &req).expect("Reply")), Some(radius));
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use, "no pool prefix taken");
}

/// Malformed, truncated and oversized messages are dropped and counted;
/// one subscriber's bindings are never another's.
#[test]
fn bad_input_is_dropped_and_counted_and_leases_stay_their_sessions() {
    let mut lab = up(dhcpv6_config(), &["alice", "bob"]);
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    let alice = lab.dhcpv6("alice", &sol).expect("Reply");
    let alices = prefix_of(&alice).expect("prefix");

    let good = sol.to_bytes();
    for cut in [0, 3, 7, good.len() - 1] {
        assert!(lab.dhcpv6_raw("bob", &udp(&good[..cut])).is_empty(), "cut at {cut}");
    }
    let mut big = good.clone();
    big.extend_from_slice(&[0x12, 0x34, 0x05, 0xdc]);
    big.resize(big.len() + 0x5dc, 0);
    assert!(lab.dhcpv6_raw("bob", &udp(&big)).is_empty());
    let mut bad_sum = udp(&good);
    bad_sum[60] ^= 0xff;
    assert!(lab.dhcpv6_raw("bob", &bad_sum).is_empty());
    // A Server Identifier that is not ours: another server's Request.
    let mut other = message(mt::REQUEST, 2);
    other.server_id = Some(vec![0, 2, 9, 9, 9, 9]);
    assert!(lab.dhcpv6("bob", &other).is_none());
    // An Advertise from the subscriber's side: not a client's message.
    assert!(lab.dhcpv6("bob", &Repr::new(mt::ADVERTISE, [1, 1, 1])).is_none());
    assert!(lab.dropped("dhcpv6_malformed") >= 4, "{:?}", lab.core.counters().dropped);
    assert_eq!(lab.dropped("dhcpv6_oversized"), 1);
    assert_eq!(lab.dropped("dhcpv6_invalid"), 1);
    assert_eq!(lab.dropped("dhcpv6_unexpected"), 1);

    // Bob renews and releases with alice's DUID and IAIDs: his own link
    // has no such binding, and alice keeps hers.
    let mut renew = message(mt::RENEW, 1);
    renew.server_id = alice.server_id.clone();
    let r = lab.dhcpv6("bob", &renew).expect("Reply");
    assert_eq!(r.ia_pd[0].status.as_ref().map(|s| s.code), Some(status_code::NO_BINDING));
    assert!(r.ia_pd[0].entries.is_empty());
    assert_eq!(r.ia_na[0].status.as_ref().map(|s| s.code), Some(status_code::NO_BINDING));
    assert!(r.ia_na[0].entries.is_empty(), "not alice's address either");
    let mut rel = message(mt::RELEASE, 1);
    rel.server_id = alice.server_id.clone();
    lab.dhcpv6("bob", &rel).expect("Reply");
    assert_eq!(lab.delegated("alice"), Some(alices));
    // Bob's own Solicit gets a prefix of his own.
    let bobs = prefix_of(&lab.dhcpv6("bob", &sol).expect("Reply")).expect("prefix");
    assert_ne!(bobs, alices);
    assert_eq!(lab.delegated("bob"), Some(bobs));
}

/// The session ends: its pooled prefix goes back to the pool.
#[test]
fn the_end_of_the_session_ends_the_binding() {
    let mut lab = up(dhcpv6_config(), &["alice"]);
    let before = lab.core.ipv6_prefixes_in_use();
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    lab.dhcpv6("alice", &sol).expect("Reply");
    assert_eq!(lab.core.ipv6_prefixes_in_use(), before + 1);
    let (t, s) = lab.lac_call("alice");
    lab.lac.close_session(lab.now, t, s, crate::l2tp::ResultCode::new(cdn::ADMINISTRATIVE)).expect("CDN");
    lab.run_for(Duration::from_secs(2));
    assert_eq!(lab.core.ipv6_prefixes_in_use(), 0);
}

/// The Access-Accept's DNS-Server-IPv6-Address (RFC 6911) are the DNS
/// servers of that subscriber's Replies, in their order, instead of the
/// configured ones; a subscriber without them gets the configured ones.
#[test]
fn the_access_accept_dns_servers_are_answered() {
    let mut lab = Lab::new(dhcpv6_config());
    let radius: Vec<Ipv6Addr> =
        vec!["2001:db8:53::2".parse().expect("a"), "2001:db8:53::1".parse().expect("a")];
    let given = radius.clone();
    lab.backend = Backend::Radius(Box::new(move |req| {
        let (decision, _) = LocalUsers::parse(USERS).expect("users").check(req);
        let dns_ipv6 = if req.username == b"alice" { given.clone() } else { Vec::new() };
        Authorization { decision, dns_ipv6, ..Authorization::accept() }
    }));
    lab.dial(&["alice", "bob"]);
    lab.run_for(Duration::from_secs(5));
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    assert_eq!(lab.dhcpv6("alice", &sol).expect("Reply").dns_servers, radius);
    let mut info = Repr::new(mt::INFORMATION_REQUEST, [9, 9, 9]);
    info.oro = vec![23];
    assert_eq!(lab.dhcpv6("alice", &info).expect("Reply").dns_servers, radius);
    let configured = dhcpv6_config().dhcpv6.dns;
    assert_eq!(lab.dhcpv6("bob", &message(mt::SOLICIT, 2)).expect("Advertise").dns_servers, configured);
    // Not asked for (no Option Request Option entry): none.
    let mut quiet = message(mt::SOLICIT, 1);
    quiet.oro.clear();
    assert!(lab.dhcpv6("alice", &quiet).expect("Advertise").dns_servers.is_empty());
}

/// [`dhcpv6_config`] with IA_NA addresses from the pool `na`
/// (2001:db8:400::/120).
fn na_pool_config() -> CoreConfig {
    let mut cfg = dhcpv6_config();
    cfg.dhcpv6.na_pools =
        vec![Ipv6PoolEntry { name: "na".into(), prefix: "2001:db8:400::/120".into(), length: 128 }];
    cfg.dhcpv6.default_na_pool = Some("na".into());
    cfg
}

fn address_of(r: &Repr) -> Option<Ipv6Addr> {
    let a = r.ia_na.first()?.entries.first()?;
    (a.valid_lifetime > 0).then_some(a.address)
}

impl Lab {
    /// The address routed to `user`'s entry besides its prefixes.
    fn routed_address(&self, user: &str) -> Option<Ipv6Addr> {
        let key = self.key(user);
        self.address_routes.iter().find(|(_, k)| **k == key).map(|(a, _)| *a)
    }
}

/// IA_NA from an address pool: offered (held, not routed), bound and
/// routed as a /128 beside the session's entry, renewed, released (out of
/// the fast path, back in the pool); each subscriber gets its own.
#[test]
fn ia_na_addresses_come_from_the_pool_and_are_routed_while_bound() {
    let mut lab = up(na_pool_config(), &["alice", "bob"]);
    let in_use = lab.core.ipv6_prefixes_in_use();
    let adv = lab.dhcpv6("alice", &message(mt::SOLICIT, 1)).expect("Advertise");
    let offered = address_of(&adv).expect("an address offered");
    assert_eq!(offered.segments()[..3], [0x2001, 0xdb8, 0x400], "from the pool: {offered}");
    assert_ne!(offered, "2001:db8:400::".parse::<Ipv6Addr>().expect("a"), "not the anycast address");
    let slaac = lab.entries[&lab.key("alice")].subscriber_ipv6_prefix().expect("/64");
    assert_ne!(offered.segments()[..4], slaac.0.segments()[..4], "not of the session's /64");
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use + 2, "held while offered (and the prefix)");
    assert_eq!(lab.routed_address("alice"), None, "offered is not routed");

    let mut req = message(mt::REQUEST, 1);
    req.server_id = adv.server_id.clone();
    let reply = lab.dhcpv6("alice", &req).expect("Reply");
    assert_eq!(address_of(&reply), Some(offered), "the offered address is bound");
    assert_eq!(lab.routed_address("alice"), Some(offered), "bound: routed");
    // Asked again, the same address (and no second route).
    assert_eq!(address_of(&lab.dhcpv6("alice", &req).expect("Reply")), Some(offered));

    let mut sol = message(mt::SOLICIT, 2);
    sol.rapid_commit = true;
    let bobs = address_of(&lab.dhcpv6("bob", &sol).expect("Reply")).expect("bob's");
    assert_ne!(bobs, offered);
    assert_eq!(lab.routed_address("bob"), Some(bobs));

    // Renewed past the first valid lifetime (200 s): still routed.
    lab.run_for(Duration::from_secs(150));
    let mut renew = message(mt::RENEW, 1);
    renew.server_id = adv.server_id.clone();
    assert_eq!(address_of(&lab.dhcpv6("alice", &renew).expect("Reply")), Some(offered));
    lab.run_for(Duration::from_secs(100));
    assert_eq!(lab.routed_address("alice"), Some(offered), "renewed");
    // Bob did not renew: expired, unrouted, back in the pool.
    assert_eq!(lab.routed_address("bob"), None, "expired");
    assert!(lab.core.session(lab.key("bob")).expect("bob").ipv6.dhcpv6.na.is_none());

    let mut rel = message(mt::RELEASE, 1);
    rel.server_id = adv.server_id.clone();
    rel.ia_pd.clear();
    let r = lab.dhcpv6("alice", &rel).expect("Reply");
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(status_code::SUCCESS));
    assert_eq!(lab.routed_address("alice"), None, "released: out of the fast path");
    assert!(lab.delegated("alice").is_some(), "the prefix stays");
    // Alice's prefix alone (bob's binding expired with both of his).
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use + 1, "the address is back in the pool");
    assert!(lab.forwarding(lab.key("alice")) && lab.forwarding(lab.key("bob")));
}

/// A declined pool address goes back; the next offer is another address.
/// The end of IPv6CP and of the session take the address out of the fast
/// path and give it back.
#[test]
fn declined_and_ended_pool_addresses_go_back() {
    let mut lab = up(na_pool_config(), &["alice"]);
    let in_use = lab.core.ipv6_prefixes_in_use();
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    sol.ia_pd.clear();
    let bound = lab.dhcpv6("alice", &sol).expect("Reply");
    let first = address_of(&bound).expect("address");
    let mut decline = message(mt::DECLINE, 1);
    decline.server_id = bound.server_id.clone();
    decline.ia_pd.clear();
    decline.ia_na[0].entries =
        vec![IaAddress { address: first, preferred_lifetime: 0, valid_lifetime: 0, status: None }];
    lab.dhcpv6("alice", &decline).expect("Reply");
    assert_eq!(lab.routed_address("alice"), None);
    let second = address_of(&lab.dhcpv6("alice", &sol).expect("Reply")).expect("another address");
    assert_ne!(second, first);
    assert_eq!(lab.routed_address("alice"), Some(second));
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use + 1);

    let (t, s) = lab.lac_call("alice");
    lab.lac.close_session(lab.now, t, s, crate::l2tp::ResultCode::new(cdn::ADMINISTRATIVE)).expect("CDN");
    lab.run_for(Duration::from_secs(2));
    assert!(lab.address_routes.is_empty(), "the session's address left the fast path");
    assert_eq!(lab.core.ipv6_prefixes_in_use(), 0);
}

/// A restarted core takes the bound pool address back: still the
/// session's, still held in the pool (nobody else is given it).
#[test]
fn a_restored_core_keeps_the_pool_address() {
    let cfg = na_pool_config();
    let mut lab = up(cfg.clone(), &["alice", "bob"]);
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    sol.ia_pd.clear();
    let alices = address_of(&lab.dhcpv6("alice", &sol).expect("Reply")).expect("address");
    let in_use = lab.core.ipv6_prefixes_in_use();
    let snap = lab.core.snapshot(lab.now).expect("snapshot");
    lab.now += Duration::from_secs(1);
    lab.core = Core::restore(cfg, &snap, lab.now).expect("restore");
    assert_eq!(lab.core.ipv6_prefixes_in_use(), in_use, "the pools hold the same");
    let na = lab.core.session(lab.key("alice")).expect("alice").ipv6.dhcpv6.na.clone().expect("bound");
    assert_eq!((na.address, na.pooled, na.committed), (alices, true, true));
    let mut sol = message(mt::SOLICIT, 2);
    sol.rapid_commit = true;
    let bobs = address_of(&lab.dhcpv6("bob", &sol).expect("Reply")).expect("address");
    assert_ne!(bobs, alices, "not given twice");
    // Renewed by its client after the restart.
    let mut renew = message(mt::RENEW, 1);
    renew.server_id = Some(super::super::dhcpv6::server_duid(b"lns"));
    renew.ia_pd.clear();
    assert_eq!(address_of(&lab.dhcpv6("alice", &renew).expect("Reply")), Some(alices));
}

/// The Router Advertisement's flags (RFC 4861 §4.2) of the first
/// advertisement `user`'s link carried: (M, O).
fn ra_flags(lab: &Lab, user: &str) -> Option<(bool, bool)> {
    let call = lab.lac_call(user);
    lab.lac_ip.iter().filter(|(k, _)| *k == call).find_map(|(_, p)| {
        // IPv6, ICMPv6, type 134 (Router Advertisement).
        (p.first()? >> 4 == 6 && *p.get(6)? == 58 && *p.get(40)? == 134).then(|| {
            let flags = p[45];
            (flags & 0x80 != 0, flags & 0x40 != 0)
        })
    })
}

/// M and O as the server answers: M with IA_NA, O with anything to give;
/// with only the Access-Accept's DNS servers (RFC 6911) configured, O on
/// that subscriber's link alone.
#[test]
fn the_router_advertisement_flags_match_what_dhcpv6_gives() {
    let mut lab = up(na_pool_config(), &["alice"]);
    assert_eq!(ra_flags(&lab, "alice"), Some((true, true)), "addresses and prefixes by DHCPv6");

    let mut cfg = dhcpv6_config();
    cfg.dhcpv6.ia_na = false;
    lab = up(cfg, &["alice"]);
    assert_eq!(ra_flags(&lab, "alice"), Some((false, true)), "prefixes and DNS, no addresses");

    // Nothing configured to give: neither, unless RADIUS gave DNS servers.
    let mut cfg = dhcpv6_config();
    cfg.dhcpv6 = Dhcpv6Config::default();
    let mut lab = Lab::new(cfg);
    lab.backend = Backend::Radius(Box::new(|req| {
        let (decision, _) = LocalUsers::parse(USERS).expect("users").check(req);
        let dns_ipv6 =
            if req.username == b"alice" { vec!["2001:db8:53::1".parse().expect("a")] } else { Vec::new() };
        Authorization { decision, dns_ipv6, ..Authorization::accept() }
    }));
    lab.dial(&["alice", "bob"]);
    lab.run_for(Duration::from_secs(5));
    assert_eq!(ra_flags(&lab, "alice"), Some((false, true)), "DNS servers from RADIUS: O");
    assert_eq!(ra_flags(&lab, "bob"), Some((false, false)), "nothing to give: neither");
    let mut info = Repr::new(mt::INFORMATION_REQUEST, [9, 9, 9]);
    info.oro = vec![23];
    let r = lab.dhcpv6("alice", &info).expect("Reply");
    assert_eq!(r.dns_servers, ["2001:db8:53::1".parse::<Ipv6Addr>().expect("a")]);
}

/// With the slow path on, a bound pool address is routed into its TUN as
/// well (a /128, as the fast path's), so a session kept off the fast path
/// gets its traffic; released, the route goes. Packets from it are the
/// subscriber's own on the slow path, not spoofed.
#[test]
fn pool_addresses_are_routed_into_the_slow_path_while_bound() {
    let mut cfg = na_pool_config();
    cfg.slow_path = Some(SlowPathConfig { mss_clamp: true, icmp_source_v4: None, icmp_source_v6: None });
    let mut lab = up(cfg, &["alice"]);
    let mut sol = message(mt::SOLICIT, 1);
    sol.rapid_commit = true;
    sol.ia_pd.clear();
    let bound = lab.dhcpv6("alice", &sol).expect("Reply");
    let address = address_of(&bound).expect("address");
    let route = (std::net::IpAddr::V6(address), 128);
    assert!(lab.routes.contains(&route), "bound: into the TUN: {:?}", lab.routes);

    let before = lab.core.stats(lab.now).slow_path.get("spoofed").copied().unwrap_or(0);
    let mut packet = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    packet.extend_from_slice(&address.octets());
    packet.extend_from_slice(&"2001:db8:ffff::7".parse::<Ipv6Addr>().expect("a").octets());
    packet.extend_from_slice(&[0x30, 0x39, 0, 7, 0, 8, 0, 0]);
    let (t, s) = lab.lac_call("alice");
    let frame = lns_wire::ppp::encapsulate(lns_wire::ppp::IPV6, false, false, &packet);
    let tx = lab.lac.encapsulate(t, s, &frame, None, false).expect("data message");
    let now = lab.now;
    lab.core.handle_datagram(now, lac_addr(), Some(lns_addr().ip()), Some(2), &tx.payload);
    lab.carry_out();
    let stats = lab.core.stats(lab.now);
    assert_eq!(stats.slow_path.get("spoofed").copied().unwrap_or(0), before, "{:?}", stats.slow_path);
    assert_eq!(lab.delivered.last().map(|p| p.as_slice()), Some(&packet[..]), "to the kernel");

    let mut rel = message(mt::RELEASE, 1);
    rel.server_id = bound.server_id.clone();
    rel.ia_pd.clear();
    lab.dhcpv6("alice", &rel).expect("Reply");
    assert!(!lab.routes.contains(&route), "released: out of the TUN: {:?}", lab.routes);
}
