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

#[tokio::test]
async fn below_l3_a_rollback_is_refused_and_escalated_and_an_l3_rollback_tells_the_dependents() {
    let m = moto::shared();
    let conf = moto::sdk_config(&m.endpoint());
    let (api_topic, api_queue) = common::rotationd::subscribed_topic(
        &aws_sdk_sns::Client::new(&conf),
        &aws_sdk_sqs::Client::new(&conf),
        "pol-rollback-api",
    )
    .await;
    let prefix = moto::unique_name("pol/rollback/");
    let body = Body::new()
        .with(
            dependent("billing-api")
                .set("notify_topic_arn", &api_topic)
                .list("alarms", ["billing-api-auth"]),
        )
        .with(selector(&prefix).dependents(["billing-api"]))
        .render();
    let p = policy("pol-rollback", &body, ALLOW_ACCOUNT).await;
    let name = format!("{prefix}db");
    p.env.rotatable_secret(&name).await;
    let before = p.env.stages(&name).await;
    let current = Env::version_with(&before, "AWSCURRENT").unwrap();
    let previous = Env::version_with(&before, "AWSPREVIOUS").unwrap();

    // An L2 (a role's session): refused, nothing moves, Security hears of it.
    let o = p.env.cli_as(
        &p.mid,
        &[
            "rollback",
            "--secret",
            &name,
            "--ticket",
            "INC-41",
            "--reason",
            "401s after the rotation",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("rollback is L3 only"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Security has been told"),
        "{}",
        stderr(&o)
    );
    assert_eq!(p.env.stages(&name).await, before, "an L2 rolled back");
    let sec = until_kinds(
        &p.env,
        &p.env.security_queue_url,
        &["rollback_escalated"],
        Duration::from_secs(20),
    )
    .await;
    let escalated = of_kind(&sec, "rollback_escalated");
    assert_eq!(escalated.len(), 1, "{sec:#?}");
    let e = escalated[0];
    assert_eq!(e["severity"], "P2");
    assert_eq!(e["details"]["requester"], p.mid.arn.as_str());
    assert_eq!(e["details"]["level"], "L2");
    assert_eq!(e["ticket"], "INC-41");
    assert_eq!(e["reason"], "401s after the rotation");
    // So is an L1 (a user with a path).
    let o = p.env.cli_as(
        &p.junior,
        &[
            "rollback", "--secret", &name, "--ticket", "INC-42", "--reason", "x",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(p.env.stages(&name).await, before, "an L1 rolled back");

    // An L3: rolled back; the dependents are told to reload (the notify topic and the
    // dependent's own), and Security gets a copy.
    let o = p.env.cli_as(
        &p.lead,
        &[
            "rollback",
            "--secret",
            &name,
            "--ticket",
            "INC-43",
            "--reason",
            "401s after the rotation",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = p.env.stages(&name).await;
    assert_eq!(
        Env::version_with(&after, "AWSCURRENT"),
        Some(previous.clone())
    );
    for (queue, who) in [
        (&p.env.notify_queue_url, "the notify topic"),
        (&api_queue, "the dependent's topic"),
        (&p.env.security_queue_url, "Security"),
    ] {
        let got = until_kinds(
            &p.env,
            queue,
            &["rollback_completed"],
            Duration::from_secs(20),
        )
        .await;
        let done = of_kind(&got, "rollback_completed");
        assert_eq!(done.len(), 1, "{who}: {got:#?}");
        assert_eq!(
            done[0]["summary"], "AWSCURRENT is the previous version again: reload",
            "{who}"
        );
        assert_eq!(done[0]["details"]["current_version"], previous.as_str());
        assert_eq!(done[0]["details"]["rolled_back_version"], current.as_str());
        assert_eq!(done[0]["ticket"], "INC-43");
    }
    let audit = rows(
        &p.env.db(),
        "SELECT outcome || ' ' || actor || ' ' || json_extract(detail, '$.caller.level') FROM audit WHERE action = 'rollback' ORDER BY id",
    );
    assert_eq!(
        audit,
        vec![
            format!("refused cli:{} L2", p.mid.arn),
            format!("refused cli:{} L1", p.junior.arn),
            format!("ok cli:{} L3", p.lead.arn),
        ]
    );
}

#[tokio::test]
async fn an_emergency_rotation_pages_security_tells_the_dependents_first_and_its_version_goes_back_only_forced()
 {
    recording();
    let prefix = moto::unique_name("pol/forced/");
    let p = policy(
        "pol-forced",
        &Body::new().with(selector(&prefix)).render(),
        ALLOW_ACCOUNT,
    )
    .await;
    let name = format!("{prefix}db");
    p.env.rotatable_secret(&name).await;
    let arn = arn_of(&p.env, &name).await;
    let old = Env::version_with(&p.env.stages(&name).await, "AWSCURRENT").unwrap();

    // An L3 session rotates at once.
    let o = p.env.cli_as(
        &p.chief,
        &[
            "rotate",
            "--secret",
            &name,
            "--ticket",
            "INC-51",
            "--reason",
            "key in a public repo",
            "--emergency",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let new = Env::version_with(&p.env.stages(&name).await, "AWSCURRENT").unwrap();
    assert_ne!(new, old);
    // Security is paged: an emergency rotation is a suspected compromise.
    let sec = until_kinds(
        &p.env,
        &p.env.security_queue_url,
        &["breach_suspected"],
        Duration::from_secs(20),
    )
    .await;
    let breach = of_kind(&sec, "breach_suspected");
    assert_eq!(breach.len(), 1, "{sec:#?}");
    assert_eq!(breach[0]["severity"], "P1");
    assert_eq!(breach[0]["ticket"], "INC-51");
    assert_eq!(breach[0]["details"]["source"], "cli");
    assert_eq!(
        breach[0]["details"]["by"],
        format!("cli:{}", p.chief.arn).as_str()
    );
    // The dependents' notice was published before RotateSecret, not after the drive.
    let requests = p.env.moto.recorded_requests();
    let notice = requests.iter().position(|r| {
        let body = String::from_utf8_lossy(&r.body);
        r.operation == "Publish"
            && body.contains("rotation_scheduled")
            && body.contains(&name.replace('/', "%2F"))
    });
    let rotate = requests.iter().position(|r| {
        r.operation == "RotateSecret"
            && r.user_agent.contains("app/rotationd")
            && r.secret_id().is_some_and(|id| id == arn || id == name)
    });
    assert!(
        notice.is_some() && rotate.is_some(),
        "notice {notice:?}, RotateSecret {rotate:?}"
    );
    assert!(
        notice < rotate,
        "rotation_scheduled (request {notice:?}) left after RotateSecret ({rotate:?})"
    );

    // The retired version does not go back, not even for an L3.
    let o = p.env.cli_as(
        &p.lead,
        &[
            "rollback", "--secret", &name, "--ticket", "INC-52", "--reason", "app down",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("retired by an emergency rotation"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        Env::version_with(&p.env.stages(&name).await, "AWSCURRENT"),
        Some(new.clone())
    );
    // --force wants an incident ticket.
    let o = p.env.cli_as(
        &p.lead,
        &[
            "rollback", "--secret", &name, "--ticket", "CHG-53", "--reason", "app down", "--force",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Forced with an INC ticket: put back, and Security is paged (P1).
    let o = p.env.cli_as(
        &p.lead,
        &[
            "rollback", "--secret", &name, "--ticket", "INC-52", "--reason", "app down", "--force",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        Env::version_with(&p.env.stages(&name).await, "AWSCURRENT"),
        Some(old.clone())
    );
    let sec = until_kinds(
        &p.env,
        &p.env.security_queue_url,
        &["rollback_forced", "rollback_completed"],
        Duration::from_secs(20),
    )
    .await;
    let forced = of_kind(&sec, "rollback_forced");
    assert_eq!(forced.len(), 1, "{sec:#?}");
    assert_eq!(forced[0]["severity"], "P1");
    assert_eq!(forced[0]["details"]["restored_version"], old.as_str());
    assert_eq!(forced[0]["details"]["retired_because"], "emergency");
    assert_eq!(forced[0]["ticket"], "INC-52");
    assert_eq!(of_kind(&sec, "rollback_completed").len(), 1, "{sec:#?}");
    let audit = rows(
        &p.env.db(),
        "SELECT outcome || ' ' || COALESCE(json_extract(detail, '$.forced.cause'), '-') FROM audit WHERE action = 'rollback' ORDER BY id",
    );
    assert_eq!(audit, vec!["refused -", "ok emergency"]);
}

#[tokio::test]
async fn a_version_a_compromise_retired_goes_back_neither_by_the_cli_nor_by_a_request() {
    recording();
    let name = moto::unique_name("pol/exposed");
    let p = policy(
        "pol-exposed",
        &Body::new().with(secret(&name).schedule("0 3 1 1 *")).render(),
        &format!("{ALLOW_ACCOUNT}\n[[events.compromise]]\nsource = \"com.example.security\"\ndetail_type = \"Credential Exposed\"\nsecret_pointer = \"/detail/secret\"\n"),
    )
    .await;
    p.env.rotatable_secret(&name).await;
    let arn = arn_of(&p.env, &name).await;
    let old = Env::version_with(&p.env.stages(&name).await, "AWSCURRENT").unwrap();
    let (mut daemon, log) = p.env.daemon_ready(&[]).await;
    let event = json!({
        "version": "0", "id": "e9100000-0000-4000-8000-0000000c0de1",
        "detail-type": "Credential Exposed", "source": "com.example.security",
        "account": ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": { "secret": arn, "ticket": "INC-61", "reason": "key pasted in a public gist" }
    });
    send(&p.env, &p.queue_url, &event.to_string()).await;
    let rotated = p
        .env
        .eventually(Duration::from_secs(60), || {
            (count(&p.env, "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'compromise' AND state = 'succeeded'") == 1).then_some(())
        })
        .await;
    assert!(
        rotated.is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let new = Env::version_with(&p.env.stages(&name).await, "AWSCURRENT").unwrap();
    assert_ne!(new, old);

    // An L3 on the CLI: refused.
    let o = p.env.cli_as(
        &p.lead,
        &[
            "rollback", "--secret", &name, "--ticket", "INC-62", "--reason", "app down",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("retired by a compromise rotation"),
        "{}",
        stderr(&o)
    );
    // An L3's CommandBridge request: closed as failed, with the reason.
    let request = json!({
        "version": "0", "id": "e9100000-0000-4000-8000-0000000b0551",
        "detail-type": "Rollback Requested", "source": "commandbridge",
        "account": ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": { "request_id": "rb-exposed", "secret": name, "ticket": "INC-63", "reason": "app down", "requester": "boss" }
    });
    send(&p.env, &p.queue_url, &request.to_string()).await;
    let closed = p
        .env
        .eventually(Duration::from_secs(60), || {
            p.env
                .db()
                .query_row("SELECT state || ' ' || comment FROM requests WHERE id = 'rb-exposed' AND state NOT IN ('awaiting_approval', 'executing')", [], |r| r.get::<_, String>(0))
                .ok()
        })
        .await;
    terminate(&mut daemon, Duration::from_secs(10));
    let closed = closed.unwrap_or_else(|| panic!("{}", std::fs::read_to_string(&log).unwrap()));
    assert!(
        closed.starts_with("failed ") && closed.contains("retired by a compromise rotation"),
        "{closed}"
    );
    assert_eq!(
        Env::version_with(&p.env.stages(&name).await, "AWSCURRENT"),
        Some(new)
    );
}

#[tokio::test]
async fn the_storm_guard_never_pauses_an_l3_emergency_request_and_counts_it_apart() {
    recording();
    let names: Vec<String> = (0..3)
        .map(|i| moto::unique_name(&format!("pol/storm{i}")))
        .collect();
    let urgent = moto::unique_name("pol/storm-urgent");
    let body = Body::new()
        .with_all(names.iter().map(|n| secret(n).custodians(["hank"])))
        .with(secret(&urgent))
        .render();
    let p = policy(
        "pol-storm",
        &body,
        &format!("{ALLOW_ACCOUNT}\nmax_event_rotations_per_hour = 1\n"),
    )
    .await;
    for n in names.iter().chain([&urgent]) {
        p.env.rotatable_secret(n).await;
    }
    let (mut daemon, log) = p.env.daemon_ready(&[]).await;
    send(
        &p.env,
        &p.queue_url,
        &iam_delete_user("hank", "f5100000-0000-4000-8000-0000000570a1"),
    )
    .await;
    let paused = p
        .env
        .eventually(Duration::from_secs(60), || {
            (count(
                &p.env,
                "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_storm'",
            ) >= 1
                && count(
                    &p.env,
                    "SELECT COUNT(*) FROM attempts WHERE finished_at IS NULL",
                ) == 0)
                .then_some(())
        })
        .await;
    assert!(
        paused.is_some(),
        "no storm pause:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let departures = || {
        names
            .iter()
            .map(|n| p.env.rotations_by_rotationd(n))
            .sum::<usize>()
    };
    assert_eq!(departures(), 1, "the hourly allowance is one");
    // An L3's emergency request (an IAM user, as CommandBridge names it) during the pause.
    let request = json!({
        "version": "0", "id": "e9200000-0000-4000-8000-00000000e3e1",
        "detail-type": "Rotation Requested", "source": "commandbridge",
        "account": ACCOUNT, "time": Utc::now().to_rfc3339(), "region": "us-east-1", "resources": [],
        "detail": { "request_id": "r-storm", "secret": urgent, "ticket": "INC-71", "reason": "leaked during a storm",
                    "requester": p.lead.arn, "emergency": true }
    });
    send(&p.env, &p.queue_url, &request.to_string()).await;
    let done = p
        .env
        .eventually(Duration::from_secs(60), || {
            (request_state(&p.env, "r-storm").as_deref() == Some("completed")).then_some(())
        })
        .await;
    let exempt = p.env.metric(
        "rotationd_storm_exempt_rotations_total",
        &["reason=\"emergency_request\""],
    );
    let compromise = p.env.metric(
        "rotationd_storm_exempt_rotations_total",
        &["reason=\"compromise\""],
    );
    terminate(&mut daemon, Duration::from_secs(10));
    assert!(
        done.is_some(),
        "the storm guard held an L3 emergency request: {:?}\n{}",
        request_state(&p.env, "r-storm"),
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(p.env.rotations_by_rotationd(&urgent), 1);
    assert_eq!(departures(), 1, "the departures stay paused");
    assert_eq!(
        count(
            &p.env,
            "SELECT COUNT(*) FROM triggers WHERE kind = 'departure' AND status = 'pending'"
        ),
        2
    );
    // The request's rotation is a manual trigger, which the guard neither pauses nor counts.
    assert_eq!(
        rows(
            &p.env.db(),
            "SELECT t.kind FROM triggers t JOIN requests r ON r.trigger_id = t.id WHERE r.id = 'r-storm'"
        ),
        vec!["manual"]
    );
    assert_eq!((exempt, compromise), (1.0, 0.0));
}
