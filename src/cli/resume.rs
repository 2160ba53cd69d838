//! `rotationd resume`: lifts the storm guard's pause on event-triggered rotations, through
//! the same [`lift_pause`] as a reload of the leader (both audited); `resume --secret`
//! lifts the hold a failed rotation put on one secret (`store::Hold`), audited with the
//! operator, the ticket and what the investigation found.

use std::path::Path;

use super::{CliError, check_ticket, operator, with_app};
use crate::daemon::policy::storm::{Lifter, lift_pause};

/// Lifts the pause and says since when it held, if it did.
pub fn resume(path: &Path) -> Result<(), CliError> {
    with_app(path, async |app| {
        let by = Lifter::Cli { user: operator() };
        match lift_pause(&app.store, app.clock.now(), by).await {
            Ok(Some(since)) => {
                println!("event-triggered rotations resumed (paused since {since})");
                Ok(())
            }
            Ok(None) => {
                println!("event-triggered rotations were not paused");
                Ok(())
            }
            Err(e) => Err(CliError::Failed(e.to_string())),
        }
    })
}

/// Lifts the hold on `secret` (a name or an ARN of a managed secret).
pub fn lift_hold(path: &Path, secret: &str, ticket: &str, reason: &str) -> Result<(), CliError> {
    check_ticket(ticket, true, " or CHG-123")?;
    if reason.trim().is_empty() {
        return Err(CliError::Invalid(
            "--reason is empty; say what the investigation found".into(),
        ));
    }
    with_app(path, async |app| {
        // Holds are kept by the secret's configured key; an ARN names the same secret.
        let holds = app
            .store
            .call(|s| s.db().holds())
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let key = holds
            .iter()
            .find(|h| h.secret == secret)
            .map(|h| h.secret.clone())
            .or_else(|| {
                let name = crate::arn::Arn::parse(secret).ok()?.secret_name()?;
                holds
                    .iter()
                    .find(|h| h.secret == name)
                    .map(|h| h.secret.clone())
            });
        let Some(key) = key else {
            println!("{secret} is not held; nothing to lift");
            return Ok(());
        };
        let now = app.clock.now();
        let (actor, ticket, reason) = (
            format!("cli:{}", operator()),
            ticket.to_string(),
            reason.to_string(),
        );
        let lifted = app
            .store
            .call(move |s| {
                s.db()
                    .lift_hold_audited(&key, &actor, Some(&ticket), &reason, now)
            })
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        match lifted {
            Some(h) => println!(
                "hold on {} lifted (held since {} by attempt {}); its planned rotations start again",
                h.secret,
                h.held_at.format(crate::clock::TIME_FORMAT),
                h.attempt_id
            ),
            None => println!("{secret} is not held; nothing to lift"),
        }
        Ok(())
    })
}
