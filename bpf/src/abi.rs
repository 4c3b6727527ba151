//! Rust mirror of `include/lns_abi.h`, the layout of every map shared with the
//! XDP program.
//!
//! The header is the one definition. libbpf-cargo generates the skeleton's
//! `types` module from the BTF that clang emits for it; the `layout!` checks
//! at the bottom of this file compare every size and field offset here with
//! those generated types at compile time, so a change on one side that is not
//! made on the other does not build.
//!
//! Byte order follows the header: ids in host order, addresses and ports in
//! network order ([`Be16`], `[u8; 4]`, `[u8; 16]`), IPv4 inside 16-byte fields
//! as IPv4-mapped IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytemuck::{Pod, Zeroable};

use crate::skel::types as c;

/// `LNS_ABI_VERSION`: stored in [`Config::abi_version`] by the loader.
pub const ABI_VERSION: u32 = 11;
/// Default size of the session table (`LNS_DEFAULT_MAX_SESSIONS`).
pub const DEFAULT_MAX_SESSIONS: u32 = 65536;
/// `LNS_MAX_IFACES`: interfaces one instance can be attached to.
pub const MAX_IFACES: u32 = 16;
/// `LNS_MAX_QUEUES`: rx queues per interface with an AF_XDP socket.
pub const MAX_QUEUES: u32 = 64;
/// `LNS_XSK_SLOTS`: size of the XSKMAP.
pub const XSK_SLOTS: u32 = MAX_IFACES * MAX_QUEUES;
/// `LNS_MAX_PREFIXES`: least entries of each LPM trie (the loader gives
/// two per session when that is more).
pub const MAX_PREFIXES: u32 = 65536;
/// `LNS_MAX_L2TP_OFFSET`: largest L2TP Offset Size the program follows.
pub const MAX_L2TP_OFFSET: u16 = 2048;
/// The IANA port of L2TP.
pub const L2TP_PORT: u16 = 1701;

/// A 16-bit field kept in network byte order, as `__be16` in the header.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Be16(u16);

impl Be16 {
    pub const fn from_host(v: u16) -> Self {
        Be16(v.to_be())
    }
    pub const fn to_host(self) -> u16 {
        u16::from_be(self.0)
    }
}

/// `struct lns_config`, the single entry of `lns_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Config {
    /// [`ABI_VERSION`] of the loader that wrote the maps.
    pub abi_version: u32,
    /// `LNS_CFG_*` bits, see [`Config::PASS_UNKNOWN_SESSION`].
    pub flags: u32,
    /// UDP port of L2TP at the LNS.
    pub l2tp_port: Be16,
    pub _pad0: u16,
    /// How often the data plane moves [`Config::nh_epoch`] (ms), so how
    /// long a next hop from bpf_fib_lookup is reused at most; 0 looks up
    /// every frame. A route or neighbour change is seen within this time.
    pub nh_cache_ms: u32,
    /// Bank mask of the direct session slots ([`direct_slot`]); set by the
    /// loader from the table's size ([`session_bank_mask`]).
    pub session_bank_mask: u32,
    /// Next hops cached under another epoch are stale: bumping it flushes
    /// every CPU's next-hop cache.
    pub nh_epoch: u32,
    /// The flat subscriber tables hold `2^(32 - sub_flat_shift)` entries
    /// ([`flat_shift`]); 0: none, the hash maps only.
    pub sub_flat_shift: u32,
    /// Subscriber pools in use, `pools[..pool_count]`.
    pub pool_count: u32,
    /// Subscriber pools ([`Pool`]).
    pub pools: [Pool; MAX_POOLS],
    /// The control plane's own ports of tunnels, host order (see
    /// [`Config::set_tunnel_ports`]); L2TP arrives on these and on
    /// [`Config::l2tp_port`].
    pub tunnel_port_first: u16,
    pub tunnel_port_last: u16,
    pub _pad1: u32,
}

impl Config {
    /// L2TP also arrives on `first..=last` (None: on `l2tp_port` alone).
    pub fn set_tunnel_ports(&mut self, range: Option<(u16, u16)>) {
        (self.tunnel_port_first, self.tunnel_port_last) = range.filter(|(f, l)| f <= l).unwrap_or((0, 0));
    }

    /// The range [`Config::set_tunnel_ports`] set.
    pub fn tunnel_ports(&self) -> Option<(u16, u16)> {
        (self.tunnel_port_first <= self.tunnel_port_last && self.tunnel_port_last != 0)
            .then_some((self.tunnel_port_first, self.tunnel_port_last))
    }

    /// The subscriber pools in use.
    pub fn pools(&self) -> &[Pool] {
        &self.pools[..(self.pool_count as usize).min(MAX_POOLS)]
    }
}

/// `LNS_MAX_POOLS`: subscriber pools one instance declares.
pub const MAX_POOLS: usize = 8;
/// `LNS_MAX_POOL_UNIT_BITS`: a pool holds at most 2^24 units.
pub const MAX_POOL_UNIT_BITS: u8 = 24;
/// Default `--pool-units`: entries of `lns_pool_bits` and
/// `lns_pool_sessions` shared by all pools (128 KiB of bits, 4 MiB of
/// session indices).
pub const DEFAULT_POOL_UNITS: u32 = 1 << 20;

