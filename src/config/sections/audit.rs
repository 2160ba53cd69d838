//! `[audit]`: the anchors of the audit log, its chain head written to an S3 bucket under
//! Object Lock (compliance mode) so that a rewritten or truncated log shows against them.

use std::time::Duration;

use crate::config::checks::{Outside, duration, minutes, written_in_range};
use crate::config::diag::Diagnostics;
use crate::config::raw::{RawAudit, S};
use crate::config::{
    AnchorConfig, AuditConfig, DEFAULT_ANCHOR_EVERY, DEFAULT_ANCHOR_PREFIX,
    DEFAULT_ANCHOR_RETENTION, fmt_duration,
};

/// The longest `anchor_prefix`: S3 keys have at most 1024 bytes, and an anchor's own name
/// (entry id, hash, `.json`) takes about 90 of them.
const MAX_PREFIX: usize = 900;

/// `[audit]`, validated. `audit_retention` is `[state]`'s: anchors locked for less time
/// than the entries they vouch for are kept get a warning.
pub(crate) fn audit(
    diags: &mut Diagnostics,
    a: &RawAudit,
    audit_retention: Duration,
) -> AuditConfig {
    let day = |d: u64| Duration::from_secs(d * 86_400);
    let every = duration(diags, &a.anchor_every, "anchor_every", DEFAULT_ANCHOR_EVERY);
    let every_ok = written_in_range(diags, &a.anchor_every, every, minutes(1)..=day(1), |side| {
        let text = text_of(&a.anchor_every);
        match side {
            Outside::Below => format!(
                "anchor_every `{text}` is too short: every anchor is an S3 object kept locked for anchor_retention; use 1m to 1d (1h is the default)"
            ),
            Outside::Above => format!(
                "anchor_every `{text}` is too long: entries written after the last anchor are not covered by one; use 1m to 1d (1h is the default)"
            ),
        }
    });
    let retention = duration(
        diags,
        &a.anchor_retention,
        "anchor_retention",
        DEFAULT_ANCHOR_RETENTION,
    );
    let retention_ok = written_in_range(
        diags,
        &a.anchor_retention,
        retention,
        day(1)..=day(36500),
        |_| {
            format!(
                "anchor_retention `{}` is out of range: use 1d to 100y; 400d (as [state] audit_retention) is the default",
                text_of(&a.anchor_retention)
            )
        },
    );
    if let Some(r) = &a.anchor_retention
        && retention_ok
        && retention < audit_retention
    {
        diags.warning(
            r.span(),
            format!(
                "anchor_retention ({}) is shorter than [state] audit_retention ({}): anchors may be deleted once unlocked while the entries they vouch for are still kept; use at least {}",
                fmt_duration(retention),
                fmt_duration(audit_retention),
                fmt_duration(audit_retention)
            ),
        );
    }
    let prefix = match &a.anchor_prefix {
        None => DEFAULT_ANCHOR_PREFIX.to_owned(),
        Some(p) => {
            if let Err(e) = check_prefix(p.get_ref()) {
                diags.error(p.span(), e);
            }
            p.get_ref().clone()
        }
    };
    let Some(bucket) = &a.anchor_bucket else {
        for (key, name) in [
            (&a.anchor_prefix, "anchor_prefix"),
            (&a.anchor_every, "anchor_every"),
            (&a.anchor_retention, "anchor_retention"),
        ] {
            if let Some(k) = key {
                diags.error(
                    k.span(),
                    format!(
                        "`{name}` needs `anchor_bucket`: set anchor_bucket = \"NAME\" to an S3 bucket with Object Lock enabled, or remove `{name}`"
                    ),
                );
            }
        }
        return AuditConfig::default();
    };
    if let Err(e) = check_bucket_name(bucket.get_ref()) {
        diags.error(bucket.span(), e);
    }
    AuditConfig {
        anchor: Some(AnchorConfig {
            bucket: bucket.get_ref().clone(),
            prefix,
            every: if every_ok {
                every
            } else {
                DEFAULT_ANCHOR_EVERY
            },
            retention: if retention_ok {
                retention
            } else {
                DEFAULT_ANCHOR_RETENTION
            },
        }),
    }
}

