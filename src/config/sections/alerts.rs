//! `[alerts]`: the SNS topics escalations and notices go to, and how often they repeat.

use std::ops::Range;

use crate::config::AlertsConfig;
use crate::config::checks::{arn, duration, hours, minutes};
use crate::config::diag::Diagnostics;
use crate::config::raw::RawAlerts;

/// `[alerts]`, validated (`span` is its header's); `None` when the section is missing, which
/// is an error: escalations need a topic.
pub(crate) fn alerts(
    diags: &mut Diagnostics,
    section: Option<&(Range<usize>, RawAlerts)>,
) -> Option<AlertsConfig> {
    let Some((span, a)) = section else {
        diags.error(
            0..0,
            "missing [alerts] section; set security_topic_arn to the SNS topic Security subscribes to",
        );
        return None;
    };
    let security_topic_arn = match &a.security_topic_arn {
        None => {
            diags.error(
                span.clone(),
                "[alerts] is missing `security_topic_arn`; escalations need the SNS topic Security subscribes to",
            );
            String::new()
        }
        Some(t) => arn(diags, t, "sns"),
    };
    Some(AlertsConfig {
        security_topic_arn,
        notify_topic_arn: a.notify_topic_arn.as_ref().map(|t| arn(diags, t, "sns")),
        realert_interval: duration(diags, &a.realert_interval, "realert_interval", hours(4)),
        unreachable_after: duration(
            diags,
            &a.unreachable_after,
            "unreachable_after",
            minutes(10),
        ),
    })
}
