//! reqwest adapter for the panel cloud contract (docs/panel-api.md).
//!
//! - One `reqwest::Client` per process: its pool keeps connections to the panel cloud open
//!   between directives of a warm Lambda.
//! - Every attempt is bounded by the directive's [`Deadline`].
//! - Reads and requests carrying a `request_id` are retried on transient failures, because the
//!   cloud answers a repeated request id with the first result. `notify` has no request id and
//!   is retried only when the connection was refused, i.e. when nothing was sent.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::common::deadline::Deadline;
use crate::common::secret::Secret;
use crate::domain::ports::monitoring::MonitoringLink;
use crate::domain::ports::panel::{
    ArmOutcome, ArmRefusal, ArmRequest, DisarmRequest, Notice, Panel, PanelCloud, PanelError,
    SignalRequest, UserList, ZoneRef,
};

/// No single attempt may take more than this, so a hung connection still leaves time to retry.
const ATTEMPT_CAP: Duration = Duration::from_millis(3_000);
/// Below this much remaining time another attempt can't finish; give up and answer Alexa.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);
const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct HttpPanelCloud {
    base: Url,
    api_key: Secret,
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("panel cloud base URL is invalid: {0}")]
    Url(#[from] url::ParseError),
    #[error("panel cloud base URL cannot have path segments appended")]
    CannotBeABase,
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// GETs and POSTs with a request id: the cloud deduplicates them.
    Idempotent,
    /// Only when the request never left (connection refused).
    ConnectOnly,
}

#[derive(Serialize)]
struct Empty {}

impl HttpPanelCloud {
    pub fn new(base_url: &str, api_key: Secret) -> Result<Self, ClientBuildError> {
        let mut base = Url::parse(base_url)?;
        if base.cannot_be_a_base() {
            return Err(ClientBuildError::CannotBeABase);
        }
        // Segments are appended below; a trailing slash would leave an empty segment.
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(1_500))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("alarm-skill/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpPanelCloud {
            base,
            api_key,
            client,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            // Each segment is percent-encoded, so an account id can't add path components.
            segs.extend(segments);
        }
        url
    }

    /// `POST /v1/accounts/{account}/panels/{panel}/{action}` with `request`, retried as
    /// idempotent: arm, disarm and signals all go through here, so they are sent alike.
    async fn post_to_panel<B: Serialize, T: DeserializeOwned>(
        &self,
        (account, panel, action): (&str, &str, &str),
        request: &B,
        deadline: Deadline,
    ) -> Result<T, PanelError> {
        let url = self.url(&["v1", "accounts", account, "panels", panel, action]);
        self.call(
            Method::POST,
            url,
            Some(request),
            Retry::Idempotent,
            deadline,
        )
        .await
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        retry: Retry,
        deadline: Deadline,
    ) -> Result<T, PanelError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.remaining();
            if remaining < MIN_ATTEMPT {
                return Err(PanelError::Timeout);
            }
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(self.api_key.expose())
                .timeout(remaining.min(ATTEMPT_CAP));
            if let Some(b) = body {
                req = req.json(b);
            }
            let result = match req.send().await {
                Ok(resp) => read(resp).await,
                Err(e) => Err(transport_error(&e)),
            };
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retryable = match retry {
                Retry::Idempotent => err.0.is_transient(),
                Retry::ConnectOnly => err.1,
            };
            if !retryable || attempt >= MAX_ATTEMPTS {
                return Err(err.0);
            }
            let backoff =
                Duration::from_millis(50 * 2u64.pow(attempt - 1) + rand::rng().random_range(0..50));
            if deadline.remaining() < backoff + MIN_ATTEMPT {
                return Err(err.0);
            }
            tracing::debug!(attempt, error = %err.0, "retrying panel cloud call");
            tokio::time::sleep(backoff).await;
        }
    }
}

/// The error, and whether the request certainly never reached the server.
type AttemptError = (PanelError, bool);

