//! The L2TP UDP socket.
//!
//! Bound to a wildcard address, a datagram does not say by itself which of
//! our addresses the LAC sent it to; the data plane must encapsulate from
//! exactly that address and port (RFC 2661 §8.1: the LAC keeps sending to
//! the address it first used), and replies should leave from it too. So the
//! socket asks for IP_PKTINFO / IPV6_PKTINFO and answers from the address
//! each peer used.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::socket::{
    recvmmsg, recvmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage,
};
use tokio::io::Interest;

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// Our address it was sent to (None if the kernel did not say).
    pub local: Option<IpAddr>,
    /// Interface it arrived on.
    pub ifindex: Option<u32>,
    /// Datagrams the kernel dropped so far because the socket's buffer
    /// was full (SO_RXQ_OVFL), as of this one (both sockets' of
    /// [`L2tpSocket::bind_split`]).
    pub overflowed: Option<u32>,
}

/// What a datagram on the L2TP socket is, for the order the loop serves
/// datagrams in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// L2TP control messages, and data messages carrying PPP control (LCP,
    /// authentication, the NCPs): what sets sessions up and keeps them.
    /// Also anything unreadable, for the core to judge and count.
    Control,
    /// A subscriber's IPv4 or IPv6 in a data message: the slow path's
    /// (reassembled fragments, IPsec, a missing neighbour...), which may
    /// come in floods.
    Data,
}

/// Peeks at the L2TP header (RFC 2661 §3.1: T bit, then the optional
/// Length, the ids, Ns/Nr and Offset) and the PPP protocol.
pub fn classify(datagram: &[u8]) -> Class {
    use lns_wire::l2tp::flags;
    let be16 = |at: usize| datagram.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let Some(f) = be16(0) else { return Class::Control };
    if f & flags::TYPE != 0 {
        return Class::Control;
    }
    let mut at = 2 + if f & flags::LENGTH != 0 { 2 } else { 0 } + 4;
    if f & flags::SEQUENCE != 0 {
        at += 4;
    }
    if f & flags::OFFSET != 0 {
        let Some(pad) = be16(at) else { return Class::Control };
        at += 2 + usize::from(pad);
    }
    match datagram.get(at..).and_then(lns_wire::ppp::decapsulate) {
        Some((lns_wire::ppp::IPV4 | lns_wire::ppp::IPV6, _)) => Class::Data,
        _ => Class::Control,
    }
}

pub struct L2tpSocket {
    io: tokio::net::UdpSocket,
    /// With [`L2tpSocket::bind_split`]: the socket the kernel gives the
    /// subscribers' IP to, read after `io`.
    data: Option<tokio::net::UdpSocket>,
    v6: bool,
    /// SO_RXQ_OVFL's latest count of `io`, then of `data`.
    overflows: [AtomicU32; 2],
}

