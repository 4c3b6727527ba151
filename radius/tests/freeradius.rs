//! The client against Debian's FreeRADIUS (installed by scripts/setup.sh),
//! started per test on loopback ports of its own with a configuration
//! written into a temporary directory: PAP, CHAP-MD5 and MS-CHAPv2
//! accepted and rejected, Framed-IP-Address and Framed-Pool returned,
//! accounting Start / Interim-Update / Stop recorded in the detail file,
//! failover from a dead first server. The server (the shared harness of
//! `lns_testlab::freeradius`, here on the host's loopback) is killed and
//! its directory removed when the test ends, passing or not.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use lns_radius::access::{AccessRequest, Credentials, FramedIpAddress, NasIdentity, TunnelInfo};
use lns_radius::accounting::{acct_session_id, AccountingRequest, AcctStatusType, Counters};
use lns_radius::attribute::acct_terminate_cause;
use lns_radius::client::{
    Client, ClientConfig, NoAnswerPolicy, Outcome, RequireMessageAuthenticator, RetransmitConfig,
    ServerConfig, ServerState, Service,
};
use lns_radius::dictionary::Dictionary;
use lns_radius::driver::{RadiusClient, ServerEvent};
use lns_radius::microsoft::MsChap2Response;
use lns_radius::{crypto, Code};
// The PPP peer's side of MS-CHAPv2 comes from the control plane, whose
// RFC 2759 code is what the LNS itself runs (a dev-dependency: the control
// plane depends on this crate, and cargo accepts the cycle for tests).
use lns_controlplane::ppp::mschapv2;
use lns_testlab::freeradius::{free_udp_port, FreeRadiusConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

const SECRET: &str = "lns-test-secret";

/// Users with the replies the tests expect.
const USERS: &str = r#"
pap-user	Cleartext-Password := "pap-pass"
	Framed-IP-Address = 198.51.100.10,
	Session-Timeout = 3600,
	Idle-Timeout = 600,
	Acct-Interim-Interval = 300,
	Class = "pap-class"

chap-user	Cleartext-Password := "chap-pass"
	Framed-IP-Address = 255.255.255.254,
	Framed-Pool = "gold"

mschap-user	Cleartext-Password := "mschap-pass"
	Framed-IP-Address = 198.51.100.11,
	MS-Primary-DNS-Server = 192.0.2.53,
	MS-Secondary-DNS-Server = 192.0.2.54
"#;

/// A free UDP port on loopback (bound and released; FreeRADIUS binds it
/// right after).
fn free_port() -> u16 {
    free_udp_port().expect("free port")
}

/// FreeRADIUS with [`USERS`] on free loopback ports, from the shared
/// harness (`lns_testlab::freeradius`, the one the LNS's end-to-end tests
/// run in their lab namespaces); killed and its directory removed on drop.
struct FreeRadius(lns_testlab::freeradius::FreeRadius);

impl FreeRadius {
    fn start() -> FreeRadius {
        let mut last = None;
        // A port taken between free_port and FreeRADIUS's bind: try again.
        for _ in 0..3 {
            let config = FreeRadiusConfig {
                secret: SECRET.into(),
                auth_port: free_port(),
                acct_port: free_port(),
                users: USERS.into(),
                debug: true,
            };
            match lns_testlab::freeradius::FreeRadius::start_in(None, config) {
                Ok(fr) => return FreeRadius(fr),
                Err(e) => last = Some(e),
            }
        }
        panic!("FreeRADIUS did not start: {last:?}");
    }

    fn log(&self) -> String {
        self.0.log()
    }

    fn detail(&self) -> String {
        self.0.detail_text()
    }

    fn auth(&self) -> SocketAddr {
        self.0.auth()
    }

    fn acct(&self) -> SocketAddr {
        self.0.acct()
    }
}

fn fast_retransmit() -> RetransmitConfig {
    RetransmitConfig {
        irt: Duration::from_millis(300),
        mrc: 2,
        mrt: Duration::from_secs(2),
        mrd: Duration::from_secs(3),
    }
}

fn client_for(
    servers: Vec<ServerConfig>,
) -> (RadiusClient, tokio::sync::mpsc::UnboundedReceiver<ServerEvent>) {
    let mut cfg = ClientConfig::new(servers);
    cfg.retransmit = fast_retransmit();
    cfg.authentication_policy = NoAnswerPolicy::FallbackLocal;
    RadiusClient::spawn_with(Client::with_rng(cfg, StdRng::from_entropy()), None)
}

fn auth_server(addr: SocketAddr) -> ServerConfig {
    ServerConfig::new(addr, SECRET, Service::Authentication)
}

fn acct_server(addr: SocketAddr) -> ServerConfig {
    ServerConfig {
        // FreeRADIUS signs Accounting-Response as configured above.
        require_message_authenticator: RequireMessageAuthenticator::Always,
        ..ServerConfig::new(addr, SECRET, Service::Accounting)
    }
}

fn nas() -> NasIdentity {
    NasIdentity { ip: Some(Ipv4Addr::new(192, 0, 2, 1)), ipv6: None, identifier: Some("lns-test".into()) }
}

fn request(user: &str, credentials: Credentials) -> AccessRequest {
    let mut r = AccessRequest::new(user, credentials, nas());
    r.nas_port = Some(7);
    r.nas_port_id = Some("tunnel 3 session 7".into());
    r.calling_station_id = Some("lac-0001".into());
    r.tunnel = Some(TunnelInfo {
        client_endpoint: "192.0.2.2".into(),
        server_endpoint: "192.0.2.1".into(),
        ipv6: false,
        assignment_id: Some("3".into()),
        client_auth_id: Some("lac".into()),
        server_auth_id: Some("lns".into()),
    });
    r
}

fn pap(user: &str, password: &str) -> AccessRequest {
    request(user, Credentials::Pap { password: password.into() })
}

fn chap(user: &str, password: &str) -> AccessRequest {
    let challenge: Vec<u8> = (0..16).map(|i| i * 7 + 1).collect();
    let response = crypto::chap_md5_response(42, password.as_bytes(), &challenge);
    request(user, Credentials::ChapMd5 { ident: 42, challenge, response })
}

fn mschapv2(user: &str, password: &str) -> (AccessRequest, String) {
    let auth: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(13).wrapping_add(5));
    let peer: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(29).wrapping_add(3));
    let nt = mschapv2::generate_nt_response(&auth, &peer, user.as_bytes(), password);
    let hash = mschapv2::nt_password_hash(password);
    let expected = mschapv2::generate_authenticator_response(&hash, &nt, &peer, &auth, user.as_bytes());
    let response = MsChap2Response { ident: 9, flags: 0, peer_challenge: peer, nt_response: nt };
    (request(user, Credentials::MsChapV2 { authenticator_challenge: auth, response }), expected)
}

