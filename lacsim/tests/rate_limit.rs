//! Per-subscriber rate limits, end to end: FreeRADIUS grants them
//! (WISPr-Bandwidth-Max-Down/Up), the data plane's workers police them,
//! radclient changes them with a CoA-Request. Traffic is lacsim's UDP to an
//! echo in the core namespace, at four times the limit; what was delivered
//! is the fast path's per-session byte counters (`lnsctl session show`).

mod common;
use common::{freeradius, lnsctl_json, resolve_neighbours, start_dp, wait_until, Subscribers};

use std::time::{Duration, Instant};

use lns_testlab::freeradius::radclient;
use lns_testlab::{workspace_bin, ControlPlane, Lab, NsProcess, PinDir, UdpEcho};

const SECRET: &str = "lns-test-secret";
const COA_SECRET: &str = "coa-secret";
/// The limit, bits per second, and the measurement window.
const LIMIT: u64 = 2_000_000;
const WINDOW: Duration = Duration::from_secs(10);

fn sessions(cp: &ControlPlane) -> Vec<serde_json::Value> {
    lnsctl_json(&cp.socket, &["session", "list"]).as_array().cloned().unwrap_or_default()
}

/// `n` subscribers (user1.., RADIUS passwords rad1..) sending 1,000
/// packets of 1,000 bytes a second each way (8 Mbit/s), held up for a
/// minute; returns once all of them forward.
fn flood(lab: &Lab, cp: &ControlPlane, n: u32) -> NsProcess {
    let mut args = vec!["--server", "192.0.2.1:1701", "--json"];
    let round = Subscribers::new(1, n).arg("--auth", "pap").password("rad%d").traffic("1000,1000").hold("60");
    args.extend(round.args());
    let sim = NsProcess::spawn(&lab.lac, &workspace_bin("lns-lacsim").unwrap(), &args).unwrap();
    wait_until(&format!("{n} sessions forwarding"), Duration::from_secs(20), || {
        let rows = sessions(cp);
        (rows.iter().filter(|r| r["dataplane_state"] == "forwarding").count() == n as usize).then_some(())
    });
    sim
}

/// Subscriber IP bytes the fast path carried for `user` (down, up) and
/// what its limits dropped (down, up), from `lnsctl session show`.
fn counters(cp: &ControlPlane, user: &str) -> ([u64; 2], [u64; 2], serde_json::Value) {
    let rows = sessions(cp);
    let row = rows.iter().find(|r| r["username"] == user).unwrap_or_else(|| panic!("{user}: {rows:?}"));
    let id = row["session_id"].as_u64().unwrap().to_string();
    let tunnel = row["tunnel_id"].as_u64().unwrap().to_string();
    let s = lnsctl_json(&cp.socket, &["session", "show", &id, "--tunnel", &tunnel]);
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    (
        [n(&s["fast_path"]["down_bytes"]), n(&s["fast_path"]["up_bytes"])],
        [n(&s["policed"]["down_packets"]), n(&s["policed"]["up_packets"])],
        s,
    )
}

/// Bits per second each user's traffic got (down, up) over `window`.
fn measure(cp: &ControlPlane, users: &[&str], window: Duration) -> Vec<[f64; 2]> {
    let before: Vec<_> = users.iter().map(|u| counters(cp, u).0).collect();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let after: Vec<_> = users.iter().map(|u| counters(cp, u).0).collect();
    let secs = t0.elapsed().as_secs_f64();
    before
        .iter()
        .zip(&after)
        .map(|(b, a)| [(a[0] - b[0]) as f64 * 8.0 / secs, (a[1] - b[1]) as f64 * 8.0 / secs])
        .collect()
}

fn within(got: f64, want: u64, tolerance: f64) -> bool {
    (got - want as f64).abs() <= want as f64 * tolerance
}

