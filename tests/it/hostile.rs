//! A customer with a valid token trying to bury other households' duress signals, and the
//! outbox at scale (issue "No one can delay a duress"): bounded work per request, nothing
//! recorded for a panel not known to be the account's, per-household fairness in the
//! re-delivery worker, and the drill with thousands of households on DynamoDB Local.

use crate::support;

use serde_json::{Value, json};
use support::google::{self as g, outcome};
use support::stack::{Harness, count, disarm, error_type, sent_for, test_options};

use alarm_skill::domain::ports::store::{OutboxCounts, OutboxPolicy, outbox_totals};
use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::drill::{self, DrillOptions};

const DURESS: &str = "8361";
const NORMAL: &str = "4729";

/// The demo household and a hostile one with a panel of its own (confirmed, seeded like an
/// import), on one shard so that every record shares one queue: the worst case for fairness.
const CONFIG: &str = r#"{
  "accounts": [
    {"id": "demo", "users": [{"number": 1, "name": "Alex"}],
     "panels": [{"id": "home", "name": "Home", "zones": [
         {"id": "front-door", "number": 1, "name": "Front door", "kind": "contact", "entry": true}]}]},
    {"id": "mallory", "users": [{"number": 1, "name": "Mal"}],
     "panels": [{"id": "shed", "name": "Shed", "zones": [
         {"id": "door", "number": 1, "name": "Door", "kind": "contact", "entry": true}]}]},
    {"id": "newcomer", "users": [{"number": 1, "name": "Nia"}],
     "panels": [{"id": "flat", "name": "Flat", "zones": [
         {"id": "door", "number": 1, "name": "Door", "kind": "contact", "entry": true}]}]}
  ],
  "households": [
    {"account": "demo", "members": [
      {"id": "alex", "name": "Alex", "user_number": 1, "voice_pin": "4729", "duress_pin": "8361"}]},
    {"account": "mallory", "members": [
      {"id": "mal", "name": "Mal", "user_number": 1, "voice_pin": "4729", "duress_pin": "8361"}]}
  ]
}"#;

async fn stack(outbox: OutboxPolicy) -> Harness {
    // The newcomer's account exists at the cloud, but its household was never discovered,
    // synced or imported here: its panel is not confirmed.
    let config = DemoConfig::parse(CONFIG).unwrap();
    Harness::start_with(Options {
        config,
        outbox,
        ..test_options()
    })
    .await
}

fn one_shard(quota: u32) -> OutboxPolicy {
    OutboxPolicy {
        shards: 1,
        household_quota: quota,
    }
}

async fn pending(h: &Harness) -> OutboxCounts {
    outbox_totals(h.stack.store.as_ref()).await.unwrap()
}

/// An EXECUTE naming `n` devices, each with a disarm and the duress PIN.
fn execute_many(devices: &[&str], executions: usize) -> Value {
    let devices: Vec<Value> = devices.iter().map(|d| json!({ "id": d })).collect();
    let execution: Vec<Value> = (0..executions)
        .map(|_| {
            json!({"command": g::ARM_DISARM, "params": {"arm": false},
                   "challenge": {"pin": DURESS}})
        })
        .collect();
    json!({"requestId": "req-many", "inputs": [{"intent": "action.devices.EXECUTE",
        "payload": {"commands": [{"devices": devices, "execution": execution}]}}]})
}

#[tokio::test]
async fn an_execute_past_the_limit_is_a_protocol_error_and_does_no_work() {
    let h = stack(OutboxPolicy::default()).await;
    let before = h.requests_for("shed").await.len();
    let audit_before = h.audit_log().await;
    // Five devices (the limit is four device × execution pairs), and 3 × 2 pairs.
    for body in [
        execute_many(&["shed", "shed", "shed", "shed", "shed"], 1),
        execute_many(&["shed", "home", "shed"], 2),
    ] {
        let (status, r) = h.google_as(Some(&h.token("mallory").await), &body).await;
        assert_eq!(status, 200);
        assert_eq!(r["payload"]["errorCode"], "protocolError", "{r}");
    }
    assert_eq!(h.requests_for("shed").await.len(), before, "no panel call");
    assert_eq!(h.requests_for("home").await.len(), 0, "no panel call");
    assert_eq!(pending(&h).await, OutboxCounts::default(), "no record");
    assert_eq!(h.audit_log().await, audit_before);
    assert!(h.signals().await.is_empty());
    // At the limit it is served: four pairs, the same device twice each.
    let r = h
        .google("mallory", &execute_many(&["shed", "shed"], 2))
        .await;
    assert_eq!(r["payload"]["commands"].as_array().unwrap().len(), 2, "{r}");
}

