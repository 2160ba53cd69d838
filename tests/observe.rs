//! Observe mode end to end, on moto with the real binary: a planned window, an overdue
//! secret, a departure and a compromise all arrive while `[daemon] mode = "observe"`, with
//! `native_schedule = "disable"` drifting (CancelRotateSecret in enforce mode), and an operator tries `rotate` and `rollback`.
//! moto's request recorder shows rotationd sent no RotateSecret, UpdateSecretVersionStage
//! or CancelRotateSecret; the store shows each trigger observed once and still pending;
//! alerts say `[observe]`; `status` says what would be rotated and why; a day later the
//! P3 `observe_summary` lists them. Then a reload switches to enforce (audited): every
//! queued trigger runs, each secret rotates exactly once, the operator's cancelled
//! `rotate` does not.

mod common;

use std::process::Command;
use std::time::Duration;

use chrono::{Timelike, Utc};
use common::config::{Body, secret};
use common::events::{ACCOUNT, add_events, arn_of, count, iam_delete_user, queue_and_bus, send};
use common::moto::{self, recording};
use common::rotationd::{Env, stderr, terminate};
use serde_json::json;

/// What observe mode must never send.
const CHANGING: [&str; 3] = [
    "RotateSecret",
    "UpdateSecretVersionStage",
    "CancelRotateSecret",
];

/// rotationd's requests that change something, about one of `names`.
fn changing_requests(env: &Env, names: &[&String]) -> Vec<String> {
    env.moto
        .rotationd_requests()
        .into_iter()
        .filter(|r| CHANGING.contains(&r.operation.as_str()))
        .filter(|r| {
            r.secret_id().is_some_and(|id| {
                names
                    .iter()
                    .any(|n| id == **n || id.contains(&format!(":secret:{n}-")))
            })
        })
        .map(|r| format!("{} {}", r.operation, r.json()))
        .collect()
}

/// rotationd's rotations (RotateSecret that rotates now, not a schedule write) of `name`.
fn rotations(env: &Env, name: &str) -> usize {
    env.moto
        .rotationd_requests()
        .iter()
        .filter(|r| {
            r.operation == "RotateSecret"
                && r.json()["RotateImmediately"] != json!(false)
                && r.secret_id()
                    .is_some_and(|id| id == name || id.contains(&format!(":secret:{name}-")))
        })
        .count()
}

fn sighup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP failed");
}

