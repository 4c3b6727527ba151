//! lnsctl: operator's tool for an LNS instance.
//!
//! `tunnel`, `session` and `show stats` ask the instance's control plane
//! over its Unix control socket (protocol in `lns_controlplane::ctl`).
//!
//! `static-session` writes sessions straight into the pinned maps of an
//! instance's data plane, without the control plane: how the fast path is
//! tested before PPP is up, and a debugging tool afterwards. `show-xdp`
//! reads the data plane's counters from the same maps.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Parser, Subcommand};
use lns_bpf::abi::{Session, SessionKey, SessionState};
use lns_controlplane::ctl::{self, Request, Response};
use lns_controlplane::daemon::config::default_control_socket;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(version, about = "Operate an LNS instance")]
struct Cli {
    /// Instance whose maps to use (/sys/fs/bpf/lns/<instance>).
    #[arg(long, default_value = "default", global = true)]
    instance: String,
    /// Pin directory, overriding the one derived from --instance.
    #[arg(long, value_name = "DIR", global = true)]
    bpf_pin_dir: Option<PathBuf>,
    /// Control socket of the control plane, overriding the one derived
    /// from --instance (/run/lns/<instance>.sock).
    #[arg(long, value_name = "PATH", global = true)]
    control_socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Sessions written straight into the data plane's maps.
    #[command(subcommand, name = "static-session")]
    StaticSession(StaticCmd),
    /// The data plane's counters: XDP verdicts by reason.
    #[command(name = "show-xdp")]
    ShowXdp,
    /// L2TP tunnels of the control plane.
    #[command(subcommand)]
    Tunnel(TunnelCmd),
    /// L2TP sessions of the control plane.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Control-plane state.
    #[command(subcommand)]
    Show(ShowCmd),
    /// RADIUS servers (alive or dead, requests, timeouts, last round
    /// trip), the accounting queue (in memory and spooled on disk) and
    /// dynamic authorization counters.
    Radius,
    /// Read the control plane's configuration file again (as SIGHUP does):
    /// users, peers, limits, pools and timeouts change, sessions stay; a
    /// file with an error changes nothing and the answer says what is wrong.
    Reload,
    /// End every session (StopCCN to every tunnel, Accounting Stops) and
    /// stop the control plane, even one started with --keep-sessions.
    Shutdown,
}

#[derive(Subcommand, Debug)]
enum TunnelCmd {
    /// Every tunnel with its peer, state and session count.
    List,
    /// Close a tunnel with StopCCN; its sessions go with it.
    Kill {
        /// Our tunnel id.
        id: u16,
    },
}

#[derive(Subcommand, Debug)]
enum SessionCmd {
    /// Every session with its tunnel, peer and data-plane slot.
    List,
    /// One session in full: addresses, counters, rate limits and what
    /// they dropped.
    Show {
        /// Our session id.
        id: u16,
        /// The tunnel it is in, when the id exists in more than one.
        #[arg(long)]
        tunnel: Option<u16>,
    },
    /// Disconnect a session with CDN.
    Kill {
        /// Our session id.
        id: u16,
        /// The tunnel it is in, when the id exists in more than one.
        #[arg(long)]
        tunnel: Option<u16>,
    },
}

#[derive(Subcommand, Debug)]
enum ShowCmd {
    /// Counters of the control plane (and of the data plane, if any).
    Stats,
}

#[derive(Subcommand, Debug)]
enum StaticCmd {
    /// Install a forwarding session.
    Add(AddArgs),
    /// Remove the session with these local ids.
    Del {
        #[arg(long)]
        tunnel: u16,
        #[arg(long)]
        session: u16,
    },
    /// Every installed session with its counters.
    List,
}

