//! `alert_outbox` (alerts waiting to be published to SNS, retried with
//! backoff until they are) and `alert_dedupe` (when each alert key last went
//! out, to hold back repeats).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Db, Json, StoreError, StoreResult, Ts, count, query, to_json, ts};

/// An alert to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAlert {
    /// What makes two alerts "the same" for re-alert suppression, e.g.
    /// `overdue:<secret>`.
    pub dedupe_key: String,
    pub kind: String,
    pub severity: String,
    pub subject: String,
    pub message: serde_json::Value,
    /// SNS message attributes.
    pub attributes: BTreeMap<String, String>,
}

/// An alert in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxAlert {
    pub id: i64,
    pub dedupe_key: String,
    pub kind: String,
    pub severity: String,
    pub subject: String,
    pub message: serde_json::Value,
    pub attributes: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// Failed publish attempts so far.
    pub attempts: u32,
    pub published_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl OutboxAlert {
    /// `alert` as the outbox would hold it, without being stored (id 0): for publishing
    /// when the store is what failed.
    pub fn unsaved(alert: NewAlert, now: DateTime<Utc>) -> OutboxAlert {
        OutboxAlert {
            id: 0,
            dedupe_key: alert.dedupe_key,
            kind: alert.kind,
            severity: alert.severity,
            subject: alert.subject,
            message: alert.message,
            attributes: alert.attributes,
            created_at: now,
            next_attempt_at: now,
            attempts: 0,
            published_at: None,
            last_error: None,
        }
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<OutboxAlert> {
    Ok(OutboxAlert {
        id: row.get(0)?,
        dedupe_key: row.get(1)?,
        kind: row.get(2)?,
        severity: row.get(3)?,
        subject: row.get(4)?,
        message: row.get::<_, Json<_>>(5)?.0,
        attributes: row.get::<_, Json<_>>(6)?.0,
        created_at: row.get::<_, Ts>(7)?.0,
        next_attempt_at: row.get::<_, Ts>(8)?.0,
        attempts: row.get(9)?,
        published_at: row.get::<_, Option<Ts>>(10)?.map(|t| t.0),
        last_error: row.get(11)?,
    })
}

impl Db<'_> {
    /// Puts an alert in the outbox, due immediately; returns its id. Does not
    /// consult or update `alert_dedupe`: see [`Db::enqueue_alert_deduped`].
    pub fn enqueue_alert(self, alert: &NewAlert, now: DateTime<Utc>) -> StoreResult<i64> {
        let message = to_json("alert message", &alert.message)?;
        let attributes = to_json("alert attributes", &alert.attributes)?;
        self.conn
            .execute(
                "INSERT INTO alert_outbox (dedupe_key, kind, severity, subject, message, \
                                           attributes, created_at, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    alert.dedupe_key,
                    alert.kind,
                    alert.severity,
                    alert.subject,
                    message,
                    attributes,
                    ts(now),
                ],
            )
            .map_err(query("queue an alert"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Queues `alert` unless its dedupe key was alerted less than `realert`
    /// ago; returns the outbox id, or `None` when held back. The check, the
    /// outbox insert and the dedupe record commit together (as a savepoint
    /// when called inside [`super::Store::transaction`]), so an alert is never
    /// recorded as sent without being queued.
    pub fn enqueue_alert_deduped(
        self,
        alert: &NewAlert,
        now: DateTime<Utc>,
        realert: TimeDelta,
    ) -> StoreResult<Option<i64>> {
        self.atomic("queue a deduplicated alert", || {
            if !self.should_alert(&alert.dedupe_key, now, realert)? {
                return Ok(None);
            }
            let id = self.enqueue_alert(alert, now)?;
            self.record_alerted(&alert.dedupe_key, now)?;
            // The history shows every alert raised, with the same hash chain as the rest.
            self.append_audit(&super::NewAuditEntry {
                at: now,
                actor: "rotationd".into(),
                action: super::audit::Action::Alert,
                secret: alert
                    .attributes
                    .get("secret")
                    .filter(|s| s.as_str() != "-")
                    .cloned(),
                ticket: alert.message["ticket"].as_str().map(str::to_string),
                reason: Some(alert.subject.clone()),
                outcome: super::audit::Outcome::Alert(alert.kind.clone()),
                detail: Some(serde_json::json!({
                    "alert": id,
                    "severity": alert.severity,
                    "dedupe_key": alert.dedupe_key,
                    "dependent": alert.attributes.get("dependent"),
                })),
            })?;
            Ok(Some(id))
        })
    }

    /// Whether `dedupe_key` may alert again at `now`: never alerted, or last
    /// alerted at least `realert` ago. A last-alerted time in the future
    /// (the clock stepped back) allows the alert, so a clock jump cannot
    /// silence alerts for as long as the jump.
    pub fn should_alert(
        self,
        dedupe_key: &str,
        now: DateTime<Utc>,
        realert: TimeDelta,
    ) -> StoreResult<bool> {
        let last = self
            .conn
            .query_row(
                "SELECT last_alerted_at FROM alert_dedupe WHERE dedupe_key = ?1",
                [dedupe_key],
                |row| row.get::<_, Ts>(0),
            )
            .optional()
            .map_err(query("look up when an alert last went out"))?;
        Ok(match last {
            None => true,
            Some(Ts(last)) => {
                let elapsed = now.signed_duration_since(last);
                elapsed < TimeDelta::zero() || elapsed >= realert
            }
        })
    }

    /// Notes that `dedupe_key` alerted at `now`.
    pub fn record_alerted(self, dedupe_key: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.conn
            .execute(
                "INSERT INTO alert_dedupe (dedupe_key, last_alerted_at) VALUES (?1, ?2) \
                 ON CONFLICT (dedupe_key) DO UPDATE SET last_alerted_at = excluded.last_alerted_at",
                params![dedupe_key, ts(now)],
            )
            .map_err(query("record that an alert went out"))?;
        Ok(())
    }

    /// Unpublished alerts whose next attempt is due, oldest first.
    pub fn due_alerts(self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<OutboxAlert>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, dedupe_key, kind, severity, subject, message, attributes, created_at, \
                        next_attempt_at, attempts, published_at, last_error \
                 FROM alert_outbox \
                 WHERE published_at IS NULL AND next_attempt_at <= ?1 \
                 ORDER BY created_at, id LIMIT ?2",
            )
            .map_err(query("list due alerts"))?;
        stmt.query_map(params![ts(now), limit], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("list due alerts"))
    }

    /// Claims a due alert for one publisher until `until`: another process (the daemon and
    /// a `rotationd rotate` both publish from the same outbox) then skips it. `false`
    /// when someone else claimed or published it first. A publisher that dies holding the
    /// claim leaves the alert due again at `until`: at least once, never lost.
    pub fn claim_alert(
        self,
        id: i64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let changed = self
            .conn
            .execute(
                "UPDATE alert_outbox SET next_attempt_at = ?1 \
                 WHERE id = ?2 AND published_at IS NULL AND next_attempt_at <= ?3",
                params![ts(until), id, ts(now)],
            )
            .map_err(query("claim an alert for publishing"))?;
        Ok(changed == 1)
    }

    /// Marks an alert published. Publishing twice keeps the first time.
    pub fn mark_alert_published(self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE alert_outbox SET published_at = COALESCE(published_at, ?1) WHERE id = ?2",
                params![ts(now), id],
            )
            .map_err(query("mark an alert published"))?;
        alert_changed(id, changed)
    }

    /// Records a failed publish and when to try again; the caller picks
    /// `next_attempt_at` (backoff) from the alert's `attempts`. Ignored for
    /// an alert that was published meanwhile.
    pub fn mark_alert_failed(
        self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE alert_outbox SET \
                     attempts = attempts + CASE WHEN published_at IS NULL THEN 1 ELSE 0 END, \
                     next_attempt_at = CASE WHEN published_at IS NULL THEN ?1 \
                                            ELSE next_attempt_at END, \
                     last_error = CASE WHEN published_at IS NULL THEN ?2 ELSE last_error END \
                 WHERE id = ?3",
                params![ts(next_attempt_at), error, id],
            )
            .map_err(query("record a failed alert publish"))?;
        alert_changed(id, changed)
    }

    pub fn unpublished_alert_count(self) -> StoreResult<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM alert_outbox WHERE published_at IS NULL",
                [],
                |row| row.get(0),
            )
            .map(count)
            .map_err(query("count unpublished alerts"))
    }

    /// Deletes alerts published before `cutoff`; returns how many.
    pub fn prune_published_alerts(self, cutoff: DateTime<Utc>) -> StoreResult<usize> {
        self.conn
            .execute(
                "DELETE FROM alert_outbox WHERE published_at IS NOT NULL AND published_at < ?1",
                [ts(cutoff)],
            )
            .map_err(query("prune published alerts"))
    }
}

fn alert_changed(id: i64, changed: usize) -> StoreResult<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            what: "alert",
            id: id.to_string(),
        })
    }
}
