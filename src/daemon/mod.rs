//! `rotationd run`: the long-running daemon, and the wiring the CLI commands share.
//!
//! [`run`] is a state machine over the process's role:
//!
//! - **Standby** (`[state] backend = "dynamodb"`, the lease is another instance's): try
//!   the lease every third of it, and record what arrives on the SQS queue
//!   (`standby.rs`);
//! - **Leading** (always with SQLite; with DynamoDB while the lease is ours): one
//!   *generation* of loops built from the current config, under a child cancellation
//!   token, tracked so that stopping waits for them:
//!   - the **reconciler** ([`reconcile`]): inventory, compliance, planned triggers, drift;
//!   - the **executor** ([`executor`]): due triggers into attempts, driven with a bounded
//!     concurrency, with the storm guard and the departure SLA watch ([`policy`]);
//!   - the **alert publisher** draining the outbox into SNS;
//!   - the event consumers, the CloudTrail pollers, the watcher of dependents, the
//!     request loop, the upkeep loop and the audit log's anchors ([`anchor`]);
//! - **Stopping**: SIGTERM/SIGINT; STOPPING=1, the role's loops stopped, a leader's audit
//!   log anchored once more (`[audit] anchor_bucket`), the lease released.
//!
//! SIGHUP takes the **one** reload path whatever the role (`Daemon::reload`): the file is
//! re-read; an invalid config is logged and counted and the role goes on; a valid one
//! stops the role's loops and enters the role again with it. In-flight attempts stop at a
//! committed step and the next executor resumes them.
//!
//! The metrics listener, the registry, readiness and the watchdog ([`health`]) outlive
//! roles and generations.

mod anchor;
mod app;
mod drift;
pub mod executor;
mod guard;
pub mod health;
pub mod observe;
pub mod policy;
pub mod reconcile;
mod standby;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use app::{App, SharedState, instance_id};
pub use executor::{MAX_CONCURRENT_ATTEMPTS, ORPHAN_AFTER, RETRY_AFTER};
pub use health::Health;
pub use policy::storm::{EVENT_KINDS, STORM_CURSOR, STORM_RESUMED_CURSOR};

use crate::clock::Clock;
use crate::config::{Config, StateBackend};
use crate::events::EventSink;
use crate::events::cloudtrail::Poller;
use crate::events::sqs::Consumer;
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::store::StoreHandle;
use crate::store::dynamodb::{Lease, Role};
use health::notify;
use standby::Waited;

/// How long stopping waits for a role's tasks before going on anyway. Every loop stops at
/// once when cancelled (the SQS long poll included), so this only bounds a call hung on an
/// AWS endpoint that does not answer; what was committed stays committed. Kept, with
/// [`LEASE_RELEASE_DEADLINE`] and the last audit anchor's `anchor::FINAL_DEADLINE`, below
/// the unit's `TimeoutStopSec` (20 s).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// How long the leader waits for DynamoDB to take the lease back at shutdown; without
/// it, a standby takes over when the lease expires.
const LEASE_RELEASE_DEADLINE: Duration = Duration::from_secs(3);

/// State shared by one generation's loops.
pub(crate) struct Shared {
    pub(crate) app: App,
    /// The latest inventory (the reconciler writes it; events and the executor read it).
    pub(crate) inventory: Arc<RwLock<Option<Inventory>>>,
    /// The Identity Center directory (`[identity_center]`): the reconciler refreshes it,
    /// events read it.
    pub(crate) directory: Arc<RwLock<Option<crate::directory::Directory>>>,
    pub(crate) health: Arc<Health>,
    /// Secrets with an attempt being driven by this process.
    pub(crate) claims: executor::Claims,
    /// Wakes the executor: a trigger was committed or a drive ended.
    pub(crate) wake: Arc<Notify>,
    /// Wakes the request loop: the executor passes on each of its wakes (a request
    /// accepted commits through the same sink, an attempt's end closes its request).
    pub(crate) requests_wake: Arc<Notify>,
}

