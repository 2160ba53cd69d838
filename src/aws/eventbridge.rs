//! EventBridge: the answers to CommandBridge requests put on the bus
//! (`crate::requests`), and the rules and targets `setup-events` keeps
//! (`crate::events::setup`).

use aws_config::SdkConfig;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::{
    DeadLetterConfig, PutEventsRequestEntry, RetryPolicy, RuleState, Target,
};

use super::{AwsError, RequestCounter};

/// The EventBridge client, in the daemon's own account and `[aws] region`.
#[derive(Clone, Debug)]
pub struct EventBridge {
    client: Client,
}

impl EventBridge {
    pub fn new(sdk: &SdkConfig, counter: &RequestCounter) -> EventBridge {
        EventBridge {
            client: super::counted_client!(aws_sdk_eventbridge, sdk, counter),
        }
    }

    /// The event bus called `name`.
    pub fn bus(&self, name: &str) -> Bus {
        Bus {
            client: self.client.clone(),
            name: name.to_string(),
        }
    }
}

/// One event bus.
#[derive(Clone, Debug)]
pub struct Bus {
    client: Client,
    name: String,
}

/// An event to put on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub source: String,
    pub detail_type: String,
    /// JSON.
    pub detail: String,
}

/// A rule as `DescribeRule` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub arn: Option<String>,
    /// JSON as stored.
    pub pattern: Option<String>,
    pub enabled: bool,
    pub description: Option<String>,
}

/// A rule's target that delivers to an SQS queue, with EventBridge's retry policy and
/// optional dead-letter queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueTarget {
    pub id: String,
    pub arn: String,
    pub max_retry_attempts: Option<i32>,
    pub max_event_age_seconds: Option<i32>,
    pub dead_letter_arn: Option<String>,
}

impl Bus {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Puts `events` (at most 10, PutEvents' limit) in one call. `Ok` holds, per event in
    /// order, the error message of an entry EventBridge refused (`None`: put).
    pub async fn put_events(&self, events: &[Event]) -> Result<Vec<Option<String>>, AwsError> {
        let mut req = self.client.put_events();
        for e in events {
            req = req.entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.name)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .build(),
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutEvents", e))?;
        let mut refused: Vec<Option<String>> = out
            .entries()
            .iter()
            .map(|e| {
                e.error_code().map(|_| {
                    e.error_message()
                        .unwrap_or("PutEvents entry failed")
                        .to_string()
                })
            })
            .collect();
        // An answer listing fewer entries than were sent says nothing about the rest:
        // counted as put, as the zip over the answer always did.
        refused.resize(events.len(), None);
        Ok(refused)
    }

    /// The rule called `name` on this bus; `None` when there is none.
    pub async fn rule(&self, name: &str) -> Result<Option<Rule>, AwsError> {
        match self
            .client
            .describe_rule()
            .name(name)
            .event_bus_name(&self.name)
            .send()
            .await
        {
            Ok(r) => Ok(Some(Rule {
                arn: r.arn().map(str::to_string),
                pattern: r.event_pattern().map(str::to_string),
                enabled: r.state() == Some(&RuleState::Enabled),
                description: r.description().map(str::to_string),
            })),
            Err(e) => {
                let e = AwsError::from_sdk("DescribeRule", e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// Creates or replaces the rule `name`, enabled; returns its ARN.
    pub async fn put_rule(
        &self,
        name: &str,
        pattern: &str,
        description: &str,
    ) -> Result<String, AwsError> {
        let out = self
            .client
            .put_rule()
            .name(name)
            .event_bus_name(&self.name)
            .event_pattern(pattern)
            .state(RuleState::Enabled)
            .description(description)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutRule", e))?;
        Ok(out.rule_arn().unwrap_or_default().to_string())
    }

    /// The targets of `rule` (their queue settings; other kinds of target show as queue
    /// targets without them).
    pub async fn targets(&self, rule: &str) -> Result<Vec<QueueTarget>, AwsError> {
        let listed = self
            .client
            .list_targets_by_rule()
            .rule(rule)
            .event_bus_name(&self.name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListTargetsByRule", e))?;
        Ok(listed
            .targets()
            .iter()
            .map(|t| QueueTarget {
                id: t.id().to_string(),
                arn: t.arn().to_string(),
                max_retry_attempts: t.retry_policy().and_then(|r| r.maximum_retry_attempts()),
                max_event_age_seconds: t
                    .retry_policy()
                    .and_then(|r| r.maximum_event_age_in_seconds()),
                dead_letter_arn: t
                    .dead_letter_config()
                    .and_then(|d| d.arn())
                    .map(str::to_string),
            })
            .collect())
    }

    /// Creates or replaces `target` on `rule`; an error when EventBridge refuses it.
    pub async fn put_queue_target(&self, rule: &str, target: &QueueTarget) -> Result<(), AwsError> {
        let built = Target::builder()
            .id(&target.id)
            .arn(&target.arn)
            .retry_policy(
                RetryPolicy::builder()
                    .set_maximum_retry_attempts(target.max_retry_attempts)
                    .set_maximum_event_age_in_seconds(target.max_event_age_seconds)
                    .build(),
            )
            .set_dead_letter_config(
                target
                    .dead_letter_arn
                    .as_ref()
                    .map(|arn| DeadLetterConfig::builder().arn(arn).build()),
            )
            .build()
            .map_err(|e| AwsError::build("PutTargets", e))?;
        let out = self
            .client
            .put_targets()
            .rule(rule)
            .event_bus_name(&self.name)
            .targets(built)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutTargets", e))?;
        if out.failed_entry_count() > 0 {
            let why = out
                .failed_entries()
                .iter()
                .filter_map(|f| f.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(AwsError {
                operation: "PutTargets",
                code: None,
                message: format!("EventBridge refused the target: {why}"),
                retryable: false,
            });
        }
        Ok(())
    }
}
