//! Configuration: the TOML file parsed into a stricter, validated [`Config`].
//!
//! Two stages, as in vector's config compiler:
//! 1. `parse` reads the file into the [`raw`] structs, which mirror it with serde
//!    (`deny_unknown_fields`, every field optional and spanned). Each section and each
//!    `[[secret]]`/`[[selector]]`/`[[group]]`/`[[dependent]]`/`[[account]]` entry is
//!    deserialized on its own, and when one fails each of its keys is retried alone, so one
//!    run reports every mistake instead of the first.
//! 2. `build` hands each section to its module in `sections`, which turns the raw structs
//!    into real types (`Duration`, `NonZeroU32`, parsed [`Schedule`], `SocketAddr`) with the
//!    shared checks of `checks`, and runs the cross-field checks against what the earlier
//!    sections declared (duplicate ids, unknown groups and dependents, windows longer than
//!    the schedule's shortest gap, missing change tickets...).
//!
//! Every problem becomes a [`Diagnostic`] with the byte span it refers to; [`Diagnostics`]
//! renders them as `FILE:LINE:COL: error: MESSAGE`, one per line, sorted by position.

mod checks;
mod diag;
mod parse;
pub mod raw;
mod sections;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::drift::NativeSchedule;
use crate::schedule::Schedule;
use checks::Schedules;
use sections::settings::Declared;

pub use checks::{check_arn, fmt_duration};
pub use diag::{Diagnostic, Diagnostics, Severity};

/// Where `rotationd` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rotationd/rotationd.toml";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// The SHA-256 of the file's text (hex): what a reload's audit entry records.
    pub source_sha256: String,
    pub aws: AwsConfig,
    /// The `[[account]]`s, in file order. Empty when the file has none: rotationd then works
    /// on one implicit account, with its own credentials and `[aws] region`.
    pub accounts: Vec<Account>,
    pub daemon: DaemonConfig,
    /// `[state]`: where the state lives; [`StateConfig::default`] (SQLite) when absent.
    pub state: StateConfig,
    /// `[audit]`: the anchors of the audit log; none when absent.
    pub audit: AuditConfig,
    pub alerts: AlertsConfig,
    pub events: Option<EventsConfig>,
    pub requests: Option<RequestsConfig>,
    /// `[identity_center]`: the directory Identity Center departures are resolved against.
    pub identity_center: Option<IdentityCenterConfig>,
    pub policy: PolicyConfig,
    /// The `[[vendor]]`s, in file order.
    pub vendors: Vec<VendorConfig>,
    pub groups: Vec<Group>,
    pub dependents: Vec<DependentConfig>,
    pub secrets: Vec<SecretConfig>,
    pub selectors: Vec<SelectorConfig>,
}

#[derive(Debug, Clone, Default)]
pub struct AwsConfig {
    /// `None`: the default chain (`AWS_REGION`, profile, IMDS) decides.
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

/// An `[[account]]`: an AWS account whose secrets rotationd manages, and the regions it
/// looks in there.
///
/// The role, when set, is assumed with STS from the daemon's own credentials (`[aws]
/// profile` or the default chain). Secrets named by name are looked up in every
/// account-region listed; a `[[secret]]` given by ARN must point at an account and region
/// listed here (checked by validation). SNS, SQS and EventBridge stay where they were: in
/// `[aws] region` of the daemon's own account, which still matters when accounts are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The 12-digit account id (leading zeros included).
    pub id: String,
    /// The IAM role to assume in that account (`arn:PARTITION:iam::ID:role/NAME`); `None`:
    /// the daemon's own credentials reach it as they are.
    pub role_arn: Option<String>,
    /// Regions whose secrets rotationd manages in this account: at least one, no repeats.
    pub regions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The SQLite state database, used with `[state] backend = "sqlite"` (the default); not
    /// used with `backend = "dynamodb"`, whose state lives in the DynamoDB table.
    pub state_path: PathBuf,
    pub metrics_listen: SocketAddr,
    pub reconcile_interval: Duration,
    pub max_rotations_per_minute: NonZeroU32,
    /// `enforce` (the default) or `observe`: everything runs but nothing is changed in
    /// Secrets Manager.
    pub mode: Mode,
}

