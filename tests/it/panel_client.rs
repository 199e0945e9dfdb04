//! The production panel cloud client against a real HTTP server that answers what a broken or
//! half-deployed vendor cloud might: 404s with and without the contract's body, acks that are
//! empty or negative. What the client makes of them decides whether a duress can be lost.

use crate::support;
use std::sync::{Arc, Mutex};

use crate::support::logs::Capture;
use alarm_skill::adapters::panel::HttpPanelCloud;
use alarm_skill::adapters::store::memory::MemoryStore;
use alarm_skill::common::clock::SystemClock;
use alarm_skill::common::deadline::Deadline;
use alarm_skill::common::secret::Secret;
use alarm_skill::domain::ports::panel::{
    AttemptKind, Notice, PanelCloud, PanelError, SignalRequest, Source,
};
use alarm_skill::domain::ports::store::{OutboxRecord, OutboxStatus, Store};
use alarm_skill::domain::redelivery::seal::{self, Sealed};
use alarm_skill::domain::voice_codes::Keyring;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the fake cloud answers, changeable while it runs; and the signals it received.
#[derive(Clone)]
struct Cloud {
    reply: Arc<Mutex<(StatusCode, Value)>>,
    signals: Arc<Mutex<Vec<Value>>>,
}

async fn answer(State(c): State<Cloud>) -> impl IntoResponse {
    let (status, body) = c.reply.lock().unwrap().clone();
    (status, axum::Json(body))
}

async fn signal(State(c): State<Cloud>, axum::Json(body): axum::Json<Value>) -> impl IntoResponse {
    c.signals.lock().unwrap().push(body);
    answer(State(c)).await
}

async fn cloud() -> (Cloud, HttpPanelCloud) {
    let c = Cloud {
        reply: Arc::new(Mutex::new((StatusCode::OK, json!({})))),
        signals: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/accounts/{a}/panels", get(answer))
        .route("/v1/accounts/{a}/panels/{p}", get(answer))
        .route("/v1/accounts/{a}/panels/{p}/signals", post(signal))
        .route("/v1/accounts/{a}/notifications", post(answer))
        .with_state(c.clone());
    let addr = support::serve(app).await;
    let client = HttpPanelCloud::new(&format!("http://{addr}"), Secret::new("key")).unwrap();
    (c, client)
}

fn set(c: &Cloud, status: u16, body: Value) {
    *c.reply.lock().unwrap() = (StatusCode::from_u16(status).unwrap(), body);
}

fn deadline() -> Deadline {
    Deadline::after(std::time::Duration::from_secs(2))
}

fn signal_request() -> SignalRequest {
    SignalRequest {
        member: Some(1),
        source: Source::Voice,
        kind: AttemptKind::Duress,
        request_id: "req-1".into(),
        occurred_at: Some("2026-11-25T10:00:00Z".parse().unwrap()),
    }
}

#[tokio::test]
async fn only_the_contracts_panel_not_found_means_no_such_panel() {
    let (c, client) = cloud().await;
    set(&c, 404, json!({"error": "panel_not_found"}));
    assert_eq!(
        client.panel("acct", "home", deadline()).await,
        Err(PanelError::NotFound)
    );
    // A gateway's 404, an empty body, another error code: an outage, retried and transient.
    for body in [
        json!({"message": "Not Found"}),
        Value::Null,
        json!({"error": "no_route"}),
    ] {
        set(&c, 404, body.clone());
        let e = client.panel("acct", "home", deadline()).await.unwrap_err();
        assert_eq!(e, PanelError::Server(404), "{body}");
        assert!(e.is_transient());
    }
}

#[tokio::test]
async fn a_signal_or_notice_counts_only_when_acknowledged() {
    let (c, client) = cloud().await;
    let notice = Notice {
        kind: "voice_pin_lockout".into(),
        message: "locked".into(),
    };
    for body in [
        json!({}),
        json!({"acknowledged": false}),
        json!({"ok": true}),
        json!([]),
    ] {
        set(&c, 200, body.clone());
        let e = client
            .signal("acct", "home", &signal_request(), deadline())
            .await
            .unwrap_err();
        assert!(matches!(e, PanelError::Protocol(_)), "{body}: {e:?}");
        assert!(
            client.notify("acct", &notice, deadline()).await.is_err(),
            "{body}"
        );
    }
    set(&c, 200, json!({"acknowledged": true}));
    client
        .signal("acct", "home", &signal_request(), deadline())
        .await
        .unwrap();
    client.notify("acct", &notice, deadline()).await.unwrap();
}

/// A pending duress, sealed as the disarm flow seals it.
fn pending(keyring: &Keyring) -> OutboxRecord {
    let request_id = "req-pending".to_string();
    let sealed = seal::seal(
        keyring,
        seal::Binding {
            request_id: &request_id,
            household: "acct",
            panel: "home",
        },
        Sealed {
            duress: true,
            member: Some(1),
        },
    );
    let a_minute_ago = chrono::Utc::now() - chrono::Duration::minutes(1);
    OutboxRecord {
        attempts: 1,
        ..OutboxRecord::pending(
            request_id,
            "acct",
            "home",
            sealed,
            a_minute_ago,
            a_minute_ago,
        )
    }
}

async fn worker_keeps_an_unacknowledged_duress_pending(store: &dyn Store) {
    let (c, client) = cloud().await;
    let keyring = Keyring::random();
    let record = pending(&keyring);
    store.put_outbox(&record, None).await.unwrap();
    let pass = || {
        alarm_skill::domain::redelivery::run_once(
            store,
            &client,
            &keyring,
            &SystemClock,
            10,
            Deadline::after(std::time::Duration::from_secs(30)),
        )
    };
    set(&c, 200, json!({}));
    let report = pass().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (0, 1), "{report:?}");
    let stored = store
        .outbox_record(&record.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.status, stored.attempts), (OutboxStatus::Pending, 2));
    // The duress flag and the member went out, with the original request id.
    let sent = c.signals.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (&sent[0]["kind"], &sent[0]["member"], &sent[0]["request_id"]),
        (&json!("duress"), &json!(1), &json!("req-pending"))
    );

    // Acknowledged at last (the retry is due at once: the test moves its record's time back).
    set(&c, 200, json!({"acknowledged": true}));
    store
        .settle_outbox(
            &record.request_id,
            &alarm_skill::domain::ports::store::Settlement::Retry {
                attempts: 2,
                next_attempt_at: chrono::Utc::now() - chrono::Duration::seconds(1),
                receiver_acked: false,
            },
            None,
        )
        .await
        .unwrap();
    let report = pass().await.unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");
    let stored = store
        .outbox_record(&record.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, OutboxStatus::Delivered);
}