#[test]
fn rates_from_radius_police_each_way_and_a_coa_halves_them() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    // user1: limited toward the subscriber; user2: from it; user3: not at
    // all. The echo returns what arrives, so user1's downstream and
    // user2's upstream get four times their limit.
    let users = format!(
        "user1\tCleartext-Password := \"rad1\"\n\tWISPr-Bandwidth-Max-Down = {LIMIT}\n\n\
         user2\tCleartext-Password := \"rad2\"\n\tWISPr-Bandwidth-Max-Up = {LIMIT}\n\n\
         user3\tCleartext-Password := \"rad3\"\n\n"
    );
    let _fr = freeradius(&lab, users, 1812, 0, SECRET);
    let toml = format!(
        "[radius]\nnas_identifier = \"lns-test\"\ntimeout = \"300ms\"\nretries = 1\n\
         [[radius.auth_server]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{SECRET}\"\n\
         [radius.dynauth]\nlisten = \"127.0.0.1:3799\"\n\
         [[radius.dynauth.client]]\naddress = \"127.0.0.1\"\nsecret = \"{COA_SECRET}\"\n"
    );
    let cp = lab.start_controlplane_with(pins.path(), 3, &toml, &[]).unwrap();
    resolve_neighbours(&lab);
    let _echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    // 1,000 packets of 1,000 bytes a second each: 8 Mbit/s, four times
    // the limit.
    let _sim = flood(&lab, &cp, 3);
    let (_, _, show) = counters(&cp, "user1");
    assert_eq!((show["rate_down"].as_u64(), show["rate_up"].as_u64()), (Some(LIMIT), Some(0)), "{show}");
    // Past the first burst.
    std::thread::sleep(Duration::from_secs(1));
    let got = measure(&cp, &["user1", "user2", "user3"], WINDOW);
    eprintln!("bit/s (down, up): user1 {:?} user2 {:?} user3 {:?}", got[0], got[1], got[2]);
    assert!(within(got[0][0], LIMIT, 0.10), "user1 downstream at its limit: {:?}", got[0]);
    assert!(got[0][1] > 3.0 * LIMIT as f64, "user1 upstream is not limited: {:?}", got[0]);
    assert!(within(got[1][1], LIMIT, 0.10), "user2 upstream at its limit: {:?}", got[1]);
    assert!(
        got[2][0] > 3.0 * LIMIT as f64 && got[2][1] > 3.0 * LIMIT as f64,
        "user3 unlimited: {:?}",
        got[2]
    );
    let (_, policed1, _) = counters(&cp, "user1");
    let (_, policed2, _) = counters(&cp, "user2");
    let (_, policed3, _) = counters(&cp, "user3");
    assert!(policed1[0] > 0 && policed1[1] == 0, "user1's drops are downstream: {policed1:?}");
    assert!(policed2[1] > 0 && policed2[0] == 0, "user2's drops are upstream: {policed2:?}");
    assert_eq!(policed3, [0, 0], "user3 lost nothing to a limit");

    // A CoA-Request halves user1's downstream limit; the ACK comes once
    // the entry says so, and the delivered rate follows within a second.
    let attrs = format!("User-Name = \"user1\"\nWISPr-Bandwidth-Max-Down = {}\n", LIMIT / 2);
    let out = radclient(&lab.lns, "127.0.0.1:3799", "coa", COA_SECRET, &attrs).unwrap();
    assert!(out.contains("CoA-ACK"), "{out}");
    let (_, _, show) = counters(&cp, "user1");
    assert_eq!(show["rate_down"].as_u64(), Some(LIMIT / 2), "{show}");
    std::thread::sleep(Duration::from_secs(1));
    let got = measure(&cp, &["user1"], Duration::from_secs(5));
    eprintln!("after the CoA: user1 {:?}", got[0]);
    assert!(within(got[0][0], LIMIT / 2, 0.10), "user1 downstream at its new limit: {:?}", got[0]);
}

