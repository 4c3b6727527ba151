//! Session set-up rate: lns-lacsim brings sessions up against the real LNS
//! (lns-dataplane + lns-controlplane, local CHAP users, a pool) in a
//! namespace lab, round after round, and this prints sessions per second
//! and set-up latency.
//!
//! The IPv4 documentation range 198.51.100.0/24 holds 250 subscribers, so
//! with `--ncp ipv4` (the default) 10,000 sessions are 40 rounds of 250:
//! each round brings its sessions up as fast as the LNS answers, then hangs
//! up before the next. With `--ncp ipv6` each subscriber gets a /64 of
//! 2001:db8:100::/40 by Router Advertisement instead, and a round may hold
//! them all: `--ncp ipv6 --tunnels 10 --sessions-per-tunnel 1000` is one
//! round of 10,000 (a session counts once its address is usable).
//!
//! `--loss PCT` drops that share of the L2TP datagrams each way (iptables
//! in the LAC and LNS namespaces): lacsim redials a call that ends before it
//! is up, and this says who gave up on calls (lacsim's PPP, the LNS) and why,
//! and checks that nothing is left in the LNS after the hang-up.

#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lns_testlab::{Lab, PinDir};

#[derive(Parser)]
#[command(about = "Session set-up rate against the real LNS")]
struct Args {
    /// Sessions in all.
    #[arg(long, default_value_t = 10_000)]
    sessions: u32,
    /// Tunnels per round.
    #[arg(long, default_value_t = 10)]
    tunnels: u32,
    /// Sessions per tunnel per round (tunnels × this ≤ 250).
    #[arg(long, default_value_t = 25)]
    sessions_per_tunnel: u32,
    /// New sessions per second lns-lacsim attempts.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Network protocols of the subscribers: ipv4, ipv6 or dual (as
    /// lns-lacsim's --ncp).
    #[arg(long, default_value = "ipv4")]
    ncp: String,
    /// Drop this percentage of the L2TP datagrams (UDP port 1701) in each
    /// direction, at random: iptables statistic rules in the INPUT chains
    /// of the LAC and the LNS namespaces, removed with the lab.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    loss: f64,
    /// Seconds lacsim redials a call that ended before it was up after (as
    /// its --redial-holdoff; 0: such a call fails).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    redial_holdoff: f64,
    /// Seconds a round may take to bring its sessions up (lacsim's
    /// --timeout: sessions not up by then failed).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    timeout: f64,
    /// The control plane's log level; with --loss its log says which
    /// sessions the LNS gave up and why, so it is `info` by default then.
    #[arg(long, value_name = "LEVEL")]
    cp_log: Option<String>,
    /// Keep the control plane's log (its stderr) in this file.
    #[arg(long, value_name = "FILE")]
    save_log: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let per_round = args.tunnels * args.sessions_per_tunnel;
    let max_round = if args.ncp == "ipv6" { 60_000 } else { 250 };
    anyhow::ensure!(
        (1..=max_round).contains(&per_round),
        "tunnels × sessions-per-tunnel must be 1..={max_round} with --ncp {}",
        args.ncp
    );
    anyhow::ensure!((0.0..100.0).contains(&args.loss), "--loss must be 0 <= PCT < 100");
    let slots = (per_round + 1024).next_power_of_two().max(4096).to_string();
    let lab = Lab::new(2)?;
    if args.loss > 0.0 {
        lns_benches::drop_l2tp(&lab.lac, args.loss)?;
        lns_benches::drop_l2tp(&lab.lns, args.loss)?;
    }
    let cp_log = args.cp_log.clone().unwrap_or_else(|| if args.loss > 0.0 { "info" } else { "warn" }.into());
    let pins = PinDir::new()?;
    let _dp = lab.start_dataplane(
        pins.path(),
        &[
            "--queues",
            "2",
            "--xdp-mode",
            "native",
            "--bind",
            "copy",
            "--stats-interval",
            "0",
            "--max-sessions",
            &slots,
        ],
    )?;
    // As a carrier configures it: DNS servers handed out in IPCP (else the
    // subscriber's DNS options are rejected, a round trip more) and the
    // authentication the subscribers use offered first.
    let cp = lab.start_controlplane_with(
        pins.path(),
        per_round,
        "dns = [\"203.0.113.53\", \"203.0.113.54\"]\nauth = [\"chap-md5\", \"pap\"]",
        &["--log", &cp_log],
    )?;
    let rounds = args.sessions.div_ceil(per_round);
    let res = lns_benches::setup_rounds(
        &lab,
        rounds,
        &lns_benches::Round {
            tunnels: args.tunnels,
            sessions_per_tunnel: args.sessions_per_tunnel,
            rate: args.rate,
            password: "pw%d",
            extra: &[
                "--ncp",
                &args.ncp,
                "--timeout",
                &args.timeout.to_string(),
                "--redial-holdoff",
                &args.redial_holdoff.to_string(),
            ],
        },
    )?;
    lns_benches::print_udp_errors(&lab)?;
    // With loss a StopCCN may need its retransmissions: give the LNS time.
    let released = lns_benches::assert_released(pins.path(), &cp.socket, Duration::from_secs(60));
    let lns_log = cp.proc.output().1;
    if let Some(path) = &args.save_log {
        std::fs::write(path, &lns_log).with_context(|| format!("writing {}", path.display()))?;
    }
    // The LNS's PPP links that went down before the hang-up, by RFC 3145
    // cause: code 3 "peer sent LCP Terminate-Request" is lacsim's PPP
    // giving up (it says goodbye), the rest the LNS's own decisions.
    let links_down = lns_benches::count_log(&lns_log, "PPP link down: CDN", "code");
    let lns_gave_up: u64 = links_down.iter().filter(|(why, _)| !why.starts_with("3 ")).map(|(_, n)| n).sum();
    if args.loss > 0.0 {
        for (name, ns) in [("LAC", &lab.lac), ("LNS", &lab.lns)] {
            let (seen, dropped) = lns_benches::l2tp_dropped(ns)?;
            println!(
                "L2TP datagrams into the {name}: {seen}, dropped {dropped} ({:.2} %)",
                100.0 * dropped as f64 / seen.max(1) as f64
            );
        }
    }
    println!(
        "calls ended before they were up: {} given up by lacsim, {} ended by the LNS; {} redials, {} tunnel redials; \
         lacsim's PPP started {} timed-out links again",
        res.given_up, res.ended_by_lns, res.redials, res.tunnel_redials, res.ppp_restarts
    );
    for (why, n) in &res.causes {
        println!("  lacsim saw {n:>5}  {why}");
    }
    if !links_down.is_empty() || args.loss > 0.0 {
        println!("the LNS's PPP gave up on {lns_gave_up} links; its links down by cause (code, message):");
        for (why, n) in &links_down {
            println!("  {n:>5}  {why}");
        }
    }
    println!(
        "{} of {} sessions up (loss {} % each way), {} failed; calls given up: {} by lacsim, {} by the LNS; \
         {} redials; set-up p50 {:.2} ms, p99 {:.2} ms; {}",
        res.up,
        rounds * per_round,
        args.loss,
        res.failed,
        res.given_up,
        lns_gave_up,
        res.redials,
        res.p50_ms,
        res.p99_ms,
        match &released {
            Ok(()) => "nothing left in the LNS after the hang-up".to_string(),
            Err(e) => format!("{e:#}"),
        }
    );
    println!(
        "{} sessions up ({}), {} failed, in {rounds} rounds of {per_round} ({} tunnels × {}): \
         set-up rate {:.0} sessions/s (mean of rounds), latency p50 {:.2} ms (median of rounds), \
         p99 {:.2} ms (worst round), max {:.2} ms",
        res.up,
        args.ncp,
        res.failed,
        args.tunnels,
        args.sessions_per_tunnel,
        res.rate,
        res.p50_ms,
        res.p99_ms,
        res.max_ms
    );
    released
}
