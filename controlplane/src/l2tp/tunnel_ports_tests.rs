//! The tunnels' own ports (RFC 2661 §8.1), on virtual time: a LAC endpoint
//! and an LNS endpoint with `tunnel_ports`, datagrams carried between them
//! with the source port each Transmit names.

use super::*;
use crate::l2tp::tunnel::Role;

const LNS_IP: [u8; 4] = [192, 0, 2, 1];

fn lac_addr() -> SocketAddr {
    "192.0.2.2:1701".parse().expect("addr")
}

fn lns_listen() -> SocketAddr {
    SocketAddr::from((LNS_IP, 1701))
}

fn lns(ports: Option<(u16, u16)>, peers: Vec<PeerConfig>) -> Endpoint {
    Endpoint::new(EndpointConfig {
        tunnel: TunnelConfig { role: Role::Lns, host_name: b"lns".to_vec(), ..TunnelConfig::default() },
        allow_unlisted_peers: true,
        peers,
        seed: Some(3),
        tunnel_ports: ports,
        ..EndpointConfig::default()
    })
}

fn lac() -> Endpoint {
    Endpoint::new(EndpointConfig {
        tunnel: TunnelConfig { role: Role::Lac, host_name: b"lac".to_vec(), ..TunnelConfig::default() },
        accept_incoming: false,
        allow_unlisted_peers: true,
        seed: Some(4),
        ..EndpointConfig::default()
    })
}

/// The two endpoints and the wire between them.
struct Pair {
    lac: Endpoint,
    lns: Endpoint,
    now: Instant,
    /// The LAC (or a NAT before it) drops what does not come from 1701.
    lac_takes_only_1701: bool,
    /// Every datagram the LNS sent: (source port, message type or None
    /// for data and ZLB).
    lns_sent: Vec<(u16, Option<MessageType>)>,
    /// Destination ports of the LAC's datagrams.
    lac_sent_to: Vec<u16>,
}

impl Pair {
    fn new(lns: Endpoint) -> Pair {
        Pair {
            lac: lac(),
            lns,
            now: Instant::now(),
            lac_takes_only_1701: false,
            lns_sent: Vec::new(),
            lac_sent_to: Vec::new(),
        }
    }

    /// Carries datagrams and runs timers until nothing moves or `secs`
    /// of virtual time passed.
    fn run(&mut self, secs: u64) {
        let end = self.now + Duration::from_secs(secs);
        while self.now <= end {
            let mut moved = false;
            while let Some(t) = self.lac.poll_transmit(self.now) {
                moved = true;
                assert_eq!(t.destination.ip(), lns_listen().ip());
                self.lac_sent_to.push(t.destination.port());
                let _ = self.lns.handle_datagram(self.now, lac_addr(), &t.payload);
            }
            while let Some(t) = self.lns.poll_transmit(self.now) {
                moved = true;
                let port = t.source_port.unwrap_or(lns_listen().port());
                let kind = Message::parse(&t.payload, None).ok().and_then(|m| m.message_type());
                self.lns_sent.push((port, kind));
                if self.lac_takes_only_1701 && port != 1701 {
                    continue;
                }
                let _ = self.lac.handle_datagram(self.now, SocketAddr::from((LNS_IP, port)), &t.payload);
            }
            if moved {
                continue;
            }
            let next = [self.lac.poll_timeout(), self.lns.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.lac.handle_timeout(self.now);
                    self.lns.handle_timeout(self.now);
                }
                _ => break,
            }
        }
    }

    fn established(&self, lac_tunnel: TunnelId) -> bool {
        self.lac.tunnel(lac_tunnel).is_some_and(|t| t.state() == TunnelState::Established)
    }
}

