//! The executor: turns due pending triggers into attempts and drives them, at most
//! [`MAX_CONCURRENT_ATTEMPTS`] at a time (RotateSecret itself is paced by the engine's rate
//! limiter); re-drives its own attempts after a retryable failure; resumes every unfinished
//! attempt at start and adopts orphans whose driver died; runs the storm guard and the
//! departure SLA watch ([`super::policy`]).
//!
//! It does not tick. It sleeps until one of these wakes it:
//!
//! - the generation's `wake` [`Notify`]: a trigger was committed (the reconciler, an event
//!   consumer, an accepted request), or a drive ended, which frees its secret and its slot
//!   ([`Slot`] notifies when dropped);
//! - the next due time it knows: a trigger's `not_before`, a retry, an orphan's adoption,
//!   the SLA watch's next escalation;
//! - [`EXECUTOR_SAFETY_POLL`], for writers that cannot notify it (see there);
//! - and, under a systemd watchdog, [`Health::beat_every`](super::health::Health::beat_every),
//!   only to beat.
//!
//! A secret is driven by one task at a time: [`Claims`] hands out a [`Claim`] that releases
//! the secret when dropped, so a drive that panics releases it too.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::policy::{sla, storm};
use crate::engine::{EngineError, Outcome};
use crate::store::{TriggerKind, TriggerStatus};

/// How many attempts run at once: RotateSecret is rate-limited separately, this bounds
/// the DescribeSecret polling and the open AWS connections.
pub const MAX_CONCURRENT_ATTEMPTS: usize = 8;
/// Pause before re-driving an attempt whose AWS call failed with a retryable error.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// An unfinished attempt nobody has touched for this long is adopted (its driver, e.g. a
/// `rotationd rotate` process, died): longer than the monitor timeout.
pub const ORPHAN_AFTER: chrono::Duration = chrono::Duration::minutes(20);
/// How long the executor sleeps when nothing it knows of falls due. Everything this
/// process commits wakes it, but two writers cannot: `rotationd resume` (another process)
/// lifts the storm guard's pause in the store, and with `[state] backend = "dynamodb"` a
/// standby records event triggers in the shared log. Their work starts at most this late.
pub const EXECUTOR_SAFETY_POLL: Duration = Duration::from_secs(15);
/// While triggers keep waking the executor, the SLA watch (a read of every unresolved
/// departure) runs at most this often; its own due times are kept exactly.
const SLA_SPACING: Duration = Duration::from_secs(5);
/// How soon to look again at a trigger that waits for the first inventory.
const INVENTORY_WAIT: Duration = Duration::from_secs(1);
/// After a failed pass (the store did not answer), the next try.
const PASS_RETRY: Duration = Duration::from_secs(1);

type Shelf<T> = Arc<Mutex<T>>;

/// Locks a mutex whose data stays consistent whatever a panicking holder did (inserts and
/// removals only), so a poisoned lock is used as is rather than failing every later call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The secrets this process is driving an attempt for.
#[derive(Clone, Default)]
pub struct Claims {
    held: Shelf<HashSet<String>>,
}

impl Claims {
    /// The claim on `secret`, unless a drive of it holds one.
    pub fn try_claim(&self, secret: &str) -> Option<Claim> {
        lock(&self.held).insert(secret.to_string()).then(|| Claim {
            held: self.held.clone(),
            secret: secret.to_string(),
        })
    }

    pub fn is_claimed(&self, secret: &str) -> bool {
        lock(&self.held).contains(secret)
    }
}

/// One secret claimed by one drive; released when dropped, however its holder ends.
pub struct Claim {
    held: Shelf<HashSet<String>>,
    secret: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.held).remove(&self.secret);
    }
}