#[tokio::test]
async fn observe_mode_sends_nothing_and_enforce_then_acts_on_every_trigger_once() {
    recording();
    // rotationd's clock runs OFFSET ahead: the planned secret (created WAIT after the test
    // starts) is older than its daily window, which opened two minutes before rotationd's
    // "now" at the start (Secrets Manager's LastRotatedDate must not be inside it); max_age
    // is between the planned secret's age (OFFSET and a few seconds) and the overdue
    // secret's (OFFSET + WAIT).
    const OFFSET: i64 = 300;
    let wait = Duration::from_secs(80);
    let offset = OFFSET.to_string();
    let opened = Utc::now() + chrono::Duration::seconds(OFFSET - 120);
    let daily = format!("{} {} * * *", opened.minute(), opened.hour());
    let overdue = moto::unique_name("obs/overdue");
    let planned = moto::unique_name("obs/planned");
    let departed = moto::unique_name("obs/departed");
    let exposed = moto::unique_name("obs/exposed");
    let manual = moto::unique_name("obs/manual");
    let far = "0 3 1 1 *";
    let body = Body::new()
        .policy("max_age", "6m")
        .policy("native_schedule", "disable")
        .with(secret(&overdue).schedule(far))
        .with(secret(&planned).schedule(&daily).window("1h"))
        .with(secret(&departed).schedule(far).custodians(["olive"]))
        .with(secret(&exposed).schedule(far))
        .with(secret(&manual).schedule(far));
    let env = Env::new("observe", &body.render()).await;
    env.set_in("daemon", "mode = \"observe\"");
    let (queue_url, bus) = queue_and_bus(&env, "observe").await;
    add_events(
        &env,
        &queue_url,
        &bus,
        "[[events.compromise]]\nsource = \"com.example.security\"\ndetail_type = \"Credential Exposed\"\nsecret_pointer = \"/detail/secret\"\n",
    );
    env.rotatable_secret(&overdue).await;
    tokio::time::sleep(wait).await;
    for n in [&planned, &departed, &exposed, &manual] {
        env.rotatable_secret(n).await;
    }
    let names = [&overdue, &planned, &departed, &exposed, &manual];
    let exposed_arn = arn_of(&env, &exposed).await;
    // The secrets' own creation called RotateSecret (the test's client, not rotationd).
    assert!(changing_requests(&env, &names).is_empty());

    let clock = [("ROTATIOND_TEST_CLOCK_OFFSET", offset.as_str())];
    let (mut daemon, log) = env.daemon_ready(&clock).await;
    send(
        &env,
        &queue_url,
        &iam_delete_user("olive", "0b5e0000-0000-4000-8000-000000000001"),
    )
    .await;
    let compromise = json!({
        "version": "0", "id": "0b5e0000-0000-4000-8000-0000000c0de1",
        "detail-type": "Credential Exposed", "source": "com.example.security",
        "account": ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": { "secret": exposed_arn, "ticket": "INC-4711", "reason": "key in a public gist" }
    });
    send(&env, &queue_url, &compromise.to_string()).await;
    let observed = |kind: &str| {
        count(
            &env,
            &format!(
                "SELECT COUNT(*) FROM attempts WHERE state = 'observed' AND trigger_kind = '{kind}' AND verdict = 'would_rotate'"
            ),
        )
    };
    let all = env
        .eventually(Duration::from_secs(60), || {
            ["overdue", "scheduled", "departure", "compromise"]
                .iter()
                .all(|k| observed(k) >= 1)
                .then_some(())
        })
        .await;
    let dump = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(all.is_some(), "not every trigger was observed:\n{}", dump());

    // The operator's commands: the preflight runs, nothing is sent, exit 1.
    let o = env.rotate_emergency(&manual, "INC-4712", "observe test");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("observe mode"), "{}", stderr(&o));
    assert!(stderr(&o).contains("would rotate"), "{}", stderr(&o));
    let o = env.cli(&[
        "rollback",
        "--secret",
        &manual,
        "--ticket",
        "INC-4713",
        "--reason",
        "observe test",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("observe mode"), "{}", stderr(&o));

    // Alerts say [observe]: the compromise's P1 and the overdue P2.
    let mut messages = Vec::new();
    for _ in 0..15 {
        messages.extend(env.security_messages(Duration::from_secs(2)).await);
        let kinds: Vec<&str> = messages
            .iter()
            .filter_map(|(_, m)| m["kind"].as_str())
            .collect();
        if kinds.contains(&"breach_suspected") && kinds.contains(&"overdue") {
            break;
        }
    }
    let subject = |kind: &str, name: &str| {
        messages
            .iter()
            .find(|(_, m)| m["kind"] == kind && m["secret"]["name"] == name)
            .map(|(s, m)| (s.clone(), m["mode"].clone()))
    };
    let outbox = common::rotationd::rows(
        &env.db(),
        "SELECT kind || ' ' || subject || ' ' || COALESCE(published_at, '-') || ' ' || COALESCE(last_error, '-') FROM alert_outbox",
    );
    assert_eq!(
        subject("breach_suspected", &exposed),
        Some((
            format!("[observe] [P1] breach_suspected {exposed}"),
            json!("observe")
        )),
        "{messages:?}\noutbox: {outbox:#?}"
    );
    assert_eq!(
        subject("overdue", &overdue),
        Some((
            format!("[observe] [P2] overdue {overdue}"),
            json!("observe")
        )),
        "{messages:?}"
    );

    // status: what would be rotated and why.
    let o = env.cli(&["status", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let why = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["secret"] == name)
            .and_then(|r| r["observed"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        why(&departed).starts_with("would rotate (departure: "),
        "{rows:#}"
    );
    assert!(why(&exposed).contains("compromise: "), "{rows:#}");
    assert!(
        why(&planned).starts_with("would rotate (scheduled: "),
        "{rows:#}"
    );
    assert!(
        why(&overdue).starts_with("would rotate (overdue: "),
        "{rows:#}"
    );
    assert_eq!(
        why(&manual),
        "",
        "the operator's rotate is not queued: {rows:#}"
    );
    let table = env.cli(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.starts_with("mode: observe"), "{table}");
    assert!(
        table.contains(&format!("OBSERVED {departed}: would rotate")),
        "{table}"
    );
    let metrics = env.metrics();
    assert!(metrics.contains("rotationd_observe_mode 1"), "{metrics}");
    assert!(
        metrics.contains(
            "rotationd_observed_rotations_total{trigger=\"departure\",verdict=\"would_rotate\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(
        terminate(&mut daemon.0, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );

    // Each trigger observed once, still pending for enforce mode; the operator's cancelled.
    let pending_observed = count(
        &env,
        "SELECT COUNT(*) FROM triggers WHERE status = 'pending' AND observed_by IS NOT NULL",
    );
    assert_eq!(pending_observed, 4, "{}", dump());
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM triggers WHERE kind = 'manual' AND status = 'cancelled' AND observed_by IS NOT NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM audit WHERE action = 'rollback' AND outcome = 'refused'"
        ),
        1
    );
    assert_eq!(
        count(&env, "SELECT COUNT(*) FROM holds"),
        0,
        "nothing was tried, nothing is held"
    );
    // The preflight stopped before telling the dependents of a rotation that will not
    // happen, and found nothing wrong.
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_scheduled'"
        ),
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM attempts WHERE state = 'observed' AND error IS NOT NULL"
        ),
        0
    );
    // The start in observe mode is audited.
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM audit WHERE action = 'config' AND json_extract(detail, '$.mode') = 'observe'"
        ),
        1
    );

    // A day later (rotationd's clock) the daily summary lists what was observed.
    let day = (OFFSET + 86_400).to_string();
    let next_day = [("ROTATIOND_TEST_CLOCK_OFFSET", day.as_str())];
    let (mut daemon, _) = env.daemon_ready(&next_day).await;
    let summary = env
        .eventually(Duration::from_secs(60), || {
            env.db()
                .query_row(
                    "SELECT subject, message FROM alert_outbox WHERE kind = 'observe_summary'",
                    [],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .ok()
        })
        .await;
    let (subject, message) = summary.unwrap_or_else(|| panic!("no observe_summary:\n{}", dump()));
    assert_eq!(subject, "[observe] [P3] observe_summary");
    let message: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(message["severity"], "P3");
    assert_eq!(message["mode"], "observe");
    let listed = message["details"]["secrets"].to_string();
    for n in &names {
        assert!(listed.contains(n.as_str()), "{n} missing from {listed}");
    }
    assert!(
        message["details"]["would_rotate"].as_u64().unwrap() >= 5,
        "{message:#}"
    );

    // Nothing changed in Secrets Manager in either observe run.
    assert_eq!(changing_requests(&env, &names), Vec::<String>::new());

    // Enforce by reload: audited, and every queued trigger runs, once per secret.
    env.edit_config(|t| t.replace("mode = \"observe\"", "mode = \"enforce\""));
    sighup(daemon.0.id());
    let rotated = env
        .eventually(Duration::from_secs(90), || {
            [&overdue, &planned, &departed, &exposed]
                .iter()
                .all(|n| rotations(&env, n) >= 1)
                .then_some(())
        })
        .await;
    // Let anything that would rotate twice do so before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        terminate(&mut daemon.0, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        rotated.is_some(),
        "enforce mode did not rotate every queued secret:\n{}",
        dump()
    );
    for n in [&overdue, &planned, &departed, &exposed] {
        assert_eq!(rotations(&env, n), 1, "{n}");
    }
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM triggers WHERE kind = 'manual' AND dedupe_key IS NULL AND status != 'cancelled'"
        ),
        0,
        "the operator's observed rotate ran in enforce mode"
    );
    let mode_change = count(
        &env,
        "SELECT COUNT(*) FROM audit WHERE action = 'config' AND json_extract(detail, '$.mode') = 'enforce' AND json_extract(detail, '$.mode_changed_from') = 'observe'",
    );
    assert_eq!(mode_change, 1, "the switch is audited once");
    // The overdue trigger observed a day ago was reopened, not dropped.
    let reopened = count(
        &env,
        "SELECT COUNT(*) FROM audit WHERE action = 'trigger' AND outcome = 'reopened'",
    );
    assert!(reopened >= 1, "{reopened}");
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM triggers WHERE status = 'pending' AND observed_by IS NOT NULL"
        ),
        0,
        "a trigger observed in observe mode was left behind"
    );
}
