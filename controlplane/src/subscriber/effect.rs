//! What goes into the subscriber core besides datagrams and time, and
//! what comes out of it.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use lns_bpf::abi;

use super::accounting::AcctRecord;
use super::reason::{DownReason, EndReason};
use super::SessionKey;
use crate::daemon::aaa::{AuthContext, Authorization};
use crate::l2tp::{TunnelDownReason, TunnelId};
use crate::ppp::{AuthMethod, AuthRequest};

/// Something the driver must do, in the order the core returns them.
// Effects live in a queue for a moment; boxing the session entry would
// cost an allocation per write for no saving that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Effect {
    /// A datagram for a LAC.
    Send(Datagram),
    /// Make the data plane's entry of `key` this one (install it if the
    /// key has none). A failure comes back as [`super::Core::handle_map_failure`]
    /// with `op`.
    WriteSession { key: SessionKey, entry: abi::Session, op: MapOp },
    /// Remove the data plane's entry of `key`, if it has one.
    RemoveSession { key: SessionKey },
    /// Read these sessions' fast-path counters and hand them to
    /// [`super::Core::handle_counters`] (accounting and idle timeouts wait
    /// for them).
    SampleCounters { keys: Vec<SessionKey> },
    /// Ask the credential backend; its answer goes to
    /// [`super::Core::handle_auth_answer`] with the same key and `seq`.
    Authenticate(Box<AuthJob>),
    /// An Accounting-Request to send.
    Accounting(Box<AcctRecord>),
    /// Something an operator reads in the log.
    Notice(Notice),
    /// An IP packet for the kernel to route (the slow path's TUN device).
    Deliver { packet: Vec<u8> },
    /// Route `prefix/len` into the TUN device (or stop routing it): a
    /// subscriber's address or prefix entered or left the fast path.
    Route { prefix: IpAddr, len: u8, add: bool },
    /// Route `address`/128 to the data plane's entry of `key` (or stop
    /// routing it): a DHCPv6 IA_NA address from a pool, which is in neither
    /// of the entry's prefixes.
    AddressRoute { key: SessionKey, address: Ipv6Addr, add: bool },
}

/// A datagram to send from the L2TP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub to: SocketAddr,
    /// Our address the peer sends to, so the reply leaves from it.
    pub from: Option<IpAddr>,
    /// Our port it leaves from: its tunnel's own (RFC 2661 §8.1, see
    /// [`crate::l2tp::EndpointConfig::tunnel_ports`]); None: the L2TP
    /// socket's.
    pub source_port: Option<u16>,
    pub payload: Vec<u8>,
    /// §5.4: a data message of a session that asked for sequencing; the
    /// driver writes the next Ns of the data plane's counter for `key`
    /// (which numbers the session's IP packets too) at `offset`.
    pub ns: Option<NsFill>,
}

/// Where a sequenced PPP frame's Ns goes, and whose counter gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsFill {
    pub key: SessionKey,
    pub offset: usize,
}

/// Which write a map failure is about: each is undone its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapOp {
    /// ICRQ accepted: the call's entry, early so its first PPP frames
    /// reach us. A failure is tried again at ICCN.
    Call,
    /// ICCN: the session enters the data plane; a failure ends it.
    Connect,
    /// IPCP opened: forwarding IPv4; a failure ends the session.
    Ipv4Up,
    /// IPv6CP opened: forwarding the prefix; a failure closes IPv6CP.
    Ipv6Up,
    /// A family went down or LCP changed what the link takes: counted.
    Change,
    /// The entry's removal: counted.
    Remove,
}

/// A credential check to run.
#[derive(Debug, Clone)]
pub struct AuthJob {
    pub key: SessionKey,
    pub seq: u64,
    pub request: AuthRequest,
    pub context: AuthContext,
}

/// The backend's answer to an [`AuthJob`].
#[derive(Debug, Clone)]
pub struct AuthAnswer {
    pub key: SessionKey,
    pub seq: u64,
    pub request: AuthRequest,
    pub authorization: Authorization,
}

/// Why the IPv4 or IPv6 control protocol was closed without the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcpRefusal {
    /// IPCP opened, but the session has no IPv4 address (IPv6 only).
    NoAddress,
    /// IPCP opened with an address we did not assign.
    NotAssigned,
    /// No prefix left for IPv6CP.
    NoPrefix,
    /// The data plane refused the write.
    MapWrite,
}

