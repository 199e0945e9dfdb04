//! The local stack's account-linking issuer: mints RS256 access tokens shaped like Cognito's
//! and serves the matching JWKS, so the real [`crate::adapters::account_link::JwksVerifier`] runs locally unchanged.
//!
//! Two kinds of token, as on AWS, from one app client told apart by scope (what
//! [`crate::edges::config::OAuthConfig::cognito`] accepts):
//! - for directives (what Alexa holds after account linking): `scope` = `alarm/control`;
//! - for the management API (what a household admin's app holds): `scope` =
//!   `aws.cognito.signin.user.admin`, as Cognito's `InitiateAuth` gives, and the
//!   `household-admin` group in `cognito:groups` for an admin.
//!
//! It also runs the OAuth 2.0 authorization-code flow with PKCE (S256), as Cognito's Hosted UI
//! does for Alexa's account linking and the household app: `GET /oauth2/authorize` shows a
//! login page, its form redirects back with a single-use code, and `POST /oauth2/token`
//! redeems the code for a token once the verifier matches the challenge. A request whose
//! scope holds the directive scope gets Alexa's kind of token, any other a management token.
//! Redirects go only to a registered redirect URI, compared exactly (RFC 9700 §4.1.3): the
//! household app's `/app/` on the issuer's origin and whatever the local stack registers; no
//! open redirect, even locally. Once the client and its redirect URI check out, every other
//! error is an error redirect there (RFC 6749 §4.1.2.1, RFC 7636 §4.4.1). `prompt` and `max_age`
//! are accepted: the issuer keeps no session, so every authorization shows its form and
//! `auth_time` is always the time that form was sent.
//!
//! The RSA key is made at start-up ([`super::dev_keys`]: once per process) and lives only in
//! memory: restarting the stack invalidates every token it minted, and no key file can leak or
//! go stale.
//!
//! Signing uses aws-lc-rs directly rather than jsonwebtoken, so the local stack also checks that
//! the verifier interoperates with an independently encoded JWT.

use std::sync::Arc;

use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Json, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};

use crate::domain::ports::account_link::TokenUse;
use crate::edges::config::DEFAULT_DIRECTIVE_SCOPE;

pub const ADMIN_GROUP: &str = crate::edges::config::DEFAULT_ADMIN_GROUP;
/// The scope of Cognito access tokens from `InitiateAuth` (user password or SRP sign-in).
pub const MANAGEMENT_SCOPE: &str = "aws.cognito.signin.user.admin";
/// `expires_in` of tokens from `POST /dev/token`.
pub const DEV_TOKEN_TTL_SECS: i64 = 3600;
const MAX_SUB_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("generating the RSA key failed")]
    KeyGeneration,
    #[error("signing the token failed")]
    Signing,
    #[error("sub must be 1-{MAX_SUB_LEN} characters without control characters")]
    BadSubject,
    #[error("ttl must be non-zero and at most a year either way")]
    BadTtl,
    #[error("encoding the token failed: {0}")]
    Encoding(String),
}

pub struct DevIssuer {
    issuer: String,
    audience: String,
    kid: String,
    key: RsaKeyPair,
    jwks: Value,
    /// The redirect URIs an authorization request may name, compared as exact strings.
    redirect_uris: Vec<String>,
    /// Authorization codes not yet redeemed, by code.
    codes: std::sync::Mutex<std::collections::HashMap<String, PendingCode>>,
}

/// What an authorization code was issued for; checked again when it is redeemed.
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    sub: String,
    admin: bool,
    purpose: TokenUse,
    /// When the login form was sent (Unix seconds): the token's `auth_time`.
    auth_time: i64,
    expires: std::time::Instant,
}

/// Bounds the codes waiting to be redeemed: a flood of logins can't grow memory. When full,
/// the oldest code gives way, so a flood can't refuse a real sign-in either: its code is
/// redeemed a moment after it is issued.
const MAX_PENDING_CODES: usize = 1000;
const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

crate::common::secret::debug_without_secrets!(DevIssuer {
    issuer,
    audience,
    kid
});

