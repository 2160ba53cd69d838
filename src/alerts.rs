//! Escalations to Security and notices to dependent teams, over SNS, through an outbox.
//!
//! An alert is first written to the state store's outbox ([`Alerts::raise`]), in the same
//! transaction that records its dedupe key, and only then published by [`publish_loop`].
//! So an alert survives an SNS outage or a restart, is sent once per incident (re-sent
//! after `[alerts] realert_interval`), and the code that raises it never waits on SNS.
//!
//! Every alert carries the runbook steps from the Secrets Rotation Guide that apply to its
//! kind, so the person paged knows what to do without opening another document. No alert
//! ever contains a secret value: only names, ARNs, version ids, tickets and AWS error
//! messages (which never include values).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsError;
use crate::aws::sns::Sns;
use crate::config::{Config, Mode};
use crate::metrics::Metrics;
use crate::store::{NewAlert, OutboxAlert, StoreError, StoreHandle};

mod kind;
pub mod render;

/// The alert envelope's schema name; bump it when the JSON changes incompatibly.
pub const SCHEMA: &str = "rotationd.alert.v1";

pub use kind::{AlertKind, Audience, Severity};

/// One alert, before it enters the outbox.
#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: AlertKind,
    /// Display name of the secret, if the alert is about one.
    pub secret: Option<String>,
    pub secret_arn: Option<String>,
    /// Why the rotation ran: scheduled, departure, compromise, manual, retry...
    pub trigger: Option<String>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
    /// Free-form extra context (window, versions, evidence).
    pub details: serde_json::Value,
    pub dedupe_key: String,
    /// A copy for one `[[dependent]]`: published to its `notify_topic_arn` instead of the
    /// audience's topic, and carried as the `dependent` message attribute.
    pub dependent: Option<String>,
    /// A copy for one `[[vendor]]`: published to its `contact_topic_arn`, and carried as the
    /// `vendor` message attribute.
    pub vendor: Option<String>,
    /// The daemon's `[daemon] mode` when the alert was queued, set by
    /// [`Alert::to_new_alert`]: observe-mode alerts say so in every rendering.
    pub mode: Mode,
    /// Security's copy of a notice for the dependents (`rollback_completed`): published to
    /// the Security topic, carried as the `copy` message attribute `security`.
    pub security_copy: bool,
}

impl Alert {
    pub fn new(kind: AlertKind, secret: Option<&str>, occurred_at: DateTime<Utc>) -> Alert {
        let dedupe_key = format!("{}:{}", kind.as_str(), secret.unwrap_or("-"));
        Alert {
            kind,
            secret: secret.map(str::to_string),
            secret_arn: None,
            trigger: None,
            ticket: None,
            reason: None,
            error: None,
            occurred_at,
            deadline: None,
            details: serde_json::Value::Null,
            dedupe_key,
            dependent: None,
            vendor: None,
            mode: Mode::Enforce,
            security_copy: false,
        }
    }

    /// A notice and its copies: one for each of `dependents` with its own
    /// `notify_topic_arn`, one for `vendor` when it has a `contact_topic_arn` (each with
    /// its own dedupe key), then the notice itself.
    pub fn with_copies(
        self,
        cfg: &Config,
        dependents: &[String],
        vendor: Option<&str>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for d in dependents {
            if cfg
                .dependent(d)
                .is_some_and(|d| d.notify_topic_arn.is_some())
            {
                let mut copy = self.clone();
                copy.dedupe_key = format!("{}:{d}", self.dedupe_key);
                copy.dependent = Some(d.clone());
                out.push(copy);
            }
        }
        if let Some(v) =
            vendor.filter(|v| cfg.vendor(v).is_some_and(|v| v.contact_topic_arn.is_some()))
        {
            let mut copy = self.clone();
            copy.dedupe_key = format!("{}:vendor:{v}", self.dedupe_key);
            copy.vendor = Some(v.to_string());
            out.push(copy);
        }
        out.push(self);
        out
    }

