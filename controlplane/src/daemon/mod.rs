//! The `lns-controlplane` process: the tokio layer around the sans-IO
//! protocol cores.
//!
//! - [`config`]: the TOML file and the flags over it;
//! - [`aaa`]: the local users file and the IPv4 address pools;
//! - [`server`]: the event loop (one file, read top to bottom), a driver
//!   of the subscriber core ([`crate::subscriber`]);
//! - [`notice`]: the core's notices, written to the log;
//! - [`udp`]: the L2TP socket, which knows which local address a peer used;
//! - [`ports`]: sockets on the tunnels' own ports (RFC 2661 §8.1);
//! - [`fastpath`]: sessions written into the data plane's pinned maps;
//! - [`control`]: the Unix control socket `lnsctl` talks to;
//! - [`radius`]: RADIUS authentication, accounting records per session;
//! - [`accounting`]: the accounting sender and its durable spool;
//! - [`dynauth`]: RFC 5176 Disconnect and CoA requests;
//! - [`store`]: the sessions, kept as they change for the next start;
//! - [`committer`]: the store's commits on a thread of their own, the
//!   loop's output held until they are done.

pub mod aaa;
pub mod accounting;
pub mod committer;
pub mod config;
pub mod control;
pub mod dynauth;
pub mod fastpath;
pub mod metrics;
pub mod notice;
pub mod ports;
pub mod radius;
pub mod routes;
pub mod server;
pub mod store;
pub mod tun;
pub mod udp;

pub use config::{Config, Flags};
pub use server::run;
