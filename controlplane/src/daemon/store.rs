//! The session store: the subscriber core's records ([`crate::subscriber::snapshot`])
//! in an SQLite database in the state directory, written as they change,
//! so that a control plane killed at any moment (`kill -9`, a crash, the
//! OOM killer) is taken over by the next start with every session it had.
//!
//! Why SQLite, through rusqlite with the library built in: a store that is
//! atomic per commit, survives a process killed half way through a write,
//! and updates single records in place, is what SQLite has been doing for
//! two decades; redb would do too, but its commits that skip the fsync
//! are not guaranteed to survive a crash at all, so every commit would
//! cost an fsync.
//!
//! Why WAL mode with `synchronous = NORMAL`: a commit appends its pages
//! to the write-ahead log with write(2) and returns; it does not wait for
//! the disk (fsync happens at checkpoints). What write(2) returned is in
//! the kernel's page cache, which outlives the process: a `kill -9` right
//! after a commit loses nothing of it, and one during a commit loses that
//! commit whole (the log's frames are checksummed; a torn tail is
//! ignored on open). Only a crash of the machine itself may lose the last
//! commits, and then the data plane's maps are gone too: there is nothing
//! to take back. So a commit costs a write, not a disk flush, and one per
//! batch of events keeps up with 10,000 session set-ups a second.
//!
//! Why checkpoints on a thread of their own: folding the log into the
//! database (and the fsyncs that go with it) is what SQLite otherwise does
//! inside the commit that crosses 1,000 pages of log, holding up the
//! commits (and the loop's output that waits for them, see
//! [`super::committer`]). Here the committing connection never
//! checkpoints (`wal_autocheckpoint = 0`); a [`Checkpointer`] thread with a
//! connection of its own runs passive checkpoints (which never hold up a
//! writer) every [`CHECKPOINT_EVERY`]. The log starts over from its
//! beginning at the first commit after a checkpoint that caught up with
//! it (and is cut back to 64 MiB); under a burst that never lets one catch
//! up it grows, and past [`WAL_LIMIT`] a checkpoint that makes the writer
//! wait bounds it.
//!
//! One row per record: `meta` (one), `tunnels` (one per tunnel),
//! `sessions` (one per session). Each row carries the wall-clock time it
//! was written, so a restore knows how old its timers are. The format
//! version is the database's `user_version`; a store of another version
//! is not read (the start is a fresh one).
//!
//! Why the sessions' rows are in the order they were written (their key a
//! sequence number, the session's ids in the row), not by session: session
//! ids are random, so a table keyed by them puts each record of a commit
//! on a page of its own, and a commit of 40 records wrote 70 pages to the
//! log (most of a commit's time). Appended, a commit's records share the
//! last pages: a session's record written again is appended and its old
//! row deleted (from a page written shortly before, during its set-up).
//! The store keeps which row each session's record is in ([`Store`]'s
//! map, read with the records at a start); a row left behind by a
//! commit the map did not see is read as the older of two, and deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags};

use crate::l2tp::{SessionId, TunnelId};
use crate::subscriber::{Changes, RecordKey, Records, SessionKey, StoredRecord};

/// The records' format; bump when a record's layout changes (postcard is
/// positional: a field added anywhere changes it). 2: negotiating
/// sessions' small records, IA_NA bindings from a pool, the PPP link's
/// shared configuration and boxed parts. 3: a CHAP authenticator that
/// answered is kept compact (a new variant of the PPP link's
/// authenticator).
/// 4: sessions' rows in the order they were written.
pub const FORMAT: i64 = 4;

/// The store's file in the state directory.
pub const FILE: &str = "sessions.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("session store {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("session store {path}: format {found}, this control plane reads {FORMAT}")]
    Format { path: String, found: i64 },
    #[error("session store {path}: its commit thread ended; nothing is committed any more")]
    ThreadEnded { path: String },
}

/// How often the [`Checkpointer`] folds the log into the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The pause between two checkpoints while they have not caught up with
/// the commits.
const CHECKPOINT_AGAIN: Duration = Duration::from_millis(1);

/// A log larger than this is checkpointed even if the loop's commits
/// have to wait for it (a burst that never let a passive one catch up).
/// Not larger: every page a commit reads is looked up in the log's index,
/// 4,096 pages at a time, so a long log slows every commit (20,000
/// set-ups with the limit at 1 GiB went at half the rate they did with
/// 256 MiB, and a few waits).
pub const WAL_LIMIT: u64 = 64 << 20;

/// What the log is cut back to when it starts over, after a burst grew it.
const WAL_KEEP: i64 = 64 << 20;

