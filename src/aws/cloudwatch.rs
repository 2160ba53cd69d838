//! The CloudWatch reads behind the post-rotation watch of dependents: alarm states
//! (`DescribeAlarms`) and metric values (`GetMetricData`). Read-only: rotationd never
//! creates, changes or silences an alarm.
//!
//! Batching keeps the watch inside CloudWatch's request quotas however many rotations are
//! watched at once: one `DescribeAlarms` per 100 alarm names (its limit) and one
//! `GetMetricData` per 500 metric queries (its limit) per poll, whatever the number of
//! attempts being watched.
//!
//! The application-log counts of [`super::logs`] go through the same value, with a
//! CloudWatch Logs client per account-region next to each CloudWatch one.
//!
//! The client is `aws-sdk-cloudwatch` 1.99, pinned: from 1.100 the SDK speaks Smithy RPC v2
//! CBOR, which moto 5.2.5 (the test server) cannot parse. 1.99 speaks the query protocol,
//! which CloudWatch still serves; see docs/moto-findings.md.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{AlarmType, Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_cloudwatchlogs::Client as LogsClient;
use chrono::{DateTime, Utc};

use super::{AwsError, Place, Targets};

/// `DescribeAlarms` takes at most 100 alarm names per call.
pub const ALARMS_PER_CALL: usize = 100;
/// `GetMetricData` takes at most 500 queries per call.
pub const QUERIES_PER_CALL: usize = 500;

/// One alarm's state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmState {
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub updated: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// One metric to read, with the statistic and period to aggregate it by.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
    pub statistic: String,
    pub period_seconds: i32,
}

/// The CloudWatch clients, one per account-region. The calls below go to the first (or
/// only) one; [`CloudWatch::for_secret`] narrows to the account-region of a secret, where
/// its dependents' alarms and metrics are.
///
/// CloudWatch Logs (the dependents' application logs) comes with it, routed the same way.
#[derive(Clone)]
pub struct CloudWatch {
    targets: Targets<(Client, LogsClient)>,
    client: Client,
    logs: LogsClient,
}

impl CloudWatch {
    pub fn new(client: Client, logs: LogsClient) -> Self {
        CloudWatch {
            targets: Targets::single(
                Place::own(client.config().region().map(|r| r.as_ref())),
                (client.clone(), logs.clone()),
            ),
            client,
            logs,
        }
    }

    /// `targets` must not be empty.
    pub fn with_targets(targets: Targets<(Client, LogsClient)>) -> Option<Self> {
        let (client, logs) = targets.iter().next()?.1.clone();
        Some(CloudWatch {
            targets,
            client,
            logs,
        })
    }

    /// The clients of the account-region `secret` (its ARN) is in.
    pub fn for_secret(&self, secret: &str) -> Result<CloudWatch, AwsError> {
        if !self.targets.is_routed() {
            return Ok(self.clone());
        }
        let (place, (client, logs)) = self.targets.pick(secret, "DescribeAlarms")?;
        Ok(CloudWatch {
            targets: Targets::single(place.clone(), (client.clone(), logs.clone())),
            client: client.clone(),
            logs: logs.clone(),
        })
    }

    /// The lines of `group` in `[start, end)` matching `pattern` (see [`super::logs`]),
    /// read no further once more than `enough` matched.
    pub async fn count_log_matches(
        &self,
        group: &str,
        pattern: &crate::filter_pattern::FilterPattern,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        enough: u64,
    ) -> Result<super::logs::LogCount, AwsError> {
        super::logs::count_matches(&self.logs, group, pattern, start, end, enough).await
    }

    /// Where the calls of this value go.
    pub fn place(&self) -> Place {
        self.targets
            .iter()
            .next()
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| Place::own(None))
    }

    /// The states of the named alarms (metric and composite). Names CloudWatch does not
    /// know are absent from the answer.
    pub async fn alarm_states(&self, names: &[String]) -> Result<Vec<AlarmState>, AwsError> {
        let mut out = Vec::new();
        for chunk in names.chunks(ALARMS_PER_CALL) {
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .max_records(100)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("DescribeAlarms", e))?;
                // Metric and composite alarms are different types with the same getters.
                macro_rules! state {
                    ($a:expr) => {
                        AlarmState {
                            name: $a.alarm_name().unwrap_or_default().to_string(),
                            state: $a
                                .state_value()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_default(),
                            updated: time($a.state_updated_timestamp()),
                            reason: $a.state_reason().map(str::to_string),
                        }
                    };
                }
                out.extend(page.metric_alarms().iter().map(|a| state!(a)));
                out.extend(page.composite_alarms().iter().map(|a| state!(a)));
                match next_page(page.next_token(), &token) {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// For each query, the highest value among its datapoints in `[start, end)`, or `None`
    /// when CloudWatch has no datapoint (no traffic is not an error rate).
    pub async fn maxima(
        &self,
        queries: &[MetricQuery],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Option<f64>>, AwsError> {
        let mut out = vec![None; queries.len()];
        for (c, chunk) in queries.chunks(QUERIES_PER_CALL).enumerate() {
            let base = c * QUERIES_PER_CALL;
            let mut req = self
                .client
                .get_metric_data()
                .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
                .end_time(aws_smithy_types::DateTime::from_secs(end.timestamp()));
            for (i, q) in chunk.iter().enumerate() {
                let mut metric = Metric::builder()
                    .namespace(&q.namespace)
                    .metric_name(&q.metric_name);
                for (k, v) in &q.dimensions {
                    metric = metric.dimensions(Dimension::builder().name(k).value(v).build());
                }
                req = req.metric_data_queries(
                    MetricDataQuery::builder()
                        // Ids must start with a lower-case letter.
                        .id(format!("m{}", base + i))
                        .metric_stat(
                            MetricStat::builder()
                                .metric(metric.build())
                                .period(q.period_seconds)
                                .stat(&q.statistic)
                                .build(),
                        )
                        .return_data(true)
                        .build(),
                );
            }
            let mut token: Option<String> = None;
            loop {
                let page = req
                    .clone()
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("GetMetricData", e))?;
                let by_id: HashMap<&str, f64> = page
                    .metric_data_results()
                    .iter()
                    .filter_map(|r| {
                        let max = r
                            .values()
                            .iter()
                            .copied()
                            .filter(|v| v.is_finite())
                            .reduce(f64::max)?;
                        Some((r.id()?, max))
                    })
                    .collect();
                for (id, max) in by_id {
                    if let Some(i) = id.strip_prefix('m').and_then(|n| n.parse::<usize>().ok())
                        && let Some(slot) = out.get_mut(i)
                    {
                        *slot = Some(slot.map_or(max, |v: f64| v.max(max)));
                    }
                }
                match next_page(page.next_token(), &token) {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

/// The token of the next page, or `None` when this was the last one (absent or empty
/// token) or the service repeated the token it was given (a loop, not progress).
fn next_page(next: Option<&str>, current: &Option<String>) -> Option<String> {
    let next = next.filter(|t| !t.is_empty())?;
    (current.as_deref() != Some(next)).then(|| next.to_string())
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn paging_stops_at_the_last_page_and_at_a_repeated_token() {
        assert_eq!(next_page(Some("t2"), &Some("t1".into())), Some("t2".into()));
        assert_eq!(next_page(Some("t1"), &None), Some("t1".into()));
        assert_eq!(next_page(None, &Some("t1".into())), None);
        assert_eq!(next_page(Some(""), &None), None, "moto's empty last token");
        assert_eq!(next_page(Some("t1"), &Some("t1".into())), None, "a loop");
    }
}
