//! The CLI commands, kept in the library so that they are testable and `main.rs` stays a
//! thin parser. Each returns the process exit code: 0 ok, 1 failure, 2 invalid config.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::{Config, ConfigError};
use crate::planner;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_INVALID: u8 = 2;

/// Loads the config, printing warnings; on failure prints why and returns the exit code.
pub fn load_config(path: &Path) -> Result<Config, u8> {
    match Config::load(path) {
        Ok((cfg, diags)) => {
            for w in diags.warnings() {
                eprintln!("{w}");
            }
            Ok(cfg)
        }
        Err(ConfigError::Invalid(diags)) => {
            for (_, line) in diags.lines() {
                eprintln!("{line}");
            }
            eprintln!(
                "{}: {} error(s); the configuration was not accepted",
                path.display(),
                diags.error_count()
            );
            Err(EXIT_INVALID)
        }
        Err(e @ ConfigError::Read { .. }) => {
            eprintln!("error: {e}");
            Err(EXIT_FAILURE)
        }
    }
}

/// `rotationd validate`.
pub fn validate(path: &Path) -> u8 {
    match load_config(path) {
        Ok(cfg) => {
            println!(
                "config OK: {} secrets, {} selectors",
                cfg.secrets.len(),
                cfg.selectors.len()
            );
            EXIT_OK
        }
        Err(code) => code,
    }
}

/// `rotationd plan`: the coming windows from the configuration alone.
pub fn plan(path: &Path, from: Option<&str>, days: u32, json: bool) -> u8 {
    let cfg = match load_config(path) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let from: DateTime<Utc> = match from {
        None => Utc::now(),
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                eprintln!(
                    "error: invalid --from `{s}`: {e}; use RFC 3339 like 2027-01-01T00:00:00Z"
                );
                return EXIT_INVALID;
            }
        },
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
    // Streamed: a year of a large fleet is hundreds of thousands of entries.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &plan.entries)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        write_table(&mut out, &plan.entries)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write the plan: {e}");
            EXIT_FAILURE
        }
    }
}

/// `rotationd run`.
pub fn run(path: &Path) -> u8 {
    if let Err(code) = load_config(path) {
        return code;
    }
    eprintln!(
        "error: `rotationd run` arrives with the rotation engine ([F2]); use `validate` and `plan` for now"
    );
    EXIT_FAILURE
}

/// Planner targets for an offline plan: each `[[secret]]`, and each `[[selector]]` listed
/// as the selector itself since matching it needs AWS.
pub fn offline_targets(cfg: &Config) -> Vec<planner::Target> {
    let target = |id: String, s: &crate::config::SecretSettings| planner::Target {
        id,
        schedule: s.schedule.clone(),
        window: chrono::Duration::from_std(s.window).unwrap_or(chrono::Duration::MAX),
        ticket: s.change_ticket.clone(),
    };
    cfg.secrets
        .iter()
        .map(|s| target(s.id.clone(), &s.settings))
        .chain(
            cfg.selectors
                .iter()
                .map(|s| target(s.matcher.to_string(), &s.settings)),
        )
        .collect()
}

/// The planner's policy from the config.
pub fn policy(cfg: &Config) -> planner::Policy {
    planner::Policy {
        max_age: chrono::Duration::from_std(cfg.policy.max_age).unwrap_or(chrono::Duration::MAX),
        max_rotations_per_minute: cfg.daemon.max_rotations_per_minute,
    }
}

/// The plan from the configuration alone: every window is `scheduled`.
pub fn offline_plan(cfg: &Config, from: DateTime<Utc>, until: DateTime<Utc>) -> planner::Plan {
    planner::plan(&offline_targets(cfg), &|_| None, from, until, &policy(cfg))
}

pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

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
