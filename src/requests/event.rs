//! The shape of a CommandBridge request once the normalizer ([`crate::events::normalize`])
//! has read it from an untrusted body. It lives with the requests, not with the events:
//! the request policy decides on it, and the event consumer only hands it over
//! ([`crate::requests::accept`]), so the dependency goes one way, events → requests.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::audit::Action;

/// CommandBridge's four request events (`[requests] source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RequestKind {
    /// `Rotation Requested`.
    Rotate,
    /// `Rotation Approved`.
    Approve,
    /// `Rotation Denied`.
    Deny,
    /// `Rollback Requested`.
    Rollback,
}

impl RequestKind {
    /// The kind a CommandBridge `detail-type` names; `None` for any other.
    pub(crate) fn from_detail_type(dt: &str) -> Option<Self> {
        match dt {
            "Rotation Requested" => Some(Self::Rotate),
            "Rotation Approved" => Some(Self::Approve),
            "Rotation Denied" => Some(Self::Deny),
            "Rollback Requested" => Some(Self::Rollback),
            _ => None,
        }
    }

    /// The audit action of a decision on such an event: the same words as the label.
    pub fn audit_action(self) -> Action {
        match self {
            Self::Rotate => Action::RotationRequested,
            Self::Approve => Action::RotationApproved,
            Self::Deny => Action::RotationDenied,
            Self::Rollback => Action::RollbackRequested,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Rotate => "rotation_requested",
            Self::Approve => "rotation_approved",
            Self::Deny => "rotation_denied",
            Self::Rollback => "rollback_requested",
        }
    }
}

/// A request, an approval or a denial from an operator tool. Everything in it is a claim:
/// the level in particular is recorded but never trusted (`[requests] levels` decides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestEvent {
    pub kind: RequestKind,
    /// The envelope `id` (the dedupe key).
    pub event_id: String,
    /// `detail.request_id`; a rollback request without one is its own request (the event id).
    pub request_id: String,
    pub secret: Option<String>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    /// `requester` for requests, `approver` for approvals and denials.
    pub actor: String,
    /// The level the event claims (`L1`..`L3`, or whatever it said, bounded).
    pub claimed_level: Option<String>,
    pub emergency: bool,
    pub comment: Option<String>,
    pub time: DateTime<Utc>,
    pub account: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_audited_under_the_request_label() {
        for kind in [
            RequestKind::Rotate,
            RequestKind::Approve,
            RequestKind::Deny,
            RequestKind::Rollback,
        ] {
            assert_eq!(kind.audit_action().as_str(), kind.label());
        }
    }
}
