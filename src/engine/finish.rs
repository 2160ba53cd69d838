//! The end of an attempt: its triggers, its audit entry and its alert committed in one
//! transaction, then metrics and logs; and the recovery of ends a crash interrupted.

use std::time::Duration;

use super::{Engine, EngineError, Outcome, aws_id, trigger_label};
use crate::alerts::{Alert, AlertKind};
use crate::store::audit;
use crate::store::{Attempt, AttemptState, NewAuditEntry, TriggerStatus};
use crate::ticket::INC_PENDING;

impl Engine {
    /// Records a terminal outcome: triggers, audit log and the alert in one store
    /// transaction (a crash leaves all or none of them), then metrics and logs. The
    /// attempt's own terminal state is already committed; if a crash falls between the two,
    /// [`Engine::finish_interrupted`] completes the bookkeeping at the next start.
    pub(super) async fn finish(
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
        if let Outcome::Observed { verdict, reason } = outcome {
            return self
                .finish_observed(&attempt, trigger.as_ref(), *verdict, reason)
                .await;
        }
        let status = match outcome {
            Outcome::Succeeded { .. } => TriggerStatus::Done,
            // A skipped planned attempt (window closed) is done with; the planner makes a
            // new trigger for the next window or when the secret turns overdue.
            Outcome::Skipped(_) => TriggerStatus::Cancelled,
            Outcome::Failed(_) | Outcome::Stuck(_) => TriggerStatus::Failed,
            Outcome::Observed { .. } => unreachable!("finished by finish_observed"),
        };
        let outcome_label = outcome.label();
        let error = match outcome {
            Outcome::Succeeded { .. } | Outcome::Observed { .. } => None,
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
        // The hold this end places or lifts (the guide's "investigate before
        // re-attempting"): read first, so the alert can say what it means.
        let secret = attempt.secret.clone();
        let prior = self.store.call(move |s| s.db().hold(&secret)).await?;
        let failures = match &prior {
            Some(h) if h.attempt_id == attempt.id => h.failures,
            Some(h) => h.failures + 1,
            None => 1,
        };
        let holds = matches!(outcome, Outcome::Failed(_) | Outcome::Stuck(_));
        let with_hold = |mut a: Alert| {
            if !holds {
                return a;
            }
            let since = prior.as_ref().map_or(now, |h| h.held_at);
            a.details["hold"] = serde_json::json!({
                "held_since": since.to_rfc3339(),
                "failures": failures,
                "lift": format!(
                    "rotationd resume --secret {} --ticket <INC-ticket> --reason \"<what was found>\"",
                    attempt.secret
                ),
            });
            if failures > 1 {
                // A departure's or a compromise's rotation of a held secret failed too:
                // the deadline, not the next window, is what is at risk now.
                let deadline = a.deadline.map_or(String::new(), |d| {
                    format!(
                        "; its deadline {} is at risk",
                        d.format(crate::clock::TIME_FORMAT)
                    )
                });
                a.error = Some(format!(
                    "{}; the secret has been held since {} and has now failed {failures} times (this {} rotation{deadline})",
                    a.error.as_deref().unwrap_or("failed"),
                    since.format(crate::clock::TIME_FORMAT),
                    attempt.trigger_kind.as_str(),
                ));
            }
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
                Some(with_hold(a))
            }
            Outcome::Stuck(_) => Some(with_hold(alert(AlertKind::RotationStuck))),
            Outcome::Skipped(_) | Outcome::Observed { .. } => None,
        };
        // The completion notice also goes to each dependent's own topic.
        let plan = crate::validation::plan_of(&attempt);
        let vendor = plan.as_ref().and_then(|p| p.vendor.clone());
        let dependents = plan.map(|p| p.dependents).unwrap_or_default();
        let mut alerts: Vec<Alert> = Vec::new();
        if let Some(mut a) = alert {
            if matches!(outcome, Outcome::Succeeded { .. }) {
                a.details["dependents"] = serde_json::json!(dependents);
                alerts.extend(a.with_copies(&self.cfg, &dependents, vendor.as_deref()));
            } else {
                alerts.push(a);
            }
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
        let hold_change = match outcome {
            Outcome::Failed(e) | Outcome::Stuck(e) => Some(HoldChange::Place(format!(
                "{} {}: {e}",
                attempt.trigger_kind.as_str(),
                if matches!(outcome, Outcome::Stuck(_)) {
                    "rotation stuck"
                } else {
                    "rotation failed"
                },
            ))),
            Outcome::Succeeded { .. } => Some(HoldChange::Lift),
            Outcome::Skipped(_) | Outcome::Observed { .. } => None,
        };
        let (aid, secret, actor) = (
            attempt.id.clone(),
            attempt.secret.clone(),
            audit.actor.clone(),
        );
        let (skipped, own) = (matches!(outcome, Outcome::Skipped(_)), attempt.trigger_id);
        let queued = self
            .store
            .call(move |s| {
                s.transaction(|db| {
                    if skipped {
                        // What only a rotation satisfies was not satisfied: it runs on.
                        db.release_unplanned_triggers_of_attempt(&aid, own, now)?;
                    }
                    db.finish_triggers_of_attempt(&aid, status, now)?;
                    db.append_audit(&audit)?;
                    match &hold_change {
                        Some(HoldChange::Place(reason)) => {
                            db.hold_audited(&secret, &aid, reason, now)?;
                        }
                        Some(HoldChange::Lift) => {
                            db.lift_hold_audited(
                                &secret,
                                &actor,
                                None,
                                &format!("rotation succeeded (attempt {aid})"),
                                now,
                            )?;
                        }
                        None => {}
                    }
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
            Outcome::Observed { .. } => {}
        }
        Ok(())
    }

    /// The end of an observed attempt, in one transaction: its triggers back to pending,
    /// marked observed ([`crate::store::Db::release_observed_triggers`]), and the `rotate`
    /// audit entry with outcome `observed` and the verdict. No alert (the daily
    /// `observe_summary` reports it), no hold (nothing was tried), no rotation counted.
    async fn finish_observed(
        &self,
        attempt: &Attempt,
        trigger: Option<&crate::store::Trigger>,
        verdict: crate::store::Verdict,
        reason: &str,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let aid = attempt.id.clone();
        let why = (!reason.is_empty()).then(|| reason.to_string());
        let audit = NewAuditEntry {
            at: now,
            actor: trigger.map_or("rotationd".to_string(), |t| t.actor.clone()),
            action: audit::Action::Rotate,
            secret: Some(attempt.secret.clone()),
            ticket: attempt.ticket.clone(),
            reason: trigger.map(|t| t.reason.clone()),
            outcome: audit::Outcome::Attempt(AttemptState::Observed),
            detail: None,
        };
        let (released, cancelled) = self
            .store
            .call(move |s| {
                s.transaction(|db| {
                    let (released, cancelled) = db.release_observed_triggers(&aid, now)?;
                    let mut audit = audit.clone();
                    audit.detail = Some(serde_json::json!({
                        "attempt": aid,
                        "mode": "observe",
                        "verdict": verdict.as_str(),
                        "why": why,
                        "released_triggers": released,
                        "cancelled_triggers": cancelled,
                    }));
                    db.append_audit(&audit)?;
                    Ok((released.len(), cancelled.len()))
                })
            })
            .await?;
        let label = trigger_label(attempt.trigger_kind);
        self.metrics
            .observed_rotations_total
            .with_label_values(&[label, verdict.as_str()])
            .inc();
        tracing::info!(secret = %attempt.secret, attempt = %attempt.id, verdict = verdict.as_str(),
            reason = %reason, released, cancelled, "observe mode: rotation observed, nothing sent");
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

/// What an attempt's end does to its secret's hold.
enum HoldChange {
    /// Failed or stuck: held (again), with this reason.
    Place(String),
    /// Succeeded: whatever hold there was is lifted.
    Lift,
}
