//! Feed arbitrary bytes to the L2TP header and control-message parsers.
//! Invariants: no panic; whatever parses re-emits, and the re-emitted bytes
//! parse back to the same message (with and without a tunnel secret, so
//! hidden AVPs are exercised too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lns_controlplane::l2tp::header::{Packet, Repr};
use lns_controlplane::l2tp::message::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let _ = p.payload();
        if let Ok(r) = Repr::parse(&p) {
            let out = r.to_vec(p.payload()).expect("a parsed header re-emits");
            let again = Packet::new_checked(&out[..]).expect("re-emitted header parses");
            assert_eq!(Repr::parse(&again).ok(), Some(r));
        }
    }
    for secret in [None, Some(&b"secret"[..])] {
        if let Ok(m) = Message::parse(data, secret) {
            let _ = m.validate();
            let bytes = m.emit(secret).expect("a parsed message re-emits");
            assert_eq!(Message::parse(&bytes, secret).as_ref(), Ok(&m));
        }
    }
});
