//! The dev issuer's authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636 S256): a login
//! page, single-use codes bound to the client, redirect URI and challenge, and the token
//! endpoint that checks the verifier. Local only, like the rest of the dev issuer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    CODE_TTL, DEV_TOKEN_TTL_SECS, DevIssuer, MAX_PENDING_CODES, PendingCode, granted_scope,
};
use crate::domain::ports::account_link::TokenUse;
use crate::edges::config::DEFAULT_DIRECTIVE_SCOPE;

const LOGIN_CSS: &str = include_str!("login.css");
const LOGIN_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                         frame-ancestors 'none'; base-uri 'none'";

fn form(bytes: &[u8]) -> HashMap<String, String> {
    // The first value of a repeated parameter wins; OAuth forbids repeats anyway.
    let mut m = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    m
}

use crate::local::html_escape as escape;

fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    crate::edges::webapp::secure(&mut resp, "text/html; charset=utf-8", LOGIN_CSP);
    resp
}

fn error_page(message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Sign-in error</title><link rel=\"stylesheet\" href=\"/oauth2/login.css\">\
             </head><body><main><h1>Sign-in error</h1><p role=\"alert\">{}</p></main></body></html>",
            escape(message)
        ),
    )
}

fn base64url_of_len(s: &str, range: std::ops::RangeInclusive<usize>) -> bool {
    range.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// A validated authorization request.
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: String,
    challenge: String,
}

/// Why an authorization request is refused.
enum Refusal {
    /// The client or its redirect URI is wrong: said on the issuer's own page, never
    /// redirected, since the redirect URI can't be trusted.
    Page(&'static str),
    /// Anything else, once the client and its redirect URI check out: an error redirect to it
    /// (RFC 6749 §4.1.2.1), so the client learns why.
    Redirect {
        redirect_uri: String,
        state: String,
        error: &'static str,
        description: &'static str,
    },
}

/// The scopes the issuer grants something for; any other is `invalid_scope`, as Cognito
/// refuses a scope the app client doesn't allow.
const KNOWN_SCOPES: [&str; 6] = [
    "openid",
    "email",
    "phone",
    "profile",
    super::MANAGEMENT_SCOPE,
    DEFAULT_DIRECTIVE_SCOPE,
];

/// OpenID Connect's `prompt`: `none` can't be met (the issuer keeps no session, so the user
/// always has to sign in); the others all lead to the form, which is always shown.
fn check_prompt(prompt: &str) -> Result<(), (&'static str, &'static str)> {
    let values: Vec<&str> = prompt.split_whitespace().collect();
    if values.contains(&"none") {
        return Err(if values.len() == 1 {
            ("login_required", "prompt=none, and no one is signed in")
        } else {
            ("invalid_request", "prompt=none goes alone")
        });
    }
    if values
        .iter()
        .all(|v| matches!(*v, "login" | "consent" | "select_account"))
    {
        Ok(())
    } else {
        Err(("invalid_request", "unknown prompt value"))
    }
}

impl DevIssuer {
    /// Checks an authorization request: first the client and its exact redirect URI, then
    /// the rest, whose errors may be redirected.
    fn authorization(&self, p: &HashMap<String, String>) -> Result<AuthRequest, Refusal> {
        let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
        if get("client_id") != self.audience {
            return Err(Refusal::Page("unknown client_id"));
        }
        let redirect_uri = get("redirect_uri");
        if !self.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err(Refusal::Page(
                "redirect_uri is not registered for this client (e.g. this origin's /app/)",
            ));
        }
        // An overlong state is not sent back: it would make the redirect as long.
        let state = Some(get("state")).filter(|s| s.len() <= 512).unwrap_or("");
        let refuse = |error, description| Refusal::Redirect {
            redirect_uri: redirect_uri.to_string(),
            state: state.to_string(),
            error,
            description,
        };
        if get("response_type") != "code" {
            return Err(refuse(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        if get("code_challenge_method") != "S256" {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: code_challenge_method must be S256",
            ));
        }
        let challenge = get("code_challenge");
        if !base64url_of_len(challenge, 43..=43) {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier",
            ));
        }
        if get("state").len() > 512 {
            return Err(refuse("invalid_request", "state is at most 512 characters"));
        }
        let scope = get("scope");
        if scope.len() > 512 || !scope.split_whitespace().all(|s| KNOWN_SCOPES.contains(&s)) {
            return Err(refuse("invalid_scope", "a scope this client is not given"));
        }
        check_prompt(get("prompt")).map_err(|(error, why)| refuse(error, why))?;
        if !get("max_age").is_empty() && get("max_age").parse::<u64>().is_err() {
            return Err(refuse(
                "invalid_request",
                "max_age must be a number of seconds",
            ));
        }
        Ok(AuthRequest {
            client_id: get("client_id").to_string(),
            redirect_uri: redirect_uri.to_string(),
            scope: scope.to_string(),
            state: state.to_string(),
            challenge: challenge.to_string(),
        })
    }

    fn issue_code(&self, pending: PendingCode) -> String {
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        codes.retain(|_, c| c.expires > now);
        if codes.len() >= MAX_PENDING_CODES {
            // Every code lives CODE_TTL: the one expiring first is the oldest.
            let oldest = codes
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                codes.remove(&k);
            }
        }
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let code = B64URL.encode(bytes);
        codes.insert(code.clone(), pending);
        code
    }

    /// Takes the code out whatever happens next: a code is good for one attempt only.
    fn take_code(&self, code: &str) -> Option<PendingCode> {
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.remove(code).filter(|c| c.expires > Instant::now())
    }
}

