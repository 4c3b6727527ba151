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

pub mod freeradius;

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

/// A process started in a namespace, killed (SIGTERM, then SIGKILL) on drop.
pub struct NsProcess {
    child: Option<std::process::Child>,
    pub name: String,
}

impl NsProcess {
    /// Starts `cmd args` inside `ns` with stdout and stderr sent to files in
    /// the temp dir (read back with [`NsProcess::output`]).
    pub fn spawn(ns: &Netns, cmd: &Path, args: &[&str]) -> Result<NsProcess> {
        NsProcess::spawn_in(Some(ns), cmd, args)
    }

    /// [`NsProcess::spawn`] in `ns`, or in the caller's own namespace.
    pub fn spawn_in(ns: Option<&Netns>, cmd: &Path, args: &[&str]) -> Result<NsProcess> {
        let name = unique_name("proc");
        let out = std::fs::File::create(std::env::temp_dir().join(format!("{name}.out")))?;
        let err = std::fs::File::create(std::env::temp_dir().join(format!("{name}.err")))?;
        // nsenter rather than `ip netns exec`: the latter also gives the
        // process a mount namespace with a fresh /sys, where /sys/fs/bpf is
        // not mounted and pins would be invisible to everyone else.
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{}", ns.name())).arg(cmd);
                c
            }
            None => Command::new(cmd),
        };
        // The process dies with the thread that started it: a test or a
        // benchmark killed (a timeout's SIGKILL, no Drop run) leaves no
        // daemon running on after its lab is gone. (Start it from the
        // thread that owns it, not from one that ends first.)
        // SAFETY: between fork and exec only prctl, which is
        // async-signal-safe, runs in the child.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", cmd.display()))?;
        Ok(NsProcess { child: Some(child), name })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops the process with SIGTERM and waits up to `secs` for it.
    pub fn stop(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL: the process gets no chance to clean up (crash tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What it wrote to stdout and stderr so far.
    pub fn output(&self) -> (String, String) {
        let read = |ext: &str| {
            std::fs::read_to_string(std::env::temp_dir().join(format!("{}.{ext}", self.name)))
                .unwrap_or_default()
        };
        (read("out"), read("err"))
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.stop(5);
        for ext in ["out", "err"] {
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.{ext}", self.name)));
        }
    }
}

/// A binary of the workspace, found beside the running test executable
/// (target/<profile>/), built by `cargo test --workspace`.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("test executable has no directory")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    if !p.exists() {
        bail!("{} not built: run `cargo build --workspace` (or `cargo test --workspace`) first", p.display());
    }
    Ok(p)
}

/// The LNS lab: a LAC namespace and a core namespace on either side of the
/// LNS namespace, over veths with `queues` queues.
///
/// | ns  | interface | addresses |
/// |-----|-----------|-----------|
/// | lac | lac0      | 192.0.2.2/24, 2001:db8:ac::2/64 |
/// | lns | acc0      | 192.0.2.1/24, 2001:db8:ac::1/64 |
/// | lns | core0     | 203.0.113.1/24, 2001:db8:c0::1/64 |
/// | core| core0p    | 203.0.113.7/24, 2001:db8:c0::7/64; routes to the subscriber ranges 198.51.100.0/24 and 2001:db8:100::/40 via the LNS |
pub struct Lab {
    pub lac: Netns,
    pub lns: Netns,
    pub core: Netns,
}

