//! Test harness: a real moto server (Python `moto[server]`, pinned by
//! `scripts/install-moto.sh`) spoken to over HTTP.
//!
//! # Usage
//! ```ignore
//! mod common;
//! use common::moto::{self, Moto};
//!
//! #[tokio::test]
//! async fn rotates() {
//!     let moto = moto::shared();                      // one server per test binary
//!     let sm = aws_sdk_secretsmanager::Client::new(&moto::sdk_config(&moto.endpoint()));
//!     let name = moto::unique_name("rotates");       // isolate from parallel tests
//!     ...
//! }
//! ```
//!
//! # Isolation rules (tests in one binary run on parallel threads)
//! * All tests of a binary share ONE server (`shared()`), and moto's state is
//!   global to it (one account 123456789012, all regions). Use unique secret
//!   names per test (`unique_name`), and for ListSecrets use a unique name
//!   prefix as a `name` filter rather than assuming the list is yours.
//! * Never call `reset()` on the shared server from a test that runs in
//!   parallel with others: it wipes every backend. `reset()` is for a binary
//!   that owns its server (`Moto::start()`), or a binary with a single test.
//! * The request recorder is global to the server too. It records every service
//!   request (headers, method, url, base64 body). Tests that count requests
//!   must either filter by the secret they own (`count_for_secret`, which reads
//!   `SecretId`/`Name` from the JSON body) or live in their own test binary
//!   (own `tests/*.rs` file => own process => own server). Also note that
//!   start/stop/clear are global: two tests toggling recording concurrently
//!   will interfere, so in a shared binary start recording once (`recording()`)
//!   and never stop or clear it, and count only your own secret's requests.
//! * The moto process is a child of the test binary; it exits when the test
//!   binary exits (any way, even SIGKILL), because it watches its stdin pipe,
//!   and is killed explicitly when a non-shared `Moto` is dropped.
//!
//! The HTTP helpers here are blocking std::net calls to 127.0.0.1; they are
//! fine to call from `#[tokio::test]` (they take milliseconds).
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Python run by the venv's interpreter: watch stdin in a daemon thread and
/// `os._exit` as soon as it closes (the test binary exited or dropped us),
/// then run the real `moto_server` script in this same process. One process,
/// no grandchild, no libc, and it works even though PR_SET_PDEATHSIG would not
/// (that fires when the *spawning thread* exits, i.e. when the first test
/// that called `shared()` finishes).
const WRAPPER: &str = r#"
import os, sys, threading, runpy
def _watch():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
# moto's recorder appends each request from the thread serving it, through a buffered
# file: a record over the buffer size is written in several chunks, and two threads'
# chunks interleave (docs/moto-findings.md). One lock makes each record whole.
from moto.moto_api._internal.recorder.models import Recorder
_lock = threading.Lock()
_record = Recorder._record_request
def _locked_record(self, *args, **kwargs):
    with _lock:
        return _record(self, *args, **kwargs)
Recorder._record_request = _locked_record
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"#;

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct Moto {
    port: u16,
    child: Mutex<Option<Child>>,
    // Held only so the pipe stays open for the process's lifetime.
    _stdin: Mutex<Option<ChildStdin>>,
    recording_path: PathBuf,
    log_path: PathBuf,
}

/// The one server of this test binary, started on first use. Never dropped
/// (statics are not), but the process ends with the test binary anyway.
pub fn shared() -> &'static Moto {
    static SHARED: OnceLock<Moto> = OnceLock::new();
    SHARED.get_or_init(Moto::start)
}

/// Starts the request recorder of the [`shared`] server, once per test binary: what a
/// binary whose tests count requests (by their own secret) calls first in each test.
pub fn recording() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| shared().start_recording());
}

/// Repository root (where `.venv/` and `scripts/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A name unique within this test process and across processes run at the
/// same time: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An `SdkConfig` for talking to moto: static credentials testing/testing,
/// region us-east-1, endpoint_url = `endpoint`. Built without reading the
/// environment or ~/.aws, so the developer's AWS setup cannot leak in.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "moto-test",
        )))
        .endpoint_url(endpoint)
        .build()
}

