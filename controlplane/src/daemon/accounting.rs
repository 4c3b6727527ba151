//! The accounting sender: a task that sends the loop's Accounting-Requests
//! through the RADIUS client and keeps Stop records until a server has
//! acknowledged them.
//!
//! A Stop is written to the spool ([`Spool`]: a directory of segment
//! files, each written to a temporary name, fsync'd, renamed, and the
//! directory fsync'd) before it is sent, so neither a server outage nor an
//! LNS restart loses it; a segment is deleted once every record in it was
//! answered. Stops that arrive together share a segment (one fsync for a
//! thousand sessions ending at once). Records are delivered at least once:
//! a crash between an answer and the segment's removal sends them again,
//! which RADIUS servers recognise by Acct-Session-Id and status.
//!
//! Start records that no server answered wait in memory and are sent again
//! when a server comes back; an unanswered Interim-Update is dropped, the
//! next one carries the same counters and more.
//!
//! Acct-Delay-Time (RFC 2866 §5.2) counts from the event: a record sent
//! from the queue says how long it waited, and the client adds its own
//! retransmission time.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lns_radius::accounting::{AccountingRequest, AcctStatusType};
use lns_radius::attribute::{AttributeRepr, AttributeType as T};
use lns_radius::client::{Outcome, Request};
use lns_radius::driver::{ClientError, RadiusClient, ServerEvent};
use lns_radius::packet::{Code, Repr};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

pub use crate::ctl::AccountingStatus;

use super::radius::unix_now;

/// Records the sender has in flight at most; the rest wait their turn.
const MAX_IN_FLIGHT: usize = 2048;
/// Start records kept in memory while no server answers.
const MAX_MEMORY_QUEUE: usize = 100_000;

const MAGIC: &[u8; 8] = b"LNSACCT1";

/// One record as spooled: when it happened and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    /// Seconds since the epoch when the record was made.
    pub queued_at: u64,
    pub attributes: Vec<AttributeRepr>,
}

/// A spool segment's path and the records read from it.
pub type Segment = (PathBuf, Vec<SpooledRecord>);

/// The on-disk queue of Stop records.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("accounting spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("accounting record cannot be encoded: {0}")]
    Encode(#[from] lns_radius::Error),
}

impl Spool {
    /// Opens (creating) the directory and reads every segment left in it,
    /// oldest first. A segment with a damaged tail gives the records
    /// before the damage.
    pub fn open(dir: &Path) -> Result<(Spool, Vec<Segment>), SpoolError> {
        let err = |source| SpoolError::Io { path: dir.to_path_buf(), source };
        fs::create_dir_all(dir).map_err(err)?;
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "acct"))
            .collect();
        names.sort();
        let mut segments = Vec::new();
        for path in names {
            let mut bytes = Vec::new();
            if let Err(e) = File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
                warn!(path = %path.display(), error = %e, "unreadable accounting spool segment skipped");
                continue;
            }
            let (records, damaged) = decode_segment(&bytes);
            if damaged {
                warn!(path = %path.display(), kept = records.len(), "damaged accounting spool segment");
            }
            if records.is_empty() {
                let _ = fs::remove_file(&path);
                continue;
            }
            segments.push((path, records));
        }
        let spool = Spool { dir: dir.to_path_buf(), next: AtomicU64::new(0) };
        Ok((spool, segments))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `records` as one new segment, durably; returns its path.
    pub fn write(&self, records: &[SpooledRecord]) -> Result<PathBuf, SpoolError> {
        let mut bytes = MAGIC.to_vec();
        for r in records {
            let mut p = Repr::new(Code::AccountingRequest, 0);
            p.attributes = r.attributes.clone();
            let packet = p.to_bytes()?;
            let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&r.queued_at.to_be_bytes());
            bytes.extend_from_slice(&packet);
        }
        // Names sort by time of writing, so records go out oldest first
        // after a restart.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{nanos:024}-{n:08}");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(format!("{name}.acct"));
        let err = |source| SpoolError::Io { path: tmp.clone(), source };
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(err)?;
        // The rename is durable once the directory is.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(path)
    }

    pub fn remove(&self, segment: &Path) -> Result<(), SpoolError> {
        fs::remove_file(segment).map_err(|source| SpoolError::Io { path: segment.to_path_buf(), source })
    }
}

