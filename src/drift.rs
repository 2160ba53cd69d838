//! Native schedule drift: Secrets Manager's own `RotationRules` against rotationd's TOML
//! schedule.
//!
//! Why this exists: a secret that has rotation turned on in Secrets Manager is rotated by
//! Secrets Manager on its own schedule as well as by rotationd on the TOML one. Two
//! schedulers on one secret mean rotations nobody planned, two rotations back to back, or a
//! native rotation landing in a change freeze. `[policy] native_schedule` says what to do
//! about it:
//!
//! - `report` (default): change nothing. A secret whose native rotation is on and differs
//!   from the TOML schedule (or whose TOML schedule cannot be written for Secrets Manager
//!   at all) is drift, shown in `status`, as a metric and as a P3 notice. Native rotation
//!   that is off is not drift: only rotationd rotates, which is what the TOML says.
//! - `sync`: write the TOML schedule into Secrets Manager ([`Action::Write`]) whenever it
//!   is off or differs, so both schedulers agree on the same windows. Config validation
//!   normally rejects `sync` for a schedule that cannot be written.
//! - `disable`: keep native rotation off ([`Action::Cancel`]), so only rotationd rotates.
//!
//! Everything here is pure: the callers read `DescribeSecret`/`ListSecrets` and issue
//! `RotateSecret`/`CancelRotateSecret`. How the TOML schedule is written in Secrets
//! Manager's syntax, and what Secrets Manager holds, are [`crate::schedule::aws_cron`]'s;
//! this module decides what a difference between the two means.

// The rules drift compares, re-exported for its callers (`status`, the reconciler): one
// import gives them both sides of the comparison.
pub use crate::schedule::aws_cron::{AwsRules, NativeRules, aws_rules};

/// `[policy] native_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeSchedule {
    /// Show drift in `status`, a metric and a P3 notice; change nothing.
    #[default]
    Report,
    /// Write the TOML schedule to Secrets Manager.
    Sync,
    /// Keep Secrets Manager's own schedule off.
    Disable,
}

impl NativeSchedule {
    pub fn as_str(self) -> &'static str {
        match self {
            NativeSchedule::Report => "report",
            NativeSchedule::Sync => "sync",
            NativeSchedule::Disable => "disable",
        }
    }
}

/// What one secret's native schedule looks like next to rotationd's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// What Secrets Manager holds, as [`describe_native`] words it.
    pub native: String,
    /// What it should hold under the mode: [`describe_expected`], or `off` for `disable`.
    pub expected: String,
    /// One line for an operator: what happens because of the difference.
    pub why: String,
}

/// What `sync`/`disable` should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave Secrets Manager alone.
    None,
    /// `RotateSecret` with these rules (turns native rotation on if it was off).
    Write(AwsRules),
    /// `CancelRotateSecret`.
    Cancel,
}

/// Words Secrets Manager's side for `status` and notices: `off`, `every 90 days`,
/// `cron(0 2 1 * ? *) for 3h`, `rate(10 days)`.
pub fn describe_native(n: &NativeRules) -> String {
    if !n.enabled {
        return "off".to_owned();
    }
    // DescribeSecret fills in AutomaticallyAfterDays even for a cron schedule, so the
    // expression, when there is one, is the schedule.
    match (&n.schedule_expression, n.automatically_after_days) {
        (Some(expr), _) => match n.duration.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => format!("{} for {d}", normalize_expression(expr)),
            _ => normalize_expression(expr),
        },
        (None, Some(1)) => "every 1 day".to_owned(),
        (None, Some(days)) => format!("every {days} days"),
        (None, None) => "on, with no schedule".to_owned(),
    }
}

/// Words rotationd's side: `cron(...) for 3h`, or `not expressible: <why>`.
pub fn describe_expected(e: &Result<AwsRules, String>) -> String {
    match e {
        Ok(rules) => format!("{} for {}", rules.schedule_expression, rules.duration),
        Err(why) => format!("not expressible: {why}"),
    }
}

