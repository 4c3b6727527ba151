//! The tunnels' own UDP ports (RFC 2661 §8.1).
//!
//! The LNS answers an SCCRQ from a port it picks for the tunnel, and the
//! LAC sends the tunnel's later messages, data included, to that port. The
//! endpoint picks the ports ([`crate::l2tp::EndpointConfig::tunnel_ports`]);
//! here is a socket on each port some tunnel uses, bound like the listen
//! socket (same address, IP_PKTINFO, buffers, the kernel's split of
//! control and data into two sockets), opened when the first
//! tunnel takes the port and closed when the last one leaves. Each socket
//! has a task that reads it and hands the datagrams to the loop, which
//! sorts them (control first, subscriber IP into the bounded slow-path
//! queue) as it does the listen socket's. Replies leave from the socket of
//! their tunnel's port, grouped into one sendmmsg(2) run per port.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::udp::{Batch, L2tpSocket, Outgoing, Received};

/// Datagrams read from the port sockets, waiting for the loop: when full,
/// the readers wait and the sockets' buffers take the rest (what they
/// have no room for is counted by SO_RXQ_OVFL).
pub const QUEUE: usize = 4096;

/// A datagram read from port `port`.
pub type PortDatagram = (u16, Received, Vec<u8>);

pub struct TunnelPorts {
    listen: SocketAddr,
    sockets: HashMap<u16, (Arc<L2tpSocket>, tokio::task::JoinHandle<()>)>,
    /// Sockets of ports given up whose reader may still hold them (an
    /// aborted task is dropped at the runtime's next turn): a port wanted
    /// again before that takes its socket back instead of failing to bind.
    retiring: HashMap<u16, std::sync::Weak<L2tpSocket>>,
    to_loop: mpsc::Sender<PortDatagram>,
    /// Datagrams of this pass by port, sent by [`TunnelPorts::send`].
    out: BTreeMap<u16, Vec<Outgoing>>,
    batch: Batch,
    /// Each socket's SO_RXQ_OVFL count as last read.
    overflows: HashMap<u16, u32>,
    /// Per port, a task sending what the socket could not take at once
    /// (see [`TunnelPorts::send`]).
    deferred: HashMap<u16, tokio::task::JoinHandle<()>>,
}

impl TunnelPorts {
    /// Ports of tunnels on `listen`'s address; their datagrams come out
    /// of the receiver returned.
    pub fn new(listen: SocketAddr) -> (TunnelPorts, mpsc::Receiver<PortDatagram>) {
        let (to_loop, rx) = mpsc::channel(QUEUE);
        let ports = TunnelPorts {
            listen,
            sockets: HashMap::new(),
            retiring: HashMap::new(),
            to_loop,
            out: BTreeMap::new(),
            batch: Batch::new(),
            overflows: HashMap::new(),
            deferred: HashMap::new(),
        };
        (ports, rx)
    }

    /// Sockets on exactly the ports of `wanted` (the listen port is the
    /// listen socket's); returns those that could not be bound (another
    /// program holds them).
    pub fn sync(&mut self, wanted: impl Iterator<Item = u16>) -> Vec<u16> {
        let wanted: BTreeSet<u16> = wanted.filter(|p| *p != self.listen.port()).collect();
        self.retiring.retain(|_, socket| socket.strong_count() > 0);
        let gone: Vec<u16> = self.sockets.keys().filter(|p| !wanted.contains(p)).copied().collect();
        for port in gone {
            if let Some((socket, reader)) = self.sockets.remove(&port) {
                // The reader holds the socket's other reference: the
                // socket closes with it.
                reader.abort();
                self.retiring.insert(port, Arc::downgrade(&socket));
            }
        }
        self.overflows.retain(|port, _| wanted.contains(port));
        let mut failed = Vec::new();
        for port in wanted {
            if self.sockets.contains_key(&port) {
                continue;
            }
            if let Some(socket) = self.retiring.remove(&port).and_then(|s| s.upgrade()) {
                let reader = tokio::spawn(read(port, Arc::clone(&socket), self.to_loop.clone()));
                self.sockets.insert(port, (socket, reader));
                continue;
            }
            let addr = SocketAddr::new(self.listen.ip(), port);
            match L2tpSocket::bind_split(addr) {
                Ok(socket) => {
                    let socket = Arc::new(socket);
                    let reader = tokio::spawn(read(port, Arc::clone(&socket), self.to_loop.clone()));
                    self.sockets.insert(port, (socket, reader));
                }
                Err(e) => {
                    warn!(%addr, error = %e, "cannot open a tunnel port: its tunnels go back to the listen port");
                    failed.push(port);
                }
            }
        }
        failed
    }

    /// Ports with a socket open.
    pub fn open(&self) -> usize {
        self.sockets.len()
    }

    /// Queues `o` to leave from `port`; hands it back when `port` has no
    /// socket (the listen socket sends it).
    pub fn queue(&mut self, port: u16, o: Outgoing) -> Option<Outgoing> {
        if !self.sockets.contains_key(&port) {
            return Some(o);
        }
        self.out.entry(port).or_default().push(o);
        None
    }

