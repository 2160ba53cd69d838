//! Bad input, end to end: 1,000 malformed or hostile SQS bodies (truncated JSON, wrong
//! types, huge strings, deep nesting, foreign accounts, unconfigured sources, unknown
//! secrets, non-objects, missing fields, not JSON) mixed with 20 valid departures. Exactly
//! the 20 act; the 900 rejects are audited (the first ten per reason and minute one by one,
//! the rest in aggregate rows) and counted by reason, the 100 RotationFailed
//! events for secrets rotationd does not manage are audited as unknown; the queue is drained.
//!
//! Every hostile departure names `mallory`, custodian of the victim secret: acting on any of
//! them would rotate it. This binary has a single test: it owns the emulator's recording.

mod common;

use std::time::Duration;

use common::config::{Body, secret};
use common::events::{
    ALLOW_ACCOUNT, add_events, count, iam_delete_user, left_on_queue, queue_and_bus,
    rotation_failed, send_batch, settled,
};
use common::moto;
use common::rotationd::{Env, rows, terminate};
use serde_json::{Value, json};

const VALID: usize = 20;
const HOSTILE: usize = 1000;

/// `body` with the JSON pointer `at` set to `value` (or removed when `None`).
fn with(body: &str, at: &str, value: Option<Value>) -> String {
    let mut v: Value = serde_json::from_str(body).unwrap();
    let (parent, key) = at.rsplit_once('/').unwrap();
    let obj = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match value {
        Some(value) => obj.insert(key.to_string(), value),
        None => obj.remove(key),
    };
    v.to_string()
}

/// The i-th hostile body; kinds cycle with i % 10.
fn hostile(i: usize) -> String {
    let departure = iam_delete_user("mallory", &format!("h0000000-0000-4000-8000-{i:012}"));
    // What an IAM departure cannot do without. Its id is CloudTrail's `detail.eventID` (the
    // envelope `id` is not used), and a missing `eventTime` falls back to the envelope `time`,
    // so `/id` and `/detail/eventTime` are left alone.
    let required = [
        "/source",
        "/detail-type",
        "/account",
        "/detail",
        "/detail/eventID",
        "/detail/eventName",
        "/detail/requestParameters",
        "/detail/requestParameters/userName",
    ];
    let wrong = [
        json!(42),
        json!(["x"]),
        json!({"a": "b"}),
        json!(true),
        json!(-0.5),
    ];
    match i % 10 {
        // Truncated JSON: any strict prefix of an object.
        0 => departure[..1 + (i * 7919) % (departure.len() - 2)].to_string(),
        // A required field with the wrong type.
        1 => with(
            &departure,
            required[(i / 10) % required.len()],
            Some(wrong[(i / 80) % wrong.len()].clone()),
        ),
        // Huge strings where bounded ones are required.
        2 => with(
            &departure,
            "/detail/requestParameters/userName",
            Some(Value::String("m".repeat(600 + 97 * i))),
        ),
        // Deep nesting, unbalanced and balanced, bare and inside the event.
        3 => {
            let n = 200 + i * 3;
            match (i / 10) % 3 {
                0 => "[".repeat(n),
                1 => format!("{}{}", "[".repeat(n), "]".repeat(n)),
                _ => departure.replacen(
                    "\"detail\":{",
                    &format!("\"detail\":{{\"deep\":{}{},", "[".repeat(n), "]".repeat(n)),
                    1,
                ),
            }
        }
        // Another account's event.
        4 => with(&departure, "/account", Some(json!("999999999999"))),
        // A source or detail-type nobody configured.
        5 => match (i / 10) % 2 {
            0 => with(&departure, "/source", Some(json!("com.evil.hr"))),
            _ => with(&departure, "/detail-type", Some(json!("Employee Promoted"))),
        },
        // A RotationFailed for a secret rotationd does not manage: audited, never acted on.
        6 => rotation_failed(
            &format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:not-ours-{i}-AbCdEf"),
            &format!("u0000000-0000-4000-8000-{i:012}"),
            "boom",
        ),
        // JSON that is not an object.
        7 => [
            "42",
            "[]",
            "\"mallory\"",
            "null",
            "true",
            "[{\"source\":\"aws.iam\"}]",
        ][(i / 10) % 6]
            .to_string(),
        // A required field missing.
        8 => with(&departure, required[(i / 10) % required.len()], None),
        // Not JSON at all.
        _ => [
            format!("not json {i}"),
            "<Event><User>mallory</User></Event>".to_string(),
            format!("{{'source': 'aws.iam', 'n': {i}}}"),
            "-".to_string(),
        ][(i / 10) % 4]
            .clone(),
    }
}

/// Rejections accounted for in the audit log: one row each for the first ten per reason,
/// source and minute, the rest in `aggregated` rows or in a tally whose minute has not
/// been written out yet (`store::upkeep`).
const REJECTED: &str = "SELECT \
     (SELECT COUNT(*) FROM audit WHERE action = 'event_rejected' AND outcome != 'aggregated') \
   + (SELECT COALESCE(SUM(json_extract(detail, '$.count')), 0) FROM audit WHERE outcome = 'aggregated') \
   + (SELECT COALESCE(SUM(MAX(count - 10, 0)), 0) FROM rejection_tallies)";

