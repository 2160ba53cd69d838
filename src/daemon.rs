//! `rotationd run`: the long-running daemon and the wiring the CLI commands share.
//!
//! [`App::build`] opens the state store, loads the AWS SDK configuration and builds the
//! engine. [`run`] then starts, each as a task that takes the shutdown
//! [`CancellationToken`] and is tracked so that shutdown can wait for it:
//!
//! - the **reconciler**: every `reconcile_interval`, one inventory scan, compliance per
//!   secret, and a trigger for every planned window that is open (or opens before the
//!   next pass), deduplicated on (secret, window start);
//! - the **executor**: turns due pending triggers into attempts and drives them, bounded
//!   in concurrency and by `max_rotations_per_minute`; re-drives attempts whose AWS call
//!   failed with a retryable error; resumes unfinished attempts after a restart;
//! - the **alert publisher** draining the outbox into SNS;
//! - the **HTTP server** for `/metrics`, `/healthz` and `/readyz`.
//!
//! With `[state] backend = "dynamodb"` those loops run only while this instance holds
//! the leader lease; a standby waits for it (`standby`) and meanwhile records what
//! arrives on the SQS queue (`record_events`).
//!
//! On SIGTERM/SIGINT the token is cancelled: loops stop taking work, in-flight attempts
//! stop at their next AWS call with their last state committed (they resume at the next
//! start), and the process exits 0 once the tasks end or the deadline passes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::{RwLock, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::{self, Alert, AlertKind, Alerts};
use crate::aws::secrets::SecretsManager;
use crate::aws::{self, RequestCounter};
use crate::config::Config;
use crate::engine::{Clock, Engine, EngineError, EngineOptions, RateLimiter};
use crate::events::EventSink;
use crate::events::cloudtrail::Poller;
use crate::events::sqs::Consumer;
use crate::inventory::{self, AgeCache, Inventory};
use crate::metrics::Metrics;
use crate::planner::{self, Compliance, Facts, Reason};
use crate::store::{AttemptState, NewTrigger, StoreHandle, TriggerKind, TriggerStatus};

/// How many attempts run at once: RotateSecret is rate-limited separately, this bounds
/// the DescribeSecret polling and the open AWS connections.
pub const MAX_CONCURRENT_ATTEMPTS: usize = 8;
/// How long shutdown waits for tasks before exiting anyway: above an SQS long poll (20 s),
/// below systemd's TimeoutStopSec (45 s).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
/// Pause before re-driving an attempt whose AWS call failed with a retryable error.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// An unfinished attempt nobody has touched for this long is adopted (its driver, e.g. a
/// `rotationd rotate` process, died): longer than the monitor timeout.
pub const ORPHAN_AFTER: chrono::Duration = chrono::Duration::minutes(20);

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

/// State shared by the daemon's tasks.
struct Shared {
    app: App,
    inventory: Arc<RwLock<Option<Inventory>>>,
    health: Arc<Health>,
    /// Secrets with an attempt being driven by this process.
    busy: std::sync::Mutex<HashSet<String>>,
    /// Wakes the executor early (new event triggers).
    wake: Arc<tokio::sync::Notify>,
}

/// What outlives a config reload: metrics, readiness, and the loops' heartbeats that the
/// systemd watchdog checks.
pub struct Health {
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
    /// Standby (`[state] backend = "dynamodb"` and the lease is not ours), with what
    /// `/readyz` says about it (who leads).
    standby: std::sync::Mutex<Option<String>>,
    beats: std::sync::Mutex<HashMap<&'static str, tokio::time::Instant>>,
}

impl Health {
    fn new(metrics: Arc<Metrics>) -> Health {
        Health {
            metrics,
            ready: AtomicBool::new(false),
            standby: std::sync::Mutex::new(None),
            beats: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        self.metrics.ready.set(i64::from(ready));
    }

    /// Leader (`None`, also the SQLite backend's only role) or standby behind `holder`.
    fn set_standby(&self, holder: Option<String>) {
        self.metrics.leader.set(i64::from(holder.is_none()));
        if let Ok(mut s) = self.standby.lock() {
            *s = holder;
        }
    }

    /// Forgets the loops of the previous role: a standby runs none of the leader's loops,
    /// and their old beats must not starve the watchdog.
    fn reset_beats(&self) {
        if let Ok(mut b) = self.beats.lock() {
            b.clear();
        }
    }

    /// A main loop is alive.
    fn beat(&self, name: &'static str) {
        if let Ok(mut b) = self.beats.lock() {
            b.insert(name, tokio::time::Instant::now());
        }
    }

    /// Every loop that ever beat did so within `within`.
    fn alive(&self, within: Duration) -> bool {
        self.beats
            .lock()
            .map(|b| b.values().all(|t| t.elapsed() <= within))
            .unwrap_or(false)
    }
}

/// Tells systemd (a no-op without `NOTIFY_SOCKET`).
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Sends WATCHDOG=1 at half the watchdog interval, but only while the executor and the
/// alert publisher keep beating: a hung loop lets systemd's watchdog fire.
async fn watchdog(health: Arc<Health>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval / 2) => {}
        }
        if health.alive(interval / 2) {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("a main loop stopped beating; not feeding the systemd watchdog");
        }
    }
}

