//! The household web app (`/app/`): plain HTML, CSS and a little JavaScript, compiled into the
//! binary, for a household admin to manage members' voice codes, the lockout, the audit log and
//! the settings through the management API ([`crate::edges::management`]).
//!
//! Sign-in is the OAuth 2.0 authorization-code flow with PKCE (S256) against the
//! account-linking issuer: Cognito's Hosted UI in production, the dev issuer's login page
//! locally. The access token lives in the page's memory only; the PKCE verifier and `state`
//! wait in `sessionStorage` across the issuer's redirect and are removed when the code is
//! redeemed. After the management API's step-up refusal (`401 reauthentication_required`) the
//! page asks the admin to confirm it's them, and the next sign-in carries `prompt=login` and
//! `max_age=0`: a live session at the issuer must not stand in for the password. PINs only
//! ever travel in request bodies to the management API: never in a URL, history, storage or
//! log, and the inputs are cleared after every submit. The header names the signed-in account
//! (the token's `username`, else `sub`), read off the token for display only.
//!
//! Every response carries a strict Content-Security-Policy: no inline script or style, nothing
//! from any origin but this one (and the issuer's token endpoint, which the page calls).
//!
//! Served by `http-api` in production and by the local stack, with the same code.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

const INDEX: &str = include_str!("app/index.html");
const SCRIPT: &str = include_str!("app/app.js");
const STYLE: &str = include_str!("app/app.css");
const ICON: &str = include_str!("app/icon.svg");

