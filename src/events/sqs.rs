//! The SQS consumer: EventBridge delivers events to `[events] queue_url`; workers long-poll
//! it (20 s, batches of 10) and handle each message.
//!
//! A message is deleted only after its consequences are committed to the state store
//! (triggers, alerts, audit, the event id in `seen_events`): at-least-once delivery, with
//! duplicates collapsing on the event id. A bad message (not JSON, unknown shape, missing
//! fields, oversized, foreign account, unconfigured source) is audited with its reason,
//! counted in `rotationd_events_rejected_total{reason}` and deleted: it never stops the
//! consumer and never triggers a rotation; a redelivered bad message (same message id) is
//! not audited or counted again. When the store cannot be written, nothing is
//! deleted and the message comes back after its visibility timeout. While a batch is being
//! handled its visibility is extended, so a slow store does not hand the same message to
//! another worker.
//!
//! Shutdown does not wait for the long poll: it is dropped at once, so SIGTERM ends the
//! process in a second or two rather than up to [`WAIT_SECONDS`] later. SQS does not see
//! the client go: the abandoned poll goes on for the rest of its wait and may still take a
//! message that arrives meanwhile (for a restart, often the first one after it). Nothing
//! deletes it, so it comes back to this or another instance (at-least-once holds, and a
//! duplicate collapses on the event id) once its visibility runs out: that is why a
//! message is received hidden for [`RECEIVE_VISIBILITY_SECONDS`] only, about as long as a
//! stop used to wait for the poll, and the heartbeat extends it to [`VISIBILITY_SECONDS`]
//! while it is handled. A batch already received is handled to the end.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::normalize;
use super::{Disposition, EventSink};
use crate::aws::AwsError;
use crate::aws::sqs::{Message, Queue};

/// Long-poll wait; SQS's maximum.
pub const WAIT_SECONDS: i32 = 20;
/// How long a received message stays invisible to other workers at first: short, so that
/// a message a poll abandoned at shutdown took comes back soon (see the module doc).
pub const RECEIVE_VISIBILITY_SECONDS: i32 = 20;
/// How long a message being handled stays invisible, renewed by the heartbeat.
pub const VISIBILITY_SECONDS: i32 = 60;
/// A request a standby received comes back to the queue this soon, for the leader.
pub const LEFT_FOR_LEADER_SECONDS: i32 = 2;
/// And the standby's workers stop receiving for this long, so that the request comes back
/// to the leader's long polls, not to theirs (events recorded meanwhile wait on the queue
/// for the leader, or for the standby's next poll).
pub const STANDBY_PAUSE_AFTER_REQUEST: Duration = Duration::from_secs(30);

pub struct Consumer {
    pub queue: Queue,
    pub sink: Arc<EventSink>,
    /// Until when every worker of this consumer leaves the queue alone (a standby that
    /// left a request for the leader).
    pub paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Consumer {
    pub fn new(queue: Queue, sink: Arc<EventSink>) -> Consumer {
        Consumer {
            queue,
            sink,
            paused_until: std::sync::Mutex::new(None),
        }
    }

    fn pause(&self) -> Option<tokio::time::Instant> {
        let until = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        until.filter(|u| *u > tokio::time::Instant::now())
    }
}

impl Consumer {
    /// One worker, until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if self.sink.inventory.read().await.is_none() {
                // Departures need the fleet to know who can reach what.
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            if let Some(until) = self.pause() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => continue,
                }
            }
            // Raced against shutdown (see the module doc): what an abandoned poll took
            // comes back after the visibility timeout; a stop must not wait 20 s for it.
            let received = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    tracing::debug!(queue = %self.queue.url(), "shutdown: long poll abandoned");
                    return;
                }
                received = self.receive() => received,
            };
            match received {
                Ok(messages) => {
                    backoff = Duration::from_secs(1);
                    if !messages.is_empty() {
                        self.handle_batch(messages).await;
                    }
                    if cancel.is_cancelled() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue = %self.queue.url(), "cannot receive events; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    async fn receive(&self) -> Result<Vec<Message>, AwsError> {
        self.queue
            .receive(10, WAIT_SECONDS, RECEIVE_VISIBILITY_SECONDS)
            .await
    }

    /// Handles a batch; deletes what was handled, leaves the rest to come back.
    pub async fn handle_batch(&self, messages: Vec<Message>) {
        let done = CancellationToken::new();
        let heartbeat = tokio::spawn(extend_visibility(
            self.queue.clone(),
            messages
                .iter()
                .filter_map(|m| m.receipt_handle.clone())
                .enumerate()
                .map(|(i, h)| (i.to_string(), h))
                .collect(),
            done.clone(),
        ));
        let mut delete = Vec::new();
        let mut left = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            match self.handle(m).await {
                Ok(Disposition::LeftForLeader) => {
                    if let Some(handle) = &m.receipt_handle {
                        left.push((i.to_string(), handle.clone()));
                    }
                }
                Ok(d) => {
                    tracing::debug!(message = m.id.as_deref().unwrap_or("-"), disposition = ?d, "event handled");
                    if let Some(handle) = &m.receipt_handle {
                        delete.push((i.to_string(), handle.clone()));
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    message = m.id.as_deref().unwrap_or("-"),
                    "cannot record event; it stays on the queue and comes back"
                ),
            }
        }
        done.cancel();
        heartbeat.await.ok();
        if !left.is_empty() {
            *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(tokio::time::Instant::now() + STANDBY_PAUSE_AFTER_REQUEST);
            // Back on the queue soon, for the leader's consumers (a standby never decides
            // a request); not at once, so this standby does not spin on it.
            if let Err(e) = self
                .queue
                .change_visibility(&left, LEFT_FOR_LEADER_SECONDS)
                .await
            {
                tracing::debug!(error = %e, "requests left for the leader come back at their visibility timeout");
            }
        }
        if delete.is_empty() {
            return;
        }
        match self.queue.delete(&delete).await {
            Ok(failed) if failed > 0 => tracing::warn!(
                failed,
                "some handled events could not be deleted; they will come back and collapse as duplicates"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "handled events could not be deleted; they will come back and collapse as duplicates"
            ),
        }
    }

    /// Handles one message. `Err` means nothing was committed: keep the message.
    pub async fn handle(&self, m: &Message) -> Result<Disposition, crate::store::StoreError> {
        let body = m.body.as_deref().unwrap_or_default();
        let normalized = normalize::normalize_sqs_body(body, &self.sink.normalize);
        let detail = serde_json::json!({ "message_id": m.id, "bytes": body.len() });
        let disposition = self
            .sink
            .accept(normalized, "sqs", m.id.as_deref(), detail)
            .await?;
        if disposition == Disposition::Acted {
            // What it committed may include alerts (RotationFailed, compromise, approvals).
            self.sink.alerts.wake_publisher();
        }
        Ok(disposition)
    }
}

/// Keeps the batch (a batch id and a receipt handle per message) invisible to other
/// workers while it is handled.
async fn extend_visibility(queue: Queue, handles: Vec<(String, String)>, done: CancellationToken) {
    // First at half the receive visibility, then at half the extended one.
    let mut wait = Duration::from_secs(RECEIVE_VISIBILITY_SECONDS as u64 / 2);
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_secs(VISIBILITY_SECONDS as u64 / 2);
        if let Err(e) = queue.change_visibility(&handles, VISIBILITY_SECONDS).await {
            tracing::warn!(error = %e, "cannot extend event visibility");
        }
    }
}
