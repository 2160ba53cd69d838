//! `audit`: the append-only, hash-chained record of what rotationd and its
//! operators did.
//!
//! # Why a hash chain
//!
//! SQL triggers already refuse UPDATE and DELETE, but anyone who can write the
//! file can drop a trigger first. The chain makes such an edit *evident*: each
//! row stores `prev_hash` (the `hash` of the row before it, or [`GENESIS_HASH`]
//! for the first row) and `hash`, the hex SHA-256 of its own canonical encoding
//! (see `canonical`), which covers `prev_hash`. [`Db::verify_audit`] recomputes
//! the chain, so an edited row fails its own hash and a removed or reordered row
//! breaks the link of the row after it.
//!
//! # What it cannot see
//!
//! The chain has no secret key. Someone who can write the file and who rewrites
//! every row from the edited one to the end, or who removes the last rows, leaves
//! a chain that verifies. (So does clearing the hashes of the last rows, which
//! the next open chains again: no more than such a forger could compute.) All of
//! these are detectable only against a hash recorded elsewhere: note
//! [`AuditVerification::last_hash`] (printed by `rotationd audit --verify`)
//! outside this host; the row that had it must still have it later (`rotationd
//! audit --format json` lists every row's hash).
//!
//! # How rows get their hash
//!
//! A row is inserted with `hash` NULL and then hashed in the same atomic block
//! ([`Db::append_audit`]), so the hash covers the real row id and the values
//! exactly as SQLite stored them. The schema trigger allows that one UPDATE,
//! and only while `hash` is NULL. Rows written before schema 4 have no hash;
//! [`Store::open`](super::Store::open) chains them once, in id order.

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    AttemptState, Db, Json, RequestState, StoreResult, TriggerKind, Ts, Validation, query,
    text_enum, to_json, ts,
};

/// The `prev_hash` of the first row: there is no row before it.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// First element of every canonical encoding, so that a future change of the
/// encoding can be told apart from tampering.
const ENCODING_TAG: &str = "rotationd-audit-v1";

/// The columns a hash covers, in encoding order; `prev_hash` last.
const HASHED_COLUMNS: &str =
    "id, at, actor, action, secret, ticket, reason, outcome, detail, prev_hash";
const HASHED_COLUMN_COUNT: usize = 10;

text_enum! {
    /// What an audit record says was done. Stored, hashed into the chain and shown by
    /// `rotationd audit` as its text, so a text never changes once written; a new action
    /// is a new variant.
    pub enum Action ("audit action") {
        /// An attempt ended (its outcome: `ok` or the attempt's state), or a trigger
        /// was dropped before one started (`window_missed`).
        Rotate => "rotate",
        /// A trigger became an attempt.
        RotateRequested => "rotate_requested",
        /// AWSCURRENT moved back to AWSPREVIOUS: `rotationd rollback` or `auto_rollback`.
        Rollback => "rollback",
        /// The watch of dependents after a rotation ended.
        Validate => "validate",
        /// The storm guard paused event rotations, or `rotationd resume` lifted it.
        StormGuard => "storm_guard",
        /// An alert was queued (the outcome is its kind).
        Alert => "alert",
        /// A trigger was recorded (the outcome is its kind).
        Trigger => "trigger",
        /// The normalizer rejected an event (the outcome is the reason code).
        EventRejected => "event_rejected",
        /// Events, one per kind of `events::normalize::Normalized` (`event_` and its
        /// kind label).
        EventRotationStarted => "event_rotation_started",
        EventRotationSucceeded => "event_rotation_succeeded",
        EventRotationFailed => "event_rotation_failed",
        EventRotationAbandoned => "event_rotation_abandoned",
        EventDeparture => "event_departure",
        EventCompromise => "event_compromise",
        EventRotationRequested => "event_rotation_requested",
        EventRotationApproved => "event_rotation_approved",
        EventRotationDenied => "event_rotation_denied",
        EventRollbackRequested => "event_rollback_requested",
        /// A CommandBridge request decided, one per request event kind.
        RotationRequested => "rotation_requested",
        RotationApproved => "rotation_approved",
        RotationDenied => "rotation_denied",
        RollbackRequested => "rollback_requested",
        /// A CommandBridge request closed (expired, completed, failed), by the request's kind.
        RotateRequest => "rotate_request",
        RollbackRequest => "rollback_request",
        /// `[policy] native_schedule`: Secrets Manager's schedule written or turned off.
        NativeScheduleSync => "native_schedule_sync",
        NativeScheduleDisable => "native_schedule_disable",
        /// A secret held after a failure (`held`), a planned rotation deferred by the hold
        /// (`deferred`), or the hold lifted (`resumed`: by `rotationd resume --secret` or a
        /// rotation that succeeded).
        Hold => "hold",
        /// The state database itself: a new history started over a lost one
        /// (`rotationd run --init`; outcome `initialized`, the lost chain's head in the
        /// detail).
        State => "state",
        /// A configuration reload: applied (`ok`, with the old and new file hashes and the
        /// sections that changed) or refused (`refused`, with why).
        Config => "config",
    }
}