/// One request as moto's recorder saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `RotateSecret` (from `X-Amz-Target: secretsmanager.RotateSecret`,
    /// `AmazonSQS.ReceiveMessage` -> `ReceiveMessage`), or `Action=` of a
    /// query-protocol body/URL (SNS `Publish`), else `"<METHOD> <path>"`
    /// for REST protocols.
    pub operation: String,
    /// Full target, e.g. `secretsmanager.RotateSecret`, if any.
    pub target: Option<String>,
    pub method: String,
    pub url: String,
    /// Decoded request body.
    pub body: Vec<u8>,
    /// `User-Agent` plus `X-Amz-User-Agent`: rotationd's requests carry `app/rotationd`.
    pub user_agent: String,
    /// Every header, names in lowercase.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// Body parsed as JSON (JSON-protocol services), or `Null`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `SecretId` (or `Name` for CreateSecret) from a JSON body.
    pub fn secret_id(&self) -> Option<String> {
        let v = self.json();
        v.get("SecretId")
            .or_else(|| v.get("Name"))
            .and_then(|s| s.as_str())
            .map(str::to_owned)
    }
}

impl Moto {
    /// Start a new moto server on a free loopback port and wait until it answers.
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    /// Starts a server on `port` (an outage test restarts one where the first was).
    pub fn start_on(port: u16) -> Moto {
        let root = repo_root();
        let venv = root.join(".venv/bin");
        let moto_server = venv.join("moto_server");
        let python = venv.join("python");
        if !moto_server.exists() || !python.exists() {
            panic!(
                "moto server not found at {}: run scripts/install-moto.sh (scripts/test.sh does it)",
                moto_server.display()
            );
        }

        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Cargo gives integration tests a scratch dir under target/.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "moto-{}-{}",
            std::process::id(),
            n
        ));
        fs::create_dir_all(&dir).expect("create moto temp dir");
        let recording_path = dir.join("recording.jsonl");
        let log_path = dir.join("server.log");
        fs::write(&recording_path, b"").expect("create recording file");
        let log = fs::File::create(&log_path).expect("create moto log file");

        let mut child = Command::new(&python)
            .arg("-c")
            .arg(WRAPPER)
            .arg(&moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_RECORDER_FILEPATH", &recording_path)
            .env_remove("MOTO_ENABLE_RECORDING")
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn {}: {e}", moto_server.display()));
        let stdin = child.stdin.take();

        let moto = Moto {
            port,
            child: Mutex::new(Some(child)),
            _stdin: Mutex::new(stdin),
            recording_path,
            log_path,
        };
        moto.wait_ready();
        moto
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.lock().unwrap().as_mut().unwrap().try_wait() {
                panic!(
                    "moto server exited during startup ({status}); its output:\n{}",
                    self.server_log()
                );
            }
            if let Ok((status, _)) = self.http("GET", "/moto-api/data.json")
                && status == 200
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "moto server on port {} did not answer within {:?}; its output:\n{}",
                    self.port,
                    STARTUP_TIMEOUT,
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// OS pid of the moto process (None once killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(|c| c.id())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Path of the server's combined stdout/stderr log (for debugging).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn server_log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Wipe ALL state of ALL services (not the recording). See module docs.
    pub fn reset(&self) {
        self.post_ok("/moto-api/reset");
    }

    pub fn start_recording(&self) {
        self.post_ok("/moto-api/recorder/start-recording");
    }

    pub fn stop_recording(&self) {
        self.post_ok("/moto-api/recorder/stop-recording");
    }

    /// Truncate the recording file.
    pub fn clear_recording(&self) {
        self.post_ok("/moto-api/recorder/reset-recording");
    }

    /// Every service request recorded since the last clear (moto-api calls excluded).
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        let text = fs::read_to_string(&self.recording_path).unwrap_or_else(|e| {
            panic!("read moto recording {}: {e}", self.recording_path.display())
        });
        // moto's threaded server writes each record and its newline in two writes, so two
        // requests recorded at once can share a line ("{...}{...}\n\n"), and the record
        // being written while we read can be cut short at the end. Read a stream of JSON
        // values rather than lines, and stop at a truncated last one.
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
            match v {
                Ok(v) => out.push(parse_entry(&v)),
                Err(e) if e.is_eof() => break,
                Err(e) => panic!(
                    "corrupt moto recording {} ({e})",
                    self.recording_path.display()
                ),
            }
        }
        out.retain(|r| !url_path(&r.url).starts_with("/moto-api/"));
        out
    }

    /// Operation names in order, e.g. `["CreateSecret", "RotateSecret"]`.
    pub fn recorded_operations(&self) -> Vec<String> {
        self.recorded_requests()
            .into_iter()
            .map(|r| r.operation)
            .collect()
    }

    /// How many recorded requests were operation `op` (e.g. `"RotateSecret"`).
    pub fn count(&self, op: &str) -> usize {
        self.recorded_requests()
            .iter()
            .filter(|r| r.operation == op)
            .count()
    }

    /// How many recorded `op` requests named `secret` (by `SecretId`, or
    /// `Name` for CreateSecret, given as the name or as its ARN) in their JSON
    /// body — safe under parallel tests.
    pub fn count_for_secret(&self, op: &str, secret: &str) -> usize {
        let arn_part = format!(":secret:{secret}-");
        self.recorded_requests()
            .iter()
            .filter(|r| {
                r.operation == op
                    && r.secret_id()
                        .is_some_and(|id| id == secret || id.contains(&arn_part))
            })
            .count()
    }

    /// Operation names of rotationd's own requests, in order.
    pub fn rotationd_operations(&self) -> Vec<String> {
        self.rotationd_requests()
            .into_iter()
            .map(|r| r.operation)
            .collect()
    }

    /// Requests made by rotationd itself (its SDK clients set the app name `rotationd`).
    pub fn rotationd_requests(&self) -> Vec<RecordedRequest> {
        self.recorded_requests()
            .into_iter()
            .filter(|r| r.user_agent.contains("app/rotationd"))
            .collect()
    }

    fn post_ok(&self, path: &str) {
        match self.http("POST", path) {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!("moto {path} answered {status}: {body}"),
            Err(e) => panic!("moto {path} failed: {e}"),
        }
    }

    /// Minimal blocking HTTP/1.1 request without a body; returns (status, body).
    fn http(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text:.200}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string();
        Ok((status, body))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    // Bind, read, drop: there is a tiny race until moto binds it; acceptable here.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    }
}

