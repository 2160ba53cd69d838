//! The leader's anchors of the audit log (`[audit] anchor_bucket`): the chain head (entry
//! id, hash, time) written to S3 locked in compliance mode for `anchor_retention`
//! ([`crate::store::anchor`] says what an anchor is and proves), at the start of each
//! generation of the leader's loops, every `anchor_every` and once more at shutdown after
//! the loops stopped. A head already anchored by this generation is not written again.
//!
//! Only the leader anchors: its loops run only while it leads, and the shutdown anchor
//! only on a clean stop of a leader (not when the lease is lost: the next leader anchors).
//! A failed write is logged and counted (`rotationd_audit_anchors_total{outcome="failed"}`)
//! and retried within [`RETRY_AFTER`]; the audit log itself is never held up by S3.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::aws::s3::Bucket;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::StoreHandle;
use crate::store::anchor::{Anchor, ChainHead};

/// How soon a failed anchor is tried again (or `anchor_every`, if shorter).
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long the shutdown anchor may take: within the unit's `TimeoutStopSec` with the
/// other stop steps.
pub const FINAL_DEADLINE: Duration = Duration::from_secs(4);

/// What one generation anchors with.
#[derive(Clone)]
pub(super) struct Anchorer {
    bucket: Bucket,
    prefix: String,
    every: Duration,
    retention: chrono::Duration,
    instance: String,
    clock: Clock,
    store: StoreHandle,
    metrics: Arc<Metrics>,
    /// The head this generation anchored last (id, hash).
    last: Arc<Mutex<Option<(i64, String)>>>,
}

/// Whether `head` needs an anchor, given the one anchored `last`: pure.
pub fn due(head: Option<&ChainHead>, last: Option<&(i64, String)>) -> bool {
    match (head, last) {
        (None, _) => false,
        (Some(h), Some((id, hash))) => h.id != *id || h.hash != *hash,
        (Some(_), None) => true,
    }
}

impl Anchorer {
    /// The anchorer of `app`, if `[audit] anchor_bucket` is set.
    pub(super) fn of(app: &App) -> Option<Anchorer> {
        let cfg = app.cfg.audit.anchor.as_ref()?;
        Some(Anchorer {
            bucket: app.anchors.clone()?,
            prefix: cfg.prefix.clone(),
            every: cfg.every,
            retention: chrono::Duration::from_std(cfg.retention)
                .unwrap_or(chrono::Duration::days(400)),
            instance: app.instance.clone(),
            clock: app.clock,
            store: app.store.clone(),
            metrics: app.metrics.clone(),
            last: Arc::default(),
        })
    }

    /// Anchors the current head unless it is anchored already: the anchor written, or
    /// `None` when there was nothing new.
    pub(super) async fn anchor_once(&self) -> anyhow::Result<Option<Anchor>> {
        let head = self
            .store
            .call(|s| s.db().audit_anchor_head())
            .await
            .context("cannot read the audit log's head")?;
        let last = self.last.lock().map(|l| l.clone()).unwrap_or_default();
        let Some(head) = head.filter(|h| due(Some(h), last.as_ref())) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let anchor = Anchor::of(&head, now, &self.instance);
        let key = anchor.key(&self.prefix);
        let written = self
            .bucket
            .put_locked(&key, anchor.body(), now + self.retention)
            .await;
        let outcome = if written.is_ok() { "written" } else { "failed" };
        self.metrics
            .audit_anchors_total
            .with_label_values(&[outcome])
            .inc();
        written.with_context(|| {
            format!(
                "cannot anchor the audit log in s3://{}/{key} ([audit] anchor_bucket)",
                self.bucket.name()
            )
        })?;
        self.metrics
            .audit_anchor_last_success_timestamp_seconds
            .set(now.timestamp() as f64);
        if let Ok(mut l) = self.last.lock() {
            *l = Some((head.id, head.hash.clone()));
        }
        tracing::info!(entry = head.id, hash = %head.hash, bucket = %self.bucket.name(), key = %key, "anchored the audit log");
        Ok(Some(anchor))
    }

    /// The shutdown anchor, after the loops stopped: bounded by [`FINAL_DEADLINE`].
    pub(super) async fn anchor_final(&self) {
        match tokio::time::timeout(FINAL_DEADLINE, self.anchor_once()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot anchor the audit log at shutdown; the last anchor stands")
            }
            Err(_) => {
                tracing::warn!(deadline = ?FINAL_DEADLINE, "anchoring the audit log at shutdown timed out; the last anchor stands")
            }
        }
    }
}

/// Anchors at once, then every `anchor_every` (a failure is tried again sooner), until
/// `cancel`.
pub(super) async fn anchor_loop(anchorer: Anchorer, cancel: CancellationToken) {
    loop {
        let wait = match anchorer.anchor_once().await {
            Ok(_) => anchorer.every,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot anchor the audit log; retrying");
                anchorer.every.min(RETRY_AFTER)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_anchored_once_and_again_when_it_moves() {
        let head = |id: i64, c: char| ChainHead {
            id,
            hash: c.to_string().repeat(64),
            at: chrono::DateTime::UNIX_EPOCH,
        };
        let anchored = |h: &ChainHead| (h.id, h.hash.clone());
        assert!(!due(None, None), "an empty log has no head to anchor");
        assert!(due(Some(&head(1, 'a')), None));
        assert!(!due(Some(&head(1, 'a')), Some(&anchored(&head(1, 'a')))));
        assert!(due(Some(&head(2, 'b')), Some(&anchored(&head(1, 'a')))));
        // The same id with another hash (a replica that caught up on another history).
        assert!(due(Some(&head(1, 'c')), Some(&anchored(&head(1, 'a')))));
    }
}
