//! Rotation and rollback requests from CommandBridge, under the Secrets Rotation Guide's approval policy.
//!
//! The guide calls Rotate Secrets the highest-risk action: L1 and L2 request approval,
//! only L3 executes directly, rollback is L3 only, and every action carries a ticket and a
//! reason. rotationd enforces that for automated execution:
//!
//! - Requests arrive as custom EventBridge events (`[requests] source`, default
//!   `commandbridge`) on the events queue, through the same normalizer, account gate and
//!   one-transaction commit as every other event (`events::normalize`). `setup-events`
//!   routes them.
//! - **Levels are never taken from the event.** `[requests] levels` maps identities (user
//!   names or IAM principal ARNs, matched exactly) to L1/L2/L3; anyone not listed is L1. A
//!   claimed level that differs is recorded in the audit log and ignored. (What rotationd
//!   cannot check is the requester's identity itself: who may put `commandbridge` events
//!   on the bus is the authentication, so restrict PutEvents for that source with the
//!   bus policy.)
//! - **Tickets**: CHG for a planned rotation, INC for an emergency; INC or CHG for a
//!   rollback. A request without a valid ticket or a reason is refused, with the reason.
//! - **L3 request** → executing: a rotation trigger (planned: the secret's next window;
//!   emergency: now). **L1/L2** → `awaiting_approval` with a notice to the approvers'
//!   topic; an approval by an L3 identity *other than the requester* executes it; a denial
//!   by an L3 (or the requester withdrawing it) closes it, and so does
//!   `approval_timeout` (24 h; emergency requests `emergency_approval_timeout`, 1 h, with a
//!   P1 reminder to Security at half of it).
//! - **Rollback requests**: L3 only (others are refused and audited); the request loop
//!   moves AWSCURRENT back to AWSPREVIOUS, as `rotationd rollback` does.
//! - **Every decision is answered on the bus**: a `Rotation Request Updated` event (source
//!   `rotationd`) with the state, the reason and, at the end, the attempt's outcome, queued
//!   in the store in the same transaction as the decision and put with retries
//!   (`bus_outbox`), so CommandBridge hears about every step even across an outage.
//!
//! [`decide`] is pure; [`accept`] commits its decision with the event id in one transaction;
//! [`RequestLoop`] expires, reminds, rolls back, reports attempt outcomes and publishes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::aws::AwsError;
use crate::aws::eventbridge::{Event, EventBridge};
use crate::aws::secrets::SecretsManager;
use crate::clock::Clock;
use crate::config::{Config, Level, RequestsConfig};
use crate::inventory::FleetEntry;
use crate::store::audit::{Action, Outcome};
use crate::store::{
    NewAuditEntry, NewTrigger, Request, RequestState, StoreError, StoreHandle, TriggerKind,
};
use crate::ticket::is_ticket;

mod driver;
mod event;

pub use driver::{REQUESTS_SAFETY_POLL, RequestLoop};
pub use event::{RequestEvent, RequestKind};

/// The detail-type of rotationd's answers on the bus.
pub const UPDATED: &str = "Rotation Request Updated";
/// The source of rotationd's answers on the bus.
pub const SOURCE: &str = "rotationd";
/// How the event ids of the CLI's own request events begin (`rotationd rotate` below L3,
/// `approve`, `deny`): they are recorded in `seen_events` like a bus event's.
pub const CLI_EVENT_PREFIX: &str = "cli:";

/// Where a request event came from, for the alerts: `cli` or the bus.
fn via(ev: &RequestEvent) -> &'static str {
    if ev.event_id.starts_with(CLI_EVENT_PREFIX) {
        "cli"
    } else {
        "bus"
    }
}

/// What one request event does.
#[derive(Debug, Clone)]
pub struct Decision {
    /// A new request row (its `trigger_id` is filled in by the commit).
    pub insert: Option<Request>,
    /// Moves an existing request.
    pub transition: Option<Transition>,
    /// The rotation to run, linked to the request.
    pub trigger: Option<NewTrigger>,
    pub alerts: Vec<Alert>,
    pub audit: NewAuditEntry,
    /// The `Rotation Request Updated` detail.
    pub update: Option<serde_json::Value>,
}

/// A move of a stored request from one state to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: String,
    pub from: RequestState,
    pub to: RequestState,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
}

