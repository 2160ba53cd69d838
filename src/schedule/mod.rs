//! Rotation schedules: when a secret's rotation window opens.
//!
//! A [`Schedule`] is written the way operators already know from crontab: five
//! fields `min hour dom month dow`, always evaluated in UTC, or one of the
//! aliases `@yearly`/`@annually`, `@quarterly`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight` and `@hourly`.
//!
//! Design:
//! - The `cron` crate does the field parsing and the calendar walking, but it
//!   speaks a Quartz-like dialect (a seconds field, day-of-week `1` = Sunday,
//!   day-of-month AND day-of-week). We therefore translate crontab text before
//!   handing it over: `"0 "` is prepended for seconds, the day-of-week field is
//!   parsed here (0-7 with 0 and 7 = Sunday, names, lists, ranges, steps) and
//!   re-emitted as explicit `cron` ordinals, and when both day-of-month and
//!   day-of-week are restricted we keep two `cron` schedules and merge them,
//!   because crontab fires when *either* field matches.
//! - Parsed state lives behind an `Arc`, so a config with 100,000 targets that
//!   share a handful of schedules can clone one parsed value cheaply.
//! - Equality, hashing and serialisation use the source text, so the planner
//!   can group targets by schedule without comparing calendars.
//! - [`Schedule::min_gap`] and [`Schedule::max_gap`] do not iterate fire times
//!   (that would be millions of steps for `* * * * *`). A crontab fire set is a
//!   product "firing days x times of day", so the gaps are the gaps inside one
//!   day plus the gaps between consecutive firing days, which we get from a day
//!   by day scan over 28 years (the period after which weekdays and leap years
//!   repeat in this century).

pub mod aws_cron;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeDelta, Timelike, Utc};
use cron::TimeUnitSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a schedule string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Nothing but whitespace was given.
    #[error(
        "schedule is empty: give a 5-field crontab expression (min hour dom month dow) or an alias such as @quarterly"
    )]
    Empty,
    /// An `@alias` we do not know.
    #[error(
        "unknown schedule alias `{0}`: use @yearly, @annually, @quarterly, @monthly, @weekly, @daily, @midnight, @hourly or a 5-field crontab expression"
    )]
    UnknownAlias(String),
    /// Not exactly five fields.
    #[error(
        "expected 5 fields (min hour dom month dow), found {found} in `{expr}`: write the schedule in UTC without seconds or year fields"
    )]
    FieldCount {
        /// The offending expression.
        expr: String,
        /// How many whitespace-separated fields it had.
        found: usize,
    },
    /// The day-of-week field could not be understood.
    #[error(
        "invalid day-of-week field `{field}` in `{expr}`: {problem}; use 0-7 (0 and 7 are Sunday) or SUN-SAT, with lists, ranges and /steps"
    )]
    DayOfWeek {
        /// The offending expression.
        expr: String,
        /// The day-of-week field as written.
        field: String,
        /// What exactly is wrong.
        problem: String,
    },
    /// The `cron` crate rejected one of the other fields.
    #[error(
        "invalid crontab expression `{expr}`: {message}; check the minute (0-59), hour (0-23), day-of-month (1-31) and month (1-12 or JAN-DEC) fields"
    )]
    Cron {
        /// The offending expression.
        expr: String,
        /// The `cron` crate's own message.
        message: String,
    },
    /// The expression is well formed but names no real date, e.g. `0 0 30 2 *`.
    #[error("schedule `{0}` never fires: pick a day of month that exists in the chosen months")]
    NeverFires(String),
}

/// A parsed rotation schedule in UTC; see the module docs for the syntax.
#[derive(Clone)]
pub struct Schedule {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
    /// One schedule normally; two when crontab's "dom OR dow" rule applies.
    crons: Vec<cron::Schedule>,
    /// Times of day (minutes after midnight) at which it fires, ascending.
    times_of_day: Vec<u32>,
    /// Day filters mirroring `crons`, as bit masks for a cheap day scan.
    day_rules: Vec<DayRule>,
}

