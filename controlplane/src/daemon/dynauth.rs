//! Dynamic Authorization server (RFC 5176): Disconnect-Request and
//! CoA-Request from the configured clients.
//!
//! [`DynAuthServer`] is sans-IO: given a datagram, its source and the
//! time, it says what to do — answer from the reply cache, drop, or ask
//! the loop to act on the sessions the request names ([`Action`]); the
//! loop's result becomes the ACK or NAK ([`DynAuthServer::complete`]),
//! which is cached so that a retransmission (same source, Identifier and
//! Request Authenticator) gets the same answer without acting twice.
//! Checks, in order: known client (else dropped), well-formed, Request
//! Authenticator and any Message-Authenticator under the client's secret
//! (else dropped, RFC 5176 §3.5), Event-Timestamp inside the replay window
//! (else dropped), attributes the NAS understands (else NAK
//! Unsupported-Attribute 401, Missing-Attribute 402, Invalid-Attribute-
//! Value 407), addressed to this NAS (else NAK 403). [`select`] finds the
//! sessions (none: NAK Session-Context-Not-Found 503).
//!
//! [`spawn`] runs it on a UDP socket and hands [`Job`]s to the loop.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lns_radius::access::NasIdentity;
use lns_radius::attribute::error_cause;
use lns_radius::crypto;
use lns_radius::dynauth::{answer, event_timestamp_fresh, DynAuthRequest, SessionSelector};
use lns_radius::packet::{Code, Packet, Repr};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

pub use crate::ctl::DynAuthStats;

/// A client allowed to send requests.
#[derive(Clone)]
pub struct DynAuthClient {
    pub address: IpAddr,
    pub secret: Vec<u8>,
    /// Requests without a Message-Authenticator are dropped.
    pub require_message_authenticator: bool,
}

impl std::fmt::Debug for DynAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynAuthClient").field("address", &self.address).finish_non_exhaustive()
    }
}

/// How long an answer is kept for retransmissions of its request.
const CACHE_LIFETIME: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 4096;

type CacheKey = (SocketAddr, u8, [u8; 16]);

/// What to do with a datagram.
#[derive(Debug)]
pub enum Verdict {
    /// Send these bytes back to the source.
    Reply(Vec<u8>),
    /// Nothing (counted).
    Drop,
    /// The loop applies the request, then calls [`DynAuthServer::complete`].
    Act(Box<Action>),
}

/// A verified request for the loop.
#[derive(Debug)]
pub struct Action {
    pub request: DynAuthRequest,
    key: CacheKey,
    packet: Repr,
    secret: Vec<u8>,
}

#[derive(Debug)]
pub struct DynAuthServer {
    clients: Vec<DynAuthClient>,
    window: u64,
    require_event_timestamp: bool,
    nas: NasIdentity,
    cache: HashMap<CacheKey, Vec<u8>>,
    expiry: VecDeque<(Instant, CacheKey)>,
    /// Requests handed to the loop and not yet answered: a retransmission
    /// meanwhile is dropped (the answer follows).
    pending: HashMap<CacheKey, ()>,
    pub stats: DynAuthStats,
    /// The text attribute that carries "down/up" rate limits, if any
    /// (`[radius] rate_attribute`).
    rate_attribute: Option<lns_radius::attribute::AttributeType>,
}

impl DynAuthServer {
    pub fn new(
        clients: Vec<DynAuthClient>,
        window: Duration,
        require_event_timestamp: bool,
        nas: NasIdentity,
    ) -> DynAuthServer {
        DynAuthServer {
            clients,
            window: window.as_secs(),
            require_event_timestamp,
            nas,
            cache: HashMap::new(),
            expiry: VecDeque::new(),
            pending: HashMap::new(),
            stats: DynAuthStats::default(),
            rate_attribute: None,
        }
    }

