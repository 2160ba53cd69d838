//! Every Prometheus metric rotationd exports, defined in one place.
//!
//! Names follow Prometheus conventions: one `rotationd_` prefix, counters end in `_total`,
//! durations in `_seconds`, event times in `_timestamp_seconds` (the time, not the age), and
//! labels of low cardinality only: never a secret name, an error message or an id. The
//! registry is owned by a [`Metrics`] value passed to whoever records, never a global.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub build_info: IntGaugeVec,
    pub secrets: IntGaugeVec,
    pub rotations_total: IntCounterVec,
    pub rotation_duration_seconds: HistogramVec,
    pub triggers_pending: IntGaugeVec,
    pub departure_deadline_earliest_timestamp_seconds: Gauge,
    pub events_received_total: IntCounterVec,
    pub events_rejected_total: IntCounterVec,
    /// Departures that rotate nothing, by why (`DEPARTURE_UNMATCHED`).
    pub departures_unmatched_total: IntCounterVec,
    /// Notices sent ahead of a planned window (`[policy] notice`).
    pub notices_total: IntCounterVec,
    /// Users the Identity Center directory knows (listed and remembered).
    pub directory_users: IntGauge,
    pub alerts_published_total: IntCounterVec,
    pub alerts_outbox: IntGauge,
    pub aws_requests_total: IntCounterVec,
    pub last_reconcile_success_timestamp_seconds: Gauge,
    pub cloudtrail_cursor_timestamp_seconds: GaugeVec,
    pub account_up: IntGaugeVec,
    pub config_reloads_total: IntCounterVec,
    pub ready: IntGauge,
    pub leader: IntGauge,
    pub validations_total: IntCounterVec,
    pub validations_in_flight: IntGauge,
    pub native_schedule_drift: IntGauge,
    pub native_schedule_changes_total: IntCounterVec,
    pub storm_exempt_rotations_total: IntCounterVec,
    pub config_max_age_seconds: Gauge,
    pub config_sla_warning_seconds: Gauge,
    pub config_departure_sla_seconds: Gauge,
    pub observed_rotations_total: IntCounterVec,
    pub observe_mode: IntGauge,
    pub audit_anchors_total: IntCounterVec,
    pub audit_anchor_last_success_timestamp_seconds: Gauge,
}

/// The `reason` values of `rotationd_departures_unmatched_total`.
pub const DEPARTURE_UNMATCHED: [&str; 2] = ["no_secrets", "unresolved"];

/// The series of the counters that alerting rules watch, exported at 0 before anything
/// happened ([`Metrics::export_known`]). A counter that first appears at 1 shows no
/// `increase()`: the first failure after a start would never alert.
pub struct KnownSeries<'a> {
    /// `rotationd_rotations_total{trigger}` values.
    pub triggers: &'a [&'a str],
    /// `rotationd_rotations_total{outcome}` values.
    pub outcomes: &'a [&'a str],
    /// Each (account, region) rotationd manages.
    pub places: &'a [(String, String)],
    /// `rotationd_alerts_published_total{kind, severity}` pairs.
    pub alerts: &'a [(&'a str, &'a str)],
    /// `rotationd_events_rejected_total{reason}` values.
    pub rejections: &'a [&'a str],
    /// `rotationd_events_received_total{source, kind}`: sources (empty without `[events]`)
    /// and kinds.
    pub event_sources: &'a [&'a str],
    pub event_kinds: &'a [&'a str],
}

/// The outcomes `rotationd_validations_total{outcome}` always exports.
pub const VALIDATION_OUTCOMES: &[&str] = &["validated", "validated_unhealthy"];

/// The reasons `rotationd_storm_exempt_rotations_total{reason}` always exports: the
/// rotations the storm guard never pauses and never counts against its limit.
pub const STORM_EXEMPT_REASONS: &[&str] = &["compromise", "emergency_request"];
/// The outcomes `rotationd_audit_anchors_total{outcome}` always exports.
pub const ANCHOR_OUTCOMES: &[&str] = &["written", "failed"];

