//! The outbox drill (issue "No one can delay a duress"): thousands of households each say their
//! duress PIN while the panel cloud is down (30 minutes on the simulated clock), one hostile
//! household floods junk through both assistants at the same time, then the cloud comes back
//! and the re-delivery worker drains the backlog. With the second path on (issue "A second
//! path"), each duress reaches the monitoring center before its reply (with the receiver down
//! as well: after recovery, once). What it measures: passes and wall time from recovery until
//! every household's 121 reached the monitoring center, exactly once each; how many records
//! each shard delivered per second; what the hostile household's flood cost the others.
//!
//! Runs the local stack on DynamoDB Local (or the embedded store), over HTTP exactly as the
//! assistants call it. `tests/it/hostile.rs` asserts the counts; `benches/outbox_drill.rs` reports
//! the times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::demo::DemoConfig;
use super::simulator::monitoring::receiver::ReceiverMode;
use super::{INVOKE_PATH, LocalError, LocalStack, Options};
use crate::common::deadline::Deadline;
use crate::domain::ports::store::{OutboxPolicy, outbox_totals};

const VOICE_PIN: &str = "4729";
const DURESS_PIN: &str = "8361";
const HOSTILE: &str = "hostile";
/// Passes the drill runs at most before it declares records lost.
const MAX_PASSES: usize = 60;
/// How long a pass's 121s may take over the DC-09 link to reach the monitoring center.
const LINK_SETTLE: Duration = Duration::from_secs(120);
/// What the simulated clock moves between passes: the schedule's minute.
const PASS_INTERVAL_S: i64 = 60;
/// How long the panel cloud stays down on the simulated clock, from the households' codes to
/// its recovery.
const OUTAGE_MINUTES: i64 = 30;

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub households: usize,
    /// The hostile household floods while the others speak.
    pub hostile: bool,
    /// Requests per second the hostile household sends (what the edge's per-route throttles
    /// let through; docs/deploy.md).
    pub flood_rps: u32,
    pub outbox: OutboxPolicy,
    /// Records per shard per pass (the deployed worker's is 100).
    pub batch: usize,
    /// Requests in flight at once from the households.
    pub concurrency: usize,
    pub dynamodb_endpoint: Option<String>,
    /// The skill's second path on (issue 26): each household's panel reports the stack's
    /// monitoring center, so a duress spoken while the cloud is down reaches the center over
    /// DC-09 before its reply, and the cloud's own 121 after recovery is merged into it.
    pub second_path: bool,
    /// The monitoring receiver is down as well while the households speak, and back with the
    /// cloud: every 121 must then arrive after recovery, once.
    pub receiver_down: bool,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            households: 2_000,
            hostile: true,
            flood_rps: 50,
            outbox: OutboxPolicy::default(),
            batch: 100,
            concurrency: 16,
            dynamodb_endpoint: None,
            second_path: false,
            receiver_down: false,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PassFigure {
    pub examined: usize,
    pub delivered: usize,
    pub millis: u128,
    /// Households whose 121 the monitoring center had after this pass.
    pub households_done: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DrillReport {
    pub households: usize,
    pub shards: u16,
    pub quota: u32,
    /// Disarms the households sent with their duress PIN, and the replies that were not the
    /// normal PIN's outage reply.
    pub duress_sent: usize,
    pub odd_replies: usize,
    pub hostile_requests: usize,
    /// Pending records right before the cloud came back, and of them the hostile household's.
    pub pending_at_recovery: usize,
    pub hostile_pending_at_recovery: usize,
    /// Passes from recovery until every household's 121 had arrived.
    pub passes_to_all: usize,
    /// Wall time from recovery until every household's 121 had arrived.
    pub millis_to_all: u128,
    /// Households with no 121 at the end (must be 0), and with more than one (must be 0).
    pub lost: usize,
    pub duplicated: usize,
    /// Records delivered per second per shard, over the passes that delivered any.
    pub records_per_s_per_shard: f64,
    /// Pending records left once the worker had drained everything (must be 0).
    pub pending_at_end: usize,
    /// Households whose 121 was at the monitoring center before the cloud came back (with the
    /// second path: all of them, each before its directive's reply).
    pub at_center_before_recovery: usize,
    /// Copies the center received and merged into a duress it had already dispatched (the
    /// two paths' copies of one duress): never dispatched again.
    pub merged_copies: usize,
    /// The directives' reply times while the cloud was down, wall clock, in ms: p50, p99 and
    /// the slowest. With the second path a duress's 121 is ACKed by the center before the
    /// reply, so these bound its time to the operator.
    pub reply_ms_p50: u128,
    pub reply_ms_p99: u128,
    pub reply_ms_max: u128,
    pub passes: Vec<PassFigure>,
}

/// The account name of the drill's `i`th household.
pub fn household(i: usize) -> String {
    format!("hh-{i:05}")
}

fn panel_of(account: &str) -> String {
    format!("p-{account}")
}

/// One account, panel and household per name: the config the simulator and the store take.
fn config(names: &[String]) -> Result<DemoConfig, LocalError> {
    let accounts: Vec<Value> = names
        .iter()
        .map(|a| {
            json!({"id": a, "users": [{"number": 1, "name": "Alex"}],
                "panels": [{"id": panel_of(a), "name": "Home", "zones": [
                    {"id": "door", "number": 1, "name": "Door", "kind": "contact", "entry": true}]}]})
        })
        .collect();
    let households: Vec<Value> = names
        .iter()
        .map(|a| {
            json!({"account": a, "members": [{"id": "alex", "name": "Alex", "user_number": 1,
                "voice_pin": VOICE_PIN, "duress_pin": DURESS_PIN}]})
        })
        .collect();
    let text = json!({"accounts": accounts, "households": households}).to_string();
    DemoConfig::parse(&text).map_err(|e| LocalError::Config(e.to_string()))
}

fn alexa_disarm(token: &str, endpoint: &str, pin: &str) -> Value {
    json!({"directive": {
        "header": {"namespace": "Alexa.SecurityPanelController", "name": "Disarm",
            "payloadVersion": "3", "messageId": uuid::Uuid::new_v4().to_string(),
            "correlationToken": "drill"},
        "endpoint": {"scope": {"type": "BearerToken", "token": token}, "endpointId": endpoint,
            "cookie": {}},
        "payload": {"authorization": {"type": "FOUR_DIGIT_PIN", "value": pin}}
    }})
}

fn alexa_discover(token: &str) -> Value {
    json!({"directive": {
        "header": {"namespace": "Alexa.Discovery", "name": "Discover", "payloadVersion": "3",
            "messageId": uuid::Uuid::new_v4().to_string()},
        "payload": {"scope": {"type": "BearerToken", "token": token}}
    }})
}

fn google_execute(devices: &[&str], pin: &str) -> Value {
    let devices: Vec<Value> = devices.iter().map(|d| json!({"id": d})).collect();
    json!({"requestId": uuid::Uuid::new_v4().to_string(), "inputs": [{
        "intent": "action.devices.EXECUTE",
        "payload": {"commands": [{"devices": devices, "execution": [{
            "command": "action.devices.commands.ArmDisarm",
            "params": {"arm": false}, "challenge": {"pin": pin}}]}]}}]})
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Option<Value> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.ok()?.json().await.ok()
    }

    /// The simulator's fault switch, as `/sim/faults` sets it (down stops the API listening).
    async fn fault(&self, mode: &str) -> Result<(), LocalError> {
        let body = json!({"mode": mode, "delay_ms": 0});
        let resp = self
            .http
            .post(format!("{}/sim/faults", self.base))
            .body(body.to_string())
            .header("content-type", "application/json")
            .send()
            .await
            .map_err(|e| LocalError::Http(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(LocalError::Http(format!("/sim/faults: {}", resp.status())));
        }
        Ok(())
    }

    async fn alexa(&self, token: &str, endpoint: &str, pin: &str) -> Option<Value> {
        self.post(INVOKE_PATH, None, &alexa_disarm(token, endpoint, pin))
            .await
    }

    async fn google(&self, token: &str, body: &Value) -> Option<Value> {
        self.post(crate::edges::google_fulfillment::PATH, Some(token), body)
            .await
    }
}

/// The reply an outage gives a disarm: Alexa's BRIDGE_UNREACHABLE, Google's transientError, or
/// Google's PENDING when a loaded store left no time to call the cloud within Google's answer
/// time (the worker then carries the disarm out). The duress PIN must get exactly that, like the
/// normal PIN would.
fn is_outage_reply(reply: &Option<Value>) -> bool {
    let Some(r) = reply else { return false };
    let alexa = r["event"]["payload"]["type"].as_str();
    let command = &r["payload"]["commands"][0];
    alexa == Some("BRIDGE_UNREACHABLE")
        || command["errorCode"].as_str() == Some("transientError")
        || command["status"].as_str() == Some("PENDING")
}

/// The hostile household's junk, round after round: oversized EXECUTEs, other households' panels
/// through both assistants, wrong codes on its own panel (which, once locked out, leave records).
async fn flood(
    client: &Client,
    token: &str,
    victims: &[String],
    rps: u32,
    stop: &AtomicBool,
    sent: &AtomicUsize,
) {
    let own = panel_of(HOSTILE);
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rps.max(1))));
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        every.tick().await;
        let victim = panel_of(&victims[i % victims.len()]);
        match i % 5 {
            0 => {
                let many: Vec<&str> = vec![victim.as_str(); 6];
                client.google(token, &google_execute(&many, "0000")).await;
            }
            1 => {
                client
                    .google(token, &google_execute(&[&victim], DURESS_PIN))
                    .await;
            }
            2 => {
                client.alexa(token, &victim, DURESS_PIN).await;
            }
            3 => {
                client.alexa(token, &own, "0000").await;
            }
            _ => {
                client.google(token, &google_execute(&[&own], "0000")).await;
            }
        }
        sent.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
}

