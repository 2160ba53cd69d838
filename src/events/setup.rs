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
/// The statement that denies every other sender: the queue is rotationd's front door (a
/// departure, a compromise or an approval sent to it is acted on), so write access to it is
/// L3 access.
pub const DENY_SID: &str = "rotationd-deny-other-senders";
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

/// The queue policy with rotationd's statements: allow exactly `rule_arns` to send, and
/// deny `sqs:SendMessage` to every sender that is not one of them (an explicit Deny wins
/// over any Allow, in the queue policy or in a principal's IAM policy; a sender without
/// `aws:SourceArn`, i.e. anyone calling SendMessage directly, is denied too). Other
/// statements are kept as they are.
pub fn queue_policy(current: Option<&Value>, queue_arn: &str, rule_arns: &[String]) -> Value {
    let allow = json!({
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": { "Service": "events.amazonaws.com" },
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": { "ArnEquals": { "aws:SourceArn": rule_arns } }
    });
    let deny = json!({
        "Sid": DENY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": { "ArnNotEquals": { "aws:SourceArn": rule_arns } }
    });
    let mut statements: Vec<Value> = current
        .and_then(|p| p.get("Statement"))
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter(|st| {
                    let sid = st.get("Sid").and_then(Value::as_str);
                    sid != Some(POLICY_SID) && sid != Some(DENY_SID)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    statements.push(allow);
    statements.push(deny);
    let mut policy = BTreeMap::new();
    policy.insert("Version", json!("2012-10-17"));
    policy.insert("Statement", Value::Array(statements));
    json!(policy)
}

/// Who besides `rule_arns` may send to the queue under `policy`: one line per problem, none
/// when only those rules can. The test is the guard itself: a Deny of `sqs:SendMessage`
/// (or `sqs:*`, `*`) to every principal unless `aws:SourceArn` is one of `rule_arns`. Without
/// it, whatever the Allow statements say, any principal of the account whose IAM policy
/// allows `sqs:SendMessage` can send; the Allows that open the queue further are named.
pub fn open_senders(policy: Option<&Value>, rule_arns: &[String]) -> Vec<String> {
    let statements: Vec<&Value> = policy
        .and_then(|p| p.get("Statement"))
        .and_then(Value::as_array)
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let sends = |st: &Value| {
        let action = st.get("Action");
        let one = |a: &Value| {
            a.as_str().is_some_and(|a| {
                matches!(
                    a.to_ascii_lowercase().as_str(),
                    "sqs:sendmessage" | "sqs:*" | "*"
                )
            })
        };
        match action {
            Some(Value::Array(list)) => list.iter().any(one),
            Some(a) => one(a),
            None => false,
        }
    };
    let everyone = |st: &Value| match st.get("Principal") {
        Some(Value::String(p)) => p == "*",
        Some(Value::Object(o)) => o.get("AWS").is_some_and(|a| a == "*"),
        _ => false,
    };
    let arns_of = |v: Option<&Value>| -> Option<Vec<String>> {
        match v? {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
            _ => None,
        }
    };
    let guard = statements.iter().find(|st| {
        st.get("Effect").and_then(Value::as_str) == Some("Deny")
            && sends(st)
            && everyone(st)
            && st
                .get("Condition")
                .and_then(|c| c.get("ArnNotEquals"))
                .and_then(|c| arns_of(c.get("aws:SourceArn")))
                .is_some_and(|allowed| allowed.iter().all(|a| rule_arns.contains(a)))
    });
    if guard.is_some() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "no statement denies sqs:SendMessage to senders other than rotationd's rules: any principal whose IAM policy allows sqs:SendMessage on the queue can send departures, compromises and approvals; run rotationd setup-events to add `{DENY_SID}`"
    )];
    for st in &statements {
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") || !sends(st) {
            continue;
        }
        let only_our_rules = st
            .get("Condition")
            .and_then(|c| c.get("ArnEquals"))
            .and_then(|c| arns_of(c.get("aws:SourceArn")))
            .is_some_and(|allowed| allowed.iter().all(|a| rule_arns.contains(a)));
        if !only_our_rules {
            out.push(format!(
                "statement {} allows sqs:SendMessage to {}",
                st.get("Sid").and_then(Value::as_str).unwrap_or("(no Sid)"),
                st.get("Principal")
                    .map_or("?".to_string(), Value::to_string)
            ));
        }
    }
    out
}

