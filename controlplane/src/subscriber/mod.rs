//! The subscriber core: every decision about a tunnel or a subscriber,
//! with no I/O, no clock and no global RNG.
//!
//! It joins the protocol cores (the L2TP [`Endpoint`], one
//! [`ppp::Session`] per subscriber) with authentication, address and
//! prefix pools, RADIUS accounting, dynamic authorization and the data
//! plane's session entries. In the quinn-proto manner the caller (the
//! daemon, or a test on virtual time) feeds it
//!
//! - datagrams: [`Core::handle_datagram`];
//! - time: [`Core::handle_timeout`] at [`Core::poll_timeout`];
//! - the credential backend's answers: [`Core::handle_auth_answer`];
//! - fast-path counter samples it asked for: [`Core::handle_counters`];
//! - failed data-plane writes: [`Core::handle_map_failure`];
//! - RFC 5176 requests: [`Core::handle_dynauth`];
//! - operators' requests: [`Core::handle_request`], [`Core::shutdown`],
//!   [`Core::finish`];
//!
//! and carries out the [`Effect`]s it takes from [`Core::poll_effect`], in
//! order: datagrams to send, session entries to write or remove, counters
//! to sample, credentials to check, accounting records to send, notices
//! to log.
//!
//! Where things happen (file by file):
//! - a call arrives, connects and leaves: [`calls`] (the L2TP events);
//! - PPP runs, the subscriber is authenticated, addresses are assigned,
//!   networks open and close: [`link`];
//! - IPv6 prefixes: [`ipv6`];
//! - timeouts, accounting and counters: [`timers`] and [`accounting`];
//! - why sessions end, as the LAC and RADIUS are told: [`reason`];
//! - what `lnsctl` shows: [`views`];
//! - the state as data, written and read back: [`snapshot`].

pub mod accounting;
mod calls;
mod dhcpv6;
pub mod effect;
mod ipsec;
mod ipv6;
mod link;
mod rates;
pub mod reason;
mod slowpath;
pub mod snapshot;
mod timers;
mod views;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lns_bpf::abi;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use self::accounting::{AccountingConfig, AcctKind, AcctRecord, Counters};
pub use self::dhcpv6::Dhcpv6Config;
pub use self::effect::{AuthAnswer, AuthJob, Datagram, Effect, MapOp, NcpRefusal, Notice, NsFill};
pub use self::rates::{RateDefaults, Rates};
pub use self::reason::{DownReason, EndReason};
pub use self::slowpath::SlowPathConfig;
pub use self::snapshot::{Changes, RecordKey, Records, StoredRecord};
use crate::daemon::aaa::{AaaError, Ipv6PoolEntry, Ipv6Pools, PoolEntry, Pools};
use crate::l2tp::{DropReason, Endpoint, EndpointConfig, PackedSessionInfo, SessionId, TunnelId};
use crate::ppp::{self, SessionConfig};
use crate::snapshot::Tracked;

/// PPP frames kept per call until its ICCN arrives.
const MAX_EARLY_PPP: usize = 8;

/// The finest step of the session clock: idle samples are at least this
/// far apart, and a session whose interim is due is sampled again this
/// long after a sample that has not come back.
const TIMEOUT_CHECK: Duration = Duration::from_secs(1);

/// A session: its tunnel and its own id, both ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    pub tunnel: TunnelId,
    pub session: SessionId,
}

impl SessionKey {
    pub fn new(tunnel: TunnelId, session: SessionId) -> Self {
        SessionKey { tunnel, session }
    }
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tunnel.0, self.session.0)
    }
}

/// What the core is told once, at start.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub endpoint: EndpointConfig,
    /// The L2TP socket's address (its port goes into every session entry).
    pub listen: SocketAddr,
    pub ppp: SessionConfig,
    pub session_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub pools: Vec<PoolEntry>,
    pub default_pool: Option<String>,
    pub ipv6_pools: Vec<Ipv6PoolEntry>,
    pub default_ipv6_pool: Option<String>,
    /// RADIUS accounting, when accounting servers are configured.
    pub accounting: Option<AccountingConfig>,
    /// How long a stop waits for the StopCCNs to be acknowledged.
    pub shutdown_grace: Duration,
    /// Seeds the core's RNG (PPP magic numbers, challenges, ...); None
    /// takes one from the L2TP endpoint's seed, or entropy.
    pub seed: Option<u64>,
    /// The exception path (see [`slowpath`]); None: data that reaches the
    /// control plane is discarded, as before a session forwards.
    pub slow_path: Option<SlowPathConfig>,
    /// The DHCPv6 server on the PPP links (see [`dhcpv6`]).
    pub dhcpv6: Dhcpv6Config,
    /// Rate limits of sessions that have none of their own or of their
    /// pool's (see [`rates`]).
    pub rates: RateDefaults,
    /// The LCP MRU every session proposes (`ppp.mru`); None: derived from
    /// the MTU of the access link its tunnel arrived on
    /// ([`Core::set_interface_mtu`], [`crate::ppp::lcp::LcpConfig::mru_for_access_link`]).
    pub mru: Option<u16>,
}

