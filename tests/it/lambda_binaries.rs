//! The Lambda binary as a process for each of its three functions (its Handler), fed by a fake Lambda Runtime API (the HTTP interface
//! Lambda uses to hand a function its events), configured from the environment exactly as the
//! SAM template configures them, against real local dependencies: DynamoDB Local, and the local
//! stack for the account-linking JWKS and the panel cloud.

use crate::support;

use alarm_skill::common::secret::Secret;
use serde_json::{Value, json};
use support::lambda::{Function, http_event, only, world};
use support::stack::*;

/// The embedded-metric-format lines a function printed.
fn emf_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["_aws"]["CloudWatchMetrics"].is_array())
        .collect()
}

/// The stack, the functions' environment and a demo user's access token.
async fn world_and_token() -> (Harness, Vec<(String, String)>, String) {
    let (h, env) = world().await;
    let t = h.token("demo").await;
    (h, env, t)
}

/// The bearer token `t` (its signature, the part no one else knows) is nowhere in `logs`.
fn assert_no_token(logs: &str, t: &str) {
    assert!(
        !logs.contains(t.rsplit('.').next().unwrap()),
        "no token in the logs"
    );
}

/// A function started on `env` exits at start, unsuccessfully, naming `missing`; its output.
async fn fails_at_start_naming(bin: &str, env: &[(String, String)], missing: &str) -> String {
    let f = Function::start(bin, env).await;
    let (status, out) = f.exit().await;
    assert!(!status.success());
    assert!(out.contains(missing), "says what is missing: {out}");
    out
}

/// `GET /v1/household/members` as `admin` through the http-api function: the invocation's kind
/// and the response.
async fn get_members(f: &mut Function, admin: &str) -> (String, Value) {
    let (kind, _, r) = f
        .invoke(http_event(
            "GET",
            "/v1/household/members",
            json!({"authorization": format!("Bearer {admin}")}),
            None,
        ))
        .await;
    (kind, r)
}

/// The panel cloud's webhook `event`, signed with `secret`, through the http-api function.
async fn post_webhook(f: &mut Function, secret: &str, event: &str) -> Value {
    let ts = chrono::Utc::now().timestamp();
    let sig =
        alarm_skill::edges::webhook::signature::sign(&Secret::new(secret), ts, event.as_bytes());
    let (_, _, r) = f
        .invoke(http_event(
            "POST",
            "/webhooks/panel",
            json!({"content-type": "application/json", "x-alarm-timestamp": ts.to_string(), "x-alarm-signature": sig}),
            Some(event),
        ))
        .await;
    r
}

/// The redelivery report's counts named by `keys`, in that order.
fn report_counts(report: &Value, keys: &[&str]) -> Vec<Value> {
    keys.iter().map(|k| report[*k].clone()).collect()
}

#[tokio::test]
async fn bootstrap_answers_directives_from_its_environment() {
    let (h, env, t) = world_and_token().await;
    let env = only(&env, alarm_skill::adapters::secrets::needs::DIRECTIVE);
    assert!(!env.iter().any(|(k, _)| k == "WEBHOOK_SECRET"));
    let mut f = Function::start(support::lambda::DIRECTIVE, &env).await;

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
    // One metrics line per handled directive (the invalid ones never reach the handler's end).
    let metrics = emf_lines(&logs);
    let outcomes: Vec<(&Value, &Value)> = metrics
        .iter()
        .map(|m| (&m["Directive"], &m["Outcome"]))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (&json!("Discover"), &json!("ok")),
            (&json!("Disarm"), &json!("ok"))
        ],
        "{logs}"
    );
    for l in &handled {
        assert!(l["timestamp"].is_string(), "{l}");
        assert!(
            l["span"]["requestId"].is_string(),
            "the Lambda request id on every line: {l}"
        );
    }
    let tokens: Vec<&str> = logs.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    assert!(!tokens.contains(&"8361"), "no PIN in the logs");
    assert_no_token(&logs, &t);
}

