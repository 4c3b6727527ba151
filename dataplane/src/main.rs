//! lns-dataplane: loads the steering program, binds one AF_XDP socket per
//! queue per interface and runs one pinned worker per queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use lns_dataplane::config::{self, Flags, PoolSource};
use lns_dataplane::supervisor;

fn main() -> Result<()> {
    let flags = Flags::parse();
    let settings = config::load(&flags, &|ifname| Ok(lns_bpf::rx_queue_count(ifname)?))?;
    for note in &settings.notes {
        eprintln!("lns-dataplane: {note}");
    }
    let o = settings.options.clone();
    let mut running = supervisor::start(settings.options)?;
    let stop = running.stop_handle();
    let sig = Arc::clone(&stop);
    ctrlc::set_handler(move || sig.stop.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    let pools: Vec<String> = o.pools.iter().map(ToString::to_string).collect();
    eprintln!(
        "lns-dataplane: {} queue(s) on {}{}; maps in {}; pools: {}{}",
        running.queues(),
        o.access_if,
        if o.core_if != o.access_if { format!(" and {}", o.core_if) } else { String::new() },
        running.pin_dir().display(),
        if pools.is_empty() { "none".to_string() } else { pools.join(" ") },
        match &settings.pool_source {
            PoolSource::File(path) => format!(" (from {})", path.display()),
            PoolSource::Flags | PoolSource::None => String::new(),
        }
    );
    let interval = Duration::from_secs(settings.stats_interval);
    let mut last = std::time::Instant::now();
    let nh_max_age = Duration::from_millis(o.nh_cache_ms.into());
    let mut nh_aged = std::time::Instant::now();
    while !stop.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        running.resolve_neighbours();
        running.sync_nh_epoch();
        if o.nh_cache_ms > 0 && nh_aged.elapsed() >= nh_max_age {
            // The program's cached next hops are good for one epoch.
            nh_aged = std::time::Instant::now();
            running.age_nexthops();
        }
        if settings.stats_interval > 0 && last.elapsed() >= interval {
            last = std::time::Instant::now();
            print_report(&running.report(), settings.json)?;
        }
    }
    let report = running.report();
    running.shutdown()?;
    print_report(&report, settings.json)
}

fn print_report(report: &supervisor::Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", report.text());
    }
    Ok(())
}
