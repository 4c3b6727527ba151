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
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn,
    SockaddrIn6, SockaddrStorage,
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
}

pub struct L2tpSocket {
    io: tokio::net::UdpSocket,
    v6: bool,
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
        std.set_nonblocking(true)?;
        let v6 = addr.is_ipv6();
        if v6 {
            setsockopt(&std, sockopt::Ipv6RecvPacketInfo, &true)?;
        } else {
            setsockopt(&std, sockopt::Ipv4PacketInfo, &true)?;
        }
        set_buffers(&std);
        Ok(L2tpSocket { io: tokio::net::UdpSocket::from_std(std)?, v6 })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            self.io.readable().await?;
            match self.io.try_io(Interest::READABLE, || self.recv_now(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    fn recv_now(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = [io::IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let msg =
            recvmsg::<SockaddrStorage>(self.io.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
        let from = msg
            .address
            .and_then(|a| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::from((v4.ip(), v4.port())))
                } else {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                }
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source"))?;
        let (mut local, mut ifindex) = (None, None);
        for c in msg.cmsgs()? {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(pi) => {
                    local = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))));
                    ifindex = u32::try_from(pi.ipi_ifindex).ok();
                }
                ControlMessageOwned::Ipv6PacketInfo(pi) => {
                    local = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)).to_canonical());
                    ifindex = Some(pi.ipi6_ifindex);
                }
                _ => {}
            }
        }
        Ok(Received { len: msg.bytes, from: canonical(from), local, ifindex })
    }

    /// Sends without waiting: a full socket buffer drops the datagram, as
    /// the network could have (reliable delivery retransmits control
    /// messages).
    pub fn send(&self, to: SocketAddr, from: Option<IpAddr>, payload: &[u8]) -> io::Result<()> {
        let iov = [io::IoSlice::new(payload)];
        let fd = self.io.as_raw_fd();
        let res = if self.v6 {
            let to6 = match to {
                SocketAddr::V4(v4) => std::net::SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
                SocketAddr::V6(v6) => v6,
            };
            let dest = SockaddrIn6::from(to6);
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
            self.io.try_io(Interest::WRITABLE, || {
                sendmsg(fd, &iov, &cmsgs, MsgFlags::empty(), Some(&dest)).map_err(io::Error::from)
            })
        } else {
            let SocketAddr::V4(to4) = to else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv6 peer on an IPv4 socket"));
            };
            let dest = SockaddrIn::from(to4);
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
            self.io.try_io(Interest::WRITABLE, || {
                sendmsg(fd, &iov, &cmsgs, MsgFlags::empty(), Some(&dest)).map_err(io::Error::from)
            })
        };
        res.map(|_| ())
    }
}
