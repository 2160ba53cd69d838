//! The DynamoDB state backend (`src/store/journal.rs` over `src/store/dynamodb.rs`)
//! against moto's DynamoDB.
//!
//! - The same store behaviour (triggers and their dedupe, an attempt's life, the hash-
//!   chained audit, deduplicated alerts, seen events, cursors, pruning) runs on the SQLite
//!   backend, on a DynamoDB replica and on a replica over the in-memory `SharedLog`; all
//!   end in the same rows, and a second replica built from the DynamoDB log alone has
//!   them too (and an intact audit chain).
//! - Two replicas that decide on the same state: the second append is refused (the
//!   conditional write on the log position), its local changes are rolled back, and after
//!   catching up it sees the first one's write.
//! - A snapshot: a new replica loads it and replays only the entries after it, and ends
//!   in the same rows.
//! - A leader's writes carry the lease: once another instance has taken the lease over,
//!   the old leader's write is refused by the fence and leaves nothing behind.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::moto;
use rotationd::store::audit::{Action, Outcome};
use rotationd::store::dynamodb::{Lease, Role, ensure_table};
use rotationd::store::journal::Journal;
use rotationd::store::shared_log::MemoryLog;
use rotationd::store::{
    AttemptState, AttemptUpdate, NewAlert, NewAttempt, NewAuditEntry, NewTrigger, Store,
    StoreError, TriggerKind, TriggerStatus,
};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
}

fn trigger(secret: &str, key: &str) -> NewTrigger {
    NewTrigger {
        secret: secret.into(),
        kind: TriggerKind::Departure,
        dedupe_key: Some(key.into()),
        ticket: Some("INC-1".into()),
        reason: "departure of bob".into(),
        actor: "rotationd".into(),
        created_at: t(0),
        not_before: None,
        deadline: Some(t(86_400)),
    }
}

fn audit(action: Action, at: i64) -> NewAuditEntry {
    NewAuditEntry {
        at: t(at),
        actor: "rotationd".into(),
        action,
        secret: Some("prod/db".into()),
        ticket: Some("INC-1".into()),
        reason: None,
        outcome: Outcome::Ok,
        detail: Some(serde_json::json!({ "at": at })),
    }
}

fn alert(key: &str) -> NewAlert {
    NewAlert {
        dedupe_key: key.into(),
        kind: "rotation_failed".into(),
        severity: "P1".into(),
        subject: format!("{key} failed"),
        message: serde_json::json!({ "secret": key }),
        attributes: BTreeMap::from([("severity".to_string(), "P1".to_string())]),
    }
}

