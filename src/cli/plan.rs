//! `rotationd plan`: the coming rotation windows from the configuration alone (no AWS
//! call), or with `--live` each secret's TOML schedule next to Secrets Manager's own.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::{CliError, load_config, with_app, write_out};
use crate::clock::TIME_FORMAT;
use crate::config::Config;
use crate::planner;

/// Prints the windows from `from` (RFC 3339; default now) for `days`, as a table or JSON;
/// a window too full for `max_rotations_per_minute` is warned about on stderr.
pub fn plan(path: &Path, from: Option<&str>, days: u32, json: bool) -> Result<(), CliError> {
    let cfg = load_config(path)?;
    let from: DateTime<Utc> = match from {
        None => Utc::now(),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                CliError::Invalid(format!(
                    "invalid --from `{s}`: {e}; use RFC 3339 like 2027-01-01T00:00:00Z"
                ))
            })?
            .with_timezone(&Utc),
    };
    let until = from + chrono::Duration::days(i64::from(days));
    let plan = offline_plan(&cfg, from, until);
    for over in &plan.over_capacity {
        eprintln!(
            "warning: the window {} .. {} is full ([daemon] max_rotations_per_minute = {}); `{}` starts at its last minute",
            over.window_start.format(TIME_FORMAT),
            over.window_end.format(TIME_FORMAT),
            cfg.daemon.max_rotations_per_minute,
            over.secret
        );
    }
    write_out(json, &plan.entries, "plan", |out| {
        write_table(out, &plan.entries)
    })
}

/// A row of `rotationd plan --live`: the TOML schedule next to Secrets Manager's own.
#[derive(Debug, serde::Serialize)]
pub struct LiveScheduleRow {
    pub secret: String,
    pub arn: String,
    /// The crontab schedule and window from the TOML file.
    pub schedule: String,
    pub window: String,
    /// The same written in Secrets Manager's syntax, or why it cannot be.
    pub as_aws: String,
    /// What Secrets Manager holds (`RotationRules`, or `off`).
    pub secrets_manager: String,
    pub next_window: Option<DateTime<Utc>>,
    /// Present when the two disagree in a way `[policy] native_schedule` cares about.
    pub drift: Option<crate::drift::Drift>,
}

/// `rotationd plan --live`: one inventory scan, and per secret both schedules side by side.
pub fn plan_live(path: &Path, json: bool) -> Result<(), CliError> {
    with_app(path, async |app| {
        let cfg = &app.cfg;
        let now = app.clock.now();
        let mut cache = crate::inventory::AgeCache::default();
        let inv = crate::inventory::scan(&app.engine.sm, cfg, &mut cache)
            .await
            .map_err(|e| CliError::Failed(format!("cannot list the secrets: {e:#}")))?;
        let mut rows: Vec<LiveScheduleRow> = inv
            .fleet
            .entries
            .iter()
            .map(|e| {
                let settings = crate::inventory::settings(cfg, e.origin);
                let expected = crate::drift::aws_rules(&settings.schedule, settings.window);
                LiveScheduleRow {
                    secret: e.key.clone(),
                    arn: e.info.arn.clone(),
                    schedule: settings.schedule.as_str().to_string(),
                    window: crate::config::fmt_duration(settings.window),
                    as_aws: crate::drift::describe_expected(&expected),
                    secrets_manager: crate::drift::describe_native(&e.info.native),
                    next_window: settings.schedule.next_after(now),
                    drift: crate::drift::drift(
                        &e.info.native,
                        &expected,
                        cfg.policy.native_schedule,
                    ),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.secret.cmp(&b.secret));
        for (id, reason) in &inv.fleet.missing {
            eprintln!("warning: {id} is {}", reason.as_str());
        }
        write_out(json, &rows, "plan", |out| {
            write_live_table(out, &rows, cfg.policy.native_schedule)
        })
    })
}

fn write_live_table(
    out: &mut impl Write,
    rows: &[LiveScheduleRow],
    mode: crate::drift::NativeSchedule,
) -> std::io::Result<()> {
    let w = |f: &dyn Fn(&LiveScheduleRow) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let ws = w(&|r| r.secret.len(), "SECRET");
    let wt = w(
        &|r| r.schedule.len() + r.window.len() + 5,
        "ROTATIOND (TOML)",
    );
    let wa = w(&|r| r.as_aws.len(), "AS SECRETS MANAGER RULES");
    let wn = w(&|r| r.secrets_manager.len(), "SECRETS MANAGER NOW");
    writeln!(out, "native_schedule = \"{}\"", mode.as_str())?;
    writeln!(
        out,
        "{:<ws$}  {:<wt$}  {:<wa$}  {:<wn$}  {:<20}  DRIFT",
        "SECRET",
        "ROTATIOND (TOML)",
        "AS SECRETS MANAGER RULES",
        "SECRETS MANAGER NOW",
        "NEXT WINDOW"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<ws$}  {:<wt$}  {:<wa$}  {:<wn$}  {:<20}  {}",
            r.secret,
            format!("{} for {}", r.schedule, r.window),
            r.as_aws,
            r.secrets_manager,
            r.next_window
                .map_or("-".to_string(), |d| d.format(TIME_FORMAT).to_string()),
            r.drift.as_ref().map_or("-".to_string(), |d| d.why.clone()),
        )?;
    }
    Ok(())
}

/// Planner targets for an offline plan: each `[[secret]]`, and each `[[selector]]` listed
/// as the selector itself since matching it needs AWS.
pub fn offline_targets(cfg: &Config) -> Vec<planner::Target> {
    cfg.secrets
        .iter()
        .map(|s| s.settings.target(s.id.clone()))
        .chain(
            cfg.selectors
                .iter()
                .map(|s| s.settings.target(s.matcher.to_string())),
        )
        .collect()
}

/// The plan from the configuration alone: every window is `scheduled`.
pub fn offline_plan(cfg: &Config, from: DateTime<Utc>, until: DateTime<Utc>) -> planner::Plan {
    planner::plan(
        &offline_targets(cfg),
        &|_| None,
        from,
        until,
        &cfg.planner_policy(),
    )
}

/// A plain-text table, one entry per line, in the planner's order.
pub fn write_table(out: &mut impl Write, entries: &[planner::PlanEntry]) -> std::io::Result<()> {
    let width = entries
        .iter()
        .map(|e| e.secret.len())
        .max()
        .unwrap_or(0)
        .max("SECRET".len());
    writeln!(
        out,
        "{:<20}  {:<20}  {:<20}  {:<width$}  {:<13}  TICKET",
        "START", "WINDOW START", "WINDOW END", "SECRET", "REASON"
    )?;
    for e in entries {
        writeln!(
            out,
            "{:<20}  {:<20}  {:<20}  {:<width$}  {:<13}  {}",
            e.start_at.format(TIME_FORMAT).to_string(),
            e.window_start.format(TIME_FORMAT).to_string(),
            e.window_end.format(TIME_FORMAT).to_string(),
            e.secret,
            e.reason.as_str(),
            e.ticket.as_deref().unwrap_or("-")
        )?;
    }
    if entries.is_empty() {
        writeln!(out, "(no windows in this period)")?;
    }
    Ok(())
}
