//! One alert, written for each reader: a machine, a person reading mail at 3 a.m., a
//! phone, a chat channel.
//!
//! Every Publish uses SNS's `MessageStructure = "json"`: one request carries a body per
//! protocol and SNS hands each subscriber its own ([`structured`]).
//! - `default`, `sqs`, `lambda`, `http`, `https`, `email-json`: the `rotationd.alert.v1`
//!   document, byte for byte what subscribers got before (the machine contract);
//! - `email`: plain text ([`email`]): what happened and how bad, which secret, when and what
//!   rotationd already did, the runbook numbered with the exact commands, the dedupe key
//!   and attempt at the bottom;
//! - `sms`: at most [`SMS_MAX`] characters ([`sms`]).
//!
//! The chat topic (`[alerts] chat_topic_arn`, a dependent's `chat_topic_arn`) gets [`chat`]:
//! the custom-notification schema of AWS's chat integration (Amazon Q Developer in chat
//! applications, formerly AWS Chatbot) for Slack and Teams, published as the plain message.
//!
//! An alert queued in observe mode (`"mode": "observe"` in the document) says so in each:
//! `[observe] ` before the subject and the SMS, a `Mode:` line and "changed nothing" in
//! the email and the chat card.
//!
//! Everything is rendered from the stored alert document, which holds names, ARNs, version
//! ids, tickets and error messages only: no rendering can carry a secret value that the
//! document does not, and the document never holds one.

use serde_json::{Value, json};

/// SNS: a subject must be "less than 100 characters long" (Publish, `Subject`), in
/// printable ASCII so that no mail gateway rewrites it.
pub const SUBJECT_MAX: usize = 99;
/// What the issue of SMS delivery leaves for one message in one part.
pub const SMS_MAX: usize = 140;
/// SNS: a whole Publish message (every protocol's body together) is at most 256 KiB.
pub const MESSAGE_MAX: usize = 256 * 1024;
/// Each body is kept well under the limit, so that the JSON of all of them fits.
const BODY_MAX: usize = 48 * 1024;

fn str_of<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn secret_name(doc: &Value) -> Option<&str> {
    doc.get("secret")
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
}

fn secret_arn(doc: &Value) -> Option<&str> {
    doc.get("secret")
        .and_then(|s| s.get("arn"))
        .and_then(Value::as_str)
}

