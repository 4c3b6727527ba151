//! The session store's commits on a thread of their own, the loop's
//! output held until they are done (a pipelined group commit).
//!
//! The output commit rule is the store's (see [`super::store`]): what a
//! pass of the loop sent (datagrams to the LACs, accounting records to
//! RADIUS) must be in the store before it leaves, so that a control plane
//! killed at any moment is followed by one that goes on from there. A
//! commit on the loop keeps the rule by making the loop wait for it, a
//! fifth of its time at 10,000 set-ups a second; here the loop hands the
//! pass's changed records to the [`Committer`] and holds the pass's output
//! ([`Held`]) instead, and goes on with the next pass while the thread
//! commits. Once commit N is done, the output of every pass up to N goes.
//!
//! The passes handed over while a commit runs are committed together in
//! the next transaction ([`Store::commit_passes`]): the busier the loop,
//! the more passes a commit holds and the fewer commits there are.
//! Commits are applied in the order of the passes; a commit that fails
//! is reported and counted, and the output it held goes all the same (as
//! on the loop: a peer left unanswered would retry and give up).
//!
//! The thread wakes the loop when a commit is done ([`Committer::notify`],
//! a permit kept when the loop is not waiting): nothing polls.
//! [`Committer::stop`] waits for every pass handed over to be committed
//! and gives the store back (to be closed or cleared).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::store::{CheckpointCounters, Store, StoreError, StoreStats};
use crate::subscriber::Changes;

/// A pass's changes, handed to the thread.
struct Job {
    pass: u64,
    changes: Changes,
    at: SystemTime,
}

/// What the thread has done, as the loop reads it.
#[derive(Default)]
struct Done {
    /// The last pass whose commit is over (made or failed).
    pass: u64,
    stats: StoreStats,
    /// Failed commits not yet reported to the loop: how many, the first.
    failed: u64,
    error: Option<StoreError>,
}

/// The loop's view of the thread's progress since it last looked.
#[derive(Debug, Default)]
pub struct Progress {
    /// Every pass up to this one is committed (or its commit failed).
    pub committed: u64,
    /// Commits that failed since the last look, and the first one's error.
    pub failed: u64,
    pub error: Option<StoreError>,
}

pub struct Committer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<Store>>,
    done: Arc<Mutex<Done>>,
    notify: Arc<tokio::sync::Notify>,
    /// The last pass handed over.
    submitted: u64,
    /// The last pass known to be committed.
    committed: u64,
    /// The loop's time taking the changes from the core (their encoding).
    encode_us: u64,
    path: PathBuf,
    checkpoints: CheckpointCounters,
}

