//! Demultiplexing of datagrams to tunnels, tunnel creation on SCCRQ (LNS
//! role) or on request (LAC role), id allocation and admission control.
//!
//! One `Endpoint` serves one UDP socket. The tokio layer calls
//! [`Endpoint::handle_datagram`] for every datagram, forwards data
//! messages ([`DatagramEvent::Data`]) to the data path, sends whatever
//! [`Endpoint::poll_transmit`] yields and sleeps until
//! [`Endpoint::poll_timeout`].

use super::avp::ResultCode;
use super::header::{Kind, Packet, Repr, Sequence, SessionId, TunnelId};
use super::ids::without_in_use;
use super::ids::{IdAllocator, SessionIdSpace};
use super::message::{Message, MessageType};
use super::session::SessionInfo;
use super::tunnel::{Event, Tunnel, TunnelConfig, TunnelDownReason, TunnelError, TunnelState};
use super::tunnel::{SessionRecord, SessionRecordRef, TunnelShell, TunnelShellRef};
use super::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A peer (or a network of peers) allowed to build tunnels, with its
/// credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerConfig {
    pub network: IpAddr,
    pub prefix_len: u8,
    /// Tunnel secret (§5.1.1); overrides the template's.
    pub secret: Option<Vec<u8>>,
    /// If set, the Host Name the peer must present in its SCCRQ.
    pub host_name: Option<Vec<u8>>,
    /// L2TP from this peer must have come through IPsec: it counts as
    /// protected only when it arrived through one of these interfaces
    /// (where the IPsec stack hands decrypted packets to the kernel), and
    /// anything else from it is refused. None: L2TP in clear is taken.
    #[serde(default)]
    pub ipsec_interfaces: Option<Vec<String>>,
    /// Its sessions may use the data plane's fast path; false (and always
    /// with IPsec, which the fast path would bypass): the slow path
    /// carries them both ways.
    #[serde(default = "fast_path_default")]
    pub fast_path: bool,
    /// With [`EndpointConfig::tunnel_ports`]: its tunnels get a port of
    /// their own; false: they stay on the port its SCCRQ came to (1701),
    /// for LACs that insist on it. The running configuration's, so not in
    /// the store's records.
    #[serde(skip, default = "fast_path_default")]
    pub own_port: bool,
}

fn fast_path_default() -> bool {
    true
}

impl PeerConfig {
    pub fn host(addr: IpAddr) -> Self {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        PeerConfig {
            network: addr,
            prefix_len,
            secret: None,
            host_name: None,
            ipsec_interfaces: None,
            fast_path: true,
            own_port: true,
        }
    }

    /// Its sessions are kept off the fast path.
    pub fn slow_path_only(&self) -> bool {
        !self.fast_path || self.ipsec_interfaces.is_some()
    }

    /// CIDR match of `ip` against `network/prefix_len`.
    pub fn matches(&self, ip: IpAddr) -> bool {
        fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
            let bits = usize::from(bits).min(a.len() * 8);
            let (whole, rest) = (bits / 8, bits % 8);
            if a.get(..whole) != b.get(..whole) {
                return false;
            }
            if rest == 0 {
                return true;
            }
            let mask = 0xffu8 << (8 - rest);
            match (a.get(whole), b.get(whole)) {
                (Some(x), Some(y)) => x & mask == y & mask,
                _ => false,
            }
        }
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(&n.octets(), &i.octets(), self.prefix_len),
            (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(&n.octets(), &i.octets(), self.prefix_len),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointConfig {
    /// Template for every tunnel; the secret may come from [`PeerConfig`].
    pub tunnel: TunnelConfig,
    /// Allow-list, first match wins.
    pub peers: Vec<PeerConfig>,
    /// Accept SCCRQ from addresses that match no [`PeerConfig`].
    pub allow_unlisted_peers: bool,
    /// Answer SCCRQ at all (false for a pure LAC).
    pub accept_incoming: bool,
    pub max_tunnels: usize,
    /// Tunnels not yet established (defends against SCCRQ floods).
    pub max_half_open: usize,
    pub tunnel_id_hold_down: Duration,
    /// 0: each tunnel has its own session-id space. n (a power of two;
    /// others are rounded up, and more than 65,536 is 65,536): tunnels whose local ids agree in their low
    /// log2(n) bits (a bank) share one space, so (tunnel id & (n - 1),
    /// session id) names one session on the whole endpoint. The data plane
    /// keeps a session at a slot computed from those (no hash lookup per
    /// packet); its table size sets n.
    pub session_id_banks: u32,
    /// Seed for ids, challenges and tie breakers; None draws from the OS.
    pub seed: Option<u64>,
    /// RFC 2661 §8.1: the recipient of an SCCRQ may answer from a port of
    /// its choosing, and the initiator sends the tunnel's later messages
    /// there. Some((first, last)): each tunnel accepted gets a port of
    /// this range (the least used, so tunnels share a port only when there
    /// are more of them than ports), whose distinct UDP 4-tuple lets a
    /// NIC's RSS spread tunnels from one LAC over its queues. None, and
    /// for peers without [`PeerConfig::own_port`]: the port the SCCRQ
    /// came to. The running configuration's, so not in the store's
    /// records (a restart takes it from its configuration).
    #[serde(skip)]
    pub tunnel_ports: Option<(u16, u16)>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            tunnel: TunnelConfig::default(),
            peers: Vec::new(),
            allow_unlisted_peers: false,
            accept_incoming: true,
            max_tunnels: 4096,
            max_half_open: 256,
            tunnel_id_hold_down: Duration::from_secs(120),
            session_id_banks: 0,
            seed: None,
            tunnel_ports: None,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
    /// Our UDP port it leaves from: the tunnel's own (see
    /// [`EndpointConfig::tunnel_ports`]); None: the socket's.
    pub source_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    Malformed(Error),
    UnknownTunnel,
    WrongPeer,
    NotAllowed,
    NotAccepting,
    TooManyTunnels,
    TooManyHalfOpen,
    /// Our own SCCRQ to this peer won the tie-break (§4.4.3).
    TieBreaker,
    /// Tunnel id 0 on something other than SCCRQ.
    NotSccrq,
}

/// What became of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatagramEvent {
    /// A control message, consumed by this tunnel.
    Control(TunnelId),
    /// A data message (T=0): for the data path, not for this module.
    /// `payload` is the byte range of the PPP frame in the datagram.
    Data {
        tunnel_id: TunnelId,
        session_id: SessionId,
        sequence: Option<Sequence>,
        payload: std::ops::Range<usize>,
    },
    Dropped(DropReason),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("tunnel limit reached")]
    TooManyTunnels,
    #[error("no tunnel id available")]
    NoIds,
    #[error("no such tunnel")]
    NoSuchTunnel,
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    tunnel: Tunnel,
    peer: SocketAddr,
    /// Deadline currently in the timer heap (older heap entries are stale).
    #[serde(with = "crate::snapshot::opt_instant")]
    scheduled: Option<Instant>,
    /// In the `dirty` list: may have something to send or a new deadline.
    dirty: bool,
    /// Counted in `half_open`.
    half_open: bool,
    /// Our port of the tunnel (see [`EndpointConfig::tunnel_ports`]);
    /// None: the socket's. Snapshots and records written before tunnels
    /// had ports have none.
    #[serde(default)]
    local_port: Option<u16>,
}