/// The process's role: the state of [`run`].
enum State {
    Standby(Standby),
    Leading(Generation),
    Stopping,
}

/// A standby: its `App` (a replica of the shared log) and the event recorder.
struct Standby {
    app: App,
    recording: CancellationToken,
    recorder: TaskTracker,
}

/// One generation of the leader's loops.
struct Generation {
    tracker: TaskTracker,
    cancel: CancellationToken,
    store: StoreHandle,
    /// Holds the DynamoDB lease, which must be renewed.
    fenced: bool,
    /// The next renewal: kept here so that a reload that fails (the generation goes on)
    /// does not push it back.
    renew_at: tokio::time::Instant,
    /// With `[audit] anchor_bucket`: what anchors the audit log (at shutdown too).
    anchorer: Option<anchor::Anchorer>,
}

impl State {
    /// Stops what the role runs and closes its store.
    async fn stop(self) {
        self.stop_anchoring(false).await
    }

    /// [`State::stop`]; `anchor`: a leader anchors the audit log once more between its
    /// loops' end and the store's (a clean shutdown, not a lost lease or a reload).
    async fn stop_anchoring(self, anchor: bool) {
        match self {
            State::Standby(s) => {
                s.recording.cancel();
                s.recorder.close();
                wait_or_warn(&s.recorder, "the standby's event consumers").await;
                s.app.store.shutdown().await.ok();
            }
            State::Leading(g) => {
                g.cancel.cancel();
                g.tracker.close();
                wait_or_warn(&g.tracker, "the leader's tasks").await;
                if let (true, Some(a)) = (anchor, &g.anchorer) {
                    a.anchor_final().await;
                }
                g.store.shutdown().await.ok();
            }
            State::Stopping => {}
        }
    }
}

/// Waits for `tracker` within [`SHUTDOWN_DEADLINE`].
async fn wait_or_warn(tracker: &TaskTracker, what: &str) {
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = what,
            deadline = ?SHUTDOWN_DEADLINE,
            "tasks did not stop within the deadline; going on (state is committed)"
        );
    }
}

/// What [`run`] keeps across roles.
struct Daemon {
    path: std::path::PathBuf,
    cfg: Config,
    instance: String,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Tasks that outlive roles: the HTTP server, the watchdog, a recorder finishing.
    outer: TaskTracker,
    cancel: CancellationToken,
    reload: Arc<Notify>,
    /// With the DynamoDB backend: the leader lease, kept across reloads (same holder).
    lease: Option<Lease>,
    /// `--init`: a lost state database (missing, its head file left) is started anew.
    init: bool,
}

/// Runs the daemon until `cancel` fires; `reload` (SIGHUP) re-reads `path`: a valid config
/// restarts the loops with it (in-flight attempts stop at a committed step and resume), an
/// invalid one is logged and counted and the old one stays in force.
pub async fn run(
    path: std::path::PathBuf,
    cfg: Config,
    init: bool,
    cancel: CancellationToken,
    reload: Arc<Notify>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let watchdog = sd_notify::watchdog_enabled();
    let health = Arc::new(Health::new(metrics.clone(), watchdog));
    let listen = cfg.daemon.metrics_listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([daemon] metrics_listen)"))?;
    let outer = TaskTracker::new();
    outer.spawn(health::serve_http(listener, health.clone(), cancel.clone()));
    if let Some(interval) = watchdog {
        outer.spawn(health::watchdog(health.clone(), interval, cancel.clone()));
    }
    // Leader from the start with SQLite (nobody to share with); with DynamoDB only once
    // the lease is ours.
    health.set_standby(match cfg.state.backend {
        StateBackend::Sqlite => None,
        StateBackend::Dynamodb { .. } => Some("not elected yet; reading the shared state".into()),
    });
    let mut daemon = Daemon {
        path,
        cfg,
        instance: instance_id(),
        metrics,
        health,
        outer,
        cancel,
        reload,
        lease: None,
        init,
    };
    let mut state = daemon.enter().await?;
    loop {
        state = match state {
            State::Standby(s) => daemon.stand_by(s).await?,
            State::Leading(g) => daemon.lead(g).await?,
            State::Stopping => break,
        };
    }
    daemon.outer.close();
    wait_or_warn(&daemon.outer, "the HTTP server and the watchdog").await;
    Ok(())
}

