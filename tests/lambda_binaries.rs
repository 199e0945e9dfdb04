//! The three Lambda binaries as processes, fed by a fake Lambda Runtime API (the HTTP interface
//! Lambda uses to hand a function its events), configured from the environment exactly as the
//! SAM template configures them, against real local dependencies: DynamoDB Local, and the local
//! stack for the account-linking JWKS and the panel cloud.

mod support;

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alarm_skill::local::Options;
use alarm_skill::secret::Secret;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use support::stack::*;
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, mpsc};

/// What the function posted back: ("response" | "error", request id, body).
type Outcome = (String, String, Value);

#[derive(Clone)]
struct FakeRuntime {
    queue: Arc<Mutex<VecDeque<(String, Value)>>>,
    ready: Arc<Notify>,
    results: mpsc::UnboundedSender<Outcome>,
}

async fn next(State(rt): State<FakeRuntime>) -> impl IntoResponse {
    let (id, event) = loop {
        if let Some(item) = rt.queue.lock().unwrap().pop_front() {
            break item;
        }
        rt.ready.notified().await;
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 7_500;
    let mut h = HeaderMap::new();
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    h.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.to_string()).unwrap(),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:test"),
    );
    h.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-0-0"),
    );
    (h, Json(event))
}

async fn posted(
    State(rt): State<FakeRuntime>,
    Path((id, kind)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> &'static str {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = rt.results.send((kind, id, v));
    "accepted"
}

struct Function {
    rt: FakeRuntime,
    results: mpsc::UnboundedReceiver<Outcome>,
    child: tokio::process::Child,
}

impl Function {
    /// Starts `binary` with `env`, fed by a fresh fake runtime API.
    async fn start(binary: &str, env: &[(String, String)]) -> Function {
        let (tx, results) = mpsc::unbounded_channel();
        let rt = FakeRuntime {
            queue: Arc::default(),
            ready: Arc::default(),
            results: tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(posted))
            .with_state(rt.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let child = tokio::process::Command::new(binary)
            .env_clear()
            .envs(env.iter().cloned())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the Lambda binary");
        Function { rt, results, child }
    }

    async fn invoke(&mut self, event: Value) -> Outcome {
        let id = uuid::Uuid::new_v4().to_string();
        self.rt.queue.lock().unwrap().push_back((id.clone(), event));
        self.rt.ready.notify_waiters();
        self.rt.ready.notify_one();
        let out = tokio::time::timeout(Duration::from_secs(20), self.results.recv())
            .await
            .expect("the function answered")
            .expect("runtime channel open");
        assert_eq!(out.1, id, "the answer is for this invocation");
        out
    }

    /// Stops the process and returns everything it wrote (stdout and stderr).
    async fn logs(mut self) -> String {
        let _ = self.child.kill().await;
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut out).await.unwrap();
        }
        if let Some(mut s) = self.child.stderr.take() {
            s.read_to_string(&mut out).await.unwrap();
        }
        out
    }
}

fn pepper() -> Secret {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    Secret::new(json!({"current": "t1", "peppers": {"t1": key}}).to_string())
}

/// A local stack on DynamoDB Local, and the environment the SAM template gives the functions.
async fn world() -> (Harness, Vec<(String, String)>) {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local");
    let h = Harness::start_with(Options {
        pepper: Some(pepper()),
        dynamodb_endpoint: Some(endpoint.clone()),
        ..test_options()
    })
    .await;
    let env = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "local".into()),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("TABLE_NAME", h.stack.table.clone()),
        ("DYNAMODB_ENDPOINT", endpoint),
        (
            "PANEL_API_URL",
            format!("http://{}", h.stack.panel_api.addr()),
        ),
        ("LWA_CLIENT_ID", "amzn1.application-oa2-client.test".into()),
        ("LWA_CLIENT_SECRET", "test-lwa-secret".into()),
        ("OAUTH_ISSUER", h.base.clone()),
        ("OAUTH_AUDIENCE", alarm_skill::local::AUDIENCE.into()),
        ("PEPPER", pepper().expose().to_string()),
        ("WEBHOOK_SECRET", "test-webhook-secret".into()),
        ("PANEL_API_KEY", h.stack.sim.api_key().expose().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (h, env)
}

