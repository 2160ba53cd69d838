//! Real rotations, end to end: the real binary against a Secrets Manager endpoint whose
//! secrets have rotation functions attached (`tests/rotation_host/`, in front of moto),
//! functions that change a real PostgreSQL server's passwords, and a dependent service
//! that logs into PostgreSQL once a second with the credential it read.
//!
//! What each test proves is what the Secrets Rotation Guide promises on a real database:
//! the four stages observed as they happen, one RotateSecret, the old password refused
//! after a single-user rotation (and kept by alternating users), a failure named by its
//! stage and escalated once, a dangling AWSPENDING never rotated over, a function that
//! never finishes timed out, a dependent that kept the old password caught by the watch,
//! and a departure that really changes the password.

mod common;

use std::time::{Duration, Instant};

use common::events;
use common::moto;
use common::postgres::{self, Postgres};
use common::rotation_host::{Dependent, RotationHost};
use common::rotationd::{Env, stderr};

/// One test's world: PostgreSQL, the host in front of moto, rotationd pointed at the host.
struct World {
    env: Env,
    pg: Postgres,
    host: RotationHost,
}

impl World {
    async fn new(test: &str, body: &str) -> World {
        let env = Env::new(test, body).await;
        let pg = Postgres::start();
        let host = RotationHost::start(&env.moto.endpoint(), env.dir.path());
        env.use_endpoint(&host.endpoint());
        World { env, pg, host }
    }

    /// A PostgreSQL login role and its secret (value written by the test, the customer's
    /// side), with `function` attached in the host; returns the secret's ARN.
    async fn database_secret(
        &self,
        name: &str,
        user: &str,
        password: &str,
        function: serde_json::Value,
    ) -> String {
        self.pg.create_app_user(user, password);
        let master = if function["function"] == "alternating-users" {
            let master = format!("{name}-master");
            let arn = self
                .env
                .sm
                .create_secret()
                .name(&master)
                .secret_string(postgres::secret_value(
                    &self.pg,
                    "postgres",
                    postgres::SUPERUSER_PASSWORD,
                    None,
                ))
                .send()
                .await
                .unwrap()
                .arn
                .unwrap();
            Some(arn)
        } else {
            None
        };
        let arn = self
            .env
            .sm
            .create_secret()
            .name(name)
            .secret_string(postgres::secret_value(
                &self.pg,
                user,
                password,
                master.as_deref(),
            ))
            .send()
            .await
            .unwrap()
            .arn
            .unwrap();
        let mut spec = function;
        spec["secret_id"] = serde_json::json!(name);
        self.host.register(spec);
        arn
    }

    /// The secret's AWSCURRENT value (the test reads it as the customer would).
    async fn current(&self, name: &str) -> serde_json::Value {
        let v = self
            .env
            .sm
            .get_secret_value()
            .secret_id(name)
            // moto answers a GetSecretValue without a stage with a version it tracks on
            // its own, not AWSCURRENT (docs/moto-findings.md): always name the stage.
            .version_stage("AWSCURRENT")
            .send()
            .await
            .unwrap();
        serde_json::from_str(v.secret_string().unwrap()).unwrap()
    }

    fn dependent(&self, secret: &str, namespace: &str, name: &str, reread: &str) -> Dependent {
        Dependent::start(
            &self.env.moto.endpoint(),
            secret,
            namespace,
            name,
            reread,
            self.env.dir.path(),
        )
    }

    fn rotate(&self, secret: &str, ticket: &str) -> std::process::Output {
        self.env.cli(&[
            "rotate",
            "--secret",
            secret,
            "--ticket",
            ticket,
            "--reason",
            "real rotation test",
            "--emergency",
        ])
    }

