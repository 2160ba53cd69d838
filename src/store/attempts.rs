//! `attempts`: one rotation attempt, persisted as a state machine so it can be
//! resumed after a restart.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Db, StoreError, StoreResult, TriggerKind, Ts, query, text_enum, ts};

text_enum! {
    /// Where a rotation attempt is.
    pub enum AttemptState ("attempt state") {
        /// Checking that the secret can be rotated now.
        Preflight => "preflight",
        /// RotateSecret is being (or has been) requested.
        RotateRequested => "rotate_requested",
        /// Waiting for the rotation Lambda to finish.
        Monitoring => "monitoring",
        /// Checking that the new version works.
        Validating => "validating",
        Succeeded => "succeeded",
        Failed => "failed",
        /// Given up on while AWS still shows the rotation in progress; an
        /// operator has to clear it. Terminal for this attempt: a later
        /// attempt's preflight sees the leftover state.
        Stuck => "stuck",
        /// Preflight decided no rotation was needed or allowed.
        Skipped => "skipped",
        /// Observe mode: the preflight ran, nothing was sent; `verdict` says what enforce
        /// mode would have done. Its triggers went back to pending (`observed_by`).
        Observed => "observed",
    }
}

text_enum! {
    /// What an `observed` attempt found enforce mode would have done.
    pub enum Verdict ("verdict") {
        /// The preflight passed: RotateSecret would have been sent.
        WouldRotate => "would_rotate",
        /// The preflight failed (the reason is the attempt's `error`): the rotation would
        /// have failed and held the secret.
        WouldFail => "would_fail",
        /// A previous rotation's AWSPENDING is out: the attempt would have ended stuck.
        WouldStick => "would_stick",
    }
}

text_enum! {
    /// The post-rotation watch of an attempt's dependents (CloudWatch alarms and metrics).
    /// Absent when nothing was watched. It starts when the attempt succeeds and outlives the
    /// attempt's terminal state: the rotation is done, its dependents' health is not known
    /// yet.
    pub enum Validation ("validation") {
        /// Polling CloudWatch until `watch_until`.
        Watching => "watching",
        /// Dependents failed and the secret has `auto_rollback = true`: AWSCURRENT is being
        /// moved back.
        RollingBack => "rolling_back",
        /// The watch ended with every dependent healthy.
        Validated => "validated",
        /// A dependent's alarm went to ALARM or its metric crossed the threshold.
        ValidatedUnhealthy => "validated_unhealthy",
    }
}

impl Validation {
    /// Still polled by the watcher.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Watching | Self::RollingBack)
    }
}

impl AttemptState {
    /// Terminal states are final: the attempt is finished and never changes.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Stuck | Self::Skipped | Self::Observed
        )
    }
}

/// A rotation attempt to record; it starts in `preflight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAttempt {
    /// Caller-chosen unique id (UUID-like).
    pub id: String,
    /// The trigger that started it, if any.
    pub trigger_id: Option<i64>,
    pub secret: String,
    pub secret_arn: Option<String>,
    pub trigger_kind: TriggerKind,
    pub ticket: Option<String>,
    /// Derived from `id` by the caller so that a resumed attempt re-sends
    /// RotateSecret with the same token; unique across attempts.
    pub client_request_token: String,
    pub previous_version: Option<String>,
    pub started_at: DateTime<Utc>,
}

/// A stored rotation attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: String,
    pub trigger_id: Option<i64>,
    pub secret: String,
    pub secret_arn: Option<String>,
    pub trigger_kind: TriggerKind,
    pub ticket: Option<String>,
    pub state: AttemptState,
    pub client_request_token: String,
    pub previous_version: Option<String>,
    pub new_version: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set exactly when `state` is terminal.
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// RotateSecret requests sent (counted before sending).
    pub rotate_calls: u32,
    pub validation: Option<Validation>,
    /// When the watch of the dependents ends.
    pub watch_until: Option<DateTime<Utc>>,
    /// What to watch and the baseline taken before rotating (JSON, see `validation.rs`).
    pub watch_plan: Option<String>,
    /// What the watch found (JSON).
    pub watch_evidence: Option<String>,
    /// When the attempt entered each state, and when each of the rotation function's
    /// steps was first observed (`createSecret`, `finishSecret`):
    /// `{"preflight": "2026-...Z", "createSecret": "...", ...}` (JSON).
    pub stage_times: Option<String>,
    /// The rotation function's failure, from a RotationFailed event that reports on this
    /// attempt (`events::commit`): `EVENT_ID: ERROR MESSAGE`.
    pub function_error: Option<String>,
    /// For an `observed` attempt: what enforce mode would have done.
    pub verdict: Option<Verdict>,
}

