//! SIGHUP with every broken config fixture keeps the daemon running on its old config.
//!
//! The real daemon starts against moto with a good config naming one secret, then, for each
//! `tests/fixtures/config/NAME.toml` whose `NAME.expected` says the file is rejected (exit
//! code other than 0), the config file is overwritten with the fixture and the daemon gets
//! SIGHUP. After each one: still alive, `/readyz` 200, one more
//! `rotationd_config_reloads_total{outcome="failure"}`, the fixture's located diagnostics in
//! the log, and no new generation started (a generation starts with a reconcile: no new
//! ListSecrets call, the reconcile timestamp and the secret statuses unchanged). The positive
//! control at the end reloads the good config plus a second secret and sees exactly those
//! signals move. SIGTERM then stops it with exit 0.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use common::config::{Body, Table, secret};
use common::moto;
use common::rotationd::{Daemon, Env, http_get, metric, terminate};

const FAILED: &str = "reload failed; the previous configuration stays in force";
const RELOADED: &str = "configuration reloaded; restarting the loops with it";

/// A fixture rejected by `rotationd validate`, with the diagnostic lines it must produce.
struct Broken {
    name: String,
    text: String,
    /// `LINE:COL: SEVERITY: MESSAGE`, without the file name (the daemon reads another path).
    diagnostics: Vec<String>,
}

/// Every fixture whose `.expected` first line is `exit N` with N != 0, sorted by name.
fn broken_fixtures() -> Vec<Broken> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/fixtures/config");
    let mut tomls: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    tomls.sort();
    let mut out = Vec::new();
    for toml in tomls {
        let expected = std::fs::read_to_string(toml.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{} has no .expected file: {e}", toml.display()));
        let (first, rest) = expected.split_once('\n').unwrap_or((&expected, ""));
        let code: i32 = first
            .strip_prefix("exit ")
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: first line must be `exit N`", toml.display()));
        if code == 0 {
            continue;
        }
        // `validate` names the file as given on its command line, relative to the root.
        let prefix = format!("{}:", toml.strip_prefix(root).unwrap().display());
        let diagnostics = rest
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            // Skip the `FILE: N error(s)` summary: only `validate` prints it.
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect();
        out.push(Broken {
            name: toml.file_stem().unwrap().to_string_lossy().into_owned(),
            text: std::fs::read_to_string(&toml).unwrap(),
            diagnostics,
        });
    }
    out
}

/// What shows whether the loops were restarted (with which config): the sample lines of
/// the secret statuses, the last reconcile time and the ListSecrets request count.
#[derive(Debug, PartialEq)]
struct Generation {
    statuses: Vec<String>,
    last_reconcile: f64,
    list_secrets: f64,
}

fn generation(text: &str) -> Generation {
    Generation {
        statuses: text
            .lines()
            .filter(|l| l.starts_with("rotationd_secrets{"))
            .map(str::to_string)
            .collect(),
        last_reconcile: metric(
            text,
            "rotationd_last_reconcile_success_timestamp_seconds",
            &[],
        ),
        list_secrets: metric(
            text,
            "rotationd_aws_requests_total",
            &["operation=\"ListSecrets\""],
        ),
    }
}

fn reloads(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        "rotationd_config_reloads_total",
        &[&format!("outcome=\"{outcome}\"")],
    )
}

