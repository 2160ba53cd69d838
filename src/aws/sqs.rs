//! SQS: the events queue (`[events] queue_url`), for the consumer (`crate::events::sqs`:
//! receive, delete, keep invisible) and for `setup-events` (the queue's ARN and policy).

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, QueueAttributeName,
};

use super::{AwsError, RequestCounter};

/// The SQS client, in the daemon's own account and `[aws] region`.
#[derive(Clone, Debug)]
pub struct Sqs {
    client: Client,
}

impl Sqs {
    pub fn new(sdk: &SdkConfig, counter: &RequestCounter) -> Sqs {
        Sqs {
            client: super::counted_client!(aws_sdk_sqs, sdk, counter),
        }
    }

    /// The queue at `url`.
    pub fn queue(&self, url: &str) -> Queue {
        Queue {
            client: self.client.clone(),
            url: url.to_string(),
        }
    }
}

/// One queue.
#[derive(Clone, Debug)]
pub struct Queue {
    client: Client,
    url: String,
}

/// A received message: what the consumer reads of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub id: Option<String>,
    /// What deletes it or changes its visibility.
    pub receipt_handle: Option<String>,
    pub body: Option<String>,
}

/// The attributes `setup-events` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueAttributes {
    pub arn: Option<String>,
    /// The access policy, JSON as stored.
    pub policy: Option<String>,
}

impl Queue {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Up to `max` messages, waiting up to `wait_seconds` for one (a long poll), hidden
    /// from other receivers for `visibility_seconds`.
    pub async fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
        visibility_seconds: i32,
    ) -> Result<Vec<Message>, AwsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility_seconds)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Message {
                id: m.message_id,
                receipt_handle: m.receipt_handle,
                body: m.body,
            })
            .collect())
    }

    /// Deletes the messages of `entries` (a batch id, unique in the batch, and a receipt
    /// handle each); returns how many SQS failed to delete.
    pub async fn delete(&self, entries: &[(String, String)]) -> Result<usize, AwsError> {
        let entries: Vec<_> = entries
            .iter()
            .filter_map(|(id, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteMessageBatch", e))?;
        Ok(out.failed.len())
    }

    /// Hides the messages of `entries` (a batch id and a receipt handle each) for
    /// `visibility_seconds` from now.
    pub async fn change_visibility(
        &self,
        entries: &[(String, String)],
        visibility_seconds: i32,
    ) -> Result<(), AwsError> {
        let entries: Vec<_> = entries
            .iter()
            .filter_map(|(id, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(handle)
                    .visibility_timeout(visibility_seconds)
                    .build()
                    .ok()
            })
            .collect();
        self.client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ChangeMessageVisibilityBatch", e))?;
        Ok(())
    }

    /// The queue's ARN and access policy.
    pub async fn attributes(&self) -> Result<QueueAttributes, AwsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::Policy)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetQueueAttributes", e))?;
        let mut attrs = out.attributes.unwrap_or_default();
        Ok(QueueAttributes {
            arn: attrs.remove(&QueueAttributeName::QueueArn),
            policy: attrs.remove(&QueueAttributeName::Policy),
        })
    }

    /// Replaces the queue's access policy.
    pub async fn set_policy(&self, policy: &str) -> Result<(), AwsError> {
        self.client
            .set_queue_attributes()
            .queue_url(&self.url)
            .attributes(QueueAttributeName::Policy, policy)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SetQueueAttributes", e))?;
        Ok(())
    }
}
