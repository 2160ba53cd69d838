//! Logging setup: `tracing` with a human format by default and JSON for shipping.
//!
//! Under systemd (`JOURNAL_STREAM` set) the human format drops its own timestamps, since
//! journald stamps every line already. `RUST_LOG` overrides the default `info` filter.

use tracing_subscriber::EnvFilter;

/// `default_level` applies when `RUST_LOG` is unset: `info` for the daemon, `warn` for
/// the one-shot commands whose own output is the point.
pub fn init_logging(json: bool, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    // Ignoring the result: a second init (tests) keeps the first subscriber.
    if json {
        let _ = builder.json().try_init();
    } else if std::env::var_os("JOURNAL_STREAM").is_some() {
        let _ = builder.without_time().try_init();
    } else {
        let _ = builder.try_init();
    }
}
