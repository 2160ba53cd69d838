//! Reading the TOML document into the [`raw`](super::raw) structs, one table at a time.
//!
//! A table that fails to deserialize is retried key by key, so that every bad key is
//! reported and the good ones still reach the checks; nested tables (`[events.cloudtrail]`,
//! `[[dependent.metrics]]`...) are read on their own for the same reason. Arrays of tables
//! (`[[secret]]`...) are left as parsed values, for their sections to read entry by entry.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diag::{Diagnostics, toml_error, toml_message};
use super::raw::*;

/// Deserializes one table; on failure retries each key alone to report every bad key,
/// then deserializes what is left without the bad keys so that the cross-field checks
/// still run on the rest (the file stays rejected: the errors are recorded).
pub(super) fn de_table<T: DeserializeOwned + Default>(
    value: &Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    let DeValue::Table(table) = value.get_ref() else {
        diags.error(
            value.span(),
            format!(
                "`{what}` must be a table, found {}",
                value.get_ref().type_str()
            ),
        );
        return None;
    };
    let whole = match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(t) => return Some(t),
        Err(whole) => whole,
    };
    let mut good = DeTable::new();
    let mut bad = 0;
    for (key, val) in table.iter() {
        let mut one = DeTable::new();
        one.insert(key.clone(), val.clone());
        let one = Spanned::new(value.span(), DeValue::Table(one));
        match T::deserialize(ValueDeserializer::from(one)) {
            Ok(_) => {
                good.insert(key.clone(), val.clone());
            }
            Err(err) => {
                bad += 1;
                let name: &str = key.get_ref();
                let span = err.span().unwrap_or_else(|| key.span());
                let msg = toml_message(&err);
                let msg = msg.as_str();
                // Unknown-key messages name the key already; type errors do not.
                let msg = if msg.contains(&format!("`{name}`")) {
                    msg.to_string()
                } else {
                    format!("`{name}`: {msg}")
                };
                diags.error(span, msg);
            }
        }
    }
    if bad == 0 {
        toml_error(diags, whole, value.span());
        return None;
    }
    T::deserialize(ValueDeserializer::from(Spanned::new(
        value.span(),
        DeValue::Table(good),
    )))
    .ok()
}

/// [`de_table`] for a table with required keys: also records the keys written in it, so
/// that a required key written with a wrong type is reported once, as such, and not also
/// as missing.
pub(super) fn de_keyed<T: DeserializeOwned + Default + Keyed>(
    value: &Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    let mut table = de_table::<T>(value, what, diags)?;
    if let DeValue::Table(written) = value.get_ref() {
        *table.written_mut() = Written::new(written.keys().map(|k| k.get_ref().to_string()));
    }
    Some(table)
}