/// Alexa delivers skill events to the same Lambda: bootstrap deletes the grant of a customer who
/// disabled the skill, answers without a function error, and logs no token.
#[tokio::test]
async fn bootstrap_handles_the_skill_disabled_event() {
    let (h, env, t) = world_and_token().await;
    let r = h.invoke(&accept_grant(&t, "code-b")).await;
    assert_eq!(r["event"]["header"]["name"], "AcceptGrant.Response");
    assert_eq!(h.stack.store.grants("demo").await.unwrap().len(), 1);
    let env = only(&env, alarm_skill::adapters::secrets::needs::DIRECTIVE);
    let mut f = Function::start(support::lambda::DIRECTIVE, &env).await;
    let event = json!({
        "version": "1.0",
        "context": {"System": {"application": {"applicationId": "amzn1.ask.skill.1"},
                               "user": {"userId": "amzn1.ask.account.X", "accessToken": t}}},
        "request": {"type": "AlexaSkillEvent.SkillDisabled", "requestId": "r-1",
                    "timestamp": "2026-12-06T04:00:00Z",
                    "body": {"userInformationPersistenceStatus": "NOT_PERSISTED"}}
    });
    let (kind, _, r) = f.invoke(event).await;
    assert_eq!(kind, "response");
    assert_eq!(r, json!({}));
    assert!(h.stack.store.grants("demo").await.unwrap().is_empty());
    let logs = f.logs().await;
    assert!(logs.contains("Alexa grant deleted"), "{logs}");
    assert_no_token(&logs, &t);
}

#[tokio::test]
async fn bootstrap_fails_at_start_on_missing_configuration() {
    let (_h, env) = world().await;
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k != "TABLE_NAME").collect();
    fails_at_start_naming(support::lambda::DIRECTIVE, &env, "TABLE_NAME").await;
}

/// One binary serves every function: a Handler it doesn't serve (a template typo, or the old
/// `bootstrap`) stops it at start, naming the three it does, before it reads any secret.
#[tokio::test]
async fn the_binary_refuses_to_start_as_a_function_it_does_not_serve() {
    let (_h, env) = world().await;
    for handler in ["bootstrap", "Directive", ""] {
        let out =
            fails_at_start_naming(handler, &env, "must be directive, http-api or redelivery").await;
        assert!(out.contains(&format!("_HANDLER is '{handler}'")), "{out}");
    }
}

#[tokio::test]
async fn http_api_serves_the_management_api_and_the_webhook() {
    let (h, env) = world().await;
    let admin = h.admin_token("demo").await;
    let mut f = Function::start(support::lambda::HTTP_API, &env).await;

    let (kind, r) = get_members(&mut f, &admin).await;
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
    for (secret, status) in [("wrong-secret", 401), ("test-webhook-secret", 200)] {
        let r = post_webhook(&mut f, secret, event).await;
        // No event-gateway grant exists for the account: accepted, nothing to send.
        assert_eq!(r["statusCode"], status, "{secret}: {r}");
    }
}

/// The attempts of every pending record, oldest first, read straight from the store.
async fn pending_attempts(h: &Harness) -> Vec<u32> {
    let store = h.stack.store.as_ref();
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    let mut attempts = vec![];
    for shard in 0..store.outbox_policy().shards {
        let due = store
            .outbox_due(
                alarm_skill::domain::ports::store::Lane::Due,
                shard,
                later,
                100,
                100,
            )
            .await
            .unwrap();
        attempts.extend(due.records.iter().map(|r| r.attempts));
    }
    attempts
}

