//! The pre-rotation checklist of the Secrets Rotation Guide, run by [`Engine::drive_with`]
//! before any RotateSecret: the secret exists and is not scheduled for deletion, a rotation
//! function is configured, no earlier rotation left AWSPENDING behind, a planned rotation
//! is inside its window (and not already done there by someone else) with a CHG ticket when
//! `require_change_ticket` asks; then the dependents are told and the watch plan, with its
//! baseline, is recorded. In observe mode it stops there and says what would happen.

use super::*;

impl Engine {
    /// The pre-rotation checklist. `Ok(None)`: passed, state moved on.
    pub(super) async fn preflight(
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
        if self.observing() {
            // Every check passed: enforce mode would notify the dependents and rotate now.
            progress(&format!(
                "preflight: ok (AWSCURRENT {current}); observe mode: RotateSecret not sent"
            ));
            return Ok(Some(
                self.observed(attempt, Verdict::WouldRotate, String::new())
                    .await?,
            ));
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
        let vendor = settings.and_then(|s| s.vendor.as_deref());
        for a in notice.with_copies(&self.cfg, &dependents, vendor) {
            self.alerts.raise(a).await?;
        }
        // What to watch after the rotation, with the baseline read now, before the
        // credential changes (validation.rs).
        let mut plan = crate::validation::WatchPlan::for_dependents(
            &self.cfg,
            &dependents,
            settings.is_some_and(|s| s.auto_rollback),
        );
        // The vendor rides on the plan to the completion notice (none without dependents:
        // a plan that watches nothing reads nothing).
        if let Some(v) = vendor {
            plan.get_or_insert_with(Default::default).vendor = Some(v.to_string());
        }
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
}
