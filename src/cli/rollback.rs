//! `rotationd rollback`: the operator's side of [`crate::rollback`]: the ticket checked,
//! the plan shown, every outcome audited as `rollback` with the `cli:USER` actor. In observe
//! mode the plan is shown and the rollback refused (audited, exit 1).

use crate::store::audit::Outcome;
use std::path::Path;

use super::{CliError, check_ticket, describe, operator, with_app};
use crate::rollback::{
    Requester, RollbackError, RollbackPlan, audit_detail, audit_entry, execute, plan_rollback,
};

/// Checks the ticket (INC or CHG), then rolls `secret` back.
pub fn rollback(path: &Path, secret: &str, ticket: &str, reason: &str) -> Result<(), CliError> {
    check_ticket(ticket, true, " or CHG-123")?;
    with_app(path, async |app| {
        rollback_now(app, secret, ticket, reason).await
    })
}

async fn rollback_now(
    app: &crate::daemon::App,
    secret: &str,
    ticket: &str,
    reason: &str,
) -> Result<(), CliError> {
    let by = Requester {
        actor: format!("cli:{}", operator()),
        secret: secret.to_string(),
        ticket: Some(ticket.to_string()),
        reason: Some(reason.to_string()),
    };
    let record = |outcome: Outcome, detail: serde_json::Value| {
        let entry = audit_entry(&by, app.clock.now(), outcome, detail);
        app.store
            .call(move |s| s.db().append_audit(&entry).map(|_| ()))
    };
    let info = describe(app, secret).await?;
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
    if record(outcome, audit_detail(&current, &previous, verified.ok))
        .await
        .is_err()
    {
        eprintln!("warning: the rollback is done but could not be written to the audit log");
    }
    if !verified.ok {
        return Err(CliError::Failed(verified.mismatch()));
    }
    eprintln!(
        "rolled back {secret}: AWSCURRENT {previous}, AWSPREVIOUS {current}; restart dependent services to pick up the reverted credential"
    );
    Ok(())
}
