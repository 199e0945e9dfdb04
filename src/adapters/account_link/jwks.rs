//! Verifies account-linking access tokens as JWTs signed by the configured OAuth/OIDC issuer,
//! with the issuer's public keys fetched from its JWKS and cached.
//!
//! Failure classes matter more than usual here: Alexa unlinks the user on a credential error
//! (see `TokenError`), so only a token that is certainly bad may be `Invalid`. Anything that
//! stops us from *knowing* (JWKS down, slow, garbled) is `Unavailable`.
//!
//! Key cache:
//! - Keys live in an `Arc<KeySet>` behind a `std::sync::RwLock`; the verify path only clones the
//!   `Arc`, so concurrent verifies never wait on each other or on a fetch.
//! - Fetches are serialised by one async mutex (no stampede on a cold or missed cache), and
//!   spaced at least `min_refetch` apart, so a flood of tokens with random `kid`s costs the
//!   issuer one request per interval.
//! - A set older than `max_age` is refreshed by whichever request first notices; the others keep
//!   using the old keys meanwhile, and if the refresh fails everybody keeps using them.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, MutexGuard};

use super::issuer::{IssuerKind, JWKS_MIN_REFETCH, OAuthConfig};
use crate::common::secret::BearerToken;
use crate::domain::ports::account_link::{Identity, TokenError, TokenUse, TokenVerifier};

/// Keys older than this are refetched on the next verify.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Allowed clock skew for `exp` and `nbf`.
pub const CLOCK_LEEWAY_SECS: u64 = 30;
/// Alexa waits 8 s for the whole directive; the JWKS fetch must leave room for the panel call.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed fetch, retry sooner than `min_refetch`: a cold start during a short blip
/// should not mean a minute of errors. Still spaced, so an outage is not hammered.
const FAILURE_RETRY: Duration = Duration::from_secs(5);
/// Real JWKS documents are a few KiB; the cap bounds memory if the URL serves something else.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Cognito access tokens are ~1 KiB; anything this large is not one of ours.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_KID_LEN: usize = 256;

/// Installs jsonwebtoken's aws-lc-rs crypto provider for the process.
///
/// jsonwebtoken 10+ panics on first use when it can't pick a provider from crate features (for
/// example when feature unification turns on both backends). Installing it explicitly removes
/// that failure mode, and stops compiling if the `aws_lc_rs` feature is ever dropped. Calling it
/// again is harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is all we need.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

/// Only asymmetric algorithms: with HS* the public key would become an HMAC secret.
fn accepted_alg(name: &str) -> Option<(Algorithm, KeyKind)> {
    Some(match name {
        "RS256" => (Algorithm::RS256, KeyKind::Rsa),
        "RS384" => (Algorithm::RS384, KeyKind::Rsa),
        "RS512" => (Algorithm::RS512, KeyKind::Rsa),
        "PS256" => (Algorithm::PS256, KeyKind::Rsa),
        "PS384" => (Algorithm::PS384, KeyKind::Rsa),
        "PS512" => (Algorithm::PS512, KeyKind::Rsa),
        "ES256" => (Algorithm::ES256, KeyKind::EcP256),
        "ES384" => (Algorithm::ES384, KeyKind::EcP384),
        _ => return None,
    })
}

