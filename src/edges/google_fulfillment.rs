//! The fulfillment URL: Google's intents translated onto the assistant-neutral core
//! ([`Skill::disarm_panel`], [`Skill::arm_panel`]), and the core's outcomes translated back.
//!
//! A disarm runs the very path an Alexa Disarm runs, so everything a duress PIN must share with
//! the normal PIN (reply, work, writes, panel call, audit, counters) holds here by construction.
//! This module only decides what Google hears:
//! - no PIN yet: `challengeNeeded`/`pinNeeded` (Google then asks the user and sends it again);
//! - a right or duress PIN: the same SUCCESS with the panel's states;
//! - a wrong PIN: `challengeNeeded`/`challengeFailedPinNeeded`, so Google asks again;
//! - every code during a lockout (and the wrong code that starts it): `tooManyFailedAttempts`,
//!   one reply for a right, wrong or duress code (a duress still raises its silent alarm);
//! - an attempt that could not be recorded: `transientError`, for every code alike;
//! - a command the panel cloud has not answered within [`ANSWER_BUDGET`]: `PENDING`, its result
//!   following by Report State (the panel's webhook). A disarm is handed to the re-delivery
//!   worker, which carries it out from its recorded decision (crate::domain::redelivery), so
//!   nothing relies on this process running on after the reply; the same for every code.
//!
//! Never an HTTP error but 401 for a token that is certainly bad (Google then refreshes it); an
//! outage of the verifier or the store is a `transientError`, never an `authFailure`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Map, Value, json};

use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::domain::google_devices;
use crate::domain::ports::account_link::TokenError;
use crate::domain::ports::panel::{ArmMode, ArmRefusal, ArmState, Panel, PanelError};
use crate::domain::skill::{ArmFailure, DisarmOutcome, Skill};
use crate::wire::devices::EndpointRef;
use crate::wire::google::request::{self, ArmDisarm, Execution, Intent, Request};
use crate::wire::google::response::{self, Outcome, challenge, code};

pub const PATH: &str = "/google/fulfillment";

/// Device × execution pairs one EXECUTE may ask for. A household has a panel or two, and Google
/// sends one ArmDisarm per panel: more is not a household's request. Past it the whole request
/// is a `protocolError`, before any work, so no token holder can make one request fan out.
pub const MAX_EXECUTE_PAIRS: usize = 4;
/// Devices one QUERY may name (a panel's zones included), and distinct panels it may read.
pub const MAX_QUERY_DEVICES: usize = 512;
pub const MAX_QUERY_PANELS: usize = 8;
/// Under this much of the deadline left, a device still waiting in an EXECUTE is not started:
/// it answers `transientError` (Google retries), rather than run a disarm that can't finish.
const EXECUTE_FLOOR: Duration = Duration::from_millis(1_000);
/// When an EXECUTE is answered at the latest, from its arrival: Google's quality bar is 2,000 ms
/// as Google measures it, so 500 ms are left for the reply's own writes, the Lambda and the
/// network. A command the panel cloud has not answered by then is answered `PENDING`.
pub const ANSWER_BUDGET: Duration = Duration::from_millis(1_500);

/// A reply: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply { status: 200, body }
    }
}

pub struct Fulfillment {
    skill: Arc<Skill>,
    /// `willReportState` in SYNC: true when HomeGraph Report State is configured.
    will_report_state: bool,
}

impl Fulfillment {
    pub fn new(skill: Arc<Skill>, will_report_state: bool) -> Self {
        Fulfillment {
            skill,
            will_report_state,
        }
    }

