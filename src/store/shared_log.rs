//! The seam between the store and the engine that makes its state shared: the
//! [`SharedLog`] trait, and [`MemoryLog`], an in-process implementation.
//!
//! A replicated [`Store`](super::Store) is SQLite plus a [`Journal`](super::journal::Journal):
//! the journal turns each store job into a log entry and applies other instances' entries.
//! *Where* the log lives is behind this trait, which asks for exactly what a distributed
//! log must guarantee and nothing about how:
//!
//! * an append at a position is all-or-nothing, and at most one append wins each position;
//! * an append may carry a [`Fence`] (the leader lease's holder and token): it is refused
//!   unless the lease still names them, in the same atomic step;
//! * reads are strongly consistent and in position order;
//! * the latest-snapshot pointer only moves forward.
//!
//! [`DynamoLog`](super::dynamodb::DynamoLog) is the production implementation
//! (`[state] backend = "dynamodb"`); [`MemoryLog`] keeps the same promises behind a mutex,
//! so the journal's own behaviour (conflicts, fencing, snapshots, replay, schema checks)
//! is unit-tested without a server, and every rule above is tested on both.
//!
//! Implementations are called from the store's own thread (never a runtime worker), so
//! the methods are blocking.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{StoreError, StoreResult};

/// One committed store job, as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position: 1, 2, 3, ... without holes.
    pub seq: u64,
    /// The store schema version of the instance that wrote it.
    pub schema: u32,
    /// Which instance wrote it (the daemon's instance id, or `audit-...` for the CLI).
    pub writer: String,
    /// The changed rows, as the journal encodes them (JSON).
    pub body: String,
}

/// A replica's whole state at a log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last entry it includes.
    pub seq: u64,
    pub schema: u32,
    pub writer: String,
    /// Every row, as the journal encodes them (JSON).
    pub body: String,
}

/// The condition the leader's appends carry: the lease still names it with its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease's key (`lease#<name>` in DynamoDB).
    pub key: String,
    pub holder: String,
    pub token: u64,
}

/// Why an append was refused; the journal branches on it.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another instance appended at this position first: the job was decided on a stale
    /// replica (retryable after catching up).
    #[error("position {0} is taken")]
    Taken(u64),
    /// The fence failed: another instance holds the lease now (not retryable).
    #[error("the lease no longer names this holder and token")]
    Fenced,
    /// The log could not be reached or refused the entry for another reason.
    #[error(transparent)]
    Failed(#[from] StoreError),
}

/// Where the shared state log lives. See the module doc for the promises.
pub trait SharedLog: Send + Sync + std::fmt::Debug {
    /// Appends `entry` at `entry.seq`, whole or not at all; with `fence`, only if the lease
    /// still names its holder and token, checked in the same atomic step.
    fn append(&self, entry: &Entry, fence: Option<&Fence>) -> Result<(), AppendError>;

    /// The entries from position `from` on, in order. The journal checks for holes.
    fn read_from(&self, from: u64) -> StoreResult<Vec<Entry>>;

    /// Stores `snapshot`, then moves the latest-snapshot pointer to it unless it already
    /// points at a later one (not an error: a newer snapshot is as good).
    fn put_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()>;

    /// The snapshot the pointer names, whole; `None` when there is none.
    fn latest_snapshot(&self) -> StoreResult<Option<Snapshot>>;
}

/// A [`SharedLog`] in this process's memory: for tests, and for anyone embedding several
/// replicas in one process. Clones of an `Arc<MemoryLog>` share one log.
#[derive(Debug, Default)]
pub struct MemoryLog {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    entries: BTreeMap<u64, Entry>,
    snapshots: BTreeMap<u64, Snapshot>,
    latest: Option<u64>,
    /// Lease key → (holder, token), as [`MemoryLog::grant`] set them.
    leases: HashMap<String, (String, u64)>,
    /// Fail every call with this (retryable) error: an outage.
    down: Option<String>,
}

impl MemoryLog {
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    /// Records that the lease `key` is held by `holder` with `token` (what the lease item
    /// says in DynamoDB); fenced appends are checked against it.
    pub fn grant(&self, key: &str, holder: &str, token: u64) {
        self.lock()
            .leases
            .insert(key.to_string(), (holder.to_string(), token));
    }

    /// Makes every call fail (`Some(reason)`) or work again (`None`).
    pub fn set_down(&self, reason: Option<&str>) {
        self.lock().down = reason.map(str::to_string);
    }

    /// How many entries the log holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic while holding it leaves plain data behind, still consistent: every
        // mutation below is a single insert.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_up(m: &Memory) -> StoreResult<()> {
        match &m.down {
            Some(reason) => Err(StoreError::Journal {
                op: "reach the shared state log",
                message: reason.clone(),
                retryable: true,
            }),
            None => Ok(()),
        }
    }
}

impl SharedLog for MemoryLog {
    fn append(&self, entry: &Entry, fence: Option<&Fence>) -> Result<(), AppendError> {
        let mut m = self.lock();
        Self::check_up(&m)?;
        if let Some(f) = fence
            && m.leases.get(&f.key) != Some(&(f.holder.clone(), f.token))
        {
            return Err(AppendError::Fenced);
        }
        if m.entries.contains_key(&entry.seq) {
            return Err(AppendError::Taken(entry.seq));
        }
        m.entries.insert(entry.seq, entry.clone());
        Ok(())
    }

    fn read_from(&self, from: u64) -> StoreResult<Vec<Entry>> {
        let m = self.lock();
        Self::check_up(&m)?;
        Ok(m.entries.range(from..).map(|(_, e)| e.clone()).collect())
    }

    fn put_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()> {
        let mut m = self.lock();
        Self::check_up(&m)?;
        m.snapshots.insert(snapshot.seq, snapshot.clone());
        if m.latest.is_none_or(|l| l < snapshot.seq) {
            m.latest = Some(snapshot.seq);
        }
        Ok(())
    }

    fn latest_snapshot(&self) -> StoreResult<Option<Snapshot>> {
        let m = self.lock();
        Self::check_up(&m)?;
        Ok(m.latest.and_then(|s| m.snapshots.get(&s).cloned()))
    }
}
