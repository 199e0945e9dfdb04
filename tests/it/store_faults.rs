//! The store failing under a disarm, with real parts: each stack keeps its data in DynamoDB
//! Local behind a fault-injecting TCP proxy (tests/support/proxy.rs) that resets or delays
//! chosen DynamoDB operations. Whatever the store does, a duress is relayed exactly as a normal
//! code is, and nothing an intruder can observe differs between the two.
//!
//! Each test uses its own account, so the log lines it checks are its own.

use crate::support;

use std::sync::OnceLock;
use std::time::Duration;

use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use serde_json::Value;
use support::logs::Capture;
use support::proxy::{Fault, FaultProxy};
use support::stack::*;

const NORMAL: &str = "4729";
const DURESS: &str = "8361";

/// The log lines of the tests that read them, as JSON: one capture (the tests' accounts tell
/// their lines apart), on the threads of those tests' runtimes only (support::logs).
fn logs() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(Capture::default)
}

/// Runs `test` with its log lines captured in `logs()`.
fn logged(test: impl Future<Output = ()>) {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(logs().clone())
        .finish();
    support::logs::run(subscriber.into(), 0, test);
}

/// The captured lines carrying `marker` for `account`.
fn marked(account: &str, marker: &str) -> Vec<Value> {
    let text = logs().text();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["marker"] == marker && l["fields"]["household"] == account)
        .collect()
}

struct Faulty {
    h: Harness,
    proxy: FaultProxy,
    account: String,
}

fn config(account: &str) -> DemoConfig {
    DemoConfig::parse(&format!(
        r#"{{
      "accounts": [{{"id": "{account}", "users": [{{"number": 1, "name": "Alex"}}],
        "panels": [{{"id": "home", "name": "Home", "exit_delay_s": 60, "entry_delay_s": 30,
          "zones": [{{"id": "front-door", "number": 1, "name": "Front door", "kind": "contact", "entry": true}}]}}]}}],
      "households": [{{"account": "{account}", "members": [
        {{"id": "alex", "name": "Alex", "user_number": 1, "voice_pin": "4729", "duress_pin": "8361"}}]}}]
    }}"#
    ))
    .expect("config")
}

async fn faulty(account: &str) -> Faulty {
    faulty_within(account, None).await
}

/// A stack whose directives get `budget` (the function's timeout) instead of the tests' 1.5 s.
async fn faulty_within(account: &str, budget: Option<Duration>) -> Faulty {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local");
    let proxy = FaultProxy::start(&endpoint).await;
    let defaults = test_options();
    let h = Harness::start_with(Options {
        config: config(account),
        dynamodb_endpoint: Some(proxy.endpoint()),
        directive_budget: budget.or(defaults.directive_budget),
        ..defaults
    })
    .await;
    Faulty {
        h,
        proxy,
        account: account.to_string(),
    }
}

/// Two identical stacks on their own accounts: one will say the voice PIN, one the duress PIN.
async fn pair(name: &str) -> (Faulty, Faulty) {
    let (a, b) = (format!("{name}-n"), format!("{name}-d"));
    tokio::join!(faulty(&a), faulty(&b))
}

/// Arms away and lets the exit delay pass.
async fn armed(f: &Faulty) -> String {
    let t = f.h.token(&f.account).await;
    let r = f.h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    assert_eq!(r["event"]["header"]["name"], "Arm.Response", "{r}");
    f.h.advance(60).await;
    t
}

/// Both stacks armed away, then each says its code (the voice PIN on `n`, the duress PIN on
/// `d`) once `fault` has set its faults; the proxy's are cleared after. The two replies.
async fn said_during(n: &Faulty, d: &Faulty, fault: impl AsyncFn(&Faulty)) -> Vec<Value> {
    let mut replies = vec![];
    for (f, code) in [(n, NORMAL), (d, DURESS)] {
        let t = armed(f).await;
        fault(f).await;
        replies.push(f.h.invoke(&disarm(&t, "home", Some(code))).await);
        f.proxy.clear();
    }
    replies
}

