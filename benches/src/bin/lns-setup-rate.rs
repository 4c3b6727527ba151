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
//! `--store on` runs the control plane with `--keep-sessions`, so every
//! set-up is written to its session store (SQLite in its state directory,
//! one commit per pass of its loop); `--store both` measures without and
//! then with it on the same lab and prints both rates, and what the store
//! did (commits a second, records a commit, bytes a record).
//!
//! `--restart` measures a restart instead: one round of `--sessions`
//! (`--ncp ipv6`) brought up with the store on and held, the control plane
//! killed with SIGKILL and started again, and the time until it answers
//! `lnsctl show stats` with every session taken back (beside the restore's
//! own duration from its log), its memory (RSS) before and after, and that
//! lacsim saw no session ended.
//!
//! lacsim places calls at `--rate` but keeps at most `--max-outstanding`
//! (3,000) in progress, as a load generator's "max outstanding sessions"
//! does: unlimited, a round larger than the LNS answers in a few seconds
//! piles calls up until restart timers fire and retransmissions swamp
//! both sides. Its subscribers' LCP echoes follow the LNS's interval.
//! Besides the rate, each run prints the CPU time per session of the
//! control plane and of lacsim until the round had settled.
//!
//! `--loss PCT` drops that share of the L2TP datagrams each way (iptables
//! in the LAC and LNS namespaces): lacsim redials a call that ends before it
//! is up, and this says who gave up on calls (lacsim's PPP, the LNS) and why,
//! and checks that nothing is left in the LNS after the hang-up.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use lns_benches::{proc_cpu_split, proc_status_kib, MachineTicks};
use lns_testlab::{workspace_bin, ControlPlane, Lab, NsProcess, PinDir};

/// Whether the control plane keeps its sessions in its store.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreMode {
    Off,
    On,
    /// Off, then on, on the same lab.
    Both,
}

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
    /// Calls lns-lacsim has in progress at most (its --max-outstanding;
    /// 0: no limit, every call placed at --rate). Past what the LNS
    /// answers, calls offered at --rate pile up (20,000 a second for 50 s
    /// at a million) until their restart timers fire and retransmissions
    /// pile on: the limit keeps a set-up within about a second, so the
    /// rate measured is the LNS's, not a collapse's.
    #[arg(long, value_name = "N", default_value_t = 3000)]
    max_outstanding: u32,
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
    /// The control plane with its session store (`--keep-sessions`), without,
    /// or both one after the other.
    #[arg(long, value_enum, default_value = "off")]
    store: StoreMode,
    /// Measure a restart: --sessions up in one round with the store on,
    /// the control plane killed (SIGKILL) and started again.
    #[arg(long)]
    restart: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let per_round = args.tunnels * args.sessions_per_tunnel;
    // Session ids are 16 bits per bank of tunnels; the data plane's table
    // below gives a round this large banks enough (see its slots).
    let max_round = if args.ncp == "ipv6" { 1_000_000 } else { 250 };
    anyhow::ensure!(
        (1..=max_round).contains(&per_round),
        "tunnels × sessions-per-tunnel must be 1..={max_round} with --ncp {}",
        args.ncp
    );
    anyhow::ensure!((0.0..100.0).contains(&args.loss), "--loss must be 0 <= PCT < 100");
    if args.restart {
        anyhow::ensure!(
            args.sessions == per_round,
            "--restart brings one round up: --sessions must be tunnels × sessions-per-tunnel ({per_round})"
        );
    }
    // Headroom over the round: tunnels' ids fall into the session-id
    // banks (65,536 slots each) at random, not evenly.
    let slots = (per_round + per_round / 2 + 1024).next_power_of_two().max(4096).to_string();
    let lab = Lab::new(2)?;
    if args.loss > 0.0 {
        lns_benches::drop_l2tp(&lab.lac, args.loss)?;
        lns_benches::drop_l2tp(&lab.lns, args.loss)?;
    }
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
    let state = StateDir::new()?;
    if args.restart {
        return restart(&lab, pins.path(), &state, &args, per_round);
    }
    let modes: &[bool] = match args.store {
        StoreMode::Off => &[false],
        StoreMode::On => &[true],
        StoreMode::Both => &[false, true],
    };
    let mut outcomes = Vec::new();
    for &store in modes {
        outcomes.push(rates(&lab, pins.path(), &state, &args, per_round, store)?);
    }
    if let [off, on] = outcomes.as_slice() {
        println!(
            "set-up rate {:.0} sessions/s without the store, {:.0} sessions/s with it ({:.1} %) \
             ({} sessions ({}), {} tunnels × {} a round)",
            off.rate,
            on.rate,
            100.0 * on.rate / off.rate.max(1.0),
            args.sessions,
            args.ncp,
            args.tunnels,
            args.sessions_per_tunnel
        );
    }
    for o in &outcomes {
        if let Err(e) = &o.released {
            anyhow::bail!("{e:#}");
        }
    }
    Ok(())
}

