//! Inventory: which secrets rotationd manages, and the facts the planner needs about each.
//!
//! The fleet is built from paginated `ListSecrets` queries (pages of 100): one per
//! `[[selector]]` with its tag or name-prefix filter, and the `[[secret]]` names ten to a
//! request. Every answer is matched locally against `[[secret]]` ids (name or ARN) and
//! `[[selector]]`s (the first matching selector wins, and a listed `[[secret]]` wins over
//! any selector), since the filters are prefix matches. The entries already carry the
//! staging labels and dates, so a quiet fleet of N secrets costs about ceil(N/100)
//! requests (plus one per ten listed secrets). `ListSecretVersionIds` is called only when the age of the
//! AWSCURRENT version is ambiguous (see [`needs_closer_look`]), and its answer is cached
//! per (secret, AWSCURRENT version) so the next reconcile does not ask again.
//!
//! Why not `LastRotatedDate` alone: it does not move when someone writes a version by hand
//! or rolls back, so the honest age is the creation date of the AWSCURRENT version.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::arn::Arn;
use crate::aws::secrets::{
    AWSPENDING, ListQuery, MAX_FILTER_VALUES, SecretInfo, SecretsManager, VersionInfo,
};
use crate::aws::{AwsError, Place};
use crate::config::{Config, Matcher, SecretSettings};
use crate::planner::{Facts, RotationState};

/// A `LastChangedDate` this close after `LastRotatedDate` is the rotation's own change
/// (timestamps have whole seconds). Kept tight on purpose: a rollback moves AWSCURRENT to
/// an *older* version without moving `LastRotatedDate`, and must not pass for fresh.
const CHANGE_TOLERANCE_SECS: i64 = 2;

/// Where a managed secret's settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Index into `Config::secrets`.
    Secret(usize),
    /// Index into `Config::selectors`.
    Selector(usize),
}

#[derive(Debug, Clone)]
pub struct FleetEntry {
    /// How the secret is shown and keyed: the `[[secret]]` id, or the name for selectors.
    pub key: String,
    pub info: SecretInfo,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub entries: Vec<FleetEntry>,
    /// `[[secret]]` ids with no live secret in AWS (absent, or scheduled for deletion).
    pub missing: Vec<(String, MissingReason)>,
    /// Keyed by ARN (`[[account]]` tables): a name alone does not identify a secret.
    pub by_arn: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingReason {
    NotFound,
    ScheduledForDeletion,
}

impl MissingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissingReason::NotFound => "not found in Secrets Manager",
            MissingReason::ScheduledForDeletion => "scheduled for deletion",
        }
    }
}

/// The settings a managed secret takes from its `[[secret]]` or `[[selector]]`.
pub fn settings(cfg: &Config, origin: Origin) -> &SecretSettings {
    match origin {
        Origin::Secret(i) => &cfg.secrets[i].settings,
        Origin::Selector(i) => &cfg.selectors[i].settings,
    }
}

impl Fleet {
    /// Finds a managed secret by key, name or ARN.
    pub fn find(&self, id: &str) -> Option<&FleetEntry> {
        self.entries
            .iter()
            .find(|e| e.key == id || e.info.name == id || e.info.arn == id)
    }
}

fn selector_matches(m: &Matcher, info: &SecretInfo) -> bool {
    match m {
        Matcher::Tag { key, value } => info
            .tags
            .get(key)
            .is_some_and(|v| value.as_ref().is_none_or(|want| want == v)),
        Matcher::NamePrefix(p) => info.name.starts_with(p.as_str()),
    }
}

/// Matches a `ListSecrets` scan against the configuration, keyed by `[[secret]]` id or name.
pub fn match_fleet(cfg: &Config, all: Vec<SecretInfo>) -> Fleet {
    match_fleet_keyed(cfg, all, false)
}