/// The ARN EventBridge gives rule `name` on `bus` in the account-region of `queue_arn`
/// (the queue and the bus are the daemon's own): `rule/NAME` on the default bus,
/// `rule/BUS/NAME` on another.
pub fn rule_arn(queue_arn: &str, bus: &str, name: &str) -> Option<String> {
    let q = crate::arn::Arn::parse(queue_arn).ok()?;
    let path = if bus == "default" {
        name.to_string()
    } else {
        format!("{bus}/{name}")
    };
    Some(format!(
        "arn:{}:events:{}:{}:rule/{path}",
        q.partition, q.region, q.account
    ))
}

/// [`open_senders`] for the configured queue: its policy read now, the rules named as
/// `setup-events` names them.
pub async fn check_queue(
    events: &EventsConfig,
    requests: Option<&crate::config::RequestsConfig>,
    sqs: &Sqs,
) -> Result<Vec<String>, AwsError> {
    let attrs = sqs.queue(&events.queue_url).attributes().await?;
    let queue_arn = attrs.arn.unwrap_or_default();
    let rule_arns: Vec<String> = rules(events, requests)
        .iter()
        .filter_map(|r| rule_arn(&queue_arn, &events.event_bus, &r.name))
        .collect();
    let policy = attrs
        .policy
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok());
    Ok(open_senders(policy.as_ref(), &rule_arns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "arn:aws:sqs:us-east-1:123456789012:rotationd-events";

    #[test]
    fn the_written_policy_lets_only_our_rules_send() {
        let rules = vec![
            "arn:aws:events:us-east-1:123456789012:rule/rotationd-departures".to_string(),
            "arn:aws:events:us-east-1:123456789012:rule/rotationd-requests".to_string(),
        ];
        // What setup-events wrote before: an Allow for the rules, nothing denied.
        let mut old = queue_policy(None, Q, &rules);
        old["Statement"].as_array_mut().unwrap().pop();
        let findings = open_senders(Some(&old), &rules);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("no statement denies"));
        // No policy at all: the same.
        assert_eq!(open_senders(None, &rules).len(), 1);
        // Someone else's Allow for a whole account is named.
        let mut wide = old.clone();
        wide["Statement"].as_array_mut().unwrap().push(json!({
            "Sid": "ops-debug", "Effect": "Allow",
            "Principal": { "AWS": "arn:aws:iam::123456789012:root" },
            "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"], "Resource": Q
        }));
        let findings = open_senders(Some(&wide), &rules);
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings[1].contains("ops-debug"), "{findings:?}");

        // What it writes now: closed, and it stays closed with the Allow above kept.
        let now = queue_policy(Some(&wide), Q, &rules);
        assert_eq!(open_senders(Some(&now), &rules), Vec::<String>::new());
        let st = now["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 3, "other statements are kept");
        let deny = st.iter().find(|s| s["Sid"] == DENY_SID).unwrap();
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Principal"], "*");
        assert_eq!(
            deny["Condition"]["ArnNotEquals"]["aws:SourceArn"],
            json!(rules)
        );
        // A guard that lets another rule through is not one.
        let other = vec!["arn:aws:events:us-east-1:999999999999:rule/theirs".to_string()];
        let leaky = queue_policy(None, Q, &[rules.clone(), other].concat());
        let findings = open_senders(Some(&leaky), &rules);
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings[0].contains("no statement denies"), "{findings:?}");
        assert!(findings[1].contains(POLICY_SID), "{findings:?}");
    }

    #[test]
    fn rule_arns_are_named_as_eventbridge_names_them() {
        assert_eq!(
            rule_arn(Q, "default", "rotationd-departures").as_deref(),
            Some("arn:aws:events:us-east-1:123456789012:rule/rotationd-departures")
        );
        assert_eq!(
            rule_arn(Q, "ops-bus", "rotationd-departures").as_deref(),
            Some("arn:aws:events:us-east-1:123456789012:rule/ops-bus/rotationd-departures")
        );
    }

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
        assert_eq!(st.len(), 3);
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
