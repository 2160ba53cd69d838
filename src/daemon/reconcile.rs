//! The reconciler: every `reconcile_interval`, one inventory scan, compliance per secret
//! (gauge `rotationd_secrets`), alerts for stuck, overdue and missing secrets, and a trigger
//! for every planned window that is open or opens before the next pass.
//!
//! Split in two: [`plan`] is pure (the fleet, what was observed about it, the config and
//! the clock in; triggers, alerts and statuses out) and unit-tested on a fixed clock;
//! `reconcile` is the I/O around it (the scan, the store, the metrics, the drift
//! application in `daemon/drift.rs`). Trigger dedupe keys make a pass idempotent
//! (ARCHITECTURE.md, "Triggers and the plan"): `plan:ARN:WINDOW_START` for a window (also a
//! never-rotated secret's first one), `overdue:ARN:VERSION` for an overdue secret, one per
//! AWSCURRENT version.
//!
//! Account-regions that cannot be listed do not fail the pass when there are several
//! ([`carry_over`], [`report_places`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::{App, Shared};
use crate::alerts::{Alert, AlertKind};
use crate::aws;
use crate::config::Config;
use crate::inventory::{self, AgeCache, Fleet, Inventory};
use crate::planner::{self, Compliance, Facts, Reason};
use crate::store::{AttemptState, NewTrigger, TriggerKind};

/// After a failed pass, the next one comes this soon (or at `reconcile_interval`, if
/// shorter).
const FAILED_PASS_RETRY: Duration = Duration::from_secs(15);

/// What a pass observed about the fleet, besides the fleet itself.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Per secret key, for the secrets this scan listed; a secret without facts (carried
    /// over from the last good scan of an account-region that does not answer) is neither
    /// planned nor judged.
    pub facts: HashMap<String, Facts>,
    /// Secrets whose last finished attempt failed or got stuck (status `failing`).
    pub failing: HashSet<String>,
    /// Secrets on hold after a failure (status `held`, `store::Hold`).
    pub held: HashSet<String>,
    /// Stuck secrets whose dangling AWSPENDING a failed attempt of ours left
    /// (`inventory::left_by_failure`): that attempt's `rotation_failed` escalated it
    /// already, so no `rotation_stuck` repeats it.
    pub escalated: HashSet<String>,
}

/// How often an alert may repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Again after `[alerts] realert_interval` while the condition lasts.
    AfterRealertInterval,
    /// Once per dedupe key.
    Never,
}

/// One secret's status in `rotationd_secrets{status}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub key: String,
    pub arn: String,
    pub label: &'static str,
}

/// What one reconcile pass decides.
#[derive(Debug, Default)]
pub struct ReconcilePlan {
    /// Idempotent on their dedupe keys: inserted again every pass.
    pub triggers: Vec<NewTrigger>,
    pub alerts: Vec<(Alert, Repeat)>,
    pub statuses: Vec<Status>,
    /// `rotation_scheduled` ahead of planned windows (`[policy] notice`), each once per
    /// window and lead time (its dedupe key, [`notice_key`]).
    pub notices: Vec<Notice>,
}

/// One advance notice of a planned window: the notice and its copies (each dependent with
/// its own topic, the vendor's contact topic), all queued once.
#[derive(Debug, Clone)]
pub struct Notice {
    pub secret: String,
    pub window_start: DateTime<Utc>,
    /// The lead time it is sent at, as configured.
    pub lead: Duration,
    pub alerts: Vec<Alert>,
}

/// The dedupe key of the notice `lead` ahead of the window of `arn` opening at
/// `window_start`: one per secret, window and lead time, however many passes see it.
pub fn notice_key(arn: &str, window_start: DateTime<Utc>, lead: Duration) -> String {
    format!(
        "rotation_scheduled:ahead:{arn}:{}:{}",
        window_start.timestamp(),
        lead.as_secs()
    )
}

/// The lead time whose notice is due at `now` for a window opening at `start`: the
/// shortest of `leads` already reached, so a notice comes once per lead time and a
/// daemon that was down at the 7d mark sends the 24h one, not both. `None` before the
/// longest lead, and once the window has opened. Pure.
pub fn due_lead(leads: &[Duration], start: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    if now >= start {
        return None;
    }
    leads
        .iter()
        .copied()
        .filter(|l| chrono::Duration::from_std(*l).is_ok_and(|l| now >= start - l))
        .min()
}

/// The trigger dedupe key of a planned window: one trigger per secret and window.
pub fn window_key(arn: &str, window_start: DateTime<Utc>) -> String {
    format!("plan:{arn}:{}", window_start.timestamp())
}

/// The trigger dedupe key of an overdue secret: one per AWSCURRENT version, not one per
/// pass (`-` when the listing showed no AWSCURRENT).
pub fn overdue_key(arn: &str, current_version: Option<&str>) -> String {
    format!("overdue:{arn}:{}", current_version.unwrap_or("-"))
}

fn kind_for(reason: Reason) -> TriggerKind {
    match reason {
        Reason::Scheduled => TriggerKind::Scheduled,
        Reason::Overdue => TriggerKind::Overdue,
        Reason::NeverRotated => TriggerKind::NeverRotated,
    }
}

