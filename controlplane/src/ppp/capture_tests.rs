//! The codecs against real captures (testdata/captures, copied from the shared captures): every PPP
//! message must parse and re-emit to the same bytes. A missing capture fails.

use super::auth::AuthMethod;
use super::chap::ChapRepr;
use super::frame::{Frame, FrameRepr, Protocol};
use super::fsm::{OptionPolicy, Verdict};
use super::ipcp::{IpcpConfig, IpcpOption, IpcpPolicy, IpcpRepr};
use super::ipv6cp::Ipv6cpRepr;
use super::lcp::{LcpConfig, LcpOption, LcpPolicy, LcpRepr, Packet, RawOption, Repr};
use super::pap::PapRepr;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

fn capture_path(name: &str) -> String {
    format!("{}/../testdata/captures/{}", env!("CARGO_MANIFEST_DIR"), name)
}

fn open(name: &str) -> std::fs::File {
    let path = capture_path(name);
    std::fs::File::open(&path).unwrap_or_else(|e| panic!("capture {path} must exist: {e}"))
}

/// Link-layer records of a capture, pcap or pcapng (some ".pcap" files are
/// pcapng, recognised by the Section Header Block magic).
fn records(name: &str) -> Vec<Vec<u8>> {
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut open(name), &mut magic).expect("capture magic");
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        pcapng_records(name)
    } else {
        pcap_records(name)
    }
}

/// Link-layer records of a pcap file.
fn pcap_records(name: &str) -> Vec<Vec<u8>> {
    let mut reader = pcap_file::pcap::PcapReader::new(open(name)).expect("pcap header");
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        out.push(packet.expect("pcap record").data.into_owned());
    }
    out
}

/// Link-layer records of a pcapng file.
fn pcapng_records(name: &str) -> Vec<Vec<u8>> {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut reader = PcapNgReader::new(open(name)).expect("pcapng header");
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.expect("pcapng block") {
            Block::EnhancedPacket(b) => out.push(b.data.into_owned()),
            Block::SimplePacket(b) => out.push(b.data.into_owned()),
            Block::Packet(b) => out.push(b.data.into_owned()),
            _ => {}
        }
    }
    out
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// Skip Ethernet (and 802.1Q tags); returns (ethertype, payload).
fn ethernet(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = be16(frame, at)?;
    }
    Some((ethertype, frame.get(at + 2..)?))
}

/// PPP frame inside an L2TPv2 data message over UDP/IPv4/Ethernet.
fn l2tp_ppp(frame: &[u8]) -> Option<Vec<u8>> {
    let (ethertype, ip) = ethernet(frame)?;
    if ethertype != 0x0800 || *ip.get(9)? != 17 {
        return None;
    }
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let udp = ip.get(ihl..)?;
    let udp_len = usize::from(be16(udp, 4)?);
    let (sport, dport) = (be16(udp, 0)?, be16(udp, 2)?);
    if sport != 1701 && dport != 1701 {
        return None;
    }
    let l2tp = udp.get(8..udp_len)?;
    // RFC 2661 §3.1 header.
    let flags = be16(l2tp, 0)?;
    if flags & 0x8000 != 0 || flags & 0x000f != 2 {
        return None; // control message, or not L2TPv2
    }
    let mut at = 2;
    let mut end = l2tp.len();
    if flags & 0x4000 != 0 {
        end = usize::from(be16(l2tp, at)?);
        at += 2;
    }
    at += 4; // tunnel, session
    if flags & 0x0800 != 0 {
        at += 4; // Ns, Nr
    }
    if flags & 0x0200 != 0 {
        at += 2 + usize::from(be16(l2tp, at)?);
    }
    Some(l2tp.get(at..end)?.to_vec())
}

/// PPP frame (Protocol onward) of a PPPoE session frame (RFC 2516 §4).
fn pppoe_ppp(frame: &[u8]) -> Option<Vec<u8>> {
    let (ethertype, pppoe) = ethernet(frame)?;
    if ethertype != 0x8864 {
        return None;
    }
    let len = usize::from(be16(pppoe, 4)?);
    Some(pppoe.get(6..6 + len)?.to_vec())
}

