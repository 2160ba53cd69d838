//! Least privilege, proven from the server's side: a full run of rotationd (status,
//! manual rotation, rollback, the daemon's reconcile and rotation, alerts, the audit log's
//! anchors in S3 and `audit --verify --anchors`) is recorded by
//! moto, and every request rotationd made must be an action granted by
//! `docs/iam-policy.json`, and never one that reads or writes a secret value.
//!
//! (`rotationd setup-events`, run once by an administrator, has its own policy in
//! `docs/iam-policy-setup-events.json`.)
//!
//! This binary owns its moto server so that the recording holds only its own run.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::config::{Body, dependent, dependent_metric, selector, table};
use common::moto;
use common::rotationd::{Env, rows, stderr, terminate};

const FORBIDDEN: &[&str] = &[
    "GetSecretValue",
    "BatchGetSecretValue",
    "PutSecretValue",
    "UpdateSecret",
    "CreateSecret",
    "DeleteSecret",
    "GetRandomPassword",
];

/// The anchors' bucket and prefix, as docs/iam-policy.json names them.
const ANCHOR_BUCKET: &str = "example-rotationd-audit";
const ANCHOR_PREFIX: &str = "rotationd/audit-anchors/";

fn granted() -> BTreeSet<String> {
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/iam-policy.json"))
            .unwrap(),
    )
    .unwrap();
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().split(':').nth(1).unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_full_run_makes_only_granted_calls_and_never_touches_values() {
    let body = Body::new()
        .policy("max_age", "1d")
        .with(
            dependent("lp-api")
                .list("alarms", ["lp-api-auth-errors"])
                .list("log_groups", ["/lp/api"])
                .set(
                    "auth_error_pattern",
                    "?\"authentication failed\" ?\" 401 \"",
                )
                .with(dependent_metric("LeastPrivilege", "AuthErrors", 5)),
        )
        .with(selector("lp/").dependents(["lp-api"]))
        // The bucket and the (default) prefix docs/iam-policy.json names.
        .with(table("[audit]").set("anchor_bucket", ANCHOR_BUCKET));
    let env = Env::new("leastpriv", &body.render()).await;
    // The Identity Center directory, read by every reconcile (a user in a group, so that
    // the group's memberships are listed too).
    let ids = aws_sdk_identitystore::Client::new(&moto::sdk_config(&env.moto.endpoint()));
    let store_id = "d-1e45710cc1";
    let user = ids
        .create_user()
        .identity_store_id(store_id)
        .user_name("lp-ivan")
        .display_name("Ivan")
        .name(
            aws_sdk_identitystore::types::Name::builder()
                .given_name("Ivan")
                .family_name("Least")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let group = ids
        .create_group()
        .identity_store_id(store_id)
        .display_name("lp-dba")
        .send()
        .await
        .unwrap();
    ids.create_group_membership()
        .identity_store_id(store_id)
        .group_id(group.group_id())
        .member_id(aws_sdk_identitystore::types::MemberId::UserId(
            user.user_id().to_string(),
        ))
        .send()
        .await
        .unwrap();
    env.append_config(&format!(
        "\n[identity_center]\nidentity_store_id = \"{store_id}\"\n"
    ));
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto::sdk_config(&env.moto.endpoint()))
            .force_path_style(true)
            .build(),
    )
    .create_bucket()
    .bucket(ANCHOR_BUCKET)
    .object_lock_enabled_for_bucket(true)
    .send()
    .await
    .unwrap();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto::sdk_config(&env.moto.endpoint()));
    logs.create_log_group()
        .log_group_name("/lp/api")
        .send()
        .await
        .unwrap();
    env.moto.start_recording();
    let a = moto::unique_name("lp/a");
    let b = moto::unique_name("lp/b");
    // Rolled back outside the daemon's fleet: after a rollback moto leaves AWSCURRENT on
    // two versions at the next rotation (docs/moto-findings.md), which AWS never does.
    let c = moto::unique_name("lpx/c");
    // Left half-rotated (AWSPENDING without AWSCURRENT): the daemon must take a closer
    // look (ListSecretVersionIds), call it stuck and not rotate it.
    let d = moto::unique_name("lp/d");
    for s in [&a, &b, &c, &d] {
        env.rotatable_secret(s).await;
    }
    env.leave_pending(&d, "lpstucklpstucklpstucklpstuck000001")
        .await;

    assert_eq!(env.cli(&["status"]).status.code(), Some(0));
    let o = env.rotate_emergency(&a, "INC-1", "lp");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = env.rotate_emergency(&c, "INC-1", "lp");
    assert_eq!(
        o.status.code(),
        Some(1),
        "lpx/ is outside the fleet: {}",
        stderr(&o)
    );
    let o = env.cli(&[
        "rollback", "--secret", &c, "--ticket", "INC-1", "--reason", "lp",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The daemon sees both secrets overdue (rotationd's clock two days ahead of the
    // max_age of one day), rotates them and escalates.
    let mut daemon = env.daemon(&[("ROTATIOND_TEST_CLOCK_OFFSET", "172800")]);
    let done = env
        .eventually(Duration::from_secs(60), || {
            let n: i64 = env
                .db()
                .query_row(
                    "SELECT COUNT(*) FROM attempts WHERE state = 'succeeded' AND trigger_kind = 'overdue'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (n == 2).then_some(())
        })
        .await;
    let published = env
        .eventually(Duration::from_secs(30), || {
            let n: i64 = env
                .db()
                .query_row(
                    "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'overdue' AND published_at IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (n == 2).then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    // The anchors the daemon wrote, checked by whoever audits.
    let o = env.cli(&["audit", "--verify", "--anchors"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let attempts = rows(
        &env.db(),
        "SELECT secret || ' ' || trigger_kind || ' ' || state || ' ' || COALESCE(error, '') FROM attempts UNION ALL SELECT 'T ' || secret || ' ' || kind || ' ' || status || ' ' || COALESCE(not_before,'') || ' ' || COALESCE(deadline,'') FROM triggers",
    );
    assert!(
        done.is_some(),
        "the daemon did not rotate the overdue secrets: {attempts:#?}"
    );
    assert!(published.is_some(), "the overdue alerts were not published");
    assert_eq!(
        env.rotations_by_rotationd(&d),
        0,
        "a stuck secret was rotated"
    );
    let messages = env.security_messages(Duration::from_secs(10)).await;
    let mut overdue: Vec<String> = messages
        .iter()
        .filter(|(_, m)| m["kind"] == "overdue")
        .map(|(subject, _)| subject.clone())
        .collect();
    overdue.sort();
    assert_eq!(
        overdue,
        vec![format!("[P2] overdue {a}"), format!("[P2] overdue {b}")]
    );
    let stuck: i64 = env
        .db()
        .query_row(
            "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'rotation_stuck' AND subject LIKE ?1",
            [format!("%{d}")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stuck, 1);

    let requests = env.moto.rotationd_requests();
    // S3 on the anchors' prefix only; PutObject with a retention needs
    // s3:PutObjectRetention too, and ListObjectsV2 is authorized by s3:ListBucket.
    let mut s3_actions = BTreeSet::new();
    for r in &requests {
        let path = r.url.split_once("://").map_or(r.url.as_str(), |x| x.1);
        let path = &path[path.find('/').unwrap_or(0)..];
        match r.operation.as_str() {
            "PutObject" | "GetObject" => {
                assert!(
                    path.starts_with(&format!("/{ANCHOR_BUCKET}/{ANCHOR_PREFIX}")),
                    "{} outside the anchors' prefix: {path}",
                    r.operation
                );
                s3_actions.insert(r.operation.clone());
                if r.operation == "PutObject" {
                    assert_eq!(r.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
                    s3_actions.insert("PutObjectRetention".into());
                }
            }
            "ListObjectsV2" => {
                assert!(
                    path.trim_start_matches(&format!("/{ANCHOR_BUCKET}"))
                        .trim_start_matches('/')
                        .starts_with('?')
                        && path.contains("prefix=rotationd%2Faudit-anchors%2F"),
                    "a listing beyond the anchors' prefix: {path}"
                );
                s3_actions.insert("ListBucket".into());
            }
            _ => {}
        }
    }
    let ops: BTreeSet<String> = requests
        .into_iter()
        .map(|r| r.operation)
        .filter(|op| !matches!(op.as_str(), "PutObject" | "GetObject" | "ListObjectsV2"))
        .chain(s3_actions)
        .collect();
    // Every call is granted (batch operations are authorized by their single action)...
    let granted = granted();
    for op in &ops {
        let action = op.trim_end_matches("Batch");
        assert!(
            granted.contains(action),
            "rotationd called {op}, which docs/iam-policy.json does not grant"
        );
    }
    // ...the run exercised every Secrets Manager, SNS and CloudWatch grant (none is spare;
    // the event grants are used by the SQS consumer and the CloudTrail poller,
    // tests/events.rs; CancelRotateSecret by native_schedule = "disable", tests/drift.rs;
    // PutEvents by the answers to requests, tests/requests.rs)...
    for action in [
        "ListSecrets",
        "DescribeSecret",
        "ListSecretVersionIds",
        "RotateSecret",
        "UpdateSecretVersionStage",
        "Publish",
        "DescribeAlarms",
        "GetMetricData",
        "FilterLogEvents",
        "ListUsers",
        "ListGroups",
        "ListGroupMemberships",
        "PutObject",
        "PutObjectRetention",
        "GetObject",
        "ListBucket",
    ] {
        assert!(granted.contains(action), "{action} missing from the policy");
        assert!(
            ops.contains(action),
            "the full run never needed {action}; is the grant spare?"
        );
    }
    // The S3 grants name the anchors' prefix and nothing wider.
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/iam-policy.json"))
            .unwrap(),
    )
    .unwrap();
    for st in policy["Statement"].as_array().unwrap() {
        let actions: Vec<&str> = st["Action"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str()?.strip_prefix("s3:"))
            .collect();
        if actions.is_empty() {
            continue;
        }
        if actions == ["ListBucket"] {
            assert_eq!(st["Resource"], format!("arn:aws:s3:::{ANCHOR_BUCKET}"));
            assert_eq!(
                st["Condition"]["StringLike"]["s3:prefix"],
                format!("{ANCHOR_PREFIX}*")
            );
        } else {
            assert_eq!(
                st["Resource"],
                format!("arn:aws:s3:::{ANCHOR_BUCKET}/{ANCHOR_PREFIX}*"),
                "{actions:?}"
            );
        }
    }
    // ...and none that touches a value.
    for op in FORBIDDEN {
        assert!(!ops.contains(*op), "rotationd called {op}");
    }
}
