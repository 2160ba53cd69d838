//! Departures from IAM Identity Center (G2 item 4), end to end on moto with the real binary:
//! moto's Identity Store holds the users and groups, rotationd reads it per reconcile
//! (`[identity_center]`), and a `DeleteUser` that names only the user id, sent after the
//! user is gone from the Identity Store and after a restart, still rotates the secrets the
//! user could reach: as a custodian (their name in another case) and through an Identity
//! Center group. Before `[identity_center]` such an event matched no custodian and
//! rotated nothing, silently.

mod common;

use std::time::Duration;

use common::config::{Body, secret};
use common::events::*;
use common::moto::{self, recording};
use common::rotationd::{Env, rows, stderr, terminate};
use serde_json::json;

/// Identity Center's DeleteUser as EventBridge delivers it: no user name, only the id.
fn identity_store_delete_user(user_id: &str, event_id: &str) -> String {
    json!({
        "version": "0",
        "id": format!("env-{event_id}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.identitystore",
        "account": ACCOUNT,
        "time": chrono::Utc::now().to_rfc3339(),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "eventSource": "identitystore.amazonaws.com",
            "eventName": "DeleteUser",
            "eventID": event_id,
            "eventTime": chrono::Utc::now().to_rfc3339(),
            "eventType": "AwsApiCall",
            "requestParameters": { "identityStoreId": "d-90670aabbc", "userId": user_id },
            "responseElements": null,
            "recipientAccountId": ACCOUNT
        }
    })
    .to_string()
}

