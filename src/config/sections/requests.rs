//! `[requests]`: CommandBridge's rotation and rollback requests, which arrive on the
//! `[events]` queue, and who may approve what.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use crate::arn::Principal;
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
    let (levels, principals) = levels(diags, r);
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
        principals,
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

/// `levels`: each key's level, IAM users, roles and sessions by their
/// [`Principal`] (see there for why a role is matched by account and name), anything
/// else exactly. Two keys that name one principal (a role with and without its path, a
/// session and its role, names differing in case) are an error: which level applies
/// would depend on how the caller's ARN is spelled. A session key gives its level to the
/// whole role, which is said with a warning.
fn levels(
    diags: &mut Diagnostics,
    r: &RawRequests,
) -> (HashMap<String, Level>, HashMap<Principal, Level>) {
    let mut levels = HashMap::new();
    let mut principals = HashMap::new();
    let Some(table) = &r.levels else {
        return (levels, principals);
    };
    // In the order written, so that a collision is reported at the second key.
    let mut entries: Vec<(&String, &Spanned<String>)> = table.get_ref().iter().collect();
    entries.sort_by_key(|(_, level)| level.span().start);
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (identity, level) in entries {
        let key = identity.trim();
        let parsed = Level::parse(level.get_ref().trim());
        if key.is_empty() {
            diags.error(
                level.span(),
                "an empty identity cannot have a level; use a user name or an IAM principal ARN",
            );
            continue;
        }
        let Some(l) = parsed else {
            diags.error(
                level.span(),
                format!(
                    "unknown level `{}` for `{identity}`: use \"L1\", \"L2\" or \"L3\" (identities not listed are L1)",
                    level.get_ref()
                ),
            );
            continue;
        };
        if key.starts_with("arn:")
            && let Err(e) = crate::arn::Arn::parse(key)
        {
            diags.error(
                level.span(),
                format!(
                    "`{identity}` is not an ARN ({e}): use an IAM user or role ARN (arn:aws:iam::123456789012:role/NAME), or a CommandBridge user name"
                ),
            );
            continue;
        }
        let principal = Principal::of(key);
        let norm = principal
            .as_ref()
            .map_or(key.to_string(), |p| p.to_string());
        if let Some(first) = seen.get(&norm) {
            diags.error(
                level.span(),
                format!(
                    "`{identity}` and `{first}` name the same identity ({norm}) once normalised: roles are matched by account and name (STS session ARNs carry no role path, and a session has its role's level), names without regard to case as IAM compares them; keep one key"
                ),
            );
            continue;
        }
        seen.insert(norm, identity.as_str());
        match principal {
            Some(p) => {
                if Principal::is_session(key) {
                    diags.warning(
                        level.span(),
                        format!(
                            "`{identity}` is an assumed-role session: its level {} goes to every session of {p} (whoever assumes a role chooses the session name); key the role ARN instead",
                            l.as_str()
                        ),
                    );
                }
                principals.insert(p, l);
            }
            None => {
                levels.insert(key.to_string(), l);
            }
        }
    }
    (levels, principals)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::testing::{MINIMAL, errors, warnings_of};
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

    const EVENTS: &str = "\n[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\nallowed_accounts = [\"123456789012\"]\n";

    #[test]
    fn keys_naming_one_principal_once_normalised_collide() {
        // Line 14: a role with its path, then the same role without it, a session of it,
        // and a user whose name differs only in case from another.
        let src = format!(
            "{MINIMAL}{EVENTS}\n[requests]\nlevels = {{ \"arn:aws:iam::123456789012:role/team/Lead\" = \"L3\", \"arn:aws:iam::123456789012:role/lead\" = \"L1\", \"arn:aws:sts::123456789012:assumed-role/Lead/alice\" = \"L3\", \"arn:aws:iam::123456789012:user/Bob\" = \"L2\", \"arn:aws:iam::123456789012:user/ops/bob\" = \"L2\", \"arn:aws:iam:123456789012:user/carol\" = \"L2\" }}\n"
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("t.toml:15:103: error: `arn:aws:iam::123456789012:role/lead` and `arn:aws:iam::123456789012:role/team/Lead` name the same identity (arn:aws:iam::123456789012:role/lead) once normalised"),
            "{errs:#?}"
        );
        assert!(errs[1].contains("`arn:aws:sts::123456789012:assumed-role/Lead/alice` and `arn:aws:iam::123456789012:role/team/Lead`"), "{errs:#?}");
        assert!(
            errs[2].contains(
                "`arn:aws:iam::123456789012:user/ops/bob` and `arn:aws:iam::123456789012:user/Bob`"
            ),
            "{errs:#?}"
        );
        assert!(
            errs[3].contains("`arn:aws:iam:123456789012:user/carol` is not an ARN"),
            "{errs:#?}"
        );
    }

    #[test]
    fn a_session_key_gives_its_level_to_the_role_and_says_so() {
        let src = format!(
            "{MINIMAL}{EVENTS}\n[requests]\nlevels = {{ \"arn:aws:sts::123456789012:assumed-role/Ops/alice\" = \"L2\", \"arn:aws:iam::123456789012:role/admin/Lead\" = \"L3\", \"arn:aws:iam::123456789012:root\" = \"L3\", alice = \"L3\" }}\n"
        );
        let warnings = warnings_of(&src);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0].contains("goes to every session of arn:aws:iam::123456789012:role/ops"),
            "{warnings:#?}"
        );
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        let r = cfg.requests.unwrap();
        // What STS says of a session: the role's level, whatever the session or the case.
        assert_eq!(
            r.level_of("arn:aws:sts::123456789012:assumed-role/Lead/bob"),
            Level::L3
        );
        assert_eq!(
            r.level_of("arn:aws:sts::123456789012:assumed-role/ops/mallory"),
            Level::L2
        );
        assert_eq!(r.level_of("arn:aws:iam::123456789012:role/Lead"), Level::L3);
        // Another account's role of the same name is someone else.
        assert_eq!(
            r.level_of("arn:aws:sts::111111111111:assumed-role/Lead/bob"),
            Level::L1
        );
        // Not a user or a role: exactly as written.
        assert_eq!(r.level_of("arn:aws:iam::123456789012:root"), Level::L3);
        assert_eq!(r.level_of("alice"), Level::L3);
        // An IAM user named alice is not the CommandBridge user alice.
        assert_eq!(
            r.level_of("arn:aws:iam::123456789012:user/alice"),
            Level::L1
        );
    }
}
