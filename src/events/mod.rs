//! Event triggers: what an event means for the fleet, and committing it durably.
//!
//! Events reach rotationd two ways, both ending in [`plan_event`] and [`commit`]:
//! - [`sqs`]: EventBridge rules deliver to an SQS queue; workers long-poll it and delete a
//!   message only after its consequences are committed (at-least-once);
//! - [`cloudtrail`]: a poller over CloudTrail `LookupEvents` catches what EventBridge
//!   dropped and what happened while rotationd was down.
//!
//! [`normalize`] turns a raw body into a typed event or a rejection; [`plan_event`] (pure)
//! decides the triggers, alerts and audit entry; [`commit`] writes them in ONE transaction
//! together with the event id in `seen_events`, so the same event arriving twice (both
//! paths, or SQS redelivery) acts once, and an event is never half-handled.
//!
//! What each event does:
//! - RotationFailed: P1 `rotation_failed` to Security at once with the error and the
//!   runbook; the secret is held (`store::Hold`: no planned rotation until
//!   `rotationd resume --secret`); one retry after `retry_backoff` if
//!   `retry_failed = true`, which the hold lets through.
//! - RotationAbandoned: P2 `rotation_abandoned`, and the secret is held.
//!   RotationStarted/Succeeded: audited.
//! - Departure of a user: a `departure` trigger for every secret the user could reach
//!   (custodians, directly or through `[[group]]`), deadline = min(event time, receipt
//!   time) + `departure_sla` (an event time is evidence, not authority: one more than
//!   [`FUTURE_SKEW`] ahead of its receipt is recorded and clamped to the receipt); it runs
//!   in the secret's next window if that window ends before the deadline, otherwise at
//!   once.
//! - Compromise of a secret: an immediate emergency trigger and P1 `breach_suspected`.
//! - [`setup`]: `rotationd setup-events` creates the rules and the queue policy.

pub mod cloudtrail;
mod departure;
pub mod normalize;
pub mod setup;
pub mod sqs;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::RwLock;

use crate::alerts::{Alert, AlertKind};
use crate::arn::Arn;
use crate::clock::Clock;
use crate::config::{Config, EventsConfig};
use crate::directory::Directory;
use crate::inventory::{Fleet, FleetEntry, Inventory};
use crate::metrics::Metrics;
use crate::requests::RequestKind;
use crate::store::audit::{Action, Outcome};
use crate::store::{
    Attempt, AttemptState, AttemptUpdate, NewAttempt, NewAuditEntry, NewTrigger, StoreError,
    StoreHandle, TriggerKind,
};
pub use departure::{FUTURE_SKEW, departure_not_before, reachable, sla_start};
use normalize::{
    CompromiseEvent, CustomSource, NormalizeConfig, Normalized, Rejection, RotationEvent,
    RotationKind,
};

/// The normalizer's view of `[events]`.
pub fn normalize_config(
    events: &EventsConfig,
    requests: Option<&crate::config::RequestsConfig>,
) -> NormalizeConfig {
    let custom = |list: &[crate::config::CustomSource]| {
        list.iter()
            .map(|c| CustomSource {
                source: c.source.clone(),
                detail_type: c.detail_type.clone(),
                pointer: c.pointer.clone(),
            })
            .collect()
    };
    NormalizeConfig {
        allowed_accounts: events.allowed_accounts.clone(),
        departures: custom(&events.departures),
        compromises: custom(&events.compromises),
        max_body_bytes: 256 * 1024,
        requests_source: requests.map(|r| r.source.clone()),
    }
}

/// Finds a managed secret: an ARN names exactly one secret (partition, region, account,
/// name and random suffix, as ListSecrets reported it); a bare name is looked up by name.
/// The adversarial review had `arn:aws:secretsmanager:eu-west-1:999999999999:secret:prod/db-ZZZZZZ`
/// reach the local us-east-1 `prod/db` through a name fallback; an ARN never falls back.
pub fn find_secret<'a>(fleet: &'a Fleet, id: &str) -> Option<&'a FleetEntry> {
    if Arn::parse(id).is_ok() {
        return fleet.entries.iter().find(|e| e.info.arn == id);
    }
    fleet.find(id)
}

/// Everything one event causes, decided without I/O.
#[derive(Debug, Clone)]
pub struct EventPlan {
    pub event_id: String,
    pub triggers: Vec<NewTrigger>,
    pub alerts: Vec<Alert>,
    pub audit: NewAuditEntry,
    /// An external rotation failure, recorded as a finished failed attempt so that the
    /// secret shows as `failing` until a rotation succeeds.
    pub failed_attempt: Option<(NewAttempt, String)>,
    /// An external rotation that succeeded (RotationSucceeded), recorded likewise.
    pub succeeded_attempt: Option<NewAttempt>,
    /// An external rotation that failed or was abandoned holds its secret (secret,
    /// `event-ID`, reason): no planned rotation until someone has looked
    /// (`store::Hold`). Not for a failure tied to rotationd's own attempt, whose end holds
    /// it.
    pub hold: Option<(String, String, String)>,
    /// A RotationFailed or RotationSucceeded of a managed secret: [`commit`] checks
    /// whether it reports on rotationd's own attempt ([`reports_on`]) and then ties it
    /// to that attempt instead of recording it as an external rotation.
    pub report: Option<RotationReport>,
    /// A departure that rotates nothing, and why (`no_secrets`: a custodian nowhere;
    /// `unresolved`: a user id nobody knows), for
    /// `rotationd_departures_unmatched_total{reason}`.
    pub unmatched: Option<&'static str>,
}

