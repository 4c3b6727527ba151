//! `lns-controlplane` configuration: a TOML file, overridden by flags.
//!
//! ```toml
//! listen = "0.0.0.0:1701"
//! # tunnel_ports = "20000-20999" # each tunnel answered from a port of its own
//! #                              # (RFC 2661 §8.1), so RSS spreads tunnels over
//! #                              # queues; default: off, every tunnel on listen's port
//! instance = "default"          # pinned maps in /sys/fs/bpf/lns/<instance>
//! # bpf_pin_dir = "/sys/fs/bpf/lns/default"
//! # control_socket = "/run/lns/default.sock"
//! # no_dataplane = false        # run without the data plane's maps
//! host_name = "lns"
//! hello_interval = "60s"
//! # secret = "..."              # for peers that have none of their own
//! allow_unlisted_peers = false
//! shutdown_grace = "2s"         # wait for StopCCN acks on SIGTERM
//! # metrics_listen = "127.0.0.1:9701"   # Prometheus /metrics
//! # log_format = "json"          # text (default) or json
//! # keep_sessions = true         # SIGTERM keeps sessions for the next start
//! # state_dir = "/var/lib/lns/default"
//! slow_path = true               # the exception path: a TUN device, routes into it
//! # tun_name = "lns-default"     # default lns-<instance> (cut to 15 bytes)
//! route_table = 254              # subscriber routes into the device (254: main)
//! route_metric = 1024
//!
//! [limits]
//! max_tunnels = 4096
//! max_half_open = 256
//! max_sessions_per_tunnel = 65535
//! tunnel_id_hold_down = "120s"
//! session_id_hold_down = "60s"
//!
//! [retransmit]                  # RFC 2661 §5.8
//! initial_timeout = "1s"        # until a round trip is measured
//! rto_min = "200ms"             # floor of the adaptive timeout (RFC 6298)
//! max_timeout = "8s"
//! max_retransmissions = 5
//! receive_window = 64
//!
//! [[peer]]                      # allow-list, first match wins
//! network = "192.0.2.0/24"
//! secret = "s3cret"             # tunnel authentication and hidden AVPs
//! host_name = "lac1"            # the Host Name its SCCRQ must carry
//! # ipsec = "required"          # its L2TP only through IPsec (docs/ipsec.md)
//! # ipsec_interfaces = ["ipsec0"]  # where decrypted L2TP arrives
//! # fast_path = false           # its sessions on the slow path (IPsec: always)
//! # own_port = false            # with tunnel_ports: its tunnels stay on listen's
//! #                             # port (LACs that insist on 1701)
//!
//! [ppp]
//! users_file = "/etc/lns/users.toml"   # see daemon::aaa
//! local_ipv4 = "203.0.113.1"   # our IPCP address
//! dns = ["192.0.2.53", "192.0.2.54"]
//! auth = ["mschapv2", "chap-md5", "pap"]   # offered in this order
//! echo_interval = "10s"
//! echo_failures = 5
//! restart_interval = "3s"       # RFC 1661 §4.6
//! default_pool = "default"
//! accept_proxy = false          # adopt the LAC's proxy LCP/authentication
//! session_timeout = "0"        # end sessions this long after IPCP up (0: never)
//! idle_timeout = "0"           # end sessions without traffic this long (to 1/8 more; 0: never)
//! # ipv6 = true                # offer IPv6CP (default: when an [[ipv6_pool]] exists)
//! default_ipv6_pool = "default"
//! rate_down = "0"             # rate limits of subscribers with none of their own or
//! rate_up = "0"               # of their pool's: bits/s with k, M, G ("2M"); 0: none
//! rate_burst = "100ms"        # bucket depth as time at the rate (at least 15,000 bytes)
//! ra_interval = "600s"         # MaxRtrAdvInterval of the Router Advertisements (4s..1800s)
//!
//! [[pool]]
//! name = "default"
//! ranges = ["198.51.100.0/24"]
//!
//! [[ipv6_pd_pool]]              # DHCPv6 prefix delegation (IA_PD) to subscribers' routers
//! name = "pd"                   # (set [ppp] default_ipv6_pd_pool = "pd" to use it; RADIUS
//! prefix = "2001:db8:8000::/33" # Delegated-IPv6-Prefix wins)
//! length = 56
//!
//! [dhcpv6]                      # the DHCPv6 server on the PPP links (RFC 8415)
//! dns = ["2001:db8::53"]        # DNS recursive name servers (RFC 3646)
//! ia_na = false                 # addresses (IA_NA), from the session's /64 unless
//!                               # [ppp] default_ipv6_na_pool names a pool (then true);
//!                               # sets the RA's M flag
//!
//! [[ipv6_na_pool]]              # addresses for IA_NA, a /128 each, routed while leased
//! name = "na"                   # (set [ppp] default_ipv6_na_pool = "na" to use it)
//! prefix = "2001:db8:400::/64"
//! preferred_lifetime = 3600     # seconds; T1, T2 are 0.5 and 0.8 of it
//! valid_lifetime = 7200
//! rapid_commit = true
//!
//! [[ipv6_pool]]                 # a /64 per IPv6 subscriber, announced by RA (SLAAC)
//! name = "default"
//! prefix = "2001:db8:100::/40"
//! length = 64
//! [radius]                      # authentication and accounting by RADIUS
//! nas_identifier = "lns1"       # NAS-Identifier (default: host_name)
//! nas_ip_address = "192.0.2.1"  # NAS-IP-Address
//! timeout = "2s"                # first retransmission (RFC 5080 IRT)
//! retries = 2                   # retransmissions before the next server
//! dead_time = "10s"             # Status-Server probes of a dead server
//! on_no_response = "reject"     # or "local": the users file decides
//! interim_interval = "300s"     # unless the Access-Accept says otherwise (0: none)
//! state_dir = "/var/lib/lns/default"  # Stop records spooled here
//! [[radius.auth_server]]        # tried in order
//! address = "192.0.2.10:1812"
//! secret = "s3cret"
//! [[radius.acct_server]]
//! address = "192.0.2.10:1813"
//! secret = "s3cret"
//! [radius.dynauth]              # RFC 5176 Disconnect / CoA
//! listen = "0.0.0.0:3799"
//! event_timestamp_window = "300s"
//! [[radius.dynauth.client]]
//! address = "192.0.2.10"
//! secret = "coa-secret"
//! require_message_authenticator = false
//!
//! [dataplane]                   # lns-dataplane --config reads this file too
//! access_if = "eth1"            # its keys: dataplane/src/config.rs
//! ```
//!
//! Durations are a number of seconds or a string with a unit (`ms`, `s`,
//! `m`, `h`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Deserializer};

mod radius;

