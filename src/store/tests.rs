use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rusqlite::Connection;
use serde_json::json;

use super::audit::{Action, Outcome};
use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    // A fixed, readable base time keeps expected orderings obvious.
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("valid base time")
        + TimeDelta::seconds(secs)
}

fn trigger(secret: &str, kind: TriggerKind, key: Option<&str>) -> NewTrigger {
    NewTrigger {
        secret: secret.to_owned(),
        kind,
        dedupe_key: key.map(str::to_owned),
        ticket: Some("SEC-1".to_owned()),
        reason: "test".to_owned(),
        actor: "rotationd".to_owned(),
        created_at: t(0),
        not_before: None,
        deadline: None,
    }
}

fn attempt(id: &str, secret: &str, trigger_id: Option<i64>) -> NewAttempt {
    NewAttempt {
        id: id.to_owned(),
        trigger_id,
        secret: secret.to_owned(),
        secret_arn: Some(format!(
            "arn:aws:secretsmanager:eu-west-1:1:secret:{secret}"
        )),
        trigger_kind: TriggerKind::Manual,
        ticket: None,
        client_request_token: format!("token-{id}"),
        previous_version: Some("v-old".to_owned()),
        started_at: t(0),
    }
}

fn alert(key: &str) -> NewAlert {
    NewAlert {
        dedupe_key: key.to_owned(),
        kind: "overdue".to_owned(),
        severity: "warning".to_owned(),
        subject: format!("{key} is overdue"),
        message: json!({ "secret": key, "days_overdue": 3 }),
        attributes: BTreeMap::from([("severity".to_owned(), "warning".to_owned())]),
    }
}

fn pragma<T: rusqlite::types::FromSql>(store: &Store, name: &str) -> T {
    store
        .conn
        .pragma_query_value(None, name, |row| row.get(0))
        .expect("pragma readable")
}

fn table_names(store: &Store) -> Vec<String> {
    let mut stmt = store
        .conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

// ---- opening and migrations ----

#[test]
fn open_creates_parent_dir_and_migrates_empty_db() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/state/rotationd.db");
    let store = Store::open(&path).expect("open");

    assert!(path.exists());
    assert_eq!(store.path(), Some(path.as_path()));
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    assert_eq!(
        table_names(&store),
        [
            "alert_dedupe",
            "alert_outbox",
            "attempts",
            "audit",
            "audit_checkpoints",
            "bus_outbox",
            "cursors",
            "directory_users",
            "holds",
            "rejection_tallies",
            "requests",
            "seen_events",
            "triggers"
        ]
    );
    assert_eq!(pragma::<String>(&store, "journal_mode"), "wal");
    assert_eq!(pragma::<i64>(&store, "synchronous"), 2, "FULL is 2");
    assert_eq!(pragma::<i64>(&store, "foreign_keys"), 1);
    assert_eq!(pragma::<i64>(&store, "busy_timeout"), 5000);
}

#[test]
fn in_memory_store_is_migrated_and_enforces_foreign_keys() {
    let store = Store::open_in_memory().expect("open");
    assert_eq!(store.path(), None);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(pragma::<i64>(&store, "foreign_keys"), 1);

    let err = store
        .db()
        .create_attempt(&attempt("a1", "db/main", Some(999)))
        .expect_err("no trigger 999");
    assert!(matches!(err, StoreError::Query { .. }), "{err}");
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    assert_eq!(store.db().get_attempt("a1").expect("get"), None);
}

#[test]
fn reopen_keeps_data_and_runs_no_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let id = {
        let store = Store::open(&path).expect("first open");
        let id = store
            .db()
            .insert_trigger(&trigger("db/main", TriggerKind::Manual, Some("k1")))
            .expect("insert")
            .id;
        store.close().expect("close");
        id
    };

    let mut store = Store::open(&path).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let got = store
        .db()
        .get_trigger(id)
        .expect("get")
        .expect("still there");
    assert_eq!(got.dedupe_key.as_deref(), Some("k1"));
    // Re-running the initial CREATE TABLEs would fail, so 0 here means the
    // version check, not luck, skipped them.
    assert_eq!(schema::migrate(&mut store.conn).expect("migrate"), 0);
    assert_eq!(store.db().pending_triggers().expect("list").len(), 1);
}

#[test]
fn migrations_are_applied_in_order_from_the_current_version() {
    let mut conn = Connection::open_in_memory().expect("open");
    assert_eq!(schema::user_version(&conn).expect("version"), 0);
    assert_eq!(schema::migrate(&mut conn).expect("migrate"), SCHEMA_VERSION);
    assert_eq!(
        schema::user_version(&conn).expect("version"),
        SCHEMA_VERSION
    );
    assert_eq!(schema::migrate(&mut conn).expect("again"), 0);
}

#[test]
fn newer_schema_is_refused_without_touching_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let future = SCHEMA_VERSION + 1;
    {
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "user_version", future)
            .expect("set");
    }

    let err = Store::open(&path).expect_err("must refuse");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported } if found == future && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "state database schema version {future} is newer than this rotationd supports \
             ({SCHEMA_VERSION}); upgrade rotationd"
        )
    );
    let conn = Connection::open(&path).expect("reopen raw");
    assert_eq!(schema::user_version(&conn).expect("version"), future);
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
        .expect("count");
    assert_eq!(tables, 0, "no migration ran");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("mode");
    assert_eq!(mode, "delete", "journal mode left alone");
}

#[test]
fn unusable_path_reports_what_to_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");

    let err = Store::open(file.join("state.db")).expect_err("parent is a file");
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("[daemon] state_path"), "{err}");

    let err = Store::open(dir.path()).expect_err("path is a directory");
    assert!(matches!(err, StoreError::Create { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot open state database {}: ",
            dir.path().display()
        )),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("; check [daemon] state_path and its directory permissions")
    );
}

// ---- durability ----

const CRASH_CHILD_ENV: &str = "ROTATIOND_STORE_CRASH_CHILD_DB";

/// Runs in a child process (see `committed_write_survives_abort`): commits a
/// trigger, reports it, then dies without any cleanup.
fn crash_child(db: &Path) -> ! {
    let store = Store::open(db).expect("child open");
    let mut t = trigger("db/crash", TriggerKind::Compromise, Some("crash-key"));
    t.reason = "written just before abort".to_owned();
    let inserted = store.db().insert_trigger(&t).expect("child insert");
    println!("COMMITTED id={}", inserted.id);
    std::process::abort();
}

#[test]
fn committed_write_survives_abort() {
    if let Some(db) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&db));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state.db");
    // The harness names tests without the crate name.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let name = format!("{module}::committed_write_survives_abort");
    let output = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, &db)
        .output()
        .expect("run child");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "child must die, not pass: {stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(output.status.signal(), Some(6), "SIGABRT; stdout: {stdout}");
    }
    // The harness prints "test <name> ... " on the same line, so search.
    let id: i64 = stdout
        .split_once("COMMITTED id=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("child did not commit; stdout: {stdout}"))
        .parse()
        .expect("id");
    // The commit lives only in the WAL (no checkpoint ran), so reopening
    // exercises WAL recovery.
    let wal = dir.path().join("state.db-wal");
    assert!(
        std::fs::metadata(&wal).expect("wal left behind").len() > 0,
        "WAL must hold the commit"
    );

    let store = Store::open(&db).expect("reopen after crash");
    let got = store
        .db()
        .get_trigger(id)
        .expect("get")
        .expect("trigger survived");
    assert_eq!(got.secret, "db/crash");
    assert_eq!(got.reason, "written just before abort");
    assert_eq!(got.status, TriggerStatus::Pending);
}