    /// Reads rate limits from `attribute` ("down/up") besides WISPr's.
    pub fn with_rate_attribute(mut self, attribute: Option<lns_radius::attribute::AttributeType>) -> Self {
        self.rate_attribute = attribute;
        self
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, k)) = self.expiry.front().copied() {
            if t > now && self.cache.len() <= CACHE_MAX {
                break;
            }
            self.expiry.pop_front();
            self.cache.remove(&k);
        }
    }

    /// A datagram from `from`; `unix_now` is the wall clock in seconds.
    pub fn handle(&mut self, now: Instant, unix_now: u64, from: SocketAddr, bytes: &[u8]) -> Verdict {
        self.expire(now);
        let Some(client) = self.clients.iter().find(|c| c.address == from.ip()).cloned() else {
            self.stats.unknown_client += 1;
            return Verdict::Drop;
        };
        let Ok(p) = Packet::new_checked(bytes) else {
            self.stats.malformed += 1;
            return Verdict::Drop;
        };
        if !matches!(p.code(), Code::DisconnectRequest | Code::CoaRequest) {
            self.stats.malformed += 1;
            return Verdict::Drop;
        }
        let key = (from, p.identifier(), p.authenticator());
        if let Some(reply) = self.cache.get(&key) {
            self.stats.duplicates += 1;
            return Verdict::Reply(reply.clone());
        }
        if self.pending.contains_key(&key) {
            self.stats.duplicates += 1;
            return Verdict::Drop;
        }
        // RFC 5176 §3.5: a request that does not verify is silently
        // discarded. Message-Authenticator is checked when present.
        if crypto::verify_request(bytes, &client.secret, client.require_message_authenticator).is_err() {
            self.stats.bad_authenticator += 1;
            return Verdict::Drop;
        }
        let Ok(packet) = Repr::parse(&p) else {
            self.stats.malformed += 1;
            return Verdict::Drop;
        };
        let nak =
            |s: &mut Self, packet: &Repr, cause: u32| s.finish(now, key, packet, &client.secret, Err(cause));
        let request = match DynAuthRequest::from_packet_with(&packet, self.rate_attribute) {
            Ok(r) => r,
            Err(cause) => return nak(self, &packet, cause),
        };
        // RFC 5176 §3.4 (and RFC 5080 §2.2.2): replay protection.
        match request.event_timestamp {
            Some(ts) if !event_timestamp_fresh(unix_now, ts, self.window) => {
                self.stats.stale += 1;
                return Verdict::Drop;
            }
            None if self.require_event_timestamp => {
                return nak(self, &packet, error_cause::MISSING_ATTRIBUTE)
            }
            _ => {}
        }
        let ours_ip = request.nas_ip_address.is_none_or(|ip| Some(ip) == self.nas.ip);
        let ours_id =
            request.nas_identifier.as_ref().is_none_or(|id| Some(id) == self.nas.identifier.as_ref());
        if !ours_ip || !ours_id {
            return nak(self, &packet, error_cause::NAS_IDENTIFICATION_MISMATCH);
        }
        if request.authorize_only {
            // Re-authorization (RFC 5176 §3.2) is not supported.
            return nak(self, &packet, error_cause::UNSUPPORTED_SERVICE);
        }
        if request.code == Code::CoaRequest
            && request.session_timeout.is_none()
            && request.idle_timeout.is_none()
            && request.rates.is_empty()
        {
            return nak(self, &packet, error_cause::INVALID_REQUEST);
        }
        self.pending.insert(key, ());
        Verdict::Act(Box::new(Action { request, key, packet, secret: client.secret }))
    }

    /// The loop's result for `action`: the answer to send.
    pub fn complete(
        &mut self,
        now: Instant,
        action: Box<Action>,
        result: Result<(), u32>,
    ) -> Option<Vec<u8>> {
        self.pending.remove(&action.key);
        match self.finish(now, action.key, &action.packet, &action.secret, result) {
            Verdict::Reply(b) => Some(b),
            _ => None,
        }
    }

    fn finish(
        &mut self,
        now: Instant,
        key: CacheKey,
        packet: &Repr,
        secret: &[u8],
        result: Result<(), u32>,
    ) -> Verdict {
        let (ack, cause) = match result {
            Ok(()) => (true, None),
            Err(c) => (false, Some(c)),
        };
        let Ok(bytes) = answer(packet, ack, cause, secret) else {
            self.stats.malformed += 1;
            return Verdict::Drop;
        };
        let counter = match (packet.code, ack) {
            (Code::DisconnectRequest, true) => &mut self.stats.disconnect_ack,
            (Code::DisconnectRequest, false) => &mut self.stats.disconnect_nak,
            (_, true) => &mut self.stats.coa_ack,
            (_, false) => &mut self.stats.coa_nak,
        };
        *counter += 1;
        self.cache.insert(key, bytes.clone());
        self.expiry.push_back((now + CACHE_LIFETIME, key));
        Verdict::Reply(bytes)
    }
}