#[derive(Clone, Copy)]
struct DayRule {
    /// Bit `m` set = month `m` (1-12) allowed.
    months: u16,
    /// Bit `d` set = day of month `d` (1-31) allowed.
    days_of_month: u32,
    /// Bit `w` set = weekday `w` (0 = Sunday) allowed.
    days_of_week: u8,
}

impl DayRule {
    fn matches(&self, date: NaiveDate) -> bool {
        self.months & (1 << date.month()) != 0
            && self.days_of_month & (1 << date.day()) != 0
            && self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0
    }
}

const ALL_WEEKDAYS: u8 = 0b111_1111;

impl Schedule {
    /// Parses a crontab expression or alias; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let source = text.trim();
        if source.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let expanded = if source.starts_with('@') {
            expand_alias(source)?
        } else {
            source
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(ScheduleError::FieldCount {
                expr: source.to_owned(),
                found: fields.len(),
            });
        };

        let weekdays = parse_day_of_week(dow).map_err(|problem| ScheduleError::DayOfWeek {
            expr: source.to_owned(),
            field: dow.to_owned(),
            problem,
        })?;
        // Vixie cron decides "star-ness" by the first character, so `*/2` is a
        // star field while `0-6` (every day, spelled out) is not.
        let dom_star = dom.starts_with('*');
        let dow_star = dow.starts_with('*');
        let dow_cron = weekdays_to_cron(weekdays);