pub use self::radius::{
    DynAuthClientEntry, DynAuthFile, DynAuthSettings, NoResponsePolicy, RadiusFile, RadiusServerEntry,
    RadiusSettings,
};
use super::aaa::{Ipv6PoolEntry, PoolEntry};
use crate::l2tp::{EndpointConfig, PeerConfig, ReliableConfig, Role, TunnelConfig};
use crate::ppp::{AuthMethod, SessionConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("bad peer network {0:?}: expected ADDRESS/LEN")]
    Network(String),
    #[error("bad --peer {0:?}: expected CIDR[,secret=S][,host-name=H][,ipsec-interface=IF][,fast-path=no][,own-port=no]")]
    PeerFlag(String),
    #[error("bad duration {0:?}: expected e.g. 60, \"500ms\", \"2s\", \"5m\"")]
    Duration(String),
    #[error("{0}")]
    Invalid(String),
}

/// Command-line flags; each one set wins over the file.
#[derive(Args, Debug, Clone, Default)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// UDP address to receive L2TP on [default: 0.0.0.0:1701].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Answer each SCCRQ from a UDP port of the tunnel's own, from
    /// FIRST-LAST (RFC 2661 §8.1: the LAC sends the tunnel's later messages
    /// there), so that RSS spreads tunnels over queues; SCCRQs still come
    /// to --listen. Peers with own_port = false stay on --listen's port.
    /// [default: none, every tunnel on --listen's port]
    #[arg(long, value_name = "FIRST-LAST", value_parser = lns_bpf::parse_port_range)]
    pub tunnel_ports: Option<(u16, u16)>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep every session across restarts: they are written to a store in
    /// the state directory as they change, the data plane's entries stay,
    /// and the next start takes them back, whatever ended the process
    /// (SIGTERM: a restart or an upgrade; a crash; kill -9). `lnsctl
    /// shutdown` still ends every session. Without it SIGTERM ends them
    /// (StopCCN, Stops) and a kill -9 loses them.
    #[arg(long)]
    pub keep_sessions: bool,
    /// Where a control plane that keeps its sessions writes them
    /// (default /var/lib/lns/INSTANCE).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Instance name: pinned maps in /sys/fs/bpf/lns/<instance>, control
    /// socket /run/lns/<instance>.sock [default: default].
    #[arg(long)]
    pub instance: Option<String>,
    /// Directory of the data plane's pinned maps (overrides --instance).
    #[arg(long, value_name = "DIR")]
    pub bpf_pin_dir: Option<PathBuf>,
    /// Run without a data plane: sessions are not written to any map.
    #[arg(long)]
    pub no_dataplane: bool,
    /// Unix socket lnsctl talks to (overrides --instance).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Our Host Name in SCCRP.
    #[arg(long)]
    pub host_name: Option<String>,
    /// Send HELLO after this long without a message from the peer.
    #[arg(long, value_parser = parse_duration_flag, value_name = "DURATION")]
    pub hello_interval: Option<Duration>,
    /// Allowed LAC network, repeatable; replaces the file's peers:
    /// CIDR[,secret=S][,host-name=H][,ipsec-interface=IF][,fast-path=no]
    /// [,own-port=no] (an ipsec-interface, repeatable, means IPsec is
    /// required; own-port=no: its tunnels stay on --listen's port).
    #[arg(long = "peer", value_name = "PEER")]
    pub peers: Vec<String>,
    /// Accept tunnels from addresses that match no peer.
    #[arg(long)]
    pub allow_unlisted_peers: bool,
    #[arg(long)]
    pub max_tunnels: Option<usize>,
    #[arg(long)]
    pub max_half_open: Option<usize>,
    #[arg(long)]
    pub max_sessions_per_tunnel: Option<usize>,
    /// First retransmission timeout of control messages.
    #[arg(long, value_parser = parse_duration_flag, value_name = "DURATION")]
    pub retransmit_timeout: Option<Duration>,
    /// Retransmissions before the tunnel is given up.
    #[arg(long)]
    pub max_retransmissions: Option<u32>,
    /// How long to wait for the peers to acknowledge StopCCN on shutdown.
    #[arg(long, value_parser = parse_duration_flag, value_name = "DURATION")]
    pub shutdown_grace: Option<Duration>,
    /// Local users file (TOML), see `daemon::aaa`.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// tracing filter (also RUST_LOG) [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// `text` (the default), or `json`: one JSON object per line, for log
    /// shippers.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// RADIUS server, repeatable, tried in order: ADDR (authentication on
    /// 1812, accounting on 1813) or ADDR:PORT (accounting on PORT+1);
    /// replaces the file's servers.
    #[arg(long = "radius-server", value_name = "ADDR[:PORT]")]
    pub radius_servers: Vec<String>,
    /// Shared secret of the --radius-server servers.
    #[arg(long, value_name = "SECRET")]
    pub radius_secret: Option<String>,
    /// Where accounting Stop records wait for a server (radius.state_dir).
    #[arg(long, value_name = "DIR")]
    pub radius_state_dir: Option<PathBuf>,
    /// Dynamic authorization (RFC 5176) listen address (radius.dynauth.listen).
    #[arg(long, value_name = "ADDR:PORT")]
    pub dynauth_listen: Option<SocketAddr>,
    /// The exception path's TUN device, at most 15 bytes [default:
    /// lns-INSTANCE, cut to 15].
    #[arg(long, value_name = "NAME")]
    pub tun_name: Option<String>,
    /// Routing table of the subscriber routes into the TUN device
    /// [default: 254, main].
    #[arg(long, value_name = "TABLE")]
    pub route_table: Option<u32>,
    /// Metric of the subscriber routes into the TUN device [default: 1024].
    #[arg(long, value_name = "METRIC")]
    pub route_metric: Option<u32>,
    /// No exception path: no TUN device, no subscriber routes; what the data
    /// plane cannot forward is dropped.
    #[arg(long)]
    pub no_slow_path: bool,
}

fn parse_duration_flag(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// `60`, `1.5`, `"500ms"`, `"2s"`, `"5m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let s = s.trim();
    let bad = || ConfigError::Duration(s.to_string());
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(v * scale).map_err(|_| bad())
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Float(f64),
        Str(String),
    }
    let parsed = match Option::<Raw>::deserialize(d)? {
        None => return Ok(None),
        Some(Raw::Int(n)) => Ok(Duration::from_secs(n)),
        Some(Raw::Float(f)) => {
            Duration::try_from_secs_f64(f).map_err(|_| ConfigError::Duration(f.to_string()))
        }
        Some(Raw::Str(s)) => parse_duration(&s),
    };
    parsed.map(Some).map_err(serde::de::Error::custom)
}

