//! The webhook endpoint: verifies and de-duplicates a panel cloud event, turns it into Alexa
//! reports and sends them to the event gateway, and, when HomeGraph is configured, reports the
//! panel's complete state to Google (Report State; Request Sync when zones come or go), unless
//! the household unlinked Google (DISCONNECT, and no SYNC since); and reports what the
//! household's Echo devices play ([`echo_update`], crate::domain::echo_alerts).
//!
//! Responses (JSON):
//! - 401 bad or stale signature; 400 unreadable or inconsistent event; 503 store unavailable
//!   (the cloud should retry: nothing was claimed or sent).
//! - 200 `{"status":"duplicate"}`: the event id was seen before; nothing sent.
//! - 200 `{"status":"no_grant"}`: the account never granted event access (or revoked it).
//! - 202 `{"status":"accepted","sent":N}`: claimed and handled. Reports are best effort: a send
//!   that failed after its retries is logged, not surfaced, because the event id is already
//!   claimed and a redelivery would be dropped as a duplicate anyway.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

use super::signature::{self, SignatureError};
use super::{
    Changed, EventKind, PanelEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER, TOLERANCE_S, cause,
};
use crate::adapters::homegraph::{HomeGraph, HomeGraphError};
use crate::common::clock::Clock;
use crate::common::secret::Secret;
use crate::domain::echo_alerts::{Transition, derive};
use crate::domain::ports::echo_alerts::{AlertUpdate, EchoAlerts};
use crate::domain::ports::event_gateway::{Delivery, EventGateway, GatewayError};
use crate::domain::ports::panel::Panel;
use crate::domain::ports::store::{ConfirmedPanel, Store};
use crate::domain::skill::endpoints::{panel_properties, zone_endpoint, zone_properties};
use crate::wire::alexa::discovery::DiscoveryEndpoint;
use crate::wire::alexa::{
    Message, Property, is_valid_device_id, panel_endpoint_id, zone_endpoint_id,
};

/// Reports of one event sent at the same time, after the first (which fetches or refreshes the
/// token alone, so a burst of zone reports doesn't refresh it N times).
const PARALLEL_SENDS: usize = 8;

pub struct WebhookService {
    pub store: Arc<dyn Store>,
    pub gateway: Arc<dyn EventGateway>,
    pub secret: Secret,
    pub clock: Arc<dyn Clock>,
    /// `manufacturerName` of endpoints announced by AddOrUpdateReport; the same value
    /// discovery uses (`SkillSettings::manufacturer_name`).
    pub manufacturer_name: String,
    /// Google's HomeGraph, when the Google integration is configured.
    pub homegraph: Option<Arc<HomeGraph>>,
    /// Panels this instance renewed the confirmation of lately, from the events about them.
    pub renewals: crate::domain::skill::Renewals,
    /// Where the Echo devices' alerts go (production: nowhere yet, see
    /// crate::adapters::echo_alerts).
    pub echo_alerts: Arc<dyn EchoAlerts>,
}

/// One message to send, before the token is known.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Change {
        endpoint_id: String,
        cause: &'static str,
        changed: Vec<Property>,
        context: Vec<Property>,
    },
    AddOrUpdate(Vec<DiscoveryEndpoint>),
    Delete(Vec<String>),
}

impl Report {
    pub fn build(&self, token: &str) -> Message {
        match self {
            Report::Change {
                endpoint_id,
                cause,
                changed,
                context,
            } => {
                Message::change_report(endpoint_id, token, cause, changed.clone(), context.clone())
            }
            Report::AddOrUpdate(endpoints) => {
                Message::add_or_update_report(endpoints.clone(), token)
            }
            Report::Delete(ids) => Message::delete_report(ids, token),
        }
    }
}

/// Why an event can't be turned into reports (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("event_id must be 1-200 characters")]
    EventId,
    #[error("panel or zone id is not a valid device id")]
    DeviceId,
    #[error("the added zone is not in the panel")]
    UnknownZone,
}

