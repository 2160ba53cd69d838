//! Event triggers end to end: the real binary against moto's EventBridge, SQS, SNS and
//! Secrets Manager.
//!
//! Each test owns its queue, bus, topic and secrets (unique names), so they share one
//! server; rotations are counted on the server by rotationd's User-Agent and secret.

mod common;

use std::time::Duration;

use chrono::{Timelike, Utc};
use common::config::{Body, secret, table};
use common::events::*;
use common::moto::{self, recording};
use common::rotationd::{Env, rows, stderr, terminate};
use serde_json::json;

#[tokio::test]
async fn setup_events_is_idempotent_and_wires_the_queue() {
    recording();
    let env = Env::new("setup", "").await;
    let (queue_url, bus) = queue_and_bus(&env, "setup").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);

    // Before: a queue without a policy is open to any principal allowed SendMessage; the
    // check says so and fails, and status warns.
    let check = env.cli(&["setup-events", "--check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(
        stderr(&check).contains("no statement denies sqs:SendMessage"),
        "{}",
        stderr(&check)
    );
    assert!(
        stderr(&check).contains("write access to it is L3 access"),
        "{}",
        stderr(&check)
    );
    let status = env.cli(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    assert!(
        stderr(&status).contains("warning: events queue policy: no statement denies"),
        "{}",
        stderr(&status)
    );

    let first = env.cli(&["setup-events"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    // Three built-in rules, one custom departure source: a rule and a target each, and the policy.
    assert_eq!(out.matches(": created").count(), 9, "{out}");
    assert!(out.contains("rule rotationd-departure-1: created"), "{out}");

    let second = env.cli(&["setup-events"]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let out2 = String::from_utf8_lossy(&second.stdout).into_owned();
    assert_eq!(out2.matches(": unchanged").count(), 9, "{out2}");
    assert!(
        out2.contains(&format!("0 change(s) on bus {bus}")),
        "{out2}"
    );
    let writes = env
        .moto
        .rotationd_requests()
        .into_iter()
        .filter(|r| {
            matches!(r.operation.as_str(), "PutRule" | "PutTargets")
                && String::from_utf8_lossy(&r.body).contains(&bus)
        })
        .count();
    assert_eq!(writes, 8, "the second run wrote again");

    let policy = env
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::Policy]
        .clone();
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    let st = &policy["Statement"][0];
    assert_eq!(st["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(st["Action"], "sqs:SendMessage");
    let rules = st["Condition"]["ArnEquals"]["aws:SourceArn"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 4);
    // Everyone else is denied (moto does not enforce queue policies: the document is the
    // proof, its logic is unit-tested in events::setup).
    let deny = &policy["Statement"][1];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Principal"], "*");
    assert_eq!(deny["Action"], "sqs:SendMessage");
    assert_eq!(deny["Condition"]["ArnNotEquals"]["aws:SourceArn"], rules);
    // The rule ARNs rotationd expects are the ones EventBridge gave.
    let check = env.cli(&["setup-events", "--check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("only rotationd's EventBridge rules can send"),
        "{}",
        stderr(&check)
    );
    let status = env.cli(&["status"]);
    assert!(
        !stderr(&status).contains("events queue policy"),
        "{}",
        stderr(&status)
    );
}

#[tokio::test]
async fn a_departure_rotates_what_the_user_could_reach_once() {
    recording();
    let alice_direct = moto::unique_name("ev/alice-direct");
    let alice_group = moto::unique_name("ev/alice-group");
    let bob_only = moto::unique_name("ev/bob-only");
    let carol = moto::unique_name("ev/carol");
    let erin = moto::unique_name("ev/erin");
    let body = Body::new()
        .with(
            table("[[group]]")
                .set("name", "dba")
                .list("members", ["alice", "dave"]),
        )
        .with(secret(&alice_direct).custodians(["alice"]))
        .with(secret(&alice_group).custodians(["group:dba"]))
        .with(secret(&bob_only).custodians(["bob"]))
        .with(secret(&carol).custodians(["carol"]))
        .with(secret(&erin).custodians(["erin"]));
    let env = Env::new("departure", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "departure").await;
    // moto's put_events leaves `account` out of the envelope (EventBridge always sets
    // it), so this test accepts any account; the hostile test covers the filter.
    add_events(&env, &queue_url, &bus, "");
    for s in [&alice_direct, &alice_group, &bob_only, &carol, &erin] {
        env.rotatable_secret(s).await;
    }
    let o = env.cli(&["setup-events"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let mut daemon = env.daemon(&[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    // alice leaves (IAM), delivered twice as SQS may; carol leaves through the HR system,
    // routed by the EventBridge rule setup-events created.
    let event = iam_delete_user("alice", "5c6a1f0e-0000-4000-8000-00000000a11c");
    send(&env, &queue_url, &event).await;
    send(&env, &queue_url, &event).await;
    // erin's departure claims to happen 20 hours from now: an event time is evidence, not
    // authority, and the SLA counts from the receipt.
    let mut future: serde_json::Value = serde_json::from_str(&iam_delete_user(
        "erin",
        "5c6a1f0e-0000-4000-8000-0000000e0e11",
    ))
    .unwrap();
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(20)).to_rfc3339();
    future["time"] = json!(ahead);
    future["detail"]["eventTime"] = json!(ahead);
    send(&env, &queue_url, &future.to_string()).await;
    let eb = aws_sdk_eventbridge::Client::new(&moto::sdk_config(&env.moto.endpoint()));
    eb.put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(&bus)
                .source("com.example.hr")
                .detail_type("Employee Offboarded")
                .detail(json!({ "username": "carol" }).to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();

    let done = env
        .eventually(Duration::from_secs(60), || {
            let n = count(&env, "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'");
            (n >= 4).then_some(n)
        })
        .await;
    // The duplicate was received, and everything on the queue handled: had it been taken
    // for a new departure, its rotation would have run by now.
    let received = env
        .eventually(Duration::from_secs(30), || {
            let m = env.metrics();
            m.contains("rotationd_events_received_total{kind=\"departure\",source=\"sqs\"} 4")
                .then_some(())
        })
        .await;
    let settled = settled(&env, &queue_url, Duration::from_secs(60)).await;
    let metrics = env.metrics();
    let status = terminate(&mut daemon, Duration::from_secs(60));
    let audit = rows(
        &env.db(),
        "SELECT action || ' ' || outcome || ' ' || COALESCE(reason, '') || ' ' || COALESCE(detail, '') FROM audit",
    );
    assert_eq!(done, Some(4), "departures did not rotate: {audit:#?}");
    assert!(
        received.is_some() && settled,
        "not all handled: {metrics}\n{audit:#?}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_eq!(env.rotations_by_rotationd(&alice_direct), 1);
    assert_eq!(env.rotations_by_rotationd(&alice_group), 1);
    assert_eq!(env.rotations_by_rotationd(&carol), 1);
    assert_eq!(
        env.rotations_by_rotationd(&bob_only),
        0,
        "bob did not leave"
    );
    // Deadline = event time + 24 h, kept on the trigger.
    let deadline: i64 = env
        .db()
        .query_row(
            "SELECT deadline - created_at FROM triggers WHERE kind = 'departure' AND secret = ?1",
            [&alice_direct],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        (86_390..=86_400).contains(&deadline),
        "deadline {deadline}s after the event"
    );
    let (erin_deadline, clamped): (i64, i64) = env
        .db()
        .query_row(
            "SELECT deadline - created_at, \
             (SELECT COUNT(*) FROM audit WHERE json_extract(detail, '$.event_time_in_future') = ?2) \
             FROM triggers WHERE kind = 'departure' AND secret = ?1",
            [&erin, &ahead],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        (86_390..=86_400).contains(&erin_deadline),
        "a departure dated 20 h ahead got a deadline {erin_deadline}s after its receipt"
    );
    assert_eq!(clamped, 1, "the future event time is recorded: {audit:#?}");
    assert!(
        metrics.contains("rotationd_events_received_total{kind=\"departure\",source=\"sqs\"} 4"),
        "{metrics}"
    );
    // The queue is drained: everything handled was deleted.
    let left = env
        .sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(left.messages().is_empty());
}

#[tokio::test]
async fn hostile_bodies_are_audited_and_counted_and_never_act() {
    recording();
    let victim = moto::unique_name("ev/victim");
    let body = Body::new().with(secret(&victim).custodians(["mallory", "erin"]));
    let env = Env::new("hostile", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "hostile").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.rotatable_secret(&victim).await;
    let valid = iam_delete_user("erin", "a0000000-0000-4000-8000-00000000e41e");
    let mut foreign: serde_json::Value =
        serde_json::from_str(&iam_delete_user("mallory", "f0")).unwrap();
    foreign["account"] = json!("999999999999");
    let mut unconfigured: serde_json::Value =
        serde_json::from_str(&iam_delete_user("mallory", "f1")).unwrap();
    unconfigured["source"] = json!("com.evil.hr");
    let mut wrong_type: serde_json::Value =
        serde_json::from_str(&iam_delete_user("mallory", "f2")).unwrap();
    wrong_type["detail"]["requestParameters"]["userName"] = json!(42);
    let hostile = vec![
        "not json at all".to_string(),
        valid[..valid.len() / 2].to_string(),
        "[]".to_string(),
        "{\"detail\": ".repeat(5000),
        foreign.to_string(),
        unconfigured.to_string(),
        wrong_type.to_string(),
        iam_delete_user(&"x".repeat(10_000), "f3"),
        rotation_failed(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:not-ours-AbCdEf",
            "u1",
            "boom",
        ),
    ];
    let mut daemon = env.daemon(&[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    for h in &hostile {
        send(&env, &queue_url, h).await;
    }
    send(&env, &queue_url, &valid).await;
    let rejected = env
        .eventually(Duration::from_secs(60), || {
            let n = count(
                &env,
                "SELECT COUNT(*) FROM audit WHERE action = 'event_rejected'",
            );
            (n >= 8).then_some(n)
        })
        .await;
    let acted = env
        .eventually(Duration::from_secs(60), || {
            let n = count(&env, "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'");
            (n >= 1).then_some(n)
        })
        .await;
    let metrics = env.metrics();
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    // The unknown secret's RotationFailed is accepted but audited as unknown, not rejected.
    assert_eq!(rejected, Some(8));
    assert_eq!(acted, Some(1));
    assert_eq!(
        env.rotations_by_rotationd(&victim),
        1,
        "only erin's departure may rotate"
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM audit WHERE outcome = 'unknown_secret'"
        ),
        1
    );
    for reason in [
        "not_json",
        "not_object",
        "foreign_account",
        "unconfigured_source",
        "wrong_type",
        "field_too_long",
    ] {
        assert!(
            metrics.contains(&format!(
                "rotationd_events_rejected_total{{reason=\"{reason}\"}}"
            )),
            "no {reason} in {metrics}"
        );
    }
}

#[tokio::test]
async fn a_rotation_failed_event_escalates_to_security_and_marks_the_secret_failing() {
    recording();
    let name = moto::unique_name("ev/failing");
    let env = Env::new("rotfailed", &Body::new().with(secret(&name)).render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "rotfailed").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.rotatable_secret(&name).await;
    let arn = arn_of(&env, &name).await;

    let mut daemon = env.daemon(&[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    send(
        &env,
        &queue_url,
        &rotation_failed(
            &arn,
            "b1000000-0000-4000-8000-0000000fa11d",
            "setSecret: password authentication failed",
        ),
    )
    .await;
    let messages = env.security_messages(Duration::from_secs(30)).await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let failed: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "rotation_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{messages:?}");
    let (subject, m) = failed[0];
    assert_eq!(subject, &format!("[P1] rotation_failed {name}"));
    assert_eq!(m["error"], "setSecret: password authentication failed");
    assert_eq!(m["secret"]["arn"], arn.as_str());
    assert!(m["runbook"].as_array().unwrap().len() >= 3);
    assert_eq!(
        env.rotations_by_rotationd(&name),
        0,
        "retry_failed is off by default"
    );

    let o = env.cli(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Held until someone has looked (or a rotation succeeds), naming the failure.
    assert_eq!(status[0]["status"], "held", "{status}");
    assert!(
        status[0]["detail"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{status}"
    );

    // The rotation function is fixed and Secrets Manager's schedule succeeds: no longer failing.
    let mut succeeded: serde_json::Value = serde_json::from_str(&rotation_failed(
        &arn,
        "b1000000-0000-4000-8000-00000000600d",
        "",
    ))
    .unwrap();
    succeeded["detail"]["eventName"] = json!("RotationSucceeded");
    succeeded["detail"]
        .as_object_mut()
        .unwrap()
        .remove("errorMessage");
    let mut daemon = env.daemon(&[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    send(&env, &queue_url, &succeeded.to_string()).await;
    let recorded = env
        .eventually(Duration::from_secs(30), || {
            (count(
                &env,
                "SELECT COUNT(*) FROM attempts WHERE state = 'succeeded'",
            ) == 1)
                .then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let audit = rows(
        &env.db(),
        "SELECT action || ' ' || outcome || ' ' || COALESCE(reason, '') FROM audit",
    );
    assert!(recorded.is_some(), "{audit:#?}");
    let o = env.cli(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(status[0]["status"], "failing", "{status}");
    assert_ne!(status[0]["status"], "held", "{status}");
    assert!(
        audit
            .iter()
            .any(|a| a.starts_with("hold resumed Secrets Manager rotated it")),
        "{audit:#?}"
    );
}

#[tokio::test]
async fn cloudtrail_catch_up_finds_missed_events_and_collapses_duplicates() {
    use common::cloudtrail::{CloudTrailServer, TrailEvent};
    recording();
    let ct = CloudTrailServer::start();
    let leaver = moto::unique_name("ev/ct-frank");
    let failing = moto::unique_name("ev/ct-failing");
    let body = Body::new()
        .with(secret(&leaver).custodians(["frank"]))
        .with(secret(&failing));
    let env = Env::new("cloudtrail", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "cloudtrail").await;
    add_events(
        &env,
        &queue_url,
        &bus,
        &format!(
            "{ALLOW_ACCOUNT}\n[events.cloudtrail]\nenabled = true\nlookback = \"2h\"\npoll_interval = \"2s\"\nendpoint_url = \"{}\"\n",
            ct.endpoint()
        ),
    );
    env.rotatable_secret(&leaver).await;
    env.rotatable_secret(&failing).await;
    let failing_arn = arn_of(&env, &failing).await;
    // While rotationd was down: frank was deleted, and a rotation failed.
    let delete_id = "c7000000-0000-4000-8000-0000000f4a4c";
    ct.push(TrailEvent::iam_delete_user(
        "frank",
        delete_id,
        Utc::now() - chrono::Duration::minutes(30),
    ));
    ct.push(TrailEvent::rotation_failed(
        &failing_arn,
        "c7000000-0000-4000-8000-0000000fa11d",
        Utc::now() - chrono::Duration::minutes(20),
        "testSecret: connection refused",
    ));
    // An event older than the lookback is not read.
    ct.push(TrailEvent::iam_delete_user(
        "frank",
        "old-event",
        Utc::now() - chrono::Duration::hours(5),
    ));

    let mut daemon = env.daemon(&[]);
    assert!(
        env.wait_ready(Duration::from_secs(30)).await,
        "the daemon never became ready"
    );
    let rotated = env
        .eventually(Duration::from_secs(60), || {
            let n = count(&env, "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'");
            (n >= 1).then_some(n)
        })
        .await;
    // The same DeleteUser arrives late through EventBridge too: a duplicate.
    send(&env, &queue_url, &iam_delete_user("frank", delete_id)).await;
    let duplicate = env
        .eventually(Duration::from_secs(30), || {
            (count(&env, "SELECT COUNT(*) FROM seen_events") >= 2
                && env.metrics().contains(
                    "rotationd_events_received_total{kind=\"departure\",source=\"sqs\"} 1",
                ))
            .then_some(())
        })
        .await;
    // Handled and deleted, and nothing left to do: had the copy been taken for a new
    // departure, its rotation would have run by now.
    let settled = settled(&env, &queue_url, Duration::from_secs(60)).await;
    // The poller's pass has ended with its cursor saved.
    let cursor_saved = env
        .eventually(Duration::from_secs(30), || {
            let row = count(
                &env,
                "SELECT COUNT(*) FROM cursors WHERE name = 'cloudtrail'",
            );
            let metric = env
                .metrics()
                .contains("rotationd_cloudtrail_cursor_timestamp_seconds{");
            (row == 1 && metric).then_some(())
        })
        .await;
    let metrics = env.metrics();
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    assert_eq!(rotated, Some(1));
    assert!(cursor_saved.is_some(), "no cloudtrail cursor: {metrics}");
    assert!(
        duplicate.is_some() && settled,
        "the SQS copy was not consumed: {metrics}"
    );
    assert_eq!(
        env.rotations_by_rotationd(&leaver),
        1,
        "a duplicate event rotated again"
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM seen_events WHERE event_id = 'old-event'"
        ),
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_failed'"
        ),
        1
    );
    let cursor: String = env
        .db()
        .query_row(
            "SELECT value FROM cursors WHERE name = 'cloudtrail'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(&cursor).is_ok());
    assert!(
        metrics.contains(
            "rotationd_cloudtrail_cursor_timestamp_seconds{account=\"self\",region=\"us-east-1\"}"
        ),
        "{metrics}"
    );
    // One lookup attribute per call, paced: every call named one event name.
    let lookups = ct.requests();
    assert!(!lookups.is_empty());
    assert!(
        lookups
            .iter()
            .all(|r| r.lookup_attributes.len() == 1 && r.lookup_attributes[0].0 == "EventName")
    );
}

#[tokio::test]
async fn a_blocked_departure_raises_sla_at_risk_then_missed() {
    recording();
    let name = moto::unique_name("ev/sla");
    let body = Body::new().with(secret(&name).custodians(["gina"]));
    let env = Env::new("sla", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "sla").await;
    add_events(
        &env,
        &queue_url,
        &bus,
        &format!("{ALLOW_ACCOUNT}\ndeparture_sla = \"24h\"\nsla_warning = \"4h\""),
    );
    env.rotatable_secret(&name).await;
    // Blocked: a broken earlier rotation left AWSPENDING behind, so the departure
    // rotation stops as stuck and the SLA stays unmet.
    env.leave_pending(&name, "slastuckslastuckslastuckslastuck01")
        .await;
    // gina left 21 hours ago: 3 hours left, inside the 4-hour warning.
    let mut event: serde_json::Value = serde_json::from_str(&iam_delete_user(
        "gina",
        "d5000000-0000-4000-8000-000000000514",
    ))
    .unwrap();
    event["detail"]["eventTime"] = json!((Utc::now() - chrono::Duration::hours(21)).to_rfc3339());
    send(&env, &queue_url, &event.to_string()).await;

    let alert = |kind: &str| {
        count(
            &env,
            &format!("SELECT COUNT(*) FROM alert_outbox WHERE kind = '{kind}'"),
        )
    };
    let mut daemon = env.daemon(&[]);
    assert!(
        env.wait_ready(Duration::from_secs(30)).await,
        "the daemon never became ready"
    );
    let at_risk = env
        .eventually(Duration::from_secs(60), || {
            (alert("departure_sla_at_risk") >= 1).then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(at_risk.is_some(), "no departure_sla_at_risk");
    assert_eq!(alert("departure_sla_missed"), 0);
    assert_eq!(alert("rotation_stuck"), 1);
    assert_eq!(env.rotations_by_rotationd(&name), 0);

    // Four hours later (rotationd's clock) the deadline has passed; the deadline came from
    // the state store, not from memory.
    let mut daemon = env.daemon(&[("ROTATIOND_TEST_CLOCK_OFFSET", "14400")]);
    assert!(
        env.wait_ready(Duration::from_secs(30)).await,
        "the daemon never became ready"
    );
    let missed = env
        .eventually(Duration::from_secs(60), || {
            let published = count(
                &env,
                "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'departure_sla_missed' AND published_at IS NOT NULL",
            );
            (published >= 1).then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(missed.is_some(), "no departure_sla_missed");
    assert_eq!(
        alert("departure_sla_at_risk"),
        1,
        "at-risk must be raised once"
    );
    let messages = env.security_messages(Duration::from_secs(10)).await;
    let kinds: Vec<&str> = messages
        .iter()
        .filter_map(|(_, m)| m["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"departure_sla_at_risk") && kinds.contains(&"departure_sla_missed"),
        "{kinds:?}"
    );
    let missed_msg = messages
        .iter()
        .find(|(_, m)| m["kind"] == "departure_sla_missed")
        .unwrap();
    assert_eq!(missed_msg.1["ticket"], "INC-pending");
    assert!(missed_msg.1["deadline"].as_str().is_some());
}

#[tokio::test]
async fn a_compromise_rotates_at_once_and_pages_security() {
    recording();
    let name = moto::unique_name("ev/exposed");
    // Its window is far away: the compromise must not wait for it.
    let body = Body::new().with(secret(&name).schedule("0 3 1 1 *"));
    let env = Env::new("compromise", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "compromise").await;
    add_events(
        &env,
        &queue_url,
        &bus,
        "[[events.compromise]]\nsource = \"com.example.security\"\ndetail_type = \"Credential Exposed\"\nsecret_pointer = \"/detail/secret\"\n",
    );
    env.rotatable_secret(&name).await;
    let arn = arn_of(&env, &name).await;
    let event = json!({
        "version": "0", "id": "e9000000-0000-4000-8000-0000000c0de1",
        "detail-type": "Credential Exposed", "source": "com.example.security",
        "account": ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": { "secret": arn, "ticket": "INC-9001", "reason": "key pasted in a public gist" }
    });
    let mut daemon = env.daemon(&[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    send(&env, &queue_url, &event.to_string()).await;
    // Someone also wrote a version by hand during a rotation: RotationAbandoned, P2.
    let mut abandoned: serde_json::Value = serde_json::from_str(&rotation_failed(
        &arn,
        "e9000000-0000-4000-8000-0000000abad0",
        "",
    ))
    .unwrap();
    abandoned["detail"]["eventName"] = json!("RotationAbandoned");
    send(&env, &queue_url, &abandoned.to_string()).await;
    // A compromise of a secret rotationd does not manage: nothing to rotate, but Security
    // hears of it all the same.
    let unmanaged =
        format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:elsewhere/db-AbCdEf");
    let mut other = event.clone();
    other["id"] = json!("e9000000-0000-4000-8000-0000000e15e1");
    other["detail"]["secret"] = json!(unmanaged);
    send(&env, &queue_url, &other.to_string()).await;
    let done = env
        .eventually(Duration::from_secs(60), || {
            let n = count(&env, "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'compromise' AND state = 'succeeded'");
            (n >= 1).then_some(n)
        })
        .await;
    let mut messages = Vec::new();
    for _ in 0..15 {
        messages.extend(env.security_messages(Duration::from_secs(2)).await);
        let kinds: Vec<&str> = messages
            .iter()
            .filter_map(|(_, m)| m["kind"].as_str())
            .collect();
        if kinds.iter().filter(|k| **k == "breach_suspected").count() == 2
            && kinds.contains(&"rotation_abandoned")
        {
            break;
        }
    }
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    assert_eq!(done, Some(1));
    assert_eq!(env.rotations_by_rotationd(&name), 1);
    let abandoned: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "rotation_abandoned")
        .collect();
    assert_eq!(abandoned.len(), 1, "{messages:?}");
    assert_eq!(abandoned[0].0, format!("[P2] rotation_abandoned {name}"));
    assert_eq!(abandoned[0].1["severity"], "P2");
    let breach: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "breach_suspected" && m["secret"]["name"] == name.as_str())
        .collect();
    assert_eq!(breach.len(), 1, "{messages:?}");
    assert_eq!(breach[0].0, format!("[P1] breach_suspected {name}"));
    let elsewhere: Vec<_> = messages
        .iter()
        .filter(|(_, m)| {
            m["kind"] == "breach_suspected" && m["secret"]["name"] == unmanaged.as_str()
        })
        .collect();
    assert_eq!(elsewhere.len(), 1, "{messages:?}");
    assert!(
        elsewhere[0].1["error"]
            .as_str()
            .unwrap()
            .contains("not managed by rotationd"),
        "{:?}",
        elsewhere[0].1
    );
    assert_eq!(elsewhere[0].1["ticket"], "INC-9001");
    assert_eq!(breach[0].1["ticket"], "INC-9001");
    assert_eq!(breach[0].1["reason"], "key pasted in a public gist");
    let ticket: String = env
        .db()
        .query_row(
            "SELECT ticket FROM attempts WHERE trigger_kind = 'compromise'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ticket, "INC-9001");
}

#[tokio::test]
async fn the_storm_guard_pauses_event_rotations_until_resumed() {
    recording();
    let names: Vec<String> = (0..4)
        .map(|i| moto::unique_name(&format!("ev/storm{i}")))
        .collect();
    let exposed = moto::unique_name("ev/storm-exposed");
    let body = Body::new()
        .with_all(names.iter().map(|n| secret(n).custodians(["henry"])))
        .with(secret(&exposed));
    let env = Env::new("storm", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "storm").await;
    add_events(
        &env,
        &queue_url,
        &bus,
        &format!(
            "{ALLOW_ACCOUNT}\nmax_event_rotations_per_hour = 2\n[[events.compromise]]\nsource = \"com.example.security\"\ndetail_type = \"Credential Exposed\"\nsecret_pointer = \"/detail/secret\"\n"
        ),
    );
    for n in names.iter().chain([&exposed]) {
        env.rotatable_secret(n).await;
    }
    let mut daemon = env.daemon(&[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    send(
        &env,
        &queue_url,
        &iam_delete_user("henry", "f5000000-0000-4000-8000-0000000570a1"),
    )
    .await;
    let paused = env
        .eventually(Duration::from_secs(60), || {
            (count(
                &env,
                "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_storm'",
            ) >= 1)
                .then_some(())
        })
        .await;
    // The pass that paused had already started the two rotations the allowance lets
    // through (and started no more: the pause is decided before the next trigger); once
    // they have finished, every RotateSecret this pause lets out has been sent.
    let finished = env
        .eventually(Duration::from_secs(60), || {
            (count(
                &env,
                "SELECT COUNT(*) FROM attempts WHERE finished_at IS NULL",
            ) == 0)
                .then_some(())
        })
        .await;
    assert!(paused.is_some(), "no rotation_storm alert");
    assert!(finished.is_some(), "the allowed rotations did not finish");
    let rotated = |env: &Env| {
        names
            .iter()
            .map(|n| env.rotations_by_rotationd(n))
            .sum::<usize>()
    };
    assert_eq!(rotated(&env), 2, "only the hourly allowance may rotate");
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM triggers WHERE kind = 'departure' AND status = 'pending'"
        ),
        2
    );
    // A compromise is never held by the pause.
    let compromise = json!({
        "version": "0", "id": "e9000000-0000-4000-8000-00000057c0de",
        "detail-type": "Credential Exposed", "source": "com.example.security",
        "account": ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": { "secret": arn_of(&env, &exposed).await, "ticket": "INC-9002", "reason": "leaked during a storm" }
    });
    send(&env, &queue_url, &compromise.to_string()).await;
    let exposed_rotated = env
        .eventually(Duration::from_secs(60), || {
            (env.rotations_by_rotationd(&exposed) == 1).then_some(())
        })
        .await;
    assert!(
        exposed_rotated.is_some(),
        "the storm guard held a compromise"
    );
    assert_eq!(rotated(&env), 2, "the departures stay paused");

    // The guard counts the attempts started since the resume in whole seconds: resume in
    // a later second than the allowed two started in, or they would count against it.
    let last_start = count(&env, "SELECT MAX(started_at) FROM attempts");
    while Utc::now().timestamp() <= last_start {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = env.cli(&["resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("resumed"));
    let all = env
        .eventually(Duration::from_secs(60), || {
            (rotated(&env) == 4).then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(all.is_some(), "queued triggers did not run after resume");
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_storm'"
        ),
        1
    );
    let messages = env.security_messages(Duration::from_secs(10)).await;
    let storm: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "rotation_storm")
        .collect();
    assert_eq!(storm.len(), 1, "{messages:?}");
    assert_eq!(storm[0].0, "[P1] rotation_storm");
    assert!(storm[0].1["error"].as_str().unwrap().contains("limit 2"));
}

/// The review: a departure merged into a planned attempt was cancelled with it when that
/// attempt was skipped ("already rotated in this window": Secrets Manager's own schedule
/// had rotated the secret, before the person left). Now the departure leads the attempt it
/// is merged into (`engine::lead`): the planned window's skip no longer applies, the
/// secret rotates once, and that rotation serves the window too. tests/triggers.rs covers
/// a compromise, an approved request and a failed planned-only check.
#[tokio::test]
async fn a_departure_is_not_swallowed_by_a_planned_attempt_that_is_skipped() {
    recording();
    let name = moto::unique_name("ev/swallowed");
    // A daily window open now; rotatable_secret's own RotateSecret rotated it a moment ago,
    // inside that window, as Secrets Manager's schedule would have.
    let hour = Utc::now().hour();
    let body = Body::new().with(
        secret(&name)
            .custodians(["ivan"])
            .schedule(&format!("0 {hour} * * *"))
            .window("2h"),
    );
    let env = Env::new("swallowed", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "swallowed").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.rotatable_secret(&name).await;
    let arn = arn_of(&env, &name).await;
    // The state the daemon reaches when the departure lands while the window's trigger
    // waits: both pending, the planned one first (its window ends before the SLA).
    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let now = Utc::now();
    let start = now.date_naive().and_hms_opt(hour, 0, 0).unwrap().and_utc();
    let db = env.db();
    db.execute(
        "INSERT INTO triggers (secret, kind, dedupe_key, reason, actor, created_at, not_before, deadline, updated_at) \
         VALUES (?1, 'scheduled', ?2, 'planned window', 'rotationd', ?3, ?4, ?5, ?3)",
        rusqlite::params![
            name,
            format!("plan:{arn}:{}", start.timestamp()),
            now.timestamp(),
            start.timestamp(),
            (start + chrono::Duration::hours(2)).timestamp()
        ],
    )
    .unwrap();
    db.execute(
        "INSERT INTO triggers (secret, kind, dedupe_key, reason, actor, created_at, not_before, deadline, updated_at) \
         VALUES (?1, 'departure', ?2, 'departure of ivan (aws.iam)', 'event:aws.iam', ?3, ?3, ?4, ?3)",
        rusqlite::params![
            name,
            format!("event:5c6a1f0e-0000-4000-8000-0000000005a1:{arn}"),
            now.timestamp(),
            (now + chrono::Duration::hours(24)).timestamp()
        ],
    )
    .unwrap();
    drop(db);

    let mut daemon = env.daemon(&[]);
    let rotated = env
        .eventually(Duration::from_secs(60), || {
            (count(
                &env,
                "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'",
            ) == 1)
                .then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let triggers = rows(
        &env.db(),
        "SELECT kind || ' ' || status || ' ' || COALESCE(a.state, '-') || ' ' || COALESCE(a.error, '') \
         FROM triggers t LEFT JOIN attempts a ON a.id = t.attempt_id ORDER BY t.id",
    );
    assert!(
        rotated.is_some(),
        "the departure was swallowed: {triggers:#?}"
    );
    assert!(
        triggers
            .iter()
            .any(|t| t.starts_with("scheduled done succeeded")),
        "the planned window was not served by the departure's rotation: {triggers:#?}"
    );
    assert_eq!(env.rotations_by_rotationd(&name), 1);
}
