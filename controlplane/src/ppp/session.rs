//! One PPP link (RFC 1661 §3 phases), in either role: `Server` is the LNS
//! (authenticates the peer, assigns addresses), `Client` the emulated
//! subscriber (authenticates itself, asks for an address).
//!
//! Sans-IO in the quinn-proto manner: feed [`Session::handle_frame`] and
//! [`Session::handle_timeout`], then drain [`Session::poll_transmit`],
//! [`Session::poll_event`] and arm a timer for [`Session::poll_timeout`].

use super::auth::{AuthConfig, AuthDecision, AuthFailure, AuthMethod, AuthOutput, AuthRequest, Credentials};
use super::authenticate::{AuthPeer, Authenticator};
use super::ccp::CcpPolicy;
use super::chap::ChapAuthenticator;
use super::error::Error;
use super::frame::{Frame, FrameRepr, Protocol};
use super::fsm::{Action, FinishReason, Fsm, FsmConfig};
use super::ipcp::{IpcpConfig, IpcpPolicy};
use super::ipv6cp::{Ipv6cpConfig, Ipv6cpPolicy};
use super::lcp::{LcpConfig, LcpConfigRef, LcpNegotiated, LcpOption, LcpPolicy, LcpRepr};
use super::link_rng::LinkRng;
use super::nd::{self, RouterConfig};
use super::packet;
use super::pap::PapAuthenticator;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which end of the link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The LNS: requires authentication, assigns addresses.
    Server,
    /// A subscriber: authenticates with credentials, learns addresses.
    Client,
}

/// RFC 1661 §3.2 phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Dead,
    Establish,
    Authenticate,
    Network,
    Terminate,
}

/// LCP Echo keepalive (RFC 1661 §5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoConfig {
    /// Time between Echo-Requests once LCP is opened; None disables.
    pub interval: Option<Duration>,
    /// Unanswered Echo-Requests after which the peer is declared dead.
    pub max_failures: u32,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig { interval: Some(Duration::from_secs(10)), max_failures: 5 }
    }
}

/// Everything a [`Session`] needs to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionConfig {
    pub role: Role,
    pub lcp: LcpConfig,
    /// Restart timer and counters, used by LCP and every NCP.
    pub fsm: FsmConfig,
    pub auth: AuthConfig,
    /// Our CHAP Name (RFC 1994 §4.1) as authenticator.
    pub hostname: String,
    /// Client role: what to authenticate with.
    pub credentials: Option<Credentials>,
    /// IPCP settings; None disables IPCP (and Protocol-Rejects it).
    pub ipcp: Option<IpcpConfig>,
    /// IPv6CP settings; None disables IPv6CP.
    pub ipv6cp: Option<Ipv6cpConfig>,
    /// Server: Router Advertisements once IPv6CP is up and a prefix is set
    /// ([`Session::set_ipv6_prefix`]). Client: Router Solicitations are sent
    /// whenever IPv6CP is up.
    pub nd: RouterConfig,
    /// Run CCP as a null negotiator instead of Protocol-Rejecting it.
    pub ccp: bool,
    pub echo: EchoConfig,
    /// Accept the LCP options the LAC negotiated (RFC 2661 §4.4.5).
    pub accept_proxy_lcp: bool,
    /// Accept the LAC's captured PAP/CHAP exchange (RFC 2661 §4.4.5).
    pub accept_proxy_auth: bool,
    /// Client role: a link that failed for want of answers (LCP, CHAP/PAP,
    /// NCP or Echo timeouts) starts again after this hold-off, as a CPE
    /// does (pppd `persist`, `holdoff`); never after a close on purpose or
    /// a refused authentication. None: the link ends with LinkDown.
    pub holdoff: Option<Duration>,
}

impl SessionConfig {
    /// LNS defaults: MS-CHAP-V2, CHAP-MD5 then PAP required; IPCP on.
    pub fn server(hostname: &str) -> Self {
        SessionConfig {
            role: Role::Server,
            lcp: LcpConfig {
                require_auth: vec![AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap],
                ..LcpConfig::default()
            },
            fsm: FsmConfig::default(),
            auth: AuthConfig::default(),
            hostname: hostname.to_string(),
            credentials: None,
            ipcp: Some(IpcpConfig::default()),
            ipv6cp: None,
            nd: RouterConfig::default(),
            ccp: false,
            echo: EchoConfig::default(),
            accept_proxy_lcp: false,
            accept_proxy_auth: false,
            holdoff: None,
        }
    }

    /// Subscriber defaults: any of the three methods, IPCP asking for DNS.
    pub fn client(credentials: Credentials) -> Self {
        SessionConfig {
            role: Role::Client,
            lcp: LcpConfig {
                accept_auth: vec![AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap],
                ..LcpConfig::default()
            },
            fsm: FsmConfig::default(),
            auth: AuthConfig::default(),
            hostname: String::new(),
            credentials: Some(credentials),
            ipcp: Some(IpcpConfig { request_dns: true, ..IpcpConfig::default() }),
            ipv6cp: None,
            nd: RouterConfig::default(),
            ccp: false,
            echo: EchoConfig::default(),
            accept_proxy_lcp: false,
            accept_proxy_auth: false,
            holdoff: Some(DEFAULT_HOLDOFF),
        }
    }
}

/// The subscriber's hold-off before it starts a failed link again: one
/// RFC 1661 §4.6 restart interval.
pub const DEFAULT_HOLDOFF: Duration = Duration::from_secs(3);

/// RFC 3145 §3 PPP Disconnect Cause codes (for the L2TP CDN AVP 46).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DisconnectCode(pub u16);

impl DisconnectCode {
    pub const NO_INFORMATION: Self = Self(0);
    pub const ADMINISTRATIVE: Self = Self(1);
    pub const RENEGOTIATION_DISABLED: Self = Self(2);
    /// Normal disconnection, LCP Terminate-Request sent.
    pub const NORMAL: Self = Self(3);
    pub const COMPULSORY_ENCRYPTION_REFUSED: Self = Self(4);
    /// LCP FSM timeout (TO- while negotiating).
    pub const LCP_TIMEOUT: Self = Self(5);
    pub const LCP_NO_RECOGNIZABLE_PACKETS: Self = Self(6);
    /// Magic-Number collision: looped-back link.
    pub const LCP_LOOPBACK: Self = Self(7);
    /// Echo-Requests unanswered.
    pub const LCP_ECHO_TIMEOUT: Self = Self(8);
    pub const AUTH_TIMEOUT: Self = Self(13);
    pub const AUTH_PROTOCOL_UNACCEPTABLE: Self = Self(15);
    pub const AUTH_FAILED: Self = Self(16);
    pub const NCP_TIMEOUT: Self = Self(17);
    pub const NO_NCPS: Self = Self(18);
    pub const NCP_NO_ACCEPTABLE_ADDRESS: Self = Self(19);
    pub const NCP_NO_PERMITTED_ADDRESS: Self = Self(20);

    /// The link failed for want of answers, not by anyone's decision: a
    /// subscriber tries again ([`SessionConfig::holdoff`]).
    pub fn calls_for_restart(self) -> bool {
        matches!(
            self,
            Self::LCP_TIMEOUT
                | Self::LCP_NO_RECOGNIZABLE_PACKETS
                | Self::LCP_ECHO_TIMEOUT
                | Self::AUTH_TIMEOUT
                | Self::NCP_TIMEOUT
        )
    }
}

/// RFC 3145 §2 Direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Global = 0,
    /// Detected at, or caused by, the peer.
    Peer = 1,
    /// Detected at, or caused by, this end.
    Local = 2,
}

/// Why the link went down, in RFC 3145 terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectCause {
    pub code: DisconnectCode,
    /// The control protocol concerned (LCP, PAP, IPCP...), 0 if none.
    pub protocol: Protocol,
    pub direction: Direction,
    pub message: String,
}

impl DisconnectCause {
    /// The Value of the L2TP PPP Disconnect Cause Code AVP (RFC 3145 §2,
    /// attribute 46): Disconnect Code, Control Protocol Number, Direction,
    /// then the UTF-8 message.
    pub fn to_avp_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.message.len());
        out.extend_from_slice(&self.code.0.to_be_bytes());
        out.extend_from_slice(&self.protocol.0.to_be_bytes());
        out.push(self.direction as u8);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    fn new(code: DisconnectCode, protocol: Protocol, direction: Direction, message: &str) -> Self {
        DisconnectCause { code, protocol, direction, message: message.to_string() }
    }
}

/// The L2TP proxy LCP AVPs (RFC 2661 §4.4.5, types 26–28): each is the
/// Configure-Request body starting at the first option.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyLcp {
    pub initial_received: Vec<u8>,
    pub last_sent: Vec<u8>,
    pub last_received: Vec<u8>,
}

/// The L2TP proxy authentication AVPs (RFC 2661 §4.4.5, types 29–33).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyAuth {
    /// Proxy Authen Type 3.
    Pap { identifier: u8, username: Vec<u8>, password: Vec<u8> },
    /// Proxy Authen Type 2.
    Chap { identifier: u8, challenge: Vec<u8>, username: Vec<u8>, response: Vec<u8> },
}

/// What a network protocol settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkConfig {
    Ipv4 { local: Ipv4Addr, peer: Ipv4Addr, primary_dns: Option<Ipv4Addr>, secondary_dns: Option<Ipv4Addr> },
    Ipv6 { local_interface_identifier: [u8; 8], peer_interface_identifier: [u8; 8] },
}

/// Something the owner should know or act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    /// LCP opened (RFC 1661 §3.3); `local` is what the peer accepted of ours
    /// (our MRU...), `peer` what we accepted of the peer's (its MRU...).
    LinkUp {
        local: LcpNegotiated,
        peer: LcpNegotiated,
    },
    /// Check these credentials and answer with [`Session::auth_result`].
    AuthRequest(AuthRequest),
    /// Server: the peer is authenticated. Client: we are.
    Authenticated {
        method: AuthMethod,
        username: Vec<u8>,
        authenticator_response: Option<String>,
    },
    NetworkUp(NetworkConfig),
    /// Client: a Router Advertisement gave an autonomous prefix, and this
    /// is the address formed from it and our interface identifier.
    Ipv6AddressUp {
        prefix: Ipv6Addr,
        prefix_len: u8,
        address: Ipv6Addr,
    },
    /// The NCP of this protocol left Opened.
    NetworkDown(Protocol),
    /// The peer stopped answering LCP Echo-Requests.
    EchoFailure {
        unanswered: u32,
    },
    /// The link is finished; the session is dead.
    LinkDown {
        cause: DisconnectCause,
    },
}