impl Daemon {
    /// Builds an `App` from the current config and takes the role it allows: standby on
    /// the DynamoDB backend (until the lease is ours), leading otherwise.
    async fn enter(&mut self) -> anyhow::Result<State> {
        let app = App::build_with(
            self.cfg.clone(),
            self.metrics.clone(),
            &self.instance,
            self.init,
        )
        .await?;
        let Some(shared) = app.shared_state.clone() else {
            return Ok(State::Leading(self.start(app)));
        };
        self.lease.get_or_insert_with(|| {
            Lease::on(
                shared.table.clone(),
                crate::store::dynamodb::LEASE_NAME,
                &self.instance,
                self.cfg.state.lease,
            )
        });
        // While standing by, this instance still records what arrives on the queue.
        let recording = self.cancel.child_token();
        let recorder = standby::record_events(&app, recording.clone());
        Ok(State::Standby(Standby {
            app,
            recording,
            recorder,
        }))
    }

    /// Standby until elected, stopped or reloaded.
    async fn stand_by(&mut self, s: Standby) -> anyhow::Result<State> {
        let Some(lease) = self.lease.as_mut() else {
            anyhow::bail!("standing by without a lease");
        };
        match standby::wait_for_lease(lease, &self.health, &self.cancel, &self.reload).await {
            Waited::Elected => {
                if let Some(shared) = &s.app.shared_state {
                    shared.journal.set_fence(lease.journal_fence());
                }
                self.health.set_standby(None);
                tracing::info!(instance = %self.instance, "leading: planning, rotating and publishing");
                // The recorder's consumers stop at once (what a poll they abandon took
                // comes back to the queue) and finish the batch in hand: not awaited, so
                // the takeover does not wait for them; the process's end does.
                s.recording.cancel();
                s.recorder.close();
                let recorder = s.recorder;
                self.outer.spawn(async move { recorder.wait().await });
                Ok(State::Leading(self.start(s.app)))
            }
            Waited::Stop => self.stop(State::Standby(s)).await,
            Waited::Reload => self.reload(State::Standby(s)).await,
        }
    }

