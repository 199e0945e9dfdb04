//! The voice duress PIN, end to end through the local stack (duress-domain.md, Conclusions 3).
//!
//! Most tests run the same script on two identical stacks: one says Alex's voice PIN (4729),
//! the other Alex's duress PIN (8361). Everything an intruder could observe must come out
//! identical; only the monitoring receiver may differ, by exactly one Contact ID 121.

use crate::support;

use std::time::Duration;

use alarm_skill::common::secret::Pin;
use alarm_skill::domain::voice_codes::{Keyring, verify};
use serde_json::{Value, json};
use support::stack::*;

const NORMAL: &str = "4729";
const DURESS: &str = "8361";

/// Puts the panel in one of the states duress must work in.
async fn setup(h: &Harness, state: &str) {
    let t = h.token("demo").await;
    match state {
        "disarmed" => {}
        "armed_stay" | "armed_night" => {
            let mode = state.to_uppercase();
            h.invoke(&arm(&t, "home", &mode)).await;
            h.advance(60).await;
        }
        _ => {
            h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
            after_arming_away(h, state).await;
        }
    }
}

/// A demo token, once the panel is armed away with it (the exit delay still running).
async fn armed_away(h: &Harness) -> String {
    let t = h.token("demo").await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    t
}

/// Every state duress must work in.
const STATES: [&str; 7] = [
    "disarmed",
    "exit_delay",
    "armed_stay",
    "armed_night",
    "armed_away",
    "entry_delay",
    "alarm",
];

#[tokio::test]
async fn duress_looks_exactly_like_a_normal_disarm_in_every_state() {
    for state in STATES {
        let (n, d) = pair().await;
        setup(&n, state).await;
        setup(&d, state).await;
        let before_n = n.settled_gateway_events().await.len();
        let before_d = d.settled_gateway_events().await.len();
        let echo_before = settled(|| n.stack.dev_echo.updates()).await.len();
        let signals_before = n.signals().await;
        assert_eq!(
            signals_before,
            d.signals().await,
            "{state}: same history before"
        );

        let (tn, td) = (n.token("demo").await, d.token("demo").await);
        let rn = n.invoke(&disarm(&tn, "home", Some(NORMAL))).await;
        let rd = d.invoke(&disarm(&td, "home", Some(DURESS))).await;

        // 1. The reply: identical after normalising messageId, correlationToken, timeOfSample.
        assert_eq!(rn["event"]["header"]["name"], "Response", "{state}: {rn}");
        assert_eq!(normalize(&rn), normalize(&rd), "{state}: replies differ");
        assert_eq!(
            normalize(&rn).to_string().len(),
            normalize(&rd).to_string().len()
        );

        // 2. Later state reports, and the ChangeReports the webhook sent to Alexa.
        let sn = n.invoke(&report_state(&tn, "home")).await;
        let sd = d.invoke(&report_state(&td, "home")).await;
        assert_eq!(
            normalize(&sn),
            normalize(&sd),
            "{state}: state reports differ"
        );
        let raw_n = n.settled_gateway_events().await[before_n..].to_vec();
        let raw_d = d.settled_gateway_events().await[before_d..].to_vec();
        for e in raw_n.iter().chain(&raw_d) {
            support::record_message("ChangeReport-after-disarm", e);
        }
        let cn: Vec<Value> = raw_n.iter().map(normalize).collect();
        let cd: Vec<Value> = raw_d.iter().map(normalize).collect();
        assert_eq!(cn, cd, "{state}: change reports differ");
        if state != "disarmed" {
            assert!(
                !cn.is_empty(),
                "{state}: the disarm produced a ChangeReport"
            );
            assert_eq!(
                cn[0]["event"]["payload"]["change"]["cause"]["type"],
                "VOICE_INTERACTION"
            );
        }

        // 3. What every Echo of the household plays: the same alerts start and stop, byte for
        // byte once times are normalised, over the whole session.
        let (en, ed) = (
            settled(|| n.stack.dev_echo.updates()).await,
            settled(|| d.stack.dev_echo.updates()).await,
        );
        let (en, ed): (Vec<Value>, Vec<Value>) = (
            en.iter().map(normalize).collect(),
            ed.iter().map(normalize).collect(),
        );
        assert_eq!(en, ed, "{state}: echo alerts differ");
        assert_eq!(
            serde_json::to_string(&en).unwrap(),
            serde_json::to_string(&ed).unwrap()
        );
        let stopped = match state {
            "exit_delay" => vec![json!(["exit delay stopped"])],
            "entry_delay" => vec![json!(["entry delay stopped"])],
            "alarm" => vec![json!(["siren stopped"])],
            _ => vec![],
        };
        let by_disarm: Vec<Value> = en[echo_before..]
            .iter()
            .map(|u| u["says"].clone())
            .collect();
        assert_eq!(by_disarm, stopped, "{state}: what the disarm stopped");

        // 4. The monitoring center: one 121 for Alex (user 1) on duress, never on normal.
        let (sig_n, sig_d) = (n.signals().await, d.signals().await);
        assert_eq!(count(&sig_n, "121/"), 0, "{state}: {sig_n:?}");
        assert_eq!(count(&sig_d, "121/"), 1, "{state}: {sig_d:?}");
        assert!(sig_d.contains(&"121/1/1".to_string()), "{state}: {sig_d:?}");
        let without_duress: Vec<&String> =
            sig_d.iter().filter(|s| !s.starts_with("121/")).collect();
        if state == "alarm" {
            // Inside the abort window: the normal disarm aborts the burglary report, the duress
            // disarm aborts nothing; neither sends a cancel (cancel is not disarm).
            assert_eq!(count(&sig_n, "130/"), 0, "{sig_n:?}");
            assert_eq!(count(&sig_d, "130/"), 1, "{sig_d:?}");
            assert_eq!(count(&sig_n, "406/") + count(&sig_d, "406/"), 0);
        } else {
            assert_eq!(sig_n.iter().collect::<Vec<_>>(), without_duress, "{state}");
        }

        // 5. The household's own views: audit log, app notifications, throttle counters.
        assert_eq!(
            n.audit_log().await,
            d.audit_log().await,
            "{state}: audit differs"
        );
        assert_eq!(
            notifications(&n).await,
            notifications(&d).await,
            "{state}: notifications differ"
        );
        assert_eq!(lockout(&n).await, lockout(&d).await, "{state}");
        let entries = d.audit_log().await;
        assert_eq!(
            entries["entries"][0]["message"], "Alex disarmed Home by voice",
            "{state}"
        );
        assert!(!entries.to_string().to_lowercase().contains("duress"));

        // The panel really disarmed, in both.
        assert_eq!(n.panel("home").await["arm_state"], "disarmed");
        assert_eq!(d.panel("home").await["arm_state"], "disarmed");
    }
}