// ---- triggers ----

#[test]
fn trigger_dedupe_key_records_once() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let key = "event:abc-123:db/main";
    let first = db
        .insert_trigger(&trigger("db/main", TriggerKind::Departure, Some(key)))
        .expect("first");
    let mut again = trigger("db/main", TriggerKind::Departure, Some(key));
    again.reason = "redelivered".to_owned();
    let second = db.insert_trigger(&again).expect("second");

    assert!(first.new);
    assert!(!second.new);
    assert_eq!(second.id, first.id);
    let all = db.pending_triggers().expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].reason, "test", "the first insert wins");

    // Without a key nothing is deduplicated.
    let a = db
        .insert_trigger(&trigger("db/main", TriggerKind::Manual, None))
        .expect("a");
    let b = db
        .insert_trigger(&trigger("db/main", TriggerKind::Manual, None))
        .expect("b");
    assert!(a.new && b.new);
    assert_ne!(a.id, b.id);
    assert_eq!(db.pending_triggers().expect("list").len(), 3);
}

#[test]
fn pending_triggers_order_by_deadline_then_age() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let mut ids = BTreeMap::new();
    for (name, created, deadline) in [
        ("no-deadline-old", 1, None),
        ("late", 2, Some(500)),
        ("no-deadline-new", 3, None),
        ("soon", 4, Some(100)),
        ("soon-but-newer", 5, Some(100)),
    ] {
        let mut tr = trigger(name, TriggerKind::Scheduled, None);
        tr.created_at = t(created);
        tr.deadline = deadline.map(t);
        ids.insert(name, db.insert_trigger(&tr).expect("insert").id);
    }

    let order: Vec<String> = db
        .pending_triggers()
        .expect("list")
        .into_iter()
        .map(|tr| tr.secret)
        .collect();
    assert_eq!(
        order,
        [
            "soon",
            "soon-but-newer",
            "late",
            "no-deadline-old",
            "no-deadline-new"
        ]
    );
    assert_eq!(db.earliest_pending_deadline().expect("min"), Some(t(100)));

    db.set_trigger_status(ids["soon"], TriggerStatus::Cancelled, t(10))
        .expect("cancel");
    db.set_trigger_status(ids["soon-but-newer"], TriggerStatus::Done, t(10))
        .expect("done");
    assert_eq!(db.earliest_pending_deadline().expect("min"), Some(t(500)));
    assert_eq!(db.pending_triggers().expect("list").len(), 3);
}

#[test]
fn trigger_round_trip_and_per_secret_listing() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let mut tr = trigger("db/main", TriggerKind::Departure, Some("event:e1:db/main"));
    tr.not_before = Some(t(60));
    tr.deadline = Some(t(3600));
    tr.created_at = t(5);
    let id = db.insert_trigger(&tr).expect("insert").id;
    db.insert_trigger(&trigger("db/other", TriggerKind::Scheduled, None))
        .expect("other");

    let got = db.get_trigger(id).expect("get").expect("exists");
    assert_eq!(
        got,
        Trigger {
            id,
            secret: "db/main".to_owned(),
            kind: TriggerKind::Departure,
            dedupe_key: Some("event:e1:db/main".to_owned()),
            ticket: Some("SEC-1".to_owned()),
            reason: "test".to_owned(),
            actor: "rotationd".to_owned(),
            created_at: t(5),
            not_before: Some(t(60)),
            deadline: Some(t(3600)),
            status: TriggerStatus::Pending,
            attempt_id: None,
            updated_at: t(5),
            observed_by: None,
        }
    );
    let mine = db.pending_triggers_for("db/main").expect("list");
    assert_eq!(mine.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
    assert!(db.pending_triggers_for("db/none").expect("list").is_empty());
    assert_eq!(db.get_trigger(id + 100).expect("get"), None);
}

#[test]
fn trigger_status_attach_counts_and_terminal_refusal() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let sched = db
        .insert_trigger(&trigger("db/main", TriggerKind::Scheduled, None))
        .expect("insert")
        .id;
    let dep = db
        .insert_trigger(&trigger("db/main", TriggerKind::Departure, None))
        .expect("insert")
        .id;
    db.insert_trigger(&trigger("db/x", TriggerKind::Scheduled, None))
        .expect("insert");
    assert_eq!(
        db.pending_trigger_counts().expect("counts"),
        BTreeMap::from([(TriggerKind::Scheduled, 2), (TriggerKind::Departure, 1)])
    );

    db.create_attempt(&attempt("a1", "db/main", Some(sched)))
        .expect("attempt");
    db.attach_attempt(sched, "a1", t(20)).expect("attach");
    db.attach_attempt(dep, "a1", t(20)).expect("attach");
    let got = db.get_trigger(sched).expect("get").expect("exists");
    assert_eq!(got.status, TriggerStatus::Running);
    assert_eq!(got.attempt_id.as_deref(), Some("a1"));
    assert_eq!(got.updated_at, t(20));
    assert_eq!(
        db.pending_trigger_counts().expect("counts"),
        BTreeMap::from([(TriggerKind::Scheduled, 1)])
    );

    assert_eq!(
        db.finish_triggers_of_attempt("a1", TriggerStatus::Done, t(30))
            .expect("finish"),
        2
    );
    let err = db
        .set_trigger_status(dep, TriggerStatus::Pending, t(40))
        .expect_err("done is final");
    assert!(
        matches!(err, StoreError::TriggerFinished { id, status: TriggerStatus::Done } if id == dep),
        "{err:?}"
    );
    assert!(matches!(
        db.attach_attempt(dep, "a1", t(40)),
        Err(StoreError::TriggerFinished { .. })
    ));
    assert_eq!(
        db.get_trigger(dep).expect("get").expect("exists").status,
        TriggerStatus::Done
    );
    assert!(matches!(
        db.set_trigger_status(9999, TriggerStatus::Done, t(40)),
        Err(StoreError::NotFound {
            what: "trigger",
            ..
        })
    ));
    // The attempt must exist for the link: foreign keys are on.
    let err = db
        .attach_attempt(dep + 1, "no-such-attempt", t(40))
        .expect_err("fk");
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
}

#[test]
fn terminal_trigger_sql_matches_is_terminal() {
    for status in TriggerStatus::ALL {
        let quoted = format!("'{status}'");
        assert_eq!(
            triggers::TERMINAL_TRIGGER_SQL.contains(&quoted),
            status.is_terminal(),
            "{status}"
        );
    }
}

#[test]
fn enums_round_trip_through_text() {
    for kind in TriggerKind::ALL {
        assert_eq!(kind.as_str().parse::<TriggerKind>(), Ok(*kind));
        assert_eq!(
            serde_json::to_string(kind).expect("ser"),
            format!("\"{kind}\"")
        );
    }
    for state in AttemptState::ALL {
        assert_eq!(state.as_str().parse::<AttemptState>(), Ok(*state));
    }
    assert_eq!(TriggerKind::NeverRotated.as_str(), "never_rotated");
    let err = "sometime".parse::<TriggerKind>().expect_err("unknown");
    assert_eq!(err.to_string(), "unknown trigger kind \"sometime\"");
}

#[test]
fn unknown_stored_value_is_an_error_not_a_default() {
    let store = Store::open_in_memory().expect("open");
    let id = store
        .db()
        .insert_trigger(&trigger("db/main", TriggerKind::Manual, None))
        .expect("insert")
        .id;
    store
        .conn
        .execute("UPDATE triggers SET kind = 'bogus' WHERE id = ?1", [id])
        .expect("corrupt");
    let err = store.db().get_trigger(id).expect_err("bogus kind");
    assert!(
        err.to_string().contains("unknown trigger kind \"bogus\""),
        "{err}"
    );
    assert!(err.to_string().contains("look for hand edits"), "{err}");
}

