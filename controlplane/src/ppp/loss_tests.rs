//! Links negotiated over a lossy pipe on virtual time: a Server and a Client
//! [`Session`] joined by a seeded pipe that drops each frame, both ways,
//! with probability `loss` (RFC 1661 §4.6, RFC 1994 §4.1 and RFC 1334 §2
//! retransmissions are what must carry them through).
//!
//! `cargo test -p lns-controlplane --lib ppp::loss_tests -- --nocapture`
//! prints the figures (links up, time to the Network phase).

use super::authenticate::verify_password;
use super::session::{DisconnectCause, Phase, Session, SessionConfig, SessionEvent};
use super::{AuthDecision, AuthMethod, AuthRequest, Credentials, Ipv6cpConfig, Protocol};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// One-way delay of the pipe: replies cross requests as on a real link.
const DELAY: Duration = Duration::from_millis(20);
/// How long a subscriber is given to come up.
const LIMIT: Duration = Duration::from_secs(300);

fn alice(request: &AuthRequest) -> AuthDecision {
    match request.username.as_slice() {
        b"alice" => verify_password(request, "secret"),
        _ => AuthDecision::reject("Authentication failed"),
    }
}

/// What became of one link; times are from the subscriber's start.
#[derive(Debug)]
enum Outcome {
    /// Network phase on both ends, every configured NCP opened, both ends
    /// authenticated, after this long.
    Up(Duration),
    /// An end gave up (its LinkDown cause), or time ran out.
    Failed { server: Option<DisconnectCause>, client: Option<DisconnectCause> },
}

struct LossyLink {
    now: Instant,
    server: Session,
    client: Session,
    loss: f64,
    pipe: ChaCha8Rng,
    /// (delivery time, to the server, frame), in order.
    in_flight: VecDeque<(Instant, bool, Vec<u8>)>,
    ipv6: bool,
    server_authenticated: bool,
    client_authenticated: bool,
    server_down: Option<DisconnectCause>,
    client_down: Option<DisconnectCause>,
}

impl LossyLink {
    fn new(seed: u64, loss: f64) -> Self {
        let method = [AuthMethod::MsChapV2, AuthMethod::ChapMd5, AuthMethod::Pap][(seed % 3) as usize];
        let ipv6 = seed.is_multiple_of(2);
        let mut server = SessionConfig::server("lns");
        server.lcp.require_auth = vec![method];
        server.ipcp = Some(super::IpcpConfig {
            local_address: Some([192, 0, 2, 1].into()),
            peer_address: Some([198, 51, 100, 7].into()),
            ..Default::default()
        });
        let mut client =
            SessionConfig::client(Credentials { username: "alice".into(), password: "secret".into() });
        if ipv6 {
            server.ipv6cp = Some(Ipv6cpConfig::default());
            client.ipv6cp = Some(Ipv6cpConfig::default());
        }
        let now = Instant::now();
        LossyLink {
            now,
            server: Session::new(server, ChaCha8Rng::seed_from_u64(seed.wrapping_mul(3))),
            client: Session::new(client, ChaCha8Rng::seed_from_u64(seed.wrapping_mul(3) + 1)),
            loss,
            pipe: ChaCha8Rng::seed_from_u64(seed.wrapping_mul(3) + 2),
            in_flight: VecDeque::new(),
            ipv6,
            server_authenticated: false,
            client_authenticated: false,
            server_down: None,
            client_down: None,
        }
    }

    fn up(&self) -> bool {
        let ends = [&self.server, &self.client];
        ends.iter().all(|s| {
            s.phase() == Phase::Network
                && s.ncp_opened(Protocol::IPCP)
                && (!self.ipv6 || s.ncp_opened(Protocol::IPV6CP))
        }) && self.server_authenticated
            && self.client_authenticated
    }

