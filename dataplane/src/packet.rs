//! Per-packet work of the fast path, on plain byte buffers so that it is
//! tested and benchmarked without sockets.
//!
//! A received frame sits in its buffer as `lns_xdp_meta` followed by the
//! Ethernet frame (the XDP program prepends the metadata). The functions here
//! rewrite the buffer in place so that it starts with the frame to send:
//! - [`decap`]: L2TP data from a LAC → the subscriber's IP packet behind a
//!   new Ethernet header toward the core next hop;
//! - [`encap`]: an IP packet for a subscriber → Ethernet/IP/UDP/L2TP/PPP
//!   toward the session's LAC.
//!
//! Both act as a router would: hop limit decremented (and the packet dropped
//! at 1), TCP MSS clamped on SYN, and downstream packets larger than the
//! session MTU answered with ICMP "fragmentation needed" / "packet too big"
//! or fragmented when IPv4 allows it.

use lns_bpf::abi::{Session, XdpMeta};
use lns_wire::checksum;
use lns_wire::l2tp;
use lns_wire::tcp;

pub const META_LEN: usize = XdpMeta::ROOM;
pub const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
/// RFC 1812 4.3.2.3: quote as much of the original as fits in 576 bytes.
const ICMPV4_QUOTE_MAX: usize = 576 - 20 - 8;
/// RFC 4443 2.4(c): the ICMPv6 error must not exceed the minimum MTU.
const ICMPV6_QUOTE_MAX: usize = 1280 - 40 - 8;

/// Why a frame was not forwarded. Every one is a per-worker counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Metadata or headers inconsistent with what the program checked.
    Malformed,
    /// The session slot is no longer forwarding.
    SessionGone,
    /// TTL / hop limit would reach zero.
    TtlExceeded,
    /// Bigger than the session MTU and not answerable (e.g. an ICMP error).
    TooBig,
    /// No room in the frame for the new headers.
    NoRoom,
    /// Upstream, checked here ([`XdpMeta::CHECK`]): the slot's session has
    /// other L2TP ids (or none).
    UnknownSession,
    /// Upstream, checked here: not from the session's LAC address and port.
    PeerMismatch,
    /// Upstream, checked here: the subscriber's source is not the session's.
    Spoofed,
    /// Downstream, checked here (a pool unit): the unit names no session,
    /// or one that does not own the destination.
    NoSubscriber,
    /// Downstream, checked here: the LAC's next hop has no neighbour entry
    /// yet (recorded for the data plane to resolve).
    NoNeighbour,
    /// Downstream, checked here: the kernel has no usable route to the LAC
    /// (blackhole, unreachable, prohibit, or none).
    NoRoute,
    /// Over the session's rate limit (both directions), or downstream with
    /// shaping on, beyond what its queue holds: also counted per session.
    Policed,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::SessionGone,
        DropReason::TtlExceeded,
        DropReason::TooBig,
        DropReason::NoRoom,
        DropReason::UnknownSession,
        DropReason::PeerMismatch,
        DropReason::Spoofed,
        DropReason::NoSubscriber,
        DropReason::NoNeighbour,
        DropReason::NoRoute,
        DropReason::Policed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::SessionGone => "session_gone",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::TooBig => "too_big",
            DropReason::NoRoom => "no_room",
            DropReason::UnknownSession => "unknown_session",
            DropReason::PeerMismatch => "peer_mismatch",
            DropReason::Spoofed => "spoofed",
            DropReason::NoSubscriber => "no_subscriber",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::NoRoute => "no_route",
            DropReason::Policed => "policed",
        }
    }
}

/// What to do with the buffer after processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send `len` bytes from `buf[start..]` out of the egress interface
    /// given in the metadata (the worker moves its descriptor's start
    /// there: headers are stripped and prepended in place, the packet is
    /// not moved).
    Forward {
        start: usize,
        len: usize,
    },
    /// Send `len` bytes back out of the interface the frame came in on (an
    /// ICMP error to the sender).
    Reply {
        len: usize,
    },
    /// IPv4 without DF over the session MTU: fragment the subscriber packet
    /// at `inner` (offset, length) in the buffer, then encapsulate each piece.
    Fragment {
        inner: usize,
        inner_len: usize,
    },
    Drop(DropReason),
}

/// TCP MSS clamping policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssClamp {
    Off,
    /// Clamp to the session MTU minus IP and TCP headers.
    Auto,
    /// Clamp to this value (IPv4; IPv6 gets 20 less).
    Fixed(u16),
}

