//! Native schedule drift on moto: a secret whose Secrets Manager schedule (here
//! `AutomaticallyAfterDays: 90`, as `Env::rotatable_secret` sets) disagrees with the
//! TOML schedule.
//!
//! - `report` tells (status, `plan --live`, a metric, one P3 notice) and changes nothing;
//! - `sync` writes the TOML schedule with RotateSecret `RotationRules` and
//!   `RotateImmediately = false`. moto ignores `ScheduleExpression` and `Duration`, so
//!   the written rules are checked in moto's request log, and the rules read back still
//!   differ: that also shows the loop guard (a second daemon start does not write again);
//! - a schedule AWS cannot express is refused by `validate` when `sync` is asked for.

mod common;

use std::time::Duration;

use common::config::{self, Body, selector};
use common::moto::{self, recording};
use common::rotationd::{Env, rows, stderr, terminate};

/// `native_schedule = mode`, and the secrets under `prefix` on a quarterly TOML schedule.
fn config(mode: &str, prefix: &str) -> String {
    Body::new()
        .policy("native_schedule", mode)
        .with(selector(prefix).schedule("0 2 1 1,4,7,10 *").window("3h"))
        .render()
}

/// The `native_schedule_drift` notices on the notify topic (waiting up to 15 s for any).
async fn drift_notices(env: &Env) -> Vec<serde_json::Value> {
    env.notify_messages(Duration::from_secs(15))
        .await
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m["kind"] == "native_schedule_drift")
        .collect()
}

/// RotateSecret requests rotationd sent for `secret`, as JSON bodies.
fn rotate_requests(env: &Env, secret: &str) -> Vec<serde_json::Value> {
    env.moto
        .rotationd_requests()
        .into_iter()
        .filter(|r| r.operation == "RotateSecret")
        .map(|r| r.json())
        .filter(|j| {
            j["SecretId"]
                .as_str()
                .is_some_and(|id| id == secret || id.contains(secret))
        })
        .collect()
}