/// The bus answer for `r` in state `state`.
pub fn update_detail(r: &Request, state: RequestState, why: &str) -> serde_json::Value {
    serde_json::json!({
        "request_id": r.id,
        "kind": r.kind,
        "secret": r.secret,
        "state": state.as_str(),
        "reason": why,
        "requester": r.requester,
        "level": r.level,
        "ticket": r.ticket,
        "emergency": r.emergency,
        "decided_by": r.decided_by,
    })
}

/// When a rotation request may run, and until when: emergency now; planned in the
/// secret's window open now or its next one.
fn schedule_for(
    cfg: &Config,
    entry: &FleetEntry,
    emergency: bool,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    if emergency {
        return (None, None);
    }
    let settings = crate::inventory::settings(cfg, entry.origin);
    let target = settings.target(entry.key.clone());
    let start = crate::planner::window_at_or_after(&target, now);
    match start {
        Some(s) => (Some(s.max(now)), Some(s + target.window)),
        None => (Some(now), None),
    }
}

fn trigger_for(
    cfg: &Config,
    entry: &FleetEntry,
    r: &Request,
    approved_by: Option<&str>,
    now: DateTime<Utc>,
) -> NewTrigger {
    let (not_before, deadline) = schedule_for(cfg, entry, r.emergency, now);
    NewTrigger {
        secret: entry.key.clone(),
        kind: TriggerKind::Manual,
        dedupe_key: Some(format!("request:{}", r.id)),
        ticket: r.ticket.clone(),
        reason: format!(
            "request {} by {} ({}){}: {}",
            r.id,
            r.requester,
            r.level,
            approved_by
                .map(|a| format!(", approved by {a}"))
                .unwrap_or_default(),
            r.reason
        ),
        actor: format!("request:{}", r.requester),
        created_at: now,
        not_before,
        deadline,
    }
}

