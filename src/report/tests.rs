//! The report on a fixed clock: the period syntax, the compliance days, the records of one
//! history, and the three renderings parsed back (the HTML with an HTML parser).

use super::*;
use crate::store::{RequestState, Verdict};
use chrono::TimeZone;

fn at(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
}

#[test]
fn periods_are_quarters_months_days_or_inclusive_ranges() {
    let p = parse_period("2026-Q4").unwrap();
    assert_eq!(
        (p.from, p.to),
        (
            at(10, 1, 0),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        )
    );
    let p = parse_period("2026-q1").unwrap();
    assert_eq!(
        (p.from, p.to),
        (
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            at(4, 1, 0)
        )
    );
    let p = parse_period("2026-11").unwrap();
    assert_eq!((p.from, p.to), (at(11, 1, 0), at(12, 1, 0)));
    let p = parse_period("2026-12").unwrap();
    assert_eq!(p.to, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    let p = parse_period("2026-11-05").unwrap();
    assert_eq!((p.from, p.to), (at(11, 5, 0), at(11, 6, 0)));
    let p = parse_period("2026-10-01..2026-12-31").unwrap();
    assert_eq!(
        (p.from, p.to),
        (
            at(10, 1, 0),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        )
    );
    for bad in [
        "2026-Q5",
        "2026-13",
        "Q4",
        "2026-11-31",
        "",
        "2026-12-01..2026-11-01",
    ] {
        let e = parse_period(bad).unwrap_err();
        assert!(e.starts_with("invalid --period"), "{bad}: {e}");
    }
}

#[test]
fn a_day_is_non_compliant_when_the_credential_was_past_max_age_at_some_moment() {
    let ninety_three = Duration::days(93);
    // Rotated on 1 August, then on 10 November at noon: past 93 days from 2 November
    // 00:00 on, until the rotation.
    let d = daily(
        &[at(8, 1, 0), at(11, 10, 12)],
        &[],
        ninety_three,
        at(11, 1, 0),
        at(12, 1, 0),
    );
    assert_eq!(d.len(), 30);
    assert_eq!(&d[..1], "c", "1 November: 92 days old, compliant");
    assert_eq!(&d[1..10], "nnnnnnnnn", "2 to 10 November: past 93 days");
    assert!(d[10..].chars().all(|c| c == 'c'), "{d}");
    assert_eq!(
        count(&d),
        Days {
            compliant: 21,
            non_compliant: 9,
            unknown: 0
        }
    );
    // Never rotated before 20 November: unknown until then.
    let d = daily(
        &[at(11, 20, 9)],
        &[],
        ninety_three,
        at(11, 1, 0),
        at(12, 1, 0),
    );
    assert_eq!(d, format!("{}{}", "u".repeat(19), "c".repeat(11)));
    // A rollback puts the older credential back in force: rotated 1 October and 15
    // November, rolled back on 16 November, max_age 30 days.
    let d = daily(
        &[at(10, 1, 0), at(11, 15, 0)],
        &[at(11, 16, 0)],
        Duration::days(30),
        at(11, 1, 0),
        at(12, 1, 0),
    );
    assert_eq!(d, format!("{}c{}", "n".repeat(14), "n".repeat(15)));
    // Counting stops at `until` (now): a partial last day counts.
    let d = daily(
        &[at(11, 1, 0)],
        &[],
        ninety_three,
        at(11, 1, 0),
        at(11, 3, 12),
    );
    assert_eq!(d, "ccc");
}

const CONFIG: &str = r#"
[aws]
region = "eu-west-1"
[alerts]
security_topic_arn = "arn:aws:sns:eu-west-1:111122223333:security"
[policy]
max_age = "30d"
default_schedule = "0 2 1 * *"
default_window = "4h"
[[dependent]]
name = "api"
alarms = ["api-5xx"]
[[secret]]
id = "prod/a"
strategy = "alternating-users"
change_ticket = "CHG-1"
dependents = ["api"]
[[secret]]
id = "prod/b"
strategy = "single-user"
change_ticket = "CHG-2"
[[selector]]
name_prefix = "team/"
strategy = "single-user"
change_ticket = "CHG-3"
"#;

fn cfg() -> Config {
    Config::from_source(std::path::Path::new("t.toml"), CONFIG)
        .unwrap()
        .0
}

fn attempt(id: &str, secret: &str, kind: TriggerKind, trigger: Option<i64>) -> Attempt {
    Attempt {
        id: id.into(),
        trigger_id: trigger,
        secret: secret.into(),
        secret_arn: None,
        trigger_kind: kind,
        ticket: Some("CHG-1".into()),
        state: AttemptState::Succeeded,
        client_request_token: format!("rotationd-{id}"),
        previous_version: Some("v-old".into()),
        new_version: Some("v-new".into()),
        started_at: at(11, 1, 0),
        updated_at: at(11, 1, 0),
        finished_at: Some(at(11, 1, 0)),
        error: None,
        rotate_calls: 1,
        validation: None,
        watch_until: None,
        watch_plan: None,
        watch_evidence: None,
        stage_times: None,
        function_error: None,
        verdict: None,
    }
}

fn ended(mut a: Attempt, when: DateTime<Utc>, state: AttemptState) -> Attempt {
    a.started_at = when;
    a.updated_at = when;
    a.finished_at = Some(when);
    a.state = state;
    a
}

fn trigger(id: i64, secret: &str, kind: TriggerKind, actor: &str, when: DateTime<Utc>) -> Trigger {
    Trigger {
        id,
        secret: secret.into(),
        kind,
        dedupe_key: Some(format!("k{id}")),
        ticket: None,
        reason: format!("{} reason", kind.as_str()),
        actor: actor.into(),
        created_at: when,
        not_before: None,
        deadline: None,
        status: TriggerStatus::Done,
        attempt_id: None,
        updated_at: when,
        observed_by: None,
    }
}

fn entry(
    id: i64,
    when: DateTime<Utc>,
    secret: Option<&str>,
    action: &str,
    outcome: &str,
) -> AuditEntry {
    AuditEntry {
        id,
        at: when,
        actor: "rotationd".into(),
        action: action.into(),
        secret: secret.map(str::to_string),
        ticket: None,
        reason: Some(format!("{action} {outcome}")),
        outcome: outcome.into(),
        detail: None,
        prev_hash: None,
        hash: None,
    }
}

/// November 2026 for prod/a (a planned rotation watched and validated, a request approved by
/// an L3, a departure rotated in time and one missed, a failure, a hold lifted by an
/// operator) and prod/b (never rotated), plus a secret a prefix selector matched, a storm
/// pause and a reload into enforce mode.
fn input(cfg: &Config) -> Input<'_> {
    let mut planned = attempt("a1", "prod/a", TriggerKind::Scheduled, Some(1));
    planned.validation = Some(Validation::Validated);
    planned = ended(planned, at(11, 2, 3), AttemptState::Succeeded);
    let requested = ended(
        attempt("a2", "prod/a", TriggerKind::Manual, Some(2)),
        at(11, 20, 10),
        AttemptState::Succeeded,
    );
    let departed = ended(
        attempt("a3", "prod/a", TriggerKind::Departure, Some(3)),
        at(11, 21, 1),
        AttemptState::Succeeded,
    );
    let mut failed = ended(
        attempt("a4", "prod/a", TriggerKind::Departure, Some(4)),
        at(11, 25, 5),
        AttemptState::Failed,
    );
    failed.error = Some("the rotation function failed during the setSecret step".into());
    let mut observed = ended(
        attempt("a5", "team/x", TriggerKind::Scheduled, Some(5)),
        at(11, 26, 2),
        AttemptState::Observed,
    );
    observed.verdict = Some(Verdict::WouldRotate);
    // Before the period: the credential in force on 1 November (October 15th, 30 days
    // max: past it from 14 November 00:00 to... the next rotation 20 November).
    let before = ended(
        attempt("a0", "prod/a", TriggerKind::Scheduled, None),
        at(10, 15, 0),
        AttemptState::Succeeded,
    );
    let mut t1 = trigger(
        1,
        "prod/a",
        TriggerKind::Scheduled,
        "rotationd",
        at(11, 2, 2),
    );
    t1.attempt_id = Some("a1".into());
    t1.ticket = Some("CHG-1".into());
    let mut t2 = trigger(
        2,
        "prod/a",
        TriggerKind::Manual,
        "request:bob",
        at(11, 20, 9),
    );
    t2.attempt_id = Some("a2".into());
    let mut t3 = trigger(
        3,
        "prod/a",
        TriggerKind::Departure,
        "rotationd",
        at(11, 21, 0),
    );
    t3.attempt_id = Some("a3".into());
    t3.deadline = Some(at(11, 22, 0));
    let mut t4 = trigger(
        4,
        "prod/a",
        TriggerKind::Departure,
        "rotationd",
        at(11, 24, 0),
    );
    t4.attempt_id = Some("a4".into());
    t4.deadline = Some(at(11, 25, 0));
    t4.status = TriggerStatus::Failed;
    let mut t5 = trigger(
        5,
        "team/x",
        TriggerKind::Scheduled,
        "rotationd",
        at(11, 26, 1),
    );
    t5.status = TriggerStatus::Pending;
    t5.observed_by = Some("a5".into());
    let request = Request {
        id: "r-1".into(),
        kind: "rotate".into(),
        secret: "prod/a".into(),
        ticket: Some("INC-7".into()),
        reason: "suspicious login".into(),
        requester: "bob".into(),
        level: "L2".into(),
        claimed_level: None,
        emergency: false,
        state: RequestState::Completed,
        created_at: at(11, 20, 8),
        expires_at: None,
        decided_by: Some("carol".into()),
        decided_at: Some(at(11, 20, 9)),
        comment: None,
        trigger_id: Some(2),
        reminded_at: None,
        updated_at: at(11, 20, 10),
    };
    let mut resumed = entry(10, at(11, 25, 9), Some("prod/a"), "hold", "resumed");
    resumed.actor = "cli:dave".into();
    resumed.ticket = Some("INC-9".into());
    let mut reload = entry(12, at(11, 28, 0), None, "config", "ok");
    reload.detail = Some(serde_json::json!({ "mode": "enforce", "mode_changed_from": "observe" }));
    Input {
        cfg,
        period: parse_period("2026-11").unwrap(),
        label: "2026-11".into(),
        now: at(12, 10, 0),
        attempts: vec![before, planned, requested, departed, failed, observed],
        triggers: vec![t1, t2, t3, t4, t5],
        requests: vec![request],
        audit: vec![
            entry(9, at(11, 25, 5), Some("prod/a"), "hold", "held"),
            resumed,
            entry(11, at(11, 27, 0), None, "storm_guard", "paused"),
            reload,
        ],
        chain: Chain {
            head_id: Some(12),
            head_hash: Some("ab".repeat(32)),
            checked: 12,
            intact: true,
            broken_at: None,
            fault: None,
            from_checkpoint: None,
        },
    }
}

