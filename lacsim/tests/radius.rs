//! The LNS with RADIUS, end to end: lns-dataplane, lns-controlplane and a
//! real FreeRADIUS in the lab's LNS namespace (each namespace has its own
//! loopback, so the standard ports are free), lns-lacsim in the LAC
//! namespace. FreeRADIUS decides who gets in and with which address, its
//! detail file shows the accounting records with the fast path's counters,
//! and radclient sends Disconnect and CoA requests.

mod common;
use common::{freeradius, lacsim, resolve_neighbours, spawn_lacsim, start_dp, wait_until, Subscribers};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use lns_testlab::freeradius::{radclient, DetailRecord, FreeRadius};
use lns_testlab::{workspace_bin, ControlPlane, Lab, PinDir, UdpEcho};

const SECRET: &str = "lns-test-secret";
const COA_SECRET: &str = "coa-secret";

/// lacsim arguments for `n` subscribers in one tunnel, authenticating with
/// `auth` and FreeRADIUS's passwords (rad1, rad2, ...), then `extra`.
fn one_tunnel<'a>(n: &'a str, auth: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--tunnels", "1", "--sessions-per-tunnel", n, "--auth", auth, "--password", "rad%d"];
    a.extend_from_slice(extra);
    a
}

fn lnsctl(cp: &ControlPlane, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--control-socket", cp.socket.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap()).args(&a).output().unwrap();
    assert!(out.status.success(), "lnsctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sessions(cp: &ControlPlane) -> Vec<serde_json::Value> {
    lnsctl(cp, &["session", "list"]).as_array().cloned().unwrap_or_default()
}

fn wait_forwarding(cp: &ControlPlane, n: usize) -> Vec<serde_json::Value> {
    wait_until("sessions forwarding", Duration::from_secs(20), || {
        let rows = sessions(cp);
        (rows.iter().filter(|r| r["dataplane_state"] == "forwarding").count() == n).then_some(rows)
    })
}

/// The `[radius]` section (and a second pool) for the LNS's file; the
/// lines go under `[ppp]` first, hence `default_pool`.
fn radius_toml(auth: &[u16], acct: &[u16], radius_extra: &str, tables: &str) -> String {
    let mut t = String::from(
        "default_pool = \"default\"\n\
         [[pool]]\nname = \"gold\"\nranges = [\"198.51.100.240-198.51.100.250\"]\n\
         [radius]\nnas_identifier = \"lns-test\"\ntimeout = \"300ms\"\nretries = 1\ndead_time = \"1s\"\n",
    );
    t.push_str(radius_extra);
    t.push('\n');
    for p in auth {
        t.push_str(&format!("[[radius.auth_server]]\naddress = \"127.0.0.1:{p}\"\nsecret = \"{SECRET}\"\n"));
    }
    for p in acct {
        t.push_str(&format!("[[radius.acct_server]]\naddress = \"127.0.0.1:{p}\"\nsecret = \"{SECRET}\"\n"));
    }
    t.push_str(tables);
    t
}

/// Detail records grouped by Acct-Session-Id, in arrival order.
fn by_session(records: &[DetailRecord]) -> BTreeMap<String, Vec<DetailRecord>> {
    let mut m: BTreeMap<String, Vec<DetailRecord>> = BTreeMap::new();
    for r in records {
        m.entry(r.get("Acct-Session-Id").unwrap_or_default().to_string()).or_default().push(r.clone());
    }
    m
}

fn stops(fr: &FreeRadius) -> Vec<DetailRecord> {
    fr.detail().into_iter().filter(|r| r.get("Acct-Status-Type") == Some("Stop")).collect()
}

/// Waits until FreeRADIUS holds `n` Stop records, and returns them.
fn wait_stops(fr: &FreeRadius, n: usize, within: Duration) -> Vec<DetailRecord> {
    wait_until(&format!("{n} Stop records"), within, || {
        let s = stops(fr);
        (s.len() == n).then_some(s)
    })
}

/// The Acct-Terminate-Cause of `user`'s Stop.
fn terminate_cause<'a>(stops: &'a [DetailRecord], user: &str) -> &'a str {
    stops
        .iter()
        .find(|r| r.get("User-Name") == Some(user))
        .and_then(|r| r.get("Acct-Terminate-Cause"))
        .unwrap()
}

/// A temporary state directory for the accounting spool.
struct StateDir(std::path::PathBuf);

impl StateDir {
    fn new() -> StateDir {
        let p = std::env::temp_dir().join(lns_testlab::unique_name("lnsst"));
        std::fs::create_dir_all(&p).unwrap();
        StateDir(p)
    }

