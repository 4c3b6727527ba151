//! lns-reflect, the benchmarks' bare baseline, on a veth: every frame sent
//! to the LNS's interface comes back to its sender with the MAC addresses
//! swapped and nothing else changed, ARP included (the program redirects
//! every frame of the queue).

use std::time::{Duration, Instant};

use lns_testlab::frames::{eth_ip, udp_v4};
use lns_testlab::{workspace_bin, Lab, NsProcess, RawSocket};

#[test]
fn frames_come_back_with_their_mac_addresses_swapped() {
    let lab = Lab::new(1).unwrap();
    let (lac0, acc0) = (Lab::mac(&lab.lac, "lac0").unwrap(), Lab::mac(&lab.lns, "acc0").unwrap());
    let mut p =
        NsProcess::spawn(&lab.lns, &workspace_bin("lns-reflect").unwrap(), &["--dev", "acc0"]).unwrap();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&lab.lns.ip(&["-d", "link", "show", "acc0"]).unwrap().stdout)
        .contains("prog/xdp")
    {
        assert!(
            p.alive() && t0.elapsed() < Duration::from_secs(20),
            "lns-reflect did not attach: {:?}",
            p.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sock = RawSocket::open(&lab.lac, "lac0").unwrap();
    let mut sent = Vec::new();
    for i in 0..20u8 {
        let ip = udp_v4([192, 0, 2, 2], 4000 + u16::from(i), [192, 0, 2, 1], 9, 64, &[i; 100]);
        let f = eth_ip(acc0, lac0, &ip);
        sock.send(&f).unwrap();
        sent.push(f);
    }
    // A UDP datagram to the LNS's own address: the stack would answer with
    // ICMP port unreachable, the reflector sends it back as it came.
    let back = sock.collect(Duration::from_secs(3), |f| f.len() > 14 && f[..6] == lac0 && f[6..12] == acc0);
    let mut want: Vec<Vec<u8>> = sent
        .iter()
        .map(|f| {
            let mut w = f.clone();
            w[..6].copy_from_slice(&lac0);
            w[6..12].copy_from_slice(&acc0);
            w
        })
        .collect();
    let mut got: Vec<Vec<u8>> = back.into_iter().filter(|f| f[12..14] == [0x08, 0x00]).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every frame back, MAC addresses swapped, nothing else changed");
    p.stop(5);
    let (out, err) = p.output();
    let report: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_default();
    assert!(report["workers"][0]["rx"].as_u64().unwrap_or(0) >= 20, "{out}\n{err}");
    assert!(err.contains("XDP detached"), "says what it left: {err}");
}
