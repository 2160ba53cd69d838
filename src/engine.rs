//! The rotation engine: one attempt = one persisted state machine, driven through
//! Secrets Manager's staged rotation.
//!
//! ```text
//! preflight ──> rotate_requested ──> monitoring ──> validating ──> succeeded
//!     │               │                  │              │
//!     └─> stuck / skipped / failed <─────┴──────────────┘
//! ```
//!
//! - **preflight** is the Secrets Rotation Guide's pre-rotation checklist: the secret exists and is not
//!   being deleted; rotation is configured; no rotation is in progress (AWSPENDING on a
//!   version without AWSCURRENT means a previous one is stuck: never call RotateSecret on
//!   top of it); an AWSCURRENT version exists to roll back to; a planned rotation is
//!   inside its window; a ticket is present (CHG planned, INC otherwise, `INC-pending`
//!   when an event carried none); dependents are notified.
//! - **rotate_requested**: the RotateSecret call counter is committed *before* the
//!   request, with a `ClientRequestToken` derived from the attempt id. After a crash the
//!   resumed attempt looks for the token's version first and only re-sends (same token,
//!   idempotent on AWS) when AWS never saw the first request.
//! - **monitoring** polls DescribeSecret with backoff until the token's version holds
//!   AWSCURRENT and no AWSPENDING remains (createSecret → setSecret → testSecret →
//!   finishSecret all ran), or the timeout fails the attempt.
//! - **validating** is the post-rotation check: AWSCURRENT is the new version and
//!   AWSPREVIOUS the old one.
//!
//! Every transition is committed to the store before the next AWS call, so a crash at any
//! point resumes from the last committed state. Retryable AWS errors leave the state as
//! it is (the daemon retries later); fatal ones fail the attempt and escalate to Security.
//! The engine never reads or writes a secret value.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::aws::AwsError;
use crate::aws::secrets::{AWSCURRENT, AWSPENDING, SecretInfo, SecretsManager};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::audit;
use crate::store::{
    Attempt, AttemptState, AttemptUpdate, NewAttempt, NewAuditEntry, NewTrigger, StoreError,
    StoreHandle, Trigger, TriggerKind, TriggerStatus,
};
use crate::ticket::{INC_PENDING, is_ticket};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded { new_version: String },
    Failed(String),
    Stuck(String),
    Skipped(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Failed(_) | Outcome::Stuck(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// AWS did not answer or throttled: the attempt keeps its state and is retried.
    #[error("{0}; the attempt stays queued and is retried")]
    Retryable(AwsError),
    #[error("interrupted by shutdown; the attempt resumes at the next start")]
    Cancelled,
    #[error("no such attempt {0}")]
    NoAttempt(String),
}

/// Tunables, with the Secrets Rotation Guide's defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How long the four stages may take before the attempt fails.
    pub monitor_timeout: Duration,
    pub poll_initial: Duration,
    pub poll_max: Duration,
    /// Test hook (`ROTATIOND_TEST_FAILPOINT=after-rotate`): pause forever right after a
    /// RotateSecret request was answered and committed, so that a test can kill the
    /// process between RotateSecret and validation.
    pub failpoint: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            monitor_timeout: Duration::from_secs(15 * 60),
            poll_initial: Duration::from_millis(500),
            poll_max: Duration::from_secs(30),
            failpoint: std::env::var("ROTATIOND_TEST_FAILPOINT").ok(),
        }
    }
}

