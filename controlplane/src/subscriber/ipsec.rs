//! L2TP/IPsec (RFC 3193): peers whose L2TP must be protected, and sessions
//! kept off the fast path.
//!
//! The LNS does not speak IPsec; an IPsec stack beside it (strongSwan)
//! decrypts the peer's packets before they reach the L2TP socket and
//! encrypts what the socket sends to it. A datagram on the socket does not
//! say whether it was protected, so a peer's configuration does: a peer
//! with `ipsec = "required"` names the interfaces its decrypted L2TP
//! arrives on (`ipsec_interfaces`: strongSwan's kernel-libipsec TUN device,
//! or an XFRM interface the kernel's SAs are bound to), and a datagram from
//! it that arrived through any other interface (the ingress interface comes
//! with every datagram, IP_PKTINFO) is L2TP in clear: refused, counted
//! (`ipsec_required` among the dropped datagrams) and logged, at a bounded
//! rate. Nothing reaches a tunnel, so no SCCRQ in clear opens one and no
//! data in clear reaches a session.
//!
//! The sessions of such a peer never use the data plane's fast path: the
//! XDP program runs before the kernel's IPsec on the way in and after it
//! on the way out, so a redirected frame would skip the encryption. Their
//! entries carry [`abi::Session::SLOW_PATH`]; the program passes their
//! frames to the kernel and the slow path carries both directions, out of
//! the L2TP socket, where the IPsec stack's routes or policies take them.
//! `fast_path = false` keeps a peer's sessions there without IPsec.
//!
//! The core is told interface names by the driver
//! ([`Core::set_interface_name`]) when it asks for them
//! ([`Core::wants_interface_name`]); an index is never reused for another
//! device while the LNS runs (the kernel counts them up), so a name, once
//! learned, stays right unless the device is renamed.

use std::net::{IpAddr, SocketAddr};

use lns_bpf::abi;

use super::{Core, Notice};
use crate::l2tp::PeerConfig;

/// Interface names the driver told the core; `None`: the index has no name
/// (the device went away before it was asked).
#[derive(Debug, Default)]
pub(super) struct InterfaceNames(std::collections::BTreeMap<u32, Option<String>>);

impl Core {
    /// The first `[[peer]]` entry `ip` matches, as the endpoint picks it.
    fn peer_entry(&self, ip: IpAddr) -> Option<&PeerConfig> {
        self.cfg.endpoint.peers.iter().find(|p| p.matches(ip))
    }

    fn ipsec_anywhere(&self) -> bool {
        self.cfg.endpoint.peers.iter().any(|p| p.ipsec_interfaces.is_some())
    }

    /// Does the core need the name of interface `ifindex` (a peer requires
    /// IPsec, and the name is not known yet)?
    pub fn wants_interface_name(&self, ifindex: u32) -> bool {
        !self.interface_names.0.contains_key(&ifindex) && self.ipsec_anywhere()
    }

    /// The name of interface `ifindex`, or that it has none.
    pub fn set_interface_name(&mut self, ifindex: u32, name: Option<String>) {
        self.interface_names.0.insert(ifindex, name);
    }

    /// A datagram from `from` that arrived through `ifindex`: true when
    /// its peer requires IPsec and this is not one of the peer's IPsec
    /// interfaces (counted, noticed): the caller drops it.
    pub(super) fn refuse_clear_l2tp(&mut self, from: SocketAddr, ifindex: Option<u32>) -> bool {
        let Some(allowed) = self.peer_entry(from.ip()).and_then(|p| p.ipsec_interfaces.as_ref()) else {
            return false;
        };
        let name = ifindex.and_then(|i| self.interface_names.0.get(&i)).and_then(|n| n.as_deref());
        if name.is_some_and(|n| allowed.iter().any(|a| a == n)) {
            return false;
        }
        let interface = name.map(str::to_string);
        self.drop_datagram("ipsec_required");
        self.notice(Notice::ClearL2tpRefused { peer: from, ifindex, interface });
        true
    }

    /// Are the sessions of tunnels from `peer` kept off the fast path?
    pub(super) fn slow_path_only(&self, peer: IpAddr) -> bool {
        self.peer_entry(peer).is_some_and(PeerConfig::slow_path_only)
    }

    /// The data-plane entry's flag for tunnels from `peer`.
    pub(super) fn slow_path_flag(&self, peer: IpAddr) -> u32 {
        if self.slow_path_only(peer) {
            abi::Session::SLOW_PATH
        } else {
            0
        }
    }
}
