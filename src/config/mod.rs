//! Configuration: the TOML file parsed into a stricter, validated [`Config`].
//!
//! Two stages, as in vector's config compiler:
//! 1. [`raw`] mirrors the file with serde (`deny_unknown_fields`, every field optional and
//!    spanned). Each section and each `[[secret]]`/`[[selector]]`/`[[group]]`/`[[dependent]]`/
//!    `[[account]]` entry is deserialized on its own, and when one fails each of its keys is retried
//!    alone, so one run reports every mistake instead of the first.
//! 2. `build` turns the raw structs into real types (`Duration`, `NonZeroU32`, parsed
//!    [`Schedule`], `SocketAddr`) and runs the cross-field checks (duplicate ids, unknown
//!    groups and dependents, windows longer than the schedule's shortest gap, missing
//!    change tickets...).
//!
//! Every problem becomes a [`Diagnostic`] with the byte span it refers to; [`Diagnostics`]
//! renders them as `FILE:LINE:COL: error: MESSAGE`, one per line, sorted by position.

pub mod raw;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::drift::NativeSchedule;
use crate::schedule::Schedule;
use raw::*;

/// Where `rotationd` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rotationd/rotationd.toml";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub aws: AwsConfig,
    /// The `[[account]]`s, in file order. Empty when the file has none: rotationd then works
    /// on one implicit account, with its own credentials and `[aws] region`.
    pub accounts: Vec<Account>,
    pub daemon: DaemonConfig,
    /// `[state]`: where the state lives; [`StateConfig::default`] (SQLite) when absent.
    pub state: StateConfig,
    pub alerts: AlertsConfig,
    pub events: Option<EventsConfig>,
    pub requests: Option<RequestsConfig>,
    pub policy: PolicyConfig,
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
}

impl Default for StateConfig {
    /// SQLite with a 30s lease (the lease is then unused): what a file without `[state]` gets.
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Sqlite,
            lease: DEFAULT_LEASE,
        }
    }
}

/// The default `[state] lease`.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub security_topic_arn: String,
    pub notify_topic_arn: Option<String>,
    pub realert_interval: Duration,
    /// AWS failing for this long raises `aws_unreachable` (once per outage).
    pub unreachable_after: Duration,
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

/// The seed's permission levels: L1 and L2 request approval for a rotation; only L3
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
    /// Who is which level; an identity not listed is L1. The level an event claims is never
    /// taken on trust.
    pub levels: HashMap<String, Level>,
    /// Where approval requests go; the Security topic when not set.
    pub approvers_topic_arn: Option<String>,
    pub approval_timeout: Duration,
    pub emergency_approval_timeout: Duration,
    /// The bus `Rotation Request Updated` events are put on (default: `[events] event_bus`).
    pub event_bus: String,
}

impl RequestsConfig {
    /// The level of `identity` (a user name or an IAM principal ARN, matched exactly).
    pub fn level_of(&self, identity: &str) -> Level {
        self.levels.get(identity).copied().unwrap_or(Level::L1)
    }
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub max_age: Duration,
    pub default_schedule: Schedule,
    pub default_window: Duration,
    pub require_change_ticket: bool,
    /// How long dependents are watched after a rotation (the seed's 15 minutes).
    pub validation_period: Duration,
    /// How often CloudWatch is polled during that watch.
    pub validation_interval: Duration,
    /// What to do about Secrets Manager's own rotation schedule.
    pub native_schedule: NativeSchedule,
    /// How long the rotation function's four steps may take, from the attempt's start,
    /// before the attempt fails (and a dangling AWSPENDING counts as stuck).
    pub rotation_timeout: Duration,
}

/// A `[[dependent]]`: a service that uses secrets. It is notified around a rotation and,
/// when it has alarms or metrics, watched for [`PolicyConfig::validation_period`] after it.
#[derive(Debug, Clone, PartialEq)]
pub struct DependentConfig {
    pub name: String,
    /// Its own SNS topic for notices, besides `[alerts] notify_topic_arn`.
    pub notify_topic_arn: Option<String>,
    /// CloudWatch alarm names: any of them in ALARM means unhealthy.
    pub alarms: Vec<String>,
    pub metrics: Vec<MetricWatch>,
}

impl DependentConfig {
    /// Whether its health can be checked after a rotation (it has alarms or metrics).
    pub fn watched(&self) -> bool {
        !self.alarms.is_empty() || !self.metrics.is_empty()
    }
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

/// The seed's two rotation strategies.
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
    pub vendor: Option<String>,
    /// Roll back on its own when a watched dependent turns unhealthy after a rotation.
    /// Off by default: the guide reserves rollback to L3.
    pub auto_rollback: bool,
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

impl Config {
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
                    ..cfg
                },
                diags,
            )),
            _ => Err(ConfigError::Invalid(diags)),
        }
    }

    /// The `[[dependent]]` called `name`.
    pub fn dependent(&self, name: &str) -> Option<&DependentConfig> {
        self.dependents.iter().find(|d| d.name == name)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Range<usize>,
    pub message: String,
}

/// The problems found in one file, rendered with their positions.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    path: PathBuf,
    /// Byte offset at which each line starts, to turn spans into line/column.
    line_starts: Vec<usize>,
    source: std::sync::Arc<str>,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    fn new(path: &Path, source: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Diagnostics {
            path: path.to_path_buf(),
            line_starts,
            source: source.into(),
            items: Vec::new(),
        }
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
        });
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> impl Iterator<Item = String> + '_ {
        self.lines()
            .into_iter()
            .filter(|(sev, _)| *sev == Severity::Warning)
            .map(|(_, l)| l)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Every diagnostic as `FILE:LINE:COL: error: MESSAGE`, sorted by position.
    pub fn lines(&self) -> Vec<(Severity, String)> {
        let mut items: Vec<&Diagnostic> = self.items.iter().collect();
        items.sort_by_key(|d| (d.span.start, d.severity));
        items.dedup_by(|a, b| a.span == b.span && a.message == b.message);
        items
            .into_iter()
            .map(|d| {
                let (line, col) = self.position(d.span.start);
                let kind = match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                (
                    d.severity,
                    format!(
                        "{}:{line}:{col}: {kind}: {}",
                        self.path.display(),
                        d.message
                    ),
                )
            })
            .collect()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.lines();
        for (i, (_, line)) in lines.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

/// serde names Rust types in its messages (`expected i64`); say what the user writes.
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for t in [
        "i128", "u128", "i64", "u64", "i32", "u32", "i16", "u16", "i8", "u8",
    ] {
        out = out
            .replace(&format!("expected {t}"), "expected an integer")
            .replace(&format!(" as {t}"), "");
    }
    out = out.replace("expected f64", "expected a number");
    // toml reads integers beyond i64 as a wider type, which serde then calls a wrong type.
    if let Some((n, tail)) = out
        .strip_prefix("invalid type: integer `")
        .and_then(|r| r.split_once('`'))
        && tail.contains("expected an integer")
    {
        return format!("`{n}` is too large; use a number of sensible size");
    }
    out
}

/// Turns a toml error into a diagnostic at its span (or the start of the file).
fn toml_error(diags: &mut Diagnostics, err: toml::de::Error, fallback: Range<usize>) {
    let span = err.span().unwrap_or(fallback);
    let message = plain_types(err.message().trim().trim_end_matches('.'));
    diags.error(span, message);
}

/// Deserializes one table; on failure retries each key alone to report every bad key,
/// then deserializes what is left without the bad keys so that the cross-field checks
/// still run on the rest (the file stays rejected: the errors are recorded).
fn de_table<T: DeserializeOwned + Default>(
    value: &Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    let DeValue::Table(table) = value.get_ref() else {
        diags.error(
            value.span(),
            format!(
                "`{what}` must be a table, found {}",
                value.get_ref().type_str()
            ),
        );
        return None;
    };
    let whole = match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(t) => return Some(t),
        Err(whole) => whole,
    };
    let mut good = DeTable::new();
    let mut bad = 0;
    for (key, val) in table.iter() {
        let mut one = DeTable::new();
        one.insert(key.clone(), val.clone());
        let one = Spanned::new(value.span(), DeValue::Table(one));
        match T::deserialize(ValueDeserializer::from(one)) {
            Ok(_) => {
                good.insert(key.clone(), val.clone());
            }
            Err(err) => {
                bad += 1;
                let name: &str = key.get_ref();
                let span = err.span().unwrap_or_else(|| key.span());
                let msg = plain_types(err.message().trim().trim_end_matches('.'));
                let msg = msg.as_str();
                // Unknown-key messages name the key already; type errors do not.
                let msg = if msg.contains(&format!("`{name}`")) {
                    msg.to_string()
                } else {
                    format!("`{name}`: {msg}")
                };
                diags.error(span, msg);
            }
        }
    }
    if bad == 0 {
        toml_error(diags, whole, value.span());
        return None;
    }
    T::deserialize(ValueDeserializer::from(Spanned::new(
        value.span(),
        DeValue::Table(good),
    )))
    .ok()
}

