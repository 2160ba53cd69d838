//! One trigger never swallows another (G2 item 5), end to end on moto with the real binary.
//!
//! A departure, a compromise or an approved request is satisfied only by a rotation that
//! completes after it: merged into the attempt of a planned window, it leads that attempt
//! (`engine::lead`), so none of the rules that apply to planned windows alone (the window
//! already served, the CHG ticket) can end it without a rotation.
//!
//! The planned trigger of these tests was recorded without a ticket, as the reconciler
//! does while `require_change_ticket` is false; the config now requires one. Before the
//! fix the attempt was the planned trigger's: it failed its CHG check and took the
//! departure (and an approved request) down with it, with no rotation.

mod common;

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use common::config::{Body, secret};
use common::events::*;
use common::moto::{self, recording};
use common::rotationd::{Env, rows, stderr, terminate};
use serde_json::json;

/// A planned trigger for a window that opened just now (after the secret's last rotation,
/// so "already rotated in this window" does not apply), recorded without a ticket.
fn insert_ticketless_window(env: &Env, name: &str, arn: &str, start: DateTime<Utc>) {
    // The state database, as any command creates it.
    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    env.db()
        .execute(
            "INSERT INTO triggers (secret, kind, dedupe_key, reason, actor, created_at, not_before, deadline, updated_at) \
             VALUES (?1, 'scheduled', ?2, 'planned window', 'rotationd', ?3, ?4, ?5, ?3)",
            rusqlite::params![
                name,
                format!("plan:{arn}:{}", start.timestamp()),
                Utc::now().timestamp() - 1,
                start.timestamp(),
                (start + chrono::Duration::hours(2)).timestamp()
            ],
        )
        .unwrap();
}

