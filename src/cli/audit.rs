//! `rotationd audit`: the audit log for people (table, JSON or CSV), and its hash chain
//! checked (`--verify`).
//!
//! Auditors and on-call engineers need to answer "who rotated or rolled back what, under
//! which ticket, and why" without `sqlite3`, AWS credentials or a running daemon, so this
//! reads only the state database named by `[daemon] state_path` and never builds the
//! AWS-facing [`crate::daemon::App`]. (With `[state] backend = "dynamodb"` the state is
//! the shared log, so it reads a replica of it, which does take the daemon's AWS
//! credentials and `dynamodb:Query`.) `--verify` recomputes the chain that
//! [`crate::store::Db::verify_audit`] documents; its last hash is worth recording off the
//! host, because removing the newest rows is only detectable against such a record; with
//! `[audit] anchor_bucket` the daemon keeps that record in S3 itself, and `--verify
//! --anchors` checks the chain against every anchor there (`super::anchors`).

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::{CliError, load_config};
use crate::clock::TIME_FORMAT;
use crate::store::{AuditEntry, AuditFilter, AuditVerification, GENESIS_HASH, Store, StoreError};

/// How `rotationd audit` prints the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    /// Aligned columns for a terminal; long reasons are shortened.
    Table,
    /// One array of objects with every field, `detail` as JSON.
    Json,
    /// RFC 4180: a header line, then one record per entry.
    Csv,
}

/// Reasons longer than this are cut in the table (only there) so that one long
/// justification does not push every row off the screen.
const TABLE_REASON_CHARS: usize = 60;

/// How `rotationd audit --verify` checks the chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verify<'a> {
    /// A last hash recorded by an earlier `--verify`, which must still be in the chain.
    pub expect_hash: Option<&'a str>,
    /// Check the chain against every anchor in `[audit] anchor_bucket` too.
    pub anchors: bool,
}

