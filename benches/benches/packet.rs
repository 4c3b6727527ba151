//! Per-packet cost of decapsulation and encapsulation over batches, with a
//! MAC swap (what the reflector does) as the baseline in the same run.

use std::net::SocketAddr;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use lns_bpf::abi::{Session, SessionState, XdpMeta};
use lns_dataplane::packet::{check_downstream, check_upstream, decap, encap, EncapState, MssClamp, META_LEN};

const BATCH: usize = 64;

fn meta(direction: u8, inner_offset: u16) -> XdpMeta {
    XdpMeta {
        session_index: 0,
        inner_offset,
        direction,
        ip_version: 4,
        egress_ifindex: 2,
        smac: [2; 6],
        dmac: [4; 6],
        ..Default::default()
    }
}

fn inner(size: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4([198, 51, 100, 10], [203, 0, 113, 7], 64)
        .udp(4000, 5000)
        .write(&mut v, &vec![0x5a; size - 28])
        .unwrap();
    v
}

/// Buffers as the worker sees them: metadata then the received frame.
fn upstream(size: usize) -> (Vec<u8>, usize, XdpMeta) {
    let ip = inner(size);
    let mut l2tp = vec![0x00, 0x02, 0, 100, 0, 200, 0xff, 0x03, 0x00, 0x21];
    l2tp.extend_from_slice(&ip);
    let mut f = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([192, 0, 2, 2], [192, 0, 2, 1], 64)
        .udp(1701, 1701)
        .write(&mut f, &l2tp)
        .unwrap();
    let m = meta(1, (f.len() - ip.len()) as u16);
    let mut buf = vec![0u8; 2048];
    buf[..XdpMeta::LEN].copy_from_slice(bytemuck::bytes_of(&m));
    buf[META_LEN..META_LEN + f.len()].copy_from_slice(&f);
    (buf, META_LEN + f.len(), m)
}

fn downstream(size: usize) -> (Vec<u8>, usize, XdpMeta) {
    let ip = inner(size);
    let m = meta(2, 14);
    let mut buf = vec![0u8; 2048];
    buf[..XdpMeta::LEN].copy_from_slice(bytemuck::bytes_of(&m));
    buf[META_LEN..META_LEN + 12].copy_from_slice(&[3; 12]);
    buf[META_LEN + 12..META_LEN + 14].copy_from_slice(&[8, 0]);
    buf[META_LEN + 14..META_LEN + 14 + ip.len()].copy_from_slice(&ip);
    (buf, META_LEN + 14 + ip.len(), m)
}

const ROOM: usize = 64;

fn session(udp_csum: bool) -> Session {
    let mut s = Session {
        state: SessionState::Forwarding as u32,
        flags: if udp_csum { 0 } else { Session::UDP_CSUM_ZERO },
        peer_tunnel_id: 7,
        peer_session_id: 9,
        mtu: 1500,
        ..Default::default()
    };
    s.set_peer(SocketAddr::from(([192, 0, 2, 2], 1701)));
    s.set_local(SocketAddr::from(([192, 0, 2, 1], 1701)));
    s
}

fn benches(c: &mut Criterion) {
    for size in [64usize, 1400] {
        let mut g = c.benchmark_group(format!("inner{size}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        let (up, up_len, up_meta) = upstream(size);
        // As the worker hands it over: 64 bytes of room before the metadata,
        // where the outer headers go.
        let (down, down_len, down_meta) = downstream(size);
        let (down, down_len) = ([vec![0u8; ROOM], down].concat(), ROOM + down_len);
        g.bench_function("baseline_mac_swap", |b| {
            b.iter_batched_ref(
                || vec![up.clone(); BATCH],
                |bufs| {
                    for buf in bufs.iter_mut() {
                        let f = &mut buf[META_LEN..];
                        let mut mac = [0u8; 6];
                        mac.copy_from_slice(&f[0..6]);
                        f.copy_within(6..12, 0);
                        f[6..12].copy_from_slice(&mac);
                        black_box(&f[0]);
                    }
                },
                BatchSize::SmallInput,
            )
        });
        // A fast slot's frame: the worker's checks (ids, LAC, source) on
        // the session, then the decapsulation.
        let mut checked = up_meta;
        (checked.flags, checked.outer_l3, checked.outer_l4, checked.l2tp_ids, checked.outer_ip_version) =
            (XdpMeta::CHECK, 14, 34, 44, 4);
        let mut own = session(false);
        (own.local_tunnel_id, own.local_session_id, own.ipv4) = (100, 200, [198, 51, 100, 10]);
        assert_eq!(check_upstream(&up[META_LEN..up_len], &checked, &own), Ok(()));
        g.bench_function("check_and_decap", |b| {
            b.iter_batched_ref(
                || vec![up.clone(); BATCH],
                |bufs| {
                    for buf in bufs.iter_mut() {
                        if check_upstream(&buf[META_LEN..up_len], &checked, &own).is_ok() {
                            black_box(decap(buf, 0, up_len, &checked, MssClamp::Auto, 1500));
                        }
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function("decap", |b| {
            b.iter_batched_ref(
                || vec![up.clone(); BATCH],
                |bufs| {
                    for buf in bufs.iter_mut() {
                        black_box(decap(buf, 0, up_len, &up_meta, MssClamp::Auto, 1500));
                    }
                },
                BatchSize::SmallInput,
            )
        });
        for csum in [false, true] {
            let s = session(csum);
            let name = if csum { "encap_udp_checksum" } else { "encap" };
            g.bench_function(name, |b| {
                let mut st = EncapState::default();
                b.iter_batched_ref(
                    || vec![down.clone(); BATCH],
                    |bufs| {
                        for buf in bufs.iter_mut() {
                            black_box(encap(
                                buf,
                                ROOM,
                                down_len,
                                &down_meta,
                                &s,
                                MssClamp::Auto,
                                None,
                                &mut st,
                            ));
                        }
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        // A pool unit's frame: the worker's check (state, destination) on
        // the session the unit names, then the encapsulation.
        let unit_meta = XdpMeta { flags: XdpMeta::CHECK, ..down_meta };
        let mut owner = session(false);
        owner.ipv4 = [203, 0, 113, 7];
        assert_eq!(check_downstream(&down[ROOM + META_LEN..down_len], &unit_meta, &owner), Ok(()));
        g.bench_function("check_and_encap", |b| {
            let mut st = EncapState::default();
            b.iter_batched_ref(
                || vec![down.clone(); BATCH],
                |bufs| {
                    for buf in bufs.iter_mut() {
                        if check_downstream(&buf[ROOM + META_LEN..down_len], &unit_meta, &owner).is_ok() {
                            black_box(encap(
                                buf,
                                ROOM,
                                down_len,
                                &unit_meta,
                                &owner,
                                MssClamp::Auto,
                                None,
                                &mut st,
                            ));
                        }
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(name = packet; config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)); targets = benches);
criterion_main!(packet);