/// A state change for [`Db::update_attempt`]. `None` fields keep their stored
/// value, so a later step cannot erase what an earlier one learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptUpdate {
    pub state: AttemptState,
    pub error: Option<String>,
    pub previous_version: Option<String>,
    pub new_version: Option<String>,
    pub watch_plan: Option<String>,
    /// Starts the watch of the dependents (sets `validation = watching`).
    pub watch_until: Option<DateTime<Utc>>,
    /// Set with [`AttemptState::Observed`].
    pub verdict: Option<Verdict>,
}

impl AttemptUpdate {
    /// Change only the state.
    pub fn to(state: AttemptState) -> AttemptUpdate {
        AttemptUpdate {
            state,
            error: None,
            previous_version: None,
            new_version: None,
            watch_plan: None,
            watch_until: None,
            verdict: None,
        }
    }

    /// An observed end with what enforce mode would have done.
    pub fn observed(verdict: Verdict) -> AttemptUpdate {
        AttemptUpdate {
            verdict: Some(verdict),
            ..AttemptUpdate::to(AttemptState::Observed)
        }
    }

    pub fn watch_plan(mut self, plan: impl Into<String>) -> AttemptUpdate {
        self.watch_plan = Some(plan.into());
        self
    }

    pub fn watch_until(mut self, until: DateTime<Utc>) -> AttemptUpdate {
        self.watch_until = Some(until);
        self
    }

    pub fn error(mut self, error: impl Into<String>) -> AttemptUpdate {
        self.error = Some(error.into());
        self
    }

    pub fn previous_version(mut self, version: impl Into<String>) -> AttemptUpdate {
        self.previous_version = Some(version.into());
        self
    }

    pub fn new_version(mut self, version: impl Into<String>) -> AttemptUpdate {
        self.new_version = Some(version.into());
        self
    }
}

const COLUMNS: &str = "id, trigger_id, secret, secret_arn, trigger_kind, ticket, state, \
                       client_request_token, previous_version, new_version, started_at, \
                       updated_at, finished_at, error, rotate_calls, validation, watch_until, \
                       watch_plan, watch_evidence, stage_times, function_error, verdict";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: row.get(0)?,
        trigger_id: row.get(1)?,
        secret: row.get(2)?,
        secret_arn: row.get(3)?,
        trigger_kind: row.get(4)?,
        ticket: row.get(5)?,
        state: row.get(6)?,
        client_request_token: row.get(7)?,
        previous_version: row.get(8)?,
        new_version: row.get(9)?,
        started_at: row.get::<_, Ts>(10)?.0,
        updated_at: row.get::<_, Ts>(11)?.0,
        finished_at: row.get::<_, Option<Ts>>(12)?.map(|t| t.0),
        error: row.get(13)?,
        rotate_calls: row.get(14)?,
        validation: row.get(15)?,
        watch_until: row.get::<_, Option<Ts>>(16)?.map(|t| t.0),
        watch_plan: row.get(17)?,
        watch_evidence: row.get(18)?,
        stage_times: row.get(19)?,
        function_error: row.get(20)?,
        verdict: row.get(21)?,
    })
}

/// An attempt that set out to replace a version ([`Db::retiring_attempts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retiring {
    pub attempt_id: String,
    /// The attempt's own trigger kind first, then those of the triggers merged into it.
    pub kinds: Vec<TriggerKind>,
    /// An emergency request's, or `rotate --emergency`.
    pub emergency: bool,
    pub started_at: DateTime<Utc>,
    pub new_version: Option<String>,
}