/// Issue 24: on AWS the worker ran once a minute, so a cloud that came back waited for the next
/// invocation. With `REDELIVERY_POLL_SECONDS` (the template sets it) one invocation keeps
/// polling while anything is pending: the cloud fails its first try, comes back while the
/// invocation runs, and the same invocation delivers the duress, then returns.
#[tokio::test]
async fn a_polling_redelivery_invocation_delivers_once_the_cloud_is_back() {
    use alarm_skill::domain::redelivery::seal;
    let (h, env, t) = world_and_token().await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.fault("down", 0).await;
    // The pending duress a disarm leaves when its panel call fails (written as the directive
    // does, sealed under the deployment's pepper; the directive itself is tested elsewhere).
    let request_id = uuid::Uuid::new_v4().to_string();
    let sealed = seal::seal(
        &h.stack.keyring,
        seal::Binding {
            request_id: &request_id,
            household: "demo",
            panel: "home",
        },
        seal::Sealed {
            duress: true,
            member: Some(1),
        },
    );
    let now = chrono::Utc::now();
    let mut record = alarm_skill::domain::ports::store::OutboxRecord::pending(
        request_id, "demo", "home", sealed, now, now,
    );
    record.attempts = 1;
    h.stack.store.put_outbox(&record, None).await.unwrap();
    assert_eq!(pending_attempts(&h).await, vec![1]);

    let mut env = only(&env, alarm_skill::adapters::secrets::needs::REDELIVERY);
    env.push(("REDELIVERY_POLL_SECONDS".into(), "1".into()));
    let mut f = Function::start_with_budget(
        support::lambda::REDELIVERY,
        &env,
        std::time::Duration::from_secs(60),
    )
    .await;
    f.enqueue(json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}));
    // The invocation's first pass fails on the down cloud (the record's attempts go up); only
    // then does the cloud come back.
    let mut waited = 0;
    while pending_attempts(&h).await != vec![2] {
        waited += 1;
        assert!(
            waited < 1_200,
            "the worker never tried: {:?}",
            f.try_outcome()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.fault("none", 0).await;
    let (kind, _, report) = f.outcome().await;
    assert_eq!(kind, "response", "{report}");
    assert_eq!(
        report_counts(&report, &["retrying", "delivered", "backlog"]),
        [json!(1), json!(1), json!(0)],
        "one invocation: the failed try, then the delivery: {report}"
    );
    let signals = h.signals().await;
    assert_eq!(
        signals.iter().filter(|s| s.starts_with("121/")).count(),
        1,
        "{signals:?}"
    );
}

#[tokio::test]
async fn redelivery_worker_delivers_a_pending_duress_once() {
    let (h, env, t) = world_and_token().await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.fault("down", 0).await;
    let r = h.invoke(&disarm(&t, "home", Some("8361"))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"));
    h.fault("none", 0).await;
    assert!(!h.signals().await.iter().any(|s| s.starts_with("121/")));

    let env = only(&env, alarm_skill::adapters::secrets::needs::REDELIVERY);
    let mut f = Function::start(support::lambda::REDELIVERY, &env).await;
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
    let logs = f.logs().await;
    assert!(logs.contains("\"message\":\"redelivery pass\""));
    let passes = emf_lines(&logs);
    assert_eq!(passes.len(), 2, "{logs}");
    assert_eq!(passes[0]["OutboxExamined"], 1.0);
    assert_eq!(passes[0]["OutboxBacklog"], 0.0);
    assert_eq!(passes[0]["OutboxPanelGone"], 0.0);
    // The pass line the alarms' metric filters read: every shard, the real backlog, the gone lane.
    assert!(
        logs.contains("\"shards\":8") && logs.contains("\"gone\":0"),
        "{logs}"
    );
}

/// `OUTBOX_V2_SEALS_BEFORE`: the deployed worker opens a seal of the former format (v2, bound to
/// the request id only) only on a record written before it. The record from before is delivered;
/// the one written since stays pending, unsent, and the log names it under its own marker (its
/// request id, never the seal or what it holds).
#[tokio::test]
async fn the_redelivery_function_opens_v2_seals_only_on_records_written_before_the_cutoff() {
    use alarm_skill::domain::ports::store::OutboxStatus;
    let (h, env, t) = world_and_token().await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    let now = chrono::Utc::now();
    let before = pending_v2_duress(&h, now - chrono::Duration::hours(2), now).await;
    let after = pending_v2_duress(&h, now, now).await;
    let mut env = only(&env, alarm_skill::adapters::secrets::needs::REDELIVERY);
    let cutoff = (now - chrono::Duration::hours(1)).to_rfc3339();
    env.push(("OUTBOX_V2_SEALS_BEFORE".into(), cutoff));
    let mut f = Function::start(support::lambda::REDELIVERY, &env).await;
    let schedule = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let (kind, _, report) = f.invoke(schedule).await;
    assert_eq!(kind, "response", "{report}");
    assert_eq!(
        report_counts(&report, &["delivered", "retrying"]),
        [json!(1), json!(1)],
        "{report}"
    );
    let signals = h.signals().await;
    assert_eq!(count(&signals, "121/"), 1, "{signals:?}");
    assert_eq!(outbox_status(&h, &before).await, OutboxStatus::Delivered);
    assert_eq!(outbox_status(&h, &after).await, OutboxStatus::Pending);
    let logs = f.logs().await;
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("outbox_seal_v2_refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{logs}");
    assert!(refused[0].contains(&after), "{logs}");
}

#[tokio::test]
async fn a_function_without_a_secret_it_needs_fails_at_start_and_names_it() {
    let (_h, env) = world().await;
    let env = only(
        &env,
        &[
            alarm_skill::adapters::secrets::SecretName::Pepper,
            alarm_skill::adapters::secrets::SecretName::PanelApiKey,
        ],
    );
    fails_at_start_naming(support::lambda::DIRECTIVE, &env, "LWA_CLIENT_SECRET").await;
}

#[tokio::test]
async fn http_api_with_a_google_key_reports_every_state_change_to_homegraph() {
    use alarm_skill::edges::webhook::{Changed, EventKind, PanelEvent};
    use alarm_skill::local::google_dev::{self, DevGoogle};
    use std::sync::Arc;

    let (h, mut env) = world().await;
    // Google's side: the local stack's fakes of its token URL and HomeGraph, which verify the
    // assertion's RS256 signature against the generated key and check every body's shape.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let google = Arc::new(DevGoogle::new(&base).unwrap());
    let app = google_dev::routes(google.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The key file as Google's console downloads it, naming Google's own token URL: only the
    // override sends the function to the fake.
    let mut key_file: Value = serde_json::from_str(google.key_file().expose()).unwrap();
    key_file["token_uri"] = json!("https://oauth2.googleapis.com/token");
    let key_file = key_file.to_string();
    let private_key = key_file_pem_body(&key_file);
    env.retain(|(k, _)| k != "AWS_LAMBDA_LOG_LEVEL");
    env.extend([
        ("AWS_LAMBDA_LOG_LEVEL".into(), "TRACE".into()),
        ("GOOGLE_SERVICE_ACCOUNT".into(), key_file.clone()),
        ("GOOGLE_TOKEN_URL".into(), google.token_url().to_string()),
        (
            "HOMEGRAPH_URL".into(),
            format!("{base}{}", google_dev::HOMEGRAPH_PATH),
        ),
    ]);
    let mut f = Function::start(support::lambda::HTTP_API, &env).await;

    // SYNC promises Report State now.
    let t = h.token("demo").await;
    let body = google_sync(&mut f, &t).await;
    let devices = body["payload"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 4, "{body}");
    assert!(
        devices.iter().all(|d| d["willReportState"] == true),
        "{body}"
    );

    // A keypad opens the front door: the panel cloud's signed webhook.
    let (_, mut panel) = h
        .stack
        .sim
        .snapshot()
        .into_iter()
        .find(|(_, p)| p.id == "home")
        .unwrap();
    panel
        .zones
        .iter_mut()
        .find(|z| z.id == "front-door")
        .unwrap()
        .open = true;
    let event = PanelEvent {
        event_id: "google-e1".into(),
        account: "demo".into(),
        occurred_at: chrono::Utc::now(),
        source: alarm_skill::domain::ports::panel::Source::Sensor,
        kind: EventKind::PanelChanged {
            panel: panel.clone(),
            changed: vec![Changed::ZoneOpen {
                zone: "front-door".into(),
            }],
        },
    };
    let event = serde_json::to_string(&event).unwrap();
    let r = post_webhook(&mut f, "test-webhook-secret", &event).await;
    assert_eq!(r["statusCode"], 200, "no Alexa grant, so no_grant: {r}");

    // The handler waits for HomeGraph before it answers: the report is there.
    let reports = google.reports();
    for r in &reports {
        support::record_google_message("report-state", "lambda-report-state", r);
    }
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["agentUserId"], "demo");
    assert_eq!(
        reports[0]["payload"]["devices"]["states"],
        Value::Object(alarm_skill::adapters::homegraph::states_of(&panel)),
        "the complete state of the panel and every zone"
    );
    assert_eq!(
        reports[0]["payload"]["devices"]["states"]["home:front-door"],
        json!({"online": true, "openPercent": 100})
    );
    assert_eq!(google.exchanges(), 1);
    assert!(google.syncs().is_empty());

    let logs = f.logs().await;
    assert!(logs.contains("HomeGraph reporting on"), "{logs}");
    assert!(!logs.contains(&private_key), "the key in the logs");
    for chunk in private_key.as_bytes().chunks(32) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        assert!(
            !logs.contains(chunk),
            "part of the key in the logs: {chunk}"
        );
    }
}

/// The base64 body of the key file's PEM private key, on one line.
fn key_file_pem_body(key_file: &str) -> String {
    let v: Value = serde_json::from_str(key_file).unwrap();
    v["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// A Google SYNC through the http-api function; its reply body.
async fn google_sync(f: &mut Function, token: &str) -> Value {
    let sync = json!({"requestId": "r1", "inputs": [{"intent": "action.devices.SYNC"}]});
    let (_, _, r) = f
        .invoke(http_event(
            "POST",
            "/google/fulfillment",
            json!({"authorization": format!("Bearer {token}"), "content-type": "application/json"}),
            Some(&sync.to_string()),
        ))
        .await;
    assert_eq!(r["statusCode"], 200, "{r}");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    support::record_google_message("sync", "lambda-sync", &body);
    body
}

#[tokio::test]
async fn http_api_without_a_google_key_promises_no_report_state() {
    let (h, env) = world().await;
    let mut f = Function::start(support::lambda::HTTP_API, &env).await;
    let t = h.token("demo").await;
    let body = google_sync(&mut f, &t).await;
    let devices = body["payload"]["devices"].as_array().unwrap();
    assert!(!devices.is_empty(), "{body}");
    assert!(
        devices.iter().all(|d| d["willReportState"] == false),
        "{body}"
    );
    assert!(!f.logs().await.contains("HomeGraph reporting on"));
}

#[tokio::test]
async fn http_api_with_an_unusable_google_key_fails_at_start_without_quoting_it() {
    let (_h, mut env) = world().await;
    let bad = r#"{"client_email":"sa@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----","token_uri":"https://oauth2.googleapis.com/token"}"#;
    env.push(("GOOGLE_SERVICE_ACCOUNT".into(), bad.into()));
    let f = Function::start(support::lambda::HTTP_API, &env).await;
    let (status, out) = f.exit().await;
    assert!(!status.success());
    // main prints the error's Debug form, as for every start-up error.
    assert!(out.contains("GoogleServiceAccount"), "names it: {out}");
    assert!(
        !out.contains("c2VjcmV0LWtleS1tYXRlcmlhbA"),
        "quotes it: {out}"
    );
}

/// A Secrets Manager that serves one secret, whose value the test can change (a rotation).
async fn secrets_manager(value: String) -> (std::sync::Arc<std::sync::Mutex<String>>, String) {
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};
    let secret = Arc::new(Mutex::new(value));
    let served = secret.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let served = served.clone();
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                assert_eq!(target, "secretsmanager.GetSecretValue");
                let req: Value = serde_json::from_slice(&body).unwrap();
                let id = req["SecretId"].as_str().unwrap().to_string();
                let out = json!({
                    "ARN": id,
                    "Name": "alarm/pepper",
                    "VersionId": "v1",
                    "VersionStages": ["AWSCURRENT"],
                    "SecretString": served.lock().unwrap().clone(),
                });
                (
                    [("content-type", "application/x-amz-json-1.1")],
                    out.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (secret, format!("http://{addr}"))
}

/// Where the local Secrets Manager's pepper secret is found: the template gives each function
/// `PEPPER_SECRET_ARN`.
const PEPPER_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:alarm/pepper";

/// The environment of a function with `needs` that reads its pepper from the local Secrets
/// Manager at `endpoint` (so a rotation there reaches it), not from `PEPPER`.
fn pepper_from_secrets_manager(
    env: &[(String, String)],
    needs: &[alarm_skill::adapters::secrets::SecretName],
    endpoint: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = only(env, needs)
        .into_iter()
        .filter(|(k, _)| k != "PEPPER")
        .collect();
    env.push(("PEPPER_SECRET_ARN".into(), PEPPER_ARN.into()));
    env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), endpoint.into()));
    env
}

