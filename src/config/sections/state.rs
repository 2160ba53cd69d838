//! `[state]`: the state backend (the SQLite file or a DynamoDB table) and the leader lease.

use std::ops::Range;
use std::time::Duration;

use crate::config::checks::{Outside, check_table_name, duration, minutes, written_in_range};
use crate::config::diag::Diagnostics;
use crate::config::raw::RawState;
use crate::config::{
    DEFAULT_AUDIT_RETENTION, DEFAULT_LEASE, DEFAULT_RETENTION, StateBackend, StateConfig,
};

/// `[state]`, validated; `span` is its header's. A value written with a wrong type has been
/// reported already and is left out of the cross-field checks.
pub(crate) fn state(diags: &mut Diagnostics, span: Range<usize>, s: &RawState) -> StateConfig {
    // `None`: a wrong type or an unknown backend, already reported.
    let dynamodb = match &s.backend {
        None if s.written.has("backend") => None,
        None => Some(false),
        Some(b) => match b.get_ref().as_str() {
            "sqlite" => Some(false),
            "dynamodb" => Some(true),
            other => {
                diags.error(
                    b.span(),
                    format!(
                        "unknown state backend `{other}`, expected \"sqlite\" (the default) or \"dynamodb\""
                    ),
                );
                None
            }
        },
    };
    if let Some(t) = &s.table
        && let Err(e) = check_table_name(t.get_ref())
    {
        diags.error(t.span(), e);
    }
    match (dynamodb, &s.table) {
        (Some(true), None) if !s.written.has("table") => diags.error(
            span,
            "[state] is missing `table`; backend = \"dynamodb\" needs the DynamoDB table that holds the state, like table = \"rotationd-state\"",
        ),
        (Some(false), Some(t)) => diags.error(
            t.span(),
            format!(
                "`table` only applies to the dynamodb backend, but the backend is sqlite{}; set backend = \"dynamodb\" or remove `table`",
                if s.backend.is_none() { " (the default)" } else { "" }
            ),
        ),
        _ => {}
    }
    let lease = duration(diags, &s.lease, "lease", DEFAULT_LEASE);
    let in_range = written_in_range(
        diags,
        &s.lease,
        lease,
        Duration::from_secs(3)..=minutes(10),
        |side| {
            let text = s.lease.as_ref().map_or("", |v| v.get_ref());
            match side {
                Outside::Below => format!(
                    "lease `{text}` is too short: the leader renews it every third of the lease, which under 3s is too tight to survive one slow DynamoDB call; use 3s to 10m (30s is the default)"
                ),
                Outside::Above => format!(
                    "lease `{text}` is too long: a standby would wait up to two leases to take over; use 3s to 10m (30s is the default)"
                ),
            }
        },
    );
    if let Some(v) = &s.lease
        && in_range
        && dynamodb == Some(false)
    {
        diags.warning(
            v.span(),
            "`lease` only applies to the dynamodb backend and is ignored with sqlite; remove it or set backend = \"dynamodb\"",
        );
    }
    let backend = match (dynamodb, &s.table) {
        (Some(true), Some(t)) => StateBackend::Dynamodb {
            table: t.get_ref().clone(),
        },
        // Errors already recorded when dynamodb lacks its table.
        _ => StateBackend::Sqlite,
    };
    let day = |d: u64| Duration::from_secs(d * 86_400);
    let retention = kept(
        diags,
        &s.retention,
        "retention",
        DEFAULT_RETENTION,
        day(14)..=day(3650),
        "14d (longer than SQS keeps a message) to 10y; 30d is the default",
    );
    let audit_retention = kept(
        diags,
        &s.audit_retention,
        "audit_retention",
        DEFAULT_AUDIT_RETENTION,
        day(90)..=day(36500),
        "90d to 100y; 400d (a year of evidence and a quarter) is the default",
    );
    let max_size = s.max_size.as_ref().and_then(|v| match parse_size(v.get_ref()) {
        Some(n) if n >= MIN_MAX_SIZE => {
            if matches!(backend, StateBackend::Dynamodb { .. }) {
                diags.warning(v.span(), "`max_size` only applies to the sqlite backend and is ignored with dynamodb; remove it");
            }
            Some(n)
        }
        _ => {
            diags.error(
                v.span(),
                format!(
                    "invalid max_size `{}`: use a size of at least 64KiB in KiB, MiB or GiB, like max_size = \"256MiB\"",
                    v.get_ref()
                ),
            );
            None
        }
    });
    StateConfig {
        backend,
        lease: if in_range { lease } else { DEFAULT_LEASE },
        retention,
        audit_retention,
        max_size,
    }
}

/// The smallest `max_size` accepted: below it not even the schema fits.
const MIN_MAX_SIZE: u64 = 64 * 1024;

