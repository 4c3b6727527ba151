//! The RADIUS client, sans-IO (after quinn-proto): no sockets, no clock.
//! The owner calls [`Client::send`], feeds datagrams to
//! [`Client::handle_datagram`] and deadlines to [`Client::handle_timeout`],
//! sends what [`Client::poll_transmit`] gives, sleeps until
//! [`Client::poll_timeout`], and reads results from [`Client::poll_event`].
//! [`crate::driver`] does that with tokio.
//!
//! What it implements:
//! * servers for authentication and for accounting, tried in the
//!   configured order; a request moves to the next server when one does
//!   not answer (RFC 5080 §2.2.1 retransmission on each);
//! * dead-server detection: a server that answered nothing while a request
//!   was retransmitted to it is marked dead and skipped, and probed with
//!   Status-Server (RFC 5997 §4) until it answers again;
//! * identifiers per (source socket, server): 256 requests in flight on
//!   each (RFC 2865 §3), more sockets (source ports) when they run out;
//! * replies accepted only from the server's address and port, for an
//!   identifier in flight, with the right code, Response Authenticator and
//!   Message-Authenticator (verified whenever present; whether it must be
//!   present is each server's [`RequireMessageAuthenticator`], for
//!   Blast-RADIUS, CVE-2024-3596);
//! * every request signed with a Message-Authenticator placed first;
//!   User-Password hidden anew for each server's secret and each
//!   transmission's Request Authenticator; Acct-Delay-Time counting the
//!   time spent (RFC 2866 §5.2), with a new Identifier whenever it changes.
//!
//! When no server answers, the request completes with
//! [`Outcome::NoAnswer`], carrying the configured [`NoAnswerPolicy`] for
//! the caller to apply (reject, or check the local users file).

pub mod retransmit;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::access::{AccessRequest, Authorization};
use crate::accounting::AccountingRequest;
use crate::attribute::{AttributeRepr, AttributeType};
use crate::crypto;
use crate::error::{Error, Result};
use crate::hiding;
use crate::microsoft;
use crate::packet::{Code, Packet, Repr};
use crate::tunnel::TunnelPassword;

pub use retransmit::RetransmitConfig;

/// Index of a server in [`ClientConfig::servers`] (the list last given,
/// see [`Client::set_servers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub usize);

/// A source socket of the client. The driver binds one UDP socket (an
/// ephemeral source port) per id the first time a transmit names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u16);

/// A request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestHandle(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Authentication,
    Accounting,
}

/// Whether a server's replies must carry a Message-Authenticator
/// (RFC 3579 §3.2). Without one, an Access-Accept is protected by the
/// MD5 Response Authenticator alone, which Blast-RADIUS (CVE-2024-3596)
/// forges from an Access-Reject by a chosen-prefix collision: a
/// man in the middle turns any refusal into an acceptance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RequireMessageAuthenticator {
    /// Replies without one are accepted until the server sends one with
    /// it, then required. Learnt separately for replies to Access-Request,
    /// to Accounting-Request and to Status-Server, which servers sign
    /// differently (FreeRADIUS 3 signs what its post-auth section adds,
    /// never its Status-Server answers). Unsigned answers to
    /// Access-Request make an [`Event::UnsignedAccessReplies`], once.
    #[default]
    Auto,
    /// Always: replies without one are dropped (and counted).
    Always,
    /// Never required (verified when present).
    Never,
}

/// What a server's replies are held to now ([`ServerStatus`]): its
/// [`RequireMessageAuthenticator`], and for `Auto` whether the server has
/// signed a reply of its service yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageAuthenticatorPolicy {
    Always,
    Never,
    /// Auto, and nothing signed yet: unsigned replies are accepted.
    AutoUnsigned,
    /// Auto, and the server signed: required from now on.
    AutoSigned,
}

impl MessageAuthenticatorPolicy {
    /// As `lnsctl radius` shows it: the setting's value, and for auto
    /// what it learnt.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageAuthenticatorPolicy::Always => "true",
            MessageAuthenticatorPolicy::Never => "false",
            MessageAuthenticatorPolicy::AutoUnsigned => "auto:unsigned",
            MessageAuthenticatorPolicy::AutoSigned => "auto:signed",
        }
    }

    /// Are replies without a Message-Authenticator dropped?
    pub fn required(self) -> bool {
        matches!(self, MessageAuthenticatorPolicy::Always | MessageAuthenticatorPolicy::AutoSigned)
    }
}

impl fmt::Display for MessageAuthenticatorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub address: SocketAddr,
    pub secret: Vec<u8>,
    pub service: Service,
    /// Whether its replies must carry a Message-Authenticator.
    pub require_message_authenticator: RequireMessageAuthenticator,
}