/// The control plane's state directory (where its session store is), the
/// bench's own, removed at the end.
struct StateDir(std::path::PathBuf);

impl StateDir {
    fn new() -> Result<StateDir> {
        let dir = std::env::temp_dir().join(format!("lns-setup-rate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(StateDir(dir))
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap_or("/nonexistent")
    }

    /// The store's files' sizes (the database and its write-ahead log).
    fn store_bytes(&self) -> u64 {
        let file = lns_controlplane::daemon::store::FILE;
        [file.to_string(), format!("{file}-wal")]
            .iter()
            .filter_map(|f| std::fs::metadata(self.0.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// As a carrier configures it: DNS servers handed out in IPCP (else the
/// subscriber's DNS options are rejected, a round trip more) and the
/// authentication the subscribers use offered first.
fn start_cp(lab: &Lab, pins: &Path, users: u32, ppp: &str, extra: &[&str]) -> Result<ControlPlane> {
    let ppp = format!("dns = [\"203.0.113.53\", \"203.0.113.54\"]\nauth = [\"chap-md5\", \"pap\"]\n{ppp}");
    lab.start_controlplane_with(pins, users, &ppp, extra)
}

/// What one run of rounds gave.
struct Outcome {
    rate: f64,
    released: Result<()>,
}

/// Rounds of set-ups against a control plane started for them, with its
/// session store or without; prints what they gave.
fn rates(
    lab: &Lab,
    pins: &Path,
    state: &StateDir,
    args: &Args,
    per_round: u32,
    store: bool,
) -> Result<Outcome> {
    let cp_log = args.cp_log.clone().unwrap_or_else(|| if args.loss > 0.0 { "info" } else { "warn" }.into());
    let mut cp_args = vec!["--log", &cp_log];
    if store {
        cp_args.extend(["--keep-sessions", "--state-dir", state.path()]);
    }
    // LCP echoes at most about 2,000 a second each way (every 10 s, the
    // default, up to 20,000 sessions), the LNS's and the subscribers'
    // alike: more, on top of the set-ups, is more than lacsim and the LNS
    // answer on one small machine (a million subscribers echoing every
    // 10 s are 100,000 Echo-Requests a second, and as many replies).
    let echo = (per_round / 2000).max(10);
    let echo_secs = echo.to_string();
    let ppp = if echo > 10 { format!("echo_interval = \"{echo}s\"") } else { String::new() };
    let cp = start_cp(lab, pins, per_round, &ppp, &cp_args)?;
    // Its memory with the configuration (and the users file) read, before
    // any session.
    std::thread::sleep(Duration::from_millis(500));
    let (rss_before, _) = rss_mib(cp.proc.pid());
    let anon_before = proc_status_kib(
        &std::fs::read_to_string(format!("/proc/{}/status", cp.proc.pid())).unwrap_or_default(),
        "RssAnon:",
    );
    let rounds = args.sessions.div_ceil(per_round);
    let cpu = CpuSampler::start(cp.proc.pid());
    // Memory through the hang-up too: ending every session at once is a
    // peak of its own.
    let whole = CpuSampler::start(cp.proc.pid());
    let t0 = Instant::now();
    let res = lns_benches::setup_rounds(
        lab,
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
                "--echo-interval",
                &echo_secs,
                "--max-outstanding",
                &args.max_outstanding.to_string(),
            ],
        },
    )?;
    let elapsed = t0.elapsed();
    let (cp_cpu, cp_mem) = cpu.stop(if rounds == 1 { res.settled_unix_ms } else { None });
    // lacsim hung up (StopCCN of every tunnel) and left: until the data
    // plane's maps are empty.
    let emptied = lns_benches::wait_maps_empty(pins, Duration::from_secs(300));
    let (_, whole_mem) = whole.stop(None);
    let (_, peak) = rss_mib(cp.proc.pid());
    lns_benches::print_udp_errors(lab)?;
    if echo > 10 {
        println!(
            "LCP echo every {echo} s, the LNS's and lacsim's (at most 2,000 a second each way at {per_round} sessions)"
        );
    }
    print_scale(&res, per_round, rss_before, peak, pins, &emptied);
    let per_kib = |kib: u64| kib as f64 * 1024.0 / f64::from(per_round.max(1));
    println!(
        "control plane private memory (RssAnon, sampled every 100 ms) peak {:.0} MiB: {:.0} bytes per session of the round; \
         {:.0} MiB before the first session, so {:.0} bytes per session over that; its mapped files then (RssFile: \
         the data plane's maps it maps, in full, and its executable) {:.0} MiB",
        cp_mem.anon_kib as f64 / 1024.0,
        per_kib(cp_mem.anon_kib),
        anon_before as f64 / 1024.0,
        per_kib(cp_mem.anon_kib.saturating_sub(anon_before)),
        cp_mem.file_kib as f64 / 1024.0,
    );
    println!(
        "control plane private memory until the hang-up was over (RssAnon, every 100 ms) peak {:.0} MiB: {:.0} bytes \
         per session of the round, {:.0} over the start",
        whole_mem.anon_kib as f64 / 1024.0,
        per_kib(whole_mem.anon_kib),
        per_kib(whole_mem.anon_kib.saturating_sub(anon_before)),
    );
    // CPU time per session: which of the two a core limits, and what a
    // change to either costs, less blurred by a busy machine than the rate.
    let per_session = |s: f64| s * 1e6 / res.up.max(1) as f64;
    println!(
        "CPU per session up, until the last was settled{}: control plane {:.0} µs, lacsim {:.0} µs",
        if rounds == 1 { "" } else { " (control plane: over every round, hang-ups included)" },
        per_session(cp_cpu.total()),
        per_session(res.lacsim_setup_cpu_s)
    );
    print_cpu_split(&cp_cpu, &res, per_session);
    // With loss a StopCCN may need its retransmissions: give the LNS time.
    let released = lns_benches::assert_released(pins, &cp.socket, Duration::from_secs(60));
    let stats = lns_benches::lns_stats(&cp.socket)?;
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
    if store {
        print_store(&stats, elapsed, res.up);
    }
    if !res.slowest.is_empty() {
        let rows: Vec<String> = res
            .slowest
            .iter()
            .map(|[total, call, ppp, address, tunnel, session]| {
                format!("{total:.0} = {call:.0} + {ppp:.0} + {address:.0} (tunnel {tunnel:.0}, session {session:.0})")
            })
            .collect();
        println!(
            "slowest set-ups, ms = call until connected + PPP until a network protocol + until its addresses: {}",
            rows.join("; ")
        );
    }
    println!(
        "{} sessions up ({}), {} failed, in {rounds} rounds of {per_round} ({} tunnels × {}), store {}: \
         set-up rate {:.0} sessions/s (mean of rounds), latency p50 {:.2} ms (median of rounds), \
         p99 {:.2} ms (worst round), max {:.2} ms",
        res.up,
        args.ncp,
        res.failed,
        args.tunnels,
        args.sessions_per_tunnel,
        if store { "on" } else { "off" },
        res.rate,
        res.p50_ms,
        res.p99_ms,
        res.max_ms
    );
    drop(cp);
    Ok(Outcome { rate: res.rate, released })
}

/// What the store did over `elapsed` (set-ups and hang-ups of
/// `sessions`), from `lnsctl show stats`: how often it committed, how much
/// each commit carried, the records per session, the share of the time
/// spent committing, and the checkpoints (on a thread of their own).
fn print_store(stats: &serde_json::Value, elapsed: Duration, sessions: u64) {
    let n = |k: &str| stats["store"][k].as_u64().unwrap_or(0);
    let (commits, records, bytes, us) =
        (n("commits"), n("records_written"), n("bytes_written"), n("commit_us"));
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "store: {commits} commits ({:.0}/s over {secs:.1} s of set-up and hang-up; {:.2} passes of the loop a \
         commit), {records} records written ({:.1} a commit, {:.0} bytes each), {} removed; {:.2} s committing \
         (on its thread: {:.1} % of the time, {:.0} µs a commit); {} commit errors",
        commits as f64 / secs,
        n("passes") as f64 / commits.max(1) as f64,
        records as f64 / commits.max(1) as f64,
        bytes as f64 / records.max(1) as f64,
        n("records_removed"),
        us as f64 / 1e6,
        100.0 * us as f64 / 1e6 / secs,
        us as f64 / commits.max(1) as f64,
        n("commit_errors"),
    );
    println!(
        "store: {:.2} session records and {:.2} tunnel records written per session; {} checkpoints \
         ({:.2} s, {} holding up commits, {} errors; off the loop); {:.2} s taking the changed records from the \
         core ({:.1} % of the time)",
        n("session_records") as f64 / sessions.max(1) as f64,
        n("tunnel_records") as f64 / sessions.max(1) as f64,
        n("checkpoints"),
        n("checkpoint_us") as f64 / 1e6,
        n("checkpoints_blocking"),
        n("checkpoint_errors"),
        n("encode_us") as f64 / 1e6,
        100.0 * n("encode_us") as f64 / 1e6 / secs,
    );
}

/// What a large round shows: the set-up rate per 100,000 sessions, the
/// control plane's peak memory per session, lacsim's, the data plane's
/// map memory and how long the hang-up took to empty the maps.
fn print_scale(
    res: &lns_benches::SetupRounds,
    per_round: u32,
    rss_before: f64,
    peak: f64,
    pins: &Path,
    emptied: &Result<std::time::SystemTime>,
) {
    let mut last = 0.0;
    for (i, t) in res.up_marks.iter().enumerate() {
        println!(
            "sessions {:>9}-{:<9} up at {:.0} sessions/s ({t:.1} s after the first call)",
            i * 100_000,
            (i + 1) * 100_000,
            100_000.0 / (t - last).max(1e-9)
        );
        last = *t;
    }
    let per = |mib: f64| mib * 1024.0 * 1024.0 / f64::from(per_round.max(1));
    println!(
        "control plane peak RSS (VmHWM) {peak:.0} MiB: {:.0} bytes per session of the round ({per_round});          {rss_before:.0} MiB before the first session (configuration, {per_round} local users), so {:.0} bytes          per session over that",
        per(peak),
        per(peak - rss_before)
    );
    println!(
        "lacsim peak RSS {:.0} MiB: {:.0} bytes per subscriber",
        res.lacsim_peak_rss_kib as f64 / 1024.0,
        per(res.lacsim_peak_rss_kib as f64 / 1024.0)
    );
    match lns_benches::map_memory(pins) {
        Ok(maps) => {
            let total: u64 = maps.iter().map(|m| m.1).sum();
            let top: Vec<String> = maps
                .iter()
                .take(6)
                .map(|(n, b)| format!("{n} {:.1}", *b as f64 / (1 << 20) as f64))
                .collect();
            println!(
                "data plane maps: {:.1} MiB in {} maps (largest, MiB: {})",
                total as f64 / (1 << 20) as f64,
                maps.len(),
                top.join(", ")
            );
        }
        Err(e) => println!("data plane maps: {e:#}"),
    }
    match (emptied, res.hung_up_unix_ms) {
        (Ok(at), Some(hung_up)) => {
            let at_ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            println!(
                "hang-up (StopCCN of every tunnel) until every map was empty: {:.2} s",
                (at_ms - hung_up) / 1000.0
            );
        }
        (Ok(_), None) => println!("maps empty after the hang-up (lacsim gave no time of its hang-up)"),
        (Err(e), _) => println!("after the hang-up: {e:#}"),
    }
}

/// Samples a process's CPU time (user and system) every 20 ms, so the
/// time it had used at a given moment (when lacsim saw every session
/// settled) can be told afterwards.
struct CpuSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<CpuSample>, MemPeak)>,
}

/// One look: when (ms since the epoch), and the CPU used until then.
#[derive(Clone, Copy, Default)]
struct CpuSample {
    at_ms: f64,
    cpu: CpuUse,
}

/// CPU time: the process's user and system seconds, and the whole
/// machine's ticks; used since the start, or over a sampled stretch.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    user: f64,
    system: f64,
    machine: MachineTicks,
}