// ---- attempts ----

#[test]
fn attempt_moves_through_states_and_finishes() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    db.create_attempt(&attempt("a1", "db/main", None))
        .expect("create");
    let a = db.get_attempt("a1").expect("get").expect("exists");
    assert_eq!(a.state, AttemptState::Preflight);
    assert_eq!(a.rotate_calls, 0);
    assert_eq!(a.finished_at, None);
    assert_eq!(a.client_request_token, "token-a1");

    db.update_attempt(
        "a1",
        &AttemptUpdate::to(AttemptState::RotateRequested),
        t(1),
    )
    .expect("requested");
    db.update_attempt(
        "a1",
        &AttemptUpdate::to(AttemptState::Monitoring).new_version("v-new"),
        t(2),
    )
    .expect("monitoring");
    db.update_attempt(
        "a1",
        &AttemptUpdate::to(AttemptState::Validating).error("transient: throttled"),
        t(3),
    )
    .expect("validating");
    let a = db.get_attempt("a1").expect("get").expect("exists");
    assert_eq!(a.state, AttemptState::Validating);
    assert_eq!(
        a.new_version.as_deref(),
        Some("v-new"),
        "kept from earlier step"
    );
    assert_eq!(a.previous_version.as_deref(), Some("v-old"));
    assert_eq!(a.updated_at, t(3));
    assert_eq!(a.finished_at, None);

    db.update_attempt("a1", &AttemptUpdate::to(AttemptState::Succeeded), t(4))
        .expect("succeeded");
    let a = db.get_attempt("a1").expect("get").expect("exists");
    assert_eq!(a.state, AttemptState::Succeeded);
    assert_eq!(a.finished_at, Some(t(4)));
    assert_eq!(a.error.as_deref(), Some("transient: throttled"));
}

#[test]
fn finished_attempt_refuses_changes() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    for state in AttemptState::ALL.iter().filter(|s| s.is_terminal()) {
        let id = format!("a-{state}");
        db.create_attempt(&attempt(&id, "db/main", None))
            .expect("create");
        db.update_attempt(&id, &AttemptUpdate::to(*state).error("why"), t(5))
            .expect("finish");

        let err = db
            .update_attempt(&id, &AttemptUpdate::to(AttemptState::Monitoring), t(6))
            .expect_err("terminal");
        assert!(
            matches!(&err, StoreError::AttemptFinished { id: got, state: s } if *got == id && s == state),
            "{err:?}"
        );
        assert!(err.to_string().contains("start a new attempt"), "{err}");
        assert!(matches!(
            db.increment_rotate_calls(&id, t(6)),
            Err(StoreError::AttemptFinished { .. })
        ));
        let a = db.get_attempt(&id).expect("get").expect("exists");
        assert_eq!(a.state, *state, "unchanged");
        assert_eq!(a.finished_at, Some(t(5)));
        assert_eq!(a.updated_at, t(5));
    }
    assert!(matches!(
        db.update_attempt("nope", &AttemptUpdate::to(AttemptState::Failed), t(1)),
        Err(StoreError::NotFound {
            what: "rotation attempt",
            ..
        })
    ));
}

#[test]
fn unfinished_attempts_and_rotate_calls() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    for (id, start) in [("b", 2), ("a", 1), ("c", 3)] {
        let mut a = attempt(id, &format!("s-{id}"), None);
        a.started_at = t(start);
        db.create_attempt(&a).expect("create");
    }
    db.update_attempt("c", &AttemptUpdate::to(AttemptState::Skipped), t(4))
        .expect("skip");
    db.update_attempt("b", &AttemptUpdate::to(AttemptState::Monitoring), t(4))
        .expect("monitor");

    let ids: Vec<String> = db
        .unfinished_attempts()
        .expect("list")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a", "b"], "oldest first, terminal excluded");

    assert_eq!(db.increment_rotate_calls("a", t(5)).expect("inc"), 1);
    assert_eq!(db.increment_rotate_calls("a", t(6)).expect("inc"), 2);
    let a = db.get_attempt("a").expect("get").expect("exists");
    assert_eq!(a.rotate_calls, 2);
    assert_eq!(a.updated_at, t(6));
    assert!(matches!(
        db.increment_rotate_calls("zzz", t(6)),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn attempt_ids_and_tokens_are_unique() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    db.create_attempt(&attempt("a1", "db/main", None))
        .expect("create");
    assert!(db.create_attempt(&attempt("a1", "db/main", None)).is_err());
    let mut same_token = attempt("a2", "db/main", None);
    same_token.client_request_token = "token-a1".to_owned();
    let err = db.create_attempt(&same_token).expect_err("token reused");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    assert!(
        err.to_string()
            .ends_with("; this is a bug in rotationd unless the database was edited by hand"),
        "{err}"
    );
    assert_eq!(db.get_attempt("a2").expect("get"), None);
}

#[test]
fn last_finished_attempt_per_secret() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let finish = |id: &str, secret: &str, state: AttemptState, at: i64| {
        db.create_attempt(&attempt(id, secret, None))
            .expect("create");
        if state.is_terminal() {
            db.update_attempt(id, &AttemptUpdate::to(state), t(at))
                .expect("finish");
        }
    };
    finish("m1", "db/main", AttemptState::Succeeded, 10);
    finish("m2", "db/main", AttemptState::Failed, 20);
    finish("m3", "db/main", AttemptState::Monitoring, 0);
    finish("o1", "db/other", AttemptState::Stuck, 15);

    let last = db
        .last_finished_attempt("db/main")
        .expect("last")
        .expect("some");
    assert_eq!(last.id, "m2");
    let ok = db
        .last_succeeded_attempt("db/main")
        .expect("ok")
        .expect("some");
    assert_eq!(ok.id, "m1");
    assert_eq!(db.last_succeeded_attempt("db/other").expect("ok"), None);
    assert_eq!(db.last_finished_attempt("db/none").expect("none"), None);

    let per_secret: Vec<(String, String)> = db
        .last_finished_attempts()
        .expect("all")
        .into_iter()
        .map(|a| (a.secret, a.id))
        .collect();
    assert_eq!(
        per_secret,
        [
            ("db/main".to_owned(), "m2".to_owned()),
            ("db/other".to_owned(), "o1".to_owned())
        ]
    );

    let recent: Vec<String> = db
        .recent_attempts(Some("db/main"), 2)
        .expect("recent")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(recent, ["m3", "m2"], "same start time: newest insert first");
    assert_eq!(db.recent_attempts(None, 10).expect("recent").len(), 4);
}

// ---- audit ----

#[test]
fn audit_appends_lists_and_filters() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let entry = |at: i64, secret: Option<&str>, action: Action| NewAuditEntry {
        at: t(at),
        actor: "cli:alice".to_owned(),
        action,
        secret: secret.map(str::to_owned),
        ticket: Some("SEC-9".to_owned()),
        reason: Some("offboarding".to_owned()),
        outcome: Outcome::Ok,
        detail: Some(json!({ "version": "v2" })),
    };
    let first = db
        .append_audit(&entry(1, Some("db/main"), Action::Rotate))
        .expect("append");
    db.append_audit(&entry(2, None, Action::EventRejected))
        .expect("append");
    let third = db
        .append_audit(&entry(3, Some("db/main"), Action::Rollback))
        .expect("append");

    let all = db.audit_entries(None, 10).expect("list");
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["rollback", "event_rejected", "rotate"]
    );
    let main = db.audit_entries(Some("db/main"), 1).expect("list");
    assert_eq!(main.len(), 1);
    assert_eq!(main[0].id, third);
    assert_eq!(main[0].detail, Some(json!({ "version": "v2" })));
    assert_eq!(main[0].at, t(3));
    assert!(first < third);
}

