//! The alarm-skill local stack: the production handler over local adapters, on one machine,
//! without AWS or Docker. `alarm-skill serve` runs it; the integration tests start it in-process.
//!
//! What it wires together:
//! - the same [`Skill`] the `bootstrap` Lambda runs, verifying tokens with the production JWKS
//!   verifier against the dev issuer, and calling the panel cloud through the production HTTP
//!   client;
//! - the panel simulator, serving the panel API on its own port (so it can be taken down), and
//!   reporting over SIA DC-09 to a monitoring receiver on a third port;
//! - the embedded store (or DynamoDB at `--dynamodb-endpoint`);
//! - the management API, the panel webhook, and dev fakes of Login with Amazon and the Alexa
//!   event gateway, so state changes flow back as ChangeReports, and the household's Echo
//!   devices, recording the alerts they would play;
//! - the Google fulfillment, and dev fakes of Google's token URL and HomeGraph, so state changes
//!   flow back as Report State too;
//! - the duress re-delivery worker, in a loop.

pub mod alexa_dev;
pub mod capacity;
pub mod conformance;
pub mod console;
pub mod demo;
pub mod dev_issuer;
pub mod dev_keys;
pub mod drill;
pub mod echo_dev;
pub mod google_dev;
pub mod say;
pub mod simulator;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::adapters::account_link::jwks::JwksVerifier;
use crate::adapters::dc09::sender::Dc09Sender;
use crate::adapters::dc09::transmitter::{LinkConfig, Transmitter};
use crate::adapters::event_gateway::HttpEventGateway;
use crate::adapters::homegraph::{HomeGraph, ServiceAccount};
use crate::adapters::lwa::LwaClient;
use crate::adapters::panel::HttpPanelCloud;
use crate::adapters::store::memory::MemoryStore;
use crate::common::clock::{AdjustableClock, Clock};
use crate::common::deadline::Deadline;
use crate::common::secret::{Pin, Secret};
use crate::domain::ports::monitoring::AlarmReceiver;
use crate::domain::ports::panel::PanelCloud;
use crate::domain::ports::store::{ConfirmedPanel, Store, StoreError};
use crate::domain::redelivery::{self, Report};
use crate::domain::skill::{Skill, SkillDeps, SkillSettings};
use crate::domain::voice_codes::{Keyring, Member, hash_code};
use crate::edges::config::{AlexaRegion, OAuthConfig};
use crate::edges::management::{EnrolLimit, ManagementService};
use crate::edges::webhook::handler::WebhookService;
use crate::local::simulator::http::{
    RestartableServer, control_routes, monitoring_routes, panel_api_routes,
};
use crate::local::simulator::monitoring::receiver::{Dc09Receiver, ReceiverMode};
use crate::local::simulator::monitoring::{MonitoringCenter, SECOND_PATH_KEY_REF, SecondPath};
use crate::local::simulator::{Simulator, subscribers};
use crate::wire::dc09::frame::Key;
use alexa_dev::DevAlexa;
use demo::DemoConfig;
use dev_issuer::DevIssuer;
use google_dev::DevGoogle;

