//! The function's four secrets, resolved once per cold start: values from the environment as
//! they are (local runs), Secrets Manager ids fetched concurrently (production).
//!
//! Errors name the secret (by its environment name) and its id, never its value: start-up
//! failures end up in CloudWatch.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::config::{SecretRef, SecretRefs};
use crate::secret::Secret;
use crate::voice_codes::keyring::{Keyring, KeyringError};

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
    #[error("secret {name} is empty")]
    Empty { name: &'static str },
    #[error("secret {name} is not a valid pepper keyring: {source}")]
    Keyring {
        name: &'static str,
        #[source]
        source: KeyringError,
    },
}

pub fn secrets_manager_client(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(sdk)
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
    let keyring = Keyring::from_json(&pepper).map_err(|source| SecretsError::Keyring {
        name: "PEPPER",
        source,
    })?;
    tracing::info!(current_pepper = keyring.current_id(), "secrets loaded");
    Ok(Secrets {
        keyring,
        lwa_client_secret,
        webhook_secret,
        panel_api_key,
    })
}

async fn resolve(
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
    };
    if value.expose().is_empty() {
        return Err(SecretsError::Empty { name });
    }
    Ok(value)
}