/// `[daemon] mode`: whether rotationd acts on Secrets Manager or only watches.
///
/// In `observe` mode inventory, plans, events, SLA clocks and alerts run as in `enforce`,
/// but RotateSecret, UpdateSecretVersionStage and CancelRotateSecret are never sent:
/// the Secrets Manager wrapper refuses them (`aws::secrets`), and every path above it
/// records what it would have done instead (docs/operations.md, "Observe mode").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Enforce,
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        }
    }

    pub fn is_observe(self) -> bool {
        self == Mode::Observe
    }
}

/// Where rotationd keeps its state (`[state] backend`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// The embedded SQLite file at [`DaemonConfig::state_path`], for a single instance.
    #[default]
    Sqlite,
    /// A DynamoDB table, shared by an active and standby instances that elect a leader with
    /// a lease item in the same table.
    Dynamodb {
        /// The table name (3 to 255 of `a-z A-Z 0-9 _ - .`), in `[aws] region` of the
        /// daemon's own account.
        table: String,
    },
}

/// `[state]`: the state backend and, for DynamoDB, the leader lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    pub backend: StateBackend,
    /// How long the leader's lease lasts (DynamoDB only; renewed every third of it, and a
    /// standby takes over within two lease periods of the leader stopping). Between 3s and
    /// 10m; 30s by default.
    pub lease: Duration,
    /// How long seen events (the dedupe memory) and published alerts are kept: 14d to
    /// 10y, 30d by default (`store::upkeep`).
    pub retention: Duration,
    /// How long audit entries are kept before they are pruned below a checkpoint: 90d to
    /// 100y, 400d by default.
    pub audit_retention: Duration,
    /// The most the SQLite file may grow to (`PRAGMA max_page_count`): beyond it writes
    /// fail as on a full disk, but the host's disk stays free. `None`: no cap.
    pub max_size: Option<u64>,
}

impl Default for StateConfig {
    /// SQLite with a 30s lease (the lease is then unused): what a file without `[state]` gets.
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Sqlite,
            lease: DEFAULT_LEASE,
            retention: DEFAULT_RETENTION,
            audit_retention: DEFAULT_AUDIT_RETENTION,
            max_size: None,
        }
    }
}

/// `[audit]`: where the audit chain's head is anchored, if anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditConfig {
    /// `anchor_bucket` and the keys that go with it; `None`: the log is not anchored.
    pub anchor: Option<AnchorConfig>,
}

/// The audit log's anchors: every `every` and at shutdown the leader writes the chain's
/// head (entry id, hash, time) to `bucket` under `prefix`, locked in compliance mode for
/// `retention` (`store::anchor`, `daemon::anchor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorConfig {
    /// An S3 bucket created with Object Lock enabled, in `[aws] region` of the daemon's
    /// own account (or reachable with its credentials).
    pub bucket: String,
    /// Prepended to every anchor's key as written (`rotationd/audit-anchors/` by default).
    pub prefix: String,
    /// How often the head is anchored (1m to 1d, 1h by default).
    pub every: Duration,
    /// How long each anchor is locked (1d to 100y, 400d by default).
    pub retention: Duration,
}

/// The default `[audit] anchor_prefix`.
pub const DEFAULT_ANCHOR_PREFIX: &str = "rotationd/audit-anchors/";
/// The default `[audit] anchor_every`.
const DEFAULT_ANCHOR_EVERY: Duration = Duration::from_secs(3600);
/// The default `[audit] anchor_retention`: `[state] audit_retention`'s default, so that an
/// anchor stays locked as long as the entries it vouches for are kept.
const DEFAULT_ANCHOR_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// The default `[state] lease`.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The default `[state] retention`.
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// The default `[state] audit_retention`.
const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub security_topic_arn: String,
    pub notify_topic_arn: Option<String>,
    pub realert_interval: Duration,
    /// AWS failing for this long raises `aws_unreachable` (once per outage).
    pub unreachable_after: Duration,
    /// A topic AWS's chat integration (Slack, Teams) subscribes to: it gets each alert of
    /// at least [`AlertsConfig::chat_min_severity`] as a custom chat notification.
    pub chat_topic_arn: Option<String>,
    /// The least severe alert chat gets: 1 = P1 only, 2 = P1 and P2 (default), 3 = all.
    pub chat_min_severity: u8,
}

