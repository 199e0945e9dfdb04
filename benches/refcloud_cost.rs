//! The reference panel cloud over HTTP, as a vendor's would be measured: does a disarm's time
//! tell its kind, and does a request's cost grow with the cloud's history?
//!
//! 1. Kinds, fresh: `--pairs` normal/duress disarm pairs, each disarm after an arm, the two
//!    kinds in random order within each pair; medians and the Mann–Whitney p-value (the
//!    conformance kit's `duress_equal_work` verdict, src/local/conformance/mod.rs).
//! 2. Cost: `--requests` disarms (kinds at random) on the disarmed panel, each one decision
//!    recorded durably in the DC-09 journal with its request id (kept 7 days: the clock is
//!    frozen, so the window holds every one). The median and p90 per block of `--block`
//!    requests, with the journal's rewrites and records rewritten in that block.
//! 3. Kinds again, after that history.
//!
//! **Exits 1** when the kit's verdict fails in 1 or 3, or when the last block's median is more
//! than twice the first's.
//!
//! Run: `cargo bench --bench refcloud_cost` (100,000 requests in blocks of 5,000, 500 pairs:
//! about two minutes idle). `-- --requests N --block N --pairs N` to change. Without `--bench`
//! (`cargo test --benches`) it is a smoke pass of a few thousand requests, which prints its
//! figures without judging them.

use std::time::{Duration, Instant};

use alarm_skill::local::conformance::stats::{mann_whitney, median};
use alarm_skill::local::conformance::timing_verdict;
use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::{LocalStack, Options};
use serde_json::json;

const TWO_HOUSEHOLDS: &str = include_str!("../docs/examples/two-households.json");

struct Args {
    requests: usize,
    block: usize,
    pairs: usize,
    /// Only a measured run (`--bench`) judges the timings: the smoke pass runs beside other
    /// suites, where a busy machine's noise alone once doubled a block's median.
    verdict: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let bench = argv.iter().any(|a| a == "--bench");
    let mut a = if bench {
        Args {
            requests: 100_000,
            block: 5_000,
            pairs: 500,
            verdict: true,
        }
    } else {
        Args {
            requests: 3_000,
            block: 500,
            pairs: 50,
            verdict: false,
        }
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = || -> usize {
            it.clone()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} wants a number"))
        };
        match flag.as_str() {
            "--requests" => a.requests = value(),
            "--block" => a.block = value().max(1),
            "--pairs" => a.pairs = value().max(20),
            _ => {}
        }
    }
    a
}

struct Cloud {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Cloud {
    async fn post(&self, op: &str, body: serde_json::Value) -> Duration {
        let url = format!("{}/v1/accounts/demo/panels/home/{op}", self.base);
        let start = Instant::now();
        let r = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("the reference cloud answers");
        let status = r.status();
        let _ = r.bytes().await;
        let elapsed = start.elapsed();
        assert!(status.is_success(), "{op} answered {status}");
        elapsed
    }

    async fn arm(&self) {
        let id = uuid::Uuid::new_v4().to_string();
        self.post(
            "arm",
            json!({"mode": "away", "bypass_open_zones": false, "source": "voice", "request_id": id}),
        )
        .await;
    }