/// A tunnel as the core knows it besides the Endpoint: where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunnelRecord {
    pub peer: SocketAddr,
    /// Our address the LAC sends to.
    pub local: IpAddr,
    pub ifindex: u32,
    #[serde(with = "crate::snapshot::instant")]
    pub since: Instant,
}

/// What the link negotiated that the data plane needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub mtu: u16,
    pub acfc: bool,
    pub pfc: bool,
    /// §5.4: the LAC wants Ns/Nr on every data message.
    pub sequencing: bool,
}

/// A session's IPv6: what the backend granted and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Record {
    /// A fixed prefix from the backend (RADIUS Framed-IPv6-Prefix).
    pub granted_prefix: Option<(std::net::Ipv6Addr, u8)>,
    /// The pool the backend named (RADIUS Framed-IPv6-Pool).
    pub granted_pool: Option<Box<str>>,
    /// The prefix the session holds now (in the fast path, announced).
    pub prefix: Option<(std::net::Ipv6Addr, u8)>,
    /// A prefix routed to the subscriber's router (RADIUS
    /// Delegated-IPv6-Prefix, or DHCPv6 prefix delegation from a pool), in
    /// the fast path while IPv6CP is open.
    pub delegated: Option<(std::net::Ipv6Addr, u8)>,
    /// The DHCPv6 server's bindings on this link (out of line: most
    /// links have none).
    #[serde(default)]
    pub dhcpv6: crate::lazy_box::LazyBox<dhcpv6::Bindings>,
}

/// A connected session (ICCN received) and its subscriber.
#[derive(Debug, Serialize, Deserialize)]
pub struct Subscriber {
    pub peer_tunnel_id: TunnelId,
    pub peer_session_id: SessionId,
    /// The call's information, packed (see [`PackedSessionInfo`]).
    pub info: PackedSessionInfo,
    #[serde(with = "crate::snapshot::instant")]
    pub since: Instant,
    pub ppp_frames_rx: u64,
    /// Boxed, as `info`: the sessions' table moves and splits its nodes,
    /// and a node's slack is a share of what it holds inline.
    pub ppp: Box<ppp::Session>,
    pub link: Link,
    /// The MRU this session's LCP proposed (what the access link carries
    /// of a frame): nothing larger is sent to the subscriber either.
    #[serde(default = "default_mru")]
    pub mru: u16,
    /// Packets and bytes of the session through the exception path; the
    /// fast path's counter samples are reported with them added.
    /// Out of line until the first such packet: most sessions send none.
    #[serde(default)]
    pub slow_path: crate::lazy_box::LazyBox<accounting::Counters>,
    /// Authenticated user name.
    pub username: Option<Box<str>>,
    /// Address given to the subscriber (from a pool or the user's fixed one).
    pub ipv4: Option<Ipv4Addr>,
    /// IPCP is open with that address: the entry forwards it.
    pub ipv4_forwarding: bool,
    pub ipv6: Ipv6Record,
    /// When the first network protocol opened (Session-Timeout counts from here).
    #[serde(with = "crate::snapshot::opt_instant")]
    pub network_up: Option<Instant>,
    /// Fast-path packets at the last sample, and when they last changed.
    pub traffic: u64,
    #[serde(with = "crate::snapshot::instant")]
    pub last_activity: Instant,
    /// The LNS is ending the session, and why.
    pub ending: Option<EndReason>,
    /// PPP ended by itself with this RFC 3145 cause code.
    #[serde(default)]
    pub link_down: Option<u16>,
    /// Authentication requests sent to the backend; an answer for an older
    /// one is stale.
    pub auth_seq: u64,
    /// Per-subscriber timeouts from the backend, over the configured ones.
    pub session_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub acct: Option<Box<accounting::Accounting>>,
    /// The pool the session's address was asked from (its rates apply).
    #[serde(default)]
    pub pool: Option<Box<str>>,
    /// Rate limits of its own: from the backend, or a CoA-Request since.
    #[serde(default)]
    pub rates: Rates,
    /// The exception path's rate-limit buckets, from the first policed
    /// packet on (most sessions send none that way).
    #[serde(skip)]
    pub slow_path_buckets: Option<Box<rates::SlowPathBuckets>>,
    /// This session's entry in the core's PPP timer index (rebuilt on
    /// restore).
    #[serde(skip)]
    timer: Option<Instant>,
    /// This session's entry in the core's session clock (rebuilt on
    /// restore).
    #[serde(skip)]
    clock: Option<Instant>,
}