impl CpuUse {
    fn total(&self) -> f64 {
        self.user + self.system
    }

    fn since(&self, before: &CpuUse) -> CpuUse {
        CpuUse {
            user: self.user - before.user,
            system: self.system - before.system,
            machine: self.machine.since(&before.machine),
        }
    }
}

/// The largest private memory (RssAnon) a process had in the samples, and
/// its mapped files (RssFile) then. VmHWM counts both, and the control
/// plane's mapped files are mostly the data plane's BPF maps (a BPF
/// array's mapping is resident in full from mmap on): memory the maps'
/// figure counts already.
#[derive(Clone, Copy, Default)]
struct MemPeak {
    anon_kib: u64,
    file_kib: u64,
}

impl CpuSampler {
    /// Samples `pid`'s CPU time every 20 ms and its memory every 100 ms.
    fn start(pid: u32) -> CpuSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut mem = MemPeak::default();
            let mut n = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if let (Some((user, system)), Some(machine)) = (proc_cpu_split(&stat), MachineTicks::read()) {
                    let at_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
                    let cpu = CpuUse { user: user as f64 / 100.0, system: system as f64 / 100.0, machine };
                    samples.push(CpuSample { at_ms, cpu });
                }
                if n.is_multiple_of(5) {
                    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    let anon = proc_status_kib(&status, "RssAnon:");
                    if anon > mem.anon_kib {
                        mem = MemPeak { anon_kib: anon, file_kib: proc_status_kib(&status, "RssFile:") };
                    }
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (samples, mem)
        });
        CpuSampler { stop, thread }
    }

    /// Seconds of CPU from the first sample to the last one at or before
    /// `until` (ms since the epoch), or to the last one; and the memory
    /// peak of the samples.
    fn stop(self, until: Option<f64>) -> (CpuUse, MemPeak) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (samples, mem) = self.thread.join().unwrap_or_default();
        let first = samples.first().copied().unwrap_or_default();
        let last = samples
            .iter()
            .rev()
            .find(|s| until.is_none_or(|u| s.at_ms <= u))
            .or(samples.last())
            .copied()
            .unwrap_or(first);
        (last.cpu.since(&first.cpu), mem)
    }
}

