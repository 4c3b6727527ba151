//! The control connection (RFC 2661 §7.2) and its sessions (§7.4), for
//! both the LNS and the LAC role.
//!
//! quinn-proto style: feed [`Tunnel::handle_datagram`] and
//! [`Tunnel::handle_timeout`], drain [`Tunnel::poll_transmit`] and
//! [`Tunnel::poll_event`], sleep until [`Tunnel::poll_timeout`].

use super::avp::{self, Accm, Avp, AvpValue, CallErrors, ConnectSpeedUpdate, Q931Cause, ResultCode};
use super::header::{SessionId, TunnelId};
use super::ids::{IdAllocator, SessionIdSpace};
use super::message::{Message, MessageType, Scope, ValidationError};
use super::reliable::{Reliable, ReliableConfig};
use super::session::{self, Session, SessionDownCause, SessionInfo, SessionState};
use super::Error;
use crate::snapshot::Tracked;
use md5::{Digest, Md5};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Which end of calls this tunnel plays: the LAC places incoming calls
/// (ICRQ/ICCN), the LNS answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Lac,
    Lns,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunnelConfig {
    pub role: Role,
    pub host_name: Vec<u8>,
    pub vendor_name: Option<Vec<u8>>,
    pub firmware_revision: Option<u16>,
    /// Shared secret: enables tunnel authentication (§5.1.1) and hidden
    /// AVPs (§4.3). With a secret we always challenge the peer.
    pub secret: Option<Vec<u8>>,
    pub framing_capabilities: u32,
    pub bearer_capabilities: u32,
    /// §5.5/§6.5: HELLO after this long without any message from the peer.
    pub hello_interval: Duration,
    pub reliable: ReliableConfig,
    pub max_sessions: usize,
    /// Send a Tie Breaker AVP in our SCCRQ (§4.4.3).
    pub tie_breaker: bool,
    /// LAC: hide the proxy authentication AVPs of ICCN (§4.3) when a
    /// secret is configured, so user names and responses do not cross the
    /// network in clear.
    pub hide_avps: bool,
    /// How long session ids stay unused after release.
    pub session_id_hold_down: Duration,
    /// After a peer's StopCCN, keep state this long to re-acknowledge its
    /// retransmissions (§5.7: one full retransmission cycle).
    pub close_linger: Duration,
    /// LNS: a call answered with ICRP whose ICCN has not come this long
    /// after is disconnected (CDN, timeout), so a LAC that never connects
    /// its calls cannot hold session slots.
    pub call_connect_timeout: Duration,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            role: Role::Lns,
            host_name: b"lns".to_vec(),
            vendor_name: None,
            firmware_revision: None,
            secret: None,
            framing_capabilities: avp::framing::SYNC | avp::framing::ASYNC,
            bearer_capabilities: 0,
            hello_interval: Duration::from_secs(60),
            reliable: ReliableConfig::default(),
            max_sessions: 65535,
            tie_breaker: false,
            hide_avps: true,
            session_id_hold_down: Duration::from_secs(60),
            close_linger: Duration::from_secs(31),
            call_connect_timeout: Duration::from_secs(60),
        }
    }
}

