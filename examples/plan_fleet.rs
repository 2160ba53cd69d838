//! Plans a synthetic fleet for a year and prints how long planning took; `scripts/bench.sh`
//! runs it under `/usr/bin/time -v` for the process's peak RSS.
//!
//! Usage: `cargo run --release --example plan_fleet -- [SECRETS]` (default 100,000).
//! The fleet is spread like `scripts/gen-fleet-config.py`: quarterly windows of 1 h on 28
//! days x 24 hours, one in ten on a vendor's monthly schedule.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use rotationd::planner::{Policy, Target, plan};
use rotationd::schedule::Schedule;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECRETS must be a number"))
        .unwrap_or(100_000);
    let mut parsed: HashMap<String, Schedule> = HashMap::new();
    let targets: Vec<Target> = (0..n)
        .map(|i| {
            let (day, hour) = (1 + i % 28, (i / 28) % 24);
            let text = if i % 10 == 9 {
                format!("{} {hour} {day} * *", i % 60)
            } else {
                format!("0 {hour} {day} 1,4,7,10 *")
            };
            let schedule = parsed
                .entry(text.clone())
                .or_insert_with(|| Schedule::parse(&text).expect("valid schedule"))
                .clone();
            Target {
                id: format!("prod/app-{i:06}/db"),
                schedule,
                window: Duration::hours(1),
                ticket: Some(format!("CHG-{}", 10000 + i % 500)),
            }
        })
        .collect();
    let policy = Policy {
        max_age: Duration::days(93),
        max_rotations_per_minute: NonZeroU32::new(30).expect("non-zero"),
    };
    let from = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    let started = Instant::now();
    let p = plan(
        &targets,
        &|_| None,
        from,
        from + Duration::days(365),
        &policy,
    );
    let took = started.elapsed();
    println!(
        "planned {n} secrets over 365 days: {} windows, {} over capacity, in {:.0} ms",
        p.entries.len(),
        p.over_capacity.len(),
        took.as_secs_f64() * 1000.0
    );
}