/// `s` as HTML text or a quoted attribute value, for the pages the local stack writes itself
/// (the dev issuer's, the console's first paint).
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a request says its body is a form (`application/x-www-form-urlencoded`), as the
/// OAuth token endpoints the dev LWA and dev Google stand in for require.
fn form_encoded(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The Lambda runtime's invoke path, so `aws lambda invoke --endpoint-url` works against it.
pub const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";
pub const AUDIENCE: &str = "alarm-skill-local";
pub const LWA_CLIENT_ID: &str = "amzn1.application-oa2-client.alarm-skill-local";
/// Also the marker scripts/release-zips checks is absent from the deployed `bootstrap`.
pub const BANNER: &str = "alarm-skill local stack";

#[derive(Debug, Clone)]
pub struct Options {
    /// 9000 by default; 0 picks a free port (tests).
    pub port: u16,
    /// The simulated panel cloud's API; 9001 by default; 0 picks a free port.
    pub panel_port: u16,
    /// The monitoring center's SIA DC-09 receiver (TCP); 9002 by default; 0 picks a free port.
    pub receiver_port: u16,
    /// AES-128 key of the DC-09 link (32 hex digits); `None` sends in clear.
    pub dc09_key: Option<Secret>,
    /// Where the panel cloud's DC-09 queue (`cloud/`) and the monitoring receiver's journal
    /// (`receiver/`) live, so both survive a restart; None: a fresh directory under the system
    /// temp dir for this stack.
    pub monitoring_dir: Option<std::path::PathBuf>,
    /// The skill's second path (issue 26): the reference cloud reports this stack's center as
    /// every monitored panel's monitoring details (`Panel.monitoring`, line
    /// `SECOND_PATH_LINE`), so the skill sends there itself while the cloud can't take an
    /// attempt. On in `alarm-skill serve` (`--no-second-path`: no details, the cloud's path only).
    pub second_path: bool,
    /// The receiver's fault mode at start (`/sim/monitoring/receiver` changes it later): a
    /// restart with the receiver down keeps the cloud's queued backlog queued.
    pub receiver_mode: ReceiverMode,
    pub config: DemoConfig,
    /// Use DynamoDB at this endpoint instead of the embedded store.
    pub dynamodb_endpoint: Option<String>,
    pub table: String,
    /// Tests freeze the clock and move it with `/sim/clock/advance`.
    pub frozen_clock: bool,
    /// How often the re-delivery worker runs; `None` leaves it to [`LocalStack::redeliver`].
    pub redelivery_interval: Option<Duration>,
    pub manufacturer_name: String,
    /// The reply budget of a directive; Alexa's (about 7 s usable) unless shortened for tests.
    pub directive_budget: Option<Duration>,
    /// The pepper keyring JSON (as `PEPPER`), when another process must verify the same codes;
    /// otherwise the `PEPPER` variable, or a random keyring.
    pub pepper: Option<Secret>,
    /// Keep the directive handler's metrics lines (crate::domain::metrics) in [`LocalStack::metrics`].
    pub metrics: bool,
    /// Shards and household quota of the pending outbox.
    pub outbox: crate::domain::ports::store::OutboxPolicy,
    /// With `dynamodb_endpoint`: every store call reports what it consumed here.
    pub capacity: Option<crate::local::capacity::CapacityMeter>,
    /// The management API's step-up for code changes (tests shorten the sign-in age).
    pub step_up: crate::edges::management::StepUp,
    /// What renewing a panel's confirmation may take; `None`: the functions' 300 ms
    /// (`RENEW_BUDGET`). Tests that count every table call on a loaded machine give it more.
    pub renew_budget: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 9000,
            panel_port: 9001,
            receiver_port: 9002,
            dc09_key: None,
            monitoring_dir: None,
            receiver_mode: ReceiverMode::None,
            // On in `alarm-skill serve` (its `--no-second-path` turns it off); off for the
            // stacks tests build, which turn it on where they look at it, so the counts of
            // every other suite's center stay the cloud's alone.
            second_path: false,
            config: DemoConfig::demo(),
            dynamodb_endpoint: None,
            table: "alarm-skill-local".to_string(),
            frozen_clock: false,
            redelivery_interval: Some(Duration::from_secs(2)),
            manufacturer_name: "Acme Security".to_string(),
            directive_budget: None,
            pepper: None,
            metrics: false,
            outbox: crate::domain::ports::store::OutboxPolicy::default(),
            capacity: None,
            step_up: crate::edges::management::StepUp::default(),
            renew_budget: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("dev issuer: {0}")]
    Issuer(String),
    #[error("config: {0}")]
    Config(String),
}

pub struct LocalStack {
    pub addr: SocketAddr,
    pub base_url: String,
    pub sim: Arc<Simulator>,
    pub panel_api: Arc<RestartableServer>,
    /// The monitoring center's DC-09 receiver.
    pub receiver: Arc<Dc09Receiver>,
    pub store: Arc<dyn Store>,
    /// Set when the embedded store is in use, for inspecting everything it holds.
    pub memory: Option<Arc<MemoryStore>>,
    /// The DynamoDB table, when `dynamodb_endpoint` is set.
    pub table: String,
    pub skill: Arc<Skill>,
    pub panels: Arc<dyn PanelCloud>,
    pub clock: Arc<AdjustableClock>,
    pub keyring: Arc<Keyring>,
    pub issuer: Arc<DevIssuer>,
    pub dev_alexa: Arc<DevAlexa>,
    /// What the household's Echo devices would play, as the webhook reported it.
    pub dev_echo: Arc<echo_dev::DevEcho>,
    /// Google's token URL and HomeGraph, as the webhook reached them.
    pub dev_google: Arc<DevGoogle>,
    /// The secret the simulator signs webhook events with (tests sign their own events).
    pub webhook_secret: Secret,
    /// The metrics lines the directive handler wrote, with `Options::metrics`.
    pub metrics: Option<crate::domain::metrics::Lines>,
    /// The skill's second path to the center, recording every frame it sends.
    pub second_path: Arc<Dc09Sender>,
    shutdown: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    /// The temporary monitoring directory this stack made itself (no `monitoring_dir` given):
    /// removed with the stack.
    temp_monitoring_dir: Option<std::path::PathBuf>,
}

