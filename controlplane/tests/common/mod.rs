//! Shared by the process tests: the real `lns-controlplane` in a namespace,
//! and a LAC made of the project's own L2TP Endpoint over a real UDP socket.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lns_controlplane::ctl::{self, Request, Response, SessionRow, Stats, TunnelRow};
use lns_controlplane::l2tp::{
    DatagramEvent, Endpoint, EndpointConfig, Event, ResultCode, Role, SessionId, SessionInfo, TunnelConfig,
    TunnelId,
};
use lns_controlplane::ppp::{self, Credentials, SessionConfig, SessionEvent};
use lns_testlab::{Netns, NsProcess};

pub const LNS_ADDR: &str = "192.0.2.1:1701";

/// `lns-controlplane` running in `ns`, with its control socket in a temp
/// dir of its own; SIGTERM then SIGKILL on drop.
pub struct Lns {
    pub proc: NsProcess,
    pub dir: tempfile::TempDir,
}

impl Lns {
    pub fn socket_path(dir: &Path) -> PathBuf {
        dir.join("lns.sock")
    }

    /// Starts it and waits until it answers on its control socket.
    pub fn start(ns: &Netns, args: &[&str]) -> Lns {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = Lns::socket_path(dir.path());
        let mut all: Vec<&str> =
            vec!["--control-socket", sock.to_str().expect("utf-8 path"), "--log", "debug"];
        all.extend_from_slice(args);
        let bin = Path::new(env!("CARGO_BIN_EXE_lns-controlplane"));
        let mut proc = NsProcess::spawn(ns, bin, &all).expect("spawn lns-controlplane");
        let t0 = Instant::now();
        loop {
            if sock.exists() && ctl::request(&sock, &Request::ShowStats).is_ok() {
                return Lns { proc, dir };
            }
            assert!(proc.alive(), "lns-controlplane exited: {:?}", proc.output());
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "lns-controlplane not ready: {:?}",
                proc.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sock(&self) -> PathBuf {
        Lns::socket_path(self.dir.path())
    }

    pub fn request(&self, req: Request) -> Response {
        ctl::request(&self.sock(), &req).expect("control socket")
    }

    pub fn stats(&self) -> Stats {
        match self.request(Request::ShowStats) {
            Response::Stats { stats } => stats,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    pub fn tunnels(&self) -> Vec<TunnelRow> {
        match self.request(Request::TunnelList) {
            Response::Tunnels { tunnels } => tunnels,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    pub fn sessions(&self) -> Vec<SessionRow> {
        match self.request(Request::SessionList) {
            Response::Sessions { sessions } => sessions,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// lnsctl with this instance's control socket.
    pub fn lnsctl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_lnsctl"))
            .arg("--control-socket")
            .arg(self.sock())
            .args(args)
            .output()
            .expect("run lnsctl")
    }

    /// Its stderr so far (the tracing log).
    pub fn log(&self) -> String {
        self.proc.output().1
    }
}

/// Polls `cond` every 20 ms for up to `secs`.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A LAC: the project's Endpoint in the LAC role on a real UDP socket.
pub struct Lac {
    pub ep: Endpoint,
    pub sock: UdpSocket,
    pub lns: SocketAddr,
    /// Every event seen, in order.
    pub events: Vec<(TunnelId, Event)>,
    /// Subscribers: a PPP client per session, by the LAC's ids.
    pub ppp: HashMap<(TunnelId, SessionId), ppp::Session>,
    /// Every PPP event of those clients, in order.
    pub ppp_events: Vec<((TunnelId, SessionId), SessionEvent)>,
    /// The Ns of every data message received, by the LAC's ids (None: no S bit).
    pub data_ns: Vec<((TunnelId, SessionId), Option<u16>)>,
}

impl Lac {
    /// A UDP socket bound to `bind` inside `ns`.
    pub fn new(ns: &Netns, bind: &str, secret: Option<&[u8]>, host_name: &str) -> Lac {
        let sock = {
            let _in = ns.enter().expect("enter netns");
            UdpSocket::bind(bind).expect("bind LAC socket")
        };
        sock.set_read_timeout(Some(Duration::from_millis(10))).expect("timeout");
        let ep = Endpoint::new(EndpointConfig {
            tunnel: TunnelConfig {
                role: Role::Lac,
                host_name: host_name.as_bytes().to_vec(),
                secret: secret.map(<[u8]>::to_vec),
                ..TunnelConfig::default()
            },
            accept_incoming: false,
            ..EndpointConfig::default()
        });
        Lac {
            ep,
            sock,
            lns: LNS_ADDR.parse().expect("addr"),
            events: Vec::new(),
            ppp: HashMap::new(),
            ppp_events: Vec::new(),
            data_ns: Vec::new(),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    fn flush(&mut self, now: Instant) {
        // L2TP first: an ICCN must leave before the PPP frames it enables
        // (the LNS drops data for calls it has not connected).
        while let Some(t) = self.ep.poll_transmit(now) {
            let _ = self.sock.send_to(&t.payload, t.destination);
        }
        for (&(tid, sid), client) in self.ppp.iter_mut() {
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
            while let Some(f) = client.poll_transmit() {
                if let Some(t) = self.ep.encapsulate(tid, sid, &f, None, true) {
                    let _ = self.sock.send_to(&t.payload, t.destination);
                }
            }
            while let Some(ev) = client.poll_event() {
                self.ppp_events.push(((tid, sid), ev));
            }
        }
        while let Some(ev) = self.ep.poll_event() {
            self.events.push(ev);
        }
    }

    /// Runs the LAC for `d`: receives, runs timers, sends.
    pub fn pump(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            self.flush(now);
            if now >= end {
                return;
            }
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                if let Some(data) = buf.get(..n) {
                    if let DatagramEvent::Data { tunnel_id, session_id, payload, sequence } =
                        self.ep.handle_datagram(Instant::now(), from, data)
                    {
                        self.data_ns.push(((tunnel_id, session_id), sequence.map(|s| s.ns)));
                        if let (Some(c), Some(frame)) =
                            (self.ppp.get_mut(&(tunnel_id, session_id)), data.get(payload))
                        {
                            let _ = c.handle_frame(Instant::now(), frame);
                        }
                    }
                }
            }
            let now = Instant::now();
            if self.ep.poll_timeout().is_some_and(|t| t <= now) {
                self.ep.handle_timeout(now);
            }
        }
    }

    /// Pumps until `cond` holds, for up to `secs`.
    pub fn pump_until(&mut self, secs: u64, mut cond: impl FnMut(&mut Lac) -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            if cond(self) {
                return true;
            }
            self.pump(Duration::from_millis(20));
        }
        cond(self)
    }

    /// The first event since `from` (an index into `events`) that `pick` accepts.
    pub fn find<T>(&self, from: usize, mut pick: impl FnMut(&(TunnelId, Event)) -> Option<T>) -> Option<T> {
        self.events.get(from..).unwrap_or_default().iter().find_map(&mut pick)
    }

    /// Opens a tunnel; returns (our id, the LNS's id).
    pub fn connect(&mut self) -> (TunnelId, TunnelId) {
        let mark = self.events.len();
        let tid = self.ep.connect(Instant::now(), self.lns).expect("connect");
        let up = self.pump_until(10, |l| {
            l.find(mark, |(t, e)| (*t == tid && matches!(e, Event::TunnelUp { .. })).then_some(())).is_some()
        });
        assert!(up, "tunnel not up; events {:?}", self.events);
        let peer = self.ep.tunnel(tid).expect("tunnel").peer_id();
        (tid, peer)
    }

    /// Places a call; returns (our session id, the LNS's session id).
    pub fn call(&mut self, tid: TunnelId, info: SessionInfo) -> (SessionId, SessionId) {
        let mark = self.events.len();
        let sid = self.ep.open_session(Instant::now(), tid, info).expect("open session");
        let mut lns_sid = None;
        let up = self.pump_until(10, |l| {
            lns_sid = l.find(mark, |(t, e)| match e {
                Event::SessionUp { session_id, peer_session_id, .. } if *t == tid && *session_id == sid => {
                    Some(*peer_session_id)
                }
                _ => None,
            });
            lns_sid.is_some()
        });
        assert!(up, "session not up; events {:?}", self.events);
        (sid, lns_sid.expect("session up"))
    }

    pub fn hang_up(&mut self, tid: TunnelId, sid: SessionId, result: u16) {
        self.ep.close_session(Instant::now(), tid, sid, ResultCode::new(result)).expect("CDN");
        self.pump(Duration::from_millis(1));
    }

    pub fn stop_tunnel(&mut self, tid: TunnelId) {
        self.ep.close_tunnel(Instant::now(), tid, ResultCode::new(1)).expect("StopCCN");
        self.pump(Duration::from_millis(1));
    }

    /// Sends a PPP frame on a session as a data message.
    pub fn send_ppp(&mut self, tid: TunnelId, sid: SessionId, ppp: &[u8]) {
        let t = self.ep.encapsulate(tid, sid, ppp, None, true).expect("encapsulate");
        self.sock.send_to(&t.payload, t.destination).expect("send data");
    }

    /// Starts a subscriber's PPP on a session that is up.
    pub fn start_ppp(&mut self, tid: TunnelId, sid: SessionId, user: &str, password: &str) {
        // One stream per session, reproducible from its ids.
        let seed = (u64::from(tid.0) << 16) | u64::from(sid.0);
        let mut c = ppp::Session::new(
            SessionConfig::client(Credentials { username: user.into(), password: password.into() }),
            <ppp::ChaCha8Rng as ppp::SeedableRng>::seed_from_u64(seed),
        );
        c.open(Instant::now());
        self.ppp.insert((tid, sid), c);
    }

    /// The first PPP event of session `key` that `pick` accepts.
    pub fn ppp_find<T>(
        &self,
        key: (TunnelId, SessionId),
        mut pick: impl FnMut(&SessionEvent) -> Option<T>,
    ) -> Option<T> {
        self.ppp_events.iter().filter(|(k, _)| *k == key).find_map(|(_, e)| pick(e))
    }

    /// Did the LAC see `ev` for tunnel `tid` since `from`?
    pub fn saw(&self, from: usize, tid: TunnelId, mut pred: impl FnMut(&Event) -> bool) -> bool {
        self.find(from, |(t, e)| (*t == tid && pred(e)).then_some(())).is_some()
    }
}

/// Parses a datagram as the Endpoint would, for tests that look at data.
pub fn is_data(ev: &DatagramEvent) -> bool {
    matches!(ev, DatagramEvent::Data { .. })
}
