//! The configuration file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct denies unknown keys and every field is optional, so that one section with a
//! mistake does not hide the mistakes in another and so that "missing key" errors can be
//! reported by [`super::build`] with the position of the table that lacks it. Values keep
//! their source span ([`Spanned`]) for the same reason. Nothing here is validated: the
//! stricter types live in [`super`].

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: S<String>,
    pub profile: S<String>,
    pub endpoint_url: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state_path: S<String>,
    pub metrics_listen: S<String>,
    pub reconcile_interval: S<String>,
    pub max_rotations_per_minute: S<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub security_topic_arn: S<String>,
    pub notify_topic_arn: S<String>,
    pub realert_interval: S<String>,
    pub unreachable_after: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloudTrail {
    pub enabled: S<bool>,
    pub endpoint_url: S<String>,
    pub lookback: S<String>,
    pub poll_interval: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub queue_url: S<String>,
    pub allowed_accounts: S<Vec<Spanned<String>>>,
    pub departure_sla: S<String>,
    pub sla_warning: S<String>,
    pub event_bus: S<String>,
    pub workers: S<i64>,
    pub retry_failed: S<bool>,
    pub retry_backoff: S<String>,
    pub max_event_rotations_per_hour: S<i64>,
    pub dead_letter_queue_arn: S<String>,
    pub max_event_age: S<String>,
    pub max_retry_attempts: S<i64>,
    pub cloudtrail: S<RawCloudTrail>,
    pub departure: S<Vec<Spanned<RawCustomSource>>>,
    pub compromise: S<Vec<Spanned<RawCustomSource>>>,
}

/// `[[events.departure]]` / `[[events.compromise]]`: a custom EventBridge source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomSource {
    pub source: S<String>,
    pub detail_type: S<String>,
    pub user_pointer: S<String>,
    pub secret_pointer: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub max_age: S<String>,
    pub default_schedule: S<String>,
    pub default_window: S<String>,
    pub require_change_ticket: S<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: S<String>,
    pub members: S<Vec<Spanned<String>>>,
}

/// The settings a `[[secret]]` and a `[[selector]]` share.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub id: S<String>,
    pub schedule: S<String>,
    pub window: S<String>,
    pub strategy: S<String>,
    pub change_ticket: S<String>,
    pub dependents: S<Vec<Spanned<String>>>,
    pub custodians: S<Vec<Spanned<String>>>,
    pub vendor: S<String>,
}

/// A `[[selector]]`: the matcher plus the same settings as [`RawSecret`]. The settings are
/// repeated rather than `#[serde(flatten)]`ed because serde does not support `flatten`
/// together with `deny_unknown_fields`, and unknown keys must stay errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    pub tag_key: S<String>,
    pub tag_value: S<String>,
    pub name_prefix: S<String>,
    pub schedule: S<String>,
    pub window: S<String>,
    pub strategy: S<String>,
    pub change_ticket: S<String>,
    pub dependents: S<Vec<Spanned<String>>>,
    pub custodians: S<Vec<Spanned<String>>>,
    pub vendor: S<String>,
}
