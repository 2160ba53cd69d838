//! `rotationd report` on a real history: the real binary rotates on moto (two operator
//! rotations, a departure through the events queue, a failure on a secret without
//! rotation configured), then reports the month as JSON, CSV and HTML. The HTML is parsed
//! back; the audit chain's head is the one `audit --verify` prints; an edited audit row
//! makes the report say BROKEN and exit 1.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::config::{Body, secret};
use common::events::{add_events, count, iam_delete_user, queue_and_bus, send};
use common::moto;
use common::rotationd::{Env, stderr, terminate};

fn json(env: &Env, period: &str) -> serde_json::Value {
    let o = env.cli(&["report", "--period", period, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test]
async fn the_report_of_a_real_history_holds_its_rotations_departure_failure_and_chain() {
    let a = moto::unique_name("rep/a");
    let b = moto::unique_name("rep/b");
    let broken = moto::unique_name("rep/broken");
    let far = "0 3 1 1 *";
    let body = Body::new()
        .with(secret(&a).schedule(far).custodians(["pat"]))
        .with(secret(&b).schedule(far))
        .with(secret(&broken).schedule(far));
    let env = Env::new("report", &body.render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "report").await;
    add_events(&env, &queue_url, &bus, "");
    env.rotatable_secret(&a).await;
    env.rotatable_secret(&b).await;
    // No rotation configured: the preflight fails it, and the secret is held.
    env.sm
        .create_secret()
        .name(&broken)
        .secret_string("initial-test-value")
        .send()
        .await
        .unwrap();

    for (name, ticket) in [(&a, "INC-5001"), (&b, "INC-5002")] {
        let o = env.rotate_emergency(name, ticket, "report test");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = env.rotate_emergency(&broken, "INC-5003", "report test");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (mut daemon, log) = env.daemon_ready(&[]).await;
    send(
        &env,
        &queue_url,
        &iam_delete_user("pat", "7e90e000-0000-4000-8000-000000000001"),
    )
    .await;
    let done = env
        .eventually(Duration::from_secs(60), || {
            (count(&env, "SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' AND state = 'succeeded'") == 1).then_some(())
        })
        .await;
    assert_eq!(
        terminate(&mut daemon.0, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        done.is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let month = Utc::now().format("%Y-%m").to_string();
    let r = json(&env, &month);
    assert_eq!(r["schema"], "rotationd.report.v1");
    assert_eq!(r["period"]["label"], month.as_str());
    let secrets = r["secrets"].as_array().unwrap();
    let of = |name: &str| {
        secrets
            .iter()
            .find(|s| s["secret"] == name)
            .unwrap_or_else(|| panic!("{name} not in {r:#}"))
    };
    assert_eq!(secrets.len(), 3, "{r:#}");
    let ra = of(&a);
    let triggers: Vec<&str> = ra["rotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["manual", "departure"], "{ra:#}");
    assert_eq!(ra["rotations"][0]["ticket"], "INC-5001");
    assert!(
        ra["rotations"][0]["requester"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );
    assert_eq!(ra["rotations"][0]["validated"], "not watched");
    assert_eq!(ra["departures"][0]["sla"], "met", "{ra:#}");
    assert!(
        ra["departures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("pat")
    );
    assert_eq!(ra["policy"]["source"], format!("[[secret]] {a}"));
    // Rotated today: compliant from today on; the days of the month before are unknown
    // (rotationd had no record of them).
    let days = &ra["days"];
    assert_eq!(days["non_compliant"], 0);
    assert!(days["compliant"].as_u64().unwrap() >= 1, "{days}");
    assert_eq!(
        days["compliant"].as_u64().unwrap() + days["unknown"].as_u64().unwrap(),
        u64::from(Utc::now().format("%d").to_string().parse::<u32>().unwrap()),
        "one letter per day of the month so far: {ra:#}"
    );
    assert_eq!(of(&b)["rotations"].as_array().unwrap().len(), 1);
    let rb = of(&broken);
    assert!(rb["rotations"].as_array().unwrap().is_empty());
    let kinds: Vec<&str> = rb["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"failed") && kinds.contains(&"held"),
        "{rb:#}"
    );
    assert_eq!(rb["days"]["compliant"], 0);
    // The chain: intact, its head the one audit --verify prints.
    let v = env.cli(&["audit", "--verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let verify = String::from_utf8_lossy(&v.stdout).to_string();
    let head = r["audit_chain"]["head_hash"].as_str().unwrap();
    assert!(
        verify.trim_end().ends_with(&format!("last hash {head}")),
        "{verify} vs {head}"
    );
    assert_eq!(r["audit_chain"]["intact"], true);

    // CSV: the same records.
    let o = env.cli(&["report", "--period", &month, "--format", "csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = String::from_utf8(o.stdout).unwrap();
    let records: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(records.iter().filter(|r| **r == "secret").count(), 3);
    assert_eq!(records.iter().filter(|r| **r == "rotation").count(), 3);
    assert_eq!(records.iter().filter(|r| **r == "departure").count(), 1);
    assert_eq!(records.last(), Some(&"audit_chain"));

    // HTML to a file: one row and one bar per secret, nothing fetched from outside.
    let out = env.dir.path().join("report.html");
    let o = env.cli(&[
        "report",
        "--period",
        &month,
        "--format",
        "html",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let doc = scraper::Html::parse_document(&text);
    let sel = |s: &str| scraper::Selector::parse(s).unwrap();
    let rows: Vec<_> = doc.select(&sel("#summary tr.secret")).collect();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let bar = row.select(&sel("div.bar")).next().unwrap();
        let total: u32 = bar.value().attr("data-total").unwrap().parse().unwrap();
        let mut sum = 0.0;
        for span in bar.select(&sel("span")) {
            let days: u32 = span.value().attr("data-days").unwrap().parse().unwrap();
            let style = span.value().attr("style").unwrap();
            let pct: f64 = style[6..style.len() - 1].parse().unwrap();
            assert!((pct - f64::from(days) * 100.0 / f64::from(total)).abs() < 0.01);
            sum += pct;
        }
        assert!((sum - 100.0).abs() < 0.05, "{sum}");
    }
    assert_eq!(
        doc.select(&sel("script, link, img, iframe, [src]")).count(),
        0
    );
    assert!(
        doc.select(&sel("[href]"))
            .all(|a| a.value().attr("href").unwrap().starts_with('#'))
    );
    let head_html: String = doc
        .select(&sel("#head-hash"))
        .next()
        .unwrap()
        .text()
        .collect();
    assert_eq!(head_html, head);

    // A month with no history: every configured secret, every day unknown.
    let old = json(&env, "2020-02");
    assert_eq!(old["secrets"].as_array().unwrap().len(), 3);
    assert_eq!(old["secrets"][0]["days"]["unknown"], 29);
    assert!(
        old["secrets"][0]["rotations"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // An edited audit row: the report says so and exits 1.
    let conn = env.db();
    conn.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET reason = 'routine' WHERE id = 2",
    )
    .unwrap();
    drop(conn);
    let o = env.cli(&["report", "--period", &month, "--format", "html"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("audit chain is broken at entry 2"),
        "{}",
        stderr(&o)
    );
    let doc = scraper::Html::parse_document(&String::from_utf8(o.stdout).unwrap());
    let result: String = doc
        .select(&sel("#chain-result.bad"))
        .next()
        .unwrap()
        .text()
        .collect();
    assert!(result.starts_with("BROKEN at entry 2"), "{result}");
}
