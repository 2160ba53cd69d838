//! The CLI commands, kept in the library so that they are testable and `main.rs` stays a
//! thin parser. Each returns the process exit code: 0 ok, 1 failure, 2 invalid config.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

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
pub fn plan_live(path: &Path, json: bool) -> u8 {
    with_app(path, async |app| {
        let cfg = &app.cfg;
        let now = app.clock.now();
        let mut cache = crate::inventory::AgeCache::default();
        let inv = match crate::inventory::scan(&app.engine.sm, cfg, &mut cache).await {
            Ok(inv) => inv,
            Err(e) => {
                eprintln!("error: cannot list the secrets: {e:#}");
                return EXIT_FAILURE;
            }
        };
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

/// Writes `value` to stdout as pretty JSON, or as `table` writes it; buffered, because a
/// year of a large fleet is hundreds of thousands of lines. A closed pipe (`| head`) is the
/// reader's choice, not a failure.
fn write_out<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    what: &str,
    table: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> u8 {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json {
        serde_json::to_writer_pretty(&mut out, value)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        table(&mut out)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write the {what}: {e}");
            EXIT_FAILURE
        }
    }
}

/// A multi-threaded runtime for the commands that talk to AWS.
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            EXIT_FAILURE
        })
}

/// `rotationd run`: the daemon, until SIGTERM or SIGINT; SIGHUP reloads the config.
pub fn run(path: &Path) -> u8 {
    let cfg = match load_config(path) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let reload = std::sync::Arc::new(tokio::sync::Notify::new());
        let (signals, reloads) = (cancel.clone(), reload.clone());
        tokio::spawn(async move {
            watch_signals(reloads).await;
            signals.cancel();
        });
        match crate::daemon::run(path.to_path_buf(), cfg, cancel, reload).await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("error: {e:#}");
                EXIT_FAILURE
            }
        }
    })
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop rotationd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Returns on SIGTERM or SIGINT; each SIGHUP wakes `reload`.
async fn watch_signals(reload: std::sync::Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload by restarting");
        return wait_for_shutdown_signal().await;
    };
    let stop = wait_for_shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the configuration");
                reload.notify_one();
            }
        }
    }
}

/// `rotationd setup-events`: the EventBridge rules, targets and queue policy.
pub fn setup_events(path: &Path) -> u8 {
    with_app(path, async |app| {
        let Some(events) = &app.cfg.events else {
            eprintln!(
                "error: the configuration has no [events] section; add one with queue_url first"
            );
            return EXIT_INVALID;
        };
        match crate::events::setup::apply(
            events,
            app.cfg.requests.as_ref(),
            &app.eventbridge,
            &app.sqs,
        )
        .await
        {
            Ok(report) => {
                for (what, change) in &report {
                    println!("{what}: {}", change.as_str());
                }
                let changed = report
                    .iter()
                    .filter(|(_, c)| *c != crate::events::setup::Change::Unchanged)
                    .count();
                println!("{changed} change(s) on bus {}", events.event_bus);
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_FAILURE
            }
        }
    })
}

/// `rotationd resume`: lifts the storm guard's pause on event-triggered rotations.
pub fn resume(path: &Path) -> u8 {
    with_app(path, async |app| {
        let now = app.clock.now();
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        let result = app
            .store
            .call(move |s| {
                s.transaction(|db| {
                    let was = db.get_cursor(crate::daemon::STORM_CURSOR)?;
                    db.set_cursor(crate::daemon::STORM_CURSOR, "", now)?;
                    db.set_cursor(crate::daemon::STORM_RESUMED_CURSOR, &now.to_rfc3339(), now)?;
                    db.append_audit(&crate::store::NewAuditEntry {
                        at: now,
                        actor: format!("cli:{user}"),
                        action: crate::store::audit::Action::StormGuard,
                        secret: None,
                        ticket: None,
                        reason: None,
                        outcome: crate::store::audit::Outcome::Resumed,
                        detail: None,
                    })?;
                    Ok(was.filter(|c| !c.value.is_empty()).map(|c| c.value))
                })
            })
            .await;
        match result {
            Ok(Some(since)) => {
                println!("event-triggered rotations resumed (paused since {since})");
                EXIT_OK
            }
            Ok(None) => {
                println!("event-triggered rotations were not paused");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_FAILURE
            }
        }
    })
}

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
    pub detail: Option<String>,
}

/// `rotationd status`: live compliance per secret.
pub fn status(path: &Path, json: bool) -> u8 {
    with_app(path, async |app| {
        let rows = match status_rows(app).await {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("error: {e:#}");
                return EXIT_FAILURE;
            }
        };
        write_out(json, &rows, "status", |out| write_status_table(out, &rows))
    })
}