fn default_mru() -> u16 {
    ppp::DEFAULT_MRU
}

/// A call accepted (ICRP sent) and not yet connected.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calling {
    /// PPP frames that arrived before the ICCN (the LAC's ICCN can wait in
    /// its send window while data goes straight out).
    pub early_ppp: Vec<Vec<u8>>,
}

/// Counters of the whole LNS.
#[derive(Debug, Clone, Default)]
pub struct CoreCounters {
    pub tunnels_up_total: u64,
    pub tunnels_down_total: u64,
    pub sessions_up_total: u64,
    pub sessions_down_total: u64,
    pub datagrams_rx: u64,
    pub control_rx: u64,
    pub data_rx: u64,
    pub map_errors: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    /// Sessions ended, by cause (see [`Core::session_states`] for those
    /// alive).
    pub sessions_down: BTreeMap<&'static str, u64>,
    /// Taken back from a snapshot at start, and of those ended because
    /// the data plane no longer had their entry.
    pub sessions_restored: u64,
    pub sessions_reconciled: u64,
    /// Tunnels taken back at start, and the sessions a restart could not
    /// take back, by why (see [`snapshot`]).
    pub tunnels_restored: u64,
    pub reconciled: BTreeMap<&'static str, u64>,
    /// The exception path: packets each way, and drops by reason.
    pub slow_path: BTreeMap<&'static str, u64>,
    /// Tunnels that went down, by cause.
    pub tunnels_down: BTreeMap<&'static str, u64>,
}

/// Why a datagram (or an NCP) was dropped, as `lnsctl show stats` names it.
pub fn drop_name(r: &DropReason) -> &'static str {
    match r {
        DropReason::Malformed(_) => "malformed",
        DropReason::UnknownTunnel => "unknown_tunnel",
        DropReason::WrongPeer => "wrong_peer",
        DropReason::NotAllowed => "not_allowed",
        DropReason::NotAccepting => "not_accepting",
        DropReason::TooManyTunnels => "too_many_tunnels",
        DropReason::TooManyHalfOpen => "too_many_half_open",
        DropReason::TieBreaker => "tie_breaker",
        DropReason::NotSccrq => "not_sccrq",
    }
}

/// The subscriber core.
pub struct Core {
    cfg: CoreConfig,
    endpoint: Endpoint,
    // Tracked: the store writes what changed (see [`snapshot`]).
    tunnels: Tracked<BTreeMap<TunnelId, TunnelRecord>>,
    /// Boxed: a B-tree node holds eleven values and is rarely full, so
    /// its slack would be a share of the subscriber's size.
    sessions: Tracked<BTreeMap<SessionKey, Box<Subscriber>>>,
    calling: Tracked<BTreeMap<SessionKey, Calling>>,
    /// Sessions that ended, waiting for their last counter sample (their
    /// Accounting Stop carries it) before their entry goes.
    stopping: Tracked<BTreeMap<SessionKey, Box<Subscriber>>>,
    /// Sessions still negotiating whose small record (the call's ids) is
    /// in the store: their later steps are not written (see [`snapshot`]).
    negotiating_stored: BTreeSet<SessionKey>,
    /// Our address each peer sends to, so replies leave from it.
    peer_local: BTreeMap<SocketAddr, IpAddr>,
    pools: Pools,
    ipv6_pools: Ipv6Pools,
    counters: CoreCounters,
    started: Instant,
    draining: bool,
    /// Accounting sessions opened by this process (Acct-Session-Id's second half).
    acct_sessions: u64,
    /// Names of the interfaces datagrams arrived on, for the peers that
    /// require IPsec (see [`ipsec`]).
    interface_names: ipsec::InterfaceNames,
    rng: ChaCha8Rng,
    /// Every session's next PPP deadline, earliest first, so that neither
    /// the wait nor the timer scans all sessions.
    ppp_timers: BTreeSet<(Instant, SessionKey)>,
    /// Every session's next look by the clock (Session-Timeout, idle
    /// sample, interim, DHCPv6 expiry; see [`timers`]), earliest first:
    /// sessions with nothing timed are not in it.
    session_clock: BTreeSet<(Instant, SessionKey)>,
    /// Which session a destination belongs to, for the slow path.
    routes: slowpath::RouteIndex,
    /// The MTU of each access interface, as the driver learned it.
    interface_mtu: BTreeMap<u32, u16>,
    /// The PPP configuration new links share, one per MRU (cleared when
    /// the configuration is reloaded).
    ppp_configs: Vec<std::sync::Arc<ppp::SessionConfig>>,
    effects: effect::EffectQueue,
    /// The Endpoint has datagrams to hand out, taken at the next
    /// [`Core::poll_effect`] (with this time) rather than after each
    /// datagram: a burst's unanswered messages (ICCNs) are then acked by
    /// one ZLB per tunnel, not one each.
    transmit_due: Option<Instant>,
}