/// How an audited action ended. Stored, hashed and shown as [`Outcome::as_str`], so a
/// text never changes once written. Where the outcome is the value of another stored
/// enum (an attempt's state, a request's, a watch's, a trigger's kind), it carries that
/// value, so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// Not done, on purpose (a rollback with nothing to roll back to).
    Refused,
    /// Not done, and no failure (an automatic rollback that found AWSCURRENT moved on).
    Skipped,
    Accepted,
    /// The storm guard lifted by `rotationd resume`.
    Resumed,
    /// The storm guard paused event rotations.
    Paused,
    /// A secret put on hold after a failure.
    Held,
    /// A planned rotation not started because its secret is held.
    Deferred,
    /// A trigger whose window passed before an attempt could start.
    WindowMissed,
    /// An overdue trigger observed in observe mode given a new window by enforce mode.
    Reopened,
    /// A new state database started over a lost one.
    Initialized,
    /// Old audit rows pruned below a checkpoint (`store::upkeep`).
    Pruned,
    /// Rejected deliveries beyond the first few of a minute, counted in one row.
    Aggregated,
    /// A request for a request id that already exists.
    DuplicateRequest,
    /// An event that is a CommandBridge request, handed to the request policy.
    Request,
    /// An event about a secret rotationd does not manage.
    UnknownSecret,
    /// A departure that reaches no managed secret.
    NoSecrets,
    /// A departure naming only a user id no directory knows (`departure_unresolved`).
    Unresolved,
    /// A RotationFailed event tied to rotationd's own running attempt.
    TiedToAttempt,
    /// An attempt that ended other than succeeded (that is [`Outcome::Ok`]).
    Attempt(AttemptState),
    /// The state a request was decided or closed in.
    RequestState(RequestState),
    /// How a watch of dependents ended.
    Validation(Validation),
    /// The kind of a recorded trigger.
    Trigger(TriggerKind),
    /// The kind of a queued alert, as the outbox holds it (`alerts::AlertKind`).
    Alert(String),
    /// Why the normalizer rejected an event (`events::normalize::Rejection::reason`).
    Rejected(&'static str),
}

impl Outcome {
    pub fn as_str(&self) -> &str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Skipped => "skipped",
            Outcome::Accepted => "accepted",
            Outcome::Resumed => "resumed",
            Outcome::Paused => "paused",
            Outcome::Held => "held",
            Outcome::Deferred => "deferred",
            Outcome::WindowMissed => "window_missed",
            Outcome::Reopened => "reopened",
            Outcome::Initialized => "initialized",
            Outcome::Pruned => "pruned",
            Outcome::Aggregated => "aggregated",
            Outcome::DuplicateRequest => "duplicate_request",
            Outcome::Request => "request",
            Outcome::UnknownSecret => "unknown_secret",
            Outcome::NoSecrets => "no_secrets",
            Outcome::Unresolved => "unresolved",
            Outcome::TiedToAttempt => "tied_to_attempt",
            Outcome::Attempt(s) => s.as_str(),
            Outcome::RequestState(s) => s.as_str(),
            Outcome::Validation(v) => v.as_str(),
            Outcome::Trigger(k) => k.as_str(),
            Outcome::Alert(kind) => kind,
            Outcome::Rejected(reason) => reason,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An audit record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub at: DateTime<Utc>,
    /// Who acted: `rotationd`, `cli:alice`, ...
    pub actor: String,
    pub action: Action,
    pub secret: Option<String>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    pub outcome: Outcome,
    /// Structured context. Never put secret values here.
    pub detail: Option<serde_json::Value>,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub secret: Option<String>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    pub outcome: String,
    pub detail: Option<serde_json::Value>,
    /// The previous row's `hash` ([`GENESIS_HASH`] for the first row); `None`
    /// only on a row that was never chained.
    #[serde(default)]
    pub prev_hash: Option<String>,
    /// Hex SHA-256 of this row's canonical encoding.
    #[serde(default)]
    pub hash: Option<String>,
}

