//! What the household's Echo devices play (docs/echo-alerts.md), end to end on the local stack:
//! the reference panel cloud's signed webhook events, the skill's webhook deriving the alerts,
//! and the console's JSON endpoint (`GET /dev/echo`) showing them. Stack-based, so it runs on
//! both stores (`ALARM_SKILL_TEST_STORE=dynamodb`).

use crate::support;

use std::time::Duration;

use alarm_skill::local::Options;
use serde_json::{Value, json};
use support::stack::*;

/// The demo stack with Alexa's own reply budget, and a demo token: these tests are about what
/// plays, not deadlines, and DynamoDB Local on a loaded machine can take longer than the
/// harness's shortened budget to record a disarm.
async fn demo() -> (Harness, String) {
    let h = Harness::start_with(Options {
        directive_budget: None,
        ..test_options()
    })
    .await;
    let t = h.token("demo").await;
    (h, t)
}

/// What `GET /dev/echo` shows once it holds at least `n` updates (the webhook is delivered
/// asynchronously); the bound is a hang's, far above a delivery's milliseconds.
async fn echo_updates(h: &Harness, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let all = h.get("/dev/echo").await["updates"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} echo updates: {}", h.get("/dev/echo").await);
}

/// The console lines of update `i`, once it has arrived.
async fn says(h: &Harness, i: usize) -> Vec<String> {
    let all = echo_updates(h, i + 1).await;
    all[i]["says"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

async fn zone(h: &Harness, zone: &str, action: &str) {
    h.post(
        &format!("/sim/panels/home/zones/{zone}/{action}"),
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn echo_devices_follow_the_panel_from_chime_to_exit_delay_entry_delay_and_siren() {
    let (h, t) = demo().await;

    // Disarmed: a door chimes; closing it, or motion in the hall, plays nothing.
    zone(&h, "back-door", "open").await;
    assert_eq!(says(&h, 0).await, ["chime"]);
    zone(&h, "back-door", "close").await;
    zone(&h, "hallway", "open").await;
    zone(&h, "hallway", "close").await;

    // Armed away by voice: the panel's exit delay (60 s), stopped when the panel arms.
    let r = h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    assert_eq!(r["event"]["header"]["name"], "Arm.Response", "{r}");
    assert_eq!(says(&h, 1).await, ["exit delay, 60 s"]);
    h.advance(60).await;
    assert_eq!(says(&h, 2).await, ["exit delay stopped"]);

    // The front door (an entry zone) opens: the panel's entry delay (30 s); when it runs out
    // the chirps stop and the siren sounds.
    zone(&h, "front-door", "open").await;
    assert_eq!(says(&h, 3).await, ["entry delay, 30 s"]);
    h.advance(30).await;
    assert_eq!(says(&h, 4).await, ["entry delay stopped", "siren"]);

    // A voice disarm ends the alarm, and with it the siren.
    let r = h.invoke(&disarm(&t, "home", Some("4729"))).await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    assert_eq!(says(&h, 5).await, ["siren stopped"]);

    let all = settled(|| h.stack.dev_echo.updates()).await;
    assert_eq!(all.len(), 6, "nothing else played: {all:#?}");
    let playing: Vec<&Value> = all.iter().map(|u| &u["playing"]).collect();
    assert_eq!(
        playing,
        [
            &json!("chime"),
            &json!("exit delay, 60 s"),
            &Value::Null,
            &json!("entry delay, 30 s"),
            &json!("siren"),
            &Value::Null
        ]
    );
    assert!(
        all.iter()
            .all(|u| u["account"] == "demo" && u["panel"] == "home")
    );
    // The siren is reported with Alexa's cap, the chime with its second.
    assert_eq!(
        all[4]["changes"],
        json!([
            {"change": "stop", "alert": "entry_delay"},
            {"change": "start", "alert": "siren", "max_play_s": 600}
        ])
    );
    assert_eq!(
        all[0]["changes"],
        json!([{"change": "start", "alert": "chime", "max_play_s": 1}])
    );
}

#[tokio::test]
async fn a_fire_alarm_sounds_over_the_entry_delay_and_on_through_the_disarm_that_ends_it() {
    let (h, t) = demo().await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    zone(&h, "front-door", "open").await;
    assert_eq!(says(&h, 2).await, ["entry delay, 30 s"]);

    // A fire alarm during the entry delay: the siren is reported and plays over the chirps.
    let fire = |on: bool| json!({"kind": "fire", "active": on});
    h.post("/sim/panels/home/alarm", fire(true)).await;
    assert_eq!(says(&h, 3).await, ["siren"]);
    // A voice disarm ends the entry delay but never clears a fire alarm: the siren plays on
    // until the alarm itself is cleared.
    let r = h.invoke(&disarm(&t, "home", Some("4729"))).await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    assert_eq!(says(&h, 4).await, ["entry delay stopped"]);
    h.post("/sim/panels/home/alarm", fire(false)).await;
    assert_eq!(says(&h, 5).await, ["siren stopped"]);

    let all = settled(|| h.stack.dev_echo.updates()).await;
    let playing: Vec<&Value> = all.iter().map(|u| &u["playing"]).collect();
    assert_eq!(
        playing[2..],
        [
            &json!("entry delay, 30 s"),
            &json!("siren"),
            &json!("siren"),
            &Value::Null
        ]
    );
}

/// A GET of `path` on the stack, as a client accepting `accept`: the status and the body.
async fn fetch(h: &Harness, path: &str, accept: &str) -> (u16, String) {
    let resp = h
        .http
        .get(format!("{}{path}", h.base))
        .header("accept", accept)
        .send()
        .await
        .expect(path);
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn the_console_has_its_echo_section_and_script() {
    let h = Harness::start().await;
    let (status, page) = fetch(&h, "/", "text/html").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<ol id="echo""#), "{page}");
    assert!(page.contains(r#"<script src="/console/echo.js""#), "{page}");
    let (status, script) = fetch(&h, "/console/echo.js", "*/*").await;
    assert_eq!(status, 200);
    assert!(script.contains("'/dev/echo'"), "{script}");
}