#[tokio::test]
async fn twenty_wrong_pins_escalate_and_every_refusal_is_identical() {
    let (h, t) = Harness::demo().await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    let mut replies = vec![];
    let mut lockouts_seen = vec![];
    for i in 0..20 {
        let r = h.invoke(&disarm(&t, "home", Some("1357"))).await;
        assert_eq!(error_type(&r), Some("UNAUTHORIZED"), "attempt {i}");
        replies.push(normalize(&r));
        let l = lockout(&h).await;
        if l["locked"] == true {
            lockouts_seen.push(l["consecutive_failures"].as_u64().unwrap());
            // While locked, even the right code gets the very same refusal.
            let right = h.invoke(&disarm(&t, "home", Some(NORMAL))).await;
            assert_eq!(normalize(&right), replies[0], "attempt {i}");
            assert_eq!(h.panel("home").await["arm_state"], "armed_away");
            if l["hard_locked"] == false {
                h.advance(3_601).await;
            }
        }
    }
    assert!(
        replies.iter().all(|r| *r == replies[0]),
        "every refusal identical"
    );
    assert_eq!(lockouts_seen.first(), Some(&3));
    let l = lockout(&h).await;
    assert_eq!(l["hard_locked"], true);
    assert_eq!(
        l["consecutive_failures"], 10,
        "attempts during a lockout are not counted"
    );
    // Escalation: 90 s, 15 min, 1 h, then hard lock.
    assert_eq!(
        lockout_notices(&h).await,
        [
            "Voice disarm locked for 90 seconds after 3 wrong voice codes in a row",
            "Voice disarm locked for 15 minutes after 6 wrong voice codes in a row",
            "Voice disarm locked for 1 hour after 9 wrong voice codes in a row",
            "Voice disarm locked after 10 wrong voice codes in a row; the household admin must reset it",
        ]
    );
    let log = h.audit_log().await.to_string();
    assert!(log.contains("the household admin must reset it"));
    // A hard lock outlasts any wait; only the admin lifts it.
    h.advance(86_400 * 30).await;
    assert_eq!(
        error_type(&h.invoke(&disarm(&t, "home", Some(NORMAL))).await),
        Some("UNAUTHORIZED")
    );
    let admin = h.admin_token("demo").await;
    let (status, after) = h
        .api("POST", "/v1/household/lockout/reset", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(after["locked"], false);
    let r = h.invoke(&disarm(&t, "home", Some(NORMAL))).await;
    assert_eq!(r["event"]["header"]["name"], "Response");
}

#[tokio::test]
async fn duress_keeps_the_counters_exactly_as_a_normal_pin_would_in_both_orders() {
    // (a) two wrong codes, then the code.
    let (n, d) = (Harness::start().await, Harness::start().await);
    for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = armed_away(h).await;
        for _ in 0..2 {
            h.invoke(&disarm(&t, "home", Some("1357"))).await;
        }
        h.invoke(&disarm(&t, "home", Some(code))).await;
    }
    assert_eq!(lockout(&n).await, lockout(&d).await);
    assert_eq!(lockout(&n).await["consecutive_failures"], 0);

    // (b) the code, then two wrong codes.
    let (n, d) = (Harness::start().await, Harness::start().await);
    for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = h.token("demo").await;
        h.invoke(&disarm(&t, "home", Some(code))).await;
        for _ in 0..2 {
            h.invoke(&disarm(&t, "home", Some("1357"))).await;
        }
    }
    assert_eq!(lockout(&n).await, lockout(&d).await);
    assert_eq!(lockout(&n).await["consecutive_failures"], 2);
    assert_eq!(n.audit_log().await, d.audit_log().await);
}

