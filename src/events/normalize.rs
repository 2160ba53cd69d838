//! Event normalizer: turns untrusted event bodies into typed rotation triggers or typed rejections.
//!
//! `rotationd` learns about the world from two feeds, and both arrive here as raw text:
//!
//! * **SQS bodies** ([`normalize_sqs_body`]): an EventBridge rule targets an SQS queue, so the message
//!   body *is* the EventBridge envelope (`version`, `id`, `detail-type`, `source`, `account`, `time`,
//!   `region`, `resources`, `detail`).
//! * **CloudTrail records** ([`normalize_cloudtrail_record`]): `LookupEvents` returns each record as
//!   the JSON string `CloudTrailEvent`; that string is the bare record (no envelope). It is the
//!   catch-up path for events the queue missed, so it must reach the same verdict as the queue would.
//!
//! This is the hostile-input boundary of the daemon: anything can be written to a queue by whoever
//! holds `sqs:SendMessage`, so nothing in here panics, indexes, or recurses on input, and every
//! string that is kept or echoed back is bounded.
//!
//! # Shapes accepted
//!
//! | feed | match | result | dedupe id |
//! |---|---|---|---|
//! | EventBridge | `source` `aws.secretsmanager`, `detail-type` `AWS Service Event via CloudTrail`, `detail.eventName` `RotationStarted`/`RotationSucceeded`/`RotationFailed`/`RotationAbandoned` | [`Normalized::Rotation`] | `detail.eventID` |
//! | EventBridge | `source` `aws.iam`, `detail-type` `AWS API Call via CloudTrail`, `detail.eventName` `DeleteUser`/`DeleteLoginProfile` | [`Normalized::Departure`] (user = `requestParameters.userName`) | `detail.eventID` |
//! | EventBridge | `source` `aws.sso-directory` or `aws.identitystore`, `detail-type` `AWS API Call via CloudTrail`, `detail.eventName` `DeleteUser`/`DisableUser` | [`Normalized::Departure`] (user = `requestParameters.userName`, else `userId`) | `detail.eventID` |
//! | EventBridge | exact (`source`, `detail-type`) of a configured [`NormalizeConfig::departures`] entry | [`Normalized::Departure`] (user = the entry's JSON pointer into the whole envelope) | envelope `id` |
//! | EventBridge | exact (`source`, `detail-type`) of a configured [`NormalizeConfig::compromises`] entry | [`Normalized::Compromise`] (secret = the entry's JSON pointer) | envelope `id` |
//! | CloudTrail record | `eventSource` `secretsmanager.amazonaws.com` / `iam.amazonaws.com` / `sso-directory.amazonaws.com` / `identitystore.amazonaws.com`, same event names as above | as above, account = `recipientAccountId` | `eventID` |
//!
//! CloudTrail's `eventID` is the dedupe key for AWS events (not the envelope `id`) because the same
//! CloudTrail event can reach us twice: once through the queue and once through `LookupEvents`.
//! Custom events have no CloudTrail record, so their envelope `id` is the only stable key.
//!
//! The rotation's secret id is the first non-empty string among, in order:
//! `additionalEventData.SecretId`; `serviceEventDetails.{SecretId, secretId, arn, aRN}`; the envelope
//! `resources` (strings); the record `resources` (objects carrying `ARN`, `arn` or, in events before
//! February 2024, `aRN`). Within a `resources` array an ARN containing `:secretsmanager:` is
//! preferred. Values of the wrong type in these fallback places are skipped, not rejected, because
//! several places are legitimately absent in real events.
//!
//! Time is `eventTime` when the CloudTrail record has one, else the envelope `time` (RFC 3339).
//!
//! Built-in (`source`, `detail-type`) pairs take precedence over configured custom sources, so a
//! configuration entry cannot redirect AWS's own rotation or IAM events through a different pointer.
//!
//! # IAM Identity Center
//!
//! Identity Center user deletion and disabling are visible as CloudTrail API calls, in two forms:
//!
//! * Console / directory operations: `eventSource` `sso-directory.amazonaws.com` (EventBridge
//!   `source` `aws.sso-directory`), `eventName` `DeleteUser` or `DisableUser`, with
//!   `requestParameters` `{ "identityStoreId": "d-…", "userId": "…" }` and **no user name**. The
//!   shape is taken from a captured event in jSherz/automate-aws-access-removal
//!   (`lambda/src/handlers/user-deleted-listener/events/example.json`, whose rules match
//!   `source = aws.sso-directory`, `eventName = DeleteUser | DisableUser`); the AWS Security blog
//!   "Important changes to CloudTrail events for AWS IAM Identity Center" (2024-11, deployed
//!   2025-11) shows the same `sso-directory.amazonaws.com` event source for directory writes.
//! * Identity Store API (`identitystore:DeleteUser`, used by SDKs, the CLI and provisioning tools):
//!   EventBridge `source` `aws.identitystore`, `eventSource` `identitystore.amazonaws.com`
//!   (EventBridge events reference, "Identity Store events"); the request is
//!   `{ IdentityStoreId, UserId }` (Identity Store API reference, DeleteUser).
//!
//! Since July 2025 Identity Center removes user names from its CloudTrail events in favour of the
//! immutable `userId`, so the departing user is `requestParameters.userName` when present, else
//! `requestParameters.userId` (else `UserId`). Downstream matching must therefore accept an Identity
//! Store user id as the "user". Identity Store's newer `User Deleted` notifications
//! (`source` `aws.identitystore`, `detail-type` `User Deleted`) are not built in because their
//! `detail` shape was not verified; they can be consumed as a configured custom departure.
//!
//! # Rejections, and why each exists
//!
//! Every rejection maps to a low-cardinality [`Rejection::reason`] label for
//! `rotationd_events_rejected_total{reason}`. Strings echoed inside a rejection (names, sources,
//! times) are cut to 128 characters so a hostile body cannot inflate logs.
//!
//! * `too_large`: the body exceeds [`NormalizeConfig::max_body_bytes`] (default 256 KiB, the SQS
//!   maximum). Checked on the byte length *before* parsing so a hostile body costs nothing.
//! * `not_json`: the body does not parse. serde_json's recursion limit (128) stays on, so deeply
//!   nested input is a parse error rather than a stack overflow.
//! * `not_object`: valid JSON whose top level is not an object cannot be an envelope or record.
//! * `missing_field`: a field needed to build the trigger is absent, null or empty (an empty event
//!   id would dedupe every such event together; an empty user or secret would target nothing).
//! * `wrong_type`: a required field has the wrong JSON type, or `account` is not 12 digits.
//! * `foreign_account`: `allowed_accounts` is non-empty and the event's account is not in it: a
//!   shared bus or a misrouted queue must not let another account rotate our secrets. When the
//!   list is non-empty an event without an account is rejected as `missing_field`. An **empty list
//!   accepts any account** (single-account deployments need no configuration).
//! * `unconfigured_source`: no built-in handler and no configured custom source matches the
//!   (`source`, `detail-type`) pair: the rule or the configuration is wrong, and a silent drop would
//!   hide that.
//! * `ignored_event`: a recognised AWS feed carrying an event we do not act on: another Secrets
//!   Manager / IAM / Identity Center event name, any other `aws.*` CloudTrail event
//!   (`detail-type` ending in ` via CloudTrail`; EventBridge refuses `aws.*` sources from
//!   `PutEvents`, so these can only come from AWS), or a departure API call that **failed**
//!   (`errorCode` present): a refused `DeleteUser` removed nobody, so it is not a departure.
//! * `bad_time`: `eventTime` / `time` is not RFC 3339: ordering and age checks need a real time.
//! * `field_too_long`: user > 512, secret id > 2048, event id > 128 characters: far beyond what AWS
//!   allows (IAM user names ≤ 64, secret names ≤ 512), so such a value is an attack or a bug, and it
//!   would otherwise end up in metrics, logs and API calls. Free text is truncated instead of
//!   rejected: `errorMessage` to 2,000 characters, a compromise `reason` to 500.
//! * `mismatched_place`: a rotation or compromise event names a secret by ARN, and the event's
//!   own `account` (or `region`) is another: a forged or misrouted event. (Which secret an ARN
//!   then reaches is exact as well: `events::find_secret`.)
//!
//! Decorative fields (`errorMessage`, `region`, `ticket`, `reason`) never cause a rejection (a
//! `region` contradicting the secret's ARN is `mismatched_place`, not decoration): when
//! they are not strings they are dropped, because a trigger must not be lost over a cosmetic field.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

mod paths;
mod place;
mod rejection;

use paths::{ENVELOPE_PATHS, Paths, RECORD_PATHS};
use place::same_place;
pub use rejection::Rejection;

use crate::requests::{RequestEvent, RequestKind};

/// SQS's maximum message size; bodies above it cannot have come from SQS.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest accepted user name or user id (IAM allows 64; custom HR systems get headroom).
pub const MAX_USER_CHARS: usize = 512;
/// Longest accepted secret id (secret names are ≤ 512; the ARN adds about 80).
pub const MAX_SECRET_ID_CHARS: usize = 2048;
/// Longest accepted event id (CloudTrail and EventBridge ids are 36-character UUIDs).
pub const MAX_EVENT_ID_CHARS: usize = 128;
/// `errorMessage` is truncated, not rejected: it is diagnostic text.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 2000;
/// A compromise `reason` is truncated, not rejected.
pub const MAX_REASON_CHARS: usize = 500;
/// Strings copied into a [`Rejection`] are cut to this, so rejections stay loggable.
const MAX_ECHO_CHARS: usize = 128;
/// Region names are short (`ap-southeast-5`); anything longer is dropped as noise.
const MAX_REGION_CHARS: usize = 64;
/// `INC-` plus at most 28 digits: enough for any ticket system, small enough for a label.
const MAX_TICKET_CHARS: usize = 32;

const SRC_SECRETSMANAGER: &str = "aws.secretsmanager";
const SRC_IAM: &str = "aws.iam";
const SRC_SSO_DIRECTORY: &str = "aws.sso-directory";
const SRC_IDENTITYSTORE: &str = "aws.identitystore";
const DT_SERVICE_EVENT: &str = "AWS Service Event via CloudTrail";
const DT_API_CALL: &str = "AWS API Call via CloudTrail";

/// A configured non-AWS event feed (`[[events.departure]]` / `[[events.compromise]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSource {
    /// Exact EventBridge `source`.
    pub source: String,
    /// Exact EventBridge `detail-type`.
    pub detail_type: String,
    /// RFC 6901 JSON pointer into the *whole* envelope, e.g. `/detail/username`.
    pub pointer: String,
}

/// What the normalizer needs from the configuration, as plain data so this module stands alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeConfig {
    /// 12-digit account ids. Empty accepts any account; non-empty rejects every other account
    /// (and events that carry no account).
    pub allowed_accounts: Vec<String>,
    /// Custom departure feeds; `pointer` locates the user.
    pub departures: Vec<CustomSource>,
    /// Custom compromise feeds; `pointer` locates the secret id.
    pub compromises: Vec<CustomSource>,
    /// Bodies longer than this many bytes are rejected before parsing.
    pub max_body_bytes: usize,
    /// `[requests] source`: CommandBridge's request events are accepted from it.
    pub requests_source: Option<String>,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            allowed_accounts: Vec::new(),
            departures: Vec::new(),
            compromises: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            requests_source: None,
        }
    }
}

