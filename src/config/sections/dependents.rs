//! `[[dependent]]` and `[[dependent.metrics]]`: the services that use secrets, notified
//! around a rotation and watched in CloudWatch after it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use crate::config::checks::{arn, duration, hours, in_range, integer};
use crate::config::diag::Diagnostics;
use crate::config::parse::de_dependent;
use crate::config::raw::{RawDependent, RawMetric, S};
use crate::config::{DependentConfig, LogWatch, MetricWatch, Statistic, fmt_duration};

/// The `[[dependent]]` tables, validated, and whether each name declared is watched (has
/// alarms or metrics); `validation_period` is `[policy]`'s, which a metric's period should
/// not exceed.
pub(crate) fn dependents(
    diags: &mut Diagnostics,
    items: Vec<Spanned<DeValue<'_>>>,
    validation_period: Duration,
) -> (Vec<DependentConfig>, HashMap<String, bool>) {
    let mut dependents = Vec::new();
    // Name -> where it was first declared.
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut watched: HashMap<String, bool> = HashMap::new();
    for item in items {
        let span = item.span();
        let errors_before = diags.error_count();
        let Some(d) = de_dependent(&item, diags) else {
            continue;
        };
        drop(item);
        let Some(name) = &d.name else {
            diags.error(
                span.clone(),
                "[[dependent]] is missing `name`; name the service that uses the secrets",
            );
            continue;
        };
        let text = name.get_ref();
        if text.trim().is_empty() {
            diags.error(
                name.span(),
                "[[dependent]] name may not be empty; name the service",
            );
        } else if let Some(first) = names.get(text) {
            let (line, _) = diags.position(*first);
            diags.error(
                name.span(),
                format!(
                    "duplicate dependent `{text}` (first declared on line {line}); merge the two"
                ),
            );
        } else {
            names.insert(text.clone(), name.span().start);
        }
        let dependent = dependent(diags, &d, text, validation_period);
        *watched.entry(text.clone()).or_default() |= dependent.watched();
        let unwatched = d.alarms.as_ref().is_none_or(|a| a.get_ref().is_empty())
            && d.metrics.as_ref().is_none_or(|m| m.get_ref().is_empty())
            && d.log_groups.as_ref().is_none_or(|g| g.get_ref().is_empty());
        // Not when it has errors: a misspelt `alarms` would be reported twice.
        if unwatched && diags.error_count() == errors_before {
            diags.warning(
                name.span(),
                format!(
                    "dependent `{text}` has no `alarms`, [[dependent.metrics]] or `log_groups`: it is notified, but its health cannot be checked after a rotation; add one of them"
                ),
            );
        }
        dependents.push(dependent);
    }
    (dependents, watched)
}

/// A `[[dependent]]`'s alarms and metrics, validated (its name is checked by the caller).
fn dependent(
    diags: &mut Diagnostics,
    d: &RawDependent,
    name: &str,
    validation_period: Duration,
) -> DependentConfig {
    let notify_topic_arn = d.notify_topic_arn.as_ref().map(|t| arn(diags, t, "sns"));
    let chat_topic_arn = d.chat_topic_arn.as_ref().map(|t| arn(diags, t, "sns"));
    let chat_min_severity =
        crate::config::sections::alerts::min_severity(diags, &d.chat_min_severity, 3);
    let mut alarms: Vec<String> = Vec::new();
    for a in d.alarms.iter().flat_map(|v| v.get_ref().iter()) {
        let text = a.get_ref();
        if text.trim().is_empty() {
            diags.error(
                a.span(),
                "an alarm name may not be empty; name a CloudWatch alarm",
            );
        } else if text.chars().count() > 255 {
            diags.error(
                a.span(),
                format!(
                    "alarm name is {} characters long; CloudWatch alarm names have at most 255",
                    text.chars().count()
                ),
            );
        } else if alarms.contains(text) {
            diags.error(
                a.span(),
                format!("alarm `{text}` is listed twice for dependent `{name}`; remove one"),
            );
            continue;
        }
        alarms.push(text.clone());
    }
    let metrics = d
        .metrics
        .iter()
        .flat_map(|v| v.get_ref().iter())
        .filter_map(|m| metric(diags, m, name, validation_period))
        .collect();
    DependentConfig {
        name: name.to_string(),
        notify_topic_arn,
        chat_topic_arn,
        chat_min_severity,
        alarms,
        metrics,
        logs: logs(diags, d, name),
    }
}

