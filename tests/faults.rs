//! Throttling and 5xx, end to end: a fault-injecting proxy (`common::proxy`) between
//! rotationd and the emulator answers a quarter of all requests with ThrottlingException or
//! a 500 before the emulator sees them. All due work completes, nothing crashes, and the
//! emulator's own request log shows exactly one RotateSecret per secret and one notice
//! per completed rotation.
//!
//! This binary has a single test: it owns the emulator's request recording.

mod common;

use std::time::Duration;

use common::config::{Body, selector};
use common::moto;
use common::proxy::{Outcome, Proxy};
use common::rotationd::{Env, drain, terminate};

const SECRETS: usize = 12;

#[tokio::test]
async fn throttling_and_server_errors_slow_the_work_but_lose_and_repeat_nothing() {
    let prefix = moto::unique_name("faults/fleet") + "/";
    let env = Env::new("faults", &Body::new().with(selector(&prefix)).render()).await;
    let names: Vec<String> = (0..SECRETS).map(|i| format!("{prefix}{i:02}")).collect();
    for name in &names {
        env.rotatable_secret(name).await;
    }
    env.moto.start_recording();
    let proxy = Proxy::start(env.moto.port());
    // 15 % throttled, 10 % server errors, spread evenly over the request sequence.
    proxy.set_faults(150, 100);
    env.use_endpoint(&proxy.endpoint());

    // rotationd's clock runs 100 days ahead: every secret is overdue and rotates at once.
    let mut daemon = env.daemon(&[("ROTATIOND_TEST_CLOCK_OFFSET", &(100 * 86_400).to_string())]);
    let done = env
        .eventually(Duration::from_secs(180), || {
            let n: i64 = env
                .db()
                .query_row(
                    "SELECT COUNT(DISTINCT secret) FROM attempts WHERE state = 'succeeded'",
                    [],
                    |r| r.get(0),
                )
                .ok()?;
            (n as usize == SECRETS).then_some(())
        })
        .await;
    // Let the notices go out through the faults too.
    let notified = env
        .eventually(Duration::from_secs(60), || {
            let pending: i64 = env
                .db()
                .query_row(
                    "SELECT COUNT(*) FROM alert_outbox WHERE published_at IS NULL",
                    [],
                    |r| r.get(0),
                )
                .ok()?;
            (pending == 0).then_some(())
        })
        .await;
    let metrics = env.metrics();
    let status = terminate(&mut daemon, Duration::from_secs(60));
    let mut log = String::new();
    use std::io::Read;
    daemon.stderr.take().unwrap().read_to_string(&mut log).ok();

    assert!(
        done.is_some(),
        "not every rotation completed under faults; rotationd's log:\n{log}"
    );
    assert!(notified.is_some(), "alerts left in the outbox:\n{log}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // The faults really happened, on the calls that matter.
    let throttled = proxy.total(Outcome::Throttled);
    let errors = proxy.total(Outcome::ServerError);
    assert!(
        throttled >= 10 && errors >= 5,
        "too few faults injected: {:?}",
        proxy.stats()
    );
    let rotate_faults = proxy.count("RotateSecret", Outcome::Throttled)
        + proxy.count("RotateSecret", Outcome::ServerError);
    let publish_faults =
        proxy.count("Publish", Outcome::Throttled) + proxy.count("Publish", Outcome::ServerError);
    assert!(
        rotate_faults > 0 && publish_faults > 0,
        "RotateSecret and Publish must both meet faults: {:?}",
        proxy.stats()
    );
    // rotationd saw and counted them as retryable failures.
    let counted = |outcome: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("rotationd_aws_requests_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(counted("throttled") >= 1.0, "{metrics}");
    assert!(counted("server_error") >= 1.0, "{metrics}");

    // Exactly one RotateSecret per secret reached the emulator, and every attempt succeeded.
    for name in &names {
        assert_eq!(env.rotations_by_rotationd(name), 1, "{name}");
    }
    let failed: i64 = env
        .db()
        .query_row(
            "SELECT COUNT(*) FROM attempts WHERE state != 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 0);

    // One "rotation completed" notice per secret: a retried Publish is not a second notice.
    let notices: Vec<serde_json::Value> = drain(&env.sqs, &env.notify_queue_url)
        .await
        .iter()
        .map(|b| {
            let envelope: serde_json::Value = serde_json::from_str(b).unwrap();
            serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap()
        })
        .collect();
    // The test secrets rotate natively every 90 days: one summary notice for all of them,
    // retried publishes or not.
    let drift: Vec<&serde_json::Value> = notices
        .iter()
        .filter(|m| m["kind"] == "native_schedule_drift")
        .collect();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0]["details"]["count"], names.len(), "{drift:?}");
    for name in &names {
        let n = notices
            .iter()
            .filter(|m| m["kind"] == "rotation_completed" && m["secret"]["name"] == name.as_str())
            .count();
        assert_eq!(n, 1, "{name}: {notices:?}");
        // The notice before and the notice after name the same ticket.
        let tickets: Vec<_> = notices
            .iter()
            .filter(|m| {
                m["secret"]["name"] == name.as_str() && m["kind"] != "native_schedule_drift"
            })
            .map(|m| (m["kind"].as_str().unwrap_or(""), m["ticket"].clone()))
            .collect();
        assert!(
            tickets.len() == 2
                && tickets
                    .iter()
                    .all(|(_, t)| *t == tickets[0].1 && !t.is_null()),
            "{name}: {tickets:?}"
        );
    }
}
