//! `rotationd rotate`: one secret through the whole pipeline now (the daemon's own
//! engine), progress on stderr. Planned: inside the secret's window, with a CHG or INC
//! ticket; `--emergency`: at once, with an INC ticket. In observe mode only the preflight
//! runs: what it found is printed, nothing is sent, and the exit status is 1.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::run::Signals;
use super::{CliError, check_ticket, describe, operator, with_app};
use crate::clock::TIME_FORMAT;
use crate::engine::{Outcome, RotationRequest};
use crate::planner;

/// Checks the ticket, then rotates `secret` (a name or an ARN).
pub fn rotate(
    path: &Path,
    secret: &str,
    ticket: &str,
    reason: &str,
    emergency: bool,
) -> Result<(), CliError> {
    if emergency {
        check_ticket(ticket, false, " (emergency rotations need an INC ticket)")?;
    } else {
        check_ticket(ticket, true, " or CHG-123")?;
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
) -> Result<(), CliError> {
    let info = describe(app, secret).await?;
    // Match on the secret as if live: a secret being deleted is still ours, and the
    // preflight says why it cannot rotate.
    let mut live = info.clone();
    live.deleted = None;
    let fleet =
        crate::inventory::match_fleet_keyed(&app.cfg, vec![live], app.engine.sm.is_routed());
    let Some(entry) = fleet.entries.first() else {
        return Err(CliError::Failed(format!(
            "secret {secret} is not managed by this configuration; add it as a [[secret]] or match it with a [[selector]]"
        )));
    };
    let settings = crate::inventory::settings(&app.cfg, entry.origin);
    let now = app.clock.now();
    if !emergency {
        let target = settings.target(entry.key.clone());
        let window = planner::window_at_or_after(&target, now);
        if window.is_none_or(|start| start > now) {
            let next = window.map_or("never".to_string(), |t| t.format(TIME_FORMAT).to_string());
            return Err(CliError::Failed(format!(
                "{secret} is outside its rotation window (next opens at {next}); wait for it, or use --emergency with an INC ticket to rotate now"
            )));
        }
    }
    let req = RotationRequest {
        secret: entry.key.clone(),
        kind: crate::store::TriggerKind::Manual,
        ticket: Some(ticket.to_string()),
        reason: reason.to_string(),
        actor: format!("cli:{}", operator()),
        emergency,
    };
    let attempt = app
        .engine
        .create_manual_attempt(&req, Some(info.arn.clone()))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    eprintln!(
        "rotating {} (attempt {attempt}, ticket {ticket})",
        entry.key
    );
    let progress = |msg: &str| eprintln!("  {msg}");
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let mut signals = Signals::install();
    let watcher = tokio::spawn(async move {
        signals.shutdown().await;
        stop.cancel();
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
            Ok(())
        }
        Ok(Outcome::Observed { verdict, reason }) => Err(CliError::Failed(format!(
            "{} was not rotated: rotationd is in observe mode ([daemon] mode = \"observe\"), RotateSecret was not sent; the preflight says it {}{}; set mode = \"enforce\" to rotate",
            entry.key,
            verdict.as_str().replace('_', " "),
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        ))),
        Ok(Outcome::Failed(e)) | Ok(Outcome::Stuck(e)) | Ok(Outcome::Skipped(e)) => Err(
            CliError::Failed(format!("rotation of {} did not complete: {e}", entry.key)),
        ),
        Err(e) => Err(CliError::Failed(format!(
            "rotation of {} paused: {e}",
            entry.key
        ))),
    }
}
