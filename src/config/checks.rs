//! The checks the sections share: one range check ([`in_range`], and [`written_in_range`]
//! for a key's own value) used for durations and integers alike, durations, schedules,
//! ARNs, regions, account ids, tickets, table and secret names, URLs.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::ops::{Bound, Range, RangeBounds, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use super::diag::Diagnostics;
use super::raw::S;
use crate::arn::{Arn, ArnError, PARTITIONS};
use crate::schedule::Schedule;

/// Which end of its range a value fell off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outside {
    Below,
    Above,
}

/// `value` when it lies in `range`; otherwise an error at `span`, saying what `why` says
/// for the end the value fell off, and `None`.
pub(super) fn in_range<T: PartialOrd>(
    diags: &mut Diagnostics,
    span: Range<usize>,
    value: T,
    range: impl RangeBounds<T>,
    why: impl FnOnce(Outside) -> String,
) -> Option<T> {
    if range.contains(&value) {
        return Some(value);
    }
    let side = match range.start_bound() {
        Bound::Included(min) if value < *min => Outside::Below,
        Bound::Excluded(min) if value <= *min => Outside::Below,
        _ => Outside::Above,
    };
    diags.error(span, why(side));
    None
}

/// [`in_range`] for a value read from `key`: a default (`key` not written) is not checked,
/// and a value out of range is reported at the key's own value. Whether it passed.
pub(super) fn written_in_range<T: PartialOrd, U>(
    diags: &mut Diagnostics,
    key: &S<U>,
    value: T,
    range: impl RangeBounds<T>,
    why: impl FnOnce(Outside) -> String,
) -> bool {
    match key {
        None => true,
        Some(k) => in_range(diags, k.span(), value, range, why).is_some(),
    }
}

/// The integer `key`, which must lie in `range`; `default` when absent or out of range (the
/// error is recorded).
pub(super) fn integer(
    diags: &mut Diagnostics,
    value: &S<i64>,
    key: &str,
    range: RangeInclusive<u32>,
    default: u32,
) -> u32 {
    let Some(v) = value else {
        return default;
    };
    let (min, max) = (*range.start(), *range.end());
    let n = *v.get_ref();
    in_range(diags, v.span(), n, i64::from(min)..=i64::from(max), |_| {
        format!("{key} must be between {min} and {max}, found {n}")
    })
    .and_then(|n| u32::try_from(n).ok())
    .unwrap_or(default)
}

/// [`integer`] from 1 to `max`.
pub(super) fn positive(
    diags: &mut Diagnostics,
    value: &S<i64>,
    key: &str,
    max: u32,
    default: u32,
) -> NonZeroU32 {
    NonZeroU32::new(integer(diags, value, key, 1..=max, default)).unwrap_or(NonZeroU32::MIN)
}

/// Parses a duration such as `90d`, `24h` or `15m`; `default` when absent or invalid (the
/// error is recorded, and a sane value keeps later checks from piling up noise).
pub(super) fn duration(
    diags: &mut Diagnostics,
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
) -> Duration {
    let Some(v) = value else {
        return default;
    };
    let text = v.get_ref().as_str();
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => {
            diags.error(v.span(), format!("`{key}` must be longer than zero"));
            default
        }
        Ok(d) => d,
        Err(e) => {
            diags.error(
                v.span(),
                format!(
                    "invalid duration `{text}` for `{key}`: {e}; use a number and a unit, like `90d`, `24h` or `15m`"
                ),
            );
            default
        }
    }
}

/// `92d`, `4h`, `1d 2h 30m`: days at most, so that messages never speak of months.
pub fn fmt_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

pub(super) const fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

pub(super) const fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// A parsed schedule with its shortest and longest gap between two fire times.
#[derive(Clone)]
pub(super) struct ParsedSchedule {
    pub(super) schedule: Schedule,
    pub(super) min_gap: Option<Duration>,
    pub(super) max_gap: Option<Duration>,
}

/// Parses each distinct schedule text once: a fleet of 100,000 secrets shares a handful.
#[derive(Default)]
pub(super) struct Schedules {
    parsed: HashMap<String, Result<ParsedSchedule, String>>,
    /// `schedule::aws_cron::aws_rules` per schedule text and window, for `native_schedule = "sync"`.
    rules: HashMap<(String, Duration), Result<(), String>>,
    /// Default schedules already reported at `native_schedule` (once each, not per secret).
    pub(super) reported_defaults: HashSet<(String, Duration)>,
}