    fn spooled_files(&self) -> usize {
        std::fs::read_dir(self.0.join("acct-spool"))
            .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "acct")).count())
            .unwrap_or(0)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn freeradius_decides_pap_chap_and_mschapv2_and_their_addresses_after_failover() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    // RADIUS passwords differ from the local users file's (pw<N>): a
    // session that comes up was accepted by FreeRADIUS.
    let mut users = String::from(
        "user1\tCleartext-Password := \"rad1\"\n\tFramed-IP-Address = 198.51.100.77\n\n\
         user2\tCleartext-Password := \"rad2\"\n\tFramed-IP-Address = 255.255.255.254,\n\tFramed-Pool = \"gold\"\n\n",
    );
    users.push_str(
        &(3..=6).map(|i| format!("user{i}\tCleartext-Password := \"rad{i}\"\n\n")).collect::<String>(),
    );
    let fr = freeradius(&lab, users, 1812, 0, SECRET);
    // The first server never answers: requests fail over to FreeRADIUS.
    let cp =
        lab.start_controlplane_with(pins.path(), 6, &radius_toml(&[1645, 1812], &[], "", ""), &[]).unwrap();

    let mut sim = spawn_lacsim(&lab, &one_tunnel("3", "pap", &["--hold", "2"]));
    let rows = wait_forwarding(&cp, 3);
    let ip = |user: &str| {
        rows.iter().find(|r| r["username"] == user).and_then(|r| r["ipv4"].as_str()).unwrap_or("").to_string()
    };
    assert_eq!(ip("user1"), "198.51.100.77", "Framed-IP-Address honoured: {rows:?}");
    let gold: std::net::Ipv4Addr = ip("user2").parse().unwrap();
    assert!((240..=250).contains(&gold.octets()[3]), "Framed-Pool honoured: {gold}");
    assert!(ip("user3").starts_with("198.51.100."), "default pool: {rows:?}");
    wait_until("lacsim to finish", Duration::from_secs(20), || (!sim.alive()).then_some(()));
    let out = sim.output().0;
    let s: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(s["sessions_up"].as_u64(), Some(3), "{out}");

    for auth in ["chap", "mschapv2"] {
        let s = lacsim(&lab, &one_tunnel("6", auth, &["--user", "user%d"]));
        assert_eq!(
            (s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()),
            (Some(6), Some(0)),
            "{auth}: {s}"
        );
    }
    // The local users file's passwords are refused: RADIUS decides.
    for auth in ["pap", "chap", "mschapv2"] {
        let s = lacsim(
            &lab,
            &[
                "--tunnels",
                "1",
                "--sessions-per-tunnel",
                "2",
                "--auth",
                auth,
                "--password",
                "pw%d",
                "--timeout",
                "15",
            ],
        );
        assert_eq!(
            (s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()),
            (Some(0), Some(2)),
            "{auth}: {s}"
        );
    }
    let text = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args(["--control-socket", cp.socket.to_str().unwrap(), "radius"])
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&text.stdout));
    let r = lnsctl(&cp, &["radius"]);
    let servers = r["servers"].as_array().unwrap();
    assert_eq!(servers[0]["state"], "dead", "{r}");
    assert_eq!(servers[1]["state"], "alive", "{r}");
    // 3 + 6 + 6 accepted, 6 refused.
    assert_eq!(servers[1]["replies"].as_u64(), Some(21), "{r}");
    assert!(servers[1]["last_rtt_ms"].as_f64().is_some(), "{r}");
    drop(fr);
}

