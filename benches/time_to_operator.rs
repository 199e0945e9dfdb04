//! Time to the operator (issue 24, item 4): from a duress disarm directive's arrival to the
//! monitoring receiver's entry of its Contact ID 121 (the operator's duress dispatch), through
//! the whole local stack over HTTP: the directive, the reference panel cloud, SIA DC-09 over TCP,
//! the receiver. The re-delivery worker runs as deployed: a pass every 2 s.
//!
//!   cargo bench --bench time_to_operator                   # default: under ~2 minutes
//!   cargo bench --bench time_to_operator -- --samples 10   # more samples per row
//!   cargo bench --bench time_to_operator -- --second-path  # with the skill's second path
//!
//! Rows: the healthy path; each panel cloud fault the simulator offers, present while the
//! directive runs and cleared once it has answered; a 30-minute outage (simulated clock: the
//! worker's passes run through it, then the cloud comes back; measured from recovery); a crash of
//! the directive function right after its decision and outbox record are written (a failpoint
//! panics the directive there: no panel call, no settle, as a killed process leaves it). Prints
//! a markdown table, p50 and p99 (nearest rank: with few samples p99 is the slowest). Timings
//! are this machine's, for comparison between runs; tests assert counts and order, never these.

use std::time::{Duration, Instant};

use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::simulator::monitoring::DispatchReason;
use alarm_skill::local::simulator::{Fault, FaultMode};
use alarm_skill::local::{INVOKE_PATH, LocalStack, Options};
use serde_json::{Value, json};

const DURESS: &str = "8361";
/// How long a row waits for a 121 before it counts the sample as lost (and fails the run).
const GIVE_UP: Duration = Duration::from_secs(60);

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn directive(name: &str, token: &str, payload: Value) -> Value {
    json!({"directive": {
        "header": {"namespace": "Alexa.SecurityPanelController", "name": name,
            "messageId": uuid::Uuid::new_v4().to_string(),
            "correlationToken": format!("corr-{}", uuid::Uuid::new_v4()),
            "payloadVersion": "3"},
        "endpoint": {"scope": {"type": "BearerToken", "token": token}, "endpointId": "home", "cookie": {}},
        "payload": payload
    }})
}

struct Stack {
    stack: LocalStack,
    http: reqwest::Client,
    token: String,
}

impl Stack {
    async fn start() -> Stack {
        let stack = LocalStack::start(Options {
            config: DemoConfig::demo(),
            port: 0,
            panel_port: 0,
            receiver_port: 0,
            frozen_clock: false,
            redelivery_interval: Some(Duration::from_secs(2)),
            directive_budget: Some(Duration::from_millis(1_500)),
            table: format!("t-{}", uuid::Uuid::new_v4().simple()),
            // `--second-path`: the skill sends the 121 to the center itself when the cloud
            // fails (issue 26); the cloud-fault rows then measure that path.
            second_path: std::env::args().any(|a| a == "--second-path"),
            ..Options::default()
        })
        .await
        .expect("local stack starts");
        let token = stack
            .issuer
            .mint("demo", false, chrono::Duration::hours(12))
            .expect("token");
        Stack {
            stack,
            http: reqwest::Client::new(),
            token,
        }
    }