/// The triggers of `name`: kind, status, the attempt's trigger kind and state.
fn served(env: &Env, name: &str) -> Vec<String> {
    let db = env.db();
    let mut stmt = db
        .prepare(
            "SELECT t.kind || ' ' || t.status || ' ' || COALESCE(a.trigger_kind, '-') || ' ' || COALESCE(a.state, '-') \
             FROM triggers t LEFT JOIN attempts a ON a.id = t.attempt_id WHERE t.secret = ?1 ORDER BY t.id",
        )
        .unwrap();
    stmt.query_map([name], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A ticketless planned window and an unplanned trigger of `kind` pending together; the
/// planned one is reached first (its window ends first). The unplanned one must rotate
/// the secret, once, and the planned one is served by the same rotation.
async fn merged_with_a_planned_window(test: &str, kind: &str) {
    recording();
    let name = moto::unique_name(&format!("trg/{test}"));
    let body = Body::new().change_tickets_required().with(
        secret(&name)
            .custodians(["ivan"])
            .schedule("0 3 1 1 *")
            .window("2h")
            .ticket("CHG-7"),
    );
    let env = Env::new(test, &body.render()).await;
    env.rotatable_secret(&name).await;
    let arn = arn_of(&env, &name).await;
    let now = Utc::now();
    insert_ticketless_window(&env, &name, &arn, now);
    // The unplanned trigger as its event or request records it: due now, deadline later
    // than the window's end (a compromise's is its receipt; it leads by kind anyway).
    let deadline = if kind == "compromise" {
        now + chrono::Duration::hours(3)
    } else {
        now + chrono::Duration::hours(24)
    };
    env.db()
        .execute(
            "INSERT INTO triggers (secret, kind, dedupe_key, reason, actor, created_at, not_before, deadline, updated_at) \
             VALUES (?1, ?2, ?3, 'unplanned', 'event:test', ?4, ?4, ?5, ?4)",
            rusqlite::params![
                name,
                kind,
                format!("event:{test}:{arn}"),
                now.timestamp(),
                deadline.timestamp()
            ],
        )
        .unwrap();
    let mut daemon = env.daemon(&[]);
    let done = env
        .eventually(Duration::from_secs(60), || {
            let s = served(&env, &name);
            (s.len() == 2
                && s.iter()
                    .all(|t| !t.contains("pending") && !t.contains("running")))
            .then_some(s)
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let triggers = served(&env, &name);
    assert!(done.is_some(), "not settled: {triggers:#?}");
    assert_eq!(
        triggers,
        vec![
            format!("scheduled done {kind} succeeded"),
            format!("{kind} done {kind} succeeded"),
        ],
        "the {kind} was swallowed by the planned window's attempt"
    );
    assert_eq!(env.rotations_by_rotationd(&name), 1);
}

#[tokio::test]
async fn a_departure_merged_into_a_planned_window_leads_its_rotation() {
    merged_with_a_planned_window("trg-departure", "departure").await;
}

#[tokio::test]
async fn a_compromise_merged_into_a_planned_window_leads_its_rotation() {
    merged_with_a_planned_window("trg-compromise", "compromise").await;
}

/// A CommandBridge request, as EventBridge delivers it to the queue.
fn request(detail_type: &str, detail: serde_json::Value) -> String {
    json!({
        "version": "0",
        "id": format!("env-{}", uuid::Uuid::new_v4()),
        "detail-type": detail_type,
        "source": "commandbridge",
        "account": ACCOUNT,
        "time": Utc::now().to_rfc3339(),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

/// An approved planned request waits for the secret's next window, as does the planned
/// trigger of that window; the planned one comes first (same deadline, recorded earlier).
/// The request must rotate the secret and be answered `completed`.
#[tokio::test]
async fn an_approved_request_merged_into_a_planned_window_leads_its_rotation() {
    recording();
    let name = moto::unique_name("trg/request");
    // The window opens at the start of a minute at least 40 s away: time for the request
    // to be asked for and approved while both triggers wait for it.
    let start = {
        let t = Utc::now() + chrono::Duration::seconds(100);
        t.with_second(0).unwrap().with_nanosecond(0).unwrap()
    };
    let body = Body::new().change_tickets_required().with(
        secret(&name)
            .schedule(&format!("{} {} * * *", start.minute(), start.hour()))
            .window("2h")
            .ticket("CHG-7"),
    );
    let env = Env::new("trg-request", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "trg-request").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.append_config(
        r#"
[requests]
levels = { "lead" = "L3" }
"#,
    );
    env.rotatable_secret(&name).await;
    let arn = arn_of(&env, &name).await;
    insert_ticketless_window(&env, &name, &arn, start);
    let mut daemon = env.daemon(&[]);
    send(
        &env,
        &queue_url,
        &request(
            "Rotation Requested",
            json!({
                "request_id": "r-merge", "secret": name, "ticket": "CHG-9",
                "reason": "rotate with the window", "requester": "junior"
            }),
        ),
    )
    .await;
    let asked = env
        .eventually(Duration::from_secs(30), || {
            (count(
                &env,
                "SELECT COUNT(*) FROM requests WHERE id = 'r-merge' AND state = 'awaiting_approval'",
            ) == 1)
                .then_some(())
        })
        .await;
    assert!(asked.is_some(), "the request was not recorded");
    send(
        &env,
        &queue_url,
        &request(
            "Rotation Approved",
            json!({ "request_id": "r-merge", "approver": "lead" }),
        ),
    )
    .await;
    let ended = env
        .eventually(Duration::from_secs(150), || {
            let state: String = env
                .db()
                .query_row("SELECT state FROM requests WHERE id = 'r-merge'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            matches!(state.as_str(), "completed" | "failed").then_some(state)
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let triggers = served(&env, &name);
    assert!(
        Utc::now() >= start,
        "the window never opened during the test"
    );
    assert_eq!(
        ended.as_deref(),
        Some("completed"),
        "the approved request was swallowed by the planned window's attempt: {triggers:#?}\n{}",
        rows(
            &env.db(),
            "SELECT action || ' ' || outcome || ' ' || COALESCE(reason, '') FROM audit ORDER BY id"
        )
        .join("\n")
    );
    assert_eq!(
        triggers,
        vec![
            "scheduled done manual succeeded".to_string(),
            "manual done manual succeeded".to_string(),
        ]
    );
    assert_eq!(env.rotations_by_rotationd(&name), 1);
    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