#[test]
fn accounting_start_interim_stop_carry_the_fast_path_counters() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "native");
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    // user1's Access-Accept asks for an Interim-Update every second; the
    // others get the configured 2 s.
    let users: String = (1..=3)
        .map(|i| {
            let interim = if i == 1 { ",\n\tAcct-Interim-Interval = 1" } else { "" };
            format!("user{i}\tCleartext-Password := \"rad{i}\"\n\tClass = \"class-{i}\"{interim}\n\n")
        })
        .collect();
    let fr = freeradius(&lab, users, 1812, 1813, SECRET);
    let state = StateDir::new();
    let extra = format!("interim_interval = \"2s\"\nstate_dir = \"{}\"", state.0.display());
    let cp =
        lab.start_controlplane_with(pins.path(), 3, &radius_toml(&[1812], &[1813], &extra, ""), &[]).unwrap();
    let s =
        lacsim(&lab, &one_tunnel("3", "chap", &["--user", "user%d", "--traffic", "20,200", "--hold", "6"]));
    assert_eq!(s["sessions_up"].as_u64(), Some(3), "{s}");
    let (sent, received) = (s["data_sent"].as_u64().unwrap(), s["data_received"].as_u64().unwrap());
    assert!(sent >= 3 * 100, "{s}");
    wait_stops(&fr, 3, Duration::from_secs(15));
    let all: Vec<DetailRecord> = fr.detail();
    assert_eq!(all[0].get("Acct-Status-Type"), Some("Accounting-On"), "the LNS announced its start");
    let all: Vec<DetailRecord> = all.into_iter().filter(|r| r.get("User-Name").is_some()).collect();
    let sessions = by_session(&all);
    assert_eq!(sessions.len(), 3, "{all:?}");
    let (mut in_packets, mut out_packets) = (0, 0);
    for (id, recs) in &sessions {
        assert_eq!(id.len(), 16, "Acct-Session-Id: boot time and counter");
        let kinds: Vec<&str> = recs.iter().filter_map(|r| r.get("Acct-Status-Type")).collect();
        assert_eq!(kinds.first(), Some(&"Start"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"Stop"), "{kinds:?}");
        let user = recs[0].get("User-Name").unwrap().to_string();
        let interims = kinds.iter().filter(|k| **k == "Interim-Update").count();
        if user == "user1" {
            assert!(interims >= 4, "Acct-Interim-Interval 1 s: {kinds:?}");
        } else {
            assert!((1..=3).contains(&interims), "interim_interval 2 s: {kinds:?}");
        }
        let n = user.trim_start_matches("user");
        let class_hex: String = format!("class-{n}").bytes().map(|b| format!("{b:02x}")).collect();
        let stop = recs.last().unwrap();
        for r in recs {
            assert_eq!(r.get("User-Name"), Some(user.as_str()));
            assert_eq!(r.get("Class"), Some(format!("0x{class_hex}").as_str()), "Class echoed: {r:?}");
            assert_eq!(r.get("NAS-Port-Type"), Some("Virtual"));
            assert_eq!(r.get("NAS-Identifier"), Some("lns-test"));
            assert!(r.get("Framed-IP-Address").is_some_and(|a| a.starts_with("198.51.100.")), "{r:?}");
            assert!(r.get("Calling-Station-Id").is_some_and(|c| c.starts_with("lacsim-")), "{r:?}");
        }
        assert_eq!(stop.get("Acct-Terminate-Cause"), Some("User-Request"), "the LAC hung up: {stop:?}");
        assert!(stop.int("Acct-Session-Time").is_some_and(|t| (5..=10).contains(&t)), "{stop:?}");
        // Subscriber IP bytes: every packet lacsim sends is 200 octets.
        let packets = stop.int("Acct-Input-Packets").unwrap();
        assert_eq!(stop.octets("Input"), packets * 200, "{stop:?}");
        assert!(stop.octets("Output") >= stop.int("Acct-Output-Packets").unwrap() * 200, "{stop:?}");
        // Interim counters grow and never pass the Stop's.
        let mut last = 0;
        for r in recs.iter().filter(|r| r.get("Acct-Status-Type") == Some("Interim-Update")) {
            let p = r.int("Acct-Input-Packets").unwrap();
            assert!(p >= last && p <= packets, "{recs:?}");
            last = p;
        }
        in_packets += packets;
        out_packets += stop.int("Acct-Output-Packets").unwrap();
    }
    // What lacsim sent reached the fast path (but a session's first
    // packet may overtake the LNS's switch to forwarding), and every echo
    // lacsim received went through it (but a session's last echo may be
    // on its way while the LAC's StopCCN ends the session: the Stop is
    // taken then, and lacsim still reads the echo before it exits).
    eprintln!(
        "fast path: {in_packets} packets in of {sent} sent, {out_packets} out, {received} echoes received"
    );
    assert!(in_packets <= sent && in_packets + 3 >= sent, "input {in_packets} of {sent} sent");
    assert!(
        out_packets + 3 >= received && out_packets <= in_packets,
        "output {out_packets}, {received} received"
    );
    let r = lnsctl(&cp, &["radius"]);
    assert_eq!(r["accounting"]["spooled_records"].as_u64(), Some(0), "{r}");
    assert_eq!(state.spooled_files(), 0);
    assert!(echo.stop() > 0);
    drop(cp);
    let last = fr.detail().pop().unwrap();
    assert_eq!(last.get("Acct-Status-Type"), Some("Accounting-Off"), "the LNS announced its stop");
}

