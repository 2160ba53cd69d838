//! Post-rotation validation: watching a rotated secret's dependents in CloudWatch.
//!
//! The Secrets Rotation Guide's post-rotation checklist asks to monitor dependent services for 401/403 and
//! connection errors for 15 minutes and to escalate when they cannot authenticate. Here:
//!
//! 1. **Plan and baseline** (engine preflight, before RotateSecret): the secret's
//!    `dependents` are resolved into a [`WatchPlan`]: the alarms and metrics of every
//!    `[[dependent]]`, with their state/value over the `validation_period` before the
//!    rotation. The plan is stored on the attempt, so the watch needs neither the config
//!    nor AWS's answer again: a reload or a restart cannot change what is judged.
//!    A CloudWatch error while taking the baseline does not hold the rotation back (a
//!    departure's 24-hour SLA does not wait for monitoring); the plan records the error
//!    and the watch judges against the thresholds alone.
//! 2. **Watch** ([`Watcher`], a daemon loop): when the attempt succeeds its `validation`
//!    becomes `watching` until `finished_at + validation_period`. Every
//!    `validation_interval` the watcher reads all watched alarms with one `DescribeAlarms`
//!    per 100 names, and each watched attempt's metrics with one `GetMetricData`.
//! 3. **Judge** ([`judge`], pure): a dependent is unhealthy when one of its alarms is in
//!    ALARM and was not before the rotation (or changed state after it), or when one of
//!    its metrics exceeds its threshold *and* its pre-rotation baseline after the
//!    rotation. The first unhealthy poll ends the watch as `validated_unhealthy` and
//!    escalates `dependents_unhealthy` (P1, Security) with the evidence and the rollback
//!    command; a watch that reaches its end with every poll healthy is `validated`.
//!    A poll that fails (CloudWatch down, throttled) decides nothing: the watch goes on
//!    past its end until a poll succeeds, because "no answer" is not "healthy".
//! 4. **Rollback** is not automatic: the guide reserves it to L3, so the alert names
//!    `rotationd rollback --secret ... --ticket ...`. A secret with `auto_rollback = true`
//!    moves to `rolling_back` in the same transaction as the alert, and the watcher then
//!    moves AWSCURRENT back to the previous version ([`crate::rollback`]: verified and
//!    audited). It only does so while AWSCURRENT is still the version this attempt created
//!    and AWSPREVIOUS the one it replaced.
//!
//! Every state change of the watch commits together with its audit entry and alert.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertKind, Alerts, Prepared};
use crate::aws::AwsError;
use crate::aws::Place;
use crate::aws::cloudwatch::{AlarmState, CloudWatch, MetricQuery};
use crate::aws::secrets::SecretsManager;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
mod judge;
mod logs;

pub use judge::{Finding, judge};
pub use logs::PlannedLogs;

use crate::rollback::{
    Expected, Refusal, Requester, RollbackError, RollbackPlan, audit_entry, plan_rollback,
};
use crate::store::audit::{Action, Outcome};
use crate::store::{Attempt, NewAuditEntry, StoreError, StoreHandle, Validation};
use crate::ticket::INC_PENDING;