/// The four rotation events Secrets Manager writes to CloudTrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RotationKind {
    Started,
    Succeeded,
    Failed,
    /// AWSPENDING was removed because someone wrote a version by hand mid-rotation.
    Abandoned,
}

impl RotationKind {
    fn from_event_name(name: &str) -> Option<Self> {
        match name {
            "RotationStarted" => Some(Self::Started),
            "RotationSucceeded" => Some(Self::Succeeded),
            "RotationFailed" => Some(Self::Failed),
            "RotationAbandoned" => Some(Self::Abandoned),
            _ => None,
        }
    }

    /// The `kind` label value used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Started => "rotation_started",
            Self::Succeeded => "rotation_succeeded",
            Self::Failed => "rotation_failed",
            Self::Abandoned => "rotation_abandoned",
        }
    }
}

/// Secrets Manager's own report on a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationEvent {
    pub kind: RotationKind,
    /// Secret ARN or name, as the event carried it.
    pub secret_id: String,
    /// CloudTrail `eventID`.
    pub event_id: String,
    pub time: DateTime<Utc>,
    /// `errorMessage`, truncated to [`MAX_ERROR_MESSAGE_CHARS`].
    pub error_message: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
}

/// Someone left: the secrets they could read must be rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DepartureEvent {
    /// IAM user name, Identity Center user name or user id, or the custom feed's value.
    pub user: String,
    /// The Identity Center user id the event carried (`requestParameters.userId`), with
    /// or without a name: `crate::directory::resolve` finds the user's name and groups.
    pub user_id: Option<String>,
    pub event_id: String,
    pub time: DateTime<Utc>,
    /// `aws.iam`, `aws.sso-directory`, `aws.identitystore`, or the custom source.
    pub source: String,
    pub account: Option<String>,
}

/// A secret is reported compromised: rotate it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompromiseEvent {
    pub secret_id: String,
    pub event_id: String,
    pub time: DateTime<Utc>,
    pub source: String,
    pub account: Option<String>,
    /// `detail.ticket` when it is `INC-<digits>`.
    pub ticket: Option<String>,
    /// `detail.reason`, truncated to [`MAX_REASON_CHARS`].
    pub reason: Option<String>,
}

/// A trigger the daemon acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Normalized {
    Rotation(RotationEvent),
    Departure(DepartureEvent),
    Compromise(CompromiseEvent),
    Request(RequestEvent),
}

impl Normalized {
    /// Every value [`Normalized::kind_label`] can return, for pre-registering metric labels.
    pub const KIND_LABELS: [&'static str; 10] = [
        "rotation_started",
        "rotation_succeeded",
        "rotation_failed",
        "rotation_abandoned",
        "departure",
        "compromise",
        "rotation_requested",
        "rotation_approved",
        "rotation_denied",
        "rollback_requested",
    ];

    /// The dedupe key: CloudTrail `eventID` for AWS events, envelope `id` for custom ones.
    pub fn event_id(&self) -> &str {
        match self {
            Self::Rotation(e) => &e.event_id,
            Self::Departure(e) => &e.event_id,
            Self::Compromise(e) => &e.event_id,
            Self::Request(e) => &e.event_id,
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::Rotation(e) => e.kind.label(),
            Self::Departure(_) => "departure",
            Self::Compromise(_) => "compromise",
            Self::Request(r) => r.kind.label(),
        }
    }
}

/// Normalizes an SQS message body holding an EventBridge envelope.
pub fn normalize_sqs_body(body: &str, cfg: &NormalizeConfig) -> Result<Normalized, Rejection> {
    same_place(normalize_sqs_envelope(body, cfg)?)
}

fn normalize_sqs_envelope(body: &str, cfg: &NormalizeConfig) -> Result<Normalized, Rejection> {
    let root = parse_object(body, cfg)?;
    let env = root.as_object().ok_or(Rejection::NotAnObject)?;
    // The account gate comes first: whatever the event is, another account may not trigger us.
    let account = check_account(env.get("account"), "account", cfg)?;
    let source = req_str(env, "source", "source")?;
    let detail_type = req_str(env, "detail-type", "detail-type")?;
    let ctx = Ctx {
        paths: &ENVELOPE_PATHS,
        envelope: Some(env),
        account,
        region: short_decoration(env.get("region"), MAX_REGION_CHARS),
    };

    match (source, detail_type) {
        (SRC_SECRETSMANAGER, DT_SERVICE_EVENT) => rotation(detail(env)?, &ctx),
        (SRC_IAM, DT_API_CALL) => iam_departure(detail(env)?, &ctx),
        (SRC_SSO_DIRECTORY, DT_API_CALL) => identity_center_departure(detail(env)?, &ctx, source),
        (SRC_IDENTITYSTORE, DT_API_CALL) => identity_center_departure(detail(env)?, &ctx, source),
        _ => {
            if cfg.requests_source.as_deref() == Some(source)
                && let Some(kind) = RequestKind::from_detail_type(detail_type)
            {
                return request(env, kind, ctx.account);
            }
            let matches = |c: &&CustomSource| c.source == source && c.detail_type == detail_type;
            if let Some(custom) = cfg.departures.iter().find(matches) {
                return custom_departure(&root, env, custom, ctx.account);
            }
            if let Some(custom) = cfg.compromises.iter().find(matches) {
                return custom_compromise(&root, env, custom, ctx.account);
            }
            if source.starts_with("aws.") && detail_type.ends_with(" via CloudTrail") {
                let name = env
                    .get("detail")
                    .and_then(Value::as_object)
                    .and_then(|d| d.get("eventName"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(Rejection::IgnoredEventName(echo(name)));
            }
            Err(Rejection::UnconfiguredSource {
                event_source: echo(source),
                detail_type: echo(detail_type),
            })
        }
    }
}

/// Normalizes a bare CloudTrail record (the `CloudTrailEvent` string from `LookupEvents`).
///
/// Custom sources do not apply: they exist only on EventBridge. Any `eventSource` other than the
/// four handled is an API call we do not act on (`ignored_event`).
pub fn normalize_cloudtrail_record(
    record_json: &str,
    cfg: &NormalizeConfig,
) -> Result<Normalized, Rejection> {
    same_place(normalize_cloudtrail(record_json, cfg)?)
}

fn normalize_cloudtrail(record_json: &str, cfg: &NormalizeConfig) -> Result<Normalized, Rejection> {
    let root = parse_object(record_json, cfg)?;
    let rec = root.as_object().ok_or(Rejection::NotAnObject)?;
    let account = check_account(rec.get("recipientAccountId"), "recipientAccountId", cfg)?;
    let event_source = req_str(rec, "eventSource", "eventSource")?;
    let ctx = Ctx {
        paths: &RECORD_PATHS,
        envelope: None,
        account,
        region: short_decoration(rec.get("awsRegion"), MAX_REGION_CHARS),
    };
    match event_source {
        "secretsmanager.amazonaws.com" => rotation(rec, &ctx),
        "iam.amazonaws.com" => iam_departure(rec, &ctx),
        "sso-directory.amazonaws.com" => identity_center_departure(rec, &ctx, SRC_SSO_DIRECTORY),
        "identitystore.amazonaws.com" => identity_center_departure(rec, &ctx, SRC_IDENTITYSTORE),
        _ => {
            let name = rec
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(Rejection::IgnoredEventName(echo(name)))
        }
    }
}

/// What a CloudTrail record is read with: where it came from and what the envelope adds.
struct Ctx<'a> {
    paths: &'static Paths,
    /// The EventBridge envelope, when there is one (time and `resources` fallbacks).
    envelope: Option<&'a Map<String, Value>>,
    account: Option<String>,
    region: Option<String>,
}

fn parse_object(body: &str, cfg: &NormalizeConfig) -> Result<Value, Rejection> {
    // Byte length, before any parsing: the cheapest possible defence against big bodies.
    if body.len() > cfg.max_body_bytes {
        return Err(Rejection::TooLarge {
            size: body.len(),
            max: cfg.max_body_bytes,
        });
    }
    // serde_json's default recursion limit (128) is deliberately kept: it turns deep nesting
    // into an error instead of a stack overflow.
    let value: Value =
        serde_json::from_str(body).map_err(|e| Rejection::NotJson(echo(&e.to_string())))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Rejection::NotAnObject)
    }
}

