//! Many accounts and regions, on moto: three `[[account]]` tables × two regions.
//!
//! moto lets any role be assumed and maps the assumed role's credentials to the role's
//! account, so every account-region below is a real, separate Secrets Manager as far as
//! moto is concerned (a secret created in one is invisible in the others). The third
//! account's role cannot be assumed: the test proxy between rotationd and moto answers
//! its `AssumeRole` with `AccessDenied`, as IAM does when a trust policy does not name the
//! caller.
//!
//! The daemon must rotate, in their open window, the secrets of the four reachable
//! account-regions (the same name in each, so they are keyed by ARN), and none of the
//! refused account's; report that account once however many reconciles fail; label
//! its metrics with `account` and `region`; and list the account-regions at the same time
//! (one region's ListSecrets is held a second by the proxy; the others go on meanwhile).

mod common;

use std::time::Duration;

use chrono::{Timelike, Utc};
use common::config::{Body, secret, table};
use common::moto;
use common::proxy::{Outcome, Proxy};
use common::rotationd::{Env, rotatable_secret_in, rows, terminate};

const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];
const REFUSED: &str = "333333333333";
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-2"];

/// A Secrets Manager client in `account` and `region`, through the role moto lets the
/// test assume (the test talks to moto directly, not through the proxy).
async fn client_in(account: &str, region: &str) -> aws_sdk_secretsmanager::Client {
    let moto = moto::shared();
    let base = moto::sdk_config(&moto.endpoint());
    let sts = aws_sdk_sts::Client::new(&base);
    let creds = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/seed"))
        .role_session_name("test-seed")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let conf = base
        .to_builder()
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    creds.access_key_id,
                    creds.secret_access_key,
                    Some(creds.session_token),
                    None,
                    "assumed",
                ),
            ),
        )
        .build();
    aws_sdk_secretsmanager::Client::new(&conf)
}