/// Records of a segment; true if it ended in something unreadable.
fn decode_segment(bytes: &[u8]) -> (Vec<SpooledRecord>, bool) {
    let mut out = Vec::new();
    let Some(mut rest) = bytes.strip_prefix(&MAGIC[..]) else { return (out, !bytes.is_empty()) };
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else { return (out, true) };
        let Some((at, tail)) = tail.split_first_chunk::<8>() else { return (out, true) };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((packet, tail)) = tail.split_at_checked(len) else { return (out, true) };
        match Repr::from_bytes(packet) {
            Ok(p) if p.code == Code::AccountingRequest => {
                out.push(SpooledRecord { queued_at: u64::from_be_bytes(*at), attributes: p.attributes })
            }
            _ => return (out, true),
        }
        rest = tail;
    }
    (out, false)
}

/// A record waiting to be sent (or resent).
#[derive(Debug, Clone)]
struct Queued {
    status: Option<AcctStatusType>,
    /// The spool segment holding it (Stop).
    segment: Option<PathBuf>,
    record: SpooledRecord,
}

impl Queued {
    /// The request as sent now: Acct-Delay-Time is how long it has waited.
    fn request(&self) -> Request {
        let mut attributes = self.record.attributes.clone();
        let delay = u32::try_from(unix_now().saturating_sub(self.record.queued_at)).unwrap_or(u32::MAX);
        attributes.retain(|a| a.typ() != T::ACCT_DELAY_TIME);
        attributes.push(AttributeRepr::integer(T::ACCT_DELAY_TIME, delay));
        Request { code: Code::AccountingRequest, attributes }
    }
}

enum Command {
    Send { record: Box<AccountingRequest>, durable: bool },
    Status(oneshot::Sender<AccountingStatus>),
    Drain { within: Duration, done: oneshot::Sender<()> },
}

/// Handle of the sender task (cheap to clone).
#[derive(Debug, Clone)]
pub struct AccountingHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl AccountingHandle {
    /// Opens the spool under `state_dir` (records left there are sent
    /// first) and starts the task. `retry` is how often records no server
    /// answered are tried again, besides whenever a server comes back.
    pub fn spawn(
        client: RadiusClient,
        state_dir: &Path,
        retry: Duration,
        events: mpsc::UnboundedReceiver<ServerEvent>,
    ) -> Result<AccountingHandle, SpoolError> {
        let (spool, segments) = Spool::open(&state_dir.join("acct-spool"))?;
        let mut sender = Sender::new(client, Arc::new(spool));
        let loaded: usize = segments.iter().map(|(_, r)| r.len()).sum();
        if loaded > 0 {
            info!(records = loaded, segments = segments.len(), "accounting records from the spool");
        }
        for (path, records) in segments {
            sender.segments.insert(path.clone(), records.len());
            for record in records {
                sender.waiting.push_back(Queued { status: None, segment: Some(path.clone()), record });
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(sender.run(rx, events, retry.max(Duration::from_millis(100))));
        Ok(AccountingHandle { tx })
    }

    /// Queue a record; `durable` ones (Stop) go to the spool first.
    pub fn send(&self, record: AccountingRequest, durable: bool) {
        if self.tx.send(Command::Send { record: Box::new(record), durable }).is_err() {
            warn!("accounting sender stopped: record lost");
        }
    }

    pub async fn status(&self) -> Option<AccountingStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Status(tx)).ok()?;
        rx.await.ok()
    }

    /// Waits until every record given so far is on disk or answered, and
    /// the ones in flight are answered, or `within` passed.
    pub async fn drain(&self, within: Duration) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Drain { within, done }).is_ok() {
            let _ = tokio::time::timeout(within + Duration::from_secs(1), rx).await;
        }
    }
}

type Sent = (Queued, Result<Outcome, ClientError>);

struct Sender {
    client: RadiusClient,
    spool: Arc<Spool>,
    /// Records left unanswered in each spool segment.
    segments: HashMap<PathBuf, usize>,
    /// Ready to send.
    waiting: VecDeque<Queued>,
    /// No server answered them: sent again when one comes back.
    held: VecDeque<Queued>,
    in_flight: usize,
    /// Of which not spooled (Start, Interim-Update).
    in_flight_memory: usize,
    stats: AccountingStatus,
    results_tx: mpsc::UnboundedSender<Sent>,
    results: mpsc::UnboundedReceiver<Sent>,
}