    /// Handles one POST: the Authorization header's value and the raw body. Never fails.
    pub async fn handle(
        &self,
        authorization: Option<&str>,
        raw: &[u8],
        deadline: Deadline,
    ) -> Reply {
        let started = Instant::now();
        if tracing::enabled!(tracing::Level::TRACE)
            && let Ok(v) = serde_json::from_slice::<Value>(raw)
        {
            tracing::trace!(request = %crate::wire::google::redact::redact(&v), "google request received");
        }
        let parsed = request::parse_bytes(raw);
        let (request_id, intent) = match &parsed {
            Ok(r) => (r.request_id.clone(), r.intent.name()),
            Err(e) => (e.request_id.clone(), "INVALID"),
        };
        let reply = match bearer(authorization) {
            None => unauthorized(&request_id, "no bearer token"),
            Some(token) => match parsed {
                Err(e) => {
                    tracing::warn!(request_id = %e.request_id, error = %e.message, "invalid google request");
                    Reply::ok(response::error(&e.request_id, code::PROTOCOL_ERROR))
                }
                Ok(r) => {
                    let answer_by =
                        deadline.capped(ANSWER_BUDGET.saturating_sub(started.elapsed()));
                    self.handle_request(&token, r, deadline, answer_by).await
                }
            },
        };
        // A whole-request error, else the (first) command's outcome: "SUCCESS", "PENDING",
        // "challengeFailedPinNeeded", ...; the same label for a normal and a duress PIN.
        let outcome = reply.body["payload"]["errorCode"]
            .as_str()
            .or_else(|| {
                let first = &reply.body["payload"]["commands"][0];
                first["challengeNeeded"]["type"]
                    .as_str()
                    .or(first["errorCode"].as_str())
                    .or(first["status"].as_str())
            })
            .unwrap_or("ok")
            .to_string();
        tracing::info!(
            intent,
            request_id = %request_id,
            status = reply.status,
            error_code = %outcome,
            elapsed_us = started.elapsed().as_micros() as u64,
            "google intent handled"
        );
        if let Some(m) = self.skill.metrics() {
            m.directive(&format!("google.{intent}"), &outcome, started.elapsed());
        }
        reply
    }

    async fn handle_request(
        &self,
        token: &BearerToken,
        r: Request,
        deadline: Deadline,
        answer_by: Deadline,
    ) -> Reply {
        let id = r.request_id.as_str();
        let account = match self.skill.authenticate(token).await {
            Ok(identity) => identity.account,
            Err(TokenError::Unavailable(why)) => {
                // An outage must never unlink the user: not an authFailure, not a 401.
                tracing::error!(error = %why, "token verification unavailable");
                return Reply::ok(response::error(id, code::TRANSIENT_ERROR));
            }
            Err(e) => {
                if matches!(e, TokenError::WrongUse(_)) {
                    tracing::warn!(reason = %e, "a token not valid for directives reached the Google fulfillment");
                }
                return unauthorized(id, &e.to_string());
            }
        };
        match r.intent {
            Intent::Sync => Reply::ok(self.sync(id, &account, deadline).await),
            Intent::Query { devices } if devices.len() > MAX_QUERY_DEVICES => {
                tracing::warn!(
                    devices = devices.len(),
                    "google QUERY over the device limit"
                );
                Reply::ok(response::error(id, code::PROTOCOL_ERROR))
            }
            Intent::Query { devices } => {
                Reply::ok(self.query(id, &account, &devices, deadline).await)
            }
            Intent::Execute { commands } => {
                let pairs = commands.iter().fold(0usize, |n, c| {
                    n.saturating_add(c.devices.len().saturating_mul(c.executions.len().max(1)))
                });
                if pairs > MAX_EXECUTE_PAIRS {
                    tracing::warn!(pairs, "google EXECUTE over the device × execution limit");
                    return Reply::ok(response::error(id, code::PROTOCOL_ERROR));
                }
                let mut results = vec![];
                for c in commands {
                    for device in &c.devices {
                        let outcome = if deadline.remaining() < EXECUTE_FLOOR {
                            Outcome::error(code::TRANSIENT_ERROR)
                        } else {
                            self.execute_device(
                                &account,
                                device,
                                &c.executions,
                                deadline,
                                answer_by,
                            )
                            .await
                        };
                        results.push(response::command_result(
                            std::slice::from_ref(device),
                            &outcome,
                        ));
                    }
                }
                Reply::ok(response::execute(id, results))
            }
            // The user unlinked: Google sends no more intents for this account, and HomeGraph
            // must get no more reports for it (the webhook checks this) until a SYNC relinks it.
            Intent::Disconnect => match self
                .skill
                .deps()
                .store
                .set_google_linked(&account, false)
                .await
            {
                Ok(()) => {
                    tracing::info!(household = %account, "google account unlinked");
                    Reply::ok(json!({}))
                }
                // Said, so that a retry can record it; reports in the meantime are answered 404
                // by HomeGraph, which the webhook tolerates.
                Err(e) => {
                    tracing::error!(household = %account, error = %e, "google DISCONNECT: could not record the unlink");
                    Reply::ok(response::error(id, code::TRANSIENT_ERROR))
                }
            },
        }
    }

