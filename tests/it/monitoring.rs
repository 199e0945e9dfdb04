//! The reference panel's alarm reporting, end to end through the local stack: the voice
//! directive, the panel cloud, SIA DC-09 over TCP on loopback, the monitoring receiver and what
//! its operator dispatches (docs/panel-api.md, "Alarm reporting").
//!
//! - Cancel is not disarm: every combination of abort window and cancel policy, for a normal and
//!   a duress disarm (121 always, never cancelled, and the household sees the same).
//! - Crash-and-smash: the receiver raises the alarm itself when a pending alarm is never
//!   resolved, and not when the panel is disarmed in time.
//! - The link: receiver outages, lost ACKs and NAKs delay delivery but lose nothing, and the
//!   receiver acts on each event exactly once (sequence number and time of occurrence);
//!   AES-128 when keyed.
//! - Restarts: the cloud's transmitter and the receiver crash and start again mid-backlog, from
//!   their journals; each 121 reaches the operator exactly once. And the same with the whole
//!   local stack as its own process, SIGKILLed mid-backlog (once between the cloud's durable
//!   decision and its acknowledgement) while the skill's worker re-sends the same request ids.

use crate::support;

use std::time::Duration;

use alarm_skill::common::secret::Secret;
use alarm_skill::domain::ports::panel::{ArmMode, ArmRequest, AttemptKind, DisarmRequest, Source};
use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::simulator::monitoring::receiver::ReceiverMode;
use serde_json::{Value, json};
use support::stack::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const NORMAL: &str = "4729";
const DURESS: &str = "8361";
/// Hex of the 16 ASCII characters "0123456789ABCDEF": pysiaalarm (Home Assistant's SIA
/// integration) takes a key as characters, so CI can decode these frames with it too.
const KEY: &str = "30313233343536373839414243444546";

fn config(abort_window_s: u32, cancel_requires_code: bool) -> DemoConfig {
    DemoConfig::parse(
        &json!({
            "accounts": [{"id": "demo", "users": [{"number": 1, "name": "Alex"}, {"number": 2, "name": "Sam"}],
              "panels": [{"id": "home", "name": "Home", "exit_delay_s": 60, "entry_delay_s": 30,
                "abort_window_s": abort_window_s, "cancel_requires_code": cancel_requires_code,
                "cancel_window_s": 300, "monitoring_account": "1234", "supervision_grace_s": 30,
                "zones": [
                  {"id": "front-door", "number": 1, "name": "Front door", "kind": "contact", "entry": true},
                  {"id": "back-door", "number": 2, "name": "Back door", "kind": "contact"}
                ]}]}],
            "households": [{"account": "demo", "members": [
              {"id": "alex", "name": "Alex", "user_number": 1, "voice_pin": NORMAL, "duress_pin": DURESS}]}]
        })
        .to_string(),
    )
    .expect("config")
}

/// A stack with the second path on, as `alarm-skill serve` runs it: the center's rules are
/// tested with both lines in use.
async fn stack(cfg: DemoConfig, key: Option<&str>) -> Harness {
    Harness::start_with(Options {
        config: cfg,
        dc09_key: key.map(Secret::new),
        second_path: true,
        ..test_options()
    })
    .await
}

async fn dispatches(h: &Harness) -> Vec<Value> {
    h.get("/sim/monitoring/dispatches")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn reasons(d: &[Value]) -> Vec<String> {
    d.iter()
        .map(|d| {
            format!(
                "{}{}",
                d["reason"].as_str().unwrap_or("?"),
                if d["cancelled"] == true {
                    "/cancelled"
                } else {
                    ""
                }
            )
        })
        .collect()
}

async fn link(h: &Harness) -> Value {
    h.get("/sim/monitoring/link").await
}

async fn receiver(h: &Harness, mode: &str) {
    h.post("/sim/monitoring/receiver", json!({ "mode": mode }))
        .await;
}

/// Saves every frame the stack's panel cloud sent, for CI's independent decoding.
async fn capture(h: &Harness, name: &str, key: Option<&str>) {
    let l = link(h).await;
    let sent = l["sent"].as_array().cloned().unwrap_or_default();
    assert!(!sent.is_empty(), "{name}: frames were sent");
    support::record_dc09_frames(name, &sent, key);
}

/// Cancel by a user code, as the app does: (status, body).
async fn cancel(h: &Harness, user: u16) -> (u16, Value) {
    let (status, body) = h
        .api(
            "POST",
            "/sim/panels/home/cancel",
            None,
            Some(json!({"user": user, "source": "app"})),
        )
        .await;
    (status.as_u16(), body)
}

/// A stack of `cfg` (no DC-09 key) with an intrusion under way: see [`intrude`].
async fn intruded(cfg: DemoConfig) -> Harness {
    let h = stack(cfg, None).await;
    intrude(&h).await;
    h
}

/// Armed away, then the front door opens: the entry delay runs.
async fn intrude(h: &Harness) {
    let t = h.token("demo").await;
    let r = h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    assert_eq!(r["event"]["header"]["name"], "Arm.Response", "{r}");
    h.advance(60).await;
    h.post("/sim/panels/home/zones/front-door/open", json!({}))
        .await;
}

async fn voice_disarm(h: &Harness, pin: &str) -> Value {
    let t = h.token("demo").await;
    h.invoke(&disarm(&t, "home", Some(pin))).await
}

/// Cancel is not disarm, in every combination: abort window 0 or 30 s; cancel by code required
/// or not; the voice disarm inside the abort window or after the alarm was reported; then an
/// explicit cancel by code from the app. Each on two stacks, normal PIN and duress PIN.
#[tokio::test]
async fn every_policy_combination_for_a_normal_and_a_duress_disarm() {
    for abort in [0u32, 30] {
        for cancel_requires_code in [true, false] {
            for when in ["inside_abort_window", "after_report"] {
                if abort == 0 && when == "inside_abort_window" {
                    continue;
                }
                let case = format!("abort={abort} code={cancel_requires_code} {when}");
                let (n, d) = tokio::join!(
                    stack(config(abort, cancel_requires_code), None),
                    stack(config(abort, cancel_requires_code), None)
                );
                for h in [&n, &d] {
                    intrude(h).await;
                    // Entry delay over at +30: the siren sounds; with an abort window the
                    // report waits until +60.
                    h.advance(31).await;
                    if when == "after_report" {
                        h.advance(30).await;
                    }
                }
                let rn = voice_disarm(&n, NORMAL).await;
                let rd = voice_disarm(&d, DURESS).await;
                assert_eq!(normalize(&rn), normalize(&rd), "{case}: replies differ");
                assert_eq!(rn["event"]["header"]["name"], "Response", "{case}: {rn}");
                let (sn, sd) = (n.signals().await, d.signals().await);

                // 121 always, for the duress only.
                assert_eq!(count(&sn, "121/"), 0, "{case}: {sn:?}");
                assert_eq!(count(&sd, "121/1/1"), 1, "{case}: {sd:?}");
                // The burglary report: aborted by a normal disarm inside the window, never by
                // a duress disarm.
                let reported = when == "after_report";
                assert_eq!(count(&sn, "130/"), usize::from(reported), "{case}: {sn:?}");
                assert_eq!(count(&sd, "130/"), 1, "{case}: {sd:?}");
                // A disarm cancels only when the policy says so, and never under duress.
                let disarm_cancels = reported && !cancel_requires_code;
                assert_eq!(
                    count(&sn, "406/"),
                    usize::from(disarm_cancels),
                    "{case}: {sn:?}"
                );
                assert_eq!(count(&sd, "406/"), 0, "{case}: {sd:?}");

                // The explicit cancel from the app: same reply either way.
                let (cn, bn) = cancel(&n, 1).await;
                let (cd, bd) = cancel(&d, 1).await;
                assert_eq!((cn, normalize(&bn)), (cd, normalize(&bd)), "{case}");
                if reported {
                    assert_eq!(cn, 200, "{case}: {bn}");
                    let outcome = if disarm_cancels {
                        "already_cancelled"
                    } else {
                        "cancelled"
                    };
                    assert_eq!(bn["outcome"], outcome, "{case}: {bn}");
                } else {
                    assert_eq!(
                        (cn, bn["error"].as_str()),
                        (409, Some("no alarm was reported in this arming period")),
                        "{case}"
                    );
                }
                let (sn, sd) = (n.signals().await, d.signals().await);
                assert_eq!(
                    count(&sn, "406/1/1"),
                    usize::from(reported),
                    "{case}: {sn:?}"
                );
                assert_eq!(
                    count(&sd, "406/"),
                    0,
                    "{case}: a duress is never cancelled: {sd:?}"
                );

                // What the monitoring center did.
                let (dn, dd) = (dispatches(&n).await, dispatches(&d).await);
                let expected_n: Vec<String> = if reported {
                    vec!["burglary/cancelled".into()]
                } else {
                    vec![]
                };
                assert_eq!(reasons(&dn), expected_n, "{case}");
                let mut rd = reasons(&dd);
                rd.sort();
                assert_eq!(
                    rd,
                    ["burglary", "duress"],
                    "{case}: nothing cancelled under duress"
                );

                // The household's view is the same: app notifications and panel state.
                assert_eq!(
                    normalize(&n.get("/sim/notifications").await),
                    normalize(&d.get("/sim/notifications").await),
                    "{case}"
                );
                assert_eq!(
                    normalize(&n.panel("home").await),
                    normalize(&d.panel("home").await),
                    "{case}"
                );
                capture(
                    &n,
                    &format!("policy-normal-{abort}-{cancel_requires_code}-{when}"),
                    None,
                )
                .await;
                capture(
                    &d,
                    &format!("policy-duress-{abort}-{cancel_requires_code}-{when}"),
                    None,
                )
                .await;
            }
        }
    }
}

#[tokio::test]
async fn after_the_cancel_window_the_dispatch_stands() {
    let h = intruded(config(0, true)).await;
    h.advance(31).await;
    assert_eq!(count(&h.signals().await, "130/1/1"), 1);
    h.advance(301).await;
    voice_disarm(&h, NORMAL).await;
    let (status, body) = cancel(&h, 1).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "the cancel window has closed");
    assert_eq!(count(&h.signals().await, "406/"), 0);
    assert_eq!(reasons(&dispatches(&h).await), ["burglary"]);
    // An unknown user code cancels nothing.
    let (status, _) = cancel(&h, 9).await;
    assert_eq!(status, 422);
    capture(&h, "cancel-window", None).await;
}

