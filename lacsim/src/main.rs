//! lns-lacsim: emulates LACs carrying PPP subscribers against an LNS.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use lns_controlplane::daemon::udp::{Batch, L2tpSocket, Outgoing, RecvBatch, BATCH};
use lns_controlplane::ppp::auth::AuthMethod;
use lns_lacsim::emulator::{Emulator, EmulatorConfig, Ncp, Progress, Traffic};
use lns_lacsim::trafgen;
use lns_lacsim::tun::{HostLinks, Route};
use tokio::net::UdpSocket;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum NcpArg {
    /// IPCP only.
    Ipv4,
    /// IPv6CP only; the address comes from the LNS's Router Advertisement.
    Ipv6,
    /// IPCP and IPv6CP.
    Dual,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Auth {
    Pap,
    Chap,
    Mschapv2,
}

/// Brings up L2TP tunnels and PPP sessions against an LNS, optionally sends
/// traffic through them, reports, and tears everything down.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The LNS's L2TP address.
    #[arg(long, value_name = "ADDR:PORT")]
    server: SocketAddr,
    /// Local address of the LAC's UDP socket.
    #[arg(long, default_value = "0.0.0.0:0")]
    bind: SocketAddr,
    /// Tunnels to open.
    #[arg(long, default_value_t = 1)]
    tunnels: u32,
    /// Sessions in each tunnel.
    #[arg(long, default_value_t = 1)]
    sessions_per_tunnel: u32,
    /// New sessions per second over all tunnels.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// PPP authentication the subscribers agree to.
    #[arg(long, value_enum, default_value = "chap")]
    auth: Auth,
    /// User name pattern; %d is the session's number (1, 2, ...).
    #[arg(long, default_value = "user%d")]
    user: String,
    /// Password; %d is the session's number here too.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Tunnel secret (tunnel authentication).
    #[arg(long)]
    secret: Option<String>,
    /// Hide the AVPs RFC 2661 allows to hide (needs --secret).
    #[arg(long)]
    hidden_avps: bool,
    /// Send proxy LCP and proxy authentication (PAP) AVPs in ICCN.
    #[arg(long)]
    proxy_auth: bool,
    /// Seconds to keep the sessions up (with traffic) once all are settled.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Subscriber traffic: packets per second per session, and IP packet size.
    #[arg(long, value_name = "PPS[,SIZE]")]
    traffic: Option<String>,
    /// Where subscriber traffic goes (replies are counted).
    #[arg(long, value_name = "ADDR:PORT", default_value = "203.0.113.7:7")]
    traffic_target: SocketAddrV4,
    /// Where IPv6 subscriber traffic goes.
    #[arg(long, value_name = "[ADDR]:PORT", default_value = "[2001:db8:c0::7]:7")]
    traffic_target_v6: SocketAddrV6,
    /// Network protocols the subscribers run. A session counts as up when
    /// its addresses are usable: IPCP up, Router Advertisement received.
    #[arg(long, value_enum, default_value = "ipv4")]
    ncp: NcpArg,
    /// Give up on sessions that are not up after this many seconds (the
    /// deadline for the whole run, redials included).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Redial a call that ended before it was up (its PPP gave up, the LNS
    /// sent CDN or LCP Terminate-Request, its tunnel went down) after this
    /// many seconds, as a CPE does, until --timeout; 0: such a call fails.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    redial_holdoff: f64,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
    /// Write a trafgen configuration sending one data message per
    /// established session (uses --traffic's size, default 64).
    #[arg(long, value_name = "FILE")]
    trafgen_out: Option<PathBuf>,
    /// Interface trafgen will send on: its MAC is the source, the LNS's
    /// (from the neighbour table) the destination.
    #[arg(long, value_name = "IF")]
    trafgen_dev: Option<String>,
    /// Seed for ids and challenges (reproducible runs).
    #[arg(long)]
    seed: Option<u64>,
    /// Make the subscribers hosts of this machine: each gets a TUN device
    /// (NAME for the first, NAME1, NAME2... for the others; at most 16
    /// sessions) with its session's addresses, and the IP the kernel
    /// routes there goes up the session. Without --hold the sessions stay
    /// up until SIGINT or SIGTERM.
    #[arg(long, value_name = "NAME")]
    tun: Option<String>,
    /// Routes through the first TUN device, once its address family is
    /// up: PREFIX/LEN, or `default` for 0.0.0.0/0 and ::/0 (repeat for
    /// more).
    #[arg(long, value_name = "ROUTE", default_value = "default")]
    tun_route: Vec<String>,
    /// MTU of the TUN devices.
    #[arg(long, default_value_t = 1400)]
    tun_mtu: u16,
    /// Seconds between each subscriber's LCP Echo-Requests once its link
    /// is up; 0: none (the LNS's are still answered). A million
    /// subscribers at the default 10 s are 100,000 echoes a second.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    echo_interval: f64,
    /// Calls in progress (placed, not yet up or given up) at most; the
    /// next waits for one to settle, whatever --rate says. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_outstanding: u32,
}