/// The file, as written; everything optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub listen: Option<SocketAddr>,
    /// `FIRST-LAST`: see [`Flags::tunnel_ports`].
    pub tunnel_ports: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub keep_sessions: Option<bool>,
    pub state_dir: Option<PathBuf>,
    pub instance: Option<String>,
    pub bpf_pin_dir: Option<PathBuf>,
    pub no_dataplane: Option<bool>,
    pub control_socket: Option<PathBuf>,
    pub host_name: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub hello_interval: Option<Duration>,
    pub secret: Option<String>,
    pub allow_unlisted_peers: Option<bool>,
    #[serde(default, deserialize_with = "de_duration")]
    pub shutdown_grace: Option<Duration>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    /// The exception path (see `SlowPathSettings`); on unless false.
    pub slow_path: Option<bool>,
    pub tun_name: Option<String>,
    pub route_table: Option<u32>,
    pub route_metric: Option<u32>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub retransmit: Retransmit,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerEntry>,
    #[serde(default)]
    pub ppp: PppFile,
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolEntry>,
    #[serde(default, rename = "ipv6_pool")]
    pub ipv6_pools: Vec<Ipv6PoolEntry>,
    pub radius: Option<RadiusFile>,
    /// Prefixes for DHCPv6 prefix delegation.
    #[serde(default, rename = "ipv6_pd_pool")]
    pub ipv6_pd_pools: Vec<Ipv6PoolEntry>,
    /// Addresses for DHCPv6 IA_NA.
    #[serde(default, rename = "ipv6_na_pool")]
    pub ipv6_na_pools: Vec<super::aaa::Ipv6NaPoolEntry>,
    pub dhcpv6: Option<Dhcpv6File>,
    /// `[dataplane]`: lns-dataplane's section of this one file (its
    /// interfaces, queues, modes; see the data plane's `config` module). Not
    /// read here: the data plane parses it, unknown keys and all.
    pub dataplane: Option<toml::Value>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PppFile {
    pub users_file: Option<PathBuf>,
    pub local_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    pub auth: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_duration")]
    pub echo_interval: Option<Duration>,
    pub echo_failures: Option<u32>,
    /// RFC 1661 §4.6 Restart timer of LCP, the NCPs and authentication.
    #[serde(default, deserialize_with = "de_duration")]
    pub restart_interval: Option<Duration>,
    pub default_pool: Option<String>,
    pub accept_proxy: Option<bool>,
    /// End a session this long after its IPCP came up (0 or absent: never).
    #[serde(default, deserialize_with = "de_duration")]
    pub session_timeout: Option<Duration>,
    /// End a session whose fast-path traffic stopped for this long.
    #[serde(default, deserialize_with = "de_duration")]
    pub idle_timeout: Option<Duration>,
    /// Offer IPv6CP; by default when an IPv6 pool is configured.
    pub ipv6: Option<bool>,
    pub default_ipv6_pool: Option<String>,
    /// The `[[ipv6_pd_pool]]` of sessions without a Delegated-IPv6-Prefix.
    pub default_ipv6_pd_pool: Option<String>,
    /// The `[[ipv6_na_pool]]` DHCPv6 IA_NA addresses come from.
    pub default_ipv6_na_pool: Option<String>,
    /// MaxRtrAdvInterval of the Router Advertisements over PPP.
    #[serde(default, deserialize_with = "de_duration")]
    pub ra_interval: Option<Duration>,
    /// Rate limits of sessions with none of their own or of their pool's.
    pub rate_down: Option<super::aaa::Rate>,
    pub rate_up: Option<super::aaa::Rate>,
    /// The depth of a rate limit's bucket, as time at the rate.
    #[serde(default, deserialize_with = "de_duration")]
    pub rate_burst: Option<Duration>,
    /// The LCP MRU (RFC 1661 §6.1) the LNS proposes and the largest packet
    /// it sends a subscriber; absent: derived per tunnel from the MTU of
    /// the access link less the L2TP/UDP/IP overhead (at most 1500).
    pub mru: Option<u16>,
}

/// PPP at the LNS: the per-session template and where credentials and
/// addresses come from.
#[derive(Debug, Clone)]
pub struct PppSettings {
    pub session: SessionConfig,
    pub users_file: Option<PathBuf>,
    pub default_pool: Option<String>,
    pub pools: Vec<PoolEntry>,
    pub session_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub default_ipv6_pool: Option<String>,
    pub ipv6_pools: Vec<Ipv6PoolEntry>,
    /// `ppp.rate_down`, `rate_up`, `rate_burst`.
    pub rates: crate::subscriber::RateDefaults,
    /// `ppp.mru`: None derives it from each access link.
    pub mru: Option<u16>,
}

fn auth_method(name: &str) -> Result<AuthMethod, ConfigError> {
    match name.to_ascii_lowercase().as_str() {
        "pap" => Ok(AuthMethod::Pap),
        "chap" | "chap-md5" | "chap_md5" => Ok(AuthMethod::ChapMd5),
        "mschapv2" | "ms-chap-v2" | "mschap-v2" => Ok(AuthMethod::MsChapV2),
        _ => Err(ConfigError::Invalid(format!(
            "unknown authentication method {name:?}: pap, chap-md5, mschapv2"
        ))),
    }
}