/// A `bootstrap` whose pepper comes from the local Secrets Manager at `endpoint`.
async fn start_directive_function(env: &[(String, String)], endpoint: &str) -> Function {
    let env = pepper_from_secrets_manager(
        env,
        alarm_skill::adapters::secrets::needs::DIRECTIVE,
        endpoint,
    );
    Function::start(support::lambda::DIRECTIVE, &env).await
}

/// Armed away each time, the normal then the duress PIN of `pins` disarm through `f` with the
/// same reply, and exactly one 121 reaches the panel cloud.
async fn normal_and_duress_disarm_alike(h: &Harness, t: &str, f: &mut Function, pins: [&str; 2]) {
    let mut replies = Vec::new();
    for pin in pins {
        h.invoke(&arm(t, "home", "ARMED_AWAY")).await;
        h.advance(60).await;
        let (kind, _, r) = f.invoke(disarm(t, "home", Some(pin))).await;
        assert_eq!(kind, "response");
        assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
        assert_eq!(property(&r, "armState"), "DISARMED");
        replies.push(normalize(&r));
    }
    assert_eq!(replies[0], replies[1], "duress and normal replies differ");
    let duress = h.duress_signals().await;
    assert_eq!(duress, vec!["121/1/1".to_string()]);
}

/// How many times a function's `logs` say it re-read the pepper secret.
fn keyring_reloads(logs: &str) -> usize {
    logs.matches("pepper keyring reloaded").count()
}