        let cron_texts = if dom_star || dow_star {
            vec![format!("0 {minute} {hour} {dom} {month} {dow_cron}")]
        } else {
            vec![
                format!("0 {minute} {hour} {dom} {month} *"),
                format!("0 {minute} {hour} * {month} {dow_cron}"),
            ]
        };
        // Our own range check first: the cron crate's messages span several lines, quote
        // its internal six-field form and misstate the limits ("Hours must be less than 23").
        for (name, field, max) in [
            ("minute", minute, 59),
            ("hour", hour, 23),
            ("day-of-month", dom, 31),
            ("month", month, 12),
        ] {
            check_field(
                name,
                field,
                if name == "day-of-month" || name == "month" {
                    1
                } else {
                    0
                },
                max,
            )
            .map_err(|message| ScheduleError::Cron {
                expr: source.to_owned(),
                message,
            })?;
        }
        let crons = cron_texts
            .iter()
            .map(|t| {
                t.parse::<cron::Schedule>()
                    .map_err(|e| ScheduleError::Cron {
                        expr: source.to_owned(),
                        // One line, whatever the crate printed.
                        message: e
                            .to_string()
                            .lines()
                            .map(str::trim)
                            .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
                            .unwrap_or("not understood")
                            .trim_end_matches('.')
                            .to_owned(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let first = &crons[0];
        let mut times_of_day = Vec::new();
        for h in first.hours().iter() {
            for m in first.minutes().iter() {
                times_of_day.push(h * 60 + m);
            }
        }
        let day_rules = crons
            .iter()
            .map(|c| DayRule {
                months: c.months().iter().fold(0, |acc, m| acc | (1 << m)),
                days_of_month: c.days_of_month().iter().fold(0, |acc, d| acc | (1 << d)),
                // cron numbers weekdays 1 = Sunday .. 7 = Saturday.
                days_of_week: c
                    .days_of_week()
                    .iter()
                    .fold(0, |acc, w| acc | (1 << (w - 1))),
            })
            .collect();

        let schedule = Schedule {
            inner: Arc::new(Inner {
                source: source.to_owned(),
                crons,
                times_of_day,
                day_rules,
            }),
        };
        // Reject `0 0 31 4 *` and friends now rather than planning nothing later.
        if schedule.next_after(gap_epoch()).is_none() {
            return Err(ScheduleError::NeverFires(source.to_owned()));
        }
        Ok(schedule)
    }

    /// The schedule as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.inner.source
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.inner
            .crons
            .iter()
            .filter_map(|c| c.after(&t).next())
            .min()
    }

    /// The most recent fire time at or before `t`, i.e. the start of the window
    /// that may be open at `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // `cron` looks strictly before a whole-second instant, so ask from the
        // next second of `t`'s own second; fire times are whole minutes, so
        // nothing in (t, that second] can be returned by mistake.
        let probe = t
            .with_nanosecond(0)?
            .checked_add_signed(TimeDelta::seconds(1))?;
        self.inner
            .crons
            .iter()
            .filter_map(|c| c.after(&probe).next_back())
            .max()
    }

    /// Fire times in `[from, to)`, ascending.
    pub fn fire_times(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> {
        // One nanosecond earlier turns cron's "strictly after" into "at or after".
        let start = from.checked_sub_signed(TimeDelta::nanoseconds(1));
        let mut heads: Vec<_> = match start {
            Some(start) => self
                .inner
                .crons
                .iter()
                .map(|c| c.after_owned(start).peekable())
                .collect(),
            None => Vec::new(),
        };
        std::iter::from_fn(move || {
            let next = heads.iter_mut().filter_map(|h| h.peek().copied()).min()?;
            // Both halves of a "dom OR dow" schedule may fire at the same
            // instant; advance every head that holds it so it is yielded once.
            for head in &mut heads {
                head.next_if_eq(&next);
            }
            Some(next)
        })
        .take_while(move |t| *t < to)
    }

    /// The shortest time between two consecutive fire times, or `None` if the
    /// schedule fires fewer than twice in 28 years. A rotation window longer
    /// than this would overlap the next one.
    pub fn min_gap(&self) -> Option<Duration> {
        self.gaps(true)
    }

    /// The longest time between two consecutive fire times (92 days for
    /// `@quarterly`), or `None` if it fires fewer than twice in 28 years. A
    /// `max_age` shorter than this cannot be met by scheduled rotation alone.
    pub fn max_gap(&self) -> Option<Duration> {
        self.gaps(false)
    }

    fn gaps(&self, shortest: bool) -> Option<Duration> {
        let times = &self.inner.times_of_day;
        let (&first, &last) = (times.first()?, times.last()?);
        let within_day = times.windows(2).map(|w| i64::from(w[1] - w[0]));
        let mut best: Option<i64> = if shortest {
            within_day.min()
        } else {
            within_day.max()
        };
        if shortest && best == Some(1) {
            return Some(Duration::minutes(1));
        }

        // Between two firing days the gap runs from the last time of day on the
        // earlier day to the first time of day on the later one.
        let span = i64::from(last - first);
        let mut previous_day: Option<NaiveDate> = None;
        let mut day = gap_epoch().date_naive();
        let end = day.with_year(day.year() + 28)?;
        while day < end {
            if self.inner.day_rules.iter().any(|r| r.matches(day)) {
                if let Some(prev) = previous_day {
                    let gap = (day - prev).num_days() * 1440 - span;
                    best = Some(match best {
                        Some(b) if shortest => b.min(gap),
                        Some(b) => b.max(gap),
                        None => gap,
                    });
                }
                previous_day = Some(day);
            }
            day = day.succ_opt()?;
        }
        best.map(Duration::minutes)
    }
}

/// Start of the scan used for gap analysis and the "never fires" check; any
/// fixed leap year works, this one is close to the dates we will plan for.
fn gap_epoch() -> DateTime<Utc> {
    // 2024-01-01T00:00:00Z is day 19,723 of the Unix epoch.
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(19_723)
}

/// The crontab an alias stands for; `drift.rs` translates aliases through the same table.
pub(crate) fn expand_alias(alias: &str) -> Result<&'static str, ScheduleError> {
    Ok(match alias.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@quarterly" => "0 0 1 1,4,7,10 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return Err(ScheduleError::UnknownAlias(alias.to_owned())),
    })
}

/// Parses a crontab day-of-week field into a bit mask (bit 0 = Sunday).
/// Checks the numbers of one crontab field (lists, ranges, steps) against `min..=max`;
/// names (JAN, ...) are left to the cron crate.
fn check_field(name: &str, field: &str, min: u32, max: u32) -> Result<(), String> {
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(0) => return Err(format!("{name} step `/{step}` must be at least 1")),
                Ok(_) => {}
                Err(_) => return Err(format!("{name} step `/{step}` is not a number")),
            }
        }
        for bound in range.split('-').filter(|b| *b != "*") {
            if let Ok(n) = bound.parse::<u32>()
                && !(min..=max).contains(&n)
            {
                return Err(format!("{name} `{n}` is out of range {min}-{max}"));
            }
        }
    }
    Ok(())
}

