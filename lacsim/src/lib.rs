//! lns-lacsim: LACs carrying PPP subscribers, for tests, the demo and load
//! tests. The protocol work is the project's own sans-IO L2TP endpoint (LAC
//! role) and PPP sessions (client role); see [`emulator`].

#![forbid(unsafe_code)]

pub mod emulator;
pub mod trafgen;
pub mod tun;
