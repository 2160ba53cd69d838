//! AWS plumbing: every AWS call rotationd makes goes through this module. Every SDK client
//! is built here, from one SDK configuration and with the request counter, and the rest of
//! the crate calls AWS only through the small typed wrappers below, which map the SDK's
//! errors to [`AwsError`]. So the timeouts, the retries and the counting apply to every
//! call, and `docs/iam-policy.json` can be checked against this directory alone.
//!
//! - [`load_sdk_config`] builds one `SdkConfig` from `[aws]`: the default credential chain
//!   (environment, profile, SSO, ECS/EC2 roles), optional region, profile and endpoint,
//!   explicit connect/read timeouts and the SDK's standard retry with exponential backoff.
//!   [`place_configs`] derives one per account-region, with the `[[account]]` role assumed
//!   through STS.
//! - [`Clients::build`] builds the clients of one process; [`dynamodb::Table::new`] the
//!   state table's.
//! - [`RequestCounter`] is an SDK interceptor that counts every HTTP attempt (retries
//!   included) in `rotationd_aws_requests_total{service,operation,outcome}`. It records
//!   into a [`Metrics`] it is given: the metrics do not depend on this module.
//! - [`AwsError`] classifies failures as retryable (throttling, 5xx, timeouts, I/O) or
//!   fatal, because callers branch on it: a retryable error leaves work queued for the
//!   next pass, a fatal one fails the attempt with the reason.
//! - The wrappers, one module per service: [`secrets`] (the few Secrets Manager operations
//!   rotationd is allowed to use: there is deliberately no wrapper for GetSecretValue,
//!   PutSecretValue, BatchGetSecretValue or UpdateSecret, rotationd never reads or writes
//!   secret values), [`cloudwatch`] (alarm states and metric values, read-only), [`logs`]
//!   (authentication errors counted in application logs, no line kept),
//!   [`cloudtrail`] (`LookupEvents`), [`sns`] (`Publish`), [`sqs`] (the events queue),
//!   [`sts`] (`GetCallerIdentity`: who runs a CLI command),
//!   [`eventbridge`] (the bus, its rules and targets), [`identitystore`] (the Identity
//!   Center directory, read-only), [`dynamodb`] (the state table) and [`s3`] (the bucket
//!   of the audit log's anchors: locked writes, list, get).
//! - [`Place`] and [`Targets`]: one client per account-region, routed by a secret's ARN.

/// A client of the SDK crate `$sdk` from the SDK configuration `$conf`, counted by the
/// [`RequestCounter`] `$counter`: how every client is built, so that none goes uncounted.
macro_rules! counted_client {
    ($sdk:ident, $conf:expr, $counter:expr) => {
        $sdk::Client::from_conf(
            $sdk::config::Builder::from($conf)
                .interceptor($counter.clone())
                .build(),
        )
    };
}
use counted_client;

pub mod cloudtrail;
pub mod cloudwatch;
pub mod dynamodb;
pub mod eventbridge;
pub mod identitystore;
pub mod logs;
pub mod s3;
pub mod secrets;
pub mod sns;
pub mod sqs;
pub mod sts;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::AwsConfig;
use crate::metrics::Metrics;

/// Connect timeout: a VPC endpoint or AWS that does not accept a TCP connection in this
/// long is treated as unreachable and retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout: above SQS's 20 s long poll, so that a long poll is not cut short.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per call, including the first, with the SDK's standard exponential backoff.
pub const MAX_ATTEMPTS: u32 = 4;

/// Loads the shared SDK configuration from `[aws]`.
pub async fn load_sdk_config(aws: &AwsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Marks every request's User-Agent with `app/rotationd`, so CloudTrail (and the
        // least-privilege test) can tell rotationd's calls from anyone else's.
        .app_name(AppName::new("rotationd").expect("a valid app name"))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(10)),
        );
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

// Where a client works, and the label of a client without `[[account]]`: they live with the
// ARN (which names the place) so that the metrics can label by them without depending on
// this module. Re-exported because every client here is keyed by one.
pub use crate::arn::{OWN_ACCOUNT, Place};