/// `key`'s duration, checked against `range` (`hint` says what is allowed); `default`
/// when absent or invalid (the error is recorded).
fn kept(
    diags: &mut Diagnostics,
    key: &crate::config::raw::S<String>,
    name: &str,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
    hint: &str,
) -> Duration {
    let value = duration(diags, key, name, default);
    let text = key.as_ref().map_or("", |v| v.get_ref());
    if written_in_range(diags, key, value, range, |_| {
        format!("{name} `{text}` is out of range: use {hint}")
    }) {
        value
    } else {
        default
    }
}

/// `64KiB`, `256MiB`, `2GiB`: bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit = match unit.trim() {
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::config::testing::{MINIMAL, errors, warnings_of};

    /// MINIMAL (8 lines) then a `[state]` header on line 10 with `keys` from line 11.
    fn state_section(keys: &str) -> String {
        format!("{MINIMAL}\n[state]\n{keys}\n")
    }

    #[test]
    fn without_a_state_section_the_state_is_sqlite() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(cfg.state, StateConfig::default());
        assert_eq!(cfg.state.backend, StateBackend::Sqlite);
        assert_eq!(cfg.state.lease, Duration::from_secs(30));
        // Written out, the same.
        let src = state_section("backend = \"sqlite\"");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(cfg.state, StateConfig::default());
        assert!(warnings_of(&src).is_empty());
    }

    #[test]
    fn a_dynamodb_state_section_is_accepted() {
        let src =
            state_section("backend = \"dynamodb\"\ntable = \"rotationd-state\"\nlease = \"45s\"");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(
            cfg.state,
            StateConfig {
                backend: StateBackend::Dynamodb {
                    table: "rotationd-state".into()
                },
                lease: Duration::from_secs(45),
                ..StateConfig::default()
            }
        );
        assert!(warnings_of(&src).is_empty());
        // The lease defaults to 30s; both bounds are allowed; any DynamoDB table name.
        for (lease, want) in [("", 30), ("lease = \"3s\"", 3), ("lease = \"10m\"", 600)] {
            let table = format!("Rotation_State-1.{}", "x".repeat(238));
            assert_eq!(table.len(), 255);
            let src = state_section(&format!(
                "backend = \"dynamodb\"\ntable = \"{table}\"\n{lease}"
            ));
            let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
            assert_eq!(cfg.state.lease, Duration::from_secs(want), "{lease}");
            assert_eq!(cfg.state.backend, StateBackend::Dynamodb { table });
        }
        let src = state_section("backend = \"dynamodb\"\ntable = \"a.b\"");
        assert_eq!(errors(&src), Vec::<String>::new());
    }

    #[test]
    fn a_state_backend_is_sqlite_or_dynamodb() {
        assert_eq!(
            errors(&state_section("backend = \"postgres\"")),
            vec![
                "t.toml:11:11: error: unknown state backend `postgres`, expected \"sqlite\" (the default) or \"dynamodb\""
            ]
        );
        assert_eq!(errors(&state_section("backend = \"DynamoDB\"")).len(), 1);
        // With an unknown backend, `table` is not also reported as out of place.
        let src = state_section("backend = \"dynamo\"\ntable = \"rotationd-state\"");
        assert_eq!(errors(&src).len(), 1, "{:?}", errors(&src));
        // Nor with a backend of the wrong type.
        let errs = errors(&state_section("backend = 1\ntable = \"rotationd-state\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:11:11: error: `backend`: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_dynamodb_backend_needs_a_table() {
        assert_eq!(
            errors(&state_section("backend = \"dynamodb\"")),
            vec![
                "t.toml:10:2: error: [state] is missing `table`; backend = \"dynamodb\" needs the DynamoDB table that holds the state, like table = \"rotationd-state\""
            ]
        );
        // A table of the wrong type is reported once, not also as missing.
        let errs = errors(&state_section("backend = \"dynamodb\"\ntable = 5"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:12:9: error: `table`: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn state_table_names_follow_dynamodb_rules() {
        let with = |table: &str| {
            errors(&state_section(&format!(
                "backend = \"dynamodb\"\ntable = \"{table}\""
            )))
        };
        assert_eq!(
            with("rotationd state"),
            vec![
                "t.toml:12:9: error: table name `rotationd state` contains ` `; DynamoDB table names may hold only letters, digits, `_`, `-` and `.`"
            ]
        );
        assert_eq!(
            with("ab"),
            vec![
                "t.toml:12:9: error: table name `ab` is too short; DynamoDB table names have 3 to 255 characters, like \"rotationd-state\""
            ]
        );
        assert_eq!(
            with(&"t".repeat(256)),
            vec![
                "t.toml:12:9: error: table name is 256 characters long; DynamoDB table names have at most 255, so shorten it"
            ]
        );
        assert_eq!(
            with(""),
            vec![
                "t.toml:12:9: error: `table` may not be empty; name the DynamoDB table that holds the state, like \"rotationd-state\""
            ]
        );
        for bad in ["rotationd/state", "état-rotation", "rotationd:state", "a+b"] {
            let errs = with(bad);
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(errs[0].contains("contains"), "{errs:?}");
        }
    }

    #[test]
    fn a_table_needs_the_dynamodb_backend() {
        assert_eq!(
            errors(&state_section("table = \"rotationd-state\"")),
            vec![
                "t.toml:11:9: error: `table` only applies to the dynamodb backend, but the backend is sqlite (the default); set backend = \"dynamodb\" or remove `table`"
            ]
        );
        assert_eq!(
            errors(&state_section(
                "backend = \"sqlite\"\ntable = \"rotationd-state\""
            )),
            vec![
                "t.toml:12:9: error: `table` only applies to the dynamodb backend, but the backend is sqlite; set backend = \"dynamodb\" or remove `table`"
            ]
        );
    }

    #[test]
    fn a_lease_is_between_3s_and_10m() {
        let with = |lease: &str| {
            errors(&state_section(&format!(
                "backend = \"dynamodb\"\ntable = \"rotationd-state\"\nlease = \"{lease}\""
            )))
        };
        assert_eq!(
            with("2s"),
            vec![
                "t.toml:13:9: error: lease `2s` is too short: the leader renews it every third of the lease, which under 3s is too tight to survive one slow DynamoDB call; use 3s to 10m (30s is the default)"
            ]
        );
        assert_eq!(
            with("11m"),
            vec![
                "t.toml:13:9: error: lease `11m` is too long: a standby would wait up to two leases to take over; use 3s to 10m (30s is the default)"
            ]
        );
        assert_eq!(with("2s 999ms").len(), 1);
        assert_eq!(with("10m 1s").len(), 1);
        // Zero and nonsense are reported once, by the duration parser.
        for bad in ["0s", "soon"] {
            let errs = with(bad);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(!errs[0].contains("too short"), "{errs:?}");
        }
    }

    #[test]
    fn a_lease_with_sqlite_warns() {
        let src = state_section("lease = \"1m\"");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(cfg.state.backend, StateBackend::Sqlite);
        assert_eq!(
            warnings_of(&src),
            vec![
                "t.toml:11:9: warning: `lease` only applies to the dynamodb backend and is ignored with sqlite; remove it or set backend = \"dynamodb\""
            ]
        );
        assert_eq!(
            warnings_of(&state_section("backend = \"sqlite\"\nlease = \"1m\"")).len(),
            1
        );
        // Not with dynamodb.
        let src =
            state_section("backend = \"dynamodb\"\ntable = \"rotationd-state\"\nlease = \"1m\"");
        assert!(warnings_of(&src).is_empty());
        // Out of range: the error, not also the warning.
        let errs = errors(&state_section("lease = \"1s\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn state_keys_are_checked() {
        let errs = errors(&state_section(
            "backend = \"dynamodb\"\ntabel = \"rotationd-state\"",
        ));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:10:2: error: [state] is missing `table`"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with(
                "t.toml:12:1: error: unknown field `tabel`, expected one of `backend`, `table`, `lease`"
            ),
            "{errs:?}"
        );
        // The unknown-section message lists `state`.
        let errs = errors(&format!("{MINIMAL}\n[stat]\n"));
        assert!(
            errs[0].contains("expected one of: aws, account, daemon, state, audit, alerts,"),
            "{errs:?}"
        );
    }

    #[test]
    fn retention_and_the_size_cap_are_checked() {
        let (cfg, _) = Config::from_source(
            Path::new("t.toml"),
            &state_section("retention = \"60d\"\naudit_retention = \"2y\"\nmax_size = \"256MiB\""),
        )
        .unwrap();
        assert_eq!(cfg.state.retention, Duration::from_secs(60 * 86_400));
        assert_eq!(cfg.state.max_size, Some(256 << 20));
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(
            (
                cfg.state.retention,
                cfg.state.audit_retention,
                cfg.state.max_size
            ),
            (
                Duration::from_secs(30 * 86_400),
                Duration::from_secs(400 * 86_400),
                None
            )
        );
        assert_eq!(
            errors(&state_section(
                "retention = \"7d\"\naudit_retention = \"30d\"\nmax_size = \"1MB\""
            )),
            [
                "t.toml:11:13: error: retention `7d` is out of range: use 14d (longer than SQS keeps a message) to 10y; 30d is the default",
                "t.toml:12:19: error: audit_retention `30d` is out of range: use 90d to 100y; 400d (a year of evidence and a quarter) is the default",
                "t.toml:13:12: error: invalid max_size `1MB`: use a size of at least 64KiB in KiB, MiB or GiB, like max_size = \"256MiB\"",
            ]
        );
        assert_eq!(errors(&state_section("max_size = \"32KiB\"")).len(), 1);
    }
}