/// The drift `mode` cares about for one secret, or `None` when there is nothing to report.
pub fn drift(
    native: &NativeRules,
    expected: &Result<AwsRules, String>,
    mode: NativeSchedule,
) -> Option<Drift> {
    let found = |expected_text: String, why: String| {
        Some(Drift {
            native: describe_native(native),
            expected: expected_text,
            why,
        })
    };
    match mode {
        NativeSchedule::Report => {
            if !native.enabled {
                return None;
            }
            let why = match expected {
                Ok(rules) if matches(native, rules) => return None,
                Ok(_) => format!(
                    "Secrets Manager rotates it {} on its own; rotationd plans {}: it can be rotated twice or not when planned; set native_schedule = \"sync\" or \"disable\"",
                    native_rotates(native),
                    describe_expected(expected)
                ),
                Err(error) => format!(
                    "Secrets Manager rotates it {} on its own and rotationd's schedule cannot be written for it ({error}): it can be rotated twice or not when planned; set native_schedule = \"disable\"",
                    native_rotates(native)
                ),
            };
            found(describe_expected(expected), why)
        }
        NativeSchedule::Sync => match expected {
            Err(error) => found(describe_expected(expected), error.clone()),
            Ok(_) if !native.enabled => found(
                describe_expected(expected),
                format!(
                    "Secrets Manager's own rotation is off; sync turns it on with {}",
                    describe_expected(expected)
                ),
            ),
            Ok(rules) if matches(native, rules) => None,
            Ok(_) => found(
                describe_expected(expected),
                format!(
                    "Secrets Manager rotates it {} on its own; sync rewrites that to {}",
                    native_rotates(native),
                    describe_expected(expected)
                ),
            ),
        },
        NativeSchedule::Disable => {
            if !native.enabled {
                return None;
            }
            found(
                "off".to_owned(),
                format!(
                    "Secrets Manager rotates it {} on its own; disable turns that off so that only rotationd rotates it",
                    native_rotates(native)
                ),
            )
        }
    }
}

/// What `sync`/`disable` should do for one secret; `report` never acts.
pub fn action(
    native: &NativeRules,
    expected: &Result<AwsRules, String>,
    mode: NativeSchedule,
) -> Action {
    match (mode, expected) {
        (NativeSchedule::Report, _) => Action::None,
        (NativeSchedule::Sync, Ok(rules)) if drift(native, expected, mode).is_some() => {
            Action::Write(rules.clone())
        }
        (NativeSchedule::Sync, _) => Action::None,
        (NativeSchedule::Disable, _) if native.enabled => Action::Cancel,
        (NativeSchedule::Disable, _) => Action::None,
    }
}

/// Whether Secrets Manager's rules are the ones rotationd would write. Rotation being on
/// is the caller's business.
fn matches(native: &NativeRules, expected: &AwsRules) -> bool {
    let Some(expr) = &native.schedule_expression else {
        // AutomaticallyAfterDays alone counts days from the last rotation, which no cron
        // expression does.
        return false;
    };
    normalize_expression(expr) == normalize_expression(&expected.schedule_expression)
        && native.duration.as_deref().map(str::trim) == Some(expected.duration.trim())
}

/// The native schedule as the object of "Secrets Manager rotates it ...".
fn native_rotates(n: &NativeRules) -> String {
    match (&n.schedule_expression, n.automatically_after_days) {
        (Some(_), _) => format!("on {}", describe_native(n)),
        (None, Some(_)) => describe_native(n),
        (None, None) => "with no schedule shown".to_owned(),
    }
}

