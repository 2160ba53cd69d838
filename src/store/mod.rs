//! Durable local state for rotationd: what must rotate, what is rotating, what
//! was done, which events were already handled, and which alerts still have to
//! go out.
//!
//! # Design
//!
//! * One SQLite file at `[daemon] state_path`, opened by [`Store::open`] in WAL
//!   mode with `synchronous=FULL`, so a write is durable the moment its commit
//!   returns (also across power loss, not only a process crash), with a 5 s
//!   `busy_timeout` so another reader or writer (an operator's CLI, `sqlite3`)
//!   makes us wait instead of fail, and with foreign keys enforced.
//! * The schema is versioned with `PRAGMA user_version` and built by the
//!   forward-only [`MIGRATIONS`] list, each step applied in its own `BEGIN
//!   IMMEDIATE` transaction together with the version bump, so a crash during an
//!   upgrade leaves the database at the previous version, never half-migrated.
//!   A database written by a newer rotationd is refused rather than guessed at.
//! * Two layers. [`Store`] is synchronous and owns the `rusqlite::Connection`.
//!   [`StoreHandle`] (`Clone + Send + Sync`) ships closures to one dedicated OS
//!   thread that owns the `Store`, so async tasks never block a runtime worker
//!   on disk I/O or lock waits, and all of the daemon's writes are serialised
//!   through one connection.
//! * All typed queries live on [`Db`], a copyable view of a connection. The same
//!   methods therefore work on their own (each statement autocommits) and inside
//!   [`Store::transaction`], which hands the closure a `Db` over an immediate
//!   transaction, so "insert trigger + mark event seen + append audit" commits
//!   all together or not at all.
//! * Times are whole Unix seconds (UTC) in `INTEGER` columns; the API speaks
//!   `chrono::DateTime<Utc>` and truncates sub-second parts. Enumerations are
//!   stored as their lowercase text so the file stays readable with `sqlite3`.
//! * Two backends behind one API. `[state] backend = "sqlite"` is the file above.
//!   `"dynamodb"` is an in-memory SQLite replica of a shared log
//!   ([`Store::open_replicated`], [`journal`]); where that log lives is the
//!   [`shared_log::SharedLog`] trait, implemented by [`dynamodb::DynamoLog`] and, for
//!   tests, [`shared_log::MemoryLog`]. The rest of rotationd calls the same
//!   [`StoreHandle`] either way.
//!
//! # Invariants
//!
//! * No secret value is ever stored: no table has a column for one. Only
//!   secret ids/ARNs, version ids, client request tokens and operator-written
//!   text are kept, so the file may be read for diagnosis without exposing
//!   credentials.
//! * `triggers.dedupe_key` is unique: the same reason to rotate (a schedule
//!   window, a CloudTrail event) is recorded at most once, however often it is
//!   observed. Triggers in `done`, `failed` or `cancelled` never change again.
//! * An attempt's `finished_at` is set exactly when its state is terminal
//!   (`succeeded`, `failed`, `stuck`, `skipped`); a finished attempt never
//!   changes again (except its post-rotation `validation`, which moves only
//!   forward from `watching`), and `rotate_calls` is incremented before a RotateSecret
//!   request is sent, so after a crash a resumed attempt knows whether a request
//!   may already have reached AWS (and re-sends with the same client request
//!   token, which AWS treats as idempotent).
//! * `audit` is append-only, enforced by SQL triggers, not just by this API, and
//!   hash-chained (each row's SHA-256 covers the previous row's hash), so an edit
//!   made behind the triggers' back is found by `Db::verify_audit`.
//! * A request moves only from the state its decider read (`decide_request` is
//!   conditional), and its bus answer is queued in the same transaction.
//! * An alert accepted by [`Db::enqueue_alert_deduped`] is in the outbox in the
//!   same transaction that records it as alerted, so an alert is never both
//!   suppressed as a duplicate and lost before publishing.

mod alerts;
pub mod anchor;
mod attempts;
pub mod audit;
mod directory;
pub mod dynamodb;
mod error;
mod events;
pub mod file;
mod handle;
mod holds;
pub mod journal;
mod requests;
mod schema;
pub mod shared_log;
mod triggers;
pub mod upkeep;