#[test]
fn audit_rows_cannot_be_updated_or_deleted() {
    let store = Store::open_in_memory().expect("open");
    let id = store
        .db()
        .append_audit(&NewAuditEntry {
            at: t(1),
            actor: "rotationd".to_owned(),
            action: Action::Rotate,
            secret: Some("db/main".to_owned()),
            ticket: None,
            reason: None,
            outcome: Outcome::Ok,
            detail: None,
        })
        .expect("append");

    let err = store
        .conn
        .execute("UPDATE audit SET outcome = 'failed' WHERE id = ?1", [id])
        .expect_err("update must abort");
    assert!(
        err.to_string().contains("audit log is append-only"),
        "{err}"
    );
    let err = store
        .conn
        .execute("DELETE FROM audit", [])
        .expect_err("delete must abort");
    assert!(
        err.to_string().contains("audit log is append-only"),
        "{err}"
    );

    // The rewrite the adversarial review found: REPLACE deletes the old row without
    // firing the delete trigger (recursive_triggers is off), then inserts a new one.
    for sql in [
        "INSERT OR REPLACE INTO audit (id, at, actor, action, outcome) VALUES (?1, 1, 'mallory', 'rotate', 'failed')",
        "REPLACE INTO audit (id, at, actor, action, outcome) VALUES (?1, 1, 'mallory', 'rotate', 'failed')",
        "INSERT INTO audit (id, at, actor, action, outcome) VALUES (?1, 1, 'mallory', 'rotate', 'failed') \
         ON CONFLICT (id) DO UPDATE SET outcome = 'failed'",
    ] {
        let err = store
            .conn
            .execute(sql, [id])
            .expect_err("a rewrite must abort");
        assert!(
            err.to_string().contains("audit log is append-only"),
            "{sql}: {err}"
        );
    }

    let rows = store.db().audit_entries(None, 10).expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "ok");
    assert_eq!(rows[0].actor, "rotationd");
    assert_eq!(rows[0].detail, None);
    assert!(store.db().verify_audit().expect("verify").broken.is_none());
}

// ---- seen events and cursors ----

#[test]
fn seen_events_mark_once_and_prune() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    assert!(!db.is_event_seen("e1").expect("seen?"));
    assert!(db.mark_event_seen("e1", "cloudtrail", t(10)).expect("mark"));
    assert!(!db.mark_event_seen("e1", "sqs", t(20)).expect("again"));
    assert!(db.is_event_seen("e1").expect("seen?"));
    assert!(db.mark_event_seen("e2", "sqs", t(30)).expect("mark"));

    assert_eq!(db.prune_seen_events(t(30)).expect("prune"), 1);
    assert!(!db.is_event_seen("e1").expect("pruned"));
    assert!(db.is_event_seen("e2").expect("kept"));
}

#[test]
fn cursors_get_and_set() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    assert_eq!(db.get_cursor("cloudtrail").expect("get"), None);
    db.set_cursor("cloudtrail", "2025-01-01T00:00:00Z", t(1))
        .expect("set");
    db.set_cursor("cloudtrail", "2025-01-01T00:05:00Z", t(2))
        .expect("set");
    assert_eq!(
        db.get_cursor("cloudtrail").expect("get"),
        Some(Cursor {
            name: "cloudtrail".to_owned(),
            value: "2025-01-01T00:05:00Z".to_owned(),
            updated_at: t(2),
        })
    );
    assert_eq!(db.get_cursor("other").expect("get"), None);
}

// ---- alerts ----

#[test]
fn outbox_due_failed_backoff_and_published() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let a = db.enqueue_alert(&alert("overdue:a"), t(0)).expect("a");
    let b = db.enqueue_alert(&alert("overdue:b"), t(1)).expect("b");
    assert_eq!(db.unpublished_alert_count().expect("count"), 2);
    assert!(
        db.due_alerts(t(-1), 10).expect("due").is_empty(),
        "not yet created"
    );

    let due = db.due_alerts(t(1), 10).expect("due");
    assert_eq!(
        due.iter().map(|x| x.id).collect::<Vec<_>>(),
        [a, b],
        "oldest first"
    );
    assert_eq!(
        due[0].message,
        json!({ "secret": "overdue:a", "days_overdue": 3 })
    );
    assert_eq!(due[0].attributes["severity"], "warning");
    assert_eq!(db.due_alerts(t(1), 1).expect("due").len(), 1, "limit");

    db.mark_alert_failed(a, "sns: throttled", t(60))
        .expect("fail");
    let due = db.due_alerts(t(59), 10).expect("due");
    assert_eq!(
        due.iter().map(|x| x.id).collect::<Vec<_>>(),
        [b],
        "a backs off"
    );
    let due = db.due_alerts(t(60), 10).expect("due");
    let retried = due.iter().find(|x| x.id == a).expect("a due again");
    assert_eq!(retried.attempts, 1);
    assert_eq!(retried.last_error.as_deref(), Some("sns: throttled"));
    assert_eq!(retried.next_attempt_at, t(60));

    db.mark_alert_published(a, t(61)).expect("published");
    db.mark_alert_published(a, t(99))
        .expect("again is harmless");
    db.mark_alert_failed(a, "late failure", t(200))
        .expect("ignored after publish");
    assert_eq!(db.unpublished_alert_count().expect("count"), 1);
    assert_eq!(
        db.due_alerts(t(1000), 10)
            .expect("due")
            .iter()
            .map(|x| x.id)
            .collect::<Vec<_>>(),
        [b]
    );
    let published: (i64, u32, Option<String>) = store
        .conn
        .query_row(
            "SELECT published_at, attempts, last_error FROM alert_outbox WHERE id = ?1",
            [a],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row");
    assert_eq!(
        published,
        (t(61).timestamp(), 1, Some("sns: throttled".to_owned()))
    );

    assert!(matches!(
        db.mark_alert_published(12345, t(1)),
        Err(StoreError::NotFound { what: "alert", .. })
    ));
    assert_eq!(db.prune_published_alerts(t(61)).expect("prune"), 0);
    assert_eq!(db.prune_published_alerts(t(62)).expect("prune"), 1);
    assert_eq!(db.unpublished_alert_count().expect("count"), 1);
}

#[test]
fn deduped_alerts_hold_back_within_interval_and_realert_after() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let hour = TimeDelta::hours(1);
    let key = "overdue:db/main";

    let first = db
        .enqueue_alert_deduped(&alert(key), t(0), hour)
        .expect("first");
    assert!(first.is_some());
    assert_eq!(
        db.enqueue_alert_deduped(&alert(key), t(3599), hour)
            .expect("repeat"),
        None
    );
    assert!(
        db.enqueue_alert_deduped(&alert("overdue:db/other"), t(10), hour)
            .expect("other key")
            .is_some()
    );
    assert_eq!(db.unpublished_alert_count().expect("count"), 2);

    let again = db
        .enqueue_alert_deduped(&alert(key), t(3600), hour)
        .expect("re-alert");
    assert!(again.is_some() && again != first);
    assert_eq!(db.unpublished_alert_count().expect("count"), 3);
    assert!(!db.should_alert(key, t(3601), hour).expect("should"));
    // A clock stepped back must not silence the key.
    assert!(db.should_alert(key, t(100), hour).expect("should"));

    assert!(db.should_alert("fresh", t(0), hour).expect("never alerted"));
    db.record_alerted("fresh", t(0)).expect("record");
    assert!(!db.should_alert("fresh", t(1), hour).expect("just alerted"));
    assert!(
        db.should_alert("fresh", t(3600), hour)
            .expect("interval over")
    );
}

