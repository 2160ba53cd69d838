//! The DynamoDB [`SharedLog`]: the log entries and the snapshots of `[state] backend =
//! "dynamodb"` (the items are in the key design of [`super`]).
//!
//! # How the promises of [`SharedLog`] are kept
//!
//! * **One winner per position, all or nothing**: an entry's items are put in one
//!   `TransactWriteItems`, each with `attribute_not_exists(pk)`. An entry larger than one
//!   item (about 300 KB of JSON per chunk) is split into chunks in that same transaction;
//!   the limit is DynamoDB's 4 MB per transaction.
//! * **The fence**: the leader's transaction also carries a `ConditionCheck` on the lease
//!   item (`holder = :me AND token = :token`). `CancellationReasons` come back in item
//!   order, so a refused fence (the first item) is told apart from a taken position.
//! * **Consistent, ordered reads**: a strongly consistent `Query` on `pk = log` from the
//!   position's sort key, all pages (sort keys are zero-padded, so string order is
//!   position order).
//! * **The pointer moves forward only**: snapshot chunks are put first, then the `latest`
//!   pointer with `attribute_not_exists(pk) OR seq < :seq`, so a reader never follows a
//!   pointer to a snapshot that is not all there, and a stale snapshot never replaces a
//!   newer one.

use super::key;
use super::lease::LEASE_SK;
use crate::aws::AwsError;
use crate::aws::dynamodb::{AttributeValue, Expr, Item, Table, TransactError, Write};
use crate::store::journal::journal_error;
use crate::store::shared_log::{AppendError, Entry, Fence, SharedLog, Snapshot};
use crate::store::{StoreError, StoreResult};

/// The partition of the log.
pub const LOG_PK: &str = "log";
/// The partition of the pointer to the latest snapshot (`sk = "latest"`).
pub const SNAPSHOT_PK: &str = "snapshot";
/// At most this many bytes of JSON per log item (DynamoDB's item limit is 400 KB).
pub const CHUNK_BYTES: usize = 300 * 1024;
/// At most this many items per `TransactWriteItems`, the fence included.
const MAX_TRANSACT_ITEMS: usize = 100;
/// DynamoDB's 4 MB per transaction, with room for the attributes around the bodies.
const MAX_TRANSACT_BYTES: usize = 3_900_000;

fn aws_journal_error(e: AwsError) -> StoreError {
    let retryable = e.retryable;
    journal_error("reach the DynamoDB state table", e.to_string(), retryable)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Fence {
    /// The check on the lease item: it still names this holder with this token.
    pub(crate) fn check(&self) -> Write {
        Write::Check {
            key: key(&self.key, LEASE_SK),
            condition: Expr::new("holder = :me AND #t = :token")
                .name("#t", "token")
                .value(":me", s(self.holder.clone()))
                .value(":token", n(self.token)),
        }
    }
}

/// The shared log in a DynamoDB table (see the module doc for the items).
#[derive(Clone)]
pub struct DynamoLog {
    table: Table,
    /// Runs the calls: the store calls the log from its own thread, which must not be a
    /// runtime worker.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for DynamoLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoLog")
            .field("table", &self.table.name())
            .finish()
    }
}

impl DynamoLog {
    pub fn new(table: Table, runtime: tokio::runtime::Handle) -> DynamoLog {
        DynamoLog { table, runtime }
    }