/// `[events]` with its nested `[events.cloudtrail]`, `[[events.departure]]` and
/// `[[events.compromise]]` tables deserialized one by one, so that a bad key in one of them
/// is reported next to every other error instead of hiding the rest of that table.
fn de_events(value: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Option<RawEvents> {
    let DeValue::Table(table) = value.get_ref() else {
        return de_table(value, "events", diags);
    };
    let mut rest = DeTable::new();
    let mut cloudtrail = None;
    let mut departure = None;
    let mut compromise = None;
    for (key, val) in table.iter() {
        let name: &str = key.get_ref();
        match (name, val.get_ref()) {
            ("cloudtrail", DeValue::Table(_)) => {
                cloudtrail = de_table::<raw::RawCloudTrail>(val, "events.cloudtrail", diags)
                    .map(|t| Spanned::new(val.span(), t));
            }
            ("departure" | "compromise", DeValue::Array(items)) => {
                let what = if name == "departure" {
                    "events.departure"
                } else {
                    "events.compromise"
                };
                let sources: Vec<Spanned<raw::RawCustomSource>> = items
                    .iter()
                    .filter_map(|item| {
                        de_table::<raw::RawCustomSource>(item, what, diags)
                            .map(|t| Spanned::new(item.span(), t))
                    })
                    .collect();
                let sources = Some(Spanned::new(val.span(), sources));
                if name == "departure" {
                    departure = sources;
                } else {
                    compromise = sources;
                }
            }
            // Any other shape: let the whole-table pass report it.
            _ => {
                rest.insert(key.clone(), val.clone());
            }
        }
    }
    let mut events = de_table::<RawEvents>(
        &Spanned::new(value.span(), DeValue::Table(rest)),
        "events",
        diags,
    )?;
    events.cloudtrail = cloudtrail.or(events.cloudtrail);
    events.departure = departure.or(events.departure);
    events.compromise = compromise.or(events.compromise);
    Some(events)
}

/// A `[[dependent]]` with each of its `[[dependent.metrics]]` tables deserialized on its
/// own (as [`de_events`] does for its nested tables), so that a bad key in one metric does
/// not hide the mistakes in the others.
fn de_dependent(value: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Option<RawDependent> {
    let DeValue::Table(table) = value.get_ref() else {
        return de_table(value, "dependent", diags);
    };
    let mut rest = DeTable::new();
    let mut metrics = None;
    for (key, val) in table.iter() {
        match (&**key.get_ref(), val.get_ref()) {
            ("metrics", DeValue::Array(items)) => {
                let list: Vec<Spanned<RawMetric>> = items
                    .iter()
                    .filter_map(|item| {
                        let mut metric = de_table::<RawMetric>(item, "dependent.metrics", diags)?;
                        if let DeValue::Table(t) = item.get_ref() {
                            metric.written = t.keys().map(|k| k.get_ref().to_string()).collect();
                        }
                        Some(Spanned::new(item.span(), metric))
                    })
                    .collect();
                metrics = Some(Spanned::new(val.span(), list));
            }
            // Any other shape: let the whole-table pass report it.
            _ => {
                rest.insert(key.clone(), val.clone());
            }
        }
    }
    let mut dependent = de_table::<RawDependent>(
        &Spanned::new(value.span(), DeValue::Table(rest)),
        "dependent",
        diags,
    )?;
    dependent.metrics = metrics.or(dependent.metrics);
    Some(dependent)
}

/// The elements of an array of tables (`[[secret]]`), moved out so that each can be
/// deserialized and then dropped in turn: a 100,000-secret file never holds its parsed
/// document and its validated config in memory at once.
fn array_items<'i>(
    value: Spanned<DeValue<'i>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Vec<Spanned<DeValue<'i>>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(mut items) => items
            .iter_mut()
            .map(|item| std::mem::replace(item, Spanned::new(0..0, DeValue::Boolean(false))))
            .collect(),
        other => {
            diags.error(
                span,
                format!(
                    "`{what}` must be an array of tables (`[[{what}]]`), found {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

const SECTIONS: &[&str] = &[
    "aws",
    "account",
    "daemon",
    "state",
    "alerts",
    "events",
    "requests",
    "policy",
    "group",
    "dependent",
    "secret",
    "selector",
];

struct RawDocument<'i> {
    aws: RawAws,
    accounts: Vec<Spanned<DeValue<'i>>>,
    daemon: RawDaemon,
    state: Option<(Range<usize>, RawState)>,
    alerts: Option<(Range<usize>, RawAlerts)>,
    events: Option<(Range<usize>, RawEvents)>,
    requests: Option<(Range<usize>, RawRequests)>,
    policy: RawPolicy,
    groups: Vec<Spanned<DeValue<'i>>>,
    dependents: Vec<Spanned<DeValue<'i>>>,
    secrets: Vec<Spanned<DeValue<'i>>>,
    selectors: Vec<Spanned<DeValue<'i>>>,
}

fn parse_document<'i>(source: &'i str, diags: &mut Diagnostics) -> Option<RawDocument<'i>> {
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(err) => {
            toml_error(diags, err, 0..0);
            return None;
        }
    };
    let mut doc = RawDocument {
        aws: RawAws::default(),
        accounts: Vec::new(),
        daemon: RawDaemon::default(),
        state: None,
        alerts: None,
        events: None,
        requests: None,
        policy: RawPolicy::default(),
        groups: Vec::new(),
        dependents: Vec::new(),
        secrets: Vec::new(),
        selectors: Vec::new(),
    };
    for (key, value) in root.into_inner() {
        let name: &str = key.get_ref();
        match name {
            "aws" => doc.aws = de_table(&value, name, diags).unwrap_or_default(),
            "daemon" => doc.daemon = de_table(&value, name, diags).unwrap_or_default(),
            "policy" => doc.policy = de_table(&value, name, diags).unwrap_or_default(),
            "alerts" => doc.alerts = de_table(&value, name, diags).map(|t| (key.span(), t)),
            "state" => {
                doc.state = de_table::<RawState>(&value, name, diags).map(|mut t| {
                    if let DeValue::Table(table) = value.get_ref() {
                        t.written = table.keys().map(|k| k.get_ref().to_string()).collect();
                    }
                    (key.span(), t)
                });
            }
            "events" => doc.events = de_events(&value, diags).map(|t| (key.span(), t)),
            "requests" => doc.requests = de_table(&value, name, diags).map(|t| (key.span(), t)),
            "account" => doc.accounts = array_items(value, name, diags),
            "group" => doc.groups = array_items(value, name, diags),
            "dependent" => doc.dependents = array_items(value, name, diags),
            "secret" => doc.secrets = array_items(value, name, diags),
            "selector" => doc.selectors = array_items(value, name, diags),
            other => diags.error(
                key.span(),
                format!(
                    "unknown section `{other}`, expected one of: {}",
                    SECTIONS.join(", ")
                ),
            ),
        }
    }
    Some(doc)
}

/// Parses a duration such as `90d`, `24h` or `15m`; `default` when absent or invalid (the
/// error is recorded, and a sane value keeps later checks from piling up noise).
fn duration(
    diags: &mut Diagnostics,
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
) -> Duration {
    let Some(v) = value else {
        return default;
    };
    let text = v.get_ref().as_str();
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => {
            diags.error(v.span(), format!("`{key}` must be longer than zero"));
            default
        }
        Ok(d) => d,
        Err(e) => {
            diags.error(
                v.span(),
                format!(
                    "invalid duration `{text}` for `{key}`: {e}; use a number and a unit, like `90d`, `24h` or `15m`"
                ),
            );
            default
        }
    }
}

/// `92d`, `4h`, `1d 2h 30m`: days at most, so that messages never speak of months.
pub fn fmt_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

const fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

const fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// A parsed schedule with its shortest and longest gap between two fire times.
#[derive(Clone)]
struct ParsedSchedule {
    schedule: Schedule,
    min_gap: Option<Duration>,
    max_gap: Option<Duration>,
}

/// Parses each distinct schedule text once: a fleet of 100,000 secrets shares a handful.
#[derive(Default)]
struct Schedules {
    parsed: HashMap<String, Result<ParsedSchedule, String>>,
    /// `drift::aws_rules` per schedule text and window, for `native_schedule = "sync"`.
    rules: HashMap<(String, Duration), Result<(), String>>,
    /// Default schedules already reported at `native_schedule` (once each, not per secret).
    reported_defaults: HashSet<(String, Duration)>,
}

impl Schedules {
    fn of(&mut self, schedule: &Schedule) -> ParsedSchedule {
        self.parsed
            .entry(schedule.as_str().to_string())
            .or_insert_with(|| Ok(Self::measure(schedule.clone())))
            .clone()
            .unwrap_or_else(|_| Self::measure(schedule.clone()))
    }

    /// Whether `schedule` with `window` can be written as Secrets Manager rotation rules.
    fn aws_rules(&mut self, schedule: &Schedule, window: Duration) -> Result<(), String> {
        self.rules
            .entry((schedule.as_str().to_string(), window))
            .or_insert_with(|| crate::drift::aws_rules(schedule, window).map(|_| ()))
            .clone()
    }

    fn measure(schedule: Schedule) -> ParsedSchedule {
        ParsedSchedule {
            min_gap: schedule.min_gap().and_then(|g| g.to_std().ok()),
            max_gap: schedule.max_gap().and_then(|g| g.to_std().ok()),
            schedule,
        }
    }

    fn parse(
        &mut self,
        diags: &mut Diagnostics,
        value: &Spanned<String>,
    ) -> Option<ParsedSchedule> {
        let text = value.get_ref();
        let parsed = self
            .parsed
            .entry(text.clone())
            .or_insert_with(|| {
                Schedule::parse(text)
                    .map(Self::measure)
                    .map_err(|e| e.to_string())
            })
            .clone();
        match parsed {
            Ok(p) => Some(p),
            Err(e) => {
                diags.error(value.span(), format!("invalid schedule `{text}`: {e}"));
                None
            }
        }
    }
}

fn schedule(diags: &mut Diagnostics, value: &Spanned<String>) -> Option<Schedule> {
    match Schedule::parse(value.get_ref()) {
        Ok(s) => Some(s),
        Err(e) => {
            diags.error(
                value.span(),
                format!("invalid schedule `{}`: {e}", value.get_ref()),
            );
            None
        }
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, cn-north-1
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// Checks an ARN of `service`; returns a description of what is wrong.
pub fn check_arn(arn: &str, service: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return Err(format!(
            "malformed ARN `{arn}`: expected arn:PARTITION:{service}:REGION:ACCOUNT:RESOURCE"
        ));
    }
    if !matches!(
        parts[1],
        "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
    ) {
        return Err(format!(
            "malformed ARN `{arn}`: unknown partition `{}`",
            parts[1]
        ));
    }
    if parts[2] != service {
        return Err(format!(
            "malformed ARN `{arn}`: expected service `{service}`, found `{}`",
            parts[2]
        ));
    }
    if !is_region(parts[3]) {
        return Err(format!(
            "malformed ARN `{arn}`: `{}` is not a region",
            parts[3]
        ));
    }
    if !is_account_id(parts[4]) {
        return Err(format!(
            "malformed ARN `{arn}`: account id `{}` must be 12 digits",
            parts[4]
        ));
    }
    if parts[5].is_empty() {
        return Err(format!("malformed ARN `{arn}`: the resource part is empty"));
    }
    if service == "secretsmanager" && !parts[5].starts_with("secret:") {
        return Err(format!(
            "malformed ARN `{arn}`: a secret ARN ends in `secret:NAME-XXXXXX`"
        ));
    }
    Ok(())
}

/// Checks an IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/NAME` (the name may have a
/// path: `role/team/NAME`); returns its account id, or a description of what is wrong.
fn check_role_arn(arn: &str) -> Result<&str, String> {
    const SHAPE: &str = "write it as arn:aws:iam::ACCOUNT:role/NAME";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let &[prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!("malformed role ARN `{arn}`; {SHAPE}"));
    };
    if prefix != "arn" {
        return Err(format!("malformed role ARN `{arn}`; {SHAPE}"));
    }
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        return Err(format!(
            "malformed role ARN `{arn}`: unknown partition `{partition}`; use aws, aws-cn or aws-us-gov"
        ));
    }
    if service != "iam" {
        return Err(format!(
            "malformed role ARN `{arn}`: expected service `iam`, found `{service}`; {SHAPE}"
        ));
    }
    if !region.is_empty() {
        return Err(format!(
            "malformed role ARN `{arn}`: IAM ARNs name no region, found `{region}`; {SHAPE}"
        ));
    }
    if !is_account_id(account) {
        return Err(format!(
            "malformed role ARN `{arn}`: account id `{account}` must be 12 digits; {SHAPE}"
        ));
    }
    let Some(path_name) = resource.strip_prefix("role/") else {
        return Err(format!(
            "malformed role ARN `{arn}`: `{resource}` is not a role; {SHAPE}"
        ));
    };
    let (path, name) = path_name.rsplit_once('/').unwrap_or(("", path_name));
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if !name_ok {
        return Err(format!(
            "malformed role ARN `{arn}`: role name `{name}` must be 1 to 64 letters, digits or +=,.@_-; {SHAPE}"
        ));
    }
    if let Some(c) = path.chars().find(|c| !('!'..='~').contains(c)) {
        return Err(format!(
            "malformed role ARN `{arn}`: the role path contains {c:?}; a path holds printable ASCII without spaces"
        ));
    }
    Ok(account)
}

/// The region and account of an ARN already checked by [`check_arn`].
fn arn_region_account(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':').skip(3);
    Some((parts.next()?, parts.next()?))
}

/// Secret names: 1-512 characters of ASCII letters, digits and `/_+=.@-`.
fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 {
        return Err(format!(
            "secret name `{name}` must be 1 to 512 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(format!(
            "secret name `{name}` contains `{c}`; names may hold letters, digits and /_+=.@-"
        ));
    }
    Ok(())
}

/// DynamoDB table names: 3-255 characters of ASCII letters, digits and `_-.`.
fn check_table_name(name: &str) -> Result<(), String> {
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
    {
        return Err(format!(
            "table name `{name}` contains `{c}`; DynamoDB table names may hold only letters, digits, `_`, `-` and `.`"
        ));
    }
    match name.len() {
        0 => Err(
            "`table` may not be empty; name the DynamoDB table that holds the state, like \"rotationd-state\""
                .to_string(),
        ),
        1..3 => Err(format!(
            "table name `{name}` is too short; DynamoDB table names have 3 to 255 characters, like \"rotationd-state\""
        )),
        256.. => Err(format!(
            "table name is {} characters long; DynamoDB table names have at most 255, so shorten it",
            name.len()
        )),
        _ => Ok(()),
    }
}

/// `[state]`, validated; `span` is its header's. A value written with a wrong type has been
/// reported already and is left out of the cross-field checks.
fn state_config(diags: &mut Diagnostics, span: Range<usize>, s: &RawState) -> StateConfig {
    let written = |key: &str| s.written.iter().any(|k| k == key);
    // `None`: a wrong type or an unknown backend, already reported.
    let dynamodb = match &s.backend {
        None if written("backend") => None,
        None => Some(false),
        Some(b) => match b.get_ref().as_str() {
            "sqlite" => Some(false),
            "dynamodb" => Some(true),
            other => {
                diags.error(
                    b.span(),
                    format!(
                        "unknown state backend `{other}`, expected \"sqlite\" (the default) or \"dynamodb\""
                    ),
                );
                None
            }
        },
    };
    if let Some(t) = &s.table
        && let Err(e) = check_table_name(t.get_ref())
    {
        diags.error(t.span(), e);
    }
    match (dynamodb, &s.table) {
        (Some(true), None) if !written("table") => diags.error(
            span,
            "[state] is missing `table`; backend = \"dynamodb\" needs the DynamoDB table that holds the state, like table = \"rotationd-state\"",
        ),
        (Some(false), Some(t)) => diags.error(
            t.span(),
            format!(
                "`table` only applies to the dynamodb backend, but the backend is sqlite{}; set backend = \"dynamodb\" or remove `table`",
                if s.backend.is_none() { " (the default)" } else { "" }
            ),
        ),
        _ => {}
    }
    let mut lease = duration(diags, &s.lease, "lease", DEFAULT_LEASE);
    if let Some(v) = &s.lease {
        let text = v.get_ref();
        if lease < Duration::from_secs(3) {
            diags.error(
                v.span(),
                format!(
                    "lease `{text}` is too short: the leader renews it every third of the lease, which under 3s is too tight to survive one slow DynamoDB call; use 3s to 10m (30s is the default)"
                ),
            );
            lease = DEFAULT_LEASE;
        } else if lease > minutes(10) {
            diags.error(
                v.span(),
                format!(
                    "lease `{text}` is too long: a standby would wait up to two leases to take over; use 3s to 10m (30s is the default)"
                ),
            );
            lease = DEFAULT_LEASE;
        } else if dynamodb == Some(false) {
            diags.warning(
                v.span(),
                "`lease` only applies to the dynamodb backend and is ignored with sqlite; remove it or set backend = \"dynamodb\"",
            );
        }
    }
    let backend = match (dynamodb, &s.table) {
        (Some(true), Some(t)) => StateBackend::Dynamodb {
            table: t.get_ref().clone(),
        },
        // Errors already recorded when dynamodb lacks its table.
        _ => StateBackend::Sqlite,
    };
    StateConfig { backend, lease }
}