impl PppSettings {
    fn resolve(
        f: PppFile,
        pools: Vec<PoolEntry>,
        ipv6_pools: Vec<Ipv6PoolEntry>,
        users_flag: Option<PathBuf>,
        host_name: &str,
    ) -> Result<Self, ConfigError> {
        let mut session = SessionConfig::server(host_name);
        if let Some(names) = &f.auth {
            let methods = names.iter().map(|n| auth_method(n)).collect::<Result<Vec<_>, _>>()?;
            if methods.is_empty() {
                return Err(ConfigError::Invalid("ppp.auth must name at least one method".into()));
            }
            session.lcp.require_auth = methods;
        }
        if let Some(ipcp) = &mut session.ipcp {
            ipcp.local_address = f.local_ipv4;
            ipcp.primary_dns = f.dns.first().copied();
            ipcp.secondary_dns = f.dns.get(1).copied();
        }
        if f.echo_interval.is_some_and(|d| d.is_zero()) {
            session.echo.interval = None;
        } else if let Some(d) = f.echo_interval {
            session.echo.interval = Some(d);
        }
        if let Some(n) = f.echo_failures {
            session.echo.max_failures = n;
        }
        if let Some(d) = f.restart_interval {
            if d.is_zero() {
                return Err(ConfigError::Invalid("ppp.restart_interval must be positive".into()));
            }
            session.fsm.restart_interval = d;
            session.auth.restart_interval = d;
        }
        let accept_proxy = f.accept_proxy.unwrap_or(false);
        session.accept_proxy_lcp = accept_proxy;
        session.accept_proxy_auth = accept_proxy;
        let default_pool = f.default_pool.or_else(|| pools.first().map(|p| p.name.clone()));
        if let Some(d) = &default_pool {
            if !pools.iter().any(|p| &p.name == d) {
                return Err(ConfigError::Invalid(format!(
                    "ppp.default_pool {d:?} is not a configured [[pool]]"
                )));
            }
        }
        let default_ipv6_pool = f.default_ipv6_pool.or_else(|| ipv6_pools.first().map(|p| p.name.clone()));
        if let Some(d) = &default_ipv6_pool {
            if !ipv6_pools.iter().any(|p| &p.name == d) {
                return Err(ConfigError::Invalid(format!(
                    "ppp.default_ipv6_pool {d:?} is not a configured [[ipv6_pool]]"
                )));
            }
        }
        // Check the pools now rather than when the server starts.
        super::aaa::Ipv6Pools::new(&ipv6_pools).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if f.ipv6.unwrap_or(!ipv6_pools.is_empty()) {
            session.ipv6cp = Some(crate::ppp::Ipv6cpConfig::default());
        }
        if let Some(d) = f.ra_interval {
            // RFC 4861 §6.2.1: MaxRtrAdvInterval is 4 to 1800 s.
            if d < Duration::from_secs(4) || d > Duration::from_secs(1800) {
                return Err(ConfigError::Invalid("ppp.ra_interval must be 4s..1800s".into()));
            }
            session.nd.max_interval = d;
            session.nd.router_lifetime = (d * 3).min(Duration::from_secs(9000));
        }
        if let Some(mru) = f.mru {
            // RFC 1661 §6.1 leaves the floor to us: an IPv4 header and
            // some; nothing past what an L2TP datagram can carry.
            if !(576..=65000).contains(&mru) {
                return Err(ConfigError::Invalid("ppp.mru must be 576..65000".into()));
            }
            session.lcp.mru = mru;
        }
        let nonzero = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        let burst = f.rate_burst.unwrap_or(Duration::from_millis(100));
        if burst < Duration::from_millis(1) || burst > Duration::from_secs(10) {
            return Err(ConfigError::Invalid("ppp.rate_burst must be 1ms..10s".into()));
        }
        let rates = crate::subscriber::RateDefaults {
            down: f.rate_down.map_or(0, |r| r.0),
            up: f.rate_up.map_or(0, |r| r.0),
            burst_ms: burst.as_millis() as u32,
        };
        Ok(PppSettings {
            session,
            users_file: users_flag.or(f.users_file),
            default_pool,
            pools,
            session_timeout: nonzero(f.session_timeout),
            idle_timeout: nonzero(f.idle_timeout),
            default_ipv6_pool,
            ipv6_pools,
            rates,
            mru: f.mru,
        })
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_tunnels: Option<usize>,
    pub max_half_open: Option<usize>,
    pub max_sessions_per_tunnel: Option<usize>,
    #[serde(default, deserialize_with = "de_duration")]
    pub tunnel_id_hold_down: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub session_id_hold_down: Option<Duration>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Retransmit {
    #[serde(default, deserialize_with = "de_duration")]
    pub initial_timeout: Option<Duration>,
    /// The floor of the timeout adapted to the measured round trip.
    #[serde(default, deserialize_with = "de_duration")]
    pub rto_min: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub max_timeout: Option<Duration>,
    pub max_retransmissions: Option<u32>,
    pub receive_window: Option<u16>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    pub network: String,
    pub secret: Option<String>,
    pub host_name: Option<String>,
    /// `"required"`: the peer's L2TP must come through IPsec (see
    /// [`PeerEntry::ipsec_interfaces`]); `"none"` (the default): clear
    /// L2TP is taken.
    pub ipsec: Option<Ipsec>,
    /// With `ipsec = "required"`: the interfaces the IPsec stack hands
    /// the peer's decrypted packets to the kernel on (strongSwan's
    /// kernel-libipsec TUN device `ipsec0`, an XFRM interface); L2TP from
    /// the peer that arrives anywhere else is refused.
    pub ipsec_interfaces: Option<Vec<String>>,
    /// false: the peer's sessions are kept off the data plane's fast path
    /// (the slow path carries them); default true. IPsec peers' always are.
    pub fast_path: Option<bool>,
    /// false: with `tunnel_ports`, the peer's tunnels stay on the listen
    /// port (a LAC that takes answers only from 1701); default true.
    pub own_port: Option<bool>,
}

/// `[[peer]] ipsec`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Ipsec {
    None,
    Required,
}

impl PeerEntry {
    fn to_peer(&self) -> Result<PeerConfig, ConfigError> {
        let (network, prefix_len) = parse_cidr(&self.network)?;
        let ipsec_interfaces = match (self.ipsec, &self.ipsec_interfaces) {
            (Some(Ipsec::Required), Some(names)) if !names.is_empty() => {
                if let Some(bad) = names.iter().find(|n| n.is_empty() || n.len() > 15 || n.contains('/')) {
                    return Err(ConfigError::Invalid(format!(
                        "peer {}: ipsec_interfaces: {bad:?} is no interface name",
                        self.network
                    )));
                }
                Some(names.clone())
            }
            (Some(Ipsec::Required), _) => {
                return Err(ConfigError::Invalid(format!(
                    "peer {}: ipsec = \"required\" needs ipsec_interfaces, the devices its decrypted \
                     L2TP arrives on (strongSwan kernel-libipsec: [\"ipsec0\"]; an XFRM interface)",
                    self.network
                )))
            }
            (_, Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "peer {}: ipsec_interfaces without ipsec = \"required\"",
                    self.network
                )))
            }
            (_, None) => None,
        };
        Ok(PeerConfig {
            network,
            prefix_len,
            secret: self.secret.as_ref().map(|s| s.as_bytes().to_vec()),
            host_name: self.host_name.as_ref().map(|s| s.as_bytes().to_vec()),
            ipsec_interfaces,
            fast_path: self.fast_path.unwrap_or(true),
            own_port: self.own_port.unwrap_or(true),
        })
    }

    /// `CIDR[,secret=S][,host-name=H][,ipsec-interface=IF...][,fast-path=no]`;
    /// a bare address is a host; an `ipsec-interface` (repeatable) means
    /// `ipsec = "required"`.
    fn from_flag(s: &str) -> Result<PeerEntry, ConfigError> {
        let mut parts = s.split(',');
        let network = parts.next().unwrap_or_default().trim().to_string();
        let mut e = PeerEntry { network, ..Default::default() };
        for p in parts {
            match p.split_once('=') {
                Some(("secret", v)) => e.secret = Some(v.to_string()),
                Some(("host-name" | "host_name", v)) => e.host_name = Some(v.to_string()),
                Some(("ipsec-interface" | "ipsec_interface", v)) => {
                    e.ipsec = Some(Ipsec::Required);
                    e.ipsec_interfaces.get_or_insert_with(Vec::new).push(v.to_string());
                }
                Some(("fast-path" | "fast_path", v)) => {
                    e.fast_path = Some(match v {
                        "yes" | "true" | "on" => true,
                        "no" | "false" | "off" => false,
                        _ => return Err(ConfigError::PeerFlag(s.to_string())),
                    })
                }
                Some(("own-port" | "own_port", v)) => {
                    e.own_port = Some(match v {
                        "yes" | "true" | "on" => true,
                        "no" | "false" | "off" => false,
                        _ => return Err(ConfigError::PeerFlag(s.to_string())),
                    })
                }
                _ => return Err(ConfigError::PeerFlag(s.to_string())),
            }
        }
        Ok(e)
    }
}

/// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host route).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), ConfigError> {
    let bad = || ConfigError::Network(s.to_string());
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(l.parse::<u8>().map_err(|_| bad())?)),
        None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(bad());
    }
    Ok((addr, len))
}

/// Where the data plane's maps are, or that there deliberately is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dataplane {
    PinDir(PathBuf),
    /// `--no-dataplane`: sessions live only in the control plane.
    None,
}

/// The exception path (issue 18): subscriber packets the data plane does
/// not forward go through the control plane and a TUN device, and the
/// subscribers' addresses are routed into that device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowPathSettings {
    /// At most 15 bytes (IFNAMSIZ).
    pub tun_name: String,
    /// Routing table of the subscriber routes (254: main).
    pub table: u32,
    pub metric: u32,
}