/// Which audit rows [`Db::audit_log`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only rows about this secret (as recorded: a name or an ARN).
    pub secret: Option<String>,
    /// Only rows at or after this instant.
    pub since: Option<DateTime<Utc>>,
}

/// Why [`Db::verify_audit`] stopped at a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditFault {
    /// The row's content (or its `prev_hash`) no longer matches its `hash`.
    HashMismatch,
    /// The row is intact, but its `prev_hash` is not the `hash` of the row now
    /// before it.
    ChainBroken,
    /// The row has no hash, although rows are hashed when written and older
    /// rows when the store opens.
    MissingHash,
    /// The newest pruning checkpoint (the id is its last pruned entry) has no audit
    /// entry in the chain recording that pruning: the checkpoint was written by hand to
    /// delete rows, not by [`Db::prune`](super::Db::prune).
    CheckpointUnvouched,
}

impl AuditFault {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditFault::HashMismatch => "hash mismatch: row edited",
            AuditFault::ChainBroken => "chain broken: a row before it was removed or reordered",
            AuditFault::MissingHash => "missing hash",
            AuditFault::CheckpointUnvouched => {
                "pruning checkpoint not recorded in the chain: rows were deleted below a checkpoint written by hand"
            }
        }
    }
}

impl std::fmt::Display for AuditFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first row where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBreak {
    pub id: i64,
    pub fault: AuditFault,
}

/// The result of [`Db::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Rows found intact, in id order, before the walk ended (all rows when
    /// `broken` is `None`).
    pub checked: u64,
    /// The `hash` of the last intact row ([`GENESIS_HASH`] when there is none).
    /// When the log is intact, record it outside this host: removing the last
    /// rows of the log can only be detected by a later log not containing it.
    pub last_hash: String,
    /// The first row that fails, and why; `None` when the whole chain holds.
    pub broken: Option<AuditBreak>,
    /// Where the walk started when the log was pruned: the checkpoint's last pruned
    /// entry id (the first remaining row must link to its hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_checkpoint: Option<i64>,
}

impl AuditVerification {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.get(0)?,
        at: row.get::<_, Ts>(1)?.0,
        actor: row.get(2)?,
        action: row.get(3)?,
        secret: row.get(4)?,
        ticket: row.get(5)?,
        reason: row.get(6)?,
        outcome: row.get(7)?,
        detail: row.get::<_, Option<Json<_>>>(8)?.map(|j| j.0),
        prev_hash: row.get(9)?,
        hash: row.get(10)?,
    })
}

const ENTRY_COLUMNS: &str =
    "id, at, actor, action, secret, ticket, reason, outcome, detail, prev_hash, hash";

/// One stored value as JSON, whatever its SQLite type: what rotationd writes is
/// an integer, text or NULL, but a hand edit can store anything, and the
/// verifier must report that as a mismatch rather than fail to read the row.
fn value_json(v: ValueRef<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        ValueRef::Null => J::Null,
        ValueRef::Integer(i) => J::from(i),
        // Tagged objects cannot collide with the plain strings and numbers
        // rotationd writes.
        ValueRef::Real(f) => serde_json::json!({ "real": f.to_string() }),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => J::from(s),
            Err(_) => serde_json::json!({ "text_bytes": hex(bytes) }),
        },
        ValueRef::Blob(bytes) => serde_json::json!({ "blob": hex(bytes) }),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The canonical encoding a row's hash covers: the compact JSON array