#[test]
fn stop_records_wait_on_disk_for_a_server_even_across_a_restart() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let state = StateDir::new();
    // Accounting only (the local users file authenticates); neither
    // accounting server runs yet.
    let toml = radius_toml(&[], &[1813, 1823], &format!("state_dir = \"{}\"", state.0.display()), "");
    let cp = lab.start_controlplane_with(pins.path(), 5, &toml, &[]).unwrap();
    let s =
        lacsim(&lab, &["--tunnels", "1", "--sessions-per-tunnel", "3", "--password", "pw%d", "--hold", "1"]);
    assert_eq!(s["sessions_up"].as_u64(), Some(3), "{s}");
    let r = wait_until("3 Stop records spooled", Duration::from_secs(20), || {
        let r = lnsctl(&cp, &["radius"]);
        (r["accounting"]["spooled_records"].as_u64() == Some(3)
            && r["servers"].as_array().unwrap().iter().all(|s| s["state"] == "dead"))
        .then_some(r)
    });
    assert_eq!(r["accounting"]["queued_memory"].as_u64(), Some(3), "the Starts wait in memory: {r}");
    assert!(state.spooled_files() >= 1);
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args(["--control-socket", cp.socket.to_str().unwrap(), "radius"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:1823") && text.contains("dead"), "{text}");
    assert!(text.contains("3 Stop records spooled"), "{text}");
    // The second server starts: Status-Server finds it, everything goes.
    let mut fr = freeradius(&lab, String::new(), 0, 1823, SECRET);
    wait_stops(&fr, 3, Duration::from_secs(20));
    wait_until("the spool emptied", Duration::from_secs(10), || {
        let r = lnsctl(&cp, &["radius"]);
        (r["accounting"]["spooled_records"].as_u64() == Some(0) && state.spooled_files() == 0).then_some(())
    });
    assert_eq!(fr.detail().iter().filter(|r| r.get("Acct-Status-Type") == Some("Start")).count(), 3);

    // Down again; sessions up when the LNS is stopped get their Stop
    // (NAS-Reboot) spooled, and a new LNS sends them.
    fr.stop();
    let mut sim = Subscribers::new(1, 2).hold("60").spawn(&lab);
    let rows = wait_forwarding(&cp, 2);
    assert_eq!(rows.len(), 2);
    drop(cp);
    sim.kill();
    assert!(state.spooled_files() >= 1, "Stops on disk after the LNS stopped");
    std::thread::sleep(Duration::from_millis(1500));
    fr.restart(&lab.lns).unwrap();
    let cp = lab.start_controlplane_with(pins.path(), 5, &toml, &[]).unwrap();
    let all = wait_stops(&fr, 5, Duration::from_secs(20));
    let reboot: Vec<&DetailRecord> =
        all.iter().filter(|r| r.get("Acct-Terminate-Cause") == Some("NAS-Reboot")).collect();
    assert_eq!(reboot.len(), 2, "{all:?}");
    for r in reboot {
        assert!(r.int("Acct-Delay-Time").is_some_and(|d| d >= 1), "the wait is counted: {r:?}");
    }
    wait_until("the spool emptied", Duration::from_secs(10), || (state.spooled_files() == 0).then_some(()));
    drop(cp);
}

#[test]
fn disconnect_and_coa_requests_act_on_the_named_session() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let users: String = (1..=3).map(|i| format!("user{i}\tCleartext-Password := \"rad{i}\"\n\n")).collect();
    let fr = freeradius(&lab, users, 1812, 1813, SECRET);
    let state = StateDir::new();
    let dynauth = format!(
        "[radius.dynauth]\nlisten = \"127.0.0.1:3799\"\n[[radius.dynauth.client]]\naddress = \"127.0.0.1\"\nsecret = \"{COA_SECRET}\"\n"
    );
    let toml = radius_toml(&[1812], &[1813], &format!("state_dir = \"{}\"", state.0.display()), &dynauth);
    let cp = lab.start_controlplane_with(pins.path(), 3, &toml, &[]).unwrap();
    let _sim = spawn_lacsim(&lab, &one_tunnel("3", "pap", &["--hold", "40"]));
    let rows = wait_forwarding(&cp, 3);
    let ip_of = |user: &str| {
        rows.iter().find(|r| r["username"] == user).and_then(|r| r["ipv4"].as_str()).unwrap().to_string()
    };
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let users_up = |cp: &ControlPlane| -> Vec<String> {
        let mut v: Vec<String> =
            sessions(cp).iter().filter_map(|r| r["username"].as_str().map(String::from)).collect();
        v.sort();
        v
    };
    let send =
        |kind: &str, secret: &str, attrs: String| radclient(&lab.lns, "127.0.0.1:3799", kind, secret, &attrs);

    // Disconnect by User-Name.
    let out = send("disconnect", COA_SECRET, format!("User-Name = \"user1\"\nEvent-Timestamp = {}\n", now()))
        .unwrap();
    assert!(out.contains("Disconnect-ACK"), "{out}");
    wait_until("user1 gone", Duration::from_secs(10), || (users_up(&cp) == ["user2", "user3"]).then_some(()));
    // A retransmission (same packet) is answered from the cache: not tested
    // through radclient, which changes the authenticator; see the unit tests.

    // Nobody by that name: NAK 503.
    let out =
        send("disconnect", COA_SECRET, format!("User-Name = \"nobody\"\nEvent-Timestamp = {}\n", now()))
            .unwrap();
    assert!(out.contains("Disconnect-NAK") && out.contains("Session-Context-Not-Found"), "{out}");
    // A forged request (wrong secret) and a replayed one (old timestamp)
    // get no answer at all, and change nothing.
    assert!(
        send("disconnect", "guess", format!("User-Name = \"user2\"\nEvent-Timestamp = {}\n", now())).is_err()
    );
    assert!(send(
        "disconnect",
        COA_SECRET,
        format!("User-Name = \"user2\"\nEvent-Timestamp = {}\n", now() - 1000)
    )
    .is_err());
    assert_eq!(users_up(&cp), ["user2", "user3"]);

    // CoA by Framed-IP-Address: a Session-Timeout the session has already
    // used up ends it; user3 is untouched.
    let out = send(
        "coa",
        COA_SECRET,
        format!("Framed-IP-Address = {}\nSession-Timeout = 3\nEvent-Timestamp = {}\n", ip_of("user2"), now()),
    )
    .unwrap();
    assert!(out.contains("CoA-ACK"), "{out}");
    wait_until("user2 timed out", Duration::from_secs(10), || (users_up(&cp) == ["user3"]).then_some(()));

    // Disconnect by Acct-Session-Id, as `lnsctl session list` shows it.
    let id = sessions(&cp)[0]["acct_session_id"].as_str().unwrap().to_string();
    let out =
        send("disconnect", COA_SECRET, format!("Acct-Session-Id = \"{id}\"\nEvent-Timestamp = {}\n", now()))
            .unwrap();
    assert!(out.contains("Disconnect-ACK"), "{out}");
    wait_until("user3 gone", Duration::from_secs(10), || users_up(&cp).is_empty().then_some(()));

    let r = lnsctl(&cp, &["radius"]);
    let d = &r["dynauth"];
    assert_eq!(
        (d["disconnect_ack"].as_u64(), d["disconnect_nak"].as_u64(), d["coa_ack"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{r}"
    );
    assert!(d["bad_authenticator"].as_u64() >= Some(1) && d["stale"].as_u64() >= Some(1), "{r}");
    let all = wait_stops(&fr, 3, Duration::from_secs(10));
    let cause = |user: &str| terminate_cause(&all, user);
    assert_eq!(cause("user1"), "Admin-Reset");
    assert_eq!(cause("user2"), "Session-Timeout");
    assert_eq!(cause("user3"), "Admin-Reset");
}

#[test]
fn without_an_answering_server_the_policy_decides() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let args = ["--tunnels", "1", "--sessions-per-tunnel", "2", "--password", "pw%d", "--timeout", "15"];
    // Nothing listens on 1645: "local" lets the users file decide...
    let cp = lab
        .start_controlplane_with(
            pins.path(),
            2,
            &radius_toml(&[1645], &[], "on_no_response = \"local\"", ""),
            &[],
        )
        .unwrap();
    let s = lacsim(&lab, &args);
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()), (Some(2), Some(0)), "{s}");
    drop(cp);
    // ... and "reject" (the default) refuses everyone.
    let cp = lab.start_controlplane_with(pins.path(), 2, &radius_toml(&[1645], &[], "", ""), &[]).unwrap();
    let s = lacsim(&lab, &args);
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()), (Some(0), Some(2)), "{s}");
    drop(cp);
}

