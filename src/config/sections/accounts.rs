//! `[aws]` and `[[account]]`: where the daemon's own AWS calls go, and the accounts and
//! regions whose secrets it manages.

use std::collections::{HashMap, HashSet};

use toml::Spanned;
use toml::de::DeValue;

use crate::config::checks::{check_role_arn, http_url, is_account_id, region};
use crate::config::diag::Diagnostics;
use crate::config::parse::de_keyed;
use crate::config::raw::{RawAccount, RawAws};
use crate::config::{Account, AwsConfig};

/// `[aws]`, validated.
pub(crate) fn aws(diags: &mut Diagnostics, raw: &RawAws) -> AwsConfig {
    AwsConfig {
        region: raw.region.as_ref().map(|r| {
            region(diags, r);
            r.get_ref().clone()
        }),
        profile: raw.profile.as_ref().map(|p| p.get_ref().clone()),
        endpoint_url: raw
            .endpoint_url
            .as_ref()
            .map(|u| http_url(diags, u, "endpoint_url")),
    }
}

/// The accounts and regions the `[[account]]` tables list, as written: what a `[[secret]]`
/// given by ARN is checked against, also when a table has errors, so that one mistake is
/// reported once.
#[derive(Default)]
pub(crate) struct Listed {
    /// Whether the file has `[[account]]` tables at all (without them, any account goes).
    pub(crate) any: bool,
    /// Id -> where it was first declared, and its regions (`None` when `regions` is
    /// missing or empty, already an error: then any region passes).
    pub(crate) regions: HashMap<String, (usize, Option<HashSet<String>>)>,
}

