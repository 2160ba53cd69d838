//! The request loop: the I/O side of the approval policy. It expires requests, reminds
//! Security of an emergency still awaiting approval, carries out approved rollbacks, closes
//! requests when their attempt ends, and puts the answers of the bus outbox on the bus.
//! The decisions themselves are [`super::decide`]'s. In observe mode an approved
//! rollback is refused (it would be wrong days later) and an approved rotation waits,
//! pending, for enforce mode like every other trigger.

use super::*;

/// How long the request loop sleeps when nothing it knows of falls due. This process wakes
/// it (`RequestLoop::wake`: a request accepted, a trigger committed, an attempt ended); what
/// another process commits (a CLI command's attempt ending) is seen at most this late.
pub const REQUESTS_SAFETY_POLL: Duration = Duration::from_secs(15);
/// After a failed pass, or a rollback AWS did not answer, the next try.
const REQUESTS_RETRY: Duration = Duration::from_secs(2);

/// The request loop: expiry, emergency reminders, rollbacks, attempt outcomes, and the bus
/// outbox. It sleeps until `wake` is notified or its next due time (an expiry, a reminder,
/// a bus retry), at most [`REQUESTS_SAFETY_POLL`]: it does not tick.
pub struct RequestLoop {
    pub cfg: Arc<Config>,
    pub store: StoreHandle,
    pub alerts: Alerts,
    pub sm: SecretsManager,
    pub eventbridge: EventBridge,
    pub clock: Clock,
    pub wake: Arc<tokio::sync::Notify>,
}

/// Why a rollback request did not reach a verdict.
#[derive(Debug)]
enum RollbackFailure {
    Aws(AwsError),
    Store(StoreError),
}

impl From<AwsError> for RollbackFailure {
    fn from(e: AwsError) -> Self {
        RollbackFailure::Aws(e)
    }
}

impl From<StoreError> for RollbackFailure {
    fn from(e: StoreError) -> Self {
        RollbackFailure::Store(e)
    }
}