async fn audit(f: &Faulty) -> Value {
    let admin = f.h.admin_token(&f.account).await;
    let (status, body) =
        f.h.api("GET", "/v1/household/audit?limit=100", Some(&admin), None)
            .await;
    assert_eq!(status, 200, "{body}");
    normalize(&body)
}

#[test]
fn writes_failing_after_verification_still_signal_both_kinds_alike() {
    logged(writes_failing_after_verification_still_signal_both_kinds_alike_in());
}

async fn writes_failing_after_verification_still_signal_both_kinds_alike_in() {
    let (n, d) = pair("writes-fail").await;
    let mut replies = vec![];
    for (f, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = armed(f).await;
        // Reads still work, so the code is verified; every write is reset.
        f.proxy.set("TransactWriteItems", Fault::Reset);
        replies.push(f.h.invoke(&disarm(&t, "home", Some(code))).await);
        // A wrong code in the same situation gets the very same reply.
        replies.push(f.h.invoke(&disarm(&t, "home", Some("1357"))).await);
        f.proxy.clear();
        assert!(f.proxy.seen("TransactWriteItems") > 0, "the fault was hit");
    }
    assert_eq!(
        error_type(&replies[0]),
        Some("INTERNAL_ERROR"),
        "{}",
        replies[0]
    );
    for r in &replies[1..] {
        assert_eq!(normalize(r), normalize(&replies[0]));
    }
    // Without a recorded decision nothing is disarmed (the throttle couldn't vouch for it)...
    for f in [&n, &d] {
        assert_eq!(f.h.panel("home").await["arm_state"], "armed_away");
        let ops = f.h.requests_for("home").await;
        assert!(!ops.contains(&"disarm".to_string()), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| *o == "signal").count(), 2, "{ops:?}");
    }
    // ...but the monitoring center got the duress, once, for Alex.
    assert_eq!(count(&n.h.signals().await, "121/"), 0);
    assert_eq!(count(&d.h.signals().await, "121/1/1"), 1);
    // What the household sees is the same; the operator got the same markers for both.
    assert_eq!(audit(&n).await, audit(&d).await);
    for f in [&n, &d] {
        let lines = marked(&f.account, "disarm_attempt_unrecorded");
        assert_eq!(lines.len(), 2, "{}: {lines:?}", f.account);
        let text = format!("{lines:?}");
        assert!(
            !support::holds_pin(&text, NORMAL) && !support::holds_pin(&text, DURESS),
            "{text}"
        );
    }
    // Counters untouched: the failures could not be recorded either.
    let admin = d.h.admin_token(&d.account).await;
    let (_, l) =
        d.h.api("GET", "/v1/household/lockout", Some(&admin), None)
            .await;
    assert_eq!(l["consecutive_failures"], 0);
}

#[test]
fn a_store_and_panel_outage_together_still_answer_alike_and_log_the_sealed_record() {
    logged(a_store_and_panel_outage_together_still_answer_alike_and_log_the_sealed_record_in());
}

async fn a_store_and_panel_outage_together_still_answer_alike_and_log_the_sealed_record_in() {
    let (n, d) = pair("both-down").await;
    let replies = said_during(&n, &d, async |f| {
        f.h.fault("error", 0).await;
        f.proxy.set("TransactWriteItems", Fault::Reset);
    })
    .await;
    for f in [&n, &d] {
        f.h.fault("none", 0).await;
    }
    assert_eq!(error_type(&replies[0]), Some("INTERNAL_ERROR"));
    assert_eq!(normalize(&replies[0]), normalize(&replies[1]));
    // Nothing could be stored; the record, sealed, is in the log for an operator to restore.
    let mut records = vec![];
    for f in [&n, &d] {
        let lines = marked(&f.account, "outbox_record_unsaved");
        assert_eq!(lines.len(), 1, "{}: {lines:?}", f.account);
        let record: Value =
            serde_json::from_str(lines[0]["fields"]["record"].as_str().unwrap()).unwrap();
        assert_eq!(record["household"], f.account.as_str());
        assert_eq!(record["status"], "pending");
        records.push(record);
    }
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&records[0]), keys(&records[1]));
    assert_eq!(
        records[0]["seal"].as_str().unwrap().len(),
        records[1]["seal"].as_str().unwrap().len()
    );
}