/// The log: one notice per thing an operator follows a subscriber by.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    TunnelAccepted {
        tunnel: TunnelId,
        peer: SocketAddr,
        local: IpAddr,
    },
    TunnelUp {
        tunnel: TunnelId,
        peer_tunnel_id: u16,
        host_name: String,
    },
    TunnelDown {
        tunnel: TunnelId,
        reason: TunnelDownReason,
    },
    TunnelClosing {
        tunnel: TunnelId,
        by: EndReason,
    },
    SessionUp {
        key: SessionKey,
        peer_session_id: u16,
        sequencing: bool,
        calling_number: String,
    },
    Authentication {
        key: SessionKey,
        user: String,
        method: AuthMethod,
        proxied: bool,
        accepted: bool,
    },
    NoIpv4Address {
        key: SessionKey,
        user: String,
        ipv6_only: bool,
    },
    Ipv4Up {
        key: SessionKey,
        address: Ipv4Addr,
        mtu: u16,
    },
    Ipv6Up {
        key: SessionKey,
        prefix: Ipv6Addr,
        len: u8,
    },
    NcpRefused {
        key: SessionKey,
        protocol: u16,
        why: NcpRefusal,
    },
    NcpDown {
        key: SessionKey,
        protocol: u16,
    },
    EchoFailure {
        key: SessionKey,
        unanswered: u32,
    },
    Ending {
        key: SessionKey,
        reason: EndReason,
    },
    LinkDown {
        key: SessionKey,
        code: u16,
        message: String,
    },
    SessionDown {
        key: SessionKey,
        reason: DownReason,
        ppp_frames_rx: u64,
    },
    CoaApplied {
        key: SessionKey,
        session_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
    },
    MapWriteFailed {
        key: SessionKey,
        op: MapOp,
    },
    /// A late backend answer for a session that is gone or asked again.
    StaleAuthAnswer {
        key: SessionKey,
    },
    /// L2TP from a peer that requires IPsec arrived through an interface
    /// that is not one of its IPsec interfaces (`interface`: its name, if
    /// known): refused.
    ClearL2tpRefused {
        peer: SocketAddr,
        ifindex: Option<u32>,
        interface: Option<String>,
    },
}

/// Effects a chunk of [`EffectQueue`] holds: about 16 KiB, well below the
/// allocator's threshold for a mapping of its own.
const EFFECT_CHUNK: usize = 16 * 1024 / std::mem::size_of::<Effect>();

/// The core's effects in order, in chunks: a burst (a tunnel's thousand
/// sessions ending at once, twenty tunnels in one batch) takes chunks the
/// allocator finds among the memory the ended sessions gave back, where one
/// growing buffer would be a new mapping of the whole burst (twice, while
/// it grows): new resident memory at the moment of the hang-up.
#[derive(Debug, Default)]
pub struct EffectQueue {
    chunks: VecDeque<VecDeque<Effect>>,
}

impl EffectQueue {
    pub fn push_back(&mut self, effect: Effect) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < EFFECT_CHUNK => last.push_back(effect),
            _ => {
                let mut chunk = VecDeque::with_capacity(EFFECT_CHUNK);
                chunk.push_back(effect);
                self.chunks.push_back(chunk);
            }
        }
    }

    pub fn pop_front(&mut self) -> Option<Effect> {
        loop {
            let first = self.chunks.front_mut()?;
            if let Some(e) = first.pop_front() {
                return Some(e);
            }
            if self.chunks.len() == 1 {
                // The one chunk is kept for the next pass's few effects.
                return None;
            }
            self.chunks.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effect_queue_is_fifo_across_chunks_and_keeps_one_chunk() {
        let mut q = EffectQueue::default();
        assert!(q.pop_front().is_none());
        let n = EFFECT_CHUNK * 3 + 5;
        for i in 0..n {
            q.push_back(Effect::RemoveSession {
                key: SessionKey::new(TunnelId(1), crate::l2tp::SessionId(i as u16)),
            });
        }
        assert_eq!(q.len(), n);
        assert_eq!(q.chunks.len(), 4);
        for i in 0..n {
            match q.pop_front() {
                Some(Effect::RemoveSession { key }) => assert_eq!(key.session.0, i as u16),
                other => panic!("effect {i}: {other:?}"),
            }
        }
        assert!(q.pop_front().is_none());
        assert!(q.is_empty());
        assert_eq!(q.chunks.len(), 1, "the last chunk stays for the next effects");
        q.push_back(Effect::RemoveSession { key: SessionKey::new(TunnelId(2), crate::l2tp::SessionId(7)) });
        assert!(matches!(q.pop_front(), Some(Effect::RemoveSession { key }) if key.tunnel == TunnelId(2)));
    }
}
