//! `/metrics` of `lns-dataplane`, in the Prometheus text format (version
//! 0.0.4, what `promtool check metrics` reads), as lns-controlplane serves
//! its own.
//!
//! The HTTP side is `tiny_http` on a thread of its own; each scrape asks
//! the management loop for a [`Snapshot`] (the loop owns the program's
//! maps and the workers' counters, and answers at once: it waits for
//! scrapes between its duties), and encodes it with `prometheus-client`
//! into a registry made for that scrape. The counters are the program's
//! and the workers' own, never reset, so a fresh registry per scrape
//! reports them as they are.
//!
//! Families (all `lns_`): the XDP program's frames and verdicts by reason
//! (per-CPU counters summed), and per worker its frames received and
//! sent, forwarded by direction, ICMP errors, fragments, drops by reason,
//! batches, next-hop lookups and the batch-time histogram. Labels are the
//! worker's index and fixed names, never a session or an address.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use lns_metrics::{Counted, CountedHistograms};
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::supervisor::Report;
use crate::worker::{BatchTimes, BATCH_BOUNDS_NS};

/// What a scrape reports, gathered by the management loop.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// What the periodic statistics print: the program's counters and
    /// each worker's.
    pub report: Report,
    /// Each worker's batch-time histogram, in worker order.
    pub batch_times: Vec<BatchTimes>,
    /// ICMP echoes sent to make the kernel resolve next hops the program
    /// found without a neighbour entry.
    pub neighbour_probes: u64,
}