    /// This alert's copy for Security (see [`Alert::security_copy`]), with its own dedupe
    /// key.
    pub fn copy_for_security(&self) -> Alert {
        let mut a = self.clone();
        a.dependent = None;
        a.vendor = None;
        a.security_copy = true;
        a.dedupe_key = format!("{}:{COPY_SECURITY}", self.dedupe_key);
        a
    }

    /// The P1 `breach_suspected`: a suspected compromise of `secret`, reported by
    /// `source` (an event source, `cli`, `request`) as `report` (its event, attempt or
    /// request id, the dedupe key). `rotation` says what rotationd does about it. The one
    /// builder for a compromise event, an unmanaged secret, `rotate --emergency` and an
    /// emergency request.
    #[allow(clippy::too_many_arguments)]
    pub fn breach_suspected(
        secret: &str,
        at: DateTime<Utc>,
        ticket: Option<String>,
        reason: Option<String>,
        source: &str,
        report: &str,
        rotation: &str,
    ) -> Alert {
        let mut a = Alert::new(AlertKind::BreachSuspected, Some(secret), at);
        a.trigger = Some("compromise".into());
        a.ticket = Some(ticket.unwrap_or_else(|| crate::ticket::INC_PENDING.into()));
        a.reason = reason;
        a.dedupe_key = format!("breach_suspected:{secret}:{report}");
        a.details = json!({ "event_id": report, "source": source, "rotation": rotation });
        a
    }

    /// `[P1] rotation_failed prod/payments/db`: severity and kind first, at most 100 ASCII
    /// characters, as SNS requires for email subjects (see [`render::subject`]).
    pub fn subject(&self) -> String {
        render::subject(
            self.kind.severity().as_str(),
            self.kind.as_str(),
            self.secret.as_deref(),
            self.mode.is_observe(),
        )
    }

    pub fn message(&self) -> serde_json::Value {
        json!({
            "schema": SCHEMA,
            "kind": self.kind.as_str(),
            "severity": self.kind.severity().as_str(),
            "summary": self.kind.summary(),
            "secret": { "name": self.secret, "arn": self.secret_arn },
            "trigger": self.trigger,
            "ticket": self.ticket,
            "reason": self.reason,
            "error": self.error,
            "occurred_at": self.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "deadline": self.deadline.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "runbook": self.kind.runbook(),
            "details": self.details,
            "dedupe_key": self.dedupe_key,
            // Added to v1 (consumers ignore what they do not know): `observe` means
            // rotationd changed nothing in Secrets Manager.
            "mode": self.mode.as_str(),
        })
    }

    /// The outbox row for this alert, queued while the daemon runs in `mode`.
    pub fn to_new_alert(&self, mode: Mode) -> NewAlert {
        if self.mode != mode {
            return Alert {
                mode,
                ..self.clone()
            }
            .to_new_alert(mode);
        }
        let mut attributes = BTreeMap::new();
        // An SNS subscription filter policy can route observe-mode alerts away from pagers.
        attributes.insert("mode".to_string(), self.mode.as_str().to_string());
        attributes.insert("kind".to_string(), self.kind.as_str().to_string());
        attributes.insert(
            "severity".to_string(),
            self.kind.severity().as_str().to_string(),
        );
        attributes.insert(
            "secret".to_string(),
            self.secret.clone().unwrap_or_else(|| "-".to_string()),
        );
        if let Some(d) = &self.dependent {
            attributes.insert("dependent".to_string(), d.clone());
        }
        if let Some(v) = &self.vendor {
            attributes.insert("vendor".to_string(), v.clone());
        }
        if self.security_copy {
            attributes.insert(COPY.to_string(), COPY_SECURITY.to_string());
        }
        NewAlert {
            dedupe_key: self.dedupe_key.clone(),
            kind: self.kind.as_str().to_string(),
            severity: self.kind.severity().as_str().to_string(),
            subject: self.subject(),
            message: self.message(),
            attributes,
        }
    }
}

/// An alert ready for `Db::enqueue_alert_deduped(&alert, at, realert)` inside a caller's
/// transaction; see [`Alerts::prepare`].
pub struct Prepared {
    pub alert: NewAlert,
    pub realert: chrono::Duration,
    pub at: chrono::DateTime<Utc>,
}

