//! `rotationd setup-events`: the EventBridge rules that feed the events queue, their
//! targets, and the queue policy that lets only those rules send to it.
//!
//! Idempotent: every rule, target list and the policy statement is read first and written
//! only when it differs, so a second run changes nothing (and says so). Other statements in
//! the queue policy are kept.

use std::collections::BTreeMap;

use aws_sdk_eventbridge::types::{DeadLetterConfig, RetryPolicy, RuleState, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::config::EventsConfig;

/// The statement id rotationd owns in the queue policy.
pub const POLICY_SID: &str = "rotationd-eventbridge";
/// The target id rotationd owns on each rule.
pub const TARGET_ID: &str = "rotationd-queue";

/// One rule rotationd wants on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub description: String,
    pub pattern: Value,
}

/// The rules for `[events]`: Secrets Manager rotation events, IAM and IAM Identity Center
/// departures, and each custom departure and compromise source.
pub fn rules(
    events: &EventsConfig,
    requests: Option<&crate::config::RequestsConfig>,
) -> Vec<RuleSpec> {
    let mut out = vec![
        RuleSpec {
            name: "rotationd-secretsmanager-rotation".into(),
            description: "rotationd: Secrets Manager rotation started/succeeded/failed/abandoned"
                .into(),
            pattern: json!({
                "source": ["aws.secretsmanager"],
                "detail-type": ["AWS Service Event via CloudTrail"],
                "detail": { "eventName": ["RotationStarted", "RotationSucceeded", "RotationFailed", "RotationAbandoned"] }
            }),
        },
        RuleSpec {
            name: "rotationd-iam-departures".into(),
            description: "rotationd: IAM user deleted or console access removed".into(),
            pattern: json!({
                "source": ["aws.iam"],
                "detail-type": ["AWS API Call via CloudTrail"],
                "detail": { "eventName": ["DeleteUser", "DeleteLoginProfile"] }
            }),
        },
        RuleSpec {
            name: "rotationd-identity-center-departures".into(),
            description: "rotationd: IAM Identity Center user deleted or disabled".into(),
            pattern: json!({
                "source": ["aws.sso-directory", "aws.identitystore"],
                "detail-type": ["AWS API Call via CloudTrail"],
                "detail": { "eventName": ["DeleteUser", "DisableUser"] }
            }),
        },
    ];
    for (kind, list) in [
        ("departure", &events.departures),
        ("compromise", &events.compromises),
    ] {
        for (i, c) in list.iter().enumerate() {
            out.push(RuleSpec {
                name: format!("rotationd-{kind}-{}", i + 1),
                description: format!("rotationd: {kind} events from {}", c.source),
                pattern: json!({ "source": [c.source], "detail-type": [c.detail_type] }),
            });
        }
    }
    if let Some(r) = requests {
        out.push(RuleSpec {
            name: "rotationd-requests".into(),
            description: format!("rotationd: rotation and rollback requests from {}", r.source),
            pattern: json!({
                "source": [r.source],
                "detail-type": ["Rotation Requested", "Rotation Approved", "Rotation Denied", "Rollback Requested"]
            }),
        });
    }
    out
}

/// What one run did to each resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

impl Change {
    pub fn as_str(&self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        }
    }
}

/// Applies the rules, targets and queue policy; returns a line per resource.
pub async fn apply(
    events: &EventsConfig,
    requests: Option<&crate::config::RequestsConfig>,
    eb: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
) -> Result<Vec<(String, Change)>, AwsError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&events.queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueAttributes", e))?;
    let attrs = attrs.attributes.unwrap_or_default();
    let queue_arn = attrs
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .ok_or_else(|| AwsError {
            operation: "GetQueueAttributes",
            code: None,
            message: format!("queue {} has no QueueArn attribute", events.queue_url),
            retryable: false,
        })?;
    let mut report = Vec::new();
    let mut rule_arns = Vec::new();
    for spec in rules(events, requests) {
        let (arn, change) = apply_rule(events, eb, &spec).await?;
        report.push((format!("rule {}", spec.name), change));
        let change = apply_target(events, eb, &spec.name, &queue_arn).await?;
        report.push((format!("target {} -> queue", spec.name), change));
        rule_arns.push(arn);
    }
    let current = attrs
        .get(&QueueAttributeName::Policy)
        .and_then(|p| serde_json::from_str::<Value>(p).ok());
    let wanted = queue_policy(current.as_ref(), &queue_arn, &rule_arns);
    let change = if current.as_ref() == Some(&wanted) {
        Change::Unchanged
    } else {
        sqs.set_queue_attributes()
            .queue_url(&events.queue_url)
            .attributes(QueueAttributeName::Policy, wanted.to_string())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SetQueueAttributes", e))?;
        if current.is_some() {
            Change::Updated
        } else {
            Change::Created
        }
    };
    report.push(("queue policy".to_string(), change));
    Ok(report)
}

