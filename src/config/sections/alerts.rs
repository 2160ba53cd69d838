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

#[cfg(test)]
mod tests {
    use crate::config::testing::errors;

    const SECRET: &str =
        "\n[[secret]]\nid = \"a\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-1\"\n";

    #[test]
    fn alerts_need_the_security_topic() {
        assert_eq!(
            errors(SECRET),
            vec![
                "t.toml:1:1: error: missing [alerts] section; set security_topic_arn to the SNS topic Security subscribes to"
            ]
        );
        let src = format!(
            "\n[alerts]\nnotify_topic_arn = \"arn:aws:sns:us-east-1:1234:notices\"\n{SECRET}"
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:2:2: error: [alerts] is missing `security_topic_arn`; escalations need the SNS topic Security subscribes to",
                "t.toml:3:20: error: malformed ARN `arn:aws:sns:us-east-1:1234:notices`: account id `1234` must be 12 digits",
            ]
        );
    }
}
