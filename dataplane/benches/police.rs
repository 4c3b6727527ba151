//! What policing and shaping cost a worker per packet, in isolation from
//! the rings and the network (which `lns-load --compare` measures whole):
//!
//! - the policer's check for every frame of 100,000 sessions, each with a
//!   limit not reached, in a scattered order (as frames of many
//!   subscribers arrive), against the same sessions without limits (the
//!   check returns at once);
//! - the shaper's timer wheel: a frame held and released (what a frame
//!   over the limit costs besides the check), with up to its cap held;
//! - the memory: the buckets per session slot, the wheel per worker.
//!
//! `cargo bench -p lns-dataplane --bench police` (release build). Each
//! figure is the median of 7 runs; compare the two of one run.

use std::hint::black_box;
use std::time::Instant;

use lns_bpf::abi::Session;
use lns_bpf::police::{default_burst, Verdict};
use lns_dataplane::police::{PoliceTable, Shaper};

const SESSIONS: usize = 100_000;
const CHECKS: usize = 4_000_000;
const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A multiplier prime to `SESSIONS` near SESSIONS / golden ratio: `i`
/// times it walks every slot in a scattered order.
const SCATTER: usize = 61_803;

#[inline]
fn prefetch(s: &Session) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a reference to a live entry; a prefetch reads nothing
    // architecturally and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch(s as *const Session as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = s;
}

/// ns per check of `CHECKS` frames of 64 bytes over the sessions.
fn checks(table: &PoliceTable, sessions: &[Session], upstream: bool, shape_ns: u64) -> f64 {
    let t0 = Instant::now();
    let mut now = table.ns(t0);
    let mut exceed = 0u64;
    for i in 0..CHECKS {
        let idx = i.wrapping_mul(SCATTER) % SESSIONS;
        // As the worker does for a batch: the entry and its buckets ahead.
        let ahead = i.wrapping_add(8).wrapping_mul(SCATTER) % SESSIONS;
        table.prefetch(ahead);
        prefetch(&sessions[ahead]);
        // The clock a worker reads once per batch of 64.
        if i % 64 == 0 {
            now = table.ns(Instant::now());
        }
        if !matches!(table.check(idx, &sessions[idx], upstream, now, 64, shape_ns), Verdict::Conform) {
            exceed += 1;
        }
    }
    let ns = t0.elapsed().as_nanos() as f64 / CHECKS as f64;
    assert_eq!(black_box(exceed), 0, "a limit not reached lets every frame through");
    ns
}

fn main() {
    // Not reached: 10 Gbit/s each way, the bucket 100 ms deep.
    let kbps = 10_000_000;
    let limited: Vec<Session> = (0..SESSIONS)
        .map(|i| Session {
            generation: i as u64 + 1,
            rate_down_kbps: kbps,
            rate_up_kbps: kbps,
            burst_down: default_burst(kbps, 100, 15_000),
            burst_up: default_burst(kbps, 100, 15_000),
            ..Session::default()
        })
        .collect();
    let unlimited: Vec<Session> =
        limited.iter().map(|s| Session { rate_down_kbps: 0, rate_up_kbps: 0, ..*s }).collect();
    let table = PoliceTable::new(SESSIONS);
    println!("{SESSIONS} sessions, {CHECKS} frames of 64 bytes in a scattered order, median of {RUNS} runs");
    for (name, upstream, shape_ns) in
        [("upstream", true, 0), ("downstream", false, 0), ("downstream shaped 50 ms", false, 50_000_000)]
    {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            without.push(checks(&table, &unlimited, upstream, shape_ns));
            with.push(checks(&table, &limited, upstream, shape_ns));
        }
        let (a, b) = (median(without), median(with));
        println!("check {name:<24} ns/frame without {a:6.2}  with {b:6.2}  (+{:.2} ns)", b - a);
    }
    println!(
        "buckets: {} bytes per session slot ({:.1} MiB for {SESSIONS}), shared by the workers",
        32,
        (SESSIONS * 32) as f64 / (1 << 20) as f64
    );

    // The wheel: frames held over 50 ms, then released as they come due.
    // A held frame is what a worker keeps: its UMEM descriptor and port.
    const FRAME: usize = std::mem::size_of::<(xsk_rs::FrameDesc, usize)>();
    let max_delay = 50_000_000u64;
    let ticks = ((max_delay >> 17) + 2).next_power_of_two() as usize;
    for held in [1_000usize, 4_096, 16_384] {
        let mut per = Vec::new();
        for _ in 0..RUNS {
            let mut s: Shaper<[u8; FRAME]> = Shaper::new(max_delay, held, 0);
            let t0 = Instant::now();
            for i in 0..held as u64 {
                // Departure times spread over the bound, as many sessions'
                // queues are.
                let at = i.wrapping_mul(2_654_435_761) % max_delay;
                let mut frame = [0u8; FRAME];
                frame[0] = i as u8;
                s.hold(0, at, frame).expect("room");
            }
            let mut sent = 0u64;
            s.release(max_delay + 1, |f| sent = sent.wrapping_add(u64::from(black_box(f)[0])));
            per.push(t0.elapsed().as_nanos() as f64 / held as f64);
            black_box(sent);
        }
        // Each tick's Vec keeps the capacity it grew to.
        let bytes = ticks * std::mem::size_of::<Vec<[u8; FRAME]>>() + held * FRAME;
        println!(
            "shaper: {held:>6} frames held and released: {:5.1} ns/frame; wheel {ticks} ticks, ~{} KiB per worker at that many held",
            median(per),
            bytes / 1024
        );
    }
}
