//! Account-linking token verification against a real JWKS server on a local port, with RSA and
//! EC keys generated at test time and tokens signed by jsonwebtoken.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alarm_skill::adapters::account_link::{JwksVerifier, install_crypto_provider};
use alarm_skill::common::secret::BearerToken;
use alarm_skill::domain::ports::account_link::{Identity, TokenError, TokenUse, TokenVerifier};
use alarm_skill::edges::config::{IssuerKind, OAuthConfig};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Test";
const AUDIENCE: &str = "alexa-skill-client";
/// The template's second Cognito app client, for the household management API.
const MANAGEMENT_CLIENT: &str = "household-management-client";

// ---------------------------------------------------------------------------------------------
// Keys

/// Extracts the PKCS#1 `RSAPrivateKey` from aws-lc-rs's PKCS#8 output: jsonwebtoken's
/// `EncodingKey::from_rsa_der` wants PKCS#1.
fn pkcs8_to_pkcs1(der: &[u8]) -> Vec<u8> {
    fn tlv(d: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = d[0];
        let (len, hdr) = if d[1] < 0x80 {
            (d[1] as usize, 2)
        } else {
            let n = (d[1] & 0x7f) as usize;
            let len = d[2..2 + n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | *b as usize);
            (len, 2 + n)
        };
        (tag, &d[hdr..hdr + len], &d[hdr + len..])
    }
    let (tag, seq, _) = tlv(der);
    assert_eq!(tag, 0x30);
    let (tag, _version, rest) = tlv(seq);
    assert_eq!(tag, 0x02);
    let (tag, _alg_id, rest) = tlv(rest);
    assert_eq!(tag, 0x30);
    let (tag, pkcs1, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    pkcs1.to_vec()
}

struct RsaKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    /// RFC 8017 `RSAPublicKey` DER and X.509 SPKI DER: what an HS256 attacker would use.
    public_pkcs1: Vec<u8>,
    public_spki: Vec<u8>,
    n: Vec<u8>,
}

fn rsa_key(kid: &str) -> RsaKey {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
    let public = PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
    RsaKey {
        kid: kid.to_string(),
        encoding: EncodingKey::from_rsa_der(&pkcs8_to_pkcs1(pkcs8.as_ref())),
        jwk: json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": B64URL.encode(&public.n), "e": B64URL.encode(&public.e),
        }),
        public_pkcs1: kp.public_key().as_ref().to_vec(),
        public_spki: AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(kp.public_key())
            .unwrap()
            .as_ref()
            .to_vec(),
        n: public.n,
    }
}

struct EcKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pkcs8 = kp.to_pkcs8v1().unwrap();
    let point = kp.public_key().as_ref();
    assert_eq!(point.len(), 65);
    EcKey {
        kid: kid.to_string(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        // No "alg" here: Cognito and many issuers omit it, so kty/crv must carry the check.
        jwk: json!({
            "kty": "EC", "kid": kid, "use": "sig", "crv": "P-256",
            "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..65]),
        }),
    }
}

fn jwks(keys: &[&Value]) -> Value {
    json!({ "keys": keys })
}

// ---------------------------------------------------------------------------------------------
// Tokens

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Cognito access-token claims for user `demo`, from the account-linking client.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "demo-user",
        "client_id": AUDIENCE,
        "token_use": "access",
        "scope": "alarm/control",
        "iat": now(),
        "exp": now() + 600,
    })
}

