//! The DynamoDB side of `[state] backend = "dynamodb"`: one table holding the shared log
//! of the state store ([`log`]: [`DynamoLog`], the production [`SharedLog`](crate::store::shared_log::SharedLog)) and the leader
//! lease that fences its writes ([`lease`]: [`Lease`]). They share the table and its key
//! design, so they live together; the store's journal knows only the `SharedLog` trait.
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

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::aws::AwsError;

pub use lease::{LEASE_NAME, LEASE_SK, Lease, Role};
pub use log::DynamoLog;

/// The partition key attribute.
pub const PK: &str = "pk";
/// The sort key attribute.
pub const SK: &str = "sk";

/// A DynamoDB request builder refused its input (a bug: every input is built here).
pub(crate) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> AwsError {
    AwsError {
        operation: "DynamoDB",
        code: None,
        message: e.to_string(),
        retryable: false,
    }
}

/// Creates the state table (`pk` and `sk` strings, on-demand billing) if it does not
/// exist, and waits until it is active. The daemon calls it at start.
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
