//! The LNS in a network namespace: `--queues all` counts the queues of the
//! namespace's own interface (not sysfs, which under `nsenter --net` shows
//! the root namespace's), and under `ip netns exec` (a /sys of its own,
//! without bpffs) both processes exit at once naming the fix, or work with
//! a pin directory on a bpffs they both see.

use std::path::Path;
use std::time::{Duration, Instant};

use lns_testlab::{run, unique_name, workspace_bin, Lab, NsProcess, PinDir};

#[test]
fn queues_all_under_nsenter_counts_the_namespaces_queues() {
    let lab = Lab::new(4).unwrap();
    let pins = PinDir::new().unwrap();
    // The root namespace has no acc0: sysfs there could not answer.
    assert!(!Path::new("/sys/class/net/acc0").exists(), "a stray acc0 in the root namespace");
    let dp = lab
        .start_dataplane(
            pins.path(),
            &["--queues", "all", "--xdp-mode", "skb", "--bind", "copy", "--stats-interval", "0"],
        )
        .unwrap();
    let err = dp.output().1;
    assert!(err.contains("lns-dataplane: 4 queue(s) on acc0"), "{err}");
}

/// Runs `bin args` under `ip netns exec` in the lab's LNS namespace.
fn ip_netns_exec(lab: &Lab, bin: &str, args: &[&str]) -> NsProcess {
    let bin = workspace_bin(bin).unwrap();
    let mut a = vec!["netns", "exec", lab.lns.name(), bin.to_str().unwrap()];
    a.extend_from_slice(args);
    NsProcess::spawn_in(None, Path::new("ip"), &a).unwrap()
}

/// Waits for `p` to exit within `secs`, and returns its stderr.
fn exits_within(p: &mut NsProcess, secs: u64) -> String {
    let t0 = Instant::now();
    while p.alive() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "still running: {:?}", p.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    p.output().1
}

fn names_the_fix(err: &str) {
    assert!(err.contains("is not on a BPF filesystem"), "{err}");
    assert!(err.contains("nsenter --net=/run/netns/NS") && err.contains("--bpf-pin-dir"), "{err}");
}

#[test]
fn under_ip_netns_exec_both_processes_exit_at_once_or_work_on_a_shared_bpffs() {
    let lab = Lab::new(1).unwrap();
    let instance = unique_name("ipne");
    let sock = std::env::temp_dir().join(format!("{instance}.sock"));
    let sock_arg = sock.to_str().unwrap().to_string();
    let cp_args = |pin: &[&str]| -> Vec<String> {
        let mut a: Vec<String> =
            ["--instance", &instance, "--peer", "192.0.2.2", "--control-socket", &sock_arg]
                .iter()
                .map(|s| s.to_string())
                .collect();
        a.extend(pin.iter().map(|s| s.to_string()));
        a
    };
    let dp_args = ["--access-if", "acc0", "--core-if", "core0", "--instance", &instance];
    let dp_rest = ["--queues", "all", "--xdp-mode", "skb", "--bind", "copy", "--stats-interval", "0"];

    // The default pin directory, /sys/fs/bpf/lns/<instance>: hidden.
    let mut dp = ip_netns_exec(&lab, "lns-dataplane", &[&dp_args[..], &dp_rest[..]].concat());
    names_the_fix(&exits_within(&mut dp, 10));
    let a = cp_args(&[]);
    let mut cp = ip_netns_exec(&lab, "lns-controlplane", &a.iter().map(String::as_str).collect::<Vec<_>>());
    names_the_fix(&exits_within(&mut cp, 10));
    assert!(!Path::new("/sys/fs/bpf/lns").join(&instance).exists(), "nothing pinned where nobody looks");

    // A bpffs of its own, mounted outside /sys: both see it.
    let mnt = std::env::temp_dir().join(unique_name("lnsbpf"));
    std::fs::create_dir_all(&mnt).unwrap();
    run("mount", &["-t", "bpf", "bpf", mnt.to_str().unwrap()]).unwrap();
    let pins = mnt.join("pins");
    let pins_arg = pins.to_str().unwrap().to_string();
    let result = std::panic::catch_unwind(|| {
        let mut dp = ip_netns_exec(
            &lab,
            "lns-dataplane",
            &[&dp_args[..], &dp_rest[..], &["--bpf-pin-dir", &pins_arg, "--unpin-on-exit"][..]].concat(),
        );
        let t0 = Instant::now();
        while !pins.join("lns_config").exists() || !lab_attached(&lab) {
            assert!(dp.alive() && t0.elapsed() < Duration::from_secs(30), "{:?}", dp.output());
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = cp_args(&["--bpf-pin-dir", &pins_arg]);
        let mut cp =
            ip_netns_exec(&lab, "lns-controlplane", &a.iter().map(String::as_str).collect::<Vec<_>>());
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(cp.alive() && t0.elapsed() < Duration::from_secs(10), "{:?}", cp.output());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(dp.alive(), "{:?}", dp.output());
        cp.stop(5);
        dp.stop(5);
    });
    let _ = run("umount", &[mnt.to_str().unwrap()]);
    let _ = std::fs::remove_dir(&mnt);
    let _ = std::fs::remove_file(&sock);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn lab_attached(lab: &Lab) -> bool {
    ["acc0", "core0"].iter().all(|dev| {
        lab.lns
            .ip(&["-d", "link", "show", dev])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
            .unwrap_or(false)
    })
}
