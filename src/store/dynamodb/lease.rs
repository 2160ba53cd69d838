//! The leader lease on DynamoDB, with a fencing token: who of the instances sharing a
//! `[state] backend = "dynamodb"` table leads (`daemon::run` waits as a standby until
//! [`Lease::tick`] says leader, and steps down when a renewal fails). It lives in the state
//! table itself, next to the log ([`super::log`]).
//!
//! Why DynamoDB and not a home-made protocol: a conditional write is a compare-and-set
//! that AWS makes durable and linearizable per item, which is all a lease needs.
//!
//! The lease is one item, `pk = "lease#<name>"`, `sk = "lease"`, with `holder` (the instance id),
//! `expires_at` (milliseconds since the epoch) and `token` (a number that grows by one at
//! every change of holder):
//!
//! - **acquire**: `UpdateItem` setting `holder` and `expires_at` and adding 1 to `token`,
//!   on condition that the item does not exist or its `expires_at` has passed. Exactly one
//!   of several contenders wins; the others read who holds it (standby).
//! - **renew** (every third of the lease): `UpdateItem` of `expires_at` on condition that
//!   `holder` and `token` are still ours. A renewal that fails means the lease was lost
//!   (we were paused or cut off past its expiry and someone took over): the instance turns
//!   standby at once.
//! - **fence**: every write the leader makes to shared state goes in a
//!   `TransactWriteItems` together with a `ConditionCheck` on the lease item (`holder`
//!   and `token` ours). A leader that was paused past its lease and wakes up believing it
//!   still leads has every write refused, whatever it believes ([`Lease::journal_fence`]
//!   for the state log's appends; [`Lease::fence`] and [`Lease::fenced_put`] for a
//!   single item).
//!
//! Expiry is judged on the clock of the instance that tries to acquire: keep the hosts'
//! clocks in sync (NTP); a skew of a few seconds against a 30 s lease only delays a
//! takeover, and the fencing token keeps a wrong takeover harmless.

use std::collections::HashMap;
use std::time::Duration;

use super::key;
use crate::aws::AwsError;
use crate::aws::dynamodb::{AttributeValue, Client, Expr, Item, Table, TransactError, Write};

/// Where an instance stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// We hold the lease until `until_ms`; our writes carry `token`.
    Leader { token: u64, until_ms: i64 },
    /// Someone else holds it (or held it and it has not expired yet).
    Standby {
        holder: Option<String>,
        until_ms: Option<i64>,
    },
}

impl Role {
    pub fn label(&self) -> &'static str {
        match self {
            Role::Leader { .. } => "leader",
            Role::Standby { .. } => "standby",
        }
    }
}

/// The lease's name: one leader per state table.
pub const LEASE_NAME: &str = "rotationd";

/// One instance's handle on the lease.
pub struct Lease {
    table: Table,
    key: String,
    holder: String,
    duration: Duration,
    token: Option<u64>,
    /// Until when (ms, this host's clock) the last successful renewal holds it.
    until_ms: Option<i64>,
}

/// The lease item's sort key.
pub const LEASE_SK: &str = "lease";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn num(item: &HashMap<String, AttributeValue>, key: &str) -> Option<i64> {
    item.get(key)?.as_n().ok()?.parse().ok()
}

fn conditional_failed(e: &AwsError) -> bool {
    e.is_code("ConditionalCheckFailedException")
}

impl Lease {
    /// The lease `name` in `table`, for the instance `holder` (unique per process: the
    /// host name plus a random suffix, so a restarted process never inherits a lease).
    pub fn on(table: Table, name: &str, holder: &str, duration: Duration) -> Lease {
        Lease {
            table,
            key: format!("lease#{name}"),
            holder: holder.to_string(),
            duration,
            token: None,
            until_ms: None,
        }
    }

    /// [`Lease::on`] the table `table` through an SDK client the caller built (the tests).
    pub fn new(client: Client, table: &str, name: &str, holder: &str, duration: Duration) -> Lease {
        Lease::on(Table::from_client(client, table), name, holder, duration)
    }

    /// Until when (ms since the epoch) the last acquire or renewal holds the lease; `None`
    /// when not held.
    pub fn held_until_ms(&self) -> Option<i64> {
        self.token.and(self.until_ms)
    }

    /// How often to call [`Lease::tick`]: a third of the lease, so two renewals can fail
    /// before it expires.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// The condition that the lease item still names us with `token`.
    fn ours(&self, token: u64) -> Expr {
        Expr::new("holder = :me AND #t = :token")
            .name("#t", "token")
            .value(":me", s(&self.holder))
            .value(":token", n(token))
    }

