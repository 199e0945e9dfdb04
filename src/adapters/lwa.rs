//! Login with Amazon for the skill's *messaging* client (the Permissions page's client id and
//! secret, not the account-linking client): AcceptGrant's code exchange, and access tokens for
//! the event gateway, refreshed shortly before they expire.
//!
//! - Tokens are stored per account, Alexa region and Alexa user (the grant key
//!   `{region}#{user}`, [`LwaClient::user_key`]): each household member who links their own
//!   Alexa has a grant, and every report goes to each. A grant stored before grants were kept
//!   per user has the key `{region}` alone; it is one more user's grant (whoever linked last
//!   then) and stays in use until Amazon revokes it. Sealed with the keyring; the AAD binds each
//!   sealed value to its account, region and kind, so a sealed token copied to another account
//!   does not open.
//! - `invalid_grant` on refresh means the customer disabled the skill (Alexa sends no directive
//!   for that): the grant is deleted and callers see "no grant".
//! - No token, code or secret appears in a log line or an error message. Errors carry HTTP
//!   statuses and OAuth error codes only, never LWA's free-text `error_description`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::common::clock::Clock;
use crate::common::deadline::Deadline;
use crate::common::secret::{BearerToken, Secret};
pub use crate::domain::ports::lwa::LwaError;
use crate::domain::ports::lwa::{GrantError, GrantExchange};
use crate::domain::ports::store::{Store, StoreError, StoredGrant};
use crate::domain::voice_codes::{Keyring, KeyringSource};

/// The Alexa region of a deployment: where its event gateway is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlexaRegion {
    Na,
    Eu,
    Fe,
}

impl AlexaRegion {
    pub fn code(self) -> &'static str {
        match self {
            AlexaRegion::Na => "NA",
            AlexaRegion::Eu => "EU",
            AlexaRegion::Fe => "FE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "NA" => Some(AlexaRegion::Na),
            "EU" => Some(AlexaRegion::Eu),
            "FE" => Some(AlexaRegion::Fe),
            _ => None,
        }
    }

    /// The Alexa region served by a Lambda in `aws_region`. Amazon routes NA skills to
    /// us-east-1, EU (and India) to eu-west-1, FE (Japan, Australia) to us-west-2.
    pub fn for_aws_region(aws_region: &str) -> Option<Self> {
        match aws_region {
            "us-east-1" => Some(AlexaRegion::Na),
            "eu-west-1" => Some(AlexaRegion::Eu),
            "us-west-2" => Some(AlexaRegion::Fe),
            _ => None,
        }
    }

    pub fn event_gateway_url(self) -> &'static str {
        match self {
            AlexaRegion::Na => "https://api.amazonalexa.com/v3/events",
            AlexaRegion::Eu => "https://api.eu.amazonalexa.com/v3/events",
            AlexaRegion::Fe => "https://api.fe.amazonalexa.com/v3/events",
        }
    }
}

/// Refresh when the access token has this little life left. Amazon's sample uses 300 s; it
/// leaves room for the event-gateway request that follows and for clock skew.
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// Refresh calls made outside a directive have no caller deadline; this bounds them so a hung
/// LWA can't stall a ChangeReport past its 3 s window by much.
const REFRESH_TIMEOUT: Duration = Duration::from_millis(2_500);

/// Less than this left before the AcceptGrant deadline: don't start a request that can't finish.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// At most this many grants of one account in one region are used: one per linked member.
pub const MAX_GRANTS_PER_ACCOUNT: usize = 16;

/// LWA access tokens live an hour; used when a response omits `expires_in`.
const DEFAULT_EXPIRES_IN_S: i64 = 3_600;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Access,
    Refresh,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Refresh => "refresh",
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    #[serde(default)]
    error: String,
}

/// A token request's failure: `invalid_grant` is told apart because it means "this grant is
/// dead" (bad or reused code, revoked refresh token), which callers act on.
enum CallError {
    InvalidGrant,
    /// The connection never opened, so LWA certainly did not see the request.
    Unsent,
    Other(LwaError),
}

/// What a caller wants of an account's first grant.
#[derive(Clone, Copy)]
enum Want {
    /// A token that still works, refreshed only if it is about to expire.
    Usable,
    /// A freshly refreshed token, whatever the stored expiry says.
    Refreshed,
}

pub struct LwaClient {
    token_url: String,
    client_id: String,
    client_secret: Secret,
    region: AlexaRegion,
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    /// Where a newer keyring comes from (the deployed functions): grants sealed under a pepper
    /// `keyring` lacks are opened after a re-read, and new seals use the current pepper of a
    /// keyring no older than its max age. `None` keeps `keyring`.
    keyring_source: Option<Arc<KeyringSource>>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
}

