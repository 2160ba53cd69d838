//! Departures: who left (resolved through the Identity Center directory when the event
//! names only a user id), which secrets they could reach (custodians, `[[group]]`s and
//! Identity Center groups, user names in any case), and when each rotation may start and
//! must end (the SLA counts from the earlier of the event's time and its receipt).

use chrono::{DateTime, Duration, Utc};

use super::EventPlan;
use super::normalize::DepartureEvent;
use crate::alerts::{Alert, AlertKind};
use crate::config::{Config, Custodian};
use crate::directory::{Departed, Directory, Resolution};
use crate::inventory::{Fleet, FleetEntry};
use crate::store::audit::Outcome;
use crate::store::{NewTrigger, TriggerKind};

/// The secrets `who` could reach: those naming one of the departed's names (any case, as
/// IAM and Identity Center compare user names) as a custodian, or a group they were in:
/// a `[[group]]` listing one of the names, or an Identity Center group of theirs.
pub fn reachable<'a>(cfg: &Config, fleet: &'a Fleet, who: &Departed) -> Vec<&'a FleetEntry> {
    fleet
        .entries
        .iter()
        .filter(|e| {
            let settings = crate::inventory::settings(cfg, e.origin);
            settings.custodians.iter().any(|c| match c {
                Custodian::User(u) => who.is(u),
                Custodian::Group(g) => {
                    who.groups.contains(g)
                        || cfg
                            .groups
                            .iter()
                            .find(|x| &x.name == g)
                            .is_some_and(|x| x.members.iter().any(|m| who.is(m)))
                }
            })
        })
        .collect()
}

/// When a departure rotation may start: in the secret's next window (or the one open now)
/// if that window ends before the deadline, otherwise at once.
pub fn departure_not_before(
    cfg: &Config,
    entry: &FleetEntry,
    now: DateTime<Utc>,
    deadline: DateTime<Utc>,
) -> DateTime<Utc> {
    let settings = crate::inventory::settings(cfg, entry.origin);
    let target = settings.target(entry.key.clone());
    // Windows are no longer than the schedule's shortest gap, so when the open window
    // ends past the deadline the next one does too: one candidate is enough.
    match crate::planner::window_at_or_after(&target, now) {
        Some(start) if start + target.window <= deadline => start.max(now),
        _ => now,
    }
}

/// How far ahead of its receipt an event's own time is still believed (clocks differ a
/// little); beyond it the receipt time is used and the claim recorded.
pub const FUTURE_SKEW: Duration = Duration::minutes(5);

/// The time a departure's SLA counts from: the earlier of the event's own time and its
/// receipt, so that a sender cannot buy time by dating an event ahead. `true` when the
/// event's time was more than [`FUTURE_SKEW`] ahead (clamped, and worth recording).
pub fn sla_start(event_time: DateTime<Utc>, received: DateTime<Utc>) -> (DateTime<Utc>, bool) {
    (
        event_time.min(received),
        event_time > received + FUTURE_SKEW,
    )
}

pub(super) fn plan_departure(
    cfg: &Config,
    fleet: &Fleet,
    directory: Option<&Directory>,
    d: &DepartureEvent,
    now: DateTime<Utc>,
    sla: Duration,
    plan: &mut EventPlan,
) {
    let (start, clamped) = sla_start(d.time, now);
    let deadline = start + sla;
    if clamped {
        tracing::warn!(event = %d.event_id, event_time = %d.time.to_rfc3339(), received = %now.to_rfc3339(), "a departure dated in the future; its SLA counts from its receipt");
    }
    plan.audit.reason = Some(format!("departure of {}", d.user));
    let who = match crate::directory::resolve(directory, &d.user, d.user_id.as_deref()) {
        Resolution::Known(who) => who,
        Resolution::Unresolved { user_id } => {
            plan_unresolved(cfg, directory, d, &user_id, deadline, plan);
            return;
        }
    };
    // Who it was, when only the directory could tell.
    let named = who.names.first().cloned().unwrap_or_else(|| d.user.clone());
    if named != d.user {
        plan.audit.reason = Some(format!("departure of {named} (user id {})", d.user));
    }
    let reach = reachable(cfg, fleet, &who);
    if reach.is_empty() {
        plan.audit.outcome = Outcome::NoSecrets;
        plan.audit.detail = Some(serde_json::json!({
            "event_id": d.event_id,
            "user": named,
            "user_id": who.user_id,
            "names": who.names,
            "identity_center_groups": who.groups,
            "source": d.source,
        }));
        plan.unmatched = Some("no_secrets");
        return;
    }
    let mut detail = serde_json::json!({
        "event_id": d.event_id,
        "user": named,
        "user_id": who.user_id,
        "identity_center_groups": who.groups,
        "deadline": deadline.to_rfc3339(),
        "secrets": reach.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
    });
    if clamped {
        detail["event_time_in_future"] = serde_json::json!(d.time.to_rfc3339());
        detail["received"] = serde_json::json!(now.to_rfc3339());
    }
    plan.audit.detail = Some(detail);
    for entry in reach {
        plan.triggers.push(NewTrigger {
            secret: entry.key.clone(),
            kind: TriggerKind::Departure,
            dedupe_key: Some(format!("event:{}:{}", d.event_id, entry.info.arn)),
            // Events carry no ticket: the attempt records INC-pending and says so.
            ticket: None,
            reason: format!("departure of {named} ({})", d.source),
            actor: format!("event:{}", d.source),
            created_at: now,
            not_before: Some(departure_not_before(cfg, entry, now, deadline)),
            deadline: Some(deadline),
        });
    }
}

/// A departure naming only a user id that no directory knows: nothing can be rotated,
/// so a person must find out who it was (P2 `departure_unresolved`, audited).
fn plan_unresolved(
    cfg: &Config,
    directory: Option<&Directory>,
    d: &DepartureEvent,
    user_id: &str,
    deadline: DateTime<Utc>,
    plan: &mut EventPlan,
) {
    let why = match (&cfg.identity_center, directory) {
        (None, _) => "no [identity_center] is configured to look the id up in".to_string(),
        (Some(ic), Some(dir)) if dir.taken_at.is_some() => format!(
            "identity store {} does not list it and no earlier listing saw it",
            ic.identity_store_id
        ),
        (Some(ic), _) => format!(
            "identity store {} has not been read yet and no earlier listing saw it",
            ic.identity_store_id
        ),
    };
    plan.audit.outcome = Outcome::Unresolved;
    plan.audit.reason = Some(format!("departure of user id {user_id}: {why}"));
    plan.audit.detail = Some(serde_json::json!({
        "event_id": d.event_id, "user_id": user_id, "source": d.source,
    }));
    plan.unmatched = Some("unresolved");
    let mut a = Alert::new(AlertKind::DepartureUnresolved, None, d.time);
    a.trigger = Some("departure".into());
    a.reason = Some(format!("departure of user id {user_id} ({})", d.source));
    a.error = Some(format!("cannot tell who user id {user_id} is: {why}"));
    a.deadline = Some(deadline);
    a.dedupe_key = format!("departure_unresolved:{}", d.event_id);
    a.details = serde_json::json!({
        "event_id": d.event_id,
        "user_id": user_id,
        "source": d.source,
        "identity_store_id": cfg.identity_center.as_ref().map(|ic| ic.identity_store_id.clone()),
    });
    plan.alerts.push(a);
}
