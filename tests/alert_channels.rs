//! Escalations in each protocol's words, delivered by moto's SNS: one Publish with
//! `MessageStructure = "json"` gives the SQS subscriber and an `http` subscriber (served
//! here on loopback) the unchanged `rotationd.alert.v1` document, carries a plain-text
//! email and a 140-character SMS (read back from the recorded Publish request: moto
//! delivers neither), and the chat topic gets the custom notification of AWS's chat
//! integration for P1/P2 only. A canary secret value appears in none of them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::moto;
use common::rotationd::{Env, stderr, subscribed_topic};

const CANARY: &str = "canary-Value-9f3e2d1c-never-in-an-alert";

/// An HTTP endpoint on loopback that records every POST body (moto posts SNS
/// notifications to `http` subscribers itself).
fn http_subscriber() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/sns",
        listener.local_addr().unwrap().port()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let got = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                got.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

/// `application/x-www-form-urlencoded` value of `key` (the query protocol's Publish).
fn form_value(form: &str, key: &str) -> Option<String> {
    let raw = form
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[tokio::test]
async fn each_protocol_gets_its_own_rendering_and_chat_gets_p1_and_p2() {
    let env0 = moto::shared();
    env0.start_recording();
    let prefix = moto::unique_name("alerts/");
    let sns = aws_sdk_sns::Client::new(&moto::sdk_config(&env0.endpoint()));
    let sqs = aws_sdk_sqs::Client::new(&moto::sdk_config(&env0.endpoint()));
    let (chat_topic, chat_queue) = subscribed_topic(&sns, &sqs, "alerts-chat").await;
    let body = format!(
        r#"
[policy]
require_change_ticket = false
max_age = "93d"

[[selector]]
name_prefix = "{prefix}"
strategy = "single-user"
"#
    );
    let env = Env::new("alert-channels", &body).await;
    // The chat topic and its least severity go into [alerts].
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text.replacen(
        "[alerts]\n",
        &format!("[alerts]\nchat_topic_arn = \"{chat_topic}\"\n"),
        1,
    );
    std::fs::write(&env.config, text).unwrap();
    let (url, posted) = http_subscriber();
    sns.subscribe()
        .topic_arn(&env.security_topic_arn)
        .protocol("http")
        .endpoint(&url)
        .send()
        .await
        .unwrap();

    // A P1: a dangling AWSPENDING stops the rotation as stuck.
    let stuck = format!("{prefix}stuck");
    env.rotatable_secret_with(&stuck, CANARY).await;
    env.leave_pending(&stuck, "pending-1111-2222-3333-444444444444")
        .await;
    let o = env.cli(&[
        "rotate",
        "--secret",
        &stuck,
        "--ticket",
        "INC-1",
        "--reason",
        "test",
        "--emergency",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // P3 notices: a successful rotation (not for chat).
    let fine = format!("{prefix}fine");
    env.rotatable_secret_with(&fine, CANARY).await;
    let o = env.cli(&[
        "rotate",
        "--secret",
        &fine,
        "--ticket",
        "INC-2",
        "--reason",
        "test",
        "--emergency",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // SQS: the machine document, byte for byte what the outbox holds.
    let security = env.security_messages(Duration::from_secs(10)).await;
    let (subject, doc) = security
        .iter()
        .find(|(_, m)| m["kind"] == "rotation_stuck")
        .unwrap_or_else(|| panic!("no rotation_stuck in {security:#?}"));
    assert_eq!(subject, &format!("[P1] rotation_stuck {stuck}"));
    assert_eq!(doc["schema"], "rotationd.alert.v1");
    let stored: String = env
        .db()
        .query_row(
            "SELECT message FROM alert_outbox WHERE kind = 'rotation_stuck'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        doc,
        &serde_json::from_str::<serde_json::Value>(&stored).unwrap()
    );

    // http: the same document, as the notification's Message.
    let http = env
        .eventually(Duration::from_secs(10), || {
            posted
                .lock()
                .unwrap()
                .iter()
                .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap())
                .find(|n| n["Subject"] == subject.as_str())
        })
        .await
        .expect("the http subscriber got no rotation_stuck notification");
    let http_doc: serde_json::Value =
        serde_json::from_str(http["Message"].as_str().unwrap()).unwrap();
    assert_eq!(&http_doc, doc);

    // The recorded Publish: one request, a body per protocol.
    let publishes: Vec<String> = env0
        .recorded_requests()
        .into_iter()
        .filter(|r| r.operation == "Publish")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    let to_security = publishes
        .iter()
        .find(|p| {
            form_value(p, "TopicArn").as_deref() == Some(env.security_topic_arn.as_str())
                && form_value(p, "Subject").as_deref() == Some(subject.as_str())
        })
        .expect("the Publish to Security was not recorded");
    assert_eq!(
        form_value(to_security, "MessageStructure").as_deref(),
        Some("json")
    );
    let bodies: serde_json::Value =
        serde_json::from_str(&form_value(to_security, "Message").unwrap()).unwrap();
    let email = bodies["email"].as_str().unwrap();
    assert!(email.contains("Severity: P1"), "{email}");
    assert!(email.contains(&format!("Secret:   {stuck}")), "{email}");
    assert!(email.contains("What to do:\n  1. "), "{email}");
    assert!(
        email.contains(&format!("$ rotationd status --secret {stuck}")),
        "{email}"
    );
    assert!(email.contains("dedupe key: "), "{email}");
    // The email's first command works as written.
    let o = env.cli(&["status", "--secret", &stuck]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains(&stuck) && table.contains("stuck"), "{table}");
    assert!(!table.contains(&fine), "{table}");
    let o = env.cli(&["status", "--secret", "not/managed"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not/managed is not a secret rotationd manages"));
    let sms = bodies["sms"].as_str().unwrap();
    assert!(sms.len() <= 140, "{sms}");
    assert!(sms.starts_with("rotationd [P1] rotation_stuck "), "{sms}");
    for key in ["default", "sqs", "http", "https", "lambda", "email-json"] {
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(bodies[key].as_str().unwrap()).unwrap(),
            *doc,
            "{key}"
        );
    }

    // Chat: the P1s in the custom-notification schema (the stuck rotation, and the
    // breach_suspected page of each emergency rotation), no P3 notice.
    let mut chat: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while chat.len() < 3 && std::time::Instant::now() < deadline {
        chat.extend(
            env.messages(&chat_queue, Duration::from_secs(1))
                .await
                .into_iter()
                .map(|(_, m)| m),
        );
    }
    // And nothing more after them.
    chat.extend(
        env.messages(&chat_queue, Duration::from_secs(1))
            .await
            .into_iter()
            .map(|(_, m)| m),
    );
    let kinds: Vec<&str> = chat
        .iter()
        .map(|c| c["metadata"]["eventType"].as_str().unwrap_or_default())
        .collect();
    let mut sorted = kinds;
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["breach_suspected", "breach_suspected", "rotation_stuck"],
        "{chat:#?}"
    );
    assert!(
        chat.iter().all(|c| c["content"]["keywords"][0] == "P1"),
        "{chat:#?}"
    );
    let stuck_chat: Vec<&serde_json::Value> = chat
        .iter()
        .filter(|c| c["metadata"]["eventType"] == "rotation_stuck")
        .collect();
    let chat = stuck_chat;
    assert_eq!(chat[0]["version"], "1.0");
    assert_eq!(chat[0]["source"], "custom");
    assert_eq!(chat[0]["metadata"]["eventType"], "rotation_stuck");
    assert!(
        chat[0]["content"]["title"]
            .as_str()
            .unwrap()
            .contains(&format!("[P1] Rotation stuck: {stuck}"))
    );
    let notices = env.notify_messages(Duration::from_secs(5)).await;
    assert!(
        notices
            .iter()
            .any(|(_, m)| m["kind"] == "rotation_completed"),
        "{notices:#?}"
    );

    // The canary is in no rendering and no request body.
    for p in &publishes {
        assert!(!p.contains(CANARY), "a Publish carried the secret value");
    }
    for b in posted.lock().unwrap().iter() {
        assert!(!b.contains(CANARY));
    }
    assert!(!chat.iter().any(|c| c.to_string().contains(CANARY)));
}