/// The sooner of two waits.
fn sooner(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The wait from `now` until `at` (zero when past), on one clock.
fn wait_until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

impl RequestLoop {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let wait = match self.pass_due().await {
                Ok(next) => next.map_or(REQUESTS_SAFETY_POLL, |n| n.min(REQUESTS_SAFETY_POLL)),
                Err(e) => {
                    tracing::warn!(error = %e, "request loop pass failed; retrying");
                    REQUESTS_RETRY
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass; public for tests.
    pub async fn pass(&self) -> Result<(), StoreError> {
        self.pass_due().await.map(|_| ())
    }

    /// One pass; returns how soon the next known work falls due.
    async fn pass_due(&self) -> Result<Option<Duration>, StoreError> {
        let Some(rc) = self.cfg.requests.clone() else {
            return Ok(None);
        };
        let now = self.clock.now();
        let mut next: Option<Duration> = None;
        for r in self.store.call(|s| s.db().awaiting_requests()).await? {
            if let Some(e) = r.expires_at.filter(|e| now < *e) {
                next = sooner(next, wait_until(now, e));
            }
            if r.expires_at.is_some_and(|e| now >= e) {
                let timeout = if r.emergency {
                    rc.emergency_approval_timeout
                } else {
                    rc.approval_timeout
                };
                let why = format!(
                    "no L3 approval within {}: closed",
                    crate::config::fmt_duration(timeout)
                );
                self.close(
                    &r,
                    RequestState::AwaitingApproval,
                    RequestState::Expired,
                    &why,
                    Outcome::RequestState(RequestState::Expired),
                    now,
                )
                .await?;
            } else if r.emergency && r.reminded_at.is_none() {
                let half = chrono::Duration::from_std(rc.emergency_approval_timeout / 2)
                    .unwrap_or(chrono::Duration::minutes(30));
                if now < r.created_at + half {
                    next = sooner(next, wait_until(now, r.created_at + half));
                } else {
                    let mut a = Alert::new(AlertKind::ApprovalOverdue, Some(&r.secret), now);
                    a.ticket = r.ticket.clone();
                    a.reason = Some(r.reason.clone());
                    a.deadline = r.expires_at;
                    a.details = serde_json::json!({
                        "request_id": r.id, "requester": r.requester, "level": r.level,
                    });
                    a.dedupe_key = format!("approval_overdue:{}", r.id);
                    self.alerts.raise_once(a).await?;
                    let id = r.id.clone();
                    self.store
                        .call(move |s| s.db().mark_request_reminded(&id, now))
                        .await?;
                }
            }
        }
        for r in self.store.call(|s| s.db().executing_rollbacks()).await? {
            match self.roll_back(&r).await {
                Ok((state, why)) => {
                    self.close(
                        &r,
                        RequestState::Executing,
                        state,
                        &why,
                        Outcome::RequestState(state),
                        now,
                    )
                    .await?
                }
                Err(RollbackFailure::Store(e)) => return Err(e),
                Err(RollbackFailure::Aws(e)) if e.retryable => {
                    tracing::warn!(request = %r.id, error = %e, "rollback request: AWS did not answer; retrying");
                    next = sooner(next, REQUESTS_RETRY);
                }
                Err(RollbackFailure::Aws(e)) => {
                    let why = format!("rollback failed: {e}");
                    self.close(
                        &r,
                        RequestState::Executing,
                        RequestState::Failed,
                        &why,
                        Outcome::RequestState(RequestState::Failed),
                        now,
                    )
                    .await?
                }
            }
        }
        for (r, status) in self
            .store
            .call(|s| s.db().requests_with_finished_triggers())
            .await?
        {
            let (attempt, state) = self.outcome(&r).await?;
            let why = match (&attempt, status.as_str()) {
                (Some(a), _) if state == RequestState::Completed => format!(
                    "rotated: AWSCURRENT is {}",
                    a["new_version"].as_str().unwrap_or("the new version")
                ),
                (Some(a), _) => format!(
                    "rotation {}: {}",
                    a["state"].as_str().unwrap_or("failed"),
                    a["error"].as_str().unwrap_or("see the audit log")
                ),
                (None, s) => format!("the rotation trigger ended `{s}` without an attempt"),
            };
            let mut detail = update_detail(&r, state, &why);
            detail["attempt"] = attempt.unwrap_or(serde_json::Value::Null);
            self.close_with(
                &r,
                RequestState::Executing,
                state,
                &why,
                Outcome::RequestState(state),
                detail,
                now,
            )
            .await?;
        }
        Ok(match self.publish().await? {
            Some(retry) => sooner(next, retry),
            None => next,
        })
    }

    /// The attempt that served request `r`'s trigger, and the request's end state.
    async fn outcome(
        &self,
        r: &Request,
    ) -> Result<(Option<serde_json::Value>, RequestState), StoreError> {
        let Some(tid) = r.trigger_id else {
            return Ok((None, RequestState::Failed));
        };
        let trigger = self.store.call(move |s| s.db().get_trigger(tid)).await?;
        let Some(aid) = trigger.and_then(|t| t.attempt_id) else {
            return Ok((None, RequestState::Failed));
        };
        let attempt = self.store.call(move |s| s.db().get_attempt(&aid)).await?;
        Ok(match attempt {
            Some(a) => {
                let ok = a.state == crate::store::AttemptState::Succeeded;
                (
                    Some(serde_json::json!({
                        "id": a.id,
                        "state": a.state.as_str(),
                        "new_version": a.new_version,
                        "previous_version": a.previous_version,
                        "error": a.error,
                        "finished_at": a.finished_at.map(|t| t.to_rfc3339()),
                    })),
                    if ok {
                        RequestState::Completed
                    } else {
                        RequestState::Failed
                    },
                )
            }
            None => (None, RequestState::Failed),
        })
    }

    async fn close(
        &self,
        r: &Request,
        from: RequestState,
        to: RequestState,
        why: &str,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.close_with(r, from, to, why, outcome, update_detail(r, to, why), now)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn close_with(
        &self,
        r: &Request,
        from: RequestState,
        to: RequestState,
        why: &str,
        outcome: Outcome,
        detail: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let audit = NewAuditEntry {
            at: now,
            actor: "rotationd".into(),
            // A request is a rotation or a rollback (`decide` stores the kind).
            action: if r.kind == "rollback" {
                Action::RollbackRequest
            } else {
                Action::RotateRequest
            },
            secret: Some(r.secret.clone()),
            ticket: r.ticket.clone(),
            reason: Some(why.to_string()),
            outcome,
            detail: Some(
                serde_json::json!({ "request_id": r.id, "requester": r.requester, "update": detail }),
            ),
        };
        let id = r.id.clone();
        let why = why.to_string();
        self.store
            .call(move |s| {
                s.transaction(|db| {
                    if db.decide_request(&id, from, to, None, Some(&why), None, now)? {
                        db.append_audit(&audit)?;
                        db.enqueue_bus_update(UPDATED, &detail, Utc::now())?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// AWSCURRENT back to AWSPREVIOUS, verified ([`crate::rollback`]), unless AWSPREVIOUS
    /// was retired as exposed (a request is never forced). An error is one to retry (the
    /// labels did not move, or the store did not answer); every verdict is the request's
    /// end state. A rollback done tells the dependents and Security.
    async fn roll_back(&self, r: &Request) -> Result<(RequestState, String), RollbackFailure> {
        use crate::rollback::{Requester, RollbackError, RollbackPlan, plan_rollback};
        let info = self.sm.describe(&r.secret).await?;
        let (current, previous) = match plan_rollback(&info, None) {
            Ok(RollbackPlan::Move { from, to }) => (from, to),
            // Not without expected versions; answered as what it would mean.
            Ok(RollbackPlan::AlreadyDone { version }) => {
                return Ok((
                    RequestState::Completed,
                    format!("AWSCURRENT is already {version}"),
                ));
            }
            Err(refusal) => return Ok((RequestState::Failed, refusal.to_string())),
        };
        if self.sm.is_observing() {
            // Not kept for later: labels moved days after the request would be wrong.
            return Ok((
                RequestState::Refused,
                format!(
                    "not rolled back: rotationd is in observe mode ([daemon] mode = \"observe\"); it would have moved AWSCURRENT from {current} back to {previous}"
                ),
            ));
        }
        let retired = crate::rollback::retirement(&self.store, &info, &r.secret, &previous).await?;
        if let Err(refusal) = crate::rollback::allow(retired, false) {
            return Ok((RequestState::Failed, refusal.to_string()));
        }
        match crate::rollback::execute(&self.sm, &r.secret, &current, &previous).await {
            Ok(v) if v.ok => {
                let by = Requester {
                    actor: format!("request:{}", r.requester),
                    secret: r.secret.clone(),
                    ticket: r.ticket.clone(),
                    reason: Some(r.reason.clone()),
                };
                let now = self.clock.now();
                for a in crate::rollback::completed_notices(
                    &self.cfg, &info, &r.secret, &current, &previous, &by, None, now,
                ) {
                    self.alerts.raise(a).await?;
                }
                Ok((
                    RequestState::Completed,
                    format!(
                        "rolled back: AWSCURRENT {previous} (was {current}); restart dependent services"
                    ),
                ))
            }
            Ok(v) => Ok((RequestState::Failed, v.mismatch())),
            Err(RollbackError::Move(e)) => Err(e.into()),
            // The labels moved: a retry would roll back again, to the rotated version.
            Err(e @ RollbackError::Verify(_)) => Ok((RequestState::Failed, e.to_string())),
        }
    }

    /// Puts due `Rotation Request Updated` events on the bus, ten per PutEvents. Returns
    /// how soon to come back: at the earliest retry after a failure, at once when a full
    /// batch went out (more may be due).
    async fn publish(&self) -> Result<Option<Duration>, StoreError> {
        const BATCH: u32 = 50;
        let Some(rc) = &self.cfg.requests else {
            return Ok(None);
        };
        let now = Utc::now();
        let due = self
            .store
            .call(move |s| s.db().due_bus_updates(now, BATCH))
            .await?;
        let mut again = (due.len() == BATCH as usize).then_some(Duration::ZERO);
        let bus = self.eventbridge.bus(&rc.event_bus);
        for chunk in due.chunks(10) {
            let events: Vec<Event> = chunk
                .iter()
                .map(|u| Event {
                    source: SOURCE.to_string(),
                    detail_type: u.detail_type.clone(),
                    detail: u.detail.to_string(),
                })
                .collect();
            let mut unreachable = false;
            let failed: Vec<(i64, String)> = match bus.put_events(&events).await {
                Ok(refused) => chunk
                    .iter()
                    .zip(refused)
                    .filter_map(|(u, why)| Some((u.id, why?)))
                    .collect(),
                Err(e) => {
                    unreachable = true;
                    let msg = e.to_string();
                    chunk.iter().map(|u| (u.id, msg.clone())).collect()
                }
            };
            for u in chunk {
                let id = u.id;
                match failed.iter().find(|(f, _)| *f == id) {
                    None => {
                        self.store
                            .call(move |s| s.db().mark_bus_published(id, Utc::now()))
                            .await?
                    }
                    Some((_, msg)) => {
                        let next = Utc::now()
                            + chrono::Duration::from_std(crate::alerts::publish_backoff(
                                u.attempts,
                            ))
                            .unwrap_or(chrono::Duration::minutes(5));
                        tracing::warn!(error = %msg, "cannot put a request update on the bus; it stays queued");
                        again =
                            sooner(again.filter(|a| !a.is_zero()), wait_until(Utc::now(), next));
                        let msg = msg.clone();
                        self.store
                            .call(move |s| s.db().mark_bus_failed(id, &msg, next))
                            .await?
                    }
                }
            }
            if unreachable {
                // The bus is down: the rest would fail the same way.
                break;
            }
        }
        Ok(again)
    }
}