/// Runs the daemon until `cancel` fires; `reload` (SIGHUP) re-reads `path`: a valid config
/// restarts the loops with it (in-flight attempts stop at a committed step and resume), an
/// invalid one is logged and counted and the old one stays in force.
pub async fn run(
    path: std::path::PathBuf,
    cfg: Config,
    cancel: CancellationToken,
    reload: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(metrics.clone()));
    let listen = cfg.daemon.metrics_listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([daemon] metrics_listen)"))?;
    let outer = TaskTracker::new();
    outer.spawn(serve_http(listener, health.clone(), cancel.clone()));
    if let Some(interval) = sd_notify::watchdog_enabled() {
        outer.spawn(watchdog(health.clone(), interval, cancel.clone()));
    }
    let mut cfg = cfg;
    let instance = instance_id();
    // Leader from the start with SQLite (nobody to share with); with DynamoDB only once
    // the lease is ours.
    health.set_standby(match cfg.state.backend {
        crate::config::StateBackend::Sqlite => None,
        crate::config::StateBackend::Dynamodb { .. } => {
            Some("not elected yet; reading the shared state".into())
        }
    });
    // With the DynamoDB backend: the leader lease, kept across reloads (same holder).
    let mut lease: Option<crate::lease::Lease> = None;
    'generations: loop {
        let listen_now = cfg.daemon.metrics_listen;
        let app = App::build_with(cfg.clone(), metrics.clone(), &instance).await?;
        if let Some(shared_state) = app.shared_state.clone() {
            let lease = lease.get_or_insert_with(|| {
                crate::lease::Lease::new(
                    shared_state.dynamodb.clone(),
                    &shared_state.table,
                    crate::lease::LEASE_NAME,
                    &instance,
                    cfg.state.lease,
                )
            });
            // While standing by, this instance still records what arrives on the queue.
            let recording = cancel.child_token();
            let recorder = record_events(&app, recording.clone());
            let outcome = standby(lease, &health, &cancel, &reload).await;
            recording.cancel();
            recorder.close();
            match outcome {
                Standby::Lead => {
                    shared_state.journal.set_fence(lease.journal_fence());
                    health.set_standby(None);
                    tracing::info!(instance = %instance, "leading: planning, rotating and publishing");
                    // The recorder's consumers finish their long poll (at most 20 s) and
                    // what it brought, beside the leader's own: not awaited, so the
                    // takeover does not wait for them; the process's end does.
                    outer.spawn(async move { recorder.wait().await });
                }
                Standby::Stop => {
                    stop_recorder(recorder).await;
                    app.store.shutdown().await.ok();
                    break 'generations;
                }
                Standby::Reload => {
                    stop_recorder(recorder).await;
                    app.store.shutdown().await.ok();
                    match Config::load(&path) {
                        Ok((new, _)) => {
                            metrics
                                .config_reloads_total
                                .with_label_values(&["success"])
                                .inc();
                            tracing::info!(config = %path.display(), "configuration reloaded (standby)");
                            cfg = new;
                        }
                        Err(e) => {
                            metrics
                                .config_reloads_total
                                .with_label_values(&["failure"])
                                .inc();
                            tracing::error!(error = %e, "reload failed; the previous configuration stays in force");
                        }
                    }
                    continue 'generations;
                }
            }
        }
        let leading = app.shared_state.clone();
        health.reset_beats();
        let generation = cancel.child_token();
        let (tracker, store) = start(app, health.clone(), generation.clone());
        let state = match &cfg.state.backend {
            crate::config::StateBackend::Sqlite => cfg.daemon.state_path.display().to_string(),
            crate::config::StateBackend::Dynamodb { table } => format!("dynamodb:{table}"),
        };
        tracing::info!(metrics = %listen, state = %state, "rotationd running");
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("running: reconciling and rotating"),
        ]);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    notify(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping")]);
                    tracing::info!("shutting down: no new work, in-flight attempts stop at their next step");
                    stop(tracker, generation, store).await;
                    if let Some(lease) = lease.as_mut() {
                        // Let a standby take over now rather than at the lease's expiry.
                        if let Err(e) = lease.release().await {
                            tracing::warn!(error = %e, "cannot release the leader lease; a standby takes over when it expires");
                        }
                    }
                    break 'generations;
                }
                _ = reload.notified() => {}
                kept = keep_lease(lease.as_mut()), if leading.is_some() => {
                    if kept {
                        continue;
                    }
                    // Lost (or cannot be confirmed before it expires): stop every loop now;
                    // the fence refuses whatever write was still on its way.
                    tracing::warn!(instance = %instance, "lost the leader lease; stopping the loops and standing by");
                    stop(tracker, generation, store).await;
                    health.set_ready(false);
                    continue 'generations;
                }
            }
            let mut states = vec![sd_notify::NotifyState::Reloading];
            if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
                states.push(now);
            }
            notify(&states);
            match Config::load(&path) {
                Ok((new, warnings)) => {
                    for w in warnings.warnings() {
                        tracing::warn!("{w}");
                    }
                    if new.daemon.metrics_listen != listen_now {
                        tracing::warn!(
                            "[daemon] metrics_listen changed; it takes effect at the next restart"
                        );
                    }
                    metrics
                        .config_reloads_total
                        .with_label_values(&["success"])
                        .inc();
                    tracing::info!(config = %path.display(), "configuration reloaded; restarting the loops with it");
                    // A reload is also how an operator resumes after a rotation storm.
                    let now = Clock::from_env().now();
                    let resumed = store
                        .call(move |s| {
                            s.db().set_cursor(STORM_CURSOR, "", now)?;
                            s.db()
                                .set_cursor(STORM_RESUMED_CURSOR, &now.to_rfc3339(), now)
                        })
                        .await;
                    if let Err(e) = resumed {
                        tracing::warn!(error = %e, "cannot lift the storm guard's pause on reload");
                    }
                    stop(tracker, generation, store).await;
                    cfg = new;
                    continue 'generations;
                }
                Err(e) => {
                    metrics
                        .config_reloads_total
                        .with_label_values(&["failure"])
                        .inc();
                    match &e {
                        crate::config::ConfigError::Invalid(d) => {
                            for (_, line) in d.lines() {
                                tracing::error!("{line}");
                            }
                        }
                        other => tracing::error!(error = %other, "cannot reload the configuration"),
                    }
                    tracing::error!("reload failed; the previous configuration stays in force");
                    notify(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(
                            "running; the last reload failed, see the log",
                        ),
                    ]);
                }
            }
        }
    }
    outer.close();
    outer.wait().await;
    Ok(())
}

/// How the standby phase ended.
enum Standby {
    Lead,
    Stop,
    Reload,
}

