//! The function's secrets (four, and the optional Google key), resolved once per cold start:
//! values from the environment as they are (local runs), Secrets Manager ids fetched
//! concurrently (production).
//!
//! Errors name the secret (by its environment name) and its id, never its value: start-up
//! failures end up in CloudWatch.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::common::secret::Secret;
use crate::domain::voice_codes::keyring::{Keyring, KeyringError};

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A Secrets Manager secret id or ARN, read once per cold start.
    Aws(String),
    /// The value itself, from the environment (local runs only).
    Value(Secret),
    /// Neither variable is set. Only an error for a function that needs the secret
    /// (crate::adapters::secrets::load_for): each function loads only its own.
    Unset {
        arn_var: &'static str,
        value_var: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRefs {
    pub pepper: SecretRef,
    pub lwa_client_secret: SecretRef,
    pub webhook_secret: SecretRef,
    pub panel_api_key: SecretRef,
    /// Optional: [`SecretRef::Unset`] turns HomeGraph off instead of failing.
    pub google_service_account: SecretRef,
}

#[derive(Debug)]
pub struct Secrets {
    pub keyring: Keyring,
    pub lwa_client_secret: Secret,
    pub webhook_secret: Secret,
    pub panel_api_key: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {name} is in Secrets Manager ({id}) but no Secrets Manager client was given")]
    NoClient { name: &'static str, id: String },
    #[error("reading secret {name} from Secrets Manager ({id}) failed: {reason}")]
    Fetch {
        name: &'static str,
        id: String,
        reason: String,
    },
    #[error("secret {name} ({id}) has no SecretString; binary secrets are not supported")]
    NotString { name: &'static str, id: String },
    #[error("secret {name} is needed but neither {arn_var} nor {value_var} is set")]
    Unset {
        name: &'static str,
        arn_var: &'static str,
        value_var: &'static str,
    },
    #[error("secret {name} is empty")]
    Empty { name: &'static str },
    #[error("secret {name} is not a valid pepper keyring: {source}")]
    Keyring {
        name: &'static str,
        #[source]
        source: KeyringError,
    },
}

/// The secrets a function may need. Every function needs the pepper keyring and the panel API
/// key; the others only where used, so each role is granted only its own (infra/template.yaml; scripts/lint-infra checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretName {
    Pepper,
    LwaClientSecret,
    WebhookSecret,
    PanelApiKey,
    /// Optional: loaded when configured, HomeGraph off when not.
    GoogleServiceAccount,
}

impl SecretName {
    /// The `…_ARN` variable naming it in Secrets Manager.
    pub fn arn_var(self) -> &'static str {
        match self {
            SecretName::Pepper => "PEPPER_SECRET_ARN",
            SecretName::LwaClientSecret => "LWA_CLIENT_SECRET_ARN",
            SecretName::WebhookSecret => "WEBHOOK_SECRET_ARN",
            SecretName::PanelApiKey => "PANEL_API_KEY_SECRET_ARN",
            SecretName::GoogleServiceAccount => "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN",
        }
    }
}

/// What each Lambda loads. The template's roles and environments must match (scripts/lint-infra).
pub mod needs {
    use super::SecretName::*;
    /// `bootstrap`: verifies codes (pepper), exchanges AcceptGrant codes (LWA), calls the panel.
    pub const DIRECTIVE: &[super::SecretName] = &[Pepper, LwaClientSecret, PanelApiKey];
    /// `http-api`: enrols codes, checks webhook signatures, sends ChangeReports (LWA), syncs
    /// members from the panel cloud, and, when configured, reports to Google's HomeGraph.
    pub const HTTP_API: &[super::SecretName] = &[
        Pepper,
        LwaClientSecret,
        WebhookSecret,
        PanelApiKey,
        GoogleServiceAccount,
    ];
    /// `redelivery`: reads outbox seals (pepper) and re-sends signals to the panel cloud.
    pub const REDELIVERY: &[super::SecretName] = &[Pepper, PanelApiKey];
}

/// Secrets of one function: the optional ones are `None` unless the function needs them.
#[derive(Debug)]
pub struct FunctionSecrets {
    pub keyring: Keyring,
    pub lwa_client_secret: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    pub panel_api_key: Secret,
    /// Only where needed and configured: optional even for a function that needs it.
    pub google_service_account: Option<Secret>,
}

/// Loads exactly the secrets in `needs` (the pepper and the panel key always): a secret that is
/// not needed is neither read nor required to be configured.
pub async fn load_for(
    refs: &SecretRefs,
    needs: &[SecretName],
    sm: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<FunctionSecrets, SecretsError> {
    let optional = |name: &'static str, want: SecretName, r: &SecretRef| {
        let needed = needs.contains(&want);
        let r = r.clone();
        async move {
            if needed {
                resolve(name, &r, sm).await.map(Some)
            } else {
                Ok(None)
            }
        }
    };
    // Unlike the others, an unset key is no error: HomeGraph is simply off.
    let google = async {
        let r = &refs.google_service_account;
        if !needs.contains(&SecretName::GoogleServiceAccount)
            || matches!(r, SecretRef::Unset { .. })
        {
            return Ok(None);
        }
        resolve("GOOGLE_SERVICE_ACCOUNT", r, sm).await.map(Some)
    };
    let (pepper, lwa_client_secret, webhook_secret, panel_api_key, google_service_account) = tokio::try_join!(
        resolve("PEPPER", &refs.pepper, sm),
        optional(
            "LWA_CLIENT_SECRET",
            SecretName::LwaClientSecret,
            &refs.lwa_client_secret
        ),
        optional(
            "WEBHOOK_SECRET",
            SecretName::WebhookSecret,
            &refs.webhook_secret
        ),
        resolve("PANEL_API_KEY", &refs.panel_api_key, sm),
        google,
    )?;
    let keyring = loaded_keyring(&pepper)?;
    Ok(FunctionSecrets {
        keyring,
        lwa_client_secret,
        webhook_secret,
        panel_api_key,
        google_service_account,
    })
}

/// The pepper keyring out of its secret, at the end of a cold start's loading.
fn loaded_keyring(pepper: &Secret) -> Result<Keyring, SecretsError> {
    let keyring = Keyring::from_json(pepper).map_err(|source| SecretsError::Keyring {
        name: "PEPPER",
        source,
    })?;
    tracing::info!(current_pepper = keyring.current_id(), "secrets loaded");
    Ok(keyring)
}

pub fn secrets_manager_client(sdk: &aws_types::SdkConfig) -> aws_sdk_secretsmanager::Client {
    let mut config = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(e) = crate::adapters::aws::configured_endpoint("SECRETS_MANAGER") {
        config = config.endpoint_url(e);
    }
    aws_sdk_secretsmanager::Client::from_conf(config.build())
}

pub async fn load(
    refs: &SecretRefs,
    sm: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<Secrets, SecretsError> {
    let (pepper, lwa_client_secret, webhook_secret, panel_api_key) = tokio::try_join!(
        resolve("PEPPER", &refs.pepper, sm),
        resolve("LWA_CLIENT_SECRET", &refs.lwa_client_secret, sm),
        resolve("WEBHOOK_SECRET", &refs.webhook_secret, sm),
        resolve("PANEL_API_KEY", &refs.panel_api_key, sm),
    )?;
    let keyring = loaded_keyring(&pepper)?;
    Ok(Secrets {
        keyring,
        lwa_client_secret,
        webhook_secret,
        panel_api_key,
    })
}

/// Reads and parses the pepper keyring alone: the reload of a warm function after a rotation
/// (crate::domain::voice_codes::reload).
pub async fn load_keyring(
    source: &SecretRef,
    sm: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<Keyring, SecretsError> {
    let pepper = resolve("PEPPER", source, sm).await?;
    Keyring::from_json(&pepper).map_err(|source| SecretsError::Keyring {
        name: "PEPPER",
        source,
    })
}

/// One secret's value, from the environment or Secrets Manager: also the DC-09 keys a monitoring
/// link names (crate::adapters::dc09::sender).
pub(crate) async fn resolve(
    name: &'static str,
    source: &SecretRef,
    sm: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<Secret, SecretsError> {
    let value = match source {
        SecretRef::Value(v) => v.clone(),
        SecretRef::Aws(id) => {
            let client = sm.ok_or_else(|| SecretsError::NoClient {
                name,
                id: id.clone(),
            })?;
            let out = client
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| SecretsError::Fetch {
                    name,
                    id: id.clone(),
                    reason: match e.as_service_error() {
                        // Code and message from the service: "ResourceNotFoundException: …".
                        Some(se) => format!(
                            "{}: {}",
                            se.code().unwrap_or("service error"),
                            se.message().unwrap_or("no message")
                        ),
                        None => DisplayErrorContext(&e).to_string(),
                    },
                })?;
            let value = out.secret_string().ok_or_else(|| SecretsError::NotString {
                name,
                id: id.clone(),
            })?;
            Secret::new(value)
        }
        SecretRef::Unset { arn_var, value_var } => {
            return Err(SecretsError::Unset {
                name,
                arn_var,
                value_var,
            });
        }
    };
    if value.expose().is_empty() {
        return Err(SecretsError::Empty { name });
    }
    Ok(value)
}
