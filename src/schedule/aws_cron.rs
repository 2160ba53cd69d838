//! rotationd's crontab schedules written as Secrets Manager rotation rules ([`aws_rules`]),
//! and what Secrets Manager holds for a secret ([`NativeRules`]). It lives with the
//! schedule, not with the drift decision ([`crate::drift`]), because the config validates
//! `native_schedule = "sync"` with it and the Secrets Manager wrapper reads and writes the
//! rules: neither should depend on the drift policy.
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

use super::{Schedule, WEEKDAY_NAMES, expand_alias};

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
        let text = expand_alias(source).unwrap_or(source);
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
                let mask = field("day-of-week", dow, 0, 7, &WEEKDAY_NAMES)?;
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

    const QUARTERLY: &str = "cron(0 2 1 1,4,7,10 ? *)";

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