crate::common::secret::debug_without_secrets!(LwaClient {
    token_url,
    client_id,
    region
});

impl LwaClient {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        token_url: String,
        client_id: String,
        client_secret: Secret,
        region: AlexaRegion,
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
    ) -> Self {
        LwaClient {
            token_url,
            client_id,
            client_secret,
            region,
            store,
            keyring,
            keyring_source: None,
            clock,
            http,
        }
    }

    /// Seals and opens grants with `source`'s keyring (pepper rotation on a warm function).
    pub fn with_keyring_source(mut self, source: Arc<KeyringSource>) -> Self {
        self.keyring_source = Some(source);
        self
    }

    pub fn region(&self) -> AlexaRegion {
        self.region
    }

    /// The grant key of `user` in this region: `{region}#` and a digest of the user's
    /// account-linking subject (bounded, and no identifier in the table's keys).
    pub fn user_key(&self, user: &str) -> String {
        format!("{}#{}", self.region.code(), user_digest(user))
    }

    /// The keys of the account's grants in this region, the one from before per-user grants
    /// first; at most [`MAX_GRANTS_PER_ACCOUNT`].
    pub async fn grant_keys(&self, account: &str) -> Result<Vec<String>, LwaError> {
        let region = self.region.code();
        let prefix = format!("{region}#");
        let mut keys: Vec<String> = self
            .store
            .grants(account)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k == region || k.starts_with(&prefix))
            .collect();
        keys.sort();
        keys.truncate(MAX_GRANTS_PER_ACCOUNT);
        Ok(keys)
    }

    /// [`Self::access_token_at`] for the account's first grant in this region.
    pub async fn access_token(&self, account: &str) -> Result<Option<BearerToken>, LwaError> {
        self.at_first_grant(account, Want::Usable).await
    }

    /// [`Self::force_refresh`] or [`Self::access_token`]: `want` for the account's first grant in
    /// this region, `None` when it has none.
    async fn at_first_grant(
        &self,
        account: &str,
        want: Want,
    ) -> Result<Option<BearerToken>, LwaError> {
        let keys = self.grant_keys(account).await?;
        let Some(key) = keys.first() else {
            return Ok(None);
        };
        match want {
            Want::Usable => self.access_token_at(account, key).await,
            Want::Refreshed => self.force_refresh_at(account, key).await,
        }
    }

    /// A usable event-gateway access token of grant `key`, refreshed first if it expires
    /// within [`REFRESH_MARGIN`]. `None` when there is no such grant, or when the refresh
    /// showed the grant was revoked (the grant is then deleted).
    pub async fn access_token_at(
        &self,
        account: &str,
        key: &str,
    ) -> Result<Option<BearerToken>, LwaError> {
        let Some(grant) = self.grant(account, key).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if grant.expires_at - now > REFRESH_MARGIN {
            return self
                .open(account, Kind::Access, &grant.access_token)
                .await
                .map(Some);
        }
        match self.refresh(account, key, &grant).await {
            Err(LwaError::Unavailable(why)) if grant.expires_at > now => {
                // LWA is down but the current token still works for a few minutes: better a
                // delivered report now than none; the next call refreshes again.
                tracing::warn!(%account, %why, "LWA refresh failed; using the current token until it expires");
                self.open(account, Kind::Access, &grant.access_token)
                    .await
                    .map(Some)
            }
            other => other,
        }
    }

    /// [`Self::force_refresh_at`] for the account's first grant in this region.
    pub async fn force_refresh(&self, account: &str) -> Result<Option<BearerToken>, LwaError> {
        self.at_first_grant(account, Want::Refreshed).await
    }

    /// Refreshes regardless of the stored expiry: the event gateway said 401, so the token it
    /// holds is no good. `None` when there is no grant or the refresh showed it was revoked.
    pub async fn force_refresh_at(
        &self,
        account: &str,
        key: &str,
    ) -> Result<Option<BearerToken>, LwaError> {
        match self.grant(account, key).await? {
            Some(grant) => self.refresh(account, key, &grant).await,
            None => Ok(None),
        }
    }

    /// Deletes the account's grants in this region (the customer disabled the skill).
    pub async fn revoke(&self, account: &str) -> Result<(), LwaError> {
        for key in self.grant_keys(account).await? {
            self.revoke_at(account, &key).await?;
        }
        Ok(())
    }

    /// Deletes grant `key` (that Alexa user disabled the skill).
    pub async fn revoke_at(&self, account: &str, key: &str) -> Result<(), LwaError> {
        self.store
            .delete_grant(account, key)
            .await
            .map_err(LwaError::from)
    }

    async fn grant(&self, account: &str, key: &str) -> Result<Option<StoredGrant>, LwaError> {
        let grants = self.store.grants(account).await?;
        Ok(grants.into_iter().find(|(k, _)| k == key).map(|(_, g)| g))
    }

    /// Refreshes `grant`, stores the new tokens and returns the new access token; on
    /// `invalid_grant` deletes the grant and returns `None`.
    async fn refresh(
        &self,
        account: &str,
        key: &str,
        grant: &StoredGrant,
    ) -> Result<Option<BearerToken>, LwaError> {
        let refresh_token = self
            .open(account, Kind::Refresh, &grant.refresh_token)
            .await?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        match self.request(&form, REFRESH_TIMEOUT).await {
            Ok(tokens) => {
                let access = BearerToken::new(tokens.access_token);
                // LWA normally returns the same refresh token, and may return none at all; the
                // one we hold stays valid in that case.
                let refresh = tokens
                    .refresh_token
                    .map(BearerToken::new)
                    .unwrap_or(refresh_token);
                self.save(account, key, &access, &refresh, tokens.expires_in)
                    .await?;
                tracing::debug!(%account, region = self.region.code(), "LWA token refreshed");
                Ok(Some(access))
            }
            Err(CallError::InvalidGrant) => {
                tracing::info!(%account, region = self.region.code(), "LWA refresh returned invalid_grant; grant revoked, deleting it");
                self.revoke_at(account, key).await?;
                Ok(None)
            }
            Err(CallError::Unsent) => Err(LwaError::Unavailable("connection failed".into())),
            Err(CallError::Other(e)) => Err(e),
        }
    }

    async fn save(
        &self,
        account: &str,
        key: &str,
        access: &BearerToken,
        refresh: &BearerToken,
        expires_in: Option<i64>,
    ) -> Result<(), StoreError> {
        // Clamped: a zero or negative lifetime would refresh on every call, a huge one would
        // overflow the date arithmetic.
        let lifetime = expires_in
            .unwrap_or(DEFAULT_EXPIRES_IN_S)
            .clamp(60, 366 * 24 * 3_600);
        // Under the current pepper of a keyring no older than its max age: a grant re-sealed at
        // each refresh moves to the new pepper after a rotation.
        let keyring = match &self.keyring_source {
            Some(source) => source.fresh().await,
            None => self.keyring.clone(),
        };
        let grant = StoredGrant {
            access_token: self.seal(&keyring, account, Kind::Access, access),
            refresh_token: self.seal(&keyring, account, Kind::Refresh, refresh),
            expires_at: self.clock.now() + chrono::Duration::seconds(lifetime),
        };
        self.store.put_grant(account, key, &grant).await
    }

    /// `alarm-skill/lwa/v1|{region}|{kind}|{account}`: region and kind come from fixed sets, so
    /// putting the free-form account last keeps the encoding unambiguous.
    fn aad(&self, account: &str, kind: Kind) -> Vec<u8> {
        format!(
            "alarm-skill/lwa/v1|{}|{}|{}",
            self.region.code(),
            kind.name(),
            account
        )
        .into_bytes()
    }

    fn seal(&self, keyring: &Keyring, account: &str, kind: Kind, token: &BearerToken) -> String {
        keyring.seal(token.expose().as_bytes(), &self.aad(account, kind))
    }

    async fn open(&self, account: &str, kind: Kind, sealed: &str) -> Result<BearerToken, LwaError> {
        let aad = self.aad(account, kind);
        let plain = match &self.keyring_source {
            None => self.keyring.open(sealed, &aad),
            Some(source) => {
                let keyring = source.current();
                match keyring.open(sealed, &aad) {
                    Some(plain) => Some(plain),
                    // Sealed by a function that knows a newer pepper: re-read, then try again.
                    // A seal under a known pepper that doesn't open was altered: no re-read.
                    None => match Keyring::sealed_pepper_id(sealed) {
                        Some(id) if !keyring.contains(id) => {
                            source.for_ids(&[id]).await.open(sealed, &aad)
                        }
                        _ => None,
                    },
                }
            }
        };
        let plain = plain.ok_or(LwaError::Unreadable)?;
        String::from_utf8(plain)
            .map(BearerToken::new)
            .map_err(|_| LwaError::Unreadable)
    }

    async fn request(
        &self,
        form: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<TokenResponse, CallError> {
        let resp = self
            .http
            .post(&self.token_url)
            .form(form)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::Unsent
                } else {
                    CallError::Other(LwaError::Unavailable(transport(&e)))
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::Other(LwaError::Unavailable(transport(&e))))?;
        if status.is_success() {
            return serde_json::from_slice::<TokenResponse>(&bytes)
                .ok()
                .filter(|t| !t.access_token.is_empty())
                .ok_or_else(|| {
                    CallError::Other(LwaError::Refused(format!(
                        "HTTP {} without a token response",
                        status.as_u16()
                    )))
                });
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(CallError::Other(LwaError::Unavailable(format!(
                "HTTP {}",
                status.as_u16()
            ))));
        }
        let code = serde_json::from_slice::<OAuthErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_default();
        if code == "invalid_grant" {
            return Err(CallError::InvalidGrant);
        }
        Err(CallError::Other(LwaError::Refused(format!(
            "HTTP {} {}",
            status.as_u16(),
            safe_code(&code)
        ))))
    }
}

