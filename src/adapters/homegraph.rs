//! HomeGraph: Report State and Request Sync, authorised as a Google service account.
//!
//! The access token comes from the service account's own key: an RS256-signed JWT assertion
//! (`iss` the account's email, `scope` HomeGraph's, `aud` the token URL) exchanged at the token
//! URL with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`. The token is cached until
//! shortly before it expires. The token URL and HomeGraph's base URL are configurable, so the
//! local stack and the tests point them at real local fakes (crate::local::google_dev).
//!
//! Every report carries the complete state of each device (crate::domain::google_devices), never a
//! delta: Google replaces what it holds with what it gets.

use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::common::secret::{BearerToken, Secret};
use crate::domain::google_devices;
use crate::domain::ports::panel::Panel;

pub const SCOPE: &str = "https://www.googleapis.com/auth/homegraph";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const DEFAULT_BASE_URL: &str = "https://homegraph.googleapis.com";
/// How long an assertion is valid: Google accepts at most an hour.
const ASSERTION_TTL_S: i64 = 3_600;
/// A cached token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a token is cached, whatever the token URL says: Google's last an hour.
const MAX_TOKEN_LIFETIME_S: i64 = 3_600;
/// Report State attempts per state change: a failed one is retried at once, so Google never keeps
/// a stale arm state for long, but boundedly (the webhook waits for it).
pub const REPORT_ATTEMPTS: usize = 3;
/// The pause before the second and third attempts.
const RETRY_PAUSES: [Duration; REPORT_ATTEMPTS - 1] =
    [Duration::from_millis(100), Duration::from_millis(300)];

#[derive(Debug, thiserror::Error)]
pub enum HomeGraphError {
    #[error("service account key: {0}")]
    Key(String),
    #[error("token exchange failed: {0}")]
    Token(String),
    /// Google does not know the agentUserId: the household never linked Google, or unlinked.
    #[error("the user is not linked to this integration")]
    NotLinked,
    #[error("HomeGraph answered {0}")]
    Status(u16),
    #[error("HomeGraph unreachable: {0}")]
    Unreachable(String),
}

impl HomeGraphError {
    /// Whether the same call may succeed if made again: outages, throttling, server errors and
    /// a refused token (forgotten, so the retry gets a new one). A bad key, a bad request or an
    /// unlinked user stay as they are.
    pub fn is_retryable(&self) -> bool {
        match self {
            HomeGraphError::Key(_) | HomeGraphError::NotLinked => false,
            HomeGraphError::Token(_) | HomeGraphError::Unreachable(_) => true,
            HomeGraphError::Status(s) => matches!(s, 401 | 408 | 429 | 500..=599),
        }
    }
}

/// The fields of a service-account key file this client uses.
#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

pub struct ServiceAccount {
    email: String,
    key: RsaKeyPair,
    token_uri: String,
}

crate::common::secret::debug_without_secrets!(ServiceAccount { email, token_uri });

impl ServiceAccount {
    /// From the key file Google's console downloads (JSON, `private_key` a PKCS#8 PEM).
    /// `token_uri` overrides the file's.
    pub fn from_json(key_file: &Secret, token_uri: Option<&str>) -> Result<Self, HomeGraphError> {
        // serde's message could quote the key; only say which part is wrong.
        let file: KeyFile = serde_json::from_str(key_file.expose())
            .map_err(|_| HomeGraphError::Key("not a service-account key file".into()))?;
        let der = pem_body(&file.private_key)
            .ok_or_else(|| HomeGraphError::Key("private_key is not a PEM key".into()))?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|_| HomeGraphError::Key("private_key is not a PKCS#8 RSA key".into()))?;
        let token_uri = token_uri
            .map(str::to_string)
            .or(file.token_uri)
            .ok_or_else(|| HomeGraphError::Key("no token_uri".into()))?;
        Ok(ServiceAccount {
            email: file.client_email,
            key,
            token_uri,
        })
    }

    pub fn email(&self) -> &str {
        &self.email
    }

    /// The signed assertion for the token exchange, issued at `now` (seconds since the epoch).
    pub fn assertion(&self, now: i64) -> Result<String, HomeGraphError> {
        let header = json!({ "alg": "RS256", "typ": "JWT" });
        let claims = json!({
            "iss": self.email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_TTL_S,
        });
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = sign_rs256(&self.key, &input)
            .map_err(|_| HomeGraphError::Key("signing failed".into()))?;
        Ok(format!("{input}.{}", B64URL.encode(sig)))
    }
}

