//! The sans-IO client on virtual time against RADIUS servers built from
//! this crate's codec (they verify what they receive exactly as a real
//! server must): loss and RFC 5080 retransmission, failover, dead-server
//! detection and revival by Status-Server, identifier exhaustion, the
//! validation of replies, and each server's Message-Authenticator policy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lns_radius::access::{AccessRequest, Credentials, FramedIpAddress, NasIdentity};
use lns_radius::accounting::{AccountingRequest, AcctStatusType};
use lns_radius::client::{
    Client, ClientConfig, DropReason, Event, MessageAuthenticatorPolicy, NoAnswerPolicy, Outcome, Request,
    RequestHandle, RequireMessageAuthenticator, RetransmitConfig, ServerConfig, ServerId, ServerState,
    Service, SocketId, Transmit,
};
use lns_radius::{crypto, AttributeRepr, AttributeType as T, Code, PacketRepr};
use rand::rngs::StdRng;
use rand::SeedableRng;

const A: &str = "192.0.2.10:1812";
const B: &str = "192.0.2.11:1812";
const ACCT: &str = "192.0.2.10:1813";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// A RADIUS server: verifies each request with its secret and answers
/// PAP users whose password is "pw" with an Access-Accept.
struct TestServer {
    address: SocketAddr,
    secret: &'static [u8],
    /// Drop this many requests first (loss).
    drop: usize,
    /// Answer nothing at all.
    down: bool,
    /// Requests whose answers carry no Message-Authenticator (as
    /// FreeRADIUS 3.2.1 as installed answers them all).
    unsigned: &'static [Code],
    /// Sign answers with the wrong key.
    bad_message_authenticator: bool,
    received: Vec<(Instant, Transmit)>,
}

impl TestServer {
    fn new(address: &str, secret: &'static [u8]) -> TestServer {
        TestServer {
            address: addr(address),
            secret,
            drop: 0,
            down: false,
            unsigned: &[],
            bad_message_authenticator: false,
            received: Vec::new(),
        }
    }

    fn answer(&mut self, now: Instant, t: &Transmit) -> Option<Vec<u8>> {
        self.received.push((now, t.clone()));
        if self.down {
            return None;
        }
        if self.drop > 0 {
            self.drop -= 1;
            return None;
        }
        // What a server checks: the Message-Authenticator is required on
        // Access-Request and Status-Server, the accounting authenticator.
        let require = t.payload[0] != 4;
        crypto::verify_request(&t.payload, self.secret, require).expect("request verifies");
        let req = PacketRepr::from_bytes(&t.payload).expect("parse");
        let code = match req.code {
            Code::AccessRequest => {
                let hidden = req.get(T::USER_PASSWORD).expect("password").value();
                let pw =
                    crypto::recover_user_password(hidden, self.secret, &req.authenticator).expect("recover");
                if pw == b"pw" {
                    Code::AccessAccept
                } else {
                    Code::AccessReject
                }
            }
            Code::StatusServer => Code::AccessAccept,
            Code::AccountingRequest => Code::AccountingResponse,
            c => panic!("unexpected {c}"),
        };
        let mut reply = PacketRepr::new(code, req.identifier);
        let signed = !self.unsigned.contains(&req.code);
        if signed {
            reply.ensure_message_authenticator();
        }
        if code == Code::AccessAccept && req.code == Code::AccessRequest {
            reply.push(AttributeRepr::ipv4(T::FRAMED_IP_ADDRESS, [198, 51, 100, 7].into()));
        }
        let mut bytes = reply.encode(self.secret, Some(&req.authenticator)).expect("encode");
        if signed && self.bad_message_authenticator {
            // The Message-Authenticator under another key, and the
            // Response Authenticator right over the result.
            let wrong = reply.encode(b"another key", Some(&req.authenticator)).expect("encode");
            bytes[22..38].copy_from_slice(&wrong[22..38]);
            use md5::Digest;
            bytes[4..20].copy_from_slice(&req.authenticator);
            let auth = md5::Md5::new().chain_update(&bytes).chain_update(self.secret).finalize();
            bytes[4..20].copy_from_slice(&auth);
        }
        Some(bytes)
    }
}

struct Lab {
    client: Client,
    servers: Vec<TestServer>,
    now: Instant,
    events: Vec<Event>,
}

