//! `rotationd status`: live compliance per secret, from one `ListSecrets` scan and the
//! state store: the planner's status, the next window, pending triggers, the last watch
//! of the dependents and the native-schedule drift. In observe mode a table header says
//! so, and each secret's `observed` says what enforce mode would do for its queued
//! triggers and why (the observed attempt's verdict).

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::{CliError, with_app, write_out};
use crate::clock::TIME_FORMAT;
use crate::planner;

/// A row of `rotationd status`.
#[derive(Debug, serde::Serialize)]
pub struct StatusRow {
    pub secret: String,
    pub arn: Option<String>,
    /// Creation of the AWSCURRENT version: the last real rotation (absent for a secret
    /// never rotated: its AWSCURRENT is the value it was created with).
    pub last_rotation: Option<DateTime<Utc>>,
    /// Age of the AWSCURRENT version, rotated or not.
    pub age_days: Option<i64>,
    pub status: String,
    pub next_window: Option<DateTime<Utc>>,
    pub pending: Vec<String>,
    /// The post-rotation watch of the last rotation's dependents: `watching`,
    /// `rolling_back`, `validated` or `validated_unhealthy` (absent when none was watched).
    pub validation: Option<String>,
    /// When the watch ends, while it runs.
    pub watch_until: Option<DateTime<Utc>>,
    /// Secrets Manager's own schedule against the TOML schedule (`[policy] native_schedule`).
    pub native_schedule: Option<crate::drift::Drift>,
    /// The hold after a failure (status `held`): the failed attempt, why, since when.
    pub hold: Option<crate::store::Hold>,
    pub detail: Option<String>,
    /// Observe mode: what enforce mode would do for the queued triggers that observe mode
    /// looked at, and why (`would rotate (departure: ...)`, `would fail (...): WHY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

/// Prints the rows as a table or JSON; with `secret`, only that secret's row (by name or
/// ARN), and an error when it is not managed.
pub fn status(path: &Path, json: bool, secret: Option<&str>) -> Result<(), CliError> {
    with_app(path, async |app| {
        let mut rows = status_rows(app)
            .await
            .map_err(|e| CliError::Failed(format!("{e:#}")))?;
        if let Some(id) = secret {
            rows.retain(|r| r.secret == id || r.arn.as_deref() == Some(id));
            if rows.is_empty() {
                return Err(CliError::Failed(format!(
                    "{id} is not a secret rotationd manages; run rotationd status to list them"
                )));
            }
        }
        let mode = app.cfg.daemon.mode;
        write_out(json, &rows, "status", |out| {
            if mode.is_observe() {
                writeln!(
                    out,
                    "mode: observe ([daemon] mode = \"observe\"): nothing is changed in Secrets Manager; OBSERVED says what enforce mode would do"
                )?;
            }
            write_status_table(out, &rows)
        })?;
        // The events queue is the front door: say when others can send to it.
        if let Some(events) = &app.cfg.events {
            match crate::events::setup::check_queue(events, app.cfg.requests.as_ref(), &app.sqs)
                .await
            {
                Ok(open) => {
                    for line in open {
                        eprintln!("warning: events queue policy: {line}");
                    }
                }
                Err(e) => eprintln!(
                    "warning: cannot read the events queue's policy ({e}); run rotationd setup-events --check"
                ),
            }
        }
        Ok(())
    })
}

/// Computes the status rows: one inventory scan plus the store.
pub async fn status_rows(app: &crate::daemon::App) -> anyhow::Result<Vec<StatusRow>> {
    use crate::inventory;
    let cfg = &app.cfg;
    let now = app.clock.now();
    let mut cache = inventory::AgeCache::default();
    let inv = inventory::scan(&app.engine.sm, cfg, &mut cache).await?;
    for (place, error) in &inv.unreachable {
        // The other accounts are listed; say which are not, and why.
        eprintln!("warning: {place}: cannot list its secrets, so they are missing below: {error}");
    }
    let unfinished = app.store.call(|s| s.db().unfinished_attempts()).await?;
    let last = app.store.call(|s| s.db().last_finished_attempts()).await?;
    let pending = app.store.call(|s| s.db().pending_triggers()).await?;
    let holds = app.store.call(|s| s.db().holds()).await?;
    let observations = observations(app, &pending).await?;
    let policy = cfg.planner_policy();
    let stuck_after = chrono::Duration::from_std(app.engine.opts.monitor_timeout)
        .unwrap_or(chrono::Duration::minutes(15));
    let mut rows = Vec::new();
    for e in &inv.fleet.entries {
        let settings = inventory::settings(cfg, e.origin);
        let active = unfinished.iter().any(|a| a.secret == e.key);
        let last_attempt = last.iter().find(|a| a.secret == e.key);
        let facts = inventory::facts(
            &e.info,
            inv.versions.get(&e.info.arn).map(Vec::as_slice),
            &cache,
            active,
            inventory::left_by_failure(&e.info, last_attempt),
            now,
            stuck_after,
        );
        let target = settings.target(e.key.clone());
        let compliance = planner::compliance(&target, &facts, now, &policy);
        let failing = last_attempt.filter(|a| {
            matches!(
                a.state,
                crate::store::AttemptState::Failed | crate::store::AttemptState::Stuck
            )
        });
        let hold = holds.iter().find(|h| h.secret == e.key).cloned();
        let status =
            inventory::status_label(compliance, failing.is_some(), hold.is_some()).to_string();
        let detail = match &hold {
            Some(h) => Some(format!(
                "held since {} by attempt {}: {}; look, then lift with rotationd resume --secret {} --ticket T --reason TEXT",
                h.held_at.format(TIME_FORMAT),
                h.attempt_id,
                h.reason,
                e.key
            )),
            None => failing.and_then(|a| a.error.clone()),
        };
        let next_window = planner::window_at_or_after(&target, now);
        rows.push(StatusRow {
            secret: e.key.clone(),
            arn: Some(e.info.arn.clone()),
            last_rotation: facts.current_created.filter(|_| facts.ever_rotated),
            age_days: facts.current_created.map(|c| (now - c).num_days()),
            status,
            next_window,
            pending: pending
                .iter()
                .filter(|t| t.secret == e.key)
                .map(|t| t.kind.as_str().to_string())
                .collect(),
            validation: last_attempt
                .and_then(|a| a.validation)
                .map(|v| v.as_str().to_string()),
            watch_until: last_attempt
                .filter(|a| a.validation.is_some_and(|v| v.is_open()))
                .and_then(|a| a.watch_until),
            native_schedule: crate::drift::drift(
                &e.info.native,
                &crate::drift::aws_rules(&settings.schedule, settings.window),
                cfg.policy.native_schedule,
            ),
            hold,
            detail,
            observed: observations.get(&e.key).cloned(),
        });
    }
    for (id, reason) in &inv.fleet.missing {
        rows.push(StatusRow {
            secret: id.clone(),
            arn: None,
            last_rotation: None,
            age_days: None,
            status: "missing".into(),
            next_window: None,
            pending: Vec::new(),
            validation: None,
            watch_until: None,
            native_schedule: None,
            hold: None,
            detail: Some(reason.as_str().to_string()),
            observed: None,
        });
    }
    rows.sort_by(|a, b| a.secret.cmp(&b.secret));
    Ok(rows)
}

/// Per secret, what its queued triggers that observe mode looked at would get in enforce
/// mode: `would rotate (departure: alice left; scheduled: window ...)` from the latest
/// observed attempt's verdict, `: WHY` when it would fail or stick.
async fn observations(
    app: &crate::daemon::App,
    pending: &[crate::store::Trigger],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    use std::collections::HashMap;
    let mut by_secret: HashMap<String, Vec<&crate::store::Trigger>> = HashMap::new();
    for t in pending.iter().filter(|t| t.observed_by.is_some()) {
        by_secret.entry(t.secret.clone()).or_default().push(t);
    }
    let mut out = HashMap::new();
    for (secret, triggers) in by_secret {
        let latest = triggers
            .iter()
            .filter_map(|t| t.observed_by.clone())
            .max()
            .unwrap_or_default();
        let mut attempts = Vec::new();
        for t in &triggers {
            let id = t.observed_by.clone().unwrap_or_default();
            if let Some(a) = app.store.call(move |s| s.db().get_attempt(&id)).await? {
                attempts.push(a);
            }
        }
        // The latest observation speaks for the secret.
        let Some(a) = attempts
            .iter()
            .max_by_key(|a| (a.finished_at, a.id == latest))
        else {
            continue;
        };
        let why: Vec<String> = triggers
            .iter()
            .map(|t| format!("{}: {}", t.kind.as_str(), t.reason))
            .collect();
        let verdict = crate::daemon::observe::verdict_words(
            a.verdict.unwrap_or(crate::store::Verdict::WouldRotate),
            None,
        );
        let at = a.finished_at.map_or(String::new(), |f| {
            format!(", seen {}", f.format(TIME_FORMAT))
        });
        out.insert(
            secret,
            match a.error.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => format!("{verdict} ({}{at}): {e}", why.join("; ")),
                None => format!("{verdict} ({}{at})", why.join("; ")),
            },
        );
    }
    Ok(out)
}