#[tokio::test]
async fn a_cancel_by_code_while_the_siren_sounds_disarms_and_cancels() {
    let h = intruded(config(0, true)).await;
    h.advance(31).await;
    let (status, body) = cancel(&h, 2).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    assert_eq!(body["panel"]["arm_state"], "disarmed");
    assert_eq!(
        h.signals().await,
        ["401/3/0", "138/1/1", "130/1/1", "401/1/2", "406/1/2"]
    );
    assert_eq!(reasons(&dispatches(&h).await), ["burglary/cancelled"]);
    let notes = h.get("/sim/notifications").await;
    assert!(
        notes
            .to_string()
            .contains("Home alarm cancelled by Sam (app)"),
        "{notes}"
    );
    capture(&h, "cancel-by-code", None).await;
}

/// Arm, open the front door, cut the panel off: the receiver raises the alarm itself, once.
#[tokio::test]
async fn crash_and_smash_the_receiver_raises_the_alarm_once() {
    let h = intruded(config(30, true)).await;
    h.post("/sim/panels/home/connectivity", json!({"online": false}))
        .await;
    // Entry delay 30 + abort window 30 + grace 30: nothing yet at 90 s.
    h.advance(90).await;
    assert!(dispatches(&h).await.is_empty());
    h.advance(1).await;
    let d = dispatches(&h).await;
    assert_eq!(reasons(&d), ["crash_and_smash"], "{d:?}");
    assert_eq!(d[0]["zone"], 1);
    assert!(
        d[0]["why"]
            .as_str()
            .unwrap()
            .contains("entry delay 30 s + abort window 30 s + grace 30 s"),
        "{d:?}"
    );
    h.advance(600).await;
    assert_eq!(dispatches(&h).await.len(), 1, "raised once");
    // The panel comes back and delivers what it kept: the alarm joins the same dispatch.
    h.post("/sim/panels/home/connectivity", json!({"online": true}))
        .await;
    assert_eq!(count(&h.signals().await, "130/1/1"), 1);
    assert_eq!(reasons(&dispatches(&h).await), ["crash_and_smash"]);
    capture(&h, "crash-and-smash", None).await;
}

/// A 30 s entry delay, an intrusion, and `code` said 10 s in; then ten minutes pass.
async fn disarmed_within_the_crash_and_smash_window(code: &str) -> Harness {
    let h = intruded(config(30, true)).await;
    h.advance(10).await;
    voice_disarm(&h, code).await;
    h.advance(600).await;
    h
}

#[tokio::test]
async fn crash_and_smash_a_normal_disarm_in_time_dispatches_nothing() {
    let h = disarmed_within_the_crash_and_smash_window(NORMAL).await;
    assert!(dispatches(&h).await.is_empty());
    assert_eq!(h.signals().await, ["401/3/0", "138/1/1", "401/1/1"]);
    capture(&h, "crash-and-smash-disarmed", None).await;
}

#[tokio::test]
async fn crash_and_smash_a_duress_disarm_in_time_dispatches_only_the_duress() {
    let h = disarmed_within_the_crash_and_smash_window(DURESS).await;
    assert_eq!(reasons(&dispatches(&h).await), ["duress"]);
    assert_eq!(
        h.signals().await,
        ["401/3/0", "138/1/1", "121/1/1", "401/1/1"]
    );
    // A coerced cancel afterwards changes nothing at the center.
    let (status, _) = cancel(&h, 1).await;
    assert_eq!(status, 409);
    assert_eq!(reasons(&dispatches(&h).await), ["duress"]);
}

/// The panel was cut off, then the victim is forced to disarm by voice: Alexa's answer is the
/// same as for the normal PIN, the cloud still sends the 121, and the receiver also raises the
/// crash-and-smash alarm.
#[tokio::test]
async fn crash_and_smash_with_a_coerced_voice_disarm_after_the_cut() {
    let (n, d) = tokio::join!(stack(config(30, true), None), stack(config(30, true), None));
    for h in [&n, &d] {
        intrude(h).await;
        h.post("/sim/panels/home/connectivity", json!({"online": false}))
            .await;
    }
    let rn = voice_disarm(&n, NORMAL).await;
    let rd = voice_disarm(&d, DURESS).await;
    assert_eq!(normalize(&rn), normalize(&rd));
    assert_eq!(error_type(&rn), Some("ENDPOINT_UNREACHABLE"), "{rn}");
    for h in [&n, &d] {
        h.advance(91).await;
    }
    assert_eq!(reasons(&dispatches(&n).await), ["crash_and_smash"]);
    let mut rd = reasons(&dispatches(&d).await);
    rd.sort();
    assert_eq!(rd, ["crash_and_smash", "duress"]);
}