/// `["rotationd-audit-v1", id, at, actor, action, secret, ticket, reason,
/// outcome, detail, prev_hash]` as serde_json writes it, with `at` in Unix
/// seconds, `detail` as its stored JSON *text* (not re-serialized, so key order
/// and spacing are what was stored) and SQL NULL as `null`. A JSON array is
/// unambiguous: every string is quoted and escaped, so no value can pass for a
/// field boundary.
///
/// `content` is [`content_fields`] of the row; `prev_hash` is separate because
/// a row being chained does not have it in the file yet.
fn canonical(content: &[serde_json::Value], prev_hash: serde_json::Value) -> Vec<u8> {
    let mut fields = Vec::with_capacity(content.len() + 2);
    fields.push(serde_json::Value::from(ENCODING_TAG));
    fields.extend_from_slice(content);
    fields.push(prev_hash);
    // Serializing a `serde_json::Value` cannot fail.
    serde_json::to_vec(&serde_json::Value::Array(fields)).unwrap_or_default()
}

/// Hex SHA-256 of the [`canonical`] encoding.
fn row_hash(content: &[serde_json::Value], prev_hash: serde_json::Value) -> String {
    hex(&Sha256::digest(canonical(content, prev_hash)))
}

/// The columns of [`HASHED_COLUMNS`] before `prev_hash`, encoded, from a row
/// selected with them first.
fn content_fields(row: &Row<'_>) -> rusqlite::Result<Vec<serde_json::Value>> {
    (0..HASHED_COLUMN_COUNT - 1)
        .map(|i| row.get_ref(i).map(value_json))
        .collect()
}

/// Checks one row of `SELECT {HASHED_COLUMNS}, hash` against the hash of the
/// row before it: its own hash if intact, or why not.
fn check_row(row: &Row<'_>, prev: &str) -> rusqlite::Result<Result<String, AuditFault>> {
    let Some(stored) = hash_text(row.get_ref(HASHED_COLUMN_COUNT)?) else {
        return Ok(Err(AuditFault::MissingHash));
    };
    let prev_hash = row.get_ref(HASHED_COLUMN_COUNT - 1)?;
    // The row's own hash first, so that an edited prev_hash reads as an edit,
    // not as a removal.
    if stored != row_hash(&content_fields(row)?, value_json(prev_hash)) {
        return Ok(Err(AuditFault::HashMismatch));
    }
    if hash_text(prev_hash).as_deref() != Some(prev) {
        return Ok(Err(AuditFault::ChainBroken));
    }
    Ok(Ok(stored))
}

/// A hash column as text; anything else (a hand-stored number or blob) cannot
/// equal a hex digest and is kept only to be reported as a mismatch.
fn hash_text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        other => Some(value_json(other).to_string()),
    }
}

