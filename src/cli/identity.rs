//! Who runs a command that changes a secret (`rotate`, `rollback`, `approve`, `deny`): the
//! AWS principal of the credentials the CLI runs with, from STS GetCallerIdentity, mapped
//! through `[requests] levels` like any CommandBridge requester. `$USER` is not an
//! identity (anyone sets it); it is recorded as a hint next to the principal.
//!
//! Without `[requests]` nothing is mapped and STS is not asked: the CLI is unrestricted
//! (today's behaviour, and `validate` says so), and the actor is `cli:$USER`.

use super::{CliError, operator};
use crate::config::Level;

/// The caller of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal ARN STS returned (an assumed-role session as STS names it), or the
    /// OS user without `[requests]`.
    pub identity: String,
    /// Its level under `[requests] levels`; `None` without `[requests]` (unrestricted).
    pub level: Option<Level>,
    /// `$SUDO_USER` or `$USER`: a hint, recorded, never trusted.
    pub os_user: String,
}

impl Caller {
    /// The audit log's actor: `cli:` and the identity.
    pub fn actor(&self) -> String {
        format!("cli:{}", self.identity)
    }

    /// Whether the guide lets this caller execute directly (L3, or no policy at all).
    pub fn executes(&self) -> bool {
        self.level.is_none_or(|l| l == Level::L3)
    }

    /// `arn:... (L2)`, for messages.
    pub fn describe(&self) -> String {
        match self.level {
            Some(l) => format!("{} ({})", self.identity, l.as_str()),
            None => self.identity.clone(),
        }
    }
}

/// Who is calling: STS GetCallerIdentity mapped through `[requests] levels`. An STS
/// failure is the command's failure: a policy that cannot tell who asks refuses.
pub async fn identify(app: &crate::daemon::App) -> Result<Caller, CliError> {
    let os_user = operator();
    let Some(rc) = &app.cfg.requests else {
        return Ok(Caller {
            identity: os_user.clone(),
            level: None,
            os_user,
        });
    };
    let me = app.sts.caller_identity().await.map_err(|e| {
        CliError::Failed(format!(
            "cannot tell who you are: STS GetCallerIdentity failed: {e}; [requests] levels judges the AWS identity of the CLI's credentials, so check them (aws sts get-caller-identity)"
        ))
    })?;
    let level = rc.level_of(&me.arn);
    Ok(Caller {
        identity: me.arn,
        level: Some(level),
        os_user,
    })
}
