//! An AWS outage, for real: the emulator is stopped while rotationd runs and started again
//! on the same port (re-seeded, as AWS would still hold its state). rotationd stays up,
//! `/readyz` says not ready, `aws_unreachable` waits in the outbox, and once AWS answers
//! again the alert is delivered exactly once and rotationd is ready again.
//!
//! This binary owns its moto servers.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::{self, Moto};
use common::rotationd::{Daemon, free_port, http_get, terminate};

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
    let topic = sns
        .create_topic()
        .name("outage-security")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let q = sqs
        .create_queue()
        .queue_name("outage-security-q")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&q)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
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

#[tokio::test]
async fn an_outage_keeps_rotationd_up_and_its_alert_is_delivered_once_afterwards() {
    let first = Moto::start();
    let port = first.port();
    seed(&first).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let metrics = free_port();
    let config = dir.path().join("rotationd.toml");
    std::fs::write(
        &config,
        format!(
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
[policy]
require_change_ticket = false
max_age = "93d"
[[secret]]
id = "prod/outage"
strategy = "single-user"
"#,
            endpoint = first.endpoint(),
            db = db.display(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_rotationd"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = || http_get(metrics, "/readyz").map(|(s, _)| s);
    assert!(
        until(Duration::from_secs(30), || ready() == Some(200)).await,
        "never ready"
    );

    drop(first); // the outage
    let raised = until(Duration::from_secs(60), || outbox(&db).0 == 1).await;
    assert!(raised, "aws_unreachable was not queued");
    assert_eq!(
        ready(),
        Some(503),
        "/readyz must say not ready during the outage"
    );
    assert_eq!(
        outbox(&db),
        (1, 0),
        "it cannot be published while SNS is down"
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "rotationd must stay up"
    );

    let second = Moto::start_on(port); // AWS is back
    let queue = seed(&second).await;
    let delivered = until(Duration::from_secs(90), || outbox(&db) == (1, 1)).await;
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
    assert!(recovered, "/readyz did not recover");
    let sqs = aws_sdk_sqs::Client::new(&moto::sdk_config(&second.endpoint()));
    let bodies = common::rotationd::drain(&sqs, &queue).await;
    let unreachable: Vec<_> = bodies
        .iter()
        .filter(|b| b.contains("aws_unreachable"))
        .collect();
    assert_eq!(unreachable.len(), 1, "{bodies:?}");
    let envelope: serde_json::Value = serde_json::from_str(unreachable[0]).unwrap();
    assert_eq!(envelope["Subject"], "[P2] AWS unreachable");
}