/// Waits, as a standby, until this instance holds the lease (or shutdown or a reload):
/// tries to take it every third of the lease, beats for the watchdog twice a second meanwhile
/// (a standby is healthy), and says who leads on `/readyz` and `rotationd_leader`.
async fn standby(
    lease: &mut crate::lease::Lease,
    health: &Health,
    cancel: &CancellationToken,
    reload: &tokio::sync::Notify,
) -> Standby {
    health.reset_beats();
    let mut next_try = tokio::time::Instant::now();
    let mut announced: Option<Option<String>> = None;
    loop {
        health.beat("lease");
        if tokio::time::Instant::now() >= next_try {
            next_try = tokio::time::Instant::now() + lease.renew_every();
            match lease.tick(Utc::now().timestamp_millis()).await {
                Ok(crate::lease::Role::Leader { .. }) => return Standby::Lead,
                Ok(crate::lease::Role::Standby { holder, .. }) => {
                    if announced.as_ref() != Some(&holder) {
                        tracing::info!(
                            leader = holder.as_deref().unwrap_or("unknown"),
                            "standby: another instance leads"
                        );
                        notify(&[
                            sd_notify::NotifyState::Ready,
                            sd_notify::NotifyState::Status("standby"),
                        ]);
                        announced = Some(holder.clone());
                    }
                    health.set_standby(Some(format!(
                        "{} leads; this instance takes over if it stops",
                        holder.as_deref().unwrap_or("another instance")
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the lease in DynamoDB; retrying");
                    health.set_standby(Some("cannot reach the lease in DynamoDB; retrying".into()));
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Standby::Stop,
            _ = reload.notified() => return Standby::Reload,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// A standby's work besides waiting for the lease: it consumes the SQS queue and records
/// each event's triggers, alerts and audit (idempotent on the event id, like the
/// leader's consumers; the log orders both instances' writes, and a job that lost the race
/// for a position runs again). So an event is recorded while the leader is busy, paused or
/// dying, and the new leader finds its triggers. It does not plan, rotate, publish or poll
/// CloudTrail. Events are planned against the standby's own inventory, refreshed every
/// `reconcile_interval` (the consumers wait for the first one, as the leader's do).
fn record_events(app: &App, cancel: CancellationToken) -> TaskTracker {
    let tracker = TaskTracker::new();
    let Some(events) = &app.cfg.events else {
        return tracker;
    };
    let inventory: Arc<RwLock<Option<Inventory>>> = Arc::new(RwLock::new(None));
    let sink = Arc::new(EventSink {
        cfg: app.cfg.clone(),
        normalize: crate::events::normalize_config(events, app.cfg.requests.as_ref()),
        store: app.store.clone(),
        metrics: app.metrics.clone(),
        clock: app.clock,
        inventory: inventory.clone(),
        // Nothing to wake: the leader's executor finds the triggers at its next pass.
        wake: Arc::new(tokio::sync::Notify::new()),
        alerts: app.engine.alerts.clone(),
    });
    let consumer = Arc::new(Consumer {
        sqs: app.sqs.clone(),
        queue_url: events.queue_url.clone(),
        sink,
    });
    for _ in 0..events.workers.get() {
        tracker.spawn(consumer.clone().run(cancel.clone()));
    }
    let sm = app.engine.sm.clone();
    let cfg = app.cfg.clone();
    tracker.spawn(async move {
        let mut cache = AgeCache::default();
        loop {
            let delay = match inventory::scan(&sm, &cfg, &mut cache).await {
                Ok(inv) => {
                    let first = inventory.read().await.is_none();
                    if first {
                        tracing::info!(
                            secrets = inv.fleet.entries.len(),
                            "standby: recording events from the queue"
                        );
                    }
                    *inventory.write().await = Some(inv);
                    cfg.daemon.reconcile_interval
                }
                Err(e) => {
                    tracing::warn!(error = %e, "standby: cannot list the fleet for recording events; retrying");
                    cfg.daemon.reconcile_interval.min(Duration::from_secs(15))
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    });
    tracker
}

/// Waits for the standby's recorder to finish (its consumers end their long poll and
/// record what it brought), within the shutdown deadline.
async fn stop_recorder(recorder: TaskTracker) {
    if tokio::time::timeout(SHUTDOWN_DEADLINE, recorder.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "the standby's event consumers did not stop within {SHUTDOWN_DEADLINE:?}; going on (what they recorded is committed)"
        );
    }
}

/// One renewal, a third of the lease after the last: `false` once the lease is lost, or
/// cannot be confirmed and has expired by this host's clock.
async fn keep_lease(lease: Option<&mut crate::lease::Lease>) -> bool {
    let Some(lease) = lease else {
        return std::future::pending().await;
    };
    tokio::time::sleep(lease.renew_every()).await;
    match lease.tick(Utc::now().timestamp_millis()).await {
        Ok(crate::lease::Role::Leader { .. }) => true,
        Ok(crate::lease::Role::Standby { .. }) => false,
        Err(e) => {
            let held = lease
                .held_until_ms()
                .is_some_and(|u| Utc::now().timestamp_millis() < u);
            tracing::warn!(error = %e, still_held = held, "cannot renew the leader lease");
            held
        }
    }
}

/// Starts one generation's loops; returns their tracker and the store to close.
fn start(app: App, health: Arc<Health>, cancel: CancellationToken) -> (TaskTracker, StoreHandle) {
    let shared = Arc::new(Shared {
        app,
        inventory: Arc::new(RwLock::new(None)),
        health,
        busy: std::sync::Mutex::new(HashSet::new()),
        wake: Arc::new(tokio::sync::Notify::new()),
    });
    let tracker = TaskTracker::new();
    let h = shared.health.clone();
    tracker.spawn(alerts::publish_loop(
        shared.app.store.clone(),
        shared.app.sns.clone(),
        shared.app.cfg.clone(),
        shared.app.metrics.clone(),
        move || h.beat("publisher"),
        cancel.clone(),
    ));
    tracker.spawn(reconcile_loop(shared.clone(), cancel.clone()));
    if let Some(events) = &shared.app.cfg.events {
        let sink = Arc::new(EventSink {
            cfg: shared.app.cfg.clone(),
            normalize: crate::events::normalize_config(events, shared.app.cfg.requests.as_ref()),
            store: shared.app.store.clone(),
            metrics: shared.app.metrics.clone(),
            clock: shared.app.clock,
            inventory: shared.inventory.clone(),
            wake: shared.wake.clone(),
            alerts: shared.app.engine.alerts.clone(),
        });
        let consumer = Arc::new(Consumer {
            sqs: shared.app.sqs.clone(),
            queue_url: events.queue_url.clone(),
            sink: sink.clone(),
        });
        for _ in 0..events.workers.get() {
            tracker.spawn(consumer.clone().run(cancel.clone()));
        }
        if events.cloudtrail.enabled {
            let routed = shared.app.engine.sm.is_routed();
            for (place, client) in &shared.app.cloudtrail {
                let poller = Poller {
                    client: client.clone(),
                    place: place.clone(),
                    cursor: crate::events::cloudtrail::cursor_name(place, routed),
                    sink: sink.clone(),
                    lookback: chrono::Duration::from_std(events.cloudtrail.lookback)
                        .unwrap_or(chrono::Duration::hours(24)),
                    interval: events.cloudtrail.poll_interval,
                };
                tracker.spawn(poller.run(cancel.clone()));
            }
        }
    }
    tracker.spawn(
        crate::validation::Watcher {
            cfg: shared.app.cfg.clone(),
            store: shared.app.store.clone(),
            alerts: shared.app.engine.alerts.clone(),
            metrics: shared.app.metrics.clone(),
            cw: shared.app.engine.cw.clone(),
            sm: shared.app.engine.sm.clone(),
            clock: shared.app.clock,
        }
        .run(cancel.clone()),
    );
    if shared.app.cfg.requests.is_some() {
        tracker.spawn(
            crate::requests::RequestLoop {
                cfg: shared.app.cfg.clone(),
                store: shared.app.store.clone(),
                alerts: shared.app.engine.alerts.clone(),
                sm: shared.app.engine.sm.clone(),
                eventbridge: shared.app.eventbridge.clone(),
                clock: shared.app.clock,
            }
            .run(cancel.clone()),
        );
    }
    tracker.spawn(executor_loop(shared.clone(), tracker.clone(), cancel));
    let store = shared.app.store.clone();
    (tracker, store)
}

/// Stops one generation: cancel, wait for its tasks (with a deadline), close the store.
async fn stop(tracker: TaskTracker, cancel: CancellationToken, store: StoreHandle) {
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "tasks did not stop within {SHUTDOWN_DEADLINE:?}; going on (state is committed)"
        );
    }
    store.shutdown().await.ok();
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    cancel: CancellationToken,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let s1 = health.clone();
    let s2 = health;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    s1.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                let standby = s2.standby.lock().ok().and_then(|s| s.clone());
                if let Some(holder) = standby {
                    // Ready for its role: following the log, ready to take over.
                    (StatusCode::OK, format!("standby: {holder}\n"))
                } else if s2.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready: leader\n".to_string())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: waiting for a successful reconcile with AWS\n".to_string(),
                    )
                }
            }),
        );
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

async fn reconcile_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let interval = shared.app.cfg.daemon.reconcile_interval;
    let mut cache = AgeCache::default();
    // Since when reconciles fail (an AWS outage, lost credentials), for aws_unreachable.
    let mut failing_since: Option<chrono::DateTime<Utc>> = None;
    loop {
        let delay = match reconcile(&shared, &mut cache).await {
            Ok(()) => {
                failing_since = None;
                snapshot_if_due(&shared).await;
                interval
            }
            Err(e) => {
                shared.health.set_ready(false);
                let now = shared.app.clock.now();
                let since = *failing_since.get_or_insert(now);
                let after = chrono::Duration::from_std(shared.app.cfg.alerts.unreachable_after)
                    .unwrap_or(chrono::Duration::minutes(10));
                if now - since >= after {
                    let mut a = Alert::new(AlertKind::AwsUnreachable, None, now);
                    a.error = Some(format!("{e:#}"));
                    a.details = serde_json::json!({ "failing_since": since.to_rfc3339() });
                    // One alert per outage, however long it lasts.
                    a.dedupe_key = format!("aws_unreachable:{}", since.timestamp());
                    if let Err(e) = shared.app.engine.alerts.raise_once(a).await {
                        tracing::warn!(error = %e, "cannot queue the aws_unreachable alert");
                    }
                }
                tracing::warn!(error = %format!("{e:#}"), "reconcile failed; retrying");
                interval.min(Duration::from_secs(15))
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// With the DynamoDB backend, the leader writes a snapshot of the shared state once the
/// log has grown `SNAPSHOT_EVERY` entries past the last one, so that a start (a standby's
/// too) replays a bounded tail. A failure is retried at the next reconcile.
async fn snapshot_if_due(shared: &Shared) {
    let Some(state) = &shared.app.shared_state else {
        return;
    };
    if !state.journal.snapshot_due() {
        return;
    }
    match shared.app.store.call(|s| s.write_snapshot()).await {
        Ok(Some(seq)) => tracing::info!(seq, "state snapshot written"),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the state snapshot; retrying at the next reconcile")
        }
    }
}

fn kind_for(reason: Reason) -> TriggerKind {
    match reason {
        Reason::Scheduled => TriggerKind::Scheduled,
        Reason::Overdue => TriggerKind::Overdue,
        Reason::NeverRotated => TriggerKind::NeverRotated,
    }
}

/// One reconcile pass.
async fn reconcile(shared: &Shared, cache: &mut AgeCache) -> anyhow::Result<()> {
    let app = &shared.app;
    let cfg = &app.cfg;
    let now = app.clock.now();
    let mut inv = inventory::scan(&app.engine.sm, cfg, cache)
        .await
        .context("inventory")?;
    let stale = carry_over(shared, &mut inv).await;
    report_places(app, &inv, now).await?;
    let unfinished = app.store.call(|s| s.db().unfinished_attempts()).await?;
    let active: HashSet<String> = unfinished.iter().map(|a| a.secret.clone()).collect();
    let last = app.store.call(|s| s.db().last_finished_attempts()).await?;
    let failing: HashSet<String> = last
        .iter()
        .filter(|a| matches!(a.state, AttemptState::Failed | AttemptState::Stuck))
        .map(|a| a.secret.clone())
        .collect();
    // Secrets whose dangling AWSPENDING a failed attempt of ours left: stuck, and already
    // escalated by that attempt's rotation_failed.
    let mut escalated: HashSet<String> = HashSet::new();
    let stuck_after = chrono::Duration::from_std(app.engine.opts.monitor_timeout)
        .unwrap_or(chrono::Duration::minutes(15));
    let mut targets = Vec::with_capacity(inv.fleet.entries.len());
    let mut facts: HashMap<String, Facts> = HashMap::new();
    let mut arns: HashMap<String, String> = HashMap::new();
    // Account-region of each secret, for the per-account gauges.
    let mut places: HashMap<String, aws::Place> = HashMap::new();
    let mut counts: HashMap<(aws::Place, &'static str), i64> = HashMap::new();
    for e in &inv.fleet.entries {
        let place = app.engine.sm.place_of(&e.info.arn);
        if stale.contains(&e.key) {
            // Known from the last good scan: kept so that events still find it, but not
            // planned or judged on old facts while its account-region does not answer.
            *counts.entry((place, "unreachable")).or_default() += 1;
            continue;
        }
        places.insert(e.key.clone(), place);
        let settings = inventory::settings(cfg, e.origin);
        let left = inventory::left_by_failure(&e.info, last.iter().find(|a| a.secret == e.key));
        if left {
            escalated.insert(e.key.clone());
        }
        let f = inventory::facts(
            &e.info,
            inv.versions.get(&e.info.arn).map(Vec::as_slice),
            cache,
            active.contains(&e.key),
            left,
            now,
            stuck_after,
        );
        facts.insert(e.key.clone(), f);
        arns.insert(e.key.clone(), e.info.arn.clone());
        targets.push(settings.target(e.key.clone()));
    }
    let policy = crate::commands::policy(cfg);
    // Statuses, for the gauge and the alerts.
    for t in &targets {
        let f = facts.get(&t.id).copied().unwrap_or_default();
        let c = planner::compliance(t, &f, now, &policy);
        let status = inventory::status_label(c, failing.contains(&t.id));
        let place = places
            .get(&t.id)
            .cloned()
            .unwrap_or_else(|| app.engine.sm.place_of(&t.id));
        *counts.entry((place, status)).or_default() += 1;
        match c {
            Compliance::Stuck if escalated.contains(&t.id) => {}
            Compliance::Stuck => {
                let mut a = Alert::new(AlertKind::RotationStuck, Some(&t.id), now);
                a.secret_arn = arns.get(&t.id).cloned();
                a.error = Some("AWSPENDING sits on a version without AWSCURRENT for longer than the rotation timeout".into());
                app.engine.alerts.raise(a).await?;
            }
            Compliance::Overdue => {
                let mut a = Alert::new(AlertKind::Overdue, Some(&t.id), now);
                a.secret_arn = arns.get(&t.id).cloned();
                a.details = serde_json::json!({
                    "current_version_created": f.current_created.map(|d| d.to_rfc3339()),
                    "max_age": crate::config::fmt_duration(cfg.policy.max_age),
                });
                app.engine.alerts.raise(a).await?;
            }
            _ => {}
        }
    }
    native_schedules(app, &inv, &active, now).await?;
    for (id, reason) in &inv.fleet.missing {
        let mut a = Alert::new(AlertKind::SecretMissing, Some(id), now);
        a.error = Some(format!("configured secret {id} is {}", reason.as_str()));
        app.engine.alerts.raise_once(a).await?;
    }
    for (id, _) in &inv.fleet.missing {
        *counts
            .entry((app.engine.sm.place_of(id), "missing"))
            .or_default() += 1;
    }
    app.metrics
        .set_secret_counts(&app.engine.sm.places(), &counts);

    // Triggers for windows open now or opening before the next pass.
    let horizon = now
        + chrono::Duration::from_std(cfg.daemon.reconcile_interval)
            .unwrap_or(chrono::Duration::minutes(15))
        + chrono::Duration::minutes(1);
    let longest_window = targets
        .iter()
        .map(|t| t.window)
        .max()
        .unwrap_or(chrono::Duration::hours(4));
    let plan = planner::plan(
        &targets,
        &|id| facts.get(id).copied(),
        now,
        horizon + longest_window,
        &policy,
    );
    let mut new_triggers = Vec::new();
    for e in plan
        .entries
        .iter()
        .filter(|e| (e.start_at < horizon || e.reason == Reason::Overdue) && e.window_end > now)
    {
        let arn = arns.get(&e.secret).cloned().unwrap_or_default();
        let key = match e.reason {
            // One overdue trigger per AWSCURRENT version, not one per pass.
            Reason::Overdue => format!(
                "overdue:{arn}:{}",
                inv.fleet
                    .find(&e.secret)
                    .and_then(|x| x.info.current_version())
                    .unwrap_or("-")
            ),
            _ => format!("plan:{arn}:{}", e.window_start.timestamp()),
        };
        new_triggers.push(NewTrigger {
            secret: e.secret.clone(),
            kind: kind_for(e.reason),
            dedupe_key: Some(key),
            ticket: e.ticket.clone(),
            reason: format!(
                "{} window {} .. {}",
                e.reason.as_str(),
                e.window_start.format(crate::commands::TIME_FORMAT),
                e.window_end.format(crate::commands::TIME_FORMAT)
            ),
            actor: "rotationd".into(),
            created_at: now,
            // Overdue secrets rotate as soon as possible (the rate limiter still caps
            // RotateSecret per minute); planned windows keep their staggered starts.
            not_before: Some(if e.reason == Reason::Overdue {
                e.window_start
            } else {
                e.start_at
            }),
            deadline: Some(e.window_end),
        });
    }
    let created = app
        .store
        .call(move |s| {
            s.transaction(|db| {
                let mut n = 0;
                for t in &new_triggers {
                    if db.insert_trigger(t)?.new {
                        n += 1;
                    }
                }
                Ok(n)
            })
        })
        .await?;
    if created > 0 {
        tracing::info!(count = created, "planned rotations queued");
    }
    let pending = app.store.call(|s| s.db().pending_trigger_counts()).await?;
    for kind in TriggerKind::ALL {
        app.metrics
            .triggers_pending
            .with_label_values(&[kind.as_str()])
            .set(pending.get(kind).copied().unwrap_or(0) as i64);
    }
    app.metrics
        .last_reconcile_success_timestamp_seconds
        .set(Utc::now().timestamp() as f64);
    *shared.inventory.write().await = Some(inv);
    shared.health.set_ready(true);
    Ok(())
}

/// Keeps the secrets of account-regions this scan could not list, as the last good scan saw
/// them, and returns their keys: a departure naming one of them must still find it (and its
/// trigger waits), and a secret must not vanish from status because its account hiccuped.
async fn carry_over(shared: &Shared, inv: &mut Inventory) -> HashSet<String> {
    let mut stale = HashSet::new();
    if inv.unreachable.is_empty() {
        return stale;
    }
    let previous = shared.inventory.read().await;
    let Some(previous) = previous.as_ref() else {
        return stale;
    };
    for e in &previous.fleet.entries {
        let down = aws::arn_place(&e.info.arn).is_some_and(|p| !inv.reached(&p));
        if down && inv.fleet.find(&e.info.arn).is_none() {
            stale.insert(e.key.clone());
            inv.fleet.entries.push(e.clone());
            if let Some(vs) = previous.versions.get(&e.info.arn) {
                inv.versions.insert(e.info.arn.clone(), vs.clone());
            }
        }
    }
    inv.fleet.entries.sort_by(|a, b| a.key.cmp(&b.key));
    stale
}

/// `rotationd_account_up` for every account-region, and one `account_unreachable` alert per
/// account while any of its regions cannot be listed: the first failure is remembered in
/// the store (cursor `account_unreachable:<id>`), so the alert goes out once per outage,
/// across restarts and reloads, after `[alerts] unreachable_after`; it is forgotten when
/// every region of the account answers again.
async fn report_places(
    app: &App,
    inv: &Inventory,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let places = app.engine.sm.places();
    app.metrics.account_up.reset();
    for p in &places {
        app.metrics
            .account_up
            .with_label_values(&[&p.account, &p.region])
            .set(i64::from(inv.reached(p)));
    }
    if !app.engine.sm.is_routed() {
        // Without [[account]] a failed listing fails the reconcile: aws_unreachable.
        return Ok(());
    }
    let mut accounts: Vec<String> = places.iter().map(|p| p.account.clone()).collect();
    accounts.dedup();
    let after = chrono::Duration::from_std(app.cfg.alerts.unreachable_after)
        .unwrap_or(chrono::Duration::minutes(10));
    for account in accounts {
        let cursor = format!("account_unreachable:{account}");
        let failing: Vec<&(aws::Place, aws::AwsError)> = inv
            .unreachable
            .iter()
            .filter(|(p, _)| p.account == account)
            .collect();
        let c = cursor.clone();
        let since = app.store.call(move |s| s.db().get_cursor(&c)).await?;
        if failing.is_empty() {
            if since.is_some() {
                tracing::info!(account = %account, "the account answers again");
                app.store
                    .call(move |s| s.db().delete_cursor(&cursor))
                    .await?;
            }
            continue;
        }
        let regions: Vec<String> = failing.iter().map(|(p, _)| p.region.clone()).collect();
        let error = failing
            .first()
            .map(|(_, e)| e.to_string())
            .unwrap_or_default();
        let since = match since
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c.value).ok())
            .map(|t| t.with_timezone(&Utc))
        {
            Some(t) => t,
            None => {
                tracing::warn!(account = %account, regions = ?regions, error = %error, "cannot list this account's secrets; the other accounts go on");
                let value = now.to_rfc3339();
                app.store
                    .call(move |s| s.db().set_cursor(&cursor, &value, now))
                    .await?;
                now
            }
        };
        if now - since >= after {
            let mut a = Alert::new(AlertKind::AccountUnreachable, None, now);
            a.error = Some(error);
            a.details = serde_json::json!({
                "account": account,
                "regions": regions,
                "failing_since": since.to_rfc3339(),
            });
            a.dedupe_key = format!("account_unreachable:{account}:{}", since.timestamp());
            app.engine.alerts.raise_once(a).await?;
        }
    }
    Ok(())
}

/// Secrets Manager's own schedule against the TOML schedule (`[policy] native_schedule`):
/// counts the drift, reports it once per secret and native schedule (P3), and for `sync`
/// or `disable` changes it. A change is made once per target: a cursor per secret
/// remembers what rotationd wrote (or that it cancelled), and while Secrets Manager still
/// disagrees afterwards rotationd reports instead of acting again, so a change that does
/// not take cannot loop. The cursor is forgotten once the two agree, so a later manual
/// change is corrected again. Never while a rotation of the secret runs:
/// CancelRotateSecret would cancel it, and a schedule written by RotateSecret is refused
/// while AWSPENDING is out.
async fn native_schedules(
    app: &App,
    inv: &inventory::Inventory,
    active: &HashSet<String>,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    use crate::drift::{self, Action};
    let cfg = &app.cfg;
    let mode = cfg.policy.native_schedule;
    let mut drifting = 0i64;
    let mut reported: Vec<(String, drift::Drift)> = Vec::new();
    const CURSOR: &str = "native_schedule:";
    let mut acted: HashMap<String, String> = app
        .store
        .call(|s| s.db().cursors_with_prefix(CURSOR))
        .await?
        .into_iter()
        .map(|c| (c.name, c.value))
        .collect();
    for e in &inv.fleet.entries {
        if aws::arn_place(&e.info.arn).is_some_and(|p| !inv.reached(&p)) {
            continue;
        }
        let settings = inventory::settings(cfg, e.origin);
        let expected = drift::aws_rules(&settings.schedule, settings.window);
        let cursor = format!("{CURSOR}{}", e.info.arn);
        let Some(d) = drift::drift(&e.info.native, &expected, mode) else {
            if acted.remove(&cursor).is_some() {
                app.store
                    .call(move |s| s.db().delete_cursor(&cursor))
                    .await?;
            }
            continue;
        };
        drifting += 1;
        let action = drift::action(&e.info.native, &expected, mode);
        let notice = |why: String| {
            let mut a = Alert::new(AlertKind::NativeScheduleDrift, Some(&e.key), now);
            a.secret_arn = Some(e.info.arn.clone());
            a.reason = Some(why);
            a.details = serde_json::json!({
                "native": d.native,
                "expected": d.expected,
                "native_schedule": mode.as_str(),
            });
            a.dedupe_key = format!(
                "native_schedule_drift:{}:{}:{}",
                e.key, d.native, d.expected
            );
            a
        };
        if action == Action::None {
            reported.push((e.key.clone(), d));
            continue;
        }
        if active.contains(&e.key) || e.info.dangling_pending().is_some() {
            continue;
        }
        let (label, fingerprint) = match &action {
            Action::Write(r) => (
                "sync",
                format!("sync {} for {}", r.schedule_expression, r.duration),
            ),
            _ => ("disable", "disable".to_string()),
        };
        if acted.get(&cursor) == Some(&fingerprint) {
            let mut a = notice(format!(
                "rotationd already tried to {label} this schedule, but Secrets Manager still shows {}; {}",
                d.native, d.why
            ));
            a.dedupe_key.push_str(":retried");
            app.engine.alerts.raise_once(a).await?;
            continue;
        }
        let id = e.info.arn.clone();
        let result = match &action {
            Action::Write(rules) => {
                app.engine
                    .sm
                    .write_schedule(&id, e.info.rotation_lambda_arn.as_deref(), rules)
                    .await
            }
            _ => app.engine.sm.cancel_rotation(&id).await,
        };
        let outcome = match &result {
            Ok(()) => "ok",
            Err(err) if err.retryable => return Err(anyhow::anyhow!("{err}")),
            Err(_) => "failed",
        };
        app.metrics
            .native_schedule_changes_total
            .with_label_values(&[label, outcome])
            .inc();
        let audit = crate::store::NewAuditEntry {
            at: now,
            actor: "rotationd".into(),
            action: format!("native_schedule_{label}"),
            secret: Some(e.key.clone()),
            ticket: None,
            reason: Some(d.why.clone()),
            outcome: outcome.into(),
            detail: Some(serde_json::json!({
                "native_before": d.native,
                "expected": d.expected,
                "error": result.as_ref().err().map(|e| e.to_string()),
            })),
        };
        app.store
            .call(move |s| {
                s.transaction(|db| {
                    db.append_audit(&audit)?;
                    db.set_cursor(&cursor, &fingerprint, now)
                })
            })
            .await?;
        match result {
            Ok(()) => {
                tracing::info!(secret = %e.key, action = label, native = %d.native, expected = %d.expected, "native schedule changed")
            }
            Err(err) => {
                tracing::warn!(secret = %e.key, action = label, error = %err, "cannot change the native schedule");
                let mut a = notice(format!("{label} failed: {err}; {}", d.why));
                a.dedupe_key.push_str(":failed");
                app.engine.alerts.raise_once(a).await?;
            }
        }
    }
    app.metrics.native_schedule_drift.set(drifting);
    // One notice for the whole fleet, sent again only when the set of drifting secrets (or
    // what they drift to) changes: a fleet whose rotation functions all run on their own
    // schedule would otherwise send one notice per secret.
    if !reported.is_empty() {
        reported.sort_by(|a, b| a.0.cmp(&b.0));
        // A stable digest (not std's hasher, which may change between Rust releases).
        let mut fingerprint = <sha2::Sha256 as sha2::Digest>::new();
        for (key, d) in &reported {
            for part in [key.as_str(), &d.native, &d.expected] {
                sha2::Digest::update(&mut fingerprint, part.as_bytes());
                sha2::Digest::update(&mut fingerprint, [0u8]);
            }
        }
        let digest = sha2::Digest::finalize(fingerprint);
        const LISTED: usize = 50;
        let mut a = Alert::new(AlertKind::NativeScheduleDrift, None, now);
        a.reason = Some(format!(
            "{} secret(s) are also rotated by Secrets Manager on a schedule that differs from rotationd's: they can be rotated twice, or not when planned; first: {}",
            reported.len(),
            reported[0].1.why
        ));
        a.details = serde_json::json!({
            "count": reported.len(),
            "native_schedule": mode.as_str(),
            "secrets": reported.iter().take(LISTED).map(|(key, d)| serde_json::json!({
                "secret": key, "native": d.native, "expected": d.expected,
            })).collect::<Vec<_>>(),
            "more": reported.len().saturating_sub(LISTED),
            "see": "rotationd plan --live",
        });
        a.dedupe_key = format!(
            "native_schedule_drift:{}",
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        app.engine.alerts.raise_once(a).await?;
    }
    Ok(())
}

async fn executor_loop(shared: Arc<Shared>, tracker: TaskTracker, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_ATTEMPTS));
    let mut retry_at: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut first = true;
    let owned: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
    let mut ticks: u64 = 0;
    // Test hook (`ROTATIOND_TEST_FAILPOINT=hang-executor`): the executor hangs after a few
    // ticks, so a test can watch the systemd watchdog stop being fed.
    let hang = std::env::var("ROTATIOND_TEST_FAILPOINT").is_ok_and(|f| f == "hang-executor");
    loop {
        if hang && ticks == 3 {
            std::future::pending::<()>().await;
        }
        shared.health.beat("executor");
        if ticks.is_multiple_of(SLA_CHECK_TICKS)
            && let Err(e) = watch_departure_slas(&shared).await
        {
            tracing::warn!(error = %format!("{e:#}"), "departure SLA check failed; retrying");
        }
        ticks += 1;
        if let Err(e) = execute_due(
            &shared,
            &tracker,
            &permits,
            &mut retry_at,
            first,
            &owned,
            &cancel,
        )
        .await
        {
            tracing::warn!(error = %format!("{e:#}"), "executor pass failed; retrying");
        }
        first = false;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute_due(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    permits: &Arc<Semaphore>,
    retry_at: &mut HashMap<String, tokio::time::Instant>,
    first: bool,
    owned: &Arc<std::sync::Mutex<HashSet<String>>>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let app = &shared.app;
    let now = app.clock.now();
    // 0. At start, before any driver runs: attempts that finished just before a crash but
    //    whose triggers, audit entry and alert were never written.
    if first {
        match app.engine.finish_interrupted().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "completed attempts interrupted by the last stop"),
            // Not fatal for this pass: the next start tries again.
            Err(e) => {
                tracing::warn!(error = %e, "cannot complete attempts interrupted by the last stop")
            }
        }
    }
    // 1. Unfinished attempts: all of them at start (resume after a restart), then our own
    //    after a retryable failure, and orphans whose driver died.
    let unfinished = app.store.call(|s| s.db().unfinished_attempts()).await?;
    for a in unfinished {
        let mine = owned.lock().map(|o| o.contains(&a.id)).unwrap_or(false);
        let orphan = now - a.updated_at > ORPHAN_AFTER;
        if !(first || mine || orphan) {
            continue;
        }
        if retry_at
            .get(&a.id)
            .is_some_and(|t| *t > tokio::time::Instant::now())
        {
            continue;
        }
        if !claim(shared, &a.secret) {
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            release(shared, &a.secret);
            return Ok(());
        };
        if first {
            tracing::info!(secret = %a.secret, attempt = %a.id, state = %a.state, "resuming unfinished attempt");
        }
        owned.lock().map(|mut o| o.insert(a.id.clone())).ok();
        spawn_drive(
            shared,
            tracker,
            a.id.clone(),
            a.secret.clone(),
            permit,
            owned.clone(),
            cancel.clone(),
        );
        retry_at.insert(a.id, tokio::time::Instant::now() + RETRY_AFTER);
    }
    // 2. Due pending triggers; event-triggered ones only while the storm guard allows.
    let pending = app.store.call(|s| s.db().pending_triggers()).await?;
    // Event rotations this pass may still start: None until the guard was asked.
    let mut storm_budget: Option<u64> = None;
    for t in pending {
        if t.not_before.is_some_and(|nb| nb > now) {
            continue;
        }
        if EVENT_KINDS.contains(&t.kind) {
            let budget = match storm_budget {
                Some(b) => b,
                None => storm_guard(shared, 0).await?,
            };
            if budget == 0 {
                // Over the limit: pause (once) and keep the trigger queued.
                if storm_budget != Some(0) {
                    storm_guard(shared, 1).await?;
                }
                storm_budget = Some(0);
                continue;
            }
            storm_budget = Some(budget - 1);
        }
        let planned = matches!(
            t.kind,
            TriggerKind::Scheduled | TriggerKind::Overdue | TriggerKind::NeverRotated
        );
        if planned && t.deadline.is_some_and(|d| d <= now) {
            let id = t.id;
            app.store
                .call(move |s| {
                    s.transaction(|db| {
                        db.set_trigger_status(id, TriggerStatus::Cancelled, now)?;
                        db.append_audit(&crate::store::NewAuditEntry {
                            at: now,
                            actor: "rotationd".into(),
                            action: "rotate".into(),
                            secret: Some(t.secret.clone()),
                            ticket: t.ticket.clone(),
                            reason: Some(t.reason.clone()),
                            outcome: "window_missed".into(),
                            detail: None,
                        })?;
                        Ok(())
                    })
                })
                .await?;
            continue;
        }
        if !claim(shared, &t.secret) {
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            release(shared, &t.secret);
            return Ok(());
        };
        let arn = shared
            .inventory
            .read()
            .await
            .as_ref()
            .and_then(|inv| inv.fleet.find(&t.secret).map(|e| e.info.arn.clone()));
        let attempt = match app.engine.attempt_for_trigger(&t, arn).await {
            Ok(id) => id,
            Err(e) => {
                release(shared, &t.secret);
                return Err(e.into());
            }
        };
        owned.lock().map(|mut o| o.insert(attempt.clone())).ok();
        spawn_drive(
            shared,
            tracker,
            attempt,
            t.secret.clone(),
            permit,
            owned.clone(),
            cancel.clone(),
        );
    }
    Ok(())
}

/// The departure SLA watch runs every this many executor ticks (seconds).
const SLA_CHECK_TICKS: u64 = 5;

/// Trigger kinds that come from events, counted by the storm guard.
pub const EVENT_KINDS: &[TriggerKind] = &[
    TriggerKind::Departure,
    TriggerKind::Compromise,
    TriggerKind::Retry,
];
/// The state-store cursor holding the storm guard's pause (`paused since RFC3339`).
pub const STORM_CURSOR: &str = "storm_paused";
/// When `rotationd resume` last lifted a pause.
pub const STORM_RESUMED_CURSOR: &str = "storm_resumed";

/// How many more event-triggered rotations may start: 0 when paused, else
/// `max_event_rotations_per_hour` minus those started in the last hour (or since the last
/// `rotationd resume`). When `wanted` more than that are waiting, it pauses event
/// rotations and pages Security; queued triggers stay pending until `rotationd resume`.
async fn storm_guard(shared: &Shared, wanted: u64) -> anyhow::Result<u64> {
    let app = &shared.app;
    let Some(events) = &app.cfg.events else {
        return Ok(u64::MAX);
    };
    let paused = app.store.call(|s| s.db().get_cursor(STORM_CURSOR)).await?;
    if paused.is_some_and(|c| !c.value.is_empty()) {
        return Ok(0);
    }
    let now = app.clock.now();
    // Count from the last `rotationd resume` at the latest, or a resume would re-pause at
    // once on the same rotations.
    let resumed = app
        .store
        .call(|s| s.db().get_cursor(STORM_RESUMED_CURSOR))
        .await?
        .and_then(|c| DateTime::parse_from_rfc3339(&c.value).ok())
        .map(|t| t.with_timezone(&Utc));
    let since = resumed.map_or(now - chrono::Duration::hours(1), |r| {
        r.max(now - chrono::Duration::hours(1))
    });
    let started = app
        .store
        .call(move |s| s.db().count_attempts_since(EVENT_KINDS, since))
        .await?;
    let max = u64::from(events.max_event_rotations_per_hour.get());
    let left = max.saturating_sub(started);
    if wanted <= left {
        return Ok(left);
    }
    let value = now.to_rfc3339();
    let mut alert = Alert::new(AlertKind::RotationStorm, None, now);
    alert.error = Some(format!(
        "{started} event-triggered rotations in the last hour (limit {max}); event rotations are paused, triggers stay queued"
    ));
    alert.dedupe_key = format!("rotation_storm:{value}");
    let new = alert.to_new_alert();
    app.store
        .call(move |s| {
            s.transaction(|db| {
                db.set_cursor(STORM_CURSOR, &value, now)?;
                db.enqueue_alert(&new, now)?;
                db.append_audit(&crate::store::NewAuditEntry {
                    at: now,
                    actor: "rotationd".into(),
                    action: "storm_guard".into(),
                    secret: None,
                    ticket: None,
                    reason: Some(format!("{started} event rotations in an hour, limit {max}")),
                    outcome: "paused".into(),
                    detail: None,
                })?;
                Ok(())
            })
        })
        .await?;
    tracing::error!(
        started,
        max,
        "rotation storm: event-triggered rotations paused until `rotationd resume`"
    );
    Ok(0)
}

/// Departure deadlines: `departure_sla_at_risk` once inside `sla_warning` of the deadline,
/// `departure_sla_missed` once past it, each once per trigger.
async fn watch_departure_slas(shared: &Shared) -> anyhow::Result<()> {
    let app = &shared.app;
    let Some(events) = &app.cfg.events else {
        return Ok(());
    };
    let now = app.clock.now();
    let warning =
        chrono::Duration::from_std(events.sla_warning).unwrap_or(chrono::Duration::hours(4));
    let open = app
        .store
        .call(|s| s.db().unresolved_triggers(TriggerKind::Departure))
        .await?;
    let earliest = open.iter().filter_map(|t| t.deadline).min();
    app.metrics
        .departure_deadline_earliest_timestamp_seconds
        .set(earliest.map_or(0.0, |d| d.timestamp() as f64));
    for t in open {
        let Some(deadline) = t.deadline else { continue };
        if t.status == crate::store::TriggerStatus::Failed {
            // Failed, but a later rotation of the secret (a retry, a manual one) succeeded.
            let secret = t.secret.clone();
            let fixed = app
                .store
                .call(move |s| s.db().last_succeeded_attempt(&secret))
                .await?
                .and_then(|a| a.finished_at)
                .is_some_and(|f| f >= t.updated_at);
            if fixed {
                continue;
            }
        }
        let kind = if now >= deadline {
            AlertKind::DepartureSlaMissed
        } else if now >= deadline - warning {
            AlertKind::DepartureSlaAtRisk
        } else {
            continue;
        };
        let mut a = Alert::new(kind, Some(&t.secret), now);
        a.trigger = Some("departure".into());
        a.ticket = Some(
            t.ticket
                .clone()
                .unwrap_or_else(|| crate::engine::INC_PENDING.into()),
        );
        a.reason = Some(t.reason.clone());
        a.deadline = Some(deadline);
        a.dedupe_key = format!("{}:{}", kind.as_str(), t.id);
        a.details = serde_json::json!({ "trigger": t.id, "status": t.status.as_str() });
        app.engine.alerts.raise_once(a).await?;
    }
    Ok(())
}

fn claim(shared: &Shared, secret: &str) -> bool {
    shared
        .busy
        .lock()
        .map(|mut b| b.insert(secret.to_string()))
        .unwrap_or(false)
}

fn release(shared: &Shared, secret: &str) {
    if let Ok(mut b) = shared.busy.lock() {
        b.remove(secret);
    }
}

fn spawn_drive(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    attempt: String,
    secret: String,
    permit: tokio::sync::OwnedSemaphorePermit,
    owned: Arc<std::sync::Mutex<HashSet<String>>>,
    cancel: CancellationToken,
) {
    let shared = shared.clone();
    tracker.spawn(async move {
        let progress = |msg: &str| tracing::info!(secret = %secret, attempt = %attempt, "{msg}");
        let result = shared.app.engine.drive(&attempt, &progress, &cancel).await;
        match result {
            Ok(outcome) => {
                tracing::info!(secret = %secret, attempt = %attempt, outcome = outcome.label(), "attempt finished");
                owned.lock().map(|mut o| o.remove(&attempt)).ok();
            }
            Err(EngineError::Cancelled) => {}
            Err(e) => tracing::warn!(secret = %secret, attempt = %attempt, error = %e, "attempt paused"),
        }
        release(&shared, &secret);
        drop(permit);
    });
}
