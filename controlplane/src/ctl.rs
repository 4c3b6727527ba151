//! The control socket protocol between `lns-controlplane` and `lnsctl`.
//!
//! One Unix stream socket per instance (`/run/lns/<instance>.sock` by
//! default). Each request is one line of JSON, answered by one line of JSON;
//! a connection may carry any number of them, in order.
//!
//! ```text
//! > {"cmd":"session_kill","session_id":4711,"tunnel_id":null}
//! < {"result":"killed","tunnel_id":12,"session_id":4711}
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    TunnelList,
    SessionList,
    /// StopCCN to the peer; every session of the tunnel goes with it.
    TunnelKill {
        tunnel_id: u16,
    },
    /// CDN for one session. Session ids are unique per tunnel only: without
    /// `tunnel_id` the id must be unambiguous.
    SessionKill {
        session_id: u16,
        tunnel_id: Option<u16>,
    },
    ShowStats,
    /// RADIUS servers, the accounting queue and dynamic authorization.
    Radius,
    /// Read the configuration file again (as SIGHUP does): users, peers,
    /// limits, pools and timeouts take effect; sessions stay. A file with
    /// an error changes nothing.
    Reload,
    /// End every session and stop (StopCCN to every tunnel, Accounting
    /// Stops), even when SIGTERM would keep them.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Tunnels { tunnels: Vec<TunnelRow> },
    Sessions { sessions: Vec<SessionRow> },
    Killed { tunnel_id: u16, session_id: Option<u16> },
    Stats { stats: Stats },
    Radius { radius: RadiusStatus },
    Reloaded { summary: String },
    ShuttingDown { tunnels: usize, sessions: usize },
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelRow {
    pub tunnel_id: u16,
    pub peer_tunnel_id: u16,
    /// The LAC's address and port.
    pub peer: String,
    /// Our address the LAC sends to.
    pub local: String,
    pub peer_host_name: String,
    /// RFC 2661 §7.2 state, lower case: idle, wait-ctl-conn, established, closing, ...
    pub state: String,
    pub sessions: usize,
    pub age_secs: u64,
    /// Control messages retransmitted on this tunnel (§5.8).
    pub retransmissions: u64,
    /// The control channel's smoothed round trip, once measured, and its
    /// retransmission timeout now (adapted to the round trip).
    #[serde(default)]
    pub srtt_ms: Option<f64>,
    #[serde(default)]
    pub rto_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub tunnel_id: u16,
    pub session_id: u16,
    pub peer_tunnel_id: u16,
    pub peer_session_id: u16,
    pub peer: String,
    /// wait-connect (ICRP sent) or established (ICCN received).
    pub state: String,
    /// Slot in the data plane's session table, if written there.
    pub slot: Option<u32>,
    /// What the data plane does with it: control (PPP negotiating) or forwarding.
    pub dataplane_state: Option<String>,
    pub sequencing: bool,
    pub calling_number: Option<String>,
    pub called_number: Option<String>,
    pub tx_connect_speed: Option<u32>,
    pub rx_connect_speed: Option<u32>,
    /// PPP frames received from the LAC on the control path.
    pub ppp_frames_rx: u64,
    /// RFC 1661 phase: establish, authenticate, network, terminate, dead.
    pub ppp_phase: Option<String>,
    pub username: Option<String>,
    /// The subscriber's address, once assigned.
    pub ipv4: Option<String>,
    /// The subscriber's IPv6 prefix (announced by RA), once assigned.
    #[serde(default)]
    pub ipv6_prefix: Option<String>,
    /// The prefix routed to the subscriber's router, while IPv6CP is open.
    #[serde(default)]
    pub delegated_prefix: Option<String>,
    /// The address DHCPv6 bound to the subscriber (IA_NA), while bound.
    #[serde(default)]
    pub dhcpv6_address: Option<String>,
    pub age_secs: u64,
    /// RADIUS Acct-Session-Id, when the session is accounted (what a
    /// Disconnect-Request or CoA-Request can name it by).
    #[serde(default)]
    pub acct_session_id: Option<String>,
    /// The largest IP packet sent to the subscriber: its MRU, no more than
    /// the access link carries (the entry's MTU).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// The session's packets and bytes through the exception path (the
    /// control plane's TUN device), each way; RADIUS accounting reports
    /// them with the fast path's.
    #[serde(default)]
    pub slow_path: crate::subscriber::Counters,
    /// Rate limits in force, bits per second (0: none), toward and from
    /// the subscriber.
    #[serde(default)]
    pub rate_down: u64,
    #[serde(default)]
    pub rate_up: u64,
    /// The fast path's drops over those limits since the session started.
    #[serde(default)]
    pub policed: Policed,
    /// What the fast path carried for it since it started.
    #[serde(default)]
    pub fast_path: crate::subscriber::Counters,
}

