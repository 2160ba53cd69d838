//! Why a body was not turned into a trigger: the reasons audited and counted in
//! `rotationd_events_rejected_total{reason}` (the module doc of `events::normalize` says
//! why each exists).

/// Why a body was not turned into a trigger. See the module docs for the reason behind each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("body is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not an object")]
    NotAnObject,
    #[error("required field `{0}` is missing, null or empty")]
    MissingField(&'static str),
    #[error("field `{field}` is not {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("account {0} is not in allowed_accounts")]
    ForeignAccount(String),
    // `event_source`, not `source`: thiserror treats a field named `source` as the error's cause.
    #[error("no handler for source {event_source:?} with detail-type {detail_type:?}")]
    UnconfiguredSource {
        event_source: String,
        detail_type: String,
    },
    #[error("event {0:?} is not one rotationd acts on")]
    IgnoredEventName(String),
    #[error("time {0:?} is not RFC 3339")]
    BadTime(String),
    #[error("field `{0}` is longer than allowed")]
    FieldTooLong(&'static str),
    /// The event says it comes from one account or region and names a secret of another:
    /// forged, or misrouted; either way not an order to rotate anything.
    #[error(
        "the event's {field} {event} differs from the {field} {arn} of the secret ARN it names"
    )]
    MismatchedPlace {
        field: &'static str,
        event: String,
        arn: String,
    },
}

impl Rejection {
    /// Every value [`Rejection::reason`] can return, for pre-registering metric labels.
    pub const REASONS: [&'static str; 11] = [
        "too_large",
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "foreign_account",
        "unconfigured_source",
        "ignored_event",
        "bad_time",
        "field_too_long",
        "mismatched_place",
    ];

    /// Label for `rotationd_events_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::NotJson(_) => "not_json",
            Self::NotAnObject => "not_object",
            Self::MissingField(_) => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::ForeignAccount(_) => "foreign_account",
            Self::UnconfiguredSource { .. } => "unconfigured_source",
            Self::IgnoredEventName(_) => "ignored_event",
            Self::BadTime(_) => "bad_time",
            Self::FieldTooLong(_) => "field_too_long",
            Self::MismatchedPlace { .. } => "mismatched_place",
        }
    }
}
