//! `[[group]]`: named lists of users, for `custodians = ["group:NAME"]`.

use std::collections::HashSet;

use toml::Spanned;
use toml::de::DeValue;

use crate::config::Group;
use crate::config::diag::Diagnostics;
use crate::config::parse::de_table;
use crate::config::raw::RawGroup;

/// The `[[group]]` tables, validated, and the names declared (also those of groups with
/// errors, so that a custodian naming one is not reported as well).
pub(crate) fn groups(
    diags: &mut Diagnostics,
    items: Vec<Spanned<DeValue<'_>>>,
) -> (Vec<Group>, HashSet<String>) {
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    for item in items {
        let span = item.span();
        let Some(g) = de_table::<RawGroup>(&item, "group", diags) else {
            continue;
        };
        let Some(name) = &g.name else {
            diags.error(span.clone(), "[[group]] is missing `name`");
            continue;
        };
        if name.get_ref().trim().is_empty() {
            diags.error(name.span(), "[[group]] name may not be empty");
        }
        if !names.insert(name.get_ref().clone()) {
            diags.error(name.span(), format!("duplicate group `{}`", name.get_ref()));
        }
        for m in g.members.iter().flat_map(|m| m.get_ref().iter()) {
            if m.get_ref().trim().is_empty() {
                diags.error(m.span(), "a group member may not be empty");
            } else if m.get_ref().starts_with("group:") {
                // Groups do not nest: `group:x` here would silently be a user name.
                diags.error(
                    m.span(),
                    format!(
                        "groups do not nest: list the members of `{}` here instead",
                        m.get_ref()
                    ),
                );
            }
        }
        groups.push(Group {
            name: name.get_ref().clone(),
            members: g
                .members
                .iter()
                .flat_map(|m| m.get_ref().iter())
                .map(|m| m.get_ref().clone())
                .collect(),
        });
    }
    (groups, names)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{MINIMAL, errors};

    #[test]
    fn groups_are_flat_and_declared_once() {
        let src = format!(
            "{MINIMAL}custodians = [\"group:dba\", \"group:ops\"]\n\n[[group]]\nname = \"dba\"\nmembers = [\"alice\", \"group:ops\", \"\"]\n\n[[group]]\nname = \"dba\"\nmembers = [\"bob\"]\n"
        );
        assert_eq!(
            errors(&src),
            vec![
                "t.toml:9:28: error: custodian `group:ops` names no [[group]]; declare a [[group]] with name = \"ops\", or configure [identity_center] to take the members of an Identity Center group",
                "t.toml:13:21: error: groups do not nest: list the members of `group:ops` here instead",
                "t.toml:13:34: error: a group member may not be empty",
                "t.toml:16:8: error: duplicate group `dba`",
            ]
        );
    }
}