/// Raises alerts into the outbox.
#[derive(Clone)]
pub struct Alerts {
    store: StoreHandle,
    realert_interval: chrono::Duration,
    notify_enabled: bool,
    mode: Mode,
    /// Wakes this process's publisher ([`publish_loop`]) once an alert is committed, so it
    /// sleeps instead of polling the outbox. Shared by every clone.
    outbox: Arc<tokio::sync::Notify>,
}

impl Alerts {
    pub fn new(store: StoreHandle, cfg: &Config) -> Alerts {
        Alerts {
            store,
            realert_interval: chrono::Duration::from_std(cfg.alerts.realert_interval)
                .unwrap_or(chrono::Duration::hours(4)),
            notify_enabled: cfg.alerts.notify_topic_arn.is_some(),
            mode: cfg.daemon.mode,
            outbox: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// What [`publish_loop`] waits on.
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }

    /// Wakes the publisher: for a caller that committed alerts with its own transaction
    /// (`Db::enqueue_alert_deduped` after [`Alerts::prepare`]). Waking it for nothing costs
    /// one outbox read; a wake before anyone waits is kept for the next wait.
    pub fn wake_publisher(&self) {
        self.outbox.notify_one();
    }

    /// [`Alerts::log_queued`], and wakes the publisher.
    pub fn queued(&self, alert: &Alert) {
        Alerts::log_queued(alert);
        self.wake_publisher();
    }

    /// Queues `alert` unless the same incident (dedupe key) was alerted within
    /// `realert_interval`. Returns whether it was queued.
    pub async fn raise(&self, alert: Alert) -> Result<bool, StoreError> {
        match self.prepare(&alert) {
            Some(p) => self.enqueue(&alert, p.alert, p.realert).await,
            None => Ok(false),
        }
    }

    /// Queues `alert` only if its dedupe key was never alerted ("escalated once").
    pub async fn raise_once(&self, alert: Alert) -> Result<bool, StoreError> {
        if self.prepare(&alert).is_none() {
            return Ok(false);
        }
        // A realert interval longer than any deployment: once per key.
        let new = alert.to_new_alert(self.mode);
        self.enqueue(&alert, new, chrono::Duration::days(365 * 100))
            .await
    }

    /// What [`Alerts::raise`] would write, for a caller that queues the alert inside its own
    /// store transaction (so the alert commits with the state change it reports): `None`
    /// when nobody is to be told. Queue it with `Db::enqueue_alert_deduped`, then call
    /// [`Alerts::log_queued`] after the commit.
    pub fn prepare(&self, alert: &Alert) -> Option<Prepared> {
        if alert.dependent.is_none()
            && alert.vendor.is_none()
            && !alert.security_copy
            && alert.kind.audience() == Audience::Notify
            && !self.notify_enabled
        {
            return None;
        }
        Some(Prepared {
            alert: alert.to_new_alert(self.mode),
            realert: self.realert_interval,
            // The outbox runs on the wall clock: the publisher compares `next_attempt_at`
            // with `Utc::now()`, whatever the engine's (test-shiftable) clock says.
            at: Utc::now(),
        })
    }

    /// The log line [`Alerts::raise`] writes for a queued alert.
    pub fn log_queued(alert: &Alert) {
        tracing::info!(
            kind = alert.kind.as_str(),
            severity = alert.kind.severity().as_str(),
            secret = alert.secret.as_deref().unwrap_or("-"),
            "alert queued"
        );
    }

    async fn enqueue(
        &self,
        alert: &Alert,
        new: NewAlert,
        realert: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let queued = self
            .store
            .call(move |s| Ok(s.db().enqueue_alert_deduped(&new, now, realert)?.is_some()))
            .await?;
        if queued {
            self.queued(alert);
        }
        Ok(queued)
    }
}

/// The outbox attribute that marks Security's copy of a notice ([`Alert::security_copy`]).
const COPY: &str = "copy";
const COPY_SECURITY: &str = "security";

/// The outbox attribute that marks a chat copy of an alert (see [`chat_copy`]).
const CHANNEL: &str = "channel";
const CHAT: &str = "chat";

/// Publishes one outbox alert to its topic: a body per protocol
/// (`MessageStructure = "json"`, [`render::structured`]), or for a chat copy the chat
/// notification as the plain message, which is what AWS's chat integration reads.
/// Publishes `alert` to Security's topic now, without the outbox: for when the state
/// store itself is what failed (`state_lost`). No dedupe and no chat copy; the caller
/// retries until it is accepted.
pub async fn publish_direct(sns: &Sns, cfg: &Config, alert: &Alert) -> Result<(), AwsError> {
    let unsaved = OutboxAlert::unsaved(alert.to_new_alert(cfg.daemon.mode), Utc::now());
    publish_one(sns, &cfg.alerts.security_topic_arn, &unsaved).await
}

async fn publish_one(sns: &Sns, topic: &str, alert: &OutboxAlert) -> Result<(), AwsError> {
    if alert.attributes.get(CHANNEL).map(String::as_str) == Some(CHAT) {
        let chat = render::chat(&alert.message).to_string();
        sns.publish(topic, &alert.subject, chat, false, &alert.attributes)
            .await
    } else {
        let bodies = render::structured(&alert.message);
        sns.publish(topic, &alert.subject, bodies, true, &alert.attributes)
            .await
    }
}

/// The chat topic an alert also goes to, if any: `[alerts] chat_topic_arn` for Security's
/// and the notify topic's alerts, a dependent's own `chat_topic_arn` for its copies; only
/// from the configured least severity up. Chat copies themselves are not copied again.
fn chat_topic<'a>(cfg: &'a Config, alert: &OutboxAlert) -> Option<&'a str> {
    // Chat copies are not copied again; a vendor's copy goes to the vendor only.
    if alert.attributes.contains_key(CHANNEL) || alert.attributes.contains_key("vendor") {
        return None;
    }
    let rank = Severity::parse(&alert.severity)?.rank();
    let (topic, min) = match alert.attributes.get("dependent") {
        Some(d) => {
            let d = cfg.dependent(d)?;
            (d.chat_topic_arn.as_deref()?, d.chat_min_severity)
        }
        None => (
            cfg.alerts.chat_topic_arn.as_deref()?,
            cfg.alerts.chat_min_severity,
        ),
    };
    (rank <= min).then_some(topic)
}