#[test]
fn each_way_a_session_ends_has_its_terminate_cause() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    // user1's Access-Accept limits it to 2 s.
    let users = "user1\tCleartext-Password := \"rad1\"\n\tSession-Timeout = 2\n\n\
                 user2\tCleartext-Password := \"rad2\"\n\n\
                 user3\tCleartext-Password := \"rad3\"\n\n"
        .to_string();
    let fr = freeradius(&lab, users, 1812, 1813, SECRET);
    let state = StateDir::new();
    let toml = radius_toml(&[1812], &[1813], &format!("state_dir = \"{}\"", state.0.display()), "");
    let cp = lab
        .start_controlplane_with(
            pins.path(),
            3,
            &toml,
            &["--hello-interval", "1s", "--retransmit-timeout", "200ms", "--max-retransmissions", "2"],
        )
        .unwrap();
    let mut sim = spawn_lacsim(&lab, &one_tunnel("3", "pap", &["--hold", "60"]));
    wait_until("user2 and user3 up, user1 timed out", Duration::from_secs(20), || {
        let rows = sessions(&cp);
        let mut users: Vec<&str> = rows.iter().filter_map(|r| r["username"].as_str()).collect();
        users.sort();
        (stops(&fr).len() == 1 && users == ["user2", "user3"]).then_some(())
    });
    let victim = sessions(&cp).into_iter().find(|r| r["username"] == "user2").unwrap();
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args([
            "--control-socket",
            cp.socket.to_str().unwrap(),
            "session",
            "kill",
            &victim["session_id"].to_string(),
            "--tunnel",
            &victim["tunnel_id"].to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_stops(&fr, 2, Duration::from_secs(10));
    // The LAC dies without a word: the tunnel's silence is a lost carrier.
    sim.kill();
    let all = wait_stops(&fr, 3, Duration::from_secs(20));
    let cause = |user: &str| terminate_cause(&all, user);
    assert_eq!(cause("user1"), "Session-Timeout");
    assert_eq!(cause("user2"), "Admin-Reset");
    assert_eq!(cause("user3"), "Lost-Carrier");
    drop(cp);
}

/// An IPv6-only subscriber: the Access-Accept's Framed-IPv6-Prefix is the
/// prefix it is announced, the pool's otherwise, and accounting starts when
/// IPv6CP opens and names the prefix in every record, with the fast path's
/// counters of its IPv6 traffic.
#[test]
fn ipv6_subscribers_are_accounted_with_their_prefix() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "native");
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "[2001:db8:c0::7]:7").unwrap();
    let users =
        "user1\tCleartext-Password := \"rad1\"\n\tFramed-IPv6-Prefix = \"2001:db8:100:abcd::/64\"\n\n\
                 user2\tCleartext-Password := \"rad2\"\n\n"
            .to_string();
    let fr = freeradius(&lab, users, 1812, 1813, SECRET);
    let state = StateDir::new();
    let extra = format!("interim_interval = \"1s\"\nstate_dir = \"{}\"", state.0.display());
    let cp =
        lab.start_controlplane_with(pins.path(), 2, &radius_toml(&[1812], &[1813], &extra, ""), &[]).unwrap();
    let s = lacsim(
        &lab,
        &one_tunnel(
            "2",
            "chap",
            &["--user", "user%d", "--ncp", "ipv6", "--traffic", "20,200", "--hold", "3"],
        ),
    );
    assert_eq!(s["ipv6_sessions_up"].as_u64(), Some(2), "{s}");
    assert!(s["data_received_v6"].as_u64().unwrap() > 0, "{s}");
    wait_stops(&fr, 2, Duration::from_secs(15));
    let all: Vec<DetailRecord> = fr.detail().into_iter().filter(|r| r.get("User-Name").is_some()).collect();
    let sessions = by_session(&all);
    assert_eq!(sessions.len(), 2, "{all:?}");
    for recs in sessions.values() {
        let kinds: Vec<&str> = recs.iter().filter_map(|r| r.get("Acct-Status-Type")).collect();
        assert_eq!(kinds.first(), Some(&"Start"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"Stop"), "{kinds:?}");
        assert!(kinds.contains(&"Interim-Update"), "{kinds:?}");
        let user = recs[0].get("User-Name").unwrap();
        for r in recs {
            let prefix = r.get("Framed-IPv6-Prefix").unwrap_or_default();
            if user == "user1" {
                assert!(prefix.starts_with("2001:db8:100:abcd::"), "the Access-Accept's prefix: {r:?}");
            } else {
                assert!(prefix.starts_with("2001:db8:100:"), "a pool prefix: {r:?}");
                assert!(!prefix.starts_with("2001:db8:100:abcd::"), "{r:?}");
            }
        }
        let stop = recs.last().unwrap();
        let packets = stop.int("Acct-Input-Packets").unwrap();
        assert!(packets > 0, "IPv6 traffic counted by the fast path: {stop:?}");
        assert_eq!(stop.octets("Input"), packets * 200, "{stop:?}");
        assert_eq!(stop.get("Acct-Terminate-Cause"), Some("User-Request"), "{stop:?}");
    }
    assert!(echo.stop() > 0);
    drop(cp);
}

