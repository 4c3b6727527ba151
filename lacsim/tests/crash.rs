//! A control plane killed with SIGKILL (issue 19): with `--keep-sessions`
//! it writes its sessions to its store as they change and commits before
//! anything it decided leaves, so the next start takes every established
//! session back from the store and the data plane's pinned maps, whatever
//! the moment of the kill. The LAC and the subscribers notice nothing: no
//! CDN, no StopCCN, no LCP Terminate, echoes answered, traffic carried by
//! the data plane throughout; RADIUS sees no second Start, the interims go
//! on, and the Stops carry the whole sessions' counters.

mod common;
use common::{
    forwarding, freeradius, resolve_neighbours, session_rows, start_dp, stats, summary, wait_for, Subscribers,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use lns_controlplane::daemon::store::{Store, FILE};
use lns_controlplane::subscriber::SessionKey;
use lns_testlab::freeradius::DetailRecord;
use lns_testlab::{workspace_bin, ControlPlane, Lab, PinDir, UdpEcho};

fn resolve_neighbours_v6(lab: &Lab) {
    lab.lns.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::7"]).unwrap();
    lab.lns.exec("ping", &["-6", "-c1", "-W2", "2001:db8:ffff::2"]).ok();
}

/// The last lines of a control plane's log, for a failure's message.
fn tail(cp: &ControlPlane) -> String {
    let log = cp.proc.output().1;
    let lines: Vec<&str> = log.lines().rev().take(40).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The sessions each side holds: the data plane's entries, the control
/// plane's list, the store's records.
fn three_views(maps: &lns_bpf::Maps, socket: &Path, store: &Path) -> [BTreeSet<SessionKey>; 3] {
    use lns_controlplane::l2tp::{SessionId, TunnelId};
    let in_maps = maps
        .sessions()
        .unwrap()
        .into_iter()
        .map(|(_, s)| SessionKey::new(TunnelId(s.local_tunnel_id), SessionId(s.local_session_id)))
        .collect();
    let listed = session_rows(socket)
        .iter()
        .map(|r| {
            SessionKey::new(
                TunnelId(r["tunnel_id"].as_u64().unwrap() as u16),
                SessionId(r["session_id"].as_u64().unwrap() as u16),
            )
        })
        .collect();
    let stored = Store::session_keys(store).unwrap_or_default().into_iter().collect();
    [in_maps, listed, stored]
}

/// (a) 1,000 subscribers with traffic and local users; `kill -9` of the
/// control plane under them, and a restart.
#[test]
fn a_thousand_sessions_outlive_a_kill_9_of_the_control_plane() {
    let _alone = common::alone();
    let lab = Lab::new(2).unwrap();
    let pins = PinDir::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_string();
    let _dp = start_dp(&lab, &pins, "2", "native");
    let keep = ["--keep-sessions", "--state-dir", state_dir.as_str()];
    let mut cp = lab.start_controlplane(pins.path(), 1000, &keep).unwrap();
    resolve_neighbours(&lab);
    resolve_neighbours_v6(&lab);
    let echo = UdpEcho::start(&lab.core, "[2001:db8:c0::7]:7").unwrap();
    let echo4 = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let mut resident = Subscribers::new(10, 100)
        .arg("--auth", "chap")
        .arg("--ncp", "ipv6")
        .traffic("4,100")
        .arg("--rate", "1000")
        .arg("--timeout", "60")
        .hold("30")
        .spawn(&lab);
    assert!(wait_for(90, || forwarding(&cp.socket) == 1000), "1000 sessions up: {}", stats(&cp.socket));
    std::thread::sleep(Duration::from_secs(3));

    cp.proc.kill();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    assert_eq!(maps.sessions().unwrap().len(), 1000, "the entries stay");
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let cp = lab.start_controlplane(pins.path(), 1000, &keep).unwrap();
    let s = stats(&cp.socket);
    eprintln!("restarted and answering after {:?}", t0.elapsed());
    assert_eq!(s["sessions_restored"].as_u64(), Some(1000), "{s}\n{}", tail(&cp));
    assert_eq!(s["tunnels_restored"].as_u64(), Some(10), "{s}");
    assert_eq!(s["sessions_reconciled"].as_u64(), Some(0), "{s}");
    assert_eq!(forwarding(&cp.socket), 1000);
    // A new subscriber right after.
    let mut fresh = Subscribers::new(1, 1).spawn(&lab);
    let f = summary(&mut fresh, 20);
    assert_eq!(f["sessions_up"].as_u64(), Some(1), "a new session after the restart: {f}\n{}", tail(&cp));

    let r = summary(&mut resident, 90);
    eprintln!("resident: {r}");
    assert_eq!(r["sessions_up"].as_u64(), Some(1000), "{r}");
    assert_eq!(r["sessions_failed"].as_u64(), Some(0), "{r}");
    assert_eq!(r["sessions_ended_by_lns"].as_u64(), Some(0), "no CDN, StopCCN or Terminate-Request: {r}");
    assert_eq!(r["calls_ended_by_lns"].as_u64(), Some(0), "{r}");
    assert_eq!(r["ppp_restarts"].as_u64(), Some(0), "lacsim's echoes were answered: {r}");
    let (sent, received) = (r["data_sent_v6"].as_u64().unwrap(), r["data_received_v6"].as_u64().unwrap());
    let lost = sent.saturating_sub(received);
    eprintln!(
        "traffic: {sent} sent, {received} received, {lost} lost ({:.4} %)",
        100.0 * lost as f64 / sent as f64
    );
    assert!(sent >= 1000 * 4 * 25, "{r}");
    assert!(lost * 1000 <= sent, "at most 0.1 % lost: {r}");
    assert!(echo.stop() > 0);
    let _ = echo4.stop();
    // They hung up: the restarted control plane saw every StopCCN.
    assert!(wait_for(20, || maps.sessions().unwrap().is_empty()), "entries left: {}", stats(&cp.socket));
    let s = stats(&cp.socket);
    assert_eq!((s["sessions"].as_u64(), s["ipv6_prefixes_in_use"].as_u64()), (Some(0), Some(0)), "{s}");
    assert!(wait_for(10, || Store::session_keys(&state.path().join(FILE)).unwrap().is_empty()));
}

/// (c) `kill -9` at random moments while subscribers come and go, under
/// subscribers that stay: each time, once things settle, the data plane's
/// entries, the control plane's sessions and the store's records are the
/// same sessions, no address is held twice, and the residents never
/// noticed.
#[test]
fn kill_9_at_random_moments_of_a_churn_leaves_maps_store_and_sessions_agreeing() {
    let _alone = common::alone();
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_string();
    let store = state.path().join(FILE);
    let _dp = start_dp(&lab, &pins, "1", "skb");
    // A LAC gone for good is noticed within seconds.
    let args = [
        "--keep-sessions",
        "--state-dir",
        state_dir.as_str(),
        "--hello-interval",
        "3s",
        "--max-retransmissions",
        "3",
    ];
    let mut cp = lab.start_controlplane(pins.path(), 250, &args).unwrap();
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let mut resident = Subscribers::new(1, 20).traffic("5,100").hold("600").spawn(&lab);
    assert!(wait_for(30, || forwarding(&cp.socket) == 20), "residents up: {}", stats(&cp.socket));
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill moments from seed {seed}");
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift64: moments that differ from run to run, said above.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..4 {
        // 100 subscribers come, and leave as soon as all are up.
        let mut churn = Subscribers::new(2, 50)
            .arg("--rate", "300")
            .arg("--timeout", "20")
            .arg("--redial-holdoff", "0.5")
            .spawn(&lab);
        let at = Duration::from_millis(100 + next() % 1500);
        std::thread::sleep(at);
        cp.proc.kill();
        cp = lab.start_controlplane(pins.path(), 250, &args).unwrap();
        let s = stats(&cp.socket);
        eprintln!(
            "round {round}: killed {at:?} into the churn; taken back {} sessions, {} tunnels; reconciled {}",
            s["sessions_restored"], s["tunnels_restored"], s["sessions_reconciled_by"]
        );
        let c = summary(&mut churn, 60);
        eprintln!("round {round}: churn {c}");
        let mut last = Default::default();
        let agreed = wait_for(60, || {
            last = three_views(&maps, &cp.socket, &store);
            last[0] == last[1] && last[1] == last[2] && last[0].len() == 20
        });
        assert!(
            agreed,
            "round {round}: maps {:?}\nlist {:?}\nstore {:?}\n{}",
            last[0],
            last[1],
            last[2],
            tail(&cp)
        );
        let s = stats(&cp.socket);
        assert_eq!(s["addresses_in_use"].as_u64(), Some(20), "{s}");
        let mut holders: BTreeMap<[u8; 4], u32> = BTreeMap::new();
        for (_, e) in maps.sessions().unwrap() {
            *holders.entry(e.ipv4).or_default() += 1;
        }
        assert!(holders.values().all(|n| *n == 1), "an address held twice: {holders:?}");
    }
    assert!(resident.alive(), "the residents are still up");
    std::thread::sleep(Duration::from_secs(1));
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args(["--control-socket", cp.socket.to_str().unwrap(), "shutdown"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(wait_for(20, || !cp.proc.alive()), "the control plane stops");
    // lacsim holds on (--hold) with nothing left: it is told to finish.
    std::thread::sleep(Duration::from_secs(1));
    resident.stop(10);
    let r = summary(&mut resident, 1);
    assert_eq!(r["sessions_up"].as_u64(), Some(20), "{r}");
    // Ended by the shutdown, and by nothing before it.
    assert_eq!(r["sessions_ended_by_lns"].as_u64(), Some(20), "{r}");
    assert_eq!(r["ppp_restarts"].as_u64(), Some(0), "{r}");
    assert!(echo.stop() > 0);
    assert!(maps.sessions().unwrap().is_empty(), "a stop leaves nothing");
}

const SECRET: &str = "lns-test-secret";

/// (b) and (d) with FreeRADIUS: the sessions a `kill -9` left are taken
/// back with their accounting (no second Start, interims go on), and a
/// stop (`lnsctl shutdown`) ends each with a CDN and a Stop that carries
/// the whole session's counters.
#[test]
fn radius_accounting_goes_on_across_a_kill_9_and_the_stops_carry_the_whole_sessions() {
    let _alone = common::alone();
    const N: usize = 200;
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_string();
    let _dp = start_dp(&lab, &pins, "1", "native");
    resolve_neighbours(&lab);
    let echo = UdpEcho::start(&lab.core, "203.0.113.7:7").unwrap();
    let users: String = (1..=N).map(|i| format!("user{i}\tCleartext-Password := \"rad{i}\"\n\n")).collect();
    let fr = freeradius(&lab, users, 1812, 1813, SECRET);
    let toml = format!(
        "[radius]\nnas_identifier = \"lns-test\"\ninterim_interval = \"2s\"\nstate_dir = \"{state_dir}\"\n\
         [[radius.auth_server]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{SECRET}\"\n\
         [[radius.acct_server]]\naddress = \"127.0.0.1:1813\"\nsecret = \"{SECRET}\"\n"
    );
    let keep = ["--keep-sessions", "--state-dir", state_dir.as_str()];
    let mut cp = lab.start_controlplane_with(pins.path(), 0, &toml, &keep).unwrap();
    let n = N.to_string();
    let mut sim = Subscribers::new(4, (N / 4) as u32)
        .arg("--auth", "chap")
        .password("rad%d")
        .traffic("5,200")
        .arg("--rate", "500")
        .hold("600")
        .spawn(&lab);
    assert!(wait_for(60, || forwarding(&cp.socket) == N), "{n} up: {}", stats(&cp.socket));
    std::thread::sleep(Duration::from_secs(5));
    let killed_at = Instant::now();
    cp.proc.kill();
    std::thread::sleep(Duration::from_secs(1));
    let mut cp = lab.start_controlplane_with(pins.path(), 0, &toml, &keep).unwrap();
    let s = stats(&cp.socket);
    assert_eq!(s["sessions_restored"].as_u64(), Some(N as u64), "{s}\n{}", tail(&cp));
    assert_eq!(s["sessions_reconciled"].as_u64(), Some(0), "{s}");
    std::thread::sleep(Duration::from_secs(8));
    // The stop: CDN/StopCCN to the LAC, a Stop per session.
    let kill_to_stop = killed_at.elapsed().as_secs_f64();
    let out = std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .args(["--control-socket", cp.socket.to_str().unwrap(), "shutdown"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(wait_for(20, || !cp.proc.alive()), "the control plane stops");
    std::thread::sleep(Duration::from_secs(1));
    sim.stop(10);
    let r = summary(&mut sim, 1);
    assert_eq!(r["sessions_up"].as_u64(), Some(N as u64), "{r}");
    assert_eq!(r["sessions_ended_by_lns"].as_u64(), Some(N as u64), "every session ended by the stop: {r}");
    assert_eq!(r["ppp_restarts"].as_u64(), Some(0), "{r}");
    let sent = r["data_sent"].as_u64().unwrap();
    let stops_in = || -> Vec<DetailRecord> {
        fr.detail().into_iter().filter(|r| r.get("Acct-Status-Type") == Some("Stop")).collect()
    };
    assert!(wait_for(30, || stops_in().len() >= N), "{} Stops", stops_in().len());
    let all: Vec<DetailRecord> = fr.detail().into_iter().filter(|r| r.get("User-Name").is_some()).collect();
    let mut by_id: BTreeMap<String, Vec<DetailRecord>> = BTreeMap::new();
    for rec in all {
        by_id.entry(rec.get("Acct-Session-Id").unwrap_or_default().to_string()).or_default().push(rec);
    }
    assert_eq!(by_id.len(), N, "one accounting session each");
    let mut input = 0;
    for (id, recs) in &by_id {
        let kinds: Vec<&str> = recs.iter().filter_map(|r| r.get("Acct-Status-Type")).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "Start").count(), 1, "{id}: one Start: {kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == "Stop").count(), 1, "{id}: one Stop: {kinds:?}");
        let stop = recs.iter().find(|r| r.get("Acct-Status-Type") == Some("Stop")).unwrap();
        let time = stop.int("Acct-Session-Time").unwrap();
        // Interims on either side of the kill (its session time give or
        // take a second): one every 2 s of session time.
        let interims: Vec<u64> = recs
            .iter()
            .filter(|r| r.get("Acct-Status-Type") == Some("Interim-Update"))
            .filter_map(|r| r.int("Acct-Session-Time"))
            .collect();
        let kill = time as f64 - kill_to_stop;
        assert!(
            interims.iter().any(|t| (*t as f64) < kill - 1.0),
            "{id}: interims before the kill at {kill}: {interims:?}"
        );
        assert!(
            interims.iter().any(|t| (*t as f64) > kill + 2.0),
            "{id}: interims after the kill at {kill}: {interims:?}"
        );
        let packets = stop.int("Acct-Input-Packets").unwrap();
        assert_eq!(stop.octets("Input"), packets * 200, "{stop:?}");
        assert!(interims.len() as u64 + 2 >= time / 2, "{id}: {interims:?} over {time} s");
        input += packets;
    }
    // The Stops carry what the subscribers sent over the whole sessions
    // (a session's first packet may overtake its switch to forwarding).
    eprintln!("Stops count {input} packets in of {sent} sent");
    assert!(input <= sent && input + N as u64 >= sent, "{input} of {sent}");
    assert!(echo.stop() > 0);
    assert!(wait_for(10, || !state.path().join(FILE).exists()
        || Store::session_keys(&state.path().join(FILE)).is_ok_and(|k| k.is_empty())));
}
