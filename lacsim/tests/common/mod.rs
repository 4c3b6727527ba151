//! What the lacsim end-to-end tests share.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use lns_testlab::freeradius::{FreeRadius, FreeRadiusConfig};
use lns_testlab::{workspace_bin, Lab, Netns, NsProcess, PinDir};

/// Runs lns-lacsim in the LAC namespace against the LNS and returns its
/// JSON summary; a failed run fails the test with lacsim's stderr.
pub fn lacsim(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let bin = workspace_bin("lns-lacsim").unwrap();
    let mut a =
        vec!["netns", "exec", lab.lac.name(), bin.to_str().unwrap(), "--server", "192.0.2.1:1701", "--json"];
    a.extend_from_slice(args);
    let out = std::process::Command::new("ip").args(&a).output().unwrap();
    assert!(out.status.success(), "lns-lacsim failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(out.stdout.split(|b| *b == b'\n').find(|l| l.starts_with(b"{")).unwrap()).unwrap()
}

/// Held by tests of one binary that must not share the machine with each
/// other (a loss budget of 0.1 % with a thousand subscribers does not
/// survive two other labs starving the same two cores); a test that
/// failed does not poison it for the next.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// lns-lacsim's arguments for a round: `tunnels` tunnels of `per_tunnel`
/// subscribers each, named user%d with password pw%d (the lab's users
/// file), with what a test adds (traffic, hold, rate, any other flag).
pub struct Subscribers(Vec<String>);

impl Subscribers {
    pub fn new(tunnels: u32, per_tunnel: u32) -> Subscribers {
        Subscribers(Vec::new())
            .arg("--tunnels", &tunnels.to_string())
            .arg("--sessions-per-tunnel", &per_tunnel.to_string())
            .arg("--user", "user%d")
            .arg("--password", "pw%d")
    }

    /// `--traffic COUNT,SIZE`: echo requests per session and their size.
    pub fn traffic(self, spec: &str) -> Subscribers {
        self.arg("--traffic", spec)
    }

    /// `--hold SECS`: how long the sessions stay up after set-up.
    pub fn hold(self, secs: &str) -> Subscribers {
        self.arg("--hold", secs)
    }

    /// The subscribers' passwords (`%d`: the number), instead of pw%d.
    pub fn password(mut self, pattern: &str) -> Subscribers {
        if let Some(i) = self.0.iter().position(|a| a == "--password") {
            self.0[i + 1] = pattern.to_string();
        }
        self
    }

    pub fn arg(mut self, flag: &str, value: &str) -> Subscribers {
        self.0.push(flag.to_string());
        self.0.push(value.to_string());
        self
    }

    pub fn flag(mut self, flag: &str) -> Subscribers {
        self.0.push(flag.to_string());
        self
    }

    pub fn args(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }

    /// Runs lns-lacsim with these arguments ([`lacsim`]).
    pub fn run(&self, lab: &Lab) -> serde_json::Value {
        lacsim(lab, &self.args())
    }

    /// Starts lns-lacsim with these arguments and returns at once
    /// ([`spawn_lacsim`]; [`summary`] waits for its end).
    pub fn spawn(&self, lab: &Lab) -> NsProcess {
        spawn_lacsim(lab, &self.args())
    }
}

/// The LNS learns the LAC's and the core's MAC addresses before traffic,
/// so the fast path's first packets find their next hops.
pub fn resolve_neighbours(lab: &Lab) {
    lab.lns.exec("ping", &["-c1", "-W2", "192.0.2.2"]).unwrap();
    lab.lns.exec("ping", &["-c1", "-W2", "203.0.113.7"]).unwrap();
}

/// lns-dataplane on the lab's LNS, copy mode, room for 4096 sessions; the
/// control plane's IPv4 pool and the first /48 of its IPv6 pool declared
/// as pools (the rest of the IPv6 pool takes the program's lookups).
pub fn start_dp(lab: &Lab, pins: &PinDir, queues: &str, xdp_mode: &str) -> NsProcess {
    start_dp_with(lab, pins, queues, xdp_mode, &[])
}

/// [`start_dp`] with more flags.
pub fn start_dp_with(lab: &Lab, pins: &PinDir, queues: &str, xdp_mode: &str, extra: &[&str]) -> NsProcess {
    let mut args = vec![
        "--pool",
        "198.51.100.0/24",
        "--pool",
        "2001:db8:100::/48",
        "--queues",
        queues,
        "--xdp-mode",
        xdp_mode,
        "--bind",
        "copy",
        "--stats-interval",
        "0",
        "--max-sessions",
        "4096",
    ];
    args.extend_from_slice(extra);
    lab.start_dataplane(pins.path(), &args).unwrap()
}

/// `lnsctl --json ARGS` against the control socket `socket`; Null when it
/// does not answer (a control plane starting or stopping).
pub fn lnsctl_json(socket: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(lns_testlab::workspace_bin("lnsctl").unwrap())
        .arg("--control-socket")
        .arg(socket)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// `cmd args` in `ns`, whatever its exit status.
pub fn run_in(ns: &Netns, cmd: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("ip").args(["netns", "exec", ns.name(), cmd]).args(args).output().unwrap()
}

/// The IPv4 address `lns-lacsim --tun` puts on `dev` in `ns`, once it is
/// there (the session is up); fails the test if lacsim exits or 30 s pass.
pub fn wait_for_ipv4(ns: &Netns, dev: &str, lacsim: &mut NsProcess) -> String {
    let t0 = Instant::now();
    loop {
        // An error until the device exists.
        let out = ns.ip(&["-4", "-o", "addr", "show", "dev", dev]);
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        if let Some(a) = text.split_whitespace().skip_while(|w| *w != "inet").nth(1) {
            return a.split('/').next().unwrap().to_string();
        }
        assert!(lacsim.alive(), "lns-lacsim exited: {:?}", lacsim.output());
        assert!(t0.elapsed() < Duration::from_secs(30), "{dev} got no address: {:?}", lacsim.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sessions the control plane has forwarding (PPP up, in the data plane).
pub fn forwarding(socket: &std::path::Path) -> usize {
    let rows = lnsctl_json(socket, &["session", "list"]);
    rows.as_array().into_iter().flatten().filter(|r| r["dataplane_state"] == "forwarding").count()
}

/// Polls `cond` every 50 ms for up to `secs` seconds; whether it held.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Polls `f` every 100 ms until it gives a value; fails the test naming
/// `what` after `within`.
pub fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// lns-lacsim started in the LAC namespace against the LNS (JSON summary
/// on stdout), with `args` after the server.
pub fn spawn_lacsim(lab: &Lab, args: &[&str]) -> NsProcess {
    let mut a = vec!["--server", "192.0.2.1:1701", "--json"];
    a.extend_from_slice(args);
    NsProcess::spawn(&lab.lac, &workspace_bin("lns-lacsim").unwrap(), &a).unwrap()
}

/// One subscriber (user1, pw1) whose session's addresses lns-lacsim puts
/// on the TUN device `dev` in the LAC namespace, so real programs use it;
/// `extra` adds flags.
pub fn tun_subscriber(lab: &Lab, dev: &str, extra: &[&str]) -> NsProcess {
    let mut a = vec!["--user", "user1", "--password", "pw1", "--tun", dev];
    a.extend_from_slice(extra);
    spawn_lacsim(lab, &a)
}

/// The JSON summary lns-lacsim prints when it is done; fails the test if
/// it is still running after `secs`.
pub fn summary(sim: &mut NsProcess, secs: u64) -> serde_json::Value {
    assert!(wait_for(secs, || !sim.alive()), "lacsim did not finish: {:?}", sim.output());
    let (out, err) = sim.output();
    serde_json::from_str(out.lines().last().unwrap_or("{}")).unwrap_or_else(|_| panic!("{out} {err}"))
}

/// `lnsctl show stats`.
pub fn stats(socket: &Path) -> serde_json::Value {
    lnsctl_json(socket, &["show", "stats"])
}

/// `lnsctl session list`, one row per session (none while the control
/// plane does not answer).
pub fn session_rows(socket: &Path) -> Vec<serde_json::Value> {
    lnsctl_json(socket, &["session", "list"]).as_array().cloned().unwrap_or_default()
}

/// FreeRADIUS in the LNS namespace with these `users` entries, on
/// 127.0.0.1 at `auth_port` and `acct_port` (0: none) with `secret`.
pub fn freeradius(lab: &Lab, users: String, auth_port: u16, acct_port: u16, secret: &str) -> FreeRadius {
    FreeRadius::start(
        &lab.lns,
        FreeRadiusConfig { users, auth_port, acct_port, secret: secret.into(), ..Default::default() },
    )
    .unwrap()
}