impl Lab {
    pub fn new(queues: u32) -> Result<Lab> {
        let lab = Lab { lac: Netns::new("lac")?, lns: Netns::new("lns")?, core: Netns::new("cor")? };
        let (lns, lac, core) = (&lab.lns, &lab.lac, &lab.core);
        lns.add_veth_pair("acc0", "lac0", queues)?;
        lns.add_veth_pair("core0", "core0p", queues)?;
        lns.ip(&["link", "set", "lac0", "netns", lac.name()])?;
        lns.ip(&["link", "set", "core0p", "netns", core.name()])?;
        for (ns, dev, v4, v6) in [
            (lac, "lac0", "192.0.2.2/24", "2001:db8:ac::2/64"),
            (lns, "acc0", "192.0.2.1/24", "2001:db8:ac::1/64"),
            (lns, "core0", "203.0.113.1/24", "2001:db8:c0::1/64"),
            (core, "core0p", "203.0.113.7/24", "2001:db8:c0::7/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", dev])?;
            ns.ip(&["addr", "add", v6, "dev", dev, "nodad"])?;
            ns.ip(&["link", "set", dev, "up"])?;
            ns.exec("ethtool", &["-K", dev, "tx", "off"])?;
        }
        core.ip(&["route", "add", "198.51.100.0/24", "via", "203.0.113.1"])?;
        core.ip(&["-6", "route", "add", "2001:db8:100::/40", "via", "2001:db8:c0::1"])?;
        Ok(lab)
    }

    /// MAC address of an interface in a namespace.
    pub fn mac(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
        let out = ns.exec("cat", &[&format!("/sys/class/net/{dev}/address")])?;
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u8> = s.trim().split(':').map(|h| u8::from_str_radix(h, 16)).collect::<Result<_, _>>()?;
        v.try_into().map_err(|_| anyhow::anyhow!("bad MAC {s}"))
    }
}

/// An AF_PACKET socket bound to one interface: injects whole Ethernet frames
/// and captures the frames that arrive, byte for byte.
pub struct RawSocket {
    fd: std::os::fd::OwnedFd,
}