/// The file's top-level keys of the exception path.
struct SlowPathFile {
    slow_path: Option<bool>,
    tun_name: Option<String>,
    route_table: Option<u32>,
    route_metric: Option<u32>,
}

impl SlowPathSettings {
    fn resolve(file: SlowPathFile, flags: &Flags, instance: &str) -> Result<Option<Self>, ConfigError> {
        if flags.no_slow_path || file.slow_path == Some(false) {
            return Ok(None);
        }
        let tun_name = match flags.tun_name.clone().or(file.tun_name) {
            Some(name) if name.len() > 15 => {
                return Err(ConfigError::Invalid(format!(
                    "tun_name {name:?} is {} bytes: an interface name has at most 15",
                    name.len()
                )))
            }
            Some(name) => name,
            // An instance name's own characters, cut on a character boundary.
            None => format!("lns-{instance}")
                .char_indices()
                .take_while(|(i, c)| i + c.len_utf8() <= 15)
                .map(|(_, c)| c)
                .collect(),
        };
        if tun_name.is_empty()
            || tun_name == "."
            || tun_name == ".."
            || tun_name.contains(|c: char| c == '/' || c.is_whitespace())
        {
            return Err(ConfigError::Invalid(format!("tun_name {tun_name:?} is not an interface name")));
        }
        let table = flags.route_table.or(file.route_table).unwrap_or(254);
        if table == 0 || table == 255 {
            return Err(ConfigError::Invalid(format!(
                "route_table {table}: 0 is no table and 255 is the kernel's local one"
            )));
        }
        Ok(Some(SlowPathSettings {
            tun_name,
            table,
            metric: flags.route_metric.or(file.route_metric).unwrap_or(1024),
        }))
    }
}

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// SIGTERM keeps the sessions for the next start (see `Flags`).
    pub keep_sessions: bool,
    pub state_dir: PathBuf,
    pub instance: String,
    pub dataplane: Dataplane,
    pub control_socket: PathBuf,
    pub endpoint: EndpointConfig,
    pub shutdown_grace: Duration,
    pub log: String,
    pub log_format: LogFormat,
    /// The flags it was resolved with: a reload reads the file again
    /// under the same flags.
    pub flags: Flags,
    pub ppp: PppSettings,
    pub radius: Option<RadiusSettings>,
    /// The exception path; `None` when it is off (`slow_path = false`,
    /// `--no-slow-path`).
    pub slow_path: Option<SlowPathSettings>,
    /// The DHCPv6 server: `[dhcpv6]`, `[[ipv6_pd_pool]]`,
    /// `ppp.default_ipv6_pd_pool`.
    pub dhcpv6: crate::subscriber::Dhcpv6Config,
}

/// `[dhcpv6]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Dhcpv6File {
    #[serde(default)]
    pub dns: Vec<std::net::Ipv6Addr>,
    pub ia_na: Option<bool>,
    pub preferred_lifetime: Option<u32>,
    pub valid_lifetime: Option<u32>,
    pub rapid_commit: Option<bool>,
}

impl Dhcpv6File {
    fn resolve(
        self,
        (pd_pools, default_pd_pool): (Vec<Ipv6PoolEntry>, Option<String>),
        (na_pools, default_na_pool): (Vec<super::aaa::Ipv6NaPoolEntry>, Option<String>),
        ipv6_pools: &[Ipv6PoolEntry],
    ) -> Result<crate::subscriber::Dhcpv6Config, ConfigError> {
        let d = crate::subscriber::Dhcpv6Config::default();
        if let Some(name) = &default_pd_pool {
            if !pd_pools.iter().any(|p| &p.name == name) {
                return Err(ConfigError::Invalid(format!(
                    "ppp.default_ipv6_pd_pool {name:?} is not a configured [[ipv6_pd_pool]]"
                )));
            }
        }
        let na_pools: Vec<Ipv6PoolEntry> = na_pools.iter().map(|p| p.entry()).collect();
        if let Some(name) = &default_na_pool {
            if !na_pools.iter().any(|p| &p.name == name) {
                return Err(ConfigError::Invalid(format!(
                    "ppp.default_ipv6_na_pool {name:?} is not a configured [[ipv6_na_pool]]"
                )));
            }
        }
        // One allocator holds every kind: names must differ.
        let all: Vec<Ipv6PoolEntry> = ipv6_pools.iter().chain(&pd_pools).chain(&na_pools).cloned().collect();
        super::aaa::Ipv6Pools::new(&all).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let valid = self.valid_lifetime.unwrap_or(d.valid_lifetime);
        let preferred = self.preferred_lifetime.unwrap_or(d.preferred_lifetime.min(valid));
        if valid == 0 || preferred > valid {
            return Err(ConfigError::Invalid("dhcpv6: need 0 < preferred_lifetime <= valid_lifetime".into()));
        }
        Ok(crate::subscriber::Dhcpv6Config {
            pd_pools,
            default_pd_pool,
            // A pool of addresses serves IA_NA unless told not to.
            ia_na: self.ia_na.unwrap_or(default_na_pool.is_some()),
            na_pools,
            default_na_pool,
            dns: self.dns,
            preferred_lifetime: preferred,
            valid_lifetime: valid,
            rapid_commit: self.rapid_commit.unwrap_or(true),
        })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event, for people.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields, message).
    Json,
}

/// Per-instance default of the control socket.
pub fn default_control_socket(instance: &str) -> PathBuf {
    Path::new("/run/lns").join(format!("{instance}.sock"))
}