#[derive(Clone)]
struct Invoke {
    skill: Arc<Skill>,
    budget: Option<Duration>,
}

async fn invoke(
    State(inv): State<Invoke>,
    crate::common::http_errors::Body(body): crate::common::http_errors::Body,
) -> impl IntoResponse {
    let reply = inv
        .skill
        .handle_bytes(&body, Deadline::for_directive(inv.budget))
        .await;
    ([(header::CONTENT_TYPE, "application/json")], Json(reply))
}

async fn bind(port: u16) -> Result<TcpListener, LocalError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr)
        .await
        .map_err(|e| LocalError::Bind(addr, e))
}

fn random_secret() -> Secret {
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    Secret::new(hex::encode(bytes))
}

/// Writes the configured members and their (hashed) codes into the store, replacing members
/// of the same id and keeping anything else the store already holds.
async fn seed(
    store: &dyn Store,
    keyring: &Keyring,
    config: &DemoConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), LocalError> {
    for h in &config.households {
        let mut profile = store.household(&h.account).await?.profile;
        for seed in &h.members {
            let hash = |pin: &Option<String>| {
                pin.as_ref()
                    .map(|p| hash_code(keyring, &h.account, &seed.id, &Pin::new(p.clone())))
            };
            let member = Member {
                id: seed.id.clone(),
                name: seed.name.clone(),
                user_number: seed.user_number,
                panel_user_id: None,
                voice_pin: hash(&seed.voice_pin),
                duress_pin: hash(&seed.duress_pin),
            };
            profile.members.retain(|m| m.id != seed.id);
            profile.members.push(member);
        }
        if let Some(p) = h.pinless_disarm {
            profile.settings.pinless_disarm = p;
        }
        // A seeded household is defined in full by the config, like an imported one.
        if !h.members.is_empty() {
            profile.members_synced_at = Some(now);
        }
        store.save_profile(&h.account, &profile).await?;
        // The config is the panel cloud's own account list (the simulator serves it): its
        // panels are confirmed in the account, as an import from the cloud confirms them.
        // Their monitoring links come with the cloud's first answer (discovery, a read).
        let panels: Vec<ConfirmedPanel> = config
            .accounts
            .iter()
            .filter(|a| a.id == h.account)
            .flat_map(|a| a.panels.iter().map(|p| ConfirmedPanel::id_only(&p.id)))
            .collect();
        store.confirm_panels(&h.account, &panels, now).await?;
    }
    Ok(())
}

/// The household app signs in with the dev issuer's authorization-code flow.
fn household_app(base_url: &str) -> crate::edges::webapp::AppConfig {
    crate::edges::webapp::AppConfig {
        authorize_url: format!("{base_url}/oauth2/authorize"),
        token_url: format!("{base_url}/oauth2/token"),
        client_id: AUDIENCE.to_string(),
        scope: "openid".to_string(),
        redirect_uri: None,
    }
}

/// One re-delivery pass as the local stack runs it: up to 25 records, 30 s at most.
async fn redeliver(
    store: &dyn Store,
    panels: &dyn PanelCloud,
    keyring: &Keyring,
    clock: &dyn Clock,
    receiver: &dyn AlarmReceiver,
) -> Result<Report, StoreError> {
    redelivery::Worker {
        store,
        panels,
        keys: redelivery::Keys::Fixed(keyring),
        v2_seals: Default::default(),
        clock,
        until: Deadline::after(Duration::from_secs(30)),
        receiver: Some(receiver),
    }
    .run_once(25)
    .await
}

