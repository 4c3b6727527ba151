//! The store's side of issue 19 on virtual time: what a session costs the
//! store while it negotiates, and what a restart does with the sessions
//! that were negotiating when the process was killed.

use crate::daemon::store::{Store, FILE};

use super::snapshot::{SessionStage, NEGOTIATING_AT_RESTART};
use super::*;

/// The driver's pass: run, then commit what changed; counts each
/// session's records by the stage it was written in.
struct Passes {
    store: Store,
    dir: tempfile::TempDir,
    written: BTreeMap<(SessionKey, bool), u32>,
}

impl Passes {
    fn new() -> Passes {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join(FILE)).expect("store");
        Passes { store, dir, written: BTreeMap::new() }
    }

    fn wall(lab: &Lab) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + (lab.now - lab.t0)
    }

    fn pass(&mut self, lab: &mut Lab, d: Duration) {
        lab.run_for(d);
        let changes = lab.core.take_changes(lab.now).expect("records");
        for (key, data) in &changes.0 {
            if let (RecordKey::Session(k), Some(_)) = (key, data) {
                let established = lab.core.session_stage(*k) == Some(SessionStage::Established);
                *self.written.entry((*k, established)).or_default() += 1;
            }
        }
        self.store.commit(&changes, Passes::wall(lab)).expect("commit");
    }

    fn written(&self, key: SessionKey, established: bool) -> u32 {
        self.written.get(&(key, established)).copied().unwrap_or(0)
    }

    /// `kill -9`: the store as the last commit left it, copied as the
    /// kernel has it (this process still holds the dead store's locks).
    fn kill(self) -> tempfile::TempDir {
        let before = self.dir.path().to_path_buf();
        std::mem::forget(self.store);
        let next = tempfile::tempdir().expect("tempdir");
        for name in [FILE.to_string(), format!("{FILE}-wal")] {
            std::fs::copy(before.join(&name), next.path().join(&name)).expect("copy");
        }
        next
    }
}

