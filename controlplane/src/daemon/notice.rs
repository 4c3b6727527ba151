//! The subscriber core's notices, written to the log. Every line about a
//! tunnel or a session carries `tunnel_id` (and `session_id`), so one grep
//! follows a subscriber.

use tracing::{debug, info, warn};

use crate::l2tp::{ResultCode, TunnelDownReason};
use crate::subscriber::{DownReason, MapOp, NcpRefusal, Notice};

/// A Result Code as an operator reads it.
pub fn describe_result(r: &ResultCode) -> String {
    let mut s = format!("result {}", r.result);
    if let Some(e) = r.error {
        s.push_str(&format!(" error {e}"));
    }
    if let Some(m) = &r.message {
        s.push_str(&format!(" {:?}", String::from_utf8_lossy(m)));
    }
    s
}

pub fn describe_tunnel_down(reason: &TunnelDownReason) -> String {
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

pub fn describe_session_down(reason: &DownReason) -> String {
    match reason {
        DownReason::Cdn(cause) => match (&cause.result, cause.by_peer) {
            (Some(r), true) => format!("peer {}", describe_result(r)),
            (Some(r), false) => format!("local {}", describe_result(r)),
            (None, true) => "peer".to_string(),
            (None, false) => "local".to_string(),
        },
        DownReason::TunnelDown => "tunnel down".to_string(),
        DownReason::Stopping => "control plane stopping".to_string(),
    }
}

fn map_op(op: MapOp) -> &'static str {
    match op {
        MapOp::Call => "writing an incoming call",
        MapOp::Connect => "writing the connected session",
        MapOp::Ipv4Up => "switching the session to forwarding",
        MapOp::Ipv6Up => "writing the IPv6 prefix",
        MapOp::Change => "changing the session",
        MapOp::Remove => "removing the session",
    }
}

/// Logs one notice; `slot` is the session's data-plane slot, if any.
pub fn log(n: &Notice, slot: Option<u32>) {
    match n {
        Notice::TunnelAccepted { tunnel, peer, local } => {
            debug!(tunnel_id = tunnel.0, %peer, %local, "SCCRQ accepted")
        }
        Notice::TunnelUp { tunnel, peer_tunnel_id, host_name } => {
            info!(tunnel_id = tunnel.0, peer_tunnel_id, host_name = %host_name, "tunnel up")
        }
        Notice::TunnelDown { tunnel, reason } => {
            info!(tunnel_id = tunnel.0, reason = %describe_tunnel_down(reason), "tunnel down")
        }
        Notice::TunnelClosing { tunnel, by } => {
            info!(tunnel_id = tunnel.0, why = by.describe(), "StopCCN on the operator's request")
        }
        Notice::SessionUp { key, peer_session_id, sequencing, calling_number } => info!(
            slot,
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            peer_session_id,
            sequencing,
            calling_number = %calling_number,
            "session up"
        ),
        Notice::Authentication { key, user, method, proxied, accepted } => info!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            user,
            ?method,
            proxied,
            accept = accepted,
            "authentication"
        ),
        Notice::NoIpv4Address { key, user, ipv6_only: true } => debug!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            user,
            "no IPv4 address for the user: IPv6 only"
        ),
        Notice::NoIpv4Address { key, user, ipv6_only: false } => {
            warn!(tunnel_id = key.tunnel.0, session_id = key.session.0, user, "no IPv4 address for the user")
        }
        Notice::Ipv4Up { key, address, mtu } => info!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            ipv4 = %address,
            mtu,
            "IPCP opened: forwarding"
        ),
        Notice::Ipv6Up { key, prefix, len } => info!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            prefix = %prefix,
            len,
            "IPv6CP opened: forwarding, prefix announced"
        ),
        Notice::NcpRefused { key, protocol, why } => {
            let what = match why {
                NcpRefusal::NoAddress => "IPCP opened without an address to assign: IPCP closed",
                NcpRefusal::NotAssigned => "IPCP opened with an address we did not assign: link closed",
                NcpRefusal::NoPrefix => "no IPv6 prefix for the subscriber: IPv6CP closed",
                NcpRefusal::MapWrite => "the data plane refused the network: closed",
            };
            warn!(tunnel_id = key.tunnel.0, session_id = key.session.0, protocol, "{what}")
        }
        Notice::NcpDown { key, protocol } => {
            info!(tunnel_id = key.tunnel.0, session_id = key.session.0, protocol, "NCP down")
        }
        Notice::EchoFailure { key, unanswered } => {
            warn!(tunnel_id = key.tunnel.0, session_id = key.session.0, unanswered, "LCP echo failure")
        }
        Notice::Ending { key, reason } => info!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            why = reason.describe(),
            "ending the session"
        ),
        Notice::LinkDown { key, code, message } => info!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            code,
            message = %message,
            "PPP link down: CDN"
        ),
        Notice::SessionDown { key, reason, ppp_frames_rx } => info!(
            why = describe_session_down(reason).as_str(),
            ppp_frames_rx,
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            "session down"
        ),
        Notice::CoaApplied { key, session_timeout, idle_timeout } => info!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            ?session_timeout,
            ?idle_timeout,
            "CoA-Request applied"
        ),
        Notice::MapWriteFailed { key, op: MapOp::Call } => debug!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            "incoming call not yet in the data plane"
        ),
        Notice::MapWriteFailed { key, op } => {
            warn!(
                tunnel_id = key.tunnel.0,
                session_id = key.session.0,
                "data plane write failed: {}",
                map_op(*op)
            )
        }
        Notice::ClearL2tpRefused { peer, ifindex, interface } => warn!(
            %peer,
            ifindex,
            interface = interface.as_deref().unwrap_or("?"),
            "L2TP in clear from a peer that requires IPsec (not through its ipsec_interfaces): refused"
        ),
        Notice::StaleAuthAnswer { key } => debug!(
            tunnel_id = key.tunnel.0,
            session_id = key.session.0,
            "authentication answer for a session that is gone or asked again: dropped"
        ),
    }
}

