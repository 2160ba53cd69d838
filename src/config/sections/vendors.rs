//! `[identity_center]` (the directory departures are resolved against) and `[[vendor]]`
//! (the schedule, window, notices and contact topic a vendor's secrets take).

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::DeValue;

use crate::config::checks::{
    Schedules, arn, duration, fmt_duration, in_range, minutes, notice_leads, region,
};
use crate::config::diag::Diagnostics;
use crate::config::parse::de_table;
use crate::config::raw::{RawIdentityCenter, RawVendor};
use crate::config::{IdentityCenterConfig, PolicyConfig, VendorConfig};

/// Whether `id` looks like an identity store id: `d-` and ten digits or lowercase letters.
fn is_identity_store_id(id: &str) -> bool {
    id.strip_prefix("d-").is_some_and(|rest| {
        rest.len() == 10
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

/// `[identity_center]`, validated; `None` (the error recorded) without a usable store id.
pub(crate) fn identity_center(
    diags: &mut Diagnostics,
    span: &Range<usize>,
    raw: &RawIdentityCenter,
) -> Option<IdentityCenterConfig> {
    let Some(id) = &raw.identity_store_id else {
        diags.error(
            span.clone(),
            "[identity_center] is missing `identity_store_id`; copy it from the IAM Identity Center console (Settings, Identity source), like \"d-1234567890\"",
        );
        return None;
    };
    if !is_identity_store_id(id.get_ref()) {
        diags.error(
            id.span(),
            format!(
                "identity_store_id `{}` is not an identity store id: `d-` and ten digits or lowercase letters, like \"d-1234567890\"",
                id.get_ref()
            ),
        );
        return None;
    }
    let region = raw.region.as_ref().map(|r| {
        region(diags, r);
        r.get_ref().clone()
    });
    Some(IdentityCenterConfig {
        identity_store_id: id.get_ref().clone(),
        region,
    })
}

/// The `[[vendor]]` tables, validated, by name (also the names of vendors with errors, with
/// `None`, so that a secret naming one is not reported as well).
pub(crate) fn vendors(
    diags: &mut Diagnostics,
    items: Vec<Spanned<DeValue<'_>>>,
    policy: &PolicyConfig,
    schedules: &mut Schedules,
) -> (Vec<VendorConfig>, HashMap<String, Option<usize>>) {
    let mut out = Vec::new();
    let mut names: HashMap<String, Option<usize>> = HashMap::new();
    for item in items {
        let span = item.span();
        let Some(v) = de_table::<RawVendor>(&item, "vendor", diags) else {
            continue;
        };
        let Some(name) = &v.name else {
            diags.error(span, "[[vendor]] is missing `name`");
            continue;
        };
        let n = name.get_ref().trim().to_string();
        if n.is_empty() {
            diags.error(name.span(), "[[vendor]] name may not be empty");
            continue;
        }
        if names.contains_key(&n) {
            diags.error(name.span(), format!("duplicate vendor `{n}`"));
            continue;
        }
        let errors = diags.error_count();
        let parsed = v.schedule.as_ref().and_then(|s| schedules.parse(diags, s));
        let window = v.window.as_ref().map(|w| {
            let d = duration(diags, &Some(w.clone()), "window", policy.default_window);
            in_range(diags, w.span(), d, minutes(1).., |_| {
                "`window` must be at least 1m: a rotation needs a minute to start in".into()
            });
            d
        });
        let sched = parsed
            .as_ref()
            .map(|p| p.schedule.clone())
            .unwrap_or_else(|| policy.default_schedule.clone());
        let min_gap = parsed
            .as_ref()
            .map(|p| p.min_gap)
            .unwrap_or_else(|| schedules.of(&policy.default_schedule).min_gap);
        let effective = window.unwrap_or(policy.default_window);
        if let Some(gap) = min_gap
            && effective > gap
        {
            let at = v
                .window
                .as_ref()
                .or(v.schedule.as_ref())
                .map_or(span.clone(), |s| s.span());
            diags.error(
                at,
                format!(
                    "vendor `{n}`: window {} is longer than the shortest gap ({}) between two runs of schedule `{sched}`; windows would overlap",
                    fmt_duration(effective),
                    fmt_duration(gap)
                ),
            );
        }
        let contact_topic_arn = v.contact_topic_arn.as_ref().map(|t| arn(diags, t, "sns"));
        let notice = notice_leads(diags, &v.notice);
        if diags.error_count() > errors {
            names.insert(n, None);
            continue;
        }
        names.insert(n.clone(), Some(out.len()));
        out.push(VendorConfig {
            name: n,
            schedule: parsed.map(|p| p.schedule),
            window,
            contact_topic_arn,
            notice,
        });
    }
    (out, names)
}

#[cfg(test)]
mod tests {
    use super::is_identity_store_id;

    #[test]
    fn identity_store_ids_are_d_and_ten_characters() {
        assert!(is_identity_store_id("d-1234567890"));
        assert!(is_identity_store_id("d-93670dc30f"));
        assert!(!is_identity_store_id("d-123456789"));
        assert!(!is_identity_store_id("d-12345678901"));
        assert!(!is_identity_store_id("D-1234567890"));
        assert!(!is_identity_store_id("d-12345678AB"));
        assert!(!is_identity_store_id("1234567890"));
    }
}