    async fn sync(&self, id: &str, account: &str, deadline: Deadline) -> Value {
        // A (re)link starts with SYNC: reports resume. Failing here, rather than answering the
        // devices, gets the SYNC retried; otherwise a relinked household would silently get no
        // Report State until some later SYNC.
        if let Err(e) = self
            .skill
            .deps()
            .store
            .set_google_linked(account, true)
            .await
        {
            tracing::error!(error = %e, "google SYNC: could not record the link");
            return response::error(id, code::TRANSIENT_ERROR);
        }
        let panels = match self.skill.deps().panels.panels(account, deadline).await {
            Ok(p) => p,
            Err(PanelError::NotFound) => vec![],
            // A panel cloud outage is not an empty household: Google would remove the devices.
            Err(e) => {
                tracing::error!(error = %e, "google SYNC: panel cloud failed");
                return response::error(id, code::TRANSIENT_ERROR);
            }
        };
        self.skill.confirm_owned(account, &panels).await;
        let manufacturer = &self.skill.settings().manufacturer_name;
        let devices = panels
            .iter()
            .flat_map(|p| google_devices::devices_of(p, manufacturer, self.will_report_state))
            .collect();
        response::sync(id, account, devices)
    }

    async fn query(
        &self,
        id: &str,
        account: &str,
        devices: &[String],
        deadline: Deadline,
    ) -> Value {
        // One panel read per panel, however many of its zones are asked about.
        let mut panels: BTreeMap<String, Result<Panel, PanelError>> = BTreeMap::new();
        let mut out = Map::new();
        for device in devices {
            let Some(target) = EndpointRef::parse(device) else {
                out.insert(
                    device.clone(),
                    response::query_error(code::DEVICE_NOT_FOUND),
                );
                continue;
            };
            let panel_id = target.panel_id().to_string();
            if !panels.contains_key(&panel_id) && panels.len() >= MAX_QUERY_PANELS {
                out.insert(device.clone(), response::query_error(code::TRANSIENT_ERROR));
                continue;
            }
            if !panels.contains_key(&panel_id) {
                let read = self.skill.read_panel(account, &panel_id, deadline).await;
                panels.insert(panel_id.clone(), read);
            }
            let entry = match panels.get(&panel_id) {
                Some(Ok(p)) => match &target {
                    EndpointRef::Panel { .. } => {
                        response::query_entry(google_devices::panel_states(p))
                    }
                    EndpointRef::Zone { zone, .. } => match p.zone(zone) {
                        Some(z) => response::query_entry(google_devices::zone_states(p, z)),
                        None => response::query_error(code::DEVICE_NOT_FOUND),
                    },
                },
                Some(Err(e)) => match panel_error(e) {
                    Outcome::Offline => response::query_entry(Map::from_iter([(
                        "online".to_string(),
                        json!(false),
                    )])),
                    other => response::query_error(other.label()),
                },
                None => response::query_error(code::TRANSIENT_ERROR),
            };
            out.insert(device.clone(), entry);
        }
        response::query(id, out)
    }

