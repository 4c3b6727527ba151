//! The event loop of `lns-controlplane`, top to bottom.
//!
//! It owns one UDP socket, one sans-IO [`Endpoint`] (all of L2TP), the data
//! plane's session table and the control socket, and nothing else: every
//! protocol decision is the Endpoint's. Per wake-up: feed the Endpoint a
//! datagram, the time, or an operator's command; then send what it wants
//! sent and act on its events (a session up is written into the maps, a
//! session down is removed); then sleep until its next deadline.
//!
//! Where things happen:
//! - a session enters the data plane: [`Lns::session_up`], in state
//!   Control, and PPP starts on it;
//! - PPP runs per session ([`Lns::drive_ppp`]): credentials are checked and
//!   an address assigned in [`Lns::on_ppp_event`], and when IPCP opens the
//!   entry switches to Forwarding with the subscriber's address;
//! - it leaves: [`Lns::session_down`] (CDN either way, StopCCN, retransmit
//!   timeout: the Endpoint reports each as `SessionDown`), and at exit
//!   [`Lns::finish`];
//! - a CDN or StopCCN is sent on an operator's request: [`Lns::on_request`];
//! - on SIGINT/SIGTERM every tunnel gets StopCCN: [`Lns::shutdown`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lns_bpf::abi;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Span};

use super::aaa::{AuthBackend, AuthContext, Authorization, Ipv6Pools, LocalUsers, Pools};
use super::config::Config;
use super::control::{Command, ControlSocket};
use super::dynauth;
use super::fastpath::SessionTable;
use super::radius::{self, Radius, SessionAccounting};
use super::udp::{Batch, L2tpSocket, Outgoing, Received};
use crate::ctl::{RadiusServerRow, RadiusStatus, Request, Response, SessionRow, Stats, TunnelRow};
use crate::l2tp::avp::{cdn, error_code, proxy_authen, stopccn};
use crate::l2tp::header::{Packet, Repr};
use crate::l2tp::session::SessionState as CallState;
use crate::l2tp::{
    DatagramEvent, DropReason, Endpoint, Event, ResultCode, SessionId, SessionInfo, TunnelDownReason,
    TunnelId, TunnelState,
};
use crate::ppp::{
    self, AuthDecision, AuthRequest, DisconnectCode, NetworkConfig, ProxyAuth, ProxyLcp, SessionConfig,
    SessionEvent,
};
use lns_radius::attribute::{acct_terminate_cause, error_cause};

/// Datagrams taken from the socket in one pass of the loop.
const RX_BURST: usize = 64;
mod ipv6;

/// RFC 1661 §6.1: the MRU until LCP negotiates another.
const DEFAULT_MRU: u16 = 1500;

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let table = SessionTable::open(&cfg.dataplane)?;
    if !table.has_dataplane() {
        warn!("running without a data plane (--no-dataplane): sessions are written to no map");
    }
    let users = match &cfg.ppp.users_file {
        Some(path) => LocalUsers::load(path)?,
        None => {
            warn!("no users file: every PPP authentication is refused");
            LocalUsers::default()
        }
    };
    let pools = Pools::new(&cfg.ppp.pools)?;
    for u in users.users() {
        if let Some(p) = u.pool.as_ref().filter(|p| !pools.has(p)) {
            anyhow::bail!("user {} names pool {p}, which is not configured", u.name);
        }
    }
    let socket =
        Arc::new(L2tpSocket::bind(cfg.listen).with_context(|| format!("binding UDP {}", cfg.listen))?);
    let listen = socket.local_addr()?;
    let mut control = ControlSocket::bind(&cfg.control_socket)?;
    let (to_loop, mut commands) = mpsc::channel::<Command>(64);
    control.serve(to_loop);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    info!(
        %listen,
        control_socket = %control.path().display(),
        dataplane = table.has_dataplane(),
        slots = table.size(),
        "lns-controlplane ready"
    );

    let users = Arc::new(users);
    let host_name = String::from_utf8_lossy(&cfg.endpoint.tunnel.host_name).into_owned();
    let radius = match &cfg.radius {
        Some(settings) => {
            let mut settings = settings.clone();
            settings.nas_ip_address = settings.nas_ip_address.or(radius::nas_ip_of(listen.ip()));
            Some((Radius::start(&settings, &host_name)?, settings))
        }
        None => None,
    };
    let auth: Arc<dyn AuthBackend> =
        match radius.as_ref().and_then(|(r, settings)| r.auth_backend(settings, Arc::clone(&users))) {
            Some(backend) => Arc::new(backend),
            None => users,
        };
    let mut dynauth_jobs = None;
    let mut dynauth_stats = None;
    if let Some((r, settings)) = &radius {
        if let Some(d) = &settings.dynauth {
            let clients = d
                .clients
                .iter()
                .map(|c| dynauth::DynAuthClient {
                    address: c.address,
                    secret: c.secret.clone().into_bytes(),
                    require_message_authenticator: c.require_message_authenticator,
                })
                .collect();
            let server = dynauth::DynAuthServer::new(
                clients,
                d.event_timestamp_window,
                d.require_event_timestamp,
                r.nas().clone(),
            );
            let (jobs, stats) = dynauth::spawn(d.listen, server)
                .with_context(|| format!("binding the dynamic authorization port {}", d.listen))?;
            dynauth_jobs = Some(jobs);
            dynauth_stats = Some(stats);
        }
    }
    let mut lns = Lns::new(cfg, socket.clone(), listen, table, auth, pools);
    lns.radius = radius.map(|(r, _)| r);
    lns.dynauth_stats = dynauth_stats;
    let mut buf = vec![0u8; 65536];
    let mut drain_until: Option<Instant> = None;
    loop {
        let wake_at =
            [lns.endpoint.poll_timeout(), lns.ppp_timeout(), drain_until].into_iter().flatten().min();
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            r = socket.recv(&mut buf) => Wake::Datagram(r),
            () = sleep => Wake::Timer,
            Some(c) = commands.recv() => Wake::Command(c),
            Some(a) = lns.auth_rx.recv() => Wake::Auth(a),
            Some(job) = async {
                match dynauth_jobs.as_mut() {
                    Some(j) => j.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::DynAuth(job),
            _ = sigterm.recv(), if drain_until.is_none() => Wake::Stop("SIGTERM"),
            _ = sigint.recv(), if drain_until.is_none() => Wake::Stop("SIGINT"),
        };
        let now = Instant::now();
        match wake {
            Wake::Datagram(Ok(rx)) => {
                if let Some(data) = buf.get(..rx.len) {
                    lns.on_datagram(now, rx, data);
                }
                // A burst (a LAC bringing up many calls) is handled in
                // one pass: the rest of what is waiting, then one flush.
                for _ in 1..RX_BURST {
                    match socket.try_recv(&mut buf) {
                        Ok(Some(rx)) => {
                            if let Some(data) = buf.get(..rx.len) {
                                lns.on_datagram(now, rx, data);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %e, "UDP receive");
                            break;
                        }
                    }
                }
            }
            Wake::Datagram(Err(e)) => warn!(error = %e, "UDP receive"),
            Wake::Timer => lns.on_timer(now),
            Wake::Auth(a) => lns.on_auth_answer(now, a),
            Wake::DynAuth(job) => lns.on_dynauth(now, job),
            Wake::Command((Request::Radius, reply)) if lns.radius.is_some() => {
                // The client and the accounting sender answer
                // asynchronously; the loop does not wait for them.
                let status = lns.radius_status();
                tokio::spawn(async move {
                    let _ = reply.send(status.await);
                });
            }
            Wake::Command((req, reply)) => {
                let answer = lns.on_request(now, req);
                let _ = reply.send(answer);
            }
            Wake::Stop(sig) => {
                info!(
                    signal = sig,
                    tunnels = lns.endpoint.tunnel_count(),
                    "stopping: StopCCN to every tunnel"
                );
                drain_until = Some(lns.shutdown(now));
            }
        }
        lns.flush(Instant::now());
        if let Some(until) = drain_until {
            if lns.stopped() || Instant::now() >= until {
                break;
            }
        }
    }
    lns.finish();
    if let Some(r) = &lns.radius {
        r.nas_record(lns_radius::accounting::AcctStatusType::AccountingOff);
    }
    if let Some(acct) = lns.radius.as_ref().and_then(|r| r.accounting().cloned()) {
        // Every Stop is on disk once this returns; those a server answers
        // in time leave no trace there.
        acct.drain(lns.shutdown_grace.max(Duration::from_secs(1))).await;
    }
    Ok(())
}

