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

use super::{CODE_TTL, DEV_TOKEN_TTL_SECS, DevIssuer, MAX_PENDING_CODES, PendingCode};
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

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

impl DevIssuer {
    /// Checks an authorization request. An error here is shown on the issuer's own page and
    /// never redirected: the redirect URI may be the very thing that is wrong.
    fn authorization(&self, p: &HashMap<String, String>) -> Result<AuthRequest, &'static str> {
        let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
        if get("client_id") != self.audience {
            return Err("unknown client_id");
        }
        let redirect = url::Url::parse(get("redirect_uri")).map_err(|_| "bad redirect_uri")?;
        let own = url::Url::parse(&self.issuer).map_err(|_| "bad issuer URL")?;
        if redirect.origin() != own.origin() || redirect.fragment().is_some() {
            return Err("redirect_uri must be on this issuer's origin (e.g. /app/)");
        }
        if get("response_type") != "code" {
            return Err("response_type must be code");
        }
        if get("code_challenge_method") != "S256" {
            return Err("PKCE is required: code_challenge_method must be S256");
        }
        let challenge = get("code_challenge");
        if !base64url_of_len(challenge, 43..=43) {
            return Err("code_challenge must be the base64url SHA-256 of the verifier");
        }
        let (state, scope) = (get("state"), get("scope"));
        if state.len() > 512 || scope.len() > 512 {
            return Err("state and scope are at most 512 characters");
        }
        Ok(AuthRequest {
            client_id: get("client_id").to_string(),
            redirect_uri: redirect.to_string(),
            scope: scope.to_string(),
            state: state.to_string(),
            challenge: challenge.to_string(),
        })
    }

    fn issue_code(&self, pending: PendingCode) -> Option<String> {
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        codes.retain(|_, c| c.expires > now);
        if codes.len() >= MAX_PENDING_CODES {
            return None;
        }
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let code = B64URL.encode(bytes);
        codes.insert(code.clone(), pending);
        Some(code)
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
        Err(why) => return error_page(why),
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
        Err(why) => return error_page(why),
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
    let Some(code) = issuer.issue_code(PendingCode {
        client_id: req.client_id,
        redirect_uri: req.redirect_uri.clone(),
        challenge: req.challenge,
        sub: sub.to_string(),
        admin: params.get("admin").is_some_and(|v| v == "yes"),
        purpose,
        expires: Instant::now() + CODE_TTL,
    }) else {
        return error_page("too many sign-ins in progress; try again in a few minutes");
    };
    let mut back = match url::Url::parse(&req.redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page("bad redirect_uri"),
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &req.state);
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
    match issuer.mint_for(
        &pending.sub,
        pending.purpose,
        pending.admin,
        chrono::Duration::seconds(DEV_TOKEN_TTL_SECS),
    ) {
        Ok(access_token) => {
            let mut resp = axum::Json(json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": DEV_TOKEN_TTL_SECS,
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

    #[test]
    fn codes_are_single_use_and_bounded() {
        let iss = DevIssuer::new("http://127.0.0.1:1", "client").unwrap();
        let pending = || PendingCode {
            client_id: "client".into(),
            redirect_uri: "http://127.0.0.1:1/app/".into(),
            challenge: "x".repeat(43),
            sub: "demo".into(),
            admin: true,
            purpose: TokenUse::Management,
            expires: Instant::now() + CODE_TTL,
        };
        let code = iss.issue_code(pending()).unwrap();
        assert!(iss.take_code(&code).is_some());
        assert!(iss.take_code(&code).is_none(), "a code is good once");
        for _ in 0..MAX_PENDING_CODES {
            assert!(iss.issue_code(pending()).is_some());
        }
        assert!(iss.issue_code(pending()).is_none(), "bounded");
    }

    #[test]
    fn authorization_requests_are_checked_before_any_redirect() {
        let iss = DevIssuer::new("http://127.0.0.1:1", "client").unwrap();
        let ok: HashMap<String, String> = [
            ("client_id", "client"),
            ("redirect_uri", "http://127.0.0.1:1/app/"),
            ("response_type", "code"),
            ("code_challenge_method", "S256"),
            ("code_challenge", &"a".repeat(43)),
            ("state", "s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(iss.authorization(&ok).is_ok());
        for (k, bad) in [
            ("client_id", "other"),
            ("redirect_uri", "http://evil.example/app/"),
            ("redirect_uri", "http://127.0.0.1:2/app/"),
            ("response_type", "token"),
            ("code_challenge_method", "plain"),
            ("code_challenge", "short"),
        ] {
            let mut p = ok.clone();
            p.insert(k.into(), bad.into());
            assert!(iss.authorization(&p).is_err(), "{k}={bad} accepted");
        }
        assert_eq!(escape("\"><script>"), "&quot;&gt;&lt;script&gt;");
    }
}