/// What a running drive holds: its claim, its concurrency permit. Dropped when the drive
/// ends (a panic included), it releases both and then wakes the executor, for which the
/// secret and the slot are free again; after a panic it also holds the attempt back for
/// [`RETRY_AFTER`], so a drive that panics every time does not spin.
pub struct Slot {
    claim: Option<Claim>,
    permit: Option<OwnedSemaphorePermit>,
    attempt: String,
    retry_at: Shelf<HashMap<String, Instant>>,
    wake: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Released before the wake: a pass woken by it must find the secret free.
        self.claim.take();
        self.permit.take();
        if std::thread::panicking() {
            tracing::error!(attempt = %self.attempt, retry_in = ?RETRY_AFTER, "the drive of this attempt panicked; its secret is released");
            lock(&self.retry_at).insert(self.attempt.clone(), Instant::now() + RETRY_AFTER);
        }
        self.wake.notify_one();
    }
}

/// Starts `drive` (one attempt's run) on `tracker`, holding `slot` until it ends. Apart
/// from the engine so that a test can drive anything, a panic included.
fn spawn_attempt<F>(
    tracker: &TaskTracker,
    slot: Slot,
    secret: String,
    owned: Shelf<HashSet<String>>,
    publisher: Arc<Notify>,
    drive: F,
) where
    F: Future<Output = Result<Outcome, EngineError>> + Send + 'static,
{
    tracker.spawn(async move {
        let slot = slot;
        let attempt = slot.attempt.clone();
        match drive.await {
            Ok(outcome) => {
                tracing::info!(secret = %secret, attempt = %attempt, outcome = outcome.label(), "attempt finished");
                lock(&owned).remove(&attempt);
            }
            Err(EngineError::Cancelled) => {}
            Err(e) => {
                tracing::warn!(secret = %secret, attempt = %attempt, error = %e, "attempt paused")
            }
        }
        // The attempt's end queued its alerts in the engine's own transaction.
        publisher.notify_one();
        drop(slot);
    });
}

/// The earliest moment the executor knows it has work.
#[derive(Debug, Default)]
struct NextWake(Option<Instant>);

impl NextWake {
    fn at(&mut self, t: Instant) {
        self.0 = Some(self.0.map_or(t, |n| n.min(t)));
    }

    /// At wall-clock `t` on the engine's clock, which reads `now` at this moment.
    fn at_time(&mut self, now: DateTime<Utc>, t: DateTime<Utc>) {
        self.at(Instant::now() + (t - now).to_std().unwrap_or(Duration::ZERO));
    }
}

/// The executor's state across passes.
struct Executor {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    permits: Arc<Semaphore>,
    /// Attempts not to re-drive before the instant (resumed, or panicked).
    retry_at: Shelf<HashMap<String, Instant>>,
    /// Attempts this process started or resumed and has not seen finish.
    owned: Shelf<HashSet<String>>,
    /// The first pass after a start resumes every unfinished attempt.
    first: bool,
    last_sla: Option<Instant>,
    next_sla: Option<DateTime<Utc>>,
    /// Triggers whose deferral by a hold this process has audited (once each).
    deferred: HashSet<i64>,
    /// Test hook (`ROTATIOND_TEST_FAILPOINT=hang-executor`): the executor hangs after a
    /// few beats, so a test can watch the systemd watchdog stop being fed.
    hang: bool,
    beats: u64,
}

/// Runs the executor until `cancel`; `tracker` also tracks the drives it starts.
pub(super) async fn run(shared: Arc<Shared>, tracker: TaskTracker, cancel: CancellationToken) {
    let beat_every = shared.health.beat_every();
    let wake = shared.wake.clone();
    let mut ex = Executor {
        shared,
        tracker,
        cancel: cancel.clone(),
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_ATTEMPTS)),
        retry_at: Arc::default(),
        owned: Arc::default(),
        first: true,
        last_sla: None,
        next_sla: None,
        deferred: HashSet::new(),
        hang: crate::test_hooks::failpoint_is("hang-executor"),
        beats: 0,
    };
    loop {
        ex.beat().await;
        let next = ex.pass().await;
        // What woke this pass (a request accepted, an attempt ended) and what it did (an
        // attempt started for a request's trigger) is the request loop's business too.
        ex.shared.requests_wake.notify_one();
        let until = next.map_or(Instant::now() + EXECUTOR_SAFETY_POLL, |n| {
            n.min(Instant::now() + EXECUTOR_SAFETY_POLL)
        });
        tracing::trace!(sleep = ?until.saturating_duration_since(Instant::now()), "executor idle");
        loop {
            let beat_at = beat_every.map_or(until, |b| until.min(Instant::now() + b));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.notified() => break,
                _ = tokio::time::sleep_until(beat_at) => {
                    if beat_at >= until {
                        break;
                    }
                    ex.beat().await;
                }
            }
        }
    }
}