/// The `[[account]]` tables, validated, in file order.
pub(crate) fn accounts(
    diags: &mut Diagnostics,
    items: Vec<Spanned<DeValue<'_>>>,
) -> (Vec<Account>, Listed) {
    let mut accounts = Vec::new();
    let mut listed = Listed {
        any: !items.is_empty(),
        ..Listed::default()
    };
    for item in items {
        let span = item.span();
        let Some(a) = de_keyed::<RawAccount>(&item, "account", diags) else {
            continue;
        };
        drop(item);
        let id = match &a.id {
            None => {
                if !a.written.has("id") {
                    diags.error(
                        span.clone(),
                        "[[account]] is missing `id`; set the 12-digit id of the AWS account",
                    );
                }
                None
            }
            Some(id) => {
                let text = id.get_ref();
                if !is_account_id(text) {
                    diags.error(
                        id.span(),
                        format!(
                            "account id `{text}` must be exactly 12 digits; write the AWS account id with its leading zeros, like \"012345678901\""
                        ),
                    );
                } else if let Some((first, _)) = listed.regions.get(text) {
                    let (line, _) = diags.position(*first);
                    diags.error(
                        id.span(),
                        format!(
                            "duplicate [[account]] `{text}` (first declared on line {line}); merge the two"
                        ),
                    );
                }
                Some(text.clone())
            }
        };
        let what = id
            .as_deref()
            .map_or("[[account]]".to_string(), |i| format!("[[account]] `{i}`"));
        let role_arn = a.role_arn.as_ref().map(|r| {
            let text = r.get_ref();
            match check_role_arn(text) {
                Err(e) => diags.error(r.span(), e),
                Ok(owner) => {
                    if let Some(id) = id.as_deref().filter(|i| is_account_id(i))
                        && owner != id
                    {
                        diags.error(
                            r.span(),
                            format!(
                                "role_arn is a role in account {owner}, not in this [[account]] ({id}); name the role rotationd assumes in account {id}"
                            ),
                        );
                    }
                }
            }
            text.clone()
        });
        let mut regions: Vec<String> = Vec::new();
        match &a.regions {
            None if a.written.has("regions") => {}
            None => diags.error(
                span.clone(),
                format!(
                    "{what} is missing `regions`; list the regions whose secrets rotationd manages in it, like regions = [\"us-east-1\"]"
                ),
            ),
            Some(list) if list.get_ref().is_empty() => diags.error(
                list.span(),
                format!(
                    "{what} has no regions; list at least one region whose secrets rotationd manages in it, like [\"us-east-1\"]"
                ),
            ),
            Some(list) => {
                for r in list.get_ref() {
                    let text = r.get_ref();
                    if region(diags, r) && regions.contains(text) {
                        diags.error(
                            r.span(),
                            format!("region `{text}` is listed twice for {what}; remove one"),
                        );
                        continue;
                    }
                    regions.push(text.clone());
                }
            }
        }
        if let Some(id) = &id {
            let start = a.id.as_ref().map_or(span.start, |i| i.span().start);
            let known = &mut listed
                .regions
                .entry(id.clone())
                .or_insert_with(|| (start, Some(HashSet::new())))
                .1;
            match known {
                Some(set) if !regions.is_empty() => set.extend(regions.iter().cloned()),
                // Regions unknown: any region passes the secret check.
                _ => *known = None,
            }
        }
        accounts.push(Account {
            id: id.unwrap_or_default(),
            role_arn,
            regions,
        });
    }
    (accounts, listed)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::testing::{MINIMAL, account, errors};
    use crate::config::{Account, Config};

    const ACCOUNTS: &str = r#"
[aws]
region = "eu-west-1"

[alerts]
security_topic_arn = "arn:aws:sns:eu-west-1:111111111111:security"

[policy]
max_age = "93d"

[[account]]
id = "111111111111"
role_arn = "arn:aws:iam::111111111111:role/ops/rotationd"
regions = ["eu-west-1", "us-east-1"]

[[account]]
id = "022222222222"
regions = ["ap-southeast-2"]

[[secret]]
id = "prod/payments/db"
strategy = "single-user"
change_ticket = "CHG-1"

[[secret]]
id = "arn:aws:secretsmanager:us-east-1:111111111111:secret:prod/vendor/stripe-AbC123"
strategy = "single-user"
change_ticket = "CHG-2"

[[secret]]
id = "arn:aws:secretsmanager:ap-southeast-2:022222222222:secret:prod/vendor/stripe-XyZ789"
strategy = "single-user"
change_ticket = "CHG-3"
"#;

    #[test]
    fn accounts_parse_in_file_order() {
        let (cfg, warnings) = Config::from_source(Path::new("t.toml"), ACCOUNTS).unwrap();
        assert_eq!(
            cfg.accounts,
            vec![
                Account {
                    id: "111111111111".into(),
                    role_arn: Some("arn:aws:iam::111111111111:role/ops/rotationd".into()),
                    regions: vec!["eu-west-1".into(), "us-east-1".into()],
                },
                Account {
                    id: "022222222222".into(),
                    role_arn: None,
                    regions: vec!["ap-southeast-2".into()],
                },
            ]
        );
        // The same name in two accounts, by ARN, is two secrets.
        assert_eq!(cfg.secrets.len(), 3);
        assert_eq!(cfg.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(warnings.warnings().count(), 0);
    }

    #[test]
    fn no_account_tables_means_no_accounts() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert!(cfg.accounts.is_empty());
        // Without [[account]], a secret ARN in any account is accepted, as before.
        let src = MINIMAL.replace(
            "\"prod/payments/db\"",
            "\"arn:aws:secretsmanager:us-west-2:333333333333:secret:prod/db-AbC123\"",
        );
        assert_eq!(errors(&src), Vec::<String>::new());
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert_eq!(
            errors(&account("id = \"11111111111\"\nregions = [\"eu-west-1\"]")),
            vec![
                "t.toml:11:6: error: account id `11111111111` must be exactly 12 digits; write the AWS account id with its leading zeros, like \"012345678901\""
            ]
        );
        for bad in [
            "1111111111111",
            "1111-1111-11",
            "11111111111a",
            "１１１１１１１１１１１１",
            "",
        ] {
            let errs = errors(&account(&format!(
                "id = \"{bad}\"\nregions = [\"eu-west-1\"]"
            )));
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(errs[0].contains("must be exactly 12 digits"), "{errs:?}");
        }
        assert_eq!(
            errors(&account("regions = [\"eu-west-1\"]")),
            vec![
                "t.toml:10:1: error: [[account]] is missing `id`; set the 12-digit id of the AWS account"
            ]
        );
        // A wrong type is reported once, not also as a missing key.
        let errs = errors(&account("id = 111111111111\nregions = [\"eu-west-1\"]"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.toml:11:6: error: `id`: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_role_must_be_in_its_account() {
        let src = account(
            "id = \"111111111111\"\nrole_arn = \"arn:aws:iam::222222222222:role/rotationd\"\nregions = [\"eu-west-1\"]",
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:12:12: error: role_arn is a role in account 222222222222, not in this [[account]] (111111111111); name the role rotationd assumes in account 111111111111"
            ]
        );
        // With the id itself wrong, only the id is reported.
        let src = account(
            "id = \"1111\"\nrole_arn = \"arn:aws:iam::222222222222:role/rotationd\"\nregions = [\"eu-west-1\"]",
        );
        assert_eq!(errors(&src).len(), 1);
    }

    #[test]
    fn account_regions_are_regions_listed_once() {
        let src = account(
            "id = \"111111111111\"\nregions = [\"eu-west1\", \"us-east-1\", \"US-EAST-1\", \"us-east-1\", \"us-gov-west-1\"]",
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:12:12: error: `eu-west1` is not an AWS region (like us-east-1)",
                "t.toml:12:37: error: `US-EAST-1` is not an AWS region (like us-east-1)",
                "t.toml:12:50: error: region `us-east-1` is listed twice for [[account]] `111111111111`; remove one",
            ]
        );
    }

    #[test]
    fn an_account_needs_regions() {
        assert_eq!(
            errors(&account("id = \"111111111111\"\nregions = []")),
            vec![
                "t.toml:12:11: error: [[account]] `111111111111` has no regions; list at least one region whose secrets rotationd manages in it, like [\"us-east-1\"]"
            ]
        );
        assert_eq!(
            errors(&account("id = \"111111111111\"")),
            vec![
                "t.toml:10:1: error: [[account]] `111111111111` is missing `regions`; list the regions whose secrets rotationd manages in it, like regions = [\"us-east-1\"]"
            ]
        );
        // A misspelt key: unknown, and then `regions` is missing.
        let errs = errors(&account("id = \"111111111111\"\nregion = \"eu-west-1\""));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[1].starts_with("t.toml:12:1: error: unknown field `region`, expected one of `id`, `role_arn`, `regions`"),
            "{errs:?}"
        );
    }

    #[test]
    fn an_account_is_declared_once() {
        let src = account(
            "id = \"111111111111\"\nregions = [\"eu-west-1\"]\n\n[[account]]\nid = \"111111111111\"\nregions = [\"us-east-1\"]",
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:15:6: error: duplicate [[account]] `111111111111` (first declared on line 11); merge the two"
            ]
        );
        // `account` is an array of tables.
        let errs = errors(&format!("{MINIMAL}\n[account]\nid = \"111111111111\"\n"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("`account` must be an array of tables (`[[account]]`)"),
            "{errs:?}"
        );
    }
}
