//! Arbitrary bytes as a DHCPv6 message from a subscriber, and as the
//! IPv6/UDP packet around one: the parsers refuse or accept without
//! panicking, and whatever the message parser accepts emits and parses
//! back to the same thing, at the length it announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lns_wire::dhcpv6::{Repr, Udp6};

fuzz_target!(|data: &[u8]| {
    if let Ok(repr) = Repr::parse_bytes(data) {
        let bytes = repr.to_bytes();
        assert_eq!(bytes.len(), repr.buffer_len());
        assert_eq!(Repr::parse_bytes(&bytes).as_ref(), Ok(&repr));
    }
    if let Ok(udp) = Udp6::parse(data) {
        let again = udp.emit();
        assert_eq!(Udp6::parse(&again).as_ref(), Ok(&udp));
        let _ = Repr::parse_bytes(udp.payload);
    }
});
