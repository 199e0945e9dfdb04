//! Directive handling: the one handler that the Lambda, the local stack, the tests and the
//! benchmarks all run. Written against the ports (store, panel cloud, token verifier, grant
//! exchange), never against an adapter.

mod accept_grant;
mod arm;
mod disarm;
mod discover;
pub mod endpoints;
mod report_state;
mod skill_events;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};

use serde_json::Value;

use crate::common::clock::Clock;
use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::domain::ports::account_link::{Identity, TokenError, TokenUse, TokenVerifier};
use crate::domain::ports::lwa::GrantExchange;
use crate::domain::ports::panel::{ArmRefusal, Panel, PanelCloud, PanelError, ZoneRef};
use crate::domain::ports::store::{ConfirmedPanel, Store};
use crate::domain::voice_codes::{Keyring, ThrottlePolicy};
use crate::wire::alexa::{self, Directive, EndpointRef, ErrorType, Message, NamedEndpoint, Parsed};

pub use arm::{ArmFailure, Armed, exit_delay};
pub use disarm::{DisarmOutcome, OUTBOX_GRACE, OWNERSHIP_TTL};

/// Everything the handler talks to, as ports.
#[derive(Clone)]
pub struct SkillDeps {
    pub store: Arc<dyn Store>,
    pub panels: Arc<dyn PanelCloud>,
    pub tokens: Arc<dyn TokenVerifier>,
    pub grants: Arc<dyn GrantExchange>,
    pub keyring: Arc<Keyring>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone)]
pub struct SkillSettings {
    /// `manufacturerName` in discovery (the vendor's brand).
    pub manufacturer_name: String,
    pub throttle: ThrottlePolicy,
    /// What a renewal of a panel's confirmation may take ([`RENEW_BUDGET`]).
    pub renew_budget: std::time::Duration,
}

impl Default for SkillSettings {
    fn default() -> Self {
        SkillSettings {
            manufacturer_name: "Alarm Skill".to_string(),
            throttle: ThrottlePolicy::default(),
            renew_budget: RENEW_BUDGET,
        }
    }
}

pub struct Skill {
    deps: SkillDeps,
    settings: SkillSettings,
    /// One EMF line per directive (crate::domain::metrics); `None` writes none.
    metrics: Option<Arc<crate::domain::metrics::Metrics>>,
    /// Where a newer keyring comes from when a stored code names an unknown pepper (rotation on
    /// a warm function); `None` keeps `deps.keyring`.
    keyring_source: Option<Arc<crate::domain::voice_codes::KeyringSource>>,
    /// Panels this instance renewed the confirmation of lately: not on every ReportState.
    renewed: Renewals,
    /// The second path to households' monitoring centers (crate::domain::ports::monitoring);
    /// `None` sends nothing there.
    receiver: Option<Arc<dyn crate::domain::ports::monitoring::AlarmReceiver>>,
}

/// Panels an instance wrote a confirmation for lately (`{account}\u{1f}{panel}` → when), so an
/// answer of the cloud renews a panel's confirmation ([`OWNERSHIP_TTL`]) at most once per
/// [`RENEW_EVERY`] per instance, whatever the traffic. Bounded by [`RENEWED_MAX`].
pub struct Renewals {
    memo: Mutex<HashMap<String, DateTime<Utc>>>,
    /// What one renewal write may take ([`RENEW_BUDGET`] unless configured).
    budget: std::time::Duration,
}

impl Default for Renewals {
    fn default() -> Self {
        Renewals::with_budget(RENEW_BUDGET)
    }
}

impl Renewals {
    /// Renewals whose writes may take `budget` (still never past a directive's deadline). The
    /// local stack's tests that count the table's calls give them room a loaded machine needs:
    /// a renewal cut at 300 ms is a write missing from the count.
    pub fn with_budget(budget: std::time::Duration) -> Self {
        Renewals {
            memo: Mutex::default(),
            budget,
        }
    }