/// Held records of `account` (the attempts kept for panels not confirmed lately).
async fn held(h: &Harness) -> usize {
    pending(h).await.held
}

#[tokio::test]
async fn nothing_is_ever_sent_for_a_panel_not_known_to_be_the_accounts() {
    let h = stack(OutboxPolicy::default()).await;
    let mallory = h.token("mallory").await;
    // Another household's panel, while the cloud can't answer the ownership check in time
    // (the check's share of a short deadline runs out): the attempt is held, not sent.
    h.fault("timeout", 10_000).await;
    let r = h.invoke(&disarm(&mallory, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
    let r = h.google("mallory", &g::disarm("home", Some(DURESS))).await;
    assert_eq!(outcome(&r), "transientError", "{r}");
    // A made-up panel, the same.
    let r = h.invoke(&disarm(&mallory, "no-such", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
    assert_eq!(held(&h).await, 3);
    assert_eq!(pending(&h).await.due, 0);
    // With the cloud up, the answer is the cloud's: no such device, and nothing written.
    h.fault("none", 0).await;
    let r = h.invoke(&disarm(&mallory, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("NO_SUCH_ENDPOINT"), "{r}");
    assert_eq!(held(&h).await, 3);
    // The worker asks the cloud first: neither panel is Mallory's, so every held attempt is
    // dropped unsent, and said so in Mallory's audit log, in words that name no kind.
    h.advance(60).await;
    h.stack.redeliver().await.unwrap();
    assert_eq!(pending(&h).await, OutboxCounts::default());
    assert!(
        sent_for(&h, "home").await.is_empty(),
        "{:?}",
        h.requests_for("home").await
    );
    assert!(sent_for(&h, "no-such").await.is_empty());
    assert!(h.signals().await.is_empty());
    let admin = h.admin_token("mallory").await;
    let (status, log) = h.audit_as(&admin).await;
    assert_eq!(status, 200);
    let dropped = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("was not sent"))
        })
        .count();
    assert_eq!(dropped, 3, "{log}");
    assert!(!log.to_string().to_lowercase().contains("duress"));

    // A household's own panel that was never confirmed, during an outage: it has no codes, so
    // the attempt is a wrong code, refused, and leaves no record...
    let newcomer = h.token("newcomer").await;
    h.fault("down", 0).await;
    let r = h.invoke(&disarm(&newcomer, "flat", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("UNAUTHORIZED"), "{r}");
    assert_eq!(pending(&h).await, OutboxCounts::default());
    // ...and the cloud's word that the panel is the account's (here Google's SYNC) is stored.
    h.fault("none", 0).await;
    let r = h.google("newcomer", &g::sync()).await;
    assert!(r["payload"]["devices"].is_array(), "{r}");
    let seen = h
        .stack
        .store
        .household("newcomer")
        .await
        .unwrap()
        .panels_seen;
    assert!(seen.contains_key("flat"), "{seen:?}");
}

#[tokio::test]
async fn a_flood_of_held_attempts_is_capped_per_household_and_never_sent() {
    let h = stack(OutboxPolicy::default()).await;
    let mallory = h.token("mallory").await;
    h.fault("down", 0).await;
    // Through both assistants, naming demo's panel and made-up ones, right codes all.
    for i in 0..40 {
        let panel = if i % 3 == 0 {
            "home".to_string()
        } else {
            format!("made-up-{i}")
        };
        if i % 2 == 0 {
            let r = h.invoke(&disarm(&mallory, &panel, Some(NORMAL))).await;
            assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{i}: {r}");
        } else {
            let r = h.google("mallory", &g::disarm(&panel, Some(NORMAL))).await;
            assert_eq!(outcome(&r), "transientError", "{i}: {r}");
        }
    }
    let cap = usize::try_from(alarm_skill::domain::ports::store::HELD_PER_HOUSEHOLD).unwrap();
    assert_eq!(held(&h).await, cap);
    // Demo's own duress in the same outage, on its confirmed panel: not held, not crowded out.
    let demo = h.token("demo").await;
    let r = h.invoke(&disarm(&demo, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
    assert_eq!(held(&h).await, cap);
    h.fault("none", 0).await;
    for _ in 0..10 {
        h.advance(60).await;
        if h.stack.redeliver().await.unwrap().backlog == 0 {
            break;
        }
    }
    assert_eq!(pending(&h).await, OutboxCounts::default());
    assert_eq!(h.signals().await, ["121/1/1"]);
    // The only call that carried an attempt for "home" is demo's own.
    assert_eq!(
        sent_for(&h, "home").await,
        ["signal"],
        "demo's own, re-sent"
    );
    for i in 0..40 {
        assert!(sent_for(&h, &format!("made-up-{i}")).await.is_empty());
    }
}

/// Mallory, locked out on purpose, floods her own panel while the cloud fails: every attempt
/// during a lockout leaves a record (it may be a duress). Then one real duress from demo.
async fn flood_then_duress(h: &Harness, flood: usize) {
    let mallory = h.token("mallory").await;
    h.fault("error", 0).await;
    for i in 0..flood {
        // Through both assistants; wrong codes first, which start the lockout.
        if i % 2 == 0 {
            h.invoke(&disarm(&mallory, "shed", Some("0000"))).await;
        } else {
            h.google("mallory", &g::disarm("shed", Some("0000"))).await;
        }
    }
    let demo = h.token("demo").await;
    let r = h.invoke(&disarm(&demo, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
    h.fault("none", 0).await;
}

#[tokio::test]
async fn one_households_flood_delays_another_households_duress_by_at_most_one_pass() {
    // One shard, a quota of 4 and the local worker's 25 records a pass: 40 junk records all
    // due before the duress. Before, the duress waited behind them for two passes.
    let h = stack(one_shard(4)).await;
    flood_then_duress(&h, 43).await;
    let before = pending(&h).await;
    // Three wrong codes start the lockout; the other 40 attempts each left a record. Four
    // are in the shared queue (the quota), the rest wait in Mallory's own queue; demo's one is
    // in the shared queue. Nothing was dropped.
    assert_eq!(
        before,
        OutboxCounts {
            due: 5,
            waiting: 36,
            gone: 0,
            held: 0,
            capped: false
        }
    );
    h.advance(60).await;
    let report = h.stack.redeliver().await.unwrap();
    assert_eq!(
        count(&h.signals().await, "121/1/1"),
        1,
        "the duress went out in the first pass: {report:?}"
    );
    assert_eq!(report.backlog, 36, "{report:?}");
    // Mallory's records keep moving, her quota at a time, and every one is delivered once.
    for _ in 0..20 {
        h.advance(60).await;
        if h.stack.redeliver().await.unwrap().backlog == 0 {
            break;
        }
    }
    assert_eq!(pending(&h).await, OutboxCounts::default());
    let signals = h.signals().await;
    assert_eq!(count(&signals, "121/"), 1, "{signals:?}");
}

#[tokio::test]
async fn the_backlog_is_every_pending_record_not_one_batch() {
    // Before, the worker reported the records it saw in one 100-record batch.
    let h = stack(one_shard(200)).await;
    flood_then_duress(&h, 123).await;
    h.fault("error", 0).await;
    h.advance(60).await;
    let report = h.stack.redeliver().await.unwrap();
    // One batch taken: the cloud's first failures trip the breaker, the rest of it is held.
    assert_eq!(report.examined + report.breaker_held, 25, "{report:?}");
    assert!(report.breaker_held > 0, "{report:?}");
    assert_eq!(
        (report.backlog, report.waiting, report.gone),
        (121, 0, 0),
        "{report:?}"
    );
    h.fault("none", 0).await;
}

#[tokio::test]
async fn a_duress_kept_for_a_household_over_its_quota_still_gets_through() {
    // Quota 2: demo's own earlier failed attempts fill it, so its duress waits in its own
    // queue; it still reaches the monitoring center, exactly once, as the queue moves.
    let h = stack(one_shard(2)).await;
    let demo = h.token("demo").await;
    h.fault("error", 0).await;
    for code in [NORMAL, NORMAL, NORMAL, DURESS] {
        let r = h.invoke(&disarm(&demo, "home", Some(code))).await;
        assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
    }
    assert_eq!((pending(&h).await.due, pending(&h).await.waiting), (2, 2));
    h.fault("none", 0).await;
    for _ in 0..4 {
        h.advance(60).await;
        h.stack.redeliver().await.unwrap();
    }
    assert_eq!(count(&h.signals().await, "121/1/1"), 1);
    assert_eq!(pending(&h).await, OutboxCounts::default());
}

#[tokio::test]
async fn one_invocation_drains_a_backlog_larger_than_a_batch() {
    // The quota past the backlog, one shard: 60 records, 25 a pass. Before, one invocation
    // handled one batch and the rest waited for the next minute's.
    let h = stack(one_shard(100)).await;
    flood_then_duress(&h, 63).await;
    assert_eq!(pending(&h).await.due, 61);
    h.advance(60).await;
    let worker = alarm_skill::domain::redelivery::Worker {
        store: h.stack.store.as_ref(),
        panels: h.stack.panels.as_ref(),
        keys: alarm_skill::domain::redelivery::Keys::Fixed(&h.stack.keyring),
        v2_seals: Default::default(),
        clock: h.stack.clock.as_ref(),
        until: alarm_skill::common::deadline::Deadline::after(std::time::Duration::from_secs(60)),
        receiver: None,
    };
    let report = worker.drain(25, 10).await.unwrap();
    assert_eq!((report.delivered, report.backlog), (61, 0), "{report:?}");
    assert_eq!(count(&h.signals().await, "121/1/1"), 1);
}

/// The drill on the embedded store, with and without the hostile household: the flood costs
/// the others at most one pass.
#[tokio::test]
async fn drill_on_the_embedded_store_the_flood_costs_at_most_one_pass() {
    let opts = DrillOptions {
        households: 400,
        ..Default::default()
    };
    let quiet = drill::run(&DrillOptions {
        hostile: false,
        ..opts.clone()
    })
    .await
    .unwrap();
    let hostile = drill::run(&opts).await.unwrap();
    check(&opts, &quiet);
    check(&opts, &hostile);
    assert!(hostile.hostile_requests > 0 && hostile.hostile_pending_at_recovery > 0);
    assert!(
        hostile.passes_to_all <= quiet.passes_to_all + 1,
        "quiet {} passes, hostile {} passes",
        quiet.passes_to_all,
        hostile.passes_to_all
    );
}

/// The drill with the second path (issue 26), on the embedded store: every household's 121 is
/// at the center before the cloud comes back (each before its directive's reply), the cloud's
/// own 121s after recovery are merged into them, never dispatched twice; with the receiver down
/// as well, none arrives during the outage and every one after recovery, once, both paths'
/// copies merged.
#[tokio::test]
async fn drill_with_the_second_path_every_duress_at_the_center_during_the_outage_once() {
    let opts = DrillOptions {
        households: 200,
        second_path: true,
        ..Default::default()
    };
    let r = drill::run(&opts).await.unwrap();
    check(&opts, &r);
    assert_eq!(r.at_center_before_recovery, opts.households, "{r:?}");
    assert!(r.merged_copies >= opts.households, "{r:?}");
    let down = DrillOptions {
        receiver_down: true,
        ..opts.clone()
    };
    let r = drill::run(&down).await.unwrap();
    check(&down, &r);
    assert_eq!(r.at_center_before_recovery, 0, "{r:?}");
    assert!(r.merged_copies >= opts.households, "{r:?}");
}

/// The drill at scale, on DynamoDB Local: 2,000 households, the hostile flood through both
/// assistants, the cloud down and back, the second path on (as deployed where the cloud reports
/// monitoring details): every duress at the center before its reply, the cloud's copies merged
/// after recovery. `cargo bench --bench outbox_drill` reports its times.
#[tokio::test]
async fn drill_with_2000_households_on_dynamodb_local() {
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        panic!("DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local");
    };
    let opts = DrillOptions {
        households: 2_000,
        dynamodb_endpoint: Some(endpoint),
        second_path: true,
        ..Default::default()
    };
    let report = drill::run(&opts).await.unwrap();
    check(&opts, &report);
    assert_eq!(report.at_center_before_recovery, opts.households);
    assert!(report.merged_copies >= opts.households);
    assert!(report.hostile_requests > 0 && report.hostile_pending_at_recovery > 0);
    // Every household's duress is out within the passes its own shard's load takes, plus at
    // most one for everyone else's records, the hostile household's included.
    let mut load = vec![0usize; usize::from(opts.outbox.shards)];
    for i in 0..opts.households {
        load[usize::from(opts.outbox.shard_of(&drill::household(i)))] += 1;
    }
    let busiest = load.into_iter().max().unwrap_or(0);
    let bound = busiest.div_ceil(opts.batch) + 1;
    assert!(
        report.passes_to_all <= bound,
        "{} passes, bound {bound}",
        report.passes_to_all
    );
}

fn check(opts: &DrillOptions, r: &drill::DrillReport) {
    let figures = serde_json::to_string(r).unwrap();
    eprintln!("drill: {figures}");
    assert_eq!(r.duress_sent, opts.households, "{figures}");
    assert_eq!(
        r.odd_replies, 0,
        "every duress got the outage reply: {figures}"
    );
    assert_eq!(
        (r.lost, r.duplicated),
        (0, 0),
        "exactly once each: {figures}"
    );
    assert_eq!(r.pending_at_end, 0, "{figures}");
    assert!(r.passes_to_all > 0, "{figures}");
}

/// What each directive kind and each re-delivered record costs in DynamoDB calls and capacity
/// units, as DynamoDB Local reports them (ReturnConsumedCapacity): the figures of
/// docs/capacity.md. Pinned, so a change that adds a round trip or an index write shows up here
/// and in the doc together.
#[tokio::test]
async fn capacity_per_directive_and_per_re_delivered_record_is_pinned() {
    use alarm_skill::local::capacity::{CapacityMeter, Consumed};
    use support::stack::{arm, discover, report_state};
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        panic!("DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local");
    };
    let meter = CapacityMeter::new();
    let h = Harness::start_with(Options {
        config: DemoConfig::parse(CONFIG).unwrap(),
        dynamodb_endpoint: Some(endpoint),
        table: format!("capacity-{}", uuid::Uuid::new_v4().simple()),
        capacity: Some(meter.clone()),
        // A renewal cut at its 300 ms on a loaded machine would be a write missing from a row.
        renew_budget: Some(std::time::Duration::from_secs(10)),
        ..test_options()
    })
    .await;
    let t = h.token("demo").await;
    meter.take();
    let mut rows: Vec<(&str, Consumed)> = vec![];
    // What a directive's state change sets off (the panel webhook: ChangeReport, Report
    // State) is the http-api function's work: it is let finish and measured apart, below.
    // That work lands within milliseconds on an idle machine; a loaded one can stall it far
    // longer, and a call landing in the next row would break its pin. So: at least 600 ms,
    // then until no call has been answered for 300 ms (10 s at most).
    let quiet_meter = meter.clone();
    let settle = move || {
        let meter = quiet_meter.clone();
        async move {
            let poll = std::time::Duration::from_millis(50);
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            let (mut last, mut quiet) = (meter.calls(), 0);
            for _ in 0..200 {
                tokio::time::sleep(poll).await;
                let now = meter.calls();
                quiet = if now == last { quiet + 1 } else { 0 };
                if quiet == 6 {
                    break;
                }
                last = now;
            }
        }
    };
    let row = |name: &'static str, rows: &mut Vec<(&str, Consumed)>| {
        rows.push((name, meter.take()));
    };
    macro_rules! measure {
        ($name:expr, $action:expr) => {{
            settle().await;
            meter.take();
            $action;
            settle().await;
            row($name, &mut rows);
        }};
    }
    measure!("Alexa Discover", h.invoke(&discover(&t)).await);
    measure!(
        "Alexa ReportState",
        h.invoke(&report_state(&t, "home")).await
    );
    measure!("Alexa Arm", h.invoke(&arm(&t, "home", "ARMED_AWAY")).await);
    measure!(
        "Alexa Disarm, voice PIN",
        h.invoke(&disarm(&t, "home", Some(NORMAL))).await
    );
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    measure!(
        "Alexa Disarm, duress PIN",
        h.invoke(&disarm(&t, "home", Some(DURESS))).await
    );
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    measure!(
        "Alexa Disarm, wrong code",
        h.invoke(&disarm(&t, "home", Some("0000"))).await
    );
    measure!("Google SYNC", h.google("demo", &g::sync()).await);
    measure!("Google QUERY", h.google("demo", &g::query(&["home"])).await);
    measure!(
        "Google EXECUTE disarm, voice PIN",
        h.google("demo", &g::disarm("home", Some(NORMAL))).await
    );
    measure!(
        "panel webhook, one state change (keypad arm)",
        h.post(
            "/sim/panels/home/keypad",
            json!({"state": "armed_away", "user": 1})
        )
        .await
    );

    // The worker: an empty pass over every shard, then a pass delivering records.
    h.advance(60).await;
    measure!(
        "re-delivery pass, nothing pending (8 shards)",
        h.stack.redeliver().await.unwrap()
    );
    h.fault("error", 0).await;
    measure!("Alexa Disarm during a cloud failure", {
        h.invoke(&disarm(&t, "home", Some(NORMAL))).await
    });
    for _ in 0..7 {
        h.invoke(&disarm(&t, "home", Some(NORMAL))).await;
    }
    h.fault("none", 0).await;
    h.advance(60).await;
    settle().await;
    meter.take();
    let report = h.stack.redeliver().await.unwrap();
    settle().await;
    row("re-delivery pass delivering 8 records", &mut rows);
    assert_eq!((report.delivered, report.raced), (8, 0), "{report:?}");

    for (name, c) in &rows {
        eprintln!(
            "capacity: {name:<48} calls {:>3} (failed {}), RCU {:>6.1}, WCU {:>6.1} (GSI1 {:>5.1})",
            c.calls, c.failed, c.read_units, c.write_units, c.index_write_units
        );
    }
    let get = |name: &str| rows.iter().find(|(n, _)| *n == name).unwrap().1;
    // A duress disarm costs exactly what a normal one does.
    assert_eq!(
        get("Alexa Disarm, duress PIN"),
        get("Alexa Disarm, voice PIN")
    );
    // The pins: (calls, read units, write units), DynamoDB Local's own figures, each with the
    // webhook its state change sets off. docs/capacity.md explains each and must change with
    // them.
    let pinned: &[(&str, (u32, f64, f64))] = &[
        ("Alexa Discover", (1, 0.0, 1.0)),
        ("Alexa ReportState", (1, 0.0, 1.0)),
        ("Alexa Arm", (4, 1.0, 2.0)),
        ("Alexa Disarm, voice PIN", (6, 2.0, 13.0)),
        ("Alexa Disarm, duress PIN", (6, 2.0, 13.0)),
        ("Alexa Disarm, wrong code", (2, 1.0, 2.0)),
        ("Google SYNC", (2, 0.0, 2.0)),
        ("Google QUERY", (0, 0.0, 0.0)),
        ("Google EXECUTE disarm, voice PIN", (6, 2.0, 13.0)),
        (
            "panel webhook, one state change (keypad arm)",
            (3, 1.0, 1.0),
        ),
        (
            "re-delivery pass, nothing pending (8 shards)",
            (83, 1.0, 16.0),
        ),
        ("Alexa Disarm during a cloud failure", (4, 2.0, 14.0)),
        ("re-delivery pass delivering 8 records", (100, 2.5, 64.0)),
    ];
    for (name, (calls, read, write)) in pinned {
        let c = get(name);
        assert_eq!(
            (c.calls, c.read_units, c.write_units, c.failed),
            (*calls, *read, *write, 0),
            "{name}"
        );
    }
}

/// A v2 seal names no household or panel, so a copy of one could raise a 121 at other premises:
/// it opens only on a record written before the cutoff (`OUTBOX_V2_SEALS_BEFORE`). The record
/// from before the upgrade is delivered; one written since stays pending and unsent. On the
/// store the suite runs on (scripts/test runs both).
#[tokio::test]
async fn a_v2_seal_opens_only_on_a_record_written_before_the_cutoff() {
    use alarm_skill::common::clock::Clock;
    use alarm_skill::domain::ports::store::OutboxStatus;
    use alarm_skill::domain::redelivery::{Keys, Worker, seal::V2Cutoff};
    use support::stack::{outbox_status, pending_v2_duress};
    let h = stack(one_shard(8)).await;
    let now = h.stack.clock.now();
    let before = pending_v2_duress(&h, now - chrono::Duration::hours(2), now).await;
    let after = pending_v2_duress(&h, now, now).await;
    let worker = Worker {
        store: h.stack.store.as_ref(),
        panels: h.stack.panels.as_ref(),
        keys: Keys::Fixed(&h.stack.keyring),
        v2_seals: V2Cutoff(Some(now - chrono::Duration::hours(1))),
        clock: h.stack.clock.as_ref(),
        until: alarm_skill::common::deadline::Deadline::after(std::time::Duration::from_secs(60)),
        receiver: None,
    };
    let report = worker.run_once(25).await.unwrap();
    assert_eq!((report.delivered, report.retrying), (1, 1), "{report:?}");
    assert_eq!(count(&h.signals().await, "121/1/1"), 1);
    assert_eq!(outbox_status(&h, &before).await, OutboxStatus::Delivered);
    assert_eq!(outbox_status(&h, &after).await, OutboxStatus::Pending);
}
