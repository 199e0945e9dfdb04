//! The local stack's clock and its webhook under hostile or extreme input: `/sim/clock/advance`
//! with values chrono can't hold, webhook timestamps at the ends of i64, and webhooks after the
//! simulated clock has moved far past the webhook's tolerance.

use crate::support;

use alarm_skill::common::clock::MAX_OFFSET;
use alarm_skill::edges::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, TOLERANCE_S};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::stack::*;

async fn advance_raw(h: &Harness, body: Value) -> (StatusCode, Value) {
    h.post_raw("/sim/clock/advance", body).await
}

async fn sim_now(h: &Harness) -> Value {
    h.get("/sim/panels").await["now"].clone()
}

#[tokio::test]
async fn clock_advance_refuses_values_out_of_range_and_the_stack_keeps_working() {
    let (h, t) = Harness::demo().await;
    let before = sim_now(&h).await;
    let max = MAX_OFFSET.num_seconds();
    for seconds in [
        json!(i64::MAX),
        // Fits chrono's Duration, but not a date: before the bound, every later clock read
        // panicked.
        json!(1_000_000_000_000_000i64),
        json!(max + 1),
        json!(-1),
        json!(i64::MIN),
    ] {
        let (status, body) = advance_raw(&h, json!({ "seconds": seconds })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{seconds}: {body}");
        assert_eq!(body["error"], "bad_request");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot advance the clock")),
            "{body}"
        );
        assert_eq!(sim_now(&h).await, before, "a refused move leaves the clock");
    }
    // Not a whole number of seconds: refused by the JSON extractor, also a 4xx.
    for body in [json!({"seconds": 1.5}), json!({"seconds": "60"}), json!({})] {
        let (status, _) = advance_raw(&h, body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status}");
    }

    // The bound holds over many moves too: up to it is fine, one second more is not.
    let (status, _) = advance_raw(&h, json!({ "seconds": max - 10 })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = advance_raw(&h, json!({ "seconds": 10 })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = advance_raw(&h, json!({ "seconds": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nothing is bricked: state, directives and the management API all still answer.
    assert!(h.get("/sim/panels").await["panels"].is_array());
    let r = h.invoke(&arm(&t, "home", "ARMED_STAY")).await;
    assert_eq!(r["event"]["header"]["name"], "Arm.Response", "{r}");
    let r = h.invoke(&disarm(&t, "home", Some("4729"))).await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    let admin = h.admin_token("demo").await;
    let (s, _) = h.lockout_as(&admin).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn webhook_timestamps_at_the_ends_of_i64_are_stale_not_a_crash() {
    let h = Harness::start().await;
    for ts in [i64::MIN, i64::MAX, i64::MIN + 1] {
        let resp = h
            .http
            .post(format!("{}/webhooks/panel", h.base))
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, format!("v1={}", "00".repeat(32)))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("the webhook answers instead of dropping the connection");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{ts}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["reason"], "stale timestamp", "{ts}");
    }
}

#[tokio::test]
async fn webhooks_still_verify_after_the_clock_moves_past_the_tolerance() {
    let (h, t) = Harness::demo().await;
    let r = h.invoke(&accept_grant(&t, "grant-code")).await;
    assert_eq!(r["event"]["header"]["name"], "AcceptGrant.Response");
    let sent_before = h.settled_gateway_events().await.len();

    // Well past the 300 s tolerance, as lockout and entry-delay tests do.
    h.advance(TOLERANCE_S * 12).await;
    h.post("/sim/panels/home/zones/back-door/open", json!({}))
        .await;
    let events = h.settled_gateway_events().await;
    let reports: Vec<&Value> = events[sent_before..]
        .iter()
        .filter(|e| {
            e["event"]["header"]["name"] == "ChangeReport"
                && e["event"]["endpoint"]["endpointId"] == "home:back-door"
        })
        .collect();
    assert_eq!(
        reports.len(),
        1,
        "the zone change reached Alexa as one ChangeReport: {events:?}"
    );
    support::record_message("sim-clock-ChangeReport", reports[0]);
    let change = &reports[0]["event"]["payload"]["change"];
    assert_eq!(change["properties"][0]["value"], "DETECTED");
}