#[tokio::test]
async fn bootstrap_answers_directives_from_its_environment() {
    let (h, env) = world().await;
    let t = h.token("demo").await;
    let mut f = Function::start(env!("CARGO_BIN_EXE_bootstrap"), &env).await;

    let (kind, _, r) = f.invoke(discover(&t)).await;
    assert_eq!(kind, "response");
    support::record_message("bootstrap-discover", &r);
    assert_eq!(
        r["event"]["payload"]["endpoints"].as_array().unwrap().len(),
        4
    );

    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    let (_, _, r) = f.invoke(disarm(&t, "home", Some("8361"))).await;
    support::record_message("bootstrap-disarm", &r);
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    assert_eq!(property(&r, "armState"), "DISARMED");
    assert!(h.signals().await.contains(&"121/1/1".to_string()));
    // The attempt went through the DynamoDB table the stack seeded.
    assert_eq!(
        h.stack.store.audit("demo", 1).await.unwrap()[0].message,
        "Alex disarmed Home by voice"
    );

    // Anything Lambda could hand it is answered, never a function error.
    for event in [
        json!({}),
        json!([1, 2]),
        json!({"directive": {"header": 5}}),
    ] {
        let (kind, _, r) = f.invoke(event).await;
        assert_eq!(kind, "response");
        assert_eq!(error_type(&r), Some("INVALID_DIRECTIVE"));
    }

    let logs = f.logs().await;
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let handled: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            let m = &l["fields"]["message"];
            m == "directive handled" || m == "invalid directive"
        })
        .collect();
    assert_eq!(handled.len(), 5, "one JSON line per directive:\n{logs}");
    for l in &handled {
        assert!(l["timestamp"].is_string(), "{l}");
        assert!(
            l["span"]["requestId"].is_string(),
            "the Lambda request id on every line: {l}"
        );
    }
    let tokens: Vec<&str> = logs.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    assert!(!tokens.contains(&"8361"), "no PIN in the logs");
    assert!(
        !logs.contains(t.rsplit('.').next().unwrap()),
        "no token in the logs"
    );
}

#[tokio::test]
async fn bootstrap_fails_at_start_on_missing_configuration() {
    let (_h, env) = world().await;
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k != "TABLE_NAME").collect();
    let f = Function::start(env!("CARGO_BIN_EXE_bootstrap"), &env).await;
    let status = tokio::time::timeout(Duration::from_secs(20), f.child.wait_with_output())
        .await
        .expect("exits")
        .expect("wait");
    assert!(!status.status.success());
    let out = String::from_utf8_lossy(&status.stderr).to_string()
        + &String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("TABLE_NAME"), "says what is missing: {out}");
}

fn http_event(method: &str, path: &str, headers: Value, body: Option<&str>) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default", "stage": "$default", "time": "25/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_764_064_800_000u64,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "test"}
        },
        "body": body, "isBase64Encoded": false
    })
}

#[tokio::test]
async fn http_api_serves_the_management_api_and_the_webhook() {
    let (h, env) = world().await;
    let admin = h.admin_token("demo").await;
    let mut f = Function::start(env!("CARGO_BIN_EXE_http-api"), &env).await;

    let (kind, _, r) = f
        .invoke(http_event(
            "GET",
            "/v1/household/members",
            json!({"authorization": format!("Bearer {admin}")}),
            None,
        ))
        .await;
    assert_eq!(kind, "response");
    assert_eq!(r["statusCode"], 200, "{r}");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["members"][0]["id"], "alex");

    let (_, _, r) = f
        .invoke(http_event("GET", "/v1/household/members", json!({}), None))
        .await;
    assert_eq!(r["statusCode"], 401);

    // The webhook checks signatures with the secret from the environment.
    let event = r#"{"event_id":"e1","account":"demo","occurred_at":"2026-11-25T10:00:00Z","source":"keypad","type":"zone_removed","panel_id":"home","zone_id":"hallway"}"#;
    let ts = chrono::Utc::now().timestamp();
    for (secret, status) in [("wrong-secret", 401), ("test-webhook-secret", 200)] {
        let sig = alarm_skill::webhook::signature::sign(&Secret::new(secret), ts, event.as_bytes());
        let (_, _, r) = f
            .invoke(http_event(
                "POST",
                "/webhooks/panel",
                json!({"content-type": "application/json", "x-alarm-timestamp": ts.to_string(), "x-alarm-signature": sig}),
                Some(event),
            ))
            .await;
        // No event-gateway grant exists for the account: accepted, nothing to send.
        assert_eq!(r["statusCode"], status, "{secret}: {r}");
    }
}

#[tokio::test]
async fn redelivery_worker_delivers_a_pending_duress_once() {
    let (h, env) = world().await;
    let t = h.token("demo").await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.fault("down", 0).await;
    let r = h.invoke(&disarm(&t, "home", Some("8361"))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"));
    h.fault("none", 0).await;
    assert!(!h.signals().await.iter().any(|s| s.starts_with("121/")));

    let mut f = Function::start(env!("CARGO_BIN_EXE_redelivery"), &env).await;
    let schedule = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let (kind, _, report) = f.invoke(schedule.clone()).await;
    assert_eq!(kind, "response", "{report}");
    assert_eq!(report["delivered"], 1, "{report}");
    let (_, _, report) = f.invoke(schedule).await;
    assert_eq!(report["examined"], 0, "nothing left: {report}");
    let signals = h.signals().await;
    assert_eq!(
        signals.iter().filter(|s| s.starts_with("121/")).count(),
        1,
        "{signals:?}"
    );
    assert!(f.logs().await.contains("\"message\":\"redelivery pass\""));
}
