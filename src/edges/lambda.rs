//! Production wiring shared by the Lambda binaries: configuration from the environment,
//! secrets from Secrets Manager (once per cold start), and the AWS and HTTP adapters.
//! Nothing here probes remote credential endpoints: credentials come from the Lambda
//! environment only (crate::adapters::aws::sdk_config).

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::account_link::jwks::JwksVerifier;
use crate::adapters::event_gateway::HttpEventGateway;
use crate::adapters::homegraph::{HomeGraph, HomeGraphError, ServiceAccount};
use crate::adapters::lwa::LwaClient;
use crate::adapters::panel::HttpPanelCloud;
use crate::adapters::secrets::SecretName;
use crate::adapters::store::dynamodb::DynamoStore;
use crate::common::clock::{Clock, SystemClock};
use crate::common::deadline::Deadline;
use crate::common::secret::Secret;
use crate::domain::ports::panel::PanelCloud;
use crate::domain::ports::store::Store;
use crate::domain::skill::{Skill, SkillDeps, SkillSettings};
use crate::domain::voice_codes::{Keyring, KeyringSource, LoadKeyring};
use crate::edges::config::{Config, ConfigError, SecretRef};
use crate::edges::management::{EnrolLimit, ManagementService};
use crate::edges::webhook::handler::WebhookService;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("secrets: {0}")]
    Secrets(#[from] crate::adapters::secrets::SecretsError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("this function does not load {0}, which that part needs")]
    NotLoaded(&'static str),
    #[error("GOOGLE_SERVICE_ACCOUNT: {0}")]
    GoogleServiceAccount(#[from] HomeGraphError),
}

/// A warm container re-reads the pepper secret at most this often, however many households name
/// an unknown pepper: bounded Secrets Manager calls, even against a corrupt or hostile row.
pub const PEPPER_RELOAD_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The reload's share of a directive's budget; past it the loaded keyring is used.
pub const PEPPER_RELOAD_TIMEOUT: Duration = Duration::from_millis(1_000);

pub struct Production {
    pub config: Config,
    /// The ports, counted by `metrics`.
    pub store: Arc<dyn Store>,
    pub panels: Arc<dyn PanelCloud>,
    pub tokens: Arc<JwksVerifier>,
    /// Only where the LWA client secret is loaded (directive and HTTP functions).
    pub lwa: Option<Arc<LwaClient>>,
    pub keyring: Arc<Keyring>,
    /// Re-reads the pepper secret when a stored code or an outbox seal names a pepper `keyring`
    /// lacks (a rotation after this container started), or when the loaded keyring is older
    /// than `PEPPER_MAX_AGE_S` (a new current pepper). The directive function verifies with it,
    /// the HTTP function enrols with it, the re-delivery worker opens seals with it.
    pub keyring_source: Arc<KeyringSource>,
    pub clock: Arc<dyn Clock>,
    /// Only where it is loaded (HTTP function).
    pub webhook_secret: Option<Secret>,
    /// Only where the Google service-account key is loaded and configured (HTTP function).
    pub homegraph: Option<Arc<HomeGraph>>,
    pub http: reqwest::Client,
    pub metrics: Arc<crate::domain::metrics::Metrics>,
    /// The second path to households' monitoring centers (SIA DC-09), reading the keys links
    /// name from Secrets Manager.
    pub receiver: Arc<crate::adapters::dc09::sender::Dc09Sender>,
}

impl Production {
    /// Wires a function that loads exactly the secrets in `needs` (crate::adapters::secrets::needs).
    pub async fn from_env(needs: &[SecretName]) -> Result<Self, StartupError> {
        crate::adapters::account_link::install_crypto_provider();
        let config = Config::from_env()?;
        let sdk = crate::adapters::aws::sdk_config();
        let needs_aws = [
            &config.secrets.pepper,
            &config.secrets.lwa_client_secret,
            &config.secrets.webhook_secret,
            &config.secrets.panel_api_key,
            &config.secrets.google_service_account,
        ]
        .iter()
        .any(|s| matches!(s, SecretRef::Aws(_)));
        let sm = needs_aws.then(|| crate::adapters::secrets::secrets_manager_client(&sdk));
        let secrets =
            crate::adapters::secrets::load_for(&config.secrets, needs, sm.as_ref()).await?;
        let metrics = Arc::new(crate::domain::metrics::Metrics::stdout());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(1_500))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| StartupError::Http(e.to_string()))?;
        let store = metrics.store(Arc::new(
            DynamoStore::new(
                crate::adapters::aws::dynamodb_client(&sdk, config.dynamodb_endpoint.as_deref()),
                config.table_name.clone(),
            )
            .with_outbox_policy(config.outbox),
        ));
        let panels = metrics.panels(Arc::new(
            HttpPanelCloud::new(&config.panel_api_url, secrets.panel_api_key)
                .map_err(|e| StartupError::Http(e.to_string()))?,
        ));
        let keyring = Arc::new(secrets.keyring);
        let keyring_source = {
            let pepper = config.secrets.pepper.clone();
            let sm = sm.clone();
            let load: LoadKeyring = Arc::new(move || {
                let pepper = pepper.clone();
                let sm = sm.clone();
                Box::pin(async move {
                    crate::adapters::secrets::load_keyring(&pepper, sm.as_ref())
                        .await
                        .map_err(|e| e.to_string())
                })
            });
            Arc::new(
                KeyringSource::new(
                    keyring.clone(),
                    load,
                    PEPPER_RELOAD_MIN_INTERVAL,
                    PEPPER_RELOAD_TIMEOUT,
                )
                .with_max_age(config.pepper_max_age),
            )
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let lwa = secrets.lwa_client_secret.map(|secret| {
            Arc::new(
                LwaClient::new(
                    config.lwa_token_url.clone(),
                    config.lwa_client_id.clone(),
                    secret,
                    config.alexa_region,
                    store.clone(),
                    keyring.clone(),
                    clock.clone(),
                    http.clone(),
                )
                .with_keyring_source(keyring_source.clone()),
            )
        });
        // A key that is configured but unusable fails the start: silently not reporting would
        // leave Google showing stale states. The error never quotes the key.
        let homegraph = match &secrets.google_service_account {
            Some(key) => {
                let account = ServiceAccount::from_json(key, config.google_token_url.as_deref())?;
                tracing::info!(service_account = account.email(), "HomeGraph reporting on");
                Some(Arc::new(HomeGraph::new(
                    account,
                    &config.homegraph_url,
                    http.clone(),
                )))
            }
            None => None,
        };
        let receiver = Arc::new(crate::adapters::dc09::sender::Dc09Sender::new(
            clock.clone(),
            Some(crate::adapters::secrets::secrets_manager_client(&sdk)),
        ));
        Ok(Production {
            receiver,
            homegraph,
            tokens: Arc::new(JwksVerifier::new(&config.oauth, http.clone())),
            store,
            panels,
            lwa,
            keyring,
            keyring_source,
            clock,
            webhook_secret: secrets.webhook_secret,
            http,
            config,
            metrics,
        })
    }

    /// Fetches the issuer's keys now. Called during init by the functions that verify tokens:
    /// Lambda runs init on a boosted CPU before the first request's clock starts. Not fatal:
    /// verification fetches on demand anyway.
    pub async fn warm_up(&self) {
        if let Err(e) = self.tokens.warm_up().await {
            tracing::warn!(error = %e, "could not prefetch the account-linking JWKS");
        }
    }

    fn settings(&self) -> SkillSettings {
        SkillSettings {
            manufacturer_name: self.config.manufacturer_name.clone(),
            ..SkillSettings::default()
        }
    }

    fn lwa(&self) -> Result<Arc<LwaClient>, StartupError> {
        self.lwa
            .clone()
            .ok_or(StartupError::NotLoaded("LWA_CLIENT_SECRET"))
    }

    /// The directive handler, writing one metrics line per directive.
    pub fn skill(&self) -> Result<Skill, StartupError> {
        Ok(Skill::new(
            SkillDeps {
                store: self.store.clone(),
                panels: self.panels.clone(),
                tokens: self.tokens.clone(),
                grants: self.lwa()?,
                keyring: self.keyring.clone(),
                clock: self.clock.clone(),
            },
            self.settings(),
        )
        .with_metrics(self.metrics.clone())
        .with_keyring_source(self.keyring_source.clone())
        .with_receiver(self.receiver.clone()))
    }

    pub fn management(&self) -> ManagementService {
        ManagementService {
            store: self.store.clone(),
            tokens: self.tokens.clone(),
            keyring: self.keyring.clone(),
            keyring_source: Some(self.keyring_source.clone()),
            clock: self.clock.clone(),
            throttle: self.settings().throttle,
            enrol_limit: EnrolLimit::default(),
            step_up: self.config.step_up,
            provisioning: Some(crate::domain::provisioning::Provisioner {
                store: self.store.clone(),
                panels: self.panels.clone(),
                clock: self.clock.clone(),
            }),
        }
    }

    pub fn webhook(&self) -> Result<WebhookService, StartupError> {
        Ok(WebhookService {
            store: self.store.clone(),
            gateway: Arc::new(HttpEventGateway::new(
                self.config.event_gateway_url.clone(),
                self.lwa()?,
                self.http.clone(),
            )),
            secret: self
                .webhook_secret
                .clone()
                .ok_or(StartupError::NotLoaded("WEBHOOK_SECRET"))?,
            clock: self.clock.clone(),
            manufacturer_name: self.config.manufacturer_name.clone(),
            renewals: Default::default(),
            homegraph: self.homegraph.clone(),
            // The Alexa adapter goes there once Amazon's message format is confirmed.
            echo_alerts: Arc::new(crate::adapters::echo_alerts::Unannounced),
        })
    }
}

fn remaining(ctx: &lambda_runtime::Context) -> Duration {
    let now_ms = chrono::Utc::now().timestamp_millis();
    Duration::from_millis(u64::try_from(ctx.deadline as i64 - now_ms).unwrap_or(0))
}

/// The directive's deadline from the invocation's: Alexa's budget or the Lambda's remaining
/// time, whichever ends first.
pub fn deadline(ctx: &lambda_runtime::Context) -> Deadline {
    Deadline::for_directive(Some(remaining(ctx)))
}

/// The invocation's own deadline (for work not bound by Alexa's budget, like re-delivery).
pub fn invocation_deadline(ctx: &lambda_runtime::Context) -> Deadline {
    Deadline::after(remaining(ctx))
}