/// `CHG-10421`, `INC-123`: a prefix, a dash, digits.
pub fn is_ticket(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn check_http_url(diags: &mut Diagnostics, value: &Spanned<String>, key: &str) {
    let v = value.get_ref();
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        diags.error(
            value.span(),
            format!("`{key}` must be an http:// or https:// URL, found `{v}`"),
        );
    }
}

/// Fields common to `[[secret]]` and `[[selector]]`, borrowed from either.
struct RawSettings<'a> {
    schedule: &'a S<String>,
    window: &'a S<String>,
    strategy: &'a S<String>,
    change_ticket: &'a S<String>,
    dependents: &'a S<Vec<Spanned<String>>>,
    custodians: &'a S<Vec<Spanned<String>>>,
    vendor: &'a S<String>,
    auto_rollback: &'a S<bool>,
}

/// What a `[[secret]]` or `[[selector]]` may refer to, declared elsewhere in the file.
struct Declared {
    groups: HashSet<String>,
    /// Dependent name -> whether it is watched (has alarms or metrics).
    dependents: HashMap<String, bool>,
    /// The span of `[policy] native_schedule` when it is "sync": every schedule in use must
    /// then be expressible as Secrets Manager rotation rules.
    sync: Option<Range<usize>>,
}

fn settings(
    diags: &mut Diagnostics,
    raw: RawSettings<'_>,
    entry_span: Range<usize>,
    what: &str,
    policy: &PolicyConfig,
    declared: &Declared,
    schedules: &mut Schedules,
) -> Option<SecretSettings> {
    let mut ok = true;
    let parsed = match raw.schedule {
        Some(s) => schedules.parse(diags, s),
        None => Some(schedules.of(&policy.default_schedule)),
    };
    let window = Some(duration(diags, raw.window, "window", policy.default_window));
    if let (Some(w), Some(v)) = (window, raw.window)
        && w < minutes(1)
    {
        diags.error(
            v.span(),
            "`window` must be at least 1m: a rotation needs a minute to start in",
        );
        ok = false;
    }
    if let (Some(p), Some(win)) = (&parsed, window) {
        let sched = &p.schedule;
        if let Some(gap) = p.min_gap
            && win > gap
        {
            let span = raw
                .window
                .as_ref()
                .map_or_else(|| entry_span.clone(), |w| w.span());
            diags.error(
                span,
                format!(
                    "window {} is longer than the shortest gap ({}) between two runs of schedule `{sched}`; windows would overlap",
                    fmt_duration(win),
                    fmt_duration(gap)
                ),
            );
            ok = false;
        }
        let own = raw.schedule.is_some() || raw.window.is_some();
        if let Some(gap) = p.max_gap.filter(|_| own)
            && gap + win > policy.max_age
        {
            diags.warning(
                raw.schedule.as_ref().map_or_else(|| entry_span.clone(), |s| s.span()),
                format!(
                    "schedule `{sched}` can leave {} between rotations (plus a {} window), longer than [policy] max_age {}; such secrets turn overdue before their next window",
                    fmt_duration(gap),
                    fmt_duration(win),
                    fmt_duration(policy.max_age)
                ),
            );
        }
    }
    if let (Some(sync), Some(p), Some(win)) = (&declared.sync, &parsed, window)
        && let Err(why) = schedules.aws_rules(&p.schedule, win)
    {
        let sched = &p.schedule;
        // drift's reason may already say what to do instead; do not say it twice.
        let instead = |what: &str| {
            if why.contains("native_schedule") {
                String::new()
            } else {
                format!("; change {what} or use native_schedule = \"report\"")
            }
        };
        let own = raw.schedule.as_ref().or(raw.window.as_ref());
        match own {
            Some(v) => {
                diags.error(
                    v.span(),
                    format!(
                        "schedule `{sched}` cannot be written as a Secrets Manager schedule (native_schedule = \"sync\"): {why}{}",
                        instead("the schedule")
                    ),
                );
                ok = false;
            }
            // The policy defaults: reported once, at native_schedule.
            None => {
                if schedules
                    .reported_defaults
                    .insert((sched.as_str().to_string(), win))
                {
                    diags.error(
                        sync.clone(),
                        format!(
                            "default_schedule `{sched}` cannot be written as a Secrets Manager schedule (native_schedule = \"sync\"): {why}{}",
                            instead("default_schedule")
                        ),
                    );
                }
                ok = false;
            }
        }
    }
    let schedule = parsed.map(|p| p.schedule);
    let strategy = match raw.strategy {
        None => {
            diags.error(
                entry_span.clone(),
                format!(
                    "{what} is missing `strategy`; confirm the rotation strategy: \"single-user\" or \"alternating-users\""
                ),
            );
            None
        }
        Some(s) => match s.get_ref().as_str() {
            "single-user" => Some(Strategy::SingleUser),
            "alternating-users" => Some(Strategy::AlternatingUsers),
            other => {
                diags.error(
                    s.span(),
                    format!(
                        "unknown strategy `{other}`, expected \"single-user\" or \"alternating-users\""
                    ),
                );
                None
            }
        },
    };
    let change_ticket = match raw.change_ticket {
        Some(t) => {
            if !is_ticket(t.get_ref(), "CHG") {
                diags.error(
                    t.span(),
                    format!(
                        "change ticket `{}` must look like CHG-12345 (planned rotations use a CHG ticket)",
                        t.get_ref()
                    ),
                );
                ok = false;
            }
            Some(t.get_ref().clone())
        }
        None => {
            if policy.require_change_ticket {
                diags.error(
                    entry_span.clone(),
                    format!(
                        "{what} is missing `change_ticket`; scheduled rotations need a CHG ticket while [policy] require_change_ticket is true"
                    ),
                );
                ok = false;
            }
            None
        }
    };
    let mut custodians = Vec::new();
    for c in raw.custodians.iter().flat_map(|v| v.get_ref().iter()) {
        let name = c.get_ref().trim();
        if let Some(group) = name.strip_prefix("group:") {
            if !declared.groups.contains(group) {
                diags.error(
                    c.span(),
                    format!("custodian `{name}` names no [[group]]; declare a [[group]] with name = \"{group}\""),
                );
                ok = false;
            }
            custodians.push(Custodian::Group(group.to_string()));
        } else if name.is_empty() {
            diags.error(c.span(), "custodian names may not be empty");
            ok = false;
        } else {
            custodians.push(Custodian::User(name.to_string()));
        }
    }
    let mut dependents: Vec<String> = Vec::new();
    let mut watched = false;
    for d in raw.dependents.iter().flat_map(|v| v.get_ref().iter()) {
        let name = d.get_ref();
        if name.trim().is_empty() {
            diags.error(d.span(), "a dependent may not be empty; name the service");
            ok = false;
        } else if dependents.contains(name) {
            diags.error(
                d.span(),
                format!("dependent `{name}` is listed twice; remove one"),
            );
            ok = false;
        } else {
            match declared.dependents.get(name) {
                Some(w) => watched |= *w,
                None => {
                    diags.error(
                        d.span(),
                        format!(
                            "unknown dependent `{name}`: declare it with [[dependent]] name = \"{name}\""
                        ),
                    );
                    ok = false;
                }
            }
            dependents.push(name.clone());
        }
    }
    let auto_rollback = raw.auto_rollback.as_ref().is_some_and(|b| *b.get_ref());
    if let Some(b) = raw.auto_rollback
        && *b.get_ref()
        && strategy == Some(Strategy::SingleUser)
    {
        // Rollback moves labels only. After a single-user rotation's setSecret the
        // database no longer accepts the old password, so moving AWSCURRENT back would
        // hand every client a password the database refuses.
        diags.error(
            b.span(),
            format!(
                "{what} has auto_rollback = true with strategy \"single-user\": a rollback moves AWSCURRENT back to a password the database no longer accepts after setSecret; use strategy \"alternating-users\" (the old user keeps working) or remove auto_rollback"
            ),
        );
        ok = false;
    } else if let Some(b) = raw.auto_rollback
        && *b.get_ref()
        && !watched
    {
        diags.warning(
            b.span(),
            format!(
                "{what} has auto_rollback = true but none of its dependents has `alarms` or [[dependent.metrics]], so it can never roll back on its own; list a watched dependent or remove auto_rollback"
            ),
        );
    }
    let vendor = raw.vendor.as_ref().map(|v| v.get_ref().clone());
    if !ok {
        return None;
    }
    Some(SecretSettings {
        schedule: schedule?,
        window: window?,
        strategy: strategy?,
        change_ticket,
        dependents,
        custodians,
        vendor,
        auto_rollback,
    })
}

/// A `[[dependent]]`'s alarms and metrics, validated (its name is checked by the caller).
fn dependent(
    diags: &mut Diagnostics,
    d: &RawDependent,
    name: &str,
    validation_period: Duration,
) -> DependentConfig {
    let notify_topic_arn = d.notify_topic_arn.as_ref().map(|t| {
        if let Err(e) = check_arn(t.get_ref(), "sns") {
            diags.error(t.span(), e);
        }
        t.get_ref().clone()
    });
    let mut alarms: Vec<String> = Vec::new();
    for a in d.alarms.iter().flat_map(|v| v.get_ref().iter()) {
        let text = a.get_ref();
        if text.trim().is_empty() {
            diags.error(
                a.span(),
                "an alarm name may not be empty; name a CloudWatch alarm",
            );
        } else if text.chars().count() > 255 {
            diags.error(
                a.span(),
                format!(
                    "alarm name is {} characters long; CloudWatch alarm names have at most 255",
                    text.chars().count()
                ),
            );
        } else if alarms.contains(text) {
            diags.error(
                a.span(),
                format!("alarm `{text}` is listed twice for dependent `{name}`; remove one"),
            );
            continue;
        }
        alarms.push(text.clone());
    }
    let metrics = d
        .metrics
        .iter()
        .flat_map(|v| v.get_ref().iter())
        .filter_map(|m| metric(diags, m, name, validation_period))
        .collect();
    DependentConfig {
        name: name.to_string(),
        notify_topic_arn,
        alarms,
        metrics,
    }
}

