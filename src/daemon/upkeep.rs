//! The upkeep loop: keeps the state database bounded ([`crate::store::upkeep`]). Every
//! [`FLUSH_EVERY`] the rejection tallies of past minutes become aggregate audit rows;
//! at start and every [`PRUNE_EVERY`] seen events and published alerts older than
//! `[state] retention` go, and audit entries older than `[state] audit_retention` are
//! pruned below a checkpoint. Every pass also runs observe mode's bookkeeping
//! ([`super::observe::tick`]: the mode's history, the daily summary).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;

pub const FLUSH_EVERY: Duration = Duration::from_secs(60);
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(super) async fn upkeep_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let app = &shared.app;
    let to_delta = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let retention = to_delta(app.cfg.state.retention);
    let audit_retention = to_delta(app.cfg.state.audit_retention);
    let mut next_prune = tokio::time::Instant::now();
    loop {
        let now = app.clock.now();
        match app
            .store
            .call(move |s| s.db().flush_rejection_tallies(now))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "audited the rejection tallies of past minutes"),
            Err(e) => tracing::warn!(error = %e, "cannot flush the rejection tallies; retrying"),
        }
        if let Err(e) = super::observe::tick(app).await {
            tracing::warn!(error = %format!("{e:#}"), "observe mode bookkeeping failed; retrying");
        }
        if tokio::time::Instant::now() >= next_prune {
            match app
                .store
                .call(move |s| s.db().prune(now, retention, audit_retention))
                .await
            {
                Ok(p) => {
                    next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
                    if p != Default::default() {
                        tracing::info!(
                            seen_events = p.seen_events,
                            alerts = p.alerts,
                            audit = p.audit,
                            "pruned the state database"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot prune the state database; retrying"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(FLUSH_EVERY) => {}
        }
    }
}
