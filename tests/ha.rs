//! Active/standby on the DynamoDB state backend, with the real binary on moto: two
//! `rotationd run` processes share one state table (a 6 s lease, to keep the tests short).
//!
//! - The leader is killed (SIGKILL) right after its RotateSecret; the standby (which meanwhile
//!   tells systemd it is ready and feeds its watchdog) takes the lease once it expires, resumes the attempt from the shared state and completes it:
//!   exactly one RotateSecret reached AWS.
//! - The leader is paused (SIGSTOP) past its lease; the standby takes over; when the old
//!   leader wakes it steps down, and nothing it writes after the takeover lands in the
//!   shared log (its appends carry a fence with its old token).
//!
//! - The standby consumes the SQS queue too: a departure that only the standby can take
//!   (the leader runs without `[events]`) is recorded by it in the shared log, deleted
//!   from the queue, and rotated once by the leader.
//!
//! The failover time is a benchmark (`scripts/bench-failover.sh`), not asserted here.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Timelike, Utc};
use common::config::{self, Body, Table, table};
use common::events::{
    ALLOW_ACCOUNT, add_events, iam_delete_user, left_on_queue, queue_and_bus, send,
};
use common::moto::{self, recording};
use common::rotationd::{Daemon, Env, free_port, http_get};

/// One `rotationd run` with its own metrics port and log, sharing `env`'s config otherwise.
struct Node {
    daemon: Daemon,
    port: u16,
    log: PathBuf,
}

impl Node {
    /// Writes node `name`'s copy of the test's config, listening on `port`.
    fn write_config(env: &Env, name: &str, port: u16) -> PathBuf {
        let text = std::fs::read_to_string(&env.config).unwrap().replace(
            &format!("127.0.0.1:{}", env.metrics_port),
            &format!("127.0.0.1:{port}"),
        );
        let config = env.dir.path().join(format!("{name}.toml"));
        common::rotationd::write_config(&config, &text);
        config
    }

    fn start(env: &Env, name: &str, envs: &[(&str, &str)]) -> Node {
        let port = free_port();
        let config = Node::write_config(env, name, port);
        let log = env.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_rotationd"));
        c.arg("--config")
            .arg(&config)
            .arg("run")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("ROTATIOND_TEST_FAILPOINT")
            .env("NO_COLOR", "1");
        for (k, v) in envs {
            c.env(k, v);
        }
        let daemon = Daemon(c.stdout(Stdio::null()).stderr(file).spawn().unwrap());
        Node { daemon, port, log }
    }

    fn leads(&self) -> bool {
        http_get(self.port, "/metrics").is_some_and(|(_, m)| m.contains("\nrotationd_leader 1"))
    }

