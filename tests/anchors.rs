//! The anchored audit log on moto's S3 (`[audit] anchor_bucket`, a bucket created with
//! Object Lock): the daemon anchors the chain head when it starts and again at shutdown,
//! each anchor locked in compliance mode for `anchor_retention`, and `rotationd audit
//! --verify --anchors` holds the local log against every anchor: an honest log passes, a
//! truncated tail and a rewritten one (each a chain that `--verify` alone calls intact)
//! fail with exit 1 and say which anchor they break.

mod common;

use std::time::Duration;

use aws_sdk_s3::types::ObjectLockMode;
use chrono::Utc;
use common::config::{Body, selector, table};
use common::moto;
use common::rotationd::{Env, stderr, terminate};
use rotationd::store::audit::{Action, Outcome};
use rotationd::store::{NewAuditEntry, Store};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto::sdk_config(endpoint))
            .force_path_style(true)
            .build(),
    )
}

/// An env whose daemon ran once with anchors: two rotations through the CLI, one before
/// the daemon started and one while it ran, then SIGTERM.
struct Anchored {
    env: Env,
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    /// The anchors' keys, in id order.
    keys: Vec<String>,
}

impl Anchored {
    /// The entry ids the anchors name, in order.
    fn ids(&self) -> Vec<i64> {
        self.keys
            .iter()
            .map(|k| k.strip_prefix(&self.prefix).unwrap()[..20].parse().unwrap())
            .collect()
    }

    fn max_id(&self) -> i64 {
        self.env
            .db()
            .query_row("SELECT MAX(id) FROM audit", [], |r| r.get(0))
            .unwrap()
    }

    fn verify(&self, anchors: bool) -> std::process::Output {
        if anchors {
            self.env.cli(&["audit", "--verify", "--anchors"])
        } else {
            self.env.cli(&["audit", "--verify"])
        }
    }
}

