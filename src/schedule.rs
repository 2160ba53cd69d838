//! TEMPORARY stand-in until the real schedule module lands (same API).
use chrono::{DateTime, Utc};
#[derive(Debug, Clone)]
pub struct Schedule(String, cron::Schedule);
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);
impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, ScheduleError> {
        let expr = match s {
            "@quarterly" => "0 0 0 1 1,4,7,10 *".to_string(),
            "@daily" => "0 0 0 * * *".into(),
            other => format!("0 {other}"),
        };
        let c: cron::Schedule = expr
            .parse()
            .map_err(|e: cron::error::Error| ScheduleError(e.to_string()))?;
        Ok(Schedule(s.to_string(), c))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn min_gap(&self) -> Option<chrono::Duration> {
        None
    }
    pub fn max_gap(&self) -> Option<chrono::Duration> {
        None
    }
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.1.after(&t).next()
    }
}
impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