/// One `[[dependent.metrics]]`; `None` (with the errors recorded) when it is unusable.
fn metric(
    diags: &mut Diagnostics,
    m: &Spanned<RawMetric>,
    dependent: &str,
    validation_period: Duration,
) -> Option<MetricWatch> {
    let span = m.span();
    let raw = m.get_ref();
    let mut ok = true;
    let text = |diags: &mut Diagnostics, v: &S<String>, key: &str, hint: &str| match v {
        Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
        Some(v) => {
            diags.error(v.span(), format!("`{key}` may not be empty; {hint}"));
            None
        }
        // Written with a wrong type: reported already.
        None if raw.written.iter().any(|k| k == key) => None,
        None => {
            diags.error(
                span.clone(),
                format!("[[dependent.metrics]] of `{dependent}` is missing `{key}`; {hint}"),
            );
            None
        }
    };
    let namespace = text(
        diags,
        &raw.namespace,
        "namespace",
        "set the CloudWatch namespace, like AWS/ApplicationELB",
    );
    let metric_name = text(
        diags,
        &raw.metric_name,
        "metric_name",
        "set the CloudWatch metric name, like HTTPCode_Target_5XX_Count",
    );
    let mut dimensions = BTreeMap::new();
    if let Some(dims) = &raw.dimensions {
        if dims.get_ref().len() > 30 {
            diags.error(
                dims.span(),
                format!(
                    "a metric has at most 30 dimensions (CloudWatch's limit), found {}; remove some",
                    dims.get_ref().len()
                ),
            );
            ok = false;
        }
        for (k, v) in dims.get_ref() {
            if k.get_ref().trim().is_empty() {
                diags.error(k.span(), "a dimension name may not be empty");
                ok = false;
            } else if v.get_ref().trim().is_empty() {
                diags.error(
                    v.span(),
                    format!(
                        "dimension `{}` has an empty value; set the value CloudWatch records",
                        k.get_ref()
                    ),
                );
                ok = false;
            }
            dimensions.insert(k.get_ref().clone(), v.get_ref().clone());
        }
    }
    let statistic = match &raw.statistic {
        None => Some(Statistic::Sum),
        Some(v) => {
            let s = Statistic::parse(v.get_ref());
            if s.is_none() {
                diags.error(
                    v.span(),
                    format!(
                        "unknown statistic `{}`, expected \"Sum\", \"Average\", \"Maximum\", \"Minimum\" or \"SampleCount\"",
                        v.get_ref()
                    ),
                );
            }
            s
        }
    };
    let threshold = match &raw.threshold {
        None if raw.written.iter().any(|k| k == "threshold") => None,
        None => {
            diags.error(
                span.clone(),
                format!(
                    "[[dependent.metrics]] of `{dependent}` is missing `threshold`; set the value above which `{dependent}` counts as unhealthy"
                ),
            );
            None
        }
        Some(t) if !t.get_ref().is_finite() => {
            diags.error(
                t.span(),
                format!("threshold must be a finite number, found {}", t.get_ref()),
            );
            None
        }
        Some(t) if *t.get_ref() < 0.0 => {
            diags.error(
                t.span(),
                format!(
                    "threshold {} is negative; CloudWatch statistics here are counts and times, so use 0 or more",
                    t.get_ref()
                ),
            );
            None
        }
        Some(t) => Some(*t.get_ref()),
    };
    let period = duration(diags, &raw.period, "period", Duration::from_secs(60));
    if let Some(v) = &raw.period {
        if period.subsec_nanos() != 0 || !period.as_secs().is_multiple_of(60) {
            diags.error(
                v.span(),
                format!(
                    "`period` must be a whole number of minutes (CloudWatch's standard resolution is 60s), found `{}`; use 60s, 5m or another multiple of 60s",
                    v.get_ref()
                ),
            );
            ok = false;
        } else if period > hours(1) {
            diags.error(
                v.span(),
                "`period` may not exceed 1h; a dependent is watched for minutes after a rotation",
            );
            ok = false;
        } else if period > validation_period {
            diags.warning(
                v.span(),
                format!(
                    "`period` {} is longer than [policy] validation_period {}: the watch may end before one datapoint covers it; use a shorter period",
                    fmt_duration(period),
                    fmt_duration(validation_period)
                ),
            );
        }
    }
    if !ok {
        return None;
    }
    Some(MetricWatch {
        namespace: namespace?,
        metric_name: metric_name?,
        dimensions,
        statistic: statistic?,
        threshold: threshold?,
        period,
    })
}

