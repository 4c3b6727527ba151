//! PPP at the LNS, end to end over real processes and UDP: subscribers
//! (the project's PPP client in the LAC role) authenticate against the
//! local users file, get an address from a pool or their fixed one, and
//! their session switches to forwarding in the data plane's maps with that
//! address; a failed login and a PPP Terminate end in a CDN, the entry
//! removed and the address released.

mod common;

use common::{wait_for, Lac, Lns};
use lns_bpf::abi::{SessionKey, SessionState};
use lns_bpf::{LoadOptions, Maps, Steering};
use lns_controlplane::l2tp::{Event, SessionId, SessionInfo, TunnelId};
use lns_controlplane::ppp::{NetworkConfig, SessionEvent};
use lns_testlab::{Lab, PinDir};
use std::net::Ipv4Addr;
use std::time::Instant;

fn entry(maps: &Maps, t: TunnelId, s: SessionId) -> Option<lns_bpf::abi::Session> {
    let i = maps.find_session(SessionKey { tunnel_id: t.0, session_id: s.0 }).expect("lookup")?;
    maps.read_session(i).ok()
}

/// Pumps until the subscriber's IPCP is up; returns its address and DNS.
fn ipcp_up(lac: &mut Lac, key: (TunnelId, SessionId)) -> (Ipv4Addr, Option<Ipv4Addr>) {
    let mut got = None;
    let up = lac.pump_until(15, |l| {
        got = l.ppp_find(key, |e| match e {
            SessionEvent::NetworkUp(NetworkConfig::Ipv4 { local, primary_dns, .. }) => {
                Some((*local, *primary_dns))
            }
            _ => None,
        });
        got.is_some()
    });
    assert!(up, "IPCP not up; PPP events {:?}", lac.ppp_events);
    got.expect("up")
}

/// lns-controlplane on the lab's LNS with a users file and `ppp` as its
/// [ppp] settings (the users file line is added); the temp dir lives as long
/// as the returned guard.
fn start_lns(lab: &Lab, pins: &PinDir, users_toml: &str, ppp: &str, pool: &str) -> (Lns, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let users = dir.path().join("users.toml");
    std::fs::write(&users, users_toml).expect("users");
    let conf = dir.path().join("lns.toml");
    std::fs::write(
        &conf,
        format!(
            "[ppp]\n{ppp}users_file = \"{}\"\nlocal_ipv4 = \"203.0.113.1\"\n[[pool]]\nname = \"default\"\nranges = [\"{pool}\"]\n",
            users.display()
        ),
    )
    .expect("config");
    let lns = Lns::start(
        &lab.lns,
        &[
            "--config",
            conf.to_str().expect("utf-8"),
            "--bpf-pin-dir",
            pins.path().to_str().expect("utf-8"),
            "--peer",
            "192.0.2.2",
        ],
    );
    (lns, dir)
}

