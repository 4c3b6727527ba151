//! Arbitrary bytes as IPv6 Neighbour Discovery from a subscriber: the
//! parser must refuse or accept without panicking, and whatever it accepts
//! must emit and parse back to the same thing. A router and a host are fed
//! it too, as the PPP session would.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lns_controlplane::ppp::nd::{Host, Repr, Router, RouterConfig};
use lns_controlplane::ppp::{ChaCha8Rng, SeedableRng};

fuzz_target!(|data: &[u8]| {
    let Ok(repr) = Repr::parse_bytes(data) else { return };
    assert_eq!(Repr::parse_bytes(&repr.emit()).as_ref(), Ok(&repr));
    let now = Instant::now();
    let mut router =
        Router::new(now, RouterConfig::default(), [2; 8], "2001:db8:100::".parse().unwrap(), 64, Some(1500));
    router.handle_solicitation(now + Duration::from_secs(1), &mut ChaCha8Rng::seed_from_u64(1661));
    while router.poll_transmit().is_some() {}
    let mut host = Host::new(now, [3; 8]);
    let _ = host.handle_advertisement(&repr);
});