#[tokio::test]
async fn a_stopped_store_refuses_both_kinds_alike_before_any_panel_change() {
    let (n, d) = pair("stopped").await;
    let replies = said_during(&n, &d, async |f| f.proxy.set("*", Fault::Reset)).await;
    // Without the household's codes no PIN can be checked: the same INTERNAL_ERROR for both
    // (never a credential error), and the panels stay armed.
    assert_eq!(error_type(&replies[0]), Some("INTERNAL_ERROR"));
    assert_eq!(normalize(&replies[0]), normalize(&replies[1]));
    for f in [&n, &d] {
        assert_eq!(f.h.panel("home").await["arm_state"], "armed_away");
        assert!(
            !f.h.requests_for("home")
                .await
                .contains(&"disarm".to_string())
        );
    }
    // The store is back: the next disarm works as usual.
    let t = d.h.token(&d.account).await;
    let r = d.h.invoke(&disarm(&t, "home", Some(DURESS))).await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    assert_eq!(count(&d.h.signals().await, "121/1/1"), 1);
}

#[tokio::test]
async fn a_hung_store_write_leaves_the_panel_call_its_time() {
    let (n, d) = pair("hung").await;
    let mut replies = vec![];
    for (f, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = armed(f).await;
        f.proxy
            .set("TransactWriteItems", Fault::Delay(Duration::from_secs(8)));
        let started = std::time::Instant::now();
        replies.push(f.h.invoke(&disarm(&t, "home", Some(code))).await);
        // Within the directive's 1.5 s budget, not held by the 8 s store hang: a margin machine
        // load can't eat.
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        f.proxy.clear();
    }
    assert_same_error_reply(&replies, "INTERNAL_ERROR");
    // The signal went out in time; the delayed writes land later, and the worker then finds
    // nothing it must deliver again.
    assert_eq!(count(&d.h.signals().await, "121/1/1"), 1);
    // The 8 s hang, and room for a loaded machine's DynamoDB Local to write.
    tokio::time::sleep(Duration::from_secs(12)).await;
    for f in [&n, &d] {
        f.h.advance(60).await;
        f.h.stack.redeliver().await.unwrap();
    }
    assert_eq!(count(&n.h.signals().await, "121/"), 0);
    assert_eq!(count(&d.h.signals().await, "121/1/1"), 1);
}

