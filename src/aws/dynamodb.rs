//! DynamoDB: the calls the shared state makes on its table (`crate::store::dynamodb`: the
//! log of store jobs, its snapshots and the leader lease). The items and the expressions
//! are the store's (its key design); this module only sends them and classifies the
//! failures, so that a refused condition reads as an [`AwsError`] code and a cancelled
//! transaction says which item refused it.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, ConditionCheck, KeySchemaElement, KeyType, Put, ReturnValue,
    ScalarAttributeType, TransactWriteItem,
};

// The SDK's client (for callers that build their own: tests, examples) and its attribute
// values (an item's values are the store's, typed as DynamoDB types them).
pub use aws_sdk_dynamodb::Client;
pub use aws_sdk_dynamodb::types::AttributeValue;

use super::{AwsError, RequestCounter};

/// An item, or a key: attribute names and values.
pub type Item = HashMap<String, AttributeValue>;

/// A condition or update expression with the `#name` and `:value` placeholders it uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expr {
    pub text: String,
    pub names: HashMap<String, String>,
    pub values: Item,
}

impl Expr {
    pub fn new(text: &str) -> Expr {
        Expr {
            text: text.to_string(),
            ..Expr::default()
        }
    }

    /// `#placeholder` stands for the attribute `name` (for reserved words like `token`).
    pub fn name(mut self, placeholder: &str, name: &str) -> Expr {
        self.names.insert(placeholder.to_string(), name.to_string());
        self
    }

    /// `:placeholder` stands for `value`.
    pub fn value(mut self, placeholder: &str, value: AttributeValue) -> Expr {
        self.values.insert(placeholder.to_string(), value);
        self
    }
}

/// One write of a [`Table::transact`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Writes nothing; the transaction goes through only if the item at `key` meets
    /// `condition`.
    Check { key: Item, condition: Expr },
    /// Puts `item`, if it meets `condition`.
    Put { item: Item, condition: Option<Expr> },
}

/// Why a [`Table::transact`] wrote nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransactError {
    /// A condition refused it: the cancellation reason code of each write, in order
    /// (`ConditionalCheckFailed` for the one that refused, `None` for the others).
    #[error("the transaction was cancelled: {reasons:?}")]
    Cancelled { reasons: Vec<Option<String>> },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// One DynamoDB table.
#[derive(Clone, Debug)]
pub struct Table {
    client: Client,
    name: String,
}

impl Table {
    /// The table `name` in the daemon's own account and `[aws] region`.
    pub fn new(sdk: &SdkConfig, counter: &RequestCounter, name: &str) -> Table {
        Table::from_client(super::counted_client!(aws_sdk_dynamodb, sdk, counter), name)
    }

    /// The table `name` through `client`, for a caller that built its own (the tests and
    /// examples, against their emulator).
    pub fn from_client(client: Client, name: &str) -> Table {
        Table {
            client,
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the table if it does not exist, keyed by the strings `hash_key` and
    /// `range_key` with on-demand billing, and waits (up to a minute) until it is active.
    pub async fn ensure(&self, hash_key: &str, range_key: &str) -> Result<(), AwsError> {
        match self
            .client
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
        {
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
                .map_err(|e| AwsError::build("CreateTable", e))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| AwsError::build("CreateTable", e))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.name)
            .attribute_definitions(attr(hash_key)?)
            .attribute_definitions(attr(range_key)?)
            .key_schema(key(hash_key, KeyType::Hash)?)
            .key_schema(key(range_key, KeyType::Range)?)
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
            let d = self
                .client
                .describe_table()
                .table_name(&self.name)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeTable", e))?;
            if d.table().and_then(|t| t.table_status()).map(|s| s.as_str()) == Some("ACTIVE") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(AwsError {
            operation: "DescribeTable",
            code: None,
            message: format!(
                "table {} did not become ACTIVE within a minute; check it in the DynamoDB console",
                self.name
            ),
            retryable: true,
        })
    }

    /// The item at `key`, read strongly consistent; `None` when there is none.
    pub async fn get(&self, key: Item) -> Result<Option<Item>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        Ok(out.item)
    }

    /// Every item `key_condition` selects, in sort key order, strongly consistent, all
    /// pages.
    pub async fn query(&self, key_condition: &Expr) -> Result<Vec<Item>, AwsError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression(&key_condition.text)
                .set_expression_attribute_names(names(key_condition))
                .set_expression_attribute_values(values(key_condition))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("Query", e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Puts `item`, if it meets `condition` (else the error's code is
    /// `ConditionalCheckFailedException`).
    pub async fn put(&self, item: Item, condition: Option<&Expr>) -> Result<(), AwsError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item));
        if let Some(c) = condition {
            req = req
                .condition_expression(&c.text)
                .set_expression_attribute_names(names(c))
                .set_expression_attribute_values(values(c));
        }
        req.send()
            .await
            .map_err(|e| AwsError::from_sdk("PutItem", e))?;
        Ok(())
    }

    /// Applies `update` to the item at `key` if it meets `condition` (else the error's code
    /// is `ConditionalCheckFailedException`); the placeholders of both are merged. Returns
    /// the item as updated.
    pub async fn update(
        &self,
        key: Item,
        update: &Expr,
        condition: &Expr,
    ) -> Result<Item, AwsError> {
        let mut names = update.names.clone();
        names.extend(condition.names.clone());
        let mut values = update.values.clone();
        values.extend(condition.values.clone());
        let out = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .update_expression(&update.text)
            .condition_expression(&condition.text)
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateItem", e))?;
        Ok(out.attributes.unwrap_or_default())
    }

    /// Makes `writes` all or none, in one `TransactWriteItems` (at most 100 writes and
    /// 4 MB).
    pub async fn transact(&self, writes: Vec<Write>) -> Result<(), TransactError> {
        let mut req = self.client.transact_write_items();
        for w in writes {
            let item = match w {
                Write::Check { key, condition } => TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.name)
                            .set_key(Some(key))
                            .condition_expression(&condition.text)
                            .set_expression_attribute_names(names(&condition))
                            .set_expression_attribute_values(values(&condition))
                            .build()
                            .map_err(|e| AwsError::build("TransactWriteItems", e))?,
                    )
                    .build(),
                Write::Put { item, condition } => {
                    let mut put = Put::builder().table_name(&self.name).set_item(Some(item));
                    if let Some(c) = &condition {
                        put = put
                            .condition_expression(&c.text)
                            .set_expression_attribute_names(names(c))
                            .set_expression_attribute_values(values(c));
                    }
                    TransactWriteItem::builder()
                        .put(
                            put.build()
                                .map_err(|e| AwsError::build("TransactWriteItems", e))?,
                        )
                        .build()
                }
            };
            req = req.transact_items(item);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    return Err(TransactError::Cancelled {
                        reasons: c
                            .cancellation_reasons()
                            .iter()
                            .map(|r| r.code().map(str::to_string))
                            .collect(),
                    });
                }
                Err(AwsError::from_sdk("TransactWriteItems", e).into())
            }
        }
    }
}

/// The placeholders of `e` as the SDK takes them: `None` when there are none (DynamoDB
/// refuses an empty map).
fn names(e: &Expr) -> Option<HashMap<String, String>> {
    (!e.names.is_empty()).then(|| e.names.clone())
}

fn values(e: &Expr) -> Option<Item> {
    (!e.values.is_empty()).then(|| e.values.clone())
}
