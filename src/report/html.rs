//! The report as one self-contained HTML file: the style is inline, there is no script, no
//! font, no image and no link to anything outside the file, so it opens offline in any
//! browser and can be attached to an audit as it is.
//!
//! Layout: a summary table with one row per secret (`tr.secret`, `data-secret`) and its
//! compliance bar (`div.bar` holding `span.c`, `span.n`, `span.u` whose widths are the
//! days' shares, `data-days` their counts), then one section per secret (policy,
//! rotations, departures, exceptions), the fleet's exceptions, and the audit chain.

use chrono::{DateTime, Utc};

use super::{Days, Report};

/// Text as HTML: `& < > " '` escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn t(d: &DateTime<Utc>) -> String {
    d.format(crate::clock::TIME_FORMAT).to_string()
}

fn ot(d: &Option<DateTime<Utc>>) -> String {
    d.as_ref().map_or("-".into(), t)
}

/// A day count's share of `total`, in percent with two decimals (the bar's widths).
pub fn share(days: u32, total: u32) -> String {
    if total == 0 {
        return "0.00".into();
    }
    format!("{:.2}", f64::from(days) * 100.0 / f64::from(total))
}

/// The compliance bar of one secret.
fn bar(d: &Days) -> String {
    let total = d.total();
    let mut out = format!("<div class=\"bar\" data-total=\"{total}\">");
    for (class, n, what) in [
        ("c", d.compliant, "compliant"),
        ("n", d.non_compliant, "non-compliant"),
        ("u", d.unknown, "unknown"),
    ] {
        out.push_str(&format!(
            "<span class=\"{class}\" data-days=\"{n}\" style=\"width:{}%\" title=\"{n} day(s) {what}\"></span>",
            share(n, total)
        ));
    }
    out.push_str("</div>");
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}\
.bar{display:flex;width:240px;height:14px;border:1px solid #888;background:#eee}\
.bar span{display:block;height:100%}\
.c{background:#2e8b57}.n{background:#c0392b}.u{background:#bbb}\
.ok{color:#2e8b57}.bad{color:#c0392b;font-weight:bold}\
code{font-family:monospace}";

/// The whole file.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>rotationd report {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&r.period.label)
    ));
    h.push_str(&format!(
        "<h1>Rotation compliance report {}</h1>\n<p>Period <b>{}</b> to <b>{}</b> (counted to {}), generated {} by rotationd ({} mode). <code>max_age</code> {}. A day is non-compliant when the credential in force was at some moment older than <code>max_age</code>, compliant when not and its age is known, unknown before the first recorded rotation.</p>\n",
        esc(&r.period.label),
        t(&r.period.from),
        t(&r.period.to),
        t(&r.period.evaluated_to),
        t(&r.generated_at),
        r.mode,
        esc(&r.max_age),
    ));
    h.push_str("<h2>Secrets</h2>\n<table id=\"summary\">\n<thead><tr><th>Secret</th><th>Schedule</th><th>Rotations</th><th>Compliant days</th><th>Non-compliant days</th><th>Unknown days</th><th>Compliance</th><th>Departures (SLA missed)</th><th>Exceptions</th></tr></thead>\n<tbody>\n");
    for s in &r.secrets {
        let missed = s.departures.iter().filter(|d| d.sla == "missed").count();
        h.push_str(&format!(
            "<tr class=\"secret\" data-secret=\"{}\"><td><a href=\"#s-{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"days-c\">{}</td><td class=\"days-n\">{}</td><td class=\"days-u\">{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>\n",
            esc(&s.secret),
            anchor(&s.secret),
            esc(&s.secret),
            esc(&s.policy.schedule),
            s.rotations.len(),
            s.days.compliant,
            s.days.non_compliant,
            s.days.unknown,
            bar(&s.days),
            s.departures.len(),
            missed,
            s.exceptions.len(),
        ));
    }
    h.push_str("</tbody>\n</table>\n");
    for s in &r.secrets {
        h.push_str(&format!(
            "<section class=\"detail\" id=\"s-{}\">\n<h2>{}</h2>\n",
            anchor(&s.secret),
            esc(&s.secret)
        ));
        let p = &s.policy;
        h.push_str(&format!(
            "<p>Policy: {}; schedule <code>{}</code>, window {}, max_age {}, strategy {}, change ticket {}, dependents {}, auto_rollback {}. Last rotation: {}.</p>\n",
            esc(&p.source),
            esc(&p.schedule),
            esc(&p.window),
            esc(&p.max_age),
            p.strategy.unwrap_or("unknown"),
            esc(p.change_ticket.as_deref().unwrap_or("-")),
            if p.dependents.is_empty() {
                "none".to_string()
            } else {
                esc(&p.dependents.join(", "))
            },
            p.auto_rollback,
            ot(&s.last_rotation),
        ));
        table(
            &mut h,
            "rotations",
            "Rotations",
            &[
                "When",
                "Trigger",
                "Ticket",
                "Requester",
                "Approver",
                "Validated",
                "Versions",
            ],
            s.rotations
                .iter()
                .map(|x| {
                    vec![
                        t(&x.at),
                        x.trigger.to_string(),
                        x.ticket.clone().unwrap_or("-".into()),
                        x.requester.clone(),
                        x.approver.clone().unwrap_or("-".into()),
                        x.validated.clone(),
                        format!(
                            "{} → {}",
                            x.previous_version.as_deref().unwrap_or("?"),
                            x.new_version.as_deref().unwrap_or("?")
                        ),
                    ]
                })
                .collect(),
        );
        table(
            &mut h,
            "departures",
            "Departures",
            &["When", "Reason", "Deadline", "Rotated", "SLA"],
            s.departures
                .iter()
                .map(|d| {
                    vec![
                        t(&d.at),
                        d.reason.clone(),
                        ot(&d.deadline),
                        ot(&d.rotated_at),
                        d.sla.to_string(),
                    ]
                })
                .collect(),
        );
        table(
            &mut h,
            "exceptions",
            "Exceptions",
            &["When", "Kind", "Actor", "Ticket", "Detail"],
            s.exceptions
                .iter()
                .map(|e| {
                    vec![
                        t(&e.at),
                        e.kind.clone(),
                        e.actor.clone(),
                        e.ticket.clone().unwrap_or("-".into()),
                        e.detail.clone(),
                    ]
                })
                .collect(),
        );
        h.push_str("</section>\n");
    }
    h.push_str("<section id=\"fleet\">\n<h2>Fleet</h2>\n");
    table(
        &mut h,
        "fleet-exceptions",
        "Exceptions about no one secret",
        &["When", "Kind", "Actor", "Detail"],
        r.fleet_exceptions
            .iter()
            .map(|e| vec![t(&e.at), e.kind.clone(), e.actor.clone(), e.detail.clone()])
            .collect(),
    );
    h.push_str("</section>\n");
    let c = &r.audit_chain;
    h.push_str(&format!(
        "<section id=\"audit-chain\">\n<h2>Audit chain</h2>\n<p class=\"{}\" id=\"chain-result\">{}</p>\n<p>Head: entry <code id=\"head-id\">{}</code>, hash <code id=\"head-hash\">{}</code>; {} entries checked{}.</p>\n</section>\n",
        if c.intact { "ok" } else { "bad" },
        if c.intact {
            "Verified: the hash chain is intact.".to_string()
        } else {
            format!(
                "BROKEN at entry {}: {}.",
                c.broken_at.map_or("?".into(), |b| b.to_string()),
                esc(c.fault.as_deref().unwrap_or("unknown fault"))
            )
        },
        c.head_id.map_or("-".into(), |i| i.to_string()),
        esc(c.head_hash.as_deref().unwrap_or("-")),
        c.checked,
        c.from_checkpoint
            .map_or(String::new(), |k| format!(" (from the pruning checkpoint at entry {k})")),
    ));
    h.push_str("</body>\n</html>\n");
    h
}

/// An id for the secret's section: its text with anything but `[A-Za-z0-9_-]` as `-`.
fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A `<table class="CLASS">` with a caption, or "none" when there are no rows.
fn table(h: &mut String, class: &str, caption: &str, head: &[&str], rows: Vec<Vec<String>>) {
    h.push_str(&format!("<h3>{}</h3>\n", esc(caption)));
    if rows.is_empty() {
        h.push_str(&format!("<p class=\"{class} none\">None.</p>\n"));
        return;
    }
    h.push_str(&format!("<table class=\"{class}\">\n<thead><tr>"));
    for c in head {
        h.push_str(&format!("<th>{}</th>", esc(c)));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        h.push_str("<tr>");
        for cell in r {
            h.push_str(&format!("<td>{}</td>", esc(&cell)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
}