#[test]
fn deduped_alert_failure_rolls_back_dedupe_record() {
    let store = Store::open_in_memory().expect("open");
    // Make the outbox insert fail after the dedupe check passed.
    store
        .conn
        .execute_batch(
            "CREATE TEMP TRIGGER break_outbox BEFORE INSERT ON alert_outbox \
             BEGIN SELECT RAISE(ABORT, 'outbox broken'); END;",
        )
        .expect("break");
    let err = store
        .db()
        .enqueue_alert_deduped(&alert("k"), t(0), TimeDelta::hours(1))
        .expect_err("insert fails");
    assert!(err.to_string().contains("outbox broken"), "{err}");
    assert!(store.conn.is_autocommit(), "transaction closed");
    // Not recorded as alerted, so the next try is not suppressed.
    assert!(
        store
            .db()
            .should_alert("k", t(1), TimeDelta::hours(1))
            .expect("should")
    );

    store
        .conn
        .execute_batch("DROP TRIGGER break_outbox")
        .expect("fix");
    assert!(
        store
            .db()
            .enqueue_alert_deduped(&alert("k"), t(1), TimeDelta::hours(1))
            .expect("works")
            .is_some()
    );
}

// ---- transactions ----

#[test]
fn transaction_commits_all_or_nothing() {
    let mut store = Store::open_in_memory().expect("open");

    let err: StoreResult<()> = store.transaction(|db| {
        db.insert_trigger(&trigger(
            "db/main",
            TriggerKind::Departure,
            Some("event:e1:db/main"),
        ))?;
        db.mark_event_seen("e1", "cloudtrail", t(0))?;
        db.enqueue_alert_deduped(&alert("departure:db/main"), t(0), TimeDelta::hours(1))?;
        Err(StoreError::NotFound {
            what: "test abort",
            id: "x".to_owned(),
        })
    });
    assert!(err.is_err());
    assert!(store.db().pending_triggers().expect("list").is_empty());
    assert!(!store.db().is_event_seen("e1").expect("seen?"));
    assert_eq!(store.db().unpublished_alert_count().expect("count"), 0);
    assert!(
        store
            .db()
            .should_alert("departure:db/main", t(1), TimeDelta::hours(1))
            .expect("should")
    );

    let id = store
        .transaction(|db| {
            let ins = db.insert_trigger(&trigger(
                "db/main",
                TriggerKind::Departure,
                Some("event:e1:db/main"),
            ))?;
            db.mark_event_seen("e1", "cloudtrail", t(0))?;
            db.enqueue_alert_deduped(&alert("departure:db/main"), t(0), TimeDelta::hours(1))?;
            db.append_audit(&NewAuditEntry {
                at: t(0),
                actor: "rotationd".to_owned(),
                action: Action::Trigger,
                secret: Some("db/main".to_owned()),
                ticket: None,
                reason: Some("departure".to_owned()),
                outcome: Outcome::Ok,
                detail: None,
            })?;
            Ok::<_, StoreError>(ins.id)
        })
        .expect("commit");
    assert!(store.db().get_trigger(id).expect("get").is_some());
    assert!(store.db().is_event_seen("e1").expect("seen?"));
    assert_eq!(store.db().unpublished_alert_count().expect("count"), 1);
    // The trigger and the alert record themselves in the audit log, with the caller's entry.
    let actions: Vec<String> = store
        .db()
        .audit_entries(None, 10)
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.len(), 3, "{actions:?}");
    for a in ["trigger", "alert"] {
        assert!(actions.iter().any(|x| x == a), "{actions:?}");
    }
}

#[test]
fn transaction_accepts_caller_error_types() {
    #[derive(Debug)]
    enum AppError {
        Store,
        Refused,
    }
    impl From<StoreError> for AppError {
        fn from(_: StoreError) -> Self {
            AppError::Store
        }
    }
    let mut store = Store::open_in_memory().expect("open");
    let out: Result<(), AppError> = store.transaction(|db| {
        db.set_cursor("c", "1", t(0))?;
        Err(AppError::Refused)
    });
    assert!(matches!(out, Err(AppError::Refused)));
    assert_eq!(store.db().get_cursor("c").expect("get"), None);
}

// ---- async handle ----

#[test]
fn store_handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<StoreHandle>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_serves_concurrent_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = StoreHandle::open(dir.path().join("state.db")).expect("open");

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle
                    .call(move |store| {
                        store.transaction(|db| {
                            let key = format!("event:e{i}:db/s{i}");
                            let ins = db.insert_trigger(&trigger(
                                &format!("db/s{i}"),
                                TriggerKind::Departure,
                                Some(&key),
                            ))?;
                            db.mark_event_seen(&format!("e{i}"), "sqs", t(i))?;
                            Ok(ins)
                        })
                    })
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let ins = task.await.expect("task").expect("insert");
        assert!(ins.new);
        ids.push(ins.id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50);

    let (pending, seen) = handle
        .call(|store| {
            let db = store.db();
            let seen = (0..50)
                .map(|i| db.is_event_seen(&format!("e{i}")))
                .collect::<StoreResult<Vec<bool>>>()?;
            Ok((db.pending_triggers()?, seen))
        })
        .await
        .expect("read");
    assert_eq!(pending.len(), 50);
    assert!(seen.iter().all(|s| *s));
}

#[tokio::test]
async fn handle_open_errors_surface_synchronously() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 5)
            .expect("set");
    }
    assert!(matches!(
        StoreHandle::open(&path),
        Err(StoreError::SchemaTooNew { .. })
    ));
}

#[tokio::test]
async fn handle_survives_a_panicking_closure() {
    let handle = StoreHandle::spawn(Store::open_in_memory().expect("open")).expect("spawn");
    let err = handle
        .call(|store| -> StoreResult<()> {
            store.transaction(|db| {
                db.set_cursor("c", "half-done", t(0))?;
                panic!("boom");
            })
        })
        .await
        .expect_err("panicked");
    assert!(
        matches!(&err, StoreError::Panicked(msg) if msg == "boom"),
        "{err:?}"
    );

    let cursor = handle
        .call(|store| store.db().get_cursor("c"))
        .await
        .expect("store still serves");
    assert_eq!(cursor, None, "the panicking transaction rolled back");
}

#[tokio::test]
async fn handle_is_closed_after_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let handle = StoreHandle::open(&path).expect("open");
    let other = handle.clone();
    handle
        .call(|store| store.db().set_cursor("c", "1", t(0)))
        .await
        .expect("write");

    handle.shutdown().await.expect("shutdown");

    let err = other
        .call(|store| store.db().get_cursor("c"))
        .await
        .expect_err("closed");
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the state store has shut down; restart rotationd"
    );
    assert!(matches!(handle.shutdown().await, Err(StoreError::Closed)));

    // Shutdown closed the database cleanly: the write is there and the WAL
    // was checkpointed away by the last connection closing.
    assert!(!dir.path().join("state.db-wal").exists());
    let store = Store::open(&path).expect("reopen");
    assert_eq!(
        store.db().get_cursor("c").expect("get").map(|c| c.value),
        Some("1".to_owned())
    );
}