/// `log_groups`, `auth_error_pattern` and `max_auth_errors`: all or nothing (the maximum
/// has a default).
fn logs(diags: &mut Diagnostics, d: &RawDependent, name: &str) -> Option<LogWatch> {
    let max_auth_errors = integer(diags, &d.max_auth_errors, "max_auth_errors", 0..=100_000, 0);
    let (groups, pattern) = match (&d.log_groups, &d.auth_error_pattern) {
        (None, None) => {
            if let Some(m) = &d.max_auth_errors {
                diags.error(
                    m.span(),
                    format!("`max_auth_errors` of dependent `{name}` needs `log_groups` and `auth_error_pattern`; add them or remove it"),
                );
            }
            return None;
        }
        (Some(g), None) => {
            diags.error(
                g.span(),
                format!("dependent `{name}` has `log_groups` but no `auth_error_pattern`; add the filter pattern an authentication failure matches, e.g. auth_error_pattern = '?\"authentication failed\" ?\" 401 \"'"),
            );
            return None;
        }
        (None, Some(p)) => {
            diags.error(
                p.span(),
                format!("dependent `{name}` has `auth_error_pattern` but no `log_groups`; add the CloudWatch Logs groups to read"),
            );
            return None;
        }
        (Some(g), Some(p)) => (g, p),
    };
    let mut ok = true;
    if g_is_empty(groups) {
        diags.error(
            groups.span(),
            "`log_groups` is empty; list the CloudWatch Logs groups the service writes to, or remove it",
        );
        ok = false;
    }
    let mut names: Vec<String> = Vec::new();
    for group in groups.get_ref() {
        let text = group.get_ref();
        if let Err(why) = check_log_group(text) {
            diags.error(group.span(), why);
            ok = false;
        } else if names.contains(text) {
            diags.error(
                group.span(),
                format!("log group `{text}` is listed twice for dependent `{name}`; remove one"),
            );
            ok = false;
        } else {
            names.push(text.clone());
        }
    }
    let pattern = match pattern
        .get_ref()
        .parse::<crate::filter_pattern::FilterPattern>()
    {
        Ok(p) => Some(p),
        Err(e) => {
            diags.error(pattern.span(), format!("auth_error_pattern: {e}"));
            None
        }
    };
    Some(LogWatch {
        groups: names,
        pattern: pattern.filter(|_| ok)?,
        max_auth_errors,
    })
}

fn g_is_empty(groups: &Spanned<Vec<Spanned<String>>>) -> bool {
    groups.get_ref().is_empty()
}