impl RawSocket {
    /// Opens it on `dev` in `ns` (the socket stays in that namespace).
    pub fn open(ns: &Netns, dev: &str) -> Result<RawSocket> {
        use std::os::fd::FromRawFd;
        let _in = ns.enter()?;
        let ifindex = {
            let c = std::ffi::CString::new(dev)?;
            // SAFETY: c is a valid NUL-terminated string.
            unsafe { libc::if_nametoindex(c.as_ptr()) }
        };
        if ifindex == 0 {
            bail!("no interface {dev} in {}", ns.name());
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto as i32) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        // SAFETY: fd is a new descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let s = RawSocket { fd };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                s.raw(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("binding AF_PACKET");
        }
        let one: libc::c_int = 1;
        // SAFETY: valid option value pointer and length. Frames we send are
        // not captured back.
        unsafe {
            libc::setsockopt(
                s.raw(),
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        Ok(s)
    }

    fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: frame is a valid buffer of the given length.
        let n = unsafe { libc::send(self.raw(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET send");
        }
        Ok(())
    }

    /// Every frame that arrives within `wait` for which `keep` says yes.
    pub fn collect(&self, wait: std::time::Duration, mut keep: impl FnMut(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let deadline = std::time::Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let now = std::time::Instant::now();
            if now >= deadline {
                return out;
            }
            let left = (deadline - now).as_millis().max(1) as i32;
            let mut pfd = libc::pollfd { fd: self.raw(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::recv(self.raw(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n > 0 && keep(&buf[..n as usize]) {
                out.push(buf[..n as usize].to_vec());
            }
        }
    }
}

/// Frames for labs and tests (the data plane's fast-path test builds its
/// L2TP frames with these).
pub mod frames {
    use lns_wire::{checksum, l2tp};

    /// An L2TP data message (no optional fields) carrying PPP with
    /// Address/Control and a 2-byte protocol.
    pub fn l2tp_data(tunnel: u16, session: u16, proto: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = l2tp::DATA.to_be_bytes().to_vec();
        v.extend_from_slice(&tunnel.to_be_bytes());
        v.extend_from_slice(&session.to_be_bytes());
        v.extend_from_slice(&[0xff, 0x03]);
        v.extend_from_slice(&proto.to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    /// An Ethernet header in front of an IP packet (type from its version).
    pub fn eth_ip(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(14 + ip.len());
        v.extend_from_slice(&dst);
        v.extend_from_slice(&src);
        v.extend_from_slice(if ip.first().map(|b| b >> 4) == Some(6) {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        v.extend_from_slice(ip);
        v
    }

    /// IPv4/UDP with valid checksums, DF set.
    pub fn udp_v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut v = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, 17, 0, 0];
        v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        let c = checksum::of(&v);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        let ulen = (8 + payload.len()) as u16;
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&ulen.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let c = checksum::udp_field(checksum::ipv4_upper_layer(src, dst, 17, &u));
        u[6..8].copy_from_slice(&c.to_be_bytes());
        v.extend_from_slice(&u);
        v
    }

    /// Ethernet/IPv4/UDP from `src` to `dst` carrying `payload` (an L2TP message).
    #[allow(clippy::too_many_arguments)]
    pub fn udp_frame(
        dmac: [u8; 6],
        smac: [u8; 6],
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        eth_ip(dmac, smac, &udp_v4(src, sport, dst, dport, 64, payload))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn udp_v4_matches_a_real_stack() {
            // testdata/captures/l2tpns-lns_ppp-chap-ipcp.pcap frame 24, the
            // subscriber's datagram inside the tunnel (checksums correct per
            // tshark); only the IP identification (1 there, 0 here) and so
            // the header checksum differ.
            let v = udp_v4([198, 51, 100, 1], 40000, [203, 0, 113, 1], 9, 64, b"hello through l2tpns");
            let mut want = vec![
                0x45, 0x00, 0x00, 0x30, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xd4, 0x85, 0xc6, 0x33, 0x64,
                0x01, 0xcb, 0x00, 0x71, 0x01, 0x9c, 0x40, 0x00, 0x09, 0x00, 0x1c, 0xa5, 0xcd,
            ];
            want.extend_from_slice(b"hello through l2tpns");
            assert_eq!(v[20..], want[20..], "UDP header, checksum and payload");
            assert_eq!((&v[..4], &v[6..10], &v[12..20]), (&want[..4], &want[6..10], &want[12..20]));
            assert_eq!(checksum::of(&v[..20]), 0);
        }

        #[test]
        fn l2tp_data_is_a_bare_data_header() {
            assert_eq!(
                l2tp_data(7, 9, 0x21, &[0x45]),
                [0x00, 0x02, 0, 7, 0, 9, 0xff, 0x03, 0x00, 0x21, 0x45]
            );
            let f = udp_frame([2; 6], [4; 6], [192, 0, 2, 2], 1701, [192, 0, 2, 1], 1701, &[1, 2, 3]);
            assert_eq!((&f[..6], &f[6..12], &f[12..14]), (&[2u8; 6][..], &[4u8; 6][..], &[8u8, 0][..]));
            assert_eq!(f.len(), 14 + 28 + 3);
        }
    }
}

impl Lab {
    /// Starts `lns-dataplane` in the LNS namespace on acc0 (access) and core0
    /// (core) with the maps pinned in `pins`, and waits until the program is
    /// attached to both (it attaches last, once every socket is bound).
    pub fn start_dataplane(&self, pins: &Path, extra: &[&str]) -> Result<NsProcess> {
        let mut args = vec!["--access-if", "acc0", "--core-if", "core0", "--bpf-pin-dir"];
        args.push(pins.to_str().context("pin path")?);
        args.extend_from_slice(extra);
        self.start_dataplane_args(&args)
    }

    /// [`Lab::start_dataplane`] with exactly `args` (a `--config` naming
    /// acc0 and core0, say).
    pub fn start_dataplane_args(&self, args: &[&str]) -> Result<NsProcess> {
        let mut dp = NsProcess::spawn(&self.lns, &workspace_bin("lns-dataplane")?, args)?;
        let t0 = std::time::Instant::now();
        loop {
            let attached = |dev: &str| -> Result<bool> {
                let out = self.lns.ip(&["-d", "link", "show", dev])?;
                Ok(String::from_utf8_lossy(&out.stdout).contains("prog/xdp"))
            };
            if attached("acc0")? && attached("core0")? {
                return Ok(dp);
            }
            if !dp.alive() {
                bail!("lns-dataplane exited: {:?}", dp.output());
            }
            if t0.elapsed() > std::time::Duration::from_secs(30) {
                bail!("lns-dataplane did not attach within 30 s: {:?}", dp.output());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// lns-controlplane running in a lab's LNS namespace with a users file and a
/// pool written for it; removed (process and files) on drop.
pub struct ControlPlane {
    pub proc: NsProcess,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.proc.stop(5);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    /// Starts lns-controlplane in the LNS namespace on the data plane's maps
    /// in `pins`, accepting the LAC 192.0.2.2 (unless `extra` has peers of
    /// its own), with local users
    /// `user1..=userN` (password `pw<N>`), the pool 198.51.100.0/24 and the
    /// IPv6 pool 2001:db8:100::/40 in /64s (so IPv6CP is offered; the core
    /// namespace routes that /40 to the LNS).
    pub fn start_controlplane(&self, pins: &Path, users: u32, extra: &[&str]) -> Result<ControlPlane> {
        self.start_controlplane_with(pins, users, "", extra)
    }

    /// [`Lab::start_controlplane`] with more `[ppp]` settings (TOML lines).
    pub fn start_controlplane_with(
        &self,
        pins: &Path,
        users: u32,
        ppp_extra: &str,
        extra: &[&str],
    ) -> Result<ControlPlane> {
        let dir = std::env::temp_dir().join(unique_name("lnscp"));
        std::fs::create_dir_all(&dir)?;
        let mut u = String::new();
        for i in 1..=users {
            u.push_str(&format!("[[user]]\nname = \"user{i}\"\npassword = \"pw{i}\"\n"));
        }
        std::fs::write(dir.join("users.toml"), u)?;
        std::fs::write(
            dir.join("lns.toml"),
            format!(
                "[ppp]\nusers_file = \"{}\"\nlocal_ipv4 = \"203.0.113.1\"\n{ppp_extra}\n[[pool]]\nname = \"default\"\nranges = [\"198.51.100.0/24\"]\n\
                 [[ipv6_pool]]\nname = \"default\"\nprefix = \"2001:db8:100::/40\"\nlength = 64\n",
                dir.join("users.toml").display()
            ),
        )?;
        let socket = dir.join("ctl.sock");
        let conf = dir.join("lns.toml");
        let mut args = vec![
            "--config",
            conf.to_str().context("path")?,
            "--bpf-pin-dir",
            pins.to_str().context("path")?,
            "--control-socket",
            socket.to_str().context("path")?,
        ];
        // A test that names its peers (`--peer 192.0.2.2,fast-path=no`)
        // gets those alone: the first match would be the default's.
        if !extra.iter().any(|a| *a == "--peer" || a.starts_with("--peer=")) {
            args.extend(["--peer", "192.0.2.2"]);
        }
        args.extend_from_slice(extra);
        let mut proc = NsProcess::spawn(&self.lns, &workspace_bin("lns-controlplane")?, &args)?;
        let t0 = std::time::Instant::now();
        while !socket.exists() {
            if !proc.alive() || t0.elapsed() > std::time::Duration::from_secs(10) {
                let out = proc.output();
                let _ = std::fs::remove_dir_all(&dir);
                bail!("lns-controlplane did not start: {out:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(ControlPlane { proc, dir, socket })
    }
}

/// A UDP echo server in a namespace (the far end of subscriber traffic),
/// stopped on drop.
pub struct UdpEcho {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl UdpEcho {
    pub fn start(ns: &Netns, addr: &str) -> Result<UdpEcho> {
        let sock = {
            let _in = ns.enter()?;
            std::net::UdpSocket::bind(addr)?
        };
        sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut n = 0;
            let mut b = [0u8; 2048];
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((len, from)) = sock.recv_from(&mut b) {
                    let _ = sock.send_to(&b[..len], from);
                    n += 1;
                }
            }
            n
        });
        Ok(UdpEcho { stop, handle: Some(handle) })
    }

    /// Stops it; returns how many datagrams it echoed.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().map(|h| h.join().unwrap_or(0)).unwrap_or(0)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