/// Panel-level changes and the property each one names in [`panel_properties`].
fn panel_property_name(c: &Changed) -> Option<&'static str> {
    match c {
        Changed::ArmState => Some("armState"),
        Changed::BurglaryAlarm => Some("burglaryAlarm"),
        Changed::FireAlarm => Some("fireAlarm"),
        Changed::CarbonMonoxideAlarm => Some("carbonMonoxideAlarm"),
        Changed::WaterAlarm => Some("waterAlarm"),
        Changed::Connectivity => Some("connectivity"),
        Changed::ZoneOpen { .. } | Changed::Phase { .. } => None,
    }
}

/// Splits `all` into (changed, context) by property name.
fn split(all: Vec<Property>, changed: &BTreeSet<&str>) -> (Vec<Property>, Vec<Property>) {
    all.into_iter().partition(|p| changed.contains(p.name))
}

/// The reports an event calls for, in sending order: the panel's ChangeReport first, then its
/// zones' in the panel's zone order.
pub fn plan(event: &PanelEvent, manufacturer_name: &str) -> Result<Vec<Report>, PlanError> {
    if event.event_id.is_empty() || event.event_id.chars().count() > 200 {
        return Err(PlanError::EventId);
    }
    let cause = cause(event.source);
    match &event.kind {
        EventKind::PanelChanged { panel, changed } => {
            if !is_valid_device_id(&panel.id) {
                return Err(PlanError::DeviceId);
            }
            Ok(change_reports(panel, changed, cause))
        }
        EventKind::ZoneAdded { panel, zone_id } => {
            if !is_valid_device_id(&panel.id) || !is_valid_device_id(zone_id) {
                return Err(PlanError::DeviceId);
            }
            let zone = panel.zone(zone_id).ok_or(PlanError::UnknownZone)?;
            Ok(vec![Report::AddOrUpdate(vec![zone_endpoint(
                panel,
                zone,
                manufacturer_name,
            )])])
        }
        EventKind::ZoneRemoved { panel_id, zone_id } => {
            if !is_valid_device_id(panel_id) || !is_valid_device_id(zone_id) {
                return Err(PlanError::DeviceId);
            }
            Ok(vec![Report::Delete(vec![zone_endpoint_id(
                panel_id, zone_id,
            )])])
        }
        EventKind::UsersChanged { .. } => Ok(vec![]),
    }
}

fn change_reports(panel: &Panel, changed: &[Changed], cause: &'static str) -> Vec<Report> {
    let mut reports = Vec::new();
    let panel_changed: BTreeSet<&str> = changed.iter().filter_map(panel_property_name).collect();
    if !panel_changed.is_empty() {
        let (changed_props, context) = split(panel_properties(panel), &panel_changed);
        reports.push(Report::Change {
            endpoint_id: panel_endpoint_id(&panel.id),
            cause,
            changed: changed_props,
            context,
        });
    }
    let connectivity = changed.contains(&Changed::Connectivity);
    let opened: BTreeSet<&str> = changed
        .iter()
        .filter_map(|c| match c {
            Changed::ZoneOpen { zone } => Some(zone.as_str()),
            _ => None,
        })
        .collect();
    for zone in &panel.zones {
        if !is_valid_device_id(&zone.id) {
            // Discovery leaves such zones out too; Alexa doesn't know them.
            continue;
        }
        let mut names = BTreeSet::new();
        if opened.contains(zone.id.as_str()) {
            names.insert("detectionState");
        }
        if connectivity {
            names.insert("connectivity");
        }
        if names.is_empty() {
            continue;
        }
        let (changed_props, context) = split(zone_properties(panel, zone), &names);
        reports.push(Report::Change {
            endpoint_id: zone_endpoint_id(&panel.id, &zone.id),
            cause,
            changed: changed_props,
            context,
        });
    }
    for unknown in opened.iter().filter(|z| panel.zone(z).is_none()) {
        // The snapshot is the truth after the change; a zone missing from it was removed in
        // the meantime (its DeleteReport covers it).
        tracing::warn!(panel = %panel.id, zone = %unknown, "zone_open for a zone not in the panel; skipped");
    }
    reports
}