fn text_of(key: &S<String>) -> &str {
    key.as_ref().map_or("", |v| v.get_ref())
}

/// S3 bucket names (general purpose buckets): 3 to 63 characters of lowercase letters,
/// digits, `.` and `-`, beginning and ending with a letter or digit, no `..`.
fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "bucket name `{name}` must be 3 to 63 characters long, like anchor_bucket = \"example-rotationd-audit\""
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(*c)))
    {
        return Err(format!(
            "bucket name `{name}` contains `{c}`; S3 bucket names hold only lowercase letters, digits, `.` and `-`"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) || name.contains("..") {
        return Err(format!(
            "bucket name `{name}` must begin and end with a letter or digit and have no `..`"
        ));
    }
    Ok(())
}

/// An `anchor_prefix`: printable, not starting with `/`, short enough for a whole key.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_PREFIX {
        return Err(format!(
            "anchor_prefix is {} bytes long; S3 keys have at most 1024 bytes and an anchor's own name needs about 90, so use at most {MAX_PREFIX}",
            prefix.len()
        ));
    }
    if prefix.starts_with('/') {
        return Err(format!(
            "anchor_prefix `{prefix}` starts with `/`; S3 keys have no leading slash, so write it like \"rotationd/audit-anchors/\""
        ));
    }
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return Err(format!(
            "anchor_prefix contains the control character {c:?}; use printable characters, like \"rotationd/audit-anchors/\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::config::testing::{MINIMAL, errors, warnings_of};

    fn audit_section(keys: &str) -> String {
        format!("{MINIMAL}\n[audit]\n{keys}\n")
    }

    #[test]
    fn without_a_bucket_nothing_is_anchored() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(cfg.audit, AuditConfig::default());
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &audit_section("")).unwrap();
        assert_eq!(cfg.audit.anchor, None);
    }

    #[test]
    fn a_bucket_gets_the_defaults() {
        let src = audit_section("anchor_bucket = \"example-audit\"");
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(
            cfg.audit.anchor,
            Some(AnchorConfig {
                bucket: "example-audit".into(),
                prefix: "rotationd/audit-anchors/".into(),
                every: Duration::from_secs(3600),
                retention: Duration::from_secs(400 * 86_400),
            })
        );
        assert!(warnings_of(&src).is_empty());
        let src = audit_section(
            "anchor_bucket = \"example-audit\"\nanchor_prefix = \"prod/\"\nanchor_every = \"15m\"\nanchor_retention = \"7y\"",
        );
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        let a = cfg.audit.anchor.unwrap();
        assert_eq!(a.prefix, "prod/");
        assert_eq!(a.every, Duration::from_secs(900));
        assert!(a.retention > Duration::from_secs(7 * 365 * 86_400));
    }

    #[test]
    fn keys_without_a_bucket_and_bad_values_are_errors() {
        assert_eq!(
            errors(&audit_section("anchor_every = \"1h\"")),
            [
                "t.toml:11:16: error: `anchor_every` needs `anchor_bucket`: set anchor_bucket = \"NAME\" to an S3 bucket with Object Lock enabled, or remove `anchor_every`"
            ]
        );
        let errs = errors(&audit_section(
            "anchor_bucket = \"Bad_Bucket\"\nanchor_every = \"5s\"\nanchor_retention = \"200y\"\nanchor_prefix = \"/x/\"",
        ));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs[0].contains("bucket name `Bad_Bucket` contains `B`"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("anchor_every `5s` is too short"),
            "{errs:?}"
        );
        assert!(
            errs[2].contains("anchor_retention `200y` is out of range"),
            "{errs:?}"
        );
        assert!(errs[3].contains("starts with `/`"), "{errs:?}");
        assert!(
            errors(&audit_section("anchor_bucket = \"-edge\""))[0]
                .contains("must begin and end with a letter or digit")
        );
    }

    #[test]
    fn anchors_unlocked_before_the_entries_are_pruned_are_warned_of() {
        let src = audit_section("anchor_bucket = \"example-audit\"\nanchor_retention = \"30d\"");
        let w = warnings_of(&src);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("anchor_retention (30d) is shorter than [state] audit_retention (400d)"),
            "{w:?}"
        );
    }
}
