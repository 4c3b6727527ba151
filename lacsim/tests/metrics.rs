//! `/metrics` of the LNS while lns-lacsim brings subscribers up and down:
//! the families are there, the counters move, and `promtool check
//! metrics` (Prometheus's own linter) has nothing to say; the same of the
//! data plane's while subscribers' traffic crosses it, whose messages in
//! `--log-format json` are JSON lines; and the Grafana dashboard asks only
//! for families the two processes serve.

mod common;
use common::{lacsim, resolve_neighbours, start_dp, start_dp_with, Subscribers};

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use lns_testlab::{Lab, PinDir, UdpEcho};

fn scrape(lab: &Lab, url: &str) -> String {
    let out = lab.lns.exec("curl", &["-sf", "--max-time", "5", url]).unwrap();
    assert!(out.status.success(), "scraping {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the sample `name{labels}` (exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every sample of `name` whose labels contain `labels` (e.g.
/// `verdict="redirect"`; empty: all).
fn total(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn promtool_check(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

#[test]
fn the_control_plane_serves_metrics_that_follow_its_subscribers() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let _cp = lab.start_controlplane(pins.path(), 10, &["--metrics-listen", "192.0.2.1:9701"]).unwrap();
    let url = "http://192.0.2.1:9701/metrics";
    let before = scrape(&lab, url);
    assert_eq!(sample(&before, "lns_session_setups_total"), Some(0.0), "{before}");
    assert_eq!(sample(&before, "lns_pool_addresses{pool=\"default\"}"), Some(254.0), "{before}");
    promtool_check(&before);

    let lab_ref = &lab;
    let during = std::thread::scope(|s| {
        let sim = s.spawn(move || lacsim(lab_ref, &Subscribers::new(1, 5).hold("3").args()));
        let t0 = Instant::now();
        let during = loop {
            let text = scrape(&lab, url);
            if sample(&text, "lns_sessions{state=\"forwarding\"}") == Some(5.0) {
                break text;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "never 5 forwarding:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let summary = sim.join().unwrap();
        assert_eq!(summary["sessions_up"].as_u64(), Some(5), "{summary}");
        during
    });
    assert_eq!(sample(&during, "lns_pool_addresses_used{pool=\"default\"}"), Some(5.0), "{during}");
    assert_eq!(sample(&during, "lns_tunnels{state=\"established\"}"), Some(1.0), "{during}");
    promtool_check(&during);

    let t0 = Instant::now();
    let after = loop {
        let text = scrape(&lab, url);
        let teardowns: f64 = text
            .lines()
            .filter(|l| l.starts_with("lns_session_teardowns_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if teardowns == 5.0 {
            break text;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "teardowns not counted:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sample(&after, "lns_session_setups_total"), Some(5.0), "{after}");
    assert_eq!(sample(&after, "lns_pool_addresses_used{pool=\"default\"}"), Some(0.0), "{after}");
    assert!(sample(&after, "lns_datagrams_received_total").is_some_and(|v| v > 20.0), "{after}");
    promtool_check(&after);
}

#[test]
fn the_data_plane_serves_metrics_that_follow_the_traffic() {
    let lab = Lab::new(2).unwrap();
    let pins = PinDir::new().unwrap();
    let mut dp = start_dp_with(
        &lab,
        &pins,
        "2",
        "native",
        &["--metrics-listen", "192.0.2.1:9702", "--log-format", "json"],
    );
    let _cp = lab.start_controlplane(pins.path(), 10, &["--metrics-listen", "192.0.2.1:9701"]).unwrap();
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let url = "http://192.0.2.1:9702/metrics";
    let before = scrape(&lab, url);
    for family in [
        "# TYPE lns_xdp_frames_total counter",
        "# TYPE lns_xdp_verdicts_total counter",
        "# TYPE lns_worker_rx_packets_total counter",
        "# TYPE lns_worker_tx_packets_total counter",
        "# TYPE lns_worker_forwarded_packets_total counter",
        "# TYPE lns_worker_drops_total counter",
        "# TYPE lns_worker_batches_total counter",
        "# TYPE lns_worker_nexthop_lookups_total counter",
        "# TYPE lns_worker_batch_seconds histogram",
        "# TYPE lns_dataplane_neighbour_probes_total counter",
        "lns_worker_rx_packets_total{worker=\"1\"}",
        "lns_worker_drops_total{worker=\"0\",reason=\"spoofed\"}",
    ] {
        assert!(before.contains(family), "{family} missing:\n{before}");
    }
    assert_eq!(total(&before, "lns_worker_forwarded_packets_total", ""), 0.0, "{before}");
    promtool_check(&before);

    let s = Subscribers::new(1, 5).traffic("20,200").hold("1.5").run(&lab);
    assert_eq!(s["sessions_up"].as_u64(), Some(5), "{s}");
    let received = s["data_received"].as_f64().unwrap();
    assert!(received >= 5.0 * 20.0, "echoes came back through the fast path: {s}");
    assert!(echo.stop() > 0);
    // The workers publish their counters within 20 ms of going idle.
    std::thread::sleep(Duration::from_millis(300));
    let after = scrape(&lab, url);
    // Every echo went up through a worker and came down through one.
    let redirected = total(&after, "lns_xdp_verdicts_total", "verdict=\"redirect\"");
    assert!(redirected >= 2.0 * received, "{s}\n{after}");
    assert!(total(&after, "lns_xdp_frames_total", "") >= redirected, "{after}");
    assert!(total(&after, "lns_xdp_verdicts_total", "reason=\"l2tp_control\"") > 0.0, "{after}");
    let rx = total(&after, "lns_worker_rx_packets_total", "");
    assert!(rx >= 2.0 * received && rx <= redirected, "{after}");
    assert!(total(&after, "lns_worker_tx_packets_total", "") >= 2.0 * received, "{after}");
    for direction in ["upstream", "downstream"] {
        let n = total(&after, "lns_worker_forwarded_packets_total", &format!("direction=\"{direction}\""));
        assert!(n >= received, "{direction}: {after}");
    }
    // The histogram counts every batch, each in one bucket.
    let batches = total(&after, "lns_worker_batches_total", "");
    assert!(batches > 0.0, "{after}");
    assert_eq!(total(&after, "lns_worker_batch_seconds_count", ""), batches, "{after}");
    assert_eq!(total(&after, "lns_worker_batch_seconds_bucket", "le=\"+Inf\""), batches, "{after}");
    assert!(total(&after, "lns_worker_batch_seconds_sum", "") > 0.0, "{after}");
    promtool_check(&after);
    // The control plane's, scraped in the same run, is clean too.
    promtool_check(&scrape(&lab, "http://192.0.2.1:9701/metrics"));

    // --log-format json: every message on stderr is a JSON object, from
    // what it serves at start to what it left at exit.
    let status = dp.stop(10).expect("it ran");
    assert!(status.success(), "{status:?} {:?}", dp.output());
    let (_, err) = dp.output();
    let mut messages = Vec::new();
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{err}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        messages.push(v["fields"]["message"].as_str().unwrap_or_default().to_string());
    }
    let said = |what: &str| messages.iter().any(|m| m.contains(what));
    assert!(
        said("2 queue(s) on acc0 and core0") && said("metrics on http://192.0.2.1:9702/metrics"),
        "{err}"
    );
    assert!(said("stopped: XDP detached from acc0 and core0; maps left pinned in"), "{err}");
}

#[test]
fn an_error_is_a_json_line_too() {
    let bin = lns_testlab::workspace_bin("lns-dataplane").unwrap();
    let out = std::process::Command::new(&bin)
        .args(["--config", "/nonexistent/lns.toml", "--log-format", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let v: serde_json::Value = serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(v["level"], "ERROR", "{err}");
    assert!(v["fields"]["message"].as_str().unwrap().contains("reading /nonexistent/lns.toml"), "{err}");
    let out = std::process::Command::new(&bin).args(["--config", "/nonexistent/lns.toml"]).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("lns-dataplane: error: reading /nonexistent/lns.toml"), "{err}");
}

/// Sample names (`lns_worker_batch_seconds_bucket`, `lns_sessions`, ...)
/// of a /metrics text.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `lns_` names an expression asks for.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("lns_") {
        let word: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + word.len()..];
        out.push(word);
    }
    out
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_asks_for_families_the_two_processes_serve() {
    use lns_controlplane::ctl::RadiusServerRow;
    use lns_controlplane::daemon::metrics as cp;
    use lns_dataplane::metrics as dp;

    // Both encoders with something in every family (RADIUS families appear
    // with a server, per-worker ones with a worker).
    let mut c = cp::Snapshot::default();
    c.tunnels.insert("established", 1);
    c.sessions.insert("forwarding", 1);
    c.stats.sessions_down.insert("peer_cdn".into(), 1);
    c.stats.tunnels_down.insert("peer_stopccn".into(), 1);
    c.stats.dropped.insert("not_allowed".into(), 1);
    c.pools.push(("default".into(), 1, 254));
    c.ipv6_pools.push(("default".into(), 1, 256));
    c.radius.push(RadiusServerRow {
        address: "192.0.2.9:1812".into(),
        service: "authentication".into(),
        state: "alive".into(),
        last_rtt_ms: Some(1.0),
        ..Default::default()
    });
    let mut d = dp::Snapshot::default();
    d.report.xdp = lns_bpf::abi::Counter::ALL.iter().map(|c| (c.name(), 1)).collect();
    d.report.workers.push(Default::default());
    d.batch_times.push(Default::default());
    let dp_names = sample_names(&dp::render(&d));
    let mut served = sample_names(&cp::render(&c));
    served.extend(dp_names.iter().cloned());

    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/lns.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("deploy/grafana/lns.json is JSON");
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS", "the datasource is an input");
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    let mut asked = BTreeSet::new();
    for e in &all {
        let names = names_in(e);
        assert!(!names.is_empty(), "an expression without an lns_ family: {e}");
        for n in names {
            assert!(served.contains(&n), "{n} (in {e}) is served by neither process: {served:?}");
            asked.insert(n);
        }
    }
    for panel in dash["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{panel}");
    }
    // Everything the data plane serves is on it, and what the brief of the
    // control plane's panels names.
    let base = |n: &String| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .fold(n.clone(), |n, s| n.strip_suffix(s).unwrap_or(&n).to_string())
    };
    let asked_families: BTreeSet<String> = asked.iter().map(base).collect();
    for n in dp_names.iter().map(base) {
        assert!(asked_families.contains(&n), "{n} is on no panel");
    }
    for n in [
        "lns_sessions",
        "lns_tunnels",
        "lns_session_setups_total",
        "lns_session_teardowns_total",
        "lns_datagrams_dropped_total",
        "lns_pool_addresses_used",
        "lns_radius_requests_total",
        "lns_radius_timeouts_total",
        "lns_radius_dropped_replies_total",
        "lns_radius_last_rtt_seconds",
        "lns_worker_batch_seconds_bucket",
    ] {
        assert!(asked.contains(n), "{n} is on no panel");
    }
}