#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub queue_url: String,
    pub allowed_accounts: Vec<String>,
    pub departure_sla: Duration,
    pub sla_warning: Duration,
    /// The EventBridge bus `setup-events` puts its rules on.
    pub event_bus: String,
    /// SQS consumers running at once.
    pub workers: NonZeroU32,
    /// After a RotationFailed event, retry once after `retry_backoff`.
    pub retry_failed: bool,
    pub retry_backoff: Duration,
    /// Storm guard: more event-triggered rotations than this in an hour pause them.
    pub max_event_rotations_per_hour: NonZeroU32,
    /// EventBridge target dead-letter queue for events it cannot deliver.
    pub dead_letter_queue_arn: Option<String>,
    /// EventBridge target retry policy.
    pub max_event_age: Duration,
    pub max_retry_attempts: u32,
    pub cloudtrail: CloudTrailConfig,
    pub departures: Vec<CustomSource>,
    pub compromises: Vec<CustomSource>,
}

/// A custom EventBridge source: events with this `source` and `detail-type` name a user
/// (departure) or a secret (compromise) at `pointer`, an RFC 6901 JSON pointer into the
/// whole event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSource {
    pub source: String,
    pub detail_type: String,
    pub pointer: String,
}

#[derive(Debug, Clone)]
pub struct CloudTrailConfig {
    pub enabled: bool,
    /// CloudTrail's own endpoint (a VPC endpoint; tests point it at a stand-in, since the
    /// emulator has no LookupEvents); default: `[aws] endpoint_url`, else AWS.
    pub endpoint_url: Option<String>,
    pub lookback: Duration,
    pub poll_interval: Duration,
}

/// The Secrets Rotation Guide's permission levels: L1 and L2 request approval for a rotation; only L3
/// executes directly, approves, and rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Level {
    L1,
    L2,
    L3,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
            Level::L3 => "L3",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "L1" => Some(Level::L1),
            "L2" => Some(Level::L2),
            "L3" => Some(Level::L3),
            _ => None,
        }
    }
}

/// `[requests]`: CommandBridge's rotation and rollback requests, arriving on the events
/// queue, and the approval policy applied to them.
#[derive(Debug, Clone)]
pub struct RequestsConfig {
    /// The EventBridge `source` of request events (default `commandbridge`).
    pub source: String,
    /// Who is which level, for identities that are not IAM users, roles or sessions (a
    /// CommandBridge user name, an account root ARN): matched exactly. An identity not
    /// listed is L1. The level an event claims is never taken on trust.
    pub levels: HashMap<String, Level>,
    /// The levels of IAM users and roles ([`crate::arn::Principal`]: account, kind and
    /// name, without the role's path or a session's name), from the keys that are their
    /// ARNs (or a session's ARN).
    pub principals: HashMap<crate::arn::Principal, Level>,
    /// Where approval requests go; the Security topic when not set.
    pub approvers_topic_arn: Option<String>,
    pub approval_timeout: Duration,
    pub emergency_approval_timeout: Duration,
    /// The bus `Rotation Request Updated` events are put on (default: `[events] event_bus`).
    pub event_bus: String,
}

