//! The cost of the DynamoDB state backend's log: appending N store jobs, a new replica
//! replaying all of them, a snapshot, and a new replica starting from that snapshot.
//!
//! Usage: `replay_log ENDPOINT N` against a DynamoDB-compatible endpoint (moto in
//! `scripts/bench.sh`); prints the append rate and the replay time.

use std::time::Instant;

use rotationd::store::Store;
use rotationd::store::dynamodb::ensure_table;
use rotationd::store::journal::Journal;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().ok_or("usage: replay_log ENDPOINT N")?;
    let n: u64 = args.next().ok_or("usage: replay_log ENDPOINT N")?.parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let sdk = runtime.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .load(),
    );
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("rotationd-replay-{}", std::process::id());
    runtime.block_on(ensure_table(&client, &table))?;
    let journal =
        |who: &str| Journal::dynamodb(client.clone(), &table, runtime.handle().clone(), who);

    let mut writer = Store::open_replicated(journal("writer"))?;
    let started = Instant::now();
    for i in 0..n {
        let now = chrono::Utc::now();
        // A typical small job: an event marked seen and a cursor moved, in one entry.
        writer.job(|s| {
            s.transaction(|db| {
                db.mark_event_seen(&format!("event-{i}"), "sqs", now)?;
                db.set_cursor("cloudtrail", &now.to_rfc3339(), now)
            })
        })?;
    }
    let append = started.elapsed();
    println!(
        "appended {n} entries in {:.2} s ({:.1} ms each)",
        append.as_secs_f64(),
        append.as_secs_f64() * 1000.0 / n as f64
    );

    let started = Instant::now();
    let reader = Store::open_replicated(journal("reader"))?;
    let replay = started.elapsed();
    let seq = reader.journal().map(|j| j.seq()).unwrap_or(0);
    assert_eq!(seq, n, "the replica must have every entry");
    println!(
        "a new replica replayed {seq} entries in {:.2} s ({:.0} entries/s)",
        replay.as_secs_f64(),
        seq as f64 / replay.as_secs_f64()
    );

    // What the leader does every SNAPSHOT_EVERY entries, and what a start then costs.
    let started = Instant::now();
    let at = writer.write_snapshot()?.ok_or("no snapshot position")?;
    println!(
        "a snapshot at entry {at} written in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let from_snapshot = Store::open_replicated(journal("reader-2"))?;
    let j = from_snapshot.journal().ok_or("no journal")?;
    assert_eq!(j.snapshot_seq(), at);
    println!(
        "a new replica opened from the snapshot in {:.2} s (replayed {} entries after it)",
        started.elapsed().as_secs_f64(),
        j.replayed_at_open()
    );
    Ok(())
}
