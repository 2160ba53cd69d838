//! The `rotationd` binary: parses the command line (clap lives here only, not in the
//! library), runs one of the library's [`rotationd::cli`] commands, and maps its outcome to
//! the exit code in one place: 0 ok, 1 failure, 2 invalid configuration or usage (clap's
//! own usage errors exit 2 too).
//!
//! The man pages and shell completions the package ships are generated from these same
//! definitions by the hidden `rotationd generate man DIR` and `rotationd generate
//! completions SHELL` (`scripts/package.sh`), so they never drift from the parser.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use rotationd::cli::{self, CliError};
use rotationd::config::DEFAULT_CONFIG_PATH;

#[derive(Parser)]
#[command(
    name = "rotationd",
    version,
    propagate_version = true,
    about = "Keeps AWS Secrets Manager credentials in rotation compliance"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "ROTATIOND_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// How `rotationd audit` prints the entries.
#[derive(Clone, Copy, ValueEnum)]
enum AuditFormat {
    /// Aligned columns for a terminal; long reasons are shortened.
    Table,
    /// One array of objects with every field, `detail` as JSON.
    Json,
    /// RFC 4180: a header line, then one record per entry.
    Csv,
}

/// How `rotationd report` writes the report.
#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// One document (schema rotationd.report.v1).
    Json,
    /// RFC 4180, one table of typed records (secret, rotation, departure, exception...).
    Csv,
    /// One self-contained file (no network), with a compliance bar per secret.
    Html,
}

impl From<ReportFormat> for cli::report::ReportFormat {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Json => Self::Json,
            ReportFormat::Csv => Self::Csv,
            ReportFormat::Html => Self::Html,
        }
    }
}

impl From<AuditFormat> for cli::audit::AuditFormat {
    fn from(f: AuditFormat) -> Self {
        match f {
            AuditFormat::Table => Self::Table,
            AuditFormat::Json => Self::Json,
            AuditFormat::Csv => Self::Csv,
        }
    }
}