fn pepper_b64(b: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([b; 32])
}

/// The pepper secret after a rotation from `support::lambda::pepper()` (t1, bytes 42): t2 added
/// and made current.
fn rotated_keyring() -> String {
    json!({"current": "t2", "peppers": {"t1": pepper_b64(42), "t2": pepper_b64(43)}}).to_string()
}

/// Phase 1 of a rotation: t2 added, t1 still current.
fn keyring_with_t2_added() -> String {
    json!({"current": "t1", "peppers": {"t1": pepper_b64(42), "t2": pepper_b64(43)}}).to_string()
}

/// Pepper rotation on a warm function (issue 15): `bootstrap` starts knowing pepper t1 only;
/// then the secret gains t2 as current and the household's codes are re-enrolled under it. The
/// warm process meets the unknown pepper id in the stored codes, re-reads the secret, and the
/// re-enrolled duress PIN disarms with the normal PIN's reply and exactly one 121.
#[tokio::test]
async fn a_warm_bootstrap_verifies_codes_enrolled_under_a_pepper_added_after_it_started() {
    use alarm_skill::common::secret::Pin;
    use alarm_skill::domain::voice_codes::{Keyring, hash_code};

    let (h, env, t) = world_and_token().await;
    let (secret, endpoint) = secrets_manager(support::lambda::pepper().expose().to_string()).await;
    let mut f = start_directive_function(&env, &endpoint).await;
    let (kind, _, r) = f.invoke(discover(&t)).await;
    assert_eq!(kind, "response", "{r}");

    // Rotation: t2 joins and becomes current; the codes are re-enrolled under it.
    let rotated = rotated_keyring();
    *secret.lock().unwrap() = rotated.clone();
    let ring = Keyring::from_json(&Secret::new(rotated)).unwrap();
    let demo = alarm_skill::local::demo::DemoConfig::demo();
    let seed = &demo.households[0];
    let store = &h.stack.store;
    let mut profile = store.household(&seed.account).await.unwrap().profile;
    for m in &mut profile.members {
        let s = seed.members.iter().find(|s| s.id == m.id).unwrap();
        let hash = |p: &Option<String>| {
            p.as_ref()
                .map(|p| hash_code(&ring, &seed.account, &m.id, &Pin::new(p.clone())))
        };
        m.voice_pin = hash(&s.voice_pin);
        m.duress_pin = hash(&s.duress_pin);
    }
    store.save_profile(&seed.account, &profile).await.unwrap();
    assert_eq!(
        store
            .household(&seed.account)
            .await
            .unwrap()
            .profile
            .members[0]
            .voice_pin
            .as_ref()
            .unwrap()
            .pepper_id,
        "t2"
    );

    normal_and_duress_disarm_alike(&h, &t, &mut f, ["8361", "4729"]).await;

    let logs = f.logs().await;
    assert_eq!(
        keyring_reloads(&logs),
        1,
        "one reload, then the new keyring stays:\n{logs}"
    );
    assert!(!logs.contains(&pepper_b64(43)), "no pepper in the logs");
}