struct VerifyKey {
    kind: KeyKind,
    /// The JWK's own `alg`, when it names one: the token must then use exactly that.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

struct KeySet {
    keys: HashMap<String, Arc<VerifyKey>>,
    fetched_at: Instant,
}

#[derive(Default)]
struct FetchState {
    next_allowed: Option<Instant>,
    /// Why the last fetch failed; `None` after a success.
    last_error: Option<String>,
}

enum Lookup {
    Fresh(Arc<VerifyKey>),
    Stale(Arc<VerifyKey>),
    Missing,
}

pub struct JwksVerifier {
    issuer: String,
    jwks_url: String,
    kind: IssuerKind,
    audiences: Vec<String>,
    management_audiences: Vec<String>,
    directive_scope: String,
    management_scope: Option<String>,
    token_use: Option<String>,
    account_claim: String,
    admin_claim: String,
    admin_group: String,
    http: reqwest::Client,
    min_refetch: Duration,
    max_age: Duration,
    fetch_timeout: Duration,
    keys: RwLock<Option<Arc<KeySet>>>,
    fetch: Mutex<FetchState>,
}

crate::common::secret::debug_without_secrets!(JwksVerifier {
    issuer,
    jwks_url,
    kind,
    audiences,
    management_audiences
});

impl JwksVerifier {
    pub fn new(cfg: &OAuthConfig, http: reqwest::Client) -> Self {
        // Verification must never hit jsonwebtoken's "no provider" panic, whoever built us.
        install_crypto_provider();
        JwksVerifier {
            issuer: cfg.issuer.clone(),
            jwks_url: cfg.jwks_url.clone(),
            kind: cfg.kind,
            audiences: cfg.audiences.clone(),
            management_audiences: cfg.management_audiences.clone(),
            directive_scope: cfg.directive_scope.clone(),
            management_scope: cfg.management_scope.clone(),
            token_use: cfg.token_use.clone(),
            account_claim: cfg.account_claim.clone(),
            admin_claim: cfg.admin_claim.clone(),
            admin_group: cfg.admin_group.clone(),
            http,
            min_refetch: JWKS_MIN_REFETCH,
            max_age: JWKS_MAX_AGE,
            fetch_timeout: JWKS_FETCH_TIMEOUT,
            keys: RwLock::new(None),
            fetch: Mutex::new(FetchState::default()),
        }
    }

