//! The inventory's request budget, counted on the server: a reconcile of N quiet secrets
//! costs ceil(N/100) ListSecrets requests and nothing per secret.
//!
//! This binary owns its moto server, so the recording holds only its own requests.

mod common;

use common::rotationd::{Env, stderr};

#[tokio::test]
async fn a_quiet_fleet_costs_one_request_per_hundred_secrets() {
    let env = Env::new(
        "budget",
        r#"
[policy]
require_change_ticket = false
max_age = "93d"

[[selector]]
name_prefix = "fleet/"
strategy = "single-user"
"#,
    )
    .await;
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
    env.moto.start_recording();
    let o = env.cli(&["status", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 250);
    let never = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "never_rotated")
        .count();
    assert_eq!(never, 150);

    let ops: Vec<String> = env
        .moto
        .rotationd_requests()
        .into_iter()
        .map(|r| r.operation)
        .collect();
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(count("ListSecrets"), 3, "ceil(250/100) pages: {ops:?}");
    assert_eq!(count("DescribeSecret"), 0, "{ops:?}");
    assert_eq!(count("ListSecretVersionIds"), 0, "{ops:?}");
    assert_eq!(ops.len(), 3, "{ops:?}");
}