/// `struct lns_pool`: a prefix that subscribers get their own addresses
/// from, one unit each (IPv4 /32, IPv6 /64 or a delegated length). See
/// `lns_pool_bits` in `lns_abi.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Pool {
    /// First address as a host-order number (IPv4 the address, IPv6 the
    /// top 64 bits).
    pub net: u64,
    pub units: u32,
    /// The pool's unit 0 in `lns_pool_bits` / `lns_pool_sessions`.
    pub base: u32,
    pub ip_version: u8,
    pub prefix_len: u8,
    pub unit_len: u8,
    pub unit_shift: u8,
    pub _pad: u32,
}

/// A subscriber pool as an operator writes it: `PREFIX/LEN` (IPv4, one /32
/// per subscriber; IPv6, one /64) or `PREFIX/LEN,UNIT` (IPv6 delegated
/// prefixes of length UNIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub prefix: IpAddr,
    pub prefix_len: u8,
    pub unit_len: u8,
}

impl std::str::FromStr for PoolSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<PoolSpec, String> {
        let (net, unit) = match spec.split_once(',') {
            Some((n, u)) => {
                (n, Some(u.trim().parse::<u8>().map_err(|_| format!("bad unit length in {spec:?}"))?))
            }
            None => (spec, None),
        };
        let (addr, len) =
            net.split_once('/').ok_or_else(|| format!("{spec:?}: expected PREFIX/LEN[,UNIT]"))?;
        let prefix: IpAddr = addr.trim().parse().map_err(|_| format!("bad address in {spec:?}"))?;
        let prefix_len: u8 = len.trim().parse().map_err(|_| format!("bad prefix length in {spec:?}"))?;
        let unit_len = unit.unwrap_or(if prefix.is_ipv4() { 32 } else { 64 });
        let p = PoolSpec { prefix, prefix_len, unit_len };
        p.to_pool(0)?;
        Ok(p)
    }
}

impl std::fmt::Display for PoolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{},{}", self.prefix, self.prefix_len, self.unit_len)
    }
}

impl PoolSpec {
    /// Units the pool holds.
    pub fn units(&self) -> u32 {
        1u32 << (self.unit_len - self.prefix_len).min(31)
    }

    /// The ABI entry, its unit 0 at `base`: refuses what the program could
    /// not use (host bits set, a unit shorter than the prefix or, for IPv6,
    /// longer than /64, more than 2^24 units).
    pub fn to_pool(&self, base: u32) -> Result<Pool, String> {
        let (version, width, num) = match self.prefix {
            IpAddr::V4(a) => (4u8, 32u8, u64::from(u32::from(a))),
            IpAddr::V6(a) => (6u8, 64u8, (u128::from(a) >> 64) as u64),
        };
        if version == 4 && self.unit_len != 32 {
            return Err(format!("IPv4 pool {self}: the unit is one address (/32)"));
        }
        if self.prefix_len == 0 || self.unit_len > width || self.prefix_len > self.unit_len {
            return Err(format!("pool {self}: needs 0 < length <= unit <= {width}"));
        }
        if self.unit_len - self.prefix_len > MAX_POOL_UNIT_BITS {
            return Err(format!("pool {self}: more than 2^{MAX_POOL_UNIT_BITS} units"));
        }
        let host_bits = match self.prefix {
            // A /32 has no host bits (and a shift by 128 overflows).
            IpAddr::V4(a) => {
                u128::from(u32::from(a)) & u128::MAX.checked_shr(96 + u32::from(self.prefix_len)).unwrap_or(0)
            }
            IpAddr::V6(a) => u128::from(a) & (u128::MAX >> self.prefix_len),
        };
        if host_bits != 0 {
            return Err(format!("pool {self}: bits set past the prefix length"));
        }
        Ok(Pool {
            net: num,
            units: self.units(),
            base,
            ip_version: version,
            prefix_len: self.prefix_len,
            unit_len: self.unit_len,
            unit_shift: width - self.unit_len,
            _pad: 0,
        })
    }
}

impl Pool {
    /// The unit (its index in `lns_pool_bits`) that the prefix `addr`/`len`
    /// is exactly, if it is one of this pool's. Bits of `addr` past `len`
    /// are ignored, as the address maps' keys ignore them.
    pub fn unit_of(&self, addr: IpAddr, len: u8) -> Option<u32> {
        if len != self.unit_len {
            return None;
        }
        self.unit_at(self.number(addr)?)
    }

    /// The unit the host-order number `num` falls in (the program's
    /// computation), if it is inside this pool.
    pub fn unit_at(&self, num: u64) -> Option<u32> {
        let off = num.wrapping_sub(self.net) >> (self.unit_shift & 63);
        (off < u64::from(self.units)).then(|| self.base + off as u32)
    }

    /// The number the program computes for `addr` (IPv4: the address;
    /// IPv6: its top 64 bits), if `addr` is of this pool's family.
    pub fn number(&self, addr: IpAddr) -> Option<u64> {
        match (addr, self.ip_version) {
            (IpAddr::V4(a), 4) => Some(u64::from(u32::from(a))),
            (IpAddr::V6(a), 6) => Some((u128::from(a) >> 64) as u64),
            _ => None,
        }
    }
}

/// The bank mask for a session table of `max_sessions` slots: the number of
/// 65,536-slot banks that cover it, rounded up to a power of two, minus one.
pub const fn session_bank_mask(max_sessions: u32) -> u32 {
    let banks = max_sessions.div_ceil(65536);
    if banks <= 1 {
        0
    } else {
        banks.next_power_of_two() - 1
    }
}

