//! Bounded growth: what the daemon's upkeep loop prunes and compacts, so that neither a
//! long life nor a flood of garbage on the events queue fills the state disk.
//!
//! * `seen_events` (the dedupe memory of events) and published alerts are deleted once
//!   older than `[state] retention` (30 days by default: longer than SQS keeps a message,
//!   14 days at most, and than the CloudTrail catch-up looks back, so a redelivery is
//!   still recognised).
//! * The audit log keeps `[state] audit_retention` (400 days by default, a year of
//!   evidence and a quarter to spare). Older rows are pruned below a **checkpoint**:
//!   the id and hash of the last pruned row, recorded (append-only) before the rows go, so
//!   `verify` goes on from it and the remaining chain still proves itself. The schema
//!   allows deleting audit rows only at or below the newest checkpoint.
//! * Rejected deliveries: the first [`INDIVIDUAL_REJECTIONS`] per reason, source and
//!   minute are audited one by one (with their delivery id, so a redelivery is one);
//!   the rest of that minute only count up a tally row, written to the audit log as one
//!   `event_rejected`/`aggregated` row once the minute is over. A garbage flood thus
//!   writes a few rows a minute, not one per message. A redelivery of a tallied message
//!   is recognised by the event sink's bounded memory of recent delivery ids
//!   (`events::RecentDeliveries`), not durably: after a restart it may count twice.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, params};

use super::audit::{Action, NewAuditEntry, Outcome};
use super::{Db, StoreResult, count, query, ts};

/// How many rejections per reason, source and minute are audited one by one.
pub const INDIVIDUAL_REJECTIONS: u64 = 10;

/// What one [`Db::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub seen_events: u64,
    pub alerts: u64,
    pub audit: u64,
    /// Identity Center users not seen in the Identity Store for `retention`.
    pub directory_users: u64,
}

/// The newest audit checkpoint: rows up to `upto_id` were pruned, the last of them had
/// `upto_hash`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditCheckpoint {
    pub upto_id: i64,
    pub upto_hash: String,
}

fn minute_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

