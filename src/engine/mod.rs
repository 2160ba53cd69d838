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
//! In observe mode (`[daemon] mode = "observe"`) the preflight runs as always and the
//! attempt then ends `observed` with a verdict (would rotate, would fail, would stick)
//! instead of notifying dependents and sending RotateSecret; nothing ends failed or stuck
//! and nothing is held, since nothing was tried. Its triggers go back to pending for
//! enforce mode (`finish.rs`).
//!
//! Every transition is committed to the store before the next AWS call, so a crash at any
//! point resumes from the last committed state. Retryable AWS errors leave the state as
//! it is (the daemon retries later); fatal ones fail the attempt and escalate to Security.
//! The engine never reads or writes a secret value.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::aws::AwsError;
use crate::aws::secrets::{AWSCURRENT, SecretInfo, SecretsManager};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::audit;
use crate::store::{
    Attempt, AttemptState, AttemptUpdate, NewAttempt, NewAuditEntry, NewTrigger, StoreError,
    StoreHandle, Trigger, TriggerKind, Verdict,
};
use crate::ticket::{INC_PENDING, is_ticket};

mod finish;
mod limiter;
mod monitor;
mod preflight;

pub use limiter::RateLimiter;
pub use monitor::{RotationProgress, STAGE_CREATE, STAGE_FINISH, judge_progress};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        new_version: String,
    },
    Failed(String),
    Stuck(String),
    Skipped(String),
    /// Observe mode: the preflight ran and nothing was sent; what enforce mode would have
    /// done, and why (the failed check, or empty when it would have rotated).
    Observed {
        verdict: Verdict,
        reason: String,
    },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Failed(_) | Outcome::Stuck(_) => "failed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Observed { .. } => "observed",
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
    /// Test hook (`ROTATIOND_TEST_FAILPOINT=after-rotate`, [`crate::test_hooks`]): pause forever right after a
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
            failpoint: crate::test_hooks::failpoint(),
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
    /// Who ran the command as the operating system says (`$SUDO_USER`, `$USER`): recorded
    /// as a hint, never taken as the identity.
    pub os_user: Option<String>,
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

/// How much a trigger of `kind` asks of the attempt that serves it, most first: a
/// compromise, a departure, a person's (an approved request, an operator), the automatic
/// retry, then the planned kinds, which alone may be skipped ("already rotated in this
/// window") or refused for want of a CHG ticket.
pub fn lead_rank(kind: TriggerKind) -> u8 {
    match kind {
        TriggerKind::Compromise => 0,
        TriggerKind::Departure => 1,
        TriggerKind::Manual => 2,
        TriggerKind::Retry => 3,
        TriggerKind::Overdue => 4,
        TriggerKind::NeverRotated => 5,
        TriggerKind::Scheduled => 6,
    }
}

