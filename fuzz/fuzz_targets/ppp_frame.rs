//! Arbitrary PPP frames into both ends of a PPP session (every parser of
//! LCP, IPCP, IPv6CP, PAP, CHAP and MS-CHAPv2 sits behind handle_frame).
//! Invariant: no panic, whatever arrives; the session keeps answering.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lns_controlplane::ppp::auth::Credentials;
use lns_controlplane::ppp::session::{Session, SessionConfig};
use lns_controlplane::ppp::{ChaCha8Rng, SeedableRng};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let client = SessionConfig::client(Credentials { username: "u".into(), password: "p".into() });
    for cfg in [SessionConfig::server("lns"), client] {
        let mut s = Session::new(cfg, ChaCha8Rng::seed_from_u64(1661));
        s.open(now);
        // The input is a sequence of frames, each prefixed by one length byte.
        let mut rest = data;
        let mut t = now;
        while let Some((&len, tail)) = rest.split_first() {
            let n = (len as usize).min(tail.len());
            let _ = s.handle_frame(t, &tail[..n]);
            rest = &tail[n..];
            t += Duration::from_millis(300);
            s.handle_timeout(t);
            while s.poll_transmit().is_some() {}
            while s.poll_event().is_some() {}
        }
    }
});