    async fn disarm(&self, duress: bool) -> Duration {
        let id = uuid::Uuid::new_v4().to_string();
        let kind = if duress { "duress" } else { "normal" };
        self.post(
            "disarm",
            json!({"member": 1, "source": "voice", "kind": kind, "request_id": id}),
        )
        .await
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Normal and duress disarms from an armed panel, in random order within each pair.
async fn kinds(cloud: &Cloud, pairs: usize, label: &str, verdict: bool) -> bool {
    let (mut normal, mut duress) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        let first = rand::random::<bool>();
        for kind in [first, !first] {
            cloud.arm().await;
            let t = ms(cloud.disarm(kind).await);
            if kind { duress.push(t) } else { normal.push(t) }
        }
    }
    let p = mann_whitney(&normal, &duress).map_or(f64::NAN, |t| t.p);
    let (mn, md) = (median(&mut normal.clone()), median(&mut duress.clone()));
    println!(
        "{label}: normal median {mn:.3} ms, duress median {md:.3} ms ({:+.1} %), \
         Mann-Whitney p = {p:.3} ({pairs} pairs)",
        (md / mn - 1.0) * 100.0
    );
    if !verdict {
        return true;
    }
    match timing_verdict(&normal, &duress) {
        Ok(_) => true,
        Err(e) => {
            println!("  FAIL: {e}");
            false
        }
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = std::env::temp_dir().join(format!("refcloud-cost-{}", uuid::Uuid::new_v4().simple()));
    let stack = LocalStack::start(Options {
        port: 0,
        panel_port: 0,
        receiver_port: 0,
        frozen_clock: true,
        redelivery_interval: None,
        monitoring_dir: Some(dir.clone()),
        config: DemoConfig::parse(TWO_HOUSEHOLDS).expect("example config"),
        ..Options::default()
    })
    .await
    .expect("local stack starts");
    let cloud = Cloud {
        http: reqwest::Client::new(),
        base: format!("http://{}", stack.panel_api.addr()),
        key: stack.sim.api_key().expose().to_string(),
    };
    let link = stack
        .sim
        .link()
        .expect("the stack has a DC-09 link")
        .clone();
    // Warm-up: connections, caches, the allocator.
    for _ in 0..50 {
        cloud.arm().await;
        cloud.disarm(false).await;
    }
    let mut ok = kinds(&cloud, a.pairs, "fresh cloud", a.verdict).await;

    println!(
        "\n{} disarms of the disarmed panel, kinds at random, in blocks of {}:",
        a.requests, a.block
    );
    println!(
        "{:>15} {:>10} {:>10} {:>9} {:>17}",
        "requests", "median ms", "p90 ms", "rewrites", "records rewritten"
    );
    let mut medians = Vec::new();
    let started = Instant::now();
    let mut done = 0;
    while done < a.requests {
        let n = a.block.min(a.requests - done);
        let before = link.journal_stats().rewrites;
        let mut times: Vec<f64> = Vec::with_capacity(n);
        for _ in 0..n {
            times.push(ms(cloud.disarm(rand::random::<bool>()).await));
        }
        let after = link.journal_stats().rewrites;
        times.sort_by(f64::total_cmp);
        let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
        let m = median(&mut times);
        medians.push(m);
        println!(
            "{:>7}-{:<7} {:>10.3} {:>10.3} {:>9} {:>17}",
            done,
            done + n - 1,
            m,
            p90,
            (after.syncs - before.syncs) / 2,
            after.records - before.records
        );
        done += n;
    }
    let stats = link.journal_stats();
    println!(
        "{} requests in {:.0} s; journal: {} request records, {} syncs; {} rewrites kept {} \
         records ({:.2} per request)",
        done,
        started.elapsed().as_secs_f64(),
        stats.requests.records,
        stats.requests.syncs,
        stats.rewrites.syncs / 2,
        stats.rewrites.records,
        stats.rewrites.records as f64 / stats.requests.records.max(1) as f64
    );
    if let (Some(first), Some(last)) = (medians.first(), medians.last()) {
        println!("last block's median / first's: {:.2}", last / first);
        if a.verdict && *last > 2.0 * first {
            println!("FAIL: a request's cost grew with the cloud's history");
            ok = false;
        }
    }
    println!();
    ok &= kinds(
        &cloud,
        a.pairs,
        &format!("after {done} requests"),
        a.verdict,
    )
    .await;
    if !a.verdict {
        println!("smoke run: figures only, no verdict (measured runs judge them: --bench)");
    }
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
    if !ok {
        std::process::exit(1);
    }
}