/// The slot where the program looks first for the session with these local
/// ids (`LNS_DIRECT_SLOT`): `(tunnel_id & mask) << 16 | session_id`. None
/// when it lies beyond the table. Writers put a session there when it is
/// free, so the program finds it without a hash lookup; the control plane
/// allocates session ids so that it is.
pub fn direct_slot(key: SessionKey, max_sessions: u32) -> Option<u32> {
    let mask = session_bank_mask(max_sessions);
    let slot = ((u32::from(key.tunnel_id) & mask) << 16) | u32::from(key.session_id);
    (slot < max_sessions).then_some(slot)
}

/// `struct lns_flat_entry`: one entry of the flat subscriber tables
/// (`lns_sub_v4_flat`, `lns_sub_v6_flat`), open-addressed copies of
/// `lns_sub_v4` and `lns_sub_v6_64` that the program looks in first. See
/// `lns_abi.h` for the rules; writers change an entry with one 8-byte
/// compare-and-swap ([`FlatEntry::to_word`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlatEntry {
    pub tag: u32,
    /// Session index + 1; [`FlatEntry::EMPTY`] or [`FlatEntry::TOMBSTONE`].
    pub session_plus1: u32,
}

impl FlatEntry {
    /// `LNS_FLAT_EMPTY`: never written; a lookup stops here.
    pub const EMPTY: u32 = 0;
    /// `LNS_FLAT_TOMBSTONE`: removed; a lookup goes on.
    pub const TOMBSTONE: u32 = u32::MAX;
    /// `LNS_FLAT_PROBES`: how many slots from its first one an entry may lie.
    pub const PROBES: u32 = 8;
    /// `LNS_FLAT_HASH`: the multiplier of [`flat_first_slot`].
    pub const HASH: u32 = 0x9e37_79b1;

    pub fn new(tag: u32, index: u32) -> FlatEntry {
        FlatEntry { tag, session_plus1: index.wrapping_add(1) }
    }

    /// The session index of a live entry.
    pub fn session(self) -> Option<u32> {
        (self.session_plus1 != Self::EMPTY && self.session_plus1 != Self::TOMBSTONE)
            .then(|| self.session_plus1 - 1)
    }

    /// The entry as the 8-byte word the array holds (memory order).
    pub fn to_word(self) -> u64 {
        u64::from_ne_bytes(bytemuck::cast(self))
    }

    pub fn from_word(w: u64) -> FlatEntry {
        bytemuck::cast(w.to_ne_bytes())
    }
}

/// Entries of each flat subscriber table for a session table of
/// `max_sessions`: a power of two at least twice as large (the load stays
/// under one half, so a lookup mostly reads one cache line).
pub const fn flat_entries(max_sessions: u32) -> u32 {
    let n = if max_sessions < 512 { 512 } else { max_sessions };
    match n.checked_next_power_of_two() {
        Some(p) if p <= 1 << 30 => p * 2,
        _ => 1 << 31,
    }
}

/// [`Config::sub_flat_shift`] for a table of `entries` (a power of two).
pub const fn flat_shift(entries: u32) -> u32 {
    32 - entries.trailing_zeros()
}

/// The tag of an IPv4 subscriber address: its four bytes as the program
/// loads them from the packet.
pub fn flat_tag_v4(addr: std::net::Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// The tag of a /64 (its first eight bytes): the XOR of its two halves as
/// the program loads them.
pub fn flat_tag_v6(net: [u8; 8]) -> u32 {
    let [a, b, c, d, e, f, g, h] = net;
    u32::from_ne_bytes([a, b, c, d]) ^ u32::from_ne_bytes([e, f, g, h])
}

/// The first slot of `tag` in a table with [`Config::sub_flat_shift`] `shift`.
pub fn flat_first_slot(tag: u32, shift: u32) -> u32 {
    tag.wrapping_mul(FlatEntry::HASH) >> shift
}

impl Config {
    /// Pass data messages of unknown sessions to the stack instead of
    /// dropping them (flood protection is off).
    pub const PASS_UNKNOWN_SESSION: u32 = 1 << 0;
    /// `LNS_CFG_WORKER_CHECKS`: L2TP data of a slot whose bit is set in
    /// `lns_fast_slots` goes to the worker unchecked, and the worker checks
    /// it (the program reads no session for it).
    pub const WORKER_CHECKS: u32 = 1 << 2;
}

/// `enum lns_nh_result`: what `lns_nh_resolve` answers.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NhResult {
    Forward = 0,
    NoNeighbour = 1,
    NoRoute = 2,
    NotForwarded = 3,
    BadQuery = 4,
}

impl NhResult {
    pub fn from_raw(v: u32) -> NhResult {
        match v {
            0 => NhResult::Forward,
            1 => NhResult::NoNeighbour,
            2 => NhResult::NoRoute,
            3 => NhResult::NotForwarded,
            _ => NhResult::BadQuery,
        }
    }
}

/// `struct lns_nh_query`: the input and output of `lns_nh_resolve`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NhQuery {
    pub ifindex: u32,
    pub ip_version: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub result: u32,
    pub out_ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

/// `LNS_MARK_*`: why a slot's bit in `lns_fast_slots` must stay clear
/// (`lns_slot_marks`, read and written by userspace only).
pub mod slot_mark {
    /// A session whose direct slot this is lives in another slot.
    pub const DISPLACED: u32 = 1 << 0;
    /// Addresses besides the session's own point at this slot.
    pub const EXTRA: u32 = 1 << 1;
}

