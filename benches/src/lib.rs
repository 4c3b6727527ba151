//! Benchmark helpers shared by the criterion benches and the load harness.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lns_testlab::{workspace_bin, Lab, Netns};

/// What rounds of lns-lacsim set-up gave.
#[derive(Debug, Default)]
pub struct SetupRounds {
    pub rounds: u32,
    pub up: u64,
    pub failed: u64,
    /// Calls that ended before they were up, by lacsim's own PPP and by
    /// the LNS (each attempt counts), and why (lacsim's causes).
    pub given_up: u64,
    pub ended_by_lns: u64,
    pub causes: BTreeMap<String, u64>,
    /// Calls and tunnels lacsim placed again (`--redial-holdoff`).
    pub redials: u64,
    pub tunnel_redials: u64,
    /// Times lacsim's PPP started a timed-out link again within its call.
    pub ppp_restarts: u64,
    /// Mean of the rounds' set-up rates (sessions/s).
    pub rate: f64,
    /// Median of the rounds' p50 latency, worst round's p99, worst max (ms).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The slowest set-ups of the round with the slowest one (lacsim's
    /// `slowest_setups`): total, call, PPP to the first network protocol,
    /// then to the addresses (ms), and the tunnel and session ids.
    pub slowest: Vec<[f64; 6]>,
    /// The last round's seconds from its first call until every 100,000th
    /// session was up (lacsim's `up_marks`).
    pub up_marks: Vec<f64>,
    /// When lacsim hung up the last round (StopCCN of every tunnel), ms
    /// since the epoch.
    pub hung_up_unix_ms: Option<f64>,
    /// lacsim's CPU time until each round's sessions had settled, summed
    /// over the rounds (s), and when the last round settled (ms since the
    /// epoch).
    pub lacsim_setup_cpu_s: f64,
    /// Of which in the kernel (system time).
    pub lacsim_setup_cpu_system_s: f64,
    pub settled_unix_ms: Option<f64>,
    /// lacsim's largest peak resident memory over the rounds, KiB.
    pub lacsim_peak_rss_kib: u64,
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

impl Round<'_> {
    /// lns-lacsim's arguments for the round: CHAP subscribers user1,
    /// user2, ... against the lab's LNS, then `extra`.
    pub fn lacsim_args(&self) -> Vec<String> {
        let (t, s, r) =
            (self.tunnels.to_string(), self.sessions_per_tunnel.to_string(), self.rate.to_string());
        let mut a: Vec<String> =
            ["--server", "192.0.2.1:1701", "--json", "--tunnels", &t, "--sessions-per-tunnel", &s]
                .iter()
                .chain(&["--rate", &r, "--auth", "chap", "--user", "user%d", "--password", self.password])
                .map(|x| x.to_string())
                .collect();
        a.extend(self.extra.iter().map(|x| x.to_string()));
        a
    }
}

