//! Crash points on the deployed binaries (issue 15, item 1). `bootstrap` (an Alexa Disarm) and
//! `http-api` (a Google EXECUTE) are killed at each step of a disarm, `redelivery` at each of
//! its steps, for a normal and a duress code, on DynamoDB Local (the deployed binaries' only
//! store); then a fresh `bootstrap` answers and a fresh `redelivery` runs until nothing is
//! pending (the disarm points also during a lockout, where every code is refused and a duress
//! still signalled, and under panel faults). For every point and kind: the monitoring center
//! gets exactly one Contact ID 121 for a duress and none for a normal code, the panel cloud sent
//! exactly as many, no disarm is replayed (the worker only ever signals, and the panel's state
//! after recovery is the state the crash left), and the outbox records of the two kinds look the
//! same. A death before the decision is written leaves nothing at all: no record, no disarm.
//!
//! A crash is the process dying on the spot: a `fail` crate point (src/common/crash.rs, compiled only
//! with the `failpoints` feature) where the process sends itself SIGKILL; during the panel call or the worker's
//! signal call, a SIGKILL from the test while the panel cloud (in hold mode) holds the answer
//! back; or a function timeout: the process stalls at a point (the point's `sleep` action) and
//! the fake Lambda runtime kills it at the invocation's deadline and reports the timeout, as
//! Lambda does. Each point runs at one of the five log levels (each level meets both binaries).
//! Each test prints its crash-point matrix (run with `--nocapture` to see it).

use crate::support;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use alarm_skill::common::crash;
use alarm_skill::local::simulator::defects::Defects;
use serde_json::{Value, json};
use support::lambda::{Function, Outcome, http_event, only, world};
use support::stack::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    Duress,
}