/// Trims, collapses whitespace (also just inside the parentheses) and lowercases the
/// `cron(`/`rate(` keyword; the fields are kept as written.
fn normalize_expression(expr: &str) -> String {
    let expr = expr.trim();
    match (expr.find('('), expr.strip_suffix(')')) {
        (Some(open), Some(without_close)) if open < without_close.len() => {
            let keyword = expr[..open].trim().to_ascii_lowercase();
            let body = without_close[open + 1..]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            format!("{keyword}({body})")
        }
        _ => expr.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::aws_cron::native_rules;

    fn ok(expression: &str, duration: &str) -> Result<AwsRules, String> {
        Ok(AwsRules {
            schedule_expression: expression.to_owned(),
            duration: duration.to_owned(),
        })
    }

    const QUARTERLY: &str = "cron(0 2 1 1,4,7,10 ? *)";

    fn on_cron(expression: &str, duration: Option<&str>) -> NativeRules {
        native_rules(true, Some(90), Some(expression), duration)
    }

    // ---- describing both sides ----

    #[test]
    fn describe_native_words_each_shape() {
        assert_eq!(describe_native(&NativeRules::default()), "off");
        // Off wins over whatever rules are left behind.
        assert_eq!(
            describe_native(&native_rules(false, Some(90), Some(QUARTERLY), Some("3h"))),
            "off"
        );
        assert_eq!(
            describe_native(&native_rules(true, Some(90), None, None)),
            "every 90 days"
        );
        assert_eq!(
            describe_native(&native_rules(true, Some(1), None, None)),
            "every 1 day"
        );
        assert_eq!(
            describe_native(&native_rules(
                true,
                Some(31),
                Some("cron(0 2 1 * ? *)"),
                Some("3h")
            )),
            "cron(0 2 1 * ? *) for 3h"
        );
        assert_eq!(
            describe_native(&native_rules(true, None, Some("rate(10 days)"), None)),
            "rate(10 days)"
        );
        assert_eq!(
            describe_native(&native_rules(
                true,
                None,
                Some(" CRON( 0 2  1 * ? * ) "),
                Some(" 3h ")
            )),
            "cron(0 2 1 * ? *) for 3h"
        );
        assert_eq!(
            describe_native(&native_rules(true, None, None, None)),
            "on, with no schedule"
        );
    }

    #[test]
    fn describe_expected_words_both_outcomes() {
        assert_eq!(
            describe_expected(&ok(QUARTERLY, "3h")),
            format!("{QUARTERLY} for 3h")
        );
        assert_eq!(
            describe_expected(&Err("minute `30` cannot be written".to_owned())),
            "not expressible: minute `30` cannot be written"
        );
    }

    #[test]
    fn expressions_compare_after_whitespace_and_keyword_case() {
        let n = normalize_expression;
        assert_eq!(n(QUARTERLY), QUARTERLY);
        assert_eq!(n("  cron(0 2 1 1,4,7,10 ? *)\n"), QUARTERLY);
        assert_eq!(n("cron(0  2\t1 1,4,7,10 ?   *)"), QUARTERLY);
        assert_eq!(n("cron( 0 2 1 1,4,7,10 ? * )"), QUARTERLY);
        assert_eq!(n("CRON(0 2 1 1,4,7,10 ? *)"), QUARTERLY);
        assert_eq!(n("Cron (0 2 1 1,4,7,10 ? *)"), QUARTERLY);
        assert_eq!(n("RATE(10  days)"), "rate(10 days)");
        // The fields themselves are compared as written.
        assert_ne!(n("cron(0 3 ? * mon-fri *)"), n("cron(0 3 ? * MON-FRI *)"));
        // Not a call shape: only whitespace is tidied.
        assert_eq!(n("  odd   text "), "odd text");
    }

    // ---- drift and action: report ----

    #[test]
    fn report_ignores_native_rotation_that_is_off() {
        for expected in [ok(QUARTERLY, "3h"), Err("cannot".to_owned())] {
            for native in [
                NativeRules::default(),
                native_rules(false, Some(90), Some("rate(90 days)"), None),
            ] {
                assert_eq!(drift(&native, &expected, NativeSchedule::Report), None);
                assert_eq!(
                    action(&native, &expected, NativeSchedule::Report),
                    Action::None
                );
            }
        }
    }

    #[test]
    fn report_accepts_the_same_rules_however_spaced() {
        let expected = ok(QUARTERLY, "3h");
        for native in [
            on_cron(QUARTERLY, Some("3h")),
            on_cron(" cron(0 2 1  1,4,7,10 ? *) ", Some(" 3h ")),
            on_cron("CRON(0 2 1 1,4,7,10 ? *)", Some("3h")),
            // AutomaticallyAfterDays is derived from the expression, not a second schedule.
            native_rules(true, None, Some(QUARTERLY), Some("3h")),
        ] {
            assert_eq!(
                drift(&native, &expected, NativeSchedule::Report),
                None,
                "{native:?}"
            );
            assert_eq!(
                action(&native, &expected, NativeSchedule::Report),
                Action::None
            );
        }
    }

    #[test]
    fn report_flags_days_based_rotation() {
        let native = native_rules(true, Some(90), None, None);
        let expected = ok(QUARTERLY, "3h");
        assert_eq!(
            drift(&native, &expected, NativeSchedule::Report),
            Some(Drift {
                native: "every 90 days".to_owned(),
                expected: format!("{QUARTERLY} for 3h"),
                why: format!(
                    "Secrets Manager rotates it every 90 days on its own; rotationd plans {QUARTERLY} for 3h: it can be rotated twice or not when planned; set native_schedule = \"sync\" or \"disable\""
                ),
            })
        );
        assert_eq!(
            action(&native, &expected, NativeSchedule::Report),
            Action::None
        );
    }

    #[test]
    fn report_flags_a_different_expression() {
        let native = on_cron("cron(0 2 1 * ? *)", Some("3h"));
        let found = drift(&native, &ok(QUARTERLY, "3h"), NativeSchedule::Report).unwrap();
        assert_eq!(found.native, "cron(0 2 1 * ? *) for 3h");
        assert_eq!(
            found.why,
            format!(
                "Secrets Manager rotates it on cron(0 2 1 * ? *) for 3h on its own; rotationd plans {QUARTERLY} for 3h: it can be rotated twice or not when planned; set native_schedule = \"sync\" or \"disable\""
            )
        );
        // A rate never equals a cron, even one that fires as often.
        let rate = native_rules(true, Some(1), Some("rate(1 day)"), Some("1h"));
        assert!(
            drift(
                &rate,
                &ok("cron(0 0 * * ? *)", "1h"),
                NativeSchedule::Report
            )
            .is_some()
        );
        // Rotation on, but no rules to be read.
        let bare = native_rules(true, None, None, None);
        let found = drift(&bare, &ok(QUARTERLY, "3h"), NativeSchedule::Report).unwrap();
        assert!(
            found
                .why
                .starts_with("Secrets Manager rotates it with no schedule shown on its own")
        );
    }

    #[test]
    fn report_compares_the_duration_exactly() {
        let expected = ok(QUARTERLY, "3h");
        for duration in [Some("2h"), Some("3H"), Some("180m"), None, Some("")] {
            let native = on_cron(QUARTERLY, duration);
            assert!(
                drift(&native, &expected, NativeSchedule::Report).is_some(),
                "{duration:?}"
            );
        }
        let found = drift(&on_cron(QUARTERLY, None), &expected, NativeSchedule::Report).unwrap();
        assert_eq!(found.native, QUARTERLY);
        assert_eq!(found.expected, format!("{QUARTERLY} for 3h"));
    }

    #[test]
    fn report_flags_native_rotation_when_ours_cannot_be_written() {
        let why = "minute `30` cannot be written: Secrets Manager rotation schedules start on the hour (minute 0); move the schedule to minute 0";
        let expected = Err(why.to_owned());
        let native = native_rules(true, Some(90), None, None);
        assert_eq!(
            drift(&native, &expected, NativeSchedule::Report),
            Some(Drift {
                native: "every 90 days".to_owned(),
                expected: format!("not expressible: {why}"),
                why: format!(
                    "Secrets Manager rotates it every 90 days on its own and rotationd's schedule cannot be written for it ({why}): it can be rotated twice or not when planned; set native_schedule = \"disable\""
                ),
            })
        );
        assert_eq!(
            action(&native, &expected, NativeSchedule::Report),
            Action::None
        );
    }

    // ---- drift and action: sync ----

    #[test]
    fn sync_turns_native_rotation_on() {
        let expected = ok(QUARTERLY, "3h");
        let native = NativeRules::default();
        assert_eq!(
            drift(&native, &expected, NativeSchedule::Sync),
            Some(Drift {
                native: "off".to_owned(),
                expected: format!("{QUARTERLY} for 3h"),
                why: format!(
                    "Secrets Manager's own rotation is off; sync turns it on with {QUARTERLY} for 3h"
                ),
            })
        );
        assert_eq!(
            action(&native, &expected, NativeSchedule::Sync),
            Action::Write(AwsRules {
                schedule_expression: QUARTERLY.to_owned(),
                duration: "3h".to_owned(),
            })
        );
        // Off with stale matching rules is still off.
        let stale = native_rules(false, Some(90), Some(QUARTERLY), Some("3h"));
        assert!(matches!(
            action(&stale, &expected, NativeSchedule::Sync),
            Action::Write(_)
        ));
    }

    #[test]
    fn sync_rewrites_different_rules() {
        let expected = ok(QUARTERLY, "3h");
        for native in [
            native_rules(true, Some(90), None, None),
            on_cron("cron(0 2 1 * ? *)", Some("3h")),
            on_cron(QUARTERLY, Some("2h")),
            on_cron(QUARTERLY, None),
            native_rules(true, None, None, None),
        ] {
            let found = drift(&native, &expected, NativeSchedule::Sync).unwrap();
            assert!(found.why.contains("sync rewrites that to"), "{}", found.why);
            assert_eq!(
                action(&native, &expected, NativeSchedule::Sync),
                Action::Write(expected.clone().unwrap()),
                "{native:?}"
            );
        }
        let found = drift(
            &native_rules(true, Some(90), None, None),
            &expected,
            NativeSchedule::Sync,
        )
        .unwrap();
        assert_eq!(
            found.why,
            format!(
                "Secrets Manager rotates it every 90 days on its own; sync rewrites that to {QUARTERLY} for 3h"
            )
        );
    }

    #[test]
    fn sync_leaves_matching_rules_alone() {
        let expected = ok(QUARTERLY, "3h");
        for native in [
            on_cron(QUARTERLY, Some("3h")),
            on_cron("cron(0 2 1 1,4,7,10 ? * )", Some("3h ")),
        ] {
            assert_eq!(drift(&native, &expected, NativeSchedule::Sync), None);
            assert_eq!(
                action(&native, &expected, NativeSchedule::Sync),
                Action::None
            );
        }
    }

    #[test]
    fn sync_reports_a_schedule_it_cannot_write() {
        let expected: Result<AwsRules, String> = Err("cannot be written: do this".to_owned());
        for native in [
            NativeRules::default(),
            native_rules(true, Some(90), None, None),
        ] {
            let found = drift(&native, &expected, NativeSchedule::Sync).unwrap();
            assert_eq!(found.why, "cannot be written: do this");
            assert_eq!(
                found.expected,
                "not expressible: cannot be written: do this"
            );
            assert_eq!(
                action(&native, &expected, NativeSchedule::Sync),
                Action::None
            );
        }
    }

    // ---- drift and action: disable ----

    #[test]
    fn disable_cancels_any_native_rotation() {
        for expected in [ok(QUARTERLY, "3h"), Err("cannot".to_owned())] {
            // Even rules equal to ours are a second scheduler.
            for native in [
                native_rules(true, Some(90), None, None),
                on_cron(QUARTERLY, Some("3h")),
            ] {
                let found = drift(&native, &expected, NativeSchedule::Disable).unwrap();
                assert_eq!(found.expected, "off");
                assert_eq!(
                    action(&native, &expected, NativeSchedule::Disable),
                    Action::Cancel
                );
            }
        }
        let found = drift(
            &native_rules(true, Some(90), None, None),
            &ok(QUARTERLY, "3h"),
            NativeSchedule::Disable,
        )
        .unwrap();
        assert_eq!(
            found,
            Drift {
                native: "every 90 days".to_owned(),
                expected: "off".to_owned(),
                why: "Secrets Manager rotates it every 90 days on its own; disable turns that off so that only rotationd rotates it".to_owned(),
            }
        );
    }

    #[test]
    fn disable_leaves_native_rotation_that_is_off() {
        let native = native_rules(false, Some(90), Some(QUARTERLY), Some("3h"));
        assert_eq!(
            drift(&native, &ok(QUARTERLY, "3h"), NativeSchedule::Disable),
            None
        );
        assert_eq!(
            action(&native, &ok(QUARTERLY, "3h"), NativeSchedule::Disable),
            Action::None
        );
    }

    // ---- small things ----

    #[test]
    fn whys_are_one_line() {
        let natives = [
            NativeRules::default(),
            native_rules(true, Some(90), None, None),
            on_cron("cron(0 2\n1 * ? *)", Some("3h")),
            native_rules(true, None, None, None),
        ];
        let expecteds = [ok(QUARTERLY, "3h"), Err("cannot".to_owned())];
        for mode in [
            NativeSchedule::Report,
            NativeSchedule::Sync,
            NativeSchedule::Disable,
        ] {
            for native in &natives {
                for expected in &expecteds {
                    if let Some(d) = drift(native, expected, mode) {
                        for text in [&d.native, &d.expected, &d.why] {
                            assert!(!text.contains('\n'), "{text}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn drift_serializes_with_plain_field_names() {
        let d = Drift {
            native: "every 90 days".to_owned(),
            expected: "off".to_owned(),
            why: "because".to_owned(),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"native":"every 90 days","expected":"off","why":"because"}"#
        );
    }

    #[test]
    fn native_schedule_names() {
        assert_eq!(NativeSchedule::default(), NativeSchedule::Report);
        for (mode, name) in [
            (NativeSchedule::Report, "report"),
            (NativeSchedule::Sync, "sync"),
            (NativeSchedule::Disable, "disable"),
        ] {
            assert_eq!(mode.as_str(), name);
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{name}\""));
        }
    }
}
