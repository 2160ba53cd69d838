//! SNS: the one call rotationd makes, `Publish`, for the alert outbox (`crate::alerts`).

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use super::{AwsError, RequestCounter};

/// The SNS client, in the daemon's own account and `[aws] region`.
#[derive(Clone, Debug)]
pub struct Sns {
    client: Client,
}

impl Sns {
    pub fn new(sdk: &SdkConfig, counter: &RequestCounter) -> Sns {
        Sns {
            client: super::counted_client!(aws_sdk_sns, sdk, counter),
        }
    }

    /// Publishes `message` to `topic` with `subject`, and `attributes` as string message
    /// attributes. `structured`: `message` is a JSON object with a body per protocol
    /// (`MessageStructure = "json"`).
    pub async fn publish(
        &self,
        topic: &str,
        subject: &str,
        message: String,
        structured: bool,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        let mut req = self
            .client
            .publish()
            .topic_arn(topic)
            .subject(subject)
            .message(message);
        if structured {
            req = req.message_structure("json");
        }
        for (k, v) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| AwsError::build("Publish", e))?;
            req = req.message_attributes(k, value);
        }
        req.send()
            .await
            .map_err(|e| AwsError::from_sdk("Publish", e))?;
        Ok(())
    }
}
