//! CloudTrail catch-up: a poller over `LookupEvents` feeding the same normalize → plan →
//! commit path as the SQS consumer.
//!
//! It catches what EventBridge dropped (after its retries, without a DLQ) and what
//! happened while rotationd was down. Each sweep asks, for each event name rotationd acts
//! on, for the events since the persisted cursor minus an overlap (CloudTrail delivers
//! within about 5 minutes, not in order), page by page. CloudTrail allows one lookup
//! attribute per call and 2 requests per second per account and region: requests are
//! paced at that rate, and the SDK's retry backs off on throttling. The cursor moves only
//! after a whole sweep succeeded; the first start looks back `[events.cloudtrail]
//! lookback`, never past CloudTrail's 90-day history. Events seen through SQS carry the
//! same event id, so they collapse as duplicates.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{EventSink, normalize};
use crate::aws::cloudtrail::Trail;
use crate::aws::{AwsError, Place};

/// The event names rotationd acts on (IAM and Identity Center share `DeleteUser`).
pub const EVENT_NAMES: &[&str] = &[
    "RotationFailed",
    "RotationAbandoned",
    "DeleteUser",
    "DeleteLoginProfile",
    "DisableUser",
];
/// Re-read this much before the cursor: CloudTrail delivers late and out of order.
pub const OVERLAP: chrono::Duration = chrono::Duration::minutes(15);
/// CloudTrail keeps 90 days of management events.
pub const HISTORY: chrono::Duration = chrono::Duration::days(90);
/// 2 requests per second per account and region, with a margin for jitter.
pub const REQUEST_SPACING: Duration = Duration::from_millis(550);
/// The cursor's name in the state store (without `[[account]]`).
pub const CURSOR: &str = "cloudtrail";

/// The cursor of one account-region: [`CURSOR`] for the implicit one (so an upgrade keeps
/// its place), `cloudtrail:<account>:<region>` with `[[account]]` tables.
pub fn cursor_name(place: &Place, routed: bool) -> String {
    if routed {
        format!("{CURSOR}:{}:{}", place.account, place.region)
    } else {
        CURSOR.to_string()
    }
}

/// One poller per account-region: CloudTrail's 2 requests/s is per account and region,
/// so each paces itself, and one failing account does not hold back the others.
pub struct Poller {
    pub trail: Trail,
    /// Where this poller keeps its place ([`cursor_name`]).
    pub cursor: String,
    pub sink: Arc<EventSink>,
    pub lookback: chrono::Duration,
    pub interval: Duration,
}

impl Poller {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            if self.sink.inventory.read().await.is_some() {
                match self.sweep(&cancel).await {
                    Ok(n) => tracing::debug!(events = n, "cloudtrail sweep done"),
                    Err(e) => {
                        tracing::warn!(account = %self.trail.place().account, region = %self.trail.place().region, error = %e, "cloudtrail sweep failed; the next one starts from the same cursor")
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(if self.sink.inventory.read().await.is_some() { self.interval } else { Duration::from_secs(1) }) => {}
            }
        }
    }

    /// The start of the next sweep: the cursor minus the overlap, or the lookback on the
    /// first start; never older than the history.
    pub fn start_time(
        cursor: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        lookback: chrono::Duration,
    ) -> DateTime<Utc> {
        let start = cursor.map_or(now - lookback, |c| c - OVERLAP);
        start.max(now - HISTORY + chrono::Duration::minutes(1))
    }

    /// One sweep over every event name; returns how many records were handled.
    pub async fn sweep(&self, cancel: &CancellationToken) -> Result<usize, SweepError> {
        let now = self.sink.clock.now();
        let name = self.cursor.clone();
        let cursor = self
            .sink
            .store
            .call(move |s| s.db().get_cursor(&name))
            .await?
            .and_then(|c| DateTime::parse_from_rfc3339(&c.value).ok())
            .map(|t| t.with_timezone(&Utc));
        let start = Self::start_time(cursor, now, self.lookback);
        let mut handled = 0;
        let mut pace = tokio::time::interval(REQUEST_SPACING);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for name in EVENT_NAMES {
            let mut token: Option<String> = None;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(SweepError::Cancelled),
                    _ = pace.tick() => {}
                }
                let out = self.trail.lookup(name, start, now, token.clone()).await?;
                for event in &out.events {
                    let record = event.record.as_str();
                    let normalized =
                        normalize::normalize_cloudtrail_record(record, &self.sink.normalize);
                    let detail = serde_json::json!({
                        "event_id": event.id,
                        "event_name": event.name,
                        "bytes": record.len(),
                    });
                    let disposition = self
                        .sink
                        .accept(normalized, "cloudtrail", event.id.as_deref(), detail)
                        .await?;
                    if disposition == super::Disposition::Acted {
                        // What it committed may include alerts (RotationFailed, compromise).
                        self.sink.alerts.wake_publisher();
                    }
                    handled += 1;
                }
                let next = out.next_token.filter(|t| !t.is_empty());
                if next.is_some() && next == token {
                    return Err(SweepError::Aws(AwsError {
                        operation: "LookupEvents",
                        code: None,
                        message: "pagination did not advance (the same NextToken came back)".into(),
                        retryable: false,
                    }));
                }
                token = next;
                if token.is_none() {
                    break;
                }
            }
        }
        let value = now.to_rfc3339();
        let at = self.sink.clock.now();
        let name = self.cursor.clone();
        self.sink
            .store
            .call(move |s| s.db().set_cursor(&name, &value, at))
            .await?;
        self.sink
            .metrics
            .cloudtrail_cursor_timestamp_seconds
            .with_label_values(&[&self.trail.place().account, &self.trail.place().region])
            .set(now.timestamp() as f64);
        Ok(handled)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("state store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("interrupted by shutdown")]
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn start_time_overlaps_the_cursor_and_stays_inside_the_history() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let day = chrono::Duration::hours(24);
        assert_eq!(Poller::start_time(None, now, day), now - day);
        let cursor = now - chrono::Duration::minutes(5);
        assert_eq!(Poller::start_time(Some(cursor), now, day), cursor - OVERLAP);
        let ancient = now - chrono::Duration::days(400);
        assert_eq!(
            Poller::start_time(Some(ancient), now, day),
            now - HISTORY + chrono::Duration::minutes(1)
        );
    }
}