    fn stands_by(&self) -> bool {
        http_get(self.port, "/readyz").is_some_and(|(s, b)| s == 200 && b.starts_with("standby"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.daemon.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

/// Waits up to `secs` for `pred`, failing with `what` and `node`'s log.
async fn until(env: &Env, secs: u64, node: &Node, what: &str, pred: impl Fn() -> bool) {
    let ok = env
        .eventually(Duration::from_secs(secs), || pred().then_some(()))
        .await
        .is_some();
    assert!(ok, "{what}:\n{}", node.log());
}

/// What every test here shares: the DynamoDB backend on `name` with a 6 s lease.
fn shared_state(name: &str) -> Table {
    table("[state]")
        .set("backend", "dynamodb")
        .set("table", name)
        .set("lease", "6s")
}

/// The config body: the DynamoDB backend on `table`, and one secret (change tickets
/// required) whose daily window opened two minutes before rotationd's (shifted) clock.
fn body(table: &str, id: &str, offset: chrono::Duration) -> String {
    let open = Utc::now() + offset - chrono::Duration::minutes(2);
    Body::new()
        .change_tickets_required()
        .with(shared_state(table))
        .with(
            config::secret(id)
                .schedule(&format!("{} {} * * *", open.minute(), open.hour()))
                .window("1h")
                .ticket("CHG-400"),
        )
        .render()
}

/// The log entries in `table`: (seq, writer), in order.
async fn log_writers(table: &str) -> Vec<(u64, String)> {
    log_entries(table)
        .await
        .into_iter()
        .map(|(seq, writer, _)| (seq, writer))
        .collect()
}

/// The log entries in `table`: (seq, writer, body), in order, chunks joined.
async fn log_entries(table: &str) -> Vec<(u64, String, String)> {
    let m = moto::shared();
    let client = aws_sdk_dynamodb::Client::new(&moto::sdk_config(&m.endpoint()));
    let mut out: Vec<(u64, String, String)> = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :log")
            .expression_attribute_values(":log", AttributeValue::S("log".into()))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for item in page.items() {
            let seq = item["seq"].as_n().unwrap().parse().unwrap();
            let writer = item["writer"].as_s().unwrap().clone();
            let body = item["body"].as_s().unwrap();
            match out.last_mut() {
                Some((s, _, text)) if *s == seq => text.push_str(body),
                _ => out.push((seq, writer, body.clone())),
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return out,
        }
    }
}

/// `read` on a replica of the shared state in `table` (`None` if it cannot be built).
async fn replica<T: Send + 'static>(
    table: &str,
    read: impl FnOnce(&rotationd::store::Store) -> Option<T> + Send + 'static,
) -> Option<T> {
    let m = moto::shared();
    let client = aws_sdk_dynamodb::Client::new(&moto::sdk_config(&m.endpoint()));
    let journal = rotationd::store::journal::Journal::dynamodb(
        client,
        table,
        tokio::runtime::Handle::current(),
        "test-reader",
    );
    tokio::task::spawn_blocking(move || {
        let store = rotationd::store::Store::open_replicated(journal).ok()?;
        read(&store)
    })
    .await
    .unwrap()
}

/// The state of the last finished attempt of `secret`, read from a replica of the log.
async fn last_attempt(table: &str, secret: &str) -> Option<String> {
    let secret = secret.to_string();
    replica(table, move |store| {
        let a = store.db().last_finished_attempt(&secret).ok()??;
        Some(a.state.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_completes_the_killed_leaders_rotation_exactly_once() {
    recording();
    let offset = chrono::Duration::hours(1);
    let secret = moto::unique_name("ha/kill");
    let table = moto::unique_name("ha-kill").replace('/', "-");
    let env = Env::new("ha-kill", &body(&table, &secret, offset)).await;
    env.rotatable_secret(&secret).await;
    let shift = offset.num_seconds().to_string();

    // A leads and pauses for good right after its RotateSecret; B stands by.
    let a = Node::start(
        &env,
        "a",
        &[
            ("ROTATIOND_TEST_CLOCK_OFFSET", &shift),
            ("ROTATIOND_TEST_FAILPOINT", "after-rotate"),
        ],
    );
    until(&env, 30, &a, "a did not lead", || a.leads()).await;
    // b runs under a (test) systemd: a standby is ready and feeds the watchdog too.
    let sock_path = env.dir.path().join("b-notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let notify = sock_path.to_str().unwrap();
    let b = Node::start(
        &env,
        "b",
        &[
            ("ROTATIOND_TEST_CLOCK_OFFSET", &shift),
            ("NOTIFY_SOCKET", notify),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    until(&env, 30, &b, "b did not stand by", || b.stands_by()).await;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let count = |needle: &str| {
        seen.iter()
            .filter(|m| m.lines().any(|l| l == needle))
            .count()
    };
    assert!(count("READY=1") >= 1, "{seen:?}");
    assert!(count("STATUS=standby") >= 1, "{seen:?}");
    // WATCHDOG_USEC 2 s: one WATCHDOG=1 a second, so at least 3 in 5 s of standing by.
    assert!(count("WATCHDOG=1") >= 3, "{seen:?}");
    assert!(
        env.eventually(Duration::from_secs(60), || {
            (env.rotations_by_rotationd(&secret) == 1 && a.log().contains("failpoint after-rotate"))
                .then_some(())
        })
        .await
        .is_some(),
        "a did not reach its RotateSecret:\n{}",
        a.log()
    );

    // Kill the leader mid-rotation.
    a.signal("-KILL");
    until(&env, 30, &b, "b did not take over", || b.leads()).await;
    let done = env
        .eventually(Duration::from_secs(60), || {
            let b_log = b.log();
            b_log.contains("rotation succeeded").then_some(b_log)
        })
        .await;
    assert!(
        done.is_some(),
        "b did not complete the rotation:\n{}",
        b.log()
    );
    let b_log = b.log();
    // b picked the attempt up where a left it (after RotateSecret) and did not start over.
    assert!(b_log.contains("resuming unfinished attempt"), "{b_log}");
    assert!(
        !b_log.contains("rotate: RotateSecret (ClientRequestToken"),
        "{b_log}"
    );
    // Exactly one RotateSecret reached AWS, and the shared state says succeeded.
    assert_eq!(env.rotations_by_rotationd(&secret), 1);
    assert_eq!(
        last_attempt(&table, &secret).await.as_deref(),
        Some("succeeded")
    );
    // `rotationd audit --verify` reads the shared log: the chain both wrote is intact.
    let audit = Command::new(env!("CARGO_BIN_EXE_rotationd"))
        .args(["--config"])
        .arg(env.dir.path().join("b.toml"))
        .args(["audit", "--verify"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&audit.stdout).to_string()
        + &String::from_utf8_lossy(&audit.stderr);
    assert!(audit.status.success(), "{out}");
    assert!(out.contains("audit log OK"), "{out}");
    // Both wrote to the log: a before the kill, b after.
    let writers = log_writers(&table).await;
    assert!(
        writers
            .iter()
            .any(|(_, w)| w.contains(&format!("-{}-", a.daemon.id())))
    );
    assert!(
        writers
            .iter()
            .any(|(_, w)| w.contains(&format!("-{}-", b.daemon.id())))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_steps_down_and_writes_nothing_after_the_takeover() {
    recording();
    let offset = chrono::Duration::hours(1);
    let secret = moto::unique_name("ha/pause");
    let table = moto::unique_name("ha-pause").replace('/', "-");
    let env = Env::new("ha-pause", &body(&table, &secret, offset)).await;
    env.rotatable_secret(&secret).await;
    let shift = offset.num_seconds().to_string();

    let a = Node::start(&env, "a", &[("ROTATIOND_TEST_CLOCK_OFFSET", &shift)]);
    until(&env, 30, &a, "a did not lead", || a.leads()).await;
    // a rotates the secret in its window; then b joins as standby.
    assert!(
        env.eventually(Duration::from_secs(60), || a
            .log()
            .contains("rotation succeeded")
            .then_some(()))
            .await
            .is_some(),
        "{}",
        a.log()
    );
    let b = Node::start(&env, "b", &[("ROTATIOND_TEST_CLOCK_OFFSET", &shift)]);
    until(&env, 30, &b, "b did not stand by", || b.stands_by()).await;

    // Pause the leader past its lease: b takes over.
    a.signal("-STOP");
    let took_over = env
        .eventually(Duration::from_secs(30), || b.leads().then_some(()))
        .await;
    let before_wake = log_writers(&table).await.len();
    a.signal("-CONT");
    assert!(took_over.is_some(), "b did not take over:\n{}", b.log());

    // a wakes believing it leads, finds out, and stands by.
    until(&env, 30, &a, "a did not step down", || a.stands_by()).await;
    assert!(a.log().contains("lost the leader lease"), "{}", a.log());
    assert!(b.leads() && !a.leads());
    // Nothing a wrote after b's takeover is in the shared log: every entry after the
    // first one b wrote is b's. No wait for a late write: a stops its leader's loops
    // (and their writes on the way) before it stands by, which it has done.
    let writers = log_writers(&table).await;
    let a_id = format!("-{}-", a.daemon.id());
    let b_id = format!("-{}-", b.daemon.id());
    let first_b = writers
        .iter()
        .position(|(_, w)| w.contains(&b_id))
        .unwrap_or(writers.len());
    assert!(
        writers[first_b..].iter().all(|(_, w)| !w.contains(&a_id)),
        "a wrote after b took over: {writers:?}"
    );
    assert!(writers.len() >= before_wake);
    // The rotation happened once, by a, before the pause.
    assert_eq!(env.rotations_by_rotationd(&secret), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_records_a_departure_and_the_leader_rotates_it_once() {
    recording();
    let secret = moto::unique_name("ha/departure");
    let table = moto::unique_name("ha-departure").replace('/', "-");
    // No window today (the quarterly default): the departure alone makes it rotate, at
    // once, since no window opens before its 24-hour deadline.
    let body = Body::new()
        .with(shared_state(&table))
        .with(config::secret(&secret).custodians(["leaver-ha"]));
    let env = Env::new("ha-departure", &body.render()).await;
    env.rotatable_secret(&secret).await;

    // a leads without an [events] section: it never reads the queue.
    let a = Node::start(&env, "a", &[]);
    until(&env, 30, &a, "a did not lead", || a.leads()).await;
    let (queue_url, bus) = queue_and_bus(&env, "ha-departure").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    let b = Node::start(&env, "b", &[]);
    until(&env, 30, &b, "b did not stand by", || b.stands_by()).await;
    until(&env, 30, &b, "b does not record events", || {
        b.log().contains("standby: recording events from the queue")
    })
    .await;

    send(
        &env,
        &queue_url,
        &iam_delete_user("leaver-ha", "ha-departure-1"),
    )
    .await;
    let rotated = env
        .eventually(Duration::from_secs(60), || {
            (env.rotations_by_rotationd(&secret) == 1 && a.log().contains("rotation succeeded"))
                .then_some(())
        })
        .await;
    assert!(
        rotated.is_some(),
        "a did not rotate after b recorded the departure:\na:\n{}\nb:\n{}",
        a.log(),
        b.log()
    );

    // b, still the standby, recorded the departure's trigger in the shared log; a, still
    // the leader, rotated it: one RotateSecret, one attempt, succeeded.
    assert!(b.stands_by() && a.leads());
    let b_id = format!("-{}-", b.daemon.id());
    let entries = log_entries(&table).await;
    assert!(
        entries.iter().any(|(_, w, body)| w.contains(&b_id)
            && body.contains("\"t\":\"triggers\"")
            && body.contains("departure")),
        "no trigger written by b: {:?}",
        entries.iter().map(|(s, w, _)| (s, w)).collect::<Vec<_>>()
    );
    assert_eq!(
        last_attempt(&table, &secret).await.as_deref(),
        Some("succeeded")
    );
    // A second rotation would need a second trigger (b recording the event twice) or an
    // unfinished attempt: wait until the queue is empty and the shared state has neither,
    // then count.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let settled = loop {
        let open = replica(&table, |store| {
            let kind = rotationd::store::TriggerKind::Departure;
            let triggers = store.db().unresolved_triggers(kind).ok()?.len();
            let attempts = store.db().unfinished_attempts().ok()?.len();
            Some(triggers + attempts)
        })
        .await;
        let queue = left_on_queue(&env, &queue_url).await;
        if open == Some(0) && queue == ("0".to_string(), "0".to_string()) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(settled, "work left:\na:\n{}\nb:\n{}", a.log(), b.log());
    assert_eq!(env.rotations_by_rotationd(&secret), 1);
    // b deleted the message once recorded: nothing waits or hides on the queue.
    assert_eq!(
        left_on_queue(&env, &queue_url).await,
        ("0".to_string(), "0".to_string())
    );
}

/// A standby never decides a CommandBridge request (its replica may lag, and a decision is
/// an act): it leaves the request on the queue, and the leader decides it once it reads
/// the queue.
#[tokio::test]
async fn a_standby_leaves_requests_to_the_leader() {
    recording();
    let secret = moto::unique_name("ha/request");
    let table = moto::unique_name("ha-request").replace('/', "-");
    let body = Body::new()
        .with(shared_state(&table))
        .with(config::secret(&secret));
    let env = Env::new("ha-request", &body.render()).await;
    env.rotatable_secret(&secret).await;

    // a leads without an [events] section: it does not read the queue (yet).
    let a = Node::start(&env, "a", &[]);
    until(&env, 30, &a, "a did not lead", || a.leads()).await;
    let (queue_url, bus) = queue_and_bus(&env, "ha-request").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.append_config("\n[requests]\nlevels = { \"lead\" = \"L3\" }\n");
    let b = Node::start(&env, "b", &[]);
    until(&env, 30, &b, "b did not stand by", || b.stands_by()).await;

    let request = serde_json::json!({
        "version": "0",
        "id": "env-ha-request-1",
        "detail-type": "Rotation Requested",
        "source": "commandbridge",
        "account": common::events::ACCOUNT,
        "time": chrono::Utc::now().to_rfc3339(),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "request_id": "ha-r-1", "secret": secret, "ticket": "INC-9100",
            "reason": "standby test", "requester": "lead", "emergency": true
        }
    });
    send(&env, &queue_url, &request.to_string()).await;
    until(&env, 30, &b, "b did not see the request", || {
        b.log()
            .contains("standby: request left on the queue for the leader")
    })
    .await;
    // Left on the queue (visible again 2 s later, for the leader's polls) and decided
    // never: no request row in the shared state, nothing written by b about it, no
    // rotation.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while left_on_queue(&env, &queue_url).await.0 != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "b did not leave the request on the queue:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b_id = format!("-{}-", b.daemon.id());
    let entries = log_entries(&table).await;
    assert!(
        !entries
            .iter()
            .any(|(_, w, body)| w.contains(&b_id) && body.contains("ha-r-1")),
        "b wrote something about the request"
    );
    let decided = replica(&table, |store| {
        store.db().get_request("ha-r-1").ok().map(|r| r.is_some())
    })
    .await;
    assert_eq!(decided, Some(false), "the standby decided the request");
    assert_eq!(env.rotations_by_rotationd(&secret), 0);

    // The leader reads the queue after a reload and decides it (an L3's emergency request
    // rotates at once).
    // a's own copy of the config gets the events and requests sections, then SIGHUP.
    Node::write_config(&env, "a", a.port);
    let hup = Command::new("kill")
        .args(["-HUP", &a.daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let rotated = env
        .eventually(Duration::from_secs(60), || {
            (env.rotations_by_rotationd(&secret) == 1).then_some(())
        })
        .await;
    assert!(
        rotated.is_some(),
        "the leader did not decide the request:\na:\n{}\nb:\n{}",
        a.log(),
        b.log()
    );
    let a_id = format!("-{}-", a.daemon.id());
    let entries = log_entries(&table).await;
    assert!(
        entries
            .iter()
            .any(|(_, w, body)| w.contains(&a_id) && body.contains("ha-r-1")),
        "the decision was not a's"
    );
    assert!(
        !entries
            .iter()
            .any(|(_, w, body)| w.contains(&b_id) && body.contains("ha-r-1")),
        "b wrote something about the request"
    );
}