async fn list(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

async fn anchored(test: &str) -> Anchored {
    let moto = moto::shared();
    let s3 = s3_client(&moto.endpoint());
    let bucket = moto::unique_name(test);
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let prefix = "rotationd/audit-anchors/".to_string();
    let body = Body::new().with(selector("anch/")).with(
        table("[audit]")
            .set("anchor_bucket", &bucket)
            .set("anchor_prefix", &prefix),
    );
    let env = Env::new(test, &body.render()).await;
    let secret = moto::unique_name("anch/db");
    env.rotatable_secret(&secret).await;
    let o = env.rotate_emergency(&secret, "INC-1", "before the daemon");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let (mut daemon, log) = env.daemon_ready(&[]).await;
    // The start anchor: the head as the daemon found it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while list(&s3, &bucket, &prefix).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no anchor after the start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = env.rotate_emergency(&secret, "INC-2", "while the daemon runs");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    let keys = list(&s3, &bucket, &prefix).await;
    Anchored {
        env,
        s3,
        bucket,
        prefix,
        keys,
    }
}

#[tokio::test]
async fn an_honest_log_holds_its_anchors_which_are_locked_in_compliance_mode() {
    let a = anchored("anchors-honest").await;
    let head = a.max_id();
    let ids = a.ids();
    // The start anchor, then the shutdown anchor at the head the daemon left (the second
    // rotation came after the start; the next periodic anchor was an hour away).
    assert_eq!(ids.len(), 2, "{:?}", a.keys);
    assert!(ids[0] < ids[1], "{ids:?}");
    assert_eq!(ids[1], head, "the shutdown anchor is not the head");
    let hash: String = a
        .env
        .db()
        .query_row("SELECT hash FROM audit WHERE id = ?1", [head], |r| r.get(0))
        .unwrap();
    assert_eq!(
        a.keys[1],
        format!("{}{head:020}-{hash}.json", a.prefix),
        "the key names the head's id and hash"
    );
    let body =
        a.s3.get_object()
            .bucket(&a.bucket)
            .key(&a.keys[1])
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["format"], "rotationd-audit-anchor-v1");
    assert_eq!(doc["entry_id"], head);
    assert_eq!(doc["hash"], hash.as_str());

    let o = a.verify(true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // The head file next to the database (main's check), the chain, then the anchors.
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("head file: entry "), "{out}");
    assert!(
        lines[1].starts_with(&format!("audit log OK: {head} entries")),
        "{out}"
    );
    assert_eq!(
        lines[2],
        format!(
            "anchors OK: 2 anchors in s3://{}/{} checked, the newest at entry {head}",
            a.bucket, a.prefix
        )
    );

    // Locked in compliance mode for anchor_retention (400d by default). moto has no
    // GetObjectRetention (docs/moto-findings.md); HeadObject carries the same retention.
    let now = Utc::now().timestamp();
    for key in &a.keys {
        let head =
            a.s3.head_object()
                .bucket(&a.bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&ObjectLockMode::Compliance),
            "{key}"
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        let days = (until - now) as f64 / 86_400.0;
        assert!(
            (399.0..=400.01).contains(&days),
            "{key} locked for {days} days"
        );
        // And the lock holds: the version cannot be deleted.
        let err =
            a.s3.delete_object()
                .bucket(&a.bucket)
                .key(key)
                .version_id(head.version_id().unwrap())
                .send()
                .await
                .expect_err("a locked anchor was deleted");
        assert_eq!(
            aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
            Some("AccessDenied"),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_truncated_tail_fails_verify_with_anchors() {
    let a = anchored("anchors-truncated").await;
    let ids = a.ids();
    assert_eq!(ids.len(), 2, "{:?}", a.keys);
    // Someone with the file removes every entry after the first anchor: what is left is
    // an intact chain. They remove the head file next to it too (on the same disk, written
    // by the same user), so that only the anchors off the host can tell.
    let db = a.env.db();
    db.execute_batch("DROP TRIGGER audit_no_delete").unwrap();
    db.execute("DELETE FROM audit WHERE id > ?1", [ids[0]])
        .unwrap();
    drop(db);
    std::fs::remove_file(a.env.dir.path().join("state.db.head")).unwrap();
    let o = a.verify(false);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the chain alone cannot see it: {}",
        stderr(&o)
    );

    let o = a.verify(true);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "error: audit log tampered: it does not hold 1 of the 2 anchors in s3://{}/{}:",
            a.bucket, a.prefix
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "names entry {}, but the local log ends at entry {}",
            ids[1], ids[0]
        )),
        "{err}"
    );
    assert!(err.contains("truncated: the anchor of "), "{err}");
}

#[tokio::test]
async fn a_rewritten_log_fails_verify_with_anchors() {
    let a = anchored("anchors-rewritten").await;
    let ids = a.ids();
    assert_eq!(ids.len(), 2, "{:?}", a.keys);
    let head = a.max_id();
    let old: String = a
        .env
        .db()
        .query_row("SELECT hash FROM audit WHERE id = ?1", [ids[0]], |r| {
            r.get(0)
        })
        .unwrap();
    // Someone rewrites the log from the entry before the first anchor on: removes those
    // entries and appends others in their place, each chained and hashed as rotationd
    // would, so that the chain verifies and the log is as long as before.
    let from = ids[0] - 1;
    let db = a.env.db();
    db.execute_batch(
        "DROP TRIGGER audit_no_delete; DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_replace;",
    )
    .unwrap();
    db.execute("DELETE FROM audit WHERE id >= ?1", [from])
        .unwrap();
    drop(db);
    let store = Store::open(a.env.dir.path().join("state.db")).unwrap();
    for _ in from..=head {
        store
            .db()
            .append_audit(&NewAuditEntry {
                at: Utc::now(),
                actor: "rotationd".into(),
                action: Action::Rotate,
                secret: Some("anch/other".into()),
                ticket: None,
                reason: Some("nothing happened here".into()),
                outcome: Outcome::Ok,
                detail: None,
            })
            .unwrap();
    }
    store.close().unwrap();
    assert_eq!(a.max_id(), head);
    let o = a.verify(false);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the chain alone cannot see it: {}",
        stderr(&o)
    );

    let o = a.verify(true);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: audit log tampered: it does not hold 2 of the 2 anchors"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "rewritten: entry {} was anchored with hash {old}, the local entry has ",
            ids[0]
        )),
        "{err}"
    );
}