#[tokio::test]
async fn duress_during_a_lockout_gets_the_lockout_reply_and_still_raises_the_silent_alarm() {
    let (n, d) = (Harness::start().await, Harness::start().await);
    let mut replies = vec![];
    for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = armed_away(h).await;
        h.advance(60).await;
        for _ in 0..3 {
            h.invoke(&disarm(&t, "home", Some("1357"))).await;
        }
        assert_eq!(lockout(h).await["locked"], true);
        replies.push(h.invoke(&disarm(&t, "home", Some(code))).await);
    }
    assert_eq!(error_type(&replies[0]), Some("UNAUTHORIZED"));
    assert_eq!(normalize(&replies[0]), normalize(&replies[1]));
    assert_eq!(
        lockout(&n).await,
        lockout(&d).await,
        "counters untouched by either"
    );
    // The panel stays armed in both; the monitoring center got the duress, for Alex.
    assert_locked_out_alike_but_for_the_duress(&n, &d).await;
}

#[tokio::test]
async fn a_duress_during_a_panel_fault_is_delivered_exactly_once_after_recovery() {
    // "slow": the cloud processes the disarm but answers after the deadline. With a 4 s budget
    // (3.7 s usable) and 3 s per call, the ownership check gives up after its third (1.2 s) and
    // the disarm, processed, replies 0.5 s too late.
    for (mode, delay_ms, processed, budget_ms) in [
        ("down", 0, false, 1_500),
        ("error", 0, false, 1_500),
        // A 404 that isn't the contract's `panel_not_found` (a gateway's) is an outage too.
        ("not_found", 0, false, 1_500),
        ("timeout", 4_000, false, 1_500),
        ("slow", 3_000, true, 4_000),
    ] {
        let opts = || alarm_skill::local::Options {
            directive_budget: Some(Duration::from_millis(budget_ms)),
            ..test_options()
        };
        let (n, d) = (
            Harness::start_with(opts()).await,
            Harness::start_with(opts()).await,
        );
        let mut replies = vec![];
        for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
            let t = armed_away(h).await;
            h.advance(60).await;
            h.fault(mode, delay_ms).await;
            replies.push(h.invoke(&disarm(&t, "home", Some(code))).await);
        }
        assert_eq!(
            error_type(&replies[0]),
            Some("BRIDGE_UNREACHABLE"),
            "{mode}"
        );
        assert_eq!(
            normalize(&replies[0]),
            normalize(&replies[1]),
            "{mode}: replies differ"
        );
        assert_eq!(n.audit_log().await, d.audit_log().await, "{mode}");

        // Recovery: let a slow reply finish, clear the fault, run the re-delivery worker twice.
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        for h in [&n, &d] {
            recover_and_redeliver_twice(h).await;
        }
        assert_eq!(count(&n.signals().await, "121/"), 0, "{mode}");
        let sig = d.signals().await;
        assert_eq!(count(&sig, "121/"), 1, "{mode}: {sig:?}");
        assert!(sig.contains(&"121/1/1".to_string()));
        // The failed disarm is not replayed: both panels are where the fault left them.
        let expected = if processed { "disarmed" } else { "armed_away" };
        assert_eq!(n.panel("home").await["arm_state"], expected, "{mode}");
        assert_eq!(d.panel("home").await["arm_state"], expected, "{mode}");
        // Nothing left pending.
        let pending = alarm_skill::domain::ports::store::outbox_totals(d.stack.store.as_ref())
            .await
            .unwrap();
        assert_eq!(
            pending,
            alarm_skill::domain::ports::store::OutboxCounts::default(),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn a_store_dump_holds_no_pin_and_cannot_be_checked_without_the_pepper() {
    let (h, t) = Harness::demo().await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.invoke(&disarm(&t, "home", Some(NORMAL))).await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.invoke(&disarm(&t, "home", Some(DURESS))).await;
    h.invoke(&disarm(&t, "home", Some("1357"))).await;
    let dump = store_dump(&h).await;
    let text = dump.to_string();
    assert!(text.contains("alex"), "the dump holds the household");
    let tokens: Vec<&str> = text.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    for pin in [NORMAL, DURESS, "1357"] {
        assert!(!tokens.contains(&pin), "{pin} stored in clear");
    }
    // The two outbox records (normal and duress) have the same shape and size.
    let outbox = outbox_records(&dump);
    assert_eq!(outbox.len(), 2);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&outbox[0]), keys(&outbox[1]));
    assert_eq!(
        outbox[0]["seal"].as_str().unwrap().len(),
        outbox[1]["seal"].as_str().unwrap().len()
    );

    // Offline guessing: all 10,000 PINs against the dump, with and without the pepper.
    let profile = h.stack.store.household("demo").await.unwrap().profile;
    let guess = |k: &Keyring| -> Vec<String> {
        (0..10_000)
            .map(|n| format!("{n:04}"))
            .filter(|p| verify(k, "demo", &profile, &Pin::new(p.clone())).is_some())
            .collect()
    };
    assert_eq!(
        guess(&h.stack.keyring),
        [NORMAL, DURESS],
        "with the pepper: exactly the codes"
    );
    assert!(guess(&Keyring::random()).is_empty(), "without it: nothing");
}