/// Packets and bytes a session's rate limits dropped, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policed {
    pub up_packets: u64,
    pub up_bytes: u64,
    pub down_packets: u64,
    pub down_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub uptime_secs: u64,
    pub dataplane: bool,
    pub tunnels: usize,
    pub tunnels_half_open: usize,
    pub sessions: usize,
    pub tunnels_up_total: u64,
    pub tunnels_down_total: u64,
    pub sessions_up_total: u64,
    pub sessions_down_total: u64,
    pub datagrams_rx: u64,
    pub datagrams_tx: u64,
    pub control_rx: u64,
    pub data_rx: u64,
    pub send_errors: u64,
    pub map_errors: u64,
    /// Data-plane session slots in use by this control plane / table size.
    pub slots_in_use: usize,
    pub slots_total: usize,
    /// Sessions installed off their direct slot (another writer held it):
    /// the program finds those through a hash, a little slower.
    #[serde(default)]
    pub slots_off_direct: u64,
    /// Subscriber IPv4 addresses assigned.
    pub addresses_in_use: usize,
    /// Subscriber IPv6 prefixes assigned.
    #[serde(default)]
    pub ipv6_prefixes_in_use: usize,
    /// Datagrams dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Sessions that ended, by cause.
    #[serde(default)]
    pub sessions_down: BTreeMap<String, u64>,
    /// Tunnels that went down, by cause.
    #[serde(default)]
    pub tunnels_down: BTreeMap<String, u64>,
    /// Sessions taken back at start from what the last control plane
    /// kept, and of those ended because the data plane had lost them.
    #[serde(default)]
    pub sessions_restored: u64,
    #[serde(default)]
    pub sessions_reconciled: u64,
    /// Tunnels taken back at start; the sessions a restart could not take
    /// back (ended, or their entries removed), by why.
    #[serde(default)]
    pub tunnels_restored: u64,
    #[serde(default)]
    pub sessions_reconciled_by: BTreeMap<String, u64>,
    /// The session store (`keep_sessions`): commits, records written and
    /// removed, bytes written, failed commits, the last commit's time.
    #[serde(default)]
    pub store: BTreeMap<String, u64>,
    /// The exception path: `up_packets`, `down_packets`, and drops by
    /// reason.
    #[serde(default)]
    pub slow_path: BTreeMap<String, u64>,
    /// Tunnels' own ports (`tunnel_ports`): `sockets_open`,
    /// `tunnels_on_own_port`, `fallbacks` (tunnels moved back to the
    /// listen port because their LAC repeated its SCCRQ: a NAT, a LAC that
    /// insists on 1701) and `unusable` (ports another program holds).
    #[serde(default)]
    pub tunnel_ports: BTreeMap<String, u64>,
    /// XDP verdict counters of the data plane, when there is one.
    pub xdp: Option<BTreeMap<String, u64>>,
}

