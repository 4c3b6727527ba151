//! The LNS fast path: AF_XDP workers that decapsulate and encapsulate PPP
//! payloads. The binary `lns-dataplane` drives this library.

pub mod config;
pub mod log;
pub mod metrics;
pub mod packet;
pub mod police;
pub mod ring;
pub mod supervisor;
pub mod worker;
