//! The LNS control plane: sans-IO protocol cores (L2TPv2, PPP) and the tokio
//! layer that drives them.
//!
//! The protocol modules own no sockets and read no clock: the caller feeds
//! datagrams and time and takes out datagrams, events and the next timer.

pub mod l2tp;
pub mod ppp;
