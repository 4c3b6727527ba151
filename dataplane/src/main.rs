//! lns-dataplane: loads the steering program, binds one AF_XDP socket per
//! queue per interface and runs one pinned worker per queue.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use lns_dataplane::packet::MssClamp;
use lns_dataplane::ring::BindMode;
use lns_dataplane::supervisor::{self, Options};
use lns_dataplane::worker::Mode;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum XdpModeArg {
    /// In the driver.
    Native,
    /// Generic XDP (works on any interface, slower).
    Skb,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BindArg {
    Copy,
    Zerocopy,
    Auto,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    /// Decapsulate toward the core, encapsulate toward the LACs.
    Lns,
    /// Swap MAC addresses and send every IP frame back: the bare AF_XDP
    /// baseline that benchmarks compare against.
    Reflect,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SessionChecksArg {
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

/// The LNS's AF_XDP fast path.
///
/// Attaches the XDP steering program to the access (LAC-facing) and core
/// interfaces, pins its maps under /sys/fs/bpf/lns/<instance> for the control
/// plane and lnsctl, and runs one worker per queue, each pinned to a core.
/// SIGINT or SIGTERM detaches cleanly.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// LAC-facing interface: L2TP arrives here.
    #[arg(long, value_name = "IF")]
    access_if: String,
    /// Internet-facing interface [default: the access interface, one-arm].
    #[arg(long, value_name = "IF")]
    core_if: Option<String>,
    /// Queues to serve, a number from queue 0 or "all" (every rx queue of
    /// the access interface).
    #[arg(long, default_value = "all", value_name = "N|all")]
    queues: String,
    /// CPU cores to pin workers to, e.g. "0,1" or "2-5", one per queue in
    /// order [default: cores 0.. in order].
    #[arg(long, value_name = "LIST")]
    cores: Option<String>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "native")]
    xdp_mode: XdpModeArg,
    /// AF_XDP bind mode; auto tries zero-copy, then copy.
    #[arg(long, value_enum, default_value = "auto")]
    bind: BindArg,
    /// UMEM frames per worker (2 KiB each), shared by its sockets.
    #[arg(long, default_value_t = 8192)]
    frames: u32,
    /// Entries of each AF_XDP ring (power of two).
    #[arg(long, default_value_t = 2048)]
    ring_size: u32,
    /// Frames taken from a ring per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Spin instead of sleeping in poll(2) when idle (lower latency, a full
    /// core per worker).
    #[arg(long)]
    busy_poll: bool,
    /// UDP port of L2TP.
    #[arg(long, default_value_t = 1701)]
    l2tp_port: u16,
    /// Instance name: maps are pinned under /sys/fs/bpf/lns/<instance>.
    #[arg(long, default_value = "default")]
    instance: String,
    /// Pin directory, overriding the one derived from --instance.
    #[arg(long, value_name = "DIR")]
    bpf_pin_dir: Option<PathBuf>,
    /// Size of the session table.
    #[arg(long, default_value_t = 65536)]
    max_sessions: u32,
    /// What the workers do.
    #[arg(long, value_enum, default_value = "lns")]
    mode: ModeArg,
    /// TCP MSS clamping on SYN in both directions: "auto" (session MTU minus
    /// 40, or 60 for IPv6), a number, or "off".
    #[arg(long, default_value = "auto", value_name = "auto|N|off")]
    mss_clamp: String,
    /// Pass data of unknown sessions to the stack instead of dropping it.
    /// (With --session-checks worker, data whose ids are unknown but fall on
    /// a forwarding session's slot is dropped by the worker.)
    #[arg(long)]
    pass_unknown_sessions: bool,
    /// Who checks upstream L2TP data against its session: the XDP program
    /// for every frame, or the workers for the sessions they can check.
    /// Drops by the workers are counted in their drop counters
    /// (unknown_session, peer_mismatch, spoofed), the program's in its own.
    #[arg(long, value_enum, default_value = "worker")]
    session_checks: SessionChecksArg,
    /// Milliseconds a next hop found by bpf_fib_lookup is reused by the XDP
    /// program (per CPU and destination); route and neighbour changes take
    /// effect within this time. 0 looks up every frame.
    #[arg(long, default_value_t = 1000)]
    nh_cache_ms: u32,
    /// A subscriber pool, PREFIX/LEN (IPv4: a /32 per subscriber; IPv6: a
    /// /64) or PREFIX/LEN,UNIT (IPv6 delegated prefixes of length UNIT);
    /// repeat for up to 8. Downstream, a forwarding session's own address
    /// in a pool goes to the workers by its prefix alone (the program reads
    /// no subscriber table for it, which costs a cache miss per frame with
    /// many subscribers); the workers find the session and the next hop
    /// toward its LAC. Give the control plane's pools. With
    /// --session-checks xdp, pools are not used.
    #[arg(long = "pool", value_name = "PREFIX/LEN[,UNIT]")]
    pools: Vec<lns_bpf::abi::PoolSpec>,
    /// Units (addresses or prefixes) all pools may hold together: 1 bit of
    /// lns_pool_bits and 4 bytes of lns_pool_sessions each.
    #[arg(long, default_value_t = lns_bpf::abi::DEFAULT_POOL_UNITS)]
    pool_units: u32,
    /// Seconds between statistics lines on stdout; 0 for none.
    #[arg(long, default_value_t = 10)]
    stats_interval: u64,
    /// Write statistics as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Remove the pinned maps on exit (by default they stay, so a restart
    /// keeps the control plane's sessions).
    #[arg(long)]
    unpin_on_exit: bool,
}