impl Kind {
    /// The demo household's first member (user number 1): voice PIN and duress PIN.
    fn pin(self) -> &'static str {
        match self {
            Kind::Normal => "4729",
            Kind::Duress => "8361",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    /// bootstrap: the code checked, nothing written yet.
    CodeVerified,
    /// bootstrap: decision and outbox record written, panel not called.
    DecisionWritten,
    /// bootstrap: the panel cloud took the disarm and is holding its answer back.
    DuringPanelCall,
    /// bootstrap: the panel cloud answered, the record is not settled.
    PanelAnswered,
    /// bootstrap, during a lockout (every code refused, a duress still signalled): decision
    /// and record written, signal not sent.
    LockedDecisionWritten,
    /// bootstrap, during a lockout: the cloud acknowledged the signal, record not settled.
    LockedSignalAnswered,
    /// bootstrap: the panel cloud failed the disarm (HTTP 500), the record is not settled.
    PanelFailed,
    /// bootstrap: the disarm call timed out (the cloud never answered in time), the record is
    /// not settled.
    PanelTimedOut,
    /// bootstrap stalls once the decision is written, past its timeout: the runtime kills it.
    TimeoutDecisionWritten,
    /// bootstrap stalls once the panel answered, past its timeout.
    TimeoutPanelAnswered,
    /// redelivery: the cloud acknowledged the signal, the record is not settled.
    SignalAcked,
    /// redelivery: a shard's lease is held.
    LeaseHeld,
    /// redelivery: the cloud took the signal and is holding its answer back.
    DuringSignalCall,
    /// redelivery stalls once the cloud acknowledged the signal, past its timeout.
    TimeoutSignalAcked,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::CodeVerified => crash::DISARM_CODE_VERIFIED,
            Point::DecisionWritten
            | Point::LockedDecisionWritten
            | Point::TimeoutDecisionWritten => crash::DISARM_DECISION_WRITTEN,
            Point::DuringPanelCall => "SIGKILL during the panel call",
            Point::PanelAnswered
            | Point::LockedSignalAnswered
            | Point::TimeoutPanelAnswered
            | Point::PanelFailed
            | Point::PanelTimedOut => crash::DISARM_PANEL_ANSWERED,
            Point::SignalAcked | Point::TimeoutSignalAcked => crash::REDELIVERY_SIGNAL_ACKED,
            Point::LeaseHeld => crash::REDELIVERY_LEASE_HELD,
            Point::DuringSignalCall => "SIGKILL during the signal call",
        }
    }

    fn label(self) -> String {
        if self.locked() {
            format!("{} (locked out)", self.name())
        } else if self.timeout() {
            format!("{} (timeout)", self.name())
        } else if let Some((mode, _)) = self.panel_fault() {
            format!("{} (panel {mode})", self.name())
        } else {
            self.name().to_string()
        }
    }

    fn locked(self) -> bool {
        matches!(
            self,
            Point::LockedDecisionWritten | Point::LockedSignalAnswered
        )
    }

    /// The process stalls at the point (the fail crate's `sleep`) until the runtime kills it at
    /// the invocation's deadline, as Lambda does on a function timeout.
    fn timeout(self) -> bool {
        matches!(
            self,
            Point::TimeoutDecisionWritten | Point::TimeoutPanelAnswered | Point::TimeoutSignalAcked
        )
    }

    fn in_worker(self) -> bool {
        matches!(
            self,
            Point::SignalAcked
                | Point::LeaseHeld
                | Point::DuringSignalCall
                | Point::TimeoutSignalAcked
        )
    }

    /// The panel cloud's fault while the directive runs to its crash.
    fn panel_fault(self) -> Option<(&'static str, u64)> {
        match self {
            Point::PanelFailed => Some(("error", 0)),
            // Longer than the whole directive: the call runs out of its budget.
            Point::PanelTimedOut => Some(("timeout", 15_000)),
            _ => None,
        }
    }

    /// The failpoint action: SIGKILL on the spot, or stall far past the function's timeout.
    fn action(self) -> &'static str {
        if self.timeout() {
            "sleep(120000)"
        } else {
            "return"
        }
    }

    /// The log level every process of the scenario runs at: the points share the five levels
    /// between them, so each level meets both binaries and a crash and a timeout.
    fn log_level(self) -> &'static str {
        match self {
            Point::DecisionWritten | Point::TimeoutPanelAnswered | Point::SignalAcked => "TRACE",
            Point::DuringPanelCall
            | Point::LeaseHeld
            | Point::PanelFailed
            | Point::CodeVerified => "DEBUG",
            Point::PanelAnswered | Point::DuringSignalCall => "INFO",
            Point::LockedDecisionWritten | Point::TimeoutSignalAcked | Point::PanelTimedOut => {
                "WARN"
            }
            Point::LockedSignalAnswered | Point::TimeoutDecisionWritten => "ERROR",
        }
    }
}

/// Which assistant's path the disarm takes, hence which deployed binary dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// A Disarm directive to `bootstrap`.
    Alexa,
    /// A Google EXECUTE (ArmDisarm with the PIN challenge) to `http-api`.
    Google,
}

impl Via {
    fn binary(self) -> &'static str {
        match self {
            Via::Alexa => support::lambda::DIRECTIVE,
            Via::Google => support::lambda::HTTP_API,
        }
    }

    fn env(self, env: &[(String, String)]) -> Vec<(String, String)> {
        match self {
            Via::Alexa => only(env, alarm_skill::adapters::secrets::needs::DIRECTIVE),
            Via::Google => only(env, alarm_skill::adapters::secrets::needs::HTTP_API),
        }
    }

    fn disarm(self, token: &str, pin: &str) -> Value {
        match self {
            Via::Alexa => disarm(token, "home", Some(pin)),
            Via::Google => http_event(
                "POST",
                support::google::PATH,
                json!({"authorization": format!("Bearer {token}"),
                       "content-type": "application/json"}),
                Some(&support::google::disarm("home", Some(pin)).to_string()),
            ),
        }
    }
}

