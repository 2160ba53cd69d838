//! The CloudWatch Logs reads behind the watch of dependents' application logs: how many
//! lines of a log group match an authentication-error pattern in a time range
//! (`FilterLogEvents`). Read-only, and only `logs:FilterLogEvents` on the declared groups.
//!
//! A line is counted when rotationd's own reading of the pattern matches it too
//! ([`crate::filter_pattern`]: the count must not depend on how a server reads `?`). The
//! line itself is dropped at once: what is kept is the count, the stream names and the
//! first and last match times, because a log line can hold a credential.
//!
//! Bounded: one call per log group and poll in the usual case (one page answers it); at
//! most [`MAX_PAGES`] pages of [`EVENTS_PER_PAGE`] lines, and no further page once the
//! count is past what the caller needs to decide ("unhealthy" needs no exact figure).

use std::collections::BTreeSet;

use aws_sdk_cloudwatchlogs::Client;
use chrono::{DateTime, TimeZone, Utc};

use super::AwsError;
use crate::filter_pattern::FilterPattern;

/// Pages read per log group and poll at most.
pub const MAX_PAGES: usize = 10;
/// `FilterLogEvents` returns at most 10,000 events per page.
pub const EVENTS_PER_PAGE: i32 = 10_000;
/// Stream names kept as evidence per log group at most.
pub const MAX_STREAMS: usize = 10;

/// What matched in one log group over one time range. No line text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCount {
    pub matches: u64,
    /// The streams the matches were in (at most [`MAX_STREAMS`]).
    pub streams: BTreeSet<String>,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// False when the count stopped early (past `enough`, or [`MAX_PAGES`]): it is then
    /// a lower bound.
    pub complete: bool,
}

/// How far [`count_matches`] reads: lines per page and pages per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub per_page: i32,
    pub max_pages: usize,
}

impl Paging {
    /// What the watch reads: [`EVENTS_PER_PAGE`] lines a page, [`MAX_PAGES`] pages.
    pub const WATCH: Paging = Paging {
        per_page: EVENTS_PER_PAGE,
        max_pages: MAX_PAGES,
    };
}

/// Counts the lines of `group` in `[start, end)` that match `pattern`, reading no further
/// once more than `enough` have matched, within [`Paging::WATCH`].
pub async fn count_matches(
    client: &Client,
    group: &str,
    pattern: &FilterPattern,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    enough: u64,
) -> Result<LogCount, AwsError> {
    count_matches_paged(client, group, pattern, (start, end), enough, Paging::WATCH).await
}

/// [`count_matches`] with the paging given (the bounds are tested with small pages).
pub async fn count_matches_paged(
    client: &Client,
    group: &str,
    pattern: &FilterPattern,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    enough: u64,
    paging: Paging,
) -> Result<LogCount, AwsError> {
    let mut out = LogCount::default();
    let mut token: Option<String> = None;
    for _ in 0..paging.max_pages {
        let page = client
            .filter_log_events()
            .log_group_name(group)
            .filter_pattern(pattern.as_str())
            .start_time(start.timestamp_millis())
            .end_time(end.timestamp_millis())
            .limit(paging.per_page)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("FilterLogEvents", e));
        let page = match page {
            Ok(page) => page,
            // A group the service has not written to yet holds no authentication error.
            // Said once per poll in the log, so a misspelt name does not go unnoticed.
            Err(e) if e.code.as_deref() == Some("ResourceNotFoundException") => {
                tracing::warn!(
                    log_group = group,
                    "log group does not exist (yet); counted as no matching line; check [[dependent]] log_groups if it should"
                );
                return Ok(LogCount {
                    complete: true,
                    ..LogCount::default()
                });
            }
            Err(e) => return Err(e),
        };
        for event in page.events() {
            if !event.message().is_some_and(|m| pattern.matches(m)) {
                continue;
            }
            out.matches += 1;
            if let Some(stream) = event.log_stream_name()
                && (out.streams.len() < MAX_STREAMS || out.streams.contains(stream))
            {
                out.streams.insert(stream.to_string());
            }
            if let Some(at) = event
                .timestamp()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            {
                out.first = Some(out.first.map_or(at, |f| f.min(at)));
                out.last = Some(out.last.map_or(at, |l| l.max(at)));
            }
        }
        match page.next_token() {
            // CloudWatch Logs may answer an empty page with a token: the search goes on.
            Some(next) if Some(next) != token.as_deref() && out.matches <= enough => {
                token = Some(next.to_string());
            }
            Some(_) => return Ok(out),
            None => {
                out.complete = true;
                return Ok(out);
            }
        }
    }
    Ok(out)
}
