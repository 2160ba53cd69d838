//! The DynamoDB state backend (`[state] backend = "dynamodb"`): the state lives in a
//! DynamoDB table, shared by every instance, as an ordered log of committed transactions;
//! each instance keeps an in-memory SQLite replica of it to query.
//!
//! # Why a log, and why SQLite stays the query engine
//!
//! Every query, invariant and test of the store (the ~60 methods of [`Db`](super::Db),
//! the append-only hash-chained audit, the conditional request transitions) is written
//! once, in SQL. Re-writing each as DynamoDB items and indexes would make two stores that
//! drift apart. Instead, DynamoDB holds what must be shared and agreed on: the sequence of
//! committed transactions. Agreement is DynamoDB's, not ours: an entry is appended with a
//! conditional write, so for each position in the log exactly one writer wins.
//!
//! # Key design (one table, `pk` string + `sk` string)
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | log entry (chunk) | `log` | `<seq, 20 digits>#<chunk, 4 digits>` | `seq`, `chunk`, `chunks`, `schema`, `writer`, `at` (ms), `body` (JSON of the changes) |
//! | leader lease | `lease#<name>` | `lease` | `holder`, `expires_at` (ms), `token` ([`crate::lease`]) |
//! | snapshot chunk | `snapshot#<seq, 20 digits>` | `<chunk, 6 digits>` | `body` (every row, JSON) |
//! | latest snapshot | `snapshot` | `latest` | `seq`, `chunks`, `schema`, `writer` |
//!
//! An entry larger than one item (about 300 KB of JSON per chunk) is split into chunks
//! written in the same `TransactWriteItems`, so it appears whole or not at all; the limit
//! is DynamoDB's 4 MB per transaction.
//!
//! # How a write commits
//!
//! On a replica every store job (one [`StoreHandle`](super::StoreHandle) call) runs in one
//! local transaction ([`Store::job`](super::Store::job)). SQLite's update hook notes which
//! rows the job touched; before the commit, the journal reads their final values (or finds
//! them gone) and appends them as entry `seq + 1`, where `seq` is the last entry this
//! replica has applied, with `attribute_not_exists` on the entry. If another instance
//! appended first, the append is refused, the local transaction is rolled back, and the
//! caller gets [`StoreError::Journal`] (`retryable`): the job was decided on a stale
//! replica. When this instance leads, the same `TransactWriteItems` carries the lease's
//! `ConditionCheck` (the fence): a leader that was paused past its lease and wakes
//! believing it still leads has every write refused.
//!
//! Final values, not a record of each statement: a savepoint rolled back or a statement
//! that failed leaves nothing behind, and rows changed twice are sent once.
//!
//! So a write is durable in DynamoDB before its job returns (the "durable before
//! acknowledged" rule holds across machines), and two instances can never both move one
//! attempt: both would have to append at the same position.
//!
//! # How a replica catches up
//!
//! [`Journal::catch_up`] reads the entries after `seq` (a strongly consistent `Query`) and
//! applies them in order, each in one local transaction, with recording off. Each job
//! catches up first unless the replica did within [`FRESH_FOR`] (half a second): the
//! leader is nearly the only writer, and a `Query` per store call would double its
//! latency. So reads may trail another instance's write by that much; writes cannot, since
//! an append at a position already taken is refused (and the next job catches up). A
//! replica is rebuilt from the whole log when the process starts.
//!
//! # Snapshots
//!
//! Every [`SNAPSHOT_EVERY`] entries the leader writes its replica's whole state as a
//! snapshot at its log position (`pk = snapshot#<seq>`, one item per chunk) and then moves
//! the pointer `pk = snapshot, sk = latest` to it (conditional: only forward). A replica
//! opens by loading the latest snapshot and replaying the log after it, so a start costs
//! one snapshot plus at most about [`SNAPSHOT_EVERY`] entries, however old the table is.
//! The entries before a snapshot stay in the table (they are the history; DynamoDB's
//! storage is the only cost), and a snapshot of another schema version is skipped.
//!
//! # Limits (written down, not hidden)
//!
//! * Writes must run inside [`Store::job`](super::Store::job) (the store thread does it
//!   for every call); a write outside one cannot be sent and is refused at the next job.
//! * All instances must run the same schema version: an entry written by a newer schema
//!   is refused with an error that says to upgrade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, KeySchemaElement, KeyType,
    Put, ScalarAttributeType, TransactWriteItem,
};
use rusqlite::Connection;
use rusqlite::hooks::Action;
use rusqlite::types::{Value, ValueRef};
use serde::{Deserialize, Serialize};

