//! `rotationd rollback`: the operator's side of [`crate::rollback`]: the ticket checked,
//! the plan shown, every outcome audited as `rollback` with the `cli:IDENTITY` actor. In
//! observe mode the plan is shown and the rollback refused (audited, exit 1).
//!
//! - With `[requests]`, rollback is L3 only (the guide): an L1 or L2 is refused, and
//!   Security gets a P2 `rollback_escalated` with who, the ticket and the reason (L1/L2
//!   must escalate; a refusal in silence is not enough).
//! - A version that a compromise, a departure or an emergency rotation retired is not put
//!   back unless `--force` (with an INC ticket), which pages Security (P1
//!   `rollback_forced`).
//! - After a rollback the dependents are told to reload (`rollback_completed`), and
//!   Security gets a copy.

use crate::store::audit::Outcome;
use std::path::Path;

use super::identity::{Caller, identify};
use super::{CliError, check_ticket, describe, with_app};
use crate::rollback::{
    Requester, RollbackError, RollbackPlan, audit_detail, audit_entry, execute, plan_rollback,
};

/// Checks the ticket (INC or CHG; INC with `force`), then rolls `secret` back.
pub fn rollback(
    path: &Path,
    secret: &str,
    ticket: &str,
    reason: &str,
    force: bool,
) -> Result<(), CliError> {
    if force {
        check_ticket(
            ticket,
            false,
            " (--force puts back a credential believed exposed: an incident, INC)",
        )?;
    } else {
        check_ticket(ticket, true, " or CHG-123")?;
    }
    with_app(path, async |app| {
        let caller = identify(app).await?;
        rollback_now(app, &caller, secret, ticket, reason, force).await
    })
}