/// Builds the validated config, recording every problem in `diags`.
fn build(source: &str, diags: &mut Diagnostics) -> Option<Config> {
    let doc = parse_document(source, diags)?;

    // [aws]
    let aws = AwsConfig {
        region: doc.aws.region.as_ref().map(|r| {
            if !is_region(r.get_ref()) {
                diags.error(
                    r.span(),
                    format!("`{}` is not an AWS region (like us-east-1)", r.get_ref()),
                );
            }
            r.get_ref().clone()
        }),
        profile: doc.aws.profile.as_ref().map(|p| p.get_ref().clone()),
        endpoint_url: doc.aws.endpoint_url.as_ref().map(|u| {
            check_http_url(diags, u, "endpoint_url");
            u.get_ref().clone()
        }),
    };

    // [[account]]
    let any_accounts = !doc.accounts.is_empty();
    let mut accounts = Vec::new();
    // Id -> where it was first declared, and the regions listed for it as written (`None`
    // when `regions` is missing or empty, already an error): what a secret ARN is checked
    // against, also when the table has errors, so that one mistake is reported once.
    let mut account_regions: HashMap<String, (usize, Option<HashSet<String>>)> = HashMap::new();
    for item in doc.accounts {
        let span = item.span();
        // A key written with a wrong type is reported as such, not also as missing.
        let written: Vec<String> = match item.get_ref() {
            DeValue::Table(t) => t.keys().map(|k| k.get_ref().to_string()).collect(),
            _ => Vec::new(),
        };
        let Some(a) = de_table::<RawAccount>(&item, "account", diags) else {
            continue;
        };
        drop(item);
        let id = match &a.id {
            None => {
                if !written.iter().any(|k| k == "id") {
                    diags.error(
                        span.clone(),
                        "[[account]] is missing `id`; set the 12-digit id of the AWS account",
                    );
                }
                None
            }
            Some(id) => {
                let text = id.get_ref();
                if !is_account_id(text) {
                    diags.error(
                        id.span(),
                        format!(
                            "account id `{text}` must be exactly 12 digits; write the AWS account id with its leading zeros, like \"012345678901\""
                        ),
                    );
                } else if let Some((first, _)) = account_regions.get(text) {
                    let (line, _) = diags.position(*first);
                    diags.error(
                        id.span(),
                        format!(
                            "duplicate [[account]] `{text}` (first declared on line {line}); merge the two"
                        ),
                    );
                }
                Some(text.clone())
            }
        };
        let what = id
            .as_deref()
            .map_or("[[account]]".to_string(), |i| format!("[[account]] `{i}`"));
        let role_arn = a.role_arn.as_ref().map(|r| {
            let text = r.get_ref();
            match check_role_arn(text) {
                Err(e) => diags.error(r.span(), e),
                Ok(owner) => {
                    if let Some(id) = id.as_deref().filter(|i| is_account_id(i))
                        && owner != id
                    {
                        diags.error(
                            r.span(),
                            format!(
                                "role_arn is a role in account {owner}, not in this [[account]] ({id}); name the role rotationd assumes in account {id}"
                            ),
                        );
                    }
                }
            }
            text.clone()
        });
        let mut regions: Vec<String> = Vec::new();
        match &a.regions {
            None if written.iter().any(|k| k == "regions") => {}
            None => diags.error(
                span.clone(),
                format!(
                    "{what} is missing `regions`; list the regions whose secrets rotationd manages in it, like regions = [\"us-east-1\"]"
                ),
            ),
            Some(list) if list.get_ref().is_empty() => diags.error(
                list.span(),
                format!(
                    "{what} has no regions; list at least one region whose secrets rotationd manages in it, like [\"us-east-1\"]"
                ),
            ),
            Some(list) => {
                for r in list.get_ref() {
                    let text = r.get_ref();
                    if !is_region(text) {
                        diags.error(
                            r.span(),
                            format!("`{text}` is not an AWS region (like us-east-1)"),
                        );
                    } else if regions.contains(text) {
                        diags.error(
                            r.span(),
                            format!("region `{text}` is listed twice for {what}; remove one"),
                        );
                        continue;
                    }
                    regions.push(text.clone());
                }
            }
        }
        if let Some(id) = &id {
            let start = a.id.as_ref().map_or(span.start, |i| i.span().start);
            let known = &mut account_regions
                .entry(id.clone())
                .or_insert_with(|| (start, Some(HashSet::new())))
                .1;
            match known {
                Some(set) if !regions.is_empty() => set.extend(regions.iter().cloned()),
                // Regions unknown: any region passes the secret check.
                _ => *known = None,
            }
        }
        accounts.push(Account {
            id: id.unwrap_or_default(),
            role_arn,
            regions,
        });
    }

    // [daemon]
    let d = &doc.daemon;
    let metrics_listen = match &d.metrics_listen {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        Some(v) => match v.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    diags.warning(
                        v.span(),
                        format!(
                            "metrics_listen {addr} is not on loopback; /metrics will be reachable from the network, so put it behind a firewall or use 127.0.0.1"
                        ),
                    );
                }
                Some(addr)
            }
            Err(e) => {
                diags.error(
                    v.span(),
                    format!(
                        "invalid metrics_listen `{}`: {e}; use IP:PORT like 127.0.0.1:9464",
                        v.get_ref()
                    ),
                );
                None
            }
        },
    };
    let max_rotations_per_minute = match &d.max_rotations_per_minute {
        None => NonZeroU32::new(30),
        Some(v) => {
            let n = u32::try_from(*v.get_ref()).ok().and_then(NonZeroU32::new);
            if n.is_none() {
                diags.error(
                    v.span(),
                    format!(
                        "max_rotations_per_minute must be between 1 and {}, found {}",
                        u32::MAX,
                        v.get_ref()
                    ),
                );
            }
            n
        }
    };
    if let Some(v) = &d.reconcile_interval
        && humantime::parse_duration(v.get_ref().trim())
            .is_ok_and(|t| !t.is_zero() && t < Duration::from_secs(1))
    {
        diags.error(
            v.span(),
            "reconcile_interval must be at least 1s (each reconcile lists the fleet); 15m is the default",
        );
    }
    if let Some(p) = &d.state_path {
        // A relative path would depend on the working directory (`/` under systemd).
        if p.get_ref().is_empty() || !std::path::Path::new(p.get_ref()).is_absolute() {
            diags.error(
                p.span(),
                format!(
                    "state_path `{}` must be an absolute path, like /var/lib/rotationd/state.db",
                    p.get_ref()
                ),
            );
        }
    }
    let daemon = DaemonConfig {
        state_path: d.state_path.as_ref().map_or_else(
            || PathBuf::from("/var/lib/rotationd/state.db"),
            |p| PathBuf::from(p.get_ref()),
        ),
        metrics_listen: metrics_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
        reconcile_interval: duration(
            diags,
            &d.reconcile_interval,
            "reconcile_interval",
            minutes(15),
        ),
        max_rotations_per_minute: max_rotations_per_minute.unwrap_or(NonZeroU32::MIN),
    };

    // [state]
    let state = doc
        .state
        .as_ref()
        .map_or_else(StateConfig::default, |(span, s)| {
            state_config(diags, span.clone(), s)
        });

    // [alerts]
    let alerts = match &doc.alerts {
        None => {
            diags.error(
                0..0,
                "missing [alerts] section; set security_topic_arn to the SNS topic Security subscribes to",
            );
            None
        }
        Some((span, a)) => {
            let security = match &a.security_topic_arn {
                None => {
                    diags.error(
                        span.clone(),
                        "[alerts] is missing `security_topic_arn`; escalations need the SNS topic Security subscribes to",
                    );
                    String::new()
                }
                Some(t) => {
                    if let Err(e) = check_arn(t.get_ref(), "sns") {
                        diags.error(t.span(), e);
                    }
                    t.get_ref().clone()
                }
            };
            let notify = a.notify_topic_arn.as_ref().map(|t| {
                if let Err(e) = check_arn(t.get_ref(), "sns") {
                    diags.error(t.span(), e);
                }
                t.get_ref().clone()
            });
            Some(AlertsConfig {
                security_topic_arn: security,
                notify_topic_arn: notify,
                realert_interval: duration(
                    diags,
                    &a.realert_interval,
                    "realert_interval",
                    hours(4),
                ),
                unreachable_after: duration(
                    diags,
                    &a.unreachable_after,
                    "unreachable_after",
                    minutes(10),
                ),
            })
        }
    };

    // [events]
    let events = doc.events.as_ref().map(|(span, e)| {
        let queue_url = match &e.queue_url {
            None => {
                diags.error(
                    span.clone(),
                    "[events] is missing `queue_url`; set the SQS queue EventBridge delivers to, or remove [events]",
                );
                String::new()
            }
            Some(u) => {
                check_http_url(diags, u, "queue_url");
                u.get_ref().clone()
            }
        };
        let mut allowed_accounts = Vec::new();
        for a in e.allowed_accounts.iter().flat_map(|v| v.get_ref().iter()) {
            if !is_account_id(a.get_ref()) {
                diags.error(
                    a.span(),
                    format!("account id `{}` must be 12 digits", a.get_ref()),
                );
            }
            allowed_accounts.push(a.get_ref().clone());
        }
        let departure_sla = duration(diags, &e.departure_sla, "departure_sla", hours(24));
        let sla_warning = duration(diags, &e.sla_warning, "sla_warning", hours(4));
        if sla_warning >= departure_sla {
            let span = e
                .sla_warning
                .as_ref()
                .or(e.departure_sla.as_ref())
                .map_or_else(|| span.clone(), |s| s.span());
            diags.error(
                span,
                format!(
                    "sla_warning ({}) must be shorter than departure_sla ({})",
                    fmt_duration(sla_warning),
                    fmt_duration(departure_sla)
                ),
            );
        }
        let ct = e.cloudtrail.as_ref().map(|c| c.get_ref());
        let cloudtrail = CloudTrailConfig {
            endpoint_url: ct.and_then(|c| c.endpoint_url.as_ref()).map(|u| {
                check_http_url(diags, u, "endpoint_url");
                u.get_ref().clone()
            }),
            enabled: ct
                .and_then(|c| c.enabled.as_ref())
                .is_some_and(|b| *b.get_ref()),
            lookback: duration(diags, ct.map_or(&None, |c| &c.lookback), "lookback", hours(24)),
            poll_interval: duration(
                diags,
                ct.map_or(&None, |c| &c.poll_interval),
                "poll_interval",
                minutes(5),
            ),
        };
        if let Some(l) = ct.and_then(|c| c.lookback.as_ref())
            && cloudtrail.lookback > Duration::from_secs(90 * 86400) {
                diags.error(
                    l.span(),
                    "lookback may not exceed 90d, the CloudTrail event history",
                );
            }
        let positive = |diags: &mut Diagnostics, v: &Option<Spanned<i64>>, key: &str, default: u32, max: u32| {
            match v {
                None => NonZeroU32::new(default).unwrap_or(NonZeroU32::MIN),
                Some(n) => match u32::try_from(*n.get_ref()).ok().and_then(NonZeroU32::new) {
                    Some(x) if x.get() <= max => x,
                    _ => {
                        diags.error(n.span(), format!("{key} must be between 1 and {max}, found {}", n.get_ref()));
                        NonZeroU32::new(default).unwrap_or(NonZeroU32::MIN)
                    }
                },
            }
        };
        let workers = positive(diags, &e.workers, "workers", 4, 64);
        let max_event_rotations_per_hour =
            positive(diags, &e.max_event_rotations_per_hour, "max_event_rotations_per_hour", 50, 100_000);
        // EventBridge's limits for a target retry policy: 0-185 attempts, 60 s to 24 h.
        let max_retry_attempts = match &e.max_retry_attempts {
            None => 185,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(x) if x <= 185 => x,
                _ => {
                    diags.error(n.span(), format!("max_retry_attempts must be between 0 and 185, found {}", n.get_ref()));
                    185
                }
            },
        };
        let max_event_age = duration(diags, &e.max_event_age, "max_event_age", hours(24));
        if let Some(v) = &e.max_event_age
            && !(Duration::from_secs(60)..=hours(24)).contains(&max_event_age)
        {
            diags.error(v.span(), "max_event_age must be between 1m and 24h (EventBridge's limits)");
        }
        let dead_letter_queue_arn = e.dead_letter_queue_arn.as_ref().map(|a| {
            if let Err(err) = check_arn(a.get_ref(), "sqs") {
                diags.error(a.span(), err);
            }
            a.get_ref().clone()
        });
        let custom = |diags: &mut Diagnostics, list: &S<Vec<Spanned<RawCustomSource>>>, what: &str, pointer_key: &str| {
            let mut out = Vec::new();
            for item in list.iter().flat_map(|l| l.get_ref().iter()) {
                let c = item.get_ref();
                let (pointer, other) = if pointer_key == "user_pointer" {
                    (&c.user_pointer, &c.secret_pointer)
                } else {
                    (&c.secret_pointer, &c.user_pointer)
                };
                if let Some(o) = other {
                    diags.error(o.span(), format!("[[events.{what}]] takes `{pointer_key}`, not this key"));
                }
                let mut field = |v: &S<String>, key: &str| match v {
                    Some(v) if !v.get_ref().is_empty() => Some(v.get_ref().clone()),
                    _ => {
                        diags.error(item.span(), format!("[[events.{what}]] needs a non-empty `{key}`"));
                        None
                    }
                };
                let source = field(&c.source, "source");
                let detail_type = field(&c.detail_type, "detail_type");
                let ptr = field(pointer, pointer_key);
                if let (Some(p), Some(v)) = (&ptr, pointer) {
                    if !p.starts_with('/') {
                        diags.error(v.span(), format!("`{pointer_key}` must be a JSON pointer starting with `/`, like /detail/username"));
                    } else if p.split('~').skip(1).any(|rest| !rest.starts_with(['0', '1'])) {
                        // RFC 6901: `~` only as `~0` (a tilde) or `~1` (a slash).
                        diags.error(v.span(), format!("`{pointer_key}` has a `~` that is not `~0` or `~1` (RFC 6901 escapes for `~` and `/`)"));
                    }
                }
                if let (Some(source), Some(detail_type), Some(pointer)) = (source, detail_type, ptr) {
                    out.push(CustomSource { source, detail_type, pointer });
                }
            }
            out
        };
        let departures = custom(diags, &e.departure, "departure", "user_pointer");
        let compromises = custom(diags, &e.compromise, "compromise", "secret_pointer");
        EventsConfig {
            queue_url,
            allowed_accounts,
            departure_sla,
            sla_warning,
            event_bus: match &e.event_bus {
                None => "default".to_string(),
                Some(b) => {
                    if b.get_ref().trim().is_empty() {
                        diags.error(
                            b.span(),
                            "event_bus may not be empty; leave it out for the `default` bus",
                        );
                    }
                    b.get_ref().clone()
                }
            },
            workers,
            retry_failed: e.retry_failed.as_ref().is_some_and(|b| *b.get_ref()),
            retry_backoff: duration(diags, &e.retry_backoff, "retry_backoff", hours(1)),
            max_event_rotations_per_hour,
            dead_letter_queue_arn,
            max_event_age,
            max_retry_attempts,
            cloudtrail,
            departures,
            compromises,
        }
    });

    // [policy]
    let p = &doc.policy;
    let default_schedule = match &p.default_schedule {
        Some(s) => schedule(diags, s),
        None => Schedule::parse("@quarterly").ok(),
    };
    let default_window = duration(diags, &p.default_window, "default_window", hours(4));
    let validation_period = duration(
        diags,
        &p.validation_period,
        "validation_period",
        minutes(15),
    );
    let period_ok = (Duration::from_secs(1)..=hours(24)).contains(&validation_period);
    if let Some(v) = &p.validation_period
        && !period_ok
    {
        diags.error(
            v.span(),
            "validation_period must be between 1s and 24h; 15m is the default (the seed's post-rotation monitoring)",
        );
    }
    let validation_interval = duration(
        diags,
        &p.validation_interval,
        "validation_interval",
        Duration::from_secs(60),
    );
    if let Some(v) = &p.validation_interval
        && validation_interval < Duration::from_secs(1)
    {
        diags.error(
            v.span(),
            "validation_interval must be at least 1s (each poll calls CloudWatch); 60s is the default",
        );
    } else if period_ok
        && validation_interval > validation_period
        && let Some(v) = p
            .validation_interval
            .as_ref()
            .or(p.validation_period.as_ref())
    {
        diags.error(
            v.span(),
            format!(
                "validation_interval ({}) must not be longer than validation_period ({}); shorten the interval so that CloudWatch is polled during the watch",
                fmt_duration(validation_interval),
                fmt_duration(validation_period)
            ),
        );
    }
    let native_schedule = match &p.native_schedule {
        None => NativeSchedule::default(),
        Some(v) => match v.get_ref().as_str() {
            "report" => NativeSchedule::Report,
            "sync" => NativeSchedule::Sync,
            "disable" => NativeSchedule::Disable,
            other => {
                diags.error(
                    v.span(),
                    format!(
                        "unknown native_schedule `{other}`, expected \"report\", \"sync\" or \"disable\""
                    ),
                );
                NativeSchedule::default()
            }
        },
    };
    let rotation_timeout = duration(diags, &p.rotation_timeout, "rotation_timeout", minutes(15));
    if let Some(v) = &p.rotation_timeout
        && !(Duration::from_secs(5)..=hours(24)).contains(&rotation_timeout)
    {
        diags.error(
            v.span(),
            "rotation_timeout must be between 5s and 24h; 15m is the default (a rotation function's four steps, cold start included)",
        );
    }
    let policy = PolicyConfig {
        max_age: duration(diags, &p.max_age, "max_age", hours(90 * 24)),
        default_schedule: default_schedule.clone().unwrap_or_else(quarterly),
        default_window,
        require_change_ticket: p
            .require_change_ticket
            .as_ref()
            .is_none_or(|b| *b.get_ref()),
        validation_period,
        validation_interval,
        native_schedule,
        rotation_timeout,
    };
    if let (Some(sched), win, Some(spanned)) =
        (&default_schedule, default_window, &p.default_window)
        && let Some(gap) = sched.min_gap().and_then(|g| g.to_std().ok())
        && win > gap
    {
        diags.error(
                    spanned.span(),
                    format!(
                        "default_window {} is longer than the shortest gap ({}) between two runs of `{sched}`",
                        fmt_duration(win),
                        fmt_duration(gap)
                    ),
                );
    }

    if let Some(gap) = policy
        .default_schedule
        .max_gap()
        .and_then(|g| g.to_std().ok())
        && gap + policy.default_window > policy.max_age
        && !diags.has_errors()
    {
        let span = p
            .max_age
            .as_ref()
            .or(p.default_schedule.as_ref())
            .map_or(0..0, |s| s.span());
        diags.warning(
                span,
                format!(
                    "default_schedule `{}` can leave {} between rotations (plus a {} window), longer than max_age {}; secrets on it turn overdue and rotate early in the longest periods",
                    policy.default_schedule,
                    fmt_duration(gap),
                    fmt_duration(policy.default_window),
                    fmt_duration(policy.max_age)
                ),
            );
    }

    let mut schedules = Schedules::default();

    // [[group]]
    let mut groups = Vec::new();
    let mut group_names = HashSet::new();
    for item in doc.groups {
        let span = item.span();
        let Some(g) = de_table::<RawGroup>(&item, "group", diags) else {
            continue;
        };
        let Some(name) = &g.name else {
            diags.error(span.clone(), "[[group]] is missing `name`");
            continue;
        };
        if name.get_ref().trim().is_empty() {
            diags.error(name.span(), "[[group]] name may not be empty");
        }
        if !group_names.insert(name.get_ref().clone()) {
            diags.error(name.span(), format!("duplicate group `{}`", name.get_ref()));
        }
        for m in g.members.iter().flat_map(|m| m.get_ref().iter()) {
            if m.get_ref().trim().is_empty() {
                diags.error(m.span(), "a group member may not be empty");
            } else if m.get_ref().starts_with("group:") {
                // Groups do not nest: `group:x` here would silently be a user name.
                diags.error(
                    m.span(),
                    format!(
                        "groups do not nest: list the members of `{}` here instead",
                        m.get_ref()
                    ),
                );
            }
        }
        groups.push(Group {
            name: name.get_ref().clone(),
            members: g
                .members
                .iter()
                .flat_map(|m| m.get_ref().iter())
                .map(|m| m.get_ref().clone())
                .collect(),
        });
    }

    // [[dependent]]
    let mut dependents = Vec::new();
    // Name -> where it was first declared.
    let mut dependent_names: HashMap<String, usize> = HashMap::new();
    let mut watched: HashMap<String, bool> = HashMap::new();
    for item in doc.dependents {
        let span = item.span();
        let errors_before = diags.error_count();
        let Some(d) = de_dependent(&item, diags) else {
            continue;
        };
        drop(item);
        let Some(name) = &d.name else {
            diags.error(
                span.clone(),
                "[[dependent]] is missing `name`; name the service that uses the secrets",
            );
            continue;
        };
        let text = name.get_ref();
        if text.trim().is_empty() {
            diags.error(
                name.span(),
                "[[dependent]] name may not be empty; name the service",
            );
        } else if let Some(first) = dependent_names.get(text) {
            let (line, _) = diags.position(*first);
            diags.error(
                name.span(),
                format!(
                    "duplicate dependent `{text}` (first declared on line {line}); merge the two"
                ),
            );
        } else {
            dependent_names.insert(text.clone(), name.span().start);
        }
        let dependent = dependent(diags, &d, text, policy.validation_period);
        *watched.entry(text.clone()).or_default() |= dependent.watched();
        let unwatched = d.alarms.as_ref().is_none_or(|a| a.get_ref().is_empty())
            && d.metrics.as_ref().is_none_or(|m| m.get_ref().is_empty());
        // Not when it has errors: a misspelt `alarms` would be reported twice.
        if unwatched && diags.error_count() == errors_before {
            diags.warning(
                name.span(),
                format!(
                    "dependent `{text}` has no `alarms` or [[dependent.metrics]]: it is notified, but its health cannot be checked after a rotation; add `alarms` or [[dependent.metrics]]"
                ),
            );
        }
        dependents.push(dependent);
    }
    let declared = Declared {
        groups: group_names,
        dependents: watched,
        sync: p
            .native_schedule
            .as_ref()
            .filter(|_| policy.native_schedule == NativeSchedule::Sync)
            .map(|v| v.span()),
    };

    // [[secret]]
    let mut secrets = Vec::new();
    // Names (and, without [[account]]s, ARNs by their name) -> where first declared.
    let mut seen_ids: HashMap<String, Range<usize>> = HashMap::new();
    // With [[account]]s: ARNs by (account, region, name), and the first ARN of each name.
    let mut seen_arns: HashMap<(String, String, String), Range<usize>> = HashMap::new();
    let mut arn_names: HashMap<String, Range<usize>> = HashMap::new();
    for item in doc.secrets {
        let span = item.span();
        let Some(s) = de_table::<RawSecret>(&item, "secret", diags) else {
            continue;
        };
        drop(item);
        let id = match &s.id {
            None => {
                diags.error(
                    span.clone(),
                    "[[secret]] is missing `id` (a secret name or ARN)",
                );
                None
            }
            Some(id) => {
                let text = id.get_ref();
                let check = if text.starts_with("arn:") {
                    check_arn(text, "secretsmanager")
                } else {
                    check_secret_name(text)
                };
                let arn = text.starts_with("arn:");
                if let Err(e) = &check {
                    diags.error(id.span(), e.clone());
                } else if arn
                    && any_accounts
                    && let Some((region, account)) = arn_region_account(text)
                {
                    match account_regions.get(account) {
                        None => diags.error(
                            id.span(),
                            format!(
                                "secret `{text}` is in account {account}, which no [[account]] lists; add an [[account]] with id = \"{account}\" and regions = [\"{region}\"]"
                            ),
                        ),
                        Some((at, Some(regions))) if !regions.contains(region) => {
                            let (line, _) = diags.position(*at);
                            diags.error(
                                id.span(),
                                format!(
                                    "secret `{text}` is in region {region}, which [[account]] `{account}` (line {line}) does not list; add \"{region}\" to its regions"
                                ),
                            );
                        }
                        Some(_) => {}
                    }
                }
                // A secret named once by name and once by ARN is the same secret twice. With
                // [[account]]s names repeat across accounts: two ARNs are the same secret
                // only in the same account and region, while a name (looked up in every
                // account-region) still covers every ARN of that name.
                let name = crate::inventory::name_from_arn(text).unwrap_or(text);
                let place = arn_region_account(text)
                    .filter(|_| any_accounts && name != text)
                    .map(|(region, account)| {
                        (account.to_string(), region.to_string(), name.to_string())
                    });
                let first = match &place {
                    None => seen_ids.get(name).or_else(|| arn_names.get(name)),
                    Some(key) => seen_ids.get(name).or_else(|| seen_arns.get(key)),
                };
                if let Some(first) = first {
                    let (line, _) = diags.position(first.start);
                    diags.error(
                        id.span(),
                        if name == text {
                            format!("duplicate secret id `{text}` (first declared on line {line})")
                        } else {
                            format!(
                                "duplicate secret id `{text}` (the secret `{name}` is first declared on line {line})"
                            )
                        },
                    );
                } else if let Some(key) = place {
                    arn_names.entry(name.to_string()).or_insert(id.span());
                    seen_arns.insert(key, id.span());
                } else {
                    seen_ids.insert(name.to_string(), id.span());
                }
                Some(text.clone())
            }
        };
        let what = format!(
            "[[secret]] {}",
            id.as_deref().map_or(String::new(), |i| format!("`{i}`"))
        );
        let settings = settings(
            diags,
            RawSettings {
                schedule: &s.schedule,
                window: &s.window,
                strategy: &s.strategy,
                change_ticket: &s.change_ticket,
                dependents: &s.dependents,
                custodians: &s.custodians,
                vendor: &s.vendor,
                auto_rollback: &s.auto_rollback,
            },
            span.clone(),
            what.trim(),
            &policy,
            &declared,
            &mut schedules,
        );
        if let (Some(id), Some(settings)) = (id, settings) {
            secrets.push(SecretConfig { id, settings });
        }
    }

    // [[selector]]
    let mut selectors = Vec::new();
    // Matcher text -> where it was first declared: a second selector with the same matcher
    // would be shadowed by the first (the first match decides a secret's settings).
    let mut seen_matchers: HashMap<String, usize> = HashMap::new();
    for item in doc.selectors {
        let span = item.span();
        let Some(s) = de_table::<RawSelector>(&item, "selector", diags) else {
            continue;
        };
        drop(item);
        let matcher = match (&s.tag_key, &s.tag_value, &s.name_prefix) {
            (Some(k), v, None) => Some(Matcher::Tag {
                key: {
                    if k.get_ref().trim().is_empty() {
                        diags.error(k.span(), "tag_key may not be empty");
                    }
                    k.get_ref().clone()
                },
                value: v.as_ref().map(|v| v.get_ref().clone()),
            }),
            (None, None, Some(p)) => {
                if p.get_ref().is_empty() {
                    diags.error(p.span(), "name_prefix may not be empty");
                }
                Some(Matcher::NamePrefix(p.get_ref().clone()))
            }
            (None, Some(v), None) => {
                diags.error(v.span(), "tag_value needs a tag_key");
                None
            }
            (None, None, None) => {
                diags.error(
                    span.clone(),
                    "[[selector]] needs `tag_key` (and optionally `tag_value`) or `name_prefix`",
                );
                None
            }
            (_, _, Some(p)) => {
                diags.error(
                    p.span(),
                    "[[selector]] takes either tag_key/tag_value or name_prefix, not both",
                );
                None
            }
        };
        if let Some(m) = &matcher {
            let key = m.to_string();
            if let Some(first) = seen_matchers.get(&key) {
                let (line, _) = diags.position(*first);
                diags.error(
                    span.clone(),
                    format!(
                        "duplicate [[selector]] `{key}` (first declared on line {line}); merge the two"
                    ),
                );
            } else {
                seen_matchers.insert(key, span.start);
            }
        }
        let what = matcher.as_ref().map_or("[[selector]]".to_string(), |m| {
            format!("[[selector]] `{m}`")
        });
        let settings = settings(
            diags,
            RawSettings {
                schedule: &s.schedule,
                window: &s.window,
                strategy: &s.strategy,
                change_ticket: &s.change_ticket,
                dependents: &s.dependents,
                custodians: &s.custodians,
                vendor: &s.vendor,
                auto_rollback: &s.auto_rollback,
            },
            span.clone(),
            &what,
            &policy,
            &declared,
            &mut schedules,
        );
        if let (Some(matcher), Some(settings)) = (matcher, settings) {
            selectors.push(SelectorConfig { matcher, settings });
        }
    }

    // [requests]
    let requests = doc.requests.as_ref().map(|(span, r)| {
        if events.is_none() {
            diags.error(
                span.clone(),
                "[requests] needs an [events] section: requests arrive on its queue_url",
            );
        }
        let source = match &r.source {
            None => "commandbridge".to_string(),
            Some(v) => {
                let text = v.get_ref().trim();
                if text.is_empty() || text.starts_with("aws.") {
                    diags.error(
                        v.span(),
                        format!(
                            "`{}` cannot be the requests source: give the EventBridge source CommandBridge puts its events with (not empty, not aws.*)",
                            v.get_ref()
                        ),
                    );
                }
                text.to_string()
            }
        };
        let mut levels = HashMap::new();
        if let Some(table) = &r.levels {
            for (identity, level) in table.get_ref() {
                match Level::parse(level.get_ref().trim()) {
                    _ if identity.trim().is_empty() => diags.error(
                        level.span(),
                        "an empty identity cannot have a level; use a user name or an IAM principal ARN",
                    ),
                    Some(l) => {
                        levels.insert(identity.trim().to_string(), l);
                    }
                    None => diags.error(
                        level.span(),
                        format!(
                            "unknown level `{}` for `{identity}`: use \"L1\", \"L2\" or \"L3\" (identities not listed are L1)",
                            level.get_ref()
                        ),
                    ),
                }
            }
        }
        let approvers_topic_arn = r.approvers_topic_arn.as_ref().map(|t| {
            if let Err(e) = check_arn(t.get_ref(), "sns") {
                diags.error(t.span(), e);
            }
            t.get_ref().clone()
        });
        let event_bus = match &r.event_bus {
            Some(v) if v.get_ref().trim().is_empty() => {
                diags.error(v.span(), "event_bus may not be empty; leave it out to use [events] event_bus");
                String::new()
            }
            Some(v) => v.get_ref().trim().to_string(),
            None => events
                .as_ref()
                .map_or("default".to_string(), |e| e.event_bus.clone()),
        };
        RequestsConfig {
            source,
            levels,
            approvers_topic_arn,
            approval_timeout: duration(
                diags,
                &r.approval_timeout,
                "approval_timeout",
                Duration::from_secs(24 * 3600),
            ),
            emergency_approval_timeout: duration(
                diags,
                &r.emergency_approval_timeout,
                "emergency_approval_timeout",
                Duration::from_secs(3600),
            ),
            event_bus,
        }
    });

    Some(Config {
        path: PathBuf::new(),
        aws,
        accounts,
        daemon,
        state,
        alerts: alerts?,
        events,
        requests,
        policy,
        groups,
        dependents,
        secrets,
        selectors,
    })
}