#[test]
fn the_report_holds_each_secret_s_rotations_days_departures_and_exceptions() {
    let cfg = cfg();
    let r = build(&input(&cfg));
    let names: Vec<&str> = r.secrets.iter().map(|s| s.secret.as_str()).collect();
    assert_eq!(names, ["prod/a", "prod/b", "team/x"]);
    let a = &r.secrets[0];
    assert_eq!(a.policy.source, "[[secret]] prod/a");
    assert_eq!(a.policy.max_age, "30d");
    assert_eq!(a.policy.dependents, ["api"]);
    // Three rotations in November (the October one only decides the first days).
    let rot: Vec<(&str, &str, Option<&str>, &str)> = a
        .rotations
        .iter()
        .map(|x| {
            (
                x.trigger,
                x.requester.as_str(),
                x.approver.as_deref(),
                x.validated.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rot,
        [
            ("scheduled", "rotationd", None, "validated"),
            ("manual", "request:bob", Some("carol"), "not watched"),
            ("departure", "rotationd", None, "not watched"),
        ]
    );
    // 15 October + 30 days = 14 November: rotated 2 November, so compliant until 2
    // December; rotated again 20 and 21 November. All 30 days compliant.
    assert_eq!(
        a.days,
        Days {
            compliant: 30,
            non_compliant: 0,
            unknown: 0
        }
    );
    assert_eq!(a.last_rotation, Some(at(11, 21, 1)));
    let sla: Vec<&str> = a.departures.iter().map(|d| d.sla).collect();
    assert_eq!(sla, ["met", "missed"]);
    let kinds: Vec<&str> = a.exceptions.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["failed", "held", "hold_lifted"]);
    assert_eq!(a.exceptions[2].actor, "cli:dave");
    assert_eq!(a.exceptions[2].ticket.as_deref(), Some("INC-9"));
    // Never rotated: every day unknown.
    let b = &r.secrets[1];
    assert!(b.rotations.is_empty());
    assert_eq!(b.days.unknown, 30);
    assert_eq!(b.daily, "u".repeat(30));
    // Matched by a selector: its policy, and the observe-mode verdict as an exception.
    let x = &r.secrets[2];
    assert_eq!(x.policy.source, "[[selector]] selector:prefix:team/");
    assert_eq!(x.exceptions[0].kind, "observed");
    assert!(
        x.exceptions[0].detail.contains("would rotate"),
        "{:?}",
        x.exceptions[0]
    );
    let fleet: Vec<&str> = r.fleet_exceptions.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(fleet, ["storm_guard", "config"]);
    assert!(r.fleet_exceptions[1].detail.contains("(mode enforce)"));
    assert_eq!(r.period.evaluated_to, at(12, 1, 0));
    assert!(r.audit_chain.intact);
}

#[test]
fn days_after_now_are_not_counted() {
    let cfg = cfg();
    let mut i = input(&cfg);
    i.now = at(11, 10, 12);
    let r = build(&i);
    assert_eq!(r.period.evaluated_to, at(11, 10, 12));
    assert_eq!(r.secrets[0].days.total(), 10);
    assert_eq!(
        r.secrets[0].rotations.len(),
        3,
        "the rows of the period all count"
    );
}

#[test]
fn json_carries_every_part() {
    let cfg = cfg();
    let v = serde_json::to_value(build(&input(&cfg))).unwrap();
    assert_eq!(v["schema"], SCHEMA);
    assert_eq!(v["period"]["label"], "2026-11");
    assert_eq!(v["secrets"][0]["days"]["compliant"], 30);
    assert_eq!(v["secrets"][0]["rotations"][1]["approver"], "carol");
    assert_eq!(v["secrets"][0]["departures"][1]["sla"], "missed");
    assert_eq!(v["audit_chain"]["head_id"], 12);
    assert_eq!(v["audit_chain"]["intact"], true);
}

#[test]
fn csv_is_one_table_of_typed_records() {
    let cfg = cfg();
    let r = build(&input(&cfg));
    let text = csv(&r);
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], CSV_HEADER);
    let width = CSV_HEADER.split(',').count();
    let records: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(records.iter().filter(|r| **r == "secret").count(), 3);
    assert_eq!(records.iter().filter(|r| **r == "rotation").count(), 3);
    assert_eq!(records.iter().filter(|r| **r == "departure").count(), 2);
    assert_eq!(
        records.iter().filter(|r| **r == "fleet_exception").count(),
        2
    );
    assert_eq!(records.last(), Some(&"audit_chain"));
    // The secret row carries the days; no field breaks the columns (quoted commas aside).
    let a = lines[1];
    assert!(
        a.starts_with("secret,prod/a,2026-11-21T01:00:00Z,alternating-users,CHG-1,,,,,30,0,0,"),
        "{a}"
    );
    for l in &lines {
        let mut fields = 0;
        let mut quoted = false;
        for c in l.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields += 1,
                _ => {}
            }
        }
        assert_eq!(fields + 1, width, "{l}");
    }
}