/// How long a commit waits for a checkpoint that holds the log.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// When the [`Checkpointer`] runs: [`CHECKPOINT_EVERY`] and [`WAL_LIMIT`]
/// unless a test says otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoints {
    pub every: Duration,
    pub wal_limit: u64,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints { every: CHECKPOINT_EVERY, wal_limit: WAL_LIMIT }
    }
}

/// The background checkpoints' counters, shared with the thread.
#[derive(Debug, Default)]
struct CheckpointStats {
    checkpoints: AtomicU64,
    checkpoint_us: AtomicU64,
    checkpoint_errors: AtomicU64,
    /// Checkpoints that made the writer wait (the log past [`WAL_LIMIT`]).
    checkpoints_blocking: AtomicU64,
    /// Pages the last checkpoint found in the log.
    wal_pages: AtomicU64,
}

/// The thread that checkpoints the store's log, off the loop.
struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<CheckpointStats>,
}

impl Checkpointer {
    fn start(path: &Path, when: Checkpoints) -> Result<Checkpointer, StoreError> {
        let sql = |source| StoreError::Sqlite { path: path.display().to_string(), source };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let stats = Arc::new(CheckpointStats::default());
        let (stop, stopped) = mpsc::channel::<()>();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                // Caught up: the log was whole in the database at the last
                // checkpoint, and the next commit starts it over. Until
                // then the next checkpoint follows at once: each has less
                // to fold than the one before, until one fits between two
                // commits (after a pause as long as `every`, a burst of
                // commits would always be ahead of it, and the log grow).
                let mut wait = when.every;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > when.wal_limit);
                    let mode = if big { "RESTART" } else { "PASSIVE" };
                    let t0 = std::time::Instant::now();
                    let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    });
                    let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let caught_up = match done {
                        Ok((pages, folded)) => {
                            shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                            shared.checkpoint_us.fetch_add(us, Ordering::Relaxed);
                            shared.wal_pages.store(u64::try_from(pages).unwrap_or(0), Ordering::Relaxed);
                            if big {
                                shared.checkpoints_blocking.fetch_add(1, Ordering::Relaxed);
                            }
                            folded >= pages
                        }
                        Err(_) => {
                            shared.checkpoint_errors.fetch_add(1, Ordering::Relaxed);
                            true
                        }
                    };
                    wait = if caught_up { when.every } else { CHECKPOINT_AGAIN };
                }
            })
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread), stats })
    }

    /// Waits for the thread to finish its checkpoint, if one is under way.
    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `lnsctl show stats` says of the store.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Passes of the loop whose changes they held (a group commit holds
    /// several).
    pub passes: u64,
    pub records_written: u64,
    /// Of those, sessions' and tunnels' records (the rest are the meta
    /// record, one a commit).
    pub session_records: u64,
    pub tunnel_records: u64,
    pub records_removed: u64,
    pub bytes_written: u64,
    pub commit_errors: u64,
    /// The last commit's duration.
    pub last_commit_us: u64,
    /// All commits' time, for the share of the loop they take.
    pub commit_us: u64,
    /// The driver's time taking the changed records from the core (their
    /// encoding), beside the commits'.
    pub encode_us: u64,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    pub stats: StoreStats,
    checkpointer: Checkpointer,
    /// Which row holds each session's record; read with the records
    /// ([`Store::read`]) or, without, before the first commit.
    rows: Option<Rows>,
}

/// The sessions' rows, as the store's map keeps them.
#[derive(Default)]
struct Rows {
    of: std::collections::BTreeMap<SessionKey, i64>,
    /// The next row's sequence number.
    next: i64,
    /// Older rows of a session found beside its newest (deleted by the
    /// next commit).
    stale: Vec<i64>,
}

impl Rows {
    /// Takes the rows in the order they were written (sequence number,
    /// session); returns whether this one is the session's newest.
    fn note(&mut self, seq: i64, key: SessionKey) -> bool {
        self.next = self.next.max(seq.saturating_add(1));
        match self.of.insert(key, seq) {
            Some(old) if old > seq => {
                self.of.insert(key, old);
                self.stale.push(seq);
                false
            }
            Some(old) => {
                self.stale.push(old);
                true
            }
            None => true,
        }
    }
}

