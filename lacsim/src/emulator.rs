//! The LAC and its subscribers, sans-IO: the project's L2TP endpoint in the
//! LAC role and one PPP client per session, driven with datagrams and time
//! like every protocol core here. The binary owns the socket and the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lns_controlplane::l2tp::{
    DatagramEvent, Endpoint, EndpointConfig, Event, PeerConfig, ResultCode, SessionId, SessionInfo, Transmit,
    TunnelConfig, TunnelDownReason, TunnelId,
};
use lns_controlplane::ppp::auth::{AuthMethod, Credentials};
use lns_controlplane::ppp::session::{
    Direction, DisconnectCause, DisconnectCode, NetworkConfig, Session as Ppp, SessionConfig, SessionEvent,
};
use lns_controlplane::ppp::{ChaCha8Rng, Ipv6cpConfig, SeedableRng};
use lns_wire::checksum;

/// Subscriber traffic: UDP from each session's address(es) to a target.
#[derive(Clone, Copy, Debug)]
pub struct Traffic {
    /// Packets per second per session and address family.
    pub pps: f64,
    /// IP packet size in bytes (at least 28; 48 for IPv6).
    pub size: usize,
    pub target: SocketAddrV4,
    /// Where IPv6 subscribers send.
    pub target_v6: SocketAddrV6,
}

/// The network protocols a subscriber runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ncp {
    /// IPCP: an address from the LNS.
    #[default]
    Ipv4,
    /// IPv6CP, then a Router Solicitation; the address is formed from the
    /// advertised prefix.
    Ipv6,
    /// Both.
    Dual,
}

impl Ncp {
    pub fn ipv4(self) -> bool {
        matches!(self, Ncp::Ipv4 | Ncp::Dual)
    }
    pub fn ipv6(self) -> bool {
        matches!(self, Ncp::Ipv6 | Ncp::Dual)
    }
}

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub server: SocketAddr,
    pub tunnels: u32,
    pub sessions_per_tunnel: u32,
    /// New sessions per second, over all tunnels.
    pub rate: f64,
    pub auth: AuthMethod,
    /// User name pattern: `%d` is replaced by the session's number (so is
    /// it in the password).
    pub user: String,
    pub password: String,
    /// Tunnel secret: tunnel authentication (RFC 2661 §5.1.1).
    pub secret: Option<Vec<u8>>,
    /// Hide the AVPs that may be hidden (needs a secret).
    pub hidden_avps: bool,
    /// Send proxy LCP and proxy authentication AVPs in ICCN, as a LAC that
    /// negotiated LCP and collected PAP credentials itself.
    pub proxy_auth: bool,
    pub traffic: Option<Traffic>,
    /// Our host name in SCCRQ.
    pub host_name: String,
    pub ncp: Ncp,
    /// Redial, as a CPE does, a call that ended before it was up (its PPP
    /// gave up, the LNS sent CDN or Terminate-Request, the call could not
    /// be placed) after this hold-off, and a tunnel that went down with
    /// calls in it; None: such calls count as failed. The run's deadline
    /// is the caller's (it tears down).
    pub redial_holdoff: Option<Duration>,
    /// Subscribers 1..=host_links are hosts of the machine running us
    /// (`--tun`): the IP they receive comes out of
    /// [`Emulator::poll_host_packet`] instead of being counted, what
    /// [`Emulator::send_from_host`] is given goes up their session, and
    /// their addresses are reported by [`Emulator::poll_host_event`].
    pub host_links: u32,
    /// Time between each subscriber's LCP Echo-Requests once its link is
    /// up (RFC 1661 §5.8); None: the subscribers send none (they still
    /// answer the LNS's).
    pub echo_interval: Option<Duration>,
    /// Calls in progress (placed, not yet up or given up) at most: the
    /// next call waits for one to settle, whatever `rate` says. None: no
    /// limit. A load generator's "max outstanding sessions": offered more
    /// than the LNS answers, calls pile up until their PPP restart timers
    /// fire and every retransmission adds to the pile.
    pub max_outstanding: Option<u32>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            server: SocketAddr::from(([192, 0, 2, 1], 1701)),
            tunnels: 1,
            sessions_per_tunnel: 1,
            rate: 1000.0,
            auth: AuthMethod::ChapMd5,
            user: "user%d".into(),
            password: "secret".into(),
            secret: None,
            hidden_avps: false,
            proxy_auth: false,
            traffic: None,
            host_name: "lns-lacsim".into(),
            ncp: Ncp::Ipv4,
            redial_holdoff: None,
            host_links: 0,
            echo_interval: lns_controlplane::ppp::session::EchoConfig::default().interval,
            max_outstanding: None,
        }
    }
}

/// What a host subscriber (see [`EmulatorConfig::host_links`]) learned or
/// lost, for the device that stands for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// IPCP opened with this address (and the LNS's, and name servers).
    Ipv4Up { number: u32, local: Ipv4Addr, peer: Ipv4Addr, dns: Vec<Ipv4Addr> },
    /// IPv6CP opened: the link-local addresses from the interface
    /// identifiers (RFC 5072 §5).
    Ipv6LinkUp { number: u32, local: Ipv6Addr, peer: Ipv6Addr },
    /// A Router Advertisement's prefix gave this address (SLAAC).
    Ipv6AddressUp { number: u32, address: Ipv6Addr, prefix_len: u8 },
    /// IPCP (`ipv6` false) or IPv6CP left Opened: its addresses are gone.
    NetworkDown { number: u32, ipv6: bool },
    /// The session ended.
    Down { number: u32 },
}

/// The link-local address of an IPv6CP interface identifier.
pub fn link_local(interface_identifier: [u8; 8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8..].copy_from_slice(&interface_identifier);
    Ipv6Addr::from(a)
}

/// Where a subscriber is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// ICRQ sent, waiting for the tunnel's ICRP/ICCN exchange.
    Calling,
    /// L2TP session up, PPP negotiating.
    Ppp,
    /// Every address usable: IPCP up for IPv4, a Router Advertisement
    /// received for IPv6.
    Up,
    /// Failed or torn down.
    Down,
}

struct Subscriber {
    number: u32,
    phase: Phase,
    ppp: Option<Ppp>,
    called_at: Instant,
    /// When the call connected (PPP began), and when the first network
    /// protocol opened: where a slow set-up spent its time.
    connected_at: Option<Instant>,
    network_at: Option<Instant>,
    address: Option<Ipv4Addr>,
    address_v6: Option<Ipv6Addr>,
    next_packet: Option<Instant>,
    sent: u64,
    received: u64,
    sent_v6: u64,
    received_v6: u64,
    seq: u16,
    /// The PPP deadline and send time as filed in the timer indexes.
    ppp_timer: Option<Instant>,
    traffic_timer: Option<Instant>,
}

impl Subscriber {
    /// Sent in some family and never answered in it.
    fn unanswered(&self) -> bool {
        (self.sent > 0 && self.received == 0) || (self.sent_v6 > 0 && self.received_v6 == 0)
    }
}