impl Core {
    pub fn new(mut cfg: CoreConfig, now: Instant) -> Result<Core, AaaError> {
        let pools = Pools::new(&cfg.pools)?;
        let ipv6_pools = Ipv6Pools::new(&dhcpv6::pool_entries(&cfg.ipv6_pools, &cfg.dhcpv6))?;
        dhcpv6::set_ra_flags(&mut cfg);
        let rng = match cfg.seed.or(cfg.endpoint.seed) {
            Some(s) => ChaCha8Rng::seed_from_u64(s ^ 0x5ab5_c81b_e6c0_4e00),
            None => ChaCha8Rng::from_entropy(),
        };
        Ok(Core {
            endpoint: Endpoint::new(cfg.endpoint.clone()),
            cfg,
            tunnels: Tracked::default(),
            sessions: Tracked::default(),
            calling: Tracked::default(),
            stopping: Tracked::default(),
            negotiating_stored: BTreeSet::new(),
            peer_local: BTreeMap::new(),
            pools,
            ipv6_pools,
            counters: CoreCounters::default(),
            started: now,
            draining: false,
            acct_sessions: 0,
            interface_names: Default::default(),
            rng,
            ppp_timers: BTreeSet::new(),
            session_clock: BTreeSet::new(),
            routes: Default::default(),
            interface_mtu: BTreeMap::new(),
            ppp_configs: Vec::new(),
            effects: Default::default(),
            transmit_due: None,
        })
    }

    /// A reloaded configuration: pools (rebuilt, with every address and
    /// prefix a session holds taken again, so none is given twice, even
    /// from a pool that is gone), PPP settings and timeouts of new
    /// sessions, the timeouts of those up, and the endpoint's peers and
    /// limits. The L2TP address stays. On an error nothing changes.
    pub fn reconfigure(&mut self, now: Instant, mut cfg: CoreConfig) -> Result<String, AaaError> {
        // Addresses held already are each held once: nothing to refuse.
        let (pools, ipv6_pools, _) = self.pools_holding(&cfg)?;
        dhcpv6::set_ra_flags(&mut cfg);
        let names = |u: &[(String, u64, u64)]| u.iter().map(|p| p.0.clone()).collect::<BTreeSet<_>>();
        let (old, new) = (names(&self.pools.usage()), names(&pools.usage()));
        let (added, removed) = (new.difference(&old).count(), old.difference(&new).count());
        self.pools = pools;
        self.ipv6_pools = ipv6_pools;
        cfg.listen = self.cfg.listen;
        cfg.seed = self.cfg.seed;
        cfg.accounting = self.cfg.accounting.clone();
        self.endpoint.reconfigure(cfg.endpoint.clone());
        let peers = cfg.endpoint.peers.len();
        let timeouts =
            (cfg.session_timeout, cfg.idle_timeout) != (self.cfg.session_timeout, self.cfg.idle_timeout);
        self.cfg = cfg;
        self.ppp_configs.clear();
        if timeouts {
            // They apply to the sessions up too.
            self.reclock_all(now);
        }
        Ok(format!(
            "{} IPv4 pools ({added} added, {removed} removed), {} IPv6 pools, {peers} peers; {} sessions kept",
            new.len(),
            self.ipv6_pools.usage().len(),
            self.sessions.len()
        ))
    }

