//! The replicated store's journal: every store job becomes an entry of a shared, ordered
//! log, and each instance keeps an in-memory SQLite replica of that log to query. Where
//! the log lives is behind the [`SharedLog`] trait: DynamoDB in production
//! ([`super::dynamodb`], `[state] backend = "dynamodb"`), memory in unit tests
//! ([`MemoryLog`](super::shared_log::MemoryLog)).
//!
//! # Why a log, and why SQLite stays the query engine
//!
//! Every query, invariant and test of the store (the ~60 methods of [`Db`](super::Db),
//! the append-only hash-chained audit, the conditional request transitions) is written
//! once, in SQL. Re-writing each as DynamoDB items and indexes would make two stores that
//! drift apart. Instead, the distributed engine holds what must be shared and agreed on:
//! the sequence of committed transactions. Agreement is the engine's, not ours: an entry
//! is appended with a conditional write, so for each position in the log exactly one
//! writer wins. The key design in DynamoDB is in [`super::dynamodb`].
//!
//! # How a write commits
//!
//! On a replica every store job (one [`StoreHandle`](super::StoreHandle) call) runs in one
//! local transaction ([`Store::job`](super::Store::job)). SQLite's update hook notes which
//! rows the job touched; before the commit, the journal reads their final values (or finds
//! them gone) and appends them as entry `seq + 1`, where `seq` is the last entry this
//! replica has applied. If another instance appended first, the append is refused
//! ([`AppendError::Taken`]), the local transaction is rolled back, and the job ends with
//! [`StoreError::Stale`]: it was decided on a stale replica.
//! [`StoreHandle::call`](super::StoreHandle::call) runs it again after catching up, so callers see a lost race
//! only if it is lost again and again. When
//! this instance leads, the append carries the lease's [`Fence`]: a leader that was
//! paused past its lease and wakes believing it still leads has every write refused
//! ([`AppendError::Fenced`], not retryable).
//!
//! Final values, not a record of each statement: a savepoint rolled back or a statement
//! that failed leaves nothing behind, and rows changed twice are sent once.
//!
//! So a write is durable in the shared log before its job returns (the "durable before
//! acknowledged" rule holds across machines), and two instances can never both move one
//! attempt: both would have to append at the same position.
//!
//! # How a replica catches up
//!
//! [`Journal::catch_up`] reads the entries after `seq` (strongly consistent) and applies
//! them in order, each in one local transaction, with recording off. Each job catches up
//! first unless the replica did within [`FRESH_FOR`] (half a second): the leader is nearly
//! the only writer, and a read per store call would double its latency. So reads may
//! trail another instance's write by that much; writes cannot, since an append at a
//! position already taken is refused (and the next job catches up). A replica is rebuilt
//! from the log when the process starts.
//!
//! # Snapshots
//!
//! Every [`SNAPSHOT_EVERY`] entries the leader writes its replica's whole state as a
//! snapshot at its log position, and the latest-snapshot pointer moves to it (only
//! forward). A replica opens by loading the latest snapshot and replaying the log after
//! it, so a start costs one snapshot plus at most about [`SNAPSHOT_EVERY`] entries,
//! however old the log is. The entries before a snapshot stay (they are the history), and
//! a snapshot of another schema version is skipped.
//!
//! # Limits (written down, not hidden)
//!
//! * Writes must run inside [`Store::job`](super::Store::job) (the store thread does it
//!   for every call); a write outside one cannot be sent and is refused at the next job.
//! * All instances must run the same schema version: an entry written by a newer schema
//!   is refused with an error that says to upgrade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::hooks::Action;
use rusqlite::types::{Value, ValueRef};
use serde::{Deserialize, Serialize};

use super::dynamodb::DynamoLog;
pub use super::shared_log::Fence;
use super::shared_log::{AppendError, Entry, SharedLog, Snapshot};
use super::{SCHEMA_VERSION, StoreError, StoreResult};
use crate::aws::dynamodb::Table;

