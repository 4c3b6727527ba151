//! Cost of the steering program per frame, measured in the kernel with
//! BPF_PROG_TEST_RUN (repeat), for each path a frame can take, beside the
//! bare reflector's program (`lns_bpf::Reflector`: every frame straight to
//! the socket of its queue) as the baseline. Live-frame mode: every
//! run gets a fresh frame and its verdict is carried out, the copy into the
//! AF_XDP socket included (copy mode on a veth).
//!
//! Run: cargo bench -p lns-bpf --bench xdp_cost (as root).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::IpAddr;

use common::*;
use lns_bpf::abi::SessionState;
use lns_bpf::{LoadOptions, Reflector, TestRunContext, XdpAction};

const REPEAT: u32 = 2_000_000;

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// The kernel's run time and run count of the newest program named `name`
/// (this process's: it loaded it last), from its BPF statistics.
fn prog_stats(name: &str) -> (u64, u64) {
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| p.name.to_bytes() == name.as_bytes())
        .max_by_key(|p| p.id)
        .map(|p| (p.run_time_ns, p.run_cnt))
        .unwrap_or((0, 0))
}

/// The program's own time per run over `f`, from the kernel's BPF
/// statistics.
fn prog_ns_of(name: &str, f: &mut dyn FnMut()) -> u64 {
    let (t0, n0) = prog_stats(name);
    f();
    let (t1, n1) = prog_stats(name);
    (t1 - t0) / (n1 - n0).max(1)
}

fn main() {
    // The IPv4 subscribers' pool declared (their frames go by pool unit),
    // the IPv6 ones not (the program's lookups).
    let lab = Lab::with_options(LoadOptions {
        max_sessions: 1024,
        pools: vec!["198.51.100.0/24".parse().unwrap()],
        ..Default::default()
    });
    // At its direct slot, where the control plane puts its sessions.
    lab.install(200, &Lab::session(SessionState::Forwarding));
    let xa = BoundXsk::bind(&lab.access_name, 0);
    let xc = BoundXsk::bind(&lab.core_name, 0);
    lab.steering.maps().set_xsk(0, xa.fd()).unwrap();
    lab.steering.maps().set_xsk(64, xc.fd()).unwrap();
    let at = |ifindex: u32| TestRunContext { ingress_ifindex: ifindex, rx_queue_index: 0 };
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("upstream IPv4 (redirect)", lab.access, data_frame(Outer::default(), L2tpOpts::default(), PPP_FULL)),
        (
            "upstream IPv6 (redirect)",
            lab.access,
            data_frame_v6(Outer::default(), L2tpOpts::default(), PPP_FULL),
        ),
        ("downstream IPv4, pool unit (redirect)", lab.core, core_frame(IpAddr::V4(SUB_V4), false)),
        ("downstream IPv6 /64, lookups (redirect)", lab.core, core_frame(IpAddr::V6(SUB_V6), false)),
        ("L2TP control (pass)", lab.access, {
            let mut b = l2tp_payload(
                L2tpOpts { control: true, length: true, sequence: true, ..Default::default() },
                0,
                0,
                PPP_FULL,
                0,
                &[],
            );
            b.truncate(12);
            b[2..4].copy_from_slice(&12u16.to_be_bytes());
            lac_frame(Outer::default(), LAC_PORT, 1701, &b)
        }),
        ("unknown session (drop)", lab.access, {
            let inner = inner_v4(SUB_V4, CORE_V4, b"x");
            lac_frame(
                Outer::default(),
                LAC_PORT,
                1701,
                &l2tp_payload(L2tpOpts::default(), 100, 999, PPP_FULL, 0x21, &inner),
            )
        }),
    ];
    // ns/frame: the whole live run (program, redirect, copy into the
    // socket); prog ns: the program alone, from the kernel's BPF statistics
    // (on for the run, restored after), the figure that tells paths apart.
    let stats_before = std::fs::read_to_string(BPF_STATS).ok();
    let _ = std::fs::write(BPF_STATS, "1");
    let prog_ns = |f: &mut dyn FnMut()| prog_ns_of("lns_xdp", f);
    // Live frames need more than some sandboxes grant (EPERM seen here
    // without CAP_SYS_RESOURCE): then both programs are timed on repeats
    // whose verdicts are not carried out, the program alone.
    let live = lab.steering.test_run_live(&cases[0].2, at(lab.access), 1).is_ok();
    if !live {
        println!("live frames refused: ns/frame is the program alone (verdicts not carried out)");
    }
    println!("{:<40} {:>10} {:>10} {:>10}", "path", "ns/frame", "prog ns", "verdict");
    let mut results = Vec::new();
    for (name, ifindex, frame) in &cases {
        let r = lab.steering.test_run(frame, at(*ifindex)).unwrap();
        let mut d = std::time::Duration::ZERO;
        let p = prog_ns(&mut || {
            d = if live {
                lab.steering.test_run_live(frame, at(*ifindex), REPEAT).unwrap()
            } else {
                lab.steering.test_run_repeat(frame, at(*ifindex), REPEAT).unwrap().1
            }
        });
        println!("{:<40} {:>10} {:>10} {:>10?}", name, d.as_nanos(), p, r.action);
        results.push((name, d.as_nanos()));
    }
    let maps = lab.steering.maps();
    if std::env::var_os("XDP_COST_DEBUG").is_some() {
        eprintln!("{:?}", maps.counters().unwrap().0.iter().filter(|(_, v)| **v > 0).collect::<Vec<_>>());
    }
    // The baseline: the bare reflector's program on the same frame, with
    // the same socket in its map.
    let reflector = Reflector::load().unwrap();
    reflector.set_xsk(0, xa.fd()).unwrap();
    let (verdict, _) = reflector.test_run_repeat(&cases[0].2, at(lab.access), 1).unwrap();
    let mut base = std::time::Duration::ZERO;
    let p = prog_ns_of("reflect_xdp", &mut || {
        base = if live {
            reflector.test_run_live(&cases[0].2, at(lab.access), REPEAT).unwrap()
        } else {
            reflector.test_run_repeat(&cases[0].2, at(lab.access), REPEAT).unwrap().1
        }
    });
    if let Some(old) = stats_before {
        let _ = std::fs::write(BPF_STATS, old.trim());
    }
    assert_eq!(verdict, XdpAction::Redirect);
    println!(
        "{:<40} {:>10} {:>10} {:>10?}",
        "bare reflector baseline (redirect)",
        base.as_nanos(),
        p,
        verdict
    );
    for (name, ns) in results.iter().take(4) {
        println!("  {name}: {:.2}x the baseline's time", *ns as f64 / base.as_nanos().max(1) as f64);
    }
}
