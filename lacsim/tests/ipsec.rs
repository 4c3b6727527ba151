//! L2TP/IPsec with Debian's strongSwan: one charon per namespace (the LAC's
//! and the LNS's, each with its own strongswan.conf, vici socket and log),
//! IKEv1 (as the operating systems' built-in clients) and IKEv2 with a
//! pre-shared key, L2TP (UDP from the LAC to the LNS's port
//! 1701, lns-lacsim sending from a port of its own) the only traffic
//! selectors.
//!
//! This kernel has no ESP (CONFIG_INET_ESP unset), so charon does ESP in
//! user space: its kernel-libipsec plugin, ESP in UDP 4500 (forced with
//! `encap`), decrypted packets handed to the kernel on its TUN device
//! `ipsec0`, and routes in table 220 that send the peer's traffic into that
//! device (charon's own packets carry a firewall mark that skips them).
//! libipsec does tunnel mode only (a transport-mode CHILD_SA fails with
//! "IPsec SA: unsupported mode"); with both ends' addresses as the
//! selectors it carries exactly what transport mode would.
//!
//! The LNS requires IPsec of the LAC (`--peer 192.0.2.2,ipsec-interface=ipsec0`):
//! its L2TP in clear is refused, and over IPsec its sessions come up and
//! carry traffic both ways by the slow path, with nothing but IKE and
//! ESP-in-UDP on the access link and nothing redirected to AF_XDP.

mod common;
use common::{lnsctl_json, resolve_neighbours, start_dp, Subscribers};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lns_testlab::{unique_name, workspace_bin, Lab, Netns, NsProcess, PinDir, UdpEcho};

/// The pre-shared key both ends know.
const PSK: &str = "l2tp-ipsec-test-psk";

/// A charon (strongSwan's IKE daemon, charon-systemd: it stays in the
/// foreground) in one namespace, with its files in a directory of its own;
/// stopped and its files removed on drop.
struct Charon {
    proc: NsProcess,
    dir: PathBuf,
    ns: String,
}