impl RequestsConfig {
    /// The level of `identity`: an IAM user, role or assumed-role session ARN by its
    /// [`crate::arn::Principal`] (a session has its role's level), anything else (a user
    /// name, another ARN) exactly as written; L1 when not listed.
    pub fn level_of(&self, identity: &str) -> Level {
        match crate::arn::Principal::of(identity) {
            Some(p) => self.principals.get(&p).copied(),
            None => self.levels.get(identity.trim()).copied(),
        }
        .unwrap_or(Level::L1)
    }
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub max_age: Duration,
    pub default_schedule: Schedule,
    pub default_window: Duration,
    pub require_change_ticket: bool,
    /// How long dependents are watched after a rotation (the Secrets Rotation Guide's 15 minutes).
    pub validation_period: Duration,
    /// How often CloudWatch is polled during that watch.
    pub validation_interval: Duration,
    /// What to do about Secrets Manager's own rotation schedule.
    pub native_schedule: NativeSchedule,
    /// How long the rotation function's four steps may take, from the attempt's start,
    /// before the attempt fails (and a dangling AWSPENDING counts as stuck).
    pub rotation_timeout: Duration,
    /// Lead times before a planned window at which its dependents get `rotation_scheduled`
    /// (`notice = ["7d", "24h"]`), longest first; empty: told only when the rotation starts.
    pub notice: Vec<Duration>,
}

/// `[identity_center]`: the IAM Identity Center identity store rotationd reads (ListUsers,
/// ListGroups, ListGroupMemberships, once per reconcile) so that a departure naming only a
/// user id finds the user's name and groups, and `group:NAME` custodians take the Identity
/// Center group's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCenterConfig {
    /// `d-` and ten digits or lowercase letters.
    pub identity_store_id: String,
    /// Where Identity Center runs, when not `[aws] region`.
    pub region: Option<String>,
}

/// A `[[vendor]]`: a secret with `vendor = "NAME"` takes its schedule and window (unless
/// the secret sets its own: the secret's own keys win, then the vendor's, then
/// `[policy]`'s), its notice lead times (else `[policy] notice`), and its notices also go
/// to `contact_topic_arn`.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorConfig {
    pub name: String,
    pub schedule: Option<Schedule>,
    pub window: Option<Duration>,
    /// The vendor's SNS topic: a copy of each notice about its secrets.
    pub contact_topic_arn: Option<String>,
    /// `None`: `[policy] notice`.
    pub notice: Option<Vec<Duration>>,
}

/// A `[[dependent]]`: a service that uses secrets. It is notified around a rotation and,
/// when it has alarms or metrics, watched for [`PolicyConfig::validation_period`] after it.
#[derive(Debug, Clone, PartialEq)]
pub struct DependentConfig {
    pub name: String,
    /// Its own SNS topic for notices, besides `[alerts] notify_topic_arn`.
    pub notify_topic_arn: Option<String>,
    /// Its own chat topic (AWS's chat integration): its notices as chat notifications, of
    /// at least `chat_min_severity` (1 = P1 ... 3 = every notice, the default).
    pub chat_topic_arn: Option<String>,
    pub chat_min_severity: u8,
    /// CloudWatch alarm names: any of them in ALARM means unhealthy.
    pub alarms: Vec<String>,
    pub metrics: Vec<MetricWatch>,
    /// Its application logs, read for authentication errors after a rotation.
    pub logs: Option<LogWatch>,
}

impl DependentConfig {
    /// Whether its health can be checked after a rotation (it has alarms, metrics or logs).
    pub fn watched(&self) -> bool {
        !self.alarms.is_empty() || !self.metrics.is_empty() || self.logs.is_some()
    }
}

/// `log_groups` with `auth_error_pattern`: unhealthy when the lines matching the pattern
/// since the rotation outnumber those of the baseline period before it by more than
/// `max_auth_errors`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogWatch {
    /// CloudWatch Logs group names, at least one, each once.
    pub groups: Vec<String>,
    pub pattern: crate::filter_pattern::FilterPattern,
    /// Matches tolerated above the baseline (default 0).
    pub max_auth_errors: u32,
}

/// A `[[dependent.metrics]]`: unhealthy when `statistic` over `period` exceeds `threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWatch {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
    pub statistic: Statistic,
    /// Finite and at least zero.
    pub threshold: f64,
    /// A whole number of minutes, at most 1h.
    pub period: Duration,
}

/// A CloudWatch statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Statistic {
    Sum,
    Average,
    Maximum,
    Minimum,
    SampleCount,
}