impl Committer {
    /// Starts the thread, which owns `store` until [`Committer::stop`].
    pub fn start(store: Store) -> Result<Committer, StoreError> {
        let path = store.path().to_path_buf();
        let checkpoints = store.checkpoint_counters();
        let done = Arc::new(Mutex::new(Done::default()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (jobs, rx) = mpsc::channel::<Job>();
        let (shared, wake) = (done.clone(), notify.clone());
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || commit_loop(store, rx, &shared, &wake))
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Ok(Committer {
            jobs: Some(jobs),
            thread: Some(thread),
            done,
            notify,
            submitted: 0,
            committed: 0,
            encode_us: 0,
            path,
            checkpoints,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notified each time a commit is done: what the loop waits on
    /// besides its sockets and timers.
    pub fn notify(&self) -> Arc<tokio::sync::Notify> {
        self.notify.clone()
    }

    /// Hands a pass's changes (taken at `at`) to the thread; returns the
    /// pass's number, which [`Progress::committed`] reaches once they are
    /// in the store. Nothing is handed over for a pass without changes.
    pub fn submit(&mut self, changes: Changes, at: SystemTime) -> u64 {
        if changes.is_empty() {
            return self.submitted;
        }
        let pass = self.submitted + 1;
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(Job { pass, changes, at }).is_ok());
        if sent {
            self.submitted = pass;
        }
        self.submitted
    }

    /// The last pass handed over: a pass's output is held until this one
    /// is committed.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Whether every pass handed over is committed (as last seen).
    pub fn idle(&self) -> bool {
        self.committed >= self.submitted
    }

    /// Notes the time the loop took encoding a pass's changes.
    pub fn note_encode(&mut self, took: Duration) {
        self.encode_us = self.encode_us.saturating_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// What the thread did since the last look.
    pub fn progress(&mut self) -> Progress {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let mut progress = Progress {
            committed: done.pass,
            failed: std::mem::take(&mut done.failed),
            error: done.error.take(),
        };
        drop(done);
        if self.jobs.is_some() && self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            // Ended while it had work (a panic): what it held is not
            // waited for, as a failed commit's is not, and nothing is
            // handed to it any more.
            self.jobs = None;
            progress.failed += 1;
            progress.error.get_or_insert(StoreError::ThreadEnded { path: self.path.display().to_string() });
        }
        if self.jobs.is_none() {
            progress.committed = self.submitted;
        }
        self.committed = progress.committed;
        progress
    }

    /// Waits until every pass handed over is committed, stops the thread
    /// and gives the store back, with the last progress. None if the
    /// thread died (a panic in SQLite's wrapper): the store is closed
    /// as a killed process's is, and read as well at the next start.
    pub fn stop(mut self) -> (Option<Store>, Progress) {
        let store = self.join();
        (store, self.progress())
    }

    fn join(&mut self) -> Option<Store> {
        drop(self.jobs.take());
        self.thread.take().and_then(|t| t.join().ok())
    }

    /// For `lnsctl show stats`: the store's figures as of the last commit.
    pub fn stats_map(&self) -> std::collections::BTreeMap<String, u64> {
        let mut stats = self.done.lock().unwrap_or_else(|p| p.into_inner()).stats.clone();
        stats.encode_us = self.encode_us;
        stats.map(&self.checkpoints)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // What was handed over is committed even on an early return.
        self.join();
    }
}

/// The thread: a pass's changes, and whatever passes queued up behind
/// them, in one transaction; then the loop is told.
fn commit_loop(
    mut store: Store,
    jobs: mpsc::Receiver<Job>,
    done: &Mutex<Done>,
    wake: &tokio::sync::Notify,
) -> Store {
    // The loop is woken however the thread ends, a panic too: it sees
    // the thread gone and stops holding its output for it.
    struct WakeAtEnd<'a>(&'a tokio::sync::Notify);
    impl Drop for WakeAtEnd<'_> {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    let _wake_at_end = WakeAtEnd(wake);
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        group.extend(jobs.try_iter());
        let last = group.last().map_or(0, |j| j.pass);
        let passes: Vec<_> = group.iter().map(|j| (&j.changes, j.at)).collect();
        let result = store.commit_passes(&passes);
        {
            let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
            d.pass = last;
            d.stats = store.stats.clone();
            if let Err(e) = result {
                d.failed += 1;
                d.error.get_or_insert(e);
            }
        }
        wake.notify_one();
    }
    store
}

/// The output of passes not yet committed, in their order, each with the
/// pass it waits for.
pub struct Held<T> {
    queue: VecDeque<(u64, T)>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held { queue: VecDeque::new() }
    }
}

impl<T> Held<T> {
    /// Holds `out` until pass `pass` is committed.
    pub fn hold(&mut self, pass: u64, out: T) {
        self.queue.push_back((pass, out));
    }

    /// The output of every pass up to `committed`, oldest first.
    pub fn release(&mut self, committed: u64) -> impl Iterator<Item = T> + '_ {
        let n = self.queue.iter().take_while(|(pass, _)| *pass <= committed).count();
        self.queue.drain(..n).map(|(_, out)| out)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::{SessionId, TunnelId};
    use crate::subscriber::{RecordKey, SessionKey};
    use rusqlite::{Connection, OpenFlags};
    use std::time::UNIX_EPOCH;

    fn key(t: u16, s: u16) -> SessionKey {
        SessionKey::new(TunnelId(t), SessionId(s))
    }

    /// Pass `n`'s changes: session 1/n, and the meta record.
    fn pass(n: u16) -> Changes {
        Changes(vec![
            (RecordKey::Meta, Some(n.to_be_bytes().to_vec())),
            (RecordKey::Session(key(1, n)), Some(vec![n as u8; 300])),
        ])
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// Waits for the thread's notification (the loop's select! does the
    /// same), then looks.
    async fn next(c: &mut Committer) -> Progress {
        let notify = c.notify();
        tokio::time::timeout(Duration::from_secs(30), notify.notified()).await.expect("a commit is reported");
        c.progress()
    }

    /// The output of pass N leaves only once pass N's records are in the
    /// store, as another process reads it; every output leaves, in order.
    #[tokio::test]
    async fn a_pass_output_is_released_only_once_its_commit_is_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(super::super::store::FILE);
        let mut c = Committer::start(Store::open(&path).expect("open")).expect("start");
        let mut held = Held::default();
        let mut released = Vec::new();
        for n in 1..=60u16 {
            let p = c.submit(pass(n), t0());
            assert_eq!(p, u64::from(n));
            held.hold(p, n);
            // A pass without changes waits for the passes before it.
            held.hold(c.submit(Changes::default(), t0()), 1000 + n);
            if n % 10 == 0 {
                let committed = next(&mut c).await.committed;
                let keys = Store::session_keys(&path).expect("read");
                for out in held.release(committed) {
                    let n = out % 1000;
                    assert!(keys.contains(&key(1, n)), "pass {n} released before its commit");
                    released.push(out);
                }
            }
        }
        while !held.is_empty() {
            let committed = next(&mut c).await.committed;
            let keys = Store::session_keys(&path).expect("read");
            for out in held.release(committed) {
                assert!(keys.contains(&key(1, out % 1000)));
                released.push(out);
            }
        }
        let want: Vec<u16> = (1..=60).flat_map(|n| [n, 1000 + n]).collect();
        assert_eq!(released, want);
        let (store, progress) = c.stop();
        assert_eq!(progress.failed, 0);
        let store = store.expect("the store back");
        assert_eq!(store.stats.passes, 60);
        assert_eq!(store.counts().expect("counts"), (0, 60));
    }

