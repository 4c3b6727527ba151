//! Test vectors from real captures (xl2tpd LAC, l2tpns LNS): every L2TP
//! control message must parse, validate, and re-emit byte for byte.

use super::avp::framing;
use super::endpoint::{DatagramEvent, Endpoint, EndpointConfig};
use super::header::Packet;
use super::header::{SessionId, TunnelId};
use super::message::{Message, MessageType};
use super::tunnel::Event;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/captures/");

/// Link-layer frames of a pcap or pcapng file (the captures are pcapng
/// despite their extension), all of which must be Ethernet.
fn frames(path: &str) -> Vec<(Duration, Vec<u8>)> {
    use pcap_file::pcapng::{Block, PcapNgReader};
    // A missing capture is a failure, not a skip.
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
        let mut r = PcapNgReader::new(&bytes[..]).expect("pcapng header");
        // pcap-file hands out the raw timestamp units as nanoseconds; the
        // unit is 10^-if_tsresol seconds, microseconds by default.
        let mut ns_per_unit = 1000u64;
        while let Some(b) = r.next_block() {
            match b.expect("pcapng block") {
                Block::InterfaceDescription(i) => {
                    assert_eq!(i.linktype, pcap_file::DataLink::ETHERNET);
                    for o in &i.options {
                        if let InterfaceDescriptionOption::IfTsResol(r) = o {
                            assert!(*r <= 9, "binary or sub-ns resolution");
                            ns_per_unit = 10u64.pow(9 - u32::from(*r));
                        }
                    }
                }
                Block::EnhancedPacket(p) => {
                    let units = u64::try_from(p.timestamp.as_nanos()).expect("timestamp");
                    out.push((Duration::from_nanos(units * ns_per_unit), p.data.to_vec()));
                }
                _ => {}
            }
        }
    } else {
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap header");
        assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
        while let Some(p) = r.next_packet() {
            let p = p.expect("pcap record");
            out.push((p.timestamp, p.data.to_vec()));
        }
    }
    out
}

/// A datagram of the capture: time, IPv4 source, UDP payload.
struct Captured {
    at: Duration,
    src: [u8; 4],
    data: Vec<u8>,
}

/// UDP payloads of the Ethernet/IPv4/UDP frames to or from port 1701.
fn l2tp_payloads(file: &str) -> Vec<Vec<u8>> {
    captured(file).into_iter().map(|c| c.data).collect()
}

fn captured(file: &str) -> Vec<Captured> {
    let mut out = Vec::new();
    for (at, d) in frames(&format!("{DIR}{file}")) {
        assert!(d.len() >= 14 + 20 + 8);
        assert_eq!(&d[12..14], &[0x08, 0x00], "IPv4");
        let ihl = usize::from(d[14] & 0x0f) * 4;
        assert_eq!(d[14 + 9], 17, "UDP");
        let udp = &d[14 + ihl..];
        let (sport, dport) = (u16::from_be_bytes([udp[0], udp[1]]), u16::from_be_bytes([udp[2], udp[3]]));
        if sport != 1701 && dport != 1701 {
            continue;
        }
        let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(Captured { at, src: [d[26], d[27], d[28], d[29]], data: udp[8..ulen].to_vec() });
    }
    assert!(!out.is_empty(), "{file}: no L2TP");
    out
}

fn check(file: &str, expect_control: usize) -> Vec<Message> {
    let mut msgs = Vec::new();
    for d in l2tp_payloads(file) {
        let p = Packet::new_checked(&d[..]).expect("header");
        if !p.is_control() {
            continue;
        }
        let m = Message::parse(&d, None).unwrap_or_else(|e| panic!("{file}: {e} in {d:02x?}"));
        assert_eq!(m.validate(), Ok(true), "{file}: {m:?}");
        assert_eq!(m.emit(None).expect("emit"), d, "{file}: re-emit differs for {m:?}");
        // No AVP in these captures is hidden or unknown, so the typed
        // representation must be complete.
        for a in &m.avps {
            assert!(!a.hidden);
            assert!(!matches!(a.value, super::AvpValue::Unknown(_)), "{a:?}");
        }
        for n in 0..d.len() {
            assert!(Message::parse(&d[..n], None).is_err(), "{file}: cut {n}");
        }
        msgs.push(m);
    }
    assert_eq!(msgs.len(), expect_control, "{file}");
    msgs
}

