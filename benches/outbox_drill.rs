//! The outbox drill's times (the counts are asserted by tests/it/hostile.rs): thousands of
//! households' duress during a panel cloud outage, with and without a hostile household flooding
//! junk through both assistants, then recovery.
//!
//!   DYNAMODB_ENDPOINT=$(scripts/dynamodb-local start) cargo bench --bench outbox_drill
//!   cargo bench --bench outbox_drill -- --households 500     # embedded store without the variable
//!
//! Prints one JSON report per run and a summary: passes and seconds from recovery until every
//! household's 121 reached the monitoring center, what the flood added, and the worker's
//! records per second per shard.

use alarm_skill::local::drill::{self, DrillOptions, DrillReport};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn summary(label: &str, r: &DrillReport) {
    println!(
        "{label:>8}: {} households, {} shards, quota {}: all {} duress delivered after {} passes, \
         {:.1} s from recovery; lost {}, duplicated {}; {:.1} records/s per shard; \
         hostile requests {}, hostile records {}",
        r.households,
        r.shards,
        r.quota,
        r.households - r.lost,
        r.passes_to_all,
        r.millis_to_all as f64 / 1000.0,
        r.lost,
        r.duplicated,
        r.records_per_s_per_shard,
        r.hostile_requests,
        r.hostile_pending_at_recovery,
    );
}

#[tokio::main]
async fn main() {
    // `cargo test` runs bench targets without `--bench`: a smoke pass of a few households (the
    // full drill's counts are asserted by tests/it/hostile.rs).
    let full = std::env::args().any(|a| a == "--bench");
    let households = arg("--households")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 2_000 } else { 20 });
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    println!(
        "store: {}",
        endpoint
            .as_deref()
            .unwrap_or("embedded (set DYNAMODB_ENDPOINT for DynamoDB Local)")
    );
    let opts = DrillOptions {
        households,
        dynamodb_endpoint: endpoint,
        ..Default::default()
    };
    let quiet = drill::run(&DrillOptions {
        hostile: false,
        ..opts.clone()
    })
    .await
    .expect("quiet drill");
    let hostile = drill::run(&opts).await.expect("hostile drill");
    for (label, r) in [("quiet", &quiet), ("hostile", &hostile)] {
        println!("{label}: {}", serde_json::to_string(r).unwrap_or_default());
    }
    summary("quiet", &quiet);
    summary("hostile", &hostile);
    println!(
        "the flood's cost to the others: {:+} passes, {:+.1} s",
        hostile.passes_to_all as i64 - quiet.passes_to_all as i64,
        (hostile.millis_to_all as f64 - quiet.millis_to_all as f64) / 1000.0
    );
    // The second path (issue 26): the same hostile drill with the skill sending each duress to
    // the center itself while the cloud is down; then with the receiver down as well.
    let second = drill::run(&DrillOptions {
        second_path: true,
        ..opts.clone()
    })
    .await
    .expect("second-path drill");
    let both_down = drill::run(&DrillOptions {
        second_path: true,
        receiver_down: true,
        ..opts.clone()
    })
    .await
    .expect("second-path drill, receiver down");
    for (label, r) in [("second path", &second), ("receiver down too", &both_down)] {
        println!("{label}: {}", serde_json::to_string(r).unwrap_or_default());
        println!(
            "{label:>17}: {} of {} households' 121 at the center before the cloud came back; \
             directive replies (each after its 121's ACK) p50 {} ms, p99 {} ms, max {} ms; \
             after recovery all {} in {} passes; lost {}, dispatched twice {}, copies merged {}",
            r.at_center_before_recovery,
            r.households,
            r.reply_ms_p50,
            r.reply_ms_p99,
            r.reply_ms_max,
            r.households - r.lost,
            r.passes_to_all,
            r.lost,
            r.duplicated,
            r.merged_copies,
        );
    }
    let runs = [&quiet, &hostile, &second, &both_down];
    if runs.iter().any(|r| r.lost + r.duplicated > 0) {
        std::process::exit(1);
    }
}