/// The pure part of a pass: statuses and alerts for every observed secret, the missing
/// ones' alerts, and the triggers for windows open now or opening before the next pass
/// (`reconcile_interval` plus a minute), overdue secrets at once.
pub fn plan(fleet: &Fleet, observed: &Observed, cfg: &Config, now: DateTime<Utc>) -> ReconcilePlan {
    let policy = cfg.planner_policy();
    let mut out = ReconcilePlan::default();
    let mut targets = Vec::with_capacity(fleet.entries.len());
    let mut arns: HashMap<&str, &str> = HashMap::new();
    for e in &fleet.entries {
        if !observed.facts.contains_key(&e.key) {
            continue;
        }
        arns.insert(&e.key, &e.info.arn);
        targets.push(inventory::settings(cfg, e.origin).target(e.key.clone()));
    }
    for t in &targets {
        let f = observed.facts.get(&t.id).copied().unwrap_or_default();
        let arn = arns.get(t.id.as_str()).copied().unwrap_or_default();
        let c = planner::compliance(t, &f, now, &policy);
        out.statuses.push(Status {
            key: t.id.clone(),
            arn: arn.to_string(),
            label: inventory::status_label(
                c,
                observed.failing.contains(&t.id),
                observed.held.contains(&t.id),
            ),
        });
        let alert = |kind| {
            let mut a = Alert::new(kind, Some(&t.id), now);
            a.secret_arn = Some(arn.to_string());
            a
        };
        match c {
            Compliance::Stuck if observed.escalated.contains(&t.id) => {}
            Compliance::Stuck => {
                let mut a = alert(AlertKind::RotationStuck);
                a.error = Some("AWSPENDING sits on a version without AWSCURRENT for longer than the rotation timeout".into());
                out.alerts.push((a, Repeat::AfterRealertInterval));
            }
            Compliance::Overdue => {
                let mut a = alert(AlertKind::Overdue);
                a.details = serde_json::json!({
                    "current_version_created": f.current_created.map(|d| d.to_rfc3339()),
                    "max_age": crate::config::fmt_duration(cfg.policy.max_age),
                });
                out.alerts.push((a, Repeat::AfterRealertInterval));
            }
            _ => {}
        }
    }
    out.notices = notices(fleet, observed, cfg, now);
    for (id, reason) in &fleet.missing {
        let mut a = Alert::new(AlertKind::SecretMissing, Some(id), now);
        a.error = Some(format!("configured secret {id} is {}", reason.as_str()));
        out.alerts.push((a, Repeat::Never));
    }

    let horizon = now
        + chrono::Duration::from_std(cfg.daemon.reconcile_interval)
            .unwrap_or(chrono::Duration::minutes(15))
        + chrono::Duration::minutes(1);
    let longest_window = targets
        .iter()
        .map(|t| t.window)
        .max()
        .unwrap_or(chrono::Duration::hours(4));
    let planned = planner::plan(
        &targets,
        &|id| observed.facts.get(id).copied(),
        now,
        horizon + longest_window,
        &policy,
    );
    for e in planned
        .entries
        .iter()
        .filter(|e| (e.start_at < horizon || e.reason == Reason::Overdue) && e.window_end > now)
    {
        let arn = arns.get(e.secret.as_str()).copied().unwrap_or_default();
        let key = match e.reason {
            Reason::Overdue => overdue_key(
                arn,
                fleet.find(&e.secret).and_then(|x| x.info.current_version()),
            ),
            Reason::Scheduled | Reason::NeverRotated => window_key(arn, e.window_start),
        };
        out.triggers.push(NewTrigger {
            secret: e.secret.clone(),
            kind: kind_for(e.reason),
            dedupe_key: Some(key),
            ticket: e.ticket.clone(),
            reason: format!(
                "{} window {} .. {}",
                e.reason.as_str(),
                e.window_start.format(crate::clock::TIME_FORMAT),
                e.window_end.format(crate::clock::TIME_FORMAT)
            ),
            actor: "rotationd".into(),
            created_at: now,
            // Overdue secrets rotate as soon as possible (the rate limiter still caps
            // RotateSecret per minute); planned windows keep their staggered starts.
            not_before: Some(if e.reason == Reason::Overdue {
                e.window_start
            } else {
                e.start_at
            }),
            deadline: Some(e.window_end),
        });
    }
    out
}

