//! The rotation-function host (`tests/rotation_host/host.py`) and the dependent service
//! (`tests/rotation_host/dependent.py`), started like moto: from the `.venv` that
//! scripts/install-moto.sh fills, on loopback, each holding a stdin pipe so that it exits
//! with the test process.
//!
//! The host stands in front of moto and plays Secrets Manager with a rotation function
//! attached for the secrets registered with it (see the script's docstring); rotationd is
//! pointed at the host's endpoint and uses its real SDK clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::moto;

fn python() -> PathBuf {
    let p = moto::repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run scripts/install-moto.sh (scripts/test.sh does it)",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    moto::repo_root().join("tests/rotation_host").join(name)
}

/// One HTTP/1.1 request on loopback with a JSON body; (status, body).
pub fn http_json(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

pub struct RotationHost {
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
    log: PathBuf,
}

impl RotationHost {
    /// Starts a host in front of `moto_endpoint`; its log goes to `dir/rotation_host.log`.
    pub fn start(moto_endpoint: &str, dir: &Path) -> RotationHost {
        let log = dir.join("rotation_host.log");
        let mut child = Command::new(python())
            .arg(script("host.py"))
            .args(["--moto", moto_endpoint, "--port", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tests/rotation_host/host.py");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "rotation host did not start ({line:?}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        RotationHost {
            port,
            child,
            _stdin: stdin,
            log,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Attaches a rotation function to a secret (see host.py for the keys); returns the
    /// host's answer (`arn`, `lambda_arn`).
    pub fn register(&self, spec: serde_json::Value) -> serde_json::Value {
        let (status, body) = http_json(
            self.port,
            "POST",
            "/_rotation_host/functions",
            &spec.to_string(),
        );
        assert_eq!(status, 200, "register {spec}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every RotateSecret the host received and every step it invoked.
    pub fn calls(&self) -> serde_json::Value {
        let (status, body) = http_json(self.port, "GET", "/_rotation_host/calls", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The RotateSecret requests the host received for `arn`.
    pub fn rotate_calls(&self, arn: &str) -> usize {
        self.calls()["rotate_secret"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["secret"] == arn)
            .count()
    }

    /// The steps invoked for `arn`: (step, ok) in order; `ok` is None while running.
    pub fn steps(&self, arn: &str) -> Vec<(String, Option<bool>)> {
        self.calls()["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["secret"] == arn)
            .map(|c| (c["step"].as_str().unwrap().to_string(), c["ok"].as_bool()))
            .collect()
    }
}

impl Drop for RotationHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the dependent reports about itself (`--status`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DependentStatus {
    pub ok: u64,
    pub auth_failures: u64,
    pub errors: u64,
    pub rereads: u64,
    pub last_ok: Option<f64>,
    pub last_auth_failure: Option<f64>,
    pub version: Option<String>,
    pub username: Option<String>,
}

pub struct Dependent {
    child: Child,
    _stdin: ChildStdin,
    status: PathBuf,
    log: PathBuf,
}

impl Dependent {
    /// Starts the dependent app for `secret` against `endpoint` (moto), publishing its
    /// authentication failures as `namespace`/`AuthFailures` with `Service=<name>`.
    /// `reread`: "on-failure" or "never".
    pub fn start(
        endpoint: &str,
        secret: &str,
        namespace: &str,
        name: &str,
        reread: &str,
        dir: &Path,
    ) -> Dependent {
        Dependent::start_with(endpoint, secret, namespace, name, reread, dir, &[])
    }

    /// [`Dependent::start`] with more of dependent.py's options, e.g.
    /// `["--log-group", "/app/x", "--log-password"]`.
    pub fn start_with(
        endpoint: &str,
        secret: &str,
        namespace: &str,
        name: &str,
        reread: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Dependent {
        let status = dir.join(format!("{name}.status.json"));
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(python())
            .arg(script("dependent.py"))
            .args(["--endpoint", endpoint, "--secret-id", secret])
            .args(["--namespace", namespace, "--reread", reread])
            .arg("--dimension")
            .arg(format!("Service={name}"))
            .arg("--status")
            .arg(&status)
            .args(extra)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/rotation_host/dependent.py");
        let stdin = child.stdin.take().unwrap();
        let d = Dependent {
            child,
            _stdin: stdin,
            status,
            log,
        };
        // Up once it has logged in successfully.
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.status().is_none_or(|s| s.ok == 0) {
            assert!(
                Instant::now() < deadline,
                "dependent {name} never logged in:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    pub fn status(&self) -> Option<DependentStatus> {
        std::fs::read_to_string(&self.status)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dependent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
