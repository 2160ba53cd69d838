//! The guide's "investigate before re-attempting": a rotation that fails puts its secret
//! on hold. No planned rotation starts while it is held; `status` and the metrics say so,
//! the P1 says how to lift it, `rotationd resume --secret` lifts it (audited), and a
//! departure still rotates a held secret (the SLA comes first), paging Security if that
//! fails too. The failures are real AWS errors: a proxy in front of moto refuses
//! RotateSecret with AccessDenied, as IAM does for a role that lost the permission.

mod common;

use std::time::Duration;

use chrono::{Timelike, Utc};
use common::config::{Body, secret};
use common::events;
use common::moto;
use common::proxy::{Outcome, Proxy};
use common::rotationd::{Env, stderr};

/// Only RotateSecret carries a ClientRequestToken (rotationd never calls PutSecretValue).
const ROTATE_SECRET: &str = "ClientRequestToken";

/// A daily crontab that fired two minutes before `t` (UTC).
fn opened_before(t: chrono::DateTime<Utc>) -> String {
    let t = t - chrono::Duration::minutes(2);
    format!("{} {} * * *", t.minute(), t.hour())
}

fn status_row(env: &Env, name: &str) -> serde_json::Value {
    let o = env.cli(&["status", "--format", "json", "--secret", name]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    rows[0].clone()
}

fn latest_attempt(env: &Env, name: &str) -> (String, String, String) {
    any_attempt(env, name).expect("no attempt yet")
}

/// The secret's latest attempt (id, state, trigger kind), if it has one.
fn any_attempt(env: &Env, name: &str) -> Option<(String, String, String)> {
    env.db()
        .query_row(
            "SELECT id, state, trigger_kind FROM attempts WHERE secret = ?1 \
             ORDER BY started_at DESC, rowid DESC LIMIT 1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()
}

/// Rotates `name` by hand through a proxy that refuses RotateSecret: the attempt fails
/// and the secret is held. Returns the failed attempt's id.
async fn fail_once(env: &Env, name: &str) -> String {
    let o = env.rotate_emergency(name, "INC-8100", "hold test: first try");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (id, state, _) = latest_attempt(env, name);
    assert_eq!(state, "failed");
    id
}

#[tokio::test]
async fn a_failed_rotation_holds_the_secret_until_resume_and_no_window_starts_it() {
    // rotationd's clock runs an hour ahead, so the secret (created now) is older than a
    // daily window that opened two minutes before rotationd's "now".
    let offset = chrono::Duration::hours(1);
    let name = moto::unique_name("hold/window");
    let body = Body::new().with(
        secret(&name)
            .schedule(&opened_before(Utc::now() + offset))
            .window("1h"),
    );
    let env = Env::new("hold-window", &body.render()).await;
    env.rotatable_secret(&name).await;
    let proxy = Proxy::start(env.moto.port());
    env.use_endpoint(&proxy.endpoint());
    proxy.deny(ROTATE_SECRET);

    let failed = fail_once(&env, &name).await;
    // Held: status names the attempt and how to lift the hold.
    let row = status_row(&env, &name);
    assert_eq!(row["status"], "held", "{row}");
    assert_eq!(row["hold"]["attempt_id"], failed.as_str(), "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(detail.contains(&failed), "{detail}");
    assert!(detail.contains("rotationd resume --secret"), "{detail}");
    // The P1 says so too, with the exact command.
    let p1 = env
        .security_messages(Duration::from_secs(10))
        .await
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m["kind"] == "rotation_failed")
        .expect("no rotation_failed P1");
    assert_eq!(p1["severity"], "P1");
    let lift = p1["details"]["hold"]["lift"].as_str().unwrap_or_default();
    assert!(
        lift.starts_with(&format!("rotationd resume --secret {name} ")),
        "{p1:#}"
    );

    // The permission is back, but the window that is open now must not rotate a held
    // secret: the trigger is recorded, deferred (audited once) and left pending.
    proxy.allow_all();
    let (mut daemon, log) = env
        .daemon_ready(&[(
            "ROTATIOND_TEST_CLOCK_OFFSET",
            &offset.num_seconds().to_string(),
        )])
        .await;
    let deferred = env
        .eventually(Duration::from_secs(30), || {
            let n = events::count(
                &env,
                "SELECT count(*) FROM audit WHERE action = 'hold' AND outcome = 'deferred'",
            );
            (n > 0).then_some(n)
        })
        .await;
    assert_eq!(
        deferred,
        Some(1),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pending = events::count(
        &env,
        "SELECT count(*) FROM triggers WHERE kind = 'scheduled' AND status = 'pending'",
    );
    assert_eq!(pending, 1);
    assert_eq!(proxy.count("RotateSecret", Outcome::Forwarded), 0);
    assert_eq!(
        env.metric("rotationd_secrets", &["status=\"held\""]),
        1.0,
        "{}",
        env.metrics()
    );

    // Someone looked: resume lifts the hold (audited with who, ticket and finding), and
    // the window's trigger runs.
    let o = env.cli(&[
        "resume",
        "--secret",
        &name,
        "--ticket",
        "INC-8100",
        "--reason",
        "the rotation role had lost secretsmanager:RotateSecret; restored",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("lifted"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let rotated = env
        .eventually(Duration::from_secs(40), || {
            let (_, state, kind) = latest_attempt(&env, &name);
            (state == "succeeded").then_some(kind)
        })
        .await;
    assert_eq!(rotated.as_deref(), Some("scheduled"));
    assert_eq!(proxy.count("RotateSecret", Outcome::Forwarded), 1);
    let lifted = common::rotationd::rows(
        &env.db(),
        "SELECT actor || ' ' || ticket || ' ' || reason FROM audit \
         WHERE action = 'hold' AND outcome = 'resumed'",
    );
    assert_eq!(lifted.len(), 1, "{lifted:?}");
    assert!(lifted[0].starts_with("cli:"), "{lifted:?}");
    assert!(
        lifted[0].contains("INC-8100 the rotation role"),
        "{lifted:?}"
    );
    let row = status_row(&env, &name);
    assert_ne!(row["status"], "held", "{row}");
    assert!(row["hold"].is_null(), "{row}");
    let status = common::rotationd::terminate(&mut daemon, Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[tokio::test]
async fn a_departure_rotates_a_held_secret_and_a_second_failure_pages_with_the_deadline() {
    let name = moto::unique_name("hold/departure");
    let body = Body::new().with(secret(&name).custodians(["mallory", "trudy"]));
    let env = Env::new("hold-departure", &body.render()).await;
    env.rotatable_secret(&name).await;
    let (queue, bus) = events::queue_and_bus(&env, "hold-departure").await;
    events::add_events(&env, &queue, &bus, events::ALLOW_ACCOUNT);
    let proxy = Proxy::start(env.moto.port());
    env.use_endpoint(&proxy.endpoint());
    proxy.deny(ROTATE_SECRET);
    fail_once(&env, &name).await;
    env.security_messages(Duration::from_secs(5)).await;

    let (daemon, log) = env.daemon_ready(&[]).await;
    // mallory leaves: the departure rotates the held secret at once, and it fails again.
    events::send(
        &env,
        &queue,
        &events::iam_delete_user("mallory", "hold-dep-1"),
    )
    .await;
    let second = env
        .eventually(Duration::from_secs(40), || {
            let (id, state, kind) = latest_attempt(&env, &name);
            (kind == "departure" && state == "failed").then_some(id)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the departure did not try:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    let mut p1 = None;
    for _ in 0..10 {
        p1 = env
            .security_messages(Duration::from_secs(2))
            .await
            .into_iter()
            .map(|(_, m)| m)
            .find(|m| m["kind"] == "rotation_failed" && m["details"]["attempt"] == second.as_str());
        if p1.is_some() {
            break;
        }
    }
    let p1 = p1.expect("no P1 for the departure's failure");
    assert_eq!(p1["severity"], "P1");
    let error = p1["error"].as_str().unwrap();
    assert!(error.contains("held since"), "{error}");
    assert!(error.contains("failed 2 times"), "{error}");
    assert!(error.contains("departure rotation"), "{error}");
    assert!(error.contains("deadline"), "{error}");
    assert_eq!(p1["details"]["hold"]["failures"], 2);
    let row = status_row(&env, &name);
    assert_eq!(row["status"], "held", "{row}");
    assert_eq!(row["hold"]["failures"], 2, "{row}");

    // The permission is back and trudy leaves too: that rotation succeeds, and a rotation
    // that succeeds lifts the hold (audited as rotationd's).
    proxy.allow_all();
    events::send(
        &env,
        &queue,
        &events::iam_delete_user("trudy", "hold-dep-2"),
    )
    .await;
    let done = env
        .eventually(Duration::from_secs(40), || {
            let (_, state, kind) = latest_attempt(&env, &name);
            (kind == "departure" && state == "succeeded").then_some(())
        })
        .await;
    assert!(
        done.is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The attempt's state commits before its end (triggers, audit, the lift) does: wait
    // for the lift itself.
    let lifted = env
        .eventually(Duration::from_secs(20), || {
            let rows = common::rotationd::rows(
                &env.db(),
                "SELECT actor || ' ' || reason FROM audit WHERE action = 'hold' AND outcome = 'resumed'",
            );
            (!rows.is_empty()).then_some(rows)
        })
        .await
        .unwrap_or_default();
    assert_eq!(lifted.len(), 1, "{lifted:?}");
    assert!(lifted[0].contains("rotation succeeded"), "{lifted:?}");
    let row = status_row(&env, &name);
    assert_ne!(row["status"], "held", "{row}");
    drop(daemon);
}

/// RotateSecret calls rotationd made for `name` (counted before each is sent).
fn rotate_calls(env: &Env, name: &str) -> i64 {
    env.db()
        .query_row(
            "SELECT COALESCE(SUM(rotate_calls), 0) FROM attempts WHERE secret = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap()
}

/// The hold's reason and attempt, as `status --format json` shows them.
fn hold_of(env: &Env, name: &str) -> serde_json::Value {
    status_row(env, name)["hold"].clone()
}

/// A RotationAbandoned event (someone wrote a version by hand during a rotation) holds the
/// secret like a failure: nothing planned starts until someone has looked. A compromise
/// still rotates it at once (the guide: do not wait), and that success lifts the hold.
#[tokio::test]
async fn an_abandoned_rotation_holds_the_secret_and_a_compromise_still_rotates_it() {
    let name = moto::unique_name("hold/abandoned");
    let body = Body::new().with(secret(&name));
    let env = Env::new("hold-abandoned", &body.render()).await;
    env.rotatable_secret(&name).await;
    let (queue, bus) = events::queue_and_bus(&env, "hold-abandoned").await;
    events::add_events(
        &env,
        &queue,
        &bus,
        &format!(
            "{}\n[[events.compromise]]\nsource = \"com.example.security\"\ndetail_type = \"Credential Exposed\"\nsecret_pointer = \"/detail/secret\"\n",
            events::ALLOW_ACCOUNT
        ),
    );
    let arn = events::arn_of(&env, &name).await;
    let (daemon, log) = env.daemon_ready(&[]).await;
    let mut abandoned: serde_json::Value =
        serde_json::from_str(&events::rotation_failed(&arn, "hold-abandoned-1", "")).unwrap();
    abandoned["detail"]["eventName"] = serde_json::json!("RotationAbandoned");
    events::send(&env, &queue, &abandoned.to_string()).await;
    let held = env
        .eventually(Duration::from_secs(30), || {
            let h = hold_of(&env, &name);
            (!h.is_null()).then_some(h)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the abandoned rotation did not hold {name}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    assert_eq!(held["attempt_id"], "event-hold-abandoned-1", "{held}");
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .contains("RotationAbandoned"),
        "{held}"
    );
    assert_eq!(status_row(&env, &name)["status"], "held");
    assert_eq!(rotate_calls(&env, &name), 0);

    // A compromise is not held back.
    let exposed = serde_json::json!({
        "version": "0", "id": "e9000000-0000-4000-8000-00000000ab0d",
        "detail-type": "Credential Exposed", "source": "com.example.security",
        "account": events::ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1",
        "resources": [],
        "detail": { "secret": arn, "ticket": "INC-8300", "reason": "key in a pastebin" }
    });
    events::send(&env, &queue, &exposed.to_string()).await;
    let rotated = env
        .eventually(Duration::from_secs(60), || {
            let (_, state, kind) = any_attempt(&env, &name)?;
            (kind == "compromise" && state == "succeeded").then_some(())
        })
        .await;
    assert!(
        rotated.is_some(),
        "the compromise did not rotate the held secret:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(rotate_calls(&env, &name), 1);
    // The lift commits with the attempt's end, just after its state.
    let lifted = env
        .eventually(Duration::from_secs(20), || {
            hold_of(&env, &name).is_null().then_some(())
        })
        .await;
    assert!(lifted.is_some(), "{}", hold_of(&env, &name));
    drop(daemon);
}

/// `retry_failed = true` keeps its one automatic retry after a RotationFailed event, even
/// though the failure held the secret; when the retry fails too the hold counts a second
/// failure, and nothing retries again.
#[tokio::test]
async fn retry_failed_retries_a_held_secret_once_and_the_hold_stays_after_it() {
    let name = moto::unique_name("hold/retry");
    let body = Body::new().with(secret(&name));
    let env = Env::new("hold-retry", &body.render()).await;
    env.edit_config(|c| c.replace("reconcile_interval = \"1h\"", "reconcile_interval = \"2s\""));
    env.rotatable_secret(&name).await;
    let (queue, bus) = events::queue_and_bus(&env, "hold-retry").await;
    events::add_events(
        &env,
        &queue,
        &bus,
        &format!(
            "{}\nretry_failed = true\nretry_backoff = \"2s\"\n",
            events::ALLOW_ACCOUNT
        ),
    );
    let arn = events::arn_of(&env, &name).await;
    let proxy = Proxy::start(env.moto.port());
    env.use_endpoint(&proxy.endpoint());
    proxy.deny(ROTATE_SECRET);
    let (daemon, log) = env.daemon_ready(&[]).await;
    events::send(
        &env,
        &queue,
        &events::rotation_failed(
            &arn,
            "hold-retry-1",
            "Error when executing lambda arn:aws:lambda:us-east-1:123456789012:function:rotate during testSecret step",
        ),
    )
    .await;
    let retried = env
        .eventually(Duration::from_secs(60), || {
            let (id, state, kind) = any_attempt(&env, &name)?;
            (kind == "retry" && state == "failed").then_some(id)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the retry did not run on the held secret:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    // It really asked AWS (and was refused): the hold did not stop the retry.
    assert_eq!(proxy.count("RotateSecret", Outcome::Denied), 1);
    let hold = env
        .eventually(Duration::from_secs(10), || {
            let h = hold_of(&env, &name);
            (h["failures"] == 2).then_some(h)
        })
        .await
        .unwrap_or_else(|| panic!("{}", hold_of(&env, &name)));
    assert_eq!(hold["attempt_id"], retried.as_str(), "{hold}");
    // One retry, and only one: a few seconds later there is still none pending and no
    // second RotateSecret.
    assert!(env.reconciles(2, Duration::from_secs(30)).await);
    let retries = events::count(&env, "SELECT count(*) FROM triggers WHERE kind = 'retry'");
    assert_eq!(retries, 1);
    let pending = events::count(
        &env,
        "SELECT count(*) FROM triggers WHERE status = 'pending'",
    );
    assert_eq!(pending, 0);
    assert_eq!(proxy.count("RotateSecret", Outcome::Denied), 1);
    assert_eq!(status_row(&env, &name)["status"], "held");
    drop(daemon);
}

/// An overdue secret that is held is not rotated by the reconciler (the overdue trigger
/// is deferred and audited), and a successful `rotationd rotate` by an operator lifts the
/// hold.
#[tokio::test]
async fn an_overdue_held_secret_waits_and_a_manual_rotation_lifts_the_hold() {
    // rotationd's clock runs 100 days ahead: the secret is past max_age (93d) and no
    // quarterly window is open then.
    let offset = chrono::Duration::days(100);
    let name = moto::unique_name("hold/overdue");
    let body = Body::new().with(secret(&name));
    let env = Env::new("hold-overdue", &body.render()).await;
    env.edit_config(|c| c.replace("reconcile_interval = \"1h\"", "reconcile_interval = \"2s\""));
    env.rotatable_secret(&name).await;
    let proxy = Proxy::start(env.moto.port());
    env.use_endpoint(&proxy.endpoint());
    proxy.deny(ROTATE_SECRET);
    let failed = fail_once(&env, &name).await;
    proxy.allow_all();

    let (mut daemon, log) = env
        .daemon_ready(&[(
            "ROTATIOND_TEST_CLOCK_OFFSET",
            &offset.num_seconds().to_string(),
        )])
        .await;
    let deferred = env
        .eventually(Duration::from_secs(30), || {
            let n = events::count(
                &env,
                "SELECT count(*) FROM audit WHERE action = 'hold' AND outcome = 'deferred'",
            );
            (n > 0).then_some(n)
        })
        .await;
    assert_eq!(
        deferred,
        Some(1),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let overdue = events::count(
        &env,
        "SELECT count(*) FROM triggers WHERE kind = 'overdue' AND status = 'pending'",
    );
    assert_eq!(overdue, 1);
    assert!(env.reconciles(2, Duration::from_secs(30)).await);
    assert_eq!(proxy.count("RotateSecret", Outcome::Forwarded), 0);
    assert_eq!(
        status_row(&env, &name)["hold"]["attempt_id"],
        failed.as_str()
    );
    let status = common::rotationd::terminate(&mut daemon, Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0));

    // The operator fixed the cause and rotates by hand: success lifts the hold.
    let o = env.rotate_emergency(&name, "INC-8101", "hold test: fixed, rotating");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(proxy.count("RotateSecret", Outcome::Forwarded), 1);
    assert!(hold_of(&env, &name).is_null());
    let lifted = common::rotationd::rows(
        &env.db(),
        "SELECT reason FROM audit WHERE action = 'hold' AND outcome = 'resumed'",
    );
    assert_eq!(lifted.len(), 1, "{lifted:?}");
    assert!(lifted[0].contains("rotation succeeded"), "{lifted:?}");
}
