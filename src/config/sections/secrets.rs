//! `[[secret]]` and `[[selector]]`: the secrets rotationd manages, named one by one or
//! matched by tag or name prefix, each with its [settings](super::settings).

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::DeValue;

use super::accounts::Listed;
use super::settings::{Declared, raw_settings, settings};
use crate::arn::Arn;
use crate::config::checks::{Schedules, check_arn, check_secret_name};
use crate::config::diag::Diagnostics;
use crate::config::parse::de_table;
use crate::config::raw::{RawSecret, RawSelector};
use crate::config::{Matcher, PolicyConfig, SecretConfig, SelectorConfig};

/// The `[[secret]]` tables, validated, in file order; a secret given by ARN must be in an
/// account and region `listed` by `[[account]]` (when there are any).
pub(crate) fn secrets(
    diags: &mut Diagnostics,
    items: Vec<Spanned<DeValue<'_>>>,
    listed: &Listed,
    policy: &PolicyConfig,
    declared: &Declared,
    schedules: &mut Schedules,
) -> Vec<SecretConfig> {
    let mut secrets = Vec::new();
    // Names (and, without [[account]]s, ARNs by their name) -> where first declared.
    let mut seen_ids: HashMap<String, Range<usize>> = HashMap::new();
    // With [[account]]s: ARNs by (account, region, name), and the first ARN of each name.
    let mut seen_arns: HashMap<(String, String, String), Range<usize>> = HashMap::new();
    let mut arn_names: HashMap<String, Range<usize>> = HashMap::new();
    for item in items {
        let span = item.span();
        let Some(s) = de_table::<RawSecret>(&item, "secret", diags) else {
            continue;
        };
        drop(item);
        let id = match &s.id {
            None => {
                diags.error(
                    span.clone(),
                    "[[secret]] is missing `id` (a secret name or ARN)",
                );
                None
            }
            Some(id) => {
                let text = id.get_ref();
                let check = if text.starts_with("arn:") {
                    check_arn(text, "secretsmanager")
                } else {
                    check_secret_name(text)
                };
                let arn = text.starts_with("arn:");
                if let Err(e) = &check {
                    diags.error(id.span(), e.clone());
                } else if arn
                    && listed.any
                    && let Ok(Arn {
                        region, account, ..
                    }) = Arn::parse(text)
                {
                    match listed.regions.get(account) {
                        None => diags.error(
                            id.span(),
                            format!(
                                "secret `{text}` is in account {account}, which no [[account]] lists; add an [[account]] with id = \"{account}\" and regions = [\"{region}\"]"
                            ),
                        ),
                        Some((at, Some(regions))) if !regions.contains(region) => {
                            let (line, _) = diags.position(*at);
                            diags.error(
                                id.span(),
                                format!(
                                    "secret `{text}` is in region {region}, which [[account]] `{account}` (line {line}) does not list; add \"{region}\" to its regions"
                                ),
                            );
                        }
                        Some(_) => {}
                    }
                }
                // A secret named once by name and once by ARN is the same secret twice. With
                // [[account]]s names repeat across accounts: two ARNs are the same secret
                // only in the same account and region, while a name (looked up in every
                // account-region) still covers every ARN of that name.
                let parsed = Arn::parse(text).ok();
                let name = parsed.and_then(|a| a.secret_name()).unwrap_or(text);
                let place = parsed.filter(|_| listed.any && name != text).map(|a| {
                    (
                        a.account.to_string(),
                        a.region.to_string(),
                        name.to_string(),
                    )
                });
                let first = match &place {
                    None => seen_ids.get(name).or_else(|| arn_names.get(name)),
                    Some(key) => seen_ids.get(name).or_else(|| seen_arns.get(key)),
                };
                if let Some(first) = first {
                    let (line, _) = diags.position(first.start);
                    diags.error(
                        id.span(),
                        if name == text {
                            format!("duplicate secret id `{text}` (first declared on line {line})")
                        } else {
                            format!(
                                "duplicate secret id `{text}` (the secret `{name}` is first declared on line {line})"
                            )
                        },
                    );
                } else if let Some(key) = place {
                    arn_names.entry(name.to_string()).or_insert(id.span());
                    seen_arns.insert(key, id.span());
                } else {
                    seen_ids.insert(name.to_string(), id.span());
                }
                Some(text.clone())
            }
        };
        let what = format!(
            "[[secret]] {}",
            id.as_deref().map_or(String::new(), |i| format!("`{i}`"))
        );
        let settings = settings(
            diags,
            raw_settings!(s),
            span.clone(),
            what.trim(),
            policy,
            declared,
            schedules,
        );
        if let (Some(id), Some(settings)) = (id, settings) {
            secrets.push(SecretConfig { id, settings });
        }
    }
    secrets
}