/// One behaviour scenario, as a sequence of store jobs (each its own log entry on the
/// DynamoDB backend), with its assertions. Runs unchanged on both backends.
fn scenario(store: &mut Store) {
    // A trigger is recorded once per dedupe key.
    let first = store
        .job(|s| s.transaction(|db| db.insert_trigger(&trigger("prod/db", "dep:bob:prod/db"))))
        .unwrap();
    let again = store
        .job(|s| {
            s.db()
                .insert_trigger(&trigger("prod/db", "dep:bob:prod/db"))
        })
        .unwrap();
    assert!(first.new && !again.new && first.id == again.id);
    let other = store
        .job(|s| {
            s.db()
                .insert_trigger(&trigger("prod/api", "dep:bob:prod/api"))
        })
        .unwrap();
    assert_eq!(store.job(|s| s.db().pending_triggers()).unwrap().len(), 2);

    // An attempt serving the first trigger, through its states, in one transaction each.
    store
        .job(|s| {
            s.transaction(|db| {
                db.create_attempt(&NewAttempt {
                    id: "a1".into(),
                    trigger_id: Some(first.id),
                    secret: "prod/db".into(),
                    secret_arn: Some("arn:aws:secretsmanager:us-east-1:1:secret:prod/db".into()),
                    trigger_kind: TriggerKind::Departure,
                    ticket: Some("INC-1".into()),
                    client_request_token: "rotationd-a1".into(),
                    previous_version: None,
                    started_at: t(10),
                })?;
                db.attach_attempt(first.id, "a1", t(10))?;
                db.append_audit(&audit(Action::RotateRequested, 10))?;
                Ok::<_, StoreError>(())
            })
        })
        .unwrap();
    assert_eq!(
        store
            .job(|s| s.db().increment_rotate_calls("a1", t(11)))
            .unwrap(),
        1
    );
    for (state, at) in [
        (AttemptState::RotateRequested, 12),
        (AttemptState::Monitoring, 13),
        (AttemptState::Succeeded, 14),
    ] {
        store
            .job(|s| {
                s.db()
                    .update_attempt("a1", &AttemptUpdate::to(state).new_version("v2"), t(at))
            })
            .unwrap();
    }
    // A finished attempt never changes again: refused, on both backends.
    let refused = store.job(|s| {
        s.db()
            .update_attempt("a1", &AttemptUpdate::to(AttemptState::Failed), t(15))
    });
    assert!(
        matches!(refused, Err(StoreError::AttemptFinished { .. })),
        "{refused:?}"
    );
    store
        .job(|s| {
            s.transaction(|db| {
                db.finish_triggers_of_attempt("a1", TriggerStatus::Done, t(16))?;
                db.append_audit(&audit(Action::Rotate, 16))?;
                Ok::<_, StoreError>(())
            })
        })
        .unwrap();
    let a = store.job(|s| s.db().get_attempt("a1")).unwrap().unwrap();
    assert_eq!(a.state, AttemptState::Succeeded);
    assert_eq!(a.rotate_calls, 1);
    assert_eq!(a.finished_at, Some(t(14)));
    let pending = store.job(|s| s.db().pending_triggers()).unwrap();
    assert_eq!(
        pending.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![other.id]
    );

    // A transaction that fails leaves nothing, and the next one goes on.
    let failed: Result<(), StoreError> = store.job(|s| {
        s.transaction(|db| {
            db.append_audit(&audit(Action::StormGuard, 17))?;
            db.update_attempt("missing", &AttemptUpdate::to(AttemptState::Failed), t(17))?;
            Ok(())
        })
    });
    assert!(failed.is_err());

    // Alerts deduplicated within the realert interval; the outbox drains.
    let realert = TimeDelta::hours(4);
    let queued = store
        .job(|s| {
            s.db()
                .enqueue_alert_deduped(&alert("prod/db"), t(20), realert)
        })
        .unwrap();
    let held = store
        .job(|s| {
            s.db()
                .enqueue_alert_deduped(&alert("prod/db"), t(21), realert)
        })
        .unwrap();
    assert!(queued.is_some() && held.is_none());
    let due = store.job(|s| s.db().due_alerts(t(30), 10)).unwrap();
    assert_eq!(due.len(), 1);
    let id = due[0].id;
    store
        .job(|s| s.db().mark_alert_published(id, t(31)))
        .unwrap();
    assert_eq!(store.job(|s| s.db().unpublished_alert_count()).unwrap(), 0);

    // Events once; cursors set, moved and deleted; old events pruned.
    assert!(
        store
            .job(|s| s.db().mark_event_seen("ev-1", "sqs", t(40)))
            .unwrap()
    );
    assert!(
        !store
            .job(|s| s.db().mark_event_seen("ev-1", "sqs", t(41)))
            .unwrap()
    );
    assert!(
        store
            .job(|s| s.db().mark_event_seen("ev-2", "cloudtrail", t(90)))
            .unwrap()
    );
    store
        .job(|s| {
            s.db()
                .set_cursor("cloudtrail", "2026-01-01T00:00:00Z", t(42))
        })
        .unwrap();
    store
        .job(|s| {
            s.db()
                .set_cursor("cloudtrail", "2026-01-01T00:05:00Z", t(43))
        })
        .unwrap();
    store
        .job(|s| s.db().set_cursor("gone", "x", t(44)))
        .unwrap();
    store.job(|s| s.db().delete_cursor("gone")).unwrap();
    assert_eq!(store.job(|s| s.db().prune_seen_events(t(60))).unwrap(), 1);
    let cursor = store
        .job(|s| s.db().get_cursor("cloudtrail"))
        .unwrap()
        .unwrap();
    assert_eq!(cursor.value, "2026-01-01T00:05:00Z");
    assert!(store.job(|s| s.db().get_cursor("gone")).unwrap().is_none());

    // The audit chain holds.
    let v = store.job(|s| s.db().verify_audit()).unwrap();
    assert!(v.is_intact(), "{v:?}");
    let actions = store
        .job(|s| s.db().audit_entries(None, 100))
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect::<Vec<_>>();
    assert!(
        !actions.iter().any(|a| a == Action::StormGuard.as_str()),
        "{actions:?}"
    );
    assert_eq!(v.checked, actions.len() as u64, "{actions:?}");
}