enum Wake {
    Datagram(std::io::Result<Received>),
    Timer,
    Command(Command),
    Auth(AuthAnswer),
    DynAuth(dynauth::Job),
    Stop(&'static str),
}

/// A backend's answer, back in the loop.
struct AuthAnswer {
    tunnel: TunnelId,
    session: SessionId,
    /// Which request of the session it answers (a renegotiation asks again).
    seq: u64,
    request: AuthRequest,
    authorization: Authorization,
}

/// A tunnel as the loop knows it: where it is and its log span.
struct TunnelRecord {
    peer: SocketAddr,
    /// Our address the LAC sends to.
    local: IpAddr,
    ifindex: u32,
    since: Instant,
    span: Span,
}

/// A session that is up (ICCN received).
struct SessionRecord {
    slot: Option<u32>,
    /// What was written to the data plane (or would have been).
    entry: abi::Session,
    info: SessionInfo,
    since: Instant,
    span: Span,
    ppp_frames_rx: u64,
    ppp: ppp::Session,
    /// Authenticated user name.
    username: Option<String>,
    /// Address given to the subscriber (from a pool or the user's fixed one).
    ipv4: Option<Ipv4Addr>,
    /// When IPCP came up (Session-Timeout counts from here).
    network_up: Option<Instant>,
    /// Fast-path packets seen at the last look, and when they last changed.
    traffic: u64,
    last_activity: Instant,
    /// A timeout already asked PPP to terminate.
    ending: bool,
    /// Authentication requests sent to the backend; an answer for an older
    /// one is stale.
    auth_seq: u64,
    /// Per-subscriber timeouts from the backend, over the configured ones.
    session_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    /// This session's entry in `ppp_timers`.
    timer: Option<Instant>,
    /// Its IPv6 prefix, granted and held (see the ipv6 module).
    ipv6: ipv6::Ipv6Record,
    /// RADIUS accounting, once the subscriber is accepted.
    acct: Option<SessionAccounting>,
}

#[derive(Default)]
struct Counters {
    tunnels_up_total: u64,
    tunnels_down_total: u64,
    sessions_up_total: u64,
    sessions_down_total: u64,
    datagrams_rx: u64,
    datagrams_tx: u64,
    control_rx: u64,
    data_rx: u64,
    send_errors: u64,
    map_errors: u64,
    dropped: BTreeMap<&'static str, u64>,
}

fn drop_name(r: &DropReason) -> &'static str {
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

fn tunnel_state_name(s: TunnelState) -> &'static str {
    match s {
        TunnelState::Idle => "idle",
        TunnelState::WaitCtlReply => "wait-ctl-reply",
        TunnelState::WaitCtlConn => "wait-ctl-conn",
        TunnelState::Established => "established",
        TunnelState::Closing => "closing",
        TunnelState::Closed => "closed",
    }
}

/// A Result Code as an operator reads it.
fn describe_result(r: &ResultCode) -> String {
    let mut s = format!("result {}", r.result);
    if let Some(e) = r.error {
        s.push_str(&format!(" error {e}"));
    }
    if let Some(m) = &r.message {
        s.push_str(&format!(" {:?}", lossy(m)));
    }
    s
}