/// Per-worker state the encapsulation needs.
#[derive(Clone, Debug, Default)]
pub struct EncapState {
    /// IPv4 identification of outer headers (per worker; DF is set, so
    /// uniqueness only matters for the rare fragment).
    pub ip_id: u16,
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Length of the IP packet starting at `ip` (from its header), checked
/// against what the buffer holds.
fn ip_len(b: &[u8], ip: usize, end: usize, version: u8) -> Option<usize> {
    let len = match version {
        4 => be16(b, ip + 2)? as usize,
        6 => 40 + be16(b, ip + 4)? as usize,
        _ => return None,
    };
    (ip + len <= end && len >= if version == 4 { 20 } else { 40 }).then_some(len)
}

/// Length of the subscriber's IP packet in a received frame (`buf[at..len]`
/// as for [`decap`] and [`encap`]): what a rate limit counts. None when the
/// header disagrees with the frame (decap and encap drop it).
pub fn inner_len(buf: &[u8], at: usize, len: usize, meta: &XdpMeta) -> Option<usize> {
    ip_len(buf, at + META_LEN + meta.inner_offset as usize, len.min(buf.len()), meta.ip_version)
}

/// Decrements the TTL / hop limit; false when it would expire.
fn hop(b: &mut [u8], ip: usize, version: u8) -> bool {
    if version == 4 {
        let ttl = b[ip + 8];
        if ttl <= 1 {
            return false;
        }
        let old = be16(b, ip + 8).unwrap_or(0);
        b[ip + 8] = ttl - 1;
        let new = be16(b, ip + 8).unwrap_or(0);
        let c = be16(b, ip + 10).unwrap_or(0);
        put16(b, ip + 10, checksum::replace16(c, old, new));
    } else {
        let hl = b[ip + 7];
        if hl <= 1 {
            return false;
        }
        b[ip + 7] = hl - 1;
    }
    true
}

fn mss_for(clamp: MssClamp, mtu: u16, version: u8) -> Option<u16> {
    let hdrs = if version == 4 { 40 } else { 60 };
    match clamp {
        MssClamp::Off => None,
        MssClamp::Auto => Some(mtu.saturating_sub(hdrs)),
        MssClamp::Fixed(v) => Some(if version == 4 { v } else { v.saturating_sub(20) }),
    }
}

fn write_eth(b: &mut [u8], at: usize, dmac: &[u8; 6], smac: &[u8; 6], ethertype: u16) {
    b[at..at + 6].copy_from_slice(dmac);
    b[at + 6..at + 12].copy_from_slice(smac);
    put16(b, at + 12, ethertype);
}

/// Does `addr` fall in `prefix`/`len` (a zero length holds nothing)?
fn in_prefix(addr: &[u8], prefix: &[u8; 16], len: u8) -> bool {
    let Ok(addr) = <[u8; 16]>::try_from(addr) else { return false };
    if len == 0 || len > 128 {
        return false;
    }
    // As integers, one masked compare (a compare of `len / 8` bytes was a
    // call to memcmp per frame).
    let mask = u128::MAX << (128 - u32::from(len));
    (u128::from_be_bytes(addr) ^ u128::from_be_bytes(*prefix)) & mask == 0
}

/// The program's checks of an upstream frame it sent unchecked
/// ([`XdpMeta::CHECK`]: a fast slot, whose session it did not read), made
/// on the session the worker reads anyway. `frame` starts at the Ethernet
/// header. The session in the slot must carry the frame's L2TP ids, the
/// frame must come from the session's LAC address and port, the session
/// must be forwarding, and the subscriber's source must be the session's
/// IPv4 address or lie in its SLAAC or delegated prefix: a session with any
/// other address (a framed route) is never a fast slot, so these are all
/// the addresses it owns.
pub fn check_upstream(frame: &[u8], meta: &XdpMeta, s: &Session) -> Result<(), DropReason> {
    let ids = meta.l2tp_ids as usize;
    let tunnel = be16(frame, ids).ok_or(DropReason::Malformed)?;
    let session = be16(frame, ids + 2).ok_or(DropReason::Malformed)?;
    if s.state == lns_bpf::abi::SessionState::Free as u32
        || s.local_tunnel_id != tunnel
        || s.local_session_id != session
    {
        return Err(DropReason::UnknownSession);
    }
    let (l3, l4) = (meta.outer_l3 as usize, meta.outer_l4 as usize);
    let peer = match meta.outer_ip_version {
        4 => {
            let src = frame.get(l3 + 12..l3 + 16).ok_or(DropReason::Malformed)?;
            let mut mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
            mapped[12..].copy_from_slice(src);
            s.peer_addr == mapped
        }
        6 => {
            let src = frame.get(l3 + 8..l3 + 24).ok_or(DropReason::Malformed)?;
            <[u8; 16]>::try_from(src).is_ok_and(|src| src == s.peer_addr)
        }
        _ => return Err(DropReason::Malformed),
    };
    if !peer || be16(frame, l4).ok_or(DropReason::Malformed)? != s.peer_port.to_host() {
        return Err(DropReason::PeerMismatch);
    }
    if s.state != lns_bpf::abi::SessionState::Forwarding as u32 {
        return Err(DropReason::SessionGone);
    }
    if !owns(frame, meta, s, Address::Source)? {
        return Err(DropReason::Spoofed);
    }
    Ok(())
}

/// Which address of the subscriber packet [`owns`] looks at.
#[derive(Clone, Copy)]
enum Address {
    Source,
    Destination,
}

/// Is the subscriber packet's source or destination one of the session's
/// own addresses: its IPv4 address, or inside its SLAAC or delegated prefix?
fn owns(frame: &[u8], meta: &XdpMeta, s: &Session, which: Address) -> Result<bool, DropReason> {
    let ip = meta.inner_offset as usize;
    let dst = matches!(which, Address::Destination);
    match meta.ip_version {
        4 => {
            let at = ip + if dst { 16 } else { 12 };
            Ok(s.ipv4 != [0; 4] && frame.get(at..at + 4).ok_or(DropReason::Malformed)? == s.ipv4)
        }
        6 => {
            let at = ip + if dst { 24 } else { 8 };
            let a = frame.get(at..at + 16).ok_or(DropReason::Malformed)?;
            Ok(in_prefix(a, &s.ipv6_prefix, s.ipv6_prefix_len)
                || in_prefix(a, &s.delegated_prefix, s.delegated_prefix_len))
        }
        _ => Err(DropReason::Malformed),
    }
}

/// The program's check of a downstream frame it sent unchecked
/// ([`XdpMeta::CHECK`]: a pool unit, whose session it did not read), made
/// against the session the unit names: the session must be forwarding and
/// the destination must be its IPv4 address or lie in its SLAAC or
/// delegated prefix (a unit is only ever one of those).
pub fn check_downstream(frame: &[u8], meta: &XdpMeta, s: &Session) -> Result<(), DropReason> {
    if s.state != lns_bpf::abi::SessionState::Forwarding as u32 {
        return Err(DropReason::SessionGone);
    }
    if !owns(frame, meta, s, Address::Destination)? {
        return Err(DropReason::NoSubscriber);
    }
    Ok(())
}

/// LAC → core. `buf[at..len]` holds the metadata and the received frame;
/// `buf` may be longer (the frame's capacity). The new Ethernet header is
/// written over the end of the outer headers, right before the subscriber
/// packet, which stays where it is.
pub fn decap(buf: &mut [u8], at: usize, len: usize, meta: &XdpMeta, clamp: MssClamp, mtu: u16) -> Outcome {
    let len = len.min(buf.len());
    let ip = at + META_LEN + meta.inner_offset as usize;
    let v = meta.ip_version;
    let Some(ilen) = ip_len(buf, ip, len, v) else { return Outcome::Drop(DropReason::Malformed) };
    if !hop(buf, ip, v) {
        return Outcome::Drop(DropReason::TtlExceeded);
    }
    if let Some(mss) = mss_for(clamp, mtu, v) {
        tcp::clamp_mss_at(buf, ip, ilen, mss);
    }
    // The metadata and the Ethernet header come before the subscriber
    // packet, so there are always more than 14 bytes in front of it.
    let start = ip - ETH_LEN;
    write_eth(buf, start, &meta.dmac, &meta.smac, if v == 4 { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 });
    Outcome::Forward { start, len: ETH_LEN + ilen }
}

/// Length of the headers [`encap`] puts before the subscriber packet.
pub fn encap_overhead(s: &Session) -> usize {
    let outer_v4 = lns_bpf::abi::unmap(s.peer_addr).is_ipv4();
    let l2tp = 6
        + if s.flags & Session::LENGTH != 0 { 2 } else { 0 }
        + if s.flags & Session::SEQUENCING != 0 { 4 } else { 0 };
    let ppp =
        if s.flags & Session::ACFC != 0 { 0 } else { 2 } + if s.flags & Session::PFC != 0 { 1 } else { 2 };
    ETH_LEN + if outer_v4 { 20 } else { 40 } + 8 + l2tp + ppp
}

/// Core → LAC. `buf[at..len]` holds the metadata and the received frame;
/// the headers go into the bytes before the subscriber packet (the worker
/// leaves room before the metadata). `ns` is the next data-message Ns when
/// the session sequences.
#[allow(clippy::too_many_arguments)]
pub fn encap(
    buf: &mut [u8],
    at: usize,
    len: usize,
    meta: &XdpMeta,
    s: &Session,
    clamp: MssClamp,
    ns: Option<u16>,
    st: &mut EncapState,
) -> Outcome {
    let len = len.min(buf.len());
    let ip = at + META_LEN + meta.inner_offset as usize;
    let v = meta.ip_version;
    let Some(ilen) = ip_len(buf, ip, len, v) else { return Outcome::Drop(DropReason::Malformed) };
    if ilen > s.mtu as usize {
        return too_big(buf, at, ip, ilen, meta, s.mtu);
    }
    if !hop(buf, ip, v) {
        return Outcome::Drop(DropReason::TtlExceeded);
    }
    if let Some(mss) = mss_for(clamp, s.mtu, v) {
        tcp::clamp_mss_at(buf, ip, ilen, mss);
    }
    encap_at(buf, ip, ilen, v, meta, s, ns, st)
}

/// Encapsulates the subscriber packet at `buf[ip..ip + ilen]` (already
/// routed: hop limit done): the headers are written right before it when
/// there is room, else the packet is moved so that the frame starts at
/// `buf[0]`.
#[allow(clippy::too_many_arguments)]
pub fn encap_at(
    buf: &mut [u8],
    ip: usize,
    ilen: usize,
    v: u8,
    meta: &XdpMeta,
    s: &Session,
    ns: Option<u16>,
    st: &mut EncapState,
) -> Outcome {
    let hdr = encap_overhead(s);
    let base = match ip.checked_sub(hdr) {
        Some(base) => base,
        None => {
            if hdr + ilen > buf.len() {
                return Outcome::Drop(DropReason::NoRoom);
            }
            buf.copy_within(ip..ip + ilen, hdr);
            0
        }
    };

    let peer = lns_bpf::abi::unmap(s.peer_addr);
    let outer_v4 = peer.is_ipv4();
    write_eth(buf, base, &meta.dmac, &meta.smac, if outer_v4 { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 });
    let l3 = base + ETH_LEN;
    let l4 = l3 + if outer_v4 { 20 } else { 40 };
    let udp_len = base + hdr - l4 + ilen;
    if outer_v4 {
        let tot = (udp_len + 20) as u16;
        st.ip_id = st.ip_id.wrapping_add(1);
        let h = &mut buf[l3..l3 + 20];
        h[0] = 0x45;
        h[1] = 0;
        h[2..4].copy_from_slice(&tot.to_be_bytes());
        h[4..6].copy_from_slice(&st.ip_id.to_be_bytes());
        h[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF: the PPP MTU was enforced above
        h[8] = 64;
        h[9] = IPPROTO_UDP;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&s.local_addr[12..16]);
        h[16..20].copy_from_slice(&s.peer_addr[12..16]);
        let c = checksum::of(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        let h = &mut buf[l3..l3 + 40];
        h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        h[6] = IPPROTO_UDP;
        h[7] = 64;
        h[8..24].copy_from_slice(&s.local_addr);
        h[24..40].copy_from_slice(&s.peer_addr);
    }
    // UDP
    buf[l4..l4 + 2].copy_from_slice(&s.local_port.to_host().to_be_bytes());
    buf[l4 + 2..l4 + 4].copy_from_slice(&s.peer_port.to_host().to_be_bytes());
    put16(buf, l4 + 4, udp_len as u16);
    put16(buf, l4 + 6, 0);
    // L2TP data message header (RFC 2661 3.1)
    let mut o = l4 + 8;
    let mut flags = l2tp::DATA;
    if s.flags & Session::LENGTH != 0 {
        flags |= l2tp::flags::LENGTH;
    }
    if s.flags & Session::SEQUENCING != 0 {
        flags |= l2tp::flags::SEQUENCE;
    }
    put16(buf, o, flags);
    o += 2;
    if s.flags & Session::LENGTH != 0 {
        put16(buf, o, (udp_len - 8) as u16);
        o += 2;
    }
    put16(buf, o, s.peer_tunnel_id);
    put16(buf, o + 2, s.peer_session_id);
    o += 4;
    if s.flags & Session::SEQUENCING != 0 {
        put16(buf, o, ns.unwrap_or(0));
        put16(buf, o + 2, 0); // Nr is unused in data messages (RFC 2661 5.8)
        o += 4;
    }
    // PPP
    if s.flags & Session::ACFC == 0 {
        buf[o] = 0xff;
        buf[o + 1] = 0x03;
        o += 2;
    }
    let proto = if v == 4 { PPP_IPV4 } else { PPP_IPV6 };
    if s.flags & Session::PFC != 0 {
        buf[o] = proto as u8;
        o += 1;
    } else {
        put16(buf, o, proto);
        o += 2;
    }
    debug_assert_eq!(o, base + hdr);
    let total = base + hdr + ilen;
    // The UDP checksum is mandatory over IPv6 and optional over IPv4
    // (RFC 768), where the session says whether to compute it.
    if !outer_v4 || s.flags & Session::UDP_CSUM_ZERO == 0 {
        // The pseudo-header's addresses are summed where they lie in the
        // outer header just written.
        let mut sum = if outer_v4 {
            checksum::add(0, &buf[l3 + 12..l3 + 20])
        } else {
            checksum::add(0, &buf[l3 + 8..l3 + 40])
        };
        sum = checksum::add_word(sum, IPPROTO_UDP as u64 + udp_len as u64);
        sum = checksum::add(sum, &buf[l4..total]);
        put16(buf, l4 + 6, checksum::udp_field(checksum::fold(sum)));
    }
    Outcome::Forward { start: base, len: hdr + ilen }
}

/// A downstream packet over the session MTU: ICMP back to its source, or
/// fragmentation for IPv4 without DF.
fn too_big(buf: &mut [u8], at: usize, ip: usize, ilen: usize, meta: &XdpMeta, mtu: u16) -> Outcome {
    let v = meta.ip_version;
    if v == 4 {
        let frag = be16(buf, ip + 6).unwrap_or(0);
        if frag & 0x4000 == 0 {
            return Outcome::Fragment { inner: ip, inner_len: ilen };
        }
        if is_icmp_error(buf, ip, v) {
            return Outcome::Drop(DropReason::TooBig);
        }
        icmp_reply(buf, at, ip, ilen, meta, 3, 4, mtu as u32)
    } else {
        if is_icmp_error(buf, ip, v) {
            return Outcome::Drop(DropReason::TooBig);
        }
        icmp_reply(buf, at, ip, ilen, meta, 2, 0, mtu as u32)
    }
}

/// RFC 1122 3.2.2 / RFC 4443 2.4(e): never answer an ICMP error with one.
fn is_icmp_error(b: &[u8], ip: usize, v: u8) -> bool {
    if v == 4 {
        let ihl = ((b[ip] & 0x0f) as usize) * 4;
        b[ip + 9] == IPPROTO_ICMP && matches!(b.get(ip + ihl), Some(3 | 4 | 5 | 11 | 12))
    } else {
        b[ip + 6] == IPPROTO_ICMPV6 && matches!(b.get(ip + 40), Some(t) if *t < 128)
    }
}

/// Turns the buffer into an ICMP error (IPv4 type/code, or ICMPv6 type) from
/// us to the packet's source, quoting the packet, sent back the way it came.
/// The LNS answers from the address the packet was sent to, as the router on
/// the path to that destination.
#[allow(clippy::too_many_arguments)]
fn icmp_reply(
    buf: &mut [u8],
    at: usize,
    ip: usize,
    ilen: usize,
    meta: &XdpMeta,
    ty: u8,
    code: u8,
    mtu: u32,
) -> Outcome {
    // Back the way it came: the original Ethernet source is the next hop.
    let eth = at + META_LEN;
    let mut smac = [0u8; 6];
    let mut dmac = [0u8; 6];
    dmac.copy_from_slice(&buf[eth + 6..eth + 12]);
    smac.copy_from_slice(&buf[eth..eth + 6]);
    let v = meta.ip_version;
    if v == 4 {
        let quote = ilen.min(ICMPV4_QUOTE_MAX);
        let mut src = [0u8; 4];
        let mut dst = [0u8; 4];
        src.copy_from_slice(&buf[ip + 12..ip + 16]);
        dst.copy_from_slice(&buf[ip + 16..ip + 20]);
        let out_ip = ETH_LEN;
        let icmp = out_ip + 20;
        let total = 20 + 8 + quote;
        if icmp + 8 + quote > buf.len() {
            return Outcome::Drop(DropReason::NoRoom);
        }
        buf.copy_within(ip..ip + quote, icmp + 8);
        write_eth(buf, 0, &dmac, &smac, ETHERTYPE_IPV4);
        let h = &mut buf[out_ip..out_ip + 20];
        h[0] = 0x45;
        h[1] = 0xc0; // internetwork control
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..8].copy_from_slice(&[0, 0, 0, 0]);
        h[8] = 64;
        h[9] = IPPROTO_ICMP;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&dst);
        h[16..20].copy_from_slice(&src);
        let c = checksum::of(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let m = &mut buf[icmp..icmp + 8];
        m[0] = ty;
        m[1] = code;
        m[2..4].copy_from_slice(&[0, 0]);
        m[4..6].copy_from_slice(&[0, 0]);
        m[6..8].copy_from_slice(&(mtu as u16).to_be_bytes()); // RFC 1191 next-hop MTU
        let c = checksum::of(&buf[icmp..icmp + 8 + quote]);
        put16(buf, icmp + 2, c);
        Outcome::Reply { len: ETH_LEN + total }
    } else {
        let quote = ilen.min(ICMPV6_QUOTE_MAX);
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&buf[ip + 8..ip + 24]);
        dst.copy_from_slice(&buf[ip + 24..ip + 40]);
        let out_ip = ETH_LEN;
        let icmp = out_ip + 40;
        let plen = 8 + quote;
        if icmp + plen > buf.len() {
            return Outcome::Drop(DropReason::NoRoom);
        }
        buf.copy_within(ip..ip + quote, icmp + 8);
        write_eth(buf, 0, &dmac, &smac, ETHERTYPE_IPV6);
        let h = &mut buf[out_ip..out_ip + 40];
        h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
        h[6] = IPPROTO_ICMPV6;
        h[7] = 64;
        h[8..24].copy_from_slice(&dst);
        h[24..40].copy_from_slice(&src);
        let m = &mut buf[icmp..icmp + 8];
        m[0] = ty;
        m[1] = code;
        m[2..4].copy_from_slice(&[0, 0]);
        m[4..8].copy_from_slice(&mtu.to_be_bytes());
        let mut sum = checksum::add(0, &buf[out_ip + 8..out_ip + 40]);
        sum = checksum::add_word(sum, plen as u64 + IPPROTO_ICMPV6 as u64);
        sum = checksum::add(sum, &buf[icmp..icmp + plen]);
        put16(buf, icmp + 2, checksum::fold(sum));
        Outcome::Reply { len: ETH_LEN + 40 + plen }
    }
}