    fn attempt(&self, secret: &str) -> Option<(String, Option<String>, Option<String>)> {
        self.env
            .db()
            .query_row(
                "SELECT state, validation, error FROM attempts WHERE secret = ?1 \
                 AND id NOT LIKE 'event-%' ORDER BY started_at DESC LIMIT 1",
                [secret],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok()
    }

    /// Every message (subject, document) that reached Security within `wait`.
    async fn security(&self, wait: Duration) -> Vec<(String, serde_json::Value)> {
        let deadline = Instant::now() + wait;
        let mut all = Vec::new();
        while Instant::now() < deadline {
            all.extend(self.env.security_messages(Duration::from_secs(1)).await);
        }
        all
    }

    /// The P1 messages that reached Security within `wait`, but the `breach_suspected`
    /// page every `rotate --emergency` sends (these tests rotate that way).
    async fn p1s(&self, wait: Duration) -> Vec<serde_json::Value> {
        p1s_of(self.security(wait).await)
    }
}

fn p1s_of(messages: Vec<(String, serde_json::Value)>) -> Vec<serde_json::Value> {
    messages
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m["severity"] == "P1" && m["kind"] != "breach_suspected")
        .collect()
}

fn single_user(delays: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "function": "single-user", "delays": delays })
}

#[tokio::test]
async fn authentication_errors_in_the_logs_alone_fail_the_watch_and_no_line_is_repeated() {
    // The guide's "check application logs for authentication errors", with the logs as the
    // only signal: no alarm, no metric. The app keeps the old password and logs each
    // refused login, with the password it tried (a careless app; the canary).
    const CANARY: &str = "ledger-Old-Canary-7";
    let name = moto::unique_name("real/logs");
    let group = format!("/app/{}", moto::unique_name("ledger").replace('/', "-"));
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false
validation_period = "30s"
validation_interval = "2s"

[[dependent]]
name = "ledger-logs"
log_groups = ["{group}"]
auth_error_pattern = '?"authentication failed" ?" 401 " ?" 403 "'

[[secret]]
id = "{name}"
strategy = "single-user"
dependents = ["ledger-logs"]
"#
    );
    let w = World::new("real-logs", &body).await;
    w.database_secret(
        &name,
        "ledgerlogs",
        CANARY,
        single_user(serde_json::json!({})),
    )
    .await;
    let ns = moto::unique_name("Logs").replace('/', "-");
    let app = Dependent::start_with(
        &w.env.moto.endpoint(),
        &name,
        &ns,
        "ledger-logs",
        "never",
        w.env.dir.path(),
        &["--log-group", &group, "--log-password"],
    );
    let (daemon, log) = w.env.daemon_ready(&[]).await;

    let o = w.rotate(&name, "INC-7450");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let unhealthy = w
        .env
        .eventually(Duration::from_secs(60), || {
            w.attempt(&name)
                .filter(|(_, v, _)| v.as_deref() == Some("validated_unhealthy"))
        })
        .await;
    assert!(
        unhealthy.is_some(),
        "the logs did not fail the watch: {:?}\n{}",
        w.attempt(&name),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(app.status().unwrap().auth_failures >= 1);
    assert!(app.log().contains(CANARY), "the canary was not written");

    // One P1, whose evidence is the count, the stream and the times.
    let security = w.security(Duration::from_secs(8)).await;
    let p1s = p1s_of(security.clone());
    assert_eq!(p1s.len(), 1, "{p1s:#?}");
    assert_eq!(p1s[0]["kind"], "dependents_unhealthy");
    let evidence = &p1s[0]["details"]["evidence"][0];
    assert_eq!(evidence["source"], "logs", "{evidence:#}");
    assert_eq!(evidence["name"], group.as_str());
    let counted = &evidence["evidence"];
    assert!(counted["matches"].as_u64().unwrap() >= 1, "{counted:#}");
    // The baseline: the app's "200" lines, which moto's `?` matching returns, were not
    // counted (tests/moto_facts.rs, f_...).
    assert_eq!(counted["baseline"], 0, "{counted:#}");
    assert!(
        counted["streams"][0]
            .as_str()
            .unwrap()
            .starts_with("dependent-"),
        "{counted:#}"
    );
    assert!(counted["first_match"].is_string() && counted["last_match"].is_string());

    // The canary reached none of: Security's messages (every one, subjects included),
    // the audit log, the state files, rotationd's log, the output of `rotationd rotate`.
    let everything = serde_json::to_string(&security).unwrap();
    assert!(!everything.contains(CANARY), "a log line reached SNS");
    for out in [&o.stdout, &o.stderr] {
        assert!(
            !String::from_utf8_lossy(out).contains(CANARY),
            "a log line reached the CLI's output"
        );
    }
    let audit = common::rotationd::rows(
        &w.env.db(),
        "SELECT action || ' ' || COALESCE(reason, '') || ' ' || COALESCE(detail, '') FROM audit",
    );
    assert!(
        audit.iter().any(|a| a.contains("\"source\":\"logs\"")),
        "the evidence is not audited: {audit:#?}"
    );
    assert!(
        !audit.iter().any(|a| a.contains(CANARY)),
        "a log line reached the audit log"
    );
    for file in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(w.env.dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(CANARY.len()).any(|b| b == CANARY.as_bytes()),
            "a log line reached {file}"
        );
    }
    drop(daemon);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("validated_unhealthy") || text.contains("unhealthy"),
        "{text}"
    );
    assert!(!text.contains(CANARY), "a log line reached rotationd's log");
}