/// (account, region) from a secret ARN: `arn:PARTITION:secretsmanager:REGION:ACCOUNT:...`.
fn place(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_, _, _, region, account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    Some((account, region))
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Printable ASCII only (SNS subjects and SMS), others become `?`.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Whether the document was queued in observe mode.
fn observed(doc: &Value) -> bool {
    str_of(doc, "mode") == Some("observe")
}

/// What the email and the chat card say about the mode, in observe mode.
const OBSERVE_NOTE: &str =
    "observe ([daemon] mode = \"observe\"): rotationd changed nothing in Secrets Manager";

/// `[P1] rotation_failed prod/payments/db`: severity and kind first, so that mail filters
/// and pager rules can match on them; at most [`SUBJECT_MAX`] ASCII characters. In observe
/// mode `[observe] ` comes first, so a rule matching the enforce subject does not page.
pub fn subject(severity: &str, kind: &str, secret: Option<&str>, observe: bool) -> String {
    let mut s = format!(
        "{}[{severity}] {kind}",
        if observe { "[observe] " } else { "" }
    );
    if let Some(secret) = secret {
        s.push(' ');
        s.push_str(secret);
    }
    clip(&ascii(&s), SUBJECT_MAX)
}

/// What rotationd has already done by the time this alert goes out: per kind, and in
/// observe mode what it would have done.
fn done(kind: &str, doc: &Value) -> String {
    if observed(doc) && kind != "observe_summary" {
        return format!(
            "Nothing in Secrets Manager: rotationd is in observe mode. In enforce mode it would have done this: {}",
            already_done(kind, doc)
        );
    }
    already_done(kind, doc).to_string()
}

/// What rotationd has already done by the time this alert goes out, per kind.
fn already_done(kind: &str, doc: &Value) -> &'static str {
    let unmanaged = doc
        .get("details")
        .and_then(|d| d.get("rotation"))
        .and_then(Value::as_str)
        .is_some_and(|r| r.starts_with("none"));
    match kind {
        "breach_suspected" if unmanaged => {
            "Nothing to rotate: the secret is not managed by rotationd. Recorded the report in the audit log."
        }
        "rotation_failed" => {
            "Ended the rotation attempt at the failed stage, recorded it in the audit log and put the secret on hold: no planned rotation starts until someone has looked and lifted the hold with rotationd resume --secret (a departure or a compromise still rotates it). It never rotates over an AWSPENDING the failure left."
        }
        "rotation_stuck" => {
            "Refused to call RotateSecret while AWSPENDING sits on a version without AWSCURRENT, and put the secret on hold until rotationd resume --secret lifts it."
        }
        "rotation_abandoned" => {
            "Recorded Secrets Manager's RotationAbandoned event and put the secret on hold until rotationd resume --secret lifts it."
        }
        "breach_suspected" => {
            "Started an emergency rotation at once, outside any window (its outcome follows as rotation_completed or rotation_failed)."
        }
        "departure_sla_at_risk" | "departure_sla_missed" => {
            "Queued a rotation of every secret the departed person could reach; this one has not completed yet."
        }
        "overdue" => "Planned a rotation in the secret's next window.",
        "rotation_storm" => {
            "Paused event-triggered rotations; the triggers are kept and run after rotationd resume."
        }
        "secret_missing" => {
            "Stopped planning this secret until it is back or removed from the config."
        }
        "aws_unreachable" | "account_unreachable" => {
            "Kept every rotation and alert; they resume when AWS answers."
        }
        "dependents_unhealthy" => {
            "Ended the post-rotation watch as unhealthy. It rolls back on its own only with auto_rollback = true (alternating users); otherwise rollback is an L3 decision."
        }
        "rotation_scheduled" => "Told the dependents before changing the credential.",
        "rotation_completed" => {
            "Promoted the new version to AWSCURRENT and checked AWSPREVIOUS; the dependents' watch follows."
        }
        "native_schedule_drift" => "Changed nothing: it reports ([policy] native_schedule).",
        "approval_requested" => "Recorded the request; nothing rotates until an L3 approves it.",
        "approval_overdue" => "Kept the request waiting; it closes at its deadline.",
        "departure_unresolved" => {
            "Rotated nothing: neither the Identity Store nor what rotationd remembers of it knows the user id. Recorded the departure in the audit log."
        }
        "rollback_escalated" => {
            "Refused the rollback (L3 only, per the guide) and recorded who asked, with the ticket and the reason, in the audit log; nothing moved."
        }
        "rollback_completed" => {
            "Moved AWSCURRENT back to the previous version and checked both labels."
        }
        "rollback_forced" => {
            "Moved AWSCURRENT back, with --force, to a version a compromise, departure or emergency rotation had retired, and recorded it in the audit log."
        }
        "state_lost" => {
            "Stopped rotating and reacting (events stay on the queue); sent this directly, as the outbox was in the lost file."
        }
        "observe_summary" => {
            "Planned, reacted to events and ran every preflight; sent no RotateSecret, UpdateSecretVersionStage or CancelRotateSecret. The triggers stay queued for enforce mode."
        }
        _ => "Recorded it in the audit log.",
    }
}

/// How urgent each severity is, for a person.
fn urgency(severity: &str) -> &'static str {
    match severity {
        "P1" => "P1: act now, escalate to the Security Lead",
        "P2" => "P2: act today",
        _ => "P3: for information",
    }
}