/// What a Secrets Manager rotation event says about a managed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub secret: String,
    pub kind: RotationKind,
    pub event_id: String,
    pub time: DateTime<Utc>,
    pub error: Option<String>,
}

/// How long after one of rotationd's attempts ended a rotation event may still report on
/// it: CloudTrail delivers within about 5 minutes, not guaranteed, and the catch-up
/// poller can bring it later still.
pub const REPORT_WINDOW: Duration = Duration::minutes(15);

/// Whether a rotation event of `kind` at `event_time` reports on `attempt`, rotationd's
/// latest RotateSecret of the same secret (pure). It does when it came after the request
/// (a minute of clock skew allowed) and the attempt is still running, or ended the same
/// way at most [`REPORT_WINDOW`] before. A RotationFailed after a success, or long after
/// a failure, is another rotation (Secrets Manager's own schedule, a console click).
pub fn reports_on(attempt: &Attempt, kind: RotationKind, event_time: DateTime<Utc>) -> bool {
    if attempt.started_at > event_time + Duration::minutes(1) {
        return false;
    }
    let Some(finished) = attempt.finished_at else {
        return true;
    };
    let same_end = match kind {
        RotationKind::Failed => {
            matches!(attempt.state, AttemptState::Failed | AttemptState::Stuck)
        }
        RotationKind::Succeeded => attempt.state == AttemptState::Succeeded,
        RotationKind::Started | RotationKind::Abandoned => false,
    };
    same_end && event_time <= finished + REPORT_WINDOW
}

/// The stage a RotationFailed names. AWS writes "Error when executing lambda ARN during
/// STEP step" in the event's `errorMessage`.
pub fn failed_stage(error: &str) -> Option<&'static str> {
    const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];
    let (_, after) = error.rsplit_once("during ")?;
    let word = after.split_whitespace().next()?;
    STEPS.iter().copied().find(|s| *s == word)
}

/// The audit action of an event: one per kind, `event_` and its kind label.
pub fn event_action(ev: &Normalized) -> Action {
    match ev {
        Normalized::Rotation(r) => match r.kind {
            RotationKind::Started => Action::EventRotationStarted,
            RotationKind::Succeeded => Action::EventRotationSucceeded,
            RotationKind::Failed => Action::EventRotationFailed,
            RotationKind::Abandoned => Action::EventRotationAbandoned,
        },
        Normalized::Departure(_) => Action::EventDeparture,
        Normalized::Compromise(_) => Action::EventCompromise,
        Normalized::Request(r) => match r.kind {
            RequestKind::Rotate => Action::EventRotationRequested,
            RequestKind::Approve => Action::EventRotationApproved,
            RequestKind::Deny => Action::EventRotationDenied,
            RequestKind::Rollback => Action::EventRollbackRequested,
        },
    }
}

/// Decides what `ev` does. `source` is `sqs` or `cloudtrail` (for the audit log);
/// `directory`, the Identity Center directory as last read (`[identity_center]`), resolves
/// departures that name a user id.
pub fn plan_event(
    cfg: &Config,
    fleet: &Fleet,
    directory: Option<&Directory>,
    ev: &Normalized,
    source: &str,
    now: DateTime<Utc>,
) -> EventPlan {
    let events = cfg.events.as_ref();
    let mut plan = EventPlan {
        event_id: ev.event_id().to_string(),
        triggers: Vec::new(),
        alerts: Vec::new(),
        audit: NewAuditEntry {
            at: now,
            actor: format!("event:{source}"),
            action: event_action(ev),
            secret: None,
            ticket: None,
            reason: None,
            outcome: Outcome::Accepted,
            detail: Some(serde_json::json!({ "event_id": ev.event_id(), "source": source })),
        },
        failed_attempt: None,
        succeeded_attempt: None,
        hold: None,
        report: None,
        unmatched: None,
    };
    match ev {
        Normalized::Rotation(r) => plan_rotation_event(cfg, fleet, r, now, &mut plan),
        Normalized::Departure(d) => {
            let sla = events
                .map(|e| Duration::from_std(e.departure_sla).unwrap_or(Duration::hours(24)))
                .unwrap_or(Duration::hours(24));
            departure::plan_departure(cfg, fleet, directory, d, now, sla, &mut plan);
        }
        Normalized::Compromise(c) => plan_compromise(fleet, c, now, &mut plan),
        // Decided against the stored request in `requests::accept`, never planned here.
        Normalized::Request(_) => plan.audit.outcome = Outcome::Request,
    }
    plan
}