impl DevIssuer {
    /// An issuer with a key of its own, generated here.
    pub fn new(issuer: &str, audience: &str) -> Result<Self, DevIssuerError> {
        let key =
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| DevIssuerError::KeyGeneration)?;
        Ok(Self::with_key(issuer, audience, key))
    }

    /// An issuer signing with `key` (the local stack's comes from [`super::dev_keys`]) under a
    /// fresh `kid`.
    pub fn with_key(issuer: &str, audience: &str, key: RsaKeyPair) -> Self {
        let mut kid_bytes = [0u8; 12];
        rand::fill(&mut kid_bytes);
        let kid = format!("dev-{}", hex::encode(kid_bytes));
        let public = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let jwks = json!({"keys": [{
            "kty": "RSA",
            "kid": kid,
            "alg": "RS256",
            "use": "sig",
            "n": B64URL.encode(&public.n),
            "e": B64URL.encode(&public.e),
        }]});
        DevIssuer {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            kid,
            key,
            jwks,
            redirect_uris: vec![format!("{}/app/", issuer.trim_end_matches('/'))],
            codes: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Registers one more redirect URI (the household app's, where the stack configures one).
    pub fn with_redirect_uri(mut self, uri: &str) -> Self {
        if !self.redirect_uris.iter().any(|r| r == uri) {
            self.redirect_uris.push(uri.to_string());
        }
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token for `sub`: a management-API token for an admin, a directive token otherwise.
    pub fn mint(
        &self,
        sub: &str,
        admin: bool,
        ttl: chrono::Duration,
    ) -> Result<String, DevIssuerError> {
        let purpose = if admin {
            TokenUse::Management
        } else {
            TokenUse::Directives
        };
        self.mint_for(sub, purpose, admin, ttl)
    }

    /// An access token for `sub` and `purpose`, Cognito-shaped: `client_id` (no `aud`),
    /// `token_use`, `scope`, and `cognito:groups` for an admin.
    pub fn mint_for(
        &self,
        sub: &str,
        purpose: TokenUse,
        admin: bool,
        ttl: chrono::Duration,
    ) -> Result<String, DevIssuerError> {
        self.mint_signed_in(sub, purpose, admin, ttl, None)
    }

    /// [`Self::mint_for`] for a sign-in at `auth_time` (Unix seconds); `None`: minting stands
    /// for the sign-in.
    fn mint_signed_in(
        &self,
        sub: &str,
        purpose: TokenUse,
        admin: bool,
        ttl: chrono::Duration,
        auth_time: Option<i64>,
    ) -> Result<String, DevIssuerError> {
        if sub.is_empty() || sub.chars().count() > MAX_SUB_LEN || sub.chars().any(char::is_control)
        {
            return Err(DevIssuerError::BadSubject);
        }
        // A negative TTL mints an already-expired token: how tests exercise
        // EXPIRED_AUTHORIZATION_CREDENTIAL. Zero is refused (the token would expire as issued).
        if ttl.is_zero() || ttl.num_days().abs() > 366 {
            return Err(DevIssuerError::BadTtl);
        }
        let now = chrono::Utc::now().timestamp();
        // An expired token was valid for a while, so nbf/iat precede exp.
        let issued = now.min(now.saturating_add(ttl.num_seconds()) - 60);
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "client_id": self.audience,
            "token_use": "access",
            "scope": granted_scope(purpose),
            "iat": issued,
            "nbf": issued,
            // The management API's step-up reads it.
            "auth_time": auth_time.unwrap_or(issued),
            "exp": now.saturating_add(ttl.num_seconds()),
        });
        if admin {
            claims["cognito:groups"] = json!([ADMIN_GROUP]);
        }
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let encode = |v: &Value| {
            serde_json::to_vec(v)
                .map(|b| B64URL.encode(b))
                .map_err(|e| DevIssuerError::Encoding(e.to_string()))
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(&claims)?);
        let signature = crate::adapters::homegraph::sign_rs256(&self.key, &signing_input)
            .map_err(|_| DevIssuerError::Signing)?;
        Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
    }

    /// The public JWKS served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        self.jwks.clone()
    }
}

