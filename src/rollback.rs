//! Rollback: AWSCURRENT back to the AWSPREVIOUS version, the one implementation behind
//! `rotationd rollback`, CommandBridge's `Rollback Requested` ([`crate::requests`]) and the
//! watch's `auto_rollback` ([`crate::validation`]).
//!
//! Decide, then commit: [`plan_rollback`] is pure and reads only a DescribeSecret answer;
//! [`retired_by`] and [`allow`] are pure too and read the attempts that replaced the
//! version a rollback would put back ([`retirement`] reads them, the one store read here):
//! a version that a compromise, a departure or an emergency rotation retired is believed
//! exposed, so no rollback puts it back: `auto_rollback` and a request never, a person only
//! with `rotationd rollback --force` and an INC ticket, which pages Security
//! ([`forced_alert`], P1). [`execute`] then makes the one UpdateSecretVersionStage call
//! and verifies, with a second DescribeSecret, that AWSCURRENT *and* AWSPREVIOUS swapped
//! (Secrets Manager moves AWSPREVIOUS by itself when AWSCURRENT moves; a rollback that
//! left either label elsewhere is not done). After every rollback the secret's dependents
//! are told to reload, and Security gets a copy ([`completed_notices`]). [`audit_entry`]
//! builds the `rollback` audit entry; each caller commits its audit and alerts in its own
//! transaction (the watch with its state change, a request with its answer on the bus).

use chrono::{DateTime, Utc};

use crate::alerts::{Alert, AlertKind};
use crate::aws::AwsError;
use crate::aws::secrets::{AWSCURRENT, SecretInfo, SecretsManager};
use crate::config::Config;
use crate::store::audit::{Action, Outcome};
use crate::store::{NewAuditEntry, Retiring, StoreError, StoreHandle, TriggerKind};

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
    /// The version to put back was retired by a compromise, a departure or an emergency
    /// rotation, and the rollback is not forced.
    #[error(
        "AWSPREVIOUS {} was retired by {} rotation (attempt {}): putting it back would restore a credential believed exposed; rotate again instead, or, if the dependents cannot work otherwise, an L3 runs rotationd rollback --force with an INC ticket (Security is paged)",
        .0.version, .0.with_article(), .0.attempt
    )]
    Retired(Retired),
}

/// A version that a rotation retired because it was believed exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub version: String,
    /// The attempt that replaced it.
    pub attempt: String,
    /// `compromise`, `departure` or `emergency`.
    pub cause: &'static str,
}

impl Retired {
    /// `a compromise`, `a departure`, `an emergency`.
    pub fn with_article(&self) -> String {
        let article = if self.cause.starts_with('e') {
            "an"
        } else {
            "a"
        };
        format!("{article} {}", self.cause)
    }
}

/// Whether `version` was retired as exposed: the newest of `attempts` (those that set out
/// to replace it, newest first, [`crate::store::Db::retiring_attempts`]) whose triggers
/// include a compromise or a departure, or that was an emergency. Pure.
pub fn retired_by(version: &str, attempts: &[Retiring]) -> Option<Retired> {
    attempts.iter().find_map(|a| {
        let cause = if a.kinds.contains(&TriggerKind::Compromise) {
            "compromise"
        } else if a.kinds.contains(&TriggerKind::Departure) {
            "departure"
        } else if a.emergency {
            "emergency"
        } else {
            return None;
        };
        Some(Retired {
            version: version.to_string(),
            attempt: a.attempt_id.clone(),
            cause,
        })
    })
}

/// Whether a rollback to a version retired as `retired` may go ahead: not retired, yes;
/// retired, only when `forced` (a person's `--force`, the INC ticket already checked),
/// and then the caller pages Security ([`forced_alert`]). Returns what was overridden.
pub fn allow(retired: Option<Retired>, forced: bool) -> Result<Option<Retired>, Refusal> {
    match retired {
        None => Ok(None),
        Some(r) if forced => Ok(Some(r)),
        Some(r) => Err(Refusal::Retired(r)),
    }
}