fn transport_error(e: &reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        (PanelError::Timeout, false)
    } else if e.is_connect() {
        (PanelError::Unreachable("connection failed".into()), true)
    } else {
        (PanelError::Unreachable(e.to_string()), false)
    }
}

async fn read<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, AttemptError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| (transport_error(&e).0, false))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            (
                PanelError::Protocol(format!("bad {status} body: {e}")),
                false,
            )
        });
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = body["error"].as_str().unwrap_or("").to_string();
    let err = match (status, code.as_str()) {
        // Only the contract's own answer means "no such panel in this account". Any other 404
        // (a load balancer's, a mis-routed path, a half-deployed cloud) is an outage: treating
        // it as NotFound would tell Alexa the panel is gone and drop a pending duress.
        (StatusCode::NOT_FOUND, PANEL_NOT_FOUND) => PanelError::NotFound,
        (StatusCode::NOT_FOUND, _) => PanelError::Server(status.as_u16()),
        (StatusCode::SERVICE_UNAVAILABLE, "panel_offline") => PanelError::Offline,
        (StatusCode::CONFLICT, "busy") => PanelError::Busy,
        (StatusCode::CONFLICT, _) => match serde_json::from_value::<ArmRefusal>(body) {
            Ok(refusal) => PanelError::Refused(refusal),
            Err(_) => PanelError::Protocol(format!("unknown 409 error {code:?}")),
        },
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => PanelError::Unauthorized,
        (StatusCode::TOO_MANY_REQUESTS, _) => PanelError::RateLimited,
        (s, _) if s.is_server_error() => PanelError::Server(s.as_u16()),
        (s, _) => PanelError::Protocol(format!("status {s}")),
    };
    Err((err, false))
}

#[derive(serde::Deserialize)]
struct PanelList {
    panels: Vec<WirePanel>,
}

#[derive(serde::Deserialize)]
struct WireArmOutcome {
    panel: WirePanel,
    bypassed: Vec<ZoneRef>,
}

/// A panel as the cloud sent it, its monitoring details read on their own: details off the
/// contract's formats are dropped, with a warning naming the panel and the field, rather than
/// failing the call. Without them the household keeps the one path it had (docs/panel-api.md,
/// "Monitoring details"); failing would cost it its panel.
struct WirePanel(Panel);

impl<'de> serde::Deserialize<'de> for WirePanel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::<String, Value>::deserialize(d)?;
        let monitoring = fields.remove("monitoring");
        let mut panel: Panel =
            serde_json::from_value(Value::Object(fields)).map_err(serde::de::Error::custom)?;
        panel.monitoring = monitoring.and_then(|m| monitoring_link(&panel.id, m));
        Ok(WirePanel(panel))
    }
}

/// The panel's monitoring details if they keep to the contract; otherwise `None`, logged by
/// field name only (never a value: `key_ref` names a secret).
fn monitoring_link(panel: &str, details: Value) -> Option<MonitoringLink> {
    if details.is_null() {
        return None;
    }
    let off = match shape_problem(&details) {
        Some(field) => field,
        None => match serde_json::from_value::<MonitoringLink>(details) {
            Ok(link) => match link.off_format() {
                None => return Some(link),
                Some(field) => field,
            },
            Err(_) => "monitoring",
        },
    };
    tracing::warn!(
        panel,
        field = off,
        "panel cloud sent monitoring details off the contract; ignored, the panel has no second path"
    );
    None
}

/// The first field of the details that is missing or of the wrong type.
fn shape_problem(details: &Value) -> Option<&'static str> {
    let Some(o) = details.as_object() else {
        return Some("monitoring");
    };
    let required = ["receiver", "account", "line"];
    let optional = ["receiver_number", "key_ref"];
    required
        .into_iter()
        .find(|f| !o.get(*f).is_some_and(Value::is_string))
        .or_else(|| {
            optional
                .into_iter()
                .find(|f| o.get(*f).is_some_and(|v| !(v.is_string() || v.is_null())))
        })
}

