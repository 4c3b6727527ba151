//! The codec against the reference captures (testdata/captures): every
//! RADIUS message in them parses and re-emits byte for byte, and every
//! truncation of them is refused.

use std::fs::File;

use lns_radius::crypto;
use lns_radius::dynauth::DynAuthRequest;
use lns_radius::{AttributeType as T, Code, Packet, PacketRepr};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/captures/");

const RADIUS_PORTS: [u16; 5] = [1812, 1813, 1645, 1646, 3799];

/// UDP payloads to or from a RADIUS port in Ethernet (optionally 802.1Q)
/// IPv4 frames.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut at = 14;
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        at = 18;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = frame.get(at..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 17 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let udp = ip.get(ihl..total)?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    if !RADIUS_PORTS.contains(&sport) && !RADIUS_PORTS.contains(&dport) {
        return None;
    }
    udp.get(8..)
}

fn radius_messages(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{DIR}{name}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    if name.ends_with(".pcapng") {
        let mut r = PcapNgReader::new(file).expect("pcapng header");
        while let Some(block) = r.next_block() {
            let data = match block.expect("pcapng block") {
                Block::EnhancedPacket(p) => p.data.into_owned(),
                Block::SimplePacket(p) => p.data.into_owned(),
                _ => continue,
            };
            out.extend(udp_payload(&data).map(<[u8]>::to_vec));
        }
    } else {
        let mut r = PcapReader::new(file).expect("pcap header");
        while let Some(p) = r.next_packet() {
            let p = p.expect("pcap packet");
            out.extend(udp_payload(&p.data).map(<[u8]>::to_vec));
        }
    }
    out
}

fn parse_and_reemit(messages: &[Vec<u8>]) -> Vec<PacketRepr> {
    messages
        .iter()
        .map(|m| {
            let repr = PacketRepr::from_bytes(m).unwrap_or_else(|e| panic!("parse {m:02x?}: {e}"));
            let emitted = repr.to_bytes().expect("emit");
            assert_eq!(&emitted[..], Packet::new_checked(&m[..]).expect("checked").as_bytes());
            assert_eq!(repr.buffer_len(), emitted.len());
            for n in 0..m.len().min(usize::from(Packet::new_checked(&m[..]).expect("checked").length())) {
                assert!(PacketRepr::from_bytes(&m[..n]).is_err(), "truncated to {n}");
            }
            repr
        })
        .collect()
}

#[test]
fn rfc5176_coa_disconnect_capture() {
    let messages = radius_messages("radius-rfc5176_coa-disconnect.pcap");
    let reprs = parse_and_reemit(&messages);
    let codes: Vec<Code> = reprs.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [
            Code::DisconnectRequest,
            Code::DisconnectAck,
            Code::DisconnectNak,
            Code::CoaRequest,
            Code::CoaAck,
            Code::CoaNak
        ]
    );
    for r in &reprs {
        assert_eq!(r.get_all(T::MESSAGE_AUTHENTICATOR).count(), 1, "{:?}", r.code);
        // The requests carry only a Message-Authenticator: no session is
        // named, which a NAS answers with a NAK (RFC 5176 §3.5, 402).
        if matches!(r.code, Code::DisconnectRequest | Code::CoaRequest) {
            assert_eq!(DynAuthRequest::from_packet(r), Err(402));
        }
    }
    // Signed with a secret we do not know: verification must fail, not
    // panic, with any guess.
    for m in &messages {
        if Packet::new_checked(&m[..]).expect("checked").code().has_computed_request_authenticator() {
            assert!(crypto::verify_request(m, b"not-the-secret", true).is_err());
        }
    }
}

#[test]
fn cisco_bng_access_and_accounting_capture() {
    let messages = radius_messages("cisco-ios_pppoe-bng_lcp-pap-ipcp-radius.pcapng");
    let reprs = parse_and_reemit(&messages);
    assert_eq!(reprs.len(), 24);
    let count = |c| reprs.iter().filter(|r| r.code == c).count();
    assert_eq!(count(Code::AccessRequest), 4);
    assert_eq!(count(Code::AccessAccept), 4);
    assert_eq!(count(Code::AccountingRequest), 8);
    assert_eq!(count(Code::AccountingResponse), 8);
    for r in reprs.iter().filter(|r| r.code == Code::AccountingRequest) {
        assert!(r.get(T::ACCT_SESSION_ID).is_some());
        assert!(r.get(T::ACCT_STATUS_TYPE).and_then(|a| a.as_integer().ok()).is_some());
    }
    // Cisco sends its AVPairs as vendor 9 sub-attributes: they parse.
    assert!(reprs.iter().any(|r| r.vendor_attributes(9).count() > 0));

    // The lab's shared secret is "cisco": every authenticator in the
    // capture verifies with it, which checks our RFC 2865 §3 and RFC 2866
    // §3 computations against a third party's.
    let secret = b"cisco";
    for (m, r) in messages.iter().zip(&reprs) {
        match r.code {
            Code::AccountingRequest => crypto::verify_request(m, secret, false).expect("Accounting-Request"),
            Code::AccessRequest => {
                let hidden = r.get(T::USER_PASSWORD).expect("PAP").value();
                let clear = crypto::recover_user_password(hidden, secret, &r.authenticator).expect("recover");
                // The lab user's PAP password, recovered per RFC 2865 §5.2.
                assert_eq!(clear, b"cisco");
            }
            code => {
                let request = reprs
                    .iter()
                    .find(|q| q.identifier == r.identifier && code.answers(q.code))
                    .expect("its request");
                crypto::verify_response(m, secret, &request.authenticator, false).expect("response");
                assert!(crypto::verify_response(m, b"cisc0", &request.authenticator, false).is_err());
            }
        }
    }
}