/// A column value, as SQLite stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Val {
    #[serde(rename = "n")]
    Null,
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "r")]
    Real(f64),
    #[serde(rename = "t")]
    Text(String),
    #[serde(rename = "b")]
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Val {
    fn from(v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Real(r) => Val::Real(r),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        }
    }
}

impl From<&Val> for Value {
    fn from(v: &Val) -> Value {
        match v {
            Val::Null => Value::Null,
            Val::Int(i) => Value::Integer(*i),
            Val::Real(r) => Value::Real(*r),
            Val::Text(t) => Value::Text(t.clone()),
            Val::Blob(b) => Value::Blob(b.clone()),
        }
    }
}

/// One row's final state after a job: the unit of the log. Rows are named by table and
/// rowid; every replica applies the same rows with the same rowids, so rowids agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
enum Change {
    /// The row exists with these column values (in table order).
    #[serde(rename = "w")]
    Write { t: String, r: i64, v: Vec<Val> },
    /// The row is gone.
    #[serde(rename = "d")]
    Delete { t: String, r: i64 },
}

#[derive(Debug, Default)]
struct State {
    /// Rows the open job touched, in first-touch order, without repeats.
    touched: Vec<(String, i64)>,
    seen: std::collections::HashSet<(String, i64)>,
    /// On while a catch-up applies entries that are already in the log.
    applying: bool,
    /// A store job is open (writes are recorded and sent at its end).
    in_job: bool,
    /// A write happened outside a job: it is in this replica but not in the log.
    stray: bool,
    /// The last entry this replica has applied (or appended).
    seq: u64,
    /// Column names of each table, for the replay.
    columns: HashMap<String, Vec<String>>,
    /// When this replica last read the log's tail; `None` forces the next job to.
    caught_up_at: Option<std::time::Instant>,
    /// The log position of the snapshot this replica started from, or of the last one it
    /// wrote; and how many log entries it replayed when it opened.
    snapshot_seq: u64,
    replayed_at_open: usize,
}

/// The leader writes a snapshot once the log has grown this many entries past the last
/// one, so a start replays at most about this many entries after loading it.
pub const SNAPSHOT_EVERY: u64 = 1000;

/// A job reads the log's tail first unless the replica did so this recently: the leader,
/// nearly the only writer, would otherwise pay a read of the log per store call. Writes stay safe
/// either way (an append at a taken position is refused); reads may lag another
/// instance's write (a CLI's) by this much.
pub const FRESH_FOR: std::time::Duration = std::time::Duration::from_millis(500);
/// This replica's link to the shared log. Cheap to clone; every clone shares the state.
#[derive(Clone)]
pub struct Journal {
    log: Arc<dyn SharedLog>,
    writer: String,
    state: Arc<Mutex<State>>,
    fence: Arc<Mutex<Option<Fence>>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("log", &self.log)
            .field("writer", &self.writer)
            .finish()
    }
}

pub(super) fn journal_error(op: &'static str, message: String, retryable: bool) -> StoreError {
    StoreError::Journal {
        op,
        message,
        retryable,
    }
}

impl Journal {
    /// A journal over `log`; `writer` names this instance in the entries it appends.
    pub fn new(log: Arc<dyn SharedLog>, writer: &str) -> Journal {
        Journal {
            log,
            writer: writer.to_string(),
            state: Arc::new(Mutex::new(State::default())),
            fence: Arc::new(Mutex::new(None)),
        }
    }

    /// A journal over the DynamoDB table `table` ([`DynamoLog`]). `runtime` runs the
    /// DynamoDB calls: the store calls them from its own thread, which must not be a
    /// runtime worker.
    pub fn on_table(table: Table, runtime: tokio::runtime::Handle, writer: &str) -> Journal {
        Journal::new(Arc::new(DynamoLog::new(table, runtime)), writer)
    }

    /// [`Journal::on_table`] the table `table` through an SDK client the caller built (the
    /// tests and examples).
    pub fn dynamodb(
        client: crate::aws::dynamodb::Client,
        table: &str,
        runtime: tokio::runtime::Handle,
        writer: &str,
    ) -> Journal {
        Journal::on_table(Table::from_client(client, table), runtime, writer)
    }