struct Dynamo {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Dynamo {
    fn new(test: &str) -> Dynamo {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let m = moto::shared();
        let client = aws_sdk_dynamodb::Client::new(&moto::sdk_config(&m.endpoint()));
        let table = moto::unique_name(&format!("state-{test}")).replace('/', "-");
        runtime.block_on(ensure_table(&client, &table)).unwrap();
        Dynamo {
            runtime,
            client,
            table,
        }
    }

    fn journal(&self, writer: &str) -> Journal {
        Journal::dynamodb(
            self.client.clone(),
            &self.table,
            self.runtime.handle().clone(),
            writer,
        )
    }

    fn replica(&self, writer: &str) -> Store {
        Store::open_replicated(self.journal(writer)).unwrap()
    }
}

#[test]
fn the_same_behaviour_on_sqlite_and_on_dynamodb_and_a_new_replica_agrees() {
    let mut sqlite = Store::open_in_memory().unwrap();
    scenario(&mut sqlite);

    let d = Dynamo::new("behaviour");
    let mut a = d.replica("host-a");
    scenario(&mut a);
    assert!(
        a.journal().unwrap().seq() > 10,
        "one log entry per writing job"
    );

    let want = sqlite.dump().unwrap();
    assert_eq!(a.dump().unwrap(), want, "the replica that wrote");
    // The same scenario over the in-memory log (the unit tests' backend) agrees too.
    let memory = std::sync::Arc::new(MemoryLog::new());
    let mut m = Store::open_replicated(Journal::new(memory.clone(), "host-m")).unwrap();
    scenario(&mut m);
    assert_eq!(m.dump().unwrap(), want, "a replica over the in-memory log");
    assert_eq!(memory.len() as u64, a.journal().unwrap().seq());
    // A replica built from the log alone.
    let b = d.replica("host-b");
    assert_eq!(b.dump().unwrap(), want, "a replica rebuilt from the log");
    assert_eq!(b.journal().unwrap().seq(), a.journal().unwrap().seq());
    assert!(b.db().verify_audit().unwrap().is_intact());
}

#[test]
fn a_write_decided_on_stale_state_is_refused_and_rolled_back() {
    let d = Dynamo::new("conflict");
    let mut a = d.replica("host-a");
    let mut b = d.replica("host-b");
    a.job(|s| s.db().set_cursor("c", "from-a-1", t(1))).unwrap();

    // b's job starts on the current log, then a writes while b's job is running.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        started_rx.recv().unwrap();
        a.job(|s| s.db().set_cursor("c", "from-a-2", t(2))).unwrap();
        go_tx.send(()).unwrap();
        a
    });
    b.catch_up().unwrap();
    let result = b.job(|s| {
        assert_eq!(s.db().get_cursor("c")?.unwrap().value, "from-a-1");
        started_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        s.db().set_cursor("c", "from-b", t(3))
    });
    let a = writer.join().unwrap();
    match result {
        Err(e @ StoreError::Stale { .. }) => {
            assert!(
                e.to_string().contains("another instance wrote entry 2"),
                "{e}"
            );
        }
        other => panic!("b's stale write must be refused: {other:?}"),
    }
    // Rolled back locally; the next job catches up and sees a's write.
    let seen = b.job(|s| s.db().get_cursor("c")).unwrap().unwrap();
    assert_eq!(seen.value, "from-a-2");
    assert_eq!(a.dump().unwrap(), b.dump().unwrap());
    // And b can write again, on top of it.
    b.job(|s| s.db().set_cursor("c", "from-b", t(4))).unwrap();
    assert_eq!(d.replica("host-c").dump().unwrap(), b.dump().unwrap());
}

