//! RADIUS packets from the network: parsing never panics, and whatever
//! parses re-emits to the same bytes. Every reader of attribute values
//! (typed accessors, vendor and tagged formats, dictionary decoding,
//! decryption, authenticator checks) runs on what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lns_radius::access::Authorization;
use lns_radius::dictionary::Dictionary;
use lns_radius::dynauth::DynAuthRequest;
use lns_radius::microsoft::MsReply;
use lns_radius::{crypto, Packet, PacketRepr};
use std::sync::OnceLock;

fn dictionary() -> &'static Dictionary {
    static D: OnceLock<Dictionary> = OnceLock::new();
    D.get_or_init(Dictionary::builtin)
}

fuzz_target!(|data: &[u8]| {
    let _ = crypto::verify_response(data, b"secret", &[0; 16], true);
    let _ = crypto::verify_request(data, b"secret", false);
    let Ok(packet) = Packet::new_checked(data) else { return };
    let Ok(repr) = PacketRepr::parse(&packet) else { return };
    let emitted = repr.to_bytes().expect("a parsed packet emits");
    assert_eq!(&emitted[..], packet.as_bytes());
    assert_eq!(repr.buffer_len(), emitted.len());
    let _ = Authorization::from_packet(&repr);
    let _ = DynAuthRequest::from_packet(&repr);
    let _ = MsReply::from_packet(&repr);
    for a in &repr.attributes {
        let _ = dictionary().decode(a);
        let _ = a.as_tagged_integer();
        let _ = a.as_tagged_string();
        let _ = a.as_ipv6_prefix();
        let _ = a.as_vendor_specific();
        let _ = crypto::recover_user_password(a.value(), b"secret", &repr.authenticator);
        let _ = crypto::salt_decrypt(a.value(), b"secret", &repr.authenticator);
    }
});