#[tokio::test]
async fn an_unreadable_pending_item_does_not_hold_back_the_duress_behind_it() {
    let f = faulty("unreadable").await;
    let t = armed(&f).await;
    f.h.fault("error", 0).await;
    let r = f.h.invoke(&disarm(&t, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"));
    f.h.fault("none", 0).await;
    // A damaged pending item, due before the duress.
    let endpoint = std::env::var("DYNAMODB_ENDPOINT").unwrap();
    let string = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.into());
    alarm_skill::adapters::store::dynamodb::local_client(&endpoint)
        .put_item()
        .table_name(&f.h.stack.table)
        .item("PK", string("OUTBOX#damaged"))
        .item("SK", string("OUTBOX"))
        .item("status", string("pending"))
        .item("GSI1PK", string("OUTBOX#PENDING"))
        .item("GSI1SK", string("2000-01-01T00:00:00.000000000Z#damaged"))
        .send()
        .await
        .unwrap();
    let report = f.h.stack.redeliver().await.unwrap();
    assert_eq!((report.unreadable, report.delivered), (1, 1), "{report:?}");
    assert_eq!(count(&f.h.signals().await, "121/1/1"), 1);
    // Still reported on the next pass: it is never dropped silently.
    let report = f.h.stack.redeliver().await.unwrap();
    assert_eq!((report.unreadable, report.delivered), (1, 0), "{report:?}");
}

/// The same store faults under Google's challenge: one `transientError` for every code (never
/// an `authFailure`), and the duress still relayed.
#[tokio::test]
async fn google_store_faults_answer_every_code_alike_and_still_relay_the_duress() {
    use support::google as g;
    let (n, d) = pair("google-faults").await;
    let mut replies = vec![];
    for (f, code) in [(&n, NORMAL), (&d, DURESS)] {
        armed(f).await;
        f.proxy.set("TransactWriteItems", Fault::Reset);
        replies.push(g::normalize(
            &f.h.google(&f.account, &g::disarm("home", Some(code))).await,
        ));
        replies.push(g::normalize(
            &f.h.google(&f.account, &g::disarm("home", Some("1357")))
                .await,
        ));
        f.proxy.clear();
        // A stopped store: no code can be checked, the same answer again.
        f.proxy.set("*", Fault::Reset);
        let t = f.h.token(&f.account).await;
        let (status, r) =
            f.h.google_as(Some(&t), &g::disarm("home", Some(code)))
                .await;
        assert_eq!(status, 200, "an outage is not an auth failure: {r}");
        replies.push(g::normalize(&r));
        f.proxy.clear();
    }
    assert_eq!(
        g::outcome(&replies[0]),
        "transientError",
        "{:?}",
        replies[0]
    );
    for r in &replies[1..] {
        assert_eq!(*r, replies[0]);
    }
    for f in [&n, &d] {
        assert_eq!(f.h.panel("home").await["arm_state"], "armed_away");
        let ops = f.h.requests_for("home").await;
        assert!(!ops.contains(&"disarm".to_string()), "{ops:?}");
    }
    assert_eq!(count(&n.h.signals().await, "121/"), 0);
    assert_eq!(count(&d.h.signals().await, "121/1/1"), 1);
    assert_eq!(audit(&n).await, audit(&d).await);
}

#[tokio::test]
async fn google_link_writes_that_fail_are_transient_and_a_failed_read_still_reports() {
    use support::google as g;
    let f = faulty("google-link").await;
    let account = f.account.as_str();
    let t = f.h.token(account).await;
    // SYNC can't record the link: transientError, so Google retries; never an authFailure.
    f.proxy.set("DeleteItem", Fault::Reset);
    let (status, r) = f.h.google_as(Some(&t), &g::sync()).await;
    f.proxy.clear();
    assert!(f.proxy.seen("DeleteItem") > 0);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["payload"]["errorCode"], "transientError", "{r}");
    // DISCONNECT likewise, and the household stays linked.
    f.proxy.set("PutItem", Fault::Reset);
    let (status, r) = f.h.google_as(Some(&t), &g::disconnect()).await;
    f.proxy.clear();
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["payload"]["errorCode"], "transientError", "{r}");
    assert!(f.h.stack.store.google_linked(account).await.unwrap());

    // The link can't be read: the change is reported anyway (an outage must not silence a
    // linked household).
    let reads = f.proxy.seen("GetItem");
    f.proxy.set("GetItem", Fault::Reset);
    f.h.post(
        "/sim/panels/home/zones/front-door/open",
        serde_json::json!({}),
    )
    .await;
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while f.h.stack.dev_google.reports().is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.proxy.clear();
    assert!(
        f.proxy.seen("GetItem") > reads,
        "the webhook did try to read the link"
    );
    let reports = f.h.stack.dev_google.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["agentUserId"], account);

    // With the store back, DISCONNECT is recorded.
    let (_, r) = f.h.google_as(Some(&t), &g::disconnect()).await;
    assert_eq!(r, serde_json::json!({}));
    assert!(!f.h.stack.store.google_linked(account).await.unwrap());
}

/// What the store does while the panel cloud is slower than the whole budget.
#[derive(Clone, Copy, Debug)]
enum StoreUnder {
    /// Answers: the decision is recorded well within its share of a 7 s budget.
    Fine,
    /// The decision's write hangs past the function's timeout: it can't be recorded.
    WriteHung,
    /// The household read hangs past the function's timeout: no code can be checked.
    ReadHung,
}

