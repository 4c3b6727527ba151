//! What time and counters decide: Session-Timeout, idle timeout, RADIUS
//! accounting (Start, Interim-Update, Stop) and dynamic authorization.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use lns_radius::attribute::error_cause;
use lns_radius::dynauth::DynAuthRequest;

use super::accounting::{Accounting, AcctKind, Counters};
use super::{Core, Effect, EndReason, Notice, SessionKey, Subscriber, TIMEOUT_CHECK};
use crate::daemon::dynauth;

/// How often a session with idle timeout `t` has its counters sampled:
/// an eighth of it, at least [`TIMEOUT_CHECK`]. So a session ends idle
/// between `t` and `t` plus that after its last packet (the data plane
/// counts packets; it keeps no time of the last one), and a million
/// sessions with a 10-minute idle timeout cost 13,000 samples a second,
/// not a million.
pub(super) fn idle_sample_every(t: Duration) -> Duration {
    (t / 8).max(TIMEOUT_CHECK)
}

/// The first sampling instant after `now` on the grid of
/// [`idle_sample_every`] that starts at the session's last activity.
fn idle_look(last_activity: Instant, t: Duration, now: Instant) -> Instant {
    let every = idle_sample_every(t).as_nanos().max(1);
    let since = now.saturating_duration_since(last_activity).as_nanos();
    let steps = since / every + 1;
    let ahead = u64::try_from(steps.saturating_mul(every)).unwrap_or(u64::MAX);
    last_activity.checked_add(Duration::from_nanos(ahead)).unwrap_or(now + TIMEOUT_CHECK)
}

impl Core {
    /// When the clock must next look at session `s` (see
    /// [`Core::check_timeouts`]): its Session-Timeout, its next idle
    /// sample, its next interim, the expiry of a DHCPv6 binding. None:
    /// nothing of it runs on time.
    fn next_look(&self, s: &Subscriber, now: Instant) -> Option<Instant> {
        let mut look: Option<Instant> = None;
        let mut at = |t: Instant| look = Some(look.map_or(t, |l| l.min(t)));
        if s.ipv6.dhcpv6.is_allocated() {
            let b = &s.ipv6.dhcpv6;
            b.pd.iter().for_each(|pd| at(pd.expires));
            b.na.iter().for_each(|na| at(na.expires));
        }
        if let (Some(up), None) = (s.network_up, s.ending) {
            if let Some(t) = s.session_timeout.or(self.cfg.session_timeout) {
                at(up + t);
            }
            if let Some(t) = s.idle_timeout.or(self.cfg.idle_timeout) {
                at(idle_look(s.last_activity, t, now));
            }
            if let Some(next) = s.acct.as_ref().filter(|a| a.started.is_some()).and_then(|a| a.next_interim) {
                at(next);
            }
        }
        look
    }

    /// Files session `key`'s next look in the clock, not before
    /// `not_before` (or takes it out: nothing of it is timed). Called
    /// wherever what [`Core::next_look`] reads changes.
    pub(super) fn reclock(&mut self, key: SessionKey, now: Instant, not_before: Instant) {
        let Some(s) = self.sessions.get(&key) else { return };
        let next = self.next_look(s, now).map(|t| t.max(not_before));
        if next == s.clock {
            return;
        }
        if let Some(old) = s.clock {
            self.session_clock.remove(&(old, key));
        }
        if let Some(t) = next {
            self.session_clock.insert((t, key));
        }
        // The clock is rebuilt at a restore: not worth a write to the store.
        if let Some(s) = self.sessions.untracked().get_mut(&key) {
            s.clock = next;
        }
    }

    /// Every session's look filed again (a reload changed the timeouts
    /// that apply to all of them; a restore).
    pub(super) fn reclock_all(&mut self, now: Instant) {
        let keys: Vec<SessionKey> = self.sessions.keys().copied().collect();
        for key in keys {
            self.reclock(key, now, now);
        }
    }