/// Where the set-up's CPU went: each process's user and kernel time, and
/// the whole machine's (all of the set-up's work shares its cores: the
/// kernel's receive processing of a datagram runs in softirq on whichever
/// CPU sent it, so the sender is charged for it as system time).
fn print_cpu_split(cp: &CpuUse, res: &lns_benches::SetupRounds, per_session: impl Fn(f64) -> f64) {
    let m = &cp.machine;
    let ticks = m.total().max(1) as f64;
    let pct = |t: u64| 100.0 * t as f64 / ticks;
    let lacsim_user = res.lacsim_setup_cpu_s - res.lacsim_setup_cpu_system_s;
    // Ticks are 1/100 s; the machine's busy time per session, every CPU.
    let busy_us = per_session(m.busy() as f64 / 100.0);
    println!(
        "CPU per session, split: control plane {:.0} µs user + {:.0} µs system, lacsim {:.0} µs user + {:.0} µs \
         system; the whole machine over the same time: {:.1} % user, {:.1} % system, {:.1} % interrupts, \
         {:.1} % idle, {:.1} % stolen, {:.0} µs busy per session (all CPUs)",
        per_session(cp.user),
        per_session(cp.system),
        per_session(lacsim_user),
        per_session(res.lacsim_setup_cpu_system_s),
        pct(m.user),
        pct(m.system),
        pct(m.interrupts()),
        pct(m.idle),
        pct(m.steal),
        busy_us,
    );
    // What the machine could do at all: its CPUs over the busy time a
    // session took (the LAC emulator's included: it shares them here).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cp_us = per_session(cp.total());
    if busy_us > 0.0 {
        println!(
            "ceiling of this machine for this set-up: {cpus:.0} CPUs / {busy_us:.0} µs = {:.0} sessions/s at 100 % \
             busy (the control plane's {cp_us:.0} µs alone: {:.0} sessions/s on a CPU of its own)",
            cpus * 1e6 / busy_us,
            1e6 / cp_us.max(1.0),
        );
    }
}

