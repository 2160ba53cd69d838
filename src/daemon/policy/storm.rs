//! The storm guard: at most `[events] max_event_rotations_per_hour` event-triggered
//! rotations (departures and their retries) start in an hour. A suspected compromise is
//! never held by it, nor is any request (an emergency one included: its trigger is
//! `manual`): they run whatever the count, are not counted against the limit, and are
//! counted apart, in the storm alert and in `rotationd_storm_exempt_rotations_total`
//! ([`note_exempt`]). Past that, event rotations pause (their triggers stay
//! queued), Security is paged once with `rotation_storm`, and the pause is a cursor in the
//! store, so it survives restarts and holds on every instance until `rotationd resume` (or
//! a reload of the leader) lifts it, both through [`lift_pause`], which audits.

use chrono::{DateTime, Utc};

use crate::alerts::{Alert, AlertKind};
use crate::daemon::App;
use crate::store::{StoreError, StoreHandle, TriggerKind};

/// Trigger kinds that come from events and that the storm guard counts and may pause.
/// Not [`TriggerKind::Compromise`]: a suspected compromise rotates at once, always.
pub const EVENT_KINDS: &[TriggerKind] = &[TriggerKind::Departure, TriggerKind::Retry];
/// The state-store cursor holding the storm guard's pause (`paused since RFC3339`).
pub const STORM_CURSOR: &str = "storm_paused";
/// When `rotationd resume` last lifted a pause.
pub const STORM_RESUMED_CURSOR: &str = "storm_resumed";

/// How many more event-triggered rotations may start: 0 when paused, else
/// `max_event_rotations_per_hour` minus those started in the last hour (or since the last
/// `rotationd resume`). When `wanted` more than that are waiting, it pauses event
/// rotations and pages Security; queued triggers stay pending until `rotationd resume`.
pub async fn storm_guard(app: &App, wanted: u64) -> anyhow::Result<u64> {
    let Some(events) = &app.cfg.events else {
        return Ok(u64::MAX);
    };
    let paused = app.store.call(|s| s.db().get_cursor(STORM_CURSOR)).await?;
    if paused.is_some_and(|c| !c.value.is_empty()) {
        return Ok(0);
    }
    let now = app.clock.now();
    let resumed = app
        .store
        .call(|s| s.db().get_cursor(STORM_RESUMED_CURSOR))
        .await?
        .and_then(|c| DateTime::parse_from_rfc3339(&c.value).ok())
        .map(|t| t.with_timezone(&Utc));
    let since = counted_since(now, resumed);
    let started = app
        .store
        .call(move |s| s.db().count_attempts_since(EVENT_KINDS, since))
        .await?;
    let max = u64::from(events.max_event_rotations_per_hour.get());
    let left = max.saturating_sub(started);
    if wanted <= left {
        return Ok(left);
    }
    let compromises = app
        .store
        .call(move |s| {
            s.db()
                .count_attempts_since(&[TriggerKind::Compromise], since)
        })
        .await?;
    let value = now.to_rfc3339();
    let mut alert = Alert::new(AlertKind::RotationStorm, None, now);
    alert.error = Some(format!(
        "{started} event-triggered rotations in the last hour (limit {max}); event rotations are paused, triggers stay queued; {compromises} compromise rotations in the same time, never paused"
    ));
    alert.dedupe_key = format!("rotation_storm:{value}");
    let new = alert.to_new_alert(app.cfg.daemon.mode);
    app.store
        .call(move |s| {
            s.transaction(|db| {
                db.set_cursor(STORM_CURSOR, &value, now)?;
                db.enqueue_alert(&new, now)?;
                db.append_audit(&crate::store::NewAuditEntry {
                    at: now,
                    actor: "rotationd".into(),
                    action: crate::store::audit::Action::StormGuard,
                    secret: None,
                    ticket: None,
                    reason: Some(format!("{started} event rotations in an hour, limit {max}")),
                    outcome: crate::store::audit::Outcome::Paused,
                    detail: None,
                })?;
                Ok(())
            })
        })
        .await?;
    // Queued in this transaction, not through `Alerts::raise`: wake the publisher here.
    app.engine.alerts.wake_publisher();
    tracing::error!(
        started,
        max,
        "rotation storm: event-triggered rotations paused until `rotationd resume`"
    );
    Ok(0)
}