/// Runs `rounds` of lns-lacsim (CHAP subscribers user1, user2, ...) in the
/// LAC namespace against the lab's LNS, each brought up, held for nothing
/// and hung up, with a pause between for the LNS to release them.
pub fn setup_rounds(lab: &Lab, rounds: u32, round: &Round) -> Result<SetupRounds> {
    let lacsim = workspace_bin("lns-lacsim")?;
    let args = round.lacsim_args();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut r = SetupRounds { rounds, ..SetupRounds::default() };
    let (mut rate_sum, mut p50s) = (0.0, Vec::new());
    for _ in 0..rounds {
        let out = lab.lac.exec(lacsim.to_str().context("path")?, &a)?;
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).context("lacsim summary")?;
        r.up += j["sessions_up"].as_u64().unwrap_or(0);
        r.failed += j["sessions_failed"].as_u64().unwrap_or(0);
        r.given_up += j["calls_given_up"].as_u64().unwrap_or(0);
        r.ended_by_lns += j["calls_ended_by_lns"].as_u64().unwrap_or(0);
        r.redials += j["redials"].as_u64().unwrap_or(0);
        r.tunnel_redials += j["tunnel_redials"].as_u64().unwrap_or(0);
        r.ppp_restarts += j["ppp_restarts"].as_u64().unwrap_or(0);
        if let Some(causes) = j["calls_lost_causes"].as_object() {
            for (why, n) in causes {
                *r.causes.entry(why.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        rate_sum += j["setup_rate"].as_f64().unwrap_or(0.0);
        p50s.push(j["setup_latency_ms_p50"].as_f64().unwrap_or(0.0));
        r.p99_ms = r.p99_ms.max(j["setup_latency_ms_p99"].as_f64().unwrap_or(0.0));
        let max = j["setup_latency_ms_max"].as_f64().unwrap_or(0.0);
        if max >= r.max_ms {
            let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
            r.slowest = j["slowest_setups"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| {
                            [
                                f(v, "total_ms"),
                                f(v, "call_ms"),
                                f(v, "ppp_ms"),
                                f(v, "address_ms"),
                                f(v, "tunnel"),
                                f(v, "session"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
        r.max_ms = r.max_ms.max(max);
        r.up_marks = j["up_marks"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        r.hung_up_unix_ms = j["hung_up_unix_ms"].as_f64();
        r.settled_unix_ms = j["settled_unix_ms"].as_f64();
        r.lacsim_setup_cpu_s += j["settled_cpu_s"].as_f64().unwrap_or(0.0);
        r.lacsim_setup_cpu_system_s += j["settled_cpu_system_s"].as_f64().unwrap_or(0.0);
        r.lacsim_peak_rss_kib = r.lacsim_peak_rss_kib.max(j["peak_rss_kib"].as_u64().unwrap_or(0));
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

/// Drops `percent` % of the L2TP datagrams (UDP port 1701, either end)
/// arriving in `ns`, at random (iptables' statistic match), after a rule
/// that only counts them. The rules live in the namespace and go with it.
pub fn drop_l2tp(ns: &Netns, percent: f64) -> Result<()> {
    let p = format!("{:.6}", percent / 100.0);
    let base = ["-A", "INPUT", "-p", "udp", "-m", "multiport", "--ports", "1701"];
    ns.exec("iptables", &base).context("iptables (apt-get install iptables)")?;
    let mut drop = base.to_vec();
    drop.extend_from_slice(&["-m", "statistic", "--mode", "random", "--probability", &p, "-j", "DROP"]);
    ns.exec("iptables", &drop)?;
    Ok(())
}

/// (L2TP datagrams that arrived in `ns`, of which dropped) by the rules of
/// [`drop_l2tp`].
pub fn l2tp_dropped(ns: &Netns) -> Result<(u64, u64)> {
    let out = ns.exec("iptables", &["-L", "INPUT", "-v", "-n", "-x"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let counts: Vec<(u64, bool)> = text
        .lines()
        .filter(|l| l.contains("1701"))
        .filter_map(|l| {
            let pkts = l.split_whitespace().next()?.parse().ok()?;
            Some((pkts, l.contains("DROP")))
        })
        .collect();
    let seen = counts.iter().filter(|(_, d)| !d).map(|(n, _)| n).sum();
    let dropped = counts.iter().filter(|(_, d)| *d).map(|(n, _)| n).sum();
    Ok((seen, dropped))
}

/// `lnsctl show stats` of the control plane behind `socket`, as JSON.
pub fn lns_stats(socket: &Path) -> Result<serde_json::Value> {
    let out = std::process::Command::new(workspace_bin("lnsctl")?)
        .args(["--control-socket", socket.to_str().context("socket path")?, "--json", "show", "stats"])
        .output()
        .context("running lnsctl")?;
    if !out.status.success() {
        bail!("lnsctl show stats: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("lnsctl show stats")
}

/// Waits up to `wait` until nothing a session holds is left: no entry in
/// the data plane's maps (pinned in `pins`), no slot, address or prefix
/// held by the control plane. Err says what is left.
pub fn assert_released(pins: &Path, socket: &Path, wait: Duration) -> Result<()> {
    let maps = lns_bpf::open_pinned(pins).context("opening the pinned maps")?;
    let t0 = Instant::now();
    loop {
        let counts = maps.entry_counts();
        let stats = lns_stats(socket)?;
        let held = ["sessions", "slots_in_use", "addresses_in_use", "ipv6_prefixes_in_use"]
            .map(|k| (k, stats[k].as_u64().unwrap_or(u64::MAX)));
        if counts.values().all(|n| *n == 0) && held.iter().all(|(_, n)| *n == 0) {
            return Ok(());
        }
        if t0.elapsed() > wait {
            bail!("left behind after {wait:?}: maps {counts:?}, control plane {held:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The kernel memory of every map pinned in `pins` (bpftool's
/// `bytes_memlock`), by name, largest first.
pub fn map_memory(pins: &Path) -> Result<Vec<(String, u64)>> {
    let mut maps = Vec::new();
    for entry in std::fs::read_dir(pins).with_context(|| format!("reading {}", pins.display()))? {
        let path = entry?.path();
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "show", "pinned"])
            .arg(&path)
            .output()
            .context("running bpftool (apt-get install bpftool)")?;
        let Ok(j) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { continue };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(bytes) = j["bytes_memlock"].as_u64() {
            maps.push((name, bytes));
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.1));
    Ok(maps)
}

/// Waits up to `wait` until every map a session writes (pinned in
/// `pins`) is empty; the time it happened. Err says what is left.
pub fn wait_maps_empty(pins: &Path, wait: Duration) -> Result<std::time::SystemTime> {
    let maps = lns_bpf::open_pinned(pins).context("opening the pinned maps")?;
    let t0 = Instant::now();
    loop {
        let counts = maps.entry_counts();
        if counts.values().all(|n| *n == 0) {
            return Ok(std::time::SystemTime::now());
        }
        if t0.elapsed() > wait {
            bail!("maps not empty after {wait:?}: {counts:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Counts the lines of a tracing log (the control plane's stderr) whose
/// message is `message`, by what follows ` field=` on the line (the field's
/// value and the fields after it).
pub fn count_log(log: &str, message: &str, field: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(message)) {
        let value = line.split_once(&format!(" {field}=")).map_or("?", |(_, rest)| rest);
        *out.entry(value.to_string()).or_default() += 1;
    }
    out
}

/// User plus system time (clock ticks of 1/100 s) from a /proc/PID/stat
/// line: fields 14 and 15, counted after the command's closing parenthesis
/// (the command may hold spaces and parentheses).
pub fn proc_cpu_ticks(stat: &str) -> Option<u64> {
    proc_cpu_split(stat).map(|(u, s)| u + s)
}

/// User and system time, clock ticks, from a /proc/PID/stat line.
pub fn proc_cpu_split(stat: &str) -> Option<(u64, u64)> {
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The whole machine's time from /proc/stat's `cpu` line, clock ticks
/// (1/100 s) summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// User and nice (guest time is counted in it already).
    pub user: u64,
    pub system: u64,
    /// Hardware interrupts.
    pub irq: u64,
    /// Software interrupts: the kernel's packet processing that no process
    /// is charged for.
    pub softirq: u64,
    /// Idle and waiting for I/O.
    pub idle: u64,
    pub steal: u64,
}

impl MachineTicks {
    pub fn parse(proc_stat: &str) -> Option<MachineTicks> {
        let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
        // user nice system idle iowait irq softirq steal guest guest_nice
        let v: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        (v.len() >= 4).then(|| MachineTicks {
            user: at(0) + at(1),
            system: at(2),
            idle: at(3) + at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
        })
    }

    /// Read now from /proc/stat.
    pub fn read() -> Option<MachineTicks> {
        MachineTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    pub fn since(&self, before: &MachineTicks) -> MachineTicks {
        MachineTicks {
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
            irq: self.irq.saturating_sub(before.irq),
            softirq: self.softirq.saturating_sub(before.softirq),
            idle: self.idle.saturating_sub(before.idle),
            steal: self.steal.saturating_sub(before.steal),
        }
    }

    /// Hardware and software interrupts.
    pub fn interrupts(&self) -> u64 {
        self.irq + self.softirq
    }

    /// Time not idle.
    pub fn busy(&self) -> u64 {
        self.user + self.system + self.interrupts() + self.steal
    }

    pub fn total(&self) -> u64 {
        self.busy() + self.idle
    }
}

/// The value of `key` (for example "VmHWM:") in a /proc/PID/status text,
/// KiB; 0 when absent.
pub fn proc_status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod proc_tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_from_after_the_command_even_with_parentheses_in_it() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0";
        assert_eq!(proc_cpu_ticks(stat), Some(281));
        assert_eq!(proc_cpu_ticks("42 (x) S 1"), None, "too short");
        let m =
            MachineTicks::parse("cpu  100 5 40 900 10 1 30 2 0 0\ncpu0 50 2 20 450 5 0 15 1 0 0\n").unwrap();
        assert_eq!(m, MachineTicks { user: 105, system: 40, idle: 910, irq: 1, softirq: 30, steal: 2 });
        assert_eq!((m.busy(), m.interrupts(), m.total()), (178, 31, 1088));
        assert_eq!(MachineTicks::parse("intr 1 2"), None);
        let status = "Name:\tx\nVmHWM:\t  941196 kB\nRssAnon:\t   51976 kB\n";
        assert_eq!(proc_status_kib(status, "VmHWM:"), 941_196);
        assert_eq!(proc_status_kib(status, "RssAnon:"), 51_976);
        assert_eq!(proc_status_kib(status, "RssFile:"), 0);
    }
}