/// The resident and peak memory of process `pid`, MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mib = |key: &str| proc_status_kib(&status, key) as f64 / 1024.0;
    (mib("VmRSS:"), mib("VmHWM:"))
}

/// `--restart`: one round up with the store on and held; SIGKILL of the
/// control plane; the time its successor takes to take them back.
fn restart(lab: &Lab, pins: &Path, state: &StateDir, args: &Args, per_round: u32) -> Result<()> {
    // The restore's own line ("took back ...") is an info line of the
    // driver; the rest of the control plane as asked.
    let level = args.cp_log.clone().unwrap_or_else(|| "warn".into());
    let cp_log = format!("{level},lns_controlplane::daemon::server=info");
    let cp_args = ["--log", cp_log.as_str(), "--keep-sessions", "--state-dir", state.path()];
    // LCP echoes a minute apart, as at this scale: every 10 s (the
    // default) 100,000 sessions are 10,000 echoes a second each way.
    let ppp = "echo_interval = \"60s\"";
    let mut cp = start_cp(lab, pins, per_round, ppp, &cp_args)?;
    let (timeout, redial) = (args.timeout.to_string(), args.redial_holdoff.to_string());
    let extra = [
        "--ncp",
        &args.ncp,
        "--timeout",
        &timeout,
        // A call the overloaded LNS gave up on is placed again.
        "--redial-holdoff",
        &redial,
        // Held until told to hang up.
        "--hold",
        "86400",
        // The subscribers' echoes as the LNS's.
        "--echo-interval",
        "60",
    ];
    let round = lns_benches::Round {
        tunnels: args.tunnels,
        sessions_per_tunnel: args.sessions_per_tunnel,
        rate: args.rate,
        password: "pw%d",
        extra: &extra,
    };
    let owned = round.lacsim_args();
    let lacsim_args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut sim = NsProcess::spawn(&lab.lac, &workspace_bin("lns-lacsim")?, &lacsim_args)?;
    let t0 = Instant::now();
    let all_up = |stats: &serde_json::Value| {
        let n = |k: &str| stats[k].as_u64().unwrap_or(0);
        let usable = if args.ncp == "ipv4" { n("addresses_in_use") } else { n("ipv6_prefixes_in_use") };
        n("sessions") == u64::from(per_round) && usable == u64::from(per_round)
    };
    loop {
        // A control plane busy with set-ups may not answer in lnsctl's time.
        let stats = lns_benches::lns_stats(&cp.socket);
        if stats.as_ref().is_ok_and(all_up) {
            break;
        }
        if !sim.alive() || t0.elapsed().as_secs_f64() > args.timeout + 30.0 {
            anyhow::bail!(
                "{per_round} sessions not up after {:?}: {stats:?} {:?}",
                t0.elapsed(),
                sim.output()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let up = t0.elapsed();
    // Settled: what set-up left to write is written.
    std::thread::sleep(Duration::from_secs(2));
    let stats = lns_benches::lns_stats(&cp.socket)?;
    print_store(&stats, up, u64::from(per_round));
    let (rss, peak) = rss_mib(cp.proc.pid());
    println!(
        "{per_round} sessions ({}, {} tunnels × {}) up with the store on in {:.2} s ({:.0} sessions/s as the \
         control plane counts them); control plane RSS {rss:.0} MiB (peak {peak:.0} MiB); store {:.1} MiB on disk",
        args.ncp,
        args.tunnels,
        args.sessions_per_tunnel,
        up.as_secs_f64(),
        f64::from(per_round) / up.as_secs_f64(),
        state.store_bytes() as f64 / (1 << 20) as f64
    );

    cp.proc.kill();
    let t0 = Instant::now();
    let cp = start_cp(lab, pins, per_round, ppp, &cp_args)?;
    let socket_after = t0.elapsed();
    // lnsctl gives up after a while: asked again until the loop answers.
    let stats = loop {
        match lns_benches::lns_stats(&cp.socket) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() > Duration::from_secs(300) => return Err(e),
            Err(_) => {}
        }
    };
    let answered = t0.elapsed();
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    let restored = n("sessions_restored");
    let (rss, peak) = rss_mib(cp.proc.pid());
    let log = cp.proc.output().1;
    let field = |message: &str, key: &str| {
        log.lines()
            .find(|l| l.contains(message))
            .and_then(|l| l.split_once(&format!(" {key}=")))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "restart after SIGKILL: {restored} of {per_round} sessions and {} tunnels taken back, {} ended by \
         reconciliation {}; lnsctl show stats answered {:.2} s after the start (control socket after {:.2} s, \
         {} store records read; the restore itself took {}); control plane RSS {rss:.0} MiB (peak {peak:.0} MiB)",
        n("tunnels_restored"),
        n("sessions_reconciled"),
        stats["sessions_reconciled_by"],
        answered.as_secs_f64(),
        socket_after.as_secs_f64(),
        field("session store", "records"),
        field("took back the sessions", "took"),
    );
    anyhow::ensure!(restored == u64::from(per_round) && all_up(&stats), "not all taken back: {stats}");
    // The subscribers hang up; they must not have noticed the restart.
    std::thread::sleep(Duration::from_secs(2));
    sim.stop(60);
    let out = sim.output().0;
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("{}")).context("lacsim's summary")?;
    let m = |k: &str| summary[k].as_u64().unwrap_or(0);
    println!(
        "lacsim: {} sessions up ({:.0} sessions/s), {} ended by the LNS, {} calls ended by the LNS, \
         {} PPP restarts",
        m("sessions_up"),
        summary["setup_rate"].as_f64().unwrap_or(0.0),
        m("sessions_ended_by_lns"),
        m("calls_ended_by_lns"),
        m("ppp_restarts"),
    );
    lns_benches::assert_released(pins, &cp.socket, Duration::from_secs(120))?;
    anyhow::ensure!(
        m("sessions_up") == u64::from(per_round) && m("sessions_ended_by_lns") == 0,
        "the subscribers noticed the restart: {summary}"
    );
    Ok(())
}