/// A PPP link.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    /// Shared by the links of one configuration (and MRU): a link that
    /// needs its own (a per-subscriber flag) copies it on write.
    config: Arc<SessionConfig>,
    phase: Phase,
    lcp: Fsm<LcpPolicy>,
    ipcp: Option<Fsm<IpcpPolicy>>,
    ipv6cp: Option<Fsm<Ipv6cpPolicy>>,
    ccp: Option<Box<Fsm<CcpPolicy>>>,
    /// Server: advertising the subscriber's prefix while IPv6CP is opened.
    router: Option<Box<nd::Router>>,
    /// Client: soliciting a prefix while IPv6CP is opened.
    host: Option<Box<nd::Host>>,
    /// Inline: while it works its parts are boxed, and once answered it
    /// is a few bytes ([`Authenticator::compact`]).
    authenticator: Option<Authenticator>,
    auth_peer: Option<Box<AuthPeer>>,
    server_auth_done: bool,
    client_auth_done: bool,
    proxy_auth: Option<Box<ProxyAuth>>,
    /// Client: the link failed and starts again then ([`SessionConfig::holdoff`]).
    #[serde(with = "crate::snapshot::opt_instant")]
    holdoff_until: Option<Instant>,
    /// Client: how many times the link was started again.
    restarts: u32,
    #[serde(with = "crate::snapshot::opt_instant")]
    echo_deadline: Option<Instant>,
    echo_unanswered: u32,
    /// Boxed: only a link that is ending has one (a box serializes as
    /// what it holds).
    cause: Option<Box<DisconnectCause>>,
    transmit: crate::lazy_box::LazyQueue<Vec<u8>>,
    events: crate::lazy_box::LazyQueue<SessionEvent>,
    /// Every random value of the link (Identifiers, Magic-Numbers,
    /// challenges, interface identifiers, advertisement jitter) comes from
    /// here, so a seed replays a link and a snapshot carries on its stream.
    rng: LinkRng,
}

impl Session {
    /// A link in the Dead phase; `rng` (seeded by the caller) is the only
    /// source of randomness it will use.
    pub fn new(config: impl Into<Arc<SessionConfig>>, mut rng: ChaCha8Rng) -> Self {
        let mut config = config.into();
        let server = config.role == Role::Server;
        if config.credentials.is_none() && !config.lcp.accept_auth.is_empty() {
            // Without credentials we cannot authenticate ourselves.
            Arc::make_mut(&mut config).lcp.accept_auth.clear();
        }
        let fsm = config.fsm;
        Session {
            phase: Phase::Dead,
            lcp: Fsm::new(
                Protocol::LCP,
                fsm,
                LcpPolicy::new(LcpConfigRef::Link(config.clone()), &mut rng),
                &mut rng,
            ),
            ipcp: config
                .ipcp
                .clone()
                .map(|c| Fsm::new(Protocol::IPCP, fsm, IpcpPolicy::new(c, server), &mut rng)),
            ipv6cp: config.ipv6cp.map(|c| {
                let policy = Ipv6cpPolicy::new(c, &mut rng);
                Fsm::new(Protocol::IPV6CP, fsm, policy, &mut rng)
            }),
            ccp: config.ccp.then(|| Box::new(Fsm::new(Protocol::CCP, fsm, CcpPolicy, &mut rng))),
            router: None,
            host: None,
            authenticator: None,
            auth_peer: None,
            server_auth_done: false,
            client_auth_done: false,
            proxy_auth: None,
            holdoff_until: None,
            restarts: 0,
            echo_deadline: None,
            echo_unanswered: 0,
            cause: None,
            transmit: Default::default(),
            events: Default::default(),
            config,
            rng: LinkRng::new(rng),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the link reads `config` (and not a copy of its own).
    pub fn shares_config(&self, config: &Arc<SessionConfig>) -> bool {
        Arc::ptr_eq(&self.config, config)
    }

    /// A link read back from a snapshot holds a copy of its configuration
    /// of its own: if it is the same as `shared` (the configuration new
    /// links of its MRU share; `shared_encoded` is its postcard form), the
    /// link takes `shared` and the copy goes. Returns whether it did.
    pub fn share_config(&mut self, shared: &Arc<SessionConfig>, shared_encoded: &[u8]) -> bool {
        if Arc::ptr_eq(&self.config, shared) {
            return true;
        }
        // Compared as they are serialized: every field, with no PartialEq
        // to keep up to date.
        let same = postcard::to_stdvec(&*self.config).is_ok_and(|mine| mine == shared_encoded);
        if same {
            self.config = shared.clone();
            self.lcp.policy.config = LcpConfigRef::Link(shared.clone());
        }
        same
    }

    pub fn role(&self) -> Role {
        self.config.role
    }

    /// True once LinkDown was reported: the session will do nothing more.
    pub fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
            && self.holdoff_until.is_none()
            && self.lcp.state() != super::fsm::State::Initial
    }

    /// True while the NCP of `protocol` (IPCP, IPv6CP, CCP) is Opened.
    pub fn ncp_opened(&self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::IPCP => self.ipcp.as_ref().is_some_and(|f| f.is_opened()),
            Protocol::IPV6CP => self.ipv6cp.as_ref().is_some_and(|f| f.is_opened()),
            Protocol::CCP => self.ccp.as_ref().is_some_and(|f| f.is_opened()),
            _ => false,
        }
    }

    /// LCP results: (ours as acknowledged by the peer, the peer's).
    pub fn lcp_negotiated(&self) -> (&LcpNegotiated, &LcpNegotiated) {
        (&self.lcp.policy.local, &self.lcp.policy.peer)
    }

    /// LNS: the address to assign to the peer (e.g. from RADIUS
    /// Framed-IP-Address). Call before or during IPCP.
    pub fn set_peer_ipv4(&mut self, address: Ipv4Addr) {
        if let Some(ipcp) = &mut self.ipcp {
            ipcp.policy.set_peer_address(address);
        }
    }

    /// LNS: the name servers to hand out in IPCP (RFC 1877), instead of
    /// the configured ones, e.g. from RADIUS.
    pub fn set_peer_dns(&mut self, primary: Option<Ipv4Addr>, secondary: Option<Ipv4Addr>) {
        if let Some(ipcp) = &mut self.ipcp {
            ipcp.policy.set_dns(primary, secondary);
        }
    }

    /// LNS: the Router Advertisements' O flag (RFC 4861 §4.2) on this link
    /// where it differs from the configuration's: DNS servers by DHCPv6
    /// for this subscriber alone (from RADIUS). For the advertisements of
    /// the next [`Session::set_ipv6_prefix`].
    pub fn set_ra_other_config(&mut self, on: bool) {
        if self.config.nd.other != on {
            Arc::make_mut(&mut self.config).nd.other = on;
        }
    }

    /// LNS: the prefix to announce by Router Advertisement (RFC 4861) while
    /// IPv6CP is opened; the first advertisement goes out at once. None
    /// stops advertising. Without IPv6CP opened this does nothing: call it
    /// after [`SessionEvent::NetworkUp`] for IPv6.
    pub fn set_ipv6_prefix(&mut self, now: Instant, prefix: Option<(Ipv6Addr, u8)>) {
        let opened = self.ipv6cp.as_ref().is_some_and(|f| f.is_opened());
        self.router = match (prefix, opened, self.network_config(Protocol::IPV6CP)) {
            (Some((p, len)), true, Some(NetworkConfig::Ipv6 { local_interface_identifier, .. })) => {
                // The MTU the subscriber may send us: our MRU.
                let mtu = u32::from(self.lcp.policy.local.mru);
                Some(Box::new(nd::Router::new(
                    now,
                    self.config.nd,
                    local_interface_identifier,
                    p,
                    len,
                    Some(mtu),
                )))
            }
            _ => None,
        };
        if let Some(r) = &mut self.router {
            r.handle_timeout(now, self.rng.live());
        }
        self.pump(now);
    }

    /// Closes one NCP alone (IPv6CP without a prefix for the subscriber,
    /// IPCP without an address): the other goes on; with none left the
    /// link ends (RFC 1661 §3.4).
    pub fn close_ncp(&mut self, now: Instant, protocol: Protocol) {
        let fsm = match protocol {
            Protocol::IPCP => self.ipcp.as_mut().map(|f| f.close(now)),
            Protocol::IPV6CP => {
                self.router = None;
                self.ipv6cp.as_mut().map(|f| f.close(now))
            }
            _ => None,
        };
        if fsm.is_some() {
            self.pump(now);
        }
    }

    /// The prefix being advertised, if any.
    pub fn ipv6_prefix(&self) -> Option<(Ipv6Addr, u8)> {
        self.router.as_ref().map(|r| r.prefix())
    }

    /// Our link-local address on this link (RFC 5072 §5, from our IPv6CP
    /// interface identifier) while IPv6CP is opened: where the LNS's
    /// DHCPv6 answers come from.
    pub fn ipv6_link_local(&self) -> Option<Ipv6Addr> {
        if !self.ncp_opened(Protocol::IPV6CP) {
            return None;
        }
        match self.network_config(Protocol::IPV6CP)? {
            NetworkConfig::Ipv6 { local_interface_identifier, .. } => {
                Some(nd::link_local(local_interface_identifier))
            }
            NetworkConfig::Ipv4 { .. } => None,
        }
    }

    /// Client: the address formed from the advertised prefix, if any.
    pub fn ipv6_address(&self) -> Option<Ipv6Addr> {
        self.host.as_ref().and_then(|h| h.learned())
    }

    /// IPv6 that reached the control path with IPv6CP opened: a Router
    /// Solicitation (server) or Advertisement (client) is answered or
    /// learned from; anything else is refused with
    /// [`Error::NotNeighbourDiscovery`] for the owner to count.
    fn input_ipv6(&mut self, now: Instant, packet: &[u8]) -> Result<(), Error> {
        let repr = nd::Repr::parse_bytes(packet).map_err(|_| Error::NotNeighbourDiscovery)?;
        match (&repr.message, &mut self.router, &mut self.host) {
            (nd::Message::RouterSolicitation, Some(r), _) => {
                r.handle_solicitation(now, self.rng.live());
                Ok(())
            }
            // No prefix yet: the advertisement goes out when it is set.
            (nd::Message::RouterSolicitation, None, _) if self.config.role == Role::Server => Ok(()),
            (nd::Message::RouterAdvertisement { .. }, _, Some(h)) => {
                if let Some((p, address)) = h.handle_advertisement(&repr) {
                    self.events.push_back(SessionEvent::Ipv6AddressUp {
                        prefix: p.prefix,
                        prefix_len: p.prefix_len,
                        address,
                    });
                }
                Ok(())
            }
            _ => Err(Error::NotNeighbourDiscovery),
        }
    }

    /// Start LCP negotiation (the L2TP session is established, so the lower
    /// layer is up at once).
    pub fn open(&mut self, now: Instant) {
        self.phase = Phase::Establish;
        self.lcp.open(now, self.rng.live());
        self.lcp.up(now, self.rng.live());
        self.pump(now);
    }

    /// Start from the LCP state a LAC negotiated (RFC 2661 §4.4.5 proxy LCP),
    /// optionally with its captured authentication. Falls back to a full
    /// LCP negotiation when proxy LCP is disabled or unacceptable.
    pub fn open_with_proxy(&mut self, now: Instant, proxy: &ProxyLcp, auth: Option<ProxyAuth>) {
        let parse = |bytes: &[u8]| packet::parse_options::<LcpOption>(bytes);
        let adopted = self.config.accept_proxy_lcp
            && match (parse(&proxy.last_sent), parse(&proxy.last_received)) {
                (Ok(sent), Ok(received)) => self.lcp.policy.adopt_proxy(&sent, &received, self.rng.live()),
                _ => false,
            };
        if !adopted {
            self.open(now);
            return;
        }
        if self.config.accept_proxy_auth {
            self.proxy_auth = auth.map(Box::new);
        }
        self.phase = Phase::Establish;
        self.lcp.force_opened();
        self.lcp_up(now);
        self.pump(now);
    }