impl Db<'_> {
    /// Appends a record, chained to the one before it, and returns its id.
    /// Rows can never be changed or removed afterwards (SQL triggers abort any
    /// UPDATE or DELETE, except the one that sets the hash).
    ///
    /// The insert and its hash commit together: in a transaction of its own, or
    /// in a savepoint of the caller's [`Store::transaction`](super::Store::transaction).
    /// Both take SQLite's write lock before reading the last hash, so another
    /// process appending at the same time (`rotationd rollback` next to the
    /// daemon) cannot chain to the same predecessor.
    pub fn append_audit(self, e: &NewAuditEntry) -> StoreResult<i64> {
        let detail = e
            .detail
            .as_ref()
            .map(|d| to_json("audit detail", d))
            .transpose()?;
        self.atomic("append to the audit log", || {
            self.conn
                .execute(
                    "INSERT INTO audit (at, actor, action, secret, ticket, reason, outcome, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        ts(e.at),
                        e.actor,
                        e.action,
                        e.secret,
                        e.ticket,
                        e.reason,
                        e.outcome.as_str(),
                        detail,
                    ],
                )
                .map_err(query("append to the audit log"))?;
            let id = self.conn.last_insert_rowid();
            chain_tail(self.conn).map_err(query("append to the audit log"))?;
            Ok(id)
        })
    }

    /// Up to `limit` records, newest first, optionally only for `secret`.
    pub fn audit_entries(self, secret: Option<&str>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM audit WHERE (?1 IS NULL OR secret = ?1) \
                 ORDER BY at DESC, id DESC LIMIT ?2"
            ))
            .map_err(query("read the audit log"))?;
        stmt.query_map(params![secret, limit], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("read the audit log"))
    }

    /// Every record matching `filter`, oldest (lowest id) first, handed to `f`
    /// one at a time so that a long log is never held in memory. `f` stops the
    /// walk early with an error, which is returned as is.
    ///
    /// One statement, so `f` sees a consistent snapshot even while another
    /// connection appends.
    pub fn audit_log<E>(
        self,
        filter: &AuditFilter,
        mut f: impl FnMut(AuditEntry) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<super::StoreError>,
    {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM audit \
                 WHERE (?1 IS NULL OR secret = ?1) AND (?2 IS NULL OR at >= ?2) \
                 ORDER BY id"
            ))
            .map_err(query("read the audit log"))?;
        let mut rows = stmt
            .query(params![filter.secret, filter.since.map(ts)])
            .map_err(query("read the audit log"))?;
        while let Some(row) = rows.next().map_err(query("read the audit log"))? {
            f(from_row(row).map_err(query("read the audit log"))?)?;
        }
        Ok(())
    }

    /// The id of the entry whose hash is `hash`, if the chain still holds one: a last hash
    /// recorded elsewhere earlier must still be found, or the tail after it was removed or
    /// rewritten.
    pub fn audit_entry_with_hash(self, hash: &str) -> StoreResult<Option<i64>> {
        self.conn
            .query_row("SELECT id FROM audit WHERE hash = ?1", [hash], |r| r.get(0))
            .optional()
            .map_err(query("look up an audit hash"))
    }

    /// The chain's newest entry: its id and hash (`None` for an empty log). One indexed
    /// read, cheap enough for every tick of the state-file guard.
    pub fn audit_head(self) -> StoreResult<Option<(i64, String)>> {
        self.conn
            .query_row(
                "SELECT id, hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(query("read the audit log's head"))
    }

    /// Walks the whole log in id order, recomputing every hash and link, and
    /// stops at the first row that fails. See the module documentation for
    /// what an intact result does and does not prove.
    pub fn verify_audit(self) -> StoreResult<AuditVerification> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {HASHED_COLUMNS}, hash FROM audit ORDER BY id"
            ))
            .map_err(query("verify the audit log"))?;
        let mut rows = stmt.query([]).map_err(query("verify the audit log"))?;
        let mut checked = 0;
        let checkpoint_at = self.audit_checkpoint()?;
        let from_checkpoint = checkpoint_at.as_ref().map(|c| c.upto_id);
        let mut last_hash = checkpoint_at
            .as_ref()
            .map_or_else(|| GENESIS_HASH.to_owned(), |c| c.upto_hash.clone());
        while let Some(row) = rows.next().map_err(query("verify the audit log"))? {
            match check_row(row, &last_hash).map_err(query("verify the audit log"))? {
                Ok(hash) => {
                    last_hash = hash;
                    checked += 1;
                }
                Err(fault) => {
                    let id = row.get(0).map_err(query("verify the audit log"))?;
                    return Ok(AuditVerification {
                        checked,
                        last_hash,
                        broken: Some(AuditBreak { id, fault }),
                        from_checkpoint,
                    });
                }
            }
        }
        // Only `prune` writes a checkpoint, and in the same transaction appends the
        // `state`/`pruned` entry that names it, above the rows it removed (so no later
        // pruning can remove that entry). A checkpoint without it was inserted by hand,
        // to make the delete trigger let rows go.
        if let Some(c) = &checkpoint_at {
            let vouched: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM audit WHERE id > ?1 AND action = 'state' \
                     AND outcome = 'pruned' AND json_extract(detail, '$.upto_id') = ?1 \
                     AND json_extract(detail, '$.upto_hash') = ?2)",
                    params![c.upto_id, c.upto_hash],
                    |r| r.get(0),
                )
                .map_err(query("verify the audit log"))?;
            if !vouched {
                return Ok(AuditVerification {
                    checked,
                    last_hash,
                    broken: Some(AuditBreak {
                        id: c.upto_id,
                        fault: AuditFault::CheckpointUnvouched,
                    }),
                    from_checkpoint,
                });
            }
        }
        Ok(AuditVerification {
            checked,
            last_hash,
            broken: None,
            from_checkpoint,
        })
    }

    /// Chains the rows written before schema 4 (they have no hash). Cheap when
    /// there are none: the partial index `audit_unchained` holds only unhashed
    /// rows, and the write lock is taken only when one exists.
    pub(super) fn chain_unhashed_audit(self) -> StoreResult<()> {
        let any: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM audit WHERE hash IS NULL)",
                [],
                |row| row.get(0),
            )
            .map_err(query("chain the audit log"))?;
        if !any {
            return Ok(());
        }
        let chained = self.atomic("chain the audit log", || {
            chain_tail(self.conn).map_err(query("chain the audit log"))
        })?;
        if chained > 0 {
            tracing::info!(
                rows = chained,
                "chained the audit rows written before schema 4"
            );
        }
        Ok(())
    }
}

