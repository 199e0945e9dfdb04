//! The configured account-linking issuer: how its access tokens name their audience and their
//! admins (crate::edges::config's module docs, "issuer kinds"), read by the JWKS verifier.

use std::time::Duration;

/// How an issuer's access tokens name their audience and their admins (crate::edges::config's
/// module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IssuerKind {
    #[default]
    Cognito,
    /// Auth0, Keycloak and other OIDC providers.
    Oidc,
}

impl IssuerKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cognito" => Some(IssuerKind::Cognito),
            "oidc" | "auth0" | "keycloak" => Some(IssuerKind::Oidc),
            _ => None,
        }
    }
}

/// The scope Alexa's account-linking tokens carry (the template's Cognito resource server).
pub const DEFAULT_DIRECTIVE_SCOPE: &str = "alarm/control";
pub const COGNITO_GROUPS_CLAIM: &str = "cognito:groups";
pub const DEFAULT_ADMIN_GROUP: &str = "household-admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub kind: IssuerKind,
    /// Audiences of directive tokens (Alexa's account-linking client).
    pub audiences: Vec<String>,
    /// Audiences of management API tokens.
    pub management_audiences: Vec<String>,
    /// The scope every directive token carries, and no management token may carry.
    pub directive_scope: String,
    /// A scope every management token must carry, if any.
    pub management_scope: Option<String>,
    pub token_use: Option<String>,
    pub account_claim: String,
    /// The claim marking a household admin (a JSON pointer when it starts with `/`).
    pub admin_claim: String,
    /// The value `admin_claim` must hold.
    pub admin_group: String,
}

impl OAuthConfig {
    /// A Cognito-style issuer with one app client for both uses, told apart by scope: what the
    /// local stack's dev issuer mints.
    pub fn cognito(issuer: &str, jwks_url: &str, client_id: &str) -> Self {
        OAuthConfig {
            issuer: issuer.to_string(),
            jwks_url: jwks_url.to_string(),
            kind: IssuerKind::Cognito,
            audiences: vec![client_id.to_string()],
            management_audiences: vec![client_id.to_string()],
            directive_scope: DEFAULT_DIRECTIVE_SCOPE.to_string(),
            management_scope: None,
            token_use: Some("access".to_string()),
            account_claim: "sub".to_string(),
            admin_claim: COGNITO_GROUPS_CLAIM.to_string(),
            admin_group: DEFAULT_ADMIN_GROUP.to_string(),
        }
    }
}

/// How long JWKS keys are trusted before a background refetch, and the minimum spacing of
/// refetches triggered by unknown `kid`s.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(60);
