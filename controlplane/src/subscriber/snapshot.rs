//! The core's state as records: what a restarted process needs to take
//! its tunnels and subscribers back, cut so that a store can write what
//! changed and nothing else.
//!
//! Three kinds of record ([`RecordKey`]):
//! - the meta record: the L2TP endpoint's configuration, tunnel ids held
//!   down and RNG, the core's RNG, accounting sessions opened, whether it
//!   was stopping;
//! - one per tunnel: its control channel (state, the sequence numbers,
//!   messages awaiting acknowledgement, retransmission and HELLO timers,
//!   session ids held down) and where it is (peer, our address, interface);
//! - one per session: the L2TP call and, as it stands, the call not yet
//!   connected, the subscriber (PPP with its negotiated options, magic
//!   numbers and timers, the user, addresses and prefixes, accounting ids,
//!   baseline and schedule), or the session waiting for its Stop.
//!
//! A session is written whole once it is established (a network protocol
//! opened: from then on it is what a restart keeps) and on each change
//! after that. Before, while LCP, authentication and the NCPs negotiate,
//! it is written once, small, when its call is set up: the call's ids and
//! the LAC's, enough for a restart to end it cleanly (CDN to the LAC,
//! entry removed, counted as [`NEGOTIATING_AT_RESTART`]) rather than take
//! it back half negotiated. Each negotiation step would otherwise cost a
//! record (9 to 15 per set-up), which is what held the set-up rate with
//! the store to a third of the rate without. Nothing of a negotiating
//! session is owed to anyone across a restart: its address, if it had one,
//! was never forwarded nor reported, and its Accounting Start goes with
//! the network protocol, in the pass that writes it whole.
//!
//! The maps of the core and of each tunnel are [`Tracked`]: every way of
//! changing them notes the key, so [`Core::take_changes`] serializes only
//! what changed since it was last called (a datagram costs its tunnel's
//! and its session's record, not every session's). Records are postcard,
//! their `Instant`s relative to the moment they were written
//! ([`crate::snapshot`]); the store keeps that moment, and a restore
//! puts each record back at its age, so a timer keeps its wall-clock time
//! across the restart whatever record it is in.
//!
//! Not in them, because it is derived or belongs to the process: the
//! pools' bookkeeping (rebuilt from the subscribers' addresses, so none is
//! given twice), the session-id spaces (their reservations are the data
//! plane's, made again at start), the timer indexes, the counters of
//! `lnsctl show stats`, fast-path counter samples between two accounting
//! records (the data plane keeps the counters), and effects not yet
//! carried out (the driver commits the records before it carries out a
//! batch's sends, so what the peers saw is always in the store).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Calling, Core, CoreConfig, Effect, SessionKey, Subscriber, TunnelRecord};
use crate::daemon::aaa::AaaError;
use crate::l2tp::endpoint::{self, EndpointMeta, EndpointMetaRef, TunnelRecordRef};
use crate::l2tp::tunnel::{SessionRecord, SessionRecordRef};
use crate::l2tp::{Endpoint, SessionId, TunnelId};
use crate::snapshot::{with_base, Tracked};

/// Which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    Meta,
    Tunnel(TunnelId),
    Session(SessionKey),
}

/// A record read back from the store: its bytes and how long ago they were
/// written (by the wall clock: the process that wrote them is gone).
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub key: RecordKey,
    pub bytes: Vec<u8>,
    pub age: Duration,
}

/// Every record of a core, as a store holds them.
#[derive(Debug, Clone, Default)]
pub struct Records(pub Vec<StoredRecord>);

/// What changed since the last [`Core::take_changes`]: records to write
/// (`Some`) or to remove (`None`), in key order.
#[derive(Debug, Default)]
pub struct Changes(pub Vec<(RecordKey, Option<Vec<u8>>)>);

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Serialize)]
struct MetaRef<'a> {
    endpoint: EndpointMetaRef<'a>,
    acct_sessions: u64,
    draining: bool,
    rng: &'a ChaCha8Rng,
}