/// The compliance statuses `rotationd_secrets{status}` always exports (zero included, so
/// that a status that empties out reads 0 rather than disappearing).
pub const SECRET_STATUSES: &[&str] = &[
    "compliant",
    "due",
    "overdue",
    "never_rotated",
    "in_progress",
    "stuck",
    "held",
    "failing",
    "missing",
    "unreachable",
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            // Registration fails only for duplicate names, which the fixed list below rules out.
            r.register(Box::new(m.clone()))
                .expect("metric names are unique");
            m
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge =
            |name: &str, help: &str| reg(&registry, Gauge::new(name, help).expect("valid metric"));
        let m = Metrics {
            build_info: gauge_vec(
                "rotationd_build_info",
                "Build information; always 1",
                &["version"],
            ),
            secrets: gauge_vec(
                "rotationd_secrets",
                "Secrets by compliance status, account and region",
                &["account", "region", "status"],
            ),
            rotations_total: counter(
                "rotationd_rotations_total",
                "Rotation attempts finished, by trigger, outcome, account and region",
                &["trigger", "outcome", "account", "region"],
            ),
            rotation_duration_seconds: reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "rotationd_rotation_duration_seconds",
                        "Time from RotateSecret to validated AWSCURRENT",
                    )
                    .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0]),
                    &["trigger"],
                )
                .expect("valid metric"),
            ),
            triggers_pending: gauge_vec(
                "rotationd_triggers_pending",
                "Triggers waiting to rotate",
                &["trigger"],
            ),
            departure_deadline_earliest_timestamp_seconds: gauge(
                "rotationd_departure_deadline_earliest_timestamp_seconds",
                "Earliest deadline of a pending departure trigger (0 when none)",
            ),
            events_received_total: counter(
                "rotationd_events_received_total",
                "Events received, by source and kind",
                &["source", "kind"],
            ),
            events_rejected_total: counter(
                "rotationd_events_rejected_total",
                "Events rejected and audited, by reason",
                &["reason"],
            ),
            departures_unmatched_total: counter(
                "rotationd_departures_unmatched_total",
                "Departures that rotate nothing: a custodian nowhere (no_secrets) or a user id nobody knows (unresolved)",
                &["reason"],
            ),
            notices_total: counter(
                "rotationd_notices_total",
                "rotation_scheduled notices queued ahead of a planned window, by lead time",
                &["lead"],
            ),
            directory_users: reg(
                &registry,
                IntGauge::new(
                    "rotationd_directory_users",
                    "Identity Center users the directory knows, listed and remembered",
                )
                .expect("valid metric"),
            ),
            alerts_published_total: counter(
                "rotationd_alerts_published_total",
                "Alerts published to SNS, by kind and severity",
                &["kind", "severity"],
            ),
            alerts_outbox: reg(
                &registry,
                IntGauge::new("rotationd_alerts_outbox", "Alerts waiting in the outbox")
                    .expect("valid metric"),
            ),
            aws_requests_total: counter(
                "rotationd_aws_requests_total",
                "HTTP requests to AWS (each retry counts), by service, operation and outcome",
                &["service", "operation", "outcome"],
            ),
            last_reconcile_success_timestamp_seconds: gauge(
                "rotationd_last_reconcile_success_timestamp_seconds",
                "When the last reconcile succeeded",
            ),
            cloudtrail_cursor_timestamp_seconds: reg(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "rotationd_cloudtrail_cursor_timestamp_seconds",
                        "Time up to which CloudTrail has been read, by account and region",
                    ),
                    &["account", "region"],
                )
                .expect("valid metric"),
            ),
            account_up: gauge_vec(
                "rotationd_account_up",
                "1 when the last inventory listed this account and region, 0 when it failed",
                &["account", "region"],
            ),
            config_reloads_total: counter(
                "rotationd_config_reloads_total",
                "Configuration reloads, by outcome",
                &["outcome"],
            ),
            ready: reg(
                &registry,
                IntGauge::new(
                    "rotationd_ready",
                    "1 when ready (config, state store, AWS reachable)",
                )
                .expect("valid metric"),
            ),
            leader: reg(
                &registry,
                IntGauge::new(
                    "rotationd_leader",
                    "1 while this instance leads (always with the SQLite backend), 0 while it is a standby",
                )
                .expect("valid metric"),
            ),
            validations_total: counter(
                "rotationd_validations_total",
                "Post-rotation watches of dependents finished, by outcome",
                &["outcome"],
            ),
            validations_in_flight: reg(
                &registry,
                IntGauge::new(
                    "rotationd_validations_in_flight",
                    "Rotations whose dependents are being watched now",
                )
                .expect("valid metric"),
            ),
            native_schedule_drift: reg(
                &registry,
                IntGauge::new(
                    "rotationd_native_schedule_drift_secrets",
                    "Secrets whose Secrets Manager rotation schedule disagrees with rotationd's",
                )
                .expect("valid metric"),
            ),
            native_schedule_changes_total: counter(
                "rotationd_native_schedule_changes_total",
                "Secrets Manager schedules written (sync) or turned off (disable), by action and outcome",
                &["action", "outcome"],
            ),
            storm_exempt_rotations_total: counter(
                "rotationd_storm_exempt_rotations_total",
                "Rotations started that the storm guard never pauses nor counts: suspected compromises and emergency requests, by reason",
                &["reason"],
            ),
            config_max_age_seconds: gauge(
                "rotationd_config_max_age_seconds",
                "[policy] max_age: a secret whose AWSCURRENT is older is overdue",
            ),
            config_sla_warning_seconds: gauge(
                "rotationd_config_sla_warning_seconds",
                "[events] sla_warning: a departure rotation not done this long before its deadline is at risk (0 without [events])",
            ),
            config_departure_sla_seconds: gauge(
                "rotationd_config_departure_sla_seconds",
                "[events] departure_sla: how long after a departure its secrets must be rotated (0 without [events])",
            ),
            observed_rotations_total: counter(
                "rotationd_observed_rotations_total",
                "Observe mode: rotations looked at and not sent, by trigger and verdict (would_rotate, would_fail, would_stick)",
                &["trigger", "verdict"],
            ),
            observe_mode: reg(
                &registry,
                IntGauge::new(
                    "rotationd_observe_mode",
                    "1 while [daemon] mode = \"observe\" (nothing is changed in Secrets Manager), 0 in enforce mode",
                )
                .expect("valid metric"),
            ),
            audit_anchors_total: counter(
                "rotationd_audit_anchors_total",
                "Audit chain heads anchored to S3 ([audit] anchor_bucket), by outcome (written, failed)",
                &["outcome"],
            ),
            audit_anchor_last_success_timestamp_seconds: gauge(
                "rotationd_audit_anchor_last_success_timestamp_seconds",
                "When the audit chain's head was last anchored to S3 (0: not since the start)",
            ),
            registry,
        };
        for outcome in ANCHOR_OUTCOMES {
            m.audit_anchors_total
                .with_label_values(&[outcome])
                .inc_by(0);
        }
        for outcome in VALIDATION_OUTCOMES {
            m.validations_total.with_label_values(&[outcome]).inc_by(0);
        }
        for reason in STORM_EXEMPT_REASONS {
            m.storm_exempt_rotations_total
                .with_label_values(&[reason])
                .inc_by(0);
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// Exports every known series of the counters alerting rules watch at 0 (a counter
    /// that already counted keeps its value), and the configured values the rules compare
    /// with. Called with each configuration, so a reload adds the series of a new
    /// account-region.
    pub fn export_known(
        &self,
        known: &KnownSeries<'_>,
        max_age: std::time::Duration,
        departure: Option<(std::time::Duration, std::time::Duration)>,
    ) {
        for (account, region) in known.places {
            for trigger in known.triggers {
                for outcome in known.outcomes {
                    self.rotations_total
                        .with_label_values(&[*trigger, *outcome, account.as_str(), region.as_str()])
                        .inc_by(0);
                }
            }
        }
        for trigger in known.triggers {
            // A histogram's series exists once its label set is named: empty buckets.
            self.rotation_duration_seconds
                .with_label_values(&[*trigger]);
        }
        for (kind, severity) in known.alerts {
            self.alerts_published_total
                .with_label_values(&[kind, severity])
                .inc_by(0);
        }
        for source in known.event_sources {
            for kind in known.event_kinds {
                self.events_received_total
                    .with_label_values(&[*source, *kind])
                    .inc_by(0);
            }
        }
        for reason in known.rejections {
            self.events_rejected_total
                .with_label_values(&[reason])
                .inc_by(0);
        }
        if !known.event_sources.is_empty() {
            for reason in DEPARTURE_UNMATCHED {
                self.departures_unmatched_total
                    .with_label_values(&[reason])
                    .inc_by(0);
            }
        }
        self.config_max_age_seconds.set(max_age.as_secs_f64());
        let (sla, warning) = departure.unwrap_or_default();
        self.config_departure_sla_seconds.set(sla.as_secs_f64());
        self.config_sla_warning_seconds.set(warning.as_secs_f64());
    }

    /// Sets `rotationd_secrets` for each account-region from `counts`, every status
    /// included (zero for a status that emptied out), and forgets account-regions no
    /// longer configured (a reload can remove one).
    pub fn set_secret_counts(
        &self,
        places: &[crate::arn::Place],
        counts: &std::collections::HashMap<(crate::arn::Place, &'static str), i64>,
    ) {
        self.secrets.reset();
        for place in places {
            for status in SECRET_STATUSES {
                self.secrets
                    .with_label_values(&[place.account.as_str(), place.region.as_str(), status])
                    .set(counts.get(&(place.clone(), *status)).copied().unwrap_or(0));
            }
        }
    }

    /// The text exposition format served at `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_are_exported_at_zero_and_keep_what_they_counted() {
        let m = Metrics::new();
        let places = vec![("111111111111".to_string(), "eu-west-1".to_string())];
        let known = KnownSeries {
            triggers: &["scheduled", "departure"],
            outcomes: &["succeeded", "failed"],
            places: &places,
            alerts: &[("rotation_failed", "P1")],
            rejections: &["not_json"],
            event_sources: &["sqs"],
            event_kinds: &["departure"],
        };
        m.rotations_total
            .with_label_values(&["departure", "failed", "111111111111", "eu-west-1"])
            .inc();
        let day = std::time::Duration::from_secs(86_400);
        m.export_known(&known, 93 * day, Some((day, day / 6)));
        let text = m.render();
        for line in [
            "rotationd_rotations_total{account=\"111111111111\",outcome=\"failed\",region=\"eu-west-1\",trigger=\"scheduled\"} 0",
            "rotationd_rotations_total{account=\"111111111111\",outcome=\"failed\",region=\"eu-west-1\",trigger=\"departure\"} 1",
            "rotationd_alerts_published_total{kind=\"rotation_failed\",severity=\"P1\"} 0",
            "rotationd_events_rejected_total{reason=\"not_json\"} 0",
            "rotationd_events_received_total{kind=\"departure\",source=\"sqs\"} 0",
            "rotationd_config_max_age_seconds 8035200",
            "rotationd_config_sla_warning_seconds 14400",
            "rotationd_config_departure_sla_seconds 86400",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }

    #[test]
    fn render_includes_build_info_and_zeroed_statuses() {
        let m = Metrics::new();
        m.aws_requests_total
            .with_label_values(&["secretsmanager", "ListSecrets", "success"])
            .inc_by(3);
        let text = m.render();
        assert!(text.contains(&format!(
            "rotationd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(
            !text.contains("rotationd_secrets{"),
            "no zeros before the first count"
        );
        let place = crate::arn::Place {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
        };
        let counts = std::collections::HashMap::from([((place.clone(), "overdue"), 2)]);
        m.set_secret_counts(std::slice::from_ref(&place), &counts);
        let text = m.render();
        assert!(text.contains(
            "rotationd_secrets{account=\"111111111111\",region=\"eu-west-1\",status=\"overdue\"} 2"
        ));
        assert!(text.contains(
            "rotationd_secrets{account=\"111111111111\",region=\"eu-west-1\",status=\"missing\"} 0"
        ));
        assert!(text.contains(
            "rotationd_aws_requests_total{operation=\"ListSecrets\",outcome=\"success\",service=\"secretsmanager\"} 3"
        ));
    }
}