/// A dependent watched through the metric the dependent app publishes.
fn dependent_section(name: &str, namespace: &str) -> String {
    format!(
        r#"
[[dependent]]
name = "{name}"

[[dependent.metrics]]
namespace = "{namespace}"
metric_name = "AuthFailures"
dimensions = {{ Service = "{name}" }}
statistic = "Sum"
threshold = 2
period = "60s"
"#
    )
}

fn refused(result: Result<String, String>) -> bool {
    matches!(result, Err(e) if e.contains("password authentication failed"))
}

#[tokio::test]
async fn a_planned_single_user_rotation_changes_the_password_in_postgres() {
    let name = moto::unique_name("real/planned");
    let ns = moto::unique_name("App").replace('/', "-");
    // A daily window that opens at a minute 30 to 90 s from now: after the secret's
    // creation, which starts PostgreSQL and takes seconds on a loaded machine (a window
    // whose AWSCURRENT was created inside it counts as rotated, and nothing would run),
    // and soon enough for the daemon's first reconcile to plan it.
    let now = chrono::Utc::now();
    let ahead = if chrono::Timelike::second(&now) < 30 {
        1
    } else {
        2
    };
    let opens = now + chrono::Duration::minutes(ahead);
    let body = format!(
        r#"
[policy]
max_age = "93d"
validation_period = "20s"
validation_interval = "2s"
{dep}
[[secret]]
id = "{name}"
schedule = "{minute} {hour} * * *"
window = "1h"
strategy = "single-user"
change_ticket = "CHG-7001"
dependents = ["orders-api"]
"#,
        dep = dependent_section("orders-api", &ns),
        minute = opens.format("%M"),
        hour = opens.format("%H"),
    );
    let w = World::new("real-planned", &body).await;
    let old_password = "old-Pa55word";
    let arn = w
        .database_secret(
            &name,
            "orders",
            old_password,
            single_user(serde_json::json!({
                "createSecret": 1.5, "setSecret": 1.5, "testSecret": 1.0, "finishSecret": 1.0
            })),
        )
        .await;
    let app = w.dependent(&name, &ns, "orders-api", "on-failure");
    let verifier_before = w.pg.verifier("orders");

    let (daemon, log) = w.env.daemon_ready(&[]).await;
    let done = w
        .env
        .eventually(Duration::from_secs(210), || {
            w.attempt(&name)
                .filter(|(_, v, _)| v.as_deref() == Some("validated"))
        })
        .await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done.is_some(),
        "the planned rotation was not validated: {:?}\ndaemon log:\n{log_text}\nhost log:\n{}",
        w.attempt(&name),
        w.host.log()
    );

    // Exactly one RotateSecret, and the function ran its four steps in order.
    assert_eq!(w.host.rotate_calls(&arn), 1);
    let steps: Vec<String> = w.host.steps(&arn).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        steps,
        ["createSecret", "setSecret", "testSecret", "finishSecret"]
    );

    // The stages as observed, in order, in the audit log; the rotation took >= 5 s.
    let detail: String = w
        .env
        .db()
        .query_row(
            "SELECT detail FROM audit WHERE action = 'rotate' AND secret = ?1",
            [&name],
            |r| r.get(0),
        )
        .unwrap();
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    let at = |stage: &str| {
        let t = detail["stages"][stage]
            .as_str()
            .unwrap_or_else(|| panic!("stage {stage} missing from {detail}"));
        chrono::DateTime::parse_from_rfc3339(t).unwrap()
    };
    let order = [
        "preflight",
        "rotate_requested",
        "monitoring",
        "createSecret",
        "finishSecret",
        "validating",
        "succeeded",
    ];
    for pair in order.windows(2) {
        assert!(
            at(pair[0]) <= at(pair[1]),
            "{pair:?} out of order: {detail}"
        );
    }
    let took = at("finishSecret") - at("rotate_requested");
    assert!(
        took >= chrono::Duration::seconds(5),
        "the function takes 5 s, rotationd saw {took}"
    );
    assert!(
        (at("createSecret") - at("rotate_requested")) >= chrono::Duration::milliseconds(1500),
        "createSecret cannot be seen before the function ran it: {detail}"
    );
    for line in [
        "monitor: waiting for the rotation function's createSecret",
        "monitor: createSecret done",
        "finishSecret done",
        "rollback capability: labels only",
    ] {
        assert!(
            log_text.contains(line),
            "`{line}` not in the daemon log:\n{log_text}"
        );
    }

    // PostgreSQL accepts only the new password.
    let new = w.current(&name).await;
    assert_ne!(new["password"], old_password);
    assert_eq!(
        w.pg.login("orders", new["password"].as_str().unwrap()),
        Ok("orders".to_string())
    );
    assert!(
        refused(w.pg.login("orders", old_password)),
        "the old password still works"
    );
    assert_ne!(w.pg.verifier("orders"), verifier_before);

    // The dependent re-read the secret after its first refused login and works again.
    let s = app.status().unwrap();
    assert!(s.rereads >= 2, "{s:?}");
    let ok_now = s.ok;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(app.status().unwrap().ok > ok_now, "{:?}", app.log());
    drop(daemon);
}