/// A session as dynamic authorization sees it.
#[derive(Debug, Clone)]
pub struct SessionView<'a, K> {
    pub key: K,
    pub acct_session_id: Option<&'a str>,
    pub user_name: Option<&'a [u8]>,
    pub framed_ip: Option<Ipv4Addr>,
    pub nas_port: u32,
    pub calling_station_id: Option<&'a [u8]>,
}

/// The sessions every given identification attribute matches.
pub fn select<'a, K>(
    sel: &SessionSelector,
    sessions: impl IntoIterator<Item = SessionView<'a, K>>,
) -> Vec<K> {
    if sel.is_empty() {
        return Vec::new();
    }
    sessions
        .into_iter()
        .filter(|s| {
            sel.acct_session_id.as_deref().is_none_or(|id| s.acct_session_id == Some(id))
                && sel.user_name.as_deref().is_none_or(|u| s.user_name == Some(u))
                && sel.framed_ip_address.is_none_or(|ip| s.framed_ip == Some(ip))
                && sel.nas_port.is_none_or(|p| s.nas_port == p)
                && sel
                    .calling_station_id
                    .as_deref()
                    .is_none_or(|c| s.calling_station_id == Some(c.as_bytes()))
        })
        .map(|s| s.key)
        .collect()
}

/// A request for the loop; it answers on `done` with `Ok` or the
/// Error-Cause of the NAK.
#[derive(Debug)]
pub struct Job {
    pub request: DynAuthRequest,
    pub done: oneshot::Sender<Result<(), u32>>,
}

/// Binds `listen` and serves requests, passing the verified ones to the
/// loop through the returned channel.
pub fn spawn(
    listen: SocketAddr,
    server: DynAuthServer,
) -> std::io::Result<(mpsc::Receiver<Job>, Arc<Mutex<DynAuthStats>>)> {
    let std_socket = std::net::UdpSocket::bind(listen)?;
    std_socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(std_socket)?;
    let local = socket.local_addr()?;
    info!(%local, "dynamic authorization (RFC 5176) listening");
    let stats = Arc::new(Mutex::new(DynAuthStats { listen: local.to_string(), ..Default::default() }));
    let (jobs_tx, jobs_rx) = mpsc::channel(256);
    tokio::spawn(run(socket, server, jobs_tx, Arc::clone(&stats)));
    Ok((jobs_rx, stats))
}

