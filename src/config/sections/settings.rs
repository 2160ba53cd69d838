//! What `[[secret]]` and `[[selector]]` share: schedule, window, strategy, change ticket,
//! custodians, dependents and rollback, with the `[policy]` defaults filled in and checked
//! against what the rest of the file declares.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use crate::config::checks::{Schedules, duration, in_range, minutes, written_in_range};
use crate::config::diag::Diagnostics;
use crate::config::raw::S;
use crate::config::{Custodian, PolicyConfig, SecretSettings, Strategy, fmt_duration};
use crate::ticket::is_ticket;

/// Fields common to `[[secret]]` and `[[selector]]`, borrowed from either.
pub(crate) struct RawSettings<'a> {
    pub(crate) schedule: &'a S<String>,
    pub(crate) window: &'a S<String>,
    pub(crate) strategy: &'a S<String>,
    pub(crate) change_ticket: &'a S<String>,
    pub(crate) dependents: &'a S<Vec<Spanned<String>>>,
    pub(crate) custodians: &'a S<Vec<Spanned<String>>>,
    pub(crate) vendor: &'a S<String>,
    pub(crate) auto_rollback: &'a S<bool>,
}

/// The [`RawSettings`] of a `RawSecret` or a `RawSelector`, whose shared fields have the
/// same names.
macro_rules! raw_settings {
    ($raw:expr) => {
        $crate::config::sections::settings::RawSettings {
            schedule: &$raw.schedule,
            window: &$raw.window,
            strategy: &$raw.strategy,
            change_ticket: &$raw.change_ticket,
            dependents: &$raw.dependents,
            custodians: &$raw.custodians,
            vendor: &$raw.vendor,
            auto_rollback: &$raw.auto_rollback,
        }
    };
}
pub(crate) use raw_settings;

/// What a `[[secret]]` or `[[selector]]` may refer to, declared elsewhere in the file.
pub(crate) struct Declared {
    pub(crate) groups: HashSet<String>,
    /// Whether `[identity_center]` is configured: a `group:NAME` custodian may then name
    /// an Identity Center group, which only the directory can confirm.
    pub(crate) directory: bool,
    /// Vendor name -> its settings (`None` for a `[[vendor]]` with errors, reported there).
    pub(crate) vendors: HashMap<String, Option<crate::config::VendorConfig>>,
    /// Dependent name -> whether it is watched (has alarms or metrics).
    pub(crate) dependents: HashMap<String, bool>,
    /// The span of `[policy] native_schedule` when it is "sync": every schedule in use must
    /// then be expressible as Secrets Manager rotation rules.
    pub(crate) sync: Option<Range<usize>>,
}