/// The receiver is down: events queue at the panel cloud, and arrive once it is back, in order,
/// each acted on once.
#[tokio::test]
async fn receiver_outage_queues_frames_and_delivers_them_once_back() {
    let h = stack(config(0, true), Some(KEY)).await;
    receiver(&h, "down").await;
    intrude(&h).await;
    h.advance(31).await;
    voice_disarm(&h, DURESS).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.monitoring().await.is_empty(), "the receiver is down");
    let l = link(&h).await;
    assert_eq!(l["queued"], 5, "{l}");
    assert_eq!(l["receiver_listening"], false);
    // While down, the crash-and-smash timer cannot run ahead of the queued reports.
    h.advance(200).await;

    receiver(&h, "none").await;
    assert_eq!(
        h.signals().await,
        ["401/3/0", "138/1/1", "130/1/1", "121/1/1", "401/1/1"]
    );
    let l = link(&h).await;
    assert_eq!(l["queued"], 0);
    assert_eq!(l["delivered"], 5);
    // Every frame was re-sent until acknowledged, with the same sequence number.
    let sent = l["sent"].as_array().unwrap();
    let acked: Vec<u64> = sent
        .iter()
        .filter(|f| f["answer"] == "ACK")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(acked, [1, 2, 3, 4, 5]);
    assert!(sent.iter().any(|f| f["answer"] != "ACK"), "{sent:?}");
    assert!(
        sent.iter()
            .all(|f| f["frame"].as_str().unwrap().contains("\"*ADM-CID\""))
    );
    let mut rd = reasons(&dispatches(&h).await);
    rd.sort();
    assert_eq!(
        rd,
        ["burglary", "duress"],
        "no crash-and-smash: the reports were on their way"
    );
    capture(&h, "receiver-outage-encrypted", Some(KEY)).await;
}