/// `GET /oauth2/authorize?...`: the login page.
pub(super) async fn login_page(
    State(issuer): State<Arc<DevIssuer>>,
    RawQuery(q): RawQuery,
) -> Response {
    let params = form(q.unwrap_or_default().as_bytes());
    let req = match issuer.authorization(&params) {
        Ok(r) => r,
        Err(refusal) => return refused(refusal),
    };
    let hidden = [
        ("response_type", "code"),
        ("client_id", req.client_id.as_str()),
        ("redirect_uri", req.redirect_uri.as_str()),
        ("scope", req.scope.as_str()),
        ("state", req.state.as_str()),
        ("code_challenge", req.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect::<String>();
    let alexa = req
        .scope
        .split_whitespace()
        .any(|s| s == DEFAULT_DIRECTIVE_SCOPE);
    let what = if alexa {
        "to link your alarm panel with Alexa or Google"
    } else {
        "to manage your household's voice codes"
    };
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>Sign in: alarm-skill dev issuer</title><link rel=\"icon\" href=\"/app/icon.svg\" type=\"image/svg+xml\"><link rel=\"stylesheet\" href=\"/oauth2/login.css\"></head>\
<body><main><h1>Sign in</h1><p>Sign in {what}.</p>\
<p class=\"note\">Local development issuer: any account name signs in, no password.</p>\
<form method=\"post\" action=\"/oauth2/authorize\">{hidden}\
<label for=\"username\">Account</label>\
<input id=\"username\" name=\"username\" value=\"demo\" autocomplete=\"username\" required maxlength=\"128\">\
<div class=\"check\"><input type=\"checkbox\" id=\"admin\" name=\"admin\" value=\"yes\" checked>\
<label for=\"admin\">I am the household admin</label></div>\
<button type=\"submit\" id=\"login\">Sign in</button></form></main></body></html>"
        ),
    )
}

/// `POST /oauth2/authorize`: the login form; redirects back with a code.
pub(super) async fn login(State(issuer): State<Arc<DevIssuer>>, body: Bytes) -> Response {
    let params = form(&body);
    let req = match issuer.authorization(&params) {
        Ok(r) => r,
        Err(refusal) => return refused(refusal),
    };
    let sub = params.get("username").map(|s| s.trim()).unwrap_or("");
    if sub.is_empty() || sub.chars().count() > 128 || sub.chars().any(char::is_control) {
        return error_page("the account name must be 1-128 characters");
    }
    let purpose = if req
        .scope
        .split_whitespace()
        .any(|s| s == DEFAULT_DIRECTIVE_SCOPE)
    {
        TokenUse::Directives
    } else {
        TokenUse::Management
    };
    let code = issuer.issue_code(PendingCode {
        client_id: req.client_id,
        redirect_uri: req.redirect_uri.clone(),
        challenge: req.challenge,
        sub: sub.to_string(),
        admin: params.get("admin").is_some_and(|v| v == "yes"),
        purpose,
        auth_time: chrono::Utc::now().timestamp(),
        expires: Instant::now() + CODE_TTL,
    });
    redirect_back(&req.redirect_uri, &[("code", &code), ("state", &req.state)])
}

