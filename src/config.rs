//! Configuration of the deployed functions, read once from the environment at cold start.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TABLE_NAME` | DynamoDB table | required |
//! | `DYNAMODB_ENDPOINT` | DynamoDB endpoint override (local engines) | AWS |
//! | `PANEL_API_URL` | base URL of the vendor's panel cloud API | required |
//! | `MANUFACTURER_NAME` | `manufacturerName` shown in the Alexa app | `Alarm Skill` |
//! | `ALEXA_REGION` | `NA`, `EU` or `FE`: the event gateway for this deployment | from `AWS_REGION` |
//! | `EVENT_GATEWAY_URL` | event gateway override | the region's gateway |
//! | `LWA_TOKEN_URL` | Login with Amazon token endpoint | `https://api.amazon.com/auth/o2/token` |
//! | `LWA_CLIENT_ID` | the skill's messaging client id (Permissions page) | required |
//! | `OAUTH_ISSUER` | account-linking issuer (`iss`) | required |
//! | `OAUTH_JWKS_URL` | its JWKS | `{OAUTH_ISSUER}/.well-known/jwks.json` |
//! | `OAUTH_AUDIENCE` | comma-separated accepted `aud` / Cognito `client_id` | required |
//! | `OAUTH_TOKEN_USE` | required Cognito `token_use` (`access`), empty to skip | `access` |
//! | `OAUTH_ACCOUNT_CLAIM` | claim naming the household account | `sub` |
//! | `OAUTH_ADMIN_GROUP` | group (`cognito:groups`, `groups`) marking a household admin | `household-admin` |
//!
//! Secrets, each read once per cold start: the `…_ARN` variable names a Secrets Manager secret
//! (production); without it, the plain variable holds the value itself (local runs only).
//!
//! | secret | Secrets Manager | plain value |
//! |---|---|---|
//! | pepper keyring `{"current":"p1","peppers":{"p1":"<base64, ≥32 bytes>"}}` | `PEPPER_SECRET_ARN` | `PEPPER` |
//! | Login with Amazon client secret (skill messaging) | `LWA_CLIENT_SECRET_ARN` | `LWA_CLIENT_SECRET` |
//! | panel webhook HMAC secret | `WEBHOOK_SECRET_ARN` | `WEBHOOK_SECRET` |
//! | panel cloud API key | `PANEL_API_KEY_SECRET_ARN` | `PANEL_API_KEY` |

use std::time::Duration;

use crate::secret::Secret;

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

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A Secrets Manager secret id or ARN, read once per cold start.
    Aws(String),
    /// The value itself, from the environment (local runs only).
    Value(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRefs {
    pub pepper: SecretRef,
    pub lwa_client_secret: SecretRef,
    pub webhook_secret: SecretRef,
    pub panel_api_key: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub audiences: Vec<String>,
    pub token_use: Option<String>,
    pub account_claim: String,
    pub admin_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub dynamodb_endpoint: Option<String>,
    pub panel_api_url: String,
    pub manufacturer_name: String,
    pub alexa_region: AlexaRegion,
    pub event_gateway_url: String,
    pub lwa_token_url: String,
    pub lwa_client_id: String,
    pub oauth: OAuthConfig,
    pub secrets: SecretRefs,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
    #[error("neither {0} nor {1} is set")]
    MissingSecret(&'static str, &'static str),
}

pub const DEFAULT_LWA_TOKEN_URL: &str = "https://api.amazon.com/auth/o2/token";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// `env` looks a variable up; empty values count as unset.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let required = |k: &'static str| get(k).ok_or(ConfigError::Missing(k));
        // `arn_var` names a Secrets Manager secret (production); `value_var` holds the value
        // itself (local runs).
        let secret =
            |value_var: &'static str, arn_var: &'static str| -> Result<SecretRef, ConfigError> {
                if let Some(arn) = get(arn_var) {
                    return Ok(SecretRef::Aws(arn));
                }
                get(value_var)
                    .map(|v| SecretRef::Value(Secret::new(v)))
                    .ok_or(ConfigError::MissingSecret(arn_var, value_var))
            };
        let alexa_region = match get("ALEXA_REGION") {
            Some(r) => AlexaRegion::parse(&r).ok_or_else(|| {
                ConfigError::Invalid("ALEXA_REGION", format!("{r:?} is not NA, EU or FE"))
            })?,
            None => {
                let aws = get("AWS_REGION").unwrap_or_default();
                AlexaRegion::for_aws_region(&aws).ok_or_else(|| {
                    ConfigError::Invalid(
                        "AWS_REGION",
                        format!("{aws:?} serves no Alexa region; set ALEXA_REGION"),
                    )
                })?
            }
        };
        let issuer = required("OAUTH_ISSUER")?;
        let audiences: Vec<String> = required("OAUTH_AUDIENCE")?
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if audiences.is_empty() {
            return Err(ConfigError::Invalid(
                "OAUTH_AUDIENCE",
                "no audience given".into(),
            ));
        }
        let panel_api_url = required("PANEL_API_URL")?;
        url::Url::parse(&panel_api_url)
            .map_err(|e| ConfigError::Invalid("PANEL_API_URL", e.to_string()))?;
        Ok(Config {
            table_name: required("TABLE_NAME")?,
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
            panel_api_url,
            manufacturer_name: get("MANUFACTURER_NAME").unwrap_or_else(|| "Alarm Skill".into()),
            event_gateway_url: get("EVENT_GATEWAY_URL")
                .unwrap_or_else(|| alexa_region.event_gateway_url().to_string()),
            alexa_region,
            lwa_token_url: get("LWA_TOKEN_URL").unwrap_or_else(|| DEFAULT_LWA_TOKEN_URL.into()),
            lwa_client_id: required("LWA_CLIENT_ID")?,
            oauth: OAuthConfig {
                jwks_url: get("OAUTH_JWKS_URL").unwrap_or_else(|| {
                    format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))
                }),
                issuer,
                audiences,
                // Cognito access tokens carry token_use=access; ID tokens must not link.
                token_use: match env("OAUTH_TOKEN_USE") {
                    None => Some("access".to_string()),
                    Some(v) if v.trim().is_empty() => None,
                    Some(v) => Some(v.trim().to_string()),
                },
                account_claim: get("OAUTH_ACCOUNT_CLAIM").unwrap_or_else(|| "sub".into()),
                admin_group: get("OAUTH_ADMIN_GROUP").unwrap_or_else(|| "household-admin".into()),
            },
            secrets: SecretRefs {
                pepper: secret("PEPPER", "PEPPER_SECRET_ARN")?,
                lwa_client_secret: secret("LWA_CLIENT_SECRET", "LWA_CLIENT_SECRET_ARN")?,
                webhook_secret: secret("WEBHOOK_SECRET", "WEBHOOK_SECRET_ARN")?,
                panel_api_key: secret("PANEL_API_KEY", "PANEL_API_KEY_SECRET_ARN")?,
            },
        })
    }
}