impl Entry {
    fn new(tunnel: Tunnel, peer: SocketAddr) -> Self {
        Entry { tunnel, peer, scheduled: None, dirty: false, half_open: false, local_port: None }
    }
}

/// A tunnel's record in the store (see [`Endpoint::tunnel_record`]).
/// postcard is not self-describing: a field added here would make older
/// records unreadable, so `local_port` is not serialized with the rest;
/// the caller writes it after the record (where an older record has
/// nothing) and sets it on the [`TunnelRecord`] read back.
#[derive(Serialize)]
pub struct TunnelRecordRef<'a> {
    tunnel: TunnelShellRef<'a>,
    peer: SocketAddr,
    #[serde(skip)]
    pub local_port: Option<u16>,
}

/// [`TunnelRecordRef`] read back.
#[derive(Deserialize)]
pub struct TunnelRecord {
    tunnel: TunnelShell,
    peer: SocketAddr,
    #[serde(skip)]
    pub local_port: Option<u16>,
}

/// The endpoint's own record in the store (see [`Endpoint::meta_record`]).
#[derive(Serialize)]
pub struct EndpointMetaRef<'a> {
    cfg: &'a EndpointConfig,
    #[serde(with = "without_in_use")]
    ids: &'a IdAllocator,
    rng: &'a ChaCha8Rng,
}

/// [`EndpointMetaRef`] read back.
#[derive(Deserialize)]
pub struct EndpointMeta {
    cfg: EndpointConfig,
    #[serde(with = "without_in_use")]
    ids: IdAllocator,
    rng: ChaCha8Rng,
}

/// Every tunnel of one UDP socket.
///
/// Plain data: serialize it inside [`crate::snapshot::with_base`] and a
/// restarted process deserializes it (inside `with_base` too, with its own
/// clock's now) and carries on: timers keep their distance from now,
/// messages awaiting acknowledgement are retransmitted, the peers notice
/// nothing but the pause. Sockets and the data plane are the caller's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Endpoint {
    cfg: EndpointConfig,
    #[serde(with = "super::serde_maps::pairs")]
    tunnels: HashMap<TunnelId, Entry>,
    /// (peer address, peer's Assigned Tunnel ID) → our id, so that a
    /// retransmitted SCCRQ reaches the tunnel it already created.
    #[serde(with = "super::serde_maps::pairs")]
    by_peer: HashMap<(SocketAddr, TunnelId), TunnelId>,
    ids: IdAllocator,
    rng: ChaCha8Rng,
    events: VecDeque<(TunnelId, Event)>,
    /// Tunnels touched since they last had nothing to send; polling only
    /// visits these, so the cost per datagram does not grow with the
    /// number of tunnels.
    dirty: VecDeque<TunnelId>,
    /// Min-heap of (deadline, tunnel); entries not matching
    /// `Entry::scheduled` are stale and skipped. Not in a snapshot: rebuilt
    /// from `Entry::scheduled` on restore.
    #[serde(skip)]
    timers: BinaryHeap<Reverse<(Instant, TunnelId)>>,
    half_open: usize,
    /// One session-id space per bank (`session_id_banks`), none without.
    spaces: Vec<SessionIdSpace>,
    /// Tunnels changed since [`Endpoint::take_changes`] (for the store).
    #[serde(skip)]
    changed: BTreeSet<TunnelId>,
    /// Sessions of tunnels gone since then, whose records go too.
    #[serde(skip)]
    gone_sessions: Vec<(TunnelId, SessionId)>,
    /// Tunnels on each of our own ports (derived from the entries).
    #[serde(skip)]
    port_use: BTreeMap<u16, u32>,
    /// Moves when a port enters or leaves `port_use`, so the caller opens
    /// and closes its sockets only then.
    #[serde(skip)]
    ports_generation: u64,
    /// Tunnels moved back to the socket's port (see
    /// [`Endpoint::port_fallbacks`]).
    #[serde(skip)]
    port_fallbacks: u64,
    /// Ports the caller could not open: not given to tunnels again.
    #[serde(skip)]
    unusable_ports: BTreeSet<u16>,
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Endpoint::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    /// The derived part, then what a snapshot leaves out: the timer heap,
    /// and the tunnels' links to the session-id spaces of their banks.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut ep = Endpoint::deserialize(d)?;
        let ids: Vec<TunnelId> = ep.tunnels.keys().copied().collect();
        for id in ids {
            let bank = ep.session_id_bank(id) as usize;
            let Some(e) = ep.tunnels.get_mut(&id) else { continue };
            if let Some(space) = ep.spaces.get(bank) {
                e.tunnel.relink_session_ids(space);
            }
            if let Some(t) = e.scheduled {
                ep.timers.push(Reverse((t, id)));
            }
            if let Some(p) = e.local_port {
                *ep.port_use.entry(p).or_default() += 1;
            }
        }
        Ok(ep)
    }
}

