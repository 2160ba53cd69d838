//! Loopback test double for the CloudTrail `LookupEvents` API.
//!
//! moto has no CloudTrail `LookupEvents`, so integration tests start a
//! [`CloudTrailServer`] and point the real `aws-sdk-cloudtrail` client at
//! [`CloudTrailServer::endpoint`] (`endpoint_url`). The server speaks the AWS
//! JSON 1.1 protocol the SDK uses:
//!
//! * `POST /`, `Content-Type: application/x-amz-json-1.1`, and
//!   `X-Amz-Target: CloudTrail_20131101.LookupEvents` (what aws-sdk-rust sends)
//!   or the long form `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents`
//!   (what botocore / the JS SDK send). Any other target gets
//!   `UnknownOperationException`.
//! * Timestamps (`StartTime`, `EndTime`, `EventTime`) are epoch seconds as JSON
//!   numbers, e.g. `1700000000` or `1700000000.25`. They are compared at
//!   millisecond precision.
//! * Errors are HTTP 400 with body `{"__type": CODE, "message": ...}` and the
//!   `x-amzn-ErrorType: CODE` header (the SDK prefers the header).
//!
//! Semantics: at most one lookup attribute (`EventId`, `EventName`,
//! `ReadOnly`, `Username`, `ResourceType`, `ResourceName`, `EventSource`,
//! `AccessKeyId`); `StartTime`/`EndTime` are inclusive and default to 90 days
//! ago / now; results are newest first; `MaxResults` 1-50 (default 50);
//! `NextToken`s are issued by this server only, may be replayed (SDK retries),
//! and are only valid with the same `LookupAttributes`, `StartTime`, `EndTime`
//! and `EventCategory` as the call that issued them (`MaxResults` may change).
//! A sliding one-second window rate limit (default 2 requests/s across all
//! callers, throttled requests do not count) answers `ThrottlingException`.
//! Every `LookupEvents` request is logged ([`CloudTrailServer::requests`]).
//!
//! The server runs on its own thread with its own tokio runtime, so it can be
//! started from sync code or from inside `#[tokio::test]` and outlives the
//! caller's runtime. It stops when the [`CloudTrailServer`] is dropped.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};

/// `X-Amz-Target` sent by aws-sdk-rust for `LookupEvents`.
pub const LOOKUP_EVENTS_TARGET: &str = "CloudTrail_20131101.LookupEvents";
/// Fully qualified `X-Amz-Target` (botocore, JS SDK); also accepted.
pub const LOOKUP_EVENTS_TARGET_LONG: &str =
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
/// Account used by the record helpers when none can be derived.
pub const DEFAULT_ACCOUNT_ID: &str = "123456789012";
/// Region used by the record helpers when none can be derived.
pub const DEFAULT_REGION: &str = "us-east-1";

const LOOKUP_KEYS: [&str; 8] = [
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
];
const MAX_PAGE: usize = 50;
const HISTORY_DAYS: i64 = 90;

/// One CloudTrail event as `LookupEvents` returns it.
///
/// `ReadOnly` and `AccessKeyId` of the API shape are derived from the record
/// (`record.readOnly`, `record.userIdentity.accessKeyId`), as CloudTrail does.
#[derive(Clone, Debug, PartialEq)]
pub struct TrailEvent {
    pub event_id: String,
    pub event_name: String,
    pub event_source: String,
    pub event_time: DateTime<Utc>,
    pub username: Option<String>,
    /// `(ResourceType, ResourceName)` pairs, e.g. `("AWS::IAM::User", "alice")`.
    pub resources: Vec<(String, String)>,
    /// The full CloudTrail record; `CloudTrailEvent` is its JSON string.
    pub record: Value,
}

