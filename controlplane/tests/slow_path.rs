//! The exception path's two drivers against the real kernel, in a network
//! namespace of the test's own: the TUN device (`daemon::tun`) and the
//! subscriber routes into it (`daemon::routes`). Root only.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use lns_controlplane::daemon::routes::{Routes, RTPROT_LNS};
use lns_controlplane::daemon::tun::TunDevice;
use lns_testlab::{unique_name, Netns};

const SUBSCRIBER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The namespace's own address, on its loopback.
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const TABLE: u32 = 100;
const METRIC: u32 = 50;

/// Runs `body` on a thread of its own inside the namespace, on a
/// current-thread runtime: the TUN device and the netlink socket belong to
/// the namespace of the thread that opens them. The namespace (dropped by
/// the caller) goes even when `body` panics: the panic is carried over
/// after the thread has left it.
fn in_namespace<F>(ns: &Netns, body: impl FnOnce() -> F + Send) -> F::Output
where
    F: std::future::Future,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inside = ns.enter().expect("enter netns");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(body())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `ip route show` for `dst`, if any.
fn route_line(ns: &Netns, family: &str, table: u32, dst: &str) -> Option<String> {
    let table = table.to_string();
    let out = text(ns.ip(&[family, "route", "show", "table", &table]).expect("ip route show"));
    out.lines().find(|l| l.split_whitespace().next() == Some(dst)).map(str::to_string)
}