    /// The pools of `cfg`, with every address and prefix a session (or a
    /// session waiting for its Stop) holds taken; and those that were
    /// already taken by another session, which the caller decides about.
    fn pools_holding(&self, cfg: &CoreConfig) -> Result<(Pools, Ipv6Pools, Vec<String>), AaaError> {
        let mut pools = Pools::new(&cfg.pools)?;
        let mut ipv6_pools = Ipv6Pools::new(&dhcpv6::pool_entries(&cfg.ipv6_pools, &cfg.dhcpv6))?;
        let mut twice = Vec::new();
        for s in self.sessions.values().chain(self.stopping.values()) {
            if let Some(a) = s.ipv4.filter(|a| !pools.reserve(*a)) {
                twice.push(a.to_string());
            }
            if let Some((p, len)) = s.ipv6.prefix.filter(|(p, len)| !ipv6_pools.reserve(*p, *len)) {
                twice.push(format!("{p}/{len}"));
            }
            for (p, len) in Core::dhcpv6_pooled(s).filter(|(p, len)| !ipv6_pools.reserve(*p, *len)) {
                twice.push(format!("{p}/{len}"));
            }
        }
        Ok((pools, ipv6_pools, twice))
    }

    /// Session ids the data plane's table cannot give a direct slot to
    /// (another writer's, or beyond the table) are never handed out.
    pub fn reserve_session_id(&self, bank: u32, id: u16) -> bool {
        self.endpoint.reserve_session_id(bank, id)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The driver could not open our UDP port `port` for the tunnels the
    /// endpoint gave it: they go back to the L2TP socket's port, and their
    /// sessions' entries say so.
    pub fn port_unavailable(&mut self, now: Instant, port: u16) {
        let moved: BTreeSet<TunnelId> = self.endpoint.port_unavailable(port).into_iter().collect();
        let keys: Vec<SessionKey> =
            self.sessions.keys().filter(|k| moved.contains(&k.tunnel)).copied().collect();
        for key in keys {
            self.write_entry(key, MapOp::Change);
        }
        self.pump(now);
    }

    /// The driver learned the MTU of interface `ifindex` (where tunnels
    /// arrive): sessions set up from now on derive their MRU from it.
    pub fn set_interface_mtu(&mut self, ifindex: u32, mtu: u16) {
        self.interface_mtu.insert(ifindex, mtu);
    }

    /// The MRU a new session of `tunnel` proposes: the configured one, or
    /// what the access link's MTU leaves once tunnelled (the LCP
    /// default when the link's MTU is not known).
    fn session_mru(&self, tunnel: TunnelId, sequencing: bool) -> u16 {
        if let Some(mru) = self.cfg.mru {
            return mru;
        }
        let Some(t) = self.tunnels.get(&tunnel) else { return self.cfg.ppp.lcp.mru };
        match self.interface_mtu.get(&t.ifindex) {
            Some(&mtu) => ppp::lcp::LcpConfig::mru_for_access_link(mtu, t.peer.is_ipv6(), sequencing),
            None => self.cfg.ppp.lcp.mru,
        }
    }

    pub fn session(&self, key: SessionKey) -> Option<&Subscriber> {
        self.sessions.get(&key).map(|s| &**s)
    }

    pub fn sessions(&self) -> impl Iterator<Item = (&SessionKey, &Subscriber)> {
        self.sessions.iter().map(|(k, s)| (k, &**s))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn counters(&self) -> &CoreCounters {
        &self.counters
    }

    pub fn addresses_in_use(&self) -> usize {
        self.pools.in_use()
    }

    pub fn ipv6_prefixes_in_use(&self) -> usize {
        self.ipv6_pools.in_use()
    }

    /// Each IPv4 pool's name, addresses in use and in all.
    pub fn pool_usage(&self) -> Vec<(String, u64, u64)> {
        self.pools.usage()
    }

    /// Each IPv6 pool's name, prefixes in use and in all.
    pub fn ipv6_pool_usage(&self) -> Vec<(String, u64, u64)> {
        self.ipv6_pools.usage()
    }

    /// Sessions by where they stand: `connecting` (ICRP sent, no ICCN
    /// yet), `negotiating` (PPP, no network protocol open), `forwarding`
    /// (IPv4 or IPv6 in the fast path), `ending` (the LNS is closing it).
    pub fn session_states(&self) -> BTreeMap<&'static str, u64> {
        let mut m: BTreeMap<&'static str, u64> =
            [("connecting", 0), ("negotiating", 0), ("forwarding", 0), ("ending", 0)].into_iter().collect();
        *m.entry("connecting").or_default() += self.calling.len() as u64;
        for s in self.sessions.values() {
            let state = if s.ending.is_some() {
                "ending"
            } else if s.ipv4_forwarding || s.ipv6.prefix.is_some() {
                "forwarding"
            } else {
                "negotiating"
            };
            *m.entry(state).or_default() += 1;
        }
        m
    }

    /// Tunnels by RFC 2661 §7.2 state.
    pub fn tunnel_states(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for id in self.endpoint.tunnel_ids() {
            if let Some(t) = self.endpoint.tunnel(id) {
                *m.entry(views::tunnel_state_name(t.state())).or_default() += 1;
            }
        }
        m
    }

    /// Effects waiting to be carried out.
    pub fn effects_pending(&self) -> usize {
        self.effects.len() + usize::from(self.transmit_due.is_some())
    }

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.take_transmits();
        self.effects.pop_front()
    }

