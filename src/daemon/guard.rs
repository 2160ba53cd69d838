//! The state guard: the leader's watch over its own SQLite file, every [`TICK`].
//!
//! * **Deleted or replaced.** SQLite goes on writing to a file unlinked under it, so
//!   without this check the daemon would rotate and audit into a history nobody will read
//!   again. When the path no longer names the file the store opened (device and inode):
//!   every other loop of the generation stops at once (`work` is cancelled), `/readyz`
//!   answers 503 for good, and a P1 `state_lost` goes to Security through SNS directly
//!   (the outbox lives in the lost file), retried until SNS accepts it. Nothing acts again
//!   until a restart, which refuses to start an empty history over the lost one unless
//!   told to (`rotationd run --init`, see `store::file`).
//! * **Writes failing.** When the store's writes have failed at the disk (full, read-only,
//!   I/O) for longer than [`WRITE_GRACE`], `/readyz` answers 503 with the last error,
//!   until a write lands again.
//! * **The head file.** The audit chain's head is written next to the database when it
//!   moves (at most every [`HEAD_EVERY`]), so that a lost database is told from a new one.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::alerts::{Alert, AlertKind};
use crate::store::file::{self, FileChange};

/// How often the file's identity and the write health are checked.
pub const TICK: Duration = Duration::from_secs(1);
/// How long writes may fail before `/readyz` says so.
pub const WRITE_GRACE: Duration = Duration::from_secs(30);
/// How often the head file may be rewritten while the audit log grows.
pub const HEAD_EVERY: Duration = Duration::from_secs(10);
/// Between two tries of the direct `state_lost` publish.
const PUBLISH_RETRY: Duration = Duration::from_secs(5);

/// Runs until `cancel` (the generation's end). `work` is what every other loop of the
/// generation runs under: cancelled here when the state file is lost.
pub(super) async fn guard_state(
    shared: Arc<Shared>,
    work: CancellationToken,
    cancel: CancellationToken,
) {
    let store = shared.app.store.clone();
    let Some((path, opened)) = store.file().map(|(p, id)| (p.to_path_buf(), id)) else {
        return; // In memory or on DynamoDB: no file to guard.
    };
    let mut head_written: Option<(tokio::time::Instant, Option<i64>)> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if let Some(change) = file::changed(&path, opened) {
            work.cancel();
            lost(&shared, &path, change, &cancel).await;
            return;
        }
        let failing = store
            .write_failures()
            .filter(|(since, _)| since.elapsed() > WRITE_GRACE);
        if let Some((since, error)) = &failing {
            tracing::error!(error = %error, for_s = since.elapsed().as_secs(), "writes to the state database keep failing; /readyz answers 503");
        }
        shared
            .health
            .set_writes_failing(failing.map(|(_, error)| error));
        if head_written.is_none_or(|(at, _)| at.elapsed() >= HEAD_EVERY) {
            let last = head_written.and_then(|(_, id)| id);
            let id = store
                .call(move |s| {
                    let now = s.db().audit_head()?.map(|(id, _)| id);
                    if now != last || last.is_none() {
                        s.write_head();
                    }
                    Ok(now)
                })
                .await;
            head_written = Some((tokio::time::Instant::now(), id.ok().flatten()));
        }
    }
}

/// The state file is gone: stop for good, say so on `/readyz`, and tell Security.
async fn lost(
    shared: &Shared,
    path: &std::path::Path,
    change: FileChange,
    cancel: &CancellationToken,
) {
    let app = &shared.app;
    tracing::error!(
        path = %path.display(),
        change = change.as_str(),
        "the state database was {} under the running daemon; stopped acting until a restart",
        change.as_str()
    );
    shared
        .health
        .set_state_lost(format!("{} ({})", change.as_str(), path.display()));
    let mut alert = Alert::new(AlertKind::StateLost, None, app.clock.now());
    alert.error = Some(format!(
        "the state database {} was {} while rotationd ran",
        path.display(),
        change.as_str()
    ));
    alert.details = serde_json::json!({
        "state_path": path.display().to_string(),
        "change": change.as_str(),
    });
    loop {
        match crate::alerts::publish_direct(&app.sns, &app.cfg, &alert).await {
            Ok(()) => {
                app.metrics
                    .alerts_published_total
                    .with_label_values(&[AlertKind::StateLost.as_str(), "P1"])
                    .inc();
                tracing::info!("state_lost alert published to Security");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish the state_lost alert; retrying");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PUBLISH_RETRY) => {}
        }
    }
}
