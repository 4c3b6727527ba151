//! `/metrics` of the LNS while lns-lacsim brings subscribers up and down:
//! the families are there, the counters move, and `promtool check
//! metrics` (Prometheus's own linter) has nothing to say.

mod common;
use common::{lacsim, start_dp};

use std::io::Write;
use std::time::{Duration, Instant};

use lns_testlab::{Lab, PinDir};

fn scrape(lab: &Lab, url: &str) -> String {
    let out = lab.lns.exec("curl", &["-sf", "--max-time", "5", url]).unwrap();
    assert!(out.status.success(), "scraping {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the sample `name{labels}` (exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
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
        let sim = s.spawn(move || {
            lacsim(
                lab_ref,
                &[
                    "--tunnels",
                    "1",
                    "--sessions-per-tunnel",
                    "5",
                    "--hold",
                    "3",
                    "--user",
                    "user%d",
                    "--password",
                    "pw%d",
                ],
            )
        });
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
