//! lns-reflect: the bare AF_XDP reflector, lns-load's baseline.
//!
//! A minimal XDP program (lns-bpf's [`Reflector`]) sends every frame of a
//! queue to the AF_XDP socket of that queue; one worker thread, on the
//! data plane's own rings (`lns_dataplane::ring`, copy or zero-copy as
//! asked), swaps each frame's MAC addresses and sends it back out of the
//! interface it came in on. What the LNS adds to AF_XDP (its steering
//! program, its worker's per-packet work) is measured against this.
//!
//! It says on stderr what it serves, and at exit prints on stdout, as JSON,
//! what the worker did (`{"workers":[{"rx":..,"tx":..,"batches":..}]}`,
//! the shape of lns-dataplane's `--json` report).

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use lns_bpf::Reflector;
use lns_dataplane::ring::{BindMode, Rings};
use xsk_rs::FrameDesc;

#[derive(Parser)]
#[command(about = "Bare AF_XDP reflector: every frame of a queue back out with its MAC addresses swapped")]
struct Args {
    /// Interface to reflect on.
    #[arg(long)]
    dev: String,
    /// Receive queue (one socket, one worker).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// CPU to pin the worker to.
    #[arg(long)]
    core: Option<usize>,
    /// UMEM frames (2 KiB each), as lns-dataplane's --frames.
    #[arg(long, default_value_t = 8192)]
    frames: u32,
    /// Entries of each AF_XDP ring, as lns-dataplane's --ring-size.
    #[arg(long, default_value_t = 2048)]
    ring_size: u32,
    /// Frames taken from the ring per batch, as lns-dataplane's --batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Bind in zero-copy mode (the default is copy mode, what veth has).
    #[arg(long)]
    zero_copy: bool,
    /// Spin instead of sleeping in poll(2) when idle (lns-dataplane's
    /// --busy-poll).
    #[arg(long)]
    busy_poll: bool,
}

#[derive(Default)]
struct Counters {
    rx: AtomicU64,
    tx: AtomicU64,
    batches: AtomicU64,
    tx_ring_full: AtomicU64,
}

/// The loop of lns-dataplane's worker (reclaim completions, refill, take a
/// batch, send it, kick while anything is outstanding, sleep when idle)
/// with a MAC swap as the only per-packet work.
fn reflect(mut rings: Rings, batch: usize, busy_poll: bool, stop: &AtomicBool, c: &Counters) {
    let mut rx = vec![FrameDesc::default(); batch.max(1)];
    let mut scratch = vec![FrameDesc::default(); batch.max(1) * 4];
    let (mut n_rx, mut n_tx, mut n_batches, mut n_full) = (0u64, 0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        while rings.complete(0, &mut scratch) == scratch.len() {}
        rings.refill(0);
        let n = rings.receive(0, &mut rx);
        if n > 0 {
            n_rx += n as u64;
            n_batches += 1;
            for d in rx.iter_mut().take(n) {
                let (mut data, len) = rings.frame(d);
                let buf = data.contents_mut();
                if len >= 12 {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&buf[0..6]);
                    buf.copy_within(6..12, 0);
                    buf[6..12].copy_from_slice(&mac);
                }
                data.cursor().set_pos(len);
            }
            let sent = rings.send(0, &rx[..n]);
            n_tx += sent as u64;
            if sent < n {
                n_full += (n - sent) as u64;
                rings.free.extend_from_slice(&rx[sent..n]);
            }
        }
        // Copy mode sends at most 32 frames per sendto.
        let mut kicks = 0;
        while rings.ports[0].tx_outstanding > 0 && kicks < 16 {
            rings.kick(0);
            kicks += 1;
            if rings.complete(0, &mut scratch) == 0 {
                break;
            }
        }
        if n == 0 {
            if busy_poll {
                std::hint::spin_loop();
            } else {
                let outstanding = rings.ports[0].tx_outstanding > 0;
                let _ = rings.wait(if outstanding { 0 } else { 10 });
            }
            c.rx.store(n_rx, Ordering::Relaxed);
            c.tx.store(n_tx, Ordering::Relaxed);
            c.batches.store(n_batches, Ordering::Relaxed);
            c.tx_ring_full.store(n_full, Ordering::Relaxed);
        }
    }
    c.rx.store(n_rx, Ordering::Relaxed);
    c.tx.store(n_tx, Ordering::Relaxed);
    c.batches.store(n_batches, Ordering::Relaxed);
    c.tx_ring_full.store(n_full, Ordering::Relaxed);
}

fn main() -> Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let sig = Arc::clone(&stop);
    ctrlc::set_handler(move || sig.store(true, Ordering::Relaxed))
        .context("installing the signal handler")?;
    anyhow::ensure!(args.queue < Reflector::MAX_QUEUES, "--queue must be below {}", Reflector::MAX_QUEUES);

    let ifindex = lns_bpf::ifindex(&args.dev)?;
    let bind = if args.zero_copy { BindMode::ZeroCopy } else { BindMode::Copy };
    let rings = Rings::new(&[(args.dev.clone(), ifindex)], args.queue, args.frames, args.ring_size, bind)?;
    let mut prog = Reflector::load()?;
    prog.set_xsk(args.queue, rings.fd(0))?;

    let counters = Arc::new(Counters::default());
    let (c, s) = (Arc::clone(&counters), Arc::clone(&stop));
    let (batch, busy_poll, core) = (args.batch, args.busy_poll, args.core);
    // Named as lns-dataplane's workers, so lns-load reads its CPU time the
    // same way for both.
    let worker = std::thread::Builder::new()
        .name(format!("lns-worker-{}", args.queue))
        .spawn(move || {
            if let Some(id) = core.and_then(|c| {
                core_affinity::get_core_ids().unwrap_or_default().into_iter().find(|i| i.id == c)
            }) {
                core_affinity::set_for_current(id);
            }
            reflect(rings, batch, busy_poll, &s, &c);
        })
        .context("spawning the worker")?;
    // Attached once the socket is in the map: frames before that stay with
    // the stack instead of being dropped.
    prog.attach(ifindex)?;
    eprintln!(
        "lns-reflect: reflecting {} queue {} (XDP attached, copy mode: {})",
        args.dev, args.queue, !args.zero_copy
    );
    while !stop.load(Ordering::Relaxed) && !worker.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    drop(prog);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({"workers": [{
            "rx": load(&counters.rx),
            "tx": load(&counters.tx),
            "batches": load(&counters.batches),
            "tx_ring_full": load(&counters.tx_ring_full),
        }]})
    );
    eprintln!("lns-reflect: stopped; XDP detached from {}", args.dev);
    Ok(())
}