use super::{SCHEMA_VERSION, StoreError, StoreResult};
use crate::aws::AwsError;

/// The partition key attribute.
pub const PK: &str = "pk";
/// The sort key attribute.
pub const SK: &str = "sk";
/// The partition of the log.
pub const LOG_PK: &str = "log";
/// At most this many bytes of JSON per log item (DynamoDB's item limit is 400 KB).
pub const CHUNK_BYTES: usize = 300 * 1024;
/// At most this many items per `TransactWriteItems`, the fence included.
const MAX_TRANSACT_ITEMS: usize = 100;

/// A column value, as SQLite stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Val {
    #[serde(rename = "n")]
    Null,
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "r")]
    Real(f64),
    #[serde(rename = "t")]
    Text(String),
    #[serde(rename = "b")]
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Val {
    fn from(v: ValueRef<'_>) -> Val {
        match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Real(r) => Val::Real(r),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        }
    }
}

impl From<&Val> for Value {
    fn from(v: &Val) -> Value {
        match v {
            Val::Null => Value::Null,
            Val::Int(i) => Value::Integer(*i),
            Val::Real(r) => Value::Real(*r),
            Val::Text(t) => Value::Text(t.clone()),
            Val::Blob(b) => Value::Blob(b.clone()),
        }
    }
}

/// One row's final state after a job: the unit of the log. Rows are named by table and
/// rowid; every replica applies the same rows with the same rowids, so rowids agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
enum Change {
    /// The row exists with these column values (in table order).
    #[serde(rename = "w")]
    Write { t: String, r: i64, v: Vec<Val> },
    /// The row is gone.
    #[serde(rename = "d")]
    Delete { t: String, r: i64 },
}

/// The condition the leader's writes carry: the lease item still names it with its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease item's `pk` (`lease#<name>`).
    pub key: String,
    pub holder: String,
    pub token: u64,
}

impl Fence {
    /// The `ConditionCheck` on the lease item in `table`.
    pub(crate) fn condition(&self, table: &str) -> Result<ConditionCheck, AwsError> {
        ConditionCheck::builder()
            .table_name(table)
            .key(PK, AttributeValue::S(self.key.clone()))
            .key(SK, AttributeValue::S(crate::lease::LEASE_SK.into()))
            .condition_expression("holder = :me AND #t = :token")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":me", AttributeValue::S(self.holder.clone()))
            .expression_attribute_values(":token", AttributeValue::N(self.token.to_string()))
            .build()
            .map_err(build_error)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Rows the open job touched, in first-touch order, without repeats.
    touched: Vec<(String, i64)>,
    seen: std::collections::HashSet<(String, i64)>,
    /// On while a catch-up applies entries that are already in the log.
    applying: bool,
    /// A store job is open (writes are recorded and sent at its end).
    in_job: bool,
    /// A write happened outside a job: it is in this replica but not in the log.
    stray: bool,
    /// The last entry this replica has applied (or appended).
    seq: u64,
    /// Column names of each table, for the replay.
    columns: HashMap<String, Vec<String>>,
    /// When this replica last read the log's tail; `None` forces the next job to.
    caught_up_at: Option<std::time::Instant>,
    /// The log position of the snapshot this replica started from, or of the last one it
    /// wrote; and how many log entries it replayed when it opened.
    snapshot_seq: u64,
    replayed_at_open: usize,
}

/// The leader writes a snapshot once the log has grown this many entries past the last
/// one, so a start replays at most about this many entries after loading it.
pub const SNAPSHOT_EVERY: u64 = 1000;
/// The partition of the pointer to the latest snapshot (`sk = "latest"`).
pub const SNAPSHOT_PK: &str = "snapshot";