impl Schedules {
    pub(super) fn of(&mut self, schedule: &Schedule) -> ParsedSchedule {
        self.parsed
            .entry(schedule.as_str().to_string())
            .or_insert_with(|| Ok(Self::measure(schedule.clone())))
            .clone()
            .unwrap_or_else(|_| Self::measure(schedule.clone()))
    }

    /// Whether `schedule` with `window` can be written as Secrets Manager rotation rules.
    pub(super) fn aws_rules(
        &mut self,
        schedule: &Schedule,
        window: Duration,
    ) -> Result<(), String> {
        self.rules
            .entry((schedule.as_str().to_string(), window))
            .or_insert_with(|| crate::schedule::aws_cron::aws_rules(schedule, window).map(|_| ()))
            .clone()
    }

    fn measure(schedule: Schedule) -> ParsedSchedule {
        ParsedSchedule {
            min_gap: schedule.min_gap().and_then(|g| g.to_std().ok()),
            max_gap: schedule.max_gap().and_then(|g| g.to_std().ok()),
            schedule,
        }
    }

    pub(super) fn parse(
        &mut self,
        diags: &mut Diagnostics,
        value: &Spanned<String>,
    ) -> Option<ParsedSchedule> {
        let text = value.get_ref();
        let parsed = self
            .parsed
            .entry(text.clone())
            .or_insert_with(|| {
                Schedule::parse(text)
                    .map(Self::measure)
                    .map_err(|e| e.to_string())
            })
            .clone();
        match parsed {
            Ok(p) => Some(p),
            Err(e) => {
                diags.error(value.span(), format!("invalid schedule `{text}`: {e}"));
                None
            }
        }
    }
}

pub(super) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, cn-north-1
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// Whether `value` is an AWS region; an error when it is not.
pub(super) fn region(diags: &mut Diagnostics, value: &Spanned<String>) -> bool {
    let text = value.get_ref();
    let ok = is_region(text);
    if !ok {
        diags.error(
            value.span(),
            format!("`{text}` is not an AWS region (like us-east-1)"),
        );
    }
    ok
}

/// Checks an ARN of `service`; returns a description of what is wrong.
pub fn check_arn(arn: &str, service: &str) -> Result<(), String> {
    let parts = match Arn::parse(arn) {
        Ok(parts) => parts,
        Err(ArnError::Shape) => {
            return Err(format!(
                "malformed ARN `{arn}`: expected arn:PARTITION:{service}:REGION:ACCOUNT:RESOURCE"
            ));
        }
        Err(ArnError::UnknownPartition(partition)) => {
            return Err(format!(
                "malformed ARN `{arn}`: unknown partition `{partition}`"
            ));
        }
    };
    if parts.service != service {
        return Err(format!(
            "malformed ARN `{arn}`: expected service `{service}`, found `{}`",
            parts.service
        ));
    }
    if !is_region(parts.region) {
        return Err(format!(
            "malformed ARN `{arn}`: `{}` is not a region",
            parts.region
        ));
    }
    if !is_account_id(parts.account) {
        return Err(format!(
            "malformed ARN `{arn}`: account id `{}` must be 12 digits",
            parts.account
        ));
    }
    if parts.resource.is_empty() {
        return Err(format!("malformed ARN `{arn}`: the resource part is empty"));
    }
    if service == "secretsmanager" && !parts.resource.starts_with("secret:") {
        return Err(format!(
            "malformed ARN `{arn}`: a secret ARN ends in `secret:NAME-XXXXXX`"
        ));
    }
    Ok(())
}