#[test]
fn a_finished_attempt_with_a_running_trigger_is_found_for_completion() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let id = db
        .insert_trigger(&trigger("db/main", TriggerKind::Departure, None))
        .expect("insert")
        .id;
    db.create_attempt(&attempt("a1", "db/main", Some(id)))
        .expect("attempt");
    db.attach_attempt(id, "a1", t(20)).expect("attach");
    // Running: not finished, nothing to complete.
    assert!(
        db.finished_attempts_with_open_triggers()
            .expect("list")
            .is_empty()
    );
    // The attempt's terminal state commits, then the process dies before its triggers.
    db.update_attempt("a1", &AttemptUpdate::to(AttemptState::Succeeded), t(30))
        .expect("succeed");
    let found = db.finished_attempts_with_open_triggers().expect("list");
    assert_eq!(
        found.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a1"]
    );
    db.finish_triggers_of_attempt("a1", TriggerStatus::Done, t(31))
        .expect("finish");
    assert!(
        db.finished_attempts_with_open_triggers()
            .expect("list")
            .is_empty()
    );
}

#[cfg(unix)]
#[test]
fn the_state_file_and_the_directories_it_creates_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new/sub/state.db");
    let store = Store::open(&path).expect("open");
    store
        .db()
        .insert_trigger(&trigger("db/main", TriggerKind::Scheduled, None))
        .expect("write");
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    assert_eq!(mode(&dir.path().join("new/sub")), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("new/sub/state.db-wal");
    assert!(wal.exists(), "WAL mode writes a -wal file");
    assert_eq!(mode(&wal), 0o600, "SQLite copies the main file's mode");
    drop(store);

    // A file made wider by hand (or by an older version) is narrowed on open; an existing
    // directory is left alone.
    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").expect("create");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let before = mode(dir.path());
    Store::open(&old).expect("open");
    assert_eq!(mode(&old), 0o600);
    assert_eq!(mode(dir.path()), before);
}