/// Each tunnel gets a port of the range, the least used first; the SCCRP
/// and everything after it leave from that port; the LAC sends the
/// tunnel's later messages to it; a tunnel that ends gives its port back.
#[test]
fn tunnels_are_answered_from_ports_of_their_own_and_the_lac_follows() {
    let mut pair = Pair::new(lns(Some((20000, 20002)), Vec::new()));
    let lac_tunnels: Vec<TunnelId> =
        (0..4).map(|_| pair.lac.connect(pair.now, lns_listen()).expect("connect")).collect();
    pair.run(5);
    assert!(lac_tunnels.iter().all(|t| pair.established(*t)), "every tunnel up");
    // Four tunnels on three ports: each port used, one twice.
    let mut ports: Vec<u16> = pair.lns.tunnel_ids().filter_map(|id| pair.lns.local_port(id)).collect();
    ports.sort_unstable();
    assert_eq!(ports.len(), 4);
    ports.dedup();
    assert_eq!(ports, vec![20000, 20001, 20002]);
    assert_eq!(pair.lns.ports_in_use().collect::<Vec<_>>(), vec![20000, 20001, 20002]);
    // Nothing came from 1701: the SCCRPs already left from the tunnels' ports.
    assert!(pair.lns_sent.iter().all(|(p, _)| (20000..=20002).contains(p)), "{:?}", pair.lns_sent);
    assert_eq!(pair.lns_sent.iter().filter(|(_, k)| *k == Some(MessageType::Sccrp)).count(), 4);
    // The LAC sent its SCCRQs to 1701 and the rest (SCCCN, ZLB) to the
    // ports it was answered from.
    assert_eq!(pair.lac_sent_to.iter().filter(|p| **p == 1701).count(), 4, "{:?}", pair.lac_sent_to);
    for t in &lac_tunnels {
        let lns_id = pair.lac.tunnel(*t).expect("tunnel").peer_id();
        let port = pair.lns.local_port(lns_id).expect("own port");
        // Where the LAC sends the tunnel's messages, data included.
        assert_eq!(pair.lac.tunnel_peer(*t), Some(SocketAddr::from((LNS_IP, port))));
    }
    // A fifth tunnel goes to a port with one tunnel, not the one with two.
    let gen = pair.lns.ports_generation();
    let t5 = pair.lac.connect(pair.now, lns_listen()).expect("connect");
    pair.run(5);
    assert!(pair.established(t5));
    let lns5 = pair.lac.tunnel(t5).expect("tunnel").peer_id();
    let mut counts = BTreeMap::new();
    for id in pair.lns.tunnel_ids() {
        *counts.entry(pair.lns.local_port(id).expect("port")).or_insert(0) += 1;
    }
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![2, 2, 1], "{counts:?}");
    assert_eq!(pair.lns.ports_generation(), gen, "no port opened or closed");
    let _ = lns5;

    // The tunnels end (StopCCN from the LAC): every port is given back.
    for t in lac_tunnels.iter().chain([&t5]) {
        pair.lac.close_tunnel(pair.now, *t, ResultCode::new(1)).expect("close");
    }
    pair.run(60);
    assert_eq!(pair.lns.tunnel_count(), 0);
    assert_eq!(pair.lns.ports_in_use().count(), 0);
    assert!(pair.lns.ports_generation() > gen);
}

/// A peer configured with `own_port = false`, and an endpoint without a
/// range: the tunnel stays on the port the SCCRQ came to.
#[test]
fn a_peer_without_own_port_stays_on_the_listen_port() {
    for lns in [
        lns(Some((20000, 20999)), vec![PeerConfig { own_port: false, ..PeerConfig::host(lac_addr().ip()) }]),
        lns(None, Vec::new()),
    ] {
        let mut pair = Pair::new(lns);
        let t = pair.lac.connect(pair.now, lns_listen()).expect("connect");
        pair.run(5);
        assert!(pair.established(t));
        assert!(pair.lns_sent.iter().all(|(p, _)| *p == 1701), "{:?}", pair.lns_sent);
        assert!(pair.lac_sent_to.iter().all(|p| *p == 1701));
        assert_eq!(pair.lns.ports_in_use().count(), 0);
    }
}