#[tokio::test]
async fn alternating_users_keep_the_old_user_working_and_roll_back_cleanly() {
    let name = moto::unique_name("real/alternating");
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false

[[secret]]
id = "{name}"
strategy = "alternating-users"
"#
    );
    let w = World::new("real-alternating", &body).await;
    let arn = w
        .database_secret(
            &name,
            "billing",
            "billing-Old-1",
            serde_json::json!({"function": "alternating-users", "delays": {"createSecret": 1.0}}),
        )
        .await;
    let ns = moto::unique_name("Billing").replace('/', "-");
    let app = w.dependent(&name, &ns, "billing-api", "on-failure");
    let before = w.current(&name).await;

    let o = w.rotate(&name, "INC-7100");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rollback capability: AWSPREVIOUS stays usable"),
        "{}",
        stderr(&o)
    );
    assert_eq!(w.host.rotate_calls(&arn), 1);
    let after = w.current(&name).await;
    assert_eq!(after["username"], "billing_clone");
    // Both users log in: the previous credential still works until the next rotation.
    assert_eq!(
        w.pg.login("billing_clone", after["password"].as_str().unwrap()),
        Ok("billing_clone".to_string())
    );
    assert_eq!(
        w.pg.login("billing", before["password"].as_str().unwrap()),
        Ok("billing".to_string())
    );
    // The clone has the original user's grants.
    assert_eq!(
        w.pg.psql(
            "billing_clone",
            after["password"].as_str().unwrap(),
            "SELECT count(*) FROM billing_orders"
        ),
        Ok("0".to_string())
    );
    // An app started now reads the new credential: it logs in as the clone.
    let on_clone = w.dependent(&name, &ns, "billing-api-clone", "on-failure");
    assert_eq!(
        on_clone.status().unwrap().username.as_deref(),
        Some("billing_clone")
    );

    // Rollback: AWSCURRENT back to the old version, which still logs in.
    let o = w.env.cli(&[
        "rollback",
        "--secret",
        &name,
        "--ticket",
        "INC-7101",
        "--reason",
        "clone misbehaves",
        // The rotation was an emergency one: its old version is retired as exposed.
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rolled = w.current(&name).await;
    assert_eq!(rolled, before);
    assert_eq!(
        w.pg.login("billing", rolled["password"].as_str().unwrap()),
        Ok("billing".to_string())
    );
    // The running app never lost its login, and a restarted one reads a working
    // credential (the guide: restart dependents to pick up the reverted credential).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = app.status().unwrap();
    assert_eq!(s.auth_failures, 0, "{s:?}\n{}", app.log());
    // Nor did the one on the clone: alternating users keep both working until the next
    // rotation, so a rollback breaks neither side.
    let clone_ok = on_clone.status().unwrap().ok;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = on_clone.status().unwrap();
    assert_eq!(s.auth_failures, 0, "{s:?}\n{}", on_clone.log());
    assert!(s.ok > clone_ok, "{s:?}");
    drop(app);
    let restarted = w.dependent(&name, &ns, "billing-api-2", "on-failure");
    let s = restarted.status().unwrap();
    assert_eq!(s.username.as_deref(), Some("billing"));
    assert_eq!(s.auth_failures, 0);
}

/// A function failing at `step`: the attempt fails naming it, the RotationFailed event is
/// tied to the running attempt (one P1), the dangling AWSPENDING is stuck and never
/// rotated over, and the old credential still works.
async fn a_failure_at(step: &str, function: &str) {
    let name = moto::unique_name(&format!("real/fail-{step}"));
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false

[[secret]]
id = "{name}"
strategy = "{function}"
"#
    );
    let w = World::new(&format!("real-fail-{step}"), &body).await;
    let (queue, bus) = events::queue_and_bus(&w.env, &format!("fail-{step}")).await;
    events::add_events(&w.env, &queue, &bus, events::ALLOW_ACCOUNT);
    let user = format!("svc_{}", step.to_lowercase());
    let arn = w
        .database_secret(
            &name,
            &user,
            "svc-Old-Pa55",
            serde_json::json!({
                "function": function,
                "delays": {"createSecret": 0.5},
                "fail_at": step,
                "queue_url": queue,
            }),
        )
        .await;
    let (daemon, log) = w.env.daemon_ready(&[]).await;

    let o = w.rotate(&name, "INC-7200");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the rotation function failed during the {step} step"
        )),
        "the stage is not named:\n{err}\ndaemon log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(err.contains("AWSPENDING is left on version"), "{err}");

    // Security hears of it exactly once, with the stage.
    let p1s = w.p1s(Duration::from_secs(8)).await;
    assert_eq!(p1s.len(), 1, "{p1s:#?}");
    assert_eq!(p1s[0]["kind"], "rotation_failed");
    assert!(
        p1s[0]["error"].as_str().unwrap().contains(step),
        "{:#?}",
        p1s[0]
    );
    // The event was recorded against the attempt, not as a rotation of its own.
    let tied = events::count(
        &w.env,
        "SELECT count(*) FROM audit WHERE action = 'event_rotation_failed' AND outcome = 'tied_to_attempt'",
    );
    assert_eq!(tied, 1);
    assert_eq!(
        events::count(
            &w.env,
            "SELECT count(*) FROM attempts WHERE id LIKE 'event-%'"
        ),
        0
    );

    // The dangling AWSPENDING: status says held, and a second rotation never sends
    // RotateSecret on top of it.
    let status = w.env.cli(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let row = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["secret"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {status}"));
    // Held (the failure is investigated first), and the hold says what was left behind.
    assert_eq!(row["status"], "held", "{row}");
    assert!(
        row["detail"].as_str().unwrap().contains("AWSPENDING"),
        "{row}"
    );
    let again = w.rotate(&name, "INC-7201");
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("a previous rotation is not complete"),
        "{}",
        stderr(&again)
    );
    assert_eq!(w.host.rotate_calls(&arn), 1);
    // That second attempt is reported `stuck`, naming the version AWSPENDING dangles on.
    let second = common::rotationd::rows(
        &w.env.db(),
        "SELECT state || ': ' || COALESCE(error, '') FROM attempts ORDER BY started_at DESC, rowid DESC LIMIT 1",
    );
    assert!(
        second[0].starts_with("stuck: a previous rotation is not complete"),
        "{second:?}"
    );

    // The old password still opens the database.
    assert_eq!(w.pg.login(&user, "svc-Old-Pa55"), Ok(user.clone()));
    drop(daemon);
}