impl Executor {
    async fn beat(&mut self) {
        if self.hang && self.beats == 3 {
            std::future::pending::<()>().await;
        }
        self.beats += 1;
        self.shared.health.beat("executor");
    }

    /// One pass: the SLA watch when due, then the due work. Returns when the next known
    /// work falls due.
    async fn pass(&mut self) -> Option<Instant> {
        let mut next = NextWake::default();
        let now = self.shared.app.clock.now();
        let sla_due = self.next_sla.is_some_and(|t| t <= now)
            || self.last_sla.is_none_or(|t| t.elapsed() >= SLA_SPACING);
        if sla_due {
            self.last_sla = Some(Instant::now());
            match sla::check(&self.shared.app).await {
                Ok(at) => self.next_sla = at,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "departure SLA check failed; retrying");
                    self.next_sla = None;
                    next.at(Instant::now() + SLA_SPACING);
                }
            }
        } else if let Some(last) = self.last_sla {
            // Skipped for spacing: what woke this pass may have changed the departures.
            next.at(last + SLA_SPACING);
        }
        if let Some(at) = self.next_sla {
            next.at_time(now, at);
        }
        if let Err(e) = self.execute_due(&mut next).await {
            tracing::warn!(error = %format!("{e:#}"), "executor pass failed; retrying");
            next.at(Instant::now() + PASS_RETRY);
        }
        self.first = false;
        next.0
    }

    async fn execute_due(&mut self, next: &mut NextWake) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        let app = &shared.app;
        let now = app.clock.now();
        // 0. At start, before any driver runs: attempts that finished just before a crash
        //    but whose triggers, audit entry and alert were never written.
        if self.first {
            match app.engine.finish_interrupted().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(count = n, "completed attempts interrupted by the last stop");
                    app.engine.alerts.wake_publisher();
                }
                // Not fatal for this pass: the next start tries again.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot complete attempts interrupted by the last stop")
                }
            }
        }
        // 1. Unfinished attempts: all of them at start (resume after a restart), then our
        //    own after a retryable failure, and orphans whose driver died.
        let unfinished = app.store.call(|s| s.db().unfinished_attempts()).await?;
        for a in unfinished {
            let mine = lock(&self.owned).contains(&a.id);
            let adopt_at = a.updated_at + ORPHAN_AFTER;
            if !(self.first || mine || now > adopt_at) {
                // Someone else drives it (`rotationd rotate`); adopted if left alone.
                next.at_time(now, adopt_at);
                continue;
            }
            let held_until = lock(&self.retry_at)
                .get(&a.id)
                .copied()
                .filter(|t| *t > Instant::now());
            if let Some(t) = held_until {
                next.at(t);
                continue;
            }
            // The slot first: a claim taken and dropped for want of one would mean nothing,
            // but its drop must never be what wakes the next pass.
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                // A drive's end wakes the executor.
                return Ok(());
            };
            let Some(claim) = shared.claims.try_claim(&a.secret) else {
                // Being driven; its end wakes the executor.
                continue;
            };
            if self.first {
                tracing::info!(secret = %a.secret, attempt = %a.id, state = %a.state, "resuming unfinished attempt");
            }
            lock(&self.owned).insert(a.id.clone());
            lock(&self.retry_at).insert(a.id.clone(), Instant::now() + RETRY_AFTER);
            self.spawn_drive(claim, permit, a.id, a.secret);
        }
        // 2. Due pending triggers; event-triggered ones only while the storm guard allows,
        //    planned ones only for secrets not on hold.
        let pending = app.store.call(|s| s.db().pending_triggers()).await?;
        let holds: HashMap<String, crate::store::Hold> =
            if pending.iter().any(|t| held_back(t.kind)) {
                app.store
                    .call(|s| s.db().holds())
                    .await?
                    .into_iter()
                    .map(|h| (h.secret.clone(), h))
                    .collect()
            } else {
                HashMap::new()
            };
        // Event rotations this pass may still start: None until the guard was asked.
        let mut storm_budget: Option<u64> = None;
        // Secrets with a due event trigger the storm guard counts: a planned trigger's
        // attempt that takes one in is led by it (engine::lead), so it is one more event
        // rotation, and while the guard pauses them the event trigger stays out.
        let due_events: HashSet<String> = pending
            .iter()
            .filter(|o| storm::EVENT_KINDS.contains(&o.kind))
            .filter(|o| o.not_before.is_none_or(|nb| nb <= now))
            .map(|o| o.secret.clone())
            .collect();
        let observing = app.engine.observing();
        for mut t in pending {
            if let Some(nb) = t.not_before.filter(|nb| *nb > now) {
                next.at_time(now, nb);
                continue;
            }
            let planned = matches!(
                t.kind,
                TriggerKind::Scheduled | TriggerKind::Overdue | TriggerKind::NeverRotated
            );
            let closed = planned && t.deadline.is_some_and(|d| d <= now);
            if observing && t.observed_by.is_some() {
                // Looked at once already: it waits, pending, for enforce mode. A planned
                // window that closes meanwhile is dropped as in enforce mode; an overdue
                // trigger is kept (the secret stays overdue, enforce mode rotates it).
                if closed && t.kind != TriggerKind::Overdue {
                    window_missed(&shared, &t, now).await?;
                }
                continue;
            }
            if let Some(hold) = holds.get(&t.secret).filter(|_| held_back(t.kind)) {
                // Stays pending: lifted within its window, it still runs; otherwise the
                // window's end cancels it as missed.
                if self.deferred.insert(t.id) {
                    defer(&shared, &t, hold, now).await?;
                }
                continue;
            }
            if storm::EVENT_KINDS.contains(&t.kind) {
                let budget = match storm_budget {
                    Some(b) => b,
                    None => storm::storm_guard(app, 0).await?,
                };
                if budget == 0 {
                    // Over the limit: pause (once) and keep the trigger queued, until
                    // `rotationd resume` or a reload.
                    if storm_budget != Some(0) {
                        storm::storm_guard(app, 1).await?;
                    }
                    storm_budget = Some(0);
                    continue;
                }
                storm_budget = Some(budget - 1);
            }
            if closed {
                match still_overdue(&shared, &t).await {
                    // Observed in observe mode, its window passed, the secret is still
                    // overdue on the same version: enforce mode rotates it now.
                    Some(true) if !observing => reopen(&shared, &mut t, now).await?,
                    // No inventory yet (the first pass after a start or a reload): decided
                    // once the reconciler has listed the fleet.
                    None if !observing => {
                        next.at(Instant::now() + INVENTORY_WAIT);
                        continue;
                    }
                    _ => {
                        window_missed(&shared, &t, now).await?;
                        continue;
                    }
                }
            }
            let mut held: &'static [TriggerKind] = &[];
            if crate::engine::lead_rank(t.kind) > crate::engine::lead_rank(TriggerKind::Retry)
                && due_events.contains(&t.secret)
            {
                let budget = match storm_budget {
                    Some(b) => b,
                    None => storm::storm_guard(app, 0).await?,
                };
                if budget == 0 {
                    held = storm::EVENT_KINDS;
                    storm_budget = Some(0);
                } else {
                    storm_budget = Some(budget - 1);
                }
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return Ok(());
            };
            let Some(claim) = shared.claims.try_claim(&t.secret) else {
                continue;
            };
            let arn = shared
                .inventory
                .read()
                .await
                .as_ref()
                .and_then(|inv| inv.fleet.find(&t.secret).map(|e| e.info.arn.clone()));
            // On error the claim and the slot are dropped here, waking nobody: the pass
            // retries after PASS_RETRY.
            let attempt = app.engine.attempt_for_trigger(&t, arn, held).await?;
            if !storm::EVENT_KINDS.contains(&t.kind)
                && let Err(e) = storm::note_exempt(app, &t).await
            {
                // A metric only: the attempt is created and is driven whatever this says.
                tracing::warn!(error = %e, trigger = t.id, "cannot tell whether a request was an emergency");
            }
            lock(&self.owned).insert(attempt.clone());
            self.spawn_drive(claim, permit, attempt, t.secret.clone());
        }
        Ok(())
    }

    fn spawn_drive(
        &self,
        claim: Claim,
        permit: OwnedSemaphorePermit,
        attempt: String,
        secret: String,
    ) {
        let slot = Slot {
            claim: Some(claim),
            permit: Some(permit),
            attempt: attempt.clone(),
            retry_at: self.retry_at.clone(),
            wake: self.shared.wake.clone(),
        };
        let engine = self.shared.app.engine.clone();
        let cancel = self.cancel.clone();
        let s = secret.clone();
        let drive = async move {
            let progress = |msg: &str| tracing::info!(secret = %s, attempt = %attempt, "{msg}");
            engine.drive(&attempt, &progress, &cancel).await
        };
        spawn_attempt(
            &self.tracker,
            slot,
            secret,
            self.owned.clone(),
            self.shared.app.engine.alerts.outbox_signal(),
            drive,
        );
    }
}