/// What `rotationd generate` writes.
#[derive(Subcommand)]
enum Generated {
    /// Man pages (rotationd.1 and one per command, rotationd-audit.1, ...) into DIR.
    Man { dir: PathBuf },
    /// The completion script for SHELL, on stdout.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration and report every error with its position.
    Validate,
    /// Show the coming rotation windows from the configuration alone (no AWS call).
    Plan {
        /// Start of the plan (RFC 3339); default: now.
        #[arg(long)]
        from: Option<String>,
        /// How many days to plan.
        #[arg(long, default_value_t = 92)]
        days: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Read Secrets Manager and show each secret's TOML schedule next to its own
        /// rotation rules (and the drift `[policy] native_schedule` reports).
        #[arg(long, conflicts_with_all = ["from", "days"])]
        live: bool,
    },
    /// Run the daemon (reconcile, rotate in windows, resume after restarts).
    Run {
        /// Start a new, empty state database where the old one was lost (its head file
        /// remains): without this, rotationd refuses to replace a lost history quietly.
        #[arg(long)]
        init: bool,
    },
    /// Live compliance per secret (one ListSecrets scan).
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Only this secret (its name or ARN), as the escalations' commands ask.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Rotate one secret now through the whole pipeline; progress on stderr. With
    /// [requests], an L1/L2 caller (by its AWS identity) files a request instead and its id
    /// is printed.
    Rotate {
        /// Secret name or ARN.
        #[arg(long)]
        secret: String,
        /// INC-123 (or CHG-123 inside the window).
        #[arg(long)]
        ticket: String,
        #[arg(long)]
        reason: String,
        /// Ignore the rotation window (suspected compromise); needs an INC ticket.
        #[arg(long)]
        emergency: bool,
    },
    /// Create or update the EventBridge rules and the queue policy for [events] (idempotent).
    SetupEvents {
        /// Change nothing: report whether anyone but rotationd's rules can send to the
        /// queue (exit 1 if so).
        #[arg(long)]
        check: bool,
    },
    /// Resume event-triggered rotations paused by the storm guard; with --secret, lift the
    /// hold a failed rotation put on that secret instead (after investigating it).
    Resume {
        /// The held secret (name or ARN); --ticket and --reason are then required.
        #[arg(long, requires_all = ["ticket", "reason"])]
        secret: Option<String>,
        #[arg(long, requires = "secret")]
        ticket: Option<String>,
        /// What the investigation found.
        #[arg(long, requires = "secret")]
        reason: Option<String>,
    },
    /// Move AWSCURRENT back to the AWSPREVIOUS version (L3 only, per the guide).
    Rollback {
        #[arg(long)]
        secret: String,
        #[arg(long)]
        ticket: String,
        #[arg(long)]
        reason: String,
        /// Put back a version a compromise, departure or emergency rotation retired (an
        /// INC ticket; Security is paged).
        #[arg(long)]
        force: bool,
    },
    /// List the open requests (awaiting an L3's approval, or executing).
    Requests {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Approve a request as an L3 other than its requester (by your AWS identity).
    Approve {
        request_id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request as an L3, or withdraw your own.
    Deny {
        request_id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Show the audit log (who, what, ticket, reason) from the state database, or check
    /// its hash chain (no AWS call but --anchors' reads of S3).
    Audit {
        /// Only entries about this secret, as recorded (name or ARN).
        #[arg(long)]
        secret: Option<String>,
        /// Only entries at or after this time: RFC 3339 (2026-11-01T00:00:00Z) or a
        /// duration ago (7d, 24h).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
        format: AuditFormat,
        /// Check the hash chain: no entry edited, removed or reordered. Prints the last
        /// hash: record it elsewhere, since removing the newest entries shows only
        /// against a hash recorded earlier.
        #[arg(long, conflicts_with_all = ["secret", "since", "format"])]
        verify: bool,
        /// With --verify: a last hash recorded by an earlier --verify, which must still be
        /// in the chain (a removed or rewritten tail shows only this way).
        #[arg(long, requires = "verify")]
        expect_hash: Option<String>,
        /// With --verify: check the chain against every anchor the daemon wrote to S3
        /// ([audit] anchor_bucket): a truncated or rewritten log fails.
        #[arg(long, requires = "verify")]
        anchors: bool,
    },
    /// Write the man pages or a shell's completions (for packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generated,
    },
    /// Evidence for auditors over a period, from the state database (read-only): per
    /// secret its policy, rotations, compliant days, departures and exceptions, then the
    /// audit chain's head, verified.
    Report {
        /// A quarter (2026-Q4), a month (2026-11), a day (2026-11-05) or FROM..TO with both
        /// days included (2026-10-01..2026-12-31), UTC.
        #[arg(long)]
        period: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
        format: ReportFormat,
        /// Write the report to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Generate { what } = &cli.command {
        return generate(what);
    }
    let level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    rotationd::telemetry::init_logging(matches!(cli.log_format, LogFormat::Json), level);
    let result = match cli.command {
        Command::Validate => cli::validate::validate(&cli.config),
        Command::Plan {
            live: true, format, ..
        } => cli::plan::plan_live(&cli.config, matches!(format, Format::Json)),
        Command::Plan {
            from, days, format, ..
        } => cli::plan::plan(
            &cli.config,
            from.as_deref(),
            days,
            matches!(format, Format::Json),
        ),
        Command::Run { init } => cli::run::run(&cli.config, init),
        Command::SetupEvents { check } => cli::setup_events::setup_events(&cli.config, check),
        Command::Resume {
            secret: Some(secret),
            ticket,
            reason,
        } => cli::resume::lift_hold(
            &cli.config,
            &secret,
            ticket.as_deref().unwrap_or_default(),
            reason.as_deref().unwrap_or_default(),
        ),
        Command::Resume { secret: None, .. } => cli::resume::resume(&cli.config),
        Command::Status { format, secret } => cli::status::status(
            &cli.config,
            matches!(format, Format::Json),
            secret.as_deref(),
        ),
        Command::Rotate {
            secret,
            ticket,
            reason,
            emergency,
        } => cli::rotate::rotate(&cli.config, &secret, &ticket, &reason, emergency),
        Command::Rollback {
            secret,
            ticket,
            reason,
            force,
        } => cli::rollback::rollback(&cli.config, &secret, &ticket, &reason, force),
        Command::Requests { format } => {
            cli::requests::list(&cli.config, matches!(format, Format::Json))
        }
        Command::Approve {
            request_id,
            comment,
        } => cli::requests::approve(&cli.config, &request_id, comment.as_deref()),
        Command::Deny {
            request_id,
            comment,
        } => cli::requests::deny(&cli.config, &request_id, comment.as_deref()),
        Command::Generate { .. } => Ok(()),
        Command::Audit {
            secret,
            since,
            format,
            verify,
            expect_hash,
            anchors,
        } => cli::audit::audit(
            &cli.config,
            secret.as_deref(),
            since.as_deref(),
            format.into(),
            verify.then_some(cli::audit::Verify {
                expect_hash: expect_hash.as_deref(),
                anchors,
            }),
        ),
        Command::Report {
            period,
            format,
            output,
        } => cli::report::report(&cli.config, &period, format.into(), output.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `rotationd generate`: the pages or the script from the clap definitions above. The
/// hidden `generate` itself is left out of them (clap_mangen skips hidden commands,
/// clap_complete does not: it gets the command rebuilt without them).
fn generate(what: &Generated) -> ExitCode {
    let full = Cli::command();
    let mut cmd = clap::Command::new("rotationd")
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommand_required(true)
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    let result = match what {
        Generated::Man { dir } => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map_err(|e| format!("cannot write the man pages to {}: {e}", dir.display())),
        Generated::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "rotationd", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a failed command: 2 when the configuration or the command line is
/// invalid (as clap's own usage errors), 1 for any other failure.
fn exit_code(e: &CliError) -> u8 {
    match e {
        CliError::InvalidConfig { .. } | CliError::Invalid(_) => 2,
        CliError::Failed(_) => 1,
    }
}

/// The stderr text of a failed command: a rejected configuration's diagnostics as they
/// are (each line already says `error:` or `warning:` at its position), else `error: ...`.
fn report(e: &CliError) -> String {
    match e {
        CliError::InvalidConfig { .. } => e.to_string(),
        CliError::Invalid(_) | CliError::Failed(_) => format!("error: {e}"),
    }
}