#[tokio::test]
async fn disarm_without_a_pin_follows_the_household_policy() {
    let (h, t) = Harness::demo().await;
    let admin = h.admin_token("demo").await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    // Default: voice codes are enrolled, so a PIN-less disarm (Alexa-managed PIN) is refused.
    let r = h.invoke(&disarm(&t, "home", None)).await;
    assert_eq!(error_type(&r), Some("UNAUTHORIZED"));
    assert_eq!(h.panel("home").await["arm_state"], "armed_away");
    assert_eq!(
        lockout(&h).await["consecutive_failures"],
        0,
        "not a wrong guess"
    );
    let (status, _) = h
        .put_settings(&admin, json!({"pinless_disarm": "allow"}))
        .await;
    assert_eq!(status, 200);
    let r = h.invoke(&disarm(&t, "home", None)).await;
    assert_eq!(r["event"]["header"]["name"], "Response");
    assert_eq!(property(&r, "armState"), "DISARMED");
    assert_eq!(count(&h.signals().await, "121/"), 0);
    let (_, s) = h
        .put_settings(&admin, json!({"pinless_disarm": "never"}))
        .await;
    assert_eq!(s["error"], "bad_request");
}

/// The rich household with every code deleted but, when `keep_duress`, Alex's duress PIN: the
/// app then shows "not set" for everyone in both. Then a PIN-less Disarm (an Alexa-managed PIN)
/// under the default policy: its reply, the audit lines it wrote (newest first) and the panel's
/// state after it, normalized.
async fn pinless_disarm_with(keep_duress: bool) -> (Value, Vec<Value>, Value) {
    let (h, admin) = Harness::rich_admin().await;
    let mut slots = vec![("alex", "voice-pin"), ("sam", "voice-pin")];
    if !keep_duress {
        slots.push(("alex", "duress-pin"));
    }
    for (member, slot) in slots {
        let path = format!("/v1/household/members/{member}/{slot}");
        let (s, body) = h.api("DELETE", &path, Some(&admin), None).await;
        assert_eq!(s, 204, "{path}: {body}");
    }
    let (_, members) = h
        .api("GET", "/v1/household/members", Some(&admin), None)
        .await;
    assert!(
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["has_voice_pin"] == false),
        "{members}"
    );
    let t = h.token("demo").await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    let before = h.audit_as(&admin).await.1["entries"]
        .as_array()
        .unwrap()
        .len();
    let reply = h.invoke(&disarm(&t, "home", None)).await;
    let audit = h.audit_as(&admin).await.1["entries"]
        .as_array()
        .unwrap()
        .clone();
    let written = audit[..audit.len() - before]
        .iter()
        .map(normalize)
        .collect();
    (
        normalize(&reply),
        written,
        h.panel("home").await["arm_state"].clone(),
    )
}

#[tokio::test]
async fn a_pinless_disarm_answers_the_same_with_only_a_duress_pin_as_with_no_code() {
    let ((duress_reply, _, duress_state), (none_reply, _, none_state)) =
        tokio::join!(pinless_disarm_with(true), pinless_disarm_with(false));
    // The rule counts voice PINs, which the app shows; never duress PINs, which it doesn't.
    assert_eq!(duress_reply, none_reply);
    assert_eq!(property(&duress_reply, "armState"), "DISARMED");
    assert_eq!(
        (duress_state, none_state),
        (json!("disarmed"), json!("disarmed"))
    );
}