/// Like [`match_fleet`]; with `by_arn` (`[[account]]` tables configured) every entry is
/// keyed by its ARN, because the same name exists in several accounts and regions.
pub fn match_fleet_keyed(cfg: &Config, all: Vec<SecretInfo>, by_arn: bool) -> Fleet {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, s) in cfg.secrets.iter().enumerate() {
        by_id.insert(s.id.as_str(), i);
    }
    let mut found = vec![false; cfg.secrets.len()];
    let mut deleted = vec![false; cfg.secrets.len()];
    let mut entries = Vec::new();
    for info in all {
        let listed = by_id
            .get(info.arn.as_str())
            .or_else(|| by_id.get(info.name.as_str()))
            .copied();
        if let Some(i) = listed {
            if info.deleted.is_some() {
                deleted[i] = true;
                continue;
            }
            found[i] = true;
            entries.push(FleetEntry {
                key: if by_arn {
                    info.arn.clone()
                } else {
                    cfg.secrets[i].id.clone()
                },
                info,
                origin: Origin::Secret(i),
            });
            continue;
        }
        if info.deleted.is_some() {
            continue;
        }
        if let Some(j) = cfg
            .selectors
            .iter()
            .position(|s| selector_matches(&s.matcher, &info))
        {
            entries.push(FleetEntry {
                key: if by_arn {
                    info.arn.clone()
                } else {
                    info.name.clone()
                },
                info,
                origin: Origin::Selector(j),
            });
        }
    }
    let missing = cfg
        .secrets
        .iter()
        .enumerate()
        .filter(|(i, _)| !found[*i])
        .map(|(i, s)| {
            let reason = if deleted[i] {
                MissingReason::ScheduledForDeletion
            } else {
                MissingReason::NotFound
            };
            (s.id.clone(), reason)
        })
        .collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    Fleet {
        entries,
        missing,
        by_arn,
    }
}

/// Remembers the creation date of each secret's AWSCURRENT version, keyed by ARN and valid
/// while the same version holds AWSCURRENT.
#[derive(Debug, Default, Clone)]
pub struct AgeCache {
    map: HashMap<String, (String, DateTime<Utc>)>,
}

impl AgeCache {
    pub fn get(&self, info: &SecretInfo) -> Option<DateTime<Utc>> {
        let current = info.current_version()?;
        self.map
            .get(&info.arn)
            .filter(|(v, _)| v == current)
            .map(|(_, t)| *t)
    }

    pub fn put(&mut self, arn: &str, version: &str, created: DateTime<Utc>) {
        self.map
            .insert(arn.to_string(), (version.to_string(), created));
    }
}

/// The AWSCURRENT creation date when the listing alone tells it, `None` when ambiguous.
///
/// - Rotated, and nothing changed after the rotation: the rotation made AWSCURRENT, so its
///   age is at most `LastRotatedDate` (slightly older, by the rotation's own duration).
/// - Never rotated, one labelled version: the secret's creation date, an upper bound on the
///   age (a hand-written version would only be younger).
/// - Anything else (changed after the rotation, a rollback, several versions and no
///   rotation): ambiguous.
pub fn current_created_from_listing(info: &SecretInfo, cache: &AgeCache) -> Option<DateTime<Utc>> {
    if let Some(t) = cache.get(info) {
        return Some(t);
    }
    match (info.last_rotated, info.last_changed) {
        (Some(rotated), Some(changed))
            if changed <= rotated + Duration::seconds(CHANGE_TOLERANCE_SECS) =>
        {
            Some(rotated)
        }
        (Some(rotated), None) => Some(rotated),
        (None, _) if info.versions.len() <= 1 => info.created,
        _ => None,
    }
}

/// Whether `ListSecretVersionIds` is worth a request for this secret: the AWSCURRENT age
/// is ambiguous, or an AWSPENDING version needs its age to tell in-progress from stuck.
pub fn needs_closer_look(info: &SecretInfo, cache: &AgeCache) -> bool {
    current_created_from_listing(info, cache).is_none() || info.dangling_pending().is_some()
}

/// The planner's facts for one secret.
///
/// `versions` is the answer of `ListSecretVersionIds` when a closer look was taken.
/// `active_attempt` says rotationd itself has an unfinished attempt on it. A dangling
/// AWSPENDING older than `stuck_after` with no attempt of ours is stuck; younger, it is
/// taken for a rotation in progress (AWS's own schedule, or a console click).
/// Whether the secret's dangling AWSPENDING is the new version of `last`, rotationd's
/// last finished attempt, which failed: that rotation is over, not in progress, and the
/// secret is stuck until someone clears it. Its failure was escalated then; a second
/// alert for the same version would only repeat it.
pub fn left_by_failure(info: &SecretInfo, last: Option<&crate::store::Attempt>) -> bool {
    use crate::store::AttemptState;
    match (info.dangling_pending(), last) {
        (Some(pending), Some(a)) => {
            matches!(a.state, AttemptState::Failed | AttemptState::Stuck)
                && a.new_version.as_deref() == Some(pending)
        }
        _ => false,
    }
}