/// `rotationd audit`: lists the audit log, or with `verify` checks its hash chain.
pub fn audit(
    config: &Path,
    secret: Option<&str>,
    since: Option<&str>,
    format: AuditFormat,
    verify: Option<Verify<'_>>,
) -> Result<(), CliError> {
    let cfg = load_config(config)?;
    let since = since
        .map(|s| parse_since(s, Utc::now()))
        .transpose()
        .map_err(CliError::Invalid)?;
    // Anchors first, then the log: see `super::anchors`.
    let anchored = match verify {
        Some(Verify { anchors: true, .. }) => {
            let a = super::anchors::anchor_config(&cfg)?;
            let fetched = super::anchors::fetch(&cfg, a)?;
            for key in &fetched.foreign {
                eprintln!(
                    "warning: s3://{}/{key} is not an anchor rotationd wrote; ignored",
                    a.bucket
                );
            }
            Some((a, fetched))
        }
        _ => None,
    };
    // The runtime (DynamoDB backend) lives as long as the replica may call out.
    let (store, _runtime) = open_state(&cfg)?;
    if let Some(v) = verify {
        // The head file first: a lost database must not read as an empty, intact log.
        if let crate::config::StateBackend::Sqlite = cfg.state.backend {
            check_head_file(&cfg.daemon.state_path, store.as_ref())?;
        }
        let entries = verify_chain(store.as_ref(), v.expect_hash)?;
        let Some((a, fetched)) = anchored else {
            return Ok(());
        };
        let check = match store.as_ref() {
            Some(s) => s.db().check_anchors(&fetched.anchors),
            None => crate::store::anchor::check(
                &fetched.anchors,
                &crate::store::anchor::LocalChain {
                    head: None,
                    checkpoints: &[],
                    hash_of: &|_| Ok(None),
                },
            ),
        }
        .map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{}", super::anchors::verdict(a, &fetched, &check, entries)?);
        return Ok(());
    }
    let filter = AuditFilter {
        secret: secret.map(str::to_owned),
        since,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = write_entries(&mut out, store.as_ref(), &filter, format)
        .and_then(|()| out.flush().map_err(OutError::Io));
    match written {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(OutError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(OutError::Io(e)) => Err(CliError::Failed(format!("cannot write the audit log: {e}"))),
        Err(OutError::Store(e)) => Err(CliError::Failed(e.to_string())),
    }
}

/// `--verify`: the chain intact, and a hash recorded earlier (a previous `--verify`)
/// still in it: what shows a removed or rewritten tail, which the chain alone cannot.
/// Returns how many entries the chain holds.
fn verify_chain(store: Option<&Store>, expect_hash: Option<&str>) -> Result<u64, CliError> {
    let result = match store {
        Some(store) => store.db().verify_audit(),
        None => Ok(AuditVerification {
            checked: 0,
            last_hash: GENESIS_HASH.to_owned(),
            broken: None,
            from_checkpoint: None,
        }),
    };
    let entries = report_verification(result)?;
    let Some(h) = expect_hash else {
        return Ok(entries);
    };
    let found = match store {
        Some(store) => store.db().audit_entry_with_hash(h.trim()),
        None => Ok(None),
    };
    let checkpoint = store
        .map(|s| s.db().audit_checkpoint())
        .transpose()
        .map_err(|e| CliError::Failed(e.to_string()))?
        .flatten();
    match found.map_err(|e| CliError::Failed(e.to_string()))? {
        Some(id) => {
            println!(
                "expected hash found at entry {id}: nothing before it was removed or rewritten"
            );
            Ok(entries)
        }
        None if checkpoint.as_ref().is_some_and(|c| c.upto_hash == h.trim()) => {
            println!(
                "expected hash is the pruning checkpoint's (entry {}): the chain goes on from it",
                checkpoint.map_or(0, |c| c.upto_id)
            );
            Ok(entries)
        }
        None if checkpoint.is_some() => Err(CliError::Failed(format!(
            "hash {h} recorded earlier is not in the chain: it was pruned (entries up to {} are gone after [state] audit_retention) or the tail after it was removed or rewritten; compare it with a backup older than the pruning",
            checkpoint.map_or(0, |c| c.upto_id)
        ))),
        None => Err(CliError::Failed(format!(
            "audit log tampered: hash {h} recorded earlier is no longer in the chain (entries after it were removed or rewritten); keep a copy of the state database for investigation and compare it with a backup"
        ))),
    }
}

/// The head file the daemon keeps next to the database (`store::file`) against the
/// database found: a missing database whose head file remains was lost, and a database
/// without the head the file recorded was replaced by another or an older copy. Both are
/// what an intact chain alone cannot show.
fn check_head_file(state: &Path, store: Option<&Store>) -> Result<(), CliError> {
    let head_path = crate::store::file::head_path(state);
    let head = match crate::store::file::read_head(state) {
        Ok(None) => return Ok(()),
        Ok(Some(Ok(head))) => head,
        Ok(Some(Err(text))) => {
            return Err(CliError::Failed(format!(
                "the head file {} cannot be parsed (it holds `{text}`): it was damaged or written by hand; keep a copy of the state directory for investigation",
                head_path.display()
            )));
        }
        Err(e) => {
            return Err(CliError::Failed(format!(
                "cannot read the head file {}: {e}; run as rotationd's user",
                head_path.display()
            )));
        }
    };
    let Some(store) = store else {
        return Err(CliError::Failed(format!(
            "the state database {} is missing, but its head file says the audit log held entries up to {} (last hash {}): the history was deleted or moved; restore it from a backup (rotationd run refuses to start without it unless --init)",
            state.display(),
            head.last_id,
            head.last_hash
        )));
    };
    if head.last_id == 0 {
        return Ok(());
    }
    let at = store
        .db()
        .audit_entry_with_hash(&head.last_hash)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let pruned = store
        .db()
        .audit_checkpoint()
        .map_err(|e| CliError::Failed(e.to_string()))?
        .is_some_and(|c| c.upto_id >= head.last_id);
    if at == Some(head.last_id) || pruned {
        println!(
            "head file: entry {} with its hash is in the chain (written {})",
            head.last_id,
            head.written_at.format(TIME_FORMAT)
        );
        return Ok(());
    }
    Err(CliError::Failed(format!(
        "the audit log does not hold the head its head file recorded (entry {}, hash {}, written {}): the database was replaced by another or an older copy, or its tail was removed; keep both for investigation and restore the database from a backup",
        head.last_id,
        head.last_hash,
        head.written_at.format(TIME_FORMAT)
    )))
}

fn report_verification(result: Result<AuditVerification, StoreError>) -> Result<u64, CliError> {
    match result.map_err(|e| CliError::Failed(e.to_string()))? {
        AuditVerification {
            checked,
            last_hash,
            broken: None,
            from_checkpoint,
        } => {
            match from_checkpoint {
                None => println!("audit log OK: {checked} entries, last hash {last_hash}"),
                Some(upto) => println!(
                    "audit log OK: {checked} entries after the checkpoint at entry {upto} (older entries pruned after [state] audit_retention), last hash {last_hash}"
                ),
            }
            Ok(checked)
        }
        AuditVerification {
            broken: Some(b), ..
        } => Err(CliError::Failed(format!(
            "audit log tampered at entry {}: {}; keep a copy of the state database for investigation and compare it with a backup",
            b.id, b.fault
        ))),
    }
}

/// `--since`: an RFC 3339 instant, or a duration ago (`7d`, `24h`, `90min`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    humantime::parse_duration(s.trim())
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            format!(
                "invalid --since `{s}`: use RFC 3339 like 2026-11-01T00:00:00Z or a duration ago like 7d or 24h"
            )
        })
}

