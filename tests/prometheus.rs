//! The shipped alerting rules and the Grafana dashboard against a real Prometheus server
//! (Debian's `prometheus`, installed by scripts/test.sh with promtool) scraping a real
//! daemon every second: the first failed rotation after a start makes RotationFailures
//! fire (its counter is exported at 0 from the start, so `increase()` sees the change); a
//! stuck secret, an overdue secret and a departure at risk (against the daemon's own
//! `sla_warning`) each make their alert pending or firing; every PromQL expression of
//! `grafana/rotationd.json` runs and names metrics the daemon exports.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::events;
use common::moto;
use common::rotation_host::RotationHost;
use common::rotationd::{Env, free_port, http_get};

struct Prometheus {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// A server scraping `127.0.0.1:metrics_port` every second with the shipped rules,
    /// evaluated every second.
    fn start(metrics_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prometheus/rotationd.rules.yml");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: rotationd\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus (Debian's prometheus package; scripts/test.sh installs it)");
        let p = Prometheus {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/-/ready").is_none_or(|(s, _)| s != 200) {
            assert!(Instant::now() < deadline, "prometheus did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.port, path).expect("prometheus answers");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("{path}: {e}: {body}");
        });
        assert_eq!(status, 200, "{path}: {body}");
        v
    }

    /// An instant query's result vector.
    fn query(&self, promql: &str) -> serde_json::Value {
        let v = self.get(&format!("/api/v1/query?query={}", encode(promql)));
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].clone()
    }

    /// Waits until `promql` returns a sample > 0.
    async fn until_positive(&self, promql: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.query(promql);
            if r.as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v > 0.0)
                })
            }) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The state (`pending` or `firing`) of alert `name`, once it has one.
    async fn alert_state(&self, name: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get("/api/v1/alerts");
            if let Some(a) = v["data"]["alerts"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["labels"]["alertname"] == name))
            {
                return a["state"].as_str().map(str::to_string);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A secret with no rotation configured: every attempt on it fails in preflight.
async fn unrotatable(env: &Env, name: &str) {
    env.sm
        .create_secret()
        .name(name)
        .secret_string("v")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_first_failed_rotation_after_a_start_fires_rotation_failures() {
    let name = moto::unique_name("prom/nofunction");
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false

[[secret]]
id = "{name}"
strategy = "single-user"
custodians = ["alice"]
"#
    );
    let env = Env::new("prom-failure", &body).await;
    let (queue, bus) = events::queue_and_bus(&env, "prom-failure").await;
    events::add_events(&env, &queue, &bus, events::ALLOW_ACCOUNT);
    unrotatable(&env, &name).await;
    let (_daemon, log) = env.daemon_ready(&[]).await;
    let prom = Prometheus::start(env.metrics_port);
    // Two scrapes of the zero before anything fails.
    let series = r#"rotationd_rotations_total{trigger="departure",outcome="failed"}"#;
    assert!(
        prom.until_positive(
            &format!("count_over_time({series}[1m]) >= 2"),
            Duration::from_secs(30)
        )
        .await,
        "the failure counter was not scraped at 0 first"
    );
    assert_eq!(prom.query(&format!("sum({series})"))[0]["value"][1], "0");
    events::send(
        &env,
        &queue,
        &events::iam_delete_user("alice", "prom-dep-1"),
    )
    .await;
    let state = prom
        .alert_state("RotationFailures", Duration::from_secs(60))
        .await;
    assert!(
        matches!(state.as_deref(), Some("pending" | "firing")),
        "RotationFailures is {state:?}:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Every alert kind × severity was there at 0 too.
    let zeros = prom.query(r#"count(rotationd_alerts_published_total)"#);
    assert!(
        zeros[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 17
    );
}

#[tokio::test]
async fn a_stuck_secret_makes_its_alert_pending() {
    // A dangling AWSPENDING that no rotation of rotationd's left (a rotation function that
    // died): moto dates every version "now", so rotationd's clock runs an hour ahead for
    // the version to look older than rotation_timeout.
    let name = moto::unique_name("prom/stuck");
    let body = format!(
        r#"
[policy]
max_age = "93d"
rotation_timeout = "8s"

[[secret]]
id = "{name}"
strategy = "single-user"
change_ticket = "CHG-1"
"#
    );
    let env = Env::new("prom-stuck", &body).await;
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("reconcile_interval = \"1h\"", "reconcile_interval = \"2s\"");
    std::fs::write(&env.config, text).unwrap();
    env.rotatable_secret(&name).await;
    env.leave_pending(&name, "promstuckpromstuckpromstuck0000001")
        .await;
    let (_daemon, _log) = env
        .daemon_ready(&[("ROTATIOND_TEST_CLOCK_OFFSET", "3600")])
        .await;
    let prom = Prometheus::start(env.metrics_port);
    let state = prom
        .alert_state("SecretRotationStuck", Duration::from_secs(60))
        .await;
    assert_eq!(
        state.as_deref(),
        Some("pending"),
        "{:?}\n{}",
        prom.query("rotationd_secrets{status!~\"compliant|due\"} > 0"),
        String::from_utf8_lossy(&env.cli(&["status", "--format", "json"]).stdout),
    );
}

#[tokio::test]
async fn a_secret_held_after_its_rotation_failed_makes_its_alert_pending() {
    // The rotation host plays a function that fails at setSecret (its createSecret needs
    // no database: it only copies the JSON value and writes the pending version); the
    // failure holds the secret.
    let name = moto::unique_name("prom/held");
    let body = format!(
        r#"
[policy]
max_age = "93d"
require_change_ticket = false
# No events queue here to report the failure: the monitor gives up after this long.
rotation_timeout = "8s"

[[secret]]
id = "{name}"
strategy = "single-user"
"#
    );
    let env = Env::new("prom-held", &body).await;
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("reconcile_interval = \"1h\"", "reconcile_interval = \"2s\"");
    std::fs::write(&env.config, text).unwrap();
    let host = RotationHost::start(&env.moto.endpoint(), env.dir.path());
    env.use_endpoint(&host.endpoint());
    // Created with its value only: the host attaches the function (moto's own RotateSecret
    // would leave an AWSCURRENT version without a value).
    env.sm
        .create_secret()
        .name(&name)
        .secret_string(r#"{"username": "app", "password": "initial"}"#)
        .send()
        .await
        .unwrap();
    host.register(serde_json::json!({
        "secret_id": name, "function": "single-user", "fail_at": "setSecret"
    }));
    let (_daemon, _log) = env.daemon_ready(&[]).await;
    let prom = Prometheus::start(env.metrics_port);
    let o = env.cli(&[
        "rotate",
        "--secret",
        &name,
        "--ticket",
        "INC-1",
        "--reason",
        "test",
        "--emergency",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        common::rotationd::stderr(&o)
    );
    let state = prom
        .alert_state("SecretRotationHeld", Duration::from_secs(60))
        .await;
    assert_eq!(
        state.as_deref(),
        Some("pending"),
        "{:?}\n{}\n{:?}\n{}",
        prom.query("rotationd_secrets{status!~\"compliant|due\"} > 0"),
        String::from_utf8_lossy(&env.cli(&["status", "--format", "json"]).stdout),
        env.stages(&name).await,
        host.log()
    );
}

#[tokio::test]
async fn an_overdue_secret_makes_its_alert_pending() {
    let name = moto::unique_name("prom/overdue");
    let body = format!(
        r#"
[policy]
max_age = "93d"

[[secret]]
id = "{name}"
strategy = "single-user"
change_ticket = "CHG-1"
"#
    );
    let env = Env::new("prom-overdue", &body).await;
    env.rotatable_secret(&name).await;
    // rotationd's clock 100 days ahead: the secret's AWSCURRENT is older than max_age.
    let (_daemon, _log) = env
        .daemon_ready(&[("ROTATIOND_TEST_CLOCK_OFFSET", "8640000")])
        .await;
    let prom = Prometheus::start(env.metrics_port);
    let state = prom
        .alert_state("SecretRotationOverdue", Duration::from_secs(60))
        .await;
    assert_eq!(
        state.as_deref(),
        Some("pending"),
        "{:?}",
        prom.query("rotationd_secrets")
    );
    assert_eq!(
        prom.query("rotationd_config_max_age_seconds")[0]["value"][1],
        (93 * 86_400).to_string()
    );
}

#[tokio::test]
async fn a_departure_at_risk_is_judged_against_the_configured_sla_warning() {
    let name = moto::unique_name("prom/departure");
    // Its window opens in 10 minutes and ends before the deadline: the trigger waits.
    let opens = chrono::Utc::now() + chrono::Duration::minutes(10);
    let body = format!(
        r#"
[policy]
max_age = "93d"

[[secret]]
id = "{name}"
schedule = "{minute} {hour} * * *"
window = "30m"
strategy = "single-user"
change_ticket = "CHG-1"
custodians = ["bob"]
"#,
        minute = opens.format("%M"),
        hour = opens.format("%H"),
    );
    let env = Env::new("prom-departure", &body).await;
    let (queue, bus) = events::queue_and_bus(&env, "prom-departure").await;
    events::add_events(
        &env,
        &queue,
        &bus,
        &format!(
            "{}\ndeparture_sla = \"2h\"\nsla_warning = \"90m\"",
            events::ALLOW_ACCOUNT
        ),
    );
    env.rotatable_secret(&name).await;
    let (_daemon, log) = env.daemon_ready(&[]).await;
    let prom = Prometheus::start(env.metrics_port);
    // bob left an hour ago: the deadline is an hour away, inside the 90-minute warning.
    let mut event: serde_json::Value =
        serde_json::from_str(&events::iam_delete_user("bob", "prom-dep-2")).unwrap();
    let left = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    event["time"] = serde_json::json!(left);
    event["detail"]["eventTime"] = serde_json::json!(left);
    events::send(&env, &queue, &event.to_string()).await;
    let state = prom
        .alert_state("DepartureSlaAtRisk", Duration::from_secs(60))
        .await;
    assert!(
        matches!(state.as_deref(), Some("pending" | "firing")),
        "DepartureSlaAtRisk is {state:?}: {:?}\n{}",
        prom.query("rotationd_departure_deadline_earliest_timestamp_seconds"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        prom.query("rotationd_config_sla_warning_seconds")[0]["value"][1],
        "5400"
    );
}

#[tokio::test]
async fn every_dashboard_expression_runs_and_names_exported_metrics() {
    let name = moto::unique_name("prom/dash");
    let body = format!(
        r#"
[policy]
max_age = "93d"

[[secret]]
id = "{name}"
strategy = "single-user"
change_ticket = "CHG-1"
"#
    );
    let env = Env::new("prom-dashboard", &body).await;
    let (queue, bus) = events::queue_and_bus(&env, "prom-dashboard").await;
    events::add_events(&env, &queue, &bus, events::ALLOW_ACCOUNT);
    env.rotatable_secret(&name).await;
    let (_daemon, _log) = env.daemon_ready(&[]).await;
    let prom = Prometheus::start(env.metrics_port);
    assert!(
        prom.until_positive(
            "count_over_time(rotationd_ready[1m]) >= 2",
            Duration::from_secs(30)
        )
        .await
    );
    let names: Vec<String> = prom.get("/api/v1/label/__name__/values")["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/rotationd.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            // Grafana's own variables, as Grafana substitutes them.
            let promql = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h");
            prom.query(&promql);
            let mut rest = expr;
            while let Some(i) = rest.find("rotationd_") {
                let metric: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    names.contains(&metric),
                    "panel `{}` uses {metric}, which the daemon does not export",
                    panel["title"]
                );
                rest = &rest[i + metric.len()..];
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} expressions");
}
