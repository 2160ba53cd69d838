//! Evidence for auditors: what `rotationd report` prints, built purely from the state
//! store's rows and the configuration on a fixed clock ([`build`]), then rendered as JSON,
//! CSV or one self-contained HTML file ([`html`]). The CLI (`cli/report.rs`) only reads the
//! store (read-only) and writes the result.
//!
//! Per managed secret: its policy; every rotation in the period (when, trigger, ticket,
//! requester and approver, whether the dependents' watch validated it); its days
//! compliant, non-compliant and unknown; its departures with their SLA outcome; its
//! exceptions (failures, stuck and held secrets, holds lifted by an operator, emergency
//! rotations, rollbacks, missed windows, observe-mode verdicts). At the end, the audit
//! chain's head and the result of verifying it.
//!
//! **Compliance, per UTC day** (docs/operations.md, "Reports"). The credential in force at
//! an instant is the one the latest rotation before it created: a succeeded attempt
//! (rotationd's own, or a RotationSucceeded event it recorded) at its `finished_at`; a
//! rollback (audit `rollback` / `ok`) puts the credential of the rotation before back in
//! force. Its age is the time since that rotation. A day is
//! - **non-compliant** when at some instant of it the credential in force was older than
//!   `[policy] max_age`;
//! - **compliant** otherwise, when the credential in force at its end is known;
//! - **unknown** otherwise: no rotation is recorded before its end, so its age is unknown
//!   (rotationd knows only the rotations it made or saw).
//!
//! Days are counted from the period's start to its end or now, whichever is first (the
//! last day may be partial); days after now are not counted.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::config::{Config, Matcher, fmt_duration};
use crate::store::{
    Attempt, AttemptState, AuditEntry, Request, Trigger, TriggerKind, TriggerStatus, Validation,
};

pub mod html;

/// The report's schema name.
pub const SCHEMA: &str = "rotationd.report.v1";

/// `[from, to)`, whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// `2026-Q4`, `2026-11`, `2026-11-05`, or `FROM..TO` with both dates included
/// (`2026-10-01..2026-12-31`).
pub fn parse_period(s: &str) -> Result<Period, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "invalid --period `{s}`: use a quarter (2026-Q4), a month (2026-11), a day (2026-11-05) or FROM..TO with both days included (2026-10-01..2026-12-31)"
        )
    };
    let date = |t: &str| NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").map_err(|_| bad());
    if let Some((from, to)) = s.split_once("..") {
        let (from, to) = (date(from)?, date(to)?);
        if to < from {
            return Err(format!(
                "invalid --period `{s}`: it ends before it starts; write FROM..TO with FROM first"
            ));
        }
        return Ok(Period {
            from: day_start(from),
            to: day_start(to.succ_opt().ok_or_else(bad)?),
        });
    }
    if let Some((year, q)) = s.split_once("-Q").or_else(|| s.split_once("-q")) {
        let year: i32 = year.parse().map_err(|_| bad())?;
        let q: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&q) {
            return Err(bad());
        }
        let from = NaiveDate::from_ymd_opt(year, 3 * q - 2, 1).ok_or_else(bad)?;
        let to = if q == 4 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, 3 * q + 1, 1)
        }
        .ok_or_else(bad)?;
        return Ok(Period {
            from: day_start(from),
            to: day_start(to),
        });
    }
    if let Ok(d) = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        && s.len() == 7
    {
        let next = if d.month() == 12 {
            NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
        }
        .ok_or_else(bad)?;
        return Ok(Period {
            from: day_start(d),
            to: day_start(next),
        });
    }
    let d = date(s)?;
    Ok(Period {
        from: day_start(d),
        to: day_start(d.succ_opt().ok_or_else(bad)?),
    })
}

/// What the report is built from: rows read from the store, the config, the clock.
pub struct Input<'a> {
    pub cfg: &'a Config,
    pub period: Period,
    /// The label the period was asked for with (`2026-Q4`).
    pub label: String,
    pub now: DateTime<Utc>,
    /// Every attempt started before the period's end (the history before it decides the
    /// age at its start).
    pub attempts: Vec<Attempt>,
    /// Every trigger created before the period's end.
    pub triggers: Vec<Trigger>,
    /// Every request created before the period's end (requesters and approvers).
    pub requests: Vec<Request>,
    /// The audit entries of the period, and the `rollback` entries before its end.
    pub audit: Vec<AuditEntry>,
    pub chain: Chain,
}