fn plan_rotation_event(
    cfg: &Config,
    fleet: &Fleet,
    r: &RotationEvent,
    now: DateTime<Utc>,
    plan: &mut EventPlan,
) {
    let Some(entry) = find_secret(fleet, &r.secret_id) else {
        plan.audit.outcome = Outcome::UnknownSecret;
        plan.audit.reason = Some(format!(
            "{} for a secret rotationd does not manage",
            r.kind.label()
        ));
        plan.audit.detail =
            Some(serde_json::json!({ "event_id": r.event_id, "secret": r.secret_id }));
        return;
    };
    plan.audit.secret = Some(entry.key.clone());
    if matches!(r.kind, RotationKind::Failed | RotationKind::Succeeded) {
        plan.report = Some(RotationReport {
            secret: entry.key.clone(),
            kind: r.kind,
            event_id: r.event_id.clone(),
            time: r.time,
            error: r.error_message.clone(),
        });
    }
    let alert = |kind: AlertKind| {
        let mut a = Alert::new(kind, Some(&entry.key), r.time);
        a.secret_arn = Some(entry.info.arn.clone());
        a.trigger = Some("event".into());
        a.error = r.error_message.clone();
        a.reason = Some(format!("{} event {}", r.kind.label(), r.event_id));
        a.dedupe_key = format!("{}:{}:{}", kind.as_str(), entry.key, r.event_id);
        a.details =
            serde_json::json!({ "event_id": r.event_id, "event_time": r.time.to_rfc3339() });
        a
    };
    match r.kind {
        RotationKind::Failed => {
            plan.alerts.push(alert(AlertKind::RotationFailed));
            let id = format!("event-{}", r.event_id);
            let error = format!(
                "RotationFailed at {}: {}",
                r.time.to_rfc3339(),
                r.error_message
                    .as_deref()
                    .unwrap_or("no error message in the event")
            );
            plan.hold = Some((entry.key.clone(), id.clone(), error.clone()));
            plan.failed_attempt = Some((
                NewAttempt {
                    id: id.clone(),
                    trigger_id: None,
                    secret: entry.key.clone(),
                    secret_arn: Some(entry.info.arn.clone()),
                    // Secrets Manager's own schedule (or a console click) ran it.
                    trigger_kind: TriggerKind::Scheduled,
                    ticket: None,
                    client_request_token: id,
                    previous_version: None,
                    started_at: r.time,
                },
                error,
            ));
            if let Some(ev) = cfg.events.as_ref().filter(|e| e.retry_failed) {
                let backoff = Duration::from_std(ev.retry_backoff).unwrap_or(Duration::hours(1));
                plan.triggers.push(NewTrigger {
                    secret: entry.key.clone(),
                    kind: TriggerKind::Retry,
                    dedupe_key: Some(format!("retry:{}", r.event_id)),
                    ticket: None,
                    reason: format!("retry after RotationFailed event {}", r.event_id),
                    actor: "rotationd".into(),
                    created_at: now,
                    not_before: Some(now + backoff),
                    deadline: None,
                });
            }
        }
        RotationKind::Abandoned => {
            plan.alerts.push(alert(AlertKind::RotationAbandoned));
            plan.hold = Some((
                entry.key.clone(),
                format!("event-{}", r.event_id),
                format!("RotationAbandoned at {}", r.time.to_rfc3339()),
            ));
        }
        RotationKind::Succeeded => {
            // Secrets Manager's own schedule (or a console click) rotated it: record it
            // as a succeeded attempt so the secret stops showing `failing`. rotationd's
            // own attempts see the new version by polling, not through this event.
            let id = format!("event-{}", r.event_id);
            plan.succeeded_attempt = Some(NewAttempt {
                id: id.clone(),
                trigger_id: None,
                secret: entry.key.clone(),
                secret_arn: Some(entry.info.arn.clone()),
                trigger_kind: TriggerKind::Scheduled,
                ticket: None,
                client_request_token: id,
                previous_version: None,
                started_at: r.time,
            });
        }
        RotationKind::Started => {}
    }
}

fn plan_compromise(fleet: &Fleet, c: &CompromiseEvent, now: DateTime<Utc>, plan: &mut EventPlan) {
    let Some(entry) = find_secret(fleet, &c.secret_id) else {
        plan.audit.outcome = Outcome::UnknownSecret;
        plan.audit.reason =
            Some("compromise reported for a secret rotationd does not manage".into());
        plan.audit.detail =
            Some(serde_json::json!({ "event_id": c.event_id, "secret": c.secret_id }));
        // Nothing to rotate here, but a suspected compromise is Security's to know of
        // whoever manages the secret.
        let mut a = breach_alert(c, &c.secret_id, "none: not managed by rotationd");
        a.error = Some(format!(
            "not managed by rotationd: {} (rotate it by whatever manages it)",
            c.secret_id
        ));
        plan.alerts.push(a);
        return;
    };
    plan.audit.secret = Some(entry.key.clone());
    plan.audit.ticket = c.ticket.clone();
    plan.triggers.push(NewTrigger {
        secret: entry.key.clone(),
        kind: TriggerKind::Compromise,
        dedupe_key: Some(format!("event:{}:{}", c.event_id, entry.info.arn)),
        ticket: c.ticket.clone(),
        reason: c
            .reason
            .clone()
            .unwrap_or_else(|| format!("suspected compromise reported by {}", c.source)),
        actor: format!("event:{}", c.source),
        created_at: now,
        not_before: None,
        deadline: Some(now),
    });
    let mut a = breach_alert(c, &entry.key, "emergency, started at once");
    a.secret_arn = Some(entry.info.arn.clone());
    plan.alerts.push(a);
}