/// A classic BPF program for the reuseport group of
/// [`L2tpSocket::bind_split`], run by the kernel on each datagram's UDP
/// payload: [`classify`] again (same header walk, same PPP rules), 0 (the
/// control socket) for [`Class::Control`], 1 (the data socket) for
/// [`Class::Data`]. A load past the datagram's end ends the program with
/// 0, so what cannot be read goes to the control socket, as `classify`
/// sends it to the core.
fn reuseport_program() -> Vec<lns_bpf::reuseport::Instruction> {
    use lns_wire::l2tp::flags;
    const LDH_ABS: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
    const LDH_IND: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_IND;
    const LDB_IND: u32 = libc::BPF_LD | libc::BPF_B | libc::BPF_IND;
    const LD_MEM: u32 = libc::BPF_LD | libc::BPF_MEM;
    const ST: u32 = libc::BPF_ST;
    const LDX_IMM: u32 = libc::BPF_LDX | libc::BPF_IMM;
    const ADD_K: u32 = libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K;
    const ADD_X: u32 = libc::BPF_ALU | libc::BPF_ADD | libc::BPF_X;
    const TAX: u32 = libc::BPF_MISC | libc::BPF_TAX;
    const TXA: u32 = libc::BPF_MISC | libc::BPF_TXA;
    const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
    const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const RET: u32 = libc::BPF_RET | libc::BPF_K;
    let op =
        |code: u32, jt: u8, jf: u8, k: u32| lns_bpf::reuseport::Instruction { code: code as u16, jt, jf, k };
    let (t, l, s, o) = (flags::TYPE, flags::LENGTH, flags::SEQUENCE, flags::OFFSET);
    // Jump offsets count the instructions skipped; the comments number
    // them. X is the offset of what comes next.
    vec![
        /* 0 */ op(LDH_ABS, 0, 0, 0), // A = flags
        /* 1 */ op(JSET, 32, 0, t.into()), // a control message: 34
        /* 2 */ op(ST, 0, 0, 0), // M[0] = flags
        /* 3 */ op(LDX_IMM, 0, 0, 6), // flags, tunnel id, session id
        /* 4 */ op(JSET, 0, 3, l.into()), // Length: 2 more
        /* 5 */ op(TXA, 0, 0, 0),
        /* 6 */ op(ADD_K, 0, 0, 2),
        /* 7 */ op(TAX, 0, 0, 0),
        /* 8 */ op(LD_MEM, 0, 0, 0),
        /* 9 */ op(JSET, 0, 3, s.into()), // Ns and Nr: 4 more
        /* 10 */ op(TXA, 0, 0, 0),
        /* 11 */ op(ADD_K, 0, 0, 4),
        /* 12 */ op(TAX, 0, 0, 0),
        /* 13 */ op(LD_MEM, 0, 0, 0),
        /* 14 */ op(JSET, 0, 4, o.into()), // Offset Size, then that many
        /* 15 */ op(LDH_IND, 0, 0, 0),
        /* 16 */ op(ADD_K, 0, 0, 2),
        /* 17 */ op(ADD_X, 0, 0, 0),
        /* 18 */ op(TAX, 0, 0, 0),
        // PPP as lns_wire::ppp::decapsulate reads it: FF 03 first, or
        // neither (FF alone is no PPP: 34).
        /* 19 */
        op(LDB_IND, 0, 0, 0),
        /* 20 */ op(JEQ, 0, 5, 0xff),
        /* 21 */ op(LDB_IND, 0, 0, 1),
        /* 22 */ op(JEQ, 0, 11, 0x03),
        /* 23 */ op(TXA, 0, 0, 0),
        /* 24 */ op(ADD_K, 0, 0, 2),
        /* 25 */ op(TAX, 0, 0, 0),
        /* 26 */ op(LDB_IND, 0, 0, 0), // the protocol's first octet
        /* 27 */ op(JSET, 0, 3, 1), // odd: the compressed form, one octet
        /* 28 */ op(JEQ, 6, 0, lns_wire::ppp::IPV4.into()),
        /* 29 */ op(JEQ, 5, 0, lns_wire::ppp::IPV6.into()),
        /* 30 */ op(RET, 0, 0, 0),
        /* 31 */ op(LDH_IND, 0, 0, 0), // two octets
        /* 32 */ op(JEQ, 2, 0, lns_wire::ppp::IPV4.into()),
        /* 33 */ op(JEQ, 1, 0, lns_wire::ppp::IPV6.into()),
        /* 34 */ op(RET, 0, 0, 0), // the control socket
        /* 35 */ op(RET, 0, 0, 1), // the data socket
    ]
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Socket buffers for bursts: thousands of LACs' subscribers dialling in at
/// once (after a LAC reboots, every call comes back within seconds) must
/// not overflow the kernel's default 208 KiB, or the PPP frames lost wait
/// out a 3-second restart timer.
pub const SOCKET_BUFFER: usize = 16 << 20;

/// Sets [`SOCKET_BUFFER`], past net.core.rmem_max where we may (root).
pub fn set_buffers(s: &impl std::os::fd::AsFd) {
    if setsockopt(s, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(s, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(s, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(s, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

impl L2tpSocket {
    pub fn bind(addr: SocketAddr) -> io::Result<L2tpSocket> {
        let std = std::net::UdpSocket::bind(addr)?;
        L2tpSocket::from_std(std, None, addr.is_ipv6())
    }

    /// [`L2tpSocket::bind`] as two sockets of one SO_REUSEPORT group,
    /// between which the kernel sorts the datagrams as [`classify`] does
    /// (a classic BPF program, [`reuseport_program`]): a flood of
    /// subscriber IP (reassembled fragments, say) fills the data socket's
    /// buffer and no longer the one the control messages and PPP control
    /// wait in; reads take the control socket first. Where the kernel
    /// refuses the program, one socket as [`L2tpSocket::bind`].
    pub fn bind_split(addr: SocketAddr) -> io::Result<L2tpSocket> {
        // Taken by someone else (another instance on the same address):
        // the same error as without SO_REUSEPORT, which would otherwise
        // let both bind and share the traffic.
        let addr = std::net::UdpSocket::bind(addr)?.local_addr()?;
        let v6 = addr.is_ipv6();
        let reuseport = || -> io::Result<std::net::UdpSocket> {
            use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType};
            let family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
            let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
            setsockopt(&fd, sockopt::ReusePort, &true)?;
            bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
            Ok(std::net::UdpSocket::from(fd))
        };
        let control = reuseport()?;
        let data = reuseport()?;
        if let Err(e) = lns_bpf::reuseport::attach_reuseport_cbpf(control.as_fd(), &reuseport_program()) {
            tracing::warn!(
                error = %e,
                "SO_ATTACH_REUSEPORT_CBPF: control messages share the subscribers' data socket"
            );
            return L2tpSocket::from_std(control, None, v6);
        }
        L2tpSocket::from_std(control, Some(data), v6)
    }

    fn from_std(
        io: std::net::UdpSocket,
        data: Option<std::net::UdpSocket>,
        v6: bool,
    ) -> io::Result<L2tpSocket> {
        let prepare = |s: std::net::UdpSocket| -> io::Result<tokio::net::UdpSocket> {
            s.set_nonblocking(true)?;
            if v6 {
                setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)?;
            } else {
                setsockopt(&s, sockopt::Ipv4PacketInfo, &true)?;
            }
            set_buffers(&s);
            // The kernel's count of datagrams it dropped for want of
            // room: what a flood costs, reported.
            let _ = setsockopt(&s, sockopt::RxqOvfl, &1);
            tokio::net::UdpSocket::from_std(s)
        };
        Ok(L2tpSocket {
            io: prepare(io)?,
            data: data.map(prepare).transpose()?,
            v6,
            overflows: [AtomicU32::new(0), AtomicU32::new(0)],
        })
    }

    /// A receive buffer of `bytes` instead of [`SOCKET_BUFFER`] (past
    /// net.core.rmem_max where we may): for a socket that takes the
    /// answers of a million sessions' set-ups (lns-lacsim's).
    pub fn set_receive_buffer(&self, bytes: usize) {
        for s in [Some(&self.io), self.data.as_ref()].into_iter().flatten() {
            if setsockopt(s, sockopt::RcvBufForce, &bytes).is_err() {
                let _ = setsockopt(s, sockopt::RcvBuf, &bytes);
            }
        }
    }

    /// With [`L2tpSocket::bind_split`], SO_RXQ_OVFL's latest count of the
    /// control socket alone: control messages the kernel had no room for.
    pub fn control_overflows(&self) -> Option<u32> {
        self.data.as_ref().map(|_| self.overflows[0].load(Ordering::Relaxed))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            if let Some(r) = self.try_recv(buf)? {
                return Ok(r);
            }
            match &self.data {
                None => self.io.readable().await?,
                Some(data) => tokio::select! {
                    r = self.io.readable() => r?,
                    r = data.readable() => r?,
                },
            }
        }
    }

    /// The next datagram if one is waiting, without waiting: the loop
    /// drains a burst before it flushes, so a burst costs one pass of the
    /// loop (timers, select) rather than one per datagram. The control
    /// socket's first.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        for (i, s) in [Some(&self.io), self.data.as_ref()].into_iter().flatten().enumerate() {
            match s.try_io(Interest::READABLE, || self.recv_now(s, i, buf)) {
                Ok(r) => return Ok(Some(r)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn recv_now(&self, s: &tokio::net::UdpSocket, i: usize, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = [io::IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, u32);
        let msg = recvmsg::<SockaddrStorage>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
        self.received(i, msg.address, msg.bytes, msg.cmsgs()?)
    }

    /// Waits for datagrams and takes up to [`RECV_BATCH`] of them with one
    /// recvmmsg(2), as [`L2tpSocket::recv`] takes one: the control
    /// socket's first.
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            let n = self.try_recv_batch(batch)?;
            if n > 0 {
                return Ok(n);
            }
            match &self.data {
                None => self.io.readable().await?,
                Some(data) => tokio::select! {
                    r = self.io.readable() => r?,
                    r = data.readable() => r?,
                },
            }
        }
    }

    /// What is waiting, up to [`RECV_BATCH`] datagrams, without waiting:
    /// one system call for a burst instead of one per datagram. The
    /// control socket's first (the data socket is read only when the
    /// control socket has nothing), so a caller draining the sockets
    /// meets the datagrams in the order [`L2tpSocket::try_recv`] gives
    /// them. Returns how many `batch` now holds (0: none waiting).
    pub fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.got.clear();
        for (i, s) in [Some(&self.io), self.data.as_ref()].into_iter().flatten().enumerate() {
            match s.try_io(Interest::READABLE, || self.recv_many(s, i, batch)) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(0)
    }

    fn recv_many(&self, s: &tokio::net::UdpSocket, i: usize, batch: &mut RecvBatch) -> io::Result<usize> {
        // Headers afresh for each call: the kernel writes each message's
        // control length back into its header, and a header used again
        // would offer only that much room the next time (a count of
        // overflows appearing would then truncate the address info).
        let mut headers: MultiHeaders<SockaddrStorage> =
            MultiHeaders::preallocate(RECV_BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo, u32)));
        let mut iovs: Vec<[io::IoSliceMut; 1]> =
            batch.buf.chunks_mut(MAX_DATAGRAM).map(|c| [io::IoSliceMut::new(c)]).collect();
        let results = recvmmsg(s.as_raw_fd(), &mut headers, iovs.iter_mut(), MsgFlags::empty(), None)?;
        for msg in results {
            // One the kernel could not describe is left out, as a lost
            // datagram is; its slot stays unused.
            let r = msg
                .cmsgs()
                .map_err(io::Error::from)
                .and_then(|c| self.received(i, msg.address, msg.bytes, c));
            batch.got.push(r.ok());
        }
        Ok(batch.got.len())
    }

    /// A received datagram's addresses and the kernel's notes on it.
    fn received(
        &self,
        i: usize,
        address: Option<SockaddrStorage>,
        bytes: usize,
        cmsgs: impl Iterator<Item = ControlMessageOwned>,
    ) -> io::Result<Received> {
        let from = address
            .and_then(|a| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::from((v4.ip(), v4.port())))
                } else {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                }
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source"))?;
        let (mut local, mut ifindex, mut overflowed) = (None, None, None);
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(pi) => {
                    local = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))));
                    ifindex = u32::try_from(pi.ipi_ifindex).ok();
                }
                ControlMessageOwned::Ipv6PacketInfo(pi) => {
                    local = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)).to_canonical());
                    ifindex = Some(pi.ipi6_ifindex);
                }
                ControlMessageOwned::RxqOvfl(n) => {
                    self.overflows[i].store(n, Ordering::Relaxed);
                    let [a, b] = &self.overflows;
                    overflowed = Some(a.load(Ordering::Relaxed).wrapping_add(b.load(Ordering::Relaxed)));
                }
                _ => {}
            }
        }
        Ok(Received { len: bytes, from: canonical(from), local, ifindex, overflowed })
    }

    /// Sends a batch with sendmmsg(2), one system call per run of
    /// datagrams with the same source address (the source goes in a
    /// control message shared by the run). A datagram the kernel refuses
    /// is skipped and counted in `failed`, as a lost datagram is: L2TP
    /// retransmits control messages and PPP its requests. When the socket's
    /// buffer is full the batch stops there: what was not sent stays in
    /// `batch.out` and `blocked` is set, for a caller that would rather
    /// wait ([`L2tpSocket::writable`]) than drop.
    pub fn send_batch(&self, batch: &mut Batch) -> SendOutcome {
        let mut failed = 0;
        let mut start = 0;
        while start < batch.out.len() {
            let from = batch.out[start].from;
            let end =
                batch.out[start..].iter().position(|o| o.from != from).map_or(batch.out.len(), |n| start + n);
            let run = if self.v6 {
                let addrs: Vec<Option<SockaddrIn6>> =
                    batch.out[start..end].iter().map(|o| Some(SockaddrIn6::from(v6_dest(o.to)))).collect();
                let pi = from.map(|ip| libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: match ip {
                            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                            IpAddr::V6(v6) => v6.octets(),
                        },
                    },
                    ipi6_ifindex: 0,
                });
                let cmsgs: Vec<ControlMessage> =
                    pi.as_ref().map(ControlMessage::Ipv6PacketInfo).into_iter().collect();
                let headers = if pi.is_some() { &mut batch.v6_pktinfo } else { &mut batch.v6 };
                self.send_run(headers, &batch.out[start..end], &addrs, &cmsgs)
            } else {
                let addrs: Vec<Option<SockaddrIn>> = batch.out[start..end]
                    .iter()
                    .map(|o| match o.to {
                        SocketAddr::V4(v4) => Some(SockaddrIn::from(v4)),
                        SocketAddr::V6(_) => None,
                    })
                    .collect();
                let pi = match from {
                    Some(IpAddr::V4(ip)) => Some(libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr { s_addr: u32::from(ip).to_be() },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    }),
                    _ => None,
                };
                let cmsgs: Vec<ControlMessage> =
                    pi.as_ref().map(ControlMessage::Ipv4PacketInfo).into_iter().collect();
                let headers = if pi.is_some() { &mut batch.v4_pktinfo } else { &mut batch.v4 };
                self.send_run(headers, &batch.out[start..end], &addrs, &cmsgs)
            };
            failed += run.failed;
            if let Some(sent) = run.blocked_after {
                batch.out.drain(..start + sent);
                return SendOutcome { failed, blocked: true };
            }
            start = end;
        }
        batch.out.clear();
        SendOutcome { failed, blocked: false }
    }

    /// Waits until the socket can take datagrams again.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.writable().await
    }

    fn send_run<S: SockaddrLike + Copy>(
        &self,
        headers: &mut MultiHeaders<S>,
        run: &[Outgoing],
        addrs: &[Option<S>],
        cmsgs: &[ControlMessage],
    ) -> RunOutcome {
        let fd = self.io.as_raw_fd();
        let mut failed = 0;
        let mut i = 0;
        while i < run.len() {
            let n = (run.len() - i).min(BATCH);
            // A datagram to a peer of the other family cannot go out.
            if addrs[i].is_none() {
                failed += 1;
                i += 1;
                continue;
            }
            let n = addrs[i..i + n].iter().position(Option::is_none).unwrap_or(n);
            let iovs: Vec<[io::IoSlice; 1]> =
                run[i..i + n].iter().map(|o| [io::IoSlice::new(&o.payload)]).collect();
            let sent = self.io.try_io(Interest::WRITABLE, || {
                sendmmsg(fd, headers, &iovs, &addrs[i..i + n], cmsgs, MsgFlags::empty())
                    .map(|r| r.count())
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(k) if k > 0 => i += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return RunOutcome { failed, blocked_after: Some(i) };
                }
                // The first of the run was refused (or nothing went):
                // skip it and go on with the rest.
                _ => {
                    failed += 1;
                    i += 1;
                }
            }
        }
        RunOutcome { failed, blocked_after: None }
    }
}