    /// Leads until stopped, reloaded or deposed.
    async fn lead(&mut self, mut g: Generation) -> anyhow::Result<State> {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return self.stop(State::Leading(g)).await,
                _ = self.reload.notified() => return self.reload(State::Leading(g)).await,
                kept = keep_lease(self.lease.as_mut(), g.renew_at), if g.fenced => {
                    if let Some(lease) = self.lease.as_ref().filter(|_| kept) {
                        g.renew_at = tokio::time::Instant::now() + lease.renew_every();
                        continue;
                    }
                    // Lost (or cannot be confirmed before it expires): stop every loop now;
                    // the fence refuses whatever write was still on its way.
                    tracing::warn!(instance = %self.instance, "lost the leader lease; stopping the loops and standing by");
                    State::Leading(g).stop().await;
                    self.health.set_ready(false);
                    return self.enter().await;
                }
            }
        }
    }

    /// SIGTERM in any role: STOPPING=1, the role's loops stopped, the lease released.
    async fn stop(&mut self, role: State) -> anyhow::Result<State> {
        notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
        tracing::info!("shutting down: no new work, in-flight attempts stop at their next step");
        let leading = matches!(&role, State::Leading(g) if g.fenced);
        role.stop_anchoring(true).await;
        if let (true, Some(lease)) = (leading, self.lease.as_mut()) {
            // Let a standby take over now rather than at the lease's expiry.
            match tokio::time::timeout(LEASE_RELEASE_DEADLINE, lease.release()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot release the leader lease; a standby takes over when it expires")
                }
                Err(_) => {
                    tracing::warn!(deadline = ?LEASE_RELEASE_DEADLINE, "releasing the leader lease timed out; a standby takes over when it expires")
                }
            }
        }
        Ok(State::Stopping)
    }

    /// The one reload path, whatever the role: RELOADING=1 and the file re-read. An
    /// invalid config is logged and counted, and `role` goes on with the old one (READY=1
    /// again). A valid one stops the role's loops and enters the role afresh with it; a
    /// leader's reload also lifts a storm-guard pause (what an operator resumes with).
    async fn reload(&mut self, role: State) -> anyhow::Result<State> {
        if let Some(lost) = self.health.state_lost() {
            tracing::error!(state = %lost, "not reloading: the state database was lost; restart rotationd (with --init to start a new history)");
            return Ok(role);
        }
        health::notify_reloading();
        let store = match &role {
            State::Leading(g) => Some(g.store.clone()),
            State::Standby(s) => Some(s.app.store.clone()),
            State::Stopping => None,
        };
        let loaded = self.load();
        if let Some(store) = &store {
            audit_reload(store, &self.cfg, loaded.as_ref()).await;
        }
        let Some(new) = loaded else {
            notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("running; the last reload failed, see the log"),
            ]);
            return Ok(role);
        };
        if let State::Leading(g) = &role {
            let now = Clock::from_env().now();
            if let Err(e) =
                policy::storm::lift_pause(&g.store, now, policy::storm::Lifter::Reload).await
            {
                tracing::warn!(error = %format!("{e:#}"), "cannot lift the storm guard's pause on reload");
            }
        }
        role.stop().await;
        self.cfg = new;
        self.enter().await
    }

    /// Reads and validates the config file again: the new config, or `None` (every
    /// problem logged, the failure counted).
    fn load(&self) -> Option<Config> {
        if let Some(why) = crate::config::writable_by_others(&self.path) {
            self.metrics
                .config_reloads_total
                .with_label_values(&["failure"])
                .inc();
            tracing::error!("{why}");
            tracing::error!("reload refused; the previous configuration stays in force");
            return None;
        }
        match Config::load(&self.path) {
            Ok((new, warnings)) => {
                for w in warnings.warnings() {
                    tracing::warn!("{w}");
                }
                if new.daemon.metrics_listen != self.cfg.daemon.metrics_listen {
                    tracing::warn!(
                        "[daemon] metrics_listen changed; it takes effect at the next restart"
                    );
                }
                self.metrics
                    .config_reloads_total
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(config = %self.path.display(), "configuration reloaded; restarting the loops with it");
                Some(new)
            }
            Err(e) => {
                self.metrics
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
                None
            }
        }
    }

    /// Starts one generation of the leader's loops with `app`.
    fn start(&self, app: App) -> Generation {
        self.health.reset_beats();
        let cancel = self.cancel.child_token();
        let fenced = app.shared_state.is_some();
        let renew_at = tokio::time::Instant::now()
            + self
                .lease
                .as_ref()
                .map_or(Duration::ZERO, |l| l.renew_every());
        let state = match &self.cfg.state.backend {
            StateBackend::Sqlite => self.cfg.daemon.state_path.display().to_string(),
            StateBackend::Dynamodb { table } => format!("dynamodb:{table}"),
        };
        let anchorer = anchor::Anchorer::of(&app);
        let (tracker, store) =
            spawn_loops(app, self.health.clone(), anchorer.clone(), cancel.clone());
        tracing::info!(metrics = %self.cfg.daemon.metrics_listen, state = %state, "rotationd running");
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("running: reconciling and rotating"),
        ]);
        Generation {
            tracker,
            cancel,
            store,
            fenced,
            renew_at,
            anchorer,
        }
    }
}