/// Checks an IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/NAME` (the name may have a
/// path: `role/team/NAME`); returns its account id, or a description of what is wrong.
pub(super) fn check_role_arn(arn: &str) -> Result<&str, String> {
    const SHAPE: &str = "write it as arn:aws:iam::ACCOUNT:role/NAME";
    let parsed = match Arn::parse(arn) {
        Ok(parsed) => parsed,
        Err(ArnError::Shape) => return Err(format!("malformed role ARN `{arn}`; {SHAPE}")),
        Err(ArnError::UnknownPartition(partition)) => {
            let (last, others) = PARTITIONS.split_last().unwrap_or((&"aws", &[]));
            return Err(format!(
                "malformed role ARN `{arn}`: unknown partition `{partition}`; use {} or {last}",
                others.join(", ")
            ));
        }
    };
    let Arn {
        service,
        region,
        account,
        resource,
        ..
    } = parsed;
    if service != "iam" {
        return Err(format!(
            "malformed role ARN `{arn}`: expected service `iam`, found `{service}`; {SHAPE}"
        ));
    }
    if !region.is_empty() {
        return Err(format!(
            "malformed role ARN `{arn}`: IAM ARNs name no region, found `{region}`; {SHAPE}"
        ));
    }
    if !is_account_id(account) {
        return Err(format!(
            "malformed role ARN `{arn}`: account id `{account}` must be 12 digits; {SHAPE}"
        ));
    }
    let Some((path, name)) = parsed.role_path_and_name() else {
        return Err(format!(
            "malformed role ARN `{arn}`: `{resource}` is not a role; {SHAPE}"
        ));
    };
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if !name_ok {
        return Err(format!(
            "malformed role ARN `{arn}`: role name `{name}` must be 1 to 64 letters, digits or +=,.@_-; {SHAPE}"
        ));
    }
    if let Some(c) = path.chars().find(|c| !('!'..='~').contains(c)) {
        return Err(format!(
            "malformed role ARN `{arn}`: the role path contains {c:?}; a path holds printable ASCII without spaces"
        ));
    }
    Ok(account)
}

/// Secret names: 1-512 characters of ASCII letters, digits and `/_+=.@-`.
pub(super) fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 {
        return Err(format!(
            "secret name `{name}` must be 1 to 512 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(format!(
            "secret name `{name}` contains `{c}`; names may hold letters, digits and /_+=.@-"
        ));
    }
    Ok(())
}

/// DynamoDB table names: 3-255 characters of ASCII letters, digits and `_-.`.
pub(super) fn check_table_name(name: &str) -> Result<(), String> {
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
    {
        return Err(format!(
            "table name `{name}` contains `{c}`; DynamoDB table names may hold only letters, digits, `_`, `-` and `.`"
        ));
    }
    match name.len() {
        0 => Err(
            "`table` may not be empty; name the DynamoDB table that holds the state, like \"rotationd-state\""
                .to_string(),
        ),
        1..3 => Err(format!(
            "table name `{name}` is too short; DynamoDB table names have 3 to 255 characters, like \"rotationd-state\""
        )),
        256.. => Err(format!(
            "table name is {} characters long; DynamoDB table names have at most 255, so shorten it",
            name.len()
        )),
        _ => Ok(()),
    }
}

/// The URL `key` as written; an error unless it is an http:// or https:// URL with a host.
pub(super) fn http_url(diags: &mut Diagnostics, value: &Spanned<String>, key: &str) -> String {
    let v = value.get_ref();
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        diags.error(
            value.span(),
            format!("`{key}` must be an http:// or https:// URL, found `{v}`"),
        );
    }
    v.clone()
}

/// The ARN of `service` as written; an error when [`check_arn`] finds it malformed.
pub(super) fn arn(diags: &mut Diagnostics, value: &Spanned<String>, service: &str) -> String {
    if let Err(e) = check_arn(value.get_ref(), service) {
        diags.error(value.span(), e);
    }
    value.get_ref().clone()
}

/// The longest notice lead: within the shortest `[state] retention` (14d), so the
/// outbox still remembers a notice sent for a window when the window comes.
pub(super) const MAX_NOTICE: Duration = Duration::from_secs(14 * 86_400);

/// `notice = ["7d", "24h"]`: lead times before a planned window, each between 1m and
/// [`MAX_NOTICE`] and written once; longest first. `None` when the key is not written.
pub(super) fn notice_leads(
    diags: &mut Diagnostics,
    value: &S<Vec<Spanned<String>>>,
) -> Option<Vec<Duration>> {
    let list = value.as_ref()?;
    let mut leads: Vec<Duration> = Vec::new();
    for item in list.get_ref() {
        let lead = duration(diags, &Some(item.clone()), "notice", Duration::ZERO);
        if lead.is_zero() {
            continue;
        }
        let ok = in_range(diags, item.span(), lead, minutes(1)..=MAX_NOTICE, |_| {
            format!(
                "notice lead {} must be between 1m and {} (a notice is remembered for the shortest [state] retention)",
                fmt_duration(lead),
                fmt_duration(MAX_NOTICE)
            )
        });
        if ok.is_none() {
            continue;
        }
        if leads.contains(&lead) {
            diags.error(
                item.span(),
                format!(
                    "notice lead {} is listed twice; remove one",
                    fmt_duration(lead)
                ),
            );
            continue;
        }
        leads.push(lead);
    }
    leads.sort_by(|a, b| b.cmp(a));
    Some(leads)
}

