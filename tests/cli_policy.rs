//! One policy on every path: the CLI under `[requests]`, end to end on moto with the real
//! binary. Each caller is a set of AWS credentials (an IAM user's access key, a role's
//! session); moto's STS says whose they are, as AWS would, and `$USER` says nothing.
//!
//! - An L1's `rotate` files a request (its id on stdout, exit 0) and rotates nothing; the
//!   requester cannot approve it, nor can an L2; another L3's `approve` makes the daemon
//!   rotate it; the requester may withdraw their own.
//! - An L2's `rollback` is refused and Security is told (`rollback_escalated`); an L3's
//!   rollback tells the dependents to reload, and Security (`rollback_completed`).
//! - A version retired by an emergency rotation or a compromise does not go back, not by
//!   an L3, nor by an L3's request; `--force` with an INC ticket does, and pages Security.
//! - `rotate --emergency` pages Security (`breach_suspected`) and the dependents' notice
//!   leaves before RotateSecret.
//! - The storm guard pauses departures but never an L3's emergency request, counted apart.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::config::{Body, dependent, secret, selector};
use common::events::{
    ACCOUNT, ALLOW_ACCOUNT, add_events, arn_of, count, iam_delete_user, queue_and_bus, send,
};
use common::iam::{self, Keys};
use common::moto::{self, recording};
use common::rotationd::{Env, rows, stderr, terminate};
use serde_json::{Value, json};

/// A policy environment: `[events]` (which `[requests]` needs), `[requests] levels` with
/// an L3 user, an L3 role with a path and an L2 role, and those identities.
struct Policy {
    env: Env,
    queue_url: String,
    /// Not listed anywhere: L1. Under a path, which an IAM user's ARN carries.
    junior: Keys,
    /// L3 by its user ARN.
    lead: Keys,
    /// L3 through a session of the role `team/<name>` (STS drops the path).
    chief: Keys,
    /// Another session of the same role: the same principal as `chief`.
    chief_again: Keys,
    /// L2 through a role session.
    mid: Keys,
}

async fn policy(test: &str, body: &str, events_extra: &str) -> Policy {
    let env = Env::new(test, body).await;
    let m = env.moto;
    let (queue_url, bus) = queue_and_bus(&env, test).await;
    add_events(&env, &queue_url, &bus, events_extra);
    let junior = iam::user(m, &moto::unique_name(&format!("{test}-junior")), "/ops/");
    let lead = iam::user(m, &moto::unique_name(&format!("{test}-lead")), "/");
    let chief_role = moto::unique_name(&format!("{test}-Chiefs"));
    let mid_role = moto::unique_name(&format!("{test}-mids"));
    let chief = iam::session(
        m,
        &format!("arn:aws:iam::{ACCOUNT}:role/team/{chief_role}"),
        "chief",
    )
    .await;
    let chief_again = iam::session(
        m,
        &format!("arn:aws:iam::{ACCOUNT}:role/team/{chief_role}"),
        "chief-2",
    )
    .await;
    let mid = iam::session(m, &format!("arn:aws:iam::{ACCOUNT}:role/{mid_role}"), "mid").await;
    // The role keyed with its path and a name in another case: STS's session ARN has
    // neither, and still maps to it.
    env.append_config(&format!(
        r#"
[requests]
levels = {{ "{lead}" = "L3", "arn:aws:iam::{ACCOUNT}:role/team/{upper}" = "L3", "arn:aws:iam::{ACCOUNT}:role/{mid_role}" = "L2", "boss" = "L3" }}
"#,
        lead = lead.arn,
        upper = chief_role.to_uppercase(),
    ));
    Policy {
        env,
        queue_url,
        junior,
        lead,
        chief,
        chief_again,
        mid,
    }
}

/// Every SNS message on `queue` until one of each `kinds` arrived (or `timeout`).
async fn until_kinds(env: &Env, queue: &str, kinds: &[&str], timeout: Duration) -> Vec<Value> {
    let deadline = std::time::Instant::now() + timeout;
    let mut all: Vec<Value> = Vec::new();
    while std::time::Instant::now() < deadline {
        all.extend(
            env.messages(queue, Duration::from_secs(1))
                .await
                .into_iter()
                .map(|(_, m)| m),
        );
        if kinds.iter().all(|k| all.iter().any(|m| m["kind"] == *k)) {
            break;
        }
    }
    all
}