/// The exact commands for this alert's secret.
fn commands(doc: &Value) -> Vec<String> {
    let Some(name) = secret_name(doc) else {
        return vec!["rotationd status".into()];
    };
    let id = secret_arn(doc).unwrap_or(name);
    let mut out = vec![format!("rotationd status --secret {name}")];
    match str_of(doc, "kind") {
        Some("dependents_unhealthy" | "rotation_completed") => out.push(format!(
            "rotationd rollback --secret {name} --ticket <INC-ticket> --reason \"<why>\""
        )),
        Some(
            "rotation_failed"
            | "rotation_stuck"
            | "breach_suspected"
            | "rollback_forced"
            | "departure_sla_at_risk"
            | "departure_sla_missed"
            | "overdue",
        ) => out.push(format!(
            "rotationd rotate --secret {name} --ticket <INC-ticket> --reason \"<why>\" --emergency"
        )),
        _ => {}
    }
    if matches!(
        str_of(doc, "kind"),
        Some("rotation_failed" | "rotation_stuck" | "rotation_abandoned")
    ) {
        // The hold: lifted once someone has looked (the guide's "investigate before
        // re-attempting").
        out.push(format!(
            "rotationd resume --secret {name} --ticket <INC-ticket> --reason \"<what was found>\""
        ));
    }
    out.push(format!(
        "aws secretsmanager describe-secret --secret-id {id} --query VersionIdsToStages"
    ));
    out
}

/// The plain-text email.
pub fn email(doc: &Value) -> String {
    let kind = str_of(doc, "kind").unwrap_or("alert");
    let severity = str_of(doc, "severity").unwrap_or("P3");
    let summary = str_of(doc, "summary").unwrap_or(kind);
    let mut t = String::new();
    t.push_str(&format!(
        "{summary}\n{}\n\n",
        "=".repeat(summary.len().min(72))
    ));
    t.push_str(&format!(
        "Severity: {}\nKind:     {kind}\n",
        urgency(severity)
    ));
    if observed(doc) {
        t.push_str(&format!("Mode:     {OBSERVE_NOTE}\n"));
    }
    t.push('\n');
    match (secret_name(doc), secret_arn(doc)) {
        (Some(name), arn) => {
            t.push_str(&format!("Secret:   {name}\n"));
            if let Some(arn) = arn {
                t.push_str(&format!("ARN:      {arn}\n"));
                if let Some((account, region)) = place(arn) {
                    t.push_str(&format!("Account:  {account}\nRegion:   {region}\n"));
                }
            }
        }
        (None, _) => t.push_str("Secret:   (not about one secret)\n"),
    }
    t.push('\n');
    t.push_str(&format!(
        "When:     {}\n",
        str_of(doc, "occurred_at").unwrap_or("-")
    ));
    if let Some(d) = str_of(doc, "deadline") {
        t.push_str(&format!("Deadline: {d}\n"));
    }
    for (label, key) in [
        ("Trigger", "trigger"),
        ("Ticket", "ticket"),
        ("Reason", "reason"),
        ("Error", "error"),
    ] {
        if let Some(v) = str_of(doc, key) {
            t.push_str(&format!("{label}:{:w$}{v}\n", "", w = 9 - label.len()));
        }
    }
    t.push_str(&format!(
        "\nWhat rotationd already did:\n  {}\n",
        done(kind, doc)
    ));
    if let Some(list) = doc
        .get("details")
        .and_then(|d| d.get("secrets"))
        .and_then(Value::as_array)
    {
        t.push_str(&format!("\nSecrets ({}):\n", list.len()));
        for s in list {
            let line = match s {
                Value::String(s) => s.clone(),
                other => other
                    .get("secret")
                    .and_then(Value::as_str)
                    .map_or_else(|| other.to_string(), str::to_string),
            };
            t.push_str(&format!("  - {line}\n"));
        }
        if let Some(more) = doc["details"].get("more").and_then(Value::as_u64)
            && more > 0
        {
            let see = doc["details"]
                .get("see")
                .and_then(Value::as_str)
                .unwrap_or("rotationd plan --live");
            t.push_str(&format!("  ... and {more} more ({see})\n"));
        }
    }
    t.push_str("\nWhat to do:\n");
    let steps = doc
        .get("runbook")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, step) in steps.iter().filter_map(Value::as_str).enumerate() {
        t.push_str(&format!("  {}. {step}\n", i + 1));
    }
    t.push_str("\nCommands:\n");
    for c in commands(doc) {
        t.push_str(&format!("  $ {c}\n"));
    }
    t.push_str("\n--\n");
    t.push_str(&format!(
        "dedupe key: {}\n",
        str_of(doc, "dedupe_key").unwrap_or("-")
    ));
    let attempt = doc
        .get("details")
        .and_then(|d| d.get("attempt"))
        .and_then(Value::as_str);
    t.push_str(&format!("attempt:    {}\n", attempt.unwrap_or("-")));
    t.push_str("Sent by rotationd (schema rotationd.alert.v1; machines read the JSON body).\n");
    clip(&t, BODY_MAX)
}

