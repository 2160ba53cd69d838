//! The drift application of `[policy] native_schedule`: Secrets Manager's own rotation
//! schedule compared with the TOML one on every reconcile ([`crate::drift`] decides, pure;
//! this applies it: metrics, notices, and for `sync` / `disable` the change itself, once
//! per target, audited). In observe mode `sync` and `disable` only report, saying what
//! they would do.

use std::collections::{HashMap, HashSet};

use chrono::Utc;

use super::App;
use crate::alerts::{Alert, AlertKind};
use crate::aws;
use crate::inventory;

/// Secrets Manager's own schedule against the TOML schedule (`[policy] native_schedule`):
/// counts the drift, reports it once per secret and native schedule (P3), and for `sync`
/// or `disable` changes it. A change is made once per target: a cursor per secret
/// remembers what rotationd wrote (or that it cancelled), and while Secrets Manager still
/// disagrees afterwards rotationd reports instead of acting again, so a change that does
/// not take cannot loop. The cursor is forgotten once the two agree, so a later manual
/// change is corrected again. Never while a rotation of the secret runs:
/// CancelRotateSecret would cancel it, and a schedule written by RotateSecret is refused
/// while AWSPENDING is out.
pub async fn native_schedules(
    app: &App,
    inv: &inventory::Inventory,
    active: &HashSet<String>,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    use crate::drift::{self, Action};
    let cfg = &app.cfg;
    let mode = cfg.policy.native_schedule;
    let mut drifting = 0i64;
    let mut reported: Vec<(String, drift::Drift)> = Vec::new();
    const CURSOR: &str = "native_schedule:";
    let mut acted: HashMap<String, String> = app
        .store
        .call(|s| s.db().cursors_with_prefix(CURSOR))
        .await?
        .into_iter()
        .map(|c| (c.name, c.value))
        .collect();
    for e in &inv.fleet.entries {
        if aws::Place::of_arn(&e.info.arn).is_some_and(|p| !inv.reached(&p)) {
            continue;
        }
        let settings = inventory::settings(cfg, e.origin);
        let expected = drift::aws_rules(&settings.schedule, settings.window);
        let cursor = format!("{CURSOR}{}", e.info.arn);
        let Some(d) = drift::drift(&e.info.native, &expected, mode) else {
            if acted.remove(&cursor).is_some() {
                app.store
                    .call(move |s| s.db().delete_cursor(&cursor))
                    .await?;
            }
            continue;
        };
        drifting += 1;
        let action = drift::action(&e.info.native, &expected, mode);
        let notice = |why: String| {
            let mut a = Alert::new(AlertKind::NativeScheduleDrift, Some(&e.key), now);
            a.secret_arn = Some(e.info.arn.clone());
            a.reason = Some(why);
            a.details = serde_json::json!({
                "native": d.native,
                "expected": d.expected,
                "native_schedule": mode.as_str(),
            });
            a.dedupe_key = format!(
                "native_schedule_drift:{}:{}:{}",
                e.key, d.native, d.expected
            );
            a
        };
        if action == Action::None {
            reported.push((e.key.clone(), d));
            continue;
        }
        if app.engine.observing() {
            // Observe mode changes nothing: reported with what enforce mode would do.
            let what = match &action {
                Action::Write(r) => format!("write {} for {}", r.schedule_expression, r.duration),
                _ => "turn it off (CancelRotateSecret)".to_string(),
            };
            let why = format!("observe mode: rotationd would {what}; {}", d.why);
            reported.push((e.key.clone(), crate::drift::Drift { why, ..d }));
            continue;
        }
        if active.contains(&e.key) || e.info.dangling_pending().is_some() {
            continue;
        }
        let (label, fingerprint) = match &action {
            Action::Write(r) => (
                "sync",
                format!("sync {} for {}", r.schedule_expression, r.duration),
            ),
            _ => ("disable", "disable".to_string()),
        };
        if acted.get(&cursor) == Some(&fingerprint) {
            let mut a = notice(format!(
                "rotationd already tried to {label} this schedule, but Secrets Manager still shows {}; {}",
                d.native, d.why
            ));
            a.dedupe_key.push_str(":retried");
            app.engine.alerts.raise_once(a).await?;
            continue;
        }
        let id = e.info.arn.clone();
        let result = match &action {
            Action::Write(rules) => {
                app.engine
                    .sm
                    .write_schedule(&id, e.info.rotation_lambda_arn.as_deref(), rules)
                    .await
            }
            _ => app.engine.sm.cancel_rotation(&id).await,
        };
        let outcome = match &result {
            Ok(()) => "ok",
            Err(err) if err.retryable => return Err(anyhow::anyhow!("{err}")),
            Err(_) => "failed",
        };
        app.metrics
            .native_schedule_changes_total
            .with_label_values(&[label, outcome])
            .inc();
        let audit = crate::store::NewAuditEntry {
            at: now,
            actor: "rotationd".into(),
            action: match &action {
                Action::Write(_) => crate::store::audit::Action::NativeScheduleSync,
                _ => crate::store::audit::Action::NativeScheduleDisable,
            },
            secret: Some(e.key.clone()),
            ticket: None,
            reason: Some(d.why.clone()),
            outcome: if result.is_ok() {
                crate::store::audit::Outcome::Ok
            } else {
                crate::store::audit::Outcome::Failed
            },
            detail: Some(serde_json::json!({
                "native_before": d.native,
                "expected": d.expected,
                "error": result.as_ref().err().map(|e| e.to_string()),
            })),
        };
        app.store
            .call(move |s| {
                s.transaction(|db| {
                    db.append_audit(&audit)?;
                    db.set_cursor(&cursor, &fingerprint, now)
                })
            })
            .await?;
        match result {
            Ok(()) => {
                tracing::info!(secret = %e.key, action = label, native = %d.native, expected = %d.expected, "native schedule changed")
            }
            Err(err) => {
                tracing::warn!(secret = %e.key, action = label, error = %err, "cannot change the native schedule");
                let mut a = notice(format!("{label} failed: {err}; {}", d.why));
                a.dedupe_key.push_str(":failed");
                app.engine.alerts.raise_once(a).await?;
            }
        }
    }
    app.metrics.native_schedule_drift.set(drifting);
    // One notice for the whole fleet, sent again only when the set of drifting secrets (or
    // what they drift to) changes: a fleet whose rotation functions all run on their own
    // schedule would otherwise send one notice per secret.
    if !reported.is_empty() {
        reported.sort_by(|a, b| a.0.cmp(&b.0));
        // A stable digest (not std's hasher, which may change between Rust releases).
        let mut fingerprint = <sha2::Sha256 as sha2::Digest>::new();
        for (key, d) in &reported {
            for part in [key.as_str(), &d.native, &d.expected] {
                sha2::Digest::update(&mut fingerprint, part.as_bytes());
                sha2::Digest::update(&mut fingerprint, [0u8]);
            }
        }
        let digest = sha2::Digest::finalize(fingerprint);
        const LISTED: usize = 50;
        let mut a = Alert::new(AlertKind::NativeScheduleDrift, None, now);
        a.reason = Some(format!(
            "{} secret(s) are also rotated by Secrets Manager on a schedule that differs from rotationd's: they can be rotated twice, or not when planned; first: {}",
            reported.len(),
            reported[0].1.why
        ));
        a.details = serde_json::json!({
            "count": reported.len(),
            "native_schedule": mode.as_str(),
            "secrets": reported.iter().take(LISTED).map(|(key, d)| serde_json::json!({
                "secret": key, "native": d.native, "expected": d.expected,
            })).collect::<Vec<_>>(),
            "more": reported.len().saturating_sub(LISTED),
            "see": "rotationd plan --live",
        });
        a.dedupe_key = format!(
            "native_schedule_drift:{}",
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        app.engine.alerts.raise_once(a).await?;
    }
    Ok(())
}