impl Charon {
    /// Starts charon in `ns` for the connection `me` <-> `them`, loads it
    /// (swanctl over the instance's vici socket) and waits until it is
    /// ready to negotiate.
    /// `me_ts` and `them_ts`: the traffic selectors' protocol and port
    /// (`udp/1701`, or `udp`, any port, for a LAC that sends from another).
    /// `version`: IKEv1 (what the operating systems' built-in clients
    /// speak) or IKEv2.
    fn start(ns: &Netns, version: u8, (me, me_ts): (&str, &str), (them, them_ts): (&str, &str)) -> Charon {
        let dir = std::env::temp_dir().join(unique_name("swan"));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        // The fwmark pair: charon's own packets (IKE, ESP-in-UDP) are
        // marked and skip table 220, whose route would send them into
        // ipsec0 since the peer is its own traffic selector.
        std::fs::write(
            dir.join("strongswan.conf"),
            format!(
                "charon-systemd {{
  load = random nonce aes sha1 sha2 hmac kdf gmp kernel-libipsec kernel-netlink socket-default vici
  install_routes = yes
  routing_table = 220
  plugins {{
    vici {{ socket = unix://{d}/charon.vici }}
    socket-default {{ fwmark = 0x4c }}
    kernel-netlink {{ fwmark = !0x4c }}
    kernel-libipsec {{ allow_peer_ts = yes }}
  }}
  filelog {{
    test {{
      path = {d}/charon.log
      default = 1
      flush_line = yes
    }}
  }}
  journal {{ default = -1 }}
}}
"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("swanctl.conf"),
            format!(
                "connections {{
  l2tp {{
    version = {version}
    proposals = aes128-sha256-modp2048
    local_addrs = {me}
    remote_addrs = {them}
    encap = yes
    local {{
      auth = psk
      id = {me}
    }}
    remote {{
      auth = psk
      id = {them}
    }}
    children {{
      l2tp {{
        mode = tunnel
        local_ts = {me}[{me_ts}]
        remote_ts = {them}[{them_ts}]
        esp_proposals = aes128-sha256
      }}
    }}
  }}
}}
secrets {{
  ike-l2tp {{
    id-1 = {me}
    id-2 = {them}
    secret = \"{PSK}\"
  }}
}}
"
            ),
        )
        .unwrap();
        let conf = format!("STRONGSWAN_CONF={d}/strongswan.conf");
        let proc =
            NsProcess::spawn(ns, Path::new("/usr/bin/env"), &[&conf, "/usr/sbin/charon-systemd"]).unwrap();
        let mut c = Charon { proc, dir, ns: ns.name().to_string() };
        let t0 = Instant::now();
        loop {
            let loaded = c.swanctl(&["--load-all", "--file", &format!("{d}/swanctl.conf")]);
            if loaded.status.success() {
                return c;
            }
            assert!(c.proc.alive(), "charon exited: {:?}\n{}", c.proc.output(), c.log());
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "charon's vici socket did not answer: {}\n{}",
                String::from_utf8_lossy(&loaded.stderr),
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `swanctl ARGS` against this instance.
    fn swanctl(&self, args: &[&str]) -> std::process::Output {
        let uri = format!("unix://{}/charon.vici", self.dir.display());
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("/usr/sbin/swanctl")
            // The command first: swanctl takes its options after it.
            .args(args)
            .args(["--uri", &uri])
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        self.proc.stop(5);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// tcpdump on the LNS's access link, writing every frame to a file.
struct Capture {
    proc: NsProcess,
    file: PathBuf,
}

impl Capture {
    fn start(ns: &Netns, dev: &str) -> Capture {
        let file = std::env::temp_dir().join(format!("{}.pcap", unique_name("cap")));
        let proc = NsProcess::spawn(
            ns,
            Path::new("/usr/bin/tcpdump"),
            &["-n", "-U", "-i", dev, "-w", file.to_str().unwrap()],
        )
        .unwrap();
        let mut c = Capture { proc, file };
        let t0 = Instant::now();
        while !c.proc.output().1.contains("listening on") {
            assert!(
                c.proc.alive() && t0.elapsed() < Duration::from_secs(10),
                "tcpdump: {:?}",
                c.proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// Stops the capture; then [`Capture::count`] reads it.
    fn stop(&mut self) {
        self.proc.stop(5);
    }

    /// Captured packets that match the pcap filter `filter`.
    fn count(&self, filter: &str) -> usize {
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-r", self.file.to_str().unwrap(), filter])
            .output()
            .unwrap();
        assert!(out.status.success(), "tcpdump -r: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.proc.stop(5);
        let _ = std::fs::remove_file(&self.file);
    }
}

/// lns-lacsim in the LAC namespace; its JSON summary, whether or not its
/// sessions came up.
fn lacsim_run(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let bin = workspace_bin("lns-lacsim").unwrap();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.lac.name()))
        .arg(bin)
        .args(["--server", "192.0.2.1:1701", "--json"])
        .args(args)
        .output()
        .unwrap();
    out.stdout
        .split(|b| *b == b'\n')
        .find(|l| l.starts_with(b"{"))
        .and_then(|l| serde_json::from_slice(l).ok())
        .unwrap_or_else(|| serde_json::json!({ "stderr": String::from_utf8_lossy(&out.stderr) }))
}

#[test]
fn l2tp_over_ikev2_forwards_both_ways_and_l2tp_in_clear_is_refused() {
    l2tp_over_ipsec(2);
}

#[test]
fn l2tp_over_ikev1_psk_forwards_both_ways_and_l2tp_in_clear_is_refused() {
    l2tp_over_ipsec(1);
}

fn l2tp_over_ipsec(version: u8) {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp =
        lab.start_controlplane(pins.path(), 10, &["--peer", "192.0.2.2,ipsec-interface=ipsec0"]).unwrap();
    // Before IPsec routes the LAC's address into ipsec0.
    resolve_neighbours(&lab);
    // lns-lacsim sends from a port of its own (as a client behind a NAT
    // does): the LNS's UDP 1701 on one side, any port of the LAC's on the
    // other.
    let lns_charon = Charon::start(&lab.lns, version, ("192.0.2.1", "udp/1701"), ("192.0.2.2", "udp"));
    let lac_charon = Charon::start(&lab.lac, version, ("192.0.2.2", "udp"), ("192.0.2.1", "udp/1701"));

    // Without IPsec the LAC's L2TP arrives in clear on acc0: refused.
    let s = lacsim_run(&lab, &["--tunnels", "1", "--sessions-per-tunnel", "1", "--timeout", "4"]);
    assert_eq!(s["sessions_up"].as_u64().unwrap_or(0), 0, "{s}");
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    let log = cp.proc.output().1;
    assert!(stats["dropped"]["ipsec_required"].as_u64().unwrap_or(0) >= 1, "counted: {stats}\n{log}");
    assert_eq!(stats["tunnels_up_total"].as_u64().unwrap_or(0), 0, "no tunnel in clear: {stats}");
    assert!(log.contains("requires IPsec"), "noticed in the log: {log}");

    // IPsec up: only IKE and ESP in UDP on the access link from now on.
    let up = lac_charon.swanctl(&["--initiate", "--child", "l2tp", "--timeout", "20"]);
    assert!(
        up.status.success(),
        "IKE: {}\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        lac_charon.log(),
        lns_charon.log()
    );
    let mut cap = Capture::start(&lab.lns, "acc0");
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let s = lacsim_run(&lab, &Subscribers::new(1, 2).traffic("20,200").hold("2").args());
    let echoed = echo.stop();
    cap.stop();
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    assert_eq!(s["sessions_up"].as_u64(), Some(2), "{s}\n{stats}\n{}", lns_charon.log());
    let (sent, received) = (s["data_sent"].as_u64().unwrap(), s["data_received"].as_u64().unwrap());
    assert!(sent >= 40, "{s}");
    assert!(echoed + 2 >= sent, "upstream reached the core: {echoed} of {sent}\n{stats}");
    assert!(received + 4 >= sent, "downstream reached the subscribers: {received} of {sent}\n{s}\n{stats}");

    // The capture: no L2TP in clear, no UDP but IKE (500, 4500), and the
    // traffic of both ways as ESP in UDP.
    assert_eq!(cap.count("port 1701"), 0, "L2TP in clear on the access link");
    assert_eq!(cap.count("udp and not port 500 and not port 4500"), 0, "UDP besides IKE and ESP");
    assert_eq!(cap.count("ip and not udp"), 0, "IPv4 besides UDP");
    let esp = cap.count("udp port 4500 and udp[8:4] != 0");
    assert!(esp as u64 >= sent + received, "ESP in UDP: {esp} packets for {sent} up and {received} down");

    // By the slow path both ways, nothing to AF_XDP.
    let xdp = &stats["xdp"];
    for redirect in
        ["redirect_upstream", "redirect_downstream", "redirect_upstream_check", "redirect_downstream_check"]
    {
        assert_eq!(xdp[redirect].as_u64().unwrap_or(0), 0, "{redirect}: nothing to AF_XDP\n{stats}");
    }
    assert!(xdp["pass_slow_path_session"].as_u64().unwrap_or(0) >= received, "{stats}");
    let slow = &stats["slow_path"];
    assert!(slow["up_packets"].as_u64().unwrap_or(0) >= echoed, "{stats}");
    assert!(slow["down_packets"].as_u64().unwrap_or(0) >= received, "{stats}");
}
