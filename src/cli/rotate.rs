//! `rotationd rotate`: one secret through the whole pipeline now (the daemon's own
//! engine), progress on stderr. Planned: inside the secret's window, with a CHG or INC
//! ticket; `--emergency`: at once, with an INC ticket, and Security is paged (P1
//! `breach_suspected`: an emergency rotation is a suspected compromise). In observe mode
//! only the preflight runs: what it found is printed, nothing is sent, and the exit status
//! is 1.
//!
//! With `[requests]` the caller is who STS says ([`super::identity`]): an L3 rotates; an
//! L1 or L2 files a request instead, exactly as CommandBridge's `Rotation Requested` would
//! ([`crate::requests::accept_from`]: the same state, the same approvers' notice), prints
//! its id and exits 0; an L3 other than them approves it (`rotationd approve ID`).
//!
//! The dependents' `rotation_scheduled` notice (queued by the preflight) is published
//! before RotateSecret, not after the drive: dependents hear of the change before it.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::identity::{Caller, identify};
use super::run::Signals;
use super::{CliError, check_ticket, managed, with_app};
use crate::clock::TIME_FORMAT;
use crate::engine::{Outcome, RotationRequest};
use crate::planner;
use crate::requests::{CLI_EVENT_PREFIX, RequestEvent, RequestKind};

/// Checks the ticket, then rotates `secret` (a name or an ARN), or files a request for it.
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
        let caller = identify(app).await?;
        if caller.executes() {
            rotate_now(app, &caller, secret, ticket, reason, emergency).await
        } else {
            file_request(app, &caller, secret, ticket, reason, emergency).await
        }
    })
}

/// Publishes what is due in the outbox now; what cannot be sent stays for the daemon.
async fn publish_now(app: &crate::daemon::App) {
    if let Err(e) = crate::alerts::publish_due(&app.store, &app.sns, &app.cfg, &app.metrics).await {
        eprintln!("warning: alerts stay in the outbox: {e}");
    }
}

/// L1/L2: the rotation becomes a request awaiting an L3's approval.
async fn file_request(
    app: &crate::daemon::App,
    caller: &Caller,
    secret: &str,
    ticket: &str,
    reason: &str,
    emergency: bool,
) -> Result<(), CliError> {
    let (_, entry) = managed(app, secret).await?;
    let now = app.clock.now();
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    let id = format!("cli-{}", &uuid[..12]);
    let ev = RequestEvent {
        kind: RequestKind::Rotate,
        event_id: format!("{CLI_EVENT_PREFIX}{uuid}"),
        request_id: id.clone(),
        secret: Some(entry.key.clone()),
        ticket: Some(ticket.to_string()),
        reason: Some(reason.to_string()),
        actor: caller.identity.clone(),
        claimed_level: None,
        emergency,
        comment: None,
        time: now,
        account: None,
    };
    let key = entry.key.clone();
    let decided = crate::requests::accept_from(
        &app.cfg,
        &app.store,
        &app.engine.alerts,
        Some(entry),
        ev,
        now,
        Some(caller.os_user.clone()),
    )
    .await
    .map_err(|e| CliError::Failed(format!("cannot record the request: {e}")))?
    .ok_or_else(|| CliError::Failed(format!("request {id} was already recorded")))?;
    // The approvers' notice (and, for an emergency, Security's page) leaves now.
    publish_now(app).await;
    let why = decided.reason.unwrap_or_default();
    if decided.state.as_deref() != Some("awaiting_approval") {
        return Err(CliError::Failed(format!(
            "request {id} for {key} refused: {why}"
        )));
    }
    println!("{id}");
    eprintln!(
        "{}: a rotation needs an L3's approval; filed request {id} for {key} (ticket {ticket}). {why}. An L3 other than you approves it with: rotationd approve {id}",
        caller.describe()
    );
    Ok(())
}

async fn rotate_now(
    app: &crate::daemon::App,
    caller: &Caller,
    secret: &str,
    ticket: &str,
    reason: &str,
    emergency: bool,
) -> Result<(), CliError> {
    let (info, entry) = managed(app, secret).await?;
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
        actor: caller.actor(),
        emergency,
        os_user: Some(caller.os_user.clone()),
    };
    let attempt = app
        .engine
        .create_manual_attempt(&req, Some(info.arn.clone()))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if emergency {
        // A suspected compromise: Security is paged with the dependents' notice, before
        // RotateSecret.
        let mut page = crate::alerts::Alert::breach_suspected(
            &entry.key,
            now,
            Some(ticket.to_string()),
            Some(reason.to_string()),
            "cli",
            &attempt,
            "emergency, started at once (rotationd rotate --emergency)",
        );
        page.secret_arn = Some(info.arn.clone());
        page.details["by"] = serde_json::json!(caller.actor());
        page.details["attempt"] = serde_json::json!(attempt);
        if let Err(e) = app.engine.alerts.raise(page).await {
            eprintln!("warning: cannot queue the breach_suspected page: {e}");
        }
    }
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
    let result = app
        .engine
        .drive_with(&attempt, &progress, &cancel, async || {
            // The preflight queued the dependents' notice: it leaves before RotateSecret.
            publish_now(app).await;
        })
        .await;
    watcher.abort();
    // Deliver what the attempt queued since (completion notice, escalation) now; whatever
    // cannot be sent stays in the outbox for the daemon.
    publish_now(app).await;
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
