//! Dev fakes of Amazon's side for the local stack: a Login-with-Amazon token endpoint and an
//! event gateway that records what the skill sends.
//!
//! - `POST /dev/lwa/token`: form-encoded like LWA. Checks the client id and secret; issues
//!   random `Atza|…`/`Atzr|…` tokens for any non-empty authorization code, each code once.
//! - `POST /dev/gateway/v3/events`: requires `Authorization: Bearer <token>` with a token this
//!   fake issued, equal to the token in the message's scope; records the message; 202.
//! - `GET /dev/gateway/events`: the recorded messages, oldest first.
//!
//! Local only (feature `local`): issued tokens and recorded messages are kept in memory and
//! served back in clear, which is the point of a dev fake.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::common::secret::Secret;

const EXPIRES_IN_S: u64 = 3_600;

#[derive(Default)]
struct Inner {
    used_codes: HashSet<String>,
    access_tokens: HashSet<String>,
    refresh_tokens: HashSet<String>,
    events: Vec<Value>,
    /// The gateway takes this long to accept an event (a slow gateway, for measurements).
    delay: std::time::Duration,
}

pub struct DevAlexa {
    client_id: String,
    client_secret: Secret,
    inner: Mutex<Inner>,
}

crate::common::secret::debug_without_secrets!(DevAlexa { client_id });

impl DevAlexa {
    /// `client_id`/`client_secret` are what the skill's `LWA_CLIENT_ID`/`LWA_CLIENT_SECRET`
    /// must be set to.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        DevAlexa {
            client_id: client_id.into(),
            client_secret,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the sets consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The messages the gateway accepted, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// The event gateway waits `delay` before accepting each event, as a slow gateway would.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.lock().delay = delay;
    }

    /// Forgets every refresh token, as LWA does when the customer disables the skill: the next
    /// refresh gets `invalid_grant`.
    pub fn revoke_all(&self) {
        let mut inner = self.lock();
        inner.refresh_tokens.clear();
        inner.access_tokens.clear();
    }

    fn client_ok(&self, id: &str, secret: &str) -> bool {
        let id_ok = id.as_bytes().ct_eq(self.client_id.as_bytes());
        let secret_ok = secret
            .as_bytes()
            .ct_eq(self.client_secret.expose().as_bytes());
        bool::from(id_ok & secret_ok)
    }

    fn issue(&self, inner: &mut Inner, refresh: Option<String>) -> Value {
        let access = format!("Atza|{}", random_hex());
        inner.access_tokens.insert(access.clone());
        let refresh = refresh.unwrap_or_else(|| {
            let r = format!("Atzr|{}", random_hex());
            inner.refresh_tokens.insert(r.clone());
            r
        });
        json!({
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": EXPIRES_IN_S,
        })
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn gateway_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "header": {
                "namespace": "System",
                "name": "Exception",
                "messageId": uuid::Uuid::new_v4().to_string(),
            },
            "payload": { "code": code, "description": description },
        })),
    )
        .into_response()
}

async fn token(State(dev): State<Arc<DevAlexa>>, headers: HeaderMap, body: Bytes) -> Response {
    if !super::form_encoded(&headers) {
        // Real LWA fails a JSON body the same way: the classic AcceptGrant mistake.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if !dev.client_ok(field("client_id"), field("client_secret")) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let mut inner = dev.lock();
    match field("grant_type") {
        "authorization_code" => {
            let code = field("code");
            if code.is_empty() || !inner.used_codes.insert(code.to_string()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The request has an invalid grant parameter : code",
                );
            }
            let tokens = dev.issue(&mut inner, None);
            (StatusCode::OK, axum::Json(tokens)).into_response()
        }
        "refresh_token" => {
            let refresh = field("refresh_token");
            if !inner.refresh_tokens.contains(refresh) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The request has an invalid grant parameter : refresh_token",
                );
            }
            let tokens = dev.issue(&mut inner, Some(refresh.to_string()));
            (StatusCode::OK, axum::Json(tokens)).into_response()
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
    }
}

async fn gateway_post(
    State(dev): State<Arc<DevAlexa>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = dev.lock().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return gateway_error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST_EXCEPTION",
                "the body is not JSON",
            );
        }
    };
    let event = &message["event"];
    let scope = event["endpoint"]["scope"]["token"]
        .as_str()
        .or_else(|| event["payload"]["scope"]["token"].as_str())
        .unwrap_or("");
    let mut inner = dev.lock();
    if bearer.is_empty() || !inner.access_tokens.contains(bearer) {
        return gateway_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_ACCESS_TOKEN_EXCEPTION",
            "the access token is not valid",
        );
    }
    if scope != bearer {
        return gateway_error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST_EXCEPTION",
            "the scope token differs from the Authorization header",
        );
    }
    inner.events.push(message);
    StatusCode::ACCEPTED.into_response()
}

async fn gateway_events(State(dev): State<Arc<DevAlexa>>) -> Response {
    axum::Json(Value::Array(dev.events())).into_response()
}

pub fn routes(state: Arc<DevAlexa>) -> Router {
    Router::new()
        .route("/dev/lwa/token", post(token))
        .route("/dev/gateway/v3/events", post(gateway_post))
        .route("/dev/gateway/events", get(gateway_events))
        .with_state(state)
}
