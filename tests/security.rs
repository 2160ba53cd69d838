//! Security, end to end: a known secret value (a canary) sits in the emulator, rotationd
//! runs everything it does (status, a manual rotation, the daemon's overdue rotation and
//! alert, a departure event and its rotation), and the canary never shows in its log, its
//! CLI output, the SNS messages, `/metrics` or the state database's bytes; from the
//! server's side rotationd never called an API that reads or writes a value; the state
//! file and the directories rotationd creates are owner-only; and a `metrics_listen` off
//! loopback draws a warning. Then the state file itself: a symbolic link or a shared
//! directory is refused, and a database deleted under the running daemon stops it acting,
//! tells Security, and is not quietly replaced by an empty one at the next start.
//!
//! Only the first test reads the emulator's recording.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::config::{Body, secret};
use common::events::{
    ALLOW_ACCOUNT, add_events, iam_delete_user, left_on_queue, queue_and_bus, send, settled,
};
use common::moto;
use common::rotationd::{Env, drain, http_get, rows, stderr, terminate};

const VALUE_APIS: &[&str] = &[
    "GetSecretValue",
    "BatchGetSecretValue",
    "PutSecretValue",
    "UpdateSecret",
];

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_secret_value_never_leaves_aws_and_the_state_is_owner_only() {
    let canary = format!("canary-{}-Zq7xV", moto::unique_name("value"));
    let name = moto::unique_name("sec/canary");
    let other = moto::unique_name("sec/other");
    let body = Body::new()
        .policy("max_age", "1d")
        .with(secret(&name).custodians(["mallory"]))
        .with(secret(&other));
    let env = Env::new("security", &body.render()).await;
    // State in directories rotationd has to create.
    let state_dir = env.dir.path().join("var/lib/rotationd");
    let state = state_dir.join("state.db");
    env.edit_config(|c| {
        let c = c.replace(
            &format!(
                "state_path = \"{}\"",
                env.dir.path().join("state.db").display()
            ),
            &format!("state_path = \"{}\"", state.display()),
        );
        assert!(c.contains(&state.display().to_string()));
        c
    });
    let (queue_url, bus) = queue_and_bus(&env, "security").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    // Recording starts before the test writes the values, so the positive control below can
    // see them on the AWS side.
    env.moto.start_recording();
    env.rotatable_secret_with(&name, &canary).await;
    env.rotatable_secret_with(&other, "other-value").await;
    // Positive control: the canary really is a plain string on the AWS side (in the test's
    // own CreateSecret, recorded by moto), so a plain search would find a leak of it.
    assert!(
        env.moto
            .recorded_requests()
            .iter()
            .any(|r| r.operation == "CreateSecret"
                && !r.user_agent.contains("app/rotationd")
                && String::from_utf8_lossy(&r.body).contains(&canary)),
        "the canary must be findable where it is"
    );

    let mut outputs = Vec::new();
    for (what, o) in [
        ("status", env.cli(&["status"])),
        (
            "status --format json",
            env.cli(&["status", "--format", "json"]),
        ),
        ("rotate", env.rotate_emergency(&name, "INC-7", "canary")),
    ] {
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
        outputs.push(String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o));
    }
    assert_eq!(mode(&state_dir), 0o700, "a directory rotationd created");
    assert_eq!(mode(&env.dir.path().join("var/lib")), 0o700);
    assert_eq!(mode(&state), 0o600);

    // The daemon: both secrets overdue (its clock two days ahead of max_age = 1d), then
    // mallory leaves.
    let (mut daemon, log_path) = env.daemon_logged(&[("ROTATIOND_TEST_CLOCK_OFFSET", "172800")]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    send(
        &env,
        &queue_url,
        &iam_delete_user("mallory", "5ec00000-0000-4000-8000-0000000ca4a7"),
    )
    .await;
    let db = || rusqlite::Connection::open(&state).unwrap();
    let done = env
        .eventually(Duration::from_secs(60), || {
            let (ok, departures, unpublished): (i64, i64, i64) = db()
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM attempts WHERE state = 'succeeded'), \
                     (SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'), \
                     (SELECT COUNT(*) FROM alert_outbox WHERE published_at IS NULL)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .ok()?;
            (ok >= 3 && departures == 1 && unpublished == 0).then_some(())
        })
        .await;
    let metrics = env.metrics();
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    let outbox = rows(
        &db(),
        "SELECT kind || ' ' || COALESCE(published_at, 'unpublished') || ' ' || attempts FROM alert_outbox",
    );
    assert!(
        done.is_some(),
        "the run did not complete: {outbox:#?}\n{log}"
    );

    // Everything rotationd said or wrote, checked for the canary.
    let mut messages = drain(&env.sqs, &env.security_queue_url).await;
    messages.extend(drain(&env.sqs, &env.notify_queue_url).await);
    assert!(
        messages.iter().any(|m| m.contains("rotation_completed"))
            && messages.iter().any(|m| m.contains("overdue")),
        "the alerts checked must exist: {messages:?}"
    );
    assert!(log.contains("rotation succeeded"), "{log}");
    assert!(metrics.contains("rotationd_rotations_total"), "{metrics}");
    let mut state_bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = state_dir.join(format!("state.db{suffix}"));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            state_bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    let state_text = String::from_utf8_lossy(&state_bytes);
    assert!(
        state_text.contains(&name),
        "the state database names the secret"
    );
    for (what, text) in [
        ("CLI output", outputs.join("\n")),
        ("daemon log", log.clone()),
        ("SNS messages", messages.join("\n")),
        ("/metrics", metrics.clone()),
        ("state database", state_text.into_owned()),
    ] {
        assert!(
            !text.contains(&canary),
            "the secret value reached the {what}"
        );
        assert!(
            !text.contains("other-value"),
            "a secret value reached the {what}"
        );
    }

    // From the server's side: no call that reads or writes a value.
    let ops = env.moto.rotationd_operations();
    assert!(ops.iter().any(|o| o == "RotateSecret"), "{ops:?}");
    for api in VALUE_APIS {
        assert!(!ops.iter().any(|o| o == api), "rotationd called {api}");
    }

    // A metrics endpoint reachable from the network is allowed, with a warning.
    let open = env.dir.path().join("open.toml");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("metrics_listen"))
        .unwrap()
        .to_string();
    std::fs::write(
        &open,
        text.replace(&line, "metrics_listen = \"0.0.0.0:9464\""),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rotationd"))
        .arg("--config")
        .arg(&open)
        .arg("validate")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning") && stderr(&o).contains("not on loopback"),
        "{}",
        stderr(&o)
    );
}