/// Pepper rotation on a warm re-delivery worker (issue 15). The worker starts knowing t1 only;
/// the secret gains t2 (phase 1) and makes it current (phase 2); a `bootstrap` started after
/// that seals the outbox record of a duress said while the panel cloud is down under t2. The warm
/// worker meets a seal naming a pepper it lacks, re-reads the secret once, and delivers the
/// duress: exactly one 121, nothing left pending. Before the worker reloaded, the record stayed
/// pending as `outbox_seal_unreadable` until someone recycled the worker.
#[tokio::test]
async fn a_warm_redelivery_worker_delivers_a_duress_sealed_under_a_pepper_added_after_it_started() {
    let (h, env, t) = world_and_token().await;
    let (secret, endpoint) = secrets_manager(support::lambda::pepper().expose().to_string()).await;
    let worker_env = pepper_from_secrets_manager(
        &env,
        alarm_skill::adapters::secrets::needs::REDELIVERY,
        &endpoint,
    );
    let mut worker = Function::start(support::lambda::REDELIVERY, &worker_env).await;
    let schedule = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let (kind, _, report) = worker.invoke(schedule.clone()).await;
    assert_eq!(kind, "response", "{report}");
    assert_eq!(report["examined"], 0, "warm, nothing pending: {report}");

    // Both phases of the rotation; a directive function started after them seals under t2.
    *secret.lock().unwrap() = keyring_with_t2_added();
    *secret.lock().unwrap() = rotated_keyring();
    let mut bootstrap = start_directive_function(&env, &endpoint).await;
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.advance(60).await;
    h.fault("down", 0).await;
    let (_, _, r) = bootstrap.invoke(disarm(&t, "home", Some("8361"))).await;
    assert_eq!(error_type(&r), Some("BRIDGE_UNREACHABLE"), "{r}");
    h.fault("none", 0).await;
    assert!(!h.signals().await.iter().any(|s| s.starts_with("121/")));
    let pending = outbox_records(&store_dump(&h).await);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0]["seal"].as_str().unwrap().starts_with("t2."),
        "sealed under the pepper the worker lacks: {pending:?}"
    );

    let (kind, _, report) = worker.invoke(schedule.clone()).await;
    assert_eq!(kind, "response", "{report}");
    assert_eq!(
        report_counts(&report, &["delivered", "unreadable", "retrying"]),
        [json!(1), json!(0), json!(0)],
        "{report}"
    );
    let (_, _, report) = worker.invoke(schedule).await;
    assert_eq!(
        report_counts(&report, &["examined", "backlog"]),
        [json!(0), json!(0)],
        "nothing left pending: {report}"
    );
    let records = outbox_records(&store_dump(&h).await);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["status"], "delivered", "{records:?}");
    let duress = h.duress_signals().await;
    assert_eq!(duress, vec!["121/1/1".to_string()]);

    let logs = worker.logs().await;
    assert_eq!(keyring_reloads(&logs), 1, "one reload:\n{logs}");
    assert!(logs.contains("unknown pepper id"), "{logs}");
    assert!(!logs.contains("outbox_seal_unreadable"), "{logs}");
    assert!(!logs.contains(&pepper_b64(43)), "no pepper in the logs");
    drop(bootstrap);
}