/// Splits the IPv4 packet `pkt` into fragments whose IP length is at most
/// `mtu` (RFC 791), handing each to `emit`. Options are copied into every
/// fragment (simplification: RFC 791 copies only those with the copy bit;
/// subscribers' packets carry none in practice). Returns the count.
pub fn fragment_v4(pkt: &[u8], mtu: u16, mut emit: impl FnMut(&[u8])) -> usize {
    let Some(&b0) = pkt.first() else { return 0 };
    let ihl = ((b0 & 0x0f) as usize) * 4;
    if ihl < 20 || pkt.len() < ihl {
        return 0;
    }
    let payload = &pkt[ihl..];
    let per = ((mtu as usize).saturating_sub(ihl)) & !7;
    if per == 0 {
        return 0;
    }
    let orig_frag = be16(pkt, 6).unwrap_or(0);
    let base_off = (orig_frag & 0x1fff) as usize * 8;
    let orig_mf = orig_frag & 0x2000;
    let mut out = [0u8; 2048];
    let mut n = 0;
    let mut off = 0;
    while off < payload.len() {
        let take = per.min(payload.len() - off);
        let last = off + take == payload.len();
        let total = ihl + take;
        if total > out.len() {
            return n;
        }
        out[..ihl].copy_from_slice(&pkt[..ihl]);
        out[ihl..total].copy_from_slice(&payload[off..off + take]);
        put16(&mut out, 2, total as u16);
        let mf = if last { orig_mf } else { 0x2000 };
        put16(&mut out, 6, mf | (((base_off + off) / 8) as u16 & 0x1fff));
        put16(&mut out, 10, 0);
        let c = checksum::of(&out[..ihl]);
        put16(&mut out, 10, c);
        emit(&out[..total]);
        n += 1;
        off += take;
    }
    n
}

#[cfg(test)]
mod tests;
