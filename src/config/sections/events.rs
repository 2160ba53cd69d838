//! `[events]`: the SQS queue EventBridge delivers to, its consumers, the departure SLA,
//! the EventBridge target settings, CloudTrail catch-up and the custom event sources.

use std::ops::Range;

use toml::Spanned;

use crate::config::checks::{
    arn, duration, hours, http_url, in_range, integer, is_account_id, minutes, positive,
    written_in_range,
};
use crate::config::diag::Diagnostics;
use crate::config::raw::{RawCustomSource, RawEvents, S};
use crate::config::{CloudTrailConfig, CustomSource, EventsConfig, fmt_duration};

/// `[events]`, validated; `span` is its header's.
pub(crate) fn events(diags: &mut Diagnostics, span: &Range<usize>, e: &RawEvents) -> EventsConfig {
    let queue_url = match &e.queue_url {
        None => {
            diags.error(
                span.clone(),
                "[events] is missing `queue_url`; set the SQS queue EventBridge delivers to, or remove [events]",
            );
            String::new()
        }
        Some(u) => http_url(diags, u, "queue_url"),
    };
    let mut allowed_accounts = Vec::new();
    for a in e.allowed_accounts.iter().flat_map(|v| v.get_ref().iter()) {
        if !is_account_id(a.get_ref()) {
            diags.error(
                a.span(),
                format!("account id `{}` must be 12 digits", a.get_ref()),
            );
        }
        allowed_accounts.push(a.get_ref().clone());
    }
    if allowed_accounts.is_empty() {
        diags.warning(
            span.clone(),
            "[events] has no `allowed_accounts`: an event from any AWS account that can reach the queue is acted on; list the accounts whose events may trigger rotations, e.g. allowed_accounts = [\"123456789012\"]",
        );
    }
    let departure_sla = duration(diags, &e.departure_sla, "departure_sla", hours(24));
    let sla_warning = duration(diags, &e.sla_warning, "sla_warning", hours(4));
    let at = e
        .sla_warning
        .as_ref()
        .or(e.departure_sla.as_ref())
        .map_or_else(|| span.clone(), |s| s.span());
    in_range(diags, at, sla_warning, ..departure_sla, |_| {
        format!(
            "sla_warning ({}) must be shorter than departure_sla ({})",
            fmt_duration(sla_warning),
            fmt_duration(departure_sla)
        )
    });
    let ct = e.cloudtrail.as_ref().map(|c| c.get_ref());
    let lookback = ct.map_or(&None, |c| &c.lookback);
    let cloudtrail = CloudTrailConfig {
        endpoint_url: ct
            .and_then(|c| c.endpoint_url.as_ref())
            .map(|u| http_url(diags, u, "endpoint_url")),
        enabled: ct
            .and_then(|c| c.enabled.as_ref())
            .is_some_and(|b| *b.get_ref()),
        lookback: duration(diags, lookback, "lookback", hours(24)),
        poll_interval: duration(
            diags,
            ct.map_or(&None, |c| &c.poll_interval),
            "poll_interval",
            minutes(5),
        ),
    };
    written_in_range(
        diags,
        lookback,
        cloudtrail.lookback,
        ..=hours(90 * 24),
        |_| "lookback may not exceed 90d, the CloudTrail event history".into(),
    );
    let workers = positive(diags, &e.workers, "workers", 64, 4);
    let max_event_rotations_per_hour = positive(
        diags,
        &e.max_event_rotations_per_hour,
        "max_event_rotations_per_hour",
        100_000,
        50,
    );
    // EventBridge's limits for a target retry policy: 0-185 attempts, 60 s to 24 h.
    let max_retry_attempts = integer(
        diags,
        &e.max_retry_attempts,
        "max_retry_attempts",
        0..=185,
        185,
    );
    let max_event_age = duration(diags, &e.max_event_age, "max_event_age", hours(24));
    written_in_range(
        diags,
        &e.max_event_age,
        max_event_age,
        minutes(1)..=hours(24),
        |_| "max_event_age must be between 1m and 24h (EventBridge's limits)".into(),
    );
    let dead_letter_queue_arn = e
        .dead_letter_queue_arn
        .as_ref()
        .map(|a| arn(diags, a, "sqs"));
    let departures = custom_sources(diags, &e.departure, "departure", "user_pointer");
    let compromises = custom_sources(diags, &e.compromise, "compromise", "secret_pointer");
    EventsConfig {
        queue_url,
        allowed_accounts,
        departure_sla,
        sla_warning,
        event_bus: match &e.event_bus {
            None => "default".to_string(),
            Some(b) => {
                if b.get_ref().trim().is_empty() {
                    diags.error(
                        b.span(),
                        "event_bus may not be empty; leave it out for the `default` bus",
                    );
                }
                b.get_ref().clone()
            }
        },
        workers,
        retry_failed: e.retry_failed.as_ref().is_some_and(|b| *b.get_ref()),
        retry_backoff: duration(diags, &e.retry_backoff, "retry_backoff", hours(1)),
        max_event_rotations_per_hour,
        dead_letter_queue_arn,
        max_event_age,
        max_retry_attempts,
        cloudtrail,
        departures,
        compromises,
    }
}