fn with(mut base: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    install_crypto_provider();
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(key: &RsaKey, claims: &Value) -> String {
    sign(Algorithm::RS256, &key.kid, &key.encoding, claims)
}

fn es256(key: &EcKey, claims: &Value) -> String {
    sign(Algorithm::ES256, &key.kid, &key.encoding, claims)
}

fn b64json(v: &Value) -> String {
    B64URL.encode(serde_json::to_vec(v).unwrap())
}

// ---------------------------------------------------------------------------------------------
// The JWKS server

#[derive(Clone)]
struct Served {
    state: Arc<Mutex<(StatusCode, String)>>,
    hits: Arc<AtomicUsize>,
    delay: Duration,
}

async fn serve_jwks(State(s): State<Served>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let (status, body) = s.state.lock().unwrap().clone();
    (status, [("content-type", "application/json")], body).into_response()
}

struct JwksServer {
    url: String,
    served: Served,
}

impl JwksServer {
    async fn start(set: &Value) -> Self {
        Self::start_with_delay(set, Duration::ZERO).await
    }

    async fn start_with_delay(set: &Value, delay: Duration) -> Self {
        let served = Served {
            state: Arc::new(Mutex::new((StatusCode::OK, set.to_string()))),
            hits: Arc::new(AtomicUsize::new(0)),
            delay,
        };
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(served.clone());
        let addr = serve(app).await;
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            served,
        }
    }

    fn set(&self, set: &Value) {
        *self.served.state.lock().unwrap() = (StatusCode::OK, set.to_string());
    }

    fn fail_with(&self, status: StatusCode, body: &str) {
        *self.served.state.lock().unwrap() = (status, body.to_string());
    }

    fn hits(&self) -> usize {
        self.served.hits.load(Ordering::SeqCst)
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The template's Cognito set-up: the account-linking client for directives, the management
/// client for the management API.
fn config(jwks_url: &str) -> OAuthConfig {
    OAuthConfig {
        issuer: ISSUER.to_string(),
        jwks_url: jwks_url.to_string(),
        kind: IssuerKind::Cognito,
        audiences: vec!["other-client".to_string(), AUDIENCE.to_string()],
        management_audiences: vec![MANAGEMENT_CLIENT.to_string()],
        directive_scope: "alarm/control".to_string(),
        management_scope: None,
        token_use: Some("access".to_string()),
        account_claim: "sub".to_string(),
        admin_claim: "cognito:groups".to_string(),
        admin_group: "household-admin".to_string(),
    }
}

fn verifier(cfg: &OAuthConfig) -> Arc<JwksVerifier> {
    Arc::new(
        JwksVerifier::new(cfg, reqwest::Client::new()).with_min_refetch(Duration::from_millis(300)),
    )
}

/// Runs the verifies concurrently, as Lambda does with many in-flight directives.
async fn verify_all(
    v: &Arc<JwksVerifier>,
    tokens: Vec<String>,
) -> Vec<Result<Identity, TokenError>> {
    let mut set = tokio::task::JoinSet::new();
    for t in tokens {
        let v = v.clone();
        set.spawn(async move { v.verify(&BearerToken::new(t), TokenUse::Directives).await });
    }
    set.join_all().await
}

/// Verifies for directives, what most tests here are about.
async fn verify(v: &JwksVerifier, token: &str) -> Result<Identity, TokenError> {
    verify_for(v, token, TokenUse::Directives).await
}

async fn verify_for(
    v: &JwksVerifier,
    token: &str,
    purpose: TokenUse,
) -> Result<Identity, TokenError> {
    v.verify(&BearerToken::new(token), purpose).await
}

/// Asserts `WrongUse` for `purpose`, with a reason that says `text` (and quotes no part of the
/// token).
async fn assert_wrong_use_says(v: &JwksVerifier, token: &str, purpose: TokenUse, text: &str) {
    let reason = assert_wrong_use(v, token, purpose).await;
    assert!(reason.contains(text), "{reason}");
}

/// `token` serves a household admin for management, and is no directive token.
async fn assert_an_admins_management_token(v: &JwksVerifier, token: &str) {
    assert!(
        verify_for(v, token, TokenUse::Management)
            .await
            .unwrap()
            .admin
    );
    assert_wrong_use(v, token, TokenUse::Directives).await;
}

/// Asserts `WrongUse` with a reason that quotes no part of the token.
async fn assert_wrong_use(v: &JwksVerifier, token: &str, purpose: TokenUse) -> String {
    match verify_for(v, token, purpose).await {
        Err(TokenError::WrongUse(reason)) => {
            for part in token.split('.').filter(|p| p.len() >= 8) {
                assert!(!reason.contains(part), "reason {reason:?} quotes the token");
            }
            reason
        }
        other => panic!("expected WrongUse for {purpose:?}, got {other:?}"),
    }
}

/// Asserts `Invalid` and that the reason quotes no part of the token.
async fn assert_invalid(v: &JwksVerifier, token: &str) -> String {
    match verify(v, token).await {
        Err(TokenError::Invalid(reason)) => {
            for part in token.split('.').filter(|p| p.len() >= 8) {
                assert!(!reason.contains(part), "reason {reason:?} quotes the token");
            }
            reason
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

struct Fixture {
    rsa: RsaKey,
    ec: EcKey,
    server: JwksServer,
    v: Arc<JwksVerifier>,
}

async fn fixture() -> Fixture {
    let rsa = rsa_key("rsa-1");
    let ec = ec_key("ec-1");
    let server = JwksServer::start(&jwks(&[&rsa.jwk, &ec.jwk])).await;
    let v = verifier(&config(&server.url));
    Fixture { rsa, ec, server, v }
}

// ---------------------------------------------------------------------------------------------
// Valid tokens

#[tokio::test]
async fn valid_rs256_and_es256_tokens_verify() {
    let f = fixture().await;
    let id = verify(&f.v, &rs256(&f.rsa, &claims())).await.unwrap();
    assert_eq!(
        id,
        Identity {
            account: "demo-user".into(),
            subject: "demo-user".into(),
            admin: false,
            auth_time: None,
        }
    );
    let id = verify(
        &f.v,
        &es256(&f.ec, &with(claims(), json!({"sub": "ec-user"}))),
    )
    .await
    .unwrap();
    assert_eq!(id.subject, "ec-user");
    // The sign-in time, for the management API's step-up: a number, or a numeric string.
    for (claim, want) in [
        (json!(now() - 30), Some(now() - 30)),
        (json!((now() - 40).to_string()), Some(now() - 40)),
        (json!("yesterday"), None),
    ] {
        let id = verify(
            &f.v,
            &rs256(&f.rsa, &with(claims(), json!({"auth_time": claim}))),
        )
        .await
        .unwrap();
        assert_eq!(id.auth_time, want);
    }
    // Both keys came from one fetch, and cached keys need no further ones.
    for _ in 0..5 {
        verify(&f.v, &rs256(&f.rsa, &claims())).await.unwrap();
    }
    assert_eq!(f.server.hits(), 1);
}

#[tokio::test]
async fn tampered_signature_or_payload_is_invalid() {
    let f = fixture().await;
    let good = rs256(&f.rsa, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let evil_claims = b64json(&with(
        claims(),
        json!({"sub": "someone-else", "admin": true}),
    ));
    assert_invalid(&f.v, &format!("{}.{}.{}", parts[0], evil_claims, parts[2])).await;
    let mut sig = B64URL.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let reason = assert_invalid(
        &f.v,
        &format!("{}.{}.{}", parts[0], parts[1], B64URL.encode(sig)),
    )
    .await;
    assert!(reason.contains("signature"), "{reason}");
    // A valid signature by a key the issuer never published.
    let stranger = rsa_key("rsa-1");
    assert_invalid(&f.v, &rs256(&stranger, &claims())).await;
}

// ---------------------------------------------------------------------------------------------
// Key rotation and refetch limits

#[tokio::test]
async fn key_rotation_new_kid_verifies_after_refetch_and_removed_kid_stops() {
    let f = fixture().await;
    let old_token = rs256(&f.rsa, &claims());
    verify(&f.v, &old_token).await.unwrap();
    assert_eq!(f.server.hits(), 1);

    let next = rsa_key("rsa-2");
    f.server.set(&jwks(&[&next.jwk]));
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Cached old key still works without a fetch.
    verify(&f.v, &old_token).await.unwrap();
    assert_eq!(f.server.hits(), 1);
    // The new kid is unknown: one refetch, which brings it in.
    verify(&f.v, &rs256(&next, &claims())).await.unwrap();
    assert_eq!(f.server.hits(), 2);
    // That refetch replaced the set; the removed key is gone.
    assert!(assert_invalid(&f.v, &old_token).await.contains("kid"));
    assert_eq!(f.server.hits(), 2, "rate limit: no fetch right after one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_refetch_once_per_interval() {
    let rsa = rsa_key("rsa-1");
    let server = JwksServer::start(&jwks(&[&rsa.jwk])).await;
    let v = Arc::new(
        JwksVerifier::new(&config(&server.url), reqwest::Client::new())
            .with_min_refetch(Duration::from_millis(800)),
    );
    verify(&v, &rs256(&rsa, &claims())).await.unwrap();
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_millis(850)).await;

    let unknown = |i: usize| {
        sign(
            Algorithm::RS256,
            &format!("random-{i}"),
            &rsa.encoding,
            &claims(),
        )
    };
    // Signed up front: on a loaded machine signing 49 tokens can outlast the interval, and the
    // burst must arrive within it.
    let burst: Vec<_> = (1..50).map(unknown).collect();
    assert!(assert_invalid(&v, &unknown(0)).await.contains("kid"));
    assert_eq!(
        server.hits(),
        2,
        "an unknown kid triggers exactly one refetch"
    );
    let results = verify_all(&v, burst).await;
    assert_eq!(results.len(), 49);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(TokenError::Invalid(_))))
    );
    assert_eq!(
        server.hits(),
        2,
        "a burst of unknown kids must not reach the issuer"
    );
    // Known keys keep working during the burst window.
    verify(&v, &rs256(&rsa, &claims())).await.unwrap();

    tokio::time::sleep(Duration::from_millis(850)).await;
    assert_invalid(&v, &unknown(99)).await;
    assert_eq!(server.hits(), 3, "the next interval allows one more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_misses_share_one_fetch() {
    let rsa = rsa_key("rsa-1");
    // A slow issuer, so all verifies arrive while the first fetch is in flight.
    let server = JwksServer::start_with_delay(&jwks(&[&rsa.jwk]), Duration::from_millis(200)).await;
    let v = verifier(&config(&server.url));
    let tokens = (0..20)
        .map(|i| rs256(&rsa, &with(claims(), json!({"sub": format!("user-{i}")}))))
        .collect();
    let results = verify_all(&v, tokens).await;
    assert_eq!(results.len(), 20);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn stale_keys_are_refreshed_lazily_and_survive_a_failed_refresh() {
    let rsa = rsa_key("rsa-1");
    let server = JwksServer::start(&jwks(&[&rsa.jwk])).await;
    let v = JwksVerifier::new(&config(&server.url), reqwest::Client::new())
        .with_min_refetch(Duration::from_millis(50))
        .with_max_age(Duration::from_millis(200));
    let token = rs256(&rsa, &claims());
    verify(&v, &token).await.unwrap();
    assert_eq!(server.hits(), 1);

    // Issuer outage while the cache is stale: keep verifying with the keys we have.
    server.fail_with(StatusCode::SERVICE_UNAVAILABLE, "down");
    tokio::time::sleep(Duration::from_millis(250)).await;
    verify(&v, &token).await.unwrap();
    assert_eq!(server.hits(), 2, "a stale cache triggers a refresh");

    // Back up, key removed: the next lazy refresh drops it. Failure retry is ≥ 50 ms here.
    let other = rsa_key("rsa-2");
    server.set(&jwks(&[&other.jwk]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_invalid(&v, &token).await;
    assert_eq!(server.hits(), 3);
    verify(&v, &rs256(&other, &claims())).await.unwrap();
    assert_eq!(server.hits(), 3);
}

// ---------------------------------------------------------------------------------------------
// Algorithm attacks

#[tokio::test]
async fn alg_none_is_rejected_before_any_key_lookup() {
    let f = fixture().await;
    for alg in ["none", "None", "NONE"] {
        let header = b64json(&json!({"alg": alg, "typ": "JWT", "kid": f.rsa.kid}));
        let token = format!("{header}.{}.", b64json(&claims()));
        let reason = assert_invalid(&f.v, &token).await;
        assert!(reason.contains("algorithm"), "{reason}");
    }
    assert_eq!(
        f.server.hits(),
        0,
        "no JWKS fetch for a token that can't be valid"
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let f = fixture().await;
    // Prime the cache, so a rejection can't be blamed on a missing key.
    verify(&f.v, &rs256(&f.rsa, &claims())).await.unwrap();
    let jwks_text = f.server.served.state.lock().unwrap().1.clone();
    let secrets: [&[u8]; 4] = [
        &f.rsa.public_pkcs1,
        &f.rsa.public_spki,
        &f.rsa.n,
        jwks_text.as_bytes(),
    ];
    for secret in secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(
                alg,
                &f.rsa.kid,
                &EncodingKey::from_secret(secret),
                &claims(),
            );
            let reason = assert_invalid(&f.v, &token).await;
            assert!(reason.contains("algorithm"), "{reason}");
        }
    }
    assert_eq!(f.server.hits(), 1);
}

#[tokio::test]
async fn key_type_must_match_the_header_algorithm() {
    let f = fixture().await;
    // ES256 header naming the RSA key, and RS256 naming the EC key: signed with the real key
    // of the claimed algorithm, so only the key-type check can reject them.
    let other_ec = ec_key("x");
    let t = sign(Algorithm::ES256, &f.rsa.kid, &other_ec.encoding, &claims());
    assert!(assert_invalid(&f.v, &t).await.contains("algorithm"));
    let t = sign(Algorithm::RS256, &f.ec.kid, &f.rsa.encoding, &claims());
    assert!(assert_invalid(&f.v, &t).await.contains("algorithm"));
    // The RSA JWK says alg RS256; a PS256 token with that kid is refused even though the key
    // could verify it.
    let t = sign(Algorithm::PS256, &f.rsa.kid, &f.rsa.encoding, &claims());
    assert!(assert_invalid(&f.v, &t).await.contains("algorithm"));
}

#[tokio::test]
async fn a_kid_is_required() {
    let f = fixture().await;
    install_crypto_provider();
    let t =
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &f.rsa.encoding).unwrap();
    assert!(assert_invalid(&f.v, &t).await.contains("kid"));
}

// ---------------------------------------------------------------------------------------------
// Claims

#[tokio::test]
async fn cognito_audience_is_the_client_id_only() {
    let f = fixture().await;
    verify(&f.v, &rs256(&f.rsa, &claims())).await.unwrap();
    // An `aud` naming our client doesn't stand in for `client_id` at a Cognito issuer.
    let base = with(claims(), json!({"client_id": null}));
    for bad in [
        json!({"aud": AUDIENCE}),
        json!({"aud": [AUDIENCE]}),
        json!({"client_id": "someone-else"}),
        json!({"client_id": [AUDIENCE]}),
        json!({"client_id": 42}),
        json!({}),
    ] {
        let reason = assert_invalid(&f.v, &rs256(&f.rsa, &with(base.clone(), bad))).await;
        assert!(reason.contains("audience"), "{reason}");
    }
}

/// An Auth0 or Keycloak issuer: `aud` names the API, and household admins are a named claim.
fn oidc_config(jwks_url: &str) -> OAuthConfig {
    OAuthConfig {
        kind: IssuerKind::Oidc,
        audiences: vec!["https://api.alarm.example.com".into()],
        management_audiences: vec!["https://api.alarm.example.com".into()],
        directive_scope: "alarm:control".into(),
        management_scope: Some("alarm:manage".into()),
        token_use: None,
        admin_claim: "https://alarm.example.com/roles".into(),
        ..config(jwks_url)
    }
}

/// Auth0 access-token claims for a directive (Alexa's client asked for `alarm:control`).
fn auth0_claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "auth0|demo",
        "aud": ["https://api.alarm.example.com", "https://tenant.eu.auth0.com/userinfo"],
        "azp": "alexa-client-id",
        "scope": "openid alarm:control",
        "iat": now(),
        "exp": now() + 600,
    })
}

#[tokio::test]
async fn oidc_audience_is_aud_only() {
    let f = fixture().await;
    let v = verifier(&oidc_config(&f.server.url));
    verify(&v, &rs256(&f.rsa, &auth0_claims())).await.unwrap();
    let single = with(
        auth0_claims(),
        json!({"aud": "https://api.alarm.example.com"}),
    );
    verify(&v, &rs256(&f.rsa, &single)).await.unwrap();
    // `client_id` is Cognito's rule: it doesn't stand in for `aud` here.
    let base = with(auth0_claims(), json!({"aud": null}));
    for bad in [
        json!({"client_id": "https://api.alarm.example.com"}),
        json!({"azp": "https://api.alarm.example.com"}),
        json!({"aud": "someone-else"}),
        json!({"aud": ["a", "b"]}),
        json!({"aud": []}),
        json!({}),
    ] {
        let reason = assert_invalid(&v, &rs256(&f.rsa, &with(base.clone(), bad))).await;
        assert!(reason.contains("audience"), "{reason}");
    }
}

#[tokio::test]
async fn issuer_must_match_exactly() {
    let f = fixture().await;
    for iss in [
        json!("https://evil.example.com"),
        json!(format!("{ISSUER}/")),
        json!(ISSUER.to_uppercase()),
        json!([ISSUER]),
        json!(null),
    ] {
        let reason =
            assert_invalid(&f.v, &rs256(&f.rsa, &with(claims(), json!({"iss": iss})))).await;
        assert!(reason.contains("issuer"), "{reason}");
    }
}

#[tokio::test]
async fn expired_token_is_expired_but_leeway_applies() {
    let f = fixture().await;
    let expired = rs256(&f.rsa, &with(claims(), json!({"exp": now() - 120})));
    assert_eq!(verify(&f.v, &expired).await, Err(TokenError::Expired));
    // Within the 30 s clock-skew allowance.
    let just = rs256(&f.rsa, &with(claims(), json!({"exp": now() - 10})));
    verify(&f.v, &just).await.unwrap();
    // A forged expired token is a forgery first.
    let stranger = rsa_key(&f.rsa.kid);
    let forged = rs256(&stranger, &with(claims(), json!({"exp": now() - 120})));
    assert_invalid(&f.v, &forged).await;
    // No exp at all is not acceptable.
    assert_invalid(&f.v, &rs256(&f.rsa, &with(claims(), json!({"exp": null})))).await;
}

#[tokio::test]
async fn not_yet_valid_token_is_invalid() {
    let f = fixture().await;
    let future = rs256(&f.rsa, &with(claims(), json!({"nbf": now() + 300})));
    assert!(assert_invalid(&f.v, &future).await.contains("nbf"));
    let skewed = rs256(&f.rsa, &with(claims(), json!({"nbf": now() + 10})));
    verify(&f.v, &skewed).await.unwrap();
}

#[tokio::test]
async fn cognito_id_tokens_are_rejected_by_token_use() {
    let f = fixture().await;
    // A real Cognito ID token names its client in `aud` only: not a Cognito audience.
    let id_token = with(
        claims(),
        json!({"token_use": "id", "aud": AUDIENCE, "client_id": null}),
    );
    assert_invalid(&f.v, &rs256(&f.rsa, &id_token)).await;
    // And with a client_id as well, token_use still refuses it.
    let id_token = with(claims(), json!({"token_use": "id"}));
    assert!(
        assert_invalid(&f.v, &rs256(&f.rsa, &id_token))
            .await
            .contains("token_use")
    );
    let missing = with(claims(), json!({"token_use": null}));
    assert_invalid(&f.v, &rs256(&f.rsa, &missing)).await;

    // An issuer without token_use (Auth0): configured as None, the claim is not required.
    let mut cfg = config(&f.server.url);
    cfg.token_use = None;
    let v = verifier(&cfg);
    verify(&v, &rs256(&f.rsa, &missing)).await.unwrap();
}

#[tokio::test]
async fn account_claim_can_be_overridden() {
    let f = fixture().await;
    let mut cfg = config(&f.server.url);
    cfg.account_claim = "custom:household_id".into();
    let v = verifier(&cfg);
    let t = rs256(
        &f.rsa,
        &with(claims(), json!({"custom:household_id": "hh-42"})),
    );
    let id = verify(&v, &t).await.unwrap();
    assert_eq!(
        (id.account.as_str(), id.subject.as_str()),
        ("hh-42", "demo-user")
    );
    assert!(
        assert_invalid(&v, &rs256(&f.rsa, &claims()))
            .await
            .contains("account")
    );
    let t = rs256(&f.rsa, &with(claims(), json!({"custom:household_id": 42})));
    assert!(assert_invalid(&v, &t).await.contains("account"));
    assert_invalid(&f.v, &rs256(&f.rsa, &with(claims(), json!({"sub": null})))).await;
}

#[tokio::test]
async fn cognito_admin_is_the_pool_group_only() {
    let f = fixture().await;
    let admin = |patch: Value| {
        let t = rs256(
            &f.rsa,
            &with(
                claims(),
                with(
                    json!({"client_id": MANAGEMENT_CLIENT, "scope": null}),
                    patch,
                ),
            ),
        );
        let v = f.v.clone();
        async move {
            verify_for(&v, &t, TokenUse::Management)
                .await
                .unwrap()
                .admin
        }
    };
    assert!(admin(json!({"cognito:groups": ["family", "household-admin"]})).await);
    // Claims a Cognito pool never sets as a role are not honoured, whatever they say.
    assert!(!admin(json!({"admin": true})).await);
    assert!(!admin(json!({"groups": ["household-admin"]})).await);
    assert!(!admin(json!({"custom:admin": "household-admin"})).await);
    assert!(!admin(json!({})).await);
    assert!(!admin(json!({"cognito:groups": ["family"]})).await);
    assert!(!admin(json!({"cognito:groups": "household-admin-not"})).await);
    assert!(!admin(json!({"cognito:groups": [true]})).await);
}

#[tokio::test]
async fn oidc_admin_is_the_named_claim_only() {
    let f = fixture().await;
    // A management token from Auth0: the household app asked for alarm:manage.
    let management = with(auth0_claims(), json!({"scope": "openid alarm:manage"}));
    let is_admin = |cfg: OAuthConfig, patch: Value| {
        let t = rs256(&f.rsa, &with(management.clone(), patch));
        let v = verifier(&cfg);
        async move {
            verify_for(&v, &t, TokenUse::Management)
                .await
                .unwrap()
                .admin
        }
    };
    let auth0 = oidc_config(&f.server.url);
    let roles = "https://alarm.example.com/roles";
    assert!(is_admin(auth0.clone(), json!({roles: ["household-admin"]})).await);
    assert!(is_admin(auth0.clone(), json!({roles: "household-admin"})).await);
    assert!(!is_admin(auth0.clone(), json!({roles: ["viewer"]})).await);
    assert!(!is_admin(auth0.clone(), json!({"admin": true})).await);
    assert!(
        !is_admin(
            auth0.clone(),
            json!({"cognito:groups": ["household-admin"]})
        )
        .await
    );
    assert!(!is_admin(auth0.clone(), json!({"groups": ["household-admin"]})).await);
    // A boolean claim, when the configured value is `true`.
    let flag = OAuthConfig {
        admin_claim: "https://alarm.example.com/household_admin".into(),
        admin_group: "true".into(),
        ..auth0.clone()
    };
    let flag_claim = "https://alarm.example.com/household_admin";
    assert!(is_admin(flag.clone(), json!({flag_claim: true})).await);
    assert!(!is_admin(flag.clone(), json!({flag_claim: false})).await);
    assert!(!is_admin(flag.clone(), json!({flag_claim: "yes"})).await);
    assert!(!is_admin(flag, json!({"admin": true})).await);
    // Keycloak: realm roles are nested; a JSON pointer names them.
    let keycloak = OAuthConfig {
        admin_claim: "/realm_access/roles".into(),
        ..auth0
    };
    assert!(
        is_admin(
            keycloak.clone(),
            json!({"realm_access": {"roles": ["offline_access", "household-admin"]}})
        )
        .await
    );
    assert!(
        !is_admin(
            keycloak.clone(),
            json!({"realm_access": {"roles": ["offline_access"]}})
        )
        .await
    );
    assert!(
        !is_admin(
            keycloak.clone(),
            json!({"realm_access": ["household-admin"]})
        )
        .await
    );
    assert!(!is_admin(keycloak, json!({"roles": ["household-admin"]})).await);
}

// ---------------------------------------------------------------------------------------------
// Directive tokens and management tokens

#[tokio::test]
async fn cognito_account_linking_and_management_clients_are_told_apart() {
    let f = fixture().await;
    // What Alexa holds: the account-linking client, scope alarm/control.
    let linking = rs256(&f.rsa, &claims());
    let id = verify(&f.v, &linking).await.unwrap();
    assert_eq!(id.account, "demo-user");
    assert_wrong_use_says(&f.v, &linking, TokenUse::Management, "management").await;
    // Even with the admin group, Alexa's token manages nothing.
    let linking_admin = rs256(
        &f.rsa,
        &with(claims(), json!({"cognito:groups": ["household-admin"]})),
    );
    assert_wrong_use(&f.v, &linking_admin, TokenUse::Management).await;

    // What a household admin's app holds after InitiateAuth on the management client.
    let management = rs256(
        &f.rsa,
        &with(
            claims(),
            json!({"client_id": MANAGEMENT_CLIENT, "scope": "aws.cognito.signin.user.admin",
                   "cognito:groups": ["household-admin"]}),
        ),
    );
    let id = verify_for(&f.v, &management, TokenUse::Management)
        .await
        .unwrap();
    assert!(id.admin);
    assert_wrong_use_says(
        &f.v,
        &management,
        TokenUse::Directives,
        "account-linking client",
    )
    .await;
    // The management client can't grant itself the directive scope, nor the reverse.
    let both = rs256(
        &f.rsa,
        &with(claims(), json!({"client_id": MANAGEMENT_CLIENT})),
    );
    assert_wrong_use(&f.v, &both, TokenUse::Directives).await;
    assert_wrong_use(&f.v, &both, TokenUse::Management).await;
    // The linking client without the directive scope (e.g. only `openid` asked for).
    for scope in [
        json!("openid profile"),
        json!(null),
        json!("alarm/controls"),
        json!(42),
    ] {
        let t = rs256(&f.rsa, &with(claims(), json!({ "scope": scope })));
        assert!(
            assert_wrong_use(&f.v, &t, TokenUse::Directives)
                .await
                .contains("directive scope"),
            "{scope}"
        );
    }
    // Scope as an array, or as `scp`, counts too.
    for patch in [
        json!({"scope": ["openid", "alarm/control"]}),
        json!({"scope": null, "scp": ["alarm/control"]}),
    ] {
        verify(&f.v, &rs256(&f.rsa, &with(claims(), patch.clone())))
            .await
            .unwrap_or_else(|e| panic!("{patch}: {e}"));
    }
    // A client of the pool that is neither: certainly not ours, for either use.
    let stranger = rs256(&f.rsa, &with(claims(), json!({"client_id": "other-app"})));
    for purpose in [TokenUse::Directives, TokenUse::Management] {
        assert!(matches!(
            verify_for(&f.v, &stranger, purpose).await,
            Err(TokenError::Invalid(_))
        ));
    }
}

#[tokio::test]
async fn oidc_tokens_for_one_api_are_told_apart_by_scope() {
    let f = fixture().await;
    let v = verifier(&oidc_config(&f.server.url));
    let roles = "https://alarm.example.com/roles";
    let linking = rs256(&f.rsa, &auth0_claims());
    verify(&v, &linking).await.unwrap();
    assert_wrong_use(&v, &linking, TokenUse::Management).await;
    let management = rs256(
        &f.rsa,
        &with(
            auth0_claims(),
            json!({"scope": "openid alarm:manage", roles: ["household-admin"]}),
        ),
    );
    assert_an_admins_management_token(&v, &management).await;
    // Asked for both: Alexa's scope marks it as Alexa's, so it manages nothing.
    let greedy = rs256(
        &f.rsa,
        &with(
            auth0_claims(),
            json!({"scope": "alarm:control alarm:manage"}),
        ),
    );
    verify(&v, &greedy).await.unwrap();
    assert_wrong_use(&v, &greedy, TokenUse::Management).await;
    // Neither: the management scope is required when configured.
    let plain = rs256(&f.rsa, &with(auth0_claims(), json!({"scope": "openid"})));
    assert_wrong_use_says(&v, &plain, TokenUse::Management, "management scope").await;
    assert_wrong_use(&v, &plain, TokenUse::Directives).await;
}

#[tokio::test]
async fn keycloak_tokens_with_separate_clients_as_audiences() {
    let f = fixture().await;
    // Keycloak with an audience mapper per client, and realm roles for admins.
    let cfg = OAuthConfig {
        kind: IssuerKind::Oidc,
        audiences: vec!["alarm-skill-alexa".into()],
        management_audiences: vec!["alarm-skill-household".into()],
        directive_scope: "alarm-control".into(),
        management_scope: None,
        token_use: None,
        admin_claim: "/realm_access/roles".into(),
        ..config(&f.server.url)
    };
    let v = verifier(&cfg);
    let base = json!({
        "iss": ISSUER, "sub": "f3b1c0de", "typ": "Bearer",
        "iat": now(), "exp": now() + 300,
        "realm_access": {"roles": ["default-roles-alarm", "household-admin"]},
    });
    let linking = rs256(
        &f.rsa,
        &with(
            base.clone(),
            json!({"aud": ["alarm-skill-alexa", "account"], "azp": "alexa", "scope": "profile alarm-control"}),
        ),
    );
    let id = verify(&v, &linking).await.unwrap();
    assert_eq!(id.account, "f3b1c0de");
    assert_wrong_use(&v, &linking, TokenUse::Management).await;
    let household = rs256(
        &f.rsa,
        &with(
            base,
            json!({"aud": "alarm-skill-household", "azp": "household-app", "scope": "profile email"}),
        ),
    );
    assert_an_admins_management_token(&v, &household).await;
}

// ---------------------------------------------------------------------------------------------
// Issuer outages are never credential errors

#[tokio::test]
async fn jwks_server_down_is_unavailable() {
    // Bind then drop: a port nothing listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rsa = rsa_key("rsa-1");
    let v = verifier(&config(&format!("http://{addr}/.well-known/jwks.json")));
    let token = rs256(&rsa, &claims());
    match verify(&v, &token).await {
        Err(TokenError::Unavailable(reason)) => {
            assert!(reason.contains("connect"), "{reason}");
            assert!(!reason.contains(token.split('.').nth(2).unwrap()));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Within the retry spacing too, and for either use: still Unavailable, never Invalid or
    // WrongUse.
    for purpose in [TokenUse::Directives, TokenUse::Management] {
        assert!(matches!(
            verify_for(&v, &token, purpose).await,
            Err(TokenError::Unavailable(_))
        ));
    }
}

#[tokio::test]
async fn jwks_errors_and_garbage_are_unavailable_then_recover() {
    let f = fixture().await;
    let token = rs256(&f.rsa, &claims());
    f.server
        .fail_with(StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"boom\"}");
    match verify(&f.v, &token).await {
        Err(TokenError::Unavailable(reason)) => assert!(reason.contains("500"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Unknown kid while the last fetch failed: we can't know, so not Invalid either.
    let unknown = sign(Algorithm::RS256, "nope", &f.rsa.encoding, &claims());
    assert!(matches!(
        verify(&f.v, &unknown).await,
        Err(TokenError::Unavailable(_))
    ));

    for body in [
        "<html>oops</html>",
        "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k\",\"k\":\"AA\"}]}",
    ] {
        f.server.fail_with(StatusCode::OK, body);
        tokio::time::sleep(Duration::from_millis(320)).await;
        assert!(
            matches!(verify(&f.v, &token).await, Err(TokenError::Unavailable(_))),
            "{body}"
        );
    }
    let hits = f.server.hits();
    f.server.set(&jwks(&[&f.rsa.jwk]));
    tokio::time::sleep(Duration::from_millis(320)).await;
    verify(&f.v, &token).await.unwrap();
    assert_eq!(f.server.hits(), hits + 1);
}

#[tokio::test]
async fn slow_jwks_times_out_as_unavailable() {
    let rsa = rsa_key("rsa-1");
    let server = JwksServer::start_with_delay(&jwks(&[&rsa.jwk]), Duration::from_secs(10)).await;
    let token = rs256(&rsa, &claims());
    // The verifier's own deadline.
    let v = JwksVerifier::new(&config(&server.url), reqwest::Client::new())
        .with_fetch_timeout(Duration::from_millis(300));
    // "timed out" is the client's own timeout firing: the server's 10 s hang would have ended
    // in an answer instead, so no clock is needed to tell which cut the call.
    let r = verify(&v, &token).await;
    assert!(
        matches!(r, Err(TokenError::Unavailable(ref m)) if m.contains("timed out")),
        "{r:?}"
    );
    // A shorter timeout on the shared client is honoured as well.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let v = JwksVerifier::new(&config(&server.url), http);
    // "timed out" is the client's own timeout firing: the server's 10 s hang would have ended
    // in an answer instead, so no clock is needed to tell which cut the call.
    let r = verify(&v, &token).await;
    assert!(
        matches!(r, Err(TokenError::Unavailable(ref m)) if m.contains("timed out")),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed input

#[tokio::test]
async fn malformed_tokens_are_invalid() {
    let f = fixture().await;
    let good = rs256(&f.rsa, &claims());
    let p: Vec<&str> = good.split('.').collect();
    let header = p[0];
    let cases = vec![
        String::new(),
        "not-a-jwt".into(),
        "a.b".into(),
        format!("{good}.extra"),
        "!!!.###.$$$".into(),
        format!("{}.{}.{}", B64URL.encode("not json"), p[1], p[2]),
        format!("{}.{}.{}", b64json(&json!(["RS256"])), p[1], p[2]),
        format!("{header}.!!notbase64!!.{}", p[2]),
        format!("{header}.{}.{}", B64URL.encode("not json"), p[2]),
        format!("{header}.{}.", p[1]),
        format!("{header}.{}.AAAA", p[1]),
        format!("{}=.{}.{}", p[0], p[1], p[2]),
        format!("{header}.{}.{}", p[1], "A".repeat(20_000)),
        "\u{0}\u{1}.\u{2}.\u{3}".into(),
        "🔑.🔑.🔑".into(),
    ];
    for t in &cases {
        assert_invalid(&f.v, t).await;
    }
    // Claims with the wrong types are malformed too, not a panic.
    let odd = rs256(&f.rsa, &with(claims(), json!({"exp": "tomorrow"})));
    assert_invalid(&f.v, &odd).await;
    let odd = rs256(&f.rsa, &json!(["not", "an", "object"]));
    assert_invalid(&f.v, &odd).await;
}

// ---------------------------------------------------------------------------------------------
// The local stack's dev issuer, end to end over HTTP

#[cfg(feature = "local")]
#[tokio::test]
async fn dev_issuer_tokens_verify_end_to_end() {
    use alarm_skill::local::dev_issuer::{DevIssuer, routes};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer_url = format!("http://{addr}");
    let issuer = Arc::new(DevIssuer::new(&issuer_url, "alexa-skill").unwrap());
    tokio::spawn(async move { axum::serve(listener, routes(issuer)).await.unwrap() });

    let cfg = OAuthConfig::cognito(
        &issuer_url,
        &format!("{issuer_url}/.well-known/jwks.json"),
        "alexa-skill",
    );
    let v = verifier(&cfg);
    let http = reqwest::Client::new();
    let mint = |body: Value| {
        let http = http.clone();
        let url = format!("{issuer_url}/dev/token");
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = mint(json!({"sub": "demo", "admin": true})).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    // An admin's token is a management token, which can't drive directives.
    let admin = body["access_token"].as_str().unwrap().to_string();
    let id = verify_for(&v, &admin, TokenUse::Management).await.unwrap();
    assert_eq!(
        id,
        Identity {
            account: "demo".into(),
            subject: "demo".into(),
            admin: true,
            auth_time: id.auth_time,
        }
    );
    // Minting stands for a sign-in: the management API's step-up reads `auth_time`.
    assert!(
        id.auth_time.is_some_and(|t| (now() - t).abs() < 120),
        "{id:?}"
    );
    assert_wrong_use(&v, &admin, TokenUse::Directives).await;
    // A plain token is a directive token, which can't manage.
    let (_, body) = mint(json!({"sub": "guest"})).await;
    let plain = body["access_token"].as_str().unwrap().to_string();
    let id = verify(&v, &plain).await.unwrap();
    assert!(!id.admin);
    assert_wrong_use(&v, &plain, TokenUse::Management).await;
    // `use` asks for either explicitly.
    let (_, body) = mint(json!({"sub": "demo", "use": "management"})).await;
    let id = verify_for(
        &v,
        body["access_token"].as_str().unwrap(),
        TokenUse::Management,
    )
    .await
    .unwrap();
    assert!(!id.admin, "a household member who is not the admin");
    let (_, body) = mint(json!({"sub": "demo", "admin": true, "use": "directives"})).await;
    verify(&v, body["access_token"].as_str().unwrap())
        .await
        .unwrap();

    // A second dev issuer (another stack run) has another key: its tokens don't verify here.
    let other = DevIssuer::new(&issuer_url, "alexa-skill").unwrap();
    let foreign = other
        .mint("demo", true, chrono::Duration::minutes(5))
        .unwrap();
    assert_invalid(&v, &foreign).await;

    for bad in [
        json!({"sub": ""}),
        json!({"sub": "x".repeat(129)}),
        json!({"admin": true}),
        json!({"sub": "demo", "use": "everything"}),
        json!("demo"),
    ] {
        let (status, body) = mint(bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string(), "{body}");
    }
}
