//! RADIUS accounting of one subscriber, as state and schedule: when Start,
//! Interim-Update and Stop are due and what they carry. The driver turns an
//! [`AcctRecord`] into an Accounting-Request and sends it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::daemon::aaa::AuthContext;

/// Accounting as configured for the whole LNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountingConfig {
    /// The first half of every Acct-Session-Id (see
    /// `lns_radius::accounting::acct_session_id`): different for every
    /// start of the process.
    pub boot: u64,
    /// Acct-Interim-Interval when the Access-Accept gives none.
    pub interim_default: Option<Duration>,
    /// Acct-Authentic: RADIUS when authentication servers decide, else Local.
    pub authentic: u32,
}

/// The fast path's counters of a session (they never reset: a record
/// reports the difference from the baseline taken at Start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub up_packets: u64,
    pub up_bytes: u64,
    pub down_packets: u64,
    pub down_bytes: u64,
}

impl crate::lazy_box::Empty for Counters {
    const EMPTY: &'static Self = &Counters { up_packets: 0, up_bytes: 0, down_packets: 0, down_bytes: 0 };
}

impl From<lns_bpf::abi::SessionStats> for Counters {
    fn from(s: lns_bpf::abi::SessionStats) -> Self {
        Counters {
            up_packets: s.up_packets,
            up_bytes: s.up_bytes,
            down_packets: s.down_packets,
            down_bytes: s.down_bytes,
        }
    }
}

impl Counters {
    pub fn packets(&self) -> u64 {
        self.up_packets.wrapping_add(self.down_packets)
    }

    /// Both counts together (the fast path's and the slow path's).
    pub fn plus(&self, other: &Counters) -> Counters {
        Counters {
            up_packets: self.up_packets.wrapping_add(other.up_packets),
            up_bytes: self.up_bytes.wrapping_add(other.up_bytes),
            down_packets: self.down_packets.wrapping_add(other.down_packets),
            down_bytes: self.down_bytes.wrapping_add(other.down_bytes),
        }
    }

    pub fn since(&self, baseline: &Counters) -> Counters {
        Counters {
            up_packets: self.up_packets.wrapping_sub(baseline.up_packets),
            up_bytes: self.up_bytes.wrapping_sub(baseline.up_bytes),
            down_packets: self.down_packets.wrapping_sub(baseline.down_packets),
            down_bytes: self.down_bytes.wrapping_sub(baseline.down_bytes),
        }
    }
}

/// One session's accounting: created when the subscriber is accepted,
/// started when its first network protocol opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    pub session_id: String,
    pub user_name: Vec<u8>,
    pub class: Vec<Vec<u8>>,
    pub interim: Option<Duration>,
    pub authentic: u32,
    pub framed_ip: Option<Ipv4Addr>,
    /// The SLAAC prefix announced to the subscriber (Framed-IPv6-Prefix).
    pub framed_ipv6: Option<(Ipv6Addr, u8)>,
    /// The prefix routed to the subscriber's router (Delegated-IPv6-Prefix).
    pub delegated_ipv6: Option<(Ipv6Addr, u8)>,
    #[serde(with = "crate::snapshot::opt_instant")]
    pub started: Option<Instant>,
    #[serde(with = "crate::snapshot::opt_instant")]
    pub next_interim: Option<Instant>,
    /// The counters at Start.
    pub baseline: Option<Counters>,
    /// Start waits for the baseline sample.
    pub start_pending: bool,
    /// Why the session ends, once the LNS knows (first reason wins).
    pub terminate_cause: Option<u32>,
}

impl Accounting {
    pub fn new(
        cfg: &AccountingConfig,
        n: u64,
        user_name: &[u8],
        class: Vec<Vec<u8>>,
        interim: Option<Duration>,
    ) -> Self {
        Accounting {
            session_id: lns_radius::accounting::acct_session_id(cfg.boot, n),
            user_name: user_name.to_vec(),
            class,
            interim: interim.or(cfg.interim_default),
            authentic: cfg.authentic,
            framed_ip: None,
            framed_ipv6: None,
            delegated_ipv6: None,
            started: None,
            next_interim: None,
            baseline: None,
            start_pending: false,
            terminate_cause: None,
        }
    }

    pub fn started(&self) -> bool {
        self.started.is_some()
    }

