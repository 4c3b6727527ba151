//! The README demo: the whole LNS in a namespace lab. A LAC namespace runs
//! lns-lacsim (tunnels, PPP subscribers with CHAP, traffic), the LNS
//! namespace runs lns-dataplane and lns-controlplane, the core namespace
//! echoes the subscribers' packets. It prints what happened and removes
//! everything.

#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lns_testlab::{workspace_bin, Lab, PinDir, UdpEcho};

#[derive(Parser)]
#[command(about = "Run the LNS demo in a namespace lab")]
struct Args {
    /// Tunnels from the LAC.
    #[arg(long, default_value_t = 4)]
    tunnels: u32,
    /// Sessions per tunnel (at most 250 in all: one 198.51.100.0/24 address each).
    #[arg(long, default_value_t = 25)]
    sessions_per_tunnel: u32,
    /// Packets per second each subscriber sends (echoed back by the core).
    #[arg(long, default_value_t = 50)]
    pps: u32,
    /// Seconds the sessions stay up with traffic.
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
    /// XDP mode of the data plane (native or skb).
    #[arg(long, default_value = "native")]
    xdp_mode: String,
}

fn lnsctl(pins: &std::path::Path, socket: &std::path::Path, args: &[&str]) -> Result<String> {
    let mut a = vec![
        "--bpf-pin-dir",
        pins.to_str().context("pin path")?,
        "--control-socket",
        socket.to_str().context("socket path")?,
    ];
    a.extend_from_slice(args);
    let out = std::process::Command::new(workspace_bin("lnsctl")?).args(&a).output()?;
    if !out.status.success() {
        bail!("lnsctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let sessions = args.tunnels * args.sessions_per_tunnel;
    if sessions == 0 || sessions > 250 {
        bail!("--tunnels × --sessions-per-tunnel must be 1..=250");
    }
    println!("== lab: namespaces lac | lns | core over veths with 2 queues");
    let lab = Lab::new(2)?;
    let pins = PinDir::new()?;
    let mut dp = lab.start_dataplane(
        pins.path(),
        &[
            // The control plane's IPv4 pool and the first /48 of its IPv6
            // pool: downstream to a subscriber's own address there goes to
            // the workers by prefix alone.
            "--pool",
            "198.51.100.0/24",
            "--pool",
            "2001:db8:100::/48",
            "--queues",
            "2",
            "--xdp-mode",
            &args.xdp_mode,
            "--bind",
            "copy",
            "--stats-interval",
            "0",
            "--json",
            "--max-sessions",
            "4096",
        ],
    )?;
    println!("== lns-dataplane up: XDP {} on acc0 and core0, AF_XDP copy mode, 2 workers", args.xdp_mode);
    let cp = lab.start_controlplane(pins.path(), sessions, &[])?;
    println!("== lns-controlplane up: L2TP on 192.0.2.1:1701, {sessions} local users, pool 198.51.100.0/24");
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7")?;
    // A router has its core next hop resolved long before subscribers
    // arrive; without this the first packets wait in the kernel while the
    // data plane has the neighbour resolved.
    lab.lns.exec("ping", &["-c1", "-W2", "203.0.113.7"])?;

    println!(
        "== lns-lacsim: {} tunnels × {} sessions, CHAP, {} pps each to 203.0.113.7 for {} s",
        args.tunnels, args.sessions_per_tunnel, args.pps, args.hold
    );
    let lacsim = workspace_bin("lns-lacsim")?;
    let (t, s, tr, hold) = (
        args.tunnels.to_string(),
        args.sessions_per_tunnel.to_string(),
        format!("{},200", args.pps),
        args.hold.to_string(),
    );
    let out = lab.lac.exec(
        lacsim.to_str().context("path")?,
        &[
            "--server",
            "192.0.2.1:1701",
            "--tunnels",
            &t,
            "--sessions-per-tunnel",
            &s,
            "--auth",
            "chap",
            "--user",
            "user%d",
            "--password",
            "pw%d",
            "--traffic",
            &tr,
            "--hold",
            &hold,
            "--json",
        ],
    )?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).context("lns-lacsim's summary")?;

    let xdp: serde_json::Value =
        serde_json::from_str(&lnsctl(pins.path(), &cp.socket, &["--json", "show-xdp"])?)?;
    println!();
    println!(
        "sessions: {} up, {} failed; set-up {:.0} sessions/s, latency p50 {:.1} ms, p99 {:.1} ms",
        summary["sessions_up"],
        summary["sessions_failed"],
        summary["setup_rate"].as_f64().unwrap_or(0.0),
        summary["setup_latency_ms_p50"].as_f64().unwrap_or(0.0),
        summary["setup_latency_ms_p99"].as_f64().unwrap_or(0.0)
    );
    println!(
        "traffic:  {} packets sent by the subscribers, {} echoes back, {} lost",
        summary["data_sent"], summary["data_received"], summary["data_lost"]
    );
    println!(
        "fast path (XDP → AF_XDP workers): {} frames decapsulated upstream, {} encapsulated downstream; \
         {} L2TP control and {} PPP control frames passed to lns-controlplane",
        xdp["redirect_upstream"].as_u64().unwrap_or(0) + xdp["redirect_upstream_check"].as_u64().unwrap_or(0),
        xdp["redirect_downstream"].as_u64().unwrap_or(0)
            + xdp["redirect_downstream_check"].as_u64().unwrap_or(0),
        xdp["pass_l2tp_control"],
        xdp["pass_ppp_control"]
    );
    let echoed = echo.stop();
    println!("core:     the echo server saw {echoed} packets");
    std::thread::sleep(Duration::from_millis(300));
    let stats = lnsctl(pins.path(), &cp.socket, &["show", "stats"])?;
    println!("\nlnsctl show stats:\n{}", stats.trim_end());
    dp.stop(10);
    let (dp_out, _) = dp.output();
    if let Some(last) = dp_out.lines().last() {
        let report: serde_json::Value = serde_json::from_str(last)?;
        for (i, w) in report["workers"].as_array().into_iter().flatten().enumerate() {
            println!(
                "worker {i}: rx {} tx {} upstream {} downstream {} nh_lookups {}  batch p50 {} ns p99 {} ns{}",
                w["rx"],
                w["tx"],
                w["upstream"],
                w["downstream"],
                w["nh_lookups"],
                w["batch_ns_p50"],
                w["batch_ns_p99"],
                w["drops"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                    .map(|(k, v)| format!(" drop {k}={v}"))
                    .collect::<String>()
            );
        }
    }
    println!("\n== cleaning up (processes, namespaces, veths, pins)");
    let sent = summary["data_sent"].as_u64().unwrap_or(0);
    let received = summary["data_received"].as_u64().unwrap_or(0);
    if summary["sessions_up"].as_u64() != Some(sessions as u64) || received + sessions as u64 * 2 < sent {
        bail!("not every session came up, or traffic was lost");
    }
    Ok(())
}