impl Db<'_> {
    /// Records a new attempt in `preflight`. Fails if the id or the client
    /// request token is already used, or `trigger_id` names no trigger.
    pub fn create_attempt(self, a: &NewAttempt) -> StoreResult<()> {
        self.conn
            .execute(
                "INSERT INTO attempts (id, trigger_id, secret, secret_arn, trigger_kind, ticket, \
                                       state, client_request_token, previous_version, \
                                       started_at, updated_at, stage_times) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'preflight', ?7, ?8, ?9, ?9, \
                         json_object('preflight', ?10))",
                params![
                    a.id,
                    a.trigger_id,
                    a.secret,
                    a.secret_arn,
                    a.trigger_kind,
                    a.ticket,
                    a.client_request_token,
                    a.previous_version,
                    ts(a.started_at),
                    a.started_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ],
            )
            .map_err(query("create a rotation attempt"))?;
        Ok(())
    }

    pub fn get_attempt(self, id: &str) -> StoreResult<Option<Attempt>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM attempts WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(query("read a rotation attempt"))
    }

    /// Applies a state change; a terminal state also sets `finished_at`.
    /// Refused with [`StoreError::AttemptFinished`] once the attempt is
    /// terminal. The check and the write are one statement, so a concurrent
    /// writer cannot slip a change in between.
    pub fn update_attempt(
        self,
        id: &str,
        update: &AttemptUpdate,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE attempts SET state = ?1, updated_at = ?2, \
                     finished_at = CASE WHEN ?3 THEN ?2 END, \
                     error = COALESCE(?4, error), \
                     previous_version = COALESCE(?5, previous_version), \
                     new_version = COALESCE(?6, new_version), \
                     watch_plan = COALESCE(?8, watch_plan), \
                     watch_until = COALESCE(?9, watch_until), \
                     validation = CASE WHEN ?9 IS NULL THEN validation ELSE 'watching' END, \
                     stage_times = json_set(COALESCE(stage_times, '{}'), '$.' || ?1, ?10), \
                     verdict = COALESCE(?11, verdict) \
                 WHERE id = ?7 AND finished_at IS NULL",
                params![
                    update.state,
                    ts(now),
                    update.state.is_terminal(),
                    update.error,
                    update.previous_version,
                    update.new_version,
                    id,
                    update.watch_plan,
                    update.watch_until.map(ts),
                    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    update.verdict,
                ],
            )
            .map_err(query("update a rotation attempt"))?;
        if changed == 1 {
            Ok(())
        } else {
            Err(self.attempt_unchangeable(id))
        }
    }

    /// Records when a stage of the rotation function was first observed (`createSecret`
    /// when the pending version appears, `finishSecret` when it holds AWSCURRENT). A
    /// later observation of the same stage keeps the first time. Returns whether this was
    /// the first observation.
    pub fn observe_stage(self, id: &str, stage: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let changed = self
            .conn
            .execute(
                "UPDATE attempts SET stage_times = json_insert(COALESCE(stage_times, '{}'), \
                     '$.' || ?2, ?3) \
                 WHERE id = ?1 AND finished_at IS NULL \
                   AND json_extract(COALESCE(stage_times, '{}'), '$.' || ?2) IS NULL",
                params![
                    id,
                    stage,
                    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ],
            )
            .map_err(query("record a rotation stage"))?;
        Ok(changed == 1)
    }

    /// Records the rotation function's failure on an unfinished attempt (the first one
    /// reported wins). Returns whether the attempt took it.
    pub fn set_function_error(
        self,
        id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let changed = self
            .conn
            .execute(
                "UPDATE attempts SET function_error = ?2, updated_at = ?3 \
                 WHERE id = ?1 AND finished_at IS NULL AND function_error IS NULL",
                params![id, error, ts(now)],
            )
            .map_err(query("record a rotation function's failure"))?;
        Ok(changed == 1)
    }

    /// rotationd's latest attempt on `secret` that sent RotateSecret: the rotation a
    /// Secrets Manager rotation event most likely reports on. Attempts recorded from
    /// events (`event-` ids) are not rotationd's.
    pub fn latest_own_attempt(self, secret: &str) -> StoreResult<Option<Attempt>> {
        self.attempts_where(
            "WHERE secret = ?1 AND rotate_calls > 0 AND id NOT LIKE 'event-%' \
             ORDER BY started_at DESC, rowid DESC LIMIT 1",
            [secret],
            "find the latest rotation attempt of a secret",
        )
        .map(|mut v| v.pop())
    }

    /// Counts one more RotateSecret request and returns the new count. Call
    /// it, and let it commit, before sending the request: after a crash a
    /// count above zero means AWS may have received one. Refused once the
    /// attempt is terminal, since a finished attempt must not rotate again.
    pub fn increment_rotate_calls(self, id: &str, now: DateTime<Utc>) -> StoreResult<u32> {
        let calls = self
            .conn
            .query_row(
                "UPDATE attempts SET rotate_calls = rotate_calls + 1, updated_at = ?1 \
                 WHERE id = ?2 AND finished_at IS NULL RETURNING rotate_calls",
                params![ts(now), id],
                |row| row.get(0),
            )
            .optional()
            .map_err(query("count a RotateSecret request"))?;
        calls.ok_or_else(|| self.attempt_unchangeable(id))
    }

    /// Terminal attempts that still have a non-terminal trigger attached: their finishing
    /// transaction never ran (a crash right after the attempt's last state change).
    pub fn finished_attempts_with_open_triggers(self) -> StoreResult<Vec<Attempt>> {
        self.attempts_where(
            &format!(
                "WHERE finished_at IS NOT NULL AND id IN (SELECT attempt_id FROM triggers \
                 WHERE attempt_id IS NOT NULL AND status NOT IN {}) ORDER BY started_at, rowid",
                super::triggers::TERMINAL_TRIGGER_SQL
            ),
            [],
            "list finished attempts with open triggers",
        )
    }

    /// Moves the watch of attempt `id` from one of `from` to `to`, recording `evidence`.
    /// Returns false (and changes nothing) when the watch is not in one of `from`: a
    /// second watcher pass, or a restart, cannot move it twice.
    pub fn update_validation(
        self,
        id: &str,
        from: &[Validation],
        to: Validation,
        evidence: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut changed = 0;
        for f in from {
            changed += self
                .conn
                .execute(
                    "UPDATE attempts SET validation = ?1, updated_at = ?2, \
                         watch_evidence = COALESCE(?3, watch_evidence) \
                     WHERE id = ?4 AND validation = ?5",
                    params![to, ts(now), evidence, id, f],
                )
                .map_err(query("update the watch of a rotation attempt"))?;
            if changed > 0 {
                break;
            }
        }
        Ok(changed > 0)
    }

    /// Attempts whose dependents are still being watched (or rolled back), oldest first.
    pub fn watched_attempts(self) -> StoreResult<Vec<Attempt>> {
        self.attempts_where(
            "WHERE validation IN ('watching', 'rolling_back') ORDER BY watch_until, rowid",
            [],
            "list the rotations whose dependents are watched",
        )
    }

    /// Attempts not yet in a terminal state, oldest first: the work to resume
    /// after a restart.
    pub fn unfinished_attempts(self) -> StoreResult<Vec<Attempt>> {
        self.attempts_where(
            "WHERE finished_at IS NULL ORDER BY started_at, rowid",
            [],
            "list unfinished rotation attempts",
        )
    }

    /// The most recently finished attempt for `secret`, in any terminal state but
    /// `observed` (which changed nothing).
    pub fn last_finished_attempt(self, secret: &str) -> StoreResult<Option<Attempt>> {
        self.attempts_where(
            "WHERE secret = ?1 AND finished_at IS NOT NULL AND state != 'observed' \
             ORDER BY finished_at DESC, rowid DESC LIMIT 1",
            [secret],
            "find the last finished rotation attempt",
        )
        .map(|v| v.into_iter().next())
    }

    /// The most recent successful attempt for `secret`: when it last rotated.
    pub fn last_succeeded_attempt(self, secret: &str) -> StoreResult<Option<Attempt>> {
        self.attempts_where(
            "WHERE secret = ?1 AND state = 'succeeded' \
             ORDER BY finished_at DESC, rowid DESC LIMIT 1",
            [secret],
            "find the last successful rotation attempt",
        )
        .map(|v| v.into_iter().next())
    }

    /// The most recently finished attempt of every secret that has one (`observed` ones
    /// aside: they changed nothing), ordered by secret.
    pub fn last_finished_attempts(self) -> StoreResult<Vec<Attempt>> {
        self.attempts_where(
            "WHERE rowid IN (\
                 SELECT rowid FROM (\
                     SELECT rowid, ROW_NUMBER() OVER (\
                         PARTITION BY secret ORDER BY finished_at DESC, rowid DESC) AS n \
                     FROM attempts WHERE finished_at IS NOT NULL AND state != 'observed') \
                 WHERE n = 1) \
             ORDER BY secret",
            [],
            "list the last finished rotation attempts",
        )
    }

    /// Newest attempts first, optionally for one secret; for status output.
    pub fn recent_attempts(self, secret: Option<&str>, limit: u32) -> StoreResult<Vec<Attempt>> {
        self.attempts_where(
            "WHERE (?1 IS NULL OR secret = ?1) ORDER BY started_at DESC, rowid DESC LIMIT ?2",
            params![secret, limit],
            "list recent rotation attempts",
        )
    }

    /// How many attempts for triggers of `kinds` started at or after `since` (the storm
    /// guard's hourly count). Observed attempts rotate nothing and are not counted.
    pub fn count_attempts_since(
        self,
        kinds: &[TriggerKind],
        since: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut n = 0u64;
        for kind in kinds {
            let c: i64 = self
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM attempts WHERE trigger_kind = ?1 AND started_at >= ?2 \
                     AND state != 'observed'",
                    params![kind, ts(since)],
                    |r| r.get(0),
                )
                .map_err(query("count recent attempts"))?;
            n += u64::try_from(c).unwrap_or(0);
        }
        Ok(n)
    }

    /// Observed attempts that finished in `[from, to)`, oldest first: what the daily
    /// observe summary and `rotationd report` read.
    pub fn observed_attempts(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<Attempt>> {
        self.attempts_where(
            "WHERE state = 'observed' AND finished_at >= ?1 AND finished_at < ?2 \
             ORDER BY finished_at, rowid",
            params![ts(from), ts(to)],
            "list observed attempts",
        )
    }

    /// Every attempt started before `to`, oldest first: the history `rotationd report`
    /// reads (what came before a period decides the credential's age at its start).
    pub fn attempts_started_before(self, to: DateTime<Utc>) -> StoreResult<Vec<Attempt>> {
        self.attempts_where(
            "WHERE started_at < ?1 ORDER BY started_at, rowid",
            params![ts(to)],
            "list the attempts before a time",
        )
    }

    /// Every attempt of the secret known by any of `ids` (its config key, name, ARN) that
    /// set out to replace `version` (its `previous_version`), newest first, with the kinds
    /// of every trigger it served and whether one was an emergency (an emergency request,
    /// or `rotate --emergency`, whose `rotate_requested` entry says so): what the one
    /// rollback needs to know whether putting `version` back would restore a credential
    /// believed exposed ([`crate::rollback::retired_by`]). Whether the attempt succeeded
    /// does not matter: the trigger is what said the version was exposed.
    pub fn retiring_attempts(self, ids: &[&str], version: &str) -> StoreResult<Vec<Retiring>> {
        const OP: &str = "find the attempts that replaced a version";
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let attempts = self.attempts_where(
            "WHERE previous_version = ?1 AND (secret IN (SELECT value FROM json_each(?2))                  OR secret_arn IN (SELECT value FROM json_each(?2)))              ORDER BY started_at DESC, rowid DESC",
            params![version, ids],
            OP,
        )?;
        let mut out = Vec::with_capacity(attempts.len());
        for a in attempts {
            let mut kinds = vec![a.trigger_kind];
            let mut stmt = self
                .conn
                .prepare_cached("SELECT kind FROM triggers WHERE attempt_id = ?1 ORDER BY id")
                .map_err(query(OP))?;
            for k in stmt
                .query_map([&a.id], |r| r.get::<_, TriggerKind>(0))
                .map_err(query(OP))?
            {
                let k = k.map_err(query(OP))?;
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
            let emergency: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM requests WHERE emergency = 1 AND trigger_id IN                          (SELECT id FROM triggers WHERE attempt_id = ?1))                      OR EXISTS (SELECT 1 FROM audit WHERE action = 'rotate_requested'                          AND json_extract(detail, '$.attempt') = ?1                          AND json_extract(detail, '$.emergency') = 1)",
                    [&a.id],
                    |r| r.get(0),
                )
                .map_err(query(OP))?;
            out.push(Retiring {
                attempt_id: a.id,
                kinds,
                emergency,
                started_at: a.started_at,
                new_version: a.new_version,
            });
        }
        Ok(out)
    }

    fn attempts_where(
        self,
        clause: &str,
        params: impl rusqlite::Params,
        op: &'static str,
    ) -> StoreResult<Vec<Attempt>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM attempts {clause}"))
            .map_err(query(op))?;
        stmt.query_map(params, from_row)
            .and_then(|rows| rows.collect())
            .map_err(query(op))
    }

    /// Explains why an update of `id` changed no row.
    fn attempt_unchangeable(self, id: &str) -> StoreError {
        match self.get_attempt(id) {
            Ok(Some(a)) => StoreError::AttemptFinished {
                id: id.to_owned(),
                state: a.state,
            },
            Ok(None) => StoreError::NotFound {
                what: "rotation attempt",
                id: id.to_owned(),
            },
            Err(e) => e,
        }
    }
}
