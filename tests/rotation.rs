//! The rotation engine end to end: the real binary against a real moto server.
//!
//! Every test owns its secrets (unique names) and its SNS topic and state database, so
//! they run in parallel on one server; request counts are filtered by secret and by
//! rotationd's User-Agent (`app/rotationd`).

mod common;

use std::time::Duration;

use chrono::{Timelike, Utc};
use common::config::{Body, dependent, secret, selector};
use common::moto::{self, recording};
use common::rotationd::{Env, log_lines, queue_with_arn, stderr, terminate};

/// Every `e2e/` secret, no change tickets, one dependent (billing-api).
fn select_all() -> String {
    Body::new()
        .with(selector("e2e/").dependents(["billing-api"]))
        .with(dependent("billing-api"))
        .render()
}

fn outbox(env: &Env, kind: &str) -> Vec<(String, Option<i64>)> {
    let db = env.db();
    let mut stmt = db
        .prepare("SELECT subject, published_at FROM alert_outbox WHERE kind = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn manual_rotation_promotes_a_new_version_and_rollback_restores_the_old_one() {
    recording();
    let env = Env::new("manual", &select_all()).await;
    let name = moto::unique_name("e2e/manual");
    env.rotatable_secret(&name).await;
    let before = env.stages(&name).await;
    let old = Env::version_with(&before, "AWSCURRENT").unwrap();

    let o = env.rotate_emergency(&name, "INC-4242", "key in a log");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for stage in [
        "preflight: ok",
        "rotate: RotateSecret",
        "monitor: finishSecret done",
        "validate: AWSCURRENT",
    ] {
        assert!(
            stderr(&o).contains(stage),
            "missing progress `{stage}` in:\n{}",
            stderr(&o)
        );
    }
    let after = env.stages(&name).await;
    let new = Env::version_with(&after, "AWSCURRENT").unwrap();
    assert!(
        new.starts_with("rotationd-"),
        "new version {new} is not our request token"
    );
    assert_eq!(
        Env::version_with(&after, "AWSPREVIOUS").as_deref(),
        Some(old.as_str())
    );
    assert_eq!(env.rotations_by_rotationd(&name), 1);

    // Audited, and the dependents' notice plus nothing else went out.
    let db = env.db();
    let (outcome, ticket): (String, String) = db
        .query_row(
            "SELECT outcome, ticket FROM audit WHERE action = 'rotate' AND secret = ?1",
            [&name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((outcome.as_str(), ticket.as_str()), ("ok", "INC-4242"));
    assert!(outbox(&env, "rotation_failed").is_empty());

    // The dependent teams heard of it before and after (notify topic).
    let notices = env.notify_messages(Duration::from_secs(10)).await;
    let kinds: Vec<&str> = notices
        .iter()
        .filter_map(|(_, m)| m["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        vec!["rotation_scheduled", "rotation_completed"],
        "{notices:?}"
    );
    let (subject, scheduled) = &notices[0];
    assert_eq!(subject, &format!("[P3] rotation_scheduled {name}"));
    assert_eq!(scheduled["details"]["dependents"][0], "billing-api");
    assert_eq!(scheduled["details"]["strategy"], "single-user");
    assert_eq!(notices[1].1["details"]["new_version"], new.as_str());

    // The emergency rotation retired the old version as exposed: only --force puts it
    // back (tests/cli_policy.rs has the refusal).
    let o = env.cli(&[
        "rollback",
        "--secret",
        &name,
        "--ticket",
        "INC-4242",
        "--reason",
        "billing-api 401s",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("retired by an emergency rotation"),
        "{}",
        stderr(&o)
    );
    // A single-user secret: the labels move, and the operator is told the old password
    // is likely refused by the database by now.
    assert!(
        stderr(&o).contains(&format!(
            "warning: {name} rotates single-user: labels only: after setSecret the database no longer accepts the old password"
        )),
        "{}",
        stderr(&o)
    );
    let rolled = env.stages(&name).await;
    assert_eq!(
        Env::version_with(&rolled, "AWSCURRENT").as_deref(),
        Some(old.as_str())
    );
    assert_eq!(
        Env::version_with(&rolled, "AWSPREVIOUS").as_deref(),
        Some(new.as_str())
    );
    let outcome: String = env
        .db()
        .query_row(
            "SELECT outcome FROM audit WHERE action = 'rollback' AND secret = ?1",
            [&name],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outcome, "ok");
}

#[tokio::test]
async fn rollback_is_refused_without_a_previous_version() {
    recording();
    let env = Env::new("norollback", &select_all()).await;
    let name = moto::unique_name("e2e/norollback");
    env.sm
        .create_secret()
        .name(&name)
        .secret_string("v")
        .send()
        .await
        .unwrap();
    let before = env.stages(&name).await;

    let o = env.cli(&[
        "rollback", "--secret", &name, "--ticket", "INC-1", "--reason", "test",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nothing to roll back to"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.stages(&name).await, before);
    let outcome: String = env
        .db()
        .query_row(
            "SELECT outcome FROM audit WHERE action = 'rollback'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outcome, "refused");
}

#[tokio::test]
async fn a_stuck_awspending_is_not_rotated_and_security_is_told() {
    recording();
    let env = Env::new("stuck", &select_all()).await;
    let name = moto::unique_name("e2e/stuck");
    env.rotatable_secret(&name).await;
    // AWSPENDING on a version that is not AWSCURRENT, as a rotation function that died
    // after createSecret leaves it.
    env.leave_pending(&name, "stuckstuckstuckstuckstuckstuck0001")
        .await;

    let o = env.rotate_emergency(&name, "INC-7", "departure");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a previous rotation is not complete"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        env.rotations_by_rotationd(&name),
        0,
        "RotateSecret must not be called on a stuck secret"
    );
    // The pending version is still there for the humans to inspect.
    let stages = env.stages(&name).await;
    assert_eq!(
        stages
            .get("stuckstuckstuckstuckstuckstuck0001")
            .map(|v| v.as_slice()),
        Some(&["AWSPENDING".to_string()][..])
    );

    let messages = env.security_messages(Duration::from_secs(10)).await;
    let stuck: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "rotation_stuck")
        .collect();
    assert_eq!(stuck.len(), 1, "{messages:?}");
    let (subject, m) = stuck[0];
    assert_eq!(subject, &format!("[P1] rotation_stuck {name}"));
    assert_eq!(m["schema"], "rotationd.alert.v1");
    assert_eq!(m["ticket"], "INC-7");
    assert!(m["error"].as_str().unwrap().contains("AWSPENDING"));
    assert!(!m["runbook"].as_array().unwrap().is_empty());
    assert!(
        !serde_json::to_string(m)
            .unwrap()
            .contains("initial-test-value"),
        "a secret value leaked"
    );
}

#[tokio::test]
async fn a_secret_scheduled_for_deletion_fails_preflight() {
    recording();
    let env = Env::new("deleted", &select_all()).await;
    let name = moto::unique_name("e2e/deleted");
    env.rotatable_secret(&name).await;
    env.sm
        .delete_secret()
        .secret_id(&name)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let o = env.rotate_emergency(&name, "INC-8", "test");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("scheduled for deletion"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.rotations_by_rotationd(&name), 0);
}

#[tokio::test]
async fn a_secret_without_rotation_configured_fails_preflight() {
    recording();
    let env = Env::new("unconfigured", &select_all()).await;
    let name = moto::unique_name("e2e/unconfigured");
    env.sm
        .create_secret()
        .name(&name)
        .secret_string("v")
        .send()
        .await
        .unwrap();
    let o = env.rotate_emergency(&name, "INC-9", "test");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("rotation is not configured"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.rotations_by_rotationd(&name), 0);
    let failed = outbox(&env, "rotation_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, format!("[P1] rotation_failed {name}"));
}

#[tokio::test]
async fn a_failing_rotation_function_fails_the_attempt_and_escalates() {
    recording();
    let env = Env::new("lambda", &select_all()).await;
    let name = moto::unique_name("e2e/lambda");
    env.rotatable_secret(&name).await;
    // Test setup: configure a rotation function that does not exist. moto records the ARN
    // and leaves an AWSPENDING version behind, which setup clears again.
    let lambda = "arn:aws:lambda:us-east-1:123456789012:function:gone";
    let err = env
        .sm
        .rotate_secret()
        .secret_id(&name)
        .rotation_lambda_arn(lambda)
        .send()
        .await;
    assert!(err.is_err());
    let stages = env.stages(&name).await;
    let pending = Env::version_with(&stages, "AWSPENDING").unwrap();
    env.sm
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSPENDING")
        .remove_from_version_id(pending)
        .send()
        .await
        .unwrap();

    let o = env.rotate_emergency(&name, "INC-10", "test");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ResourceNotFoundException"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.rotations_by_rotationd(&name), 1);
    let messages = env.security_messages(Duration::from_secs(10)).await;
    let failed: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "rotation_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{messages:?}");
    assert_eq!(failed[0].1["severity"], "P1");
    assert!(
        failed[0].1["error"]
            .as_str()
            .unwrap()
            .contains("ResourceNotFoundException")
    );
}

/// A daily crontab whose fire time is `minutes` from `t` (UTC), as "M H * * *".
fn daily_at(t: chrono::DateTime<Utc>) -> String {
    format!("{} {} * * *", t.minute(), t.hour())
}

#[tokio::test]
async fn the_daemon_rotates_inside_the_window_and_not_outside_it() {
    recording();
    // rotationd's clock runs one hour ahead, so the secrets (created now) are older than
    // a window that opened two minutes before rotationd's "now".
    let offset = chrono::Duration::hours(1);
    let shifted = Utc::now() + offset;
    let inside = moto::unique_name("e2e/window-in");
    let outside = moto::unique_name("e2e/window-out");
    let open = daily_at(shifted - chrono::Duration::minutes(2));
    let later = daily_at(shifted + chrono::Duration::hours(6));
    let body = Body::new()
        .change_tickets_required()
        .with(
            secret(&inside)
                .schedule(&open)
                .window("1h")
                .ticket("CHG-100"),
        )
        .with(
            secret(&outside)
                .schedule(&later)
                .window("1h")
                .ticket("CHG-101"),
        );
    let env = Env::new("window", &body.render()).await;
    env.rotatable_secret(&inside).await;
    env.rotatable_secret(&outside).await;

    let mut daemon = env.daemon(&[(
        "ROTATIOND_TEST_CLOCK_OFFSET",
        &offset.num_seconds().to_string(),
    )]);
    let rotated = env
        .eventually(Duration::from_secs(60), || {
            let state: Option<String> = env
                .db()
                .query_row(
                    "SELECT state FROM attempts WHERE secret = ?1 AND state = 'succeeded'",
                    [&inside],
                    |r| r.get(0),
                )
                .ok();
            state
        })
        .await;
    let metrics = env.metrics();
    let status = terminate(&mut daemon, Duration::from_secs(30));
    let mut log = String::new();
    use std::io::Read;
    daemon.stderr.take().unwrap().read_to_string(&mut log).ok();
    assert!(
        !log.contains("initial-test-value"),
        "a secret value reached the log"
    );
    assert!(log.contains("rotation succeeded"), "{log}");
    assert!(
        rotated.is_some(),
        "the open window was not used; daemon log:\n{log}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM must exit 0; log:\n{log}"
    );
    assert_eq!(env.rotations_by_rotationd(&inside), 1);
    assert_eq!(
        env.rotations_by_rotationd(&outside),
        0,
        "rotated outside its window"
    );
    assert!(
        metrics
            .contains("rotationd_rotations_total{account=\"self\",outcome=\"succeeded\",region=\"us-east-1\",trigger=\"scheduled\"} 1"),
        "{metrics}"
    );
    // A real scrape passes promtool's linter (installed by scripts/test.sh).
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: scripts/test.sh installs it (Debian package prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let lint = promtool.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    // Counted at the reconcile that queued the rotation: one due, one compliant.
    assert!(
        metrics
            .contains("rotationd_secrets{account=\"self\",region=\"us-east-1\",status=\"due\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "rotationd_secrets{account=\"self\",region=\"us-east-1\",status=\"compliant\"} 1"
        ),
        "{metrics}"
    );
    let (kind, ticket, status): (String, String, String) = env
        .db()
        .query_row(
            "SELECT kind, ticket, status FROM triggers WHERE secret = ?1",
            [&inside],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), ticket.as_str(), status.as_str()),
        ("scheduled", "CHG-100", "done")
    );
}

#[tokio::test]
async fn a_crash_between_rotate_secret_and_validation_resumes_with_one_rotate_secret() {
    recording();
    let env = Env::new("crash", &select_all()).await;
    let name = moto::unique_name("e2e/crash");
    env.rotatable_secret(&name).await;
    let old = Env::version_with(&env.stages(&name).await, "AWSCURRENT").unwrap();

    // The failpoint pauses right after RotateSecret was answered and committed.
    let mut rotate = env
        .rotate_emergency_command(&name, "INC-11", "crash test")
        .env("ROTATIOND_TEST_FAILPOINT", "after-rotate")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let monitoring = env
        .eventually(Duration::from_secs(30), || {
            env.db()
                .query_row(
                    "SELECT id FROM attempts WHERE secret = ?1 AND state = 'monitoring'",
                    [&name],
                    |r| r.get::<_, String>(0),
                )
                .ok()
        })
        .await
        .expect("the attempt never reached monitoring");
    rotate.kill().unwrap(); // SIGKILL: no cleanup, no checkpoint
    rotate.wait().unwrap();
    assert_eq!(env.rotations_by_rotationd(&name), 1);

    let mut daemon = env.daemon(&[]);
    let finished = env
        .eventually(Duration::from_secs(60), || {
            env.db()
                .query_row(
                    "SELECT state, rotate_calls FROM attempts WHERE id = ?1 AND finished_at IS NOT NULL",
                    [&monitoring],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .ok()
        })
        .await;
    let status = terminate(&mut daemon, Duration::from_secs(30));
    assert_eq!(finished, Some(("succeeded".to_string(), 1)));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_eq!(
        env.rotations_by_rotationd(&name),
        1,
        "a second RotateSecret was sent"
    );
    let stages = env.stages(&name).await;
    assert_eq!(
        Env::version_with(&stages, "AWSCURRENT"),
        Some(format!("rotationd-{monitoring}"))
    );
    assert_eq!(Env::version_with(&stages, "AWSPREVIOUS"), Some(old));
}

#[tokio::test]
async fn a_configured_secret_absent_from_aws_is_reported_missing_and_escalated_once() {
    recording();
    let absent = moto::unique_name("e2e/absent");
    let present = moto::unique_name("e2e/present");
    let body = Body::new().with(secret(&absent)).with(secret(&present));
    let env = Env::new("missing", &body.render()).await;
    env.rotatable_secret(&present).await;

    let o = env.cli(&["status", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status_of = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["secret"] == id)
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&absent).as_deref(), Some("missing"));
    assert_eq!(status_of(&present).as_deref(), Some("compliant"));

    // Two daemon runs (a restart in between): one escalation in all.
    for _ in 0..2 {
        let mut daemon = env.daemon(&[]);
        assert!(
            env.wait_ready(Duration::from_secs(30)).await,
            "the daemon never became ready"
        );
        let reconciled = env
            .eventually(Duration::from_secs(30), || {
                let n: i64 = env
                    .db()
                    .query_row(
                        "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'secret_missing' AND published_at IS NOT NULL",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                (n >= 1).then_some(n)
            })
            .await;
        assert_eq!(
            terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
            Some(0)
        );
        assert_eq!(reconciled, Some(1));
    }
    let messages = env.security_messages(Duration::from_secs(10)).await;
    let missing: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "secret_missing")
        .collect();
    assert_eq!(missing.len(), 1, "{messages:?}");
    assert_eq!(missing[0].0, format!("[P2] secret_missing {absent}"));
}

#[tokio::test]
async fn aws_unreachable_is_raised_once_and_readyz_says_not_ready() {
    let env = Env::new("unreachable", &Body::new().with(secret("prod/db")).render()).await;
    // Nothing listens on this port: every AWS call fails to connect.
    let dead = common::rotationd::free_port();
    env.use_endpoint(&format!("http://127.0.0.1:{dead}"));
    env.set_in("alerts", "unreachable_after = \"1s\"");

    let (mut daemon, log) = env.daemon_logged(&[]);
    let queued = env
        .eventually(Duration::from_secs(60), || {
            let n: i64 = env
                .db()
                .query_row(
                    "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'aws_unreachable'",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            (n >= 1).then_some(n)
        })
        .await;
    let ready = common::rotationd::http_get(env.metrics_port, "/readyz");
    let healthy = common::rotationd::http_get(env.metrics_port, "/healthz");
    // Another failing reconcile of the same outage must not alert again. The first failing
    // pass starts the outage's clock, the second (15 s later, past unreachable_after)
    // raises the alert: wait for a third to have failed, and have not raised it again.
    let failed_passes = || log_lines(&log, "reconcile failed; retrying");
    let third = env
        .eventually(Duration::from_secs(60), || {
            (failed_passes() >= 3).then_some(())
        })
        .await;
    assert!(
        third.is_some(),
        "no third failing reconcile:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let (total, published): (i64, i64) = env
        .db()
        .query_row(
            "SELECT COUNT(*), COUNT(published_at) FROM alert_outbox WHERE kind = 'aws_unreachable'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert_eq!(queued, Some(1));
    assert_eq!(
        (total, published),
        (1, 0),
        "raised once, waiting in the outbox for SNS to return"
    );
    assert_eq!(ready.map(|(s, _)| s), Some(503));
    assert_eq!(healthy.map(|(s, _)| s), Some(200));
}

#[tokio::test]
async fn an_alert_that_cannot_be_published_waits_in_the_outbox_and_goes_out_once() {
    recording();
    let env = Env::new("outbox", &select_all()).await;
    // Security's topic does not exist yet: every Publish fails, as in an SNS outage.
    let topic_name = moto::unique_name("later-security").replace('/', "-");
    let topic_arn = format!("arn:aws:sns:us-east-1:123456789012:{topic_name}");
    env.edit_config(|c| c.replace(&env.security_topic_arn, &topic_arn));
    let name = moto::unique_name("e2e/outbox");
    env.sm
        .create_secret()
        .name(&name)
        .secret_string("v")
        .send()
        .await
        .unwrap();

    // Rotation not configured: a P1 rotation_failed is raised and cannot be delivered.
    let o = env.rotate_emergency(&name, "INC-5", "t");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("alerts stay in the outbox")
            || stderr(&o).contains("rotation is not configured")
    );
    let (published, attempts): (Option<i64>, i64) = env
        .db()
        .query_row(
            "SELECT published_at, attempts FROM alert_outbox WHERE kind = 'rotation_failed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(published, None);
    assert!(attempts >= 1, "the publish was not even tried");

    // SNS "comes back": the topic exists, subscribed by a queue.
    let conf = moto::sdk_config(&env.moto.endpoint());
    let sns = aws_sdk_sns::Client::new(&conf);
    let created = sns
        .create_topic()
        .name(&topic_name)
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    assert_eq!(created, topic_arn);
    let (q, q_arn) = queue_with_arn(&env.sqs, &format!("{topic_name}-q")).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(q_arn)
        .send()
        .await
        .unwrap();

    // The daemon delivers it (after the outbox's backoff), twice started: once in all.
    for _ in 0..2 {
        let mut daemon = env.daemon(&[]);
        let delivered = env
            .eventually(Duration::from_secs(60), || {
                let n: i64 = env
                    .db()
                    .query_row(
                        "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_failed' AND published_at IS NOT NULL",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                (n == 1).then_some(())
            })
            .await;
        // A second delivery would come from a pass over the outbox: each run makes one as
        // its loops start, alongside its first reconcile, and SIGTERM ends the publisher
        // only between passes. A ready run has started its pass; the exit below ends it.
        let ready = env.wait_ready(Duration::from_secs(30)).await;
        assert_eq!(
            terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
            Some(0)
        );
        assert!(delivered.is_some());
        assert!(ready, "the daemon never became ready");
    }
    let bodies = common::rotationd::drain(&env.sqs, &q).await;
    let failed: Vec<_> = bodies
        .iter()
        .filter(|b| b.contains("rotation_failed"))
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "delivered {} times: {bodies:?}",
        failed.len()
    );
    let envelope: serde_json::Value = serde_json::from_str(failed[0]).unwrap();
    assert_eq!(envelope["Subject"], format!("[P1] rotation_failed {name}"));
    assert_eq!(envelope["MessageAttributes"]["severity"]["Value"], "P1");
    assert_eq!(
        envelope["MessageAttributes"]["kind"]["Value"],
        "rotation_failed"
    );
}