fn write_status_table(out: &mut impl Write, rows: &[StatusRow]) -> std::io::Result<()> {
    let width = rows
        .iter()
        .map(|r| r.secret.len())
        .max()
        .unwrap_or(0)
        .max("SECRET".len());
    writeln!(
        out,
        "{:<width$}  {:<13}  {:<20}  {:>5}  {:<20}  {:<19}  {:<6}  PENDING",
        "SECRET", "STATUS", "LAST ROTATION", "AGE", "NEXT WINDOW", "VALIDATION", "NATIVE"
    )?;
    let t = |d: &Option<DateTime<Utc>>| {
        d.map_or("-".to_string(), |d| d.format(TIME_FORMAT).to_string())
    };
    for r in rows {
        writeln!(
            out,
            "{:<width$}  {:<13}  {:<20}  {:>5}  {:<20}  {:<19}  {:<6}  {}{}{}",
            r.secret,
            r.status,
            match (&r.last_rotation, r.age_days) {
                (None, Some(_)) => "never".to_string(),
                (at, _) => t(at),
            },
            r.age_days.map_or("-".to_string(), |d| format!("{d}d")),
            t(&r.next_window),
            r.validation.as_deref().unwrap_or("-"),
            if r.native_schedule.is_some() {
                "drift"
            } else {
                "ok"
            },
            if r.pending.is_empty() {
                "-".to_string()
            } else {
                r.pending.join(",")
            },
            r.detail
                .as_ref()
                .map_or(String::new(), |d| format!("  ({d})")),
            match (&r.validation, r.watch_until) {
                (Some(v), Some(until)) => format!("  ({v} until {})", until.format(TIME_FORMAT)),
                _ => String::new(),
            }
        )?;
    }
    for r in rows {
        if let Some(o) = &r.observed {
            writeln!(out, "OBSERVED {}: {o}", r.secret)?;
        }
    }
    // One line, not one per secret: a fleet whose rotation functions all run on their own
    // schedule would double the table. `plan --live` and `--format json` have the details.
    let drifting = rows.iter().filter(|r| r.native_schedule.is_some()).count();
    if drifting > 0 {
        writeln!(
            out,
            "{drifting} secret(s) with NATIVE drift: Secrets Manager's own rotation schedule differs from rotationd's; see rotationd plan --live"
        )?;
    }
    Ok(())
}
