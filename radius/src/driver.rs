//! The tokio driver of [`crate::client::Client`]: it owns the UDP sockets
//! and the timer, nothing else. [`RadiusClient`] is a cheap, cloneable,
//! `Send + Sync` handle whose async methods fit behind the control plane's
//! authentication and accounting traits.
//!
//! ```no_run
//! # async fn f(req: lns_radius::access::AccessRequest) -> Result<(), Box<dyn std::error::Error>> {
//! use lns_radius::client::{ClientConfig, Outcome, ServerConfig, Service};
//! use lns_radius::driver::RadiusClient;
//! let cfg = ClientConfig::new(vec![ServerConfig::new(
//!     "192.0.2.10:1812".parse()?,
//!     b"s3cret".to_vec(),
//!     Service::Authentication,
//! )]);
//! let (client, mut server_events) = RadiusClient::spawn(cfg);
//! match client.access(&req).await? {
//!     Outcome::Answered(reply) if reply.accepted() => { let _auth = reply.authorization()?; }
//!     Outcome::Answered(_) => { /* Access-Reject or -Challenge */ }
//!     Outcome::NoAnswer { policy, .. } => { /* reject, or the local users file */ let _ = policy; }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::access::AccessRequest;
use crate::accounting::AccountingRequest;
use crate::client::{
    Client, ClientConfig, DropReason, Event, MessageAuthenticatorPolicy, Outcome, Request, RequestHandle,
    ServerConfig, ServerId, ServerStatus, SocketId,
};
use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request cannot be encoded: {0}")]
    Encode(#[from] Error),
    #[error("the RADIUS client task has stopped")]
    Stopped,
}

/// Server state changes, for logs and `lnsctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    Down(ServerId),
    Up(ServerId),
    /// The server list was replaced ([`RadiusClient::set_servers`],
    /// [`RadiusClient::reconfigure`]): ids name the new list's servers,
    /// and records no server took may find one now.
    Changed,
}

enum Command {
    Send { request: Request, reply: oneshot::Sender<Result<Outcome, Error>> },
    Status { reply: oneshot::Sender<Vec<ServerStatus>> },
    SetServers(Vec<ServerConfig>),
    Reconfigure(Box<ClientConfig>),
}

/// Handle to the client task; the task ends when every handle is dropped.
#[derive(Clone, Debug)]
pub struct RadiusClient {
    tx: mpsc::UnboundedSender<Command>,
}

impl RadiusClient {
    /// Start the client task on the current tokio runtime. Sockets are
    /// bound to the unspecified address of each server's family on an
    /// ephemeral port, as the engine asks for them.
    pub fn spawn(config: ClientConfig) -> (RadiusClient, mpsc::UnboundedReceiver<ServerEvent>) {
        RadiusClient::spawn_with(Client::new(config), None)
    }

    /// As [`RadiusClient::spawn`] with a given engine and source address.
    pub fn spawn_with(
        client: Client,
        bind: Option<IpAddr>,
    ) -> (RadiusClient, mpsc::UnboundedReceiver<ServerEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, bind, rx, events_tx));
        (RadiusClient { tx }, events_rx)
    }

    pub async fn request(&self, request: Request) -> Result<Outcome, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Send { request, reply }).map_err(|_| ClientError::Stopped)?;
        Ok(rx.await.map_err(|_| ClientError::Stopped)??)
    }

    /// Authenticate (Access-Request to the authentication servers).
    pub async fn access(&self, request: &AccessRequest) -> Result<Outcome, ClientError> {
        self.request(Request::access(request)?).await
    }

    /// Send an accounting record (to the accounting servers).
    pub async fn accounting(&self, request: &AccountingRequest) -> Result<Outcome, ClientError> {
        self.request(Request::accounting(request)?).await
    }

    /// Replace the servers (see [`Client::set_servers`]): requests sent
    /// after this call use the new list, those in flight finish as they
    /// would have.
    pub fn set_servers(&self, servers: Vec<ServerConfig>) -> Result<(), ClientError> {
        self.tx.send(Command::SetServers(servers)).map_err(|_| ClientError::Stopped)
    }

    /// Replace the servers, timers and policies (see
    /// [`Client::reconfigure`]), for the requests sent after this call.
    pub fn reconfigure(&self, config: ClientConfig) -> Result<(), ClientError> {
        self.tx.send(Command::Reconfigure(Box::new(config))).map_err(|_| ClientError::Stopped)
    }

    /// Each server's state and counters.
    pub async fn servers(&self) -> Result<Vec<ServerStatus>, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Status { reply }).map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }
}