    /// When [`Core::handle_timeout`] wants to be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Sending sets retransmission timers.
        self.take_transmits();
        [
            self.endpoint.poll_timeout(),
            self.ppp_timers.first().map(|(t, _)| *t),
            self.session_clock.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn notice(&mut self, n: Notice) {
        self.effects.push_back(Effect::Notice(n));
    }

    fn drop_datagram(&mut self, reason: &'static str) {
        *self.counters.dropped.entry(reason).or_default() += 1;
    }

    /// One datagram from the L2TP socket: `local` and `ifindex` say where
    /// it arrived (our address the peer used, the access interface).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: Option<IpAddr>,
        ifindex: Option<u32>,
        data: &[u8],
    ) {
        self.counters.datagrams_rx += 1;
        if self.refuse_clear_l2tp(from, ifindex) {
            return;
        }
        match self.endpoint.handle_datagram(now, from, data) {
            crate::l2tp::DatagramEvent::Control(tid) => {
                self.counters.control_rx += 1;
                let local = local.unwrap_or(self.cfg.listen.ip());
                self.peer_local.insert(from, local);
                if let std::collections::btree_map::Entry::Vacant(e) = self.tunnels.entry(tid) {
                    e.insert(TunnelRecord { peer: from, local, ifindex: ifindex.unwrap_or(0), since: now });
                    self.notice(Notice::TunnelAccepted { tunnel: tid, peer: from, local });
                }
            }
            crate::l2tp::DatagramEvent::Data { tunnel_id, session_id, payload, .. } => {
                self.counters.data_rx += 1;
                let key = SessionKey::new(tunnel_id, session_id);
                match data.get(payload) {
                    Some(frame) if self.sessions.contains_key(&key) => {
                        // Larger than its link carries: it came in fragments.
                        let ip_udp = if from.is_ipv6() { 48 } else { 28 };
                        let reassembled = ifindex
                            .and_then(|i| self.interface_mtu.get(&i))
                            .is_some_and(|&mtu| data.len() + ip_udp > usize::from(mtu));
                        if !self.slow_path_up(now, key, frame, reassembled) {
                            self.on_ppp_frame(now, key, frame);
                            self.drive_ppp(now, key);
                        }
                    }
                    Some(frame) => match self.calling.get_mut(&key) {
                        // PPP overtook the ICCN: kept for when the call connects.
                        Some(c) if c.early_ppp.len() < MAX_EARLY_PPP => c.early_ppp.push(frame.to_vec()),
                        _ => self.drop_datagram("unknown_session"),
                    },
                    None => self.drop_datagram("unknown_session"),
                }
            }
            crate::l2tp::DatagramEvent::Dropped(reason) => self.drop_datagram(drop_name(&reason)),
        }
        self.pump(now);
    }

