//! Per-intent cost in-process for Google: SYNC, QUERY, and EXECUTE ArmDisarm (arm, the PIN
//! challenge, disarm with the PIN) through the production fulfillment, over the embedded store
//! and the in-process simulator, JWT verification included and the network excluded. The same
//! set-up as benches/directives.rs. Target: under 100 µs median CPU per intent.
//!
//! Run: `cargo bench --bench google`

mod common;

use std::time::{Duration, Instant};

use alarm_skill::edges::google_fulfillment::Fulfillment;
use common::*;
use serde_json::{Value, json};

fn request(intent: &str, payload: Option<Value>) -> Vec<u8> {
    let mut input = json!({ "intent": intent });
    if let Some(p) = payload {
        input["payload"] = p;
    }
    json!({ "requestId": "bench-request", "inputs": [input] })
        .to_string()
        .into_bytes()
}

fn execute(params: Value, pin: Option<&str>) -> Vec<u8> {
    let mut execution = json!({ "command": "action.devices.commands.ArmDisarm", "params": params });
    if let Some(p) = pin {
        execution["challenge"] = json!({ "pin": p });
    }
    request(
        "action.devices.EXECUTE",
        Some(json!({ "commands": [{ "devices": [{ "id": "home" }], "execution": [execution] }] })),
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (samples, warmup) = if full { (2_000, 200) } else { (5, 2) };
    let b = setup();
    let f = Fulfillment::new(b.skill.clone(), true);
    let auth = format!("Bearer {}", b.token);
    let sync = request("action.devices.SYNC", None);
    let query = request(
        "action.devices.QUERY",
        Some(json!({ "devices": [{ "id": "home" }, { "id": "home:front-door" }] })),
    );
    let arm = execute(json!({ "arm": true, "armLevel": "away" }), None);
    let challenge = execute(json!({ "arm": false }), None);
    let disarm = execute(json!({ "arm": false }), Some("4729"));
    let run = |body: &[u8]| {
        let deadline = alarm_skill::common::deadline::Deadline::for_directive(None);
        let (w0, c0) = (Instant::now(), thread_cpu());
        let reply = b.rt.block_on(f.handle(Some(&auth), body, deadline));
        (w0.elapsed(), thread_cpu() - c0, reply)
    };
    for _ in 0..warmup {
        for body in [&sync, &query, &arm, &challenge, &disarm] {
            run(body);
        }
    }
    // One cycle: arm, ask for the PIN, disarm with it; SYNC and QUERY alongside.
    let names = [
        "SYNC",
        "QUERY",
        "EXECUTE arm",
        "EXECUTE challenge",
        "EXECUTE disarm",
    ];
    let bodies = [&sync, &query, &arm, &challenge, &disarm];
    let mut per: Vec<(Vec<Duration>, Vec<Duration>)> =
        names.iter().map(|_| (vec![], vec![])).collect();
    for _ in 0..samples {
        for (i, body) in bodies.iter().enumerate() {
            let (wall, cpu, reply) = run(body);
            assert_eq!(reply.status, 200, "{}: {}", names[i], reply.body);
            let expected = match names[i] {
                "EXECUTE challenge" => Some("challengeNeeded"),
                "SYNC" | "QUERY" => None,
                _ => Some("SUCCESS"),
            };
            if let Some(want) = expected {
                let c = &reply.body["payload"]["commands"][0];
                let got = c["errorCode"].as_str().or(c["status"].as_str());
                assert_eq!(got, Some(want), "{}: {}", names[i], reply.body);
            }
            per[i].0.push(wall);
            per[i].1.push(cpu);
        }
    }
    println!("intent                 n     cpu p50   cpu p90   cpu p99   wall p50  (µs)");
    for (name, (wall, cpu)) in names.iter().zip(&per) {
        print_row(name, 18, wall, cpu);
    }
    println!("peak RSS: {} KiB", peak_rss_kib());
}