/// Loads the config, builds the shared [`crate::daemon::App`] on a runtime, runs `f` and
/// closes the state store: the frame of every one-shot command that talks to AWS.
fn with_app(path: &Path, f: impl AsyncFnOnce(&crate::daemon::App) -> u8) -> u8 {
    let cfg = match load_config(path) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let app = match crate::daemon::App::build(cfg).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("error: {e:#}");
                return EXIT_FAILURE;
            }
        };
        let code = f(&app).await;
        app.store.shutdown().await.ok();
        code
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
    let policy = policy(cfg);
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
        let status = inventory::status_label(compliance, failing.is_some()).to_string();
        let next_window =
            planner::open_window_start(&target, now).or_else(|| settings.schedule.next_after(now));
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
            detail: failing.and_then(|a| a.error.clone()),
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
            detail: Some(reason.as_str().to_string()),
        });
    }
    rows.sort_by(|a, b| a.secret.cmp(&b.secret));
    Ok(rows)
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

/// `rotationd rotate`: the whole pipeline now, progress on stderr.
pub fn rotate(path: &Path, secret: &str, ticket: &str, reason: &str, emergency: bool) -> u8 {
    let ticket_ok = if emergency {
        crate::ticket::is_ticket(ticket, "INC")
    } else {
        crate::ticket::is_ticket(ticket, "INC") || crate::ticket::is_ticket(ticket, "CHG")
    };
    if !ticket_ok {
        eprintln!(
            "error: ticket `{ticket}` must look like INC-123{}",
            if emergency {
                " (emergency rotations need an INC ticket)"
            } else {
                " or CHG-123"
            }
        );
        return EXIT_INVALID;
    }
    with_app(path, async |app| {
        rotate_now(app, secret, ticket, reason, emergency).await
    })
}

async fn rotate_now(
    app: &crate::daemon::App,
    secret: &str,
    ticket: &str,
    reason: &str,
    emergency: bool,
) -> u8 {
    use crate::engine::{Outcome, RotationRequest};
    let info = match app.engine.sm.describe(secret).await {
        Ok(info) => info,
        Err(e) => {
            eprintln!("error: cannot describe {secret}: {e}");
            return EXIT_FAILURE;
        }
    };
    // Match on the secret as if live: a secret being deleted is still ours, and the
    // preflight says why it cannot rotate.
    let mut live = info.clone();
    live.deleted = None;
    let fleet =
        crate::inventory::match_fleet_keyed(&app.cfg, vec![live], app.engine.sm.is_routed());
    let Some(entry) = fleet.entries.first() else {
        eprintln!(
            "error: secret {secret} is not managed by this configuration; add it as a [[secret]] or match it with a [[selector]]"
        );
        return EXIT_FAILURE;
    };
    let settings = crate::inventory::settings(&app.cfg, entry.origin);
    let now = app.clock.now();
    if !emergency {
        let target = settings.target(entry.key.clone());
        if planner::open_window_start(&target, now).is_none() {
            let next = settings
                .schedule
                .next_after(now)
                .map_or("never".to_string(), |t| t.format(TIME_FORMAT).to_string());
            eprintln!(
                "error: {secret} is outside its rotation window (next opens at {next}); wait for it, or use --emergency with an INC ticket to rotate now"
            );
            return EXIT_FAILURE;
        }
    }
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let req = RotationRequest {
        secret: entry.key.clone(),
        kind: crate::store::TriggerKind::Manual,
        ticket: Some(ticket.to_string()),
        reason: reason.to_string(),
        actor: format!("cli:{user}"),
        emergency,
    };
    let attempt = match app
        .engine
        .create_manual_attempt(&req, Some(info.arn.clone()))
        .await
    {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILURE;
        }
    };
    eprintln!(
        "rotating {} (attempt {attempt}, ticket {ticket})",
        entry.key
    );
    let progress = |msg: &str| eprintln!("  {msg}");
    let cancel = CancellationToken::new();
    let signals = cancel.clone();
    let watcher = tokio::spawn(async move {
        wait_for_shutdown_signal().await;
        signals.cancel();
    });
    let result = app.engine.drive(&attempt, &progress, &cancel).await;
    watcher.abort();
    // Deliver what the attempt queued (dependents' notice, escalation) now; whatever
    // cannot be sent stays in the outbox for the daemon.
    if let Err(e) = crate::alerts::publish_due(&app.store, &app.sns, &app.cfg, &app.metrics).await {
        eprintln!("warning: alerts stay in the outbox: {e}");
    }
    match result {
        Ok(Outcome::Succeeded { new_version }) => {
            eprintln!("rotated {}: AWSCURRENT is now {new_version}", entry.key);
            EXIT_OK
        }
        Ok(Outcome::Failed(e)) | Ok(Outcome::Stuck(e)) | Ok(Outcome::Skipped(e)) => {
            eprintln!("error: rotation of {} did not complete: {e}", entry.key);
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("error: rotation of {} paused: {e}", entry.key);
            EXIT_FAILURE
        }
    }
}