    /// Time passed: L2TP retransmissions and HELLOs, PPP timers, session
    /// and idle timeouts, interim accounting.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.check_timeouts(now);
        let due: Vec<SessionKey> =
            self.ppp_timers.iter().take_while(|(t, _)| *t <= now).map(|(_, k)| *k).collect();
        for key in due {
            match self.established_ppp(key) {
                Some(s) => s.ppp.handle_timeout(now),
                None => {
                    // Gone without session_down: forget its deadline.
                    self.ppp_timers.retain(|(_, k)| *k != key);
                    continue;
                }
            }
            self.drive_ppp(now, key);
        }
        self.pump(now);
    }

    /// The data plane did not take a write: each kind is undone its own way.
    pub fn handle_map_failure(&mut self, now: Instant, key: SessionKey, op: MapOp) {
        self.counters.map_errors += 1;
        self.notice(Notice::MapWriteFailed { key, op });
        match op {
            // ICCN writes it again.
            MapOp::Call | MapOp::Change | MapOp::Remove => {}
            MapOp::Connect => self.end_session(now, key, EndReason::DataplaneUnavailable),
            MapOp::Ipv4Up => {
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.ppp.close(now, None);
                }
                self.drive_ppp(now, key);
            }
            MapOp::Ipv6Up => {
                self.ipv6_down(now, key);
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.ppp.close_ncp(now, ppp::Protocol::IPV6CP);
                }
                self.drive_ppp(now, key);
            }
        }
        self.pump(now);
    }

    /// Acts on the Endpoint's events; what it has to send is taken later
    /// ([`Core::take_transmits`]), once for everything handled meanwhile.
    fn pump(&mut self, now: Instant) {
        // Events first: an accepted call goes into the data plane before
        // the ICRP that lets the LAC send on it leaves.
        self.take_l2tp_events(now);
        self.transmit_due = Some(self.transmit_due.map_or(now, |t| t.max(now)));
        self.forget_closed_tunnels();
    }

    /// Acts on the Endpoint's events; whether there were any.
    fn take_l2tp_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some((tid, ev)) = self.endpoint.poll_event() {
            any = true;
            self.on_l2tp_event(now, tid, ev);
        }
        any
    }

    /// Sends what the Endpoint has to send and acts on its events, until
    /// neither is left (acting on an event may queue a message).
    fn take_transmits(&mut self) {
        let Some(now) = self.transmit_due.take() else { return };
        loop {
            let mut idle = !self.take_l2tp_events(now);
            while let Some(t) = self.endpoint.poll_transmit(now) {
                idle = false;
                let from = self.peer_local.get(&t.destination).copied();
                self.effects.push_back(Effect::Send(Datagram {
                    to: t.destination,
                    from,
                    source_port: t.source_port,
                    payload: t.payload,
                    ns: None,
                }));
            }
            if idle {
                break;
            }
        }
        self.forget_closed_tunnels();
    }

    fn forget_closed_tunnels(&mut self) {
        if self.tunnels.len() != self.endpoint.tunnel_count() {
            // The Endpoint forgets a tunnel once its StopCCN exchange is
            // over; so do we.
            let endpoint = &self.endpoint;
            self.tunnels.retain(|id, _| endpoint.tunnel(*id).is_some());
            let peers: BTreeSet<SocketAddr> = self.tunnels.values().map(|t| t.peer).collect();
            self.peer_local.retain(|p, _| peers.contains(p));
        }
    }

    /// A fresh RNG for a new PPP link, from the core's.
    fn link_rng(&mut self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.rng.gen())
    }

    /// The data-plane entry of `key` as the core's state has it.
    fn entry_of(
        &self,
        key: SessionKey,
        peer_tunnel: TunnelId,
        peer_session: SessionId,
        link: Link,
    ) -> Option<abi::Session> {
        let t = self.tunnels.get(&key.tunnel)?;
        let mut entry = abi::Session {
            state: abi::SessionState::Control as u32,
            local_tunnel_id: key.tunnel.0,
            local_session_id: key.session.0,
            peer_tunnel_id: peer_tunnel.0,
            peer_session_id: peer_session.0,
            mtu: link.mtu,
            access_ifindex: t.ifindex,
            ..Default::default()
        };
        for (on, bit) in [
            (link.sequencing, abi::Session::SEQUENCING),
            (link.acfc, abi::Session::ACFC),
            (link.pfc, abi::Session::PFC),
        ] {
            if on {
                entry.flags |= bit;
            }
        }
        entry.flags |= self.slow_path_flag(t.peer.ip());
        entry.set_peer(t.peer);
        // The tunnel's own port when it has one: downstream leaves from
        // where the LAC sends (RFC 2661 §8.1).
        let port = self.endpoint.local_port(key.tunnel).unwrap_or(self.cfg.listen.port());
        entry.set_local(SocketAddr::new(t.local, port));
        Some(entry)
    }

    /// Writes a connected session's entry as its state now says.
    fn write_entry(&mut self, key: SessionKey, op: MapOp) -> bool {
        let Some(s) = self.sessions.get(&key) else { return false };
        let Some(mut entry) = self.entry_of(key, s.peer_tunnel_id, s.peer_session_id, s.link) else {
            return false;
        };
        if s.ipv4_forwarding {
            if let Some(a) = s.ipv4 {
                entry.ipv4 = a.octets();
            }
        }
        if let Some((p, len)) = s.ipv6.prefix {
            entry.ipv6_prefix = p.octets();
            entry.ipv6_prefix_len = len;
            if let Some((d, dlen)) = s.ipv6.delegated {
                entry.delegated_prefix = d.octets();
                entry.delegated_prefix_len = dlen;
            }
        }
        // Forwarding while either address family is up: IPCP and IPv6CP
        // come and go independently, and neither takes the other's
        // traffic down.
        if entry.subscriber_ipv4().is_some() || entry.subscriber_ipv6_prefix().is_some() {
            entry.state = abi::SessionState::Forwarding as u32;
        }
        self.set_entry_rates(&mut entry, s);
        self.effects.push_back(Effect::WriteSession { key, entry, op });
        self.sync_routes(key);
        true
    }

    /// The LNS ends a session: through PPP for timeouts (LCP Terminate,
    /// then the CDN with PPP's cause), else with a CDN at once.
    fn end_session(&mut self, now: Instant, key: SessionKey, reason: EndReason) {
        if let Some(s) = self.sessions.get_mut(&key) {
            if let Some(a) = s.acct.as_mut() {
                a.cause(reason.acct_terminate_cause());
            }
            if reason.through_ppp() {
                if s.ending.is_some() {
                    return;
                }
                s.ending = Some(reason);
                s.ppp.close(now, Some(reason.ppp_cause()));
                self.notice(Notice::Ending { key, reason });
                self.drive_ppp(now, key);
                return;
            }
            s.ending.get_or_insert(reason);
        }
        self.notice(Notice::Ending { key, reason });
        // The L2TP layer reports the session down (SessionDown), which
        // removes it.
        let _ = self.endpoint.close_session(now, key.tunnel, key.session, reason.cdn_result());
    }

    /// SIGTERM / SIGINT: StopCCN to every tunnel (§5.7, result 6 "shutting
    /// down"), no new tunnels; returns how long to wait for the
    /// acknowledgements.
    pub fn shutdown(&mut self, now: Instant) -> Instant {
        self.draining = true;
        self.endpoint.set_accept_incoming(false);
        for s in self.sessions.values_mut() {
            if let Some(a) = s.acct.as_mut() {
                a.cause(EndReason::Shutdown.acct_terminate_cause());
            }
        }
        let ids: Vec<TunnelId> = self.endpoint.tunnel_ids().collect();
        for id in ids {
            let rc = crate::l2tp::ResultCode::new(crate::l2tp::avp::stopccn::SHUTTING_DOWN);
            let _ = self.endpoint.close_tunnel(now, id, rc);
        }
        self.pump(now);
        now + self.cfg.shutdown_grace
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Every StopCCN of ours was acknowledged. Tunnels the peer closed
    /// linger to re-acknowledge its retransmissions (§5.7), which a
    /// process on its way out need not wait for.
    pub fn stopped(&self) -> bool {
        use crate::l2tp::TunnelState;
        self.endpoint.tunnel_ids().all(|id| {
            self.endpoint.tunnel(id).is_none_or(|t| {
                matches!(t.state(), TunnelState::Closing | TunnelState::Closed) && t.reliable().all_acked()
            })
        })
    }

    /// The process stops: every session goes (Accounting Stop, entry
    /// removed, addresses released).
    pub fn finish(&mut self, now: Instant) {
        let keys: Vec<SessionKey> = self.sessions.keys().chain(self.calling.keys()).copied().collect();
        for key in keys {
            if let Some(a) = self.sessions.get_mut(&key).and_then(|s| s.acct.as_mut()) {
                a.cause(EndReason::Shutdown.acct_terminate_cause());
            }
            self.session_down(now, key, DownReason::Stopping);
        }
    }
}