/// The chat copy of a published alert, queued in the same transaction that marks the
/// alert published: it cannot be lost, and a failing chat topic never holds back (or
/// repeats) the alert itself.
fn chat_copy(alert: &OutboxAlert) -> NewAlert {
    let mut attributes = alert.attributes.clone();
    attributes.insert(CHANNEL.into(), CHAT.into());
    NewAlert {
        dedupe_key: format!("{}:{CHAT}", alert.dedupe_key),
        kind: alert.kind.clone(),
        severity: alert.severity.clone(),
        subject: alert.subject.clone(),
        message: alert.message.clone(),
        attributes,
    }
}

/// Backoff before retrying a failed publish: 5 s doubling up to 5 min.
pub fn publish_backoff(attempts: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempts.min(10));
    Duration::from_secs(secs.min(300))
}

/// How often the publisher reads the outbox when nothing woke it. Alerts queued by this
/// process wake it ([`Alerts::wake_publisher`]), but two kinds of writer cannot: a CLI
/// process (`rotationd rotate`, `rollback`) whose alert could not be published leaves it in
/// the same SQLite file, and with `[state] backend = "dynamodb"` a standby records the
/// alerts of the events it consumes in the shared log. They wait at most this long.
pub const OUTBOX_SAFETY_POLL: Duration = Duration::from_secs(60);
/// After a failed read of the outbox itself (the store), the next try.
const OUTBOX_READ_RETRY: Duration = Duration::from_secs(2);

