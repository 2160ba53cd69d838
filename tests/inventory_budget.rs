//! The inventory's request budget, counted on the server: a reconcile of N quiet secrets
//! costs about ceil(N/100) ListSecrets requests (one query per selector, one per ten
//! listed secrets) and nothing per secret.
//!
//! This binary owns its moto server, so the recording holds only its own requests.

mod common;

use common::config::{Body, secret, selector, tag_selector};
use common::rotationd::{Env, stderr};

#[tokio::test]
async fn a_quiet_fleet_costs_one_request_per_hundred_secrets() {
    let body = Body::new()
        .with(selector("fleet/"))
        .with(tag_selector("team", "payments").strategy("alternating-users"));
    let env = Env::new("budget", &body.render()).await;
    // 250 secrets: 150 never rotated (one version), 100 rotated once (AWSCURRENT and
    // AWSPREVIOUS, LastRotatedDate set by the rotation itself).
    for i in 0..250 {
        let name = format!("fleet/app-{i:03}");
        if i < 100 {
            env.rotatable_secret(&name).await;
        } else {
            env.sm
                .create_secret()
                .name(&name)
                .secret_string("v")
                .send()
                .await
                .unwrap();
        }
    }
    // 30 more found by tag (one query), one of them also listed by ARN (one query).
    let mut listed_arn = String::new();
    for i in 0..30 {
        let out = env
            .sm
            .create_secret()
            .name(format!("tagged/pay-{i:02}"))
            .secret_string("v")
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("team")
                    .value("payments")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        listed_arn = out.arn.unwrap();
    }
    // Neither prefix nor tag: never part of the fleet.
    env.sm
        .create_secret()
        .name("other/x")
        .secret_string("v")
        .send()
        .await
        .unwrap();
    env.append_config(&secret(&listed_arn).render());
    env.moto.start_recording();
    let o = env.cli(&["status", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 280);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["secret"] != "other/x")
    );
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["secret"] == listed_arn.as_str())
    );
    let never = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "never_rotated")
        .count();
    assert_eq!(never, 180);

    let ops = env.moto.rotationd_operations();
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    // ceil(250/100) pages for the prefix, one for the tag, one for the listed names.
    assert_eq!(count("ListSecrets"), 5, "{ops:?}");
    assert_eq!(count("DescribeSecret"), 0, "{ops:?}");
    assert_eq!(count("ListSecretVersionIds"), 0, "{ops:?}");
    assert_eq!(ops.len(), 5, "{ops:?}");
}