#[derive(ClapArgs, Debug)]
struct AddArgs {
    /// Our (LNS-assigned) tunnel id.
    #[arg(long)]
    local_tunnel: u16,
    /// Our (LNS-assigned) session id.
    #[arg(long)]
    local_session: u16,
    /// The LAC's tunnel id.
    #[arg(long)]
    peer_tunnel: u16,
    /// The LAC's session id.
    #[arg(long)]
    peer_session: u16,
    /// LAC address and UDP port.
    #[arg(long, value_name = "ADDR:PORT")]
    lac: SocketAddr,
    /// LNS address and UDP port of the tunnel.
    #[arg(long, value_name = "ADDR:PORT")]
    local: SocketAddr,
    /// Subscriber IPv4 address.
    #[arg(long)]
    ipv4: Option<Ipv4Addr>,
    /// Subscriber IPv6 prefix (SLAAC), e.g. 2001:db8:1::/64.
    #[arg(long, value_name = "PREFIX/LEN")]
    ipv6_prefix: Option<String>,
    /// Delegated IPv6 prefix, e.g. 2001:db8:2::/56.
    #[arg(long, value_name = "PREFIX/LEN")]
    delegated_prefix: Option<String>,
    /// PPP MTU toward the subscriber.
    #[arg(long, default_value_t = 1460)]
    mtu: u16,
    /// Send Ns in data messages (the LAC asked for sequencing).
    #[arg(long)]
    sequencing: bool,
    /// Send the Length field in data messages.
    #[arg(long)]
    length_bit: bool,
    /// Compute the outer UDP checksum over IPv4 (always done over IPv6).
    #[arg(long)]
    udp_checksum: bool,
    /// Omit PPP Address/Control (ACFC).
    #[arg(long)]
    acfc: bool,
    /// One-byte PPP protocol field (PFC).
    #[arg(long)]
    pfc: bool,
    /// Session slot; by default its direct slot ((tunnel & bank mask) << 16 |
    /// session), where the program finds it fastest, else the first free one.
    #[arg(long)]
    index: Option<u32>,
}

fn parse_prefix(s: &str) -> Result<(Ipv6Addr, u8)> {
    let (a, l) = s.split_once('/').context("prefix needs /LEN")?;
    let len: u8 = l.parse()?;
    if len > 128 {
        bail!("prefix length {len} > 128");
    }
    Ok((a.parse()?, len))
}