/// The state to read: the SQLite file (never created by this read-only command: a run as
/// another user must not leave a file the daemon's user cannot open), or with
/// `[state] backend = "dynamodb"` a replica of the shared log (which needs the AWS
/// credentials of the daemon's own account and `dynamodb:Query`).
pub(super) fn open_state(
    cfg: &crate::config::Config,
) -> Result<(Option<Store>, Option<tokio::runtime::Runtime>), CliError> {
    match &cfg.state.backend {
        crate::config::StateBackend::Sqlite => {
            let path = &cfg.daemon.state_path;
            if !path.exists() {
                eprintln!(
                    "warning: there is no state database at {} yet, so the audit log is empty; check [daemon] state_path if rotationd has run",
                    path.display()
                );
                return Ok((None, None));
            }
            // Read-only: listing or verifying the log never migrates, chains or repairs it.
            Store::open_read_only(path)
                .map(|s| (Some(s), None))
                .map_err(|e| CliError::Failed(e.to_string()))
        }
        crate::config::StateBackend::Dynamodb { table } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
            let sdk = rt.block_on(crate::aws::load_sdk_config(&cfg.aws));
            // Counted like every client, into a registry nobody serves: a CLI run.
            let counter = crate::aws::RequestCounter::new(Default::default());
            let journal = crate::store::journal::Journal::on_table(
                crate::aws::dynamodb::Table::new(&sdk, &counter, table),
                rt.handle().clone(),
                &format!("audit-{}", crate::daemon::instance_id()),
            );
            // This thread is not one of the runtime's workers: the replica may block on it.
            let store = Store::open_replicated(journal).map_err(|e| {
                CliError::Failed(format!(
                    "cannot read the shared state in DynamoDB table {table}: {e}"
                ))
            })?;
            Ok((Some(store), Some(rt)))
        }
    }
}

/// A failure while streaming entries: reading the store, or writing stdout.
#[derive(Debug)]
enum OutError {
    Store(StoreError),
    Io(std::io::Error),
}

impl From<StoreError> for OutError {
    fn from(e: StoreError) -> Self {
        OutError::Store(e)
    }
}

impl From<std::io::Error> for OutError {
    fn from(e: std::io::Error) -> Self {
        OutError::Io(e)
    }
}

/// Calls `f` for every entry matching `filter`; none when there is no database.
fn for_each_entry(
    store: Option<&Store>,
    filter: &AuditFilter,
    f: impl FnMut(AuditEntry) -> Result<(), OutError>,
) -> Result<(), OutError> {
    match store {
        Some(store) => store.db().audit_log(filter, f),
        None => Ok(()),
    }
}

