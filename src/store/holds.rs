//! `holds`: secrets held after a failure, until someone has looked (the guide's
//! "investigate before re-attempting").
//!
//! A hold names the attempt that put it there and why. While a secret is held, no planned,
//! overdue or first rotation of it starts (the executor defers them); a departure, a
//! compromise, an operator's rotation, an approved request and the one automatic retry of
//! `[events] retry_failed` still run. A rotation of the secret that fails while it is held
//! counts as a further failure of the same hold. The hold is lifted by
//! `rotationd resume --secret` or by a rotation of the secret that succeeds.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::{Db, StoreResult, Ts, query, ts};

/// One held secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub secret: String,
    /// The attempt whose end placed (or last renewed) the hold: a rotationd attempt id, or
    /// `event-ID` for a rotation Secrets Manager ran on its own.
    pub attempt_id: String,
    pub reason: String,
    pub held_at: DateTime<Utc>,
    /// How many failures the hold has seen (a second one while held: a departure's or a
    /// compromise's rotation that failed too).
    pub failures: u32,
}

const COLUMNS: &str = "secret, attempt_id, reason, held_at, failures";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Hold> {
    Ok(Hold {
        secret: row.get(0)?,
        attempt_id: row.get(1)?,
        reason: row.get(2)?,
        held_at: row.get::<_, Ts>(3)?.0,
        failures: row.get(4)?,
    })
}

impl Db<'_> {
    /// Holds `secret` because `attempt_id` ended as `reason`; returns the hold as stored.
    /// On a secret already held, a different attempt counts as one more failure (the
    /// first hold's time stays); the same attempt again (a crash recovery finishing it a
    /// second time) changes nothing.
    pub fn place_hold(
        self,
        secret: &str,
        attempt_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Hold> {
        self.conn
            .execute(
                "INSERT INTO holds (secret, attempt_id, reason, held_at, failures, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 1, ?4) \
                 ON CONFLICT (secret) DO UPDATE SET \
                   failures = failures + 1, attempt_id = excluded.attempt_id, \
                   reason = excluded.reason, updated_at = excluded.updated_at \
                 WHERE attempt_id != excluded.attempt_id",
                params![secret, attempt_id, reason, ts(now)],
            )
            .map_err(query("hold a secret"))?;
        self.hold(secret)?
            .ok_or_else(|| query("hold a secret")(rusqlite::Error::QueryReturnedNoRows))
    }

    /// [`Db::place_hold`], audited (`hold`/`held`): the one place a hold is written, for
    /// an attempt's end, a Secrets Manager rotation that failed or was abandoned, and a
    /// rollback. The same attempt again writes nothing.
    pub fn hold_audited(
        self,
        secret: &str,
        attempt_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Hold> {
        if let Some(h) = self.hold(secret)?.filter(|h| h.attempt_id == attempt_id) {
            return Ok(h);
        }
        let h = self.place_hold(secret, attempt_id, reason, now)?;
        self.append_audit(&super::NewAuditEntry {
            at: now,
            actor: "rotationd".into(),
            action: super::audit::Action::Hold,
            secret: Some(secret.to_string()),
            ticket: None,
            reason: Some(reason.to_string()),
            outcome: super::audit::Outcome::Held,
            detail: Some(serde_json::json!({
                "attempt": attempt_id,
                "held_since": h.held_at.to_rfc3339(),
                "failures": h.failures,
            })),
        })?;
        Ok(h)
    }

    /// Lifts the hold on `secret`; returns it, or `None` if it was not held.
    pub fn lift_hold(self, secret: &str) -> StoreResult<Option<Hold>> {
        let hold = self.hold(secret)?;
        if hold.is_some() {
            self.conn
                .execute("DELETE FROM holds WHERE secret = ?1", [secret])
                .map_err(query("lift a hold"))?;
        }
        Ok(hold)
    }

    /// [`Db::lift_hold`], audited (`hold`/`resumed`) with who lifted it and why; returns
    /// the lifted hold, or `None` (and audits nothing) if `secret` was not held.
    pub fn lift_hold_audited(
        self,
        secret: &str,
        actor: &str,
        ticket: Option<&str>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Hold>> {
        let Some(h) = self.lift_hold(secret)? else {
            return Ok(None);
        };
        self.append_audit(&super::NewAuditEntry {
            at: now,
            actor: actor.to_string(),
            action: super::audit::Action::Hold,
            secret: Some(secret.to_string()),
            ticket: ticket.map(str::to_string),
            reason: Some(reason.to_string()),
            outcome: super::audit::Outcome::Resumed,
            detail: Some(serde_json::json!({
                "held_since": h.held_at.to_rfc3339(),
                "held_by_attempt": h.attempt_id,
                "hold_reason": h.reason,
                "failures": h.failures,
            })),
        })?;
        Ok(Some(h))
    }

    pub fn hold(self, secret: &str) -> StoreResult<Option<Hold>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM holds WHERE secret = ?1"),
                [secret],
                from_row,
            )
            .optional()
            .map_err(query("read a hold"))
    }

    /// Every held secret, oldest hold first.
    pub fn holds(self) -> StoreResult<Vec<Hold>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM holds ORDER BY held_at, id"))
            .map_err(query("list holds"))?;
        stmt.query_map([], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("list holds"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use crate::store::Store;

    #[test]
    fn a_hold_counts_each_failing_attempt_once_and_lifting_removes_it() {
        let store = Store::open_in_memory().unwrap();
        let db = store.db();
        let t0 = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap();
        let t1 = t0 + chrono::Duration::hours(2);
        assert_eq!(db.hold("prod/db").unwrap(), None);

        let h = db
            .place_hold("prod/db", "a1", "failed: setSecret", t0)
            .unwrap();
        assert_eq!(
            (h.failures, h.attempt_id.as_str(), h.held_at),
            (1, "a1", t0)
        );
        // The same attempt finished again (crash recovery): no second failure.
        let h = db
            .place_hold("prod/db", "a1", "failed: setSecret", t1)
            .unwrap();
        assert_eq!(h.failures, 1);
        // Another attempt failing while held: the second failure, the first hold's time.
        let h = db
            .place_hold("prod/db", "a2", "failed: RotateSecret", t1)
            .unwrap();
        assert_eq!(
            (h.failures, h.attempt_id.as_str(), h.held_at),
            (2, "a2", t0)
        );
        assert_eq!(h.reason, "failed: RotateSecret");
        db.place_hold("prod/other", "b1", "stuck", t1).unwrap();
        let all: Vec<String> = db.holds().unwrap().into_iter().map(|h| h.secret).collect();
        assert_eq!(all, ["prod/db", "prod/other"]);

        assert_eq!(
            db.lift_hold("prod/db").unwrap().map(|h| h.failures),
            Some(2)
        );
        assert_eq!(db.lift_hold("prod/db").unwrap(), None);
        assert_eq!(db.hold("prod/db").unwrap(), None);
        // Held again afresh after a lift.
        let h = db.place_hold("prod/db", "a3", "stuck", t1).unwrap();
        assert_eq!((h.failures, h.held_at), (1, t1));
    }
}