/// What one crash and its recovery came to.
#[derive(Debug)]
struct Row {
    point: Point,
    kind: Kind,
    via: Via,
    /// Distinct 121 frames the panel cloud's DC-09 transmitter sent.
    sent_121: usize,
    /// 121 events the monitoring center acted on.
    received_121: usize,
    /// `disarm` calls the panel cloud received (the worker must never add one).
    disarms: usize,
    /// `signal` calls the panel cloud received.
    signals: usize,
    state_after_crash: String,
    state_after_recovery: String,
    /// Outbox records pending right after the crash (the crash came before the settle).
    pending_at_crash: usize,
    /// Re-delivery leases left in the table by the crashed process.
    leases_at_crash: usize,
    /// Outbox records still pending after the worker ran.
    pending: usize,
    /// Worker invocations until nothing was pending, and how many found a shard's lease held.
    worker_runs: usize,
    skipped_runs: usize,
    /// The outbox records as an observer of the table sees them, ids and times left out.
    outbox: Vec<Value>,
}

fn armed(env: &[(String, String)], point: Point) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    env.push((
        "FAILPOINTS".into(),
        format!("{}={}", point.name(), point.action()),
    ));
    env
}

fn at_level(env: &[(String, String)], level: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != "AWS_LAMBDA_LOG_LEVEL")
        .cloned()
        .collect();
    env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level.into()));
    env
}

/// The worker's pass when handed a scheduled tick: it deferred the record (too little of its
/// invocation left to start it), it answered otherwise, or the process exited (killed at a
/// crash point) before answering.
enum Pass {
    Deferred,
    Answered(Outcome),
    Exited,
}

async fn next_pass(f: &mut Function) -> Pass {
    match f.outcome_or_exit().await {
        None => Pass::Exited,
        Some(out) if deferred_only(&out) => Pass::Deferred,
        Some(out) => Pass::Answered(out),
    }
}

/// A pass that started nothing because its invocation had too little time left: on a loaded
/// machine (the crash-point matrices and DynamoDB Local beside it) reading the shards can take
/// most of the worker's budget. The worker is right to wait for its next tick then, as on AWS.
fn deferred_only(out: &Outcome) -> bool {
    let report = &out.2;
    out.0 == "response" && report["deferred"].as_u64() > Some(0) && report["examined"] == 0
}

/// Hands the worker scheduled ticks until a pass starts the pending record (at most 5): its
/// outcome, or `None` if the process died on the way (at its crash point).
async fn tick_until_started(f: &mut Function) -> Option<Outcome> {
    for _ in 0..5 {
        f.enqueue(schedule());
        match next_pass(f).await {
            Pass::Deferred => continue,
            Pass::Answered(out) => return Some(out),
            Pass::Exited => return None,
        }
    }
    panic!("the worker deferred the record at 5 ticks in a row");
}

/// Waits for a process armed to stall at a point to be killed at its deadline, as Lambda kills
/// a function that runs past its timeout; the caller got the runtime's timeout error.
async fn times_out(mut f: Function, point: Point, finished: &str) {
    let outcome = f.outcome().await;
    stalled(f, point, finished, outcome).await;
}

/// [`times_out`] for a process whose outcome the caller already has.
async fn stalled(f: Function, point: Point, finished: &str, outcome: Outcome) {
    let (kind, _, error) = outcome;
    if kind != "timeout" {
        let out = f.logs().await;
        panic!(
            "stalled at {}: a {kind}, not a timeout: {error}\n{out}",
            point.name()
        );
    }
    let (status, out) = f.exit().await;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed at the deadline: {status:?}\n{out}"
    );
    assert!(
        !out.contains(finished),
        "killed before {finished:?}:\n{out}"
    );
}

/// Waits for a process armed at `point` to reach it and die there.
async fn dies_at(f: Function, point: &str) {
    let (status, out) = f.exit().await;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed at {point}: {status:?}\n{out}"
    );
    assert!(out.contains(&format!("{point}: SIGKILL")), "{out}");
}

