//! The skill's second path to the monitoring center (issue 26): while the panel cloud refuses
//! connections, answers 500 or hangs, a voice attempt goes straight to the household's center
//! over SIA DC-09 (line 2 of the panel's dual-path account), a duress as its 121 with the
//! member's user number, a normal attempt as a communication trouble (350), before the
//! directive's reply; what the center can't take then, the re-delivery worker sends once it
//! can, once per path. A household whose cloud reported no link keeps today's behaviour.
//! Both stores (`ALARM_SKILL_TEST_STORE=dynamodb` for DynamoDB Local).

use crate::support;

use serde_json::{Value, json};
use support::stack::*;

const NORMAL: &str = "4729";
const DURESS: &str = "8361";

/// The skill's frames the center ACKed, as "code/number".
fn acked(h: &Harness) -> Vec<String> {
    h.stack
        .second_path
        .sent()
        .iter()
        .filter(|f| f.answer == "ACK")
        .map(|f| format!("{}/{}", f.code, f.number))
        .collect()
}

/// The 121s the reference cloud's own transmitter (line 1) got ACKed.
async fn cloud_121s(h: &Harness) -> usize {
    h.get("/sim/monitoring/link").await["sent"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|f| f["code"] == "121" && f["answer"] == "ACK")
        .count()
}

async fn receiver(h: &Harness, mode: &str) {
    h.post("/sim/monitoring/receiver", json!({ "mode": mode }))
        .await;
}

#[tokio::test]
async fn while_the_cloud_fails_the_center_has_the_attempt_when_the_reply_comes() {
    for (mode, delay_ms) in [("down", 0), ("error", 0), ("timeout", 10_000)] {
        let mut replies: Vec<Value> = vec![];
        let mut frames = vec![];
        for code in [NORMAL, DURESS] {
            let (h, t) = second_path_stack(4_000).await;
            h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
            h.advance(60).await;
            h.fault(mode, delay_ms).await;
            replies.push(h.invoke(&disarm(&t, "home", Some(code))).await);
            // Read at once, before any worker pass: the directive's own send.
            let signals = h.signals().await;
            if code == DURESS {
                assert_eq!(acked(&h), ["121/1"], "{mode}");
                assert_eq!(count(&signals, "121/1/1"), 1, "{mode}: {signals:?}");
            } else {
                assert_eq!(acked(&h), ["350/1"], "{mode}");
                assert_eq!(count(&signals, "121/"), 0, "{mode}: {signals:?}");
                assert_eq!(count(&signals, "350/1/"), 1, "{mode}: {signals:?}");
            }
            let sent = second_path_frames(&h);
            assert!(
                sent[0]["frame"].as_str().unwrap().contains("L2#1234["),
                "{sent:?}"
            );
            assert_eq!(sent[0]["encrypted"], true);
            support::record_dc09_frames(
                &format!("second-path-{mode}-{code}"),
                &sent,
                Some(DC09_KEY),
            );
            frames.push(sent[0]["frame"].as_str().unwrap().len());
            // Never reported as a disarm: the panel is where the fault left it.
            h.fault("none", 0).await;
            assert_eq!(h.panel("home").await["arm_state"], "armed_away", "{mode}");
        }
        // Today's reply, the same for both kinds; frames of one length.
        assert_eq!(
            error_type(&replies[0]),
            Some("BRIDGE_UNREACHABLE"),
            "{mode}"
        );
        assert_eq!(normalize(&replies[0]), normalize(&replies[1]), "{mode}");
        assert_eq!(frames[0], frames[1], "{mode}");
    }
}