/// The advance notices due at `now`: for each observed secret not on hold whose settings
/// have notice lead times, its next window (the next one to open after `now`) at the
/// lead time [`due_lead`] picks.
fn notices(fleet: &Fleet, observed: &Observed, cfg: &Config, now: DateTime<Utc>) -> Vec<Notice> {
    let mut next_fire: HashMap<String, Option<DateTime<Utc>>> = HashMap::new();
    let mut out = Vec::new();
    for e in &fleet.entries {
        if !observed.facts.contains_key(&e.key) || observed.held.contains(&e.key) {
            continue;
        }
        let settings = inventory::settings(cfg, e.origin);
        if settings.notice.is_empty() {
            continue;
        }
        let Some(start) = *next_fire
            .entry(settings.schedule.as_str().to_string())
            .or_insert_with(|| settings.schedule.next_after(now))
        else {
            continue;
        };
        let Some(lead) = due_lead(&settings.notice, start, now) else {
            continue;
        };
        let end = start
            + chrono::Duration::from_std(settings.window).unwrap_or(chrono::Duration::hours(4));
        let mut a = Alert::new(AlertKind::RotationScheduled, Some(&e.key), now);
        a.secret_arn = Some(e.info.arn.clone());
        a.trigger = Some("scheduled".into());
        a.ticket = settings.change_ticket.clone();
        a.reason = Some(format!(
            "planned rotation in the window {} .. {} ({} notice)",
            start.format(crate::clock::TIME_FORMAT),
            end.format(crate::clock::TIME_FORMAT),
            crate::config::fmt_duration(lead)
        ));
        a.deadline = Some(end);
        a.dedupe_key = notice_key(&e.info.arn, start, lead);
        a.details = serde_json::json!({
            "notice": "ahead",
            "lead": crate::config::fmt_duration(lead),
            "window": { "start": start.to_rfc3339(), "end": end.to_rfc3339() },
            "dependents": settings.dependents,
            "vendor": settings.vendor,
            "strategy": settings.strategy.as_str(),
        });
        out.push(Notice {
            secret: e.key.clone(),
            window_start: start,
            lead,
            alerts: a.with_copies(cfg, &settings.dependents, settings.vendor.as_deref()),
        });
    }
    out
}

