//! The state database as a file on disk, and what can happen to it behind SQLite's back.
//!
//! * **Identity.** SQLite keeps writing to a file that was deleted or replaced under it (the
//!   unlinked inode lives on while it is open), so a daemon would go on rotating with a
//!   history nobody will ever read again. [`FileIdentity`] is the device and inode the store
//!   opened; the daemon's state guard compares it with the path every tick.
//! * **The head file** `<state_path>.head`, written next to the database whenever it is
//!   opened for writing and while the daemon runs: the audit chain's newest entry (id and
//!   hash). A state database that is missing while its head file exists was lost, not
//!   never created: [`super::Store::open`] refuses to start a new, empty history over it
//!   unless asked to (`rotationd run --init`), and the new history's first audit entry
//!   records the lost chain's head. It lives on the same disk, so it proves nothing against
//!   someone who deletes the whole directory: that needs an anchor kept elsewhere.
//! * **Write health.** [`WriteHealth`] remembers since when writes keep failing with a
//!   disk-level error (full, read-only, I/O), so `/readyz` can say so after a grace period.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The device and inode of the state file the store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    /// The identity of what `path` names now (following no symbolic link: `state_path`
    /// may not be one).
    pub fn of(path: &Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path)?;
        Ok(FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// What became of the state file since it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Nothing at the path any more: deleted or renamed away.
    Missing,
    /// Another file at the path (another inode or device): replaced.
    Replaced,
}

impl FileChange {
    pub fn as_str(&self) -> &'static str {
        match self {
            FileChange::Missing => "deleted",
            FileChange::Replaced => "replaced",
        }
    }
}

/// Compares what `path` names now with `opened`: `None` while it is the same file. An
/// error other than "not found" (a permission change on the directory) is not a loss.
pub fn changed(path: &Path, opened: FileIdentity) -> Option<FileChange> {
    match FileIdentity::of(path) {
        Ok(now) if now == opened => None,
        Ok(_) => Some(FileChange::Replaced),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(FileChange::Missing),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot check the state file");
            None
        }
    }
}

/// The audit chain's head as the head file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The newest audit entry's id (0 for an empty log).
    pub last_id: i64,
    /// Its hash (the genesis hash for an empty log).
    pub last_hash: String,
    pub written_at: DateTime<Utc>,
}

/// `<state_path>.head`.
pub fn head_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// The head file next to `state`, if there is one. A file that cannot be parsed still
/// says that a database was here: it is reported with what it holds.
pub fn read_head(state: &Path) -> std::io::Result<Option<Result<ChainHead, String>>> {
    match std::fs::read_to_string(head_path(state)) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).map_err(|_| text.chars().take(200).collect()),
        )),
        // No file, or no directory for one (then the database cannot be opened either,
        // and says why).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Writes the head file next to `state` (owner-only), replacing it atomically: a crash