fn counts(msgs: &[Message]) -> HashMap<Option<MessageType>, usize> {
    let mut h = HashMap::new();
    for m in msgs {
        *h.entry(m.message_type()).or_default() += 1;
    }
    h
}

#[test]
fn xl2tpd_l2tpns_control() {
    let msgs = check("xl2tpd-lac_l2tpns-lns_control.pcap", 14);
    let c = counts(&msgs);
    assert_eq!(c.get(&Some(MessageType::Sccrq)), Some(&1));
    assert_eq!(c.get(&Some(MessageType::Iccn)), Some(&1));
    assert_eq!(c.get(&Some(MessageType::Cdn)), Some(&1));
    assert_eq!(c.get(&Some(MessageType::Hello)), Some(&2));
    assert_eq!(c.get(&None), Some(&5), "ZLBs");
    let cdn = msgs.iter().find(|m| m.message_type() == Some(MessageType::Cdn)).expect("cdn");
    assert!(cdn.result_code().is_some());
    let icrp = msgs.iter().find(|m| m.message_type() == Some(MessageType::Icrp)).expect("icrp");
    assert_eq!(icrp.assigned_session_id().map(|s| s.0), Some(1));
}

#[test]
fn l2tpns_chap_capture() {
    check("l2tpns-lns_ppp-chap-ipcp.pcap", 9);
}

#[test]
fn l2tpns_pap_capture() {
    let msgs = check("l2tpns-lns_ppp-pap-ipcp.pcap", 10);
    let stop = msgs.iter().find(|m| m.message_type() == Some(MessageType::StopCcn)).expect("StopCCN");
    assert!(stop.result_code().is_some() && stop.assigned_tunnel_id().is_some());
}

/// Random mutations of the captured messages (bit flips, truncations,
/// splices): parsing never panics, and whatever parses re-emits to bytes
/// that parse back to the same message. The fuzz target checks the same.
#[test]
fn mutations_never_panic_and_round_trip() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(2661);
    let mut corpus = l2tp_payloads("xl2tpd-lac_l2tpns-lns_control.pcap");
    corpus.retain(|d| d.first().is_some_and(|f| f & 0x80 != 0));
    let secret: &[u8] = b"secret";
    let mut parsed = 0;
    for _ in 0..20_000 {
        let mut d = corpus[rng.gen_range(0..corpus.len())].clone();
        for _ in 0..rng.gen_range(1..4) {
            match rng.gen_range(0..4) {
                0 if !d.is_empty() => {
                    let i = rng.gen_range(0..d.len());
                    d[i] ^= 1 << rng.gen_range(0..8);
                }
                1 if !d.is_empty() => {
                    let n = rng.gen_range(0..d.len());
                    d.truncate(n);
                }
                2 => {
                    let other = &corpus[rng.gen_range(0..corpus.len())];
                    let from = rng.gen_range(0..other.len());
                    d.extend_from_slice(&other[from..]);
                }
                _ if d.len() > 13 => {
                    // Set the H bit of some AVP header byte.
                    let i = rng.gen_range(12..d.len());
                    d[i] |= 0x40;
                }
                _ => {}
            }
        }
        for s in [None, Some(secret)] {
            if let Ok(m) = Message::parse(&d, s) {
                parsed += 1;
                let _ = m.validate();
                let bytes = m.emit(s).expect("a parsed message re-emits");
                assert_eq!(Message::parse(&bytes, s).as_ref(), Ok(&m), "{d:02x?}");
            }
        }
    }
    assert!(parsed > 1000, "{parsed}");
}