/// How many rows [`chain_tail`] reads at a time, bounding its memory on a large
/// pre-schema-4 log.
const CHAIN_BATCH: i64 = 1000;

/// Hashes every row after the last hashed one, in id order; returns how many.
/// Must run inside a write transaction (the caller's atomic block).
///
/// Only the tail: an unhashed row *before* a hashed one cannot come from
/// rotationd (it hashes each row as it writes it, and the pre-schema-4 rows form
/// a prefix that is chained before anything is appended), so it is left for
/// [`Db::verify_audit`] to report as [`AuditFault::MissingHash`] rather than
/// silently given a hash.
fn chain_tail(conn: &Connection) -> rusqlite::Result<u64> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, hash_text(row.get_ref(1)?).unwrap_or_default())),
        )
        .optional()?;
    // The first id after the last hashed row; a plain range so the select is a
    // rowid seek, not a scan of the whole log.
    let (mut from, mut prev) = match last {
        Some((id, hash)) => match id.checked_add(1) {
            Some(from) => (from, hash),
            None => return Ok(0),
        },
        None => (i64::MIN, GENESIS_HASH.to_owned()),
    };
    let mut select = conn.prepare_cached(&format!(
        "SELECT {HASHED_COLUMNS} FROM audit WHERE id >= ?1 ORDER BY id LIMIT ?2"
    ))?;
    let mut update = conn.prepare_cached(
        "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3 AND hash IS NULL",
    )?;
    let mut chained = 0;
    loop {
        let batch: Vec<(i64, Vec<serde_json::Value>)> = select
            .query_map(params![from, CHAIN_BATCH], |row| {
                Ok((row.get(0)?, content_fields(row)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        if batch.is_empty() {
            return Ok(chained);
        }
        for (id, content) in batch {
            let hash = row_hash(&content, serde_json::Value::from(prev.as_str()));
            update.execute(params![prev, hash, id])?;
            prev = hash;
            chained += 1;
            match id.checked_add(1) {
                Some(next) => from = next,
                None => return Ok(chained),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_texts_are_distinct_and_round_trip() {
        let texts: std::collections::BTreeSet<&str> =
            Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(texts.len(), Action::ALL.len());
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().ok(), Some(*a));
        }
    }

    #[test]
    fn texts_are_the_ones_already_stored() {
        // Old rows keep these texts and their hashes cover them: they never change.
        assert_eq!(Action::Rotate.as_str(), "rotate");
        assert_eq!(Action::RotateRequested.as_str(), "rotate_requested");
        assert_eq!(Action::EventRejected.as_str(), "event_rejected");
        assert_eq!(Action::EventDeparture.as_str(), "event_departure");
        assert_eq!(Action::RollbackRequest.as_str(), "rollback_request");
        assert_eq!(
            Action::NativeScheduleDisable.as_str(),
            "native_schedule_disable"
        );
        assert_eq!(Outcome::Ok.as_str(), "ok");
        assert_eq!(Outcome::WindowMissed.as_str(), "window_missed");
        assert_eq!(Outcome::Attempt(AttemptState::Stuck).as_str(), "stuck");
        assert_eq!(
            Outcome::RequestState(RequestState::AwaitingApproval).as_str(),
            "awaiting_approval"
        );
        assert_eq!(
            Outcome::Validation(Validation::ValidatedUnhealthy).as_str(),
            "validated_unhealthy"
        );
        assert_eq!(
            Outcome::Trigger(TriggerKind::Departure).as_str(),
            "departure"
        );
        assert_eq!(
            Outcome::Alert("rotation_failed".into()).as_str(),
            "rotation_failed"
        );
        assert_eq!(Outcome::Rejected("not_json").to_string(), "not_json");
    }
}