impl ServerConfig {
    /// A server whose replies are held to [`RequireMessageAuthenticator::Auto`].
    pub fn new(address: SocketAddr, secret: impl Into<Vec<u8>>, service: Service) -> ServerConfig {
        ServerConfig {
            address,
            secret: secret.into(),
            service,
            require_message_authenticator: RequireMessageAuthenticator::Auto,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("address", &self.address)
            .field("service", &self.service)
            .field("require_message_authenticator", &self.require_message_authenticator)
            .finish_non_exhaustive()
    }
}

/// What the caller should do when no server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswerPolicy {
    Reject,
    /// Check the credentials against the local users file instead.
    FallbackLocal,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub servers: Vec<ServerConfig>,
    pub retransmit: RetransmitConfig,
    /// How often a dead server is probed with Status-Server.
    pub status_server_interval: Duration,
    /// Consecutive Status-Server answers that make a dead server alive
    /// (RFC 5997 §4 advises more than one before trusting it again).
    pub revive_after: u32,
    /// Source sockets at most; requests beyond 256 × this per server wait.
    pub max_sockets: u16,
    pub authentication_policy: NoAnswerPolicy,
    pub accounting_policy: NoAnswerPolicy,
}

impl ClientConfig {
    pub fn new(servers: Vec<ServerConfig>) -> ClientConfig {
        ClientConfig {
            servers,
            retransmit: RetransmitConfig::default(),
            status_server_interval: Duration::from_secs(10),
            revive_after: 2,
            max_sockets: 16,
            authentication_policy: NoAnswerPolicy::Reject,
            accounting_policy: NoAnswerPolicy::Reject,
        }
    }
}

/// A request as the caller builds it: code and attributes, with
/// User-Password in cleartext (hidden per transmission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub code: Code,
    pub attributes: Vec<AttributeRepr>,
}

impl Request {
    pub fn access(r: &AccessRequest) -> Result<Request> {
        Ok(Request { code: Code::AccessRequest, attributes: r.to_attributes()? })
    }

    pub fn accounting(r: &AccountingRequest) -> Result<Request> {
        Ok(Request { code: Code::AccountingRequest, attributes: r.to_attributes()? })
    }

    fn service(&self) -> Result<Service> {
        match self.code {
            Code::AccessRequest => Ok(Service::Authentication),
            Code::AccountingRequest => Ok(Service::Accounting),
            _ => Err(Error::Invalid("the client sends Access-Request and Accounting-Request")),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub socket: SocketId,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// A validated reply, with what is needed to decrypt its salted values.
#[derive(Clone)]
pub struct Reply {
    pub server: ServerId,
    pub packet: Repr,
    request_authenticator: [u8; 16],
    secret: Arc<[u8]>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("server", &self.server)
            .field("packet", &self.packet)
            .finish_non_exhaustive()
    }
}

impl Reply {
    pub fn code(&self) -> Code {
        self.packet.code
    }

    pub fn accepted(&self) -> bool {
        self.packet.code == Code::AccessAccept
    }

    pub fn authorization(&self) -> Result<Authorization> {
        Authorization::from_packet(&self.packet)
    }

    /// The rate limits the reply sets (WISPr, and the text attribute
    /// `text` if the operator names one; see [`crate::rate`]).
    pub fn rate_limits(
        &self,
        text: Option<crate::attribute::AttributeType>,
    ) -> Result<crate::rate::RateLimits> {
        crate::rate::RateLimits::from_packet(&self.packet, text)
    }

    /// MS-MPPE-Send-Key and MS-MPPE-Recv-Key, decrypted (RFC 2548 §2.4).
    pub fn mppe_keys(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let get = |t| self.packet.vendor_attribute(microsoft::VENDOR_ID, t);
        match (get(microsoft::ms::MPPE_SEND_KEY), get(microsoft::ms::MPPE_RECV_KEY)) {
            (Some(s), Some(r)) => Ok(Some((
                microsoft::mppe_key(&s.value, &self.secret, &self.request_authenticator)?,
                microsoft::mppe_key(&r.value, &self.secret, &self.request_authenticator)?,
            ))),
            _ => Ok(None),
        }
    }

    /// Every Tunnel-Password, decrypted (RFC 2868 §3.5).
    pub fn tunnel_passwords(&self) -> Result<Vec<TunnelPassword>> {
        self.packet
            .get_all(AttributeType::TUNNEL_PASSWORD)
            .map(|a| TunnelPassword::from_attribute(a, &self.secret, &self.request_authenticator))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Answered(Reply),
    /// No server of the service answered in time (or all are dead).
    NoAnswer {
        policy: NoAnswerPolicy,
        /// Why the last reply this request got, if any, was dropped: a
        /// server did answer, but not acceptably.
        dropped: Option<DropReason>,
    },
}

/// Why a reply that passed its Response Authenticator was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// None, and the server's policy requires one.
    MissingMessageAuthenticator,
    /// One that does not verify.
    BadMessageAuthenticator,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::MissingMessageAuthenticator => "no Message-Authenticator",
            DropReason::BadMessageAuthenticator => "Message-Authenticator does not verify",
        })
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    Completed {
        handle: RequestHandle,
        outcome: Outcome,
    },
    ServerDown(ServerId),
    ServerUp(ServerId),
    /// Once per server: under [`RequireMessageAuthenticator::Auto`], it
    /// answered an Access-Request without a Message-Authenticator and the
    /// answer was taken. The owner warns (Blast-RADIUS, CVE-2024-3596).
    UnsignedAccessReplies(ServerId),
    /// Under [`RequireMessageAuthenticator::Auto`], the server signed an
    /// answer to an Access-Request: its unsigned ones are dropped from now
    /// on.
    MessageAuthenticatorRequired(ServerId),
    /// A reply from a server was dropped (and counted in its
    /// [`ServerStats`]); the server is there, it is not marked dead for it.
    ReplyDropped {
        server: ServerId,
        reason: DropReason,
        /// Whether it answered a Status-Server probe.
        probe: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Alive,
    Dead,
}

/// Per-server counters, for operators (`lnsctl`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub requests: u64,
    pub retransmissions: u64,
    pub replies: u64,
    pub timeouts: u64,
    pub malformed: u64,
    pub unknown_identifier: u64,
    pub bad_code: u64,
    pub bad_authenticator: u64,
    /// Replies dropped because the server's policy requires a
    /// Message-Authenticator and they had none.
    pub missing_message_authenticator: u64,
    /// Replies dropped because their Message-Authenticator does not
    /// verify (their Response Authenticator did).
    pub bad_message_authenticator: u64,
    pub status_server_sent: u64,
    /// Round-trip time of the last reply to a request sent once (a reply
    /// after a retransmission cannot say which transmission it answers).
    pub last_rtt: Option<Duration>,
    /// Every such round trip, counted in fixed buckets.
    pub rtt: RttHistogram,
}