/// One slow-cloud disarm on `f`: armed, the panel cloud slowed to 9 s a call (it processes the
/// call, then answers late), the store as `store` says. `stale` lets the panel's confirmation
/// age past OWNERSHIP_TTL first (the attempt is held); `earlier` makes a normal disarm first,
/// as in the crash-points test where the duress came second on the same panel.
async fn under_slow_cloud(
    f: &Faulty,
    code: &str,
    store: StoreUnder,
    stale: bool,
    earlier: bool,
) -> Value {
    armed(f).await;
    if stale {
        f.h.advance(8 * 24 * 3600).await;
    }
    let t = f.h.token(&f.account).await;
    f.h.fault("slow", 9_000).await;
    if earlier {
        let r = f.h.invoke(&disarm(&t, "home", Some(NORMAL))).await;
        assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
    }
    let hang = Fault::Delay(Duration::from_secs(8));
    match store {
        StoreUnder::Fine => {}
        StoreUnder::WriteHung => f.proxy.set("TransactWriteItems", hang),
        StoreUnder::ReadHung => f.proxy.set("Query", hang),
    }
    let r = f.h.invoke(&disarm(&t, "home", Some(code))).await;
    f.proxy.clear();
    f.h.fault("none", 0).await;
    r
}

/// The panel cloud slower than the function's whole timeout (the crash-points test's 9 s cloud),
/// under every store outcome that can follow, with the confirmation fresh or stale and after an
/// earlier attempt or not: a duress and a normal code get the very same reply each time, an
/// outage is never a credential error, and an attempt that can't be recorded is answered alike.
/// The timings are far from the deadlines (a 9 s cloud and 8 s store hangs against 3 s and 7 s
/// budgets; a fine store gets seconds for two calls), so load can't change an outcome. Under a
/// 3 s timeout the same branches are taken, but the store's share of the budget is about 1 s
/// (a third goes to the ownership check, 0.8 s is kept for the panel call): load decides which
/// of the first two outcomes a run gets, never the kind of code.
#[tokio::test]
async fn a_cloud_slower_than_the_budget_answers_both_kinds_alike_whatever_the_store_does() {
    use StoreUnder::*;
    const ALEXA: Duration = Duration::from_secs(7);
    const SHORT: Duration = Duration::from_secs(3);
    let cases = [
        (Fine, false, false, ALEXA, "BRIDGE_UNREACHABLE"),
        (Fine, false, true, ALEXA, "BRIDGE_UNREACHABLE"),
        (Fine, true, false, ALEXA, "BRIDGE_UNREACHABLE"),
        (WriteHung, false, false, SHORT, "INTERNAL_ERROR"),
        // The earlier attempt needs its store: the whole budget, as for a fine store.
        (WriteHung, false, true, ALEXA, "INTERNAL_ERROR"),
        (WriteHung, true, false, SHORT, "INTERNAL_ERROR"),
        (ReadHung, false, false, SHORT, "INTERNAL_ERROR"),
    ];
    for (i, (store, stale, earlier, budget, expected)) in cases.into_iter().enumerate() {
        let case = format!("{store:?}, stale {stale}, earlier {earlier}, {budget:?}");
        let (a, b) = (format!("slow-cloud-{i}-n"), format!("slow-cloud-{i}-d"));
        let (n, d) = tokio::join!(
            faulty_within(&a, Some(budget)),
            faulty_within(&b, Some(budget))
        );
        // Side by side: each stack is its own, and the timings are far from any deadline.
        let (rn, rd) = tokio::join!(
            under_slow_cloud(&n, NORMAL, store, stale, earlier),
            under_slow_cloud(&d, DURESS, store, stale, earlier)
        );
        eprintln!(
            "{case}: normal {:?}, duress {:?}",
            error_type(&rn),
            error_type(&rd)
        );
        assert_eq!(error_type(&rn), Some(expected), "{case}: {rn}");
        assert_eq!(normalize(&rn), normalize(&rd), "{case}: normal vs duress");
        // The cloud processed the calls it was sent (it only answered late): where the attempt
        // reached it, a disarm or a signal, the duress raised its silent alarm, once.
        if !stale && !matches!(store, ReadHung) {
            assert_eq!(count(&n.h.signals().await, "121/"), 0, "{case}");
            assert_eq!(count(&d.h.signals().await, "121/1/1"), 1, "{case}");
        }
    }
}