/// `[events]` with its nested `[events.cloudtrail]`, `[[events.departure]]` and
/// `[[events.compromise]]` tables deserialized one by one, so that a bad key in one of them
/// is reported next to every other error instead of hiding the rest of that table.
fn de_events(value: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Option<RawEvents> {
    let DeValue::Table(table) = value.get_ref() else {
        return de_table(value, "events", diags);
    };
    let mut rest = DeTable::new();
    let mut cloudtrail = None;
    let mut departure = None;
    let mut compromise = None;
    for (key, val) in table.iter() {
        let name: &str = key.get_ref();
        match (name, val.get_ref()) {
            ("cloudtrail", DeValue::Table(_)) => {
                cloudtrail = de_table::<RawCloudTrail>(val, "events.cloudtrail", diags)
                    .map(|t| Spanned::new(val.span(), t));
            }
            ("departure" | "compromise", DeValue::Array(items)) => {
                let what = if name == "departure" {
                    "events.departure"
                } else {
                    "events.compromise"
                };
                let sources: Vec<Spanned<RawCustomSource>> = items
                    .iter()
                    .filter_map(|item| {
                        de_table::<RawCustomSource>(item, what, diags)
                            .map(|t| Spanned::new(item.span(), t))
                    })
                    .collect();
                let sources = Some(Spanned::new(val.span(), sources));
                if name == "departure" {
                    departure = sources;
                } else {
                    compromise = sources;
                }
            }
            // Any other shape: let the whole-table pass report it.
            _ => {
                rest.insert(key.clone(), val.clone());
            }
        }
    }
    let mut events = de_table::<RawEvents>(
        &Spanned::new(value.span(), DeValue::Table(rest)),
        "events",
        diags,
    )?;
    events.cloudtrail = cloudtrail.or(events.cloudtrail);
    events.departure = departure.or(events.departure);
    events.compromise = compromise.or(events.compromise);
    Some(events)
}

/// A `[[dependent]]` with each of its `[[dependent.metrics]]` tables deserialized on its
/// own (as [`de_events`] does for its nested tables), so that a bad key in one metric does
/// not hide the mistakes in the others.
pub(super) fn de_dependent(
    value: &Spanned<DeValue<'_>>,
    diags: &mut Diagnostics,
) -> Option<RawDependent> {
    let DeValue::Table(table) = value.get_ref() else {
        return de_table(value, "dependent", diags);
    };
    let mut rest = DeTable::new();
    let mut metrics = None;
    for (key, val) in table.iter() {
        match (&**key.get_ref(), val.get_ref()) {
            ("metrics", DeValue::Array(items)) => {
                let list: Vec<Spanned<RawMetric>> = items
                    .iter()
                    .filter_map(|item| {
                        de_keyed::<RawMetric>(item, "dependent.metrics", diags)
                            .map(|metric| Spanned::new(item.span(), metric))
                    })
                    .collect();
                metrics = Some(Spanned::new(val.span(), list));
            }
            // Any other shape: let the whole-table pass report it.
            _ => {
                rest.insert(key.clone(), val.clone());
            }
        }
    }
    let mut dependent = de_table::<RawDependent>(
        &Spanned::new(value.span(), DeValue::Table(rest)),
        "dependent",
        diags,
    )?;
    dependent.metrics = metrics.or(dependent.metrics);
    Some(dependent)
}

/// The elements of an array of tables (`[[secret]]`), moved out so that each can be
/// deserialized and then dropped in turn: a 100,000-secret file never holds its parsed
/// document and its validated config in memory at once.
fn array_items<'i>(
    value: Spanned<DeValue<'i>>,
    what: &str,
    diags: &mut Diagnostics,
) -> Vec<Spanned<DeValue<'i>>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(mut items) => items
            .iter_mut()
            .map(|item| std::mem::replace(item, Spanned::new(0..0, DeValue::Boolean(false))))
            .collect(),
        other => {
            diags.error(
                span,
                format!(
                    "`{what}` must be an array of tables (`[[{what}]]`), found {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

const SECTIONS: &[&str] = &[
    "aws",
    "account",
    "daemon",
    "state",
    "audit",
    "alerts",
    "events",
    "requests",
    "identity_center",
    "policy",
    "vendor",
    "group",
    "dependent",
    "secret",
    "selector",
];

pub(super) struct RawDocument<'i> {
    pub(super) aws: RawAws,
    pub(super) accounts: Vec<Spanned<DeValue<'i>>>,
    pub(super) daemon: RawDaemon,
    pub(super) state: Option<(Range<usize>, RawState)>,
    pub(super) audit: RawAudit,
    pub(super) alerts: Option<(Range<usize>, RawAlerts)>,
    pub(super) events: Option<(Range<usize>, RawEvents)>,
    pub(super) requests: Option<(Range<usize>, RawRequests)>,
    pub(super) identity_center: Option<(Range<usize>, RawIdentityCenter)>,
    pub(super) policy: RawPolicy,
    pub(super) vendors: Vec<Spanned<DeValue<'i>>>,
    pub(super) groups: Vec<Spanned<DeValue<'i>>>,
    pub(super) dependents: Vec<Spanned<DeValue<'i>>>,
    pub(super) secrets: Vec<Spanned<DeValue<'i>>>,
    pub(super) selectors: Vec<Spanned<DeValue<'i>>>,
}

pub(super) fn parse_document<'i>(
    source: &'i str,
    diags: &mut Diagnostics,
) -> Option<RawDocument<'i>> {
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(err) => {
            toml_error(diags, err, 0..0);
            return None;
        }
    };
    let mut doc = RawDocument {
        aws: RawAws::default(),
        accounts: Vec::new(),
        daemon: RawDaemon::default(),
        state: None,
        audit: RawAudit::default(),
        alerts: None,
        events: None,
        requests: None,
        identity_center: None,
        policy: RawPolicy::default(),
        vendors: Vec::new(),
        groups: Vec::new(),
        dependents: Vec::new(),
        secrets: Vec::new(),
        selectors: Vec::new(),
    };
    for (key, value) in root.into_inner() {
        let name: &str = key.get_ref();
        match name {
            "aws" => doc.aws = de_table(&value, name, diags).unwrap_or_default(),
            "daemon" => doc.daemon = de_table(&value, name, diags).unwrap_or_default(),
            "policy" => doc.policy = de_table(&value, name, diags).unwrap_or_default(),
            "audit" => doc.audit = de_table(&value, name, diags).unwrap_or_default(),
            "alerts" => doc.alerts = de_table(&value, name, diags).map(|t| (key.span(), t)),
            "state" => doc.state = de_keyed(&value, name, diags).map(|t| (key.span(), t)),
            "events" => doc.events = de_events(&value, diags).map(|t| (key.span(), t)),
            "requests" => doc.requests = de_table(&value, name, diags).map(|t| (key.span(), t)),
            "identity_center" => {
                doc.identity_center = de_table(&value, name, diags).map(|t| (key.span(), t))
            }
            "vendor" => doc.vendors = array_items(value, name, diags),
            "account" => doc.accounts = array_items(value, name, diags),
            "group" => doc.groups = array_items(value, name, diags),
            "dependent" => doc.dependents = array_items(value, name, diags),
            "secret" => doc.secrets = array_items(value, name, diags),
            "selector" => doc.selectors = array_items(value, name, diags),
            other => diags.error(
                key.span(),
                format!(
                    "unknown section `{other}`, expected one of: {}",
                    SECTIONS.join(", ")
                ),
            ),
        }
    }
    Some(doc)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{MINIMAL, errors};

    #[test]
    fn unknown_keys_in_two_sections_are_both_reported() {
        let src =
            format!("{MINIMAL}\n[daemon]\nstate_pth = \"x\"\n\n[policy]\nmax_agee = \"1d\"\n");
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("unknown field `state_pth`"), "{errs:?}");
        assert!(errs[1].contains("unknown field `max_agee`"), "{errs:?}");
    }

    #[test]
    fn two_bad_keys_in_one_table_are_both_reported() {
        let src = format!("{MINIMAL}\n[daemon]\nmax_rotations_per_minute = \"many\"\nbogus = 1\n");
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("bogus")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("invalid type")), "{errs:?}");
    }
}
