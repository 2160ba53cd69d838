//! Running the real `rotationd` binary against the shared moto server.
//!
//! [`Env`] owns a temporary directory with a config file pointing at moto (static test
//! credentials, a per-test SNS topic subscribed by a per-test SQS queue, a state
//! database), runs CLI commands, starts the daemon, and reads the state database and the
//! Security queue back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::types::RotationRulesType;

use super::moto::{self, Moto};

pub struct Env {
    pub moto: &'static Moto,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub sm: aws_sdk_secretsmanager::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub security_queue_url: String,
    pub security_topic_arn: String,
    /// The dependent teams' topic (`notify_topic_arn`) and the queue subscribed to it.
    pub notify_queue_url: String,
    pub metrics_port: u16,
}

/// [`Env::rotatable_secret`] through any client (another account or region); returns the
/// secret's ARN.
pub async fn rotatable_secret_in(
    sm: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
) -> String {
    let arn = sm
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    sm.rotate_secret()
        .secret_id(&arn)
        .rotation_rules(
            RotationRulesType::builder()
                .automatically_after_days(90)
                .build(),
        )
        .send()
        .await
        .unwrap();
    arn
}

/// An SNS topic with an SQS queue subscribed to it: (topic ARN, queue URL).
/// A new SQS queue: (URL, ARN).
pub async fn queue_with_arn(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

/// A new SNS topic with an SQS queue subscribed: (topic ARN, queue URL).
pub async fn subscribed_topic(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> (String, String) {
    let topic = sns
        .create_topic()
        .name(moto::unique_name(name).replace('/', "-"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let (queue_url, queue_arn) = queue_with_arn(
        sqs,
        &moto::unique_name(&format!("{name}-q")).replace('/', "-"),
    )
    .await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .unwrap();
    (topic, queue_url)
}

/// Every message body on `queue_url`, deleting them as they are read.
pub async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if r.messages().is_empty() {
            return bodies;
        }
        for m in r.messages() {
            bodies.push(m.body().unwrap_or_default().to_string());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
}

/// A free loopback port (bound, read, released).
/// Writes a config file as an operator would: owner-only, whatever the umask, since
/// `rotationd run` refuses a config others may write.
pub fn write_config(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Env {
    /// A fresh environment; `body` is appended to the generated config (secrets,
    /// selectors, policy).
    pub async fn new(test: &str, body: &str) -> Env {
        let moto = moto::shared();
        let conf = moto::sdk_config(&moto.endpoint());
        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        let sns = aws_sdk_sns::Client::new(&conf);
        let sqs = aws_sdk_sqs::Client::new(&conf);
        let (topic, queue_url) = subscribed_topic(&sns, &sqs, &format!("{test}-security")).await;
        let (notify_topic, notify_queue_url) =
            subscribed_topic(&sns, &sqs, &format!("{test}-notify")).await;
        let dir = tempfile::tempdir().unwrap();
        let metrics_port = free_port();
        let config = dir.path().join("rotationd.toml");
        let text = format!(
            r#"[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"

[daemon]
state_path = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
reconcile_interval = "1h"

[alerts]
security_topic_arn = "{topic}"
notify_topic_arn = "{notify_topic}"

{body}
"#,
            endpoint = moto.endpoint(),
            state = dir.path().join("state.db").display(),
        );
        write_config(&config, &text);
        Env {
            moto,
            dir,
            config,
            sm,
            sqs,
            security_queue_url: queue_url,
            security_topic_arn: topic,
            notify_queue_url,
            metrics_port,
        }
    }

    /// Points rotationd at `endpoint` instead of moto (the fault-injecting proxy).
    pub fn use_endpoint(&self, endpoint: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let from = format!("endpoint_url = \"{}\"", self.moto.endpoint());
        assert!(text.contains(&from));
        let to = format!("endpoint_url = \"{endpoint}\"");
        std::fs::write(&self.config, text.replacen(&from, &to, 1)).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_rotationd")), args)
    }

    /// [`Env::command`] of another build of rotationd (`tests/release_hooks.rs`).
    pub fn command_of(&self, binary: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(binary);
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            // Never let the credential chain reach for an instance metadata service.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("ROTATIOND_TEST_FAILPOINT")
            .env_remove("ROTATIOND_TEST_CLOCK_OFFSET")
            .env("NO_COLOR", "1");
        c
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// [`Env::command`] with the credentials `keys` (an IAM user's access key, a role's
    /// session): who STS says runs the command.
    pub fn command_as(&self, keys: &super::iam::Keys, args: &[&str]) -> Command {
        let mut c = self.command(args);
        c.env("AWS_ACCESS_KEY_ID", &keys.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &keys.secret_access_key);
        match &keys.session_token {
            Some(t) => c.env("AWS_SESSION_TOKEN", t),
            None => c.env_remove("AWS_SESSION_TOKEN"),
        };
        c
    }

    /// [`Env::command_as`], run to its end.
    pub fn cli_as(&self, keys: &super::iam::Keys, args: &[&str]) -> Output {
        self.command_as(keys, args).output().unwrap()
    }

    /// `rotationd rotate --emergency` (no window to wait for) of `secret` under `ticket`,
    /// for `reason`, not yet run.
    pub fn rotate_emergency_command(&self, secret: &str, ticket: &str, reason: &str) -> Command {
        self.command(&[
            "rotate",
            "--secret",
            secret,
            "--ticket",
            ticket,
            "--reason",
            reason,
            "--emergency",
        ])
    }

    /// [`Env::rotate_emergency_command`], run to its end.
    pub fn rotate_emergency(&self, secret: &str, ticket: &str, reason: &str) -> Output {
        self.rotate_emergency_command(secret, ticket, reason)
            .output()
            .unwrap()
    }

    /// Rewrites the config file with `edit` (e.g. a `replace` of a line the env wrote).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
    }

    /// Appends `toml` to the config file (sections only known once the env exists).
    pub fn append_config(&self, toml: &str) {
        self.edit_config(|text| text + toml);
    }

    /// Adds `line` (`key = value`) at the top of the env's `[section]` (`daemon`,
    /// `alerts`), overriding what the env wrote there.
    pub fn set_in(&self, section: &str, line: &str) {
        let header = format!("[{section}]\n");
        self.edit_config(|text| {
            assert!(text.contains(&header), "no {header} in the config");
            text.replacen(&header, &format!("{header}{line}\n"), 1)
        });
    }

    pub fn daemon(&self, envs: &[(&str, &str)]) -> Daemon {
        let mut c = self.command(&["run"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        Daemon(
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// The daemon with its log appended to `rotationd.log` in the env's directory (returned;
    /// a restarted daemon appends to the same file): a long run logs more than a pipe
    /// nobody reads yet can hold.
    pub fn daemon_logged(&self, envs: &[(&str, &str)]) -> (Daemon, PathBuf) {
        let log = self.dir.path().join("rotationd.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut c = self.command(&["run"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        let daemon = Daemon(c.stdout(Stdio::null()).stderr(file).spawn().unwrap());
        (daemon, log)
    }

    /// [`Env::daemon_logged`], waited for until ready (its first reconcile done); the
    /// log is in the panic message when it does not get there.
    pub async fn daemon_ready(&self, envs: &[(&str, &str)]) -> (Daemon, PathBuf) {
        let (daemon, log) = self.daemon_logged(envs);
        assert!(
            self.wait_ready(Duration::from_secs(30)).await,
            "rotationd did not get ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        (daemon, log)
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("state.db")).unwrap()
    }

    /// Creates a secret with rotation configured (moto sets RotationEnabled when rules
    /// are set, and rotates once at once: the secret then has AWSCURRENT and AWSPREVIOUS).
    pub async fn rotatable_secret(&self, name: &str) {
        self.rotatable_secret_with(name, "initial-test-value").await;
    }

    /// [`Env::rotatable_secret`] with a chosen initial value (written by the test, never
    /// by rotationd).
    pub async fn rotatable_secret_with(&self, name: &str, value: &str) {
        rotatable_secret_in(&self.sm, name, value).await;
    }

    /// Leaves a rotation half done, as a rotation function that died after createSecret
    /// would: RotateSecret with a function that does not exist fails, and moto keeps the
    /// new version `token` labelled AWSPENDING only (docs/moto-findings.md, c). No secret
    /// value is written.
    pub async fn leave_pending(&self, name: &str, token: &str) {
        let err = self
            .sm
            .rotate_secret()
            .secret_id(name)
            .client_request_token(token)
            .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:died")
            .send()
            .await;
        assert!(
            err.is_err(),
            "the missing rotation function should have failed"
        );
        let stages = self.stages(name).await;
        assert_eq!(
            stages.get(token).map(|s| s.as_slice()),
            Some(&["AWSPENDING".to_string()][..]),
            "{stages:?}"
        );
    }

    pub async fn stages(&self, name: &str) -> std::collections::HashMap<String, Vec<String>> {
        self.sm
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .unwrap()
            .version_ids_to_stages
            .unwrap_or_default()
    }

    pub fn version_with(
        stages: &std::collections::HashMap<String, Vec<String>>,
        label: &str,
    ) -> Option<String> {
        stages
            .iter()
            .find(|(_, l)| l.iter().any(|x| x == label))
            .map(|(v, _)| v.clone())
    }

    /// RotateSecret requests rotationd itself sent for `name`.
    pub fn rotations_by_rotationd(&self, name: &str) -> usize {
        let arn_part = format!(":secret:{name}-");
        self.moto
            .rotationd_requests()
            .iter()
            .filter(|r| {
                r.operation == "RotateSecret"
                    && r.secret_id()
                        .is_some_and(|id| id == name || id.contains(&arn_part))
            })
            .count()
    }

    /// SNS messages that reached Security's queue: (subject, parsed JSON message).
    pub async fn security_messages(&self, wait: Duration) -> Vec<(String, serde_json::Value)> {
        self.messages(&self.security_queue_url, wait).await
    }

    /// SNS messages that reached the dependent teams' queue.
    pub async fn notify_messages(&self, wait: Duration) -> Vec<(String, serde_json::Value)> {
        self.messages(&self.notify_queue_url, wait).await
    }

    /// SNS messages that reached `queue_url` (a queue made by [`subscribed_topic`]).
    pub async fn messages(
        &self,
        queue_url: &str,
        wait: Duration,
    ) -> Vec<(String, serde_json::Value)> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let r = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in r.messages() {
                let envelope: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
                let subject = envelope["Subject"].as_str().unwrap_or_default().to_string();
                let message: serde_json::Value =
                    serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
                out.push((subject, message));
            }
            if !out.is_empty() || Instant::now() > deadline {
                return out;
            }
        }
    }

    /// Polls `f` until it returns `Some` or `timeout` passes.
    pub async fn eventually<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The first column of every row of `sql`, as text: for failure messages and listings
/// (write the row as one `||`-joined expression).
pub fn rows(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut q = db.prepare(sql).unwrap();
    q.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A plain HTTP GET on loopback: (status, body), or `None` when nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

impl Env {
    /// Waits until the daemon's `/readyz` answers 200 (a reconcile succeeded).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let port = self.metrics_port;
        self.eventually(timeout, || {
            http_get(port, "/readyz").filter(|(s, _)| *s == 200)
        })
        .await
        .is_some()
    }

    /// The daemon's `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// [`metric`] of the daemon's `/metrics` now.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric(&self.metrics(), name, labels)
    }

    /// Waits until the daemon has finished `n` more reconciles (its
    /// `rotationd_last_reconcile_success_timestamp_seconds` moved `n` times; whole seconds,
    /// so two reconciles within one second count once, which only waits longer). For a
    /// daemon that reconciles every few seconds: a positive sign that the work a reconcile
    /// does (and the alert it must not raise again) has been done.
    pub async fn reconciles(&self, n: usize, timeout: Duration) -> bool {
        const LAST: &str = "rotationd_last_reconcile_success_timestamp_seconds";
        let mut last = self.metric(LAST, &[]);
        let mut seen = 0;
        self.eventually(timeout, || {
            let now = self.metric(LAST, &[]);
            if now != last {
                last = now;
                seen += 1;
            }
            (seen >= n).then_some(())
        })
        .await
        .is_some()
    }

    /// Waits until the daemon has called `operation` (e.g. `GetMetricData`, as counted by
    /// `rotationd_aws_requests_total`) `n` more times: with `n` = 2, one whole call began
    /// after the wait did, and was answered.
    pub async fn calls(&self, operation: &str, n: usize, timeout: Duration) -> bool {
        let label = format!("operation=\"{operation}\"");
        let count = || self.metric("rotationd_aws_requests_total", &[&label]);
        let from = count();
        self.eventually(timeout, || (count() >= from + n as f64).then_some(()))
            .await
            .is_some()
    }
}

/// The sum of every sample of `name` in the Prometheus `text` whose labels contain each of
/// `labels` (0 if none).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.iter().all(|want| rest.contains(want))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

/// How many lines of the log file at `path` contain `needle` (0 while there is no file).
pub fn log_lines(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A running `rotationd run`, killed if a failing test leaves it behind.
pub struct Daemon(pub Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sends SIGTERM and waits for the exit status (at most `timeout`).
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