fn parse_entry(v: &serde_json::Value) -> RecordedRequest {
    let method = v["method"].as_str().unwrap_or("").to_string();
    let url = v["url"].as_str().unwrap_or("").to_string();
    let raw = v["body"].as_str().unwrap_or("");
    let body = if v["body_encoded"].as_bool().unwrap_or(false) {
        base64_decode(raw)
    } else {
        raw.as_bytes().to_vec()
    };
    let target = v["headers"].as_object().and_then(|h| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned)
    });
    let operation = if let Some(t) = &target {
        t.rsplit('.').next().unwrap_or(t).to_string()
    } else if let Some(a) = form_action(&String::from_utf8_lossy(&body))
        .or_else(|| url.split_once('?').and_then(|(_, q)| form_action(q)))
    {
        a
    } else if let Some(op) = url.split_once('?').and_then(|(_, q)| s3_operation(q)) {
        op
    } else {
        format!(
            "{method} {}",
            url_path(&url).split('?').next().unwrap_or("")
        )
    };
    let user_agent = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter(|(k, _)| {
                    k.eq_ignore_ascii_case("user-agent")
                        || k.eq_ignore_ascii_case("x-amz-user-agent")
                })
                .filter_map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    RecordedRequest {
        operation,
        target,
        method,
        url,
        body,
        user_agent,
        headers,
    }
}

/// The S3 operation a REST query names: the Rust SDK marks several with `x-id=`
/// (`PutObject`, `GetObject`), and a `list-type=2` listing is `ListObjectsV2`.
fn s3_operation(query: &str) -> Option<String> {
    let mut pairs = query.split('&');
    if let Some(op) = pairs.clone().find_map(|kv| kv.strip_prefix("x-id=")) {
        return Some(op.to_owned());
    }
    pairs
        .any(|kv| kv == "list-type=2")
        .then(|| "ListObjectsV2".to_owned())
}

/// `Action=` value of an application/x-www-form-urlencoded string.
fn form_action(form: &str) -> Option<String> {
    form.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_owned)
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