#[tokio::test]
async fn a_failure_at_set_secret_is_named_escalated_once_and_left_stuck() {
    a_failure_at("setSecret", "single-user").await;
}

#[tokio::test]
async fn a_failure_at_test_secret_is_named_escalated_once_and_left_stuck() {
    // Alternating users: setSecret changed only the clone, so the old user still works.
    a_failure_at("testSecret", "alternating-users").await;
}

#[tokio::test]
async fn a_function_that_never_finishes_times_out_naming_the_last_stage() {
    let name = moto::unique_name("real/hang");
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false
rotation_timeout = "8s"

[[secret]]
id = "{name}"
strategy = "single-user"
"#
    );
    let w = World::new("real-hang", &body).await;
    let arn = w
        .database_secret(
            &name,
            "hangs",
            "hang-Old-1",
            serde_json::json!({"function": "single-user", "hang_at": "setSecret"}),
        )
        .await;
    let started = Instant::now();
    let o = w.rotate(&name, "INC-7300");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rotation did not finish within 8s"),
        "no timeout in:\n{err}"
    );
    assert!(
        err.contains("the last stage reached was createSecret"),
        "the last stage is not named:\n{err}"
    );
    // The attempt's start is stored in whole seconds, so the deadline may fall up to a
    // second before 8 s of wall time have passed.
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.host.rotate_calls(&arn), 1);
    let (state, _, error) = w.attempt(&name).unwrap();
    assert_eq!(state, "failed");
    assert!(
        error
            .unwrap()
            .contains("last stage reached was createSecret")
    );
}