#[derive(Deserialize)]
struct Meta {
    endpoint: EndpointMeta,
    acct_sessions: u64,
    draining: bool,
    rng: ChaCha8Rng,
}

#[derive(Serialize)]
struct TunnelRowRef<'a> {
    l2tp: Option<TunnelRecordRef<'a>>,
    record: Option<&'a TunnelRecord>,
    /// Fields added since the store's first format go after the rest,
    /// where a row written before them ends ([`decode_tunnel_row`]): the
    /// tunnel's own UDP port.
    local_port: Option<u16>,
}

/// A tunnel row's fields of the first format.
#[derive(Deserialize)]
struct TunnelRow {
    l2tp: Option<endpoint::TunnelRecord>,
    record: Option<TunnelRecord>,
}

#[derive(Serialize)]
struct SessionRowRef<'a> {
    l2tp: Option<SessionRecordRef<'a>>,
    calling: Option<&'a Calling>,
    subscriber: Option<&'a Subscriber>,
    stopping: Option<&'a Subscriber>,
}

#[derive(Deserialize)]
struct SessionRow {
    l2tp: Option<SessionRecord>,
    calling: Option<Calling>,
    subscriber: Option<Box<Subscriber>>,
    stopping: Option<Box<Subscriber>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record {0:?}: {1}")]
    Encode(RecordKey, postcard::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("record {0:?} does not parse: {1}")]
    Parse(RecordKey, postcard::Error),
    #[error("the store has tunnels or sessions but no meta record")]
    NoMeta,
    #[error(transparent)]
    Config(#[from] AaaError),
    #[error("address {0} is held by two sessions of the store")]
    AddressTwice(String),
}

/// Sessions of the store a restore could not take back, and why (as
/// `lnsctl show stats` names it).
pub const NO_TUNNEL: &str = "no_tunnel_in_store";
pub const NO_CALL: &str = "no_l2tp_call_in_store";
pub const NOT_IN_DATAPLANE: &str = "not_in_dataplane";
pub const NOT_IN_STORE: &str = "not_in_store";
/// A DHCPv6 address's route in the data plane that no session taken back
/// holds (written after the last commit): removed.
pub const ADDRESS_ROUTE_NOT_IN_STORE: &str = "address_route_not_in_store";
pub const NEGOTIATING_AT_RESTART: &str = "negotiating_at_restart";

/// What a store holds of a session, and so what a restart does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// Set up, still negotiating: the small record; ended at a restart.
    Negotiating,
    /// Established, or ended and waiting for its Stop: the whole record.
    Established,
}

/// A negotiating session's record says it is a call, nothing more.
static NEGOTIATING: Calling = Calling { early_ppp: Vec::new() };

/// Encodes a record: into a scratch buffer first, then copied out at its
/// size. postcard's own growing vector writes byte by byte through
/// reallocations (a session's record grew eight times), which was most of
/// the loop's time spent encoding; a record larger than the scratch
/// buffer (a tunnel with a window's worth of messages unacknowledged)
/// takes that way.
fn encode<T: Serialize>(key: RecordKey, v: &T) -> Result<Vec<u8>, RecordError> {
    const SCRATCH: usize = 16 << 10;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let scratch = BUF.with_borrow_mut(|buf| {
        buf.resize(SCRATCH, 0);
        match postcard::to_slice(v, buf) {
            Ok(used) => Some(Ok(used.to_vec())),
            Err(postcard::Error::SerializeBufferFull) => None,
            Err(e) => Some(Err(e)),
        }
    });
    match scratch {
        Some(r) => r,
        None => postcard::to_allocvec(v),
    }
    .map_err(|e| RecordError::Encode(key, e))
}

fn decode<T: for<'de> Deserialize<'de>>(now: Instant, r: &StoredRecord) -> Result<T, RestoreError> {
    // The moment the record was written, on this process's clock; a
    // record older than the clock's origin (written before a reboot) is
    // taken as written now: only its timers' distances are left.
    let written = now.checked_sub(r.age).unwrap_or(now);
    with_base(written, || postcard::from_bytes(&r.bytes)).map_err(|e| RestoreError::Parse(r.key, e))
}

