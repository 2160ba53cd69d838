//! The judgement of one poll (pure): which dependents look unhealthy, from what CloudWatch
//! answered, against the plan's baselines.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::WatchPlan;
use crate::aws::cloudwatch::AlarmState;

/// One sign that a dependent is failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub dependent: String,
    /// `alarm` or `metric`.
    pub source: String,
    /// The alarm name or `Namespace/MetricName`.
    pub name: String,
    pub detail: String,
    /// Structured evidence, where there is more than the detail says (the log counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
}

/// Decides one poll (pure): what looks unhealthy since `since` (the end of the rotation).
/// `alarms` is what DescribeAlarms answered for the plan's alarm names; `maxima` holds one
/// entry per planned metric, in order.
pub fn judge(
    plan: &WatchPlan,
    alarms: &[AlarmState],
    maxima: &[Option<f64>],
    since: DateTime<Utc>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let by_name: HashMap<&str, &AlarmState> = alarms.iter().map(|a| (a.name.as_str(), a)).collect();
    for a in &plan.alarms {
        let Some(now) = by_name.get(a.name.as_str()) else {
            continue;
        };
        if now.state != "ALARM" {
            continue;
        }
        let was_alarm = a.baseline.as_deref() == Some("ALARM");
        let changed_since = now.updated.is_some_and(|u| u >= since);
        if !was_alarm || changed_since {
            out.push(Finding {
                dependent: a.dependent.clone(),
                source: "alarm".into(),
                name: a.name.clone(),
                detail: format!(
                    "alarm {} is ALARM{}{}",
                    a.name,
                    if was_alarm {
                        ""
                    } else {
                        " (it was not before the rotation)"
                    },
                    now.reason
                        .as_deref()
                        .map(|r| format!(": {}", truncate(r, 300)))
                        .unwrap_or_default()
                ),
                evidence: None,
            });
        }
    }
    for (m, value) in plan.metrics.iter().zip(maxima) {
        let Some(v) = *value else { continue };
        let over_threshold = v > m.threshold;
        let worse_than_before = m.baseline.is_none_or(|b| v > b);
        if over_threshold && worse_than_before {
            out.push(Finding {
                dependent: m.dependent.clone(),
                source: "metric".into(),
                name: format!("{}/{}", m.namespace, m.metric_name),
                detail: format!(
                    "{} {} of {}/{}{} reached {v} after the rotation (threshold {}, before the rotation {})",
                    m.statistic,
                    fmt_period(m.period_seconds),
                    m.namespace,
                    m.metric_name,
                    fmt_dimensions(&m.dimensions),
                    m.threshold,
                    m.baseline.map_or("no data".to_string(), |b| b.to_string()),
                ),
                evidence: None,
            });
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

fn fmt_period(seconds: i32) -> String {
    crate::config::fmt_duration(Duration::from_secs(u64::try_from(seconds).unwrap_or(60)))
}

fn fmt_dimensions(d: &BTreeMap<String, String>) -> String {
    if d.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = d.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" [{}]", inner.join(", "))
}