/// What [`L2tpSocket::send_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// Datagrams the kernel refused (skipped).
    pub failed: usize,
    /// The socket's buffer filled up; the rest is still in the batch.
    pub blocked: bool,
}

struct RunOutcome {
    failed: usize,
    /// Datagrams of the run sent before the buffer filled up.
    blocked_after: Option<usize>,
}

fn v6_dest(to: SocketAddr) -> std::net::SocketAddrV6 {
    match to {
        SocketAddr::V4(v4) => std::net::SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
        SocketAddr::V6(v6) => v6,
    }
}

/// Datagrams per sendmmsg(2).
pub const BATCH: usize = 64;

/// Datagrams per recvmmsg(2).
pub const RECV_BATCH: usize = 64;

/// The largest UDP payload: each datagram of a [`RecvBatch`] has room for
/// it, so none is cut short (the kernel reassembles fragments).
const MAX_DATAGRAM: usize = 65536;

/// Datagrams taken by one [`L2tpSocket::try_recv_batch`], each in a slot
/// of its own. The slots' memory is reserved, not touched: only the pages
/// datagrams were written to become resident.
pub struct RecvBatch {
    buf: Vec<u8>,
    /// Each slot's datagram; None for one the kernel could not describe
    /// (skipped, as a lost one).
    got: Vec<Option<Received>>,
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        RecvBatch { buf: vec![0u8; RECV_BATCH * MAX_DATAGRAM], got: Vec::with_capacity(RECV_BATCH) }
    }

    /// The datagrams of the last receive, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Received, &[u8])> {
        self.got.iter().enumerate().filter_map(|(i, r)| {
            let r = r.as_ref()?;
            let data = self.buf.get(i * MAX_DATAGRAM..i * MAX_DATAGRAM + r.len)?;
            Some((r, data))
        })
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