/// Reconciles every `reconcile_interval` (sooner after a failure) until `cancel`.
pub(super) async fn reconcile_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let interval = shared.app.cfg.daemon.reconcile_interval;
    let mut cache = AgeCache::default();
    // Since when reconciles fail (an AWS outage, lost credentials), for aws_unreachable.
    let mut failing_since: Option<DateTime<Utc>> = None;
    loop {
        let delay = match reconcile(&shared, &mut cache, &cancel).await {
            Ok(()) => {
                failing_since = None;
                snapshot_if_due(&shared.app).await;
                interval
            }
            Err(_) if cancel.is_cancelled() => return,
            Err(e) => {
                shared.health.set_ready(false);
                let now = shared.app.clock.now();
                let since = *failing_since.get_or_insert(now);
                unreachable_alert(&shared.app, &e, since, now).await;
                tracing::warn!(error = %format!("{e:#}"), "reconcile failed; retrying");
                interval.min(FAILED_PASS_RETRY)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// `aws_unreachable` once reconciles have failed for `[alerts] unreachable_after`: one
/// alert per outage, however long it lasts.
async fn unreachable_alert(app: &App, e: &anyhow::Error, since: DateTime<Utc>, now: DateTime<Utc>) {
    let after = chrono::Duration::from_std(app.cfg.alerts.unreachable_after)
        .unwrap_or(chrono::Duration::minutes(10));
    if now - since < after {
        return;
    }
    let mut a = Alert::new(AlertKind::AwsUnreachable, None, now);
    a.error = Some(format!("{e:#}"));
    a.details = serde_json::json!({ "failing_since": since.to_rfc3339() });
    a.dedupe_key = format!("aws_unreachable:{}", since.timestamp());
    if let Err(e) = app.engine.alerts.raise_once(a).await {
        tracing::warn!(error = %e, "cannot queue the aws_unreachable alert");
    }
}

/// With the DynamoDB backend, the leader writes a snapshot of the shared state once the
/// log has grown `SNAPSHOT_EVERY` entries past the last one, so that a start (a standby's
/// too) replays a bounded tail. A failure is retried at the next reconcile.
async fn snapshot_if_due(app: &App) {
    let Some(state) = &app.shared_state else {
        return;
    };
    if !state.journal.snapshot_due() {
        return;
    }
    match app.store.call(|s| s.write_snapshot()).await {
        Ok(Some(seq)) => tracing::info!(seq, "state snapshot written"),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the state snapshot; retrying at the next reconcile")
        }
    }
}

/// One reconcile pass: the scan (given up at shutdown: it only reads), then [`plan`] and
/// what it decided, committed.
async fn reconcile(
    shared: &Shared,
    cache: &mut AgeCache,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let app = &shared.app;
    let cfg = &app.cfg;
    let now = app.clock.now();
    let mut inv = tokio::select! {
        _ = cancel.cancelled() => anyhow::bail!("shutting down"),
        inv = inventory::scan(&app.engine.sm, cfg, cache) => inv.context("inventory")?,
    };
    refresh_directory(
        app.identity_store.as_deref(),
        &app.store,
        &app.metrics,
        now,
        &shared.directory,
    )
    .await;
    let stale = carry_over(&shared.inventory, &mut inv).await;
    report_places(app, &inv, now).await?;
    let unfinished = app.store.call(|s| s.db().unfinished_attempts()).await?;
    let active: HashSet<String> = unfinished.iter().map(|a| a.secret.clone()).collect();
    let last = app.store.call(|s| s.db().last_finished_attempts()).await?;
    let stuck_after = chrono::Duration::from_std(app.engine.opts.monitor_timeout)
        .unwrap_or(chrono::Duration::minutes(15));
    let held = app.store.call(|s| s.db().holds()).await?;
    let mut observed = Observed {
        held: held.into_iter().map(|h| h.secret).collect(),
        failing: last
            .iter()
            .filter(|a| matches!(a.state, AttemptState::Failed | AttemptState::Stuck))
            .map(|a| a.secret.clone())
            .collect(),
        ..Observed::default()
    };
    for e in inv.fleet.entries.iter().filter(|e| !stale.contains(&e.key)) {
        let left = inventory::left_by_failure(&e.info, last.iter().find(|a| a.secret == e.key));
        if left {
            observed.escalated.insert(e.key.clone());
        }
        let f = inventory::facts(
            &e.info,
            inv.versions.get(&e.info.arn).map(Vec::as_slice),
            cache,
            active.contains(&e.key),
            left,
            now,
            stuck_after,
        );
        observed.facts.insert(e.key.clone(), f);
    }
    let planned = plan(&inv.fleet, &observed, cfg, now);

    // Statuses per account-region; carried-over secrets are "unreachable".
    let sm = &app.engine.sm;
    let mut counts: HashMap<(aws::Place, &'static str), i64> = HashMap::new();
    for e in inv.fleet.entries.iter().filter(|e| stale.contains(&e.key)) {
        *counts
            .entry((sm.place_of(&e.info.arn), "unreachable"))
            .or_default() += 1;
    }
    for s in &planned.statuses {
        *counts.entry((sm.place_of(&s.arn), s.label)).or_default() += 1;
    }
    for (id, _) in &inv.fleet.missing {
        *counts.entry((sm.place_of(id), "missing")).or_default() += 1;
    }
    for (a, repeat) in planned.alerts {
        match repeat {
            Repeat::AfterRealertInterval => app.engine.alerts.raise(a).await?,
            Repeat::Never => app.engine.alerts.raise_once(a).await?,
        };
    }
    for n in planned.notices {
        let mut queued = false;
        for a in n.alerts {
            queued |= app.engine.alerts.raise_once(a).await?;
        }
        if queued {
            tracing::info!(secret = %n.secret, window_start = %n.window_start.to_rfc3339(), lead = %crate::config::fmt_duration(n.lead), "advance notice of a planned rotation queued");
            app.metrics
                .notices_total
                .with_label_values(&[&crate::config::fmt_duration(n.lead)])
                .inc();
        }
    }
    super::drift::native_schedules(app, &inv, &active, now).await?;
    app.metrics.set_secret_counts(&sm.places(), &counts);

    let triggers = planned.triggers;
    let created = app
        .store
        .call(move |s| {
            s.transaction(|db| {
                let mut n = 0;
                for t in &triggers {
                    if db.insert_trigger(t)?.new {
                        n += 1;
                    }
                }
                Ok(n)
            })
        })
        .await?;
    if created > 0 {
        tracing::info!(count = created, "planned rotations queued");
        shared.wake.notify_one();
    }
    let pending = app.store.call(|s| s.db().pending_trigger_counts()).await?;
    for kind in TriggerKind::ALL {
        app.metrics
            .triggers_pending
            .with_label_values(&[kind.as_str()])
            .set(pending.get(kind).copied().unwrap_or(0) as i64);
    }
    app.metrics
        .last_reconcile_success_timestamp_seconds
        .set(Utc::now().timestamp() as f64);
    *shared.inventory.write().await = Some(inv);
    shared.health.set_ready(true);
    Ok(())
}

/// Reads `[identity_center]`'s directory for this pass (once per pass, never per event)
/// into `directory`. When the Identity Store does not answer, the last good directory
/// stays; before there is one, what the store remembers stands in, so that a departure
/// right after a restart still resolves.
pub(super) async fn refresh_directory(
    ids: Option<&crate::aws::identitystore::IdentityStore>,
    store: &crate::store::StoreHandle,
    metrics: &crate::metrics::Metrics,
    now: DateTime<Utc>,
    directory: &RwLock<Option<crate::directory::Directory>>,
) {
    let Some(ids) = ids else {
        return;
    };
    let fresh = match crate::directory::refresh(ids, store, now).await {
        Ok(dir) => Some(dir),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the Identity Center directory; departures resolve against the last good one");
            if directory.read().await.is_some() {
                None
            } else {
                crate::directory::remembered(store).await.ok()
            }
        }
    };
    if let Some(dir) = fresh {
        metrics.directory_users.set(dir.len() as i64);
        *directory.write().await = Some(dir);
    }
}

/// Keeps the secrets of account-regions this scan could not list, as the last good scan saw
/// them, and returns their keys: a departure naming one of them must still find it (and its
/// trigger waits), and a secret must not vanish from status because its account hiccuped.
pub async fn carry_over(last: &RwLock<Option<Inventory>>, inv: &mut Inventory) -> HashSet<String> {
    let mut stale = HashSet::new();
    if inv.unreachable.is_empty() {
        return stale;
    }
    let previous = last.read().await;
    let Some(previous) = previous.as_ref() else {
        return stale;
    };
    for e in &previous.fleet.entries {
        let down = aws::Place::of_arn(&e.info.arn).is_some_and(|p| !inv.reached(&p));
        if down && inv.fleet.find(&e.info.arn).is_none() {
            stale.insert(e.key.clone());
            inv.fleet.entries.push(e.clone());
            if let Some(vs) = previous.versions.get(&e.info.arn) {
                inv.versions.insert(e.info.arn.clone(), vs.clone());
            }
        }
    }
    inv.fleet.entries.sort_by(|a, b| a.key.cmp(&b.key));
    stale
}

/// `rotationd_account_up` for every account-region, and one `account_unreachable` alert per
/// account while any of its regions cannot be listed: the first failure is remembered in
/// the store (cursor `account_unreachable:<id>`), so the alert goes out once per outage,
/// across restarts and reloads, after `[alerts] unreachable_after`; it is forgotten when
/// every region of the account answers again.
pub async fn report_places(app: &App, inv: &Inventory, now: DateTime<Utc>) -> anyhow::Result<()> {
    let places = app.engine.sm.places();
    app.metrics.account_up.reset();
    for p in &places {
        app.metrics
            .account_up
            .with_label_values(&[&p.account, &p.region])
            .set(i64::from(inv.reached(p)));
    }
    if !app.engine.sm.is_routed() {
        // Without [[account]] a failed listing fails the reconcile: aws_unreachable.
        return Ok(());
    }
    let mut accounts: Vec<String> = places.iter().map(|p| p.account.clone()).collect();
    accounts.dedup();
    let after = chrono::Duration::from_std(app.cfg.alerts.unreachable_after)
        .unwrap_or(chrono::Duration::minutes(10));
    for account in accounts {
        let cursor = format!("account_unreachable:{account}");
        let failing: Vec<&(aws::Place, aws::AwsError)> = inv
            .unreachable
            .iter()
            .filter(|(p, _)| p.account == account)
            .collect();
        let c = cursor.clone();
        let since = app.store.call(move |s| s.db().get_cursor(&c)).await?;
        if failing.is_empty() {
            if since.is_some() {
                tracing::info!(account = %account, "the account answers again");
                app.store
                    .call(move |s| s.db().delete_cursor(&cursor))
                    .await?;
            }
            continue;
        }
        let regions: Vec<String> = failing.iter().map(|(p, _)| p.region.clone()).collect();
        let error = failing
            .first()
            .map(|(_, e)| e.to_string())
            .unwrap_or_default();
        let since = match since
            .and_then(|c| DateTime::parse_from_rfc3339(&c.value).ok())
            .map(|t| t.with_timezone(&Utc))
        {
            Some(t) => t,
            None => {
                tracing::warn!(account = %account, regions = ?regions, error = %error, "cannot list this account's secrets; the other accounts go on");
                let value = now.to_rfc3339();
                app.store
                    .call(move |s| s.db().set_cursor(&cursor, &value, now))
                    .await?;
                now
            }
        };
        if now - since >= after {
            let mut a = Alert::new(AlertKind::AccountUnreachable, None, now);
            a.error = Some(error);
            a.details = serde_json::json!({
                "account": account,
                "regions": regions,
                "failing_since": since.to_rfc3339(),
            });
            a.dedupe_key = format!("account_unreachable:{account}:{}", since.timestamp());
            app.engine.alerts.raise_once(a).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::secrets::SecretInfo;
    use crate::planner::RotationState;
    use chrono::TimeZone;
    use std::path::Path;

    /// Wednesday 2026-11-25 03:30 UTC: inside the daily windows (03:00 and 03:15, 2 h
    /// each), days before the weekly ones (Saturdays). Each schedule has its own secrets
    /// so that the planner's staggering leaves every open window's start at `now`.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 3, 30, 0).unwrap()
    }

    const CFG: &str = r#"
[daemon]
reconcile_interval = "15m"
max_rotations_per_minute = 60
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[policy]
require_change_ticket = false
max_age = "93d"
[[secret]]
id = "prod/daily"
schedule = "0 3 * * *"
window = "2h"
strategy = "single-user"
change_ticket = "CHG-7"
[[secret]]
id = "prod/weekly"
schedule = "0 3 * * 6"
window = "2h"
strategy = "single-user"
[[secret]]
id = "prod/old"
schedule = "0 4 * * 6"
window = "2h"
strategy = "single-user"
[[secret]]
id = "prod/new"
schedule = "15 3 * * *"
window = "2h"
strategy = "single-user"
[[secret]]
id = "prod/stuck"
schedule = "0 3 * * *"
window = "2h"
strategy = "single-user"
[[secret]]
id = "prod/far"
schedule = "0 3 * * *"
window = "2h"
strategy = "single-user"
[[secret]]
id = "prod/gone"
strategy = "single-user"
"#;

    fn arn(name: &str) -> String {
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf")
    }

    fn fixture() -> (Config, Fleet, Observed) {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), CFG).unwrap();
        let names = [
            "prod/daily",
            "prod/weekly",
            "prod/old",
            "prod/new",
            "prod/stuck",
            "prod/far",
        ];
        let infos = names
            .iter()
            .map(|n| SecretInfo {
                name: n.to_string(),
                arn: arn(n),
                versions: [("v-cur".to_string(), vec!["AWSCURRENT".to_string()])].into(),
                ..Default::default()
            })
            .collect();
        let fleet = inventory::match_fleet(&cfg, infos);
        let rotated = |days: i64| Facts {
            current_created: Some(now() - chrono::Duration::days(days)),
            ever_rotated: true,
            rotation: RotationState::Idle,
        };
        let mut observed = Observed::default();
        observed.facts.insert("prod/daily".into(), rotated(10));
        observed.facts.insert("prod/weekly".into(), rotated(10));
        observed.facts.insert("prod/old".into(), rotated(100));
        observed.facts.insert("prod/new".into(), Facts::default());
        observed.facts.insert(
            "prod/stuck".into(),
            Facts {
                rotation: RotationState::Stuck,
                ..rotated(10)
            },
        );
        // prod/far has no facts: carried over from an account-region that did not answer.
        observed.failing.insert("prod/weekly".into());
        (cfg, fleet, observed)
    }

    fn keys(p: &ReconcilePlan) -> Vec<(String, TriggerKind, String)> {
        let mut k: Vec<_> = p
            .triggers
            .iter()
            .map(|t| (t.secret.clone(), t.kind, t.dedupe_key.clone().unwrap()))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn each_trigger_kind_carries_its_dedupe_key() {
        let (cfg, fleet, observed) = fixture();
        let p = plan(&fleet, &observed, &cfg, now());
        let window = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        assert_eq!(
            keys(&p),
            vec![
                // The open daily window, keyed on its start.
                (
                    "prod/daily".into(),
                    TriggerKind::Scheduled,
                    format!("plan:{}:{}", arn("prod/daily"), window.timestamp())
                ),
                // Never rotated: its first window, keyed like any window.
                (
                    "prod/new".into(),
                    TriggerKind::NeverRotated,
                    format!(
                        "plan:{}:{}",
                        arn("prod/new"),
                        (window + chrono::Duration::minutes(15)).timestamp()
                    )
                ),
                // Overdue: one trigger per AWSCURRENT version, whatever the time.
                (
                    "prod/old".into(),
                    TriggerKind::Overdue,
                    format!("overdue:{}:v-cur", arn("prod/old"))
                ),
            ]
        );
        assert_eq!(
            window_key(&arn("prod/daily"), window),
            p.triggers[0].dedupe_key.clone().unwrap()
        );
    }

    #[test]
    fn triggers_carry_the_window_ticket_and_start() {
        let (cfg, fleet, observed) = fixture();
        let p = plan(&fleet, &observed, &cfg, now());
        let daily = p
            .triggers
            .iter()
            .find(|t| t.secret == "prod/daily")
            .unwrap();
        assert_eq!(daily.ticket.as_deref(), Some("CHG-7"));
        assert_eq!(daily.actor, "rotationd");
        assert_eq!(daily.created_at, now());
        assert_eq!(
            daily.deadline,
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 5, 0, 0).unwrap())
        );
        assert!(daily.not_before.is_some_and(|nb| nb <= now()));
        assert_eq!(
            daily.reason,
            "scheduled window 2026-11-25T03:00:00Z .. 2026-11-25T05:00:00Z"
        );
        let old = p.triggers.iter().find(|t| t.secret == "prod/old").unwrap();
        // Overdue rotates as soon as possible: not_before is the overdue window's start.
        assert!(old.not_before.is_some_and(|nb| nb <= now()));
    }

    #[test]
    fn the_same_pass_twice_plans_the_same_keys() {
        let (cfg, fleet, observed) = fixture();
        let a = plan(&fleet, &observed, &cfg, now());
        let b = plan(
            &fleet,
            &observed,
            &cfg,
            now() + chrono::Duration::minutes(15),
        );
        assert_eq!(
            keys(&a),
            keys(&b),
            "a later pass must collapse on the same keys"
        );
    }

    #[test]
    fn an_overdue_secret_gets_a_new_key_only_with_a_new_version() {
        let (cfg, mut fleet, observed) = fixture();
        let before = overdue_key(&arn("prod/old"), Some("v-cur"));
        let entry = fleet
            .entries
            .iter_mut()
            .find(|e| e.key == "prod/old")
            .unwrap();
        entry.info.versions = [("v-next".to_string(), vec!["AWSCURRENT".to_string()])].into();
        let p = plan(&fleet, &observed, &cfg, now());
        let old = p.triggers.iter().find(|t| t.secret == "prod/old").unwrap();
        assert_eq!(
            old.dedupe_key.as_deref(),
            Some(format!("overdue:{}:v-next", arn("prod/old")).as_str())
        );
        assert_ne!(old.dedupe_key.as_deref(), Some(before.as_str()));
        assert_eq!(overdue_key("a", None), "overdue:a:-");
    }

    #[test]
    fn a_window_opening_before_the_next_pass_is_planned_and_a_later_one_is_not() {
        let (cfg, _) = Config::from_source(
            Path::new("t.toml"),
            r#"
[daemon]
reconcile_interval = "15m"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[policy]
require_change_ticket = false
[[secret]]
id = "prod/weekly"
schedule = "0 3 * * 6"
window = "2h"
strategy = "single-user"
"#,
        )
        .unwrap();
        let info = SecretInfo {
            name: "prod/weekly".into(),
            arn: arn("prod/weekly"),
            ..Default::default()
        };
        let fleet = inventory::match_fleet(&cfg, vec![info]);
        let mut observed = Observed::default();
        observed.facts.insert(
            "prod/weekly".into(),
            Facts {
                current_created: Some(now() - chrono::Duration::days(10)),
                ever_rotated: true,
                rotation: RotationState::Idle,
            },
        );
        // Saturday 02:30: the window opens after the next pass (02:45 + 1 min).
        let early = Utc.with_ymd_and_hms(2026, 11, 28, 2, 30, 0).unwrap();
        assert!(plan(&fleet, &observed, &cfg, early).triggers.is_empty());
        // Saturday 02:50: it opens before the next pass, so this pass queues it.
        let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 2, 50, 0).unwrap();
        let p = plan(&fleet, &observed, &cfg, saturday);
        let start = Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap();
        assert_eq!(
            keys(&p),
            vec![(
                "prod/weekly".to_string(),
                TriggerKind::Scheduled,
                window_key(&arn("prod/weekly"), start),
            )]
        );
        assert_eq!(p.triggers[0].not_before, Some(start));
        // Once the window has closed, nothing.
        let late = Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).unwrap();
        assert!(plan(&fleet, &observed, &cfg, late).triggers.is_empty());
    }

    #[test]
    fn statuses_and_alerts_follow_compliance() {
        let (cfg, fleet, observed) = fixture();
        let p = plan(&fleet, &observed, &cfg, now());
        let label = |k: &str| p.statuses.iter().find(|s| s.key == k).map(|s| s.label);
        assert_eq!(label("prod/daily"), Some("due"));
        assert_eq!(label("prod/weekly"), Some("failing"));
        assert_eq!(label("prod/old"), Some("overdue"));
        assert_eq!(label("prod/new"), Some("never_rotated"));
        assert_eq!(label("prod/stuck"), Some("stuck"));
        assert_eq!(label("prod/far"), None, "carried over: not judged");
        // A hold shows before stuck, failing or overdue; a running rotation before a hold.
        let mut held = observed.clone();
        held.held = ["prod/weekly", "prod/stuck", "prod/old"]
            .map(String::from)
            .into();
        let h = plan(&fleet, &held, &cfg, now());
        let label = |k: &str| h.statuses.iter().find(|s| s.key == k).map(|s| s.label);
        assert_eq!(label("prod/weekly"), Some("held"));
        assert_eq!(label("prod/stuck"), Some("held"));
        assert_eq!(label("prod/old"), Some("held"));
        assert_eq!(label("prod/daily"), Some("due"));
        assert_eq!(
            crate::inventory::status_label(Compliance::InProgress, true, true),
            "in_progress"
        );
        assert_eq!(
            p.statuses.iter().find(|s| s.key == "prod/old").unwrap().arn,
            arn("prod/old")
        );
        let alerts: Vec<_> = p
            .alerts
            .iter()
            .map(|(a, r)| (a.kind, a.secret.clone().unwrap_or_default(), *r))
            .collect();
        assert_eq!(
            alerts,
            vec![
                (
                    AlertKind::Overdue,
                    "prod/old".to_string(),
                    Repeat::AfterRealertInterval
                ),
                (
                    AlertKind::RotationStuck,
                    "prod/stuck".to_string(),
                    Repeat::AfterRealertInterval
                ),
                (
                    AlertKind::SecretMissing,
                    "prod/gone".to_string(),
                    Repeat::Never
                ),
            ]
        );
        let overdue = &p.alerts[0].0;
        assert_eq!(
            overdue.secret_arn.as_deref(),
            Some(arn("prod/old").as_str())
        );
        assert_eq!(overdue.details["max_age"], "93d");
        assert_eq!(
            p.alerts[2].0.error.as_deref(),
            Some("configured secret prod/gone is not found in Secrets Manager")
        );
        // Neither stuck nor carried-over secrets get a trigger.
        assert!(
            !p.triggers
                .iter()
                .any(|t| t.secret == "prod/stuck" || t.secret == "prod/far")
        );
    }

    #[test]
    fn a_stuck_secret_our_failed_attempt_left_is_not_escalated_twice() {
        let (cfg, fleet, mut observed) = fixture();
        observed.escalated.insert("prod/stuck".into());
        let p = plan(&fleet, &observed, &cfg, now());
        assert!(
            !p.alerts
                .iter()
                .any(|(a, _)| a.kind == AlertKind::RotationStuck),
            "rotation_failed escalated it already"
        );
        let stuck = p.statuses.iter().find(|s| s.key == "prod/stuck").unwrap();
        assert_eq!(stuck.label, "stuck", "still shown stuck");
    }

    #[test]
    fn an_empty_fleet_plans_nothing() {
        let (cfg, _, _) = fixture();
        let p = plan(&Fleet::default(), &Observed::default(), &cfg, now());
        assert!(p.triggers.is_empty() && p.alerts.is_empty() && p.statuses.is_empty());
    }

    #[test]
    fn the_notice_due_is_the_shortest_lead_reached_before_the_window() {
        let start = now() + chrono::Duration::days(10);
        let leads = [Duration::from_secs(7 * 86_400), Duration::from_secs(86_400)];
        let at = |d: chrono::Duration| due_lead(&leads, start, start - d);
        assert_eq!(
            at(chrono::Duration::days(8)),
            None,
            "before the longest lead"
        );
        assert_eq!(at(chrono::Duration::days(7)), Some(leads[0]));
        assert_eq!(at(chrono::Duration::days(2)), Some(leads[0]));
        assert_eq!(at(chrono::Duration::hours(24)), Some(leads[1]));
        // Down at the 7d mark, up 20 h before: the 24h notice alone.
        assert_eq!(at(chrono::Duration::hours(20)), Some(leads[1]));
        assert_eq!(at(chrono::Duration::zero()), None, "the window opened");
        assert_eq!(due_lead(&[], start, now()), None);
    }

    const NOTICE_CFG: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
