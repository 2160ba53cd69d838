//! Logging setup: `tracing` with a human format by default and JSON for shipping.
//!
//! Under systemd (`JOURNAL_STREAM` set) the human format drops its own timestamps, since
//! journald stamps every line already. `RUST_LOG` overrides the default `info` filter.
//!
//! Log lines carry text that comes from outside: a requester's name, a request id, an
//! AWS error message. In the human format one event is one line, so that text is escaped
//! on its way out ([`escape`]): a line break or a control character in it cannot start a
//! forged line or rewrite the terminal. The JSON format escapes by construction. Colours
//! are used only on a terminal, and then ESC is let through (the formatter's own colour
//! codes use it); everywhere else (journald, a file) every control character is escaped.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// `default_level` applies when `RUST_LOG` is unset: `info` for the daemon, `warn` for
/// the one-shot commands whose own output is the point.
pub fn init_logging(json: bool, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(Escaped { ansi });
    // Ignoring the result: a second init (tests) keeps the first subscriber.
    if json {
        let _ = builder.json().try_init();
    } else if std::env::var_os("JOURNAL_STREAM").is_some() {
        let _ = builder.without_time().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Standard error, through [`escape`]. The formatter writes each event whole, ending in
/// its one newline.
#[derive(Clone, Copy)]
struct Escaped {
    ansi: bool,
}

impl<'a> MakeWriter<'a> for Escaped {
    type Writer = Escaped;

    fn make_writer(&'a self) -> Escaped {
        *self
    }
}

impl Write for Escaped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr()
            .lock()
            .write_all(&escape(buf, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One formatted event with its control characters escaped (`\n`, `\r`, `\x07` ...),
/// except the newline that ends it, tabs, and (with `ansi`) ESC.
pub fn escape(event: &[u8], ansi: bool) -> Vec<u8> {
    let (body, end) = match event.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (event, &b""[..]),
    };
    let mut out = Vec::with_capacity(event.len() + 8);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b),
            0x1b if ansi => out.push(b),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn a_field_cannot_start_a_line_or_drive_the_terminal() {
        let forged =
            b"INFO request decided actor=lead\n2026-12-06T03:00:00Z  INFO rotationd: forged\n";
        assert_eq!(
            escape(forged, false),
            b"INFO request decided actor=lead\\n2026-12-06T03:00:00Z  INFO rotationd: forged\n"
        );
        assert_eq!(
            escape(b"a\rb\x1b[2Kc\x07\x7f\td\n", false),
            b"a\\rb\\x1b[2Kc\\x07\\x7f\td\n"
        );
        // On a terminal the formatter's colours stay; line breaks are still escaped.
        assert_eq!(
            escape(b"\x1b[32mINFO\x1b[0m a\nb\n", true),
            b"\x1b[32mINFO\x1b[0m a\\nb\n"
        );
        // UTF-8 passes untouched; a write without its newline keeps none.
        assert_eq!(
            escape("prod/db ✓".as_bytes(), false),
            "prod/db ✓".as_bytes()
        );
    }
}
