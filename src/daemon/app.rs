//! [`App`]: the wiring the daemon and the CLI commands share, built from one `Config`.
//!
//! [`App::build`] opens the state store (SQLite, or a replica of the DynamoDB log), loads
//! the AWS SDK configuration and has `aws` build one client per service
//! ([`aws::Clients`]): SNS, SQS, EventBridge and STS in the daemon's own account and region,
//! Secrets Manager, CloudWatch and CloudTrail once per account-region (`[[account]]`),
//! DynamoDB for the shared state, S3 for the audit log's anchors. Every client carries the request-counting interceptor,
//! so `/metrics` sees every call.

use std::sync::Arc;

use anyhow::Context;

use crate::alerts::Alerts;
use crate::aws::cloudtrail::Trail;
use crate::aws::dynamodb::Table;
use crate::aws::eventbridge::EventBridge;
use crate::aws::sns::Sns;
use crate::aws::sqs::Sqs;
use crate::aws::sts::Sts;
use crate::aws::{self, Clients, RequestCounter};
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
    pub sns: Sns,
    pub sqs: Sqs,
    pub eventbridge: EventBridge,
    /// Who runs a CLI command (`GetCallerIdentity`).
    pub sts: Sts,
    /// One CloudTrail client per account-region (its own 2 requests/s budget each).
    pub cloudtrail: Vec<Trail>,
    /// `[identity_center]`'s Identity Store, read once per reconcile (`crate::directory`).
    pub identity_store: Option<Arc<crate::aws::identitystore::IdentityStore>>,
    pub clock: Clock,
    /// With `[state] backend = "dynamodb"`: the shared log this process's replica follows
    /// (the daemon sets its fence while it leads) and the DynamoDB client for the lease.
    pub shared_state: Option<SharedState>,
    /// This process, in the log's entries and the lease: host, pid and a random suffix.
    pub instance: String,
    /// `[audit] anchor_bucket`: where the leader anchors the audit log.
    pub anchors: Option<aws::s3::Bucket>,
}

/// The DynamoDB side of the state, for the leader election.
#[derive(Clone)]
pub struct SharedState {
    pub journal: crate::store::journal::Journal,
    /// The state table, where the lease lives next to the log.
    pub table: Table,
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
        App::build_with(cfg, Arc::new(Metrics::new()), &instance_id(), false).await
    }

    /// Like [`App::build`], recording into `metrics` (kept across config reloads), as
    /// `instance` (kept too: the lease names it); `init`: a lost SQLite state database is
    /// started anew ([`crate::store::Store::open_init`]).
    pub async fn build_with(
        cfg: Config,
        metrics: Arc<Metrics>,
        instance: &str,
        init: bool,
    ) -> anyhow::Result<App> {
        let cfg = Arc::new(cfg);
        let sdk = aws::load_sdk_config(&cfg.aws).await;
        let counter = RequestCounter::new(metrics.clone());
        let (store, shared_state) = match &cfg.state.backend {
            crate::config::StateBackend::Sqlite => {
                let path = cfg.daemon.state_path.clone();
                let max_size = cfg.state.max_size;
                let store = tokio::task::spawn_blocking(move || {
                    let store = if init {
                        crate::store::Store::open_init(&path)?
                    } else {
                        crate::store::Store::open(&path)?
                    };
                    store.set_max_size(max_size)?;
                    StoreHandle::spawn(store)
                })
                .await
                .context("state store thread")??;
                (store, None)
            }
            crate::config::StateBackend::Dynamodb { table: name } => {
                let table = Table::new(&sdk, &counter, name);
                crate::store::dynamodb::ensure(&table)
                    .await
                    .with_context(|| format!("the DynamoDB state table {name} ([state] table)"))?;
                let journal = crate::store::journal::Journal::on_table(
                    table.clone(),
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
                .with_context(|| format!("the DynamoDB state table {name} ([state] table)"))?;
                (store, Some(SharedState { journal, table }))
            }
        };
        let trail_endpoint = cfg
            .events
            .as_ref()
            .and_then(|e| e.cloudtrail.endpoint_url.as_deref());
        let Clients {
            sns,
            sqs,
            eventbridge,
            sts,
            secrets: sm,
            cloudwatch: cw,
            cloudtrail,
            identity_store,
            anchors,
        } = Clients::build(
            &sdk,
            &counter,
            &cfg.accounts,
            trail_endpoint,
            cfg.identity_center.as_ref(),
            cfg.audit.anchor.as_ref().map(|a| a.bucket.as_str()),
        )
        .await?;
        // Every Secrets Manager call of the process goes through this one wrapper (the
        // engine's, cloned by the watcher and the request loop): observe mode refuses the
        // changing calls there, whatever path asks.
        let sm = sm.in_mode(cfg.daemon.mode);
        let places: Vec<(String, String)> = sm
            .places()
            .into_iter()
            .map(|p| (p.account, p.region))
            .collect();
        let alert_kinds: Vec<(&str, &str)> = crate::alerts::AlertKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.severity().as_str()))
            .collect();
        metrics.export_known(
            &crate::metrics::KnownSeries {
                triggers: crate::engine::TRIGGER_LABELS,
                outcomes: crate::engine::OUTCOME_LABELS,
                places: &places,
                alerts: &alert_kinds,
                rejections: &crate::events::normalize::Rejection::REASONS,
                event_sources: if cfg.events.is_some() {
                    &["sqs", "cloudtrail"]
                } else {
                    &[]
                },
                event_kinds: &crate::events::normalize::Normalized::KIND_LABELS,
            },
            cfg.policy.max_age,
            cfg.events
                .as_ref()
                .map(|e| (e.departure_sla, e.sla_warning)),
        );
        metrics
            .observe_mode
            .set(i64::from(cfg.daemon.mode.is_observe()));
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
            sts,
            cloudtrail,
            identity_store: identity_store.map(Arc::new),
            clock,
            shared_state,
            instance: instance.to_string(),
            anchors,
        })
    }
}
