//! Event helpers shared by the event, crash and hostile-input tests: an events queue and a
//! bus per test, the `[events]` config section, and events shaped as EventBridge delivers
//! them to SQS.
#![allow(dead_code)]

use chrono::Utc;
use serde_json::json;

use super::moto;
use super::rotationd::Env;

pub const ACCOUNT: &str = "123456789012";
pub const ALLOW_ACCOUNT: &str = r#"allowed_accounts = ["123456789012"]"#;

/// An events queue and a bus for one test; returns (queue_url, bus_name).
pub async fn queue_and_bus(env: &Env, test: &str) -> (String, String) {
    let name = moto::unique_name(test).replace('/', "-");
    let url = env
        .sqs
        .create_queue()
        .queue_name(format!("{name}-events"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let eb = aws_sdk_eventbridge::Client::new(&moto::sdk_config(&env.moto.endpoint()));
    eb.create_event_bus()
        .name(format!("{name}-bus"))
        .send()
        .await
        .unwrap();
    (url, format!("{name}-bus"))
}

/// Appends an `[events]` section to the env's config; `extra` holds more `[events]` keys.
pub fn add_events(env: &Env, queue_url: &str, bus: &str, extra: &str) {
    env.append_config(&format!(
        r#"
[events]
queue_url = "{queue_url}"
event_bus = "{bus}"
workers = 2
{extra}

[[events.departure]]
source = "com.example.hr"
detail_type = "Employee Offboarded"
user_pointer = "/detail/username"
"#
    ));
}

/// An IAM DeleteUser event as EventBridge delivers it to SQS.
pub fn iam_delete_user(user: &str, event_id: &str) -> String {
    json!({
        "version": "0",
        "id": format!("env-{event_id}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": ACCOUNT,
        "time": Utc::now().to_rfc3339(),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventSource": "iam.amazonaws.com",
            "eventName": "DeleteUser",
            "eventID": event_id,
            "eventTime": Utc::now().to_rfc3339(),
            "eventType": "AwsApiCall",
            "requestParameters": { "userName": user },
            "responseElements": null,
            "recipientAccountId": ACCOUNT
        }
    })
    .to_string()
}

/// A RotationFailed event as EventBridge delivers it to SQS.
pub fn rotation_failed(secret_arn: &str, event_id: &str, message: &str) -> String {
    json!({
        "version": "0",
        "id": format!("env-{event_id}"),
        "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.secretsmanager",
        "account": ACCOUNT,
        "time": Utc::now().to_rfc3339(),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "RotationFailed",
            "eventID": event_id,
            "eventTime": Utc::now().to_rfc3339(),
            "eventType": "AwsServiceEvent",
            "errorMessage": message,
            "additionalEventData": { "SecretId": secret_arn },
            "requestParameters": null,
            "recipientAccountId": ACCOUNT
        }
    })
    .to_string()
}

pub async fn send(env: &Env, queue_url: &str, body: &str) {
    env.sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

/// What is still on the queue: (visible, in flight) messages, as SQS counts them.
pub async fn left_on_queue(env: &Env, queue_url: &str) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = env
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attr = |name: A| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    (
        attr(A::ApproximateNumberOfMessages),
        attr(A::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Waits until the daemon is done with everything sent to `queue_url`: nothing left on the
/// queue (every message handled and deleted, which comes after its event is committed),
/// no trigger due or running and no attempt unfinished. A wrongly accepted event
/// (a duplicate, a hostile body) would have rotated by then: counting rotations after
/// this proves it did not.
pub async fn settled(env: &Env, queue_url: &str, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if left_on_queue(env, queue_url).await == ("0".to_string(), "0".to_string())
            && count(
                env,
                "SELECT (SELECT COUNT(*) FROM triggers WHERE status = 'running' OR \
                 (status = 'pending' AND COALESCE(not_before, 0) <= strftime('%s', 'now'))) \
                 + (SELECT COUNT(*) FROM attempts WHERE finished_at IS NULL)",
            ) == 0
        {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub async fn arn_of(env: &Env, name: &str) -> String {
    env.sm
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

pub fn count(env: &Env, sql: &str) -> i64 {
    env.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Sends `bodies` in one SendMessageBatch (at most ten, 256 KB in all); every entry must
/// be accepted.
pub async fn send_batch(env: &Env, queue_url: &str, bodies: &[&String]) {
    let mut req = env.sqs.send_message_batch().queue_url(queue_url);
    for (i, b) in bodies.iter().enumerate() {
        req = req.entries(
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(b.as_str())
                .build()
                .unwrap(),
        );
    }
    let r = req.send().await.unwrap();
    assert!(r.failed().is_empty(), "{:?}", r.failed());
}