#[cfg(test)]
mod tests;

pub use alerts::{NewAlert, OutboxAlert};
pub use attempts::{
    Attempt, AttemptState, AttemptUpdate, NewAttempt, Retiring, Validation, Verdict,
};
pub use audit::{
    AuditBreak, AuditEntry, AuditFault, AuditFilter, AuditVerification, GENESIS_HASH, NewAuditEntry,
};
pub use directory::KnownUser;
use error::query;
pub use error::{StoreError, StoreResult};
pub use events::Cursor;
pub use handle::{STALE_RETRIES, StoreHandle};
pub use holds::Hold;
pub use requests::{BusUpdate, Request, RequestState};
pub use schema::{MIGRATIONS, SCHEMA_VERSION};
pub use triggers::{NewTrigger, Trigger, TriggerInsert, TriggerKind, TriggerStatus};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

/// How long a statement waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A stored text value that does not name a known variant, e.g. a row written
/// by a newer rotationd or edited by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.value)
    }
}

impl std::error::Error for UnknownValue {}

/// Declares a fieldless enum stored as fixed lowercase text, keeping the Rust
/// name, the SQL text and the serde name in one place so they cannot drift.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::store::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::store::UnknownValue { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}
pub(crate) use text_enum;

/// A UTC instant as whole Unix seconds in SQL.
#[derive(Debug, Clone, Copy)]
struct Ts(DateTime<Utc>);

impl ToSql for Ts {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.timestamp()))
    }
}

impl FromSql for Ts {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let secs = value.as_i64()?;
        DateTime::from_timestamp(secs, 0)
            .map(Ts)
            .ok_or(FromSqlError::OutOfRange(secs))
    }
}

fn ts(t: DateTime<Utc>) -> Ts {
    Ts(t)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<Ts> {
    t.map(Ts)
}

/// A JSON text column, so a hand-edited bad value surfaces as a conversion
/// error instead of a silently empty field.
struct Json<T>(T);

impl<T: serde::de::DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?)
            .map(Json)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// Encodes a value for a JSON text column.
fn to_json(what: &'static str, value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

/// Counts come back as SQLite's signed integers but are never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The synchronous state store; owns the SQLite connection.
///
/// Use [`Store::db`] for single statements and [`Store::transaction`] to group
/// several; in the daemon, reach it through a [`StoreHandle`].
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    /// The DynamoDB log this replica follows (`[state] backend = "dynamodb"`).
    journal: Option<journal::Journal>,
    /// The file opened (device and inode), for the daemon's state guard.
    identity: Option<file::FileIdentity>,
}