/// §7.2 states (Idle/wait-ctl-reply/wait-ctl-conn/established), plus the
/// orderly shutdown of §5.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelState {
    /// Responder, before the SCCRQ was processed.
    Idle,
    /// Initiator: SCCRQ sent.
    WaitCtlReply,
    /// Responder: SCCRP sent.
    WaitCtlConn,
    Established,
    /// StopCCN sent or received; still acknowledging.
    Closing,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelDownReason {
    /// We sent StopCCN on request of the application.
    LocalClose(ResultCode),
    /// The peer sent StopCCN.
    PeerStopCcn(Option<ResultCode>),
    /// §5.8: no acknowledgement after the maximum retransmissions.
    RetransmitLimit,
    /// Challenge/response failed or could not be performed (§5.1.1).
    AuthenticationFailed,
    /// Malformed or unexpected message; we sent StopCCN with this code.
    ProtocolError(ResultCode),
    /// Simultaneous open, and the peer's SCCRQ won (§4.4.3).
    TieBreakerLost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    TunnelUp {
        peer_tunnel_id: TunnelId,
        peer_host_name: Vec<u8>,
    },
    TunnelDown {
        reason: TunnelDownReason,
    },
    /// LNS: an ICRQ was accepted and ICRP is about to leave (§7.4.2). The
    /// session is not connected yet (ICCN follows), but the LAC may send
    /// PPP right after its ICCN, so the data path must know the session
    /// from now on: a frame for an unknown session is dropped.
    IncomingCall {
        session_id: SessionId,
        peer_session_id: SessionId,
    },
    SessionUp {
        session_id: SessionId,
        peer_session_id: SessionId,
        info: Box<SessionInfo>,
    },
    SessionDown {
        session_id: SessionId,
        cause: SessionDownCause,
    },
    /// WEN (§6.13), LNS side.
    WanErrorNotify {
        session_id: SessionId,
        errors: CallErrors,
    },
    /// SLI (§6.14), LAC side.
    SetLinkInfo {
        session_id: SessionId,
        accm: Accm,
    },
    /// CSUN (RFC 5515 §3.2): new line speeds, by the LNS's session ids.
    ConnectSpeedUpdate {
        updates: Vec<ConnectSpeedUpdate>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    #[error("tunnel is not established")]
    NotEstablished,
    #[error("operation not available in this role")]
    WrongRole,
    #[error("session limit reached")]
    TooManySessions,
    #[error("no such session")]
    NoSuchSession,
}

/// §4.4.3 Challenge Response: MD5 over the message type that carries the
/// response (SCCRP = 2, SCCCN = 3), the secret and the challenge.
pub fn challenge_response(message_type: MessageType, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([u16::from(message_type) as u8]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// One control connection.
///
/// Plain data (serde), so a process can snapshot its tunnels and a new one
/// take them back (with [`crate::snapshot::with_base`]); a tunnel drawing
/// its session ids from a shared [`SessionIdSpace`] is linked to it again
/// by the [`Endpoint`](super::Endpoint) that holds both.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tunnel {
    cfg: TunnelConfig,
    state: TunnelState,
    local_id: TunnelId,
    peer_id: TunnelId,
    peer_host_name: Vec<u8>,
    reliable: Reliable<Message>,
    our_challenge: Option<Vec<u8>>,
    our_tie_breaker: Option<[u8; 8]>,
    /// Tracked: the store writes the sessions changed, each a record of
    /// its own (see [`TunnelShellRef`]).
    #[serde(with = "super::serde_maps::tracked_pairs")]
    sessions: Tracked<HashMap<SessionId, Session>>,
    /// Peer session id → ours, to spot duplicate ICRQs and to match a CDN
    /// sent before the peer learnt our id, without scanning.
    #[serde(with = "super::serde_maps::pairs")]
    by_peer_session: HashMap<SessionId, SessionId>,
    session_ids: IdAllocator,
    next_call_serial: u32,
    /// Empty between inputs; one pointer then (a StopCCN's thousand
    /// SessionDown events, or a burst's calls, left their room to every
    /// lingering tunnel as a VecDeque).
    events: crate::lazy_box::LazyQueue<Event>,
    /// LNS calls waiting for their ICCN, and until when.
    #[serde(with = "super::serde_maps::instant_values")]
    awaiting_iccn: HashMap<SessionId, Instant>,
    #[serde(with = "crate::snapshot::opt_instant")]
    hello_deadline: Option<Instant>,
    #[serde(with = "crate::snapshot::opt_instant")]
    linger_until: Option<Instant>,
    down_reported: bool,
    /// ChaCha rather than StdRng: its state serializes (and is the same
    /// generator in every build).
    rng: ChaCha8Rng,
}

/// A tunnel's record in the store, without its sessions: they are records
/// of their own ([`SessionRecordRef`]), so a message about one session
/// rewrites that session and the control channel's state, not every
/// session of the tunnel. The session-id allocator goes without the ids in
/// use: they are the sessions' ids, taken again by [`Tunnel::from_records`].
#[derive(Serialize)]
pub struct TunnelShellRef<'a> {
    cfg: &'a TunnelConfig,
    state: TunnelState,
    local_id: TunnelId,
    peer_id: TunnelId,
    peer_host_name: &'a [u8],
    reliable: &'a Reliable<Message>,
    our_challenge: &'a Option<Vec<u8>>,
    our_tie_breaker: Option<[u8; 8]>,
    #[serde(with = "super::ids::without_in_use")]
    session_ids: &'a IdAllocator,
    next_call_serial: u32,
    events: &'a crate::lazy_box::LazyQueue<Event>,
    #[serde(with = "crate::snapshot::opt_instant")]
    hello_deadline: Option<Instant>,
    #[serde(with = "crate::snapshot::opt_instant")]
    linger_until: Option<Instant>,
    down_reported: bool,
    rng: &'a ChaCha8Rng,
}

/// [`TunnelShellRef`] read back.
#[derive(Deserialize)]
pub struct TunnelShell {
    cfg: TunnelConfig,
    state: TunnelState,
    local_id: TunnelId,
    peer_id: TunnelId,
    peer_host_name: Vec<u8>,
    reliable: Reliable<Message>,
    our_challenge: Option<Vec<u8>>,
    our_tie_breaker: Option<[u8; 8]>,
    #[serde(with = "super::ids::without_in_use")]
    session_ids: IdAllocator,
    next_call_serial: u32,
    events: crate::lazy_box::LazyQueue<Event>,
    #[serde(with = "crate::snapshot::opt_instant")]
    hello_deadline: Option<Instant>,
    #[serde(with = "crate::snapshot::opt_instant")]
    linger_until: Option<Instant>,
    down_reported: bool,
    rng: ChaCha8Rng,
}

/// One L2TP session's record in the store: the session and, for a call
/// not yet connected, until when its ICCN may come.
#[derive(Serialize)]
pub struct SessionRecordRef<'a> {
    session: &'a Session,
    #[serde(with = "crate::snapshot::opt_instant")]
    awaiting_iccn: Option<Instant>,
}

/// [`SessionRecordRef`] read back.
#[derive(Debug, Deserialize)]
pub struct SessionRecord {
    pub session: Session,
    #[serde(with = "crate::snapshot::opt_instant")]
    pub awaiting_iccn: Option<Instant>,
}