/// `lnsctl radius`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RadiusStatus {
    /// False when no `[radius]` is configured.
    pub enabled: bool,
    pub servers: Vec<RadiusServerRow>,
    pub accounting: Option<AccountingStatus>,
    pub dynauth: Option<DynAuthStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RadiusServerRow {
    pub address: String,
    /// authentication or accounting.
    pub service: String,
    /// alive or dead.
    pub state: String,
    pub requests: u64,
    pub retransmissions: u64,
    pub replies: u64,
    pub timeouts: u64,
    /// Replies refused: bad authenticator, missing or bad
    /// Message-Authenticator, malformed, unknown identifier, wrong code.
    pub bad_replies: u64,
    pub status_server_sent: u64,
    pub last_rtt_ms: Option<f64>,
    /// Of `bad_replies`: dropped for want of the Message-Authenticator
    /// the server's policy requires (Blast-RADIUS, CVE-2024-3596).
    #[serde(default)]
    pub missing_message_authenticator: u64,
    /// Of `bad_replies`: dropped for a Message-Authenticator that does not
    /// verify.
    #[serde(default)]
    pub bad_message_authenticator: u64,
    /// Its replies' Message-Authenticator policy now: "true", "false",
    /// "auto:unsigned" (auto, nothing signed yet: unsigned replies taken)
    /// or "auto:signed" (auto, the server signed: required).
    #[serde(default)]
    pub message_authenticator: String,
    /// Round trips of its replies to requests sent once, counted in
    /// fixed buckets.
    #[serde(default)]
    pub rtt: RttHistogram,
}

/// A round-trip histogram: `counts[i]` round trips took at most
/// `bounds_ms[i]` (and more than the bound before); the last count, one
/// more than the bounds, is of those above every bound. Not cumulative.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RttHistogram {
    pub bounds_ms: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum_ms: f64,
}

impl RttHistogram {
    /// Round trips counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The accounting sender's queue and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountingStatus {
    pub in_flight: usize,
    /// Records not spooled, waiting or in flight (Start records no server
    /// answered wait in memory).
    pub queued_memory: usize,
    /// Stop records on disk until a server acknowledges them.
    pub spooled_records: usize,
    pub spool_segments: usize,
    pub spool_dir: String,
    pub sent: u64,
    pub acknowledged: u64,
    pub no_answer: u64,
    /// Interim-Updates no server answered, and records that could not be
    /// encoded or queued.
    pub dropped: u64,
    pub spool_errors: u64,
}

/// RFC 5176 server counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynAuthStats {
    pub listen: String,
    pub disconnect_ack: u64,
    pub disconnect_nak: u64,
    pub coa_ack: u64,
    pub coa_nak: u64,
    /// Answered again from the reply cache (a retransmitted request).
    pub duplicates: u64,
    /// Dropped: unknown client, bad authenticator or Message-Authenticator,
    /// malformed.
    pub unknown_client: u64,
    pub bad_authenticator: u64,
    pub malformed: u64,
    /// Refused for an Event-Timestamp outside the window.
    pub stale: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("connecting to {path}: {source} (is lns-controlplane running?)")]
    Connect { path: String, source: std::io::Error },
    #[error("control socket i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad answer from the control plane: {0}")]
    Protocol(#[from] serde_json::Error),
    #[error("the control plane closed the connection")]
    Closed,
}

/// One blocking request/response exchange (for lnsctl and tests).
pub fn request(path: &Path, req: &Request) -> Result<Response, CtlError> {
    let stream = UnixStream::connect(path)
        .map_err(|source| CtlError::Connect { path: path.display().to_string(), source })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut answer = String::new();
    if BufReader::new(&stream).read_line(&mut answer)? == 0 {
        return Err(CtlError::Closed);
    }
    Ok(serde_json::from_str(&answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r = Request::SessionKill { session_id: 7, tunnel_id: None };
        let s = serde_json::to_string(&r).expect("json");
        assert_eq!(s, r#"{"cmd":"session_kill","session_id":7,"tunnel_id":null}"#);
        assert_eq!(serde_json::from_str::<Request>(&s).expect("parse"), r);
        let k: Response =
            serde_json::from_str(r#"{"result":"killed","tunnel_id":1,"session_id":null}"#).expect("parse");
        assert_eq!(k, Response::Killed { tunnel_id: 1, session_id: None });
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }
}