/// Upper bounds of the round-trip buckets of [`RttHistogram`] (the last
/// bucket, above 5 s, is unbounded): 1, 2, 5 per decade from 1 ms, which
/// tells a server on the same site (under 1 ms) from one across a country
/// (tens of ms) and one that is struggling (hundreds).
pub const RTT_BOUNDS: [Duration; 12] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Round trips counted per bucket, as a Prometheus histogram reports them
/// (from what the engine is given, no clock of its own): `counts[i]` is
/// the round trips in (`RTT_BOUNDS[i-1]`, `RTT_BOUNDS[i]`], the last one
/// those above every bound. Not cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttHistogram {
    pub counts: [u64; RTT_BOUNDS.len() + 1],
    pub sum: Duration,
}

impl RttHistogram {
    pub fn observe(&mut self, rtt: Duration) {
        let i = RTT_BOUNDS.iter().position(|b| rtt <= *b).unwrap_or(RTT_BOUNDS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum = self.sum.saturating_add(rtt);
    }

    /// Round trips counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub id: ServerId,
    pub address: SocketAddr,
    pub service: Service,
    pub state: ServerState,
    pub stats: ServerStats,
    /// What its replies (of its service) are held to now.
    pub message_authenticator: MessageAuthenticatorPolicy,
}

/// What a reply answers; [`RequireMessageAuthenticator::Auto`] learns
/// each separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Access,
    Accounting,
    StatusServer,
}

#[derive(Debug)]
struct Server {
    address: SocketAddr,
    secret: Arc<[u8]>,
    service: Service,
    require_message_authenticator: RequireMessageAuthenticator,
    /// Kinds of reply it has signed (Access, Accounting, StatusServer).
    signed: [bool; 3],
    /// [`Event::UnsignedAccessReplies`] was emitted.
    warned_unsigned: bool,
    state: ServerState,
    /// Its last reply whose Response Authenticator verified, taken or
    /// dropped for its Message-Authenticator: it is there.
    last_reply: Option<Instant>,
    stats: ServerStats,
    probe: Option<Probe>,
    next_probe: Option<Instant>,
    probe_answers: u32,
    /// No longer configured ([`Client::set_servers`]): kept only until the
    /// requests in flight to it end; it gets no new request nor probe.
    retired: bool,
}

#[derive(Debug)]
struct Probe {
    socket: SocketId,
    id: u8,
    authenticator: [u8; 16],
    /// The secret it was signed with (the server's may change meanwhile).
    secret: Arc<[u8]>,
    deadline: Instant,
}

#[derive(Debug)]
struct Attempt {
    server: usize,
    socket: SocketId,
    id: u8,
    authenticator: [u8; 16],
    /// The secret its packet was made with: its reply is checked with it,
    /// even if a reload changed the server's meanwhile.
    secret: Arc<[u8]>,
    payload: Vec<u8>,
    first_sent: Instant,
    retransmissions: u32,
    rt: Duration,
    next_at: Instant,
    delay: u32,
}

#[derive(Debug)]
struct Pending {
    request: Request,
    service: Service,
    started: Instant,
    tried: Vec<usize>,
    /// Why its last reply was dropped, if one was.
    dropped: Option<DropReason>,
    attempt: Option<Attempt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Request(RequestHandle),
    Probe,
}