#[test]
fn the_html_is_one_self_contained_file_with_a_bar_per_secret() {
    use scraper::{Html, Selector};
    let cfg = cfg();
    let mut i = input(&cfg);
    // Text that must be escaped, in a secret's exception.
    i.audit.push(entry(
        13,
        at(11, 29, 0),
        Some("prod/b"),
        "rotate",
        "window_missed",
    ));
    i.audit.last_mut().unwrap().reason = Some("<script>alert(1)</script> & \"quoted\"".into());
    let r = build(&i);
    let text = html::render(&r);
    let doc = Html::parse_document(&text);
    let sel = |s: &str| Selector::parse(s).unwrap();
    let rows: Vec<_> = doc.select(&sel("#summary tr.secret")).collect();
    assert_eq!(rows.len(), r.secrets.len());
    for (row, s) in rows.iter().zip(&r.secrets) {
        assert_eq!(row.value().attr("data-secret"), Some(s.secret.as_str()));
        let bar = row
            .select(&sel("div.bar"))
            .next()
            .expect("a bar per secret");
        assert_eq!(
            bar.value().attr("data-total"),
            Some(s.days.total().to_string().as_str())
        );
        for (class, n) in [
            ("c", s.days.compliant),
            ("n", s.days.non_compliant),
            ("u", s.days.unknown),
        ] {
            let span = bar.select(&sel(&format!("span.{class}"))).next().unwrap();
            assert_eq!(span.value().attr("data-days"), Some(n.to_string().as_str()));
            let width = span.value().attr("style").unwrap();
            let pct: f64 = width
                .trim_start_matches("width:")
                .trim_end_matches('%')
                .parse()
                .unwrap();
            let want = f64::from(n) * 100.0 / f64::from(s.days.total());
            assert!(
                (pct - want).abs() < 0.01,
                "{}: {class} {pct} vs {want}",
                s.secret
            );
        }
        let days = row
            .select(&sel("td.days-c"))
            .next()
            .unwrap()
            .text()
            .collect::<String>();
        assert_eq!(days, s.days.compliant.to_string());
    }
    // The prod/a bar: all compliant; prod/b: all unknown.
    let first = rows[0].select(&sel("span.c")).next().unwrap();
    assert_eq!(first.value().attr("style"), Some("width:100.00%"));
    // Nothing outside the file: no script, stylesheet link, image, frame, font or remote
    // URL; every link is to a section of the same page.
    for tag in [
        "script", "link", "img", "iframe", "object", "embed", "source", "video", "audio",
    ] {
        assert_eq!(doc.select(&sel(tag)).count(), 0, "<{tag}>");
    }
    let external: Vec<_> = doc
        .select(&sel("[src], [srcset], [action], [formaction]"))
        .map(|el| format!("{:?}", el.value()))
        .collect();
    assert!(external.is_empty(), "external references: {external:?}");
    for a in doc.select(&sel("[href]")) {
        assert!(
            a.value().attr("href").unwrap().starts_with('#'),
            "{:?}",
            a.value()
        );
    }
    let style: String = doc.select(&sel("style")).flat_map(|s| s.text()).collect();
    for bad in ["url(", "@import", "http", "@font-face"] {
        assert!(!style.contains(bad), "{bad} in the style");
    }
    // Escaped, not markup.
    assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;"));
    // Every secret has its section and the audit chain closes the file.
    assert_eq!(doc.select(&sel("section.detail")).count(), r.secrets.len());
    let head: String = doc
        .select(&sel("#head-hash"))
        .next()
        .unwrap()
        .text()
        .collect();
    assert_eq!(head, "ab".repeat(32));
    let result: String = doc
        .select(&sel("#chain-result"))
        .next()
        .unwrap()
        .text()
        .collect();
    assert!(result.starts_with("Verified"), "{result}");
}

#[test]
fn a_broken_chain_is_shown_as_broken() {
    let cfg = cfg();
    let mut i = input(&cfg);
    i.chain.intact = false;
    i.chain.broken_at = Some(7);
    i.chain.fault = Some("hash_mismatch".into());
    let text = html::render(&build(&i));
    let doc = scraper::Html::parse_document(&text);
    let sel = scraper::Selector::parse("#chain-result.bad").unwrap();
    let result: String = doc.select(&sel).next().unwrap().text().collect();
    assert_eq!(result, "BROKEN at entry 7: hash_mismatch.");
    assert!(csv(&build(&i)).contains("broken at entry 7: hash_mismatch"));
}