    /// Terminate the link administratively (RFC 3145 cause 1 unless a more
    /// precise `cause` is given).
    pub fn close(&mut self, now: Instant, cause: Option<DisconnectCause>) {
        let cause = cause.unwrap_or_else(|| {
            DisconnectCause::new(
                DisconnectCode::ADMINISTRATIVE,
                Protocol(0),
                Direction::Local,
                "administrative close",
            )
        });
        self.terminate(now, cause);
        self.pump(now);
    }

    fn terminate(&mut self, now: Instant, cause: DisconnectCause) {
        if self.cause.is_none() {
            self.cause = Some(Box::new(cause));
        }
        if self.phase != Phase::Dead {
            self.phase = Phase::Terminate;
        }
        self.echo_deadline = None;
        self.lcp.close(now);
    }

    /// The owner's verdict on the last [`SessionEvent::AuthRequest`]. Returns
    /// false when no request was pending.
    pub fn auth_result(&mut self, now: Instant, decision: AuthDecision) -> bool {
        let done = match &mut self.authenticator {
            Some(a) => a.decide(&decision),
            None => false,
        };
        self.pump(now);
        done
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline of any timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.lcp.poll_timeout(),
            self.ipcp.as_ref().and_then(|f| f.poll_timeout()),
            self.ipv6cp.as_ref().and_then(|f| f.poll_timeout()),
            self.ccp.as_ref().and_then(|f| f.poll_timeout()),
            self.authenticator.as_ref().and_then(|a| a.poll_timeout()),
            self.auth_peer.as_ref().and_then(|a| a.poll_timeout()),
            self.echo_deadline,
            self.holdoff_until,
            self.router.as_ref().and_then(|r| r.poll_timeout()),
            self.host.as_ref().and_then(|h| h.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_dead() {
            return;
        }
        if self.holdoff_until.is_some_and(|t| t <= now) {
            self.restart(now);
        }
        self.lcp.handle_timeout(now);
        if let Some(f) = &mut self.ipcp {
            f.handle_timeout(now);
        }
        if let Some(f) = &mut self.ipv6cp {
            f.handle_timeout(now);
        }
        if let Some(f) = &mut self.ccp {
            f.handle_timeout(now);
        }
        if let Some(a) = &mut self.authenticator {
            a.handle_timeout(now);
        }
        if let Some(a) = &mut self.auth_peer {
            a.handle_timeout(now);
        }
        if self.echo_deadline.is_some_and(|d| d <= now) {
            self.echo_tick(now);
        }
        if let Some(r) = &mut self.router {
            r.handle_timeout(now, self.rng.live());
        }
        if let Some(h) = &mut self.host {
            h.handle_timeout(now);
        }
        self.pump(now);
    }

    /// Process one received PPP frame. Malformed frames are reported and
    /// otherwise ignored (RFC 1661 §5: silently discarded).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), Error> {
        if self.is_dead() {
            return Ok(());
        }
        let view = Frame::new_checked(frame)?;
        let protocol = view.protocol();
        let payload = view.payload();
        if self.phase == Phase::Dead {
            // Holding off: a Configure-Request shows the peer wants the
            // link now, so start at once and answer it; nothing else is
            // heard while the link is down.
            let request =
                protocol == Protocol::LCP && payload.first() == Some(&packet::code::CONFIGURE_REQUEST);
            if !(self.holdoff_until.is_some() && request) {
                return Ok(());
            }
            self.restart(now);
        }
        let lcp_opened = self.lcp.is_opened();
        let result = match protocol {
            Protocol::LCP => self.input_lcp(now, payload),
            Protocol::PAP | Protocol::CHAP => {
                // RFC 1661 §3.5: authentication packets only matter in the
                // Authenticate phase (late retransmissions after it are
                // still answered by the machines).
                let method_matches = |m: AuthMethod| m.ppp_protocol() == protocol;
                let mut r = Ok(());
                if let Some(a) = self.authenticator.as_mut().filter(|a| method_matches(a.method())) {
                    r = a.input(now, payload);
                }
                if let Some(p) = self.auth_peer.as_mut().filter(|p| method_matches(p.method())) {
                    r = r.and(p.input(now, payload, self.rng.live()));
                }
                r
            }
            Protocol::IPCP | Protocol::IPV6CP | Protocol::CCP if self.ncp_configured(protocol) => {
                // RFC 1661 §3.5: NCP packets before the Network phase are
                // discarded.
                if self.phase == Phase::Network {
                    match protocol {
                        Protocol::IPCP => {
                            self.ipcp.as_mut().map_or(Ok(()), |f| f.input_ncp(now, payload, self.rng.live()))
                        }
                        Protocol::IPV6CP => self
                            .ipv6cp
                            .as_mut()
                            .map_or(Ok(()), |f| f.input_ncp(now, payload, self.rng.live())),
                        _ => self.ccp.as_mut().map_or(Ok(()), |f| f.input_ncp(now, payload, self.rng.live())),
                    }
                } else {
                    Ok(())
                }
            }
            // IPv6 on the control path once IPv6CP is up: the data plane
            // passes up what is link-local or multicast (router discovery).
            Protocol::IPV6 if self.ipv6cp.as_ref().is_some_and(|f| f.is_opened()) => {
                self.input_ipv6(now, payload)
            }
            // Data is the data plane's business; before its NCP is up it is
            // discarded (RFC 1661 §3.5).
            Protocol::IPV4 | Protocol::IPV6 if self.ncp_configured(protocol) => Ok(()),
            _ => {
                // RFC 1661 §5.7: unsupported protocols get a Protocol-Reject,
                // which may only be sent in the LCP Opened state.
                if lcp_opened {
                    self.protocol_reject(protocol, payload);
                }
                Ok(())
            }
        };
        self.pump(now);
        result
    }

