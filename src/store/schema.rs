//! Schema versions and forward migrations.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Forward migrations; `MIGRATIONS[i]` takes the schema from version `i` to
/// `i + 1`. Append only: never edit a step that has shipped, because
/// databases already past it will not run it again.
///
/// Plain `CREATE` without `IF NOT EXISTS` so that re-running a step by
/// mistake fails loudly instead of silently skipping. Enumerated text
/// columns carry no `CHECK` list: adding a variant would otherwise need a
/// table rebuild, and reads already reject unknown values.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
CREATE TABLE triggers (
    id          INTEGER PRIMARY KEY,
    secret      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    dedupe_key  TEXT    UNIQUE,
    ticket      TEXT,
    reason      TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    not_before  INTEGER,
    deadline    INTEGER,
    status      TEXT    NOT NULL DEFAULT 'pending',
    attempt_id  TEXT    REFERENCES attempts(id),
    updated_at  INTEGER NOT NULL
);
CREATE INDEX triggers_pending ON triggers (deadline, created_at) WHERE status = 'pending';
CREATE INDEX triggers_secret_status ON triggers (secret, status);
CREATE INDEX triggers_attempt ON triggers (attempt_id) WHERE attempt_id IS NOT NULL;

CREATE TABLE attempts (
    id                   TEXT    PRIMARY KEY NOT NULL,
    trigger_id           INTEGER REFERENCES triggers(id),
    secret               TEXT    NOT NULL,
    secret_arn           TEXT,
    trigger_kind         TEXT    NOT NULL,
    ticket               TEXT,
    state                TEXT    NOT NULL DEFAULT 'preflight',
    client_request_token TEXT    NOT NULL UNIQUE,
    previous_version     TEXT,
    new_version          TEXT,
    started_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    finished_at          INTEGER,
    error                TEXT,
    rotate_calls         INTEGER NOT NULL DEFAULT 0 CHECK (rotate_calls >= 0)
);
CREATE INDEX attempts_unfinished ON attempts (started_at) WHERE finished_at IS NULL;
CREATE INDEX attempts_secret_finished ON attempts (secret, finished_at);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    secret   TEXT,
    ticket   TEXT,
    reason   TEXT,
    outcome  TEXT    NOT NULL,
    detail   TEXT    CHECK (detail IS NULL OR json_valid(detail))
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_secret_at ON audit (secret, at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;

CREATE TABLE seen_events (
    event_id      TEXT    PRIMARY KEY NOT NULL,
    source        TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL
);
CREATE INDEX seen_events_first_seen ON seen_events (first_seen_at);

CREATE TABLE cursors (
    name       TEXT    PRIMARY KEY NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    dedupe_key      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    message         TEXT    NOT NULL CHECK (json_valid(message)),
    attributes      TEXT    NOT NULL CHECK (json_valid(attributes)),
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    published_at    INTEGER,
    last_error      TEXT
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE published_at IS NULL;

CREATE TABLE alert_dedupe (
    dedupe_key      TEXT    PRIMARY KEY NOT NULL,
    last_alerted_at INTEGER NOT NULL
);
"#,
    // 2: the post-rotation watch of dependents (F6). It lives on the attempt so that a
    // restart during the watch resumes it.
    r#"
ALTER TABLE attempts ADD COLUMN validation TEXT;
ALTER TABLE attempts ADD COLUMN watch_until INTEGER;
ALTER TABLE attempts ADD COLUMN watch_plan TEXT CHECK (watch_plan IS NULL OR json_valid(watch_plan));
ALTER TABLE attempts ADD COLUMN watch_evidence TEXT CHECK (watch_evidence IS NULL OR json_valid(watch_evidence));
CREATE INDEX attempts_watching ON attempts (watch_until) WHERE validation IN ('watching', 'rolling_back');
"#,
    // 3: rotation and rollback requests from CommandBridge (F7), and the outbox of the
    // `Rotation Request Updated` events that answer them on the bus.
    r#"
CREATE TABLE requests (
    id            TEXT    PRIMARY KEY NOT NULL,
    kind          TEXT    NOT NULL,
    secret        TEXT    NOT NULL,
    ticket        TEXT,
    reason        TEXT    NOT NULL,
    requester     TEXT    NOT NULL,
    level         TEXT    NOT NULL,
    claimed_level TEXT,
    emergency     INTEGER NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    decided_by    TEXT,
    decided_at    INTEGER,
    comment       TEXT,
    trigger_id    INTEGER REFERENCES triggers(id),
    reminded_at   INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX requests_awaiting ON requests (expires_at) WHERE state = 'awaiting_approval';
CREATE INDEX requests_trigger ON requests (trigger_id) WHERE trigger_id IS NOT NULL;

CREATE TABLE bus_outbox (
    id              INTEGER PRIMARY KEY,
    detail_type     TEXT    NOT NULL,
    detail          TEXT    NOT NULL CHECK (json_valid(detail)),
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    published_at    INTEGER,
    last_error      TEXT
);
CREATE INDEX bus_outbox_due ON bus_outbox (next_attempt_at) WHERE published_at IS NULL;
"#,
    // 4: the audit log becomes a hash chain (store/audit.rs). Each row gets its hash by
    // one UPDATE right after its INSERT, so the append-only trigger now allows exactly
    // that: setting both hashes on a row that has none, with everything else unchanged.
    // Rows written before this version are chained when the store opens. The partial
    // index makes "is anything unchained?" cheap on every open.
    r#"
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
DROP TRIGGER audit_no_update;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
WHEN NOT (
    OLD.hash IS NULL AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
    AND NEW.id IS OLD.id AND NEW.at IS OLD.at AND NEW.actor IS OLD.actor
    AND NEW.action IS OLD.action AND NEW.secret IS OLD.secret
    AND NEW.ticket IS OLD.ticket AND NEW.reason IS OLD.reason
    AND NEW.outcome IS OLD.outcome AND NEW.detail IS OLD.detail
)
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE INDEX audit_unchained ON audit (id) WHERE hash IS NULL;
"#,
    // 5: when an attempt entered each state, for the audit history (F7).
    r#"
ALTER TABLE attempts ADD COLUMN stage_times TEXT CHECK (stage_times IS NULL OR json_valid(stage_times));
"#,
    // 6: a RotationFailed event that reports on a running attempt (events::commit) is
    // recorded on it, so that whoever drives the attempt ends it with the function's
    // error, and Security hears of the failure once.
    r#"
ALTER TABLE attempts ADD COLUMN function_error TEXT;
"#,
    // 7: the guide's "investigate before re-attempting": a secret whose rotation failed,
    // got stuck, was abandoned or rolled back is held (no planned or overdue attempt)
    // until an operator lifts it or a rotation of it succeeds. One row per held secret;
    // lifting deletes it (the audit log keeps the history).
    r#"
CREATE TABLE holds (
    id          INTEGER PRIMARY KEY,
    secret      TEXT    NOT NULL UNIQUE,
    attempt_id  TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    held_at     INTEGER NOT NULL,
    failures    INTEGER NOT NULL DEFAULT 1 CHECK (failures >= 1),
    updated_at  INTEGER NOT NULL
);
"#,
    // 8: `INSERT OR REPLACE INTO audit` with an existing id deleted the old row without
    // firing the delete trigger (SQLite fires none for REPLACE unless recursive_triggers
    // is on) and wrote a new one: a rewrite. Refused before the conflict is resolved.
    r#"
CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
"#,
    // 9: bounded growth (store/upkeep.rs). The audit log's oldest rows may be pruned, but
    // only below a checkpoint recorded first: the id and hash of the last pruned row, from
    // which `verify` goes on. Checkpoints are append-only too. Rejected deliveries beyond
    // the first few per reason and minute are counted in `rejection_tallies` (one row
    // per reason, source and minute, updated in place) and audited as one row each.
    r#"
CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY,
    upto_id   INTEGER NOT NULL,
    upto_hash TEXT    NOT NULL,
    pruned    INTEGER NOT NULL CHECK (pruned >= 0),
    at        INTEGER NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN OLD.id > COALESCE((SELECT MAX(upto_id) FROM audit_checkpoints), 0)
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TABLE rejection_tallies (
    reason TEXT    NOT NULL,
    source TEXT    NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL CHECK (count >= 1),
    PRIMARY KEY (reason, source, minute)
);
CREATE INDEX alert_outbox_published ON alert_outbox (published_at) WHERE published_at IS NOT NULL;
"#,
    // 10: a checkpoint lets rows below it be deleted, so writing one is as guarded as the
    // audit log itself: `INSERT OR REPLACE` onto an existing one (which fires no delete
    // trigger) is refused, and a new one must name an audit row that exists, with its
    // hash, above the previous checkpoint. `verify` also wants the chained `state`/`pruned`
    // entry `prune` writes with it (store/audit.rs).
    r#"
CREATE TRIGGER audit_checkpoints_no_replace BEFORE INSERT ON audit_checkpoints
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_checkpoints WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
CREATE TRIGGER audit_checkpoints_name_a_row BEFORE INSERT ON audit_checkpoints
WHEN NOT EXISTS (SELECT 1 FROM audit WHERE id = NEW.upto_id AND hash = NEW.upto_hash)
  OR NEW.upto_id <= COALESCE((SELECT MAX(upto_id) FROM audit_checkpoints), 0)
BEGIN
    SELECT RAISE(ABORT, 'an audit checkpoint must name an existing audit entry and its hash, above the last checkpoint');
END;
"#,
    // 11: the Identity Center users last seen, so that a departure event carrying only a
    // user id (which arrives after the user is gone from the Identity Store) still finds
    // the user's name and groups, across restarts.
    r#"
CREATE TABLE directory_users (
    user_id   TEXT    PRIMARY KEY NOT NULL,
    user_name TEXT    NOT NULL,
    groups    TEXT    NOT NULL,
    seen_at   INTEGER NOT NULL
);
"#,
    // 12: observe mode (`[daemon] mode = "observe"`). An attempt that ran its preflight
    // and stopped before RotateSecret ends `observed` with what enforce mode would have
    // done (`verdict`: would_rotate, would_fail, would_stick); the triggers it served go
    // back to pending with `observed_by`, so observe mode looks at each once and enforce
    // mode still acts on them.
    r#"
ALTER TABLE attempts ADD COLUMN verdict TEXT;
ALTER TABLE triggers ADD COLUMN observed_by TEXT REFERENCES attempts(id);
CREATE INDEX attempts_observed ON attempts (finished_at) WHERE state = 'observed';
"#,
];

/// The version that made the audit log a hash chain: older rows are chained on open.
pub(super) const AUDIT_CHAIN_VERSION: u32 = 4;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(super) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

pub(super) fn check_version(conn: &Connection) -> Result<u32, StoreError> {
    let found = user_version(conn).map_err(|source| StoreError::Migration {
        version: SCHEMA_VERSION,
        source,
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Applies the missing migrations; returns how many ran.
///
/// The version is re-read inside each write transaction, so two processes
/// opening a fresh file at once cannot both apply the same step.
pub(super) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    let mut applied = 0;
    loop {
        let next = check_version(conn)? + 1;
        let err = |source| StoreError::Migration {
            version: next,
            source,
        };
        let Some(sql) = MIGRATIONS.get(next as usize - 1) else {
            return Ok(applied);
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        if user_version(&tx).map_err(err)? + 1 != next {
            // Another process migrated between our read and our lock.
            continue;
        }
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", next).map_err(err)?;
        tx.commit().map_err(err)?;
        applied += 1;
    }
}
