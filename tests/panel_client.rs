//! The production panel cloud client against a real HTTP server that answers what a broken or
//! half-deployed vendor cloud might: 404s with and without the contract's body, acks that are
//! empty or negative. What the client makes of them decides whether a duress can be lost.

use std::sync::{Arc, Mutex};

use alarm_skill::clock::SystemClock;
use alarm_skill::deadline::Deadline;
use alarm_skill::panel::http::HttpPanelCloud;
use alarm_skill::panel::{Notice, PanelCloud, PanelError, SignalRequest, Source};
use alarm_skill::redelivery::seal::{self, Sealed};
use alarm_skill::secret::Secret;
use alarm_skill::store::memory::MemoryStore;
use alarm_skill::store::{OutboxRecord, OutboxStatus, Store};
use alarm_skill::voice_codes::Keyring;
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
        .route("/v1/accounts/{a}/panels/{p}", get(answer))
        .route("/v1/accounts/{a}/panels/{p}/signals", post(signal))
        .route("/v1/accounts/{a}/notifications", post(answer))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
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
        duress: true,
        request_id: "req-1".into(),
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
        &request_id,
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
        alarm_skill::redelivery::run_once(
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
        (
            &sent[0]["duress"],
            &sent[0]["member"],
            &sent[0]["request_id"]
        ),
        (&json!(true), &json!(1), &json!("req-pending"))
    );

    // Acknowledged at last (the retry is due at once: the test moves its record's time back).
    set(&c, 200, json!({"acknowledged": true}));
    store
        .settle_outbox(
            &record.request_id,
            &alarm_skill::store::Settlement::Retry {
                attempts: 2,
                next_attempt_at: chrono::Utc::now() - chrono::Duration::seconds(1),
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
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local");
    let client = alarm_skill::store::dynamodb::local_client(&endpoint);
    let table = format!("panel-client-{}", uuid::Uuid::new_v4().simple());
    alarm_skill::store::dynamodb::create_table(&client, &table)
        .await
        .unwrap();
    let store = alarm_skill::store::dynamodb::DynamoStore::new(client, table);
    worker_keeps_an_unacknowledged_duress_pending(&store).await;
}