/// Whether a hold keeps a trigger of `kind` from starting: the planned kinds only. A
/// departure or a compromise rotates a held secret (the SLA comes first), so do an
/// operator's rotation and an approved request (someone has looked), and the one automatic
/// retry of `[events] retry_failed` (the hold applies after it).
pub fn held_back(kind: TriggerKind) -> bool {
    matches!(
        kind,
        TriggerKind::Scheduled | TriggerKind::Overdue | TriggerKind::NeverRotated
    )
}

/// Audits (and logs) that a held secret's planned trigger does not start.
async fn defer(
    shared: &Shared,
    t: &crate::store::Trigger,
    hold: &crate::store::Hold,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    tracing::info!(secret = %t.secret, trigger = t.id, held_by = %hold.attempt_id,
        "secret held after a failure: its planned rotation waits for rotationd resume --secret");
    let entry = crate::store::NewAuditEntry {
        at: now,
        actor: "rotationd".into(),
        action: crate::store::audit::Action::Hold,
        secret: Some(t.secret.clone()),
        ticket: t.ticket.clone(),
        reason: Some(t.reason.clone()),
        outcome: crate::store::audit::Outcome::Deferred,
        detail: Some(serde_json::json!({
            "trigger": t.id,
            "kind": t.kind.as_str(),
            "held_by_attempt": hold.attempt_id,
            "held_since": hold.held_at.to_rfc3339(),
            "hold_reason": hold.reason,
        })),
    };
    shared
        .app
        .store
        .call(move |s| s.db().append_audit(&entry))
        .await?;
    Ok(())
}