/// The P1 `breach_suspected` for compromise `c` of `secret`; `rotation` says what
/// rotationd did about it ([`Alert::breach_suspected`], the one builder).
fn breach_alert(c: &CompromiseEvent, secret: &str, rotation: &str) -> Alert {
    Alert::breach_suspected(
        secret,
        c.time,
        c.ticket.clone(),
        c.reason.clone(),
        &c.source,
        &c.event_id,
        rotation,
    )
}

/// Writes an event's consequences in one transaction. Returns `false` when the event id
/// was already seen (a duplicate: nothing is written).
pub async fn commit(
    store: &StoreHandle,
    plan: EventPlan,
    source: &str,
    realert: Duration,
    mode: crate::config::Mode,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let source = source.to_string();
    store
        .call(move |s| {
            s.transaction(|db| {
                if !db.mark_event_seen(&plan.event_id, &source, now)? {
                    return Ok(false);
                }
                // A rotation event about rotationd's own attempt is that attempt's news,
                // not an external rotation: the attempt takes the failure (its driver ends
                // it and escalates once), and nothing else is recorded or alerted.
                let tied = match &plan.report {
                    Some(r) => db
                        .latest_own_attempt(&r.secret)?
                        .filter(|a| reports_on(a, r.kind, r.time))
                        .map(|a| (a, r)),
                    None => None,
                };
                let mut audit = plan.audit.clone();
                if let Some((attempt, r)) = &tied {
                    let recorded = r.kind == RotationKind::Failed
                        && db.set_function_error(
                            &attempt.id,
                            &format!(
                                "{}: {}",
                                r.event_id,
                                r.error
                                    .as_deref()
                                    .unwrap_or("no error message in the event")
                            ),
                            now,
                        )?;
                    audit.outcome = Outcome::TiedToAttempt;
                    audit.detail = Some(serde_json::json!({
                        "event_id": r.event_id,
                        "attempt": attempt.id,
                        "attempt_state": attempt.state.as_str(),
                        "recorded_on_attempt": recorded,
                        "error": r.error,
                    }));
                }
                for t in &plan.triggers {
                    db.insert_trigger(t)?;
                }
                if let Some((attempt, error)) =
                    plan.failed_attempt.as_ref().filter(|_| tied.is_none())
                {
                    db.create_attempt(attempt)?;
                    db.update_attempt(
                        &attempt.id,
                        &AttemptUpdate::to(AttemptState::Failed).error(error.clone()),
                        now,
                    )?;
                }
                if let Some((secret, attempt, reason)) =
                    plan.hold.as_ref().filter(|_| tied.is_none())
                {
                    db.hold_audited(secret, attempt, reason, now)?;
                }
                if let Some(attempt) = plan.succeeded_attempt.as_ref().filter(|_| tied.is_none()) {
                    let ours = db
                        .unfinished_attempts()?
                        .iter()
                        .any(|a| a.secret == attempt.secret);
                    if !ours {
                        db.create_attempt(attempt)?;
                        db.update_attempt(
                            &attempt.id,
                            &AttemptUpdate::to(AttemptState::Succeeded),
                            now,
                        )?;
                        // The rotation works again: whatever held the secret is over.
                        db.lift_hold_audited(
                            &attempt.secret,
                            &audit.actor,
                            None,
                            &format!("Secrets Manager rotated it ({})", plan.event_id),
                            now,
                        )?;
                    }
                }
                for a in &plan.alerts {
                    // The attempt's own end carries the one rotation_failed P1.
                    if tied.is_some() && a.kind == AlertKind::RotationFailed {
                        continue;
                    }
                    // The outbox runs on the wall clock, as `Alerts::prepare` says: an
                    // alert queued at a shifted clock's time would wait for it.
                    db.enqueue_alert_deduped(&a.to_new_alert(mode), Utc::now(), realert)?;
                }
                db.append_audit(&audit)?;
                Ok(true)
            })
        })
        .await
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Acted,
    Duplicate,
    Rejected(&'static str),
    /// Left for the leader: a standby never decides a request. Nothing was committed; the
    /// message goes back to the queue.
    LeftForLeader,
}

/// Where normalized events go, whichever path brought them: counted, planned against the
/// latest inventory, and committed (or audited as rejected).
pub struct EventSink {
    /// Delivery ids of rejections counted lately (at most [`RECENT_REJECTIONS`]): past the
    /// first few of a minute a rejection leaves no per-delivery row to deduplicate against,
    /// and SQS delivers at least once, so the redeliveries that come soon after (the usual
    /// kind) are recognised here. Not durable: after a restart one may count twice.
    pub recent_rejections: std::sync::Mutex<RecentDeliveries>,
    pub cfg: Arc<Config>,
    pub normalize: NormalizeConfig,
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// The latest inventory (who can reach what); consumers wait until there is one.
    pub inventory: Arc<RwLock<Option<Inventory>>>,
    /// The Identity Center directory as last read, with the users remembered from earlier
    /// reads (`None` without `[identity_center]`, or before the store was read).
    pub directory: Arc<RwLock<Option<Directory>>>,
    /// Wakes the executor when an event committed new triggers (instead of its next tick).
    pub wake: Arc<tokio::sync::Notify>,
    /// For the approval notices of requests.
    pub alerts: crate::alerts::Alerts,
    /// Whether this instance decides CommandBridge requests: the leader does, a standby
    /// never (its replica may lag the leader's, and a decision is an act).
    pub decides_requests: bool,
}

/// How many recently rejected delivery ids an [`EventSink`] remembers.
pub const RECENT_REJECTIONS: usize = 20_000;

/// A bounded memory of delivery ids, oldest forgotten first.
#[derive(Debug, Default)]
pub struct RecentDeliveries {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl RecentDeliveries {
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    pub fn insert(&mut self, id: &str) {
        if self.ids.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            while self.order.len() > RECENT_REJECTIONS {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

impl EventSink {
    /// Handles one normalized event (or rejection). `Err`: nothing was committed, so the
    /// caller must not acknowledge the event.
    ///
    /// `delivery` names the delivery itself (the SQS message id, the CloudTrail record id):
    /// a rejected body has no event id to collapse on, and both sources deliver the same
    /// thing more than once (SQS is at-least-once; CloudTrail sweeps overlap), so a
    /// rejection is recorded and counted once per delivery id.
    pub async fn accept(
        &self,
        normalized: Result<Normalized, Rejection>,
        source: &str,
        delivery: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<Disposition, StoreError> {
        let now = self.clock.now();
        match normalized {
            Err(rejection) => {
                let reason = rejection.reason();
                let key = delivery.map(|d| rejected_delivery_key(source, d));
                let recent = |k: &str| {
                    self.recent_rejections
                        .lock()
                        .map(|r| r.contains(k))
                        .unwrap_or(false)
                };
                if key.as_deref().is_some_and(recent) {
                    return Ok(Disposition::Duplicate);
                }
                let new = audit_rejection(
                    &self.store,
                    source,
                    delivery,
                    reason,
                    rejection.to_string(),
                    detail,
                    now,
                )
                .await?;
                if !new {
                    return Ok(Disposition::Duplicate);
                }
                if let (Some(k), Ok(mut r)) = (&key, self.recent_rejections.lock()) {
                    r.insert(k);
                }
                self.metrics
                    .events_rejected_total
                    .with_label_values(&[reason])
                    .inc();
                Ok(Disposition::Rejected(reason))
            }
            Ok(Normalized::Request(r)) if !self.decides_requests => {
                tracing::info!(request = ?r.request_id, "standby: request left on the queue for the leader");
                Ok(Disposition::LeftForLeader)
            }
            Ok(Normalized::Request(r)) => {
                self.metrics
                    .events_received_total
                    .with_label_values(&[source, r.kind.label()])
                    .inc();
                let secret = crate::requests::secret_of(&self.store, &r).await?;
                // Resolved and cloned under the read lock, which is released before the
                // store call: the reconciler must not wait for a transaction to refresh it.
                let entry = {
                    let inv = self.inventory.read().await;
                    secret
                        .as_deref()
                        .and_then(|s| inv.as_ref().and_then(|i| find_secret(&i.fleet, s)).cloned())
                };
                let new =
                    crate::requests::accept(&self.cfg, &self.store, &self.alerts, entry, r, now)
                        .await?;
                if new {
                    self.wake.notify_one();
                }
                Ok(if new {
                    Disposition::Acted
                } else {
                    Disposition::Duplicate
                })
            }
            Ok(ev) => {
                self.metrics
                    .events_received_total
                    .with_label_values(&[source, ev.kind_label()])
                    .inc();
                let plan = {
                    let inv = self.inventory.read().await;
                    let dir = self.directory.read().await;
                    let empty = Fleet::default();
                    let fleet = inv.as_ref().map_or(&empty, |i| &i.fleet);
                    plan_event(&self.cfg, fleet, dir.as_ref(), &ev, source, now)
                };
                let unmatched = plan.unmatched;
                let realert = Duration::from_std(self.cfg.alerts.realert_interval)
                    .unwrap_or(Duration::hours(4));
                let has_triggers = !plan.triggers.is_empty();
                let new = commit(
                    &self.store,
                    plan,
                    source,
                    realert,
                    self.cfg.daemon.mode,
                    now,
                )
                .await?;
                if new && has_triggers {
                    self.wake.notify_one();
                }
                if let Some(reason) = unmatched.filter(|_| new) {
                    self.metrics
                        .departures_unmatched_total
                        .with_label_values(&[reason])
                        .inc();
                }
                Ok(if new {
                    Disposition::Acted
                } else {
                    Disposition::Duplicate
                })
            }
        }
    }
}

/// The `seen_events` key of a rejected delivery; its own namespace, apart from event ids.
pub fn rejected_delivery_key(source: &str, delivery: &str) -> String {
    format!("rejected:{source}:{delivery}")
}

/// Records a rejected event (the reason, never the body): counted in its minute's tally,
/// and audited one by one for the first few of the minute
/// ([`crate::store::upkeep::INDIVIDUAL_REJECTIONS`]; the rest as one aggregate row when
/// the minute is over). With a `delivery` id, an individually audited rejection is
/// recorded once: `false` for its redelivery, which writes nothing.
pub async fn audit_rejection(
    store: &StoreHandle,
    source: &str,
    delivery: Option<&str>,
    reason: &'static str,
    message: String,
    detail: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let key = delivery.map(|d| rejected_delivery_key(source, d));
    let source = source.to_string();
    let entry = NewAuditEntry {
        at: now,
        actor: format!("event:{source}"),
        action: Action::EventRejected,
        secret: None,
        ticket: None,
        reason: Some(message),
        outcome: Outcome::Rejected(reason),
        detail: Some(detail),
    };
    store
        .call(move |s| {
            s.transaction(|db| {
                if let Some(key) = &key
                    && db.is_event_seen(key)?
                {
                    return Ok(false);
                }
                // Beyond the first few of the minute: only the tally, no row per delivery
                // (and no dedupe memory either), so a flood cannot fill the disk.
                let n = db.tally_rejection(reason, &source, now)?;
                if n <= crate::store::upkeep::INDIVIDUAL_REJECTIONS {
                    if let Some(key) = &key {
                        db.mark_event_seen(key, &source, now)?;
                    }
                    db.append_audit(&entry)?;
                }
                Ok(true)
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::secrets::SecretInfo;
    use crate::events::normalize::DepartureEvent;
    use chrono::TimeZone;
    use std::path::Path;

    const CFG: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[policy]
require_change_ticket = false
[events]
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
retry_failed = true
retry_backoff = "2h"
[[group]]
name = "dba"
members = ["alice", "bob"]
[[secret]]
id = "prod/daily"
schedule = "0 3 * * *"
window = "2h"
strategy = "single-user"
custodians = ["alice"]
[[secret]]
id = "prod/quarterly"
strategy = "single-user"
custodians = ["group:dba"]
[[secret]]
id = "prod/other"
strategy = "single-user"
custodians = ["carol"]
"#;

    fn setup() -> (Config, Fleet) {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), CFG).unwrap();
        let infos = ["prod/daily", "prod/quarterly", "prod/other"]
            .iter()
            .map(|n| SecretInfo {
                name: n.to_string(),
                arn: format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{n}-AbCdEf"),
                ..Default::default()
            })
            .collect();
        let fleet = crate::inventory::match_fleet(&cfg, infos);
        (cfg, fleet)
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
    }

    fn departure(user: &str, at: DateTime<Utc>) -> Normalized {
        Normalized::Departure(DepartureEvent {
            user: user.into(),
            user_id: None,
            event_id: "ev-1".into(),
            time: at,
            source: "aws.iam".into(),
            account: None,
        })
    }

    #[test]
    fn recent_deliveries_forget_the_oldest_first() {
        let mut r = RecentDeliveries::default();
        for i in 0..=RECENT_REJECTIONS {
            r.insert(&format!("d-{i}"));
        }
        r.insert("d-5"); // Already there: no second entry.
        assert!(!r.contains("d-0"), "the oldest is forgotten");
        assert!(r.contains("d-1") && r.contains(&format!("d-{RECENT_REJECTIONS}")));
        assert_eq!(r.order.len(), RECENT_REJECTIONS);
    }

    #[test]
    fn a_compromise_of_a_secret_rotationd_does_not_manage_still_pages_security() {
        let (cfg, fleet) = setup();
        let now = t(10, 0);
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:elsewhere/db-AbCdEf";
        let ev = Normalized::Compromise(crate::events::normalize::CompromiseEvent {
            secret_id: arn.into(),
            event_id: "ev-9".into(),
            time: now,
            source: "com.example.security".into(),
            account: None,
            ticket: None,
            reason: Some("pasted in a chat".into()),
        });
        let plan = plan_event(&cfg, &fleet, None, &ev, "sqs", now);
        assert!(plan.triggers.is_empty(), "nothing of ours to rotate");
        assert_eq!(plan.audit.outcome, Outcome::UnknownSecret);
        assert_eq!(plan.alerts.len(), 1);
        let a = &plan.alerts[0];
        assert_eq!(a.kind, AlertKind::BreachSuspected);
        assert_eq!(a.kind.severity(), crate::alerts::Severity::P1);
        assert_eq!(a.secret.as_deref(), Some(arn));
        assert!(
            a.error
                .as_deref()
                .unwrap()
                .contains("not managed by rotationd")
        );
        assert_eq!(a.ticket.as_deref(), Some(crate::ticket::INC_PENDING));
    }

    #[test]
    fn a_departure_dated_ahead_counts_its_sla_from_its_receipt() {
        let (cfg, fleet) = setup();
        let now = t(10, 0);
        for (event_time, start, clamped) in [
            // A few minutes ahead: another clock; still the earlier of the two.
            (now + Duration::minutes(3), now, false),
            // Hours ahead: not believed, and said so in the audit entry.
            (now + Duration::hours(20), now, true),
            // In the past: the event's own time (the SLA already runs).
            (t(9, 0), t(9, 0), false),
        ] {
            let plan = plan_event(
                &cfg,
                &fleet,
                None,
                &departure("alice", event_time),
                "sqs",
                now,
            );
            assert!(!plan.triggers.is_empty());
            for trig in &plan.triggers {
                assert_eq!(
                    trig.deadline,
                    Some(start + Duration::hours(24)),
                    "{event_time}"
                );
            }
            let detail = plan.audit.detail.unwrap();
            assert_eq!(
                detail.get("event_time_in_future").is_some(),
                clamped,
                "{detail}"
            );
        }
    }

    #[test]
    fn a_departure_reaches_direct_and_group_custodianships_with_the_sla_deadline() {
        let (cfg, fleet) = setup();
        let now = t(10, 0);
        let plan = plan_event(&cfg, &fleet, None, &departure("alice", t(9, 0)), "sqs", now);
        let mut secrets: Vec<&str> = plan.triggers.iter().map(|t| t.secret.as_str()).collect();
        secrets.sort();
        assert_eq!(secrets, vec!["prod/daily", "prod/quarterly"]);
        for trig in &plan.triggers {
            assert_eq!(trig.kind, TriggerKind::Departure);
            assert_eq!(trig.deadline, Some(t(9, 0) + Duration::hours(24)));
            assert!(trig.ticket.is_none());
        }
        // prod/daily's next window (03:00-05:00 tomorrow) ends before the deadline (09:00
        // tomorrow): it waits for it. prod/quarterly's next window is January: at once.
        let daily = plan
            .triggers
            .iter()
            .find(|t| t.secret == "prod/daily")
            .unwrap();
        assert_eq!(
            daily.not_before,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 3, 0, 0).unwrap())
        );
        let quarterly = plan
            .triggers
            .iter()
            .find(|t| t.secret == "prod/quarterly")
            .unwrap();
        assert_eq!(quarterly.not_before, Some(now));
        assert!(plan.alerts.is_empty());
    }

    #[test]
    fn a_departure_whose_window_closes_after_the_deadline_rotates_at_once() {
        let (cfg, fleet) = setup();
        // Left at 02:00 yesterday, so the deadline is 02:00 today; the next window
        // (03:00-05:00 today) would end after it.
        let now = t(1, 0);
        let plan = plan_event(
            &cfg,
            &fleet,
            None,
            &departure("alice", t(2, 0) - Duration::hours(24)),
            "sqs",
            now,
        );
        let daily = plan
            .triggers
            .iter()
            .find(|t| t.secret == "prod/daily")
            .unwrap();
        assert_eq!(daily.not_before, Some(now));
    }

    #[test]
    fn a_departure_of_someone_without_access_is_audited_only() {
        let (cfg, fleet) = setup();
        let plan = plan_event(
            &cfg,
            &fleet,
            None,
            &departure("zoe", t(9, 0)),
            "sqs",
            t(10, 0),
        );
        assert!(plan.triggers.is_empty());
        assert_eq!(plan.audit.outcome, Outcome::NoSecrets);
    }

    fn own_attempt(
        state: AttemptState,
        started: DateTime<Utc>,
        finished: Option<DateTime<Utc>>,
    ) -> Attempt {
        Attempt {
            id: "a1".into(),
            trigger_id: None,
            secret: "prod/daily".into(),
            secret_arn: None,
            trigger_kind: TriggerKind::Manual,
            ticket: None,
            state,
            client_request_token: "rotationd-a1".into(),
            previous_version: None,
            new_version: None,
            started_at: started,
            updated_at: started,
            finished_at: finished,
            error: None,
            rotate_calls: 1,
            validation: None,
            watch_until: None,
            watch_plan: None,
            watch_evidence: None,
            stage_times: None,
            function_error: None,
            verdict: None,
        }
    }

    #[test]
    fn a_rotation_event_reports_on_the_attempt_that_was_running() {
        let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap();
        let m = Duration::minutes;
        let running = own_attempt(AttemptState::Monitoring, t0, None);
        assert!(reports_on(&running, RotationKind::Failed, t0 + m(1)));
        assert!(reports_on(&running, RotationKind::Succeeded, t0 + m(1)));
        // Before our RotateSecret (beyond the skew allowance): another rotation.
        assert!(!reports_on(&running, RotationKind::Failed, t0 - m(5)));
        // Our attempt already failed (timeout) and the event comes late: still ours.
        let failed = own_attempt(AttemptState::Failed, t0, Some(t0 + m(15)));
        assert!(reports_on(&failed, RotationKind::Failed, t0 + m(20)));
        // ... but not an hour later, and never a failure after our success.
        assert!(!reports_on(&failed, RotationKind::Failed, t0 + m(90)));
        let ok = own_attempt(AttemptState::Succeeded, t0, Some(t0 + m(1)));
        assert!(!reports_on(&ok, RotationKind::Failed, t0 + m(2)));
        assert!(reports_on(&ok, RotationKind::Succeeded, t0 + m(2)));
    }

    #[test]
    fn every_kind_of_event_has_its_audit_action() {
        // `event_` and the kind label, as the audit log always said.
        for label in Normalized::KIND_LABELS {
            let text = format!("event_{label}");
            assert!(text.parse::<Action>().is_ok(), "{text}");
        }
        let ev = Normalized::Rotation(RotationEvent {
            kind: RotationKind::Abandoned,
            secret_id: "s".into(),
            event_id: "e".into(),
            time: t(0, 0),
            error_message: None,
            account: None,
            region: None,
        });
        assert_eq!(
            event_action(&ev).as_str(),
            format!("event_{}", ev.kind_label())
        );
    }

    #[test]
    fn the_failed_step_is_read_from_aws_error_message() {
        assert_eq!(
            failed_stage(
                "Error when executing lambda arn:aws:lambda:eu-west-1:1:function:f during createSecret step"
            ),
            Some("createSecret")
        );
        assert_eq!(
            failed_stage("... during testSecret step"),
            Some("testSecret")
        );
        assert_eq!(failed_stage("during lunch"), None);
        assert_eq!(failed_stage("password authentication failed"), None);
    }

    #[test]
    fn rotation_failed_escalates_records_failing_and_schedules_one_retry() {
        let (cfg, fleet) = setup();
        let ev = Normalized::Rotation(RotationEvent {
            kind: RotationKind::Failed,
            secret_id: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/other-AbCdEf"
                .into(),
            event_id: "ev-9".into(),
            time: t(9, 0),
            error_message: Some("testSecret failed".into()),
            account: None,
            region: None,
        });
        let plan = plan_event(&cfg, &fleet, None, &ev, "cloudtrail", t(10, 0));
        assert_eq!(plan.audit.secret.as_deref(), Some("prod/other"));
        assert_eq!(plan.alerts.len(), 1);
        assert_eq!(plan.alerts[0].kind, AlertKind::RotationFailed);
        assert_eq!(plan.alerts[0].error.as_deref(), Some("testSecret failed"));
        let (attempt, error) = plan.failed_attempt.as_ref().unwrap();
        assert_eq!(attempt.secret, "prod/other");
        assert!(error.contains("testSecret failed"));
        assert_eq!(plan.triggers.len(), 1);
        assert_eq!(plan.triggers[0].kind, TriggerKind::Retry);
        assert_eq!(plan.triggers[0].not_before, Some(t(12, 0)));
        // Held until someone has looked; the one retry still runs (executor::held_back).
        let (secret, attempt, reason) = plan.hold.as_ref().unwrap();
        assert_eq!(
            (secret.as_str(), attempt.as_str()),
            ("prod/other", "event-ev-9")
        );
        assert!(reason.contains("testSecret failed"), "{reason}");
    }

    #[test]
    fn an_arn_reaches_exactly_its_secret_and_a_name_falls_back_only_when_bare() {
        let (_, fleet) = setup();
        let own = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/daily-AbCdEf";
        assert_eq!(
            find_secret(&fleet, own).map(|e| e.key.as_str()),
            Some("prod/daily")
        );
        assert_eq!(
            find_secret(&fleet, "prod/daily").map(|e| e.key.as_str()),
            Some("prod/daily")
        );
        // The review's attack: another account and region, the same name.
        for other in [
            "arn:aws:secretsmanager:eu-west-1:999999999999:secret:prod/daily-ZZZZZZ",
            "arn:aws:secretsmanager:us-east-1:999999999999:secret:prod/daily-AbCdEf",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/daily-AbCdEf",
            "arn:aws-cn:secretsmanager:us-east-1:123456789012:secret:prod/daily-AbCdEf",
            // Deleted and created again under the same name: another secret.
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/daily-ZZZZZZ",
        ] {
            assert!(find_secret(&fleet, other).is_none(), "{other}");
        }
    }

    #[test]
    fn rotation_abandoned_holds_the_secret_and_triggers_nothing() {
        let (cfg, fleet) = setup();
        let ev = Normalized::Rotation(RotationEvent {
            kind: RotationKind::Abandoned,
            secret_id: "prod/other".into(),
            event_id: "ev-10".into(),
            time: t(9, 0),
            error_message: None,
            account: None,
            region: None,
        });
        let plan = plan_event(&cfg, &fleet, None, &ev, "eventbridge", t(10, 0));
        assert_eq!(plan.alerts.len(), 1);
        assert_eq!(plan.alerts[0].kind, AlertKind::RotationAbandoned);
        assert!(plan.triggers.is_empty());
        let (secret, attempt, _) = plan.hold.as_ref().unwrap();
        assert_eq!(
            (secret.as_str(), attempt.as_str()),
            ("prod/other", "event-ev-10")
        );
    }

    #[test]
    fn events_about_unmanaged_secrets_are_audited_not_acted_on() {
        let (cfg, fleet) = setup();
        let ev = Normalized::Compromise(CompromiseEvent {
            secret_id: "prod/unknown".into(),
            event_id: "ev-3".into(),
            time: t(9, 0),
            source: "com.example.security".into(),
            account: None,
            ticket: None,
            reason: None,
        });
        let plan = plan_event(&cfg, &fleet, None, &ev, "sqs", t(10, 0));
        // Nothing rotates; Security is told (see the test of unmanaged compromises).
        assert!(plan.triggers.is_empty());
        assert_eq!(plan.alerts.len(), 1);
        assert_eq!(plan.audit.outcome, Outcome::UnknownSecret);
    }

    #[tokio::test]
    async fn a_redelivered_rejection_is_recorded_once_and_another_delivery_again() {
        let store = StoreHandle::spawn(crate::store::Store::open_in_memory().unwrap()).unwrap();
        let record = |delivery: Option<&'static str>| {
            let store = store.clone();
            async move {
                audit_rejection(
                    &store,
                    "sqs",
                    delivery,
                    "not_json",
                    "not json".into(),
                    serde_json::json!({ "bytes": 3 }),
                    t(9, 0),
                )
                .await
                .unwrap()
            }
        };
        assert!(record(Some("m-1")).await, "first delivery");
        assert!(!record(Some("m-1")).await, "the same message again");
        assert!(record(Some("m-2")).await, "another message");
        // Without a delivery id there is nothing to collapse on: each is recorded.
        assert!(record(None).await);
        assert!(record(None).await);
        let rejected = store
            .call(|s| s.db().audit_entries(None, 100))
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "event_rejected")
            .count();
        assert_eq!(rejected, 4);
    }
}
