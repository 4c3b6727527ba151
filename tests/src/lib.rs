//! The demo (`lns-demo`, run by `scripts/demo.sh`): the whole LNS in a
//! namespace lab. This crate holds no tests.
//!
//! The end-to-end tests sit in the `tests/` directory of the crate they
//! exercise, most of them in the namespaces, veths and pin directories of
//! `lns-testlab`:
//!
//! - `bpf/tests/`: the XDP program under BPF_PROG_TEST_RUN (`xdp_verdicts.rs`)
//!   and attached to veths with real packets (`attach.rs`);
//! - `dataplane/tests/fastpath.rs`: lns-dataplane between a LAC and a core
//!   namespace, frames compared byte for byte;
//! - `controlplane/tests/`: lns-controlplane over real UDP (`controlplane.rs`),
//!   PPP end to end (`ppp.rs`), lnsctl against the pinned maps (`lnsctl.rs`),
//!   xl2tpd as the LAC (`xl2tpd.rs`);
//! - `lacsim/tests/`: lns-lacsim against the whole LNS (`e2e.rs`) and with
//!   FreeRADIUS (`radius.rs`);
//! - `radius/tests/freeradius.rs`: the RADIUS client against FreeRADIUS on
//!   the host's loopback.

#![forbid(unsafe_code)]
