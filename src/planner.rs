//! Rotation planning: which secrets to rotate when, and how compliant each one is.
//!
//! Everything here is pure: no I/O, and the clock is a parameter, so the daemon,
//! the offline `plan` command and the tests all get the same answers.
//!
//! - [`compliance`] classifies one secret from [`Facts`] read from AWS.
//! - [`plan`] lists every rotation window of every [`Target`] between `now` and
//!   `until`, and gives each entry a `start_at` so that no UTC minute holds
//!   more than [`Policy::max_rotations_per_minute`] starts across the whole
//!   plan (Secrets Manager and the rotation Lambdas are rate limited).
//!
//! Design notes for [`plan`], which must handle 100,000 targets in well under
//! a second:
//! - Fire times are computed once per distinct schedule text, not per target,
//!   because large fleets share a handful of schedules.
//! - Targets are ranked by id once; entries then carry the rank, so every
//!   later sort compares integers and timestamps instead of strings, and ids
//!   are cloned only when the final entries are built.
//! - Entries that share a window are spread evenly across it in id order
//!   (deterministic). Minute capacity is global, tracked in a map keyed by UTC
//!   minute, and full minutes point to a later candidate (union-find style with
//!   path compression), so finding "the next minute with room" stays cheap
//!   even when 90,000 secrets crowd one window.
//! - A window already open at `now` keeps its real start, but its entries are
//!   spread only over the part still ahead, since capacity in past minutes
//!   cannot be used.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU32;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::schedule::Schedule;

/// Why an entry is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A regular window of the target's schedule.
    Scheduled,
    /// The current version is older than `max_age`: rotate now.
    Overdue,
    /// The secret has never been rotated; this is its first upcoming window.
    NeverRotated,
}

impl Reason {
    /// The snake_case name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Scheduled => "scheduled",
            Reason::Overdue => "overdue",
            Reason::NeverRotated => "never_rotated",
        }
    }
}

/// Where one secret stands against its rotation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compliance {
    /// Nothing to do.
    Compliant,
    /// A window is open now and the secret has not been rotated in it yet.
    Due,
    /// The current version is older than `max_age`.
    Overdue,
    /// The secret has never been rotated (or nothing is known about it).
    NeverRotated,
    /// A rotation is running.
    InProgress,
    /// A rotation was left half done and needs a human.
    Stuck,
}

impl Compliance {
    /// The snake_case name used in JSON, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Compliant => "compliant",
            Compliance::Due => "due",
            Compliance::Overdue => "overdue",
            Compliance::NeverRotated => "never_rotated",
            Compliance::InProgress => "in_progress",
            Compliance::Stuck => "stuck",
        }
    }
}

/// What Secrets Manager says about an ongoing rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationState {
    /// No rotation underway.
    #[default]
    Idle,
    /// An attempt is running.
    InProgress,
    /// AWSPENDING sits on a version without AWSCURRENT.
    Stuck,
}

/// Observed state of one secret. `Facts::default()` means "nothing known".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// CreatedDate of the AWSCURRENT version: the honest age, unlike
    /// LastRotatedDate, which also moves on failed or manual rotations.
    pub current_created: Option<DateTime<Utc>>,
    /// Whether the secret has ever been rotated.
    pub ever_rotated: bool,
    /// Whether a rotation is underway or stuck.
    pub rotation: RotationState,
}

/// One secret (or, in offline plans, one selector) to keep in rotation.
#[derive(Debug, Clone)]
pub struct Target {
    /// Secret ARN/name, or the selector text in offline plans.
    pub id: String,
    /// When windows open.
    pub schedule: Schedule,
    /// How long each window stays open.
    pub window: Duration,
    /// Change ticket to quote when rotating, if the config names one.
    pub ticket: Option<String>,
}

/// Fleet-wide rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Oldest acceptable age of the current version.
    pub max_age: Duration,
    /// Most rotation starts allowed in any one UTC minute.
    pub max_rotations_per_minute: NonZeroU32,
}

/// One planned rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    /// Target id.
    pub secret: String,
    /// Inclusive start of the window (the fire time, or `now` when overdue).
    pub window_start: DateTime<Utc>,
    /// Exclusive end of the window.
    pub window_end: DateTime<Utc>,
    /// Staggered start, always in `[window_start, window_end)`.
    pub start_at: DateTime<Utc>,
    /// Why the entry exists.
    pub reason: Reason,
    /// Change ticket copied from the target.
    pub ticket: Option<String>,
}