/// `struct lns_iface`, value of `lns_ifaces` keyed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Iface {
    /// [`Iface::ACCESS`] and/or [`Iface::CORE`].
    pub roles: u32,
    /// Slot in `lns_xsks` of this interface's rx queue 0.
    pub xsk_base: u32,
}

impl Iface {
    /// LAC-facing: L2TP arrives here.
    pub const ACCESS: u32 = 1 << 0;
    /// Internet-facing: traffic to subscribers arrives here.
    pub const CORE: u32 = 1 << 1;
}

/// `enum lns_session_state`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionState {
    /// Slot unused.
    #[default]
    Free = 0,
    /// The session exists and PPP is negotiating: all its frames go to the
    /// control plane.
    Control = 1,
    /// The NCPs are up: IP goes through the fast path.
    Forwarding = 2,
}

impl SessionState {
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Free),
            1 => Some(Self::Control),
            2 => Some(Self::Forwarding),
            _ => None,
        }
    }
}

/// `struct lns_session`, value of `lns_sessions` keyed by session index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Session {
    // First cache line: what the program reads for every frame.
    /// A [`SessionState`] as u32.
    pub state: u32,
    /// `LNS_SESS_*` bits, see the associated constants.
    pub flags: u32,
    /// Our tunnel id (host order).
    pub local_tunnel_id: u16,
    /// Our session id (host order).
    pub local_session_id: u16,
    /// The LAC's tunnel id, written into data messages we send.
    pub peer_tunnel_id: u16,
    /// The LAC's session id.
    pub peer_session_id: u16,
    /// LAC address of the tunnel (IPv4-mapped for IPv4).
    pub peer_addr: [u8; 16],
    pub peer_port: Be16,
    pub local_port: Be16,
    /// PPP MTU toward the subscriber (the MRU the subscriber negotiated).
    pub mtu: u16,
    pub ipv6_prefix_len: u8,
    pub delegated_prefix_len: u8,
    /// Subscriber IPv4 address, all zero if none.
    pub ipv4: [u8; 4],
    /// Interface through which the LAC is reached.
    pub access_ifindex: u32,
    /// Subscriber IPv6 (SLAAC) prefix, zero length if none.
    pub ipv6_prefix: [u8; 16],
    // Second cache line.
    /// DHCPv6-PD delegated prefix, zero length if none.
    pub delegated_prefix: [u8; 16],
    /// LNS address of the tunnel (IPv4-mapped for IPv4).
    pub local_addr: [u8; 16],
    /// Who wrote the entry: [`Session::OWNER_STATIC`] or
    /// [`Session::OWNER_CONTROL_PLANE`].
    pub owner: u32,
    pub _pad0: u32,
    /// Bumped by the control plane on every reuse of the slot, so a reader
    /// can tell a new session from the old one in the same slot.
    pub generation: u64,
    /// Rate limit toward the subscriber (core to LAC), kbit/s; 0: none.
    /// Enforced by the workers: over it a frame is dropped (or delayed,
    /// shaping) and counted in [`SessionStats`].
    pub rate_down_kbps: u32,
    /// Rate limit from the subscriber (LAC to core), kbit/s; 0: none.
    pub rate_up_kbps: u32,
    /// Depth of the downstream bucket, bytes of subscriber IP packets.
    pub burst_down: u32,
    /// Depth of the upstream bucket, bytes.
    pub burst_up: u32,
}

impl Session {
    /// Peer requires Ns/Nr in data messages (Sequencing Required AVP).
    pub const SEQUENCING: u32 = 1 << 0;
    /// Send the L bit and Length field.
    pub const LENGTH: u32 = 1 << 1;
    /// IPv4 only: leave the outer UDP checksum zero.
    pub const UDP_CSUM_ZERO: u32 = 1 << 2;
    /// Omit the PPP Address/Control field (ACFC negotiated).
    pub const ACFC: u32 = 1 << 3;
    /// Send 1-byte PPP protocol fields (PFC negotiated).
    pub const PFC: u32 = 1 << 4;
    /// `LNS_SESS_SLOW_PATH`: never on the fast path. The program passes
    /// the session's frames both ways to the kernel, and the writers keep
    /// its slot's fast bit and its pool units clear (an IPsec peer's
    /// session, or one an operator keeps off AF_XDP).
    pub const SLOW_PATH: u32 = 1 << 5;

    /// `LNS_OWNER_STATIC`: written by an operator (lnsctl); never reclaimed.
    pub const OWNER_STATIC: u32 = c::lns_owner::LNS_OWNER_STATIC.0;
    /// `LNS_OWNER_CONTROL_PLANE`: written by lns-controlplane; a restarted
    /// control plane removes the ones its predecessor left.
    pub const OWNER_CONTROL_PLANE: u32 = c::lns_owner::LNS_OWNER_CONTROL_PLANE.0;

    pub fn session_state(&self) -> Option<SessionState> {
        SessionState::from_raw(self.state)
    }

    pub fn key(&self) -> SessionKey {
        SessionKey { tunnel_id: self.local_tunnel_id, session_id: self.local_session_id }
    }

