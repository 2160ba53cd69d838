//! `triggers`: the reasons a secret must rotate.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Db, StoreError, StoreResult, Ts, count, opt_ts, query, text_enum, ts};

text_enum! {
    /// Why a rotation is wanted.
    pub enum TriggerKind ("trigger kind") {
        /// The secret's rotation window opened.
        Scheduled => "scheduled",
        /// Someone with access to the secret left the team.
        Departure => "departure",
        /// The secret is believed to be exposed.
        Compromise => "compromise",
        /// An operator asked for it.
        Manual => "manual",
        /// An earlier attempt failed and is being retried.
        Retry => "retry",
        /// The secret is past its maximum age.
        Overdue => "overdue",
        /// The secret has no recorded rotation at all.
        NeverRotated => "never_rotated",
    }
}

text_enum! {
    /// Where a trigger is in its life.
    pub enum TriggerStatus ("trigger status") {
        Pending => "pending",
        Running => "running",
        Done => "done",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

impl TriggerStatus {
    /// Terminal statuses are final: a trigger in one is never changed again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// Kept in step with [`TriggerStatus::is_terminal`] (checked by a test).
pub(super) const TERMINAL_TRIGGER_SQL: &str = "('done', 'failed', 'cancelled')";

/// A trigger to record; it starts out `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTrigger {
    /// Config id or ARN of the secret.
    pub secret: String,
    pub kind: TriggerKind,
    /// Identifies the cause so it is recorded once, e.g.
    /// `scheduled:<secret>:<window_start>` or `event:<eventID>:<secret>`.
    /// `None` never deduplicates.
    pub dedupe_key: Option<String>,
    pub ticket: Option<String>,
    pub reason: String,
    pub actor: String,
    pub created_at: DateTime<Utc>,
    /// Do not start before this (the window start).
    pub not_before: Option<DateTime<Utc>>,
    /// Must be done by this (departure SLA, window end).
    pub deadline: Option<DateTime<Utc>>,
}

/// A stored trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: i64,
    pub secret: String,
    pub kind: TriggerKind,
    pub dedupe_key: Option<String>,
    pub ticket: Option<String>,
    pub reason: String,
    pub actor: String,
    pub created_at: DateTime<Utc>,
    pub not_before: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub status: TriggerStatus,
    /// The attempt working on (or that finished) this trigger.
    pub attempt_id: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Observe mode: the `observed` attempt that looked at this trigger, which then went
    /// back to pending. Observe mode looks at a trigger once; enforce mode ignores this.
    #[serde(default)]
    pub observed_by: Option<String>,
}

/// Result of [`Db::insert_trigger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerInsert {
    /// The new row, or the existing row with the same dedupe key.
    pub id: i64,
    /// `false` when the dedupe key was already recorded and nothing was
    /// inserted.
    pub new: bool,
}

const COLUMNS: &str = "id, secret, kind, dedupe_key, ticket, reason, actor, created_at, \
                       not_before, deadline, status, attempt_id, updated_at, observed_by";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Trigger> {
    Ok(Trigger {
        id: row.get(0)?,
        secret: row.get(1)?,
        kind: row.get(2)?,
        dedupe_key: row.get(3)?,
        ticket: row.get(4)?,
        reason: row.get(5)?,
        actor: row.get(6)?,
        created_at: row.get::<_, Ts>(7)?.0,
        not_before: row.get::<_, Option<Ts>>(8)?.map(|t| t.0),
        deadline: row.get::<_, Option<Ts>>(9)?.map(|t| t.0),
        status: row.get(10)?,
        attempt_id: row.get(11)?,
        updated_at: row.get::<_, Ts>(12)?.0,
        observed_by: row.get(13)?,
    })
}

/// Pending work, most urgent first: earliest deadline, then triggers without
/// a deadline, oldest first within each; `id` makes ties deterministic.
const PENDING_ORDER: &str = "ORDER BY deadline IS NULL, deadline, created_at, id";