#[tokio::test]
async fn a_pinless_disarm_is_audited_the_same_with_only_a_duress_pin_as_with_no_code() {
    let ((_, duress_audit, _), (_, none_audit, _)) =
        tokio::join!(pinless_disarm_with(true), pinless_disarm_with(false));
    assert_eq!(duress_audit, none_audit);
    // A refused PIN-less disarm is audited without a word about which codes exist.
    let (h, admin) = Harness::rich_admin().await;
    let (s, _) = h
        .put_settings(&admin, json!({"pinless_disarm": "refuse"}))
        .await;
    assert_eq!(s, 200);
    let t = h.token("demo").await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    let r = h.invoke(&disarm(&t, "home", None)).await;
    assert_eq!(error_type(&r), Some("UNAUTHORIZED"));
    let (_, audit) = h.audit_as(&admin).await;
    let line = audit["entries"][0]["message"].as_str().unwrap().to_string();
    assert!(
        line.starts_with("Voice disarm refused: no voice code"),
        "{line}"
    );
    for leak in ["PIN", "existing", "duress", "enrolled"] {
        assert!(!line.contains(leak), "{line} mentions {leak}");
    }
}

/// The outbox records of a stack, with what differs per record (ids, times, sealed bytes)
/// replaced by its shape: what a store dump shows of them.
async fn outbox_shapes(h: &Harness) -> Vec<Value> {
    let mut shapes: Vec<Value> = outbox_records(&store_dump(h).await)
        .iter()
        .map(|r| {
            let mut m = r.as_object().unwrap().clone();
            for (k, v) in m.iter_mut() {
                let keep = [
                    "status",
                    "attempts",
                    "household",
                    "panel",
                    "PK",
                    "SK",
                    "GSI1PK",
                ];
                if !keep.contains(&k.as_str()) {
                    *v = json!(format!("<{} chars>", v.to_string().len()));
                }
                if k == "PK" {
                    *v = json!("OUTBOX#<id>");
                }
            }
            Value::Object(m)
        })
        .collect();
    shapes.sort_by_key(|v| v.to_string());
    shapes
}

#[tokio::test]
async fn after_failed_panel_calls_the_outbox_shows_nothing_of_the_kind() {
    // Per stack: a disarm during a panel fault, then three wrong codes and the same code during
    // the lockout with the panel still failing, then recovery and re-delivery.
    let (n, d) = (Harness::start().await, Harness::start().await);
    for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = armed_away(h).await;
        h.advance(60).await;
        h.fault("error", 0).await;
        let r = h.invoke(&disarm(&t, "home", Some(code))).await;
        assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"));
        for _ in 0..3 {
            h.invoke(&disarm(&t, "home", Some("1357"))).await;
        }
        assert_eq!(lockout(h).await["locked"], true);
        // During the lockout every attempt leaves a record: a right code and a wrong one alike.
        h.invoke(&disarm(&t, "home", Some(code))).await;
        h.invoke(&disarm(&t, "home", Some("1357"))).await;
    }
    let (pending_n, pending_d) = (outbox_shapes(&n).await, outbox_shapes(&d).await);
    assert_eq!(pending_n.len(), 3, "{pending_n:#?}");
    assert_eq!(pending_n, pending_d, "pending records differ");
    // Within one stack too: the lockout's right-code and wrong-code records look the same.
    assert!(pending_d.iter().all(|r| {
        r.as_object()
            .unwrap()
            .keys()
            .eq(pending_d[0].as_object().unwrap().keys())
    }));

    for h in [&n, &d] {
        h.fault("none", 0).await;
        h.advance(60).await;
        let report = h.stack.redeliver().await.unwrap();
        assert_eq!((report.delivered, report.retrying), (3, 0), "{report:?}");
    }
    let (done_n, done_d) = (outbox_shapes(&n).await, outbox_shapes(&d).await);
    assert_eq!(done_n, done_d, "settled records differ");
    assert!(
        done_d
            .iter()
            .all(|r| r["status"] == "delivered" && r["attempts"].to_string().contains('1')),
        "{done_d:#?}"
    );
    // ...while the monitoring center got both duress attempts, and nothing for the normal ones.
    assert_eq!(count(&n.signals().await, "121/"), 0);
    assert_eq!(count(&d.signals().await, "121/1/1"), 2);
}