/// The socket's receive buffer, bytes (taken only as datagrams wait).
const RECEIVE_BUFFER: usize = 64 << 20;

/// Datagrams taken from the socket in one pass of the loop (a few
/// recvmmsg(2) batches) before what they led to is sent.
const RX_BURST: usize = 256;

/// At most this many host subscribers (`--tun`).
const MAX_HOST_LINKS: u32 = 16;

fn parse_traffic(s: &str) -> Result<(f64, usize)> {
    let mut it = s.split(',');
    let pps: f64 = it.next().context("--traffic PPS")?.parse().context("--traffic PPS")?;
    let size: usize = match it.next() {
        Some(v) => v.parse().context("--traffic SIZE")?,
        None => 64,
    };
    if !(28..=1500).contains(&size) {
        bail!("--traffic SIZE must be 28..=1500");
    }
    Ok((pps, size))
}

/// The MAC address of `dev` in this process's network namespace (asked of
/// the kernel through ip(8): /sys may belong to another namespace).
fn mac_of(dev: &str) -> Result<[u8; 6]> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "dev", dev])
        .output()
        .context("running ip")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no Ethernet address for {dev}"))?;
    parse_mac(mac)
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s.split(':').map(|h| u8::from_str_radix(h, 16)).collect::<Result<_, _>>()?;
    v.try_into().map_err(|_| anyhow::anyhow!("bad MAC {s}"))
}

/// The LNS's MAC from the neighbour table (there is one once the tunnel is up).
fn neighbour_mac(ip: Ipv4Addr) -> Result<[u8; 6]> {
    let arp = std::fs::read_to_string("/proc/net/arp")?;
    for line in arp.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&ip.to_string().as_str()) {
            if let Some(m) = f.get(3) {
                return parse_mac(m);
            }
        }
    }
    bail!("no neighbour entry for {ip}")
}