notify_topic_arn = "arn:aws:sns:us-east-1:123456789012:notify"
[policy]
require_change_ticket = false
notice = ["7d", "24h"]
[[dependent]]
name = "billing"
notify_topic_arn = "arn:aws:sns:us-east-1:123456789012:billing"
[[dependent]]
name = "quiet"
[[vendor]]
name = "acme"
schedule = "0 3 1 * *"
window = "2h"
contact_topic_arn = "arn:aws:sns:us-east-1:123456789012:acme"
notice = ["3d"]
[[secret]]
id = "prod/weekly"
schedule = "0 3 * * 6"
window = "2h"
strategy = "single-user"
change_ticket = "CHG-7"
dependents = ["billing", "quiet"]
[[secret]]
id = "prod/acme"
vendor = "acme"
strategy = "single-user"
[[secret]]
id = "prod/silent"
schedule = "0 3 * * 6"
window = "2h"
strategy = "single-user"
[[secret]]
id = "prod/held"
schedule = "0 3 * * 6"
window = "2h"
strategy = "single-user"
"#;

    fn notice_fixture() -> (Config, Fleet, Observed) {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), NOTICE_CFG).unwrap();
        let names = ["prod/weekly", "prod/acme", "prod/silent", "prod/held"];
        let infos = names
            .iter()
            .map(|n| SecretInfo {
                name: n.to_string(),
                arn: arn(n),
                ..Default::default()
            })
            .collect();
        let fleet = inventory::match_fleet(&cfg, infos);
        let mut observed = Observed::default();
        for n in names {
            observed.facts.insert(
                n.into(),
                Facts {
                    current_created: Some(now() - chrono::Duration::days(3)),
                    ever_rotated: true,
                    rotation: RotationState::Idle,
                },
            );
        }
        observed.held.insert("prod/held".into());
        (cfg, fleet, observed)
    }

    #[test]
    fn notices_go_ahead_of_the_next_window_once_per_lead_to_dependents_and_the_vendor() {
        let (cfg, fleet, observed) = notice_fixture();
        // Wednesday 03:30: the weekly window opens Saturday 03:00, 2 days 23.5 h ahead
        // (the 7d lead reached, not the 24h one); acme's on December 1st, 5 days 23.5 h
        // ahead (its own 3d lead not reached yet).
        let p = plan(&fleet, &observed, &cfg, now());
        let keys = |p: &ReconcilePlan| -> Vec<(String, String, Option<String>, Option<String>)> {
            p.notices
                .iter()
                .flat_map(|n| n.alerts.iter())
                .map(|a| {
                    (
                        a.secret.clone().unwrap_or_default(),
                        a.dedupe_key.clone(),
                        a.dependent.clone(),
                        a.vendor.clone(),
                    )
                })
                .collect()
        };
        let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap();
        let weekly_7d = notice_key(
            &arn("prod/weekly"),
            saturday,
            Duration::from_secs(7 * 86_400),
        );
        let silent_7d = notice_key(
            &arn("prod/silent"),
            saturday,
            Duration::from_secs(7 * 86_400),
        );
        assert_eq!(
            keys(&p),
            vec![
                ("prod/silent".into(), silent_7d.clone(), None, None),
                // Only the dependent with its own topic gets a copy; the held secret none.
                (
                    "prod/weekly".into(),
                    format!("{weekly_7d}:billing"),
                    Some("billing".into()),
                    None
                ),
                ("prod/weekly".into(), weekly_7d.clone(), None, None),
            ]
        );
        let n = p
            .notices
            .iter()
            .find(|n| n.secret == "prod/weekly")
            .unwrap();
        assert_eq!(n.window_start, saturday);
        let a = n.alerts.last().unwrap();
        assert_eq!(a.kind, AlertKind::RotationScheduled);
        assert_eq!(a.ticket.as_deref(), Some("CHG-7"));
        assert_eq!(a.deadline, Some(saturday + chrono::Duration::hours(2)));
        assert_eq!(a.details["lead"], "7d");
        // The same pass again: the same keys (the outbox sends each once).
        assert_eq!(keys(&plan(&fleet, &observed, &cfg, now())), keys(&p));
        // Friday 04:00, 23 h before: the 24h notice, a new key.
        let friday = saturday - chrono::Duration::hours(23);
        let p = plan(&fleet, &observed, &cfg, friday);
        let weekly_24h = notice_key(&arn("prod/weekly"), saturday, Duration::from_secs(86_400));
        assert!(keys(&p).iter().any(|k| k.1 == weekly_24h), "{:?}", keys(&p));
        // Three days before acme's window: its vendor's lead, with a copy to the vendor.
        let december = Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap();
        let p = plan(
            &fleet,
            &observed,
            &cfg,
            december - chrono::Duration::days(3),
        );
        let acme = notice_key(&arn("prod/acme"), december, Duration::from_secs(3 * 86_400));
        let acme_keys: Vec<_> = keys(&p)
            .into_iter()
            .filter(|k| k.0 == "prod/acme")
            .collect();
        assert_eq!(
            acme_keys,
            vec![
                (
                    "prod/acme".into(),
                    format!("{acme}:vendor:acme"),
                    None,
                    Some("acme".into())
                ),
                ("prod/acme".into(), acme.clone(), None, None),
            ]
        );
    }
}