/// A session is written once, small, while LCP, authentication and IPCP
/// negotiate, and whole from when it is established; a core killed while
/// one session negotiates (its address already given) and another is
/// established comes back with the established one forwarding, and ends
/// the other cleanly: a CDN to the LAC, its entry removed, no address
/// held for it, counted as negotiating at the restart. Its subscriber
/// dials again and comes up.
#[test]
fn a_core_killed_while_a_session_negotiates_ends_it_and_keeps_the_established_one() {
    let cfg = base_config();
    let mut lab = Lab::new(cfg.clone());
    let mut passes = Passes::new();
    lab.dial(&["alice"]);
    for _ in 0..50 {
        passes.pass(&mut lab, Duration::from_millis(100));
    }
    let a = lab.key("alice");
    assert!(lab.forwarding(a), "{:#?}", lab.notices);
    assert_eq!(passes.written(a, false), 1, "one small record while negotiating");
    assert!(passes.written(a, true) >= 1, "written whole once established");
    let whole = passes.written(a, true);
    // Bob, stopped half way through IPCP: his address given, not yet
    // forwarded.
    lab.dial(&["bob"]);
    let mut steps = 0;
    let bob_row = |lab: &Lab| {
        let b = lab.keys.get("bob").copied()?;
        lab.core
            .session_rows(lab.now)
            .into_iter()
            .find(|r| r.tunnel_id == b.tunnel.0 && r.session_id == b.session.0)
    };
    while bob_row(&lab).is_none_or(|r| r.ipv4.is_none()) {
        passes.pass(&mut lab, Duration::from_millis(1));
        steps += 1;
        assert!(steps < 5000, "bob never got an address");
    }
    let b = lab.key("bob");
    assert!(!lab.forwarding(b), "IPCP not yet open");
    assert!(lab.entries.contains_key(&b), "his call has its entry");
    assert_eq!(lab.core.addresses_in_use(), 2);
    assert_eq!(passes.written(b, false), 1, "one record for LCP, CHAP and IPCP so far");
    assert_eq!(passes.written(a, true), whole, "alice's record was not written again");

    let next = passes.kill();
    lab.now += Duration::from_secs(2);
    lab.pipe.retain(|p| !p.1);
    let path = next.path().join(FILE);
    let mut store = Store::open(&path).expect("reopen");
    let records = store.read(Passes::wall(&lab)).expect("read");
    assert_eq!(records.0.iter().filter(|r| matches!(r.key, RecordKey::Session(_))).count(), 2);
    lab.core = Core::restore(cfg, &records, lab.now).expect("restore");
    assert_eq!(lab.core.counters().sessions_restored, 1, "alice only");
    assert_eq!(lab.core.addresses_in_use(), 1, "nothing held for bob");
    // The driver matches the data plane's entries, then reconciles.
    let present: BTreeSet<SessionKey> = lab.entries.keys().copied().collect();
    assert!(lab.core.knows(b), "bob's entry is his call's, not a stranger's");
    assert_eq!(lab.core.reconcile(lab.now, &present), 0, "none lost its entry");
    assert_eq!(lab.core.counters().reconciled.get(NEGOTIATING_AT_RESTART), Some(&1));
    lab.carry_out();
    let changes = lab.core.take_changes(lab.now).expect("records");
    store.commit(&changes, Passes::wall(&lab)).expect("commit");
    assert_eq!(Store::session_keys(&path).expect("keys"), vec![a], "bob's record went");
    assert!(!lab.entries.contains_key(&b), "bob's entry was removed");
    lab.run_for(Duration::from_secs(3));
    let (t, s) = lab.lac_call("bob");
    assert!(lab.lac.tunnel(t).is_some_and(|t| t.session(s).is_none()), "the LAC had the CDN");
    assert!(lab.forwarding(a) && lab.ended(a).is_none(), "alice never noticed");
    assert!(lab.lac.tunnel(lab.lac_call("alice").0).is_some_and(|t| t.session_count() == 1));
    // Bob dials again and gets an address nobody holds.
    lab.dial(&["bob"]);
    lab.run_for(Duration::from_secs(3));
    let b2 = lab.key("bob");
    assert!(lab.forwarding(b2));
    assert_ne!(lab.entries[&a].subscriber_ipv4(), lab.entries[&b2].subscriber_ipv4());
    assert_eq!(lab.core.addresses_in_use(), 2);
}

/// Many set-ups through a core that commits after every pass: each
/// session's negotiation costs one record, whatever its steps, and the
/// hang-ups that follow remove them all.
#[test]
fn set_ups_cost_one_negotiating_record_each() {
    let mut lab = Lab::new(base_config());
    let mut passes = Passes::new();
    lab.dial_numbered(60, 20);
    for _ in 0..50 {
        passes.pass(&mut lab, Duration::from_millis(100));
    }
    let keys: Vec<SessionKey> = lab.keys.values().copied().collect();
    assert_eq!(keys.len(), 60);
    assert!(keys.iter().all(|k| lab.forwarding(*k)));
    for k in &keys {
        assert_eq!(passes.written(*k, false), 1, "{k:?}");
        assert!(passes.written(*k, true) >= 1, "{k:?}");
    }
    assert_eq!(passes.store.counts().expect("counts"), (3, 60));
    let calls: Vec<(TunnelId, SessionId)> = lab.call_users.keys().copied().collect();
    for (t, s) in calls {
        lab.lac.close_session(lab.now, t, s, crate::l2tp::ResultCode::new(cdn::ADMINISTRATIVE)).expect("CDN");
    }
    for _ in 0..20 {
        passes.pass(&mut lab, Duration::from_millis(100));
    }
    assert_eq!(passes.store.counts().expect("counts"), (3, 0), "every session's record removed");
}