/// At most [`SMS_MAX`] ASCII characters: severity, kind, secret, "see email".
pub fn sms(doc: &Value) -> String {
    let kind = str_of(doc, "kind").unwrap_or("alert");
    let severity = str_of(doc, "severity").unwrap_or("P3");
    const TAIL: &str = " - see email";
    let mode = if observed(doc) { "[observe] " } else { "" };
    let head = format!("rotationd {mode}[{severity}] {kind}");
    let room = SMS_MAX - head.len() - TAIL.len();
    let secret = secret_name(doc)
        .map(|s| format!(" {}", clip(&ascii(s), room.saturating_sub(1))))
        .unwrap_or_default();
    clip(&ascii(&format!("{head}{secret}{TAIL}")), SMS_MAX)
}

/// AWS's chat integration's custom notification (`version` 1.0, `source` custom): title,
/// a `client-markdown` description, next steps and keywords; threaded per secret.
pub fn chat(doc: &Value) -> Value {
    let kind = str_of(doc, "kind").unwrap_or("alert");
    let severity = str_of(doc, "severity").unwrap_or("P3");
    let summary = str_of(doc, "summary").unwrap_or(kind);
    let icon = match severity {
        "P1" => ":rotating_light:",
        "P2" => ":warning:",
        _ => ":information_source:",
    };
    let name = secret_name(doc);
    let arn = secret_arn(doc);
    let observe = observed(doc);
    let mut d = String::new();
    d.push_str(&format!("*{}* · `{kind}`\n", urgency(severity)));
    if observe {
        d.push_str(&format!("*Mode:* {OBSERVE_NOTE}\n"));
    }
    if let Some(name) = name {
        d.push_str(&format!("*Secret:* `{name}`"));
        if let Some((account, region)) = arn.and_then(place) {
            d.push_str(&format!(" in account `{account}`, `{region}`"));
        }
        d.push('\n');
    }
    d.push_str(&format!(
        "*When:* {}\n",
        str_of(doc, "occurred_at").unwrap_or("-")
    ));
    for (label, key) in [
        ("Deadline", "deadline"),
        ("Trigger", "trigger"),
        ("Ticket", "ticket"),
        ("Reason", "reason"),
    ] {
        if let Some(v) = str_of(doc, key) {
            d.push_str(&format!("*{label}:* {v}\n"));
        }
    }
    if let Some(e) = str_of(doc, "error") {
        d.push_str(&format!("*Error:* `{}`\n", clip(e, 1000).replace('`', "'")));
    }
    d.push_str(&format!("*Done already:* {}\n", done(kind, doc)));
    let mut next: Vec<String> = doc
        .get("runbook")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    next.extend(commands(doc).into_iter().map(|c| format!("`{c}`")));
    let mut keywords = vec![severity.to_string(), kind.to_string()];
    if observe {
        keywords.push("observe".into());
    }
    if let Some((account, region)) = arn.and_then(place) {
        keywords.push(account.to_string());
        keywords.push(region.to_string());
    }
    json!({
        "version": "1.0",
        "source": "custom",
        "id": str_of(doc, "dedupe_key"),
        "content": {
            "textType": "client-markdown",
            "title": format!("{icon} {}[{severity}] {summary}{}", if observe { "[observe] " } else { "" }, name.map(|n| format!(": {n}")).unwrap_or_default()),
            "description": clip(&d, 4000),
            "nextSteps": next,
            "keywords": keywords,
        },
        "metadata": {
            "threadId": arn.or(name).unwrap_or(kind),
            "summary": subject(severity, kind, name, observe),
            "eventType": kind,
            "relatedResources": arn.into_iter().collect::<Vec<_>>(),
            "additionalContext": {
                "dedupe_key": str_of(doc, "dedupe_key"),
                "attempt": doc.get("details").and_then(|d| d.get("attempt")),
            },
        },
    })
}