/// The 256 identifiers of one (socket, server) pair.
#[derive(Debug)]
struct IdTable {
    slots: Vec<Option<Slot>>,
    /// Allocation continues after the last one, so an identifier is reused
    /// as late as possible (a late reply then finds nothing, RFC 5080
    /// §2.2.1 on identifier reuse).
    next: u8,
    used: usize,
}

impl IdTable {
    fn new() -> IdTable {
        IdTable { slots: vec![None; 256], next: 0, used: 0 }
    }

    fn allocate(&mut self, slot: Slot) -> Option<u8> {
        if self.used >= 256 {
            return None;
        }
        for _ in 0..256 {
            let id = self.next;
            self.next = self.next.wrapping_add(1);
            if let Some(s @ None) = self.slots.get_mut(usize::from(id)) {
                *s = Some(slot);
                self.used += 1;
                return Some(id);
            }
        }
        None
    }

    fn get(&self, id: u8) -> Option<Slot> {
        self.slots.get(usize::from(id)).copied().flatten()
    }

    fn free(&mut self, id: u8) {
        if let Some(s) = self.slots.get_mut(usize::from(id)) {
            if s.take().is_some() {
                self.used -= 1;
            }
        }
    }
}

/// The client engine.
pub struct Client {
    config: ClientConfig,
    servers: Vec<Server>,
    ids: HashMap<(SocketId, usize), IdTable>,
    sockets: u16,
    pending: HashMap<RequestHandle, Pending>,
    waiting: VecDeque<RequestHandle>,
    next_handle: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: StdRng,
}

impl Server {
    fn new(c: &ServerConfig) -> Server {
        Server {
            address: c.address,
            secret: Arc::from(c.secret.as_slice()),
            service: c.service,
            require_message_authenticator: c.require_message_authenticator,
            signed: [false; 3],
            warned_unsigned: false,
            state: ServerState::Alive,
            last_reply: None,
            stats: ServerStats::default(),
            probe: None,
            next_probe: None,
            probe_answers: 0,
            retired: false,
        }
    }