#[tokio::test]
async fn a_duress_for_a_panel_that_left_the_account_stays_pending_and_raises_the_backlog() {
    let (n, d) = (Harness::start().await, Harness::start().await);
    for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = armed_away(h).await;
        h.fault("error", 0).await;
        h.invoke(&disarm(&t, "home", Some(code))).await;
        h.fault("none", 0).await;
        // The household cancels; the cloud now answers panel_not_found for it.
        let r = h
            .http
            .delete(format!("{}/sim/panels/home", h.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    // On its own lane from the first pass on: out of the backlog, counted as gone (its own
    // metric and alarm), tried again hourly, never closed.
    for pass in 0..4 {
        for h in [&n, &d] {
            if pass > 0 {
                // Not due again before its hour.
                h.advance(1800).await;
                let report = h.stack.redeliver().await.unwrap();
                assert_eq!((report.examined, report.gone), (0, 1), "{report:?}");
            }
            h.advance(if pass == 0 { 301 } else { 1801 }).await;
            let report = h.stack.redeliver().await.unwrap();
            assert_eq!(
                (
                    report.examined,
                    report.moved_gone,
                    report.retrying,
                    report.backlog,
                    report.gone
                ),
                (1, 1, 0, 0, 1),
                "pass {pass}: {report:?}"
            );
        }
    }
    // Never closed, attempts counted, and the same for both kinds.
    let (shape_n, shape_d) = (outbox_shapes(&n).await, outbox_shapes(&d).await);
    assert_eq!(shape_n, shape_d);
    assert_eq!(shape_d[0]["status"], "pending");
    let attempts = |v: &Value| {
        v["attempts"]
            .to_string()
            .trim_matches('"')
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(attempts(&shape_d[0]), 5, "{shape_d:?}");
}

/// Sixteen disarms at once for one armed household, `other` and the duress PIN in turn.
async fn armed_burst(other: &'static str) -> (Harness, Vec<&'static str>, Vec<Value>) {
    // Alexa's own budget: sixteen racing transactions on a busy 2-core machine need more than the
    // shortened one of the other tests.
    let h = Harness::start_with(alarm_skill::local::Options {
        directive_budget: None,
        ..test_options()
    })
    .await;
    let t = armed_away(&h).await;
    h.advance(60).await;
    let codes: Vec<&'static str> = (0..16)
        .map(|i| if i % 2 == 0 { other } else { DURESS })
        .collect();
    let directives: Vec<Value> = codes.iter().map(|c| disarm(&t, "home", Some(c))).collect();
    let replies = futures::future::join_all(directives.iter().map(|d| h.invoke(d))).await;
    (h, codes, replies)
}

#[tokio::test]
async fn a_burst_of_parallel_disarms_for_one_household_relays_every_duress() {
    let (h, codes, replies) = armed_burst(NORMAL).await;
    for (r, c) in replies.iter().zip(&codes) {
        assert_eq!(r["event"]["header"]["name"], "Response", "{c}: {r}");
    }
    // Every duress reached the monitoring center, each once (its own request id), and the
    // worker finds nothing left to re-send.
    assert_eq!(count(&h.signals().await, "121/1/1"), 8);
    h.advance(60).await;
    let report = h.stack.redeliver().await.unwrap();
    assert_eq!(report.retrying, 0, "{report:?}");
    assert_eq!(count(&h.signals().await, "121/1/1"), 8);
    assert_eq!(lockout(&h).await["consecutive_failures"], 0);
    let log = h.audit_log().await;
    let disarmed = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"] == "Alex disarmed Home by voice")
        .count();
    assert_eq!(disarmed, 16, "{log}");
}

#[tokio::test]
async fn the_lockout_notice_reads_the_clock_once() {
    // A running clock: between deciding and notifying, time moves on.
    let h = Harness::start_with(alarm_skill::local::Options {
        frozen_clock: false,
        ..test_options()
    })
    .await;
    let t = h.token("demo").await;
    for _ in 0..3 {
        h.invoke(&disarm(&t, "home", Some("1357"))).await;
    }
    assert_eq!(
        lockout_notices(&h).await,
        ["Voice disarm locked for 90 seconds after 3 wrong voice codes in a row"]
    );
}

#[tokio::test]
async fn re_delivery_passes_never_overlap() {
    let (h, t) = Harness::demo().await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.fault("error", 0).await;
    h.invoke(&disarm(&t, "home", Some(DURESS))).await;
    // A slow cloud keeps the first pass busy while the second starts.
    h.fault("slow", 400).await;
    let before = h.requests_for("home").await.len();
    let (a, b) = tokio::join!(h.stack.redeliver(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.stack.redeliver().await
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.examined, a.delivered, a.skipped), (1, 1, false), "{a:?}");
    // Each shard has its own lease: the second pass skipped the one still busy with the record
    // (and any the first had not finished yet, on a slow store), and ran the others.
    assert_eq!(b.examined, 0, "{b:?}");
    assert!(b.skipped_shards >= 1, "{b:?}");
    let signals_sent = h.requests_for("home").await[before..]
        .iter()
        .filter(|op| *op == "signal")
        .count();
    assert_eq!(signals_sent, 1);
    // The lease is given back: the next pass runs (and finds nothing).
    let c = h.stack.redeliver().await.unwrap();
    assert!(!c.skipped, "{c:?}");
    assert_eq!(count(&h.signals().await, "121/1/1"), 1);
}

#[tokio::test]
async fn a_burst_of_wrong_codes_and_duress_codes_raises_every_duress_and_opens_no_way_round() {
    let (h, codes, replies) = armed_burst("1357").await;
    for (r, c) in replies.iter().zip(&codes) {
        let outcome = error_type(r).unwrap_or("SUCCESS");
        // A wrong code is never a success, whatever the race; a duress is relayed however
        // the race ends for it (disarmed, refused as locked, or unrecorded).
        let allowed: &[&str] = if *c == DURESS {
            &["SUCCESS", "UNAUTHORIZED", "INTERNAL_ERROR"]
        } else {
            &["UNAUTHORIZED", "INTERNAL_ERROR"]
        };
        assert!(allowed.contains(&outcome), "{c}: {r}");
    }
    assert_eq!(count(&h.signals().await, "121/1/1"), 8);
    h.advance(60).await;
    let report = h.stack.redeliver().await.unwrap();
    assert_eq!(report.retrying, 0, "{report:?}");
    assert_eq!(count(&h.signals().await, "121/1/1"), 8, "each exactly once");
}

/// Issue 24, regression 1: a household that armed by voice and asked its state, but had not
/// discovered or disarmed by voice for 8 days, said its duress PIN while the panel cloud was
/// down, and got INTERNAL_ERROR, no outbox record, no 121 ever: the panel's confirmation had
/// run out. Arm and ReportState are the cloud's word that the account holds the panel, so they
/// renew it; the attempt is recorded as on any outage and the worker delivers it.
#[tokio::test]
async fn a_duress_said_in_an_outage_a_week_after_the_last_discovery_still_reaches_the_center() {
    let (n, d) = pair().await;
    let mut replies = vec![];
    for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = h.token("demo").await;
        h.advance(691_200).await;
        h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
        let state = h.invoke(&report_state(&t, "home")).await;
        assert_eq!(state["event"]["header"]["name"], "StateReport", "{state}");
        h.fault("down", 0).await;
        replies.push(h.invoke(&disarm(&t, "home", Some(code))).await);
        h.fault("none", 0).await;
        h.stack.redeliver().await.unwrap();
    }
    assert_same_error_reply(&replies, "BRIDGE_UNREACHABLE");
    assert_one_duress_signal(&n, &d).await;
    assert_eq!(n.audit_log().await, d.audit_log().await);
    for h in [&n, &d] {
        assert_nothing_pending(h).await;
    }
}

/// The directive's metrics line, without what differs between any two directives.
fn last_metrics_line(h: &Harness) -> Value {
    let lines = h
        .stack
        .metrics
        .as_ref()
        .expect("metrics on")
        .lock()
        .unwrap();
    let mut v: Value = serde_json::from_str(lines.last().expect("a line")).unwrap();
    v["_aws"]["Timestamp"] = Value::Null;
    v["DirectiveDuration"] = Value::Null;
    v
}

/// When nothing renewed the confirmation for a week (no discovery, no arm, no state asked) and
/// the cloud can't be asked, the attempt is held instead of dropped: the same reply, writes,
/// audit, counters and metrics for both codes, nothing sent to the cloud; once the cloud
/// answers, the worker confirms the panel and signals, and the duress raises its one 121.
#[tokio::test]
async fn a_duress_held_for_a_stale_confirmation_looks_like_a_normal_code_and_is_delivered_once() {
    let opts = || alarm_skill::local::Options {
        config: alarm_skill::local::demo::DemoConfig::demo(),
        metrics: true,
        ..test_options()
    };
    let (n, d) = tokio::join!(Harness::start_with(opts()), Harness::start_with(opts()));
    let mut replies = vec![];
    let mut metrics = vec![];
    for (h, code) in [(&n, NORMAL), (&d, DURESS)] {
        let t = armed_away(h).await;
        h.advance(60).await;
        // The webhooks about the exit delay done, so their calls count in no directive's line.
        h.settled_gateway_events().await;
        // The last word of the cloud about the panel is 8 days old (the webhooks about the
        // exit delay renewed it just now: set it back).
        h.fault("down", 0).await;
        let now = alarm_skill::common::clock::Clock::now(h.stack.clock.as_ref());
        let panels = [alarm_skill::domain::ports::store::ConfirmedPanel::id_only(
            "home",
        )];
        let week_ago = now - chrono::Duration::seconds(691_200);
        h.stack
            .store
            .confirm_panels("demo", &panels, week_ago)
            .await
            .unwrap();
        replies.push(h.invoke(&disarm(&t, "home", Some(code))).await);
        metrics.push(last_metrics_line(h));
    }
    // 1. The reply: the outage's, not a credential error, the same for both.
    assert_same_error_reply(&replies, "BRIDGE_UNREACHABLE");
    assert_eq!(metrics[0], metrics[1]);
    assert_eq!(metrics[0]["Outcome"], "BRIDGE_UNREACHABLE");
    // 2. The writes: one held record each, of the same shape and size; the same audit and
    // counters.
    let (dn, dd) = (store_dump(&n).await, store_dump(&d).await);
    let (on, od) = (outbox_records(&dn), outbox_records(&dd));
    assert_eq!((on.len(), od.len()), (1, 1));
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&on[0]), keys(&od[0]));
    for field in ["lane", "status", "attempts", "counted"] {
        assert_eq!(on[0][field], od[0][field], "{field}");
    }
    assert_eq!(on[0]["lane"], "held");
    assert_eq!(
        on[0]["seal"].as_str().unwrap().len(),
        od[0]["seal"].as_str().unwrap().len()
    );
    assert_eq!(on[0].to_string().len(), od[0].to_string().len());
    assert_eq!(n.audit_log().await, d.audit_log().await);
    assert_eq!(lockout(&n).await, lockout(&d).await);
    // Nothing went to the cloud for a panel it has not confirmed lately.
    assert!(sent_for(&n, "home").await.iter().all(|op| op == "arm"));
    assert!(sent_for(&d, "home").await.iter().all(|op| op == "arm"));

    // 3. The cloud answers again: the worker confirms the panel, then signals.
    for h in [&n, &d] {
        h.fault("none", 0).await;
        h.advance(60).await;
        h.stack.redeliver().await.unwrap();
        h.stack.redeliver().await.unwrap();
    }
    assert_one_duress_signal(&n, &d).await;
    assert_eq!(sent_for(&n, "home").await, sent_for(&d, "home").await);
    assert_eq!(sent_for(&d, "home").await, ["arm", "signal"]);
    // A held right code is never replayed as a disarm: both panels stay armed.
    assert_eq!(n.panel("home").await["arm_state"], "armed_away");
    assert_eq!(d.panel("home").await["arm_state"], "armed_away");
    assert_eq!(n.audit_log().await, d.audit_log().await);
    for h in [&n, &d] {
        assert_nothing_pending(h).await;
        let seen = h.stack.store.household("demo").await.unwrap().panels_seen;
        let now = alarm_skill::common::clock::Clock::now(h.stack.clock.as_ref());
        assert!(seen.get("home").is_some_and(|at| *at == now), "{seen:?}");
    }
}

