//! The DynamoDB side of `[state] backend = "dynamodb"`: one table holding the shared log
//! of the state store ([`log`]: [`DynamoLog`], the production [`SharedLog`](crate::store::shared_log::SharedLog)) and the leader
//! lease that fences its writes ([`lease`]: [`Lease`]). They share the table and its key
//! design, so they live together; the store's journal knows only the `SharedLog` trait.
//! Every call goes through [`crate::aws::dynamodb::Table`]: here are the items and the
//! conditions, there the requests.
//!
//! # Key design (one table, `pk` string + `sk` string)
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | log entry (chunk) | `log` | `<seq, 20 digits>#<chunk, 4 digits>` | `seq`, `chunk`, `chunks`, `schema`, `writer`, `at` (ms), `body` (JSON of the changes) |
//! | leader lease | `lease#<name>` | `lease` | `holder`, `expires_at` (ms), `token` ([`lease`]) |
//! | snapshot chunk | `snapshot#<seq, 20 digits>` | `<chunk, 6 digits>` | `body` (every row, JSON) |
//! | latest snapshot | `snapshot` | `latest` | `seq`, `chunks`, `schema`, `writer` |

pub mod lease;
pub mod log;

use crate::aws::AwsError;
use crate::aws::dynamodb::{AttributeValue, Client, Item, Table};

pub use lease::{LEASE_NAME, LEASE_SK, Lease, Role};
pub use log::DynamoLog;

/// The partition key attribute.
pub const PK: &str = "pk";
/// The sort key attribute.
pub const SK: &str = "sk";

/// Creates the state table (`pk` and `sk` strings, on-demand billing) if it does not
/// exist, and waits until it is active. The daemon calls it at start.
pub async fn ensure(table: &Table) -> Result<(), AwsError> {
    table.ensure(PK, SK).await
}

/// [`ensure`] through an SDK client the caller built (the tests and examples).
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), AwsError> {
    ensure(&Table::from_client(client.clone(), table)).await
}

/// The key of the item `pk`/`sk`.
fn key(pk: &str, sk: &str) -> Item {
    Item::from([
        (PK.to_string(), AttributeValue::S(pk.to_string())),
        (SK.to_string(), AttributeValue::S(sk.to_string())),
    ])
}