    fn policy(&self, kind: ReplyKind) -> MessageAuthenticatorPolicy {
        match self.require_message_authenticator {
            RequireMessageAuthenticator::Always => MessageAuthenticatorPolicy::Always,
            RequireMessageAuthenticator::Never => MessageAuthenticatorPolicy::Never,
            RequireMessageAuthenticator::Auto if self.signed[kind as usize] => {
                MessageAuthenticatorPolicy::AutoSigned
            }
            RequireMessageAuthenticator::Auto => MessageAuthenticatorPolicy::AutoUnsigned,
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers.len())
            .field("pending", &self.pending.len())
            .field("sockets", &self.sockets)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client whose Request Authenticators and salts come from the
    /// operating system's generator (RFC 2865 §3: "unpredictable").
    pub fn new(config: ClientConfig) -> Client {
        Client::with_rng(config, StdRng::from_entropy())
    }

    /// A client with a given generator (tests seed it to be repeatable).
    pub fn with_rng(config: ClientConfig, rng: StdRng) -> Client {
        let servers = config.servers.iter().map(Server::new).collect();
        Client {
            config,
            servers,
            ids: HashMap::new(),
            sockets: 0,
            pending: HashMap::new(),
            waiting: VecDeque::new(),
            next_handle: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng,
        }
    }

    /// Start a request. Errors only if it cannot be encoded (too long, a
    /// password over 128 octets, a code the client does not send).
    pub fn send(&mut self, now: Instant, request: Request) -> Result<RequestHandle> {
        let service = request.service()?;
        // Encode once with a throwaway secret so that every later encoding
        // (per server) is known to succeed.
        self.encode(&request, b"check", 0, now, now)?;
        let handle = RequestHandle(self.next_handle);
        self.next_handle += 1;
        self.pending.insert(
            handle,
            Pending { request, service, started: now, tried: Vec::new(), dropped: None, attempt: None },
        );
        self.start_attempt(now, handle);
        Ok(handle)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant [`Client::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let attempts = self.pending.values().filter_map(|p| p.attempt.as_ref().map(|a| a.next_at));
        let probes = self.servers.iter().filter_map(|s| match &s.probe {
            Some(p) => Some(p.deadline),
            None => s.next_probe,
        });
        attempts.chain(probes).min()
    }

    /// Requests in flight or waiting for an identifier.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Source sockets in use so far.
    pub fn sockets(&self) -> u16 {
        self.sockets
    }

    /// The configured servers' state and counters, in the configured
    /// order.
    pub fn servers(&self) -> Vec<ServerStatus> {
        (0..self.servers.len())
            .filter(|i| self.servers.get(*i).is_some_and(|s| !s.retired))
            .filter_map(|i| self.server(ServerId(i)))
            .collect()
    }

    /// Replace the server list (a reload of the configuration). A server
    /// kept (same address and service) keeps its state, counters and what
    /// it was learnt to sign, and takes the new secret and
    /// Message-Authenticator setting (a dead one whose secret changed is
    /// alive again: it was found dead under the old one); a new one starts
    /// alive. A removed one
    /// gets no new request and no probe; a request in flight to it goes on
    /// as before (its reply, checked with the secret it was sent with, is
    /// taken; without one it fails over to the servers of the new list
    /// it has not tried), and the server is forgotten at the next change
    /// once nothing is in flight to it. Server ids follow the new list.
    pub fn set_servers(&mut self, configs: Vec<ServerConfig>) {
        let mut old: Vec<Option<Server>> = std::mem::take(&mut self.servers).into_iter().map(Some).collect();
        // Old index → new index.
        let mut moved: Vec<Option<usize>> = vec![None; old.len()];
        let mut servers = Vec::with_capacity(configs.len());
        for c in &configs {
            let found = old
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.address == c.address && s.service == c.service));
            let kept = found.and_then(|i| {
                moved[i] = Some(servers.len());
                old.get_mut(i).and_then(Option::take)
            });
            servers.push(match kept {
                Some(mut s) => {
                    if *s.secret != *c.secret.as_slice() && s.state == ServerState::Dead {
                        // Found dead under the old secret (a server drops
                        // what it cannot verify): that says nothing of the
                        // new one, which it may well have been waiting for.
                        s.state = ServerState::Alive;
                        s.probe_answers = 0;
                        s.next_probe = None;
                        if let (Some(p), Some(i)) = (s.probe.take(), found) {
                            self.free_id(p.socket, i, p.id);
                        }
                    }
                    s.secret = Arc::from(c.secret.as_slice());
                    s.require_message_authenticator = c.require_message_authenticator;
                    if s.retired {
                        // Removed by an earlier change and back before
                        // its requests ended: alive, as a new one.
                        s.retired = false;
                        s.state = ServerState::Alive;
                        s.probe_answers = 0;
                    }
                    s
                }
                None => Server::new(c),
            });
        }
        for (i, s) in old.into_iter().enumerate() {
            let Some(mut s) = s else { continue };
            if let Some(p) = s.probe.take() {
                self.free_id(p.socket, i, p.id);
            }
            let busy = self.pending.values().any(|p| p.attempt.as_ref().is_some_and(|a| a.server == i));
            if busy {
                s.retired = true;
                s.next_probe = None;
                moved[i] = Some(servers.len());
                servers.push(s);
            }
        }
        self.servers = servers;
        let moved = |i: usize| moved.get(i).copied().flatten();
        self.ids = std::mem::take(&mut self.ids)
            .into_iter()
            .filter_map(|((socket, i), table)| Some(((socket, moved(i)?), table)))
            .collect();
        for p in self.pending.values_mut() {
            p.tried = p.tried.iter().filter_map(|i| moved(*i)).collect();
            if let Some(a) = p.attempt.as_mut() {
                // Busy servers were all kept or retired.
                a.server = moved(a.server).unwrap_or(usize::MAX);
            }
        }
        self.config.servers = configs;
    }

    /// Replace the whole configuration: the servers as
    /// [`Client::set_servers`] does, and the timers, probing and policies
    /// for what is sent from now on (a retransmission timer running keeps
    /// its deadline).
    pub fn reconfigure(&mut self, config: ClientConfig) {
        self.set_servers(config.servers.clone());
        self.config = config;
    }

    /// One server's state and counters.
    pub fn server(&self, id: ServerId) -> Option<ServerStatus> {
        let s = self.servers.get(id.0)?;
        Some(ServerStatus {
            id,
            address: s.address,
            service: s.service,
            state: s.state,
            stats: s.stats,
            message_authenticator: s.policy(match s.service {
                Service::Authentication => ReplyKind::Access,
                Service::Accounting => ReplyKind::Accounting,
            }),
        })
    }

    /// Abandon a request (e.g. the session went away); its identifier is
    /// released and no event will follow.
    pub fn cancel(&mut self, handle: RequestHandle) {
        if let Some(p) = self.pending.remove(&handle) {
            if let Some(a) = p.attempt {
                self.free_id(a.socket, a.server, a.id);
            }
        }
        self.waiting.retain(|h| *h != handle);
    }

    fn jitter(&mut self) -> f64 {
        self.rng.gen_range(-1.0..=1.0)
    }

    fn free_id(&mut self, socket: SocketId, server: usize, id: u8) {
        if let Some(t) = self.ids.get_mut(&(socket, server)) {
            t.free(id);
        }
    }

    /// An identifier on some socket towards `server`; opens another socket
    /// when every open one has 256 in flight.
    fn allocate_id(&mut self, server: usize, slot: Slot) -> Option<(SocketId, u8)> {
        for s in 0..self.sockets {
            let sid = SocketId(s);
            if let Some(id) = self.ids.entry((sid, server)).or_insert_with(IdTable::new).allocate(slot) {
                return Some((sid, id));
            }
        }
        if self.sockets < self.config.max_sockets {
            let sid = SocketId(self.sockets);
            self.sockets += 1;
            let id = self.ids.entry((sid, server)).or_insert_with(IdTable::new).allocate(slot)?;
            return Some((sid, id));
        }
        None
    }

    /// The packet for one transmission: a fresh Request Authenticator
    /// (Access-Request), User-Password hidden with it and the server's
    /// secret, Acct-Delay-Time brought up to date, Message-Authenticator
    /// first and signed. Returns the bytes, the authenticator the reply
    /// must be checked against, and the delay sent.
    fn encode(
        &mut self,
        request: &Request,
        secret: &[u8],
        id: u8,
        started: Instant,
        now: Instant,
    ) -> Result<(Vec<u8>, [u8; 16], u32)> {
        let mut repr = Repr::new(request.code, id);
        repr.attributes = request.attributes.clone();
        repr.ensure_message_authenticator();
        let mut delay = 0;
        if request.code == Code::AccessRequest {
            self.rng.fill_bytes(&mut repr.authenticator);
            let auth = repr.authenticator;
            for a in repr.attributes.iter_mut().filter(|a| a.typ() == AttributeType::USER_PASSWORD) {
                let hidden = hiding::hide_user_password(a.value(), secret, &auth)?;
                *a = AttributeRepr::new(AttributeType::USER_PASSWORD, hidden)?;
            }
        } else if request.code == Code::AccountingRequest {
            let base = request
                .attributes
                .iter()
                .find(|a| a.typ() == AttributeType::ACCT_DELAY_TIME)
                .and_then(|a| a.as_integer().ok())
                .unwrap_or(0);
            let waited = u32::try_from(now.saturating_duration_since(started).as_secs()).unwrap_or(u32::MAX);
            delay = base.saturating_add(waited);
            repr.set(AttributeRepr::integer(AttributeType::ACCT_DELAY_TIME, delay));
        }
        let bytes = repr.encode(secret, None)?;
        let auth = Packet::new_unchecked(&bytes[..]).authenticator();
        Ok((bytes, auth, delay))
    }

    fn complete(&mut self, now: Instant, handle: RequestHandle, outcome: Outcome) {
        if let Some(p) = self.pending.remove(&handle) {
            if let Some(a) = p.attempt {
                self.free_id(a.socket, a.server, a.id);
            }
            self.events.push_back(Event::Completed { handle, outcome });
            self.retry_waiting(now);
        }
    }

    fn policy(&self, service: Service) -> NoAnswerPolicy {
        match service {
            Service::Authentication => self.config.authentication_policy,
            Service::Accounting => self.config.accounting_policy,
        }
    }

    /// Send `handle` to the first live server of its service it has not
    /// tried yet, or complete it with NoAnswer.
    fn start_attempt(&mut self, now: Instant, handle: RequestHandle) {
        let Some(p) = self.pending.get(&handle) else { return };
        let service = p.service;
        let next = self
            .servers
            .iter()
            .enumerate()
            .find(|(i, s)| {
                s.service == service && s.state == ServerState::Alive && !s.retired && !p.tried.contains(i)
            })
            .map(|(i, _)| i);
        let Some(server) = next else {
            let (policy, dropped) = (self.policy(service), p.dropped);
            self.complete(now, handle, Outcome::NoAnswer { policy, dropped });
            return;
        };
        let Some((socket, id)) = self.allocate_id(server, Slot::Request(handle)) else {
            // Every identifier of every socket is taken: wait for one.
            if !self.waiting.contains(&handle) {
                self.waiting.push_back(handle);
            }
            return;
        };
        let secret = Arc::clone(&self.servers[server].secret);
        let (request, started) = match self.pending.get(&handle) {
            Some(p) => (p.request.clone(), p.started),
            None => return,
        };
        let Ok((payload, authenticator, delay)) = self.encode(&request, &secret, id, started, now) else {
            // Checked in send(); a failure here would be a bug, and the
            // request cannot go anywhere.
            self.free_id(socket, server, id);
            let policy = self.policy(service);
            self.complete(now, handle, Outcome::NoAnswer { policy, dropped: None });
            return;
        };
        let jitter = self.jitter();
        let rt = self.config.retransmit.first(jitter);
        let destination = self.servers[server].address;
        self.servers[server].stats.requests += 1;
        self.transmits.push_back(Transmit { socket, destination, payload: payload.clone() });
        if let Some(p) = self.pending.get_mut(&handle) {
            p.tried.push(server);
            p.attempt = Some(Attempt {
                server,
                socket,
                id,
                authenticator,
                secret,
                payload,
                first_sent: now,
                retransmissions: 0,
                rt,
                next_at: now + rt,
                delay,
            });
        }
    }

    /// Requests that found no free identifier get one as soon as one is
    /// released, oldest first.
    fn retry_waiting(&mut self, now: Instant) {
        while let Some(h) = self.waiting.pop_front() {
            if !self.pending.contains_key(&h) {
                continue;
            }
            self.start_attempt(now, h);
            if self.waiting.contains(&h) {
                // Still none free: it went back to the end; put it first.
                self.waiting.retain(|x| *x != h);
                self.waiting.push_front(h);
                break;
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<RequestHandle> = self
            .pending
            .iter()
            .filter(|(_, p)| p.attempt.as_ref().is_some_and(|a| a.next_at <= now))
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            self.attempt_timeout(now, h);
        }
        for i in 0..self.servers.len() {
            self.probe_timer(now, i);
        }
    }

    fn attempt_timeout(&mut self, now: Instant, handle: RequestHandle) {
        let cfg = self.config.retransmit;
        let jitter = self.jitter();
        let Some(p) = self.pending.get_mut(&handle) else { return };
        let Some(a) = p.attempt.as_mut() else { return };
        let server = a.server;
        let elapsed = now.saturating_duration_since(a.first_sent);
        if a.retransmissions < cfg.mrc && elapsed < cfg.mrd {
            a.retransmissions += 1;
            a.rt = cfg.next(a.rt, jitter);
            // Never past MRD (RFC 5080 §2.2.1 / RFC 3315 §14).
            a.next_at = (now + a.rt).min(a.first_sent + cfg.mrd);
            let started = p.started;
            let request = p.request.clone();
            let (socket, old_id, old_delay) = (a.socket, a.id, a.delay);
            self.servers[server].stats.retransmissions += 1;
            let destination = self.servers[server].address;
            if request.code == Code::AccountingRequest {
                let base = request
                    .attributes
                    .iter()
                    .find(|x| x.typ() == AttributeType::ACCT_DELAY_TIME)
                    .and_then(|x| x.as_integer().ok())
                    .unwrap_or(0);
                let waited =
                    u32::try_from(now.saturating_duration_since(started).as_secs()).unwrap_or(u32::MAX);
                if base.saturating_add(waited) != old_delay {
                    // RFC 2866 §5.2: a new Acct-Delay-Time makes a new
                    // packet, which needs a new Identifier.
                    if let Some((sid, id)) = self.allocate_id(server, Slot::Request(handle)) {
                        self.free_id(socket, server, old_id);
                        let secret = Arc::clone(&self.servers[server].secret);
                        if let Ok((payload, auth, delay)) = self.encode(&request, &secret, id, started, now) {
                            if let Some(a) = self.pending.get_mut(&handle).and_then(|p| p.attempt.as_mut()) {
                                a.socket = sid;
                                a.id = id;
                                a.authenticator = auth;
                                a.secret = secret;
                                a.payload = payload.clone();
                                a.delay = delay;
                            }
                            self.transmits.push_back(Transmit { socket: sid, destination, payload });
                            return;
                        }
                        self.free_id(sid, server, id);
                    }
                }
            }
            if let Some(a) = self.pending.get(&handle).and_then(|p| p.attempt.as_ref()) {
                // RFC 5080 §2.2.1: a plain retransmission is the same
                // packet, same Identifier and Request Authenticator.
                self.transmits.push_back(Transmit {
                    socket: a.socket,
                    destination,
                    payload: a.payload.clone(),
                });
            }
            return;
        }
        // This server did not answer: fail over.
        let (socket, id, first_sent) = (a.socket, a.id, a.first_sent);
        p.attempt = None;
        self.free_id(socket, server, id);
        let s = &mut self.servers[server];
        s.stats.timeouts += 1;
        let silent = s.last_reply.is_none_or(|t| t < first_sent);
        if silent && s.state == ServerState::Alive && !s.retired {
            s.state = ServerState::Dead;
            s.probe_answers = 0;
            s.next_probe = Some(now + self.config.status_server_interval);
            self.events.push_back(Event::ServerDown(ServerId(server)));
        }
        self.start_attempt(now, handle);
    }

    /// RFC 5997 §4: a dead server is asked Status-Server every interval; a
    /// probe is never retransmitted, a lost one simply counts as no answer.
    fn probe_timer(&mut self, now: Instant, server: usize) {
        let s = &mut self.servers[server];
        if s.retired {
            return;
        }
        if let Some(p) = &s.probe {
            if p.deadline > now {
                return;
            }
            let (socket, id) = (p.socket, p.id);
            s.probe = None;
            s.probe_answers = 0;
            s.next_probe = Some(now + self.config.status_server_interval);
            self.free_id(socket, server, id);
            return;
        }
        if s.state != ServerState::Dead || s.next_probe.is_none_or(|t| t > now) {
            return;
        }
        let Some((socket, id)) = self.allocate_id(server, Slot::Probe) else { return };
        let mut repr = Repr::new(Code::StatusServer, id);
        self.rng.fill_bytes(&mut repr.authenticator);
        // RFC 5997 §3: Status-Server MUST carry Message-Authenticator.
        repr.ensure_message_authenticator();
        let s = &mut self.servers[server];
        let Ok(payload) = repr.encode(&s.secret, None) else {
            self.free_id(socket, server, id);
            return;
        };
        s.stats.status_server_sent += 1;
        s.next_probe = None;
        s.probe = Some(Probe {
            socket,
            id,
            authenticator: repr.authenticator,
            secret: Arc::clone(&s.secret),
            deadline: now + self.config.retransmit.irt,
        });
        self.transmits.push_back(Transmit { socket, destination: s.address, payload });
    }

    /// A datagram arrived on `socket` from `source`.
    pub fn handle_datagram(&mut self, now: Instant, socket: SocketId, source: SocketAddr, bytes: &[u8]) {
        // Only a configured server's exact address and port (RFC 2865 §3
        // matches replies by source as well as Identifier).
        let Some(server) = self.servers.iter().position(|s| s.address == source) else {
            tracing::debug!(%source, "RADIUS datagram from an unknown source dropped");
            return;
        };
        let Ok(packet) = Packet::new_checked(bytes) else {
            self.servers[server].stats.malformed += 1;
            return;
        };
        let id = packet.identifier();
        let Some(slot) = self.ids.get(&(socket, server)).and_then(|t| t.get(id)) else {
            self.servers[server].stats.unknown_identifier += 1;
            return;
        };
        let mut rtt = None;
        let (request_code, authenticator, secret, kind) = match slot {
            Slot::Request(h) => match self.pending.get(&h).and_then(|p| p.attempt.as_ref().map(|a| (p, a))) {
                Some((p, a)) if a.server == server && a.socket == socket && a.id == id => {
                    if a.retransmissions == 0 {
                        rtt = Some(now.saturating_duration_since(a.first_sent));
                    }
                    let kind = match p.service {
                        Service::Authentication => ReplyKind::Access,
                        Service::Accounting => ReplyKind::Accounting,
                    };
                    (p.request.code, a.authenticator, Arc::clone(&a.secret), kind)
                }
                _ => {
                    self.servers[server].stats.unknown_identifier += 1;
                    return;
                }
            },
            Slot::Probe => match &self.servers[server].probe {
                Some(p) if p.socket == socket && p.id == id => {
                    (Code::StatusServer, p.authenticator, Arc::clone(&p.secret), ReplyKind::StatusServer)
                }
                _ => {
                    self.servers[server].stats.unknown_identifier += 1;
                    return;
                }
            },
        };
        if !packet.code().answers(request_code) {
            self.servers[server].stats.bad_code += 1;
            return;
        }
        let policy = self.servers[server].policy(kind);
        let dropped = match crypto::verify_response(bytes, &secret, &authenticator, policy.required()) {
            Ok(()) => None,
            Err(Error::MissingMessageAuthenticator) => Some(DropReason::MissingMessageAuthenticator),
            Err(Error::BadMessageAuthenticator) => Some(DropReason::BadMessageAuthenticator),
            Err(_) => {
                self.servers[server].stats.bad_authenticator += 1;
                return;
            }
        };
        if let Some(reason) = dropped {
            // The Response Authenticator verified: the server is there and
            // knows the secret, so this is no reason to call it dead; the
            // owner logs why its replies go nowhere.
            let s = &mut self.servers[server];
            s.last_reply = Some(now);
            match reason {
                DropReason::MissingMessageAuthenticator => s.stats.missing_message_authenticator += 1,
                DropReason::BadMessageAuthenticator => s.stats.bad_message_authenticator += 1,
            }
            if let Slot::Request(h) = slot {
                if let Some(p) = self.pending.get_mut(&h) {
                    p.dropped = Some(reason);
                }
            }
            let probe = slot == Slot::Probe;
            self.events.push_back(Event::ReplyDropped { server: ServerId(server), reason, probe });
            return;
        }
        let signed = crypto::has_message_authenticator(packet.attributes_bytes());
        let s = &mut self.servers[server];
        if s.require_message_authenticator == RequireMessageAuthenticator::Auto {
            if signed && !s.signed[kind as usize] {
                s.signed[kind as usize] = true;
                if kind == ReplyKind::Access {
                    self.events.push_back(Event::MessageAuthenticatorRequired(ServerId(server)));
                }
            } else if !signed && kind == ReplyKind::Access && !s.warned_unsigned {
                s.warned_unsigned = true;
                self.events.push_back(Event::UnsignedAccessReplies(ServerId(server)));
            }
        }
        let Ok(repr) = Repr::parse(&packet) else {
            self.servers[server].stats.malformed += 1;
            return;
        };
        let s = &mut self.servers[server];
        s.stats.replies += 1;
        s.last_reply = Some(now);
        if let Some(rtt) = rtt {
            s.stats.last_rtt = Some(rtt);
            s.stats.rtt.observe(rtt);
        }
        match slot {
            Slot::Request(handle) => {
                let reply = Reply {
                    server: ServerId(server),
                    packet: repr,
                    request_authenticator: authenticator,
                    secret,
                };
                self.complete(now, handle, Outcome::Answered(reply));
            }
            Slot::Probe => {
                s.probe = None;
                s.probe_answers += 1;
                if s.probe_answers >= self.config.revive_after {
                    s.state = ServerState::Alive;
                    s.next_probe = None;
                    self.events.push_back(Event::ServerUp(ServerId(server)));
                } else {
                    s.next_probe = Some(now + self.config.status_server_interval);
                }
                self.free_id(socket, server, id);
            }
        }
    }
}
