//! `rotationd setup-events`: the EventBridge rules, targets and queue policy that
//! `[events]` (and `[requests]`) need, created or updated idempotently.

use std::path::Path;

use super::{CliError, with_app};
use crate::events::setup::{Change, apply};

/// Applies the setup and prints one line per resource, then the count of changes.
pub fn setup_events(path: &Path) -> Result<(), CliError> {
    with_app(path, async |app| {
        let Some(events) = &app.cfg.events else {
            return Err(CliError::Invalid(
                "the configuration has no [events] section; add one with queue_url first".into(),
            ));
        };
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