/// The DER inside a PEM block (`-----BEGIN ...-----` lines dropped, base64 decoded).
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    STANDARD.decode(body).ok().filter(|d| !d.is_empty())
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    /// Any JSON: a broken or hostile token URL may send a huge, negative, fractional or
    /// non-numeric lifetime (see [`token_lifetime`]).
    #[serde(default)]
    expires_in: Option<Value>,
}

/// How long to cache a token whose reply said `expires_in`: at most an hour (and the renewal
/// margin off), never negative, so no lifetime a token URL sends can overflow an `Instant` or
/// panic. Missing or unreadable: the hour Google's tokens last. Zero means: use once, don't cache.
pub fn token_lifetime(expires_in: Option<&Value>) -> Duration {
    let secs = match expires_in {
        None | Some(Value::Null) => MAX_TOKEN_LIFETIME_S,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_u64().map(|_| i64::MAX))
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse::<i64>().ok()))
            .unwrap_or(0),
    };
    Duration::from_secs(secs.clamp(0, MAX_TOKEN_LIFETIME_S) as u64).saturating_sub(EXPIRY_MARGIN)
}

pub struct HomeGraph {
    account: ServiceAccount,
    base_url: String,
    http: reqwest::Client,
    token: Mutex<Option<(BearerToken, Instant)>>,
}

impl HomeGraph {
    pub fn new(account: ServiceAccount, base_url: &str, http: reqwest::Client) -> Self {
        HomeGraph {
            account,
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            token: Mutex::new(None),
        }
    }

    /// A current access token: the cached one, or a new one from the token URL. The lock is
    /// held across the exchange, so concurrent reports share one exchange.
    async fn access_token(&self) -> Result<BearerToken, HomeGraphError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let assertion = self.account.assertion(chrono::Utc::now().timestamp())?;
        let resp = self
            .http
            .post(&self.account.token_uri)
            .timeout(CALL_TIMEOUT)
            .form(&[
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| HomeGraphError::Token(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(HomeGraphError::Token(format!(
                "status {}",
                resp.status().as_u16()
            )));
        }
        let reply: TokenReply = resp
            .json()
            .await
            .map_err(|_| HomeGraphError::Token("unreadable token reply".into()))?;
        let token = BearerToken::new(reply.access_token);
        let now = Instant::now();
        // checked_add: an `Instant` overflow panics; token_lifetime already bounds it.
        *cached = now
            .checked_add(token_lifetime(reply.expires_in.as_ref()))
            .filter(|until| *until > now)
            .map(|until| (token.clone(), until));
        Ok(token)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(), HomeGraphError> {
        let token = self.access_token().await?;
        let resp = self
            .http
            .post(format!("{}{path}", self.base_url))
            .timeout(CALL_TIMEOUT)
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| HomeGraphError::Unreachable(e.without_url().to_string()))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            // A token Google refused: forget it, so the next call gets a new one.
            401 => {
                *self.token.lock().await = None;
                Err(HomeGraphError::Status(401))
            }
            404 => Err(HomeGraphError::NotLinked),
            s => Err(HomeGraphError::Status(s)),
        }
    }

