//! Arbitrary buffers and metadata through the fast path's decapsulation and
//! encapsulation. The XDP program validates frames first, but the worker
//! must not trust that: no panic, whatever the bytes and the metadata say.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use lns_bpf::abi::{Session, XdpMeta};
use lns_dataplane::packet::{check_downstream, check_upstream, decap, encap, EncapState, MssClamp};

fuzz_target!(|data: &[u8]| {
    if data.len() < 14 {
        return;
    }
    let (head, frame) = data.split_at(14);
    let meta = XdpMeta {
        session_index: 0,
        inner_offset: u16::from_le_bytes([head[0], head[1]]),
        direction: head[2] & 3,
        ip_version: if head[3] & 1 == 0 { 4 } else { 6 },
        egress_ifindex: 1,
        smac: [2; 6],
        dmac: [4; 6],
        outer_l3: u16::from_le_bytes([head[8], head[9]]),
        outer_l4: u16::from_le_bytes([head[10], head[11]]),
        l2tp_ids: head[12] as u16,
        flags: 1,
        outer_ip_version: if head[13] & 1 == 0 { 4 } else { 6 },
    };
    let mut s = Session { flags: head[4] as u32 & 0x1f, mtu: u16::from_le_bytes([head[5], head[6]]), ..Default::default() };
    s.set_peer(if head[7] & 1 == 0 { SocketAddr::from(([192, 0, 2, 2], 1701)) } else { "[2001:db8::2]:1701".parse().unwrap() });
    let mut buf = frame.to_vec();
    let len = buf.len();
    buf.resize(2048.max(len), 0);
    let clamp = if head[7] & 2 == 0 { MssClamp::Auto } else { MssClamp::Fixed(536) };
    // The worker's two layouts: metadata at the start, or after 64 bytes of
    // room (taken from the fuzzer's own bytes).
    let at = if head[7] & 4 == 0 { 0 } else { 64.min(len) };
    let _ = check_upstream(frame, &meta, &s);
    let _ = check_downstream(frame, &meta, &s);
    let _ = decap(&mut buf.clone(), at, len, &meta, clamp, s.mtu);
    let _ = encap(&mut buf, at, len, &meta, &s, clamp, Some(1), &mut EncapState::default());
});
