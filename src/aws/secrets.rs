//! The Secrets Manager operations rotationd uses, and nothing else.
//!
//! Allowed: ListSecrets, DescribeSecret, ListSecretVersionIds, RotateSecret,
//! UpdateSecretVersionStage (the list `docs/iam-policy.json` grants). None of them carries a
//! secret value: rotationd only moves staging labels and asks the rotation function to make
//! a new version.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use chrono::{DateTime, Utc};

use super::{AwsError, Place, Targets};

pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
pub const AWSPENDING: &str = "AWSPENDING";

/// What rotationd knows about one secret, from ListSecrets or DescribeSecret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretInfo {
    pub name: String,
    pub arn: String,
    pub rotation_enabled: bool,
    pub rotation_lambda_arn: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub last_rotated: Option<DateTime<Utc>>,
    pub last_changed: Option<DateTime<Utc>>,
    pub next_rotation: Option<DateTime<Utc>>,
    pub deleted: Option<DateTime<Utc>>,
    pub owning_service: Option<String>,
    /// Version id → staging labels.
    pub versions: BTreeMap<String, Vec<String>>,
    pub tags: BTreeMap<String, String>,
    /// Secrets Manager's own rotation schedule (`RotationRules`), for the drift check.
    pub native: crate::schedule::aws_cron::NativeRules,
}

impl SecretInfo {
    /// The version that holds `label`, if any.
    pub fn version_with(&self, label: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == label))
            .map(|(v, _)| v.as_str())
    }

    pub fn current_version(&self) -> Option<&str> {
        self.version_with(AWSCURRENT)
    }

    pub fn previous_version(&self) -> Option<&str> {
        self.version_with(AWSPREVIOUS)
    }

    /// AWSPENDING on a version that is not also AWSCURRENT: a rotation is running or was
    /// left broken (AWS refuses a new RotateSecret until it is cleared; moto does not).
    pub fn dangling_pending(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| {
                stages.iter().any(|s| s == AWSPENDING) && !stages.iter().any(|s| s == AWSCURRENT)
            })
            .map(|(v, _)| v.as_str())
    }

    /// Managed rotation (owned by another service) or a rotation function configured.
    pub fn rotation_configured(&self) -> bool {
        self.rotation_enabled || self.rotation_lambda_arn.is_some() || self.owning_service.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub id: String,
    pub stages: Vec<String>,
    pub created: Option<DateTime<Utc>>,
}

/// Builds a [`SecretInfo`] from a ListSecrets entry or a DescribeSecret answer: the two SDK
/// types have the same getters (but for the name of the version map) and no common trait.
macro_rules! secret_info {
    ($e:expr, $versions:ident) => {{
        let e = $e;
        SecretInfo {
            name: e.name().unwrap_or_default().to_string(),
            arn: e.arn().unwrap_or_default().to_string(),
            rotation_enabled: e.rotation_enabled().unwrap_or(false),
            rotation_lambda_arn: non_empty(e.rotation_lambda_arn()),
            created: time(e.created_date()),
            last_rotated: time(e.last_rotated_date()),
            last_changed: time(e.last_changed_date()),
            next_rotation: time(e.next_rotation_date()),
            deleted: time(e.deleted_date()),
            owning_service: e.owning_service().map(str::to_string),
            versions: e
                .$versions()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            tags: e
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect(),
            native: crate::schedule::aws_cron::NativeRules {
                enabled: e.rotation_enabled().unwrap_or(false),
                automatically_after_days: e
                    .rotation_rules()
                    .and_then(|r| r.automatically_after_days()),
                schedule_expression: e
                    .rotation_rules()
                    .and_then(|r| r.schedule_expression())
                    .filter(|x| !x.is_empty())
                    .map(str::to_string),
                duration: e
                    .rotation_rules()
                    .and_then(|r| r.duration())
                    .filter(|x| !x.is_empty())
                    .map(str::to_string),
            },
        }
    }};
}

/// moto reports an unset rotation function as `""`; treat it as absent.
fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// ListSecrets filters: each list is one filter whose values are ORed (at most 10, and
/// prefix matches); filters are ANDed. Callers re-check matches locally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub names: Vec<String>,
    pub tag_keys: Vec<String>,
    pub tag_values: Vec<String>,
}

/// At most this many values per ListSecrets filter.
pub const MAX_FILTER_VALUES: usize = 10;

/// A server that hands back the token it was given would page forever.
fn stalled_pagination(operation: &'static str) -> AwsError {
    AwsError {
        operation,
        code: None,
        message: "pagination did not advance (the same NextToken came back); report this endpoint's behaviour".into(),
        retryable: false,
    }
}