/// What happened so far.
/// Where one of the slowest set-ups spent its time: from the call to its
/// connection (L2TP), to the first network protocol (LCP, authentication,
/// the NCPs), to an address of every family it runs (IPCP, a Router
/// Advertisement).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SlowSetup {
    pub number: u32,
    pub tunnel: u16,
    pub session: u16,
    pub total_ms: f64,
    pub call_ms: f64,
    pub ppp_ms: f64,
    pub address_ms: f64,
}

/// How many of the slowest set-ups the summary names.
const SLOWEST: usize = 5;

/// Keeps the [`SLOWEST`] slowest set-ups, slowest first.
fn note_slow(slowest: &mut Vec<SlowSetup>, s: SlowSetup) {
    if slowest.len() == SLOWEST && slowest.last().is_some_and(|l| l.total_ms >= s.total_ms) {
        return;
    }
    let at = slowest.partition_point(|o| o.total_ms >= s.total_ms);
    slowest.insert(at, s);
    slowest.truncate(SLOWEST);
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub tunnels_up: u32,
    pub tunnels_failed: u32,
    pub sessions_up: u32,
    pub sessions_failed: u32,
    pub sessions_pending: u32,
    /// Sessions that were up and that the LNS ended (CDN, StopCCN, LCP
    /// Terminate) before we hung up.
    pub sessions_ended_by_lns: u32,
    /// Calls that ended before they were up because our PPP gave up (each
    /// attempt counts: with redialling a subscriber may give up and come up).
    pub calls_given_up: u32,
    /// Calls that the LNS ended before they were up (CDN, StopCCN, LCP
    /// Terminate-Request).
    pub calls_ended_by_lns: u32,
    /// Why calls ended before they were up: the PPP cause's message, ours
    /// ("lacsim: ...") or the one in the LNS's CDN ("lns: ...").
    pub calls_lost_causes: BTreeMap<String, u32>,
    /// Calls placed again after one ended before it was up (`redial_holdoff`).
    pub redials: u32,
    /// Tunnels opened again after one went down with calls in it.
    pub tunnel_redials: u32,
    /// Times the subscribers' PPP started a timed-out link again within
    /// its call (the PPP hold-off, pppd's `persist`).
    pub ppp_restarts: u32,
    /// Sessions up per second, from the first ICRQ to the last IPCP up.
    pub setup_rate: f64,
    pub setup_latency_ms_p50: f64,
    pub setup_latency_ms_p99: f64,
    pub setup_latency_ms_max: f64,
    /// The slowest set-ups, slowest first, and where their time went.
    pub slowest_setups: Vec<SlowSetup>,
    pub data_sent: u64,
    pub data_received: u64,
    pub data_lost: u64,
    /// Sessions that formed an IPv6 address from a Router Advertisement.
    pub ipv6_sessions_up: u32,
    /// Of `data_sent` / `data_received`, IPv6.
    pub data_sent_v6: u64,
    pub data_received_v6: u64,
    /// Sessions that sent traffic and had at least one reply in every
    /// address family they sent in.
    pub sessions_answered: u32,
    /// Numbers of sessions that sent and had no reply in some family (the
    /// first 20).
    pub sessions_unanswered: Vec<u32>,
    /// Name servers the LNS handed out in IPCP (RFC 1877), over all
    /// subscribers.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Seconds from the first call until every [`UP_MARK`]th session was
    /// up (100,000, 200,000, ...): the set-up rate along a large round.
    pub up_marks: Vec<f64>,
}

/// Sessions between two of [`Summary::up_marks`].
pub const UP_MARK: u64 = 100_000;

pub struct Emulator {
    cfg: EmulatorConfig,
    ep: Endpoint,
    /// Boxed, and sized for every subscriber at the start: a table of a
    /// million inline records that doubled moved a gigabyte, and lacsim
    /// stopped answering for seconds at 92 % of a million (RFC 2661
    /// retransmissions of the LNS backed off meanwhile).
    subs: HashMap<(TunnelId, SessionId), Box<Subscriber>>,
    /// Sessions to call, per tunnel, once the tunnel is up.
    waiting: HashMap<TunnelId, Vec<u32>>,
    to_call: VecDeque<(TunnelId, u32)>,
    next_call: Option<Instant>,
    out: VecDeque<Transmit>,
    latency_us: Histogram<u64>,
    slowest: Vec<SlowSetup>,
    first_call: Option<Instant>,
    last_up: Option<Instant>,
    up_marks: Vec<f64>,
    tunnels_up: u32,
    tunnels_failed: u32,
    failed: u32,
    ended_by_lns: u32,
    calls_given_up: u32,
    calls_ended_by_lns: u32,
    calls_lost_causes: BTreeMap<String, u32>,
    redials: u32,
    tunnel_redials: u32,
    /// PPP restarts of the links dropped so far (the rest are counted in
    /// the summary).
    ppp_restarts: u32,
    /// Calls to place again, in due order (one hold-off for all).
    redial: VecDeque<(Instant, TunnelId, u32)>,
    /// Subscribers of tunnels that went down, to call in a new tunnel.
    retunnel: VecDeque<(Instant, Vec<u32>)>,
    /// When each subscriber first called: set-up latency counts from
    /// there, redials included, as the subscriber sees it.
    first_called: HashMap<u32, Instant>,
    hanging_up: bool,
    /// Subscribers whose PPP was fed since the last pump: only they can
    /// have frames or events, so a pump need not visit every session (with
    /// thousands of sessions and their traffic, that visit per datagram
    /// was the emulator's whole cost).
    dirty: Vec<(TunnelId, SessionId)>,
    /// PPP deadlines and traffic send times, earliest first, so that
    /// neither a wait nor a timer visits every session.
    ppp_timers: BTreeSet<(Instant, TunnelId, SessionId)>,
    traffic_timers: BTreeSet<(Instant, TunnelId, SessionId)>,
    /// Subscribers calling or negotiating (neither up nor down).
    unsettled: u32,
    /// Name servers the LNS handed out in IPCP, over all subscribers.
    dns_learned: std::collections::BTreeSet<Ipv4Addr>,
    /// Seeds each subscriber's PPP generator (`--seed` makes runs
    /// reproducible, as it does for the L2TP ids).
    ppp_rng: ChaCha8Rng,
    /// Host subscribers' sessions by number, and what they have for the host.
    host_keys: HashMap<u32, (TunnelId, SessionId)>,
    host_packets: VecDeque<(u32, Vec<u8>)>,
    host_events: VecDeque<HostEvent>,
    /// Host packets that could not go up (no session, no NCP for them).
    host_dropped: u64,
    /// Data packets sent and received over every subscriber, for
    /// [`Emulator::progress`] (the summary adds them up per subscriber).
    data_sent: u64,
    data_received: u64,
}

