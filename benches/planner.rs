//! Planner throughput at fleet scale: 100,000 targets over a year.
//!
//! `crowded`: 90,000 targets on @quarterly with a 4 h window (far beyond the
//! 240 min x 30/min = 7,200 slots, so most entries overflow) plus 10,000 over
//! 50 other crontabs. `realistic`: 100,000 targets over 400 distinct monthly,
//! quarterly and weekly schedules.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration as StdDuration;

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use rotationd::planner::{Facts, Plan, Policy, Target, plan};
use rotationd::schedule::Schedule;

fn targets_over(schedules: &[(Schedule, Duration)], count: usize, offset: usize) -> Vec<Target> {
    (0..count)
        .map(|i| {
            let (schedule, window) = &schedules[i % schedules.len()];
            Target {
                id: format!(
                    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-{:06}",
                    i + offset
                ),
                // Parsed once per text; clones share it.
                schedule: schedule.clone(),
                window: *window,
                ticket: None,
            }
        })
        .collect()
}

fn parse_all(texts: &[String], window: Duration) -> Vec<(Schedule, Duration)> {
    texts
        .iter()
        .map(|t| {
            (
                Schedule::parse(t).expect("bench schedules are valid"),
                window,
            )
        })
        .collect()
}

fn crowded() -> Vec<Target> {
    let quarterly = parse_all(&["@quarterly".to_owned()], Duration::hours(4));
    let others: Vec<String> = (0..50)
        .map(|i| {
            if i % 5 == 4 {
                format!("{} {} * * {}", i, i % 24, i % 7)
            } else {
                format!("{} {} {} * *", i, i % 24, 1 + i % 28)
            }
        })
        .collect();
    let mut targets = targets_over(&quarterly, 90_000, 0);
    targets.extend(targets_over(
        &parse_all(&others, Duration::hours(2)),
        10_000,
        90_000,
    ));
    targets
}

fn realistic() -> Vec<Target> {
    let mut texts = Vec::new();
    for i in 0..250 {
        texts.push(format!("{} {} {} * *", (i * 7) % 60, i % 24, 1 + i % 28));
    }
    for i in 0..120 {
        texts.push(format!(
            "{} {} {} 1,4,7,10 *",
            (i * 11) % 60,
            (i * 5) % 24,
            1 + i % 28
        ));
    }
    for i in 0..30 {
        texts.push(format!("{} {} * * {}", (i * 13) % 60, (i * 3) % 24, i % 7));
    }
    targets_over(&parse_all(&texts, Duration::hours(4)), 100_000, 0)
}

fn run(targets: &[Target]) -> Plan {
    let policy = Policy {
        max_age: Duration::days(120),
        max_rotations_per_minute: NonZeroU32::new(30).expect("30 is not zero"),
    };
    let now = Utc
        .with_ymd_and_hms(2026, 12, 15, 0, 0, 0)
        .single()
        .expect("valid date");
    let no_facts = |_: &str| -> Option<Facts> { None };
    plan(targets, &no_facts, now, now + Duration::days(365), &policy)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan_100k_targets_1y");
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(15));
    for (name, targets) in [("crowded", crowded()), ("realistic", realistic())] {
        let sample = run(&targets);
        eprintln!(
            "{name}: {} entries, {} over capacity",
            sample.entries.len(),
            sample.over_capacity.len()
        );
        // Dropping 1M+ owned entries is the caller's cost, measured apart.
        group.bench_function(name, |b| {
            b.iter_with_large_drop(|| run(black_box(&targets)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