#[test]
fn subscribers_get_addresses_and_the_fast_path() {
    let lab = Lab::new(1).expect("lab");
    let pins = PinDir::new().expect("pin dir");
    let steering = Steering::load(&LoadOptions {
        pin_dir: Some(pins.path().into()),
        max_sessions: 64,
        ..Default::default()
    })
    .expect("load the steering program");
    let maps = steering.maps();
    let (lns, _dir) = start_lns(
        &lab,
        &pins,
        "[[user]]\nname = \"alice\"\npassword = \"wonderland\"\n\
         [[user]]\nname = \"bob\"\npassword = \"builder\"\nipv4 = \"198.51.100.200\"\n",
        "restart_interval = \"300ms\"\ndns = [\"192.0.2.53\"]\n",
        "198.51.100.8/30",
    );
    let mut lac = Lac::new(&lab.lac, "192.0.2.2:0", None, "lac1");
    let (t, lns_t) = lac.connect();

    // alice: an address from the pool (the /30's first host), DNS, and the
    // session forwarding in the data plane with that address.
    let (a, lns_a) = lac.call(t, SessionInfo::default());
    lac.start_ppp(t, a, "alice", "wonderland");
    let (addr, dns) = ipcp_up(&mut lac, (t, a));
    assert_eq!((addr, dns), (Ipv4Addr::new(198, 51, 100, 9), Some(Ipv4Addr::new(192, 0, 2, 53))));
    assert!(lac.pump_until(5, |_| entry(maps, lns_t, lns_a)
        .is_some_and(|e| e.session_state() == Some(SessionState::Forwarding))));
    let e = entry(maps, lns_t, lns_a).expect("entry");
    assert_eq!(e.subscriber_ipv4(), Some(addr));
    assert!(e.mtu >= 1000, "the subscriber's MRU: {}", e.mtu);
    assert_eq!(maps.address_entries(), 1, "the /32 is routed to the session");
    let row = lns.sessions().into_iter().find(|r| r.session_id == lns_a.0).expect("listed");
    assert_eq!(row.username.as_deref(), Some("alice"));
    assert_eq!(row.ipv4.as_deref(), Some("198.51.100.9"));
    assert_eq!(row.dataplane_state.as_deref(), Some("forwarding"));

    // bob: his fixed address.
    let (b, lns_b) = lac.call(t, SessionInfo::default());
    lac.start_ppp(t, b, "bob", "builder");
    assert_eq!(ipcp_up(&mut lac, (t, b)).0, Ipv4Addr::new(198, 51, 100, 200));
    assert!(lac.pump_until(5, |_| entry(maps, lns_t, lns_b).and_then(|e| e.subscriber_ipv4())
        == Some(Ipv4Addr::new(198, 51, 100, 200))));

    // A wrong password: authentication fails, the LNS hangs up with CDN.
    let mark = lac.events.len();
    let (c, lns_c) = lac.call(t, SessionInfo::default());
    lac.start_ppp(t, c, "alice", "guess");
    assert!(
        lac.pump_until(15, |l| l.saw(mark, t, |e| matches!(e,
        Event::SessionDown { session_id, cause } if *session_id == c && cause.by_peer))),
        "no CDN after a failed login; PPP events {:?}",
        lac.ppp_events
    );
    // The CDN says why PPP ended (RFC 3145): code 16, authentication failed.
    let cause = lac.events[mark..].iter().find_map(|(_, e)| match e {
        Event::SessionDown { session_id, cause } if *session_id == c => cause.ppp_cause.clone(),
        _ => None,
    });
    let cause = cause.expect("PPP Disconnect Cause Code AVP in the CDN");
    assert_eq!(u16::from_be_bytes([cause[0], cause[1]]), 16, "{cause:?}");
    assert!(entry(maps, lns_t, lns_c).is_none());

    // alice hangs up (LCP Terminate): CDN, entry and route gone, and her
    // address goes back to the pool.
    let mark = lac.events.len();
    lac.ppp.get_mut(&(t, a)).expect("client").close(Instant::now(), None);
    assert!(lac.pump_until(10, |l| l.saw(mark, t, |e| matches!(e,
        Event::SessionDown { session_id, .. } if *session_id == a))));
    assert!(lac.pump_until(5, |_| entry(maps, lns_t, lns_a).is_none()));
    assert!(wait_for(5, || lns.stats().addresses_in_use == 1), "{:?}", lns.stats());
    assert_eq!(maps.address_entries(), 1, "only bob's /32 is left");

    // The pool's next address, the released one after it (the pool does
    // not hand back a just-released address first), then exhaustion: no
    // address, no login.
    let login = |lac: &mut Lac| {
        let (s, _) = lac.call(t, SessionInfo::default());
        lac.start_ppp(t, s, "alice", "wonderland");
        s
    };
    let d = login(&mut lac);
    assert_eq!(ipcp_up(&mut lac, (t, d)).0, Ipv4Addr::new(198, 51, 100, 10));
    let e = login(&mut lac);
    assert_eq!(ipcp_up(&mut lac, (t, e)).0, Ipv4Addr::new(198, 51, 100, 9));
    let mark = lac.events.len();
    let f = login(&mut lac);
    assert!(lac.pump_until(15, |l| l.saw(mark, t, |ev| matches!(ev,
        Event::SessionDown { session_id, cause } if *session_id == f && cause.by_peer))));
    assert!(lns.log().contains("no IPv4 address for the user"));
    assert_eq!(maps.address_entries(), 3);
    let log = lns.log();
    assert!(log.contains("IPCP opened: forwarding") && log.contains("user=\"alice\""), "{log}");
}

#[test]
fn ppp_frames_of_a_sequencing_session_carry_ns() {
    let lab = Lab::new(1).expect("lab");
    let pins = PinDir::new().expect("pin dir");
    let _steering = Steering::load(&LoadOptions {
        pin_dir: Some(pins.path().into()),
        max_sessions: 64,
        ..Default::default()
    })
    .expect("load the steering program");
    let (_lns, _dir) = start_lns(
        &lab,
        &pins,
        "[[user]]\nname = \"alice\"\npassword = \"wonderland\"\n",
        "",
        "198.51.100.8/30",
    );
    let mut lac = Lac::new(&lab.lac, "192.0.2.2:0", None, "lac1");
    let (t, _) = lac.connect();
    let (a, _) = lac.call(t, SessionInfo { sequencing_required: true, ..Default::default() });
    lac.start_ppp(t, a, "alice", "wonderland");
    ipcp_up(&mut lac, (t, a));
    // LCP, CHAP and IPCP from the LNS, numbered 0, 1, 2... (§5.4).
    let ns: Vec<Option<u16>> = lac.data_ns.iter().filter(|(k, _)| *k == (t, a)).map(|(_, n)| *n).collect();
    assert!(ns.len() >= 4, "{ns:?}");
    let want: Vec<Option<u16>> = (0..ns.len() as u16).map(Some).collect();
    assert_eq!(ns, want);
}
