//! Dev fakes of Google's side for the local stack: the OAuth token URL a service account
//! exchanges its JWT assertion at, and HomeGraph's Report State and Request Sync, recording
//! what the skill sends. Both check the request as Google would, so a wrong assertion or body
//! fails here instead of in production.
//!
//! - `POST /dev/google/token`: form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//!   and `assertion`, an RS256 JWT signed by the service account's key (verified against its
//!   public key), `iss` the account, `aud` this URL, `scope` HomeGraph's, at most an hour long.
//!   Answers a random access token; 400 `invalid_grant` otherwise.
//! - `POST /dev/google/homegraph/v1/devices:reportStateAndNotification` and
//!   `POST /dev/google/homegraph/v1/devices:requestSync`: a bearer token this fake issued and
//!   the documented body; recorded; 404 for an agentUserId marked unlinked, 400 for a bad body.
//! - `GET /dev/google/reports`, `GET /dev/google/syncs`: what was recorded, oldest first.
//!
//! Local only (feature `local`): the key is generated at start-up and lives in memory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};
use serde_json::{Value, json};

use crate::adapters::homegraph::{JWT_BEARER, SCOPE};
use crate::common::secret::Secret;

pub const TOKEN_PATH: &str = "/dev/google/token";
pub const HOMEGRAPH_PATH: &str = "/dev/google/homegraph";
pub const CLIENT_EMAIL: &str = "alarm-skill@local-dev.iam.gserviceaccount.com";

#[derive(Default)]
struct Inner {
    access_tokens: HashSet<String>,
    exchanges: usize,
    reports: Vec<Value>,
    syncs: Vec<Value>,
    unlinked: HashSet<String>,
    /// Report State calls answered so far, refused ones included.
    report_calls: usize,
    /// The next this many Report State calls fail with `failure_status`.
    failing_reports: usize,
    failure_status: u16,
    /// What the token URL answers as `expires_in` (3600 by default).
    token_lifetime: Option<Value>,
}

pub struct DevGoogle {
    token_url: String,
    key_file: Secret,
    decoding: jsonwebtoken::DecodingKey,
    inner: Mutex<Inner>,
}

crate::common::secret::debug_without_secrets!(DevGoogle { token_url });