/// Decides what `ev` does, given the request it names (if stored) and the managed secret
/// it names (if managed). Pure.
pub fn decide(
    cfg: &Config,
    rc: &RequestsConfig,
    existing: Option<&Request>,
    entry: Option<&FleetEntry>,
    ev: &RequestEvent,
    now: DateTime<Utc>,
) -> Decision {
    let level = rc.level_of(&ev.actor);
    let claimed = ev.claimed_level.clone();
    let forged = claimed.as_deref().is_some_and(|c| c != level.as_str());
    let mut audit = NewAuditEntry {
        at: now,
        actor: ev.actor.clone(),
        action: ev.kind.audit_action(),
        secret: entry.map(|e| e.key.clone()).or_else(|| ev.secret.clone()),
        ticket: ev.ticket.clone(),
        reason: ev.reason.clone(),
        // Every way out of the decision below says how it ended.
        outcome: Outcome::Refused,
        detail: Some(serde_json::json!({
            "request_id": ev.request_id,
            "event_id": ev.event_id,
            "level": level.as_str(),
            "claimed_level": claimed,
            "claimed_level_ignored": forged,
            "emergency": ev.emergency,
            "comment": ev.comment,
        })),
    };
    let mut d = Decision {
        insert: None,
        transition: None,
        trigger: None,
        alerts: Vec::new(),
        audit: audit.clone(),
        update: None,
    };
    match ev.kind {
        RequestKind::Rotate | RequestKind::Rollback => {
            if let Some(r) = existing {
                audit.outcome = Outcome::DuplicateRequest;
                audit.reason = Some(format!("request {} is already {}", r.id, r.state));
                d.audit = audit;
                return d;
            }
            let rollback = ev.kind == RequestKind::Rollback;
            let mut r = Request {
                id: ev.request_id.clone(),
                kind: if rollback { "rollback" } else { "rotate" }.into(),
                secret: entry
                    .map(|e| e.key.clone())
                    .or_else(|| ev.secret.clone())
                    .unwrap_or_default(),
                ticket: ev.ticket.clone(),
                reason: ev.reason.clone().unwrap_or_default(),
                requester: ev.actor.clone(),
                level: level.as_str().into(),
                claimed_level: ev.claimed_level.clone(),
                emergency: ev.emergency,
                state: RequestState::Refused,
                created_at: now,
                expires_at: None,
                decided_by: None,
                decided_at: None,
                comment: None,
                trigger_id: None,
                reminded_at: None,
                updated_at: now,
            };
            let ticket_ok = |t: &str| {
                if rollback {
                    is_ticket(t, "INC") || is_ticket(t, "CHG")
                } else if ev.emergency {
                    is_ticket(t, "INC")
                } else {
                    is_ticket(t, "CHG")
                }
            };
            let refusal = if entry.is_none() {
                Some(format!(
                    "secret `{}` is not managed by rotationd",
                    ev.secret.as_deref().unwrap_or_default()
                ))
            } else if rollback && level != Level::L3 {
                Some(format!(
                    "rollback is L3 only; {} is {}",
                    ev.actor,
                    level.as_str()
                ))
            } else if !ev.ticket.as_deref().is_some_and(ticket_ok) {
                Some(match (rollback, ev.emergency) {
                    (true, _) => "a rollback needs an INC or CHG ticket (like INC-123)".to_string(),
                    (false, true) => {
                        "an emergency rotation needs an INC ticket (like INC-123)".to_string()
                    }
                    (false, false) => {
                        "a planned rotation needs a CHG ticket (like CHG-123); use emergency with an INC ticket for an incident".to_string()
                    }
                } + &ev
                    .ticket
                    .as_deref()
                    .map(|t| format!(", found `{t}`"))
                    .unwrap_or_default())
            } else if r.reason.trim().is_empty() {
                Some("every request needs a reason".to_string())
            } else {
                None
            };
            if let (Some(e), true) = (entry, rollback && level != Level::L3) {
                // The guide: L1/L2 must escalate; a refusal in silence is not enough.
                d.alerts.push(crate::rollback::escalated_alert(
                    &e.key,
                    Some(&e.info.arn),
                    &ev.actor,
                    level.as_str(),
                    ev.ticket.clone(),
                    ev.reason.clone(),
                    &ev.request_id,
                    via(ev),
                    now,
                ));
            }
            if let Some(why) = refusal {
                r.comment = Some(why.clone());
                audit.outcome = Outcome::Refused;
                audit.reason = Some(why.clone());
                d.update = Some(update_detail(&r, RequestState::Refused, &why));
                d.insert = Some(r);
                d.audit = audit;
                return d;
            }
            let entry = entry.expect("checked above");
            if ev.emergency && !rollback {
                // An emergency request is a suspected compromise: Security is paged now,
                // whoever asked and whether or not it still awaits an approval.
                let mut a = Alert::breach_suspected(
                    &entry.key,
                    now,
                    r.ticket.clone(),
                    Some(r.reason.clone()),
                    &format!("request:{}", via(ev)),
                    &r.id,
                    if level == Level::L3 {
                        "emergency, started at once (an L3 request)"
                    } else {
                        "emergency, awaiting an L3 approval"
                    },
                );
                a.secret_arn = Some(entry.info.arn.clone());
                a.details["requester"] = serde_json::json!(r.requester);
                a.details["level"] = serde_json::json!(r.level);
                d.alerts.push(a);
            }
            if level == Level::L3 {
                r.state = RequestState::Executing;
                r.decided_by = Some(ev.actor.clone());
                r.decided_at = Some(now);
                let why = if rollback {
                    "L3 rollback: executing".to_string()
                } else if ev.emergency {
                    "L3 emergency request: rotating now".to_string()
                } else {
                    "L3 request: rotating in the secret's next window".to_string()
                };
                if !rollback {
                    d.trigger = Some(trigger_for(cfg, entry, &r, None, now));
                }
                audit.outcome = Outcome::RequestState(RequestState::Executing);
                d.update = Some(update_detail(&r, RequestState::Executing, &why));
            } else {
                let timeout = if ev.emergency {
                    rc.emergency_approval_timeout
                } else {
                    rc.approval_timeout
                };
                r.state = RequestState::AwaitingApproval;
                r.expires_at = Some(
                    now + chrono::Duration::from_std(timeout)
                        .unwrap_or(chrono::Duration::hours(24)),
                );
                let why = format!(
                    "{} is {}: an L3 approval is needed (until {})",
                    ev.actor,
                    level.as_str(),
                    r.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
                let mut a = Alert::new(AlertKind::ApprovalRequested, Some(&entry.key), now);
                a.secret_arn = Some(entry.info.arn.clone());
                a.ticket = r.ticket.clone();
                a.reason = Some(r.reason.clone());
                a.deadline = r.expires_at;
                a.details = serde_json::json!({
                    "request_id": r.id,
                    "requester": r.requester,
                    "level": r.level,
                    "emergency": r.emergency,
                    "approve_with": format!(
                        "a `Rotation Approved` event, or `rotationd approve {}`, from an L3 identity other than the requester",
                        r.id
                    ),
                });
                a.dedupe_key = format!("approval_requested:{}", r.id);
                d.alerts.push(a);
                audit.outcome = Outcome::RequestState(RequestState::AwaitingApproval);
                d.update = Some(update_detail(&r, RequestState::AwaitingApproval, &why));
            }
            d.insert = Some(r);
            d.audit = audit;
            d
        }
        RequestKind::Approve | RequestKind::Deny => {
            let approve = ev.kind == RequestKind::Approve;
            let refuse =
                |d: &mut Decision, mut audit: NewAuditEntry, why: String, r: Option<&Request>| {
                    audit.outcome = Outcome::Refused;
                    audit.reason = Some(why.clone());
                    d.update = Some(match r {
                        Some(r) => update_detail(r, r.state, &why),
                        None => serde_json::json!({
                            "request_id": ev.request_id,
                            "state": "unknown",
                            "reason": why,
                        }),
                    });
                    d.audit = audit;
                };
            let Some(r) = existing else {
                refuse(
                    &mut d,
                    audit,
                    format!("no request `{}`", ev.request_id),
                    None,
                );
                return d;
            };
            audit.secret = Some(r.secret.clone());
            audit.ticket = r.ticket.clone();
            if r.state != RequestState::AwaitingApproval {
                refuse(
                    &mut d,
                    audit,
                    format!("request {} is {}, not awaiting approval", r.id, r.state),
                    Some(r),
                );
                return d;
            }
            // Expired is expired, whether or not the sweep has closed it yet: an approval
            // landing between the deadline and the sweep must not execute the request.
            if let Some(expired) = r.expires_at.filter(|e| now >= *e) {
                refuse(
                    &mut d,
                    audit,
                    format!(
                        "request {} expired at {}; file a new request",
                        r.id,
                        expired.format(crate::clock::TIME_FORMAT)
                    ),
                    Some(r),
                );
                return d;
            }
            // One principal: an assumed-role session is its role, whichever session it is
            // (rotationd cannot tell who is behind a session of a shared role).
            let own = crate::arn::same_principal(&ev.actor, &r.requester);
            let withdrawing = !approve && own;
            if approve && own {
                refuse(
                    &mut d,
                    audit,
                    format!(
                        "self-approval refused: {} requested it; another L3 must approve",
                        ev.actor
                    ),
                    Some(r),
                );
                return d;
            }
            if level != Level::L3 && !withdrawing {
                refuse(
                    &mut d,
                    audit,
                    format!(
                        "only L3 may {}; {} is {}",
                        if approve { "approve" } else { "deny" },
                        ev.actor,
                        level.as_str()
                    ),
                    Some(r),
                );
                return d;
            }
            let mut after = r.clone();
            after.decided_by = Some(ev.actor.clone());
            if approve {
                let Some(entry) = entry else {
                    refuse(
                        &mut d,
                        audit,
                        format!("secret `{}` is no longer managed by rotationd", r.secret),
                        Some(r),
                    );
                    return d;
                };
                d.trigger = Some(trigger_for(cfg, entry, r, Some(&ev.actor), now));
                d.transition = Some(Transition {
                    id: r.id.clone(),
                    from: RequestState::AwaitingApproval,
                    to: RequestState::Executing,
                    decided_by: Some(ev.actor.clone()),
                    comment: ev.comment.clone(),
                });
                audit.outcome = Outcome::RequestState(RequestState::Executing);
                d.update = Some(update_detail(
                    &after,
                    RequestState::Executing,
                    &format!(
                        "approved by {}: {}",
                        ev.actor,
                        if r.emergency {
                            "rotating now"
                        } else {
                            "rotating in the secret's next window"
                        }
                    ),
                ));
            } else {
                let why = if withdrawing {
                    format!("withdrawn by the requester {}", ev.actor)
                } else {
                    format!(
                        "denied by {}{}",
                        ev.actor,
                        ev.comment
                            .as_deref()
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default()
                    )
                };
                d.transition = Some(Transition {
                    id: r.id.clone(),
                    from: RequestState::AwaitingApproval,
                    to: RequestState::Denied,
                    decided_by: Some(ev.actor.clone()),
                    comment: Some(why.clone()),
                });
                audit.outcome = Outcome::RequestState(RequestState::Denied);
                d.update = Some(update_detail(&after, RequestState::Denied, &why));
            }
            d.audit = audit;
            d
        }
    }
}

/// The secret a request event is about: the stored request's for a decision on an existing
/// request, else the event's own (a new request).
pub async fn secret_of(
    store: &StoreHandle,
    ev: &RequestEvent,
) -> Result<Option<String>, StoreError> {
    let rid = ev.request_id.clone();
    let existing = store.call(move |s| s.db().get_request(&rid)).await?;
    Ok(existing.map(|r| r.secret).or_else(|| ev.secret.clone()))
}

/// Handles one request event: decides on the request it names as stored now, and commits
/// the decision, the event id, the audit entry, the alerts and the bus answer in one
/// transaction. `entry` is the managed secret the request is about ([`secret_of`],
/// resolved against the inventory by the caller). Returns false for a duplicate event id.
pub async fn accept(
    cfg: &Arc<Config>,
    store: &StoreHandle,
    alerts: &Alerts,
    entry: Option<FleetEntry>,
    ev: RequestEvent,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(accept_from(cfg, store, alerts, entry, ev, now, None)
        .await?
        .is_some())
}

/// What [`accept_from`] decided, for the CLI to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub outcome: Outcome,
    /// The bus answer's `state` and `reason`.
    pub state: Option<String>,
    pub reason: Option<String>,
}