fn wall_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the store at `path`, 0600: it holds tunnel
    /// secrets and credentials the LACs proxied.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Checkpoints::default())
    }

    /// [`Store::open`], its log checkpointed `when` says.
    pub fn open_with(path: &Path, when: Checkpoints) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Io { path: dir.display().to_string(), source })?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql)?;
        let has_tables: bool = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'meta'", [], |r| r.get::<_, i64>(0))
            .map_err(sql)?
            > 0;
        if has_tables && version != FORMAT {
            return Err(StoreError::Format { path: path.display().to_string(), found: version });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (
                 k INTEGER PRIMARY KEY CHECK (k = 0),
                 written_ns INTEGER NOT NULL,
                 data BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS tunnels (
                 id INTEGER PRIMARY KEY,
                 written_ns INTEGER NOT NULL,
                 data BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS sessions (
                 seq INTEGER PRIMARY KEY,
                 tunnel INTEGER NOT NULL,
                 session INTEGER NOT NULL,
                 written_ns INTEGER NOT NULL,
                 data BLOB NOT NULL);",
        )
        .map_err(sql)?;
        conn.pragma_update(None, "user_version", FORMAT).map_err(sql)?;
        // The checkpointer's, not this connection's (see the module's note).
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(sql)?;
        // A commit reads the pages it changes: 32 MiB of them kept (the
        // default, 2 MiB, is 5,000 sessions' records) instead of read
        // again from the kernel's cache.
        conn.pragma_update(None, "cache_size", -32768).map_err(sql)?;
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let checkpointer = Checkpointer::start(path, when)?;
        Ok(Store { conn, path: path.to_path_buf(), stats: StoreStats::default(), checkpointer, rows: None })
    }

    /// The sessions a store holds, read without writing anything (the
    /// process that owns it may be running): for tests and inspection.
    pub fn session_keys(path: &Path) -> Result<Vec<SessionKey>, StoreError> {
        let sql = |source| StoreError::Sqlite { path: path.display().to_string(), source };
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
        let mut q = conn
            .prepare("SELECT DISTINCT tunnel, session FROM sessions ORDER BY tunnel, session")
            .map_err(sql)?;
        let rows = q
            .query_map([], |r| Ok(SessionKey::new(TunnelId(r.get(0)?), SessionId(r.get(1)?))))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// The sessions' rows, read from the table (a store whose records
    /// were not read).
    fn load_rows(&self) -> rusqlite::Result<Rows> {
        let mut rows = Rows::default();
        let mut q = self.conn.prepare("SELECT seq, tunnel, session FROM sessions")?;
        let found = q.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, SessionKey::new(TunnelId(r.get(1)?), SessionId(r.get(2)?))))
        })?;
        for row in found {
            let (seq, key) = row?;
            rows.note(seq, key);
        }
        Ok(rows)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite { path: self.path.display().to_string(), source }
    }

    /// Every record, each with its age at `now` (the wall clock).
    pub fn read(&mut self, now: SystemTime) -> Result<Records, StoreError> {
        let now = wall_ns(now);
        let age =
            |written: i64| Duration::from_nanos(u64::try_from(now.saturating_sub(written)).unwrap_or(0));
        let mut out = Vec::new();
        let mut q = self.conn.prepare("SELECT written_ns, data FROM meta").map_err(self.sql())?;
        let rows =
            q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).map_err(self.sql())?;
        for row in rows {
            let (w, bytes) = row.map_err(self.sql())?;
            out.push(StoredRecord { key: RecordKey::Meta, bytes, age: age(w) });
        }
        let mut q = self.conn.prepare("SELECT id, written_ns, data FROM tunnels").map_err(self.sql())?;
        let rows = q
            .query_map([], |r| Ok((r.get::<_, u16>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?)))
            .map_err(self.sql())?;
        for row in rows {
            let (id, w, bytes) = row.map_err(self.sql())?;
            out.push(StoredRecord { key: RecordKey::Tunnel(TunnelId(id)), bytes, age: age(w) });
        }
        let mut q = self
            .conn
            .prepare("SELECT seq, tunnel, session, written_ns, data FROM sessions ORDER BY seq")
            .map_err(self.sql())?;
        let found = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    SessionKey::new(TunnelId(r.get(1)?), SessionId(r.get(2)?)),
                    r.get::<_, i64>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(self.sql())?;
        let mut rows = Rows::default();
        let mut sessions = Vec::new();
        for row in found {
            let (seq, key, w, bytes) = row.map_err(self.sql())?;
            rows.note(seq, key);
            sessions.push((seq, StoredRecord { key: RecordKey::Session(key), bytes, age: age(w) }));
        }
        // A session's newest row only (two only if a commit the map did
        // not see left one behind).
        out.reserve(sessions.len());
        out.extend(sessions.into_iter().filter_map(|(seq, r)| match r.key {
            RecordKey::Session(k) if rows.of.get(&k) == Some(&seq) => Some(r),
            _ => None,
        }));
        drop(q);
        self.rows = Some(rows);
        // By session, as a table keyed by them gave them: the restore
        // takes them back faster in order (a fifth of its time at 20,000).
        out.sort_unstable_by_key(|r| r.key);
        Ok(Records(out))
    }

    /// Writes `changes` in one transaction, stamped `now`. Once this
    /// returns they survive the process (see the module's note).
    pub fn commit(&mut self, changes: &Changes, now: SystemTime) -> Result<(), StoreError> {
        self.commit_passes(&[(changes, now)])
    }

    /// Writes the changes of several passes of the loop, in their order,
    /// in one transaction (a group commit), each stamped with its own
    /// time. A session's record written by several of them is written
    /// once, the last one's: the store holds the same after it as after
    /// one commit per pass. Tunnels' records are all written, in order
    /// (a tunnel's removal removes its sessions).
    pub fn commit_passes(&mut self, passes: &[(&Changes, SystemTime)]) -> Result<(), StoreError> {
        if passes.iter().all(|(c, _)| c.is_empty()) {
            return Ok(());
        }
        let mut records: Vec<(&RecordKey, &Option<Vec<u8>>, i64)> = Vec::new();
        if let [(changes, now)] = passes {
            let now = wall_ns(*now);
            records.extend(changes.0.iter().map(|(k, d)| (k, d, now)));
        } else {
            // From the last backwards: a session's (or the meta) record
            // seen already is superseded.
            let mut seen = std::collections::HashSet::new();
            for (changes, now) in passes.iter().rev() {
                let now = wall_ns(*now);
                for (key, data) in changes.0.iter().rev() {
                    if matches!(key, RecordKey::Tunnel(_)) || seen.insert(*key) {
                        records.push((key, data, now));
                    }
                }
            }
            records.reverse();
        }
        let t0 = std::time::Instant::now();
        let result = self.write(&records);
        self.stats.last_commit_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.commit_us = self.stats.commit_us.saturating_add(self.stats.last_commit_us);
        match result {
            Ok((written, removed, bytes)) => {
                for (key, data, _) in &records {
                    match (key, data) {
                        (RecordKey::Session(_), Some(_)) => self.stats.session_records += 1,
                        (RecordKey::Tunnel(_), Some(_)) => self.stats.tunnel_records += 1,
                        _ => {}
                    }
                }
                self.stats.commits += 1;
                self.stats.passes += passes.len() as u64;
                self.stats.records_written += written;
                self.stats.records_removed += removed;
                self.stats.bytes_written += bytes;
                Ok(())
            }
            Err(e) => {
                self.stats.commit_errors += 1;
                Err(self.sql()(e))
            }
        }
    }

    fn write(
        &mut self,
        records: &[(&RecordKey, &Option<Vec<u8>>, i64)],
    ) -> rusqlite::Result<(u64, u64, u64)> {
        let mut rows = match self.rows.take() {
            Some(rows) => rows,
            None => self.load_rows()?,
        };
        // The map as it was, for a transaction that fails.
        let mut undo = Vec::new();
        let next = rows.next;
        let result = Self::write_rows(&mut self.conn, records, &mut rows, &mut undo);
        match &result {
            Ok(_) => rows.stale.clear(),
            Err(_) => {
                for (key, seq) in undo.into_iter().rev() {
                    match seq {
                        Some(seq) => rows.of.insert(key, seq),
                        None => rows.of.remove(&key),
                    };
                }
                rows.next = next;
            }
        }
        self.rows = Some(rows);
        result
    }

    fn write_rows(
        conn: &mut Connection,
        records: &[(&RecordKey, &Option<Vec<u8>>, i64)],
        rows: &mut Rows,
        undo: &mut Vec<(SessionKey, Option<i64>)>,
    ) -> rusqlite::Result<(u64, u64, u64)> {
        // Immediate: the write lock taken at the start (waiting for a
        // checkpoint that holds it), never a read turned write that
        // fails.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (mut written, mut removed, mut bytes) = (0, 0, 0);
        {
            let mut put_meta = tx.prepare_cached(
                "INSERT INTO meta (k, written_ns, data) VALUES (0, ?1, ?2)
                 ON CONFLICT (k) DO UPDATE SET written_ns = excluded.written_ns, data = excluded.data",
            )?;
            let mut put_tunnel = tx.prepare_cached(
                "INSERT INTO tunnels (id, written_ns, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET written_ns = excluded.written_ns, data = excluded.data",
            )?;
            let mut del_tunnel = tx.prepare_cached("DELETE FROM tunnels WHERE id = ?1")?;
            let mut put_session = tx.prepare_cached(
                "INSERT INTO sessions (seq, tunnel, session, written_ns, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut del_row = tx.prepare_cached("DELETE FROM sessions WHERE seq = ?1")?;
            for seq in &rows.stale {
                del_row.execute(params![seq])?;
            }
            for &(key, data, now) in records {
                match (key, data) {
                    (RecordKey::Meta, Some(d)) => {
                        put_meta.execute(params![now, d])?;
                    }
                    (RecordKey::Meta, None) => {}
                    (RecordKey::Tunnel(id), Some(d)) => {
                        put_tunnel.execute(params![id.0, now, d])?;
                    }
                    (RecordKey::Tunnel(id), None) => {
                        removed += del_tunnel.execute(params![id.0])? as u64;
                        // Its sessions cannot outlive it.
                        let range =
                            SessionKey::new(*id, SessionId(0))..=SessionKey::new(*id, SessionId(u16::MAX));
                        let gone: Vec<_> = rows.of.range(range).map(|(k, seq)| (*k, *seq)).collect();
                        for (k, seq) in gone {
                            rows.of.remove(&k);
                            undo.push((k, Some(seq)));
                            removed += del_row.execute(params![seq])? as u64;
                        }
                    }
                    (RecordKey::Session(k), Some(d)) => {
                        let seq = rows.next;
                        rows.next = seq.saturating_add(1);
                        let old = rows.of.insert(*k, seq);
                        undo.push((*k, old));
                        if let Some(old) = old {
                            del_row.execute(params![old])?;
                        }
                        put_session.execute(params![seq, k.tunnel.0, k.session.0, now, d])?;
                    }
                    (RecordKey::Session(k), None) => {
                        if let Some(old) = rows.of.remove(k) {
                            undo.push((*k, Some(old)));
                            removed += del_row.execute(params![old])? as u64;
                        }
                    }
                }
                if let Some(d) = data {
                    written += 1;
                    bytes += d.len() as u64;
                }
            }
        }
        tx.commit()?;
        Ok((written, removed, bytes))
    }

    /// Forgets every record (a stop that ends every session).
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("DELETE FROM sessions; DELETE FROM tunnels; DELETE FROM meta;")
            .map_err(self.sql())?;
        self.rows = None;
        Ok(())
    }

    /// Tunnels and sessions in the store.
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        let n = |table: &str| {
            self.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
        };
        Ok((n("tunnels").map_err(self.sql())? as u64, n("sessions").map_err(self.sql())? as u64))
    }

    /// The log folded into the database and truncated (a stop that went
    /// well); a store never closed is read as well.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.checkpointer.stop();
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").map_err(self.sql())?;
        self.conn
            .close()
            .map_err(|(_, source)| StoreError::Sqlite { path: self.path.display().to_string(), source })
    }

    /// For `lnsctl show stats`.
    pub fn stats_map(&self) -> std::collections::BTreeMap<String, u64> {
        self.stats.map(&self.checkpoint_counters())
    }

    /// The checkpoints' counters, which any thread may read.
    pub fn checkpoint_counters(&self) -> CheckpointCounters {
        CheckpointCounters(self.checkpointer.stats.clone())
    }
}