/// `path` must not be a symbolic link (it would be followed, and the file it names
/// chmodded), and its directory must not be writable by group or others (they could
/// delete or replace the file) unless it is sticky.
#[cfg(unix)]
fn check_unsafe(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let unsafe_because = |why: String| StoreError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(unsafe_because(
            "it is a symbolic link; point [daemon] state_path at the real file".into(),
        ));
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    if let Ok(m) = std::fs::metadata(&dir) {
        let mode = m.permissions().mode();
        // A sticky directory (/tmp) lets no one else delete or rename what is ours.
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(unsafe_because(format!(
                "its directory {} is writable by {} (mode {:o}); make it writable by rotationd's user only (chmod go-w)",
                dir.display(),
                match (mode & 0o020 != 0, mode & 0o002 != 0) {
                    (true, true) => "group and others",
                    (true, false) => "its group",
                    _ => "others",
                },
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed, along with its parent directory) the state
    /// database at `path` and brings its schema up to [`SCHEMA_VERSION`]. A missing
    /// database whose head file remains is [`StoreError::Lost`]: see [`Store::open_init`].
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Store> {
        Store::open_with(path.as_ref(), false)
    }

    /// [`Store::open`], except that a lost database (missing, its head file remaining)
    /// is started anew, with an audit entry `state`/`initialized` that records the lost
    /// chain's head (`rotationd run --init`).
    pub fn open_init(path: impl AsRef<Path>) -> StoreResult<Store> {
        Store::open_with(path.as_ref(), true)
    }

    fn open_with(path: &Path, init: bool) -> StoreResult<Store> {
        let existed = std::fs::symlink_metadata(path).is_ok();
        let lost = if existed {
            None
        } else {
            file::read_head(path).map_err(|source| StoreError::Create {
                path: file::head_path(path),
                source,
            })?
        };
        let lost = match lost {
            None => None,
            Some(head) => {
                let head = match head {
                    Ok(h) => format!(
                        "last entry {} with hash {}, recorded {}",
                        h.last_id,
                        h.last_hash,
                        h.written_at.format("%Y-%m-%dT%H:%M:%SZ")
                    ),
                    Err(text) => format!("an unreadable head file: {text:?}"),
                };
                if !init {
                    return Err(StoreError::Lost {
                        path: path.to_path_buf(),
                        head,
                    });
                }
                Some(head)
            }
        };
        if lost.is_some() {
            // A -wal left by the lost database would be replayed into the new one (SQLite
            // reads a WAL whose database is missing): set aside, never into a new history.
            for suffix in ["-wal", "-shm"] {
                let mut stale = path.as_os_str().to_owned();
                stale.push(suffix);
                let stale = PathBuf::from(stale);
                if stale.exists() {
                    let mut aside = stale.as_os_str().to_owned();
                    aside.push(".lost");
                    std::fs::rename(&stale, PathBuf::from(aside)).map_err(|source| {
                        StoreError::Create {
                            path: stale.clone(),
                            source,
                        }
                    })?;
                }
            }
        }
        let store = Store::create_or_open(path)?;
        if let Some(head) = lost {
            store.db().append_audit(&audit::NewAuditEntry {
                at: Utc::now(),
                actor: "rotationd".into(),
                action: audit::Action::State,
                secret: None,
                ticket: None,
                reason: Some("started with --init over a lost state database".into()),
                outcome: audit::Outcome::Initialized,
                detail: Some(serde_json::json!({ "lost_chain_head": head })),
            })?;
            tracing::warn!(path = %path.display(), lost = %head, "started a new state database over a lost one (--init)");
        }
        store.write_head();
        Ok(store)
    }

    /// Records the audit chain's head in the head file ([`file`]); a failure is logged,
    /// not fatal: the head file only guards against a lost database going unnoticed.
    pub fn write_head(&self) {
        let Some(path) = self.path.as_deref() else {
            return;
        };
        let head = match self.db().audit_head() {
            Ok(h) => h.unwrap_or((0, GENESIS_HASH.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit log's head for the head file");
                return;
            }
        };
        let head = file::ChainHead {
            last_id: head.0,
            last_hash: head.1,
            written_at: Utc::now(),
        };
        if let Err(e) = file::write_head(path, &head) {
            tracing::warn!(error = %e, path = %file::head_path(path).display(), "cannot write the state database's head file");
        }
    }

    /// Caps the file at about `bytes` (`[state] max_size`): past it, writes fail as on a
    /// full disk (`SQLITE_FULL`). SQLite never sets the cap below the file's size.
    pub fn set_max_size(&self, bytes: Option<u64>) -> StoreResult<()> {
        let Some(bytes) = bytes else {
            return Ok(());
        };
        let op = "cap the state database's size";
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(query(op))?;
        let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page.max(1);
        self.conn
            .pragma_update(None, "max_page_count", pages.max(1))
            .map_err(query(op))
    }

    /// The file this store opened (device and inode); `None` in memory.
    pub fn identity(&self) -> Option<file::FileIdentity> {
        self.identity
    }

    fn create_or_open(path: &Path) -> StoreResult<Store> {
        // Owner-only: the database holds the audit trail and alert texts (never a secret
        // value, but names, custodians and tickets). Directories rotationd creates are 0700;
        // an existing directory is left as the operator made it. The file is 0600, also when
        // an older or hand-made file was wider; SQLite gives its -wal and -shm files the
        // main file's mode.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|source| StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        #[cfg(unix)]
        check_unsafe(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let perm_err = |source| StoreError::Permissions {
                path: path.to_path_buf(),
                source,
            };
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|source| StoreError::Create {
                    path: path.to_path_buf(),
                    source,
                })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(perm_err)?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Refuse a newer schema before changing anything in the file.
        let found = schema::check_version(&conn)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::JournalMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        configure(&conn).map_err(open_err)?;
        schema::migrate(&mut conn)?;
        // Only rows written before the chain existed (schema 4) are chained here. A row
        // without a hash in a chained log is a forgery or a rewrite: it is left for
        // `audit --verify` to report, never blessed with a hash.
        if found < schema::AUDIT_CHAIN_VERSION {
            Db { conn: &conn }.chain_unhashed_audit()?;
        }
        let identity = file::FileIdentity::of(path).ok();
        Ok(Store {
            conn,
            path: Some(path.to_path_buf()),
            journal: None,
            identity,
        })
    }

    /// The state database at `path`, read-only: no migration, no chaining, no permission
    /// change, nothing written (`rotationd audit`, `--verify` above all: a check that
    /// repairs what it checks proves nothing). It must be at this build's schema.
    pub fn open_read_only(path: impl AsRef<Path>) -> StoreResult<Store> {
        let path = path.as_ref();
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let found = schema::check_version(&conn)?;
        if found < SCHEMA_VERSION {
            return Err(StoreError::SchemaTooOld {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            conn,
            path: Some(path.to_path_buf()),
            journal: None,
            identity: None,
        })
    }

    /// A private, empty, fully migrated database that vanishes on drop; for
    /// tests and dry runs.
    pub fn open_in_memory() -> StoreResult<Store> {
        let path = PathBuf::from(":memory:");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn,
            path: None,
            journal: None,
            identity: None,
        })
    }

    /// A replica of the shared DynamoDB log (`[state] backend = "dynamodb"`): an
    /// in-memory database with the current schema, caught up with every entry of the log.
    /// Every commit on it is appended to the log first (see [`journal`]). Call it off the
    /// async runtime's workers (`spawn_blocking`, or the store thread): it blocks on
    /// DynamoDB.
    pub fn open_replicated(journal: journal::Journal) -> StoreResult<Store> {
        let path = PathBuf::from(":memory:");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        schema::migrate(&mut conn)?;
        journal.install(&mut conn)?;
        journal.open(&conn)?;
        Ok(Store {
            conn,
            path: None,
            journal: Some(journal),
            identity: None,
        })
    }

    /// Every row of every table as text, with its rowid, tables by name and rows by rowid:
    /// what two replicas must agree on (and what the backend tests compare).
    pub fn dump(&self) -> StoreResult<std::collections::BTreeMap<String, Vec<String>>> {
        let op = "dump the tables";
        let mut out = std::collections::BTreeMap::new();
        let tables: Vec<String> = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(query(op))?;
        for t in tables {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT rowid, * FROM \"{t}\" ORDER BY rowid"))
                .map_err(query(op))?;
            let n = stmt.column_count();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    let cells: Vec<String> = (0..n)
                        .map(|i| r.get_ref(i).map(|v| format!("{v:?}")))
                        .collect::<rusqlite::Result<_>>()?;
                    Ok(cells.join(" | "))
                })
                .and_then(|rows| rows.collect())
                .map_err(query(op))?;
            out.insert(t, rows);
        }
        Ok(out)
    }

    /// Writes a snapshot of this replica to the shared table (DynamoDB backend; a no-op
    /// returning `None` with SQLite). The leader calls it when [`journal::Journal::snapshot_due`].
    pub fn write_snapshot(&self) -> StoreResult<Option<u64>> {
        match &self.journal {
            Some(j) => j.write_snapshot(&self.conn).map(Some),
            None => Ok(None),
        }
    }

    /// The log this replica follows, if any.
    pub fn journal(&self) -> Option<&journal::Journal> {
        self.journal.as_ref()
    }

    /// Applies what other instances appended to the log since the last call; a no-op
    /// for the SQLite backend. ([`Store::job`] does it first.)
    pub fn catch_up(&self) -> StoreResult<usize> {
        match &self.journal {
            Some(j) => j.catch_up(&self.conn),
            None => Ok(0),
        }
    }

    /// Runs `f` as one unit of work. With the DynamoDB backend that is one local
    /// transaction, on a replica at most [`journal::FRESH_FOR`] behind the log, whose
    /// writes are appended to the shared log before it commits
    /// ([`journal`]): if the log refuses them, nothing of `f` stays and the error says
    /// why (it replaces `f`'s result). With SQLite it is just `f`. The store thread runs
    /// every [`StoreHandle::call`] this way.
    pub fn job<R>(&mut self, f: impl FnOnce(&mut Store) -> StoreResult<R>) -> StoreResult<R> {
        let Some(journal) = self.journal.clone() else {
            return f(self);
        };
        journal.catch_up_if_stale(&self.conn)?;
        journal.begin_job(&self.conn)?;
        let out = f(self);
        journal.end_job(&self.conn)?;
        out
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version recorded in the database file.
    pub fn schema_version(&self) -> StoreResult<u32> {
        schema::user_version(&self.conn).map_err(query("read the schema version"))
    }

    /// Typed access where each statement commits on its own.
    pub fn db(&self) -> Db<'_> {
        Db { conn: &self.conn }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if `f` returns
    /// `Ok`, rolled back if it returns `Err` or panics.
    ///
    /// Immediate, because a deferred transaction that reads first and writes
    /// later can fail with `SQLITE_BUSY` without waiting when another
    /// connection wrote in between; taking the write lock up front makes the
    /// busy timeout apply instead.
    pub fn transaction<R, E>(&mut self, f: impl FnOnce(Db<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        if !self.conn.is_autocommit() {
            // Inside a store job of the DynamoDB backend (SQLite has no nested BEGIN).
            let sp = self
                .conn
                .savepoint()
                .map_err(query("begin a transaction"))?;
            let out = f(Db { conn: &sp })?;
            sp.commit().map_err(query("commit a transaction"))?;
            return Ok(out);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query("begin a transaction"))?;
        let out = f(Db { conn: &tx })?;
        tx.commit().map_err(query("commit a transaction"))?;
        Ok(out)
    }

    /// Closes the connection, reporting any error (dropping closes silently).
    pub fn close(self) -> StoreResult<()> {
        self.conn.close().map_err(|(_, source)| StoreError::Query {
            op: "close the database",
            source,
        })
    }

    /// A transaction left open (only possible if a caller's code unwound in a
    /// way rusqlite could not roll back) would hold the write lock forever and
    /// block every other process; the store thread calls this between jobs.
    fn reset_if_in_transaction(&self) {
        if !self.conn.is_autocommit() {
            // Nothing better to do with a failure here: the next statement
            // will report the underlying problem to its caller.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Per-connection settings that SQLite does not persist in the file.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power
    // loss, and a lost "rotate_calls" bump or "trigger done" would make us
    // repeat or forget work.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Typed queries over a connection or an open transaction.
///
/// Obtained from [`Store::db`] (each statement autocommits) or inside
/// [`Store::transaction`] (everything commits together).
#[derive(Debug, Clone, Copy)]
pub struct Db<'c> {
    conn: &'c Connection,
}

impl Db<'_> {
    /// Runs `f` atomically whether or not a transaction is already open: as
    /// its own immediate transaction when in autocommit mode, as a savepoint
    /// inside the caller's transaction otherwise (SQLite has no nested BEGIN).
    fn atomic<R>(self, op: &'static str, f: impl FnOnce() -> StoreResult<R>) -> StoreResult<R> {
        let outer = self.conn.is_autocommit();
        let (begin, commit, rollback) = if outer {
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        } else {
            (
                "SAVEPOINT rotationd_atomic",
                "RELEASE rotationd_atomic",
                "ROLLBACK TO rotationd_atomic; RELEASE rotationd_atomic",
            )
        };
        self.conn.execute_batch(begin).map_err(query(op))?;
        let mut guard = RollbackGuard {
            conn: self.conn,
            rollback,
            armed: true,
        };
        let out = f()?;
        self.conn.execute_batch(commit).map_err(query(op))?;
        guard.armed = false;
        Ok(out)
    }
}

/// Rolls back an [`Db::atomic`] block on error or unwind.
struct RollbackGuard<'c> {
    conn: &'c Connection,
    rollback: &'static str,
    armed: bool,
}

impl Drop for RollbackGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // A failed rollback leaves the transaction open; the store thread
            // resets it between jobs, and there is no caller left to tell.
            let _ = self.conn.execute_batch(self.rollback);
        }
    }
}