    /// The LAC's address and port.
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(unmap(self.peer_addr), self.peer_port.to_host())
    }

    /// The LNS's address and port of the tunnel.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(unmap(self.local_addr), self.local_port.to_host())
    }

    pub fn set_peer(&mut self, addr: SocketAddr) {
        self.peer_addr = mapped(addr.ip());
        self.peer_port = Be16::from_host(addr.port());
    }

    pub fn set_local(&mut self, addr: SocketAddr) {
        self.local_addr = mapped(addr.ip());
        self.local_port = Be16::from_host(addr.port());
    }

    /// The subscriber's IPv4 address, if it has one.
    pub fn subscriber_ipv4(&self) -> Option<Ipv4Addr> {
        (self.ipv4 != [0; 4]).then(|| Ipv4Addr::from(self.ipv4))
    }

    /// The subscriber's SLAAC prefix, if any.
    pub fn subscriber_ipv6_prefix(&self) -> Option<(Ipv6Addr, u8)> {
        (self.ipv6_prefix_len > 0).then(|| (Ipv6Addr::from(self.ipv6_prefix), self.ipv6_prefix_len))
    }

    /// The subscriber's delegated prefix, if any.
    pub fn subscriber_delegated_prefix(&self) -> Option<(Ipv6Addr, u8)> {
        (self.delegated_prefix_len > 0)
            .then(|| (Ipv6Addr::from(self.delegated_prefix), self.delegated_prefix_len))
    }
}

/// Address as stored in 16-byte ABI fields: IPv4 as IPv4-mapped IPv6.
pub fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Inverse of [`mapped`].
pub fn unmap(raw: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(raw);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// `struct lns_session_key`, key of `lns_session_ids`: the ids we assigned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SessionKey {
    pub tunnel_id: u16,
    pub session_id: u16,
}

/// `struct lns_lpm_v4`, key of `lns_sub_v4_lpm`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LpmV4 {
    pub prefixlen: u32,
    pub addr: [u8; 4],
}

/// `struct lns_lpm_v6`, key of `lns_sub_v6_lpm`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LpmV6 {
    pub prefixlen: u32,
    pub addr: [u8; 16],
}

/// `enum lns_direction`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the LAC: decapsulate.
    Upstream = 1,
    /// From the core: encapsulate.
    Downstream = 2,
}

/// `struct lns_xdp_meta`: prepended by the program to every frame it
/// redirects, so the worker neither parses, looks up nor makes a syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct XdpMeta {
    pub session_index: u32,
    /// Offset of the subscriber's IP header from the Ethernet header.
    pub inner_offset: u16,
    /// A [`Direction`] as u8.
    pub direction: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// Interface the result must leave through (from the kernel's FIB).
    pub egress_ifindex: u32,
    /// Ethernet source for the result.
    pub smac: [u8; 6],
    /// Ethernet destination for the result: the next hop's address.
    pub dmac: [u8; 6],
    /// Upstream, for the worker's checks ([`XdpMeta::CHECK`]): offsets from
    /// the Ethernet header of the outer IP header, the outer UDP header and
    /// the L2TP Tunnel ID (the Session ID follows).
    pub outer_l3: u16,
    pub outer_l4: u16,
    pub l2tp_ids: u16,
    /// `LNS_META_*` bits.
    pub flags: u8,
    /// 4 or 6 upstream; 0 downstream.
    pub outer_ip_version: u8,
}

impl XdpMeta {
    /// `LNS_META_CHECK`: the program did not check this frame against its
    /// session: the worker must. Upstream (a fast slot) `session_index` is
    /// the slot; downstream (a pool unit) it is the unit, and the next hop
    /// is left to the worker.
    pub const CHECK: u8 = 1 << 0;
    pub const LEN: usize = std::mem::size_of::<XdpMeta>();
    /// `LNS_XDP_META_ROOM`: the bytes the program puts in front of a
    /// redirected frame, the metadata first (a whole cache line, so the
    /// kernel's copy into the UMEM keeps its alignment).
    pub const ROOM: usize = 64;

    /// Reads the metadata from the first `LEN` bytes of a redirected frame.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        bytemuck::try_pod_read_unaligned(b.get(..Self::LEN)?).ok()
    }

    pub fn direction(&self) -> Option<Direction> {
        match self.direction {
            1 => Some(Direction::Upstream),
            2 => Some(Direction::Downstream),
            _ => None,
        }
    }
}

/// `LNS_NEIGH_MISS_ENTRIES`: size of `lns_neigh_miss`.
pub const NEIGH_MISS_ENTRIES: u32 = 1024;
/// `LNS_DEFAULT_MAX_WORKERS`: rows of `lns_session_stats` unless the loader says otherwise.
pub const DEFAULT_MAX_WORKERS: u32 = 4;

/// `struct lns_session_stats`: one worker's counts for one session slot,
/// at `lns_session_stats[worker * max_sessions + index]`. Never reset: a
/// reader records them when a session starts in a slot and subtracts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SessionStats {
    /// Decapsulated packets, LAC to core.
    pub up_packets: u64,
    /// Subscriber IP bytes upstream.
    pub up_bytes: u64,
    /// Encapsulated packets, core to LAC.
    pub down_packets: u64,
    /// Subscriber IP bytes downstream.
    pub down_bytes: u64,
    /// Upstream packets over the session's rate limit, dropped.
    pub up_policed_packets: u64,
    pub up_policed_bytes: u64,
    /// Downstream packets over the session's rate limit, dropped (with
    /// shaping: those the session's queue had no room for).
    pub down_policed_packets: u64,
    pub down_policed_bytes: u64,
}