/// The audit chain: its head and what verifying it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// The newest entry's id and hash (none when the log is empty).
    pub head_id: Option<i64>,
    pub head_hash: Option<String>,
    /// Entries checked by the walk.
    pub checked: u64,
    pub intact: bool,
    /// The first entry that fails, and why.
    pub broken_at: Option<i64>,
    pub fault: Option<String>,
    /// The pruning checkpoint the walk started from, if the log was pruned.
    pub from_checkpoint: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub period: PeriodOut,
    pub mode: &'static str,
    pub max_age: String,
    pub secrets: Vec<SecretReport>,
    /// What is about no one secret: storm-guard pauses, configuration reloads and mode
    /// changes, a new state history.
    pub fleet_exceptions: Vec<Exception>,
    pub audit_chain: Chain,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodOut {
    pub label: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Where counting stopped: the period's end or now, whichever is first.
    pub evaluated_to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Where it comes from: `[[secret]] ID`, `[[selector]] prefix:P`, or why it is not
    /// known.
    pub source: String,
    pub schedule: String,
    pub window: String,
    pub max_age: String,
    pub strategy: Option<&'static str>,
    pub change_ticket: Option<String>,
    pub dependents: Vec<String>,
    pub auto_rollback: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rotation {
    pub at: DateTime<Utc>,
    pub trigger: &'static str,
    pub ticket: Option<String>,
    /// Who asked: `rotationd` (planned, events), `cli:USER`, `request:USER`.
    pub requester: String,
    /// The L3 who approved a CommandBridge request, if one did.
    pub approver: Option<String>,
    /// `validated`, `validated_unhealthy`, `watching`, or `not watched` (no dependents).
    pub validated: String,
    pub attempt: String,
    pub previous_version: Option<String>,
    pub new_version: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Days {
    pub compliant: u32,
    pub non_compliant: u32,
    pub unknown: u32,
}

impl Days {
    pub fn total(&self) -> u32 {
        self.compliant + self.non_compliant + self.unknown
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Departure {
    pub at: DateTime<Utc>,
    pub reason: String,
    pub deadline: Option<DateTime<Utc>>,
    /// When the rotation that served it ended, if it succeeded.
    pub rotated_at: Option<DateTime<Utc>>,
    /// `met`, `missed` (rotated after the deadline, or not at all with the deadline past),
    /// `open` (not rotated, deadline ahead), `no deadline`.
    pub sla: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exception {
    pub at: DateTime<Utc>,
    /// `failed`, `stuck`, `held`, `hold_lifted`, `deferred`, `window_missed`,
    /// `emergency`, `rollback`, `observed`, `storm_guard`, `config`, `state`...
    pub kind: String,
    pub actor: String,
    pub ticket: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretReport {
    pub secret: String,
    pub policy: Policy,
    pub rotations: Vec<Rotation>,
    pub days: Days,
    /// One letter per day of the period, in order: `c` compliant, `n` non-compliant, `u`
    /// unknown.
    pub daily: String,
    /// The last rotation at or before the period's end, in the whole history.
    pub last_rotation: Option<DateTime<Utc>>,
    pub departures: Vec<Departure>,
    pub exceptions: Vec<Exception>,
}

/// The policy of `key` (a config id, a name or an ARN as the store keys it).
fn policy_of(cfg: &Config, key: &str) -> Policy {
    let name = crate::arn::Arn::parse(key)
        .ok()
        .and_then(|a| a.secret_name())
        .unwrap_or(key);
    let of = |source: String, s: &crate::config::SecretSettings| Policy {
        source,
        schedule: s.schedule.to_string(),
        window: fmt_duration(s.window),
        max_age: fmt_duration(cfg.policy.max_age),
        strategy: Some(s.strategy.as_str()),
        change_ticket: s.change_ticket.clone(),
        dependents: s.dependents.clone(),
        auto_rollback: s.auto_rollback,
    };
    if let Some(s) = cfg.secrets.iter().find(|s| s.id == key || s.id == name) {
        return of(format!("[[secret]] {}", s.id), &s.settings);
    }
    if let Some(s) = cfg
        .selectors
        .iter()
        .find(|s| matches!(&s.matcher, Matcher::NamePrefix(p) if name.starts_with(p.as_str())))
    {
        return of(format!("[[selector]] {}", s.matcher), &s.settings);
    }
    Policy {
        source: "not a [[secret]] of the configuration: a tag [[selector]] matched it, or it was removed (tags are not read offline)".into(),
        schedule: cfg.policy.default_schedule.to_string(),
        window: fmt_duration(cfg.policy.default_window),
        max_age: fmt_duration(cfg.policy.max_age),
        strategy: None,
        change_ticket: None,
        dependents: Vec::new(),
        auto_rollback: false,
    }
}

/// One change of the credential in force: at `at`, the credential created at `created`
/// (`None`: not known).
#[derive(Debug, Clone, Copy)]
struct Change {
    at: DateTime<Utc>,
    created: Option<DateTime<Utc>>,
}

/// The credential history of one secret from its rotations and rollbacks, in time order.
fn history(rotations: &[DateTime<Utc>], rollbacks: &[DateTime<Utc>]) -> Vec<Change> {
    let mut events: Vec<(DateTime<Utc>, bool)> = rotations
        .iter()
        .map(|t| (*t, true))
        .chain(rollbacks.iter().map(|t| (*t, false)))
        .collect();
    events.sort();
    let mut stack: Vec<DateTime<Utc>> = Vec::new();
    let mut out = Vec::new();
    for (at, rotation) in events {
        if rotation {
            stack.push(at);
        } else {
            // The credential before the latest rotation is back in force.
            stack.pop();
        }
        out.push(Change {
            at,
            created: stack.last().copied(),
        });
    }
    out
}

/// The compliance of each day of `[from, until)` for a credential `history`: `c`, `n`, `u`
/// (see the module doc).
pub fn daily(
    rotations: &[DateTime<Utc>],
    rollbacks: &[DateTime<Utc>],
    max_age: Duration,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> String {
    let changes = history(rotations, rollbacks);
    let mut out = String::new();
    let mut day = from;
    while day < until {
        let end = (day + Duration::days(1)).min(until);
        // The pieces of [day, end) and the credential in force over each.
        let mut in_force = changes
            .iter()
            .rev()
            .find(|c| c.at <= day)
            .and_then(|c| c.created);
        let mut known_at_end = in_force.is_some();
        let mut overdue = false;
        let mut start = day;
        let inside = changes.iter().filter(|c| c.at > day && c.at < end);
        for c in inside.chain(std::iter::once(&Change {
            at: end,
            created: None,
        })) {
            // [start, c.at) with `in_force`.
            if let Some(created) = in_force
                && (created + max_age).max(start) < c.at
            {
                overdue = true;
            }
            if c.at == end {
                break;
            }
            in_force = c.created;
            known_at_end = in_force.is_some();
            start = c.at;
        }
        out.push(if overdue {
            'n'
        } else if known_at_end {
            'c'
        } else {
            'u'
        });
        day = end;
    }
    out
}

fn count(daily: &str) -> Days {
    Days {
        compliant: daily.chars().filter(|c| *c == 'c').count() as u32,
        non_compliant: daily.chars().filter(|c| *c == 'n').count() as u32,
        unknown: daily.chars().filter(|c| *c == 'u').count() as u32,
    }
}

fn in_period(p: &Period, t: DateTime<Utc>) -> bool {
    p.from <= t && t < p.to
}

fn detail_str(e: &AuditEntry, key: &str) -> Option<String> {
    e.detail
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The exception an audit entry about a secret is, if it is one.
fn exception_of(e: &AuditEntry) -> Option<Exception> {
    let ex = |kind: &str, detail: String| {
        Some(Exception {
            at: e.at,
            kind: kind.to_string(),
            actor: e.actor.clone(),
            ticket: e.ticket.clone(),
            detail,
        })
    };
    let reason = e.reason.clone().unwrap_or_default();
    match (e.action.as_str(), e.outcome.as_str()) {
        ("hold", "held") => ex("held", reason),
        ("hold", "resumed") if e.actor != "rotationd" => {
            ex("hold_lifted", format!("lifted by an operator: {reason}"))
        }
        ("hold", "deferred") => ex(
            "deferred",
            format!("planned rotation deferred by a hold: {reason}"),
        ),
        ("rotate", "window_missed") => ex("window_missed", reason),
        ("rollback", outcome) => ex(
            "rollback",
            format!(
                "{outcome}: {}{}",
                reason,
                detail_str(e, "error").map_or(String::new(), |x| format!(" ({x})"))
            ),
        ),
        ("rotate_requested", _)
            if e.detail
                .as_ref()
                .and_then(|d| d.get("emergency"))
                .and_then(|v| v.as_bool())
                == Some(true) =>
        {
            ex(
                "emergency",
                format!("emergency rotation outside the window: {reason}"),
            )
        }
        ("native_schedule_sync" | "native_schedule_disable", outcome) => {
            ex(&e.action, format!("{outcome}: {reason}"))
        }
        ("rotate_request" | "rollback_request", "refused" | "denied" | "expired" | "failed") => {
            ex(&e.action, format!("{}: {reason}", e.outcome))
        }
        _ => None,
    }
}

/// A fleet-wide exception (an entry about no secret), if it is one.
fn fleet_exception_of(e: &AuditEntry) -> Option<Exception> {
    if e.secret.is_some() {
        return None;
    }
    let kind = match e.action.as_str() {
        "storm_guard" => "storm_guard",
        "config" => "config",
        "state" => "state",
        _ => return None,
    };
    let mut detail = e.reason.clone().unwrap_or_default();
    if let Some(m) = detail_str(e, "mode") {
        detail.push_str(&format!(" (mode {m})"));
    }
    Some(Exception {
        at: e.at,
        kind: kind.into(),
        actor: e.actor.clone(),
        ticket: e.ticket.clone(),
        detail,
    })
}

/// The report.
pub fn build(input: &Input<'_>) -> Report {
    let p = input.period;
    let until = p.to.min(input.now).max(p.from);
    let max_age = Duration::from_std(input.cfg.policy.max_age).unwrap_or(Duration::days(90));
    let triggers: HashMap<i64, &Trigger> = input.triggers.iter().map(|t| (t.id, t)).collect();
    let approver: HashMap<i64, &Request> = input
        .requests
        .iter()
        .filter_map(|r| r.trigger_id.map(|t| (t, r)))
        .collect();
    // Which secrets: every configured [[secret]], and every secret with a row in the period.
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for a in &input.attempts {
        if a.finished_at.is_none_or(|f| f >= p.from) {
            keys.insert(a.secret.clone());
        }
    }
    for t in &input.triggers {
        if t.created_at >= p.from || !t.status.is_terminal() || t.updated_at >= p.from {
            keys.insert(t.secret.clone());
        }
    }
    let known_by_store: Vec<String> = keys.iter().cloned().collect();
    for s in &input.cfg.secrets {
        let represented = known_by_store.iter().any(|k| {
            k == &s.id
                || crate::arn::Arn::parse(k)
                    .ok()
                    .and_then(|a| a.secret_name())
                    .is_some_and(|n| n == s.id)
        });
        if !represented {
            keys.insert(s.id.clone());
        }
    }
    let mut secrets = Vec::new();
    for key in keys {
        let mine = |s: &str| s == key;
        let succeeded: Vec<&Attempt> = input
            .attempts
            .iter()
            .filter(|a| mine(&a.secret) && a.state == AttemptState::Succeeded)
            .filter(|a| a.finished_at.is_some_and(|f| f < p.to))
            .collect();
        let rotation_times: Vec<DateTime<Utc>> =
            succeeded.iter().filter_map(|a| a.finished_at).collect();
        let rollback_times: Vec<DateTime<Utc>> = input
            .audit
            .iter()
            .filter(|e| {
                e.secret.as_deref().is_some_and(mine) && e.action == "rollback" && e.outcome == "ok"
            })
            .map(|e| e.at)
            .collect();
        let daily = daily(&rotation_times, &rollback_times, max_age, p.from, until);
        let rotations = succeeded
            .iter()
            .filter(|a| a.finished_at.is_some_and(|f| in_period(&p, f)))
            .map(|a| {
                let t = a.trigger_id.and_then(|id| triggers.get(&id));
                let r = a.trigger_id.and_then(|id| approver.get(&id));
                Rotation {
                    at: a.finished_at.unwrap_or(a.started_at),
                    trigger: a.trigger_kind.as_str(),
                    ticket: a.ticket.clone(),
                    requester: match (r, t) {
                        (Some(r), _) => format!("request:{}", r.requester),
                        (None, Some(t)) => t.actor.clone(),
                        (None, None) if a.id.starts_with("event-") => {
                            "Secrets Manager (RotationSucceeded event)".into()
                        }
                        (None, None) => "rotationd".into(),
                    },
                    approver: r.and_then(|r| {
                        r.decided_by
                            .clone()
                            .filter(|d| d != &r.requester)
                            .or_else(|| Some(format!("{} (L3, own request)", r.requester)))
                    }),
                    validated: match a.validation {
                        Some(v) => v.as_str().to_string(),
                        None => "not watched".into(),
                    },
                    attempt: a.id.clone(),
                    previous_version: a.previous_version.clone(),
                    new_version: a.new_version.clone(),
                }
            })
            .collect();
        let departures = input
            .triggers
            .iter()
            .filter(|t| mine(&t.secret) && t.kind == TriggerKind::Departure)
            .filter(|t| in_period(&p, t.created_at))
            .map(|t| {
                let rotated_at = t
                    .attempt_id
                    .as_deref()
                    .and_then(|id| input.attempts.iter().find(|a| a.id == id))
                    .filter(|a| a.state == AttemptState::Succeeded)
                    .and_then(|a| a.finished_at)
                    .filter(|_| t.status == TriggerStatus::Done);
                let sla = match (t.deadline, rotated_at) {
                    (None, _) => "no deadline",
                    (Some(d), Some(r)) if r <= d => "met",
                    (Some(_), Some(_)) => "missed",
                    (Some(d), None) if d <= input.now => "missed",
                    (Some(_), None) => "open",
                };
                Departure {
                    at: t.created_at,
                    reason: t.reason.clone(),
                    deadline: t.deadline,
                    rotated_at,
                    sla,
                }
            })
            .collect();
        let mut exceptions: Vec<Exception> = input
            .attempts
            .iter()
            .filter(|a| mine(&a.secret) && a.finished_at.is_some_and(|f| in_period(&p, f)))
            .filter_map(|a| {
                let kind = match a.state {
                    AttemptState::Failed => "failed",
                    AttemptState::Stuck => "stuck",
                    AttemptState::Observed => "observed",
                    _ => return None,
                };
                let t = a.trigger_id.and_then(|id| triggers.get(&id));
                let detail = match a.state {
                    AttemptState::Observed => format!(
                        "observe mode, nothing sent: {}{} ({} trigger)",
                        a.verdict
                            .map_or("would rotate".into(), |v| v.as_str().replace('_', " ")),
                        a.error
                            .as_deref()
                            .map_or(String::new(), |e| format!(": {e}")),
                        a.trigger_kind.as_str()
                    ),
                    _ => format!(
                        "{} rotation: {}",
                        a.trigger_kind.as_str(),
                        a.error.as_deref().unwrap_or("no reason recorded")
                    ),
                };
                Some(Exception {
                    at: a.finished_at.unwrap_or(a.started_at),
                    kind: kind.into(),
                    actor: t.map_or("rotationd".into(), |t| t.actor.clone()),
                    ticket: a.ticket.clone(),
                    detail,
                })
            })
            .chain(
                succeeded
                    .iter()
                    .filter(|a| a.finished_at.is_some_and(|f| in_period(&p, f)))
                    .filter(|a| a.validation == Some(Validation::ValidatedUnhealthy))
                    .map(|a| Exception {
                        at: a.finished_at.unwrap_or(a.started_at),
                        kind: "dependents_unhealthy".into(),
                        actor: "rotationd".into(),
                        ticket: a.ticket.clone(),
                        detail: format!("dependents failing after attempt {}", a.id),
                    }),
            )
            .chain(
                input
                    .audit
                    .iter()
                    .filter(|e| e.secret.as_deref().is_some_and(mine) && in_period(&p, e.at))
                    .filter_map(exception_of),
            )
            .collect();
        exceptions.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));
        secrets.push(SecretReport {
            policy: policy_of(input.cfg, &key),
            secret: key,
            rotations,
            days: count(&daily),
            daily,
            last_rotation: rotation_times.iter().max().copied(),
            departures,
            exceptions,
        });
    }
    Report {
        schema: SCHEMA,
        generated_at: input.now,
        period: PeriodOut {
            label: input.label.clone(),
            from: p.from,
            to: p.to,
            evaluated_to: until,
        },
        mode: input.cfg.daemon.mode.as_str(),
        max_age: fmt_duration(input.cfg.policy.max_age),
        secrets,
        fleet_exceptions: input
            .audit
            .iter()
            .filter(|e| in_period(&p, e.at))
            .filter_map(fleet_exception_of)
            .collect(),
        audit_chain: input.chain.clone(),
    }
}

/// An exception's CSV row, of one secret (`exception`) or of the fleet
/// (`fleet_exception`, no secret).
fn exception_fields<'a>(
    record: &'a str,
    secret: &'a str,
    at: &'a str,
    e: &'a Exception,
) -> [&'a str; 13] {
    [
        record,
        secret,
        at,
        &e.kind,
        e.ticket.as_deref().unwrap_or(""),
        &e.actor,
        "",
        "",
        "",
        "",
        "",
        "",
        &e.detail,
    ]
}

/// One CSV field: quoted only when it holds a comma, a quote or a line break (RFC 4180).
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        std::borrow::Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The CSV header of [`csv`].
pub const CSV_HEADER: &str = "record,secret,at,kind,ticket,requester,approver,outcome,deadline,compliant_days,non_compliant_days,unknown_days,detail";

/// RFC 4180, one table: a `secret` record per secret (its policy and days), then its
/// `rotation`, `departure` and `exception` records, then the `fleet_exception` records
/// and one `audit_chain` record.
pub fn csv(r: &Report) -> String {
    let t = |d: &DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ot = |d: &Option<DateTime<Utc>>| d.as_ref().map(t).unwrap_or_default();
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    let mut row = |fields: [&str; 13]| {
        let line: Vec<String> = fields.iter().map(|f| csv_field(f).into_owned()).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    for s in &r.secrets {
        let pol = &s.policy;
        row([
            "secret",
            &s.secret,
            &ot(&s.last_rotation),
            pol.strategy.unwrap_or("-"),
            pol.change_ticket.as_deref().unwrap_or(""),
            "",
            "",
            "",
            "",
            &s.days.compliant.to_string(),
            &s.days.non_compliant.to_string(),
            &s.days.unknown.to_string(),
            &format!(
                "{}; schedule {} window {} max_age {}; dependents {}; auto_rollback {}",
                pol.source,
                pol.schedule,
                pol.window,
                pol.max_age,
                if pol.dependents.is_empty() {
                    "-".to_string()
                } else {
                    pol.dependents.join(" ")
                },
                pol.auto_rollback
            ),
        ]);
        for x in &s.rotations {
            row([
                "rotation",
                &s.secret,
                &t(&x.at),
                x.trigger,
                x.ticket.as_deref().unwrap_or(""),
                &x.requester,
                x.approver.as_deref().unwrap_or(""),
                &x.validated,
                "",
                "",
                "",
                "",
                &format!(
                    "attempt {}: {} -> {}",
                    x.attempt,
                    x.previous_version.as_deref().unwrap_or("?"),
                    x.new_version.as_deref().unwrap_or("?")
                ),
            ]);
        }
        for d in &s.departures {
            row([
                "departure",
                &s.secret,
                &t(&d.at),
                "departure",
                "",
                "",
                "",
                d.sla,
                &ot(&d.deadline),
                "",
                "",
                "",
                &format!(
                    "{}{}",
                    d.reason,
                    d.rotated_at
                        .map_or(String::new(), |r| format!("; rotated {}", t(&r)))
                ),
            ]);
        }
        for e in &s.exceptions {
            row(exception_fields("exception", &s.secret, &t(&e.at), e));
        }
    }
    for e in &r.fleet_exceptions {
        row(exception_fields("fleet_exception", "", &t(&e.at), e));
    }
    let c = &r.audit_chain;
    row([
        "audit_chain",
        "",
        &t(&r.generated_at),
        if c.intact { "intact" } else { "broken" },
        "",
        "",
        "",
        &c.checked.to_string(),
        "",
        "",
        "",
        "",
        &format!(
            "head entry {} hash {}{}",
            c.head_id.map_or("-".into(), |i| i.to_string()),
            c.head_hash.as_deref().unwrap_or("-"),
            c.broken_at.map_or(String::new(), |b| format!(
                "; broken at entry {b}: {}",
                c.fault.as_deref().unwrap_or("?")
            ))
        ),
    ]);
    out
}

#[cfg(test)]
mod tests;