impl Sender {
    fn new(client: RadiusClient, spool: Arc<Spool>) -> Sender {
        let (results_tx, results) = mpsc::unbounded_channel();
        Sender {
            client,
            spool,
            segments: HashMap::new(),
            waiting: VecDeque::new(),
            held: VecDeque::new(),
            in_flight: 0,
            in_flight_memory: 0,
            stats: AccountingStatus::default(),
            results_tx,
            results,
        }
    }

    fn status(&self) -> AccountingStatus {
        let memory = self.waiting.iter().chain(&self.held).filter(|q| q.segment.is_none()).count();
        AccountingStatus {
            in_flight: self.in_flight,
            queued_memory: memory + self.in_flight_memory,
            spooled_records: self.segments.values().sum(),
            spool_segments: self.segments.len(),
            spool_dir: self.spool.dir().display().to_string(),
            ..self.stats.clone()
        }
    }

    fn launch(&mut self) {
        while self.in_flight < MAX_IN_FLIGHT {
            let Some(q) = self.waiting.pop_front() else { return };
            self.in_flight += 1;
            if q.segment.is_none() {
                self.in_flight_memory += 1;
            }
            self.stats.sent += 1;
            let (client, tx) = (self.client.clone(), self.results_tx.clone());
            tokio::spawn(async move {
                let r = client.request(q.request()).await;
                let _ = tx.send((q, r));
            });
        }
    }

