//! `rotationd audit` through the real binary: listing in every format with who, ticket and
//! reason, the `--secret` and `--since` filters, and `--verify` before and after someone
//! edits the state database by hand. The config points at a port where nothing listens, so
//! any AWS call would fail the command: `audit` must work from the state file alone.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::rotationd::{Env, free_port, stderr};
use rotationd::store::audit::{Action, Outcome};
use rotationd::store::{NewAuditEntry, Store};
use serde_json::{Value, json};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn entry(
    at: DateTime<Utc>,
    actor: &str,
    action: Action,
    secret: &str,
    ticket: Option<&str>,
    reason: &str,
    detail: Option<Value>,
) -> NewAuditEntry {
    NewAuditEntry {
        at,
        actor: actor.into(),
        action,
        secret: Some(secret.into()),
        ticket: ticket.map(str::to_owned),
        reason: Some(reason.into()),
        outcome: Outcome::Ok,
        detail,
    }
}

/// The ids listed by `rotationd audit --format json` with `args`.
fn listed_ids(env: &Env, args: &[&str]) -> Vec<i64> {
    let mut all = vec!["audit", "--format", "json"];
    all.extend_from_slice(args);
    let o = env.cli(&all);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn audit_lists_filters_and_detects_tampering() {
    let env = Env::new("audit", "").await;
    env.use_endpoint(&format!("http://127.0.0.1:{}", free_port()));
    let state = env.dir.path().join("state.db");

    // Nothing recorded yet: an empty, intact log, and no file left behind for it.
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("audit log OK: 0 entries, last hash {}\n", "0".repeat(64))
    );
    assert!(
        stderr(&o).contains("there is no state database at"),
        "{}",
        stderr(&o)
    );
    assert!(
        !state.exists(),
        "a read command must not create the database"
    );

    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let store = Store::open(&state).unwrap();
    let db = store.db();
    let quoted = r#"rotating, as "planned""#;
    let first = db
        .append_audit(&entry(
            now - Duration::days(40),
            "cli:alice",
            Action::Rotate,
            "prod/db",
            Some("CHG-1"),
            quoted,
            Some(json!({ "version": "v2" })),
        ))
        .unwrap();
    let second = db
        .append_audit(&entry(
            now - Duration::days(3),
            "rotationd",
            Action::Rotate,
            "prod/api",
            None,
            "scheduled window",
            None,
        ))
        .unwrap();
    let third = db
        .append_audit(&entry(
            now - Duration::hours(1),
            "cli:bob",
            Action::Rollback,
            "prod/db",
            Some("INC-7"),
            "bad deploy",
            Some(json!({ "from": "v2", "to": "v1" })),
        ))
        .unwrap();
    let expected = store.db().verify_audit().unwrap();
    store.close().unwrap();

    // JSON: every field, `detail` as JSON, and the hash chain.
    let o = env.cli(&["audit", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v:#}");
    assert_eq!(rows[0]["id"], first);
    assert_eq!(rows[0]["actor"], "cli:alice");
    assert_eq!(rows[0]["action"], "rotate");
    assert_eq!(rows[0]["secret"], "prod/db");
    assert_eq!(rows[0]["ticket"], "CHG-1");
    assert_eq!(rows[0]["reason"], quoted);
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["detail"], json!({ "version": "v2" }));
    assert_eq!(
        rows[0]["at"],
        (now - Duration::days(40))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    );
    assert_eq!(rows[0]["prev_hash"], "0".repeat(64));
    assert_eq!(rows[1]["ticket"], Value::Null);
    assert_eq!(rows[1]["prev_hash"], rows[0]["hash"]);
    assert_eq!(rows[2]["actor"], "cli:bob");
    assert_eq!(rows[2]["ticket"], "INC-7");
    assert_eq!(rows[2]["reason"], "bad deploy");
    assert_eq!(rows[2]["hash"], expected.last_hash.as_str());

    // Filters.
    assert_eq!(listed_ids(&env, &["--secret", "prod/db"]), [first, third]);
    assert_eq!(
        listed_ids(&env, &["--secret", "prod/none"]),
        Vec::<i64>::new()
    );
    assert_eq!(listed_ids(&env, &["--since", "7d"]), [second, third]);
    assert_eq!(listed_ids(&env, &["--since", "24h"]), [third]);
    let two_days_ago = (now - Duration::days(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(listed_ids(&env, &["--since", &two_days_ago]), [third]);
    assert_eq!(
        listed_ids(&env, &["--secret", "prod/db", "--since", "7d"]),
        [third]
    );
    let o = env.cli(&["audit", "--since", "last tuesday"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("invalid --since `last tuesday`"),
        "{}",
        stderr(&o)
    );

    // CSV: RFC 4180, a header, CRLF records, the comma-and-quote reason quoted.
    let o = env.cli(&["audit", "--format", "csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = stdout(&o);
    let records: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(records.len(), 4, "{csv}");
    assert_eq!(
        records[0],
        "id,at,actor,action,secret,ticket,reason,outcome,detail,prev_hash,hash"
    );
    assert!(
        records[1].starts_with(&format!("{first},")),
        "{}",
        records[1]
    );
    assert!(
        records[1].contains(r#",cli:alice,rotate,prod/db,CHG-1,"rotating, as ""planned""",ok,"{""version"":""v2""}","#),
        "{}",
        records[1]
    );
    assert!(
        records[2].contains(",rotationd,rotate,prod/api,,scheduled window,ok,,"),
        "{}",
        records[2]
    );

    // Table: who, ticket and reason on every row.
    let o = env.cli(&["audit"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "AT", "ACTOR", "ACTION", "SECRET", "TICKET", "OUTCOME", "REASON"
        ]
    );
    for (line, who, ticket, reason) in [
        (lines[1], "cli:alice", "CHG-1", quoted),
        (lines[2], "rotationd", "-", "scheduled window"),
        (lines[3], "cli:bob", "INC-7", "bad deploy"),
    ] {
        assert!(
            line.contains(who) && line.contains(&format!(" {ticket} ")) && line.ends_with(reason),
            "{table}"
        );
    }

    // Intact: the count and the same last hash the library computes.
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "audit log OK: 3 entries, last hash {}\n",
            expected.last_hash
        )
    );

    // The last hash, recorded elsewhere, is still in the chain.
    let o = env.cli(&["audit", "--verify", "--expect-hash", &expected.last_hash]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Someone removes the newest entry: the chain that is left is intact, so only the
    // hash recorded earlier shows it.
    let conn = env.db();
    conn.execute_batch(
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = (SELECT MAX(id) FROM audit)",
    )
    .unwrap();
    drop(conn);
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the chain alone cannot see it: {}",
        stderr(&o)
    );
    let o = env.cli(&["audit", "--verify", "--expect-hash", &expected.last_hash]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(&format!(
            "error: audit log tampered: hash {} recorded earlier is no longer in the chain",
            expected.last_hash
        )),
        "{}",
        stderr(&o)
    );

    // Someone with write access drops the trigger and softens a reason.
    let conn = env.db();
    conn.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    conn.execute(
        "UPDATE audit SET reason = 'routine' WHERE id = ?1",
        [second],
    )
    .unwrap();
    drop(conn);
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).lines().any(|l| l.starts_with(&format!(
            "error: audit log tampered at entry {second}: hash mismatch: row edited"
        ))),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
}

/// The adversarial review's rewrite: `INSERT OR REPLACE INTO audit` replaced a row without
/// firing the delete trigger, and `audit --verify`, which opened the store for writing,
/// chained the rewritten row itself and said OK. Now the rewrite is refused by the
/// database, and a rewrite made anyway (by someone who dropped the triggers) is reported
/// by a `--verify` that writes nothing, as often as it is run.
#[tokio::test]
async fn a_replace_is_refused_and_verify_never_blesses_a_rewrite() {
    let env = Env::new("audit-replace", "").await;
    env.use_endpoint(&format!("http://127.0.0.1:{}", free_port()));
    let state = env.dir.path().join("state.db");
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let store = Store::open(&state).unwrap();
    for (i, who) in ["cli:alice", "cli:bob", "rotationd"].iter().enumerate() {
        store
            .db()
            .append_audit(&entry(
                now - Duration::hours(3 - i as i64),
                who,
                Action::Rotate,
                "prod/db",
                Some("CHG-1"),
                "planned",
                None,
            ))
            .unwrap();
    }
    store.close().unwrap();

    let raw = rusqlite::Connection::open(&state).unwrap();
    let rewrite = "INSERT OR REPLACE INTO audit (id, at, actor, action, secret, outcome) \
                   VALUES (2, 0, 'cli:mallory', 'rotate', 'prod/db', 'ok')";
    let err = raw
        .execute(rewrite, [])
        .expect_err("the rewrite must be refused");
    assert!(err.to_string().contains("append-only"), "{err}");
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("audit log OK: 3 entries"),
        "{}",
        stdout(&o)
    );

    // Someone with the file drops the triggers and rewrites entry 2 (no hash: they did not
    // bother to forge one).
    raw.execute_batch(
        "DROP TRIGGER audit_no_replace; DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;",
    )
    .unwrap();
    raw.execute(rewrite, []).unwrap();
    drop(raw);
    let before = std::fs::read(&state).unwrap();
    for _ in 0..2 {
        let o = env.cli(&["audit", "--verify"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(
            stderr(&o).contains("audit log tampered at entry 2"),
            "{}",
            stderr(&o)
        );
    }
    // Nothing written: the file is byte for byte the same, and the row still has no hash.
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "--verify wrote to the database"
    );
    let hash: Option<String> = rusqlite::Connection::open(&state)
        .unwrap()
        .query_row("SELECT hash FROM audit WHERE id = 2", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hash, None);
    // A writable open (the daemon's, a CLI command's) does not chain it either.
    Store::open(&state).unwrap().close().unwrap();
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("audit log tampered at entry 2"),
        "{}",
        stderr(&o)
    );
}

/// A state database swapped for an older copy of itself holds an intact chain: every row
/// in it checks. What it no longer holds is the head the daemon recorded in its head file
/// (`state.db.head`), and `--verify` compares the two.
#[tokio::test]
async fn verify_finds_a_database_replaced_by_an_older_copy() {
    let env = Env::new("audit-replaced", "").await;
    env.use_endpoint(&format!("http://127.0.0.1:{}", free_port()));
    let state = env.dir.path().join("state.db");
    let older = env.dir.path().join("older.db");
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let store = Store::open(&state).unwrap();
    let reason = |i: u32| format!("entry {i}");
    store
        .db()
        .append_audit(&entry(
            now,
            "rotationd",
            Action::Rotate,
            "prod/db",
            None,
            &reason(1),
            None,
        ))
        .unwrap();
    store.close().unwrap();
    std::fs::copy(&state, &older).unwrap();

    let store = Store::open(&state).unwrap();
    for i in 2..=3 {
        store
            .db()
            .append_audit(&entry(
                now,
                "rotationd",
                Action::Rotate,
                "prod/db",
                None,
                &reason(i),
                None,
            ))
            .unwrap();
    }
    // What the daemon's state guard does every second.
    store.write_head();
    store.close().unwrap();
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("head file: entry 3"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("audit log OK: 3 entries"),
        "{}",
        stdout(&o)
    );

    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", state.display()));
    }
    std::fs::rename(&older, &state).unwrap();
    // The copy on its own is intact...
    let copy = Store::open_read_only(&state).unwrap();
    assert!(copy.db().verify_audit().unwrap().is_intact());
    drop(copy);
    // ...but it is not the log the daemon kept.
    let o = env.cli(&["audit", "--verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("does not hold the head its head file recorded (entry 3"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("OK"), "{}", stdout(&o));
}
