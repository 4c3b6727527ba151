//! Benchmark helpers shared by the criterion benches and the load harness.

#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use lns_testlab::{workspace_bin, Lab};

/// What rounds of lns-lacsim set-up gave.
#[derive(Debug, Default)]
pub struct SetupRounds {
    pub rounds: u32,
    pub up: u64,
    pub failed: u64,
    /// Mean of the rounds' set-up rates (sessions/s).
    pub rate: f64,
    /// Median of the rounds' p50 latency, worst round's p99, worst max (ms).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// How lns-lacsim brings a round up.
pub struct Round<'a> {
    pub tunnels: u32,
    pub sessions_per_tunnel: u32,
    /// Calls per second lacsim attempts.
    pub rate: f64,
    /// CHAP password pattern (`%d`: the subscriber's number).
    pub password: &'a str,
    /// More lacsim arguments.
    pub extra: &'a [&'a str],
}

/// Runs `rounds` of lns-lacsim (CHAP subscribers user1, user2, ...) in the
/// LAC namespace against the lab's LNS, each brought up, held for nothing
/// and hung up, with a pause between for the LNS to release them.
pub fn setup_rounds(lab: &Lab, rounds: u32, round: &Round) -> Result<SetupRounds> {
    let lacsim = workspace_bin("lns-lacsim")?;
    let (t, s, r) =
        (round.tunnels.to_string(), round.sessions_per_tunnel.to_string(), round.rate.to_string());
    let mut a = vec![
        "--server",
        "192.0.2.1:1701",
        "--json",
        "--tunnels",
        &t,
        "--sessions-per-tunnel",
        &s,
        "--rate",
        &r,
        "--auth",
        "chap",
        "--user",
        "user%d",
        "--password",
        round.password,
    ];
    a.extend_from_slice(round.extra);
    let mut r = SetupRounds { rounds, ..SetupRounds::default() };
    let (mut rate_sum, mut p50s) = (0.0, Vec::new());
    for _ in 0..rounds {
        let out = lab.lac.exec(lacsim.to_str().context("path")?, &a)?;
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).context("lacsim summary")?;
        r.up += j["sessions_up"].as_u64().unwrap_or(0);
        r.failed += j["sessions_failed"].as_u64().unwrap_or(0);
        rate_sum += j["setup_rate"].as_f64().unwrap_or(0.0);
        p50s.push(j["setup_latency_ms_p50"].as_f64().unwrap_or(0.0));
        r.p99_ms = r.p99_ms.max(j["setup_latency_ms_p99"].as_f64().unwrap_or(0.0));
        r.max_ms = r.max_ms.max(j["setup_latency_ms_max"].as_f64().unwrap_or(0.0));
        // Let the LNS release the round's sessions and addresses.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    p50s.sort_by(|x, y| x.total_cmp(y));
    r.rate = if rounds > 0 { rate_sum / f64::from(rounds) } else { 0.0 };
    r.p50_ms = p50s.get(p50s.len() / 2).copied().unwrap_or(0.0);
    Ok(r)
}

/// Prints the UDP error counters of the LNS and LAC namespaces to stderr:
/// where datagrams were lost, if any.
pub fn print_udp_errors(lab: &Lab) -> Result<()> {
    for (name, ns) in [("lns", &lab.lns), ("lac", &lab.lac)] {
        let snmp = String::from_utf8_lossy(&ns.exec("cat", &["/proc/net/snmp"])?.stdout).into_owned();
        let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
        if let [h, v] = udp.as_slice() {
            let pairs: Vec<String> = h
                .split_whitespace()
                .zip(v.split_whitespace())
                .skip(1)
                .filter(|(k, _)| k.contains("Err"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            eprintln!("{name} UDP: {}", pairs.join(" "));
        }
    }
    Ok(())
}