/// `[[events.departure]]` (`what`, naming a user at `user_pointer`) or
/// `[[events.compromise]]` (naming a secret at `secret_pointer`); the complete ones.
fn custom_sources(
    diags: &mut Diagnostics,
    list: &S<Vec<Spanned<RawCustomSource>>>,
    what: &str,
    pointer_key: &str,
) -> Vec<CustomSource> {
    let mut out = Vec::new();
    for item in list.iter().flat_map(|l| l.get_ref().iter()) {
        let c = item.get_ref();
        let (pointer, other) = if pointer_key == "user_pointer" {
            (&c.user_pointer, &c.secret_pointer)
        } else {
            (&c.secret_pointer, &c.user_pointer)
        };
        if let Some(o) = other {
            diags.error(
                o.span(),
                format!("[[events.{what}]] takes `{pointer_key}`, not this key"),
            );
        }
        let mut field = |v: &S<String>, key: &str| match v {
            Some(v) if !v.get_ref().is_empty() => Some(v.get_ref().clone()),
            _ => {
                diags.error(
                    item.span(),
                    format!("[[events.{what}]] needs a non-empty `{key}`"),
                );
                None
            }
        };
        let source = field(&c.source, "source");
        let detail_type = field(&c.detail_type, "detail_type");
        let ptr = field(pointer, pointer_key);
        if let (Some(p), Some(v)) = (&ptr, pointer) {
            if !p.starts_with('/') {
                diags.error(
                    v.span(),
                    format!(
                        "`{pointer_key}` must be a JSON pointer starting with `/`, like /detail/username"
                    ),
                );
            } else if p
                .split('~')
                .skip(1)
                .any(|rest| !rest.starts_with(['0', '1']))
            {
                // RFC 6901: `~` only as `~0` (a tilde) or `~1` (a slash).
                diags.error(
                    v.span(),
                    format!(
                        "`{pointer_key}` has a `~` that is not `~0` or `~1` (RFC 6901 escapes for `~` and `/`)"
                    ),
                );
            }
        }
        if let (Some(source), Some(detail_type), Some(pointer)) = (source, detail_type, ptr) {
            out.push(CustomSource {
                source,
                detail_type,
                pointer,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::Config;
    use crate::config::testing::{MINIMAL, errors};

    /// MINIMAL (8 lines), an `[events]` header on line 10 and its queue on line 11, then
    /// `keys` from line 12.
    fn events_section(keys: &str) -> String {
        format!(
            "{MINIMAL}\n[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n{keys}\n"
        )
    }

    #[test]
    fn event_limits_out_of_range_are_errors() {
        let src = events_section(
            "workers = 65\nmax_event_rotations_per_hour = 0\nmax_retry_attempts = 186\nmax_event_age = \"30s\"\nsla_warning = \"24h\"\n\n[events.cloudtrail]\nlookback = \"91d\"",
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:12:11: error: workers must be between 1 and 64, found 65",
                "t.toml:13:32: error: max_event_rotations_per_hour must be between 1 and 100000, found 0",
                "t.toml:14:22: error: max_retry_attempts must be between 0 and 185, found 186",
                "t.toml:15:17: error: max_event_age must be between 1m and 24h (EventBridge's limits)",
                "t.toml:16:15: error: sla_warning (1d) must be shorter than departure_sla (1d)",
                "t.toml:19:12: error: lookback may not exceed 90d, the CloudTrail event history",
            ]
        );
        let src = events_section("max_retry_attempts = -1\nmax_event_age = \"24h 1s\"");
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:12:22: error: max_retry_attempts must be between 0 and 185, found -1",
                "t.toml:13:17: error: max_event_age must be between 1m and 24h (EventBridge's limits)",
            ]
        );
    }

    #[test]
    fn event_limits_themselves_are_accepted() {
        let src = events_section(
            "workers = 64\nmax_event_rotations_per_hour = 100000\nmax_retry_attempts = 0\nmax_event_age = \"24h\"\nsla_warning = \"23h\"\n\n[events.cloudtrail]\nlookback = \"90d\"",
        );
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        let events = cfg.events.unwrap();
        assert_eq!(events.workers.get(), 64);
        assert_eq!(events.max_event_rotations_per_hour.get(), 100_000);
        assert_eq!(events.max_retry_attempts, 0);
        assert_eq!(events.max_event_age, Duration::from_secs(24 * 3600));
        assert_eq!(events.cloudtrail.lookback, Duration::from_secs(90 * 86400));
        // The defaults.
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &events_section("")).unwrap();
        let events = cfg.events.unwrap();
        assert_eq!(events.workers.get(), 4);
        assert_eq!(events.max_event_rotations_per_hour.get(), 50);
        assert_eq!(events.max_retry_attempts, 185);
        assert_eq!(events.event_bus, "default");
    }
}
