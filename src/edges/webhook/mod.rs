//! The panel cloud's webhook: every state change of a panel arrives here, signed, and leaves as
//! a ChangeReport (or AddOrUpdateReport / DeleteReport) to the Alexa event gateway.
//!
//! Contract (docs/panel-api.md, "Webhook"):
//! - `POST {skill}/webhooks/panel` with a JSON [`PanelEvent`] body.
//! - `X-Alarm-Timestamp`: Unix seconds when the cloud signed the request.
//! - `X-Alarm-Signature`: `v1=` + hex HMAC-SHA256(webhook secret, `"{timestamp}.{body}"`).
//! - A timestamp more than [`TOLERANCE_S`] away from now is rejected; an `event_id` seen before
//!   is acknowledged without effect, so a captured request can't be replayed.

pub mod handler;
pub mod signature;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ports::panel::{Panel, PanelUser, Phase, Source};

pub use handler::{PlanError, Report, WebhookService, plan, routes};

pub const TIMESTAMP_HEADER: &str = "x-alarm-timestamp";
pub const SIGNATURE_HEADER: &str = "x-alarm-signature";
/// Accepted clock skew between the panel cloud and the skill, either way.
pub const TOLERANCE_S: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanelEvent {
    /// Unique per event; replays of the same id are ignored.
    pub event_id: String,
    pub account: String,
    pub occurred_at: DateTime<Utc>,
    /// Who caused the change; maps to the ChangeReport cause.
    pub source: Source,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Properties of a panel or its zones changed; `panel` is the state after the change.
    PanelChanged { panel: Panel, changed: Vec<Changed> },
    /// A zone was added to the panel (AddOrUpdateReport).
    ZoneAdded { panel: Panel, zone_id: String },
    /// A zone was removed from the panel (DeleteReport).
    ZoneRemoved { panel_id: String, zone_id: String },
    /// The account's panel users changed; `users` is the whole list after the change
    /// (crate::domain::provisioning takes the household's members from it). No Alexa report.
    UsersChanged {
        users: Vec<PanelUser>,
        /// The list's revision in the cloud's own sequence ([`crate::domain::ports::panel::UserList`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "property", rename_all = "snake_case")]
pub enum Changed {
    ArmState,
    BurglaryAlarm,
    FireAlarm,
    CarbonMonoxideAlarm,
    WaterAlarm,
    /// The panel went on- or offline; affects the panel and every zone endpoint.
    Connectivity,
    /// A zone opened or closed.
    ZoneOpen {
        zone: String,
    },
    /// The panel's phase changed (an exit or entry delay began or ended, an alarm began, a
    /// disarm); `from` is the phase before. No Alexa property shows it; the Echo devices'
    /// alerts follow it (crate::domain::echo_alerts).
    Phase {
        from: Phase,
    },
}

/// The ChangeReport `cause.type` for a change made by `source`.
pub fn cause(source: Source) -> &'static str {
    match source {
        Source::Keypad | Source::Sensor => "PHYSICAL_INTERACTION",
        Source::App => "APP_INTERACTION",
        Source::Voice => "VOICE_INTERACTION",
        Source::Automation => "RULE_TRIGGER",
        // Connectivity loss and supervision: nobody interacted; the cloud noticed it.
        Source::System => "PERIODIC_POLL",
    }
}