fn describe_down(reason: &TunnelDownReason) -> String {
    match reason {
        TunnelDownReason::LocalClose(r) => format!("local StopCCN {}", describe_result(r)),
        TunnelDownReason::PeerStopCcn(Some(r)) => format!("peer StopCCN {}", describe_result(r)),
        TunnelDownReason::PeerStopCcn(None) => "peer StopCCN".into(),
        TunnelDownReason::RetransmitLimit => "retransmit limit: the peer stopped acknowledging".into(),
        TunnelDownReason::AuthenticationFailed => "tunnel authentication failed".into(),
        TunnelDownReason::ProtocolError(r) => format!("protocol error, StopCCN {}", describe_result(r)),
        TunnelDownReason::TieBreakerLost => "tie breaker lost".into(),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Lns {
    endpoint: Endpoint,
    socket: Arc<L2tpSocket>,
    listen: SocketAddr,
    table: SessionTable,
    tunnels: HashMap<TunnelId, TunnelRecord>,
    sessions: HashMap<(TunnelId, SessionId), SessionRecord>,
    /// Calls accepted (ICRP sent) and not yet connected, with the slot their
    /// entry was written to: the LAC's first PPP frame follows its ICCN
    /// at once, and the data path drops frames of unknown sessions.
    calling: HashMap<(TunnelId, SessionId), Calling>,
    /// Our address each peer sends to, so replies leave from it.
    peer_local: HashMap<SocketAddr, IpAddr>,
    counters: Counters,
    started: Instant,
    draining: bool,
    shutdown_grace: std::time::Duration,
    ppp_config: SessionConfig,
    session_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    /// Next look at session and idle timeouts.
    next_timeout_check: Instant,
    /// Every session's next PPP deadline, earliest first, so that neither
    /// the wait nor the timer scans all sessions.
    ppp_timers: std::collections::BTreeSet<(Instant, u16, u16)>,
    auth: Arc<dyn AuthBackend>,
    auth_tx: mpsc::UnboundedSender<AuthAnswer>,
    auth_rx: mpsc::UnboundedReceiver<AuthAnswer>,
    pools: Pools,
    default_pool: Option<String>,
    /// Datagrams of this pass of the loop, sent by [`Lns::flush`].
    outbox: Batch,
    ipv6_pools: Ipv6Pools,
    default_ipv6_pool: Option<String>,
    radius: Option<Radius>,
    dynauth_stats: Option<Arc<std::sync::Mutex<crate::ctl::DynAuthStats>>>,
}

impl Lns {
    fn new(
        cfg: Config,
        socket: Arc<L2tpSocket>,
        listen: SocketAddr,
        table: SessionTable,
        auth: Arc<dyn AuthBackend>,
        pools: Pools,
    ) -> Lns {
        let (auth_tx, auth_rx) = mpsc::unbounded_channel();
        // Session ids are allocated so that each session has a direct slot
        // of its own in the data plane's table (found there without a hash
        // lookup per packet): one id space per bank of 65,536 slots, and
        // the ids whose slot is beyond the table or another writer's are
        // never handed out.
        let mut endpoint_cfg = cfg.endpoint.clone();
        endpoint_cfg.session_id_banks = table.session_id_banks().unwrap_or(0);
        let endpoint = Endpoint::new(endpoint_cfg);
        for (bank, sid) in table.direct_slot_reservations() {
            endpoint.reserve_session_id(bank, sid);
        }
        Lns {
            endpoint,
            socket,
            listen,
            table,
            tunnels: HashMap::new(),
            sessions: HashMap::new(),
            calling: HashMap::new(),
            peer_local: HashMap::new(),
            counters: Counters::default(),
            started: Instant::now(),
            draining: false,
            shutdown_grace: cfg.shutdown_grace,
            ppp_config: cfg.ppp.session,
            session_timeout: cfg.ppp.session_timeout,
            idle_timeout: cfg.ppp.idle_timeout,
            next_timeout_check: Instant::now(),
            ppp_timers: std::collections::BTreeSet::new(),
            auth,
            auth_tx,
            auth_rx,
            pools,
            default_pool: cfg.ppp.default_pool,
            outbox: Batch::new(),
            // Checked when the configuration was resolved.
            ipv6_pools: Ipv6Pools::new(&cfg.ppp.ipv6_pools).unwrap_or_default(),
            default_ipv6_pool: cfg.ppp.default_ipv6_pool,
            radius: None,
            dynauth_stats: None,
        }
    }

    fn drop_datagram(&mut self, reason: &'static str) {
        *self.counters.dropped.entry(reason).or_default() += 1;
    }

    fn on_datagram(&mut self, now: Instant, rx: Received, data: &[u8]) {
        self.counters.datagrams_rx += 1;
        if self.draining
            && Packet::new_checked(data).and_then(|p| Repr::parse(&p)).is_ok_and(|r| r.tunnel_id.0 == 0)
        {
            // No new tunnels while we are going away.
            return self.drop_datagram("shutting_down");
        }
        match self.endpoint.handle_datagram(now, rx.from, data) {
            DatagramEvent::Control(tid) => {
                self.counters.control_rx += 1;
                let local = rx.local.unwrap_or(self.listen.ip());
                self.peer_local.insert(rx.from, local);
                self.tunnels.entry(tid).or_insert_with(|| {
                    let span = info_span!("tunnel", tunnel_id = tid.0, peer = %rx.from);
                    span.in_scope(|| debug!(%local, "SCCRQ accepted"));
                    TunnelRecord { peer: rx.from, local, ifindex: rx.ifindex.unwrap_or(0), since: now, span }
                });
            }
            DatagramEvent::Data { tunnel_id, session_id, payload, .. } => {
                self.counters.data_rx += 1;
                match (self.sessions.get_mut(&(tunnel_id, session_id)), data.get(payload)) {
                    (Some(s), Some(frame)) => {
                        if !s.on_ppp_frame(now, frame) {
                            self.drop_datagram("ipv6_not_nd");
                        }
                        self.drive_ppp(now, tunnel_id, session_id);
                    }
                    (None, Some(frame)) => match self.calling.get_mut(&(tunnel_id, session_id)) {
                        // PPP overtook the ICCN (the LAC's ICCN can wait in
                        // its send window while data goes straight out):
                        // keep the first frames for when the call connects.
                        Some(c) if c.early_ppp.len() < MAX_EARLY_PPP => c.early_ppp.push(frame.to_vec()),
                        _ => self.drop_datagram("unknown_session"),
                    },
                    _ => self.drop_datagram("unknown_session"),
                }
            }
            DatagramEvent::Dropped(reason) => {
                debug!(from = %rx.from, ?reason, "datagram dropped");
                self.drop_datagram(drop_name(&reason));
            }
        }
    }

    /// Sends what the Endpoint has to send and acts on its events, until
    /// neither is left (acting on an event may queue a message).
    fn flush(&mut self, now: Instant) {
        loop {
            let mut idle = true;
            // Events first: an accepted call goes into the data plane
            // before the ICRP that lets the LAC send on it leaves.
            while let Some((tid, ev)) = self.endpoint.poll_event() {
                idle = false;
                self.on_event(now, tid, ev);
            }
            while let Some(t) = self.endpoint.poll_transmit(now) {
                idle = false;
                self.send(t);
            }
            if idle {
                break;
            }
        }
        self.transmit();
        if self.tunnels.len() != self.endpoint.tunnel_count() {
            // The Endpoint forgets a tunnel once its StopCCN exchange is
            // over; so do we.
            let endpoint = &self.endpoint;
            self.tunnels.retain(|id, _| endpoint.tunnel(*id).is_some());
            let peers: HashSet<SocketAddr> = self.tunnels.values().map(|t| t.peer).collect();
            self.peer_local.retain(|p, _| peers.contains(p));
        }
    }

    /// Queues a datagram; [`Lns::flush`] sends the pass's datagrams
    /// together.
    fn send(&mut self, t: crate::l2tp::Transmit) {
        let from = self.peer_local.get(&t.destination).copied();
        self.outbox.out.push(Outgoing { to: t.destination, from, payload: t.payload });
    }

    fn transmit(&mut self) {
        let queued = self.outbox.out.len() as u64;
        if queued == 0 {
            return;
        }
        let outcome = self.socket.send_batch(&mut self.outbox);
        // A full socket buffer drops the rest, as a lost datagram is:
        // retransmission recovers it.
        let failed = (outcome.failed + self.outbox.out.len()) as u64;
        self.outbox.out.clear();
        self.counters.datagrams_tx += queued - failed;
        if failed > 0 {
            self.counters.send_errors += failed;
            debug!(failed, "UDP send");
        }
    }

    fn tunnel_span(&self, tid: TunnelId) -> Span {
        self.tunnels.get(&tid).map(|t| t.span.clone()).unwrap_or_else(Span::none)
    }

    fn on_event(&mut self, now: Instant, tid: TunnelId, ev: Event) {
        let span = self.tunnel_span(tid);
        let _in_tunnel = span.enter();
        match ev {
            Event::TunnelUp { peer_tunnel_id, peer_host_name } => {
                self.counters.tunnels_up_total += 1;
                info!(peer_tunnel_id = peer_tunnel_id.0, host_name = %lossy(&peer_host_name), "tunnel up");
            }
            Event::TunnelDown { reason } => {
                self.counters.tunnels_down_total += 1;
                info!(reason = %describe_down(&reason), "tunnel down");
                // Its sessions were reported down before; anything left is
                // removed all the same.
                let left: Vec<SessionId> = self
                    .sessions
                    .keys()
                    .chain(self.calling.keys())
                    .filter(|(t, _)| *t == tid)
                    .map(|(_, s)| *s)
                    .collect();
                for sid in left {
                    self.acct_cause(tid, sid, acct_terminate_cause::LOST_CARRIER);
                    self.session_down(tid, sid, "tunnel down");
                }
            }
            Event::IncomingCall { session_id, peer_session_id } => {
                self.incoming_call(tid, session_id, peer_session_id)
            }
            Event::SessionUp { session_id, peer_session_id, info } => {
                self.session_up(now, tid, session_id, peer_session_id, *info)
            }
            Event::SessionDown { session_id, cause } => {
                let why = match (&cause.result, cause.by_peer) {
                    (Some(r), true) => format!("peer {}", describe_result(r)),
                    (Some(r), false) => format!("local {}", describe_result(r)),
                    (None, true) => "peer".to_string(),
                    (None, false) => "local".to_string(),
                };
                self.acct_cause(tid, session_id, radius::terminate_cause_of_down(&cause));
                if !self.session_down(tid, session_id, &why) {
                    debug!(session_id = session_id.0, ?cause, "call ended before ICCN");
                }
            }
            Event::WanErrorNotify { session_id, errors } => {
                info!(session_id = session_id.0, ?errors, "WAN error notify");
            }
            Event::SetLinkInfo { session_id, accm } => {
                debug!(session_id = session_id.0, ?accm, "set link info");
            }
            Event::ConnectSpeedUpdate { updates } => {
                for u in updates {
                    if let Some(s) = self.sessions.get_mut(&(tid, u.remote_session_id)) {
                        s.info.tx_connect_speed = Some(u.tx_bps);
                        s.info.rx_connect_speed = Some(u.rx_bps);
                        s.span.in_scope(|| {
                            debug!(tx_bps = u.tx_bps, rx_bps = u.rx_bps, "connect speed update")
                        });
                    }
                }
            }
        }
    }

    /// The entry a call starts with: state Control, so that its PPP
    /// negotiation reaches us until IPCP is up.
    fn call_entry(&self, tid: TunnelId, sid: SessionId, peer_sid: SessionId) -> Option<abi::Session> {
        let (t, tunnel) = (self.tunnels.get(&tid)?, self.endpoint.tunnel(tid)?);
        let mut entry = abi::Session {
            state: abi::SessionState::Control as u32,
            local_tunnel_id: tid.0,
            local_session_id: sid.0,
            peer_tunnel_id: tunnel.peer_id().0,
            peer_session_id: peer_sid.0,
            mtu: DEFAULT_MRU,
            access_ifindex: t.ifindex,
            ..Default::default()
        };
        entry.set_peer(t.peer);
        entry.set_local(SocketAddr::new(t.local, self.listen.port()));
        Some(entry)
    }

    /// ICRQ accepted: the session goes into the data plane now (see
    /// `calling`); if that fails, ICCN tries again.
    fn incoming_call(&mut self, tid: TunnelId, sid: SessionId, peer_sid: SessionId) {
        let Some(entry) = self.call_entry(tid, sid, peer_sid) else { return };
        let slot = match self.table.install(&entry) {
            Ok(slot) => slot,
            Err(e) => {
                debug!(session_id = sid.0, error = %e, "incoming call not yet in the data plane");
                None
            }
        };
        self.calling.insert((tid, sid), Calling { slot, early_ppp: Vec::new() });
    }

    /// ICCN received: the session goes into the data plane, in state
    /// Control, so its PPP negotiation reaches us until IPCP is up.
    fn session_up(
        &mut self,
        now: Instant,
        tid: TunnelId,
        sid: SessionId,
        peer_sid: SessionId,
        info: SessionInfo,
    ) {
        let Some(t) = self.tunnels.get(&tid) else { return };
        let span = info_span!(parent: &t.span, "session", session_id = sid.0, peer_session_id = peer_sid.0);
        let _in_session = span.enter();
        let Some(mut entry) = self.call_entry(tid, sid, peer_sid) else { return };
        if info.sequencing_required {
            // §5.4: the LAC wants Ns/Nr on every data message we send.
            entry.flags |= abi::Session::SEQUENCING;
        }
        let call = self.calling.remove(&(tid, sid));
        let early_ppp = call.as_ref().map(|c| c.early_ppp.clone()).unwrap_or_default();
        let installed = match call.and_then(|c| c.slot) {
            Some(slot) => self.table.update(slot, &entry).map(|()| Some(slot)),
            None => self.table.install(&entry),
        };
        match installed {
            Ok(slot) => {
                self.counters.sessions_up_total += 1;
                info!(
                    slot,
                    sequencing = info.sequencing_required,
                    calling_number = %lossy(info.calling_number.as_deref().unwrap_or_default()),
                    "session up"
                );
                drop(_in_session);
                let mut ppp = ppp::Session::new(self.ppp_config.clone(), ppp::SeedableRng::from_entropy());
                match proxy_of(&info) {
                    Some((lcp, auth)) => ppp.open_with_proxy(now, &lcp, auth),
                    None => ppp.open(now),
                }
                self.sessions.insert(
                    (tid, sid),
                    SessionRecord {
                        slot,
                        entry,
                        info,
                        since: now,
                        span,
                        ppp_frames_rx: 0,
                        ppp,
                        username: None,
                        ipv4: None,
                        network_up: None,
                        traffic: 0,
                        last_activity: now,
                        ending: false,
                        auth_seq: 0,
                        session_timeout: None,
                        idle_timeout: None,
                        timer: None,
                        ipv6: Default::default(),
                        acct: None,
                    },
                );
                if let Some(s) = self.sessions.get_mut(&(tid, sid)) {
                    for frame in &early_ppp {
                        s.on_ppp_frame(now, frame);
                    }
                }
                self.drive_ppp(now, tid, sid);
            }
            Err(e) => {
                self.counters.map_errors += 1;
                warn!(error = %e, "cannot write the session into the data plane: disconnecting it");
                let rc = ResultCode::with_error(
                    cdn::NO_FACILITIES_TEMPORARY,
                    error_code::INSUFFICIENT_RESOURCES,
                    "data plane unavailable",
                );
                if let Err(e) = self.endpoint.close_session(now, tid, sid, rc) {
                    warn!(error = %e, "CDN");
                }
            }
        }
    }

    /// Removes a session and its data-plane entry; false if it was not up.
    fn session_down(&mut self, tid: TunnelId, sid: SessionId, why: &str) -> bool {
        if let Some(call) = self.calling.remove(&(tid, sid)) {
            // A call that ended before ICCN.
            if let Some(slot) = call.slot {
                if let Err(e) = self.table.remove(slot) {
                    self.counters.map_errors += 1;
                    warn!(slot, error = %e, "removing an unconnected call from the data plane");
                }
            }
        }
        let Some(rec) = self.sessions.remove(&(tid, sid)) else { return false };
        self.acct_stop(&rec);
        if let Some(t) = rec.timer {
            self.ppp_timers.remove(&(t, tid.0, sid.0));
        }
        self.counters.sessions_down_total += 1;
        let _in_session = rec.span.enter();
        if let Some(slot) = rec.slot {
            if let Err(e) = self.table.remove(slot) {
                self.counters.map_errors += 1;
                warn!(slot, error = %e, "removing the session from the data plane");
            }
        }
        if let Some(a) = rec.ipv4 {
            self.pools.release(a);
        }
        self.ipv6_session_down(&rec);
        info!(why, ppp_frames_rx = rec.ppp_frames_rx, "session down");
        true
    }

    /// The earliest PPP timer of any session, or the next timeout check.
    fn ppp_timeout(&self) -> Option<Instant> {
        let accounting = self.radius.as_ref().is_some_and(|r| r.accounting().is_some());
        let check = (self.session_timeout.is_some() || self.idle_timeout.is_some() || accounting)
            && !self.sessions.is_empty();
        self.ppp_timers
            .first()
            .map(|(t, _, _)| *t)
            .into_iter()
            .chain(check.then_some(self.next_timeout_check))
            .min()
    }

    /// A backend's answer: an address for an accepted subscriber (its
    /// fixed one, or from its pool), then the result to PPP.
    fn on_auth_answer(&mut self, now: Instant, a: AuthAnswer) {
        let (tid, sid) = (a.tunnel, a.session);
        let Some(s) = self.sessions.get_mut(&(tid, sid)) else { return };
        if s.auth_seq != a.seq {
            return;
        }
        let _in_session = s.span.clone().entered();
        let user = String::from_utf8_lossy(&a.request.username).into_owned();
        let (class, interim) = (a.authorization.class.clone(), a.authorization.interim_interval);
        let Authorization {
            mut decision,
            ipv4: fixed,
            pool,
            session_timeout,
            idle_timeout,
            ipv6_prefix,
            ipv6_pool,
            delegated_prefix,
            dns,
            ..
        } = a.authorization;
        let pool = pool.or_else(|| self.default_pool.clone());
        let ipv6_possible = ipv6::possible(
            &self.ppp_config,
            &self.ipv6_pools,
            self.default_ipv6_pool.as_deref(),
            ipv6_prefix.is_some(),
            ipv6_pool.as_deref(),
        );
        if decision.accept && s.ipv4.is_none() {
            let address = match fixed {
                Some(a) => self.pools.reserve(a).then_some(a),
                None => pool.as_deref().and_then(|p| self.pools.allocate(p)),
            };
            match address {
                Some(a) => {
                    s.ipv4 = Some(a);
                    s.ppp.set_peer_ipv4(a);
                }
                // IPv6 may still carry the session (its prefix is taken
                // when IPv6CP opens); IPCP then gets no address.
                None if ipv6_possible => debug!(user, "no IPv4 address for the user: IPv6 only"),
                None => {
                    warn!(user, "no IPv4 address for the user");
                    decision = AuthDecision::reject("No address available");
                }
            }
        }
        info!(user, method = ?a.request.method, proxied = a.request.proxied, accept = decision.accept, "authentication");
        if decision.accept {
            s.username = Some(user);
            s.session_timeout = session_timeout;
            s.idle_timeout = idle_timeout;
            // Taken when IPv6CP opens (see the ipv6 module).
            s.ipv6.granted_prefix = ipv6_prefix;
            s.ipv6.granted_pool = ipv6_pool;
            s.ipv6.delegated = delegated_prefix;
            if let Some(&primary) = dns.first() {
                s.ppp.set_peer_dns(Some(primary), dns.get(1).copied());
            }
        }
        let accepted = decision.accept;
        s.ppp.auth_result(now, decision);
        drop(_in_session);
        if accepted {
            self.acct_begin(tid, sid, &a.request.username, class, interim);
        }
        self.drive_ppp(now, tid, sid);
    }

    /// Session-Timeout and idle timeout, once a second: such a session ends
    /// the way an operator's kill does, LCP Terminate then CDN, with the
    /// reason in the RFC 3145 cause. Activity is the fast path's
    /// per-session packet count (read from the mmapped counters).
    fn check_timeouts(&mut self, now: Instant) {
        if now < self.next_timeout_check {
            return;
        }
        self.next_timeout_check = now + Duration::from_secs(1);
        let mut ending = Vec::new();
        for (key, s) in self.sessions.iter_mut() {
            let Some(up) = s.network_up else { continue };
            if s.ending {
                continue;
            }
            let (session_timeout, idle_timeout) =
                (s.session_timeout.or(self.session_timeout), s.idle_timeout.or(self.idle_timeout));
            if let Some(slot) = s.slot.filter(|_| idle_timeout.is_some()) {
                let packets = self.table.packets(slot);
                if packets != s.traffic {
                    s.traffic = packets;
                    s.last_activity = now;
                }
            }
            let why = if session_timeout.is_some_and(|t| now.duration_since(up) >= t) {
                Some("session timeout")
            } else if idle_timeout.is_some_and(|t| now.duration_since(s.last_activity) >= t) {
                Some("idle timeout")
            } else {
                None
            };
            if let Some(acct) = s.acct.as_mut() {
                if why == Some("session timeout") {
                    acct.cause(acct_terminate_cause::SESSION_TIMEOUT);
                } else if why.is_some() {
                    acct.cause(acct_terminate_cause::IDLE_TIMEOUT);
                } else if acct.interim_due(now) {
                    if let (Some(r), Some(slot)) = (self.radius.as_ref(), s.slot) {
                        r.interim(acct, now, self.table.stats(slot));
                    }
                }
            }
            if let Some(why) = why {
                s.ending = true;
                s.span.in_scope(|| info!(why, "ending the session"));
                s.ppp.close(
                    now,
                    Some(ppp::DisconnectCause {
                        code: ppp::DisconnectCode::ADMINISTRATIVE,
                        protocol: ppp::Protocol(0),
                        direction: ppp::session::Direction::Local,
                        message: why.to_string(),
                    }),
                );
                ending.push(*key);
            }
        }
        for (tid, sid) in ending {
            self.drive_ppp(now, tid, sid);
        }
    }

    fn on_timer(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.check_timeouts(now);
        let due: Vec<(TunnelId, SessionId)> = self
            .ppp_timers
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .map(|(_, t, s)| (TunnelId(*t), SessionId(*s)))
            .collect();
        for (tid, sid) in due {
            match self.sessions.get_mut(&(tid, sid)) {
                Some(s) => s.ppp.handle_timeout(now),
                None => {
                    // Gone without session_down: forget its deadline.
                    self.ppp_timers.retain(|(_, t, s)| (*t, *s) != (tid.0, sid.0));
                    continue;
                }
            }
            self.drive_ppp(now, tid, sid);
        }
    }

    /// Sends a session's PPP frames to the LAC and acts on its events,
    /// until it has nothing more.
    fn drive_ppp(&mut self, now: Instant, tid: TunnelId, sid: SessionId) {
        loop {
            let Some(s) = self.sessions.get_mut(&(tid, sid)) else { return };
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| s.ppp.poll_transmit()).collect();
            let events: Vec<SessionEvent> = std::iter::from_fn(|| s.ppp.poll_event()).collect();
            // §5.4: a session that asked for sequencing gets Ns on our PPP
            // frames too, from the counter the data plane numbers IP with.
            let numbered = if s.entry.flags & abi::Session::SEQUENCING != 0 { s.slot } else { None };
            if frames.is_empty() && events.is_empty() {
                let next = s.ppp.poll_timeout();
                if next != s.timer {
                    if let Some(old) = s.timer {
                        self.ppp_timers.remove(&(old, tid.0, sid.0));
                    }
                    if let Some(new) = next {
                        self.ppp_timers.insert((new, tid.0, sid.0));
                    }
                    s.timer = next;
                }
                return;
            }
            for f in frames {
                // P bit: PPP control frames go ahead of data at the LAC (§3.1).
                let sequence = numbered
                    .and_then(|slot| self.table.next_ns(slot))
                    .map(|ns| crate::l2tp::header::Sequence { ns, nr: 0 });
                if let Some(t) = self.endpoint.encapsulate(tid, sid, &f, sequence, true) {
                    self.send(t);
                }
            }
            for ev in events {
                self.on_ppp_event(now, tid, sid, ev);
            }
        }
    }

    fn on_ppp_event(&mut self, now: Instant, tid: TunnelId, sid: SessionId, ev: SessionEvent) {
        let Some(s) = self.sessions.get_mut(&(tid, sid)) else { return };
        let span = s.span.clone();
        let _in_session = span.enter();
        match ev {
            SessionEvent::LinkUp { peer, .. } => {
                // What the subscriber can receive: its MRU, and compressed
                // headers if it asked for them.
                s.entry.mtu = peer.mru;
                for (on, bit) in [(peer.acfc, abi::Session::ACFC), (peer.pfc, abi::Session::PFC)] {
                    if on {
                        s.entry.flags |= bit;
                    } else {
                        s.entry.flags &= !bit;
                    }
                }
                debug!(mru = peer.mru, acfc = peer.acfc, pfc = peer.pfc, "LCP opened");
            }
            SessionEvent::AuthRequest(req) => {
                // The backend answers in its own time (see on_auth_answer).
                s.auth_seq += 1;
                let (seq, tx) = (s.auth_seq, self.auth_tx.clone());
                let Some(context) = self.call_context(tid, sid) else { return };
                let answer = self.auth.authenticate(req.clone(), context);
                tokio::spawn(async move {
                    let authorization = answer.await;
                    let _ =
                        tx.send(AuthAnswer { tunnel: tid, session: sid, seq, request: req, authorization });
                });
            }
            SessionEvent::Authenticated { method, .. } => debug!(?method, "authenticated"),
            SessionEvent::NetworkUp(NetworkConfig::Ipv4 { peer, .. }) => {
                if s.ipv4.is_none() {
                    // An IPv6-only session (no IPv4 address was left): IPCP
                    // goes, IPv6CP carries the session.
                    info!("IPCP opened without an address to assign: IPCP closed");
                    s.ppp.close_ncp(now, ppp::Protocol::IPCP);
                    return;
                }
                if s.ipv4 != Some(peer) {
                    // IPCP only acknowledges the address we assigned; any
                    // other must not reach the fast path.
                    warn!(%peer, assigned = ?s.ipv4, "IPCP opened with an address we did not assign");
                    s.ppp.close(now, None);
                    return;
                }
                s.entry.state = abi::SessionState::Forwarding as u32;
                s.entry.ipv4 = peer.octets();
                let (slot, entry) = (s.slot, s.entry);
                if let Some(slot) = slot {
                    if let Err(e) = self.table.update(slot, &entry) {
                        self.counters.map_errors += 1;
                        warn!(slot, error = %e, "switching the session to forwarding");
                        if let Some(s) = self.sessions.get_mut(&(tid, sid)) {
                            s.ppp.close(now, None);
                        }
                        return;
                    }
                }
                if let Some(s) = self.sessions.get_mut(&(tid, sid)) {
                    s.network_up.get_or_insert(now);
                    s.last_activity = now;
                }
                self.acct_start(now, tid, sid, Some(peer), None, None);
                info!(ipv4 = %peer, mtu = entry.mtu, "IPCP opened: forwarding");
            }
            SessionEvent::NetworkUp(NetworkConfig::Ipv6 { peer_interface_identifier, .. }) => {
                debug!(?peer_interface_identifier, "IPv6CP opened");
                self.ipv6_up(now, tid, sid);
            }
            SessionEvent::NetworkDown(proto) => {
                if proto == ppp::Protocol::IPV6CP {
                    self.ipv6_down(now, tid, sid);
                } else if proto == ppp::Protocol::IPCP
                    && s.entry.state == abi::SessionState::Forwarding as u32
                {
                    // Renegotiation: IPv4 goes back through us until IPCP
                    // reopens; IPv6 keeps forwarding if it is up.
                    s.entry.ipv4 = [0; 4];
                    s.entry.state = ipv6::state_for(&s.entry);
                    let (slot, entry) = (s.slot, s.entry);
                    if let Some(slot) = slot {
                        if let Err(e) = self.table.update(slot, &entry) {
                            self.counters.map_errors += 1;
                            warn!(slot, error = %e, "switching the session back to control");
                        }
                    }
                }
                info!(protocol = proto.0, "NCP down");
            }
            // A client's event: the LNS announces prefixes, it learns none.
            SessionEvent::Ipv6AddressUp { .. } => {}
            SessionEvent::EchoFailure { unanswered } => warn!(unanswered, "LCP echo failure"),
            SessionEvent::LinkDown { cause } => {
                info!(code = cause.code.0, message = %cause.message, "PPP link down: CDN");
                if let Some(acct) = s.acct.as_mut() {
                    acct.cause(radius::terminate_cause_of_link_down(&cause));
                }
                let result = if cause.code == DisconnectCode::LCP_ECHO_TIMEOUT {
                    cdn::LOST_CARRIER
                } else {
                    cdn::ADMINISTRATIVE
                };
                let rc = ResultCode::with_error(result, error_code::NO_ERROR, &cause.message);
                let ppp_cause = Some(cause.to_avp_value());
                if let Err(e) = self.endpoint.close_session_with_ppp_cause(now, tid, sid, rc, ppp_cause) {
                    debug!(error = %e, "CDN");
                }
            }
        }
    }

    fn on_request(&mut self, now: Instant, req: Request) -> Response {
        match req {
            Request::TunnelList => Response::Tunnels { tunnels: self.tunnel_rows(now) },
            Request::SessionList => Response::Sessions { sessions: self.session_rows(now) },
            Request::ShowStats => Response::Stats { stats: self.stats(now) },
            Request::Radius => Response::Radius { radius: RadiusStatus::default() },
            Request::TunnelKill { tunnel_id } => {
                let tid = TunnelId(tunnel_id);
                let rc = ResultCode::with_error(
                    stopccn::GENERAL_REQUEST,
                    error_code::NO_ERROR,
                    "closed by the operator",
                );
                let sessions: Vec<SessionId> =
                    self.sessions.keys().filter(|(t, _)| *t == tid).map(|(_, s)| *s).collect();
                for sid in sessions {
                    self.acct_cause(tid, sid, acct_terminate_cause::ADMIN_RESET);
                }
                match self.endpoint.close_tunnel(now, tid, rc) {
                    Ok(()) => {
                        self.tunnel_span(tid).in_scope(|| info!("StopCCN on the operator's request"));
                        Response::Killed { tunnel_id, session_id: None }
                    }
                    Err(e) => Response::Error { message: format!("tunnel {tunnel_id}: {e}") },
                }
            }
            Request::SessionKill { session_id, tunnel_id } => {
                let sid = SessionId(session_id);
                let mut candidates: Vec<TunnelId> = self
                    .endpoint
                    .tunnel_ids()
                    .filter(|t| tunnel_id.map_or(true, |want| t.0 == want))
                    .filter(|t| self.endpoint.tunnel(*t).is_some_and(|t| t.session(sid).is_some()))
                    .collect();
                candidates.sort();
                let tid = match candidates.as_slice() {
                    [] => return Response::Error { message: format!("no session {session_id}") },
                    [t] => *t,
                    many => {
                        let list: Vec<String> = many.iter().map(|t| t.0.to_string()).collect();
                        return Response::Error {
                            message: format!(
                                "session id {session_id} exists in tunnels {}: say which with --tunnel",
                                list.join(", ")
                            ),
                        };
                    }
                };
                let rc = ResultCode::with_error(
                    cdn::ADMINISTRATIVE,
                    error_code::NO_ERROR,
                    "closed by the operator",
                );
                self.acct_cause(tid, sid, acct_terminate_cause::ADMIN_RESET);
                match self.endpoint.close_session(now, tid, sid, rc) {
                    Ok(()) => {
                        self.tunnel_span(tid).in_scope(|| info!(session_id, "CDN on the operator's request"));
                        Response::Killed { tunnel_id: tid.0, session_id: Some(session_id) }
                    }
                    Err(e) => Response::Error { message: format!("session {session_id}: {e}") },
                }
            }
        }
    }

    fn tunnel_rows(&self, now: Instant) -> Vec<TunnelRow> {
        let mut ids: Vec<TunnelId> = self.endpoint.tunnel_ids().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| {
                let t = self.endpoint.tunnel(id)?;
                let rec = self.tunnels.get(&id);
                Some(TunnelRow {
                    tunnel_id: id.0,
                    peer_tunnel_id: t.peer_id().0,
                    peer: rec.map(|r| r.peer.to_string()).unwrap_or_default(),
                    local: rec
                        .map(|r| SocketAddr::new(r.local, self.listen.port()).to_string())
                        .unwrap_or_default(),
                    peer_host_name: lossy(t.peer_host_name()),
                    state: tunnel_state_name(t.state()).to_string(),
                    sessions: t.session_count(),
                    age_secs: rec.map(|r| now.saturating_duration_since(r.since).as_secs()).unwrap_or(0),
                    retransmissions: t.reliable().retransmissions,
                })
            })
            .collect()
    }

    fn session_rows(&self, now: Instant) -> Vec<SessionRow> {
        let mut rows = Vec::new();
        for id in self.endpoint.tunnel_ids() {
            let Some(t) = self.endpoint.tunnel(id) else { continue };
            let peer = self.tunnels.get(&id).map(|r| r.peer.to_string()).unwrap_or_default();
            for s in t.sessions() {
                let rec = self.sessions.get(&(id, s.local_id));
                let info = rec.map(|r| &r.info).unwrap_or(&s.info);
                let dataplane_state = rec
                    .filter(|r| r.slot.is_some())
                    .map(|r| format!("{:?}", r.entry.session_state().unwrap_or_default()).to_lowercase());
                rows.push(SessionRow {
                    tunnel_id: id.0,
                    session_id: s.local_id.0,
                    peer_tunnel_id: t.peer_id().0,
                    peer_session_id: s.peer_id.0,
                    peer: peer.clone(),
                    state: match s.state {
                        CallState::WaitConnect => "wait-connect",
                        CallState::WaitReply => "wait-reply",
                        CallState::Established => "established",
                    }
                    .to_string(),
                    slot: rec.and_then(|r| r.slot),
                    dataplane_state,
                    sequencing: info.sequencing_required,
                    calling_number: info.calling_number.as_deref().map(lossy),
                    called_number: info.called_number.as_deref().map(lossy),
                    tx_connect_speed: info.tx_connect_speed,
                    rx_connect_speed: info.rx_connect_speed,
                    ppp_frames_rx: rec.map(|r| r.ppp_frames_rx).unwrap_or(0),
                    ppp_phase: rec.map(|r| format!("{:?}", r.ppp.phase()).to_lowercase()),
                    username: rec.and_then(|r| r.username.clone()),
                    ipv4: rec.and_then(|r| r.ipv4).map(|a| a.to_string()),
                    ipv6_prefix: rec.and_then(|r| r.ipv6.prefix).map(|(p, l)| format!("{p}/{l}")),
                    delegated_prefix: rec
                        .filter(|r| r.ipv6.prefix.is_some())
                        .and_then(|r| r.ipv6.delegated)
                        .map(|(p, l)| format!("{p}/{l}")),
                    age_secs: rec.map(|r| now.saturating_duration_since(r.since).as_secs()).unwrap_or(0),
                    acct_session_id: rec.and_then(|r| r.acct.as_ref()).map(|a| a.session_id.clone()),
                });
            }
        }
        rows.sort_by_key(|r| (r.tunnel_id, r.session_id));
        rows
    }

    fn stats(&self, now: Instant) -> Stats {
        let c = &self.counters;
        let xdp = self
            .table
            .maps()
            .and_then(|m| m.counters().ok())
            .map(|snap| snap.0.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        Stats {
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            dataplane: self.table.has_dataplane(),
            tunnels: self.endpoint.tunnel_count(),
            tunnels_half_open: self.endpoint.half_open_count(),
            sessions: self.sessions.len(),
            tunnels_up_total: c.tunnels_up_total,
            tunnels_down_total: c.tunnels_down_total,
            sessions_up_total: c.sessions_up_total,
            sessions_down_total: c.sessions_down_total,
            datagrams_rx: c.datagrams_rx,
            datagrams_tx: c.datagrams_tx,
            control_rx: c.control_rx,
            data_rx: c.data_rx,
            send_errors: c.send_errors,
            map_errors: c.map_errors,
            slots_in_use: self.table.in_use(),
            addresses_in_use: self.pools.in_use(),
            ipv6_prefixes_in_use: self.ipv6_pools.in_use(),
            slots_total: self.table.size(),
            slots_off_direct: self.table.direct_misses(),
            dropped: c.dropped.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            xdp,
        }
    }

    /// StopCCN to every tunnel (§5.7, result 6 "shutting down"); returns
    /// how long to wait for the acknowledgements.
    fn shutdown(&mut self, now: Instant) -> Instant {
        self.draining = true;
        for s in self.sessions.values_mut() {
            if let Some(a) = s.acct.as_mut() {
                a.cause(acct_terminate_cause::NAS_REBOOT);
            }
        }
        let ids: Vec<TunnelId> = self.endpoint.tunnel_ids().collect();
        for id in ids {
            let rc = ResultCode::new(stopccn::SHUTTING_DOWN);
            let _ = self.endpoint.close_tunnel(now, id, rc);
        }
        now + self.shutdown_grace
    }

    /// Every StopCCN of ours was acknowledged. Tunnels the peer closed
    /// linger to re-acknowledge its retransmissions (§5.7), which a
    /// process on its way out need not wait for.
    fn stopped(&self) -> bool {
        self.endpoint.tunnel_ids().all(|id| {
            self.endpoint.tunnel(id).map_or(true, |t| {
                matches!(t.state(), TunnelState::Closing | TunnelState::Closed) && t.reliable().all_acked()
            })
        })
    }

    /// Nothing of ours stays in the maps.
    fn finish(&mut self) {
        let keys: Vec<(TunnelId, SessionId)> = self.sessions.keys().copied().collect();
        for (t, s) in keys {
            self.acct_cause(t, s, acct_terminate_cause::NAS_REBOOT);
            self.session_down(t, s, "control plane stopping");
        }
        let failed = self.table.remove_all();
        if failed > 0 {
            warn!(failed, "session entries could not be removed from the data plane");
        }
        self.transmit();
        info!(tunnels_left = self.endpoint.tunnel_count(), "lns-controlplane stopped");
    }
}

/// RADIUS: accounting and dynamic authorization, called from the loop's
/// handlers above.
impl Lns {
    /// What the LNS knows of a call, as backends and RADIUS see it.
    fn call_context(&self, tid: TunnelId, sid: SessionId) -> Option<AuthContext> {
        let s = self.sessions.get(&(tid, sid))?;
        Some(AuthContext {
            tunnel_id: tid.0,
            session_id: sid.0,
            lac: self.tunnels.get(&tid).map_or(self.listen, |t| t.peer),
            local: self
                .tunnels
                .get(&tid)
                .map_or(self.listen, |t| SocketAddr::new(t.local, self.listen.port())),
            lac_hostname: self.endpoint.tunnel(tid).map(|t| t.peer_host_name().to_vec()).unwrap_or_default(),
            info: s.info.clone(),
        })
    }

    /// The subscriber was accepted: its accounting record, if accounting is on.
    fn acct_begin(
        &mut self,
        tid: TunnelId,
        sid: SessionId,
        user: &[u8],
        class: Vec<Vec<u8>>,
        interim: Option<Duration>,
    ) {
        let Some(ctx) = self.call_context(tid, sid) else { return };
        let Some(r) = self.radius.as_mut() else { return };
        let acct = r.session(&ctx, user, class, interim);
        if let Some(s) = self.sessions.get_mut(&(tid, sid)) {
            if s.acct.as_ref().is_none_or(|a| !a.started()) {
                s.acct = acct;
            }
        }
    }

    /// IPCP or IPv6CP opened: Accounting Start on the first, with the
    /// fast path's counters as they stand as the baseline.
    pub(super) fn acct_start(
        &mut self,
        now: Instant,
        tid: TunnelId,
        sid: SessionId,
        ipv4: Option<Ipv4Addr>,
        ipv6_prefix: Option<(std::net::Ipv6Addr, u8)>,
        delegated: Option<(std::net::Ipv6Addr, u8)>,
    ) {
        let Some(r) = self.radius.as_ref() else { return };
        let Some(s) = self.sessions.get_mut(&(tid, sid)) else { return };
        let Some(acct) = s.acct.as_mut() else { return };
        let baseline = s.slot.map(|slot| self.table.stats(slot)).unwrap_or_default();
        r.start_session(acct, now, ipv4, ipv6_prefix, delegated, baseline);
    }

    /// Why a session ends, for its Stop (the first reason given stands).
    fn acct_cause(&mut self, tid: TunnelId, sid: SessionId, cause: u32) {
        if let Some(a) = self.sessions.get_mut(&(tid, sid)).and_then(|s| s.acct.as_mut()) {
            a.cause(cause);
        }
    }

    /// The session is gone: Accounting Stop with its final counters.
    fn acct_stop(&self, rec: &SessionRecord) {
        let (Some(r), Some(acct)) = (self.radius.as_ref(), rec.acct.as_ref()) else { return };
        let stats = rec.slot.map(|slot| self.table.stats(slot)).unwrap_or_default();
        r.stop(acct, Instant::now(), stats);
    }

    /// A verified Disconnect-Request or CoA-Request: applied to every
    /// session it names.
    fn on_dynauth(&mut self, now: Instant, job: dynauth::Job) {
        let req = job.request;
        let keys = dynauth::select(
            &req.selector,
            self.sessions.iter().map(|((t, s), rec)| dynauth::SessionView {
                key: (*t, *s),
                acct_session_id: rec.acct.as_ref().map(|a| a.session_id.as_str()),
                user_name: rec.username.as_deref().map(str::as_bytes),
                framed_ip: rec.ipv4,
                nas_port: radius::nas_port(t.0, s.0),
                calling_station_id: rec.info.calling_number.as_deref(),
            }),
        );
        if keys.is_empty() {
            let _ = job.done.send(Err(error_cause::SESSION_CONTEXT_NOT_FOUND));
            return;
        }
        let disconnect = req.code == lns_radius::Code::DisconnectRequest;
        for (tid, sid) in keys {
            let Some(s) = self.sessions.get_mut(&(tid, sid)) else { continue };
            let span = s.span.clone();
            let _in_session = span.enter();
            if disconnect {
                if let Some(a) = s.acct.as_mut() {
                    a.cause(acct_terminate_cause::ADMIN_RESET);
                }
                info!("Disconnect-Request: CDN");
                let rc = ResultCode::with_error(
                    cdn::ADMINISTRATIVE,
                    error_code::NO_ERROR,
                    "disconnected by RADIUS",
                );
                if let Err(e) = self.endpoint.close_session(now, tid, sid, rc) {
                    debug!(error = %e, "CDN");
                }
            } else {
                let secs = |v: u32| (v > 0).then(|| Duration::from_secs(u64::from(v)));
                if let Some(t) = req.session_timeout {
                    s.session_timeout = secs(t);
                }
                if let Some(t) = req.idle_timeout {
                    s.idle_timeout = secs(t);
                }
                info!(session_timeout = ?s.session_timeout, idle_timeout = ?s.idle_timeout, "CoA-Request applied");
            }
        }
        let _ = job.done.send(Ok(()));
    }

    /// `lnsctl radius`: gathered from the client and the accounting
    /// sender without holding up the loop.
    fn radius_status(&self) -> impl std::future::Future<Output = Response> + Send + 'static {
        let parts = self.radius.as_ref().map(|r| (r.client().clone(), r.accounting().cloned()));
        let dynauth = self.dynauth_stats.as_ref().and_then(|s| s.lock().ok().map(|s| s.clone()));
        async move {
            let Some((client, accounting)) = parts else {
                return Response::Radius { radius: RadiusStatus::default() };
            };
            let (servers, accounting) = Radius::status(client, accounting).await;
            let servers = servers
                .into_iter()
                .map(|s| RadiusServerRow {
                    address: s.address.to_string(),
                    service: match s.service {
                        lns_radius::client::Service::Authentication => "authentication",
                        lns_radius::client::Service::Accounting => "accounting",
                    }
                    .into(),
                    state: match s.state {
                        lns_radius::client::ServerState::Alive => "alive",
                        lns_radius::client::ServerState::Dead => "dead",
                    }
                    .into(),
                    requests: s.stats.requests,
                    retransmissions: s.stats.retransmissions,
                    replies: s.stats.replies,
                    timeouts: s.stats.timeouts,
                    bad_replies: s.stats.bad_authenticator
                        + s.stats.missing_message_authenticator
                        + s.stats.malformed
                        + s.stats.unknown_identifier
                        + s.stats.bad_code,
                    status_server_sent: s.stats.status_server_sent,
                    last_rtt_ms: s.stats.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
                })
                .collect();
            Response::Radius { radius: RadiusStatus { enabled: true, servers, accounting, dynauth } }
        }
    }
}