/// Replay what xl2tpd (the LAC) sent in the capture against our LNS, with
/// the capture's timing. Its messages name l2tpns's tunnel and session ids
/// in their headers; those two fields are rewritten to the ids our LNS
/// assigned, everything else is sent as captured, Nr included (our LNS
/// sends the same sequence of reliable messages as l2tpns did).
#[test]
fn xl2tpd_lac_against_our_lns() {
    let lac_ip = [192, 0, 2, 2];
    let lac: SocketAddr = "192.0.2.2:1701".parse().expect("addr");
    let mut cfg = EndpointConfig { allow_unlisted_peers: true, seed: Some(5), ..EndpointConfig::default() };
    // The replayed LAC cannot acknowledge a HELLO of ours (l2tpns sent
    // none), so keep ours quiet: xl2tpd's HELLOs every 60 s reset the timer.
    cfg.tunnel.hello_interval = Duration::from_secs(90);
    let mut ep = Endpoint::new(cfg);
    let frames = captured("xl2tpd-lac_l2tpns-lns_control.pcap");
    let t0 = Instant::now();
    let first = frames.first().map(|f| f.at).expect("frames");
    let mut ours: Option<(TunnelId, SessionId)> = None;
    let mut sent = Vec::new();
    let mut events = Vec::new();
    // Run our timers up to `until`, collecting what we send.
    let run_timers = |ep: &mut Endpoint, until: Instant, sent: &mut Vec<(Duration, Option<MessageType>)>| {
        while let Some(t) = ep.poll_timeout().filter(|t| *t <= until) {
            ep.handle_timeout(t);
            while let Some(x) = ep.poll_transmit(t) {
                let m = Message::parse(&x.payload, None).expect("our message parses");
                sent.push((t - t0, m.message_type()));
            }
        }
    };
    for f in frames.iter().filter(|f| f.src == lac_ip && f.data.first().is_some_and(|b| b & 0x80 != 0)) {
        let now = t0 + (f.at - first);
        run_timers(&mut ep, now, &mut sent);
        let mut d = f.data.clone();
        let (tid, sid) = (u16::from_be_bytes([d[4], d[5]]), u16::from_be_bytes([d[6], d[7]]));
        if tid != 0 {
            let t = ep.tunnel_ids().next().expect("tunnel");
            d[4..6].copy_from_slice(&t.0.to_be_bytes());
        }
        if sid != 0 {
            let (_, s) = ours.expect("session assigned");
            d[6..8].copy_from_slice(&s.0.to_be_bytes());
        }
        let ev = ep.handle_datagram(now, lac, &d);
        assert!(matches!(ev, DatagramEvent::Control(_)), "{ev:?}");
        while let Some(t) = ep.poll_transmit(now) {
            assert_eq!(t.destination, lac);
            let m = Message::parse(&t.payload, None).expect("our message parses");
            // Addressed with the LAC's ids from its SCCRQ/ICRQ.
            assert_eq!(m.tunnel_id, TunnelId(43483));
            if m.message_type() == Some(MessageType::Icrp) {
                assert_eq!(m.session_id, SessionId(63045));
                let t = ep.tunnel_ids().next().expect("tunnel");
                ours = Some((t, m.assigned_session_id().expect("assigned")));
            }
            sent.push((now - t0, m.message_type()));
        }
        while let Some((_, e)) = ep.poll_event() {
            events.push(e);
        }
    }
    let last = frames.last().map(|f| f.at - first).expect("frames");
    run_timers(&mut ep, t0 + last + Duration::from_secs(1), &mut sent);
    let types: Vec<_> = sent.iter().filter_map(|s| s.1).collect();
    assert_eq!(types, [MessageType::Sccrp, MessageType::Icrp]);
    // Messages we do not answer are acked at once by a ZLB (SCCCN, ICCN,
    // CDN and the two HELLOs, at the capture's times); ICRQ is acked by the
    // ICRP's Nr.
    let zlbs: Vec<u64> = sent.iter().filter(|s| s.1.is_none()).map(|s| s.0.as_millis() as u64).collect();
    assert_eq!(zlbs, [0, 0, 10, 60_059, 120_119], "{sent:?}");
    assert!(matches!(&events[0], Event::TunnelUp { peer_tunnel_id, peer_host_name }
        if *peer_tunnel_id == TunnelId(43483) && peer_host_name == b"vm"));
    let Event::IncomingCall { peer_session_id: called, .. } = &events[1] else { panic!("{events:?}") };
    assert_eq!(*called, SessionId(63045));
    let Event::SessionUp { info, peer_session_id, .. } = &events[2] else { panic!("{events:?}") };
    assert_eq!(*peer_session_id, SessionId(63045));
    assert_eq!(info.call_serial_number, 1);
    assert_eq!(info.framing_type, Some(framing::SYNC));
    assert_eq!((info.tx_connect_speed, info.rx_connect_speed), (Some(0), Some(0)));
    let Event::SessionDown { cause, .. } = &events[3] else { panic!("{events:?}") };
    assert!(cause.by_peer);
    assert!(cause.result.is_some());
    // No teardown: one retransmission is far from the retry limit.
    assert!(!events.iter().any(|e| matches!(e, Event::TunnelDown { .. })));
    assert_eq!(events.len(), 4);
}