fn check_account(
    value: Option<&Value>,
    field: &'static str,
    cfg: &NormalizeConfig,
) -> Result<Option<String>, Rejection> {
    let account = match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_account_id(s) => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(Rejection::WrongType {
                field,
                expected: "a 12-digit account id",
            });
        }
        Some(_) => {
            return Err(Rejection::WrongType {
                field,
                expected: "a string",
            });
        }
    };
    if cfg.allowed_accounts.is_empty() {
        return Ok(account);
    }
    match account {
        None => Err(Rejection::MissingField(field)),
        Some(a) if cfg.allowed_accounts.contains(&a) => Ok(Some(a)),
        // Already validated as 12 digits, so echoing it is bounded.
        Some(a) => Err(Rejection::ForeignAccount(a)),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `detail` of an envelope whose source promises a CloudTrail record.
fn detail(env: &Map<String, Value>) -> Result<&Map<String, Value>, Rejection> {
    req_obj(env, "detail", "detail")
}

fn rotation(rec: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<Normalized, Rejection> {
    let p = ctx.paths;
    // The event name decides relevance, so it is checked before anything else is demanded.
    let name = req_str(rec, "eventName", p.event_name)?;
    let kind = RotationKind::from_event_name(name)
        .ok_or_else(|| Rejection::IgnoredEventName(echo(name)))?;
    let event_id = event_id(rec, p)?;
    let time = record_time(rec, ctx)?;
    let secret_id = rotation_secret_id(rec, ctx)?;
    Ok(Normalized::Rotation(RotationEvent {
        kind,
        secret_id,
        event_id,
        time,
        error_message: decoration(rec.get("errorMessage"), MAX_ERROR_MESSAGE_CHARS),
        account: ctx.account.clone(),
        region: ctx.region.clone(),
    }))
}

fn rotation_secret_id(rec: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<String, Rejection> {
    let p = ctx.paths;
    let additional = rec
        .get("additionalEventData")
        .and_then(Value::as_object)
        .and_then(|o| o.get("SecretId"))
        .and_then(non_empty_str);
    if let Some(id) = additional {
        return bounded(id, MAX_SECRET_ID_CHARS, p.additional_secret_id);
    }
    let service = rec
        .get("serviceEventDetails")
        .and_then(Value::as_object)
        .and_then(|o| {
            ["SecretId", "secretId", "arn", "aRN"]
                .iter()
                .find_map(|k| o.get(*k).and_then(non_empty_str))
        });
    if let Some(id) = service {
        return bounded(id, MAX_SECRET_ID_CHARS, p.service_event_details);
    }
    let from_resources = ctx
        .envelope
        .and_then(|env| env.get("resources"))
        .and_then(secret_from_resources)
        .or_else(|| rec.get("resources").and_then(secret_from_resources));
    if let Some(id) = from_resources {
        return bounded(id, MAX_SECRET_ID_CHARS, p.resources);
    }
    Err(Rejection::MissingField(p.additional_secret_id))
}

/// A secret ARN from `resources`: strings (envelope) or objects with `ARN`/`arn`/`aRN` (record).
fn secret_from_resources(resources: &Value) -> Option<&str> {
    let items = resources.as_array()?;
    let arns = || {
        items.iter().filter_map(|item| match item {
            Value::String(s) if !s.trim().is_empty() => Some(s.as_str()),
            Value::Object(o) => ["ARN", "arn", "aRN"]
                .iter()
                .find_map(|k| o.get(*k).and_then(non_empty_str)),
            _ => None,
        })
    };
    // A rotation event may also list the rotation Lambda; the secret is the one we want.
    arns()
        .find(|arn| arn.contains(":secretsmanager:"))
        .or_else(|| arns().next())
}

fn iam_departure(rec: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<Normalized, Rejection> {
    let p = ctx.paths;
    let name = req_str(rec, "eventName", p.event_name)?;
    if !matches!(name, "DeleteUser" | "DeleteLoginProfile") {
        return Err(Rejection::IgnoredEventName(echo(name)));
    }
    reject_failed_call(rec, name)?;
    let event_id = event_id(rec, p)?;
    let time = record_time(rec, ctx)?;
    let params = req_obj(rec, "requestParameters", p.request_parameters)?;
    let user = bounded(
        req_str(params, "userName", p.user_name)?,
        MAX_USER_CHARS,
        p.user_name,
    )?;
    Ok(Normalized::Departure(DepartureEvent {
        user,
        user_id: None,
        event_id,
        time,
        source: SRC_IAM.to_owned(),
        account: ctx.account.clone(),
    }))
}

fn identity_center_departure(
    rec: &Map<String, Value>,
    ctx: &Ctx<'_>,
    source: &str,
) -> Result<Normalized, Rejection> {
    let p = ctx.paths;
    let name = req_str(rec, "eventName", p.event_name)?;
    if !matches!(name, "DeleteUser" | "DisableUser") {
        return Err(Rejection::IgnoredEventName(echo(name)));
    }
    reject_failed_call(rec, name)?;
    let event_id = event_id(rec, p)?;
    let time = record_time(rec, ctx)?;
    let params = req_obj(rec, "requestParameters", p.request_parameters)?;
    // Identity Center stopped logging user names (2025); the immutable userId is what remains.
    let id = ["userId", "UserId"]
        .iter()
        .find_map(|k| params.get(*k).and_then(non_empty_str));
    let (user, field) = match (params.get("userName").and_then(non_empty_str), id) {
        (Some(n), _) => (n, p.user_name),
        (None, Some(id)) => (id, p.user_id),
        (None, None) => return Err(Rejection::MissingField(p.user_id)),
    };
    let user_id = id.map(|i| bounded(i, MAX_USER_CHARS, p.user_id));
    Ok(Normalized::Departure(DepartureEvent {
        user_id: user_id.transpose()?,
        user: bounded(user, MAX_USER_CHARS, field)?,
        event_id,
        time,
        source: source.to_owned(),
        account: ctx.account.clone(),
    }))
}

/// A call AWS refused changed nothing: a failed `DeleteUser` is not a departure.
fn reject_failed_call(rec: &Map<String, Value>, name: &str) -> Result<(), Rejection> {
    match rec.get("errorCode") {
        None | Some(Value::Null) => Ok(()),
        Some(code) => {
            let code = code.as_str().unwrap_or("error");
            Err(Rejection::IgnoredEventName(echo(&format!(
                "{name} failed: {code}"
            ))))
        }
    }
}

fn custom_departure(
    root: &Value,
    env: &Map<String, Value>,
    custom: &CustomSource,
    account: Option<String>,
) -> Result<Normalized, Rejection> {
    let event_id = envelope_id(env)?;
    let time = envelope_time(env)?;
    let user = pointer_str(root, &custom.pointer, "user_pointer", MAX_USER_CHARS)?;
    Ok(Normalized::Departure(DepartureEvent {
        user,
        user_id: None,
        event_id,
        time,
        source: custom.source.clone(),
        account,
    }))
}

fn custom_compromise(
    root: &Value,
    env: &Map<String, Value>,
    custom: &CustomSource,
    account: Option<String>,
) -> Result<Normalized, Rejection> {
    let event_id = envelope_id(env)?;
    let time = envelope_time(env)?;
    // 2048, not 512: a secret ARN is the name (≤ 512) plus about 80 characters of prefix/suffix.
    let secret_id = pointer_str(root, &custom.pointer, "secret_pointer", MAX_SECRET_ID_CHARS)?;
    let detail = env.get("detail").and_then(Value::as_object);
    let ticket = detail
        .and_then(|d| d.get("ticket"))
        .and_then(Value::as_str)
        .filter(|t| is_incident_ticket(t))
        .map(str::to_owned);
    let reason = detail.and_then(|d| decoration(d.get("reason"), MAX_REASON_CHARS));
    Ok(Normalized::Compromise(CompromiseEvent {
        secret_id,
        event_id,
        time,
        source: custom.source.clone(),
        account,
        ticket,
        reason,
    }))
}

/// A CommandBridge request event. The fields the decision needs are required here (a body
/// without them is rejected as malformed); whether the request is *allowed* (ticket,
/// level, secret) is decided later and answered on the bus, because a refusal is an answer
/// CommandBridge must see.
fn request(
    env: &Map<String, Value>,
    kind: RequestKind,
    account: Option<String>,
) -> Result<Normalized, Rejection> {
    let event_id = envelope_id(env)?;
    let time = envelope_time(env)?;
    let d = detail(env)?;
    let text = |key: &'static str, max: usize| -> Result<Option<String>, Rejection> {
        match d.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => bounded(s.trim(), max, key).map(Some),
            Some(_) => Err(Rejection::WrongType {
                field: key,
                expected: "a string",
            }),
        }
    };
    let required = |key: &'static str, max: usize| -> Result<String, Rejection> {
        text(key, max)?.ok_or(Rejection::MissingField(key))
    };
    let emergency = match d.get("emergency") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Rejection::WrongType {
                field: "emergency",
                expected: "a boolean",
            });
        }
    };
    let (request_id, actor, secret) = match kind {
        RequestKind::Rotate => (
            required("request_id", MAX_EVENT_ID_CHARS)?,
            required("requester", MAX_USER_CHARS)?,
            Some(required("secret", MAX_SECRET_ID_CHARS)?),
        ),
        RequestKind::Approve | RequestKind::Deny => (
            required("request_id", MAX_EVENT_ID_CHARS)?,
            required("approver", MAX_USER_CHARS)?,
            None,
        ),
        RequestKind::Rollback => (
            text("request_id", MAX_EVENT_ID_CHARS)?.unwrap_or_else(|| event_id.clone()),
            required("requester", MAX_USER_CHARS)?,
            Some(required("secret", MAX_SECRET_ID_CHARS)?),
        ),
    };
    Ok(Normalized::Request(RequestEvent {
        kind,
        event_id,
        request_id,
        secret,
        // Kept as written (bounded): a bad ticket is refused with its text in the answer.
        ticket: text("ticket", MAX_TICKET_CHARS)?,
        reason: decoration(d.get("reason"), MAX_REASON_CHARS),
        actor,
        claimed_level: short_decoration(d.get("level"), 16),
        emergency,
        comment: decoration(d.get("comment"), MAX_REASON_CHARS),
        time,
        account,
    }))
}

