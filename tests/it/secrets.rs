//! Secret loading through the real aws-sdk-secretsmanager client, against a local server that
//! speaks the Secrets Manager JSON protocol.

use crate::support;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alarm_skill::adapters::secrets::{SecretName, SecretsError, load, load_for, needs};
use alarm_skill::common::secret::Secret;
use alarm_skill::edges::config::{SecretRef, SecretRefs};
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Fake {
    /// id → the secret's JSON fields (SecretString or SecretBinary).
    secrets: Arc<HashMap<String, Value>>,
    requests: Arc<Mutex<Vec<(String, bool)>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

fn amz_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Long enough that concurrent requests overlap.
    tokio::time::sleep(Duration::from_millis(150)).await;
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);

    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target != "secretsmanager.GetSecretValue" {
        return amz_json(
            StatusCode::BAD_REQUEST,
            json!({"__type": "UnknownOperationException", "message": target}),
        );
    }
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"));
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = req["SecretId"].as_str().unwrap_or("").to_string();
    fake.requests.lock().unwrap().push((id.clone(), signed));
    match fake.secrets.get(&id) {
        Some(fields) => {
            let mut out = json!({
                "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{id}-AbCdEf"),
                "Name": id,
                "VersionId": "v1",
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": 1.7e9,
            });
            for (k, v) in fields.as_object().unwrap() {
                out[k] = v.clone();
            }
            amz_json(StatusCode::OK, out)
        }
        None => amz_json(
            StatusCode::BAD_REQUEST,
            json!({
                "__type": "ResourceNotFoundException",
                "message": "Secrets Manager can't find the specified secret."
            }),
        ),
    }
}

async fn start(secrets: &[(&str, Value)]) -> (Fake, aws_sdk_secretsmanager::Client) {
    let fake = Fake {
        secrets: Arc::new(
            secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        ..Fake::default()
    };
    let app = Router::new()
        .route("/", post(handle))
        .with_state(fake.clone());
    let addr: SocketAddr = support::serve(app).await;
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDTEST",
            "not-a-real-key",
            None,
            None,
            "test",
        ))
        .endpoint_url(format!("http://{addr}"))
        .build();
    (fake, aws_sdk_secretsmanager::Client::from_conf(conf))
}

fn string(v: &str) -> Value {
    json!({ "SecretString": v })
}

fn pepper_b64(byte: u8) -> String {
    B64.encode([byte; 32])
}

fn keyring_json() -> String {
    json!({"current": "p2", "peppers": {"p1": pepper_b64(1), "p2": pepper_b64(2)}}).to_string()
}

fn aws(id: &str) -> SecretRef {
    SecretRef::Aws(id.to_string())
}

fn value(v: &str) -> SecretRef {
    SecretRef::Value(Secret::new(v))
}

const PEPPER_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:alarm/pepper";

#[tokio::test]
async fn loads_mixed_refs_concurrently_and_parses_the_keyring() {
    let (fake, client) = start(&[
        (PEPPER_ARN, string(&keyring_json())),
        ("alarm/webhook", string("whsec-from-aws")),
        ("alarm/panel-key", string("panel-key-from-aws")),
    ])
    .await;
    let refs = SecretRefs {
        pepper: aws(PEPPER_ARN),
        lwa_client_secret: value("lwa-from-env"),
        webhook_secret: aws("alarm/webhook"),
        panel_api_key: aws("alarm/panel-key"),
        ..env_refs()
    };
    let s = load(&refs, Some(&client)).await.unwrap();
    assert_eq!(s.keyring.current_id(), "p2");
    assert!(s.keyring.contains("p1"));
    assert_eq!(s.lwa_client_secret.expose(), "lwa-from-env");
    assert_eq!(s.webhook_secret.expose(), "whsec-from-aws");
    assert_eq!(s.panel_api_key.expose(), "panel-key-from-aws");

    let mut seen = fake.requests.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("alarm/panel-key".to_string(), true),
            ("alarm/webhook".to_string(), true),
            (PEPPER_ARN.to_string(), true),
        ],
        "each remote secret fetched once, SigV4-signed; env values never sent"
    );
    assert!(
        fake.max_in_flight.load(Ordering::SeqCst) >= 2,
        "remote secrets are fetched concurrently"
    );
    let debug = format!("{s:?}");
    for v in [
        "whsec-from-aws",
        "panel-key-from-aws",
        "lwa-from-env",
        &pepper_b64(2),
    ] {
        assert!(!debug.contains(v), "Debug shows a secret: {debug}");
    }
}