#[tokio::test]
async fn report_shows_the_drift_and_changes_nothing() {
    recording();
    let prefix = moto::unique_name("drift/report/");
    let env = Env::new("drift-report", &config("report", &prefix)).await;
    let secret = format!("{prefix}db");
    env.rotatable_secret(&secret).await;

    let (mut daemon, log) = env.daemon_ready(&[]).await;
    let metrics = env.metrics();
    assert!(
        metrics.contains("rotationd_native_schedule_drift_secrets 1"),
        "{metrics}"
    );
    let notices = drift_notices(&env).await;
    assert_eq!(
        notices.len(),
        1,
        "{notices:#?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(notices[0]["severity"], "P3");
    assert_eq!(notices[0]["details"]["count"], 1);
    let listed = &notices[0]["details"]["secrets"][0];
    assert_eq!(listed["secret"], secret.as_str());
    assert_eq!(listed["native"], "every 90 days");
    assert_eq!(listed["expected"], "cron(0 2 1 1,4,7,10 ? *) for 3h");
    terminate(&mut daemon, Duration::from_secs(10));
    // A second start reports nothing new: once per secret and native schedule.
    let (mut daemon, _) = env.daemon_ready(&[]).await;
    let again = env.notify_messages(Duration::from_secs(4)).await;
    assert!(
        again
            .iter()
            .all(|(_, m)| m["kind"] != "native_schedule_drift"),
        "{again:#?}"
    );
    terminate(&mut daemon, Duration::from_secs(10));

    let status = env.cli(&["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(out.contains("drift"), "{out}");
    assert!(
        out.contains("1 secret(s) with NATIVE drift") && out.contains("rotationd plan --live"),
        "{out}"
    );
    let json = env.cli(&["status", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        rows[0]["native_schedule"]["why"]
            .as_str()
            .unwrap()
            .contains("Secrets Manager rotates it every 90 days"),
        "{rows}"
    );

    let live = env.cli(&["plan", "--live", "--format", "json"]);
    assert!(live.status.success(), "{}", stderr(&live));
    let rows: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["secret"], secret.as_str());
    assert_eq!(row["schedule"], "0 2 1 1,4,7,10 *");
    assert_eq!(row["as_aws"], "cron(0 2 1 1,4,7,10 ? *) for 3h");
    assert_eq!(row["secrets_manager"], "every 90 days");
    assert!(
        row["drift"]["why"]
            .as_str()
            .unwrap()
            .contains("rotated twice")
    );
    let table = env.cli(&["plan", "--live"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("SECRETS MANAGER NOW") && text.contains("every 90 days"),
        "{text}"
    );

    // Report never writes: the only RotateSecret for the secret is the test's own.
    assert!(rotate_requests(&env, &secret).is_empty());
}

#[tokio::test]
async fn sync_writes_the_toml_schedule_once_without_rotating() {
    recording();
    let prefix = moto::unique_name("drift/sync/");
    let env = Env::new("drift-sync", &config("sync", &prefix)).await;
    let secret = format!("{prefix}db");
    env.rotatable_secret(&secret).await;

    let (mut daemon, log) = env.daemon_ready(&[]).await;
    let written = env
        .eventually(Duration::from_secs(10), || {
            let r = rotate_requests(&env, &secret);
            (!r.is_empty()).then_some(r)
        })
        .await
        .unwrap_or_else(|| panic!("{}", std::fs::read_to_string(&log).unwrap()));
    assert_eq!(written.len(), 1, "{written:#?}");
    let req = &written[0];
    assert_eq!(
        req["RotationRules"]["ScheduleExpression"],
        "cron(0 2 1 1,4,7,10 ? *)"
    );
    assert_eq!(req["RotationRules"]["Duration"], "3h");
    assert!(req["RotationRules"].get("AutomaticallyAfterDays").is_none());
    assert_eq!(req["RotateImmediately"], false);
    assert_eq!(
        rows(
            &env.db(),
            "SELECT action || ' ' || outcome FROM audit WHERE action LIKE 'native_schedule%'"
        ),
        vec!["native_schedule_sync ok"]
    );
    terminate(&mut daemon, Duration::from_secs(10));
    let metrics_before_restart = rotate_requests(&env, &secret).len();

    // moto does not keep ScheduleExpression, so Secrets Manager still "differs": a second
    // start must not write again, and says so once instead.
    let (mut daemon, log) = env.daemon_ready(&[]).await;
    let notices = drift_notices(&env).await;
    assert_eq!(
        notices.len(),
        1,
        "{notices:#?}\n{}\n{}",
        String::from_utf8_lossy(&env.cli(&["plan", "--live"]).stdout),
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        notices[0]["reason"]
            .as_str()
            .unwrap()
            .contains("already tried to sync"),
        "{}",
        notices[0]
    );
    assert_eq!(rotate_requests(&env, &secret).len(), metrics_before_restart);
    terminate(&mut daemon, Duration::from_secs(10));
}

#[tokio::test]
async fn sync_refuses_a_schedule_secrets_manager_cannot_express() {
    let env = Env::new(
        "drift-inexpressible",
        r#"
[policy]
native_schedule = "sync"

[[secret]]
id = "drift/half-past"
schedule = "30 2 * * *"
window = "2h"
"#,
    )
    .await;
    let o = env.cli(&["validate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("schedule `30 2 * * *` cannot be written as a Secrets Manager schedule (native_schedule = \"sync\")"),
        "{err}"
    );
    assert!(err.contains("minute `30`"), "{err}");
    let line = std::fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("schedule = \"30 2"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(":{line}:")),
        "the error points at the schedule's line {line}: {err}"
    );
}

#[tokio::test]
async fn a_planned_rotation_is_skipped_when_the_window_already_saw_a_rotation() {
    recording();
    // rotationd's clock runs 10 minutes behind the real one. Its next window opens at the
    // next full minute at least 30 s away (its time), so the first reconcile queues a
    // trigger for it. Then the test rotates the secret, as Secrets Manager's own schedule
    // would: in rotationd's time that rotation lies inside the window when it opens.
    let offset = chrono::Duration::minutes(-10);
    let shifted = chrono::Utc::now() + offset + chrono::Duration::seconds(90);
    use chrono::Timelike;
    let open = shifted.with_second(0).unwrap().with_nanosecond(0).unwrap();
    let prefix = moto::unique_name("drift/twice/");
    let secret = format!("{prefix}db");
    let body = Body::new().change_tickets_required().with(
        config::secret(&secret)
            .schedule(&format!("{} {} * * *", open.minute(), open.hour()))
            .window("1h")
            .ticket("CHG-300"),
    );
    let env = Env::new("drift-twice", &body.render()).await;
    env.rotatable_secret(&secret).await;
    let (mut daemon, log) = env
        .daemon_ready(&[(
            "ROTATIOND_TEST_CLOCK_OFFSET",
            &offset.num_seconds().to_string(),
        )])
        .await;
    assert_eq!(
        rows(&env.db(), "SELECT kind || ' ' || status FROM triggers"),
        vec!["scheduled pending"]
    );
    env.sm
        .rotate_secret()
        .secret_id(&secret)
        .send()
        .await
        .unwrap();
    let ended = env
        .eventually(Duration::from_secs(150), || {
            let r = rows(
                &env.db(),
                "SELECT state || ': ' || error FROM attempts WHERE finished_at IS NOT NULL",
            );
            (!r.is_empty()).then_some(r)
        })
        .await
        .unwrap_or_else(|| panic!("{}", std::fs::read_to_string(&log).unwrap()));
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(
        ended[0].starts_with("skipped: already rotated in this window"),
        "{ended:?}"
    );
    assert_eq!(env.rotations_by_rotationd(&secret), 0);
    assert_eq!(
        rows(&env.db(), "SELECT kind || ' ' || status FROM triggers"),
        vec!["scheduled cancelled"]
    );
    terminate(&mut daemon, Duration::from_secs(10));
}

#[tokio::test]
async fn disable_turns_the_native_schedule_off_once_and_never_under_a_rotation() {
    recording();
    let prefix = moto::unique_name("drift/disable/");
    let env = Env::new("drift-disable", &config("disable", &prefix)).await;
    let secret = format!("{prefix}db");
    env.rotatable_secret(&secret).await;
    // CancelRotateSecret needs a rotation function (AWS and moto alike): a failed rotation
    // with one leaves the function configured and AWSPENDING out.
    let token = "drift-disable-pending-0000000000000000";
    env.leave_pending(&secret, token).await;
    let cancels = |env: &Env| {
        env.moto
            .rotationd_requests()
            .into_iter()
            .filter(|r| {
                r.operation == "CancelRotateSecret"
                    && r.json()["SecretId"]
                        .as_str()
                        .is_some_and(|id| id.contains(secret.as_str()))
            })
            .count()
    };

    // AWSPENDING is out: a rotation may be running, and cancelling would break it.
    let (mut daemon, _) = env.daemon_ready(&[]).await;
    assert_eq!(cancels(&env), 0);
    assert!(
        env.metrics()
            .contains("rotationd_native_schedule_drift_secrets 1")
    );
    terminate(&mut daemon, Duration::from_secs(10));

    // The operator clears the broken rotation; the next reconcile cancels, once.
    env.sm
        .update_secret_version_stage()
        .secret_id(&secret)
        .version_stage("AWSPENDING")
        .remove_from_version_id(token)
        .send()
        .await
        .unwrap();
    let (mut daemon, log) = env.daemon_ready(&[]).await;
    assert_eq!(
        cancels(&env),
        1,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let d = env
        .sm
        .describe_secret()
        .secret_id(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(d.rotation_enabled(), Some(false));
    assert_eq!(
        rows(
            &env.db(),
            "SELECT action || ' ' || outcome FROM audit WHERE action LIKE 'native_schedule%'"
        ),
        vec!["native_schedule_disable ok"]
    );
    terminate(&mut daemon, Duration::from_secs(10));

    // Off now: no drift, nothing more to do.
    let (mut daemon, _) = env.daemon_ready(&[]).await;
    let metrics = env.metrics();
    assert!(
        metrics.contains("rotationd_native_schedule_drift_secrets 0"),
        "{metrics}"
    );
    assert_eq!(cancels(&env), 1);
    terminate(&mut daemon, Duration::from_secs(10));
}