impl SessionStats {
    pub fn add(&mut self, o: &SessionStats) {
        self.up_packets = self.up_packets.wrapping_add(o.up_packets);
        self.up_bytes = self.up_bytes.wrapping_add(o.up_bytes);
        self.down_packets = self.down_packets.wrapping_add(o.down_packets);
        self.down_bytes = self.down_bytes.wrapping_add(o.down_bytes);
        self.up_policed_packets = self.up_policed_packets.wrapping_add(o.up_policed_packets);
        self.up_policed_bytes = self.up_policed_bytes.wrapping_add(o.up_policed_bytes);
        self.down_policed_packets = self.down_policed_packets.wrapping_add(o.down_policed_packets);
        self.down_policed_bytes = self.down_policed_bytes.wrapping_add(o.down_policed_bytes);
    }
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $variant:ident = $c:ident, $name:literal; )*) => {
        /// `enum lns_counter`: one per-CPU counter per verdict reason. Every
        /// frame increments [`Counter::Rx`] and exactly one other counter.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter {
            $( $(#[$doc])* $variant = c::lns_counter::$c.0, )*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The name userspace shows: the C enumerator without `LNS_CNT_`,
            /// in lower case.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }

            pub fn from_name(name: &str) -> Option<Counter> {
                Self::ALL.iter().copied().find(|c| c.name() == name)
            }
        }
    };
}

counters! {
    /// Every frame seen.
    Rx = LNS_CNT_RX, "rx";
    /// L2TP data of a forwarding session, to AF_XDP.
    RedirectUpstream = LNS_CNT_REDIRECT_UPSTREAM, "redirect_upstream";
    /// Core packet to a subscriber, to AF_XDP.
    RedirectDownstream = LNS_CNT_REDIRECT_DOWNSTREAM, "redirect_downstream";
    /// Inner source address not owned by the session.
    DropSpoofed = LNS_CNT_DROP_SPOOFED, "drop_spoofed";
    /// L2TP data for an unknown (tunnel, session).
    DropUnknownSession = LNS_CNT_DROP_UNKNOWN_SESSION, "drop_unknown_session";
    /// Known session, but the outer source is not its LAC.
    DropPeerMismatch = LNS_CNT_DROP_PEER_MISMATCH, "drop_peer_mismatch";
    /// An rx queue past `LNS_MAX_QUEUES`, or no headroom for the metadata
    /// (a queue without a socket is [`Counter::PassNoSocket`]).
    DropNoXsk = LNS_CNT_DROP_NO_XSK, "drop_no_xsk";
    /// L2TP control message (T bit).
    PassL2tpControl = LNS_CNT_PASS_L2TP_CONTROL, "pass_l2tp_control";
    /// PPP protocol other than IPv4/IPv6.
    PassPppControl = LNS_CNT_PASS_PPP_CONTROL, "pass_ppp_control";
    /// Session exists, PPP not yet up.
    PassSessionNotForwarding = LNS_CNT_PASS_SESSION_NOT_FORWARDING, "pass_session_not_forwarding";
    /// Unknown session passed because the config says so.
    PassUnknownSession = LNS_CNT_PASS_UNKNOWN_SESSION, "pass_unknown_session";
    /// Subscriber IPv6 from a link-local source or to multicast.
    PassIpv6LinkLocal = LNS_CNT_PASS_IPV6_LINK_LOCAL, "pass_ipv6_link_local";
    /// Core packet to a subscriber whose session is not forwarding.
    PassSubscriberNotForwarding = LNS_CNT_PASS_SUBSCRIBER_NOT_FORWARDING, "pass_subscriber_not_forwarding";
    /// ARP and other ethertypes.
    PassNotIp = LNS_CNT_PASS_NOT_IP, "pass_not_ip";
    /// IP that is neither L2TP to us nor to a subscriber.
    PassNotL2tp = LNS_CNT_PASS_NOT_L2TP, "pass_not_l2tp";
    /// Outer IP fragment.
    PassFragment = LNS_CNT_PASS_FRAGMENT, "pass_fragment";
    /// Header fields that make no sense.
    PassMalformed = LNS_CNT_PASS_MALFORMED, "pass_malformed";
    /// The frame ends before its headers or its stated length.
    PassTruncated = LNS_CNT_PASS_TRUNCATED, "pass_truncated";
    /// Arrived on an interface the instance does not know.
    PassUnknownIface = LNS_CNT_PASS_UNKNOWN_IFACE, "pass_unknown_iface";
    /// The config map was unreadable.
    PassNoConfig = LNS_CNT_PASS_NO_CONFIG, "pass_no_config";
    /// The kernel's FIB says blackhole, unreachable or prohibit.
    DropNoRoute = LNS_CNT_DROP_NO_ROUTE, "drop_no_route";
    /// Next hop not resolved yet: the stack resolves it.
    PassNoNeighbour = LNS_CNT_PASS_NO_NEIGHBOUR, "pass_no_neighbour";
    /// The FIB lookup declined: local destination, no route, forwarding off.
    PassNotForwarded = LNS_CNT_PASS_NOT_FORWARDED, "pass_not_forwarded";
    /// L2TP data of a fast slot, to AF_XDP unchecked: the worker checks it
    /// ([`XdpMeta::CHECK`]).
    RedirectUpstreamCheck = LNS_CNT_REDIRECT_UPSTREAM_CHECK, "redirect_upstream_check";
    /// Core packet to a pool unit whose bit is set, to AF_XDP unchecked:
    /// the worker finds and checks the session ([`XdpMeta::CHECK`]).
    RedirectDownstreamCheck = LNS_CNT_REDIRECT_DOWNSTREAM_CHECK, "redirect_downstream_check";
    /// A frame for AF_XDP while no socket is bound on its queue (the data
    /// plane restarting under a kept program): passed to the kernel, where
    /// the control plane's slow path carries it.
    PassNoSocket = LNS_CNT_PASS_NO_SOCKET, "pass_no_socket";
    /// A frame of a session flagged [`Session::SLOW_PATH`], either way:
    /// passed to the kernel, the control plane's slow path carries it.
    PassSlowPathSession = LNS_CNT_PASS_SLOW_PATH_SESSION, "pass_slow_path_session";
    /// A core packet larger than its session's [`Session::mtu`] (which
    /// never exceeds what the access link carries once tunnelled): passed
    /// to the kernel, which routes it to the slow path, where it is
    /// fragmented or answered with ICMP "too big". (A frame the worker
    /// checks, [`XdpMeta::CHECK`], is fragmented or answered there.)
    PassTooBig = LNS_CNT_PASS_TOO_BIG, "pass_too_big";
}