/// The same with the operator's text attribute (`[radius] rate_attribute
/// = "Filter-Id"`, "down/up" as accel-ppp reads it): the Access-Accept's
/// Filter-Id sets the limits, a CoA-Request's Filter-Id changes them. A
/// Filter-Id that is no rate pair (an ACL name) beside it is passed over.
#[test]
fn rates_from_a_configured_text_attribute_and_a_coa_changes_them() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    // user1: limited downstream by Filter-Id (up "0": no limit); user2: no
    // Filter-Id, not limited.
    let users = format!(
        "user1\tCleartext-Password := \"rad1\"\n\tFilter-Id = \"acl-basic\",\n\tFilter-Id += \"{}k/0\"\n\n\
         user2\tCleartext-Password := \"rad2\"\n\n",
        LIMIT / 1000
    );
    let _fr = freeradius(&lab, users, 1812, 0, SECRET);
    let toml = format!(
        "[radius]\nnas_identifier = \"lns-test\"\ntimeout = \"300ms\"\nretries = 1\nrate_attribute = \"Filter-Id\"\n\
         [[radius.auth_server]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{SECRET}\"\n\
         [radius.dynauth]\nlisten = \"127.0.0.1:3799\"\n\
         [[radius.dynauth.client]]\naddress = \"127.0.0.1\"\nsecret = \"{COA_SECRET}\"\n"
    );
    let cp = lab.start_controlplane_with(pins.path(), 2, &toml, &[]).unwrap();
    resolve_neighbours(&lab);
    let _echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    // 8 Mbit/s each way per session: four times the limit.
    let _sim = flood(&lab, &cp, 2);
    let (_, _, show) = counters(&cp, "user1");
    assert_eq!((show["rate_down"].as_u64(), show["rate_up"].as_u64()), (Some(LIMIT), Some(0)), "{show}");
    let (_, _, show) = counters(&cp, "user2");
    assert_eq!((show["rate_down"].as_u64(), show["rate_up"].as_u64()), (Some(0), Some(0)), "{show}");
    std::thread::sleep(Duration::from_secs(1));
    let got = measure(&cp, &["user1", "user2"], Duration::from_secs(5));
    eprintln!("bit/s (down, up): user1 {:?} user2 {:?}", got[0], got[1]);
    assert!(within(got[0][0], LIMIT, 0.10), "user1 downstream at its limit: {:?}", got[0]);
    assert!(got[0][1] > 3.0 * LIMIT as f64, "user1 upstream is not limited: {:?}", got[0]);
    assert!(got[1][0] > 3.0 * LIMIT as f64, "user2 unlimited: {:?}", got[1]);

    // A CoA-Request with an ACL name and a rate pair in Filter-Id: half
    // the downstream limit, and an upstream one of twice the old (half
    // what the subscriber sends; the echo returns what it gets, still
    // four times the new downstream limit).
    let (half, up) = (LIMIT / 2, 2 * LIMIT);
    let attrs = format!(
        "User-Name = \"user1\"\nFilter-Id = \"acl-basic\"\nFilter-Id += \"{}k/{}k\"\n",
        half / 1000,
        up / 1000
    );
    let out = radclient(&lab.lns, "127.0.0.1:3799", "coa", COA_SECRET, &attrs).unwrap();
    assert!(out.contains("CoA-ACK"), "{out}");
    let (_, _, show) = counters(&cp, "user1");
    assert_eq!((show["rate_down"].as_u64(), show["rate_up"].as_u64()), (Some(half), Some(up)), "{show}");
    let (_, _, show) = counters(&cp, "user2");
    assert_eq!(show["rate_down"].as_u64(), Some(0), "the CoA named user1 only: {show}");
    std::thread::sleep(Duration::from_secs(1));
    let got = measure(&cp, &["user1", "user2"], Duration::from_secs(5));
    eprintln!("after the CoA: user1 {:?} user2 {:?}", got[0], got[1]);
    assert!(within(got[0][0], half, 0.10), "user1 downstream at its new limit: {:?}", got[0]);
    assert!(within(got[0][1], up, 0.10), "user1 upstream at its new limit: {:?}", got[0]);
    assert!(got[1][0] > 3.0 * LIMIT as f64, "user2 still unlimited: {:?}", got[1]);
}