    /// Minimum spacing of JWKS fetches (default [`JWKS_MIN_REFETCH`]).
    pub fn with_min_refetch(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// Age after which cached keys are refetched (default [`JWKS_MAX_AGE`]).
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Upper bound on one JWKS fetch, body included (default [`JWKS_FETCH_TIMEOUT`]). A shorter
    /// timeout on the `reqwest::Client` still applies.
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Fetches the JWKS now, e.g. during Lambda init, so the first directive doesn't pay for
    /// it. Returns the number of usable keys. Counts towards the refetch spacing.
    pub async fn warm_up(&self) -> Result<usize, TokenError> {
        let mut st = self.fetch.lock().await;
        if let Some(set) = self.snapshot()
            && set.fetched_at.elapsed() < self.max_age
        {
            return Ok(set.keys.len());
        }
        let set = self.fetch_locked(&mut st).await?;
        Ok(set.keys.len())
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        // A panic elsewhere while holding the lock leaves a valid Option<Arc<_>>; keep going.
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lookup(&self, kid: &str) -> Lookup {
        match self.snapshot() {
            Some(set) => match set.keys.get(kid) {
                Some(k) if set.fetched_at.elapsed() < self.max_age => Lookup::Fresh(k.clone()),
                Some(k) => Lookup::Stale(k.clone()),
                None => Lookup::Missing,
            },
            None => Lookup::Missing,
        }
    }

    async fn key_for(&self, kid: &str) -> Result<Arc<VerifyKey>, TokenError> {
        let guard = match self.lookup(kid) {
            Lookup::Fresh(k) => return Ok(k),
            // Someone is already refreshing: the old key is still the issuer's key.
            Lookup::Stale(k) => match self.fetch.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(k),
            },
            Lookup::Missing => self.fetch.lock().await,
        };
        self.key_for_locked(kid, guard).await
    }

    async fn key_for_locked(
        &self,
        kid: &str,
        mut st: MutexGuard<'_, FetchState>,
    ) -> Result<Arc<VerifyKey>, TokenError> {
        // Whoever held the lock before us may have fetched exactly what we need.
        let stale = match self.lookup(kid) {
            Lookup::Fresh(k) => return Ok(k),
            Lookup::Stale(k) => Some(k),
            Lookup::Missing => None,
        };
        if st.next_allowed.is_some_and(|t| Instant::now() < t) {
            if let Some(k) = stale {
                return Ok(k);
            }
            return Err(match &st.last_error {
                // We could not check the issuer's current keys: not the user's fault.
                Some(e) => TokenError::Unavailable(e.clone()),
                // The key set is at most `min_refetch` old, and issuers (Cognito, Auth0,
                // Keycloak) publish a key well before signing with it: a kid missing from it
                // is not the issuer's.
                None => TokenError::Invalid("no issuer key has the token's kid".into()),
            });
        }
        match self.fetch_locked(&mut st).await {
            Ok(set) => set
                .keys
                .get(kid)
                .cloned()
                .ok_or_else(|| TokenError::Invalid("no issuer key has the token's kid".into())),
            // Keep verifying with keys we already trust rather than failing every directive.
            Err(e) => stale.ok_or(e),
        }
    }

    /// Fetches and installs a new key set. The caller holds the fetch lock.
    async fn fetch_locked(&self, st: &mut FetchState) -> Result<Arc<KeySet>, TokenError> {
        let started = Instant::now();
        match self.fetch_jwks().await {
            Ok(set) => {
                let set = Arc::new(set);
                st.next_allowed = Some(started + self.min_refetch);
                st.last_error = None;
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(set.clone());
                tracing::info!(
                    keys = set.keys.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "account-linking JWKS refreshed"
                );
                Ok(set)
            }
            Err(reason) => {
                st.next_allowed = Some(started + self.min_refetch.min(FAILURE_RETRY));
                st.last_error = Some(reason.clone());
                tracing::warn!(url = %self.jwks_url, %reason, "account-linking JWKS fetch failed");
                Err(TokenError::Unavailable(reason))
            }
        }
    }

    async fn fetch_jwks(&self) -> Result<KeySet, String> {
        // An outer deadline rather than `RequestBuilder::timeout`, which would override a
        // shorter client-wide timeout; it also covers reading the body.
        tokio::time::timeout(self.fetch_timeout, self.fetch_jwks_inner())
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "JWKS request timed out after {} ms",
                    self.fetch_timeout.as_millis()
                ))
            })
    }

    async fn fetch_jwks_inner(&self) -> Result<KeySet, String> {
        let mut resp = self
            .http
            .get(&self.jwks_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| describe_http_error("JWKS request failed", &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("JWKS endpoint answered HTTP {}", status.as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("JWKS document is too large".into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| describe_http_error("reading the JWKS failed", &e))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("JWKS document is too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }

    /// The token's audiences by this issuer's rule: Cognito access tokens name their app client
    /// in `client_id` and carry no `aud`; OIDC providers use `aud`. The other claim is ignored,
    /// so a token can't pick the rule that suits it.
    fn token_audiences<'a>(&self, claims: &'a Map<String, Value>) -> Vec<&'a str> {
        match self.kind {
            IssuerKind::Cognito => claims
                .get("client_id")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
            IssuerKind::Oidc => match claims.get("aud") {
                Some(Value::String(a)) => vec![a.as_str()],
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            },
        }
    }

    /// Whether the configured admin claim holds the admin value.
    fn is_admin(&self, claims: &Map<String, Value>) -> bool {
        match claim(claims, &self.admin_claim) {
            Some(Value::Array(values)) => values
                .iter()
                .any(|v| v.as_str() == Some(self.admin_group.as_str())),
            Some(Value::String(v)) => *v == self.admin_group,
            Some(Value::Bool(true)) => self.admin_group == "true",
            _ => false,
        }
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        purpose: TokenUse,
    ) -> Result<Identity, TokenError> {
        let invalid = |m: &str| TokenError::Invalid(m.to_string());
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(invalid("issuer is not the configured issuer"));
        }
        let audiences = self.token_audiences(claims);
        let among = |accepted: &[String]| audiences.iter().any(|a| accepted.iter().any(|x| x == a));
        let (for_directives, for_management) =
            (among(&self.audiences), among(&self.management_audiences));
        if !for_directives && !for_management {
            return Err(invalid(match self.kind {
                IssuerKind::Cognito => "audience (client_id) is not accepted",
                IssuerKind::Oidc => "audience (aud) is not accepted",
            }));
        }
        if let Some(want) = &self.token_use
            && claims.get("token_use").and_then(Value::as_str) != Some(want.as_str())
        {
            return Err(invalid("token_use is not the required one"));
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("sub claim missing"))?;
        let account = claims
            .get(&self.account_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("account claim missing or not a string"))?;
        let scopes = scopes(claims);
        let has = |scope: &str| scopes.contains(&scope);
        let wrong = |m: &str| Err(TokenError::WrongUse(m.to_string()));
        match purpose {
            TokenUse::Directives if !for_directives => {
                return wrong("its audience is not the account-linking client");
            }
            TokenUse::Directives if !has(&self.directive_scope) => {
                return wrong("it lacks the directive scope");
            }
            TokenUse::Management if !for_management => {
                return wrong("its audience is not a management client");
            }
            // Alexa's tokens carry the directive scope; they never manage the household.
            TokenUse::Management if has(&self.directive_scope) => {
                return wrong("it carries the directive scope of an account-linking token");
            }
            TokenUse::Management if self.management_scope.as_deref().is_some_and(|s| !has(s)) => {
                return wrong("it lacks the management scope");
            }
            _ => {}
        }
        Ok(Identity {
            account: account.to_string(),
            subject: subject.to_string(),
            admin: self.is_admin(claims),
            // Cognito's and OIDC's `auth_time` is a number; some issuers send it as a string.
            auth_time: match claims.get("auth_time") {
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            },
        })
    }

    async fn verify_token(&self, token: &str, purpose: TokenUse) -> Result<Identity, TokenError> {
        let (alg, kind, kid) = parse_header(token)?;
        let key = self.key_for(&kid).await?;
        if key.kind != kind || key.alg.is_some_and(|a| a != alg) {
            return Err(TokenError::Invalid(
                "token algorithm does not match the issuer key".into(),
            ));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = CLOCK_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Audience is checked below, by the issuer kind's rule (Cognito: `client_id`).
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        self.check_claims(&data.claims, purpose)
    }
}

#[async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify(&self, token: &BearerToken, purpose: TokenUse) -> Result<Identity, TokenError> {
        let result = self.verify_token(token.expose(), purpose).await;
        match &result {
            Ok(id) => {
                tracing::debug!(account = %id.account, admin = id.admin, ?purpose, "token verified")
            }
            Err(e) => tracing::debug!(error = %e, ?purpose, "token rejected"),
        }
        result
    }
}

