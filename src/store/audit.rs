//! `audit`: the append-only record of what rotationd and its operators did.

use chrono::{DateTime, Utc};
use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};

use super::{Db, Json, StoreResult, Ts, query, to_json, ts};

/// An audit record to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub at: DateTime<Utc>,
    /// Who acted: `rotationd`, `cli:alice`, ...
    pub actor: String,
    /// What was done: `rotate`, `rollback`, `event_rejected`, ...
    pub action: String,
    pub secret: Option<String>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    /// How it ended: `ok`, `failed`, `refused`, `rejected`, ...
    pub outcome: String,
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
    })
}

impl Db<'_> {
    /// Appends a record and returns its id. Rows can never be changed or
    /// removed afterwards (SQL triggers abort any UPDATE or DELETE).
    pub fn append_audit(self, e: &NewAuditEntry) -> StoreResult<i64> {
        let detail = e
            .detail
            .as_ref()
            .map(|d| to_json("audit detail", d))
            .transpose()?;
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
                    e.outcome,
                    detail,
                ],
            )
            .map_err(query("append to the audit log"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Up to `limit` records, newest first, optionally only for `secret`.
    pub fn audit_entries(self, secret: Option<&str>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, at, actor, action, secret, ticket, reason, outcome, detail \
                 FROM audit WHERE (?1 IS NULL OR secret = ?1) \
                 ORDER BY at DESC, id DESC LIMIT ?2",
            )
            .map_err(query("read the audit log"))?;
        stmt.query_map(params![secret, limit], from_row)
            .and_then(|rows| rows.collect())
            .map_err(query("read the audit log"))
    }
}