fn config(servers: &[&TestServer], service: Service) -> ClientConfig {
    let mut c =
        ClientConfig::new(servers.iter().map(|s| ServerConfig::new(s.address, s.secret, service)).collect());
    c.retransmit = RetransmitConfig {
        irt: Duration::from_secs(2),
        mrc: 2,
        mrt: Duration::from_secs(16),
        mrd: Duration::from_secs(30),
    };
    c.status_server_interval = Duration::from_secs(5);
    c.revive_after = 2;
    c
}

impl Lab {
    fn new(servers: Vec<TestServer>, service: Service, tweak: impl FnOnce(&mut ClientConfig)) -> Lab {
        let mut c = config(&servers.iter().collect::<Vec<_>>(), service);
        tweak(&mut c);
        Lab {
            client: Client::with_rng(c, StdRng::seed_from_u64(7)),
            servers,
            now: Instant::now(),
            events: Vec::new(),
        }
    }

    /// Deliver every transmit to its server and every answer back.
    fn exchange(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            let now = self.now;
            let s = self.servers.iter_mut().find(|s| s.address == t.destination).expect("known server");
            if let Some(reply) = s.answer(now, &t) {
                let from = s.address;
                self.client.handle_datagram(now, t.socket, from, &reply);
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
    }

    /// Run until `handle` completes or `limit` of virtual time passes.
    fn run_until_done(&mut self, handle: RequestHandle, limit: Duration) -> Outcome {
        let end = self.now + limit;
        loop {
            self.exchange();
            if let Some(o) = self.completed(handle) {
                return o;
            }
            let next = self.client.poll_timeout().expect("a timer while a request is pending");
            assert!(next <= end, "not done within {limit:?}");
            self.now = next.max(self.now);
            self.client.handle_timeout(self.now);
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            self.exchange();
            match self.client.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.client.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.client.handle_timeout(self.now);
        self.exchange();
    }

    fn completed(&self, handle: RequestHandle) -> Option<Outcome> {
        self.events.iter().find_map(|e| match e {
            Event::Completed { handle: h, outcome } if *h == handle => Some(outcome.clone()),
            _ => None,
        })
    }

    fn pap(&mut self, password: &str) -> RequestHandle {
        let nas = NasIdentity { identifier: Some("lns-test".into()), ..Default::default() };
        let r = AccessRequest::new("alice", Credentials::Pap { password: password.into() }, nas);
        self.client.send(self.now, Request::access(&r).expect("request")).expect("send")
    }
}

fn accepted(o: &Outcome) -> bool {
    matches!(o, Outcome::Answered(r) if r.accepted())
}

#[test]
fn loss_is_recovered_by_rfc5080_retransmission() {
    let mut s = TestServer::new(A, b"s1");
    s.drop = 2;
    let mut lab = Lab::new(vec![s], Service::Authentication, |_| {});
    let t0 = lab.now;
    let h = lab.pap("pw");
    let o = lab.run_until_done(h, Duration::from_secs(20));
    let Outcome::Answered(reply) = &o else { panic!("{o:?}") };
    assert!(reply.accepted());
    assert_eq!(
        reply.authorization().expect("authorization").framed_ip_address,
        Some(FramedIpAddress::Address([198, 51, 100, 7].into()))
    );
    let rx = &lab.servers[0].received;
    assert_eq!(rx.len(), 3);
    // A retransmission is the same packet (same Identifier and Request
    // Authenticator, so the server can detect the duplicate).
    assert_eq!(rx[0].1.payload, rx[1].1.payload);
    assert_eq!(rx[1].1.payload, rx[2].1.payload);
    // IRT ± 10 %, then 2·RT ± 10 %.
    let d1 = rx[1].0 - t0;
    let d2 = rx[2].0 - rx[1].0;
    assert!(d1 >= Duration::from_millis(1800) && d1 <= Duration::from_millis(2200), "{d1:?}");
    assert!(d2 >= d1 * 19 / 10 && d2 <= d1 * 21 / 10, "{d1:?} then {d2:?}");
    let st = &lab.client.servers()[0].stats;
    assert_eq!((st.requests, st.retransmissions, st.replies), (1, 2, 1));
    // A wrong password is an Access-Reject, answered, not retransmitted.
    let h = lab.pap("nope");
    let o = lab.run_until_done(h, Duration::from_secs(1));
    assert!(matches!(&o, Outcome::Answered(r) if r.code() == Code::AccessReject), "{o:?}");
}

#[test]
fn failover_dead_server_and_revival_by_status_server() {
    let mut a = TestServer::new(A, b"secret-a");
    a.down = true;
    let b = TestServer::new(B, b"secret-b");
    let mut lab = Lab::new(vec![a, b], Service::Authentication, |_| {});
    let h = lab.pap("pw");
    let o = lab.run_until_done(h, Duration::from_secs(40));
    assert!(accepted(&o), "{o:?}");
    let Outcome::Answered(reply) = o else { unreachable!() };
    assert_eq!(reply.server, ServerId(1));
    // A got 1 + MRC transmissions; B recovered the password with its own
    // secret (the client hid it anew for B).
    assert_eq!(lab.servers[0].received.len(), 3);
    assert_eq!(lab.servers[1].received.len(), 1);
    assert!(lab.events.iter().any(|e| matches!(e, Event::ServerDown(ServerId(0)))));
    assert_eq!(lab.client.servers()[0].state, ServerState::Dead);

    // While A is dead, requests go straight to B.
    let h = lab.pap("pw");
    assert!(accepted(&lab.run_until_done(h, Duration::from_millis(1))));
    assert_eq!(lab.servers[0].received.len(), 3);

    // A comes back: the Status-Server probes see it, and after two
    // answers it serves again.
    lab.servers[0].down = false;
    lab.advance(Duration::from_secs(11));
    let probes: Vec<_> = lab.servers[0].received.iter().skip(3).map(|(_, t)| t.payload[0]).collect();
    assert_eq!(probes, [12, 12], "two Status-Server probes");
    assert!(lab.events.iter().any(|e| matches!(e, Event::ServerUp(ServerId(0)))));
    assert_eq!(lab.client.servers()[0].state, ServerState::Alive);
    let h = lab.pap("pw");
    let o = lab.run_until_done(h, Duration::from_millis(1));
    assert!(matches!(&o, Outcome::Answered(r) if r.server == ServerId(0)), "{o:?}");
}

#[test]
fn lost_probe_resets_the_revival_count() {
    let mut a = TestServer::new(A, b"s");
    a.down = true;
    let mut lab = Lab::new(vec![a], Service::Authentication, |c| c.revive_after = 2);
    let h = lab.pap("pw");
    lab.run_until_done(h, Duration::from_secs(40));
    lab.servers[0].down = false;
    lab.servers[0].drop = 1;
    // probe 1 lost, probe 2 answered, probe 3 answered → alive.
    lab.advance(Duration::from_secs(5 + 2 + 5 + 5 + 1));
    let up = lab.events.iter().filter(|e| matches!(e, Event::ServerUp(_))).count();
    assert_eq!(up, 1);
    assert_eq!(lab.client.servers()[0].stats.status_server_sent, 3);
}

#[test]
fn no_server_answers_gives_the_policy() {
    let mut a = TestServer::new(A, b"s");
    a.down = true;
    let mut b = TestServer::new(B, b"s");
    b.down = true;
    let mut lab = Lab::new(vec![a, b], Service::Authentication, |c| {
        c.authentication_policy = NoAnswerPolicy::FallbackLocal
    });
    let h = lab.pap("pw");
    let t0 = lab.now;
    let o = lab.run_until_done(h, Duration::from_secs(60));
    assert!(matches!(o, Outcome::NoAnswer { policy: NoAnswerPolicy::FallbackLocal, .. }), "{o:?}");
    assert!(lab.now - t0 < Duration::from_secs(40), "two servers × (2+4+8 s)");
    // Both dead now: the next request is answered at once, without
    // waiting for time-outs.
    let h = lab.pap("pw");
    lab.exchange();
    assert!(matches!(lab.completed(h), Some(Outcome::NoAnswer { .. })));
}

#[test]
fn identifiers_run_out_and_more_sockets_open() {
    let s = TestServer::new(A, b"s");
    let mut lab = Lab::new(vec![s], Service::Authentication, |c| c.max_sockets = 2);
    let handles: Vec<_> = (0..600).map(|_| lab.pap("pw")).collect();
    let mut sent = Vec::new();
    while let Some(t) = lab.client.poll_transmit() {
        sent.push(t);
    }
    assert_eq!(sent.len(), 512, "256 per socket, 2 sockets");
    assert_eq!(lab.client.sockets(), 2);
    let mut per_socket: HashMap<SocketId, std::collections::HashSet<u8>> = HashMap::new();
    for t in &sent {
        assert!(per_socket.entry(t.socket).or_default().insert(t.payload[1]), "identifier reused in flight");
    }
    assert_eq!(per_socket.len(), 2);
    // Answer them all: the 88 waiting ones go out as identifiers free up,
    // and every request completes accepted.
    for t in sent {
        let now = lab.now;
        let reply = lab.servers[0].answer(now, &t).expect("answer");
        lab.client.handle_datagram(now, t.socket, addr(A), &reply);
    }
    lab.exchange();
    for h in handles {
        assert!(lab.completed(h).as_ref().is_some_and(accepted), "{h:?}");
    }
    assert_eq!(lab.client.in_flight(), 0);
}

#[test]
fn replies_are_validated() {
    let s = TestServer::new(A, b"s");
    let mut lab = Lab::new(vec![s], Service::Authentication, |c| {
        c.servers[0].require_message_authenticator = RequireMessageAuthenticator::Always
    });
    let h = lab.pap("pw");
    let t = lab.client.poll_transmit().expect("transmit");
    let now = lab.now;
    let good = lab.servers[0].answer(now, &t).expect("answer");
    let req = PacketRepr::from_bytes(&t.payload).expect("parse");
    let forge = |f: &dyn Fn(&mut PacketRepr), secret: &[u8]| {
        let mut r = PacketRepr::new(Code::AccessAccept, req.identifier);
        r.ensure_message_authenticator();
        f(&mut r);
        r.encode(secret, Some(&req.authenticator)).expect("encode")
    };
    // From another port of the same host.
    lab.client.handle_datagram(now, t.socket, addr("192.0.2.10:1813"), &good);
    // On another socket.
    lab.client.handle_datagram(now, SocketId(9), addr(A), &good);
    // Another secret.
    lab.client.handle_datagram(now, t.socket, addr(A), &forge(&|_| {}, b"x"));
    // No Message-Authenticator (the BlastRADIUS forgery shape).
    lab.client.handle_datagram(
        now,
        t.socket,
        addr(A),
        &forge(&|r| r.remove_all(T::MESSAGE_AUTHENTICATOR), b"s"),
    );
    // Another identifier.
    lab.client.handle_datagram(now, t.socket, addr(A), &forge(&|r| r.identifier ^= 1, b"s"));
    // A code that does not answer an Access-Request.
    lab.client.handle_datagram(now, t.socket, addr(A), &forge(&|r| r.code = Code::AccountingResponse, b"s"));
    // Garbage.
    lab.client.handle_datagram(now, t.socket, addr(A), &good[..19]);
    lab.exchange();
    assert!(lab.completed(h).is_none(), "nothing forged was taken");
    let st = lab.client.servers()[0].stats;
    assert_eq!(st.bad_authenticator, 1);
    assert_eq!(st.missing_message_authenticator, 1);
    assert_eq!(st.unknown_identifier, 2, "other socket and other identifier");
    assert_eq!(st.bad_code, 1);
    assert_eq!(st.malformed, 1);
    lab.client.handle_datagram(now, t.socket, addr(A), &good);
    lab.exchange();
    assert!(lab.completed(h).as_ref().is_some_and(accepted));
    // The same reply again finds nothing in flight.
    lab.client.handle_datagram(now, t.socket, addr(A), &good);
    assert_eq!(lab.client.servers()[0].stats.unknown_identifier, 3);
}

#[test]
fn accounting_retransmission_updates_delay_time_with_a_new_identifier() {
    let mut s = TestServer::new(ACCT, b"acct");
    s.drop = 1;
    let mut lab = Lab::new(vec![s], Service::Accounting, |_| {});
    let nas = NasIdentity { identifier: Some("lns-test".into()), ..Default::default() };
    let mut r = AccountingRequest::new(AcctStatusType::Stop, "S-1", nas);
    r.delay_time = 10;
    let h = lab.client.send(lab.now, Request::accounting(&r).expect("request")).expect("send");
    let o = lab.run_until_done(h, Duration::from_secs(10));
    assert!(matches!(&o, Outcome::Answered(r) if r.code() == Code::AccountingResponse), "{o:?}");
    let rx: Vec<PacketRepr> = lab.servers[0]
        .received
        .iter()
        .map(|(_, t)| PacketRepr::from_bytes(&t.payload).expect("parse"))
        .collect();
    assert_eq!(rx.len(), 2);
    let delay = |p: &PacketRepr| p.get(T::ACCT_DELAY_TIME).and_then(|a| a.as_integer().ok());
    assert_eq!(delay(&rx[0]), Some(10));
    assert!(delay(&rx[1]).is_some_and(|d| d == 11 || d == 12), "{:?}", delay(&rx[1]));
    assert_ne!(rx[0].identifier, rx[1].identifier);
    // Message-Authenticator first in every request.
    assert!(rx.iter().all(|p| p.attributes[0].typ() == T::MESSAGE_AUTHENTICATOR));
    // An Accounting-Request is not accepted as an authentication request.
    assert!(lab.client.send(lab.now, Request { code: Code::CoaRequest, attributes: vec![] }).is_err());
}

/// The lab's PAP request until it completes.
fn pap_outcome(lab: &mut Lab) -> Outcome {
    let h = lab.pap("pw");
    lab.run_until_done(h, Duration::from_secs(40))
}

fn count(lab: &Lab, f: impl Fn(&Event) -> bool) -> usize {
    lab.events.iter().filter(|e| f(e)).count()
}

fn policy(lab: &Lab) -> MessageAuthenticatorPolicy {
    lab.client.servers()[0].message_authenticator
}

/// The default: a server that never signs (FreeRADIUS 3.2.1 as installed)
/// is listened to, with one warning; once it signs an answer, its
/// unsigned ones are dropped and counted, and it is not called dead.
#[test]
fn auto_takes_unsigned_replies_until_the_server_signs_one() {
    let mut s = TestServer::new(A, b"s");
    s.unsigned = &[Code::AccessRequest, Code::StatusServer];
    let mut lab = Lab::new(vec![s], Service::Authentication, |_| {});
    assert_eq!(policy(&lab), MessageAuthenticatorPolicy::AutoUnsigned);
    for _ in 0..3 {
        let o = pap_outcome(&mut lab);
        assert!(accepted(&o), "{o:?}");
    }
    assert_eq!(count(&lab, |e| matches!(e, Event::UnsignedAccessReplies(ServerId(0)))), 1, "warned once");
    assert_eq!(lab.client.servers()[0].stats.replies, 3);
    assert_eq!(policy(&lab), MessageAuthenticatorPolicy::AutoUnsigned);

    // It signs one (an upgrade, or require_message_authenticator set on
    // its side): from now on a reply without one could be a forgery.
    lab.servers[0].unsigned = &[Code::StatusServer];
    assert!(accepted(&pap_outcome(&mut lab)));
    assert_eq!(count(&lab, |e| matches!(e, Event::MessageAuthenticatorRequired(ServerId(0)))), 1);
    assert_eq!(policy(&lab), MessageAuthenticatorPolicy::AutoSigned);
    lab.servers[0].unsigned = &[Code::AccessRequest, Code::StatusServer];
    let t0 = lab.now;
    let o = pap_outcome(&mut lab);
    assert!(
        matches!(o, Outcome::NoAnswer { dropped: Some(DropReason::MissingMessageAuthenticator), .. }),
        "{o:?}"
    );
    assert!(
        lab.now - t0 >= Duration::from_secs(10),
        "dropped, so retransmitted until MRC: {:?}",
        lab.now - t0
    );
    let st = lab.client.servers()[0].clone();
    assert_eq!(st.stats.missing_message_authenticator, 3, "the request and its 2 retransmissions");
    assert_eq!(st.stats.replies, 4);
    assert_eq!(st.state, ServerState::Alive, "it answers: not dead");
    assert_eq!(count(&lab, |e| matches!(e, Event::ServerDown(_))), 0);
    let drops = count(&lab, |e| {
        matches!(
            e,
            Event::ReplyDropped {
                server: ServerId(0),
                reason: DropReason::MissingMessageAuthenticator,
                probe: false
            }
        )
    });
    assert_eq!(drops, 3);
    assert_eq!(count(&lab, |e| matches!(e, Event::UnsignedAccessReplies(_))), 1, "still once");
}

/// `Auto` learns replies to Access-Request, to Accounting-Request and to
/// Status-Server apart: FreeRADIUS 3 signs what its post-auth adds but
/// answers Status-Server bare, and a dead server must still come back.
#[test]
fn auto_learns_status_server_answers_apart() {
    let mut s = TestServer::new(A, b"s");
    s.unsigned = &[Code::StatusServer];
    let mut lab = Lab::new(vec![s], Service::Authentication, |_| {});
    assert!(accepted(&pap_outcome(&mut lab)));
    assert_eq!(policy(&lab), MessageAuthenticatorPolicy::AutoSigned);
    lab.servers[0].down = true;
    lab.advance(Duration::from_secs(1));
    let o = pap_outcome(&mut lab);
    assert!(matches!(o, Outcome::NoAnswer { dropped: None, .. }), "{o:?}");
    assert_eq!(lab.client.servers()[0].state, ServerState::Dead);
    lab.servers[0].down = false;
    lab.advance(Duration::from_secs(11));
    assert_eq!(lab.client.servers()[0].state, ServerState::Alive, "revived by unsigned answers");
    assert_eq!(lab.client.servers()[0].stats.missing_message_authenticator, 0);
    assert_eq!(count(&lab, |e| matches!(e, Event::UnsignedAccessReplies(_))), 0, "no warning");
}

/// `true`: unsigned replies are dropped, whatever they answer, and counted;
/// `false`: taken without a word; a Message-Authenticator that is there
/// must verify under either.
#[test]
fn always_and_never() {
    let mut s = TestServer::new(A, b"s");
    s.unsigned = &[Code::AccessRequest, Code::StatusServer];
    let mut lab = Lab::new(vec![s], Service::Authentication, |c| {
        c.servers[0].require_message_authenticator = RequireMessageAuthenticator::Always
    });
    assert_eq!(policy(&lab), MessageAuthenticatorPolicy::Always);
    let o = pap_outcome(&mut lab);
    assert!(
        matches!(o, Outcome::NoAnswer { dropped: Some(DropReason::MissingMessageAuthenticator), .. }),
        "{o:?}"
    );
    let st = lab.client.servers()[0].clone();
    assert_eq!((st.stats.missing_message_authenticator, st.stats.replies), (3, 0));
    assert_eq!(st.state, ServerState::Alive, "it answers: not dead");
    // Signed, it is heard.
    lab.servers[0].unsigned = &[];
    assert!(accepted(&pap_outcome(&mut lab)));

    // Accounting-Response and Status-Server answers follow the same
    // setting.
    let mut s = TestServer::new(ACCT, b"acct");
    s.unsigned = &[Code::AccountingRequest];
    let mut lab = Lab::new(vec![s], Service::Accounting, |c| {
        c.servers[0].require_message_authenticator = RequireMessageAuthenticator::Always
    });
    let nas = NasIdentity { identifier: Some("lns-test".into()), ..Default::default() };
    let r = AccountingRequest::new(AcctStatusType::Start, "S-1", nas);
    let h = lab.client.send(lab.now, Request::accounting(&r).expect("request")).expect("send");
    let o = lab.run_until_done(h, Duration::from_secs(40));
    assert!(matches!(o, Outcome::NoAnswer { dropped: Some(_), .. }), "{o:?}");
    assert_eq!(lab.client.servers()[0].stats.missing_message_authenticator, 3);

    let mut a = TestServer::new(A, b"s");
    a.down = true;
    a.unsigned = &[Code::StatusServer];
    let mut lab = Lab::new(vec![a], Service::Authentication, |c| {
        c.servers[0].require_message_authenticator = RequireMessageAuthenticator::Always
    });
    pap_outcome(&mut lab);
    assert_eq!(lab.client.servers()[0].state, ServerState::Dead);
    lab.servers[0].down = false;
    // A dropped answer is a lost probe: the next one is due 5 s after its
    // deadline (IRT, 2 s).
    lab.advance(Duration::from_secs(5 + 2 + 5 + 1));
    assert_eq!(lab.client.servers()[0].state, ServerState::Dead, "unsigned probe answers are dropped");
    assert_eq!(count(&lab, |e| matches!(e, Event::ReplyDropped { probe: true, .. })), 2);

    // false: unsigned taken, and no warning (the operator chose it).
    let mut s = TestServer::new(A, b"s");
    s.unsigned = &[Code::AccessRequest];
    let mut lab = Lab::new(vec![s], Service::Authentication, |c| {
        c.servers[0].require_message_authenticator = RequireMessageAuthenticator::Never
    });
    assert!(accepted(&pap_outcome(&mut lab)));
    assert_eq!(policy(&lab), MessageAuthenticatorPolicy::Never);
    assert_eq!(count(&lab, |e| matches!(e, Event::UnsignedAccessReplies(_))), 0);
    // A wrong one is dropped even so, and counted apart.
    lab.servers[0].unsigned = &[];
    lab.servers[0].bad_message_authenticator = true;
    let o = pap_outcome(&mut lab);
    assert!(
        matches!(o, Outcome::NoAnswer { dropped: Some(DropReason::BadMessageAuthenticator), .. }),
        "{o:?}"
    );
    let st = lab.client.servers()[0].stats;
    assert_eq!(
        (st.bad_message_authenticator, st.bad_authenticator, st.missing_message_authenticator),
        (3, 0, 0)
    );
    assert_eq!(lab.client.servers()[0].state, ServerState::Alive);
}

#[test]
fn round_trips_are_counted_in_buckets() {
    let s = TestServer::new(A, b"s");
    let mut lab = Lab::new(vec![s], Service::Authentication, |_| {});
    // Answered after 0, 3, 30 ms and 7 s (the last after a
    // retransmission: it tells no round trip).
    for after in [0, 3, 30] {
        let h = lab.pap("pw");
        let t = lab.client.poll_transmit().expect("sent");
        lab.now += Duration::from_millis(after);
        let now = lab.now;
        let reply = lab.servers[0].answer(now, &t).expect("answer");
        lab.client.handle_datagram(now, t.socket, addr(A), &reply);
        lab.exchange();
        assert!(lab.completed(h).as_ref().is_some_and(accepted));
    }
    let h = lab.pap("pw");
    let first = lab.client.poll_transmit().expect("sent");
    lab.now += Duration::from_millis(2500);
    lab.client.handle_timeout(lab.now);
    let again = lab.client.poll_transmit().expect("retransmitted");
    assert_eq!(first.payload, again.payload);
    let now = lab.now;
    let reply = lab.servers[0].answer(now, &again).expect("answer");
    lab.client.handle_datagram(now, again.socket, addr(A), &reply);
    lab.exchange();
    assert!(lab.completed(h).as_ref().is_some_and(accepted));
    let st = lab.client.servers()[0].stats;
    assert_eq!(st.replies, 4);
    assert_eq!(st.rtt.count(), 3);
    // ≤ 1 ms, (2, 5] ms, (20, 50] ms.
    assert_eq!(st.rtt.counts, [1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(st.rtt.sum, Duration::from_millis(33));
    assert_eq!(st.last_rtt, Some(Duration::from_millis(30)));
}

#[test]
fn servers_replaced_mid_run() {
    const C: &str = "192.0.2.12:1812";
    let mut a = TestServer::new(A, b"secret-a");
    a.down = true;
    let b = TestServer::new(B, b"secret-b");
    let c = TestServer::new(C, b"secret-c");
    let mut lab = Lab::new(vec![a, b, c], Service::Authentication, |c| {
        c.servers.truncate(2);
    });
    // A is silent: marked dead, the request answered by B.
    let h = lab.pap("pw");
    assert!(accepted(&lab.run_until_done(h, Duration::from_secs(40))));
    assert_eq!(lab.client.servers()[0].state, ServerState::Dead);
    // One more to B, in flight while the list changes.
    let h = lab.pap("pw");
    let in_flight = lab.client.poll_transmit().expect("sent to B");
    assert_eq!(in_flight.destination, addr(B));
    let to_a = lab.servers[0].received.len();

    // A removed, B kept with a new secret, C new and first.
    lab.client.set_servers(vec![
        ServerConfig::new(addr(C), b"secret-c".to_vec(), Service::Authentication),
        ServerConfig::new(addr(B), b"secret-b2".to_vec(), Service::Authentication),
    ]);
    let servers = lab.client.servers();
    let listed: Vec<_> = servers.iter().map(|s| (s.id, s.address, s.state)).collect();
    assert_eq!(
        listed,
        [(ServerId(0), addr(C), ServerState::Alive), (ServerId(1), addr(B), ServerState::Alive)]
    );
    let b_stats = servers[1].stats;
    assert_eq!((b_stats.requests, b_stats.replies, b_stats.rtt.count()), (2, 1, 1), "B keeps its counters");
    assert_eq!(servers[0].stats, Default::default());

    // The request in flight finishes: B answers with the secret it was
    // sent with, 40 ms later.
    lab.now += Duration::from_millis(40);
    let now = lab.now;
    let reply = lab.servers[1].answer(now, &in_flight).expect("answer");
    lab.client.handle_datagram(now, in_flight.socket, addr(B), &reply);
    lab.exchange();
    let o = lab.completed(h).expect("completed");
    assert!(matches!(&o, Outcome::Answered(r) if r.accepted() && r.server == ServerId(1)), "{o:?}");
    let b_stats = lab.client.servers()[1].stats;
    assert_eq!((b_stats.replies, b_stats.rtt.count(), b_stats.rtt.counts[5]), (2, 2, 1));
    lab.servers[1].secret = b"secret-b2";

    // New requests go to C, first in the new list.
    let h = lab.pap("pw");
    let o = lab.run_until_done(h, Duration::from_millis(1));
    assert!(matches!(&o, Outcome::Answered(r) if r.server == ServerId(0)), "{o:?}");
    assert_eq!(lab.servers[2].received.len(), 1);

    // A, removed while dead, is probed no more.
    lab.advance(Duration::from_secs(60));
    assert_eq!(lab.servers[0].received.len(), to_a, "nothing more to A");

    // C removed while a request is in flight to it and silent: the
    // request is retransmitted to it as before, then fails over to B.
    lab.servers[2].down = true;
    let h = lab.pap("pw");
    let t = lab.client.poll_transmit().expect("sent to C");
    assert_eq!(t.destination, addr(C));
    let now = lab.now;
    assert!(lab.servers[2].answer(now, &t).is_none());
    lab.client.set_servers(vec![ServerConfig::new(addr(B), b"secret-b2".to_vec(), Service::Authentication)]);
    assert_eq!(lab.client.servers().len(), 1, "C is not listed");
    let o = lab.run_until_done(h, Duration::from_secs(40));
    assert!(matches!(&o, Outcome::Answered(r) if r.server == ServerId(0)), "{o:?}");
    assert_eq!(lab.servers[2].received.len(), 1 + 1 + 2, "C: the one before, this and its 2 retransmissions");
    assert_eq!(lab.client.servers()[0].stats.requests, 3, "B: the failover, the one in flight, this");
    // ... and nothing new, nor a probe.
    lab.servers[2].down = false;
    let h = lab.pap("pw");
    assert!(accepted(&lab.run_until_done(h, Duration::from_millis(1))));
    lab.advance(Duration::from_secs(60));
    assert_eq!(lab.servers[2].received.len(), 4);
    assert!(!lab.events.iter().any(|e| matches!(e, Event::ServerDown(ServerId(1)))), "{:?}", lab.events);
    assert_eq!(lab.client.in_flight(), 0);
}

#[test]
fn a_dead_server_kept_is_alive_again_only_with_a_new_secret() {
    let mut a = TestServer::new(A, b"wrong");
    a.down = true;
    let mut lab = Lab::new(vec![a], Service::Authentication, |_| {});
    let h = lab.pap("pw");
    assert!(matches!(lab.run_until_done(h, Duration::from_secs(40)), Outcome::NoAnswer { .. }));
    assert_eq!(lab.client.servers()[0].state, ServerState::Dead);
    let same = || vec![ServerConfig::new(addr(A), b"wrong".to_vec(), Service::Authentication)];
    lab.client.set_servers(same());
    assert_eq!(lab.client.servers()[0].state, ServerState::Dead, "same secret: still dead");
    // The secret fixed (on both sides): used at once, not after probes.
    lab.servers[0] = TestServer::new(A, b"right");
    lab.client.set_servers(vec![ServerConfig::new(addr(A), b"right".to_vec(), Service::Authentication)]);
    assert_eq!(lab.client.servers()[0].state, ServerState::Alive);
    let h = lab.pap("pw");
    assert!(accepted(&lab.run_until_done(h, Duration::from_millis(1))));
    let st = lab.client.servers()[0].stats;
    assert_eq!((st.requests, st.timeouts, st.replies), (2, 1, 1), "its counters kept");
}