/// leaves the old head or the new one, never half of one.
pub fn write_head(state: &Path, head: &ChainHead) -> std::io::Result<()> {
    let path = head_path(state);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_string(head).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

/// Since when the store's writes fail at the disk (full, read-only, I/O error): a streak
/// of such failures, over once none happened for [`QUIET`]. Successful writes do not end
/// it: on a full disk, updates in place still land while every insert fails.
#[derive(Debug, Default)]
pub struct WriteHealth {
    /// (first failure of the streak, last failure, last error)
    failing: Mutex<Option<(Instant, Instant, String)>>,
}

/// How long without a disk failure ends a streak.
pub const QUIET: std::time::Duration = std::time::Duration::from_secs(30);

impl WriteHealth {
    pub(super) fn failed(&self, error: &str, now: Instant) {
        if let Ok(mut f) = self.failing.lock() {
            let since = match f.as_ref() {
                Some((since, last, _)) if now.duration_since(*last) < QUIET => *since,
                _ => now,
            };
            *f = Some((since, now, error.to_string()));
        }
    }

    /// Since when writes fail, with the last error: `None` once no failure happened for
    /// [`QUIET`] (or never).
    pub fn failing(&self, now: Instant) -> Option<(Instant, String)> {
        let f = self.failing.lock().ok()?;
        let (since, last, error) = f.as_ref()?;
        (now.duration_since(*last) < QUIET).then(|| (*since, error.clone()))
    }
}

/// Whether `e` is the disk refusing a write, as opposed to a bug or a busy database.
pub(super) fn is_disk_error(e: &super::StoreError) -> bool {
    use rusqlite::ErrorCode as C;
    match e {
        super::StoreError::Query { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(C::DiskFull | C::ReadOnly | C::SystemIoFailure | C::CannotOpen)
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_deleted_or_replaced_is_told_apart_from_the_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, "a").unwrap();
        // Held open, as SQLite holds the database: its inode cannot be reused meanwhile.
        let _held = std::fs::File::open(&path).unwrap();
        let opened = FileIdentity::of(&path).unwrap();
        assert_eq!(changed(&path, opened), None);
        std::fs::write(&path, "rewritten in place").unwrap();
        assert_eq!(changed(&path, opened), None, "same inode, same file");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(changed(&path, opened), Some(FileChange::Missing));
        let other = dir.path().join("other.db");
        std::fs::write(&other, "b").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(changed(&path, opened), Some(FileChange::Replaced));
    }

    #[test]
    fn the_head_file_round_trips_and_a_garbled_one_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        assert_eq!(read_head(&state).unwrap(), None);
        let head = ChainHead {
            last_id: 42,
            last_hash: "ab".repeat(32),
            written_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        write_head(&state, &head).unwrap();
        assert_eq!(head_path(&state), dir.path().join("state.db.head"));
        assert_eq!(read_head(&state).unwrap(), Some(Ok(head)));
        std::fs::write(head_path(&state), "not json").unwrap();
        assert_eq!(
            read_head(&state).unwrap(),
            Some(Err("not json".to_string()))
        );
    }

    #[test]
    fn a_lost_database_is_refused_until_init_and_the_new_history_names_the_old_head() {
        use crate::store::{Store, StoreError};
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let store = Store::open(&state).unwrap();
        let entry = crate::store::audit::NewAuditEntry {
            at: Utc::now(),
            actor: "test".into(),
            action: crate::store::audit::Action::Rotate,
            secret: Some("db".into()),
            ticket: None,
            reason: None,
            outcome: crate::store::audit::Outcome::Ok,
            detail: None,
        };
        store.db().append_audit(&entry).unwrap();
        store.write_head();
        let (id, hash) = store.db().audit_head().unwrap().unwrap();
        store.close().unwrap();
        let head = read_head(&state).unwrap().unwrap().unwrap();
        assert_eq!((head.last_id, head.last_hash.as_str()), (id, hash.as_str()));

        // A fresh directory is no loss: a new database opens quietly.
        Store::open(dir.path().join("fresh/state.db")).unwrap();

        std::fs::remove_file(&state).unwrap();
        let err = Store::open(&state).unwrap_err();
        assert!(matches!(err, StoreError::Lost { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&hash) && text.contains("--init"), "{text}");
        assert!(!state.exists(), "a refused open created the file");

        let store = Store::open_init(&state).unwrap();
        let entries = store.db().audit_entries(None, 10).unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(
            (entries[0].action.as_str(), entries[0].outcome.as_str()),
            ("state", "initialized")
        );
        let detail = entries[0].detail.as_ref().unwrap().to_string();
        assert!(detail.contains(&hash), "{detail}");
        assert!(store.db().verify_audit().unwrap().is_intact());
        // The new history has its own head file now: the next open is ordinary.
        store.close().unwrap();
        Store::open(&state).unwrap();
    }

    #[test]
    fn a_streak_of_write_failures_lasts_until_none_for_the_quiet_period() {
        let h = WriteHealth::default();
        let t0 = Instant::now();
        let s = std::time::Duration::from_secs;
        assert!(h.failing(t0).is_none());
        h.failed("disk full", t0);
        h.failed("disk still full", t0 + s(20));
        let (since, last) = h.failing(t0 + s(45)).unwrap();
        assert_eq!(since, t0, "the first failure dates the streak");
        assert_eq!(last, "disk still full");
        assert!(
            h.failing(t0 + s(50)).is_none(),
            "30 s without a failure end it"
        );
        h.failed("disk full again", t0 + s(60));
        assert_eq!(h.failing(t0 + s(61)).unwrap().0, t0 + s(60), "a new streak");
    }
}