fn parse_day_of_week(field: &str) -> Result<u8, String> {
    let mut mask = 0u8;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step `{step}` is not a positive number"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" {
            (0, 7)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (weekday_value(a)?, weekday_value(b)?);
            if a > b {
                return Err(format!(
                    "range `{range}` runs backwards; split it into two ranges"
                ));
            }
            (a, b)
        } else if item.contains('/') {
            // Vixie cron rejects `1/2`; accepting it would only invite guesses.
            return Err(format!(
                "step needs a range or `*` in `{item}`, e.g. `1-5/2`"
            ));
        } else {
            let v = weekday_value(range)?;
            (v, v)
        };
        for day in (low..=high).step_by(step as usize) {
            mask |= 1 << (day % 7);
        }
    }
    Ok(mask)
}

/// One weekday as crontab numbers it: 0-7 with both 0 and 7 meaning Sunday.
/// Weekday names in crontab order (0 = Sunday); a field may use any prefix of three or
/// more letters.
pub(crate) const WEEKDAY_NAMES: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

fn weekday_value(token: &str) -> Result<u32, String> {
    const NAMES: [&str; 7] = WEEKDAY_NAMES;
    if token.is_empty() {
        return Err("an empty list item or range end".to_owned());
    }
    if let Ok(n) = token.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("day {n} is out of range"))
        };
    }
    let lower = token.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|name| lower.len() >= 3 && name.starts_with(&lower))
        .map(|i| i as u32)
        .ok_or_else(|| format!("`{token}` is not a day of the week"))
}