/// Whether `t` is an overdue trigger that observe mode looked at and whose secret is still
/// overdue on the same AWSCURRENT version (the last part of its dedupe key
/// `overdue:ARN:VERSION`), as the latest inventory shows.
/// `None` while there is no inventory yet.
async fn still_overdue(shared: &Shared, t: &crate::store::Trigger) -> Option<bool> {
    if t.kind != TriggerKind::Overdue || t.observed_by.is_none() {
        return Some(false);
    }
    let Some(version) = t.dedupe_key.as_deref().and_then(|k| k.rsplit(':').next()) else {
        return Some(false);
    };
    shared.inventory.read().await.as_ref().map(|inv| {
        inv.fleet
            .find(&t.secret)
            .is_some_and(|e| e.info.current_version() == Some(version))
    })
}

/// Gives an observed overdue trigger a new window of the same length from `now`, audited
/// (`trigger` / `reopened`).
async fn reopen(
    shared: &Shared,
    t: &mut crate::store::Trigger,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let length = match (t.not_before, t.deadline) {
        (Some(nb), Some(d)) if d > nb => d - nb,
        _ => chrono::Duration::hours(4),
    };
    let (id, secret, ticket, reason, observed_by) = (
        t.id,
        t.secret.clone(),
        t.ticket.clone(),
        t.reason.clone(),
        t.observed_by.clone(),
    );
    let deadline = now + length;
    shared
        .app
        .store
        .call(move |s| {
            s.transaction(|db| {
                db.reopen_trigger(id, now, deadline, now)?;
                db.append_audit(&crate::store::NewAuditEntry {
                    at: now,
                    actor: "rotationd".into(),
                    action: crate::store::audit::Action::Trigger,
                    secret: Some(secret.clone()),
                    ticket: ticket.clone(),
                    reason: Some(reason.clone()),
                    outcome: crate::store::audit::Outcome::Reopened,
                    detail: Some(serde_json::json!({
                        "trigger": id,
                        "observed_by": observed_by,
                        "not_before": now.to_rfc3339(),
                        "deadline": deadline.to_rfc3339(),
                        "why": "observed in observe mode; its window passed and the secret is still overdue",
                    })),
                })?;
                Ok(())
            })
        })
        .await?;
    tracing::info!(secret = %t.secret, trigger = t.id, "overdue trigger observed in observe mode: reopened for enforce mode");
    t.not_before = Some(now);
    t.deadline = Some(deadline);
    Ok(())
}