/// Counts a rotation the storm guard lets through uncounted, in
/// `rotationd_storm_exempt_rotations_total{reason}`: a suspected compromise, or an
/// emergency request's rotation (a `manual` trigger: requests are never event kinds, so
/// they are never paused). Others are not counted here.
pub async fn note_exempt(app: &App, t: &crate::store::Trigger) -> Result<(), StoreError> {
    let reason = match t.kind {
        TriggerKind::Compromise => "compromise",
        TriggerKind::Manual => {
            let id = t.id;
            if !app
                .store
                .call(move |s| s.db().is_emergency_request_trigger(id))
                .await?
            {
                return Ok(());
            }
            "emergency_request"
        }
        _ => return Ok(()),
    };
    app.metrics
        .storm_exempt_rotations_total
        .with_label_values(&[reason])
        .inc();
    Ok(())
}

/// Who lifts a pause, for the audit entry: `rotationd resume` run by a person, or a
/// reload of the leader (which means the operator has looked at the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifter {
    /// `rotationd resume`, with the user who ran it.
    Cli { user: String },
    /// A reload (SIGHUP) of the leader.
    Reload,
}

/// Lifts a pause: the one implementation behind `rotationd resume` and a leader's reload.
/// Clears the pause, restarts the hourly count from `now` (else the same rotations would
/// pause again at once) and writes the `storm_guard resumed` audit entry, in one
/// transaction, whether or not a pause was on: the operator's act is what is recorded.
/// Returns since when event rotations were paused, if they were.
pub async fn lift_pause(
    store: &StoreHandle,
    now: DateTime<Utc>,
    by: Lifter,
) -> Result<Option<String>, StoreError> {
    let (actor, reason) = match by {
        Lifter::Cli { user } => (format!("cli:{user}"), None),
        Lifter::Reload => (
            "rotationd".to_string(),
            Some("configuration reloaded".into()),
        ),
    };
    store
        .call(move |s| {
            s.transaction(|db| {
                let was = db.get_cursor(STORM_CURSOR)?;
                db.set_cursor(STORM_CURSOR, "", now)?;
                db.set_cursor(STORM_RESUMED_CURSOR, &now.to_rfc3339(), now)?;
                db.append_audit(&crate::store::NewAuditEntry {
                    at: now,
                    actor: actor.clone(),
                    action: crate::store::audit::Action::StormGuard,
                    secret: None,
                    ticket: None,
                    reason: reason.clone(),
                    outcome: crate::store::audit::Outcome::Resumed,
                    detail: None,
                })?;
                Ok(was.map(|c| c.value).filter(|v| !v.is_empty()))
            })
        })
        .await
}

/// The start of the window whose event rotations count: the last hour, or the last
/// `rotationd resume` if later (else a resume would pause again at once on the same
/// rotations).
fn counted_since(now: DateTime<Utc>, resumed: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let hour_ago = now - chrono::Duration::hours(1);
    resumed.map_or(hour_ago, |r| r.max(hour_ago))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rotations_count_from_the_last_hour_or_the_last_resume_whichever_is_later() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let hour_ago = Utc.with_ymd_and_hms(2026, 11, 25, 11, 0, 0).unwrap();
        assert_eq!(counted_since(now, None), hour_ago);
        let recent = Utc.with_ymd_and_hms(2026, 11, 25, 11, 40, 0).unwrap();
        assert_eq!(counted_since(now, Some(recent)), recent);
        let old = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        assert_eq!(counted_since(now, Some(old)), hour_ago);
    }

    #[tokio::test]
    async fn resume_and_reload_lift_the_pause_the_same_way_and_both_audit() {
        let store = StoreHandle::spawn(crate::store::Store::open_in_memory().unwrap()).unwrap();
        let paused_at = Utc.with_ymd_and_hms(2026, 11, 25, 11, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let since = paused_at.to_rfc3339();
        store
            .call(move |s| s.db().set_cursor(STORM_CURSOR, &since, paused_at))
            .await
            .unwrap();
        let user = Lifter::Cli { user: "ops".into() };
        assert_eq!(
            lift_pause(&store, now, user).await.unwrap(),
            Some(paused_at.to_rfc3339())
        );
        // Not paused any more: a reload still lifts (nothing) and still audits.
        assert_eq!(lift_pause(&store, now, Lifter::Reload).await.unwrap(), None);
        let (paused, resumed) = store
            .call(|s| {
                Ok((
                    s.db().get_cursor(STORM_CURSOR)?,
                    s.db().get_cursor(STORM_RESUMED_CURSOR)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(paused.unwrap().value, "");
        assert_eq!(resumed.unwrap().value, now.to_rfc3339());
        let rows = store
            .call(|s| {
                let mut rows = Vec::new();
                s.db()
                    .audit_log(&crate::store::AuditFilter::default(), |e| {
                        rows.push(format!("{} {} {}", e.actor, e.action, e.outcome));
                        Ok::<(), StoreError>(())
                    })
                    .map(|()| rows)
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![
                "cli:ops storm_guard resumed",
                "rotationd storm_guard resumed"
            ]
        );
    }
}