    /// What was queued and not sent yet, taken out (held until its pass
    /// of the loop is committed to the session store).
    pub fn take_queued(&mut self) -> BTreeMap<u16, Vec<Outgoing>> {
        std::mem::take(&mut self.out)
    }

    /// Datagrams [`TunnelPorts::take_queued`] took, queued again behind
    /// what is queued now.
    pub fn queue_again(&mut self, held: BTreeMap<u16, Vec<Outgoing>>) {
        for (port, out) in held {
            self.out.entry(port).or_default().extend(out);
        }
    }

    /// Sends what was queued, one batch per port; returns (sent, failed).
    /// What a socket cannot take at once goes when it can, by a task of
    /// its own (a socket opened in this pass is not known writable until
    /// the runtime has polled it: the SCCRP of a tunnel that just took a
    /// new port would wait for its retransmission); while such a task is
    /// still waiting, the rest is dropped as a lost datagram is.
    pub fn send(&mut self) -> (u64, u64) {
        let (mut sent, mut failed) = (0, 0);
        self.deferred.retain(|_, task| !task.is_finished());
        for (port, out) in std::mem::take(&mut self.out) {
            let n = out.len() as u64;
            let Some((socket, _)) = self.sockets.get(&port) else {
                failed += n;
                continue;
            };
            self.batch.out = out;
            let outcome = socket.send_batch(&mut self.batch);
            let mut lost = outcome.failed as u64;
            let rest = std::mem::take(&mut self.batch.out);
            if outcome.blocked && !self.deferred.contains_key(&port) {
                let socket = Arc::clone(socket);
                self.deferred.insert(
                    port,
                    tokio::spawn(async move {
                        if socket.writable().await.is_ok() {
                            let mut batch = Batch::new();
                            batch.out = rest;
                            let _ = socket.send_batch(&mut batch);
                        }
                    }),
                );
            } else {
                lost += rest.len() as u64;
            }
            sent += n - lost;
            failed += lost;
        }
        (sent, failed)
    }

    /// Notes port `port`'s SO_RXQ_OVFL count.
    pub fn note_overflow(&mut self, port: u16, n: u32) {
        self.overflows.insert(port, n);
    }

    /// Datagrams the port sockets had no room for, together.
    pub fn overflows(&self) -> u64 {
        self.overflows.values().map(|n| u64::from(*n)).sum()
    }
}

/// Reads port `port`'s socket until the loop is gone (or the task is
/// aborted with the port).
async fn read(port: u16, socket: Arc<L2tpSocket>, to_loop: mpsc::Sender<PortDatagram>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv(&mut buf).await {
            Ok(rx) => {
                let Some(data) = buf.get(..rx.len) else { continue };
                if to_loop.send((port, rx, data.to_vec())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(port, error = %e, "UDP receive on a tunnel port");
                // An error that repeats must not spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    /// Ports are opened and closed as the set changes; what arrives on one
    /// reaches the loop with its port, and what is queued for it leaves
    /// from it.
    #[tokio::test]
    async fn sockets_follow_the_ports_in_use() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Free ports, found by binding and letting go.
        let free = || std::net::UdpSocket::bind((lo, 0)).and_then(|s| s.local_addr()).map(|a| a.port());
        let (a, b) = (free().expect("port"), free().expect("port"));
        let (mut ports, mut rx) = TunnelPorts::new(SocketAddr::new(lo, 1));
        assert_eq!(ports.sync([a, b].into_iter()), Vec::<u16>::new());
        assert_eq!(ports.open(), 2);
        // A port another socket holds is reported.
        let holder = std::net::UdpSocket::bind((lo, 0)).expect("bind");
        let held = holder.local_addr().expect("addr").port();
        assert_eq!(ports.sync([a, held].into_iter()), vec![held]);
        assert_eq!(ports.open(), 1, "b closed, held not opened");
        // Wanted again at once, b takes its socket back.
        assert_eq!(ports.sync([a, b].into_iter()), Vec::<u16>::new());
        assert_eq!(ports.sync([a].into_iter()), Vec::<u16>::new());
        // Its reader gone (at the runtime's next turns), b is closed.
        let t0 = std::time::Instant::now();
        while std::net::UdpSocket::bind((lo, b)).is_err() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "b is still bound");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        let peer = tokio::net::UdpSocket::bind((lo, 0)).await.expect("peer");
        let peer_addr = peer.local_addr().expect("addr");
        peer.send_to(b"to a", (lo, a)).await.expect("send");
        let (port, r, data) = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("in time")
            .expect("datagram");
        assert_eq!((port, r.from, data.as_slice()), (a, peer_addr, &b"to a"[..]));

        assert!(ports
            .queue(a, Outgoing { to: peer_addr, from: None, payload: b"from a".to_vec() })
            .is_none());
        let back = ports.queue(held, Outgoing { to: peer_addr, from: None, payload: vec![1] });
        assert!(back.is_some(), "no socket on held: handed back");
        assert_eq!(ports.send(), (1, 0));
        let mut buf = [0u8; 16];
        let (n, from) = tokio::time::timeout(std::time::Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("in time")
            .expect("recv");
        assert_eq!((&buf[..n], from.port()), (&b"from a"[..], a));
    }
}
