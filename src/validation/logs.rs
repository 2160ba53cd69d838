//! Authentication errors in the dependents' application logs (the guide's "check
//! application logs for credential-related errors"): `[[dependent]] log_groups` with
//! `auth_error_pattern`, counted before the rotation (the baseline) and during the watch.
//!
//! A dependent is unhealthy when the lines matching its pattern since the rotation began
//! outnumber the baseline (the same pattern over the `validation_period` before
//! RotateSecret) by more than `max_auth_errors`. The count starts when the baseline was
//! read, just before RotateSecret, not when the rotation finished: a single-user rotation
//! breaks a stale client as soon as setSecret changes the password.
//!
//! The evidence is the counts, the log stream names and the first and last match times.
//! Never a line's text: a log line can hold a credential (`aws::logs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Finding, WatchPlan};
use crate::aws::AwsError;
use crate::aws::cloudwatch::CloudWatch;
use crate::aws::logs::LogCount;
use crate::clock::TIME_FORMAT;
use crate::filter_pattern::FilterPattern;

/// One log group of one dependent, in the stored watch plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedLogs {
    pub dependent: String,
    pub log_group: String,
    /// `auth_error_pattern` as written (parsed again where it is used).
    pub pattern: String,
    pub max_auth_errors: u32,
    /// Matches over the `validation_period` before the rotation.
    pub baseline: Option<u64>,
}

impl PlannedLogs {
    fn filter(&self) -> Result<FilterPattern, AwsError> {
        self.pattern.parse().map_err(|e| AwsError {
            operation: "FilterLogEvents",
            code: None,
            message: format!("stored auth_error_pattern `{}`: {e}", self.pattern),
            retryable: false,
        })
    }

    /// More matches than this is unhealthy.
    fn allowed(&self) -> u64 {
        self.baseline.unwrap_or(0) + u64::from(self.max_auth_errors)
    }
}

/// Each planned log group's matches in `[start, end)`, in plan order; `baseline`: read
/// every page (up to the bound), otherwise no further than the verdict needs.
pub async fn count(
    cw: &CloudWatch,
    plan: &WatchPlan,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    baseline: bool,
) -> Result<Vec<LogCount>, AwsError> {
    let mut out = Vec::with_capacity(plan.logs.len());
    for l in &plan.logs {
        let enough = if baseline { u64::MAX } else { l.allowed() };
        out.push(
            cw.count_log_matches(&l.log_group, &l.filter()?, start, end, enough)
                .await?,
        );
    }
    Ok(out)
}

/// Decides the logs part of one poll (pure): `counts` holds one entry per planned log
/// group, in order, counted since `since` (the baseline's time).
pub fn judge_logs(plan: &WatchPlan, counts: &[LogCount], since: DateTime<Utc>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (l, c) in plan.logs.iter().zip(counts) {
        if c.matches <= l.allowed() {
            continue;
        }
        let at = |t: Option<DateTime<Utc>>| {
            t.map_or("-".to_string(), |t| t.format(TIME_FORMAT).to_string())
        };
        let streams: Vec<&str> = c.streams.iter().map(String::as_str).collect();
        out.push(Finding {
            dependent: l.dependent.clone(),
            source: "logs".into(),
            name: l.log_group.clone(),
            detail: format!(
                "{}{} lines of {} matched auth_error_pattern since {} (baseline {} over the period before the rotation, {} tolerated above it); streams {}; first {}, last {}",
                c.matches,
                if c.complete { "" } else { "+" },
                l.log_group,
                since.format(TIME_FORMAT),
                l.baseline.map_or("not read".to_string(), |b| b.to_string()),
                l.max_auth_errors,
                if streams.is_empty() { "-".to_string() } else { streams.join(", ") },
                at(c.first),
                at(c.last),
            ),
            evidence: Some(serde_json::json!({
                "log_group": l.log_group,
                "matches": c.matches,
                "complete": c.complete,
                "baseline": l.baseline,
                "max_auth_errors": l.max_auth_errors,
                "streams": streams,
                "first_match": c.first.map(|t| t.to_rfc3339()),
                "last_match": c.last.map(|t| t.to_rfc3339()),
            })),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 3, min, 0).unwrap()
    }

    fn plan(baseline: Option<u64>, max: u32) -> WatchPlan {
        WatchPlan {
            dependents: vec!["payments-api".into()],
            logs: vec![PlannedLogs {
                dependent: "payments-api".into(),
                log_group: "/app/payments-api".into(),
                pattern: r#"?"authentication failed" ?" 401 ""#.into(),
                max_auth_errors: max,
                baseline,
            }],
            ..WatchPlan::default()
        }
    }

    fn counted(matches: u64) -> LogCount {
        LogCount {
            matches,
            streams: ["i-0abc/app".to_string()].into(),
            first: Some(at(1)),
            last: Some(at(4)),
            complete: true,
        }
    }

    #[test]
    fn over_the_baseline_plus_the_tolerance_is_unhealthy_and_not_before() {
        // The default tolerance is 0 above the baseline.
        assert!(judge_logs(&plan(Some(0), 0), &[counted(0)], at(0)).is_empty());
        assert_eq!(judge_logs(&plan(Some(0), 0), &[counted(1)], at(0)).len(), 1);
        // A service that always logs a few 401s (a bad client somewhere) is not failing.
        assert!(judge_logs(&plan(Some(5), 0), &[counted(5)], at(0)).is_empty());
        assert!(judge_logs(&plan(Some(5), 2), &[counted(7)], at(0)).is_empty());
        assert_eq!(judge_logs(&plan(Some(5), 2), &[counted(8)], at(0)).len(), 1);
        // No baseline (it could not be read): judged against the tolerance alone.
        assert_eq!(judge_logs(&plan(None, 2), &[counted(3)], at(0)).len(), 1);
    }

    #[test]
    fn the_evidence_is_counts_streams_and_times_only() {
        let f = judge_logs(&plan(Some(1), 0), &[counted(4)], at(0));
        assert_eq!(f[0].source, "logs");
        assert_eq!(f[0].name, "/app/payments-api");
        assert_eq!(
            f[0].detail,
            "4 lines of /app/payments-api matched auth_error_pattern since 2026-12-06T03:00:00Z (baseline 1 over the period before the rotation, 0 tolerated above it); streams i-0abc/app; first 2026-12-06T03:01:00Z, last 2026-12-06T03:04:00Z"
        );
        let e = f[0].evidence.as_ref().unwrap();
        assert_eq!(e["matches"], 4);
        assert_eq!(e["streams"][0], "i-0abc/app");
        assert_eq!(e["first_match"], "2026-12-06T03:01:00+00:00");
        // An early stop is a lower bound, and says so.
        let mut partial = counted(4);
        partial.complete = false;
        let f = judge_logs(&plan(Some(1), 0), &[partial], at(0));
        assert!(f[0].detail.starts_with("4+ lines"), "{}", f[0].detail);
    }
}