/// CloudWatch Logs group names: 1 to 512 characters of `a-zA-Z0-9_-/.#`.
fn check_log_group(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 {
        return Err(format!(
            "log group name `{name}` must be 1 to 512 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-/.#".contains(*c)))
    {
        return Err(format!(
            "log group name `{name}` contains `{c}`; CloudWatch Logs group names use letters, digits and _-/.#"
        ));
    }
    Ok(())
}

/// One `[[dependent.metrics]]`; `None` (with the errors recorded) when it is unusable.
fn metric(
    diags: &mut Diagnostics,
    m: &Spanned<RawMetric>,
    dependent: &str,
    validation_period: Duration,
) -> Option<MetricWatch> {
    let span = m.span();
    let raw = m.get_ref();
    let mut ok = true;
    let text = |diags: &mut Diagnostics, v: &S<String>, key: &str, hint: &str| match v {
        Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
        Some(v) => {
            diags.error(v.span(), format!("`{key}` may not be empty; {hint}"));
            None
        }
        // Written with a wrong type: reported already.
        None if raw.written.has(key) => None,
        None => {
            diags.error(
                span.clone(),
                format!("[[dependent.metrics]] of `{dependent}` is missing `{key}`; {hint}"),
            );
            None
        }
    };
    let namespace = text(
        diags,
        &raw.namespace,
        "namespace",
        "set the CloudWatch namespace, like AWS/ApplicationELB",
    );
    let metric_name = text(
        diags,
        &raw.metric_name,
        "metric_name",
        "set the CloudWatch metric name, like HTTPCode_Target_5XX_Count",
    );
    let mut dimensions = BTreeMap::new();
    if let Some(dims) = &raw.dimensions {
        let count = dims.get_ref().len();
        ok &= in_range(diags, dims.span(), count, ..=30, |_| {
            format!(
                "a metric has at most 30 dimensions (CloudWatch's limit), found {count}; remove some"
            )
        })
        .is_some();
        for (k, v) in dims.get_ref() {
            if k.get_ref().trim().is_empty() {
                diags.error(k.span(), "a dimension name may not be empty");
                ok = false;
            } else if v.get_ref().trim().is_empty() {
                diags.error(
                    v.span(),
                    format!(
                        "dimension `{}` has an empty value; set the value CloudWatch records",
                        k.get_ref()
                    ),
                );
                ok = false;
            }
            dimensions.insert(k.get_ref().clone(), v.get_ref().clone());
        }
    }
    let statistic = match &raw.statistic {
        None => Some(Statistic::Sum),
        Some(v) => {
            let s = Statistic::parse(v.get_ref());
            if s.is_none() {
                diags.error(
                    v.span(),
                    format!(
                        "unknown statistic `{}`, expected \"Sum\", \"Average\", \"Maximum\", \"Minimum\" or \"SampleCount\"",
                        v.get_ref()
                    ),
                );
            }
            s
        }
    };
    let threshold = match &raw.threshold {
        None if raw.written.has("threshold") => None,
        None => {
            diags.error(
                span.clone(),
                format!(
                    "[[dependent.metrics]] of `{dependent}` is missing `threshold`; set the value above which `{dependent}` counts as unhealthy"
                ),
            );
            None
        }
        Some(t) if !t.get_ref().is_finite() => {
            diags.error(
                t.span(),
                format!("threshold must be a finite number, found {}", t.get_ref()),
            );
            None
        }
        Some(t) if *t.get_ref() < 0.0 => {
            diags.error(
                t.span(),
                format!(
                    "threshold {} is negative; CloudWatch statistics here are counts and times, so use 0 or more",
                    t.get_ref()
                ),
            );
            None
        }
        Some(t) => Some(*t.get_ref()),
    };
    let period = duration(diags, &raw.period, "period", Duration::from_secs(60));
    if let Some(v) = &raw.period {
        if period.subsec_nanos() != 0 || !period.as_secs().is_multiple_of(60) {
            diags.error(
                v.span(),
                format!(
                    "`period` must be a whole number of minutes (CloudWatch's standard resolution is 60s), found `{}`; use 60s, 5m or another multiple of 60s",
                    v.get_ref()
                ),
            );
            ok = false;
        } else if in_range(diags, v.span(), period, ..=hours(1), |_| {
            "`period` may not exceed 1h; a dependent is watched for minutes after a rotation".into()
        })
        .is_none()
        {
            ok = false;
        } else if period > validation_period {
            diags.warning(
                v.span(),
                format!(
                    "`period` {} is longer than [policy] validation_period {}: the watch may end before one datapoint covers it; use a shorter period",
                    fmt_duration(period),
                    fmt_duration(validation_period)
                ),
            );
        }
    }
    if !ok {
        return None;
    }
    Some(MetricWatch {
        namespace: namespace?,
        metric_name: metric_name?,
        dimensions,
        statistic: statistic?,
        threshold: threshold?,
        period,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::config::testing::{MINIMAL, errors};
    use crate::drift::NativeSchedule;

    const DEPENDENTS: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"

[policy]
max_age = "93d"
validation_period = "20m"
validation_interval = "30s"
native_schedule = "disable"

[[dependent]]
name = "payments-api"
notify_topic_arn = "arn:aws:sns:us-east-1:123456789012:payments-api"
alarms = ["payments-api-5xx", "payments-api-auth"]

[[dependent.metrics]]
namespace = "AWS/ApplicationELB"
metric_name = "HTTPCode_Target_4XX_Count"
dimensions = { LoadBalancer = "app/payments/abc", TargetGroup = "targetgroup/api/def" }
statistic = "Average"
threshold = 10
period = "5m"

[[dependent.metrics]]
namespace = "Payments"
metric_name = "AuthFailures"
threshold = 0.5

[[dependent]]
name = "ledger"

[[secret]]
id = "prod/payments/db"
strategy = "alternating-users"
change_ticket = "CHG-10421"
dependents = ["payments-api", "ledger"]
auto_rollback = true

[[selector]]
name_prefix = "prod/ledger/"
strategy = "single-user"
change_ticket = "CHG-10430"
dependents = ["ledger"]
"#;

    #[test]
    fn dependents_parse_into_typed_values() {
        let (cfg, warnings) = Config::from_source(Path::new("t.toml"), DEPENDENTS).unwrap();
        assert_eq!(cfg.policy.validation_period, Duration::from_secs(20 * 60));
        assert_eq!(cfg.policy.validation_interval, Duration::from_secs(30));
        assert_eq!(cfg.policy.native_schedule, NativeSchedule::Disable);
        assert_eq!(cfg.dependents.len(), 2);
        let api = cfg.dependent("payments-api").unwrap();
        assert_eq!(
            api,
            &DependentConfig {
                name: "payments-api".into(),
                notify_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:payments-api".into()),
                chat_topic_arn: None,
                chat_min_severity: 3,
                alarms: vec!["payments-api-5xx".into(), "payments-api-auth".into()],
                metrics: vec![
                    MetricWatch {
                        namespace: "AWS/ApplicationELB".into(),
                        metric_name: "HTTPCode_Target_4XX_Count".into(),
                        dimensions: BTreeMap::from([
                            ("LoadBalancer".to_string(), "app/payments/abc".to_string()),
                            ("TargetGroup".to_string(), "targetgroup/api/def".to_string()),
                        ]),
                        statistic: Statistic::Average,
                        // A TOML integer is a threshold too.
                        threshold: 10.0,
                        period: Duration::from_secs(300),
                    },
                    MetricWatch {
                        namespace: "Payments".into(),
                        metric_name: "AuthFailures".into(),
                        dimensions: BTreeMap::new(),
                        statistic: Statistic::Sum,
                        threshold: 0.5,
                        period: Duration::from_secs(60),
                    },
                ],
                logs: None,
            }
        );
        assert!(api.watched());
        let ledger = cfg.dependent("ledger").unwrap();
        assert!(!ledger.watched());
        assert_eq!(ledger.notify_topic_arn, None);
        assert!(cfg.dependent("billing").is_none());
        let s = &cfg.secrets[0].settings;
        assert_eq!(s.dependents, vec!["payments-api", "ledger"]);
        assert!(s.auto_rollback);
        assert!(!cfg.selectors[0].settings.auto_rollback);
        assert_eq!(Statistic::SampleCount.as_str(), "SampleCount");
        assert_eq!(
            serde_json::to_string(&Statistic::SampleCount).unwrap(),
            "\"SampleCount\""
        );
        // Only the notify-only dependent warns; the secret has a watched dependent.
        let warnings: Vec<String> = warnings.warnings().collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("dependent `ledger` has no `alarms`"),
            "{warnings:?}"
        );
    }

    #[test]
    fn undeclared_and_repeated_dependents_are_errors() {
        let src = format!(
            "{MINIMAL}dependents = [\"billing-api\"]\n\n[[dependent]]\nname = \"payments\"\nalarms = [\"a\", \"a\", \"\"]\n"
        );
        let errs = errors(&src);
        assert_eq!(
            errs,
            vec![
                "t.toml:9:15: error: unknown dependent `billing-api`: declare it with [[dependent]] name = \"billing-api\"",
                "t.toml:13:16: error: alarm `a` is listed twice for dependent `payments`; remove one",
                "t.toml:13:21: error: an alarm name may not be empty; name a CloudWatch alarm",
            ]
        );
    }

    #[test]
    fn log_groups_with_a_pattern_make_a_watched_dependent() {
        let (cfg, _) = Config::from_source(
            std::path::Path::new("t.toml"),
            r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"

[[dependent]]
name = "payments-api"
log_groups = ["/app/payments-api", "/aws/lambda/payments-auth"]
auth_error_pattern = '?"authentication failed" ?" 401 "'
max_auth_errors = 2

[[dependent]]
name = "defaults"
log_groups = ["/app/defaults"]
auth_error_pattern = "FATAL"
"#,
        )
        .unwrap();
        let logs = cfg.dependent("payments-api").unwrap().logs.clone().unwrap();
        assert_eq!(
            logs.groups,
            ["/app/payments-api", "/aws/lambda/payments-auth"]
        );
        assert_eq!(
            logs.pattern.as_str(),
            r#"?"authentication failed" ?" 401 ""#
        );
        assert!(logs.pattern.matches("GET / 401 1ms"));
        assert_eq!(logs.max_auth_errors, 2);
        let defaults = cfg.dependent("defaults").unwrap();
        assert!(defaults.watched(), "logs alone watch a dependent");
        assert_eq!(defaults.logs.as_ref().unwrap().max_auth_errors, 0);
    }
}
