//! [`App`]: the wiring the daemon and the CLI commands share, built from one `Config`.
//!
//! [`App::build`] opens the state store (SQLite, or a replica of the DynamoDB log), loads
//! the AWS SDK configuration and builds one client per service: SNS, SQS and EventBridge in
//! the daemon's own account and region, Secrets Manager, CloudWatch and CloudTrail once per
//! account-region (`[[account]]`), DynamoDB for the shared state. Every client carries the
//! request-counting interceptor, so `/metrics` sees every call.

use std::sync::Arc;

use anyhow::Context;

use crate::alerts::Alerts;
use crate::aws::secrets::SecretsManager;
use crate::aws::{self, RequestCounter};
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{Engine, EngineOptions, RateLimiter};
use crate::metrics::Metrics;
use crate::store::StoreHandle;

/// Everything the daemon and the CLI commands share.
pub struct App {
    pub cfg: Arc<Config>,
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    pub engine: Arc<Engine>,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// One CloudTrail client per account-region (its own 2 requests/s budget each).
    pub cloudtrail: Vec<(aws::Place, aws_sdk_cloudtrail::Client)>,
    pub clock: Clock,
    /// With `[state] backend = "dynamodb"`: the shared log this process's replica follows
    /// (the daemon sets its fence while it leads) and the DynamoDB client for the lease.
    pub shared_state: Option<SharedState>,
    /// This process, in the log's entries and the lease: host, pid and a random suffix.
    pub instance: String,
}

/// The DynamoDB side of the state, for the leader election.
#[derive(Clone)]
pub struct SharedState {
    pub journal: crate::store::journal::Journal,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
}

/// This process's name in the lease and the log: unique per process, so that a
/// restarted process never inherits the lease of the one before it.
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

impl App {
    pub async fn build(cfg: Config) -> anyhow::Result<App> {
        App::build_with(cfg, Arc::new(Metrics::new()), &instance_id()).await
    }

    /// Like [`App::build`], recording into `metrics` (kept across config reloads), as
    /// `instance` (kept too: the lease names it).
    pub async fn build_with(
        cfg: Config,
        metrics: Arc<Metrics>,
        instance: &str,
    ) -> anyhow::Result<App> {
        let cfg = Arc::new(cfg);
        let sdk = aws::load_sdk_config(&cfg.aws).await;
        let counter = RequestCounter::new(metrics.clone());
        let (store, shared_state) = match &cfg.state.backend {
            crate::config::StateBackend::Sqlite => {
                let path = cfg.daemon.state_path.clone();
                let store = tokio::task::spawn_blocking(move || StoreHandle::open(&path))
                    .await
                    .context("state store thread")??;
                (store, None)
            }
            crate::config::StateBackend::Dynamodb { table } => {
                let dynamodb = aws_sdk_dynamodb::Client::from_conf(
                    aws_sdk_dynamodb::config::Builder::from(&sdk)
                        .interceptor(counter.clone())
                        .build(),
                );
                crate::store::dynamodb::ensure_table(&dynamodb, table)
                    .await
                    .with_context(|| format!("the DynamoDB state table {table} ([state] table)"))?;
                let journal = crate::store::journal::Journal::dynamodb(
                    dynamodb.clone(),
                    table,
                    tokio::runtime::Handle::current(),
                    instance,
                );
                let j = journal.clone();
                // Replays the shared log into this process's replica: off the workers.
                let store = tokio::task::spawn_blocking(move || {
                    StoreHandle::spawn(crate::store::Store::open_replicated(j)?)
                })
                .await
                .context("state store thread")?
                .with_context(|| format!("the DynamoDB state table {table} ([state] table)"))?;
                (
                    store,
                    Some(SharedState {
                        journal,
                        dynamodb,
                        table: table.clone(),
                    }),
                )
            }
        };
        // SNS, SQS and EventBridge live in the daemon's own account and `[aws] region`.
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(&sdk)
                .interceptor(counter.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .interceptor(counter.clone())
                .build(),
        );
        let eventbridge = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&sdk)
                .interceptor(counter.clone())
                .build(),
        );
        // Secrets Manager, CloudWatch and CloudTrail: one client per account-region.
        let trail_endpoint = cfg
            .events
            .as_ref()
            .and_then(|e| e.cloudtrail.endpoint_url.clone());
        let mut sms = Vec::new();
        let mut cws = Vec::new();
        let mut cloudtrail = Vec::new();
        for (place, conf) in aws::place_configs(&sdk, &cfg.accounts).await {
            sms.push((
                place.clone(),
                aws_sdk_secretsmanager::Client::from_conf(
                    aws_sdk_secretsmanager::config::Builder::from(&conf)
                        .interceptor(counter.clone())
                        .build(),
                ),
            ));
            cws.push((
                place.clone(),
                aws_sdk_cloudwatch::Client::from_conf(
                    aws_sdk_cloudwatch::config::Builder::from(&conf)
                        .interceptor(counter.clone())
                        .build(),
                ),
            ));
            let mut ct =
                aws_sdk_cloudtrail::config::Builder::from(&conf).interceptor(counter.clone());
            if let Some(url) = &trail_endpoint {
                ct = ct.endpoint_url(url);
            }
            cloudtrail.push((place, aws_sdk_cloudtrail::Client::from_conf(ct.build())));
        }
        let (sm, cw) = if cfg.accounts.is_empty() {
            let sm = sms
                .pop()
                .map(|(_, c)| c)
                .context("no Secrets Manager client")?;
            let cw = cws.pop().map(|(_, c)| c).context("no CloudWatch client")?;
            (
                SecretsManager::new(sm),
                crate::aws::cloudwatch::CloudWatch::new(cw),
            )
        } else {
            (
                SecretsManager::with_targets(aws::Targets::routed(sms)),
                crate::aws::cloudwatch::CloudWatch::with_targets(aws::Targets::routed(cws))
                    .context("no account-region configured")?,
            )
        };
        let clock = Clock::from_env();
        let alerts = Alerts::new(store.clone(), &cfg);
        let engine = Arc::new(Engine {
            cfg: cfg.clone(),
            sm,
            cw,
            store: store.clone(),
            alerts,
            metrics: metrics.clone(),
            clock,
            opts: EngineOptions {
                monitor_timeout: cfg.policy.rotation_timeout,
                ..EngineOptions::default()
            },
            limiter: RateLimiter::new(cfg.daemon.max_rotations_per_minute.get()),
        });
        Ok(App {
            cfg,
            store,
            metrics,
            engine,
            sns,
            sqs,
            eventbridge,
            cloudtrail,
            clock,
            shared_state,
            instance: instance.to_string(),
        })
    }
}