/// `LNS_CNT_MAX`: entries of `lns_counters`.
pub const COUNTER_COUNT: u32 = c::lns_counter::LNS_CNT_MAX.0;

// ---- compile-time checks against the BTF-generated skeleton types --------

macro_rules! layout {
    ($ours:ty, $theirs:ty, $($field:ident),* $(,)?) => {
        const _: () = {
            assert!(std::mem::size_of::<$ours>() == std::mem::size_of::<$theirs>());
            assert!(std::mem::align_of::<$ours>() == std::mem::align_of::<$theirs>());
            $( assert!(std::mem::offset_of!($ours, $field) == std::mem::offset_of!($theirs, $field)); )*
        };
    };
}

layout!(
    Config,
    c::lns_config,
    abi_version,
    flags,
    l2tp_port,
    _pad0,
    nh_cache_ms,
    session_bank_mask,
    nh_epoch,
    sub_flat_shift,
    pool_count,
    pools,
    tunnel_port_first,
    tunnel_port_last,
    _pad1
);
layout!(Pool, c::lns_pool, net, units, base, ip_version, prefix_len, unit_len, unit_shift, _pad);
layout!(NhQuery, c::lns_nh_query, ifindex, ip_version, src, dst, result, out_ifindex, smac, dmac);
layout!(FlatEntry, c::lns_flat_entry, tag, session_plus1);
layout!(Iface, c::lns_iface, roles, xsk_base);
layout!(
    Session,
    c::lns_session,
    state,
    flags,
    local_tunnel_id,
    local_session_id,
    peer_tunnel_id,
    peer_session_id,
    peer_addr,
    peer_port,
    local_port,
    mtu,
    ipv6_prefix_len,
    delegated_prefix_len,
    ipv4,
    access_ifindex,
    ipv6_prefix,
    delegated_prefix,
    local_addr,
    owner,
    _pad0,
    generation,
    rate_down_kbps,
    rate_up_kbps,
    burst_down,
    burst_up,
);
layout!(SessionKey, c::lns_session_key, tunnel_id, session_id);
layout!(LpmV4, c::lns_lpm_v4, prefixlen, addr);
layout!(LpmV6, c::lns_lpm_v6, prefixlen, addr);
layout!(
    XdpMeta,
    c::lns_xdp_meta,
    session_index,
    inner_offset,
    direction,
    ip_version,
    egress_ifindex,
    smac,
    dmac,
    outer_l3,
    outer_l4,
    l2tp_ids,
    flags,
    outer_ip_version
);
layout!(
    SessionStats,
    c::lns_session_stats,
    up_packets,
    up_bytes,
    down_packets,
    down_bytes,
    up_policed_packets,
    up_policed_bytes,
    down_policed_packets,
    down_policed_bytes
);

