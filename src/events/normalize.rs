//! TEMPORARY placeholder with the normalizer's API; replaced by the real module.
use chrono::{DateTime, Utc};
pub const IDENTITY_CENTER_SOURCES: &[&str] = &["aws.sso-directory"];
pub const IDENTITY_CENTER_EVENTS: &[&str] = &["DeleteUser", "DisableUser"];
#[derive(Debug, Clone)]
pub struct NormalizeConfig {
    pub allowed_accounts: Vec<String>,
    pub departures: Vec<CustomSource>,
    pub compromises: Vec<CustomSource>,
    pub max_body_bytes: usize,
}
#[derive(Debug, Clone)]
pub struct CustomSource {
    pub source: String,
    pub detail_type: String,
    pub pointer: String,
}
#[derive(Debug, Clone)]
pub enum Normalized {
    Rotation(RotationEvent),
    Departure(DepartureEvent),
    Compromise(CompromiseEvent),
}
#[derive(Debug, Clone, Copy)]
pub enum RotationKind {
    Started,
    Succeeded,
    Failed,
    Abandoned,
}
impl RotationKind {
    pub fn as_str(self) -> &'static str {
        "x"
    }
}
#[derive(Debug, Clone)]
pub struct RotationEvent {
    pub kind: RotationKind,
    pub secret_id: String,
    pub event_id: String,
    pub time: DateTime<Utc>,
    pub error_message: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
}
#[derive(Debug, Clone)]
pub struct DepartureEvent {
    pub user: String,
    pub event_id: String,
    pub time: DateTime<Utc>,
    pub source: String,
    pub account: Option<String>,
}
#[derive(Debug, Clone)]
pub struct CompromiseEvent {
    pub secret_id: String,
    pub event_id: String,
    pub time: DateTime<Utc>,
    pub source: String,
    pub account: Option<String>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
}
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("x")]
    NotJson(String),
}
impl Rejection {
    pub fn reason(&self) -> &'static str {
        "not_json"
    }
}
impl Normalized {
    pub fn event_id(&self) -> &str {
        ""
    }
    pub fn kind_label(&self) -> &'static str {
        ""
    }
}
pub fn normalize_sqs_body(_b: &str, _c: &NormalizeConfig) -> Result<Normalized, Rejection> {
    Err(Rejection::NotJson(String::new()))
}
pub fn normalize_cloudtrail_record(
    _b: &str,
    _c: &NormalizeConfig,
) -> Result<Normalized, Rejection> {
    Err(Rejection::NotJson(String::new()))
}