async fn rollback_now(
    app: &crate::daemon::App,
    caller: &Caller,
    secret: &str,
    ticket: &str,
    reason: &str,
    force: bool,
) -> Result<(), CliError> {
    let by = Requester {
        actor: caller.actor(),
        secret: secret.to_string(),
        ticket: Some(ticket.to_string()),
        reason: Some(reason.to_string()),
    };
    let who = serde_json::json!({
        "identity": caller.identity,
        "level": caller.level.map(|l| l.as_str()),
        "os_user": caller.os_user,
    });
    let record = |outcome: Outcome, mut detail: serde_json::Value| {
        detail["caller"] = who.clone();
        let entry = audit_entry(&by, app.clock.now(), outcome, detail);
        app.store
            .call(move |s| s.db().append_audit(&entry).map(|_| ()))
    };
    let info = describe(app, secret).await?;
    // The config's name for it, for the notices (an unmanaged secret keeps its own).
    let fleet = crate::inventory::match_fleet_keyed(
        &app.cfg,
        vec![info.clone()],
        app.engine.sm.is_routed(),
    );
    let key = fleet
        .entries
        .first()
        .map_or_else(|| secret.to_string(), |e| e.key.clone());
    if !caller.executes() {
        let level = caller.level.map_or("L1", |l| l.as_str());
        let id = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let page = crate::rollback::escalated_alert(
            &key,
            Some(&info.arn),
            &caller.identity,
            level,
            Some(ticket.to_string()),
            Some(reason.to_string()),
            &id,
            "cli",
            app.clock.now(),
        );
        let why = format!(
            "rollback is L3 only (the guide: L1/L2 must escalate); {} is {level}",
            caller.identity
        );
        // Best effort each: the refusal stands whether or not it could be recorded.
        record(
            Outcome::Refused,
            serde_json::json!({ "error": why, "escalated": id }),
        )
        .await
        .ok();
        let told = app.engine.alerts.raise(page).await.is_ok()
            && crate::alerts::publish_due(&app.store, &app.sns, &app.cfg, &app.metrics)
                .await
                .is_ok();
        return Err(CliError::Failed(format!(
            "refusing to roll back {secret}: {why}; {}; ask an L3 to run the rollback",
            if told {
                "Security has been told (rollback_escalated)"
            } else {
                "Security's rollback_escalated alert waits in the outbox"
            }
        )));
    }
    let (current, previous) = match plan_rollback(&info, None) {
        Ok(RollbackPlan::Move { from, to }) => (from, to),
        // Not without expected versions: nothing to move.
        Ok(RollbackPlan::AlreadyDone { .. }) => return Ok(()),
        Err(why) => {
            // Best effort: the refusal is reported whether or not it could be recorded.
            record(
                Outcome::Refused,
                serde_json::json!({ "error": why.to_string() }),
            )
            .await
            .ok();
            return Err(CliError::Failed(format!(
                "refusing to roll back {secret}: {why}"
            )));
        }
    };
    if app.engine.observing() {
        let why = format!(
            "rotationd is in observe mode ([daemon] mode = \"observe\"): it would move AWSCURRENT of {secret} from {current} back to {previous}, and changed nothing; set mode = \"enforce\" to roll back, or move the label with aws secretsmanager update-secret-version-stage"
        );
        let mut detail = audit_detail(&current, &previous, false);
        detail["mode"] = serde_json::json!("observe");
        detail["error"] = serde_json::json!(why);
        record(Outcome::Refused, detail).await.ok();
        return Err(CliError::Failed(why));
    }
    let retired = crate::rollback::retirement(&app.store, &info, &key, &previous)
        .await
        .map_err(|e| {
            CliError::Failed(format!(
                "cannot tell whether {previous} was retired as exposed (state store: {e}); not rolled back"
            ))
        })?;
    let forced = match crate::rollback::allow(retired, force) {
        Ok(forced) => forced,
        Err(why) => {
            record(
                Outcome::Refused,
                serde_json::json!({ "error": why.to_string(), "from": current, "to": previous }),
            )
            .await
            .ok();
            return Err(CliError::Failed(format!(
                "refusing to roll back {secret}: {why}"
            )));
        }
    };
    if let Some(r) = &forced {
        // Paged before the labels move: Security knows even if this process dies next.
        let page = crate::rollback::forced_alert(&key, Some(&info.arn), r, &by, app.clock.now());
        app.engine.alerts.raise(page).await.map_err(|e| {
            CliError::Failed(format!(
                "cannot queue the rollback_forced page to Security ({e}); not rolled back"
            ))
        })?;
        eprintln!(
            "--force: {previous} was retired by {} rotation (attempt {}); putting it back and paging Security",
            r.with_article(),
            r.attempt
        );
    }
    // Allowed (an L3 may need the labels back, e.g. after a setSecret that never changed the
    // password), but said: on a single-user secret the previous password is usually dead.
    if let Some(e) = fleet.entries.first() {
        let strategy = crate::inventory::settings(&app.cfg, e.origin).strategy;
        if strategy == crate::config::Strategy::SingleUser {
            eprintln!(
                "warning: {secret} rotates single-user: {}",
                crate::engine::rollback_capability(Some(strategy))
            );
        }
    }
    eprintln!("rolling back {secret}: AWSCURRENT {current} -> {previous} (ticket {ticket})");
    let verified = match execute(&app.engine.sm, secret, &current, &previous).await {
        Ok(v) => v,
        Err(RollbackError::Move(e)) => {
            record(
                Outcome::Failed,
                serde_json::json!({ "error": e.to_string(), "from": current, "to": previous }),
            )
            .await
            .ok();
            crate::alerts::publish_due(&app.store, &app.sns, &app.cfg, &app.metrics)
                .await
                .ok();
            return Err(CliError::Failed(format!(
                "UpdateSecretVersionStage failed: {e}"
            )));
        }
        Err(e @ RollbackError::Verify(_)) => {
            let mut detail = audit_detail(&current, &previous, false);
            detail["error"] = serde_json::json!(e.to_string());
            record(Outcome::Failed, detail).await.ok();
            return Err(CliError::Failed(e.to_string()));
        }
    };
    let outcome = if verified.ok {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    let mut detail = audit_detail(&current, &previous, verified.ok);
    if let Some(r) = &forced {
        detail["forced"] = serde_json::json!({ "cause": r.cause, "retired_by_attempt": r.attempt });
    }
    if record(outcome, detail).await.is_err() {
        eprintln!("warning: the rollback is done but could not be written to the audit log");
    }
    if verified.ok {
        let notices = crate::rollback::completed_notices(
            &app.cfg,
            &info,
            &key,
            &current,
            &previous,
            &by,
            forced.as_ref(),
            app.clock.now(),
        );
        for n in notices {
            if let Err(e) = app.engine.alerts.raise(n).await {
                eprintln!("warning: cannot queue the rollback_completed notice: {e}");
            }
        }
    }
    if let Err(e) = crate::alerts::publish_due(&app.store, &app.sns, &app.cfg, &app.metrics).await {
        eprintln!("warning: alerts stay in the outbox: {e}");
    }
    if !verified.ok {
        return Err(CliError::Failed(verified.mismatch()));
    }
    eprintln!(
        "rolled back {secret}: AWSCURRENT {previous}, AWSPREVIOUS {current}; the dependents were told to reload (rollback_completed); restart dependent services to pick up the reverted credential"
    );
    Ok(())
}