#[tokio::test]
async fn a_dependent_that_cached_the_old_password_fails_the_watch() {
    let name = moto::unique_name("real/cached");
    let ns = moto::unique_name("Cached").replace('/', "-");
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false
validation_period = "30s"
validation_interval = "2s"
{dep}
[[secret]]
id = "{name}"
strategy = "single-user"
dependents = ["ledger-api"]
"#,
        dep = dependent_section("ledger-api", &ns)
    );
    let w = World::new("real-cached", &body).await;
    w.database_secret(
        &name,
        "ledger",
        "ledger-Old-1",
        single_user(serde_json::json!({})),
    )
    .await;
    // An app that must be restarted to read a new password.
    let app = w.dependent(&name, &ns, "ledger-api", "never");
    let (daemon, log) = w.env.daemon_ready(&[]).await;

    let o = w.rotate(&name, "INC-7400");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let unhealthy = w
        .env
        .eventually(Duration::from_secs(60), || {
            w.attempt(&name)
                .filter(|(_, v, _)| v.as_deref() == Some("validated_unhealthy"))
        })
        .await;
    assert!(
        unhealthy.is_some(),
        "the watch did not catch the dependent: {:?}\n{}",
        w.attempt(&name),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(app.status().unwrap().auth_failures >= 3);
    let p1s = w.p1s(Duration::from_secs(8)).await;
    let kinds: Vec<&str> = p1s.iter().filter_map(|m| m["kind"].as_str()).collect();
    assert_eq!(kinds, ["dependents_unhealthy"], "{p1s:#?}");
    drop(daemon);
}

