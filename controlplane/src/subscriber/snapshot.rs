//! The core's state as plain data: what a restarted process needs to take
//! its tunnels and subscribers back.
//!
//! A snapshot holds the L2TP endpoint (tunnels, their control channels'
//! sequence and retransmission state, sessions, id spaces), every tunnel's
//! and subscriber's record (PPP with its negotiated options, magic numbers
//! and timers, the user, addresses and prefixes, accounting ids, baseline
//! and schedule), the calls not yet connected, the sessions waiting for
//! their Stop, and the RNG. Deadlines are stored relative to the moment of
//! the snapshot (see [`crate::snapshot`]).
//!
//! Not in it, because it is derived or belongs to the process: the pools'
//! bookkeeping (rebuilt from the subscribers' addresses, so none is given
//! twice), the PPP timer index, the counters of `lnsctl show stats`, and
//! effects not yet carried out (take a snapshot after draining them).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Calling, Core, CoreConfig, SessionKey, Subscriber, TunnelRecord};
use crate::daemon::aaa::AaaError;
use crate::l2tp::{Endpoint, TunnelId};

#[derive(Serialize)]
struct StateRef<'a> {
    endpoint: &'a Endpoint,
    tunnels: Vec<(&'a TunnelId, &'a TunnelRecord)>,
    sessions: Vec<(&'a SessionKey, &'a Subscriber)>,
    calling: Vec<(&'a SessionKey, &'a Calling)>,
    stopping: Vec<(&'a SessionKey, &'a Subscriber)>,
    peer_local: Vec<(&'a SocketAddr, &'a IpAddr)>,
    acct_sessions: u64,
    draining: bool,
    rng: &'a ChaCha8Rng,
}

#[derive(Deserialize)]
struct State {
    endpoint: Endpoint,
    tunnels: Vec<(TunnelId, TunnelRecord)>,
    sessions: Vec<(SessionKey, Subscriber)>,
    calling: Vec<(SessionKey, Calling)>,
    stopping: Vec<(SessionKey, Subscriber)>,
    peer_local: Vec<(SocketAddr, IpAddr)>,
    acct_sessions: u64,
    draining: bool,
    rng: ChaCha8Rng,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the snapshot does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    #[error(transparent)]
    Config(#[from] AaaError),
    #[error("address {0} is held by two sessions of the snapshot")]
    AddressTwice(String),
}

impl Core {
    /// The state as JSON, deadlines relative to `now`.
    pub fn snapshot(&self, now: Instant) -> Result<String, serde_json::Error> {
        let state = StateRef {
            endpoint: &self.endpoint,
            tunnels: self.tunnels.iter().collect(),
            sessions: self.sessions.iter().collect(),
            calling: self.calling.iter().collect(),
            stopping: self.stopping.iter().collect(),
            peer_local: self.peer_local.iter().collect(),
            acct_sessions: self.acct_sessions,
            draining: self.draining,
            rng: &self.rng,
        };
        crate::snapshot::with_base(now, || serde_json::to_string(&state))
    }

    /// A core that continues from `snapshot` at `now`, with this process's
    /// configuration; the pools hold the subscribers' addresses again.
    pub fn restore(cfg: CoreConfig, snapshot: &str, now: Instant) -> Result<Core, RestoreError> {
        let state: State = crate::snapshot::with_base(now, || serde_json::from_str(snapshot))?;
        let mut core = Core::new(cfg, now)?;
        core.endpoint = state.endpoint;
        // This start's peers and limits; the id spaces stay the snapshot's.
        core.endpoint.reconfigure(core.cfg.endpoint.clone());
        core.tunnels = state.tunnels.into_iter().collect();
        core.sessions = state.sessions.into_iter().collect::<BTreeMap<_, _>>();
        core.calling = state.calling.into_iter().collect();
        core.stopping = state.stopping.into_iter().collect();
        core.peer_local = state.peer_local.into_iter().collect();
        core.acct_sessions = state.acct_sessions;
        core.draining = state.draining;
        core.rng = state.rng;
        let (pools, ipv6_pools, twice) = core.pools_holding(&core.cfg)?;
        if let Some(a) = twice.into_iter().next() {
            return Err(RestoreError::AddressTwice(a));
        }
        (core.pools, core.ipv6_pools) = (pools, ipv6_pools);
        let keys: Vec<SessionKey> = core.sessions.keys().copied().collect();
        core.counters.sessions_restored = keys.len() as u64;
        for key in keys {
            core.drive_ppp(now, key);
            core.sync_routes(key);
        }
        Ok(core)
    }

    /// After a restore: the sessions and calls whose entry the data plane
    /// no longer has (`present` holds those it has) are ended cleanly (CDN
    /// to the LAC, Accounting Stop, addresses released). Returns how many.
    pub fn reconcile(&mut self, now: Instant, present: &std::collections::BTreeSet<SessionKey>) -> u64 {
        let missing: Vec<SessionKey> =
            self.sessions.keys().filter(|k| !present.contains(k)).copied().collect();
        for key in &missing {
            self.end_session(now, *key, super::EndReason::DataplaneUnavailable);
        }
        self.counters.sessions_reconciled += missing.len() as u64;
        self.pump(now);
        missing.len() as u64
    }

    /// Is `key` a session or a call of this core?
    pub fn knows(&self, key: SessionKey) -> bool {
        self.sessions.contains_key(&key) || self.calling.contains_key(&key)
    }
}