impl Db<'_> {
    /// Records a trigger unless one with the same `dedupe_key` exists.
    pub fn insert_trigger(self, t: &NewTrigger) -> StoreResult<TriggerInsert> {
        self.atomic("record a trigger", || self.insert_trigger_audited(t))
    }

    fn insert_trigger_audited(self, t: &NewTrigger) -> StoreResult<TriggerInsert> {
        let inserted = self
            .conn
            .execute(
                "INSERT INTO triggers (secret, kind, dedupe_key, ticket, reason, actor, created_at, \
                                       not_before, deadline, status, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?7) \
                 ON CONFLICT (dedupe_key) DO NOTHING",
                params![
                    t.secret,
                    t.kind,
                    t.dedupe_key,
                    t.ticket,
                    t.reason,
                    t.actor,
                    ts(t.created_at),
                    opt_ts(t.not_before),
                    opt_ts(t.deadline),
                ],
            )
            .map_err(query("insert a trigger"))?;
        if inserted == 1 {
            let id = self.conn.last_insert_rowid();
            // Every reason to rotate is in the history, with who asked and why.
            self.append_audit(&super::NewAuditEntry {
                at: t.created_at,
                actor: t.actor.clone(),
                action: super::audit::Action::Trigger,
                secret: Some(t.secret.clone()),
                ticket: t.ticket.clone(),
                reason: Some(t.reason.clone()),
                outcome: super::audit::Outcome::Trigger(t.kind),
                detail: Some(serde_json::json!({
                    "trigger": id,
                    "dedupe_key": t.dedupe_key,
                    "not_before": t.not_before.map(|d| d.to_rfc3339()),
                    "deadline": t.deadline.map(|d| d.to_rfc3339()),
                })),
            })?;
            return Ok(TriggerInsert { id, new: true });
        }
        // Only a dedupe conflict inserts nothing, and triggers are never
        // deleted, so the existing row is there to find.
        let id = self
            .conn
            .query_row(
                "SELECT id FROM triggers WHERE dedupe_key = ?1",
                [&t.dedupe_key],
                |row| row.get(0),
            )
            .map_err(query("look up a duplicate trigger"))?;
        Ok(TriggerInsert { id, new: false })
    }

    pub fn get_trigger(self, id: i64) -> StoreResult<Option<Trigger>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM triggers WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(query("read a trigger"))
    }

    /// All pending triggers, most urgent first (earliest deadline, then no
    /// deadline, then oldest). Triggers whose `not_before` is still in the
    /// future are included; the planner decides when to start them.
    pub fn pending_triggers(self) -> StoreResult<Vec<Trigger>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM triggers WHERE status = 'pending' {PENDING_ORDER}"
            ))
            .map_err(query("list pending triggers"))?;
        stmt.query_map([], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("list pending triggers"))
    }

    /// Triggers of `kind` whose rotation has not succeeded (pending, running or failed),
    /// earliest deadline first: what the departure SLA watch looks at, since a failed
    /// departure rotation leaves the SLA as much at risk as a queued one.
    pub fn unresolved_triggers(self, kind: TriggerKind) -> StoreResult<Vec<Trigger>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM triggers \
                 WHERE status IN ('pending', 'running', 'failed') AND kind = ?1 {PENDING_ORDER}"
            ))
            .map_err(query("list unresolved triggers"))?;
        stmt.query_map([kind], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("list unresolved triggers"))
    }

    /// Pending triggers for one secret, in the same order as
    /// [`Db::pending_triggers`].
    pub fn pending_triggers_for(self, secret: &str) -> StoreResult<Vec<Trigger>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM triggers WHERE status = 'pending' AND secret = ?1 \
                 {PENDING_ORDER}"
            ))
            .map_err(query("list pending triggers of a secret"))?;
        stmt.query_map([secret], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("list pending triggers of a secret"))
    }

    /// Moves a trigger to `status`; refused once the trigger is terminal.
    pub fn set_trigger_status(
        self,
        id: i64,
        status: TriggerStatus,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE triggers SET status = ?1, updated_at = ?2 \
                     WHERE id = ?3 AND status NOT IN {TERMINAL_TRIGGER_SQL}"
                ),
                params![status, ts(now), id],
            )
            .map_err(query("update a trigger"))?;
        self.trigger_changed(id, changed)
    }

    /// Links a trigger to the attempt that handles it and marks it `running`;
    /// refused once the trigger is terminal. Several triggers may share one
    /// attempt (e.g. a departure arriving while a scheduled rotation is
    /// queued for the same secret).
    pub fn attach_attempt(self, id: i64, attempt_id: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE triggers SET status = 'running', attempt_id = ?1, updated_at = ?2 \
                     WHERE id = ?3 AND status NOT IN {TERMINAL_TRIGGER_SQL}"
                ),
                params![attempt_id, ts(now), id],
            )
            .map_err(query("attach an attempt to a trigger"))?;
        self.trigger_changed(id, changed)
    }

    /// Detaches from `attempt_id` the triggers that only a rotation can satisfy (every kind
    /// but the planned ones: a departure, a compromise, an operator's or a request's, a
    /// retry) and makes them pending again, when the attempt ended without rotating: a
    /// planned attempt skipped because the secret was already rotated in its window must
    /// not take a departure that arrived after that rotation down with it. Returns how
    /// many went back to pending. The attempt's `own` trigger stays attached: it ends
    /// with the attempt (a skip is only ever of a planned trigger).
    pub fn release_unplanned_triggers_of_attempt(
        self,
        attempt_id: &str,
        own: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        self.conn
            .execute(
                &format!(
                    "UPDATE triggers SET status = 'pending', attempt_id = NULL, updated_at = ?1 \
                     WHERE attempt_id = ?2 AND status NOT IN {TERMINAL_TRIGGER_SQL} \
                     AND kind NOT IN ('scheduled', 'overdue', 'never_rotated') AND id IS NOT ?3"
                ),
                params![ts(now), attempt_id, own],
            )
            .map_err(query("release the triggers of a skipped attempt"))
    }

    /// Sets `status` on every non-terminal trigger attached to `attempt_id`,
    /// e.g. `done` when the attempt succeeded; returns how many changed.
    pub fn finish_triggers_of_attempt(
        self,
        attempt_id: &str,
        status: TriggerStatus,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        self.conn
            .execute(
                &format!(
                    "UPDATE triggers SET status = ?1, updated_at = ?2 \
                     WHERE attempt_id = ?3 AND status NOT IN {TERMINAL_TRIGGER_SQL}"
                ),
                params![status, ts(now), attempt_id],
            )
            .map_err(query("update the triggers of an attempt"))
    }

    /// The end of an `observed` attempt for its triggers: each goes back to pending,
    /// detached, with `observed_by` naming the attempt, so that observe mode does not look
    /// at it again and enforce mode still acts on it (nothing is lost, nothing counted
    /// twice). The one exception is the trigger of `rotationd rotate` (a manual trigger
    /// without a dedupe key): its operator had the answer at once, so it is cancelled
    /// rather than left to run when enforce mode starts. Returns the ids (released,
    /// cancelled).
    pub fn release_observed_triggers(
        self,
        attempt_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(Vec<i64>, Vec<i64>)> {
        let ids = |sql: &str, op: &'static str| -> StoreResult<Vec<i64>> {
            let mut stmt = self.conn.prepare_cached(sql).map_err(query(op))?;
            stmt.query_map(params![ts(now), attempt_id], |row| row.get(0))
                .and_then(|rows| rows.collect())
                .map_err(query(op))
        };
        let cancelled = ids(
            &format!(
                "UPDATE triggers SET status = 'cancelled', observed_by = ?2, updated_at = ?1 \
                 WHERE attempt_id = ?2 AND status NOT IN {TERMINAL_TRIGGER_SQL} \
                 AND kind = 'manual' AND dedupe_key IS NULL RETURNING id"
            ),
            "cancel the trigger of an observed manual rotation",
        )?;
        let released = ids(
            &format!(
                "UPDATE triggers SET status = 'pending', attempt_id = NULL, observed_by = ?2, \
                 updated_at = ?1 \
                 WHERE attempt_id = ?2 AND status NOT IN {TERMINAL_TRIGGER_SQL} RETURNING id"
            ),
            "release the triggers of an observed attempt",
        )?;
        Ok((released, cancelled))
    }

    /// Gives a pending trigger a new window (an overdue trigger observed in observe mode
    /// whose window passed: enforce mode rotates the still-overdue secret now instead of
    /// dropping it). Refused once the trigger is terminal.
    pub fn reopen_trigger(
        self,
        id: i64,
        not_before: DateTime<Utc>,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE triggers SET not_before = ?1, deadline = ?2, updated_at = ?3 \
                     WHERE id = ?4 AND status NOT IN {TERMINAL_TRIGGER_SQL}"
                ),
                params![ts(not_before), ts(deadline), ts(now), id],
            )
            .map_err(query("reopen a trigger's window"))?;
        self.trigger_changed(id, changed)
    }

    /// Every trigger created before `to`, oldest first (`rotationd report`).
    pub fn triggers_created_before(self, to: DateTime<Utc>) -> StoreResult<Vec<Trigger>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM triggers WHERE created_at < ?1 ORDER BY created_at, id"
            ))
            .map_err(query("list the triggers before a time"))?;
        stmt.query_map(params![ts(to)], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("list the triggers before a time"))
    }

    /// Number of pending triggers per kind; kinds with none are absent.
    pub fn pending_trigger_counts(self) -> StoreResult<BTreeMap<TriggerKind, u64>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kind, COUNT(*) FROM triggers WHERE status = 'pending' GROUP BY kind",
            )
            .map_err(query("count pending triggers"))?;
        stmt.query_map([], |row| Ok((row.get(0)?, count(row.get(1)?))))
            .and_then(|rows| rows.collect())
            .map_err(query("count pending triggers"))
    }

    /// The nearest deadline among pending triggers, if any has one.
    pub fn earliest_pending_deadline(self) -> StoreResult<Option<DateTime<Utc>>> {
        self.conn
            .query_row(
                "SELECT MIN(deadline) FROM triggers WHERE status = 'pending'",
                [],
                |row| row.get::<_, Option<Ts>>(0),
            )
            .map(|t| t.map(|t| t.0))
            .map_err(query("find the earliest pending deadline"))
    }

    /// Turns "no row updated" into the right error.
    fn trigger_changed(self, id: i64, changed: usize) -> StoreResult<()> {
        if changed == 1 {
            return Ok(());
        }
        match self.get_trigger(id)? {
            None => Err(StoreError::NotFound {
                what: "trigger",
                id: id.to_string(),
            }),
            Some(t) => Err(StoreError::TriggerFinished {
                id,
                status: t.status,
            }),
        }
    }
}