/// With the DynamoDB backend only the leader anchors: a standby running next to it, and
/// stopped, writes none (it would write the same key, the shared head, with itself as the
/// writer in the body).
#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_anchors_with_the_dynamodb_backend() {
    use common::rotationd::{free_port, http_get, write_config};
    let moto = moto::shared();
    let s3 = s3_client(&moto.endpoint());
    let bucket = moto::unique_name("anchors-ha");
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let prefix = "ha/".to_string();
    let state_table = moto::unique_name("anchors-ha-state");
    let body = Body::new()
        .with(selector("anchha/"))
        .with(
            table("[state]")
                .set("backend", "dynamodb")
                .set("table", &state_table)
                .set("lease", "6s"),
        )
        .with(
            table("[audit]")
                .set("anchor_bucket", &bucket)
                .set("anchor_prefix", &prefix),
        );
    let env = Env::new("anchors-ha", &body.render()).await;
    let secret = moto::unique_name("anchha/db");
    env.rotatable_secret(&secret).await;
    // Something in the shared log to anchor, before either node runs.
    let o = env.rotate_emergency(&secret, "INC-3", "before the nodes");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let start = |name: &str| {
        let port = free_port();
        let text = std::fs::read_to_string(&env.config).unwrap().replace(
            &format!("127.0.0.1:{}", env.metrics_port),
            &format!("127.0.0.1:{port}"),
        );
        let config = env.dir.path().join(format!("{name}.toml"));
        write_config(&config, &text);
        let log = env.dir.path().join(format!("{name}.log"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rotationd"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("ROTATIOND_TEST_FAILPOINT")
            .env_remove("ROTATIOND_TEST_CLOCK_OFFSET")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (child, port, log)
    };
    let leads = |port: u16| {
        http_get(port, "/metrics").is_some_and(|(_, m)| m.contains("\nrotationd_leader 1"))
    };
    let stands_by = |port: u16| {
        http_get(port, "/readyz").is_some_and(|(s, b)| s == 200 && b.starts_with("standby"))
    };
    let (mut a, a_port, a_log) = start("a");
    let led = env
        .eventually(Duration::from_secs(30), || leads(a_port).then_some(()))
        .await;
    assert!(
        led.is_some(),
        "a did not lead:\n{}",
        std::fs::read_to_string(&a_log).unwrap()
    );
    let (mut b, b_port, b_log) = start("b");
    let stood = env
        .eventually(Duration::from_secs(30), || stands_by(b_port).then_some(()))
        .await;
    assert!(
        stood.is_some(),
        "b did not stand by:\n{}",
        std::fs::read_to_string(&b_log).unwrap()
    );
    // a's start anchor, then b stopped as a standby, then a.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while list(&s3, &bucket, &prefix).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "a wrote no anchor");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        terminate(&mut b, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert_eq!(
        terminate(&mut a, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );

    let keys = list(&s3, &bucket, &prefix).await;
    assert!(!keys.is_empty());
    // Every version of every key: a standby's anchor of the same head would be a version
    // of the leader's key, hidden from the listing by the leader's next one.
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    let a_id = format!("-{}-", a.id());
    let mut seen = 0;
    for v in versions.versions() {
        let (key, version) = (v.key().unwrap(), v.version_id().unwrap());
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .version_id(version)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let writer = doc["instance"].as_str().unwrap();
        assert!(
            writer.contains(&a_id),
            "{key} ({version}) was written by {writer}, not the leader {a_id}"
        );
        seen += 1;
    }
    assert!(seen >= keys.len());
    // And the anchors hold the shared log, read through a replica.
    let o = env.cli(&["audit", "--verify", "--anchors"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("anchors OK: {} anchors", keys.len())),
        "{}",
        stdout(&o)
    );
}