/// A transport failure, described without reqwest's message (which names the URL and could,
/// with a misconfigured URL, carry credentials).
pub(crate) fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transport error".into()
    }
}

/// What a grant key holds after `{region}#` for `user`.
fn user_digest(user: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(user.as_bytes());
    hex::encode(digest)[..32].to_string()
}

/// OAuth error codes are short snake_case words; anything else is not echoed.
fn safe_code(code: &str) -> &str {
    let ok = !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok { code } else { "(no error code)" }
}

#[async_trait]
impl GrantExchange for LwaClient {
    /// Kept under the region's key alone, as before grants were per user.
    async fn accept(
        &self,
        account: &str,
        code: &BearerToken,
        deadline: Deadline,
    ) -> Result<(), GrantError> {
        self.exchange(account, self.region.code(), code, deadline)
            .await
    }

    async fn accept_for_user(
        &self,
        account: &str,
        user: &str,
        code: &BearerToken,
        deadline: Deadline,
    ) -> Result<(), GrantError> {
        let key = self.user_key(user);
        self.exchange(account, &key, code, deadline).await
    }

    async fn revoke_for_user(&self, account: &str, user: &str) -> Result<usize, LwaError> {
        let digest = user_digest(user);
        let mut deleted = 0;
        for (key, _) in self.store.grants(account).await? {
            if key.split_once('#').is_some_and(|(_, of)| of == digest) {
                self.revoke_at(account, &key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl LwaClient {
    /// Exchanges AcceptGrant's code and stores the tokens as grant `key`.
    async fn exchange(
        &self,
        account: &str,
        key: &str,
        code: &BearerToken,
        deadline: Deadline,
    ) -> Result<(), GrantError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let mut retried = false;
        let tokens = loop {
            let remaining = deadline.remaining();
            if remaining < MIN_ATTEMPT {
                return Err(GrantError::Unavailable(
                    "no time left for the exchange".into(),
                ));
            }
            match self.request(&form, remaining).await {
                Ok(t) => break t,
                Err(CallError::InvalidGrant) => {
                    return Err(GrantError::Rejected(
                        "LWA returned invalid_grant for the authorization code".into(),
                    ));
                }
                // The code is single-use: only a connection that never opened is certain not
                // to have spent it, so that is the one failure worth a second attempt.
                Err(CallError::Unsent) if !retried => retried = true,
                Err(CallError::Unsent) => {
                    return Err(GrantError::Unavailable("connection failed".into()));
                }
                Err(CallError::Other(LwaError::Unavailable(why))) => {
                    return Err(GrantError::Unavailable(why));
                }
                Err(CallError::Other(e)) => return Err(GrantError::Rejected(e.to_string())),
            }
        };
        let Some(refresh) = tokens.refresh_token.map(BearerToken::new) else {
            return Err(GrantError::Rejected(
                "LWA issued no refresh token for the grant".into(),
            ));
        };
        let access = BearerToken::new(tokens.access_token);
        self.save(account, key, &access, &refresh, tokens.expires_in)
            .await
            .map_err(|e| GrantError::Store(e.to_string()))?;
        tracing::info!(%account, region = self.region.code(), "event-gateway grant stored");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_oauth_codes_are_echoed() {
        assert_eq!(safe_code("invalid_client"), "invalid_client");
        assert_eq!(safe_code("Atza|secret"), "(no error code)");
        assert_eq!(safe_code(""), "(no error code)");
    }
}