/// What the planner needs to know about one secret. `left_by_failure`: see
/// [`left_by_failure`].
pub fn facts(
    info: &SecretInfo,
    versions: Option<&[VersionInfo]>,
    cache: &AgeCache,
    active_attempt: bool,
    left_by_failure: bool,
    now: DateTime<Utc>,
    stuck_after: Duration,
) -> Facts {
    let from_versions = |label: &str| {
        versions.and_then(|vs| {
            vs.iter()
                .find(|v| v.stages.iter().any(|s| s == label))
                .and_then(|v| v.created)
        })
    };
    let current_created = from_versions(crate::aws::secrets::AWSCURRENT)
        .or_else(|| current_created_from_listing(info, cache))
        // Ambiguous and not looked at: the secret's creation is the safe upper bound.
        .or(info.created);
    let rotation = if active_attempt {
        RotationState::InProgress
    } else if left_by_failure {
        RotationState::Stuck
    } else if info.dangling_pending().is_some() {
        match from_versions(AWSPENDING) {
            Some(created) if now - created < stuck_after => RotationState::InProgress,
            _ => RotationState::Stuck,
        }
    } else {
        RotationState::Idle
    };
    Facts {
        current_created,
        ever_rotated: info.last_rotated.is_some(),
        rotation,
    }
}

/// The ListSecrets queries that cover the configured fleet: one per `[[selector]]` (its
/// tag or name prefix as a filter), and the `[[secret]]` names in groups of ten. Filters
/// are prefix matches, so [`match_fleet`] re-checks every answer.
pub fn queries(cfg: &Config) -> Vec<ListQuery> {
    let mut out = Vec::new();
    for s in &cfg.selectors {
        out.push(match &s.matcher {
            Matcher::Tag { key, value } => ListQuery {
                tag_keys: vec![key.clone()],
                tag_values: value.iter().cloned().collect(),
                ..Default::default()
            },
            Matcher::NamePrefix(p) => ListQuery {
                names: vec![p.clone()],
                ..Default::default()
            },
        });
    }
    let names: Vec<String> = cfg
        .secrets
        .iter()
        .map(|s| {
            Arn::parse(&s.id)
                .ok()
                .and_then(|a| a.secret_name())
                .unwrap_or(&s.id)
                .to_string()
        })
        .collect();
    for chunk in names.chunks(MAX_FILTER_VALUES) {
        out.push(ListQuery {
            names: chunk.to_vec(),
            ..Default::default()
        });
    }
    out
}

/// The status a secret is reported with (`rotationd status`, `rotationd_secrets`): its
/// compliance, except that a held secret (`store::Hold`) shows `held` unless a rotation
/// of it is underway, and a secret whose last attempt failed shows `failing` until a
/// rotation is underway or succeeds.
pub fn status_label(
    compliance: crate::planner::Compliance,
    last_attempt_failed: bool,
    held: bool,
) -> &'static str {
    use crate::planner::Compliance;
    match compliance {
        // A rotation running (a departure's, of a held secret too) is what is happening.
        Compliance::InProgress => compliance.as_str(),
        // Held says what to do first (look, then `rotationd resume --secret`).
        _ if held => "held",
        // Stuck says what to do (clear AWSPENDING); failing alone would not.
        Compliance::Stuck => compliance.as_str(),
        _ if last_attempt_failed => "failing",
        _ => compliance.as_str(),
    }
}

/// One reconcile's view of the fleet.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub fleet: Fleet,
    /// Closer looks taken, by ARN.
    pub versions: HashMap<String, Vec<VersionInfo>>,
    /// Account-regions whose listing failed this time, with the error. Their secrets are
    /// absent from `fleet` (the daemon carries them over from the last good scan), and a
    /// `[[secret]]` not found elsewhere is not called missing while one of them is down.
    pub unreachable: Vec<(Place, AwsError)>,
}

impl Inventory {
    /// Whether `place` was listed this time.
    pub fn reached(&self, place: &Place) -> bool {
        !self.unreachable.iter().any(|(p, _)| p == place)
    }
}