    /// The reply, or `None` when the connection died with the directive (the crash row).
    async fn invoke(&self, d: &Value) -> Option<Value> {
        let resp = self
            .http
            .post(format!("{}{INVOKE_PATH}", self.stack.base_url))
            .body(d.to_string())
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    fn duress_entries(&self) -> usize {
        self.stack
            .receiver
            .center()
            .dispatches()
            .iter()
            .filter(|d| d.reason == DispatchReason::Duress)
            .count()
    }

    async fn arm(&self) {
        let r = self
            .invoke(&directive(
                "Arm",
                &self.token,
                json!({"armState": "ARMED_AWAY"}),
            ))
            .await;
        let name = r.as_ref().map(|r| r["event"]["header"]["name"].clone());
        assert_eq!(name, Some(json!("Arm.Response")), "{r:?}");
    }

    /// Through the stack's own endpoint, as a user sets it: `down` also closes the listener.
    async fn fault(&self, mode: FaultMode, delay_ms: u64) {
        let resp = self
            .http
            .post(format!("{}/sim/faults", self.stack.base_url))
            .json(&Fault { mode, delay_ms })
            .send()
            .await
            .expect("POST /sim/faults");
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    async fn disarm(&self) -> Option<Value> {
        let d = directive(
            "Disarm",
            &self.token,
            json!({"authorization": {"type": "FOUR_DIGIT_PIN", "value": DURESS}}),
        );
        self.invoke(&d).await
    }

    /// Waits for the receiver's entry of one more 121 than `before`.
    async fn entry_after(&self, before: usize, from: Instant) -> Option<Duration> {
        while from.elapsed() < GIVE_UP {
            if self.duress_entries() > before {
                return Some(from.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }
}

#[derive(Clone, Copy)]
enum Row {
    Healthy,
    Fault(FaultMode, u64),
    /// An outage of this many worker passes, 10 s of simulated time each.
    Outage(u32),
    Crash,
}

impl Row {
    fn label(self) -> String {
        match self {
            Row::Healthy => "healthy".into(),
            Row::Fault(m, d) if d > 0 => {
                format!("cloud fault `{m:?}` ({d} ms), during the directive")
            }
            Row::Fault(m, _) => format!("cloud fault `{m:?}`, during the directive"),
            Row::Outage(passes) => {
                format!("after a {}-minute outage (from recovery)", passes * 10 / 60)
            }
            Row::Crash => "directive function crashed after its decision".into(),
        }
    }
}

/// One sample: the time from the directive's arrival (from recovery for the outage row) to the
/// receiver's entry of the 121.
async fn sample(s: &Stack, row: Row) -> Option<Duration> {
    s.arm().await;
    let before = s.duress_entries();
    match row {
        Row::Healthy => {
            let t = Instant::now();
            s.disarm().await?;
            s.entry_after(before, t).await
        }
        Row::Fault(mode, delay) => {
            s.fault(mode, delay).await;
            let t = Instant::now();
            let reply = s.disarm().await;
            // A held reply is released by changing the fault; the others simply end.
            s.fault(FaultMode::None, 0).await;
            reply?;
            s.entry_after(before, t).await
        }
        Row::Outage(passes) => {
            s.fault(FaultMode::Down, 0).await;
            s.disarm().await?;
            // The outage in simulated time, a worker pass every 10 s of it.
            for _ in 0..passes {
                s.stack.clock.advance(chrono::Duration::seconds(10));
                if let Err(e) = s.stack.redeliver().await {
                    eprintln!("outage: a worker pass failed: {e}");
                    return None;
                }
            }
            if s.duress_entries() != before {
                eprintln!("outage: a 121 arrived while the cloud was down");
                return None;
            }
            s.fault(FaultMode::None, 0).await;
            let t = Instant::now();
            s.entry_after(before, t).await
        }
        Row::Crash => {
            fail::cfg(
                alarm_skill::common::crash::DISARM_DECISION_WRITTEN,
                "1*panic",
            )
            .expect("failpoint");
            let t = Instant::now();
            let reply = s.disarm().await;
            fail::remove(alarm_skill::common::crash::DISARM_DECISION_WRITTEN);
            assert!(reply.is_none(), "the directive died: {reply:?}");
            s.entry_after(before, t).await
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `n` samples of `row` on a stack of its own (one row's backlog or open breaker never waits on
/// another's): the times that reached the receiver, and how many never did.
async fn measure_row(row: Row, n: usize) -> (Vec<Duration>, usize) {
    let mut s = Stack::start().await;
    let mut times = Vec::with_capacity(n);
    let mut lost = 0;
    for _ in 0..n {
        match sample(&s, row).await {
            Some(t) => times.push(t),
            None => {
                eprintln!("{}: a sample never reached the receiver", row.label());
                lost += 1;
            }
        }
        // Every sample starts with the panel armed and the exit delay over.
        s.stack.clock.advance(chrono::Duration::seconds(61));
    }
    s.stack.shutdown().await;
    (times, lost)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test` runs bench targets without `--bench`: one sample a row, as a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let samples: usize = arg("--samples")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 3 } else { 1 });
    let only = arg("--row");
    let rows = [
        (Row::Healthy, samples * 7),
        (Row::Fault(FaultMode::Error, 0), samples),
        (Row::Fault(FaultMode::Timeout, 2_000), samples),
        (Row::Fault(FaultMode::Slow, 2_000), samples),
        (Row::Fault(FaultMode::Hold, 2_000), samples),
        (Row::Fault(FaultMode::Down, 0), samples),
        (Row::Fault(FaultMode::NotFound, 0), samples),
        // 30 minutes measured; the smoke run's single minute takes the same path, not 180 passes.
        (Row::Outage(if full { 180 } else { 6 }), samples.div_ceil(3)),
        (Row::Crash, samples.div_ceil(2)),
    ];
    let started = Instant::now();
    let selected: Vec<(Row, usize)> = rows
        .into_iter()
        .filter(|(row, _)| {
            only.as_ref()
                .is_none_or(|o| row.label().contains(o.as_str()))
        })
        .collect();
    // Measured one row after another, so rows never share the machine; the smoke run under
    // `cargo test` only proves each row's path works, so its rows (a stack each) run at once,
    // but for the crash row: its failpoint is the process's, and would kill another row's disarm.
    let together = |row: Row| !full && !matches!(row, Row::Crash);
    let mut results: Vec<Option<(Vec<Duration>, usize)>> =
        futures::future::join_all(selected.iter().map(|&(row, n)| async move {
            if together(row) {
                Some(measure_row(row, n).await)
            } else {
                None
            }
        }))
        .await;
    for (slot, &(row, n)) in results.iter_mut().zip(&selected) {
        if slot.is_none() {
            *slot = Some(measure_row(row, n).await);
        }
    }
    let mut lost = 0;
    println!("| path | samples | p50 | p99 |");
    println!("|---|---|---|---|");
    for ((row, _), (mut times, row_lost)) in selected.into_iter().zip(results.into_iter().flatten())
    {
        lost += row_lost;
        times.sort();
        if times.is_empty() {
            println!("| {} | 0 | – | – |", row.label());
            continue;
        }
        println!(
            "| {} | {} | {} | {} |",
            row.label(),
            times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }
    println!(
        "\n{} s in all; worker pass every 2 s, probe interval {} s",
        started.elapsed().as_secs(),
        alarm_skill::domain::redelivery::PROBE_INTERVAL.num_seconds()
    );
    if lost > 0 {
        eprintln!("{lost} samples never reached the receiver");
        std::process::exit(1);
    }
}