impl Tunnel {
    fn new(cfg: TunnelConfig, local_id: TunnelId, seed: u64, state: TunnelState) -> Self {
        let reliable = Reliable::new(cfg.reliable.clone());
        let session_ids = IdAllocator::new(cfg.session_id_hold_down);
        Tunnel {
            cfg,
            state,
            local_id,
            peer_id: TunnelId(0),
            peer_host_name: Vec::new(),
            reliable,
            our_challenge: None,
            our_tie_breaker: None,
            sessions: Tracked::default(),
            by_peer_session: HashMap::new(),
            session_ids,
            next_call_serial: 1,
            events: Default::default(),
            awaiting_iccn: HashMap::new(),
            hello_deadline: None,
            linger_until: None,
            down_reported: false,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Open a control connection: queue the SCCRQ (§7.2.1).
    pub fn connect(cfg: TunnelConfig, local_id: TunnelId, seed: u64) -> Self {
        let mut t = Tunnel::new(cfg, local_id, seed, TunnelState::WaitCtlReply);
        let mut avps = t.capability_avps(MessageType::Sccrq);
        if t.cfg.tie_breaker {
            let tb: [u8; 8] = t.rng.gen();
            t.our_tie_breaker = Some(tb);
            avps.push(Avp::new(AvpValue::TieBreaker(tb)));
        }
        t.send(SessionId(0), avps);
        t
    }

    /// A tunnel that waits for the peer's SCCRQ (fed next through
    /// [`Tunnel::handle_datagram`]).
    pub fn accept(cfg: TunnelConfig, local_id: TunnelId, seed: u64) -> Self {
        Tunnel::new(cfg, local_id, seed, TunnelState::Idle)
    }

    /// Draws this tunnel's session ids from `space`, shared with other
    /// tunnels (see [`SessionIdSpace`]); the hold-down stays this tunnel's.
    /// Only before the tunnel has handed out a session id (an id it holds
    /// might be another tunnel's in `space`): false, and nothing changes,
    /// after. [`Endpoint`](super::Endpoint) calls it on every tunnel it
    /// creates.
    pub fn share_session_ids(&mut self, space: SessionIdSpace) -> bool {
        self.session_ids.share(space)
    }

    /// After a restore: draw session ids from `space` again (the restored
    /// copy of the space this tunnel shared before), its ids taken there.
    pub(crate) fn relink_session_ids(&mut self, space: &SessionIdSpace) {
        self.session_ids.relink(space);
    }

    /// This tunnel's record in the store, its sessions left out.
    pub fn shell(&self) -> TunnelShellRef<'_> {
        TunnelShellRef {
            cfg: &self.cfg,
            state: self.state,
            local_id: self.local_id,
            peer_id: self.peer_id,
            peer_host_name: &self.peer_host_name,
            reliable: &self.reliable,
            our_challenge: &self.our_challenge,
            our_tie_breaker: self.our_tie_breaker,
            session_ids: &self.session_ids,
            next_call_serial: self.next_call_serial,
            events: &self.events,
            hello_deadline: self.hello_deadline,
            linger_until: self.linger_until,
            down_reported: self.down_reported,
            rng: &self.rng,
        }
    }

    /// Session `id`'s record in the store.
    pub fn session_record(&self, id: SessionId) -> Option<SessionRecordRef<'_>> {
        let session = self.sessions.get(&id)?;
        Some(SessionRecordRef { session, awaiting_iccn: self.awaiting_iccn.get(&id).copied() })
    }

    /// The sessions added, changed or removed since the last call.
    pub fn take_changed_sessions(&mut self) -> BTreeSet<SessionId> {
        self.sessions.take_dirty()
    }

    /// A tunnel put back together from its record and its sessions'; the
    /// caller links it to its bank's session-id space again
    /// ([`Tunnel::relink_session_ids`]).
    pub fn from_records(shell: TunnelShell, sessions: impl IntoIterator<Item = SessionRecord>) -> Tunnel {
        let mut t = Tunnel {
            cfg: shell.cfg,
            state: shell.state,
            local_id: shell.local_id,
            peer_id: shell.peer_id,
            peer_host_name: shell.peer_host_name,
            reliable: shell.reliable,
            our_challenge: shell.our_challenge,
            our_tie_breaker: shell.our_tie_breaker,
            sessions: Tracked::default(),
            by_peer_session: HashMap::new(),
            session_ids: shell.session_ids,
            next_call_serial: shell.next_call_serial,
            events: shell.events,
            awaiting_iccn: HashMap::new(),
            hello_deadline: shell.hello_deadline,
            linger_until: shell.linger_until,
            down_reported: shell.down_reported,
            rng: shell.rng,
        };
        for r in sessions {
            let id = r.session.local_id;
            t.session_ids.hold(id.0);
            if let Some(d) = r.awaiting_iccn {
                t.awaiting_iccn.insert(id, d);
            }
            t.insert_session(r.session);
        }
        t.sessions.take_dirty();
        t
    }

    pub fn state(&self) -> TunnelState {
        self.state
    }
    pub fn local_id(&self) -> TunnelId {
        self.local_id
    }
    pub fn peer_id(&self) -> TunnelId {
        self.peer_id
    }
    pub fn peer_host_name(&self) -> &[u8] {
        &self.peer_host_name
    }
    pub fn role(&self) -> Role {
        self.cfg.role
    }
    pub fn tie_breaker(&self) -> Option<[u8; 8]> {
        self.our_tie_breaker
    }
    pub fn is_closed(&self) -> bool {
        self.state == TunnelState::Closed
    }
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
    /// Reliable-delivery statistics and windows, for tests and metrics.
    pub fn reliable(&self) -> &Reliable<Message> {
        &self.reliable
    }