/// Lists every account-region, matches the fleet and takes the closer looks that are
/// needed, updating `cache`. One account-region that fails does not stop the others: it is
/// reported in [`Inventory::unreachable`]. Only when all of them fail is the scan an error
/// (an outage, lost credentials).
pub async fn scan(
    sm: &SecretsManager,
    cfg: &Config,
    cache: &mut AgeCache,
) -> Result<Inventory, AwsError> {
    let places = sm.places();
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::new();
    let mut unreachable: Vec<(Place, AwsError)> = Vec::new();
    // Account-regions are listed at the same time: each has its own API limits, and a slow
    // or failing one (SDK retries, timeouts) must not hold the others' scan back. The
    // queries of one place stay sequential, within its ListSecrets budget. Results are
    // merged in place order, so the fleet does not depend on which answered first.
    let listed_by_place = futures_util::future::join_all(places.iter().map(|place| async {
        let mut listed = Vec::new();
        for query in queries(cfg) {
            listed.extend(sm.list_in(place, &query).await?);
        }
        Ok::<_, AwsError>(listed)
    }))
    .await;
    for (place, listed) in places.iter().zip(listed_by_place) {
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) => {
                unreachable.push((place.clone(), e));
                continue;
            }
        };
        for info in listed {
            // Queries may overlap (a listed secret a selector also matches).
            if seen.insert(info.arn.clone()) {
                all.push(info);
            }
        }
    }
    if !unreachable.is_empty() && unreachable.len() == places.len() {
        return Err(unreachable.swap_remove(0).1);
    }
    let mut fleet = match_fleet_keyed(cfg, all, sm.is_routed());
    if !unreachable.is_empty() {
        // The secret may well be in the account-region that could not be listed.
        fleet
            .missing
            .retain(|(_, reason)| *reason != MissingReason::NotFound);
    }
    let mut versions = HashMap::new();
    let mut failed_looks = std::collections::HashSet::new();
    for e in &fleet.entries {
        if !needs_closer_look(&e.info, cache) {
            continue;
        }
        let vs = match sm.list_versions(&e.info.arn).await {
            Ok(vs) => vs,
            // One account-region's trouble stays its own; without [[account]] the scan
            // fails as a whole, as it always did.
            Err(e2) if sm.is_routed() => {
                if let Some(place) = crate::aws::Place::of_arn(&e.info.arn)
                    && failed_looks.insert(place.clone())
                {
                    unreachable.push((place, e2));
                }
                continue;
            }
            Err(e2) => return Err(e2),
        };
        if let Some(cur) = vs.iter().find(|v| {
            v.stages
                .iter()
                .any(|s| s == crate::aws::secrets::AWSCURRENT)
        }) && let Some(created) = cur.created
        {
            cache.put(&e.info.arn, &cur.id, created);
        }
        versions.insert(e.info.arn.clone(), vs);
    }
    if !failed_looks.is_empty() {
        // Judged unreachable as a whole: half a picture of an account-region could pass an
        // unknown age for a never-rotated secret.
        fleet.entries.retain(|e| {
            crate::aws::Place::of_arn(&e.info.arn).is_none_or(|p| !failed_looks.contains(&p))
        });
    }
    Ok(Inventory {
        fleet,
        versions,
        unreachable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn info(name: &str) -> SecretInfo {
        SecretInfo {
            name: name.into(),
            arn: format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"),
            ..Default::default()
        }
    }

    const CFG: &str = r#"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[policy]
require_change_ticket = false
[[secret]]
id = "prod/a"
strategy = "single-user"
[[secret]]
id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/b-AbCdEf"
strategy = "single-user"
[[secret]]
id = "prod/gone"
strategy = "single-user"
[[secret]]
id = "prod/deleting"
strategy = "single-user"
[[selector]]
tag_key = "rotation"
tag_value = "quarterly"
strategy = "single-user"
[[selector]]
name_prefix = "prod/"
strategy = "alternating-users"
"#;

    #[test]
    fn fleet_matching_prefers_listed_then_first_selector() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), CFG).unwrap();
        let mut tagged = info("prod/tagged");
        tagged.tags.insert("rotation".into(), "quarterly".into());
        let mut a = info("prod/a");
        a.tags.insert("rotation".into(), "quarterly".into());
        let mut deleting = info("prod/deleting");
        deleting.deleted = Some(t(1, 0));
        let fleet = match_fleet(
            &cfg,
            vec![
                a,
                info("prod/b"),
                tagged,
                info("prod/other"),
                info("dev/x"),
                deleting,
            ],
        );
        let got: Vec<(&str, Origin)> = fleet
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.origin))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/b-AbCdEf",
                    Origin::Secret(1)
                ),
                ("prod/a", Origin::Secret(0)),
                ("prod/other", Origin::Selector(1)),
                ("prod/tagged", Origin::Selector(0)),
            ]
        );
        assert_eq!(
            fleet.missing,
            vec![
                ("prod/gone".to_string(), MissingReason::NotFound),
                (
                    "prod/deleting".to_string(),
                    MissingReason::ScheduledForDeletion
                ),
            ]
        );
    }

    #[test]
    fn queries_cover_selectors_and_listed_names() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), CFG).unwrap();
        let q = queries(&cfg);
        assert_eq!(
            q,
            vec![
                ListQuery {
                    tag_keys: vec!["rotation".into()],
                    tag_values: vec!["quarterly".into()],
                    ..Default::default()
                },
                ListQuery {
                    names: vec!["prod/".into()],
                    ..Default::default()
                },
                ListQuery {
                    names: vec![
                        "prod/a".into(),
                        "prod/b".into(),
                        "prod/gone".into(),
                        "prod/deleting".into()
                    ],
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn age_from_listing_and_ambiguity() {
        let cache = AgeCache::default();
        let mut s = info("x");
        s.created = Some(t(1, 0));
        s.versions.insert("v1".into(), vec!["AWSCURRENT".into()]);
        // Never rotated, one version: the creation date.
        assert_eq!(current_created_from_listing(&s, &cache), Some(t(1, 0)));
        // Rotated, changed by the rotation itself: LastRotatedDate.
        s.versions.insert("v0".into(), vec!["AWSPREVIOUS".into()]);
        s.last_rotated = Some(t(10, 0));
        s.last_changed = Some(t(10, 0) + Duration::seconds(2));
        assert_eq!(current_created_from_listing(&s, &cache), Some(t(10, 0)));
        assert!(!needs_closer_look(&s, &cache));
        // Changed hours after the rotation (hand-written version or rollback): ambiguous.
        s.last_changed = Some(t(12, 0));
        assert_eq!(current_created_from_listing(&s, &cache), None);
        assert!(needs_closer_look(&s, &cache));
        // A closer look answered for the same AWSCURRENT version: cached.
        let mut cache = AgeCache::default();
        cache.put(&s.arn, "v1", t(11, 0));
        assert_eq!(current_created_from_listing(&s, &cache), Some(t(11, 0)));
        // AWSCURRENT moved: the cache no longer applies.
        s.versions.insert("v1".into(), vec!["AWSPREVIOUS".into()]);
        s.versions.insert("v0".into(), vec!["AWSCURRENT".into()]);
        assert_eq!(current_created_from_listing(&s, &cache), None);
    }

    #[test]
    fn dangling_pending_is_in_progress_then_stuck() {
        let cache = AgeCache::default();
        let mut s = info("x");
        s.created = Some(t(1, 0));
        s.versions.insert("v1".into(), vec!["AWSCURRENT".into()]);
        s.versions.insert("v2".into(), vec!["AWSPENDING".into()]);
        assert!(needs_closer_look(&s, &cache));
        let versions = vec![
            VersionInfo {
                id: "v1".into(),
                stages: vec!["AWSCURRENT".into()],
                created: Some(t(1, 0)),
            },
            VersionInfo {
                id: "v2".into(),
                stages: vec!["AWSPENDING".into()],
                created: Some(t(5, 0)),
            },
        ];
        let stuck_after = Duration::minutes(15);
        let young = t(5, 0) + Duration::minutes(5);
        let f = facts(
            &s,
            Some(&versions),
            &cache,
            false,
            false,
            young,
            stuck_after,
        );
        assert_eq!(f.rotation, RotationState::InProgress);
        assert_eq!(f.current_created, Some(t(1, 0)));
        let f = facts(
            &s,
            Some(&versions),
            &cache,
            false,
            false,
            t(5, 1),
            stuck_after,
        );
        assert_eq!(f.rotation, RotationState::Stuck);
        let f = facts(
            &s,
            Some(&versions),
            &cache,
            true,
            false,
            t(5, 1),
            stuck_after,
        );
        assert_eq!(f.rotation, RotationState::InProgress);
        // Left behind by our failed attempt: stuck at once, however young.
        let f = facts(&s, Some(&versions), &cache, false, true, young, stuck_after);
        assert_eq!(f.rotation, RotationState::Stuck);
    }
}
