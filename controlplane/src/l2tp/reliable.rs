//! Reliable delivery of control messages (RFC 2661 §5.8 and Appendix A).
//!
//! - Every non-ZLB message takes the next Ns; Nr acknowledges everything
//!   below it. A ZLB carries Ns without consuming it.
//! - Received messages are delivered strictly in Ns order. Duplicates are
//!   acknowledged at once (the peer evidently lost our ack) and dropped;
//!   messages ahead of the expected Ns but inside our receive window are
//!   held until the gap fills; anything else is dropped.
//! - If nothing piggybacks an ack within `ack_delay`, a ZLB is sent.
//! - The oldest unacknowledged message is retransmitted on a timer that
//!   starts at `initial_timeout` and doubles up to `max_timeout`; after
//!   `max_retransmissions` the control connection has failed (§5.8).
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
    /// Our receive window, advertised in the RWS AVP.
    pub receive_window: u16,
    pub initial_timeout: Duration,
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
            receive_window: 16,
            initial_timeout: Duration::from_secs(1),
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
}

/// The retry limit was reached: the control connection is dead (§5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitLimit;

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
    rto: Duration,
    retries: u32,
    #[serde(with = "crate::snapshot::opt_instant")]
    rtx_deadline: Option<Instant>,
    resend_oldest: bool,
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
            retries: 0,
            rtx_deadline: None,
            resend_oldest: false,
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
    /// Our current Nr: the next Ns we expect.
    pub fn expected_ns(&self) -> u16 {
        self.expected_ns
    }
    pub fn next_ns(&self) -> u16 {
        self.next_ns
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
        self.queue.push_back(Outgoing { ns, tunnel_id, session_id, body });
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
        self.resend_oldest = false;
    }

    /// Process the Nr of any received message.
    fn on_ack(&mut self, now: Instant, nr: u16) {
        let mut acked = 0u16;
        while let Some(front) = self.in_flight.front() {
            if !seq_lt(front.ns, nr) {
                break;
            }
            self.in_flight.pop_front();
            acked += 1;
        }
        if acked == 0 {
            return;
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
        self.rto = self.cfg.initial_timeout;
        self.resend_oldest = false;
        self.rtx_deadline = (!self.in_flight.is_empty()).then(|| now + self.rto);
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
                    self.rtx_deadline = None;
                    return Err(RetransmitLimit);
                }
                self.retries += 1;
                self.rto = (self.rto * 2).min(self.cfg.max_timeout);
                self.resend_oldest = true;
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
            if let Some(o) = self.in_flight.front().cloned() {
                self.resend_oldest = false;
                self.retransmissions += 1;
                self.rtx_deadline = Some(now + self.rto);
                return Some(self.emit(&o));
            }
            self.resend_oldest = false;
        }
        let window = usize::from(self.cwnd.min(self.peer_window));
        if self.in_flight.len() < window {
            if let Some(o) = self.queue.pop_front() {
                let bytes = self.emit(&o);
                if self.in_flight.is_empty() {
                    self.rtx_deadline = Some(now + self.rto);
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
