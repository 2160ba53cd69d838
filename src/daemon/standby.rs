//! The standby's side of `[state] backend = "dynamodb"`: waiting for the leader lease
//! ([`wait_for_lease`]), and meanwhile recording what arrives on the SQS queue
//! ([`record_events`]) so that an event is in the shared log however busy, paused or gone
//! the leader is. A standby does not plan, rotate, publish, watch or poll CloudTrail.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::App;
use super::health::{Health, notify};
use crate::inventory::{self, AgeCache, Inventory};
use crate::store::dynamodb::{Lease, Role};

/// After a failed scan, the standby's next one (or at `reconcile_interval`, if shorter).
const FAILED_SCAN_RETRY: Duration = Duration::from_secs(15);

/// How waiting for the lease ended.
pub(super) enum Waited {
    /// The lease is ours: lead.
    Elected,
    /// SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// Waits, as a standby, until this instance holds the lease (or shutdown or a reload):
/// tries to take it every third of the lease, beats for the watchdog meanwhile (a standby
/// is healthy), and says who leads on `/readyz` and `rotationd_leader`.
pub(super) async fn wait_for_lease(
    lease: &mut Lease,
    health: &Health,
    cancel: &CancellationToken,
    reload: &tokio::sync::Notify,
) -> Waited {
    health.reset_beats();
    let beat_every = health.beat_every();
    let mut next_try = tokio::time::Instant::now();
    let mut announced: Option<Option<String>> = None;
    loop {
        health.beat("lease");
        if tokio::time::Instant::now() >= next_try {
            next_try = tokio::time::Instant::now() + lease.renew_every();
            match lease.tick(Utc::now().timestamp_millis()).await {
                Ok(Role::Leader { .. }) => return Waited::Elected,
                Ok(Role::Standby { holder, .. }) => {
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
        // Between tries it wakes only to beat, and only for a watchdog.
        let wake = beat_every.map_or(next_try, |b| next_try.min(tokio::time::Instant::now() + b));
        tokio::select! {
            _ = cancel.cancelled() => return Waited::Stop,
            _ = reload.notified() => return Waited::Reload,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// A standby's work besides waiting for the lease: it consumes the SQS queue and records
/// each event's triggers, alerts and audit (idempotent on the event id, like the
/// leader's consumers; the log orders both instances' writes, and a job that lost the race
/// for a position runs again). So an event is recorded while the leader is busy, paused or
/// dying, and the new leader finds its triggers. Events are planned against the standby's
/// own inventory, refreshed every `reconcile_interval` (the consumers wait for the first
/// one, as the leader's do).
pub(super) fn record_events(app: &App, cancel: CancellationToken) -> TaskTracker {
    let tracker = TaskTracker::new();
    let inventory: Arc<RwLock<Option<Inventory>>> = Arc::new(RwLock::new(None));
    // Nothing to wake: the leader's executor and publisher are another process's, and
    // find what this one records at their safety poll.
    let nobody = Arc::new(tokio::sync::Notify::new());
    let directory = Arc::new(RwLock::new(None));
    let consuming = super::consume_events(
        app,
        inventory.clone(),
        directory.clone(),
        nobody,
        &tracker,
        &cancel,
        false,
    );
    if consuming.is_none() {
        return tracker;
    }
    let sm = app.engine.sm.clone();
    let cfg = app.cfg.clone();
    let (ids, store, metrics, clock) = (
        app.identity_store.clone(),
        app.store.clone(),
        app.metrics.clone(),
        app.clock,
    );
    tracker.spawn(async move {
        let mut cache = AgeCache::default();
        loop {
            super::reconcile::refresh_directory(ids.as_deref(), &store, &metrics, clock.now(), &directory)
                .await;
            let scanned = tokio::select! {
                _ = cancel.cancelled() => return,
                scanned = inventory::scan(&sm, &cfg, &mut cache) => scanned,
            };
            let delay = match scanned {
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
                    cfg.daemon.reconcile_interval.min(FAILED_SCAN_RETRY)
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