/// The audit entry of a reload: the old and new file hashes and the sections that changed,
/// or a refusal. A store that does not answer is logged: the reload goes on regardless
/// (the new policy is in the file either way).
async fn audit_reload(store: &StoreHandle, old: &Config, new: Option<&Config>) {
    use crate::store::audit::{Action, NewAuditEntry, Outcome};
    let entry = NewAuditEntry {
        at: Clock::from_env().now(),
        actor: "rotationd".into(),
        action: Action::Config,
        secret: None,
        ticket: None,
        reason: Some(match new {
            Some(n) if n.daemon.mode != old.daemon.mode => format!(
                "configuration reloaded; mode changed from {} to {}",
                old.daemon.mode.as_str(),
                n.daemon.mode.as_str()
            ),
            Some(_) => "configuration reloaded".into(),
            None => "configuration reload refused (invalid or unsafe file; see the log)".into(),
        }),
        outcome: if new.is_some() {
            Outcome::Ok
        } else {
            Outcome::Refused
        },
        detail: Some(serde_json::json!({
            "path": old.path.display().to_string(),
            "old_sha256": old.source_sha256,
            "new_sha256": new.map(|n| n.source_sha256.clone()),
            "changed_sections": new.map(|n| old.changed_sections(n)),
            // The mode in force after this entry, and the one before when it changed:
            // an auditor reads when rotationd started (or stopped) acting.
            "mode": new.map_or(old.daemon.mode, |n| n.daemon.mode).as_str(),
            "mode_changed_from": new
                .filter(|n| n.daemon.mode != old.daemon.mode)
                .map(|_| old.daemon.mode.as_str()),
        })),
    };
    if let Some(n) = new.filter(|n| n.daemon.mode != old.daemon.mode) {
        tracing::warn!(
            from = old.daemon.mode.as_str(),
            to = n.daemon.mode.as_str(),
            "reload: [daemon] mode changed"
        );
    }
    let mode = new.map(|n| n.daemon.mode);
    let at = entry.at;
    let written = store.call(move |s| {
        s.transaction(|db| {
            db.append_audit(&entry)?;
            if let Some(mode) = mode {
                // The new generation's start then finds it recorded (observe.rs).
                observe::set_mode_cursor(db, mode, at)?;
            }
            Ok(())
        })
    });
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "cannot audit the configuration reload");
    }
}

/// With `[events]`: the sink events go to (planned against `inventory`, waking `wake`
/// when they commit triggers) and its SQS consumers, `[events] workers` of them on
/// `tracker`. The leader's and the standby's alike, except that only the leader decides
/// requests (`leading`).
fn consume_events<'a>(
    app: &'a App,
    inventory: Arc<RwLock<Option<Inventory>>>,
    directory: Arc<RwLock<Option<crate::directory::Directory>>>,
    wake: Arc<Notify>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    leading: bool,
) -> Option<(&'a crate::config::EventsConfig, Arc<EventSink>)> {
    let events = app.cfg.events.as_ref()?;
    let sink = Arc::new(EventSink {
        recent_rejections: Default::default(),
        cfg: app.cfg.clone(),
        normalize: crate::events::normalize_config(events, app.cfg.requests.as_ref()),
        store: app.store.clone(),
        metrics: app.metrics.clone(),
        clock: app.clock,
        inventory,
        directory,
        wake,
        alerts: app.engine.alerts.clone(),
        decides_requests: leading,
    });
    let consumer = Arc::new(Consumer::new(
        app.sqs.queue(&events.queue_url),
        sink.clone(),
    ));
    for _ in 0..events.workers.get() {
        tracker.spawn(consumer.clone().run(cancel.clone()));
    }
    Some((events, sink))
}

