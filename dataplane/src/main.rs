//! lns-dataplane: loads the steering program, binds one AF_XDP socket per
//! queue per interface and runs one pinned worker per queue.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use lns_dataplane::config::{self, Flags, PoolSource, Settings};
use lns_dataplane::{log, metrics, supervisor};
use tracing::{error, info, warn};

/// The management loop's period: neighbour probes, next-hop epochs,
/// statistics. Scrapes are answered in between, at once.
const TICK: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let flags = Flags::parse();
    if flags.detach {
        log::init(flags.log_format.unwrap_or_default());
        return match detach(&flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = config::load(&flags, &|ifname| Ok(lns_bpf::rx_queue_count(ifname)?));
    // A file that does not load has no format to give: the flag's, else text.
    log::init(settings.as_ref().map(|s| s.log_format).unwrap_or(flags.log_format.unwrap_or_default()));
    match settings.map_err(anyhow::Error::from).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--detach`: the kept program leaves the interfaces (its pinned links go).
fn detach(flags: &Flags) -> Result<()> {
    let dir = config::pin_dir(flags)?;
    let gone = lns_bpf::unpin_links(&dir, &[])
        .with_context(|| format!("detaching the links in {}", dir.display()))?;
    if gone.is_empty() {
        info!("no XDP link kept in {}", dir.display());
    } else {
        info!("XDP detached from {} (links removed from {})", gone.join(" and "), dir.display());
    }
    Ok(())
}

fn run(settings: Settings) -> Result<()> {
    for note in &settings.notes {
        warn!("{note}");
    }
    // Bound before anything is attached: a taken port changes nothing.
    let (to_loop, scrapes) = mpsc::channel::<metrics::Scrape>();
    let metrics_at = match settings.metrics_listen {
        Some(at) => Some(metrics::serve(at, to_loop).with_context(|| format!("serving metrics on {at}"))?),
        None => {
            drop(to_loop);
            None
        }
    };
    let o = settings.options.clone();
    let mut running = supervisor::start(settings.options)?;
    let stop = running.stop_handle();
    let sig = Arc::clone(&stop);
    ctrlc::set_handler(move || sig.stop.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    let pools: Vec<String> = o.pools.iter().map(ToString::to_string).collect();
    let interfaces = if o.core_if != o.access_if {
        format!("{} and {}", o.access_if, o.core_if)
    } else {
        o.access_if.clone()
    };
    info!(
        "{} queue(s) on {interfaces}; maps in {}; pools: {}{}{}",
        running.queues(),
        running.pin_dir().display(),
        if pools.is_empty() { "none".to_string() } else { pools.join(" ") },
        match &settings.pool_source {
            PoolSource::File(path) => format!(" (from {})", path.display()),
            PoolSource::Flags | PoolSource::None => String::new(),
        },
        metrics_at.map(|a| format!("; metrics on http://{a}/metrics")).unwrap_or_default(),
    );
    for (ifname, t) in running.takeovers() {
        if let lns_bpf::Takeover::Replaced { old_prog_id } = t {
            info!(
                "took over the XDP program kept on {ifname} (program {old_prog_id} replaced, never detached)"
            );
        }
    }
    if running.keeps_attached() {
        info!(
            "XDP stays on {interfaces} after this process (links pinned in {})",
            running.pin_dir().display()
        );
    }
    let interval = Duration::from_secs(settings.stats_interval);
    let mut last = Instant::now();
    let nh_max_age = Duration::from_millis(o.nh_cache_ms.into());
    let mut nh_aged = Instant::now();
    let mut tick = Instant::now() + TICK;
    while !stop.stop.load(Ordering::Relaxed) {
        match scrapes.recv_timeout(tick.saturating_duration_since(Instant::now())) {
            Ok(reply) => {
                let _ = reply.send(running.metrics());
                // Scrapes back to back must not hold the duties off.
                if Instant::now() < tick {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // No --metrics-listen.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(tick.saturating_duration_since(Instant::now()))
            }
        }
        tick = Instant::now() + TICK;
        running.resolve_neighbours();
        running.sync_nh_epoch();
        if o.nh_cache_ms > 0 && nh_aged.elapsed() >= nh_max_age {
            // The program's cached next hops are good for one epoch.
            nh_aged = Instant::now();
            running.age_nexthops();
        }
        if settings.stats_interval > 0 && last.elapsed() >= interval {
            last = Instant::now();
            print_report(&running.report(), settings.json)?;
        }
    }
    let report = running.report();
    let pin_dir = running.pin_dir().to_path_buf();
    let keeps_pins = running.keeps_pins();
    let keeps_attached = running.keeps_attached();
    running.shutdown()?;
    print_report(&report, settings.json)?;
    info!(
        "stopped: {}; {}",
        if keeps_attached {
            format!(
                "XDP left on {interfaces}, passing to the kernel until the next start (`lns-dataplane --detach` \
                 takes it off)"
            )
        } else {
            format!("XDP detached from {interfaces}")
        },
        if keeps_pins {
            format!("maps left pinned in {} for the next start", pin_dir.display())
        } else {
            format!("maps in {} unpinned", pin_dir.display())
        }
    );
    Ok(())
}

fn print_report(report: &supervisor::Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", report.text());
    }
    Ok(())
}