/// Drains the outbox into SNS until cancelled. Publishes oldest first; a failure keeps
/// the alert in the outbox with a backoff. Between passes it sleeps until `outbox` is
/// notified (an alert was queued), the next failed alert's retry falls due, or
/// [`OUTBOX_SAFETY_POLL`] passes: an idle daemon does not read the outbox every second.
/// `beat` is called every pass, and every `beat_every` while it sleeps, for the systemd
/// watchdog.
#[allow(clippy::too_many_arguments)]
pub async fn publish_loop(
    store: StoreHandle,
    sns: Sns,
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    outbox: Arc<tokio::sync::Notify>,
    beat: impl Fn() + Send,
    beat_every: Option<Duration>,
    cancel: CancellationToken,
) {
    loop {
        beat();
        let wait = match publish_due(&store, &sns, &cfg, &metrics).await {
            Ok(published) => match next_due_in(&store).await {
                // Still due after a pass that published nothing: SNS refused (the pass
                // stops at the first retryable failure); not a hot loop over the rest.
                Ok(wait) if wait.is_zero() && published == 0 => OUTBOX_READ_RETRY,
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the alert outbox; retrying");
                    OUTBOX_READ_RETRY
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the alert outbox; retrying");
                OUTBOX_READ_RETRY
            }
        };
        if wait.is_zero() {
            // More than one pass's worth was due, and the last one made progress.
            continue;
        }
        let until = tokio::time::Instant::now() + wait;
        loop {
            let beat_at = beat_every.map_or(until, |b| until.min(tokio::time::Instant::now() + b));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = outbox.notified() => break,
                _ = tokio::time::sleep_until(beat_at) => {
                    if beat_at >= until {
                        break;
                    }
                    beat();
                }
            }
        }
    }
}

/// How long until the next unpublished alert is due: zero when one is due now, at most
/// [`OUTBOX_SAFETY_POLL`].
async fn next_due_in(store: &StoreHandle) -> Result<Duration, StoreError> {
    let now = Utc::now();
    let horizon = now
        + chrono::Duration::from_std(OUTBOX_SAFETY_POLL).unwrap_or(chrono::Duration::minutes(1));
    let soon = store.call(move |s| s.db().due_alerts(horizon, 50)).await?;
    Ok(soon
        .iter()
        .map(|a| a.next_attempt_at)
        .min()
        .map_or(OUTBOX_SAFETY_POLL, |next| {
            (next - now).to_std().unwrap_or(Duration::ZERO)
        }))
}

/// How long a publisher holds an alert it is publishing (longer than an SNS call with
/// the SDK's retries; a publisher that dies holding it delays the alert by this much).
const PUBLISH_CLAIM: chrono::Duration = chrono::Duration::seconds(60);

/// Publishes the due alerts, and then the chat copies that publishing them queued (a
/// copy is never copied again, so that is at most two passes). Returns how many were
/// published.
pub async fn publish_due(
    store: &StoreHandle,
    sns: &Sns,
    cfg: &Config,
    metrics: &Metrics,
) -> Result<usize, StoreError> {
    let (mut published, copies) = publish_pass(store, sns, cfg, metrics).await?;
    if copies > 0 {
        published += publish_pass(store, sns, cfg, metrics).await?.0;
    }
    Ok(published)
}

