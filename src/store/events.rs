//! `seen_events` (which external events were already handled) and `cursors`
//! (where each event reader left off).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Db, StoreResult, Ts, query, ts};

/// A reader's saved position, e.g. the last CloudTrail lookup time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub name: String,
    pub value: String,
    pub updated_at: DateTime<Utc>,
}

impl Db<'_> {
    /// Records that event `event_id` was handled; `true` the first time,
    /// `false` for a redelivery. Do it in the same transaction as the work
    /// the event caused, so a crash cannot mark an event seen whose effect
    /// was lost (or act twice on one whose mark was lost).
    pub fn mark_event_seen(
        self,
        event_id: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let inserted = self
            .conn
            .execute(
                "INSERT INTO seen_events (event_id, source, first_seen_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (event_id) DO NOTHING",
                params![event_id, source, ts(now)],
            )
            .map_err(query("record a seen event"))?;
        Ok(inserted == 1)
    }

    pub fn is_event_seen(self, event_id: &str) -> StoreResult<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM seen_events WHERE event_id = ?1)",
                [event_id],
                |row| row.get(0),
            )
            .map_err(query("look up a seen event"))
    }

    /// Forgets events first seen before `cutoff`; returns how many. Choose a
    /// cutoff older than any source can redeliver an event.
    pub fn prune_seen_events(self, cutoff: DateTime<Utc>) -> StoreResult<usize> {
        self.conn
            .execute(
                "DELETE FROM seen_events WHERE first_seen_at < ?1",
                [ts(cutoff)],
            )
            .map_err(query("prune seen events"))
    }

    pub fn get_cursor(self, name: &str) -> StoreResult<Option<Cursor>> {
        self.conn
            .query_row(
                "SELECT name, value, updated_at FROM cursors WHERE name = ?1",
                [name],
                |row| {
                    Ok(Cursor {
                        name: row.get(0)?,
                        value: row.get(1)?,
                        updated_at: row.get::<_, Ts>(2)?.0,
                    })
                },
            )
            .optional()
            .map_err(query("read a cursor"))
    }

    /// Every cursor whose name starts with `prefix`.
    pub fn cursors_with_prefix(self, prefix: &str) -> StoreResult<Vec<Cursor>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, value, updated_at FROM cursors \
                 WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
            )
            .map_err(query("list cursors"))?;
        stmt.query_map([prefix], |row| {
            Ok(Cursor {
                name: row.get(0)?,
                value: row.get(1)?,
                updated_at: row.get::<_, Ts>(2)?.0,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(query("list cursors"))
    }

    /// Forgets a cursor; forgetting one that does not exist is not an error.
    pub fn delete_cursor(self, name: &str) -> StoreResult<()> {
        self.conn
            .execute("DELETE FROM cursors WHERE name = ?1", [name])
            .map_err(query("delete a cursor"))?;
        Ok(())
    }

    pub fn set_cursor(self, name: &str, value: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.conn
            .execute(
                "INSERT INTO cursors (name, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                                                  updated_at = excluded.updated_at",
                params![name, value, ts(now)],
            )
            .map_err(query("save a cursor"))?;
        Ok(())
    }
}