#[tokio::test]
async fn the_worker_keeps_an_unacknowledged_duress_pending_in_memory() {
    worker_keeps_an_unacknowledged_duress_pending(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_worker_keeps_an_unacknowledged_duress_pending_on_dynamodb() {
    let (client, table) = support::stack::dynamodb_table("panel-client").await;
    let store = alarm_skill::adapters::store::dynamodb::DynamoStore::new(client, table);
    worker_keeps_an_unacknowledged_duress_pending(&store).await;
}

/// A panel cloud that records every request exactly as it arrived on the socket (head and body)
/// and answers `disarm` with a panel and `signals` with an acknowledgement.
async fn raw_cloud() -> (Arc<Mutex<Vec<Vec<u8>>>>, HttpPanelCloud) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: the head up to the blank line, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let request: Vec<u8> = buf.drain(..head_end + len).collect();
                    let reply = if head.contains("/signals ") {
                        json!({"acknowledged": true})
                    } else {
                        json!({
                            "id": "home", "name": "Home", "manufacturer": "Acme", "model": "AP-100",
                            "arm_state": "disarmed", "phase": "disarmed", "delay_remaining_s": 0,
                            "supported_arm_states": ["armed_away"], "exit_delay_s": 60,
                            "entry_delay_s": 30,
                            "alarms": {"burglary": false, "fire": false,
                                       "carbon_monoxide": false, "water": false},
                            "trouble": [], "online": true, "zones": [],
                            "as_of": "2026-11-25T10:00:00Z"
                        })
                    }
                    .to_string();
                    log.lock().unwrap().push(request);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    if sock.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = HttpPanelCloud::new(&format!("http://{addr}"), Secret::new("key")).unwrap();
    (seen, client)
}

/// The normal and the duress request as the cloud received them: the same length, and the same
/// bytes once the kind's value is swapped. Nothing else (headers, field order, spacing) differs.
fn assert_same_but_kind(normal: &[u8], duress: &[u8]) {
    let (n, d) = (
        String::from_utf8(normal.to_vec()).unwrap(),
        String::from_utf8(duress.to_vec()).unwrap(),
    );
    assert_eq!(n.len(), d.len(), "normal:\n{n}\nduress:\n{d}");
    assert_eq!(n.matches(r#""kind":"normal""#).count(), 1, "{n}");
    assert_eq!(d.matches(r#""kind":"duress""#).count(), 1, "{d}");
    assert_eq!(d.replace(r#""kind":"duress""#, r#""kind":"normal""#), n);
    let differing: Vec<usize> = (0..n.len()).filter(|&i| normal[i] != duress[i]).collect();
    let value = n.find(r#""kind":"normal""#).unwrap() + r#""kind":""#.len();
    assert!(
        differing.iter().all(|i| (value..value + 6).contains(i)),
        "bytes differ outside the kind's value: {differing:?}"
    );
}

#[tokio::test]
async fn a_duress_and_a_normal_attempt_send_the_same_bytes_but_the_kind() {
    use alarm_skill::domain::ports::panel::DisarmRequest;
    let (seen, client) = raw_cloud().await;
    for kind in [AttemptKind::Normal, AttemptKind::Duress] {
        let disarm = DisarmRequest {
            member: Some(1),
            source: Source::Voice,
            kind,
            request_id: "0b7f2c1e-5d9a-4b8e-a7c3-2f6d1e9b0a44".into(),
            occurred_at: Some("2026-11-25T10:00:00.123Z".parse().unwrap()),
        };
        client
            .disarm("acct", "home", &disarm, deadline())
            .await
            .unwrap();
    }
    for kind in [AttemptKind::Normal, AttemptKind::Duress] {
        let signal = SignalRequest {
            kind,
            request_id: "0b7f2c1e-5d9a-4b8e-a7c3-2f6d1e9b0a44".into(),
            ..signal_request()
        };
        client
            .signal("acct", "home", &signal, deadline())
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one request per call, no retries");
    assert!(seen[0].starts_with(b"POST /v1/accounts/acct/panels/home/disarm "));
    assert!(seen[2].starts_with(b"POST /v1/accounts/acct/panels/home/signals "));
    assert_same_but_kind(&seen[0], &seen[1]);
    assert_same_but_kind(&seen[2], &seen[3]);
}

/// What the client logs from INFO up, and the subscriber that writes it there.
fn capture() -> (Capture, tracing::Dispatch) {
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(logs.clone())
        .finish();
    (logs, subscriber.into())
}

/// Where a record was moved to by whoever can write the table.
#[derive(Clone, Copy, Debug)]
enum Moved {
    Household,
    Panel,
}

impl Moved {
    /// The attribute edited, and its new value.
    fn edit(self) -> (&'static str, &'static str) {
        match self {
            Moved::Household => ("household", "other"),
            Moved::Panel => ("panel", "cabin"),
        }
    }
}

/// The worker over a sealed duress of "acct"/"home" that was moved in the store: nothing is sent
/// anywhere (least of all a 121 for the other premises), the record stays pending with its
/// attempt counted, and the log names it as an unreadable seal.
async fn a_moved_duress_stays_pending(
    store: &dyn Store,
    keyring: &Keyring,
    record: &OutboxRecord,
    moved: Moved,
) {
    let (c, client) = cloud().await;
    set(&c, 200, json!({"acknowledged": true}));
    let (logs, dispatch) = capture();
    // The test runtime is single-threaded: the worker's events all reach this subscriber.
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let stored = store
        .outbox_record(&record.request_id)
        .await
        .unwrap()
        .unwrap();
    let (_, value) = moved.edit();
    let now_at = match moved {
        Moved::Household => &stored.household,
        Moved::Panel => &stored.panel,
    };
    assert_eq!(now_at, value, "the record was moved before the worker runs");
    let report = alarm_skill::domain::redelivery::run_once(
        store,
        &client,
        keyring,
        &SystemClock,
        10,
        Deadline::after(std::time::Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.delivered, report.retrying),
        (0, 1),
        "{moved:?}: {report:?}"
    );
    assert!(
        c.signals.lock().unwrap().is_empty(),
        "{moved:?}: a moved seal was delivered"
    );
    let after = store
        .outbox_record(&record.request_id)
        .await
        .unwrap()
        .expect("the record is never dropped");
    assert_eq!(
        (after.status, after.attempts),
        (OutboxStatus::Pending, 2),
        "{moved:?}"
    );
    let logged = logs.text();
    assert!(
        logged.contains("outbox_seal_unreadable")
            && logged.contains(&record.request_id)
            && logged.contains(value),
        "{moved:?}: {logged}"
    );
}

#[tokio::test]
async fn a_duress_moved_to_another_household_or_panel_is_not_delivered_in_memory() {
    // The memory store has no table to edit: the record is written there with the moved
    // household or panel and the original seal, which is what an edit of the table leaves.
    for moved in [Moved::Household, Moved::Panel] {
        let store = MemoryStore::new();
        let keyring = Keyring::random();
        let genuine = pending(&keyring);
        let (_, value) = moved.edit();
        let forged = match moved {
            Moved::Household => OutboxRecord {
                household: value.into(),
                ..genuine
            },
            Moved::Panel => OutboxRecord {
                panel: value.into(),
                ..genuine
            },
        };
        store.put_outbox(&forged, None).await.unwrap();
        a_moved_duress_stays_pending(&store, &keyring, &forged, moved).await;
    }
}

#[tokio::test]
async fn a_duress_moved_to_another_household_or_panel_is_not_delivered_on_dynamodb() {
    let (client, table) = support::stack::dynamodb_table("panel-client").await;
    let store =
        alarm_skill::adapters::store::dynamodb::DynamoStore::new(client.clone(), table.clone());
    for moved in [Moved::Household, Moved::Panel] {
        let keyring = Keyring::random();
        let record = OutboxRecord {
            request_id: format!("req-moved-{moved:?}"),
            ..pending(&keyring)
        };
        let record = OutboxRecord {
            seal: seal::seal(
                &keyring,
                seal::Binding {
                    request_id: &record.request_id,
                    household: "acct",
                    panel: "home",
                },
                Sealed {
                    duress: true,
                    member: Some(1),
                },
            ),
            ..record
        };
        store.put_outbox(&record, None).await.unwrap();
        // Whoever can write the table edits the item's attribute in place.
        let (field, value) = moved.edit();
        use alarm_skill::adapters::store::dynamodb::{PK, SK};
        use aws_sdk_dynamodb::types::AttributeValue as AV;
        client
            .update_item()
            .table_name(&table)
            .key(PK, AV::S(format!("OUTBOX#{}", record.request_id)))
            .key(SK, AV::S("OUTBOX".into()))
            .update_expression("SET #f = :v")
            .expression_attribute_names("#f", field)
            .expression_attribute_values(":v", AV::S(value.into()))
            .send()
            .await
            .unwrap();
        a_moved_duress_stays_pending(&store, &keyring, &record, moved).await;
    }
}

/// A panel as the contract shows it, with `monitoring` as given (`Null`: none).
fn panel_body(id: &str, monitoring: Value) -> Value {
    let mut panel = json!({
        "id": id, "name": "Home", "manufacturer": "Acme", "model": "AP-100",
        "arm_state": "disarmed", "phase": "disarmed", "delay_remaining_s": 0,
        "supported_arm_states": ["armed_away"], "exit_delay_s": 60, "entry_delay_s": 30,
        "alarms": {"burglary": false, "fire": false, "carbon_monoxide": false, "water": false},
        "trouble": [], "online": true, "zones": [], "as_of": "2026-11-25T10:00:00Z"
    });
    if !monitoring.is_null() {
        panel["monitoring"] = monitoring;
    }
    panel
}

const SECRET_NAME: &str = "dc09/acct-1234-key";

fn good_link() -> Value {
    json!({"receiver": "receiver.example.net:9000", "account": "1234", "line": "2",
           "receiver_number": "1", "key_ref": SECRET_NAME})
}

/// Three panels: `a` with good details, `b` with `field` of them set to `value`, `c` without.
fn listing(field: &str, value: Value) -> Value {
    let mut bad = good_link();
    bad[field] = value;
    json!({"panels": [panel_body("a", good_link()), panel_body("b", bad), panel_body("c", Value::Null)]})
}

#[test]
fn monitoring_details_off_the_contract_are_dropped_with_the_panel_kept() {
    let (logs, dispatch) = capture();
    support::logs::run(dispatch, 0, async {
        let (c, client) = cloud().await;
        set(&c, 200, panel_body("home", good_link()));
        let link = client.panel("acct", "home", deadline()).await.unwrap();
        let link = link
            .monitoring
            .expect("details in the contract's formats are kept");
        assert_eq!(
            (
                link.receiver.as_str(),
                link.account.as_str(),
                link.line.as_str()
            ),
            ("receiver.example.net:9000", "1234", "2")
        );
        assert_eq!(link.key_ref.as_deref(), Some(SECRET_NAME));
        // Each breaks one format; the panel call still answers, without details.
        let key = "30313233343536373839414243444546";
        let bad = [
            ("account", json!({"account": "12G4"})),
            ("receiver", json!({"receiver": "receiver.example.net"})),
            ("line", json!({"line": 2})),
            ("receiver_number", json!({"receiver_number": "1234567"})),
            ("key_ref", json!({"key_ref": key})),
            ("key_ref", json!({"key_ref": format!("{SECRET_NAME} x")})),
            ("monitoring", json!("receiver.example.net:9000")),
        ];
        for (field, edit) in bad {
            let mut details = good_link();
            match edit.as_object() {
                Some(fields) => fields.iter().for_each(|(k, v)| details[k] = v.clone()),
                None => details = edit.clone(),
            }
            let id = format!("panel-{field}");
            set(&c, 200, panel_body(&id, details));
            let panel = client.panel("acct", &id, deadline()).await;
            let panel = panel.unwrap_or_else(|e| panic!("{edit}: the panel call failed: {e}"));
            assert_eq!(panel.monitoring, None, "{edit}");
            let logged = logs.text();
            let names = |l: &str, k: &str, v: &str| {
                l.contains(&format!("{k}=\"{v}\"")) || l.contains(&format!("{k}={v} "))
            };
            let line = logged
                .lines()
                .find(|l| names(l, "panel", &id))
                .unwrap_or_else(|| panic!("no warning names {id}: {logged}"));
            assert!(
                line.contains("WARN") && names(line, "field", field),
                "{line}"
            );
        }
        // `null` is "none", and a list keeps every panel, with or without usable details.
        set(&c, 200, panel_body("home", Value::Null));
        assert_eq!(
            client
                .panel("acct", "home", deadline())
                .await
                .unwrap()
                .monitoring,
            None
        );
        set(&c, 200, listing("account", json!("not-hex")));
        let panels = client.panels("acct", deadline()).await.unwrap();
        let links: Vec<bool> = panels.iter().map(|p| p.monitoring.is_some()).collect();
        assert_eq!(links, [true, false, false]);
    });
    let logged = logs.text();
    assert!(!logged.contains(SECRET_NAME), "{logged}");
    assert!(!logged.contains("3031323334353637"), "{logged}");
}

#[tokio::test]
async fn panels_reported_without_monitoring_details_are_counted() {
    use alarm_skill::domain::metrics::Metrics;
    let (c, client) = cloud().await;
    let (metrics, lines) = Metrics::in_memory("AlarmSkill/test");
    let panels = metrics.panels(Arc::new(client));
    set(&c, 200, listing("line", json!("")));
    panels.panels("acct", deadline()).await.unwrap();
    set(&c, 200, panel_body("c", Value::Null));
    panels.panel("acct", "c", deadline()).await.unwrap();
    set(&c, 200, panel_body("a", good_link()));
    panels.panel("acct", "a", deadline()).await.unwrap();
    metrics.directive("Discover", "ok", std::time::Duration::from_millis(1));
    // A failed call reports no panel.
    set(&c, 500, json!({"error": "down"}));
    let _ = panels.panel("acct", "c", deadline()).await;
    metrics.directive(
        "ReportState",
        "BRIDGE_UNREACHABLE",
        std::time::Duration::from_millis(1),
    );
    let lines = lines.lock().unwrap().clone();
    let counted: Vec<f64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["PanelsWithoutMonitoring"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(counted, [3.0, 0.0]);
}

#[tokio::test]
async fn occurred_at_is_sent_in_one_length_whatever_the_instant() {
    use alarm_skill::domain::ports::panel::DisarmRequest;
    let (seen, client) = raw_cloud().await;
    let times = ["2026-11-25T10:00:00Z", "2026-11-25T10:00:00.123456789Z"];
    for at in times {
        let disarm = DisarmRequest {
            member: Some(1),
            source: Source::Voice,
            kind: AttemptKind::Normal,
            request_id: "0b7f2c1e-5d9a-4b8e-a7c3-2f6d1e9b0a44".into(),
            occurred_at: Some(at.parse().unwrap()),
        };
        client
            .disarm("acct", "home", &disarm, deadline())
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let bodies: Vec<String> = seen
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    assert_eq!(bodies[0].len(), bodies[1].len(), "{bodies:?}");
    assert!(
        bodies[0].contains(r#""occurred_at":"2026-11-25T10:00:00.000Z""#),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[1].contains(r#""occurred_at":"2026-11-25T10:00:00.123Z""#),
        "{}",
        bodies[1]
    );
}
