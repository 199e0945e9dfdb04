//! Per-directive cost in-process: Discover, ReportState, Arm and Disarm through the production
//! handler, over the embedded store and the in-process simulator, JWT verification included and
//! the network excluded. Target: under 100 µs median CPU per directive.
//!
//! Run: `cargo bench --bench directives`

mod common;

use common::*;

fn main() {
    // `cargo test` runs bench targets without `--bench`: a quick smoke pass, as criterion does.
    let full = std::env::args().any(|a| a == "--bench");
    let (samples, warmup) = if full { (2_000, 200) } else { (5, 2) };
    let b = setup();
    let t = b.token.clone();
    let discover = discover(&t);
    let report = directive(&t, "Alexa", "ReportState", "home", serde_json::json!({}));
    let arm = arm(&t);
    let disarm = disarm(&t, "4729");
    // Warm up: JWKS fetch, allocator, caches.
    for _ in 0..warmup {
        for d in [&discover, &report, &arm, &disarm] {
            timed(&b, d);
        }
    }
    let mut results: Vec<(&str, Vec<std::time::Duration>, Vec<std::time::Duration>)> = vec![];
    for (name, ds) in [
        ("Discover", vec![&discover]),
        ("ReportState", vec![&report]),
        ("Arm+Disarm", vec![&arm, &disarm]),
    ] {
        let mut per: Vec<(Vec<_>, Vec<_>)> = ds.iter().map(|_| (vec![], vec![])).collect();
        for _ in 0..samples {
            for (i, d) in ds.iter().enumerate() {
                let (wall, cpu, reply) = timed(&b, d);
                assert!(
                    reply["event"]["header"]["name"] != "ErrorResponse",
                    "{name}: {reply}"
                );
                per[i].0.push(wall);
                per[i].1.push(cpu);
            }
        }
        if name == "Arm+Disarm" {
            let mut it = per.into_iter();
            let (aw, ac) = it.next().unwrap();
            let (dw, dc) = it.next().unwrap();
            results.push(("Arm", aw, ac));
            results.push(("Disarm", dw, dc));
        } else {
            let (w, c) = per.into_iter().next().unwrap();
            results.push((name, w, c));
        }
    }
    println!("directive      n     cpu p50   cpu p90   cpu p99   wall p50  (µs)");
    for (name, wall, cpu) in &results {
        print_row(name, 12, wall, cpu);
    }
    println!("peak RSS: {} KiB", peak_rss_kib());
}
