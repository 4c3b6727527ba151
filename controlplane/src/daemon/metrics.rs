//! `/metrics` of `lns-controlplane`, in the Prometheus text format
//! (version 0.0.4, what `promtool check metrics` reads).
//!
//! The HTTP side is `tiny_http` on a thread of its own; each scrape asks
//! the loop for a [`Snapshot`] (the loop owns every figure, and answers
//! between two wake-ups, as it answers `lnsctl`), and encodes it with
//! `prometheus-client` into a registry made for that scrape. Counters are
//! the loop's own, never reset, so a fresh registry per scrape reports
//! them as they are.
//!
//! Families (all `lns_`): tunnels and sessions by state, session set-ups
//! and teardowns by cause, datagrams and drops by reason, map and send
//! errors, pool usage per pool, and per RADIUS server its requests,
//! replies, timeouts, retransmissions, dropped replies, last round trip
//! and round-trip histogram.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lns_metrics::{Counted, CountedHistograms};
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::ctl::{RadiusServerRow, Stats};

/// What a scrape reports, gathered by the loop.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Stats,
    pub tunnels: BTreeMap<&'static str, u64>,
    pub sessions: BTreeMap<&'static str, u64>,
    /// (pool, used, total) of IPv4 addresses and of IPv6 prefixes.
    pub pools: Vec<(String, u64, u64)>,
    pub ipv6_pools: Vec<(String, u64, u64)>,
    pub radius: Vec<RadiusServerRow>,
}

/// One of a RADIUS server's counts.
type ServerCount = fn(&RadiusServerRow) -> u64;

