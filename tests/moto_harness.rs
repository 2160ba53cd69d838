//! Proves the harness itself. This binary owns its servers
//! (Moto::start), so reset() and recording toggles cannot disturb other binaries.
mod common;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::RotationRulesType;
use common::moto::{self, Moto};
use std::io::{Read, Write};

// Tests in this binary that toggle the global recorder must not overlap.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn raw_post(m: &Moto, headers: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", m.port())).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn recorder_counts_operations_and_exposes_bodies() {
    let _g = SERIAL.lock().await;
    let m = Moto::start();
    let sm = Client::new(&moto::sdk_config(&m.endpoint()));
    sm.create_secret()
        .name("before-recording")
        .secret_string("x")
        .send()
        .await
        .unwrap();

    m.start_recording();
    let rules = RotationRulesType::builder()
        .automatically_after_days(90)
        .build();
    for name in ["rec-a", "rec-b"] {
        sm.create_secret()
            .name(name)
            .secret_string("x")
            .send()
            .await
            .unwrap();
    }
    let tok = "k".repeat(40);
    sm.rotate_secret()
        .secret_id("rec-a")
        .client_request_token(&tok)
        .rotation_rules(rules.clone())
        .send()
        .await
        .unwrap();
    sm.rotate_secret()
        .secret_id("rec-a")
        .rotation_rules(rules.clone())
        .send()
        .await
        .unwrap();
    sm.rotate_secret()
        .secret_id("rec-b")
        .rotation_rules(rules)
        .send()
        .await
        .unwrap();
    sm.list_secrets().send().await.unwrap();
    let _ = sm
        .describe_secret()
        .secret_id("missing")
        .send()
        .await
        .unwrap_err(); // errors are recorded too

    // Query protocol (SNS, as aws-sdk-sns sends it) and JSON protocol (SQS, aws-sdk-sqs >= 1.x).
    let sig = "Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0\r\n";
    let r = raw_post(
        &m,
        &format!("{sig}Content-Type: application/x-www-form-urlencoded\r\n"),
        "Action=CreateTopic&Name=t1&Version=2010-03-31",
    );
    assert!(r.contains("CreateTopicResponse"), "{r}");
    let sig = sig.replace("/sns/", "/sqs/");
    let r = raw_post(
        &m,
        &format!(
            "{sig}Content-Type: application/x-amz-json-1.0\r\nX-Amz-Target: AmazonSQS.ListQueues\r\n"
        ),
        "{}",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    m.stop_recording();
    sm.rotate_secret().secret_id("rec-b").send().await.unwrap(); // not recorded

    let ops = m.recorded_operations();
    println!("recorded: {ops:?}");
    assert_eq!(
        ops,
        [
            "CreateSecret",
            "CreateSecret",
            "RotateSecret",
            "RotateSecret",
            "RotateSecret",
            "ListSecrets",
            "DescribeSecret",
            "CreateTopic",
            "ListQueues"
        ]
    );
    assert_eq!(m.count("RotateSecret"), 3);
    assert_eq!(m.count_for_secret("RotateSecret", "rec-a"), 2);
    assert_eq!(m.count_for_secret("RotateSecret", "rec-b"), 1);
    assert_eq!(m.count_for_secret("CreateSecret", "rec-b"), 1);

    let reqs = m.recorded_requests();
    let rot = reqs.iter().find(|r| r.operation == "RotateSecret").unwrap();
    println!(
        "recorded RotateSecret: target={:?} url={} body={}",
        rot.target,
        rot.url,
        String::from_utf8_lossy(&rot.body)
    );
    assert_eq!(rot.target.as_deref(), Some("secretsmanager.RotateSecret"));
    let body = rot.json();
    assert_eq!(body["SecretId"], "rec-a");
    assert_eq!(body["ClientRequestToken"], tok.as_str());
    assert_eq!(body["RotationRules"]["AutomaticallyAfterDays"], 90);

    m.clear_recording();
    assert!(m.recorded_operations().is_empty());

    // reset() wipes all state.
    m.reset();
    let n = sm.list_secrets().send().await.unwrap().secret_list().len();
    assert_eq!(n, 0);
}

#[test]
fn drop_kills_the_server() {
    let m = Moto::start();
    let pid = m.pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(m);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "moto {pid} survived drop"
    );
}

#[test]
fn shared_survives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG would kill the server here, when the spawning thread exits.
    let endpoint = std::thread::spawn(|| moto::shared().endpoint())
        .join()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = moto::shared().pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let mut s = std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "GET /moto-api/data.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"));
    // Leave the pid where the outside check (FINDINGS.md) can look for an orphan.
    std::fs::write(
        concat!(env!("CARGO_TARGET_TMPDIR"), "/shared-moto.pid"),
        pid.to_string(),
    )
    .unwrap();
}
