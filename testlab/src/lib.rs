//! Network-namespace labs for the LNS tests.
//!
//! Every object a test makes (namespace, veth, BPF pin directory) gets a name
//! unique to the process and the test, and is removed by a drop guard, so
//! tests run in parallel, twice in a row, and leave nothing behind when they
//! fail.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `<prefix><pid><n>`, short
/// enough for an interface name (15 bytes).
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "name {name} too long for an interface");
    name
}

/// Runs a command, failing with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!("{cmd} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// A network namespace, deleted on drop (with every interface in it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Result<Netns> {
        let name = unique_name(prefix);
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<Output> {
        let mut a = vec!["netns", "exec", &self.name, cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Moves the calling thread into the namespace until the guard drops.
    /// Only this thread moves: tests running beside it are unaffected.
    pub fn enter(&self) -> Result<NetnsEntered> {
        let original = File::open("/proc/thread-self/ns/net").context("opening own netns")?;
        let target = File::open(format!("/run/netns/{}", self.name)).context("opening netns")?;
        setns(&target, CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(NetnsEntered { original })
    }

    /// Creates a veth pair with `queues` rx and tx queues, both ends in this
    /// namespace, up, with TX checksum offload off (or frames leave with
    /// partial checksums).
    pub fn add_veth_pair(&self, a: &str, b: &str, queues: u32) -> Result<()> {
        let q = queues.to_string();
        self.ip(&[
            "link",
            "add",
            a,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ])?;
        for dev in [a, b] {
            self.exec("ethtool", &["-K", dev, "tx", "off"])?;
            self.ip(&["link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// ifindex of an interface in this namespace.
    pub fn ifindex(&self, dev: &str) -> Result<u32> {
        let path = format!("/sys/class/net/{dev}/ifindex");
        let out = self.exec("cat", &[&path])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// The calling thread is inside a namespace; dropping returns it.
pub struct NetnsEntered {
    original: File,
}

impl Drop for NetnsEntered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original, CloneFlags::CLONE_NEWNET) {
            // A thread stuck in a deleted namespace would confuse every later
            // test on it: stop here.
            panic!("returning to the original netns failed: {e}");
        }
    }
}

/// A BPF pin directory unique to the test, removed with its contents on drop.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    pub fn new() -> Result<PinDir> {
        let path = Path::new("/sys/fs/bpf").join(unique_name("lnst"));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(PinDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // bpffs has no recursive unlink; pins are files one level deep.
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}