/// Warnings a flood of packets or calls could repeat without end: at
/// most this many of a kind per second reach the log.
const WARNINGS_PER_SECOND: u32 = 20;

/// Which rate-limited kind a notice is, if it is a warning.
fn warning_kind(n: &Notice) -> Option<&'static str> {
    match n {
        Notice::NoIpv4Address { ipv6_only: false, .. } => Some("no_ipv4_address"),
        Notice::NcpRefused { .. } => Some("ncp_refused"),
        Notice::EchoFailure { .. } => Some("echo_failure"),
        Notice::ClearL2tpRefused { .. } => Some("clear_l2tp_refused"),
        Notice::MapWriteFailed { op, .. } if *op != MapOp::Call => Some("map_write"),
        _ => None,
    }
}

/// Writes notices, with warnings rate-limited per kind: a LAC (or a
/// subscriber) that makes the LNS warn thousands of times a second fills
/// no disk; what was left out is counted and said once a second. (A
/// counter per kind and second: small enough not to need a crate.)
#[derive(Debug, Default)]
pub struct Limiter {
    second: Option<std::time::Instant>,
    counts: std::collections::BTreeMap<&'static str, u32>,
    suppressed: std::collections::BTreeMap<&'static str, u64>,
}

impl Limiter {
    pub fn log(&mut self, n: &Notice, slot: Option<u32>, now: std::time::Instant) {
        if self.allow(warning_kind(n), now) {
            log(n, slot);
        }
    }

    /// Whether a notice of `kind` is written now; a new second first
    /// reports what the last ones left out.
    fn allow(&mut self, kind: Option<&'static str>, now: std::time::Instant) -> bool {
        let Some(kind) = kind else { return true };
        if self.second.is_none_or(|s| now.saturating_duration_since(s) >= std::time::Duration::from_secs(1)) {
            for (kind, n) in std::mem::take(&mut self.suppressed) {
                warn!(
                    kind,
                    suppressed = n,
                    "warnings left out of the log (more than {WARNINGS_PER_SECOND} a second)"
                );
            }
            self.counts.clear();
            self.second = Some(now);
        }
        let c = self.counts.entry(kind).or_default();
        *c += 1;
        if *c > WARNINGS_PER_SECOND {
            *self.suppressed.entry(kind).or_default() += 1;
            return false;
        }
        true
    }

    /// Warnings left out since the last report.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_flood_of_warnings_is_cut_per_kind_and_second() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let written = (0..1000).filter(|_| l.allow(Some("ncp_refused"), t0)).count();
        assert_eq!(written, WARNINGS_PER_SECOND as usize);
        assert_eq!(l.suppressed(), 1000 - u64::from(WARNINGS_PER_SECOND));
        assert!(l.allow(Some("echo_failure"), t0), "another kind has its own budget");
        assert!(l.allow(None, t0), "what is not a warning is always written");
        assert!(l.allow(Some("ncp_refused"), t0 + Duration::from_secs(1)), "a new second");
        assert_eq!(l.suppressed(), 0, "reported");
    }
}
