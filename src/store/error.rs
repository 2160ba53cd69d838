//! The state store's errors: each says what went wrong and what to do about it;
//! callers branch on the variant where the cause matters (a lost race is
//! [`StoreError::Stale`], which [`super::StoreHandle::call`] retries).

use std::path::PathBuf;

use super::{AttemptState, TriggerStatus, file};

/// Errors from the state store. Messages say what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create state directory {}: {source}; check [daemon] state_path and the permissions of its parent directory",
        .path.display()
    )]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Creating the file (owner-only) before SQLite opens it failed.
    #[error(
        "cannot open state database {}: {source}; check [daemon] state_path and its directory permissions",
        .path.display()
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "cannot make state database {} owner-only (mode 0600): {source}; check who owns the file",
        .path.display()
    )]
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The database is gone but its head file is not: a history was lost, and an empty one
    /// must not quietly take its place ([`file`]).
    #[error(
        "state database {} is missing, but {} shows it held an audit chain ({head}); restore the database (with its -wal file) from a backup, or start a new history with `rotationd run --init` (its first audit entry records the lost chain's head)",
        .path.display(), file::head_path(.path).display()
    )]
    Lost { path: PathBuf, head: String },

    /// Refused like sshd refuses a key file others could swap: someone else could replace
    /// the history (and the audit log) under rotationd.
    #[error("refusing state database {}: {why}", .path.display())]
    Unsafe { path: PathBuf, why: String },

    #[error(
        "cannot open state database {}: {source}; check [daemon] state_path and its directory permissions",
        .path.display()
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "state database {} refused WAL journal mode (it stays in {mode} mode); put [daemon] state_path on a local filesystem",
        .path.display()
    )]
    JournalMode { path: PathBuf, mode: String },

    #[error(
        "state database schema version {found} is newer than this rotationd supports ({supported}); upgrade rotationd"
    )]
    SchemaTooNew { found: u32, supported: u32 },

    #[error(
        "state database {path} is at schema version {found}, older than this rotationd reads ({supported}); let the daemon (or rotationd status) open it once to upgrade it, then read it again"
    )]
    SchemaTooOld {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error(
        "cannot upgrade state database schema to version {version}: {source}; restore the state database from a backup or move it aside to start with an empty one"
    )]
    Migration {
        version: u32,
        source: rusqlite::Error,
    },

    #[error("state database failed to {op}: {source}; {}", query_hint(.source))]
    Query {
        op: &'static str,
        source: rusqlite::Error,
    },

    #[error("cannot encode {what} as JSON: {source}; this is a bug in rotationd, please report it")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },

    #[error("{what} {id} does not exist in the state database; check the id")]
    NotFound { what: &'static str, id: String },

    #[error(
        "rotation attempt {id} already finished as {state}; start a new attempt instead of changing a finished one"
    )]
    AttemptFinished { id: String, state: AttemptState },

    #[error(
        "trigger {id} is already {status}; insert a new trigger instead of changing a finished one"
    )]
    TriggerFinished { id: i64, status: TriggerStatus },

    #[error("cannot start the state store thread: {0}; check the process thread limit")]
    Thread(std::io::Error),

    #[error("a state store operation panicked: {0}; this is a bug in rotationd, please report it")]
    Panicked(String),

    #[error("the state store has shut down; restart rotationd")]
    Closed,

    /// The DynamoDB state backend ([`journal`]) refused or could not take a write, or its
    /// log cannot be read. `retryable`: the same work may succeed on the next pass.
    #[error("state log: cannot {op}: {message}")]
    Journal {
        op: &'static str,
        message: String,
        retryable: bool,
    },
    /// Another instance appended to the shared log first: this job was decided on state
    /// that was no longer the latest, and nothing of it stayed. [`StoreHandle::call`] runs
    /// it again on the caught-up replica.
    #[error(
        "state log: another instance wrote entry {seq} first, so this write was decided on old state and was refused; it is retried after catching up"
    )]
    Stale { seq: u64 },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What an operator can do about a failed statement, by SQLite's error class.
fn query_hint(source: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode as C;
    match source {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => {
            "a stored value is not what this rotationd expects; look for hand edits or a downgrade of rotationd"
        }
        _ => match source.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => {
                "another process held the state database locked for more than 5 s; end it (e.g. an open sqlite3 session) and retry"
            }
            Some(C::DiskFull) => "free disk space on the state_path filesystem and retry",
            Some(C::DatabaseCorrupt | C::NotADatabase) => {
                "the state database is damaged; restore it from a backup"
            }
            Some(C::ConstraintViolation) => {
                "the write breaks a rule of the schema; this is a bug in rotationd unless the database was edited by hand"
            }
            _ => {
                "check the state database file, its directory permissions and the disk, then retry"
            }
        },
    }
}

/// Wraps a rusqlite error with the operation it interrupted.
pub(super) fn query(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}