    /// Sets (leader) or clears (standby, CLI) the condition every append carries.
    pub fn set_fence(&self, fence: Option<Fence>) {
        if let Ok(mut f) = self.fence.lock() {
            *f = fence;
        }
    }

    /// The last log position this replica has applied.
    pub fn seq(&self) -> u64 {
        self.state.lock().map(|s| s.seq).unwrap_or(0)
    }

    /// The log position of the snapshot this replica started from (or last wrote); 0 for
    /// none.
    pub fn snapshot_seq(&self) -> u64 {
        self.state.lock().map(|s| s.snapshot_seq).unwrap_or(0)
    }

    /// How many log entries this replica replayed when it opened (after its snapshot).
    pub fn replayed_at_open(&self) -> usize {
        self.state.lock().map(|s| s.replayed_at_open).unwrap_or(0)
    }

    /// Whether the log has grown [`SNAPSHOT_EVERY`] entries past the last snapshot.
    pub fn snapshot_due(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.seq >= s.snapshot_seq + SNAPSHOT_EVERY)
            .unwrap_or(false)
    }

    /// Opening: the latest snapshot (if any, and of this schema), then the log after it.
    pub(super) fn open(&self, conn: &Connection) -> StoreResult<()> {
        self.load_snapshot(conn)?;
        let n = self.catch_up(conn)?;
        self.state.lock().map_err(|_| poisoned())?.replayed_at_open = n;
        Ok(())
    }

    /// Writes this replica's whole state as the snapshot at its log position, outside any
    /// transaction (call it between jobs: it reads a consistent state because nothing
    /// else uses the connection meanwhile). Returns the position.
    pub fn write_snapshot(&self, conn: &Connection) -> StoreResult<u64> {
        let seq = self.seq();
        let columns = self.state.lock().map_err(|_| poisoned())?.columns.clone();
        let mut rows = Vec::new();
        let mut tables: Vec<&String> = columns.keys().collect();
        tables.sort();
        for t in tables {
            let mut stmt = conn
                .prepare(&format!("SELECT rowid, * FROM {} ORDER BY rowid", quote(t)))
                .map_err(|source| StoreError::Query {
                    op: "read the state for a snapshot",
                    source,
                })?;
            let n = stmt.column_count();
            let read = stmt
                .query_map([], |row| {
                    let r: i64 = row.get(0)?;
                    let v = (1..n)
                        .map(|i| row.get_ref(i).map(Val::from))
                        .collect::<rusqlite::Result<Vec<Val>>>()?;
                    Ok(Change::Write { t: t.clone(), r, v })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Change>>>())
                .map_err(|source| StoreError::Query {
                    op: "read the state for a snapshot",
                    source,
                })?;
            rows.extend(read);
        }
        let body = serde_json::to_string(&rows).map_err(|source| StoreError::Encode {
            what: "snapshot",
            source,
        })?;
        self.log.put_snapshot(&Snapshot {
            seq,
            schema: SCHEMA_VERSION,
            writer: self.writer.clone(),
            body,
        })?;
        self.state.lock().map_err(|_| poisoned())?.snapshot_seq = seq;
        Ok(seq)
    }

    /// Loads the latest snapshot into an empty replica, if there is one of this schema
    /// (one of another schema is skipped: the log alone rebuilds the state).
    fn load_snapshot(&self, conn: &Connection) -> StoreResult<()> {
        let Some(snapshot) = self.log.latest_snapshot()? else {
            return Ok(());
        };
        let seq = snapshot.seq;
        if snapshot.schema != SCHEMA_VERSION {
            tracing::info!(
                snapshot = seq,
                schema = snapshot.schema,
                "the latest snapshot is of another schema version; replaying the whole log instead"
            );
            return Ok(());
        }
        let rows: Vec<Change> = serde_json::from_str(&snapshot.body).map_err(|e| {
            journal_error(
                "load the state snapshot",
                format!("snapshot {seq} is not readable ({e}); restore the table from a backup"),
                false,
            )
        })?;
        let result = self.apply_rows(conn, &rows)?;
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        result.map_err(|source| {
            journal_error(
                "load the state snapshot",
                format!(
                    "snapshot {seq} does not load ({source}); check that every instance runs the same version"
                ),
                false,
            )
        })?;
        s.seq = seq;
        s.snapshot_seq = seq;
        Ok(())
    }

    /// Reads the tables' layout and installs the update hook on `conn` (after the schema
    /// is migrated: the schema itself is not in the log, every instance builds it).
    pub(super) fn install(&self, conn: &mut Connection) -> StoreResult<()> {
        let columns = table_columns(conn).map_err(|source| StoreError::Query {
            op: "read the table layout",
            source,
        })?;
        self.state.lock().map_err(|_| poisoned())?.columns = columns;
        let state = self.state.clone();
        conn.update_hook(Some(
            move |_action: Action, db: &str, table: &str, rowid: i64| {
                if db != "main" {
                    return;
                }
                let Ok(mut s) = state.lock() else { return };
                if s.applying {
                    return;
                }
                if !s.in_job {
                    s.stray = true;
                    return;
                }
                let key = (table.to_string(), rowid);
                if s.seen.insert(key.clone()) {
                    s.touched.push(key);
                }
            },
        ))
        .map_err(|source| StoreError::Query {
            op: "install the journal",
            source,
        })?;
        let state = self.state.clone();
        conn.rollback_hook(Some(move || {
            if let Ok(mut s) = state.lock() {
                s.touched.clear();
                s.seen.clear();
            }
        }))
        .map_err(|source| StoreError::Query {
            op: "install the journal",
            source,
        })?;
        Ok(())
    }

    /// Opens a job: one local transaction whose writes are sent at [`Journal::end_job`].
    pub(super) fn begin_job(&self, conn: &Connection) -> StoreResult<()> {
        {
            let mut s = self.state.lock().map_err(|_| poisoned())?;
            if s.stray {
                return Err(journal_error(
                    "keep the replica in step with the log",
                    "a write was made outside a store job and is not in the shared log; this is a bug in rotationd, please report it (restart to rebuild the replica)".into(),
                    false,
                ));
            }
            s.touched.clear();
            s.seen.clear();
        }
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|source| StoreError::Query {
                op: "begin a store job",
                source,
            })?;
        self.state.lock().map_err(|_| poisoned())?.in_job = true;
        Ok(())
    }

    /// Ends a job: appends the final state of every row it touched to the log, then
    /// commits locally; if the log refuses, rolls back and says why.
    pub(super) fn end_job(&self, conn: &Connection) -> StoreResult<()> {
        let touched = {
            let mut s = self.state.lock().map_err(|_| poisoned())?;
            s.in_job = false;
            s.seen.clear();
            std::mem::take(&mut s.touched)
        };
        let rollback = |e: StoreError| {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        };
        if conn.is_autocommit() {
            // The job ended the transaction itself (it should not): nothing to send.
            return Ok(());
        }
        if touched.is_empty() {
            return conn
                .execute_batch("COMMIT")
                .map_err(|source| StoreError::Query {
                    op: "commit a store job",
                    source,
                });
        }
        let changes = match read_rows(conn, &touched) {
            Ok(c) => c,
            Err(source) => {
                return rollback(StoreError::Query {
                    op: "read the rows a store job wrote",
                    source,
                });
            }
        };
        let seq = self.seq() + 1;
        if let Err(e) = self.append(seq, &changes) {
            // Whatever happened, the next job reads the log first.
            if let Ok(mut s) = self.state.lock() {
                s.caught_up_at = None;
            }
            return rollback(e);
        }
        // In the log now: the local commit only catches up with it. Should it fail, the
        // next catch-up cannot re-apply this entry on top of an unknown state.
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        s.seq = seq;
        conn.execute_batch("COMMIT").map_err(|source| {
            // The log has the entry and this replica does not: it cannot go on.
            s.stray = true;
            StoreError::Query {
                op: "commit a store job",
                source,
            }
        })
    }

    /// Appends `changes` as entry `seq`, with the fence when this instance leads; says
    /// why when the log refuses.
    fn append(&self, seq: u64, changes: &[Change]) -> StoreResult<()> {
        let body = serde_json::to_string(changes).map_err(|source| StoreError::Encode {
            what: "log entry",
            source,
        })?;
        let fence = self.fence.lock().ok().and_then(|f| f.clone());
        let entry = Entry {
            seq,
            schema: SCHEMA_VERSION,
            writer: self.writer.clone(),
            body,
        };
        match self.log.append(&entry, fence.as_ref()) {
            Ok(()) => Ok(()),
            Err(AppendError::Fenced) => Err(journal_error(
                "append to the state log",
                "this instance no longer holds the leader lease (another instance took over); the write was refused".into(),
                false,
            )),
            Err(AppendError::Taken(_)) => Err(StoreError::Stale { seq }),
            Err(AppendError::Failed(e)) => Err(e),
        }
    }

    /// Applies the entries after this replica's position, in order; returns how many.
    pub fn catch_up(&self, conn: &Connection) -> StoreResult<usize> {
        let from = self.seq() + 1;
        let started = std::time::Instant::now();
        let entries = self.log.read_from(from)?;
        let n = entries.len();
        for (i, entry) in entries.into_iter().enumerate() {
            // The log has no holes: a gap means an entry was removed by hand.
            let want = from + i as u64;
            if entry.seq != want {
                return Err(journal_error(
                    "read the state log",
                    format!(
                        "entry {want} is missing from the state log (found {}); it was removed by hand: restore the table from a backup",
                        entry.seq
                    ),
                    false,
                ));
            }
            if entry.schema > SCHEMA_VERSION {
                return Err(journal_error(
                    "read the state log",
                    format!(
                        "entry {want} was written by a newer rotationd (schema {}, this one knows {SCHEMA_VERSION}); upgrade this instance",
                        entry.schema
                    ),
                    false,
                ));
            }
            let changes: Vec<Change> = serde_json::from_str(&entry.body).map_err(|e| {
                journal_error(
                    "read the state log",
                    format!("entry {want} is not readable ({e}); it was changed by hand: restore the table from a backup"),
                    false,
                )
            })?;
            self.apply(conn, entry.seq, &changes)?;
        }
        self.state.lock().map_err(|_| poisoned())?.caught_up_at = Some(started);
        Ok(n)
    }

    /// [`Journal::catch_up`] unless the replica read the log's tail within [`FRESH_FOR`]
    /// (and no append of its own was refused since).
    pub(super) fn catch_up_if_stale(&self, conn: &Connection) -> StoreResult<usize> {
        let fresh = self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .caught_up_at
            .is_some_and(|t| t.elapsed() < FRESH_FOR);
        if fresh { Ok(0) } else { self.catch_up(conn) }
    }

    /// Applies rows already in the shared table (an entry, a snapshot) in one local
    /// transaction, without recording them. The outer error is the journal's own; the
    /// inner one is SQLite refusing a row.
    fn apply_rows(
        &self,
        conn: &Connection,
        changes: &[Change],
    ) -> StoreResult<rusqlite::Result<()>> {
        let columns = {
            let mut s = self.state.lock().map_err(|_| poisoned())?;
            s.applying = true;
            s.columns.clone()
        };
        let result = (|| -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            // Rows of one entry reference each other both ways (a trigger and its
            // attempt); the keys hold at the end of the entry, as they did when written.
            conn.execute_batch("PRAGMA defer_foreign_keys = ON")?;
            for c in changes {
                if let Err(e) = apply_change(conn, &columns, c) {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
            conn.execute_batch("COMMIT")
        })();
        self.state.lock().map_err(|_| poisoned())?.applying = false;
        Ok(result)
    }

    fn apply(&self, conn: &Connection, seq: u64, changes: &[Change]) -> StoreResult<()> {
        let result = self.apply_rows(conn, changes)?;
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        match result {
            Ok(()) => {
                s.seq = seq;
                Ok(())
            }
            Err(source) => Err(journal_error(
                "apply the state log",
                format!(
                    "entry {seq} does not apply to this replica ({source}); the log and this rotationd disagree: check that every instance runs the same version"
                ),
                false,
            )),
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Panicked("the journal state lock is poisoned".into())
}

fn table_columns(conn: &Connection) -> rusqlite::Result<HashMap<String, Vec<String>>> {
    let mut tables = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for r in rows {
            tables.push(r?);
        }
    }
    let mut out = HashMap::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(&t)))?;
        let cols = stmt
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        out.insert(t, cols);
    }
    Ok(out)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The final state of each touched row.