/// A LAC that takes answers only from 1701 (or a NAT that drops the rest)
/// never sees the SCCRP from the tunnel's port and sends its SCCRQ again:
/// the tunnel goes back to 1701, its SCCRP is sent again from there, and
/// it comes up.
#[test]
fn a_repeated_sccrq_sends_the_tunnel_back_to_the_listen_port() {
    let mut pair = Pair::new(lns(Some((20000, 20999)), Vec::new()));
    pair.lac_takes_only_1701 = true;
    let t = pair.lac.connect(pair.now, lns_listen()).expect("connect");
    pair.run(30);
    assert!(pair.established(t), "up after the fallback; LNS sent {:?}", pair.lns_sent);
    assert_eq!(pair.lns.port_fallbacks(), 1);
    assert_eq!(pair.lns.ports_in_use().count(), 0);
    let first = pair.lns_sent.first().copied().expect("SCCRP");
    assert_eq!(first.1, Some(MessageType::Sccrp));
    assert!((20000..=20999).contains(&first.0), "first from the own port: {first:?}");
    let last_sccrp = pair.lns_sent.iter().rev().find(|(_, k)| *k == Some(MessageType::Sccrp)).expect("again");
    assert_eq!(last_sccrp.0, 1701);
    let lns_id = pair.lac.tunnel(t).expect("tunnel").peer_id();
    assert_eq!(pair.lns.local_port(lns_id), None);
}

/// A port the driver cannot open is given up: its tunnels move to the
/// listen port and no new tunnel gets it.
#[test]
fn a_port_that_cannot_be_opened_is_given_up() {
    let mut pair = Pair::new(lns(Some((20000, 20001)), Vec::new()));
    let t = pair.lac.connect(pair.now, lns_listen()).expect("connect");
    pair.run(5);
    let lns_id = pair.lac.tunnel(t).expect("tunnel").peer_id();
    let port = pair.lns.local_port(lns_id).expect("own port");
    assert_eq!(pair.lns.port_unavailable(port), vec![lns_id]);
    assert_eq!(pair.lns.local_port(lns_id), None);
    let other = if port == 20000 { 20001 } else { 20000 };
    for _ in 0..3 {
        pair.lac.connect(pair.now, lns_listen()).expect("connect");
    }
    pair.run(5);
    let ports: BTreeSet<u16> = pair.lns.ports_in_use().collect();
    assert_eq!(ports, [other].into_iter().collect());
}

/// The port is in the tunnel's record: an endpoint rebuilt from records
/// answers from the same port and counts it in use.
#[test]
fn the_port_survives_the_records() {
    let mut pair = Pair::new(lns(Some((20000, 20999)), Vec::new()));
    let t = pair.lac.connect(pair.now, lns_listen()).expect("connect");
    pair.run(5);
    let lns_id = pair.lac.tunnel(t).expect("tunnel").peer_id();
    let port = pair.lns.local_port(lns_id).expect("own port");
    let with_base = |f: &mut dyn FnMut()| crate::snapshot::with_base(pair.now, f);
    let (mut meta, mut back) = (None, None);
    let record = pair.lns.tunnel_record(lns_id).expect("record");
    assert_eq!(record.local_port, Some(port));
    with_base(&mut || {
        let m = postcard::to_allocvec(&pair.lns.meta_record()).expect("meta");
        meta = Some(postcard::from_bytes::<EndpointMeta>(&m).expect("meta back"));
        let r = postcard::to_allocvec(&record).expect("record");
        back = Some(postcard::from_bytes::<TunnelRecord>(&r).expect("record back"));
    });
    let (meta, mut back) = (meta.expect("meta"), back.expect("record"));
    assert_eq!(back.local_port, None, "written beside the record, not in it");
    back.local_port = record.local_port;
    let restored =
        crate::snapshot::with_base(pair.now, || Endpoint::from_records(meta, [(back, Vec::new())]));
    assert_eq!(restored.local_port(lns_id), Some(port));
    assert_eq!(restored.ports_in_use().collect::<Vec<_>>(), vec![port]);
    assert!(restored.ports_generation() > 0, "the driver opens it");
}