/// Households whose 121 the monitoring center has dispatched, with how many each (a copy merged
/// into a duress already dispatched is not counted again).
fn duress_by_account(stack: &LocalStack) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for e in stack.sim.monitoring() {
        if e.code == "121" {
            *by.entry(e.account).or_default() += 1;
        }
    }
    by
}

pub async fn run(opts: &DrillOptions) -> Result<DrillReport, LocalError> {
    let names: Vec<String> = (0..opts.households).map(household).collect();
    let mut all = names.clone();
    all.push(HOSTILE.to_string());
    let stack = LocalStack::start(Options {
        port: 0,
        panel_port: 0,
        receiver_port: 0,
        config: config(&all)?,
        dynamodb_endpoint: opts.dynamodb_endpoint.clone(),
        table: format!("drill-{}", uuid::Uuid::new_v4().simple()),
        frozen_clock: true,
        redelivery_interval: None,
        outbox: opts.outbox,
        second_path: opts.second_path,
        ..Options::default()
    })
    .await?;
    let receiver_mode = |mode| {
        let receiver = stack.receiver.clone();
        async move {
            receiver
                .set_mode(mode)
                .await
                .map_err(|e| LocalError::Http(format!("receiver mode: {e}")))
        }
    };
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: stack.base_url.clone(),
    });
    let mint = |sub: &str| {
        stack
            .issuer
            .mint(sub, false, chrono::Duration::hours(2))
            .map_err(|e| LocalError::Issuer(e.to_string()))
    };
    let tokens: Vec<String> = names.iter().map(|n| mint(n)).collect::<Result<_, _>>()?;
    let hostile_token = mint(HOSTILE)?;

    if opts.second_path {
        // Linked households have discovered their panels: discovery stores each panel's
        // confirmation with the monitoring details the cloud reports, which is where the
        // second path finds its center while the cloud is down.
        let discovered: Vec<Option<Value>> = futures_util::stream::iter(tokens.iter().map(|t| {
            let client = client.clone();
            async move { client.post(INVOKE_PATH, None, &alexa_discover(t)).await }
        }))
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
        let missing = discovered
            .iter()
            .filter(|d| {
                d.as_ref()
                    .is_none_or(|d| d["event"]["header"]["name"] != "Discover.Response")
            })
            .count();
        if missing > 0 {
            return Err(LocalError::Http(format!("{missing} discoveries failed")));
        }
    }
    client.fault("down").await?;
    if opts.receiver_down {
        receiver_mode(ReceiverMode::Down).await?;
    }
    let stop = AtomicBool::new(false);
    let flooded = AtomicUsize::new(0);
    let speak = async {
        let disarms: Vec<_> = names
            .iter()
            .zip(&tokens)
            .enumerate()
            .map(|(i, (name, token))| {
                let client = client.clone();
                let panel = panel_of(name);
                let token = token.clone();
                async move {
                    let started = Instant::now();
                    // Half through each assistant.
                    let reply = if i % 2 == 0 {
                        client.alexa(&token, &panel, DURESS_PIN).await
                    } else {
                        client
                            .google(&token, &google_execute(&[&panel], DURESS_PIN))
                            .await
                    };
                    (reply, started.elapsed())
                }
            })
            .collect();
        let replies: Vec<(Option<Value>, Duration)> = futures_util::stream::iter(disarms)
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        stop.store(true, Ordering::Relaxed);
        replies
    };
    let replies = if opts.hostile {
        let (replies, ()) = tokio::join!(
            speak,
            flood(
                &client,
                &hostile_token,
                &names,
                opts.flood_rps,
                &stop,
                &flooded
            )
        );
        replies
    } else {
        speak.await
    };
    let mut took: Vec<u128> = replies.iter().map(|(_, t)| t.as_millis()).collect();
    took.sort_unstable();
    let rank = |q: f64| {
        let i = ((q * took.len() as f64).ceil() as usize).clamp(1, took.len().max(1)) - 1;
        took.get(i).copied().unwrap_or_default()
    };
    let before = duress_by_account(&stack);
    let mut report = DrillReport {
        households: opts.households,
        shards: opts.outbox.shards,
        quota: opts.outbox.household_quota,
        duress_sent: replies.len(),
        odd_replies: replies.iter().filter(|(r, _)| !is_outage_reply(r)).count(),
        hostile_requests: flooded.load(Ordering::Relaxed),
        at_center_before_recovery: names.iter().filter(|n| before.contains_key(*n)).count(),
        reply_ms_p50: rank(0.5),
        reply_ms_p99: rank(0.99),
        reply_ms_max: took.last().copied().unwrap_or_default(),
        ..DrillReport::default()
    };
    let pending = outbox_totals(stack.store.as_ref()).await?;
    report.pending_at_recovery = pending.due + pending.waiting + pending.gone + pending.held;
    report.hostile_pending_at_recovery = report.pending_at_recovery.saturating_sub(opts.households);

    // The rest of the outage, then recovery: the worker runs pass after pass, a minute apart on
    // the simulated clock.
    stack
        .clock
        .advance(chrono::Duration::minutes(OUTAGE_MINUTES));
    client.fault("none").await?;
    if opts.receiver_down {
        receiver_mode(ReceiverMode::None).await?;
    }
    let recovered = Instant::now();
    let mut delivered_time = Duration::ZERO;
    let mut delivered_total = 0usize;
    for _ in 0..MAX_PASSES {
        stack
            .clock
            .advance(chrono::Duration::seconds(PASS_INTERVAL_S));
        let started = Instant::now();
        let pass = crate::domain::redelivery::Worker {
            store: stack.store.as_ref(),
            panels: stack.panels.as_ref(),
            keys: crate::domain::redelivery::Keys::Fixed(&stack.keyring),
            v2_seals: Default::default(),
            clock: stack.clock.as_ref(),
            until: Deadline::after(Duration::from_secs(120)),
            // As deployed: the worker retries both paths (the second one only for panels with
            // monitoring details, which the cloud reports only with the second path on).
            receiver: Some(stack.second_path.as_ref()),
        }
        .run_once(opts.batch)
        .await?;
        let took = started.elapsed();
        // The 121s are on their way over the one DC-09 link: they count once there.
        stack.sim.settle_monitoring(LINK_SETTLE).await;
        let done = duress_by_account(&stack);
        let households_done = names.iter().filter(|n| done.contains_key(*n)).count();
        if pass.delivered > 0 {
            delivered_time += took;
            delivered_total += pass.delivered;
        }
        report.passes.push(PassFigure {
            examined: pass.examined,
            delivered: pass.delivered,
            millis: took.as_millis(),
            households_done,
        });
        if households_done == opts.households && report.passes_to_all == 0 {
            report.passes_to_all = report.passes.len();
            report.millis_to_all = recovered.elapsed().as_millis();
        }
        if pass.backlog == 0 && pass.gone == 0 && report.passes_to_all > 0 {
            break;
        }
    }
    let done = duress_by_account(&stack);
    report.lost = names.iter().filter(|n| !done.contains_key(*n)).count();
    report.duplicated = done.values().filter(|n| **n > 1).count();
    report.merged_copies = stack
        .sim
        .center()
        .received()
        .iter()
        .filter(|r| r.merged)
        .count();
    let left = outbox_totals(stack.store.as_ref()).await?;
    report.pending_at_end = left.due + left.waiting + left.gone + left.held;
    let secs = delivered_time.as_secs_f64();
    if secs > 0.0 {
        report.records_per_s_per_shard =
            delivered_total as f64 / secs / f64::from(opts.outbox.shards.max(1));
    }
    Ok(report)
}