#[test]
fn the_watch_starts_with_the_success_and_moves_once() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .db()
        .create_attempt(&attempt("w1", "s", None))
        .unwrap();
    store
        .db()
        .update_attempt(
            "w1",
            &AttemptUpdate::to(AttemptState::RotateRequested)
                .watch_plan(r#"{"dependents":["api"]}"#),
            t(1),
        )
        .unwrap();
    assert!(store.db().watched_attempts().unwrap().is_empty());
    // A JSON column rejects anything else.
    assert!(
        store
            .db()
            .update_attempt(
                "w1",
                &AttemptUpdate::to(AttemptState::Monitoring).watch_plan("{not json"),
                t(2)
            )
            .is_err()
    );
    store
        .db()
        .update_attempt(
            "w1",
            &AttemptUpdate::to(AttemptState::Succeeded).watch_until(t(900)),
            t(3),
        )
        .unwrap();
    let a = store.db().get_attempt("w1").unwrap().unwrap();
    assert_eq!(a.state, AttemptState::Succeeded);
    assert_eq!(a.validation, Some(Validation::Watching));
    assert_eq!(a.watch_until, Some(t(900)));
    assert_eq!(a.watch_plan.as_deref(), Some(r#"{"dependents":["api"]}"#));
    assert_eq!(store.db().watched_attempts().unwrap().len(), 1);
    // The watch moves after the attempt's terminal state, and only from where it is.
    let moved = store.transaction(|db| {
        db.update_validation(
            "w1",
            &[Validation::Watching],
            Validation::RollingBack,
            Some(r#"{"n":1}"#),
            t(4),
        )
    });
    assert!(moved.unwrap());
    assert!(
        !store
            .db()
            .update_validation(
                "w1",
                &[Validation::Watching],
                Validation::Validated,
                None,
                t(5)
            )
            .unwrap(),
        "a second pass cannot move it again"
    );
    assert!(
        store
            .db()
            .update_validation(
                "w1",
                &[Validation::RollingBack],
                Validation::ValidatedUnhealthy,
                None,
                t(6)
            )
            .unwrap()
    );
    let a = store.db().get_attempt("w1").unwrap().unwrap();
    assert_eq!(a.validation, Some(Validation::ValidatedUnhealthy));
    assert_eq!(
        a.watch_evidence.as_deref(),
        Some(r#"{"n":1}"#),
        "evidence kept when none is given"
    );
    assert!(store.db().watched_attempts().unwrap().is_empty());
}

// ---- audit hash chain ----

fn audit_entry(at: i64, secret: &str, reason: &str) -> NewAuditEntry {
    NewAuditEntry {
        at: t(at),
        actor: "cli:alice".to_owned(),
        action: Action::Rotate,
        secret: Some(secret.to_owned()),
        ticket: Some("CHG-1".to_owned()),
        reason: Some(reason.to_owned()),
        outcome: Outcome::Ok,
        detail: Some(json!({ "v": at })),
    }
}

/// Appends `n` entries (at 1..=n, reasons "r1".."rn") and returns their ids.
fn append_chain(store: &Store, n: i64) -> Vec<i64> {
    (1..=n)
        .map(|i| {
            store
                .db()
                .append_audit(&audit_entry(i, "db/main", &format!("r{i}")))
                .expect("append")
        })
        .collect()
}

/// Every row's (id, prev_hash, hash), in id order.
fn audit_links(store: &Store) -> Vec<(i64, Option<String>, Option<String>)> {
    let mut stmt = store
        .conn
        .prepare("SELECT id, prev_hash, hash FROM audit ORDER BY id")
        .expect("prepare");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn audit_hash_is_sha256_of_the_documented_encoding() {
    // Computed outside rotationd (Python: json.dumps(row, separators=(",", ":"),
    // ensure_ascii=False), hashlib.sha256), so a change of the encoding, which would
    // make every stored log fail verification, cannot pass unnoticed.
    let store = Store::open_in_memory().expect("open");
    let id = store
        .db()
        .append_audit(&NewAuditEntry {
            at: t(0),
            actor: "cli:alice".to_owned(),
            action: Action::Rotate,
            secret: Some("db/main".to_owned()),
            ticket: Some("CHG-1".to_owned()),
            reason: Some(r#"needs "quotes", commas and ünïcode"#.to_owned()),
            outcome: Outcome::Ok,
            detail: Some(json!({ "v": 2 })),
        })
        .expect("append");
    assert_eq!(id, 1);
    let entry = &store.db().audit_entries(None, 1).expect("list")[0];
    assert_eq!(entry.prev_hash.as_deref(), Some(GENESIS_HASH));
    assert_eq!(
        entry.hash.as_deref(),
        Some("34c617f0dd81865c2d176623bfbe67417c4fa02738d9247d466912c4b61273a3")
    );
}

#[test]
fn audit_chain_of_appends_verifies() {
    let mut store = Store::open_in_memory().expect("open");
    let empty = store.db().verify_audit().expect("verify");
    assert_eq!(
        empty,
        AuditVerification {
            checked: 0,
            last_hash: GENESIS_HASH.to_owned(),
            broken: None,
            from_checkpoint: None,
        }
    );

    append_chain(&store, 3);
    // Inside a caller's transaction, as the daemon appends; and one that rolls back
    // must leave no trace in the chain.
    store
        .transaction(|db| db.append_audit(&audit_entry(4, "db/other", "in a transaction")))
        .expect("commit");
    let rolled_back: StoreResult<()> = store.transaction(|db| {
        db.append_audit(&audit_entry(5, "db/other", "rolled back"))?;
        Err(StoreError::Closed)
    });
    assert!(rolled_back.is_err());
    append_chain(&store, 1);

    let links = audit_links(&store);
    assert_eq!(links.len(), 5);
    assert_eq!(links[0].1.as_deref(), Some(GENESIS_HASH));
    for pair in links.windows(2) {
        assert!(pair[0].2.is_some(), "row {} has a hash", pair[0].0);
        assert_eq!(
            pair[1].1, pair[0].2,
            "row {} links to row {}",
            pair[1].0, pair[0].0
        );
    }
    let hashes: std::collections::HashSet<_> = links.iter().map(|l| l.2.clone()).collect();
    assert_eq!(hashes.len(), 5, "every row has its own hash");

    let v = store.db().verify_audit().expect("verify");
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.checked, 5);
    assert_eq!(Some(v.last_hash), links[4].2.clone());
}

#[test]
fn audit_edited_row_is_detected_at_that_row() {
    let store = Store::open_in_memory().expect("open");
    let ids = append_chain(&store, 3);
    store
        .conn
        .execute_batch("DROP TRIGGER audit_no_update")
        .expect("drop trigger");
    store
        .conn
        .execute(
            "UPDATE audit SET reason = 'nothing to see' WHERE id = ?1",
            [ids[1]],
        )
        .expect("tamper");

    let v = store.db().verify_audit().expect("verify");
    assert_eq!(
        v.broken,
        Some(AuditBreak {
            id: ids[1],
            fault: AuditFault::HashMismatch
        })
    );
    assert_eq!(v.checked, 1, "the row before it is intact");
    assert_eq!(
        v.broken.unwrap().fault.to_string(),
        "hash mismatch: row edited"
    );
}

#[test]
fn audit_edited_row_with_a_recomputed_hash_breaks_the_next_link() {
    let store = Store::open_in_memory().expect("open");
    let ids = append_chain(&store, 3);
    // A forger who edits row 2 and gives it the hash that matches its new content:
    // the same rows written to a scratch store yield exactly that hash.
    let scratch = Store::open_in_memory().expect("open");
    append_chain(&scratch, 1);
    scratch
        .db()
        .append_audit(&audit_entry(2, "db/main", "forged"))
        .expect("append");
    let forged_hash = audit_links(&scratch)[1].2.clone();
    assert_eq!(audit_links(&scratch)[1].1, audit_links(&store)[1].1);
    store
        .conn
        .execute_batch("DROP TRIGGER audit_no_update")
        .expect("drop trigger");
    store
        .conn
        .execute(
            "UPDATE audit SET reason = 'forged', hash = ?1 WHERE id = ?2",
            rusqlite::params![forged_hash, ids[1]],
        )
        .expect("tamper");

    let v = store.db().verify_audit().expect("verify");
    assert_eq!(
        v.broken,
        Some(AuditBreak {
            id: ids[2],
            fault: AuditFault::ChainBroken
        }),
        "row 2 is self-consistent, but row 3 still names its old hash"
    );
    assert_eq!(v.checked, 2);
}

#[test]
fn audit_removed_row_breaks_the_chain_at_the_next_row() {
    let store = Store::open_in_memory().expect("open");
    let ids = append_chain(&store, 4);
    store
        .conn
        .execute_batch("DROP TRIGGER audit_no_delete")
        .expect("drop trigger");
    store
        .conn
        .execute("DELETE FROM audit WHERE id = ?1", [ids[1]])
        .expect("tamper");

    let v = store.db().verify_audit().expect("verify");
    assert_eq!(
        v.broken,
        Some(AuditBreak {
            id: ids[2],
            fault: AuditFault::ChainBroken
        })
    );
    assert_eq!(v.checked, 1);
    assert_eq!(
        AuditFault::ChainBroken.to_string(),
        "chain broken: a row before it was removed or reordered"
    );

    // The first row gone: the new first row does not start at the genesis hash.
    store
        .conn
        .execute("DELETE FROM audit WHERE id = ?1", [ids[0]])
        .expect("tamper");
    let v = store.db().verify_audit().expect("verify");
    assert_eq!(
        v.broken,
        Some(AuditBreak {
            id: ids[2],
            fault: AuditFault::ChainBroken
        })
    );
    assert_eq!(v.checked, 0);
}

#[test]
fn audit_value_of_another_type_is_a_mismatch_not_a_read_error() {
    let store = Store::open_in_memory().expect("open");
    let ids = append_chain(&store, 2);
    store
        .conn
        .execute_batch("DROP TRIGGER audit_no_update")
        .expect("drop trigger");
    store
        .conn
        .execute(
            "UPDATE audit SET actor = CAST('cli:alice' AS BLOB) WHERE id = ?1",
            [ids[1]],
        )
        .expect("tamper");
    let v = store
        .db()
        .verify_audit()
        .expect("verify reads any stored type");
    assert_eq!(
        v.broken,
        Some(AuditBreak {
            id: ids[1],
            fault: AuditFault::HashMismatch
        })
    );
}

#[test]
fn audit_row_without_hash_in_the_middle_is_reported_not_filled_in() {
    let store = Store::open_in_memory().expect("open");
    let ids = append_chain(&store, 3);
    store
        .conn
        .execute_batch("DROP TRIGGER audit_no_update")
        .expect("drop trigger");
    store
        .conn
        .execute("UPDATE audit SET hash = NULL WHERE id = ?1", [ids[1]])
        .expect("tamper");
    // What Store::open runs: only the unhashed tail is chained.
    store.db().chain_unhashed_audit().expect("chain");

    let v = store.db().verify_audit().expect("verify");
    assert_eq!(
        v.broken,
        Some(AuditBreak {
            id: ids[1],
            fault: AuditFault::MissingHash
        })
    );
    assert_eq!(audit_links(&store)[1].2, None);
}

#[test]
fn audit_trigger_allows_setting_the_hash_once_and_nothing_else() {
    let store = Store::open_in_memory().expect("open");
    let ids = append_chain(&store, 1);
    let refused = |sql: &str, id: i64| {
        let err = store.conn.execute(sql, [id]).expect_err(sql);
        assert!(
            err.to_string().contains("audit log is append-only"),
            "{sql}: {err}"
        );
    };
    refused("UPDATE audit SET hash = 'x' WHERE id = ?1", ids[0]);
    refused("UPDATE audit SET prev_hash = 'x' WHERE id = ?1", ids[0]);

    // A row without a hash, as written before schema 4.
    store
        .conn
        .execute(
            "INSERT INTO audit (at, actor, action, outcome) VALUES (0, 'rotationd', 'rotate', 'ok')",
            [],
        )
        .expect("insert");
    let raw = store.conn.last_insert_rowid();
    refused(
        "UPDATE audit SET hash = 'h', prev_hash = 'p', outcome = 'failed' WHERE id = ?1",
        raw,
    );
    refused("UPDATE audit SET hash = 'h' WHERE id = ?1", raw);
    store
        .conn
        .execute(
            "UPDATE audit SET hash = 'h', prev_hash = 'p' WHERE id = ?1",
            [raw],
        )
        .expect("the one allowed update");
    refused(
        "UPDATE audit SET hash = 'h2', prev_hash = 'p' WHERE id = ?1",
        raw,
    );
    refused("UPDATE audit SET hash = NULL WHERE id = ?1", raw);
}

#[test]
fn audit_rows_written_before_schema_4_are_chained_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        // A database as rotationd with schema 3 left it.
        let conn = Connection::open(&path).expect("create");
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.pragma_update(None, "user_version", 3)
            .expect("version");
        for (at, reason) in [(1, "old one"), (2, "old two")] {
            conn.execute(
                "INSERT INTO audit (at, actor, action, secret, ticket, reason, outcome, detail) \
                 VALUES (?1, 'cli:bob', 'rollback', 'db/main', 'INC-7', ?2, 'ok', '{\"from\":\"v1\"}')",
                rusqlite::params![t(at).timestamp(), reason],
            )
            .expect("old row");
        }
    }

    let store = Store::open(&path).expect("open migrates and chains");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let links = audit_links(&store);
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].1.as_deref(), Some(GENESIS_HASH));
    assert_eq!(links[1].1, links[0].2);
    let v = store.db().verify_audit().expect("verify");
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.checked, 2);

    // New rows continue the same chain, and a reopen changes nothing.
    store
        .db()
        .append_audit(&audit_entry(3, "db/main", "new"))
        .expect("append");
    let before = audit_links(&store);
    assert_eq!(before[2].1, before[1].2);
    store.close().expect("close");
    let store = Store::open(&path).expect("reopen");
    assert_eq!(audit_links(&store), before);
    let v = store.db().verify_audit().expect("verify");
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.checked, 3);
    assert_eq!(Some(v.last_hash), before[2].2.clone());
}