/// Dropped replies are logged at most this often per server and reason
/// (thousands of subscribers refused at once must not flood the log).
const DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The logs of what the engine reports about servers.
#[derive(Default)]
struct ServerLog {
    /// Per (server, reason): when last logged, and drops since.
    drops: HashMap<(ServerId, DropReason), (Option<Instant>, u64)>,
}

impl ServerLog {
    fn event(&mut self, client: &Client, e: &Event) {
        let (id, now) = match e {
            Event::Completed { .. } => return,
            Event::ServerDown(s)
            | Event::ServerUp(s)
            | Event::UnsignedAccessReplies(s)
            | Event::MessageAuthenticatorRequired(s)
            | Event::ReplyDropped { server: s, .. } => (*s, Instant::now()),
        };
        let Some(status) = client.server(id) else { return };
        let server = status.address;
        match e {
            Event::Completed { .. } => {}
            Event::ServerDown(_) => {
                tracing::warn!(%server, "RADIUS server down: it answered nothing while a request was retransmitted to it")
            }
            Event::ServerUp(_) => tracing::info!(%server, "RADIUS server up"),
            Event::UnsignedAccessReplies(_) => tracing::warn!(
                %server,
                "RADIUS server answers Access-Requests without Message-Authenticator: its answers are taken \
                 (require_message_authenticator = \"auto\") but a man in the middle can forge them \
                 (Blast-RADIUS, CVE-2024-3596); make the server sign its replies and set \
                 require_message_authenticator = true for it"
            ),
            Event::MessageAuthenticatorRequired(_) => tracing::info!(
                %server,
                "RADIUS server signs its replies with Message-Authenticator: unsigned ones are dropped from now on \
                 (require_message_authenticator = \"auto\")"
            ),
            Event::ReplyDropped { reason, probe, .. } => {
                let entry = self.drops.entry((id, *reason)).or_insert((None, 0));
                entry.1 += 1;
                if entry.0.is_some_and(|t| now.saturating_duration_since(t) < DROP_LOG_INTERVAL) {
                    return;
                }
                let dropped = std::mem::take(&mut entry.1);
                entry.0 = Some(now);
                let answering = if *probe { "Status-Server" } else { "a request" };
                match (reason, status.message_authenticator) {
                    (DropReason::MissingMessageAuthenticator, policy) => tracing::warn!(
                        %server,
                        dropped,
                        total = status.stats.missing_message_authenticator,
                        policy = %policy,
                        "RADIUS reply to {answering} dropped: no Message-Authenticator, which {} requires; \
                         the server answers but is not listened to (Blast-RADIUS, CVE-2024-3596: setting \
                         require_message_authenticator = false for it would accept forgeable replies)",
                        match policy {
                            MessageAuthenticatorPolicy::AutoSigned =>
                                "require_message_authenticator = \"auto\" (the server signed before)",
                            _ => "require_message_authenticator = true",
                        }
                    ),
                    (DropReason::BadMessageAuthenticator, _) => tracing::warn!(
                        %server,
                        dropped,
                        total = status.stats.bad_message_authenticator,
                        "RADIUS reply to {answering} dropped: its Message-Authenticator does not verify \
                         (a forgery, or a server computing it wrongly)"
                    ),
                }
            }
        }
    }
}

/// After a change of servers: ids were renumbered, the log's memory of
/// them goes; listeners hear of it.
fn changed(client: &Client, log: &mut ServerLog, events: &mpsc::UnboundedSender<ServerEvent>) {
    log.drops.clear();
    let servers: Vec<String> = client.servers().iter().map(|s| s.address.to_string()).collect();
    tracing::info!(servers = servers.join(" "), "RADIUS servers set");
    let _ = events.send(ServerEvent::Changed);
}

/// Requested socket buffer size.
const SOCKET_BUFFER: usize = 4 << 20;

struct Sockets {
    bind: Option<IpAddr>,
    open: HashMap<(SocketId, bool), Arc<UdpSocket>>,
    readers: Vec<JoinHandle<()>>,
    incoming: mpsc::UnboundedSender<(SocketId, SocketAddr, Vec<u8>)>,
}

