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
//! `RotateSecret`/`CancelRotateSecret`.
//!
//! # Writing a crontab schedule as Secrets Manager rotation rules
//!
//! Secrets Manager takes `cron(Minutes Hours Day-of-month Month Day-of-week Year)` in UTC
//! plus a window `Duration` such as `3h`. Its rotation schedules are narrower than AWS cron
//! in general ("Schedule expressions in Secrets Manager rotation", Secrets Manager User
//! Guide, and `RotationRulesType` in the API reference):
//!
//! - Minutes must be `0`: rotation windows open on the hour.
//! - Year must be `*`.
//! - Exactly one of Day-of-month and Day-of-week is `?`. Crontab fires when *either*
//!   restricted day field matches (or, when one is written starting with `*`, when *both*
//!   do); AWS cron can say neither, so a crontab restricting both days is not expressible.
//! - Day-of-week is 1-7 with 1 = Sunday, where crontab has 0-7 with 0 and 7 = Sunday.
//! - A secret can be rotated at most every four hours.
//! - The window is whole hours, at least 1h, and must not run into the next UTC day nor
//!   into the next window.
//!
//! Canonical form: every field is written as the exact set of values it covers, ascending,
//! with runs of three or more as ranges (`2-6`) and the rest as lists (`1,6,7`), and `*`
//! when it covers the whole field. Crontab steps are expanded (`*/6` hours becomes
//! `0,6,12,18`): lists mean the same in every cron dialect, whereas `/` counts from
//! different starting points in different dialects and fields. Day-of-week is written as
//! AWS numbers, not names, to match the numeric month field. One canonical form also keeps
//! what `sync` writes byte-for-byte equal to what it later reads back and compares.
//!
//! The window is narrowed, never widened: a window that is not a whole number of hours is
//! rounded down, then shortened to end at midnight and before the next firing of the same
//! day. Secrets Manager then rotates inside rotationd's own window.

use std::time::Duration;

use crate::schedule::Schedule;

/// rotationd's schedule written in Secrets Manager's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsRules {
    /// `cron(0 2 1 1,4,7,10 ? *)`.
    pub schedule_expression: String,
    /// `3h`.
    pub duration: String,
}

/// What Secrets Manager holds for one secret (DescribeSecret / ListSecrets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeRules {
    pub enabled: bool,
    pub automatically_after_days: Option<i64>,
    pub schedule_expression: Option<String>,
    pub duration: Option<String>,
}

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

/// Builds a [`NativeRules`] from the fields of a `DescribeSecret`/`ListSecrets` entry.
pub fn native_rules(
    enabled: bool,
    after_days: Option<i64>,
    expr: Option<&str>,
    duration: Option<&str>,
) -> NativeRules {
    NativeRules {
        enabled,
        automatically_after_days: after_days,
        schedule_expression: expr.map(str::to_owned),
        duration: duration.map(str::to_owned),
    }
}

/// The shortest interval between rotations Secrets Manager accepts.
const MIN_INTERVAL_HOURS: i64 = 4;

