//! Where each field a rejection names sits: under `detail` in an EventBridge envelope, at
//! the top level in a CloudTrail record from `LookupEvents`.

/// Field names reported in rejections. The same CloudTrail record sits under `detail` in an
/// envelope and at the top level from `LookupEvents`; the operator should see which.
pub(super) struct Paths {
    pub(super) event_name: &'static str,
    pub(super) event_id: &'static str,
    pub(super) event_time: &'static str,
    pub(super) additional_secret_id: &'static str,
    pub(super) service_event_details: &'static str,
    pub(super) resources: &'static str,
    pub(super) request_parameters: &'static str,
    pub(super) user_name: &'static str,
    pub(super) user_id: &'static str,
}

pub(super) const ENVELOPE_PATHS: Paths = Paths {
    event_name: "detail.eventName",
    event_id: "detail.eventID",
    event_time: "detail.eventTime",
    additional_secret_id: "detail.additionalEventData.SecretId",
    service_event_details: "detail.serviceEventDetails",
    resources: "resources",
    request_parameters: "detail.requestParameters",
    user_name: "detail.requestParameters.userName",
    user_id: "detail.requestParameters.userId",
};

pub(super) const RECORD_PATHS: Paths = Paths {
    event_name: "eventName",
    event_id: "eventID",
    event_time: "eventTime",
    additional_secret_id: "additionalEventData.SecretId",
    service_event_details: "serviceEventDetails",
    resources: "resources",
    request_parameters: "requestParameters",
    user_name: "requestParameters.userName",
    user_id: "requestParameters.userId",
};
