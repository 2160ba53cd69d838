//! `directory_users`: the IAM Identity Center users rotationd has seen (id, user name,
//! group names), kept after they leave the Identity Store. A `DeleteUser` event arrives
//! after the user is gone and carries only the user id: this is what still names them.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Db, StoreResult, Ts, query, ts};

/// One user as last seen in the Identity Store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownUser {
    pub user_id: String,
    pub user_name: String,
    /// Display names of the Identity Center groups the user was in, sorted.
    pub groups: Vec<String>,
    pub seen_at: DateTime<Utc>,
}

impl Db<'_> {
    /// Records `users` as seen at `now`: a row is written only when it is new or its
    /// name or groups changed, or when it was last seen more than a day ago (so that
    /// pruning after `[state] retention` keeps whoever is still there, and a stable
    /// directory costs no writes on most passes). Returns how many rows were written.
    pub fn remember_users(self, users: &[KnownUser], now: DateTime<Utc>) -> StoreResult<usize> {
        let op = "remember the directory's users";
        self.atomic(op, || {
            let mut written = 0;
            let mut stmt = self
                .conn
                .prepare_cached(
                    "INSERT INTO directory_users (user_id, user_name, groups, seen_at) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (user_id) DO UPDATE SET user_name = excluded.user_name, \
                         groups = excluded.groups, seen_at = excluded.seen_at \
                     WHERE user_name IS NOT excluded.user_name OR groups IS NOT excluded.groups \
                         OR seen_at < excluded.seen_at - 86400",
                )
                .map_err(query(op))?;
            for u in users {
                let groups = serde_json::to_string(&u.groups).unwrap_or_else(|_| "[]".into());
                written += stmt
                    .execute(params![u.user_id, u.user_name, groups, ts(now)])
                    .map_err(query(op))?;
            }
            Ok(written)
        })
    }

    /// Every user remembered, in id order.
    pub fn known_users(self) -> StoreResult<Vec<KnownUser>> {
        let op = "read the remembered directory users";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT user_id, user_name, groups, seen_at FROM directory_users ORDER BY user_id",
            )
            .map_err(query(op))?;
        stmt.query_map([], |row| {
            let groups: String = row.get(2)?;
            Ok(KnownUser {
                user_id: row.get(0)?,
                user_name: row.get(1)?,
                // Written by `remember_users` only; an unreadable list names no group.
                groups: serde_json::from_str(&groups).unwrap_or_default(),
                seen_at: row.get::<_, Ts>(3)?.0,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(query(op))
    }
}