/// Reads the attempts that replaced `version` of the secret described as `info` (known
/// as `key` in the config) and judges them ([`retired_by`]).
pub async fn retirement(
    store: &StoreHandle,
    info: &SecretInfo,
    key: &str,
    version: &str,
) -> Result<Option<Retired>, StoreError> {
    let ids: Vec<String> = [key, info.name.as_str(), info.arn.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let v = version.to_string();
    let attempts = store
        .call(move |s| {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            s.db().retiring_attempts(&ids, &v)
        })
        .await?;
    Ok(retired_by(version, &attempts))
}

/// After a rollback of `key` (described as `info`) from `from` back to `to`: the
/// `rollback_completed` notice for the dependents ("AWSCURRENT is the previous version
/// again: reload"), one copy for each dependent with its own topic, and Security's copy.
#[allow(clippy::too_many_arguments)]
pub fn completed_notices(
    cfg: &Config,
    info: &SecretInfo,
    key: &str,
    from: &str,
    to: &str,
    by: &Requester,
    forced: Option<&Retired>,
    now: DateTime<Utc>,
) -> Vec<Alert> {
    let dependents: Vec<String> = crate::inventory::match_fleet(cfg, vec![info.clone()])
        .entries
        .first()
        .map(|e| crate::inventory::settings(cfg, e.origin).dependents.clone())
        .unwrap_or_default();
    let mut a = Alert::new(AlertKind::RollbackCompleted, Some(key), now);
    a.secret_arn = (!info.arn.is_empty()).then(|| info.arn.clone());
    a.trigger = Some("rollback".into());
    a.ticket = by.ticket.clone();
    a.reason = by.reason.clone();
    a.details = serde_json::json!({
        "message": "AWSCURRENT is the previous version again: reload",
        "current_version": to,
        "rolled_back_version": from,
        "by": by.actor,
        "dependents": dependents,
        "forced": forced.map(|r| serde_json::json!({ "cause": r.cause, "attempt": r.attempt })),
    });
    a.dedupe_key = format!("rollback_completed:{key}:{from}:{to}");
    let mut out: Vec<Alert> = dependents
        .iter()
        .filter(|d| {
            cfg.dependent(d)
                .is_some_and(|d| d.notify_topic_arn.is_some())
        })
        .map(|d| {
            let mut copy = a.clone();
            copy.dedupe_key = format!("{}:{d}", a.dedupe_key);
            copy.dependent = Some(d.clone());
            copy
        })
        .collect();
    out.push(a.copy_for_security());
    out.push(a);
    out
}

/// The P1 `rollback_forced`: `by` put back `retired`, a version believed exposed.
pub fn forced_alert(
    key: &str,
    arn: Option<&str>,
    retired: &Retired,
    by: &Requester,
    now: DateTime<Utc>,
) -> Alert {
    let mut a = Alert::new(AlertKind::RollbackForced, Some(key), now);
    a.secret_arn = arn.map(str::to_string);
    a.trigger = Some(retired.cause.into());
    a.ticket = by.ticket.clone();
    a.reason = by.reason.clone();
    a.details = serde_json::json!({
        "by": by.actor,
        "restored_version": retired.version,
        "retired_by_attempt": retired.attempt,
        "retired_because": retired.cause,
    });
    a.dedupe_key = format!("rollback_forced:{key}:{}", retired.version);
    a
}

/// The P2 `rollback_escalated`: `who` (at `level`, below L3) asked for a rollback of
/// `key`, which the guide reserves to L3; `request` names the ask (a request id, or the
/// CLI's own).
#[allow(clippy::too_many_arguments)]
pub fn escalated_alert(
    key: &str,
    arn: Option<&str>,
    who: &str,
    level: &str,
    ticket: Option<String>,
    reason: Option<String>,
    request: &str,
    via: &str,
    now: DateTime<Utc>,
) -> Alert {
    let mut a = Alert::new(AlertKind::RollbackEscalated, Some(key), now);
    a.secret_arn = arn.map(str::to_string);
    a.trigger = Some("rollback".into());
    a.ticket = ticket;
    a.reason = reason;
    a.error = Some(format!(
        "rollback refused: {who} is {level}; rollback is L3 only (the guide: L1/L2 must escalate)"
    ));
    a.details = serde_json::json!({
        "requester": who,
        "level": level,
        "request_id": request,
        "via": via,
    });
    a.dedupe_key = format!("rollback_escalated:{key}:{request}");
    a
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

    fn retiring(id: &str, kinds: &[TriggerKind], emergency: bool) -> Retiring {
        Retiring {
            attempt_id: id.into(),
            kinds: kinds.to_vec(),
            emergency,
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            new_version: Some("new".into()),
        }
    }

    #[test]
    fn a_version_retired_as_exposed_goes_back_only_when_forced() {
        use TriggerKind::*;
        // A scheduled rotation retired it: nothing to fear.
        assert_eq!(
            retired_by("old", &[retiring("a1", &[Scheduled], false)]),
            None
        );
        assert_eq!(retired_by("old", &[]), None);
        // A departure merged into a scheduled attempt retired it: exposed.
        let r = retired_by("old", &[retiring("a2", &[Scheduled, Departure], false)]).unwrap();
        assert_eq!((r.cause, r.attempt.as_str()), ("departure", "a2"));
        let r = retired_by(
            "old",
            &[
                retiring("a4", &[Manual], false),
                retiring("a3", &[Compromise], false),
            ],
        )
        .unwrap();
        assert_eq!((r.cause, r.attempt.as_str()), ("compromise", "a3"));
        let r = retired_by("old", &[retiring("a5", &[Manual], true)]).unwrap();
        assert_eq!(r.cause, "emergency");
        // Refused unless forced; forced, what was overridden is returned.
        let err = allow(Some(r.clone()), false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("AWSPREVIOUS old was retired by an emergency rotation (attempt a5)")
                && err.to_string().contains("--force"),
            "{err}"
        );
        assert_eq!(allow(Some(r.clone()), true), Ok(Some(r)));
        assert_eq!(allow(None, false), Ok(None));
    }

    #[test]
    fn after_a_rollback_the_dependents_and_security_hear_of_it() {
        let src = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:sec"
[[dependent]]
name = "api"
alarms = ["api-5xx"]
notify_topic_arn = "arn:aws:sns:us-east-1:123456789012:api"
[[dependent]]
name = "batch"
alarms = ["batch-5xx"]
[[secret]]
id = "prod/db"
strategy = "single-user"
change_ticket = "CHG-1"
dependents = ["api", "batch"]
"#;
        let (cfg, _) = Config::from_source(std::path::Path::new("t.toml"), src).unwrap();
        let info = SecretInfo {
            name: "prod/db".into(),
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf".into(),
            ..Default::default()
        };
        let by = Requester {
            actor: "cli:arn:aws:iam::123456789012:user/lead".into(),
            secret: "prod/db".into(),
            ticket: Some("INC-1".into()),
            reason: Some("401s".into()),
        };
        let notices = completed_notices(
            &cfg,
            &info,
            "prod/db",
            "new",
            "old",
            &by,
            None,
            DateTime::<Utc>::UNIX_EPOCH,
        );
        let shape: Vec<(String, Option<String>, bool)> = notices
            .iter()
            .map(|a| (a.dedupe_key.clone(), a.dependent.clone(), a.security_copy))
            .collect();
        assert_eq!(
            shape,
            vec![
                (
                    "rollback_completed:prod/db:new:old:api".into(),
                    Some("api".into()),
                    false
                ),
                (
                    "rollback_completed:prod/db:new:old:security".into(),
                    None,
                    true
                ),
                ("rollback_completed:prod/db:new:old".into(), None, false),
            ]
        );
        let m = notices[2].message();
        assert_eq!(m["kind"], "rollback_completed");
        assert_eq!(
            m["summary"],
            "AWSCURRENT is the previous version again: reload"
        );
        assert_eq!(
            m["details"]["dependents"],
            serde_json::json!(["api", "batch"])
        );
        assert_eq!(m["details"]["current_version"], "old");
        assert_eq!(
            notices[1]
                .to_new_alert(crate::config::Mode::Enforce)
                .attributes["copy"],
            "security"
        );
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
