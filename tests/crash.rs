//! Crash safety, end to end: a burst of 100 departure events (and 20 SQS redeliveries),
//! rotationd killed with SIGKILL at random moments at least six times and restarted each
//! time. At the end every departure is rotated exactly once: one trigger per secret, done,
//! its 24-hour deadline intact and met; one succeeded attempt; and on the server side one
//! RotateSecret per secret and no client request token sent twice.
//!
//! This binary has a single test: it owns the emulator's request recording.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::config::{Body, secret};
use common::events::{add_events, count, iam_delete_user, queue_and_bus, send_batch, settled};
use common::moto;
use common::rotationd::{Env, rows, stderr, terminate};

const USERS: usize = 100;
const KILLS: usize = 6;

/// xorshift64*: random kill moments without a dependency; the seed is printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

#[tokio::test]
async fn a_departure_burst_survives_repeated_kill_9_and_rotates_each_secret_once() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let prefix = moto::unique_name("crash/fleet");
    let users: Vec<String> = (0..USERS).map(|i| format!("leaver-{i:03}")).collect();
    let secrets: Vec<String> = (0..USERS).map(|i| format!("{prefix}/{i:03}")).collect();
    let body = Body::new().with_all(
        users
            .iter()
            .zip(&secrets)
            .map(|(user, s)| secret(s).custodians([user])),
    );
    let env = Env::new("crash", &body.render()).await;
    // Room for the whole burst: the rate limit and the storm guard are tested elsewhere.
    env.set_in("daemon", "max_rotations_per_minute = 1000");
    let (queue_url, bus) = queue_and_bus(&env, "crash").await;
    add_events(
        &env,
        &queue_url,
        &bus,
        "max_event_rotations_per_hour = 1000",
    );
    for s in &secrets {
        env.rotatable_secret(s).await;
    }
    let o = env.cli(&["validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    env.moto.start_recording();

    let start = || env.daemon_logged(&[]);
    let (mut daemon, log_path) = start();
    assert!(env.wait_ready(Duration::from_secs(30)).await);

    // The burst: 100 departures, 20 of them delivered twice (SQS is at-least-once).
    let sent_at = chrono::Utc::now().timestamp();
    let events: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| iam_delete_user(u, &format!("7a0c0000-0000-4000-8000-{i:012}")))
        .collect();
    let mut bodies: Vec<&String> = events.iter().collect();
    bodies.extend(events.iter().step_by(5));
    for chunk in bodies.chunks(10) {
        send_batch(&env, &queue_url, chunk).await;
    }

    // Kill -9 at random moments, restarting each time.
    let done_sql = "SELECT COUNT(*) FROM triggers WHERE kind = 'departure' AND status = 'done'";
    let mut done_at_kill = Vec::new();
    for _ in 0..KILLS {
        // Each kill lands while the burst is being worked: first let this run finish a
        // rotation (a kill during start-up alone would test less), then wait a random while.
        let before = count(&env, done_sql);
        let progress = Instant::now() + Duration::from_secs(30);
        while count(&env, done_sql) == before && Instant::now() < progress {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(rng.millis(0, 1500)).await;
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        done_at_kill.push(count(&env, done_sql));
        daemon = start().0;
    }
    // The last start must be up before it is stopped: SIGTERM is what is under test below,
    // not a start-up cut short.
    assert!(env.wait_ready(Duration::from_secs(30)).await);

    let deadline = Instant::now() + Duration::from_secs(180);
    while count(&env, done_sql) < USERS as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Redelivered and half-handled messages come back after their visibility timeout: wait
    // until the queue is empty and nothing is left to do, so that a wrong second rotation
    // would have happened before counting.
    let settled = settled(&env, &queue_url, Duration::from_secs(180)).await;
    let status = terminate(&mut daemon, Duration::from_secs(60));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let context = format!("seed {seed}, done at each kill {done_at_kill:?}");
    eprintln!("{context}");

    if count(&env, done_sql) != USERS as i64 {
        let db = env.db();
        let triggers = rows(
            &db,
            "SELECT secret || ' ' || status || ' ' || COALESCE(attempt_id, '-') || ' ' || \
             dedupe_key FROM triggers WHERE kind = 'departure' AND status != 'done'",
        );
        let attempts = rows(
            &db,
            "SELECT a.secret || ' ' || a.state || ' ' || COALESCE(a.error, '') FROM attempts a \
             JOIN triggers t ON t.id = a.trigger_id \
             WHERE t.kind = 'departure' AND t.status != 'done'",
        );
        let with_trigger: std::collections::HashSet<String> =
            rows(&db, "SELECT secret FROM triggers WHERE kind = 'departure'")
                .into_iter()
                .collect();
        let untriggered: Vec<_> = secrets
            .iter()
            .filter(|s| !with_trigger.contains(*s))
            .collect();
        let audit = rows(
            &db,
            "SELECT action || ' ' || outcome || ' ' || COALESCE(reason, '') || ' ' || \
             COALESCE(detail, '') FROM audit WHERE outcome != 'ok'",
        );
        panic!(
            "{context}: not every departure was rotated\nopen triggers {triggers:#?}\n\
             their attempts {attempts:#?}\nsecrets without a trigger {untriggered:?}\n\
             audit (not ok) {audit:#?}\nrotationd's log:\n{log}"
        );
    }
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{context}: no clean exit within 60 s of SIGTERM (status {status:?}); the log's end:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(settled, "{context}: the queue was not drained\n{log}");
    assert!(!log.contains("panicked"), "{context}\n{log}");
    assert!(
        done_at_kill
            .iter()
            .filter(|&&n| n > 0 && n < USERS as i64)
            .count()
            >= 2,
        "{context}: the kills must land while the burst is being worked"
    );

    // Exactly once, from rotationd's store...
    let db = env.db();
    let mut q = db
        .prepare(
            "SELECT secret, COUNT(*), MIN(status), MAX(status), MIN(deadline), MAX(deadline) \
             FROM triggers WHERE kind = 'departure' GROUP BY secret",
        )
        .unwrap();
    let rows: Vec<(String, i64, String, String, i64, i64)> = q
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), USERS, "{context}");
    for (secret, n, min, max, dmin, dmax) in &rows {
        assert_eq!(
            (*n, min.as_str(), max.as_str()),
            (1, "done", "done"),
            "{secret}"
        );
        // The deadline is the event's time plus 24 h, however late a restart read it.
        let expected = sent_at + 86_400;
        assert!(
            (expected - 2..=expected + 2).contains(dmin) && dmin == dmax,
            "{secret}: deadline {dmin}, expected the event time + 24 h = {expected}"
        );
    }
    let late = count(
        &env,
        "SELECT COUNT(*) FROM triggers t JOIN attempts a ON a.id = t.attempt_id \
         WHERE t.kind = 'departure' AND (a.state != 'succeeded' OR a.finished_at > t.deadline)",
    );
    assert_eq!(
        late, 0,
        "{context}: every departure attempt succeeded in time"
    );
    let succeeded = count(
        &env,
        "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'",
    );
    assert_eq!(succeeded, USERS as i64, "{context}");

    // ...and from the server's: one RotateSecret per secret, no token sent twice.
    let mut tokens: HashMap<String, usize> = HashMap::new();
    let mut per_secret: HashMap<String, usize> = HashMap::new();
    for r in env.moto.rotationd_requests() {
        if r.operation != "RotateSecret" {
            continue;
        }
        let body = r.json();
        *tokens
            .entry(
                body["ClientRequestToken"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_default() += 1;
        let id = r.secret_id().unwrap_or_default();
        if let Some(s) = secrets
            .iter()
            .find(|s| id == **s || id.contains(&format!(":secret:{s}-")))
        {
            *per_secret.entry(s.clone()).or_default() += 1;
        }
    }
    let repeated: Vec<_> = tokens.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{context}: tokens sent twice {repeated:?}"
    );
    for s in &secrets {
        assert_eq!(per_secret.get(s), Some(&1), "{context}: {s}");
    }
}