    /// Runs a command's executions on one device in order; the first failure ends them.
    async fn execute_device(
        &self,
        account: &str,
        device: &str,
        executions: &[Execution],
        deadline: Deadline,
        answer_by: Deadline,
    ) -> Outcome {
        let mut last = Outcome::error(code::PROTOCOL_ERROR);
        for e in executions {
            last = match e {
                Execution::Other { command } => {
                    tracing::info!(%command, "google command not supported");
                    Outcome::error(code::FUNCTION_NOT_SUPPORTED)
                }
                Execution::ArmDisarm(a) => {
                    self.arm_disarm(account, device, a, deadline, answer_by)
                        .await
                }
            };
            if !matches!(last, Outcome::Success(_)) {
                break;
            }
        }
        last
    }

    async fn arm_disarm(
        &self,
        account: &str,
        device: &str,
        a: &ArmDisarm,
        deadline: Deadline,
        answer_by: Deadline,
    ) -> Outcome {
        let panel_id = match EndpointRef::parse(device) {
            Some(EndpointRef::Panel { panel }) => panel,
            // A sensor has no ArmDisarm trait.
            Some(EndpointRef::Zone { .. }) => return Outcome::error(code::FUNCTION_NOT_SUPPORTED),
            None => return Outcome::error(code::DEVICE_NOT_FOUND),
        };
        if a.disarms() {
            self.disarm(account, &panel_id, a, deadline, answer_by)
                .await
        } else {
            self.arm(account, &panel_id, a.level.as_deref(), answer_by)
                .await
        }
    }

    async fn disarm(
        &self,
        account: &str,
        panel_id: &str,
        a: &ArmDisarm,
        deadline: Deadline,
        answer_by: Deadline,
    ) -> Outcome {
        let Some(pin) = &a.pin else {
            // No code yet: Google asks the user for one. A panel that certainly needs no disarm
            // is said so first; any doubt (an unreachable panel cloud included) asks for the
            // PIN, since with a PIN even an outage still relays a duress.
            return match self
                .skill
                .deps()
                .panels
                .panel(account, panel_id, deadline)
                .await
            {
                Err(PanelError::NotFound) => Outcome::error(code::DEVICE_NOT_FOUND),
                Ok(p) if !p.online => Outcome::Offline,
                Ok(p) if p.arm_state == ArmState::Disarmed => {
                    Outcome::error(code::ALREADY_DISARMED)
                }
                _ => Outcome::challenge(challenge::PIN_NEEDED),
            };
        };
        match self
            .skill
            .disarm_panel(account, panel_id, Some(pin), deadline, Some(answer_by))
            .await
        {
            DisarmOutcome::Disarmed(panel) => {
                Outcome::Success(google_devices::panel_states(&panel))
            }
            DisarmOutcome::NotAccepted => Outcome::challenge(challenge::FAILED_PIN_NEEDED),
            DisarmOutcome::LockedOut => Outcome::error(code::TOO_MANY_FAILED_ATTEMPTS),
            DisarmOutcome::Pending => Outcome::Pending,
            DisarmOutcome::NotRecorded => Outcome::error(code::TRANSIENT_ERROR),
            DisarmOutcome::NoSuchPanel => Outcome::error(code::DEVICE_NOT_FOUND),
            DisarmOutcome::PanelFailed(e) => panel_error(&e),
        }
    }

    /// Arming is the safe direction and has no outbox: the whole of it gets Google's answer
    /// time, and an arm request the cloud took without answering in it is `PENDING`.
    async fn arm(
        &self,
        account: &str,
        panel_id: &str,
        level: Option<&str>,
        deadline: Deadline,
    ) -> Outcome {
        // No level: "arm the security system" means away, the panel's full protection.
        let mode = match level.map_or(Some(ArmState::ArmedAway), google_devices::level_state) {
            Some(ArmState::ArmedStay) => ArmMode::Stay,
            Some(ArmState::ArmedNight) => ArmMode::Night,
            Some(ArmState::ArmedAway) => ArmMode::Away,
            Some(ArmState::Disarmed) | None => return Outcome::error(code::NOT_SUPPORTED),
        };
        match self
            .skill
            .arm_panel(account, panel_id, mode, false, deadline)
            .await
        {
            Ok(armed) if armed.already => Outcome::error(code::ALREADY_ARMED),
            Ok(armed) => Outcome::Success(google_devices::panel_states(&armed.panel)),
            Err(ArmFailure::Offline) => Outcome::Offline,
            // Leaving away for another level takes a disarm, with its PIN, first.
            Err(ArmFailure::AwayNeedsDisarm) => Outcome::error(code::ACTION_NOT_AVAILABLE),
            Err(ArmFailure::Unsupported(_)) => Outcome::error(code::NOT_SUPPORTED),
            Err(ArmFailure::Unanswered) => Outcome::Pending,
            Err(ArmFailure::Panel(e)) => panel_error(&e),
        }
    }
}