fn answered(o: Outcome) -> lns_radius::client::Reply {
    match o {
        Outcome::Answered(r) => r,
        o => panic!("no answer: {o:?}"),
    }
}

#[tokio::test]
async fn pap_chap_and_mschapv2_accept_and_reject() {
    let fr = FreeRadius::start();
    let (client, _) = client_for(vec![auth_server(fr.auth())]);

    let r = answered(client.access(&pap("pap-user", "pap-pass")).await.expect("request"));
    assert_eq!(r.code(), Code::AccessAccept, "{r:?}");
    let a = r.authorization().expect("authorization");
    assert_eq!(a.framed_ip_address, Some(FramedIpAddress::Address(Ipv4Addr::new(198, 51, 100, 10))));
    assert_eq!(
        (a.session_timeout, a.idle_timeout, a.acct_interim_interval),
        (Some(3600), Some(600), Some(300))
    );
    assert_eq!(a.class, vec![b"pap-class".to_vec()]);
    let r = answered(client.access(&pap("pap-user", "wrong")).await.expect("request"));
    assert_eq!(r.code(), Code::AccessReject);
    let r = answered(client.access(&pap("nobody", "pap-pass")).await.expect("request"));
    assert_eq!(r.code(), Code::AccessReject);

    let r = answered(client.access(&chap("chap-user", "chap-pass")).await.expect("request"));
    assert_eq!(r.code(), Code::AccessAccept, "{r:?}");
    let a = r.authorization().expect("authorization");
    assert_eq!(a.framed_ip_address, Some(FramedIpAddress::NasSelects));
    assert_eq!(a.framed_pool.as_deref(), Some("gold"));
    let r = answered(client.access(&chap("chap-user", "chap-wrong")).await.expect("request"));
    assert_eq!(r.code(), Code::AccessReject);

    let (req, expected) = mschapv2("mschap-user", "mschap-pass");
    let r = answered(client.access(&req).await.expect("request"));
    assert_eq!(r.code(), Code::AccessAccept, "{r:?}");
    let a = r.authorization().expect("authorization");
    // The server's MS-CHAP2-Success is what the peer will verify: the
    // RFC 2759 authenticator response over the same inputs.
    let success = a.ms_chap2_success.expect("MS-CHAP2-Success");
    assert_eq!(success.ident, 9);
    assert_eq!(success.authenticator_response(), expected);
    assert_eq!(a.framed_ip_address, Some(FramedIpAddress::Address(Ipv4Addr::new(198, 51, 100, 11))));
    assert_eq!(a.dns_servers, [Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)]);
    // MPPE keys (RFC 3079 via RFC 2548 salt encryption): present, 16
    // octets each, decrypted with our secret and request authenticator.
    let (send, recv) = r.mppe_keys().expect("decrypt").expect("MPPE keys");
    assert_eq!((send.len(), recv.len()), (16, 16));
    assert_ne!(send, recv);
    let (req, _) = mschapv2("mschap-user", "mschap-wrong");
    let r = answered(client.access(&req).await.expect("request"));
    assert_eq!(r.code(), Code::AccessReject);
    let err = r.authorization().expect("authorization").ms_chap_error.expect("MS-CHAP-Error");
    assert_eq!(err.error_code(), Some(691));

    let servers = client.servers().await.expect("status");
    assert_eq!(servers[0].stats.replies, 7);
    assert_eq!(servers[0].stats.bad_authenticator + servers[0].stats.missing_message_authenticator, 0);
}