#[tokio::test]
async fn a_thousand_hostile_bodies_never_act_and_twenty_valid_ones_do() {
    let prefix = moto::unique_name("hostile/fleet");
    let victim = format!("{prefix}/victim");
    let secrets: Vec<String> = (0..VALID).map(|i| format!("{prefix}/{i:02}")).collect();
    let body = Body::new()
        .with(secret(&victim).custodians(["mallory"]))
        .with_all(
            secrets
                .iter()
                .enumerate()
                .map(|(i, s)| secret(s).custodians([format!("leaver-{i:02}")])),
        );
    let env = Env::new("hostile", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "hostile").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.rotatable_secret(&victim).await;
    for s in &secrets {
        env.rotatable_secret(s).await;
    }

    // Valid events spread through the hostile ones.
    let mut bodies: Vec<String> = Vec::new();
    for i in 0..HOSTILE {
        if i % (HOSTILE / VALID) == 0 {
            let n = i / (HOSTILE / VALID);
            bodies.push(iam_delete_user(
                &format!("leaver-{n:02}"),
                &format!("v0000000-0000-4000-8000-{n:012}"),
            ));
        }
        bodies.push(hostile(i));
    }
    assert_eq!(bodies.len(), HOSTILE + VALID);

    // Batches of up to 10 messages and 200 KB; bigger bodies alone.
    let mut batch: Vec<&String> = Vec::new();
    let mut size = 0;
    for b in &bodies {
        if !batch.is_empty() && (batch.len() == 10 || size + b.len() > 200_000) {
            send_batch(&env, &queue_url, &batch).await;
            batch.clear();
            size = 0;
        }
        batch.push(b);
        size += b.len();
    }
    send_batch(&env, &queue_url, &batch).await;

    // The burst waits on the queue; rotationd starts on it. Recording starts only now: moto's
    // recorder interleaves lines when it records large requests from several threads, and
    // rotationd's own requests are small.
    env.moto.start_recording();
    // Its log goes to a file: a thousand rejections overflow a pipe nobody reads yet.
    let (mut daemon, log_path) = env.daemon_logged(&[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    let handled = env
        .eventually(Duration::from_secs(180), || {
            let rejected = count(&env, REJECTED);
            let unknown = count(&env, "SELECT COUNT(*) FROM audit WHERE outcome = 'unknown_secret'");
            let acted = count(
                &env,
                "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'",
            );
            (rejected + unknown >= HOSTILE as i64 && acted >= VALID as i64)
                .then_some((rejected, unknown, acted))
        })
        .await;
    // Everything handled and deleted, nothing left to do: a wrongly accepted body would have
    // acted by now.
    let settled = settled(&env, &queue_url, Duration::from_secs(120)).await;
    let metrics = env.metrics();
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let rejected = count(&env, REJECTED);
    let unknown = count(
        &env,
        "SELECT COUNT(*) FROM audit WHERE outcome = 'unknown_secret'",
    );
    let summary = rows(
        &env.db(),
        "SELECT action || ' ' || outcome || ' ' || COUNT(*) FROM audit GROUP BY action, outcome",
    );
    assert!(
        handled.is_some() && settled,
        "rejected {rejected}, unknown {unknown}; audit {summary:#?}\n{metrics}"
    );
    assert_eq!((rejected, unknown), (900, 100));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    // Rejections echo at most 128 characters of a field: the huge strings stay out of the log.
    assert!(
        !log.contains(&"m".repeat(200)),
        "a huge field reached the log"
    );

    // Exactly the 20 acted, once each; the victim was never touched.
    let acted = count(&env, "SELECT COUNT(*) FROM attempts");
    assert_eq!(
        acted, VALID as i64,
        "only the valid departures start attempts"
    );
    for s in &secrets {
        assert_eq!(env.rotations_by_rotationd(s), 1, "{s}");
    }
    assert_eq!(
        env.rotations_by_rotationd(&victim),
        0,
        "a hostile body acted"
    );

    // Counted by reason: the rejects add up, and the kinds show.
    let by_reason: Vec<(String, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("rotationd_events_rejected_total{"))
        .filter_map(|l| {
            let reason = l.split("reason=\"").nth(1)?.split('"').next()?.to_string();
            Some((reason, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total: f64 = by_reason.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 900.0, "{by_reason:?}");
    for reason in [
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "foreign_account",
        "unconfigured_source",
        "field_too_long",
    ] {
        assert!(
            by_reason.iter().any(|(r, n)| r == reason && *n > 0.0),
            "no {reason}: {by_reason:?}"
        );
    }

    // Nothing is left on the queue: every body was handled and deleted.
    assert_eq!(
        left_on_queue(&env, &queue_url).await,
        ("0".to_string(), "0".to_string())
    );
}