/// How many RotateSecret calls rotationd made on `arn` (moto's request log).
fn rotations_of(arn: &str) -> usize {
    moto::shared()
        .rotationd_requests()
        .into_iter()
        .filter(|r| r.operation == "RotateSecret" && r.secret_id().as_deref() == Some(arn))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_accounts_two_regions_and_a_role_that_cannot_be_assumed() {
    let moto = moto::shared();
    moto.start_recording();
    let proxy = Proxy::start(moto.port());
    proxy.deny(&format!("RoleArn=arn%3Aaws%3Aiam%3A%3A{REFUSED}%3Arole"));

    // The same name in every account-region: only the ARN tells them apart.
    let name = moto::unique_name("estate/db");
    let mut arns = Vec::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            let arn = rotatable_secret_in(
                &client_in(account, region).await,
                &name,
                "seeded-by-the-test",
            )
            .await;
            assert!(arn.contains(&format!(":{region}:{account}:")), "{arn}");
            arns.push((account, region, arn));
        }
    }

    // rotationd's clock runs an hour ahead: each secret's window opened a few minutes
    // before its "now", after the secret's last rotation (just now). One window each:
    // secrets sharing a window would be spread across it.
    let offset = chrono::Duration::hours(1);
    let now = Utc::now() + offset;
    let body = Body::new()
        .change_tickets_required()
        .with_all(ACCOUNTS.map(|account| {
            table("[[account]]")
                .set("id", account)
                .set(
                    "role_arn",
                    &format!("arn:aws:iam::{account}:role/rotationd"),
                )
                .list("regions", REGIONS)
        }))
        .with_all(arns.iter().enumerate().map(|(i, (_, _, arn))| {
            let open = now - chrono::Duration::minutes(2 + i as i64);
            secret(arn)
                .schedule(&format!("{} {} * * *", open.minute(), open.hour()))
                .window("1h")
                .ticket("CHG-300")
        }));
    let env = Env::new("accounts", &body.render()).await;
    env.use_endpoint(&proxy.endpoint());
    // One region answers ListSecrets slowly: the others' listings go on meanwhile.
    proxy.hold(
        "ListSecrets",
        &format!("/{}/secretsmanager/", REGIONS[1]),
        Duration::from_secs(1),
    );
    // Reconcile often, and report an unreachable account after one second: several
    // reconciles fail on the refused account while the test runs.
    env.edit_config(|c| c.replace("reconcile_interval = \"1h\"", "reconcile_interval = \"2s\""));
    env.set_in("alerts", "unreachable_after = \"1s\"");

    let (mut daemon, log) = env
        .daemon_ready(&[(
            "ROTATIOND_TEST_CLOCK_OFFSET",
            &offset.num_seconds().to_string(),
        )])
        .await;
    let reachable: Vec<&(&str, &str, String)> =
        arns.iter().filter(|(a, _, _)| *a != REFUSED).collect();
    let done = env
        .eventually(Duration::from_secs(90), || {
            let db = env.db();
            let n = reachable
                .iter()
                .filter(|(_, _, arn)| {
                    !rows(
                        &db,
                        &format!(
                            "SELECT id FROM attempts WHERE secret = '{arn}' AND state = 'succeeded'"
                        ),
                    )
                    .is_empty()
                })
                .count();
            (n == reachable.len()).then_some(n)
        })
        .await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done.is_some(),
        "not every reachable account-region rotated; log:\n{}",
        read_log()
    );
    // Several more reconciles, all failing on the refused account.
    assert!(
        env.reconciles(3, Duration::from_secs(60)).await,
        "no more reconciles; log:\n{}",
        read_log()
    );
    let metrics = env.metrics();
    let alerts = env.security_messages(Duration::from_secs(10)).await;
    let status = terminate(&mut daemon, Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", read_log());

    // Each reachable account-region's secret rotated once, in its own account and region;
    // the refused account's were never touched.
    for (account, region, arn) in &arns {
        let want = usize::from(*account != REFUSED);
        assert_eq!(
            rotations_of(arn),
            want,
            "{account} {region}: RotateSecret calls; log:\n{}",
            read_log()
        );
    }
    // The state keys secrets by ARN: the four rotations are four different secrets.
    let keys = rows(
        &env.db(),
        "SELECT DISTINCT secret FROM attempts WHERE state = 'succeeded' ORDER BY secret",
    );
    let mut want: Vec<String> = reachable.iter().map(|(_, _, a)| a.clone()).collect();
    want.sort();
    assert_eq!(keys, want);

    // Account-regions are listed at the same time, not one after another behind the slow
    // region (the daemon is the only ListSecrets client here).
    assert!(
        proxy.max_in_flight("ListSecrets") >= 2,
        "{:?}",
        proxy.stats()
    );

    // The refused role was asked for (and refused), through STS, with session `rotationd`.
    assert!(proxy.count("AssumeRole", Outcome::Denied) >= 1);
    assert!(
        proxy.count("AssumeRole", Outcome::Forwarded) >= 2,
        "{:?}",
        proxy.stats()
    );
    let sessions: Vec<String> = moto
        .recorded_requests()
        .into_iter()
        .filter(|r| r.operation == "AssumeRole")
        .map(|r| {
            String::from_utf8_lossy(&r.body)
                .replace("%2F", "/")
                .replace("%3A", ":")
        })
        .filter(|b| b.contains(":role/rotationd"))
        .collect();
    assert!(!sessions.is_empty());
    assert!(
        sessions
            .iter()
            .all(|b| b.contains("RoleSessionName=rotationd")),
        "{sessions:?}"
    );

    // Reported once, with its regions, however many reconciles failed.
    let unreachable: Vec<&serde_json::Value> = alerts
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m["kind"] == "account_unreachable")
        .collect();
    assert_eq!(unreachable.len(), 1, "{alerts:?}");
    let details = &unreachable[0]["details"];
    assert_eq!(details["account"], REFUSED, "{details}");
    assert_eq!(
        details["regions"],
        serde_json::json!([REGIONS[0], REGIONS[1]]),
        "{details}"
    );
    assert!(
        unreachable[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("AccessDenied") || e.contains("not authorized")),
        "{}",
        unreachable[0]
    );
    // No other alert blames the reachable accounts, and nothing calls the refused account's
    // secrets missing (they may well be there).
    assert!(
        alerts.iter().all(|(_, m)| m["kind"] != "secret_missing"
            && m["kind"] != "aws_unreachable"
            && m["kind"] != "rotation_failed"),
        "{alerts:?}"
    );

    // Metrics per account and region.
    for account in ACCOUNTS {
        for region in REGIONS {
            let up = if account == REFUSED { 0 } else { 1 };
            let line =
                format!("rotationd_account_up{{account=\"{account}\",region=\"{region}\"}} {up}");
            assert!(metrics.contains(&line), "{line}\n{metrics}");
            if account != REFUSED {
                let line = format!(
                    "rotationd_rotations_total{{account=\"{account}\",outcome=\"succeeded\",region=\"{region}\",trigger=\"scheduled\"}} 1"
                );
                assert!(metrics.contains(&line), "{line}\n{metrics}");
            }
        }
    }
    assert!(
        !read_log().contains("seeded-by-the-test"),
        "a secret value reached the log"
    );

    // `rotationd status` lists the reachable account-regions' secrets by ARN and says
    // which account-regions it could not list.
    let out = env.cli(&["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = common::rotationd::stderr(&out);
    for (account, region, arn) in &arns {
        assert_eq!(
            stdout.contains(arn.as_str()),
            *account != REFUSED,
            "{account} {region}:\n{stdout}\n{stderr}"
        );
    }
    for region in REGIONS {
        let line = format!("warning: account {REFUSED} region {region}: cannot list its secrets");
        assert!(stderr.contains(&line), "{stderr}");
    }
}