async fn run(
    socket: UdpSocket,
    mut server: DynAuthServer,
    jobs: mpsc::Sender<Job>,
    stats: Arc<Mutex<DynAuthStats>>,
) {
    let listen = stats.lock().map(|s| s.listen.clone()).unwrap_or_default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Box<Action>, SocketAddr, Result<(), u32>)>();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => { debug!(error = %e, "dynauth receive"); continue; }
                };
                let bytes = buf.get(..n).unwrap_or(&[]);
                match server.handle(Instant::now(), super::radius::unix_now(), from, bytes) {
                    Verdict::Reply(b) => { let _ = socket.send_to(&b, from).await; }
                    Verdict::Drop => debug!(%from, "dynauth request dropped"),
                    Verdict::Act(action) => {
                        let (tx, rx) = oneshot::channel();
                        let job = Job { request: action.request.clone(), done: tx };
                        let done = done_tx.clone();
                        if jobs.send(job).await.is_err() {
                            return;
                        }
                        tokio::spawn(async move {
                            let result = rx.await.unwrap_or(Err(error_cause::UNSUPPORTED_SERVICE));
                            let _ = done.send((action, from, result));
                        });
                    }
                }
            }
            Some((action, from, result)) = done_rx.recv() => {
                let code = action.request.code;
                if let Some(b) = server.complete(Instant::now(), action, result) {
                    info!(%from, ?code, ?result, "dynamic authorization answered");
                    if let Err(e) = socket.send_to(&b, from).await {
                        warn!(%from, error = %e, "dynauth send");
                    }
                }
            }
        }
        if let Ok(mut s) = stats.lock() {
            *s = DynAuthStats { listen: listen.clone(), ..server.stats.clone() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lns_radius::attribute::{AttributeRepr, AttributeType as T};

    const SECRET: &[u8] = b"coa-secret";

    fn server() -> DynAuthServer {
        DynAuthServer::new(
            vec![
                DynAuthClient {
                    address: "127.0.0.1".parse().expect("ip"),
                    secret: SECRET.to_vec(),
                    require_message_authenticator: false,
                },
                DynAuthClient {
                    address: "127.0.0.3".parse().expect("ip"),
                    secret: SECRET.to_vec(),
                    require_message_authenticator: true,
                },
            ],
            Duration::from_secs(300),
            false,
            NasIdentity { ip: Some(Ipv4Addr::new(192, 0, 2, 1)), ipv6: None, identifier: Some("lns".into()) },
        )
    }

    fn request(code: Code, id: u8, attrs: Vec<AttributeRepr>, secret: &[u8]) -> Vec<u8> {
        let mut r = Repr::new(code, id);
        r.ensure_message_authenticator();
        r.attributes.extend(attrs);
        r.encode(secret, None).expect("encode")
    }

    fn from() -> SocketAddr {
        "127.0.0.1:40000".parse().expect("addr")
    }

    const NOW: u64 = 1_700_000_000;

    fn reply_code(v: &Verdict) -> Option<(Code, Option<u32>)> {
        match v {
            Verdict::Reply(b) => {
                let r = Repr::from_bytes(b).expect("parse");
                Some((r.code, r.get(T::ERROR_CAUSE).and_then(|a| a.as_integer().ok())))
            }
            _ => None,
        }
    }

    #[test]
    fn disconnect_is_acted_on_once_and_retransmissions_get_the_same_answer() {
        let mut s = server();
        let t0 = Instant::now();
        let bytes = request(
            Code::DisconnectRequest,
            7,
            vec![
                AttributeRepr::string(T::ACCT_SESSION_ID, "S1").expect("a"),
                AttributeRepr::time(T::EVENT_TIMESTAMP, NOW as u32),
            ],
            SECRET,
        );
        let Verdict::Act(action) = s.handle(t0, NOW, from(), &bytes) else { panic!("not acted on") };
        assert_eq!(action.request.selector.acct_session_id.as_deref(), Some("S1"));
        assert!(matches!(s.handle(t0, NOW, from(), &bytes), Verdict::Drop), "in progress");
        let reply = s.complete(t0, action, Ok(())).expect("ack");
        crypto::verify_response(
            &reply,
            SECRET,
            &Packet::new_checked(&bytes[..]).expect("p").authenticator(),
            true,
        )
        .expect("the ACK verifies");
        match s.handle(t0 + Duration::from_secs(1), NOW, from(), &bytes) {
            Verdict::Reply(again) => assert_eq!(again, reply, "same answer from the cache"),
            v => panic!("{v:?}"),
        }
        assert_eq!((s.stats.disconnect_ack, s.stats.duplicates), (1, 2));
        // The cache forgets after its lifetime: the same bytes would be
        // a new request (and the timestamp would have gone stale anyway).
        let later = t0 + CACHE_LIFETIME + Duration::from_secs(1);
        assert!(matches!(s.handle(later, NOW, from(), &bytes), Verdict::Act(_)));
    }

    #[test]
    fn forged_unknown_stale_and_unsupported_requests() {
        let mut s = server();
        let t0 = Instant::now();
        let ok_attrs = || vec![AttributeRepr::string(T::USER_NAME, "bob").expect("a")];
        // Wrong secret: dropped without an answer.
        let forged = request(Code::DisconnectRequest, 1, ok_attrs(), b"guess");
        assert!(matches!(s.handle(t0, NOW, from(), &forged), Verdict::Drop));
        assert_eq!(s.stats.bad_authenticator, 1);
        // Unknown client.
        let good = request(Code::DisconnectRequest, 2, ok_attrs(), SECRET);
        assert!(matches!(s.handle(t0, NOW, "127.0.0.2:1".parse().expect("a"), &good), Verdict::Drop));
        assert_eq!(s.stats.unknown_client, 1);
        // Replayed: Event-Timestamp outside the window.
        let old = request(
            Code::DisconnectRequest,
            3,
            vec![
                AttributeRepr::string(T::USER_NAME, "bob").expect("a"),
                AttributeRepr::time(T::EVENT_TIMESTAMP, (NOW - 301) as u32),
            ],
            SECRET,
        );
        assert!(matches!(s.handle(t0, NOW, from(), &old), Verdict::Drop));
        assert_eq!(s.stats.stale, 1);
        // An attribute we cannot act on: NAK 401.
        let mut attrs = ok_attrs();
        attrs.push(AttributeRepr::string(T::FILTER_ID, "x").expect("a"));
        let v = s.handle(t0, NOW, from(), &request(Code::CoaRequest, 4, attrs, SECRET));
        assert_eq!(reply_code(&v), Some((Code::CoaNak, Some(error_cause::UNSUPPORTED_ATTRIBUTE))));
        // No session identification: NAK 402.
        let v = s.handle(t0, NOW, from(), &request(Code::DisconnectRequest, 5, vec![], SECRET));
        assert_eq!(reply_code(&v), Some((Code::DisconnectNak, Some(error_cause::MISSING_ATTRIBUTE))));
        // Another NAS: NAK 403.
        let mut attrs = ok_attrs();
        attrs.push(AttributeRepr::ipv4(T::NAS_IP_ADDRESS, Ipv4Addr::new(192, 0, 2, 99)));
        let v = s.handle(t0, NOW, from(), &request(Code::DisconnectRequest, 6, attrs, SECRET));
        assert_eq!(
            reply_code(&v),
            Some((Code::DisconnectNak, Some(error_cause::NAS_IDENTIFICATION_MISMATCH)))
        );
        // A CoA that changes nothing we support: NAK 404.
        let v = s.handle(t0, NOW, from(), &request(Code::CoaRequest, 8, ok_attrs(), SECRET));
        assert_eq!(reply_code(&v), Some((Code::CoaNak, Some(error_cause::INVALID_REQUEST))));
        // A session that is not there: the loop says 503.
        let mut attrs = ok_attrs();
        attrs.push(AttributeRepr::integer(T::SESSION_TIMEOUT, 60));
        let Verdict::Act(a) = s.handle(t0, NOW, from(), &request(Code::CoaRequest, 9, attrs, SECRET)) else {
            panic!("acted on")
        };
        assert_eq!(a.request.session_timeout, Some(60));
        let nak = s.complete(t0, a, Err(error_cause::SESSION_CONTEXT_NOT_FOUND)).expect("nak");
        assert_eq!(
            reply_code(&Verdict::Reply(nak)),
            Some((Code::CoaNak, Some(error_cause::SESSION_CONTEXT_NOT_FOUND)))
        );
        // A client that must sign with Message-Authenticator.
        let strict: SocketAddr = "127.0.0.3:1".parse().expect("addr");
        let mut bare = Repr::new(Code::DisconnectRequest, 10);
        bare.push(AttributeRepr::string(T::USER_NAME, "bob").expect("a"));
        let bare = bare.encode(SECRET, None).expect("encode");
        assert!(matches!(s.handle(t0, NOW, strict, &bare), Verdict::Drop));
        assert!(matches!(s.handle(t0, NOW, from(), &bare), Verdict::Act(_)), "optional for the other client");
        let signed = request(Code::DisconnectRequest, 11, ok_attrs(), SECRET);
        assert!(matches!(s.handle(t0, NOW, strict, &signed), Verdict::Act(_)));
        // Garbage never panics.
        for n in 0..good.len() {
            let _ = s.handle(t0, NOW, from(), &good[..n]);
        }
    }

    #[test]
    fn selection_needs_every_given_attribute_to_match() {
        let sessions = || {
            vec![
                SessionView {
                    key: 1,
                    acct_session_id: Some("A"),
                    user_name: Some(&b"bob"[..]),
                    framed_ip: Some(Ipv4Addr::new(198, 51, 100, 1)),
                    nas_port: 10,
                    calling_station_id: None,
                },
                SessionView {
                    key: 2,
                    acct_session_id: Some("B"),
                    user_name: Some(&b"bob"[..]),
                    framed_ip: Some(Ipv4Addr::new(198, 51, 100, 2)),
                    nas_port: 11,
                    calling_station_id: None,
                },
            ]
        };
        let sel = |f: fn(&mut SessionSelector)| {
            let mut s = SessionSelector::default();
            f(&mut s);
            select(&s, sessions())
        };
        assert_eq!(sel(|s| s.user_name = Some(b"bob".to_vec())), vec![1, 2]);
        assert_eq!(sel(|s| s.acct_session_id = Some("B".into())), vec![2]);
        assert_eq!(sel(|s| s.framed_ip_address = Some(Ipv4Addr::new(198, 51, 100, 1))), vec![1]);
        assert_eq!(sel(|s| s.nas_port = Some(11)), vec![2]);
        assert_eq!(
            sel(|s| {
                s.user_name = Some(b"bob".to_vec());
                s.nas_port = Some(12)
            }),
            Vec::<i32>::new()
        );
        assert!(sel(|_| {}).is_empty(), "an empty selector names nothing");
    }
}
