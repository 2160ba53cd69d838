//! `rotationd resume`: lifts the storm guard's pause on event-triggered rotations, through
//! the same [`lift_pause`] as a reload of the leader (both audited).

use std::path::Path;

use super::{CliError, operator, with_app};
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