    fn acknowledged(&mut self, q: Queued) {
        self.stats.acknowledged += 1;
        let Some(seg) = q.segment else { return };
        let Some(left) = self.segments.get_mut(&seg) else { return };
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.segments.remove(&seg);
            let spool = Arc::clone(&self.spool);
            tokio::task::spawn_blocking(move || {
                if let Err(e) = spool.remove(&seg) {
                    warn!(error = %e, "removing an acknowledged accounting spool segment");
                }
            });
        }
    }

    fn on_result(&mut self, (q, r): Sent) {
        self.in_flight -= 1;
        if q.segment.is_none() {
            self.in_flight_memory -= 1;
        }
        match r {
            Ok(Outcome::Answered(_)) => self.acknowledged(q),
            Ok(Outcome::NoAnswer { .. }) | Err(_) => {
                self.stats.no_answer += 1;
                if q.segment.is_none() && q.status != Some(AcctStatusType::Start) {
                    // An Interim-Update: the next one says more.
                    self.stats.dropped += 1;
                } else if q.segment.is_none() && self.held.len() >= MAX_MEMORY_QUEUE {
                    self.stats.dropped += 1;
                } else {
                    self.held.push_back(q);
                }
            }
        }
    }

    /// Stops are spooled in one segment per batch, then queued to send.
    async fn enqueue(&mut self, batch: Vec<(Box<AccountingRequest>, bool)>) {
        let now = unix_now();
        let mut durable = Vec::new();
        for (record, spool) in batch {
            let attributes = match record.to_attributes() {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accounting record cannot be encoded: dropped");
                    self.stats.dropped += 1;
                    continue;
                }
            };
            let queued_at = now.saturating_sub(u64::from(record.delay_time));
            let q = Queued {
                status: Some(record.status),
                segment: None,
                record: SpooledRecord { queued_at, attributes },
            };
            if spool {
                durable.push(q);
            } else {
                self.waiting.push_back(q);
            }
        }
        if durable.is_empty() {
            return;
        }
        let records: Vec<SpooledRecord> = durable.iter().map(|q| q.record.clone()).collect();
        let spool = Arc::clone(&self.spool);
        let written = tokio::task::spawn_blocking(move || spool.write(&records)).await;
        match written {
            Ok(Ok(path)) => {
                self.segments.insert(path.clone(), durable.len());
                for mut q in durable {
                    q.segment = Some(path.clone());
                    self.waiting.push_back(q);
                }
            }
            Ok(Err(e)) => {
                self.stats.spool_errors += 1;
                warn!(error = %e, records = durable.len(), "accounting Stop records NOT spooled: kept in memory");
                self.waiting.extend(durable);
            }
            Err(e) => {
                self.stats.spool_errors += 1;
                warn!(error = %e, "accounting spool writer failed");
                self.waiting.extend(durable);
            }
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut events: mpsc::UnboundedReceiver<ServerEvent>,
        retry: Duration,
    ) {
        let mut retry_timer = tokio::time::interval(retry);
        retry_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain: Option<(tokio::time::Instant, oneshot::Sender<()>)> = None;
        let mut open = true;
        loop {
            self.launch();
            if let Some((deadline, _)) = &drain {
                let settled = self.in_flight == 0 && self.waiting.is_empty();
                if settled || tokio::time::Instant::now() >= *deadline {
                    if let Some((_, done)) = drain.take() {
                        let _ = done.send(());
                    }
                }
            }
            if !open && self.in_flight == 0 {
                return;
            }
            let drain_at = drain.as_ref().map(|(d, _)| *d);
            tokio::select! {
                cmd = commands.recv(), if open => match cmd {
                    None => open = false,
                    Some(Command::Send { record, durable }) => {
                        // Take everything already queued: one spool write
                        // for a burst of Stops.
                        let mut batch = vec![(record, durable)];
                        let mut later = Vec::new();
                        while batch.len() < 10_000 {
                            match commands.try_recv() {
                                Ok(Command::Send { record, durable }) => batch.push((record, durable)),
                                Ok(other) => { later.push(other); break; }
                                Err(_) => break,
                            }
                        }
                        self.enqueue(batch).await;
                        for c in later {
                            match c {
                                Command::Status(tx) => { let _ = tx.send(self.status()); }
                                Command::Drain { within, done } => {
                                    drain = Some((tokio::time::Instant::now() + within, done));
                                }
                                Command::Send { .. } => {}
                            }
                        }
                    }
                    Some(Command::Status(tx)) => { let _ = tx.send(self.status()); }
                    Some(Command::Drain { within, done }) => {
                        drain = Some((tokio::time::Instant::now() + within, done));
                    }
                },
                Some(r) = self.results.recv() => self.on_result(r),
                Some(ev) = events.recv() => {
                    match ev {
                        ServerEvent::Up(s) => {
                            debug!(server = s.0, held = self.held.len(), "RADIUS server back: resending");
                            self.waiting.extend(self.held.drain(..));
                        }
                        ServerEvent::Changed => {
                            debug!(held = self.held.len(), "RADIUS servers changed: resending");
                            self.waiting.extend(self.held.drain(..));
                        }
                        ServerEvent::Down(_) => {}
                    }
                }
                _ = retry_timer.tick() => {
                    self.waiting.extend(self.held.drain(..));
                }
                _ = async {
                    match drain_at {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SpooledRecord {
        SpooledRecord {
            queued_at: 1_700_000_000,
            attributes: vec![
                AttributeRepr::integer(T::ACCT_STATUS_TYPE, 2),
                AttributeRepr::string(T::ACCT_SESSION_ID, id).expect("attr"),
            ],
        }
    }

    #[test]
    fn spool_survives_reopen_and_removes_acknowledged_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, left) = Spool::open(dir.path()).expect("open");
        assert!(left.is_empty());
        let a = spool.write(&[record("A"), record("B")]).expect("write");
        let b = spool.write(&[record("C")]).expect("write");
        drop(spool);
        let (spool, left) = Spool::open(dir.path()).expect("reopen");
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].0, a, "oldest segment first");
        assert_eq!(left[0].1, vec![record("A"), record("B")]);
        assert_eq!(left[1].1, vec![record("C")]);
        spool.remove(&a).expect("remove");
        let (_, left) = Spool::open(dir.path()).expect("reopen");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, b);
    }

    #[test]
    fn damaged_segments_keep_what_precedes_the_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, _) = Spool::open(dir.path()).expect("open");
        let a = spool.write(&[record("A"), record("B")]).expect("write");
        let mut bytes = fs::read(&a).expect("read");
        bytes.truncate(bytes.len() - 3);
        fs::write(&a, &bytes).expect("write");
        fs::write(dir.path().join("junk.acct"), b"not a spool").expect("junk");
        let (_, left) = Spool::open(dir.path()).expect("reopen");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, vec![record("A")]);
        assert!(!dir.path().join("junk.acct").exists(), "an empty segment is removed");
        for n in 0..bytes.len() {
            let _ = decode_segment(&bytes[..n]);
        }
    }

    #[test]
    fn delay_time_counts_the_wait() {
        let q = Queued {
            status: Some(AcctStatusType::Stop),
            segment: None,
            record: SpooledRecord { queued_at: unix_now() - 42, ..record("A") },
        };
        let r = q.request();
        let delay =
            r.attributes.iter().find(|a| a.typ() == T::ACCT_DELAY_TIME).and_then(|a| a.as_integer().ok());
        assert!(delay.is_some_and(|d| (42..45).contains(&d)), "{delay:?}");
    }
}
