//! An AWS outage, for real: the emulator is stopped (SIGSTOP) and cut off (the test proxy in
//! front of it refuses connections) for at least 30 s while a rotation and an alert fall
//! due. rotationd stays up, `/readyz` says not ready, the due attempt waits,
//! `aws_unreachable` waits in the outbox; once AWS answers again (SIGCONT, proxy up: the
//! emulator kept its state, as AWS would) the due rotation completes with one RotateSecret,
//! the alert is delivered exactly once and rotationd is ready again.
//!
//! Why not a restarted, re-seeded emulator: a new moto gives the secret a new ARN (AWS
//! would not), and an earlier version of this test lost its alert when rotationd published
//! between the re-seed's CreateTopic and Subscribe.
//!
//! This binary owns its moto server.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use common::config::{Body, secret};
use common::moto::{self, Moto};
use common::proxy::Proxy;
use common::rotationd::{Daemon, free_port, http_get, log_lines, queue_with_arn, terminate};

/// The topic Security subscribes to, and a queue subscribed to it; returns the queue URL.
async fn seed(m: &Moto) -> String {
    let conf = moto::sdk_config(&m.endpoint());
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let sns = aws_sdk_sns::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    sm.create_secret()
        .name("prod/outage")
        .secret_string("v")
        .send()
        .await
        .unwrap();
    // Rotation configured (moto rotates once at once when rules are set).
    sm.rotate_secret()
        .secret_id("prod/outage")
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(90)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let topic = sns
        .create_topic()
        .name("outage-security")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let (q, arn) = queue_with_arn(&sqs, "outage-security-q").await;
    sns.subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(arn)
        .send()
        .await
        .unwrap();
    q
}

fn outbox(db: &std::path::Path) -> (i64, i64) {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*), COUNT(published_at) FROM alert_outbox WHERE kind = 'aws_unreachable'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap_or((0, 0))
}

async fn until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    f()
}

fn signal(sig: &str, pid: &str) {
    let status = Command::new("kill").args([sig, pid]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn attempts(db: &std::path::Path) -> Vec<String> {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            let mut q = c.prepare("SELECT state FROM attempts WHERE secret = 'prod/outage'")?;
            q.query_map([], |r| r.get(0))?.collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_outage_keeps_rotationd_up_and_its_alert_is_delivered_once_afterwards() {
    let first = Moto::start();
    let queue = seed(&first).await;
    first.start_recording();
    let proxy = Proxy::start(first.port());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let metrics = free_port();
    let config = dir.path().join("rotationd.toml");
    let log = dir.path().join("rotationd.log");
    // rotationd's clock runs about an hour ahead, and the secret's daily window opens at the
    // rotationd time that corresponds to 40 real seconds from now: inside the outage.
    let opens_real = Utc::now() + chrono::Duration::seconds(40);
    let shifted = opens_real + chrono::Duration::hours(1);
    let boundary =
        shifted.with_second(0).unwrap().with_nanosecond(0).unwrap() + chrono::Duration::minutes(1);
    let offset = chrono::Duration::hours(1) + (boundary - shifted);
    let window_opens = opens_real;
    let body = Body::new().with(
        secret("prod/outage")
            .schedule(&format!("{} {} * * *", boundary.minute(), boundary.hour()))
            .window("1h"),
    );
    common::rotationd::write_config(
        &config,
        &format!(
            r#"[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
[daemon]
state_path = "{db}"
metrics_listen = "127.0.0.1:{metrics}"
reconcile_interval = "3s"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:outage-security"
unreachable_after = "1s"
{body}"#,
            endpoint = proxy.endpoint(),
            db = db.display(),
            body = body.render(),
        ),
    );
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_rotationd"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(
                "ROTATIOND_TEST_CLOCK_OFFSET",
                offset.num_seconds().to_string(),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let ready = || http_get(metrics, "/readyz").map(|(s, _)| s);
    assert!(
        until(Duration::from_secs(30), || ready() == Some(200)).await,
        "never ready"
    );
    assert!(
        Utc::now() < window_opens,
        "rotationd took too long to get ready: the window opened before the outage began"
    );
    assert!(attempts(&db).is_empty(), "nothing is due before the window");

    // The outage: rotationd's endpoint refuses connections and the emulator is stopped.
    let outage_began = Instant::now();
    proxy.down();
    let moto_pid = first.pid().unwrap().to_string();
    signal("-STOP", &moto_pid);
    let raised = until(Duration::from_secs(60), || outbox(&db).0 == 1).await;
    assert!(raised, "aws_unreachable was not queued");
    assert_eq!(
        ready(),
        Some(503),
        "/readyz must say not ready during the outage"
    );
    // Stay down for 30 s, and until the window has been open for a while: until two more
    // reconciles have failed, the second begun after the window opened (the one that
    // would have queued the due rotation, and must not raise the alert again).
    while outage_began.elapsed() < Duration::from_secs(30) || Utc::now() < window_opens {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let failed = || log_lines(&log, "reconcile failed; retrying");
    let before = failed();
    assert!(
        until(Duration::from_secs(60), || failed() >= before + 2).await,
        "no failing reconcile after the window opened"
    );
    assert_eq!(
        outbox(&db),
        (1, 0),
        "it cannot be published while SNS is down, and one outage is one alert"
    );
    assert!(
        !attempts(&db).iter().any(|s| s == "succeeded"),
        "nothing can rotate while AWS is down"
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "rotationd must stay up"
    );

    // AWS is back, with its state.
    signal("-CONT", &moto_pid);
    proxy.up();
    let delivered = until(Duration::from_secs(90), || outbox(&db) == (1, 1)).await;
    let rotated = until(Duration::from_secs(60), || {
        attempts(&db).iter().any(|s| s == "succeeded")
    })
    .await;
    let recovered = until(Duration::from_secs(30), || ready() == Some(200)).await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        delivered,
        "the queued alert was not delivered: {:?}",
        outbox(&db)
    );
    assert!(
        rotated,
        "the due rotation did not complete: {:?}; rotationd's log:\n{}",
        attempts(&db),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(recovered, "/readyz did not recover");
    let rotations = first
        .rotationd_requests()
        .iter()
        .filter(|r| r.operation == "RotateSecret")
        .count();
    assert_eq!(rotations, 1, "one due rotation, one RotateSecret");
    let sqs = aws_sdk_sqs::Client::new(&moto::sdk_config(&first.endpoint()));
    let bodies = common::rotationd::drain(&sqs, &queue).await;
    let unreachable: Vec<_> = bodies
        .iter()
        .filter(|b| b.contains("aws_unreachable"))
        .collect();
    assert_eq!(unreachable.len(), 1, "{bodies:?}");
    let envelope: serde_json::Value = serde_json::from_str(unreachable[0]).unwrap();
    assert_eq!(envelope["Subject"], "[P2] aws_unreachable");
}