async fn create_user(ids: &aws_sdk_identitystore::Client, store: &str, name: &str) -> String {
    ids.create_user()
        .identity_store_id(store)
        .user_name(name)
        .display_name(name)
        .name(
            aws_sdk_identitystore::types::Name::builder()
                .given_name(name)
                .family_name("Test")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .user_id()
        .to_string()
}

struct Directory {
    ids: aws_sdk_identitystore::Client,
    store: String,
}

impl Directory {
    /// A fresh identity store in moto (moto makes one for any id on first use).
    fn new(env: &Env, store: &str) -> Directory {
        Directory {
            ids: aws_sdk_identitystore::Client::new(&moto::sdk_config(&env.moto.endpoint())),
            store: store.to_string(),
        }
    }

    async fn user(&self, name: &str) -> String {
        create_user(&self.ids, &self.store, name).await
    }

    async fn group(&self, name: &str, members: &[&str]) {
        let g = self
            .ids
            .create_group()
            .identity_store_id(&self.store)
            .display_name(name)
            .send()
            .await
            .unwrap();
        for m in members {
            self.ids
                .create_group_membership()
                .identity_store_id(&self.store)
                .group_id(g.group_id())
                .member_id(aws_sdk_identitystore::types::MemberId::UserId(
                    m.to_string(),
                ))
                .send()
                .await
                .unwrap();
        }
    }

    async fn delete_user(&self, id: &str) {
        self.ids
            .delete_user()
            .identity_store_id(&self.store)
            .user_id(id)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_delete_user_naming_only_an_id_rotates_what_the_gone_user_could_reach() {
    recording();
    let store = "d-90670aabbc";
    let by_name = moto::unique_name("ic/by-name");
    let by_group = moto::unique_name("ic/by-group");
    let other = moto::unique_name("ic/other");
    let body = Body::new()
        // Written in another case than the directory's user name, as IAM compares them.
        .with(secret(&by_name).custodians(["ivan.petrov@example.com"]))
        // An Identity Center group: no [[group]] declares it.
        .with(secret(&by_group).custodians(["group:ic-dba"]))
        .with(secret(&other).custodians(["erin@example.com"]));
    let env = Env::new("ic-delete", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "ic-delete").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.append_config(&format!(
        "\n[identity_center]\nidentity_store_id = \"{store}\"\n"
    ));
    let dir = Directory::new(&env, store);
    let ivan = dir.user("Ivan.Petrov@example.com").await;
    let erin = dir.user("erin@example.com").await;
    dir.group("ic-dba", &[&ivan]).await;
    for s in [&by_name, &by_group, &other] {
        env.rotatable_secret(s).await;
    }

    // A first daemon reads the directory (and remembers it), then stops.
    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut daemon = env.daemon(&[]);
    let read = env
        .eventually(Duration::from_secs(60), || {
            (count(&env, "SELECT COUNT(*) FROM directory_users") == 2).then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(read.is_some(), "the directory was not read");
    // Ivan leaves: gone from the Identity Store before rotationd hears of it, and rotationd
    // restarts before the event arrives (its first listing no longer has him).
    dir.delete_user(&ivan).await;
    let mut daemon = env.daemon(&[]);
    assert!(env.reconciles(1, Duration::from_secs(60)).await);
    send(
        &env,
        &queue_url,
        &identity_store_delete_user(&ivan, "6f0c1d3e-0000-4000-8000-00000000ic01"),
    )
    .await;
    assert!(settled(&env, &queue_url, Duration::from_secs(90)).await);
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    let triggers = rows(
        &env.db(),
        "SELECT secret || ' ' || kind || ' ' || status || ' ' || reason FROM triggers WHERE kind = 'departure' ORDER BY secret",
    );
    assert_eq!(
        triggers,
        vec![
            format!(
                "{by_group} departure done departure of Ivan.Petrov@example.com (aws.identitystore)"
            ),
            format!(
                "{by_name} departure done departure of Ivan.Petrov@example.com (aws.identitystore)"
            ),
        ],
        "the departure did not reach the gone user's secrets"
    );
    assert_eq!(env.rotations_by_rotationd(&by_name), 1);
    assert_eq!(env.rotations_by_rotationd(&by_group), 1);
    assert_eq!(env.rotations_by_rotationd(&other), 0);
    let audit = rows(
        &env.db(),
        "SELECT outcome || ' ' || reason || ' ' || json_extract(detail, '$.identity_center_groups') FROM audit WHERE action = 'event_departure'",
    );
    assert_eq!(
        audit,
        vec![format!(
            "accepted departure of Ivan.Petrov@example.com (user id {ivan}) [\"ic-dba\"]"
        )]
    );
    // Erin is still listed and remembered; Ivan is remembered only.
    assert_eq!(count(&env, "SELECT COUNT(*) FROM directory_users"), 2);
    let _ = erin;
}

#[tokio::test]
async fn a_user_id_nobody_knows_pages_security_and_a_custodian_of_nothing_is_counted() {
    recording();
    let store = "d-90670aabbd";
    let name = moto::unique_name("ic/kept");
    let body = Body::new().with(secret(&name).custodians(["alice"]));
    let env = Env::new("ic-unresolved", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "ic-unresolved").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    env.append_config(&format!(
        "\n[identity_center]\nidentity_store_id = \"{store}\"\n"
    ));
    let dir = Directory::new(&env, store);
    dir.user("alice").await;
    env.rotatable_secret(&name).await;
    let mut daemon = env.daemon(&[]);
    assert!(env.wait_ready(Duration::from_secs(60)).await);
    // An id the Identity Store never listed, and an IAM user who is a custodian nowhere.
    send(
        &env,
        &queue_url,
        &identity_store_delete_user(
            "0a1b2c3d-9999-4000-8000-00000000dead",
            "6f0c1d3e-0000-4000-8000-00000000ic02",
        ),
    )
    .await;
    send(
        &env,
        &queue_url,
        &iam_delete_user("zoe", "6f0c1d3e-0000-4000-8000-00000000ic03"),
    )
    .await;
    assert!(settled(&env, &queue_url, Duration::from_secs(60)).await);
    let paged = env
        .eventually(Duration::from_secs(30), || {
            (count(
                &env,
                "SELECT COUNT(*) FROM alert_outbox WHERE kind = 'departure_unresolved' AND published_at IS NOT NULL",
            ) == 1)
                .then_some(())
        })
        .await;
    let unresolved = env.metric(
        "rotationd_departures_unmatched_total",
        &["reason=\"unresolved\""],
    );
    let nowhere = env.metric(
        "rotationd_departures_unmatched_total",
        &["reason=\"no_secrets\""],
    );
    assert_eq!(
        terminate(&mut daemon, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(paged.is_some(), "departure_unresolved was not published");
    let messages = env.security_messages(Duration::from_secs(10)).await;
    let page = messages
        .iter()
        .find(|(_, m)| m["kind"] == "departure_unresolved")
        .expect("Security got departure_unresolved");
    assert_eq!(page.0, "[P2] departure_unresolved");
    assert!(
        page.1["error"]
            .as_str()
            .unwrap()
            .contains("0a1b2c3d-9999-4000-8000-00000000dead"),
        "{page:#?}"
    );
    assert_eq!(unresolved, 1.0);
    assert_eq!(nowhere, 1.0);
    let audit = rows(
        &env.db(),
        "SELECT outcome || ' ' || reason FROM audit WHERE action = 'event_departure' ORDER BY id",
    );
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert!(
        audit
            .iter()
            .any(|a| a.starts_with("unresolved departure of user id 0a1b2c3d")),
        "{audit:#?}"
    );
    assert!(
        audit.contains(&"no_secrets departure of zoe".to_string()),
        "{audit:#?}"
    );
    assert_eq!(env.rotations_by_rotationd(&name), 0);
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM triggers WHERE kind = 'departure'"
        ),
        0
    );
}
