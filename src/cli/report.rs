//! `rotationd report --period P [--format json|csv|html] [--output FILE]`: evidence for
//! auditors. Like `rotationd audit`, it reads the state database without writing to it
//! (no AWS call, no daemon needed; with `[state] backend = "dynamodb"` a replica of the
//! shared log) and the configuration; [`crate::report`] builds the report from those rows
//! on the clock, and the audit chain is verified as `audit --verify` does.

use std::io::Write;
use std::path::Path;

use super::audit::open_state;
use super::{CliError, load_config};
use crate::report::{self, Chain, Input, Period};
use crate::store::{AuditFilter, Store};

/// The report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
    Html,
}

pub fn report(
    config: &Path,
    period: &str,
    format: ReportFormat,
    output: Option<&Path>,
) -> Result<(), CliError> {
    let cfg = load_config(config)?;
    let p = report::parse_period(period).map_err(CliError::Invalid)?;
    let (store, _runtime) = open_state(&cfg)?;
    let now = crate::clock::Clock::from_env().now();
    let input = read(store.as_ref(), &cfg, p, period.trim(), now)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let r = report::build(&input);
    let text = match format {
        ReportFormat::Json => serde_json::to_string_pretty(&r).unwrap_or_default() + "\n",
        ReportFormat::Csv => report::csv(&r),
        ReportFormat::Html => report::html::render(&r),
    };
    let written = match output {
        Some(path) => std::fs::write(path, &text).map_err(|e| {
            CliError::Failed(format!(
                "cannot write the report to {}: {e}; check the directory exists and is writable",
                path.display()
            ))
        }),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(CliError::Failed(format!("cannot write the report: {e}")))
                }
                _ => Ok(()),
            }
        }
    };
    written?;
    if !r.audit_chain.intact {
        // The report is written (it says so too), and the exit status tells a script.
        return Err(CliError::Failed(format!(
            "the audit chain is broken at entry {}: {}; the report shows it, keep a copy of the state database for investigation",
            r.audit_chain.broken_at.unwrap_or_default(),
            r.audit_chain.fault.as_deref().unwrap_or("unknown fault")
        )));
    }
    Ok(())
}

/// The rows the report is built from; an empty history when there is no database yet.
fn read<'a>(
    store: Option<&Store>,
    cfg: &'a crate::config::Config,
    period: Period,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Input<'a>, crate::store::StoreError> {
    let mut input = Input {
        cfg,
        period,
        label: label.to_string(),
        now,
        attempts: Vec::new(),
        triggers: Vec::new(),
        requests: Vec::new(),
        audit: Vec::new(),
        chain: Chain {
            head_id: None,
            head_hash: None,
            checked: 0,
            intact: true,
            broken_at: None,
            fault: None,
            from_checkpoint: None,
        },
    };
    let Some(store) = store else {
        return Ok(input);
    };
    let db = store.db();
    input.attempts = db.attempts_started_before(period.to)?;
    input.triggers = db.triggers_created_before(period.to)?;
    input.requests = db.requests_with_triggers_before(period.to)?;
    // One pass over the log: the period's entries, and the rollbacks before its end (they
    // decide which credential was in force).
    let mut audit = Vec::new();
    db.audit_log::<crate::store::StoreError>(&AuditFilter::default(), |e| {
        let inside = period.from <= e.at && e.at < period.to;
        if inside || (e.at < period.to && e.action == "rollback" && e.outcome == "ok") {
            audit.push(e);
        }
        Ok(())
    })?;
    input.audit = audit;
    let v = db.verify_audit()?;
    let head = db.audit_head()?;
    input.chain = Chain {
        head_id: head.as_ref().map(|h| h.0),
        head_hash: head.map(|h| h.1),
        checked: v.checked,
        intact: v.broken.is_none(),
        broken_at: v.broken.as_ref().map(|b| b.id),
        fault: v.broken.map(|b| b.fault.as_str().to_string()),
        from_checkpoint: v.from_checkpoint,
    };
    Ok(input)
}