/// Parse one PPP frame with the matching codec, check the re-emission, and
/// return its protocol.
fn check_frame(frame: &[u8]) -> Protocol {
    let view = Frame::new_checked(frame).unwrap_or_else(|e| panic!("frame {frame:02x?}: {e}"));
    let header = FrameRepr::parse(&view).expect("header");
    let payload = view.payload();
    let protocol = header.protocol;
    let packet =
        |p: &[u8]| Packet::new_checked(p.to_vec()).unwrap_or_else(|e| panic!("{protocol:?} {p:02x?}: {e}"));
    let emitted = match protocol {
        Protocol::LCP => LcpRepr::parse(&packet(payload)).expect("LCP").to_bytes(),
        Protocol::IPCP => IpcpRepr::parse_ncp(&packet(payload)).expect("IPCP").to_bytes(),
        Protocol::IPV6CP => Ipv6cpRepr::parse_ncp(&packet(payload)).expect("IPv6CP").to_bytes(),
        Protocol::CCP | Protocol::CDPCP => {
            Repr::<RawOption>::parse_ncp(&packet(payload)).expect("NCP").to_bytes()
        }
        Protocol::PAP => PapRepr::parse(&packet(payload)).expect("PAP").to_bytes(),
        Protocol::CHAP => ChapRepr::parse(&packet(payload)).expect("CHAP").to_bytes(),
        Protocol::IPV4 | Protocol::IPV6 => Ok(payload.to_vec()),
        other => panic!("unexpected protocol {other:?}"),
    }
    .expect("emit");
    // The captures carry no padding, so the whole frame must come back.
    assert_eq!(header.encapsulate(&emitted), frame, "{protocol:?}");
    protocol
}

fn census(frames: &[Vec<u8>]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for f in frames {
        *counts.entry(check_frame(f).0).or_insert(0) += 1;
    }
    counts
}

fn l2tp_frames(name: &str) -> Vec<Vec<u8>> {
    records(name).iter().filter_map(|r| l2tp_ppp(r)).collect()
}

#[test]
fn l2tpns_chap_capture() {
    let frames = l2tp_frames("l2tpns-lns_ppp-chap-ipcp.pcap");
    let counts = census(&frames);
    let want: BTreeMap<u16, usize> = [(0x0021, 7), (0x8021, 6), (0xc021, 8), (0xc223, 3)].into();
    assert_eq!(counts, want);
    // The CHAP Challenge named "vm" and the Response for "testuser".
    let chap: Vec<ChapRepr> = frames
        .iter()
        .filter(|f| f.get(2..4) == Some(&[0xc2, 0x23]))
        .map(|f| ChapRepr::parse(&Packet::new_checked(&f[4..]).expect("p")).expect("chap"))
        .collect();
    assert!(
        matches!(&chap[0], ChapRepr::Challenge { name, value, .. } if name == b"vm" && value.len() == 16)
    );
    assert!(matches!(&chap[1], ChapRepr::Response { name, .. } if name == b"testuser"));
    assert!(matches!(&chap[2], ChapRepr::Success { message, .. } if message.is_empty()));
}

#[test]
fn l2tpns_pap_capture() {
    let frames = l2tp_frames("l2tpns-lns_ppp-pap-ipcp.pcap");
    let counts = census(&frames);
    let want: BTreeMap<u16, usize> = [(0x0021, 7), (0x8021, 6), (0xc021, 10), (0xc023, 2)].into();
    assert_eq!(counts, want);
    let request = frames.iter().find(|f| f.get(2..5) == Some(&[0xc0, 0x23, 1])).expect("PAP request");
    assert_eq!(
        PapRepr::parse(&Packet::new_checked(&request[4..]).expect("p")).expect("pap"),
        PapRepr::AuthenticateRequest {
            identifier: 1,
            peer_id: b"fixeduser".to_vec(),
            password: b"fixedpass".to_vec()
        }
    );
}

#[test]
fn cisco_serial_capture() {
    let frames = records("cisco-ios_ppp-serial_lcp-chap-ipcp.pcapng");
    let counts = census(&frames);
    let want: BTreeMap<u16, usize> = [(0x0021, 2), (0x8021, 4), (0x8207, 4), (0xc021, 8), (0xc223, 3)].into();
    assert_eq!(counts, want);
}

#[test]
fn cisco_pppoe_capture() {
    let frames: Vec<Vec<u8>> = records("cisco-ios_pppoe-bng_lcp-pap-ipcp-radius.pcapng")
        .iter()
        .filter_map(|r| pppoe_ppp(r))
        .collect();
    let counts = census(&frames);
    let want: BTreeMap<u16, usize> = [(0x8021, 27), (0xc021, 31), (0xc023, 6)].into();
    assert_eq!(counts, want);
    // PPPoE frames carry no Address/Control (RFC 2516 §7).
    assert!(frames.iter().all(|f| !Frame::new_unchecked(f).has_address_control()));
}

