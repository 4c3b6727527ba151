//! Disconnect and CoA requests from the network through the LNS's RFC 5176
//! server: never a panic, whatever the bytes. Half the inputs are signed
//! with the client's secret first (when they parse) so that the checks
//! after the authenticator — timestamps, attributes, the reply cache, the
//! answer — see them too.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lns_controlplane::daemon::dynauth::{select, DynAuthClient, DynAuthServer, SessionView, Verdict};
use lns_radius::access::NasIdentity;
use lns_radius::{Packet, PacketRepr};

const SECRET: &[u8] = b"coa-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else { return };
    let mut server = DynAuthServer::new(
        vec![DynAuthClient {
            address: Ipv4Addr::LOCALHOST.into(),
            secret: SECRET.to_vec(),
            require_message_authenticator: mode & 2 != 0,
        }],
        Duration::from_secs(300),
        mode & 4 != 0,
        NasIdentity { ip: Some(Ipv4Addr::new(192, 0, 2, 1)), ipv6: None, identifier: Some("lns".into()) },
    );
    let signed;
    let bytes = if mode & 1 != 0 {
        match Packet::new_checked(data).and_then(|p| PacketRepr::parse(&p)).and_then(|r| r.encode(SECRET, None)) {
            Ok(b) => {
                signed = b;
                &signed[..]
            }
            Err(_) => data,
        }
    } else {
        data
    };
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 4000));
    let now = Instant::now();
    for _ in 0..2 {
        match server.handle(now, 1_700_000_000, from, bytes) {
            Verdict::Act(action) => {
                let keys = select(
                    &action.request.selector,
                    [SessionView {
                        key: 1u32,
                        acct_session_id: Some("A"),
                        user_name: Some(&b"bob"[..]),
                        framed_ip: Some(Ipv4Addr::new(198, 51, 100, 1)),
                        nas_port: 7,
                        calling_station_id: None,
                    }],
                );
                let result = if keys.is_empty() { Err(503) } else { Ok(()) };
                let _ = server.complete(now, action, result);
            }
            Verdict::Reply(_) | Verdict::Drop => {}
        }
    }
});