/// One datagram waiting for [`L2tpSocket::send_batch`].
pub struct Outgoing {
    pub to: SocketAddr,
    pub from: Option<IpAddr>,
    pub payload: Vec<u8>,
}

/// Datagrams queued during one pass of the loop, and the preallocated
/// sendmmsg headers (with and without room for a source-address control
/// message, as a header with room but no message would be refused).
pub struct Batch {
    pub out: Vec<Outgoing>,
    v4: MultiHeaders<SockaddrIn>,
    v4_pktinfo: MultiHeaders<SockaddrIn>,
    v6: MultiHeaders<SockaddrIn6>,
    v6_pktinfo: MultiHeaders<SockaddrIn6>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            out: Vec::with_capacity(BATCH),
            v4: MultiHeaders::preallocate(BATCH, None),
            v4_pktinfo: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in_pktinfo))),
            v6: MultiHeaders::preallocate(BATCH, None),
            v6_pktinfo: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo))),
        }
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control messages and PPP control first; a subscriber's IP in any
    /// header form waits; what cannot be read is the core's to judge.
    #[test]
    fn classify_peeks_at_l2tp_and_ppp() {
        // Control: T, L, S bits, version 2.
        assert_eq!(classify(&[0xc8, 0x02, 0, 12, 0, 1, 0, 0, 0, 0, 0, 0]), Class::Control);
        let ipv4 = [0x45, 0, 0, 20];
        let lcp = [1, 1, 0, 4];
        for (l, s, o) in
            [(false, false, false), (true, false, false), (true, true, false), (false, true, true)]
        {
            for (ppp, ours) in [
                (&[0xff, 0x03, 0x00, 0x21][..], Class::Data),
                (&[0x00, 0x21][..], Class::Data),
                (&[0x21][..], Class::Data),
                (&[0xff, 0x03, 0x00, 0x57][..], Class::Data),
                (&[0x57][..], Class::Data),
                (&[0xff, 0x03, 0xc0, 0x21][..], Class::Control),
                (&[0xc0, 0x23][..], Class::Control),
                (&[0xff, 0x03, 0x80, 0x21][..], Class::Control),
            ] {
                let mut d = data_header(l, s, o);
                d.extend_from_slice(ppp);
                d.extend_from_slice(if ours == Class::Data { &ipv4[..] } else { &lcp[..] });
                assert_eq!(classify(&d), ours, "{d:02x?}");
                // Every truncation is the core's to judge.
                for n in 0..d.len() - ppp.len() - 4 {
                    assert_eq!(classify(&d[..n]), Class::Control, "{:02x?}", &d[..n]);
                }
            }
        }
    }

    /// An L2TP data message's header (tunnel 7, session 9) with or without
    /// Length, Ns/Nr and an Offset with padding.
    fn data_header(length: bool, sequence: bool, offset: bool) -> Vec<u8> {
        let mut f: u16 = 2;
        let mut d = vec![0, 0];
        if length {
            f |= lns_wire::l2tp::flags::LENGTH;
            d.extend_from_slice(&[0, 0]);
        }
        d.extend_from_slice(&[0, 7, 0, 9]);
        if sequence {
            f |= lns_wire::l2tp::flags::SEQUENCE;
            d.extend_from_slice(&[0, 1, 0, 0]);
        }
        if offset {
            f |= lns_wire::l2tp::flags::OFFSET;
            d.extend_from_slice(&[0, 3, 0xaa, 0xbb, 0xcc]);
        }
        d[..2].copy_from_slice(&f.to_be_bytes());
        d
    }

    /// The kernel, running [`reuseport_program`], puts each datagram on
    /// the socket [`classify`] names: every header form with and without
    /// PPP control or subscriber IP, each of their truncations, and
    /// random bytes.
    #[tokio::test]
    async fn bind_split_sorts_datagrams_as_classify_does() {
        let rx = L2tpSocket::bind_split("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let data = rx.data.as_ref().expect("the kernel took the program");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        let to = rx.local_addr().expect("addr");
        let mut cases: Vec<Vec<u8>> =
            vec![vec![], vec![0xc8], vec![0xc8, 0x02, 0, 12, 0, 1, 0, 0, 0, 0, 0, 0]];
        let ppp: [&[u8]; 9] = [
            &[0xff, 0x03, 0x00, 0x21, 0x45, 0, 0, 20],
            &[0x00, 0x21, 0x45],
            &[0x21, 0x45],
            &[0xff, 0x03, 0x00, 0x57, 0x60],
            &[0x57, 0x60],
            &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4],
            &[0xc0, 0x23, 1],
            &[0xff, 0x21, 0x45],
            &[0x00, 0x20, 0x45],
        ];
        for bits in 0..8u16 {
            for frame in ppp {
                let (l, seq, o) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                let mut d = data_header(l, seq, o);
                d.extend_from_slice(frame);
                cases.extend((0..=d.len()).map(|n| d[..n].to_vec()));
            }
        }
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..2000 {
            let mut d = Vec::new();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Mostly data messages, so the random part is the rest.
            d.push(if x & 3 == 0 { (x >> 8) as u8 } else { (x >> 8) as u8 & 0x4b });
            for _ in 0..(x >> 24) % 24 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                d.push(x as u8);
            }
            cases.push(d);
        }
        let sockets = [rx.io.as_raw_fd(), data.as_raw_fd()];
        let mut buf = [0u8; 128];
        let (mut control, mut ip) = (0, 0);
        for d in &cases {
            tx.send_to(d, to).expect("send");
            let t0 = std::time::Instant::now();
            let on = 'wait: loop {
                for (i, fd) in sockets.iter().enumerate() {
                    if let Ok(n) = nix::sys::socket::recv(*fd, &mut buf, MsgFlags::MSG_DONTWAIT) {
                        assert_eq!(&buf[..n], &d[..]);
                        break 'wait i;
                    }
                }
                assert!(t0.elapsed() < std::time::Duration::from_secs(2), "{d:02x?} arrived nowhere");
                std::thread::yield_now();
            };
            let want = match classify(d) {
                Class::Control => 0,
                Class::Data => 1,
            };
            assert_eq!(on, want, "{d:02x?}");
            if want == 0 {
                control += 1;
            } else {
                ip += 1;
            }
        }
        assert!(control > 100 && ip > 100, "both kinds tried: {control} control, {ip} IP");
    }

    /// A batch larger than one sendmmsg, with runs of different source
    /// addresses, arrives whole and in order from the right sources.
    #[tokio::test]
    async fn send_batch_delivers_runs_in_order() {
        let rx = L2tpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind rx");
        let tx = L2tpSocket::bind("0.0.0.0:0".parse().expect("addr")).expect("bind tx");
        let to = rx.local_addr().expect("addr");
        let mut batch = Batch::new();
        let n = BATCH * 2 + 7;
        for i in 0..n {
            // Runs: 10 without a source, 10 from 127.0.0.1, ...
            let from = (i / 10 % 2 == 1).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
            batch.out.push(Outgoing { to, from, payload: (i as u32).to_be_bytes().to_vec() });
        }
        // Tokio learns a new socket is writable from its first poll.
        tx.writable().await.expect("writable");
        let outcome = tx.send_batch(&mut batch);
        assert_eq!(outcome, SendOutcome { failed: 0, blocked: false });
        assert!(batch.out.is_empty());
        let mut buf = [0u8; 64];
        for i in 0..n {
            let r = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv(&mut buf))
                .await
                .expect("datagram in time")
                .expect("recv");
            assert_eq!(&buf[..r.len], &(i as u32).to_be_bytes());
            assert_eq!(r.local, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        assert!(rx.try_recv(&mut buf).expect("try_recv").is_none(), "nothing more");
    }

    /// A burst larger than one recvmmsg is taken whole and in order,
    /// each datagram with its source, the address it was sent to and its
    /// own length (a large one beside small ones), control first.
    #[tokio::test]
    async fn recv_batch_takes_a_burst_in_order() {
        let rx = L2tpSocket::bind_split("127.0.0.1:0".parse().expect("addr")).expect("bind rx");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        let to = rx.local_addr().expect("addr");
        let n = RECV_BATCH * 2 + 5;
        // Control messages (T bit) numbered, one of them 60,000 bytes.
        let control = |i: usize| {
            let mut d = vec![0xc8, 0x02];
            d.extend_from_slice(&(i as u32).to_be_bytes());
            if i == 7 {
                d.resize(60_000, 0xab);
            }
            d
        };
        // A subscriber's IPv4 in a data message: the data socket's.
        let ip = [0x00, 0x02, 0, 7, 0, 9, 0x00, 0x21, 0x45, 0, 0, 20];
        tx.send_to(&ip, to).expect("send");
        for i in 0..n {
            tx.send_to(&control(i), to).expect("send");
        }
        let mut batch = RecvBatch::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let t0 = std::time::Instant::now();
        while got.len() < n + 1 {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{} of {} arrived", got.len(), n + 1);
            let k = rx.try_recv_batch(&mut batch).expect("recv");
            assert!(k <= RECV_BATCH);
            if k == 0 {
                rx.recv_batch(&mut batch).await.expect("recv");
            }
            for (r, data) in batch.iter() {
                assert_eq!(r.from, tx.local_addr().expect("addr"));
                assert_eq!(r.local, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                assert_eq!(r.len, data.len());
                got.push(data.to_vec());
            }
        }
        let mut want: Vec<Vec<u8>> = (0..n).map(control).collect();
        want.push(ip.to_vec());
        assert_eq!(got, want);
        assert_eq!(rx.try_recv_batch(&mut batch).expect("recv"), 0, "nothing more");
    }

    /// A datagram to an IPv6 peer on an IPv4 socket is refused alone; the
    /// rest of the batch goes.
    #[tokio::test]
    async fn send_batch_skips_what_cannot_go() {
        let rx = L2tpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind rx");
        let tx = L2tpSocket::bind("0.0.0.0:0".parse().expect("addr")).expect("bind tx");
        let to = rx.local_addr().expect("addr");
        let mut batch = Batch::new();
        batch.out.push(Outgoing { to, from: None, payload: vec![1] });
        batch.out.push(Outgoing {
            to: "[2001:db8::1]:1701".parse().expect("addr"),
            from: None,
            payload: vec![2],
        });
        batch.out.push(Outgoing { to, from: None, payload: vec![3] });
        tx.writable().await.expect("writable");
        assert_eq!(tx.send_batch(&mut batch), SendOutcome { failed: 1, blocked: false });
        let mut buf = [0u8; 8];
        for want in [1u8, 3] {
            let r = rx.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..r.len], &[want]);
        }
    }
}
