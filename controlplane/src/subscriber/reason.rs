//! Why subscribers go: one enum each for what the LNS decides and for what
//! it learns, and how each is told to the LAC (CDN Result Code, RFC 3145
//! PPP disconnect cause) and to RADIUS (Acct-Terminate-Cause).

use lns_radius::attribute::acct_terminate_cause;

use crate::l2tp::avp::{cdn, error_code};
use crate::l2tp::{ResultCode, SessionDownCause};
use crate::ppp::{self, DisconnectCause, DisconnectCode};

/// The LNS ends the session (or the tunnel) itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EndReason {
    /// RADIUS Session-Timeout or `[ppp] session_timeout`.
    SessionTimeout,
    /// No fast-path traffic for RADIUS Idle-Timeout or `[ppp] idle_timeout`.
    IdleTimeout,
    /// `lnsctl session kill` or `lnsctl tunnel kill`.
    Operator,
    /// An RFC 5176 Disconnect-Request.
    RadiusDisconnect,
    /// The data plane did not take the session.
    DataplaneUnavailable,
    /// The control plane stops (StopCCN to every tunnel).
    Shutdown,
}

impl EndReason {
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::SessionTimeout => "session timeout",
            EndReason::IdleTimeout => "idle timeout",
            EndReason::Operator => "closed by the operator",
            EndReason::RadiusDisconnect => "disconnected by RADIUS",
            EndReason::DataplaneUnavailable => "data plane unavailable",
            EndReason::Shutdown => "shutting down",
        }
    }

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::SessionTimeout => "session_timeout",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Operator => "operator",
            EndReason::RadiusDisconnect => "radius_disconnect",
            EndReason::DataplaneUnavailable => "dataplane_unavailable",
            EndReason::Shutdown => "shutdown",
        }
    }

    pub fn acct_terminate_cause(self) -> u32 {
        match self {
            EndReason::SessionTimeout => acct_terminate_cause::SESSION_TIMEOUT,
            EndReason::IdleTimeout => acct_terminate_cause::IDLE_TIMEOUT,
            EndReason::Operator | EndReason::RadiusDisconnect => acct_terminate_cause::ADMIN_RESET,
            EndReason::DataplaneUnavailable => acct_terminate_cause::NAS_ERROR,
            EndReason::Shutdown => acct_terminate_cause::NAS_REBOOT,
        }
    }

    /// Timeouts end the link the way PPP would (LCP Terminate, then a CDN
    /// carrying the RFC 3145 cause); the rest send the CDN at once.
    pub fn through_ppp(self) -> bool {
        matches!(self, EndReason::SessionTimeout | EndReason::IdleTimeout)
    }

    /// The CDN of a session the LNS ends without PPP's say.
    pub fn cdn_result(self) -> ResultCode {
        match self {
            EndReason::DataplaneUnavailable => ResultCode::with_error(
                cdn::NO_FACILITIES_TEMPORARY,
                error_code::INSUFFICIENT_RESOURCES,
                self.describe(),
            ),
            _ => ResultCode::with_error(cdn::ADMINISTRATIVE, error_code::NO_ERROR, self.describe()),
        }
    }

    /// The RFC 3145 cause PPP reports when it closes for this reason.
    pub fn ppp_cause(self) -> DisconnectCause {
        DisconnectCause {
            code: DisconnectCode::ADMINISTRATIVE,
            protocol: ppp::Protocol(0),
            direction: ppp::session::Direction::Local,
            message: self.describe().to_string(),
        }
    }
}

/// How a session left, as the log and `lnsctl` tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// A CDN either way (the L2TP layer's report).
    Cdn(SessionDownCause),
    /// Its tunnel went (StopCCN, or the peer stopped answering).
    TunnelDown,
    /// The control plane stopped.
    Stopping,
}

/// Acct-Terminate-Cause for a session the L2TP layer reports down with no
/// reason of the LNS's own: the LAC's CDN or StopCCN is the user's (or
/// its LAC's) request; a tunnel that stopped answering lost the carrier.
pub fn terminate_cause_of_down(cause: &SessionDownCause) -> u32 {
    match (cause.by_peer, &cause.result) {
        (true, _) => acct_terminate_cause::USER_REQUEST,
        (false, None) => acct_terminate_cause::LOST_CARRIER,
        (false, Some(_)) => acct_terminate_cause::NAS_REQUEST,
    }
}

/// Acct-Terminate-Cause for PPP ending by itself.
pub fn terminate_cause_of_link_down(cause: &DisconnectCause) -> u32 {
    use crate::ppp::session::Direction;
    if cause.code == DisconnectCode::LCP_ECHO_TIMEOUT {
        acct_terminate_cause::LOST_CARRIER
    } else if cause.direction == Direction::Peer {
        acct_terminate_cause::USER_REQUEST
    } else {
        acct_terminate_cause::NAS_REQUEST
    }
}

/// The CDN for PPP that ended by itself: a dead peer is a lost carrier,
/// anything else an administrative end, with the cause's text.
pub fn cdn_of_link_down(cause: &DisconnectCause) -> ResultCode {
    let result =
        if cause.code == DisconnectCode::LCP_ECHO_TIMEOUT { cdn::LOST_CARRIER } else { cdn::ADMINISTRATIVE };
    ResultCode::with_error(result, error_code::NO_ERROR, &cause.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_go_through_ppp_and_name_their_cause() {
        assert!(EndReason::SessionTimeout.through_ppp());
        assert!(!EndReason::Operator.through_ppp());
        assert_eq!(EndReason::IdleTimeout.acct_terminate_cause(), acct_terminate_cause::IDLE_TIMEOUT);
        assert_eq!(EndReason::SessionTimeout.ppp_cause().message, "session timeout");
        assert_eq!(EndReason::DataplaneUnavailable.cdn_result().result, cdn::NO_FACILITIES_TEMPORARY);
    }

    #[test]
    fn a_peer_cdn_is_the_users_request() {
        let c = SessionDownCause { result: None, q931: None, by_peer: true, ppp_cause: None };
        assert_eq!(terminate_cause_of_down(&c), acct_terminate_cause::USER_REQUEST);
        let c = SessionDownCause { by_peer: false, ..c };
        assert_eq!(terminate_cause_of_down(&c), acct_terminate_cause::LOST_CARRIER);
    }
}