/// One client per account-region. Without `[[account]]` there is one, used for every id;
/// with them, a secret is addressed by its ARN, which names the client to use (names
/// repeat across accounts, so a bare name is refused rather than guessed).
#[derive(Debug)]
pub struct Targets<C> {
    list: Arc<[(Place, C)]>,
    routed: bool,
}

impl<C> Clone for Targets<C> {
    fn clone(&self) -> Self {
        Targets {
            list: self.list.clone(),
            routed: self.routed,
        }
    }
}

impl<C> Targets<C> {
    /// The implicit single target: every id goes to `client`.
    pub fn single(place: Place, client: C) -> Self {
        Targets {
            list: Arc::from(vec![(place, client)]),
            routed: false,
        }
    }

    /// `[[account]]` targets, routed by ARN. `list` must not be empty (the config
    /// requires regions); an empty list routes nothing.
    pub fn routed(list: Vec<(Place, C)>) -> Self {
        Targets {
            list: Arc::from(list),
            routed: true,
        }
    }

    /// Whether ids must be ARNs (`[[account]]` tables are configured).
    pub fn is_routed(&self) -> bool {
        self.routed
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Place, C)> {
        self.list.iter()
    }

    /// The target that serves `id` (a name or an ARN).
    pub fn pick(&self, id: &str, operation: &'static str) -> Result<&(Place, C), AwsError> {
        if !self.routed {
            return self.list.first().ok_or_else(|| AwsError {
                operation,
                code: None,
                message:
                    "no AWS client is configured; this is a bug in rotationd, please report it"
                        .into(),
                retryable: false,
            });
        }
        let Some(place) = Place::of_arn(id) else {
            return Err(AwsError {
                operation,
                code: None,
                message: format!(
                    "secret {id} is named, not addressed by ARN; with [[account]] tables the same name can exist in several accounts, so use the secret's ARN"
                ),
                retryable: false,
            });
        };
        self.list.iter().find(|(p, _)| *p == place).ok_or_else(|| AwsError {
            operation,
            code: None,
            message: format!(
                "secret {id} is in {place}, which no [[account]] lists; add the region to that account's regions, or the account"
            ),
            retryable: false,
        })
    }
}

/// The session name of every assumed role: CloudTrail in the target account shows
/// `assumed-role/<role>/rotationd`.
pub const SESSION_NAME: &str = "rotationd";

/// One SDK configuration per account-region: each `[[account]]` region, with the account's
/// role assumed through STS (`aws_config::sts::AssumeRoleProvider`, session
/// [`SESSION_NAME`]), or just `sdk` itself (labelled [`OWN_ACCOUNT`]) without `[[account]]`.
///
/// One credentials provider per account is shared by its regions, and the SDK's identity
/// cache keeps the assumed credentials and fetches new ones before they expire, so an
/// account costs one AssumeRole per session (an hour by default), not one per call. A role
/// that cannot be assumed fails only the calls to its account, each with the STS error.
pub async fn place_configs(
    sdk: &SdkConfig,
    accounts: &[crate::config::Account],
) -> Vec<(Place, SdkConfig)> {
    if accounts.is_empty() {
        return vec![(Place::own(sdk.region().map(|r| r.as_ref())), sdk.clone())];
    }
    let mut out = Vec::new();
    for account in accounts {
        let credentials = match &account.role_arn {
            Some(role) => Some(SharedCredentialsProvider::new(
                aws_config::sts::AssumeRoleProvider::builder(role)
                    .session_name(SESSION_NAME)
                    .configure(sdk)
                    .build()
                    .await,
            )),
            None => sdk.credentials_provider(),
        };
        for region in &account.regions {
            let mut conf = sdk.to_builder().region(Region::new(region.clone()));
            conf.set_credentials_provider(credentials.clone());
            let conf = conf.build();
            out.push((
                Place {
                    account: account.id.clone(),
                    region: region.clone(),
                },
                conf,
            ));
        }
    }
    out
}