/// The [`Checkpointer`]'s counters, shared with its thread.
#[derive(Debug, Clone)]
pub struct CheckpointCounters(Arc<CheckpointStats>);

impl StoreStats {
    /// For `lnsctl show stats`, with the checkpoints'.
    pub fn map(&self, checkpoints: &CheckpointCounters) -> std::collections::BTreeMap<String, u64> {
        let s = self;
        [
            ("commits", s.commits),
            ("passes", s.passes),
            ("records_written", s.records_written),
            ("session_records", s.session_records),
            ("tunnel_records", s.tunnel_records),
            ("records_removed", s.records_removed),
            ("bytes_written", s.bytes_written),
            ("commit_errors", s.commit_errors),
            ("last_commit_us", s.last_commit_us),
            ("commit_us", s.commit_us),
            ("encode_us", s.encode_us),
        ]
        .into_iter()
        .chain({
            let c = &checkpoints.0;
            [
                ("checkpoints", c.checkpoints.load(Ordering::Relaxed)),
                ("checkpoint_us", c.checkpoint_us.load(Ordering::Relaxed)),
                ("checkpoint_errors", c.checkpoint_errors.load(Ordering::Relaxed)),
                ("checkpoints_blocking", c.checkpoints_blocking.load(Ordering::Relaxed)),
                ("wal_pages", c.wal_pages.load(Ordering::Relaxed)),
            ]
        })
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose log is never checkpointed while the test looks at it
    /// (what a process killed before its checkpointer ran leaves).
    const NO_CHECKPOINTS: Checkpoints = Checkpoints { every: Duration::from_secs(3600), wal_limit: u64::MAX };

    /// A directory of the test's own, the store's file in it, and the
    /// wall-clock time the records are written at.
    fn scratch() -> (tempfile::TempDir, PathBuf, SystemTime) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        (dir, path, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn key(t: u16, s: u16) -> RecordKey {
        RecordKey::Session(SessionKey::new(TunnelId(t), SessionId(s)))
    }

    /// What a process started after a `kill -9` finds: the database and
    /// its log as the kernel has them (copied elsewhere, since this
    /// process still holds the dead store's locks and shared index, which
    /// a real successor rebuilds from the log).
    fn after_kill(dir: &Path) -> tempfile::TempDir {
        let next = tempfile::tempdir().expect("tempdir");
        for name in [FILE.to_string(), format!("{FILE}-wal")] {
            if dir.join(&name).exists() {
                std::fs::copy(dir.join(&name), next.path().join(&name)).expect("copy");
            }
        }
        next
    }

    fn read_back(path: &Path, now: SystemTime) -> Vec<(RecordKey, Vec<u8>, Duration)> {
        let mut store = Store::open(path).expect("reopen");
        let mut v: Vec<_> =
            store.read(now).expect("read").0.into_iter().map(|r| (r.key, r.bytes, r.age)).collect();
        v.sort_by_key(|r| r.0);
        v
    }

    #[test]
    fn what_was_committed_survives_a_process_that_never_closed_the_store() {
        let (dir, path, t0) = scratch();
        let mut store = Store::open_with(&path, NO_CHECKPOINTS).expect("open");
        let first = Changes(vec![
            (RecordKey::Meta, Some(b"meta1".to_vec())),
            (RecordKey::Tunnel(TunnelId(7)), Some(b"t7".to_vec())),
            (key(7, 1), Some(b"s1".to_vec())),
            (key(7, 2), Some(b"s2".to_vec())),
            (key(8, 1), Some(b"orphan".to_vec())),
        ]);
        store.commit(&first, t0).expect("commit");
        let second = Changes(vec![
            (RecordKey::Meta, Some(b"meta2".to_vec())),
            (key(7, 1), Some(b"s1 again".to_vec())),
            (key(7, 2), None),
            (RecordKey::Tunnel(TunnelId(8)), None),
        ]);
        store.commit(&second, t0 + Duration::from_secs(5)).expect("commit");
        assert_eq!(store.stats.commits, 2);
        assert_eq!(store.stats.records_removed, 2, "session 7/2 and tunnel 8's session");
        // The process dies: no close, no checkpoint, the log stays as it is.
        std::mem::forget(store);
        assert!(dir.path().join(format!("{FILE}-wal")).exists(), "the commits are in the log");

        let next = after_kill(dir.path());
        let later = t0 + Duration::from_secs(65);
        let back = read_back(&next.path().join(FILE), later);
        assert_eq!(
            back,
            vec![
                (RecordKey::Meta, b"meta2".to_vec(), Duration::from_secs(60)),
                (RecordKey::Tunnel(TunnelId(7)), b"t7".to_vec(), Duration::from_secs(65)),
                (key(7, 1), b"s1 again".to_vec(), Duration::from_secs(60)),
            ]
        );
    }

    #[test]
    fn a_commit_cut_short_leaves_the_one_before() {
        let (dir, path, t0) = scratch();
        let mut store = Store::open_with(&path, NO_CHECKPOINTS).expect("open");
        store.commit(&Changes(vec![(key(1, 1), Some(vec![1; 3000]))]), t0).expect("commit");
        let whole = std::fs::metadata(dir.path().join(format!("{FILE}-wal"))).expect("wal").len();
        store
            .commit(&Changes(vec![(key(1, 1), Some(vec![2; 3000])), (key(1, 2), Some(vec![3; 10]))]), t0)
            .expect("commit");
        std::mem::forget(store);
        // The second commit's frames torn off part way, as a process
        // killed inside write(2) would leave them.
        let next = after_kill(dir.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(next.path().join(format!("{FILE}-wal")))
            .expect("wal");
        f.set_len(whole + 1000).expect("truncate");
        let back = read_back(&next.path().join(FILE), t0);
        assert_eq!(back, vec![(key(1, 1), vec![1; 3000], Duration::ZERO)]);
    }

    #[test]
    fn clear_forgets_everything_and_another_format_is_refused() {
        let (_dir, path, t0) = scratch();
        let mut store = Store::open(&path).expect("open");
        store
            .commit(&Changes(vec![(RecordKey::Tunnel(TunnelId(3)), Some(b"t".to_vec()))]), t0)
            .expect("commit");
        assert_eq!(store.counts().expect("counts"), (1, 0));
        store.clear().expect("clear");
        assert_eq!(store.counts().expect("counts"), (0, 0));
        store.conn.pragma_update(None, "user_version", FORMAT + 1).expect("version");
        store.close().expect("close");
        assert!(matches!(Store::open(&path), Err(StoreError::Format { found, .. }) if found == FORMAT + 1));
    }

    fn wait_until(mut f: impl FnMut() -> bool) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn batch(round: u16) -> Changes {
        Changes((0..20).map(|s| (key(round % 7, s), Some(vec![round as u8; 400]))).collect())
    }

    /// The committing connection never checkpoints; the thread does, and
    /// once it has caught up the log starts over from its beginning
    /// instead of growing.
    #[test]
    fn the_log_is_checkpointed_off_the_committing_thread_and_starts_over() {
        let (dir, path, t0) = scratch();
        let wal = dir.path().join(format!("{FILE}-wal"));
        let when = Checkpoints { every: Duration::from_millis(10), wal_limit: u64::MAX };
        let mut store = Store::open_with(&path, when).expect("open");
        let auto: i64 =
            store.conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0)).expect("pragma");
        assert_eq!(auto, 0, "the loop's connection leaves checkpoints to the thread");
        for round in 0..300 {
            store.commit(&batch(round), t0).expect("commit");
        }
        let checkpoints = |s: &Store| s.stats_map()["checkpoints"];
        // Two checkpoints after the last commit: one of them began after
        // it, and found the whole log.
        let seen = checkpoints(&store);
        assert!(wait_until(|| checkpoints(&store) >= seen + 2), "{:?}", store.stats_map());
        assert_eq!(store.stats_map()["checkpoint_errors"], 0);
        let grown = std::fs::metadata(&wal).expect("wal").len();
        assert!(grown > 300 * 4096, "300 commits of a page or more each: {grown}");
        for round in 0..10 {
            store.commit(&batch(round), t0).expect("commit");
        }
        assert_eq!(std::fs::metadata(&wal).expect("wal").len(), grown, "written over from its beginning");
        std::mem::forget(store);
        let next = after_kill(dir.path());
        // Rounds 0 to 9 were the last to write tunnels 0 to 6 (7 to 9 over
        // 0 to 2).
        let last = |t: u16| if t <= 2 { t + 7 } else { t } as u8;
        let want: Vec<_> = (0..7)
            .flat_map(|t| (0..20).map(move |s| (key(t, s), vec![last(t); 400], Duration::ZERO)))
            .collect();
        assert_eq!(read_back(&next.path().join(FILE), t0), want);
    }

    fn rows(path: &Path) -> Vec<(i64, u16, u16)> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
        let mut q = conn.prepare("SELECT seq, tunnel, session FROM sessions ORDER BY seq").expect("select");
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    /// A session's record written again is appended and its old row
    /// goes; a tunnel's removal takes every row of its sessions, written
    /// before it in the same commit too.
    #[test]
    fn a_record_written_again_moves_to_the_end_and_leaves_one_row() {
        let (_dir, path, t0) = scratch();
        let mut store = Store::open(&path).expect("open");
        store
            .commit(&Changes(vec![(key(1, 900), Some(b"a".to_vec())), (key(2, 5), Some(b"b".to_vec()))]), t0)
            .expect("commit");
        store.commit(&Changes(vec![(key(1, 900), Some(b"a2".to_vec()))]), t0).expect("commit");
        assert_eq!(rows(&path), vec![(1, 2, 5), (2, 1, 900)]);
        store
            .commit(
                &Changes(vec![
                    (key(3, 1), Some(b"c".to_vec())),
                    (RecordKey::Tunnel(TunnelId(3)), None),
                    (RecordKey::Tunnel(TunnelId(1)), None),
                    (key(1, 7), Some(b"d".to_vec())),
                ]),
                t0,
            )
            .expect("commit");
        assert_eq!(store.stats.records_removed, 2, "3/1 and 1/900");
        assert_eq!(rows(&path), vec![(1, 2, 5), (4, 1, 7)]);
        store.close().expect("close");
        let back: Vec<_> = read_back(&path, t0).into_iter().map(|(k, d, _)| (k, d)).collect();
        assert_eq!(back, vec![(key(1, 7), b"d".to_vec()), (key(2, 5), b"b".to_vec())]);
    }

    /// Two rows of one session (what a commit the map never saw would
    /// leave): the newer is read, and the next commit deletes the older.
    #[test]
    fn of_two_rows_of_a_session_the_newer_is_read_and_the_older_goes() {
        let (_dir, path, t0) = scratch();
        let mut store = Store::open(&path).expect("open");
        store.commit(&Changes(vec![(key(1, 1), Some(b"new".to_vec()))]), t0).expect("commit");
        store.conn.execute("INSERT INTO sessions VALUES (-5, 1, 1, 0, x'6f6c64')", []).expect("an older row");
        store.close().expect("close");
        let mut store = Store::open(&path).expect("reopen");
        let records = store.read(t0).expect("read").0;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].bytes, b"new");
        store.commit(&Changes(vec![(key(1, 2), Some(b"x".to_vec()))]), t0).expect("commit");
        assert_eq!(rows(&path), vec![(0, 1, 1), (1, 1, 2)]);
    }

    /// A commit that fails (here at its last record, a tunnel's) leaves
    /// the store's map as the table is: the sessions written again
    /// afterwards have one row each, not two.
    #[test]
    fn a_failed_commit_leaves_the_map_as_the_table_is() {
        let (_dir, path, t0) = scratch();
        let mut store = Store::open(&path).expect("open");
        store
            .commit(&Changes(vec![(key(1, 1), Some(b"a".to_vec())), (key(2, 1), Some(b"b".to_vec()))]), t0)
            .expect("commit");
        store
            .conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON tunnels BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .expect("rename");
        let failing = Changes(vec![
            (key(1, 1), Some(b"a2".to_vec())),
            (key(2, 1), None),
            (RecordKey::Tunnel(TunnelId(1)), Some(b"t".to_vec())),
        ]);
        assert!(store.commit(&failing, t0).is_err());
        assert_eq!(store.stats.commit_errors, 1);
        store.conn.execute_batch("DROP TRIGGER refuse;").expect("drop");
        store.commit(&failing, t0).expect("commit");
        assert_eq!(rows(&path), vec![(2, 1, 1)]);
    }

    /// The point of the layout: a commit of 40 sessions with random ids
    /// among thousands appends a few pages to the log, not one a record.
    #[test]
    fn a_commit_of_random_sessions_writes_few_pages() {
        use rand::{Rng, SeedableRng};
        let (dir, path, t0) = scratch();
        let wal = dir.path().join(format!("{FILE}-wal"));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut store = Store::open_with(&path, NO_CHECKPOINTS).expect("open");
        let keys: Vec<RecordKey> = (0..4000).map(|i| key(i % 20, rng.gen_range(1..u16::MAX))).collect();
        for (i, batch) in keys.chunks(40).enumerate() {
            // Each commit: 40 sessions set up, and the 40 of two commits
            // before established (their records written again, larger).
            let mut changes: Vec<_> = batch.iter().map(|k| (*k, Some(vec![1; 70]))).collect();
            if i >= 2 {
                changes.extend(keys[(i - 2) * 40..(i - 1) * 40].iter().map(|k| (*k, Some(vec![2; 376]))));
            }
            let before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            store.commit(&Changes(changes), t0).expect("commit");
            let pages = (std::fs::metadata(&wal).expect("wal").len() - before) / (4096 + 24);
            if i >= 10 {
                assert!(pages <= 20, "commit {i} of 80 records wrote {pages} pages");
            }
        }
    }

    /// A log past the limit is checkpointed with the writer held back:
    /// the commits wait for it and go through, none fails.
    #[test]
    fn a_log_past_its_limit_makes_commits_wait_not_fail() {
        let (_dir, path, t0) = scratch();
        let when = Checkpoints { every: Duration::from_millis(1), wal_limit: 0 };
        let mut store = Store::open_with(&path, when).expect("open");
        let mut round = 0u16;
        let blocking = |s: &Store| s.stats_map()["checkpoints_blocking"];
        assert!(wait_until(|| {
            store.commit(&batch(round), t0).expect("a commit waits for the checkpoint");
            round = round.wrapping_add(1);
            blocking(&store) >= 5
        }));
        assert_eq!(store.stats.commit_errors, 0);
        let last = round.wrapping_sub(1);
        store.close().expect("close");
        let back = read_back(&path, t0);
        assert!(back.contains(&(key(last % 7, 0), vec![last as u8; 400], Duration::ZERO)));
    }
}