impl Sockets {
    async fn get(&mut self, id: SocketId, v6: bool) -> std::io::Result<Arc<UdpSocket>> {
        if let Some(s) = self.open.get(&(id, v6)) {
            return Ok(Arc::clone(s));
        }
        let ip = match self.bind {
            Some(ip) if ip.is_ipv6() == v6 => ip,
            _ if v6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let socket = UdpSocket::bind((ip, 0)).await?;
        // Thousands of subscribers authenticated or accounted at once
        // (a LAC rebooting, sessions ending together) answer in bursts
        // that overflow the default 208 KiB; a lost reply costs a
        // retransmission timeout. Capped by net.core.rmem_max/wmem_max.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let socket = Arc::new(socket);
        let reader = Arc::clone(&socket);
        let incoming = self.incoming.clone();
        self.readers.push(tokio::spawn(async move {
            // RFC 2865 §3: a packet is at most 4096 octets.
            let mut buf = vec![0u8; 4096];
            loop {
                match reader.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        let data = buf.get(..n).unwrap_or(&[]).to_vec();
                        if incoming.send((id, from, data)).is_err() {
                            return;
                        }
                    }
                    // ICMP errors surface here on some systems; keep going.
                    Err(e) => tracing::debug!("RADIUS socket receive: {e}"),
                }
            }
        }));
        self.open.insert((id, v6), Arc::clone(&socket));
        Ok(socket)
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

async fn run(
    mut client: Client,
    bind: Option<IpAddr>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ServerEvent>,
) {
    let (incoming_tx, mut incoming) = mpsc::unbounded_channel();
    let mut sockets = Sockets { bind, open: HashMap::new(), readers: Vec::new(), incoming: incoming_tx };
    let mut waiters: HashMap<RequestHandle, oneshot::Sender<Result<Outcome, Error>>> = HashMap::new();
    let mut accepting = true;
    let mut log = ServerLog::default();
    loop {
        while let Some(t) = client.poll_transmit() {
            match sockets.get(t.socket, t.destination.is_ipv6()).await {
                Ok(s) => {
                    if let Err(e) = s.send_to(&t.payload, t.destination).await {
                        // Counted as loss; retransmission and failover deal with it.
                        tracing::debug!(destination = %t.destination, "RADIUS send: {e}");
                    }
                }
                Err(e) => tracing::warn!("RADIUS socket: {e}"),
            }
        }
        while let Some(e) = client.poll_event() {
            log.event(&client, &e);
            match e {
                Event::Completed { handle, outcome } => {
                    if let Some(w) = waiters.remove(&handle) {
                        let _ = w.send(Ok(outcome));
                    }
                }
                Event::ServerDown(s) => {
                    let _ = events.send(ServerEvent::Down(s));
                }
                Event::ServerUp(s) => {
                    let _ = events.send(ServerEvent::Up(s));
                }
                Event::UnsignedAccessReplies(_)
                | Event::MessageAuthenticatorRequired(_)
                | Event::ReplyDropped { .. } => {}
            }
        }
        // Requests a caller gave up on (future dropped) are cancelled.
        let gone: Vec<RequestHandle> =
            waiters.iter().filter(|(_, w)| w.is_closed()).map(|(h, _)| *h).collect();
        for h in gone {
            waiters.remove(&h);
            client.cancel(h);
        }
        if !accepting && waiters.is_empty() {
            return;
        }
        let deadline = client.poll_timeout().map(Instant::from_std);
        tokio::select! {
            cmd = commands.recv(), if accepting => match cmd {
                Some(Command::Send { request, reply }) => {
                    match client.send(Instant::now().into_std(), request) {
                        Ok(h) => { waiters.insert(h, reply); }
                        Err(e) => { let _ = reply.send(Err(e)); }
                    }
                }
                Some(Command::Status { reply }) => { let _ = reply.send(client.servers()); }
                Some(Command::SetServers(servers)) => {
                    client.set_servers(servers);
                    changed(&client, &mut log, &events);
                }
                Some(Command::Reconfigure(config)) => {
                    client.reconfigure(*config);
                    changed(&client, &mut log, &events);
                }
                None => accepting = false,
            },
            Some((socket, from, data)) = incoming.recv() => {
                client.handle_datagram(Instant::now().into_std(), socket, from, &data);
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                client.handle_timeout(Instant::now().into_std());
            }
        }
    }
}