/// A panel-cloud failure as Google's error. Outages are `transientError`, never `authFailure`.
fn panel_error(e: &PanelError) -> Outcome {
    match e {
        PanelError::NotFound => Outcome::error(code::DEVICE_NOT_FOUND),
        PanelError::Offline => Outcome::Offline,
        PanelError::Refused(ArmRefusal::ZonesOpen { .. } | ArmRefusal::NotReady { .. }) => {
            Outcome::error(code::DEVICE_NOT_READY)
        }
        PanelError::Refused(ArmRefusal::AlarmActive | ArmRefusal::Trouble { .. }) => {
            Outcome::error(code::ARM_FAILURE)
        }
        PanelError::Refused(ArmRefusal::UnsupportedMode) => Outcome::error(code::NOT_SUPPORTED),
        PanelError::Busy => Outcome::error(code::DEVICE_BUSY),
        PanelError::RateLimited
        | PanelError::Unreachable(_)
        | PanelError::Timeout
        | PanelError::Server(_) => Outcome::error(code::TRANSIENT_ERROR),
        PanelError::Unauthorized | PanelError::Protocol(_) => {
            tracing::error!(error = %e, "panel cloud integration error");
            Outcome::error(code::TRANSIENT_ERROR)
        }
    }
}

fn bearer(authorization: Option<&str>) -> Option<BearerToken> {
    let value = authorization?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| BearerToken::new(token))
}

/// A token that is certainly bad: 401 makes Google refresh it (and unlink if that fails).
fn unauthorized(request_id: &str, why: &str) -> Reply {
    tracing::warn!(reason = %why, "google request without a usable token");
    Reply {
        status: 401,
        body: response::error(request_id, code::AUTH_FAILURE),
    }
}

#[derive(Clone)]
struct Route {
    fulfillment: Arc<Fulfillment>,
    budget: Option<Duration>,
}

async fn fulfill(
    State(r): State<Route>,
    headers: HeaderMap,
    crate::common::http_errors::Body(body): crate::common::http_errors::Body,
) -> impl IntoResponse {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let reply = r
        .fulfillment
        .handle(authorization, &body, Deadline::for_directive(r.budget))
        .await;
    (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        reply.body.to_string(),
    )
}

/// `POST /google/fulfillment`. `budget` caps each request's deadline (tests shorten it).
pub fn routes(fulfillment: Arc<Fulfillment>, budget: Option<Duration>) -> Router {
    Router::new().route(
        PATH,
        post(fulfill)
            .with_state(Route {
                fulfillment,
                budget,
            })
            // Google's own requests get Google's error format; anything else the route can't
            // take gets the JSON error shape, never the framework's text.
            .fallback(crate::common::http_errors::method_not_allowed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_scheme_with_a_token_counts() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap().expose(), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).unwrap().expose(), "abc");
        for bad in [
            None,
            Some("Basic abc"),
            Some("Bearer "),
            Some("Bearer"),
            Some(""),
        ] {
            assert!(bearer(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn outages_are_transient_never_auth_failures() {
        for e in [
            PanelError::Timeout,
            PanelError::Unreachable("x".into()),
            PanelError::Server(503),
            PanelError::Unauthorized,
            PanelError::RateLimited,
        ] {
            assert_eq!(
                panel_error(&e),
                Outcome::error(code::TRANSIENT_ERROR),
                "{e}"
            );
        }
        assert_eq!(panel_error(&PanelError::Offline), Outcome::Offline);
    }
}
