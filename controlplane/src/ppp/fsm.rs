//! The RFC 1661 §4 option-negotiation automaton, shared by LCP and every NCP.
//!
//! The automaton knows the state table; what to ask for and what to accept
//! is delegated to an [`OptionPolicy`]. It produces [`Action`]s (packets to
//! send and This-Layer-* signals) that the owner drains with
//! [`Fsm::poll_action`]; time only enters through the `now` arguments.

use super::frame::Protocol;
use super::packet::{self, ConfigOption, Packet, Repr};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// RFC 1661 §4.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Initial,
    Starting,
    Closed,
    Stopped,
    Closing,
    Stopping,
    RequestSent,
    AckReceived,
    AckSent,
    Opened,
}

/// RFC 1661 §4.6 counters and timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsmConfig {
    /// Restart timer (default three seconds).
    pub restart_interval: Duration,
    /// Configure-Requests sent without an answer before giving up (10).
    pub max_configure: u32,
    /// Terminate-Requests sent without an answer (2).
    pub max_terminate: u32,
    /// Configure-Naks sent without an Ack before Naks become Rejects (5).
    pub max_failure: u32,
}

impl Default for FsmConfig {
    fn default() -> Self {
        FsmConfig {
            restart_interval: Duration::from_secs(3),
            max_configure: 10,
            max_terminate: 2,
            max_failure: 5,
        }
    }
}

/// [`FsmConfig`] as each FSM keeps it: the restart timer in milliseconds
/// (at most 49 days), 16 bytes instead of 32, three times per link.
/// Serialized as the [`FsmConfig`] it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    restart_ms: u32,
    max_configure: u32,
    max_terminate: u32,
    max_failure: u32,
}

impl From<FsmConfig> for Limits {
    fn from(c: FsmConfig) -> Self {
        Limits {
            restart_ms: u32::try_from(c.restart_interval.as_millis()).unwrap_or(u32::MAX),
            max_configure: c.max_configure,
            max_terminate: c.max_terminate,
            max_failure: c.max_failure,
        }
    }
}

impl From<Limits> for FsmConfig {
    fn from(l: Limits) -> Self {
        FsmConfig {
            restart_interval: l.restart_interval(),
            max_configure: l.max_configure,
            max_terminate: l.max_terminate,
            max_failure: l.max_failure,
        }
    }
}

impl Serialize for Limits {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FsmConfig::from(*self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        FsmConfig::deserialize(d).map(Limits::from)
    }
}

impl Limits {
    fn restart_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.restart_ms))
    }
}

/// Judgement of a peer's Configure-Request (RFC 1661 §5.2–§5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<O> {
    Ack,
    /// Options with values we would accept instead.
    Nak(Vec<O>),
    /// Options we do not recognise or will not negotiate, verbatim.
    Reject(Vec<O>),
}

/// What one protocol wants and accepts.
pub trait OptionPolicy {
    type Option: ConfigOption;
    /// A new negotiation starts: forget Naks and Rejects of earlier rounds
    /// (and draw new random values, e.g. a Magic-Number, from `rng`).
    fn reset(&mut self, rng: &mut ChaCha8Rng);
    /// Options for our next Configure-Request.
    fn request(&mut self) -> Vec<Self::Option>;
    /// Judge the peer's Configure-Request.
    fn judge(&mut self, request: &[Self::Option], rng: &mut ChaCha8Rng) -> Verdict<Self::Option>;
    /// We acknowledged this request of the peer's.
    fn peer_acknowledged(&mut self, request: &[Self::Option]);
    /// The peer acknowledged our request.
    fn acknowledged(&mut self, options: &[Self::Option]);
    /// The peer Nak'ed our request with these values.
    fn naked(&mut self, options: &[Self::Option], rng: &mut ChaCha8Rng);
    /// The peer rejected these options of our request.
    fn rejected(&mut self, options: &[Self::Option]);
}

/// Why the automaton signalled This-Layer-Finished (for RFC 3145 causes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    /// Configure-Requests went unanswered (TO- while negotiating); `heard`
    /// says whether any packet of this protocol was received.
    Timeout { heard: bool },
    /// We closed (administrative Close, Terminate exchange done or timed out).
    LocalClose,
    /// The peer sent Terminate-Request.
    PeerTerminated,
    /// Catastrophic Code-Reject or Protocol-Reject (RXJ-).
    Rejected,
    /// Left the Starting state by Close before the lower layer came up.
    NotStarted,
}

/// Output of the automaton.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// A control packet (without PPP header) to send.
    Send(Vec<u8>),
    /// This-Layer-Up: entered Opened.
    Up,
    /// This-Layer-Down: left Opened.
    Down,
    /// This-Layer-Started: the lower layer is needed.
    Started,
    /// This-Layer-Finished: the lower layer is no longer needed.
    Finished(FinishReason),
}