/// One renewal at `at` (a third of the lease after the last): `false` once the lease is
/// lost, or cannot be confirmed and has expired by this host's clock.
async fn keep_lease(lease: Option<&mut Lease>, at: tokio::time::Instant) -> bool {
    let Some(lease) = lease else {
        return std::future::pending().await;
    };
    tokio::time::sleep_until(at).await;
    let now_ms = || chrono::Utc::now().timestamp_millis();
    match lease.tick(now_ms()).await {
        Ok(Role::Leader { .. }) => true,
        Ok(Role::Standby { .. }) => false,
        Err(e) => {
            let held = lease.held_until_ms().is_some_and(|u| now_ms() < u);
            tracing::warn!(error = %e, still_held = held, "cannot renew the leader lease");
            held
        }
    }
}

/// Spawns one generation's loops; returns their tracker and the store to close.
fn spawn_loops(
    app: App,
    health: Arc<Health>,
    anchorer: Option<anchor::Anchorer>,
    cancel: CancellationToken,
) -> (TaskTracker, StoreHandle) {
    let shared = Arc::new(Shared {
        app,
        inventory: Arc::new(RwLock::new(None)),
        directory: Arc::new(RwLock::new(None)),
        health,
        claims: executor::Claims::default(),
        wake: Arc::new(Notify::new()),
        requests_wake: Arc::new(Notify::new()),
    });
    let app = &shared.app;
    let tracker = TaskTracker::new();
    // Every loop but the state guard runs under `work`: the guard stops them all at once
    // when the state file is lost, and goes on itself to tell Security.
    let work = cancel.child_token();
    tracker.spawn(guard::guard_state(
        shared.clone(),
        work.clone(),
        cancel.clone(),
    ));
    let cancel = work;
    let h = shared.health.clone();
    tracker.spawn(crate::alerts::publish_loop(
        app.store.clone(),
        app.sns.clone(),
        app.cfg.clone(),
        app.metrics.clone(),
        app.engine.alerts.outbox_signal(),
        move || h.beat("publisher"),
        shared.health.beat_every(),
        cancel.clone(),
    ));
    tracker.spawn(reconcile::reconcile_loop(shared.clone(), cancel.clone()));
    tracker.spawn(upkeep::upkeep_loop(shared.clone(), cancel.clone()));
    if let Some(a) = anchorer {
        tracker.spawn(anchor::anchor_loop(a, cancel.clone()));
    }
    let consuming = consume_events(
        app,
        shared.inventory.clone(),
        shared.directory.clone(),
        shared.wake.clone(),
        &tracker,
        &cancel,
        true,
    );
    if let Some((events, sink)) = consuming
        && events.cloudtrail.enabled
    {
        let routed = app.engine.sm.is_routed();
        for trail in &app.cloudtrail {
            let poller = Poller {
                trail: trail.clone(),
                cursor: crate::events::cloudtrail::cursor_name(trail.place(), routed),
                sink: sink.clone(),
                lookback: chrono::Duration::from_std(events.cloudtrail.lookback)
                    .unwrap_or(chrono::Duration::hours(24)),
                interval: events.cloudtrail.poll_interval,
            };
            tracker.spawn(poller.run(cancel.clone()));
        }
    }
    tracker.spawn(
        crate::validation::Watcher {
            cfg: app.cfg.clone(),
            store: app.store.clone(),
            alerts: app.engine.alerts.clone(),
            metrics: app.metrics.clone(),
            cw: app.engine.cw.clone(),
            sm: app.engine.sm.clone(),
            clock: app.clock,
        }
        .run(cancel.clone()),
    );
    if app.cfg.requests.is_some() {
        tracker.spawn(
            crate::requests::RequestLoop {
                cfg: app.cfg.clone(),
                store: app.store.clone(),
                alerts: app.engine.alerts.clone(),
                sm: app.engine.sm.clone(),
                eventbridge: app.eventbridge.clone(),
                clock: app.clock,
                wake: shared.requests_wake.clone(),
            }
            .run(cancel.clone()),
        );
    }
    let store = app.store.clone();
    tracker.spawn(executor::run(shared.clone(), tracker.clone(), cancel));
    (tracker, store)
}
