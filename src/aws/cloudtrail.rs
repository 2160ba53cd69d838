//! CloudTrail: `LookupEvents` by event name, for the catch-up poller
//! (`crate::events::cloudtrail`). One [`Trail`] per account-region, because CloudTrail's
//! 2 requests/s quota is per account and region.

use aws_config::SdkConfig;
use aws_sdk_cloudtrail::Client;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use chrono::{DateTime, Utc};

use super::{AwsError, Place, RequestCounter};

/// The CloudTrail client of one account-region.
#[derive(Clone, Debug)]
pub struct Trail {
    client: Client,
    place: Place,
}

/// One page of `LookupEvents`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<TrailEvent>,
    /// Where the next page starts; `None` (or empty, as CloudTrail sometimes says) on the
    /// last page.
    pub next_token: Option<String>,
}

/// One event of a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailEvent {
    pub id: Option<String>,
    pub name: Option<String>,
    /// The CloudTrail record, JSON: untrusted input for the normalizer.
    pub record: String,
}

impl Trail {
    /// The client of `place` from its SDK configuration; `endpoint_url` overrides
    /// CloudTrail's endpoint only (`[events.cloudtrail] endpoint_url`).
    pub fn new(
        place: Place,
        conf: &SdkConfig,
        counter: &RequestCounter,
        endpoint_url: Option<&str>,
    ) -> Trail {
        let mut builder =
            aws_sdk_cloudtrail::config::Builder::from(conf).interceptor(counter.clone());
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Trail {
            client: Client::from_conf(builder.build()),
            place,
        }
    }

    pub fn place(&self) -> &Place {
        &self.place
    }

    /// One page (at most 50 events) of the events called `event_name` between `start` and
    /// `end` (whole seconds), from `next_token`.
    pub async fn lookup(
        &self,
        event_name: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        next_token: Option<String>,
    ) -> Result<Page, AwsError> {
        let attribute = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::EventName)
            .attribute_value(event_name)
            .build()
            .map_err(|e| AwsError::build("LookupEvents", e))?;
        let out = self
            .client
            .lookup_events()
            .lookup_attributes(attribute)
            .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(end.timestamp()))
            .max_results(50)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("LookupEvents", e))?;
        Ok(Page {
            events: out
                .events()
                .iter()
                .map(|e| TrailEvent {
                    id: e.event_id().map(str::to_string),
                    name: e.event_name().map(str::to_string),
                    record: e.cloud_trail_event().unwrap_or_default().to_string(),
                })
                .collect(),
            next_token: out.next_token().map(str::to_string),
        })
    }
}