/// Armed away, the cloud answering 500 and the center's receiver down: the duress said, and
/// answered as today.
async fn duress_with_both_paths_down() -> Harness {
    let (h, t) = second_path_stack(4_000).await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    h.fault("error", 0).await;
    receiver(&h, "down").await;
    let r = h.invoke(&disarm(&t, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"));
    h
}

#[tokio::test]
async fn with_the_receiver_down_too_the_worker_delivers_each_path_once() {
    let h = duress_with_both_paths_down().await;
    assert!(acked(&h).is_empty());
    assert_eq!(
        h.stack.second_path.sent().len(),
        1,
        "one attempt, unanswered"
    );

    // The receiver is back, the cloud still failing: the worker's pass reaches the center.
    receiver(&h, "none").await;
    h.advance(11).await;
    h.stack.redeliver().await.unwrap();
    assert_eq!(acked(&h), ["121/1"]);
    assert_eq!(count(&h.signals().await, "121/1/1"), 1);
    // The next pass only signals the cloud: the center has it.
    h.advance(60).await;
    h.stack.redeliver().await.unwrap();
    assert_eq!(acked(&h), ["121/1"]);

    // The cloud back: it takes the attempt (the system of record) and sends its own 121.
    h.advance(60).await;
    recover_and_redeliver_twice(&h).await;
    h.stack
        .sim
        .settle_monitoring(std::time::Duration::from_secs(10))
        .await;
    assert_nothing_pending(&h).await;
    assert_eq!(acked(&h), ["121/1"], "once on the skill's line");
    assert_eq!(cloud_121s(&h).await, 1, "once on the cloud's line");
    assert_eq!(h.panel("home").await["arm_state"], "armed_away");
    support::record_dc09_frames(
        "second-path-worker",
        &second_path_frames(&h),
        Some(DC09_KEY),
    );
}

#[tokio::test]
async fn a_household_without_a_link_keeps_todays_behaviour() {
    // The cloud reports no monitoring link for the panel: the skill wires its second path, but
    // has nowhere to send. The same directive budget as the other cases, which a loaded
    // DynamoDB Local keeps to.
    let h = Harness::start_with(alarm_skill::local::Options {
        directive_budget: Some(std::time::Duration::from_secs(4)),
        ..test_options()
    })
    .await;
    let t = h.token("demo").await;
    h.invoke(&discover(&t)).await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    h.fault("error", 0).await;
    let r = h.invoke(&disarm(&t, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"));
    assert!(h.stack.second_path.sent().is_empty());
    assert_eq!(count(&h.signals().await, "121/"), 0);
    recover_and_redeliver_twice(&h).await;
    assert!(h.stack.second_path.sent().is_empty());
    let signals = h.signals().await;
    assert_eq!(count(&signals, "121/1/1"), 1, "{signals:?}");
    assert_nothing_pending(&h).await;
}

#[tokio::test]
async fn while_the_breaker_holds_the_cloud_the_worker_still_reaches_the_center() {
    let h = duress_with_both_paths_down().await;
    // Both paths down long enough for the cloud's breaker to open.
    let mut open = false;
    for _ in 0..alarm_skill::domain::redelivery::BREAKER_THRESHOLD + 1 {
        h.advance(60).await;
        open = h.stack.redeliver().await.unwrap().breaker_open;
    }
    assert!(open, "the breaker opened");
    assert!(acked(&h).is_empty());

    // The center is back, the cloud is not: the held pass still sends the center its 121.
    receiver(&h, "none").await;
    h.advance(60).await;
    let report = h.stack.redeliver().await.unwrap();
    assert!(report.breaker_open, "{report:?}");
    assert_eq!(acked(&h), ["121/1"]);
    assert_eq!(count(&h.signals().await, "121/1/1"), 1);

    // The cloud back: the probe takes it, and the center hears nothing more from the skill.
    h.advance(60).await;
    recover_and_redeliver_twice(&h).await;
    assert_nothing_pending(&h).await;
    assert_eq!(acked(&h), ["121/1"]);
}

#[tokio::test]
async fn a_disarm_stores_the_link_the_cloud_reports_without_a_discovery() {
    // Confirmed by the seed a moment ago, without details: only the cloud's answer to this
    // disarm's own check has the link, and it is written with the confirmation.
    let h = Harness::start_with(alarm_skill::local::Options {
        second_path: true,
        directive_budget: Some(std::time::Duration::from_secs(4)),
        ..test_options()
    })
    .await;
    let t = h.token("demo").await;
    let r = h.invoke(&disarm(&t, "home", Some(NORMAL))).await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    let snapshot = h.stack.store.household("demo").await.unwrap();
    assert_eq!(
        snapshot.monitoring.get("home").map(|l| l.line.as_str()),
        Some("2")
    );
    h.fault("error", 0).await;
    let r = h.invoke(&disarm(&t, "home", Some(DURESS))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"));
    assert_eq!(acked(&h), ["121/1"]);
}