/// A claim by name, or by JSON pointer (RFC 6901) when the name starts with `/`, for nested
/// claims such as Keycloak's `/realm_access/roles`. Auth0's namespaced claims are URLs, so a
/// name without the leading slash is always taken literally.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let Some(pointer) = name.strip_prefix('/') else {
        return claims.get(name);
    };
    let mut steps = pointer
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"));
    let mut at = claims.get(&steps.next()?)?;
    for step in steps {
        at = match at {
            Value::Object(m) => m.get(&step)?,
            Value::Array(a) => a.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// The token's scopes: `scope` (space-separated, as RFC 8693 and Cognito, Auth0 and Keycloak
/// write it, or an array) or `scp` (Okta, Azure).
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = vec![];
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// Reads the header ourselves, so the algorithm allow-list and the `kid` requirement apply
/// before any key is looked at or fetched.
fn parse_header(token: &str) -> Result<(Algorithm, KeyKind, String), TokenError> {
    let invalid = |m: &str| TokenError::Invalid(m.to_string());
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid("token is too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a compact JWS (three dot-separated parts)"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| invalid("header is not base64url"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| invalid("header is not a JSON object"))?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("header has no alg"))?;
    let (alg, kind) = accepted_alg(alg_name).ok_or_else(|| {
        TokenError::Invalid(format!("algorithm {} is not accepted", printable(alg_name)))
    })?;
    // RFC 7515 §4.1.11: unknown critical extensions must be rejected, and we know none.
    if header.contains_key("crit") {
        return Err(invalid("critical header extensions are not supported"));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KID_LEN)
        .ok_or_else(|| invalid("header has no usable kid"))?;
    Ok((alg, kind, kid.to_string()))
}

/// Attacker-chosen header text in an error message: short and plain, or not at all.
fn printable(s: &str) -> String {
    if s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        format!("{s:?}")
    } else {
        "(unprintable)".into()
    }
}

fn map_jwt_error(kind: &ErrorKind) -> TokenError {
    // Fixed texts only: serde messages could quote claim values.
    let reason = match kind {
        ErrorKind::ExpiredSignature => return TokenError::Expired,
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "signature does not verify",
        ErrorKind::MissingRequiredClaim(_) => "exp claim missing",
        ErrorKind::InvalidClaimFormat(_) => "exp or nbf is not a number",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm mismatch",
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEddsaKey => "issuer key cannot verify this token",
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "malformed token",
        _ => "token rejected",
    };
    TokenError::Invalid(reason.into())
}

fn describe_http_error(what: &str, e: &reqwest::Error) -> String {
    let class = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    // reqwest's Display names the URL, which is configuration, never a token.
    format!("{what}: {class}: {e}")
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

#[derive(serde::Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// A document that isn't a JWKS is an issuer-side problem (`Unavailable`). Individual keys we
/// can't use (symmetric, encryption, other curves, garbled) are skipped: tokens naming them
/// fail as unknown kids.
fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    let raw: RawSet =
        serde_json::from_slice(body).map_err(|_| "JWKS is not a JSON {\"keys\":[...]} document")?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
            continue;
        };
        match usable_key(&jwk) {
            Some((kid, key)) => {
                keys.insert(kid, Arc::new(key));
            }
            None => tracing::debug!(kid = ?jwk.kid, kty = %jwk.kty, "skipping unusable JWK"),
        }
    }
    if keys.is_empty() {
        return Err("JWKS has no usable signing keys".into());
    }
    Ok(KeySet {
        keys,
        fetched_at: Instant::now(),
    })
}