    /// The sessions whose look is due, and no others: Session-Timeout ends
    /// a session the way an operator's kill does, but through PPP (LCP
    /// Terminate, then CDN with the RFC 3145 cause); a session with an
    /// idle timeout or an interim due has its counters sampled (see
    /// [`Core::handle_counters`]); an expired DHCPv6 binding ends. A
    /// session with nothing timed costs nothing here: at a million
    /// sessions, looking at every one once a second was a tenth of the
    /// control plane's time.
    pub(super) fn check_timeouts(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&(t, key)) = self.session_clock.first() {
            if t > now {
                break;
            }
            self.session_clock.pop_first();
            if let Some(s) = self.sessions.untracked().get_mut(&key) {
                if s.clock == Some(t) {
                    s.clock = None;
                    due.push(key);
                }
            }
        }
        if due.is_empty() {
            return;
        }
        self.dhcpv6_expire(now, &due);
        let mut ending = Vec::new();
        let mut sample = Vec::new();
        for key in &due {
            let Some(s) = self.sessions.get(key) else { continue };
            let Some(up) = s.network_up else { continue };
            if s.ending.is_some() {
                continue;
            }
            let session_timeout = s.session_timeout.or(self.cfg.session_timeout);
            if session_timeout.is_some_and(|t| now.duration_since(up) >= t) {
                ending.push(*key);
                continue;
            }
            let idle = s.idle_timeout.or(self.cfg.idle_timeout).is_some();
            if idle || s.acct.as_ref().is_some_and(|a| a.interim_due(now)) {
                sample.push(*key);
            }
        }
        for key in ending {
            self.end_session(now, key, EndReason::SessionTimeout);
        }
        // An interim due stays due until its sample is back: looked at
        // again a second later, as before.
        for key in due {
            self.reclock(key, now, now + TIMEOUT_CHECK);
        }
        if !sample.is_empty() {
            self.effects.push_back(Effect::SampleCounters { keys: sample });
        }
    }

    /// Fast-path counters the core asked for: the baseline of an
    /// Accounting Start, an Interim-Update, the Stop of a session that
    /// ended, or activity for the idle timeout. A key the core no longer
    /// knows is ignored; `None` means the data plane has no entry for it.
    pub fn handle_counters(&mut self, now: Instant, samples: &[(SessionKey, Option<Counters>)]) {
        for &(key, sample) in samples {
            // What went through the slow path counts as the fast path's
            // does: for accounting and as activity.
            let slow = self.sessions.get(&key).or_else(|| self.stopping.get(&key)).map(|s| *s.slow_path);
            let sample = match (sample, slow) {
                (Some(c), Some(slow)) => Some(c.plus(&slow)),
                (None, Some(slow)) if slow.packets() > 0 => Some(slow),
                (sample, _) => sample,
            };
            if self.stopping.contains_key(&key) {
                self.session_stopped(now, key, sample);
                continue;
            }
            // Untracked: a sample alone is not worth a write to the store
            // (the data plane keeps the counters); what it leads to is.
            let Some(s) = self.sessions.untracked().get_mut(&key) else { continue };
            let idle_timeout = s.idle_timeout.or(self.cfg.idle_timeout);
            if let Some(c) = sample {
                if c.packets() != s.traffic {
                    s.traffic = c.packets();
                    s.last_activity = now;
                }
            }
            let mut record = None;
            if let Some(acct) = s.acct.as_mut() {
                if let Some(kind) = acct.start(now, sample.unwrap_or_default()) {
                    record = Some(kind);
                } else if acct.interim_due(now) {
                    acct.schedule_next_interim(now);
                    record = Some(AcctKind::Interim);
                }
            }
            let idle = s.ending.is_none()
                && s.network_up.is_some()
                && idle_timeout.is_some_and(|t| now.duration_since(s.last_activity) >= t);
            if record.is_some() || idle {
                self.sessions.touch(key);
            }
            if let Some(kind) = record {
                let s = &self.sessions[&key];
                if let Some(acct) = s.acct.as_ref() {
                    let r = acct.record(kind, now, sample, self.context_of(key, s));
                    self.effects.push_back(Effect::Accounting(Box::new(r)));
                }
            }
            if idle {
                self.end_session(now, key, EndReason::IdleTimeout);
            }
            // Its activity, or its next interim, moved its next look.
            self.reclock(key, now, now);
        }
        self.pump(now);
    }

    /// The subscriber was accepted: its accounting record, if accounting
    /// is on (a renegotiation keeps the one that started).
    pub(super) fn acct_begin(
        &mut self,
        key: SessionKey,
        user: &[u8],
        class: Vec<Vec<u8>>,
        interim: Option<Duration>,
    ) {
        let Some(cfg) = self.cfg.accounting.as_ref() else { return };
        let Some(s) = self.sessions.get_mut(&key) else { return };
        if s.acct.as_ref().is_some_and(|a| a.started() || a.start_pending) {
            return;
        }
        self.acct_sessions += 1;
        s.acct = Some(Box::new(Accounting::new(cfg, self.acct_sessions, user, class, interim)));
    }

    /// A network protocol opened: Accounting Start on the first, once the
    /// fast path's counters as they stand (the baseline) are sampled.
    pub(super) fn acct_network_up(
        &mut self,
        key: SessionKey,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<(Ipv6Addr, u8)>,
        delegated: Option<(Ipv6Addr, u8)>,
    ) {
        let Some(acct) = self.sessions.get_mut(&key).and_then(|s| s.acct.as_mut()) else { return };
        if acct.network_up(ipv4, ipv6, delegated) {
            self.effects.push_back(Effect::SampleCounters { keys: vec![key] });
        }
    }

    /// A verified Disconnect-Request or CoA-Request: applied to every
    /// session it names; Err is the Error-Cause of the NAK.
    pub fn handle_dynauth(&mut self, now: Instant, req: &DynAuthRequest) -> Result<(), u32> {
        // The calling numbers, unpacked once for the views to borrow.
        let calling: Vec<Option<Vec<u8>>> =
            self.sessions.values().map(|s| s.info.get().calling_number).collect();
        let keys = dynauth::select(
            &req.selector,
            self.sessions.iter().zip(&calling).map(|((k, s), calling)| dynauth::SessionView {
                key: *k,
                acct_session_id: s.acct.as_ref().map(|a| a.session_id.as_str()),
                user_name: s.username.as_deref().map(str::as_bytes),
                framed_ip: s.ipv4,
                nas_port: crate::daemon::radius::nas_port(k.tunnel.0, k.session.0),
                calling_station_id: calling.as_deref(),
            }),
        );
        if keys.is_empty() {
            return Err(error_cause::SESSION_CONTEXT_NOT_FOUND);
        }
        let disconnect = req.code == lns_radius::Code::DisconnectRequest;
        for key in keys {
            if disconnect {
                self.end_session(now, key, EndReason::RadiusDisconnect);
                continue;
            }
            let Some(s) = self.sessions.get_mut(&key) else { continue };
            let secs = |v: u32| (v > 0).then(|| Duration::from_secs(u64::from(v)));
            if let Some(t) = req.session_timeout {
                s.session_timeout = secs(t);
            }
            if let Some(t) = req.idle_timeout {
                s.idle_timeout = secs(t);
            }
            // New rates go into the entry at once: the workers read them
            // with the next packet.
            let rates = super::Rates::from(req.rates);
            let rewrite = rates != super::Rates::default();
            if rewrite {
                s.rates = rates.or(s.rates);
            }
            let (session_timeout, idle_timeout) = (s.session_timeout, s.idle_timeout);
            if rewrite {
                self.write_entry(key, super::MapOp::Change);
            }
            self.reclock(key, now, now);
            self.notice(Notice::CoaApplied { key, session_timeout, idle_timeout });
        }
        self.pump(now);
        Ok(())
    }
}