impl SessionRecord {
    /// PPP arriving on the control path (LCP, authentication, NCPs, and
    /// anything while the session is not forwarding). False for IPv6 that
    /// is not router discovery (the data plane passes link-local and
    /// multicast IPv6 up): dropped, for the caller to count.
    fn on_ppp_frame(&mut self, now: Instant, frame: &[u8]) -> bool {
        self.ppp_frames_rx += 1;
        match self.ppp.handle_frame(now, frame) {
            Ok(()) => true,
            Err(ppp::Error::NotNeighbourDiscovery) => false,
            Err(e) => {
                // RFC 1661 §5: silently discarded.
                self.span.in_scope(|| debug!(error = %e, len = frame.len(), "malformed PPP frame"));
                true
            }
        }
    }
}

/// The LAC's proxy LCP and authentication (RFC 2661 §4.4.5), if it sent
/// them; whether they are adopted is the PPP configuration's call.
fn proxy_of(info: &SessionInfo) -> Option<(ProxyLcp, Option<ProxyAuth>)> {
    let lcp = ProxyLcp {
        initial_received: info.initial_received_lcp_confreq.clone()?,
        last_sent: info.last_sent_lcp_confreq.clone()?,
        last_received: info.last_received_lcp_confreq.clone()?,
    };
    let username = info.proxy_authen_name.clone().unwrap_or_default();
    let identifier = info.proxy_authen_id.unwrap_or(0);
    let auth = match info.proxy_authen_type {
        Some(proxy_authen::PAP) => Some(ProxyAuth::Pap {
            identifier,
            username,
            password: info.proxy_authen_response.clone().unwrap_or_default(),
        }),
        Some(proxy_authen::CHAP) => Some(ProxyAuth::Chap {
            identifier,
            challenge: info.proxy_authen_challenge.clone().unwrap_or_default(),
            username,
            response: info.proxy_authen_response.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    Some((lcp, auth))
}

/// PPP frames kept per call until its ICCN arrives.
const MAX_EARLY_PPP: usize = 8;

/// A call accepted (ICRP sent) and not yet connected.
struct Calling {
    /// Its data-plane slot, if writing it worked.
    slot: Option<u32>,
    /// PPP frames that arrived before the ICCN.
    early_ppp: Vec<Vec<u8>>,
}
