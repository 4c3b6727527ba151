//! The LNS's XDP steering program and its kernel ABI.
//!
//! - [`abi`]: the layout of every shared map, mirrored from `include/lns_abi.h`
//!   and checked against the program's BTF at compile time.
//! - [`Steering`]: loads the program (embedded at build time), pins its maps,
//!   attaches it through BPF links, and runs it under BPF_PROG_TEST_RUN.
//! - [`police`]: the meaning of a session's rate limits (a token bucket).
//! - [`Maps`]: typed access to the maps, also from other processes through
//!   [`open_pinned`].
//! - [`Reflector`]: the benchmarks' bare AF_XDP baseline, a program that
//!   sends every frame of a queue to that queue's socket.

pub mod abi;
mod maps;
pub mod police;
mod reflect;
pub mod reuseport;
mod sys;

#[allow(clippy::all, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/lns_xdp.skel.rs"));
}

#[allow(clippy::all, unused_imports)]
mod reflect_skel {
    include!(concat!(env!("OUT_DIR"), "/reflect.skel.rs"));
}

use std::io;
use std::path::PathBuf;

pub use maps::{CounterSnapshot, Maps, MAP_NAMES};
pub use reflect::Reflector;
pub use sys::{
    check_pin_dir, default_pin_dir, ifindex, link_pin_path, open_pinned, pinned_links, rx_queue_count,
    unpin_links, Attachment, LoadOptions, MmapArray, NhResolver, Steering, Takeover, TestRunContext,
    TestRunResult, XdpAction, XdpMode,
};

/// `FIRST-LAST` (or one port): the control plane's own ports of tunnels,
/// as both processes read the node's `tunnel_ports`. Port 0 and 1701-like
/// ranges written backwards are refused.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p != 0);
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (port(a), port(b)),
        None => (port(s), port(s)),
    };
    match (first, last) {
        (Some(f), Some(l)) if f <= l => Ok((f, l)),
        _ => Err(format!("{s:?}: expected FIRST-LAST, UDP ports from 1 to 65535, FIRST not above LAST")),
    }
}

/// Errors of loading, attaching and map access.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Bpf { what: &'static str, source: libbpf_rs::Error },
    #[error("{what} {}: {source}", path.display())]
    BpfPath { what: &'static str, path: PathBuf, source: libbpf_rs::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("maps were written by ABI {found}, this build speaks ABI {expected}; restart the data plane with this build")]
    AbiMismatch { found: u32, expected: u32 },
    #[error("ifindex {ifindex} already has XDP program {prog_id} ({name:?}), not ours; detach it first")]
    Busy { ifindex: u32, prog_id: u32, name: String },
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    #[error("session index {index} is outside the session table (size {max})")]
    SessionIndex { index: u32, max: u32 },
    #[error("session slot {0} is in use")]
    SlotInUse(u32),
    #[error("tunnel {tunnel} session {session} is installed already, in another slot")]
    KeyInUse { tunnel: u16, session: u16 },
    #[error("session slot {0}: the tunnel and session ids of a live session cannot change")]
    KeyChange(u32),
    #[error("prefix length {0} is too long")]
    PrefixLength(u8),
    #[error("{prefix}/{len} overlaps a /64 of session slot {other}: a subscriber's /64 and another's longer prefix inside it cannot both be routed")]
    PrefixOverlap { prefix: std::net::Ipv6Addr, len: u8, other: u32 },
    #[error("subscriber pools: {0}")]
    Pool(String),
    #[error(
        "{} is not on a BPF filesystem (bpffs) in this process's view. `ip netns exec` mounts a /sys of \
         its own, which hides /sys/fs/bpf: enter the namespace with `nsenter --net=/run/netns/NS` \
         instead (lns-dataplane and lns-controlplane both), or give both --bpf-pin-dir (bpf_pin_dir) \
         on a bpffs they both see (mount -t bpf bpf DIR)",
        dir.display()
    )]
    NotBpffs { dir: PathBuf },
    #[error("missing {0}")]
    Missing(&'static str),
}

impl Error {
    fn bpf(what: &'static str, source: libbpf_rs::Error) -> Self {
        Error::Bpf { what, source }
    }
    fn bpf_path(what: &'static str, path: PathBuf, source: libbpf_rs::Error) -> Self {
        Error::BpfPath { what, path, source }
    }
    fn io(what: String, source: io::Error) -> Self {
        Error::Io { what, source }
    }
}
