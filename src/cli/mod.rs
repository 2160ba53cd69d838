//! The CLI commands, one file each, kept in the library so that they are testable and the
//! binary stays a thin parser. Each returns `Result<(), CliError>`: what it prints on
//! success it prints itself, and `src/main.rs` turns a [`CliError`] into its stderr line
//! and exit code in one place (0 ok, 1 failure, 2 invalid configuration or usage).
//!
//! The library does not know the command line's syntax (clap lives in the binary): the
//! commands take plain values.

use std::io::Write;
use std::path::Path;

use crate::config::{Config, ConfigError};

pub mod anchors;
pub mod audit;
pub mod identity;
pub mod plan;
pub mod report;
pub mod requests;
pub mod resume;
pub mod rollback;
pub mod rotate;
pub mod run;
pub mod setup_events;
pub mod status;
pub mod validate;

/// Why a command failed; `src/main.rs` prints it on stderr and maps it to the exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// The configuration file was rejected: every located diagnostic, then the summary
    /// line, printed as they are (exit 2).
    #[error("{}", lines.join("\n"))]
    InvalidConfig { lines: Vec<String> },
    /// Invalid usage or a configuration the command cannot work with, printed as
    /// `error: ...` (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The command failed, printed as `error: ...` (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// Loads the config, printing its warnings; a rejected or unreadable file is the error.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    match Config::load(path) {
        Ok((cfg, diags)) => {
            for w in diags.warnings() {
                eprintln!("{w}");
            }
            Ok(cfg)
        }
        Err(ConfigError::Invalid(diags)) => {
            let mut lines: Vec<String> = diags.lines().into_iter().map(|(_, l)| l).collect();
            lines.push(format!(
                "{}: {} error(s); the configuration was not accepted",
                path.display(),
                diags.error_count()
            ));
            Err(CliError::InvalidConfig { lines })
        }
        Err(e @ ConfigError::Read { .. }) => Err(CliError::Failed(e.to_string())),
    }
}

/// A multi-threaded runtime for the commands that talk to AWS.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
}

/// Loads the config, builds the shared [`crate::daemon::App`] on a runtime, runs `f` and
/// closes the state store: the frame of every one-shot command that talks to AWS.
fn with_app<T>(
    path: &Path,
    f: impl AsyncFnOnce(&crate::daemon::App) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let cfg = load_config(path)?;
    runtime()?.block_on(async move {
        let app = crate::daemon::App::build(cfg)
            .await
            .map_err(|e| CliError::Failed(format!("{e:#}")))?;
        let result = f(&app).await;
        app.store.shutdown().await.ok();
        result
    })
}

/// Writes `value` to stdout as pretty JSON, or as `table` writes it; buffered, because a
/// year of a large fleet is hundreds of thousands of lines. A closed pipe (`| head`) is the
/// reader's choice, not a failure.
fn write_out<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    what: &str,
    table: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> Result<(), CliError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json {
        serde_json::to_writer_pretty(&mut out, value)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        table(&mut out)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Failed(format!("cannot write the {what}: {e}"))),
    }
}

/// DescribeSecret for a command named by the operator (a name or an ARN).
async fn describe(
    app: &crate::daemon::App,
    secret: &str,
) -> Result<crate::aws::secrets::SecretInfo, CliError> {
    app.engine
        .sm
        .describe(secret)
        .await
        .map_err(|e| CliError::Failed(format!("cannot describe {secret}: {e}")))
}

/// The secret `secret` (a name or an ARN) as described, and as the configuration manages
/// it; an error when it does not.
async fn managed(
    app: &crate::daemon::App,
    secret: &str,
) -> Result<
    (
        crate::aws::secrets::SecretInfo,
        crate::inventory::FleetEntry,
    ),
    CliError,
> {
    let info = describe(app, secret).await?;
    // Match on the secret as if live: a secret being deleted is still ours, and the
    // preflight says why it cannot rotate.
    let mut live = info.clone();
    live.deleted = None;
    let fleet =
        crate::inventory::match_fleet_keyed(&app.cfg, vec![live], app.engine.sm.is_routed());
    match fleet.entries.into_iter().next() {
        Some(entry) => Ok((info, entry)),
        None => Err(CliError::Failed(format!(
            "secret {secret} is not managed by this configuration; add it as a [[secret]] or match it with a [[selector]]"
        ))),
    }
}

/// The person running a command as the OS says: the one behind `sudo` when there is one,
/// since the daemon's user is shared. The audit log's `cli:USER` actor without
/// `[requests]`; with it, only a hint next to the AWS identity ([`identity`]).
fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// Checks a `--ticket`: INC-123, or also CHG-123 when `change_ok`; `why` ends the message
/// (which kind of ticket the command takes).
fn check_ticket(ticket: &str, change_ok: bool, why: &str) -> Result<(), CliError> {
    let ok = crate::ticket::is_ticket(ticket, "INC")
        || (change_ok && crate::ticket::is_ticket(ticket, "CHG"));
    if ok {
        Ok(())
    } else {
        Err(CliError::Invalid(format!(
            "ticket `{ticket}` must look like INC-123{why}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_checked_with_the_commands_messages() {
        assert_eq!(check_ticket("INC-1", false, ""), Ok(()));
        assert_eq!(check_ticket("CHG-1", true, ""), Ok(()));
        assert_eq!(
            check_ticket("CHG-1", false, " (emergency rotations need an INC ticket)"),
            Err(CliError::Invalid(
                "ticket `CHG-1` must look like INC-123 (emergency rotations need an INC ticket)"
                    .into()
            ))
        );
        assert_eq!(
            check_ticket("JIRA-1", true, " or CHG-123")
                .unwrap_err()
                .to_string(),
            "ticket `JIRA-1` must look like INC-123 or CHG-123"
        );
    }

    #[test]
    fn a_rejected_config_prints_its_lines_as_they_are() {
        let e = CliError::InvalidConfig {
            lines: vec!["a.toml:1:1: error: x".into(), "a.toml: 1 error(s)".into()],
        };
        assert_eq!(e.to_string(), "a.toml:1:1: error: x\na.toml: 1 error(s)");
    }
}