/// A refused authorization request: the issuer's own page, or an error redirect.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(why) => error_page(why),
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut pairs = vec![("error", error), ("error_description", description)];
            if !state.is_empty() {
                pairs.push(("state", state.as_str()));
            }
            redirect_back(&redirect_uri, &pairs)
        }
    }
}

/// 303 to a registered redirect URI with `pairs` added to its query.
fn redirect_back(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut back = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page("bad redirect_uri"),
    };
    back.query_pairs_mut().extend_pairs(pairs);
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = back.as_str().parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `POST /oauth2/token` (form-encoded): redeems a code with its PKCE verifier.
pub(super) async fn redeem(State(issuer): State<Arc<DevIssuer>>, body: Bytes) -> Response {
    let p = form(&body);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "authorization_code" {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }
    let Some(pending) = issuer.take_code(get("code")) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown, used or expired code",
        );
    };
    if get("client_id") != pending.client_id || get("redirect_uri") != pending.redirect_uri {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "client_id or redirect_uri differ from the authorization request",
        );
    }
    let verifier = get("code_verifier");
    let derived = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    let matches: bool = derived
        .as_bytes()
        .ct_eq(pending.challenge.as_bytes())
        .into();
    if !base64url_of_len(verifier, 43..=128) || !matches {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code_verifier does not match the code_challenge",
        );
    }
    match issuer.mint_signed_in(
        &pending.sub,
        pending.purpose,
        pending.admin,
        chrono::Duration::seconds(DEV_TOKEN_TTL_SECS),
        Some(pending.auth_time),
    ) {
        Ok(access_token) => {
            // RFC 6749 §5.1 wants `scope` when it differs from the request's; the granted
            // one, always, as Cognito answers.
            let mut resp = axum::Json(json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": DEV_TOKEN_TTL_SECS,
                "scope": granted_scope(pending.purpose),
            }))
            .into_response();
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "dev issuer could not mint a token");
            token_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "minting failed",
            )
        }
    }
}