#[test]
fn audit_log_filters_by_secret_and_since_in_id_order() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    // Appended out of time order: the listing follows the log (ids), not `at`.
    let a = db
        .append_audit(&audit_entry(5, "db/a", "a5"))
        .expect("append");
    let b = db
        .append_audit(&audit_entry(1, "db/b", "b1"))
        .expect("append");
    let c = db
        .append_audit(&audit_entry(9, "db/a", "a9"))
        .expect("append");
    let d = db
        .append_audit(&audit_entry(3, "db/a", "a3"))
        .expect("append");

    let ids = |filter: AuditFilter| {
        let mut seen = Vec::new();
        db.audit_log(&filter, |e| {
            seen.push(e.id);
            Ok::<_, StoreError>(())
        })
        .expect("list");
        seen
    };
    assert_eq!(ids(AuditFilter::default()), [a, b, c, d]);
    assert_eq!(
        ids(AuditFilter {
            secret: Some("db/a".into()),
            since: None
        }),
        [a, c, d]
    );
    assert_eq!(
        ids(AuditFilter {
            secret: None,
            since: Some(t(5))
        }),
        [a, c]
    );
    assert_eq!(
        ids(AuditFilter {
            secret: Some("db/b".into()),
            since: Some(t(2))
        }),
        Vec::<i64>::new()
    );

    // The callback's error stops the walk and comes back unchanged.
    let mut calls = 0;
    let err = db
        .audit_log(&AuditFilter::default(), |_| {
            calls += 1;
            Err(StoreError::Closed)
        })
        .expect_err("stopped");
    assert!(matches!(err, StoreError::Closed));
    assert_eq!(calls, 1);
}

/// A replica's handle whose closure lets another replica (`rival`) write first on each
/// of its first `losses` runs: a lost race for the log position, `losses` times.
async fn race(losses: usize) -> (StoreResult<()>, usize, Store) {
    use crate::store::journal::Journal;
    use crate::store::shared_log::MemoryLog;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let log = Arc::new(MemoryLog::new());
    let rival = Arc::new(Mutex::new(
        Store::open_replicated(Journal::new(log.clone(), "rival")).expect("rival"),
    ));
    let handle =
        StoreHandle::spawn(Store::open_replicated(Journal::new(log.clone(), "me")).expect("me"))
            .expect("spawn");
    let runs = Arc::new(AtomicUsize::new(0));
    let (r, c) = (rival.clone(), runs.clone());
    let out = handle
        .call(move |store| {
            let run = c.fetch_add(1, Ordering::SeqCst);
            if run < losses {
                r.lock()
                    .unwrap()
                    .job(|s| s.db().set_cursor("rival", &run.to_string(), t(0)))
                    .expect("rival writes");
            }
            store.db().set_cursor("mine", "done", t(1))
        })
        .await;
    handle.shutdown().await.expect("shutdown");
    let check = Store::open_replicated(Journal::new(log, "check")).expect("check");
    (out, runs.load(Ordering::SeqCst), check)
}

#[tokio::test]
async fn a_job_that_lost_the_race_for_the_log_runs_again_on_the_caught_up_replica() {
    let (out, runs, check) = race(2).await;
    out.expect("the third run lands");
    assert_eq!(runs, 3);
    let db = check.db();
    assert_eq!(db.get_cursor("rival").unwrap().unwrap().value, "1");
    assert_eq!(db.get_cursor("mine").unwrap().unwrap().value, "done");
}

#[tokio::test]
async fn a_job_that_keeps_losing_the_race_gives_up_with_the_reason() {
    let tries = super::STALE_RETRIES as usize + 1;
    let (out, runs, check) = race(usize::MAX).await;
    let err = out.expect_err("never lands");
    assert!(matches!(err, StoreError::Stale { .. }), "{err:?}");
    assert!(err.to_string().contains("another instance wrote"), "{err}");
    assert_eq!(runs, tries);
    assert_eq!(check.db().get_cursor("mine").unwrap(), None);
}

#[test]
fn an_alert_is_claimed_by_one_publisher_and_due_again_if_it_dies() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let id = db
        .enqueue_alert(&alert("rotation_failed:a"), t(0))
        .expect("a");
    // Two processes read the same due row; only the first claim wins.
    assert!(db.claim_alert(id, t(1), t(61)).expect("claim"));
    assert!(!db.claim_alert(id, t(1), t(61)).expect("second claim"));
    assert!(db.due_alerts(t(60), 10).expect("due").is_empty());
    // The claimant died without publishing: due again when the claim runs out.
    assert_eq!(db.due_alerts(t(61), 10).expect("due").len(), 1);
    assert!(db.claim_alert(id, t(61), t(121)).expect("reclaim"));
    db.mark_alert_published(id, t(62)).expect("published");
    assert!(
        !db.claim_alert(id, t(200), t(260))
            .expect("published is never claimed")
    );
}

// ---- the remembered Identity Center directory ----

#[test]
fn remembered_users_outlive_the_directory_and_are_written_only_when_changed() {
    let store = Store::open_in_memory().expect("open");
    let db = store.db();
    let user = |id: &str, name: &str, groups: &[&str]| KnownUser {
        user_id: id.to_owned(),
        user_name: name.to_owned(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        seen_at: t(0),
    };
    let first = [user("u-1", "ivan", &["dba"]), user("u-2", "erin", &[])];
    assert_eq!(db.remember_users(&first, t(0)).unwrap(), 2);
    // The same directory an hour later: nothing to write.
    assert_eq!(db.remember_users(&first, t(3600)).unwrap(), 0);
    // ivan leaves dba; erin is gone from the directory (not in the list): kept as seen.
    assert_eq!(
        db.remember_users(&[user("u-1", "ivan", &[])], t(7200))
            .unwrap(),
        1
    );
    let known = db.known_users().unwrap();
    assert_eq!(
        known,
        vec![
            KnownUser {
                seen_at: t(7200),
                ..user("u-1", "ivan", &[])
            },
            user("u-2", "erin", &[]),
        ]
    );
    // A day later the unchanged row is refreshed, so pruning keeps who is still there.
    assert_eq!(
        db.remember_users(&[user("u-1", "ivan", &[])], t(7200 + 86_401))
            .unwrap(),
        1
    );
    let pruned = db
        .prune(t(7200 + 86_401), TimeDelta::hours(20), TimeDelta::days(400))
        .unwrap();
    assert_eq!(pruned.directory_users, 1, "erin, unseen for 20 hours");
    let left: Vec<String> = db
        .known_users()
        .unwrap()
        .into_iter()
        .map(|u| u.user_name)
        .collect();
    assert_eq!(left, vec!["ivan"]);
}