#[derive(Serialize)]
struct Row {
    index: u32,
    local_tunnel: u16,
    local_session: u16,
    peer_tunnel: u16,
    peer_session: u16,
    lac: String,
    local: String,
    state: String,
    ipv4: Option<Ipv4Addr>,
    ipv6_prefix: Option<String>,
    delegated_prefix: Option<String>,
    mtu: u16,
    /// Who checks its upstream data against it: "worker" for a fast slot
    /// (`lns_fast_slots`), else "xdp".
    checks: &'static str,
    /// Its own addresses whose downstream frames the program sends to the
    /// workers by pool unit (`lns_pool_bits`, `lns-dataplane --pool`).
    pool_units: Vec<String>,
    up_packets: u64,
    up_bytes: u64,
    down_packets: u64,
    down_bytes: u64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let request = match &cli.cmd {
        Cmd::Tunnel(TunnelCmd::List) => Some(Request::TunnelList),
        Cmd::Tunnel(TunnelCmd::Kill { id }) => Some(Request::TunnelKill { tunnel_id: *id }),
        Cmd::Session(SessionCmd::List | SessionCmd::Show { .. }) => Some(Request::SessionList),
        Cmd::Session(SessionCmd::Kill { id, tunnel }) => {
            Some(Request::SessionKill { session_id: *id, tunnel_id: *tunnel })
        }
        Cmd::Show(ShowCmd::Stats) => Some(Request::ShowStats),
        Cmd::Radius => Some(Request::Radius),
        Cmd::Reload => Some(Request::Reload),
        Cmd::Shutdown => Some(Request::Shutdown),
        Cmd::StaticSession(_) | Cmd::ShowXdp => None,
    };
    if let Some(req) = request {
        let path = cli.control_socket.clone().unwrap_or_else(|| default_control_socket(&cli.instance));
        let answer = ctl::request(&path, &req)?;
        if let (Cmd::Session(SessionCmd::Show { id, tunnel }), Response::Sessions { sessions }) =
            (&cli.cmd, &answer)
        {
            return show_session(sessions, *id, *tunnel, cli.json);
        }
        return print_answer(answer, cli.json);
    }
    let dir = cli.bpf_pin_dir.clone().unwrap_or_else(|| lns_bpf::default_pin_dir(&cli.instance));
    let maps = lns_bpf::open_pinned(&dir).with_context(|| {
        format!("opening the maps of the data plane in {} (is lns-dataplane running?)", dir.display())
    })?;
    match cli.cmd {
        Cmd::StaticSession(StaticCmd::Add(a)) => {
            let key = SessionKey { tunnel_id: a.local_tunnel, session_id: a.local_session };
            if maps.find_session(key)?.is_some() {
                bail!("tunnel {} session {} is already installed", a.local_tunnel, a.local_session);
            }
            let mut s = Session {
                state: SessionState::Forwarding as u32,
                local_tunnel_id: a.local_tunnel,
                local_session_id: a.local_session,
                peer_tunnel_id: a.peer_tunnel,
                peer_session_id: a.peer_session,
                mtu: a.mtu,
                ipv4: a.ipv4.map(|v| v.octets()).unwrap_or_default(),
                ..Default::default()
            };
            s.set_peer(a.lac);
            s.set_local(a.local);
            if a.lac.is_ipv4() != a.local.is_ipv4() {
                bail!("--lac and --local must be of the same address family");
            }
            if let Some(p) = &a.ipv6_prefix {
                let (p, l) = parse_prefix(p)?;
                s.ipv6_prefix = p.octets();
                s.ipv6_prefix_len = l;
            }
            if let Some(p) = &a.delegated_prefix {
                let (p, l) = parse_prefix(p)?;
                s.delegated_prefix = p.octets();
                s.delegated_prefix_len = l;
            }
            for (on, bit) in [
                (a.sequencing, Session::SEQUENCING),
                (a.length_bit, Session::LENGTH),
                (!a.udp_checksum, Session::UDP_CSUM_ZERO),
                (a.acfc, Session::ACFC),
                (a.pfc, Session::PFC),
            ] {
                if on {
                    s.flags |= bit;
                }
            }
            let index = match a.index {
                Some(i) => i,
                // Its direct slot when free: the program finds it there
                // without a hash lookup.
                None if maps.free_direct_slot(s.key())?.is_some() => {
                    maps.free_direct_slot(s.key())?.context("direct slot")?
                }
                None => {
                    let table = maps.mmap_sessions()?;
                    (0..table.len())
                        .find(|i| table.get(*i).is_some_and(|e| e.state == SessionState::Free as u32))
                        .context("the session table is full")? as u32
                }
            };
            let old = maps.read_session(index)?;
            s.generation = old.generation.wrapping_add(1);
            maps.install_session(index, &s)?;
            if cli.json {
                println!("{}", serde_json::json!({ "index": index }));
            } else {
                println!("installed tunnel {} session {} in slot {index}", a.local_tunnel, a.local_session);
            }
        }
        Cmd::StaticSession(StaticCmd::Del { tunnel, session }) => {
            let key = SessionKey { tunnel_id: tunnel, session_id: session };
            let Some(index) = maps.find_session(key)? else {
                bail!("no session with tunnel {tunnel} session {session}");
            };
            maps.remove_session(index)?;
            if !cli.json {
                println!("removed tunnel {tunnel} session {session} from slot {index}");
            }
        }
        Cmd::StaticSession(StaticCmd::List) => {
            let mut rows = Vec::new();
            for (index, s) in maps.sessions()? {
                let st = maps.session_stats(index)?;
                rows.push(Row {
                    index,
                    local_tunnel: s.local_tunnel_id,
                    local_session: s.local_session_id,
                    peer_tunnel: s.peer_tunnel_id,
                    peer_session: s.peer_session_id,
                    lac: s.peer().to_string(),
                    local: s.local().to_string(),
                    state: format!("{:?}", s.session_state().unwrap_or_default()).to_lowercase(),
                    ipv4: s.subscriber_ipv4(),
                    ipv6_prefix: s.subscriber_ipv6_prefix().map(|(p, l)| format!("{p}/{l}")),
                    delegated_prefix: s.subscriber_delegated_prefix().map(|(p, l)| format!("{p}/{l}")),
                    mtu: s.mtu,
                    checks: if maps.fast_slot(index) { "worker" } else { "xdp" },
                    pool_units: [
                        s.subscriber_ipv4().map(|a| (IpAddr::V4(a), 32)),
                        s.subscriber_ipv6_prefix().map(|(a, l)| (IpAddr::V6(a), l)),
                        s.subscriber_delegated_prefix().map(|(a, l)| (IpAddr::V6(a), l)),
                    ]
                    .into_iter()
                    .flatten()
                    .filter(|&(a, l)| maps.pool_unit(a, l).is_some_and(|u| maps.pool_unit_fast(u)))
                    .map(|(a, l)| if l == 32 { a.to_string() } else { format!("{a}/{l}") })
                    .collect(),
                    up_packets: st.up_packets,
                    up_bytes: st.up_bytes,
                    down_packets: st.down_packets,
                    down_bytes: st.down_bytes,
                });
            }
            if cli.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:>6} {:>6}/{:<6} {:>6}/{:<6} {:<22} {:<16} {:<11} {:<6} {:>5} {:>10} {:>12} {:>10} {:>12}",
                    "slot",
                    "tun",
                    "sess",
                    "ptun",
                    "psess",
                    "lac",
                    "ipv4",
                    "state",
                    "checks",
                    "units",
                    "up_pkts",
                    "up_bytes",
                    "down_pkts",
                    "down_bytes"
                );
                for r in rows {
                    println!(
                        "{:>6} {:>6}/{:<6} {:>6}/{:<6} {:<22} {:<16} {:<11} {:<6} {:>5} {:>10} {:>12} {:>10} {:>12}",
                        r.index,
                        r.local_tunnel,
                        r.local_session,
                        r.peer_tunnel,
                        r.peer_session,
                        r.lac,
                        r.ipv4.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                        r.state,
                        r.checks,
                        r.pool_units.len(),
                        r.up_packets,
                        r.up_bytes,
                        r.down_packets,
                        r.down_bytes
                    );
                }
            }
        }
        Cmd::Tunnel(_) | Cmd::Session(_) | Cmd::Show(_) | Cmd::Radius | Cmd::Reload | Cmd::Shutdown => {}
        Cmd::ShowXdp => {
            let c = maps.counters()?;
            if cli.json {
                println!("{}", serde_json::to_string(&c.0)?);
            } else {
                for (k, v) in &c.0 {
                    println!("{k:<32} {v}");
                }
            }
        }
    }
    Ok(())
}

