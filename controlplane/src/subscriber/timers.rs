//! What time and counters decide: Session-Timeout, idle timeout, RADIUS
//! accounting (Start, Interim-Update, Stop) and dynamic authorization.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use lns_radius::attribute::error_cause;
use lns_radius::dynauth::DynAuthRequest;

use super::accounting::{Accounting, AcctKind, Counters};
use super::{Core, Effect, EndReason, Notice, SessionKey, TIMEOUT_CHECK};
use crate::daemon::dynauth;

impl Core {
    /// Once a second: Session-Timeout ends a session the way an operator's
    /// kill does, but through PPP (LCP Terminate, then CDN with the RFC 3145
    /// cause); sessions with an idle timeout or an interim due have their
    /// counters sampled (see [`Core::handle_counters`]).
    pub(super) fn check_timeouts(&mut self, now: Instant) {
        if now < self.next_timeout_check {
            return;
        }
        self.next_timeout_check = now + TIMEOUT_CHECK;
        self.dhcpv6_expire(now);
        let mut ending = Vec::new();
        let mut sample = Vec::new();
        for (key, s) in &self.sessions {
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
            let slow = self.sessions.get(&key).or_else(|| self.stopping.get(&key)).map(|s| s.slow_path);
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
            self.notice(Notice::CoaApplied { key, session_timeout, idle_timeout });
        }
        self.pump(now);
        Ok(())
    }
}