    fn ncp_configured(&self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::IPCP | Protocol::IPV4 => self.ipcp.is_some(),
            Protocol::IPV6CP | Protocol::IPV6 => self.ipv6cp.is_some(),
            Protocol::CCP => self.ccp.is_some(),
            _ => false,
        }
    }

    fn send(&mut self, protocol: Protocol, payload: &[u8]) {
        self.transmit.push_back(FrameRepr::full(protocol).encapsulate(payload));
    }

    fn protocol_reject(&mut self, protocol: Protocol, payload: &[u8]) {
        // RFC 1661 §5.7: the rejected information is truncated to fit the
        // peer's MRU.
        let room = usize::from(self.lcp.policy.peer.mru.max(64)).saturating_sub(packet::HEADER_LEN + 2);
        let identifier = self.lcp.fresh_identifier();
        self.lcp.send_extra(LcpRepr::ProtocolReject {
            identifier,
            rejected_protocol: protocol.0,
            rejected_information: payload.get(..room.min(payload.len())).unwrap_or(&[]).to_vec(),
        });
    }

    fn input_lcp(&mut self, now: Instant, payload: &[u8]) -> Result<(), Error> {
        let extra = self.lcp.input(now, payload, self.rng.live())?;
        let opened = self.lcp.is_opened();
        match extra {
            Some(LcpRepr::EchoRequest { identifier, data, .. }) if opened => {
                // RFC 1661 §5.8: answer in Opened with our Magic-Number.
                let magic_number = self.lcp.policy.magic_number();
                self.lcp.send_extra(LcpRepr::EchoReply { identifier, magic_number, data });
            }
            Some(LcpRepr::EchoReply { .. }) if opened => self.echo_unanswered = 0,
            Some(LcpRepr::ProtocolReject { rejected_protocol, .. }) if opened => {
                self.protocol_rejected(now, Protocol(rejected_protocol))
            }
            // Discard-Request, Identification and Time-Remaining need no
            // answer (RFC 1661 §5.9, RFC 1570 §2).
            _ => {}
        }
        self.check_lcp_policy(now);
        Ok(())
    }

    fn protocol_rejected(&mut self, now: Instant, protocol: Protocol) {
        match protocol {
            // RFC 1661 §5.7: LCP itself rejected is catastrophic.
            Protocol::LCP => self.lcp.rxj(now, true),
            Protocol::IPCP => {
                if let Some(f) = &mut self.ipcp {
                    f.rxj(now, true);
                }
            }
            Protocol::IPV6CP => {
                if let Some(f) = &mut self.ipv6cp {
                    f.rxj(now, true);
                }
            }
            Protocol::CCP => {
                if let Some(f) = &mut self.ccp {
                    f.rxj(now, true);
                }
            }
            Protocol::PAP | Protocol::CHAP if self.phase == Phase::Authenticate => {
                let cause = DisconnectCause::new(
                    DisconnectCode::AUTH_PROTOCOL_UNACCEPTABLE,
                    protocol,
                    Direction::Peer,
                    "authentication protocol rejected",
                );
                self.terminate(now, cause);
            }
            _ => self.lcp.rxj(now, false),
        }
    }

    fn check_lcp_policy(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Terminate | Phase::Dead) {
            return;
        }
        if self.lcp.policy.looped_back() {
            let cause = DisconnectCause::new(
                DisconnectCode::LCP_LOOPBACK,
                Protocol::LCP,
                Direction::Global,
                "looped-back link (magic number collisions)",
            );
            self.terminate(now, cause);
        } else if self.lcp.policy.auth_refused() {
            let cause = DisconnectCause::new(
                DisconnectCode::AUTH_PROTOCOL_UNACCEPTABLE,
                Protocol::LCP,
                Direction::Peer,
                "peer refused every acceptable authentication protocol",
            );
            self.terminate(now, cause);
        }
    }

    fn echo_tick(&mut self, now: Instant) {
        let Some(interval) = self.config.echo.interval else {
            self.echo_deadline = None;
            return;
        };
        if !self.lcp.is_opened() {
            self.echo_deadline = None;
            return;
        }
        if self.echo_unanswered >= self.config.echo.max_failures {
            self.events.push_back(SessionEvent::EchoFailure { unanswered: self.echo_unanswered });
            let cause = DisconnectCause::new(
                DisconnectCode::LCP_ECHO_TIMEOUT,
                Protocol::LCP,
                Direction::Peer,
                "peer not answering LCP Echo-Requests",
            );
            self.terminate(now, cause);
            return;
        }
        let identifier = self.lcp.fresh_identifier();
        let magic_number = self.lcp.policy.magic_number();
        self.lcp.send_extra(LcpRepr::EchoRequest { identifier, magic_number, data: Vec::new() });
        self.echo_unanswered += 1;
        self.echo_deadline = Some(now + interval);
    }

    /// Drain every sub-machine until nothing moves.
    fn pump(&mut self, now: Instant) {
        self.pump_machines(now);
        let mut nd_out = Vec::new();
        if let Some(r) = &mut self.router {
            nd_out.extend(std::iter::from_fn(|| r.poll_transmit()));
        }
        if let Some(h) = &mut self.host {
            nd_out.extend(std::iter::from_fn(|| h.poll_transmit()));
        }
        for packet in nd_out {
            self.send(Protocol::IPV6, &packet);
        }
        // Idle until the next input: the generator's buffer goes.
        self.rng.settle();
    }

    fn pump_machines(&mut self, now: Instant) {
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(action) = self.lcp.poll_action() {
                progressed = true;
                self.on_lcp(now, action);
            }
            for protocol in [Protocol::IPCP, Protocol::IPV6CP, Protocol::CCP] {
                let actions = self.ncp_actions(protocol);
                for action in actions {
                    progressed = true;
                    self.on_ncp(now, protocol, action);
                }
            }
            let outputs: Vec<_> = self
                .authenticator
                .as_mut()
                .map(|a| std::iter::from_fn(|| a.poll_output()).collect())
                .unwrap_or_default();
            for output in outputs {
                progressed = true;
                self.on_authenticator(now, output);
            }
            if let Some(a) = &mut self.authenticator {
                a.compact();
            }
            let outputs: Vec<_> = self
                .auth_peer
                .as_mut()
                .map(|a| std::iter::from_fn(|| a.poll_output()).collect())
                .unwrap_or_default();
            for output in outputs {
                progressed = true;
                self.on_auth_peer(now, output);
            }
            if !progressed {
                break;
            }
        }
    }

    fn ncp_actions(&mut self, protocol: Protocol) -> Vec<Action> {
        fn drain<P: super::fsm::OptionPolicy>(f: &mut Option<Fsm<P>>) -> Vec<Action> {
            f.as_mut().map(|f| std::iter::from_fn(|| f.poll_action()).collect()).unwrap_or_default()
        }
        match protocol {
            Protocol::IPCP => drain(&mut self.ipcp),
            Protocol::IPV6CP => drain(&mut self.ipv6cp),
            _ => self
                .ccp
                .as_mut()
                .map(|f| std::iter::from_fn(|| f.poll_action()).collect())
                .unwrap_or_default(),
        }
    }

    fn on_lcp(&mut self, now: Instant, action: Action) {
        match action {
            Action::Send(packet) => self.send(Protocol::LCP, &packet),
            Action::Up => self.lcp_up(now),
            Action::Down => self.lcp_down(),
            Action::Started => {}
            Action::Finished(reason) => {
                self.lcp_down();
                let cause = self.cause.take().map(|c| *c).unwrap_or_else(|| match reason {
                    FinishReason::Timeout { heard: true } => DisconnectCause::new(
                        DisconnectCode::LCP_TIMEOUT,
                        Protocol::LCP,
                        Direction::Local,
                        "LCP negotiation did not converge",
                    ),
                    FinishReason::Timeout { heard: false } => DisconnectCause::new(
                        DisconnectCode::LCP_NO_RECOGNIZABLE_PACKETS,
                        Protocol::LCP,
                        Direction::Peer,
                        "no LCP packets received",
                    ),
                    FinishReason::PeerTerminated => DisconnectCause::new(
                        DisconnectCode::NORMAL,
                        Protocol::LCP,
                        Direction::Peer,
                        "peer sent LCP Terminate-Request",
                    ),
                    FinishReason::Rejected => DisconnectCause::new(
                        DisconnectCode::NO_INFORMATION,
                        Protocol::LCP,
                        Direction::Peer,
                        "LCP rejected by peer",
                    ),
                    FinishReason::LocalClose | FinishReason::NotStarted => DisconnectCause::new(
                        DisconnectCode::NORMAL,
                        Protocol::LCP,
                        Direction::Local,
                        "LCP Terminate-Request sent",
                    ),
                });
                self.phase = Phase::Dead;
                self.echo_deadline = None;
                match self.config.holdoff {
                    Some(holdoff) if self.config.role == Role::Client && cause.code.calls_for_restart() => {
                        self.holdoff_until = Some(now + holdoff);
                    }
                    _ => self.events.push_back(SessionEvent::LinkDown { cause }),
                }
            }
        }
    }

    /// Client: the hold-off is over (or the peer asked): the lower layer
    /// goes down and up again (RFC 1661 §4.3 Down, Up) and LCP starts anew
    /// from Stopped or Closed.
    fn restart(&mut self, now: Instant) {
        self.holdoff_until = None;
        self.restarts += 1;
        self.cause = None;
        self.phase = Phase::Establish;
        self.lcp.down();
        self.lcp.up(now, self.rng.live());
        self.lcp.open(now, self.rng.live());
    }

    /// Client: how many times the link was started again after a failure.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// This-Layer-Up of LCP: RFC 1661 §3.4, proceed to authentication.
    fn lcp_up(&mut self, now: Instant) {
        self.phase = Phase::Authenticate;
        self.server_auth_done = false;
        self.client_auth_done = false;
        self.echo_unanswered = 0;
        self.echo_deadline = self.config.echo.interval.map(|i| now + i);
        let (local, peer) = (self.lcp.policy.local.clone(), self.lcp.policy.peer.clone());
        self.events.push_back(SessionEvent::LinkUp { local: local.clone(), peer: peer.clone() });
        // We authenticate the peer with what it acknowledged in our request.
        self.authenticator = local
            .auth
            .as_ref()
            .and_then(AuthMethod::from_protocol)
            .map(|method| self.start_authenticator(method, now));
        // The peer authenticates us with what we acknowledged in its request.
        self.auth_peer =
            match (peer.auth.as_ref().and_then(AuthMethod::from_protocol), &self.config.credentials) {
                (Some(method), Some(credentials)) => Some(Box::new(AuthPeer::start(
                    method,
                    credentials.clone(),
                    self.config.auth,
                    now,
                    self.rng.live(),
                ))),
                _ => None,
            };
        self.maybe_network(now);
    }

    fn start_authenticator(&mut self, method: AuthMethod, now: Instant) -> Authenticator {
        let config = self.config.auth;
        match (self.proxy_auth.take().map(|p| *p), method) {
            (Some(ProxyAuth::Pap { identifier, username, password }), AuthMethod::Pap) => {
                let mut pap = PapAuthenticator::new(config, now);
                pap.proxy(identifier, &username, &password);
                Authenticator::Pap(Box::new(pap))
            }
            (Some(ProxyAuth::Chap { identifier, challenge, username, response }), AuthMethod::ChapMd5) => {
                Authenticator::Chap(Box::new(ChapAuthenticator::new_proxy(
                    method, config, identifier, &challenge, &username, &response,
                )))
            }
            // No (matching) proxy data: authenticate ourselves.
            _ => Authenticator::start(method, self.config.hostname.as_bytes(), config, now, self.rng.live()),
        }
    }

    /// This-Layer-Down of LCP: every NCP goes down with it (RFC 1661 §3.5
    /// "When LCP leaves Opened, NCPs are notified").
    fn lcp_down(&mut self) {
        if let Some(f) = &mut self.ipcp {
            f.down();
        }
        if let Some(f) = &mut self.ipv6cp {
            f.down();
        }
        if let Some(f) = &mut self.ccp {
            f.down();
        }
        self.authenticator = None;
        self.auth_peer = None;
        self.echo_deadline = None;
        self.router = None;
        self.host = None;
        if matches!(self.phase, Phase::Authenticate | Phase::Network) {
            self.phase = Phase::Establish;
        }
    }

    fn maybe_network(&mut self, now: Instant) {
        if self.phase != Phase::Authenticate {
            return;
        }
        let server_ok = self.authenticator.is_none() || self.server_auth_done;
        let client_ok = self.auth_peer.is_none() || self.client_auth_done;
        if !(server_ok && client_ok) {
            return;
        }
        self.phase = Phase::Network;
        if self.ipcp.is_none() && self.ipv6cp.is_none() {
            let cause = DisconnectCause::new(
                DisconnectCode::NO_NCPS,
                Protocol(0),
                Direction::Local,
                "no network protocol configured",
            );
            self.terminate(now, cause);
            return;
        }
        if let Some(f) = &mut self.ipcp {
            f.open(now, self.rng.live());
            f.up(now, self.rng.live());
        }
        if let Some(f) = &mut self.ipv6cp {
            f.open(now, self.rng.live());
            f.up(now, self.rng.live());
        }
        if let Some(f) = &mut self.ccp {
            f.open(now, self.rng.live());
            f.up(now, self.rng.live());
        }
    }

    fn auth_failed(&mut self, now: Instant, protocol: Protocol, failure: AuthFailure, direction: Direction) {
        let (code, message) = match failure {
            AuthFailure::Timeout => (DisconnectCode::AUTH_TIMEOUT, "authentication timed out".to_string()),
            AuthFailure::Rejected { message } => (
                DisconnectCode::AUTH_FAILED,
                if message.is_empty() { "authentication failed".to_string() } else { message },
            ),
            AuthFailure::BadAuthenticatorResponse => {
                (DisconnectCode::AUTH_FAILED, "MS-CHAP-V2 authenticator response did not verify".to_string())
            }
        };
        self.terminate(now, DisconnectCause::new(code, protocol, direction, &message));
    }

    fn on_authenticator(&mut self, now: Instant, output: AuthOutput) {
        let Some(method) = self.authenticator.as_ref().map(|a| a.method()) else {
            return;
        };
        match output {
            AuthOutput::Send(packet) => self.send(method.ppp_protocol(), &packet),
            AuthOutput::Request(request) => self.events.push_back(SessionEvent::AuthRequest(request)),
            AuthOutput::Success { username, authenticator_response } => {
                self.server_auth_done = true;
                self.events.push_back(SessionEvent::Authenticated {
                    method,
                    username,
                    authenticator_response,
                });
                self.maybe_network(now);
            }
            AuthOutput::Failure(failure) => {
                self.auth_failed(now, method.ppp_protocol(), failure, Direction::Local)
            }
        }
    }

    fn on_auth_peer(&mut self, now: Instant, output: AuthOutput) {
        let Some(method) = self.auth_peer.as_ref().map(|a| a.method()) else {
            return;
        };
        match output {
            AuthOutput::Send(packet) => self.send(method.ppp_protocol(), &packet),
            AuthOutput::Request(_) => {}
            AuthOutput::Success { username, authenticator_response } => {
                self.client_auth_done = true;
                self.events.push_back(SessionEvent::Authenticated {
                    method,
                    username,
                    authenticator_response,
                });
                self.maybe_network(now);
            }
            AuthOutput::Failure(failure) => {
                self.auth_failed(now, method.ppp_protocol(), failure, Direction::Peer)
            }
        }
    }

    fn on_ncp(&mut self, now: Instant, protocol: Protocol, action: Action) {
        match action {
            Action::Send(packet) => self.send(protocol, &packet),
            Action::Up => {
                if let Some(config) = self.network_config(protocol) {
                    if let (NetworkConfig::Ipv6 { local_interface_identifier, .. }, Role::Client) =
                        (config, self.config.role)
                    {
                        let delay = nd::Host::solicitation_delay(self.rng.live());
                        self.host = Some(Box::new(nd::Host::new(now, local_interface_identifier, delay)));
                    }
                    self.events.push_back(SessionEvent::NetworkUp(config));
                }
            }
            Action::Down => {
                if protocol == Protocol::IPV6CP {
                    // The link-local addresses are gone with IPv6CP.
                    self.router = None;
                    self.host = None;
                }
                if protocol != Protocol::CCP {
                    self.events.push_back(SessionEvent::NetworkDown(protocol));
                }
            }
            Action::Started => {}
            Action::Finished(reason) => self.ncp_finished(now, protocol, reason),
        }
    }

    fn network_config(&self, protocol: Protocol) -> Option<NetworkConfig> {
        match protocol {
            Protocol::IPCP => {
                let f = self.ipcp.as_ref()?;
                let n = f.policy.negotiated;
                let config = &f.policy.config;
                Some(NetworkConfig::Ipv4 {
                    local: n.local_address.or(config.local_address).unwrap_or(Ipv4Addr::UNSPECIFIED),
                    peer: n.peer_address.or(config.peer_address).unwrap_or(Ipv4Addr::UNSPECIFIED),
                    primary_dns: n.primary_dns,
                    secondary_dns: n.secondary_dns,
                })
            }
            Protocol::IPV6CP => {
                let f = self.ipv6cp.as_ref()?;
                let n = f.policy.negotiated;
                Some(NetworkConfig::Ipv6 {
                    local_interface_identifier: n
                        .local_interface_identifier
                        .or(f.policy.local_identifier())
                        .unwrap_or([0; 8]),
                    peer_interface_identifier: n.peer_interface_identifier.unwrap_or([0; 8]),
                })
            }
            _ => None,
        }
    }

    /// An NCP gave up. The link stays while another NCP is opened or still
    /// negotiating; otherwise there is nothing to carry and LCP is closed
    /// (RFC 3145 §3.4 causes).
    fn ncp_finished(&mut self, now: Instant, protocol: Protocol, reason: FinishReason) {
        if self.phase != Phase::Network {
            return;
        }
        let alive = |f: Option<(bool, bool)>| f.is_some_and(|(opened, busy)| opened || busy);
        let state = |o: bool, b: bool| Some((o, b));
        let others = [
            self.ipcp.as_ref().and_then(|f| state(f.is_opened(), f.is_busy())),
            self.ipv6cp.as_ref().and_then(|f| state(f.is_opened(), f.is_busy())),
        ];
        if others.into_iter().any(alive) {
            return;
        }
        let address_refused = self.ipcp.as_ref().is_some_and(|f| f.policy.address_refused());
        let (code, message) = match reason {
            FinishReason::Timeout { .. } => (DisconnectCode::NCP_TIMEOUT, "NCP negotiation timed out"),
            _ if address_refused => (DisconnectCode::NCP_NO_PERMITTED_ADDRESS, "no IPv4 address obtained"),
            _ => (DisconnectCode::NO_NCPS, "no network protocol running"),
        };
        self.terminate(now, DisconnectCause::new(code, protocol, Direction::Local, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::test_rng as rng;
    use rand::SeedableRng;

    /// The two ends of a link need different streams (equal Magic-Numbers
    /// would look like a loop, RFC 1661 §6.4).
    fn seeded(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }
    use crate::ppp::authenticate::verify_password;
    use crate::ppp::fsm::State;
    use crate::ppp::lcp;
    use crate::ppp::packet::Packet;

    const ASSIGNED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DNS1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

    fn server_config() -> SessionConfig {
        let mut c = SessionConfig::server("lns");
        c.ipcp = Some(IpcpConfig {
            local_address: Some(GATEWAY),
            peer_address: Some(ASSIGNED),
            primary_dns: Some(DNS1),
            ..Default::default()
        });
        c
    }

    fn client_config(password: &str) -> SessionConfig {
        SessionConfig::client(Credentials { username: "alice".into(), password: password.into() })
    }

    /// The verifier of these tests: one user, alice, password "secret".
    fn alice(request: &AuthRequest) -> AuthDecision {
        match request.username.as_slice() {
            b"alice" => verify_password(request, "secret"),
            _ => AuthDecision::reject("Authentication failed"),
        }
    }

    /// Two sessions wired back to back on virtual time.
    struct Pair {
        now: Instant,
        server: Session,
        client: Session,
        server_events: Vec<SessionEvent>,
        client_events: Vec<SessionEvent>,
        /// Frames from the client are lost.
        client_muted: bool,
        /// Client frames of this protocol are lost.
        client_drops: Option<Protocol>,
        /// Every frame, (from_server, bytes).
        wire: Vec<(bool, Vec<u8>)>,
    }

    impl Pair {
        fn new(server: SessionConfig, client: SessionConfig) -> Self {
            Pair {
                now: Instant::now(),
                server: Session::new(server, seeded(1)),
                client: Session::new(client, seeded(2)),
                server_events: vec![],
                client_events: vec![],
                client_muted: false,
                client_drops: None,
                wire: vec![],
            }
        }

        fn start(&mut self) {
            self.server.open(self.now);
            self.client.open(self.now);
            self.pump();
        }

        fn pump(&mut self) {
            let now = self.now;
            for _ in 0..1000 {
                let mut moved = false;
                while let Some(f) = self.server.poll_transmit() {
                    moved = true;
                    self.wire.push((true, f.clone()));
                    self.client.handle_frame(now, &f).expect("client parses server frames");
                }
                while let Some(f) = self.client.poll_transmit() {
                    moved = true;
                    self.wire.push((false, f.clone()));
                    let dropped =
                        self.client_drops.is_some_and(|p| Frame::new_unchecked(&f[..]).protocol() == p);
                    if !self.client_muted && !dropped {
                        self.server.handle_frame(now, &f).expect("server parses client frames");
                    }
                }
                while let Some(e) = self.server.poll_event() {
                    moved = true;
                    if let SessionEvent::AuthRequest(r) = &e {
                        let d = alice(r);
                        self.server.auth_result(now, d);
                    }
                    self.server_events.push(e);
                }
                while let Some(e) = self.client.poll_event() {
                    moved = true;
                    self.client_events.push(e);
                }
                if !moved {
                    return;
                }
            }
            panic!("no quiescence");
        }

        /// Advance virtual time by `d`, firing timers in order.
        fn run_for(&mut self, d: Duration) {
            let end = self.now + d;
            loop {
                self.pump();
                let next =
                    [self.server.poll_timeout(), self.client.poll_timeout()].into_iter().flatten().min();
                match next {
                    Some(t) if t <= end => {
                        self.now = t.max(self.now);
                        self.server.handle_timeout(self.now);
                        self.client.handle_timeout(self.now);
                    }
                    _ => break,
                }
            }
            self.now = end;
        }

        fn link_down(events: &[SessionEvent]) -> Option<DisconnectCause> {
            events.iter().find_map(|e| match e {
                SessionEvent::LinkDown { cause } => Some(cause.clone()),
                _ => None,
            })
        }

        fn ipv4_up(events: &[SessionEvent]) -> Option<NetworkConfig> {
            events.iter().rev().find_map(|e| match e {
                SessionEvent::NetworkUp(c @ NetworkConfig::Ipv4 { .. }) => Some(*c),
                _ => None,
            })
        }

        fn lcp_codes(&self, from_server: bool) -> Vec<u8> {
            self.wire
                .iter()
                .filter(|(s, f)| *s == from_server && f.get(2..4) == Some(&[0xc0, 0x21]))
                .filter_map(|(_, f)| f.get(4).copied())
                .collect()
        }
    }

    fn assert_up(p: &Pair, method: AuthMethod) {
        assert_eq!(p.server.phase(), Phase::Network);
        assert_eq!(p.client.phase(), Phase::Network);
        assert!(
            p.server_events.iter().any(|e| matches!(e,
                SessionEvent::Authenticated { method: m, username, .. } if *m == method && username == b"alice")),
            "{:?}",
            p.server_events
        );
        assert!(p
            .client_events
            .iter()
            .any(|e| matches!(e, SessionEvent::Authenticated { method: m, .. } if *m == method)));
        assert_eq!(
            Pair::ipv4_up(&p.server_events),
            Some(NetworkConfig::Ipv4 {
                local: GATEWAY,
                peer: ASSIGNED,
                primary_dns: Some(DNS1),
                secondary_dns: None
            })
        );
        assert_eq!(
            Pair::ipv4_up(&p.client_events),
            Some(NetworkConfig::Ipv4 {
                local: ASSIGNED,
                peer: GATEWAY,
                primary_dns: Some(DNS1),
                secondary_dns: None
            })
        );
    }

    #[test]
    fn each_auth_method_succeeds() {
        for method in [AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap] {
            let mut server = server_config();
            server.lcp.require_auth = vec![method];
            let mut p = Pair::new(server, client_config("secret"));
            p.start();
            assert_up(&p, method);
            if method == AuthMethod::MsChapV2 {
                let s = p.server_events.iter().find_map(|e| match e {
                    SessionEvent::Authenticated { authenticator_response, .. } => {
                        authenticator_response.clone()
                    }
                    _ => None,
                });
                assert!(s.is_some_and(|s| s.starts_with("S=")));
            }
            // Both peers stay up while echoes are answered.
            p.run_for(Duration::from_secs(120));
            assert_eq!(Pair::link_down(&p.server_events), None);
            assert_eq!(p.server.phase(), Phase::Network);
        }
    }

    #[test]
    fn each_auth_method_fails_with_cause_16() {
        for method in [AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap] {
            let mut server = server_config();
            server.lcp.require_auth = vec![method];
            let mut p = Pair::new(server, client_config("wrong"));
            p.start();
            p.run_for(Duration::from_secs(10));
            let s = Pair::link_down(&p.server_events).expect("server down");
            assert_eq!(s.code, DisconnectCode::AUTH_FAILED, "{method:?}");
            assert_eq!(s.direction, Direction::Local);
            assert_eq!(s.protocol, method.ppp_protocol());
            let c = Pair::link_down(&p.client_events).expect("client down");
            assert_eq!(c.code, DisconnectCode::AUTH_FAILED);
            assert_eq!(c.direction, Direction::Peer);
            assert!(p.server.is_dead() && p.client.is_dead());
            assert!(Pair::ipv4_up(&p.server_events).is_none());
        }
    }

    #[test]
    fn auth_protocol_nak_walks_to_an_acceptable_one() {
        let mut client = client_config("secret");
        client.lcp.accept_auth = vec![AuthMethod::Pap];
        let mut p = Pair::new(server_config(), client);
        p.start();
        assert_up(&p, AuthMethod::Pap);
        // The server's first request asked for MS-CHAP-V2 and was Nak'ed.
        assert!(p.lcp_codes(false).contains(&packet::code::CONFIGURE_NAK));
    }

    #[test]
    fn auth_refused_by_peer_is_cause_15() {
        let mut client = client_config("secret");
        client.credentials = None;
        let mut p = Pair::new(server_config(), client);
        p.start();
        p.run_for(Duration::from_secs(10));
        assert!(p.lcp_codes(false).contains(&packet::code::CONFIGURE_REJECT));
        let cause = Pair::link_down(&p.server_events).expect("down");
        assert_eq!(cause.code, DisconnectCode::AUTH_PROTOCOL_UNACCEPTABLE);
    }

    #[test]
    fn lcp_nak_and_reject_paths() {
        // The client announces an MRU below the server's minimum: Nak'ed,
        // then dropped by the client, so the default 1500 applies.
        let mut client = client_config("secret");
        client.lcp.mru = 100;
        client.lcp.request_pfc = true;
        client.lcp.request_acfc = true;
        let mut server = server_config();
        server.lcp.accept_pfc = false;
        let mut p = Pair::new(server, client);
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        let codes = p.lcp_codes(true);
        assert!(codes.contains(&packet::code::CONFIGURE_NAK), "{codes:?}");
        assert!(codes.contains(&packet::code::CONFIGURE_REJECT), "{codes:?}");
        let (_, peer) = p.server.lcp_negotiated();
        assert_eq!(peer.mru, 1500);
        assert!(!peer.pfc && peer.acfc);
        let (local, _) = p.server.lcp_negotiated();
        assert_eq!(local.mru, 1460);
        // A raw request with MRRU and Endpoint Discriminator is rejected
        // verbatim (renegotiation: the server leaves Opened).
        let req = LcpRepr::ConfigureRequest {
            identifier: 0x42,
            options: vec![
                LcpOption::MagicNumber(0x1234_5678),
                LcpOption::Unknown { kind: 17, data: vec![0x05, 0xd4] },
                LcpOption::Unknown { kind: 19, data: vec![1, 2, 3] },
            ],
        };
        let frame = FrameRepr::full(Protocol::LCP).encapsulate(&req.to_bytes().expect("emit"));
        p.server.handle_frame(p.now, &frame).expect("frame");
        let mut reject = None;
        while let Some(f) = p.server.poll_transmit() {
            if f[4] == packet::code::CONFIGURE_REJECT {
                reject = Some(f);
            }
        }
        let reject = reject.expect("reject sent");
        assert_eq!(&reject[4..], &[4, 0x42, 0, 13, 17, 4, 5, 0xd4, 19, 5, 1, 2, 3]);
    }

    #[test]
    fn ipcp_dns_reject_and_ipv6cp() {
        let mut server = server_config();
        server.ipv6cp = Some(Ipv6cpConfig::default());
        let mut client = client_config("secret");
        // Both sides propose the same interface identifier: one is Nak'ed.
        client.ipv6cp =
            Some(Ipv6cpConfig { interface_identifier: Some([1; 8]), peer_interface_identifier: None });
        server.ipv6cp =
            Some(Ipv6cpConfig { interface_identifier: Some([1; 8]), peer_interface_identifier: None });
        let mut p = Pair::new(server, client);
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        let v6 = |events: &[SessionEvent]| {
            events.iter().find_map(|e| match e {
                SessionEvent::NetworkUp(NetworkConfig::Ipv6 {
                    local_interface_identifier,
                    peer_interface_identifier,
                }) => Some((*local_interface_identifier, *peer_interface_identifier)),
                _ => None,
            })
        };
        let (sl, sp) = v6(&p.server_events).expect("server v6 up");
        let (cl, cp) = v6(&p.client_events).expect("client v6 up");
        assert_eq!((sl, sp), (cp, cl));
        assert_ne!(sl, sp);
        // The client asked for a secondary DNS; the server has none and
        // rejected it.
        let rejects = p.wire.iter().filter(|(s, f)| *s && f.get(2..5) == Some(&[0x80, 0x21, 4])).count();
        assert_eq!(rejects, 1);
        // The client's 0.0.0.0 was Nak'ed with the assigned address, and
        // the identical interface identifiers were Nak'ed too.
        let naks = |proto: [u8; 2]| {
            p.wire.iter().filter(|(s, f)| *s && f.get(2..5) == Some(&[proto[0], proto[1], 3])).count()
        };
        assert!(naks([0x80, 0x21]) >= 1);
        assert!(naks([0x80, 0x57]) >= 1);
    }

    #[test]
    fn peer_without_ipv6cp_protocol_rejects_it() {
        let mut server = server_config();
        server.ipv6cp = Some(Ipv6cpConfig::default());
        let mut p = Pair::new(server, client_config("secret"));
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        // The client Protocol-Rejected IPv6CP; IPv4 keeps the link up.
        assert!(p.lcp_codes(false).contains(&packet::code::PROTOCOL_REJECT));
        assert_eq!(p.server.ipv6cp.as_ref().map(|f| f.state()), Some(State::Stopped));
        p.run_for(Duration::from_secs(30));
        assert_eq!(Pair::link_down(&p.server_events), None);
    }

    #[test]
    fn echo_failure_brings_link_down_with_cause_8() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        p.client_muted = true;
        p.run_for(Duration::from_secs(120));
        assert!(p.server_events.iter().any(|e| matches!(e, SessionEvent::EchoFailure { unanswered: 5 })));
        let cause = Pair::link_down(&p.server_events).expect("down");
        assert_eq!(cause.code, DisconnectCode::LCP_ECHO_TIMEOUT);
        assert_eq!(cause.protocol, Protocol::LCP);
        assert!(p.server_events.contains(&SessionEvent::NetworkDown(Protocol::IPCP)));
        assert!(p.server.is_dead());
    }

    #[test]
    fn renegotiation_in_opened_restarts_ncps() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        let (_, peer) = p.server.lcp_negotiated();
        let magic = peer.magic_number.expect("magic");
        // The subscriber's LCP restarts: a new Configure-Request.
        let req = LcpRepr::ConfigureRequest {
            identifier: 0x99,
            options: vec![LcpOption::MaximumReceiveUnit(1400), LcpOption::MagicNumber(magic)],
        };
        let frame = FrameRepr::full(Protocol::LCP).encapsulate(&req.to_bytes().expect("emit"));
        p.server.handle_frame(p.now, &frame).expect("frame");
        assert_eq!(p.server.phase(), Phase::Establish);
        // Let timers run too: a Challenge reaching the client before its own
        // LCP reopened would be lost and retransmitted (RFC 1994 §4.1).
        p.run_for(Duration::from_secs(5));
        for events in [&p.server_events, &p.client_events] {
            assert!(events.contains(&SessionEvent::NetworkDown(Protocol::IPCP)));
            let ups = events.iter().filter(|e| matches!(e, SessionEvent::NetworkUp(_))).count();
            assert_eq!(
                ups,
                2,
                "{:?}",
                events
                    .iter()
                    .map(|e| format!("{e:?}").chars().take(60).collect::<String>())
                    .collect::<Vec<_>>()
            );
            let auths = events.iter().filter(|e| matches!(e, SessionEvent::Authenticated { .. })).count();
            assert_eq!(auths, 2);
        }
        assert_eq!(p.server.phase(), Phase::Network);
        assert_eq!(Pair::link_down(&p.server_events), None);
    }

    #[test]
    fn max_configure_expiry() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.client_muted = true;
        p.server.open(p.now);
        let start = p.now;
        p.run_for(Duration::from_secs(60));
        let sent = p.wire.iter().filter(|(s, _)| *s).count();
        assert_eq!(sent, 10, "Max-Configure Configure-Requests");
        let cause = Pair::link_down(&p.server_events).expect("down");
        assert_eq!(cause.code, DisconnectCode::LCP_NO_RECOGNIZABLE_PACKETS);
        assert!(p.server.is_dead());
        assert!(p.now - start >= Duration::from_secs(30));

        // A peer that answers but never acknowledges: cause 5.
        let mut s = Session::new(server_config(), rng());
        let now = Instant::now();
        s.open(now);
        let mut t = now;
        let mut seen_down = None;
        for _ in 0..40 {
            while s.poll_transmit().is_some() {}
            // An unacceptable request each round keeps LCP from converging.
            let req = LcpRepr::ConfigureRequest {
                identifier: 1,
                options: vec![LcpOption::Unknown { kind: 99, data: vec![] }],
            };
            let frame = FrameRepr::full(Protocol::LCP).encapsulate(&req.to_bytes().expect("emit"));
            s.handle_frame(t, &frame).expect("frame");
            match s.poll_timeout() {
                Some(next) => t = next,
                None => break,
            }
            s.handle_timeout(t);
            while let Some(e) = s.poll_event() {
                if let SessionEvent::LinkDown { cause } = e {
                    seen_down = Some(cause);
                }
            }
        }
        assert_eq!(seen_down.map(|c| c.code), Some(DisconnectCode::LCP_TIMEOUT));
    }

    #[test]
    fn loopback_detected_by_magic_numbers() {
        let mut s = Session::new(server_config(), rng());
        let now = Instant::now();
        s.open(now);
        let mut down = None;
        for _ in 0..200 {
            let Some(f) = s.poll_transmit() else { break };
            // The link hands every frame straight back.
            s.handle_frame(now, &f).expect("own frame");
            while let Some(e) = s.poll_event() {
                if let SessionEvent::LinkDown { cause } = e {
                    down = Some(cause);
                }
            }
        }
        let cause = down.expect("link down");
        assert_eq!(cause.code, DisconnectCode::LCP_LOOPBACK);
        assert_eq!(cause.direction, Direction::Global);
    }

    #[test]
    fn protocol_reject_and_code_reject() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        let now = p.now;
        // CCP is not enabled: Protocol-Reject carrying the CCP packet.
        let ccp = [0xff, 0x03, 0x80, 0xfd, 0x01, 0x01, 0x00, 0x0a, 0x12, 0x06, 0, 0, 0, 0x40];
        p.server.handle_frame(now, &ccp).expect("frame");
        let f = p.server.poll_transmit().expect("reject");
        assert_eq!(&f[..5], &[0xff, 0x03, 0xc0, 0x21, packet::code::PROTOCOL_REJECT]);
        assert_eq!(&f[8..10], &[0x80, 0xfd]);
        assert_eq!(&f[10..], &ccp[4..]);
        // An unknown LCP code: Code-Reject.
        let unknown = [0xff, 0x03, 0xc0, 0x21, 0x20, 0x05, 0x00, 0x05, 0xaa];
        p.server.handle_frame(now, &unknown).expect("frame");
        let f = p.server.poll_transmit().expect("code reject");
        assert_eq!(f[4], packet::code::CODE_REJECT);
        assert_eq!(&f[8..], &unknown[4..]);
        // Garbage does not panic and is reported.
        assert!(p.server.handle_frame(now, &[0xff, 0x03, 0xc0]).is_err());
        assert!(p.server.handle_frame(now, &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 99]).is_err());
        // With CCP enabled the null negotiator rejects the option instead.
        let mut server = server_config();
        server.ccp = true;
        let mut p = Pair::new(server, client_config("secret"));
        p.start();
        p.server.handle_frame(p.now, &ccp).expect("frame");
        let mut codes = vec![];
        while let Some(f) = p.server.poll_transmit() {
            if f.get(2..4) == Some(&[0x80, 0xfd]) {
                codes.push(f[4]);
            }
        }
        assert!(codes.contains(&packet::code::CONFIGURE_REJECT), "{codes:?}");
    }

    #[test]
    fn terminate_by_either_side() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.start();
        p.client.close(p.now, None);
        p.run_for(Duration::from_secs(10));
        let s = Pair::link_down(&p.server_events).expect("server down");
        assert_eq!((s.code, s.direction), (DisconnectCode::NORMAL, Direction::Peer));
        let c = Pair::link_down(&p.client_events).expect("client down");
        assert_eq!((c.code, c.direction), (DisconnectCode::ADMINISTRATIVE, Direction::Local));
        assert!(p.server.is_dead() && p.client.is_dead());
        // A dead session ignores frames and has no timers.
        assert_eq!(p.server.poll_timeout(), None);
        p.server.handle_frame(p.now, &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4]).expect("ignored");
        assert!(p.server.poll_transmit().is_none());
    }

    #[test]
    fn chap_timeout_when_peer_never_answers() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        // A fresh pair where the client drops every CHAP packet is simpler
        // with a raw client: answer LCP only.
        let mut s = Session::new(server_config(), seeded(1));
        let mut c = Session::new(client_config("secret"), seeded(2));
        let mut now = Instant::now();
        s.open(now);
        c.open(now);
        let mut down = None;
        for _ in 0..200 {
            let mut moved = false;
            while let Some(f) = s.poll_transmit() {
                moved = true;
                if f.get(2..4) != Some(&[0xc2, 0x23]) {
                    c.handle_frame(now, &f).expect("frame");
                }
            }
            while let Some(f) = c.poll_transmit() {
                moved = true;
                s.handle_frame(now, &f).expect("frame");
            }
            while let Some(e) = s.poll_event() {
                if let SessionEvent::LinkDown { cause } = e {
                    down = Some(cause);
                }
            }
            if !moved {
                match s.poll_timeout() {
                    Some(t) => {
                        now = t;
                        s.handle_timeout(now);
                        c.handle_timeout(now);
                    }
                    None => break,
                }
            }
        }
        let cause = down.expect("down");
        assert_eq!(cause.code, DisconnectCode::AUTH_TIMEOUT);
        assert_eq!(cause.protocol, Protocol::CHAP);
    }

    fn proxy_lcp(auth: &LcpOption) -> ProxyLcp {
        let sent = [LcpOption::MaximumReceiveUnit(1460), auth.clone(), LcpOption::MagicNumber(0x0a0b_0c0d)];
        let received = [LcpOption::MaximumReceiveUnit(1492), LcpOption::MagicNumber(0x01020304)];
        let encode = |o: &[LcpOption]| {
            let mut buf = vec![0u8; packet::options_len(o)];
            packet::emit_options(o, &mut buf).expect("emit");
            buf
        };
        ProxyLcp {
            initial_received: encode(&received),
            last_sent: encode(&sent),
            last_received: encode(&received),
        }
    }

    #[test]
    fn proxy_lcp_and_proxy_pap() {
        let mut config = server_config();
        config.accept_proxy_lcp = true;
        config.accept_proxy_auth = true;
        let mut s = Session::new(config, rng());
        let now = Instant::now();
        let proxy = proxy_lcp(&LcpOption::AuthenticationProtocol(lcp::AuthProtocol::Pap));
        s.open_with_proxy(
            now,
            &proxy,
            Some(ProxyAuth::Pap { identifier: 9, username: b"alice".to_vec(), password: b"secret".to_vec() }),
        );
        assert_eq!(s.phase(), Phase::Authenticate);
        assert!(s.poll_transmit().is_none(), "no LCP negotiation");
        assert!(matches!(s.poll_event(), Some(SessionEvent::LinkUp { peer, .. }) if peer.mru == 1492));
        let Some(SessionEvent::AuthRequest(r)) = s.poll_event() else { panic!() };
        assert!(r.proxied);
        assert!(s.auth_result(now, alice(&r)));
        // The PAP Ack goes to the subscriber with the LAC's identifier, then
        // IPCP starts.
        assert_eq!(s.poll_transmit(), Some(vec![0xff, 0x03, 0xc0, 0x23, 2, 9, 0, 5, 0]));
        let ipcp = s.poll_transmit().expect("ipcp");
        assert_eq!(&ipcp[2..5], &[0x80, 0x21, 1]);
        assert_eq!(s.phase(), Phase::Network);
    }

    #[test]
    fn proxy_chap_and_fallbacks() {
        let mut config = server_config();
        config.accept_proxy_lcp = true;
        config.accept_proxy_auth = true;
        let now = Instant::now();
        let challenge = vec![3u8; 16];
        let response = crate::ppp::chap::md5_response(4, b"secret", &challenge).to_vec();
        let mut s = Session::new(config.clone(), rng());
        s.open_with_proxy(
            now,
            &proxy_lcp(&LcpOption::AuthenticationProtocol(AuthMethod::ChapMd5.to_protocol())),
            Some(ProxyAuth::Chap { identifier: 4, challenge, username: b"alice".to_vec(), response }),
        );
        let r = std::iter::from_fn(|| s.poll_event())
            .find_map(|e| match e {
                SessionEvent::AuthRequest(r) => Some(r),
                _ => None,
            })
            .expect("auth request");
        s.auth_result(now, alice(&r));
        assert_eq!(s.poll_transmit(), Some(vec![0xff, 0x03, 0xc2, 0x23, 3, 4, 0, 4]));

        // Proxy LCP without an acceptable auth protocol: full negotiation.
        let mut s = Session::new(config.clone(), rng());
        let mut bad = proxy_lcp(&LcpOption::MagicNumber(1));
        bad.last_sent = vec![0x05, 0x06, 0, 0, 0, 1];
        s.open_with_proxy(now, &bad, None);
        assert_eq!(s.phase(), Phase::Establish);
        let f = s.poll_transmit().expect("LCP request");
        assert_eq!(&f[2..5], &[0xc0, 0x21, 1]);
        // Malformed proxy AVP bytes: full negotiation as well.
        let mut s = Session::new(config, rng());
        let garbage = ProxyLcp { initial_received: vec![], last_sent: vec![1, 9], last_received: vec![] };
        s.open_with_proxy(now, &garbage, None);
        assert_eq!(s.phase(), Phase::Establish);
        // Proxy LCP disabled: full negotiation.
        let mut s = Session::new(server_config(), rng());
        s.open_with_proxy(now, &proxy_lcp(&LcpOption::AuthenticationProtocol(lcp::AuthProtocol::Pap)), None);
        assert_eq!(s.phase(), Phase::Establish);
    }

    #[test]
    fn address_assigned_late_and_echo_replies() {
        let mut server = server_config();
        server.ipcp = Some(IpcpConfig { local_address: Some(GATEWAY), ..Default::default() });
        let mut p = Pair::new(server, client_config("secret"));
        // RADIUS gives the address before IPCP starts.
        p.server.set_peer_ipv4(ASSIGNED);
        p.start();
        let up = Pair::ipv4_up(&p.client_events).expect("client v4");
        assert!(matches!(up, NetworkConfig::Ipv4 { local, .. } if local == ASSIGNED));
        // Echo-Request is answered with our magic and the same data.
        let (local, _) = p.server.lcp_negotiated();
        let magic = local.magic_number.expect("magic");
        let echo = [0xff, 0x03, 0xc0, 0x21, 9, 7, 0, 10, 0, 0, 0, 1, 0xab, 0xcd];
        p.server.handle_frame(p.now, &echo).expect("frame");
        let reply = p.server.poll_transmit().expect("reply");
        let mut want = vec![0xff, 0x03, 0xc0, 0x21, 10, 7, 0, 10];
        want.extend_from_slice(&magic.to_be_bytes());
        want.extend_from_slice(&[0xab, 0xcd]);
        assert_eq!(reply, want);
        // LCP packets are parsed by the generic parser too.
        assert!(Packet::new_checked(&reply[4..]).is_ok());
    }

    #[test]
    fn no_ncp_left_is_cause_18() {
        // The subscriber runs no IPCP: it Protocol-Rejects ours.
        let mut client = client_config("secret");
        client.ipcp = None;
        client.ipv6cp = Some(Ipv6cpConfig::default());
        let mut p = Pair::new(server_config(), client);
        p.start();
        p.run_for(Duration::from_secs(10));
        let cause = Pair::link_down(&p.server_events).expect("down");
        assert_eq!(cause.code, DisconnectCode::NO_NCPS);
        assert_eq!(cause.protocol, Protocol::IPCP);
    }

    #[test]
    fn ncp_timeout_is_cause_17() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.client_drops = Some(Protocol::IPCP);
        p.start();
        assert_eq!(p.server.phase(), Phase::Network);
        p.run_for(Duration::from_secs(60));
        let cause = Pair::link_down(&p.server_events).expect("down");
        assert_eq!(cause.code, DisconnectCode::NCP_TIMEOUT);
        assert_eq!(cause.protocol, Protocol::IPCP);
    }

    #[test]
    fn router_advertisement_gives_the_client_its_address() {
        let mut server = server_config();
        server.ipcp = None;
        server.ipv6cp = Some(Ipv6cpConfig::default());
        let mut client = client_config("secret");
        client.ipcp = None;
        client.ipv6cp = Some(Ipv6cpConfig::default());
        let mut p = Pair::new(server, client);
        p.start();
        let Some(NetworkConfig::Ipv6 { peer_interface_identifier, .. }) =
            p.server_events.iter().find_map(|e| match e {
                SessionEvent::NetworkUp(c @ NetworkConfig::Ipv6 { .. }) => Some(*c),
                _ => None,
            })
        else {
            panic!("IPv6CP not up: {:?}", p.server_events)
        };
        // The client solicits within a second (§6.3.7); nothing to
        // advertise yet.
        p.run_for(Duration::from_secs(1));
        let is_nd = |f: &[u8], kind: u8| {
            let frame = Frame::new_unchecked(f);
            frame.protocol() == Protocol::IPV6
                && nd::Repr::parse_bytes(frame.payload()).is_ok()
                && frame.payload().get(40) == Some(&kind)
        };
        let count = |p: &Pair, from_server: bool, kind: u8| {
            p.wire.iter().filter(|(s, f)| *s == from_server && is_nd(f, kind)).count()
        };
        assert_eq!(count(&p, false, nd::ICMPV6_ROUTER_SOLICITATION), 1);
        assert!(p.client.ipv6_address().is_none());
        let prefix: Ipv6Addr = "2001:db8:100:42::".parse().expect("prefix");
        p.server.set_ipv6_prefix(p.now, Some((prefix, 64)));
        p.pump();
        assert_eq!(count(&p, true, nd::ICMPV6_ROUTER_ADVERTISEMENT), 1);
        let want = nd::slaac_address(prefix, peer_interface_identifier);
        assert!(p.client_events.contains(&SessionEvent::Ipv6AddressUp {
            prefix,
            prefix_len: 64,
            address: want
        }));
        assert_eq!(p.client.ipv6_address(), Some(want));
        assert_eq!(p.server.ipv6_prefix(), Some((prefix, 64)));
        // Three advertisements within the first 32 s, then the slow pace;
        // the client stopped soliciting once it had its address.
        p.run_for(Duration::from_secs(40));
        assert_eq!(count(&p, true, nd::ICMPV6_ROUTER_ADVERTISEMENT), 3);
        assert_eq!(count(&p, false, nd::ICMPV6_ROUTER_SOLICITATION), 1);
        // Then one every 198..600 s.
        p.run_for(Duration::from_secs(700));
        let periodic = count(&p, true, nd::ICMPV6_ROUTER_ADVERTISEMENT);
        assert!((4..=6).contains(&periodic), "{periodic}");
        // Other IPv6 on the control path is refused for the owner to count;
        // a new solicitation is answered.
        let udp = [0x60, 0, 0, 0, 0, 8, 17, 64];
        let mut bogus = FrameRepr::full(Protocol::IPV6).encapsulate(&[&udp[..], &[0; 40]].concat());
        assert_eq!(p.server.handle_frame(p.now, &bogus), Err(Error::NotNeighbourDiscovery));
        bogus.truncate(6);
        assert!(p.server.handle_frame(p.now, &bogus).is_err());
        let rs = nd::Host::new(p.now, peer_interface_identifier, Duration::ZERO).solicitation().emit();
        p.server.handle_frame(p.now, &FrameRepr::full(Protocol::IPV6).encapsulate(&rs)).expect("RS");
        p.pump();
        assert_eq!(count(&p, true, nd::ICMPV6_ROUTER_ADVERTISEMENT), periodic + 1);
        // No prefix any more: advertising stops.
        p.server.set_ipv6_prefix(p.now, None);
        assert_eq!(p.server.ipv6_prefix(), None);
        p.run_for(Duration::from_secs(1300));
        assert_eq!(count(&p, true, nd::ICMPV6_ROUTER_ADVERTISEMENT), periodic + 1);
    }

    #[test]
    fn ipv6_only_session() {
        let mut server = server_config();
        server.ipcp = None;
        server.ipv6cp = Some(Ipv6cpConfig::default());
        let mut client = client_config("secret");
        client.ipcp = None;
        client.ipv6cp = Some(Ipv6cpConfig::default());
        let mut p = Pair::new(server, client);
        p.start();
        assert!(p
            .server_events
            .iter()
            .any(|e| matches!(e, SessionEvent::NetworkUp(NetworkConfig::Ipv6 { .. }))));
        assert!(Pair::ipv4_up(&p.server_events).is_none());
        p.run_for(Duration::from_secs(30));
        assert_eq!(Pair::link_down(&p.server_events), None);
    }

    #[test]
    fn mutated_frames_never_panic() {
        use rand::Rng;
        let mut rng = seeded(0x1661);
        // Collect a realistic set of frames from a full exchange.
        let mut server = server_config();
        server.ipv6cp = Some(Ipv6cpConfig::default());
        server.ccp = true;
        let mut client = client_config("secret");
        client.ipv6cp = Some(Ipv6cpConfig::default());
        let mut p = Pair::new(server.clone(), client);
        p.start();
        let corpus: Vec<Vec<u8>> = p.wire.iter().map(|(_, f)| f.clone()).collect();
        assert!(corpus.len() > 10);
        // Feed mutations to fresh sessions of both roles in various phases.
        for round in 0..300 {
            let mut target = if round % 2 == 0 {
                Session::new(server.clone(), seeded(round))
            } else {
                Session::new(client_config("secret"), seeded(round))
            };
            let now = Instant::now();
            target.open(now);
            for _ in 0..20 {
                let mut f = corpus[rng.gen_range(0..corpus.len())].clone();
                match rng.gen_range(0..4) {
                    0 => {
                        let i = rng.gen_range(0..f.len());
                        f[i] ^= 1 << rng.gen_range(0..8);
                    }
                    1 => f.truncate(rng.gen_range(0..f.len())),
                    2 => {
                        let i = rng.gen_range(0..f.len());
                        f[i] = rng.gen();
                    }
                    _ => f.extend((0..rng.gen_range(0..8)).map(|_| rng.gen::<u8>())),
                }
                let _ = target.handle_frame(now, &f);
                while target.poll_transmit().is_some() {}
                while let Some(e) = target.poll_event() {
                    if let SessionEvent::AuthRequest(_) = e {
                        target.auth_result(now, AuthDecision::accept());
                    }
                }
            }
            if let Some(t) = target.poll_timeout() {
                target.handle_timeout(t);
            }
        }
    }

    #[test]
    fn client_starts_again_after_lcp_gives_up() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        // The LNS is not there yet: the subscriber's LCP runs out of
        // Configure-Requests (RFC 1661 §4.6), holds off, and starts again.
        p.client.open(p.now);
        p.run_for(Duration::from_secs(32));
        assert_eq!(p.client.restarts(), 0);
        assert_eq!(p.client.phase(), Phase::Dead);
        assert!(!p.client.is_dead());
        p.run_for(Duration::from_secs(2));
        assert_eq!(p.client.restarts(), 1);
        assert_eq!(p.client.phase(), Phase::Establish);
        p.server.open(p.now);
        p.run_for(Duration::from_secs(10));
        assert_up(&p, AuthMethod::MsChapV2);
        assert_eq!(Pair::link_down(&p.client_events), None);
        // During the hold-off a Configure-Request starts it at once.
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.client.open(p.now);
        p.run_for(Duration::from_secs(31));
        assert_eq!(p.client.phase(), Phase::Dead);
        p.server.open(p.now);
        p.pump();
        assert_eq!(p.client.restarts(), 1);
        assert_up(&p, AuthMethod::MsChapV2);
        // Closed on purpose, or refused: no new start.
        p.client.close(p.now, None);
        p.run_for(Duration::from_secs(60));
        assert!(p.client.is_dead() && p.client.restarts() == 1);
        let mut server = server_config();
        server.holdoff = Some(DEFAULT_HOLDOFF);
        let mut p = Pair::new(server, client_config("wrong"));
        p.start();
        p.run_for(Duration::from_secs(60));
        assert_eq!(Pair::link_down(&p.client_events).map(|c| c.code), Some(DisconnectCode::AUTH_FAILED));
        assert!(p.client.is_dead() && p.client.restarts() == 0);
        // The server role never holds off, whatever it is configured with.
        let mut server = server_config();
        server.holdoff = Some(DEFAULT_HOLDOFF);
        let mut p = Pair::new(server, client_config("secret"));
        p.client_muted = true;
        p.server.open(p.now);
        p.run_for(Duration::from_secs(60));
        assert_eq!(
            Pair::link_down(&p.server_events).map(|c| c.code),
            Some(DisconnectCode::LCP_NO_RECOGNIZABLE_PACKETS)
        );
        assert!(p.server.is_dead());
    }

    #[test]
    fn a_restored_link_shares_its_configuration_again() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        let now = p.now;
        let json = crate::snapshot::with_base(now, || serde_json::to_string(&p.server)).expect("serialize");
        let mut restored: Session =
            crate::snapshot::with_base(now, || serde_json::from_str(&json)).expect("deserialize");
        assert!(!Arc::ptr_eq(&restored.config, &p.server.config), "read back: a copy of its own");
        assert!(matches!(restored.lcp.policy.config, LcpConfigRef::Own(_)));
        let mut other = (*p.server.config).clone();
        other.lcp.mru -= 8;
        let encoded = |c: &SessionConfig| postcard::to_stdvec(c).expect("encode");
        assert!(
            !restored.share_config(&Arc::new(other.clone()), &encoded(&other)),
            "another one is not taken"
        );
        assert!(restored.share_config(&p.server.config, &encoded(&p.server.config)));
        assert!(Arc::ptr_eq(&restored.config, &p.server.config));
        assert!(
            matches!(&restored.lcp.policy.config, LcpConfigRef::Link(c) if Arc::ptr_eq(c, &p.server.config))
        );
        // The link goes on as before.
        p.server = restored;
        let wire_before = p.wire.len();
        p.run_for(Duration::from_secs(60));
        assert_eq!(Pair::link_down(&p.server_events), None);
        assert_eq!(Pair::link_down(&p.client_events), None);
        assert_eq!(p.server.phase(), Phase::Network);
        assert!(p.wire.len() > wire_before, "echoes both ways");
    }

    #[test]
    fn snapshot_restores_a_working_link() {
        let mut p = Pair::new(server_config(), client_config("secret"));
        p.start();
        assert_up(&p, AuthMethod::MsChapV2);
        // Between two echoes of the server's keepalive.
        p.run_for(Duration::from_secs(14));
        let taken = p.now;
        let echo_due = p.server.echo_deadline.expect("echo timer running");
        let magic = p.server.lcp_negotiated().0.magic_number.expect("magic");
        let json = crate::snapshot::with_base(taken, || serde_json::to_string(&p.server)).expect("serialize");
        // The process restarts: the state is read back 10 s later.
        let restored_at = taken + Duration::from_secs(10);
        let restored: Session =
            crate::snapshot::with_base(restored_at, || serde_json::from_str(&json)).expect("deserialize");
        assert_eq!(restored.phase(), Phase::Network);
        assert_eq!(restored.lcp_negotiated(), p.server.lcp_negotiated());
        assert_eq!(restored.rng, p.server.rng, "the random stream carries on");
        // Every timer is as far from the restore as it was from the snapshot.
        assert_eq!(restored.echo_deadline, Some(restored_at + (echo_due - taken)));
        assert_eq!(
            restored.poll_timeout().map(|t| t - restored_at),
            p.server.poll_timeout().map(|t| t - taken)
        );
        // Meanwhile the subscriber lived on, unheard.
        while let Some(t) = p.client.poll_timeout().filter(|t| *t <= restored_at) {
            p.client.handle_timeout(t);
            while p.client.poll_transmit().is_some() {}
        }
        p.server = restored;
        p.now = restored_at;
        let (wire_before, server_events_before) = (p.wire.len(), p.server_events.len());
        p.run_for(Duration::from_secs(60));
        // No renegotiation, no loss of the link, and echoes both ways.
        assert_eq!(Pair::link_down(&p.server_events), None);
        assert_eq!(Pair::link_down(&p.client_events), None);
        assert_eq!(p.server.phase(), Phase::Network);
        assert_eq!(
            p.server_events.len(),
            server_events_before,
            "{:?}",
            &p.server_events[server_events_before..]
        );
        let after = &p.wire[wire_before..];
        let lcp = |from_server: bool, code: u8| {
            after
                .iter()
                .filter(move |(s, f)| *s == from_server && f.get(2..5) == Some(&[0xc0, 0x21, code]))
                .map(|(_, f)| f.clone())
        };
        assert_eq!(lcp(true, packet::code::CONFIGURE_REQUEST).count(), 0);
        assert_eq!(lcp(false, packet::code::CONFIGURE_REQUEST).count(), 0);
        let requests: Vec<_> = lcp(true, packet::code::ECHO_REQUEST).collect();
        assert!(requests.len() >= 5, "{}", requests.len());
        assert!(requests.iter().all(|f| f.get(8..12) == Some(&magic.to_be_bytes()[..])));
        assert_eq!(lcp(false, packet::code::ECHO_REPLY).count(), requests.len());
        let replies: Vec<_> = lcp(true, packet::code::ECHO_REPLY).collect();
        assert!(
            !replies.is_empty() && replies.iter().all(|f| f.get(8..12) == Some(&magic.to_be_bytes()[..]))
        );
        assert_eq!(p.server.echo_unanswered, 0);
    }

    #[test]
    fn disconnect_cause_avp_value() {
        let cause =
            DisconnectCause::new(DisconnectCode::LCP_ECHO_TIMEOUT, Protocol::LCP, Direction::Peer, "dead");
        assert_eq!(cause.to_avp_value(), vec![0, 8, 0xc0, 0x21, 1, b'd', b'e', b'a', b'd']);
    }
}