/// The `MessageStructure = "json"` message: one body per protocol.
pub fn structured(doc: &Value) -> String {
    let machine = doc.to_string();
    json!({
        "default": machine,
        "sqs": machine,
        "lambda": machine,
        "http": machine,
        "https": machine,
        "email-json": machine,
        "email": email(doc),
        "sms": sms(doc),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{Alert, AlertKind};
    use chrono::TimeZone;

    fn sample(kind: AlertKind) -> Alert {
        let t = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap();
        let mut a = Alert::new(kind, Some("prod/payments/db"), t);
        a.secret_arn = Some(
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/payments/db-AbCdEf".into(),
        );
        a.trigger = Some("manual".into());
        a.ticket = Some("INC-4242".into());
        a.reason = Some("key found in a log".into());
        if matches!(kind, AlertKind::RotationFailed | AlertKind::RotationStuck) {
            a.error = Some("the rotation function failed during the setSecret step (RotationFailed event e-1: Error when executing lambda arn:aws:lambda:eu-west-1:111122223333:function:rotate during setSecret step)".into());
        }
        if matches!(
            kind,
            AlertKind::DepartureSlaAtRisk | AlertKind::DepartureSlaMissed
        ) {
            a.deadline = Some(t + chrono::Duration::hours(20));
        }
        a.details = json!({ "attempt": "a1b2c3" });
        if kind == AlertKind::ObserveSummary {
            // Only ever sent in observe mode, about the fleet rather than one secret.
            a = Alert::new(kind, None, t);
            a.mode = crate::config::Mode::Observe;
            a.reason = Some("2 rotation(s) would have been sent from 2026-12-05T00:00:00Z to 2026-12-06T00:00:00Z, 1 would have failed, 0 would have been stuck; 3 trigger(s) wait for enforce mode".into());
            a.details = json!({
                "from": "2026-12-05T00:00:00Z",
                "to": "2026-12-06T00:00:00Z",
                "would_rotate": 2,
                "would_fail": 1,
                "would_stick": 0,
                "queued_for_enforce": 3,
                "secrets": [
                    "prod/payments/db: would rotate (departure: alice left the team)",
                    "prod/orders/db: would rotate (scheduled: scheduled window 2026-12-05 02:00 .. 2026-12-05 06:00)",
                    "prod/legacy/api-key: would fail (scheduled: scheduled window 2026-12-05 02:00 .. 2026-12-05 06:00): rotation is not configured for this secret",
                ],
                "more": 0,
                "see": "rotationd status",
            });
            a.dedupe_key = "observe_summary:2026-12-05".into();
        }
        a
    }

    /// The longest alert rotationd writes: a drift notice naming 50 secrets with long names.
    fn longest() -> Alert {
        let t = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap();
        let mut a = Alert::new(AlertKind::NativeScheduleDrift, None, t);
        let long = "x".repeat(480);
        a.details = json!({
            "count": 5000,
            "secrets": (0..50).map(|i| json!({
                "secret": format!("prod/team-{i:02}/{long}"),
                "native": "rate(30 days)",
                "expected": "cron(0 2 1 1,4,7,10 ? *) for 4h",
            })).collect::<Vec<_>>(),
            "more": 4950,
        });
        a.error = Some("e".repeat(4096));
        a
    }

    /// Golden files: `tests/fixtures/alerts/KIND.{subject,email,sms}.txt`,
    /// `KIND.chat.json` and `KIND.machine.json` (the `rotationd.alert.v1` document as sent). `UPDATE_GOLDEN=1 cargo test --lib alerts::render` rewrites them.
    #[test]
    fn every_kind_renders_as_its_golden_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alerts");
        let update = std::env::var_os("UPDATE_GOLDEN").is_some();
        let mut mismatches = Vec::new();
        for &kind in AlertKind::ALL {
            let doc = sample(kind).message();
            let bodies: Value = serde_json::from_str(&structured(&doc)).unwrap();
            let renderings = [
                // The machine contract (`default`, `sqs`, `lambda`, `http`, `https`), byte
                // for byte as published.
                (
                    "machine.json",
                    bodies["default"].as_str().unwrap().to_owned() + "\n",
                ),
                ("subject.txt", sample(kind).subject() + "\n"),
                ("email.txt", email(&doc)),
                ("sms.txt", sms(&doc) + "\n"),
                (
                    "chat.json",
                    serde_json::to_string_pretty(&chat(&doc)).unwrap() + "\n",
                ),
            ];
            for (ext, got) in renderings {
                let path = dir.join(format!("{}.{ext}", kind.as_str()));
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &got).unwrap();
                    continue;
                }
                let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!(
                        "{}: {e}; run UPDATE_GOLDEN=1 cargo test --lib alerts::render",
                        path.display()
                    )
                });
                if want != got {
                    mismatches.push(format!(
                        "{}:\n--- want\n{want}\n--- got\n{got}",
                        path.display()
                    ));
                }
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    /// docs/alerts.md shows a P1 email and a P1 chat notification: they are the golden
    /// files, so the manual cannot drift from what Security receives.
    #[test]
    fn the_examples_in_the_alerts_doc_are_the_golden_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/alerts.md")).unwrap();
        let block = |heading: &str, fence: &str| -> String {
            let after = &doc[doc.find(heading).unwrap_or_else(|| panic!("{heading}"))..];
            let start = after.find(fence).unwrap() + fence.len() + 1;
            let len = after[start..].find("\n```").unwrap() + 1;
            after[start..start + len].to_owned()
        };
        let golden = |name: &str| {
            std::fs::read_to_string(root.join("tests/fixtures/alerts").join(name)).unwrap()
        };
        assert_eq!(
            block("## Example: the email of a P1", "```text"),
            golden("rotation_failed.email.txt")
        );
        assert_eq!(
            block("## Example: the chat notification of a P1", "```json"),
            golden("breach_suspected.chat.json")
        );
    }

    #[test]
    fn subjects_start_with_severity_and_kind_and_fit_sns() {
        let a = sample(AlertKind::RotationFailed);
        assert_eq!(a.subject(), "[P1] rotation_failed prod/payments/db");
        let long = Alert::new(
            AlertKind::DependentsUnhealthy,
            Some(&"é".repeat(200)),
            chrono::Utc::now(),
        );
        let s = long.subject();
        assert!(s.len() < 100 && s.len() <= SUBJECT_MAX, "{}", s.len());
        assert!(s.starts_with("[P1] dependents_unhealthy "));
        assert!(s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()));
    }

    #[test]
    fn sms_fits_in_140_characters_whatever_the_name() {
        for &kind in AlertKind::ALL {
            let mut a = sample(kind);
            a.secret = Some(format!("prod/{}", "very-long-name/".repeat(20)));
            let s = sms(&a.message());
            assert!(s.len() <= SMS_MAX, "{kind:?}: {} chars: {s}", s.len());
            assert!(s.starts_with(&format!(
                "rotationd {}[{}] {}",
                if a.mode.is_observe() {
                    "[observe] "
                } else {
                    ""
                },
                kind.severity().as_str(),
                kind.as_str()
            )));
            assert!(s.ends_with(" - see email"), "{s}");
        }
    }

    #[test]
    fn the_longest_alert_fits_every_sns_limit() {
        let a = longest();
        let doc = a.message();
        let message = structured(&doc);
        assert!(message.len() <= MESSAGE_MAX, "{} bytes", message.len());
        assert!(a.subject().len() <= SUBJECT_MAX);
        assert!(sms(&doc).len() <= SMS_MAX);
        let chat = chat(&doc).to_string();
        assert!(chat.len() <= MESSAGE_MAX, "{} bytes", chat.len());
        // The email names the secrets it lists and says how many more there are.
        let email = email(&doc);
        assert!(email.contains("Secrets (50):"), "{email}");
        assert!(email.contains("... and 4950 more"));
    }

    #[test]
    fn machines_get_the_unchanged_document() {
        let doc = sample(AlertKind::RotationFailed).message();
        let m: Value = serde_json::from_str(&structured(&doc)).unwrap();
        for key in ["default", "sqs", "lambda", "http", "https", "email-json"] {
            assert_eq!(m[key].as_str().unwrap(), doc.to_string(), "{key}");
        }
        assert!(m["email"].as_str().unwrap().contains("What to do:"));
    }

    #[test]
    fn the_email_numbers_the_runbook_and_gives_the_commands() {
        let doc = sample(AlertKind::DependentsUnhealthy).message();
        let e = email(&doc);
        assert!(e.contains("Account:  111122223333"), "{e}");
        assert!(e.contains("Region:   eu-west-1"));
        assert!(e.contains("  1. "));
        assert!(e.contains("$ rotationd status --secret prod/payments/db"));
        assert!(e.contains("$ rotationd rollback --secret prod/payments/db"));
        assert!(e.contains("$ aws secretsmanager describe-secret --secret-id arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/payments/db-AbCdEf"));
        assert!(e.trim_end().ends_with("machines read the JSON body)."));
        assert!(e.contains("attempt:    a1b2c3"));
    }

    #[test]
    fn an_observe_mode_alert_says_so_in_every_rendering() {
        for &kind in AlertKind::ALL {
            let mut a = sample(kind);
            a.mode = crate::config::Mode::Observe;
            let doc = a.message();
            assert!(a.subject().starts_with("[observe] ["), "{kind:?}");
            assert!(sms(&doc).starts_with("rotationd [observe] ["), "{kind:?}");
            let e = email(&doc);
            assert!(e.contains("Mode:     observe"), "{kind:?}: {e}");
            let c = chat(&doc);
            assert!(
                c["content"]["title"]
                    .as_str()
                    .unwrap()
                    .contains("[observe] [")
            );
            assert!(
                c["content"]["description"]
                    .as_str()
                    .unwrap()
                    .contains("*Mode:* observe")
            );
            assert!(
                c["content"]["keywords"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("observe"))
            );
            if kind != AlertKind::ObserveSummary {
                // It never claims what it did not do.
                assert!(
                    e.contains("Nothing in Secrets Manager: rotationd is in observe mode"),
                    "{kind:?}"
                );
            }
            // The enforce rendering has none of it.
            a.mode = crate::config::Mode::Enforce;
            let doc = a.message();
            if kind != AlertKind::ObserveSummary {
                assert!(!email(&doc).contains("observe mode"), "{kind:?}");
            }
            assert!(!a.subject().contains("[observe]"));
        }
    }

    #[test]
    fn chat_follows_the_custom_notification_schema() {
        let c = chat(&sample(AlertKind::BreachSuspected).message());
        assert_eq!(c["version"], "1.0");
        assert_eq!(c["source"], "custom");
        assert_eq!(c["content"]["textType"], "client-markdown");
        assert!(c["content"]["title"].as_str().unwrap().contains("[P1]"));
        assert!(!c["content"]["nextSteps"].as_array().unwrap().is_empty());
        assert_eq!(c["content"]["keywords"][0], "P1");
        assert_eq!(c["metadata"]["eventType"], "breach_suspected");
    }
}