fn read_rows(conn: &Connection, touched: &[(String, i64)]) -> rusqlite::Result<Vec<Change>> {
    let mut out = Vec::with_capacity(touched.len());
    for (t, r) in touched {
        let mut stmt =
            conn.prepare_cached(&format!("SELECT * FROM {} WHERE rowid = ?1", quote(t)))?;
        let n = stmt.column_count();
        let row = stmt
            .query_row([r], |row| {
                (0..n)
                    .map(|i| row.get_ref(i).map(Val::from))
                    .collect::<rusqlite::Result<Vec<Val>>>()
            })
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        out.push(match row {
            Some(v) => Change::Write {
                t: t.clone(),
                r: *r,
                v,
            },
            None => Change::Delete {
                t: t.clone(),
                r: *r,
            },
        });
    }
    Ok(out)
}

fn apply_change(
    conn: &Connection,
    columns: &HashMap<String, Vec<String>>,
    change: &Change,
) -> rusqlite::Result<()> {
    let unknown =
        |t: &str| rusqlite::Error::InvalidParameterName(format!("table {t} is not in this schema"));
    match change {
        Change::Write { t, r, v } => {
            let cols = columns.get(t).ok_or_else(|| unknown(t))?;
            if cols.len() != v.len() {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "table {t} has {} columns here and {} in the log",
                    cols.len(),
                    v.len()
                )));
            }
            let sets: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", quote(c), i + 2))
                .collect();
            let values: Vec<Value> = std::iter::once(Value::Integer(*r))
                .chain(v.iter().map(Value::from))
                .collect();
            let updated = conn.execute(
                &format!(
                    "UPDATE {} SET {} WHERE rowid = ?1",
                    quote(t),
                    sets.join(", ")
                ),
                rusqlite::params_from_iter(values.iter()),
            )?;
            if updated == 0 {
                let names: Vec<String> = cols.iter().map(|c| quote(c)).collect();
                let marks: Vec<String> = (1..=cols.len() + 1).map(|i| format!("?{i}")).collect();
                conn.execute(
                    &format!(
                        "INSERT INTO {} (rowid, {}) VALUES ({})",
                        quote(t),
                        names.join(", "),
                        marks.join(", ")
                    ),
                    rusqlite::params_from_iter(values.iter()),
                )?;
            }
        }
        Change::Delete { t, r } => {
            columns.get(t).ok_or_else(|| unknown(t))?;
            conn.execute(&format!("DELETE FROM {} WHERE rowid = ?1", quote(t)), [r])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The journal's own behaviour over [`MemoryLog`]: no server, so every refusal is
    //! exact. `tests/state_dynamodb.rs` runs the same rules over DynamoDB (moto).
    use super::*;
    use crate::store::Store;
    use crate::store::shared_log::MemoryLog;
    use chrono::{DateTime, TimeZone, Utc};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600 + secs, 0).unwrap()
    }

    fn replica(log: &Arc<MemoryLog>, writer: &str) -> Store {
        Store::open_replicated(Journal::new(log.clone(), writer)).unwrap()
    }

    fn cursor(store: &mut Store, name: &str) -> Option<String> {
        store
            .job(|s| s.db().get_cursor(name))
            .unwrap()
            .map(|c| c.value)
    }

    fn refusal(result: StoreResult<()>) -> (bool, String) {
        match result {
            Err(StoreError::Journal {
                retryable, message, ..
            }) => (retryable, message),
            Err(e @ StoreError::Stale { .. }) => (true, e.to_string()),
            other => panic!("the write must be refused: {other:?}"),
        }
    }

    #[test]
    fn changes_round_trip_through_json() {
        let c = vec![
            Change::Write {
                t: "cursors".into(),
                r: 3,
                v: vec![
                    Val::Text("a".into()),
                    Val::Int(1),
                    Val::Null,
                    Val::Real(0.5),
                    Val::Blob(vec![0, 255]),
                ],
            },
            Change::Delete {
                t: "seen_events".into(),
                r: 7,
            },
        ];
        let text = serde_json::to_string(&c).unwrap();
        let back: Vec<Change> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn each_writing_job_is_one_entry_and_another_replica_applies_them() {
        let log = Arc::new(MemoryLog::new());
        let mut a = replica(&log, "a");
        a.job(|s| s.db().set_cursor("c", "1", t(1))).unwrap();
        a.job(|s| s.db().set_cursor("d", "2", t(2))).unwrap();
        // A job that only reads appends nothing.
        assert_eq!(cursor(&mut a, "c").as_deref(), Some("1"));
        assert_eq!(log.len(), 2);
        let entries = log.read_from(1).unwrap();
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.seq, e.writer.as_str(), e.schema))
                .collect::<Vec<_>>(),
            vec![(1, "a", SCHEMA_VERSION), (2, "a", SCHEMA_VERSION)]
        );

        let mut b = replica(&log, "b");
        assert_eq!(b.journal().unwrap().seq(), 2);
        assert_eq!(b.dump().unwrap(), a.dump().unwrap());
        // A write of b's reaches a at its next catch-up.
        b.job(|s| s.db().set_cursor("c", "from-b", t(3))).unwrap();
        assert_eq!(a.catch_up().unwrap(), 1);
        assert_eq!(cursor(&mut a, "c").as_deref(), Some("from-b"));
    }

    #[test]
    fn a_stale_write_is_refused_rolled_back_and_retried_after_catching_up() {
        let log = Arc::new(MemoryLog::new());
        let mut a = replica(&log, "a");
        let mut b = replica(&log, "b");
        a.job(|s| s.db().set_cursor("c", "a-1", t(1))).unwrap();
        b.catch_up().unwrap();
        // a takes position 2 while b's job, decided on position 1, runs.
        let result = b.job(|s| {
            assert_eq!(s.db().get_cursor("c")?.unwrap().value, "a-1");
            a.job(|s| s.db().set_cursor("c", "a-2", t(2))).unwrap();
            s.db().set_cursor("c", "b", t(3))?;
            s.db().set_cursor("other", "b", t(3))
        });
        let (retryable, message) = refusal(result);
        assert!(retryable, "{message}");
        assert!(
            message.contains("another instance wrote entry 2"),
            "{message}"
        );
        // Nothing of b's job stayed, and b now sees a's write.
        assert_eq!(cursor(&mut b, "c").as_deref(), Some("a-2"));
        assert_eq!(cursor(&mut b, "other"), None);
        assert_eq!(log.len(), 2);
        b.job(|s| s.db().set_cursor("c", "b", t(4))).unwrap();
        assert_eq!(log.read_from(3).unwrap()[0].writer, "b");
    }

    #[test]
    fn a_fenced_write_passes_while_the_lease_names_the_writer_and_not_after() {
        let log = Arc::new(MemoryLog::new());
        let mut a = replica(&log, "a");
        let fence = |holder: &str, token| Fence {
            key: "lease#rotationd".into(),
            holder: holder.into(),
            token,
        };
        log.grant("lease#rotationd", "a", 1);
        a.journal().unwrap().set_fence(Some(fence("a", 1)));
        a.job(|s| s.db().set_cursor("owner", "a", t(1))).unwrap();

        // b takes the lease over (the token grows); a still believes it leads.
        log.grant("lease#rotationd", "b", 2);
        let (retryable, message) = refusal(a.job(|s| s.db().set_cursor("owner", "a again", t(2))));
        assert!(!retryable, "{message}");
        assert!(
            message.contains("no longer holds the leader lease"),
            "{message}"
        );
        assert_eq!(log.len(), 1);
        assert_eq!(cursor(&mut a, "owner").as_deref(), Some("a"));

        // A write without a fence (a standby's, the CLI's) is checked on position only.
        let mut c = replica(&log, "c");
        c.job(|s| s.db().set_cursor("note", "c", t(3))).unwrap();
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn a_replica_opens_from_the_latest_snapshot_and_a_stale_one_never_replaces_it() {
        let log = Arc::new(MemoryLog::new());
        let mut a = replica(&log, "a");
        for i in 0..7 {
            a.job(|s| s.db().set_cursor(&format!("c{i}"), "x", t(i)))
                .unwrap();
        }
        let at = a.job(|s| s.write_snapshot()).unwrap().unwrap();
        assert_eq!(at, 7);
        a.job(|s| s.db().set_cursor("after", "y", t(8))).unwrap();
        a.job(|s| s.db().set_cursor("c0", "changed", t(9))).unwrap();

        let b = replica(&log, "b");
        let j = b.journal().unwrap();
        assert_eq!((j.snapshot_seq(), j.replayed_at_open(), j.seq()), (7, 2, 9));
        assert_eq!(b.dump().unwrap(), a.dump().unwrap());

        // An older snapshot arriving late (a slow former leader) leaves the pointer alone.
        log.put_snapshot(&Snapshot {
            seq: 3,
            schema: SCHEMA_VERSION,
            writer: "old".into(),
            body: "[]".into(),
        })
        .unwrap();
        assert_eq!(log.latest_snapshot().unwrap().unwrap().seq, 7);
        // A snapshot of another schema is skipped: the log alone rebuilds the state.
        log.put_snapshot(&Snapshot {
            seq: 8,
            schema: SCHEMA_VERSION + 1,
            writer: "future".into(),
            body: "not even json".into(),
        })
        .unwrap();
        let c = replica(&log, "c");
        let j = c.journal().unwrap();
        assert_eq!((j.snapshot_seq(), j.replayed_at_open()), (0, 9));
        assert_eq!(c.dump().unwrap(), a.dump().unwrap());
    }

    #[test]
    fn a_hole_a_newer_schema_or_an_unreadable_entry_stops_the_replica_with_what_to_do() {
        let entry = |seq, schema, body: &str| Entry {
            seq,
            schema,
            writer: "hand".into(),
            body: body.into(),
        };
        let open = |log: &Arc<MemoryLog>| {
            Store::open_replicated(Journal::new(log.clone(), "r"))
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };

        let hole = Arc::new(MemoryLog::new());
        hole.append(&entry(1, SCHEMA_VERSION, "[]"), None).unwrap();
        hole.append(&entry(3, SCHEMA_VERSION, "[]"), None).unwrap();
        let e = open(&hole);
        assert!(
            e.contains("entry 2 is missing") && e.contains("restore"),
            "{e}"
        );

        let newer = Arc::new(MemoryLog::new());
        newer
            .append(&entry(1, SCHEMA_VERSION + 1, "[]"), None)
            .unwrap();
        let e = open(&newer);
        assert!(
            e.contains("newer rotationd") && e.contains("upgrade"),
            "{e}"
        );

        let garbled = Arc::new(MemoryLog::new());
        garbled
            .append(&entry(1, SCHEMA_VERSION, "{\"op\""), None)
            .unwrap();
        let e = open(&garbled);
        assert!(e.contains("entry 1 is not readable"), "{e}");
    }

    #[test]
    fn an_unreachable_log_refuses_writes_retryably_and_keeps_nothing() {
        let log = Arc::new(MemoryLog::new());
        let mut a = replica(&log, "a");
        a.job(|s| s.db().set_cursor("c", "1", t(1))).unwrap();
        log.set_down(Some("connection refused"));
        let (retryable, message) = refusal(a.job(|s| s.db().set_cursor("c", "2", t(2))));
        assert!(retryable, "{message}");
        log.set_down(None);
        assert_eq!(cursor(&mut a, "c").as_deref(), Some("1"));
        a.job(|s| s.db().set_cursor("c", "2", t(2))).unwrap();
        assert_eq!(replica(&log, "b").dump().unwrap(), a.dump().unwrap());
    }
}
