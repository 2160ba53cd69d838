//! `rotationd setup-events`: the EventBridge rules, targets and queue policy that
//! `[events]` (and `[requests]`) need, created or updated idempotently; with `--check`, only
//! whether the queue policy lets anyone but those rules send.

use std::path::Path;

use super::{CliError, with_app};
use crate::events::setup::{Change, apply, check_queue};

/// Applies the setup and prints one line per resource, then the count of changes; with
/// `check`, changes nothing and fails when others can send to the queue.
pub fn setup_events(path: &Path, check: bool) -> Result<(), CliError> {
    with_app(path, async |app| {
        let Some(events) = &app.cfg.events else {
            return Err(CliError::Invalid(
                "the configuration has no [events] section; add one with queue_url first".into(),
            ));
        };
        if check {
            let open = check_queue(events, app.cfg.requests.as_ref(), &app.sqs)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            if open.is_empty() {
                println!(
                    "queue policy: only rotationd's EventBridge rules can send to {}",
                    events.queue_url
                );
                return Ok(());
            }
            for line in &open {
                eprintln!("queue policy: {line}");
            }
            return Err(CliError::Failed(format!(
                "the events queue {} is open to other senders; write access to it is L3 access",
                events.queue_url
            )));
        }
        let report = apply(
            events,
            app.cfg.requests.as_ref(),
            &app.eventbridge,
            &app.sqs,
        )
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
        for (what, change) in &report {
            println!("{what}: {}", change.as_str());
        }
        let changed = report
            .iter()
            .filter(|(_, c)| *c != Change::Unchanged)
            .count();
        println!("{changed} change(s) on bus {}", events.event_bus);
        Ok(())
    })
}