/// What a progress line shows, counted as things happen: a look once a
/// second that summed a million subscribers cost lacsim the time of
/// thousands of set-ups.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Progress {
    pub tunnels_up: u32,
    pub sessions_up: u32,
    pub sessions_failed: u32,
    pub sessions_pending: u32,
    pub redials: u32,
    pub data_sent: u64,
    pub data_received: u64,
}

/// Moves a subscriber to `to`, keeping the count of unsettled ones.
fn set_phase(unsettled: &mut u32, phase: &mut Phase, to: Phase) {
    let busy = |p: Phase| matches!(p, Phase::Calling | Phase::Ppp);
    match (busy(*phase), busy(to)) {
        (true, false) => *unsettled = unsettled.saturating_sub(1),
        (false, true) => *unsettled += 1,
        _ => {}
    }
    *phase = to;
}

/// Why a call that was not up ended.
enum Lost {
    /// Our side gave up (the subscriber's PPP, or the call).
    Ours(String),
    /// The LNS ended it.
    Lns(String),
}

impl Lost {
    /// The subscriber's PPP finished: the LNS ended it if it sent
    /// Terminate-Request, else our PPP gave up (timeouts, refusals).
    fn of_ppp(cause: &DisconnectCause) -> Lost {
        if cause.code == DisconnectCode::NORMAL && cause.direction == Direction::Peer {
            Lost::Lns(cause.message.clone())
        } else {
            Lost::Ours(cause.message.clone())
        }
    }
}

fn ppp_protocol(frame: &[u8]) -> Option<(u16, usize)> {
    let (mut i, b) = match frame {
        [0xff, 0x03, rest @ ..] => (2, rest),
        rest => (0, rest),
    };
    match b {
        [p, ..] if p & 1 == 1 => Some((*p as u16, i + 1)),
        [a, b, ..] => {
            i += 2;
            Some((u16::from_be_bytes([*a, *b]), i))
        }
        _ => None,
    }
}