fn progress(s: &Progress, t: Duration) {
    eprint!(
        "\r[{:>6.1}s] tunnels {} up  sessions {} up {} failed {} pending {} redials  data {} sent {} received   ",
        t.as_secs_f64(),
        s.tunnels_up,
        s.sessions_up,
        s.sessions_failed,
        s.sessions_pending,
        s.redials,
        s.data_sent,
        s.data_received
    );
    let _ = std::io::stderr().flush();
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.hidden_avps && args.secret.is_none() {
        bail!("--hidden-avps needs --secret");
    }
    let traffic = match &args.traffic {
        Some(t) => {
            let (pps, size) = parse_traffic(t)?;
            Some(Traffic { pps, size, target: args.traffic_target, target_v6: args.traffic_target_v6 })
        }
        None => None,
    };
    let cfg = EmulatorConfig {
        server: args.server,
        tunnels: args.tunnels,
        sessions_per_tunnel: args.sessions_per_tunnel,
        rate: args.rate,
        auth: match args.auth {
            Auth::Pap => AuthMethod::Pap,
            Auth::Chap => AuthMethod::ChapMd5,
            Auth::Mschapv2 => AuthMethod::MsChapV2,
        },
        user: args.user.clone(),
        password: args.password.clone(),
        secret: args.secret.clone().map(String::into_bytes),
        hidden_avps: args.hidden_avps,
        proxy_auth: args.proxy_auth,
        traffic,
        ncp: match args.ncp {
            NcpArg::Ipv4 => Ncp::Ipv4,
            NcpArg::Ipv6 => Ncp::Ipv6,
            NcpArg::Dual => Ncp::Dual,
        },
        redial_holdoff: (args.redial_holdoff > 0.0).then(|| Duration::from_secs_f64(args.redial_holdoff)),
        host_links: if args.tun.is_some() { args.tunnels * args.sessions_per_tunnel } else { 0 },
        echo_interval: (args.echo_interval > 0.0).then(|| Duration::from_secs_f64(args.echo_interval)),
        max_outstanding: (args.max_outstanding > 0).then_some(args.max_outstanding),
        ..EmulatorConfig::default()
    };
    let mut hosts = match &args.tun {
        Some(name) => {
            if cfg.host_links > MAX_HOST_LINKS {
                bail!("--tun takes at most {MAX_HOST_LINKS} sessions");
            }
            let mut routes = Vec::new();
            for r in &args.tun_route {
                routes.extend(Route::parse_list(r)?);
            }
            Some(HostLinks::create(name, cfg.host_links, args.tun_mtu, routes)?)
        }
        None => None,
    };
    // With host subscribers and no --hold, until we are told to stop.
    let hold_until_signal = hosts.is_some() && args.hold == 0.0;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut stop_asked = false;
    // The LNS's socket (thousands of sessions answer at once, and a lost
    // PPP frame costs a 3-second restart timer), bursts received with
    // recvmmsg and sent with sendmmsg. Every tunnel's answers land here:
    // the LNS's 16 MiB receive buffer overflowed with a million
    // subscribers and 3,000 calls in progress, so ours is larger.
    let sock = L2tpSocket::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
    sock.set_receive_buffer(RECEIVE_BUFFER);
    let local = sock.local_addr()?;
    let mut batch = Batch::new();
    let mut emu = Emulator::new(cfg, args.seed);
    let start = Instant::now();
    emu.start(start)?;

    let mut rx_batch = RecvBatch::new();
    let mut settled_at: Option<Instant> = None;
    let mut closing_at: Option<Instant> = None;
    // When we hung up, by the wall clock: whoever waits for the LNS to
    // forget the sessions measures from here.
    let mut hung_up_at: Option<std::time::SystemTime> = None;
    // Our CPU time and the wall clock when every session had settled: what
    // the set-ups cost us (a benchmark compares it with the LNS's).
    let mut settled_cpu = None;
    let mut settled_unix: Option<std::time::SystemTime> = None;
    let mut last_progress = start;
    let mut last_timer = start;
    let long_run = (args.tunnels * args.sessions_per_tunnel) > 50 || args.hold > 2.0;
    loop {
        let now = Instant::now();
        if let Some(h) = hosts.as_mut() {
            while let Some(ev) = emu.poll_host_event() {
                if let Err(e) = h.apply(&ev) {
                    eprintln!("lns-lacsim: {e:#}");
                }
            }
            while let Some((number, packet)) = emu.poll_host_packet() {
                h.deliver(number, &packet);
            }
        }
        while let Some(t) = emu.poll_transmit(now) {
            batch.out.push(Outgoing { to: t.destination, from: None, payload: t.payload });
            if batch.out.len() >= BATCH {
                send_all(&sock, &mut batch).await?;
            }
        }
        send_all(&sock, &mut batch).await?;
        if settled_at.is_none()
            && (emu.settled() || stop_asked || now.duration_since(start).as_secs_f64() > args.timeout)
        {
            settled_at = Some(now);
            settled_cpu = cpu_seconds();
            settled_unix = Some(std::time::SystemTime::now());
            if let Some(path) = &args.trafgen_out {
                let dev = args.trafgen_dev.as_deref().context("--trafgen-out needs --trafgen-dev")?;
                let (SocketAddr::V4(lac), SocketAddr::V4(lns)) = (local, args.server) else {
                    bail!("--trafgen-out supports IPv4 tunnels");
                };
                let lac_ip = if lac.ip().is_unspecified() {
                    match local_ip_towards(args.server).await? {
                        IpAddr::V4(v) => v,
                        IpAddr::V6(_) => bail!("no IPv4 address toward the LNS"),
                    }
                } else {
                    *lac.ip()
                };
                let outer = trafgen::Outer {
                    src_mac: mac_of(dev)?,
                    dst_mac: neighbour_mac(*lns.ip())?,
                    lac: SocketAddrV4::new(lac_ip, lac.port()),
                    lns,
                };
                let tr = traffic.unwrap_or(Traffic {
                    pps: 0.0,
                    size: 64,
                    target: args.traffic_target,
                    target_v6: args.traffic_target_v6,
                });
                let msgs = emu.data_messages(tr);
                std::fs::write(path, trafgen::config(&outer, &msgs))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        if let Some(s) = settled_at {
            let held =
                if hold_until_signal { stop_asked } else { now.duration_since(s).as_secs_f64() >= args.hold };
            if closing_at.is_none() && (held || stop_asked) {
                emu.teardown(now);
                closing_at = Some(now);
                hung_up_at = Some(std::time::SystemTime::now());
                continue;
            }
        }
        if let Some(c) = closing_at {
            if emu.finished() || now.duration_since(c) > Duration::from_secs(3) {
                break;
            }
        }
        if long_run && !args.json && now.duration_since(last_progress) >= Duration::from_secs(1) {
            progress(&emu.progress(), now.duration_since(start));
            last_progress = now;
        }
        // Timers are served at most every TICK: with thousands of sessions
        // sending, a wake-up per packet deadline would visit every session
        // thousands of times a second; a packet a millisecond or two late
        // changes nothing.
        const TICK: Duration = Duration::from_millis(2);
        let wake = emu
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(200))
            .min(now + Duration::from_millis(200))
            .max(now)
            .max(last_timer + TICK);
        tokio::select! {
            r = sock.recv_batch(&mut rx_batch) => {
                r?;
                let now = Instant::now();
                // A burst, a recvmmsg(2) batch at a time, in this pass.
                let mut taken = 0;
                loop {
                    for (rx, data) in rx_batch.iter() {
                        emu.handle_datagram(now, rx.from, data);
                        taken += 1;
                    }
                    if taken >= RX_BURST || sock.try_recv_batch(&mut rx_batch)? == 0 {
                        break;
                    }
                }
            }
            Some((number, packet)) = async {
                match hosts.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                emu.send_from_host(number, &packet);
                // What else the devices hold, in this pass.
                if let Some(h) = hosts.as_mut() {
                    for _ in 1..BATCH {
                        match h.try_recv() {
                            Some((number, packet)) => emu.send_from_host(number, &packet),
                            None => break,
                        };
                    }
                }
            }
            _ = sigterm.recv(), if !stop_asked => stop_asked = true,
            _ = sigint.recv(), if !stop_asked => stop_asked = true,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                last_timer = Instant::now();
                emu.handle_timeout(last_timer);
            }
        }
    }
    let summary = emu.summary();
    if long_run && !args.json {
        eprintln!();
    }
    if args.json {
        let mut j = serde_json::to_value(&summary)?;
        let unix_ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        j["hung_up_unix_ms"] = hung_up_at.map(unix_ms).into();
        j["settled_unix_ms"] = settled_unix.map(unix_ms).into();
        j["settled_cpu_s"] = settled_cpu.map(|(u, s)| u + s).into();
        j["settled_cpu_system_s"] = settled_cpu.map(|(_, s)| s).into();
        j["cpu_s"] = cpu_seconds().map(|(u, s)| u + s).into();
        j["peak_rss_kib"] = peak_rss_kib().into();
        j["progress"] = serde_json::to_value(emu.progress())?;
        println!("{j}");
    } else {
        println!(
            "tunnels {} up {} failed; sessions {} up ({} IPv6) {} failed; calls {} given up, {} ended by the LNS, {} redials, {} PPP restarts; set-up {:.0}/s, latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms; data {} sent {} received {} lost ({} IPv6 sent {} received), {} sessions answered",
            summary.tunnels_up,
            summary.tunnels_failed,
            summary.sessions_up,
            summary.ipv6_sessions_up,
            summary.sessions_failed,
            summary.calls_given_up,
            summary.calls_ended_by_lns,
            summary.redials,
            summary.ppp_restarts,
            summary.setup_rate,
            summary.setup_latency_ms_p50,
            summary.setup_latency_ms_p99,
            summary.setup_latency_ms_max,
            summary.data_sent,
            summary.data_received,
            summary.data_lost,
            summary.data_sent_v6,
            summary.data_received_v6,
            summary.sessions_answered
        );
    }
    Ok(())
}

/// Sends the batch; back-pressure from the socket waits here, nothing is
/// dropped.
async fn send_all(sock: &L2tpSocket, batch: &mut Batch) -> Result<()> {
    loop {
        let outcome = sock.send_batch(batch);
        if outcome.failed > 0 {
            bail!("{} datagrams refused by the kernel", outcome.failed);
        }
        if !outcome.blocked {
            return Ok(());
        }
        sock.writable().await?;
    }
}

/// CPU time this process used so far (user, system), seconds.
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat)
}

/// User and system time from a /proc/PID/stat line (fields 14 and 15,
/// in clock ticks of 1/100 s, counted after the command's closing
/// parenthesis).
fn cpu_seconds_of(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime as f64 / 100.0, stime as f64 / 100.0))
}

/// Our peak resident memory (VmHWM), KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()
}

/// The source address the kernel picks toward `to`.
async fn local_ip_towards(to: SocketAddr) -> Result<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").await?;
    s.connect(to).await?;
    Ok(s.local_addr()?.ip())
}