/// A scrape waiting for the loop's figures.
pub type Scrape = mpsc::SyncSender<Snapshot>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Verdict {
    verdict: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Worker {
    worker: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerDirection {
    worker: usize,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerReason {
    worker: usize,
    reason: &'static str,
}

/// An XDP counter's name as its verdict and reason: `drop_no_route` is
/// (`drop`, `no_route`).
fn verdict(name: &'static str) -> Verdict {
    for verdict in ["redirect", "drop", "pass"] {
        if let Some(reason) = name.strip_prefix(verdict).and_then(|r| r.strip_prefix('_')) {
            return Verdict { verdict, reason };
        }
    }
    Verdict { verdict: "other", reason: name }
}

/// A family of one counter per worker.
fn per_worker(r: &mut Registry, name: &str, help: &str, values: impl Iterator<Item = u64>) {
    let f = Family::<Worker, Counter>::default();
    for (worker, v) in values.enumerate() {
        f.get_or_create(&Worker { worker }).inc_by(v);
    }
    r.register(name, help, f);
}

/// The snapshot as the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut r = Registry::with_prefix("lns");
    let xdp = r.sub_registry_with_prefix("xdp");
    let frames = Counter::<u64>::default();
    frames.inc_by(s.report.xdp.get("rx").copied().unwrap_or(0));
    xdp.register("frames", "Frames the XDP program saw, on every interface it is attached to", frames);
    let verdicts = Family::<Verdict, Counter>::default();
    for (name, n) in s.report.xdp.iter().filter(|(k, _)| **k != "rx") {
        verdicts.get_or_create(&verdict(name)).inc_by(*n);
    }
    xdp.register(
        "verdicts",
        "The XDP program's verdicts: redirect (to a worker), drop or pass (to the kernel), by reason",
        verdicts,
    );

    let w = r.sub_registry_with_prefix("worker");
    let workers = &s.report.workers;
    per_worker(
        w,
        "rx_packets",
        "Frames the worker received from its AF_XDP sockets",
        workers.iter().map(|w| w.rx),
    );
    per_worker(
        w,
        "tx_packets",
        "Frames the worker put on its AF_XDP transmit rings",
        workers.iter().map(|w| w.tx),
    );
    let forwarded = Family::<WorkerDirection, Counter>::default();
    for (worker, wr) in workers.iter().enumerate() {
        for (direction, n) in [("upstream", wr.upstream), ("downstream", wr.downstream)] {
            forwarded.get_or_create(&WorkerDirection { worker, direction }).inc_by(n);
        }
    }
    w.register(
        "forwarded_packets",
        "Packets forwarded: upstream decapsulated toward the core, downstream encapsulated toward a LAC",
        forwarded,
    );
    per_worker(
        w,
        "icmp_errors_sent",
        "ICMP errors sent back to the sender (time exceeded, too big)",
        workers.iter().map(|w| w.icmp),
    );
    per_worker(
        w,
        "fragments",
        "IPv4 fragments sent toward LACs (packets larger than the session's MTU)",
        workers.iter().map(|w| w.fragments),
    );
    let drops = Family::<WorkerReason, Counter>::default();
    for (worker, wr) in workers.iter().enumerate() {
        let others = [("no_egress", wr.no_egress), ("tx_ring_full", wr.tx_ring_full)];
        for (reason, n) in wr.drops.iter().map(|(k, v)| (*k, *v)).chain(others) {
            drops.get_or_create(&WorkerReason { worker, reason }).inc_by(n);
        }
    }
    w.register("drops", "Frames the worker dropped, by reason", drops);
    per_worker(w, "batches", "Batches of frames the worker processed", workers.iter().map(|w| w.batches));
    per_worker(
        w,
        "nexthop_lookups",
        "Next-hop lookups toward LACs (lns_nh_resolve), once per LAC per epoch, not per frame",
        workers.iter().map(|w| w.nh_lookups),
    );
    w.register(
        "batch_seconds",
        "Time to process a batch: receive, decapsulate or encapsulate, send",
        CountedHistograms(
            s.batch_times
                .iter()
                .enumerate()
                .map(|(worker, t)| {
                    let h = Counted {
                        bounds: BATCH_BOUNDS_NS.iter().map(|ns| *ns as f64 / 1e9).collect(),
                        counts: t.counts.to_vec(),
                        sum: t.sum_ns as f64 / 1e9,
                    };
                    (Worker { worker }, h)
                })
                .collect(),
        ),
    );

    let probes = Counter::<u64>::default();
    probes.inc_by(s.neighbour_probes);
    r.register(
        "dataplane_neighbour_probes",
        "ICMP echoes sent so that the kernel resolves a next hop the XDP program found unresolved",
        probes,
    );
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        warn!("encoding metrics: {e}");
    }
    out
}

/// Serves `/metrics` on `listen` from a thread; each scrape goes through
/// `to_loop`. Returns the address bound.
pub fn serve(listen: SocketAddr, to_loop: mpsc::Sender<Scrape>) -> std::io::Result<SocketAddr> {
    // `to_loop` is not Sync: the scrape thread owns it alone.
    let to_loop = std::sync::Mutex::new(to_loop);
    lns_metrics::serve(listen, move || {
        let (tx, rx) = mpsc::sync_channel(1);
        // The loop answers within its 100 ms tick at worst.
        to_loop.lock().ok()?.send(tx).ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok().map(|s| render(&s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::WorkerReport;

    fn snapshot() -> Snapshot {
        let mut report = Report::default();
        report.xdp.insert("rx", 100);
        report.xdp.insert("redirect_upstream_check", 60);
        report.xdp.insert("drop_no_route", 2);
        report.xdp.insert("pass_l2tp_control", 30);
        let mut w0 =
            WorkerReport { rx: 60, tx: 57, upstream: 50, downstream: 7, batches: 3, ..Default::default() };
        w0.drops.insert("spoofed", 1);
        w0.tx_ring_full = 2;
        let w1 = WorkerReport { nh_lookups: 4, ..Default::default() };
        report.workers = vec![w0, w1];
        let mut t = BatchTimes::default();
        for ns in [800, 1_000, 1_001, 40_000, 2_000_000_000] {
            t.record(ns);
        }
        Snapshot { report, batch_times: vec![t, BatchTimes::default()], neighbour_probes: 5 }
    }

    #[test]
    fn families_are_prefixed_labelled_and_counters_end_in_total() {
        let text = render(&snapshot());
        for want in [
            "# TYPE lns_xdp_frames_total counter",
            "lns_xdp_frames_total 100",
            "lns_xdp_verdicts_total{verdict=\"redirect\",reason=\"upstream_check\"} 60",
            "lns_xdp_verdicts_total{verdict=\"drop\",reason=\"no_route\"} 2",
            "lns_xdp_verdicts_total{verdict=\"pass\",reason=\"l2tp_control\"} 30",
            "lns_worker_rx_packets_total{worker=\"0\"} 60",
            "lns_worker_tx_packets_total{worker=\"0\"} 57",
            "lns_worker_rx_packets_total{worker=\"1\"} 0",
            "lns_worker_forwarded_packets_total{worker=\"0\",direction=\"upstream\"} 50",
            "lns_worker_forwarded_packets_total{worker=\"0\",direction=\"downstream\"} 7",
            "lns_worker_drops_total{worker=\"0\",reason=\"spoofed\"} 1",
            "lns_worker_drops_total{worker=\"0\",reason=\"tx_ring_full\"} 2",
            "lns_worker_batches_total{worker=\"0\"} 3",
            "lns_worker_nexthop_lookups_total{worker=\"1\"} 4",
            "lns_dataplane_neighbour_probes_total 5",
            "# TYPE lns_worker_batch_seconds histogram",
            // 800 and 1,000 ns in the first bucket (le is inclusive), 1,001 in
            // the second, 40 µs by 50 µs, 2 s past every bound.
            "lns_worker_batch_seconds_bucket{worker=\"0\",le=\"1e-06\"} 2",
            "lns_worker_batch_seconds_bucket{worker=\"0\",le=\"2e-06\"} 3",
            "lns_worker_batch_seconds_bucket{worker=\"0\",le=\"2e-05\"} 3",
            "lns_worker_batch_seconds_bucket{worker=\"0\",le=\"5e-05\"} 4",
            "lns_worker_batch_seconds_bucket{worker=\"0\",le=\"0.1\"} 4",
            "lns_worker_batch_seconds_bucket{worker=\"0\",le=\"+Inf\"} 5",
            "lns_worker_batch_seconds_count{worker=\"0\"} 5",
            "lns_worker_batch_seconds_count{worker=\"1\"} 0",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("lns_worker_batch_seconds_sum{worker=\"0\"} "))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(sum.is_some_and(|s| (s - 2.000042801).abs() < 1e-9), "{sum:?}\n{text}");
        // Every family is lns_, every counter ends in _total, and one
        // bucket line per bound and +Inf for each worker.
        for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(l.starts_with("lns_"), "{l}");
        }
        for l in text.lines().filter(|l| l.starts_with("# TYPE") && l.ends_with(" counter")) {
            assert!(l.split(' ').nth(2).is_some_and(|n| n.ends_with("_total")), "{l}");
        }
        let buckets = text.lines().filter(|l| l.starts_with("lns_worker_batch_seconds_bucket")).count();
        assert_eq!(buckets, 2 * (BATCH_BOUNDS_NS.len() + 1), "{text}");
    }

    #[test]
    fn verdicts_split_at_their_class() {
        assert_eq!(verdict("redirect_downstream"), Verdict { verdict: "redirect", reason: "downstream" });
        assert_eq!(verdict("pass_no_neighbour"), Verdict { verdict: "pass", reason: "no_neighbour" });
        assert_eq!(verdict("passive"), Verdict { verdict: "other", reason: "passive" });
        for c in lns_bpf::abi::Counter::ALL.iter().filter(|c| c.name() != "rx") {
            assert_ne!(verdict(c.name()).verdict, "other", "{}", c.name());
        }
    }
}