/// The `scope` of a token for `purpose`: in the token, and in the token endpoint's answer.
fn granted_scope(purpose: TokenUse) -> &'static str {
    match purpose {
        TokenUse::Directives => DEFAULT_DIRECTIVE_SCOPE,
        TokenUse::Management => MANAGEMENT_SCOPE,
    }
}

#[derive(serde::Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RequestedUse {
    Directives,
    Management,
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    sub: String,
    #[serde(default)]
    admin: bool,
    /// Defaults to `management` for an admin, `directives` otherwise.
    #[serde(default, rename = "use")]
    purpose: Option<RequestedUse>,
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

async fn token(
    State(issuer): State<Arc<DevIssuer>>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return bad_request(format!(
                "body must be {{\"sub\":...,\"admin\":bool,\"use\":\"directives\"|\"management\"}}: {}",
                e.body_text()
            ));
        }
    };
    let purpose = match (req.purpose, req.admin) {
        (Some(RequestedUse::Directives), _) | (None, false) => TokenUse::Directives,
        (Some(RequestedUse::Management), _) | (None, true) => TokenUse::Management,
    };
    match issuer.mint_for(
        &req.sub,
        purpose,
        req.admin,
        chrono::Duration::seconds(DEV_TOKEN_TTL_SECS),
    ) {
        Ok(access_token) => Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": DEV_TOKEN_TTL_SECS,
        }))
        .into_response(),
        Err(e @ DevIssuerError::BadSubject) => bad_request(e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "dev issuer could not mint a token");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    }
}

async fn jwks(State(issuer): State<Arc<DevIssuer>>) -> Json<Value> {
    Json(issuer.jwks())
}

/// `POST /dev/token`, `GET /.well-known/jwks.json`, and the authorization-code flow:
/// `GET`/`POST /oauth2/authorize` (the login page and its form), `POST /oauth2/token`.
pub fn routes(issuer: Arc<DevIssuer>) -> Router {
    Router::new()
        .route(
            "/oauth2/authorize",
            get(oauth::login_page).post(oauth::login),
        )
        .route("/oauth2/login.css", get(oauth::login_css))
        .route("/oauth2/token", post(oauth::redeem))
        .route("/dev/token", post(token))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(issuer)
}

mod oauth;

#[cfg(test)]
mod tests {
    use super::*;

    fn part(token: &str, i: usize) -> Value {
        let seg = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&B64URL.decode(seg).unwrap()).unwrap()
    }

    #[test]
    fn mints_cognito_shaped_claims() {
        let iss = DevIssuer::new("http://127.0.0.1:1/issuer", "alexa-skill").unwrap();
        let t = iss
            .mint("demo", true, chrono::Duration::minutes(5))
            .unwrap();
        let (h, c) = (part(&t, 0), part(&t, 1));
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["kid"], iss.kid());
        assert_eq!(c["client_id"], "alexa-skill");
        assert!(c.get("aud").is_none(), "Cognito access tokens carry no aud");
        assert_eq!(c["token_use"], "access");
        assert_eq!(c["scope"], MANAGEMENT_SCOPE);
        assert_eq!(c["cognito:groups"], json!([ADMIN_GROUP]));
        assert!(
            c.get("admin").is_none(),
            "no claim the verifier doesn't honour"
        );
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
        let plain = iss
            .mint("demo", false, chrono::Duration::minutes(5))
            .unwrap();
        assert_eq!(part(&plain, 1)["scope"], "alarm/control");
        assert!(part(&plain, 1).get("cognito:groups").is_none());
        assert_eq!(iss.jwks()["keys"][0]["e"], "AQAB");
        assert!(matches!(
            iss.mint("", false, chrono::Duration::minutes(1)),
            Err(DevIssuerError::BadSubject)
        ));
        assert!(matches!(
            iss.mint("x", false, chrono::Duration::zero()),
            Err(DevIssuerError::BadTtl)
        ));
    }
}