/// A job reads the log's tail first unless the replica did so this recently: the leader,
/// nearly the only writer, would otherwise pay a `Query` per store call. Writes stay safe
/// either way (an append at a taken position is refused); reads may lag another
/// instance's write (a CLI's) by this much.
pub const FRESH_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// This replica's link to the shared log. Cheap to clone; every clone shares the state.
#[derive(Clone)]
pub struct Journal {
    client: Client,
    table: String,
    runtime: tokio::runtime::Handle,
    writer: String,
    state: Arc<Mutex<State>>,
    fence: Arc<Mutex<Option<Fence>>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("table", &self.table)
            .field("writer", &self.writer)
            .finish()
    }
}

/// A DynamoDB request builder refused its input (a bug: every input is built here).
pub(crate) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> AwsError {
    AwsError {
        operation: "DynamoDB",
        code: None,
        message: e.to_string(),
        retryable: false,
    }
}

fn journal_error(op: &'static str, message: String, retryable: bool) -> StoreError {
    StoreError::Journal {
        op,
        message,
        retryable,
    }
}

/// Creates the state table (`pk` and `sk` strings, on-demand billing) if it does not
/// exist, and waits until it is active. `rotationd setup-state` and the tests call it; the
/// daemon only checks that the table is there.
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), AwsError> {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => return Ok(()),
        Err(e) => {
            let e = AwsError::from_sdk("DescribeTable", e);
            if !e.is_not_found() {
                return Err(e);
            }
        }
    }
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_error)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(build_error)
    };
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr(PK)?)
        .attribute_definitions(attr(SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateTable", e));
    match created {
        Ok(_) => {}
        // Another instance created it at the same moment.
        Err(e) if e.is_code("ResourceInUseException") => {}
        Err(e) => return Err(e),
    }
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeTable", e))?;
        if d.table().and_then(|t| t.table_status()).map(|s| s.as_str()) == Some("ACTIVE") {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(AwsError {
        operation: "DescribeTable",
        code: None,
        message: format!(
            "table {table} did not become ACTIVE within a minute; check it in the DynamoDB console"
        ),
        retryable: true,
    })
}

impl Journal {
    /// A journal over `table`; `writer` names this instance in the entries it appends.
    /// `runtime` runs the DynamoDB calls: the store calls them from its own thread, which
    /// must not be a runtime worker.
    pub fn new(
        client: Client,
        table: &str,
        runtime: tokio::runtime::Handle,
        writer: &str,
    ) -> Journal {
        Journal {
            client,
            table: table.to_string(),
            runtime,
            writer: writer.to_string(),
            state: Arc::new(Mutex::new(State::default())),
            fence: Arc::new(Mutex::new(None)),
        }
    }

    /// Sets (leader) or clears (standby, CLI) the condition every append carries.
    pub fn set_fence(&self, fence: Option<Fence>) {
        if let Ok(mut f) = self.fence.lock() {
            *f = fence;
        }
    }

    /// The last log position this replica has applied.
    pub fn seq(&self) -> u64 {
        self.state.lock().map(|s| s.seq).unwrap_or(0)
    }

    /// The log position of the snapshot this replica started from (or last wrote); 0 for
    /// none.
    pub fn snapshot_seq(&self) -> u64 {
        self.state.lock().map(|s| s.snapshot_seq).unwrap_or(0)
    }

    /// How many log entries this replica replayed when it opened (after its snapshot).
    pub fn replayed_at_open(&self) -> usize {
        self.state.lock().map(|s| s.replayed_at_open).unwrap_or(0)
    }

    /// Whether the log has grown [`SNAPSHOT_EVERY`] entries past the last snapshot.
    pub fn snapshot_due(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.seq >= s.snapshot_seq + SNAPSHOT_EVERY)
            .unwrap_or(false)
    }

    /// Opening: the latest snapshot (if any, and of this schema), then the log after it.
    pub(super) fn open(&self, conn: &Connection) -> StoreResult<()> {
        self.load_snapshot(conn)?;
        let n = self.catch_up(conn)?;
        self.state.lock().map_err(|_| poisoned())?.replayed_at_open = n;
        Ok(())
    }

    /// Writes this replica's whole state as the snapshot at its log position, outside any
    /// transaction (call it between jobs: it reads a consistent state because nothing
    /// else uses the connection meanwhile). The chunks go first, the `latest` pointer
    /// last and only if it moves forward, so a reader never follows a pointer to a
    /// snapshot that is not all there. Returns the position.
    pub fn write_snapshot(&self, conn: &Connection) -> StoreResult<u64> {
        let seq = self.seq();
        let columns = self.state.lock().map_err(|_| poisoned())?.columns.clone();
        let mut rows = Vec::new();
        let mut tables: Vec<&String> = columns.keys().collect();
        tables.sort();
        for t in tables {
            let mut stmt = conn
                .prepare(&format!("SELECT rowid, * FROM {} ORDER BY rowid", quote(t)))
                .map_err(|source| StoreError::Query {
                    op: "read the state for a snapshot",
                    source,
                })?;
            let n = stmt.column_count();
            let read = stmt
                .query_map([], |row| {
                    let r: i64 = row.get(0)?;
                    let v = (1..n)
                        .map(|i| row.get_ref(i).map(Val::from))
                        .collect::<rusqlite::Result<Vec<Val>>>()?;
                    Ok(Change::Write { t: t.clone(), r, v })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Change>>>())
                .map_err(|source| StoreError::Query {
                    op: "read the state for a snapshot",
                    source,
                })?;
            rows.extend(read);
        }
        let body = serde_json::to_string(&rows).map_err(|source| StoreError::Encode {
            what: "snapshot",
            source,
        })?;
        let chunks = split(&body, CHUNK_BYTES);
        self.runtime.block_on(async {
            let key = format!("{SNAPSHOT_PK}#{seq:020}");
            for (i, chunk) in chunks.iter().enumerate() {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item(PK, AttributeValue::S(key.clone()))
                    .item(SK, AttributeValue::S(format!("{i:06}")))
                    .item("body", AttributeValue::S((*chunk).to_string()))
                    .send()
                    .await
                    .map_err(|e| aws_journal_error(AwsError::from_sdk("PutItem", e)))?;
            }
            let moved = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(PK, AttributeValue::S(SNAPSHOT_PK.into()))
                .item(SK, AttributeValue::S("latest".into()))
                .item("seq", AttributeValue::N(seq.to_string()))
                .item("chunks", AttributeValue::N(chunks.len().to_string()))
                .item("schema", AttributeValue::N(SCHEMA_VERSION.to_string()))
                .item("writer", AttributeValue::S(self.writer.clone()))
                .condition_expression("attribute_not_exists(pk) OR seq < :seq")
                .expression_attribute_values(":seq", AttributeValue::N(seq.to_string()))
                .send()
                .await;
            match moved {
                Ok(_) => Ok(()),
                Err(e) => {
                    let e = AwsError::from_sdk("PutItem", e);
                    // A newer snapshot is already there: nothing to do.
                    if e.is_code("ConditionalCheckFailedException") {
                        Ok(())
                    } else {
                        Err(aws_journal_error(e))
                    }
                }
            }
        })?;
        self.state.lock().map_err(|_| poisoned())?.snapshot_seq = seq;
        Ok(seq)
    }

    /// Loads the latest snapshot into an empty replica, if there is one of this schema
    /// (one of another schema is skipped: the log alone rebuilds the state).
    fn load_snapshot(&self, conn: &Connection) -> StoreResult<()> {
        let (seq, chunks, rows) = match self.runtime.block_on(self.read_snapshot())? {
            Some(found) => found,
            None => return Ok(()),
        };
        let result = self.apply_rows(conn, &rows)?;
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        result.map_err(|source| {
            journal_error(
                "load the state snapshot",
                format!(
                    "snapshot {seq} ({chunks} chunks) does not load ({source}); check that every instance runs the same version"
                ),
                false,
            )
        })?;
        s.seq = seq;
        s.snapshot_seq = seq;
        Ok(())
    }

    async fn read_snapshot(&self) -> StoreResult<Option<(u64, u64, Vec<Change>)>> {
        let latest = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(SNAPSHOT_PK.into()))
            .key(SK, AttributeValue::S("latest".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_journal_error(AwsError::from_sdk("GetItem", e)))?;
        let Some(item) = latest.item() else {
            return Ok(None);
        };
        let num = |k: &str| -> Option<u64> { item.get(k)?.as_n().ok()?.parse().ok() };
        let (Some(seq), Some(chunks), Some(schema)) = (num("seq"), num("chunks"), num("schema"))
        else {
            return Ok(None);
        };
        if schema != u64::from(SCHEMA_VERSION) {
            tracing::info!(
                snapshot = seq,
                schema,
                "the latest snapshot is of another schema version; replaying the whole log instead"
            );
            return Ok(None);
        }
        let items = self
            .query_partition(&format!("{SNAPSHOT_PK}#{seq:020}"), None)
            .await?;
        let got = items.len() as u64;
        let body: String = items.iter().map(body_of).collect();
        if got != chunks {
            return Err(journal_error(
                "load the state snapshot",
                format!(
                    "snapshot {seq} has {got} of its {chunks} chunks; restore the table from a backup"
                ),
                false,
            ));
        }
        let rows = serde_json::from_str(&body).map_err(|e| {
            journal_error(
                "load the state snapshot",
                format!("snapshot {seq} is not readable ({e}); restore the table from a backup"),
                false,
            )
        })?;
        Ok(Some((seq, chunks, rows)))
    }

    /// Reads the tables' layout and installs the update hook on `conn` (after the schema
    /// is migrated: the schema itself is not in the log, every instance builds it).
    pub(super) fn install(&self, conn: &mut Connection) -> StoreResult<()> {
        let columns = table_columns(conn).map_err(|source| StoreError::Query {
            op: "read the table layout",
            source,
        })?;
        self.state.lock().map_err(|_| poisoned())?.columns = columns;
        let state = self.state.clone();
        conn.update_hook(Some(
            move |_action: Action, db: &str, table: &str, rowid: i64| {
                if db != "main" {
                    return;
                }
                let Ok(mut s) = state.lock() else { return };
                if s.applying {
                    return;
                }
                if !s.in_job {
                    s.stray = true;
                    return;
                }
                let key = (table.to_string(), rowid);
                if s.seen.insert(key.clone()) {
                    s.touched.push(key);
                }
            },
        ))
        .map_err(|source| StoreError::Query {
            op: "install the journal",
            source,
        })?;
        let state = self.state.clone();
        conn.rollback_hook(Some(move || {
            if let Ok(mut s) = state.lock() {
                s.touched.clear();
                s.seen.clear();
            }
        }))
        .map_err(|source| StoreError::Query {
            op: "install the journal",
            source,
        })?;
        Ok(())
    }

    /// Opens a job: one local transaction whose writes are sent at [`Journal::end_job`].
    pub(super) fn begin_job(&self, conn: &Connection) -> StoreResult<()> {
        {
            let mut s = self.state.lock().map_err(|_| poisoned())?;
            if s.stray {
                return Err(journal_error(
                    "keep the replica in step with the log",
                    "a write was made outside a store job and is not in the shared log; this is a bug in rotationd, please report it (restart to rebuild the replica)".into(),
                    false,
                ));
            }
            s.touched.clear();
            s.seen.clear();
        }
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|source| StoreError::Query {
                op: "begin a store job",
                source,
            })?;
        self.state.lock().map_err(|_| poisoned())?.in_job = true;
        Ok(())
    }

    /// Ends a job: appends the final state of every row it touched to the log, then
    /// commits locally; if the log refuses, rolls back and says why.
    pub(super) fn end_job(&self, conn: &Connection) -> StoreResult<()> {
        let touched = {
            let mut s = self.state.lock().map_err(|_| poisoned())?;
            s.in_job = false;
            s.seen.clear();
            std::mem::take(&mut s.touched)
        };
        let rollback = |e: StoreError| {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        };
        if conn.is_autocommit() {
            // The job ended the transaction itself (it should not): nothing to send.
            return Ok(());
        }
        if touched.is_empty() {
            return conn
                .execute_batch("COMMIT")
                .map_err(|source| StoreError::Query {
                    op: "commit a store job",
                    source,
                });
        }
        let changes = match read_rows(conn, &touched) {
            Ok(c) => c,
            Err(source) => {
                return rollback(StoreError::Query {
                    op: "read the rows a store job wrote",
                    source,
                });
            }
        };
        let seq = self.seq() + 1;
        let fence = self.fence.lock().ok().and_then(|f| f.clone());
        if let Err(e) = self
            .runtime
            .block_on(self.append(seq, &changes, fence.as_ref()))
        {
            // Whatever happened, the next job reads the log first.
            if let Ok(mut s) = self.state.lock() {
                s.caught_up_at = None;
            }
            return rollback(e);
        }
        // In the log now: the local commit only catches up with it. Should it fail, the
        // next catch-up cannot re-apply this entry on top of an unknown state.
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        s.seq = seq;
        conn.execute_batch("COMMIT").map_err(|source| {
            // The log has the entry and this replica does not: it cannot go on.
            s.stray = true;
            StoreError::Query {
                op: "commit a store job",
                source,
            }
        })
    }

    async fn append(&self, seq: u64, changes: &[Change], fence: Option<&Fence>) -> StoreResult<()> {
        let body = serde_json::to_string(changes).map_err(|source| StoreError::Encode {
            what: "log entry",
            source,
        })?;
        let chunks = split(&body, CHUNK_BYTES);
        let items = chunks.len() + usize::from(fence.is_some());
        if items > MAX_TRANSACT_ITEMS || body.len() > 3_900_000 {
            return Err(journal_error(
                "append to the state log",
                format!(
                    "one transaction of {} bytes is more than the DynamoDB state backend can write at once (4 MB); this is a bug in rotationd, please report it",
                    body.len()
                ),
                false,
            ));
        }
        let mut request = self.client.transact_write_items();
        if let Some(f) = fence {
            let check = f.condition(&self.table).map_err(aws_journal_error)?;
            request =
                request.transact_items(TransactWriteItem::builder().condition_check(check).build());
        }
        let at = chrono::Utc::now().timestamp_millis();
        for (i, chunk) in chunks.iter().enumerate() {
            let put = Put::builder()
                .table_name(&self.table)
                .item(PK, AttributeValue::S(LOG_PK.into()))
                .item(SK, AttributeValue::S(format!("{seq:020}#{i:04}")))
                .item("seq", AttributeValue::N(seq.to_string()))
                .item("chunk", AttributeValue::N(i.to_string()))
                .item("chunks", AttributeValue::N(chunks.len().to_string()))
                .item("schema", AttributeValue::N(SCHEMA_VERSION.to_string()))
                .item("writer", AttributeValue::S(self.writer.clone()))
                .item("at", AttributeValue::N(at.to_string()))
                .item("body", AttributeValue::S((*chunk).to_string()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| aws_journal_error(build_error(e)))?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    let failed: Vec<bool> = c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code() == Some("ConditionalCheckFailed"))
                        .collect();
                    if fence.is_some() && failed.first() == Some(&true) {
                        return Err(journal_error(
                            "append to the state log",
                            "this instance no longer holds the leader lease (another instance took over); the write was refused".into(),
                            false,
                        ));
                    }
                    return Err(journal_error(
                        "append to the state log",
                        format!(
                            "another instance wrote entry {seq} first, so this write was decided on old state and was refused; it is retried after catching up"
                        ),
                        true,
                    ));
                }
                Err(aws_journal_error(AwsError::from_sdk(
                    "TransactWriteItems",
                    e,
                )))
            }
        }
    }

    /// Applies the entries after this replica's position, in order; returns how many.
    pub fn catch_up(&self, conn: &Connection) -> StoreResult<usize> {
        let from = self.seq() + 1;
        let started = std::time::Instant::now();
        let entries = self.runtime.block_on(self.read_from(from))?;
        let n = entries.len();
        for (seq, changes) in entries {
            self.apply(conn, seq, &changes)?;
        }
        self.state.lock().map_err(|_| poisoned())?.caught_up_at = Some(started);
        Ok(n)
    }

    /// [`Journal::catch_up`] unless the replica read the log's tail within [`FRESH_FOR`]
    /// (and no append of its own was refused since).
    pub(super) fn catch_up_if_stale(&self, conn: &Connection) -> StoreResult<usize> {
        let fresh = self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .caught_up_at
            .is_some_and(|t| t.elapsed() < FRESH_FOR);
        if fresh { Ok(0) } else { self.catch_up(conn) }
    }

    /// Applies rows already in the shared table (an entry, a snapshot) in one local
    /// transaction, without recording them. The outer error is the journal's own; the
    /// inner one is SQLite refusing a row.
    fn apply_rows(
        &self,
        conn: &Connection,
        changes: &[Change],
    ) -> StoreResult<rusqlite::Result<()>> {
        let columns = {
            let mut s = self.state.lock().map_err(|_| poisoned())?;
            s.applying = true;
            s.columns.clone()
        };
        let result = (|| -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            // Rows of one entry reference each other both ways (a trigger and its
            // attempt); the keys hold at the end of the entry, as they did when written.
            conn.execute_batch("PRAGMA defer_foreign_keys = ON")?;
            for c in changes {
                if let Err(e) = apply_change(conn, &columns, c) {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
            conn.execute_batch("COMMIT")
        })();
        self.state.lock().map_err(|_| poisoned())?.applying = false;
        Ok(result)
    }

    fn apply(&self, conn: &Connection, seq: u64, changes: &[Change]) -> StoreResult<()> {
        let result = self.apply_rows(conn, changes)?;
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        match result {
            Ok(()) => {
                s.seq = seq;
                Ok(())
            }
            Err(source) => Err(journal_error(
                "apply the state log",
                format!(
                    "entry {seq} does not apply to this replica ({source}); the log and this rotationd disagree: check that every instance runs the same version"
                ),
                false,
            )),
        }
    }

    /// Every item of partition `pk` (from sort key `from_sk` on), in sort key order,
    /// strongly consistent, all pages.
    async fn query_partition(
        &self,
        pk: &str,
        from_sk: Option<&str>,
    ) -> StoreResult<Vec<HashMap<String, AttributeValue>>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            q = match from_sk {
                Some(from) => q
                    .key_condition_expression("pk = :pk AND sk >= :from")
                    .expression_attribute_values(":from", AttributeValue::S(from.into())),
                None => q.key_condition_expression("pk = :pk"),
            };
            let page = q
                .send()
                .await
                .map_err(|e| aws_journal_error(AwsError::from_sdk("Query", e)))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// The entries from `from` on, whole (their chunks joined), in order.
    async fn read_from(&self, from: u64) -> StoreResult<Vec<(u64, Vec<Change>)>> {
        let mut out: Vec<(u64, Vec<Change>)> = Vec::new();
        let mut current: Option<(u64, usize, String)> = None;
        let items = self
            .query_partition(LOG_PK, Some(&format!("{from:020}")))
            .await?;
        for item in &items {
            let num = |k: &str| -> Option<u64> { item.get(k)?.as_n().ok()?.parse().ok() };
            let (Some(seq), Some(chunks), Some(schema)) =
                (num("seq"), num("chunks"), num("schema"))
            else {
                return Err(journal_error(
                        "read the state log",
                        "a log item lacks seq, chunks or schema; the table holds something rotationd did not write: use a table of its own".into(),
                        false,
                    ));
            };
            if schema > u64::from(SCHEMA_VERSION) {
                return Err(journal_error(
                    "read the state log",
                    format!(
                        "entry {seq} was written by a newer rotationd (schema {schema}, this one knows {SCHEMA_VERSION}); upgrade this instance"
                    ),
                    false,
                ));
            }
            let body = body_of(item).to_string();
            match current.as_mut() {
                Some((s, _, text)) if *s == seq => text.push_str(&body),
                _ => {
                    if let Some(done) = current.take() {
                        out.push(finish(done)?);
                    }
                    current = Some((seq, usize::try_from(chunks).unwrap_or(1), body));
                }
            }
        }
        if let Some(done) = current.take() {
            out.push(finish(done)?);
        }
        // The log has no holes: a gap means an entry was removed by hand.
        for (i, (seq, _)) in out.iter().enumerate() {
            if *seq != from + i as u64 {
                return Err(journal_error(
                    "read the state log",
                    format!(
                        "entry {} is missing from the state log (found {seq}); it was removed by hand: restore the table from a backup",
                        from + i as u64
                    ),
                    false,
                ));
            }
        }
        Ok(out)
    }
}