    /// Frames out of both ends into the pipe, events handled, until quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for to_server in [false, true] {
                let from = if to_server { &mut self.client } else { &mut self.server };
                while let Some(frame) = from.poll_transmit() {
                    moved = true;
                    if !self.pipe.gen_bool(self.loss) {
                        self.in_flight.push_back((self.now + DELAY, to_server, frame));
                    }
                }
            }
            while let Some(e) = self.server.poll_event() {
                moved = true;
                match e {
                    SessionEvent::AuthRequest(r) => {
                        self.server.auth_result(self.now, alice(&r));
                    }
                    SessionEvent::Authenticated { .. } => self.server_authenticated = true,
                    SessionEvent::LinkDown { cause } => self.server_down = Some(cause),
                    _ => {}
                }
            }
            while let Some(e) = self.client.poll_event() {
                moved = true;
                match e {
                    SessionEvent::Authenticated { .. } => self.client_authenticated = true,
                    SessionEvent::LinkDown { cause } => self.client_down = Some(cause),
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn run(mut self) -> Outcome {
        let start = self.now;
        // The subscriber starts PPP when it sends its ICCN, the LNS when
        // the ICCN arrives: each loss of it costs an L2TP retransmission
        // (RFC 2661 §5.8: 1 s, then doubling), so the LNS starts late.
        let mut server_opens = start;
        let mut backoff = Duration::from_secs(1);
        while self.pipe.gen_bool(self.loss) {
            server_opens += backoff;
            backoff *= 2;
        }
        self.client.open(self.now);
        let mut server_opened = false;
        loop {
            if !server_opened && self.now >= server_opens {
                self.server.open(self.now);
                server_opened = true;
            }
            self.pump();
            if self.up() {
                return Outcome::Up(self.now - start);
            }
            if self.server_down.is_some() || self.client_down.is_some() {
                break;
            }
            let next = [
                (!server_opened).then_some(server_opens),
                self.in_flight.front().map(|(t, _, _)| *t),
                self.server.poll_timeout(),
                self.client.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|t| *t <= start + LIMIT) else { break };
            self.now = next.max(self.now);
            while let Some((_, to_server, frame)) =
                self.in_flight.front().filter(|(t, _, _)| *t <= self.now).cloned()
            {
                self.in_flight.pop_front();
                let to = if to_server { &mut self.server } else { &mut self.client };
                // Both ends parse whatever the other sends.
                to.handle_frame(self.now, &frame).expect("well-formed frame");
            }
            self.server.handle_timeout(self.now);
            self.client.handle_timeout(self.now);
        }
        Outcome::Failed { server: self.server_down, client: self.client_down }
    }
}

/// Figures of `links` links at `loss`: (up, failures by cause, times to up).
fn measure(links: u64, loss: f64) -> (usize, BTreeMap<String, usize>, Vec<Duration>) {
    let mut failures = BTreeMap::new();
    let mut times = Vec::new();
    for seed in 0..links {
        match LossyLink::new(seed, loss).run() {
            Outcome::Up(t) => times.push(t),
            Outcome::Failed { server, client } => {
                let name = |c: Option<DisconnectCause>| c.map_or("-".to_string(), |c| c.message);
                *failures
                    .entry(format!("server: {} / client: {}", name(server), name(client)))
                    .or_default() += 1;
            }
        }
    }
    times.sort();
    (times.len(), failures, times)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[test]
fn every_link_comes_up_through_loss() {
    const LINKS: u64 = 1000;
    let mut report = String::new();
    let mut all_up = true;
    for loss in [0.0, 0.01, 0.10] {
        let (up, failures, times) = measure(LINKS, loss);
        report += &format!(
            "loss {:>4.1} %: {up}/{LINKS} up, to Network p50 {:.2} s p99 {:.2} s max {:.2} s; failures {failures:?}\n",
            loss * 100.0,
            percentile(&times, 0.5).as_secs_f64(),
            percentile(&times, 0.99).as_secs_f64(),
            times.last().copied().unwrap_or_default().as_secs_f64(),
        );
        all_up &= up as u64 == LINKS;
    }
    eprint!("{report}");
    assert!(all_up, "{report}");
}
