//! Observe mode's own bookkeeping (`[daemon] mode = "observe"`), run by the upkeep loop
//! every minute:
//!
//! - **the mode's history**: a cursor remembers the mode the leader last ran in; a start in
//!   another mode (a restart with an edited file) is audited like a reload that changes it
//!   (`config`, with `mode` and `mode_changed_from`), so the audit log says when rotationd
//!   began or stopped acting;
//! - **the daily summary**: once per UTC day, a P3 `observe_summary` to Security with what
//!   the observed attempts of the days since the last one found (would rotate, would fail,
//!   would stick, and why) and how many triggers wait for enforce mode. [`summary`] is pure
//!   and decides the alert on a fixed clock; [`tick`] reads the store and queues it.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};

use super::App;
use crate::alerts::{Alert, AlertKind};
use crate::config::Mode;
use crate::store::{Attempt, Trigger, Verdict};

/// The cursor holding the mode the leader last ran in (`enforce` / `observe`).
pub const MODE_CURSOR: &str = "daemon_mode";
/// The cursor holding the last UTC day (`YYYY-MM-DD`) a summary covered.
pub const SUMMARY_CURSOR: &str = "observe_summary";
/// At most this many lines in a summary; the rest are counted.
const LISTED: usize = 50;

/// One pass: the mode's history, then the summary when a new UTC day began.
pub(super) async fn tick(app: &App) -> anyhow::Result<()> {
    let now = app.clock.now();
    let mode = app.cfg.daemon.mode;
    record_mode(app, mode, now).await?;
    if !mode.is_observe() {
        // A later observe period starts its own summaries.
        app.store
            .call(|s| s.db().delete_cursor(SUMMARY_CURSOR))
            .await?;
        return Ok(());
    }
    let today = now.date_naive();
    let last = app
        .store
        .call(|s| s.db().get_cursor(SUMMARY_CURSOR))
        .await?
        .and_then(|c| NaiveDate::parse_from_str(&c.value, "%Y-%m-%d").ok());
    let Some(last) = last else {
        // The first day in observe mode: the first summary covers it, tomorrow.
        let value = (today - Days::new(1)).to_string();
        app.store
            .call(move |s| s.db().set_cursor(SUMMARY_CURSOR, &value, now))
            .await?;
        return Ok(());
    };
    if last + Days::new(1) >= today {
        return Ok(());
    }
    let from = midnight(last + Days::new(1));
    let to = midnight(today);
    let observed = app
        .store
        .call(move |s| s.db().observed_attempts(from, to))
        .await?;
    let ids: Vec<i64> = observed.iter().filter_map(|a| a.trigger_id).collect();
    let triggers: HashMap<i64, Trigger> = app
        .store
        .call(move |s| {
            let mut out = HashMap::new();
            for id in &ids {
                if let Some(t) = s.db().get_trigger(*id)? {
                    out.insert(*id, t);
                }
            }
            Ok(out)
        })
        .await?;
    let queued = app
        .store
        .call(|s| s.db().pending_triggers())
        .await?
        .into_iter()
        .filter(|t| t.observed_by.is_some())
        .count();
    let alert = summary(&observed, &triggers, queued, from, to, now);
    let value = (today - Days::new(1)).to_string();
    app.engine.alerts.raise_once(alert).await?;
    app.store
        .call(move |s| s.db().set_cursor(SUMMARY_CURSOR, &value, now))
        .await?;
    tracing::info!(from = %from, to = %to, observed = observed.len(), queued, "observe mode: daily summary queued");
    Ok(())
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Audits a mode different from the one the leader last ran in (`config`, outcome `ok`)
/// and remembers it. A reload that changes the mode records it itself
/// ([`set_mode_cursor`]), so it is audited once.
async fn record_mode(app: &App, mode: Mode, now: DateTime<Utc>) -> anyhow::Result<()> {
    let last = app
        .store
        .call(|s| s.db().get_cursor(MODE_CURSOR))
        .await?
        .map(|c| c.value);
    if last.as_deref() == Some(mode.as_str()) {
        return Ok(());
    }
    let entry = crate::store::NewAuditEntry {
        at: now,
        actor: "rotationd".into(),
        action: crate::store::audit::Action::Config,
        secret: None,
        ticket: None,
        reason: Some(match &last {
            Some(from) => format!(
                "started in {} mode (it last ran in {from} mode)",
                mode.as_str()
            ),
            None => format!("started in {} mode", mode.as_str()),
        }),
        outcome: crate::store::audit::Outcome::Ok,
        detail: Some(serde_json::json!({
            "path": app.cfg.path.display().to_string(),
            "sha256": app.cfg.source_sha256,
            "mode": mode.as_str(),
            "mode_changed_from": last,
        })),
    };
    app.store
        .call(move |s| {
            s.transaction(|db| {
                db.append_audit(&entry)?;
                set_mode_cursor(db, mode, now)
            })
        })
        .await?;
    Ok(())
}

/// Remembers `mode` as the one the leader runs in (a reload's audit entry does this in its
/// own transaction).
pub fn set_mode_cursor(
    db: crate::store::Db<'_>,
    mode: Mode,
    now: DateTime<Utc>,
) -> crate::store::StoreResult<()> {
    db.set_cursor(MODE_CURSOR, mode.as_str(), now)
}

/// What enforce mode would have done, in words: `would rotate`, `would fail: WHY`.
pub fn verdict_words(verdict: Verdict, why: Option<&str>) -> String {
    let words = verdict.as_str().replace('_', " ");
    match why.filter(|w| !w.is_empty()) {
        Some(w) => format!("{words}: {w}"),
        None => words,
    }
}

/// The summary of `observed` (the observed attempts that finished in `[from, to)`, with
/// their triggers by id) and of the `queued` triggers waiting for enforce mode, at `now`.
pub fn summary(
    observed: &[Attempt],
    triggers: &HashMap<i64, Trigger>,
    queued: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Alert {
    let count = |v: Verdict| observed.iter().filter(|a| a.verdict == Some(v)).count();
    let (rotate, fail, stick) = (
        count(Verdict::WouldRotate),
        count(Verdict::WouldFail),
        count(Verdict::WouldStick),
    );
    let lines: Vec<String> = observed
        .iter()
        .map(|a| {
            let why = a.trigger_id.and_then(|id| triggers.get(&id)).map_or_else(
                || a.trigger_kind.as_str().to_string(),
                |t| format!("{}: {}", t.kind.as_str(), t.reason),
            );
            let verdict = verdict_words(a.verdict.unwrap_or(Verdict::WouldRotate), None);
            match a.error.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => format!("{}: {verdict} ({why}): {e}", a.secret),
                None => format!("{}: {verdict} ({why})", a.secret),
            }
        })
        .collect();
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut a = Alert::new(AlertKind::ObserveSummary, None, now);
    a.mode = Mode::Observe;
    a.reason = Some(if observed.is_empty() {
        format!(
            "nothing would have been rotated from {} to {}; {queued} trigger(s) wait for enforce mode",
            fmt(from),
            fmt(to)
        )
    } else {
        format!(
            "{rotate} rotation(s) would have been sent from {} to {}, {fail} would have failed, {stick} would have been stuck; {queued} trigger(s) wait for enforce mode",
            fmt(from),
            fmt(to)
        )
    });
    a.details = serde_json::json!({
        "from": fmt(from),
        "to": fmt(to),
        "would_rotate": rotate,
        "would_fail": fail,
        "would_stick": stick,
        "queued_for_enforce": queued,
        "secrets": lines.iter().take(LISTED).collect::<Vec<_>>(),
        "more": lines.len().saturating_sub(LISTED),
        "see": "rotationd status",
    });
    a.dedupe_key = format!("observe_summary:{}", from.date_naive());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AttemptState, TriggerKind, TriggerStatus};
    use chrono::TimeZone;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn attempt(secret: &str, trigger: i64, verdict: Verdict, error: Option<&str>) -> Attempt {
        Attempt {
            id: format!("a-{secret}"),
            trigger_id: Some(trigger),
            secret: secret.into(),
            secret_arn: None,
            trigger_kind: TriggerKind::Departure,
            ticket: None,
            state: AttemptState::Observed,
            client_request_token: format!("rotationd-a-{secret}"),
            previous_version: None,
            new_version: None,
            started_at: t(24, 10),
            updated_at: t(24, 10),
            finished_at: Some(t(24, 10)),
            error: error.map(str::to_string),
            rotate_calls: 0,
            validation: None,
            watch_until: None,
            watch_plan: None,
            watch_evidence: None,
            stage_times: None,
            function_error: None,
            verdict: Some(verdict),
        }
    }

    fn trigger(id: i64, kind: TriggerKind, reason: &str) -> Trigger {
        Trigger {
            id,
            secret: "x".into(),
            kind,
            dedupe_key: None,
            ticket: None,
            reason: reason.into(),
            actor: "rotationd".into(),
            created_at: t(24, 9),
            not_before: None,
            deadline: None,
            status: TriggerStatus::Pending,
            attempt_id: None,
            updated_at: t(24, 9),
            observed_by: Some("a".into()),
        }
    }

    #[test]
    fn the_summary_counts_the_verdicts_and_says_why_for_each_secret() {
        let observed = vec![
            attempt("prod/a", 1, Verdict::WouldRotate, None),
            attempt(
                "prod/b",
                2,
                Verdict::WouldFail,
                Some("rotation is not configured"),
            ),
            attempt("prod/c", 3, Verdict::WouldStick, Some("AWSPENDING on v2")),
        ];
        let triggers: HashMap<i64, Trigger> = [
            (1, trigger(1, TriggerKind::Departure, "alice left")),
            (
                2,
                trigger(2, TriggerKind::Scheduled, "window 02:00 .. 06:00"),
            ),
            (3, trigger(3, TriggerKind::Compromise, "key in a log")),
        ]
        .into();
        let a = summary(&observed, &triggers, 4, t(24, 0), t(25, 0), t(25, 0));
        assert_eq!(a.kind, AlertKind::ObserveSummary);
        assert_eq!(a.mode, Mode::Observe);
        assert_eq!(a.dedupe_key, "observe_summary:2026-11-24");
        assert_eq!(
            a.reason.as_deref(),
            Some(
                "1 rotation(s) would have been sent from 2026-11-24T00:00:00Z to 2026-11-25T00:00:00Z, 1 would have failed, 1 would have been stuck; 4 trigger(s) wait for enforce mode"
            )
        );
        assert_eq!(
            a.details["secrets"],
            serde_json::json!([
                "prod/a: would rotate (departure: alice left)",
                "prod/b: would fail (scheduled: window 02:00 .. 06:00): rotation is not configured",
                "prod/c: would stick (compromise: key in a log): AWSPENDING on v2",
            ])
        );
        assert_eq!(a.details["queued_for_enforce"], 4);
        assert_eq!(a.details["would_rotate"], 1);
        // The subject says it changed nothing.
        assert_eq!(a.subject(), "[observe] [P3] observe_summary");
    }

    #[test]
    fn an_empty_day_still_reports_and_long_lists_are_cut() {
        let a = summary(&[], &HashMap::new(), 0, t(24, 0), t(25, 0), t(25, 0));
        assert!(
            a.reason
                .as_deref()
                .unwrap()
                .starts_with("nothing would have been rotated")
        );
        let many: Vec<Attempt> = (0..60)
            .map(|i| attempt(&format!("s{i}"), i, Verdict::WouldRotate, None))
            .collect();
        let a = summary(&many, &HashMap::new(), 0, t(24, 0), t(25, 0), t(25, 0));
        assert_eq!(a.details["secrets"].as_array().unwrap().len(), LISTED);
        assert_eq!(a.details["more"], 10);
        assert_eq!(a.details["would_rotate"], 60);
    }
}