/// The login page's stylesheet (the page's CSP allows no inline style).
pub(super) async fn login_css() -> Response {
    let mut resp = LOGIN_CSS.into_response();
    crate::edges::webapp::secure(&mut resp, "text/css; charset=utf-8", LOGIN_CSP);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A code issued `n` ms after the first: in the order issued, whatever the clock's grain.
    fn pending(n: u64) -> PendingCode {
        PendingCode {
            client_id: "client".into(),
            redirect_uri: "http://127.0.0.1:1/app/".into(),
            challenge: "x".repeat(43),
            sub: "demo".into(),
            admin: true,
            purpose: TokenUse::Management,
            auth_time: 1_700_000_000,
            expires: Instant::now() + CODE_TTL + std::time::Duration::from_millis(n),
        }
    }

    #[test]
    fn codes_are_single_use_and_a_flood_evicts_the_oldest() {
        let iss = DevIssuer::new("http://127.0.0.1:1", "client").unwrap();
        let code = iss.issue_code(pending(0));
        assert!(iss.take_code(&code).is_some());
        assert!(iss.take_code(&code).is_none(), "a code is good once");
        let first = iss.issue_code(pending(1));
        let second = iss.issue_code(pending(2));
        for n in 0..MAX_PENDING_CODES - 2 {
            iss.issue_code(pending(3 + n as u64));
        }
        assert_eq!(iss.codes.lock().unwrap().len(), MAX_PENDING_CODES);
        let last = iss.issue_code(pending(10_000));
        assert_eq!(
            iss.codes.lock().unwrap().len(),
            MAX_PENDING_CODES,
            "bounded"
        );
        assert!(iss.take_code(&first).is_none(), "the oldest gave way");
        assert!(iss.take_code(&second).is_some());
        assert!(
            iss.take_code(&last).is_some(),
            "the newest sign-in goes through"
        );
    }

    fn request() -> HashMap<String, String> {
        [
            ("client_id", "client"),
            ("redirect_uri", "http://127.0.0.1:1/app/"),
            ("response_type", "code"),
            ("code_challenge_method", "S256"),
            ("code_challenge", &"a".repeat(43)),
            ("state", "s"),
            ("scope", "openid"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(k: &str, v: &str) -> HashMap<String, String> {
        let mut p = request();
        p.insert(k.into(), v.into());
        p
    }

    #[test]
    fn a_wrong_client_or_redirect_uri_stays_on_the_issuers_page() {
        let iss = DevIssuer::new("http://127.0.0.1:1", "client").unwrap();
        assert!(iss.authorization(&request()).is_ok());
        for (k, bad) in [
            ("client_id", "other"),
            ("redirect_uri", "http://evil.example/app/"),
            ("redirect_uri", "http://127.0.0.1:2/app/"),
            // Same origin, not registered: matched exactly, not by origin.
            ("redirect_uri", "http://127.0.0.1:1/sim/panels"),
            ("redirect_uri", "http://127.0.0.1:1/app/?x=1"),
            ("redirect_uri", "http://127.0.0.1:1/app"),
            ("redirect_uri", "http://127.0.0.1:1/app/#frag"),
            ("redirect_uri", ""),
        ] {
            assert!(
                matches!(iss.authorization(&with(k, bad)), Err(Refusal::Page(_))),
                "{k}={bad}"
            );
        }
        let iss = iss.with_redirect_uri("https://app.example/callback");
        assert!(
            iss.authorization(&with("redirect_uri", "https://app.example/callback"))
                .is_ok(),
            "a registered one"
        );
        assert_eq!(escape("\"><script>"), "&quot;&gt;&lt;script&gt;");
    }

    #[test]
    fn other_errors_are_redirected_with_the_state() {
        let iss = DevIssuer::new("http://127.0.0.1:1", "client").unwrap();
        for (k, bad, want) in [
            ("response_type", "token", "unsupported_response_type"),
            ("code_challenge_method", "plain", "invalid_request"),
            ("code_challenge_method", "", "invalid_request"),
            ("code_challenge", "short", "invalid_request"),
            ("scope", "openid admin/everything", "invalid_scope"),
            ("prompt", "none", "login_required"),
            ("prompt", "none login", "invalid_request"),
            ("prompt", "later", "invalid_request"),
            ("max_age", "-1", "invalid_request"),
        ] {
            match iss.authorization(&with(k, bad)) {
                Err(Refusal::Redirect {
                    redirect_uri,
                    state,
                    error,
                    ..
                }) => {
                    assert_eq!(
                        (redirect_uri.as_str(), state.as_str(), error),
                        ("http://127.0.0.1:1/app/", "s", want),
                        "{k}={bad}"
                    );
                }
                _ => panic!("{k}={bad}: not an error redirect"),
            }
        }
        let long = "s".repeat(513);
        assert!(
            matches!(
                iss.authorization(&with("state", &long)),
                Err(Refusal::Redirect { state, error: "invalid_request", .. }) if state.is_empty()
            ),
            "an overlong state is refused, not sent back"
        );
        // A step-up's fresh sign-in: accepted, and the form is shown as always.
        let mut fresh = with("prompt", "login");
        fresh.insert("max_age".into(), "0".into());
        assert!(iss.authorization(&fresh).is_ok());
    }

    #[test]
    fn an_error_redirect_carries_error_description_and_state() {
        let resp = refused(Refusal::Redirect {
            redirect_uri: "http://127.0.0.1:1/app/".into(),
            state: "s&1".into(),
            error: "invalid_request",
            description: "PKCE is required",
        });
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let to = url::Url::parse(resp.headers()[header::LOCATION].to_str().unwrap()).unwrap();
        let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
        assert_eq!(q["error"], "invalid_request");
        assert_eq!(q["error_description"], "PKCE is required");
        assert_eq!(q["state"], "s&1");
        let page = refused(Refusal::Page("unknown client_id"));
        assert_eq!(page.status(), StatusCode::BAD_REQUEST);
        assert!(page.headers().get(header::LOCATION).is_none());
    }

    #[test]
    fn the_token_carries_the_sign_ins_time() {
        let iss = DevIssuer::new("http://127.0.0.1:1", "client").unwrap();
        let t = iss
            .mint_signed_in(
                "demo",
                TokenUse::Management,
                true,
                chrono::Duration::minutes(5),
                Some(1_700_000_000),
            )
            .unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["auth_time"], 1_700_000_000);
        assert_eq!(claims["scope"], granted_scope(TokenUse::Management));
    }
}
