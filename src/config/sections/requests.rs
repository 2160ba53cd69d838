//! `[requests]`: CommandBridge's rotation and rollback requests, which arrive on the
//! `[events]` queue, and who may approve what.

use std::collections::HashMap;
use std::ops::Range;

use crate::config::checks::{arn, duration, hours};
use crate::config::diag::Diagnostics;
use crate::config::raw::RawRequests;
use crate::config::{EventsConfig, Level, RequestsConfig};

/// `[requests]`, validated; `span` is its header's. It needs `events`, whose queue the
/// requests arrive on and whose bus its answers go to by default.
pub(crate) fn requests(
    diags: &mut Diagnostics,
    span: &Range<usize>,
    r: &RawRequests,
    events: Option<&EventsConfig>,
) -> RequestsConfig {
    if events.is_none() {
        diags.error(
            span.clone(),
            "[requests] needs an [events] section: requests arrive on its queue_url",
        );
    }
    let source = match &r.source {
        None => "commandbridge".to_string(),
        Some(v) => {
            let text = v.get_ref().trim();
            if text.is_empty() || text.starts_with("aws.") {
                diags.error(
                    v.span(),
                    format!(
                        "`{}` cannot be the requests source: give the EventBridge source CommandBridge puts its events with (not empty, not aws.*)",
                        v.get_ref()
                    ),
                );
            }
            text.to_string()
        }
    };
    let mut levels = HashMap::new();
    if let Some(table) = &r.levels {
        for (identity, level) in table.get_ref() {
            match Level::parse(level.get_ref().trim()) {
                _ if identity.trim().is_empty() => diags.error(
                    level.span(),
                    "an empty identity cannot have a level; use a user name or an IAM principal ARN",
                ),
                Some(l) => {
                    levels.insert(identity.trim().to_string(), l);
                }
                None => diags.error(
                    level.span(),
                    format!(
                        "unknown level `{}` for `{identity}`: use \"L1\", \"L2\" or \"L3\" (identities not listed are L1)",
                        level.get_ref()
                    ),
                ),
            }
        }
    }
    let approvers_topic_arn = r.approvers_topic_arn.as_ref().map(|t| arn(diags, t, "sns"));
    let event_bus = match &r.event_bus {
        Some(v) if v.get_ref().trim().is_empty() => {
            diags.error(
                v.span(),
                "event_bus may not be empty; leave it out to use [events] event_bus",
            );
            String::new()
        }
        Some(v) => v.get_ref().trim().to_string(),
        None => events.map_or("default".to_string(), |e| e.event_bus.clone()),
    };
    RequestsConfig {
        source,
        levels,
        approvers_topic_arn,
        approval_timeout: duration(diags, &r.approval_timeout, "approval_timeout", hours(24)),
        emergency_approval_timeout: duration(
            diags,
            &r.emergency_approval_timeout,
            "emergency_approval_timeout",
            hours(1),
        ),
        event_bus,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::testing::{MINIMAL, errors};
    use crate::config::{Config, Level};

    #[test]
    fn requests_need_events_and_known_levels() {
        let src = format!("{MINIMAL}\n[requests]\nlevels = {{ alice = \"L3\", bob = \"L4\" }}\n");
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:10:2: error: [requests] needs an [events] section: requests arrive on its queue_url",
                "t.toml:11:32: error: unknown level `L4` for `bob`: use \"L1\", \"L2\" or \"L3\" (identities not listed are L1)",
            ]
        );
    }

    #[test]
    fn requests_answer_on_the_events_bus_by_default() {
        let src = format!(
            "{MINIMAL}\n[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\nevent_bus = \"ops\"\n\n[requests]\nlevels = {{ alice = \"L3\", \"arn:aws:iam::123456789012:role/x\" = \"L2\" }}\n"
        );
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        let requests = cfg.requests.unwrap();
        assert_eq!(requests.source, "commandbridge");
        assert_eq!(requests.event_bus, "ops");
        assert_eq!(requests.level_of("alice"), Level::L3);
        assert_eq!(
            requests.level_of("arn:aws:iam::123456789012:role/x"),
            Level::L2
        );
        assert_eq!(requests.level_of("carol"), Level::L1);
    }
}