#[test]
fn a_deposed_leaders_write_is_refused_by_the_fence() {
    let d = Dynamo::new("fence");
    let lease_for = Duration::from_secs(2);
    let mut lease_a = Lease::new(d.client.clone(), &d.table, "rotationd", "host-a", lease_for);
    let mut lease_b = Lease::new(d.client.clone(), &d.table, "rotationd", "host-b", lease_for);
    let now = || Utc::now().timestamp_millis();
    assert!(matches!(
        d.runtime.block_on(lease_a.tick(now())).unwrap(),
        Role::Leader { .. }
    ));
    let mut a = d.replica("host-a");
    a.journal().unwrap().set_fence(lease_a.journal_fence());
    a.job(|s| s.db().set_cursor("owner", "host-a", t(1)))
        .unwrap();

    // a is paused past its lease; b takes over and writes with its own fence.
    std::thread::sleep(lease_for + Duration::from_millis(500));
    assert!(matches!(
        d.runtime.block_on(lease_b.tick(now())).unwrap(),
        Role::Leader { .. }
    ));
    let mut b = d.replica("host-b");
    b.journal().unwrap().set_fence(lease_b.journal_fence());
    b.job(|s| s.db().set_cursor("owner", "host-b", t(2)))
        .unwrap();

    // a wakes up still believing it leads: catching up is fine, writing is not.
    let refused = a.job(|s| s.db().set_cursor("owner", "host-a again", t(3)));
    match refused {
        Err(StoreError::Journal {
            retryable, message, ..
        }) => {
            assert!(!retryable, "{message}");
            assert!(
                message.contains("no longer holds the leader lease"),
                "{message}"
            );
        }
        other => panic!("the deposed leader's write must be refused: {other:?}"),
    }
    let fresh = d.replica("host-c");
    assert_eq!(
        fresh.db().get_cursor("owner").unwrap().unwrap().value,
        "host-b"
    );
    assert_eq!(
        a.job(|s| s.db().get_cursor("owner"))
            .unwrap()
            .unwrap()
            .value,
        "host-b"
    );
}

#[test]
fn a_new_replica_starts_from_the_latest_snapshot_and_replays_only_the_tail() {
    let d = Dynamo::new("snapshot");
    let mut a = d.replica("host-a");
    scenario(&mut a);
    let at = a
        .job(|s| s.write_snapshot())
        .unwrap()
        .expect("a snapshot position");
    assert_eq!(at, a.journal().unwrap().seq());
    for i in 0..5 {
        a.job(|s| s.db().set_cursor(&format!("after-{i}"), "x", t(100 + i)))
            .unwrap();
    }
    let b = d.replica("host-b");
    let j = b.journal().unwrap();
    assert_eq!(j.snapshot_seq(), at, "b started from the snapshot");
    assert_eq!(
        j.replayed_at_open(),
        5,
        "and replayed only the entries after it"
    );
    assert_eq!(j.seq(), at + 5);
    assert_eq!(b.dump().unwrap(), a.dump().unwrap());
    assert!(b.db().verify_audit().unwrap().is_intact());
    // A stale snapshot never replaces a newer one.
    let older = d.replica("host-c");
    a.job(|s| s.db().set_cursor("later", "y", t(200))).unwrap();
    let newer = a.job(|s| s.write_snapshot()).unwrap().unwrap();
    older.write_snapshot().unwrap();
    let d2 = d.replica("host-d");
    assert_eq!(d2.journal().unwrap().snapshot_seq(), newer);
    assert_eq!(d2.dump().unwrap(), a.dump().unwrap());
}

#[test]
fn an_entry_and_a_snapshot_larger_than_an_item_are_split_and_read_whole() {
    let d = Dynamo::new("chunks");
    let mut a = d.replica("host-a");
    // Three cursors of 250 KB in one job: about 750 KB of JSON, three log items (300 KB
    // each at most) in one transaction. Multi-byte characters straddle the cuts.
    let big = |c: char| c.to_string().repeat(125_000);
    a.job(|s| {
        s.transaction(|db| {
            db.set_cursor("big-1", &big('é'), t(1))?;
            db.set_cursor("big-2", &big('ü'), t(1))?;
            db.set_cursor("big-3", &big('ß'), t(1))
        })
    })
    .unwrap();
    let items = d
        .runtime
        .block_on(
            d.client
                .query()
                .table_name(&d.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(
                    ":pk",
                    aws_sdk_dynamodb::types::AttributeValue::S("log".into()),
                )
                .send(),
        )
        .unwrap()
        .count;
    assert_eq!(items, 3, "one entry in three chunks");
    let b = d.replica("host-b");
    assert_eq!(b.journal().unwrap().seq(), 1);
    assert_eq!(b.dump().unwrap(), a.dump().unwrap());

    let at = a.job(|s| s.write_snapshot()).unwrap().unwrap();
    let c = d.replica("host-c");
    let j = c.journal().unwrap();
    assert_eq!((j.snapshot_seq(), j.replayed_at_open()), (at, 0));
    assert_eq!(c.db().get_cursor("big-2").unwrap().unwrap().value, big('ü'));
}