#[test]
fn truncations_of_captured_packets_never_panic() {
    let mut frames = l2tp_frames("l2tpns-lns_ppp-chap-ipcp.pcap");
    frames.extend(records("cisco-ios_ppp-serial_lcp-chap-ipcp.pcapng"));
    for frame in &frames {
        for n in 0..frame.len() {
            let cut = &frame[..n];
            let Ok(view) = Frame::new_checked(cut) else { continue };
            let payload = view.payload();
            let parsed_ok = match Packet::new_checked(payload) {
                Err(_) => false,
                Ok(p) => match view.protocol() {
                    Protocol::LCP => LcpRepr::parse(&p).is_ok(),
                    Protocol::IPCP => IpcpRepr::parse_ncp(&p).is_ok(),
                    Protocol::CHAP => ChapRepr::parse(&p).is_ok(),
                    Protocol::PAP => PapRepr::parse(&p).is_ok(),
                    _ => Repr::<RawOption>::parse_ncp(&p).is_ok(),
                },
            };
            // A cut control packet has a Length beyond the buffer.
            if view.protocol().is_link_control() || view.protocol().is_network_control() {
                assert!(!parsed_ok, "truncated {n} of {frame:02x?} parsed");
            }
        }
    }
}

/// What real subscribers sent, judged by our LNS policies.
#[test]
fn our_policies_on_captured_requests() {
    let frames = l2tp_frames("l2tpns-lns_ppp-chap-ipcp.pcap");
    let requests = |proto: [u8; 2]| -> Vec<Vec<u8>> {
        frames
            .iter()
            .filter(|f| f.get(2..4) == Some(&proto[..]) && f.get(4) == Some(&1))
            .map(|f| f[4..].to_vec())
            .collect()
    };
    // The xl2tpd client's LCP request (MRU 1400, magic) is acceptable; the
    // LNS's own first request (MRRU, endpoint discriminator) asked of us
    // would be rejected on exactly those two options.
    let mut lcp = LcpPolicy::new(
        LcpConfig { require_auth: vec![AuthMethod::ChapMd5], ..LcpConfig::default() },
        &mut crate::ppp::test_rng(),
    );
    let lcp_requests = requests([0xc0, 0x21]);
    let options = |bytes: &[u8]| match LcpRepr::parse(&Packet::new_checked(bytes).expect("p")).expect("lcp") {
        Repr::ConfigureRequest { options, .. } => options,
        other => panic!("{other:?}"),
    };
    let client = lcp_requests
        .iter()
        .map(|r| options(r))
        .find(|o| o.contains(&LcpOption::MaximumReceiveUnit(1400)))
        .expect("client request");
    assert_eq!(lcp.judge(&client, &mut crate::ppp::test_rng()), Verdict::Ack);
    let lns = options(&lcp_requests[0]);
    match lcp.judge(&lns, &mut crate::ppp::test_rng()) {
        Verdict::Reject(r) => {
            let kinds: Vec<u8> = r.iter().map(super::lcp::ConfigOption::kind).collect();
            // Auth asked of the server side, MRRU, endpoint discriminator.
            assert_eq!(kinds, vec![3, 17, 19]);
        }
        other => panic!("{other:?}"),
    }
    // The client's IPCP request (0.0.0.0 and DNS) gets our assigned values.
    let mut ipcp = IpcpPolicy::new(
        IpcpConfig {
            local_address: Some(Ipv4Addr::new(192, 0, 2, 1)),
            peer_address: Some(Ipv4Addr::new(198, 51, 100, 1)),
            primary_dns: Some(Ipv4Addr::new(192, 0, 2, 53)),
            secondary_dns: Some(Ipv4Addr::new(192, 0, 2, 54)),
            ..Default::default()
        },
        true,
    );
    let first_client_ipcp = requests([0x80, 0x21])
        .into_iter()
        .map(|r| match IpcpRepr::parse_ncp(&Packet::new_checked(&r[..]).expect("p")).expect("ipcp") {
            Repr::ConfigureRequest { options, .. } => options,
            other => panic!("{other:?}"),
        })
        .find(|o| o.contains(&IpcpOption::IpAddress(Ipv4Addr::UNSPECIFIED)))
        .expect("client IPCP request");
    match ipcp.judge(&first_client_ipcp, &mut crate::ppp::test_rng()) {
        Verdict::Nak(n) => assert!(n.contains(&IpcpOption::IpAddress(Ipv4Addr::new(198, 51, 100, 1)))),
        other => panic!("{other:?}"),
    }
}
