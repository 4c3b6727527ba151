//! `lns-dataplane` configuration: the node's one TOML file, the one
//! `lns-controlplane --config` reads, overridden by flags.
//!
//! The data plane reads its own section, `[dataplane]`, four keys of the
//! top level it shares with the control plane (`instance`, `bpf_pin_dir`,
//! `listen`, whose port is L2TP's, and `log_format`, which `[dataplane]`
//! may override), and the subscriber pools,
//! `[[pool]]` and `[[ipv6_pool]]`, which it declares to the program as
//! pool units without a second declaration. Everything else in the file
//! is the control plane's, and the control plane refuses what it does not
//! know. An unknown key in `[dataplane]`, `[[pool]]` or `[[ipv6_pool]]` is
//! an error that names the key and its line.
//!
//! ```toml
//! instance = "lns1"             # pinned maps in /sys/fs/bpf/lns/<instance>
//! # bpf_pin_dir = "/sys/fs/bpf/lns/lns1"
//! listen = "192.0.2.1:1701"     # the data plane takes the port
//! # log_format = "json"         # both processes' (unless [dataplane] has its own)
//!
//! [dataplane]
//! access_if = "eth1"            # LAC-facing: L2TP arrives here
//! core_if = "eth2"              # Internet-facing (default: access_if, one-arm)
//! queues = "all"                # or a number: queues 0..N
//! cores = "2-5"                 # or [2, 3, 4, 5]: one per queue, in order
//! xdp_mode = "native"           # or "skb"
//! bind = "auto"                 # "copy", "zerocopy", or auto: zero-copy, else copy
//! frames = 8192                 # UMEM frames (2 KiB) per worker
//! ring_size = 2048              # entries of each AF_XDP ring
//! batch = 64
//! busy_poll = false
//! # l2tp_port = 1701            # default: the port of `listen`, else 1701
//! # tunnel_ports = "20000-20999"  # default: the file's top-level tunnel_ports
//! max_sessions = 65536
//! mss_clamp = "auto"            # a number, or "off"
//! pass_unknown_sessions = false
//! session_checks = "worker"     # or "xdp"
//! nh_cache_ms = 1000            # next-hop cache lifetime (0: look up every frame)
//! pool_units = 1048576          # units all pools may hold together
//! shape_ms = 0                  # downstream: queue up to this long over a rate limit (0: drop)
//! stats_interval = 10           # seconds; 0 for none
//! json = false
//! unpin_on_exit = false
//! keep_attached = true          # XDP stays on the interfaces across restarts
//! # metrics_listen = "127.0.0.1:9702"   # Prometheus /metrics
//! log_format = "text"           # or "json": one object per line on stderr
//!
//! [[pool]]                      # IPv4: the ranges, covered by prefixes of /32 units
//! name = "default"
//! ranges = ["198.51.100.0/24", "203.0.113.10-203.0.113.20"]
//!
//! [[ipv6_pool]]                 # IPv6: the prefix, in units of `length`
//! name = "default"
//! prefix = "2001:db8:100::/48"
//! length = 64
//! ```
//!
//! A `--pool` flag replaces the pools of the file; so does every other
//! flag its key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use lns_bpf::abi::{PoolSpec, DEFAULT_POOL_UNITS, MAX_POOLS};
use serde::Deserialize;

use crate::packet::MssClamp;
use crate::ring::BindMode;
use crate::supervisor::Options;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The file does not parse, or holds a key or value the data plane
    /// does not know; `line` is 1-based.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse { path: PathBuf, line: Option<usize>, message: String },
    #[error("finding the queues of {ifname}: {source}")]
    Queues { ifname: String, source: anyhow::Error },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeArg {
    /// In the driver.
    Native,
    /// Generic XDP (works on any interface, slower).
    Skb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindArg {
    Copy,
    Zerocopy,
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionChecksArg {
    /// The XDP program reads the session of every L2TP data frame and
    /// checks its ids, LAC, state and the subscriber's source itself.
    Xdp,
    /// For sessions with no framed routes at their direct slot (the
    /// control plane's), the workers make those checks on the session they
    /// read anyway, and the program reads only a bitmap: with many
    /// subscribers the session table is not in the cache, and a worker
    /// prefetches a whole batch's sessions where the program would wait for
    /// each frame's.
    Worker,
}

/// How the data plane writes its messages to stderr (the statistics on
/// stdout keep their own `--json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `lns-dataplane: message`, for people.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields.message, target),
    /// as lns-controlplane writes them, for log shippers.
    Json,
}

/// Queues to serve: every rx queue of the access interface, or 0..N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queues {
    All,
    Count(u32),
}