#[tokio::test]
async fn accounting_start_interim_stop_reach_the_detail_file() {
    let fr = FreeRadius::start();
    let (client, _) = client_for(vec![acct_server(fr.acct())]);
    let id = acct_session_id(0x6500_0000, 1);
    let mut record = AccountingRequest::new(AcctStatusType::Start, &id, nas());
    record.user_name = Some(b"pap-user".to_vec());
    record.nas_port = Some(7);
    record.framed_ip_address = Some(Ipv4Addr::new(198, 51, 100, 10));
    record.class = vec![b"pap-class".to_vec()];
    record.event_timestamp = Some(1_700_000_000);
    for (status, counters, time) in [
        (AcctStatusType::Start, None, None),
        (
            AcctStatusType::InterimUpdate,
            Some(Counters { input_octets: 1000, output_octets: 2000, input_packets: 10, output_packets: 20 }),
            Some(300),
        ),
        (
            AcctStatusType::Stop,
            Some(Counters {
                input_octets: (3u64 << 32) + 5,
                output_octets: 7,
                input_packets: 12345,
                output_packets: 54321,
            }),
            Some(601),
        ),
    ] {
        record.status = status;
        record.counters = counters;
        record.session_time = time;
        record.terminate_cause =
            (status == AcctStatusType::Stop).then_some(acct_terminate_cause::USER_REQUEST);
        let r = answered(client.accounting(&record).await.expect("request"));
        assert_eq!(r.code(), Code::AccountingResponse);
    }
    let detail = fr.detail();
    let records: Vec<&str> = detail.split("\n\n").filter(|r| r.contains("Acct-Status-Type")).collect();
    assert_eq!(records.len(), 3, "{detail}");
    for (r, status) in records.iter().zip(["Start", "Interim-Update", "Stop"]) {
        assert!(r.contains(&format!("Acct-Status-Type = {status}")), "{r}");
        assert!(r.contains(&format!("Acct-Session-Id = \"{id}\"")), "{r}");
        assert!(r.contains("User-Name = \"pap-user\""), "{r}");
        assert!(r.contains("Framed-IP-Address = 198.51.100.10"), "{r}");
        assert!(r.contains("Class = 0x7061702d636c617373"), "{r}");
        assert!(r.contains("NAS-Port-Type = Virtual"), "{r}");
    }
    assert!(
        records[1].contains("Acct-Input-Octets = 1000") && records[1].contains("Acct-Output-Octets = 2000")
    );
    assert!(records[1].contains("Acct-Session-Time = 300"));
    // Gigawords: 3 × 2^32 + 5 input octets.
    assert!(records[2].contains("Acct-Input-Gigawords = 3"), "{}", records[2]);
    assert!(records[2].contains("Acct-Input-Octets = 5"));
    assert!(records[2].contains("Acct-Output-Packets = 54321"));
    assert!(records[2].contains("Acct-Terminate-Cause = User-Request"));
}

