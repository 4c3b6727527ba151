//! Reliable delivery of control messages (RFC 2661 §5.8 and Appendix A).
//!
//! - Every non-ZLB message takes the next Ns; Nr acknowledges everything
//!   below it. A ZLB carries Ns without consuming it.
//! - Received messages are delivered strictly in Ns order. Duplicates are
//!   acknowledged at once (the peer evidently lost our ack) and dropped;
//!   messages ahead of the expected Ns but inside our receive window are
//!   held until the gap fills; anything else is dropped.
//! - If nothing piggybacks an ack within `ack_delay`, a ZLB is sent.
//! - The oldest unacknowledged message is retransmitted on a timer (§5.8
//!   leaves its value to the implementation; Appendix A suggests adapting
//!   it). The timer adapts to the measured round trip as TCP's does (RFC
//!   6298): SRTT and RTTVAR from the time between sending a message and
//!   the ack that covers it, never from a retransmitted message nor from
//!   one sent before the latest retransmission (Karn), and a timeout of
//!   SRTT + 4·RTTVAR between `rto_min` and `max_timeout`,
//!   `initial_timeout` before the first measurement. Consecutive timeouts
//!   double it up to `max_timeout`; an ack of anything new ends the
//!   back-off. After `max_retransmissions` the control connection has
//!   failed (§5.8), but not sooner after the last progress than with the
//!   fixed timer (`initial_timeout` doubling up to `max_timeout`): a short
//!   timer recovers losses faster without making a short outage fatal.
//! - After a timeout, an ack that shows a second message of the same
//!   window lost has it resent at once (see `Reliable::recover`).
//! - Sending is limited by the peer's Receive Window Size and by a
//!   congestion window with slow start and congestion avoidance (App. A).