    /// Passes handed over while a commit waits (here for another
    /// connection's write lock) are committed together in the next
    /// transaction; a session written by several of them is written
    /// once, with the last one's record and time.
    #[tokio::test]
    async fn passes_queued_behind_a_commit_are_committed_in_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(super::super::store::FILE);
        let mut c = Committer::start(Store::open(&path).expect("open")).expect("start");
        let other = Connection::open(&path).expect("other connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("write lock");
        for n in 1..=10u16 {
            let mut changes = pass(n);
            // Session 2/1 rewritten by every pass.
            changes.0.push((RecordKey::Session(key(2, 1)), Some(vec![n as u8; 10])));
            c.submit(changes, t0() + Duration::from_secs(u64::from(n)));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(c.progress().committed, 0, "nothing committed while the lock is held");
        other.execute_batch("COMMIT").expect("unlock");
        let mut committed = 0;
        while committed < 10 {
            committed = next(&mut c).await.committed;
        }
        let (store, progress) = c.stop();
        assert_eq!(progress.failed, 0);
        let mut store = store.expect("the store back");
        assert!(store.stats.commits <= 2, "10 passes in {} commits", store.stats.commits);
        assert_eq!(store.stats.passes, 10);
        let records = store.read(t0() + Duration::from_secs(20)).expect("read").0;
        let s21 = records.iter().find(|r| r.key == RecordKey::Session(key(2, 1))).expect("2/1");
        assert_eq!((s21.bytes.clone(), s21.age), (vec![10; 10], Duration::from_secs(10)));
        let meta = records.iter().find(|r| r.key == RecordKey::Meta).expect("meta");
        assert_eq!(meta.bytes, 10u16.to_be_bytes().to_vec());
        assert_eq!(store.counts().expect("counts"), (0, 11));
    }

    /// Stopping waits for every pass handed over: the store given back
    /// holds them all, as a process started after it reads it.
    #[test]
    fn stop_commits_everything_handed_over_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(super::super::store::FILE);
        let mut c = Committer::start(Store::open(&path).expect("open")).expect("start");
        for n in 1..=200u16 {
            c.submit(pass(n), t0());
        }
        let (store, progress) = c.stop();
        assert_eq!(progress.committed, 200);
        store.expect("the store back").close().expect("close");
        let read = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
        let n: i64 = read.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 200);
    }

    /// A commit that fails is reported (counted, its error) and its pass
    /// counts as done, so the output it held goes; the passes after it
    /// are committed as usual.
    #[tokio::test]
    async fn a_failed_commit_is_reported_and_releases_its_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(super::super::store::FILE);
        let mut c = Committer::start(Store::open(&path).expect("open")).expect("start");
        c.submit(pass(1), t0());
        assert_eq!(next(&mut c).await.committed, 1);
        let other = Connection::open(&path).expect("other connection");
        other.execute_batch("ALTER TABLE sessions RENAME TO gone").expect("rename");
        let mut held = Held::default();
        held.hold(c.submit(pass(2), t0()), "pass 2's datagrams");
        let progress = next(&mut c).await;
        assert_eq!((progress.committed, progress.failed), (2, 1));
        assert!(matches!(progress.error, Some(StoreError::Sqlite { .. })), "{:?}", progress.error);
        assert_eq!(held.release(progress.committed).collect::<Vec<_>>(), ["pass 2's datagrams"]);
        other.execute_batch("ALTER TABLE gone RENAME TO sessions").expect("rename back");
        c.submit(pass(3), t0());
        let progress = next(&mut c).await;
        assert_eq!((progress.committed, progress.failed), (3, 0));
        assert_eq!(c.stats_map()["commit_errors"], 1);
        let (store, _) = c.stop();
        let keys = Store::session_keys(store.expect("store").path()).expect("read");
        assert_eq!(keys, vec![key(1, 1), key(1, 3)]);
    }
}
