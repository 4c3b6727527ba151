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

#![forbid(unsafe_code)]

use anyhow::Result;
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
    let slots = (per_round + 1024).next_power_of_two().max(4096).to_string();
    let lab = Lab::new(2)?;
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
    let _cp = lab.start_controlplane_with(
        pins.path(),
        per_round,
        "dns = [\"203.0.113.53\", \"203.0.113.54\"]\nauth = [\"chap-md5\", \"pap\"]",
        &["--log", "warn"],
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
            extra: &["--ncp", &args.ncp, "--timeout", "120"],
        },
    )?;
    lns_benches::print_udp_errors(&lab)?;
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
    Ok(())
}