/// The Secrets Manager clients (one per account-region), restricted to what rotationd may
/// call. Every call on one secret goes to the client [`Targets::pick`] chooses for its id.
#[derive(Clone, Debug)]
pub struct SecretsManager {
    targets: Targets<Client>,
    /// `[daemon] mode = "observe"`: the changing calls are refused ([`observe_refusal`]).
    observe: bool,
}

/// The error a changing call returns in observe mode: fatal, code `ObserveMode`.
pub fn observe_refusal(operation: &'static str) -> AwsError {
    AwsError {
        operation,
        code: Some(OBSERVE_MODE.into()),
        message: "not sent: rotationd is in observe mode ([daemon] mode = \"observe\"); set mode = \"enforce\" and reload to let it change Secrets Manager".into(),
        retryable: false,
    }
}

/// The `code` of [`observe_refusal`].
pub const OBSERVE_MODE: &str = "ObserveMode";

impl SecretsManager {
    /// One client for every secret (no `[[account]]` tables).
    pub fn new(client: Client) -> Self {
        SecretsManager {
            targets: Targets::single(
                Place::own(client.config().region().map(|r| r.as_ref())),
                client,
            ),
            observe: false,
        }
    }

    pub fn with_targets(targets: Targets<Client>) -> Self {
        SecretsManager {
            targets,
            observe: false,
        }
    }

    /// The same clients, refusing the changing calls when `mode` is observe.
    pub fn in_mode(mut self, mode: crate::config::Mode) -> Self {
        self.observe = mode.is_observe();
        self
    }

    /// Whether the changing calls are refused.
    pub fn is_observing(&self) -> bool {
        self.observe
    }

    /// The changing calls' gate: refused in observe mode, before any request is built.
    fn changing(&self, id: &str, operation: &'static str) -> Result<&Client, AwsError> {
        if self.observe {
            tracing::warn!(secret = %id, operation, "observe mode: not sent");
            return Err(observe_refusal(operation));
        }
        self.client(id, operation)
    }