/// Renders a weekday mask in the `cron` crate's numbering (1 = Sunday).
fn weekdays_to_cron(mask: u8) -> String {
    if mask == ALL_WEEKDAYS {
        return "*".to_owned();
    }
    (0..7)
        .filter(|d| mask & (1 << d) != 0)
        .map(|d| (d + 1).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.as_str()).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Schedule {}

impl std::hash::Hash for Schedule {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn sched(text: &str) -> Schedule {
        Schedule::parse(text).unwrap()
    }

    fn fires(text: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        sched(text).fire_times(from, to).collect()
    }

    #[test]
    fn quarterly_crosses_year_boundary() {
        let q = sched("@quarterly");
        assert_eq!(
            q.next_after(utc(2026, 12, 31, 0, 0, 0)),
            Some(utc(2027, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            fires(
                "@quarterly",
                utc(2026, 12, 31, 0, 0, 0),
                utc(2028, 1, 1, 0, 0, 0)
            ),
            vec![
                utc(2027, 1, 1, 0, 0, 0),
                utc(2027, 4, 1, 0, 0, 0),
                utc(2027, 7, 1, 0, 0, 0),
                utc(2027, 10, 1, 0, 0, 0),
            ]
        );
    }

    #[test]
    fn next_after_is_strict_and_fire_times_half_open() {
        let q = sched("@quarterly");
        assert_eq!(
            q.next_after(utc(2027, 4, 1, 0, 0, 0)),
            Some(utc(2027, 7, 1, 0, 0, 0))
        );
        // `from` included, `to` excluded.
        assert_eq!(
            fires(
                "@quarterly",
                utc(2027, 4, 1, 0, 0, 0),
                utc(2027, 10, 1, 0, 0, 0)
            ),
            vec![utc(2027, 4, 1, 0, 0, 0), utc(2027, 7, 1, 0, 0, 0)]
        );
        // A sub-second past the fire time no longer includes it.
        let just_after = utc(2027, 4, 1, 0, 0, 0) + Duration::milliseconds(1);
        assert_eq!(
            fires("@quarterly", just_after, utc(2027, 10, 1, 0, 0, 1)),
            vec![utc(2027, 7, 1, 0, 0, 0), utc(2027, 10, 1, 0, 0, 0)]
        );
    }

    #[test]
    fn aliases_expand_to_crontab_meaning() {
        // 2027-01-01 is a Friday.
        let t = utc(2027, 1, 1, 10, 30, 0);
        assert_eq!(
            sched("@yearly").next_after(t),
            Some(utc(2028, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            sched("@annually").next_after(t),
            Some(utc(2028, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            sched("@monthly").next_after(t),
            Some(utc(2027, 2, 1, 0, 0, 0))
        );
        assert_eq!(
            sched("@weekly").next_after(t),
            Some(utc(2027, 1, 3, 0, 0, 0))
        );
        assert_eq!(
            sched("@daily").next_after(t),
            Some(utc(2027, 1, 2, 0, 0, 0))
        );
        assert_eq!(
            sched("@hourly").next_after(t),
            Some(utc(2027, 1, 1, 11, 0, 0))
        );
        assert_eq!(
            sched("@QUARTERLY").next_after(t),
            Some(utc(2027, 4, 1, 0, 0, 0))
        );
    }

    #[test]
    fn leap_day_schedule_waits_for_leap_year() {
        let s = sched("0 3 29 2 *");
        assert_eq!(
            s.next_after(utc(2025, 1, 1, 0, 0, 0)),
            Some(utc(2028, 2, 29, 3, 0, 0))
        );
        assert_eq!(
            s.next_after(utc(2028, 2, 29, 3, 0, 0)),
            Some(utc(2032, 2, 29, 3, 0, 0))
        );
        assert_eq!(
            s.last_at_or_before(utc(2031, 6, 1, 0, 0, 0)),
            Some(utc(2028, 2, 29, 3, 0, 0))
        );
        // 2028-02-29 to 2032-02-29 is 4 * 365 + 1 days.
        assert_eq!(s.min_gap(), Some(Duration::days(1461)));
        assert_eq!(s.max_gap(), Some(Duration::days(1461)));
    }

    #[test]
    fn last_at_or_before_includes_the_instant_itself() {
        let q = sched("@quarterly");
        assert_eq!(
            q.last_at_or_before(utc(2027, 5, 15, 12, 0, 0)),
            Some(utc(2027, 4, 1, 0, 0, 0))
        );
        assert_eq!(
            q.last_at_or_before(utc(2027, 4, 1, 0, 0, 0)),
            Some(utc(2027, 4, 1, 0, 0, 0))
        );
        let just_before = utc(2027, 4, 1, 0, 0, 0) - Duration::nanoseconds(1);
        assert_eq!(
            q.last_at_or_before(just_before),
            Some(utc(2027, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            q.last_at_or_before(utc(2027, 1, 1, 0, 0, 0) + Duration::milliseconds(500)),
            Some(utc(2027, 1, 1, 0, 0, 0))
        );

        let daily = sched("30 2 * * *");
        assert_eq!(
            daily.last_at_or_before(utc(2027, 3, 10, 2, 29, 59)),
            Some(utc(2027, 3, 9, 2, 30, 0))
        );
        assert_eq!(
            daily.last_at_or_before(utc(2027, 3, 10, 2, 30, 0)),
            Some(utc(2027, 3, 10, 2, 30, 0))
        );
        // Across a year boundary, backwards.
        assert_eq!(
            sched("0 12 15 6 *").last_at_or_before(utc(2027, 3, 1, 0, 0, 0)),
            Some(utc(2026, 6, 15, 12, 0, 0))
        );
    }

    #[test]
    fn last_at_or_before_agrees_with_forward_iteration() {
        // Two independent code paths (cron's backward walk vs forward
        // iteration) must agree for a spread of schedules and instants.
        let schedules = [
            "@quarterly",
            "@monthly",
            "@weekly",
            "15 */6 * * *",
            "0 2 * * 1-5",
            "0 0 13 * 5",
            "45 23 31 * *",
            "0 9,17 * * SAT,SUN",
        ];
        let probes = [
            utc(2027, 1, 1, 0, 0, 0),
            utc(2027, 2, 28, 23, 59, 59),
            utc(2027, 3, 1, 0, 0, 0),
            utc(2028, 2, 29, 9, 0, 0),
            utc(2028, 12, 31, 23, 45, 0),
            utc(2027, 8, 13, 0, 0, 0),
        ];
        for text in schedules {
            for probe in probes {
                let forward = fires(
                    text,
                    probe - Duration::days(400),
                    probe + Duration::seconds(1),
                )
                .last()
                .copied();
                assert_eq!(
                    sched(text).last_at_or_before(probe),
                    forward,
                    "{text} at {probe}"
                );
            }
        }
    }

    #[test]
    fn numeric_day_of_week_uses_crontab_numbering() {
        // 2027-01-01 is a Friday, so Sunday is Jan 3 and Monday Jan 4.
        let from = utc(2027, 1, 1, 3, 0, 0);
        assert_eq!(
            sched("0 2 * * 1").next_after(from),
            Some(utc(2027, 1, 4, 2, 0, 0))
        );
        assert_eq!(
            sched("0 2 * * 0").next_after(from),
            Some(utc(2027, 1, 3, 2, 0, 0))
        );
        assert_eq!(
            sched("0 2 * * 7").next_after(from),
            Some(utc(2027, 1, 3, 2, 0, 0))
        );
        assert_eq!(
            sched("0 2 * * 6").next_after(from),
            Some(utc(2027, 1, 2, 2, 0, 0))
        );
        assert_eq!(
            fires("0 2 * * 1", from, utc(2027, 1, 26, 0, 0, 0)),
            vec![
                utc(2027, 1, 4, 2, 0, 0),
                utc(2027, 1, 11, 2, 0, 0),
                utc(2027, 1, 18, 2, 0, 0),
                utc(2027, 1, 25, 2, 0, 0),
            ]
        );
    }

    #[test]
    fn day_of_week_ranges_lists_steps_and_names() {
        let from = utc(2027, 1, 1, 3, 0, 0); // Friday, after 02:00
        let to = utc(2027, 1, 12, 0, 0, 0);
        let weekdays = vec![
            utc(2027, 1, 4, 2, 0, 0),
            utc(2027, 1, 5, 2, 0, 0),
            utc(2027, 1, 6, 2, 0, 0),
            utc(2027, 1, 7, 2, 0, 0),
            utc(2027, 1, 8, 2, 0, 0),
            utc(2027, 1, 11, 2, 0, 0),
        ];
        assert_eq!(fires("0 2 * * 1-5", from, to), weekdays);
        assert_eq!(fires("0 2 * * MON-FRI", from, to), weekdays);
        assert_eq!(fires("0 2 * * mon-fri", from, to), weekdays);
        assert_eq!(fires("0 2 * * 1,2,3,4,5", from, to), weekdays);

        let weekend = vec![
            utc(2027, 1, 2, 2, 0, 0),
            utc(2027, 1, 3, 2, 0, 0),
            utc(2027, 1, 9, 2, 0, 0),
            utc(2027, 1, 10, 2, 0, 0),
        ];
        assert_eq!(fires("0 2 * * 6,0", from, to), weekend);
        assert_eq!(fires("0 2 * * 6-7", from, to), weekend);
        assert_eq!(fires("0 2 * * SAT,SUN", from, to), weekend);

        // Friday to Sunday through 7 = Sunday.
        assert_eq!(
            fires(
                "0 2 * * 5-7",
                utc(2027, 1, 1, 0, 0, 0),
                utc(2027, 1, 9, 0, 0, 0)
            ),
            vec![
                utc(2027, 1, 1, 2, 0, 0),
                utc(2027, 1, 2, 2, 0, 0),
                utc(2027, 1, 3, 2, 0, 0),
                utc(2027, 1, 8, 2, 0, 0),
            ]
        );
        // */2 = Sun, Tue, Thu, Sat.
        assert_eq!(
            fires("0 2 * * */2", from, utc(2027, 1, 8, 0, 0, 0)),
            vec![
                utc(2027, 1, 2, 2, 0, 0),
                utc(2027, 1, 3, 2, 0, 0),
                utc(2027, 1, 5, 2, 0, 0),
                utc(2027, 1, 7, 2, 0, 0),
            ]
        );
        // 1-5/2 = Mon, Wed, Fri.
        assert_eq!(
            fires("0 2 * * 1-5/2", from, utc(2027, 1, 9, 0, 0, 0)),
            vec![
                utc(2027, 1, 4, 2, 0, 0),
                utc(2027, 1, 6, 2, 0, 0),
                utc(2027, 1, 8, 2, 0, 0),
            ]
        );
    }

    #[test]
    fn restricted_day_of_month_and_week_fire_on_either() {
        // Crontab: "the 13th OR any Friday". Jan 2027: Fridays 1, 8, 15, 22,
        // 29; the 13th is a Wednesday.
        assert_eq!(
            fires(
                "0 0 13 * 5",
                utc(2027, 1, 1, 0, 0, 1),
                utc(2027, 2, 1, 0, 0, 0)
            ),
            vec![
                utc(2027, 1, 8, 0, 0, 0),
                utc(2027, 1, 13, 0, 0, 0),
                utc(2027, 1, 15, 0, 0, 0),
                utc(2027, 1, 22, 0, 0, 0),
                utc(2027, 1, 29, 0, 0, 0),
            ]
        );
        // Friday 2027-08-13 matches both halves and must appear once.
        assert_eq!(
            fires(
                "0 0 13 * 5",
                utc(2027, 8, 12, 0, 0, 0),
                utc(2027, 8, 21, 0, 0, 0)
            ),
            vec![utc(2027, 8, 13, 0, 0, 0), utc(2027, 8, 20, 0, 0, 0)]
        );
        // A star-prefixed field keeps the AND: odd days that are Mondays.
        assert_eq!(
            fires(
                "0 0 */2 * 1",
                utc(2027, 1, 1, 0, 0, 0),
                utc(2027, 2, 1, 0, 0, 0)
            ),
            vec![utc(2027, 1, 11, 0, 0, 0), utc(2027, 1, 25, 0, 0, 0)]
        );
    }

    #[test]
    fn gaps_of_common_schedules() {
        assert_eq!(sched("@quarterly").min_gap(), Some(Duration::days(90)));
        assert_eq!(sched("@quarterly").max_gap(), Some(Duration::days(92)));
        assert_eq!(sched("0 */6 * * *").min_gap(), Some(Duration::hours(6)));
        assert_eq!(sched("0 */6 * * *").max_gap(), Some(Duration::hours(6)));
        assert_eq!(sched("*/5 * * * *").min_gap(), Some(Duration::minutes(5)));
        assert_eq!(sched("*/5 * * * *").max_gap(), Some(Duration::minutes(5)));
        assert_eq!(sched("* * * * *").min_gap(), Some(Duration::minutes(1)));
        assert_eq!(sched("@monthly").min_gap(), Some(Duration::days(28)));
        assert_eq!(sched("@monthly").max_gap(), Some(Duration::days(31)));
        assert_eq!(sched("@weekly").min_gap(), Some(Duration::days(7)));
        assert_eq!(sched("@weekly").max_gap(), Some(Duration::days(7)));
        // Friday 02:30 to Monday 02:30 is the longest gap.
        assert_eq!(sched("30 2 * * 1-5").min_gap(), Some(Duration::days(1)));
        assert_eq!(sched("30 2 * * 1-5").max_gap(), Some(Duration::days(3)));
        // 09:00 -> 17:00 inside a day, 17:00 -> 09:00 across midnight.
        assert_eq!(sched("0 9,17 * * *").min_gap(), Some(Duration::hours(8)));
        assert_eq!(sched("0 9,17 * * *").max_gap(), Some(Duration::hours(16)));
    }

    #[test]
    fn gaps_agree_with_brute_force_over_two_years() {
        // Schedules whose gap pattern repeats within 2025-2026 (no leap days).
        for text in [
            "@quarterly",
            "0 9,17 * * *",
            "30 2 * * 1-5",
            "0 0 13 * 5",
            "15 4 1,15 * *",
        ] {
            let times = fires(text, utc(2025, 1, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
            let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
            let s = sched(text);
            assert_eq!(s.min_gap(), gaps.iter().min().copied(), "{text}");
            assert_eq!(s.max_gap(), gaps.iter().max().copied(), "{text}");
        }
    }

    #[test]
    fn out_of_range_fields_are_named_on_one_line() {
        for (expr, want) in [
            ("0 24 1 * *", "hour `24` is out of range 0-23"),
            ("60 3 1 * *", "minute `60` is out of range 0-59"),
            ("0 3 0 * *", "day-of-month `0` is out of range 1-31"),
            ("0 3 1 13 *", "month `13` is out of range 1-12"),
            ("0 3-25 1 * *", "hour `25` is out of range 0-23"),
            ("*/0 3 1 * *", "minute step `/0` must be at least 1"),
        ] {
            let Err(e) = Schedule::parse(expr) else {
                panic!("{expr} was accepted")
            };
            let e = e.to_string();
            assert!(e.contains(want), "{expr}: {e}");
            assert!(!e.contains('\n'), "{expr}: {e}");
        }
        // The crate's own message, when it is the one that refuses, is one line too.
        let Err(e) = Schedule::parse("0 3 1 FOO *") else {
            panic!("FOO was accepted")
        };
        let e = e.to_string();
        assert!(e.contains("FOO") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn parse_errors_explain_the_problem() {
        let err = Schedule::parse("0 0 0 1 * *").unwrap_err();
        assert_eq!(
            err,
            ScheduleError::FieldCount {
                expr: "0 0 0 1 * *".to_owned(),
                found: 6
            }
        );
        assert!(
            err.to_string().starts_with(
                "expected 5 fields (min hour dom month dow), found 6 in `0 0 0 1 * *`"
            )
        );
        assert_eq!(Schedule::parse("   "), Err(ScheduleError::Empty));
        assert_eq!(
            Schedule::parse("@fortnightly"),
            Err(ScheduleError::UnknownAlias("@fortnightly".to_owned()))
        );
        assert!(matches!(
            Schedule::parse("61 * * * *"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 * 13 *"),
            Err(ScheduleError::Cron { .. })
        ));
        for bad_dow in ["8", "5-1", "FOO", "1/2", "*/0", "1,", "m"] {
            let text = format!("0 2 * * {bad_dow}");
            assert!(
                matches!(Schedule::parse(&text), Err(ScheduleError::DayOfWeek { .. })),
                "{text}"
            );
        }
        assert_eq!(
            Schedule::parse("0 0 30 2 *"),
            Err(ScheduleError::NeverFires("0 0 30 2 *".to_owned()))
        );
    }

    #[test]
    fn error_messages_are_lowercase_without_final_period() {
        let errors = [
            Schedule::parse("").unwrap_err(),
            Schedule::parse("@nope").unwrap_err(),
            Schedule::parse("1 2 3").unwrap_err(),
            Schedule::parse("0 2 * * 9").unwrap_err(),
            Schedule::parse("x * * * *").unwrap_err(),
            Schedule::parse("0 0 31 4 *").unwrap_err(),
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
        }
    }

    #[test]
    fn identity_is_the_trimmed_source_text() {
        let a = sched("  @daily ");
        assert_eq!(a.as_str(), "@daily");
        assert_eq!(a.to_string(), "@daily");
        assert_eq!(a, sched("@daily"));
        // Same calendar, different text: different schedules for grouping.
        assert_ne!(a, sched("0 0 * * *"));
        let set: std::collections::HashSet<Schedule> =
            [sched("@daily"), sched("@daily"), sched("0 0 * * *")]
                .into_iter()
                .collect();
        assert_eq!(set.len(), 2);
        assert_eq!(format!("{a:?}"), "Schedule(\"@daily\")");
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let s: Schedule = serde_json::from_str("\"0 2 * * MON-FRI\"").unwrap();
        assert_eq!(s.as_str(), "0 2 * * MON-FRI");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"0 2 * * MON-FRI\"");
        let err = serde_json::from_str::<Schedule>("\"0 0 * *\"").unwrap_err();
        assert!(err.to_string().contains("expected 5 fields"), "{err}");
    }
}
