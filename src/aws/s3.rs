//! S3: the bucket the audit log's anchors go to (`[audit] anchor_bucket`). Three calls:
//! `PutObject` with Object Lock retention in compliance mode (the daemon's anchors),
//! `ListObjectsV2` and `GetObject` (what `rotationd audit --verify --anchors` reads). The
//! wrapper deals in keys and bytes; what an anchor says is `store::anchor`'s.
//!
//! A bucket is addressed path-style (`ENDPOINT/BUCKET/KEY`) when `[aws] endpoint_url`
//! overrides the endpoint: a local S3 (moto, a test double) or a VPC endpoint has no
//! per-bucket host names. Against AWS itself the SDK's virtual-hosted style is kept.

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
use chrono::{DateTime, Utc};

use super::{AwsError, RequestCounter};

/// One bucket, with the S3 client of the daemon's own account and `[aws] region`.
#[derive(Clone, Debug)]
pub struct Bucket {
    client: Client,
    name: String,
}

impl Bucket {
    pub fn new(sdk: &SdkConfig, counter: &RequestCounter, name: &str) -> Bucket {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Bucket {
            client: Client::from_conf(conf),
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `body` at `key`, locked in compliance mode until `retain_until`: nobody, the
    /// account's root included, can delete or overwrite that version before then. S3
    /// requires an integrity checksum with a retention (Content-MD5 or a flexible
    /// checksum): the SDK computes and sends a SHA-256 one.
    pub async fn put_locked(
        &self,
        key: &str,
        body: Vec<u8>,
        retain_until: DateTime<Utc>,
    ) -> Result<(), AwsError> {
        const OP: &str = "PutObject";
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(aws_smithy_types::DateTime::from_secs(
                retain_until.timestamp(),
            ))
            .send()
            .await
            .map_err(|e| {
                let mut err = AwsError::from_sdk(OP, e);
                if err.is_code("InvalidRequest") && err.message.contains("ObjectLock") {
                    err.message = format!(
                        "{}: bucket {} has no Object Lock; anchors need a bucket created with Object Lock enabled",
                        err.message, self.name
                    );
                }
                err
            })?;
        Ok(())
    }

    /// Every key under `prefix`, in S3's (lexicographic) order, all pages.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, AwsError> {
        const OP: &str = "ListObjectsV2";
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(keys),
            }
        }
    }

    /// The object at `key`, whole; at most `limit` bytes (an anchor is a few hundred).
    pub async fn get(&self, key: &str, limit: usize) -> Result<Vec<u8>, AwsError> {
        const OP: &str = "GetObject";
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        if out
            .content_length()
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
        {
            return Err(AwsError {
                operation: OP,
                code: None,
                message: format!(
                    "object {key} in bucket {} is larger than {limit} bytes, so it is not an anchor rotationd wrote",
                    self.name
                ),
                retryable: false,
            });
        }
        let bytes = out.body.collect().await.map_err(|e| AwsError {
            operation: OP,
            code: None,
            message: format!("cannot read object {key}: {e}"),
            retryable: true,
        })?;
        Ok(bytes.into_bytes().to_vec())
    }
}
