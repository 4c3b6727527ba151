//! The tokio driver of [`crate::client::Client`]: it owns the UDP sockets
//! and the timer, nothing else. [`RadiusClient`] is a cheap, cloneable,
//! `Send + Sync` handle whose async methods fit behind the control plane's
//! authentication and accounting traits.
//!
//! ```no_run
//! # async fn f(req: lns_radius::access::AccessRequest) -> Result<(), Box<dyn std::error::Error>> {
//! use lns_radius::client::{ClientConfig, Outcome, ServerConfig, Service};
//! use lns_radius::driver::RadiusClient;
//! let cfg = ClientConfig::new(vec![ServerConfig {
//!     address: "192.0.2.10:1812".parse()?,
//!     secret: b"s3cret".to_vec(),
//!     service: Service::Authentication,
//! }]);
//! let (client, mut server_events) = RadiusClient::spawn(cfg);
//! match client.access(&req).await? {
//!     Outcome::Answered(reply) if reply.accepted() => { let _auth = reply.authorization()?; }
//!     Outcome::Answered(_) => { /* Access-Reject or -Challenge */ }
//!     Outcome::NoAnswer { policy } => { /* reject, or the local users file */ let _ = policy; }
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
    Client, ClientConfig, Event, Outcome, Request, RequestHandle, ServerId, ServerStatus, SocketId,
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
}

enum Command {
    Send { request: Request, reply: oneshot::Sender<Result<Outcome, Error>> },
    Status { reply: oneshot::Sender<Vec<ServerStatus>> },
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

    /// Each server's state and counters.
    pub async fn servers(&self) -> Result<Vec<ServerStatus>, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Status { reply }).map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }
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
            match e {
                Event::Completed { handle, outcome } => {
                    if let Some(w) = waiters.remove(&handle) {
                        let _ = w.send(Ok(outcome));
                    }
                }
                Event::ServerDown(s) => {
                    tracing::warn!(server = s.0, "RADIUS server down");
                    let _ = events.send(ServerEvent::Down(s));
                }
                Event::ServerUp(s) => {
                    tracing::info!(server = s.0, "RADIUS server up");
                    let _ = events.send(ServerEvent::Up(s));
                }
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