/// A scrape waiting for the loop's figures.
pub type Scrape = oneshot::Sender<Snapshot>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Server {
    server: String,
    service: String,
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    r.register(name, help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The snapshot as the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut r = Registry::with_prefix("lns");
    let tunnels = Family::<State, Gauge>::default();
    for (state, n) in &s.tunnels {
        tunnels.get_or_create(&State { state: state.to_string() }).set(count(*n));
    }
    r.register("tunnels", "L2TP tunnels by RFC 2661 state", tunnels);
    let sessions = Family::<State, Gauge>::default();
    for (state, n) in &s.sessions {
        sessions.get_or_create(&State { state: state.to_string() }).set(count(*n));
    }
    r.register("sessions", "Sessions by state (connecting, negotiating, forwarding, ending)", sessions);
    counter(&mut r, "tunnel_setups", "Tunnels that came up", s.stats.tunnels_up_total);
    let tunnel_downs = Family::<Cause, Counter>::default();
    for (cause, n) in &s.stats.tunnels_down {
        tunnel_downs.get_or_create(&Cause { cause: cause.clone() }).inc_by(*n);
    }
    r.register("tunnel_teardowns", "Tunnels that went down, by cause", tunnel_downs);
    counter(&mut r, "session_setups", "Sessions connected (ICCN)", s.stats.sessions_up_total);
    let downs = Family::<Cause, Counter>::default();
    for (cause, n) in &s.stats.sessions_down {
        downs.get_or_create(&Cause { cause: cause.clone() }).inc_by(*n);
    }
    r.register("session_teardowns", "Sessions that ended, by cause", downs);
    counter(&mut r, "datagrams_received", "L2TP datagrams received", s.stats.datagrams_rx);
    counter(&mut r, "datagrams_sent", "L2TP datagrams sent", s.stats.datagrams_tx);
    counter(&mut r, "control_messages_received", "L2TP control datagrams received", s.stats.control_rx);
    counter(&mut r, "data_messages_received", "L2TP data datagrams received (PPP)", s.stats.data_rx);
    let dropped = Family::<Reason, Counter>::default();
    for (reason, n) in &s.stats.dropped {
        dropped.get_or_create(&Reason { reason: reason.clone() }).inc_by(*n);
    }
    r.register("datagrams_dropped", "Datagrams dropped by the control plane, by reason", dropped);
    counter(&mut r, "send_errors", "Datagrams the socket did not take", s.stats.send_errors);
    counter(&mut r, "map_errors", "Data-plane map writes that failed", s.stats.map_errors);
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Direction {
        direction: String,
    }
    let (packets, drops) = (Family::<Direction, Counter>::default(), Family::<Reason, Counter>::default());
    for (what, n) in &s.stats.slow_path {
        match what.strip_suffix("_packets") {
            Some(direction) => {
                packets.get_or_create(&Direction { direction: direction.to_string() }).inc_by(*n)
            }
            None => drops.get_or_create(&Reason { reason: what.clone() }).inc_by(*n),
        };
    }
    r.register(
        "slow_path_packets",
        "Subscriber packets the control plane carried (the exception path), by direction",
        packets,
    );
    r.register(
        "slow_path_events",
        "The exception path's drops (spoofed, not_forwarding, no_session, too_big, malformed) and what it did instead of forwarding as is (fragmented, icmp_too_big)",
        drops,
    );
    let port = |k: &str| s.stats.tunnel_ports.get(k).copied().unwrap_or(0);
    gauge(
        &mut r,
        "tunnel_port_sockets",
        "Sockets open on tunnels' own ports (tunnel_ports)",
        count(port("sockets_open")),
    );
    gauge(
        &mut r,
        "tunnels_on_own_port",
        "Tunnels answered from a port of their own",
        count(port("tunnels_on_own_port")),
    );
    counter(
        &mut r,
        "tunnel_port_fallbacks",
        "Tunnels moved back to the listen port because their LAC repeated its SCCRQ (NAT, a LAC that insists on 1701)",
        port("fallbacks"),
    );
    gauge(
        &mut r,
        "dataplane_slots_used",
        "Session slots of the data plane in use",
        s.stats.slots_in_use as i64,
    );
    gauge(&mut r, "dataplane_slots", "Session slots of the data plane", s.stats.slots_total as i64);
    let (used, total) = (Family::<Pool, Gauge>::default(), Family::<Pool, Gauge>::default());
    for (name, u, t) in &s.pools {
        used.get_or_create(&Pool { pool: name.clone() }).set(count(*u));
        total.get_or_create(&Pool { pool: name.clone() }).set(count(*t));
    }
    r.register("pool_addresses_used", "IPv4 addresses of the pool in use", used);
    r.register("pool_addresses", "IPv4 addresses of the pool", total);
    let (used, total) = (Family::<Pool, Gauge>::default(), Family::<Pool, Gauge>::default());
    for (name, u, t) in &s.ipv6_pools {
        used.get_or_create(&Pool { pool: name.clone() }).set(count(*u));
        total.get_or_create(&Pool { pool: name.clone() }).set(count(*t));
    }
    r.register("ipv6_pool_prefixes_used", "IPv6 prefixes of the pool in use", used);
    r.register("ipv6_pool_prefixes", "IPv6 prefixes of the pool", total);
    if !s.radius.is_empty() {
        let radius = r.sub_registry_with_prefix("radius");
        let families: [(&str, &str, ServerCount); 7] = [
            ("requests", "Requests sent (first transmissions)", |s| s.requests),
            ("retransmissions", "Requests sent again", |s| s.retransmissions),
            ("replies", "Replies accepted", |s| s.replies),
            ("timeouts", "Requests given up without a reply", |s| s.timeouts),
            ("dropped_replies", "Replies dropped (bad authenticator, malformed, unknown id)", |s| {
                s.bad_replies
            }),
            (
                "replies_missing_message_authenticator",
                "Of the dropped replies: without the Message-Authenticator the server's policy requires (CVE-2024-3596)",
                |s| s.missing_message_authenticator,
            ),
            (
                "replies_bad_message_authenticator",
                "Of the dropped replies: with a Message-Authenticator that does not verify",
                |s| s.bad_message_authenticator,
            ),
        ];
        for (name, help, get) in families {
            let f = Family::<Server, Counter>::default();
            for row in &s.radius {
                f.get_or_create(&Server { server: row.address.clone(), service: row.service.clone() })
                    .inc_by(get(row));
            }
            radius.register(name, help, f);
        }
        let up = Family::<Server, Gauge>::default();
        let rtt = Family::<Server, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for row in &s.radius {
            let key = Server { server: row.address.clone(), service: row.service.clone() };
            up.get_or_create(&key).set(i64::from(row.state == "alive"));
            if let Some(ms) = row.last_rtt_ms {
                rtt.get_or_create(&key).set(ms / 1000.0);
            }
        }
        radius.register("server_up", "1 while the server answers, 0 while it is dead", up);
        radius.register("last_rtt_seconds", "Round trip of the server's last reply", rtt);
        let histograms = s
            .radius
            .iter()
            .map(|row| {
                let h = Counted {
                    bounds: row.rtt.bounds_ms.iter().map(|ms| ms / 1000.0).collect(),
                    counts: row.rtt.counts.clone(),
                    sum: row.rtt.sum_ms / 1000.0,
                };
                (Server { server: row.address.clone(), service: row.service.clone() }, h)
            })
            .collect();
        radius.register(
            "rtt_seconds",
            "Round trips of the server's replies to requests sent once (a reply after a retransmission tells none)",
            CountedHistograms(histograms),
        );
    }
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        warn!(error = %e, "encoding metrics");
    }
    out
}

