//! The storm guard: at most `[events] max_event_rotations_per_hour` event-triggered
//! rotations start in an hour. Past that, event rotations pause (their triggers stay
//! queued), Security is paged once with `rotation_storm`, and the pause is a cursor in the
//! store, so it survives restarts and holds on every instance until `rotationd resume` (or
//! a reload of the leader) lifts it.

use chrono::{DateTime, Utc};

use crate::alerts::{Alert, AlertKind};
use crate::daemon::App;
use crate::store::{StoreHandle, TriggerKind};

/// Trigger kinds that come from events, counted by the storm guard.
pub const EVENT_KINDS: &[TriggerKind] = &[
    TriggerKind::Departure,
    TriggerKind::Compromise,
    TriggerKind::Retry,
];
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
    let value = now.to_rfc3339();
    let mut alert = Alert::new(AlertKind::RotationStorm, None, now);
    alert.error = Some(format!(
        "{started} event-triggered rotations in the last hour (limit {max}); event rotations are paused, triggers stay queued"
    ));
    alert.dedupe_key = format!("rotation_storm:{value}");
    let new = alert.to_new_alert();
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

/// Lifts a pause, as `rotationd resume` does: what a reload of the leader also means.
pub async fn lift_pause(store: &StoreHandle, now: DateTime<Utc>) -> anyhow::Result<()> {
    store
        .call(move |s| {
            s.db().set_cursor(STORM_CURSOR, "", now)?;
            s.db()
                .set_cursor(STORM_RESUMED_CURSOR, &now.to_rfc3339(), now)
        })
        .await?;
    Ok(())
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
}