#[tokio::test]
async fn missing_secret_names_which_one() {
    let (_fake, client) = start(&[(PEPPER_ARN, string(&keyring_json()))]).await;
    let refs = SecretRefs {
        pepper: aws(PEPPER_ARN),
        panel_api_key: aws("alarm/does-not-exist"),
        ..env_refs()
    };
    let err = load(&refs, Some(&client)).await.unwrap_err();
    match &err {
        SecretsError::Fetch { name, id, reason } => {
            assert_eq!(*name, "PANEL_API_KEY");
            assert_eq!(id, "alarm/does-not-exist");
            assert!(reason.contains("ResourceNotFoundException"), "{reason}");
        }
        other => panic!("expected Fetch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("PANEL_API_KEY") && text.contains("alarm/does-not-exist"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_keyring_json_is_reported_without_the_value() {
    let leaky = format!(
        "{{\"current\":\"p1\",\"peppers\":{{\"p1\":\"{}\"",
        pepper_b64(7)
    );
    let short = json!({"current": "p1", "peppers": {"p1": "c2hvcnQtYnV0LXNlY3JldA=="}}).to_string();
    for (spec, needle) in [
        (leaky.as_str(), pepper_b64(7)),
        (short.as_str(), "c2hvcnQtYnV0LXNlY3JldA==".to_string()),
        ("not json at all: hunter2", "hunter2".to_string()),
    ] {
        let (_fake, client) = start(&[(PEPPER_ARN, string(spec))]).await;
        let refs = SecretRefs {
            pepper: aws(PEPPER_ARN),
            ..env_refs()
        };
        let err = load(&refs, Some(&client)).await.unwrap_err();
        assert!(
            matches!(err, SecretsError::Keyring { name: "PEPPER", .. }),
            "{err:?}"
        );
        let text = format!("{err} / {err:?}");
        assert!(text.contains("PEPPER"), "{text}");
        assert!(!text.contains(&needle), "error echoes the secret: {text}");
    }
}

#[tokio::test]
async fn aws_ref_without_a_client_is_an_error_and_env_values_need_none() {
    let refs = SecretRefs {
        webhook_secret: aws("alarm/webhook"),
        ..env_refs()
    };
    let err = load(&refs, None).await.unwrap_err();
    assert!(
        matches!(&err, SecretsError::NoClient { name: "WEBHOOK_SECRET", id } if id == "alarm/webhook"),
        "{err:?}"
    );
    let refs = SecretRefs {
        webhook_secret: value("wh"),
        ..refs
    };
    let s = load(&refs, None).await.unwrap();
    assert_eq!(s.webhook_secret.expose(), "wh");
    assert_eq!(s.keyring.current_id(), "p2");
}

#[tokio::test]
async fn binary_or_empty_secrets_are_rejected() {
    let (_fake, client) = start(&[
        (PEPPER_ARN, string(&keyring_json())),
        (
            "alarm/binary",
            json!({"SecretBinary": B64.encode(b"raw bytes")}),
        ),
        ("alarm/empty", string("")),
    ])
    .await;
    let base = SecretRefs {
        pepper: aws(PEPPER_ARN),
        ..env_refs()
    };
    let binary_lwa = SecretRefs {
        lwa_client_secret: aws("alarm/binary"),
        ..base.clone()
    };
    let err = load(&binary_lwa, Some(&client)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::NotString {
                name: "LWA_CLIENT_SECRET",
                ..
            }
        ),
        "{err:?}"
    );
    let empty_webhook = SecretRefs {
        webhook_secret: aws("alarm/empty"),
        ..base
    };
    let err = load(&empty_webhook, Some(&client)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::Empty {
                name: "WEBHOOK_SECRET"
            }
        ),
        "{err:?}"
    );
}

/// Every secret from the environment (the pepper a keyring of p1 and p2), Google's key unset.
fn env_refs() -> SecretRefs {
    SecretRefs {
        pepper: value(&keyring_json()),
        lwa_client_secret: value("lwa"),
        webhook_secret: value("wh"),
        panel_api_key: value("key"),
        google_service_account: no_google(),
    }
}

fn no_google() -> SecretRef {
    SecretRef::Unset {
        arn_var: "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN",
        value_var: "GOOGLE_SERVICE_ACCOUNT",
    }
}

#[tokio::test]
async fn the_google_key_is_optional_and_only_the_http_function_loads_it() {
    let refs = env_refs();
    // Unset: HomeGraph off, not a start-up failure.
    let s = load_for(&refs, needs::HTTP_API, None).await.unwrap();
    assert!(s.google_service_account.is_none());
    assert!(needs::HTTP_API.contains(&SecretName::GoogleServiceAccount));
    let refs = SecretRefs {
        google_service_account: value("{\"client_email\":\"sa\"}"),
        ..refs
    };
    let s = load_for(&refs, needs::HTTP_API, None).await.unwrap();
    assert!(s.google_service_account.is_some());
    for other in [needs::DIRECTIVE, needs::REDELIVERY] {
        let s = load_for(&refs, other, None).await.unwrap();
        assert!(
            s.google_service_account.is_none(),
            "loaded where not needed"
        );
    }
    // Configured but unreadable is an error that names it, as for every secret.
    let refs = SecretRefs {
        google_service_account: aws("alarm/google"),
        ..refs
    };
    let err = load_for(&refs, needs::HTTP_API, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::NoClient {
                name: "GOOGLE_SERVICE_ACCOUNT",
                ..
            }
        ),
        "{err:?}"
    );
}