/// The OAuth client the page signs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The issuer's authorization endpoint (Cognito: `https://<domain>/oauth2/authorize`).
    pub authorize_url: String,
    /// The issuer's token endpoint (Cognito: `https://<domain>/oauth2/token`).
    pub token_url: String,
    /// A public client (no secret) allowed the authorization-code grant, whose tokens the
    /// management API accepts (`OAUTH_MANAGEMENT_AUDIENCE`).
    pub client_id: String,
    /// Space-separated scopes to ask for. Never the directive scope: the management API refuses
    /// tokens that carry it.
    pub scope: String,
    /// The registered callback URL; by default the page's own URL (`https://<api>/app/`).
    pub redirect_uri: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppConfigError {
    #[error("{0} must be set when APP_OAUTH_CLIENT_ID is")]
    Missing(&'static str),
    #[error("{0} must be an https URL (http only for 127.0.0.1 or localhost)")]
    BadUrl(&'static str),
    #[error("APP_OAUTH_SCOPE must not ask for the directive scope {0}")]
    DirectiveScope(String),
}

fn checked_url(name: &'static str, value: &str) -> Result<url::Url, AppConfigError> {
    let u = url::Url::parse(value).map_err(|_| AppConfigError::BadUrl(name))?;
    let local = matches!(u.host_str(), Some("127.0.0.1" | "localhost"));
    match u.scheme() {
        "https" => Ok(u),
        "http" if local => Ok(u),
        _ => Err(AppConfigError::BadUrl(name)),
    }
}

impl AppConfig {
    /// `APP_OAUTH_CLIENT_ID`, `APP_OAUTH_AUTHORIZE_URL`, `APP_OAUTH_TOKEN_URL`, and optionally
    /// `APP_OAUTH_SCOPE` (default `openid`) and `APP_OAUTH_REDIRECT_URI`. `None` when no client
    /// is configured: the page then says sign-in is not set up.
    pub fn from_env() -> Result<Option<AppConfig>, AppConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<AppConfig>, AppConfigError> {
        let Some(client_id) = get("APP_OAUTH_CLIENT_ID") else {
            return Ok(None);
        };
        let need = |k: &'static str| get(k).ok_or(AppConfigError::Missing(k));
        let config = AppConfig {
            authorize_url: need("APP_OAUTH_AUTHORIZE_URL")?,
            token_url: need("APP_OAUTH_TOKEN_URL")?,
            client_id,
            scope: get("APP_OAUTH_SCOPE").unwrap_or_else(|| "openid".to_string()),
            redirect_uri: get("APP_OAUTH_REDIRECT_URI"),
        };
        config.validate()?;
        Ok(Some(config))
    }

    pub fn validate(&self) -> Result<(), AppConfigError> {
        checked_url("APP_OAUTH_AUTHORIZE_URL", &self.authorize_url)?;
        checked_url("APP_OAUTH_TOKEN_URL", &self.token_url)?;
        if let Some(r) = &self.redirect_uri {
            checked_url("APP_OAUTH_REDIRECT_URI", r)?;
        }
        let directive = crate::edges::config::DEFAULT_DIRECTIVE_SCOPE;
        if self.scope.split_whitespace().any(|s| s == directive) {
            return Err(AppConfigError::DirectiveScope(directive.to_string()));
        }
        Ok(())
    }

    /// The token endpoint's origin: the one other place the page may `fetch`.
    fn token_origin(&self) -> String {
        url::Url::parse(&self.token_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

/// The app's Content-Security-Policy. `connect_extra` is the token endpoint's origin, when
/// the issuer lives elsewhere.
pub fn app_csp(connect_extra: Option<&str>) -> String {
    let connect = match connect_extra {
        Some(o) if !o.is_empty() && o != "null" => format!("'self' {o}"),
        _ => "'self'".to_string(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src {connect}; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// A static text response with the security headers every page of ours carries.
pub fn page(body: &'static str, content_type: &'static str, csp: &str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    secure(&mut resp, content_type, csp);
    resp
}

/// The security headers, on any response (pages, the config, the dev issuer's login page).
pub fn secure(resp: &mut Response, content_type: &'static str, csp: &str) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The authorization code sits in the URL for a moment: never send it onwards.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[derive(Clone)]
struct Served {
    config: Option<AppConfig>,
    csp: String,
}

async fn index(State(s): State<Served>) -> Response {
    page(INDEX, "text/html; charset=utf-8", &s.csp)
}

async fn script(State(s): State<Served>) -> Response {
    page(SCRIPT, "text/javascript; charset=utf-8", &s.csp)
}

async fn style(State(s): State<Served>) -> Response {
    page(STYLE, "text/css; charset=utf-8", &s.csp)
}

async fn icon(State(s): State<Served>) -> Response {
    page(ICON, "image/svg+xml", &s.csp)
}

/// What the page needs to sign in; public values only (a public client has no secret).
async fn app_config(State(s): State<Served>) -> Response {
    let (status, body) = match &s.config {
        Some(c) => (
            StatusCode::OK,
            json!({
                "authorize_url": c.authorize_url,
                "token_url": c.token_url,
                "client_id": c.client_id,
                "scope": c.scope,
                "redirect_uri": c.redirect_uri,
            }),
        ),
        None => (
            StatusCode::NOT_FOUND,
            json!({"error": "not_configured", "message": "sign-in is not configured (APP_OAUTH_CLIENT_ID)"}),
        ),
    };
    let mut resp = (status, body.to_string()).into_response();
    secure(&mut resp, "application/json", &s.csp);
    resp
}

/// `/app/` (and `/app` → `/app/`), `/app/app.js`, `/app/app.css`, `/app/icon.svg`,
/// `/app/config.json`.
pub fn routes(config: Option<AppConfig>) -> Router {
    let csp = app_csp(config.as_ref().map(AppConfig::token_origin).as_deref());
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(index))
        .route("/app/app.js", get(script))
        .route("/app/app.css", get(style))
        .route("/app/icon.svg", get(icon))
        .route("/app/config.json", get(app_config))
        .with_state(Served { config, csp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn config_from_env_checks_urls_and_scope() {
        assert_eq!(AppConfig::from_lookup(lookup(&[])), Ok(None));
        let good = [
            ("APP_OAUTH_CLIENT_ID", "abc"),
            (
                "APP_OAUTH_AUTHORIZE_URL",
                "https://x.auth.eu-west-1.amazoncognito.com/oauth2/authorize",
            ),
            (
                "APP_OAUTH_TOKEN_URL",
                "https://x.auth.eu-west-1.amazoncognito.com/oauth2/token",
            ),
        ];
        let c = AppConfig::from_lookup(lookup(&good)).unwrap().unwrap();
        assert_eq!(c.scope, "openid");
        assert_eq!(
            c.token_origin(),
            "https://x.auth.eu-west-1.amazoncognito.com"
        );
        assert_eq!(
            AppConfig::from_lookup(lookup(&good[..2])),
            Err(AppConfigError::Missing("APP_OAUTH_TOKEN_URL"))
        );
        let mut plain = good.to_vec();
        plain[2] = ("APP_OAUTH_TOKEN_URL", "http://evil.example/token");
        assert_eq!(
            AppConfig::from_lookup(lookup(&plain)),
            Err(AppConfigError::BadUrl("APP_OAUTH_TOKEN_URL"))
        );
        let mut scoped = good.to_vec();
        scoped.push(("APP_OAUTH_SCOPE", "openid alarm/control"));
        assert!(matches!(
            AppConfig::from_lookup(lookup(&scoped)),
            Err(AppConfigError::DirectiveScope(_))
        ));
    }

    #[test]
    fn csp_allows_nothing_inline_and_only_the_token_origin() {
        let csp = app_csp(Some("https://auth.example"));
        assert!(csp.contains("script-src 'self';"));
        assert!(csp.contains("connect-src 'self' https://auth.example;"));
        assert!(!csp.contains("unsafe"));
        assert_eq!(
            app_csp(None),
            app_csp(Some("null")),
            "an opaque origin adds nothing"
        );
    }
}