/// `rotationd rollback`: AWSCURRENT back to the AWSPREVIOUS version, verified, audited.
pub fn rollback(path: &Path, secret: &str, ticket: &str, reason: &str) -> u8 {
    if !(crate::ticket::is_ticket(ticket, "INC") || crate::ticket::is_ticket(ticket, "CHG")) {
        eprintln!("error: ticket `{ticket}` must look like INC-123 or CHG-123");
        return EXIT_INVALID;
    }
    with_app(path, async |app| {
        rollback_now(app, secret, ticket, reason).await
    })
}

async fn rollback_now(app: &crate::daemon::App, secret: &str, ticket: &str, reason: &str) -> u8 {
    use crate::aws::secrets::AWSCURRENT;
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    use crate::store::audit::{Action, Outcome};
    let audit = |outcome: Outcome, detail: serde_json::Value| crate::store::NewAuditEntry {
        at: app.clock.now(),
        actor: format!("cli:{user}"),
        action: Action::Rollback,
        secret: Some(secret.to_string()),
        ticket: Some(ticket.to_string()),
        reason: Some(reason.to_string()),
        outcome,
        detail: Some(detail),
    };
    let record = |entry: crate::store::NewAuditEntry| {
        app.store
            .call(move |s| s.db().append_audit(&entry).map(|_| ()))
    };
    let info = match app.engine.sm.describe(secret).await {
        Ok(info) => info,
        Err(e) => {
            eprintln!("error: cannot describe {secret}: {e}");
            return EXIT_FAILURE;
        }
    };
    let (Some(current), Some(previous)) = (
        info.current_version().map(str::to_string),
        info.previous_version().map(str::to_string),
    ) else {
        let why = "no AWSPREVIOUS version: there is nothing to roll back to";
        eprintln!("error: refusing to roll back {secret}: {why}");
        record(audit(Outcome::Refused, serde_json::json!({ "error": why })))
            .await
            .ok();
        return EXIT_FAILURE;
    };
    eprintln!("rolling back {secret}: AWSCURRENT {current} -> {previous} (ticket {ticket})");
    if let Err(e) = app
        .engine
        .sm
        .move_label(secret, AWSCURRENT, &previous, &current)
        .await
    {
        eprintln!("error: UpdateSecretVersionStage failed: {e}");
        record(audit(
            Outcome::Failed,
            serde_json::json!({ "error": e.to_string(), "from": current, "to": previous }),
        ))
        .await
        .ok();
        return EXIT_FAILURE;
    }
    let after = match app.engine.sm.describe(secret).await {
        Ok(info) => info,
        Err(e) => {
            eprintln!("error: rolled back, but cannot verify: {e}; check describe-secret");
            return EXIT_FAILURE;
        }
    };
    let ok = after.current_version() == Some(previous.as_str())
        && after.previous_version() == Some(current.as_str());
    let detail = serde_json::json!({ "from": current, "to": previous, "verified": ok });
    if record(audit(
        if ok { Outcome::Ok } else { Outcome::Failed },
        detail,
    ))
    .await
    .is_err()
    {
        eprintln!("warning: the rollback is done but could not be written to the audit log");
    }
    if ok {
        eprintln!(
            "rolled back {secret}: AWSCURRENT {previous}, AWSPREVIOUS {current}; restart dependent services to pick up the reverted credential"
        );
        EXIT_OK
    } else {
        eprintln!(
            "error: after the rollback AWSCURRENT is {} and AWSPREVIOUS {}; check describe-secret",
            after.current_version().unwrap_or("absent"),
            after.previous_version().unwrap_or("absent")
        );
        EXIT_FAILURE
    }
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

/// The planner's policy from the config.
pub fn policy(cfg: &Config) -> planner::Policy {
    cfg.planner_policy()
}

/// The plan from the configuration alone: every window is `scheduled`.
pub fn offline_plan(cfg: &Config, from: DateTime<Utc>, until: DateTime<Utc>) -> planner::Plan {
    planner::plan(&offline_targets(cfg), &|_| None, from, until, &policy(cfg))
}

pub use crate::clock::TIME_FORMAT;

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