#[tokio::test]
async fn first_server_down_the_second_serves() {
    let fr = FreeRadius::start();
    // Nothing listens on the first server's port.
    let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let (client, mut events) = client_for(vec![auth_server(dead), auth_server(fr.auth())]);
    let t0 = Instant::now();
    let r = answered(client.access(&pap("pap-user", "pap-pass")).await.expect("request"));
    assert_eq!(r.code(), Code::AccessAccept);
    assert_eq!(r.server.0, 1);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(events.recv().await, Some(ServerEvent::Down(lns_radius::client::ServerId(0))));
    let s = client.servers().await.expect("status");
    assert_eq!(s[0].state, ServerState::Dead);
    assert_eq!(s[0].stats.requests, 1);
    assert_eq!(s[0].stats.retransmissions, 2);
    // The dead server is skipped at once for the next request.
    let t1 = Instant::now();
    let r = answered(client.access(&chap("chap-user", "chap-pass")).await.expect("request"));
    assert_eq!(r.code(), Code::AccessAccept);
    assert!(t1.elapsed() < Duration::from_millis(250), "{:?}", t1.elapsed());
    // Both down: the caller gets the configured policy.
    drop(fr);
    let r = client.access(&pap("pap-user", "pap-pass")).await.expect("request");
    assert!(matches!(r, Outcome::NoAnswer { policy: NoAnswerPolicy::FallbackLocal, .. }), "{r:?}");
}

#[tokio::test]
async fn status_server_is_answered_and_revives() {
    // A server marked dead because its answers were lost, then reached
    // again: Status-Server brings it back (RFC 5997), and FreeRADIUS's
    // answers verify.
    let fr = FreeRadius::start();
    let mut cfg = ClientConfig::new(vec![auth_server(fr.auth())]);
    cfg.retransmit = fast_retransmit();
    cfg.status_server_interval = Duration::from_millis(200);
    cfg.revive_after = 2;
    let mut engine = Client::with_rng(cfg, StdRng::seed_from_u64(1));
    // Drive the engine by hand over a real socket: first mark the server
    // dead by never delivering anything to it.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let start = Instant::now();
    let h =
        engine.send(start, lns_radius::client::Request::access(&pap("pap-user", "pap-pass")).expect("req"));
    let _ = h.expect("send");
    while engine.poll_transmit().is_some() {}
    let mut now = start;
    while engine.servers()[0].state != ServerState::Dead {
        now = engine.poll_timeout().expect("timer");
        engine.handle_timeout(now);
        while engine.poll_transmit().is_some() {}
    }
    // Now deliver for real, in real time.
    let deadline = Instant::now() + Duration::from_secs(5);
    let base = now;
    let wall = Instant::now();
    let mut buf = [0u8; 4096];
    while engine.servers()[0].state == ServerState::Dead {
        assert!(Instant::now() < deadline, "not revived:\n{}", fr.log());
        let now = base + wall.elapsed();
        engine.handle_timeout(now);
        while let Some(t) = engine.poll_transmit() {
            assert_eq!(t.payload[0], 12, "only Status-Server goes to a dead server");
            sock.send_to(&t.payload, t.destination).expect("send");
        }
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            engine.handle_datagram(base + wall.elapsed(), lns_radius::client::SocketId(0), from, &buf[..n]);
        }
    }
    let st = engine.servers()[0].stats;
    assert!(st.status_server_sent >= 2 && st.replies >= 2, "{st:?}");
}

#[test]
fn stock_freeradius_dictionary_loads() {
    let mut d = Dictionary::new();
    d.load(Path::new("/usr/share/freeradius/dictionary")).expect("FreeRADIUS dictionary");
    assert!(d.attributes().count() > 5000, "{}", d.attributes().count());
    let cisco = d.attribute("Cisco-AVPair").expect("Cisco-AVPair");
    assert_eq!((cisco.vendor, cisco.code), (9, 1));
    let a = d.encode("Cisco-AVPair", "ip:addr-pool=gold", None).expect("encode");
    assert_eq!(d.decode(&a).expect("decode")[0].name, "Cisco-AVPair");
    assert_eq!(
        d.attribute("MS-MPPE-Send-Key").map(|a| a.encrypt),
        Some(lns_radius::dictionary::Encryption::Salted)
    );
    assert_eq!(d.value("Service-Type", "Framed-User"), Some(2));
    assert_eq!(d.attribute("Tunnel-Password").map(|a| a.has_tag), Some(true));
    // Our shipped dictionary agrees with FreeRADIUS's on every number.
    let ours = Dictionary::builtin();
    for def in ours.attributes() {
        let theirs = d.attribute_by_code(def.vendor, def.code).expect("known to FreeRADIUS");
        assert_eq!(theirs.has_tag, def.has_tag, "{}", def.name);
    }
}