/// A planned trigger whose window closed before it could start: cancelled, with the audit
/// entry saying so, in one transaction.
async fn window_missed(
    shared: &Shared,
    t: &crate::store::Trigger,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (id, secret, ticket, reason) = (t.id, t.secret.clone(), t.ticket.clone(), t.reason.clone());
    shared
        .app
        .store
        .call(move |s| {
            s.transaction(|db| {
                db.set_trigger_status(id, TriggerStatus::Cancelled, now)?;
                db.append_audit(&crate::store::NewAuditEntry {
                    at: now,
                    actor: "rotationd".into(),
                    action: crate::store::audit::Action::Rotate,
                    secret: Some(secret.clone()),
                    ticket: ticket.clone(),
                    reason: Some(reason.clone()),
                    outcome: crate::store::audit::Outcome::WindowMissed,
                    detail: None,
                })?;
                Ok(())
            })
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_defers_only_the_planned_kinds() {
        for kind in TriggerKind::ALL {
            let planned = matches!(
                kind,
                TriggerKind::Scheduled | TriggerKind::Overdue | TriggerKind::NeverRotated
            );
            assert_eq!(held_back(*kind), planned, "{kind}");
        }
        // The SLA comes first, a human has looked, and retry_failed's one retry runs.
        for kind in [
            TriggerKind::Departure,
            TriggerKind::Compromise,
            TriggerKind::Manual,
            TriggerKind::Retry,
        ] {
            assert!(!held_back(kind), "{kind}");
        }
    }

    /// One drive of attempt `att-1` on secret `prod/db` through [`spawn_attempt`], with
    /// everything it touches kept for the assertions.
    struct Harness {
        claims: Claims,
        permits: Arc<Semaphore>,
        wake: Arc<Notify>,
        publisher: Arc<Notify>,
        retry_at: Shelf<HashMap<String, Instant>>,
        owned: Shelf<HashSet<String>>,
    }

    impl Harness {
        /// Runs `drive` to its end (a panic included) as the executor would.
        async fn drive<F>(drive: F) -> Harness
        where
            F: Future<Output = Result<Outcome, EngineError>> + Send + 'static,
        {
            let h = Harness {
                claims: Claims::default(),
                permits: Arc::new(Semaphore::new(1)),
                wake: Arc::new(Notify::new()),
                publisher: Arc::new(Notify::new()),
                retry_at: Arc::default(),
                owned: Arc::default(),
            };
            lock(&h.owned).insert("att-1".into());
            let slot = Slot {
                claim: Some(h.claims.try_claim("prod/db").expect("free")),
                permit: Some(h.permits.clone().try_acquire_owned().expect("a slot")),
                attempt: "att-1".into(),
                retry_at: h.retry_at.clone(),
                wake: h.wake.clone(),
            };
            assert!(h.claims.is_claimed("prod/db"));
            assert_eq!(h.permits.available_permits(), 0);
            let tracker = TaskTracker::new();
            spawn_attempt(
                &tracker,
                slot,
                "prod/db".into(),
                h.owned.clone(),
                h.publisher.clone(),
                drive,
            );
            tracker.close();
            tracker.wait().await;
            h
        }

        /// The executor was woken (the wake is kept for its next wait).
        async fn executor_woken(&self) -> bool {
            tokio::time::timeout(Duration::from_secs(1), self.wake.notified())
                .await
                .is_ok()
        }
    }

    #[test]
    fn a_claim_is_exclusive_and_released_on_drop() {
        let claims = Claims::default();
        let claim = claims.try_claim("prod/db").expect("free");
        assert!(
            claims.try_claim("prod/db").is_none(),
            "one drive per secret"
        );
        assert!(claims.try_claim("prod/other").is_some());
        drop(claim);
        assert!(!claims.is_claimed("prod/db"));
        assert!(claims.try_claim("prod/db").is_some());
    }

    #[tokio::test]
    async fn a_panicking_drive_releases_its_claim_and_slot_and_wakes_the_executor() {
        let h = Harness::drive(async { panic!("drive exploded") }).await;
        assert!(!h.claims.is_claimed("prod/db"), "the secret stayed claimed");
        assert_eq!(
            h.permits.available_permits(),
            1,
            "the slot was not given back"
        );
        assert!(
            lock(&h.retry_at)
                .get("att-1")
                .is_some_and(|t| *t > Instant::now()),
            "a panicked attempt is held back before it is driven again"
        );
        assert!(lock(&h.owned).contains("att-1"), "still ours, to retry");
        assert!(h.executor_woken().await, "the executor was not woken");
        assert!(h.claims.try_claim("prod/db").is_some());
    }

    #[tokio::test]
    async fn a_finished_drive_wakes_the_executor_and_the_publisher() {
        let h = Harness::drive(async {
            Ok(Outcome::Succeeded {
                new_version: "v2".into(),
            })
        })
        .await;
        assert!(!h.claims.is_claimed("prod/db"));
        assert_eq!(h.permits.available_permits(), 1);
        assert!(
            !lock(&h.owned).contains("att-1"),
            "finished: no longer ours"
        );
        assert!(lock(&h.retry_at).is_empty(), "no hold-back without a panic");
        assert!(h.executor_woken().await, "the executor was not woken");
        tokio::time::timeout(Duration::from_secs(1), h.publisher.notified())
            .await
            .expect("the publisher was not woken");
    }

    #[tokio::test]
    async fn a_paused_drive_stays_ours_for_the_retry() {
        let h = Harness::drive(async {
            Err(EngineError::Retryable(crate::aws::AwsError {
                operation: "DescribeSecret",
                code: Some("ThrottlingException".into()),
                message: "rate exceeded".into(),
                retryable: true,
            }))
        })
        .await;
        assert!(!h.claims.is_claimed("prod/db"));
        assert!(lock(&h.owned).contains("att-1"), "resumed by the next pass");
        assert!(h.executor_woken().await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_wake_is_the_earliest_known_due_time() {
        let mut next = NextWake::default();
        assert!(next.0.is_none());
        let now = Utc::now();
        let t0 = Instant::now();
        next.at_time(now, now + chrono::Duration::seconds(90));
        next.at_time(now, now + chrono::Duration::seconds(30));
        next.at(t0 + Duration::from_secs(60));
        let at = next.0.expect("a due time");
        assert_eq!(at - t0, Duration::from_secs(30));
        next.at_time(now, now - chrono::Duration::seconds(5));
        assert_eq!(next.0, Some(t0), "overdue means now");
    }
}