impl Statistic {
    /// CloudWatch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Sum => "Sum",
            Statistic::Average => "Average",
            Statistic::Maximum => "Maximum",
            Statistic::Minimum => "Minimum",
            Statistic::SampleCount => "SampleCount",
        }
    }

    fn parse(text: &str) -> Option<Statistic> {
        Some(match text {
            "Sum" => Statistic::Sum,
            "Average" => Statistic::Average,
            "Maximum" => Statistic::Maximum,
            "Minimum" => Statistic::Minimum,
            "SampleCount" => Statistic::SampleCount,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub members: Vec<String>,
}

/// The Secrets Rotation Guide's two rotation strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// One user whose password changes in place; clients briefly need to retry.
    SingleUser,
    /// Two users that alternate; needs a superuser secret to clone the user.
    AlternatingUsers,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SingleUser => "single-user",
            Strategy::AlternatingUsers => "alternating-users",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Custodian {
    User(String),
    Group(String),
}

/// Settings shared by `[[secret]]` and `[[selector]]`, with the policy defaults filled in.
#[derive(Debug, Clone)]
pub struct SecretSettings {
    pub schedule: Schedule,
    pub window: Duration,
    pub strategy: Strategy,
    pub change_ticket: Option<String>,
    pub dependents: Vec<String>,
    pub custodians: Vec<Custodian>,
    /// The `[[vendor]]` it belongs to (validated to exist).
    pub vendor: Option<String>,
    /// Roll back on its own when a watched dependent turns unhealthy after a rotation.
    /// Off by default: the guide reserves rollback to L3.
    pub auto_rollback: bool,
    /// Notice lead times before its planned windows (its vendor's, else `[policy]`'s),
    /// longest first.
    pub notice: Vec<Duration>,
}

impl SecretSettings {
    /// The planner's view of a secret (or selector) with these settings.
    pub fn target(&self, id: String) -> crate::planner::Target {
        crate::planner::Target {
            id,
            schedule: self.schedule.clone(),
            // Validated no longer than the schedule's shortest gap, so it converts.
            window: chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX),
            ticket: self.change_ticket.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SecretConfig {
    /// A secret name or a full ARN, as written.
    pub id: String,
    pub settings: SecretSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Tag { key: String, value: Option<String> },
    NamePrefix(String),
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Tag {
                key,
                value: Some(v),
            } => write!(f, "selector:tag:{key}={v}"),
            Matcher::Tag { key, value: None } => write!(f, "selector:tag:{key}"),
            Matcher::NamePrefix(p) => write!(f, "selector:prefix:{p}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SelectorConfig {
    pub matcher: Matcher,
    pub settings: SecretSettings,
}

/// Whoever can write the config file decides what rotationd rotates, when, and where it
/// reports: like sshd with its key files, the daemon refuses a file that its group or
/// others may write (`None` when the file is owner-writable only, or cannot be read: the
/// read itself then says why).
pub fn writable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o022 != 0).then(|| {
        format!(
            "config file {} is writable by {} (mode {:o}); whoever can write it decides what rotationd rotates and where it reports: chmod go-w {}",
            path.display(),
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            },
            mode & 0o7777,
            path.display()
        )
    })
}

impl Config {
    /// The sections whose validated values differ between `self` and `new` (the file's
    /// comments and layout aside): what a reload's audit entry names. Compared through
    /// their `Debug` form, which covers every field.
    pub fn changed_sections(&self, new: &Config) -> Vec<&'static str> {
        let sections: [(&'static str, String, String); 15] = [
            ("aws", format!("{:?}", self.aws), format!("{:?}", new.aws)),
            (
                "account",
                format!("{:?}", self.accounts),
                format!("{:?}", new.accounts),
            ),
            (
                "daemon",
                format!("{:?}", self.daemon),
                format!("{:?}", new.daemon),
            ),
            (
                "state",
                format!("{:?}", self.state),
                format!("{:?}", new.state),
            ),
            (
                "audit",
                format!("{:?}", self.audit),
                format!("{:?}", new.audit),
            ),
            (
                "alerts",
                format!("{:?}", self.alerts),
                format!("{:?}", new.alerts),
            ),
            (
                "events",
                format!("{:?}", self.events),
                format!("{:?}", new.events),
            ),
            (
                "requests",
                format!("{:?}", self.requests),
                format!("{:?}", new.requests),
            ),
            (
                "identity_center",
                format!("{:?}", self.identity_center),
                format!("{:?}", new.identity_center),
            ),
            (
                "policy",
                format!("{:?}", self.policy),
                format!("{:?}", new.policy),
            ),
            (
                "vendor",
                format!("{:?}", self.vendors),
                format!("{:?}", new.vendors),
            ),
            (
                "group",
                format!("{:?}", self.groups),
                format!("{:?}", new.groups),
            ),
            (
                "dependent",
                format!("{:?}", self.dependents),
                format!("{:?}", new.dependents),
            ),
            (
                "secret",
                format!("{:?}", self.secrets),
                format!("{:?}", new.secrets),
            ),
            (
                "selector",
                format!("{:?}", self.selectors),
                format!("{:?}", new.selectors),
            ),
        ];
        sections
            .into_iter()
            .filter(|(_, old, new)| old != new)
            .map(|(name, ..)| name)
            .collect()
    }

    /// Reads and validates the file at `path`. Warnings are returned alongside a valid config.
    pub fn load(path: &Path) -> Result<(Config, Diagnostics), ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_source(path, &source)
    }

    /// Validates `source` as if read from `path` (used for messages and relative paths).
    pub fn from_source(path: &Path, source: &str) -> Result<(Config, Diagnostics), ConfigError> {
        let mut diags = Diagnostics::new(path, source);
        match build(source, &mut diags) {
            Some(cfg) if !diags.has_errors() => Ok((
                Config {
                    path: path.to_path_buf(),
                    source_sha256: {
                        use sha2::{Digest, Sha256};
                        Sha256::digest(source.as_bytes())
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect()
                    },
                    ..cfg
                },
                diags,
            )),
            _ => Err(ConfigError::Invalid(diags)),
        }
    }

    /// The planner's policy: `[policy] max_age` and `[daemon] max_rotations_per_minute`.
    pub fn planner_policy(&self) -> crate::planner::Policy {
        crate::planner::Policy {
            max_age: chrono::Duration::from_std(self.policy.max_age)
                .unwrap_or(chrono::Duration::MAX),
            max_rotations_per_minute: self.daemon.max_rotations_per_minute,
        }
    }

    /// The `[[dependent]]` called `name`.
    pub fn dependent(&self, name: &str) -> Option<&DependentConfig> {
        self.dependents.iter().find(|d| d.name == name)
    }

    /// The `[[vendor]]` called `name`.
    pub fn vendor(&self, name: &str) -> Option<&VendorConfig> {
        self.vendors.iter().find(|v| v.name == name)
    }

    /// Expands a user's reach: the groups a custodian list names are replaced by members.
    pub fn custodian_users(&self, custodians: &[Custodian]) -> HashSet<String> {
        let mut users = HashSet::new();
        for c in custodians {
            match c {
                Custodian::User(u) => {
                    users.insert(u.clone());
                }
                Custodian::Group(g) => {
                    if let Some(group) = self.groups.iter().find(|x| &x.name == g) {
                        users.extend(group.members.iter().cloned());
                    }
                }
            }
        }
        users
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; check --config or ROTATIOND_CONFIG")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Builds the validated config, recording every problem in `diags`. The sections run in
/// this order whatever the order of the file: each is checked against what the ones before
/// it declared, and diagnostics at one position keep the order they were found in.
fn build(source: &str, diags: &mut Diagnostics) -> Option<Config> {
    let doc = parse::parse_document(source, diags)?;
    let aws = sections::accounts::aws(diags, &doc.aws);
    let (accounts, listed) = sections::accounts::accounts(diags, doc.accounts);
    let daemon = sections::daemon::daemon(diags, &doc.daemon);
    let state = doc
        .state
        .as_ref()
        .map_or_else(StateConfig::default, |(span, s)| {
            sections::state::state(diags, span.clone(), s)
        });
    let audit = sections::audit::audit(diags, &doc.audit, state.audit_retention);
    let alerts = sections::alerts::alerts(diags, doc.alerts.as_ref());
    let events = doc
        .events
        .as_ref()
        .map(|(span, e)| sections::events::events(diags, span, e));
    let identity_center = doc
        .identity_center
        .as_ref()
        .and_then(|(span, ic)| sections::vendors::identity_center(diags, span, ic));
    let mut schedules = Schedules::default();
    let policy = sections::policy::policy(diags, &doc.policy, &mut schedules);
    let (vendors, vendor_names) =
        sections::vendors::vendors(diags, doc.vendors, &policy, &mut schedules);
    let (groups, group_names) = sections::groups::groups(diags, doc.groups);
    let (dependents, watched) =
        sections::dependents::dependents(diags, doc.dependents, policy.validation_period);
    let declared = Declared {
        groups: group_names,
        directory: doc.identity_center.is_some(),
        vendors: vendor_names
            .into_iter()
            .map(|(n, i)| (n, i.and_then(|i| vendors.get(i).cloned())))
            .collect(),
        dependents: watched,
        sync: sections::policy::sync_span(&doc.policy, &policy),
    };
    let secrets = sections::secrets::secrets(
        diags,
        doc.secrets,
        &listed,
        &policy,
        &declared,
        &mut schedules,
    );
    let selectors =
        sections::secrets::selectors(diags, doc.selectors, &policy, &declared, &mut schedules);
    let requests = doc
        .requests
        .as_ref()
        .map(|(span, r)| sections::requests::requests(diags, span, r, events.as_ref()));
    Some(Config {
        path: PathBuf::new(),
        source_sha256: String::new(),
        aws,
        accounts,
        daemon,
        state,
        audit,
        alerts: alerts?,
        events,
        requests,
        identity_center,
        policy,
        vendors,
        groups,
        dependents,
        secrets,
        selectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::MINIMAL;

    #[test]
    fn minimal_config_gets_defaults() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(
            cfg.daemon.state_path,
            PathBuf::from("/var/lib/rotationd/state.db")
        );
        assert_eq!(cfg.daemon.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(cfg.daemon.reconcile_interval, Duration::from_secs(15 * 60));
        assert_eq!(cfg.daemon.max_rotations_per_minute.get(), 30);
        assert_eq!(cfg.alerts.realert_interval, Duration::from_secs(4 * 3600));
        assert_eq!(cfg.policy.max_age, Duration::from_secs(90 * 86400));
        assert_eq!(cfg.policy.default_schedule.as_str(), "@quarterly");
        assert_eq!(cfg.policy.default_window, Duration::from_secs(4 * 3600));
        assert!(cfg.policy.require_change_ticket);
        assert!(cfg.events.is_none());
        let s = &cfg.secrets[0];
        assert_eq!(s.id, "prod/payments/db");
        assert_eq!(s.settings.schedule.as_str(), "@quarterly");
        assert_eq!(s.settings.strategy, Strategy::SingleUser);
        assert_eq!(s.settings.change_ticket.as_deref(), Some("CHG-10421"));
    }

    #[test]
    fn validation_and_rollback_defaults() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(cfg.policy.validation_period, Duration::from_secs(15 * 60));
        assert_eq!(cfg.policy.validation_interval, Duration::from_secs(60));
        assert_eq!(cfg.policy.native_schedule, NativeSchedule::Report);
        assert!(cfg.dependents.is_empty());
        assert!(!cfg.secrets[0].settings.auto_rollback);
        assert!(cfg.secrets[0].settings.dependents.is_empty());
    }

    #[test]
    fn group_custodians_expand_to_members() {
        let src = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[[group]]
name = "dba"
members = ["alice", "bob"]
[[secret]]
id = "prod/db"
strategy = "alternating-users"
change_ticket = "CHG-1"
custodians = ["carol", "group:dba"]
"#;
        let (cfg, _) = Config::from_source(Path::new("t.toml"), src).unwrap();
        let users = cfg.custodian_users(&cfg.secrets[0].settings.custodians);
        let mut users: Vec<_> = users.into_iter().collect();
        users.sort();
        assert_eq!(users, vec!["alice", "bob", "carol"]);
    }
}