/// At most `per_minute` RotateSecret calls in any 60 s (the config's
/// `max_rotations_per_minute`), across all attempts of this process.
pub struct RateLimiter {
    per_minute: usize,
    recent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1) as usize,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits for a slot. The lock is held across the sleep on purpose: waiters queue in
    /// order and none can overtake the one whose slot frees first.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<(), EngineError> {
        let mut recent = self.recent.lock().await;
        loop {
            let now = Instant::now();
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                recent.pop_front();
            }
            if recent.len() < self.per_minute {
                recent.push_back(now);
                return Ok(());
            }
            let wait = Duration::from_secs(60) - now.duration_since(recent[0]);
            tokio::select! {
                _ = cancel.cancelled() => return Err(EngineError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// What a caller wants rotated, and why.
#[derive(Debug, Clone)]
pub struct RotationRequest {
    /// Config key, name or ARN of the secret.
    pub secret: String,
    pub kind: TriggerKind,
    pub ticket: Option<String>,
    pub reason: String,
    pub actor: String,
    /// Ignore the window (emergency rotation).
    pub emergency: bool,
}

/// Progress sink: the CLI prints stages on stderr, the daemon logs them.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

pub struct Engine {
    pub cfg: Arc<Config>,
    pub sm: SecretsManager,
    pub cw: crate::aws::cloudwatch::CloudWatch,
    pub store: StoreHandle,
    pub alerts: Alerts,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub opts: EngineOptions,
    pub limiter: RateLimiter,
}

/// The ClientRequestToken for an attempt: deterministic, 32-64 characters.
pub fn request_token(attempt_id: &str) -> String {
    format!("rotationd-{attempt_id}")
}

fn is_planned(kind: TriggerKind) -> bool {
    matches!(
        kind,
        TriggerKind::Scheduled | TriggerKind::Overdue | TriggerKind::NeverRotated
    )
}

/// Every `trigger` label of `rotationd_rotations_total` ([`trigger_label`]).
pub const TRIGGER_LABELS: &[&str] = &["scheduled", "departure", "compromise", "manual", "retry"];
/// Every `outcome` label of `rotationd_rotations_total` ([`Outcome::label`]).
pub const OUTCOME_LABELS: &[&str] = &["succeeded", "failed", "skipped"];

/// The `trigger` label of `rotationd_rotations_total`: planned kinds are `scheduled`.
pub fn trigger_label(kind: TriggerKind) -> &'static str {
    match kind {
        TriggerKind::Scheduled | TriggerKind::Overdue | TriggerKind::NeverRotated => "scheduled",
        TriggerKind::Departure => "departure",
        TriggerKind::Compromise => "compromise",
        TriggerKind::Manual => "manual",
        TriggerKind::Retry => "retry",
    }
}

impl Engine {
    /// Records a trigger and an attempt for `req` (one transaction) and returns the
    /// attempt id. Pending triggers of the same secret are served by the same attempt.
    pub async fn create_manual_attempt(
        &self,
        req: &RotationRequest,
        arn: Option<String>,
    ) -> Result<String, EngineError> {
        let now = self.clock.now();
        let trigger = NewTrigger {
            secret: req.secret.clone(),
            kind: req.kind,
            dedupe_key: None,
            ticket: req.ticket.clone(),
            reason: req.reason.clone(),
            actor: req.actor.clone(),
            created_at: now,
            not_before: None,
            deadline: None,
        };
        let attempt_id = uuid::Uuid::new_v4().simple().to_string();
        let id = attempt_id.clone();
        let emergency = req.emergency;
        let kind = req.kind;
        let ticket = req.ticket.clone();
        let secret = req.secret.clone();
        self.store
            .call(move |s| {
                s.transaction(|db| {
                    let t = db.insert_trigger(&trigger)?;
                    db.create_attempt(&NewAttempt {
                        id: id.clone(),
                        trigger_id: Some(t.id),
                        secret: secret.clone(),
                        secret_arn: arn.clone(),
                        trigger_kind: kind,
                        ticket: ticket.clone(),
                        client_request_token: request_token(&id),
                        previous_version: None,
                        started_at: now,
                    })?;
                    db.attach_attempt(t.id, &id, now)?;
                    db.append_audit(&NewAuditEntry {
                        at: now,
                        actor: trigger.actor.clone(),
                        action: audit::Action::RotateRequested,
                        secret: Some(secret.clone()),
                        ticket: trigger.ticket.clone(),
                        reason: Some(trigger.reason.clone()),
                        outcome: audit::Outcome::Accepted,
                        detail: Some(serde_json::json!({
                            "attempt": id, "trigger": kind.as_str(), "emergency": emergency
                        })),
                    })?;
                    Ok(())
                })
            })
            .await?;
        Ok(attempt_id)
    }

    /// Creates an attempt serving the pending trigger `trigger` (and any other pending
    /// trigger of the same secret).
    pub async fn attempt_for_trigger(
        &self,
        trigger: &Trigger,
        arn: Option<String>,
    ) -> Result<String, EngineError> {
        let now = self.clock.now();
        let attempt_id = uuid::Uuid::new_v4().simple().to_string();
        let id = attempt_id.clone();
        let t = trigger.clone();
        self.store
            .call(move |s| {
                s.transaction(|db| {
                    db.create_attempt(&NewAttempt {
                        id: id.clone(),
                        trigger_id: Some(t.id),
                        secret: t.secret.clone(),
                        secret_arn: arn.clone(),
                        trigger_kind: t.kind,
                        ticket: t.ticket.clone(),
                        client_request_token: request_token(&id),
                        previous_version: None,
                        started_at: now,
                    })?;
                    for other in db.pending_triggers_for(&t.secret)? {
                        // Planned triggers whose window has not opened wait for it.
                        if other.id == t.id || other.not_before.is_none_or(|nb| nb <= now) {
                            db.attach_attempt(other.id, &id, now)?;
                        }
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(attempt_id)
    }

    async fn load(&self, attempt_id: &str) -> Result<Attempt, EngineError> {
        let id = attempt_id.to_string();
        self.store
            .call(move |s| s.db().get_attempt(&id))
            .await?
            .ok_or_else(|| EngineError::NoAttempt(attempt_id.to_string()))
    }

    async fn update(&self, attempt_id: &str, update: AttemptUpdate) -> Result<(), EngineError> {
        let id = attempt_id.to_string();
        let now = self.clock.now();
        self.store
            .call(move |s| s.db().update_attempt(&id, &update, now))
            .await?;
        Ok(())
    }

    async fn describe(&self, id: &str, cancel: &CancellationToken) -> Result<SecretInfo, AwsCall> {
        tokio::select! {
            _ = cancel.cancelled() => Err(AwsCall::Cancelled),
            r = self.sm.describe(id) => r.map_err(AwsCall::Aws),
        }
    }

    /// Drives an attempt from its stored state to a terminal one.
    pub async fn drive(
        &self,
        attempt_id: &str,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        // What the previous step just read from DescribeSecret, so the next step need not
        // ask again; empty when the attempt is resumed from the store.
        let mut fresh: Option<SecretInfo> = None;
        loop {
            let attempt = self.load(attempt_id).await?;
            let step = match attempt.state {
                AttemptState::Preflight => {
                    self.preflight(&attempt, &mut fresh, progress, cancel).await
                }
                AttemptState::RotateRequested => {
                    self.rotate(&attempt, &mut fresh, progress, cancel).await
                }
                AttemptState::Monitoring => {
                    self.monitor(&attempt, &mut fresh, progress, cancel).await
                }
                AttemptState::Validating => {
                    self.validate(&attempt, &mut fresh, progress, cancel).await
                }
                AttemptState::Succeeded => {
                    return Ok(Outcome::Succeeded {
                        new_version: attempt.new_version.unwrap_or_default(),
                    });
                }
                AttemptState::Failed => {
                    return Ok(Outcome::Failed(attempt.error.unwrap_or_default()));
                }
                AttemptState::Stuck => {
                    return Ok(Outcome::Stuck(attempt.error.unwrap_or_default()));
                }
                AttemptState::Skipped => {
                    return Ok(Outcome::Skipped(attempt.error.unwrap_or_default()));
                }
            };
            match step {
                Ok(Some(outcome)) => {
                    self.finish(&attempt, &outcome, started.elapsed()).await?;
                    return Ok(outcome);
                }
                Ok(None) => continue,
                Err(AwsCall::Cancelled) => return Err(EngineError::Cancelled),
                Err(AwsCall::Store(e)) => return Err(EngineError::Store(e)),
                Err(AwsCall::Aws(e)) if e.retryable => return Err(EngineError::Retryable(e)),
                Err(AwsCall::Aws(e)) => {
                    let outcome = Outcome::Failed(e.to_string());
                    self.update(
                        attempt_id,
                        AttemptUpdate::to(AttemptState::Failed).error(e.to_string()),
                    )
                    .await?;
                    self.finish(&attempt, &outcome, started.elapsed()).await?;
                    return Ok(outcome);
                }
            }
        }
    }

    /// The pre-rotation checklist. `Ok(None)`: passed, state moved on.
    async fn preflight(
        &self,
        attempt: &Attempt,
        fresh: &mut Option<SecretInfo>,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Outcome>, AwsCall> {
        progress("preflight: checking the secret (pre-rotation checklist)");
        let id = aws_id(attempt);
        let info = match self.describe(&id, cancel).await {
            Ok(info) => info,
            Err(AwsCall::Aws(e)) if e.is_not_found() => {
                return self
                    .end(
                        attempt,
                        AttemptState::Failed,
                        format!("secret {} not found in Secrets Manager", attempt.secret),
                    )
                    .await;
            }
            Err(e) => return Err(e),
        };
        let trigger = match attempt.trigger_id {
            Some(tid) => self.store.call(move |s| s.db().get_trigger(tid)).await?,
            None => None,
        };
        let now = self.clock.now();
        if let Some(deleted) = info.deleted {
            return self
                .end(
                    attempt,
                    AttemptState::Failed,
                    format!(
                        "secret is scheduled for deletion (on {}); restore it before rotating",
                        deleted.to_rfc3339()
                    ),
                )
                .await;
        }
        if !info.rotation_configured() {
            return self
                .end(
                    attempt,
                    AttemptState::Failed,
                    "rotation is not configured for this secret: attach a rotation function or managed rotation (aws secretsmanager rotate-secret --rotation-lambda-arn ...), then retry".into(),
                )
                .await;
        }
        if let Some(pending) = info.dangling_pending() {
            // Only our own request token is "ours"; anything else is a previous rotation.
            if pending != attempt.client_request_token {
                return self
                    .end(
                        attempt,
                        AttemptState::Stuck,
                        format!(
                            "a previous rotation is not complete: version {pending} holds AWSPENDING without AWSCURRENT; RotateSecret was not called"
                        ),
                    )
                    .await;
            }
        }
        let Some(current) = info.current_version().map(str::to_string) else {
            return self
                .end(
                    attempt,
                    AttemptState::Failed,
                    "no AWSCURRENT version: there would be nothing to roll back to".into(),
                )
                .await;
        };
        if is_planned(attempt.trigger_kind) {
            if let Some(t) = &trigger {
                // Secrets Manager's own schedule (or an operator) already rotated the secret
                // in this window: a second rotation would only churn the credential.
                if attempt.trigger_kind == TriggerKind::Scheduled
                    && let (Some(end), Some(rotated), Some(settings)) =
                        (t.deadline, info.last_rotated, self.settings_for(&info))
                    && let Ok(window) = chrono::Duration::from_std(settings.window)
                    && rotated >= end - window
                {
                    return self
                        .end(
                            attempt,
                            AttemptState::Skipped,
                            format!(
                                "already rotated in this window (at {}, by Secrets Manager's own schedule or by hand); see [policy] native_schedule",
                                rotated.to_rfc3339()
                            ),
                        )
                        .await;
                }
                if let Some(nb) = t.not_before
                    && now < nb
                {
                    return self
                        .end(
                            attempt,
                            AttemptState::Skipped,
                            format!("outside its window: opens at {}", nb.to_rfc3339()),
                        )
                        .await;
                }
                if let Some(end) = t.deadline
                    && now >= end
                {
                    return self
                        .end(
                            attempt,
                            AttemptState::Skipped,
                            format!("outside its window: closed at {}", end.to_rfc3339()),
                        )
                        .await;
                }
            }
            match &attempt.ticket {
                Some(t) if is_ticket(t, "CHG") => {}
                Some(t) => {
                    return self
                        .end(
                            attempt,
                            AttemptState::Failed,
                            format!("planned rotations need a CHG ticket, found `{t}`"),
                        )
                        .await;
                }
                None if self.cfg.policy.require_change_ticket => {
                    return self
                        .end(attempt, AttemptState::Failed, "planned rotation without a CHG ticket while [policy] require_change_ticket is true".into())
                        .await;
                }
                None => {}
            }
        }
        // Dependents are told before the credential changes (the Secrets Rotation Guide's checklist).
        let settings = self.settings_for(&info);
        let dependents = settings.map(|s| s.dependents.clone()).unwrap_or_default();
        let mut notice = Alert::new(AlertKind::RotationScheduled, Some(&attempt.secret), now);
        notice.secret_arn = Some(info.arn.clone());
        notice.trigger = Some(attempt.trigger_kind.as_str().into());
        // The same ticket the completion notice carries: INC-pending when an event-triggered
        // rotation had none (the Secrets Rotation Guide: emergency rotations are ticketed after the fact).
        notice.ticket = Some(attempt.ticket.clone().unwrap_or_else(|| INC_PENDING.into()));
        notice.reason = trigger.as_ref().map(|t| t.reason.clone());
        notice.deadline = trigger.as_ref().and_then(|t| t.deadline);
        notice.details = serde_json::json!({
            "dependents": dependents,
            "ticket_pending": attempt.ticket.is_none(),
            "strategy": settings.map(|s| s.strategy.as_str()),
            "rollback": rollback_capability(settings.map(|s| s.strategy)),
            "window": trigger.as_ref().map(|t| serde_json::json!({
                "start": t.not_before.map(|d| d.to_rfc3339()),
                "end": t.deadline.map(|d| d.to_rfc3339()),
            })),
        });
        notice.dedupe_key = format!("rotation_scheduled:{}:{}", attempt.secret, attempt.id);
        self.raise_with_dependent_copies(notice, &dependents)
            .await?;
        // What to watch after the rotation, with the baseline read now, before the
        // credential changes (validation.rs).
        let mut plan = crate::validation::WatchPlan::for_dependents(
            &self.cfg,
            &dependents,
            settings.is_some_and(|s| s.auto_rollback),
        );
        if let Some(plan) = plan.as_mut() {
            // The dependents' alarms and metrics are in the secret's account and region.
            match self.cw.for_secret(&aws_id(attempt)) {
                Ok(cw) => tokio::select! {
                    _ = cancel.cancelled() => return Err(AwsCall::Cancelled),
                    _ = plan.take_baseline(&cw, now, self.cfg.policy.validation_period) => {}
                },
                Err(e) => plan.baseline_error = Some(e.to_string()),
            }
            if let Some(e) = &plan.baseline_error {
                tracing::warn!(secret = %attempt.secret, error = %e,
                    "cannot read the dependents' baseline in CloudWatch; the watch will judge on thresholds alone");
            }
        }
        progress(&format!(
            "preflight: ok (AWSCURRENT {current}, strategy {}, {} dependent(s) notified, ticket {})",
            settings.map_or("unknown", |s| s.strategy.as_str()),
            dependents.len(),
            attempt.ticket.as_deref().unwrap_or(INC_PENDING)
        ));
        progress(&format!(
            "preflight: rollback capability: {}",
            rollback_capability(settings.map(|s| s.strategy))
        ));
        let mut update = AttemptUpdate::to(AttemptState::RotateRequested).previous_version(current);
        if let Some(plan) = plan {
            update = update.watch_plan(serde_json::to_string(&plan).unwrap_or_default());
        }
        self.update(&attempt.id, update).await?;
        *fresh = Some(info);
        Ok(None)
    }

    /// Queues `alert`, plus one copy for each of `dependents` that has its own
    /// `notify_topic_arn` (published there, see `alerts::publish_due`).
    async fn raise_with_dependent_copies(
        &self,
        alert: Alert,
        dependents: &[String],
    ) -> Result<(), StoreError> {
        for d in dependents {
            if self
                .cfg
                .dependent(d)
                .is_some_and(|d| d.notify_topic_arn.is_some())
            {
                let mut copy = alert.clone();
                copy.dedupe_key = format!("{}:{d}", alert.dedupe_key);
                copy.dependent = Some(d.clone());
                self.alerts.raise(copy).await?;
            }
        }
        self.alerts.raise(alert).await?;
        Ok(())
    }

    /// Finds the config settings that apply to a described secret.
    fn settings_for(&self, info: &SecretInfo) -> Option<&crate::config::SecretSettings> {
        crate::inventory::match_fleet(&self.cfg, vec![info.clone()])
            .entries
            .first()
            .map(|e| crate::inventory::settings(&self.cfg, e.origin))
    }

    async fn rotate(
        &self,
        attempt: &Attempt,
        fresh: &mut Option<SecretInfo>,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Outcome>, AwsCall> {
        let id = aws_id(attempt);
        let token = attempt.client_request_token.clone();
        let info = match fresh.take() {
            // Straight from preflight: nothing was sent yet, its answer is current.
            Some(info) if attempt.rotate_calls == 0 => info,
            _ => self.describe(&id, cancel).await?,
        };
        if attempt.rotate_calls > 0 && info.versions.contains_key(&token) {
            // Resumed after a crash, and AWS did see the first request.
            progress("rotate: RotateSecret was already accepted before the restart; monitoring");
            self.update(
                &attempt.id,
                AttemptUpdate::to(AttemptState::Monitoring).new_version(token),
            )
            .await?;
            return Ok(None);
        }
        // The rotation function already configured: passing it explicitly makes a missing
        // function fail fast instead of leaving the rotation pending.
        let lambda = info.rotation_lambda_arn.filter(|a| !a.is_empty());
        self.limiter
            .acquire(cancel)
            .await
            .map_err(|_| AwsCall::Cancelled)?;
        let aid = attempt.id.clone();
        let now = self.clock.now();
        self.store
            .call(move |s| s.db().increment_rotate_calls(&aid, now))
            .await?;
        progress(&format!(
            "rotate: RotateSecret (ClientRequestToken {token})"
        ));
        let result = tokio::select! {
            _ = cancel.cancelled() => return Err(AwsCall::Cancelled),
            r = self.sm.rotate(&id, &token, lambda.as_deref()) => r,
        };
        match result {
            Ok(version) => {
                let version = version.unwrap_or(token);
                self.update(
                    &attempt.id,
                    AttemptUpdate::to(AttemptState::Monitoring).new_version(version),
                )
                .await?;
                if self.opts.failpoint.as_deref() == Some("after-rotate") {
                    progress("failpoint after-rotate: pausing");
                    cancel.cancelled().await;
                    return Err(AwsCall::Cancelled);
                }
                Ok(None)
            }
            Err(e)
                if e.is_code("InvalidRequestException") && e.message.contains("marked deleted") =>
            {
                self.end(
                    attempt,
                    AttemptState::Failed,
                    format!("secret is scheduled for deletion: {e}"),
                )
                .await
            }
            Err(e) => Err(AwsCall::Aws(e)),
        }
    }

    /// Watches the rotation function's four steps through what Secrets Manager shows (the
    /// labels) and what it reports (a RotationFailed event tied to this attempt), until
    /// [`judge_progress`] says promoted or failed.
    async fn monitor(
        &self,
        attempt: &Attempt,
        fresh: &mut Option<SecretInfo>,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Outcome>, AwsCall> {
        let id = aws_id(attempt);
        let token = attempt
            .new_version
            .clone()
            .unwrap_or_else(|| attempt.client_request_token.clone());
        let timeout = self.opts.monitor_timeout;
        let deadline = attempt.started_at
            + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::minutes(15));
        let mut delay = self.opts.poll_initial;
        let mut created = stage_seen(attempt, STAGE_CREATE);
        if !created {
            progress("monitor: waiting for the rotation function's createSecret");
        }
        loop {
            // Re-read: a RotationFailed event may have been tied to the attempt meanwhile.
            let stored = self.load(&attempt.id).await?;
            let info = self.describe(&id, cancel).await?;
            let now = self.clock.now();
            let verdict = judge_progress(
                &info,
                &token,
                created,
                stored.function_error.as_deref(),
                now >= deadline,
                timeout,
            );
            match verdict {
                RotationProgress::Waiting => {}
                RotationProgress::Created => {
                    if !created {
                        created = true;
                        self.observe(&attempt.id, STAGE_CREATE, now).await?;
                        progress(&format!(
                            "monitor: createSecret done (version {token} holds AWSPENDING); waiting for setSecret, testSecret, finishSecret"
                        ));
                    }
                }
                RotationProgress::Promoted => {
                    if !created {
                        self.observe(&attempt.id, STAGE_CREATE, now).await?;
                    }
                    self.observe(&attempt.id, STAGE_FINISH, now).await?;
                    progress(&format!(
                        "monitor: finishSecret done: version {token} holds AWSCURRENT (setSecret and testSecret passed)"
                    ));
                    self.update(&attempt.id, AttemptUpdate::to(AttemptState::Validating))
                        .await?;
                    *fresh = Some(info);
                    return Ok(None);
                }
                RotationProgress::Failed(reason) => {
                    progress(&format!("monitor: {reason}"));
                    return self.end(attempt, AttemptState::Failed, reason).await;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(AwsCall::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.opts.poll_max);
        }
    }

    async fn observe(
        &self,
        attempt_id: &str,
        stage: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = attempt_id.to_string();
        self.store
            .call(move |s| s.db().observe_stage(&id, stage, now))
            .await?;
        Ok(())
    }

    async fn validate(
        &self,
        attempt: &Attempt,
        fresh: &mut Option<SecretInfo>,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Outcome>, AwsCall> {
        let id = aws_id(attempt);
        let info = match fresh.take() {
            Some(info) => info,
            None => self.describe(&id, cancel).await?,
        };
        let new = attempt.new_version.clone().unwrap_or_default();
        let current = info.current_version().map(str::to_string);
        let previous = info.previous_version().map(str::to_string);
        let new_is_current = info
            .versions
            .get(&new)
            .is_some_and(|stages| stages.iter().any(|s| s == AWSCURRENT));
        if !new_is_current {
            return self
                .end(
                    attempt,
                    AttemptState::Failed,
                    format!(
                        "post-rotation validation: AWSCURRENT is {} instead of the new version {new}",
                        current.as_deref().unwrap_or("absent")
                    ),
                )
                .await;
        }
        if previous.is_none() || previous != attempt.previous_version {
            return self
                .end(
                    attempt,
                    AttemptState::Failed,
                    format!(
                        "post-rotation validation: AWSPREVIOUS is {} instead of the old version {}; rollback would not restore the old credential",
                        previous.as_deref().unwrap_or("absent"),
                        attempt.previous_version.as_deref().unwrap_or("unknown")
                    ),
                )
                .await;
        }
        progress(&format!(
            "validate: AWSCURRENT {new} (new), AWSPREVIOUS {} (old)",
            previous.unwrap_or_default()
        ));
        let mut update = AttemptUpdate::to(AttemptState::Succeeded);
        if crate::validation::plan_of(attempt).is_some_and(|p| p.is_watched()) {
            // The watch of the dependents starts with the success, in the same commit.
            let period = chrono::Duration::from_std(self.cfg.policy.validation_period)
                .unwrap_or(chrono::Duration::minutes(15));
            update = update.watch_until(self.clock.now() + period);
            progress(&format!(
                "validate: watching the dependents for {}",
                crate::config::fmt_duration(self.cfg.policy.validation_period)
            ));
        }
        self.update(&attempt.id, update).await?;
        Ok(Some(Outcome::Succeeded { new_version: new }))
    }

    /// Moves the attempt to a terminal state with `reason`.
    async fn end(
        &self,
        attempt: &Attempt,
        state: AttemptState,
        reason: String,
    ) -> Result<Option<Outcome>, AwsCall> {
        self.update(&attempt.id, AttemptUpdate::to(state).error(reason.clone()))
            .await?;
        Ok(Some(match state {
            AttemptState::Stuck => Outcome::Stuck(reason),
            AttemptState::Skipped => Outcome::Skipped(reason),
            _ => Outcome::Failed(reason),
        }))
    }

    /// Records a terminal outcome: triggers, audit log and the alert in one store
    /// transaction (a crash leaves all or none of them), then metrics and logs. The
    /// attempt's own terminal state is already committed; if a crash falls between the two,
    /// [`Engine::finish_interrupted`] completes the bookkeeping at the next start.
    async fn finish(
        &self,
        attempt: &Attempt,
        outcome: &Outcome,
        took: Duration,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let attempt = self.load(&attempt.id).await?;
        let trigger = match attempt.trigger_id {
            Some(tid) => self.store.call(move |s| s.db().get_trigger(tid)).await?,
            None => None,
        };
        let status = match outcome {
            Outcome::Succeeded { .. } => TriggerStatus::Done,
            // A skipped planned attempt (window closed) is done with; the planner makes a
            // new trigger for the next window or when the secret turns overdue.
            Outcome::Skipped(_) => TriggerStatus::Cancelled,
            Outcome::Failed(_) | Outcome::Stuck(_) => TriggerStatus::Failed,
        };
        let outcome_label = outcome.label();
        let error = match outcome {
            Outcome::Succeeded { .. } => None,
            Outcome::Failed(e) | Outcome::Stuck(e) | Outcome::Skipped(e) => Some(e.clone()),
        };
        let alert = |kind: AlertKind| {
            let mut a = Alert::new(kind, Some(&attempt.secret), now);
            a.secret_arn = attempt.secret_arn.clone();
            a.trigger = Some(attempt.trigger_kind.as_str().into());
            a.ticket = Some(attempt.ticket.clone().unwrap_or_else(|| INC_PENDING.into()));
            a.reason = trigger.as_ref().map(|t| t.reason.clone());
            a.error = error.clone();
            a.deadline = trigger.as_ref().and_then(|t| t.deadline);
            a.details = serde_json::json!({
                "attempt": attempt.id,
                "previous_version": attempt.previous_version,
                "new_version": attempt.new_version,
                "ticket_pending": attempt.ticket.is_none(),
            });
            a
        };
        let alert = match outcome {
            Outcome::Succeeded { .. } => {
                let mut a = alert(AlertKind::RotationCompleted);
                a.dedupe_key = format!("rotation_completed:{}:{}", attempt.secret, attempt.id);
                Some(a)
            }
            Outcome::Failed(_) => {
                let mut a = alert(AlertKind::RotationFailed);
                a.dedupe_key = format!("rotation_failed:{}:{}", attempt.secret, attempt.id);
                Some(a)
            }
            Outcome::Stuck(_) => Some(alert(AlertKind::RotationStuck)),
            Outcome::Skipped(_) => None,
        };
        // The completion notice also goes to each dependent's own topic.
        let plan = crate::validation::plan_of(&attempt);
        let dependents = plan.map(|p| p.dependents).unwrap_or_default();
        let mut alerts: Vec<Alert> = Vec::new();
        if let Some(mut a) = alert {
            if matches!(outcome, Outcome::Succeeded { .. }) {
                a.details["dependents"] = serde_json::json!(dependents);
                for d in &dependents {
                    if self
                        .cfg
                        .dependent(d)
                        .is_some_and(|d| d.notify_topic_arn.is_some())
                    {
                        let mut copy = a.clone();
                        copy.dedupe_key = format!("{}:{d}", a.dedupe_key);
                        copy.dependent = Some(d.clone());
                        alerts.push(copy);
                    }
                }
            }
            alerts.push(a);
        }
        let queue: Vec<crate::alerts::Prepared> = alerts
            .iter()
            .filter_map(|a| self.alerts.prepare(a))
            .collect();
        let queue_keys: Vec<String> = queue.iter().map(|p| p.alert.dedupe_key.clone()).collect();
        let audit = NewAuditEntry {
            at: now,
            actor: trigger
                .as_ref()
                .map_or("rotationd".to_string(), |t| t.actor.clone()),
            action: audit::Action::Rotate,
            secret: Some(attempt.secret.clone()),
            ticket: attempt.ticket.clone(),
            reason: trigger.as_ref().map(|t| t.reason.clone()),
            outcome: match attempt.state {
                AttemptState::Succeeded => audit::Outcome::Ok,
                other => audit::Outcome::Attempt(other),
            },
            detail: Some(serde_json::json!({
                "attempt": attempt.id,
                "trigger": attempt.trigger_kind.as_str(),
                "previous_version": attempt.previous_version,
                "new_version": attempt.new_version,
                "rotate_calls": attempt.rotate_calls,
                "duration_seconds": took.as_secs_f64(),
                // When each stage began: preflight, rotate_requested, monitoring, ...
                "stages": attempt
                    .stage_times
                    .as_deref()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
                "error": error,
            })),
        };
        let aid = attempt.id.clone();
        let queued = self
            .store
            .call(move |s| {
                s.transaction(|db| {
                    db.finish_triggers_of_attempt(&aid, status, now)?;
                    db.append_audit(&audit)?;
                    let mut queued = Vec::new();
                    for p in &queue {
                        queued.push(
                            db.enqueue_alert_deduped(&p.alert, p.at, p.realert)?
                                .is_some(),
                        );
                    }
                    Ok(queued)
                })
            })
            .await?;
        // `queue` holds the alerts `prepare` kept, in order; match them up by dedupe key.
        for a in &alerts {
            if queue_keys
                .iter()
                .zip(&queued)
                .any(|(k, q)| *q && *k == a.dedupe_key)
            {
                crate::alerts::Alerts::log_queued(a);
            }
        }
        let label = trigger_label(attempt.trigger_kind);
        let place = self.sm.place_of(&aws_id(&attempt));
        self.metrics
            .rotations_total
            .with_label_values(&[label, outcome_label, &place.account, &place.region])
            .inc();
        match outcome {
            Outcome::Succeeded { .. } => {
                self.metrics
                    .rotation_duration_seconds
                    .with_label_values(&[label])
                    .observe(took.as_secs_f64());
                tracing::info!(secret = %attempt.secret, attempt = %attempt.id, "rotation succeeded");
            }
            Outcome::Failed(e) => {
                tracing::error!(secret = %attempt.secret, attempt = %attempt.id, error = %e, "rotation failed");
            }
            Outcome::Stuck(e) => {
                tracing::error!(secret = %attempt.secret, attempt = %attempt.id, error = %e, "rotation stuck");
            }
            Outcome::Skipped(e) => {
                tracing::info!(secret = %attempt.secret, attempt = %attempt.id, reason = %e, "rotation skipped");
            }
        }
        Ok(())
    }

    /// Completes the bookkeeping of attempts that reached a terminal state but whose
    /// triggers are still open: rotationd died between the two commits. Without this such a
    /// trigger would stay `running` forever (found by the kill -9 test, tests/crash.rs).
    /// Returns how many attempts it finished.
    pub async fn finish_interrupted(&self) -> Result<usize, EngineError> {
        let attempts = self
            .store
            .call(|s| s.db().finished_attempts_with_open_triggers())
            .await?;
        let n = attempts.len();
        for attempt in attempts {
            let error = attempt.error.clone().unwrap_or_default();
            let outcome = match attempt.state {
                AttemptState::Succeeded => Outcome::Succeeded {
                    new_version: attempt.new_version.clone().unwrap_or_default(),
                },
                AttemptState::Stuck => Outcome::Stuck(error),
                AttemptState::Skipped => Outcome::Skipped(error),
                _ => Outcome::Failed(error),
            };
            tracing::info!(secret = %attempt.secret, attempt = %attempt.id, state = %attempt.state,
                "completing the bookkeeping of an attempt finished before a crash");
            let took = attempt
                .finished_at
                .map(|f| f - attempt.started_at)
                .and_then(|d| d.to_std().ok())
                .unwrap_or_default();
            self.finish(&attempt, &outcome, took).await?;
        }
        Ok(n)
    }
}

/// The guide's "verify rollback capability", per strategy. Rollback moves labels; whether
/// the old credential still opens the door depends on the strategy.
pub fn rollback_capability(strategy: Option<crate::config::Strategy>) -> &'static str {
    match strategy {
        Some(crate::config::Strategy::AlternatingUsers) => {
            "AWSPREVIOUS stays usable: the previous user keeps its password until the next rotation, so moving AWSCURRENT back restores a working credential"
        }
        Some(crate::config::Strategy::SingleUser) => {
            "labels only: after setSecret the database no longer accepts the old password, so moving AWSCURRENT back hands clients a refused password; recover by rotating again (auto_rollback is refused for single-user)"
        }
        None => "unknown: the secret's strategy is not configured",
    }
}

/// The rotation function's steps rotationd can see: Secrets Manager shows createSecret
/// (a version with the request token and AWSPENDING appears) and finishSecret (that
/// version takes AWSCURRENT). setSecret and testSecret run inside the function and change
/// no label: they passed when finishSecret happened, and a RotationFailed event names the
/// step that failed.
pub const STAGE_CREATE: &str = "createSecret";
pub const STAGE_FINISH: &str = "finishSecret";

fn stage_seen(attempt: &Attempt, stage: &str) -> bool {
    attempt
        .stage_times
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .is_some_and(|v| v.get(stage).is_some())
}

/// What one look at the secret says about a running rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationProgress {
    /// Nothing new: RotateSecret was answered but createSecret has not run yet (a Lambda
    /// cold start takes seconds), or the function is still between steps.
    Waiting,
    /// The new version exists as AWSPENDING: createSecret ran; setSecret, testSecret and
    /// finishSecret are to come.
    Created,
    /// The new version holds AWSCURRENT and no other version holds AWSPENDING
    /// (AWSPENDING may stay on the new version itself: AWS documents both).
    Promoted,
    Failed(String),
}

/// Decides how a rotation stands from one DescribeSecret answer (pure). `token` is the
/// new version's id, `created` whether createSecret was seen on an earlier look,
/// `function_error` a RotationFailed event tied to the attempt (`EVENT_ID: MESSAGE`),
/// `timed_out` whether the monitor's time is up.
pub fn judge_progress(
    info: &SecretInfo,
    token: &str,
    created: bool,
    function_error: Option<&str>,
    timed_out: bool,
    timeout: Duration,
) -> RotationProgress {
    let stages = info.versions.get(token);
    let has = |label: &str| stages.is_some_and(|s| s.iter().any(|l| l == label));
    let pending_elsewhere = info
        .versions
        .iter()
        .any(|(v, s)| v != token && s.iter().any(|l| l == AWSPENDING));
    if has(AWSCURRENT) && !pending_elsewhere {
        return RotationProgress::Promoted;
    }
    let left = if has(AWSPENDING) {
        format!(
            "; AWSPENDING is left on version {token}: the secret is stuck until someone investigates and clears it (see the runbook)"
        )
    } else {
        String::new()
    };
    if let Some(error) = function_error {
        let (event, message) = error.split_once(": ").unwrap_or(("", error));
        let stage = crate::events::failed_stage(message).map_or_else(
            || "an unnamed step".to_string(),
            |s| format!("the {s} step"),
        );
        return RotationProgress::Failed(format!(
            "the rotation function failed during {stage} (RotationFailed event {event}: {message}){left}"
        ));
    }
    if stages.is_none() {
        if created {
            // It existed and vanished without being promoted: RotationAbandoned (someone
            // wrote a version by hand) or the function cleaned up after a failure.
            return RotationProgress::Failed("the new version disappeared before it was promoted (rotation abandoned or failed); see RotationFailed/RotationAbandoned in CloudTrail".into());
        }
        if timed_out {
            return RotationProgress::Failed(format!(
                "rotation did not finish within {}: the last stage reached was RotateSecret; the function's createSecret never created version {token} (is the function invoked? see its logs)",
                crate::config::fmt_duration(timeout)
            ));
        }
        return RotationProgress::Waiting;
    }
    if !has(AWSPENDING) && !has(AWSCURRENT) {
        return RotationProgress::Failed(format!(
            "version {token} lost AWSPENDING before it was promoted (rotation cancelled or abandoned)"
        ));
    }
    if timed_out {
        let last = if has(AWSCURRENT) {
            "finishSecret (another version still holds AWSPENDING)"
        } else {
            "createSecret: setSecret, testSecret or finishSecret did not complete"
        };
        return RotationProgress::Failed(format!(
            "rotation did not finish within {}: the last stage reached was {last}{left}",
            crate::config::fmt_duration(timeout)
        ));
    }
    if has(AWSPENDING) && !has(AWSCURRENT) {
        return RotationProgress::Created;
    }
    RotationProgress::Waiting
}

/// What to name the secret in AWS calls: the ARN once known (names can be reused after a
/// deletion, ARNs cannot), else the configured id.
fn aws_id(attempt: &Attempt) -> String {
    attempt
        .secret_arn
        .clone()
        .unwrap_or_else(|| attempt.secret.clone())
}

/// The ways one step can stop early.
#[derive(Debug)]
enum AwsCall {
    Aws(AwsError),
    Store(StoreError),
    Cancelled,
}

impl From<StoreError> for AwsCall {
    fn from(e: StoreError) -> Self {
        AwsCall::Store(e)
    }
}

impl From<EngineError> for AwsCall {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => AwsCall::Store(s),
            EngineError::Retryable(a) => AwsCall::Aws(a),
            EngineError::Cancelled => AwsCall::Cancelled,
            EngineError::NoAttempt(id) => AwsCall::Store(StoreError::NotFound {
                what: "attempt",
                id,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_token_is_deterministic_and_within_aws_limits() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let t = request_token(&id);
        assert_eq!(t, request_token(&id));
        assert!((32..=64).contains(&t.len()), "{}", t.len());
    }

    #[test]
    fn the_label_lists_hold_every_label() {
        use TriggerKind::*;
        for k in [
            Scheduled,
            Overdue,
            NeverRotated,
            Departure,
            Compromise,
            Manual,
            Retry,
        ] {
            assert!(TRIGGER_LABELS.contains(&trigger_label(k)), "{k:?}");
        }
        for o in [
            Outcome::Succeeded {
                new_version: String::new(),
            },
            Outcome::Failed(String::new()),
            Outcome::Stuck(String::new()),
            Outcome::Skipped(String::new()),
        ] {
            assert!(OUTCOME_LABELS.contains(&o.label()), "{o:?}");
        }
    }

    #[test]
    fn planned_kinds_share_the_scheduled_label() {
        assert_eq!(trigger_label(TriggerKind::Overdue), "scheduled");
        assert_eq!(trigger_label(TriggerKind::NeverRotated), "scheduled");
        assert_eq!(trigger_label(TriggerKind::Departure), "departure");
    }

    fn labels(versions: &[(&str, &[&str])]) -> SecretInfo {
        SecretInfo {
            name: "prod/db".into(),
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf".into(),
            versions: versions
                .iter()
                .map(|(v, s)| (v.to_string(), s.iter().map(|l| l.to_string()).collect()))
                .collect(),
            ..SecretInfo::default()
        }
    }

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn an_asynchronous_function_is_waited_for_until_it_creates_the_version() {
        // RotateSecret answered, the Lambda not started yet: waiting, not "disappeared".
        let before = labels(&[("old", &["AWSCURRENT"])]);
        assert_eq!(
            judge_progress(&before, "tok", false, None, false, T),
            RotationProgress::Waiting
        );
        let created = labels(&[("old", &["AWSCURRENT"]), ("tok", &["AWSPENDING"])]);
        assert_eq!(
            judge_progress(&created, "tok", false, None, false, T),
            RotationProgress::Created
        );
    }

    #[test]
    fn promotion_is_accepted_with_or_without_awspending_left_on_the_new_version() {
        let left = labels(&[
            ("old", &["AWSPREVIOUS"]),
            ("tok", &["AWSPENDING", "AWSCURRENT"]),
        ]);
        assert_eq!(
            judge_progress(&left, "tok", true, None, false, T),
            RotationProgress::Promoted
        );
        let removed = labels(&[("old", &["AWSPREVIOUS"]), ("tok", &["AWSCURRENT"])]);
        assert_eq!(
            judge_progress(&removed, "tok", true, None, false, T),
            RotationProgress::Promoted
        );
        // Another version still pending: not finished.
        let other = labels(&[("x", &["AWSPENDING"]), ("tok", &["AWSCURRENT"])]);
        assert_eq!(
            judge_progress(&other, "tok", true, None, false, T),
            RotationProgress::Waiting
        );
    }

    #[test]
    fn a_version_seen_and_then_gone_has_disappeared() {
        let gone = labels(&[("old", &["AWSCURRENT"])]);
        let RotationProgress::Failed(why) = judge_progress(&gone, "tok", true, None, false, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("disappeared"), "{why}");
    }

    #[test]
    fn the_timeout_names_the_last_stage_reached() {
        let never = labels(&[("old", &["AWSCURRENT"])]);
        let RotationProgress::Failed(why) = judge_progress(&never, "tok", false, None, true, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("within 1m"), "{why}");
        assert!(why.contains("last stage reached was RotateSecret"), "{why}");
        let created = labels(&[("old", &["AWSCURRENT"]), ("tok", &["AWSPENDING"])]);
        let RotationProgress::Failed(why) = judge_progress(&created, "tok", true, None, true, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("last stage reached was createSecret"), "{why}");
        assert!(why.contains("AWSPENDING is left on version tok"), "{why}");
    }

    #[test]
    fn a_tied_rotation_failed_event_names_the_step() {
        let created = labels(&[("old", &["AWSCURRENT"]), ("tok", &["AWSPENDING"])]);
        let error = "ev-1: Error when executing lambda arn:aws:lambda:us-east-1:1:function:f during setSecret step";
        let RotationProgress::Failed(why) =
            judge_progress(&created, "tok", true, Some(error), false, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("during the setSecret step"), "{why}");
        assert!(why.contains("RotationFailed event ev-1"), "{why}");
        assert!(why.contains("AWSPENDING is left"), "{why}");
        // A message that names no step still fails the attempt.
        let RotationProgress::Failed(why) =
            judge_progress(&created, "tok", true, Some("ev-2: boom"), false, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("an unnamed step"), "{why}");
    }

    #[test]
    fn a_pending_label_removed_before_promotion_fails() {
        let lost = labels(&[("old", &["AWSCURRENT"]), ("tok", &[])]);
        assert!(matches!(
            judge_progress(&lost, "tok", true, None, false, T),
            RotationProgress::Failed(why) if why.contains("lost AWSPENDING")
        ));
    }

    #[test]
    fn rollback_capability_depends_on_the_strategy() {
        use crate::config::Strategy;
        assert!(rollback_capability(Some(Strategy::SingleUser)).starts_with("labels only"));
        assert!(
            rollback_capability(Some(Strategy::AlternatingUsers)).contains("previous user keeps")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_n_per_minute() {
        let limiter = RateLimiter::new(2);
        let cancel = CancellationToken::new();
        let start = tokio::time::Instant::now();
        limiter.acquire(&cancel).await.unwrap();
        limiter.acquire(&cancel).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(&cancel).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(60));
    }
}
