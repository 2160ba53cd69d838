//! Watching a rotation function's four steps: what Secrets Manager shows (the labels) and
//! what it reports (a RotationFailed event tied to the attempt), judged by
//! [`judge_progress`] (pure) on each look. Secrets Manager shows createSecret (the token's
//! version appears with AWSPENDING) and finishSecret (that version takes AWSCURRENT);
//! setSecret and testSecret change no label, and a RotationFailed event names the step
//! that failed. RotateSecret answers before the function runs (a Lambda cold start takes
//! seconds), so "no version yet" is waiting, never failure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{AwsCall, Engine, Outcome, Progress, aws_id};
use crate::aws::secrets::{AWSCURRENT, AWSPENDING, SecretInfo};
use crate::store::{Attempt, AttemptState, AttemptUpdate, StoreError};

impl Engine {
    /// Watches the rotation function's four steps through what Secrets Manager shows (the
    /// labels) and what it reports (a RotationFailed event tied to this attempt), until
    /// [`judge_progress`] says promoted or failed.
    pub(super) async fn monitor(
        &self,
        attempt: &Attempt,
        fresh: &mut Option<SecretInfo>,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Outcome>, AwsCall> {
        let id = aws_id(attempt);
        let token = attempt
            .new_version
            .clone()
            .unwrap_or_else(|| attempt.client_request_token.clone());
        let timeout = self.opts.monitor_timeout;
        let deadline = attempt.started_at
            + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::minutes(15));
        let mut delay = self.opts.poll_initial;
        let mut created = stage_seen(attempt, STAGE_CREATE);
        if !created {
            progress("monitor: waiting for the rotation function's createSecret");
        }
        loop {
            // Re-read: a RotationFailed event may have been tied to the attempt meanwhile.
            let stored = self.load(&attempt.id).await?;
            let info = self.describe(&id, cancel).await?;
            let now = self.clock.now();
            let verdict = judge_progress(
                &info,
                &token,
                created,
                stored.function_error.as_deref(),
                now >= deadline,
                timeout,
            );
            match verdict {
                RotationProgress::Waiting => {}
                RotationProgress::Created => {
                    if !created {
                        created = true;
                        self.observe(&attempt.id, STAGE_CREATE, now).await?;
                        progress(&format!(
                            "monitor: createSecret done (version {token} holds AWSPENDING); waiting for setSecret, testSecret, finishSecret"
                        ));
                    }
                }
                RotationProgress::Promoted => {
                    if !created {
                        self.observe(&attempt.id, STAGE_CREATE, now).await?;
                    }
                    self.observe(&attempt.id, STAGE_FINISH, now).await?;
                    progress(&format!(
                        "monitor: finishSecret done: version {token} holds AWSCURRENT (setSecret and testSecret passed)"
                    ));
                    self.update(&attempt.id, AttemptUpdate::to(AttemptState::Validating))
                        .await?;
                    *fresh = Some(info);
                    return Ok(None);
                }
                RotationProgress::Failed(reason) => {
                    progress(&format!("monitor: {reason}"));
                    return self.end(attempt, AttemptState::Failed, reason).await;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(AwsCall::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.opts.poll_max);
        }
    }

    async fn observe(
        &self,
        attempt_id: &str,
        stage: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = attempt_id.to_string();
        self.store
            .call(move |s| s.db().observe_stage(&id, stage, now))
            .await?;
        Ok(())
    }
}

/// The rotation function's steps rotationd can see: Secrets Manager shows createSecret
/// (a version with the request token and AWSPENDING appears) and finishSecret (that
/// version takes AWSCURRENT). setSecret and testSecret run inside the function and change
/// no label: they passed when finishSecret happened, and a RotationFailed event names the
/// step that failed.
pub const STAGE_CREATE: &str = "createSecret";
pub const STAGE_FINISH: &str = "finishSecret";

fn stage_seen(attempt: &Attempt, stage: &str) -> bool {
    attempt
        .stage_times
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .is_some_and(|v| v.get(stage).is_some())
}

/// What one look at the secret says about a running rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationProgress {
    /// Nothing new: RotateSecret was answered but createSecret has not run yet (a Lambda
    /// cold start takes seconds), or the function is still between steps.
    Waiting,
    /// The new version exists as AWSPENDING: createSecret ran; setSecret, testSecret and
    /// finishSecret are to come.
    Created,
    /// The new version holds AWSCURRENT and no other version holds AWSPENDING
    /// (AWSPENDING may stay on the new version itself: AWS documents both).
    Promoted,
    Failed(String),
}

/// Decides how a rotation stands from one DescribeSecret answer (pure). `token` is the
/// new version's id, `created` whether createSecret was seen on an earlier look,
/// `function_error` a RotationFailed event tied to the attempt (`EVENT_ID: MESSAGE`),
/// `timed_out` whether the monitor's time is up.
pub fn judge_progress(
    info: &SecretInfo,
    token: &str,
    created: bool,
    function_error: Option<&str>,
    timed_out: bool,
    timeout: Duration,
) -> RotationProgress {
    let stages = info.versions.get(token);
    let has = |label: &str| stages.is_some_and(|s| s.iter().any(|l| l == label));
    let pending_elsewhere = info
        .versions
        .iter()
        .any(|(v, s)| v != token && s.iter().any(|l| l == AWSPENDING));
    if has(AWSCURRENT) && !pending_elsewhere {
        return RotationProgress::Promoted;
    }
    let left = if has(AWSPENDING) {
        format!(
            "; AWSPENDING is left on version {token}: the secret is stuck until someone investigates and clears it (see the runbook)"
        )
    } else {
        String::new()
    };
    if let Some(error) = function_error {
        let (event, message) = error.split_once(": ").unwrap_or(("", error));
        let stage = crate::events::failed_stage(message).map_or_else(
            || "an unnamed step".to_string(),
            |s| format!("the {s} step"),
        );
        return RotationProgress::Failed(format!(
            "the rotation function failed during {stage} (RotationFailed event {event}: {message}){left}"
        ));
    }
    if stages.is_none() {
        if created {
            // It existed and vanished without being promoted: RotationAbandoned (someone
            // wrote a version by hand) or the function cleaned up after a failure.
            return RotationProgress::Failed("the new version disappeared before it was promoted (rotation abandoned or failed); see RotationFailed/RotationAbandoned in CloudTrail".into());
        }
        if timed_out {
            return RotationProgress::Failed(format!(
                "rotation did not finish within {}: the last stage reached was RotateSecret; the function's createSecret never created version {token} (is the function invoked? see its logs)",
                crate::config::fmt_duration(timeout)
            ));
        }
        return RotationProgress::Waiting;
    }
    if !has(AWSPENDING) && !has(AWSCURRENT) {
        return RotationProgress::Failed(format!(
            "version {token} lost AWSPENDING before it was promoted (rotation cancelled or abandoned)"
        ));
    }
    if timed_out {
        let last = if has(AWSCURRENT) {
            "finishSecret (another version still holds AWSPENDING)"
        } else {
            "createSecret: setSecret, testSecret or finishSecret did not complete"
        };
        return RotationProgress::Failed(format!(
            "rotation did not finish within {}: the last stage reached was {last}{left}",
            crate::config::fmt_duration(timeout)
        ));
    }
    if has(AWSPENDING) && !has(AWSCURRENT) {
        return RotationProgress::Created;
    }
    RotationProgress::Waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(versions: &[(&str, &[&str])]) -> SecretInfo {
        SecretInfo {
            name: "prod/db".into(),
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf".into(),
            versions: versions
                .iter()
                .map(|(v, s)| (v.to_string(), s.iter().map(|l| l.to_string()).collect()))
                .collect(),
            ..SecretInfo::default()
        }
    }

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn an_asynchronous_function_is_waited_for_until_it_creates_the_version() {
        // RotateSecret answered, the Lambda not started yet: waiting, not "disappeared".
        let before = labels(&[("old", &["AWSCURRENT"])]);
        assert_eq!(
            judge_progress(&before, "tok", false, None, false, T),
            RotationProgress::Waiting
        );
        let created = labels(&[("old", &["AWSCURRENT"]), ("tok", &["AWSPENDING"])]);
        assert_eq!(
            judge_progress(&created, "tok", false, None, false, T),
            RotationProgress::Created
        );
    }

    #[test]
    fn promotion_is_accepted_with_or_without_awspending_left_on_the_new_version() {
        let left = labels(&[
            ("old", &["AWSPREVIOUS"]),
            ("tok", &["AWSPENDING", "AWSCURRENT"]),
        ]);
        assert_eq!(
            judge_progress(&left, "tok", true, None, false, T),
            RotationProgress::Promoted
        );
        let removed = labels(&[("old", &["AWSPREVIOUS"]), ("tok", &["AWSCURRENT"])]);
        assert_eq!(
            judge_progress(&removed, "tok", true, None, false, T),
            RotationProgress::Promoted
        );
        // Another version still pending: not finished.
        let other = labels(&[("x", &["AWSPENDING"]), ("tok", &["AWSCURRENT"])]);
        assert_eq!(
            judge_progress(&other, "tok", true, None, false, T),
            RotationProgress::Waiting
        );
    }

    #[test]
    fn a_version_seen_and_then_gone_has_disappeared() {
        let gone = labels(&[("old", &["AWSCURRENT"])]);
        let RotationProgress::Failed(why) = judge_progress(&gone, "tok", true, None, false, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("disappeared"), "{why}");
    }

    #[test]
    fn the_timeout_names_the_last_stage_reached() {
        let never = labels(&[("old", &["AWSCURRENT"])]);
        let RotationProgress::Failed(why) = judge_progress(&never, "tok", false, None, true, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("within 1m"), "{why}");
        assert!(why.contains("last stage reached was RotateSecret"), "{why}");
        let created = labels(&[("old", &["AWSCURRENT"]), ("tok", &["AWSPENDING"])]);
        let RotationProgress::Failed(why) = judge_progress(&created, "tok", true, None, true, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("last stage reached was createSecret"), "{why}");
        assert!(why.contains("AWSPENDING is left on version tok"), "{why}");
    }

    #[test]
    fn a_tied_rotation_failed_event_names_the_step() {
        let created = labels(&[("old", &["AWSCURRENT"]), ("tok", &["AWSPENDING"])]);
        let error = "ev-1: Error when executing lambda arn:aws:lambda:us-east-1:1:function:f during setSecret step";
        let RotationProgress::Failed(why) =
            judge_progress(&created, "tok", true, Some(error), false, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("during the setSecret step"), "{why}");
        assert!(why.contains("RotationFailed event ev-1"), "{why}");
        assert!(why.contains("AWSPENDING is left"), "{why}");
        // A message that names no step still fails the attempt.
        let RotationProgress::Failed(why) =
            judge_progress(&created, "tok", true, Some("ev-2: boom"), false, T)
        else {
            panic!("expected a failure")
        };
        assert!(why.contains("an unnamed step"), "{why}");
    }

    #[test]
    fn a_pending_label_removed_before_promotion_fails() {
        let lost = labels(&[("old", &["AWSCURRENT"]), ("tok", &[])]);
        assert!(matches!(
            judge_progress(&lost, "tok", true, None, false, T),
            RotationProgress::Failed(why) if why.contains("lost AWSPENDING")
        ));
    }
}