fn parse_cores(spec: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
                if b < a {
                    bail!("bad core range {part}");
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse()?),
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mss = match args.mss_clamp.as_str() {
        "auto" => MssClamp::Auto,
        "off" => MssClamp::Off,
        n => MssClamp::Fixed(n.parse().context("--mss-clamp takes auto, off or a number")?),
    };
    let queues = match args.queues.as_str() {
        "all" => supervisor::rx_queue_count(&args.access_if)?,
        n => n.parse().context("--queues takes a number or all")?,
    };
    if queues == 0 {
        bail!("--queues must be at least 1");
    }
    let cores = match &args.cores {
        Some(spec) => parse_cores(spec)?,
        None => (0..queues as usize).collect(),
    };
    let opts = Options {
        access_if: args.access_if.clone(),
        core_if: args.core_if.clone().unwrap_or_else(|| args.access_if.clone()),
        queues,
        cores,
        xdp_mode: match args.xdp_mode {
            XdpModeArg::Native => lns_bpf::XdpMode::Native,
            XdpModeArg::Skb => lns_bpf::XdpMode::Skb,
        },
        bind: match args.bind {
            BindArg::Copy => BindMode::Copy,
            BindArg::Zerocopy => BindMode::ZeroCopy,
            BindArg::Auto => BindMode::Auto,
        },
        frames: args.frames,
        ring_size: args.ring_size,
        batch: args.batch,
        busy_poll: args.busy_poll,
        l2tp_port: args.l2tp_port,
        pin_dir: args.bpf_pin_dir.clone().unwrap_or_else(|| lns_bpf::default_pin_dir(&args.instance)),
        max_sessions: args.max_sessions,
        mode: match args.mode {
            ModeArg::Lns => Mode::Lns,
            ModeArg::Reflect => Mode::Reflect,
        },
        mss,
        pass_unknown_sessions: args.pass_unknown_sessions,
        worker_checks: matches!(args.session_checks, SessionChecksArg::Worker),
        nh_cache_ms: args.nh_cache_ms,
        unpin_on_exit: args.unpin_on_exit,
        pools: args.pools.clone(),
        pool_units: args.pool_units,
    };
    let mut running = supervisor::start(opts)?;
    let stop = running.stop_handle();
    let sig = Arc::clone(&stop);
    ctrlc::set_handler(move || sig.stop.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    eprintln!(
        "lns-dataplane: {} queue(s) on {}{}; maps in {}",
        running.queues(),
        args.access_if,
        args.core_if.as_ref().map(|c| format!(" and {c}")).unwrap_or_default(),
        running.pin_dir().display()
    );
    let interval = Duration::from_secs(args.stats_interval);
    let mut last = std::time::Instant::now();
    let nh_max_age = Duration::from_millis(args.nh_cache_ms.into());
    let mut nh_aged = std::time::Instant::now();
    while !stop.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        running.resolve_neighbours();
        running.sync_nh_epoch();
        if args.nh_cache_ms > 0 && nh_aged.elapsed() >= nh_max_age {
            // The program's cached next hops are good for one epoch.
            nh_aged = std::time::Instant::now();
            running.age_nexthops();
        }
        if args.stats_interval > 0 && last.elapsed() >= interval {
            last = std::time::Instant::now();
            let report = running.report();
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.text());
            }
        }
    }
    let report = running.report();
    running.shutdown()?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.text());
    }
    Ok(())
}