/// Serves `/metrics` on `listen` from a thread; each scrape goes through
/// `to_loop`. Returns the address bound.
pub fn serve(listen: SocketAddr, to_loop: mpsc::Sender<Scrape>) -> std::io::Result<SocketAddr> {
    let bound = lns_metrics::serve(listen, move || {
        let (tx, rx) = oneshot::channel();
        let snapshot = to_loop.blocking_send(tx).ok().and_then(|()| rx.blocking_recv().ok())?;
        Some(render(&snapshot))
    })?;
    info!(%bound, "metrics: http://{bound}/metrics");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_prefixed_and_counters_end_in_total() {
        let mut s = Snapshot::default();
        s.stats.sessions_up_total = 7;
        s.stats.dropped.insert("not_allowed".into(), 3);
        s.sessions.insert("forwarding", 5);
        s.stats.sessions_down.insert("peer_cdn".into(), 2);
        s.stats.tunnels_down.insert("retransmit_limit".into(), 1);
        s.pools.push(("main".into(), 5, 254));
        s.radius.push(RadiusServerRow {
            address: "192.0.2.9:1812".into(),
            service: "authentication".into(),
            state: "alive".into(),
            requests: 9,
            last_rtt_ms: Some(2.5),
            missing_message_authenticator: 4,
            rtt: crate::ctl::RttHistogram {
                bounds_ms: vec![1.0, 2.0, 5.0],
                counts: vec![3, 0, 1, 2],
                sum_ms: 130.5,
            },
            ..Default::default()
        });
        // A server as an older control plane reports it: no buckets.
        s.radius.push(RadiusServerRow {
            address: "192.0.2.9:1813".into(),
            service: "accounting".into(),
            ..Default::default()
        });
        let text = render(&s);
        for want in [
            "lns_session_setups_total 7",
            "lns_datagrams_dropped_total{reason=\"not_allowed\"} 3",
            "lns_sessions{state=\"forwarding\"} 5",
            "lns_session_teardowns_total{cause=\"peer_cdn\"} 2",
            "lns_tunnel_teardowns_total{cause=\"retransmit_limit\"} 1",
            "lns_pool_addresses_used{pool=\"main\"} 5",
            "lns_pool_addresses{pool=\"main\"} 254",
            "lns_radius_requests_total{server=\"192.0.2.9:1812\",service=\"authentication\"} 9",
            "lns_radius_last_rtt_seconds{server=\"192.0.2.9:1812\",service=\"authentication\"} 0.0025",
            "lns_radius_replies_missing_message_authenticator_total{server=\"192.0.2.9:1812\",service=\"authentication\"} 4",
            "# TYPE lns_session_setups_total counter",
            "# TYPE lns_radius_rtt_seconds histogram",
            "lns_radius_rtt_seconds_bucket{server=\"192.0.2.9:1812\",service=\"authentication\",le=\"0.001\"} 3",
            "lns_radius_rtt_seconds_bucket{server=\"192.0.2.9:1812\",service=\"authentication\",le=\"0.002\"} 3",
            "lns_radius_rtt_seconds_bucket{server=\"192.0.2.9:1812\",service=\"authentication\",le=\"0.005\"} 4",
            "lns_radius_rtt_seconds_bucket{server=\"192.0.2.9:1812\",service=\"authentication\",le=\"+Inf\"} 6",
            "lns_radius_rtt_seconds_sum{server=\"192.0.2.9:1812\",service=\"authentication\"} 0.1305",
            "lns_radius_rtt_seconds_count{server=\"192.0.2.9:1812\",service=\"authentication\"} 6",
            "lns_radius_rtt_seconds_bucket{server=\"192.0.2.9:1813\",service=\"accounting\",le=\"+Inf\"} 0",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