/// A change of alex's code through the http-api function: its status (a 422 must be the slip
/// rule's).
async fn set_code(f: &mut Function, admin: &str, slot: &str, pin: &str) -> u16 {
    let (kind, _, r) = f
        .invoke(http_event(
            "PUT",
            &format!("/v1/household/members/alex/{slot}"),
            json!({"authorization": format!("Bearer {admin}"), "content-type": "application/json"}),
            Some(&json!({ "pin": pin }).to_string()),
        ))
        .await;
    assert_eq!(kind, "response", "{r}");
    let status = r["statusCode"].as_u64().unwrap() as u16;
    if status == 422 {
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"], "too_similar", "{r}");
    }
    status
}

/// Pepper rotation on warm http-api functions (issue 15), both started knowing t1 only:
/// - after phase 2 (t2 current), one whose keyring is past its max age (`PEPPER_MAX_AGE_S=1`)
///   re-reads the secret on the next code change and hashes the new code under t2, though no
///   stored code names t2 yet;
/// - a function started after the rotation sets a new normal code (under t2); another warm one,
///   well within its max age, is asked to set a duress code one edit from it, stored under t2,
///   which it lacks: it re-reads the secret because a stored code names an unknown pepper, and
///   the slip rule rejects the code (before, it computed the variants under t1 and accepted
///   it). Its next code is hashed under t2 as well.
///
/// A fresh `bootstrap` then verifies the codes the warm functions enrolled: the duress code
/// disarms with the normal code's reply and exactly one 121.
#[tokio::test]
async fn warm_http_api_functions_enrol_under_a_new_current_pepper_and_keep_the_slip_rule() {
    let (h, env) = world().await;
    let admin = h.admin_token("demo").await;
    let (secret, endpoint) = secrets_manager(support::lambda::pepper().expose().to_string()).await;
    let api_env = pepper_from_secrets_manager(
        &env,
        alarm_skill::adapters::secrets::needs::HTTP_API,
        &endpoint,
    );
    let mut aging_env = api_env.clone();
    aging_env.push(("PEPPER_MAX_AGE_S".into(), "1".into()));
    let mut aging = Function::start(support::lambda::HTTP_API, &aging_env).await;
    let mut warm = Function::start(support::lambda::HTTP_API, &api_env).await;
    for f in [&mut aging, &mut warm] {
        let (_, r) = get_members(f, &admin).await;
        assert_eq!(r["statusCode"], 200, "{r}");
    }
    let store = &h.stack.store;
    let pepper_of = |p: &alarm_skill::domain::voice_codes::Profile, kind| {
        p.members[0].code(kind).unwrap().pepper_id.clone()
    };
    use alarm_skill::domain::voice_codes::CodeKind::{Duress, Normal};

    *secret.lock().unwrap() = keyring_with_t2_added();
    *secret.lock().unwrap() = rotated_keyring();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    // Past its max age: the new normal code is hashed under t2, though no stored code names t2.
    assert_eq!(set_code(&mut aging, &admin, "voice-pin", "5174").await, 204);
    let profile = store.household("demo").await.unwrap().profile;
    assert_eq!(pepper_of(&profile, Normal), "t2");
    assert_eq!(pepper_of(&profile, Duress), "t1");

    // A container started after the rotation replaces it (under t2, as any new one would).
    let mut fresh = Function::start(support::lambda::HTTP_API, &api_env).await;
    assert_eq!(set_code(&mut fresh, &admin, "voice-pin", "2958").await, 204);
    let profile = store.household("demo").await.unwrap().profile;
    assert_eq!(pepper_of(&profile, Normal), "t2");

    // Within its max age, lacking t2: one edit from that normal code is still too similar.
    assert_eq!(set_code(&mut warm, &admin, "duress-pin", "2957").await, 422);
    let after = store.household("demo").await.unwrap().profile;
    assert_eq!(after.members[0].duress_pin, profile.members[0].duress_pin);
    assert_eq!(set_code(&mut warm, &admin, "duress-pin", "7316").await, 204);
    let profile = store.household("demo").await.unwrap().profile;
    assert_eq!(pepper_of(&profile, Duress), "t2");

    let logs = fresh.logs().await;
    assert_eq!(
        keyring_reloads(&logs),
        0,
        "it knew t2 from the start: {logs}"
    );
    let logs = aging.logs().await;
    assert_eq!(keyring_reloads(&logs), 1, "{logs}");
    assert!(logs.contains("max age"), "{logs}");
    let logs = warm.logs().await;
    assert_eq!(keyring_reloads(&logs), 1, "{logs}");
    assert!(logs.contains("unknown pepper id"), "{logs}");
    assert!(!logs.contains(&pepper_b64(43)), "no pepper in the logs");
    for pin in ["5174", "2958", "2957", "7316"] {
        let tokens: Vec<&str> = logs.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        assert!(!tokens.contains(&pin), "no code in the logs");
    }

    // The codes work: a directive function that knows t2 verifies both.
    let t = h.token("demo").await;
    let mut f = start_directive_function(&env, &endpoint).await;
    normal_and_duress_disarm_alike(&h, &t, &mut f, ["2958", "7316"]).await;
}