/// The trigger that leads an attempt serving `served` (its kind, ticket and reason): the
/// one that asks most ([`lead_rank`]), then the earliest deadline, then the oldest. Pure.
pub fn lead(served: &[Trigger]) -> Option<&Trigger> {
    served.iter().min_by_key(|t| {
        (
            lead_rank(t.kind),
            t.deadline.is_none(),
            t.deadline,
            t.created_at,
            t.id,
        )
    })
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
        let os_user = req.os_user.clone();
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
                            "attempt": id, "trigger": kind.as_str(), "emergency": emergency,
                            "os_user": os_user,
                        })),
                    })?;
                    Ok(())
                })
            })
            .await?;
        Ok(attempt_id)
    }

    /// Creates an attempt serving the pending trigger `trigger` and every other due pending
    /// trigger of the same secret, except those of the kinds in `held` (the storm guard's,
    /// while it pauses them: they stay pending). The attempt is led by the trigger that asks
    /// most ([`lead`]): a departure, a compromise or a request merged with a planned
    /// window makes it their rotation, which no planned-only rule (the window already
    /// served, the CHG ticket) can skip or fail.
    pub async fn attempt_for_trigger(
        &self,
        trigger: &Trigger,
        arn: Option<String>,
        held: &'static [TriggerKind],
    ) -> Result<String, EngineError> {
        let now = self.clock.now();
        let attempt_id = uuid::Uuid::new_v4().simple().to_string();
        let id = attempt_id.clone();
        let t = trigger.clone();
        self.store
            .call(move |s| {
                s.transaction(|db| {
                    let mut served = vec![t.clone()];
                    for other in db.pending_triggers_for(&t.secret)? {
                        // Planned triggers whose window has not opened wait for it.
                        if other.id != t.id
                            && other.not_before.is_none_or(|nb| nb <= now)
                            && !held.contains(&other.kind)
                        {
                            served.push(other);
                        }
                    }
                    let lead = lead(&served).unwrap_or(&t);
                    db.create_attempt(&NewAttempt {
                        id: id.clone(),
                        trigger_id: Some(lead.id),
                        secret: lead.secret.clone(),
                        secret_arn: arn.clone(),
                        trigger_kind: lead.kind,
                        ticket: lead.ticket.clone(),
                        client_request_token: request_token(&id),
                        previous_version: None,
                        started_at: now,
                    })?;
                    for s in &served {
                        db.attach_attempt(s.id, &id, now)?;
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
        self.drive_with(attempt_id, progress, cancel, async || {})
            .await
    }

    /// [`Engine::drive`], awaiting `before_rotate` once, after the preflight (which queued
    /// the dependents' `rotation_scheduled` notice) and before the first RotateSecret: the
    /// CLI publishes the notice there, so that it leaves before the credential changes.
    pub async fn drive_with(
        &self,
        attempt_id: &str,
        progress: Progress<'_>,
        cancel: &CancellationToken,
        before_rotate: impl AsyncFn(),
    ) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        let mut gated = false;
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
                    if !gated && attempt.rotate_calls == 0 {
                        gated = true;
                        before_rotate().await;
                    }
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
                AttemptState::Observed => {
                    return Ok(Outcome::Observed {
                        verdict: attempt.verdict.unwrap_or(Verdict::WouldRotate),
                        reason: attempt.error.unwrap_or_default(),
                    });
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
                Err(AwsCall::Aws(e)) if self.observing() => {
                    let outcome = self
                        .observed(&attempt, Verdict::WouldFail, e.to_string())
                        .await?;
                    self.finish(&attempt, &outcome, started.elapsed()).await?;
                    return Ok(outcome);
                }
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
        if self.observing() {
            // Resumed after a switch to observe mode: the request is not (re-)sent.
            progress("rotate: observe mode: RotateSecret not sent");
            return Ok(Some(
                self.observed(
                    attempt,
                    Verdict::WouldRotate,
                    "stopped before RotateSecret: the mode changed to observe".into(),
                )
                .await?,
            ));
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

    /// Whether this engine runs in observe mode (`[daemon] mode = "observe"`).
    pub fn observing(&self) -> bool {
        self.cfg.daemon.mode.is_observe()
    }

    /// Ends the attempt `observed` with `verdict` (and the failed check, if any).
    async fn observed(
        &self,
        attempt: &Attempt,
        verdict: Verdict,
        reason: String,
    ) -> Result<Outcome, EngineError> {
        let mut update = AttemptUpdate::observed(verdict);
        if !reason.is_empty() {
            update = update.error(reason.clone());
        }
        self.update(&attempt.id, update).await?;
        Ok(Outcome::Observed { verdict, reason })
    }

    /// Moves the attempt to a terminal state with `reason`. In observe mode a failure or a
    /// stuck rotation is only what enforce mode would have met: the attempt ends
    /// `observed` with that verdict.
    async fn end(
        &self,
        attempt: &Attempt,
        state: AttemptState,
        reason: String,
    ) -> Result<Option<Outcome>, AwsCall> {
        if self.observing() {
            let verdict = match state {
                AttemptState::Stuck => Some(Verdict::WouldStick),
                AttemptState::Failed => Some(Verdict::WouldFail),
                _ => None,
            };
            if let Some(verdict) = verdict {
                return Ok(Some(self.observed(attempt, verdict, reason).await?));
            }
        }
        self.update(&attempt.id, AttemptUpdate::to(state).error(reason.clone()))
            .await?;
        Ok(Some(match state {
            AttemptState::Stuck => Outcome::Stuck(reason),
            AttemptState::Skipped => Outcome::Skipped(reason),
            _ => Outcome::Failed(reason),
        }))
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

    fn trigger(id: i64, kind: TriggerKind, deadline_h: Option<i64>) -> Trigger {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Trigger {
            id,
            secret: "prod/db".into(),
            kind,
            dedupe_key: None,
            ticket: None,
            reason: String::new(),
            actor: String::new(),
            created_at: at,
            not_before: None,
            deadline: deadline_h.map(|h| at + chrono::Duration::hours(h)),
            status: crate::store::TriggerStatus::Pending,
            attempt_id: None,
            updated_at: at,
            observed_by: None,
        }
    }

    #[test]
    fn what_only_a_rotation_satisfies_leads_a_planned_window() {
        // The window ends first, so the executor reaches the planned trigger first; the
        // attempt is still the departure's (no planned-only skip or CHG check can end it).
        let served = [
            trigger(1, TriggerKind::Scheduled, Some(2)),
            trigger(2, TriggerKind::Departure, Some(24)),
        ];
        assert_eq!(lead(&served).map(|t| t.id), Some(2));
        let served = [
            trigger(1, TriggerKind::Scheduled, Some(2)),
            trigger(2, TriggerKind::Manual, Some(2)),
            trigger(3, TriggerKind::Retry, None),
        ];
        assert_eq!(lead(&served).map(|t| t.id), Some(2));
        let served = [
            trigger(1, TriggerKind::Departure, Some(1)),
            trigger(2, TriggerKind::Compromise, Some(5)),
        ];
        assert_eq!(lead(&served).map(|t| t.id), Some(2));
        // Among equals, the earliest deadline.
        let served = [
            trigger(1, TriggerKind::Departure, Some(20)),
            trigger(2, TriggerKind::Departure, Some(3)),
        ];
        assert_eq!(lead(&served).map(|t| t.id), Some(2));
        // Only planned kinds: the planned order (overdue before the window).
        let served = [
            trigger(1, TriggerKind::Scheduled, Some(2)),
            trigger(2, TriggerKind::Overdue, Some(4)),
        ];
        assert_eq!(lead(&served).map(|t| t.id), Some(2));
        for kind in TriggerKind::ALL {
            assert_eq!(
                lead_rank(*kind) > lead_rank(TriggerKind::Retry),
                is_planned(*kind),
                "{kind}"
            );
        }
    }

    #[test]
    fn rollback_capability_depends_on_the_strategy() {
        use crate::config::Strategy;
        assert!(rollback_capability(Some(Strategy::SingleUser)).starts_with("labels only"));
        assert!(
            rollback_capability(Some(Strategy::AlternatingUsers)).contains("previous user keeps")
        );
    }
}
