//! The LNS control plane: sans-IO protocol cores (L2TPv2, PPP) and the tokio
//! layer that drives them.
//!
//! The protocol modules own no sockets and read no clock: the caller feeds
//! datagrams and time and takes out datagrams, events and the next timer.
//! [`daemon`] is that caller for the `lns-controlplane` process; [`ctl`] is
//! the protocol of its control socket, spoken by `lnsctl`.

pub mod ctl;
pub mod daemon;
pub mod l2tp;
pub mod ppp;
pub mod snapshot;
pub mod subscriber;