pub(super) fn quarterly() -> Schedule {
    Schedule::parse("@quarterly").expect("@quarterly is a built-in schedule")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::testing::{account, errors};

    /// The messages `in_range` records for `value` against `range`, and what it returns.
    fn range_check(value: u32, range: impl RangeBounds<u32>) -> (Option<u32>, Vec<String>) {
        let mut diags = Diagnostics::new(Path::new("x"), "key = 1\n");
        let got = in_range(&mut diags, 6..7, value, range, |side| format!("{side:?}"));
        let lines = diags.lines().into_iter().map(|(_, l)| l).collect();
        (got, lines)
    }

    #[test]
    fn in_range_says_which_end_was_crossed() {
        assert_eq!(range_check(3, 3..=10), (Some(3), vec![]));
        assert_eq!(range_check(10, 3..=10), (Some(10), vec![]));
        assert_eq!(
            range_check(2, 3..=10),
            (None, vec!["x:1:7: error: Below".into()])
        );
        assert_eq!(
            range_check(11, 3..=10),
            (None, vec!["x:1:7: error: Above".into()])
        );
        assert_eq!(
            range_check(10, ..10),
            (None, vec!["x:1:7: error: Above".into()])
        );
        assert_eq!(
            range_check(0, 1..),
            (None, vec!["x:1:7: error: Below".into()])
        );
    }

    #[test]
    fn durations_render_in_days_at_most() {
        assert_eq!(fmt_duration(Duration::from_secs(92 * 86400)), "92d");
        assert_eq!(
            fmt_duration(Duration::from_secs(86400 + 2 * 3600 + 30 * 60)),
            "1d 2h 30m"
        );
        assert_eq!(fmt_duration(Duration::from_secs(4 * 3600)), "4h");
    }

    #[test]
    fn arn_checks() {
        assert!(
            check_arn(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
                "secretsmanager"
            )
            .is_ok()
        );
        assert!(check_arn("arn:aws:sns:us-east-1:12345:topic", "sns").is_err());
        assert!(check_arn("arn:aws:sqs:us-east-1:123456789012:topic", "sns").is_err());
        assert!(check_arn("not-an-arn", "sns").is_err());
    }

    #[test]
    fn role_arn_shapes() {
        for good in [
            "arn:aws:iam::111111111111:role/rotationd",
            "arn:aws:iam::111111111111:role/ops/security/rotationd",
            "arn:aws-cn:iam::111111111111:role/rotationd",
            "arn:aws-us-gov:iam::111111111111:role/Rotation+Daemon=1,a.b@c_d-e",
            "arn:aws-iso:iam::111111111111:role/rotationd",
            "arn:aws-eusc:iam::111111111111:role/rotationd",
        ] {
            assert_eq!(check_role_arn(good), Ok("111111111111"), "{good}");
        }
        for (bad, why) in [
            ("rotationd", "write it as arn:aws:iam::ACCOUNT:role/NAME"),
            ("arn:aws:iam::111111111111", "write it as"),
            (
                "arn:aws-moon:iam::111111111111:role/r",
                "unknown partition `aws-moon`; use aws, aws-cn, aws-us-gov, aws-eusc, aws-iso, aws-iso-b, aws-iso-e or aws-iso-f",
            ),
            ("arn:aws:sts::111111111111:role/r", "expected service `iam`"),
            (
                "arn:aws:iam:eu-west-1:111111111111:role/r",
                "IAM ARNs name no region",
            ),
            (
                "arn:aws:iam::1111:role/r",
                "account id `1111` must be 12 digits",
            ),
            ("arn:aws:iam::111111111111:user/r", "`user/r` is not a role"),
            (
                "arn:aws:iam::111111111111:role/",
                "role name `` must be 1 to 64",
            ),
            (
                "arn:aws:iam::111111111111:role/ops/",
                "role name `` must be 1 to 64",
            ),
            (
                "arn:aws:iam::111111111111:role/two words",
                "role name `two words`",
            ),
            (
                "arn:aws:iam::111111111111:role/my team/r",
                "the role path contains ' '",
            ),
        ] {
            let err = check_role_arn(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("malformed role ARN `{bad}`")),
                "{err}"
            );
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("arn:aws:iam::111111111111:role/{}", "r".repeat(65));
        assert!(check_role_arn(&long).is_err());
        // Located at role_arn, one error.
        let src = account(
            "id = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:user/rotationd\"\nregions = [\"eu-west-1\"]",
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:12:12: error: malformed role ARN"),
            "{errs:?}"
        );
    }
}
