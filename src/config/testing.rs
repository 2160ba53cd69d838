//! What the config unit tests share: a minimal valid file and its errors and warnings.

use std::path::Path;

use super::{Config, ConfigError, Severity};

pub(super) const MINIMAL: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"

[[secret]]
id = "prod/payments/db"
strategy = "single-user"
change_ticket = "CHG-10421"
"#;

pub(super) fn errors(src: &str) -> Vec<String> {
    match Config::from_source(Path::new("t.toml"), src) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(d)) => d
            .lines()
            .into_iter()
            .filter(|(s, _)| *s == Severity::Error)
            .map(|(_, l)| l)
            .collect(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// MINIMAL (8 lines) then an `[[account]]` header on line 10 with `keys` from line 11.
pub(super) fn account(keys: &str) -> String {
    format!("{MINIMAL}\n[[account]]\n{keys}\n")
}

/// The warnings for `src`, but MINIMAL's own (@quarterly is longer than 90d).
pub(super) fn warnings_of(src: &str) -> Vec<String> {
    let (_, diags) = Config::from_source(Path::new("t.toml"), src).unwrap();
    diags
        .warnings()
        .filter(|w| !w.contains("default_schedule"))
        .collect()
}