async fn apply_rule(
    events: &EventsConfig,
    eb: &aws_sdk_eventbridge::Client,
    spec: &RuleSpec,
) -> Result<(String, Change), AwsError> {
    let existing = eb
        .describe_rule()
        .name(&spec.name)
        .event_bus_name(&events.event_bus)
        .send()
        .await;
    let existing = match existing {
        Ok(r) => Some(r),
        Err(e) => {
            let e = AwsError::from_sdk("DescribeRule", e);
            if !e.is_not_found() {
                return Err(e);
            }
            None
        }
    };
    if let Some(r) = &existing {
        let same_pattern = r
            .event_pattern()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .is_some_and(|p| p == spec.pattern);
        let enabled = r.state() == Some(&RuleState::Enabled);
        if same_pattern && enabled && r.description() == Some(spec.description.as_str()) {
            return Ok((r.arn().unwrap_or_default().to_string(), Change::Unchanged));
        }
    }
    let out = eb
        .put_rule()
        .name(&spec.name)
        .event_bus_name(&events.event_bus)
        .event_pattern(spec.pattern.to_string())
        .state(RuleState::Enabled)
        .description(&spec.description)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutRule", e))?;
    let change = if existing.is_some() {
        Change::Updated
    } else {
        Change::Created
    };
    Ok((out.rule_arn().unwrap_or_default().to_string(), change))
}

async fn apply_target(
    events: &EventsConfig,
    eb: &aws_sdk_eventbridge::Client,
    rule: &str,
    queue_arn: &str,
) -> Result<Change, AwsError> {
    let listed = eb
        .list_targets_by_rule()
        .rule(rule)
        .event_bus_name(&events.event_bus)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTargetsByRule", e))?;
    let retry = (
        i32::try_from(events.max_retry_attempts).unwrap_or(185),
        i32::try_from(events.max_event_age.as_secs()).unwrap_or(86400),
    );
    let existing = listed.targets().iter().find(|t| t.id() == TARGET_ID);
    if let Some(t) = existing {
        let same = t.arn() == queue_arn
            && t.retry_policy()
                .map(|r| (r.maximum_retry_attempts(), r.maximum_event_age_in_seconds()))
                == Some((Some(retry.0), Some(retry.1)))
            && t.dead_letter_config().and_then(|d| d.arn())
                == events.dead_letter_queue_arn.as_deref();
        if same {
            return Ok(Change::Unchanged);
        }
    }
    let target = Target::builder()
        .id(TARGET_ID)
        .arn(queue_arn)
        .retry_policy(
            RetryPolicy::builder()
                .maximum_retry_attempts(retry.0)
                .maximum_event_age_in_seconds(retry.1)
                .build(),
        )
        .set_dead_letter_config(
            events
                .dead_letter_queue_arn
                .as_ref()
                .map(|arn| DeadLetterConfig::builder().arn(arn).build()),
        )
        .build()
        .map_err(|e| AwsError {
            operation: "PutTargets",
            code: None,
            message: e.to_string(),
            retryable: false,
        })?;
    let out = eb
        .put_targets()
        .rule(rule)
        .event_bus_name(&events.event_bus)
        .targets(target)
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
    Ok(if existing.is_some() {
        Change::Updated
    } else {
        Change::Created
    })
}

/// The queue policy with rotationd's statement set to allow exactly `rule_arns`; other
/// statements are kept as they are.
pub fn queue_policy(current: Option<&Value>, queue_arn: &str, rule_arns: &[String]) -> Value {
    let ours = json!({
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": { "Service": "events.amazonaws.com" },
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": { "ArnEquals": { "aws:SourceArn": rule_arns } }
    });
    let mut statements: Vec<Value> = current
        .and_then(|p| p.get("Statement"))
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter(|st| st.get("Sid").and_then(Value::as_str) != Some(POLICY_SID))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    statements.push(ours);
    let mut policy = BTreeMap::new();
    policy.insert("Version", json!("2012-10-17"));
    policy.insert("Statement", Value::Array(statements));
    json!(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_keeps_foreign_statements_and_replaces_ours() {
        let current = json!({
            "Version": "2012-10-17",
            "Statement": [
                { "Sid": "someone-else", "Effect": "Allow" },
                { "Sid": POLICY_SID, "Effect": "Allow", "Resource": "old" }
            ]
        });
        let p = queue_policy(
            Some(&current),
            "arn:aws:sqs:us-east-1:123456789012:q",
            &["arn:rule".into()],
        );
        let st = p["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Sid"], "someone-else");
        assert_eq!(st[1]["Resource"], "arn:aws:sqs:us-east-1:123456789012:q");
        assert_eq!(
            st[1]["Condition"]["ArnEquals"]["aws:SourceArn"][0],
            "arn:rule"
        );
        assert_eq!(st[1]["Principal"]["Service"], "events.amazonaws.com");
        // Applying it again is a fixed point.
        assert_eq!(
            queue_policy(
                Some(&p),
                "arn:aws:sqs:us-east-1:123456789012:q",
                &["arn:rule".into()]
            ),
            p
        );
    }
}
