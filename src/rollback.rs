//! Rollback: AWSCURRENT back to the AWSPREVIOUS version, the one implementation behind
//! `rotationd rollback`, CommandBridge's `Rollback Requested` ([`crate::requests`]) and the
//! watch's `auto_rollback` ([`crate::validation`]).
//!
//! Decide, then commit: [`plan_rollback`] is pure and reads only a DescribeSecret answer;
//! [`execute`] then makes the one UpdateSecretVersionStage call and verifies, with a second
//! DescribeSecret, that AWSCURRENT *and* AWSPREVIOUS swapped (Secrets Manager moves
//! AWSPREVIOUS by itself when AWSCURRENT moves; a rollback that left either label
//! elsewhere is not done). [`audit_entry`] builds the `rollback` audit entry; each caller
//! commits its audit in its own transaction (the watch with its state change, a request
//! with its answer on the bus), so this module does no store I/O.

use chrono::{DateTime, Utc};

use crate::aws::AwsError;
use crate::aws::secrets::{AWSCURRENT, SecretInfo, SecretsManager};
use crate::store::NewAuditEntry;
use crate::store::audit::{Action, Outcome};

/// The versions a rollback must find when it undoes one known rotation (the watch's
/// `auto_rollback`): anything else means someone moved the labels since, and rolling back
/// then would undo their change rather than the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The version the rotation made AWSCURRENT.
    pub rotated_to: &'a str,
    /// The version it replaced, which must still be AWSPREVIOUS.
    pub rotated_from: &'a str,
}

/// What a rollback will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackPlan {
    /// Move AWSCURRENT from `from` (now current) to `to` (now AWSPREVIOUS).
    Move { from: String, to: String },
    /// AWSCURRENT is already the version before the rotation (a rollback whose answer was
    /// lost, retried): nothing to do. Only with [`Expected`] versions.
    AlreadyDone { version: String },
}

/// Why a rollback is not attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No AWSPREVIOUS (a secret never rotated), or no AWSCURRENT.
    #[error("no AWSPREVIOUS version: there is nothing to roll back to")]
    NothingToRollBackTo,
    /// AWSCURRENT is neither the rotation's version nor the one before it.
    #[error(
        "AWSCURRENT is {} (neither this rotation's version nor the one before it): not rolled back",
        current.as_deref().unwrap_or("absent")
    )]
    NotThisRotation { current: Option<String> },
    /// AWSCURRENT is the rotation's version, but AWSPREVIOUS is not the one it replaced.
    #[error(
        "AWSPREVIOUS is {} instead of {expected}, the version before this rotation: not rolled back",
        previous.as_deref().unwrap_or("absent")
    )]
    PreviousMoved {
        previous: Option<String>,
        expected: String,
    },
}

/// Decides the rollback of a secret described as `info`. Without `expected` (an operator's
/// or an L3's request) the target is whatever AWSPREVIOUS is; with it, only the rotation
/// named is undone.
pub fn plan_rollback(
    info: &SecretInfo,
    expected: Option<Expected<'_>>,
) -> Result<RollbackPlan, Refusal> {
    let current = info.current_version();
    let previous = info.previous_version();
    if let Some(x) = expected {
        if current == Some(x.rotated_from) {
            return Ok(RollbackPlan::AlreadyDone {
                version: x.rotated_from.to_string(),
            });
        }
        if current != Some(x.rotated_to) {
            return Err(Refusal::NotThisRotation {
                current: current.map(str::to_string),
            });
        }
        if previous != Some(x.rotated_from) {
            return Err(Refusal::PreviousMoved {
                previous: previous.map(str::to_string),
                expected: x.rotated_from.to_string(),
            });
        }
    }
    match (current, previous) {
        (Some(from), Some(to)) => Ok(RollbackPlan::Move {
            from: from.to_string(),
            to: to.to_string(),
        }),
        _ => Err(Refusal::NothingToRollBackTo),
    }
}

/// The labels after a rollback, as DescribeSecret reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// AWSCURRENT is the old AWSPREVIOUS and AWSPREVIOUS the old AWSCURRENT.
    pub ok: bool,
    pub current: Option<String>,
    pub previous: Option<String>,
}

impl Verified {
    /// Checks the labels read after moving AWSCURRENT from `from` to `to`.
    pub fn check(after: &SecretInfo, from: &str, to: &str) -> Self {
        Verified {
            ok: after.current_version() == Some(to) && after.previous_version() == Some(from),
            current: after.current_version().map(str::to_string),
            previous: after.previous_version().map(str::to_string),
        }
    }

    /// What is wrong, when not [`Verified::ok`].
    pub fn mismatch(&self) -> String {
        format!(
            "after the rollback AWSCURRENT is {} and AWSPREVIOUS {}; check describe-secret",
            self.current.as_deref().unwrap_or("absent"),
            self.previous.as_deref().unwrap_or("absent")
        )
    }
}

/// Why [`execute`] did not get to a verdict.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RollbackError {
    /// The move itself failed: nothing changed (or the same call may be retried).
    #[error("UpdateSecretVersionStage failed: {0}")]
    Move(AwsError),
    /// The move was accepted but the check could not be read. Retrying the whole rollback
    /// without [`Expected`] versions would roll back again, to the rotation's version.
    #[error("rolled back, but cannot verify: {0}; check describe-secret")]
    Verify(AwsError),
}