async fn arm_state(h: &Harness) -> String {
    h.panel("home").await["arm_state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// Whether the panel cloud received an `op` call for the home panel within 4 s.
/// Whether `op` reached the panel cloud: polled every 20 ms for up to a minute, because a fresh
/// debug process on a loaded machine can take seconds to get there (a bound of 4 s failed there).
async fn wait_for_op(h: &Harness, op: &str) -> bool {
    for _ in 0..3_000 {
        if h.requests_for("home").await.iter().any(|o| o == op) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn schedule() -> Value {
    json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
}

async fn scenario(point: Point, kind: Kind, via: Via) -> Row {
    scenario_against(point, kind, via, Defects::default()).await
}

/// [`scenario`] against a panel cloud with `defects` (contract violations the matrix must show).
/// How many crash-point scenarios run at once, across this file's tests: each is a stack and
/// Lambda processes racing real deadlines against the one DynamoDB Local. All ~37 at once (the
/// matrices run their points side by side) beside the browser tests starved DynamoDB Local of
/// CPU until writes missed their directives' deadlines; the work is the same, only its peak
/// lower.
static SCENARIOS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(6);

async fn scenario_against(point: Point, kind: Kind, via: Via, defects: Defects) -> Row {
    let _turn = SCENARIOS.acquire().await.expect("never closed");
    let (h, env) = world().await;
    h.stack.sim.set_defects(defects);
    let t = h.token("demo").await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    let env = at_level(&env, point.log_level());
    let directive_env = only(&env, alarm_skill::adapters::secrets::needs::DIRECTIVE);
    let worker_env = only(&env, alarm_skill::adapters::secrets::needs::REDELIVERY);

    if point.locked() {
        // Three wrong codes lock voice disarm for 90 s (the default policy).
        let mut f = Function::start(support::lambda::DIRECTIVE, &directive_env).await;
        for _ in 0..3 {
            let (_, _, r) = f.invoke(disarm(&t, "home", Some("0000"))).await;
            assert_eq!(error_type(&r), Some("UNAUTHORIZED"), "{r}");
        }
        drop(f);
    }

    match point {
        Point::CodeVerified
        | Point::DecisionWritten
        | Point::PanelAnswered
        | Point::LockedDecisionWritten
        | Point::LockedSignalAnswered
        | Point::TimeoutDecisionWritten
        | Point::TimeoutPanelAnswered
        | Point::PanelFailed
        | Point::PanelTimedOut => {
            if let Some((mode, delay_ms)) = point.panel_fault() {
                h.fault(mode, delay_ms).await;
            }
            let f = Function::start(via.binary(), &armed(&via.env(&env), point)).await;
            f.enqueue(via.disarm(&t, kind.pin()));
            if point.timeout() {
                times_out(f, point, "directive handled").await;
            } else {
                dies_at(f, point.name()).await;
            }
            h.fault("none", 0).await;
        }
        Point::DuringPanelCall => {
            // The cloud disarms, then holds its answer back until the fault is lifted (reads
            // pass, so the ownership check does): the process dies with the call in flight.
            h.fault("hold", 60_000).await;
            let mut f = Function::start(via.binary(), &via.env(&env)).await;
            f.enqueue(via.disarm(&t, kind.pin()));
            let sent = wait_for_op(&h, "disarm").await;
            let answered = f.try_outcome();
            // SIGKILL (tokio's Child::kill), before the answer is back.
            let out = f.logs().await;
            assert!(sent, "the disarm reached the panel cloud:\n{out}");
            assert!(
                answered.is_none(),
                "killed before it answered: {answered:?}"
            );
            h.fault("none", 0).await;
        }
        Point::SignalAcked
        | Point::LeaseHeld
        | Point::DuringSignalCall
        | Point::TimeoutSignalAcked => {
            // A disarm whose panel call failed leaves a pending record for the worker.
            h.fault("down", 0).await;
            let mut f = Function::start(support::lambda::DIRECTIVE, &directive_env).await;
            let (_, _, r) = f.invoke(disarm(&t, "home", Some(kind.pin()))).await;
            assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
            drop(f);
            if point == Point::DuringSignalCall {
                // The cloud queues the 121, then holds its answer back: the worker dies with
                // the call in flight, and the one after it sends the same signal again.
                h.fault("hold", 60_000).await;
                let mut f = Function::start(support::lambda::REDELIVERY, &worker_env).await;
                let mut sent = false;
                for _ in 0..5 {
                    f.enqueue(schedule());
                    tokio::select! {
                        reached = wait_for_op(&h, "signal") => {
                            sent = reached;
                            break;
                        }
                        pass = next_pass(&mut f) => match pass {
                            Pass::Deferred => continue,
                            Pass::Answered(out) => panic!("answered with the call held: {out:?}"),
                            Pass::Exited => panic!("exited with the call held"),
                        },
                    }
                }
                let out = f.logs().await;
                assert!(sent, "the signal reached the panel cloud:\n{out}");
                assert!(
                    !out.contains("pending signal delivered"),
                    "killed before the answer:\n{out}"
                );
                h.fault("none", 0).await;
            } else {
                h.fault("none", 0).await;
                let mut f =
                    Function::start(support::lambda::REDELIVERY, &armed(&worker_env, point)).await;
                let outcome = tick_until_started(&mut f).await;
                match (point.timeout(), outcome) {
                    (true, Some(outcome)) => stalled(f, point, "redelivery pass", outcome).await,
                    (true, None) => {
                        panic!("stalled at {}: exited before the deadline", point.name())
                    }
                    (false, None) => dies_at(f, point.name()).await,
                    (false, Some(out)) => panic!("armed at {}: answered {out:?}", point.name()),
                }
            }
        }
    }
    let state_after_crash = arm_state(&h).await;
    let dump_at_crash = store_dump(&h).await;
    let pending_at_crash = outbox_records(&dump_at_crash)
        .iter()
        .filter(|r| r["status"] == "pending")
        .count();
    // A lease is deleted when its pass ends: one still in the table was left by a crash.
    let leases_at_crash = dump_at_crash["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["PK"].as_str().is_some_and(|pk| pk.starts_with("LEASE#")))
        .count();

    // A fresh bootstrap: answers, and replays nothing by starting.
    let mut f = Function::start(support::lambda::DIRECTIVE, &directive_env).await;
    let (kind_of, _, r) = f.invoke(report_state(&t, "home")).await;
    assert_eq!(kind_of, "response", "{r}");
    assert_eq!(
        property(&r, "armState").as_str().map(str::to_lowercase),
        Some(state_after_crash.clone()),
        "{r}"
    );
    drop(f);

    // A fresh worker until nothing is pending: a record the crashed directive left is due
    // after its grace; a lease the crashed worker held must run out first.
    let mut w = Function::start(support::lambda::REDELIVERY, &worker_env).await;
    let (mut worker_runs, mut skipped_runs) = (0, 0);
    loop {
        let (kind_of, _, report) = w.invoke(schedule()).await;
        assert_eq!(kind_of, "response", "{report}");
        worker_runs += 1;
        if report["skipped_shards"].as_u64() > Some(0) {
            skipped_runs += 1;
        }
        let idle = report["examined"] == 0 && report["skipped_shards"] == 0;
        if idle && report["backlog"] == 0 && report["gone"] == 0 {
            break;
        }
        assert!(worker_runs < 60, "still pending after 60 runs: {report}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(w);

    let link = h.get("/sim/monitoring/link").await;
    let mut seqs: Vec<u64> = link["sent"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["code"] == "121")
        .filter_map(|s| s["seq"].as_u64())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let received_121 = h
        .signals()
        .await
        .iter()
        .filter(|s| s.starts_with("121/"))
        .count();
    let ops = h.requests_for("home").await;
    let dump = store_dump(&h).await;
    let records = outbox_records(&dump);
    let pending = records.iter().filter(|r| r["status"] == "pending").count();
    let outbox = records
        .iter()
        .map(|r| {
            let mut keys: Vec<&String> = r.as_object().unwrap().keys().collect();
            keys.sort();
            json!({
                "attributes": keys,
                "status": r["status"],
                "attempts": r["attempts"],
                "lane": r["lane"],
                "counted": r["counted"],
                "seal_len": r["seal"].as_str().map(str::len),
            })
        })
        .collect();
    Row {
        point,
        kind,
        via,
        sent_121: seqs.len(),
        received_121,
        disarms: ops.iter().filter(|o| *o == "disarm").count(),
        signals: ops.iter().filter(|o| *o == "signal").count(),
        state_after_crash,
        state_after_recovery: arm_state(&h).await,
        pending_at_crash,
        leases_at_crash,
        pending,
        worker_runs,
        skipped_runs,
        outbox,
    }
}

fn print_matrix(title: &str, rows: &[Row]) {
    eprintln!("crash-point matrix ({title}, DynamoDB Local):");
    eprintln!(
        "{:<52} {:<7} {:<5} {:>8} {:>12} {:>8} {:>8} {:>16} {:>11} {:<22}",
        "point",
        "kind",
        "log",
        "121 sent",
        "121 received",
        "disarms",
        "signals",
        "pending crash/end",
        "worker runs",
        "panel after crash/now"
    );
    for r in rows {
        eprintln!(
            "{:<52} {:<7} {:<5} {:>8} {:>12} {:>8} {:>8} {:>16} {:>11} {:<22}",
            r.point.label(),
            format!("{:?}", r.kind),
            r.point.log_level(),
            r.sent_121,
            r.received_121,
            r.disarms,
            r.signals,
            format!("{}/{}", r.pending_at_crash, r.pending),
            format!("{} ({} held)", r.worker_runs, r.skipped_runs),
            format!("{}/{}", r.state_after_crash, r.state_after_recovery),
        );
    }
}

/// Every row's promise, and the two kinds alike at each point.
fn check(rows: &[Row]) {
    for r in rows {
        // A death before anything is written ends the attempt as a whole: no record, no
        // disarm, no reply (the assistant reports an error and the person is asked again).
        // From the decision on, a duress is never lost.
        let written = usize::from(r.point != Point::CodeVerified);
        let want = usize::from(r.kind == Kind::Duress) * written;
        let at = format!("{:?} at {:?} via {:?}", r.kind, r.point, r.via);
        assert_eq!(r.received_121, want, "121s received, {at}: {r:?}");
        assert_eq!(r.sent_121, want, "121s sent by the cloud, {at}: {r:?}");
        assert_eq!(r.pending, 0, "lost (still pending), {at}: {r:?}");
        assert_eq!(
            r.pending_at_crash, written,
            "the crash came before the record was settled, {at}: {r:?}"
        );
        // The worker signals once; once more where the crashed worker's signal was taken by
        // the cloud (the cloud deduplicates it by request id: still one 121).
        // So does a locked-out directive's own signal, acknowledged before the crash.
        let expected_signals = match r.point {
            Point::SignalAcked
            | Point::LockedSignalAnswered
            | Point::DuringSignalCall
            | Point::TimeoutSignalAcked => 2,
            Point::CodeVerified => 0,
            _ => 1,
        };
        assert_eq!(r.signals, expected_signals, "signal calls, {at}: {r:?}");
        assert_eq!(r.outbox.len(), written, "outbox records, {at}: {r:?}");
        assert_eq!(
            r.state_after_recovery, r.state_after_crash,
            "recovery changed the panel (a replayed disarm?), {at}"
        );
        // The disarm call was made once, by the directive, before the crash, or never.
        let expected_disarms = match r.point {
            // The directive's disarm call reached the cloud.
            Point::DuringPanelCall | Point::PanelAnswered | Point::TimeoutPanelAnswered => 1,
            Point::CodeVerified
            | Point::DecisionWritten
            | Point::LockedDecisionWritten
            | Point::TimeoutDecisionWritten => 0,
            // The cloud failed or never answered: it did not disarm.
            Point::LockedSignalAnswered | Point::PanelFailed | Point::PanelTimedOut => 0,
            Point::SignalAcked
            | Point::LeaseHeld
            | Point::DuringSignalCall
            | Point::TimeoutSignalAcked => 0,
        };
        assert_eq!(r.disarms, expected_disarms, "disarm calls, {at}: {r:?}");
        let expected_state = if expected_disarms == 1 {
            "disarmed"
        } else {
            "armed_away"
        };
        assert_eq!(r.state_after_crash, expected_state, "{at}: {r:?}");
        // A worker that died inside its pass left its shard's lease held (the workers after it
        // skip the shard until the lease runs out, then take it over: `pending` is 0 above).
        // Read from the table at the crash, not from the skipped runs after it: on a loaded
        // machine the fresh processes took longer to start than the lease had left.
        // (At least one: the shards it had finished released theirs, others may have been
        // mid-pass when it died.)
        assert_eq!(
            r.leases_at_crash > 0,
            r.point.in_worker(),
            "leases held at the crash: {r:?}"
        );
    }
    for pair in rows.chunks(2) {
        let [a, b] = pair else { continue };
        assert_eq!(a.point, b.point);
        assert_ne!(a.kind, b.kind);
        assert_eq!(
            a.outbox, b.outbox,
            "the outbox shows the kind at {:?}",
            a.point
        );
        assert_eq!(a.disarms, b.disarms, "{:?}", a.point);
        assert_eq!(a.signals, b.signals, "{:?}", a.point);
    }
}

/// Where `bootstrap` is killed in an Alexa disarm (none of them in the re-delivery worker).
const DIRECTIVE_POINTS: [Point; 10] = [
    Point::CodeVerified,
    Point::DecisionWritten,
    Point::DuringPanelCall,
    Point::PanelAnswered,
    Point::LockedDecisionWritten,
    Point::LockedSignalAnswered,
    Point::PanelFailed,
    Point::PanelTimedOut,
    Point::TimeoutDecisionWritten,
    Point::TimeoutPanelAnswered,
];

/// Where the re-delivery worker is killed in its pass.
const WORKER_POINTS: [Point; 4] = [
    Point::SignalAcked,
    Point::LeaseHeld,
    Point::DuringSignalCall,
    Point::TimeoutSignalAcked,
];

/// Where `http-api` is killed in a Google disarm.
const GOOGLE_POINTS: [Point; 5] = [
    Point::CodeVerified,
    Point::DecisionWritten,
    Point::DuringPanelCall,
    Point::PanelAnswered,
    Point::TimeoutPanelAnswered,
];

async fn matrix(points: &[Point], via: Via) -> Vec<Row> {
    let runs: Vec<_> = points
        .iter()
        .flat_map(|p| [Kind::Normal, Kind::Duress].map(|k| scenario(*p, k, via)))
        .collect();
    futures::future::join_all(runs).await
}

/// Every point of `points` crossed with both kinds, via `via`: printed under `title`, checked.
async fn run_matrix(title: &str, points: &[Point], via: Via) {
    let rows = matrix(points, via).await;
    print_matrix(title, &rows);
    check(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_killed_at_each_step_of_a_disarm_loses_and_replays_nothing() {
    assert!(DIRECTIVE_POINTS.iter().all(|p| !p.in_worker()));
    run_matrix("bootstrap", &DIRECTIVE_POINTS, Via::Alexa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_killed_at_each_step_delivers_each_duress_once() {
    assert!(WORKER_POINTS.iter().all(|p| p.in_worker()));
    run_matrix("redelivery", &WORKER_POINTS, Via::Alexa).await;
}

/// Google's disarm runs the same steps in `http-api`: killed at each, stalled past its
/// timeout, the same promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_killed_at_each_step_of_a_google_disarm_loses_and_replays_nothing() {
    run_matrix("http-api, Google EXECUTE", &GOOGLE_POINTS, Via::Google).await;
}

/// The matrix can fail: against a cloud that raises a 121 for every signal call instead of once
/// per request id, the worker killed during its signal call (and the one killed after the
/// acknowledgement) leaves the monitoring center two 121s for one duress, where `check` demands
/// exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_catches_a_cloud_that_signals_every_re_delivery() {
    let defects = Defects {
        duress_every_time: true,
        ..Defects::default()
    };
    let points = [Point::DuringSignalCall, Point::SignalAcked];
    let rows = futures::future::join_all(
        points.map(|point| scenario_against(point, Kind::Duress, Via::Alexa, defects)),
    )
    .await;
    for row in rows {
        assert_eq!((row.sent_121, row.received_121), (2, 2), "{row:?}");
        assert_eq!(row.pending, 0, "{row:?}");
    }
}

/// A function timeout is a crash, so no step may push a directive past it: with the panel cloud
/// answering each call only after 4 s and a 6 s function timeout, `bootstrap` answers every
/// disarm itself (never killed by the runtime): the normal and the duress PIN with one and the
/// same reply, the wrong code that locks voice disarm with the lockout reply (its household
/// notice is sent inside the deadline, or left). Then the cloud recovers and the worker runs:
/// exactly one 121, for the duress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_step_of_a_disarm_runs_past_a_short_function_timeout_under_a_slow_cloud() {
    // Two slow calls (the ownership check and the disarm) outlast the timeout. The 2 s left for
    // the store's reads and writes is a margin a loaded machine can't eat: with 3 s and a 2 s
    // cloud, the crash-point matrices beside it on the one DynamoDB Local once pushed every
    // write of the process past its share (INTERNAL_ERROR for each code after the first).
    const BUDGET: Duration = Duration::from_secs(6);
    let _turn = SCENARIOS.acquire().await.expect("never closed");
    let (h, env) = world().await;
    let t = h.token("demo").await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    let directive_env = only(&env, alarm_skill::adapters::secrets::needs::DIRECTIVE);
    let mut f =
        Function::start_with_budget(support::lambda::DIRECTIVE, &directive_env, BUDGET).await;
    // The first invocation of a process also fetches the JWKS and opens connections: on a loaded
    // machine that alone ate the normal PIN's budget (INTERNAL_ERROR where the duress PIN, second,
    // got BRIDGE_UNREACHABLE). Warm first, so both kinds start from the same process state.
    let (kind, _, r) = f.invoke(report_state(&t, "home")).await;
    assert_eq!(kind, "response", "{r}");
    h.fault("slow", 4_000).await;
    let mut replies = Vec::new();
    for pin in [
        Kind::Normal.pin(),
        Kind::Duress.pin(),
        "0000",
        "0000",
        "0000",
    ] {
        // The runtime kills the process and answers "timeout" at the invocation's deadline.
        let (kind, _, r) = f.invoke(disarm(&t, "home", Some(pin))).await;
        assert_eq!(kind, "response", "{pin:?} ran past the timeout: {r}");
        replies.push(error_type(&r).map(str::to_string));
    }
    eprintln!("replies, cloud slow by 4 s a call, {BUDGET:?} timeout: {replies:?}");
    assert_eq!(replies[0], replies[1], "normal and duress answered alike");
    assert_eq!(replies[4].as_deref(), Some("UNAUTHORIZED"), "{replies:?}");
    drop(f);
    h.fault("none", 0).await;

    let worker_env = only(&env, alarm_skill::adapters::secrets::needs::REDELIVERY);
    let mut w = Function::start(support::lambda::REDELIVERY, &worker_env).await;
    for _ in 0..60 {
        let (kind, _, report) = w.invoke(schedule()).await;
        assert_eq!(kind, "response", "{report}");
        if report["examined"] == 0 && report["backlog"] == 0 && report["skipped_shards"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let received = h.duress_signals().await;
    assert_eq!(received, ["121/1/1"], "one 121, for the duress");
}