/// What the household's Echo devices start and stop for an event
/// (crate::domain::echo_alerts). The panel before the change is the one after it with the phase
/// the event names (a cloud that doesn't name phases gets no delay alerts) and every alarm it
/// says flipped.
pub fn echo_update(event: &PanelEvent) -> Option<AlertUpdate> {
    let EventKind::PanelChanged { panel, changed } = &event.kind else {
        return None;
    };
    let mut phase_before = panel.phase;
    let mut alarms_before = panel.alarms;
    let mut opened = vec![];
    for c in changed {
        match c {
            Changed::Phase { from } => phase_before = *from,
            Changed::BurglaryAlarm => alarms_before.burglary = !panel.alarms.burglary,
            Changed::FireAlarm => alarms_before.fire = !panel.alarms.fire,
            Changed::CarbonMonoxideAlarm => {
                alarms_before.carbon_monoxide = !panel.alarms.carbon_monoxide
            }
            Changed::WaterAlarm => alarms_before.water = !panel.alarms.water,
            Changed::ZoneOpen { zone } => opened.push(zone.as_str()),
            Changed::ArmState | Changed::Connectivity => {}
        }
    }
    derive(&Transition {
        panel,
        phase_before,
        alarms_before,
        opened,
        at: event.occurred_at,
    })
}

/// What renewing a panel's confirmation may add to a webhook's handling at most.
const CONFIRM_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);

fn reply(status: StatusCode, body: Value) -> (StatusCode, Value) {
    (status, body)
}

impl WebhookService {
    pub fn new(
        store: Arc<dyn Store>,
        gateway: Arc<dyn EventGateway>,
        secret: Secret,
        clock: Arc<dyn Clock>,
        manufacturer_name: String,
    ) -> Self {
        WebhookService {
            store,
            gateway,
            secret,
            clock,
            manufacturer_name,
            homegraph: None,
            renewals: crate::domain::skill::Renewals::default(),
            echo_alerts: Arc::new(crate::adapters::echo_alerts::Unannounced),
        }
    }

    /// The Echo devices' alerts for the event. Best effort, like the Alexa reports.
    async fn report_echo(&self, event: &PanelEvent) {
        let Some(update) = echo_update(event) else {
            return;
        };
        if let Err(e) = self.echo_alerts.report(&event.account, &update).await {
            tracing::warn!(
                event_id = %event.event_id, account = %event.account, error = %e,
                "echo alerts not reported (best effort; the event stays claimed)"
            );
        }
    }

    /// Also reports every state change to Google's HomeGraph.
    pub fn with_homegraph(mut self, homegraph: Arc<HomeGraph>) -> Self {
        self.homegraph = Some(homegraph);
        self
    }