/// A tunnel row, with the fields added after the first format when the
/// row has them (postcard is not self-describing: a missing field is not
/// defaulted, the bytes simply end).
fn decode_tunnel_row(now: Instant, r: &StoredRecord) -> Result<TunnelRow, RestoreError> {
    let written = now.checked_sub(r.age).unwrap_or(now);
    with_base(written, || {
        let (mut row, rest) = postcard::take_from_bytes::<TunnelRow>(&r.bytes)?;
        let local_port: Option<u16> = if rest.is_empty() { None } else { postcard::from_bytes(rest)? };
        if let Some(l2tp) = row.l2tp.as_mut() {
            l2tp.local_port = local_port;
        }
        Ok(row)
    })
    .map_err(|e| RestoreError::Parse(r.key, e))
}

impl Core {
    fn meta_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let meta = MetaRef {
            endpoint: self.endpoint.meta_record(),
            acct_sessions: self.acct_sessions,
            draining: self.draining,
            rng: &self.rng,
        };
        encode(RecordKey::Meta, &meta)
    }

    fn tunnel_bytes(&self, id: TunnelId) -> Result<Option<Vec<u8>>, RecordError> {
        let l2tp = self.endpoint.tunnel_record(id);
        let local_port = l2tp.as_ref().and_then(|l| l.local_port);
        let row = TunnelRowRef { l2tp, record: self.tunnels.get(&id), local_port };
        if row.l2tp.is_none() && row.record.is_none() {
            return Ok(None);
        }
        encode(RecordKey::Tunnel(id), &row).map(Some)
    }

    /// Where `key` stands for the store; None: nothing of it is left.
    pub fn session_stage(&self, key: SessionKey) -> Option<SessionStage> {
        if self.stopping.contains_key(&key) {
            return Some(SessionStage::Established);
        }
        match self.sessions.get(&key) {
            // network_up is never taken back once set: an established
            // session stays written whole whatever it renegotiates.
            Some(s) if s.network_up.is_some() => Some(SessionStage::Established),
            Some(_) => Some(SessionStage::Negotiating),
            None if self.calling.contains_key(&key)
                || self.endpoint.tunnel(key.tunnel).is_some_and(|t| t.session(key.session).is_some()) =>
            {
                Some(SessionStage::Negotiating)
            }
            None => None,
        }
    }

    fn session_bytes(&self, key: SessionKey, stage: SessionStage) -> Result<Vec<u8>, RecordError> {
        let l2tp = self.endpoint.session_record(key.tunnel, key.session);
        let row = match stage {
            SessionStage::Established => SessionRowRef {
                l2tp,
                calling: self.calling.get(&key),
                subscriber: self.sessions.get(&key).map(|s| &**s),
                stopping: self.stopping.get(&key).map(|s| &**s),
            },
            // The call and nothing of PPP: read back, it is a call not yet
            // connected, which the restart ends.
            SessionStage::Negotiating => {
                SessionRowRef { l2tp, calling: Some(&NEGOTIATING), subscriber: None, stopping: None }
            }
        };
        encode(RecordKey::Session(key), &row)
    }

    /// The change to write for session `key`, if any: the whole record
    /// when established, the small one once while negotiating, a removal
    /// when it is gone.
    fn session_change(&mut self, key: SessionKey) -> Result<Option<Option<Vec<u8>>>, RecordError> {
        match self.session_stage(key) {
            None => {
                self.negotiating_stored.remove(&key);
                Ok(Some(None))
            }
            Some(stage @ SessionStage::Established) => {
                self.negotiating_stored.remove(&key);
                self.session_bytes(key, stage).map(|b| Some(Some(b)))
            }
            Some(stage @ SessionStage::Negotiating) => {
                if !self.negotiating_stored.insert(key) {
                    return Ok(None);
                }
                self.session_bytes(key, stage).map(|b| Some(Some(b)))
            }
        }
    }

    /// The records changed since the last call, their `Instant`s relative
    /// to `now`; with any, the meta record too. Call it once the effects
    /// of a batch are taken, and commit what it returns before the
    /// batch's datagrams leave. A session still negotiating is written
    /// once, small (see the module's note).
    pub fn take_changes(&mut self, now: Instant) -> Result<Changes, RecordError> {
        let (mut tunnels, l2tp_sessions) = self.endpoint.take_changes();
        tunnels.extend(self.tunnels.take_dirty());
        let mut sessions: BTreeSet<SessionKey> =
            l2tp_sessions.into_iter().map(|(t, s)| SessionKey::new(t, s)).collect();
        sessions.extend(self.sessions.take_dirty());
        sessions.extend(self.calling.take_dirty());
        sessions.extend(self.stopping.take_dirty());
        if tunnels.is_empty() && sessions.is_empty() {
            return Ok(Changes::default());
        }
        with_base(now, || {
            let mut out = Vec::with_capacity(1 + tunnels.len() + sessions.len());
            for id in tunnels {
                out.push((RecordKey::Tunnel(id), self.tunnel_bytes(id)?));
            }
            for key in sessions {
                if let Some(change) = self.session_change(key)? {
                    out.push((RecordKey::Session(key), change));
                }
            }
            // Only negotiation steps, which are not written: nothing to
            // commit (the meta record goes with the next change).
            if out.is_empty() {
                return Ok(Changes::default());
            }
            out.insert(0, (RecordKey::Meta, Some(self.meta_bytes()?)));
            Ok(Changes(out))
        })
    }

    /// Without a store: what changed is forgotten, not serialized (the
    /// change sets would otherwise grow with every key ever used).
    pub fn discard_changes(&mut self) {
        let _ = self.endpoint.take_changes();
        let _ = self.tunnels.take_dirty();
        let _ = self.sessions.take_dirty();
        let _ = self.calling.take_dirty();
        let _ = self.stopping.take_dirty();
    }

    /// Every record, as written at `now` (for a store written afresh, or a
    /// test). What had changed is forgotten: all of it is in here.
    pub fn snapshot(&mut self, now: Instant) -> Result<Records, RecordError> {
        let _ = self.take_changes(now)?;
        let tunnels: BTreeSet<TunnelId> =
            self.endpoint.tunnel_ids().chain(self.tunnels.keys().copied()).collect();
        let mut sessions: BTreeSet<SessionKey> =
            self.sessions.keys().chain(self.calling.keys()).chain(self.stopping.keys()).copied().collect();
        for t in self.endpoint.tunnel_ids() {
            if let Some(tunnel) = self.endpoint.tunnel(t) {
                sessions.extend(tunnel.sessions().map(|s| SessionKey::new(t, s.local_id)));
            }
        }
        with_base(now, || {
            let record = |key, bytes| StoredRecord { key, bytes, age: Duration::ZERO };
            let mut out = vec![record(RecordKey::Meta, self.meta_bytes()?)];
            for id in tunnels {
                if let Some(b) = self.tunnel_bytes(id)? {
                    out.push(record(RecordKey::Tunnel(id), b));
                }
            }
            self.negotiating_stored.clear();
            for key in sessions {
                let Some(stage) = self.session_stage(key) else { continue };
                if stage == SessionStage::Negotiating {
                    self.negotiating_stored.insert(key);
                }
                out.push(record(RecordKey::Session(key), self.session_bytes(key, stage)?));
            }
            Ok(Records(out))
        })
    }

    /// A core that continues from `records` at `now`, with this process's
    /// configuration; the pools hold the subscribers' addresses again.
    /// Sessions whose tunnel or call is not in the records cannot go on
    /// and are left out (counted by why); their data-plane entries are
    /// then nobody's, and the driver removes them. Sessions that were
    /// still negotiating are known (their entries are theirs) but not
    /// resumed: [`Core::reconcile`] ends them. An empty store gives a
    /// fresh core.
    pub fn restore(cfg: CoreConfig, records: &Records, now: Instant) -> Result<Core, RestoreError> {
        let mut core = Core::new(cfg, now)?;
        let mut meta = None;
        let mut tunnel_rows = BTreeMap::new();
        let mut session_rows: BTreeMap<TunnelId, Vec<(SessionId, SessionRow)>> = BTreeMap::new();
        for r in &records.0 {
            match r.key {
                RecordKey::Meta => meta = Some(decode::<Meta>(now, r)?),
                RecordKey::Tunnel(id) => {
                    tunnel_rows.insert(id, decode_tunnel_row(now, r)?);
                }
                RecordKey::Session(key) => {
                    session_rows.entry(key.tunnel).or_default().push((key.session, decode(now, r)?));
                }
            }
        }
        let Some(meta) = meta else {
            if tunnel_rows.is_empty() && session_rows.is_empty() {
                return Ok(core);
            }
            return Err(RestoreError::NoMeta);
        };
        // Sessions go with their tunnel; those of a tunnel the store does
        // not have cannot reach their LAC.
        let mut no_tunnel = 0u64;
        for (t, rows) in &session_rows {
            if tunnel_rows.get(t).is_none_or(|r| r.l2tp.is_none()) {
                no_tunnel +=
                    rows.iter().filter(|(_, r)| r.subscriber.is_some() || r.calling.is_some()).count() as u64;
            }
        }
        let mut l2tp = Vec::new();
        let mut records_of = BTreeMap::new();
        for (id, row) in tunnel_rows {
            let mut rows = session_rows.remove(&id).unwrap_or_default();
            if let Some(t) = row.l2tp {
                let calls = rows.iter_mut().filter_map(|(_, r)| r.l2tp.take()).collect();
                l2tp.push((t, calls));
            }
            if let Some(rec) = row.record {
                records_of.insert(id, rec);
            }
            session_rows.insert(id, rows);
        }
        core.endpoint = Endpoint::from_records(meta.endpoint, l2tp);
        // This start's peers and limits; the id spaces stay the store's.
        core.endpoint.reconfigure(core.cfg.endpoint.clone());
        // A tunnel goes on with both halves, or not at all.
        records_of.retain(|id, _| core.endpoint.tunnel(*id).is_some());
        core.peer_local = records_of.values().map(|r| (r.peer, r.local)).collect();
        core.tunnels = Tracked::from_map(records_of);
        let mut no_call = 0u64;
        let (mut sessions, mut calling, mut stopping) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (tid, rows) in session_rows {
            let Some(tunnel) = core.endpoint.tunnel(tid) else { continue };
            for (sid, row) in rows {
                let key = SessionKey::new(tid, sid);
                // Ended already: only its Stop is left to send.
                if let Some(s) = row.stopping {
                    stopping.insert(key, s);
                }
                if row.subscriber.is_none() && row.calling.is_none() {
                    continue;
                }
                if tunnel.session(sid).is_none() {
                    no_call += 1;
                    continue;
                }
                if let Some(s) = row.subscriber {
                    sessions.insert(key, s);
                } else if let Some(c) = row.calling {
                    calling.insert(key, c);
                }
            }
        }
        // Each link read back holds a copy of its PPP configuration: those
        // equal to this start's share it again, as new links do.
        let mut encoded: Vec<(std::sync::Arc<crate::ppp::SessionConfig>, Vec<u8>)> = Vec::new();
        for s in sessions.values_mut().chain(stopping.values_mut()) {
            let shared = core.ppp_config(s.mru);
            let i = match encoded.iter().position(|(c, _)| std::sync::Arc::ptr_eq(c, &shared)) {
                Some(i) => i,
                None => {
                    let bytes = postcard::to_stdvec(&*shared).unwrap_or_default();
                    encoded.push((shared.clone(), bytes));
                    encoded.len() - 1
                }
            };
            s.ppp.share_config(&shared, &encoded[i].1);
        }
        core.sessions = Tracked::from_map(sessions);
        core.calling = Tracked::from_map(calling);
        core.stopping = Tracked::from_map(stopping);
        core.acct_sessions = meta.acct_sessions;
        core.draining = meta.draining;
        core.rng = meta.rng;
        let (pools, ipv6_pools, twice) = core.pools_holding(&core.cfg)?;
        if let Some(a) = twice.into_iter().next() {
            return Err(RestoreError::AddressTwice(a));
        }
        (core.pools, core.ipv6_pools) = (pools, ipv6_pools);
        // A store of a version that wrote every negotiation step may hold
        // sessions not yet established: ended like the calls, not driven.
        let keys: Vec<SessionKey> =
            core.sessions.iter().filter(|(_, s)| s.network_up.is_some()).map(|(k, _)| *k).collect();
        core.negotiating_stored = core.calling.keys().copied().collect();
        core.counters.sessions_restored = keys.len() as u64;
        core.counters.tunnels_restored = core.endpoint.tunnel_count() as u64;
        core.count_reconciled(NO_TUNNEL, no_tunnel);
        core.count_reconciled(NO_CALL, no_call);
        for key in keys {
            core.drive_ppp(now, key);
            core.sync_routes(key);
            core.reclock(key, now, now);
        }
        // The sessions that were waiting for their last counters ask again.
        let stopping: Vec<SessionKey> = core.stopping.keys().copied().collect();
        if !stopping.is_empty() {
            core.effects.push_back(Effect::SampleCounters { keys: stopping });
        }
        // The store has all of this already.
        let _ = core.endpoint.take_changes();
        let _ = (core.tunnels.take_dirty(), core.sessions.take_dirty());
        let _ = (core.calling.take_dirty(), core.stopping.take_dirty());
        Ok(core)
    }

    /// After a restore: the sessions that were still negotiating are
    /// ended (CDN to the LAC, "try again": its subscriber redials; entry
    /// removed, addresses released), and so are those whose entry the
    /// data plane no longer has (`present` holds those it has; CDN,
    /// Accounting Stop, addresses released). Returns how many of the
    /// latter.
    pub fn reconcile(&mut self, now: Instant, present: &BTreeSet<SessionKey>) -> u64 {
        let negotiating: Vec<SessionKey> = self
            .calling
            .keys()
            .copied()
            .chain(self.sessions.iter().filter(|(_, s)| s.network_up.is_none()).map(|(k, _)| *k))
            .collect();
        for key in &negotiating {
            let rc = crate::l2tp::ResultCode::with_error(
                crate::l2tp::avp::cdn::NO_FACILITIES_TEMPORARY,
                crate::l2tp::avp::error_code::NO_ERROR,
                "the LNS restarted while the session negotiated",
            );
            if self.endpoint.close_session(now, key.tunnel, key.session, rc).is_err() {
                // No call to send a CDN on: the rest goes all the same.
                self.session_down(now, *key, super::DownReason::Stopping);
            }
        }
        self.count_reconciled(NEGOTIATING_AT_RESTART, negotiating.len() as u64);
        self.pump(now);
        let missing: Vec<SessionKey> =
            self.sessions.keys().filter(|k| !present.contains(k)).copied().collect();
        for key in &missing {
            self.end_session(now, *key, super::EndReason::DataplaneUnavailable);
        }
        self.count_reconciled(NOT_IN_DATAPLANE, missing.len() as u64);
        self.pump(now);
        missing.len() as u64
    }

    /// Sessions a restart could not take back, by why (see the constants
    /// of this module; the driver counts the entries it removed).
    /// Data-plane routes of no session taken back, removed at a restart
    /// (counted by why beside the sessions, not as sessions).
    pub fn count_reconciled_routes(&mut self, why: &'static str, n: u64) {
        if n > 0 {
            *self.counters.reconciled.entry(why).or_default() += n;
        }
    }

    pub fn count_reconciled(&mut self, why: &'static str, n: u64) {
        if n > 0 {
            self.counters.sessions_reconciled += n;
            *self.counters.reconciled.entry(why).or_default() += n;
        }
    }

    /// Is `key` a session, a call, or a session waiting for its Stop of
    /// this core (its data-plane entry is ours)?
    pub fn knows(&self, key: SessionKey) -> bool {
        self.sessions.contains_key(&key)
            || self.calling.contains_key(&key)
            || self.stopping.contains_key(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::avp::AvpValue;
    use crate::l2tp::{EndpointConfig, Message, MessageType};
    use std::net::SocketAddr;

    /// A record is the same bytes whichever way it is encoded: through the
    /// scratch buffer, or past it (larger than it) through postcard's own.
    #[test]
    fn records_small_and_larger_than_the_scratch_buffer_encode_as_postcard_does() {
        for len in [0usize, 1, 300, 16 << 10, (16 << 10) + 1, 100_000] {
            let v: Vec<u32> = (0..len as u32 / 4).collect();
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let want = (postcard::to_allocvec(&v).expect("v"), postcard::to_allocvec(&bytes).expect("bytes"));
            let got =
                (encode(RecordKey::Meta, &v).expect("v"), encode(RecordKey::Meta, &bytes).expect("bytes"));
            assert_eq!(got, want, "{len}");
        }
    }

    /// A tunnel row keeps the tunnel's own port after the fields of the
    /// first format; a row of that format (without it) still reads, as a
    /// tunnel on the listen port.
    #[test]
    fn tunnel_rows_with_and_without_the_port_read_back() {
        let now = Instant::now();
        let mut ep = Endpoint::new(EndpointConfig {
            allow_unlisted_peers: true,
            seed: Some(9),
            tunnel_ports: Some((20000, 20999)),
            ..EndpointConfig::default()
        });
        let sccrq = Message::new(
            MessageType::Sccrq,
            [
                AvpValue::ProtocolVersion { version: 1, revision: 0 },
                AvpValue::FramingCapabilities(3),
                AvpValue::HostName(b"lac".to_vec()),
                AvpValue::AssignedTunnelId(TunnelId(5)),
            ],
        )
        .emit(None)
        .expect("emit");
        let peer: SocketAddr = "192.0.2.2:1701".parse().expect("addr");
        let crate::l2tp::DatagramEvent::Control(id) = ep.handle_datagram(now, peer, &sccrq) else {
            panic!("tunnel")
        };
        let port = ep.local_port(id).expect("own port");
        let record = TunnelRecord { peer, local: "192.0.2.1".parse().expect("ip"), ifindex: 2, since: now };
        #[derive(Serialize)]
        struct FirstFormat<'a> {
            l2tp: Option<TunnelRecordRef<'a>>,
            record: Option<&'a TunnelRecord>,
        }
        let key = RecordKey::Tunnel(id);
        let (new, old) = with_base(now, || {
            let l2tp = ep.tunnel_record(id);
            let local_port = l2tp.as_ref().and_then(|l| l.local_port);
            let new = encode(key, &TunnelRowRef { l2tp, record: Some(&record), local_port }).expect("new");
            let old =
                encode(key, &FirstFormat { l2tp: ep.tunnel_record(id), record: Some(&record) }).expect("old");
            (new, old)
        });
        assert!(new.starts_with(&old), "the first format, then the port");
        let read = |bytes: Vec<u8>| decode_tunnel_row(now, &StoredRecord { key, bytes, age: Duration::ZERO });
        let row = read(new).expect("new row");
        assert_eq!(row.l2tp.as_ref().and_then(|l| l.local_port), Some(port));
        assert_eq!(row.record.as_ref().map(|r| r.ifindex), Some(2));
        let row = read(old).expect("first-format row");
        assert_eq!(row.l2tp.as_ref().map(|l| l.local_port), Some(None));
        assert_eq!(row.record.as_ref().map(|r| r.ifindex), Some(2));
    }
}
