//! Notices ahead of a planned window (`[policy] notice` / a vendor's `notice`, G2 item 7a)
//! and vendor schedules (`[[vendor]]`, item 8), end to end on moto with the real binary.
//!
//! A secret names only its vendor: it takes the vendor's schedule and window (its window
//! opens a few minutes into the test) and the vendor's lead times (10m and 2m). Each notice
//! leaves once per lead time, also across a restart, to the notify topic, the dependent's
//! own topic and the vendor's contact topic; the rotation in the window then tells all
//! three again (at its start and on completion).

mod common;

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use common::config::{Body, dependent, secret, table};
use common::events::arn_of;
use common::moto::{self, recording};
use common::rotationd::{Env, drain, rows, stderr, subscribed_topic, terminate};

/// The outbox rows of `rotation_scheduled` notices sent ahead, by dedupe key, published.
fn ahead(env: &Env) -> Vec<String> {
    rows(
        &env.db(),
        "SELECT dedupe_key FROM alert_outbox WHERE kind = 'rotation_scheduled' \
         AND dedupe_key LIKE 'rotation_scheduled:ahead:%' AND published_at IS NOT NULL ORDER BY dedupe_key",
    )
}

/// The (kind, `details.notice`/lead) of every message on `queue` (read and deleted).
async fn kinds(env: &Env, queue: &str) -> Vec<String> {
    let mut out: Vec<String> = drain(&env.sqs, queue)
        .await
        .iter()
        .map(|body| {
            let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
            let m: serde_json::Value =
                serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            match m["details"]["lead"].as_str() {
                Some(lead) => format!("{} ahead {lead}", m["kind"].as_str().unwrap()),
                None => m["kind"].as_str().unwrap().to_string(),
            }
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn notices_leave_once_per_lead_ahead_of_a_vendor_window_to_dependents_and_the_vendor() {
    recording();
    let m = moto::shared();
    let conf = moto::sdk_config(&m.endpoint());
    let sns = aws_sdk_sns::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let (vendor_topic, vendor_queue) = subscribed_topic(&sns, &sqs, "notices-vendor").await;
    let (billing_topic, billing_queue) = subscribed_topic(&sns, &sqs, "notices-billing").await;
    // The vendor's window opens at the start of a minute 200 to 260 s away: the 10m notice
    // is due at once, the 2m one 80 s or more later (after the restart below).
    let start: DateTime<Utc> = {
        let t = Utc::now() + chrono::Duration::seconds(260);
        t.with_second(0).unwrap().with_nanosecond(0).unwrap()
    };
    let name = moto::unique_name("notices/vendor-db");
    let body = Body::new()
        .with(dependent("billing").set("notify_topic_arn", &billing_topic))
        .with(
            table("[[vendor]]")
                .set("name", "acme")
                .schedule(&format!("{} {} * * *", start.minute(), start.hour()))
                .window("30m")
                .set("contact_topic_arn", &vendor_topic)
                .list("notice", ["10m", "2m"]),
        )
        .with(secret(&name).set("vendor", "acme").dependents(["billing"]));
    let env = Env::new("notices", &body.render()).await;
    env.edit_config(|t| t.replace("reconcile_interval = \"1h\"", "reconcile_interval = \"5s\""));
    env.rotatable_secret(&name).await;
    let arn = arn_of(&env, &name).await;
    let key = |lead: u64| {
        format!(
            "rotation_scheduled:ahead:{arn}:{}:{lead}",
            start.timestamp()
        )
    };
    let ten = |suffix: &str| format!("{}{suffix}", key(600));
    let two = |suffix: &str| format!("{}{suffix}", key(120));

    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut daemon = env.daemon(&[]);
    let first = env
        .eventually(Duration::from_secs(60), || {
            (ahead(&env).len() == 3).then(|| ahead(&env))
        })
        .await;
    assert_eq!(
        first,
        Some(vec![ten(""), ten(":billing"), ten(":vendor:acme"),]),
        "the 10m notice, to the notify topic, the dependent's and the vendor's"
    );
    // The window in the notice is the vendor's: the secret names no schedule of its own.
    let window: String = env
        .db()
        .query_row(
            "SELECT json_extract(message, '$.details.window.start') FROM alert_outbox WHERE dedupe_key = ?1",
            [ten("")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(window, start.to_rfc3339());
    // A restart and more passes before the 2m mark: nothing is sent again.
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    let mut daemon = env.daemon(&[]);
    assert!(env.reconciles(2, Duration::from_secs(60)).await);
    if Utc::now() < start - chrono::Duration::minutes(2) {
        assert_eq!(ahead(&env).len(), 3, "{:#?}", ahead(&env));
    }
    // The 2m notice, then the rotation in the window.
    let second = env
        .eventually(Duration::from_secs(240), || {
            (ahead(&env).len() == 6).then(|| ahead(&env))
        })
        .await;
    assert_eq!(
        second,
        Some(vec![
            two(""),
            two(":billing"),
            two(":vendor:acme"),
            ten(""),
            ten(":billing"),
            ten(":vendor:acme"),
        ])
    );
    let rotated = env
        .eventually(Duration::from_secs(180), || {
            let n: i64 = env
                .db()
                .query_row(
                    "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_completed' AND published_at IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (n == 3).then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        rotated.is_some(),
        "the vendor's window did not rotate the secret: {:#?}",
        rows(
            &env.db(),
            "SELECT kind || ' ' || status || ' ' || COALESCE(not_before, '') FROM triggers"
        )
    );
    assert_eq!(env.rotations_by_rotationd(&name), 1);
    let expected = vec![
        "rotation_completed".to_string(),
        "rotation_scheduled".to_string(),
        "rotation_scheduled ahead 10m".to_string(),
        "rotation_scheduled ahead 2m".to_string(),
    ];
    assert_eq!(
        kinds(&env, &vendor_queue).await,
        expected,
        "the vendor's topic"
    );
    assert_eq!(
        kinds(&env, &billing_queue).await,
        expected,
        "the dependent's topic"
    );
    // The notify topic also has the drift notice of moto's own rotation rules.
    let notify: Vec<String> = kinds(&env, &env.notify_queue_url)
        .await
        .into_iter()
        .filter(|k| k.starts_with("rotation_"))
        .collect();
    assert_eq!(notify, expected, "the notify topic");
}