fn finish((seq, _chunks, text): (u64, usize, String)) -> StoreResult<(u64, Vec<Change>)> {
    let changes = serde_json::from_str(&text).map_err(|e| {
        journal_error(
            "read the state log",
            format!("entry {seq} is not readable ({e}); it was changed by hand: restore the table from a backup"),
            false,
        )
    })?;
    Ok((seq, changes))
}

/// A log or snapshot chunk's text.
fn body_of(item: &HashMap<String, AttributeValue>) -> &str {
    item.get("body")
        .and_then(|b| b.as_s().ok())
        .map_or("", |v| v.as_str())
}

fn poisoned() -> StoreError {
    StoreError::Panicked("the journal state lock is poisoned".into())
}

fn aws_journal_error(e: AwsError) -> StoreError {
    let retryable = e.retryable;
    journal_error("reach the DynamoDB state table", e.to_string(), retryable)
}

/// Splits `text` into pieces of at most `max` bytes, on character boundaries.
fn split(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

fn table_columns(conn: &Connection) -> rusqlite::Result<HashMap<String, Vec<String>>> {
    let mut tables = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for r in rows {
            tables.push(r?);
        }
    }
    let mut out = HashMap::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(&t)))?;
        let cols = stmt
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        out.insert(t, cols);
    }
    Ok(out)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The final state of each touched row.