fn ct_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME` -> (region, account).
fn arn_region_account(arn: &str) -> (String, String) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let region = parts
        .get(3)
        .filter(|s| !s.is_empty())
        .copied()
        .unwrap_or(DEFAULT_REGION);
    let account = parts
        .get(4)
        .filter(|s| !s.is_empty())
        .copied()
        .unwrap_or(DEFAULT_ACCOUNT_ID);
    (region.to_string(), account.to_string())
}

/// Deterministic request id derived from the event id (records need one).
fn request_id_for(event_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in event_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h >> 4) & 0xfff,
        h & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

impl TrailEvent {
    /// A bare event with a minimal record (`eventVersion`, `eventID`,
    /// `eventName`, `eventSource`, `eventTime`, `awsRegion`,
    /// `recipientAccountId`). Adjust the public fields as needed.
    pub fn new(
        event_id: impl Into<String>,
        event_name: impl Into<String>,
        event_source: impl Into<String>,
        event_time: DateTime<Utc>,
    ) -> TrailEvent {
        let (event_id, event_name, event_source) =
            (event_id.into(), event_name.into(), event_source.into());
        let record = json!({
            "eventVersion": "1.09",
            "eventTime": ct_time(event_time),
            "eventSource": event_source,
            "eventName": event_name,
            "awsRegion": DEFAULT_REGION,
            "eventID": event_id,
            "recipientAccountId": DEFAULT_ACCOUNT_ID,
        });
        TrailEvent {
            event_id,
            event_name,
            event_source,
            event_time,
            username: None,
            resources: Vec::new(),
            record,
        }
    }

    /// A Secrets Manager rotation service event (`RotationStarted`,
    /// `RotationSucceeded`, `RotationFailed`, `RotationAbandoned`) for
    /// `secret_arn`. Region and account come from the ARN. Like the real
    /// events: `eventType` `AwsServiceEvent`, `requestParameters` null,
    /// `additionalEventData.SecretId` = the ARN, no `Resources`, no `Username`.
    pub fn rotation_event(
        event_name: &str,
        secret_arn: &str,
        event_id: &str,
        time: DateTime<Utc>,
    ) -> TrailEvent {
        let (region, account) = arn_region_account(secret_arn);
        let record = json!({
            "eventVersion": "1.09",
            "userIdentity": {
                "accountId": account,
                "invokedBy": "secretsmanager.amazonaws.com",
            },
            "eventTime": ct_time(time),
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event_name,
            "awsRegion": region,
            "sourceIPAddress": "secretsmanager.amazonaws.com",
            "userAgent": "secretsmanager.amazonaws.com",
            "requestParameters": null,
            "responseElements": null,
            "additionalEventData": { "SecretId": secret_arn },
            "requestID": request_id_for(event_id),
            "eventID": event_id,
            "readOnly": false,
            "eventType": "AwsServiceEvent",
            "managementEvent": true,
            "recipientAccountId": account,
            "eventCategory": "Management",
        });
        TrailEvent {
            event_id: event_id.to_string(),
            event_name: event_name.to_string(),
            event_source: "secretsmanager.amazonaws.com".to_string(),
            event_time: time,
            username: None,
            resources: Vec::new(),
            record,
        }
    }

    /// `RotationFailed` for `secret_arn` with `errorMessage` in the record.
    pub fn rotation_failed(
        secret_arn: &str,
        event_id: &str,
        time: DateTime<Utc>,
        error_message: &str,
    ) -> TrailEvent {
        let mut ev = TrailEvent::rotation_event("RotationFailed", secret_arn, event_id, time);
        ev.record["errorMessage"] = Value::String(error_message.to_string());
        ev
    }

    /// IAM `DeleteUser` of `user_name`, called by IAM user `admin`
    /// (access key `AKIAIOSFODNN7EXAMPLE`) in account 123456789012, us-east-1.
    /// `Username` = `admin`, `Resources` = `[("AWS::IAM::User", user_name)]`.
    pub fn iam_delete_user(user_name: &str, event_id: &str, time: DateTime<Utc>) -> TrailEvent {
        let record = json!({
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDAEXAMPLEADMIN00001",
                "arn": format!("arn:aws:iam::{DEFAULT_ACCOUNT_ID}:user/admin"),
                "accountId": DEFAULT_ACCOUNT_ID,
                "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                "userName": "admin",
            },
            "eventTime": ct_time(time),
            "eventSource": "iam.amazonaws.com",
            "eventName": "DeleteUser",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "192.0.2.10",
            "userAgent": "aws-cli/2.15.0",
            "requestParameters": { "userName": user_name },
            "responseElements": null,
            "requestID": request_id_for(event_id),
            "eventID": event_id,
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": DEFAULT_ACCOUNT_ID,
            "eventCategory": "Management",
        });
        TrailEvent {
            event_id: event_id.to_string(),
            event_name: "DeleteUser".to_string(),
            event_source: "iam.amazonaws.com".to_string(),
            event_time: time,
            username: Some("admin".to_string()),
            resources: vec![("AWS::IAM::User".to_string(), user_name.to_string())],
            record,
        }
    }

    /// `record.readOnly`, if the record has it.
    pub fn read_only(&self) -> Option<bool> {
        self.record.get("readOnly").and_then(Value::as_bool)
    }

    /// `record.userIdentity.accessKeyId`, if the record has it.
    pub fn access_key_id(&self) -> Option<&str> {
        self.record
            .pointer("/userIdentity/accessKeyId")
            .and_then(Value::as_str)
    }

    fn matches(&self, key: &str, value: &str) -> bool {
        match key {
            "EventId" => self.event_id == value,
            "EventName" => self.event_name == value,
            "EventSource" => self.event_source == value,
            "ReadOnly" => self.read_only().map(|b| b.to_string()).as_deref() == Some(value),
            "Username" => self.username.as_deref() == Some(value),
            "ResourceType" => self.resources.iter().any(|(t, _)| t == value),
            "ResourceName" => self.resources.iter().any(|(_, n)| n == value),
            "AccessKeyId" => self.access_key_id() == Some(value),
            _ => false,
        }
    }

    fn to_api(&self) -> Value {
        let mut ev = serde_json::Map::new();
        ev.insert("EventId".into(), json!(self.event_id));
        ev.insert("EventName".into(), json!(self.event_name));
        if let Some(ro) = self.read_only() {
            ev.insert("ReadOnly".into(), json!(ro.to_string()));
        }
        if let Some(k) = self.access_key_id() {
            ev.insert("AccessKeyId".into(), json!(k));
        }
        ev.insert("EventTime".into(), epoch_json(self.event_time));
        ev.insert("EventSource".into(), json!(self.event_source));
        if let Some(u) = &self.username {
            ev.insert("Username".into(), json!(u));
        }
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|(t, n)| json!({ "ResourceType": t, "ResourceName": n }))
            .collect();
        ev.insert("Resources".into(), Value::Array(resources));
        ev.insert("CloudTrailEvent".into(), json!(self.record.to_string()));
        Value::Object(ev)
    }
}

fn epoch_json(t: DateTime<Utc>) -> Value {
    let ms = t.timestamp_millis();
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// One `LookupEvents` request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedLookup {
    /// When the server received it.
    pub received_at: DateTime<Utc>,
    /// All `LookupAttributes` sent, as `(AttributeKey, AttributeValue)`.
    pub lookup_attributes: Vec<(String, String)>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub event_category: Option<String>,
    /// Answered with `ThrottlingException`.
    pub throttled: bool,
    /// Error code answered (`ThrottlingException`, `InvalidNextTokenException`, ...).
    pub error: Option<String>,
    /// Number of events returned (0 on error).
    pub returned: usize,
}

impl RecordedLookup {
    /// The first lookup attribute, if any.
    pub fn attribute(&self) -> Option<(&str, &str)> {
        self.lookup_attributes
            .first()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Parameters a `NextToken` is bound to (raw request values, in ms).
#[derive(Clone, Debug, PartialEq)]
struct Fingerprint {
    attributes: Vec<(String, String)>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    category: Option<String>,
}

struct PageToken {
    fingerprint: Fingerprint,
    start_ms: i64,
    end_ms: i64,
    /// Sort key `(event_time_ms, seq)` of the last event returned.
    after: (i64, u64),
}

struct Inner {
    events: Vec<(u64, TrailEvent)>,
    next_seq: u64,
    requests: Vec<RecordedLookup>,
    rate_limit: Option<u32>,
    window: VecDeque<Instant>,
    tokens: HashMap<String, PageToken>,
    token_counter: u64,
    request_counter: u64,
    port: u16,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The CloudTrail test server. See the module docs.
pub struct CloudTrailServer {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CloudTrailServer {
    /// Binds `127.0.0.1:0` and serves on a dedicated thread with its own
    /// tokio runtime. Works from sync code and from inside a tokio runtime.
    pub fn start() -> CloudTrailServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let state: Shared = Arc::new(Mutex::new(Inner {
            events: Vec::new(),
            next_seq: 0,
            requests: Vec::new(),
            rate_limit: Some(2),
            window: VecDeque::new(),
            tokens: HashMap::new(),
            token_counter: 0,
            request_counter: 0,
            port: addr.port(),
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .fallback(any(handle))
            .with_state(state.clone());
        let thread = std::thread::Builder::new()
            .name(format!("cloudtrail-test-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cloudtrail test runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        res = axum::serve(listener, app) => {
                            if let Err(e) = res {
                                eprintln!("cloudtrail test server stopped: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
                // Dropping the runtime here cancels open connections.
            })
            .expect("spawn cloudtrail test server thread");
        CloudTrailServer {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for the SDK's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an event (visible to the next request).
    pub fn push(&self, event: TrailEvent) {
        let mut s = lock(&self.state);
        let seq = s.next_seq;
        s.next_seq += 1;
        s.events.push((seq, event));
    }

    /// Adds several events.
    pub fn push_all(&self, events: impl IntoIterator<Item = TrailEvent>) {
        for e in events {
            self.push(e);
        }
    }

    /// All stored events, in insertion order.
    pub fn events(&self) -> Vec<TrailEvent> {
        lock(&self.state)
            .events
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Every `LookupEvents` request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedLookup> {
        lock(&self.state).requests.clone()
    }

    /// How many requests were answered with `ThrottlingException`.
    pub fn throttled(&self) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.throttled)
            .count()
    }

    /// Forgets the request log (events, tokens and the rate window stay).
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// Requests per sliding second across all callers; `None` = unlimited.
    /// Default `Some(2)` (the real LookupEvents quota). `Some(0)` throttles
    /// every request.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        let mut s = lock(&self.state);
        s.rate_limit = per_second;
        s.window.clear();
    }
}

impl Drop for CloudTrailServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP handling

struct ApiError {
    code: &'static str,
    message: String,
}

fn api_err(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
    }
}

fn request_id(s: &mut Inner) -> String {
    s.request_counter += 1;
    format!("{:08x}-0000-4000-8000-{:012x}", s.port, s.request_counter)
}

fn json_response(
    status: StatusCode,
    request_id: &str,
    body: Value,
    error: Option<&str>,
) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(HeaderName::from_static("x-amzn-requestid"), v);
    }
    if let Some(v) = error.and_then(|code| HeaderValue::from_str(code).ok()) {
        h.insert(HeaderName::from_static("x-amzn-errortype"), v);
    }
    resp
}

fn error_response(request_id: &str, e: &ApiError) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        request_id,
        json!({ "__type": e.code, "message": e.message }),
        Some(e.code),
    )
}

async fn handle(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut s = lock(&state);
    let rid = request_id(&mut s);
    if target != LOOKUP_EVENTS_TARGET && target != LOOKUP_EVENTS_TARGET_LONG {
        let e = api_err(
            "UnknownOperationException",
            format!("this test double only implements LookupEvents (X-Amz-Target: {target:?})"),
        );
        return error_response(&rid, &e);
    }

    let parsed: Result<Value, _> = if body.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice(&body)
    };
    let mut rec = RecordedLookup {
        received_at: Utc::now(),
        lookup_attributes: Vec::new(),
        start_time: None,
        end_time: None,
        max_results: None,
        next_token: None,
        event_category: None,
        throttled: false,
        error: None,
        returned: 0,
    };
    let req = parsed.as_ref().ok();
    let input = req.map(parse_input);
    if let Some(Ok(i)) = &input {
        rec.lookup_attributes = i.attributes.clone();
        rec.start_time = i.start_ms.and_then(ms_to_time);
        rec.end_time = i.end_ms.and_then(ms_to_time);
        rec.max_results = i.max_results;
        rec.next_token = i.next_token.clone();
        rec.event_category = i.category.clone();
    }

    // Throttling comes first, as on AWS; throttled requests do not count.
    let now = Instant::now();
    while s
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        s.window.pop_front();
    }
    if let Some(limit) = s.rate_limit {
        if s.window.len() >= limit as usize {
            rec.throttled = true;
            rec.error = Some("ThrottlingException".into());
            s.requests.push(rec);
            return error_response(&rid, &api_err("ThrottlingException", "Rate exceeded"));
        }
        s.window.push_back(now);
    }

    let result = match (parsed, input) {
        (Err(e), _) => Err(api_err(
            "SerializationException",
            format!("invalid JSON body: {e}"),
        )),
        (Ok(_), Some(Err(e))) => Err(e),
        (Ok(_), Some(Ok(i))) => lookup(&mut s, i),
        (Ok(_), None) => unreachable!(),
    };
    match result {
        Ok(out) => {
            rec.returned = out["Events"].as_array().map_or(0, Vec::len);
            s.requests.push(rec);
            json_response(StatusCode::OK, &rid, out, None)
        }
        Err(e) => {
            rec.error = Some(e.code.to_string());
            s.requests.push(rec);
            error_response(&rid, &e)
        }
    }
}

struct Input {
    attributes: Vec<(String, String)>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    max_results: Option<i64>,
    next_token: Option<String>,
    category: Option<String>,
}

fn ms_to_time(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

fn epoch_ms(v: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let f = n
                .as_f64()
                .ok_or_else(|| api_err("SerializationException", format!("{field}: bad number")))?;
            Ok(Some((f * 1000.0).round() as i64))
        }
        Some(_) => Err(api_err(
            "SerializationException",
            format!("{field} must be epoch seconds (a JSON number)"),
        )),
    }
}

fn opt_string(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(api_err(
            "SerializationException",
            format!("{field} must be a string"),
        )),
    }
}

fn parse_input(v: &Value) -> Result<Input, ApiError> {
    if !v.is_object() {
        return Err(api_err(
            "SerializationException",
            "request body must be a JSON object",
        ));
    }
    let mut attributes = Vec::new();
    match v.get("LookupAttributes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let key = item.get("AttributeKey").and_then(Value::as_str);
                let value = item.get("AttributeValue").and_then(Value::as_str);
                match (key, value) {
                    (Some(k), Some(v)) => attributes.push((k.to_string(), v.to_string())),
                    _ => {
                        return Err(api_err(
                            "SerializationException",
                            "LookupAttribute needs string AttributeKey and AttributeValue",
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(api_err(
                "SerializationException",
                "LookupAttributes must be a list",
            ));
        }
    }
    let max_results =
        match v.get("MaxResults") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
                api_err("SerializationException", "MaxResults must be an integer")
            })?),
            Some(_) => {
                return Err(api_err(
                    "SerializationException",
                    "MaxResults must be a number",
                ));
            }
        };
    Ok(Input {
        attributes,
        start_ms: epoch_ms(v, "StartTime")?,
        end_ms: epoch_ms(v, "EndTime")?,
        max_results,
        next_token: opt_string(v, "NextToken")?,
        category: opt_string(v, "EventCategory")?,
    })
}

fn lookup(s: &mut Inner, i: Input) -> Result<Value, ApiError> {
    if i.attributes.len() > 1 {
        return Err(api_err(
            "InvalidLookupAttributesException",
            "You cannot use more than one lookup attribute per request.",
        ));
    }
    if let Some((k, v)) = i.attributes.first() {
        if !LOOKUP_KEYS.contains(&k.as_str()) {
            return Err(api_err(
                "InvalidLookupAttributesException",
                format!("Invalid AttributeKey: {k}"),
            ));
        }
        if v.is_empty() || v.len() > 2000 {
            return Err(api_err(
                "InvalidLookupAttributesException",
                "AttributeValue must be 1-2000 characters.",
            ));
        }
    }
    let page_size = match i.max_results {
        None => MAX_PAGE,
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(api_err(
                "InvalidMaxResultsException",
                format!("MaxResults must be between 1 and {MAX_PAGE}, got {n}"),
            ));
        }
    };
    let insight = match i.category.as_deref() {
        None => false,
        Some("insight") => true,
        Some(c) => {
            return Err(api_err(
                "InvalidEventCategoryException",
                format!("Invalid EventCategory: {c}"),
            ));
        }
    };
    let fingerprint = Fingerprint {
        attributes: i.attributes.clone(),
        start_ms: i.start_ms,
        end_ms: i.end_ms,
        category: i.category.clone(),
    };
    let (start_ms, end_ms, after) = match &i.next_token {
        Some(tok) => {
            let t = s
                .tokens
                .get(tok)
                .ok_or_else(|| api_err("InvalidNextTokenException", "Invalid NextToken."))?;
            if t.fingerprint != fingerprint {
                return Err(api_err(
                    "InvalidNextTokenException",
                    "NextToken must be used with the same parameters as the request that returned it.",
                ));
            }
            (t.start_ms, t.end_ms, Some(t.after))
        }
        None => {
            let now_ms = Utc::now().timestamp_millis();
            let end_ms = i.end_ms.unwrap_or(now_ms);
            let start_ms = i.start_ms.unwrap_or(now_ms - HISTORY_DAYS * 86_400_000);
            if start_ms > end_ms {
                return Err(api_err(
                    "InvalidTimeRangeException",
                    "Start time must be earlier than or equal to end time.",
                ));
            }
            (start_ms, end_ms, None)
        }
    };

    let attr = i.attributes.first();
    let mut hits: Vec<((i64, u64), &TrailEvent)> = if insight {
        Vec::new()
    } else {
        s.events
            .iter()
            .map(|(seq, e)| ((e.event_time.timestamp_millis(), *seq), e))
            .filter(|((t, _), _)| *t >= start_ms && *t <= end_ms)
            .filter(|(_, e)| attr.is_none_or(|(k, v)| e.matches(k, v)))
            .filter(|(key, _)| after.is_none_or(|a| *key < a))
            .collect()
    };
    // Newest first; ties: most recently pushed first.
    hits.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
    let more = hits.len() > page_size;
    hits.truncate(page_size);
    let events: Vec<Value> = hits.iter().map(|(_, e)| e.to_api()).collect();
    let last_key = hits.last().map(|(k, _)| *k);

    let mut out = json!({ "Events": events });
    if more {
        s.token_counter += 1;
        let token = format!(
            "ct{:x}.{:x}.{:x}",
            s.port,
            s.token_counter,
            last_key.map_or(0, |k| k.0)
        );
        s.tokens.insert(
            token.clone(),
            PageToken {
                fingerprint,
                start_ms,
                end_ms,
                after: last_key.unwrap_or((i64::MIN, 0)),
            },
        );
        out["NextToken"] = Value::String(token);
    }
    Ok(out)
}
