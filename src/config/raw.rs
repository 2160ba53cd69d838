//! The configuration file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct denies unknown keys and every field is optional, so that one section with a
//! mistake does not hide the mistakes in another and so that "missing key" errors can be
//! reported by the section that checks it (`super::sections`), at the position of the table
//! that lacks it. Values keep their source span ([`Spanned`]) for the same reason. Nothing here is validated: the
//! stricter types live in [`super`].
//!
//! The tables with required keys also carry the keys written in them ([`Written`]): a
//! required key written with a wrong type is reported as such, and not also as missing.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

/// The keys written in a table, whatever their values; set when the table is read.
#[derive(Debug, Default)]
pub struct Written(Vec<String>);

impl Written {
    pub fn new(keys: impl IntoIterator<Item = String>) -> Self {
        Written(keys.into_iter().collect())
    }

    /// Whether `key` was written. A key written whose value is absent had a wrong type,
    /// which has been reported already.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|k| k == key)
    }
}

/// A table that records its [`Written`] keys.
pub trait Keyed {
    fn written_mut(&mut self) -> &mut Written;
}

macro_rules! keyed {
    ($($table:ty),*) => {
        $(impl Keyed for $table {
            fn written_mut(&mut self) -> &mut Written {
                &mut self.written
            }
        })*
    };
}

keyed!(RawAccount, RawState, RawMetric);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: S<String>,
    pub profile: S<String>,
    pub endpoint_url: S<String>,
}

/// An `[[account]]`: an AWS account whose secrets rotationd manages, and how to reach it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub id: S<String>,
    pub role_arn: S<String>,
    pub regions: S<Vec<Spanned<String>>>,
    #[serde(skip)]
    pub written: Written,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state_path: S<String>,
    pub metrics_listen: S<String>,
    pub reconcile_interval: S<String>,
    pub max_rotations_per_minute: S<i64>,
    pub mode: S<String>,
}

/// `[state]`: where the daemon keeps its state, the embedded SQLite file (`[daemon]
/// state_path`) or a DynamoDB table shared by an active and standby instances.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: S<String>,
    pub table: S<String>,
    pub lease: S<String>,
    pub retention: S<String>,
    pub audit_retention: S<String>,
    pub max_size: S<String>,
    /// A `backend` written with a wrong type does not also count as the default backend.
    #[serde(skip)]
    pub written: Written,
}

/// `[audit]`: the audit log's anchors, its chain head written to S3 under Object Lock.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub anchor_bucket: S<String>,
    pub anchor_prefix: S<String>,
    pub anchor_every: S<String>,
    pub anchor_retention: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub security_topic_arn: S<String>,
    pub notify_topic_arn: S<String>,
    pub realert_interval: S<String>,
    pub unreachable_after: S<String>,
    pub chat_topic_arn: S<String>,
    pub chat_min_severity: S<String>,
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
    pub validation_period: S<String>,
    pub validation_interval: S<String>,
    pub native_schedule: S<String>,
    pub rotation_timeout: S<String>,
    pub notice: S<Vec<Spanned<String>>>,
}

/// `[identity_center]`: the IAM Identity Center directory departures are resolved against.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityCenter {
    pub identity_store_id: S<String>,
    pub region: S<String>,
}

/// A `[[vendor]]`: whose schedule, window and notices its secrets (`vendor = "NAME"`) take.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVendor {
    pub name: S<String>,
    pub schedule: S<String>,
    pub window: S<String>,
    pub contact_topic_arn: S<String>,
    pub notice: S<Vec<Spanned<String>>>,
}

/// A `[[dependent]]`: a service that uses secrets, notified and watched around rotations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDependent {
    pub name: S<String>,
    pub notify_topic_arn: S<String>,
    pub chat_topic_arn: S<String>,
    pub chat_min_severity: S<String>,
    pub alarms: S<Vec<Spanned<String>>>,
    pub metrics: S<Vec<Spanned<RawMetric>>>,
    pub log_groups: S<Vec<Spanned<String>>>,
    pub auth_error_pattern: S<String>,
    pub max_auth_errors: S<i64>,
}

/// A `[[dependent.metrics]]`: a CloudWatch metric whose breach marks the dependent unhealthy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetric {
    pub namespace: S<String>,
    pub metric_name: S<String>,
    pub dimensions: S<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub statistic: S<String>,
    /// A TOML integer or float (serde's `f64` accepts both).
    pub threshold: S<f64>,
    pub period: S<String>,
    #[serde(skip)]
    pub written: Written,
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
    pub auto_rollback: S<bool>,
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
    pub auto_rollback: S<bool>,
}

/// `[requests]`: rotation and rollback requests from CommandBridge (or any operator tool).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    pub source: S<String>,
    pub levels: S<std::collections::BTreeMap<String, Spanned<String>>>,
    pub approvers_topic_arn: S<String>,
    pub approval_timeout: S<String>,
    pub emergency_approval_timeout: S<String>,
    pub event_bus: S<String>,
}