/// One instance of the automaton.
/// The options of our outstanding Configure-Request: kept as they went
/// on the wire (a link holds them as long as it is open, where the parsed
/// list is several times larger), or parsed when their encoding would not
/// give them back exactly. Serialized as the list.
#[derive(Debug, Clone, PartialEq)]
enum Outstanding<O> {
    Encoded(Box<[u8]>),
    Parsed(Vec<O>),
}

impl<O> Default for Outstanding<O> {
    fn default() -> Self {
        Outstanding::Encoded(Box::default())
    }
}

impl<O: ConfigOption> Outstanding<O> {
    fn new(options: &[O]) -> Self {
        let mut buf = vec![0; packet::options_len(options)];
        let exact = packet::emit_options(options, &mut buf).is_ok()
            && packet::parse_options::<O>(&buf).is_ok_and(|back| back == options);
        if exact {
            Outstanding::Encoded(buf.into_boxed_slice())
        } else {
            Outstanding::Parsed(options.to_vec())
        }
    }

    fn options(&self) -> Vec<O> {
        match self {
            // Parsed once already when kept.
            Outstanding::Encoded(b) => packet::parse_options(b).unwrap_or_default(),
            Outstanding::Parsed(v) => v.clone(),
        }
    }

    /// RFC 1661 §5.2: whether `options` are exactly ours.
    fn is(&self, options: &[O]) -> bool {
        self.options() == options
    }
}

impl<O: ConfigOption> Serialize for Outstanding<O> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.options().serialize(s)
    }
}

impl<'de, O: ConfigOption> Deserialize<'de> for Outstanding<O> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<O>::deserialize(d).map(|v| Outstanding::new(&v))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "P: Serialize", deserialize = "P: Deserialize<'de>"))]
pub struct Fsm<P: OptionPolicy> {
    pub policy: P,
    protocol: Protocol,
    config: Limits,
    state: State,
    restart_count: u32,
    #[serde(with = "crate::snapshot::opt_instant")]
    deadline: Option<Instant>,
    /// Identifier and options of our outstanding Configure-Request.
    request_id: u8,
    request: Outstanding<P::Option>,
    terminate_id: u8,
    next_id: u8,
    /// Configure-Naks sent since the last Configure-Ack (Max-Failure).
    naks_sent: u32,
    heard: bool,
    terminate_reason: FinishReason,
    actions: crate::lazy_box::LazyQueue<Action>,
}

