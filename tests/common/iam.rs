//! Identities for the CLI's approval policy on moto: IAM users with access keys, and
//! sessions of roles, each a set of credentials the real binary runs with
//! ([`super::rotationd::Env::command_as`]). moto's STS GetCallerIdentity answers with the
//! IAM user an access key belongs to, and with `assumed-role/ROLE/SESSION` for a role's
//! session (docs/moto-findings.md).
//!
//! IAM users are created through moto's query API directly (the crate links no IAM SDK:
//! rotationd never calls IAM); roles are assumed with the STS SDK.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::moto::Moto;

/// Credentials the CLI runs with, and whose they are.
#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// What STS says these credentials are.
    pub arn: String,
}

/// One IAM query-protocol call to moto (`Action` and its parameters); the XML answer.
fn iam(moto: &Moto, params: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let mut body = String::from("Version=2010-05-08");
    for (k, v) in params {
        body.push_str(&format!("&{k}={}", enc(v)));
    }
    let mut s = TcpStream::connect(("127.0.0.1", moto.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // moto routes by the credential scope's service and does not check the signature.
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        moto.port(),
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "IAM {params:?}: {out}");
    out
}

/// The text of the first `<tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    &xml[start..end]
}

/// A new IAM user `name` under `path` (`/` or `/ops/`) with an access key.
pub fn user(moto: &Moto, name: &str, path: &str) -> Keys {
    let created = iam(
        moto,
        &[("Action", "CreateUser"), ("UserName", name), ("Path", path)],
    );
    let arn = element(&created, "Arn").to_string();
    let key = iam(moto, &[("Action", "CreateAccessKey"), ("UserName", name)]);
    Keys {
        access_key_id: element(&key, "AccessKeyId").to_string(),
        secret_access_key: element(&key, "SecretAccessKey").to_string(),
        session_token: None,
        arn,
    }
}

/// A session `session` of the role `role_arn` (moto needs no role to exist), assumed with
/// the test's own credentials.
pub async fn session(moto: &Moto, role_arn: &str, session: &str) -> Keys {
    let sts = aws_sdk_sts::Client::new(&super::moto::sdk_config(&moto.endpoint()));
    let c = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session)
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let keys = Keys {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: Some(c.session_token),
        arn: String::new(),
    };
    Keys {
        arn: caller(moto, &keys).await,
        ..keys
    }
}

/// What STS GetCallerIdentity says `keys` are.
pub async fn caller(moto: &Moto, keys: &Keys) -> String {
    use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
    let conf = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            &keys.access_key_id,
            &keys.secret_access_key,
            keys.session_token.clone(),
            None,
            "test",
        )))
        .endpoint_url(moto.endpoint())
        .build();
    aws_sdk_sts::Client::new(&conf)
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}
