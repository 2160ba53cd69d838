//! `rotationd requests`, `approve` and `deny`: the requests of the approval policy
//! (`[requests]`) from the command line. `requests` lists the open ones (awaiting an
//! approval, or executing); `approve ID` and `deny ID` are the CLI's `Rotation Approved`
//! and `Rotation Denied`: decided by the same [`crate::requests::decide`] as the bus
//! events, on the caller STS names ([`super::identity`]): only an L3 approves or denies,
//! never the requester (two sessions of one role are one requester), and the requester may
//! withdraw their own request with `deny`.

use std::io::Write;
use std::path::Path;

use super::identity::identify;
use super::{CliError, with_app, write_out};
use crate::clock::TIME_FORMAT;
use crate::requests::{CLI_EVENT_PREFIX, RequestEvent, RequestKind};
use crate::store::audit::Outcome;
use crate::store::{Request, RequestState};

/// Prints the open requests as a table or JSON.
pub fn list(path: &Path, json: bool) -> Result<(), CliError> {
    with_app(path, async |app| {
        let open = app
            .store
            .call(|s| s.db().open_requests())
            .await
            .map_err(|e| CliError::Failed(format!("cannot read the requests: {e}")))?;
        write_out(json, &open, "requests", |out| write_table(out, &open))
    })
}

fn write_table(out: &mut impl Write, rows: &[Request]) -> std::io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "no open requests");
    }
    writeln!(
        out,
        "{:<18} {:<17} {:<8} {:<28} {:<10} {:<5} {:<20} REQUESTER",
        "ID", "STATE", "KIND", "SECRET", "TICKET", "LEVEL", "EXPIRES"
    )?;
    for r in rows {
        let kind = if r.emergency {
            format!("{}!", r.kind)
        } else {
            r.kind.clone()
        };
        writeln!(
            out,
            "{:<18} {:<17} {:<8} {:<28} {:<10} {:<5} {:<20} {}",
            super::audit::printable(&r.id),
            r.state.as_str(),
            kind,
            super::audit::printable(&r.secret),
            super::audit::printable(r.ticket.as_deref().unwrap_or("-")),
            r.level,
            r.expires_at
                .map_or("-".to_string(), |t| t.format(TIME_FORMAT).to_string()),
            super::audit::printable(&r.requester),
        )?;
    }
    writeln!(out, "(a kind ending in ! is an emergency)")
}

/// `rotationd approve ID`.
pub fn approve(path: &Path, id: &str, comment: Option<&str>) -> Result<(), CliError> {
    decide(path, id, RequestKind::Approve, comment)
}

/// `rotationd deny ID`.
pub fn deny(path: &Path, id: &str, comment: Option<&str>) -> Result<(), CliError> {
    decide(path, id, RequestKind::Deny, comment)
}

fn decide(path: &Path, id: &str, kind: RequestKind, comment: Option<&str>) -> Result<(), CliError> {
    with_app(path, async |app| {
        if app.cfg.requests.is_none() {
            return Err(CliError::Invalid(
                "approve and deny need a [requests] section: without it there are no requests"
                    .into(),
            ));
        }
        let caller = identify(app).await?;
        let rid = id.to_string();
        let request = app
            .store
            .call(move |s| s.db().get_request(&rid))
            .await
            .map_err(|e| CliError::Failed(format!("cannot read request {id}: {e}")))?
            .ok_or_else(|| {
                CliError::Failed(format!(
                    "no request `{id}`; rotationd requests lists the open ones"
                ))
            })?;
        // An approval makes a trigger for the managed secret, as the daemon sees it now.
        let entry = if kind == RequestKind::Approve {
            match super::managed(app, &request.secret).await {
                Ok((_, entry)) => Some(entry),
                // Not managed any more: `decide` refuses, with the reason.
                Err(_) => None,
            }
        } else {
            None
        };
        let now = app.clock.now();
        let ev = RequestEvent {
            kind,
            event_id: format!("{CLI_EVENT_PREFIX}{}", uuid::Uuid::new_v4().simple()),
            request_id: request.id.clone(),
            secret: None,
            ticket: None,
            reason: None,
            actor: caller.identity.clone(),
            claimed_level: None,
            emergency: false,
            comment: comment.map(str::to_string),
            time: now,
            account: None,
        };
        let decided = crate::requests::accept_from(
            &app.cfg,
            &app.store,
            &app.engine.alerts,
            entry,
            ev,
            now,
            Some(caller.os_user.clone()),
        )
        .await
        .map_err(|e| CliError::Failed(format!("cannot record the decision: {e}")))?
        .ok_or_else(|| CliError::Failed("the decision was already recorded".into()))?;
        crate::alerts::publish_due(&app.store, &app.sns, &app.cfg, &app.metrics)
            .await
            .ok();
        let why = decided.reason.unwrap_or_default();
        match decided.outcome {
            Outcome::RequestState(RequestState::Executing) => {
                eprintln!(
                    "request {id} approved by {}: {why}; the daemon runs it",
                    caller.describe()
                );
                Ok(())
            }
            Outcome::RequestState(RequestState::Denied) => {
                eprintln!("request {id}: {why}");
                Ok(())
            }
            _ => Err(CliError::Failed(format!(
                "{} refused: {why}",
                if kind == RequestKind::Approve {
                    "approval"
                } else {
                    "denial"
                }
            ))),
        }
    })
}