impl<P: OptionPolicy> Fsm<P> {
    /// `rng` picks the first Identifier (RFC 1661 §5: any value; a random
    /// start keeps a restarted link from matching stale replies).
    pub fn new(protocol: Protocol, config: FsmConfig, policy: P, rng: &mut impl Rng) -> Self {
        Fsm {
            policy,
            protocol,
            config: config.into(),
            state: State::Initial,
            restart_count: 0,
            deadline: None,
            request_id: 0,
            request: Outstanding::default(),
            terminate_id: 0,
            next_id: rng.gen(),
            naks_sent: 0,
            heard: false,
            terminate_reason: FinishReason::LocalClose,
            actions: Default::default(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_opened(&self) -> bool {
        self.state == State::Opened
    }

    /// True while a negotiation or termination is in progress.
    pub fn is_busy(&self) -> bool {
        matches!(
            self.state,
            State::RequestSent
                | State::AckReceived
                | State::AckSent
                | State::Closing
                | State::Stopping
                | State::Starting
        )
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The restart timer's deadline, when running.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Jump straight to Opened without a negotiation, for proxy LCP
    /// (RFC 2661 §4.4.5) where the LAC negotiated on our behalf. No
    /// This-Layer-Up is signalled: the caller proceeds itself.
    pub fn force_opened(&mut self) {
        self.state = State::Opened;
        self.deadline = None;
        self.heard = true;
    }

    fn id(&mut self) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn send(&mut self, repr: Repr<P::Option>) {
        // Our own options always encode (lengths are bounded by the policy);
        // an encoding failure would mean a policy bug, so the packet is
        // dropped rather than sending garbage.
        if let Ok(bytes) = repr.to_bytes() {
            self.actions.push_back(Action::Send(bytes));
        }
    }

    // RFC 1661 §4.4 actions.

    fn irc_configure(&mut self) {
        self.restart_count = self.config.max_configure;
    }

    fn irc_terminate(&mut self) {
        self.restart_count = self.config.max_terminate;
    }

    fn zrc(&mut self, now: Instant) {
        self.restart_count = 0;
        self.deadline = Some(now + self.config.restart_interval());
    }

    /// A negotiation starts from a non-negotiating state (Starting, Closed,
    /// Stopped, Opened): start again from the configured wishes, before the
    /// peer's request is judged and before our request is built.
    fn begin(&mut self, rng: &mut ChaCha8Rng) {
        self.policy.reset(rng);
        self.naks_sent = 0;
    }

    fn scr(&mut self, now: Instant, retransmit: bool) {
        if !retransmit {
            // RFC 1661 §5.1: a new Identifier whenever the contents change
            // or a reply was received; retransmissions keep it.
            self.request_id = self.id();
            let options = self.policy.request();
            self.request = Outstanding::new(&options);
            self.restart_count = self.restart_count.saturating_sub(1);
            self.deadline = Some(now + self.config.restart_interval());
            self.send(Repr::ConfigureRequest { identifier: self.request_id, options });
            return;
        }
        self.restart_count = self.restart_count.saturating_sub(1);
        self.deadline = Some(now + self.config.restart_interval());
        self.send(Repr::ConfigureRequest { identifier: self.request_id, options: self.request.options() });
    }

    fn str_(&mut self, now: Instant, retransmit: bool) {
        if !retransmit {
            self.terminate_id = self.id();
        }
        self.restart_count = self.restart_count.saturating_sub(1);
        self.deadline = Some(now + self.config.restart_interval());
        self.send(Repr::TerminateRequest { identifier: self.terminate_id, data: Vec::new() });
    }

    fn sta(&mut self, identifier: u8) {
        self.send(Repr::TerminateAck { identifier, data: Vec::new() });
    }

    fn tlu(&mut self) {
        self.actions.push_back(Action::Up);
    }

    fn tld(&mut self) {
        self.actions.push_back(Action::Down);
    }

    fn tls(&mut self) {
        self.actions.push_back(Action::Started);
    }

    fn tlf(&mut self, reason: FinishReason) {
        self.deadline = None;
        self.actions.push_back(Action::Finished(reason));
    }

    fn stop_timer(&mut self) {
        self.deadline = None;
    }

    // RFC 1661 §4.3 events.

    /// Up: the lower layer is ready.
    pub fn up(&mut self, now: Instant, rng: &mut ChaCha8Rng) {
        match self.state {
            State::Initial => self.state = State::Closed,
            State::Starting => {
                self.begin(rng);
                self.irc_configure();
                self.scr(now, false);
                self.state = State::RequestSent;
            }
            _ => {}
        }
    }

    /// Down: the lower layer is gone.
    pub fn down(&mut self) {
        self.stop_timer();
        match self.state {
            State::Closed | State::Closing => self.state = State::Initial,
            State::Stopped => {
                self.tls();
                self.state = State::Starting;
            }
            State::Stopping | State::RequestSent | State::AckReceived | State::AckSent => {
                self.state = State::Starting
            }
            State::Opened => {
                self.tld();
                self.state = State::Starting;
            }
            State::Initial | State::Starting => {}
        }
    }

    /// Open: administratively allowed to come up.
    pub fn open(&mut self, now: Instant, rng: &mut ChaCha8Rng) {
        match self.state {
            State::Initial => {
                self.tls();
                self.state = State::Starting;
            }
            State::Closed => {
                self.begin(rng);
                self.irc_configure();
                self.scr(now, false);
                self.state = State::RequestSent;
            }
            State::Closing => self.state = State::Stopping,
            _ => {}
        }
    }

    /// Close: administratively shut down (sends Terminate-Request).
    pub fn close(&mut self, now: Instant) {
        self.terminate_reason = FinishReason::LocalClose;
        match self.state {
            State::Starting => {
                self.state = State::Initial;
                self.tlf(FinishReason::NotStarted);
            }
            State::Stopped => self.state = State::Closed,
            State::Stopping => self.state = State::Closing,
            State::RequestSent | State::AckReceived | State::AckSent => {
                self.irc_terminate();
                self.str_(now, false);
                self.state = State::Closing;
            }
            State::Opened => {
                self.tld();
                self.irc_terminate();
                self.str_(now, false);
                self.state = State::Closing;
            }
            _ => {}
        }
    }

    /// Run the restart timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        self.deadline = None;
        if self.restart_count > 0 {
            // TO+
            match self.state {
                State::Closing | State::Stopping => self.str_(now, true),
                State::RequestSent | State::AckReceived => {
                    self.scr(now, true);
                    self.state = State::RequestSent;
                }
                State::AckSent => self.scr(now, true),
                _ => {}
            }
        } else {
            // TO-
            match self.state {
                State::Closing => {
                    self.state = State::Closed;
                    self.tlf(FinishReason::LocalClose);
                }
                State::Stopping => {
                    self.state = State::Stopped;
                    self.tlf(self.terminate_reason);
                }
                State::RequestSent | State::AckReceived | State::AckSent => {
                    self.state = State::Stopped;
                    self.tlf(FinishReason::Timeout { heard: self.heard });
                }
                _ => {}
            }
        }
    }

    /// Parse and process a packet of this protocol. Returns packets with
    /// codes outside 1–7 for the owner (LCP's Echo etc.); NCPs should use
    /// [`Fsm::input_ncp`] which answers those with Code-Reject itself.
    pub fn input(
        &mut self,
        now: Instant,
        packet: &[u8],
        rng: &mut ChaCha8Rng,
    ) -> Result<Option<Repr<P::Option>>, super::error::Error> {
        let view = Packet::new_checked(packet)?;
        let repr = Repr::parse(&view)?;
        Ok(self.receive(now, repr, view.packet_bytes(), rng))
    }

    /// As [`Fsm::input`] for an NCP (RFC 1332 §2: codes 1–7 only).
    pub fn input_ncp(
        &mut self,
        now: Instant,
        packet: &[u8],
        rng: &mut ChaCha8Rng,
    ) -> Result<(), super::error::Error> {
        let view = Packet::new_checked(packet)?;
        let repr = Repr::parse_ncp(&view)?;
        let _ = self.receive(now, repr, view.packet_bytes(), rng);
        Ok(())
    }

    fn receive(
        &mut self,
        now: Instant,
        repr: Repr<P::Option>,
        raw: &[u8],
        rng: &mut ChaCha8Rng,
    ) -> Option<Repr<P::Option>> {
        if matches!(self.state, State::Initial | State::Starting) {
            // RFC 1661 §4.2: no packets are expected before the lower layer
            // is up; discard.
            return None;
        }
        self.heard = true;
        match repr {
            Repr::ConfigureRequest { identifier, options } => self.rcr(now, identifier, options, rng),
            Repr::ConfigureAck { identifier, options } => {
                // RFC 1661 §5.2: an Ack must match our request exactly.
                if identifier == self.request_id && self.request.is(&options) {
                    self.rca(now, options, rng);
                }
            }
            Repr::ConfigureNak { identifier, options } => {
                if identifier == self.request_id {
                    self.rcn(now, options, false, rng);
                }
            }
            Repr::ConfigureReject { identifier, options } => {
                if identifier == self.request_id {
                    self.rcn(now, options, true, rng);
                }
            }
            Repr::TerminateRequest { identifier, .. } => self.rtr(now, identifier),
            Repr::TerminateAck { .. } => self.rta(now, rng),
            Repr::CodeReject { rejected_packet, .. } => {
                // RFC 1661 §5.6: rejecting a code we need (1–7) is
                // catastrophic; the others (Echo, Discard...) are optional.
                let rejected = rejected_packet.first().copied().unwrap_or(0);
                let catastrophic =
                    (packet::code::CONFIGURE_REQUEST..=packet::code::CODE_REJECT).contains(&rejected);
                self.rxj(now, catastrophic);
            }
            Repr::Unknown { .. } => self.ruc(raw),
            other => return Some(other),
        }
        None
    }

    fn rcr(&mut self, now: Instant, identifier: u8, options: Vec<P::Option>, rng: &mut ChaCha8Rng) {
        match self.state {
            State::Closed => {
                self.sta(identifier);
                return;
            }
            State::Closing | State::Stopping => return,
            State::Stopped | State::Opened => self.begin(rng),
            _ => {}
        }
        let mut verdict = self.policy.judge(&options, rng);
        if let Verdict::Nak(naks) = &verdict {
            if self.naks_sent >= self.config.max_failure {
                // RFC 1661 §4.6 Max-Failure: stop suggesting, reject the
                // options we keep disagreeing on.
                let kinds: Vec<u8> = naks.iter().map(|o| o.kind()).collect();
                let rejects: Vec<_> = options.iter().filter(|o| kinds.contains(&o.kind())).cloned().collect();
                verdict = if rejects.is_empty() { Verdict::Ack } else { Verdict::Reject(rejects) };
            }
        }
        let good = verdict == Verdict::Ack;
        let reply = match verdict {
            Verdict::Ack => {
                self.naks_sent = 0;
                self.policy.peer_acknowledged(&options);
                Repr::ConfigureAck { identifier, options }
            }
            Verdict::Nak(options) => {
                self.naks_sent += 1;
                Repr::ConfigureNak { identifier, options }
            }
            Verdict::Reject(options) => Repr::ConfigureReject { identifier, options },
        };
        match self.state {
            State::Stopped => {
                self.irc_configure();
                self.scr(now, false);
                self.send(reply);
                self.state = if good { State::AckSent } else { State::RequestSent };
            }
            State::RequestSent => {
                self.send(reply);
                if good {
                    self.state = State::AckSent;
                }
            }
            State::AckReceived => {
                self.send(reply);
                if good {
                    self.stop_timer();
                    self.state = State::Opened;
                    self.tlu();
                }
            }
            State::AckSent => {
                self.send(reply);
                if !good {
                    self.state = State::RequestSent;
                }
            }
            State::Opened => {
                // RFC 1661 §4.1 RCR in Opened: renegotiate from scratch.
                self.tld();
                self.scr(now, false);
                self.send(reply);
                self.state = if good { State::AckSent } else { State::RequestSent };
            }
            _ => {}
        }
    }

    fn rca(&mut self, now: Instant, options: Vec<P::Option>, rng: &mut ChaCha8Rng) {
        match self.state {
            State::Closed | State::Stopped => self.sta(self.request_id),
            State::RequestSent => {
                self.policy.acknowledged(&options);
                self.irc_configure();
                self.state = State::AckReceived;
            }
            State::AckReceived => {
                // Crossed connection (RFC 1661 §4.1 note x).
                self.scr(now, false);
                self.state = State::RequestSent;
            }
            State::AckSent => {
                self.policy.acknowledged(&options);
                self.irc_configure();
                self.stop_timer();
                self.state = State::Opened;
                self.tlu();
            }
            State::Opened => {
                self.tld();
                self.begin(rng);
                self.scr(now, false);
                self.state = State::RequestSent;
            }
            _ => {}
        }
    }

    /// Configure-Nak (`reject == false`) or Configure-Reject of our request.
    fn rcn(&mut self, now: Instant, options: Vec<P::Option>, reject: bool, rng: &mut ChaCha8Rng) {
        let apply = |this: &mut Self, rng: &mut ChaCha8Rng| {
            if reject {
                this.policy.rejected(&options);
            } else {
                this.policy.naked(&options, rng);
            }
        };
        match self.state {
            State::Closed | State::Stopped => self.sta(self.request_id),
            State::RequestSent | State::AckSent => {
                apply(self, rng);
                self.irc_configure();
                self.scr(now, false);
            }
            State::AckReceived => {
                apply(self, rng);
                self.scr(now, false);
                self.state = State::RequestSent;
            }
            State::Opened => {
                self.tld();
                self.begin(rng);
                apply(self, rng);
                self.scr(now, false);
                self.state = State::RequestSent;
            }
            _ => {}
        }
    }

    fn rtr(&mut self, now: Instant, identifier: u8) {
        match self.state {
            State::Closed | State::Stopped | State::Closing | State::Stopping => self.sta(identifier),
            State::RequestSent | State::AckReceived | State::AckSent => {
                self.sta(identifier);
                self.state = State::RequestSent;
            }
            State::Opened => {
                self.terminate_reason = FinishReason::PeerTerminated;
                self.tld();
                self.zrc(now);
                self.sta(identifier);
                self.state = State::Stopping;
            }
            _ => {}
        }
    }

    fn rta(&mut self, now: Instant, rng: &mut ChaCha8Rng) {
        match self.state {
            State::Closing => {
                self.state = State::Closed;
                self.tlf(FinishReason::LocalClose);
            }
            State::Stopping => {
                self.state = State::Stopped;
                self.tlf(self.terminate_reason);
            }
            State::AckReceived => self.state = State::RequestSent,
            State::Opened => {
                self.tld();
                self.begin(rng);
                self.scr(now, false);
                self.state = State::RequestSent;
            }
            _ => {}
        }
    }

    /// RUC: answer an unknown code with Code-Reject (RFC 1661 §5.6).
    fn ruc(&mut self, raw: &[u8]) {
        // RFC 1661 §5.6: the rejected packet is truncated so that the
        // Code-Reject fits the peer's MRU (the default when unknown here).
        let room = usize::from(packet::DEFAULT_MRU) - packet::HEADER_LEN;
        let identifier = self.id();
        self.send(Repr::CodeReject {
            identifier,
            rejected_packet: raw.get(..room.min(raw.len())).unwrap_or(raw).to_vec(),
        });
    }

    /// RXJ+ / RXJ-: a Code-Reject or Protocol-Reject was received;
    /// `catastrophic` selects RXJ-.
    pub fn rxj(&mut self, now: Instant, catastrophic: bool) {
        if !catastrophic {
            if self.state == State::AckReceived {
                self.state = State::RequestSent;
            }
            return;
        }
        match self.state {
            State::Closed | State::Closing => {
                self.state = State::Closed;
                self.tlf(FinishReason::Rejected);
            }
            State::Stopped | State::Stopping | State::RequestSent | State::AckReceived | State::AckSent => {
                self.state = State::Stopped;
                self.tlf(FinishReason::Rejected);
            }
            State::Opened => {
                self.terminate_reason = FinishReason::Rejected;
                self.tld();
                self.irc_terminate();
                self.str_(now, false);
                self.state = State::Stopping;
            }
            _ => {}
        }
    }

    /// Send a packet of a code the owner handles (Echo-Reply,
    /// Protocol-Reject...) with a fresh identifier where `identifier` is None.
    pub fn send_extra(&mut self, repr: Repr<P::Option>) {
        self.send(repr);
    }

    /// A fresh identifier for packets the owner originates (Echo-Request).
    pub fn fresh_identifier(&mut self) -> u8 {
        self.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppp::packet::RawOption;
    use crate::ppp::test_rng as rng;

    /// A toy policy: we ask for option 1 = [want]; the peer's option 1 must
    /// equal `accept` (else Nak with it); option 9 is rejected.
    #[derive(Debug)]
    struct Toy {
        want: u8,
        accept: u8,
        peer_acked: Vec<Vec<RawOption>>,
        acked: usize,
    }

    impl OptionPolicy for Toy {
        type Option = RawOption;
        fn reset(&mut self, _: &mut ChaCha8Rng) {}
        fn request(&mut self) -> Vec<RawOption> {
            vec![RawOption { kind: 1, data: vec![self.want] }]
        }
        fn judge(&mut self, request: &[RawOption], _: &mut ChaCha8Rng) -> Verdict<RawOption> {
            let rejects: Vec<_> = request.iter().filter(|o| o.kind == 9).cloned().collect();
            if !rejects.is_empty() {
                return Verdict::Reject(rejects);
            }
            for o in request {
                if o.kind == 1 && o.data != [self.accept] {
                    return Verdict::Nak(vec![RawOption { kind: 1, data: vec![self.accept] }]);
                }
            }
            Verdict::Ack
        }
        fn peer_acknowledged(&mut self, request: &[RawOption]) {
            self.peer_acked.push(request.to_vec());
        }
        fn acknowledged(&mut self, _: &[RawOption]) {
            self.acked += 1;
        }
        fn naked(&mut self, options: &[RawOption], _: &mut ChaCha8Rng) {
            if let Some(v) = options.first().and_then(|o| o.data.first()) {
                self.want = *v;
            }
        }
        fn rejected(&mut self, _: &[RawOption]) {}
    }

    fn toy(want: u8, accept: u8) -> Fsm<Toy> {
        Fsm::new(
            Protocol(0x8021),
            FsmConfig::default(),
            Toy { want, accept, peer_acked: vec![], acked: 0 },
            &mut rng(),
        )
    }

    fn drain(f: &mut Fsm<Toy>) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    /// Move packets both ways until quiet; returns the actions seen by each
    /// side other than Send.
    fn exchange(a: &mut Fsm<Toy>, b: &mut Fsm<Toy>, now: Instant) -> (Vec<Action>, Vec<Action>) {
        let (mut sa, mut sb) = (vec![], vec![]);
        for _ in 0..100 {
            let (mut moved, aa, bb) = (false, drain(a), drain(b));
            for act in aa {
                match act {
                    Action::Send(p) => {
                        moved = true;
                        b.input_ncp(now, &p, &mut rng()).expect("valid");
                    }
                    other => sa.push(other),
                }
            }
            for act in bb {
                match act {
                    Action::Send(p) => {
                        moved = true;
                        a.input_ncp(now, &p, &mut rng()).expect("valid");
                    }
                    other => sb.push(other),
                }
            }
            if !moved {
                break;
            }
        }
        (sa, sb)
    }

    #[test]
    fn two_automata_open_with_nak() {
        let now = Instant::now();
        let mut a = toy(1, 2);
        let mut b = toy(3, 2); // b wants 3 but a only accepts 2 → Nak
        a.open(now, &mut rng());
        a.up(now, &mut rng());
        b.open(now, &mut rng());
        b.up(now, &mut rng());
        assert_eq!(a.state(), State::RequestSent);
        let (sa, sb) = exchange(&mut a, &mut b, now);
        assert!(sa.contains(&Action::Up), "{sa:?}");
        assert!(sb.contains(&Action::Up), "{sb:?}");
        assert!(a.is_opened() && b.is_opened());
        assert_eq!(b.policy.want, 2);
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(a.policy.peer_acked.last(), Some(&vec![RawOption { kind: 1, data: vec![2] }]));
    }

    #[test]
    fn retransmit_then_timeout_finishes() {
        let start = Instant::now();
        let mut a = toy(1, 1);
        a.open(start, &mut rng());
        a.up(start, &mut rng());
        let mut sent = drain(&mut a).into_iter().filter(|x| matches!(x, Action::Send(_))).count();
        let mut now = start;
        let mut finished = None;
        while let Some(deadline) = a.poll_timeout() {
            now = deadline;
            a.handle_timeout(now);
            for act in drain(&mut a) {
                match act {
                    Action::Send(p) => {
                        // Retransmissions keep the identifier.
                        assert_eq!(p.get(1), Some(&a.request_id));
                        sent += 1;
                    }
                    Action::Finished(r) => finished = Some(r),
                    _ => {}
                }
            }
        }
        assert_eq!(sent, 10, "Max-Configure requests");
        assert_eq!(finished, Some(FinishReason::Timeout { heard: false }));
        assert_eq!(a.state(), State::Stopped);
        assert_eq!(now - start, Duration::from_secs(30));
    }

    #[test]
    fn max_failure_turns_nak_into_reject() {
        let now = Instant::now();
        let mut a = toy(1, 2);
        a.open(now, &mut rng());
        a.up(now, &mut rng());
        drain(&mut a);
        let request = |id: u8| {
            Repr::<RawOption>::ConfigureRequest {
                identifier: id,
                options: vec![RawOption { kind: 1, data: vec![7] }],
            }
            .to_bytes()
            .expect("emit")
        };
        for id in 0..5 {
            a.input_ncp(now, &request(id), &mut rng()).expect("ok");
            let out = drain(&mut a);
            assert_eq!(out.len(), 1);
            let Action::Send(p) = &out[0] else { panic!() };
            assert_eq!(p[0], packet::code::CONFIGURE_NAK, "id {id}");
        }
        a.input_ncp(now, &request(5), &mut rng()).expect("ok");
        let out = drain(&mut a);
        let Action::Send(p) = &out[0] else { panic!() };
        assert_eq!(p[0], packet::code::CONFIGURE_REJECT);
        assert_eq!(&p[4..], &[1, 3, 7]);
    }

    #[test]
    fn reject_and_unknown_code() {
        let now = Instant::now();
        let mut a = toy(1, 1);
        a.open(now, &mut rng());
        a.up(now, &mut rng());
        drain(&mut a);
        let req = Repr::<RawOption>::ConfigureRequest {
            identifier: 9,
            options: vec![RawOption { kind: 9, data: vec![] }, RawOption { kind: 1, data: vec![1] }],
        }
        .to_bytes()
        .expect("emit");
        a.input_ncp(now, &req, &mut rng()).expect("ok");
        assert_eq!(drain(&mut a), vec![Action::Send(vec![4, 9, 0, 6, 9, 2])]);
        // Code 9 is unknown to an NCP: Code-Reject echoes the packet.
        let echo = [9, 1, 0, 8, 0, 0, 0, 0, 0xee];
        a.input_ncp(now, &echo, &mut rng()).expect("ok");
        let out = drain(&mut a);
        let Action::Send(p) = &out[0] else { panic!() };
        assert_eq!(p[0], packet::code::CODE_REJECT);
        assert_eq!(&p[4..], &echo[..8], "padding is not echoed");
    }

    #[test]
    fn close_and_terminate_exchange() {
        let now = Instant::now();
        let mut a = toy(1, 1);
        let mut b = toy(1, 1);
        for f in [&mut a, &mut b] {
            f.open(now, &mut rng());
            f.up(now, &mut rng());
        }
        exchange(&mut a, &mut b, now);
        assert!(a.is_opened() && b.is_opened());
        a.close(now);
        assert_eq!(a.state(), State::Closing);
        let (sa, sb) = exchange(&mut a, &mut b, now);
        assert_eq!(sa, vec![Action::Down, Action::Finished(FinishReason::LocalClose)]);
        assert_eq!(sb, vec![Action::Down]);
        assert_eq!(a.state(), State::Closed);
        assert_eq!(b.state(), State::Stopping);
        // b waits one restart interval (zrc) then finishes.
        let later = now + Duration::from_secs(3);
        b.handle_timeout(later);
        assert_eq!(drain(&mut b), vec![Action::Finished(FinishReason::PeerTerminated)]);
        assert_eq!(b.state(), State::Stopped);
        // In Closed a Configure-Request is answered with Terminate-Ack.
        let req =
            Repr::<RawOption>::ConfigureRequest { identifier: 3, options: vec![] }.to_bytes().expect("emit");
        a.input_ncp(later, &req, &mut rng()).expect("ok");
        assert_eq!(drain(&mut a), vec![Action::Send(vec![6, 3, 0, 4])]);
    }

    #[test]
    fn renegotiation_from_opened() {
        let now = Instant::now();
        let mut a = toy(1, 1);
        let mut b = toy(1, 1);
        for f in [&mut a, &mut b] {
            f.open(now, &mut rng());
            f.up(now, &mut rng());
        }
        exchange(&mut a, &mut b, now);
        let req = Repr::<RawOption>::ConfigureRequest {
            identifier: 77,
            options: vec![RawOption { kind: 1, data: vec![1] }],
        }
        .to_bytes()
        .expect("emit");
        a.input_ncp(now, &req, &mut rng()).expect("ok");
        assert_eq!(a.state(), State::AckSent);
        let out = drain(&mut a);
        assert_eq!(out.first(), Some(&Action::Down));
        // a sent its own request then the Ack of the peer's.
        assert!(matches!(&out[1], Action::Send(p) if p[0] == 1));
        assert!(matches!(&out[2], Action::Send(p) if p[0] == 2 && p[1] == 77));
        for act in out {
            if let Action::Send(p) = act {
                b.input_ncp(now, &p, &mut rng()).expect("ok");
            }
        }
        let (sa, _) = exchange(&mut a, &mut b, now);
        assert!(sa.contains(&Action::Up));
        assert!(a.is_opened() && b.is_opened());
    }

    #[test]
    fn catastrophic_code_reject_in_opened() {
        let now = Instant::now();
        let mut a = toy(1, 1);
        let mut b = toy(1, 1);
        for f in [&mut a, &mut b] {
            f.open(now, &mut rng());
            f.up(now, &mut rng());
        }
        exchange(&mut a, &mut b, now);
        // Code-Reject of a Configure-Request: RXJ-.
        a.input_ncp(now, &[7, 1, 0, 8, 1, 1, 0, 4], &mut rng()).expect("ok");
        let out = drain(&mut a);
        assert_eq!(out[0], Action::Down);
        assert!(matches!(&out[1], Action::Send(p) if p[0] == 5));
        assert_eq!(a.state(), State::Stopping);
        // Code-Reject of an Echo-Request (code 9) is permitted: RXJ+.
        let mut c = toy(1, 1);
        let mut d = toy(1, 1);
        for f in [&mut c, &mut d] {
            f.open(now, &mut rng());
            f.up(now, &mut rng());
        }
        exchange(&mut c, &mut d, now);
        c.input_ncp(now, &[7, 1, 0, 8, 9, 1, 0, 4], &mut rng()).expect("ok");
        assert!(drain(&mut c).is_empty());
        assert!(c.is_opened());
    }

    #[test]
    fn packets_before_up_are_discarded_and_bad_acks_ignored() {
        let now = Instant::now();
        let mut a = toy(1, 1);
        let req =
            Repr::<RawOption>::ConfigureRequest { identifier: 1, options: vec![] }.to_bytes().expect("emit");
        a.input_ncp(now, &req, &mut rng()).expect("ok");
        assert!(drain(&mut a).is_empty());
        a.open(now, &mut rng());
        a.up(now, &mut rng());
        drain(&mut a);
        // An Ack with the wrong identifier or wrong options is discarded.
        let wrong_id = Repr::<RawOption>::ConfigureAck {
            identifier: a.request_id.wrapping_add(1),
            options: a.request.options(),
        };
        a.input_ncp(now, &wrong_id.to_bytes().expect("emit"), &mut rng()).expect("ok");
        assert_eq!(a.state(), State::RequestSent);
        let wrong_opts = Repr::<RawOption>::ConfigureAck { identifier: a.request_id, options: vec![] };
        a.input_ncp(now, &wrong_opts.to_bytes().expect("emit"), &mut rng()).expect("ok");
        assert_eq!(a.state(), State::RequestSent);
        let right =
            Repr::<RawOption>::ConfigureAck { identifier: a.request_id, options: a.request.options() };
        a.input_ncp(now, &right.to_bytes().expect("emit"), &mut rng()).expect("ok");
        assert_eq!(a.state(), State::AckReceived);
        assert_eq!(a.policy.acked, 1);
        // Truncated input is an error.
        assert!(a.input_ncp(now, &[1, 2, 0], &mut rng()).is_err());
    }

    #[test]
    fn down_and_open_transitions() {
        let now = Instant::now();
        let mut a = toy(1, 1);
        a.open(now, &mut rng());
        assert_eq!(drain(&mut a), vec![Action::Started]);
        assert_eq!(a.state(), State::Starting);
        a.close(now);
        assert_eq!(drain(&mut a), vec![Action::Finished(FinishReason::NotStarted)]);
        assert_eq!(a.state(), State::Initial);
        a.up(now, &mut rng());
        assert_eq!(a.state(), State::Closed);
        a.open(now, &mut rng());
        assert_eq!(a.state(), State::RequestSent);
        a.down();
        assert_eq!(a.state(), State::Starting);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn outstanding_request_is_kept_encoded_and_round_trips_as_the_list() {
        use crate::ppp::lcp::LcpOption;
        let ours = vec![
            LcpOption::MaximumReceiveUnit(1460),
            LcpOption::MagicNumber(0x0102_0304),
            LcpOption::ProtocolFieldCompression,
        ];
        let kept = Outstanding::new(&ours);
        assert!(matches!(&kept, Outstanding::Encoded(b) if b.len() == 4 + 6 + 2), "{kept:?}");
        assert_eq!(kept.options(), ours);
        assert!(kept.is(&ours));
        assert!(!kept.is(&ours[..2]), "an Ack of part of the request is not ours");
        // The snapshot holds the list, as before.
        let bytes = postcard::to_stdvec(&kept).expect("encode");
        assert_eq!(bytes, postcard::to_stdvec(&ours).expect("encode"));
        let back: Outstanding<LcpOption> = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, kept);
        // Options whose encoding would not give them back stay parsed.
        let odd = vec![RawOption { kind: 1, data: vec![0; 300] }];
        let kept = Outstanding::new(&odd);
        assert!(matches!(kept, Outstanding::Parsed(_)));
        assert!(kept.is(&odd));
        assert_eq!(Outstanding::<RawOption>::default().options(), Vec::<RawOption>::new());
    }
}