    /// SCCRQ/SCCRP common AVPs (§6.1, §6.2), after Message Type.
    fn capability_avps(&mut self, mt: MessageType) -> Vec<Avp> {
        let mut v = vec![
            Avp::new(AvpValue::MessageType(mt)),
            Avp::new(AvpValue::ProtocolVersion { version: 1, revision: 0 }),
            Avp::new(AvpValue::FramingCapabilities(self.cfg.framing_capabilities)),
            Avp::new(AvpValue::BearerCapabilities(self.cfg.bearer_capabilities)),
        ];
        if let Some(f) = self.cfg.firmware_revision {
            v.push(Avp::new(AvpValue::FirmwareRevision(f)));
        }
        v.push(Avp::new(AvpValue::HostName(self.cfg.host_name.clone())));
        if let Some(n) = &self.cfg.vendor_name {
            v.push(Avp::new(AvpValue::VendorName(n.clone())));
        }
        v.push(Avp::new(AvpValue::AssignedTunnelId(self.local_id)));
        v.push(Avp::new(AvpValue::ReceiveWindowSize(self.cfg.reliable.receive_window)));
        if self.cfg.secret.is_some() {
            let c: [u8; 16] = self.rng.gen();
            self.our_challenge = Some(c.to_vec());
            v.push(Avp::new(AvpValue::Challenge(c.to_vec())));
        }
        v
    }

    fn send(&mut self, session: SessionId, avps: Vec<Avp>) {
        // Encoding can only fail for hidden AVPs without a secret or for
        // over-long values, neither of which this module builds.
        if let Ok(body) = Message::encode_body(&avps, self.cfg.secret.as_deref()) {
            self.reliable.send(self.peer_id, session, body);
        }
    }

    fn send_msg(&mut self, session: SessionId, mt: MessageType, values: Vec<AvpValue>) {
        let mut avps = vec![Avp::new(AvpValue::MessageType(mt))];
        avps.extend(values.into_iter().map(Avp::new));
        self.send(session, avps);
    }