impl DevGoogle {
    /// A new service account whose assertions are accepted at `base_url` + [`TOKEN_PATH`].
    pub fn new(base_url: &str) -> Result<Self, String> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| "key generation failed")?;
        Self::with_key(base_url, key)
    }

    /// The same with `key` as the account's (the local stack's comes from
    /// [`super::dev_keys`]).
    pub fn with_key(base_url: &str, key: RsaKeyPair) -> Result<Self, String> {
        let der: Pkcs8V1Der<'_> = key.as_der().map_err(|_| "key encoding failed")?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        let token_url = format!("{base_url}{TOKEN_PATH}");
        let key_file = Secret::new(
            json!({
                "type": "service_account",
                "project_id": "local-dev",
                "client_email": CLIENT_EMAIL,
                "private_key": pem,
                "token_uri": token_url,
            })
            .to_string(),
        );
        let public = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
            &B64URL.encode(&public.n),
            &B64URL.encode(&public.e),
        )
        .map_err(|e| e.to_string())?;
        Ok(DevGoogle {
            token_url,
            key_file,
            decoding,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The service-account key file, as Google's console downloads it.
    pub fn key_file(&self) -> &Secret {
        &self.key_file
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Report State bodies accepted, oldest first.
    pub fn reports(&self) -> Vec<Value> {
        self.lock().reports.clone()
    }

    /// Request Sync bodies accepted, oldest first.
    pub fn syncs(&self) -> Vec<Value> {
        self.lock().syncs.clone()
    }

    /// How many assertions were exchanged for a token.
    pub fn exchanges(&self) -> usize {
        self.lock().exchanges
    }

    /// The next `calls` Report State calls fail with `status` (e.g. 503), as in an outage.
    pub fn fail_reports(&self, calls: usize, status: u16) {
        let mut inner = self.lock();
        inner.failing_reports = calls;
        inner.failure_status = status;
    }

    /// Report State calls received, accepted or not.
    pub fn report_calls(&self) -> usize {
        self.lock().report_calls
    }

    /// The token URL answers `expires_in` with this from now on: a broken or hostile one.
    pub fn set_token_lifetime(&self, expires_in: Value) {
        self.lock().token_lifetime = Some(expires_in);
    }

    /// HomeGraph answers 404 for this user from now on, as for one who unlinked.
    pub fn unlink(&self, agent_user_id: &str) {
        self.lock().unlinked.insert(agent_user_id.to_string());
    }

    fn check_assertion(&self, assertion: &str) -> Result<(), String> {
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err("alg must be RS256".into());
        }
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&[&self.token_url]);
        v.set_issuer(&[CLIENT_EMAIL]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Value>(assertion, &self.decoding, &v)
            .map_err(|e| e.to_string())?
            .claims;
        if claims["scope"] != SCOPE {
            return Err("scope must be HomeGraph's".into());
        }
        let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
        match (iat, exp) {
            (Some(i), Some(e)) if e > i && e - i <= 3_600 => Ok(()),
            _ => Err("iat/exp must span at most an hour".into()),
        }
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        token.is_some_and(|t| self.lock().access_tokens.contains(t))
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

async fn token(State(g): State<Arc<DevGoogle>>, headers: HeaderMap, body: Bytes) -> Response {
    if !super::form_encoded(&headers) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let field = |name: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if field("grant_type").as_deref() != Some(JWT_BEARER) {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some(assertion) = field("assertion") else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if let Err(why) = g.check_assertion(&assertion) {
        tracing::warn!(%why, "dev google: assertion refused");
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    let access = format!("ya29.dev-{}", hex::encode(bytes));
    let mut inner = g.lock();
    inner.exchanges += 1;
    inner.access_tokens.insert(access.clone());
    let expires_in = inner.token_lifetime.clone().unwrap_or(json!(3_600));
    Json(json!({ "access_token": access, "expires_in": expires_in, "token_type": "Bearer" }))
        .into_response()
}

fn agent(body: &Value) -> Option<&str> {
    body["agentUserId"].as_str().filter(|a| !a.is_empty())
}

async fn report_state(
    State(g): State<Arc<DevGoogle>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    {
        let mut inner = g.lock();
        inner.report_calls += 1;
        if inner.failing_reports > 0 {
            inner.failing_reports -= 1;
            let status = StatusCode::from_u16(inner.failure_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return refuse(status, "UNAVAILABLE");
        }
    }
    if !g.authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    let states = body["payload"]["devices"]["states"].as_object();
    let shaped = body["requestId"].is_string()
        && agent(&body).is_some()
        && states.is_some_and(|s| !s.is_empty() && s.values().all(Value::is_object));
    if !shaped {
        return refuse(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
    let mut inner = g.lock();
    if agent(&body).is_some_and(|a| inner.unlinked.contains(a)) {
        return refuse(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    inner.reports.push(body);
    Json(json!({ "requestId": "dev" })).into_response()
}

async fn request_sync(
    State(g): State<Arc<DevGoogle>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !g.authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    if agent(&body).is_none() || !body["async"].is_boolean() {
        return refuse(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
    let mut inner = g.lock();
    if agent(&body).is_some_and(|a| inner.unlinked.contains(a)) {
        return refuse(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    inner.syncs.push(body);
    Json(json!({})).into_response()
}

async fn reports(State(g): State<Arc<DevGoogle>>) -> Json<Value> {
    Json(Value::Array(g.reports()))
}

async fn syncs(State(g): State<Arc<DevGoogle>>) -> Json<Value> {
    Json(Value::Array(g.syncs()))
}

pub fn routes(state: Arc<DevGoogle>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route("/dev/google/reports", get(reports))
        .route("/dev/google/syncs", get(syncs))
        .route(
            &format!("{HOMEGRAPH_PATH}/v1/devices:reportStateAndNotification"),
            post(report_state),
        )
        .route(
            &format!("{HOMEGRAPH_PATH}/v1/devices:requestSync"),
            post(request_sync),
        )
        .with_state(state)
}
