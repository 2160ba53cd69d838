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
        chat_topic_arn: a.chat_topic_arn.as_ref().map(|t| arn(diags, t, "sns")),
        chat_min_severity: min_severity(diags, &a.chat_min_severity, 2),
    })
}

/// A `chat_min_severity` ("P1", "P2" or "P3") as its rank, or `default`.
pub(crate) fn min_severity(
    diags: &mut Diagnostics,
    value: &crate::config::raw::S<String>,
    default: u8,
) -> u8 {
    let Some(v) = value else {
        return default;
    };
    match v.get_ref().as_str() {
        "P1" => 1,
        "P2" => 2,
        "P3" => 3,
        other => {
            diags.error(
                v.span(),
                format!("unknown chat_min_severity `{other}`, expected \"P1\", \"P2\" or \"P3\""),
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::errors;

    const SECRET: &str =
        "\n[[secret]]\nid = \"a\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-1\"\n";

    #[test]
    fn chat_gets_p1_and_p2_unless_told_otherwise() {
        use crate::config::Config;
        use std::path::Path;
        let base = "[alerts]\nsecurity_topic_arn = \"arn:aws:sns:us-east-1:123456789012:sec\"\n";
        let (cfg, _) =
            Config::from_source(Path::new("t.toml"), &format!("{base}{SECRET}")).unwrap();
        assert_eq!(cfg.alerts.chat_topic_arn, None);
        assert_eq!(cfg.alerts.chat_min_severity, 2);
        let src = format!(
            "{base}chat_topic_arn = \"arn:aws:sns:us-east-1:123456789012:chat\"\nchat_min_severity = \"P1\"\n{SECRET}"
        );
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(
            cfg.alerts.chat_topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:123456789012:chat")
        );
        assert_eq!(cfg.alerts.chat_min_severity, 1);
        let src = format!("{base}chat_min_severity = \"P4\"\n{SECRET}");
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:3:21: error: unknown chat_min_severity `P4`, expected \"P1\", \"P2\" or \"P3\""
            ]
        );
    }

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