impl FromStr for Queues {
    type Err = String;

    fn from_str(s: &str) -> Result<Queues, String> {
        match s {
            "all" => Ok(Queues::All),
            n => n.parse().map(Queues::Count).map_err(|_| format!("{s:?}: a number of queues or \"all\"")),
        }
    }
}

impl<'de> Deserialize<'de> for Queues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Queues, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Queues::Count(n)),
            Raw::Name(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `"0,1"`, `"2-5"` or, in the file, `[2, 3, 4, 5]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cores(pub Vec<usize>);

impl FromStr for Cores {
    type Err = String;

    fn from_str(spec: &str) -> Result<Cores, String> {
        let bad =
            |part: &str| format!("bad core list {spec:?} at {part:?}: expected e.g. \"0,1\" or \"2-5\"");
        let mut out = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a.trim().parse().map_err(|_| bad(part))?;
                    let b: usize = b.trim().parse().map_err(|_| bad(part))?;
                    if b < a {
                        return Err(bad(part));
                    }
                    out.extend(a..=b);
                }
                None => out.push(part.parse().map_err(|_| bad(part))?),
            }
        }
        Ok(Cores(out))
    }
}

impl<'de> Deserialize<'de> for Cores {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cores, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<usize>),
            Spec(String),
        }
        match Raw::deserialize(d)? {
            Raw::List(v) => Ok(Cores(v)),
            Raw::Spec(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `--mss-clamp` / `mss_clamp`: `auto`, `off` or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mss(pub MssClamp);

impl FromStr for Mss {
    type Err = String;

    fn from_str(s: &str) -> Result<Mss, String> {
        match s {
            "auto" => Ok(Mss(MssClamp::Auto)),
            "off" => Ok(Mss(MssClamp::Off)),
            n => n
                .parse()
                .map(|n| Mss(MssClamp::Fixed(n)))
                .map_err(|_| format!("{s:?}: auto, off or a number")),
        }
    }
}

impl<'de> Deserialize<'de> for Mss {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mss, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Fixed(u16),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Fixed(n) => Ok(Mss(MssClamp::Fixed(n))),
            Raw::Name(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The LNS's AF_XDP fast path.
///
/// Attaches the XDP steering program to the access (LAC-facing) and core
/// interfaces, pins its maps under /sys/fs/bpf/lns/<instance> for the control
/// plane and lnsctl, and runs one worker per queue, each pinned to a core.
/// SIGINT or SIGTERM stops it: the program leaves the interfaces, unless
/// --keep-attached keeps it there for the next start (a restart without
/// loss of service); `lns-dataplane --detach` then takes it off.
///
/// With --config, it reads the node's configuration file, the one
/// lns-controlplane reads: its [dataplane] section (a key per flag below,
/// named with underscores), instance, bpf_pin_dir and the port of listen,
/// and the subscriber pools from [[pool]] and [[ipv6_pool]]. Flags override
/// the file.
#[derive(Parser, Debug, Clone, Default)]
#[command(version)]
pub struct Flags {
    /// The node's TOML configuration file, shared with lns-controlplane.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// LAC-facing interface: L2TP arrives here (required, here or in the
    /// file).
    #[arg(long, value_name = "IF")]
    pub access_if: Option<String>,
    /// Internet-facing interface [default: the access interface, one-arm].
    #[arg(long, value_name = "IF")]
    pub core_if: Option<String>,
    /// Queues to serve, a number from queue 0 or "all" (every rx queue of
    /// the access interface, as the kernel of this network namespace
    /// reports them) [default: all].
    #[arg(long, value_name = "N|all")]
    pub queues: Option<Queues>,
    /// CPU cores to pin workers to, e.g. "0,1" or "2-5", one per queue in
    /// order [default: cores 0.. in order].
    #[arg(long, value_name = "LIST")]
    pub cores: Option<Cores>,
    /// XDP attach mode [default: native].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeArg>,
    /// AF_XDP bind mode; auto tries zero-copy, then copy [default: auto].
    #[arg(long, value_enum)]
    pub bind: Option<BindArg>,
    /// UMEM frames per worker (2 KiB each), shared by its sockets [default:
    /// 8192].
    #[arg(long)]
    pub frames: Option<u32>,
    /// Entries of each AF_XDP ring (power of two) [default: 2048].
    #[arg(long)]
    pub ring_size: Option<u32>,
    /// Frames taken from a ring per batch [default: 64].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Spin instead of sleeping in poll(2) when idle (lower latency, a full
    /// core per worker); --busy-poll=false overrides the file.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub busy_poll: Option<bool>,
    /// UDP port of L2TP [default: the port of the file's listen, else 1701].
    #[arg(long)]
    pub l2tp_port: Option<u16>,
    /// The control plane's own ports of tunnels, FIRST-LAST: L2TP data
    /// arrives on these too [default: the file's tunnel_ports, else none].
    #[arg(long, value_name = "FIRST-LAST", value_parser = lns_bpf::parse_port_range)]
    pub tunnel_ports: Option<(u16, u16)>,
    /// Instance name: maps are pinned under /sys/fs/bpf/lns/<instance>
    /// [default: default].
    #[arg(long)]
    pub instance: Option<String>,
    /// Pin directory, overriding the one derived from --instance. It must
    /// be on a BPF filesystem (bpffs) the control plane sees too.
    #[arg(long, value_name = "DIR")]
    pub bpf_pin_dir: Option<PathBuf>,
    /// Size of the session table [default: 65536].
    #[arg(long)]
    pub max_sessions: Option<u32>,
    /// TCP MSS clamping on SYN in both directions: "auto" (session MTU minus
    /// 40, or 60 for IPv6), a number, or "off" [default: auto].
    #[arg(long, value_name = "auto|N|off")]
    pub mss_clamp: Option<Mss>,
    /// Pass data of unknown sessions to the stack instead of dropping it.
    /// (With --session-checks worker, data whose ids are unknown but fall on
    /// a forwarding session's slot is dropped by the worker.)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pass_unknown_sessions: Option<bool>,
    /// Who checks upstream L2TP data against its session: the XDP program
    /// for every frame, or the workers for the sessions they can check.
    /// Drops by the workers are counted in their drop counters
    /// (unknown_session, peer_mismatch, spoofed), the program's in its own
    /// [default: worker].
    #[arg(long, value_enum)]
    pub session_checks: Option<SessionChecksArg>,
    /// Milliseconds a next hop found by bpf_fib_lookup is reused by the XDP
    /// program (per CPU and destination); route and neighbour changes take
    /// effect within this time. 0 looks up every frame [default: 1000].
    #[arg(long)]
    pub nh_cache_ms: Option<u32>,
    /// A subscriber pool, PREFIX/LEN (IPv4: a /32 per subscriber; IPv6: a
    /// /64) or PREFIX/LEN,UNIT (IPv6 delegated prefixes of length UNIT);
    /// repeat for up to 8. Downstream, a forwarding session's own address
    /// in a pool goes to the workers by its prefix alone (the program reads
    /// no subscriber table for it, which costs a cache miss per frame with
    /// many subscribers); the workers find the session and the next hop
    /// toward its LAC. By default the pools are the file's [[pool]] and
    /// [[ipv6_pool]]; --pool replaces them. With --session-checks xdp,
    /// pools are not used.
    #[arg(long = "pool", value_name = "PREFIX/LEN[,UNIT]")]
    pub pools: Vec<PoolSpec>,
    /// Units (addresses or prefixes) all pools may hold together: 1 bit of
    /// lns_pool_bits and 4 bytes of lns_pool_sessions each [default:
    /// 1048576].
    #[arg(long)]
    pub pool_units: Option<u32>,
    /// Seconds between statistics lines on stdout; 0 for none [default: 10].
    #[arg(long)]
    pub stats_interval: Option<u64>,
    /// Write statistics as JSON lines instead of text.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub json: Option<bool>,
    /// Remove the pinned maps on exit (by default they stay, so a restart
    /// keeps the control plane's sessions).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub unpin_on_exit: Option<bool>,
    /// Keep the XDP program attached when this process stops or dies: its
    /// BPF links are pinned in the pin directory (lns_link_<interface>)
    /// and the next start swaps its own program in (BPF_LINK_UPDATE), so
    /// the interfaces are never without one. Meanwhile the program passes
    /// what it would give the workers to the kernel (pass_no_socket), and
    /// lns-controlplane's slow path carries it. Without it (or with
    /// --unpin-on-exit) the program leaves the interfaces with the process.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub keep_attached: Option<bool>,
    /// Take the kept XDP program off the interfaces (remove the links
    /// --keep-attached pinned in the pin directory) and exit: the stop
    /// after which no restart follows. Needs only the pin directory
    /// (--config, --instance or --bpf-pin-dir).
    #[arg(long)]
    pub detach: bool,
    /// Downstream shaping: a frame over its session's rate limit waits up
    /// to this many milliseconds for the session's bucket (a queue of
    /// that many ms at the rate per session, a quarter of the UMEM frames
    /// per worker at most), and is dropped beyond; 0 drops every frame
    /// over the limit (policing). Upstream is always policed [default: 0].
    #[arg(long, value_name = "MS")]
    pub shape_ms: Option<u32>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (lns_xdp_*,
    /// lns_worker_*) [default: none].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Messages on stderr as text, or as one JSON object per line for log
    /// shippers [default: the file's, else text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The file as the data plane reads it. No `deny_unknown_fields` here: the
/// rest of the top level is the control plane's, which checks it.
#[derive(Deserialize, Debug, Default)]
pub struct File {
    pub instance: Option<String>,
    pub bpf_pin_dir: Option<PathBuf>,
    /// The control plane's L2TP address: the data plane takes its port.
    pub listen: Option<SocketAddr>,
    /// The control plane's own ports of tunnels (`FIRST-LAST`).
    pub tunnel_ports: Option<String>,
    /// The node's log format, unless `[dataplane]` has its own.
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub dataplane: DataplaneFile,
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolEntry>,
    #[serde(default, rename = "ipv6_pool")]
    pub ipv6_pools: Vec<Ipv6PoolEntry>,
}

/// `[dataplane]`: a key per flag.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct DataplaneFile {
    pub access_if: Option<String>,
    pub core_if: Option<String>,
    pub queues: Option<Queues>,
    pub cores: Option<Cores>,
    pub xdp_mode: Option<XdpModeArg>,
    pub bind: Option<BindArg>,
    pub frames: Option<u32>,
    pub ring_size: Option<u32>,
    pub batch: Option<usize>,
    pub busy_poll: Option<bool>,
    pub l2tp_port: Option<u16>,
    pub tunnel_ports: Option<String>,
    pub max_sessions: Option<u32>,
    pub mss_clamp: Option<Mss>,
    pub pass_unknown_sessions: Option<bool>,
    pub session_checks: Option<SessionChecksArg>,
    pub nh_cache_ms: Option<u32>,
    pub pool_units: Option<u32>,
    pub shape_ms: Option<u32>,
    pub stats_interval: Option<u64>,
    pub json: Option<bool>,
    pub unpin_on_exit: Option<bool>,
    pub keep_attached: Option<bool>,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
}

/// `[[pool]]`, as the control plane reads it (`daemon::aaa::PoolEntry`):
/// `ranges` are `a.b.c.d/len` or `a.b.c.d-e.f.g.h`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub name: String,
    pub ranges: Vec<String>,
    /// The pool's default rate limits: the control plane's, which writes
    /// them into the session entries; not read here.
    #[serde(default, rename = "rate_down")]
    pub _rate_down: Option<String>,
    #[serde(default, rename = "rate_up")]
    pub _rate_up: Option<String>,
}

/// `[[ipv6_pool]]`, as the control plane reads it
/// (`daemon::aaa::Ipv6PoolEntry`): `prefix` in prefixes of `length` bits.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Ipv6PoolEntry {
    pub name: String,
    pub prefix: String,
    #[serde(default = "default_ipv6_length")]
    pub length: u8,
}

fn default_ipv6_length() -> u8 {
    64
}

/// Where the pools declared to the program came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolSource {
    None,
    Flags,
    File(PathBuf),
}

/// Everything `main` needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub options: Options,
    pub stats_interval: u64,
    pub json: bool,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub pool_source: PoolSource,
    /// What the operator should know but is no error (a pool the program
    /// cannot take as units).
    pub notes: Vec<String>,
}

/// Parses the file's text; an error names its line, and an unknown key the
/// key and its section.
pub fn parse(text: &str, path: &Path) -> Result<File, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let raw = e.message().trim();
        let message = match raw.strip_prefix("unknown field ") {
            Some(rest) => {
                let (key, expected) = rest.split_once(", ").unwrap_or((rest, ""));
                let section = line.map(|l| section_of(text, l)).unwrap_or_default();
                let expected = if expected.is_empty() { String::new() } else { format!(" ({expected})") };
                format!("unknown key {key} in {section}{expected}")
            }
            None => raw.to_string(),
        };
        ConfigError::Parse { path: path.to_path_buf(), line, message }
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// The table header above `line` (`[dataplane]`, `[[pool]]`), or "the top
/// level".
fn section_of(text: &str, line: usize) -> String {
    let header = |l: &str| {
        let close = if l.starts_with("[[") { "]]" } else { "]" };
        l.find(close).map(|i| l[..i + close.len()].to_string())
    };
    text.lines()
        .take(line)
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .filter_map(header)
        .last()
        .unwrap_or_else(|| "the top level".to_string())
}

/// Reads `--config` (if any) and applies the flags. `rx_queues` counts an
/// interface's rx queues, for `queues = "all"`.
pub fn load(flags: &Flags, rx_queues: &dyn Fn(&str) -> anyhow::Result<u32>) -> Result<Settings, ConfigError> {
    resolve(read(flags)?, flags, rx_queues)
}

/// The `--config` file, or an empty one.
fn read(flags: &Flags) -> Result<File, ConfigError> {
    match &flags.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            parse(&text, path)
        }
        None => Ok(File::default()),
    }
}

/// The pin directory alone (for `--detach`, which needs no interface).
pub fn pin_dir(flags: &Flags) -> Result<PathBuf, ConfigError> {
    resolve_pin_dir(&read(flags)?, flags)
}

fn resolve_pin_dir(file: &File, flags: &Flags) -> Result<PathBuf, ConfigError> {
    let instance = flags.instance.clone().or(file.instance.clone()).unwrap_or_else(|| "default".into());
    if instance.is_empty() || instance.contains('/') {
        return Err(ConfigError::Invalid(format!("instance name {instance:?} must be a plain name")));
    }
    Ok(flags
        .bpf_pin_dir
        .clone()
        .or(file.bpf_pin_dir.clone())
        .unwrap_or_else(|| lns_bpf::default_pin_dir(&instance)))
}

/// The file under the flags: each flag set wins over its key.
pub fn resolve(
    file: File,
    flags: &Flags,
    rx_queues: &dyn Fn(&str) -> anyhow::Result<u32>,
) -> Result<Settings, ConfigError> {
    let pin_dir = resolve_pin_dir(&file, flags)?;
    let d = file.dataplane;
    let access_if = flags.access_if.clone().or(d.access_if).ok_or_else(|| {
        ConfigError::Invalid("no access interface: give --access-if or [dataplane] access_if".into())
    })?;
    let core_if = flags.core_if.clone().or(d.core_if).unwrap_or_else(|| access_if.clone());
    let queues = match flags.queues.or(d.queues).unwrap_or(Queues::All) {
        Queues::All => rx_queues(&access_if)
            .map_err(|source| ConfigError::Queues { ifname: access_if.clone(), source })?,
        Queues::Count(n) => n,
    };
    if queues == 0 {
        return Err(ConfigError::Invalid("queues must be at least 1".into()));
    }
    let cores = match flags.cores.clone().or(d.cores) {
        Some(Cores(c)) => c,
        None => (0..queues as usize).collect(),
    };
    let pool_units = flags.pool_units.or(d.pool_units).unwrap_or(DEFAULT_POOL_UNITS);
    let mut notes = Vec::new();
    let (pools, pool_source) = if !flags.pools.is_empty() {
        (flags.pools.clone(), PoolSource::Flags)
    } else if file.pools.is_empty() && file.ipv6_pools.is_empty() {
        (Vec::new(), PoolSource::None)
    } else {
        let pools = pool_specs(&file.pools, &file.ipv6_pools, &mut notes)?;
        let units: u64 = pools.iter().map(|p| u64::from(p.units())).sum();
        if units > u64::from(pool_units) {
            let list: Vec<String> = pools.iter().map(|p| format!("{p} ({} units)", p.units())).collect();
            return Err(ConfigError::Invalid(format!(
                "the pools of [[pool]] and [[ipv6_pool]] hold {units} units ({}), more than pool_units \
                 ({pool_units}): raise [dataplane] pool_units (or --pool-units), or declare part of them \
                 with --pool",
                list.join(", ")
            )));
        }
        (pools, flags.config.clone().map(PoolSource::File).unwrap_or(PoolSource::None))
    };
    let options = Options {
        access_if,
        core_if,
        queues,
        cores,
        xdp_mode: match flags.xdp_mode.or(d.xdp_mode).unwrap_or(XdpModeArg::Native) {
            XdpModeArg::Native => lns_bpf::XdpMode::Native,
            XdpModeArg::Skb => lns_bpf::XdpMode::Skb,
        },
        bind: match flags.bind.or(d.bind).unwrap_or(BindArg::Auto) {
            BindArg::Copy => BindMode::Copy,
            BindArg::Zerocopy => BindMode::ZeroCopy,
            BindArg::Auto => BindMode::Auto,
        },
        frames: flags.frames.or(d.frames).unwrap_or(8192),
        ring_size: flags.ring_size.or(d.ring_size).unwrap_or(2048),
        batch: flags.batch.or(d.batch).unwrap_or(64),
        busy_poll: flags.busy_poll.or(d.busy_poll).unwrap_or(false),
        l2tp_port: flags.l2tp_port.or(d.l2tp_port).or(file.listen.map(|a| a.port())).unwrap_or(1701),
        tunnel_ports: match flags.tunnel_ports {
            Some(r) => Some(r),
            None => d
                .tunnel_ports
                .as_deref()
                .or(file.tunnel_ports.as_deref())
                .map(lns_bpf::parse_port_range)
                .transpose()
                .map_err(|e| ConfigError::Invalid(format!("tunnel_ports: {e}")))?,
        },
        pin_dir,
        max_sessions: flags.max_sessions.or(d.max_sessions).unwrap_or(65536),
        mss: flags.mss_clamp.or(d.mss_clamp).unwrap_or(Mss(MssClamp::Auto)).0,
        pass_unknown_sessions: flags.pass_unknown_sessions.or(d.pass_unknown_sessions).unwrap_or(false),
        worker_checks: flags.session_checks.or(d.session_checks).unwrap_or(SessionChecksArg::Worker)
            == SessionChecksArg::Worker,
        nh_cache_ms: flags.nh_cache_ms.or(d.nh_cache_ms).unwrap_or(1000),
        unpin_on_exit: flags.unpin_on_exit.or(d.unpin_on_exit).unwrap_or(false),
        keep_attached: flags.keep_attached.or(d.keep_attached).unwrap_or(false),
        pools,
        pool_units,
        shape_ms: flags.shape_ms.or(d.shape_ms).unwrap_or(0).min(1000),
    };
    Ok(Settings {
        options,
        stats_interval: flags.stats_interval.or(d.stats_interval).unwrap_or(10),
        json: flags.json.or(d.json).unwrap_or(false),
        metrics_listen: flags.metrics_listen.or(d.metrics_listen),
        log_format: flags.log_format.or(d.log_format).or(file.log_format).unwrap_or_default(),
        pool_source,
        notes,
    })
}

/// The control plane's pools as the program's: every IPv4 range covered by
/// prefixes of /32 units, each IPv6 pool's prefix in units of its length.
///
/// Covering more than the ranges costs units, never a wrong answer: a unit
/// goes to the workers only while a forwarding session owns exactly it. So
/// when the IPv4 prefixes exceed what the program holds (`MAX_POOLS` with
/// the IPv6 pools), the two nearest are joined into the prefix that holds
/// both until they fit. An IPv6 pool the program cannot take as units (a
/// length past /64, more than 2^24 units) is left to the program's lookups
/// and noted.
pub fn pool_specs(
    v4: &[PoolEntry],
    v6: &[Ipv6PoolEntry],
    notes: &mut Vec<String>,
) -> Result<Vec<PoolSpec>, ConfigError> {
    let mut out = Vec::new();
    for p in v6 {
        let bad = |why: String| ConfigError::Invalid(format!("[[ipv6_pool]] {:?}: {why}", p.name));
        let (addr, len) = p
            .prefix
            .split_once('/')
            .ok_or_else(|| bad(format!("prefix {:?} is not ADDRESS/LEN", p.prefix)))?;
        let addr: Ipv6Addr = addr.trim().parse().map_err(|_| bad(format!("{:?} is not IPv6", p.prefix)))?;
        let len: u8 = len.trim().parse().map_err(|_| bad(format!("bad length in {:?}", p.prefix)))?;
        let spec = PoolSpec { prefix: IpAddr::V6(addr), prefix_len: len, unit_len: p.length };
        match spec.to_pool(0) {
            Ok(_) => out.push(spec),
            Err(why) => notes.push(format!(
                "[[ipv6_pool]] {:?} is not declared as pool units ({why}); its subscribers' packets take \
                 the program's lookups",
                p.name
            )),
        }
    }
    let mut ranges = Vec::new();
    for p in v4 {
        for r in &p.ranges {
            ranges.push(ipv4_range(r).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "[[pool]] {:?}: bad range {r:?}: expected a.b.c.d/len or a.b.c.d-e.f.g.h",
                    p.name
                ))
            })?);
        }
    }
    let budget =
        MAX_POOLS.checked_sub(out.len()).filter(|b| *b > 0 || ranges.is_empty()).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{} pools: the program holds at most {MAX_POOLS}; declare the ones to take with --pool",
                out.len() + usize::from(!ranges.is_empty())
            ))
        })?;
    for (net, len) in cover(&ranges, budget) {
        let spec = PoolSpec { prefix: IpAddr::V4(Ipv4Addr::from(net)), prefix_len: len, unit_len: 32 };
        spec.to_pool(0).map_err(|why| {
            ConfigError::Invalid(format!(
                "the [[pool]] ranges need {spec} to fit in {budget} prefixes: {why}; declare pools with --pool"
            ))
        })?;
        out.push(spec);
    }
    // The program matches pools in order; IPv4 first as the flags' examples.
    out.sort_by_key(|p| p.prefix.is_ipv6());
    Ok(out)
}

/// A `[[pool]]` range as an inclusive interval: `a.b.c.d/len` is the whole
/// block (its network and broadcast addresses are never a session's, so
/// their units stay clear), `a-b` the addresses from a to b.
fn ipv4_range(s: &str) -> Option<(u32, u32)> {
    if let Some((a, len)) = s.split_once('/') {
        let a: Ipv4Addr = a.trim().parse().ok()?;
        let len: u32 = len.trim().parse().ok().filter(|l| *l <= 32)?;
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        let first = u32::from(a) & mask;
        return Some((first, first | !mask));
    }
    let (a, b) = s.split_once('-')?;
    let (a, b): (Ipv4Addr, Ipv4Addr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then(|| (a.into(), b.into()))
}

/// Fewest prefixes covering `ranges` exactly, then joined pairwise (the
/// pair whose common prefix is longest first) until at most `budget`.
fn cover(ranges: &[(u32, u32)], budget: usize) -> Vec<(u32, u8)> {
    let mut r: Vec<(u64, u64)> = ranges.iter().map(|&(a, b)| (u64::from(a), u64::from(b))).collect();
    r.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in r {
        match merged.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut blocks: Vec<(u32, u8)> = Vec::new();
    for (mut a, b) in merged {
        while a <= b {
            // The largest aligned block at a that ends by b.
            let mut size = if a == 0 { 1u64 << 32 } else { 1u64 << a.trailing_zeros().min(32) };
            while a + size - 1 > b {
                size >>= 1;
            }
            blocks.push((a as u32, (32 - size.trailing_zeros()) as u8));
            a += size;
        }
    }
    while blocks.len() > budget.max(1) {
        let common = |x: (u32, u8), y: (u32, u8)| -> (u32, u8) {
            let len = ((x.0 ^ y.0).leading_zeros() as u8).min(x.1).min(y.1);
            (x.0 & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0), len)
        };
        let Some(i) =
            (0..blocks.len() - 1).max_by_key(|&i| (common(blocks[i], blocks[i + 1]).1, usize::MAX - i))
        else {
            break;
        };
        let (net, len) = common(blocks[i], blocks[i + 1]);
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        blocks.retain(|b| b.0 & mask != net || b.1 < len);
        let at = blocks.partition_point(|b| b.0 < net);
        blocks.insert(at, (net, len));
    }
    blocks
}

#[cfg(test)]
mod tests;