/// `INC-<digits>`: the guide's emergency-ticket form; anything else is not a ticket reference.
fn is_incident_ticket(t: &str) -> bool {
    t.len() <= MAX_TICKET_CHARS
        && t.strip_prefix("INC-")
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn pointer_str(
    root: &Value,
    pointer: &str,
    field: &'static str,
    max: usize,
) -> Result<String, Rejection> {
    match root.pointer(pointer) {
        None | Some(Value::Null) => Err(Rejection::MissingField(field)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Rejection::MissingField(field)),
        Some(Value::String(s)) => bounded(s, max, field),
        Some(_) => Err(Rejection::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn event_id(rec: &Map<String, Value>, p: &Paths) -> Result<String, Rejection> {
    bounded(
        req_str(rec, "eventID", p.event_id)?,
        MAX_EVENT_ID_CHARS,
        p.event_id,
    )
}

fn envelope_id(env: &Map<String, Value>) -> Result<String, Rejection> {
    bounded(req_str(env, "id", "id")?, MAX_EVENT_ID_CHARS, "id")
}

fn envelope_time(env: &Map<String, Value>) -> Result<DateTime<Utc>, Rejection> {
    match env.get("time") {
        None | Some(Value::Null) => Err(Rejection::MissingField("time")),
        Some(v) => parse_time(v, "time"),
    }
}

/// `eventTime` of the record, else the envelope `time`: CloudTrail's time is when the thing
/// happened, EventBridge's is when it was delivered.
fn record_time(rec: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<DateTime<Utc>, Rejection> {
    match rec.get("eventTime") {
        None | Some(Value::Null) => match ctx.envelope {
            Some(env) => envelope_time(env),
            None => Err(Rejection::MissingField(ctx.paths.event_time)),
        },
        Some(v) => parse_time(v, ctx.paths.event_time),
    }
}

fn parse_time(v: &Value, field: &'static str) -> Result<DateTime<Utc>, Rejection> {
    let s = v.as_str().ok_or(Rejection::WrongType {
        field,
        expected: "an RFC 3339 string",
    })?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Rejection::BadTime(echo(s)))
}

fn req_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a Map<String, Value>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(Rejection::MissingField(field)),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(Rejection::WrongType {
            field,
            expected: "an object",
        }),
    }
}

/// A required string; blank counts as missing (it would identify nothing).
fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a str, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(Rejection::MissingField(field)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Rejection::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Rejection::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn non_empty_str(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.trim().is_empty())
}

/// Keeps `s` if it has at most `max` characters, else rejects it.
fn bounded(s: &str, max: usize, field: &'static str) -> Result<String, Rejection> {
    // Bytes ≥ chars, so the byte length settles the common case without counting.
    if s.len() <= max || s.chars().count() <= max {
        Ok(s.to_owned())
    } else {
        Err(Rejection::FieldTooLong(field))
    }
}

/// Optional free text: a non-blank string, truncated; anything else is dropped.
fn decoration(v: Option<&Value>, max: usize) -> Option<String> {
    v.and_then(non_empty_str).map(|s| truncate_chars(s, max))
}

/// Optional short token (a region): kept only if it fits, since a cut one would be wrong.
fn short_decoration(v: Option<&Value>, max: usize) -> Option<String> {
    v.and_then(non_empty_str)
        .filter(|s| s.chars().count() <= max)
        .map(str::to_owned)
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        // `i` is a char boundary, so `get` always succeeds; the fallback keeps this panic-free.
        Some((i, _)) => s.get(..i).unwrap_or_default().to_owned(),
        None => s.to_owned(),
    }
}

/// Input echoed inside a rejection, cut so logs and error strings stay small.
fn echo(s: &str) -> String {
    truncate_chars(s, MAX_ECHO_CHARS)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ACCOUNT: &str = "111122223333";

    fn cfg() -> NormalizeConfig {
        NormalizeConfig {
            allowed_accounts: vec![ACCOUNT.to_owned()],
            departures: vec![CustomSource {
                source: "com.example.hr".to_owned(),
                detail_type: "Employee Departed".to_owned(),
                pointer: "/detail/employee/login".to_owned(),
            }],
            compromises: vec![CustomSource {
                source: "com.example.security".to_owned(),
                detail_type: "Secret Compromised".to_owned(),
                pointer: "/detail/secret".to_owned(),
            }],
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            requests_source: Some("commandbridge".to_owned()),
        }
    }

    // ---- fixtures, modelled on the CloudTrail / EventBridge shapes in aws-facts.md ----

    const ROTATION_FAILED: &str = r#"{
  "version": "0",
  "id": "7f1b2c3d-0000-4000-8000-000000000001",
  "detail-type": "AWS Service Event via CloudTrail",
  "source": "aws.secretsmanager",
  "account": "111122223333",
  "time": "2024-05-02T10:15:30Z",
  "region": "eu-west-1",
  "resources": [],
  "detail": {
    "eventVersion": "1.08",
    "userIdentity": {"accountId": "111122223333", "invokedBy": "secretsmanager.amazonaws.com"},
    "eventTime": "2024-05-02T10:15:27Z",
    "eventSource": "secretsmanager.amazonaws.com",
    "eventName": "RotationFailed",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "secretsmanager.amazonaws.com",
    "userAgent": "secretsmanager.amazonaws.com",
    "requestParameters": null,
    "responseElements": null,
    "additionalEventData": {"SecretId": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db/orders-AbCdEf"},
    "errorMessage": "testSecret failed: password authentication failed for user \"orders_app\"",
    "requestID": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
    "eventID": "0a1b2c3d-1111-4e2f-9a3b-4c5d6e7f8091",
    "readOnly": false,
    "resources": [],
    "eventType": "AwsServiceEvent",
    "managementEvent": true,
    "recipientAccountId": "111122223333",
    "eventCategory": "Management"
  }
}"#;

    const ROTATION_SUCCEEDED_SERVICE_DETAILS: &str = r#"{
  "version": "0",
  "id": "7f1b2c3d-0000-4000-8000-000000000002",
  "detail-type": "AWS Service Event via CloudTrail",
  "source": "aws.secretsmanager",
  "account": "111122223333",
  "time": "2024-05-03T00:00:09Z",
  "region": "us-east-1",
  "resources": [],
  "detail": {
    "eventVersion": "1.08",
    "eventTime": "2024-05-03T00:00:04Z",
    "eventSource": "secretsmanager.amazonaws.com",
    "eventName": "RotationSucceeded",
    "awsRegion": "us-east-1",
    "requestParameters": null,
    "responseElements": null,
    "serviceEventDetails": {"secretId": "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/api/stripe-9QwErT"},
    "eventID": "0a1b2c3d-2222-4e2f-9a3b-4c5d6e7f8092",
    "readOnly": false,
    "eventType": "AwsServiceEvent",
    "recipientAccountId": "111122223333"
  }
}"#;

    const ROTATION_STARTED_LEGACY_ARN: &str = r#"{
  "version": "0",
  "id": "7f1b2c3d-0000-4000-8000-000000000003",
  "detail-type": "AWS Service Event via CloudTrail",
  "source": "aws.secretsmanager",
  "account": "111122223333",
  "time": "2023-11-20T04:00:02Z",
  "region": "eu-west-1",
  "resources": [],
  "detail": {
    "eventVersion": "1.08",
    "eventTime": "2023-11-20T04:00:00Z",
    "eventSource": "secretsmanager.amazonaws.com",
    "eventName": "RotationStarted",
    "awsRegion": "eu-west-1",
    "requestParameters": null,
    "responseElements": null,
    "eventID": "0a1b2c3d-3333-4e2f-9a3b-4c5d6e7f8093",
    "readOnly": false,
    "resources": [
      {"accountId": "111122223333", "type": "AWS::Lambda::Function", "aRN": "arn:aws:lambda:eu-west-1:111122223333:function:ldap-rotator"},
      {"accountId": "111122223333", "type": "AWS::SecretsManager::Secret", "aRN": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:legacy/ldap-Zz9Yx8"}
    ],
    "eventType": "AwsServiceEvent",
    "recipientAccountId": "111122223333"
  }
}"#;

    const ROTATION_ABANDONED_ENVELOPE_RESOURCES: &str = r#"{
  "version": "0",
  "id": "7f1b2c3d-0000-4000-8000-000000000004",
  "detail-type": "AWS Service Event via CloudTrail",
  "source": "aws.secretsmanager",
  "account": "111122223333",
  "time": "2024-08-09T12:00:00Z",
  "region": "eu-central-1",
  "resources": ["arn:aws:secretsmanager:eu-central-1:111122223333:secret:prod/cache-Q1w2E3"],
  "detail": {
    "eventSource": "secretsmanager.amazonaws.com",
    "eventName": "RotationAbandoned",
    "eventID": "0a1b2c3d-4444-4e2f-9a3b-4c5d6e7f8094",
    "eventType": "AwsServiceEvent"
  }
}"#;

    const IAM_DELETE_USER: &str = r#"{
  "version": "0",
  "id": "c0ffee00-0000-4000-8000-000000000005",
  "detail-type": "AWS API Call via CloudTrail",
  "source": "aws.iam",
  "account": "111122223333",
  "time": "2024-06-10T08:00:05Z",
  "region": "us-east-1",
  "resources": [],
  "detail": {
    "eventVersion": "1.09",
    "userIdentity": {
      "type": "AssumedRole",
      "principalId": "AROAEXAMPLEID:alice",
      "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
      "accountId": "111122223333"
    },
    "eventTime": "2024-06-10T08:00:01Z",
    "eventSource": "iam.amazonaws.com",
    "eventName": "DeleteUser",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "203.0.113.10",
    "userAgent": "aws-cli/2.15.0",
    "requestParameters": {"userName": "bob.builder"},
    "responseElements": null,
    "requestID": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
    "eventID": "3c4d5e6f-2222-4a1b-8c9d-0e1f2a3b4c5d",
    "readOnly": false,
    "eventType": "AwsApiCall",
    "managementEvent": true,
    "recipientAccountId": "111122223333",
    "eventCategory": "Management"
  }
}"#;

    const IAM_DELETE_LOGIN_PROFILE: &str = r#"{
  "version": "0",
  "id": "c0ffee00-0000-4000-8000-000000000006",
  "detail-type": "AWS API Call via CloudTrail",
  "source": "aws.iam",
  "account": "111122223333",
  "time": "2024-06-11T09:30:04Z",
  "region": "us-east-1",
  "resources": [],
  "detail": {
    "eventVersion": "1.09",
    "eventTime": "2024-06-11T09:30:00Z",
    "eventSource": "iam.amazonaws.com",
    "eventName": "DeleteLoginProfile",
    "awsRegion": "us-east-1",
    "requestParameters": {"userName": "carol"},
    "responseElements": null,
    "eventID": "3c4d5e6f-3333-4a1b-8c9d-0e1f2a3b4c5e",
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333"
  }
}"#;

    /// Shape of a real capture (jSherz/automate-aws-access-removal): user id only, no name.
    const SSO_DISABLE_USER: &str = r#"{
  "version": "0",
  "id": "6b723911-eeb0-80f9-cf88-ea8d61e7c583",
  "detail-type": "AWS API Call via CloudTrail",
  "source": "aws.sso-directory",
  "account": "111122223333",
  "time": "2024-06-12T15:36:49Z",
  "region": "eu-west-1",
  "resources": [],
  "detail": {
    "eventVersion": "1.08",
    "userIdentity": {"type": "Unknown", "accountId": "111122223333"},
    "eventTime": "2024-06-12T15:36:48Z",
    "eventSource": "sso-directory.amazonaws.com",
    "eventName": "DisableUser",
    "awsRegion": "eu-west-1",
    "requestParameters": {
      "identityStoreId": "d-93670dc30f",
      "userId": "93670dc30f-6d321996-eab8-4d2e-9f41-0db53b051a5b"
    },
    "responseElements": null,
    "eventID": "02ff70e0-d0ac-4284-bb43-7166c247bd52",
    "readOnly": false,
    "eventType": "AwsApiCall",
    "managementEvent": true,
    "recipientAccountId": "111122223333",
    "eventCategory": "Management"
  }
}"#;

    const IDENTITYSTORE_DELETE_USER: &str = r#"{
  "version": "0",
  "id": "6b723911-eeb0-80f9-cf88-ea8d61e7c584",
  "detail-type": "AWS API Call via CloudTrail",
  "source": "aws.identitystore",
  "account": "111122223333",
  "time": "2024-06-13T10:00:03Z",
  "region": "eu-west-1",
  "resources": [],
  "detail": {
    "eventTime": "2024-06-13T10:00:01Z",
    "eventSource": "identitystore.amazonaws.com",
    "eventName": "DeleteUser",
    "awsRegion": "eu-west-1",
    "requestParameters": {
      "identityStoreId": "d-93670dc30f",
      "userId": "22c554e4-c091-708a-0ec5-08b46733f1a2",
      "userName": "erin@example.com"
    },
    "responseElements": null,
    "eventID": "d1678273-85cf-4a64-a14e-d0f58a35497a",
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333"
  }
}"#;

    const HR_DEPARTURE: &str = r#"{
  "version": "0",
  "id": "hr-evt-20240701-0001",
  "detail-type": "Employee Departed",
  "source": "com.example.hr",
  "account": "111122223333",
  "time": "2024-07-01T17:30:00Z",
  "region": "eu-west-1",
  "resources": [],
  "detail": {"employee": {"login": "dave.jones", "employeeId": "E12345"}, "lastDay": "2024-07-01"}
}"#;

    const COMPROMISE: &str = r#"{
  "version": "0",
  "id": "sec-evt-20240702-0001",
  "detail-type": "Secret Compromised",
  "source": "com.example.security",
  "account": "111122223333",
  "time": "2024-07-02T03:04:05Z",
  "region": "eu-west-1",
  "resources": [],
  "detail": {
    "secret": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/payments/api-key-Xy12Ab",
    "ticket": "INC-48213",
    "reason": "Key found in a public GitHub gist"
  }
}"#;

    /// Accepted fixtures, with the pointer of their dedupe id (used to make unique copies).
    const VALID: [(&str, &str); 10] = [
        (ROTATION_FAILED, "/detail/eventID"),
        (ROTATION_SUCCEEDED_SERVICE_DETAILS, "/detail/eventID"),
        (ROTATION_STARTED_LEGACY_ARN, "/detail/eventID"),
        (ROTATION_ABANDONED_ENVELOPE_RESOURCES, "/detail/eventID"),
        (IAM_DELETE_USER, "/detail/eventID"),
        (IAM_DELETE_LOGIN_PROFILE, "/detail/eventID"),
        (SSO_DISABLE_USER, "/detail/eventID"),
        (IDENTITYSTORE_DELETE_USER, "/detail/eventID"),
        (HR_DEPARTURE, "/id"),
        (COMPROMISE, "/id"),
    ];

    // ---- helpers ----

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ok(body: &str) -> Normalized {
        normalize_sqs_body(body, &cfg()).unwrap()
    }

    fn rej(body: &str) -> Rejection {
        normalize_sqs_body(body, &cfg()).unwrap_err()
    }

    /// Sets (or inserts) the value at `pointer`; its parent must exist.
    fn with(fixture: &str, pointer: &str, value: Value) -> String {
        let mut v: Value = serde_json::from_str(fixture).unwrap();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value);
        v.to_string()
    }

    fn without(fixture: &str, pointer: &str) -> String {
        let mut v: Value = serde_json::from_str(fixture).unwrap();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key)
            .unwrap();
        v.to_string()
    }

    fn rotation_of(n: Normalized) -> RotationEvent {
        match n {
            Normalized::Rotation(r) => r,
            other => panic!("expected a rotation, got {other:?}"),
        }
    }

    fn departure_of(n: Normalized) -> DepartureEvent {
        match n {
            Normalized::Departure(d) => d,
            other => panic!("expected a departure, got {other:?}"),
        }
    }

    fn assert_rejected(r: Rejection, expected: Rejection, reason: &str) {
        assert_eq!(r, expected);
        assert_eq!(r.reason(), reason);
    }

    // ---- accepted shapes ----

    #[test]
    fn rotation_failed_with_additional_event_data() {
        let n = ok(ROTATION_FAILED);
        assert_eq!(n.kind_label(), "rotation_failed");
        assert_eq!(n.event_id(), "0a1b2c3d-1111-4e2f-9a3b-4c5d6e7f8091");
        assert_eq!(
            rotation_of(n),
            RotationEvent {
                kind: RotationKind::Failed,
                secret_id:
                    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db/orders-AbCdEf"
                        .to_owned(),
                event_id: "0a1b2c3d-1111-4e2f-9a3b-4c5d6e7f8091".to_owned(),
                // eventTime, not the later envelope time.
                time: ts("2024-05-02T10:15:27Z"),
                error_message: Some(
                    "testSecret failed: password authentication failed for user \"orders_app\""
                        .to_owned()
                ),
                account: Some(ACCOUNT.to_owned()),
                region: Some("eu-west-1".to_owned()),
            }
        );
    }

    #[test]
    fn rotation_succeeded_from_service_event_details() {
        let n = ok(ROTATION_SUCCEEDED_SERVICE_DETAILS);
        assert_eq!(n.kind_label(), "rotation_succeeded");
        assert_eq!(
            rotation_of(n),
            RotationEvent {
                kind: RotationKind::Succeeded,
                secret_id:
                    "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/api/stripe-9QwErT"
                        .to_owned(),
                event_id: "0a1b2c3d-2222-4e2f-9a3b-4c5d6e7f8092".to_owned(),
                time: ts("2024-05-03T00:00:04Z"),
                error_message: None,
                account: Some(ACCOUNT.to_owned()),
                region: Some("us-east-1".to_owned()),
            }
        );
    }

    #[test]
    fn an_event_naming_a_secret_of_another_account_or_region_is_rejected() {
        // ROTATION_FAILED comes from account ACCOUNT in eu-west-1 and names a secret there.
        let elsewhere = |arn: &str| {
            with(
                ROTATION_FAILED,
                "/detail/additionalEventData",
                serde_json::json!({ "SecretId": arn }),
            )
        };
        assert_rejected(
            rej(&elsewhere(
                "arn:aws:secretsmanager:eu-west-1:999999999999:secret:prod/db/orders-AbCdEf",
            )),
            Rejection::MismatchedPlace {
                field: "account",
                event: ACCOUNT.into(),
                arn: "999999999999".into(),
            },
            "mismatched_place",
        );
        assert_rejected(
            rej(&elsewhere(&format!(
                "arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/db/orders-AbCdEf"
            ))),
            Rejection::MismatchedPlace {
                field: "region",
                event: "eu-west-1".into(),
                arn: "us-east-1".into(),
            },
            "mismatched_place",
        );
        // A bare name has no place to disagree with.
        assert_eq!(
            rotation_of(ok(&elsewhere("prod/db/orders"))).secret_id,
            "prod/db/orders"
        );
    }

    #[test]
    fn service_event_details_key_variants() {
        for key in ["SecretId", "secretId", "arn", "aRN"] {
            let body = with(
                ROTATION_SUCCEEDED_SERVICE_DETAILS,
                "/detail/serviceEventDetails",
                serde_json::json!({ key: "prod/x" }),
            );
            assert_eq!(rotation_of(ok(&body)).secret_id, "prod/x", "key {key}");
        }
    }

    #[test]
    fn rotation_started_from_legacy_arn_resources_prefers_the_secret() {
        let n = ok(ROTATION_STARTED_LEGACY_ARN);
        assert_eq!(n.kind_label(), "rotation_started");
        assert_eq!(
            rotation_of(n),
            RotationEvent {
                kind: RotationKind::Started,
                // The Lambda listed first is skipped for the secretsmanager ARN.
                secret_id:
                    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:legacy/ldap-Zz9Yx8"
                        .to_owned(),
                event_id: "0a1b2c3d-3333-4e2f-9a3b-4c5d6e7f8093".to_owned(),
                time: ts("2023-11-20T04:00:00Z"),
                error_message: None,
                account: Some(ACCOUNT.to_owned()),
                region: Some("eu-west-1".to_owned()),
            }
        );
    }

    #[test]
    fn record_resources_arn_and_upper_arn_keys() {
        for key in ["arn", "ARN"] {
            let body = with(
                ROTATION_STARTED_LEGACY_ARN,
                "/detail/resources",
                serde_json::json!([{ "type": "AWS::SecretsManager::Secret", key: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:s-1" }]),
            );
            assert_eq!(
                rotation_of(ok(&body)).secret_id,
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:s-1"
            );
        }
    }

    #[test]
    fn rotation_abandoned_from_envelope_resources_and_envelope_time() {
        let n = ok(ROTATION_ABANDONED_ENVELOPE_RESOURCES);
        assert_eq!(n.kind_label(), "rotation_abandoned");
        assert_eq!(
            rotation_of(n),
            RotationEvent {
                kind: RotationKind::Abandoned,
                secret_id:
                    "arn:aws:secretsmanager:eu-central-1:111122223333:secret:prod/cache-Q1w2E3"
                        .to_owned(),
                event_id: "0a1b2c3d-4444-4e2f-9a3b-4c5d6e7f8094".to_owned(),
                // No detail.eventTime: the envelope time is used.
                time: ts("2024-08-09T12:00:00Z"),
                error_message: None,
                account: Some(ACCOUNT.to_owned()),
                region: Some("eu-central-1".to_owned()),
            }
        );
    }

    #[test]
    fn iam_delete_user() {
        let n = ok(IAM_DELETE_USER);
        assert_eq!(n.kind_label(), "departure");
        assert_eq!(n.event_id(), "3c4d5e6f-2222-4a1b-8c9d-0e1f2a3b4c5d");
        assert_eq!(
            departure_of(n),
            DepartureEvent {
                user: "bob.builder".to_owned(),
                user_id: None,
                event_id: "3c4d5e6f-2222-4a1b-8c9d-0e1f2a3b4c5d".to_owned(),
                time: ts("2024-06-10T08:00:01Z"),
                source: "aws.iam".to_owned(),
                account: Some(ACCOUNT.to_owned()),
            }
        );
    }

    #[test]
    fn iam_delete_login_profile() {
        assert_eq!(
            departure_of(ok(IAM_DELETE_LOGIN_PROFILE)),
            DepartureEvent {
                user: "carol".to_owned(),
                user_id: None,
                event_id: "3c4d5e6f-3333-4a1b-8c9d-0e1f2a3b4c5e".to_owned(),
                time: ts("2024-06-11T09:30:00Z"),
                source: "aws.iam".to_owned(),
                account: Some(ACCOUNT.to_owned()),
            }
        );
    }

    #[test]
    fn identity_center_disable_user_falls_back_to_user_id() {
        assert_eq!(
            departure_of(ok(SSO_DISABLE_USER)),
            DepartureEvent {
                user: "93670dc30f-6d321996-eab8-4d2e-9f41-0db53b051a5b".to_owned(),
                user_id: Some("93670dc30f-6d321996-eab8-4d2e-9f41-0db53b051a5b".to_owned()),
                event_id: "02ff70e0-d0ac-4284-bb43-7166c247bd52".to_owned(),
                time: ts("2024-06-12T15:36:48Z"),
                source: "aws.sso-directory".to_owned(),
                account: Some(ACCOUNT.to_owned()),
            }
        );
    }

    #[test]
    fn identity_store_delete_user_prefers_user_name() {
        assert_eq!(
            departure_of(ok(IDENTITYSTORE_DELETE_USER)),
            DepartureEvent {
                user: "erin@example.com".to_owned(),
                user_id: Some("22c554e4-c091-708a-0ec5-08b46733f1a2".to_owned()),
                event_id: "d1678273-85cf-4a64-a14e-d0f58a35497a".to_owned(),
                time: ts("2024-06-13T10:00:01Z"),
                source: "aws.identitystore".to_owned(),
                account: Some(ACCOUNT.to_owned()),
            }
        );
        let no_ids = with(
            IDENTITYSTORE_DELETE_USER,
            "/detail/requestParameters",
            serde_json::json!({"identityStoreId": "d-93670dc30f"}),
        );
        assert_rejected(
            rej(&no_ids),
            Rejection::MissingField("detail.requestParameters.userId"),
            "missing_field",
        );
    }

    #[test]
    fn custom_hr_departure_uses_pointer_and_envelope_id() {
        let n = ok(HR_DEPARTURE);
        assert_eq!(n.event_id(), "hr-evt-20240701-0001");
        assert_eq!(n.kind_label(), "departure");
        assert_eq!(
            departure_of(n),
            DepartureEvent {
                user: "dave.jones".to_owned(),
                user_id: None,
                event_id: "hr-evt-20240701-0001".to_owned(),
                time: ts("2024-07-01T17:30:00Z"),
                source: "com.example.hr".to_owned(),
                account: Some(ACCOUNT.to_owned()),
            }
        );
    }

    #[test]
    fn custom_compromise_with_ticket() {
        let n = ok(COMPROMISE);
        assert_eq!(n.kind_label(), "compromise");
        assert_eq!(
            n,
            Normalized::Compromise(CompromiseEvent {
                secret_id: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/payments/api-key-Xy12Ab"
                    .to_owned(),
                event_id: "sec-evt-20240702-0001".to_owned(),
                time: ts("2024-07-02T03:04:05Z"),
                source: "com.example.security".to_owned(),
                account: Some(ACCOUNT.to_owned()),
                ticket: Some("INC-48213".to_owned()),
                reason: Some("Key found in a public GitHub gist".to_owned()),
            })
        );
    }

    #[test]
    fn compromise_ticket_must_be_inc_digits_and_reason_is_truncated() {
        for bad in [
            serde_json::json!("CHG-1234"),
            serde_json::json!("INC-"),
            serde_json::json!("INC-12a"),
            serde_json::json!("inc-123"),
            serde_json::json!(format!("INC-{}", "9".repeat(40))),
            serde_json::json!(48213),
        ] {
            let body = with(COMPROMISE, "/detail/ticket", bad.clone());
            match ok(&body) {
                Normalized::Compromise(c) => assert_eq!(c.ticket, None, "ticket {bad}"),
                other => panic!("{other:?}"),
            }
        }
        // 600 two-byte characters: truncation counts characters and cuts on a boundary.
        let body = with(COMPROMISE, "/detail/reason", Value::String("é".repeat(600)));
        match ok(&body) {
            Normalized::Compromise(c) => assert_eq!(c.reason, Some("é".repeat(500))),
            other => panic!("{other:?}"),
        }
        let body = without(COMPROMISE, "/detail/reason");
        match ok(&body) {
            Normalized::Compromise(c) => assert_eq!(c.reason, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_message_truncated_to_2000_chars() {
        let body = with(
            ROTATION_FAILED,
            "/detail/errorMessage",
            Value::String("ü".repeat(5000)),
        );
        let r = rotation_of(ok(&body));
        assert_eq!(r.error_message, Some("ü".repeat(2000)));
        // A non-string error message is decoration: dropped, the trigger survives.
        let body = with(
            ROTATION_FAILED,
            "/detail/errorMessage",
            serde_json::json!({"x": 1}),
        );
        assert_eq!(rotation_of(ok(&body)).error_message, None);
    }

    #[test]
    fn empty_allowlist_accepts_any_account() {
        let open = NormalizeConfig {
            allowed_accounts: Vec::new(),
            ..cfg()
        };
        let body = with(
            IAM_DELETE_USER,
            "/account",
            serde_json::json!("999988887777"),
        );
        let d = departure_of(normalize_sqs_body(&body, &open).unwrap());
        assert_eq!(d.account, Some("999988887777".to_owned()));
        let body = without(IAM_DELETE_USER, "/account");
        assert_eq!(
            departure_of(normalize_sqs_body(&body, &open).unwrap()).account,
            None
        );
    }

    // ---- CloudTrail records (LookupEvents) ----

    fn detail_of(fixture: &str) -> String {
        let v: Value = serde_json::from_str(fixture).unwrap();
        v["detail"].to_string()
    }

    #[test]
    fn cloudtrail_record_rotation_failed() {
        let n = normalize_cloudtrail_record(&detail_of(ROTATION_FAILED), &cfg()).unwrap();
        assert_eq!(
            rotation_of(n),
            RotationEvent {
                kind: RotationKind::Failed,
                secret_id:
                    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db/orders-AbCdEf"
                        .to_owned(),
                event_id: "0a1b2c3d-1111-4e2f-9a3b-4c5d6e7f8091".to_owned(),
                time: ts("2024-05-02T10:15:27Z"),
                error_message: Some(
                    "testSecret failed: password authentication failed for user \"orders_app\""
                        .to_owned()
                ),
                account: Some(ACCOUNT.to_owned()),
                region: Some("eu-west-1".to_owned()),
            }
        );
    }

    #[test]
    fn cloudtrail_record_delete_user() {
        let n = normalize_cloudtrail_record(&detail_of(IAM_DELETE_USER), &cfg()).unwrap();
        assert_eq!(
            departure_of(n),
            DepartureEvent {
                user: "bob.builder".to_owned(),
                user_id: None,
                event_id: "3c4d5e6f-2222-4a1b-8c9d-0e1f2a3b4c5d".to_owned(),
                time: ts("2024-06-10T08:00:01Z"),
                source: "aws.iam".to_owned(),
                account: Some(ACCOUNT.to_owned()),
            }
        );
    }

    #[test]
    fn cloudtrail_record_identity_center_and_rejections() {
        let n = normalize_cloudtrail_record(&detail_of(SSO_DISABLE_USER), &cfg()).unwrap();
        assert_eq!(departure_of(n).source, "aws.sso-directory");

        let rec = detail_of(IAM_DELETE_USER);
        let foreign = with(
            &rec,
            "/recipientAccountId",
            serde_json::json!("444455556666"),
        );
        assert_rejected(
            normalize_cloudtrail_record(&foreign, &cfg()).unwrap_err(),
            Rejection::ForeignAccount("444455556666".to_owned()),
            "foreign_account",
        );
        let no_time = without(&rec, "/eventTime");
        assert_rejected(
            normalize_cloudtrail_record(&no_time, &cfg()).unwrap_err(),
            Rejection::MissingField("eventTime"),
            "missing_field",
        );
        let s3 = with(&rec, "/eventSource", serde_json::json!("s3.amazonaws.com"));
        assert_rejected(
            normalize_cloudtrail_record(&s3, &cfg()).unwrap_err(),
            Rejection::IgnoredEventName("DeleteUser".to_owned()),
            "ignored_event",
        );
        let no_user = without(&rec, "/requestParameters/userName");
        assert_rejected(
            normalize_cloudtrail_record(&no_user, &cfg()).unwrap_err(),
            Rejection::MissingField("requestParameters.userName"),
            "missing_field",
        );
        // An envelope is not a record: with an allowlist it fails the account gate
        // (no recipientAccountId), without one it has no eventSource.
        assert_rejected(
            normalize_cloudtrail_record(IAM_DELETE_USER, &cfg()).unwrap_err(),
            Rejection::MissingField("recipientAccountId"),
            "missing_field",
        );
        let open = NormalizeConfig {
            allowed_accounts: Vec::new(),
            ..cfg()
        };
        assert_rejected(
            normalize_cloudtrail_record(IAM_DELETE_USER, &open).unwrap_err(),
            Rejection::MissingField("eventSource"),
            "missing_field",
        );
    }

    // ---- one test per rejection reason (at least) ----

    #[test]
    fn too_large_is_checked_before_parsing() {
        let small = NormalizeConfig {
            max_body_bytes: 64,
            ..cfg()
        };
        let garbage = "x".repeat(65);
        assert_rejected(
            normalize_sqs_body(&garbage, &small).unwrap_err(),
            Rejection::TooLarge { size: 65, max: 64 },
            "too_large",
        );
        // Exactly at the limit is parsed (and here fails as JSON instead).
        let at_limit = "x".repeat(64);
        assert_eq!(
            normalize_sqs_body(&at_limit, &small).unwrap_err().reason(),
            "not_json"
        );
        // The default limit is the SQS maximum, in bytes.
        let big = format!("\"{}\"", "a".repeat(DEFAULT_MAX_BODY_BYTES));
        assert_rejected(
            rej(&big),
            Rejection::TooLarge {
                size: DEFAULT_MAX_BODY_BYTES + 2,
                max: DEFAULT_MAX_BODY_BYTES,
            },
            "too_large",
        );
    }

    #[test]
    fn not_json() {
        let r = rej(&IAM_DELETE_USER[..100]);
        assert!(matches!(r, Rejection::NotJson(_)), "{r:?}");
        assert_eq!(r.reason(), "not_json");
        assert_eq!(rej("").reason(), "not_json");
    }

    #[test]
    fn deep_nesting_is_not_json_without_stack_overflow() {
        let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let r = rej(&arrays);
        assert!(
            matches!(&r, Rejection::NotJson(m) if m.contains("recursion limit")),
            "{r:?}"
        );
        let objects = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert_eq!(rej(&objects).reason(), "not_json");
        assert_eq!(
            normalize_cloudtrail_record(&arrays, &cfg())
                .unwrap_err()
                .reason(),
            "not_json"
        );
    }

    #[test]
    fn not_an_object() {
        for body in ["[1,2]", "null", "42", "\"aws.iam\"", "true"] {
            assert_rejected(rej(body), Rejection::NotAnObject, "not_object");
        }
    }

    #[test]
    fn missing_fields() {
        assert_rejected(
            rej(&without(ROTATION_FAILED, "/detail/eventID")),
            Rejection::MissingField("detail.eventID"),
            "missing_field",
        );
        assert_rejected(
            rej(&with(
                IAM_DELETE_USER,
                "/detail/eventID",
                serde_json::json!("  "),
            )),
            Rejection::MissingField("detail.eventID"),
            "missing_field",
        );
        assert_rejected(
            rej(&without(IAM_DELETE_USER, "/detail")),
            Rejection::MissingField("detail"),
            "missing_field",
        );
        assert_rejected(
            rej(&without(IAM_DELETE_USER, "/source")),
            Rejection::MissingField("source"),
            "missing_field",
        );
        let no_secret = without(ROTATION_FAILED, "/detail/additionalEventData");
        assert_rejected(
            rej(&no_secret),
            Rejection::MissingField("detail.additionalEventData.SecretId"),
            "missing_field",
        );
        assert_rejected(
            rej(&without(HR_DEPARTURE, "/detail/employee/login")),
            Rejection::MissingField("user_pointer"),
            "missing_field",
        );
        assert_rejected(
            rej(&with(COMPROMISE, "/detail/secret", serde_json::json!(""))),
            Rejection::MissingField("secret_pointer"),
            "missing_field",
        );
        assert_rejected(
            rej(&without(HR_DEPARTURE, "/id")),
            Rejection::MissingField("id"),
            "missing_field",
        );
        // With an allowlist, an event that names no account cannot be admitted.
        assert_rejected(
            rej(&without(IAM_DELETE_USER, "/account")),
            Rejection::MissingField("account"),
            "missing_field",
        );
        // No eventTime and no envelope time.
        let body = without(ROTATION_ABANDONED_ENVELOPE_RESOURCES, "/time");
        assert_rejected(rej(&body), Rejection::MissingField("time"), "missing_field");
    }

    #[test]
    fn wrong_types() {
        assert_rejected(
            rej(&with(IAM_DELETE_USER, "/source", serde_json::json!(5))),
            Rejection::WrongType {
                field: "source",
                expected: "a string",
            },
            "wrong_type",
        );
        assert_rejected(
            rej(&with(
                IAM_DELETE_USER,
                "/detail",
                serde_json::json!("DeleteUser"),
            )),
            Rejection::WrongType {
                field: "detail",
                expected: "an object",
            },
            "wrong_type",
        );
        assert_rejected(
            rej(&with(
                IAM_DELETE_USER,
                "/account",
                serde_json::json!("1111-2222-3333"),
            )),
            Rejection::WrongType {
                field: "account",
                expected: "a 12-digit account id",
            },
            "wrong_type",
        );
        assert_rejected(
            rej(&with(
                IAM_DELETE_USER,
                "/detail/requestParameters/userName",
                serde_json::json!(["bob"]),
            )),
            Rejection::WrongType {
                field: "detail.requestParameters.userName",
                expected: "a string",
            },
            "wrong_type",
        );
        assert_rejected(
            rej(&with(
                HR_DEPARTURE,
                "/detail/employee/login",
                serde_json::json!({"a": 1}),
            )),
            Rejection::WrongType {
                field: "user_pointer",
                expected: "a string",
            },
            "wrong_type",
        );
        assert_rejected(
            rej(&with(
                ROTATION_FAILED,
                "/detail/eventTime",
                serde_json::json!(1714644927),
            )),
            Rejection::WrongType {
                field: "detail.eventTime",
                expected: "an RFC 3339 string",
            },
            "wrong_type",
        );
    }

    #[test]
    fn foreign_account() {
        assert_rejected(
            rej(&with(
                ROTATION_FAILED,
                "/account",
                serde_json::json!("444455556666"),
            )),
            Rejection::ForeignAccount("444455556666".to_owned()),
            "foreign_account",
        );
        // The gate applies to custom sources too.
        assert_rejected(
            rej(&with(
                HR_DEPARTURE,
                "/account",
                serde_json::json!("444455556666"),
            )),
            Rejection::ForeignAccount("444455556666".to_owned()),
            "foreign_account",
        );
    }

    #[test]
    fn unconfigured_source() {
        let body = with(
            HR_DEPARTURE,
            "/source",
            serde_json::json!("com.example.payroll"),
        );
        assert_rejected(
            rej(&body),
            Rejection::UnconfiguredSource {
                event_source: "com.example.payroll".to_owned(),
                detail_type: "Employee Departed".to_owned(),
            },
            "unconfigured_source",
        );
        // A known source with an unconfigured detail-type is matched on the pair, not the source.
        let body = with(
            HR_DEPARTURE,
            "/detail-type",
            serde_json::json!("Employee Hired"),
        );
        assert_eq!(rej(&body).reason(), "unconfigured_source");
        // aws.* that is not a CloudTrail event (e.g. an EC2 notification) is unconfigured.
        let body = with(
            &with(HR_DEPARTURE, "/source", serde_json::json!("aws.ec2")),
            "/detail-type",
            serde_json::json!("EC2 Instance State-change Notification"),
        );
        assert_eq!(rej(&body).reason(), "unconfigured_source");
        // Echoed strings are bounded.
        let body = with(HR_DEPARTURE, "/source", Value::String("s".repeat(10_000)));
        match rej(&body) {
            Rejection::UnconfiguredSource { event_source, .. } => {
                assert_eq!(event_source.chars().count(), 128)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ignored_events() {
        let create = with(
            IAM_DELETE_USER,
            "/detail/eventName",
            serde_json::json!("CreateUser"),
        );
        assert_rejected(
            rej(&create),
            Rejection::IgnoredEventName("CreateUser".to_owned()),
            "ignored_event",
        );
        // A refused DeleteUser removed nobody.
        let failed = with(
            IAM_DELETE_USER,
            "/detail/errorCode",
            serde_json::json!("AccessDenied"),
        );
        assert_rejected(
            rej(&failed),
            Rejection::IgnoredEventName("DeleteUser failed: AccessDenied".to_owned()),
            "ignored_event",
        );
        let failed_sso = with(
            SSO_DISABLE_USER,
            "/detail/errorCode",
            serde_json::json!("ResourceNotFoundException"),
        );
        assert_eq!(rej(&failed_sso).reason(), "ignored_event");
        // Secrets Manager's own API call (not a service event) on the same bus.
        let api = with(
            &with(
                ROTATION_FAILED,
                "/detail-type",
                serde_json::json!(DT_API_CALL),
            ),
            "/detail/eventName",
            serde_json::json!("RotateSecret"),
        );
        assert_rejected(
            rej(&api),
            Rejection::IgnoredEventName("RotateSecret".to_owned()),
            "ignored_event",
        );
        // A service event we have no use for.
        let other = with(
            ROTATION_FAILED,
            "/detail/eventName",
            serde_json::json!("ReplicationSucceeded"),
        );
        assert_eq!(rej(&other).reason(), "ignored_event");
        // Any other AWS service's CloudTrail call.
        let s3 = with(
            &with(IAM_DELETE_USER, "/source", serde_json::json!("aws.s3")),
            "/detail/eventName",
            serde_json::json!("PutObject"),
        );
        assert_rejected(
            rej(&s3),
            Rejection::IgnoredEventName("PutObject".to_owned()),
            "ignored_event",
        );
        let enable = with(
            SSO_DISABLE_USER,
            "/detail/eventName",
            serde_json::json!("EnableUser"),
        );
        assert_eq!(rej(&enable).reason(), "ignored_event");
    }

    #[test]
    fn bad_time() {
        assert_rejected(
            rej(&with(
                ROTATION_FAILED,
                "/detail/eventTime",
                serde_json::json!("yesterday"),
            )),
            Rejection::BadTime("yesterday".to_owned()),
            "bad_time",
        );
        assert_rejected(
            rej(&with(
                HR_DEPARTURE,
                "/time",
                serde_json::json!("2024-13-01T00:00:00Z"),
            )),
            Rejection::BadTime("2024-13-01T00:00:00Z".to_owned()),
            "bad_time",
        );
        let long = "9".repeat(1000);
        match rej(&with(HR_DEPARTURE, "/time", Value::String(long))) {
            Rejection::BadTime(echoed) => assert_eq!(echoed.len(), 128),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn field_too_long() {
        let user = |n: usize| {
            with(
                IAM_DELETE_USER,
                "/detail/requestParameters/userName",
                Value::String("u".repeat(n)),
            )
        };
        assert_eq!(departure_of(ok(&user(512))).user.len(), 512);
        assert_rejected(
            rej(&user(513)),
            Rejection::FieldTooLong("detail.requestParameters.userName"),
            "field_too_long",
        );
        // Characters, not bytes: 512 three-byte characters are fine.
        let wide = with(
            IAM_DELETE_USER,
            "/detail/requestParameters/userName",
            Value::String("€".repeat(512)),
        );
        assert_eq!(departure_of(ok(&wide)).user.chars().count(), 512);

        assert_rejected(
            rej(&with(
                IAM_DELETE_USER,
                "/detail/eventID",
                Value::String("e".repeat(129)),
            )),
            Rejection::FieldTooLong("detail.eventID"),
            "field_too_long",
        );
        assert_rejected(
            rej(&with(
                ROTATION_FAILED,
                "/detail/additionalEventData/SecretId",
                Value::String("s".repeat(2049)),
            )),
            Rejection::FieldTooLong("detail.additionalEventData.SecretId"),
            "field_too_long",
        );
        assert_rejected(
            rej(&with(
                HR_DEPARTURE,
                "/detail/employee/login",
                Value::String("l".repeat(513)),
            )),
            Rejection::FieldTooLong("user_pointer"),
            "field_too_long",
        );
        assert_rejected(
            rej(&with(HR_DEPARTURE, "/id", Value::String("i".repeat(129)))),
            Rejection::FieldTooLong("id"),
            "field_too_long",
        );
    }

    #[test]
    fn builtin_pairs_take_precedence_over_custom_sources() {
        let mut c = cfg();
        c.departures.push(CustomSource {
            source: "aws.iam".to_owned(),
            detail_type: DT_API_CALL.to_owned(),
            pointer: "/detail/userIdentity/arn".to_owned(),
        });
        let d = departure_of(normalize_sqs_body(IAM_DELETE_USER, &c).unwrap());
        assert_eq!(d.user, "bob.builder");
    }

    #[test]
    fn labels_are_complete_and_distinct() {
        let all = [
            Rejection::TooLarge { size: 1, max: 0 },
            Rejection::NotJson(String::new()),
            Rejection::NotAnObject,
            Rejection::MissingField("x"),
            Rejection::WrongType {
                field: "x",
                expected: "y",
            },
            Rejection::ForeignAccount(String::new()),
            Rejection::UnconfiguredSource {
                event_source: String::new(),
                detail_type: String::new(),
            },
            Rejection::IgnoredEventName(String::new()),
            Rejection::BadTime(String::new()),
            Rejection::FieldTooLong("x"),
            Rejection::MismatchedPlace {
                field: "account",
                event: String::new(),
                arn: String::new(),
            },
        ];
        let reasons: Vec<&str> = all.iter().map(Rejection::reason).collect();
        assert_eq!(reasons, Rejection::REASONS);
        let kinds: Vec<&str> = [
            RotationKind::Started,
            RotationKind::Succeeded,
            RotationKind::Failed,
            RotationKind::Abandoned,
        ]
        .iter()
        .map(|k| k.label())
        .chain(["departure", "compromise"])
        .chain(
            [
                RequestKind::Rotate,
                RequestKind::Approve,
                RequestKind::Deny,
                RequestKind::Rollback,
            ]
            .iter()
            .map(|k| k.label()),
        )
        .collect();
        assert_eq!(kinds, Normalized::KIND_LABELS);
        assert_eq!(
            Rejection::TooLarge {
                size: 300,
                max: 200
            }
            .to_string(),
            "body is 300 bytes, over the 200-byte limit"
        );
    }

    // ---- hostile corpus ----

    /// 20 valid bodies with unique dedupe ids, cycling through every accepted shape.
    fn valid_bodies() -> Vec<(String, String)> {
        (0..20)
            .map(|i| {
                let (fixture, id_ptr) = VALID[i % VALID.len()];
                let id = format!("valid-{i:04}");
                (with(fixture, id_ptr, Value::String(id.clone())), id)
            })
            .collect()
    }

    /// 1,000 bodies that must all be rejected, ten kinds of hostility.
    fn hostile_bodies() -> Vec<String> {
        let wrong_values = [
            serde_json::json!(42),
            serde_json::json!(["x"]),
            serde_json::json!({"a": "b"}),
            serde_json::json!(true),
            serde_json::json!(-0.5),
        ];
        let required = [
            "/source",
            "/detail-type",
            "/account",
            "/detail",
            "/detail/eventID",
            "/detail/eventName",
            "/detail/eventTime",
            "/detail/requestParameters",
        ];
        (0..1000usize)
            .map(|i| {
                let (fixture, _) = VALID[i % VALID.len()];
                let fixture = fixture.trim();
                match i % 10 {
                    // Truncated JSON: any strict prefix of an object is invalid.
                    0 => fixture[..(i * 7919) % (fixture.len() - 1)].to_owned(),
                    // A required field of the IAM event with the wrong type.
                    1 => with(
                        IAM_DELETE_USER,
                        required[(i / 10) % required.len()],
                        wrong_values[(i / 80) % wrong_values.len()].clone(),
                    ),
                    // Huge strings where bounded ones are required.
                    2 => match (i / 10) % 4 {
                        0 => with(
                            IAM_DELETE_USER,
                            "/detail/requestParameters/userName",
                            Value::String("u".repeat(513 + i)),
                        ),
                        1 => with(
                            ROTATION_FAILED,
                            "/detail/eventID",
                            Value::String("e".repeat(129 + i)),
                        ),
                        2 => with(
                            ROTATION_FAILED,
                            "/detail/additionalEventData/SecretId",
                            Value::String("s".repeat(2049 + i)),
                        ),
                        _ => with(
                            HR_DEPARTURE,
                            "/detail/employee/login",
                            Value::String("l".repeat(513 + i)),
                        ),
                    },
                    // Deep nesting, beyond the recursion limit.
                    3 => {
                        let depth = 129 + i * 10;
                        if i % 20 == 3 {
                            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
                        } else {
                            format!("{}null{}", "{\"detail\":".repeat(depth), "}".repeat(depth))
                        }
                    }
                    // Foreign accounts.
                    4 => with(
                        fixture,
                        "/account",
                        Value::String(format!("{:012}", 200_000_000_000u64 + i as u64)),
                    ),
                    // Unconfigured sources.
                    5 => with(fixture, "/source", Value::String(format!("com.evil.{i}"))),
                    // Not objects / not JSON at all.
                    6 => match (i / 10) % 5 {
                        0 => format!("not json {i}"),
                        1 => String::new(),
                        2 => format!("[{i}]"),
                        3 => format!("\"{i}\""),
                        _ => "\u{0}\u{feff}{".to_owned(),
                    },
                    // AWS calls we do not act on, and failed departures.
                    7 => match (i / 10) % 3 {
                        0 => with(
                            IAM_DELETE_USER,
                            "/detail/eventName",
                            serde_json::json!("CreateUser"),
                        ),
                        1 => with(
                            IAM_DELETE_USER,
                            "/detail/errorCode",
                            serde_json::json!("NoSuchEntity"),
                        ),
                        _ => with(
                            ROTATION_FAILED,
                            "/detail/eventName",
                            serde_json::json!("PutSecretValue"),
                        ),
                    },
                    // Bad times.
                    8 => with(
                        ROTATION_FAILED,
                        "/detail/eventTime",
                        Value::String(format!("2024-02-{}T00:00:00Z", 30 + i % 9)),
                    ),
                    // Missing required fields.
                    _ => without(
                        IAM_DELETE_USER,
                        ["/source", "/detail-type", "/detail", "/account"][(i / 10) % 4],
                    ),
                }
            })
            .collect()
    }

    #[test]
    fn thousand_hostile_bodies_and_twenty_valid_ones() {
        let valid = valid_bodies();
        let hostile = hostile_bodies();
        assert_eq!(hostile.len(), 1000);
        // Interleave so acceptance does not depend on position.
        let mut bodies: Vec<String> = hostile.clone();
        for (k, (body, _)) in valid.iter().enumerate() {
            bodies.insert(k * 51, body.clone());
        }
        let mut accepted: Vec<String> = Vec::new();
        let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
        for body in &bodies {
            match normalize_sqs_body(body, &cfg()) {
                Ok(n) => accepted.push(n.event_id().to_owned()),
                Err(r) => *reasons.entry(r.reason()).or_default() += 1,
            }
        }
        let mut expected: Vec<String> = valid.into_iter().map(|(_, id)| id).collect();
        accepted.sort();
        expected.sort();
        assert_eq!(accepted, expected);
        assert_eq!(reasons.values().sum::<usize>(), 1000);
        // Every kind of hostility landed in its own bucket, not one catch-all.
        for reason in [
            "not_json",
            "not_object",
            "missing_field",
            "wrong_type",
            "foreign_account",
            "unconfigured_source",
            "ignored_event",
            "bad_time",
            "field_too_long",
        ] {
            assert!(
                reasons.get(reason).copied().unwrap_or(0) > 0,
                "{reason}: {reasons:?}"
            );
        }
        // The CloudTrail path must not accept any of them either.
        for body in &hostile {
            if let Ok(n) = normalize_cloudtrail_record(body, &cfg()) {
                panic!("record path accepted a hostile body: {n:?}");
            }
        }
    }

    // ---- property tests ----

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "version", "id", "detail-type", "source", "account", "time", "region", "resources",
                "detail", "eventName", "eventID", "eventTime", "eventSource", "errorCode",
                "errorMessage", "additionalEventData", "SecretId", "serviceEventDetails", "arn",
                "aRN", "ARN", "requestParameters", "userName", "userId", "recipientAccountId",
                "employee", "login", "secret", "ticket", "reason",
            ])
            .prop_map(str::to_owned),
            1 => ".{0,12}",
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            ".{0,24}".prop_map(Value::String),
            prop::sample::select(vec![
                "aws.iam",
                "aws.secretsmanager",
                "aws.sso-directory",
                "aws.identitystore",
                "com.example.hr",
                "com.example.security",
                DT_API_CALL,
                DT_SERVICE_EVENT,
                "Employee Departed",
                "Secret Compromised",
                "DeleteUser",
                "DisableUser",
                "DeleteLoginProfile",
                "RotationFailed",
                "RotationStarted",
                ACCOUNT,
                "2024-05-02T10:15:27Z",
                "iam.amazonaws.com",
                "secretsmanager.amazonaws.com",
                "INC-1",
                "",
                " ",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(6, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Pointers into the fixtures (some absent in some fixtures: then the value is inserted at
    /// the parent if it exists).
    const MUTATION_POINTERS: [&str; 16] = [
        "/source",
        "/detail-type",
        "/account",
        "/id",
        "/time",
        "/region",
        "/resources",
        "/detail",
        "/detail/eventName",
        "/detail/eventID",
        "/detail/eventTime",
        "/detail/errorCode",
        "/detail/additionalEventData",
        "/detail/requestParameters",
        "/detail/employee",
        "/detail/secret",
    ];

    fn mutated(fixture: &str, pointer: &str, value: Option<Value>) -> String {
        let mut v: Value = serde_json::from_str(fixture).unwrap();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        if let Some(Value::Object(o)) = v.pointer_mut(parent) {
            match value {
                Some(val) => {
                    o.insert(key.to_owned(), val);
                }
                None => {
                    o.remove(key);
                }
            }
        }
        v.to_string()
    }

    /// What every accepted result must satisfy, whatever went in.
    fn check_accepted(n: &Normalized) {
        let id = n.event_id();
        assert!(!id.trim().is_empty());
        assert!(id.chars().count() <= MAX_EVENT_ID_CHARS);
        assert!(Normalized::KIND_LABELS.contains(&n.kind_label()));
        match n {
            Normalized::Rotation(r) => {
                assert!(!r.secret_id.trim().is_empty());
                assert!(r.secret_id.chars().count() <= MAX_SECRET_ID_CHARS);
                assert!(
                    r.error_message
                        .as_ref()
                        .is_none_or(|m| m.chars().count() <= MAX_ERROR_MESSAGE_CHARS)
                );
            }
            Normalized::Departure(d) => {
                assert!(!d.user.trim().is_empty());
                assert!(d.user.chars().count() <= MAX_USER_CHARS);
            }
            Normalized::Request(r) => {
                assert!(!r.actor.trim().is_empty());
                assert!(r.actor.chars().count() <= MAX_USER_CHARS);
                assert!(!r.request_id.trim().is_empty());
                assert!(r.request_id.chars().count() <= MAX_EVENT_ID_CHARS);
                assert!(
                    r.reason
                        .as_ref()
                        .is_none_or(|x| x.chars().count() <= MAX_REASON_CHARS)
                );
                assert!(
                    r.claimed_level
                        .as_ref()
                        .is_none_or(|x| x.chars().count() <= 16)
                );
            }
            Normalized::Compromise(c) => {
                assert!(!c.secret_id.trim().is_empty());
                assert!(
                    c.reason
                        .as_ref()
                        .is_none_or(|r| r.chars().count() <= MAX_REASON_CHARS)
                );
                assert!(c.ticket.as_ref().is_none_or(|t| t.starts_with("INC-")));
            }
        }
        let account = match n {
            Normalized::Rotation(r) => &r.account,
            Normalized::Departure(d) => &d.account,
            Normalized::Compromise(c) => &c.account,
            Normalized::Request(r) => &r.account,
        };
        // The test config has an allowlist: nothing else may get through.
        assert_eq!(account.as_deref(), Some(ACCOUNT));
    }

    fn check_rejection(r: &Rejection) {
        assert!(Rejection::REASONS.contains(&r.reason()));
        // Rejections never carry unbounded input.
        assert!(r.to_string().chars().count() < 512, "{r}");
    }

    fn run_both(body: &str) {
        for result in [
            normalize_sqs_body(body, &cfg()),
            normalize_cloudtrail_record(body, &cfg()),
        ] {
            match result {
                Ok(n) => check_accepted(&n),
                Err(r) => check_rejection(&r),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_strings_never_panic(body in any::<String>()) {
            run_both(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(v in json()) {
            run_both(&v.to_string());
        }

        #[test]
        fn mutated_valid_envelopes_never_panic(
            which in 0..VALID.len(),
            pointer in prop::sample::select(MUTATION_POINTERS.to_vec()),
            value in prop::option::weighted(0.8, json()),
        ) {
            let (fixture, _) = VALID[which];
            let body = mutated(fixture, pointer, value);
            run_both(&body);
            // The record path sees the same mutation applied to the bare record.
            let v: Value = serde_json::from_str(&body).unwrap();
            if let Some(detail) = v.get("detail") {
                run_both(&detail.to_string());
            }
        }

        #[test]
        fn truncated_valid_bodies_are_rejected(which in 0..VALID.len(), cut in 0usize..4000) {
            let (fixture, _) = VALID[which];
            let fixture = fixture.trim();
            let body = &fixture[..cut % (fixture.len() - 1)];
            let r = normalize_sqs_body(body, &cfg()).unwrap_err();
            prop_assert_eq!(r.reason(), "not_json");
        }
    }

    fn request_body(detail_type: &str, detail: serde_json::Value) -> String {
        serde_json::json!({
            "version": "0",
            "id": "req-env-1",
            "detail-type": detail_type,
            "source": "commandbridge",
            "account": ACCOUNT,
            "time": "2026-11-26T10:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        })
        .to_string()
    }

    #[test]
    fn commandbridge_requests_are_typed_and_their_level_is_only_a_claim() {
        let body = request_body(
            "Rotation Requested",
            serde_json::json!({
                "request_id": "r-1", "secret": "prod/db", "ticket": "CHG-1",
                "reason": "quarterly", "requester": "alice", "level": "L3", "emergency": false
            }),
        );
        let Ok(Normalized::Request(r)) = normalize_sqs_body(&body, &cfg()) else {
            panic!("not a request: {:?}", normalize_sqs_body(&body, &cfg()));
        };
        assert_eq!(r.kind, RequestKind::Rotate);
        assert_eq!((r.request_id.as_str(), r.actor.as_str()), ("r-1", "alice"));
        assert_eq!(r.claimed_level.as_deref(), Some("L3"));
        assert_eq!(r.event_id, "req-env-1");
        let approve = request_body(
            "Rotation Approved",
            serde_json::json!({ "request_id": "r-1", "approver": "bob", "comment": "ok" }),
        );
        assert!(matches!(
            normalize_sqs_body(&approve, &cfg()),
            Ok(Normalized::Request(RequestEvent {
                kind: RequestKind::Approve,
                ..
            }))
        ));
        // A rollback without a request id is its own request.
        let rollback = request_body(
            "Rollback Requested",
            serde_json::json!({ "secret": "prod/db", "ticket": "INC-1", "requester": "carol" }),
        );
        let Ok(Normalized::Request(r)) = normalize_sqs_body(&rollback, &cfg()) else {
            panic!("not a request");
        };
        assert_eq!(r.request_id, "req-env-1");
    }

    #[test]
    fn malformed_requests_are_rejected_with_the_field() {
        let no_requester = request_body(
            "Rotation Requested",
            serde_json::json!({ "request_id": "r-1", "secret": "prod/db" }),
        );
        assert_eq!(
            normalize_sqs_body(&no_requester, &cfg()),
            Err(Rejection::MissingField("requester"))
        );
        let bad_emergency = request_body(
            "Rotation Requested",
            serde_json::json!({ "request_id": "r-1", "secret": "prod/db", "requester": "a", "emergency": "yes" }),
        );
        assert_eq!(
            normalize_sqs_body(&bad_emergency, &cfg())
                .unwrap_err()
                .reason(),
            "wrong_type"
        );
        let mut other = cfg();
        other.requests_source = None;
        let ok = request_body(
            "Rotation Denied",
            serde_json::json!({ "request_id": "r-1", "approver": "b" }),
        );
        assert_eq!(
            normalize_sqs_body(&ok, &other).unwrap_err().reason(),
            "unconfigured_source",
            "without [requests] nobody may request"
        );
    }
}