/// Every AWS client of one process but DynamoDB's (built with the state store, when
/// `[state] backend = "dynamodb"`: [`dynamodb::Table::new`]), all from one SDK
/// configuration (so with its timeouts and retries) and all counted by `counter`.
pub struct Clients {
    /// SNS, SQS and EventBridge live in the daemon's own account and `[aws] region`.
    pub sns: sns::Sns,
    pub sqs: sqs::Sqs,
    pub eventbridge: eventbridge::EventBridge,
    /// STS with the process's own credentials: who runs a CLI command.
    pub sts: sts::Sts,
    /// Secrets Manager, CloudWatch and CloudTrail: one client per account-region.
    pub secrets: secrets::SecretsManager,
    pub cloudwatch: cloudwatch::CloudWatch,
    pub cloudtrail: Vec<cloudtrail::Trail>,
    /// `[identity_center]`'s directory, when configured.
    pub identity_store: Option<identitystore::IdentityStore>,
    /// `[audit] anchor_bucket`, in the daemon's own account and region; `None` without it.
    pub anchors: Option<s3::Bucket>,
}

impl Clients {
    /// The clients for `accounts` (`[[account]]`; none: the daemon's own account and
    /// region). `trail_endpoint` overrides CloudTrail's endpoint only; `anchor_bucket` is
    /// `[audit] anchor_bucket`.
    pub async fn build(
        sdk: &SdkConfig,
        counter: &RequestCounter,
        accounts: &[crate::config::Account],
        trail_endpoint: Option<&str>,
        identity_center: Option<&crate::config::IdentityCenterConfig>,
        anchor_bucket: Option<&str>,
    ) -> anyhow::Result<Clients> {
        let mut sms = Vec::new();
        let mut cws = Vec::new();
        let mut cloudtrail = Vec::new();
        for (place, conf) in place_configs(sdk, accounts).await {
            sms.push((
                place.clone(),
                counted_client!(aws_sdk_secretsmanager, &conf, counter),
            ));
            cws.push((
                place.clone(),
                (
                    counted_client!(aws_sdk_cloudwatch, &conf, counter),
                    counted_client!(aws_sdk_cloudwatchlogs, &conf, counter),
                ),
            ));
            cloudtrail.push(cloudtrail::Trail::new(
                place,
                &conf,
                counter,
                trail_endpoint,
            ));
        }
        let (secrets, cloudwatch) = if accounts.is_empty() {
            let sm = sms
                .pop()
                .map(|(_, c)| c)
                .context("no Secrets Manager client")?;
            let cw = cws.pop().map(|(_, c)| c).context("no CloudWatch client")?;
            (
                secrets::SecretsManager::new(sm),
                cloudwatch::CloudWatch::new(cw.0, cw.1),
            )
        } else {
            (
                secrets::SecretsManager::with_targets(Targets::routed(sms)),
                cloudwatch::CloudWatch::with_targets(Targets::routed(cws))
                    .context("no account-region configured")?,
            )
        };
        Ok(Clients {
            sns: sns::Sns::new(sdk, counter),
            sqs: sqs::Sqs::new(sdk, counter),
            eventbridge: eventbridge::EventBridge::new(sdk, counter),
            sts: sts::Sts::new(sdk, counter),
            secrets,
            cloudwatch,
            cloudtrail,
            identity_store: identity_center.map(|ic| {
                identitystore::IdentityStore::new(
                    sdk,
                    counter,
                    &ic.identity_store_id,
                    ic.region.as_deref(),
                )
            }),
            anchors: anchor_bucket.map(|b| s3::Bucket::new(sdk, counter, b)),
        })
    }
}

/// Counts every attempt of every AWS request by service, operation and outcome.
#[derive(Clone)]
pub struct RequestCounter {
    metrics: Arc<Metrics>,
}

impl RequestCounter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RequestCounter { metrics }
    }
}

impl std::fmt::Debug for RequestCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestCounter")
    }
}

