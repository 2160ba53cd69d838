//! `requests` (CommandBridge's rotation and rollback requests and where each stands) and
//! `bus_outbox` (the `Rotation Request Updated` events that answer them, published to
//! EventBridge with retries, like the alert outbox).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Db, StoreResult, Ts, query, text_enum, ts};

text_enum! {
    /// Where a request stands. Terminal: `denied`, `expired`, `refused`, `completed`,
    /// `failed`.
    pub enum RequestState ("request state") {
        /// An L1/L2 request waiting for an L3 approval.
        AwaitingApproval => "awaiting_approval",
        /// Allowed (by an L3 requester or an approval) and handed to the executor: a
        /// rotation trigger, or a rollback for the request loop.
        Executing => "executing",
        Denied => "denied",
        Expired => "expired",
        /// Not allowed at all (ticket, level, unknown secret); the reason says why.
        Refused => "refused",
        Completed => "completed",
        Failed => "failed",
    }
}

impl RequestState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::AwaitingApproval | Self::Executing)
    }
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    /// `rotate` or `rollback`.
    pub kind: String,
    pub secret: String,
    pub ticket: Option<String>,
    pub reason: String,
    pub requester: String,
    /// The level `[requests] levels` gives the requester.
    pub level: String,
    /// The level the event claimed (recorded, never trusted).
    pub claimed_level: Option<String>,
    pub emergency: bool,
    pub state: RequestState,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The approver's comment, or why it was refused, denied or expired.
    pub comment: Option<String>,
    pub trigger_id: Option<i64>,
    pub reminded_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, kind, secret, ticket, reason, requester, level, claimed_level, \
                       emergency, state, created_at, expires_at, decided_by, decided_at, \
                       comment, trigger_id, reminded_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: row.get(0)?,
        kind: row.get(1)?,
        secret: row.get(2)?,
        ticket: row.get(3)?,
        reason: row.get(4)?,
        requester: row.get(5)?,
        level: row.get(6)?,
        claimed_level: row.get(7)?,
        emergency: row.get(8)?,
        state: row.get(9)?,
        created_at: row.get::<_, Ts>(10)?.0,
        expires_at: row.get::<_, Option<Ts>>(11)?.map(|t| t.0),
        decided_by: row.get(12)?,
        decided_at: row.get::<_, Option<Ts>>(13)?.map(|t| t.0),
        comment: row.get(14)?,
        trigger_id: row.get(15)?,
        reminded_at: row.get::<_, Option<Ts>>(16)?.map(|t| t.0),
        updated_at: row.get::<_, Ts>(17)?.0,
    })
}

/// A `Rotation Request Updated` event waiting to be put on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusUpdate {
    pub id: i64,
    pub detail_type: String,
    pub detail: serde_json::Value,
    pub attempts: u32,
}