impl Db<'_> {
    /// Counts one rejected delivery for `reason` from `source` in `now`'s minute and
    /// returns the minute's count so far (1 for the first).
    pub fn tally_rejection(
        self,
        reason: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let n: i64 = self
            .conn
            .query_row(
                "INSERT INTO rejection_tallies (reason, source, minute, count) VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (reason, source, minute) DO UPDATE SET count = count + 1 \
                 RETURNING count",
                params![reason, source, minute_of(now)],
                |r| r.get(0),
            )
            .map_err(query("count a rejected event"))?;
        Ok(count(n))
    }

    /// Writes one aggregate audit row for every minute before `now`'s that had more than
    /// [`INDIVIDUAL_REJECTIONS`] rejections of a reason, and forgets those minutes'
    /// tallies. Returns how many aggregate rows were written.
    pub fn flush_rejection_tallies(self, now: DateTime<Utc>) -> StoreResult<u64> {
        let op = "flush the rejection tallies";
        self.atomic(op, || {
            let current = minute_of(now);
            let over: Vec<(String, String, i64, i64)> = self
                .conn
                .prepare(
                    "SELECT reason, source, minute, count FROM rejection_tallies \
                     WHERE minute < ?1 AND count > ?2 ORDER BY minute, reason, source",
                )
                .and_then(|mut s| {
                    s.query_map(
                        params![current, INDIVIDUAL_REJECTIONS as i64],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )?
                    .collect()
                })
                .map_err(query(op))?;
            for (reason, source, minute, n) in &over {
                let from = DateTime::from_timestamp(minute * 60, 0).unwrap_or(now);
                let beyond = n - INDIVIDUAL_REJECTIONS as i64;
                self.append_audit(&NewAuditEntry {
                    at: now,
                    actor: format!("event:{source}"),
                    action: Action::EventRejected,
                    secret: None,
                    ticket: None,
                    reason: Some(format!(
                        "{beyond} more deliveries rejected as {reason} in the minute from {} (the first {INDIVIDUAL_REJECTIONS} are audited one by one)",
                        from.format(crate::clock::TIME_FORMAT)
                    )),
                    outcome: Outcome::Aggregated,
                    detail: Some(serde_json::json!({
                        "reason": reason,
                        "source": source,
                        "minute": from.format(crate::clock::TIME_FORMAT).to_string(),
                        "count": beyond,
                        "total_in_minute": n,
                    })),
                })?;
            }
            self.conn
                .execute(
                    "DELETE FROM rejection_tallies WHERE minute < ?1",
                    [current],
                )
                .map_err(query(op))?;
            Ok(over.len() as u64)
        })
    }

    /// Deletes seen events and published alerts older than `retention`, and the audit
    /// rows older than `audit_retention` below a new checkpoint (see the module doc). One
    /// transaction; the audit pruning is itself audited (`state`/`pruned`).
    pub fn prune(
        self,
        now: DateTime<Utc>,
        retention: TimeDelta,
        audit_retention: TimeDelta,
    ) -> StoreResult<Pruned> {
        let op = "prune the state database";
        self.atomic(op, || {
            let cutoff = ts(now - retention);
            let seen_events = self
                .conn
                .execute("DELETE FROM seen_events WHERE first_seen_at < ?1", [cutoff])
                .map_err(query(op))? as u64;
            let alerts = self
                .conn
                .execute(
                    "DELETE FROM alert_outbox WHERE published_at IS NOT NULL AND published_at < ?1",
                    [cutoff],
                )
                .map_err(query(op))? as u64;
            let directory_users = self
                .conn
                .execute("DELETE FROM directory_users WHERE seen_at < ?1", [cutoff])
                .map_err(query(op))? as u64;
            let floor = self.audit_checkpoint()?.map_or(0, |c| c.upto_id);
            // The newest row old enough; everything up to it goes (ids grow with time).
            let last: Option<(i64, String)> = self
                .conn
                .query_row(
                    "SELECT id, hash FROM audit WHERE id > ?1 AND at < ?2 AND hash IS NOT NULL \
                     ORDER BY id DESC LIMIT 1",
                    params![floor, ts(now - audit_retention)],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(query(op))?;
            let mut audit = 0;
            if let Some((upto_id, upto_hash)) = last {
                let rows: i64 = self
                    .conn
                    .query_row(
                        "SELECT COUNT(*) FROM audit WHERE id > ?1 AND id <= ?2",
                        [floor, upto_id],
                        |r| r.get(0),
                    )
                    .map_err(query(op))?;
                self.conn
                    .execute(
                        "INSERT INTO audit_checkpoints (upto_id, upto_hash, pruned, at) VALUES (?1, ?2, ?3, ?4)",
                        params![upto_id, upto_hash, rows, ts(now)],
                    )
                    .map_err(query(op))?;
                audit = self
                    .conn
                    .execute("DELETE FROM audit WHERE id <= ?1", [upto_id])
                    .map_err(query(op))? as u64;
                self.append_audit(&NewAuditEntry {
                    at: now,
                    actor: "rotationd".into(),
                    action: Action::State,
                    secret: None,
                    ticket: None,
                    reason: Some(format!(
                        "audit entries up to {upto_id} pruned after [state] audit_retention"
                    )),
                    outcome: Outcome::Pruned,
                    detail: Some(serde_json::json!({
                        "upto_id": upto_id,
                        "upto_hash": upto_hash,
                        "audit_rows": audit,
                        "seen_events": seen_events,
                        "alerts": alerts,
                    })),
                })?;
            }
            Ok(Pruned {
                seen_events,
                alerts,
                audit,
                directory_users,
            })
        })
    }

    /// The newest checkpoint, if the audit log was ever pruned.
    pub fn audit_checkpoint(self) -> StoreResult<Option<AuditCheckpoint>> {
        self.conn
            .query_row(
                "SELECT upto_id, upto_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(AuditCheckpoint {
                        upto_id: r.get(0)?,
                        upto_hash: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(query("read the audit checkpoint"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn entry(at: DateTime<Utc>, n: u32) -> NewAuditEntry {
        NewAuditEntry {
            at,
            actor: "test".into(),
            action: Action::Rotate,
            secret: Some(format!("db/{n}")),
            ticket: None,
            reason: None,
            outcome: Outcome::Ok,
            detail: None,
        }
    }

    fn t(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + day * 86_400, 0).unwrap()
    }

    #[test]
    fn pruning_keeps_the_remaining_chain_verifiable_from_its_checkpoint() {
        let store = Store::open_in_memory().unwrap();
        let db = store.db();
        for day in 0..10 {
            db.append_audit(&entry(t(day), day as u32)).unwrap();
            db.mark_event_seen(&format!("ev-{day}"), "sqs", t(day))
                .unwrap();
        }
        let pruned = db
            .prune(t(10), TimeDelta::days(3), TimeDelta::days(5))
            .unwrap();
        // Audit rows of days 0..=4 (older than 5 days at day 10), events of days 0..=6.
        assert_eq!(
            pruned,
            Pruned {
                seen_events: 7,
                alerts: 0,
                audit: 5,
                directory_users: 0,
            }
        );
        let cp = db.audit_checkpoint().unwrap().unwrap();
        assert_eq!(cp.upto_id, 5);
        let v = db.verify_audit().unwrap();
        assert!(v.is_intact(), "{v:?}");
        assert_eq!(v.from_checkpoint, Some(5));
        // Days 5..=9 and the pruning's own entry.
        assert_eq!(v.checked, 6);
        let actions: Vec<String> = db
            .audit_entries(None, 1)
            .unwrap()
            .into_iter()
            .map(|e| format!("{}/{}", e.action, e.outcome))
            .collect();
        assert_eq!(actions, ["state/pruned"]);
        // Nothing more is old enough: a second pass removes nothing.
        assert_eq!(
            db.prune(t(10), TimeDelta::days(3), TimeDelta::days(5))
                .unwrap(),
            Pruned::default()
        );
    }

    #[test]
    fn rows_above_the_checkpoint_stay_append_only_and_a_forged_gap_is_found() {
        let store = Store::open_in_memory().unwrap();
        let db = store.db();
        for day in 0..4 {
            db.append_audit(&entry(t(day), day as u32)).unwrap();
        }
        db.prune(t(4), TimeDelta::days(30), TimeDelta::days(2))
            .unwrap();
        let err = store
            .conn
            .execute("DELETE FROM audit WHERE id = 4", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = store
            .conn
            .execute("DELETE FROM audit_checkpoints", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        // A checkpoint naming no real row (or not above the last one) is refused.
        for (id, hash) in [(3, "forged".to_owned()), (3, row_hash(&store, 4))] {
            let err = store
                .conn
                .execute(
                    "INSERT INTO audit_checkpoints (upto_id, upto_hash, pruned, at) VALUES (?1, ?2, 1, 0)",
                    rusqlite::params![id, hash],
                )
                .unwrap_err();
            assert!(err.to_string().contains("must name an existing"), "{err}");
        }
        // REPLACE onto the real checkpoint would rewrite it without a delete trigger.
        let err = store
            .conn
            .execute(
                "INSERT OR REPLACE INTO audit_checkpoints (id, upto_id, upto_hash, pruned, at) \
                 SELECT id, 3, (SELECT hash FROM audit WHERE id = 3), pruned, at FROM audit_checkpoints",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        // Forged with the real hash of the row to delete: the schema lets it through, but
        // no chained `state`/`pruned` entry records it, and verify says so.
        assert!(db.verify_audit().unwrap().is_intact());
        store
            .conn
            .execute(
                "INSERT INTO audit_checkpoints (upto_id, upto_hash, pruned, at) VALUES (3, ?1, 1, 0)",
                [row_hash(&store, 3)],
            )
            .unwrap();
        store
            .conn
            .execute("DELETE FROM audit WHERE id = 3", [])
            .unwrap();
        let v = db.verify_audit().unwrap();
        assert_eq!(
            v.broken,
            Some(crate::store::AuditBreak {
                id: 3,
                fault: crate::store::AuditFault::CheckpointUnvouched
            }),
            "{v:?}"
        );
    }

    fn row_hash(store: &Store, id: i64) -> String {
        store
            .conn
            .query_row("SELECT hash FROM audit WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_flood_of_rejections_is_audited_as_a_few_rows_and_one_aggregate_per_minute() {
        let store = Store::open_in_memory().unwrap();
        let db = store.db();
        let minute = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let counts: Vec<u64> = (0..25)
            .map(|i| {
                db.tally_rejection("malformed", "sqs", minute + TimeDelta::seconds(i))
                    .unwrap()
            })
            .collect();
        assert_eq!(counts, (1..=25).collect::<Vec<u64>>());
        db.tally_rejection("unknown_kind", "sqs", minute).unwrap();
        // Not before the minute is over.
        assert_eq!(
            db.flush_rejection_tallies(minute + TimeDelta::seconds(59))
                .unwrap(),
            0
        );
        assert_eq!(
            db.flush_rejection_tallies(minute + TimeDelta::seconds(60))
                .unwrap(),
            1
        );
        let e = &db.audit_entries(None, 10).unwrap()[0];
        assert_eq!(
            (e.action.as_str(), e.outcome.as_str()),
            ("event_rejected", "aggregated")
        );
        let d = e.detail.as_ref().unwrap();
        assert_eq!(
            (d["reason"].as_str(), d["count"].as_i64()),
            (Some("malformed"), Some(15))
        );
        // Flushed minutes are forgotten; a new minute counts from 1 again.
        assert_eq!(
            db.flush_rejection_tallies(minute + TimeDelta::seconds(120))
                .unwrap(),
            0
        );
        assert_eq!(
            db.tally_rejection("malformed", "sqs", minute + TimeDelta::seconds(130))
                .unwrap(),
            1
        );
    }
}
