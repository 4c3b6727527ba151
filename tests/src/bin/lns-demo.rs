//! The README demo: a namespace lab with a LAC, the LNS and the core; the
//! data plane; static sessions; traffic both ways through the fast path;
//! what happened; and everything removed again.
//!
//! Until the LAC emulator and the control plane bring sessions up for real,
//! sessions are installed with `lnsctl static-session`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lns_testlab::frames::{l2tp_data, udp_frame, udp_v4};
use lns_testlab::{workspace_bin, Lab, PinDir, RawSocket};

#[derive(Parser)]
#[command(about = "Run the LNS fast-path demo in a namespace lab")]
struct Args {
    /// Sessions to install.
    #[arg(long, default_value_t = 100)]
    sessions: u16,
    /// Packets per session in each direction.
    #[arg(long, default_value_t = 50)]
    packets: u16,
    /// XDP mode of the data plane (native or skb).
    #[arg(long, default_value = "native")]
    xdp_mode: String,
}

fn lnsctl(pins: &std::path::Path, args: &[&str]) -> Result<String> {
    let mut a = vec!["--bpf-pin-dir", pins.to_str().context("pin path")?];
    a.extend_from_slice(args);
    let out = std::process::Command::new(workspace_bin("lnsctl")?).args(&a).output()?;
    if !out.status.success() {
        bail!("lnsctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sub_addr(i: u16) -> Ipv4Addr {
    // 198.51.100.0/24 holds 254 subscribers; more spill into 203.0.113.128/25
    // would leave the documentation ranges, so the demo caps there.
    Ipv4Addr::new(198, 51, 100, 10 + i as u8)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.sessions == 0 || args.sessions > 240 {
        bail!("--sessions must be 1..=240 (one 198.51.100.0/24 address each)");
    }
    println!("== lab: namespaces lac | lns | core over veths with 2 queues");
    let lab = Lab::new(2)?;
    let pins = PinDir::new()?;
    let mut dp = lab.start_dataplane(
        pins.path(),
        &[
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
    println!("== lns-dataplane up (XDP {}, AF_XDP copy mode, 2 workers)", args.xdp_mode);

    for i in 0..args.sessions {
        let ip = sub_addr(i).to_string();
        let (lt, ls, pt, ps) =
            (100.to_string(), (1000 + i).to_string(), 7.to_string(), (5000 + i).to_string());
        lnsctl(
            pins.path(),
            &[
                "static-session",
                "add",
                "--local-tunnel",
                &lt,
                "--local-session",
                &ls,
                "--peer-tunnel",
                &pt,
                "--peer-session",
                &ps,
                "--lac",
                "192.0.2.2:1701",
                "--local",
                "192.0.2.1:1701",
                "--ipv4",
                &ip,
            ],
        )?;
    }
    println!(
        "== {} static sessions installed with lnsctl (tunnel 100, subscribers 198.51.100.10..)",
        args.sessions
    );

    let lac_mac = Lab::mac(&lab.lac, "lac0")?;
    let acc_mac = Lab::mac(&lab.lns, "acc0")?;
    let lac_raw = RawSocket::open(&lab.lac, "lac0")?;
    let (lac_udp, core_udp) = {
        let _in = lab.lac.enter()?;
        let l = UdpSocket::bind("0.0.0.0:1701")?;
        drop(_in);
        let _in = lab.core.enter()?;
        (l, UdpSocket::bind("[::]:5000")?)
    };
    lac_udp.set_read_timeout(Some(Duration::from_millis(500)))?;
    core_udp.set_read_timeout(Some(Duration::from_millis(500)))?;

    let upstream = |round: &str, n: u16| -> Result<()> {
        for k in 0..n {
            for i in 0..args.sessions {
                let payload = format!("{round} up {i} {k}");
                let inner =
                    udp_v4(sub_addr(i).octets(), 4000, [203, 0, 113, 7], 5000, 64, payload.as_bytes());
                let l2tp = l2tp_data(100, 1000 + i, 0x21, &inner);
                lac_raw.send(&udp_frame(
                    acc_mac,
                    lac_mac,
                    [192, 0, 2, 2],
                    1701,
                    [192, 0, 2, 1],
                    1701,
                    &l2tp,
                ))?;
            }
            // Paced: a veth hands frames to the peer's backlog (1000 by
            // default), and this is a demo, not a load test.
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    };
    let downstream = |n: u16| -> Result<()> {
        for k in 0..n {
            for i in 0..args.sessions {
                core_udp.send_to(format!("down {i} {k}").as_bytes(), (IpAddr::V4(sub_addr(i)), 4000))?;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    };
    // A first packet each way finds no neighbour entry for the next hop; the
    // data plane has the kernel resolve it, and the fast path takes over.
    upstream("warm", 1)?;
    downstream(1)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut buf = [0u8; 2048];
    while core_udp.recv_from(&mut buf).is_ok() {}
    while lac_udp.recv_from(&mut buf).is_ok() {}
    let before: serde_json::Value = serde_json::from_str(&lnsctl(pins.path(), &["--json", "show-xdp"])?)?;

    println!("== sending {} packets per session each way", args.packets);
    // Receivers run while the senders send, so socket buffers never decide
    // the outcome.
    let (up_rx, down_rx) = std::thread::scope(|sc| -> Result<(BTreeMap<IpAddr, u64>, BTreeMap<u16, u64>)> {
        let core_rx = sc.spawn(|| {
            let mut m: BTreeMap<IpAddr, u64> = BTreeMap::new();
            let mut b = [0u8; 2048];
            while let Ok((_, from)) = core_udp.recv_from(&mut b) {
                *m.entry(from.ip().to_canonical()).or_default() += 1;
            }
            m
        });
        let lac_rx = sc.spawn(|| {
            let mut m: BTreeMap<u16, u64> = BTreeMap::new();
            let mut b = [0u8; 2048];
            while let Ok((n, _)) = lac_udp.recv_from(&mut b) {
                if n >= 6 {
                    *m.entry(u16::from_be_bytes([b[4], b[5]])).or_default() += 1;
                }
            }
            m
        });
        upstream("run", args.packets)?;
        downstream(args.packets)?;
        Ok((core_rx.join().unwrap_or_default(), lac_rx.join().unwrap_or_default()))
    })?;
    let after: serde_json::Value = serde_json::from_str(&lnsctl(pins.path(), &["--json", "show-xdp"])?)?;
    let sent = args.sessions as u64 * args.packets as u64;
    let up: u64 = up_rx.values().sum();
    let down: u64 = down_rx.values().sum();
    let delta = |k: &str| after[k].as_u64().unwrap_or(0).saturating_sub(before[k].as_u64().unwrap_or(0));
    println!();
    println!("upstream   (LAC -> L2TP -> LNS decap -> core): sent {sent:>7}  received {up:>7}  lost {:>5}  sessions heard {}", sent.saturating_sub(up), up_rx.len());
    println!("downstream (core -> LNS encap -> L2TP -> LAC): sent {sent:>7}  received {down:>7}  lost {:>5}  sessions heard {}", sent.saturating_sub(down), down_rx.len());
    println!(
        "XDP verdicts in the run: redirect_upstream={} redirect_downstream={} (everything else {})",
        delta("redirect_upstream"),
        delta("redirect_downstream"),
        delta("rx").saturating_sub(delta("redirect_upstream") + delta("redirect_downstream"))
    );

    let list: serde_json::Value =
        serde_json::from_str(&lnsctl(pins.path(), &["--json", "static-session", "list"])?)?;
    println!("\nper-session counters from the fast path (lnsctl static-session list), first 5:");
    for r in list.as_array().into_iter().flatten().take(5) {
        println!(
            "  tunnel {}/session {}  {}  up {} pkts {} B   down {} pkts {} B",
            r["local_tunnel"],
            r["local_session"],
            r["ipv4"].as_str().unwrap_or("-"),
            r["up_packets"],
            r["up_bytes"],
            r["down_packets"],
            r["down_bytes"]
        );
    }
    dp.stop(10);
    let (out, _) = dp.output();
    if let Some(last) = out.lines().last() {
        let report: serde_json::Value = serde_json::from_str(last)?;
        for (i, w) in report["workers"].as_array().into_iter().flatten().enumerate() {
            println!(
                "worker {i}: rx {} tx {} up {} down {}  batch p50 {} ns p99 {} ns",
                w["rx"], w["tx"], w["upstream"], w["downstream"], w["batch_ns_p50"], w["batch_ns_p99"]
            );
        }
    }
    println!("\n== cleaning up (namespaces, veths, pins)");
    if up + down < 2 * sent * 99 / 100 {
        bail!("more than 1% loss through the fast path");
    }
    Ok(())
}