/// What to watch after one rotation, and how it looked before. Stored as JSON on the
/// attempt (`watch_plan`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchPlan {
    /// Every dependent of the secret, watched or only notified.
    pub dependents: Vec<String>,
    pub alarms: Vec<PlannedAlarm>,
    pub metrics: Vec<PlannedMetric>,
    /// Application log groups read for authentication errors (absent from plans stored
    /// before `log_groups` existed).
    #[serde(default)]
    pub logs: Vec<PlannedLogs>,
    pub auto_rollback: bool,
    /// When the baseline was read.
    pub baseline_at: Option<DateTime<Utc>>,
    /// Why no baseline could be read (the watch then judges on thresholds alone).
    pub baseline_error: Option<String>,
    /// The secret's `[[vendor]]`, whose contact topic gets a copy of the completion notice
    /// (absent from plans stored before vendors existed).
    #[serde(default)]
    pub vendor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAlarm {
    pub dependent: String,
    pub name: String,
    /// The alarm's state before the rotation.
    pub baseline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMetric {
    pub dependent: String,
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
    pub statistic: String,
    pub period_seconds: i32,
    pub threshold: f64,
    /// The highest value over the `validation_period` before the rotation.
    pub baseline: Option<f64>,
}

impl PlannedMetric {
    fn query(&self) -> MetricQuery {
        MetricQuery {
            namespace: self.namespace.clone(),
            metric_name: self.metric_name.clone(),
            dimensions: self.dimensions.clone(),
            statistic: self.statistic.clone(),
            period_seconds: self.period_seconds,
        }
    }
}

impl WatchPlan {
    /// The plan for a secret with these `dependents`; `None` when it has none. Names not
    /// declared (config validation rejects them) are kept as notify-only.
    pub fn for_dependents(
        cfg: &Config,
        dependents: &[String],
        auto_rollback: bool,
    ) -> Option<Self> {
        if dependents.is_empty() {
            return None;
        }
        let mut plan = WatchPlan {
            dependents: dependents.to_vec(),
            auto_rollback,
            ..WatchPlan::default()
        };
        for name in dependents {
            let Some(d) = cfg.dependent(name) else {
                continue;
            };
            for alarm in &d.alarms {
                plan.alarms.push(PlannedAlarm {
                    dependent: d.name.clone(),
                    name: alarm.clone(),
                    baseline: None,
                });
            }
            for m in &d.metrics {
                plan.metrics.push(PlannedMetric {
                    dependent: d.name.clone(),
                    namespace: m.namespace.clone(),
                    metric_name: m.metric_name.clone(),
                    dimensions: m.dimensions.clone(),
                    statistic: m.statistic.as_str().to_string(),
                    period_seconds: i32::try_from(m.period.as_secs()).unwrap_or(60),
                    threshold: m.threshold,
                    baseline: None,
                });
            }
            for group in d
                .logs
                .iter()
                .flat_map(|l| l.groups.iter().map(move |g| (l, g)))
            {
                let (l, group) = group;
                plan.logs.push(PlannedLogs {
                    dependent: d.name.clone(),
                    log_group: group.clone(),
                    pattern: l.pattern.as_str().to_string(),
                    max_auth_errors: l.max_auth_errors,
                    baseline: None,
                });
            }
        }
        Some(plan)
    }

    /// Whether there is anything to read in CloudWatch or CloudWatch Logs.
    pub fn is_watched(&self) -> bool {
        !self.alarms.is_empty() || !self.metrics.is_empty() || !self.logs.is_empty()
    }

    fn alarm_names(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.alarms.iter().map(|a| &a.name).collect();
        set.into_iter().cloned().collect()
    }

    fn queries(&self) -> Vec<MetricQuery> {
        self.metrics.iter().map(PlannedMetric::query).collect()
    }

    /// Reads the baseline: alarm states now, and each metric's highest value over the
    /// `period` before `now`. A failure is recorded in the plan, not returned.
    pub async fn take_baseline(&mut self, cw: &CloudWatch, now: DateTime<Utc>, period: Duration) {
        if !self.is_watched() {
            return;
        }
        self.baseline_at = Some(now);
        let start =
            now - chrono::Duration::from_std(period).unwrap_or(chrono::Duration::minutes(15));
        let alarms = cw.alarm_states(&self.alarm_names()).await;
        let maxima = if self.metrics.is_empty() {
            Ok(Vec::new())
        } else {
            cw.maxima(&self.queries(), start, now).await
        };
        match (alarms, maxima) {
            (Ok(alarms), Ok(maxima)) => {
                let states: HashMap<&str, &str> = alarms
                    .iter()
                    .map(|a| (a.name.as_str(), a.state.as_str()))
                    .collect();
                for a in &mut self.alarms {
                    a.baseline = states.get(a.name.as_str()).map(|s| s.to_string());
                }
                for (m, v) in self.metrics.iter_mut().zip(maxima) {
                    m.baseline = v;
                }
            }
            (Err(e), _) | (_, Err(e)) => self.baseline_error = Some(e.to_string()),
        }
        if self.logs.is_empty() {
            return;
        }
        match logs::count(cw, self, start, now, true).await {
            Ok(counts) => {
                for (l, c) in self.logs.iter_mut().zip(counts) {
                    l.baseline = Some(c.matches);
                }
            }
            Err(e) => {
                let e = format!("application logs: {e}");
                self.baseline_error = Some(match self.baseline_error.take() {
                    Some(before) => format!("{before}; {e}"),
                    None => e,
                });
            }
        }
    }
}

/// The CLI command that rolls a rotation back, for the alert and the status output.
pub fn rollback_command(attempt: &Attempt) -> String {
    format!(
        "rotationd rollback --secret {} --ticket {} --reason \"dependents failing after rotation {}\"",
        attempt.secret,
        attempt.ticket.as_deref().unwrap_or("<INC>"),
        attempt.id
    )
}

/// The daemon's watch loop over every attempt whose dependents are watched.
pub struct Watcher {
    pub cfg: Arc<Config>,
    pub store: StoreHandle,
    pub alerts: Alerts,
    pub metrics: Arc<Metrics>,
    pub cw: CloudWatch,
    pub sm: SecretsManager,
    pub clock: Clock,
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub watching: usize,
    pub validated: usize,
    pub unhealthy: usize,
    pub rolled_back: usize,
    /// Attempts whose poll failed and is retried next time.
    pub errors: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Aws(#[from] AwsError),
}

impl Watcher {
    /// Polls every `[policy] validation_interval` until cancelled. It does not feed the
    /// systemd watchdog: its interval (a minute by default) can be longer than the
    /// watchdog's, and a slow CloudWatch must not restart the daemon.
    pub async fn run(self, cancel: CancellationToken) {
        let interval = self.cfg.policy.validation_interval;
        loop {
            match self.poll().await {
                Ok(r) if r.errors > 0 => {
                    tracing::warn!(
                        errors = r.errors,
                        "some dependents could not be checked; retrying at the next poll"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the watched rotations; retrying"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One pass over the watched attempts.
    pub async fn poll(&self) -> Result<PollReport, StoreError> {
        let attempts = self.store.call(|s| s.db().watched_attempts()).await?;
        let mut report = PollReport::default();
        let watching: Vec<(Attempt, WatchPlan)> = attempts
            .iter()
            .filter(|a| a.validation == Some(Validation::Watching))
            .filter_map(|a| Some((a.clone(), plan_of(a)?)))
            .collect();
        report.watching = watching.len();
        // The CloudWatch of each watched secret's account-region, and one DescribeAlarms
        // per 100 names across every watch in it.
        let mut names: BTreeMap<Place, (CloudWatch, BTreeSet<String>)> = BTreeMap::new();
        let mut routes: Vec<Result<(Place, CloudWatch), AwsError>> = Vec::new();
        for (attempt, plan) in &watching {
            let route = self
                .cw
                .for_secret(attempt.secret_arn.as_deref().unwrap_or(&attempt.secret))
                .map(|cw| (cw.place(), cw));
            if let Ok((place, cw)) = &route {
                names
                    .entry(place.clone())
                    .or_insert_with(|| (cw.clone(), BTreeSet::new()))
                    .1
                    .extend(plan.alarms.iter().map(|a| a.name.clone()));
            }
            routes.push(route);
        }
        let mut alarms_by_place: BTreeMap<Place, Result<Vec<AlarmState>, AwsError>> =
            BTreeMap::new();
        for (place, (cw, names)) in names {
            let names: Vec<String> = names.into_iter().collect();
            let states = if names.is_empty() {
                Ok(Vec::new())
            } else {
                cw.alarm_states(&names).await
            };
            alarms_by_place.insert(place, states);
        }
        let now = self.clock.now();
        for ((attempt, plan), route) in watching.iter().zip(routes) {
            let (cw, alarms) = match route {
                Ok((place, cw)) => (cw, alarms_by_place.get(&place)),
                Err(e) => {
                    tracing::warn!(secret = %attempt.secret, attempt = %attempt.id, error = %e, "cannot read the dependents' alarms");
                    report.errors += 1;
                    continue;
                }
            };
            let alarms = match alarms {
                Some(Ok(a)) => a,
                None => {
                    report.errors += 1;
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(secret = %attempt.secret, attempt = %attempt.id, error = %e, "cannot read the dependents' alarms");
                    report.errors += 1;
                    continue;
                }
            };
            let since = attempt.finished_at.unwrap_or(now);
            let maxima = if plan.metrics.is_empty() {
                Vec::new()
            } else {
                // EndTime one period ahead: CloudWatch needs End > Start, and a datapoint
                // written this second is then inside the window.
                let end = now.max(since) + chrono::Duration::seconds(60);
                match cw.maxima(&plan.queries(), since, end).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(secret = %attempt.secret, attempt = %attempt.id, error = %e, "cannot read the dependents' metrics");
                        report.errors += 1;
                        continue;
                    }
                }
            };
            // The logs are counted from the baseline's time, just before RotateSecret.
            let mut findings = judge(plan, alarms, &maxima, since);
            if !plan.logs.is_empty() {
                let from = plan.baseline_at.unwrap_or(attempt.started_at);
                match logs::count(&cw, plan, from, now.max(from), false).await {
                    Ok(counts) => findings.extend(logs::judge_logs(plan, &counts, from)),
                    Err(e) => {
                        tracing::warn!(secret = %attempt.secret, attempt = %attempt.id, error = %e, "cannot read the dependents' application logs");
                        report.errors += 1;
                        continue;
                    }
                }
            }
            if !findings.is_empty() {
                self.unhealthy(attempt, plan, findings, now).await?;
                report.unhealthy += 1;
            } else if attempt.watch_until.is_none_or(|u| now >= u) {
                self.validated(attempt, plan, now).await?;
                report.validated += 1;
            }
        }
        for attempt in attempts
            .iter()
            .filter(|a| a.validation == Some(Validation::RollingBack))
        {
            match self.roll_back(attempt).await {
                Ok(()) => report.rolled_back += 1,
                Err(WatchError::Store(e)) => return Err(e),
                Err(WatchError::Aws(e)) => {
                    tracing::warn!(secret = %attempt.secret, attempt = %attempt.id, error = %e, "automatic rollback failed; retrying at the next poll");
                    report.errors += 1;
                }
            }
        }
        let in_flight = self.store.call(|s| s.db().watched_attempts()).await?.len();
        self.metrics
            .validations_in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        Ok(report)
    }

    /// Moves the watch of `attempt_id` from `from` to `to` with its evidence, audit entry
    /// and (optionally) alert in one transaction. False when the watch had already moved.
    #[allow(clippy::too_many_arguments)]
    async fn move_watch(
        &self,
        attempt_id: &str,
        from: Validation,
        to: Validation,
        evidence: &serde_json::Value,
        audit: NewAuditEntry,
        alerts: Vec<Prepared>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = attempt_id.to_string();
        let ev = evidence.to_string();
        self.store
            .call(move |s| {
                s.transaction(|db| {
                    let moved = db.update_validation(&id, &[from], to, Some(&ev), now)?;
                    if moved {
                        db.append_audit(&audit)?;
                        for p in &alerts {
                            db.enqueue_alert_deduped(&p.alert, p.at, p.realert)?;
                        }
                    }
                    Ok::<_, StoreError>(moved)
                })
            })
            .await
    }

    async fn validated(
        &self,
        attempt: &Attempt,
        plan: &WatchPlan,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let evidence = serde_json::json!({
            "outcome": "validated",
            "checked_at": now.to_rfc3339(),
            "alarms": plan.alarms.len(),
            "metrics": plan.metrics.len(),
        });
        let audit = validate_audit(
            attempt,
            Validation::Validated,
            format!("post-rotation watch of {}", plan.dependents.join(", ")),
            &evidence,
            now,
        );
        let moved = self
            .move_watch(
                &attempt.id,
                Validation::Watching,
                Validation::Validated,
                &evidence,
                audit,
                Vec::new(),
                now,
            )
            .await?;
        if moved {
            self.metrics
                .validations_total
                .with_label_values(&[Validation::Validated.as_str()])
                .inc();
            tracing::info!(secret = %attempt.secret, attempt = %attempt.id, "dependents healthy after the rotation: validated");
        }
        Ok(())
    }

    async fn unhealthy(
        &self,
        attempt: &Attempt,
        plan: &WatchPlan,
        findings: Vec<Finding>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let failing: BTreeSet<&str> = findings.iter().map(|f| f.dependent.as_str()).collect();
        let rollback = rollback_command(attempt);
        let evidence = serde_json::json!({
            "outcome": Validation::ValidatedUnhealthy.as_str(),
            "checked_at": now.to_rfc3339(),
            "findings": findings,
            "baseline_at": plan.baseline_at.map(|t| t.to_rfc3339()),
            "baseline_error": plan.baseline_error,
            "rollback": {
                "automatic": plan.auto_rollback,
                "command": rollback,
                "to_version": attempt.previous_version,
            },
        });
        let mut alert = Alert::new(AlertKind::DependentsUnhealthy, Some(&attempt.secret), now);
        alert.secret_arn = attempt.secret_arn.clone();
        alert.trigger = Some(attempt.trigger_kind.as_str().into());
        alert.ticket = Some(attempt.ticket.clone().unwrap_or_else(|| INC_PENDING.into()));
        alert.reason = Some(format!(
            "{} failing after the rotation: {}",
            failing.iter().copied().collect::<Vec<_>>().join(", "),
            findings
                .iter()
                .map(|f| f.detail.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
        alert.details = serde_json::json!({
            "attempt": attempt.id,
            "dependents": plan.dependents,
            "failing_dependents": failing,
            "evidence": findings,
            "new_version": attempt.new_version,
            "previous_version": attempt.previous_version,
            "watch": {
                "from": attempt.finished_at.map(|t| t.to_rfc3339()),
                "until": attempt.watch_until.map(|t| t.to_rfc3339()),
            },
            "rollback": if plan.auto_rollback {
                format!("automatic (auto_rollback = true): AWSCURRENT goes back to {}", attempt.previous_version.as_deref().unwrap_or("the previous version"))
            } else {
                format!("not automatic (L3 decision): {rollback}")
            },
        });
        alert.dedupe_key = format!("dependents_unhealthy:{}:{}", attempt.secret, attempt.id);
        let prepared = self.alerts.prepare(&alert);
        let to = if plan.auto_rollback {
            Validation::RollingBack
        } else {
            Validation::ValidatedUnhealthy
        };
        let audit = validate_audit(
            attempt,
            Validation::ValidatedUnhealthy,
            alert.reason.clone().unwrap_or_default(),
            &evidence,
            now,
        );
        let moved = self
            .move_watch(
                &attempt.id,
                Validation::Watching,
                to,
                &evidence,
                audit,
                prepared.into_iter().collect(),
                now,
            )
            .await?;
        if moved {
            self.alerts.queued(&alert);
            self.metrics
                .validations_total
                .with_label_values(&[Validation::ValidatedUnhealthy.as_str()])
                .inc();
            tracing::error!(secret = %attempt.secret, attempt = %attempt.id,
                dependents = %failing.iter().copied().collect::<Vec<_>>().join(","),
                "dependents failing after the rotation; escalated to Security");
        }
        Ok(())
    }

    /// `auto_rollback = true`: AWSCURRENT back to the version before this attempt, only
    /// while AWSCURRENT is still the version the attempt created and AWSPREVIOUS the one
    /// it replaced.
    async fn roll_back(&self, attempt: &Attempt) -> Result<(), WatchError> {
        let id = attempt
            .secret_arn
            .clone()
            .unwrap_or_else(|| attempt.secret.clone());
        let info = self.sm.describe(&id).await?;
        let by = Requester {
            actor: "rotationd".into(),
            secret: attempt.secret.clone(),
            ticket: attempt.ticket.clone(),
            reason: Some("auto_rollback = true: dependents failing after the rotation".into()),
        };
        let mut notices = Vec::new();
        let expected = match (&attempt.new_version, &attempt.previous_version) {
            (Some(new), Some(prev)) => Some(Expected {
                rotated_to: new,
                rotated_from: prev,
            }),
            _ => None,
        };
        let plan = match expected {
            Some(x) => plan_rollback(&info, Some(x)),
            // Without both versions this rotation cannot be told from another one.
            None => Err(Refusal::NotThisRotation {
                current: info.current_version().map(str::to_string),
            }),
        };
        // An AWS error leaves the watch `rolling_back`: the next poll plans again, and
        // finds the rollback done if only its answer was lost.
        let (outcome, detail, verified) = match plan {
            Ok(RollbackPlan::AlreadyDone { version }) => (
                Outcome::Ok,
                format!("AWSCURRENT is already {version}"),
                None,
            ),
            Ok(RollbackPlan::Move { from, to }) if self.sm.is_observing() => (
                Outcome::Skipped,
                format!(
                    "observe mode: would move AWSCURRENT from {from} back to {to}; UpdateSecretVersionStage not sent"
                ),
                None,
            ),
            Ok(RollbackPlan::Move { from, to }) => {
                // Never forced: a version that a compromise or departure retired stays
                // retired, whatever the dependents say.
                let retired = crate::rollback::retirement(&self.store, &info, &attempt.secret, &to)
                    .await
                    .map_err(WatchError::Store)?;
                match crate::rollback::allow(retired, false) {
                    Err(refusal) => (Outcome::Refused, refusal.to_string(), None),
                    Ok(_) => match crate::rollback::execute(&self.sm, &id, &from, &to).await {
                        Ok(v) if v.ok => {
                            notices = crate::rollback::completed_notices(
                                &self.cfg,
                                &info,
                                &attempt.secret,
                                &from,
                                &to,
                                &by,
                                None,
                                self.clock.now(),
                            );
                            (
                                Outcome::Ok,
                                format!("AWSCURRENT moved from {from} back to {to}"),
                                Some(true),
                            )
                        }
                        Ok(v) => (Outcome::Failed, v.mismatch(), Some(false)),
                        Err(RollbackError::Move(e) | RollbackError::Verify(e)) => {
                            return Err(WatchError::Aws(e));
                        }
                    },
                }
            }
            Err(refusal) => (Outcome::Skipped, refusal.to_string(), None),
        };
        let now = self.clock.now();
        let mut audit_detail = serde_json::json!({
            "attempt": attempt.id,
            "automatic": true,
            "from": attempt.new_version,
            "to": attempt.previous_version,
            "result": detail,
        });
        if let Some(v) = verified {
            audit_detail["verified"] = serde_json::json!(v);
        }
        let audit = audit_entry(&by, now, outcome.clone(), audit_detail);
        let mut evidence: serde_json::Value = attempt
            .watch_evidence
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        evidence["rollback"]["result"] = serde_json::json!(detail);
        evidence["rollback"]["outcome"] = serde_json::json!(outcome.as_str());
        let prepared: Vec<Prepared> = notices
            .iter()
            .filter_map(|a| self.alerts.prepare(a))
            .collect();
        let moved = self
            .move_watch(
                &attempt.id,
                Validation::RollingBack,
                Validation::ValidatedUnhealthy,
                &evidence,
                audit,
                prepared,
                now,
            )
            .await?;
        if moved && !notices.is_empty() {
            self.alerts.wake_publisher();
        }
        tracing::warn!(secret = %attempt.secret, attempt = %attempt.id, result = %detail, "automatic rollback");
        Ok(())
    }
}

/// The audit entry of a watch's end.
fn validate_audit(
    attempt: &Attempt,
    outcome: Validation,
    reason: String,
    evidence: &serde_json::Value,
    now: DateTime<Utc>,
) -> NewAuditEntry {
    NewAuditEntry {
        at: now,
        actor: "rotationd".into(),
        action: Action::Validate,
        secret: Some(attempt.secret.clone()),
        ticket: attempt.ticket.clone(),
        reason: Some(reason),
        outcome: Outcome::Validation(outcome),
        detail: Some(serde_json::json!({ "attempt": attempt.id, "evidence": evidence })),
    }
}

/// The plan stored on an attempt.
pub fn plan_of(attempt: &Attempt) -> Option<WatchPlan> {
    serde_json::from_str(attempt.watch_plan.as_deref()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 3, min, 0).unwrap()
    }

    fn plan() -> WatchPlan {
        WatchPlan {
            dependents: vec!["api".into(), "worker".into()],
            alarms: vec![
                PlannedAlarm {
                    dependent: "api".into(),
                    name: "api-5xx".into(),
                    baseline: Some("OK".into()),
                },
                PlannedAlarm {
                    dependent: "worker".into(),
                    name: "worker-auth".into(),
                    baseline: Some("ALARM".into()),
                },
            ],
            metrics: vec![PlannedMetric {
                dependent: "api".into(),
                namespace: "App".into(),
                metric_name: "AuthErrors".into(),
                dimensions: BTreeMap::from([("Service".into(), "api".into())]),
                statistic: "Sum".into(),
                period_seconds: 60,
                threshold: 5.0,
                baseline: Some(2.0),
            }],
            logs: Vec::new(),
            auto_rollback: false,
            baseline_at: Some(at(0)),
            baseline_error: None,
            vendor: None,
        }
    }

    fn alarm(name: &str, state: &str, updated: DateTime<Utc>) -> AlarmState {
        AlarmState {
            name: name.into(),
            state: state.into(),
            updated: Some(updated),
            reason: Some("Threshold Crossed".into()),
        }
    }

    #[test]
    fn healthy_when_alarms_ok_and_metrics_under_threshold() {
        let f = judge(
            &plan(),
            &[
                alarm("api-5xx", "OK", at(1)),
                alarm("worker-auth", "ALARM", at(0)),
            ],
            &[Some(5.0)],
            at(1),
        );
        assert_eq!(
            f,
            vec![],
            "a metric equal to the threshold is not over it, and an alarm already firing before is old news"
        );
    }

    #[test]
    fn an_alarm_that_goes_to_alarm_after_the_rotation_is_a_finding() {
        let f = judge(&plan(), &[alarm("api-5xx", "ALARM", at(2))], &[None], at(1));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].dependent, "api");
        assert_eq!(f[0].source, "alarm");
        assert!(
            f[0].detail.contains("it was not before the rotation"),
            "{}",
            f[0].detail
        );
    }

    #[test]
    fn an_alarm_already_firing_counts_again_when_it_changed_after_the_rotation() {
        assert_eq!(
            judge(
                &plan(),
                &[alarm("worker-auth", "ALARM", at(0))],
                &[None],
                at(1)
            )
            .len(),
            0
        );
        let f = judge(
            &plan(),
            &[alarm("worker-auth", "ALARM", at(3))],
            &[None],
            at(1),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].dependent, "worker");
    }

    #[test]
    fn a_metric_over_threshold_and_baseline_is_a_finding() {
        let f = judge(&plan(), &[], &[Some(9.0)], at(1));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "App/AuthErrors");
        assert!(f[0].detail.contains("reached 9"), "{}", f[0].detail);
        assert!(f[0].detail.contains("[Service=api]"), "{}", f[0].detail);
    }

    #[test]
    fn a_metric_no_worse_than_before_the_rotation_is_not_blamed_on_it() {
        let mut p = plan();
        p.metrics[0].baseline = Some(20.0);
        assert_eq!(judge(&p, &[], &[Some(9.0)], at(1)), vec![]);
        assert_eq!(judge(&p, &[], &[Some(21.0)], at(1)).len(), 1);
        p.metrics[0].baseline = None;
        assert_eq!(
            judge(&p, &[], &[Some(9.0)], at(1)).len(),
            1,
            "no baseline: the threshold alone decides"
        );
    }

    #[test]
    fn no_datapoints_and_unknown_alarms_decide_nothing() {
        assert_eq!(
            judge(
                &plan(),
                &[alarm("someone-else", "ALARM", at(5))],
                &[None],
                at(1)
            ),
            vec![]
        );
    }

    #[test]
    fn the_plan_round_trips_through_the_store_as_json() {
        let p = plan();
        let json = serde_json::to_string(&p).unwrap();
        let back: WatchPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert!(p.is_watched());
        assert!(
            !WatchPlan {
                dependents: vec!["x".into()],
                ..WatchPlan::default()
            }
            .is_watched()
        );
    }
}