impl Endpoint {
    pub fn new(cfg: EndpointConfig) -> Self {
        let rng = match cfg.seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_entropy(),
        };
        let ids = IdAllocator::new(cfg.tunnel_id_hold_down);
        let banks = match cfg.session_id_banks {
            0 => 0,
            // More banks than tunnel ids would leave banks no tunnel uses.
            n => n.min(1 << 16).next_power_of_two(),
        };
        let spaces = (0..banks).map(|_| SessionIdSpace::default()).collect();
        Endpoint {
            cfg,
            spaces,
            tunnels: HashMap::new(),
            by_peer: HashMap::new(),
            ids,
            rng,
            events: VecDeque::new(),
            dirty: VecDeque::new(),
            timers: BinaryHeap::new(),
            half_open: 0,
            changed: BTreeSet::new(),
            gone_sessions: Vec::new(),
            port_use: BTreeMap::new(),
            ports_generation: 0,
            port_fallbacks: 0,
            unusable_ports: BTreeSet::new(),
        }
    }

    /// The session-id bank of a tunnel id (0 without banks).
    /// A reloaded configuration: peers, limits and the settings of new
    /// tunnels. What ids are allocated from (`session_id_banks`, the seed)
    /// stays, and tunnels already up keep the settings they started with.
    pub fn reconfigure(&mut self, mut cfg: EndpointConfig) {
        cfg.session_id_banks = self.cfg.session_id_banks;
        cfg.seed = self.cfg.seed;
        cfg.accept_incoming = self.cfg.accept_incoming;
        self.cfg = cfg;
    }

    /// Whether new tunnels are accepted (a stopping LNS takes none: their
    /// SCCRQs are dropped as [`DropReason::NotAccepting`]).
    pub fn set_accept_incoming(&mut self, accept: bool) {
        self.cfg.accept_incoming = accept;
    }

    pub fn session_id_bank(&self, id: TunnelId) -> u32 {
        match self.spaces.len() as u32 {
            0 => 0,
            n => u32::from(id.0) & (n - 1),
        }
    }

    /// Keeps session id `id` of `bank` from ever being allocated (its
    /// data-plane slot is someone else's). False when a tunnel holds it,
    /// or there is no such bank.
    pub fn reserve_session_id(&self, bank: u32, id: u16) -> bool {
        self.spaces.get(bank as usize).is_some_and(|s| s.reserve(id))
    }

    pub fn unreserve_session_id(&self, bank: u32, id: u16) {
        if let Some(s) = self.spaces.get(bank as usize) {
            s.unreserve(id);
        }
    }

    /// Session ids held in each bank.
    pub fn session_ids_in_use(&self) -> Vec<usize> {
        self.spaces.iter().map(|s| s.in_use()).collect()
    }

    fn share_session_ids(&self, tunnel: &mut Tunnel, id: TunnelId) {
        if let Some(space) = self.spaces.get(self.session_id_bank(id) as usize) {
            // A tunnel just created holds no session id yet: always taken.
            let shared = tunnel.share_session_ids(space.clone());
            debug_assert!(shared);
        }
    }

    fn peer_config(&self, ip: IpAddr) -> Option<&PeerConfig> {
        self.cfg.peers.iter().find(|p| p.matches(ip))
    }

    fn tunnel_config(&self, ip: IpAddr) -> TunnelConfig {
        let mut c = self.cfg.tunnel.clone();
        if let Some(p) = self.peer_config(ip) {
            if p.secret.is_some() {
                c.secret = p.secret.clone();
            }
        }
        c
    }

    pub fn tunnel(&self, id: TunnelId) -> Option<&Tunnel> {
        self.tunnels.get(&id).map(|e| &e.tunnel)
    }
    /// Direct access for commands; events it produces are picked up by
    /// [`Endpoint::poll_event`].
    pub fn tunnel_mut(&mut self, id: TunnelId) -> Option<&mut Tunnel> {
        // The caller may change anything: revisit this tunnel when polling.
        self.touch(id);
        self.tunnels.get_mut(&id).map(|e| &mut e.tunnel)
    }
    pub fn tunnel_count(&self) -> usize {
        self.tunnels.len()
    }
    pub fn tunnel_ids(&self) -> impl Iterator<Item = TunnelId> + '_ {
        self.tunnels.keys().copied()
    }

    /// Note that `id` changed: collect its events, poll it later.
    fn touch(&mut self, id: TunnelId) {
        self.changed.insert(id);
        if let Some(e) = self.tunnels.get_mut(&id) {
            while let Some(ev) = e.tunnel.poll_event() {
                self.events.push_back((id, ev));
            }
            if !e.dirty {
                e.dirty = true;
                self.dirty.push_back(id);
            }
        }
    }

    /// A dirty tunnel has nothing more to send: re-arm its timer, update
    /// the half-open count, forget it if closed.
    fn settle(&mut self, now: Instant, id: TunnelId) {
        let Some(e) = self.tunnels.get_mut(&id) else { return };
        self.changed.insert(id);
        e.dirty = false;
        while let Some(ev) = e.tunnel.poll_event() {
            self.events.push_back((id, ev));
        }
        let half_open = matches!(
            e.tunnel.state(),
            TunnelState::Idle | TunnelState::WaitCtlConn | TunnelState::WaitCtlReply
        );
        if half_open != e.half_open {
            e.half_open = half_open;
            if half_open {
                self.half_open += 1;
            } else {
                self.half_open = self.half_open.saturating_sub(1);
            }
        }
        if e.tunnel.is_closed() {
            if e.half_open {
                self.half_open = self.half_open.saturating_sub(1);
            }
            if let Some(mut e) = self.tunnels.remove(&id) {
                if let Some(p) = e.local_port {
                    self.release_port(p);
                }
                self.by_peer.remove(&(e.peer, e.tunnel.peer_id()));
                let sessions = e
                    .tunnel
                    .take_changed_sessions()
                    .into_iter()
                    .chain(e.tunnel.sessions().map(|s| s.local_id));
                self.gone_sessions.extend(sessions.map(|sid| (id, sid)));
            }
            self.ids.release(now, id.0);
            return;
        }
        let t = e.tunnel.poll_timeout();
        if t != e.scheduled {
            e.scheduled = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, id)));
            }
        }
    }

    fn insert(&mut self, id: TunnelId, entry: Entry) {
        self.tunnels.insert(id, entry);
        self.touch(id);
    }

    /// LAC role (or an LNS dialling out): open a tunnel to `peer`.
    pub fn connect(&mut self, now: Instant, peer: SocketAddr) -> Result<TunnelId, EndpointError> {
        if self.tunnels.len() >= self.cfg.max_tunnels {
            return Err(EndpointError::TooManyTunnels);
        }
        let id = TunnelId(self.ids.allocate(now, &mut self.rng).ok_or(EndpointError::NoIds)?);
        let cfg = self.tunnel_config(peer.ip());
        let seed = self.rng.gen();
        let mut tunnel = Tunnel::connect(cfg, id, seed);
        self.share_session_ids(&mut tunnel, id);
        self.insert(id, Entry::new(tunnel, peer));
        Ok(id)
    }

    /// Wrap a PPP frame (address/control onwards) in a data message for
    /// `session` of `tunnel`; P is set for PPP control protocols so the
    /// peer can prioritise them (§3.1). Returns None for an unknown or not
    /// yet connected session.
    pub fn encapsulate(
        &self,
        tunnel: TunnelId,
        session: SessionId,
        ppp: &[u8],
        sequence: Option<Sequence>,
        priority: bool,
    ) -> Option<Transmit> {
        let e = self.tunnels.get(&tunnel)?;
        let repr = e.tunnel.data_header(session, sequence, priority, ppp.len())?;
        Some(Transmit { destination: e.peer, payload: repr.to_vec(ppp).ok()?, source_port: e.local_port })
    }

    /// As [`Endpoint::encapsulate`], with the PPP frame (`ppp_len` bytes)
    /// written by `fill` straight into the datagram after the L2TP header:
    /// the slow path builds each downstream packet in one buffer instead
    /// of copying it through a frame of its own.
    pub fn encapsulate_with(
        &self,
        tunnel: TunnelId,
        session: SessionId,
        ppp_len: usize,
        sequence: Option<Sequence>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Option<Transmit> {
        let e = self.tunnels.get(&tunnel)?;
        let repr = e.tunnel.data_header(session, sequence, false, ppp_len)?;
        let at = repr.buffer_len();
        let mut payload = vec![0u8; at + ppp_len];
        repr.emit(&mut payload).ok()?;
        fill(payload.get_mut(at..)?);
        Some(Transmit { destination: e.peer, payload, source_port: e.local_port })
    }

    pub fn open_session(
        &mut self,
        now: Instant,
        tunnel: TunnelId,
        info: SessionInfo,
    ) -> Result<SessionId, EndpointError> {
        let t = self.tunnel_mut(tunnel).ok_or(EndpointError::NoSuchTunnel)?;
        let r = t.open_session(now, info);
        self.touch(tunnel);
        Ok(r?)
    }

    pub fn close_session(
        &mut self,
        now: Instant,
        tunnel: TunnelId,
        session: SessionId,
        result: ResultCode,
    ) -> Result<(), EndpointError> {
        self.close_session_with_ppp_cause(now, tunnel, session, result, None)
    }

    /// CDN carrying the RFC 3145 PPP Disconnect Cause Code AVP value.
    pub fn close_session_with_ppp_cause(
        &mut self,
        now: Instant,
        tunnel: TunnelId,
        session: SessionId,
        result: ResultCode,
        ppp_cause: Option<Vec<u8>>,
    ) -> Result<(), EndpointError> {
        let t = self.tunnel_mut(tunnel).ok_or(EndpointError::NoSuchTunnel)?;
        t.close_session_with_ppp_cause(now, session, result, None, ppp_cause)?;
        self.touch(tunnel);
        Ok(())
    }

    pub fn close_tunnel(
        &mut self,
        now: Instant,
        tunnel: TunnelId,
        result: ResultCode,
    ) -> Result<(), EndpointError> {
        let t = self.tunnel_mut(tunnel).ok_or(EndpointError::NoSuchTunnel)?;
        t.close(now, result);
        self.touch(tunnel);
        Ok(())
    }

    /// Route one received datagram.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> DatagramEvent {
        let packet = match Packet::new_checked(data) {
            Ok(p) => p,
            Err(e) => return DatagramEvent::Dropped(DropReason::Malformed(e)),
        };
        let repr = match Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return DatagramEvent::Dropped(DropReason::Malformed(e)),
        };
        let tid = repr.tunnel_id;
        if tid == TunnelId(0) {
            if repr.kind != Kind::Control {
                return DatagramEvent::Dropped(DropReason::UnknownTunnel);
            }
            return self.handle_sccrq(now, from, data);
        }
        let Some(entry) = self.tunnels.get_mut(&tid) else {
            return DatagramEvent::Dropped(DropReason::UnknownTunnel);
        };
        if entry.peer.ip() != from.ip() {
            return DatagramEvent::Dropped(DropReason::WrongPeer);
        }
        if repr.kind == Kind::Data {
            let start = packet.header_len();
            return DatagramEvent::Data {
                tunnel_id: tid,
                session_id: repr.session_id,
                sequence: repr.sequence,
                payload: start..start + repr.payload_len,
            };
        }
        // The responder may answer from another port than we sent to
        // (RFC 2661 §8.1); follow it while waiting for SCCRP.
        if entry.peer != from && entry.tunnel.state() == TunnelState::WaitCtlReply {
            entry.peer = from;
        }
        // Even a message refused half way may have moved the control
        // channel's state.
        self.changed.insert(tid);
        if let Err(e) = entry.tunnel.handle_datagram(now, data) {
            return DatagramEvent::Dropped(DropReason::Malformed(e));
        }
        if let Some(p) = (entry.tunnel.peer_id() != TunnelId(0)).then(|| entry.tunnel.peer_id()) {
            self.by_peer.entry((from, p)).or_insert(tid);
        }
        self.touch(tid);
        DatagramEvent::Control(tid)
    }

    fn handle_sccrq(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> DatagramEvent {
        let peer_cfg = self.peer_config(from.ip()).cloned();
        let secret =
            peer_cfg.as_ref().and_then(|p| p.secret.clone()).or_else(|| self.cfg.tunnel.secret.clone());
        let m = match Message::parse(data, secret.as_deref()) {
            Ok(m) => m,
            Err(e) => return DatagramEvent::Dropped(DropReason::Malformed(e)),
        };
        if m.message_type() != Some(MessageType::Sccrq) {
            return DatagramEvent::Dropped(DropReason::NotSccrq);
        }
        let Some(peer_tid) = m.assigned_tunnel_id() else {
            return DatagramEvent::Dropped(DropReason::NotSccrq);
        };
        // Retransmitted SCCRQ (our SCCRP was lost): same tunnel.
        if let Some(&tid) = self.by_peer.get(&(from, peer_tid)) {
            if let Some(e) = self.tunnels.get_mut(&tid) {
                // The same SCCRQ again after our SCCRP left from the
                // tunnel's own port: the LAC, or a NAT or firewall before
                // it, takes answers only from the port it sent to. The
                // tunnel goes back to that port (our SCCRP is sent again
                // from it), as if the peer were configured so.
                let fall_back = e.local_port.is_some() && e.tunnel.state() == TunnelState::WaitCtlConn;
                self.changed.insert(tid);
                if let Err(err) = e.tunnel.handle_datagram(now, data) {
                    return DatagramEvent::Dropped(DropReason::Malformed(err));
                }
                if fall_back {
                    self.set_local_port(tid, None);
                    self.port_fallbacks += 1;
                }
                self.touch(tid);
                return DatagramEvent::Control(tid);
            }
        }
        if !self.cfg.accept_incoming {
            return DatagramEvent::Dropped(DropReason::NotAccepting);
        }
        // Allow-list; unknown peers get no answer at all, so the LNS cannot
        // be used as a reflector.
        match &peer_cfg {
            None if !self.cfg.allow_unlisted_peers => return DatagramEvent::Dropped(DropReason::NotAllowed),
            Some(p) => {
                if let Some(h) = &p.host_name {
                    if m.host_name().as_ref() != Some(h) {
                        return DatagramEvent::Dropped(DropReason::NotAllowed);
                    }
                }
            }
            None => {}
        }
        // §4.4.3 tie breaker: is an SCCRQ of ours to the same peer pending?
        let ours = self
            .tunnels
            .iter()
            .find(|(_, e)| e.peer.ip() == from.ip() && e.tunnel.state() == TunnelState::WaitCtlReply)
            .map(|(id, e)| (*id, e.tunnel.tie_breaker()));
        if let Some((our_id, our_tb)) = ours {
            match (our_tb, m.tie_breaker()) {
                // The lower value wins; the loser discards its own tunnel.
                // On equal values both give up (and may retry).
                (Some(mine), Some(theirs)) => {
                    if mine >= theirs {
                        self.abort(our_id, TunnelDownReason::TieBreakerLost);
                    }
                    if mine <= theirs {
                        return DatagramEvent::Dropped(DropReason::TieBreaker);
                    }
                }
                // Only one side asked for a single tunnel: that side wins.
                (Some(_), None) => return DatagramEvent::Dropped(DropReason::TieBreaker),
                (None, Some(_)) => self.abort(our_id, TunnelDownReason::TieBreakerLost),
                // Neither did: two tunnels are what both asked for.
                (None, None) => {}
            }
        }
        if self.tunnels.len() >= self.cfg.max_tunnels {
            return DatagramEvent::Dropped(DropReason::TooManyTunnels);
        }
        if self.half_open >= self.cfg.max_half_open {
            return DatagramEvent::Dropped(DropReason::TooManyHalfOpen);
        }
        let Some(id) = self.ids.allocate(now, &mut self.rng) else {
            return DatagramEvent::Dropped(DropReason::TooManyTunnels);
        };
        let id = TunnelId(id);
        let mut cfg = self.tunnel_config(from.ip());
        cfg.secret = secret;
        let seed = self.rng.gen();
        let mut tunnel = Tunnel::accept(cfg, id, seed);
        self.share_session_ids(&mut tunnel, id);
        if let Err(e) = tunnel.handle_datagram(now, data) {
            self.ids.release(now, id.0);
            return DatagramEvent::Dropped(DropReason::Malformed(e));
        }
        self.insert(id, Entry::new(tunnel, from));
        let port = self.pick_port(from.ip());
        self.set_local_port(id, port);
        self.by_peer.insert((from, peer_tid), id);
        // Count it as half-open now, not at the next poll, so a burst of
        // SCCRQs in one batch is limited too.
        self.settle_half_open(id);
        DatagramEvent::Control(id)
    }

    /// A port of `tunnel_ports` for a new tunnel from `ip`: the least
    /// used, searched from a random one so that tunnels do not pile up at
    /// the range's start after a restart. None without a range, for a
    /// peer that keeps the SCCRQ's port, or when no port is usable.
    fn pick_port(&mut self, ip: IpAddr) -> Option<u16> {
        let (first, last) = self.cfg.tunnel_ports.filter(|(f, l)| f <= l)?;
        if self.peer_config(ip).is_some_and(|p| !p.own_port) {
            return None;
        }
        let n = u32::from(last - first) + 1;
        let start = self.rng.gen_range(0..n);
        let mut best: Option<(u32, u16)> = None;
        for i in 0..n {
            let port = first + ((start + i) % n) as u16;
            if self.unusable_ports.contains(&port) {
                continue;
            }
            let used = self.port_use.get(&port).copied().unwrap_or(0);
            if best.is_none_or(|(u, _)| used < u) {
                best = Some((used, port));
                if used == 0 {
                    break;
                }
            }
        }
        best.map(|(_, p)| p)
    }

    fn set_local_port(&mut self, id: TunnelId, port: Option<u16>) {
        let Some(e) = self.tunnels.get_mut(&id) else { return };
        let old = std::mem::replace(&mut e.local_port, port);
        if old == port {
            return;
        }
        self.changed.insert(id);
        if let Some(p) = old {
            self.release_port(p);
        }
        if let Some(p) = port {
            let n = self.port_use.entry(p).or_default();
            *n += 1;
            if *n == 1 {
                self.ports_generation += 1;
            }
        }
    }

    fn release_port(&mut self, port: u16) {
        if let Some(n) = self.port_use.get_mut(&port) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.port_use.remove(&port);
                self.ports_generation += 1;
            }
        }
    }

    /// Where tunnel `id`'s datagrams go (for a LAC: the port the SCCRP
    /// came from).
    pub fn tunnel_peer(&self, id: TunnelId) -> Option<SocketAddr> {
        self.tunnels.get(&id).map(|e| e.peer)
    }

    /// Our port of tunnel `id`: its own, or None for the socket's.
    pub fn local_port(&self, id: TunnelId) -> Option<u16> {
        self.tunnels.get(&id).and_then(|e| e.local_port)
    }

    /// The ports of our own that tunnels use: the caller keeps a socket
    /// open on each (and on no other).
    pub fn ports_in_use(&self) -> impl Iterator<Item = u16> + '_ {
        self.port_use.keys().copied()
    }

    /// Moves whenever [`Endpoint::ports_in_use`] changes.
    pub fn ports_generation(&self) -> u64 {
        self.ports_generation
    }

    /// Tunnels moved back to the socket's port since the start, because
    /// their LAC sent its SCCRQ again instead of answering our SCCRP from
    /// the tunnel's own port (a NAT, a LAC that insists on 1701).
    pub fn port_fallbacks(&self) -> u64 {
        self.port_fallbacks
    }

    /// Tunnels answered from a port of our own (`tunnel_ports`), now.
    pub fn tunnels_on_own_ports(&self) -> u64 {
        self.port_use.values().map(|n| u64::from(*n)).sum()
    }

    /// Ports of the range the caller could not open, not given again.
    pub fn unusable_port_count(&self) -> usize {
        self.unusable_ports.len()
    }

    /// The caller could not open `port` (another program holds it): its
    /// tunnels go back to the socket's port and it is not given again.
    /// Returns the tunnels moved, whose sessions' entries name the port.
    pub fn port_unavailable(&mut self, port: u16) -> Vec<TunnelId> {
        self.unusable_ports.insert(port);
        let moved: Vec<TunnelId> =
            self.tunnels.iter().filter(|(_, e)| e.local_port == Some(port)).map(|(id, _)| *id).collect();
        for id in &moved {
            self.set_local_port(*id, None);
            self.touch(*id);
        }
        moved
    }

    fn abort(&mut self, id: TunnelId, reason: TunnelDownReason) {
        if let Some(e) = self.tunnels.get_mut(&id) {
            e.tunnel.abort(reason);
        }
        self.touch(id);
    }

    fn settle_half_open(&mut self, id: TunnelId) {
        if let Some(e) = self.tunnels.get_mut(&id) {
            if !e.half_open {
                e.half_open = true;
                self.half_open += 1;
            }
        }
    }

    /// Run the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.tunnels.get_mut(&id) else { continue };
            if e.scheduled != Some(t) {
                continue; // stale
            }
            e.scheduled = None;
            e.tunnel.handle_timeout(now);
            self.touch(id);
        }
    }

    /// The earliest timer; call after draining [`Endpoint::poll_transmit`].
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Tunnels not yet settled may have new deadlines.
        let pending: Vec<TunnelId> = self.dirty.iter().copied().collect();
        for id in pending {
            if let Some(e) = self.tunnels.get_mut(&id) {
                let t = e.tunnel.poll_timeout();
                if t.is_some() && t != e.scheduled {
                    e.scheduled = t;
                    if let Some(t) = t {
                        self.timers.push(Reverse((t, id)));
                    }
                }
            }
        }
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            match self.tunnels.get(&id) {
                Some(e) if e.scheduled == Some(t) => return Some(t),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        while let Some(&id) = self.dirty.front() {
            if let Some(e) = self.tunnels.get_mut(&id) {
                if let Some(payload) = e.tunnel.poll_transmit(now) {
                    return Some(Transmit { destination: e.peer, payload, source_port: e.local_port });
                }
            }
            self.dirty.pop_front();
            self.settle(now, id);
        }
        None
    }

    pub fn poll_event(&mut self) -> Option<(TunnelId, Event)> {
        if self.events.is_empty() {
            // Events from commands issued through `tunnel_mut`.
            for i in 0..self.dirty.len() {
                let Some(&id) = self.dirty.get(i) else { break };
                if let Some(e) = self.tunnels.get_mut(&id) {
                    while let Some(ev) = e.tunnel.poll_event() {
                        self.events.push_back((id, ev));
                    }
                }
            }
        }
        self.events.pop_front()
    }

    /// What changed since the last call, for the store: the tunnels
    /// (present or gone), and the sessions (of tunnels present or gone).
    pub fn take_changes(&mut self) -> (BTreeSet<TunnelId>, Vec<(TunnelId, SessionId)>) {
        let tunnels = std::mem::take(&mut self.changed);
        let mut sessions = std::mem::take(&mut self.gone_sessions);
        for id in &tunnels {
            if let Some(e) = self.tunnels.get_mut(id) {
                sessions.extend(e.tunnel.take_changed_sessions().into_iter().map(|s| (*id, s)));
            }
        }
        (tunnels, sessions)
    }

    /// Tunnel `id`'s record in the store: its control channel's state and
    /// its peer, not its sessions ([`Endpoint::session_record`]).
    pub fn tunnel_record(&self, id: TunnelId) -> Option<TunnelRecordRef<'_>> {
        let e = self.tunnels.get(&id)?;
        Some(TunnelRecordRef { tunnel: e.tunnel.shell(), peer: e.peer, local_port: e.local_port })
    }

    /// Session `sid` of tunnel `tid`'s record in the store.
    pub fn session_record(&self, tid: TunnelId, sid: SessionId) -> Option<SessionRecordRef<'_>> {
        self.tunnels.get(&tid)?.tunnel.session_record(sid)
    }

    /// What the store keeps of the endpoint besides its tunnels: its
    /// configuration (the id spaces' size and the seed stay across
    /// restarts), the tunnel ids held down, the RNG.
    pub fn meta_record(&self) -> EndpointMetaRef<'_> {
        EndpointMetaRef { cfg: &self.cfg, ids: &self.ids, rng: &self.rng }
    }

    /// An endpoint put back together from the store's records. What is
    /// derived is derived again: the session-id spaces (whose reservations
    /// the caller makes again), the peers' index, the half-open count, the
    /// timers; a tunnel whose record is there without its sessions' has
    /// none. Tunnels are put back in any order.
    pub fn from_records(
        meta: EndpointMeta,
        tunnels: impl IntoIterator<Item = (TunnelRecord, Vec<SessionRecord>)>,
    ) -> Endpoint {
        let mut ep = Endpoint::new(meta.cfg);
        ep.ids = meta.ids;
        ep.rng = meta.rng;
        for (record, sessions) in tunnels {
            let mut tunnel = Tunnel::from_records(record.tunnel, sessions);
            let id = tunnel.local_id();
            if ep.tunnels.contains_key(&id) {
                continue;
            }
            ep.ids.hold(id.0);
            if let Some(space) = ep.spaces.get(ep.session_id_bank(id) as usize) {
                tunnel.relink_session_ids(space);
            }
            if tunnel.peer_id() != TunnelId(0) {
                ep.by_peer.insert((record.peer, tunnel.peer_id()), id);
            }
            let mut entry = Entry::new(tunnel, record.peer);
            entry.local_port = record.local_port;
            if let Some(p) = record.local_port {
                *ep.port_use.entry(p).or_default() += 1;
                ep.ports_generation += 1;
            }
            entry.half_open = matches!(
                entry.tunnel.state(),
                TunnelState::Idle | TunnelState::WaitCtlConn | TunnelState::WaitCtlReply
            );
            ep.half_open += usize::from(entry.half_open);
            entry.scheduled = entry.tunnel.poll_timeout();
            if let Some(t) = entry.scheduled {
                ep.timers.push(Reverse((t, id)));
            }
            ep.tunnels.insert(id, entry);
        }
        ep
    }

    /// Tunnels that are not yet established (for metrics).
    pub fn half_open_count(&self) -> usize {
        self.half_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::avp::AvpValue;

    fn sccrq(assigned: u16, host: &[u8]) -> Vec<u8> {
        Message::new(
            MessageType::Sccrq,
            [
                AvpValue::ProtocolVersion { version: 1, revision: 0 },
                AvpValue::FramingCapabilities(3),
                AvpValue::HostName(host.to_vec()),
                AvpValue::AssignedTunnelId(TunnelId(assigned)),
            ],
        )
        .emit(None)
        .expect("emit")
    }

    fn lns(max_tunnels: usize, max_half_open: usize) -> Endpoint {
        Endpoint::new(EndpointConfig {
            allow_unlisted_peers: true,
            max_tunnels,
            max_half_open,
            seed: Some(1),
            ..EndpointConfig::default()
        })
    }

    fn peer() -> SocketAddr {
        "192.0.2.2:1701".parse().expect("addr")
    }

    #[test]
    fn half_open_limit() {
        let now = Instant::now();
        let mut ep = lns(10, 2);
        assert!(matches!(ep.handle_datagram(now, peer(), &sccrq(1, b"a")), DatagramEvent::Control(_)));
        assert!(matches!(ep.handle_datagram(now, peer(), &sccrq(2, b"a")), DatagramEvent::Control(_)));
        assert_eq!(
            ep.handle_datagram(now, peer(), &sccrq(3, b"a")),
            DatagramEvent::Dropped(DropReason::TooManyHalfOpen)
        );
        assert_eq!(ep.half_open_count(), 2);
        // A retransmission of an accepted SCCRQ is not a new tunnel.
        assert!(matches!(ep.handle_datagram(now, peer(), &sccrq(1, b"a")), DatagramEvent::Control(_)));
        assert_eq!(ep.tunnel_count(), 2);
    }

    #[test]
    fn tunnel_limit() {
        let now = Instant::now();
        let mut ep = lns(1, 10);
        assert!(matches!(ep.handle_datagram(now, peer(), &sccrq(1, b"a")), DatagramEvent::Control(_)));
        assert_eq!(
            ep.handle_datagram(now, peer(), &sccrq(2, b"a")),
            DatagramEvent::Dropped(DropReason::TooManyTunnels)
        );
        assert_eq!(ep.connect(now, peer()), Err(EndpointError::TooManyTunnels));
    }

    #[test]
    fn admission_checks() {
        let now = Instant::now();
        let mut ep = Endpoint::new(EndpointConfig {
            peers: vec![PeerConfig { host_name: Some(b"lac1".to_vec()), ..PeerConfig::host(peer().ip()) }],
            seed: Some(2),
            ..EndpointConfig::default()
        });
        assert_eq!(
            ep.handle_datagram(now, peer(), &sccrq(1, b"intruder")),
            DatagramEvent::Dropped(DropReason::NotAllowed)
        );
        let stranger: SocketAddr = "198.51.100.7:1701".parse().expect("addr");
        assert_eq!(
            ep.handle_datagram(now, stranger, &sccrq(1, b"lac1")),
            DatagramEvent::Dropped(DropReason::NotAllowed)
        );
        let DatagramEvent::Control(id) = ep.handle_datagram(now, peer(), &sccrq(1, b"lac1")) else {
            panic!("accepted peer")
        };
        // Other tunnel ids, other addresses, tunnel 0 without SCCRQ.
        let hello = |tid: u16| {
            let mut m = Message::new(MessageType::Hello, []);
            m.tunnel_id = TunnelId(tid);
            m.emit(None).expect("emit")
        };
        let unknown = if id.0 == 7 { 8 } else { 7 };
        assert_eq!(
            ep.handle_datagram(now, peer(), &hello(unknown)),
            DatagramEvent::Dropped(DropReason::UnknownTunnel)
        );
        assert_eq!(
            ep.handle_datagram(now, stranger, &hello(id.0)),
            DatagramEvent::Dropped(DropReason::WrongPeer)
        );
        assert_eq!(ep.handle_datagram(now, peer(), &hello(0)), DatagramEvent::Dropped(DropReason::NotSccrq));
        assert!(matches!(
            ep.handle_datagram(now, peer(), &[0xc8, 0x02, 0x00]),
            DatagramEvent::Dropped(DropReason::Malformed(_))
        ));
        // The SCCRP goes back to the peer, to its Assigned Tunnel ID.
        let t = ep.poll_transmit(now).expect("SCCRP");
        assert_eq!(t.destination, peer());
        let m = Message::parse(&t.payload, None).expect("parse");
        assert_eq!((m.message_type(), m.tunnel_id), (Some(MessageType::Sccrp), TunnelId(1)));
        assert_eq!(m.assigned_tunnel_id(), Some(id));
    }

    #[test]
    fn unsupported_protocol_version_gets_stopccn() {
        let now = Instant::now();
        let mut ep = lns(10, 10);
        let bytes = Message::new(
            MessageType::Sccrq,
            [
                AvpValue::ProtocolVersion { version: 2, revision: 0 },
                AvpValue::FramingCapabilities(3),
                AvpValue::HostName(b"a".to_vec()),
                AvpValue::AssignedTunnelId(TunnelId(9)),
            ],
        )
        .emit(None)
        .expect("emit");
        assert!(matches!(ep.handle_datagram(now, peer(), &bytes), DatagramEvent::Control(_)));
        let t = ep.poll_transmit(now).expect("StopCCN");
        let m = Message::parse(&t.payload, None).expect("parse");
        assert_eq!((m.message_type(), m.tunnel_id), (Some(MessageType::StopCcn), TunnelId(9)));
        assert_eq!(m.result_code().map(|r| r.result), Some(crate::l2tp::avp::stopccn::PROTOCOL_VERSION));
    }

    #[test]
    fn not_accepting() {
        let now = Instant::now();
        let mut ep = Endpoint::new(EndpointConfig {
            accept_incoming: false,
            allow_unlisted_peers: true,
            ..EndpointConfig::default()
        });
        assert_eq!(
            ep.handle_datagram(now, peer(), &sccrq(1, b"a")),
            DatagramEvent::Dropped(DropReason::NotAccepting)
        );
    }

    #[test]
    fn cidr_matching() {
        let p = PeerConfig { prefix_len: 25, ..PeerConfig::host("192.0.2.0".parse().expect("ip")) };
        assert!(p.matches("192.0.2.1".parse().expect("ip")));
        assert!(p.matches("192.0.2.127".parse().expect("ip")));
        assert!(!p.matches("192.0.2.128".parse().expect("ip")));
        assert!(!p.matches("2001:db8::1".parse().expect("ip")));
        let all = PeerConfig { prefix_len: 0, ..p.clone() };
        assert!(all.matches("203.0.113.9".parse().expect("ip")));
        let v6 = PeerConfig { network: "2001:db8::".parse().expect("ip"), prefix_len: 32, ..p };
        assert!(v6.matches("2001:db8:1::1".parse().expect("ip")));
        assert!(!v6.matches("2001:db9::1".parse().expect("ip")));
    }
}

#[cfg(test)]
#[path = "tunnel_ports_tests.rs"]
mod tunnel_ports_tests;