/// IPv4/UDP with valid checksums.
pub fn udp_packet(src: Ipv4Addr, dst: SocketAddrV4, sport: u16, size: usize) -> Vec<u8> {
    let size = size.max(28);
    let mut v = vec![0u8; size];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    v[6] = 0x40;
    v[8] = 64;
    v[9] = 17;
    v[12..16].copy_from_slice(&src.octets());
    v[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum::of(&v[..20]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dst.port().to_be_bytes());
    v[24..26].copy_from_slice(&((size - 20) as u16).to_be_bytes());
    for (i, b) in v[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum::udp_field(checksum::ipv4_upper_layer(src.octets(), dst.ip().octets(), 17, &v[20..]));
    v[26..28].copy_from_slice(&c.to_be_bytes());
    v
}

/// IPv6/UDP with a valid checksum.
pub fn udp6_packet(src: Ipv6Addr, dst: SocketAddrV6, sport: u16, size: usize) -> Vec<u8> {
    let size = size.max(48);
    let plen = size - 40;
    let mut v = vec![0u8; size];
    v[0] = 0x60;
    v[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    v[6] = 17;
    v[7] = 64;
    v[8..24].copy_from_slice(&src.octets());
    v[24..40].copy_from_slice(&dst.ip().octets());
    v[40..42].copy_from_slice(&sport.to_be_bytes());
    v[42..44].copy_from_slice(&dst.port().to_be_bytes());
    v[44..46].copy_from_slice(&(plen as u16).to_be_bytes());
    for (i, b) in v[48..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum::udp_field(checksum::ipv6_upper_layer(src.octets(), dst.ip().octets(), 17, &v[40..]));
    v[46..48].copy_from_slice(&c.to_be_bytes());
    v
}

impl Emulator {
    pub fn new(cfg: EmulatorConfig, seed: Option<u64>) -> Emulator {
        let tunnel = TunnelConfig {
            role: lns_controlplane::l2tp::Role::Lac,
            host_name: cfg.host_name.clone().into_bytes(),
            secret: cfg.secret.clone(),
            hide_avps: cfg.hidden_avps && cfg.secret.is_some(),
            // Redialled calls overlap the ones they replace while those
            // close.
            max_sessions: cfg.sessions_per_tunnel as usize * if cfg.redial_holdoff.is_some() { 2 } else { 1 }
                + 16,
            ..TunnelConfig::default()
        };
        let mut peer = PeerConfig::host(cfg.server.ip());
        peer.secret = cfg.secret.clone();
        let ep = Endpoint::new(EndpointConfig {
            tunnel,
            peers: vec![peer],
            allow_unlisted_peers: false,
            accept_incoming: false,
            max_tunnels: cfg.tunnels as usize + 16,
            max_half_open: cfg.tunnels as usize + 16,
            seed,
            ..EndpointConfig::default()
        });
        // More subscribers than this are possible; they grow the tables.
        let expected = (cfg.tunnels as usize).saturating_mul(cfg.sessions_per_tunnel as usize).min(1 << 22);
        Emulator {
            cfg,
            ep,
            subs: HashMap::with_capacity(expected),
            waiting: HashMap::new(),
            to_call: VecDeque::new(),
            next_call: None,
            out: VecDeque::new(),
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds"),
            slowest: Vec::new(),
            first_call: None,
            last_up: None,
            up_marks: Vec::new(),
            tunnels_up: 0,
            tunnels_failed: 0,
            failed: 0,
            ended_by_lns: 0,
            calls_given_up: 0,
            calls_ended_by_lns: 0,
            calls_lost_causes: BTreeMap::new(),
            redials: 0,
            tunnel_redials: 0,
            ppp_restarts: 0,
            redial: VecDeque::new(),
            retunnel: VecDeque::new(),
            first_called: HashMap::with_capacity(expected),
            hanging_up: false,
            dirty: Vec::new(),
            ppp_timers: BTreeSet::new(),
            traffic_timers: BTreeSet::new(),
            unsettled: 0,
            dns_learned: std::collections::BTreeSet::new(),
            ppp_rng: match seed {
                Some(seed) => ChaCha8Rng::seed_from_u64(seed),
                None => ChaCha8Rng::from_entropy(),
            },
            host_keys: HashMap::new(),
            host_packets: VecDeque::new(),
            host_events: VecDeque::new(),
            host_dropped: 0,
            data_sent: 0,
            data_received: 0,
        }
    }

    fn is_host(&self, number: u32) -> bool {
        number <= self.cfg.host_links
    }

    /// The next IP packet a host subscriber received, with its number.
    pub fn poll_host_packet(&mut self) -> Option<(u32, Vec<u8>)> {
        self.host_packets.pop_front()
    }

    /// The next change of a host subscriber's addresses.
    pub fn poll_host_event(&mut self) -> Option<HostEvent> {
        self.host_events.pop_front()
    }

    /// Host packets dropped: their subscriber had no session, or not the
    /// network protocol of the packet open.
    pub fn host_dropped(&self) -> u64 {
        self.host_dropped
    }

    /// Sends an IP packet (version from its first nibble) from host
    /// subscriber `number` up its session; false if it could not go.
    pub fn send_from_host(&mut self, number: u32, packet: &[u8]) -> bool {
        let sent = self.try_send_from_host(number, packet);
        if !sent {
            self.host_dropped += 1;
        }
        sent
    }

    fn try_send_from_host(&mut self, number: u32, packet: &[u8]) -> bool {
        let Some(&(t, sid)) = self.host_keys.get(&number) else { return false };
        let Some(s) = self.subs.get(&(t, sid)) else { return false };
        let Some(ppp) = s.ppp.as_ref() else { return false };
        let protocol = match packet.first().map(|b| b >> 4) {
            Some(4) if ppp.ncp_opened(lns_controlplane::ppp::Protocol::IPCP) => 0x0021u16,
            Some(6) if ppp.ncp_opened(lns_controlplane::ppp::Protocol::IPV6CP) => 0x0057,
            _ => return false,
        };
        let mut frame = Vec::with_capacity(packet.len() + 4);
        frame.extend_from_slice(&[0xff, 0x03]);
        frame.extend_from_slice(&protocol.to_be_bytes());
        frame.extend_from_slice(packet);
        match self.ep.encapsulate(t, sid, &frame, None, false) {
            Some(tx) => {
                self.out.push_back(tx);
                true
            }
            None => false,
        }
    }

    /// Opens every tunnel; sessions follow as tunnels come up.
    pub fn start(&mut self, now: Instant) -> Result<(), lns_controlplane::l2tp::EndpointError> {
        let mut n = 0;
        for _ in 0..self.cfg.tunnels {
            let t = self.ep.connect(now, self.cfg.server)?;
            let numbers = (0..self.cfg.sessions_per_tunnel).map(|_| {
                n += 1;
                n
            });
            self.waiting.insert(t, numbers.collect());
        }
        self.pump(now);
        Ok(())
    }

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        match self.ep.handle_datagram(now, from, data) {
            DatagramEvent::Data { tunnel_id, session_id, payload, .. } => {
                let Some(frame) = data.get(payload) else { return };
                let Some(sub) = self.subs.get_mut(&(tunnel_id, session_id)) else { return };
                if sub.number <= self.cfg.host_links {
                    match ppp_protocol(frame) {
                        Some((0x0021, at)) => {
                            self.host_packets.push_back((sub.number, frame[at..].to_vec()));
                            return;
                        }
                        Some((0x0057, at)) => {
                            let packet = &frame[at..];
                            self.host_packets.push_back((sub.number, packet.to_vec()));
                            // A Router Advertisement (ICMPv6 type 134
                            // right after the fixed header) is also the
                            // PPP client's, which forms the address from
                            // it; the host sees it too (its M and O flags
                            // start a DHCPv6 client).
                            if !(packet.get(6) == Some(&58) && packet.get(40) == Some(&134)) {
                                return;
                            }
                        }
                        _ => {}
                    }
                    if let Some(ppp) = sub.ppp.as_mut() {
                        let _ = ppp.handle_frame(now, frame);
                        self.dirty.push((tunnel_id, session_id));
                    }
                    self.pump(now);
                    return;
                }
                match ppp_protocol(frame) {
                    Some((0x0021, _)) => {
                        sub.received += 1;
                        self.data_received += 1;
                    }
                    // IPv6 UDP is an echo; the rest (router advertisements)
                    // is PPP's business.
                    Some((0x0057, at)) if frame.get(at + 6) == Some(&17) => {
                        sub.received_v6 += 1;
                        self.data_received += 1;
                    }
                    _ => {
                        if let Some(ppp) = sub.ppp.as_mut() {
                            let _ = ppp.handle_frame(now, frame);
                            self.dirty.push((tunnel_id, session_id));
                        }
                    }
                }
            }
            DatagramEvent::Control(_) | DatagramEvent::Dropped(_) => {}
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        while let Some(&(t, tid, sid)) = self.ppp_timers.first() {
            if t > now {
                break;
            }
            self.ppp_timers.pop_first();
            if let Some(sub) = self.subs.get_mut(&(tid, sid)) {
                sub.ppp_timer = None;
                if let Some(ppp) = sub.ppp.as_mut() {
                    if ppp.poll_timeout().is_some_and(|t| t <= now) {
                        ppp.handle_timeout(now);
                    }
                }
                // Refiled by the pump, whether or not it fired.
                self.dirty.push((tid, sid));
            }
        }
        self.redial_due(now);
        self.call(now);
        self.send_traffic(now);
        self.pump(now);
    }

    /// Datagrams to send to the LNS. Control messages first: PPP starts
    /// when the call is connected, and its first frame must not overtake
    /// the ICCN that connects it.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.ep.poll_transmit(now) {
            return Some(t);
        }
        self.out.pop_front()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let mut next = self.ep.poll_timeout();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        if !self.to_call.is_empty() {
            consider(self.next_call);
        }
        consider(self.redial.front().map(|(t, _, _)| *t));
        consider(self.retunnel.front().map(|(t, _)| *t));
        consider(self.ppp_timers.first().map(|(t, _, _)| *t));
        consider(self.traffic_timers.first().map(|(t, _, _)| *t));
        next
    }

    /// Ends every tunnel with StopCCN (which ends their sessions).
    pub fn teardown(&mut self, now: Instant) {
        let ids: Vec<TunnelId> = self.ep.tunnel_ids().collect();
        for t in ids {
            let _ = self.ep.close_tunnel(now, t, ResultCode::new(1));
        }
        for sub in self.subs.values_mut() {
            sub.next_packet = None;
            sub.traffic_timer = None;
        }
        self.traffic_timers.clear();
        self.hanging_up = true;
        self.to_call.clear();
        // Calls still to be redialled were not up: they failed.
        self.failed +=
            self.redial.len() as u32 + self.retunnel.iter().map(|(_, n)| n.len() as u32).sum::<u32>();
        self.redial.clear();
        self.retunnel.clear();
        self.pump(now);
    }

    /// Every tunnel closed and acknowledged.
    pub fn finished(&self) -> bool {
        self.ep.tunnel_count() == 0
    }

    /// All sessions either up or failed, no call pending.
    pub fn settled(&self) -> bool {
        self.to_call.is_empty()
            && self.waiting.is_empty()
            && self.unsettled == 0
            && self.redial.is_empty()
            && self.retunnel.is_empty()
    }

    /// Subscribers with no call in progress yet: waiting for their tunnel,
    /// to call, to redial, or for a tunnel dialled again.
    fn not_called(&self) -> u32 {
        self.to_call.len() as u32
            + self.waiting.values().map(|v| v.len() as u32).sum::<u32>()
            + self.redial.len() as u32
            + self.retunnel.iter().map(|(_, n)| n.len() as u32).sum::<u32>()
    }

    pub fn progress(&self) -> Progress {
        Progress {
            tunnels_up: self.tunnels_up,
            sessions_up: self.latency_us.len() as u32,
            sessions_failed: self.failed,
            sessions_pending: self.not_called() + self.unsettled,
            redials: self.redials,
            data_sent: self.data_sent,
            data_received: self.data_received,
        }
    }

    pub fn summary(&self) -> Summary {
        // Sessions that reached IPCP, whether still up or since hung up.
        let up = self.latency_us.len() as u32;
        let pending = self.not_called()
            + self.subs.values().filter(|s| matches!(s.phase, Phase::Calling | Phase::Ppp)).count() as u32;
        let sent_v6: u64 = self.subs.values().map(|s| s.sent_v6).sum();
        let received_v6: u64 = self.subs.values().map(|s| s.received_v6).sum();
        let sent: u64 = self.subs.values().map(|s| s.sent).sum::<u64>() + sent_v6;
        let received: u64 = self.subs.values().map(|s| s.received).sum::<u64>() + received_v6;
        let mut unanswered: Vec<u32> =
            self.subs.values().filter(|s| s.unanswered()).map(|s| s.number).collect();
        unanswered.sort_unstable();
        let answered = self.subs.values().filter(|s| s.sent + s.sent_v6 > 0 && !s.unanswered()).count();
        let q = |p: f64| self.latency_us.value_at_quantile(p) as f64 / 1000.0;
        let setup_rate = match (self.first_call, self.last_up) {
            (Some(a), Some(b)) if b > a && !self.latency_us.is_empty() => {
                self.latency_us.len() as f64 / b.duration_since(a).as_secs_f64()
            }
            _ => 0.0,
        };
        Summary {
            tunnels_up: self.tunnels_up,
            tunnels_failed: self.tunnels_failed,
            sessions_up: up,
            sessions_failed: self.failed,
            sessions_pending: pending,
            sessions_ended_by_lns: self.ended_by_lns,
            calls_given_up: self.calls_given_up,
            calls_ended_by_lns: self.calls_ended_by_lns,
            calls_lost_causes: self.calls_lost_causes.clone(),
            redials: self.redials,
            tunnel_redials: self.tunnel_redials,
            ppp_restarts: self.ppp_restarts
                + self.subs.values().filter_map(|s| s.ppp.as_ref()).map(|p| p.restarts()).sum::<u32>(),
            setup_rate,
            setup_latency_ms_p50: q(0.5),
            setup_latency_ms_p99: q(0.99),
            setup_latency_ms_max: self.latency_us.max() as f64 / 1000.0,
            slowest_setups: self.slowest.clone(),
            data_sent: sent,
            data_received: received,
            data_lost: sent.saturating_sub(received),
            ipv6_sessions_up: self.subs.values().filter(|s| s.address_v6.is_some()).count() as u32,
            data_sent_v6: sent_v6,
            data_received_v6: received_v6,
            sessions_answered: answered as u32,
            sessions_unanswered: unanswered.into_iter().take(20).collect(),
            dns_servers: self.dns_learned.iter().copied().collect(),
            up_marks: self.up_marks.clone(),
        }
    }

    /// Established sessions: the subscriber's address, the LNS's UDP port
    /// of its tunnel (the one the SCCRP came from, RFC 2661 §8.1) and an
    /// L2TP data message body for one packet of theirs, for trafgen.
    pub fn data_messages(&self, traffic: Traffic) -> Vec<(Ipv4Addr, u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut keys: Vec<_> = self.subs.iter().filter(|(_, s)| s.phase == Phase::Up).collect();
        keys.sort_by_key(|(_, s)| s.number);
        for ((t, sid), s) in keys {
            let Some(addr) = s.address else { continue };
            let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
            ppp.extend_from_slice(&udp_packet(addr, traffic.target, 4000, traffic.size));
            if let Some(tx) = self.ep.encapsulate(*t, *sid, &ppp, None, false) {
                out.push((addr, tx.destination.port(), tx.payload));
            }
        }
        out
    }

    fn call(&mut self, now: Instant) {
        while let Some(&(t, number)) = self.to_call.front() {
            if self.next_call.is_some_and(|n| n > now) {
                return;
            }
            if self.cfg.max_outstanding.is_some_and(|m| self.unsettled >= m) {
                return;
            }
            self.to_call.pop_front();
            let interval = Duration::from_secs_f64(1.0 / self.cfg.rate.max(0.001));
            // Paced calls on a schedule, so the rate holds although timers
            // fire a millisecond late: calls that fell due meanwhile go out
            // together. After idling, at most SLACK's worth of calls burst.
            const SLACK: Duration = Duration::from_millis(10);
            let base = match self.next_call {
                Some(n) if n + SLACK > now => n,
                _ => now.checked_sub(SLACK).unwrap_or(now),
            };
            self.next_call = Some(base + interval);
            let info = self.call_info(number);
            match self.ep.open_session(now, t, info) {
                Ok(sid) => {
                    self.first_call.get_or_insert(now);
                    match self.first_called.entry(number) {
                        std::collections::hash_map::Entry::Occupied(_) => self.redials += 1,
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(now);
                        }
                    }
                    if self.is_host(number) {
                        self.host_keys.insert(number, (t, sid));
                    }
                    self.subs.insert(
                        (t, sid),
                        Box::new(Subscriber {
                            number,
                            phase: Phase::Calling,
                            ppp: None,
                            called_at: now,
                            connected_at: None,
                            network_at: None,
                            address: None,
                            address_v6: None,
                            next_packet: None,
                            sent: 0,
                            received: 0,
                            sent_v6: 0,
                            received_v6: 0,
                            seq: 0,
                            ppp_timer: None,
                            traffic_timer: None,
                        }),
                    );
                    self.unsettled += 1;
                }
                Err(_) => self.call_lost(now, t, number, Lost::Ours("the call could not be placed".into())),
            }
        }
    }

    fn user(&self, number: u32) -> String {
        self.cfg.user.replace("%d", &number.to_string())
    }

    fn password(&self, number: u32) -> String {
        self.cfg.password.replace("%d", &number.to_string())
    }

    fn call_info(&self, number: u32) -> SessionInfo {
        let mut info = SessionInfo {
            call_serial_number: number,
            bearer_type: Some(2),
            framing_type: Some(1),
            calling_number: Some(format!("lacsim-{number}").into_bytes()),
            called_number: Some(b"lns".to_vec()),
            tx_connect_speed: Some(100_000_000),
            ..SessionInfo::default()
        };
        if self.cfg.proxy_auth {
            // As a LAC that ran LCP and PAP with the subscriber itself: the
            // LCP exchange (MRU 1460, PAP) and the PAP credentials.
            let confreq = vec![0x01, 0x04, 0x05, 0xb4, 0x03, 0x04, 0xc0, 0x23];
            info.initial_received_lcp_confreq = Some(vec![0x01, 0x04, 0x05, 0xb4]);
            info.last_sent_lcp_confreq = Some(confreq);
            info.last_received_lcp_confreq = Some(vec![0x01, 0x04, 0x05, 0xb4]);
            info.proxy_authen_type = Some(3); // PAP (RFC 2661 §4.4.5)
            info.proxy_authen_name = Some(self.user(number).into_bytes());
            info.proxy_authen_response = Some(self.password(number).into_bytes());
        }
        info
    }

    fn ppp_config(&self, number: u32) -> SessionConfig {
        let mut c = SessionConfig::client(Credentials {
            username: self.user(number),
            password: self.password(number),
        });
        c.lcp.accept_auth = vec![self.cfg.auth];
        if !self.cfg.ncp.ipv4() {
            c.ipcp = None;
        }
        if self.cfg.ncp.ipv6() {
            c.ipv6cp = Some(Ipv6cpConfig::default());
        }
        c.echo.interval = self.cfg.echo_interval;
        c
    }

    /// Moves events along: L2TP events start PPP; PPP frames go into data
    /// messages; PPP events move subscribers between phases.
    fn pump(&mut self, now: Instant) {
        while let Some((t, ev)) = self.ep.poll_event() {
            match ev {
                Event::TunnelUp { .. } => {
                    self.tunnels_up += 1;
                    if let Some(numbers) = self.waiting.remove(&t) {
                        self.to_call.extend(numbers.into_iter().map(|n| (t, n)));
                    }
                }
                Event::TunnelDown { reason } => {
                    // Every subscriber of the tunnel that was not up: those
                    // waiting for it, to call, calling or negotiating, and
                    // those to redial in it.
                    let mut lost = Vec::new();
                    if let Some(n) = self.waiting.remove(&t) {
                        self.tunnels_failed += 1;
                        lost = n;
                    }
                    let (gone, kept): (VecDeque<_>, _) = self.to_call.drain(..).partition(|(tt, _)| *tt == t);
                    self.to_call = kept;
                    lost.extend(gone.into_iter().map(|(_, n)| n));
                    let (gone, kept): (VecDeque<_>, _) =
                        self.redial.drain(..).partition(|(_, tt, _)| *tt == t);
                    self.redial = kept;
                    lost.extend(gone.into_iter().map(|(_, _, n)| n));
                    for ((tt, sid), s) in self.subs.iter_mut() {
                        if *tt == t && s.phase != Phase::Down {
                            if s.phase != Phase::Up {
                                lost.push(s.number);
                            } else if !self.hanging_up {
                                self.ended_by_lns += 1;
                            }
                            set_phase(&mut self.unsettled, &mut s.phase, Phase::Down);
                            s.next_packet = None;
                            self.ppp_restarts += s.ppp.take().map_or(0, |p| p.restarts());
                            self.dirty.push((t, *sid));
                            if s.number <= self.cfg.host_links {
                                self.host_events.push_back(HostEvent::Down { number: s.number });
                            }
                        }
                    }
                    self.tunnel_lost(now, reason, lost);
                }
                Event::SessionUp { session_id, .. } => {
                    let cfg = self.subs.get(&(t, session_id)).map(|s| self.ppp_config(s.number));
                    if let (Some(s), Some(cfg)) = (self.subs.get_mut(&(t, session_id)), cfg) {
                        let rng = ChaCha8Rng::from_rng(&mut self.ppp_rng)
                            .unwrap_or_else(|_| ChaCha8Rng::from_entropy());
                        let mut ppp = Ppp::new(cfg, rng);
                        ppp.open(now);
                        s.ppp = Some(ppp);
                        s.connected_at = Some(now);
                        set_phase(&mut self.unsettled, &mut s.phase, Phase::Ppp);
                        self.dirty.push((t, session_id));
                    }
                }
                Event::SessionDown { session_id, cause } => {
                    if let Some(s) = self.subs.get_mut(&(t, session_id)) {
                        let mut lost = None;
                        if matches!(s.phase, Phase::Calling | Phase::Ppp) {
                            lost = Some(s.number);
                        } else if s.phase == Phase::Up && !self.hanging_up {
                            self.ended_by_lns += 1;
                        }
                        set_phase(&mut self.unsettled, &mut s.phase, Phase::Down);
                        s.next_packet = None;
                        self.ppp_restarts += s.ppp.take().map_or(0, |p| p.restarts());
                        self.dirty.push((t, session_id));
                        if s.number <= self.cfg.host_links {
                            self.host_events.push_back(HostEvent::Down { number: s.number });
                        }
                        if let Some(number) = lost {
                            let why = if cause.by_peer {
                                // The LNS's PPP cause (RFC 3145) says why.
                                let message = cause.ppp_cause.as_deref().and_then(|v| v.get(5..));
                                Lost::Lns(match message {
                                    Some(m) if !m.is_empty() => String::from_utf8_lossy(m).into_owned(),
                                    _ => format!("CDN, result {:?}", cause.result.as_ref().map(|r| r.result)),
                                })
                            } else {
                                Lost::Ours(format!(
                                    "call closed, result {:?}",
                                    cause.result.as_ref().map(|r| r.result)
                                ))
                            };
                            self.call_lost(now, t, number, why);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut closes = Vec::new();
        let mut lost = Vec::new();
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for (t, sid) in &dirty {
            let Some(s) = self.subs.get_mut(&(*t, *sid)) else { continue };
            let Some(ppp) = s.ppp.as_mut() else { continue };
            while let Some(frame) = ppp.poll_transmit() {
                let control = ppp_protocol(&frame).is_some_and(|(p, _)| p >= 0x4000);
                if let Some(tx) = self.ep.encapsulate(*t, *sid, &frame, None, control) {
                    self.out.push_back(tx);
                }
            }
            let host = s.number <= self.cfg.host_links;
            let number = s.number;
            while let Some(ev) = ppp.poll_event() {
                let mut host_event = None;
                match ev {
                    SessionEvent::NetworkUp(NetworkConfig::Ipv4 {
                        local,
                        peer,
                        primary_dns,
                        secondary_dns,
                    }) => {
                        s.network_at.get_or_insert(now);
                        s.address = Some(local);
                        self.dns_learned.extend(primary_dns.into_iter().chain(secondary_dns));
                        let dns = primary_dns.into_iter().chain(secondary_dns).collect();
                        host_event = Some(HostEvent::Ipv4Up { number, local, peer, dns });
                    }
                    SessionEvent::NetworkUp(NetworkConfig::Ipv6 {
                        local_interface_identifier,
                        peer_interface_identifier,
                    }) => {
                        s.network_at.get_or_insert(now);
                        host_event = Some(HostEvent::Ipv6LinkUp {
                            number,
                            local: link_local(local_interface_identifier),
                            peer: link_local(peer_interface_identifier),
                        });
                    }
                    SessionEvent::Ipv6AddressUp { address, prefix_len, .. } => {
                        s.address_v6 = Some(address);
                        host_event = Some(HostEvent::Ipv6AddressUp { number, address, prefix_len });
                    }
                    SessionEvent::NetworkDown(p) => {
                        let ipv6 = p == lns_controlplane::ppp::Protocol::IPV6CP;
                        if ipv6 {
                            s.address_v6 = None;
                        }
                        host_event = Some(HostEvent::NetworkDown { number, ipv6 });
                    }
                    SessionEvent::LinkDown { cause } => {
                        host_event = Some(HostEvent::Down { number });
                        if matches!(s.phase, Phase::Calling | Phase::Ppp) {
                            lost.push((*t, s.number, Lost::of_ppp(&cause)));
                        } else if s.phase == Phase::Up && !self.hanging_up {
                            self.ended_by_lns += 1;
                        }
                        set_phase(&mut self.unsettled, &mut s.phase, Phase::Down);
                        s.next_packet = None;
                        closes.push((*t, *sid));
                    }
                    _ => {}
                }
                if let Some(ev) = host_event.filter(|_| host) {
                    self.host_events.push_back(ev);
                }
                let ncp = self.cfg.ncp;
                // Up once every address it runs is usable.
                let usable = (!ncp.ipv4() || s.address.is_some()) && (!ncp.ipv6() || s.address_v6.is_some());
                if usable && s.phase == Phase::Ppp {
                    set_phase(&mut self.unsettled, &mut s.phase, Phase::Up);
                    let called = self.first_called.get(&s.number).copied().unwrap_or(s.called_at);
                    let _ = self.latency_us.record(now.duration_since(called).as_micros().max(1) as u64);
                    let ms = |a: Instant, b: Option<Instant>| {
                        b.map_or(0.0, |b| b.duration_since(a).as_secs_f64() * 1e3)
                    };
                    let slow = SlowSetup {
                        number: s.number,
                        tunnel: t.0,
                        session: sid.0,
                        total_ms: now.duration_since(called).as_secs_f64() * 1e3,
                        call_ms: ms(called, s.connected_at),
                        ppp_ms: s.connected_at.map_or(0.0, |c| ms(c, s.network_at)),
                        address_ms: s.network_at.map_or(0.0, |n| ms(n, Some(now))),
                    };
                    note_slow(&mut self.slowest, slow);
                    self.last_up = Some(now);
                    if self.latency_us.len().is_multiple_of(UP_MARK) {
                        let since = self.first_call.map_or(0.0, |c| now.duration_since(c).as_secs_f64());
                        self.up_marks.push(since);
                    }
                    if self.cfg.traffic.is_some_and(|tr| tr.pps > 0.0) {
                        s.next_packet = Some(now);
                    }
                }
            }
        }
        for (t, sid) in closes {
            let _ = self.ep.close_session(now, t, sid, ResultCode::new(2));
        }
        for (t, number, why) in lost {
            self.call_lost(now, t, number, why);
        }
        for key in dirty {
            self.refile(key);
        }
    }

    /// A call that was not up ended (or could not be placed): counted by
    /// who ended it, then redialled after the hold-off, or failed.
    fn call_lost(&mut self, now: Instant, t: TunnelId, number: u32, why: Lost) {
        if self.hanging_up {
            self.failed += 1;
            return;
        }
        let key = match why {
            Lost::Ours(m) => {
                self.calls_given_up += 1;
                format!("lacsim: {m}")
            }
            Lost::Lns(m) => {
                self.calls_ended_by_lns += 1;
                format!("lns: {m}")
            }
        };
        *self.calls_lost_causes.entry(key).or_default() += 1;
        match self.cfg.redial_holdoff {
            Some(holdoff) => self.redial.push_back((now + holdoff, t, number)),
            None => self.failed += 1,
        }
    }

    /// A tunnel went down with these subscribers not up in it: a new
    /// tunnel for them after the hold-off, or they failed.
    fn tunnel_lost(&mut self, now: Instant, reason: TunnelDownReason, numbers: Vec<u32>) {
        if self.hanging_up || numbers.is_empty() {
            self.failed += numbers.len() as u32;
            return;
        }
        let by = match reason {
            TunnelDownReason::PeerStopCcn(_) => "lns: StopCCN".to_string(),
            other => format!("lacsim: tunnel down ({other:?})"),
        };
        *self.calls_lost_causes.entry(by).or_default() += numbers.len() as u32;
        match self.cfg.redial_holdoff {
            Some(holdoff) => self.retunnel.push_back((now + holdoff, numbers)),
            None => self.failed += numbers.len() as u32,
        }
    }

    /// Calls and tunnels whose hold-off is over go out again.
    fn redial_due(&mut self, now: Instant) {
        while self.redial.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, t, number)) = self.redial.pop_front() {
                self.to_call.push_back((t, number));
            }
        }
        while self.retunnel.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, numbers)) = self.retunnel.pop_front() else { break };
            match self.ep.connect(now, self.cfg.server) {
                Ok(t) => {
                    self.tunnel_redials += 1;
                    self.waiting.insert(t, numbers);
                }
                Err(_) => self.failed += numbers.len() as u32,
            }
        }
    }

    /// Files a subscriber's PPP deadline and next packet time in the
    /// indexes, after anything that may have changed them.
    fn refile(&mut self, key: (TunnelId, SessionId)) {
        let Some(s) = self.subs.get_mut(&key) else { return };
        let ppp_next = s.ppp.as_mut().and_then(|p| p.poll_timeout());
        if ppp_next != s.ppp_timer {
            if let Some(old) = s.ppp_timer {
                self.ppp_timers.remove(&(old, key.0, key.1));
            }
            if let Some(new) = ppp_next {
                self.ppp_timers.insert((new, key.0, key.1));
            }
            s.ppp_timer = ppp_next;
        }
        if s.next_packet != s.traffic_timer {
            if let Some(old) = s.traffic_timer {
                self.traffic_timers.remove(&(old, key.0, key.1));
            }
            if let Some(new) = s.next_packet {
                self.traffic_timers.insert((new, key.0, key.1));
            }
            s.traffic_timer = s.next_packet;
        }
    }

    fn send_traffic(&mut self, now: Instant) {
        let Some(tr) = self.cfg.traffic else { return };
        let interval = Duration::from_secs_f64(1.0 / tr.pps.max(0.001));
        let mut sent = 0u64;
        while let Some(&(when, tid, sess)) = self.traffic_timers.first() {
            if when > now {
                break;
            }
            self.traffic_timers.pop_first();
            let (t, sid) = (&tid, &sess);
            let Some(s) = self.subs.get_mut(&(tid, sess)) else { continue };
            s.traffic_timer = None;
            let Some(mut due) = s.next_packet else { continue };
            // Catch up at most a few packets after a stall, not a burst.
            let mut budget = 8;
            let sport = 4000 + (s.number % 1000) as u16;
            while due <= now && budget > 0 {
                s.seq = s.seq.wrapping_add(1);
                if let Some(addr) = s.address {
                    let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
                    ppp.extend_from_slice(&udp_packet(addr, tr.target, sport, tr.size));
                    if let Some(tx) = self.ep.encapsulate(*t, *sid, &ppp, None, false) {
                        self.out.push_back(tx);
                        s.sent += 1;
                        sent += 1;
                    }
                }
                if let Some(addr) = s.address_v6 {
                    let mut ppp = vec![0xff, 0x03, 0x00, 0x57];
                    ppp.extend_from_slice(&udp6_packet(addr, tr.target_v6, sport, tr.size));
                    if let Some(tx) = self.ep.encapsulate(*t, *sid, &ppp, None, false) {
                        self.out.push_back(tx);
                        s.sent_v6 += 1;
                        sent += 1;
                    }
                }
                due += interval;
                budget -= 1;
            }
            if due <= now {
                due = now + interval;
            }
            s.next_packet = Some(due);
            self.refile((tid, sess));
        }
        self.data_sent += sent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_set_ups_are_kept_slowest_first() {
        let mut slowest = Vec::new();
        for (i, ms) in [30.0, 10.0, 50.0, 20.0, 60.0, 40.0, 5.0, 55.0].into_iter().enumerate() {
            note_slow(&mut slowest, SlowSetup { number: i as u32, total_ms: ms, ..Default::default() });
        }
        let kept: Vec<f64> = slowest.iter().map(|s| s.total_ms).collect();
        assert_eq!(kept, [60.0, 55.0, 50.0, 40.0, 30.0]);
    }

    #[test]
    fn udp6_packets_have_valid_lengths_and_checksums() {
        let src: Ipv6Addr = "2001:db8:100:7::1".parse().expect("src");
        let dst: SocketAddrV6 = "[2001:db8:c0::7]:7".parse().expect("dst");
        for size in [0, 48, 49, 100, 1500] {
            let p = udp6_packet(src, dst, 4001, size);
            assert_eq!(p.len(), size.max(48));
            assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len() - 40);
            assert_eq!((p[0] >> 4, p[6], p[7]), (6, 17, 64));
            // The checksum over the pseudo-header and the datagram sums to 0.
            let pseudo = checksum::add_word(checksum::add(0, &p[8..40]), 17 + (p.len() - 40) as u64);
            assert_eq!(checksum::fold(checksum::add(pseudo, &p[40..])), 0, "size {size}");
        }
    }

    /// Drives `e` on virtual time with nobody answering, until `done` or
    /// nothing is left to wait for; returns the time reached.
    fn run_unanswered(e: &mut Emulator, mut now: Instant, done: impl Fn(&Summary) -> bool) -> Instant {
        for _ in 0..10_000 {
            while e.poll_transmit(now).is_some() {}
            if done(&e.summary()) {
                break;
            }
            let Some(next) = e.poll_timeout() else { break };
            now = next.max(now);
            e.handle_timeout(now);
        }
        now
    }

    #[test]
    fn a_tunnel_that_never_comes_up_is_dialled_again_after_the_holdoff() {
        let cfg = EmulatorConfig {
            sessions_per_tunnel: 2,
            redial_holdoff: Some(Duration::from_secs(1)),
            ..EmulatorConfig::default()
        };
        let mut e = Emulator::new(cfg, Some(1));
        let t0 = Instant::now();
        e.start(t0).expect("start");
        let now = run_unanswered(&mut e, t0, |s| s.tunnel_redials == 1);
        let s = e.summary();
        // The SCCRQ went unacknowledged (RFC 2661 §5.8); the two subscribers
        // wait for the new tunnel instead of failing.
        assert_eq!((s.tunnel_redials, s.sessions_failed, s.sessions_pending), (1, 0, 2), "{s:?}");
        assert_eq!(s.calls_lost_causes.get("lacsim: tunnel down (RetransmitLimit)"), Some(&2), "{s:?}");
        assert!(!e.settled());
        // The deadline: what was still to come up failed.
        e.teardown(now);
        let now = run_unanswered(&mut e, now, |_| false);
        let s = e.summary();
        assert_eq!((s.sessions_failed, s.sessions_pending), (2, 0), "{s:?} at {:?}", now - t0);
    }

    #[test]
    fn without_a_holdoff_a_tunnel_that_never_comes_up_fails_its_subscribers() {
        let mut e =
            Emulator::new(EmulatorConfig { sessions_per_tunnel: 2, ..EmulatorConfig::default() }, Some(1));
        let t0 = Instant::now();
        e.start(t0).expect("start");
        run_unanswered(&mut e, t0, |s| s.sessions_failed > 0);
        let s = e.summary();
        assert_eq!(
            (s.tunnel_redials, s.tunnels_failed, s.sessions_failed, s.sessions_pending),
            (0, 1, 2, 0),
            "{s:?}"
        );
        assert!(e.settled());
    }

    /// With `max_outstanding`, a call waits while that many are in
    /// progress, and goes once one has settled.
    #[test]
    fn calls_wait_while_max_outstanding_are_in_progress() {
        let cfg = EmulatorConfig { max_outstanding: Some(2), ..EmulatorConfig::default() };
        let mut e = Emulator::new(cfg, Some(1));
        let now = Instant::now();
        e.to_call.push_back((TunnelId(7), 1));
        e.unsettled = 2;
        e.call(now);
        assert_eq!(e.to_call.len(), 1, "held while 2 calls are in progress");
        e.unsettled = 1;
        e.call(now);
        // Placed (in a tunnel that does not exist here, so lost at once).
        assert!(e.to_call.is_empty());
        assert_eq!(e.summary().sessions_failed, 1);
    }

    /// The subscribers' LCP echoes as configured, none when off.
    #[test]
    fn subscribers_echo_at_the_configured_interval() {
        let mut e = Emulator::new(EmulatorConfig::default(), Some(1));
        assert_eq!(e.ppp_config(1).echo.interval, Some(Duration::from_secs(10)));
        e.cfg.echo_interval = Some(Duration::from_secs(500));
        assert_eq!(e.ppp_config(1).echo.interval, Some(Duration::from_secs(500)));
        e.cfg.echo_interval = None;
        assert_eq!(e.ppp_config(1).echo.interval, None);
    }

    #[test]
    fn ipv6_subscribers_run_ipv6cp_only() {
        let mut e = Emulator::new(EmulatorConfig { ncp: Ncp::Ipv6, ..EmulatorConfig::default() }, Some(1));
        let c = e.ppp_config(1);
        assert!(c.ipcp.is_none() && c.ipv6cp.is_some());
        e.cfg.ncp = Ncp::Dual;
        let c = e.ppp_config(1);
        assert!(c.ipcp.is_some() && c.ipv6cp.is_some());
        e.cfg.ncp = Ncp::Ipv4;
        let c = e.ppp_config(1);
        assert!(c.ipcp.is_some() && c.ipv6cp.is_none());
    }
}
