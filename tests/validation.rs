//! Post-rotation validation of dependents against CloudWatch on moto: the real binary
//! rotates (`rotationd rotate`), the daemon watches the dependents, and the test plays
//! the dependents' monitoring: it sets alarm states (SetAlarmState) and writes metric
//! data (PutMetricData) during the watch.
//!
//! The watch is started by the CLI and carried on by a daemon started afterwards, so every
//! test also shows that the watch lives in the state store, not in a process.

mod common;

use std::time::Duration;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricDatum, StateValue, Statistic,
};
use common::config::{Body, dependent, dependent_metric, selector};
use common::moto;
use common::rotationd::{Env, rows, stderr, subscribed_topic, terminate};

struct Fixture {
    env: Env,
    cw: aws_sdk_cloudwatch::Client,
    secret: String,
    alarm: String,
    /// The queue subscribed to the dependent's own topic.
    dependent_queue: String,
    metric_namespace: String,
}

/// A secret with one dependent watched through an alarm and a metric (threshold 5, Sum
/// per minute, dimension Service=<unique>), and the dependent's own SNS topic.
async fn fixture(test: &str, period: &str, auto_rollback: bool) -> Fixture {
    fixture_with(test, period, auto_rollback, false).await
}

/// [`fixture`]; `window_now`: the secret's daily window is open now (a planned rotation
/// may run: [`Fixture::rotate_planned`]).
async fn fixture_with(test: &str, period: &str, auto_rollback: bool, window_now: bool) -> Fixture {
    let m = moto::shared();
    let conf = moto::sdk_config(&m.endpoint());
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let sns = aws_sdk_sns::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let (dep_topic, dependent_queue) = subscribed_topic(&sns, &sqs, &format!("{test}-dep")).await;
    let alarm = moto::unique_name(&format!("{test}-auth-errors"));
    let metric_namespace = moto::unique_name(&format!("Val/{test}"));
    create_alarm(&cw, &alarm, &metric_namespace, "AuthErrors").await;
    set_alarm(&cw, &alarm, StateValue::Ok).await;
    let prefix = moto::unique_name(&format!("val/{test}/"));
    let body = Body::new()
        .policy("validation_period", period)
        .policy("validation_interval", "1s")
        .with(
            dependent("payments-api")
                .set("notify_topic_arn", &dep_topic)
                .list("alarms", [&alarm])
                .with(
                    dependent_metric(&metric_namespace, "AuthErrors", 5)
                        .raw("dimensions", r#"{ Service = "payments-api" }"#)
                        .set("statistic", "Sum"),
                ),
        )
        .with({
            let s = selector(&prefix)
                .strategy("alternating-users")
                .dependents(["payments-api"])
                .raw("auto_rollback", &auto_rollback.to_string());
            if window_now {
                s.schedule(&format!("0 {} * * *", chrono::Utc::now().format("%H")))
                    .window("2h")
            } else {
                s
            }
        });
    let env = Env::new(test, &body.render()).await;
    let secret = format!("{prefix}db");
    env.rotatable_secret(&secret).await;
    Fixture {
        env,
        cw,
        secret,
        alarm,
        dependent_queue,
        metric_namespace,
    }
}

/// A metric alarm (Sum over a minute, at least 1) as a dependent's monitoring has it.
async fn create_alarm(cw: &aws_sdk_cloudwatch::Client, name: &str, namespace: &str, metric: &str) {
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace(namespace)
        .metric_name(metric)
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .unwrap();
}

async fn set_alarm(cw: &aws_sdk_cloudwatch::Client, name: &str, state: StateValue) {
    cw.set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason("set by the test")
        .send()
        .await
        .unwrap();
}

impl Fixture {
    fn rotate(&self) {
        let o = self
            .env
            .rotate_emergency(&self.secret, "INC-7001", "quarterly");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("watching the dependents"),
            "{}",
            stderr(&o)
        );
    }

    /// A planned rotation (CHG ticket, no --emergency) in the window open now.
    fn rotate_planned(&self) {
        let o = self.env.cli(&[
            "rotate",
            "--secret",
            &self.secret,
            "--ticket",
            "CHG-7001",
            "--reason",
            "quarterly",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("watching the dependents"),
            "{}",
            stderr(&o)
        );
    }

    /// Each attempt's state and watch; not the planned attempts the daemon skips because
    /// the secret already rotated in the window open now.
    fn validation(&self) -> Vec<String> {
        rows(
            &self.env.db(),
            "SELECT state || ' ' || COALESCE(validation, '-') FROM attempts WHERE state != 'skipped' ORDER BY started_at",
        )
    }

    async fn auth_errors(&self, value: f64) {
        self.cw
            .put_metric_data()
            .namespace(&self.metric_namespace)
            .metric_data(
                MetricDatum::builder()
                    .metric_name("AuthErrors")
                    .dimensions(
                        Dimension::builder()
                            .name("Service")
                            .value("payments-api")
                            .build(),
                    )
                    .value(value)
                    .timestamp(aws_smithy_types::DateTime::from(
                        std::time::SystemTime::now(),
                    ))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// The `dependents_unhealthy` escalations on Security's queue, waiting up to `wait`
    /// for the first (the emergency rotation's `breach_suspected` page comes before it).
    async fn escalations(&self, wait: Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + wait;
        let mut got = Vec::new();
        loop {
            got.extend(
                self.env
                    .security_messages(Duration::from_secs(1))
                    .await
                    .into_iter()
                    .map(|(_, m)| m)
                    .filter(|m| m["kind"] == "dependents_unhealthy"),
            );
            if !got.is_empty() || std::time::Instant::now() > deadline {
                return got;
            }
        }
    }
}

#[tokio::test]
async fn an_alarm_going_to_alarm_during_the_watch_escalates_and_leaves_rollback_to_l3() {
    let f = fixture("val-alarm", "10m", false).await;
    let before = f.env.stages(&f.secret).await;
    let old = Env::version_with(&before, "AWSCURRENT").unwrap();
    f.rotate();
    assert_eq!(f.validation(), vec!["succeeded watching"]);
    // The plan and its baseline are stored on the attempt: the alarm was OK before.
    let plan = rows(&f.env.db(), "SELECT watch_plan FROM attempts");
    let plan: serde_json::Value = serde_json::from_str(&plan[0]).unwrap();
    assert_eq!(plan["alarms"][0]["name"], f.alarm.as_str());
    assert_eq!(plan["alarms"][0]["baseline"], "OK");
    assert_eq!(plan["dependents"][0], "payments-api");

    let (mut daemon, log) = f.env.daemon_ready(&[]).await;
    set_alarm(&f.cw, &f.alarm, StateValue::Alarm).await;
    let got = f.escalations(Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        1,
        "{got:#?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let m = &got[0];
    assert_eq!(m["severity"], "P1");
    assert_eq!(m["secret"]["name"], f.secret.as_str());
    assert_eq!(m["ticket"], "INC-7001");
    assert_eq!(m["details"]["dependents"][0], "payments-api");
    assert_eq!(m["details"]["failing_dependents"][0], "payments-api");
    assert_eq!(m["details"]["evidence"][0]["source"], "alarm");
    assert_eq!(m["details"]["evidence"][0]["name"], f.alarm.as_str());
    assert_eq!(m["details"]["previous_version"], old.as_str());
    let rollback = m["details"]["rollback"].as_str().unwrap();
    assert!(
        rollback.contains(&format!(
            "rotationd rollback --secret {} --ticket INC-7001",
            f.secret
        )),
        "{rollback}"
    );
    assert!(rollback.contains("not automatic"), "{rollback}");

    assert!(
        f.env
            .eventually(Duration::from_secs(10), || {
                (f.validation() == vec!["succeeded validated_unhealthy"]).then_some(())
            })
            .await
            .is_some(),
        "{:?}",
        f.validation()
    );
    let audit = rows(
        &f.env.db(),
        "SELECT action || ' ' || outcome FROM audit WHERE action IN ('validate', 'rollback')",
    );
    assert_eq!(audit, vec!["validate validated_unhealthy"]);
    let metrics = f.env.metrics();
    assert!(
        metrics.contains("rotationd_validations_total{outcome=\"validated_unhealthy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rotationd_validations_in_flight 0"),
        "{metrics}"
    );
    // Not rolled back: the guide reserves rollback to L3.
    let after = f.env.stages(&f.secret).await;
    assert_ne!(Env::version_with(&after, "AWSCURRENT").unwrap(), old);
    // The dependent's own topic got the pre-rotation and the completion notice.
    let notices: Vec<String> = f
        .env
        .messages(&f.dependent_queue, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|(_, m)| m["kind"].as_str().unwrap().to_string())
        .collect();
    let mut notices = notices;
    notices.sort();
    assert_eq!(notices, vec!["rotation_completed", "rotation_scheduled"]);
    terminate(&mut daemon, Duration::from_secs(10));
}

#[tokio::test]
async fn an_error_metric_over_threshold_escalates_and_auto_rollback_restores_the_old_version() {
    // A planned rotation: an emergency one retires its version as exposed, and that one
    // never goes back on its own (the next test).
    let f = fixture_with("val-metric", "10m", true, true).await;
    let before = f.env.stages(&f.secret).await;
    let old = Env::version_with(&before, "AWSCURRENT").unwrap();
    f.rotate_planned();
    let new = Env::version_with(&f.env.stages(&f.secret).await, "AWSCURRENT").unwrap();
    assert_ne!(new, old);
    let (mut daemon, log) = f.env.daemon_ready(&[]).await;
    // Under the threshold: nothing happens, though the watch has read the data since.
    f.auth_errors(3.0).await;
    assert!(
        f.env
            .calls("GetMetricData", 2, Duration::from_secs(30))
            .await,
        "the watch did not read the metric again"
    );
    assert_eq!(f.validation(), vec!["succeeded watching"]);
    // 3 + 40 in the same minute: Sum 43 > 5.
    f.auth_errors(40.0).await;
    let got = f.escalations(Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        1,
        "{got:#?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let ev = &got[0]["details"]["evidence"][0];
    assert_eq!(ev["source"], "metric");
    assert!(
        ev["detail"].as_str().unwrap().contains("reached 43"),
        "{ev}"
    );
    assert!(
        got[0]["details"]["rollback"]
            .as_str()
            .unwrap()
            .contains("automatic")
    );
    // auto_rollback = true: AWSCURRENT goes back to the old version, audited.
    let rolled = f
        .env
        .eventually(Duration::from_secs(20), || {
            (f.validation() == vec!["succeeded validated_unhealthy"]).then_some(())
        })
        .await;
    assert!(rolled.is_some(), "{:?}", f.validation());
    let after = f.env.stages(&f.secret).await;
    assert_eq!(Env::version_with(&after, "AWSCURRENT").unwrap(), old);
    assert_eq!(Env::version_with(&after, "AWSPREVIOUS").unwrap(), new);
    let audit = rows(
        &f.env.db(),
        "SELECT action || ' ' || outcome || ' ' || actor FROM audit WHERE action IN ('validate', 'rollback') ORDER BY id",
    );
    assert_eq!(
        audit,
        vec![
            "validate validated_unhealthy rotationd",
            "rollback ok rotationd"
        ]
    );
    terminate(&mut daemon, Duration::from_secs(10));
}

/// The review: an automatic rollback put back the credential an emergency rotation (a
/// suspected compromise) had just retired. It escalates, and leaves the labels alone.
#[tokio::test]
async fn auto_rollback_never_puts_back_a_version_an_emergency_rotation_retired() {
    let f = fixture("val-retired", "10m", true).await;
    let old = Env::version_with(&f.env.stages(&f.secret).await, "AWSCURRENT").unwrap();
    f.rotate();
    let new = Env::version_with(&f.env.stages(&f.secret).await, "AWSCURRENT").unwrap();
    assert_ne!(new, old);
    let (mut daemon, log) = f.env.daemon_ready(&[]).await;
    f.auth_errors(40.0).await;
    let got = f.escalations(Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        1,
        "{got:#?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let ended = f
        .env
        .eventually(Duration::from_secs(20), || {
            (f.validation() == vec!["succeeded validated_unhealthy"]).then_some(())
        })
        .await;
    // The watcher's audit entry for the refusal is written with the watch's end.
    let audit = rows(
        &f.env.db(),
        "SELECT outcome || ' ' || actor || ' ' || json_extract(detail, '$.result') FROM audit WHERE action = 'rollback' ORDER BY id",
    );
    terminate(&mut daemon, Duration::from_secs(10));
    assert!(ended.is_some(), "{:?}", f.validation());
    let after = f.env.stages(&f.secret).await;
    assert_eq!(
        Env::version_with(&after, "AWSCURRENT"),
        Some(new),
        "auto_rollback restored a retired version"
    );
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(
        audit[0].starts_with("refused rotationd AWSPREVIOUS")
            && audit[0].contains("retired by an emergency rotation"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn healthy_dependents_are_validated_and_the_watch_survives_a_restart() {
    let f = fixture("val-healthy", "12s", false).await;
    f.rotate();
    let (mut daemon, _log) = f.env.daemon_ready(&[]).await;
    f.auth_errors(1.0).await;
    // The watch has read the metric since: killed mid-watch, nothing in memory survives.
    assert!(
        f.env
            .calls("GetMetricData", 2, Duration::from_secs(30))
            .await,
        "the watch did not read the metric again"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(f.validation(), vec!["succeeded watching"]);
    let (mut daemon, log) = f.env.daemon_logged(&[]);
    let done = f
        .env
        .eventually(Duration::from_secs(40), || {
            (f.validation() == vec!["succeeded validated"]).then_some(())
        })
        .await;
    assert!(
        done.is_some(),
        "{:?}\n{}",
        f.validation(),
        std::fs::read_to_string(&log).unwrap()
    );
    // Validated at the end of the watch, not before it.
    let early = rows(
        &f.env.db(),
        "SELECT a.id FROM audit u JOIN attempts a ON u.action = 'validate' AND u.at < a.watch_until",
    );
    assert!(
        early.is_empty(),
        "validated before the validation period ended"
    );
    assert!(f.escalations(Duration::from_secs(2)).await.is_empty());
    let audit = rows(
        &f.env.db(),
        "SELECT action || ' ' || outcome FROM audit WHERE action = 'validate'",
    );
    assert_eq!(audit, vec!["validate validated"]);
    let metrics = f.env.metrics();
    assert!(
        metrics.contains("rotationd_validations_total{outcome=\"validated\"} 1"),
        "{metrics}"
    );
    let status = f.env.cli(&["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("validated"), "{out}");
    terminate(&mut daemon, Duration::from_secs(10));
}

/// The watch's CloudWatch reads are batched to the APIs' limits: 250 alarm names take 3
/// DescribeAlarms, 600 metric queries take 2 GetMetricData (counted by rotationd's own
/// request counter), and every answer lands on the right query.
#[tokio::test]
async fn cloudwatch_reads_are_batched_to_the_api_limits() {
    use rotationd::aws::cloudwatch::{CloudWatch, MetricQuery};
    let m = moto::shared();
    let conf = moto::sdk_config(&m.endpoint());
    let metrics = std::sync::Arc::new(rotationd::metrics::Metrics::new());
    let counted = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&conf)
            .interceptor(rotationd::aws::RequestCounter::new(metrics.clone()))
            .build(),
    );
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let prefix = moto::unique_name("batch-alarm");
    let names: Vec<String> = (0..250).map(|i| format!("{prefix}-{i:03}")).collect();
    for name in &names {
        create_alarm(&cw, name, "Batch", "Errors").await;
    }
    set_alarm(&cw, &names[137], StateValue::Alarm).await;
    let watch = CloudWatch::new(counted, aws_sdk_cloudwatchlogs::Client::new(&conf));
    let states = watch.alarm_states(&names).await.unwrap();
    assert_eq!(states.len(), 250);
    let firing: Vec<&str> = states
        .iter()
        .filter(|s| s.state == "ALARM")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(firing, vec![names[137].as_str()]);

    // 600 queries, one with data: 2 calls, and the value comes back on query 555.
    let namespace = moto::unique_name("Batch/metrics");
    let queries: Vec<MetricQuery> = (0..600)
        .map(|i| MetricQuery {
            namespace: namespace.clone(),
            metric_name: format!("Errors{i}"),
            dimensions: Default::default(),
            statistic: "Sum".into(),
            period_seconds: 60,
        })
        .collect();
    cw.put_metric_data()
        .namespace(&namespace)
        .metric_data(
            MetricDatum::builder()
                .metric_name("Errors555")
                .value(7.0)
                .timestamp(aws_smithy_types::DateTime::from(
                    std::time::SystemTime::now(),
                ))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let maxima = watch
        .maxima(
            &queries,
            now - chrono::Duration::minutes(5),
            now + chrono::Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(maxima.len(), 600);
    assert_eq!(maxima[555], Some(7.0));
    assert_eq!(maxima.iter().filter(|v| v.is_some()).count(), 1);

    let text = metrics.render();
    for (op, n) in [("DescribeAlarms", 3), ("GetMetricData", 2)] {
        let line = format!(
            "rotationd_aws_requests_total{{operation=\"{op}\",outcome=\"success\",service=\"cloudwatch\"}} {n}"
        );
        assert!(text.contains(&line), "{line} not in\n{text}");
    }
}

/// The log reads of the watch are bounded (`aws::logs`): a count follows the pages' tokens
/// to the end, stops at its page limit (the count is then a lower bound, `complete` false),
/// and stops early once more lines matched than the caller needs to decide. Pages of 5
/// lines on moto stand for the 10,000-line pages of a real watch; the proxy counts the
/// FilterLogEvents calls.
#[tokio::test]
async fn log_counts_follow_the_pages_and_stop_at_their_bounds() {
    use rotationd::aws::logs::{Paging, count_matches_paged};
    let m = moto::shared();
    let proxy = common::proxy::Proxy::start(m.port());
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto::sdk_config(&proxy.endpoint()));
    let group = format!("/paging/{}", moto::unique_name("logs").replace('/', "-"));
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("app-1")
        .send()
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let mut put = logs
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name("app-1");
    for i in 0..12 {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now.timestamp_millis() + i)
                .message(format!(
                    "FATAL: password authentication failed for user \"svc\" ({i})"
                ))
                .build()
                .unwrap(),
        );
    }
    put.send().await.unwrap();
    let pattern: rotationd::filter_pattern::FilterPattern =
        "\"authentication failed\"".parse().unwrap();
    let range = (
        now - chrono::Duration::minutes(1),
        now + chrono::Duration::minutes(1),
    );
    let calls = || proxy.count("FilterLogEvents", common::proxy::Outcome::Forwarded);
    let count = |enough: u64, max_pages: usize| {
        count_matches_paged(
            &logs,
            &group,
            &pattern,
            range,
            enough,
            Paging {
                per_page: 5,
                max_pages,
            },
        )
    };

    // Every page, following the tokens: 5 + 5 + 2 lines in 3 calls.
    let before = calls();
    let all = count(u64::MAX, 10).await.unwrap();
    assert_eq!((all.matches, all.complete), (12, true), "{all:?}");
    assert_eq!(calls() - before, 3);
    assert_eq!(all.streams.iter().collect::<Vec<_>>(), ["app-1"]);
    assert!(all.first < all.last, "{all:?}");

    // The page limit: 2 pages, 10 lines, a lower bound.
    let before = calls();
    let capped = count(u64::MAX, 2).await.unwrap();
    assert_eq!((capped.matches, capped.complete), (10, false), "{capped:?}");
    assert_eq!(calls() - before, 2);

    // Enough to decide after the first page: one call.
    let before = calls();
    let early = count(4, 10).await.unwrap();
    assert_eq!((early.matches, early.complete), (5, false), "{early:?}");
    assert_eq!(calls() - before, 1);
}
