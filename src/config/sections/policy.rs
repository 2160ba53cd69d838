//! `[policy]`: the fleet-wide defaults (maximum age, schedule, window, change tickets), the
//! post-rotation watch, and what to do about Secrets Manager's own schedules.

use std::ops::Range;
use std::time::Duration;

use crate::config::checks::{
    Schedules, duration, hours, in_range, minutes, quarterly, written_in_range,
};
use crate::config::diag::Diagnostics;
use crate::config::raw::RawPolicy;
use crate::config::{PolicyConfig, fmt_duration};
use crate::drift::NativeSchedule;

/// `[policy]`, validated; the defaults when the section is absent. The default schedule is
/// parsed into `schedules`, where the secrets that use it find it.
pub(crate) fn policy(
    diags: &mut Diagnostics,
    p: &RawPolicy,
    schedules: &mut Schedules,
) -> PolicyConfig {
    let default_schedule = match &p.default_schedule {
        Some(s) => schedules.parse(diags, s),
        None => Some(schedules.of(&quarterly())),
    };
    let default_window = duration(diags, &p.default_window, "default_window", hours(4));
    let validation_period = duration(
        diags,
        &p.validation_period,
        "validation_period",
        minutes(15),
    );
    let period_ok = written_in_range(
        diags,
        &p.validation_period,
        validation_period,
        Duration::from_secs(1)..=hours(24),
        |_| {
            "validation_period must be between 1s and 24h; 15m is the default (the Secrets Rotation Guide's post-rotation monitoring)".into()
        },
    );
    let validation_interval = duration(
        diags,
        &p.validation_interval,
        "validation_interval",
        Duration::from_secs(60),
    );
    let interval_ok = written_in_range(
        diags,
        &p.validation_interval,
        validation_interval,
        Duration::from_secs(1)..,
        |_| {
            "validation_interval must be at least 1s (each poll calls CloudWatch); 60s is the default".into()
        },
    );
    if interval_ok
        && period_ok
        && let Some(v) = p
            .validation_interval
            .as_ref()
            .or(p.validation_period.as_ref())
    {
        in_range(
            diags,
            v.span(),
            validation_interval,
            ..=validation_period,
            |_| {
                format!(
                    "validation_interval ({}) must not be longer than validation_period ({}); shorten the interval so that CloudWatch is polled during the watch",
                    fmt_duration(validation_interval),
                    fmt_duration(validation_period)
                )
            },
        );
    }
    let native_schedule = match &p.native_schedule {
        None => NativeSchedule::default(),
        Some(v) => match v.get_ref().as_str() {
            "report" => NativeSchedule::Report,
            "sync" => NativeSchedule::Sync,
            "disable" => NativeSchedule::Disable,
            other => {
                diags.error(
                    v.span(),
                    format!(
                        "unknown native_schedule `{other}`, expected \"report\", \"sync\" or \"disable\""
                    ),
                );
                NativeSchedule::default()
            }
        },
    };
    let rotation_timeout = duration(diags, &p.rotation_timeout, "rotation_timeout", minutes(15));
    written_in_range(
        diags,
        &p.rotation_timeout,
        rotation_timeout,
        Duration::from_secs(5)..=hours(24),
        |_| {
            "rotation_timeout must be between 5s and 24h; 15m is the default (a rotation function's four steps, cold start included)".into()
        },
    );
    let policy = PolicyConfig {
        max_age: duration(diags, &p.max_age, "max_age", hours(90 * 24)),
        default_schedule: default_schedule
            .as_ref()
            .map_or_else(quarterly, |d| d.schedule.clone()),
        default_window,
        require_change_ticket: p
            .require_change_ticket
            .as_ref()
            .is_none_or(|b| *b.get_ref()),
        validation_period,
        validation_interval,
        native_schedule,
        rotation_timeout,
        notice: crate::config::checks::notice_leads(diags, &p.notice).unwrap_or_default(),
    };
    if let Some(d) = &default_schedule
        && let Some(gap) = d.min_gap
    {
        written_in_range(diags, &p.default_window, default_window, ..=gap, |_| {
            format!(
                "default_window {} is longer than the shortest gap ({}) between two runs of `{}`",
                fmt_duration(default_window),
                fmt_duration(gap),
                d.schedule
            )
        });
    }
    if let Some(gap) = policy
        .default_schedule
        .max_gap()
        .and_then(|g| g.to_std().ok())
        && gap + policy.default_window > policy.max_age
        && !diags.has_errors()
    {
        let span = p
            .max_age
            .as_ref()
            .or(p.default_schedule.as_ref())
            .map_or(0..0, |s| s.span());
        diags.warning(
            span,
            format!(
                "default_schedule `{}` can leave {} between rotations (plus a {} window), longer than max_age {}; secrets on it turn overdue and rotate early in the longest periods",
                policy.default_schedule,
                fmt_duration(gap),
                fmt_duration(policy.default_window),
                fmt_duration(policy.max_age)
            ),
        );
    }
    policy
}

/// The span of `[policy] native_schedule` when it is "sync": every schedule in use must then
/// be expressible as Secrets Manager rotation rules, and the defaults are reported there.
pub(crate) fn sync_span(p: &RawPolicy, policy: &PolicyConfig) -> Option<Range<usize>> {
    p.native_schedule
        .as_ref()
        .filter(|_| policy.native_schedule == NativeSchedule::Sync)
        .map(|v| v.span())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::Config;
    use crate::config::testing::{MINIMAL, errors};

    #[test]
    fn rotation_timeout_defaults_to_15m_and_is_bounded() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(cfg.policy.rotation_timeout, Duration::from_secs(15 * 60));
        let src = format!("{MINIMAL}\n[policy]\nrotation_timeout = \"90s\"\n");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(cfg.policy.rotation_timeout, Duration::from_secs(90));
        let src = format!("{MINIMAL}\n[policy]\nrotation_timeout = \"1s\"\n");
        let errors = errors(&src);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("rotation_timeout must be between 5s and 24h"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_short_validation_period_needs_a_short_interval() {
        let src = format!("{MINIMAL}\n[policy]\nvalidation_period = \"30s\"\n");
        let errs = errors(&src);
        assert_eq!(
            errs,
            vec![
                "t.toml:11:21: error: validation_interval (1m) must not be longer than validation_period (30s); shorten the interval so that CloudWatch is polled during the watch"
            ]
        );
        let ok = format!(
            "{MINIMAL}\n[policy]\nvalidation_period = \"30s\"\nvalidation_interval = \"10s\"\n"
        );
        assert!(errors(&ok).is_empty());
        for bad in ["25h", "500ms"] {
            let src = format!("{MINIMAL}\n[policy]\nvalidation_period = \"{bad}\"\n");
            let errs = errors(&src);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].contains("validation_period must be between 1s and 24h"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn native_schedule_values() {
        let src = format!("{MINIMAL}\n[policy]\nnative_schedule = \"off\"\n");
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:11:19: error: unknown native_schedule `off`, expected \"report\", \"sync\" or \"disable\""
            ]
        );
    }
}
