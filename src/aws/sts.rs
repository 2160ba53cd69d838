//! STS: `GetCallerIdentity`, who the credentials a CLI command runs with belong to. The
//! CLI maps that identity through `[requests] levels` (`crate::cli`), so that `rotate`,
//! `rollback`, `approve` and `deny` are judged on the AWS principal that would make the
//! calls, not on `$USER`. GetCallerIdentity needs no IAM permission: an explicit deny
//! cannot block it. (The `[[account]]` roles are assumed through STS by the SDK's own
//! provider, in `aws::place_configs`, not here.)

use aws_config::SdkConfig;
use aws_sdk_sts::Client;

use super::{AwsError, RequestCounter};

/// The STS client, with the process's own credentials and `[aws]` settings.
#[derive(Clone, Debug)]
pub struct Sts {
    client: Client,
}

/// What STS says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The principal ARN: `arn:aws:iam::ACCOUNT:user/PATH/NAME` for an IAM user,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` for a role's session (no role path).
    pub arn: String,
    pub account: String,
    /// The unique id (`AIDA...` for a user, `AROA...:SESSION` for a session).
    pub user_id: String,
}

impl Sts {
    pub fn new(sdk: &SdkConfig, counter: &RequestCounter) -> Sts {
        Sts {
            client: super::counted_client!(aws_sdk_sts, sdk, counter),
        }
    }

    /// `GetCallerIdentity`. An answer without an ARN is an error: there is nobody to judge.
    pub async fn caller_identity(&self) -> Result<CallerIdentity, AwsError> {
        const OP: &str = "GetCallerIdentity";
        let out = self
            .client
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        let arn = out
            .arn
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| AwsError::build(OP, "STS answered without an ARN"))?;
        Ok(CallerIdentity {
            arn,
            account: out.account.unwrap_or_default(),
            user_id: out.user_id.unwrap_or_default(),
        })
    }
}