    /// Renews the lease if we hold it, else tries to take it; `now_ms` is this host's
    /// clock in milliseconds since the epoch.
    pub async fn tick(&mut self, now_ms: i64) -> Result<Role, AwsError> {
        let until = now_ms + i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX / 2);
        if let Some(token) = self.token {
            let renewed = self
                .table
                .update(
                    key(&self.key, LEASE_SK),
                    &Expr::new("SET expires_at = :until").value(":until", n(until)),
                    &self.ours(token),
                )
                .await;
            match renewed {
                Ok(_) => {
                    self.until_ms = Some(until);
                    return Ok(Role::Leader {
                        token,
                        until_ms: until,
                    });
                }
                Err(e) if conditional_failed(&e) => {
                    tracing::warn!(holder = %self.holder, token, "lost the lease: another instance took over");
                    self.token = None;
                }
                // Unknown: keep the token; the next tick tells. Our fenced writes are
                // refused meanwhile if someone else took over.
                Err(e) => return Err(e),
            }
        }
        let acquired = self
            .table
            .update(
                key(&self.key, LEASE_SK),
                &Expr::new("SET holder = :me, expires_at = :until ADD #t :one")
                    .name("#t", "token")
                    .value(":me", s(&self.holder))
                    .value(":until", n(until))
                    .value(":one", n(1)),
                &Expr::new("attribute_not_exists(pk) OR expires_at < :now")
                    .value(":now", n(now_ms)),
            )
            .await;
        match acquired {
            Ok(item) => {
                let token = num(&item, "token")
                    .and_then(|t| u64::try_from(t).ok())
                    .ok_or_else(|| AwsError {
                        operation: "UpdateItem",
                        code: None,
                        message: "the lease item came back without a token".into(),
                        retryable: true,
                    })?;
                tracing::info!(holder = %self.holder, token, "took the lease: leader");
                self.token = Some(token);
                self.until_ms = Some(until);
                Ok(Role::Leader {
                    token,
                    until_ms: until,
                })
            }
            Err(e) if conditional_failed(&e) => {
                let item = self.table.get(key(&self.key, LEASE_SK)).await?;
                Ok(Role::Standby {
                    holder: item
                        .as_ref()
                        .and_then(|i| i.get("holder"))
                        .and_then(|h| h.as_s().ok())
                        .cloned(),
                    until_ms: item.as_ref().and_then(|i| num(i, "expires_at")),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The condition every leader write carries: the lease item still names us with our
    /// token. `None` when we do not hold the lease (then do not write at all).
    pub fn fence(&self) -> Option<Write> {
        Some(self.journal_fence()?.check())
    }

    /// The fence for the state log's appends ([`crate::store::journal::Fence`]); `None`
    /// when we do not hold the lease.
    pub fn journal_fence(&self) -> Option<crate::store::journal::Fence> {
        Some(crate::store::journal::Fence {
            key: self.key.clone(),
            holder: self.holder.clone(),
            token: self.token?,
        })
    }

    /// Forgets the lease without waiting for it to expire (a clean shutdown): another
    /// instance can take over at once. Only if we still hold it.
    pub async fn release(&mut self) -> Result<(), AwsError> {
        let Some(token) = self.token.take() else {
            return Ok(());
        };
        let released = self
            .table
            .update(
                key(&self.key, LEASE_SK),
                &Expr::new("SET expires_at = :zero").value(":zero", n(0)),
                &self.ours(token),
            )
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes `item` (which must carry `pk` and `sk`) only if we still hold the lease, in one
    /// transaction with the fence. `Ok(false)`: refused because the lease is someone
    /// else's (or we never held it).
    pub async fn fenced_put(&self, item: Item) -> Result<bool, AwsError> {
        let Some(fence) = self.fence() else {
            return Ok(false);
        };
        let put = Write::Put {
            item,
            condition: None,
        };
        match self.table.transact(vec![fence, put]).await {
            Ok(()) => Ok(true),
            Err(TransactError::Cancelled { .. }) => Ok(false),
            Err(TransactError::Aws(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_runs_at_a_third_of_the_lease() {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        let lease = Lease::new(
            Client::from_conf(conf),
            "t",
            "rotationd",
            "host-a",
            Duration::from_secs(30),
        );
        assert_eq!(lease.renew_every(), Duration::from_secs(10));
        assert!(lease.fence().is_none(), "no fence before the lease is held");
        assert_eq!(
            Role::Standby {
                holder: None,
                until_ms: None
            }
            .label(),
            "standby"
        );
    }
}