/// The settings of one `[[secret]]` or `[[selector]]` (`what`, whose table is at
/// `entry_span`); `None` (with the errors recorded) when they are unusable.
pub(crate) fn settings(
    diags: &mut Diagnostics,
    raw: RawSettings<'_>,
    entry_span: Range<usize>,
    what: &str,
    policy: &PolicyConfig,
    declared: &Declared,
    schedules: &mut Schedules,
) -> Option<SecretSettings> {
    let mut ok = true;
    let vendor = match raw.vendor {
        None => None,
        Some(v) => match declared.vendors.get(v.get_ref().trim()) {
            Some(Some(cfg)) => Some(cfg),
            // Its own errors are reported at the [[vendor]].
            Some(None) => {
                ok = false;
                None
            }
            None => {
                let name = v.get_ref();
                let mut known: Vec<&str> = declared.vendors.keys().map(String::as_str).collect();
                known.sort_unstable();
                let known = if known.is_empty() {
                    String::new()
                } else {
                    format!(" (declared: {})", known.join(", "))
                };
                diags.error(
                    v.span(),
                    format!(
                        "unknown vendor `{name}`{known}: declare it with [[vendor]] name = \"{name}\""
                    ),
                );
                ok = false;
                None
            }
        },
    };
    if let (Some(own), Some(v)) = (raw.schedule, vendor.filter(|v| v.schedule.is_some())) {
        diags.warning(
            own.span(),
            format!(
                "{what} sets its own schedule, which takes the place of vendor `{}`'s; remove it to follow the vendor",
                v.name
            ),
        );
    }
    let parsed = match (raw.schedule, vendor.and_then(|v| v.schedule.as_ref())) {
        (Some(s), _) => schedules.parse(diags, s),
        (None, Some(vs)) => Some(schedules.of(vs)),
        (None, None) => Some(schedules.of(&policy.default_schedule)),
    };
    let default_window = vendor
        .and_then(|v| v.window)
        .unwrap_or(policy.default_window);
    let window = duration(diags, raw.window, "window", default_window);
    ok &= written_in_range(diags, raw.window, window, minutes(1).., |_| {
        "`window` must be at least 1m: a rotation needs a minute to start in".into()
    });
    if let Some(p) = &parsed {
        let sched = &p.schedule;
        if let Some(gap) = p.min_gap {
            let span = raw
                .window
                .as_ref()
                .map_or_else(|| entry_span.clone(), |w| w.span());
            ok &= in_range(diags, span, window, ..=gap, |_| {
                format!(
                    "window {} is longer than the shortest gap ({}) between two runs of schedule `{sched}`; windows would overlap",
                    fmt_duration(window),
                    fmt_duration(gap)
                )
            })
            .is_some();
        }
        let own = raw.schedule.is_some() || raw.window.is_some();
        if let Some(gap) = p.max_gap.filter(|_| own)
            && gap + window > policy.max_age
        {
            diags.warning(
                raw.schedule.as_ref().map_or_else(|| entry_span.clone(), |s| s.span()),
                format!(
                    "schedule `{sched}` can leave {} between rotations (plus a {} window), longer than [policy] max_age {}; such secrets turn overdue before their next window",
                    fmt_duration(gap),
                    fmt_duration(window),
                    fmt_duration(policy.max_age)
                ),
            );
        }
    }
    if let (Some(sync), Some(p)) = (&declared.sync, &parsed)
        && let Err(why) = schedules.aws_rules(&p.schedule, window)
    {
        let sched = &p.schedule;
        // drift's reason may already say what to do instead; do not say it twice.
        let instead = |what: &str| {
            if why.contains("native_schedule") {
                String::new()
            } else {
                format!("; change {what} or use native_schedule = \"report\"")
            }
        };
        let own = raw.schedule.as_ref().or(raw.window.as_ref());
        match own {
            Some(v) => {
                diags.error(
                    v.span(),
                    format!(
                        "schedule `{sched}` cannot be written as a Secrets Manager schedule (native_schedule = \"sync\"): {why}{}",
                        instead("the schedule")
                    ),
                );
                ok = false;
            }
            // The policy defaults: reported once, at native_schedule.
            None => {
                if schedules
                    .reported_defaults
                    .insert((sched.as_str().to_string(), window))
                {
                    diags.error(
                        sync.clone(),
                        format!(
                            "default_schedule `{sched}` cannot be written as a Secrets Manager schedule (native_schedule = \"sync\"): {why}{}",
                            instead("default_schedule")
                        ),
                    );
                }
                ok = false;
            }
        }
    }
    let schedule = parsed.map(|p| p.schedule);
    let strategy = match raw.strategy {
        None => {
            diags.error(
                entry_span.clone(),
                format!(
                    "{what} is missing `strategy`; confirm the rotation strategy: \"single-user\" or \"alternating-users\""
                ),
            );
            None
        }
        Some(s) => match s.get_ref().as_str() {
            "single-user" => Some(Strategy::SingleUser),
            "alternating-users" => Some(Strategy::AlternatingUsers),
            other => {
                diags.error(
                    s.span(),
                    format!(
                        "unknown strategy `{other}`, expected \"single-user\" or \"alternating-users\""
                    ),
                );
                None
            }
        },
    };
    let change_ticket = match raw.change_ticket {
        Some(t) => {
            if !is_ticket(t.get_ref(), "CHG") {
                diags.error(
                    t.span(),
                    format!(
                        "change ticket `{}` must look like CHG-12345 (planned rotations use a CHG ticket)",
                        t.get_ref()
                    ),
                );
                ok = false;
            }
            Some(t.get_ref().clone())
        }
        None => {
            if policy.require_change_ticket {
                diags.error(
                    entry_span.clone(),
                    format!(
                        "{what} is missing `change_ticket`; scheduled rotations need a CHG ticket while [policy] require_change_ticket is true"
                    ),
                );
                ok = false;
            }
            None
        }
    };
    let mut custodians = Vec::new();
    for c in raw.custodians.iter().flat_map(|v| v.get_ref().iter()) {
        let name = c.get_ref().trim();
        if let Some(group) = name.strip_prefix("group:") {
            if !declared.groups.contains(group) && !declared.directory {
                diags.error(
                    c.span(),
                    format!("custodian `{name}` names no [[group]]; declare a [[group]] with name = \"{group}\", or configure [identity_center] to take the members of an Identity Center group"),
                );
                ok = false;
            }
            custodians.push(Custodian::Group(group.to_string()));
        } else if name.is_empty() {
            diags.error(c.span(), "custodian names may not be empty");
            ok = false;
        } else {
            custodians.push(Custodian::User(name.to_string()));
        }
    }
    let mut dependents: Vec<String> = Vec::new();
    let mut watched = false;
    for d in raw.dependents.iter().flat_map(|v| v.get_ref().iter()) {
        let name = d.get_ref();
        if name.trim().is_empty() {
            diags.error(d.span(), "a dependent may not be empty; name the service");
            ok = false;
        } else if dependents.contains(name) {
            diags.error(
                d.span(),
                format!("dependent `{name}` is listed twice; remove one"),
            );
            ok = false;
        } else {
            match declared.dependents.get(name) {
                Some(w) => watched |= *w,
                None => {
                    diags.error(
                        d.span(),
                        format!(
                            "unknown dependent `{name}`: declare it with [[dependent]] name = \"{name}\""
                        ),
                    );
                    ok = false;
                }
            }
            dependents.push(name.clone());
        }
    }
    let auto_rollback = raw.auto_rollback.as_ref().is_some_and(|b| *b.get_ref());
    if let Some(b) = raw.auto_rollback
        && *b.get_ref()
        && strategy == Some(Strategy::SingleUser)
    {
        // Rollback moves labels only. After a single-user rotation's setSecret the
        // database no longer accepts the old password, so moving AWSCURRENT back would
        // hand every client a password the database refuses.
        diags.error(
            b.span(),
            format!(
                "{what} has auto_rollback = true with strategy \"single-user\": a rollback moves AWSCURRENT back to a password the database no longer accepts after setSecret; use strategy \"alternating-users\" (the old user keeps working) or remove auto_rollback"
            ),
        );
        ok = false;
    } else if let Some(b) = raw.auto_rollback
        && *b.get_ref()
        && !watched
    {
        diags.warning(
            b.span(),
            format!(
                "{what} has auto_rollback = true but none of its dependents has `alarms`, [[dependent.metrics]] or `log_groups`, so it can never roll back on its own; list a watched dependent or remove auto_rollback"
            ),
        );
    }
    let notice = vendor
        .and_then(|v| v.notice.clone())
        .unwrap_or_else(|| policy.notice.clone());
    let vendor = vendor.map(|v| v.name.clone());
    if !ok {
        return None;
    }
    Some(SecretSettings {
        schedule: schedule?,
        window,
        strategy: strategy?,
        change_ticket,
        dependents,
        custodians,
        vendor,
        auto_rollback,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::config::testing::{MINIMAL, errors};

    #[test]
    fn a_window_under_a_minute_is_rejected() {
        let src = MINIMAL.replace(
            "strategy = \"single-user\"",
            "strategy = \"single-user\"\nwindow = \"30s\"",
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("`window` must be at least 1m"), "{errs:?}");
        assert!(errs[0].starts_with("t.toml:8:10: error:"), "{errs:?}");
    }

    #[test]
    fn auto_rollback_without_a_watched_dependent_warns() {
        let src = MINIMAL.replace(
            "strategy = \"single-user\"",
            "strategy = \"alternating-users\"\nauto_rollback = true",
        );
        let (cfg, warnings) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert!(cfg.secrets[0].settings.auto_rollback);
        let warnings: Vec<String> = warnings
            .warnings()
            .filter(|w| w.contains("auto_rollback"))
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "t.toml:8:17: warning: [[secret]] `prod/payments/db` has auto_rollback = true"
            ),
            "{warnings:?}"
        );
    }

    #[test]
    fn auto_rollback_is_refused_for_single_user() {
        // Rolling a single-user secret back hands out a password the database refuses.
        let src = MINIMAL.replace(
            "strategy = \"single-user\"",
            "strategy = \"single-user\"\nauto_rollback = true",
        );
        let errors = errors(&src);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "t.toml:8:17: error: [[secret]] `prod/payments/db` has auto_rollback = true with strategy \"single-user\""
            ),
            "{errors:?}"
        );
    }
}
