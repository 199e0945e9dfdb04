//! Account-linking tokens: the bearer token Alexa puts in every directive identifies the
//! household. [`crate::adapters::account_link::JwksVerifier`] checks it as a JWT from the
//! configured OAuth/OIDC issuer.

use async_trait::async_trait;

use crate::common::secret::BearerToken;

/// What a token is presented for. Alexa's account-linking tokens drive directives; the
/// household management client's tokens manage voice codes. No token is good for both
/// (crate::edges::config, "issuer kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// Discover, ReportState, Arm, Disarm, AcceptGrant's grantee.
    Directives,
    /// The household management API.
    Management,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The household / panel-cloud account (the configured account claim, `sub` by default).
    pub account: String,
    pub subject: String,
    /// Whether the token carries the configured household-admin claim (management API only).
    pub admin: bool,
    /// When the user last signed in (the `auth_time` claim, Unix seconds), if the token says.
    /// The management API asks for a recent one before any voice-code change (step-up).
    pub auth_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Alexa unlinks the account on EXPIRED_AUTHORIZATION_CREDENTIAL: only for real expiry.
    #[error("token expired")]
    Expired,
    /// Alexa unlinks the account on INVALID_AUTHORIZATION_CREDENTIAL: only for tokens that are
    /// certainly bad (forged, malformed, wrong issuer or audience).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A genuine, current token of the configured issuer for one of our audiences, but not for
    /// this use: the management client's token on a directive, or Alexa's on the management
    /// API. Certainly bad for this use, so a directive answers it like `Invalid`.
    #[error("token not valid for this use: {0}")]
    WrongUse(String),
    /// The issuer or its JWKS could not be reached: an outage, never reported as a credential
    /// error.
    #[error("token verification unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Verifies `token` for `purpose`: signature, issuer, expiry, audience, scope.
    async fn verify(&self, token: &BearerToken, purpose: TokenUse) -> Result<Identity, TokenError>;
}