/// The Access-Accept's name servers go to the subscriber in IPCP, and its
/// Delegated-IPv6-Prefix is routed to the subscriber through the fast path
/// while IPv6CP is open and named in the accounting records.
#[test]
fn access_accept_dns_and_delegated_prefix_reach_the_subscriber() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "native");
    let users = "user1\tCleartext-Password := \"rad1\"\n\
                 \tMS-Primary-DNS-Server = 192.0.2.53,\n\
                 \tMS-Secondary-DNS-Server = 192.0.2.54,\n\
                 \tDelegated-IPv6-Prefix = \"2001:db8:200:100::/56\"\n\n"
        .to_string();
    let fr = freeradius(&lab, users, 1812, 1813, SECRET);
    let state = StateDir::new();
    let extra = format!("state_dir = \"{}\"", state.0.display());
    let cp =
        lab.start_controlplane_with(pins.path(), 1, &radius_toml(&[1812], &[1813], &extra, ""), &[]).unwrap();
    let mut sim = spawn_lacsim(&lab, &one_tunnel("1", "chap", &["--ncp", "dual", "--hold", "3"]));
    let row = wait_until("the session forwarding with its delegated prefix", Duration::from_secs(20), || {
        sessions(&cp).into_iter().find(|r| r["delegated_prefix"].is_string() && r["ipv4"].is_string())
    });
    assert_eq!(row["delegated_prefix"], "2001:db8:200:100::/56", "{row}");
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let counts = maps.entry_counts();
    assert_eq!(
        (counts["lns_sub_v6_64"], counts["lns_sub_v6_lpm"]),
        (1, 1),
        "the /64 and the delegated /56 are routed"
    );
    wait_until("lacsim done", Duration::from_secs(20), || (!sim.alive()).then_some(()));
    let s: serde_json::Value = serde_json::from_str(sim.output().0.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(s["dns_servers"], serde_json::json!(["192.0.2.53", "192.0.2.54"]), "{s}");
    let stop = wait_stops(&fr, 1, Duration::from_secs(10)).pop().unwrap();
    assert_eq!(stop.get("Delegated-IPv6-Prefix"), Some("2001:db8:200:100::/56"), "{stop:?}");
    assert!(stop.get("Framed-IPv6-Prefix").is_some_and(|p| p.starts_with("2001:db8:100:")), "{stop:?}");
    let counts = maps.entry_counts();
    assert_eq!(
        (counts["lns_sub_v6_64"], counts["lns_sub_v6_lpm"]),
        (0, 0),
        "nothing routed once the session is gone"
    );
    drop(cp);
}

