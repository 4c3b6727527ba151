//! Every core busy with few LACs (issue 22.3): on a veth with four queues,
//! eight tunnels from one LAC (lns-lacsim, one UDP socket) with the
//! control plane's tunnel_ports are served by the workers of at least
//! three queues; with every tunnel on 1701 (the same UDP 4-tuple) by one.
//!
//! veth has no RSS of its own: a frame arrives on the queue the sending
//! veth transmitted it on, which the LAC's kernel picks from the flow hash
//! of its addresses and ports (no XPS on veth). So different LNS ports are
//! different hashes, as a NIC's Toeplitz over the same fields would give.
//! The hash is the kernel's (seeded at boot) and the ports are picked at
//! random: eight flows land on at most two of four queues with a chance
//! of about 2 %, so a spread short of three queues is tried once more with
//! a new control plane (new ports) before the test fails.
//! The figures come from lns-dataplane's per-worker counters
//! (`lns_worker_forwarded_packets_total{worker=QUEUE,direction="upstream"}`).

mod common;
use common::{resolve_neighbours, start_dp_with, Subscribers};

use lns_testlab::{Lab, PinDir, UdpEcho};

const METRICS: &str = "http://192.0.2.1:9702/metrics";

/// Upstream packets each worker (= rx queue) forwarded, from /metrics.
fn upstream_per_worker(lab: &Lab) -> [f64; 4] {
    let out = lab.lns.exec("curl", &["-sf", "--max-time", "5", METRICS]).unwrap();
    assert!(out.status.success(), "scraping {METRICS}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut per = [0.0; 4];
    for (q, n) in per.iter_mut().enumerate() {
        let series = format!("lns_worker_forwarded_packets_total{{worker=\"{q}\",direction=\"upstream\"}}");
        *n = text
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    }
    per
}

/// Eight tunnels of two sessions each with traffic; returns the upstream
/// packets each queue's worker forwarded meanwhile.
fn eight_tunnels(lab: &Lab) -> [f64; 4] {
    let before = upstream_per_worker(lab);
    let s = Subscribers::new(8, 2).traffic("50,100").hold("2").arg("--rate", "200").run(lab);
    assert_eq!(s["sessions_up"].as_u64(), Some(16), "{s}");
    let sent = s["data_sent"].as_u64().unwrap();
    assert!(sent >= 16 * 50, "every session sent traffic: {s}");
    // The workers publish their counters within 20 ms of going idle.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = upstream_per_worker(lab);
    let per: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total: f64 = per.iter().sum();
    // Lost ones are the last of each session, in flight when it hangs up.
    assert!(total + 16.0 >= sent as f64, "every packet through a worker: {per:?} of {sent}");
    [per[0], per[1], per[2], per[3]]
}

/// Queues whose worker took at least a twentieth of the eighth of the
/// traffic one tunnel would bring (a queue with a tunnel has far more;
/// one without has none).
fn busy(per: &[f64; 4]) -> usize {
    let total: f64 = per.iter().sum();
    per.iter().filter(|n| **n >= total / 8.0 / 20.0).count()
}

#[test]
fn eight_tunnels_of_one_lac_spread_over_the_queues() {
    let lab = Lab::new(4).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp_with(
        &lab,
        &pins,
        "4",
        "native",
        &["--tunnel-ports", "20000-20999", "--metrics-listen", "192.0.2.1:9702"],
    );
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();

    let mut spread = [0.0; 4];
    for attempt in 0..2 {
        let cp = lab.start_controlplane(pins.path(), 16, &["--tunnel-ports", "20000-20999"]).unwrap();
        spread = eight_tunnels(&lab);
        drop(cp);
        eprintln!("tunnel ports, attempt {attempt}: {spread:?}");
        if busy(&spread) >= 3 {
            break;
        }
    }
    let cp = lab.start_controlplane(pins.path(), 16, &[]).unwrap();
    let one_port = eight_tunnels(&lab);
    drop(cp);
    eprintln!(
        "upstream packets per queue's worker, 8 tunnels of one LAC: own ports {spread:?} ({} queues), \
         all on 1701 {one_port:?} ({} queues)",
        busy(&spread),
        busy(&one_port)
    );
    assert!(busy(&spread) >= 3, "tunnel ports: {spread:?}");
    // The same 4-tuple for every tunnel: one queue, one worker.
    assert_eq!(busy(&one_port), 1, "all on 1701: {one_port:?}");
    assert!(echo.stop() > 0);
}