impl LocalStack {
    pub async fn start(opts: Options) -> Result<LocalStack, LocalError> {
        crate::adapters::account_link::install_crypto_provider();
        let listener = bind(opts.port).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| LocalError::Bind(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port)), e))?;
        let base_url = format!("http://{addr}");
        let clock = Arc::new(if opts.frozen_clock {
            AdjustableClock::frozen(chrono::Utc::now())
        } else {
            AdjustableClock::running()
        });
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| LocalError::Http(e.to_string()))?;

        // Secrets: random per start unless given, so nothing secret is ever written down.
        let pepper = opts
            .pepper
            .clone()
            .or_else(|| std::env::var("PEPPER").ok().map(Secret::new));
        let keyring = Arc::new(match pepper {
            Some(spec) => {
                Keyring::from_json(&spec).map_err(|e| LocalError::Config(format!("PEPPER: {e}")))?
            }
            None => Keyring::random(),
        });
        // Given, the key lets an outside process (scripts/measure-bootstrap) call the simulator.
        let panel_api_key = std::env::var("PANEL_API_KEY")
            .map(Secret::new)
            .unwrap_or_else(|_| random_secret());
        let webhook_secret = random_secret();
        let lwa_secret = random_secret();

        let (store, memory): (Arc<dyn Store>, Option<Arc<MemoryStore>>) =
            match &opts.dynamodb_endpoint {
                Some(endpoint) => {
                    let client = match &opts.capacity {
                        Some(meter) => {
                            crate::local::capacity::local_client_metered(endpoint, meter.clone())
                        }
                        None => crate::adapters::store::dynamodb::local_client(endpoint),
                    };
                    crate::adapters::store::dynamodb::create_table(&client, &opts.table).await?;
                    (
                        Arc::new(
                            crate::adapters::store::dynamodb::DynamoStore::new(
                                client,
                                opts.table.clone(),
                            )
                            .with_outbox_policy(opts.outbox),
                        ),
                        None,
                    )
                }
                None => {
                    let m = Arc::new(MemoryStore::with_outbox_policy(opts.outbox));
                    (m.clone(), Some(m))
                }
            };
        seed(store.as_ref(), &keyring, &opts.config, clock.now()).await?;

        let household_app = household_app(&base_url);
        let issuer_key = dev_keys::rsa_2048(dev_keys::Role::Issuer)
            .map_err(|e| LocalError::Issuer(e.to_string()))?;
        let issuer = DevIssuer::with_key(&base_url, AUDIENCE, issuer_key);
        // The issuer redirects only to what is registered: the app's own URL, and the one it
        // is configured with, if any.
        let issuer = Arc::new(match &household_app.redirect_uri {
            Some(uri) => issuer.with_redirect_uri(uri),
            None => issuer,
        });
        // One app client for directives and management, told apart by scope, as the dev
        // issuer mints them; the production verifier enforces the same rules as on AWS.
        let oauth = OAuthConfig::cognito(
            &base_url,
            &format!("{base_url}/.well-known/jwks.json"),
            AUDIENCE,
        );
        let tokens = Arc::new(JwksVerifier::new(&oauth, http.clone()));

        // The monitoring center first: the panel cloud's DC-09 link needs its address.
        let dc09_key = opts
            .dc09_key
            .as_ref()
            .map(Key::from_hex)
            .transpose()
            .map_err(|e| LocalError::Config(format!("DC-09 key: {e}")))?;
        let temp_monitoring_dir = opts.monitoring_dir.is_none().then(|| {
            std::env::temp_dir().join(format!(
                "alarm-skill-monitoring-{}",
                uuid::Uuid::new_v4().simple()
            ))
        });
        let monitoring_dir = opts
            .monitoring_dir
            .clone()
            .or_else(|| temp_monitoring_dir.clone())
            .unwrap_or_default();
        let center = Arc::new(
            MonitoringCenter::new(
                subscribers(&opts.config.accounts),
                dc09_key.clone(),
                dyn_clock.clone(),
            )
            .with_journal(&monitoring_dir.join("receiver"))
            .map_err(|e| LocalError::Config(format!("monitoring journal: {e}")))?,
        );
        let receiver_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, opts.receiver_port));
        let receiver = Dc09Receiver::start(receiver_addr, center.clone())
            .await
            .map_err(|e| LocalError::Bind(receiver_addr, e))?;
        // Before the link starts, so not one queued frame gets through.
        if opts.receiver_mode != ReceiverMode::None {
            receiver
                .set_mode(opts.receiver_mode)
                .await
                .map_err(|e| LocalError::Bind(receiver_addr, e))?;
        }
        // The two paths are two lines of one account: the cloud's link keeps its own line
        // (`account_prefix`), the skill's is SECOND_PATH_LINE, so the center tells them apart.
        let second_path = opts.second_path.then(|| SecondPath {
            receiver: receiver.addr(),
            receiver_number: Some("1".into()),
            key_ref: dc09_key.is_some().then(|| SECOND_PATH_KEY_REF.to_string()),
        });
        // The skill's own line to the same center: it knows the key by the name the cloud
        // reports, as production reads it from Secrets Manager.
        let sender = Arc::new(
            match &opts.dc09_key {
                Some(k) => Dc09Sender::new(dyn_clock.clone(), None)
                    .with_key(SECOND_PATH_KEY_REF, k.clone()),
                None => Dc09Sender::new(dyn_clock.clone(), None),
            }
            .recording(),
        );
        let link = Transmitter::start(
            LinkConfig {
                key: dc09_key,
                queue_dir: Some(monitoring_dir.join("cloud")),
                ..LinkConfig::new(receiver.addr())
            },
            dyn_clock.clone(),
        )
        .map_err(|e| LocalError::Config(format!("DC-09 queue: {e}")))?;
        let sim = Arc::new(
            Simulator::new(&opts.config.accounts, clock.clone(), panel_api_key.clone())
                .with_webhook(
                    format!("{base_url}/webhooks/panel"),
                    webhook_secret.clone(),
                    http.clone(),
                )
                .with_monitoring(center, link)
                .with_second_path(second_path),
        );
        let panel_api = RestartableServer::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, opts.panel_port)),
            panel_api_routes(sim.clone()),
        )
        .await
        .map_err(|e| {
            LocalError::Bind(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.panel_port)), e)
        })?;
        let panels: Arc<dyn PanelCloud> = Arc::new(
            HttpPanelCloud::new(&format!("http://{}", panel_api.addr()), panel_api_key)
                .map_err(|e| LocalError::Http(e.to_string()))?,
        );

        let dev_alexa = Arc::new(DevAlexa::new(LWA_CLIENT_ID, lwa_secret.clone()));
        let lwa = Arc::new(LwaClient::new(
            format!("{base_url}/dev/lwa/token"),
            LWA_CLIENT_ID.to_string(),
            lwa_secret,
            AlexaRegion::Na,
            store.clone(),
            keyring.clone(),
            dyn_clock.clone(),
            http.clone(),
        ));
        let gateway = Arc::new(HttpEventGateway::new(
            format!("{base_url}/dev/gateway/v3/events"),
            lwa.clone(),
            http.clone(),
        ));
        let google_key = dev_keys::rsa_2048(dev_keys::Role::GoogleServiceAccount)
            .map_err(|e| LocalError::Issuer(e.to_string()))?;
        let dev_google =
            Arc::new(DevGoogle::with_key(&base_url, google_key).map_err(LocalError::Issuer)?);
        let service_account = ServiceAccount::from_json(dev_google.key_file(), None)
            .map_err(|e| LocalError::Config(e.to_string()))?;
        let homegraph = Arc::new(HomeGraph::new(
            service_account,
            &format!("{base_url}{}", google_dev::HOMEGRAPH_PATH),
            http.clone(),
        ));
        let renew_budget = opts
            .renew_budget
            .unwrap_or(crate::domain::skill::RENEW_BUDGET);
        let dev_echo = Arc::new(echo_dev::DevEcho::new());
        let webhook = Arc::new(WebhookService {
            store: store.clone(),
            gateway,
            secret: webhook_secret.clone(),
            clock: dyn_clock.clone(),
            manufacturer_name: opts.manufacturer_name.clone(),
            renewals: crate::domain::skill::Renewals::with_budget(renew_budget),
            homegraph: Some(homegraph),
            echo_alerts: dev_echo.clone(),
        });

        let settings = SkillSettings {
            manufacturer_name: opts.manufacturer_name.clone(),
            renew_budget,
            ..SkillSettings::default()
        };
        let management = Arc::new(ManagementService {
            store: store.clone(),
            tokens: tokens.clone(),
            keyring: keyring.clone(),
            keyring_source: None,
            clock: dyn_clock.clone(),
            throttle: settings.throttle.clone(),
            enrol_limit: EnrolLimit::default(),
            step_up: opts.step_up,
            provisioning: Some(crate::domain::provisioning::Provisioner {
                store: store.clone(),
                panels: panels.clone(),
                clock: dyn_clock.clone(),
            }),
        });
        // The same wiring as production's: the handler's ports counted by its metrics.
        let (metrics, metric_lines) = match opts.metrics {
            true => {
                let (m, lines) = crate::domain::metrics::Metrics::in_memory("AlarmSkill/local");
                (Some(Arc::new(m)), Some(lines))
            }
            false => (None, None),
        };
        let deps = SkillDeps {
            store: match &metrics {
                Some(m) => m.store(store.clone()),
                None => store.clone(),
            },
            panels: match &metrics {
                Some(m) => m.panels(panels.clone()),
                None => panels.clone(),
            },
            tokens,
            grants: lwa,
            keyring: keyring.clone(),
            clock: dyn_clock.clone(),
        };
        let skill = Skill::new(deps, settings).with_receiver(sender.clone());
        let skill = Arc::new(match metrics {
            Some(m) => skill.with_metrics(m),
            None => skill,
        });

        let app = Router::new()
            .route(
                INVOKE_PATH,
                post(invoke).with_state(Invoke {
                    skill: skill.clone(),
                    budget: opts.directive_budget,
                }),
            )
            .merge(console::routes(base_url.clone(), sim.clone()))
            .merge(crate::edges::webapp::routes(Some(household_app)))
            .merge(dev_issuer::routes(issuer.clone()))
            .merge(control_routes(sim.clone(), panel_api.clone()))
            .merge(monitoring_routes(sim.clone(), receiver.clone()))
            .merge(crate::edges::management::routes(management))
            .merge(crate::edges::webhook::handler::routes(webhook))
            .merge(alexa_dev::routes(dev_alexa.clone()))
            .merge(echo_dev::routes(dev_echo.clone()))
            .merge(google_dev::routes(dev_google.clone()))
            .merge(crate::edges::google_fulfillment::routes(
                Arc::new(crate::edges::google_fulfillment::Fulfillment::new(
                    skill.clone(),
                    true,
                )),
                opts.directive_budget,
            ));
        let app = crate::common::http_errors::json_errors(app);

        let (tx, rx) = oneshot::channel::<()>();
        let mut tasks = vec![simulator::http::serve_until(
            listener,
            app,
            rx,
            "local stack server",
        )];
        if !opts.frozen_clock {
            let s = sim.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(250));
                loop {
                    every.tick().await;
                    s.tick();
                }
            }));
        }
        if let Some(interval) = opts.redelivery_interval {
            let (st, pa, kr, ck, rc) = (
                store.clone(),
                panels.clone(),
                keyring.clone(),
                dyn_clock.clone(),
                sender.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(interval);
                loop {
                    every.tick().await;
                    match redeliver(st.as_ref(), pa.as_ref(), &kr, ck.as_ref(), rc.as_ref()).await {
                        Ok(r) if r.examined > 0 => tracing::info!(?r, "redelivery pass"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "redelivery pass failed"),
                    }
                }
            }));
        }
        Ok(LocalStack {
            addr,
            base_url,
            sim,
            panel_api,
            receiver,
            store,
            memory,
            table: opts.table.clone(),
            skill,
            panels,
            clock,
            keyring,
            issuer,
            dev_alexa,
            dev_echo,
            dev_google,
            webhook_secret,
            metrics: metric_lines,
            second_path: sender,
            shutdown: Some(tx),
            tasks,
            temp_monitoring_dir,
        })
    }

    /// One pass of the duress re-delivery worker, as the background loop runs it.
    pub async fn redeliver(&self) -> Result<Report, StoreError> {
        redeliver(
            self.store.as_ref(),
            self.panels.as_ref(),
            &self.keyring,
            self.clock.as_ref(),
            self.second_path.as_ref(),
        )
        .await
    }

    /// Runs until Ctrl-C.
    pub async fn wait(mut self) {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
        }
        self.shutdown().await;
    }

    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.panel_api.stop().await;
        self.receiver.stop();
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.panel_api.signal_stop();
        self.receiver.stop();
        for t in &self.tasks {
            t.abort();
        }
        if let Some(dir) = &self.temp_monitoring_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