use super::header::{Repr, SessionId, TunnelId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The receive window a peer has when it sends no RWS AVP (§4.4.3).
pub const DEFAULT_PEER_WINDOW: u16 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReliableConfig {
    /// Our receive window, advertised in the RWS AVP. 64 by default: a
    /// LAC bringing a thousand calls up in one tunnel sends two messages
    /// a call (ICRQ, ICCN), and with 16 its window, not the LNS, paced
    /// the set-up (`lns-setup-rate` idled a tenth of the machine). The
    /// memory at stake is the messages held out of order: a window's
    /// worth per tunnel at most.
    pub receive_window: u16,
    /// The retransmission timeout before any round trip was measured (RFC
    /// 6298 §2.1: 1 s).
    pub initial_timeout: Duration,
    /// The floor of the adaptive timeout. RFC 6298 §2.4 asks 1 s of TCP,
    /// whose clocks were coarse and whose peers delay acks up to 500 ms; a
    /// floor that high is what kept loss recovery here at a second or
    /// more. The round trip measured includes the peer's ack delay, so the
    /// floor only guards against a spurious retransmission when SRTT and
    /// RTTVAR are tiny (a LAN), and a spurious one costs a duplicate the
    /// peer acks and drops (§5.8). 200 ms is Linux TCP's floor, above the
    /// ack delays of L2TP peers (ours: 100 ms). A configured
    /// `initial_timeout` below it lowers the floor to that.
    pub rto_min: Duration,
    /// §5.8: the back-off SHOULD be capped (8 s suggested).
    pub max_timeout: Duration,
    /// §5.8: 5 retransmissions recommended before giving up.
    pub max_retransmissions: u32,
    /// How long to wait for a message to piggyback an ack before sending
    /// a ZLB.
    pub ack_delay: Duration,
}

impl Default for ReliableConfig {
    fn default() -> Self {
        ReliableConfig {
            receive_window: 64,
            initial_timeout: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            max_timeout: Duration::from_secs(8),
            max_retransmissions: 5,
            ack_delay: Duration::from_millis(100),
        }
    }
}

/// Serial-number comparison over the 16-bit sequence space: a < b.
pub fn seq_lt(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) < 0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outgoing {
    ns: u16,
    tunnel_id: TunnelId,
    session_id: SessionId,
    body: Vec<u8>,
    /// First transmission, for the round-trip measurement.
    #[serde(with = "crate::snapshot::opt_instant")]
    sent_at: Option<Instant>,
    /// Sent more than once: its ack times nothing (Karn).
    retransmitted: bool,
}

/// The retry limit was reached: the control connection is dead (§5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitLimit;

/// Room a drained queue keeps (beyond it, the buffer goes).
const ROOM_KEPT: usize = 16;

/// Reliable delivery state for one control connection. `M` is whatever
/// the caller wants back in order (a parsed message).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "M: Serialize", deserialize = "M: Deserialize<'de>"))]
pub struct Reliable<M> {
    cfg: ReliableConfig,
    next_ns: u16,
    expected_ns: u16,
    peer_window: u16,
    queue: VecDeque<Outgoing>,
    in_flight: VecDeque<Outgoing>,
    /// The retransmission timeout from the round-trip estimate (RFC 6298
    /// §2), before back-off.
    rto: Duration,
    /// Smoothed round trip and its variation (RFC 6298 §2); None before
    /// the first measurement.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Doublings of `rto` in force: one per consecutive timeout (RFC 6298
    /// §5.5), none once the peer acknowledges something new. RFC 6298
    /// keeps them until a new measurement; with 10 % loss that left the
    /// timer at seconds for long stretches (each recovery's acks cover a
    /// retransmission, so they measure nothing) and doubled the slowest
    /// set-up times (`sim::setup_under_loss`). The cost: a path whose
    /// round trip jumps above the timer has each message resent once, and
    /// measures nothing, until it comes back under.
    backoff: u32,
    /// Timeouts of the oldest message since the last progress.
    retries: u32,
    /// The last progress (first message in flight, or an ack of new
    /// ones): failure is not declared sooner after it than the fixed
    /// timer would have.
    #[serde(with = "crate::snapshot::opt_instant")]
    stalled_since: Option<Instant>,
    #[serde(with = "crate::snapshot::opt_instant")]
    rtx_deadline: Option<Instant>,
    resend_oldest: bool,
    /// After a timeout, the Ns following the last message then in flight.
    /// Until the ack passes it, an ack that stops short of it at a message
    /// sent before the retransmission shows that message lost as well: the
    /// peer acknowledges all it holds once a gap fills (§5.8), so it would
    /// have covered the message had it arrived. That message is resent at
    /// once instead of after another (backed-off) timeout, as TCP's
    /// NewReno does on a partial ack (RFC 6582 §3.2). The congestion window
    /// is cut once per timeout (Appendix A), not again for these.
    recover: Option<u16>,
    /// When a message was last retransmitted (Karn: see `on_ack`).
    #[serde(with = "crate::snapshot::opt_instant")]
    last_retransmit: Option<Instant>,
    cwnd: u16,
    ssthresh: u16,
    /// Acks counted towards the next cwnd increase in congestion avoidance.
    cwnd_acks: u16,
    #[serde(with = "super::serde_maps::pairs")]
    held: HashMap<u16, M>,
    #[serde(with = "crate::snapshot::opt_instant")]
    ack_deadline: Option<Instant>,
    /// Messages delivered since our last ack went out.
    unacked: u16,
    /// Statistics, for logging and tests.
    pub retransmissions: u64,
}

impl<M> Reliable<M> {
    pub fn new(cfg: ReliableConfig) -> Self {
        let rto = cfg.initial_timeout;
        Reliable {
            cfg,
            next_ns: 0,
            expected_ns: 0,
            peer_window: DEFAULT_PEER_WINDOW,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            rto,
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            retries: 0,
            stalled_since: None,
            rtx_deadline: None,
            resend_oldest: false,
            recover: None,
            last_retransmit: None,
            cwnd: 1,
            ssthresh: DEFAULT_PEER_WINDOW,
            cwnd_acks: 0,
            held: HashMap::new(),
            ack_deadline: None,
            unacked: 0,
            retransmissions: 0,
        }
    }

    /// Record the peer's Receive Window Size AVP. 0 is not a valid window
    /// (§4.4.3 says the value is at least 1), treat it as 1.
    pub fn set_peer_window(&mut self, w: u16) {
        self.peer_window = w.max(1);
        self.ssthresh = self.peer_window;
        self.cwnd = self.cwnd.min(self.peer_window);
    }

    pub fn peer_window(&self) -> u16 {
        self.peer_window
    }
    pub fn congestion_window(&self) -> u16 {
        self.cwnd
    }
    /// The timeout the next (re)transmission gets: the adaptive value with
    /// its back-off (for `lnsctl tunnel list`).
    pub fn rto(&self) -> Duration {
        self.timeout()
    }
    /// The smoothed round trip, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }
    /// Our current Nr: the next Ns we expect.
    pub fn expected_ns(&self) -> u16 {
        self.expected_ns
    }
    pub fn next_ns(&self) -> u16 {
        self.next_ns
    }
    /// The oldest Ns not yet acknowledged by the peer (`next_ns` when
    /// everything is).
    pub fn unacked_ns(&self) -> u16 {
        self.in_flight.front().or(self.queue.front()).map_or(self.next_ns, |o| o.ns)
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
    /// Nothing queued, unacknowledged or waiting to be acknowledged.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty() && self.ack_deadline.is_none()
    }
    pub fn all_acked(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// Queue a message body for reliable delivery; returns its Ns.
    pub fn send(&mut self, tunnel_id: TunnelId, session_id: SessionId, body: Vec<u8>) -> u16 {
        let ns = self.next_ns;
        self.next_ns = self.next_ns.wrapping_add(1);
        self.queue.push_back(Outgoing {
            ns,
            tunnel_id,
            session_id,
            body,
            sent_at: None,
            retransmitted: false,
        });
        ns
    }

    /// Rewrite the destination tunnel id of messages not sent yet and of
    /// those awaiting retransmission (used once the peer's id is learnt).
    pub fn set_tunnel_id(&mut self, id: TunnelId) {
        for o in self.queue.iter_mut().chain(self.in_flight.iter_mut()) {
            o.tunnel_id = id;
        }
    }

    /// Drop everything outstanding (the connection is gone).
    pub fn abandon(&mut self) {
        self.queue.clear();
        self.in_flight.clear();
        self.rtx_deadline = None;
        self.stalled_since = None;
        self.resend_oldest = false;
        self.recover = None;
    }

    /// The timer: `rto` doubled per timeout in force, capped (§5.8). A
    /// configured `initial_timeout` above the cap is used once as it is.
    fn timeout(&self) -> Duration {
        if self.backoff == 0 {
            return self.rto;
        }
        self.rto.saturating_mul(1u32 << self.backoff.min(16)).min(self.cfg.max_timeout)
    }

    /// RFC 6298 §2.2/§2.3, with the floor and cap of our configuration.
    fn on_rtt_sample(&mut self, r: Duration) {
        let srtt = match self.srtt {
            None => {
                self.rttvar = r / 2;
                r
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar.saturating_mul(3).saturating_add(delta)) / 4;
                (srtt.saturating_mul(7).saturating_add(r)) / 8
            }
        };
        self.srtt = Some(srtt);
        let floor = self.cfg.rto_min.min(self.cfg.initial_timeout);
        // max then min (not clamp): a floor configured above the cap must
        // not panic; the cap wins.
        self.rto = srtt.saturating_add(self.rttvar.saturating_mul(4)).max(floor).min(self.cfg.max_timeout);
    }

    /// How long the fixed timer took from the last progress to declaring
    /// failure: `initial_timeout`, then doubling up to `max_timeout`, for
    /// the first send and each of `max_retransmissions`.
    fn patience(&self) -> Duration {
        let (cfg, mut t) = (&self.cfg, self.cfg.initial_timeout);
        let mut sum = t;
        for k in 1..=cfg.max_retransmissions {
            let next = t.saturating_mul(2).min(cfg.max_timeout);
            if next == t {
                // The rest are all equal (keeps a huge retry count cheap).
                return sum.saturating_add(t.saturating_mul(cfg.max_retransmissions - k + 1));
            }
            t = next;
            sum = sum.saturating_add(t);
        }
        sum
    }

    /// The room of the queues to send and in flight.
    #[cfg(test)]
    pub(crate) fn queue_room(&self) -> (usize, usize) {
        (self.queue.capacity(), self.in_flight.capacity())
    }

    /// Process the Nr of any received message.
    fn on_ack(&mut self, now: Instant, nr: u16) {
        let mut acked = 0u16;
        let mut newest = None;
        while let Some(front) = self.in_flight.front() {
            if !seq_lt(front.ns, nr) {
                break;
            }
            newest = self.in_flight.pop_front();
            acked += 1;
        }
        if self.in_flight.is_empty() && self.in_flight.capacity() > ROOM_KEPT {
            self.in_flight = VecDeque::new();
        }
        let Some(newest) = newest else { return };
        // Karn: an ack of a message sent more than once times nothing, nor
        // does one of a message sent before the latest retransmission: the
        // peer may have held it behind the gap that retransmission filled,
        // so its time would measure the loss, not the path. A message sent
        // after it is timed even if the ack also covers the retransmitted
        // one (as BSD TCP times the next new segment).
        if let (Some(sent), false) = (newest.sent_at, newest.retransmitted) {
            if self.last_retransmit.is_none_or(|r| sent > r) {
                self.on_rtt_sample(now.saturating_duration_since(sent));
            }
        }
        for _ in 0..acked {
            // Appendix A: slow start below ssthresh, then one increase per
            // window's worth of acks.
            if self.cwnd < self.ssthresh {
                self.cwnd += 1;
            } else {
                self.cwnd_acks += 1;
                if self.cwnd_acks >= self.cwnd {
                    self.cwnd_acks = 0;
                    self.cwnd += 1;
                }
            }
        }
        self.cwnd = self.cwnd.min(self.peer_window);
        self.retries = 0;
        self.backoff = 0;
        self.resend_oldest = false;
        if let Some(recover) = self.recover {
            match self.in_flight.front() {
                Some(f) if seq_lt(f.ns, recover) => self.resend_oldest = true,
                _ => self.recover = None,
            }
        }
        // RFC 6298 §5.3: restart the timer for what is still in flight.
        self.rtx_deadline = (!self.in_flight.is_empty()).then(|| now + self.timeout());
        self.stalled_since = (!self.in_flight.is_empty()).then_some(now);
    }

    /// Feed a received control message's sequence numbers. Returns the
    /// messages now deliverable, in order (possibly none, possibly several
    /// when a gap filled).
    pub fn on_receive(&mut self, now: Instant, ns: u16, nr: u16, item: Option<M>) -> Vec<M> {
        self.on_ack(now, nr);
        let Some(item) = item else {
            // ZLB: acknowledgement only.
            return Vec::new();
        };
        if ns == self.expected_ns {
            let mut out = vec![item];
            self.expected_ns = self.expected_ns.wrapping_add(1);
            while let Some(next) = self.held.remove(&self.expected_ns) {
                out.push(next);
                self.expected_ns = self.expected_ns.wrapping_add(1);
            }
            // Delayed ack for a lone message (a reply may carry it), but a
            // peer sending a burst is only limited by our acks (its
            // congestion window opens with each one, Appendix A): ack at
            // once every quarter of our window.
            self.unacked = self.unacked.saturating_add(out.len() as u16);
            if self.unacked >= (self.cfg.receive_window / 4).max(2) {
                self.ack_deadline = Some(now);
            } else {
                self.ack_deadline.get_or_insert(now + self.cfg.ack_delay);
            }
            out
        } else if seq_lt(ns, self.expected_ns) {
            // §5.8: a duplicate means our ack was lost; ack it right away.
            self.ack_deadline = Some(now);
            Vec::new()
        } else {
            let ahead = ns.wrapping_sub(self.expected_ns);
            if ahead < self.cfg.receive_window {
                self.held.entry(ns).or_insert(item);
            }
            // Tell the peer where we are, so it retransmits the gap.
            self.ack_deadline.get_or_insert(now + self.cfg.ack_delay);
            Vec::new()
        }
    }

    /// Ask for an acknowledgement to be sent now (e.g. for a message that
    /// arrives after the connection closed).
    pub fn ack_now(&mut self, now: Instant) {
        self.ack_deadline = Some(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.rtx_deadline, self.ack_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run timers. Err means the retry limit was hit.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), RetransmitLimit> {
        if let Some(d) = self.rtx_deadline {
            if d <= now && !self.in_flight.is_empty() {
                if self.retries >= self.cfg.max_retransmissions {
                    let not_before = self.stalled_since.and_then(|s| s.checked_add(self.patience()));
                    if let Some(t) = not_before.filter(|t| now < *t) {
                        self.rtx_deadline = Some(t);
                        return Ok(());
                    }
                    self.rtx_deadline = None;
                    return Err(RetransmitLimit);
                }
                self.retries += 1;
                self.backoff = self.backoff.saturating_add(1);
                self.resend_oldest = true;
                self.recover = self.in_flight.back().map(|o| o.ns.wrapping_add(1));
                self.rtx_deadline = None;
                // Appendix A: a loss halves the threshold, cwnd restarts.
                self.ssthresh = (self.cwnd / 2).max(1);
                self.cwnd = 1;
                self.cwnd_acks = 0;
            }
        }
        Ok(())
    }

    fn emit(&mut self, o: &Outgoing) -> Vec<u8> {
        // Nr is always current, so a retransmission acks what came since.
        self.ack_deadline = None;
        self.unacked = 0;
        let repr = Repr::control(o.tunnel_id, o.session_id, o.ns, self.expected_ns, o.body.len());
        repr.to_vec(&o.body).unwrap_or_default()
    }

    /// The next datagram to send: a retransmission, a new message if the
    /// windows allow, or a ZLB if an ack is due.
    pub fn poll_transmit(&mut self, now: Instant, peer_tunnel: TunnelId) -> Option<Vec<u8>> {
        if self.resend_oldest {
            self.resend_oldest = false;
            if let Some(o) = self.in_flight.front_mut() {
                o.retransmitted = true;
                let o = o.clone();
                self.retransmissions += 1;
                self.last_retransmit = Some(now);
                self.rtx_deadline = Some(now + self.timeout());
                return Some(self.emit(&o));
            }
        }
        let window = usize::from(self.cwnd.min(self.peer_window));
        if self.in_flight.len() < window {
            if let Some(mut o) = self.queue.pop_front() {
                if self.queue.is_empty() && self.queue.capacity() > ROOM_KEPT {
                    // A burst's queue (a thousand ICRPs behind the
                    // window) gives its room back, or a thousand tunnels
                    // keep it.
                    self.queue = VecDeque::new();
                }
                let bytes = self.emit(&o);
                o.sent_at = Some(now);
                if self.in_flight.is_empty() {
                    self.rtx_deadline = Some(now + self.timeout());
                    self.stalled_since = Some(now);
                }
                self.in_flight.push_back(o);
                return Some(bytes);
            }
        }
        if let Some(d) = self.ack_deadline {
            if d <= now {
                self.ack_deadline = None;
                self.unacked = 0;
                let repr =
                    Repr::control(peer_tunnel, SessionId(0), self.next_ns_unsent(), self.expected_ns, 0);
                return repr.to_vec(&[]).ok();
            }
        }
        None
    }

    /// The Ns a ZLB carries: the next Ns not yet transmitted (§5.8), so it
    /// does not collide with queued messages.
    fn next_ns_unsent(&self) -> u16 {
        self.queue.front().map(|o| o.ns).unwrap_or(self.next_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::header::Packet;

    fn cfg() -> ReliableConfig {
        ReliableConfig { receive_window: 4, ..ReliableConfig::default() }
    }

    fn ns_nr(b: &[u8]) -> (u16, u16, usize) {
        let p = Packet::new_checked(b).expect("valid");
        (p.ns().unwrap_or(0), p.nr().unwrap_or(0), p.payload().len())
    }

    fn drain(r: &mut Reliable<u32>, now: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| r.poll_transmit(now, TunnelId(7))).collect()
    }

    #[test]
    fn backoff_doubles_caps_and_gives_up() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        r.send(TunnelId(0), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 1]);
        assert_eq!(drain(&mut r, t0).len(), 1);
        let mut sent_at = Vec::new();
        let mut now = t0;
        while let Some(d) = r.poll_timeout() {
            now = d;
            if r.handle_timeout(now).is_err() {
                break;
            }
            for _ in drain(&mut r, now) {
                sent_at.push(now.duration_since(t0).as_secs());
            }
        }
        // 1 s, then 2, 4, 8, 8 (capped): retransmissions at 1, 3, 7, 15, 23;
        // the sixth timeout at 31 s is the failure.
        assert_eq!(sent_at, vec![1, 3, 7, 15, 23]);
        assert_eq!(now.duration_since(t0).as_secs(), 31);
        assert_eq!(r.retransmissions, 5);
    }

    /// Send one message and have it acked `rtt` later; returns the time.
    fn round_trip(r: &mut Reliable<u32>, now: Instant, rtt: Duration) -> Instant {
        r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 6]);
        assert_eq!(drain(r, now).len(), 1);
        let later = now + rtt;
        r.on_receive(later, 0, r.next_ns(), None);
        assert_eq!(r.in_flight(), 0);
        later
    }

    #[test]
    fn timeout_follows_the_measured_round_trip() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> =
            Reliable::new(ReliableConfig { rto_min: Duration::from_millis(10), ..cfg() });
        // No measurement yet: the initial timeout (RFC 6298 §2.1).
        assert_eq!(r.rto(), Duration::from_secs(1));
        assert_eq!(r.srtt(), None);
        // First sample R: SRTT = R, RTTVAR = R/2, RTO = R + 4·R/2 (§2.2).
        let mut now = round_trip(&mut r, t0, Duration::from_millis(40));
        assert_eq!(r.srtt(), Some(Duration::from_millis(40)));
        assert_eq!(r.rto(), Duration::from_millis(120));
        // A steady round trip: RTTVAR decays, RTO approaches SRTT.
        for _ in 0..40 {
            now = round_trip(&mut r, now, Duration::from_millis(40));
        }
        assert_eq!(r.srtt(), Some(Duration::from_millis(40)));
        assert!(r.rto() < Duration::from_millis(41), "{:?}", r.rto());
        // The default floor: 200 ms however fast the path.
        let mut d: Reliable<u32> = Reliable::new(cfg());
        let mut now = t0;
        for _ in 0..10 {
            now = round_trip(&mut d, now, Duration::from_millis(1));
        }
        assert_eq!(d.rto(), Duration::from_millis(200));
        // A slow path: above the floor, below the cap.
        let mut s: Reliable<u32> = Reliable::new(cfg());
        round_trip(&mut s, t0, Duration::from_secs(3));
        assert_eq!(s.rto(), Duration::from_secs(8), "3 s + 4 · 1.5 s, capped");
    }

    #[test]
    fn karn_no_sample_from_retransmissions_and_backoff_ends_with_progress() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        let now = round_trip(&mut r, t0, Duration::from_millis(50));
        let (srtt, rto) = (r.srtt(), r.rto());
        assert_eq!(rto, Duration::from_millis(200));
        // Lost once: retransmitted after the RTO, then acked 2 s later.
        r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 6]);
        drain(&mut r, now);
        assert_eq!(r.poll_timeout(), Some(now + rto));
        let d = now + rto;
        r.handle_timeout(d).expect("retry");
        assert_eq!(drain(&mut r, d).len(), 1);
        assert_eq!(r.poll_timeout(), Some(d + 2 * rto), "backed off");
        let acked = d + Duration::from_secs(2);
        r.on_receive(acked, 0, r.next_ns(), None);
        assert_eq!(r.srtt(), srtt, "no sample from a retransmitted message");
        // Progress: the next message has the timer from the estimate.
        assert_eq!(r.rto(), rto);
        r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 6]);
        drain(&mut r, acked);
        assert_eq!(r.poll_timeout(), Some(acked + rto));
        r.on_receive(acked + Duration::from_millis(70), 0, r.next_ns(), None);
        assert!(r.srtt() > srtt, "a message sent after the retransmission is timed");
    }

    #[test]
    fn an_ack_covering_a_retransmission_times_nothing() {
        // Two in flight, the first lost: the peer holds the second until
        // the retransmission fills the gap, so its time measures the loss.
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        r.set_peer_window(4);
        let now = round_trip(&mut r, t0, Duration::from_millis(50));
        let srtt = r.srtt();
        for _ in 0..2 {
            r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 6]);
        }
        assert_eq!(drain(&mut r, now).len(), 2);
        let d = r.poll_timeout().expect("timer");
        r.handle_timeout(d).expect("retry");
        drain(&mut r, d);
        r.on_receive(d + Duration::from_millis(50), 0, r.next_ns(), None);
        assert_eq!(r.in_flight(), 0);
        assert_eq!(r.srtt(), srtt);
    }

    #[test]
    fn a_partial_ack_after_a_timeout_resends_the_next_loss_at_once() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        r.set_peer_window(4);
        let now = round_trip(&mut r, t0, Duration::from_millis(10));
        for _ in 0..4 {
            r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 6]);
        }
        // Slow start: Ns 1 and 2 go, acked; then 3 and 4, both lost.
        assert_eq!(drain(&mut r, now).len(), 2);
        r.on_receive(now, 0, 3, None);
        assert_eq!(drain(&mut r, now).len(), 2);
        let d = r.poll_timeout().expect("timer");
        r.handle_timeout(d).expect("retry");
        assert_eq!(ns_nr(&drain(&mut r, d)[0]).0, 3);
        // The resent 3 arrives: had 4 arrived too, the ack would say 5.
        let later = d + Duration::from_millis(10);
        r.on_receive(later, 0, 4, None);
        let out = drain(&mut r, later);
        assert_eq!(out.len(), 1, "4 resent without waiting for a timeout");
        assert_eq!(ns_nr(&out[0]).0, 4);
        r.on_receive(later + Duration::from_millis(10), 0, 5, None);
        assert_eq!(r.in_flight(), 0);
        assert_eq!(r.retransmissions, 2);
    }

    #[test]
    fn a_short_timer_retransmits_sooner_but_gives_up_no_sooner() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        let start = round_trip(&mut r, t0, Duration::from_millis(10));
        assert_eq!(r.rto(), Duration::from_millis(200));
        // The peer is gone from now on.
        r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 1]);
        drain(&mut r, start);
        let mut sent_at = Vec::new();
        let mut now = start;
        while let Some(d) = r.poll_timeout() {
            now = d;
            if r.handle_timeout(now).is_err() {
                break;
            }
            for _ in drain(&mut r, now) {
                sent_at.push(now.duration_since(start).as_millis());
            }
        }
        // 200 ms doubling: the five retransmissions within 6.2 s...
        assert_eq!(sent_at, vec![200, 600, 1400, 3000, 6200]);
        // ...but failure only when the fixed timer (1, 2, 4, 8, 8, 8 s)
        // would have declared it, 31 s after the last progress.
        assert_eq!(now.duration_since(start), Duration::from_secs(31));
        assert_eq!(r.retransmissions, 5);
    }

    #[test]
    fn window_limits_in_flight_and_slow_start_opens_it() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        r.set_peer_window(3);
        for _ in 0..10 {
            r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 6]);
        }
        // cwnd starts at 1 (Appendix A).
        assert_eq!(drain(&mut r, t0).len(), 1);
        r.on_receive(t0, 0, 1, None);
        assert_eq!(drain(&mut r, t0).len(), 2);
        r.on_receive(t0, 0, 3, None);
        // Slow start reached ssthresh, which is the peer's window (3).
        assert_eq!(r.congestion_window(), 3);
        assert_eq!(drain(&mut r, t0).len(), 3);
        assert_eq!(r.in_flight(), 3);
        // A timeout collapses cwnd to 1: only the oldest is resent and no
        // new message goes out until acks arrive.
        let d = r.poll_timeout().expect("timer");
        r.handle_timeout(d).expect("first retry");
        let out = drain(&mut r, d);
        assert_eq!(out.len(), 1);
        assert_eq!(ns_nr(&out[0]).0, 3);
        assert_eq!(r.congestion_window(), 1);
    }

    #[test]
    fn congestion_avoidance_after_ssthresh() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        r.set_peer_window(32);
        for _ in 0..200 {
            r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 6]);
        }
        // Lose the first message once: ssthresh = cwnd / 2 = 1 / 2 → 1.
        drain(&mut r, t0);
        let d = r.poll_timeout().expect("timer");
        r.handle_timeout(d).expect("retry");
        drain(&mut r, d);
        assert_eq!(r.congestion_window(), 1);
        // From now on every ack is above ssthresh: cwnd grows by one per
        // cwnd acknowledgements (Appendix A), i.e. 1, 2, 2, 3, 3, 3, 4...
        let mut acked = 0u16;
        let mut seen = Vec::new();
        for _ in 0..10 {
            drain(&mut r, d);
            assert!(r.in_flight() <= usize::from(r.congestion_window()));
            acked += 1;
            r.on_receive(d, 0, acked, None);
            seen.push(r.congestion_window());
        }
        assert_eq!(seen, [2, 2, 3, 3, 3, 4, 4, 4, 4, 5]);
    }

    #[test]
    fn in_order_delivery_duplicates_and_gaps() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        assert_eq!(r.on_receive(t0, 0, 0, Some(100)), vec![100]);
        // Gap: 2 and 3 are held, 9 is beyond the window (4) and dropped.
        assert!(r.on_receive(t0, 2, 0, Some(102)).is_empty());
        assert!(r.on_receive(t0, 3, 0, Some(103)).is_empty());
        assert!(r.on_receive(t0, 9, 0, Some(109)).is_empty());
        assert_eq!(r.on_receive(t0, 1, 0, Some(101)), vec![101, 102, 103]);
        assert_eq!(r.expected_ns(), 4);
        // Four messages delivered at once: a burst, acked at once.
        let out = drain(&mut r, t0);
        assert_eq!(out.len(), 1);
        assert_eq!(ns_nr(&out[0]), (0, 4, 0));
        let later = t0 + Duration::from_millis(100);
        // A lone message waits ack_delay for something to carry its ack.
        assert_eq!(r.on_receive(t0, 4, 0, Some(104)), vec![104]);
        assert!(drain(&mut r, t0).is_empty());
        let out = drain(&mut r, later);
        assert_eq!(out.len(), 1);
        assert_eq!(ns_nr(&out[0]), (0, 5, 0));
        // A duplicate is dropped and acked immediately.
        assert!(r.on_receive(later, 2, 0, Some(102)).is_empty());
        assert_eq!(drain(&mut r, later).len(), 1);
    }

    #[test]
    fn piggybacked_ack_suppresses_zlb() {
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        r.on_receive(t0, 0, 0, Some(1));
        r.send(TunnelId(1), SessionId(0), vec![0x80, 8, 0, 0, 0, 0, 0, 2]);
        let out = drain(&mut r, t0);
        assert_eq!(out.len(), 1);
        assert_eq!(ns_nr(&out[0]), (0, 1, 8));
        // No ZLB follows: the only timer left is the retransmission one.
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        assert!(drain(&mut r, t0 + Duration::from_millis(500)).is_empty());
    }

    #[test]
    fn sequence_wraps() {
        assert!(seq_lt(65535, 0));
        assert!(!seq_lt(0, 65535));
        let t0 = Instant::now();
        let mut r: Reliable<u32> = Reliable::new(cfg());
        for i in 0..=65535u32 {
            assert_eq!(r.on_receive(t0, i as u16, 0, Some(i)), vec![i]);
        }
        assert_eq!(r.on_receive(t0, 0, 0, Some(7)), vec![7]);
        // 65535 is now a duplicate.
        assert!(r.on_receive(t0, 65535, 0, Some(8)).is_empty());
    }
}