impl Config {
    /// Reads the file named by `--config` (if any) and applies the flags.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.clone(), source })?
            }
            None => File::default(),
        };
        Config::resolve(file, flags)
    }

    pub fn resolve(file: File, flags: &Flags) -> Result<Config, ConfigError> {
        let instance = flags.instance.clone().or(file.instance).unwrap_or_else(|| "default".into());
        if instance.is_empty() || instance.contains('/') {
            return Err(ConfigError::Invalid(format!("instance name {instance:?} must be a plain name")));
        }
        let no_dataplane = flags.no_dataplane || file.no_dataplane.unwrap_or(false);
        let slow_path_file = SlowPathFile {
            slow_path: file.slow_path,
            tun_name: file.tun_name,
            route_table: file.route_table,
            route_metric: file.route_metric,
        };
        let slow_path = SlowPathSettings::resolve(slow_path_file, flags, &instance)?;
        let pin_dir = flags
            .bpf_pin_dir
            .clone()
            .or(file.bpf_pin_dir)
            .unwrap_or_else(|| lns_bpf::default_pin_dir(&instance));
        let dataplane = if no_dataplane { Dataplane::None } else { Dataplane::PinDir(pin_dir) };
        let control_socket = flags
            .control_socket
            .clone()
            .or(file.control_socket)
            .unwrap_or_else(|| default_control_socket(&instance));

        let peers = if flags.peers.is_empty() {
            file.peers
        } else {
            flags.peers.iter().map(|p| PeerEntry::from_flag(p)).collect::<Result<_, _>>()?
        };
        let peers = peers.iter().map(PeerEntry::to_peer).collect::<Result<Vec<_>, _>>()?;
        let allow_unlisted_peers = flags.allow_unlisted_peers || file.allow_unlisted_peers.unwrap_or(false);
        if peers.is_empty() && !allow_unlisted_peers {
            return Err(ConfigError::Invalid(
                "no peers configured: add [[peer]] entries (or --peer), or allow_unlisted_peers".into(),
            ));
        }

        let defaults = EndpointConfig::default();
        let rd = ReliableConfig::default();
        let reliable = ReliableConfig {
            receive_window: file.retransmit.receive_window.unwrap_or(rd.receive_window),
            initial_timeout: flags
                .retransmit_timeout
                .or(file.retransmit.initial_timeout)
                .unwrap_or(rd.initial_timeout),
            max_timeout: file.retransmit.max_timeout.unwrap_or(rd.max_timeout),
            max_retransmissions: flags
                .max_retransmissions
                .or(file.retransmit.max_retransmissions)
                .unwrap_or(rd.max_retransmissions),
            ack_delay: rd.ack_delay,
            rto_min: file.retransmit.rto_min.unwrap_or(rd.rto_min),
        };
        if reliable.receive_window == 0 {
            return Err(ConfigError::Invalid("retransmit.receive_window must be at least 1".into()));
        }
        let td = TunnelConfig::default();
        let host_name = flags.host_name.clone().or(file.host_name).unwrap_or_else(|| "lns".into());
        let dhcpv6 = file.dhcpv6.unwrap_or_default().resolve(
            (file.ipv6_pd_pools, file.ppp.default_ipv6_pd_pool.clone()),
            (file.ipv6_na_pools, file.ppp.default_ipv6_na_pool.clone()),
            &file.ipv6_pools,
        )?;
        let ppp =
            PppSettings::resolve(file.ppp, file.pools, file.ipv6_pools, flags.users.clone(), &host_name)?;
        let radius = RadiusSettings::resolve(file.radius, flags, &host_name, &instance)?;
        let tunnel = TunnelConfig {
            role: Role::Lns,
            host_name: host_name.into_bytes(),
            vendor_name: Some(b"lns-controlplane".to_vec()),
            secret: file.secret.map(String::into_bytes),
            hello_interval: flags.hello_interval.or(file.hello_interval).unwrap_or(td.hello_interval),
            reliable,
            max_sessions: flags
                .max_sessions_per_tunnel
                .or(file.limits.max_sessions_per_tunnel)
                .unwrap_or(td.max_sessions),
            session_id_hold_down: file.limits.session_id_hold_down.unwrap_or(td.session_id_hold_down),
            ..td
        };
        if tunnel.hello_interval.is_zero() {
            return Err(ConfigError::Invalid("hello_interval must be positive".into()));
        }
        let endpoint = EndpointConfig {
            tunnel,
            peers,
            allow_unlisted_peers,
            accept_incoming: true,
            max_tunnels: flags.max_tunnels.or(file.limits.max_tunnels).unwrap_or(defaults.max_tunnels),
            max_half_open: flags
                .max_half_open
                .or(file.limits.max_half_open)
                .unwrap_or(defaults.max_half_open),
            tunnel_id_hold_down: file.limits.tunnel_id_hold_down.unwrap_or(defaults.tunnel_id_hold_down),
            // Set from the data plane's table when the server opens it.
            session_id_banks: 0,
            seed: None,
            tunnel_ports: match flags.tunnel_ports {
                Some(r) => Some(r),
                None => file
                    .tunnel_ports
                    .as_deref()
                    .map(lns_bpf::parse_port_range)
                    .transpose()
                    .map_err(|e| ConfigError::Invalid(format!("tunnel_ports: {e}")))?,
            },
        };
        if let Some((first, last)) = endpoint.tunnel_ports {
            let port = flags.listen.or(file.listen).map_or(1701, |a| a.port());
            if (first..=last).contains(&port) {
                return Err(ConfigError::Invalid(format!(
                    "tunnel_ports {first}-{last} holds listen's port {port}, where SCCRQs arrive"
                )));
            }
        }
        Ok(Config {
            listen: flags.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 1701))),
            keep_sessions: flags.keep_sessions || file.keep_sessions.unwrap_or(false),
            state_dir: flags
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(|| Path::new("/var/lib/lns").join(&instance)),
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            instance,
            dataplane,
            control_socket,
            endpoint,
            shutdown_grace: flags.shutdown_grace.or(file.shutdown_grace).unwrap_or(Duration::from_secs(2)),
            log: flags.log.clone().or(file.log).unwrap_or_else(|| "info".into()),
            flags: flags.clone(),
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            ppp,
            radius,
            slow_path,
            dhcpv6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        listen = "192.0.2.1:1701"
        instance = "edge1"
        hello_interval = "30s"
        secret = "default-secret"
        [limits]
        max_tunnels = 10
        max_half_open = 3
        max_sessions_per_tunnel = 100
        tunnel_id_hold_down = 5
        [retransmit]
        initial_timeout = "250ms"
        rto_min = "50ms"
        max_retransmissions = 3
        [[peer]]
        network = "192.0.2.0/24"
        secret = "s3cret"
        host_name = "lac1"
        [[peer]]
        network = "2001:db8::1"
    "#;

    #[test]
    fn file_is_read_and_flags_win() {
        let file: File = toml::from_str(EXAMPLE).expect("parse");
        let flags = Flags {
            hello_interval: Some(Duration::from_secs(5)),
            max_tunnels: Some(7),
            bpf_pin_dir: Some("/sys/fs/bpf/x".into()),
            ..Default::default()
        };
        let c = Config::resolve(file, &flags).expect("resolve");
        assert_eq!(c.listen, "192.0.2.1:1701".parse().expect("addr"));
        assert_eq!(c.instance, "edge1");
        assert_eq!(c.dataplane, Dataplane::PinDir("/sys/fs/bpf/x".into()));
        assert_eq!(c.control_socket, PathBuf::from("/run/lns/edge1.sock"));
        assert_eq!(c.endpoint.tunnel.hello_interval, Duration::from_secs(5));
        assert_eq!(c.endpoint.max_tunnels, 7);
        assert_eq!(c.endpoint.max_half_open, 3);
        assert_eq!(c.endpoint.tunnel.max_sessions, 100);
        assert_eq!(c.endpoint.tunnel_id_hold_down, Duration::from_secs(5));
        assert_eq!(c.endpoint.tunnel.reliable.initial_timeout, Duration::from_millis(250));
        assert_eq!(c.endpoint.tunnel.reliable.rto_min, Duration::from_millis(50));
        assert_eq!(c.endpoint.tunnel.reliable.max_retransmissions, 3);
        assert_eq!(c.endpoint.tunnel.secret.as_deref(), Some(&b"default-secret"[..]));
        assert_eq!(c.endpoint.peers.len(), 2);
        assert_eq!(c.endpoint.peers[0].prefix_len, 24);
        assert_eq!(c.endpoint.peers[0].host_name.as_deref(), Some(&b"lac1"[..]));
        assert_eq!(c.endpoint.peers[1].prefix_len, 128);
        assert!(!c.endpoint.allow_unlisted_peers);
    }

    #[test]
    fn peer_flags_replace_file_peers() {
        let file: File = toml::from_str(EXAMPLE).expect("parse");
        let flags = Flags {
            peers: vec!["10.0.0.0/8,secret=x,host-name=h".into()],
            no_dataplane: true,
            ..Default::default()
        };
        let c = Config::resolve(file, &flags).expect("resolve");
        assert_eq!(c.dataplane, Dataplane::None);
        assert_eq!(c.endpoint.peers.len(), 1);
        assert_eq!(c.endpoint.peers[0].secret.as_deref(), Some(&b"x"[..]));
        assert!(PeerEntry::from_flag("10.0.0.0/8,colour=blue").is_err());
    }

    #[test]
    fn tunnel_ports_from_the_file_and_the_flag() {
        let resolve = |text: &str, flags: Flags| -> Result<Config, ConfigError> {
            let file: File = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            Config::resolve(file, &flags)
        };
        let flags = || Flags { allow_unlisted_peers: true, ..Default::default() };
        assert_eq!(resolve("", flags()).expect("none").endpoint.tunnel_ports, None);
        let c = resolve(
            "tunnel_ports = \"20000-20999\"\n[[peer]]\nnetwork = \"192.0.2.2\"\nown_port = false",
            flags(),
        )
        .expect("file");
        assert_eq!(c.endpoint.tunnel_ports, Some((20000, 20999)));
        assert!(!c.endpoint.peers[0].own_port);
        let c = resolve(
            "tunnel_ports = \"20000-20999\"",
            Flags { tunnel_ports: Some((30000, 30001)), ..flags() },
        )
        .expect("flag");
        assert_eq!(c.endpoint.tunnel_ports, Some((30000, 30001)));
        for bad in ["\"20999-20000\"", "\"0-10\"", "\"a-b\"", "\"1000-2000\""] {
            assert!(resolve(&format!("tunnel_ports = {bad}"), flags()).is_err(), "{bad}");
        }
        assert!(PeerEntry::from_flag("192.0.2.2,own-port=no")
            .and_then(|e| e.to_peer())
            .is_ok_and(|p| !p.own_port));
        assert!(PeerEntry::from_flag("192.0.2.2,own-port=maybe").is_err());
    }

    #[test]
    fn peers_requiring_ipsec_or_kept_off_the_fast_path() {
        let text = |peer: &str| {
            format!("allow_unlisted_peers = false\n[[peer]]\nnetwork = \"192.0.2.0/24\"\n{peer}")
        };
        let peer = |peer: &str| -> Result<PeerConfig, ConfigError> {
            let file: File = toml::from_str(&text(peer)).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            let flags = Flags { no_dataplane: true, ..Default::default() };
            Ok(Config::resolve(file, &flags)?.endpoint.peers.remove(0))
        };
        let p = peer("").expect("plain");
        assert_eq!((p.ipsec_interfaces.as_deref(), p.fast_path, p.slow_path_only()), (None, true, false));
        let p = peer("ipsec = \"required\"\nipsec_interfaces = [\"ipsec0\", \"xfrm1\"]").expect("ipsec");
        assert_eq!(p.ipsec_interfaces, Some(vec!["ipsec0".to_string(), "xfrm1".to_string()]));
        assert!(p.slow_path_only(), "IPsec peers never use the fast path");
        let p = peer("fast_path = false").expect("slow");
        assert!(p.slow_path_only() && p.ipsec_interfaces.is_none());
        let p = peer("ipsec = \"none\"").expect("none");
        assert!(!p.slow_path_only());
        for bad in [
            "ipsec = \"required\"",
            "ipsec = \"required\"\nipsec_interfaces = []",
            "ipsec_interfaces = [\"ipsec0\"]",
            "ipsec = \"required\"\nipsec_interfaces = [\"a-name-longer-than-15\"]",
            "ipsec = \"maybe\"",
        ] {
            assert!(peer(bad).is_err(), "{bad}");
        }
        let e = PeerEntry::from_flag("192.0.2.2,ipsec-interface=ipsec0,fast-path=no").expect("flag");
        let p = e.to_peer().expect("peer");
        assert_eq!((p.ipsec_interfaces, p.fast_path), (Some(vec!["ipsec0".to_string()]), false));
        let p = PeerEntry::from_flag("192.0.2.2,fast-path=off").and_then(|e| e.to_peer()).expect("flag");
        assert!(p.slow_path_only());
        assert!(PeerEntry::from_flag("192.0.2.2,fast-path=sometimes").is_err());
    }

    #[test]
    fn ipv6_pools_enable_ipv6cp_and_router_advertisements() {
        let flags = Flags { allow_unlisted_peers: true, ..Default::default() };
        let c = Config::resolve(File::default(), &flags).expect("resolve");
        assert!(c.ppp.session.ipv6cp.is_none(), "no IPv6 pool, no IPv6CP");
        let file: File = toml::from_str(
            "[ppp]\nra_interval = \"30s\"\n[[ipv6_pool]]\nname = \"v6\"\nprefix = \"2001:db8:100::/40\"\n",
        )
        .expect("parse");
        let c = Config::resolve(file, &flags).expect("resolve");
        assert!(c.ppp.session.ipv6cp.is_some());
        assert_eq!(c.ppp.default_ipv6_pool.as_deref(), Some("v6"));
        assert_eq!(c.ppp.ipv6_pools[0].length, 64);
        assert_eq!(c.ppp.session.nd.max_interval, Duration::from_secs(30));
        assert_eq!(c.ppp.session.nd.router_lifetime, Duration::from_secs(90));
        for bad in [
            "[ppp]\ndefault_ipv6_pool = \"x\"\n[[ipv6_pool]]\nname = \"v6\"\nprefix = \"2001:db8:100::/40\"\n",
            "[[ipv6_pool]]\nname = \"v6\"\nprefix = \"2001:db8:100::/40\"\nlength = 32\n",
            "[ppp]\nra_interval = \"1s\"\n",
        ] {
            let file: File = toml::from_str(bad).expect("parse");
            assert!(Config::resolve(file, &flags).is_err(), "{bad}");
        }
        let file: File = toml::from_str("[ppp]\nipv6 = true\n").expect("parse");
        assert!(Config::resolve(file, &flags).expect("resolve").ppp.session.ipv6cp.is_some());
    }

    #[test]
    fn defaults_and_refusals() {
        let flags = Flags { allow_unlisted_peers: true, ..Default::default() };
        let c = Config::resolve(File::default(), &flags).expect("resolve");
        assert_eq!(c.listen, "0.0.0.0:1701".parse().expect("addr"));
        assert_eq!(c.dataplane, Dataplane::PinDir("/sys/fs/bpf/lns/default".into()));
        // An LNS that accepts nobody is a configuration mistake.
        assert!(Config::resolve(File::default(), &Flags::default()).is_err());
        assert!(toml::from_str::<File>("lisen = \"0.0.0.0:1\"").is_err(), "typos are refused");
        assert!(toml::from_str::<File>("[[peer]]\nnetwork = \"1.2.3.4/33\"")
            .map_err(|_| ())
            .and_then(|f| Config::resolve(f, &Flags::default()).map_err(|_| ()))
            .is_err());
    }

    #[test]
    fn radius_section_and_flags() {
        let text = r#"
            allow_unlisted_peers = true
            [radius]
            nas_ip_address = "192.0.2.1"
            timeout = "500ms"
            on_no_response = "local"
            interim_interval = 60
            state_dir = "/tmp/x"
            [[radius.auth_server]]
            address = "127.0.0.1:1812"
            secret = "a"
            [[radius.acct_server]]
            address = "127.0.0.1:1813"
            secret = "b"
            [radius.dynauth]
            [[radius.dynauth.client]]
            address = "127.0.0.1"
            secret = "c"
        "#;
        let c = Config::resolve(toml::from_str(text).expect("parse"), &Flags::default()).expect("resolve");
        let r = c.radius.expect("radius");
        assert_eq!(r.nas_identifier, "lns");
        assert_eq!(r.timeout, Duration::from_millis(500));
        assert_eq!(r.on_no_response, NoResponsePolicy::Local);
        assert_eq!(r.interim_interval, Some(Duration::from_secs(60)));
        assert_eq!(r.acct_servers[0].secret, "b");
        let d = r.dynauth.expect("dynauth");
        assert_eq!(d.listen, "0.0.0.0:3799".parse().expect("addr"));
        assert_eq!(d.event_timestamp_window, Duration::from_secs(300));
        assert_eq!(d.clients.len(), 1);
        let flags = Flags {
            allow_unlisted_peers: true,
            radius_servers: vec!["127.0.0.1".into(), "127.0.0.2:2000".into()],
            radius_secret: Some("s".into()),
            ..Default::default()
        };
        let r = Config::resolve(File::default(), &flags).expect("resolve").radius.expect("radius");
        assert_eq!(r.auth_servers[1].address, "127.0.0.2:2000".parse().expect("addr"));
        assert_eq!(r.acct_servers[0].address, "127.0.0.1:1813".parse().expect("addr"));
        assert_eq!(r.state_dir, PathBuf::from("/var/lib/lns/default"));
        assert!(r.dynauth.is_none());
        let no_secret = Flags { radius_secret: None, ..flags };
        assert!(Config::resolve(File::default(), &no_secret).is_err());
        assert!(Config::resolve(
            File::default(),
            &Flags { allow_unlisted_peers: true, ..Default::default() }
        )
        .expect("resolve")
        .radius
        .is_none());
    }

    #[test]
    fn slow_path_keys_and_flags() {
        let flags = Flags { allow_unlisted_peers: true, ..Default::default() };
        let c = Config::resolve(File::default(), &flags).expect("resolve");
        let want = SlowPathSettings { tun_name: "lns-default".into(), table: 254, metric: 1024 };
        assert_eq!(c.slow_path, Some(want), "on by default, in the main table");
        let file: File = toml::from_str(
            "instance = \"edge1\"\ntun_name = \"exc0\"\nroute_table = 100\nroute_metric = 50\n",
        )
        .expect("parse");
        let s = Config::resolve(file, &flags).expect("resolve").slow_path.expect("on");
        assert_eq!((s.tun_name.as_str(), s.table, s.metric), ("exc0", 100, 50));
        let file: File = toml::from_str("tun_name = \"exc0\"\nroute_metric = 50\n").expect("parse");
        let over = Flags { tun_name: Some("exc1".into()), route_table: Some(7), ..flags.clone() };
        let s = Config::resolve(file, &over).expect("resolve").slow_path.expect("on");
        assert_eq!((s.tun_name.as_str(), s.table, s.metric), ("exc1", 7, 50), "flags win");
        // The default name of a long instance is cut to IFNAMSIZ less one;
        // a name given too long is refused.
        let long = Flags { instance: Some("a-very-long-instance".into()), ..flags.clone() };
        let s = Config::resolve(File::default(), &long).expect("resolve").slow_path.expect("on");
        assert_eq!(s.tun_name, "lns-a-very-long");
        let file: File = toml::from_str("tun_name = \"a-name-over-15-bytes\"").expect("parse");
        let e = Config::resolve(file, &flags).expect_err("too long");
        assert!(e.to_string().contains("at most 15"), "{e}");
        for bad in ["tun_name = \"a/b\"", "route_table = 0", "route_table = 255"] {
            let file: File = toml::from_str(bad).expect("parse");
            assert!(Config::resolve(file, &flags).is_err(), "{bad}");
        }
        let file: File = toml::from_str("slow_path = false\ntun_name = \"exc0\"").expect("parse");
        assert_eq!(Config::resolve(file, &flags).expect("resolve").slow_path, None);
        let off = Flags { no_slow_path: true, ..flags };
        assert_eq!(Config::resolve(File::default(), &off).expect("resolve").slow_path, None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60").expect("d"), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5").expect("d"), Duration::from_millis(1500));
        assert_eq!(parse_duration("200ms").expect("d"), Duration::from_millis(200));
        assert_eq!(parse_duration("2m").expect("d"), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        let f: File = toml::from_str("hello_interval = 0.5").expect("parse");
        assert_eq!(f.hello_interval, Some(Duration::from_millis(500)));
    }

    /// `[[ipv6_na_pool]]` and `[ppp] default_ipv6_na_pool`: IA_NA from the
    /// pool (on unless `[dhcpv6] ia_na = false`), the RA's M flag with it;
    /// a pool name that is not configured, or taken twice, is refused.
    #[test]
    fn ipv6_na_pools() {
        let flags = Flags { allow_unlisted_peers: true, ..Default::default() };
        let text = "[ppp]\ndefault_ipv6_na_pool = \"na\"\n\
                    [[ipv6_pool]]\nname = \"v6\"\nprefix = \"2001:db8:100::/40\"\n\
                    [[ipv6_na_pool]]\nname = \"na\"\nprefix = \"2001:db8:400::/64\"\n";
        let c = Config::resolve(toml::from_str(text).expect("parse"), &flags).expect("resolve");
        assert!(c.dhcpv6.ia_na);
        assert_eq!(c.dhcpv6.default_na_pool.as_deref(), Some("na"));
        assert_eq!(
            (c.dhcpv6.na_pools[0].prefix.as_str(), c.dhcpv6.na_pools[0].length),
            ("2001:db8:400::/64", 128)
        );
        for bad in [
            text.replace("default_ipv6_na_pool = \"na\"", "default_ipv6_na_pool = \"x\""),
            text.replace("name = \"na\"", "name = \"v6\""),
            text.replace("2001:db8:400::/64", "2001:db8:400::1/64"),
            format!("{text}length = 64\n"),
        ] {
            // Refused when parsed (an unknown key) or when resolved.
            if let Ok(f) = toml::from_str::<File>(&bad) {
                assert!(Config::resolve(f, &flags).is_err(), "{bad}");
            }
        }
    }
}