    /// Feed a control datagram addressed to this tunnel.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) -> Result<(), Error> {
        let m = Message::parse(data, self.cfg.secret.as_deref())?;
        if self.state == TunnelState::Closed {
            return Ok(());
        }
        if self.state == TunnelState::Established {
            self.hello_deadline = Some(now + self.cfg.hello_interval);
        }
        let (ns, nr) = (m.ns, m.nr);
        let item = (!m.is_zlb()).then_some(m);
        for m in self.reliable.on_receive(now, ns, nr, item) {
            let next_ns = self.reliable.next_ns();
            self.process(now, m);
            // A message we answer carries the ack; one we do not answer
            // (ICCN, SCCCN, CDN, HELLO...) is acked now: a peer whose window
            // is small (slow start, Appendix A) would otherwise wait out the
            // delayed ack before it may send again.
            if self.reliable.next_ns() == next_ns {
                self.reliable.ack_now(now);
            }
        }
        self.check_closed();
        Ok(())
    }

    fn check_closed(&mut self) {
        if self.state == TunnelState::Closing && self.linger_until.is_none() && self.reliable.all_acked() {
            // Our StopCCN was acknowledged (§5.7).
            self.state = TunnelState::Closed;
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == TunnelState::Closed {
            return;
        }
        if self.reliable.handle_timeout(now).is_err() {
            self.reliable.abandon();
            self.sessions_down(now, None, false);
            self.report_down(TunnelDownReason::RetransmitLimit);
            self.state = TunnelState::Closed;
            return;
        }
        if let Some(l) = self.linger_until {
            if l <= now {
                self.state = TunnelState::Closed;
                return;
            }
        }
        let expired: Vec<SessionId> =
            self.awaiting_iccn.iter().filter(|(_, d)| **d <= now).map(|(id, _)| *id).collect();
        for id in expired {
            let rc = ResultCode::with_error(avp::cdn::TIMEOUT, avp::error_code::NO_ERROR, "no ICCN");
            let _ = self.close_session(now, id, rc, None);
        }
        if let Some(h) = self.hello_deadline {
            if h <= now && self.state == TunnelState::Established {
                // A HELLO is only useful when nothing is outstanding: an
                // unacknowledged message already probes the peer.
                if self.reliable.all_acked() {
                    self.send_msg(SessionId(0), MessageType::Hello, vec![]);
                }
                self.hello_deadline = Some(now + self.cfg.hello_interval);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == TunnelState::Closed {
            return None;
        }
        [
            self.reliable.poll_timeout(),
            self.hello_deadline,
            self.linger_until,
            self.awaiting_iccn.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.state == TunnelState::Closed {
            return None;
        }
        let out = self.reliable.poll_transmit(now, self.peer_id);
        self.check_closed();
        out
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn report_down(&mut self, reason: TunnelDownReason) {
        if !self.down_reported {
            self.down_reported = true;
            self.events.push_back(Event::TunnelDown { reason });
        }
    }

    fn insert_session(&mut self, s: Session) {
        if s.peer_id != SessionId(0) {
            self.by_peer_session.insert(s.peer_id, s.local_id);
        }
        self.sessions.insert(s.local_id, s);
    }

    /// Every deadline check walks the calls awaiting their ICCN, which a
    /// hash map does over its whole capacity: a burst of calls does not
    /// leave it large (1.5 % of the control plane's time at a million
    /// sessions, for maps holding nothing).
    fn iccn_no_longer_awaited(&mut self, id: SessionId) {
        self.awaiting_iccn.remove(&id);
        let (len, capacity) = (self.awaiting_iccn.len(), self.awaiting_iccn.capacity());
        if capacity > 8 && len * 4 < capacity {
            self.awaiting_iccn.shrink_to_fit();
        }
    }

    /// Calls awaiting their ICCN, and the room their map holds.
    #[cfg(test)]
    pub(crate) fn awaiting_iccn(&self) -> (usize, usize) {
        (self.awaiting_iccn.len(), self.awaiting_iccn.capacity())
    }

    /// Whether the event queue holds a buffer, and the room of the
    /// reliable layer's queues (to send, in flight).
    #[cfg(test)]
    pub(crate) fn queue_room(&self) -> (bool, usize, usize) {
        let (queue, in_flight) = self.reliable.queue_room();
        (self.events.is_allocated(), queue, in_flight)
    }

    fn remove_session(&mut self, now: Instant, id: SessionId) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        self.iccn_no_longer_awaited(id);
        if self.by_peer_session.get(&s.peer_id) == Some(&id) {
            self.by_peer_session.remove(&s.peer_id);
        }
        self.session_ids.release(now, id.0);
        Some(s)
    }

    fn sessions_down(&mut self, now: Instant, result: Option<ResultCode>, by_peer: bool) {
        let mut ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.remove_session(now, id);
            self.events.push_back(Event::SessionDown {
                session_id: id,
                cause: SessionDownCause { result: result.clone(), q931: None, by_peer, ppp_cause: None },
            });
        }
    }

    /// Close the control connection with StopCCN (§5.7); every session
    /// goes with it.
    pub fn close(&mut self, now: Instant, result: ResultCode) {
        self.teardown(now, result.clone(), TunnelDownReason::LocalClose(result));
    }

    /// Drop the tunnel without a StopCCN (tie-breaker loss, §4.4.3).
    pub fn abort(&mut self, reason: TunnelDownReason) {
        self.reliable.abandon();
        self.report_down(reason);
        self.state = TunnelState::Closed;
    }

    fn teardown(&mut self, now: Instant, result: ResultCode, reason: TunnelDownReason) {
        if matches!(self.state, TunnelState::Closing | TunnelState::Closed) {
            return;
        }
        self.sessions_down(now, Some(result.clone()), false);
        self.report_down(reason);
        self.hello_deadline = None;
        if self.peer_id == TunnelId(0) {
            // The peer never told us its id: nowhere to send StopCCN.
            self.reliable.abandon();
            self.state = TunnelState::Closed;
            return;
        }
        // Pending messages are moot; the StopCCN is what must get through.
        self.reliable.abandon();
        self.send_msg(
            SessionId(0),
            MessageType::StopCcn,
            vec![AvpValue::AssignedTunnelId(self.local_id), AvpValue::ResultCode(result)],
        );
        self.state = TunnelState::Closing;
    }

    fn auth_failed(&mut self, now: Instant, why: &str) {
        let rc = ResultCode::with_error(avp::stopccn::NOT_AUTHORIZED, avp::error_code::NO_ERROR, why);
        self.teardown(now, rc, TunnelDownReason::AuthenticationFailed);
    }

    fn fsm_error(&mut self, now: Instant) {
        let rc = ResultCode::new(avp::stopccn::FSM_ERROR);
        self.teardown(now, rc.clone(), TunnelDownReason::ProtocolError(rc));
    }

    fn process(&mut self, now: Instant, m: Message) {
        if matches!(self.state, TunnelState::Closing | TunnelState::Closed) {
            // §5.7: after StopCCN only acknowledgements matter (the reliable
            // layer already acked this one).
            return;
        }
        match m.validate() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return self.invalid(now, &m, e),
        }
        let Some(mt) = m.message_type() else { return };
        use MessageType as T;
        match (mt, self.state) {
            (T::Sccrq, TunnelState::Idle) => self.on_sccrq(now, &m),
            (T::Sccrp, TunnelState::WaitCtlReply) => self.on_sccrp(now, &m),
            (T::Scccn, TunnelState::WaitCtlConn) => self.on_scccn(now, &m),
            (T::StopCcn, _) => self.on_stopccn(now, &m),
            (T::Sccrq | T::Sccrp | T::Scccn, _) => self.fsm_error(now),
            (T::Hello, _) => {}
            (_, TunnelState::Established) => self.on_call_message(now, mt, &m),
            // Call messages before the tunnel is up violate §7.2.
            _ => self.fsm_error(now),
        }
    }

    fn invalid(&mut self, now: Instant, m: &Message, e: ValidationError) {
        let rc = e.result_code();
        match e.scope() {
            Scope::Tunnel => self.teardown(now, rc.clone(), TunnelDownReason::ProtocolError(rc)),
            Scope::Session => {
                if m.session_id != SessionId(0) && self.sessions.contains_key(&m.session_id) {
                    let _ = self.close_session(now, m.session_id, rc, None);
                } else if let Some(peer) = m.assigned_session_id() {
                    // A call we never accepted (ICRQ/OCRQ): answer its id.
                    self.send_msg(
                        peer,
                        MessageType::Cdn,
                        vec![AvpValue::ResultCode(rc), AvpValue::AssignedSessionId(SessionId(0))],
                    );
                }
            }
        }
    }

    fn peer_params(&mut self, m: &Message) -> bool {
        let Some(peer) = m.assigned_tunnel_id() else { return false };
        if peer == TunnelId(0) {
            return false;
        }
        self.peer_id = peer;
        self.reliable.set_tunnel_id(peer);
        self.peer_host_name = m.host_name().unwrap_or_default();
        if let Some(w) = m.receive_window_size() {
            self.reliable.set_peer_window(w);
        }
        true
    }

    /// Reject a protocol version other than 1 (§4.4.3 says 1.0; the
    /// revision is not checked, as it cannot change the wire format).
    fn version_ok(&mut self, now: Instant, m: &Message) -> bool {
        if matches!(m.protocol_version(), Some((1, _))) {
            return true;
        }
        let rc = ResultCode::new(avp::stopccn::PROTOCOL_VERSION);
        self.teardown(now, rc.clone(), TunnelDownReason::ProtocolError(rc));
        false
    }

    fn on_sccrq(&mut self, now: Instant, m: &Message) {
        if !self.peer_params(m) {
            // Assigned Tunnel ID 0 is invalid; nowhere to answer.
            self.abort(TunnelDownReason::ProtocolError(ResultCode::new(avp::stopccn::GENERAL_ERROR)));
            return;
        }
        if !self.version_ok(now, m) {
            return;
        }
        let mut avps = self.capability_avps(MessageType::Sccrp);
        if let Some(c) = m.challenge() {
            let Some(secret) = self.cfg.secret.clone() else {
                return self.auth_failed(now, "no secret for challenge");
            };
            let r = challenge_response(MessageType::Sccrp, &secret, &c);
            avps.push(Avp::new(AvpValue::ChallengeResponse(r)));
        }
        self.send(SessionId(0), avps);
        self.state = TunnelState::WaitCtlConn;
    }

    fn response_ok(&self, mt: MessageType, m: &Message) -> bool {
        match (&self.our_challenge, &self.cfg.secret) {
            (Some(c), Some(secret)) => m.challenge_response() == Some(challenge_response(mt, secret, c)),
            _ => true,
        }
    }

    fn on_sccrp(&mut self, now: Instant, m: &Message) {
        if !self.peer_params(m) {
            self.abort(TunnelDownReason::ProtocolError(ResultCode::new(avp::stopccn::GENERAL_ERROR)));
            return;
        }
        if !self.version_ok(now, m) {
            return;
        }
        if !self.response_ok(MessageType::Sccrp, m) {
            return self.auth_failed(now, "bad challenge response");
        }
        let mut values = vec![];
        if let Some(c) = m.challenge() {
            let Some(secret) = self.cfg.secret.clone() else {
                return self.auth_failed(now, "no secret for challenge");
            };
            values.push(AvpValue::ChallengeResponse(challenge_response(MessageType::Scccn, &secret, &c)));
        }
        self.send_msg(SessionId(0), MessageType::Scccn, values);
        self.established(now);
    }

    fn on_scccn(&mut self, now: Instant, m: &Message) {
        if !self.response_ok(MessageType::Scccn, m) {
            return self.auth_failed(now, "bad challenge response");
        }
        self.established(now);
    }

    fn established(&mut self, now: Instant) {
        self.state = TunnelState::Established;
        self.hello_deadline = Some(now + self.cfg.hello_interval);
        self.events.push_back(Event::TunnelUp {
            peer_tunnel_id: self.peer_id,
            peer_host_name: self.peer_host_name.clone(),
        });
    }

    fn on_stopccn(&mut self, now: Instant, m: &Message) {
        let rc = m.result_code();
        self.sessions_down(now, rc.clone(), true);
        self.report_down(TunnelDownReason::PeerStopCcn(rc));
        self.reliable.abandon();
        // Acknowledge at once, then linger to re-ack retransmissions.
        self.reliable.ack_now(now);
        self.hello_deadline = None;
        self.linger_until = Some(now + self.cfg.close_linger);
        self.state = TunnelState::Closing;
    }

    fn on_call_message(&mut self, now: Instant, mt: MessageType, m: &Message) {
        use MessageType as T;
        match mt {
            T::Icrq => self.on_icrq(now, m),
            T::Icrp => self.on_icrp(now, m),
            T::Iccn => self.on_iccn(m),
            T::Cdn => self.on_cdn(now, m),
            T::Wen => {
                if let (true, Some(errors)) = (self.sessions.contains_key(&m.session_id), m.call_errors()) {
                    self.events.push_back(Event::WanErrorNotify { session_id: m.session_id, errors });
                }
            }
            T::Sli => {
                if let (true, Some(accm)) = (self.sessions.contains_key(&m.session_id), m.accm()) {
                    self.events.push_back(Event::SetLinkInfo { session_id: m.session_id, accm });
                }
            }
            T::Csun => {
                let updates = session::connect_speed_updates(m);
                if !updates.is_empty() {
                    self.events.push_back(Event::ConnectSpeedUpdate { updates });
                }
            }
            T::Ocrq => {
                // Outgoing calls are not offered: refuse (§6.9, result 5).
                if let Some(peer) = m.assigned_session_id() {
                    let rc = ResultCode::new(avp::cdn::NO_FACILITIES_PERMANENT);
                    self.send_msg(
                        peer,
                        MessageType::Cdn,
                        vec![AvpValue::ResultCode(rc), AvpValue::AssignedSessionId(SessionId(0))],
                    );
                }
            }
            // OCRP/OCCN for calls we never placed, CSURQ: nothing to do.
            _ => {}
        }
    }

    fn on_icrq(&mut self, now: Instant, m: &Message) {
        let Some(peer_sid) = m.assigned_session_id() else { return };
        // A retransmitted ICRQ is caught by reliable delivery; a second
        // ICRQ for the same peer session is a peer bug: ignore it.
        if self.by_peer_session.contains_key(&peer_sid) {
            return;
        }
        let refuse = |t: &mut Tunnel, rc: ResultCode| {
            t.send_msg(
                peer_sid,
                MessageType::Cdn,
                vec![AvpValue::ResultCode(rc), AvpValue::AssignedSessionId(SessionId(0))],
            );
        };
        if self.cfg.role != Role::Lns {
            return refuse(self, ResultCode::new(avp::cdn::NO_FACILITIES_PERMANENT));
        }
        if self.sessions.len() >= self.cfg.max_sessions {
            let rc = ResultCode::with_error(
                avp::cdn::NO_FACILITIES_TEMPORARY,
                avp::error_code::INSUFFICIENT_RESOURCES,
                "",
            );
            return refuse(self, rc);
        }
        let Some(local) = self.session_ids.allocate(now, &mut self.rng) else {
            let rc = ResultCode::with_error(
                avp::cdn::NO_FACILITIES_TEMPORARY,
                avp::error_code::INSUFFICIENT_RESOURCES,
                "",
            );
            return refuse(self, rc);
        };
        let local = SessionId(local);
        let mut info = SessionInfo::default();
        info.absorb(m);
        self.insert_session(Session {
            local_id: local,
            peer_id: peer_sid,
            state: SessionState::WaitConnect,
            info: Some(Box::new(info)),
        });
        self.events.push_back(Event::IncomingCall { session_id: local, peer_session_id: peer_sid });
        self.awaiting_iccn.insert(local, now + self.cfg.call_connect_timeout);
        self.send_msg(peer_sid, MessageType::Icrp, vec![AvpValue::AssignedSessionId(local)]);
    }

    fn on_icrp(&mut self, now: Instant, m: &Message) {
        let (Some(s), Some(peer_sid)) = (self.sessions.get_mut(&m.session_id), m.assigned_session_id())
        else {
            return;
        };
        if s.state != SessionState::WaitReply {
            let id = s.local_id;
            let rc =
                ResultCode::with_error(avp::cdn::GENERAL_ERROR, avp::error_code::NO_ERROR, "unexpected ICRP");
            let _ = self.close_session(now, id, rc, None);
            return;
        }
        s.peer_id = peer_sid;
        s.state = SessionState::Established;
        let (local, info) = (s.local_id, Box::new(s.info().clone()));
        self.by_peer_session.insert(peer_sid, local);
        let mut avps = vec![Avp::new(AvpValue::MessageType(MessageType::Iccn))];
        let mut rest = info.iccn_avps();
        if self.cfg.hide_avps && self.cfg.secret.is_some() {
            let secret_avp = |a: &Avp| {
                matches!(
                    a.value,
                    AvpValue::ProxyAuthenName(_)
                        | AvpValue::ProxyAuthenChallenge(_)
                        | AvpValue::ProxyAuthenResponse(_)
                )
            };
            if rest.iter().any(secret_avp) {
                // §4.3: a Random Vector must precede the hidden AVPs.
                let rv: [u8; 16] = self.rng.gen();
                avps.push(Avp::new(AvpValue::RandomVector(rv.to_vec())));
                for a in rest.iter_mut().filter(|a| secret_avp(a)) {
                    a.hidden = true;
                }
            }
        }
        avps.extend(rest);
        self.send(peer_sid, avps);
        self.events.push_back(Event::SessionUp { session_id: local, peer_session_id: peer_sid, info });
    }

    fn on_iccn(&mut self, m: &Message) {
        let Some(s) = self.sessions.get_mut(&m.session_id) else { return };
        if s.state != SessionState::WaitConnect {
            return;
        }
        let mut info = s.info.take().unwrap_or_default();
        info.absorb(m);
        s.state = SessionState::Established;
        let up = Event::SessionUp { session_id: s.local_id, peer_session_id: s.peer_id, info };
        self.iccn_no_longer_awaited(m.session_id);
        self.events.push_back(up);
    }

    fn on_cdn(&mut self, now: Instant, m: &Message) {
        let id = if self.sessions.contains_key(&m.session_id) {
            Some(m.session_id)
        } else {
            // The peer may not know our id yet (CDN racing ICRP): match
            // its Assigned Session ID against the peer ids we know.
            m.assigned_session_id()
                .filter(|p| *p != SessionId(0))
                .and_then(|p| self.by_peer_session.get(&p).copied())
        };
        let Some(id) = id else { return };
        self.remove_session(now, id);
        self.events.push_back(Event::SessionDown {
            session_id: id,
            cause: SessionDownCause {
                result: m.result_code(),
                q931: m.q931_cause(),
                by_peer: true,
                ppp_cause: m.avps.iter().find_map(|a| match &a.value {
                    AvpValue::Unknown(r) if r.vendor == 0 && r.attr == avp::PPP_DISCONNECT_CAUSE => {
                        Some(r.value.clone())
                    }
                    _ => None,
                }),
            },
        });
    }

    /// LAC: place an incoming call (ICRQ, §7.4.1). ICCN follows the ICRP
    /// automatically with `info`'s connect speeds and proxy AVPs.
    pub fn open_session(&mut self, now: Instant, mut info: SessionInfo) -> Result<SessionId, TunnelError> {
        if self.cfg.role != Role::Lac {
            return Err(TunnelError::WrongRole);
        }
        if self.state != TunnelState::Established {
            return Err(TunnelError::NotEstablished);
        }
        if self.sessions.len() >= self.cfg.max_sessions {
            return Err(TunnelError::TooManySessions);
        }
        let local =
            SessionId(self.session_ids.allocate(now, &mut self.rng).ok_or(TunnelError::TooManySessions)?);
        if info.call_serial_number == 0 {
            info.call_serial_number = self.next_call_serial;
            self.next_call_serial = self.next_call_serial.wrapping_add(1).max(1);
        }
        let mut avps = vec![
            Avp::new(AvpValue::MessageType(MessageType::Icrq)),
            Avp::new(AvpValue::AssignedSessionId(local)),
        ];
        avps.extend(info.icrq_avps());
        self.send(SessionId(0), avps);
        self.insert_session(Session {
            local_id: local,
            peer_id: SessionId(0),
            state: SessionState::WaitReply,
            info: Some(Box::new(info)),
        });
        Ok(local)
    }

    /// Disconnect a call with CDN (§6.12).
    pub fn close_session(
        &mut self,
        now: Instant,
        id: SessionId,
        result: ResultCode,
        q931: Option<Q931Cause>,
    ) -> Result<(), TunnelError> {
        self.close_session_with_ppp_cause(now, id, result, q931, None)
    }

    /// Like [`Tunnel::close_session`], with the RFC 3145 PPP Disconnect
    /// Cause Code AVP value telling the LAC why PPP ended.
    pub fn close_session_with_ppp_cause(
        &mut self,
        now: Instant,
        id: SessionId,
        result: ResultCode,
        q931: Option<Q931Cause>,
        ppp_cause: Option<Vec<u8>>,
    ) -> Result<(), TunnelError> {
        let s = self.remove_session(now, id).ok_or(TunnelError::NoSuchSession)?;
        let mut values = vec![AvpValue::ResultCode(result.clone()), AvpValue::AssignedSessionId(id)];
        if let Some(q) = &q931 {
            values.push(AvpValue::Q931CauseCode(q.clone()));
        }
        if let Some(v) = &ppp_cause {
            values.push(AvpValue::Unknown(avp::RawAvp {
                vendor: 0,
                attr: avp::PPP_DISCONNECT_CAUSE,
                reserved: 0,
                value: v.clone(),
            }));
        }
        self.send_msg(s.peer_id, MessageType::Cdn, values);
        self.events.push_back(Event::SessionDown {
            session_id: id,
            cause: SessionDownCause { result: Some(result), q931, by_peer: false, ppp_cause },
        });
        Ok(())
    }

    /// The header of a data message (T=0, §3.1) carrying a PPP frame of
    /// `payload_len` bytes on session `id`, addressed with the peer's ids.
    /// Ns/Nr are the data channel's, kept by the data path when the
    /// session has Sequencing Required (§5.4); the control plane does not.
    pub fn data_header(
        &self,
        id: SessionId,
        sequence: Option<super::header::Sequence>,
        priority: bool,
        payload_len: usize,
    ) -> Option<super::header::Repr> {
        let s = self.sessions.get(&id)?;
        if s.peer_id == SessionId(0) || self.peer_id == TunnelId(0) {
            return None;
        }
        Some(super::header::Repr {
            kind: super::header::Kind::Data,
            with_length: false,
            priority,
            tunnel_id: self.peer_id,
            session_id: s.peer_id,
            sequence,
            offset_size: None,
            payload_len,
        })
    }

    /// LNS: tell the LAC the negotiated ACCM (SLI, §6.14).
    pub fn set_link_info(&mut self, id: SessionId, accm: Accm) -> Result<(), TunnelError> {
        let peer = self.sessions.get(&id).ok_or(TunnelError::NoSuchSession)?.peer_id;
        self.send_msg(peer, MessageType::Sli, vec![AvpValue::Accm(accm)]);
        Ok(())
    }

    /// LAC: report line errors (WEN, §6.13).
    pub fn wan_error_notify(&mut self, id: SessionId, errors: CallErrors) -> Result<(), TunnelError> {
        let peer = self.sessions.get(&id).ok_or(TunnelError::NoSuchSession)?.peer_id;
        self.send_msg(peer, MessageType::Wen, vec![AvpValue::CallErrors(errors)]);
        Ok(())
    }
}
