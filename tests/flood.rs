//! Bounded growth, end to end (the review: "on a small disk, a garbage flood starved a
//! real departure"). The state database is capped (`[state] max_size`, which fails writes
//! exactly as a full disk does), then:
//!
//! - a flood of 100,000 garbage messages on the events queue is rejected, counted and
//!   audited in a few rows a minute (the rest in aggregate rows), so the cap is never
//!   reached and a real departure sent after the flood is rotated;
//! - a cap the database has already reached makes every growing write fail, and after
//!   30 s of that `/readyz` answers 503 and says why.

mod common;

use std::time::Duration;

use common::config::{Body, secret};
use common::events::{ALLOW_ACCOUNT, add_events, iam_delete_user, queue_and_bus, send};
use common::moto;
use common::rotationd::{Env, http_get, metric, rows, terminate};

const FLOOD: usize = 100_000;

/// Messages on the queue, visible or in flight.
async fn backlog(env: &Env, queue_url: &str) -> u64 {
    let (visible, in_flight) = common::events::left_on_queue(env, queue_url).await;
    visible.parse::<u64>().unwrap_or(0) + in_flight.parse::<u64>().unwrap_or(0)
}

#[tokio::test]
async fn a_garbage_flood_on_a_small_state_disk_does_not_stop_a_real_departure() {
    let name = moto::unique_name("flood/db");
    let body = Body::new().with(secret(&name).custodians(["zed"]));
    let env = Env::new("flood", &body.render()).await;
    env.append_config("\n[state]\nmax_size = \"4MiB\"\n");
    let (queue_url, bus) = queue_and_bus(&env, "flood").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.edit_config(|c| c.replace("workers = 2", "workers = 4"));
    env.rotatable_secret(&name).await;
    let (mut daemon, log_path) = env.daemon_ready(&[]).await;

    // The flood, in batches of ten, of several kinds of garbage. Paced to keep the backlog
    // near a thousand messages: moto's SQS slows down with the length of the queue (a
    // send to a queue of 6,000 takes seconds), which would make this a test of moto.
    let started = std::time::Instant::now();
    for batch in 0..FLOOD / 10 {
        if batch % 20 == 0 {
            while backlog(&env, &queue_url).await > 1_000 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut req = env.sqs.send_message_batch().queue_url(&queue_url);
        for i in 0..10 {
            let n = batch * 10 + i;
            let body = match n % 3 {
                0 => format!("not json {n}"),
                1 => format!(r#"{{"version":"0","id":"g-{n}","source":"x"}}"#),
                _ => format!(
                    r#"{{"detail-type":"Nope","source":"aws.iam","id":"n-{n}","detail":{{}}}}"#
                ),
            };
            req = req.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .unwrap(),
            );
        }
        let r = req.send().await.unwrap();
        assert!(r.failed().is_empty(), "{:?}", r.failed());
    }
    eprintln!("flood of {FLOOD} sent in {:?}", started.elapsed());
    // Then the real departure, behind all of it.
    send(
        &env,
        &queue_url,
        &iam_delete_user("zed", "5ec00000-0000-4000-8000-00000000f100"),
    )
    .await;
    let rotated = env
        .eventually(Duration::from_secs(900), || {
            let r = rows(
                &env.db(),
                "SELECT secret FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'",
            );
            (!r.is_empty()).then_some(r)
        })
        .await;
    let metrics = env.metrics();
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        rotated,
        Some(vec![name.clone()]),
        "the departure was not rotated:\n{}",
        log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    // Deliveries are counted: SQS is at-least-once (and moto hands the odd message to two
    // concurrent receives), so a few of the flood may be counted twice, none not at all.
    let rejected = metric(&metrics, "rotationd_events_rejected_total", &[]);
    assert!(
        rejected >= FLOOD as f64 && rejected <= FLOOD as f64 * 1.01,
        "{rejected} rejections counted for {FLOOD} garbage messages"
    );
    // Audited: a few one by one per reason and minute, the rest in aggregate rows whose
    // counts add up.
    let db = env.db();
    let (individual, aggregated, in_aggregates): (i64, i64, i64) = db
        .query_row(
            "SELECT \
               (SELECT COUNT(*) FROM audit WHERE action = 'event_rejected' AND outcome != 'aggregated'), \
               (SELECT COUNT(*) FROM audit WHERE outcome = 'aggregated'), \
               (SELECT COALESCE(SUM(json_extract(detail, '$.count')), 0) FROM audit WHERE outcome = 'aggregated')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let pending: i64 = db
        .query_row(
            "SELECT COALESCE(SUM(MAX(count - 10, 0)), 0) FROM rejection_tallies",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(aggregated > 0, "no aggregate rows");
    assert!(
        individual < 2_000,
        "{individual} rejections audited one by one"
    );
    assert_eq!(
        (individual + in_aggregates + pending) as f64,
        rejected,
        "audited rows and tallies account for every rejection counted"
    );
    let size = std::fs::metadata(env.dir.path().join("state.db"))
        .unwrap()
        .len();
    assert!(size <= 4 << 20, "the database outgrew its cap: {size}");
}

#[tokio::test]
async fn writes_failing_on_a_full_state_disk_make_readyz_say_so() {
    let name = moto::unique_name("flood/full");
    let env = Env::new("full-disk", &Body::new().with(secret(&name)).render()).await;
    env.rotatable_secret(&name).await;
    let (queue_url, bus) = queue_and_bus(&env, "full-disk").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    // Smaller than the file is already: every write that needs a new page fails.
    env.append_config("\n[state]\nmax_size = \"64KiB\"\n");
    let (mut daemon, log_path) = env.daemon_logged(&[]);
    // An idle daemon writes nothing; each delivery is a write that needs room (its
    // rejection's audit row), and comes back after its visibility timeout when it fails.
    let mut said = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut n = 0;
    while said.is_none() && std::time::Instant::now() < deadline {
        send(&env, &queue_url, &format!("not json {n}")).await;
        n += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        said = http_get(env.metrics_port, "/readyz").filter(|(code, body)| {
            *code == 503 && body.contains("writes to the state database fail")
        });
    }
    let metrics = http_get(env.metrics_port, "/metrics")
        .map(|(_, m)| m)
        .unwrap_or_default();
    terminate(&mut daemon, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let (_, body) = said.unwrap_or_else(|| panic!("/readyz never said the writes fail:\n{log}"));
    assert!(body.contains("full"), "{body}");
    assert_eq!(metric(&metrics, "rotationd_ready", &[]), 0.0, "{metrics}");
    assert!(
        log.contains("writes to the state database keep failing"),
        "{log}"
    );
    // Nothing was lost: what could not be recorded is still on the queue.
    let db = env.db();
    // One by one, in aggregate rows, or counted in a tally not yet written as one.
    let recorded: i64 = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM audit WHERE action = 'event_rejected' AND outcome != 'aggregated') \
             + (SELECT COALESCE(SUM(json_extract(detail, '$.count')), 0) FROM audit WHERE outcome = 'aggregated') \
             + (SELECT COALESCE(SUM(MAX(count - 10, 0)), 0) FROM rejection_tallies)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (visible, in_flight) = common::events::left_on_queue(&env, &queue_url).await;
    let left = visible.parse::<i64>().unwrap() + in_flight.parse::<i64>().unwrap();
    assert_eq!(
        recorded + left,
        n,
        "sent {n}: {recorded} recorded, {left} still queued"
    );
}