    /// Report State (and Request Sync when zones came or went) for the event. Best effort, like
    /// the Alexa reports: logged, never surfaced, the event being claimed already.
    async fn report_to_google(&self, event: &PanelEvent) {
        let Some(hg) = &self.homegraph else {
            return;
        };
        let account = event.account.as_str();
        match self.store.google_linked(account).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(%account, "household unlinked Google; nothing reported");
                return;
            }
            // Reported anyway: an outage must not silence a linked household, and HomeGraph
            // refuses (404) one that unlinked.
            Err(e) => {
                tracing::warn!(%account, error = %e, "could not read the Google link; reporting")
            }
        }
        let (sync, panel) = match &event.kind {
            EventKind::PanelChanged { panel, .. } => (false, Some(panel)),
            EventKind::ZoneAdded { panel, .. } => (true, Some(panel)),
            EventKind::ZoneRemoved { .. } => (true, None),
            EventKind::UsersChanged { .. } => (false, None),
        };
        let mut results = vec![];
        if sync {
            results.push(("request_sync", hg.request_sync(account).await));
        }
        if let Some(p) = panel {
            let states = crate::adapters::homegraph::states_of(p);
            if !states.is_empty() {
                results.push(("report_state", hg.report_state(account, states).await));
            }
        }
        for (call, result) in results {
            match result {
                Ok(()) => {}
                // The household never linked Google (or unlinked): nothing to tell it.
                Err(HomeGraphError::NotLinked) => {
                    tracing::debug!(%account, call, "household not linked to Google")
                }
                Err(e) => tracing::warn!(
                    event_id = %event.event_id, %account, call, error = %e,
                    "HomeGraph call failed (best effort; the event stays claimed)"
                ),
            }
        }
    }

    /// A signed event about a panel is the cloud's word that the account holds it: the panel's
    /// confirmation is renewed (crate::domain::skill::OWNERSHIP_TTL), so a household whose panel is used
    /// only at the keypad or by schedule keeps its duress PIN through an outage. Best effort.
    async fn confirm_panel(&self, event: &PanelEvent) {
        let panel = match &event.kind {
            EventKind::PanelChanged { panel, .. } | EventKind::ZoneAdded { panel, .. } => {
                panel.id.clone()
            }
            EventKind::ZoneRemoved { panel_id, .. } => panel_id.clone(),
            EventKind::UsersChanged { .. } => return,
        };
        // Within the signature window: no deadline of its own beyond the renewal's budget.
        let deadline =
            crate::common::deadline::Deadline::after(CONFIRM_BUDGET.max(self.renewals.budget()));
        self.renewals
            .renew(
                self.store.as_ref(),
                &event.account,
                // The link comes from the cloud's API reads; an event leaves it as stored.
                &ConfirmedPanel::id_only(&panel),
                self.clock.now(),
                deadline,
            )
            .await;
    }

    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> (StatusCode, Value) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = self.clock.now();
        if let Err(e) = signature::verify(
            &self.secret,
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            body,
            now,
        ) {
            // Which of "malformed" and "mismatch" it was would help someone forging requests,
            // not the panel cloud; both read "bad signature".
            let reason = match e {
                SignatureError::BadTimestamp => "bad timestamp",
                SignatureError::Stale => "stale timestamp",
                SignatureError::Malformed | SignatureError::Mismatch => "bad signature",
            };
            tracing::warn!(reason, "webhook request refused");
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "unauthorized", "reason": reason }),
            );
        }
        let event: PanelEvent = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(
                    line = e.line(),
                    column = e.column(),
                    "webhook body is not a panel event"
                );
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "bad_request", "reason": "malformed event" }),
                );
            }
        };
        let reports = match plan(&event, &self.manufacturer_name) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(event_id = %event.event_id, error = %e, "webhook event refused");
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "bad_request", "reason": e.to_string() }),
                );
            }
        };
        if let EventKind::UsersChanged { users, revision } = &event.kind {
            let list = crate::domain::ports::panel::UserList {
                revision: *revision,
                users: users.clone(),
            };
            return self.users_changed(&event, &list).await;
        }
        // Kept past the signature window on both sides, so a captured request can't come back
        // once the id has expired.
        let claim_until = now + chrono::Duration::seconds(2 * TOLERANCE_S);
        match self.store.claim_event(&event.event_id, claim_until).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(event_id = %event.event_id, "duplicate webhook event ignored");
                return reply(StatusCode::OK, json!({ "status": "duplicate" }));
            }
            Err(e) => {
                tracing::error!(event_id = %event.event_id, error = %e, "could not claim the webhook event");
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "unavailable", "reason": "try again later" }),
                );
            }
        }
        let (alexa, (), (), ()) = tokio::join!(
            self.send_all(&event, reports),
            self.report_to_google(&event),
            self.confirm_panel(&event),
            self.report_echo(&event)
        );
        match alexa {
            None => reply(StatusCode::OK, json!({ "status": "no_grant" })),
            Some(sent) => reply(
                StatusCode::ACCEPTED,
                json!({ "status": "accepted", "sent": sent }),
            ),
        }
    }

    /// The household's members follow the panel users. Applied before any claim and only when
    /// newer than the last sync: applying is idempotent, so a retry after a store failure (503)
    /// is safe, and a replayed older list is ignored instead of bringing a removed user back.
    async fn users_changed(
        &self,
        event: &PanelEvent,
        list: &crate::domain::ports::panel::UserList,
    ) -> (StatusCode, Value) {
        match crate::domain::provisioning::apply_users(
            self.store.as_ref(),
            self.clock.as_ref(),
            &event.account,
            list,
            event.occurred_at,
            true,
        )
        .await
        {
            Ok(o) if o.applied => reply(
                StatusCode::ACCEPTED,
                json!({ "status": "accepted", "members": o.members }),
            ),
            Ok(_) => reply(StatusCode::OK, json!({ "status": "stale" })),
            Err(e @ crate::domain::provisioning::SyncError::MemberName { .. }) => {
                tracing::warn!(event_id = %event.event_id, error = %e, "panel users refused");
                reply(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "bad_request", "reason": e.to_string() }),
                )
            }
            Err(e) => {
                tracing::error!(event_id = %event.event_id, error = %e, "could not apply the panel users");
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "unavailable", "reason": "try again later" }),
                )
            }
        }
    }

    /// Sends the reports; the number delivered, or `None` when the account has no grant.
    async fn send_all(&self, event: &PanelEvent, reports: Vec<Report>) -> Option<usize> {
        let account = event.account.as_str();
        let mut rest = reports.into_iter();
        let Some(first) = rest.next() else {
            return Some(0);
        };
        let mut sent = 0;
        match self.gateway.send(account, &|t| first.build(t)).await {
            Ok(Delivery::Sent) => sent += 1,
            Ok(Delivery::NoGrant) => return None,
            // A failure about this message alone; the others may still go through.
            Err(e @ GatewayError::Rejected { .. }) => log_failure(event, &e),
            // Token, revocation or gateway trouble: the remaining reports would fail the same
            // way, each after its own budget.
            Err(e) => {
                log_failure(event, &e);
                return Some(0);
            }
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL_SENDS));
        let mut tasks = tokio::task::JoinSet::new();
        for report in rest {
            let gateway = Arc::clone(&self.gateway);
            let account = account.to_string();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = permits.acquire_owned().await.ok();
                gateway.send(&account, &|t| report.build(t)).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(Delivery::Sent)) => sent += 1,
                // The grant vanished between two reports (revoked meanwhile): nothing to do.
                Ok(Ok(Delivery::NoGrant)) => {}
                Ok(Err(e)) => log_failure(event, &e),
                Err(e) => {
                    tracing::error!(event_id = %event.event_id, error = %e, "report task failed")
                }
            }
        }
        Some(sent)
    }
}

