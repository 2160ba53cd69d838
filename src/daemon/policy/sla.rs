//! The departure SLA watch: a departure's trigger carries its deadline (so it survives
//! restarts); `departure_sla_at_risk` goes out once inside `[events] sla_warning` of it and
//! `departure_sla_missed` once past it, each once per trigger. The executor runs the watch
//! and sleeps until [`check`] says the next one falls due, instead of looking every few
//! seconds.

use chrono::{DateTime, Utc};

use crate::alerts::{Alert, AlertKind};
use crate::daemon::App;
use crate::store::{TriggerKind, TriggerStatus};

/// One look at the unresolved departures: the earliest deadline in
/// `rotationd_departure_deadline_earliest_timestamp_seconds`, the escalations that are due.
/// Returns when the next one falls due, if any trigger still has one ahead.
pub async fn check(app: &App) -> anyhow::Result<Option<DateTime<Utc>>> {
    let Some(events) = &app.cfg.events else {
        return Ok(None);
    };
    let now = app.clock.now();
    let warning =
        chrono::Duration::from_std(events.sla_warning).unwrap_or(chrono::Duration::hours(4));
    let open = app
        .store
        .call(|s| s.db().unresolved_triggers(TriggerKind::Departure))
        .await?;
    let earliest = open.iter().filter_map(|t| t.deadline).min();
    app.metrics
        .departure_deadline_earliest_timestamp_seconds
        .set(earliest.map_or(0.0, |d| d.timestamp() as f64));
    let mut next: Option<DateTime<Utc>> = None;
    for t in open {
        let Some(deadline) = t.deadline else { continue };
        if let Some(at) = next_escalation(now, deadline, warning) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if t.status == TriggerStatus::Failed {
            // Failed, but a later rotation of the secret (a retry, a manual one) succeeded.
            let secret = t.secret.clone();
            let fixed = app
                .store
                .call(move |s| s.db().last_succeeded_attempt(&secret))
                .await?
                .and_then(|a| a.finished_at)
                .is_some_and(|f| f >= t.updated_at);
            if fixed {
                continue;
            }
        }
        let Some(kind) = escalation(now, deadline, warning) else {
            continue;
        };
        let mut a = Alert::new(kind, Some(&t.secret), now);
        a.trigger = Some("departure".into());
        a.ticket = Some(
            t.ticket
                .clone()
                .unwrap_or_else(|| crate::ticket::INC_PENDING.into()),
        );
        a.reason = Some(t.reason.clone());
        a.deadline = Some(deadline);
        a.dedupe_key = format!("{}:{}", kind.as_str(), t.id);
        a.details = serde_json::json!({ "trigger": t.id, "status": t.status.as_str() });
        app.engine.alerts.raise_once(a).await?;
    }
    Ok(next)
}

/// What a departure with `deadline` calls for at `now`: nothing yet, at risk (inside
/// `warning`), or missed.
fn escalation(
    now: DateTime<Utc>,
    deadline: DateTime<Utc>,
    warning: chrono::Duration,
) -> Option<AlertKind> {
    if now >= deadline {
        Some(AlertKind::DepartureSlaMissed)
    } else if now >= deadline - warning {
        Some(AlertKind::DepartureSlaAtRisk)
    } else {
        None
    }
}

/// When [`escalation`] next changes for this deadline: the start of the warning, then the
/// deadline itself; `None` once missed.
fn next_escalation(
    now: DateTime<Utc>,
    deadline: DateTime<Utc>,
    warning: chrono::Duration,
) -> Option<DateTime<Utc>> {
    [deadline - warning, deadline]
        .into_iter()
        .find(|at| *at > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap()
    }

    #[test]
    fn a_deadline_is_at_risk_inside_the_warning_then_missed() {
        let warning = chrono::Duration::hours(4);
        let deadline = t(20);
        assert_eq!(escalation(t(15), deadline, warning), None);
        assert_eq!(
            escalation(t(16), deadline, warning),
            Some(AlertKind::DepartureSlaAtRisk)
        );
        assert_eq!(
            escalation(t(20), deadline, warning),
            Some(AlertKind::DepartureSlaMissed)
        );
    }

    #[test]
    fn the_watch_wakes_at_the_warning_then_at_the_deadline_then_never() {
        let warning = chrono::Duration::hours(4);
        let deadline = t(20);
        assert_eq!(next_escalation(t(10), deadline, warning), Some(t(16)));
        assert_eq!(next_escalation(t(16), deadline, warning), Some(t(20)));
        assert_eq!(next_escalation(t(21), deadline, warning), None);
    }
}