/// `lnsctl tunnel kill`: the tunnel's sessions are not written again on
/// their way out, only removed.
#[test]
fn a_killed_tunnel_removes_its_sessions_records_without_writing_them() {
    let mut lab = Lab::new(base_config());
    let mut passes = Passes::new();
    let t = lab.dial(&["alice", "bob"]);
    for _ in 0..30 {
        passes.pass(&mut lab, Duration::from_millis(100));
    }
    let (a, b) = (lab.key("alice"), lab.key("bob"));
    assert!(lab.forwarding(a) && lab.forwarding(b));
    let now = lab.now;
    let ours = lab.lac.tunnel(t).expect("tunnel").peer_id();
    let r = lab.core.handle_request(now, crate::ctl::Request::TunnelKill { tunnel_id: ours.0 });
    assert!(matches!(r, crate::ctl::Response::Killed { .. }), "{r:?}");
    let before = (passes.written(a, true), passes.written(b, true));
    for _ in 0..30 {
        passes.pass(&mut lab, Duration::from_millis(100));
    }
    assert!(lab.ended(a).is_some() && lab.ended(b).is_some());
    assert_eq!((passes.written(a, true), passes.written(b, true)), before, "removed, not rewritten");
    assert_eq!(passes.store.counts().expect("counts"), (0, 0));
}

/// An established session's LCP echoes (every 10 s here) write nothing;
/// a change that matters does (a dead subscriber's echoes failing ends
/// it: its record goes).
#[test]
fn echoes_of_an_established_session_write_nothing() {
    let mut lab = Lab::new(base_config());
    let mut passes = Passes::new();
    lab.dial(&["alice", "bob"]);
    for _ in 0..50 {
        passes.pass(&mut lab, Duration::from_millis(100));
    }
    let (a, b) = (lab.key("alice"), lab.key("bob"));
    assert!(lab.forwarding(a) && lab.forwarding(b));
    let frames = |lab: &Lab, k: SessionKey| {
        let rows = lab.core.session_rows(lab.now);
        rows.iter()
            .find(|r| r.tunnel_id == k.tunnel.0 && r.session_id == k.session.0)
            .map(|r| r.ppp_frames_rx)
    };
    let (before, written) = (frames(&lab, a), passes.written(a, true));
    for _ in 0..60 {
        passes.pass(&mut lab, Duration::from_secs(1));
    }
    assert!(
        frames(&lab, a) >= before.map(|n| n + 5),
        "alice answered her echoes: {before:?} {:?}",
        frames(&lab, a)
    );
    assert_eq!(passes.written(a, true), written, "and none was written");
    // Bob's CPE dies: his echoes fail, and he goes from the store.
    let call = lab.lac_call("bob");
    lab.subs.get_mut(&call).expect("bob").mute = true;
    for _ in 0..60 {
        passes.pass(&mut lab, Duration::from_secs(1));
    }
    assert!(lab.ended(b).is_some(), "bob's echoes failed");
    assert_eq!(Store::session_keys(&passes.dir.path().join(FILE)).expect("keys"), vec![a]);
}

/// Without a store the daemon discards what changed each pass: nothing of
/// a session set up, nor of one gone, is left to grow the change sets.
#[test]
fn without_a_store_the_changes_are_discarded_not_kept() {
    let mut lab = Lab::new(base_config());
    lab.dial_numbered(20, 10);
    for _ in 0..50 {
        lab.run_for(Duration::from_millis(100));
        lab.core.discard_changes();
    }
    assert_eq!(lab.keys.len(), 20);
    let calls: Vec<(TunnelId, SessionId)> = lab.call_users.keys().copied().collect();
    for (t, s) in calls {
        lab.lac.close_session(lab.now, t, s, crate::l2tp::ResultCode::new(cdn::ADMINISTRATIVE)).expect("CDN");
    }
    lab.run_for(Duration::from_secs(2));
    lab.core.discard_changes();
    let changes = lab.core.take_changes(lab.now).expect("records");
    assert!(changes.0.is_empty(), "nothing kept: {} records", changes.0.len());
}