    /// The account-regions, in config order: what an inventory lists.
    pub fn places(&self) -> Vec<Place> {
        self.targets.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Whether secrets are keyed by ARN (`[[account]]` tables are configured).
    pub fn is_routed(&self) -> bool {
        self.targets.is_routed()
    }

    /// The account-region `id` is in, for labels: the one its calls go to, else what its
    /// ARN says, else the first.
    pub fn place_of(&self, id: &str) -> Place {
        match self.targets.pick(id, "route") {
            Ok((place, _)) => place.clone(),
            Err(_) => Place::of_arn(id)
                .or_else(|| self.places().into_iter().next())
                .unwrap_or_else(|| Place::own(None)),
        }
    }

    fn client(&self, id: &str, operation: &'static str) -> Result<&Client, AwsError> {
        Ok(&self.targets.pick(id, operation)?.1)
    }

    /// The secrets in `place` matching `query` (all of them for the default query),
    /// including those scheduled for deletion, so that a configured secret being deleted is
    /// reported as such rather than missing; pages of 100: ceil(N/100) requests.
    pub async fn list_in(
        &self,
        place: &Place,
        query: &ListQuery,
    ) -> Result<Vec<SecretInfo>, AwsError> {
        const OPERATION: &str = "ListSecrets";
        let Some((_, client)) = self.targets.iter().find(|(p, _)| p == place) else {
            return Err(AwsError {
                operation: OPERATION,
                code: None,
                message: format!(
                    "{place} is not configured; this is a bug in rotationd, please report it"
                ),
                retryable: false,
            });
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client
                .list_secrets()
                .max_results(100)
                .include_planned_deletion(true)
                .set_next_token(token.clone());
            for (key, values) in [
                (FilterNameStringType::Name, &query.names),
                (FilterNameStringType::TagKey, &query.tag_keys),
                (FilterNameStringType::TagValue, &query.tag_values),
            ] {
                if !values.is_empty() {
                    req = req.filters(
                        Filter::builder()
                            .key(key)
                            .set_values(Some(values.clone()))
                            .build(),
                    );
                }
            }
            let page = req
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListSecrets", e))?;
            out.extend(
                page.secret_list()
                    .iter()
                    .map(|e| secret_info!(e, secret_versions_to_stages)),
            );
            // moto answers an empty NextToken on the last page; AWS omits it.
            let next = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if next.is_some() && next == token {
                return Err(stalled_pagination(OPERATION));
            }
            token = next;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn describe(&self, id: &str) -> Result<SecretInfo, AwsError> {
        let d = self
            .client(id, "DescribeSecret")?
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecret", e))?;
        Ok(secret_info!(&d, version_ids_to_stages))
    }

    /// Every version with its creation date (pages of 100).
    pub async fn list_versions(&self, id: &str) -> Result<Vec<VersionInfo>, AwsError> {
        const OPERATION: &str = "ListSecretVersionIds";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client(id, OPERATION)?
                .list_secret_version_ids()
                .secret_id(id)
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListSecretVersionIds", e))?;
            for v in page.versions() {
                out.push(VersionInfo {
                    id: v.version_id().unwrap_or_default().to_string(),
                    stages: v.version_stages().to_vec(),
                    created: time(v.created_date()),
                });
            }
            // moto answers an empty NextToken on the last page; AWS omits it.
            let next = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if next.is_some() && next == token {
                return Err(stalled_pagination(OPERATION));
            }
            token = next;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Starts a rotation with the secret's configured rotation function. The
    /// `ClientRequestToken` becomes the new version's id, so retrying with the same token
    /// never starts a second rotation.
    pub async fn rotate(
        &self,
        id: &str,
        token: &str,
        lambda_arn: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let out = self
            .changing(id, "RotateSecret")?
            .rotate_secret()
            .secret_id(id)
            .client_request_token(token)
            .set_rotation_lambda_arn(lambda_arn.map(str::to_string))
            .rotate_immediately(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("RotateSecret", e))?;
        Ok(out.version_id().map(str::to_string))
    }

    /// Writes Secrets Manager's own schedule (`native_schedule = "sync"`): RotateSecret
    /// with `RotationRules` and `RotateImmediately = false`, so AWS only runs the function's
    /// testSecret step now and rotates at the schedule's next window. The configured
    /// rotation function is passed again because RotateSecret requires one for a secret
    /// that is not managed by another service.
    pub async fn write_schedule(
        &self,
        id: &str,
        lambda_arn: Option<&str>,
        rules: &crate::schedule::aws_cron::AwsRules,
    ) -> Result<(), AwsError> {
        self.changing(id, "RotateSecret")?
            .rotate_secret()
            .secret_id(id)
            .set_rotation_lambda_arn(lambda_arn.map(str::to_string))
            .rotation_rules(
                aws_sdk_secretsmanager::types::RotationRulesType::builder()
                    .schedule_expression(&rules.schedule_expression)
                    .duration(&rules.duration)
                    .build(),
            )
            .rotate_immediately(false)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("RotateSecret", e))?;
        Ok(())
    }

    /// Turns Secrets Manager's own schedule off (`native_schedule = "disable"`). AWS also
    /// cancels a rotation in progress, which can leave the staging labels half moved, so
    /// callers only call this when no AWSPENDING exists and no attempt is running.
    pub async fn cancel_rotation(&self, id: &str) -> Result<(), AwsError> {
        self.changing(id, "CancelRotateSecret")?
            .cancel_rotate_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CancelRotateSecret", e))?;
        Ok(())
    }

    /// Moves `label` to `to_version`, removing it from `from_version` (the Secrets Rotation Guide's rollback:
    /// moving AWSCURRENT also moves AWSPREVIOUS to the version that held AWSCURRENT).
    pub async fn move_label(
        &self,
        id: &str,
        label: &str,
        to_version: &str,
        from_version: &str,
    ) -> Result<(), AwsError> {
        self.changing(id, "UpdateSecretVersionStage")?
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage(label)
            .move_to_version_id(to_version)
            .remove_from_version_id(from_version)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateSecretVersionStage", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose endpoint refuses connections: any request that is sent fails as a
    /// transport error, so a refusal before sending is told apart.
    fn unreachable() -> SecretsManager {
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        SecretsManager::new(Client::from_conf(conf))
    }

    #[tokio::test]
    async fn observe_mode_refuses_every_changing_call_before_sending_it() {
        let sm = unreachable().in_mode(crate::config::Mode::Observe);
        let rules = crate::schedule::aws_cron::AwsRules {
            schedule_expression: "cron(0 2 * * ? *)".into(),
            duration: "4h".into(),
        };
        let errors = [
            sm.rotate("s", "rotationd-t", None).await.map(|_| ()),
            sm.write_schedule("s", None, &rules).await,
            sm.cancel_rotation("s").await,
            sm.move_label("s", AWSCURRENT, "v2", "v1").await,
        ];
        for (e, op) in errors.into_iter().zip([
            "RotateSecret",
            "RotateSecret",
            "CancelRotateSecret",
            "UpdateSecretVersionStage",
        ]) {
            let e = e.expect_err("refused");
            assert_eq!(e.code.as_deref(), Some(OBSERVE_MODE), "{e}");
            assert_eq!(e.operation, op);
            assert!(!e.retryable);
        }
        // Enforce mode sends them (and here meets the closed port), reads are never refused.
        let sm = unreachable().in_mode(crate::config::Mode::Enforce);
        let e = sm.cancel_rotation("s").await.expect_err("no server");
        assert_ne!(e.code.as_deref(), Some(OBSERVE_MODE));
        let observe = unreachable().in_mode(crate::config::Mode::Observe);
        let e = observe.describe("s").await.expect_err("no server");
        assert_ne!(e.code.as_deref(), Some(OBSERVE_MODE));
    }
}