/// [`accept`] for an event of the bus, or of the CLI (its id starts with
/// [`CLI_EVENT_PREFIX`]; `os_user` is who ran the command, a hint recorded in the audit
/// entry, never the identity). `None` for a duplicate event id.
pub async fn accept_from(
    cfg: &Arc<Config>,
    store: &StoreHandle,
    alerts: &Alerts,
    entry: Option<FleetEntry>,
    ev: RequestEvent,
    now: DateTime<Utc>,
    os_user: Option<String>,
) -> Result<Option<Decided>, StoreError> {
    let Some(rc) = cfg.requests.clone() else {
        return Ok(None);
    };
    let (kind, request, actor) = (ev.kind, ev.request_id.clone(), ev.actor.clone());
    let cfg = cfg.clone();
    let prep = alerts.clone();
    let decided = store
        .call(move |s| {
            s.transaction(|db| {
                let seen_as = if via(&ev) == "cli" { "cli" } else { "sqs" };
                if !db.mark_event_seen(&ev.event_id, seen_as, now)? {
                    return Ok(None);
                }
                // Decided again inside the transaction, on the request as it is now.
                let existing = db.get_request(&ev.request_id)?;
                let mut d = decide(&cfg, &rc, existing.as_ref(), entry.as_ref(), &ev, now);
                if let Some(detail) = d.audit.detail.as_mut() {
                    detail["via"] = serde_json::json!(via(&ev));
                    if let Some(u) = &os_user {
                        detail["os_user"] = serde_json::json!(u);
                    }
                }
                let trigger_id = match &d.trigger {
                    Some(t) => Some(db.insert_trigger(t)?.id),
                    None => None,
                };
                if let Some(mut r) = d.insert.clone() {
                    r.trigger_id = trigger_id;
                    db.insert_request(&r)?;
                }
                if let Some(Transition {
                    id,
                    from,
                    to,
                    decided_by: by,
                    comment,
                }) = &d.transition
                {
                    db.decide_request(
                        id,
                        *from,
                        *to,
                        by.as_deref(),
                        comment.as_deref(),
                        trigger_id,
                        now,
                    )?;
                }
                for p in d.alerts.iter().filter_map(|a| prep.prepare(a)) {
                    db.enqueue_alert_deduped(&p.alert, p.at, p.realert)?;
                }
                db.append_audit(&d.audit)?;
                if let Some(u) = &d.update {
                    db.enqueue_bus_update(UPDATED, u, Utc::now())?;
                }
                let field = |k: &str| {
                    d.update
                        .as_ref()
                        .and_then(|u| u[k].as_str())
                        .map(str::to_string)
                };
                Ok(Some(Decided {
                    outcome: d.audit.outcome.clone(),
                    state: field("state"),
                    reason: field("reason"),
                }))
            })
        })
        .await?;
    if let Some(d) = &decided {
        tracing::info!(request = %request, kind = kind.label(), actor = %actor, outcome = %d.outcome, "request decided");
        // The decision may have queued alerts (approval, escalation, breach).
        alerts.wake_publisher();
    }
    Ok(decided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::secrets::SecretInfo;
    use crate::inventory::Fleet;
    use chrono::TimeZone;
    use std::path::Path;

    const CFG: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[events]
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
[requests]
levels = { "lead" = "L3", "boss" = "L3", "arn:aws:iam::123456789012:user/mid" = "L2", "arn:aws:iam::123456789012:role/ops/Leads" = "L3" }
[[secret]]
id = "prod/db"
schedule = "0 3 * * *"
window = "2h"
strategy = "single-user"
change_ticket = "CHG-1"
"#;

    fn setup() -> (Config, Fleet) {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), CFG).unwrap();
        let info = SecretInfo {
            name: "prod/db".into(),
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf".into(),
            ..Default::default()
        };
        let fleet = crate::inventory::match_fleet(&cfg, vec![info]);
        (cfg, fleet)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap()
    }

    fn ev(kind: RequestKind, actor: &str) -> RequestEvent {
        RequestEvent {
            kind,
            event_id: format!("ev-{actor}-{kind:?}"),
            request_id: "req-1".into(),
            secret: Some("prod/db".into()),
            ticket: Some("CHG-42".into()),
            reason: Some("quarterly".into()),
            actor: actor.into(),
            claimed_level: None,
            emergency: false,
            comment: None,
            time: now(),
            account: None,
        }
    }

    fn run(existing: Option<&Request>, e: &RequestEvent) -> Decision {
        let (cfg, fleet) = setup();
        let rc = cfg.requests.clone().unwrap();
        let entry = fleet.find("prod/db").cloned();
        decide(&cfg, &rc, existing, entry.as_ref(), e, now())
    }

    fn awaiting() -> Request {
        let d = run(None, &ev(RequestKind::Rotate, "junior"));
        d.insert.unwrap()
    }

    #[test]
    fn an_l3_planned_request_rotates_in_the_next_window() {
        let d = run(None, &ev(RequestKind::Rotate, "lead"));
        let r = d.insert.unwrap();
        assert_eq!(r.state, RequestState::Executing);
        let t = d.trigger.unwrap();
        assert_eq!(
            t.not_before,
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap())
        );
        assert_eq!(
            t.deadline,
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 5, 0, 0).unwrap())
        );
        assert_eq!(t.ticket.as_deref(), Some("CHG-42"));
        assert_eq!(d.update.unwrap()["state"], "executing");
    }

    #[test]
    fn an_l3_emergency_request_rotates_now_and_needs_an_inc() {
        let mut e = ev(RequestKind::Rotate, "lead");
        e.emergency = true;
        let d = run(None, &e);
        assert_eq!(
            d.insert.unwrap().state,
            RequestState::Refused,
            "CHG is not an emergency ticket"
        );
        e.ticket = Some("INC-7".into());
        let d = run(None, &e);
        assert_eq!(d.insert.unwrap().state, RequestState::Executing);
        assert_eq!(d.trigger.unwrap().not_before, None);
    }

    #[test]
    fn a_forged_level_is_recorded_and_ignored() {
        let mut e = ev(RequestKind::Rotate, "junior");
        e.claimed_level = Some("L3".into());
        let d = run(None, &e);
        let r = d.insert.unwrap();
        assert_eq!(r.state, RequestState::AwaitingApproval);
        assert_eq!(r.level, "L1");
        assert_eq!(r.claimed_level.as_deref(), Some("L3"));
        assert!(d.trigger.is_none());
        assert_eq!(d.alerts.len(), 1);
        assert_eq!(d.alerts[0].kind, AlertKind::ApprovalRequested);
        assert_eq!(d.audit.detail.unwrap()["claimed_level_ignored"], true);
        assert_eq!(r.expires_at, Some(now() + chrono::Duration::hours(24)));
    }

    #[test]
    fn requests_without_a_valid_ticket_or_for_unknown_secrets_are_refused_with_the_reason() {
        let mut e = ev(RequestKind::Rotate, "lead");
        e.ticket = Some("INC-1".into());
        let d = run(None, &e);
        assert_eq!(d.insert.as_ref().unwrap().state, RequestState::Refused);
        let why = d.update.unwrap()["reason"].as_str().unwrap().to_string();
        assert!(why.contains("CHG ticket") && why.contains("INC-1"), "{why}");
        e.ticket = None;
        assert_eq!(run(None, &e).insert.unwrap().state, RequestState::Refused);
        let mut e = ev(RequestKind::Rotate, "lead");
        e.secret = Some("prod/other".into());
        let (cfg, _) = setup();
        let d = decide(&cfg, cfg.requests.as_ref().unwrap(), None, None, &e, now());
        assert!(
            d.update.unwrap()["reason"]
                .as_str()
                .unwrap()
                .contains("not managed")
        );
    }

    #[test]
    fn an_approval_after_the_deadline_is_refused_before_the_sweep_closes_it() {
        // Still awaiting approval in the store (the 2 s sweep has not run), but expired.
        let mut r = awaiting();
        let deadline = r.expires_at.unwrap();
        let (cfg, fleet) = setup();
        let rc = cfg.requests.clone().unwrap();
        let entry = fleet.find("prod/db").cloned();
        let approve = ev(RequestKind::Approve, "lead");
        let late = decide(&cfg, &rc, Some(&r), entry.as_ref(), &approve, deadline);
        assert!(
            late.transition.is_none() && late.trigger.is_none(),
            "{late:?}"
        );
        assert_eq!(late.audit.outcome, Outcome::Refused);
        let why = late.audit.reason.unwrap();
        assert!(
            why.contains("expired") && why.contains("file a new request"),
            "{why}"
        );
        // A second before the deadline it is approved.
        let in_time = decide(
            &cfg,
            &rc,
            Some(&r),
            entry.as_ref(),
            &approve,
            deadline - chrono::Duration::seconds(1),
        );
        assert!(in_time.trigger.is_some());
        // A denial after the deadline is refused too: the sweep closes it as expired.
        r.expires_at = Some(now());
        let d = run(Some(&r), &ev(RequestKind::Deny, "lead"));
        assert!(d.transition.is_none(), "{d:?}");
    }

    #[test]
    fn only_another_l3_approves() {
        let r = awaiting();
        let d = run(Some(&r), &ev(RequestKind::Approve, "junior"));
        assert!(d.transition.is_none() && d.trigger.is_none());
        assert!(d.audit.reason.unwrap().contains("self-approval"));
        let d = run(
            Some(&r),
            &ev(RequestKind::Approve, "arn:aws:iam::123456789012:user/mid"),
        );
        assert!(d.transition.is_none());
        assert!(d.audit.reason.unwrap().contains("only L3 may approve"));
        let d = run(Some(&r), &ev(RequestKind::Approve, "lead"));
        let Transition {
            from,
            to,
            decided_by: by,
            ..
        } = d.transition.unwrap();
        assert_eq!(
            (from, to, by.as_deref()),
            (
                RequestState::AwaitingApproval,
                RequestState::Executing,
                Some("lead")
            )
        );
        assert!(d.trigger.unwrap().reason.contains("approved by lead"));
    }

    #[test]
    fn l3_requesters_cannot_approve_their_own_request_either() {
        let mut r = awaiting();
        r.requester = "lead".into();
        let d = run(Some(&r), &ev(RequestKind::Approve, "lead"));
        assert!(d.transition.is_none());
        let d = run(Some(&r), &ev(RequestKind::Approve, "boss"));
        assert!(d.transition.is_some());
    }

    #[test]
    fn denial_by_l3_or_withdrawal_closes_and_a_closed_request_stays_closed() {
        let r = awaiting();
        let d = run(Some(&r), &ev(RequestKind::Deny, "boss"));
        assert_eq!(d.transition.as_ref().unwrap().to, RequestState::Denied);
        let d = run(Some(&r), &ev(RequestKind::Deny, "junior"));
        assert_eq!(
            d.transition.as_ref().unwrap().to,
            RequestState::Denied,
            "the requester may withdraw"
        );
        let d = run(
            Some(&r),
            &ev(RequestKind::Deny, "arn:aws:iam::123456789012:user/mid"),
        );
        assert!(d.transition.is_none());
        let mut closed = r.clone();
        closed.state = RequestState::Expired;
        let d = run(Some(&closed), &ev(RequestKind::Approve, "lead"));
        assert!(d.transition.is_none() && d.trigger.is_none());
        assert_eq!(d.update.unwrap()["state"], "expired");
    }

    #[test]
    fn rollback_is_l3_only() {
        let mut e = ev(RequestKind::Rollback, "arn:aws:iam::123456789012:user/mid");
        e.ticket = Some("INC-9".into());
        let d = run(None, &e);
        assert_eq!(d.insert.as_ref().unwrap().state, RequestState::Refused);
        assert!(d.audit.reason.unwrap().contains("rollback is L3 only"));
        e.actor = "lead".into();
        let d = run(None, &e);
        let r = d.insert.unwrap();
        assert_eq!(
            (r.kind.as_str(), r.state),
            ("rollback", RequestState::Executing)
        );
        assert!(
            d.trigger.is_none(),
            "the request loop rolls back, not the executor"
        );
    }

    #[test]
    fn two_sessions_of_one_role_are_one_requester() {
        let mut r = awaiting();
        // Filed in a session's name (the role was L1 then, say); now the role is L3.
        r.requester = "arn:aws:sts::123456789012:assumed-role/Leads/alice".into();
        let other_session = "arn:aws:sts::123456789012:assumed-role/leads/bob";
        let d = run(Some(&r), &ev(RequestKind::Approve, other_session));
        assert!(d.transition.is_none(), "{d:?}");
        assert!(d.audit.reason.unwrap().contains("self-approval"));
        // Its other session may withdraw it, as the requester may.
        let d = run(Some(&r), &ev(RequestKind::Deny, other_session));
        assert_eq!(d.transition.unwrap().to, RequestState::Denied);
        // Another L3 approves.
        let d = run(Some(&r), &ev(RequestKind::Approve, "lead"));
        assert!(d.transition.is_some());
    }

    #[test]
    fn a_rollback_below_l3_is_escalated_to_security() {
        let mut e = ev(RequestKind::Rollback, "arn:aws:iam::123456789012:user/mid");
        e.ticket = Some("INC-9".into());
        e.reason = Some("app down".into());
        let d = run(None, &e);
        assert_eq!(d.insert.unwrap().state, RequestState::Refused);
        assert_eq!(d.alerts.len(), 1, "{:?}", d.alerts);
        let a = &d.alerts[0];
        assert_eq!(a.kind, AlertKind::RollbackEscalated);
        assert_eq!(a.kind.severity(), crate::alerts::Severity::P2);
        let m = a.message();
        assert_eq!(
            m["details"]["requester"],
            "arn:aws:iam::123456789012:user/mid"
        );
        assert_eq!(m["details"]["level"], "L2");
        assert_eq!(m["details"]["via"], "bus");
        assert_eq!(
            (m["ticket"].as_str(), m["reason"].as_str()),
            (Some("INC-9"), Some("app down"))
        );
        // An L3's rollback is not escalated.
        e.actor = "lead".into();
        assert!(run(None, &e).alerts.is_empty());
    }

    #[test]
    fn an_emergency_request_pages_security_whoever_files_it() {
        for (actor, state) in [
            ("lead", RequestState::Executing),
            ("junior", RequestState::AwaitingApproval),
        ] {
            let mut e = ev(RequestKind::Rotate, actor);
            e.emergency = true;
            e.ticket = Some("INC-5".into());
            let d = run(None, &e);
            assert_eq!(d.insert.as_ref().unwrap().state, state);
            let breach: Vec<&Alert> = d
                .alerts
                .iter()
                .filter(|a| a.kind == AlertKind::BreachSuspected)
                .collect();
            assert_eq!(breach.len(), 1, "{actor}: {:?}", d.alerts);
            assert_eq!(breach[0].kind.severity(), crate::alerts::Severity::P1);
            assert_eq!(breach[0].dedupe_key, "breach_suspected:prod/db:req-1");
            assert_eq!(breach[0].ticket.as_deref(), Some("INC-5"));
        }
        // A planned request is no breach.
        let d = run(None, &ev(RequestKind::Rotate, "lead"));
        assert!(d.alerts.is_empty(), "{:?}", d.alerts);
    }
}