    fn key(account: &str, panel: &str) -> String {
        format!("{account}\u{1f}{panel}")
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        // A map of timestamps stays consistent whatever panicked while holding it.
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the panel's confirmation (and the link reported with it) at `now`, unless this
    /// instance did within [`RENEW_EVERY`]. Best effort, within its budget and `deadline`.
    pub async fn renew(
        &self,
        store: &dyn Store,
        account: &str,
        panel: &ConfirmedPanel,
        now: DateTime<Utc>,
        deadline: Deadline,
    ) {
        let key = Self::key(account, &panel.id);
        {
            let mut memo = self.memo();
            if memo
                .get(&key)
                .is_some_and(|at| *at <= now && now - *at < RENEW_EVERY)
            {
                return;
            }
            if memo.len() >= RENEWED_MAX {
                memo.clear();
            }
        }
        let write = store.confirm_panels(account, std::slice::from_ref(panel), now);
        let budget = self.budget.min(deadline.remaining());
        match tokio::time::timeout(budget, write).await {
            Ok(Ok(())) => {
                self.memo().insert(key, now);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the panel's confirmation"),
            Err(_) => tracing::warn!("renewing the panel's confirmation took too long"),
        }
    }

    /// What one renewal write may take.
    pub fn budget(&self) -> std::time::Duration {
        self.budget
    }

    /// The cloud said the panel is not the account's: its next answer renews at once.
    pub fn forget(&self, account: &str, panel: &str) {
        self.memo().remove(&Self::key(account, panel));
    }
}

/// How often one instance renews a panel's confirmation from the reads the cloud answers.
const RENEW_EVERY: chrono::Duration = chrono::Duration::hours(1);
/// Entries of [`Skill::renewed`] at most; past it the memo starts over (a few extra writes).
const RENEWED_MAX: usize = 4096;
/// What a renewal write may take at most: never past the directive's deadline either.
pub const RENEW_BUDGET: std::time::Duration = std::time::Duration::from_millis(300);

/// A handler's failure: the Alexa error type and the (unspoken, logged) message.
type Fail = (ErrorType, String);

impl Skill {
    pub fn new(deps: SkillDeps, settings: SkillSettings) -> Self {
        let renewed = Renewals::with_budget(settings.renew_budget);
        Skill {
            deps,
            settings,
            metrics: None,
            keyring_source: None,
            renewed,
            receiver: None,
        }
    }

    /// Verifies codes with `source`'s keyring, reloaded when a household's stored codes name a
    /// pepper it lacks (crate::domain::voice_codes::reload).
    pub fn with_keyring_source(
        mut self,
        source: Arc<crate::domain::voice_codes::KeyringSource>,
    ) -> Self {
        self.keyring_source = Some(source);
        self
    }

    /// Sends a voice attempt the panel cloud could not take to the household's monitoring
    /// center as well, when the cloud reported one for the panel (disarm.rs, "Second path").
    pub fn with_receiver(
        mut self,
        receiver: Arc<dyn crate::domain::ports::monitoring::AlarmReceiver>,
    ) -> Self {
        self.receiver = Some(receiver);
        self
    }

    /// Writes one metrics line per directive. Give it ports wrapped by the same `Metrics`
    /// (`Metrics::panels`, `Metrics::store`) to count their failures too.
    pub fn with_metrics(mut self, metrics: Arc<crate::domain::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn deps(&self) -> &SkillDeps {
        &self.deps
    }

    pub fn settings(&self) -> &SkillSettings {
        &self.settings
    }

    /// Records that the panel cloud listed these panels in the account (discovery, SYNC): what
    /// lets a disarm during a later outage still record a duress ([`OWNERSHIP_TTL`]). Best
    /// effort, in a bounded time: the listing's reply doesn't wait on it.
    pub async fn confirm_owned(&self, account: &str, panels: &[Panel]) {
        const BUDGET: std::time::Duration = std::time::Duration::from_millis(500);
        let confirmed: Vec<ConfirmedPanel> = panels.iter().map(ConfirmedPanel::from).collect();
        if confirmed.is_empty() {
            return;
        }
        let write = self
            .deps
            .store
            .confirm_panels(account, &confirmed, self.deps.clock.now());
        match tokio::time::timeout(BUDGET, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record the confirmed panels"),
            Err(_) => tracing::warn!("recording the confirmed panels took too long"),
        }
    }

    /// Reads a panel from the cloud. An answer proves the account holds the panel, so the
    /// panel's confirmation is renewed ([`OWNERSHIP_TTL`]): a household that arms and asks its
    /// state by voice keeps its duress PIN through an outage without discovering again. Arm,
    /// ReportState and Google's QUERY read through here.
    pub async fn read_panel(
        &self,
        account: &str,
        panel_id: &str,
        deadline: Deadline,
    ) -> Result<Panel, PanelError> {
        let read = self.deps.panels.panel(account, panel_id, deadline).await;
        match &read {
            Ok(panel) => self.renew(account, panel, deadline).await,
            Err(PanelError::NotFound) => self.forget_renewal(account, panel_id),
            Err(_) => {}
        }
        read
    }

    async fn renew(&self, account: &str, panel: &Panel, deadline: Deadline) {
        let now = self.deps.clock.now();
        let confirmed = ConfirmedPanel::from(panel);
        self.renewed
            .renew(self.deps.store.as_ref(), account, &confirmed, now, deadline)
            .await;
    }

    /// The cloud said the panel is not the account's: the next answer renews it again at once.
    fn forget_renewal(&self, account: &str, panel_id: &str) {
        self.renewed.forget(account, panel_id);
    }

    /// The metrics every assistant's handler writes its line to, if any.
    pub fn metrics(&self) -> Option<&Arc<crate::domain::metrics::Metrics>> {
        self.metrics.as_ref()
    }

    /// Handles a raw request body (the local stack's invocation endpoint).
    pub async fn handle_bytes(&self, raw: &[u8], deadline: Deadline) -> Value {
        // A skill event is told apart first (and never traced: it carries the linking token).
        if let Ok(v) = serde_json::from_slice::<Value>(raw) {
            if alexa::skill_event::is_skill_event(&v) {
                return self.skill_event(&v).await;
            }
            trace_received(&v);
        }
        match alexa::directive::parse_bytes(raw) {
            Ok(parsed) => self.handle_parsed(parsed, deadline).await,
            Err(e) => self.invalid(e),
        }
    }

    /// Handles a directive as Lambda delivers it. Never fails: every problem becomes a
    /// schema-valid ErrorResponse.
    /// Skill events (`AlexaSkillEvent.*`), which reach the same Lambda, are handled too.
    pub async fn handle(&self, directive: &Value, deadline: Deadline) -> Value {
        // Before the trace: an event carries the account-linking token where no directive does.
        if alexa::skill_event::is_skill_event(directive) {
            return self.skill_event(directive).await;
        }
        trace_received(directive);
        match alexa::directive::parse(directive) {
            Ok(parsed) => self.handle_parsed(parsed, deadline).await,
            Err(e) => self.invalid(e),
        }
    }

    fn invalid(&self, e: alexa::ParseError) -> Value {
        tracing::warn!(
            namespace = %e.header.namespace, name = %e.header.name,
            message_id = %e.header.message_id, error = %e.message,
            "invalid directive"
        );
        Message::error(
            &ErrorType::InvalidDirective,
            &e.message,
            e.header.correlation_token.as_deref(),
            e.endpoint_id.as_deref(),
        )
        .to_value()
    }

    async fn handle_parsed(&self, parsed: Parsed, deadline: Deadline) -> Value {
        let started = Instant::now();
        let Parsed { header, directive } = parsed;
        let correlation = header.correlation_token.as_deref();
        let endpoint_id = match &directive {
            Directive::ReportState { endpoint_id, .. }
            | Directive::Arm { endpoint_id, .. }
            | Directive::Disarm { endpoint_id, .. } => Some(endpoint_id.clone()),
            Directive::Discover { .. } | Directive::AcceptGrant { .. } => None,
        };
        let result = match directive {
            Directive::Discover { token } => Ok(self.discover(&token, deadline).await),
            Directive::ReportState { endpoint_id, token } => {
                self.report_state(correlation, &endpoint_id, &token, deadline)
                    .await
            }
            Directive::Arm {
                endpoint_id,
                token,
                target,
                bypass_all,
            } => {
                self.arm(
                    correlation,
                    &endpoint_id,
                    &token,
                    target,
                    bypass_all,
                    deadline,
                )
                .await
            }
            Directive::Disarm {
                endpoint_id,
                token,
                authorization,
            } => {
                self.disarm(correlation, &endpoint_id, &token, authorization, deadline)
                    .await
            }
            Directive::AcceptGrant { code, grantee } => {
                Ok(self.accept_grant(&code, &grantee, deadline).await)
            }
        };
        let message = match result {
            Ok(m) => m,
            // An endpointId outside the schema's pattern can't be echoed: the reply itself
            // would be invalid.
            Err((kind, text)) => Message::error(
                &kind,
                &text,
                correlation,
                endpoint_id
                    .as_deref()
                    .filter(|id| alexa::is_valid_endpoint_id(id)),
            ),
        };
        tracing::info!(
            namespace = %header.namespace,
            name = %header.name,
            message_id = %header.message_id,
            endpoint = endpoint_id.as_deref().unwrap_or(""),
            reply = %format!("{}.{}", message.event.header.namespace, message.event.header.name),
            error_type = message.event.payload.get("type").and_then(serde_json::Value::as_str).unwrap_or(""),
            elapsed_us = started.elapsed().as_micros() as u64,
            "directive handled"
        );
        if let Some(m) = &self.metrics {
            let outcome = message.event.payload.get("type").and_then(Value::as_str);
            m.directive(&header.name, outcome.unwrap_or("ok"), started.elapsed());
        }
        message.to_value()
    }

    /// Verifies an assistant's account-linking token: the household it speaks for.
    pub async fn authenticate(&self, token: &BearerToken) -> Result<Identity, TokenError> {
        self.deps.tokens.verify(token, TokenUse::Directives).await
    }

    async fn identify(&self, token: &BearerToken) -> Result<Identity, Fail> {
        let verified = self.authenticate(token).await;
        verified.map_err(|e| match e {
            TokenError::Expired => (
                ErrorType::ExpiredAuthorizationCredential,
                "the access token has expired".to_string(),
            ),
            TokenError::Invalid(why) => (
                ErrorType::InvalidAuthorizationCredential,
                format!("the access token is not valid: {why}"),
            ),
            // Alexa only ever holds the token its own account linking obtained, so a token that
            // can't drive directives (the management client's, or one without the directive
            // scope) means the link itself is unusable: every directive on it would fail for
            // good. Unlinking makes Alexa ask the user to link again, the only way to a usable
            // token; an error that sounds transient would hide that. Logged as a warning, as it
            // points at the account-linking set-up (client, scopes, OAUTH_DIRECTIVE_SCOPE).
            TokenError::WrongUse(why) => {
                tracing::warn!(reason = %why, "a token not valid for directives reached the skill");
                (
                    ErrorType::InvalidAuthorizationCredential,
                    format!("the access token is not valid for this skill: {why}"),
                )
            }
            // An outage must never unlink the user: INTERNAL_ERROR, not a credential error.
            TokenError::Unavailable(why) => {
                tracing::error!(error = %why, "token verification unavailable");
                (
                    ErrorType::InternalError,
                    "account verification is temporarily unavailable".to_string(),
                )
            }
        })
    }
}

/// The whole directive at TRACE, for debugging, with its PIN, tokens and grant code masked.
fn trace_received(directive: &Value) {
    if tracing::enabled!(tracing::Level::TRACE) {
        tracing::trace!(directive = %alexa::redact::redact(directive), "directive received");
    }
}

/// Resolves an endpointId that must name a panel (Arm, Disarm).
fn panel_target(endpoint_id: &str) -> Result<String, Fail> {
    match EndpointRef::parse(endpoint_id) {
        Some(EndpointRef::Panel { panel }) => Ok(panel),
        Some(EndpointRef::Zone { .. }) => Err((
            ErrorType::InvalidDirective,
            format!("endpoint {endpoint_id} is a sensor; it has no security panel controller"),
        )),
        None => Err(no_such_endpoint(endpoint_id)),
    }
}

fn no_such_endpoint(endpoint_id: &str) -> Fail {
    (
        ErrorType::NoSuchEndpoint,
        format!("no endpoint {endpoint_id} in this account"),
    )
}

fn named(panel_id: &str, zones: &[ZoneRef]) -> Vec<NamedEndpoint> {
    zones
        .iter()
        .map(|z| NamedEndpoint {
            friendly_name: alexa::discovery::clip(&z.name),
            endpoint_id: alexa::zone_endpoint_id(panel_id, &z.id),
        })
        .collect()
}

/// Maps a panel-cloud failure to the Alexa error a user should hear. Outages become
/// ENDPOINT_UNREACHABLE / BRIDGE_UNREACHABLE, never a credential error.
fn panel_failure(endpoint_id: &str, panel_id: &str, e: &PanelError) -> Fail {
    use ErrorType::*;
    let kind = match e {
        PanelError::NotFound => return no_such_endpoint(endpoint_id),
        PanelError::Offline => EndpointUnreachable,
        PanelError::Refused(ArmRefusal::ZonesOpen { zones }) => {
            BypassNeeded(named(panel_id, zones))
        }
        PanelError::Refused(ArmRefusal::NotReady { .. }) => NotReady,
        PanelError::Refused(ArmRefusal::AlarmActive) => UnclearedAlarm,
        PanelError::Refused(ArmRefusal::Trouble { .. }) => UnclearedTrouble,
        PanelError::Refused(ArmRefusal::UnsupportedMode) => InvalidValue,
        PanelError::Busy => EndpointBusy,
        PanelError::RateLimited => RateLimitExceeded,
        PanelError::Unreachable(_) | PanelError::Timeout | PanelError::Server(_) => {
            BridgeUnreachable
        }
        PanelError::Unauthorized | PanelError::Protocol(_) => {
            tracing::error!(error = %e, "panel cloud integration error");
            InternalError
        }
    };
    let message = match e {
        PanelError::Refused(ArmRefusal::ZonesOpen { .. }) => {
            "open zones must be bypassed before arming".to_string()
        }
        PanelError::Refused(ArmRefusal::NotReady { zones }) => format!(
            "zones that cannot be bypassed are open: {}",
            zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        PanelError::Refused(ArmRefusal::Trouble { conditions }) => {
            format!("uncleared trouble: {}", conditions.join(", "))
        }
        other => other.to_string(),
    };
    (kind, message)
}

fn find_zone<'a>(panel: &'a Panel, zone: &str) -> Option<&'a crate::domain::ports::panel::Zone> {
    panel.zone(zone)
}