impl Db<'_> {
    /// Records a new request; false when its id is already known (nothing written).
    pub fn insert_request(self, r: &Request) -> StoreResult<bool> {
        let n = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO requests ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                params![
                    r.id,
                    r.kind,
                    r.secret,
                    r.ticket,
                    r.reason,
                    r.requester,
                    r.level,
                    r.claimed_level,
                    r.emergency,
                    r.state,
                    ts(r.created_at),
                    r.expires_at.map(ts),
                    r.decided_by,
                    r.decided_at.map(ts),
                    r.comment,
                    r.trigger_id,
                    r.reminded_at.map(ts),
                    ts(r.updated_at),
                ],
            )
            .map_err(query("record a request"))?;
        Ok(n == 1)
    }

    pub fn get_request(self, id: &str) -> StoreResult<Option<Request>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(query("read a request"))
    }

    /// Moves request `id` from `from` to `to`; false (nothing written) when it is not in
    /// `from` any more, so two deciders cannot both move it.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_request(
        self,
        id: &str,
        from: RequestState,
        to: RequestState,
        decided_by: Option<&str>,
        comment: Option<&str>,
        trigger_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE requests SET state = ?1, decided_by = COALESCE(?2, decided_by), \
                     decided_at = CASE WHEN ?2 IS NULL THEN decided_at ELSE ?3 END, \
                     comment = COALESCE(?4, comment), trigger_id = COALESCE(?5, trigger_id), \
                     updated_at = ?3 \
                 WHERE id = ?6 AND state = ?7",
                params![to, decided_by, ts(now), comment, trigger_id, id, from],
            )
            .map_err(query("decide a request"))?;
        Ok(n == 1)
    }

    pub fn mark_request_reminded(self, id: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.conn
            .execute(
                "UPDATE requests SET reminded_at = ?1, updated_at = ?1 WHERE id = ?2",
                params![ts(now), id],
            )
            .map_err(query("mark a request reminded"))?;
        Ok(())
    }

    /// Requests awaiting approval, soonest expiry first.
    pub fn awaiting_requests(self) -> StoreResult<Vec<Request>> {
        self.requests_where(
            "WHERE state = 'awaiting_approval' ORDER BY expires_at, rowid",
            [],
        )
    }

    /// Every request created before `to` that led to a trigger: who asked for a
    /// rotation and who approved it (`rotationd report`).
    pub fn requests_with_triggers_before(self, to: DateTime<Utc>) -> StoreResult<Vec<Request>> {
        self.requests_where(
            "WHERE trigger_id IS NOT NULL AND created_at < ?1 ORDER BY created_at, rowid",
            [ts(to)],
        )
    }

    /// Open requests (awaiting approval or executing), oldest first: `rotationd requests`.
    pub fn open_requests(self) -> StoreResult<Vec<Request>> {
        self.requests_where(
            "WHERE state IN ('awaiting_approval', 'executing') ORDER BY created_at, rowid",
            [],
        )
    }

    /// Approved rollbacks the request loop has to carry out.
    pub fn executing_rollbacks(self) -> StoreResult<Vec<Request>> {
        self.requests_where(
            "WHERE state = 'executing' AND kind = 'rollback' ORDER BY created_at, rowid",
            [],
        )
    }

    /// Whether trigger `trigger_id` is an emergency request's rotation.
    pub fn is_emergency_request_trigger(self, trigger_id: i64) -> StoreResult<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM requests WHERE trigger_id = ?1 AND emergency = 1)",
                [trigger_id],
                |r| r.get(0),
            )
            .map_err(query("look up a request's trigger"))
    }

    /// Executing rotation requests served by attempt `attempt_id` (through their trigger).
    pub fn requests_of_attempt(self, attempt_id: &str) -> StoreResult<Vec<Request>> {
        self.requests_where(
            "WHERE state = 'executing' AND trigger_id IN \
                 (SELECT id FROM triggers WHERE attempt_id = ?1) ORDER BY rowid",
            [attempt_id],
        )
    }

    /// Executing rotation requests whose trigger ended without an attempt of its own (for
    /// example cancelled): they would otherwise wait forever.
    pub fn requests_with_finished_triggers(self) -> StoreResult<Vec<(Request, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {}, t.status FROM requests r JOIN triggers t ON t.id = r.trigger_id \
                 WHERE r.state = 'executing' AND t.status IN ('done', 'failed', 'cancelled') \
                 ORDER BY r.rowid",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("r.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .map_err(query("list requests with finished triggers"))?;
        stmt.query_map([], |row| Ok((from_row(row)?, row.get::<_, String>(18)?)))
            .and_then(|rows| rows.collect())
            .map_err(query("list requests with finished triggers"))
    }

    fn requests_where(
        self,
        clause: &str,
        params: impl rusqlite::Params,
    ) -> StoreResult<Vec<Request>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM requests {clause}"))
            .map_err(query("list requests"))?;
        stmt.query_map(params, from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("list requests"))
    }

    /// Queues a bus event; it goes out in order with retries.
    pub fn enqueue_bus_update(
        self,
        detail_type: &str,
        detail: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        self.conn
            .execute(
                "INSERT INTO bus_outbox (detail_type, detail, created_at, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?3)",
                params![detail_type, detail.to_string(), ts(now)],
            )
            .map_err(query("queue a bus event"))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn due_bus_updates(self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<BusUpdate>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, detail_type, detail, attempts FROM bus_outbox \
                 WHERE published_at IS NULL AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(query("list due bus events"))?;
        stmt.query_map(params![ts(now), limit], |row| {
            let detail: String = row.get(2)?;
            Ok(BusUpdate {
                id: row.get(0)?,
                detail_type: row.get(1)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                attempts: row.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(query("list due bus events"))
    }

    pub fn mark_bus_published(self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        self.conn
            .execute(
                "UPDATE bus_outbox SET published_at = ?1 WHERE id = ?2",
                params![ts(now), id],
            )
            .map_err(query("mark a bus event published"))?;
        Ok(())
    }

    pub fn mark_bus_failed(self, id: i64, error: &str, next: DateTime<Utc>) -> StoreResult<()> {
        self.conn
            .execute(
                "UPDATE bus_outbox SET attempts = attempts + 1, last_error = ?1, \
                     next_attempt_at = ?2 WHERE id = ?3",
                params![error, ts(next), id],
            )
            .map_err(query("mark a bus event failed"))?;
        Ok(())
    }
}