    /// Report State: the complete states of `devices` (device id → states) for one user.
    /// Retried (at most [`REPORT_ATTEMPTS`] in all) when HomeGraph or the token URL fails in a
    /// way a retry can mend; one requestId for every attempt, since it is the same report.
    pub async fn report_state(
        &self,
        agent_user_id: &str,
        devices: Map<String, Value>,
    ) -> Result<(), HomeGraphError> {
        let body = json!({
            "requestId": uuid::Uuid::new_v4().to_string(),
            "agentUserId": agent_user_id,
            "payload": { "devices": { "states": devices } },
        });
        let mut attempt = 0;
        loop {
            let result = self
                .post("/v1/devices:reportStateAndNotification", &body)
                .await;
            match result {
                Err(e) if e.is_retryable() && attempt < RETRY_PAUSES.len() => {
                    tracing::info!(error = %e, attempt = attempt + 1, "Report State failed; retrying");
                    tokio::time::sleep(RETRY_PAUSES[attempt]).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Request Sync: Google sends a SYNC soon after, to learn added or removed devices.
    pub async fn request_sync(&self, agent_user_id: &str) -> Result<(), HomeGraphError> {
        let body = json!({ "agentUserId": agent_user_id, "async": true });
        self.post("/v1/devices:requestSync", &body).await
    }
}

/// The complete states of the panel and each of its zones, as Report State carries them.
pub fn states_of(p: &Panel) -> Map<String, Value> {
    let mut devices = Map::new();
    if !crate::wire::devices::is_valid_device_id(&p.id) {
        return devices;
    }
    devices.insert(
        crate::wire::devices::panel_endpoint_id(&p.id),
        Value::Object(google_devices::panel_states(p)),
    );
    for z in p
        .zones
        .iter()
        .filter(|z| crate::wire::devices::is_valid_device_id(&z.id))
    {
        devices.insert(
            crate::wire::devices::zone_endpoint_id(&p.id, &z.id),
            Value::Object(google_devices::zone_states(p, z)),
        );
    }
    devices
}

/// The RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of a JWT's signing input: shared with
/// the local dev issuer, which signs its tokens the same way.
pub fn sign_rs256(
    key: &RsaKeyPair,
    signing_input: &str,
) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;

    fn key_file(key: &RsaKeyPair) -> Secret {
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = key.as_der().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        Secret::new(
            json!({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
                   "private_key": pem, "token_uri": "https://oauth2.example/token"})
            .to_string(),
        )
    }

    #[test]
    fn the_assertion_is_rs256_with_the_documented_claims_and_verifies() {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let sa = ServiceAccount::from_json(&key_file(&key), None).unwrap();
        let jwt = sa.assertion(1_700_000_000).unwrap();
        let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(
            aws_lc_rs::signature::KeyPair::public_key(&key),
        );
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
            &B64URL.encode(&public.n),
            &B64URL.encode(&public.e),
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["https://oauth2.example/token"]);
        v.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(&jwt, &decoding, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["iss"], "sa@p.iam.gserviceaccount.com");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"], 1_700_003_600);
        // Another key's signature does not verify.
        let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let forged = ServiceAccount::from_json(&key_file(&other), None)
            .unwrap()
            .assertion(1_700_000_000)
            .unwrap();
        assert!(jsonwebtoken::decode::<Value>(&forged, &decoding, &v).is_err());
    }

    #[test]
    fn a_token_lifetime_from_a_hostile_token_url_is_bounded_and_never_panics() {
        let hour = Duration::from_secs(3_600) - EXPIRY_MARGIN;
        let cases = [
            (None, hour),
            (Some(json!(null)), hour),
            (Some(json!(3_600)), hour),
            (Some(json!(120)), Duration::from_secs(60)),
            (Some(json!(30)), Duration::ZERO),
            (Some(json!(u64::MAX)), hour),
            (Some(json!(i64::MAX)), hour),
            (Some(json!(i64::MIN)), Duration::ZERO),
            (Some(json!(-1)), Duration::ZERO),
            (Some(json!(1e300)), hour),
            (Some(json!(-1e300)), Duration::ZERO),
            (Some(json!(599.9)), Duration::from_secs(539)),
            (Some(json!("600")), Duration::from_secs(540)),
            (Some(json!("forever")), Duration::ZERO),
            (Some(json!({"s": 1})), Duration::ZERO),
        ];
        for (expires_in, want) in cases {
            let got = token_lifetime(expires_in.as_ref());
            assert_eq!(got, want, "{expires_in:?}");
            // What access_token does with it: no overflow.
            assert!(Instant::now().checked_add(got).is_some());
        }
    }

    #[test]
    fn only_failures_a_retry_can_mend_are_retried() {
        for e in [
            HomeGraphError::Unreachable("x".into()),
            HomeGraphError::Token("status 503".into()),
            HomeGraphError::Status(401),
            HomeGraphError::Status(429),
            HomeGraphError::Status(503),
        ] {
            assert!(e.is_retryable(), "{e}");
        }
        for e in [
            HomeGraphError::NotLinked,
            HomeGraphError::Key("x".into()),
            HomeGraphError::Status(400),
            HomeGraphError::Status(403),
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn a_bad_key_file_never_echoes_its_content() {
        for bad in [
            "not json -----BEGIN PRIVATE KEY-----abc",
            r#"{"client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----","token_uri":"u"}"#,
        ] {
            let e = ServiceAccount::from_json(&Secret::new(bad), None).unwrap_err();
            assert!(
                !e.to_string().contains("c2VjcmV0") && !e.to_string().contains("abc"),
                "{e}"
            );
        }
    }
}
