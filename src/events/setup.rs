//! `rotationd setup-events`: the EventBridge rules that feed the events queue, their
//! targets, and the queue policy that lets only those rules send to it.
//!
//! Idempotent: every rule, target list and the policy statement is read first and written
//! only when it differs, so a second run changes nothing (and says so). Other statements in
//! the queue policy are kept.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::aws::eventbridge::{Bus, EventBridge, QueueTarget};
use crate::aws::sqs::Sqs;
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
    eb: &EventBridge,
    sqs: &Sqs,
) -> Result<Vec<(String, Change)>, AwsError> {
    let queue = sqs.queue(&events.queue_url);
    let bus = eb.bus(&events.event_bus);
    let attrs = queue.attributes().await?;
    let queue_arn = attrs.arn.ok_or_else(|| AwsError {
        operation: "GetQueueAttributes",
        code: None,
        message: format!("queue {} has no QueueArn attribute", events.queue_url),
        retryable: false,
    })?;
    let mut report = Vec::new();
    let mut rule_arns = Vec::new();
    for spec in rules(events, requests) {
        let (arn, change) = apply_rule(&bus, &spec).await?;
        report.push((format!("rule {}", spec.name), change));
        let change = apply_target(events, &bus, &spec.name, &queue_arn).await?;
        report.push((format!("target {} -> queue", spec.name), change));
        rule_arns.push(arn);
    }
    let current = attrs
        .policy
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok());
    let wanted = queue_policy(current.as_ref(), &queue_arn, &rule_arns);
    let change = if current.as_ref() == Some(&wanted) {
        Change::Unchanged
    } else {
        queue.set_policy(&wanted.to_string()).await?;
        if current.is_some() {
            Change::Updated
        } else {
            Change::Created
        }
    };
    report.push(("queue policy".to_string(), change));
    Ok(report)
}

async fn apply_rule(bus: &Bus, spec: &RuleSpec) -> Result<(String, Change), AwsError> {
    let existing = bus.rule(&spec.name).await?;
    if let Some(r) = &existing {
        let same_pattern = r
            .pattern
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .is_some_and(|p| p == spec.pattern);
        if same_pattern && r.enabled && r.description.as_deref() == Some(spec.description.as_str())
        {
            return Ok((r.arn.clone().unwrap_or_default(), Change::Unchanged));
        }
    }
    let arn = bus
        .put_rule(&spec.name, &spec.pattern.to_string(), &spec.description)
        .await?;
    let change = if existing.is_some() {
        Change::Updated
    } else {
        Change::Created
    };
    Ok((arn, change))
}

async fn apply_target(
    events: &EventsConfig,
    bus: &Bus,
    rule: &str,
    queue_arn: &str,
) -> Result<Change, AwsError> {
    let listed = bus.targets(rule).await?;
    let wanted = QueueTarget {
        id: TARGET_ID.to_string(),
        arn: queue_arn.to_string(),
        max_retry_attempts: Some(i32::try_from(events.max_retry_attempts).unwrap_or(185)),
        max_event_age_seconds: Some(i32::try_from(events.max_event_age.as_secs()).unwrap_or(86400)),
        dead_letter_arn: events.dead_letter_queue_arn.clone(),
    };
    let existing = listed.iter().find(|t| t.id == TARGET_ID);
    if existing == Some(&wanted) {
        return Ok(Change::Unchanged);
    }
    bus.put_queue_target(rule, &wanted).await?;
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