fn assert_ours(line: &str, dev: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)).copied();
    assert_eq!(after("dev"), Some(dev), "{line}");
    assert_eq!(after("metric"), Some(&*METRIC.to_string()), "{line}");
    assert_eq!(after("proto"), Some(&*RTPROT_LNS.to_string()), "{line}");
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = text(ns.ip(&["-s", "-j", "link", "show", "dev", dev]).expect("ip -s link"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
}

/// RFC 1071.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 =
        data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 ICMP echo (type 8) or echo reply (type 0).
fn icmp_echo(kind: u8, src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let start = p.len();
    p.extend_from_slice(&[kind, 0, 0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    let c = checksum(&p[start..]);
    p[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Reads packets from the device until an IPv4 ICMP one of `kind` comes.
async fn recv_icmp(tun: &TunDevice, kind: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let wait = async {
        loop {
            let n = tun.recv(&mut buf).await.expect("recv");
            let p = &buf[..n];
            // Router solicitations and the like may come first.
            if n >= 28 && p[0] >> 4 == 4 && p[9] == 1 && p[20] == kind {
                return p.to_vec();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.expect("an ICMP packet out of the TUN device")
}

#[test]
fn routes_into_the_tun_device_are_added_removed_and_flushed() {
    let ns = Netns::new("lnsrt").expect("netns");
    let dev = unique_name("lns");
    in_namespace(&ns, || async {
        let tun = TunDevice::create(&dev, 1400).expect("create TUN");
        assert_eq!(tun.name(), dev);
        assert_eq!(tun.ifindex(), ns.ifindex(&dev).expect("ifindex"));
        let link = text(ns.ip(&["link", "show", "dev", &dev]).expect("ip link"));
        assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");

        // A route of someone else's in the same table, through the same
        // device: flush must leave it.
        ns.ip(&["route", "add", "203.0.113.0/24", "dev", &dev, "table", "100", "metric", "50"])
            .expect("route");

        let routes = Routes::new(tun.ifindex(), TABLE, METRIC).await.expect("netlink");
        let v4: IpAddr = SUBSCRIBER.into();
        let v6: IpAddr = "2001:db8:100:7::".parse().expect("v6");
        routes.add(v4, 32).await.expect("add v4");
        routes.add(v6, 64).await.expect("add v6");
        routes.add(v4, 32).await.expect("adding again replaces");
        routes.add("2001:db8:100:7::1".parse().expect("v6"), 64).await.expect("host bits are cleared");
        let line = route_line(&ns, "-4", TABLE, "198.51.100.7").expect("v4 route in table 100");
        assert_ours(&line, &dev);
        assert!(line.contains("scope link"), "{line}");
        assert_ours(
            &route_line(&ns, "-6", TABLE, "2001:db8:100:7::/64").expect("v6 route in table 100"),
            &dev,
        );
        assert!(route_line(&ns, "-4", 254, "198.51.100.7").is_none(), "not in the main table");
        assert!(routes.add(v4, 33).await.is_err(), "a /33 is refused");

        routes.remove(v4, 32).await.expect("remove v4");
        assert!(route_line(&ns, "-4", TABLE, "198.51.100.7").is_none(), "removed");
        routes.remove(v4, 32).await.expect("removing an absent route is no error");
        assert!(route_line(&ns, "-6", TABLE, "2001:db8:100:7::/64").is_some(), "the other one stays");

        routes.add("198.51.100.8".parse().expect("v4"), 32).await.expect("add");
        assert_eq!(routes.flush().await.expect("flush"), 2);
        assert!(route_line(&ns, "-4", TABLE, "198.51.100.8").is_none());
        assert!(route_line(&ns, "-6", TABLE, "2001:db8:100:7::/64").is_none());
        assert!(route_line(&ns, "-4", TABLE, "203.0.113.0/24").is_some(), "flush removes only ours");
        assert_eq!(routes.flush().await.expect("flush"), 0);
    });
}

#[test]
fn packets_cross_the_tun_device_both_ways() {
    let ns = Netns::new("lnstun").expect("netns");
    let dev = unique_name("lns");
    let ns_name = ns.name().to_string();
    in_namespace(&ns, || async {
        let tun = TunDevice::create(&dev, 1400).expect("create TUN");
        ns.ip(&["addr", "add", &format!("{LOCAL}/32"), "dev", "lo"]).expect("address");
        let routes = Routes::new(tun.ifindex(), 254, 1024).await.expect("netlink");
        routes.add(SUBSCRIBER.into(), 32).await.expect("main-table route");

        // The kernel's packet to a subscriber comes out of the device; our
        // answer written into it reaches ping.
        let ping = Command::new("nsenter")
            .args([&format!("--net=/run/netns/{ns_name}"), "ping", "-c1", "-W3", "198.51.100.7"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ping");
        let request = recv_icmp(&tun, 8).await;
        assert_eq!(request[16..20], SUBSCRIBER.octets(), "to the subscriber");
        assert_eq!(request[12..16], LOCAL.octets(), "from the namespace's address");
        let id = u16::from_be_bytes([request[24], request[25]]);
        let seq = u16::from_be_bytes([request[26], request[27]]);
        let reply = icmp_echo(0, SUBSCRIBER, LOCAL, id, seq, &request[28..]);
        tun.try_send(&reply).expect("send the reply");
        let ping = ping.wait_with_output().expect("ping");
        assert!(ping.status.success(), "ping got our reply: {}", String::from_utf8_lossy(&ping.stderr));

        // A subscriber's echo to the namespace: the kernel counts it in
        // and answers it through the device.
        let before = rx_packets(&ns, &dev);
        tun.try_send(&icmp_echo(8, SUBSCRIBER, LOCAL, 0x4c4e, 1, b"slow path")).expect("send");
        let answer = recv_icmp(&tun, 0).await;
        assert_eq!(answer[12..16], LOCAL.octets());
        assert_eq!(&answer[28..], b"slow path");
        assert_eq!(rx_packets(&ns, &dev), before + 1);

        assert_eq!(routes.flush().await.expect("flush"), 1);
        assert!(TunDevice::create("a-name-over-15-bytes", 1400).is_err());
    });
    // Non-persistent: gone with the descriptor.
    assert!(ns.ip(&["link", "show", "dev", &dev]).is_err(), "the device is gone with its descriptor");
}
