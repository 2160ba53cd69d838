//! What is wrong with a config file, and where: [`Diagnostic`]s collected while it is
//! validated, rendered by [`Diagnostics`] as `FILE:LINE:COL: error: MESSAGE`, and the
//! mapping of toml's own errors into the same form.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Range<usize>,
    pub message: String,
}

/// The problems found in one file, rendered with their positions.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    path: PathBuf,
    /// Byte offset at which each line starts, to turn spans into line/column.
    line_starts: Vec<usize>,
    source: std::sync::Arc<str>,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(super) fn new(path: &Path, source: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Diagnostics {
            path: path.to_path_buf(),
            line_starts,
            source: source.into(),
            items: Vec::new(),
        }
    }

    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
        });
    }

    pub(super) fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> impl Iterator<Item = String> + '_ {
        self.lines()
            .into_iter()
            .filter(|(sev, _)| *sev == Severity::Warning)
            .map(|(_, l)| l)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Every diagnostic as `FILE:LINE:COL: error: MESSAGE`, sorted by position.
    pub fn lines(&self) -> Vec<(Severity, String)> {
        let mut items: Vec<&Diagnostic> = self.items.iter().collect();
        items.sort_by_key(|d| (d.span.start, d.severity));
        items.dedup_by(|a, b| a.span == b.span && a.message == b.message);
        items
            .into_iter()
            .map(|d| {
                let (line, col) = self.position(d.span.start);
                let kind = match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                (
                    d.severity,
                    format!(
                        "{}:{line}:{col}: {kind}: {}",
                        self.path.display(),
                        d.message
                    ),
                )
            })
            .collect()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.lines();
        for (i, (_, line)) in lines.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

/// serde names Rust types in its messages (`expected i64`); say what the user writes.
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for t in [
        "i128", "u128", "i64", "u64", "i32", "u32", "i16", "u16", "i8", "u8",
    ] {
        out = out
            .replace(&format!("expected {t}"), "expected an integer")
            .replace(&format!(" as {t}"), "");
    }
    out = out.replace("expected f64", "expected a number");
    // toml reads integers beyond i64 as a wider type, which serde then calls a wrong type.
    if let Some((n, tail)) = out
        .strip_prefix("invalid type: integer `")
        .and_then(|r| r.split_once('`'))
        && tail.contains("expected an integer")
    {
        return format!("`{n}` is too large; use a number of sensible size");
    }
    out
}

/// A toml error's message, in the words of the config file rather than of serde.
pub(super) fn toml_message(err: &toml::de::Error) -> String {
    plain_types(err.message().trim().trim_end_matches('.'))
}

/// Turns a toml error into a diagnostic at its span (or `fallback`, the start of the file
/// or the table being read).
pub(super) fn toml_error(diags: &mut Diagnostics, err: toml::de::Error, fallback: Range<usize>) {
    let span = err.span().unwrap_or(fallback);
    diags.error(span, toml_message(&err));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let src = "a = 1\nbb = 2\n";
        let d = Diagnostics::new(Path::new("x"), src);
        assert_eq!(d.position(0), (1, 1));
        assert_eq!(d.position(6), (2, 1));
        assert_eq!(d.position(9), (2, 4));
    }
}