/// The receiver acts on a frame but its ACK is lost: the cloud re-sends with the same sequence
/// number, and the receiver acknowledges it without acting twice.
#[tokio::test]
async fn a_lost_ack_is_re_sent_and_acted_on_exactly_once() {
    let h = stack(config(0, true), None).await;
    receiver(&h, "drop_ack").await;
    voice_disarm(&h, DURESS).await;
    // Wait until the receiver has acted on the 121 at least once.
    let mut received = vec![];
    for _ in 0..1_200 {
        received = link(&h).await["received"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if received.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(received.len() >= 2, "{received:?}");
    receiver(&h, "none").await;
    assert_eq!(h.signals().await, ["121/1/1"]);
    assert_eq!(reasons(&dispatches(&h).await), ["duress"]);
    let received = link(&h).await["received"].as_array().cloned().unwrap();
    assert!(received.iter().all(|f| f["seq"] == 1), "{received:?}");
    assert_eq!(
        received.iter().filter(|f| f["duplicate"] == false).count(),
        1,
        "{received:?}"
    );
    assert!(received.iter().any(|f| f["duplicate"] == true));
    capture(&h, "lost-ack", None).await;
}

#[tokio::test]
async fn a_nak_is_re_sent_until_acknowledged() {
    let h = stack(config(0, true), None).await;
    receiver(&h, "nak").await;
    voice_disarm(&h, DURESS).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l = link(&h).await;
    assert_eq!(l["queued"], 1, "{l}");
    assert!(
        l["sent"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["answer"] == "NAK")
    );
    assert!(
        h.stack.sim.monitoring().is_empty(),
        "a NAKed frame is not acted on"
    );
    receiver(&h, "none").await;
    assert_eq!(h.signals().await, ["121/1/1"]);
}

/// A client speaking DC-09 directly to the receiver: what it refuses, what it acknowledges.
#[tokio::test]
async fn the_receiver_refuses_bad_frames_and_acks_good_ones() {
    use alarm_skill::wire::dc09::frame::{self, Cid, Key, MessageId, Route};
    let h = stack(config(0, true), Some(KEY)).await;
    let key = Key::from_hex(&Secret::new(KEY)).unwrap();
    let stream = tokio::net::TcpStream::connect(h.stack.receiver.addr())
        .await
        .unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut ask = async |frame: String| {
        w.write_all(frame.as_bytes()).await.unwrap();
        let mut answer = vec![];
        r.read_until(b'\r', &mut answer).await.unwrap();
        frame::decode(&answer, |_| Some(key.clone())).unwrap()
    };
    let route = |acct: &str| Route {
        receiver: Some("1".into()),
        prefix: "1".into(),
        account: acct.into(),
    };
    let cid = Cid {
        qualifier: 1,
        event: 121,
        partition: 1,
        number: 1,
    };
    let now = alarm_skill::common::clock::Clock::now(h.stack.clock.as_ref());
    let old = now - chrono::Duration::seconds(600);
    // In clear where the account requires AES; stale (a replay); an unknown account; garbage.
    for bad in [
        frame::encode_event(7, &route("1234"), Some(&cid), now, now, None).unwrap(),
        frame::encode_event(7, &route("1234"), Some(&cid), old, old, Some(&key)).unwrap(),
        frame::encode_event(7, &route("ABCD"), Some(&cid), now, now, Some(&key)).unwrap(),
        "\nFFFF0010\"ADM-CID\"0007L1\r".to_string(),
    ] {
        assert_eq!(ask(bad).await.id, MessageId::Nak);
    }
    let good = frame::encode_event(7, &route("1234"), Some(&cid), now, now, Some(&key)).unwrap();
    let a = ask(good.clone()).await;
    assert_eq!((a.id, a.seq, a.encrypted), (MessageId::Ack, 7, true));
    // The same frame again: acknowledged, not acted on twice.
    assert_eq!(ask(good).await.id, MessageId::Ack);
    assert_eq!(h.signals().await, ["121/1/1"]);
    assert_eq!(reasons(&dispatches(&h).await), ["duress"]);
}

/// A duress said while the panel cloud is down, then `ticks` worker passes 10 s of simulated
/// time apart with the cloud still down: the reports of those passes.
async fn duress_through_an_outage(
    h: &Harness,
    ticks: usize,
) -> Vec<alarm_skill::domain::redelivery::Report> {
    let t = h.token("demo").await;
    let r = h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    assert_eq!(r["event"]["header"]["name"], "Arm.Response", "{r}");
    h.advance(60).await;
    h.fault("down", 0).await;
    let r = voice_disarm(h, DURESS).await;
    assert_eq!(r["event"]["header"]["name"], "ErrorResponse", "{r}");
    let mut reports = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        h.advance(10).await;
        let report = h.stack.redeliver().await.unwrap();
        assert_eq!(report.backlog, 1, "the duress stays pending: {report:?}");
        reports.push(report);
    }
    assert_eq!(count(&h.signals().await, "121/"), 0);
    reports
}

/// Issue 24, regression 2: after a 30-minute panel cloud outage the pending duress reached the
/// cloud 240 s after it answered again, its backoff grown to the 5-minute cap. Now the 121 is
/// there within a few worker ticks of recovery. Simulated time throughout: the outage ticks
/// every 10 s (on the old worker the backoff reached its cap all the same), recovery every 2 s,
/// the local worker's interval.
#[tokio::test]
async fn after_a_30_minute_outage_the_121_arrives_within_a_few_worker_ticks_of_recovery() {
    let h = Harness::start().await;
    duress_through_an_outage(&h, 180).await;
    h.fault("none", 0).await;
    let mut ticks = 0;
    while count(&h.signals().await, "121/") == 0 {
        ticks += 1;
        assert!(ticks <= 200, "no 121 within {ticks} ticks of recovery");
        h.advance(2).await;
        h.stack.redeliver().await.unwrap();
    }
    assert!(
        ticks <= 3,
        "the 121 arrived {ticks} worker ticks ({} s) after the cloud came back",
        ticks * 2
    );
    assert_eq!(count(&h.signals().await, "121/"), 1);
    let report = h.stack.redeliver().await.unwrap();
    assert_eq!(report.backlog, 0, "{report:?}");
}

/// Issue 26: the worker re-sends a duress after an outage with the time its code was spoken
/// (`occurred_at`, the outbox record's `created_at`), and the reference cloud reports the 121
/// with that time of occurrence, not the time the signal came: what lets a center tell the skill's
/// own copy of the duress (same time) from another duress. On both stores (the record is read
/// back from the store that wrote it).
#[tokio::test]
async fn a_duress_re_sent_after_an_outage_reaches_the_center_with_the_time_it_was_spoken() {
    use alarm_skill::common::clock::Clock;
    let h = Harness::start().await;
    let ticks = 6;
    duress_through_an_outage(&h, ticks).await;
    let clock = h.stack.sim.clock();
    let spoken = clock.now() - chrono::Duration::seconds(10 * ticks as i64);
    h.fault("none", 0).await;
    for _ in 0..20 {
        if count(&h.signals().await, "121/") > 0 {
            break;
        }
        h.advance(2).await;
        h.stack.redeliver().await.unwrap();
    }
    let monitoring = h.monitoring().await;
    let alarms: Vec<&Value> = monitoring.iter().filter(|e| e["code"] == "121").collect();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    let at: chrono::DateTime<chrono::Utc> = alarms[0]["at"].as_str().unwrap().parse().unwrap();
    assert!(clock.now() - spoken >= chrono::Duration::seconds(60));
    assert_eq!(
        at.timestamp(),
        spoken.timestamp(),
        "121 at {at}, spoken at {spoken}"
    );
}

/// While the cloud is down the worker's breaker opens after a few failed passes; from then on
/// the cloud gets one probe per pass at most (each 10 s tick is past the 5 s probe interval) and
/// nothing else; once a probe is answered the breaker closes.
#[tokio::test]
async fn an_outage_opens_the_breaker_and_the_cloud_gets_only_probes_until_it_answers() {
    let h = Harness::start().await;
    let reports = duress_through_an_outage(&h, 30).await;
    let opened = reports
        .iter()
        .position(|r| r.breaker_open)
        .expect("the breaker opened during the outage");
    assert!(opened < 5, "opened after {} ticks", opened + 1);
    assert!(reports[opened..].iter().all(|r| r.breaker_open));
    let after: Vec<(usize, usize)> = reports[opened + 1..]
        .iter()
        .map(|r| (r.probes, r.examined))
        .collect();
    assert!(
        after.iter().all(|&(p, e)| p == 1 && e == 1),
        "one probe, one signal per pass while open: {after:?}"
    );
    // Two probes in one interval: the second pass holds.
    h.advance(2).await;
    let held = h.stack.redeliver().await.unwrap();
    assert_eq!(
        (held.probes, held.examined, held.breaker_open),
        (0, 0, true)
    );
    h.fault("none", 0).await;
    h.advance(5).await;
    let back = h.stack.redeliver().await.unwrap();
    assert_eq!(
        (back.probes, back.delivered, back.breaker_open, back.backlog),
        (1, 1, false, 0),
        "{back:?}"
    );
    assert_eq!(count(&h.signals().await, "121/"), 1);
}

/// Four households, each with a normal and a duress PIN, each panel on its own DC-09 account.
fn households() -> DemoConfig {
    DemoConfig::parse(&households_json().to_string()).expect("config")
}

fn households_json() -> Value {
    let mut accounts = vec![];
    let mut households = vec![];
    for i in 1..=4 {
        accounts.push(json!({"id": format!("house{i}"), "users": [{"number": 1, "name": "Alex"}],
          "panels": [{"id": format!("panel{i}"), "name": "Home",
            "monitoring_account": format!("{}", 1000 + i),
            "zones": [{"id": "door", "number": 1, "name": "Door", "kind": "contact", "entry": true}]}]}));
        households.push(json!({"account": format!("house{i}"), "members": [
          {"id": "alex", "name": "Alex", "user_number": 1, "voice_pin": NORMAL, "duress_pin": DURESS}]}));
    }
    json!({"accounts": accounts, "households": households})
}

async fn disarm_as(h: &Harness, house: u32, pin: &str) {
    let t = h.token(&format!("house{house}")).await;
    let r = h
        .invoke(&disarm(&t, &format!("panel{house}"), Some(pin)))
        .await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
}

/// The 121s the operator has, per DC-09 account, by the journal-backed center.
fn duress_dispatches(h: &Harness) -> Vec<(String, Option<u16>)> {
    let mut d: Vec<(String, Option<u16>)> = h
        .stack
        .receiver
        .center()
        .dispatches()
        .into_iter()
        .filter(|d| d.reason == alarm_skill::local::simulator::monitoring::DispatchReason::Duress)
        .map(|d| (d.account, d.user))
        .collect();
    d.sort();
    d
}

async fn wait_received(h: &Harness, at_least: usize) {
    // Up to a minute: returns at the first poll that sees them, so only a hang waits that long.
    for _ in 0..2_400 {
        if h.stack.receiver.center().frames().len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the receiver got fewer than {at_least} frames");
}

/// A backlog of several households' 121s while the receiver is down; the cloud's transmitter
/// crashes and starts again from its queue journal; the receiver comes up, acts on the first
/// frame but crashes before its ACK leaves, and starts again from its own journal while the
/// transmitter crashes once more; another household's duress is queued after the restarts (its
/// sequence number continues, it is not taken for an old one). Every 121 reaches the operator
/// exactly once, and a further restart of the center rebuilds exactly the same.
/// House 4's duress over the panel API's `signals`, as a lockout or a re-delivery sends it,
/// always with the same request id.
async fn house4_duress_signal(h: &Harness) -> reqwest::Response {
    h.http
        .post(format!(
            "http://{}/v1/accounts/house4/panels/panel4/signals",
            h.stack.panel_api.addr()
        ))
        .bearer_auth(h.stack.sim.api_key().expose())
        .json(&json!({"member": 1, "source": "voice", "kind": "duress",
            "request_id": "6f1c2b9e-0d4a-4f3e-9b8a-2c7d5e1f0a93"}))
        .send()
        .await
        .expect("signals")
}

#[tokio::test]
async fn restarts_of_both_ends_mid_backlog_deliver_each_duress_exactly_once() {
    let h = Harness::start_with(Options {
        config: households(),
        dc09_key: Some(Secret::new(KEY)),
        ..test_options()
    })
    .await;
    let link = h.stack.sim.link().expect("DC-09 link").clone();
    receiver(&h, "down").await;
    // Normal and duress disarms mixed: the backlog holds 121s of houses 1 and 2.
    disarm_as(&h, 1, DURESS).await;
    disarm_as(&h, 3, NORMAL).await;
    disarm_as(&h, 2, DURESS).await;
    // House 4's duress comes over the panel API's `signals` (a lockout or a re-delivery): the
    // cloud's acknowledgement means the 121 is on disk, which the crash below checks.
    let signal = house4_duress_signal(&h).await;
    assert_eq!(signal.status(), 200);
    assert_eq!(
        signal.json::<Value>().await.unwrap(),
        json!({"acknowledged": true})
    );
    let backlog = link.queued();
    assert!(backlog >= 3, "queued {backlog}");

    // The cloud's transmitter dies with the receiver down: the queue comes back from disk.
    link.crash_and_restart().expect("transmitter restarts");
    assert_eq!(
        link.queued(),
        backlog,
        "the durable queue survived the crash"
    );
    // The worker sends house 4's request id again (it crashed before settling its record):
    // acknowledged, and the journal knows the 121 is already queued.
    let again = house4_duress_signal(&h).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        link.queued(),
        backlog,
        "no second 121 for the same request id"
    );

    // The receiver comes up but loses its ACKs: it acts on the head of the queue and the
    // answer never leaves. Then both ends crash and start again.
    receiver(&h, "drop_ack").await;
    wait_received(&h, 1).await;
    receiver(&h, "down").await;
    let acted_before_crash = h.stack.receiver.center().events().len();
    assert!(acted_before_crash >= 1);
    h.stack
        .receiver
        .center()
        .crash_and_restart()
        .expect("center restarts");
    assert_eq!(
        h.stack.receiver.center().events().len(),
        acted_before_crash,
        "what the center acted on came back from its journal"
    );
    link.crash_and_restart().expect("transmitter restarts");
    assert_eq!(link.queued(), backlog, "nothing was ACKed");

    // House 3 is coerced after the restarts.
    disarm_as(&h, 3, DURESS).await;
    receiver(&h, "none").await;
    assert!(
        link.settle(Duration::from_secs(20)).await,
        "backlog delivered"
    );

    let expected = vec![
        ("house1".to_string(), Some(1)),
        ("house2".to_string(), Some(1)),
        ("house3".to_string(), Some(1)),
        ("house4".to_string(), Some(1)),
    ];
    assert_eq!(duress_dispatches(&h), expected);
    let received = h.stack.receiver.center().frames();
    assert!(
        received.iter().any(|f| f.duplicate),
        "the frame acted on before the crash came again and was recognised: {received:?}"
    );
    // Each account's sequence numbers continued across the transmitter's restarts.
    let sent = link.sent();
    for acct in ["1001", "1002", "1003", "1004"] {
        let mut seqs: Vec<u16> = sent
            .iter()
            .filter(|f| f.account == acct && f.answer == "ACK")
            .map(|f| f.seq)
            .collect();
        let n = seqs.len();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "{acct}: one ACK per sequence number");
        assert_eq!(seqs, (1..=n as u16).collect::<Vec<_>>(), "{acct}");
    }
    // The operator's record is the journal: a further restart rebuilds the same 121s.
    h.stack
        .receiver
        .center()
        .crash_and_restart()
        .expect("center restarts");
    assert_eq!(duress_dispatches(&h), expected);
    capture(&h, "restarts-mid-backlog-encrypted", Some(KEY)).await;
}

