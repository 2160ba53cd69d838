//! TEMPORARY stand-in until the real planner lands.
use crate::schedule::Schedule;
use chrono::{DateTime, Utc};
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanEntry {
    pub secret: String,
}
pub struct Target {
    pub id: String,
    pub schedule: Schedule,
    pub window: chrono::Duration,
    pub ticket: Option<String>,
}
pub struct Plan {
    pub entries: Vec<PlanEntry>,
    pub over_capacity: Vec<(String, DateTime<Utc>)>,
}
