//! Native schedule drift: Secrets Manager's own `RotationRules` against rotationd's TOML
//! schedule. (Stub: being written.)

use std::time::Duration;

use crate::schedule::Schedule;

/// rotationd's schedule written in Secrets Manager's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsRules {
    /// `cron(0 2 1 1/3 ? *)`.
    pub schedule_expression: String,
    /// `3h`.
    pub duration: String,
}

/// What Secrets Manager holds for one secret (DescribeSecret / ListSecrets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeRules {
    pub enabled: bool,
    pub automatically_after_days: Option<i64>,
    pub schedule_expression: Option<String>,
    pub duration: Option<String>,
}

/// `[policy] native_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeSchedule {
    /// Show drift in `status`, a metric and a P3 notice; change nothing.
    #[default]
    Report,
    /// Write the TOML schedule to Secrets Manager.
    Sync,
    /// Keep Secrets Manager's own schedule off.
    Disable,
}

impl NativeSchedule {
    pub fn as_str(self) -> &'static str {
        match self {
            NativeSchedule::Report => "report",
            NativeSchedule::Sync => "sync",
            NativeSchedule::Disable => "disable",
        }
    }
}

/// Writes `schedule` with a window of `window` as Secrets Manager rotation rules, or says
/// why it cannot be.
pub fn aws_rules(schedule: &Schedule, window: Duration) -> Result<AwsRules, String> {
    let _ = (schedule, window);
    Err("not implemented yet".into())
}