/// JSON and CSV stream, so that a years-long log is never held in memory; the table
/// collects, because its column widths depend on every row.
fn write_entries(
    out: &mut impl Write,
    store: Option<&Store>,
    filter: &AuditFilter,
    format: AuditFormat,
) -> Result<(), OutError> {
    match format {
        AuditFormat::Json => {
            let mut first = true;
            out.write_all(b"[")?;
            for_each_entry(store, filter, |e| {
                out.write_all(if first { b"\n  " } else { b",\n  " })?;
                first = false;
                serde_json::to_writer(&mut *out, &e).map_err(std::io::Error::from)?;
                Ok(())
            })?;
            out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
        }
        AuditFormat::Csv => {
            write_csv_record(
                out,
                &[
                    "id",
                    "at",
                    "actor",
                    "action",
                    "secret",
                    "ticket",
                    "reason",
                    "outcome",
                    "detail",
                    "prev_hash",
                    "hash",
                ],
            )?;
            for_each_entry(store, filter, |e| {
                let detail = e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default();
                write_csv_record(
                    out,
                    &[
                        &e.id.to_string(),
                        &e.at.format(TIME_FORMAT).to_string(),
                        &e.actor,
                        &e.action,
                        e.secret.as_deref().unwrap_or(""),
                        e.ticket.as_deref().unwrap_or(""),
                        e.reason.as_deref().unwrap_or(""),
                        &e.outcome,
                        &detail,
                        e.prev_hash.as_deref().unwrap_or(""),
                        e.hash.as_deref().unwrap_or(""),
                    ],
                )?;
                Ok(())
            })?;
        }
        AuditFormat::Table => {
            let mut entries = Vec::new();
            for_each_entry(store, filter, |e| {
                entries.push(e);
                Ok(())
            })?;
            write_table(out, &entries)?;
        }
    }
    Ok(())
}

/// One CSV record, CRLF-terminated as RFC 4180 says.
fn write_csv_record(out: &mut impl Write, fields: &[&str]) -> std::io::Result<()> {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(csv_field(field).as_bytes())?;
    }
    out.write_all(b"\r\n")
}

/// RFC 4180 quoting: a field with a comma, a double quote or a line break is enclosed
/// in double quotes, and its double quotes are doubled.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    crate::report::csv_field(s)
}

/// Text for a terminal: audit fields can carry text from events and operators, and a
/// control character (an escape sequence, a carriage return) must not rewrite the
/// screen or hide part of a row.
pub(super) fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The reason as shown in the table: printable and at most [`TABLE_REASON_CHARS`].
fn table_reason(reason: Option<&str>) -> String {
    let s = printable(reason.unwrap_or("-"));
    if s.chars().count() <= TABLE_REASON_CHARS {
        s
    } else {
        let mut cut: String = s.chars().take(TABLE_REASON_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

fn write_table(out: &mut impl Write, entries: &[AuditEntry]) -> std::io::Result<()> {
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.at.format(TIME_FORMAT).to_string(),
                printable(&e.actor),
                printable(&e.action),
                printable(e.secret.as_deref().unwrap_or("-")),
                printable(e.ticket.as_deref().unwrap_or("-")),
                printable(&e.outcome),
                table_reason(e.reason.as_deref()),
            ]
        })
        .collect();
    let titles = [
        "AT", "ACTOR", "ACTION", "SECRET", "TICKET", "OUTCOME", "REASON",
    ];
    let mut widths = titles.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 7]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                // The last column is not padded: no trailing blanks.
                text.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        writeln!(out, "{text}")
    };
    line(out, titles)?;
    for row in &rows {
        line(out, row.each_ref().map(String::as_str))?;
    }
    if rows.is_empty() {
        writeln!(out, "(no audit entries)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn since_takes_rfc3339_or_a_duration_ago() {
        let now = Utc.with_ymd_and_hms(2026, 11, 8, 12, 0, 0).unwrap();
        assert_eq!(
            parse_since("2026-11-01T00:00:00Z", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            parse_since("2026-11-01T02:00:00+02:00", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            parse_since("7d", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap())
        );
        assert_eq!(
            parse_since("24h", now),
            Ok(Utc.with_ymd_and_hms(2026, 11, 7, 12, 0, 0).unwrap())
        );
        let err = parse_since("last week", now).unwrap_err();
        assert_eq!(
            err,
            "invalid --since `last week`: use RFC 3339 like 2026-11-01T00:00:00Z or a duration ago like 7d or 24h"
        );
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field(r#"say "hi""#), r#""say ""hi""""#);
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn table_escapes_control_characters_and_cuts_long_reasons() {
        assert_eq!(printable("ok\x1b[2Jx\r"), "ok\\u{1b}[2Jx\\r");
        let long = "é".repeat(100);
        let cut = table_reason(Some(&long));
        assert_eq!(cut.chars().count(), TABLE_REASON_CHARS);
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(table_reason(Some("short")), "short");
        assert_eq!(table_reason(None), "-");
    }
}