#[tokio::test]
async fn a_departure_really_changes_the_password_within_the_sla() {
    let name = moto::unique_name("real/departure");
    let body = format!(
        r#"
[policy]
max_age = "93d"

[[secret]]
id = "{name}"
strategy = "single-user"
change_ticket = "CHG-7500"
custodians = ["mallory"]
"#
    );
    let w = World::new("real-departure", &body).await;
    let (queue, bus) = events::queue_and_bus(&w.env, "departure").await;
    events::add_events(&w.env, &queue, &bus, events::ALLOW_ACCOUNT);
    let arn = w
        .database_secret(
            &name,
            "reports",
            "mallory-Knows-1",
            single_user(serde_json::json!({"createSecret": 1.0})),
        )
        .await;
    let (daemon, _log) = w.env.daemon_ready(&[]).await;
    // mallory leaves, with the password in her head.
    let sent = chrono::Utc::now();
    events::send(
        &w.env,
        &queue,
        &events::iam_delete_user("mallory", "dep-7500"),
    )
    .await;
    let changed = w
        .env
        .eventually(Duration::from_secs(60), || {
            w.attempt(&name)
                .filter(|(state, _, _)| state == "succeeded")
                .map(|_| refused(w.pg.login("reports", "mallory-Knows-1")))
        })
        .await;
    assert_eq!(
        changed,
        Some(true),
        "the departed user's password still works"
    );
    let new = w.current(&name).await;
    assert_eq!(
        w.pg.login("reports", new["password"].as_str().unwrap()),
        Ok("reports".to_string())
    );
    assert_eq!(w.host.rotate_calls(&arn), 1);
    // Done before the trigger's deadline (event time + 24 h).
    let (kind, status, deadline): (String, String, i64) = w
        .env
        .db()
        .query_row(
            "SELECT kind, status, deadline FROM triggers WHERE secret = ?1",
            [&name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), status.as_str()), ("departure", "done"));
    assert!(deadline >= (sent + chrono::Duration::hours(23)).timestamp());
    drop(daemon);
}

#[tokio::test]
async fn a_rotation_that_leaves_no_awsprevious_is_never_called_succeeded() {
    // The guide's "confirm both stages exist": a function whose finishSecret also takes
    // AWSPREVIOUS off the old version. The new password works, but nothing can restore the
    // old one by label: the attempt fails and Security is paged.
    let name = moto::unique_name("real/noprevious");
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false

[[secret]]
id = "{name}"
strategy = "alternating-users"
"#
    );
    let w = World::new("real-noprevious", &body).await;
    w.database_secret(
        &name,
        "ledger2",
        "ledger2-Old-1",
        serde_json::json!({"function": "alternating-users", "drop_previous": true}),
    )
    .await;
    let o = w.rotate(&name, "INC-7600");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("AWSPREVIOUS is absent instead of the old version"),
        "{err}"
    );
    let (state, _, _) = w.attempt(&name).unwrap();
    assert_eq!(state, "failed");
    let labels = w.env.stages(&name).await;
    assert!(
        !labels.values().flatten().any(|l| l == "AWSPREVIOUS"),
        "{labels:?}"
    );
    // One P1 for it, never a success notice.
    let p1s = w.p1s(Duration::from_secs(5)).await;
    let kinds: Vec<&str> = p1s.iter().filter_map(|m| m["kind"].as_str()).collect();
    assert_eq!(kinds, ["rotation_failed"], "{p1s:#?}");
    assert_eq!(
        events::count(
            &w.env,
            "SELECT count(*) FROM alert_outbox WHERE kind = 'rotation_completed'"
        ),
        0
    );
}