fn usable_key(jwk: &RawJwk) -> Option<(String, VerifyKey)> {
    let kid = jwk.kid.as_ref().filter(|k| !k.is_empty())?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(accepted_alg(name)?),
    };
    let b64 = |s: &Option<String>| URL_SAFE_NO_PAD.decode(s.as_deref()?).ok();
    let (kind, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let (n, e) = (b64(&jwk.n)?, b64(&jwk.e)?);
            // aws-lc verifies RSA from 2048 bits up; smaller keys could never verify anyway.
            if n.len() < 256 || e.is_empty() {
                return None;
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (kind, len) = if crv == "P-256" {
                (KeyKind::EcP256, 32)
            } else {
                (KeyKind::EcP384, 48)
            };
            let (x, y) = (b64(&jwk.x)?, b64(&jwk.y)?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let key = DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok()?;
            (kind, key)
        }
        _ => return None,
    };
    if alg.is_some_and(|(_, k)| k != kind) {
        return None;
    }
    Some((
        kid.clone(),
        VerifyKey {
            kind,
            alg: alg.map(|(a, _)| a),
            key,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn header_gate_rejects_symmetric_none_and_missing_kid() {
        for alg in ["none", "HS256", "HS384", "HS512", "EdDSA", "None", "rs256"] {
            let t = format!("{}.e30.", b64(&serde_json::json!({"alg": alg, "kid": "k"})));
            assert!(
                matches!(parse_header(&t), Err(TokenError::Invalid(_))),
                "{alg} accepted"
            );
        }
        let t = format!("{}.e30.sig", b64(&serde_json::json!({"alg": "RS256"})));
        assert!(matches!(parse_header(&t), Err(TokenError::Invalid(m)) if m.contains("kid")));
        let t = format!(
            "{}.e30.sig",
            b64(&serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}))
        );
        let (alg, kind, kid) = parse_header(&t).unwrap();
        assert_eq!(
            (alg, kind, kid.as_str()),
            (Algorithm::ES256, KeyKind::EcP256, "k1")
        );
        let t = format!(
            "{}.e30.sig",
            b64(&serde_json::json!({"alg": "RS256", "kid": "k", "crit": ["b64"]}))
        );
        assert!(parse_header(&t).is_err());
    }

    #[test]
    fn attacker_text_is_not_echoed() {
        let long = "A".repeat(100);
        let t = format!(
            "{}.e30.",
            b64(&serde_json::json!({"alg": long, "kid": "k"}))
        );
        let Err(TokenError::Invalid(m)) = parse_header(&t) else {
            panic!("accepted")
        };
        assert!(!m.contains(&long[..20]), "{m}");
    }

    #[test]
    fn jwks_parsing_skips_keys_that_cannot_sign_for_us() {
        let n = URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "liar", "alg": "ES256", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "good", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            "not an object",
        ]});
        let set = parse_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(set.keys.keys().collect::<Vec<_>>(), vec!["good"]);
        assert!(parse_jwks(b"{\"keys\":[]}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }
}