/// Issue 20: Debian's FreeRADIUS as installed, with one client entry and
/// the users entries added and nothing else, answers without
/// Message-Authenticator. With `require_message_authenticator` left at
/// "auto" its CHAP and PAP subscribers get in and the LNS warns once, naming
/// Blast-RADIUS; with `true` they are refused, the drops are counted in
/// `lnsctl radius` and logged as what they are, and the server is not called
/// down.
#[test]
fn stock_freeradius_unsigned_replies_auto_accepts_them_true_refuses_them() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let users = lns_testlab::freeradius::users(20, "rad");
    // The LNS's own address: datagrams to it come from it, the client entry.
    let fr = FreeRadius::start_stock(&lab.lns, "192.0.2.1".parse().unwrap(), SECRET, &users).unwrap();
    let state = StateDir::new();
    let toml = |policy: &str| {
        let server = |kind: &str, a: SocketAddr| {
            format!("[[radius.{kind}_server]]\naddress = \"{a}\"\nsecret = \"{SECRET}\"\n{policy}\n")
        };
        format!(
            "[radius]\nnas_identifier = \"lns-test\"\ntimeout = \"300ms\"\nretries = 1\ndead_time = \"1s\"\nstate_dir = \"{}\"\n{}{}",
            state.0.display(),
            server("auth", fr.auth()),
            server("acct", fr.acct())
        )
    };
    let log = |cp: &ControlPlane| {
        let (out, err) = cp.proc.output();
        out + &err
    };

    let cp = lab.start_controlplane_with(pins.path(), 0, &toml(""), &[]).unwrap();
    let s = lacsim(&lab, &one_tunnel("20", "chap", &["--timeout", "20"]));
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()), (Some(20), Some(0)), "{s}");
    let s = lacsim(&lab, &one_tunnel("5", "pap", &["--timeout", "20"]));
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()), (Some(5), Some(0)), "{s}");
    let r = lnsctl(&cp, &["radius"]);
    let servers = r["servers"].as_array().unwrap();
    let auth = &servers[0];
    assert_eq!(auth["replies"].as_u64(), Some(25), "{r}");
    assert_eq!(auth["missing_message_authenticator"].as_u64(), Some(0), "{r}");
    assert_eq!(auth["message_authenticator"], "auto:unsigned", "{r}");
    let acct = &servers[1];
    assert!(acct["replies"].as_u64() >= Some(1), "Accounting-Responses taken too: {r}");
    assert_eq!(acct["message_authenticator"], "auto:unsigned", "{r}");
    let text = log(&cp);
    assert_eq!(text.matches("CVE-2024-3596").count(), 1, "warned once: {text}");
    assert!(text.contains("require_message_authenticator = true"), "{text}");
    drop(cp);

    let cp = lab
        .start_controlplane_with(pins.path(), 0, &toml("require_message_authenticator = true"), &[])
        .unwrap();
    let s = lacsim(&lab, &one_tunnel("2", "chap", &["--timeout", "15"]));
    assert_eq!((s["sessions_up"].as_u64(), s["sessions_failed"].as_u64()), (Some(0), Some(2)), "{s}");
    let r = lnsctl(&cp, &["radius"]);
    let auth = &r["servers"][0];
    // Each request sent once and retransmitted once, each answer dropped.
    assert_eq!(auth["missing_message_authenticator"].as_u64(), Some(4), "{r}");
    assert_eq!((auth["replies"].as_u64(), auth["state"].as_str()), (Some(0), Some("alive")), "{r}");
    assert_eq!(auth["message_authenticator"], "true", "{r}");
    assert!(r["servers"][1]["missing_message_authenticator"].as_u64() >= Some(1), "Accounting-On's: {r}");
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args(["--control-socket", cp.socket.to_str().unwrap(), "radius"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    eprintln!("{table}");
    assert!(table.contains("no m-a") && table.contains("replies without Message-Authenticator"), "{table}");
    let text = log(&cp);
    assert!(text.contains("dropped: no Message-Authenticator"), "{text}");
    assert!(text.contains("RADIUS replies dropped, none taken: refusing"), "{text}");
    assert!(!text.contains("RADIUS server down"), "{text}");
    assert!(!text.contains("no RADIUS server answered"), "{text}");
    drop(cp);
    drop(fr);
}

#[test]
fn a_reload_points_the_lns_at_another_radius_server_and_fixes_its_secret() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let users = (1..=3).map(|i| format!("user{i}\tCleartext-Password := \"rad{i}\"\n\n")).collect();
    let fr = freeradius(&lab, users, 1812, 0, SECRET);
    // Nothing answers on 1645.
    let cp = lab
        .start_controlplane_with(
            pins.path(),
            3,
            &radius_toml(&[1645], &[], "", ""),
            &["--metrics-listen", "192.0.2.1:9701"],
        )
        .unwrap();
    let conf = cp.dir.join("lns.toml");
    // user1, password rad1.
    let login = || {
        let s = lacsim(&lab, &one_tunnel("1", "pap", &["--user", "user%d", "--timeout", "10"]));
        s["sessions_up"].as_u64()
    };
    let reload = || {
        let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
            .args(["--control-socket", cp.socket.to_str().unwrap(), "reload"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
        said
    };
    assert_eq!(login(), Some(0), "no RADIUS server answers");

    // FreeRADIUS, but under the wrong secret: it drops what it cannot
    // verify, the LNS still gets no answer.
    let file = std::fs::read_to_string(&conf).unwrap();
    let wrong = file.replace("127.0.0.1:1645", "127.0.0.1:1812").replace(SECRET, "not-the-secret");
    std::fs::write(&conf, &wrong).unwrap();
    let said = reload();
    assert!(
        said.contains("RADIUS: 1 authentication and 0 accounting servers (1 added, 1 removed)"),
        "{said}"
    );
    assert!(!said.contains("next start"), "{said}");
    assert_eq!(login(), Some(0), "wrong secret");
    let r = lnsctl(&cp, &["radius"]);
    let servers = r["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{r}");
    assert_eq!(servers[0]["address"], "127.0.0.1:1812", "{r}");
    assert_eq!(servers[0]["state"], "dead", "{r}");
    assert_eq!(servers[0]["replies"].as_u64(), Some(0), "{r}");

    // The secret fixed: the server kept (its counters too) is used at
    // once, without waiting for Status-Server to find it alive.
    std::fs::write(&conf, file.replace("127.0.0.1:1645", "127.0.0.1:1812")).unwrap();
    let said = reload();
    assert!(said.contains("(0 added, 0 removed)"), "{said}");
    assert_eq!(login(), Some(1), "accepted by FreeRADIUS");
    let r = lnsctl(&cp, &["radius"]);
    let s = &r["servers"][0];
    assert_eq!((s["address"].as_str(), s["state"].as_str()), (Some("127.0.0.1:1812"), Some("alive")), "{r}");
    assert!(s["timeouts"].as_u64() >= Some(1), "the counters of the wrong-secret time kept: {r}");
    assert_eq!(s["replies"].as_u64(), Some(1), "{r}");
    let rtt: u64 = s["rtt"]["counts"].as_array().unwrap().iter().filter_map(|c| c.as_u64()).sum();
    assert_eq!(rtt, 1, "one round trip counted: {r}");
    // The histogram as Prometheus reads it, promtool finding nothing to say.
    let out = lab.lns.exec("curl", &["-sf", "http://192.0.2.1:9701/metrics"]).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let series = "lns_radius_rtt_seconds_count{server=\"127.0.0.1:1812\",service=\"authentication\"} 1";
    assert!(text.lines().any(|l| l == series), "{series} missing from\n{text}");
    assert!(!text.contains("127.0.0.1:1645"), "the removed server is gone: {text}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
    drop(fr);
}