    /// Set the Acct-Terminate-Cause unless one is set already.
    pub fn cause(&mut self, cause: u32) {
        self.terminate_cause.get_or_insert(cause);
    }

    pub fn interim_due(&self, now: Instant) -> bool {
        self.started.is_some() && self.next_interim.is_some_and(|t| t <= now)
    }

    /// A network protocol opened: what the records name from now on. The
    /// first one up starts the session; one that opens later is named in
    /// the Interim-Updates and the Stop.
    pub fn network_up(
        &mut self,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<(Ipv6Addr, u8)>,
        delegated: Option<(Ipv6Addr, u8)>,
    ) -> bool {
        if let Some(a) = ipv4 {
            self.framed_ip = Some(a);
        }
        if let Some(p) = ipv6 {
            self.framed_ipv6 = Some(p);
        }
        if let Some(p) = delegated {
            self.delegated_ipv6 = Some(p);
        }
        let start = self.started.is_none() && !self.start_pending;
        if start {
            self.start_pending = true;
        }
        start
    }

    /// The baseline sample arrived: Start.
    pub fn start(&mut self, now: Instant, baseline: Counters) -> Option<AcctKind> {
        if !self.start_pending {
            return None;
        }
        self.start_pending = false;
        self.started = Some(now);
        self.baseline = Some(baseline);
        self.next_interim = self.interim.map(|i| now + i);
        Some(AcctKind::Start)
    }

    /// An Interim-Update is going out: the next one, on the interval's
    /// grid from Start, not from when the check ran (late under load); a
    /// missed slot is not made up.
    pub fn schedule_next_interim(&mut self, now: Instant) {
        self.next_interim = match (self.next_interim, self.interim) {
            (Some(t), Some(i)) if t + i > now => Some(t + i),
            (_, i) => i.map(|i| now + i),
        };
    }

    pub fn session_time(&self, now: Instant) -> Option<Duration> {
        self.started.map(|t| now.saturating_duration_since(t))
    }

    /// A record of this session with the counters `now` shows.
    pub fn record(
        &self,
        kind: AcctKind,
        now: Instant,
        sample: Option<Counters>,
        context: AuthContext,
    ) -> AcctRecord {
        let counters = match (kind, sample, self.baseline) {
            (AcctKind::Start, _, _) => None,
            (_, Some(s), Some(b)) => Some(s.since(&b)),
            (_, _, Some(_)) => Some(Counters::default()),
            _ => None,
        };
        AcctRecord {
            kind,
            acct: self.clone(),
            session_time: (kind != AcctKind::Start).then(|| self.session_time(now)).flatten(),
            counters,
            context,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctKind {
    Start,
    Interim,
    Stop,
}

/// An Accounting-Request to send: the session's accounting as it stands,
/// and the call it describes.
#[derive(Debug, Clone)]
pub struct AcctRecord {
    pub kind: AcctKind,
    pub acct: Accounting,
    pub session_time: Option<Duration>,
    /// Since Start (Interim-Update and Stop).
    pub counters: Option<Counters>,
    pub context: AuthContext,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AccountingConfig {
        AccountingConfig { boot: 7, interim_default: Some(Duration::from_secs(60)), authentic: 1 }
    }

    #[test]
    fn start_waits_for_the_baseline_and_interims_keep_the_grid() {
        let t0 = Instant::now();
        let mut a = Accounting::new(&cfg(), 1, b"alice", vec![], None);
        assert!(a.network_up(Some(Ipv4Addr::new(198, 51, 100, 1)), None, None));
        assert!(!a.network_up(None, Some(("2001:db8::".parse().unwrap(), 64)), None), "one Start");
        assert!(!a.started());
        let base = Counters { up_packets: 5, ..Default::default() };
        assert_eq!(a.start(t0, base), Some(AcctKind::Start));
        assert!(!a.interim_due(t0 + Duration::from_secs(59)));
        assert!(a.interim_due(t0 + Duration::from_secs(60)));
        // Checked late: the next stays on the grid.
        a.schedule_next_interim(t0 + Duration::from_secs(61));
        assert_eq!(a.next_interim, Some(t0 + Duration::from_secs(120)));
        // Missed a whole slot: not made up.
        a.schedule_next_interim(t0 + Duration::from_secs(250));
        assert_eq!(a.next_interim, Some(t0 + Duration::from_secs(310)));
    }
}