/// An entry that found no minute with room in its window. It is still in
/// [`Plan::entries`], at the window's last minute, beyond the per-minute cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverCapacity {
    /// Target id.
    pub secret: String,
    /// Start of the crowded window.
    pub window_start: DateTime<Utc>,
    /// End of the crowded window.
    pub window_end: DateTime<Utc>,
    /// Where the entry was put anyway.
    pub start_at: DateTime<Utc>,
}

/// The result of [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Planned rotations sorted by `(start_at, secret)`.
    pub entries: Vec<PlanEntry>,
    /// Entries placed beyond the per-minute cap, in the order they were
    /// staggered (by window); the caller should warn about each.
    pub over_capacity: Vec<OverCapacity>,
}

/// Classifies one secret at `now`.
///
/// Precedence: Stuck > InProgress > Overdue > NeverRotated > Due > Compliant.
/// `Facts::default()` (nothing known) is NeverRotated.
pub fn compliance(
    target: &Target,
    facts: &Facts,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Compliance {
    match facts.rotation {
        RotationState::Stuck => return Compliance::Stuck,
        RotationState::InProgress => return Compliance::InProgress,
        RotationState::Idle => {}
    }
    if is_overdue(facts, now, policy) {
        return Compliance::Overdue;
    }
    if !facts.ever_rotated {
        return Compliance::NeverRotated;
    }
    if let Some(fire) = open_window_start(target, now) {
        // Without a creation date we cannot prove this window was served.
        let rotated_in_window = facts.current_created.is_some_and(|c| c >= fire);
        if !rotated_in_window {
            return Compliance::Due;
        }
    }
    Compliance::Compliant
}

/// Start of the target's window that is open at `now`, if any.
pub fn open_window_start(target: &Target, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let fire = target.schedule.last_at_or_before(now)?;
    (now < add(fire, target.window)).then_some(fire)
}

/// Start of the target's window open at `now`, or else of its next one: when a rotation
/// asked for now may run inside a window. Open means started at or before `now`, so a
/// result `<= now` says the window is open. `None` when the schedule never fires again.
pub fn window_at_or_after(target: &Target, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    open_window_start(target, now).or_else(|| target.schedule.next_after(now))
}

fn is_overdue(facts: &Facts, now: DateTime<Utc>, policy: &Policy) -> bool {
    facts
        .current_created
        .is_some_and(|created| now - created > policy.max_age)
}

/// Plans every window of every target that ends after `now` and starts before
/// `until`, then staggers the starts; see the module docs.
///
/// `facts` returns what is known about a target id. `None` means "not looked
/// up" (the offline plan): the target's windows are all `Scheduled`. With
/// facts, Stuck/InProgress targets get no entries, an overdue target gets an
/// `Overdue` entry in `[now, now + window)` instead of its currently open
/// window, a never-rotated target's first entry is `NeverRotated`, and an
/// open window whose current version was created inside it is skipped.
///
/// Plan times are whole seconds: `now` is truncated to its second and windows
/// to whole seconds, which changes no decision because fire times are whole
/// minutes. Windows shorter than a minute are treated as one minute so that
/// every entry has a slot; the config loader rejects them up front.
pub fn plan(
    targets: &[Target],
    facts: &dyn Fn(&str) -> Option<Facts>,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    policy: &Policy,
) -> Plan {
    let (now_s, until_s) = (now.timestamp(), until.timestamp());
    if until <= now || targets.is_empty() {
        return Plan::default();
    }

    // Rank by (id, input position): sorting by rank is then sorting by secret.
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by(|&a, &b| targets[a].id.cmp(&targets[b].id));
    let mut rank = vec![0u32; targets.len()];
    for (r, &i) in order.iter().enumerate() {
        // More than 4 billion targets would not fit in memory anyway.
        rank[i] = u32::try_from(r).unwrap_or(u32::MAX);
    }

    let mut by_schedule: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, target) in targets.iter().enumerate() {
        by_schedule
            .entry(target.schedule.as_str())
            .or_default()
            .push(i);
    }

    let mut raws: Vec<Raw> = Vec::new();
    let mut fires: Vec<i64> = Vec::new();
    for members in by_schedule.values() {
        let Some(&first_member) = members.first() else {
            continue;
        };
        let longest = members
            .iter()
            .map(|&i| window_secs(targets[i].window))
            .max()
            .unwrap_or(60);
        let from = DateTime::from_timestamp(now_s.saturating_sub(longest), 0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        fires.clear();
        fires.extend(
            targets[first_member]
                .schedule
                .fire_times(from, until)
                .map(|f| f.timestamp()),
        );

        for &i in members {
            let target = &targets[i];
            let window = window_secs(target.window);
            let first_live = fires.partition_point(|&f| f.saturating_add(window) <= now_s);
            let status = match facts(&target.id) {
                None => Status::default(),
                Some(f) => match f.rotation {
                    // Underway or needs repair: another attempt would collide.
                    RotationState::Stuck | RotationState::InProgress => continue,
                    RotationState::Idle => Status {
                        overdue: is_overdue(&f, now, policy),
                        never_rotated: !f.ever_rotated,
                        created: f.current_created,
                    },
                },
            };
            push_target_windows(
                &mut raws,
                &fires[first_live..],
                window,
                rank[i],
                status,
                now_s,
                until_s,
            );
        }
    }

    let over = stagger(&mut raws, now_s, policy.max_rotations_per_minute.get());

    raws.sort_unstable_by_key(|r| (r.start_at, r.rank));
    // Entries visit targets in time order, i.e. randomly, and with 100,000
    // targets each visit would miss the cache twice (target, then its id).
    // Packing the ids into one buffer in rank order, plus a small "has a
    // ticket" table, halves those misses; this loop dominates large plans.
    let mut arena = String::with_capacity(order.iter().map(|&i| targets[i].id.len()).sum());
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(order.len());
    let mut ticketed: Vec<bool> = Vec::with_capacity(order.len());
    for &i in &order {
        let start = arena.len();
        arena.push_str(&targets[i].id);
        spans.push((start, arena.len()));
        ticketed.push(targets[i].ticket.is_some());
    }
    let id_of = |rank: u32| {
        let (a, b) = spans[rank as usize];
        arena.get(a..b).unwrap_or_default()
    };
    let entries = raws
        .iter()
        .map(|r| PlanEntry {
            secret: id_of(r.rank).to_owned(),
            window_start: to_utc(r.window_start),
            window_end: to_utc(r.window_end),
            start_at: to_utc(r.start_at),
            reason: r.reason,
            ticket: if ticketed[r.rank as usize] {
                targets[order[r.rank as usize]].ticket.clone()
            } else {
                None
            },
        })
        .collect();
    let over_capacity = over
        .iter()
        .map(|r| OverCapacity {
            secret: targets[order[r.rank as usize]].id.clone(),
            window_start: to_utc(r.window_start),
            window_end: to_utc(r.window_end),
            start_at: to_utc(r.start_at),
        })
        .collect();
    Plan {
        entries,
        over_capacity,
    }
}

/// A plan entry before ids are attached; times in Unix seconds so the sorts
/// and the stagger compare plain integers.
#[derive(Clone, Copy)]
struct Raw {
    window_start: i64,
    window_end: i64,
    start_at: i64,
    rank: u32,
    reason: Reason,
}

/// What the facts imply for planning; the default is "no facts".
#[derive(Default)]
struct Status {
    overdue: bool,
    never_rotated: bool,
    created: Option<DateTime<Utc>>,
}

fn push_target_windows(
    raws: &mut Vec<Raw>,
    live_fires: &[i64],
    window: i64,
    rank: u32,
    status: Status,
    now: i64,
    until: i64,
) {
    // An overdue rotation happens now, which also serves a first rotation.
    let mut mark_never = status.never_rotated && !status.overdue;
    for &fire in live_fires {
        if fire <= now {
            let rotated_in_window = status.created.is_some_and(|c| c.timestamp() >= fire);
            if status.overdue || rotated_in_window {
                continue;
            }
        }
        let reason = if mark_never {
            mark_never = false;
            Reason::NeverRotated
        } else {
            Reason::Scheduled
        };
        raws.push(Raw {
            window_start: fire,
            window_end: fire.saturating_add(window),
            start_at: fire,
            rank,
            reason,
        });
    }
    if status.overdue && now < until {
        raws.push(Raw {
            window_start: now,
            window_end: now.saturating_add(window),
            start_at: now,
            rank,
            reason: Reason::Overdue,
        });
    }
}

/// Assigns `start_at` to every entry and returns those beyond capacity.
fn stagger(raws: &mut [Raw], now: i64, cap: u32) -> Vec<Raw> {
    // Groups in time order so earlier windows get first pick of shared minutes;
    // inside a group, rank order makes the spread deterministic.
    raws.sort_unstable_by_key(|r| {
        (
            r.window_start.max(now),
            r.window_end,
            r.window_start,
            r.rank,
            r.reason,
        )
    });
    let mut minutes = Occupancy::new(cap);
    let mut over = Vec::new();
    for group in
        raws.chunk_by_mut(|a, b| (a.window_start, a.window_end) == (b.window_start, b.window_end))
    {
        let Some(first) = group.first() else {
            continue;
        };
        let begin = first.window_start.max(now);
        // Slot k starts at begin + k minutes and must stay before window_end.
        let span = first.window_end.saturating_sub(begin);
        let slots = (span / 60 + i64::from(span % 60 != 0)).max(1);
        let base = begin.div_euclid(60);
        let n = group.len() as i128;
        let mut full = false;
        for (i, raw) in group.iter_mut().enumerate() {
            let ideal = (i as i128 * i128::from(slots) / n) as i64;
            let offset = if full {
                None
            } else {
                minutes.claim(base, ideal, slots)
            };
            let offset = offset.unwrap_or_else(|| {
                full = true;
                slots - 1
            });
            raw.start_at = begin.saturating_add(offset.saturating_mul(60));
            if full {
                over.push(*raw);
            }
        }
    }
    over
}

/// Per-minute start counts shared by all windows.
struct Occupancy {
    cap: u32,
    counts: HashMap<i64, u32, MinuteHash>,
    /// For full minutes: a later minute that may have room.
    skip: HashMap<i64, i64, MinuteHash>,
}

impl Occupancy {
    fn new(cap: u32) -> Self {
        Occupancy {
            cap,
            counts: HashMap::default(),
            skip: HashMap::default(),
        }
    }

    /// Claims the first minute with room at or after `base + ideal`, wrapping
    /// to `base` if the window's tail is full; returns its offset from `base`,
    /// or `None` when all `slots` minutes are full.
    fn claim(&mut self, base: i64, ideal: i64, slots: i64) -> Option<i64> {
        let end = base + slots;
        let mut minute = self.first_free(base + ideal);
        if minute >= end {
            minute = self.first_free(base);
            if minute >= base + ideal {
                return None;
            }
        }
        let count = self.counts.entry(minute).or_insert(0);
        *count += 1;
        if *count >= self.cap {
            self.skip.insert(minute, minute + 1);
        }
        Some(minute - base)
    }

    fn first_free(&mut self, from: i64) -> i64 {
        let mut root = from;
        while let Some(&next) = self.skip.get(&root) {
            root = next;
        }
        // Path compression: the next search from anywhere on this path jumps.
        let mut cur = from;
        while cur != root {
            match self.skip.get_mut(&cur) {
                Some(next) => {
                    cur = std::mem::replace(next, root);
                }
                None => break,
            }
        }
        root
    }
}

/// Minute numbers are already well spread integers, so a multiply is enough
/// and several times cheaper than SipHash on the hot stagger path.
#[derive(Default)]
struct MinuteHasher(u64);

impl Hasher for MinuteHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type MinuteHash = BuildHasherDefault<MinuteHasher>;

/// Window length in whole seconds, at least one minute.
fn window_secs(window: Duration) -> i64 {
    window.num_seconds().max(60)
}

fn to_utc(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Saturating add: absurd windows must not panic the planner.
fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn target(id: &str, schedule: &str, window: Duration) -> Target {
        Target {
            id: id.to_owned(),
            schedule: Schedule::parse(schedule).unwrap(),
            window,
            ticket: None,
        }
    }

    fn policy(max_age_days: i64, per_minute: u32) -> Policy {
        Policy {
            max_age: Duration::days(max_age_days),
            max_rotations_per_minute: NonZeroU32::new(per_minute).unwrap(),
        }
    }

    fn rotated(created: DateTime<Utc>) -> Facts {
        Facts {
            current_created: Some(created),
            ever_rotated: true,
            rotation: RotationState::Idle,
        }
    }

    fn offline(_: &str) -> Option<Facts> {
        None
    }

    /// Start counts per UTC minute, as (minute start, count), ascending.
    fn per_minute(entries: &[PlanEntry]) -> Vec<(DateTime<Utc>, usize)> {
        let mut counts: std::collections::BTreeMap<DateTime<Utc>, usize> = Default::default();
        for e in entries {
            let minute =
                DateTime::from_timestamp(e.start_at.timestamp().div_euclid(60) * 60, 0).unwrap();
            *counts.entry(minute).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i:03}")).collect()
    }

    #[test]
    fn window_edges_open_at_start_closed_at_end() {
        let t = target("db", "@quarterly", Duration::hours(4));
        let p = policy(365, 30);
        let facts = rotated(utc(2027, 3, 1, 0, 0, 0));
        assert_eq!(
            compliance(&t, &facts, utc(2027, 3, 31, 23, 59, 59), &p),
            Compliance::Compliant
        );
        assert_eq!(
            compliance(&t, &facts, utc(2027, 4, 1, 0, 0, 0), &p),
            Compliance::Due
        );
        assert_eq!(
            compliance(&t, &facts, utc(2027, 4, 1, 3, 59, 59), &p),
            Compliance::Due
        );
        assert_eq!(
            compliance(&t, &facts, utc(2027, 4, 1, 4, 0, 0), &p),
            Compliance::Compliant
        );
        assert_eq!(
            open_window_start(&t, utc(2027, 4, 1, 0, 0, 0)),
            Some(utc(2027, 4, 1, 0, 0, 0))
        );
        assert_eq!(open_window_start(&t, utc(2027, 4, 1, 4, 0, 0)), None);
    }

    #[test]
    fn window_at_or_after_is_the_open_window_or_the_next_one() {
        let t = target("db", "@quarterly", Duration::hours(4));
        // At its very start, and in its last second, the open window.
        assert_eq!(
            window_at_or_after(&t, utc(2027, 4, 1, 0, 0, 0)),
            Some(utc(2027, 4, 1, 0, 0, 0))
        );
        assert_eq!(
            window_at_or_after(&t, utc(2027, 4, 1, 3, 59, 59)),
            Some(utc(2027, 4, 1, 0, 0, 0))
        );
        // Closed (the end is exclusive), and between windows: the next one.
        assert_eq!(
            window_at_or_after(&t, utc(2027, 4, 1, 4, 0, 0)),
            Some(utc(2027, 7, 1, 0, 0, 0))
        );
        assert_eq!(
            window_at_or_after(&t, utc(2027, 3, 31, 23, 59, 59)),
            Some(utc(2027, 4, 1, 0, 0, 0))
        );
    }

    #[test]
    fn compliance_precedence() {
        let t = target("db", "@quarterly", Duration::hours(4));
        let p = policy(90, 30);
        let in_window = utc(2027, 4, 1, 1, 0, 0);
        let old = utc(2026, 12, 1, 0, 0, 0); // 121 days before `in_window`

        let stuck_and_overdue = Facts {
            rotation: RotationState::Stuck,
            ..rotated(old)
        };
        assert_eq!(
            compliance(&t, &stuck_and_overdue, in_window, &p),
            Compliance::Stuck
        );
        let running_and_overdue = Facts {
            rotation: RotationState::InProgress,
            ..rotated(old)
        };
        assert_eq!(
            compliance(&t, &running_and_overdue, in_window, &p),
            Compliance::InProgress
        );
        let overdue_never_rotated = Facts {
            ever_rotated: false,
            ..rotated(old)
        };
        assert_eq!(
            compliance(&t, &overdue_never_rotated, in_window, &p),
            Compliance::Overdue
        );
        let young_never_rotated = Facts {
            ever_rotated: false,
            ..rotated(utc(2027, 3, 1, 0, 0, 0))
        };
        assert_eq!(
            compliance(&t, &young_never_rotated, in_window, &p),
            Compliance::NeverRotated
        );
        assert_eq!(
            compliance(&t, &Facts::default(), in_window, &p),
            Compliance::NeverRotated
        );
        assert_eq!(
            compliance(&t, &rotated(utc(2027, 3, 1, 0, 0, 0)), in_window, &p),
            Compliance::Due
        );
        // Created inside the open window: already served.
        assert_eq!(
            compliance(&t, &rotated(utc(2027, 4, 1, 0, 30, 0)), in_window, &p),
            Compliance::Compliant
        );
        assert_eq!(
            compliance(
                &t,
                &rotated(utc(2027, 3, 1, 0, 0, 0)),
                utc(2027, 5, 1, 0, 0, 0),
                &p
            ),
            Compliance::Compliant
        );
        // Jan 1 -> Apr 1 2027 is 31 + 28 + 31 = 90 days: exactly max_age is
        // not yet overdue (but the Apr 1 window is open, so Due).
        assert_eq!(
            compliance(
                &t,
                &rotated(utc(2027, 1, 1, 0, 0, 0)),
                utc(2027, 4, 1, 0, 0, 0),
                &p
            ),
            Compliance::Due
        );
        assert_eq!(
            compliance(
                &t,
                &rotated(utc(2027, 1, 1, 0, 0, 0)),
                utc(2027, 4, 1, 0, 0, 1),
                &p
            ),
            Compliance::Overdue
        );
    }

    #[test]
    fn compliance_names_are_snake_case() {
        assert_eq!(Compliance::NeverRotated.as_str(), "never_rotated");
        assert_eq!(Compliance::InProgress.as_str(), "in_progress");
        assert_eq!(
            serde_json::to_string(&Compliance::InProgress).unwrap(),
            "\"in_progress\""
        );
        assert_eq!(Reason::NeverRotated.as_str(), "never_rotated");
    }

    /// a: overdue, b: never rotated, c: rotated inside the open window,
    /// d: stuck, e: in progress, f: rotated before the open window.
    fn mixed_fleet() -> (Vec<Target>, HashMap<String, Facts>) {
        let targets: Vec<Target> = ["f", "e", "d", "c", "b", "a"]
            .iter()
            .map(|id| target(id, "@quarterly", Duration::hours(4)))
            .collect();
        let facts = HashMap::from([
            ("a".to_owned(), rotated(utc(2026, 10, 1, 0, 0, 0))),
            ("b".to_owned(), Facts::default()),
            ("c".to_owned(), rotated(utc(2027, 4, 1, 0, 30, 0))),
            (
                "d".to_owned(),
                Facts {
                    rotation: RotationState::Stuck,
                    ..rotated(utc(2027, 1, 1, 0, 5, 0))
                },
            ),
            (
                "e".to_owned(),
                Facts {
                    rotation: RotationState::InProgress,
                    ..rotated(utc(2027, 1, 1, 0, 5, 0))
                },
            ),
            ("f".to_owned(), rotated(utc(2027, 1, 1, 0, 10, 0))),
        ]);
        (targets, facts)
    }

    fn summary(plan: &Plan) -> Vec<(String, DateTime<Utc>, DateTime<Utc>, Reason)> {
        plan.entries
            .iter()
            .map(|e| (e.secret.clone(), e.window_start, e.start_at, e.reason))
            .collect()
    }

    #[test]
    fn plan_with_facts_handles_overdue_never_rotated_and_already_rotated() {
        let (targets, facts) = mixed_fleet();
        let now = utc(2027, 4, 1, 1, 0, 0);
        // The Oct 1 window starts exactly at `until` and is left out.
        let until = utc(2027, 10, 1, 0, 0, 0);
        let plan = plan(
            &targets,
            &|id| facts.get(id).copied(),
            now,
            until,
            &policy(180, 30),
        );

        let apr = utc(2027, 4, 1, 0, 0, 0);
        let jul = utc(2027, 7, 1, 0, 0, 0);
        let s = |id: &str, ws, at, r| (id.to_owned(), ws, at, r);
        // Apr 1 window [00:00, 04:00) is open: b and f share its remaining 180
        // minutes (b at +0, f at +90); a's overdue window starts now. Jul 1: a,
        // b, c, f spread over 240 minutes at 0, 60, 120, 180.
        assert_eq!(
            summary(&plan),
            vec![
                s("a", now, now, Reason::Overdue),
                s("b", apr, utc(2027, 4, 1, 1, 0, 0), Reason::NeverRotated),
                s("f", apr, utc(2027, 4, 1, 2, 30, 0), Reason::Scheduled),
                s("a", jul, utc(2027, 7, 1, 0, 0, 0), Reason::Scheduled),
                s("b", jul, utc(2027, 7, 1, 1, 0, 0), Reason::Scheduled),
                s("c", jul, utc(2027, 7, 1, 2, 0, 0), Reason::Scheduled),
                s("f", jul, utc(2027, 7, 1, 3, 0, 0), Reason::Scheduled),
            ]
        );
        assert_eq!(plan.entries[0].window_end, utc(2027, 4, 1, 5, 0, 0));
        assert_eq!(plan.entries[1].window_end, utc(2027, 4, 1, 4, 0, 0));
        assert!(plan.over_capacity.is_empty());
    }

    #[test]
    fn plan_without_facts_is_all_scheduled() {
        let (targets, _) = mixed_fleet();
        let now = utc(2027, 4, 1, 1, 0, 0);
        let plan = plan(
            &targets,
            &offline,
            now,
            utc(2027, 7, 1, 0, 0, 0),
            &policy(180, 30),
        );
        let secrets: Vec<&str> = plan.entries.iter().map(|e| e.secret.as_str()).collect();
        // Six targets in the open window's remaining 180 minutes: every 30.
        assert_eq!(secrets, ["a", "b", "c", "d", "e", "f"]);
        let starts: Vec<DateTime<Utc>> = plan.entries.iter().map(|e| e.start_at).collect();
        assert_eq!(
            starts,
            [
                utc(2027, 4, 1, 1, 0, 0),
                utc(2027, 4, 1, 1, 30, 0),
                utc(2027, 4, 1, 2, 0, 0),
                utc(2027, 4, 1, 2, 30, 0),
                utc(2027, 4, 1, 3, 0, 0),
                utc(2027, 4, 1, 3, 30, 0),
            ]
        );
        assert!(plan.entries.iter().all(|e| e.reason == Reason::Scheduled));
        assert!(
            plan.entries
                .iter()
                .all(|e| e.window_start == utc(2027, 4, 1, 0, 0, 0))
        );
    }

    #[test]
    fn window_ending_exactly_now_is_not_planned() {
        let t = [target("x", "@quarterly", Duration::hours(4))];
        let plan = plan(
            &t,
            &offline,
            utc(2027, 4, 1, 4, 0, 0),
            utc(2027, 12, 31, 0, 0, 0),
            &policy(180, 30),
        );
        let starts: Vec<DateTime<Utc>> = plan.entries.iter().map(|e| e.window_start).collect();
        assert_eq!(
            starts,
            [utc(2027, 7, 1, 0, 0, 0), utc(2027, 10, 1, 0, 0, 0)]
        );
        assert_eq!(
            crate::planner::plan(
                &t,
                &offline,
                utc(2027, 4, 1, 0, 0, 0),
                utc(2027, 4, 1, 0, 0, 0),
                &policy(180, 30)
            ),
            Plan::default()
        );
    }

    #[test]
    fn hundred_targets_in_ten_minutes_spread_evenly_and_deterministically() {
        let targets: Vec<Target> = ids(100)
            .iter()
            .rev()
            .map(|id| target(id, "@quarterly", Duration::minutes(10)))
            .collect();
        let now = utc(2027, 3, 31, 0, 0, 0);
        let until = utc(2027, 4, 2, 0, 0, 0);
        let first = plan(&targets, &offline, now, until, &policy(180, 30));
        let second = plan(&targets, &offline, now, until, &policy(180, 30));
        assert_eq!(first, second);
        assert!(first.over_capacity.is_empty());
        // Ideal slot floor(i * 10 / 100): ten per minute, in id order.
        let expected: Vec<(DateTime<Utc>, usize)> =
            (0..10).map(|m| (utc(2027, 4, 1, 0, m, 0), 10)).collect();
        assert_eq!(per_minute(&first.entries), expected);
        let at = |id: &str| {
            first
                .entries
                .iter()
                .find(|e| e.secret == id)
                .unwrap()
                .start_at
        };
        assert_eq!(at("s000"), utc(2027, 4, 1, 0, 0, 0));
        assert_eq!(at("s015"), utc(2027, 4, 1, 0, 1, 0));
        assert_eq!(at("s099"), utc(2027, 4, 1, 0, 9, 0));
        for e in &first.entries {
            assert!(e.window_start <= e.start_at && e.start_at < e.window_end);
        }
    }

    #[test]
    fn crowded_window_spills_forward_then_reports_overflow() {
        // 100 targets, 3 minutes, 30 per minute: capacity 90.
        let targets: Vec<Target> = ids(100)
            .iter()
            .map(|id| target(id, "@quarterly", Duration::minutes(3)))
            .collect();
        let now = utc(2027, 3, 31, 0, 0, 0);
        let plan = plan(
            &targets,
            &offline,
            now,
            utc(2027, 4, 2, 0, 0, 0),
            &policy(180, 30),
        );
        let at = |id: &str| {
            plan.entries
                .iter()
                .find(|e| e.secret == id)
                .unwrap()
                .start_at
        };
        // s000-s033 want minute 0 (floor(i*3/100) = 0); s030-s033 spill to
        // minute 1, which then fills up at s059; s060-s089 land on minute 2.
        assert_eq!(at("s029"), utc(2027, 4, 1, 0, 0, 0));
        assert_eq!(at("s030"), utc(2027, 4, 1, 0, 1, 0));
        assert_eq!(at("s059"), utc(2027, 4, 1, 0, 1, 0));
        assert_eq!(at("s060"), utc(2027, 4, 1, 0, 2, 0));
        assert_eq!(at("s089"), utc(2027, 4, 1, 0, 2, 0));
        let over: Vec<&str> = plan
            .over_capacity
            .iter()
            .map(|o| o.secret.as_str())
            .collect();
        let expected_over = ids(100)[90..].to_vec();
        assert_eq!(over, expected_over);
        // Overflow stays in the plan, at the window's last minute.
        assert_eq!(at("s095"), utc(2027, 4, 1, 0, 2, 0));
        assert_eq!(
            per_minute(&plan.entries),
            [
                (utc(2027, 4, 1, 0, 0, 0), 30),
                (utc(2027, 4, 1, 0, 1, 0), 30),
                (utc(2027, 4, 1, 0, 2, 0), 40)
            ]
        );
    }

    #[test]
    fn one_minute_window_over_capacity_is_reported() {
        let targets: Vec<Target> = ids(100)
            .iter()
            .map(|id| target(id, "@quarterly", Duration::minutes(1)))
            .collect();
        let plan = plan(
            &targets,
            &offline,
            utc(2027, 3, 31, 0, 0, 0),
            utc(2027, 4, 2, 0, 0, 0),
            &policy(180, 30),
        );
        assert_eq!(plan.entries.len(), 100);
        assert_eq!(plan.over_capacity.len(), 70);
        assert_eq!(plan.over_capacity[0].secret, "s030");
        assert_eq!(plan.over_capacity[0].window_start, utc(2027, 4, 1, 0, 0, 0));
        assert_eq!(plan.over_capacity[0].window_end, utc(2027, 4, 1, 0, 1, 0));
        assert!(
            plan.entries
                .iter()
                .all(|e| e.start_at == utc(2027, 4, 1, 0, 0, 0))
        );
    }

    #[test]
    fn overlapping_schedules_share_the_global_cap() {
        // A: 40 targets in [00:00, 00:10); B: 40 in [00:05, 00:15); cap 6.
        // A takes 4 per minute in 00:00-00:09. B then has 2 free in each of
        // 00:05-00:09 and 6 in each of 00:10-00:14: exactly its 40.
        let mut targets = Vec::new();
        for i in 0..40 {
            targets.push(target(
                &format!("a{i:02}"),
                "0 0 * * *",
                Duration::minutes(10),
            ));
            targets.push(target(
                &format!("b{i:02}"),
                "5 0 * * *",
                Duration::minutes(10),
            ));
        }
        let now = utc(2027, 1, 1, 0, 0, 0);
        let plan = plan(
            &targets,
            &offline,
            now,
            utc(2027, 1, 1, 1, 0, 0),
            &policy(180, 6),
        );
        assert!(plan.over_capacity.is_empty());
        let mut expected: Vec<(DateTime<Utc>, usize)> =
            (0..5).map(|m| (utc(2027, 1, 1, 0, m, 0), 4)).collect();
        expected.extend((5..15).map(|m| (utc(2027, 1, 1, 0, m, 0), 6)));
        assert_eq!(per_minute(&plan.entries), expected);
        for e in &plan.entries {
            assert!(
                e.window_start <= e.start_at && e.start_at < e.window_end,
                "{e:?}"
            );
        }
        // Minute 00:05 holds both schedules.
        let at_five: Vec<char> = plan
            .entries
            .iter()
            .filter(|e| e.start_at == utc(2027, 1, 1, 0, 5, 0))
            .map(|e| e.secret.chars().next().unwrap())
            .collect();
        assert!(
            at_five.contains(&'a') && at_five.contains(&'b'),
            "{at_five:?}"
        );
    }

    #[test]
    fn plan_is_sorted_by_start_then_secret() {
        let mut targets = Vec::new();
        for (i, sched) in ["@monthly", "0 */6 * * *", "30 2 * * 1-5", "@quarterly"]
            .iter()
            .enumerate()
        {
            for j in 0..25 {
                targets.push(target(
                    &format!("t{:02}", (j * 7 + i) % 100),
                    sched,
                    Duration::hours(1),
                ));
            }
        }
        let plan = plan(
            &targets,
            &offline,
            utc(2027, 1, 1, 0, 30, 0),
            utc(2027, 3, 1, 0, 0, 0),
            &policy(180, 2),
        );
        assert!(!plan.entries.is_empty());
        for w in plan.entries.windows(2) {
            assert!(
                (w[0].start_at, &w[0].secret) <= (w[1].start_at, &w[1].secret),
                "{w:?}"
            );
        }
        let max = per_minute(&plan.entries)
            .iter()
            .map(|(_, c)| *c)
            .max()
            .unwrap();
        assert!(max <= 2 || !plan.over_capacity.is_empty());
    }

    #[test]
    fn plan_entry_serializes_with_z_timestamps() {
        let mut t = target("prod/db", "@yearly", Duration::hours(4));
        t.ticket = Some("CHG-1".to_owned());
        let plan = plan(
            &[t],
            &offline,
            utc(2026, 12, 31, 0, 0, 0),
            utc(2027, 1, 2, 0, 0, 0),
            &policy(400, 30),
        );
        assert_eq!(
            serde_json::to_string(&plan.entries[0]).unwrap(),
            "{\"secret\":\"prod/db\",\"window_start\":\"2027-01-01T00:00:00Z\",\
             \"window_end\":\"2027-01-01T04:00:00Z\",\"start_at\":\"2027-01-01T00:00:00Z\",\
             \"reason\":\"scheduled\",\"ticket\":\"CHG-1\"}"
        );
    }
}