    async fn append_async(&self, entry: &Entry, fence: Option<&Fence>) -> Result<(), AppendError> {
        let chunks = split(&entry.body, CHUNK_BYTES);
        let items = chunks.len() + usize::from(fence.is_some());
        if items > MAX_TRANSACT_ITEMS || entry.body.len() > MAX_TRANSACT_BYTES {
            return Err(journal_error(
                "append to the state log",
                format!(
                    "one transaction of {} bytes is more than the DynamoDB state backend can write at once (4 MB); this is a bug in rotationd, please report it",
                    entry.body.len()
                ),
                false,
            )
            .into());
        }
        let seq = entry.seq;
        // The fence first: cancellation reasons come back in item order.
        let mut writes: Vec<Write> = fence.map(Fence::check).into_iter().collect();
        let at = chrono::Utc::now().timestamp_millis();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut item = key(LOG_PK, &format!("{seq:020}#{i:04}"));
            item.extend([
                ("seq".to_string(), n(seq)),
                ("chunk".to_string(), n(i)),
                ("chunks".to_string(), n(chunks.len())),
                ("schema".to_string(), n(entry.schema)),
                ("writer".to_string(), s(entry.writer.clone())),
                ("at".to_string(), n(at)),
                ("body".to_string(), s(*chunk)),
            ]);
            writes.push(Write::Put {
                item,
                condition: Some(Expr::new("attribute_not_exists(pk)")),
            });
        }
        match self.table.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TransactError::Cancelled { reasons }) => {
                // In item order: the fence, when there is one, is the first.
                let fenced = fence.is_some()
                    && reasons.first().and_then(Option::as_deref) == Some("ConditionalCheckFailed");
                Err(if fenced {
                    AppendError::Fenced
                } else {
                    AppendError::Taken(seq)
                })
            }
            Err(TransactError::Aws(e)) => Err(aws_journal_error(e).into()),
        }
    }

    /// Every item of partition `pk` (from sort key `from_sk` on), in sort key order,
    /// strongly consistent, all pages.
    async fn query_partition(&self, pk: &str, from_sk: Option<&str>) -> StoreResult<Vec<Item>> {
        let condition = match from_sk {
            Some(from) => Expr::new("pk = :pk AND sk >= :from").value(":from", s(from)),
            None => Expr::new("pk = :pk"),
        }
        .value(":pk", s(pk));
        self.table
            .query(&condition)
            .await
            .map_err(aws_journal_error)
    }

    async fn read_from_async(&self, from: u64) -> StoreResult<Vec<Entry>> {
        let items = self
            .query_partition(LOG_PK, Some(&format!("{from:020}")))
            .await?;
        let mut out: Vec<Entry> = Vec::new();
        // The entry being joined, and how many chunks it should have and has.
        let mut current: Option<(Entry, u64, u64)> = None;
        for item in &items {
            let Some(Header {
                seq,
                chunks,
                schema,
                writer,
            }) = header(item)
            else {
                return Err(journal_error(
                    "read the state log",
                    "a log item lacks seq, chunks or schema; the table holds something rotationd did not write: use a table of its own".into(),
                    false,
                ));
            };
            let body = body_of(item);
            match current.as_mut() {
                Some((e, _, got)) if e.seq == seq => {
                    e.body.push_str(body);
                    *got += 1;
                }
                _ => {
                    if let Some(done) = current.take() {
                        out.push(whole(done)?);
                    }
                    let entry = Entry {
                        seq,
                        schema,
                        writer,
                        body: body.to_string(),
                    };
                    current = Some((entry, chunks, 1));
                }
            }
        }
        if let Some(done) = current.take() {
            out.push(whole(done)?);
        }
        Ok(out)
    }

    async fn latest_snapshot_async(&self) -> StoreResult<Option<Snapshot>> {
        let latest = self
            .table
            .get(key(SNAPSHOT_PK, "latest"))
            .await
            .map_err(aws_journal_error)?;
        let Some(item) = latest else {
            return Ok(None);
        };
        let Some(h) = header(&item) else {
            return Ok(None);
        };
        let (seq, chunks) = (h.seq, h.chunks);
        let items = self
            .query_partition(&format!("{SNAPSHOT_PK}#{seq:020}"), None)
            .await?;
        let got = items.len() as u64;
        if got != chunks {
            return Err(journal_error(
                "load the state snapshot",
                format!(
                    "snapshot {seq} has {got} of its {chunks} chunks; restore the table from a backup"
                ),
                false,
            ));
        }
        Ok(Some(Snapshot {
            seq,
            schema: h.schema,
            writer: h.writer,
            body: items.iter().map(body_of).collect(),
        }))
    }

    async fn put_snapshot_async(&self, snapshot: &Snapshot) -> StoreResult<()> {
        let seq = snapshot.seq;
        let chunks = split(&snapshot.body, CHUNK_BYTES);
        let partition = format!("{SNAPSHOT_PK}#{seq:020}");
        for (i, chunk) in chunks.iter().enumerate() {
            let mut item = key(&partition, &format!("{i:06}"));
            item.insert("body".to_string(), s(*chunk));
            self.table
                .put(item, None)
                .await
                .map_err(aws_journal_error)?;
        }
        let mut pointer = key(SNAPSHOT_PK, "latest");
        pointer.extend([
            ("seq".to_string(), n(seq)),
            ("chunks".to_string(), n(chunks.len())),
            ("schema".to_string(), n(snapshot.schema)),
            ("writer".to_string(), s(snapshot.writer.clone())),
        ]);
        let condition = Expr::new("attribute_not_exists(pk) OR seq < :seq").value(":seq", n(seq));
        match self.table.put(pointer, Some(&condition)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // A newer snapshot is already there: nothing to do.
                if e.is_code("ConditionalCheckFailedException") {
                    Ok(())
                } else {
                    Err(aws_journal_error(e))
                }
            }
        }
    }
}

impl SharedLog for DynamoLog {
    fn append(&self, entry: &Entry, fence: Option<&Fence>) -> Result<(), AppendError> {
        self.runtime.block_on(self.append_async(entry, fence))
    }

    fn read_from(&self, from: u64) -> StoreResult<Vec<Entry>> {
        self.runtime.block_on(self.read_from_async(from))
    }

    fn put_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()> {
        self.runtime.block_on(self.put_snapshot_async(snapshot))
    }

    fn latest_snapshot(&self) -> StoreResult<Option<Snapshot>> {
        self.runtime.block_on(self.latest_snapshot_async())
    }
}

/// An entry whose chunks were all read (a transaction writes them together, so fewer
/// means the table was changed by hand).
fn whole((entry, chunks, got): (Entry, u64, u64)) -> StoreResult<Entry> {
    if got != chunks {
        return Err(journal_error(
            "read the state log",
            format!(
                "entry {} has {got} of its {chunks} chunks; it was changed by hand: restore the table from a backup",
                entry.seq
            ),
            false,
        ));
    }
    Ok(entry)
}

/// What a log item and the snapshot pointer say about their entry or snapshot.
struct Header {
    seq: u64,
    chunks: u64,
    schema: u32,
    writer: String,
}

/// `None` when a number is missing: not an item rotationd wrote.
fn header(item: &Item) -> Option<Header> {
    let num = |k: &str| -> Option<u64> { item.get(k)?.as_n().ok()?.parse().ok() };
    Some(Header {
        seq: num("seq")?,
        chunks: num("chunks")?,
        schema: u32::try_from(num("schema")?).unwrap_or(u32::MAX),
        writer: item
            .get("writer")
            .and_then(|w| w.as_s().ok())
            .cloned()
            .unwrap_or_default(),
    })
}

/// A log or snapshot chunk's text.
fn body_of(item: &Item) -> &str {
    item.get("body")
        .and_then(|b| b.as_s().ok())
        .map_or("", |v| v.as_str())
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
}