/// The review's symlinked `state_path` was followed and the file it named chmodded; a
/// state directory others can write lets them delete or replace the history; a config
/// file others can write lets them redirect the daemon. All are refused, with what to do,
/// and nothing is touched.
#[tokio::test]
async fn a_symlinked_state_file_or_a_shared_state_directory_is_refused() {
    let name = moto::unique_name("sec/unsafe");
    let env = Env::new("unsafe-state", &Body::new().with(secret(&name)).render()).await;
    env.rotatable_secret(&name).await;
    let state = env.dir.path().join("state.db");
    let elsewhere = env.dir.path().join("elsewhere.db");
    std::fs::write(&elsewhere, b"").unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &state).unwrap();
    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refusing state database") && stderr(&o).contains("symbolic link"),
        "{}",
        stderr(&o)
    );
    assert_eq!(mode(&elsewhere), 0o644, "the link's target was chmodded");
    assert_eq!(
        std::fs::metadata(&elsewhere).unwrap().len(),
        0,
        "the link's target was written"
    );
    std::fs::remove_file(&state).unwrap();

    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = env.cli(&["status"]);
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("writable by group and others (mode 777)")
            && stderr(&o).contains("chmod go-w"),
        "{}",
        stderr(&o)
    );
    assert!(
        !state.exists(),
        "a state file was created in a shared directory"
    );
    // Owner-only, it opens.
    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // A config file the group may write decides what rotationd rotates and where it
    // reports: the daemon refuses it (validate warns), and runs once it is owner-only.
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o664)).unwrap();
    let o = env.cli(&["run"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refusing to run")
            && stderr(&o).contains("writable by its group (mode 664)")
            && stderr(&o).contains("chmod go-w"),
        "{}",
        stderr(&o)
    );
    let o = env.cli(&["validate"]);
    assert!(
        o.status.success() && stderr(&o).contains("warning: config file"),
        "{}",
        stderr(&o)
    );
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (mut daemon, _) = env.daemon_ready(&[]).await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
}