/// Polls `/metrics` until `pred` holds; the last text either way.
async fn metrics_until(env: &Env, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = env.metrics();
        if pred(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hup(daemon: &Daemon) {
    let ok = Command::new("kill")
        .args(["-HUP", &daemon.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP failed");
}

fn secret_entry(id: &str, schedule: &str) -> Table {
    secret(id).schedule(schedule).window("1h")
}

#[tokio::test]
async fn sighup_with_each_broken_fixture_keeps_the_old_config() {
    let started = Instant::now();
    let broken = broken_fixtures();
    assert!(
        broken.len() >= 20,
        "expected at least 20 broken config fixtures, found {}",
        broken.len()
    );

    let kept = moto::unique_name("reload/kept");
    let added = moto::unique_name("reload/added");
    // A daily window 12 hours away: nothing rotates during the test, so the statuses move
    // only when the configuration does.
    let schedule = format!("0 {} * * *", (Utc::now().hour() + 12) % 24);
    let body = Body::new().with(secret_entry(&kept, &schedule));
    let env = Env::new("reload", &body.render()).await;
    env.rotatable_secret(&kept).await;
    env.rotatable_secret(&added).await;
    let good = std::fs::read_to_string(&env.config).unwrap();

    // stderr to a file: a pipe nobody reads would fill up and block the daemon's logging.
    let log_path = env.dir.path().join("rotationd.log");
    let mut daemon = Daemon(
        env.command(&["run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        env.wait_ready(Duration::from_secs(30)).await,
        "not ready: {}",
        log()
    );
    let text = metrics_until(&env, Duration::from_secs(10), |t| {
        metric(t, "rotationd_secrets", &["status=\"compliant\""]) == 1.0
    })
    .await;
    assert_eq!(
        metric(&text, "rotationd_secrets", &[]),
        1.0,
        "the good config names one secret:\n{text}"
    );
    let before = generation(&text);
    assert!(before.list_secrets >= 1.0, "{text}");
    assert_eq!(reloads(&text, "failure"), 0.0);

    for (i, b) in broken.iter().enumerate() {
        std::fs::write(&env.config, &b.text).unwrap();
        hup(&daemon);
        let want = (i + 1) as f64;
        let text = metrics_until(&env, Duration::from_secs(10), |t| {
            reloads(t, "failure") >= want
        })
        .await;
        assert_eq!(
            reloads(&text, "failure"),
            want,
            "{}: the failed reload was not counted once\n{}",
            b.name,
            log()
        );
        assert_eq!(reloads(&text, "success"), 0.0, "{}: applied", b.name);
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "{}: the daemon exited:\n{}",
            b.name,
            log()
        );
        assert_eq!(
            http_get(env.metrics_port, "/readyz").map(|(s, _)| s),
            Some(200),
            "{}: not ready after the failed reload",
            b.name
        );
        assert_eq!(
            generation(&text),
            before,
            "{}: the loops restarted or the statuses changed",
            b.name
        );
    }

    // Positive control: the good config plus a second secret is applied, and the same
    // signals that stayed put above move.
    let applied = format!("{good}{}", secret_entry(&added, &schedule).render());
    std::fs::write(&env.config, &applied).unwrap();
    hup(&daemon);
    let text = metrics_until(&env, Duration::from_secs(20), |t| {
        reloads(t, "success") == 1.0
            && metric(t, "rotationd_secrets", &["status=\"compliant\""]) == 2.0
    })
    .await;
    assert_eq!(reloads(&text, "success"), 1.0, "{}", log());
    assert_eq!(reloads(&text, "failure"), broken.len() as f64);
    assert_eq!(
        metric(&text, "rotationd_secrets", &[]),
        2.0,
        "the reloaded config names two secrets:\n{text}"
    );
    assert!(
        generation(&text).list_secrets > before.list_secrets,
        "{text}"
    );
    assert_eq!(
        http_get(env.metrics_port, "/readyz").map(|(s, _)| s),
        Some(200)
    );

    let status = terminate(&mut daemon, Duration::from_secs(30));
    let log = log();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");

    assert_eq!(log.matches(FAILED).count(), broken.len(), "{log}");
    assert_eq!(log.matches(RELOADED).count(), 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // Each rejection logged the fixture's located diagnostics, as `validate` prints them
    // but with the daemon's own config path.
    let config = env.config.display().to_string();
    let mut missing = Vec::new();
    for b in &broken {
        assert!(!b.diagnostics.is_empty(), "{}: no diagnostics", b.name);
        for d in &b.diagnostics {
            let line = format!("{config}:{d}");
            if !log.contains(&line) {
                missing.push(format!("{}: {line}", b.name));
            }
        }
    }
    assert!(missing.is_empty(), "not logged:\n{}", missing.join("\n"));

    // Every reload is in the audit log: the refused ones, and the applied one with the
    // old and new file hashes and the one section that changed.
    let sha = |t: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let rows = common::rotationd::rows(
        &env.db(),
        // Reloads (the start's own `config` row, the mode it started in, has no old hash).
        "SELECT outcome || ' ' || detail FROM audit WHERE action = 'config' \
         AND json_type(detail, '$.old_sha256') IS NOT NULL ORDER BY id",
    );
    assert_eq!(rows.len(), broken.len() + 1, "{rows:#?}");
    assert!(
        rows[..broken.len()]
            .iter()
            .all(|r| r.starts_with("refused ")),
        "{rows:#?}"
    );
    let (outcome, detail) = rows[broken.len()].split_once(' ').unwrap();
    let detail: serde_json::Value = serde_json::from_str(detail).unwrap();
    assert_eq!(outcome, "ok");
    assert_eq!(detail["old_sha256"], sha(&good));
    assert_eq!(detail["new_sha256"], sha(&applied));
    assert_eq!(detail["changed_sections"], serde_json::json!(["secret"]));
    eprintln!(
        "{} broken fixtures reloaded in {:?}",
        broken.len(),
        started.elapsed()
    );
}