/// The `[[selector]]` tables, validated, in file order (the first match decides).
pub(crate) fn selectors(
    diags: &mut Diagnostics,
    items: Vec<Spanned<DeValue<'_>>>,
    policy: &PolicyConfig,
    declared: &Declared,
    schedules: &mut Schedules,
) -> Vec<SelectorConfig> {
    let mut selectors = Vec::new();
    // Matcher text -> where it was first declared: a second selector with the same matcher
    // would be shadowed by the first (the first match decides a secret's settings).
    let mut seen_matchers: HashMap<String, usize> = HashMap::new();
    for item in items {
        let span = item.span();
        let Some(s) = de_table::<RawSelector>(&item, "selector", diags) else {
            continue;
        };
        drop(item);
        let matcher = match (&s.tag_key, &s.tag_value, &s.name_prefix) {
            (Some(k), v, None) => Some(Matcher::Tag {
                key: {
                    if k.get_ref().trim().is_empty() {
                        diags.error(k.span(), "tag_key may not be empty");
                    }
                    k.get_ref().clone()
                },
                value: v.as_ref().map(|v| v.get_ref().clone()),
            }),
            (None, None, Some(p)) => {
                if p.get_ref().is_empty() {
                    diags.error(p.span(), "name_prefix may not be empty");
                }
                Some(Matcher::NamePrefix(p.get_ref().clone()))
            }
            (None, Some(v), None) => {
                diags.error(v.span(), "tag_value needs a tag_key");
                None
            }
            (None, None, None) => {
                diags.error(
                    span.clone(),
                    "[[selector]] needs `tag_key` (and optionally `tag_value`) or `name_prefix`",
                );
                None
            }
            (_, _, Some(p)) => {
                diags.error(
                    p.span(),
                    "[[selector]] takes either tag_key/tag_value or name_prefix, not both",
                );
                None
            }
        };
        if let Some(m) = &matcher {
            let key = m.to_string();
            if let Some(first) = seen_matchers.get(&key) {
                let (line, _) = diags.position(*first);
                diags.error(
                    span.clone(),
                    format!(
                        "duplicate [[selector]] `{key}` (first declared on line {line}); merge the two"
                    ),
                );
            } else {
                seen_matchers.insert(key, span.start);
            }
        }
        let what = matcher.as_ref().map_or("[[selector]]".to_string(), |m| {
            format!("[[selector]] `{m}`")
        });
        let settings = settings(
            diags,
            raw_settings!(s),
            span.clone(),
            &what,
            policy,
            declared,
            schedules,
        );
        if let (Some(matcher), Some(settings)) = (matcher, settings) {
            selectors.push(SelectorConfig { matcher, settings });
        }
    }
    selectors
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{account, errors};

    #[test]
    fn secret_arns_must_be_in_a_listed_account_and_region() {
        let arn = |region: &str, account: &str| {
            format!("arn:aws:secretsmanager:{region}:{account}:secret:prod/db-AbC123")
        };
        let with = |id: &str| {
            account("id = \"111111111111\"\nregions = [\"eu-west-1\"]")
                .replace("\"prod/payments/db\"", &format!("\"{id}\""))
        };
        assert_eq!(
            errors(&with(&arn("eu-west-1", "111111111111"))),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(&with(&arn("eu-west-1", "333333333333"))),
            vec![format!(
                "t.toml:6:6: error: secret `{}` is in account 333333333333, which no [[account]] lists; add an [[account]] with id = \"333333333333\" and regions = [\"eu-west-1\"]",
                arn("eu-west-1", "333333333333")
            )]
        );
        assert_eq!(
            errors(&with(&arn("us-east-1", "111111111111"))),
            vec![format!(
                "t.toml:6:6: error: secret `{}` is in region us-east-1, which [[account]] `111111111111` (line 11) does not list; add \"us-east-1\" to its regions",
                arn("us-east-1", "111111111111")
            )]
        );
        // A malformed ARN is reported as such, not also as unlisted.
        let errs = errors(&with(
            "arn:aws:secretsmanager:us-east-1:1111:secret:prod/db-AbC123",
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("malformed ARN"), "{errs:?}");
    }

    #[test]
    fn duplicate_secrets_with_accounts() {
        let arn = "arn:aws:secretsmanager:eu-west-1:111111111111:secret:prod/payments/db-AbC123";
        let base = account("id = \"111111111111\"\nregions = [\"eu-west-1\"]");
        let second = |id: &str| {
            format!(
                "{base}\n[[secret]]\nid = \"{id}\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-2\"\n"
            )
        };
        // A name covers every account-region, so the same name by ARN is still a duplicate.
        let errs = errors(&second(arn));
        assert_eq!(
            errs,
            vec![format!(
                "t.toml:15:6: error: duplicate secret id `{arn}` (the secret `prod/payments/db` is first declared on line 6)"
            )]
        );
        // The same ARN twice, and an ARN then the name.
        let twice = base.replace("\"prod/payments/db\"", &format!("\"{arn}\""));
        let errs = errors(&format!(
            "{twice}\n[[secret]]\nid = \"{arn}\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-2\"\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("duplicate secret id"), "{errs:?}");
        let errs = errors(&format!(
            "{twice}\n[[secret]]\nid = \"prod/payments/db\"\nstrategy = \"single-user\"\nchange_ticket = \"CHG-2\"\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:15:6: error: duplicate secret id `prod/payments/db`"),
            "{errs:?}"
        );
    }
}