/// How long JWKS keys are trusted before a background refetch, and the minimum spacing of
/// refetches triggered by unknown `kid`s.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("TABLE_NAME", "alarm"),
            ("PANEL_API_URL", "https://panels.example.com/api"),
            ("AWS_REGION", "eu-west-1"),
            ("LWA_CLIENT_ID", "amzn1.application-oa2-client.x"),
            (
                "OAUTH_ISSUER",
                "https://cognito-idp.eu-west-1.amazonaws.com/pool/",
            ),
            ("OAUTH_AUDIENCE", "client-a, client-b"),
            (
                "PEPPER_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:pepper",
            ),
            ("LWA_CLIENT_SECRET", "local-lwa"),
            ("WEBHOOK_SECRET", "whsec"),
            ("PANEL_API_KEY", "key"),
        ])
    }

    fn load(env: &HashMap<&str, &str>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn reads_defaults_and_secret_sources() {
        let c = load(&base()).unwrap();
        assert_eq!(c.alexa_region, AlexaRegion::Eu);
        assert_eq!(
            c.event_gateway_url,
            "https://api.eu.amazonalexa.com/v3/events"
        );
        assert_eq!(c.oauth.audiences, vec!["client-a", "client-b"]);
        assert_eq!(
            c.oauth.jwks_url,
            "https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json"
        );
        assert_eq!(c.oauth.token_use.as_deref(), Some("access"));
        assert!(matches!(c.secrets.pepper, SecretRef::Aws(_)));
        assert_eq!(
            c.secrets.webhook_secret,
            SecretRef::Value(Secret::new("whsec"))
        );
    }

    #[test]
    fn explains_what_is_missing_or_wrong() {
        let mut env = base();
        env.remove("WEBHOOK_SECRET");
        assert_eq!(
            load(&env).unwrap_err(),
            ConfigError::MissingSecret("WEBHOOK_SECRET_ARN", "WEBHOOK_SECRET")
        );
        env.insert(
            "WEBHOOK_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:wh",
        );
        assert!(matches!(
            load(&env).unwrap().secrets.webhook_secret,
            SecretRef::Aws(_)
        ));
        let mut env = base();
        env.insert("AWS_REGION", "ap-south-2");
        assert!(matches!(
            load(&env).unwrap_err(),
            ConfigError::Invalid("AWS_REGION", _)
        ));
        env.insert("ALEXA_REGION", "fe");
        assert_eq!(load(&env).unwrap().alexa_region, AlexaRegion::Fe);
        let mut env = base();
        env.insert("OAUTH_TOKEN_USE", "");
        assert_eq!(load(&env).unwrap().oauth.token_use, None);
    }
}
