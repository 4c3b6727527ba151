//! What both LNS processes need to serve Prometheus metrics, in one
//! place: the `/metrics` HTTP side ([`serve`]) and a histogram whose
//! buckets were counted elsewhere ([`CountedHistograms`]).
//!
//! Each process builds its own registry per scrape from a snapshot its
//! loop gives (its counters are the loop's, never reset), and encodes it
//! in the Prometheus text format 0.0.4 that `promtool check metrics` reads.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Serves `GET /metrics` on `listen` from a thread of its own: each scrape
/// calls `scrape`, which returns the text, or None while the process is
/// going away (503). Returns the address bound.
pub fn serve(
    listen: SocketAddr,
    scrape: impl Fn() -> Option<String> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let server = tiny_http::Server::http(listen).map_err(std::io::Error::other)?;
    let bound = server.server_addr().to_ip().unwrap_or(listen);
    let server = Arc::new(server);
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for request in server.incoming_requests() {
            let response = if request.url() != "/metrics" {
                tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
            } else {
                match scrape() {
                    Some(text) => {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE.as_bytes(),
                        );
                        let mut response = tiny_http::Response::from_string(text);
                        if let Ok(h) = header {
                            response = response.with_header(h);
                        }
                        response
                    }
                    None => tiny_http::Response::from_string("stopping\n").with_status_code(503),
                }
            };
            let _ = request.respond(response);
        }
    })?;
    Ok(bound)
}

/// One histogram counted elsewhere: `counts[i]` observations fell at or
/// below `bounds[i]` (seconds) and above the bound before; the last count,
/// one past `bounds`, is those above every bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// Histograms per label set, counted elsewhere (prometheus-client's
/// `Histogram` takes observations one at a time; the data plane's workers
/// and the RADIUS client count their own, and a scrape gets a snapshot).
#[derive(Debug)]
pub struct CountedHistograms<L>(pub Vec<(L, Counted)>);

impl<L: EncodeLabelSet + std::fmt::Debug + Send + Sync> EncodeMetric for CountedHistograms<L> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, h) in &self.0 {
            // Cumulative per bucket, as the format wants: the encoder adds
            // them up, so it is given each bucket's own count.
            let buckets: Vec<(f64, u64)> = h
                .bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(h.counts.iter().copied().chain(std::iter::repeat(0)))
                .collect();
            let count = h.counts.iter().sum();
            encoder.encode_family(labels)?.encode_histogram::<NoLabelSet>(h.sum, count, &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
    struct Worker {
        worker: usize,
    }

    #[test]
    fn counted_buckets_come_out_cumulative_with_their_sum_and_count() {
        let mut r = Registry::default();
        let h = Counted { bounds: vec![0.001, 0.01], counts: vec![2, 3, 1], sum: 0.5 };
        r.register("batch_seconds", "t", CountedHistograms(vec![(Worker { worker: 0 }, h)]));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &r).expect("encode");
        for want in [
            "batch_seconds_bucket{worker=\"0\",le=\"0.001\"} 2",
            "batch_seconds_bucket{worker=\"0\",le=\"0.01\"} 5",
            "batch_seconds_bucket{worker=\"0\",le=\"+Inf\"} 6",
            "batch_seconds_sum{worker=\"0\"} 0.5",
            "batch_seconds_count{worker=\"0\"} 6",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