const _: () = {
    assert!(COUNTER_COUNT as usize == Counter::ALL.len());
    assert!(XdpMeta::LEN <= XdpMeta::ROOM && XdpMeta::ROOM.is_multiple_of(64));
    assert!(std::mem::size_of::<Session>() == 128);
    assert!(std::mem::size_of::<SessionStats>() == 64, "one cache line per slot and worker");
    assert!(
        std::mem::offset_of!(Session, ipv6_prefix) + 16 == 64,
        "the hot fields fill the first cache line"
    );
    // Counter::ALL is in index order with no gaps.
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i] as usize == i);
        i += 1;
    }
    assert!(SessionState::Free as u32 == c::lns_session_state::LNS_SESSION_FREE.0);
    assert!(SessionState::Control as u32 == c::lns_session_state::LNS_SESSION_CONTROL.0);
    assert!(SessionState::Forwarding as u32 == c::lns_session_state::LNS_SESSION_FORWARDING.0);
    assert!(Direction::Upstream as u32 == c::lns_direction::LNS_DIR_UPSTREAM.0);
    assert!(Direction::Downstream as u32 == c::lns_direction::LNS_DIR_DOWNSTREAM.0);
    assert!(NhResult::Forward as u32 == c::lns_nh_result::LNS_NH_FORWARD.0);
    assert!(NhResult::NoNeighbour as u32 == c::lns_nh_result::LNS_NH_NO_NEIGHBOUR.0);
    assert!(NhResult::NoRoute as u32 == c::lns_nh_result::LNS_NH_NO_ROUTE.0);
    assert!(NhResult::NotForwarded as u32 == c::lns_nh_result::LNS_NH_NOT_FORWARDED.0);
    assert!(NhResult::BadQuery as u32 == c::lns_nh_result::LNS_NH_BAD_QUERY.0);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `#define name` in the header: a number or `(1U << n)`.
    fn define(name: &str) -> u64 {
        let header = include_str!("../include/lns_abi.h");
        let line = header
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["#define", name]))
            .unwrap_or_else(|| panic!("no #define {name} in lns_abi.h"));
        let value: String = line.split_whitespace().skip(2).take_while(|w| !w.starts_with("/*")).collect();
        if let Some(shift) = value.strip_prefix("(1U<<").and_then(|v| v.strip_suffix(')')) {
            return 1 << shift.parse::<u32>().unwrap();
        }
        let value = value.trim_end_matches('U');
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => value.parse().unwrap(),
        }
    }

    /// Macros leave no BTF, so the constants are compared with the header's
    /// text.
    #[test]
    fn constants_match_the_header_defines() {
        assert_eq!(define("LNS_ABI_VERSION"), ABI_VERSION as u64);
        assert_eq!(define("LNS_CFG_PASS_UNKNOWN_SESSION"), Config::PASS_UNKNOWN_SESSION as u64);
        assert_eq!(define("LNS_CFG_WORKER_CHECKS"), Config::WORKER_CHECKS as u64);
        assert_eq!(define("LNS_SESS_SLOW_PATH"), Session::SLOW_PATH as u64);
        assert_eq!(define("LNS_META_CHECK"), XdpMeta::CHECK as u64);
        assert_eq!(define("LNS_MARK_DISPLACED"), slot_mark::DISPLACED as u64);
        assert_eq!(define("LNS_MARK_EXTRA"), slot_mark::EXTRA as u64);
        assert_eq!(define("LNS_XDP_META_ROOM"), XdpMeta::ROOM as u64);
        assert_eq!(define("LNS_DEFAULT_MAX_SESSIONS"), DEFAULT_MAX_SESSIONS as u64);
        assert_eq!(define("LNS_FLAT_PROBES"), FlatEntry::PROBES as u64);
        assert_eq!(define("LNS_FLAT_HASH"), FlatEntry::HASH as u64);
        assert_eq!(define("LNS_MAX_POOLS"), MAX_POOLS as u64);
        assert_eq!(define("LNS_MAX_POOL_UNIT_BITS"), MAX_POOL_UNIT_BITS as u64);
    }

    #[test]
    fn pool_specs_parse_and_refuse() {
        let p: PoolSpec = "192.0.2.0/24".parse().unwrap();
        assert_eq!((p.prefix_len, p.unit_len, p.units()), (24, 32, 256));
        let p6: PoolSpec = "2001:db8:1000::/44".parse().unwrap();
        assert_eq!((p6.prefix_len, p6.unit_len, p6.units()), (44, 64, 1 << 20));
        let pd: PoolSpec = "2001:db8:2000::/40,56".parse().unwrap();
        assert_eq!(pd.units(), 1 << 16);
        let one: PoolSpec = "192.0.2.77/32".parse().unwrap();
        assert_eq!(one.units(), 1, "a pool of one address");
        for bad in [
            "192.0.2.1/24",     // host bits
            "192.0.2.0/24,30",  // IPv4 unit other than /32
            "2001:db8::/40,72", // IPv6 unit past /64
            "2001:db8::/64,56", // unit shorter than the prefix
            "2001:db8::/32,64", // 2^32 units
            "2001:db8::",       // no length
            "0.0.0.0/0",        // everything
            "2001:db8::/44,x",
        ] {
            assert!(bad.parse::<PoolSpec>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn pool_units_follow_the_programs_arithmetic() {
        let v4 = "192.0.2.0/24".parse::<PoolSpec>().unwrap().to_pool(100).unwrap();
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(v4.unit_of(a("192.0.2.0"), 32), Some(100));
        assert_eq!(v4.unit_of(a("192.0.2.255"), 32), Some(355));
        assert_eq!(v4.unit_of(a("192.0.3.0"), 32), None);
        assert_eq!(v4.unit_of(a("192.0.1.255"), 32), None);
        assert_eq!(v4.unit_of(a("192.0.2.7"), 31), None);
        assert_eq!(v4.unit_of(a("2001:db8::"), 32), None);
        let v6 = "2001:db8:1000::/44".parse::<PoolSpec>().unwrap().to_pool(0).unwrap();
        assert_eq!(v6.unit_of(a("2001:db8:1000::"), 64), Some(0));
        assert_eq!(v6.unit_of(a("2001:db8:1000:5::"), 64), Some(5));
        assert_eq!(v6.unit_of(a("2001:db8:100f:ffff::"), 64), Some((1 << 20) - 1));
        assert_eq!(v6.unit_of(a("2001:db8:1010::"), 64), None);
        assert_eq!(
            v6.unit_of(a("2001:db8:1000:5::1"), 64),
            Some(5),
            "bits past the length are not the prefix's"
        );
        assert_eq!(v6.unit_of(a("2001:db8:1000:5::"), 56), None);
        // An address anywhere in a unit falls in it (the program's view).
        assert_eq!(v6.number(a("2001:db8:1000:5::1234")).and_then(|n| v6.unit_at(n)), Some(5));
        // Below the pool: the difference wraps and stays out.
        assert_eq!(v6.number(a("2001:db8:fff:ffff::")).and_then(|n| v6.unit_at(n)), None);
        let pd = "2001:db8:2000::/40,56".parse::<PoolSpec>().unwrap().to_pool(7).unwrap();
        assert_eq!(pd.unit_of(a("2001:db8:2000:100::"), 56), Some(8));
        assert_eq!(pd.number(a("2001:db8:2000:1ff:1::1")).and_then(|n| pd.unit_at(n)), Some(8));
    }
}