/// The receiver's duplicate rule on its own: a re-send is the same sequence number with the same
/// time of occurrence; a transmitter that starts numbering again at 0001 has its new events acted
/// on, not ACKed and dropped; and a frame without a time of occurrence is a re-send only within
/// the DC-09 time window.
/// A center's clock, frozen: receipt times and the time window are the test's to move.
fn frozen_clock() -> std::sync::Arc<alarm_skill::common::clock::AdjustableClock> {
    std::sync::Arc::new(alarm_skill::common::clock::AdjustableClock::frozen(
        chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .to_utc(),
    ))
}

/// The center's record of the demo household's panel: DC-09 account 1234.
fn subscriber_1234() -> alarm_skill::local::simulator::monitoring::Subscriber {
    alarm_skill::local::simulator::monitoring::Subscriber {
        monitoring_account: "1234".into(),
        account: "demo".into(),
        panel: "home".into(),
        entry_delay_s: 30,
        abort_window_s: 0,
        supervision_grace_s: 30,
    }
}

#[test]
fn duplicates_are_sequence_number_and_time_of_occurrence_not_a_bare_sequence_number() {
    use alarm_skill::common::clock::{AdjustableClock, Clock};
    use alarm_skill::local::simulator::monitoring::MonitoringCenter;
    use alarm_skill::wire::dc09::frame::{self, Cid, MessageId, Route};
    use std::sync::Arc;

    let clock = frozen_clock();
    let dir = std::env::temp_dir().join(format!("dc09-dup-{}", uuid::Uuid::new_v4().simple()));
    let sub = subscriber_1234();
    let center = |clock: &Arc<AdjustableClock>| {
        MonitoringCenter::new(vec![sub.clone()], None, clock.clone())
            .with_journal(&dir)
            .expect("journal")
    };
    let route = Route {
        receiver: Some("1".into()),
        prefix: "1".into(),
        account: "1234".into(),
    };
    let duress = Cid {
        qualifier: 1,
        event: 121,
        partition: 1,
        number: 1,
    };
    let c = center(&clock);
    let send = |c: &MonitoringCenter, seq: u16, occurred| {
        let f =
            frame::encode_event(seq, &route, Some(&duress), occurred, clock.now(), None).unwrap();
        let a = c.handle_frame(f.as_bytes(), false);
        assert_eq!(a.id, MessageId::Ack);
        c.frames().last().unwrap().duplicate
    };
    let t0 = clock.now();
    assert!(!send(&c, 1, t0), "first receipt");
    clock.advance(chrono::Duration::seconds(5));
    assert!(send(&c, 1, t0), "re-send: same seq, same occurrence");
    // The receiver restarts: it still knows the event.
    let c = center(&clock);
    clock.advance(chrono::Duration::seconds(600));
    assert!(
        send(&c, 1, t0),
        "re-send after a receiver restart and long outage"
    );
    // A transmitter that lost its numbering sends a new duress as 0001: a new event.
    let t1 = clock.now();
    assert!(!send(&c, 1, t1), "new event under a reused sequence number");
    let duress_count = c
        .dispatches()
        .iter()
        .filter(|d| d.reason == alarm_skill::local::simulator::monitoring::DispatchReason::Duress)
        .count();
    assert_eq!(duress_count, 2);

    // Without a time of occurrence: a re-send only inside the time window.
    let bare = |c: &MonitoringCenter, seq: u16| {
        let f = frame::encode_event(seq, &route, Some(&duress), t0, clock.now(), None).unwrap();
        let f = f.replace(&format!("[H{}]", t0.format("%H:%M:%S,%m-%d-%Y")), "");
        // Re-wrap: the length and CRC cover the body.
        let body = f.trim_matches(['\n', '\r']);
        let body = &body[8..];
        let f = format!(
            "\n{:04X}0{:03X}{body}\r",
            frame::crc16_arc(body.as_bytes()),
            body.len()
        );
        let a = c.handle_frame(f.as_bytes(), false);
        assert_eq!(a.id, MessageId::Ack, "{f}");
        c.frames().last().unwrap().duplicate
    };
    assert!(!bare(&c, 7));
    clock.advance(chrono::Duration::seconds(30));
    assert!(bare(&c, 7), "inside the window");
    clock.advance(chrono::Duration::seconds(61));
    assert!(!bare(&c, 7), "past the window: a new event");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The local stack as its own process (`alarm-skill serve`), so a test can SIGKILL it.
struct Served {
    child: tokio::process::Child,
    base: String,
    panel_api: String,
}

/// What a test needs to start the stack again and again on the same directory.
struct Killable {
    dir: std::path::PathBuf,
    api_key: String,
    http: reqwest::Client,
}

const WAIT: Duration = Duration::from_secs(30);

impl Killable {
    fn new() -> Killable {
        let dir =
            std::env::temp_dir().join(format!("stack-kill-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), households_json().to_string()).unwrap();
        Killable {
            dir,
            api_key: uuid::Uuid::new_v4().simple().to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Starts `alarm-skill serve` on free ports and this directory's `--monitoring-dir`, and
    /// waits (bounded) for it to print its addresses.
    async fn serve(&self, receiver_mode: Option<&str>, failpoints: Option<&str>) -> Served {
        use std::process::Stdio;
        use tokio::process::Command;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_alarm-skill"));
        cmd.args(support::SERVE_ON_FREE_PORTS)
            .arg("--monitoring-dir")
            .arg(self.dir.join("monitoring"))
            .arg("--config")
            .arg(self.dir.join("config.json"))
            .args(["--dc09-key", KEY])
            .env("PANEL_API_KEY", &self.api_key)
            .env("RUST_LOG", "warn")
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(mode) = receiver_mode {
            cmd.args(["--receiver-mode", mode]);
        }
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f);
        }
        let mut child = cmd.spawn().expect("alarm-skill serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut base, mut panel_api) = (None, None);
        let read = async {
            while base.is_none() || panel_api.is_none() {
                let Some(line) = lines.next_line().await.unwrap() else {
                    break;
                };
                if let Some(url) = line.split(" listening on ").nth(1) {
                    base = Some(url.trim().to_string());
                }
                if let Some(url) = line.split("panel cloud API:").nth(1) {
                    panel_api = Some(url.trim().to_string());
                }
            }
        };
        let printed = tokio::time::timeout(WAIT, read).await.is_ok();
        let (Some(base), Some(panel_api)) = (base, panel_api) else {
            panic!(
                "the stack printed no addresses (in time: {printed}); {}",
                self.stderr()
            );
        };
        // Read to the end: a closed pipe would kill the stack at its next line of output.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Served {
            child,
            base,
            panel_api,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// SIGKILL, and the process is gone.
    async fn kill(&self, mut p: Served) {
        use std::os::unix::process::ExitStatusExt;
        p.child.start_kill().expect("SIGKILL");
        let status = tokio::time::timeout(WAIT, p.child.wait())
            .await
            .expect("the stack died in time")
            .unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    /// `POST .../signals` as the skill (or its re-delivery worker) sends it: true if the cloud
    /// gave exactly the acknowledgement.
    async fn signal(&self, p: &Served, house: u32, kind: &str, request_id: &str) -> bool {
        signal_call(
            self.http.clone(),
            p.panel_api.clone(),
            self.api_key.clone(),
            house,
            kind,
            request_id,
        )
        .await
    }

    async fn get(&self, p: &Served, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", p.base))
            .send()
            .await
            .expect(path);
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn queued(&self, p: &Served) -> u64 {
        self.get(p, "/sim/monitoring/link").await["queued"]
            .as_u64()
            .unwrap()
    }

    /// Polls `check` until it holds, at most [`WAIT`].
    async fn wait_for<F: AsyncFn() -> bool>(&self, what: &str, check: F) {
        let until = tokio::time::Instant::now() + WAIT;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < until,
                "timed out waiting for {what}; {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn signal_call(
    http: reqwest::Client,
    panel_api: String,
    api_key: String,
    house: u32,
    kind: &str,
    request_id: &str,
) -> bool {
    let sent = http
        .post(format!(
            "{panel_api}/v1/accounts/house{house}/panels/panel{house}/signals"
        ))
        .bearer_auth(api_key)
        .json(&json!({"member": 1, "source": "voice", "kind": kind, "request_id": request_id}))
        .send()
        .await;
    match sent {
        Ok(r) if r.status() == 200 => {
            r.json::<Value>().await.ok() == Some(json!({"acknowledged": true}))
        }
        _ => false,
    }
}

/// The 121s in the cloud's queue journal (`cloud/dc09-queue.jsonl`): read from disk, because
/// the process is held at a crash point and may not answer.
fn duress_lines_on_disk(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("monitoring/cloud/dc09-queue.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            // A duress's own record, or its pending 121 as a journal rewrite keeps it.
            l.contains(r#""op":"decision","kind":"duress""#)
                || (l.contains(r#""op":"queued""#) && l.contains(r#""event":121"#))
        })
        .count()
}

/// The whole local stack, as its own process, is SIGKILLed twice mid-backlog and started again
/// on the same `--monitoring-dir`: once held between the cloud's durable decision on a duress
/// signal and its acknowledgement, once while its receiver (same process) has acted on a frame
/// whose ACK never left. After each restart the skill's worker re-sends every request id, as it
/// does for a signal it never saw acknowledged and for one whose record it could not settle
/// (a crash between the cloud's acknowledgement and its own settle), including a disarm's id
/// re-sent as a signal. Each 121 reaches the operator exactly once; a normal code's id none.
#[tokio::test]
async fn a_killed_stack_process_restarted_on_its_monitoring_dir_raises_each_duress_once() {
    const R1: &str = "0d6c3a52-1e7b-4c2a-9a0e-5b8f1d2c3e41";
    const R2: &str = "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a02";
    const R3: &str = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c63";
    const R4: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e74";
    let all = [
        (1, "duress", R1),
        (2, "normal", R2),
        (3, "duress", R3),
        (4, "duress", R4),
    ];
    let k = Killable::new();

    // Process 1, receiver down: the cloud acknowledges two signals and a duress disarm; the
    // third signal is held after its decision is on disk, before any acknowledgement leaves.
    let point = alarm_skill::local::simulator::SIGNAL_DECIDED;
    let p1 = k
        .serve(Some("down"), Some(&format!("{point}=2*off->pause")))
        .await;
    assert!(k.signal(&p1, 1, "duress", R1).await);
    assert!(k.signal(&p1, 2, "normal", R2).await);
    let disarm = k
        .http
        .post(format!(
            "{}/v1/accounts/house3/panels/panel3/disarm",
            p1.panel_api
        ))
        .bearer_auth(&k.api_key)
        .json(&json!({"member": 1, "source": "voice", "kind": "duress", "request_id": R3}))
        .send()
        .await
        .unwrap();
    assert_eq!(disarm.status(), 200);
    let backlog = k.queued(&p1).await;
    assert_eq!(duress_lines_on_disk(&k.dir), 2);
    let held = tokio::spawn(signal_call(
        k.http.clone(),
        p1.panel_api.clone(),
        k.api_key.clone(),
        4,
        "duress",
        R4,
    ));
    k.wait_for("house 4's 121 on disk", async || {
        duress_lines_on_disk(&k.dir) == 3
    })
    .await;
    assert!(
        !held.is_finished(),
        "held at the crash point, not acknowledged"
    );
    k.kill(p1).await;
    assert!(
        !held.await.unwrap(),
        "the kill came before the acknowledgement"
    );
    let backlog = backlog + 1;

    // Process 2 on the same directory, receiver still down: the backlog is back from disk, and
    // the worker re-sends all four ids (R4 was never acknowledged; the others as after its own
    // crash before settling). Then the receiver acts on the head of the backlog, its ACK is
    // lost, and the process is killed again.
    let p2 = k.serve(Some("down"), None).await;
    assert_eq!(
        k.queued(&p2).await,
        backlog,
        "the backlog came back from disk"
    );
    for (house, kind, id) in all {
        assert!(k.signal(&p2, house, kind, id).await, "{id} acknowledged");
    }
    let queued_after_resend = k.queued(&p2).await;
    k.http
        .post(format!("{}/sim/monitoring/receiver", p2.base))
        .json(&json!({"mode": "drop_ack"}))
        .send()
        .await
        .unwrap();
    k.wait_for("the receiver to act on a frame", async || {
        let l = k.get(&p2, "/sim/monitoring/link").await;
        !l["received"].as_array().unwrap().is_empty()
    })
    .await;
    k.kill(p2).await;

    // Process 3, receiver up: the worker re-sends once more; the backlog drains.
    let p3 = k.serve(None, None).await;
    for (house, kind, id) in all {
        assert!(k.signal(&p3, house, kind, id).await, "{id} acknowledged");
    }
    k.wait_for("the backlog to drain", async || k.queued(&p3).await == 0)
        .await;
    let dispatches = k.get(&p3, "/sim/monitoring/dispatches").await;
    let mut duress: Vec<(String, u64)> = dispatches
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"] == "duress")
        .map(|d| {
            (
                d["account"].as_str().unwrap().to_string(),
                d["user"].as_u64().unwrap(),
            )
        })
        .collect();
    duress.sort();
    let once = |h: &str| (h.to_string(), 1);
    assert_eq!(
        duress,
        [once("house1"), once("house3"), once("house4")],
        "each duress exactly once at the operator, across two kills and three processes"
    );
    assert_eq!(
        queued_after_resend, backlog,
        "re-sent request ids queued nothing new"
    );
    let link = k.get(&p3, "/sim/monitoring/link").await;
    let received = link["received"].as_array().unwrap();
    assert!(
        received.iter().any(|f| f["duplicate"] == true),
        "the frame acted on before the second kill came again and was recognised: {received:?}"
    );
    k.kill(p3).await;
}

// ---- equal work and constant cost of the reference cloud's journal -------------------------
//
// Asserted on the work itself (records, bytes, syncs, journal rewrites), never on time: the
// timing check is the conformance kit's and benches/refcloud_cost.rs's.

fn disarm_request(kind: AttemptKind) -> DisarmRequest {
    DisarmRequest {
        member: Some(1),
        source: Source::Voice,
        kind,
        request_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: Some(chrono::Utc::now()),
    }
}

fn arm_request() -> ArmRequest {
    ArmRequest {
        mode: ArmMode::Away,
        bypass_open_zones: false,
        source: Source::Voice,
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// The cloud's queue journal, read straight from disk.
fn journal(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("cloud/dc09-queue.jsonl")).unwrap_or_default()
}

/// A normal and a duress disarm make the same durable writes before the cloud answers: one
/// decision record each, of one length, with the kind inside, and the same syncs and bytes;
/// the 121 is queued by the duress record itself. On old main the duress wrote a 121 record
/// and the normal one a shorter `decided` record: the journal grew by different amounts.
#[tokio::test]
async fn a_normal_and_a_duress_disarm_make_the_same_durable_writes() {
    let dir = std::env::temp_dir().join(format!("equal-work-{}", uuid::Uuid::new_v4().simple()));
    let h = Harness::start_with(Options {
        config: config(0, false),
        // Nothing is ACKed, so the journal holds exactly what the requests wrote.
        receiver_mode: ReceiverMode::Down,
        monitoring_dir: Some(dir.clone()),
        ..test_options()
    })
    .await;
    let sim = &h.stack.sim;
    let link = sim.link().expect("the stack has a DC-09 link");
    let mut grown: Vec<(AttemptKind, usize, usize)> = Vec::new();
    let mut writes = Vec::new();
    for round in 0..6 {
        let kind = if round % 2 == 0 {
            AttemptKind::Normal
        } else {
            AttemptKind::Duress
        };
        sim.arm("demo", "home", &arm_request()).expect("armed");
        // Past the exit delay: the panel reports its closing, so the disarm reports an opening.
        sim.advance(chrono::Duration::seconds(61));
        let (before, lines, stats) = (
            journal(&dir).len(),
            journal(&dir).lines().count(),
            link.journal_stats(),
        );
        let view = sim
            .disarm("demo", "home", &disarm_request(kind))
            .expect("disarmed");
        assert_eq!(
            view.arm_state,
            alarm_skill::domain::ports::panel::ArmState::Disarmed
        );
        let after = link.journal_stats();
        let text = journal(&dir);
        grown.push((kind, text.len() - before, text.lines().count() - lines));
        writes.push((
            kind,
            after.requests.records - stats.requests.records,
            after.requests.bytes - stats.requests.bytes,
            after.requests.syncs - stats.requests.syncs,
            after.normal_decisions - stats.normal_decisions,
            after.duress_decisions - stats.duress_decisions,
        ));
    }
    let normal = grown[0];
    for g in &grown {
        assert_eq!(
            (g.1, g.2),
            (normal.1, normal.2),
            "journal growth differs by kind: {grown:?}"
        );
    }
    let (n, d) = (writes[0], writes[1]);
    assert_eq!(
        (n.1, n.2, n.3),
        (d.1, d.2, d.3),
        "writes differ by kind: {writes:?}"
    );
    assert!(
        n.3 >= 2,
        "the decision and the opening report are synced: {writes:?}"
    );
    assert_eq!(
        (n.4, n.5, d.4, d.5),
        (1, 0, 0, 1),
        "the kind is inside the record: {writes:?}"
    );
    for w in &writes {
        let same = if w.0 == AttemptKind::Normal { n } else { d };
        assert_eq!(w, &same, "every round writes alike: {writes:?}");
    }
    // The kind is a field of one record shape: the duress records queue the three 121s, and
    // every record on the request's path has one length.
    let text = journal(&dir);
    assert_eq!(text.matches(r#""kind":"duress""#).count(), 3);
    assert_eq!(text.matches(r#""kind":"normal""#).count(), 3);
    let lens: std::collections::BTreeSet<usize> = text.lines().map(str::len).collect();
    assert_eq!(lens.len(), 1, "line lengths {lens:?}");
    // Three 121s, six closings and six openings: nothing lost.
    assert_eq!(link.queued(), 3 + 6 * 2);
    // Restart-safe: what is on disk is the queue, each 121 once.
    link.crash_and_restart().expect("restart");
    assert_eq!(link.queued(), 15);
    assert_eq!(duress_lines(&journal(&dir)), 3);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

fn duress_lines(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            l.contains(r#""kind":"duress""#)
                || (l.contains(r#""op":"queued""#) && l.contains(r#""event":121"#))
        })
        .count()
}

/// A request's journal work stays bounded whatever the cloud's history: once the window holds
/// thousands of handled request ids, a request still costs one append, and the journal is
/// rewritten once per as many requests as the rewrite keeps records (amortised O(1)). On old
/// main the journal was rewritten, ids and all, on every request once 1,000 ids were held.
#[tokio::test]
async fn journal_work_per_request_stays_bounded_after_thousands_of_requests() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("constant-cost-{}", uuid::Uuid::new_v4().simple()));
    let h = Harness::start_with(Options {
        config: config(0, false),
        monitoring_dir: Some(dir.clone()),
        ..test_options()
    })
    .await;
    let sim = &h.stack.sim;
    let link = sim.link().expect("the stack has a DC-09 link");
    let inode = || {
        std::fs::metadata(dir.join("cloud/dc09-queue.jsonl"))
            .expect("journal")
            .ino()
    };
    const REQUESTS: usize = 3_000;
    let late_from = 2 * REQUESTS / 3;
    let mut rewrites_late = 0;
    let mut last = inode();
    let mut ids = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        // The panel is disarmed: each request is the decision alone, the journal's only work.
        let req = disarm_request(AttemptKind::of(i % 2 == 1));
        sim.disarm("demo", "home", &req).expect("decided");
        ids.push(req.request_id);
        if i >= late_from {
            let now = inode();
            rewrites_late += usize::from(now != last);
            last = now;
        }
    }
    let stats = link.journal_stats();
    // Rewrites come ever further apart as the window grows: at most two in the last thousand
    // requests (old main: one per request).
    assert!(
        rewrites_late <= 2,
        "the journal was rewritten {rewrites_late} times in the last {} requests",
        REQUESTS - late_from
    );
    assert_eq!(
        stats.requests.records, REQUESTS as u64,
        "one record per request"
    );
    assert_eq!(
        stats.requests.syncs, REQUESTS as u64,
        "one sync per request"
    );
    // Each rewrite keeps at most as many records as were appended since the one before, so all
    // rewrites together keep at most twice what was appended (plus the journal at start).
    let appended = stats.requests.records + stats.acks.records;
    assert!(stats.rewrites.records <= 2 * appended + 10, "{stats:?}");
    // Nothing forgotten: every id is still handled, after a restart too, and a repeated duress
    // id queues its 121 once.
    link.crash_and_restart().expect("restart");
    assert!(ids.iter().all(|id| link.handled(id)), "every id handled");
    let again = disarm_request(AttemptKind::Duress);
    sim.disarm("demo", "home", &again).expect("decided");
    sim.disarm("demo", "home", &again).expect("repeated");
    assert_eq!(
        link.journal_stats().duress_decisions,
        1,
        "one 121 for one request id"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One dispatch, two paths (docs/panel-api.md, "Merging the two paths"): the panel cloud's
/// link and the skill's second path are two lines of account 1234, each with its own sequence
/// numbers, sending to a real receiver over TCP, encrypted. The center with a journal, crashed
/// and restarted between two copies in one case.
mod two_paths {
    use super::KEY;
    use crate::support::dc09;
    use alarm_skill::common::clock::{AdjustableClock, Clock};
    use alarm_skill::common::secret::Secret;
    use alarm_skill::local::simulator::monitoring::receiver::Dc09Receiver;
    use alarm_skill::local::simulator::monitoring::{
        DispatchReason, EventPath, MonitoringCenter, SECOND_PATH_LINE,
    };
    use alarm_skill::wire::dc09::frame::{Key, MessageId};
    use chrono::{DateTime, Duration, Utc};
    use std::sync::Arc;

    /// The panel cloud's line (the local stack's `LinkConfig.account_prefix`).
    const CLOUD: &str = "1";

    struct Center {
        clock: Arc<AdjustableClock>,
        dir: std::path::PathBuf,
        key: Key,
        receiver: Arc<Dc09Receiver>,
        sent: Vec<serde_json::Value>,
    }

    impl Center {
        async fn start() -> Center {
            let clock = super::frozen_clock();
            let dir =
                std::env::temp_dir().join(format!("two-paths-{}", uuid::Uuid::new_v4().simple()));
            let key = Key::from_hex(&Secret::new(KEY)).unwrap();
            let center = Arc::new(
                MonitoringCenter::new(
                    vec![super::subscriber_1234()],
                    Some(key.clone()),
                    clock.clone(),
                )
                .with_journal(&dir)
                .unwrap(),
            );
            let receiver = Dc09Receiver::start("127.0.0.1:0".parse().unwrap(), center)
                .await
                .unwrap();
            Center {
                clock,
                dir,
                key,
                receiver,
                sent: vec![],
            }
        }

        /// A 121 of `user` that occurred at `occurred`, on `line` with sequence number `seq`,
        /// over a connection of its own as each transmitter has; the receiver must ACK it.
        async fn duress(&mut self, line: &str, seq: u16, user: u16, occurred: DateTime<Utc>) {
            let (f, answer) = dc09::send(
                self.receiver.addr(),
                &dc09::route("1234", line),
                seq,
                &dc09::event(121, user),
                occurred,
                self.clock.now(),
                Some(&self.key),
            )
            .await;
            assert_eq!(answer.id, MessageId::Ack, "{f:?}");
            // As `/sim/monitoring/link` lists the cloud's, for CI's decoding with pysiaalarm.
            self.sent.push(serde_json::json!({
                "frame": f, "account": "1234", "seq": seq, "encrypted": true,
                "qualifier": 1, "code": "121", "partition": 1, "number": user,
            }));
        }

        fn center(&self) -> &MonitoringCenter {
            self.receiver.center()
        }

        fn duresses(&self) -> usize {
            self.center()
                .dispatches()
                .iter()
                .filter(|d| d.reason == DispatchReason::Duress)
                .count()
        }

        /// The second path's copy dispatched, the cloud's merged into it.
        fn one_dispatch_the_cloud_copy_merged(&self) {
            assert_eq!(self.duresses(), 1);
            assert_eq!(
                self.merged(),
                vec![
                    (EventPath::SecondPath, false),
                    (EventPath::PanelCloud, true)
                ]
            );
        }

        fn merged(&self) -> Vec<(EventPath, bool)> {
            self.center()
                .received()
                .iter()
                .map(|r| (r.path, r.merged))
                .collect()
        }

        fn later(&self, s: i64) {
            self.clock.advance(Duration::seconds(s));
        }
    }

    impl Drop for Center {
        fn drop(&mut self) {
            crate::support::record_dc09_frames(
                &format!("two-paths-{}", uuid::Uuid::new_v4().simple()),
                &self.sent,
                Some(KEY),
            );
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn two_copies_of_one_duress_make_one_dispatch() {
        let mut c = Center::start().await;
        let t = c.clock.now();
        c.duress(SECOND_PATH_LINE, 1, 1, t).await;
        c.later(1800);
        c.duress(CLOUD, 42, 1, t).await;
        c.one_dispatch_the_cloud_copy_merged();
        // A re-send of either copy is still a re-send: nothing new received.
        c.later(5);
        c.duress(CLOUD, 42, 1, t).await;
        c.duress(SECOND_PATH_LINE, 1, 1, t).await;
        assert_eq!(c.center().received().len(), 2);
        let resends = c.center().frames().iter().filter(|f| f.duplicate).count();
        assert_eq!(resends, 2);
    }

    #[tokio::test]
    async fn two_duresses_of_one_user_or_two_users_are_two_dispatches() {
        let mut c = Center::start().await;
        let t = c.clock.now();
        let again = t + Duration::seconds(20);
        c.duress(SECOND_PATH_LINE, 1, 1, t).await;
        c.later(20);
        // The same user's second duress, 20 s later, reaching the center on the other path.
        c.duress(CLOUD, 7, 1, again).await;
        // Another user, at the very second of the first.
        c.duress(CLOUD, 8, 2, t).await;
        assert_eq!(c.duresses(), 3);
        assert!(c.merged().iter().all(|(_, merged)| !merged));
    }

    #[tokio::test]
    async fn the_merge_holds_across_a_center_crash_between_the_copies() {
        let mut c = Center::start().await;
        let t = c.clock.now();
        c.duress(SECOND_PATH_LINE, 1, 1, t).await;
        c.center().crash_and_restart().unwrap();
        c.later(600);
        c.duress(CLOUD, 3, 1, t).await;
        c.one_dispatch_the_cloud_copy_merged();
    }
}

/// The local stack runs the second path by default (issue 26, item 6): its reference cloud
/// reports this stack's receiver, on `SECOND_PATH_LINE`, as the panels' monitoring details,
/// naming the key (never giving it) when the link is encrypted; `second_path: false` reports
/// none.
#[tokio::test]
async fn the_local_stack_reports_its_center_for_the_second_path_when_on() {
    use alarm_skill::local::simulator::monitoring::{SECOND_PATH_KEY_REF, SECOND_PATH_LINE};
    let h = stack(config(30, true), Some(KEY)).await;
    let second = link(&h).await["second_path"].clone();
    assert_eq!(
        second,
        json!({
            "receiver": h.stack.receiver.addr().to_string(),
            "receiver_number": "1",
            "key_ref": SECOND_PATH_KEY_REF,
        })
    );
    let details = h.stack.sim.second_path().expect("on").link("1234");
    assert_eq!(
        (details.account.as_str(), details.line.as_str()),
        ("1234", SECOND_PATH_LINE)
    );
    assert!(!second.to_string().contains(KEY), "never the key itself");
    let clear = stack(config(30, true), None).await;
    assert_eq!(link(&clear).await["second_path"]["key_ref"], Value::Null);
    let off = Harness::start_with(Options {
        second_path: false,
        ..test_options()
    })
    .await;
    assert_eq!(link(&off).await["second_path"], Value::Null);
}