fn of_kind<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["kind"] == kind).collect()
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn request_state(env: &Env, id: &str) -> Option<String> {
    env.db()
        .query_row("SELECT state FROM requests WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .ok()
}

#[tokio::test]
async fn an_l1_rotate_files_a_request_that_only_another_l3_approves() {
    recording();
    let prefix = moto::unique_name("pol/approve/");
    let p = policy(
        "pol-approve",
        &Body::new().with(selector(&prefix)).render(),
        ALLOW_ACCOUNT,
    )
    .await;
    let name = format!("{prefix}db");
    p.env.rotatable_secret(&name).await;
    let (mut daemon, log) = p.env.daemon_ready(&[]).await;

    // junior runs it as `$USER=lead`: the AWS identity decides, and junior is L1.
    let lead_name = p.lead.arn.rsplit('/').next().unwrap().to_string();
    let o = p
        .env
        .command_as(
            &p.junior,
            &[
                "rotate",
                "--secret",
                &name,
                "--ticket",
                "INC-31",
                "--reason",
                "token in a log",
                "--emergency",
            ],
        )
        .env("USER", &lead_name)
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = out(&o).trim().to_string();
    assert!(
        id.starts_with("cli-"),
        "stdout: {id:?}, stderr: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("(L1)"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("rotationd approve {id}")));
    assert_eq!(p.env.rotations_by_rotationd(&name), 0, "an L1 rotated");
    assert_eq!(
        request_state(&p.env, &id).as_deref(),
        Some("awaiting_approval")
    );
    let requester: String = p
        .env
        .db()
        .query_row(
            "SELECT requester || ' ' || level FROM requests WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(requester, format!("{} L1", p.junior.arn));
    // The approvers' notice (the Security topic: no approvers_topic_arn) and, for an
    // emergency, Security's page, both sent by the CLI itself.
    let sec = until_kinds(
        &p.env,
        &p.env.security_queue_url,
        &["approval_requested", "breach_suspected"],
        Duration::from_secs(20),
    )
    .await;
    let asked = of_kind(&sec, "approval_requested");
    assert_eq!(asked.len(), 1, "{sec:#?}");
    assert_eq!(asked[0]["details"]["request_id"], id.as_str());
    assert_eq!(asked[0]["details"]["requester"], p.junior.arn.as_str());
    let breach = of_kind(&sec, "breach_suspected");
    assert_eq!(breach.len(), 1, "{sec:#?}");
    assert_eq!(breach[0]["severity"], "P1");
    assert_eq!(breach[0]["ticket"], "INC-31");

    // Listed as open.
    let o = p.env.cli(&["requests"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line = out(&o)
        .lines()
        .find(|l| l.contains(&id))
        .map(str::to_string);
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("awaiting_approval") && l.contains("rotate!")),
        "{}",
        out(&o)
    );
    let o = p.env.cli(&["requests", "--format", "json"]);
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );

    // The requester, then an L2: refused, and nothing rotates.
    let o = p.env.cli_as(&p.junior, &["approve", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("self-approval refused"),
        "{}",
        stderr(&o)
    );
    let o = p.env.cli_as(&p.mid, &["approve", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("only L3 may approve"), "{}", stderr(&o));
    assert_eq!(
        request_state(&p.env, &id).as_deref(),
        Some("awaiting_approval")
    );

    // An L3 session (its role keyed with a path and another case) approves: the daemon
    // rotates, once.
    let o = p.env.cli_as(&p.chief, &["approve", &id, "--comment", "go"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let done = p
        .env
        .eventually(Duration::from_secs(60), || {
            (request_state(&p.env, &id).as_deref() == Some("completed")).then_some(())
        })
        .await;
    assert!(
        done.is_some(),
        "{:?}\n{}",
        request_state(&p.env, &id),
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(p.env.rotations_by_rotationd(&name), 1);
    let audit = rows(
        &p.env.db(),
        "SELECT action || ' ' || outcome || ' ' || actor FROM audit \
         WHERE action IN ('rotation_requested', 'rotation_approved', 'rotate_request') ORDER BY id",
    );
    assert_eq!(
        audit,
        vec![
            format!("rotation_requested awaiting_approval {}", p.junior.arn),
            format!("rotation_approved refused {}", p.junior.arn),
            format!("rotation_approved refused {}", p.mid.arn),
            format!("rotation_approved executing {}", p.chief.arn),
            "rotate_request completed rotationd".to_string(),
        ]
    );
    // $USER is recorded as a hint, next to the identity, never as it.
    let hint: String = p
        .env
        .db()
        .query_row(
            "SELECT json_extract(detail, '$.os_user') || ' ' || json_extract(detail, '$.via') FROM audit WHERE action = 'rotation_requested'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hint, format!("{lead_name} cli"));

    // A second L1 request, withdrawn by its requester (the requester may deny their own).
    let o = p.env.cli_as(
        &p.junior,
        &[
            "rotate",
            "--secret",
            &name,
            "--ticket",
            "CHG-32",
            "--reason",
            "quarterly",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let second = out(&o).trim().to_string();
    let o = p.env.cli_as(&p.junior, &["deny", &second]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("withdrawn by the requester"),
        "{}",
        stderr(&o)
    );
    assert_eq!(request_state(&p.env, &second).as_deref(), Some("denied"));
    assert_eq!(p.env.rotations_by_rotationd(&name), 1);
    terminate(&mut daemon, Duration::from_secs(10));
}