/// The outcome label of one HTTP attempt.
fn outcome_label(status: Option<u16>) -> &'static str {
    match status {
        None => "transport_error",
        Some(s) if s < 300 => "success",
        Some(429) => "throttled",
        Some(s) if s < 500 => "client_error",
        Some(_) => "server_error",
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "rotationd::RequestCounter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let status = context.response().map(|r| r.status().as_u16());
        // AWS JSON protocols report throttling as a 400 whose error type header says so.
        let mut outcome = outcome_label(status);
        let error_type = context
            .response()
            .and_then(|r| r.headers().get("x-amzn-errortype"))
            .map(|v| v.split(':').next().unwrap_or_default());
        if error_type.is_some_and(is_throttling_code) {
            outcome = "throttled";
        }
        self.metrics
            .aws_requests_total
            .with_label_values(&[
                service_label(&service).as_str(),
                operation.as_str(),
                outcome,
            ])
            .inc();
        Ok(())
    }
}

/// `Secrets Manager` → `secretsmanager`: the SDK's service names, as a label value.
fn service_label(service: &str) -> String {
    service
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "ProvisionedThroughputExceededException"
    )
}

/// An AWS call that failed, classified for the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct AwsError {
    pub operation: &'static str,
    /// The AWS error code, e.g. `ResourceNotFoundException`; `None` for transport errors.
    pub code: Option<String>,
    pub message: String,
    /// Throttling, 5xx, timeouts and I/O: the same call may succeed later.
    pub retryable: bool,
}

impl AwsError {
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &err {
            SdkError::TimeoutError(_) => AwsError {
                operation,
                code: None,
                message: "timed out; AWS did not answer in time".into(),
                retryable: true,
            },
            SdkError::DispatchFailure(e) => AwsError {
                operation,
                code: None,
                message: format!(
                    "cannot reach AWS{}: {}",
                    if e.is_user() {
                        " (check credentials and [aws] settings)"
                    } else {
                        ""
                    },
                    DisplayErrorChain(&err)
                ),
                // A user error (no credentials, bad endpoint) will not fix itself, but the
                // daemon keeps retrying it at the reconcile pace and says why each time.
                retryable: !e.is_user(),
            },
            SdkError::ResponseError(_) => AwsError {
                operation,
                code: None,
                message: "unreadable response from AWS".into(),
                retryable: true,
            },
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().map(str::to_string);
                let status = se.raw().status().as_u16();
                let server_side = code.as_deref().is_some_and(|c| {
                    is_throttling_code(c)
                        || matches!(
                            c,
                            "InternalServiceError"
                                | "InternalFailure"
                                | "InternalServerError"
                                | "ServiceUnavailable"
                                | "ServiceUnavailableException"
                        )
                }) || status >= 500
                    || status == 429;
                AwsError {
                    operation,
                    message: e.message().map(str::to_string).unwrap_or_else(|| {
                        code.clone().unwrap_or_else(|| "service error".to_string())
                    }),
                    code,
                    retryable: server_side,
                }
            }
            _ => AwsError {
                operation,
                code: None,
                message: format!("{}", DisplayErrorChain(&err)),
                retryable: false,
            },
        }
    }

    /// An SDK request builder refused its input: a bug (every input is built here), not
    /// worth retrying.
    pub fn build(operation: &'static str, err: impl std::fmt::Display) -> AwsError {
        AwsError {
            operation,
            code: None,
            message: err.to_string(),
            retryable: false,
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn is_not_found(&self) -> bool {
        self.is_code("ResourceNotFoundException")
    }
}

/// Renders an error and its sources on one line.
pub struct DisplayErrorChain<'a, E: std::error::Error>(pub &'a E);

impl<E: std::error::Error> std::fmt::Display for DisplayErrorChain<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels() {
        assert_eq!(outcome_label(Some(200)), "success");
        assert_eq!(outcome_label(Some(400)), "client_error");
        assert_eq!(outcome_label(Some(429)), "throttled");
        assert_eq!(outcome_label(Some(503)), "server_error");
        assert_eq!(outcome_label(None), "transport_error");
    }

    #[test]
    fn service_labels_have_no_spaces() {
        assert_eq!(service_label("Secrets Manager"), "secretsmanager");
        assert_eq!(service_label("SQS"), "sqs");
    }

    #[test]
    fn throttling_codes() {
        assert!(is_throttling_code("ThrottlingException"));
        assert!(is_throttling_code("RequestLimitExceeded"));
        assert!(!is_throttling_code("ResourceNotFoundException"));
    }
}