/// One pass over the due alerts: (published, chat copies queued).
async fn publish_pass(
    store: &StoreHandle,
    sns: &Sns,
    cfg: &Config,
    metrics: &Metrics,
) -> Result<(usize, usize), StoreError> {
    let now = Utc::now();
    let due = store.call(move |s| s.db().due_alerts(now, 50)).await?;
    let mut published = 0;
    let mut copies = 0;
    for alert in due {
        let kind = AlertKind::parse(&alert.kind);
        let chat = alert.attributes.get(CHANNEL).map(String::as_str) == Some(CHAT);
        let topic = match (
            alert.attributes.get("dependent"),
            kind.map(AlertKind::audience),
        ) {
            // A chat copy goes to the chat topic, as configured now.
            (Some(d), _) if chat => cfg.dependent(d).and_then(|d| d.chat_topic_arn.as_deref()),
            (None, _) if chat => cfg.alerts.chat_topic_arn.as_deref(),
            // A dependent's copy goes to its own topic, as configured now.
            (Some(d), _) => cfg.dependent(d).and_then(|d| d.notify_topic_arn.as_deref()),
            // Security's copy of a notice.
            (None, _) if alert.attributes.get(COPY).map(String::as_str) == Some(COPY_SECURITY) => {
                Some(cfg.alerts.security_topic_arn.as_str())
            }
            // A vendor's copy, to its contact topic, as configured now.
            (None, _) if alert.attributes.contains_key("vendor") => alert
                .attributes
                .get("vendor")
                .and_then(|v| cfg.vendor(v))
                .and_then(|v| v.contact_topic_arn.as_deref()),
            (None, Some(Audience::Notify)) => cfg.alerts.notify_topic_arn.as_deref(),
            (None, Some(Audience::Approvers)) => Some(
                cfg.requests
                    .as_ref()
                    .and_then(|r| r.approvers_topic_arn.as_deref())
                    .unwrap_or(cfg.alerts.security_topic_arn.as_str()),
            ),
            _ => Some(cfg.alerts.security_topic_arn.as_str()),
        };
        let id = alert.id;
        // Another process may have read the same due row: only the claimant publishes.
        let claimed = store
            .call(move |s| s.db().claim_alert(id, now, now + PUBLISH_CLAIM))
            .await?;
        if !claimed {
            continue;
        }
        let Some(topic) = topic else {
            // Notices queued before notify_topic_arn (or the dependent's topic) was removed:
            // nobody to tell.
            store
                .call(move |s| s.db().mark_alert_published(id, Utc::now()))
                .await?;
            continue;
        };
        match publish_one(sns, topic, &alert).await {
            Ok(()) => {
                let copy = chat_topic(cfg, &alert).map(|_| chat_copy(&alert));
                copies += usize::from(copy.is_some());
                store
                    .call(move |s| {
                        s.transaction(|db| {
                            let now = Utc::now();
                            db.mark_alert_published(id, now)?;
                            if let Some(copy) = &copy {
                                db.enqueue_alert(copy, now)?;
                            }
                            Ok(())
                        })
                    })
                    .await?;
                metrics
                    .alerts_published_total
                    .with_label_values(&[alert.kind.as_str(), alert.severity.as_str()])
                    .inc();
                published += 1;
            }
            Err(e) => {
                let next = Utc::now()
                    + chrono::Duration::from_std(publish_backoff(alert.attempts))
                        .unwrap_or(chrono::Duration::minutes(5));
                tracing::warn!(error = %e, kind = %alert.kind, "cannot publish alert; it stays in the outbox");
                let msg = e.to_string();
                store
                    .call(move |s| s.db().mark_alert_failed(id, &msg, next))
                    .await?;
                if e.retryable {
                    // SNS is down or throttling: the rest would fail the same way.
                    break;
                }
            }
        }
    }
    let pending = store.call(|s| s.db().unpublished_alert_count()).await?;
    metrics
        .alerts_outbox
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    Ok((published, copies))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn outbox(alert: &Alert) -> OutboxAlert {
        OutboxAlert::unsaved(alert.to_new_alert(Mode::Enforce), Utc::now())
    }

    #[test]
    fn chat_copies_go_by_severity_to_security_s_or_the_dependent_s_chat_topic() {
        let src = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:sec"
chat_topic_arn = "arn:aws:sns:us-east-1:123456789012:chat"
[[dependent]]
name = "api"
alarms = ["api-5xx"]
chat_topic_arn = "arn:aws:sns:us-east-1:123456789012:api-chat"
[[dependent]]
name = "quiet"
alarms = ["quiet-5xx"]
[[secret]]
id = "a"
strategy = "single-user"
change_ticket = "CHG-1"
"#;
        let (cfg, _) = Config::from_source(std::path::Path::new("t.toml"), src).unwrap();
        let t = Utc::now();
        let p1 = outbox(&Alert::new(AlertKind::RotationFailed, Some("a"), t));
        let p2 = outbox(&Alert::new(AlertKind::Overdue, Some("a"), t));
        let p3 = outbox(&Alert::new(AlertKind::RotationCompleted, Some("a"), t));
        // Security's chat: P1 and P2 by default.
        assert_eq!(
            chat_topic(&cfg, &p1),
            Some("arn:aws:sns:us-east-1:123456789012:chat")
        );
        assert_eq!(
            chat_topic(&cfg, &p2),
            Some("arn:aws:sns:us-east-1:123456789012:chat")
        );
        assert_eq!(chat_topic(&cfg, &p3), None);
        // A dependent's copy: its own chat topic, every notice by default; none without one.
        let mut notice = Alert::new(AlertKind::RotationCompleted, Some("a"), t);
        notice.dependent = Some("api".into());
        assert_eq!(
            chat_topic(&cfg, &outbox(&notice)),
            Some("arn:aws:sns:us-east-1:123456789012:api-chat")
        );
        notice.dependent = Some("quiet".into());
        assert_eq!(chat_topic(&cfg, &outbox(&notice)), None);
        // A chat copy is never copied again.
        let copy = chat_copy(&p1);
        assert_eq!(copy.dedupe_key, format!("{}:chat", p1.dedupe_key));
        let mut again = p1.clone();
        again.attributes = copy.attributes;
        assert_eq!(chat_topic(&cfg, &again), None);
    }

    #[test]
    fn subject_is_short_ascii_with_severity_and_secret() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
        let a = Alert::new(AlertKind::RotationFailed, Some("prod/payments/db"), t);
        assert_eq!(a.subject(), "[P1] rotation_failed prod/payments/db");
        let long = "x".repeat(200);
        let a = Alert::new(AlertKind::Overdue, Some(&format!("prod/é/{long}")), t);
        let s = a.subject();
        // SNS wants less than 100 characters.
        assert_eq!(s.len(), 99);
        assert!(s.is_ascii());
        assert!(s.starts_with("[P2] overdue prod/?/x"));
    }

    #[test]
    fn message_carries_the_contract_fields() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
        let mut a = Alert::new(AlertKind::DependentsUnhealthy, Some("prod/db"), t);
        a.ticket = Some("CHG-1".into());
        let m = a.message();
        assert_eq!(m["schema"], "rotationd.alert.v1");
        assert_eq!(m["kind"], "dependents_unhealthy");
        assert_eq!(m["severity"], "P1");
        assert_eq!(m["secret"]["name"], "prod/db");
        assert_eq!(m["ticket"], "CHG-1");
        assert_eq!(m["occurred_at"], "2026-11-25T00:00:00Z");
        assert_eq!(m["dedupe_key"], "dependents_unhealthy:prod/db");
        let runbook = m["runbook"].as_array().unwrap();
        assert!(
            runbook
                .iter()
                .any(|s| s.as_str().unwrap().contains("rotationd rollback"))
        );
        assert_eq!(m["mode"], "enforce");
        let n = a.to_new_alert(Mode::Enforce);
        assert_eq!(n.attributes["kind"], "dependents_unhealthy");
        assert_eq!(n.attributes["mode"], "enforce");
        assert_eq!(n.attributes["severity"], "P1");
        assert_eq!(n.attributes["secret"], "prod/db");
    }

    #[test]
    fn an_alert_queued_in_observe_mode_says_so_in_the_document_and_the_subject() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
        let a = Alert::new(AlertKind::BreachSuspected, Some("prod/db"), t);
        let n = a.to_new_alert(Mode::Observe);
        assert_eq!(n.message["mode"], "observe");
        assert_eq!(n.attributes["mode"], "observe");
        assert_eq!(n.subject, "[observe] [P1] breach_suspected prod/db");
        // Everything else is the enforce document, unchanged (v1 stays compatible).
        let mut e = a.to_new_alert(Mode::Enforce).message;
        e["mode"] = serde_json::json!("observe");
        assert_eq!(e, n.message);
    }

    #[test]
    fn every_kind_has_a_runbook_and_round_trips() {
        for k in AlertKind::ALL {
            assert!(!k.runbook().is_empty(), "{k:?}");
            assert_eq!(AlertKind::parse(k.as_str()), Some(*k));
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(publish_backoff(0), Duration::from_secs(5));
        assert_eq!(publish_backoff(1), Duration::from_secs(10));
        assert_eq!(publish_backoff(20), Duration::from_secs(300));
    }
}