fn log_failure(event: &PanelEvent, e: &GatewayError) {
    tracing::warn!(
        event_id = %event.event_id,
        account = %event.account,
        error = %e,
        "report not delivered (best effort; the event stays claimed)"
    );
}

async fn panel_webhook(
    State(svc): State<Arc<WebhookService>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    let (status, body) = match body {
        Ok(body) => svc.handle(&headers, &body).await,
        // In the webhook's own reply shape, as documented for this route.
        Err(e) => {
            let (status, code, message) = crate::common::http_errors::body_rejection(&e);
            reply(status, json!({ "error": code, "reason": message }))
        }
    };
    (status, axum::Json(body))
}

/// `POST /webhooks/panel`. The body is taken as raw bytes: the signature covers them exactly.
pub fn routes(svc: Arc<WebhookService>) -> Router {
    Router::new()
        .route("/webhooks/panel", post(panel_webhook))
        .with_state(svc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::panel::{Alarms, ArmState, Phase, Source, Zone, ZoneKind};
    use chrono::Utc;

    fn panel() -> Panel {
        let zone = |id: &str, kind| Zone {
            id: id.into(),
            number: 1,
            name: id.into(),
            kind,
            open: false,
            bypassable: true,
            bypassed: false,
            entry: false,
        };
        Panel {
            id: "home".into(),
            name: "Home".into(),
            manufacturer: "Acme".into(),
            model: "AP-1".into(),
            arm_state: ArmState::Disarmed,
            phase: Phase::Disarmed,
            delay_remaining_s: 0,
            supported_arm_states: vec![ArmState::ArmedAway, ArmState::Disarmed],
            exit_delay_s: 0,
            entry_delay_s: 0,
            alarms: Alarms::default(),
            trouble: vec![],
            online: false,
            zones: vec![
                zone("door", ZoneKind::Contact),
                zone("hall", ZoneKind::Motion),
            ],
            as_of: Utc::now(),
            monitoring: None,
        }
    }

    fn event(changed: Vec<Changed>) -> PanelEvent {
        PanelEvent {
            event_id: "e1".into(),
            account: "acct".into(),
            occurred_at: Utc::now(),
            source: Source::System,
            kind: EventKind::PanelChanged {
                panel: panel(),
                changed,
            },
        }
    }

    fn names(props: &[Property]) -> Vec<&str> {
        props.iter().map(|p| p.name).collect()
    }

    #[test]
    fn zone_open_and_connectivity_merge_into_one_zone_report() {
        let reports = plan(
            &event(vec![
                Changed::Connectivity,
                Changed::ZoneOpen {
                    zone: "door".into(),
                },
                Changed::ZoneOpen {
                    zone: "gone".into(),
                },
            ]),
            "M",
        )
        .unwrap();
        assert_eq!(
            reports.len(),
            3,
            "panel + two zones, the unknown zone skipped"
        );
        let Report::Change {
            endpoint_id,
            changed,
            context,
            ..
        } = &reports[1]
        else {
            panic!("expected a ChangeReport")
        };
        assert_eq!(endpoint_id, "home:door");
        assert_eq!(names(changed), vec!["detectionState", "connectivity"]);
        assert!(context.is_empty());
    }

    #[test]
    fn the_echo_update_takes_the_phase_and_alarms_before_from_the_event() {
        use crate::domain::ports::echo_alerts::{Alert, AlertChange};
        // The entry delay ran out into the alarm: the event names the phase before, and the
        // burglary alarm as one that flipped.
        let mut p = panel();
        p.phase = Phase::Alarm;
        p.alarms.burglary = true;
        let with = |changed| PanelEvent {
            kind: EventKind::PanelChanged {
                panel: p.clone(),
                changed,
            },
            ..event(vec![])
        };
        let from = Changed::Phase {
            from: Phase::EntryDelay,
        };
        let siren = AlertChange::Start {
            alert: Alert::Siren,
            max_play_s: 600,
        };
        let u = echo_update(&with(vec![Changed::BurglaryAlarm, from.clone()])).unwrap();
        assert_eq!(
            u.changes,
            vec![
                AlertChange::Stop {
                    alert: Alert::EntryDelay
                },
                siren
            ]
        );
        // A cloud that doesn't name phases: the alarms alone still sound the siren.
        let u = echo_update(&with(vec![Changed::BurglaryAlarm])).unwrap();
        assert_eq!(u.changes, vec![siren]);
        // On the wire, the phase before is a `changed` entry of its own.
        assert_eq!(
            serde_json::to_value(&from).unwrap(),
            json!({"property": "phase", "from": "entry_delay"})
        );
        let removed = PanelEvent {
            kind: EventKind::ZoneRemoved {
                panel_id: "home".into(),
                zone_id: "door".into(),
            },
            ..event(vec![])
        };
        assert_eq!(echo_update(&removed), None);
    }

    #[test]
    fn nothing_reportable_plans_nothing_and_bad_ids_are_refused() {
        assert!(plan(&event(vec![]), "M").unwrap().is_empty());
        // A phase alone shows in no Alexa property (the Echo devices' alerts follow it).
        let phase = Changed::Phase {
            from: Phase::ExitDelay,
        };
        assert!(plan(&event(vec![phase]), "M").unwrap().is_empty());
        let mut e = event(vec![Changed::ArmState]);
        e.event_id.clear();
        assert_eq!(plan(&e, "M"), Err(PlanError::EventId));
        let e = PanelEvent {
            kind: EventKind::ZoneRemoved {
                panel_id: "home".into(),
                zone_id: "a/b".into(),
            },
            ..event(vec![])
        };
        assert_eq!(plan(&e, "M"), Err(PlanError::DeviceId));
        let e = PanelEvent {
            kind: EventKind::ZoneAdded {
                panel: panel(),
                zone_id: "garage".into(),
            },
            ..event(vec![])
        };
        assert_eq!(plan(&e, "M"), Err(PlanError::UnknownZone));
    }
}