fn quarterly() -> Schedule {
    Schedule::parse("@quarterly").expect("@quarterly is a built-in schedule")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"

[[secret]]
id = "prod/payments/db"
strategy = "single-user"
change_ticket = "CHG-10421"
"#;

    fn errors(src: &str) -> Vec<String> {
        match Config::from_source(Path::new("t.toml"), src) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(d)) => d
                .lines()
                .into_iter()
                .filter(|(s, _)| *s == Severity::Error)
                .map(|(_, l)| l)
                .collect(),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

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

    const DEPENDENTS: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"

[policy]
max_age = "93d"
validation_period = "20m"
validation_interval = "30s"
native_schedule = "disable"

[[dependent]]
name = "payments-api"
notify_topic_arn = "arn:aws:sns:us-east-1:123456789012:payments-api"
alarms = ["payments-api-5xx", "payments-api-auth"]

[[dependent.metrics]]
namespace = "AWS/ApplicationELB"
metric_name = "HTTPCode_Target_4XX_Count"
dimensions = { LoadBalancer = "app/payments/abc", TargetGroup = "targetgroup/api/def" }
statistic = "Average"
threshold = 10
period = "5m"

[[dependent.metrics]]
namespace = "Payments"
metric_name = "AuthFailures"
threshold = 0.5

[[dependent]]
name = "ledger"

[[secret]]
id = "prod/payments/db"
strategy = "alternating-users"
change_ticket = "CHG-10421"
dependents = ["payments-api", "ledger"]
auto_rollback = true

[[selector]]
name_prefix = "prod/ledger/"
strategy = "single-user"
change_ticket = "CHG-10430"
dependents = ["ledger"]
"#;

    #[test]
    fn dependents_parse_into_typed_values() {
        let (cfg, warnings) = Config::from_source(Path::new("t.toml"), DEPENDENTS).unwrap();
        assert_eq!(cfg.policy.validation_period, Duration::from_secs(20 * 60));
        assert_eq!(cfg.policy.validation_interval, Duration::from_secs(30));
        assert_eq!(cfg.policy.native_schedule, NativeSchedule::Disable);
        assert_eq!(cfg.dependents.len(), 2);
        let api = cfg.dependent("payments-api").unwrap();
        assert_eq!(
            api,
            &DependentConfig {
                name: "payments-api".into(),
                notify_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:payments-api".into()),
                alarms: vec!["payments-api-5xx".into(), "payments-api-auth".into()],
                metrics: vec![
                    MetricWatch {
                        namespace: "AWS/ApplicationELB".into(),
                        metric_name: "HTTPCode_Target_4XX_Count".into(),
                        dimensions: BTreeMap::from([
                            ("LoadBalancer".to_string(), "app/payments/abc".to_string()),
                            ("TargetGroup".to_string(), "targetgroup/api/def".to_string()),
                        ]),
                        statistic: Statistic::Average,
                        // A TOML integer is a threshold too.
                        threshold: 10.0,
                        period: Duration::from_secs(300),
                    },
                    MetricWatch {
                        namespace: "Payments".into(),
                        metric_name: "AuthFailures".into(),
                        dimensions: BTreeMap::new(),
                        statistic: Statistic::Sum,
                        threshold: 0.5,
                        period: Duration::from_secs(60),
                    },
                ],
            }
        );
        assert!(api.watched());
        let ledger = cfg.dependent("ledger").unwrap();
        assert!(!ledger.watched());
        assert_eq!(ledger.notify_topic_arn, None);
        assert!(cfg.dependent("billing").is_none());
        let s = &cfg.secrets[0].settings;
        assert_eq!(s.dependents, vec!["payments-api", "ledger"]);
        assert!(s.auto_rollback);
        assert!(!cfg.selectors[0].settings.auto_rollback);
        assert_eq!(Statistic::SampleCount.as_str(), "SampleCount");
        assert_eq!(
            serde_json::to_string(&Statistic::SampleCount).unwrap(),
            "\"SampleCount\""
        );
        // Only the notify-only dependent warns; the secret has a watched dependent.
        let warnings: Vec<String> = warnings.warnings().collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("dependent `ledger` has no `alarms`"),
            "{warnings:?}"
        );
    }

    #[test]
    fn undeclared_and_repeated_dependents_are_errors() {
        let src = format!(
            "{MINIMAL}dependents = [\"billing-api\"]\n\n[[dependent]]\nname = \"payments\"\nalarms = [\"a\", \"a\", \"\"]\n"
        );
        let errs = errors(&src);
        assert_eq!(
            errs,
            vec![
                "t.toml:9:15: error: unknown dependent `billing-api`: declare it with [[dependent]] name = \"billing-api\"",
                "t.toml:13:16: error: alarm `a` is listed twice for dependent `payments`; remove one",
                "t.toml:13:21: error: an alarm name may not be empty; name a CloudWatch alarm",
            ]
        );
    }

    #[test]
    fn auto_rollback_without_a_watched_dependent_warns() {
        let src = MINIMAL.replace(
            "strategy = \"single-user\"",
            "strategy = \"alternating-users\"\nauto_rollback = true",
        );
        let (cfg, warnings) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert!(cfg.secrets[0].settings.auto_rollback);
        let warnings: Vec<String> = warnings
            .warnings()
            .filter(|w| w.contains("auto_rollback"))
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "t.toml:8:17: warning: [[secret]] `prod/payments/db` has auto_rollback = true"
            ),
            "{warnings:?}"
        );
    }

    #[test]
    fn auto_rollback_is_refused_for_single_user() {
        // Rolling a single-user secret back hands out a password the database refuses.
        let src = MINIMAL.replace(
            "strategy = \"single-user\"",
            "strategy = \"single-user\"\nauto_rollback = true",
        );
        let errors = errors(&src);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "t.toml:8:17: error: [[secret]] `prod/payments/db` has auto_rollback = true with strategy \"single-user\""
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn rotation_timeout_defaults_to_15m_and_is_bounded() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(cfg.policy.rotation_timeout, Duration::from_secs(15 * 60));
        let src = format!("{MINIMAL}\n[policy]\nrotation_timeout = \"90s\"\n");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(cfg.policy.rotation_timeout, Duration::from_secs(90));
        let src = format!("{MINIMAL}\n[policy]\nrotation_timeout = \"1s\"\n");
        let errors = errors(&src);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("rotation_timeout must be between 5s and 24h"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_short_validation_period_needs_a_short_interval() {
        let src = format!("{MINIMAL}\n[policy]\nvalidation_period = \"30s\"\n");
        let errs = errors(&src);
        assert_eq!(
            errs,
            vec![
                "t.toml:11:21: error: validation_interval (1m) must not be longer than validation_period (30s); shorten the interval so that CloudWatch is polled during the watch"
            ]
        );
        let ok = format!(
            "{MINIMAL}\n[policy]\nvalidation_period = \"30s\"\nvalidation_interval = \"10s\"\n"
        );
        assert!(errors(&ok).is_empty());
        for bad in ["25h", "500ms"] {
            let src = format!("{MINIMAL}\n[policy]\nvalidation_period = \"{bad}\"\n");
            let errs = errors(&src);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].contains("validation_period must be between 1s and 24h"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn native_schedule_values() {
        let src = format!("{MINIMAL}\n[policy]\nnative_schedule = \"off\"\n");
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:11:19: error: unknown native_schedule `off`, expected \"report\", \"sync\" or \"disable\""
            ]
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let src = "a = 1\nbb = 2\n";
        let d = Diagnostics::new(Path::new("x"), src);
        assert_eq!(d.position(0), (1, 1));
        assert_eq!(d.position(6), (2, 1));
        assert_eq!(d.position(9), (2, 4));
    }

    #[test]
    fn unknown_keys_in_two_sections_are_both_reported() {
        let src =
            format!("{MINIMAL}\n[daemon]\nstate_pth = \"x\"\n\n[policy]\nmax_agee = \"1d\"\n");
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("unknown field `state_pth`"), "{errs:?}");
        assert!(errs[1].contains("unknown field `max_agee`"), "{errs:?}");
    }

    #[test]
    fn two_bad_keys_in_one_table_are_both_reported() {
        let src = format!("{MINIMAL}\n[daemon]\nmax_rotations_per_minute = \"many\"\nbogus = 1\n");
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("bogus")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("invalid type")), "{errs:?}");
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

    #[test]
    fn durations_render_in_days_at_most() {
        assert_eq!(fmt_duration(Duration::from_secs(92 * 86400)), "92d");
        assert_eq!(
            fmt_duration(Duration::from_secs(86400 + 2 * 3600 + 30 * 60)),
            "1d 2h 30m"
        );
        assert_eq!(fmt_duration(Duration::from_secs(4 * 3600)), "4h");
    }

    #[test]
    fn a_window_under_a_minute_is_rejected() {
        let src = MINIMAL.replace(
            "strategy = \"single-user\"",
            "strategy = \"single-user\"\nwindow = \"30s\"",
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("`window` must be at least 1m"), "{errs:?}");
        assert!(errs[0].starts_with("t.toml:8:10: error:"), "{errs:?}");
    }

    #[test]
    fn ticket_shapes() {
        assert!(is_ticket("CHG-10421", "CHG"));
        assert!(is_ticket("INC-1", "INC"));
        assert!(!is_ticket("CHG-", "CHG"));
        assert!(!is_ticket("CHG10421", "CHG"));
        assert!(!is_ticket("INC-12", "CHG"));
    }

    #[test]
    fn arn_checks() {
        assert!(
            check_arn(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
                "secretsmanager"
            )
            .is_ok()
        );
        assert!(check_arn("arn:aws:sns:us-east-1:12345:topic", "sns").is_err());
        assert!(check_arn("arn:aws:sqs:us-east-1:123456789012:topic", "sns").is_err());
        assert!(check_arn("not-an-arn", "sns").is_err());
    }

    const ACCOUNTS: &str = r#"
[aws]
region = "eu-west-1"

[alerts]
security_topic_arn = "arn:aws:sns:eu-west-1:111111111111:security"

[policy]
max_age = "93d"

[[account]]
id = "111111111111"
role_arn = "arn:aws:iam::111111111111:role/ops/rotationd"
regions = ["eu-west-1", "us-east-1"]

[[account]]
id = "022222222222"
regions = ["ap-southeast-2"]

[[secret]]
id = "prod/payments/db"
strategy = "single-user"
change_ticket = "CHG-1"

[[secret]]
id = "arn:aws:secretsmanager:us-east-1:111111111111:secret:prod/vendor/stripe-AbC123"
strategy = "single-user"
change_ticket = "CHG-2"

[[secret]]
id = "arn:aws:secretsmanager:ap-southeast-2:022222222222:secret:prod/vendor/stripe-XyZ789"
strategy = "single-user"
change_ticket = "CHG-3"
"#;

    #[test]
    fn accounts_parse_in_file_order() {
        let (cfg, warnings) = Config::from_source(Path::new("t.toml"), ACCOUNTS).unwrap();
        assert_eq!(
            cfg.accounts,
            vec![
                Account {
                    id: "111111111111".into(),
                    role_arn: Some("arn:aws:iam::111111111111:role/ops/rotationd".into()),
                    regions: vec!["eu-west-1".into(), "us-east-1".into()],
                },
                Account {
                    id: "022222222222".into(),
                    role_arn: None,
                    regions: vec!["ap-southeast-2".into()],
                },
            ]
        );
        // The same name in two accounts, by ARN, is two secrets.
        assert_eq!(cfg.secrets.len(), 3);
        assert_eq!(cfg.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(warnings.warnings().count(), 0);
    }

    #[test]
    fn no_account_tables_means_no_accounts() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert!(cfg.accounts.is_empty());
        // Without [[account]], a secret ARN in any account is accepted, as before.
        let src = MINIMAL.replace(
            "\"prod/payments/db\"",
            "\"arn:aws:secretsmanager:us-west-2:333333333333:secret:prod/db-AbC123\"",
        );
        assert_eq!(errors(&src), Vec::<String>::new());
    }

    /// MINIMAL (8 lines) then an `[[account]]` header on line 10 with `keys` from line 11.
    fn account(keys: &str) -> String {
        format!("{MINIMAL}\n[[account]]\n{keys}\n")
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert_eq!(
            errors(&account("id = \"11111111111\"\nregions = [\"eu-west-1\"]")),
            vec![
                "t.toml:11:6: error: account id `11111111111` must be exactly 12 digits; write the AWS account id with its leading zeros, like \"012345678901\""
            ]
        );
        for bad in [
            "1111111111111",
            "1111-1111-11",
            "11111111111a",
            "１１１１１１１１１１１１",
            "",
        ] {
            let errs = errors(&account(&format!(
                "id = \"{bad}\"\nregions = [\"eu-west-1\"]"
            )));
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(errs[0].contains("must be exactly 12 digits"), "{errs:?}");
        }
        assert_eq!(
            errors(&account("regions = [\"eu-west-1\"]")),
            vec![
                "t.toml:10:1: error: [[account]] is missing `id`; set the 12-digit id of the AWS account"
            ]
        );
        // A wrong type is reported once, not also as a missing key.
        let errs = errors(&account("id = 111111111111\nregions = [\"eu-west-1\"]"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:11:6: error: `id`: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_role_must_be_in_its_account() {
        let src = account(
            "id = \"111111111111\"\nrole_arn = \"arn:aws:iam::222222222222:role/rotationd\"\nregions = [\"eu-west-1\"]",
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:12:12: error: role_arn is a role in account 222222222222, not in this [[account]] (111111111111); name the role rotationd assumes in account 111111111111"
            ]
        );
        // With the id itself wrong, only the id is reported.
        let src = account(
            "id = \"1111\"\nrole_arn = \"arn:aws:iam::222222222222:role/rotationd\"\nregions = [\"eu-west-1\"]",
        );
        assert_eq!(errors(&src).len(), 1);
    }

    #[test]
    fn role_arn_shapes() {
        for good in [
            "arn:aws:iam::111111111111:role/rotationd",
            "arn:aws:iam::111111111111:role/ops/security/rotationd",
            "arn:aws-cn:iam::111111111111:role/rotationd",
            "arn:aws-us-gov:iam::111111111111:role/Rotation+Daemon=1,a.b@c_d-e",
        ] {
            assert_eq!(check_role_arn(good), Ok("111111111111"), "{good}");
        }
        for (bad, why) in [
            ("rotationd", "write it as arn:aws:iam::ACCOUNT:role/NAME"),
            ("arn:aws:iam::111111111111", "write it as"),
            (
                "arn:aws-iso:iam::111111111111:role/r",
                "unknown partition `aws-iso`",
            ),
            ("arn:aws:sts::111111111111:role/r", "expected service `iam`"),
            (
                "arn:aws:iam:eu-west-1:111111111111:role/r",
                "IAM ARNs name no region",
            ),
            (
                "arn:aws:iam::1111:role/r",
                "account id `1111` must be 12 digits",
            ),
            ("arn:aws:iam::111111111111:user/r", "`user/r` is not a role"),
            (
                "arn:aws:iam::111111111111:role/",
                "role name `` must be 1 to 64",
            ),
            (
                "arn:aws:iam::111111111111:role/ops/",
                "role name `` must be 1 to 64",
            ),
            (
                "arn:aws:iam::111111111111:role/two words",
                "role name `two words`",
            ),
            (
                "arn:aws:iam::111111111111:role/my team/r",
                "the role path contains ' '",
            ),
        ] {
            let err = check_role_arn(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("malformed role ARN `{bad}`")),
                "{err}"
            );
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("arn:aws:iam::111111111111:role/{}", "r".repeat(65));
        assert!(check_role_arn(&long).is_err());
        // Located at role_arn, one error.
        let src = account(
            "id = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:user/rotationd\"\nregions = [\"eu-west-1\"]",
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:12:12: error: malformed role ARN"),
            "{errs:?}"
        );
    }

    #[test]
    fn account_regions_are_regions_listed_once() {
        let src = account(
            "id = \"111111111111\"\nregions = [\"eu-west1\", \"us-east-1\", \"US-EAST-1\", \"us-east-1\", \"us-gov-west-1\"]",
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:12:12: error: `eu-west1` is not an AWS region (like us-east-1)",
                "t.toml:12:37: error: `US-EAST-1` is not an AWS region (like us-east-1)",
                "t.toml:12:50: error: region `us-east-1` is listed twice for [[account]] `111111111111`; remove one",
            ]
        );
    }

    #[test]
    fn an_account_needs_regions() {
        assert_eq!(
            errors(&account("id = \"111111111111\"\nregions = []")),
            vec![
                "t.toml:12:11: error: [[account]] `111111111111` has no regions; list at least one region whose secrets rotationd manages in it, like [\"us-east-1\"]"
            ]
        );
        assert_eq!(
            errors(&account("id = \"111111111111\"")),
            vec![
                "t.toml:10:1: error: [[account]] `111111111111` is missing `regions`; list the regions whose secrets rotationd manages in it, like regions = [\"us-east-1\"]"
            ]
        );
        // A misspelt key: unknown, and then `regions` is missing.
        let errs = errors(&account("id = \"111111111111\"\nregion = \"eu-west-1\""));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[1].starts_with("t.toml:12:1: error: unknown field `region`, expected one of `id`, `role_arn`, `regions`"),
            "{errs:?}"
        );
    }

    #[test]
    fn an_account_is_declared_once() {
        let src = account(
            "id = \"111111111111\"\nregions = [\"eu-west-1\"]\n\n[[account]]\nid = \"111111111111\"\nregions = [\"us-east-1\"]",
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:15:6: error: duplicate [[account]] `111111111111` (first declared on line 11); merge the two"
            ]
        );
        // `account` is an array of tables.
        let errs = errors(&format!("{MINIMAL}\n[account]\nid = \"111111111111\"\n"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("`account` must be an array of tables (`[[account]]`)"),
            "{errs:?}"
        );
    }

    #[test]
    fn secret_arns_must_be_in_a_listed_account_and_region() {
        let arn = |region: &str, account: &str| {
            format!("arn:aws:secretsmanager:{region}:{account}:secret:prod/db-AbC123")
        };
        let with = |id: &str| {
            account("id = \"111111111111\"\nregions = [\"eu-west-1\"]")
                .replace("\"prod/payments/db\"", &format!("\"{id}\""))
        };
        assert_eq!(
            errors(&with(&arn("eu-west-1", "111111111111"))),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(&with(&arn("eu-west-1", "333333333333"))),
            vec![format!(
                "t.toml:6:6: error: secret `{}` is in account 333333333333, which no [[account]] lists; add an [[account]] with id = \"333333333333\" and regions = [\"eu-west-1\"]",
                arn("eu-west-1", "333333333333")
            )]
        );
        assert_eq!(
            errors(&with(&arn("us-east-1", "111111111111"))),
            vec![format!(
                "t.toml:6:6: error: secret `{}` is in region us-east-1, which [[account]] `111111111111` (line 11) does not list; add \"us-east-1\" to its regions",
                arn("us-east-1", "111111111111")
            )]
        );
        // A malformed ARN is reported as such, not also as unlisted.
        let errs = errors(&with(
            "arn:aws:secretsmanager:us-east-1:1111:secret:prod/db-AbC123",
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("malformed ARN"), "{errs:?}");
    }

    #[test]
    fn duplicate_secrets_with_accounts() {
        let arn = "arn:aws:secretsmanager:eu-west-1:111111111111:secret:prod/payments/db-AbC123";
        let base = account("id = \"111111111111\"\nregions = [\"eu-west-1\"]");
        let second = |id: &str| {
            format!(
                "{base}\n[[secret]]\nid = \"{id}\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-2\"\n"
            )
        };
        // A name covers every account-region, so the same name by ARN is still a duplicate.
        let errs = errors(&second(arn));
        assert_eq!(
            errs,
            vec![format!(
                "t.toml:15:6: error: duplicate secret id `{arn}` (the secret `prod/payments/db` is first declared on line 6)"
            )]
        );
        // The same ARN twice, and an ARN then the name.
        let twice = base.replace("\"prod/payments/db\"", &format!("\"{arn}\""));
        let errs = errors(&format!(
            "{twice}\n[[secret]]\nid = \"{arn}\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-2\"\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("duplicate secret id"), "{errs:?}");
        let errs = errors(&format!(
            "{twice}\n[[secret]]\nid = \"prod/payments/db\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-2\"\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:15:6: error: duplicate secret id `prod/payments/db`"),
            "{errs:?}"
        );
    }

    /// MINIMAL (8 lines) then a `[state]` header on line 10 with `keys` from line 11.
    fn state_section(keys: &str) -> String {
        format!("{MINIMAL}\n[state]\n{keys}\n")
    }

    /// The warnings for `src`, but MINIMAL's own (@quarterly is longer than 90d).
    fn warnings_of(src: &str) -> Vec<String> {
        let (_, diags) = Config::from_source(Path::new("t.toml"), src).unwrap();
        diags
            .warnings()
            .filter(|w| !w.contains("default_schedule"))
            .collect()
    }

    #[test]
    fn without_a_state_section_the_state_is_sqlite() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(cfg.state, StateConfig::default());
        assert_eq!(cfg.state.backend, StateBackend::Sqlite);
        assert_eq!(cfg.state.lease, Duration::from_secs(30));
        // Written out, the same.
        let src = state_section("backend = \"sqlite\"");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(cfg.state, StateConfig::default());
        assert!(warnings_of(&src).is_empty());
    }

    #[test]
    fn a_dynamodb_state_section_is_accepted() {
        let src =
            state_section("backend = \"dynamodb\"\ntable = \"rotationd-state\"\nlease = \"45s\"");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(
            cfg.state,
            StateConfig {
                backend: StateBackend::Dynamodb {
                    table: "rotationd-state".into()
                },
                lease: Duration::from_secs(45),
            }
        );
        assert!(warnings_of(&src).is_empty());
        // The lease defaults to 30s; both bounds are allowed; any DynamoDB table name.
        for (lease, want) in [("", 30), ("lease = \"3s\"", 3), ("lease = \"10m\"", 600)] {
            let table = format!("Rotation_State-1.{}", "x".repeat(238));
            assert_eq!(table.len(), 255);
            let src = state_section(&format!(
                "backend = \"dynamodb\"\ntable = \"{table}\"\n{lease}"
            ));
            let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
            assert_eq!(cfg.state.lease, Duration::from_secs(want), "{lease}");
            assert_eq!(cfg.state.backend, StateBackend::Dynamodb { table });
        }
        let src = state_section("backend = \"dynamodb\"\ntable = \"a.b\"");
        assert_eq!(errors(&src), Vec::<String>::new());
    }

    #[test]
    fn a_state_backend_is_sqlite_or_dynamodb() {
        assert_eq!(
            errors(&state_section("backend = \"postgres\"")),
            vec![
                "t.toml:11:11: error: unknown state backend `postgres`, expected \"sqlite\" (the default) or \"dynamodb\""
            ]
        );
        assert_eq!(errors(&state_section("backend = \"DynamoDB\"")).len(), 1);
        // With an unknown backend, `table` is not also reported as out of place.
        let src = state_section("backend = \"dynamo\"\ntable = \"rotationd-state\"");
        assert_eq!(errors(&src).len(), 1, "{:?}", errors(&src));
        // Nor with a backend of the wrong type.
        let errs = errors(&state_section("backend = 1\ntable = \"rotationd-state\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:11:11: error: `backend`: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_dynamodb_backend_needs_a_table() {
        assert_eq!(
            errors(&state_section("backend = \"dynamodb\"")),
            vec![
                "t.toml:10:2: error: [state] is missing `table`; backend = \"dynamodb\" needs the DynamoDB table that holds the state, like table = \"rotationd-state\""
            ]
        );
        // A table of the wrong type is reported once, not also as missing.
        let errs = errors(&state_section("backend = \"dynamodb\"\ntable = 5"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:12:9: error: `table`: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn state_table_names_follow_dynamodb_rules() {
        let with = |table: &str| {
            errors(&state_section(&format!(
                "backend = \"dynamodb\"\ntable = \"{table}\""
            )))
        };
        assert_eq!(
            with("rotationd state"),
            vec![
                "t.toml:12:9: error: table name `rotationd state` contains ` `; DynamoDB table names may hold only letters, digits, `_`, `-` and `.`"
            ]
        );
        assert_eq!(
            with("ab"),
            vec![
                "t.toml:12:9: error: table name `ab` is too short; DynamoDB table names have 3 to 255 characters, like \"rotationd-state\""
            ]
        );
        assert_eq!(
            with(&"t".repeat(256)),
            vec![
                "t.toml:12:9: error: table name is 256 characters long; DynamoDB table names have at most 255, so shorten it"
            ]
        );
        assert_eq!(
            with(""),
            vec![
                "t.toml:12:9: error: `table` may not be empty; name the DynamoDB table that holds the state, like \"rotationd-state\""
            ]
        );
        for bad in ["rotationd/state", "état-rotation", "rotationd:state", "a+b"] {
            let errs = with(bad);
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(errs[0].contains("contains"), "{errs:?}");
        }
    }

    #[test]
    fn a_table_needs_the_dynamodb_backend() {
        assert_eq!(
            errors(&state_section("table = \"rotationd-state\"")),
            vec![
                "t.toml:11:9: error: `table` only applies to the dynamodb backend, but the backend is sqlite (the default); set backend = \"dynamodb\" or remove `table`"
            ]
        );
        assert_eq!(
            errors(&state_section(
                "backend = \"sqlite\"\ntable = \"rotationd-state\""
            )),
            vec![
                "t.toml:12:9: error: `table` only applies to the dynamodb backend, but the backend is sqlite; set backend = \"dynamodb\" or remove `table`"
            ]
        );
    }

    #[test]
    fn a_lease_is_between_3s_and_10m() {
        let with = |lease: &str| {
            errors(&state_section(&format!(
                "backend = \"dynamodb\"\ntable = \"rotationd-state\"\nlease = \"{lease}\""
            )))
        };
        assert_eq!(
            with("2s"),
            vec![
                "t.toml:13:9: error: lease `2s` is too short: the leader renews it every third of the lease, which under 3s is too tight to survive one slow DynamoDB call; use 3s to 10m (30s is the default)"
            ]
        );
        assert_eq!(
            with("11m"),
            vec![
                "t.toml:13:9: error: lease `11m` is too long: a standby would wait up to two leases to take over; use 3s to 10m (30s is the default)"
            ]
        );
        assert_eq!(with("2s 999ms").len(), 1);
        assert_eq!(with("10m 1s").len(), 1);
        // Zero and nonsense are reported once, by the duration parser.
        for bad in ["0s", "soon"] {
            let errs = with(bad);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(!errs[0].contains("too short"), "{errs:?}");
        }
    }

    #[test]
    fn a_lease_with_sqlite_warns() {
        let src = state_section("lease = \"1m\"");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(cfg.state.backend, StateBackend::Sqlite);
        assert_eq!(
            warnings_of(&src),
            vec![
                "t.toml:11:9: warning: `lease` only applies to the dynamodb backend and is ignored with sqlite; remove it or set backend = \"dynamodb\""
            ]
        );
        assert_eq!(
            warnings_of(&state_section("backend = \"sqlite\"\nlease = \"1m\"")).len(),
            1
        );
        // Not with dynamodb.
        let src =
            state_section("backend = \"dynamodb\"\ntable = \"rotationd-state\"\nlease = \"1m\"");
        assert!(warnings_of(&src).is_empty());
        // Out of range: the error, not also the warning.
        let errs = errors(&state_section("lease = \"1s\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn state_keys_are_checked() {
        let errs = errors(&state_section(
            "backend = \"dynamodb\"\ntabel = \"rotationd-state\"",
        ));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:10:2: error: [state] is missing `table`"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with(
                "t.toml:12:1: error: unknown field `tabel`, expected one of `backend`, `table`, `lease`"
            ),
            "{errs:?}"
        );
        // The unknown-section message lists `state`.
        let errs = errors(&format!("{MINIMAL}\n[stat]\n"));
        assert!(
            errs[0].contains("expected one of: aws, account, daemon, state, alerts,"),
            "{errs:?}"
        );
    }
}
