//! CommandBridge requests on moto, end to end: the test plays CommandBridge, putting
//! `Rotation Requested` / `Approved` / `Denied` / `Rollback Requested` events on the bus
//! (routed to rotationd's queue by the rule `setup-events` creates), and reads rotationd's
//! `Rotation Request Updated` answers from a queue a test rule routes them to.

mod common;

use std::time::Duration;

use common::config::{Body, selector};
use common::events::{add_events, queue_and_bus};
use common::moto;
use common::rotationd::{Env, queue_with_arn, rows, stderr, subscribed_topic, terminate};
use serde_json::{Value, json};

struct Bridge {
    env: Env,
    eb: aws_sdk_eventbridge::Client,
    bus: String,
    /// Where the test rule delivers rotationd's answers.
    answers: String,
    /// The approvers' topic's queue.
    approvers: String,
    secret: String,
}

async fn bridge(test: &str, extra_requests: &str) -> Bridge {
    let m = moto::shared();
    // Counting RotateSecret needs moto's request log.
    moto::recording();
    let conf = moto::sdk_config(&m.endpoint());
    let sns = aws_sdk_sns::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let (approvers_topic, approvers) =
        subscribed_topic(&sns, &sqs, &format!("{test}-approvers")).await;
    let prefix = moto::unique_name(&format!("req/{test}/"));
    let env = Env::new(test, &Body::new().with(selector(&prefix)).render()).await;
    let (queue_url, bus) = queue_and_bus(&env, test).await;
    add_events(&env, &queue_url, &bus, "");
    env.append_config(&format!(
        r#"
[requests]
approvers_topic_arn = "{approvers_topic}"
levels = {{ "lead" = "L3", "boss" = "L3", "arn:aws:iam::123456789012:user/mid" = "L2" }}
{extra_requests}
"#
    ));
    let secret = format!("{prefix}db");
    env.rotatable_secret(&secret).await;
    let o = env.cli(&["setup-events"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("rotationd-requests")
            || stderr(&o).contains("rotationd-requests"),
        "setup-events routes the requests: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    // The test's own rule: rotationd's answers to a queue the test reads.
    let eb = aws_sdk_eventbridge::Client::new(&conf);
    let (answers, answers_arn) = queue_with_arn(
        &sqs,
        &moto::unique_name(&format!("{test}-answers")).replace('/', "-"),
    )
    .await;
    eb.put_rule()
        .name(format!("{test}-answers"))
        .event_bus_name(&bus)
        .event_pattern(
            json!({ "source": ["rotationd"], "detail-type": ["Rotation Request Updated"] })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule(format!("{test}-answers"))
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("answers")
                .arn(answers_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    Bridge {
        env,
        eb,
        bus,
        answers,
        approvers,
        secret,
    }
}

impl Bridge {
    async fn put(&self, detail_type: &str, detail: Value) {
        let out = self
            .eb
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source("commandbridge")
                    .detail_type(detail_type)
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_entry_count(), 0);
    }

    /// rotationd's answers so far (each `detail`), in arrival order, waiting until `n`.
    async fn answers(&self, n: usize, all: &mut Vec<Value>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while all.len() < n && std::time::Instant::now() < deadline {
            let r = self
                .env
                .sqs
                .receive_message()
                .queue_url(&self.answers)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in r.messages() {
                let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                assert_eq!(envelope["source"], "rotationd");
                assert_eq!(envelope["detail-type"], "Rotation Request Updated");
                all.push(envelope["detail"].clone());
                self.env
                    .sqs
                    .delete_message()
                    .queue_url(&self.answers)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        assert!(all.len() >= n, "{n} answers expected, got {all:#?}");
    }

    fn request_state(&self, id: &str) -> Option<String> {
        let db = self.env.db();
        db.query_row("SELECT state FROM requests WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .ok()
    }
}

#[tokio::test]
async fn an_l1_request_approved_by_another_l3_rotates_and_every_step_is_answered() {
    let b = bridge("req-approve", "").await;
    let (mut daemon, log) = b.env.daemon_ready(&[]).await;
    let before = b.env.stages(&b.secret).await;
    let old = Env::version_with(&before, "AWSCURRENT").unwrap();

    // junior is not listed (L1) and claims L3: the claim is recorded and ignored.
    b.put(
        "Rotation Requested",
        json!({
            "request_id": "r-100", "secret": b.secret, "ticket": "INC-100",
            "reason": "key pasted in a chat", "requester": "junior", "level": "L3",
            "emergency": true
        }),
    )
    .await;
    let mut got = Vec::new();
    b.answers(1, &mut got).await;
    assert_eq!(got[0]["state"], "awaiting_approval", "{got:#?}");
    assert_eq!(got[0]["level"], "L1");
    assert_eq!(b.env.rotations_by_rotationd(&b.secret), 0);
    let notices = b.env.messages(&b.approvers, Duration::from_secs(10)).await;
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices[0].1["kind"], "approval_requested");
    assert_eq!(notices[0].1["details"]["request_id"], "r-100");

    // Self-approval, then an L2's approval: both refused, the request still waits.
    b.put(
        "Rotation Approved",
        json!({ "request_id": "r-100", "approver": "junior", "level": "L3" }),
    )
    .await;
    b.answers(2, &mut got).await;
    b.put(
        "Rotation Approved",
        json!({ "request_id": "r-100", "approver": "arn:aws:iam::123456789012:user/mid" }),
    )
    .await;
    b.answers(3, &mut got).await;
    assert!(
        got[1]["reason"]
            .as_str()
            .unwrap()
            .contains("self-approval refused"),
        "{got:#?}"
    );
    assert!(
        got[2]["reason"]
            .as_str()
            .unwrap()
            .contains("only L3 may approve"),
        "{got:#?}"
    );
    assert_eq!(
        b.request_state("r-100").as_deref(),
        Some("awaiting_approval")
    );
    assert_eq!(b.env.rotations_by_rotationd(&b.secret), 0);

    // An L3 other than the requester approves: it rotates (emergency: at once).
    b.put(
        "Rotation Approved",
        json!({ "request_id": "r-100", "approver": "lead", "comment": "go" }),
    )
    .await;
    b.answers(5, &mut got).await;
    assert_eq!(got[3]["state"], "executing", "{got:#?}");
    assert_eq!(got[3]["decided_by"], "lead");
    assert_eq!(got[4]["state"], "completed", "{got:#?}");
    assert_eq!(got[4]["attempt"]["state"], "succeeded");
    let after = b.env.stages(&b.secret).await;
    let new = Env::version_with(&after, "AWSCURRENT").unwrap();
    assert_ne!(new, old);
    assert_eq!(got[4]["attempt"]["new_version"], new.as_str());
    assert_eq!(b.env.rotations_by_rotationd(&b.secret), 1);
    assert_eq!(b.request_state("r-100").as_deref(), Some("completed"));
    // The whole history is in the audit log, with who, ticket and reason.
    let audit = rows(
        &b.env.db(),
        "SELECT action || ' ' || outcome || ' ' || actor FROM audit \
         WHERE action IN ('rotation_requested', 'rotation_approved', 'rotate', 'rotate_request') ORDER BY id",
    );
    assert_eq!(
        audit,
        vec![
            "rotation_requested awaiting_approval junior",
            "rotation_approved refused junior",
            "rotation_approved refused arn:aws:iam::123456789012:user/mid",
            "rotation_approved executing lead",
            "rotate ok request:junior",
            "rotate_request completed rotationd",
        ],
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // Triggers and alerts are in the history too.
    let more = rows(
        &b.env.db(),
        "SELECT action || ' ' || outcome || ' ' || actor FROM audit \
         WHERE action IN ('trigger', 'alert') ORDER BY id",
    );
    assert!(
        more.contains(&"alert approval_requested rotationd".to_string()),
        "{more:?}"
    );
    assert!(
        more.contains(&"trigger manual request:junior".to_string()),
        "{more:?}"
    );
    // The attempt's audit entry carries when each stage began, and when the rotation
    // function's createSecret and finishSecret were seen (moto: both at the first look).
    let stages = rows(
        &b.env.db(),
        "SELECT group_concat(key, ',') FROM (SELECT key FROM audit, \
         json_each(audit.detail, '$.stages') WHERE action = 'rotate' ORDER BY key)",
    );
    assert_eq!(
        stages,
        vec![
            "createSecret,finishSecret,monitoring,preflight,rotate_requested,succeeded,validating"
        ]
    );
    let ticket = rows(&b.env.db(), "SELECT ticket FROM attempts");
    assert_eq!(ticket, vec!["INC-100"]);
    terminate(&mut daemon, Duration::from_secs(10));
}

#[tokio::test]
async fn rollback_is_l3_only_and_an_unapproved_request_expires() {
    let b = bridge("req-rollback", r#"approval_timeout = "3s""#).await;
    let (mut daemon, _log) = b.env.daemon_ready(&[]).await;
    let before = b.env.stages(&b.secret).await;
    let current = Env::version_with(&before, "AWSCURRENT").unwrap();
    let previous = Env::version_with(&before, "AWSPREVIOUS").unwrap();

    // An L2's rollback is refused and audited; nothing moves.
    b.put(
        "Rollback Requested",
        json!({ "request_id": "rb-1", "secret": b.secret, "ticket": "INC-5", "reason": "app down",
                "requester": "arn:aws:iam::123456789012:user/mid", "level": "L3" }),
    )
    .await;
    let mut got = Vec::new();
    b.answers(1, &mut got).await;
    assert_eq!(got[0]["state"], "refused", "{got:#?}");
    assert!(
        got[0]["reason"]
            .as_str()
            .unwrap()
            .contains("rollback is L3 only")
    );
    let same = b.env.stages(&b.secret).await;
    assert_eq!(Env::version_with(&same, "AWSCURRENT").unwrap(), current);

    // An L3's rollback goes through.
    b.put(
        "Rollback Requested",
        json!({ "request_id": "rb-2", "secret": b.secret, "ticket": "INC-5", "reason": "app down",
                "requester": "boss" }),
    )
    .await;
    b.answers(3, &mut got).await;
    assert_eq!(got[1]["state"], "executing", "{got:#?}");
    assert_eq!(got[2]["state"], "completed", "{got:#?}");
    let after = b.env.stages(&b.secret).await;
    assert_eq!(Env::version_with(&after, "AWSCURRENT").unwrap(), previous);

    // A planned L1 request that nobody approves closes after approval_timeout.
    b.put(
        "Rotation Requested",
        json!({ "request_id": "r-200", "secret": b.secret, "ticket": "CHG-200",
                "reason": "quarterly", "requester": "junior" }),
    )
    .await;
    b.answers(5, &mut got).await;
    assert_eq!(got[3]["state"], "awaiting_approval", "{got:#?}");
    assert_eq!(got[4]["state"], "expired", "{got:#?}");
    assert!(
        got[4]["reason"]
            .as_str()
            .unwrap()
            .contains("no L3 approval within 3s")
    );
    assert_eq!(b.request_state("r-200").as_deref(), Some("expired"));
    // A late approval changes nothing.
    b.put(
        "Rotation Approved",
        json!({ "request_id": "r-200", "approver": "lead" }),
    )
    .await;
    b.answers(6, &mut got).await;
    assert_eq!(got[5]["state"], "expired");
    assert_eq!(b.env.rotations_by_rotationd(&b.secret), 0);
    let audit = rows(
        &b.env.db(),
        "SELECT action || ' ' || outcome FROM audit WHERE action LIKE 'rollback%' ORDER BY id",
    );
    assert_eq!(
        audit,
        vec![
            "rollback_requested refused",
            "rollback_requested executing",
            "rollback_request completed"
        ]
    );
    terminate(&mut daemon, Duration::from_secs(10));
}

#[tokio::test]
async fn an_unapproved_emergency_request_pages_security_then_closes() {
    let b = bridge("req-emergency", r#"emergency_approval_timeout = "4s""#).await;
    let (mut daemon, _log) = b.env.daemon_ready(&[]).await;
    b.put(
        "Rotation Requested",
        json!({ "request_id": "r-300", "secret": b.secret, "ticket": "INC-300",
                "reason": "token in a public repo", "requester": "junior", "emergency": true }),
    )
    .await;
    let mut got = Vec::new();
    b.answers(2, &mut got).await;
    assert_eq!(got[0]["state"], "awaiting_approval", "{got:#?}");
    assert_eq!(got[1]["state"], "expired", "{got:#?}");
    assert!(got[1]["reason"].as_str().unwrap().contains("within 4s"));
    let pages: Vec<Value> = b
        .env
        .security_messages(Duration::from_secs(5))
        .await
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m["kind"] == "approval_overdue")
        .collect();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0]["severity"], "P1");
    assert_eq!(pages[0]["details"]["request_id"], "r-300");
    assert_eq!(b.env.rotations_by_rotationd(&b.secret), 0);
    terminate(&mut daemon, Duration::from_secs(10));
}

/// The review's log injection: a requester name with a line break forged a line in the
/// human log format. The name is escaped: one event, one line.
#[tokio::test]
async fn a_requester_with_a_line_break_cannot_forge_a_log_line() {
    let b = bridge("req-inject", "").await;
    let (mut daemon, log) = b.env.daemon_ready(&[]).await;
    let forged = "2026-12-06T03:00:00.000000Z  INFO rotationd::requests: request decided request=r-999 actor=lead outcome=executing";
    b.put(
        "Rotation Requested",
        json!({ "request_id": "r-400", "secret": b.secret, "ticket": "CHG-400",
                "reason": "quarterly", "requester": format!("junior\n{forged}") }),
    )
    .await;
    let mut got = Vec::new();
    b.answers(1, &mut got).await;
    assert_eq!(got[0]["state"], "awaiting_approval", "{got:#?}");
    terminate(&mut daemon, Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap();
    let decided: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request decided"))
        .collect();
    assert_eq!(decided.len(), 1, "{text}");
    assert!(decided[0].contains("r-400"), "{}", decided[0]);
    assert!(
        decided[0].contains("junior\\n2026-12-06T03:00:00"),
        "{}",
        decided[0]
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-12-06T03:00:00.000000Z")),
        "a forged line:\n{text}"
    );
}