/// Moves AWSCURRENT from `from` to `to` (a [`RollbackPlan::Move`]) and reads the labels
/// back. `secret` is the id the plan's DescribeSecret used (a name or an ARN: it routes the
/// call to its account).
pub async fn execute(
    sm: &SecretsManager,
    secret: &str,
    from: &str,
    to: &str,
) -> Result<Verified, RollbackError> {
    sm.move_label(secret, AWSCURRENT, to, from)
        .await
        .map_err(RollbackError::Move)?;
    let after = sm.describe(secret).await.map_err(RollbackError::Verify)?;
    Ok(Verified::check(&after, from, to))
}

/// The `detail` of a `rollback` audit entry once AWSCURRENT was moved: the versions and
/// whether the result was verified.
pub fn audit_detail(from: &str, to: &str, verified: bool) -> serde_json::Value {
    serde_json::json!({ "from": from, "to": to, "verified": verified })
}

/// Who asked for a rollback, for its audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// `cli:USER`, or `rotationd` for the watch.
    pub actor: String,
    /// The secret as the requester named it.
    pub secret: String,
    pub ticket: Option<String>,
    pub reason: Option<String>,
}

/// The `rollback` audit entry with `outcome` (`ok`, `failed`, `refused`, `skipped`).
pub fn audit_entry(
    by: &Requester,
    at: DateTime<Utc>,
    outcome: Outcome,
    detail: serde_json::Value,
) -> NewAuditEntry {
    NewAuditEntry {
        at,
        actor: by.actor.clone(),
        action: Action::Rollback,
        secret: Some(by.secret.clone()),
        ticket: by.ticket.clone(),
        reason: by.reason.clone(),
        outcome,
        detail: Some(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::secrets::AWSPREVIOUS;

    fn secret(labels: &[(&str, &str)]) -> SecretInfo {
        let mut info = SecretInfo::default();
        for (version, label) in labels {
            info.versions
                .entry(version.to_string())
                .or_default()
                .push(label.to_string());
        }
        info
    }

    fn expected<'a>() -> Option<Expected<'a>> {
        Some(Expected {
            rotated_to: "new",
            rotated_from: "old",
        })
    }

    #[test]
    fn a_plain_rollback_moves_awscurrent_to_awsprevious() {
        let info = secret(&[("new", AWSCURRENT), ("old", AWSPREVIOUS)]);
        let plan = plan_rollback(&info, None).unwrap();
        assert_eq!(
            plan,
            RollbackPlan::Move {
                from: "new".into(),
                to: "old".into()
            }
        );
        // The same when it undoes a known rotation.
        assert_eq!(plan_rollback(&info, expected()), Ok(plan));
    }

    #[test]
    fn without_both_labels_there_is_nothing_to_roll_back_to() {
        for labels in [
            &[("v1", AWSCURRENT)][..],
            &[("v1", AWSPREVIOUS)][..],
            &[][..],
        ] {
            let err = plan_rollback(&secret(labels), None).unwrap_err();
            assert_eq!(err, Refusal::NothingToRollBackTo);
            assert_eq!(
                err.to_string(),
                "no AWSPREVIOUS version: there is nothing to roll back to"
            );
        }
    }

    #[test]
    fn a_known_rotation_already_undone_is_done() {
        let info = secret(&[("old", AWSCURRENT), ("new", AWSPREVIOUS)]);
        assert_eq!(
            plan_rollback(&info, expected()),
            Ok(RollbackPlan::AlreadyDone {
                version: "old".into()
            })
        );
    }

    #[test]
    fn labels_moved_by_someone_else_are_not_rolled_back() {
        let info = secret(&[("other", AWSCURRENT), ("new", AWSPREVIOUS)]);
        let err = plan_rollback(&info, expected()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AWSCURRENT is other (neither this rotation's version nor the one before it): not rolled back"
        );
        let info = secret(&[("new", AWSCURRENT), ("other", AWSPREVIOUS)]);
        let err = plan_rollback(&info, expected()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AWSPREVIOUS is other instead of old, the version before this rotation: not rolled back"
        );
        let err = plan_rollback(&secret(&[]), expected()).unwrap_err();
        assert_eq!(err, Refusal::NotThisRotation { current: None });
    }

    #[test]
    fn only_a_swap_of_both_labels_verifies() {
        let swapped = secret(&[("old", AWSCURRENT), ("new", AWSPREVIOUS)]);
        assert!(Verified::check(&swapped, "new", "old").ok);
        // AWSCURRENT moved, but AWSPREVIOUS went elsewhere: not what a rollback leaves.
        let half = secret(&[("old", AWSCURRENT), ("other", AWSPREVIOUS)]);
        let v = Verified::check(&half, "new", "old");
        assert!(!v.ok);
        assert_eq!(
            v.mismatch(),
            "after the rollback AWSCURRENT is old and AWSPREVIOUS other; check describe-secret"
        );
        let unchanged = secret(&[("new", AWSCURRENT)]);
        assert_eq!(
            Verified::check(&unchanged, "new", "old").mismatch(),
            "after the rollback AWSCURRENT is new and AWSPREVIOUS absent; check describe-secret"
        );
    }

    #[test]
    fn the_audit_entry_has_one_shape() {
        let by = Requester {
            actor: "cli:ops".into(),
            secret: "db".into(),
            ticket: Some("INC-1".into()),
            reason: Some("401s".into()),
        };
        let e = audit_entry(
            &by,
            DateTime::<Utc>::UNIX_EPOCH,
            Outcome::Ok,
            audit_detail("new", "old", true),
        );
        assert_eq!((e.action.as_str(), e.outcome.as_str()), ("rollback", "ok"));
        assert_eq!(
            e.detail,
            Some(serde_json::json!({ "from": "new", "to": "old", "verified": true }))
        );
        assert_eq!(
            (e.actor.as_str(), e.ticket.as_deref()),
            ("cli:ops", Some("INC-1"))
        );
    }
}