/// Writes `schedule` with a window of `window` as Secrets Manager rotation rules, or says
/// why it cannot be.
pub fn aws_rules(schedule: &Schedule, window: Duration) -> Result<AwsRules, String> {
    let fields = Fields::parse(schedule.as_str())?;

    // Checked before the minute so that `*/30 * * * *` is told about its frequency, the
    // real obstacle, rather than about its minute.
    if let Some(gap) = schedule.min_gap()
        && gap < chrono::Duration::hours(MIN_INTERVAL_HOURS)
    {
        return Err(format!(
            "the schedule fires more often than every {MIN_INTERVAL_HOURS} hours, the shortest interval Secrets Manager allows: space its firings at least {MIN_INTERVAL_HOURS} hours apart"
        ));
    }
    // Bit 0 alone: minute 0 and nothing else.
    if fields.minutes != 1 {
        return Err(format!(
            "minute `{}` cannot be written: Secrets Manager rotation schedules start on the hour (minute 0); move the schedule to minute 0",
            fields.minute_text
        ));
    }

    let (dom, dow) = day_fields(&fields)?;
    let expression = format!(
        "cron(0 {} {dom} {} {dow} *)",
        render(fields.hours, 0, 23),
        render(fields.months, 1, 12),
    );

    let whole_hours = window.as_secs() / 3600;
    if whole_hours < 1 {
        return Err(format!(
            "window `{}` is shorter than 1h, the shortest rotation window Secrets Manager allows: widen the window to at least 1h or use native_schedule = \"report\"",
            humantime::format_duration(window)
        ));
    }
    let hours: Vec<u64> = (0..24).filter(|h| fields.hours & (1 << h) != 0).collect();
    // `Fields::parse` guarantees at least one hour, and the frequency check above at least
    // four hours between them, so every bound here is >= 1.
    let until_midnight = 24 - hours.last().copied().unwrap_or(0);
    let until_next = hours
        .windows(2)
        .map(|w| w[1] - w[0])
        .min()
        .unwrap_or(u64::MAX);
    let duration = whole_hours.min(until_midnight).min(until_next);

    Ok(AwsRules {
        schedule_expression: expression,
        duration: format!("{duration}h"),
    })
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

/// A crontab expression as value sets, one bit per value. Day-of-week uses bit 0 = Sunday.
struct Fields {
    minute_text: String,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Vixie cron's rule, which `schedule.rs` follows: a day field starting with `*` turns
    /// "dom OR dow" into "dom AND dow".
    day_star: bool,
}

impl Fields {
    fn parse(source: &str) -> Result<Fields, String> {
        let text = crate::schedule::expand_alias(source).unwrap_or(source);
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = parts[..] else {
            return Err(not_understood("expression", source));
        };
        let field = |name: &str, text: &str, min, max, names: &[&str]| {
            field_values(text, min, max, names).ok_or_else(|| not_understood(name, text))
        };
        Ok(Fields {
            minute_text: minute.to_owned(),
            minutes: field("minute", minute, 0, 59, &[])?,
            hours: field("hour", hour, 0, 23, &[])?,
            days_of_month: field("day-of-month", dom, 1, 31, &[])?,
            months: field("month", month, 1, 12, &MONTHS)?,
            // 7 is a second Sunday; folded onto bit 0 below.
            days_of_week: {
                let mask = field("day-of-week", dow, 0, 7, &crate::schedule::WEEKDAY_NAMES)?;
                (mask | (mask >> 7)) & 0x7f
            },
            day_star: dom.starts_with('*') || dow.starts_with('*'),
        })
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

const ALL_DAYS_OF_MONTH: u64 = ((1 << 32) - 1) & !1;
const ALL_WEEKDAYS: u64 = 0x7f;

fn not_understood(name: &str, text: &str) -> String {
    format!(
        "{name} `{text}` cannot be translated to Secrets Manager's cron: write it with numbers, names, lists, ranges and steps"
    )
}

/// The values a crontab field covers, as bits; `None` for anything we do not translate.
/// `names` are matched case-insensitively on at least their first three letters, their
/// index counting from `min`.
fn field_values(field: &str, min: u32, max: u32, names: &[&str]) -> Option<u64> {
    let value = |token: &str| -> Option<u32> {
        if let Ok(n) = token.parse::<u32>() {
            return (min..=max).contains(&n).then_some(n);
        }
        let lower = token.to_ascii_lowercase();
        if lower.len() < 3 {
            return None;
        }
        let index = names.iter().position(|name| name.starts_with(&lower))?;
        Some(min + u32::try_from(index).ok()?)
    };
    let mut mask = 0u64;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (item, 1),
        };
        let (low, high) = match range.split_once('-') {
            _ if range == "*" => (min, max),
            Some((a, b)) => (value(a)?, value(b)?),
            // `5/10` runs from 5 to the end of the field, as in the `cron` crate.
            None if step > 1 => (value(range)?, max),
            None => {
                let v = value(range)?;
                (v, v)
            }
        };
        if low > high {
            return None;
        }
        for v in (low..=high).step_by(step as usize) {
            mask |= 1 << v;
        }
    }
    (mask != 0).then_some(mask)
}

/// The Day-of-month and Day-of-week fields, one of them `?`.
fn day_fields(fields: &Fields) -> Result<(String, String), String> {
    let all_dom = fields.days_of_month == ALL_DAYS_OF_MONTH;
    let all_dow = fields.days_of_week == ALL_WEEKDAYS;
    if fields.day_star {
        // Both must match; an unrestricted one drops out.
        match (all_dom, all_dow) {
            (_, true) => Ok((render(fields.days_of_month, 1, 31), "?".to_owned())),
            (true, false) => Ok(("?".to_owned(), render(aws_weekdays(fields), 1, 7))),
            (false, false) => Err("day-of-month and day-of-week are both restricted and one starts with `*`: crontab then fires only on days matching both, AWS cron cannot express that; make one of them exactly `*`".to_owned()),
        }
    } else {
        // Either may match, so an unrestricted one (`1-31`, `0-6`) means every day.
        match (all_dom, all_dow) {
            (true, _) | (_, true) => Ok(("*".to_owned(), "?".to_owned())),
            (false, false) => Err("day-of-month and day-of-week are both restricted: crontab fires on either, AWS cron cannot express that; keep one of them `*`".to_owned()),
        }
    }
}

/// Crontab weekdays (bit 0 = Sunday) as AWS ones (bit 1 = Sunday .. bit 7 = Saturday).
fn aws_weekdays(fields: &Fields) -> u64 {
    fields.days_of_week << 1
}

/// `*` for the whole `min..=max`, else ascending values with runs of three or more as
/// ranges: `1-3,5,6`.
fn render(mask: u64, min: u32, max: u32) -> String {
    let full = (min..=max).fold(0u64, |acc, v| acc | (1 << v));
    if mask & full == full {
        return "*".to_owned();
    }
    let values: Vec<u32> = (min..=max).filter(|v| mask & (1 << v) != 0).collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}-{}", values[i], values[j]));
        } else {
            parts.extend(values[i..=j].iter().map(u32::to_string));
        }
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    fn sched(text: &str) -> Schedule {
        Schedule::parse(text).unwrap()
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    fn rules(text: &str, window: Duration) -> AwsRules {
        aws_rules(&sched(text), window).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn expr(text: &str) -> String {
        rules(text, hours(1)).schedule_expression
    }

    fn error(text: &str, window: Duration) -> String {
        match aws_rules(&sched(text), window) {
            Ok(r) => panic!("{text} was written as {r:?}"),
            Err(e) => e,
        }
    }

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

    // ---- aws_rules: translation ----

    #[test]
    fn quarterly_on_the_first_keeps_its_month_list() {
        assert_eq!(
            rules("0 2 1 1,4,7,10 *", hours(3)),
            AwsRules {
                schedule_expression: QUARTERLY.to_owned(),
                duration: "3h".to_owned(),
            }
        );
    }

    #[test]
    fn aliases_are_expanded() {
        assert_eq!(
            rules("@quarterly", hours(4)),
            AwsRules {
                schedule_expression: "cron(0 0 1 1,4,7,10 ? *)".to_owned(),
                duration: "4h".to_owned(),
            }
        );
        assert_eq!(expr("@yearly"), "cron(0 0 1 1 ? *)");
        assert_eq!(expr("@annually"), "cron(0 0 1 1 ? *)");
        assert_eq!(expr("@monthly"), "cron(0 0 1 * ? *)");
        assert_eq!(expr("@weekly"), "cron(0 0 ? * 1 *)");
        assert_eq!(expr("@daily"), "cron(0 0 * * ? *)");
        assert_eq!(expr("@midnight"), "cron(0 0 * * ? *)");
        assert_eq!(expr("@QUARTERLY"), "cron(0 0 1 1,4,7,10 ? *)");
    }

    #[test]
    fn weekdays_shift_to_aws_numbering() {
        for text in [
            "0 3 * * 1-5",
            "0 3 * * MON-FRI",
            "0 3 * * mon-fri",
            "0 3 * * 1,2,3,4,5",
            "0 3 * * Monday-Friday",
        ] {
            assert_eq!(
                rules(text, hours(2)),
                AwsRules {
                    schedule_expression: "cron(0 3 ? * 2-6 *)".to_owned(),
                    duration: "2h".to_owned(),
                },
                "{text}"
            );
        }
    }

    #[test]
    fn sunday_is_one_whichever_way_crontab_spells_it() {
        for text in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * sunday"] {
            assert_eq!(expr(text), "cron(0 0 ? * 1 *)", "{text}");
        }
    }

    #[test]
    fn every_crontab_weekday_maps_one_up() {
        for (crontab, aws) in [
            ("0", "1"),
            ("1", "2"),
            ("2", "3"),
            ("3", "4"),
            ("4", "5"),
            ("5", "6"),
            ("6", "7"),
            ("7", "1"),
            ("SAT", "7"),
        ] {
            assert_eq!(
                expr(&format!("0 5 * * {crontab}")),
                format!("cron(0 5 ? * {aws} *)"),
                "{crontab}"
            );
        }
    }

    #[test]
    fn weekday_lists_ranges_and_steps_come_out_sorted() {
        // Friday to Sunday wraps past Saturday: Sunday sorts first.
        assert_eq!(expr("0 1 * * 5-7"), "cron(0 1 ? * 1,6,7 *)");
        assert_eq!(expr("0 1 * * FRI,SAT,SUN"), "cron(0 1 ? * 1,6,7 *)");
        assert_eq!(expr("0 1 * * 6,0"), "cron(0 1 ? * 1,7 *)");
        assert_eq!(expr("0 1 * * 0,7"), "cron(0 1 ? * 1 *)");
        // Sun, Tue, Thu, Sat.
        assert_eq!(expr("0 1 * * */2"), "cron(0 1 ? * 1,3,5,7 *)");
        // Mon, Wed, Fri.
        assert_eq!(expr("0 1 * * 1-5/2"), "cron(0 1 ? * 2,4,6 *)");
        assert_eq!(expr("0 1 * * 0-2"), "cron(0 1 ? * 1-3 *)");
        assert_eq!(expr("0 1 * * 4-6"), "cron(0 1 ? * 5-7 *)");
    }

    #[test]
    fn steps_are_written_as_lists() {
        assert_eq!(expr("0 2 1 */3 *"), QUARTERLY);
        assert_eq!(expr("0 2 1 1-12/3 *"), QUARTERLY);
        assert_eq!(expr("0 2 1 JAN,APR,JUL,OCT *"), QUARTERLY);
        assert_eq!(expr("0 2 1 jan,apr,jul,oct *"), QUARTERLY);
        assert_eq!(expr("0 2 */10 * *"), "cron(0 2 1,11,21,31 * ? *)");
        assert_eq!(expr("0 */6 * * *"), "cron(0 0,6,12,18 * * ? *)");
        assert_eq!(expr("0 8-20/4 * * *"), "cron(0 8,12,16,20 * * ? *)");
        assert_eq!(expr("0 5/8 * * *"), "cron(0 5,13,21 * * ? *)");
    }

    #[test]
    fn runs_of_three_or_more_become_ranges() {
        assert_eq!(expr("0 2 1 1,2,3,5,6 *"), "cron(0 2 1 1-3,5,6 ? *)");
        assert_eq!(expr("0 2 1-7 * *"), "cron(0 2 1-7 * ? *)");
        assert_eq!(expr("0 2 1,2 JAN-MAR *"), "cron(0 2 1,2 1-3 ? *)");
        assert_eq!(expr("0 2 1 1-12 *"), "cron(0 2 1 * ? *)");
    }

    #[test]
    fn a_day_field_covering_every_day_is_unrestricted() {
        // With neither field starting with `*`, crontab fires on either: every day.
        assert_eq!(expr("0 0 1-31 * 1"), "cron(0 0 * * ? *)");
        assert_eq!(expr("0 0 15 * 0-6"), "cron(0 0 * * ? *)");
        // With `*` in front, both must match and the full field drops out.
        assert_eq!(expr("0 0 * * 0-6"), "cron(0 0 * * ? *)");
        assert_eq!(expr("0 0 * * 0-7"), "cron(0 0 * * ? *)");
        assert_eq!(expr("0 0 */1 * 1"), "cron(0 0 ? * 2 *)");
        assert_eq!(expr("0 0 13 * */1"), "cron(0 0 13 * ? *)");
    }

    #[test]
    fn aws_expression_fires_when_the_crontab_does() {
        // The `cron` crate reads AWS's dialect (1 = Sunday, `?`, a year field), so it can
        // check the translation against `Schedule`'s own calendar over two years.
        let from = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap();
        for text in [
            "@quarterly",
            "@weekly",
            "@monthly",
            "0 3 * * 1-5",
            "0 1 * * 5-7",
            "0 1 * * */2",
            "0 2 */10 * *",
            "0 */6 * * *",
            "0 4,16 * * SAT,SUN",
            "0 0 1-31 * 1",
            "0 2 29 2 *",
            "0 23 1 1 *",
        ] {
            let aws = expr(text);
            let inner = aws
                .strip_prefix("cron(")
                .unwrap()
                .strip_suffix(')')
                .unwrap();
            let quartz: cron::Schedule = format!("0 {inner}").parse().unwrap();
            let want: Vec<DateTime<Utc>> = sched(text).fire_times(from, to).collect();
            let got: Vec<DateTime<Utc>> = quartz
                .after(&(from - chrono::Duration::seconds(1)))
                .take_while(|t| *t < to)
                .collect();
            assert!(!want.is_empty(), "{text}");
            assert_eq!(got, want, "{text} as {aws}");
        }
    }

    // ---- aws_rules: what cannot be written ----

    #[test]
    fn minute_other_than_zero_is_refused() {
        let e = error("30 2 1 * *", hours(3));
        assert_eq!(
            e,
            "minute `30` cannot be written: Secrets Manager rotation schedules start on the hour (minute 0); move the schedule to minute 0"
        );
        assert!(error("45 4 * * 1", hours(1)).starts_with("minute `45` cannot be written"));
        assert!(error("15 4 * * 1", hours(1)).starts_with("minute `15` cannot be written"));
    }

    #[test]
    fn more_often_than_every_four_hours_is_refused() {
        for text in [
            "*/30 * * * *",
            "0 */2 * * *",
            "@hourly",
            "0 0,3 * * *",
            "0,30 2 * * *",
            // 22:00 to 00:00 the next day.
            "0 0,22 * * *",
        ] {
            assert_eq!(
                error(text, hours(1)),
                "the schedule fires more often than every 4 hours, the shortest interval Secrets Manager allows: space its firings at least 4 hours apart",
                "{text}"
            );
        }
        // Exactly four hours is allowed.
        assert_eq!(
            rules("0 */4 * * *", hours(4)),
            AwsRules {
                schedule_expression: "cron(0 0,4,8,12,16,20 * * ? *)".to_owned(),
                duration: "4h".to_owned(),
            }
        );
    }

    #[test]
    fn both_day_fields_restricted_is_refused() {
        assert_eq!(
            error("0 2 1 * 1", hours(3)),
            "day-of-month and day-of-week are both restricted: crontab fires on either, AWS cron cannot express that; keep one of them `*`"
        );
        assert_eq!(
            error("0 0 */2 * 1", hours(3)),
            "day-of-month and day-of-week are both restricted and one starts with `*`: crontab then fires only on days matching both, AWS cron cannot express that; make one of them exactly `*`"
        );
    }

    #[test]
    fn errors_are_lowercase_one_line_and_say_what_to_do() {
        let errors = [
            error("30 2 1 * *", hours(3)),
            error("*/30 * * * *", hours(3)),
            error("0 2 1 * 1", hours(3)),
            error("0 0 */2 * 1", hours(3)),
            error("@monthly", Duration::from_secs(1800)),
        ];
        for e in errors {
            assert!(e.starts_with(|c: char| c.is_lowercase()), "{e}");
            assert!(!e.ends_with('.'), "{e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(
                ["move the", "space its", "keep one", "make one", "widen the"]
                    .iter()
                    .any(|hint| e.contains(hint)),
                "{e}"
            );
        }
    }

    // ---- aws_rules: the window ----

    #[test]
    fn window_under_an_hour_is_refused() {
        assert_eq!(
            error("@monthly", Duration::from_secs(30 * 60)),
            "window `30m` is shorter than 1h, the shortest rotation window Secrets Manager allows: widen the window to at least 1h or use native_schedule = \"report\""
        );
        assert!(error("@monthly", Duration::from_secs(3599)).starts_with("window `59m 59s`"));
        assert!(error("@monthly", Duration::ZERO).starts_with("window `0s`"));
    }

    #[test]
    fn window_rounds_down_to_whole_hours() {
        let window = |secs: u64| rules("@monthly", Duration::from_secs(secs)).duration;
        assert_eq!(window(90 * 60), "1h");
        assert_eq!(window(3600), "1h");
        assert_eq!(window(4 * 3600 - 1), "3h");
        assert_eq!(window(3 * 3600 + 1), "3h");
    }

    #[test]
    fn window_ends_by_midnight() {
        assert_eq!(rules("0 22 1 * *", hours(4)).duration, "2h");
        assert_eq!(rules("0 23 * * *", hours(24)).duration, "1h");
        assert_eq!(rules("0 0 1 * *", hours(48)).duration, "24h");
        assert_eq!(rules("0 20 1 * *", hours(4)).duration, "4h");
    }

    #[test]
    fn window_ends_before_the_next_firing_that_day() {
        // 16:00 + 8h reaches midnight first; the 12h gap does not bind.
        assert_eq!(rules("0 4,16 * * *", hours(24)).duration, "8h");
        // 02:00 -> 10:00 is the binding gap.
        assert_eq!(rules("0 2,10 * * *", hours(12)).duration, "8h");
        assert_eq!(rules("0 */6 * * *", hours(8)).duration, "6h");
        assert_eq!(rules("0 */6 * * *", hours(5)).duration, "5h");
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

    #[test]
    fn native_rules_copies_its_arguments() {
        assert_eq!(
            native_rules(true, Some(30), Some("rate(30 days)"), Some("2h")),
            NativeRules {
                enabled: true,
                automatically_after_days: Some(30),
                schedule_expression: Some("rate(30 days)".to_owned()),
                duration: Some("2h".to_owned()),
            }
        );
        assert_eq!(
            native_rules(false, None, None, None),
            NativeRules::default()
        );
    }
}