/// The review deleted `state.db` under the running daemon: `/readyz` stayed ready, the
/// daemon went on in a file nobody would read again, and the next start began an empty
/// history as if nothing had happened. Now: 503 within seconds, a P1 `state_lost` to
/// Security, no more work (a departure sent afterwards waits on the queue), a restart
/// that refuses to start over the lost history, and `run --init` that starts a new one
/// whose first entry names the lost chain's head, and handles the departure then.
#[tokio::test]
async fn a_state_file_deleted_under_the_daemon_stops_it_and_is_not_quietly_replaced() {
    let name = moto::unique_name("sec/lost");
    let body = Body::new().with(secret(&name).custodians(["trudy"]));
    let env = Env::new("lost-state", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "lost-state").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.rotatable_secret(&name).await;
    let state = env.dir.path().join("state.db");
    let (mut daemon, log_path) = env.daemon_ready(&[]).await;
    let head = env.dir.path().join("state.db.head");
    let recorded = env
        .eventually(Duration::from_secs(15), || {
            let text = std::fs::read_to_string(&head).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            (v["last_id"].as_i64()? > 0).then(|| v["last_hash"].as_str().unwrap().to_string())
        })
        .await
        .expect("the head file records the audit chain's head");

    std::fs::remove_file(&state).unwrap();
    let unready = env
        .eventually(Duration::from_secs(15), || {
            http_get(env.metrics_port, "/readyz").filter(|(code, _)| *code == 503)
        })
        .await;
    let lost = env
        .security_messages(Duration::from_secs(30))
        .await
        .into_iter()
        .find(|(_, m)| m["kind"] == "state_lost");
    // No more work: a departure sent now is not taken off the queue.
    send(
        &env,
        &queue_url,
        &iam_delete_user("trudy", "5ec00000-0000-4000-8000-00000000105e"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = left_on_queue(&env, &queue_url).await;
    let status = terminate(&mut daemon, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let (_, body) = unready.unwrap_or_else(|| panic!("/readyz stayed ready:\n{log}"));
    assert!(body.contains("state file was deleted"), "{body}");
    let (subject, message) = lost.unwrap_or_else(|| panic!("no state_lost alert:\n{log}"));
    assert!(subject.starts_with("[P1] state_lost"), "{subject}");
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains(&state.display().to_string()),
        "{message}"
    );
    // Visible, or taken by a long poll the stop abandoned (it comes back after the
    // visibility timeout): never deleted, so never lost.
    let on_queue: u32 = waiting.0.parse::<u32>().unwrap() + waiting.1.parse::<u32>().unwrap();
    assert_eq!(on_queue, 1, "{waiting:?}\n{log}");
    assert!(log.contains("stopped acting until a restart"), "{log}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(!state.exists(), "the deleted file came back");

    // A restart refuses to begin an empty history over the lost one, and says what to do.
    let o = env.cli(&["run"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for needle in ["is missing", &recorded, "--init", "restore"] {
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    assert!(!state.exists(), "the refused start created a database");
    // Nor does `audit --verify` read the lost history as an empty, intact log (the
    // review's "OK: 0 entries", exit 0).
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for needle in ["is missing", &recorded, "restore"] {
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("OK"), "{out}");

    // --init starts a new history that names the lost one, and the departure that waited
    // on the queue is handled.
    let mut c = env.command(&["run", "--init"]);
    let mut daemon = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    let handled = settled(&env, &queue_url, Duration::from_secs(60)).await;
    let rotated = rows(
        &env.db(),
        "SELECT secret FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'",
    );
    let first = rows(
        &env.db(),
        "SELECT action || '/' || outcome || ' ' || detail FROM audit ORDER BY id LIMIT 1",
    );
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(handled, "the departure was not handled after --init");
    assert_eq!(rotated, vec![name.clone()]);
    assert!(
        first[0].starts_with("state/initialized") && first[0].contains(&recorded),
        "{first:?}"
    );
}