fn read_rows(conn: &Connection, touched: &[(String, i64)]) -> rusqlite::Result<Vec<Change>> {
    let mut out = Vec::with_capacity(touched.len());
    for (t, r) in touched {
        let mut stmt =
            conn.prepare_cached(&format!("SELECT * FROM {} WHERE rowid = ?1", quote(t)))?;
        let n = stmt.column_count();
        let row = stmt
            .query_row([r], |row| {
                (0..n)
                    .map(|i| row.get_ref(i).map(Val::from))
                    .collect::<rusqlite::Result<Vec<Val>>>()
            })
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        out.push(match row {
            Some(v) => Change::Write {
                t: t.clone(),
                r: *r,
                v,
            },
            None => Change::Delete {
                t: t.clone(),
                r: *r,
            },
        });
    }
    Ok(out)
}

fn apply_change(
    conn: &Connection,
    columns: &HashMap<String, Vec<String>>,
    change: &Change,
) -> rusqlite::Result<()> {
    let unknown =
        |t: &str| rusqlite::Error::InvalidParameterName(format!("table {t} is not in this schema"));
    match change {
        Change::Write { t, r, v } => {
            let cols = columns.get(t).ok_or_else(|| unknown(t))?;
            if cols.len() != v.len() {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "table {t} has {} columns here and {} in the log",
                    cols.len(),
                    v.len()
                )));
            }
            let sets: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", quote(c), i + 2))
                .collect();
            let values: Vec<Value> = std::iter::once(Value::Integer(*r))
                .chain(v.iter().map(Value::from))
                .collect();
            let updated = conn.execute(
                &format!(
                    "UPDATE {} SET {} WHERE rowid = ?1",
                    quote(t),
                    sets.join(", ")
                ),
                rusqlite::params_from_iter(values.iter()),
            )?;
            if updated == 0 {
                let names: Vec<String> = cols.iter().map(|c| quote(c)).collect();
                let marks: Vec<String> = (1..=cols.len() + 1).map(|i| format!("?{i}")).collect();
                conn.execute(
                    &format!(
                        "INSERT INTO {} (rowid, {}) VALUES ({})",
                        quote(t),
                        names.join(", "),
                        marks.join(", ")
                    ),
                    rusqlite::params_from_iter(values.iter()),
                )?;
            }
        }
        Change::Delete { t, r } => {
            columns.get(t).ok_or_else(|| unknown(t))?;
            conn.execute(&format!("DELETE FROM {} WHERE rowid = ?1", quote(t)), [r])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_characters_whole() {
        let text = "ééééé"; // 2 bytes each
        let parts = split(text, 3);
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.len() <= 3 && !p.is_empty()));
        assert_eq!(split("abc", 10), vec!["abc"]);
    }

    #[test]
    fn changes_round_trip_through_json() {
        let c = vec![
            Change::Write {
                t: "cursors".into(),
                r: 3,
                v: vec![
                    Val::Text("a".into()),
                    Val::Int(1),
                    Val::Null,
                    Val::Real(0.5),
                ],
            },
            Change::Delete {
                t: "seen_events".into(),
                r: 7,
            },
        ];
        let text = serde_json::to_string(&c).unwrap();
        let back: Vec<Change> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
}