/// The contract's error code for a panel that is not in the account.
const PANEL_NOT_FOUND: &str = "panel_not_found";

/// A signal or notice counts as delivered only on an explicit `{"acknowledged": true}`: an empty
/// or negative body from a proxy or a half-implemented cloud must keep a duress pending.
#[derive(serde::Deserialize)]
struct Ack {
    acknowledged: bool,
}

impl Ack {
    fn check(self) -> Result<(), PanelError> {
        if self.acknowledged {
            Ok(())
        } else {
            Err(PanelError::Protocol(
                "the panel cloud did not acknowledge".into(),
            ))
        }
    }
}

#[async_trait::async_trait]
impl PanelCloud for HttpPanelCloud {
    async fn panels(&self, account: &str, deadline: Deadline) -> Result<Vec<Panel>, PanelError> {
        let url = self.url(&["v1", "accounts", account, "panels"]);
        let list: PanelList = self
            .call::<Empty, _>(Method::GET, url, None, Retry::Idempotent, deadline)
            .await?;
        Ok(list.panels.into_iter().map(|p| p.0).collect())
    }

    async fn panel(
        &self,
        account: &str,
        panel: &str,
        deadline: Deadline,
    ) -> Result<Panel, PanelError> {
        let url = self.url(&["v1", "accounts", account, "panels", panel]);
        let panel: WirePanel = self
            .call::<Empty, _>(Method::GET, url, None, Retry::Idempotent, deadline)
            .await?;
        Ok(panel.0)
    }

    async fn arm(
        &self,
        account: &str,
        panel: &str,
        request: &ArmRequest,
        deadline: Deadline,
    ) -> Result<ArmOutcome, PanelError> {
        let outcome: WireArmOutcome = self
            .post_to_panel((account, panel, "arm"), request, deadline)
            .await?;
        Ok(ArmOutcome {
            panel: outcome.panel.0,
            bypassed: outcome.bypassed,
        })
    }

    async fn disarm(
        &self,
        account: &str,
        panel: &str,
        request: &DisarmRequest,
        deadline: Deadline,
    ) -> Result<Panel, PanelError> {
        let panel: WirePanel = self
            .post_to_panel((account, panel, "disarm"), request, deadline)
            .await?;
        Ok(panel.0)
    }

    async fn signal(
        &self,
        account: &str,
        panel: &str,
        request: &SignalRequest,
        deadline: Deadline,
    ) -> Result<(), PanelError> {
        let ack: Ack = self
            .post_to_panel((account, panel, "signals"), request, deadline)
            .await?;
        ack.check()
    }

    async fn notify(
        &self,
        account: &str,
        notice: &Notice,
        deadline: Deadline,
    ) -> Result<(), PanelError> {
        let url = self.url(&["v1", "accounts", account, "notifications"]);
        let ack: Ack = self
            .call(
                Method::POST,
                url,
                Some(notice),
                Retry::ConnectOnly,
                deadline,
            )
            .await?;
        ack.check()
    }

    async fn users(&self, account: &str, deadline: Deadline) -> Result<UserList, PanelError> {
        let url = self.url(&["v1", "accounts", account, "users"]);
        self.call::<Empty, _>(Method::GET, url, None, Retry::Idempotent, deadline)
            .await
    }

    /// The cloud's origin: two deployments' clouds never share a breaker.
    fn breaker_key(&self) -> String {
        self.base.origin().ascii_serialization()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_percent_encoded_into_one_segment() {
        let c = HttpPanelCloud::new("http://127.0.0.1:1/api/", Secret::new("k")).unwrap();
        let url = c.url(&["v1", "accounts", "../admin", "panels"]);
        assert_eq!(url.path(), "/api/v1/accounts/..%2Fadmin/panels");
    }
}