/// `session show`: the row of session `id` as `field value` lines (or
/// its JSON object).
fn show_session(sessions: &[ctl::SessionRow], id: u16, tunnel: Option<u16>, json: bool) -> Result<()> {
    let mut found = sessions.iter().filter(|s| s.session_id == id && tunnel.is_none_or(|t| s.tunnel_id == t));
    let Some(row) = found.next() else { bail!("no session {id}") };
    if found.next().is_some() {
        bail!("session id {id} exists in several tunnels: give --tunnel");
    }
    let value = serde_json::to_value(row)?;
    if json {
        println!("{value}");
        return Ok(());
    }
    let rate = |bps: u64| if bps == 0 { "none".to_string() } else { format!("{bps} bit/s") };
    println!("{:<24} {}", "rate_down", rate(row.rate_down));
    println!("{:<24} {}", "rate_up", rate(row.rate_up));
    let p = &row.policed;
    println!("{:<24} {} packets, {} bytes", "policed_down", p.down_packets, p.down_bytes);
    println!("{:<24} {} packets, {} bytes", "policed_up", p.up_packets, p.up_bytes);
    if let serde_json::Value::Object(fields) = value {
        for (k, v) in
            fields.iter().filter(|(k, _)| !matches!(k.as_str(), "rate_down" | "rate_up" | "policed"))
        {
            let v = match v {
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k:<24} {v}");
        }
    }
    Ok(())
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Prints the control plane's answer; an error answer is an error exit.
fn print_answer(answer: Response, json: bool) -> Result<()> {
    if let Response::Error { message } = &answer {
        bail!("{message}");
    }
    if json {
        let v = match &answer {
            Response::Tunnels { tunnels } => serde_json::to_value(tunnels)?,
            Response::Sessions { sessions } => serde_json::to_value(sessions)?,
            Response::Stats { stats } => serde_json::to_value(stats)?,
            Response::Radius { radius } => serde_json::to_value(radius)?,
            other => serde_json::to_value(other)?,
        };
        println!("{v}");
        return Ok(());
    }
    match answer {
        Response::Tunnels { tunnels } => {
            println!(
                "{:>6} {:>6} {:<22} {:<22} {:<16} {:<14} {:>8} {:>8} {:>8} {:>8} {:>6}",
                "tunnel", "peer", "lac", "local", "host", "state", "sessions", "age", "srtt", "rto", "rexmit"
            );
            for t in tunnels {
                let srtt = t.srtt_ms.map_or_else(|| "-".to_string(), |ms| format!("{ms:.0}ms"));
                println!(
                    "{:>6} {:>6} {:<22} {:<22} {:<16} {:<14} {:>8} {:>7}s {:>8} {:>6.0}ms {:>6}",
                    t.tunnel_id,
                    t.peer_tunnel_id,
                    t.peer,
                    t.local,
                    t.peer_host_name,
                    t.state,
                    t.sessions,
                    t.age_secs,
                    srtt,
                    t.rto_ms,
                    t.retransmissions
                );
            }
        }
        Response::Sessions { sessions } => {
            println!(
                "{:>6}/{:<6} {:>6}/{:<6} {:<22} {:<13} {:>6} {:<11} {:<4} {:<16} {:>8} {:>8}",
                "tun",
                "sess",
                "ptun",
                "psess",
                "lac",
                "state",
                "slot",
                "dataplane",
                "seq",
                "calling",
                "ppp_rx",
                "age"
            );
            for s in sessions {
                println!(
                    "{:>6}/{:<6} {:>6}/{:<6} {:<22} {:<13} {:>6} {:<11} {:<4} {:<16} {:>8} {:>7}s",
                    s.tunnel_id,
                    s.session_id,
                    s.peer_tunnel_id,
                    s.peer_session_id,
                    s.peer,
                    s.state,
                    opt(s.slot),
                    opt(s.dataplane_state),
                    if s.sequencing { "yes" } else { "no" },
                    opt(s.calling_number),
                    s.ppp_frames_rx,
                    s.age_secs
                );
            }
        }
        Response::Reloaded { summary } => println!("reloaded: {summary}"),
        Response::ShuttingDown { tunnels, sessions } => {
            println!("shutting down: StopCCN to {tunnels} tunnels, {sessions} sessions ending")
        }
        Response::Killed { tunnel_id, session_id: None } => println!("tunnel {tunnel_id}: StopCCN sent"),
        Response::Killed { tunnel_id, session_id: Some(s) } => {
            println!("tunnel {tunnel_id} session {s}: CDN sent")
        }
        Response::Stats { stats } => {
            let v = serde_json::to_value(&stats)?;
            if let serde_json::Value::Object(m) = v {
                for (k, v) in m {
                    match v {
                        serde_json::Value::Object(inner) => {
                            for (ik, iv) in inner {
                                println!("{:<40} {iv}", format!("{k}.{ik}"));
                            }
                        }
                        serde_json::Value::Null => {}
                        v => println!("{k:<40} {v}"),
                    }
                }
            }
        }
        Response::Radius { radius } => print_radius(&radius),
        Response::Error { .. } => {}
    }
    Ok(())
}

fn print_radius(r: &ctl::RadiusStatus) {
    if !r.enabled {
        println!("RADIUS is not configured");
        return;
    }
    // "no m-a" and "bad m-a": replies dropped for a missing or a wrong
    // Message-Authenticator (part of "bad"); "m-a": what the server's
    // require_message_authenticator holds its replies to now.
    println!(
        "{:<24} {:<15} {:<6} {:>9} {:>8} {:>9} {:>9} {:>6} {:>7} {:>7} {:<13} {:>10}",
        "server",
        "service",
        "state",
        "requests",
        "retrans",
        "replies",
        "timeouts",
        "bad",
        "no m-a",
        "bad m-a",
        "m-a",
        "last rtt"
    );
    for s in &r.servers {
        println!(
            "{:<24} {:<15} {:<6} {:>9} {:>8} {:>9} {:>9} {:>6} {:>7} {:>7} {:<13} {:>10}",
            s.address,
            s.service,
            s.state,
            s.requests,
            s.retransmissions,
            s.replies,
            s.timeouts,
            s.bad_replies,
            s.missing_message_authenticator,
            s.bad_message_authenticator,
            if s.message_authenticator.is_empty() { "-" } else { &s.message_authenticator },
            s.last_rtt_ms.map(|m| format!("{m:.2} ms")).unwrap_or_else(|| "-".into())
        );
    }
    if r.servers.iter().any(|s| s.missing_message_authenticator > 0) {
        println!(
            "replies without Message-Authenticator were dropped: the server must sign them \
             (or, at the risk of Blast-RADIUS, CVE-2024-3596, require_message_authenticator = false)"
        );
    }
    if let Some(a) = &r.accounting {
        println!(
            "accounting: {} in flight, {} queued in memory, {} Stop records spooled in {} segments ({})",
            a.in_flight, a.queued_memory, a.spooled_records, a.spool_segments, a.spool_dir
        );
        println!(
            "            {} sent, {} acknowledged, {} unanswered, {} dropped, {} spool errors",
            a.sent, a.acknowledged, a.no_answer, a.dropped, a.spool_errors
        );
    }
    if let Some(d) = &r.dynauth {
        println!(
            "dynauth {}: disconnect {} ack {} nak; coa {} ack {} nak; {} duplicates; dropped: {} unknown client, {} bad authenticator, {} malformed, {} stale",
            d.listen,
            d.disconnect_ack,
            d.disconnect_nak,
            d.coa_ack,
            d.coa_nak,
            d.duplicates,
            d.unknown_client,
            d.bad_authenticator,
            d.malformed,
            d.stale
        );
    }
}