/// The skill's log lines of a run, without what varies from run to run (times, ids, threads):
/// level, module, message and marker. The reference cloud's and center's lines (src/local, the
/// cloud's transmitter) are outside the skill, where a duress is meant to differ.
fn skill_log_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            let target = l["target"].as_str().unwrap_or("");
            target.starts_with("alarm_skill::")
                && !target.starts_with("alarm_skill::local")
                && !target.starts_with("alarm_skill::adapters::dc09::transmitter")
        })
        .map(|l| {
            format!(
                "{} {} {} {}",
                l["level"], l["target"], l["fields"]["message"], l["fields"]["marker"]
            )
        })
        .collect()
}

/// With the panel cloud failing, the second path is one more channel an intruder might watch:
/// a normal and a duress attempt leave the same reply, the same store writes (the outbox
/// record and whether the center ACKed), the same audit, the same skill log lines and DC-09
/// frames of one length. Only the center's event differs (350 or 121).
#[test]
fn the_second_path_looks_the_same_for_both_kinds() {
    let run = |code: &'static str| {
        let capture = support::logs::Capture::default();
        // With one scoped dispatcher alive, tracing computes a callsite's interest from the
        // default of whichever thread hits it first: another test's thread, which logs nowhere,
        // would switch our lines off. A second one makes it ask every dispatcher.
        let _second = tracing::Dispatch::new(tracing_subscriber::registry());
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(capture.clone())
            .finish();
        let seen = support::logs::run(subscriber.into(), 0, async move {
            let (h, t) = second_path_stack(4_000).await;
            h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
            h.advance(60).await;
            h.fault("error", 0).await;
            let reply = h.invoke(&disarm(&t, "home", Some(code))).await;
            let frames: Vec<(usize, String)> = h
                .stack
                .second_path
                .sent()
                .iter()
                .map(|f| (f.frame.len(), f.answer.clone()))
                .collect();
            // Times print with as many digits as they need: their length is the clock's.
            let mut shapes = outbox_shapes(&h).await;
            for s in shapes.iter_mut() {
                for time in ["created_at", "next_attempt_at"] {
                    if let Some(v) = s.get_mut(time) {
                        *v = json!("<time>");
                    }
                }
            }
            (normalize(&reply), frames, shapes, h.audit_log().await)
        });
        (seen, skill_log_lines(&capture.text()))
    };
    let (normal, normal_logs) = run(NORMAL);
    let (duress, duress_logs) = run(DURESS);
    assert_eq!(error_type(&normal.0), Some("BRIDGE_UNREACHABLE"));
    assert_eq!(
        normal.1,
        [(normal.1[0].0, "ACK".to_string())],
        "one frame, ACKed"
    );
    assert_eq!(normal, duress);
    assert!(
        normal_logs.iter().any(|l| l.contains("second_path_acked")),
        "{normal_logs:#?}"
    );
    assert_eq!(normal_logs, duress_logs);
}
