//! The LNS control plane: sans-IO protocol cores (L2TPv2, PPP), the
//! subscriber core that joins them, and the tokio layer that drives it.
//!
//! The protocol modules and the [`subscriber`] core own no sockets and read
//! no clock: the caller feeds datagrams, answers and time and takes out
//! datagrams, effects and the next timer. [`daemon`] is that caller for the
//! `lns-controlplane` process; [`ctl`] is the protocol of its control
//! socket, spoken by `lnsctl`; [`snapshot`] stores the cores' deadlines
//! relative to a moment the caller gives, so their state can be written
//! and read back.

#![forbid(unsafe_code)]

pub mod ctl;
pub mod daemon;
pub mod l2tp;
pub mod lazy_box;
pub mod ppp;
pub mod snapshot;
pub mod subscriber;
