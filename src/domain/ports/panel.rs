//! The panel cloud: the vendor API the skill relays commands to (contract in docs/panel-api.md).
//!
//! [`PanelCloud`] is the port. [`crate::adapters::panel::HttpPanelCloud`] is the production
//! adapter; the simulator implements the same trait in-process and serves the same contract over
//! HTTP.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::common::deadline::Deadline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmState {
    Disarmed,
    ArmedAway,
    ArmedStay,
    ArmedNight,
}

impl ArmState {
    pub fn alexa_name(self) -> &'static str {
        match self {
            ArmState::Disarmed => "DISARMED",
            ArmState::ArmedAway => "ARMED_AWAY",
            ArmState::ArmedStay => "ARMED_STAY",
            ArmState::ArmedNight => "ARMED_NIGHT",
        }
    }

    /// The arm mode of an armed state; `None` for DISARMED.
    pub fn mode(self) -> Option<ArmMode> {
        match self {
            ArmState::Disarmed => None,
            ArmState::ArmedAway => Some(ArmMode::Away),
            ArmState::ArmedStay => Some(ArmMode::Stay),
            ArmState::ArmedNight => Some(ArmMode::Night),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmMode {
    Away,
    Stay,
    Night,
}

impl ArmMode {
    pub fn state(self) -> ArmState {
        match self {
            ArmMode::Away => ArmState::ArmedAway,
            ArmMode::Stay => ArmState::ArmedStay,
            ArmMode::Night => ArmState::ArmedNight,
        }
    }
}

/// Where the panel is within its arm state: arming and entry are timed by the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Disarmed,
    ExitDelay,
    Armed,
    EntryDelay,
    Alarm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    Contact,
    Motion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
    /// The zone number reported to the monitoring center (Contact ID CCC for zone events).
    pub number: u16,
    pub name: String,
    pub kind: ZoneKind,
    pub open: bool,
    pub bypassable: bool,
    pub bypassed: bool,
    /// An entry zone starts the entry delay when opened while armed; others alarm at once.
    pub entry: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarms {
    pub burglary: bool,
    pub fire: bool,
    pub carbon_monoxide: bool,
    pub water: bool,
}

impl Alarms {
    pub fn any(&self) -> bool {
        self.burglary || self.fire || self.carbon_monoxide || self.water
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panel {
    pub id: String,
    pub name: String,
    pub manufacturer: String,
    pub model: String,
    pub arm_state: ArmState,
    pub phase: Phase,
    /// Seconds left in the exit or entry delay, 0 otherwise.
    pub delay_remaining_s: u32,
    pub supported_arm_states: Vec<ArmState>,
    pub exit_delay_s: u32,
    pub entry_delay_s: u32,
    pub alarms: Alarms,
    /// Active trouble conditions (e.g. "ac_power", "low_battery"); empty when none.
    pub trouble: Vec<String>,
    pub online: bool,
    pub zones: Vec<Zone>,
    /// When the cloud last heard from the panel: the time of every reported property.
    pub as_of: DateTime<Utc>,
    /// The panel's monitoring center, if the cloud reports one (docs/panel-api.md,
    /// "Monitoring details"): where the skill's second path sends while the cloud is down.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "monitoring_or_none"
    )]
    pub monitoring: Option<crate::domain::ports::monitoring::MonitoringLink>,
}

/// Monitoring details off the contract (a wrong type, a missing field, a value off its format)
/// are no details: wherever a panel is read (the cloud's replies, its webhook's events), the
/// panel keeps its one path instead of the whole message failing over them. The HTTP adapter
/// also logs which field was off; here no value is logged (`key_ref` names a secret).
fn monitoring_or_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::domain::ports::monitoring::MonitoringLink>, D::Error> {
    let details = Option::<serde_json::Value>::deserialize(d)?;
    Ok(details
        .and_then(|v| {
            serde_json::from_value::<crate::domain::ports::monitoring::MonitoringLink>(v).ok()
        })
        .filter(|link| link.off_format().is_none()))
}

impl Panel {
    pub fn zone(&self, id: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.id == id)
    }
}

/// Who asked for a change; the skill always sends `voice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Voice,
    Keypad,
    App,
    Automation,
    Sensor,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmRequest {
    pub mode: ArmMode,
    /// Bypass every open bypassable zone (Alexa's BYPASS_ALL) instead of refusing.
    pub bypass_open_zones: bool,
    pub source: Source,
    /// Idempotency key: a repeated request with the same id returns the first result.
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmOutcome {
    pub panel: Panel,
    pub bypassed: Vec<ZoneRef>,
}

/// Which of the member's codes was said. Both values are six bytes on the wire, so a request's
/// length (a TLS record, a request-size log) never tells a duress from a normal attempt: a
/// boolean would, `true` being one byte shorter than `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    Normal,
    /// Raise a silent duress alarm (Contact ID 121) for the member. Nothing else may differ.
    Duress,
}

impl AttemptKind {
    pub fn of(duress: bool) -> Self {
        if duress {
            AttemptKind::Duress
        } else {
            AttemptKind::Normal
        }
    }

    pub fn is_duress(self) -> bool {
        self == AttemptKind::Duress
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisarmRequest {
    /// The panel user number of the member whose voice code matched (Contact ID CCC).
    pub member: Option<u16>,
    pub source: Source,
    pub kind: AttemptKind,
    pub request_id: String,
    /// When the code was spoken (the outbox record's `created_at`), the same on every re-send:
    /// the cloud reports the attempt's Contact ID event with it as DC-09's time of occurrence,
    /// so a center tells two paths' copies of one duress from two duresses. The skill always
    /// sends it; `None` only in what a cloud parses from a skill that predates it.
    #[serde(
        default,
        serialize_with = "occurred_at",
        skip_serializing_if = "Option::is_none"
    )]
    pub occurred_at: Option<DateTime<Utc>>,
}

impl DisarmRequest {
    pub fn duress(&self) -> bool {
        self.kind.is_duress()
    }
}

/// A voice attempt that must not change the panel (a lockout) or the re-delivery of a duress
/// flag whose disarm failed. With `kind: normal` the cloud acknowledges and does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub member: Option<u16>,
    pub source: Source,
    pub kind: AttemptKind,
    pub request_id: String,
    /// As [`DisarmRequest::occurred_at`].
    #[serde(
        default,
        serialize_with = "occurred_at",
        skip_serializing_if = "Option::is_none"
    )]
    pub occurred_at: Option<DateTime<Utc>>,
}

/// `occurred_at` on the wire: RFC 3339 in UTC with exactly three decimals, so every request
/// carries it in one length whatever the instant (chrono's own format drops zero fractions).
fn occurred_at<S: serde::Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => s.serialize_none(),
    }
}

/// The attempt a signal carries, as the disarm it was: what the re-delivery worker sends for a
/// disarm a directive handed over.
impl From<SignalRequest> for DisarmRequest {
    fn from(s: SignalRequest) -> Self {
        DisarmRequest {
            member: s.member,
            source: s.source,
            kind: s.kind,
            request_id: s.request_id,
            occurred_at: s.occurred_at,
        }
    }
}

impl SignalRequest {
    pub fn duress(&self) -> bool {
        self.kind.is_duress()
    }
}

/// A user of the account's panels (keypad and app users), as the panel cloud lists them. The
/// skill's household members come from this list (crate::domain::provisioning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanelUser {
    /// The cloud's stable id of the person: kept across renames, never given to another person,
    /// even on the same user number. Optional for clouds from before it was in the contract;
    /// without it a new name on a number is taken for a new person (crate::domain::provisioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The panel user number (Contact ID user field), 1-999.
    pub number: u16,
    pub name: String,
}

/// The account's panel users (`GET /v1/accounts/{account}/users`) at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// The cloud's own sequence number of the account's user list, raised by every change. The
    /// skill orders lists by it, never by a clock. Optional for clouds from before it was in the
    /// contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    pub users: Vec<PanelUser>,
}

/// A message for the household admin, delivered by the panel cloud's own app notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ArmRefusal {
    /// Open zones that may be bypassed: Alexa asks the user whether to bypass them.
    ZonesOpen {
        zones: Vec<ZoneRef>,
    },
    /// Open zones that may not be bypassed.
    NotReady {
        zones: Vec<ZoneRef>,
    },
    AlarmActive,
    Trouble {
        conditions: Vec<String>,
    },
    UnsupportedMode,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PanelError {
    #[error("panel not found in this account")]
    NotFound,
    #[error("panel is offline")]
    Offline,
    #[error("arming refused: {0:?}")]
    Refused(ArmRefusal),
    #[error("panel is busy")]
    Busy,
    #[error("panel cloud rate limit")]
    RateLimited,
    #[error("panel cloud unreachable: {0}")]
    Unreachable(String),
    #[error("panel cloud did not answer before the deadline")]
    Timeout,
    #[error("panel cloud server error {0}")]
    Server(u16),
    #[error("panel cloud rejected the skill's credentials")]
    Unauthorized,
    #[error("unexpected panel cloud reply: {0}")]
    Protocol(String),
}

impl PanelError {
    /// Whether retrying the same request (with the same request id) can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PanelError::Unreachable(_)
                | PanelError::Timeout
                | PanelError::Server(_)
                | PanelError::RateLimited
        )
    }
}

#[async_trait]
pub trait PanelCloud: Send + Sync {
    async fn panels(&self, account: &str, deadline: Deadline) -> Result<Vec<Panel>, PanelError>;

    async fn panel(
        &self,
        account: &str,
        panel: &str,
        deadline: Deadline,
    ) -> Result<Panel, PanelError>;

    async fn arm(
        &self,
        account: &str,
        panel: &str,
        request: &ArmRequest,
        deadline: Deadline,
    ) -> Result<ArmOutcome, PanelError>;

    async fn disarm(
        &self,
        account: &str,
        panel: &str,
        request: &DisarmRequest,
        deadline: Deadline,
    ) -> Result<Panel, PanelError>;

    async fn signal(
        &self,
        account: &str,
        panel: &str,
        request: &SignalRequest,
        deadline: Deadline,
    ) -> Result<(), PanelError>;

    async fn notify(
        &self,
        account: &str,
        notice: &Notice,
        deadline: Deadline,
    ) -> Result<(), PanelError>;

    /// The panel users of the account (`GET /v1/accounts/{account}/users`). The default is for
    /// adapters without the route: provisioning then reports it as a protocol error.
    async fn users(&self, account: &str, deadline: Deadline) -> Result<UserList, PanelError> {
        let _ = (account, deadline);
        Err(PanelError::Protocol(
            "this panel cloud adapter cannot list users".into(),
        ))
    }

    /// Which panel cloud this is, for the re-delivery worker's breaker (one per cloud): a
    /// deployment talks to one cloud, so the default names just that one.
    fn breaker_key(&self) -> String {
        "panel-cloud".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A webhook event's panel (or any panel read from the cloud) with monitoring details off
    /// the contract is read without them, not refused with the whole event.
    #[test]
    fn monitoring_details_off_the_contract_are_read_as_none() {
        let panel = |monitoring: serde_json::Value| {
            serde_json::json!({"id": "home", "name": "Home", "manufacturer": "Acme", "model": "M1",
                "arm_state": "disarmed", "phase": "disarmed", "delay_remaining_s": 0,
                "supported_arm_states": ["disarmed"], "exit_delay_s": 30, "entry_delay_s": 30,
                "alarms": {"burglary": false, "fire": false, "carbon_monoxide": false, "water": false},
                "trouble": [], "online": true, "zones": [], "as_of": "2026-01-01T00:00:00Z",
                "monitoring": monitoring})
        };
        let good =
            serde_json::json!({"receiver": "127.0.0.1:7000", "account": "1234", "line": "2"});
        let read = |m| serde_json::from_value::<Panel>(panel(m)).map(|p| p.monitoring);
        assert!(matches!(read(good.clone()), Ok(Some(_))));
        for bad in [
            serde_json::json!(5),
            serde_json::json!("127.0.0.1:7000"),
            serde_json::json!({"receiver": "127.0.0.1:7000", "account": 1234, "line": "2"}),
            serde_json::json!({"receiver": "127.0.0.1:7000", "account": "xyz!", "line": "2"}),
            serde_json::json!(null),
        ] {
            assert_eq!(read(bad.clone()).ok(), Some(None), "{bad}");
        }
    }

    #[test]
    fn both_kinds_serialize_to_the_same_length() {
        let [normal, duress] =
            [AttemptKind::Normal, AttemptKind::Duress].map(|k| serde_json::to_string(&k).unwrap());
        assert_eq!(
            (normal.as_str(), duress.as_str()),
            ("\"normal\"", "\"duress\"")
        );
        assert_eq!(normal.len(), duress.len());
    }

    #[test]
    fn a_request_without_a_kind_or_with_the_old_flag_is_refused() {
        // A cloud, or a skill, must never read a missing kind as "normal": that loses a duress.
        for body in [
            r#"{"member":1,"source":"voice","request_id":"r"}"#,
            r#"{"member":1,"source":"voice","duress":true,"request_id":"r"}"#,
            r#"{"member":1,"source":"voice","kind":"panic","request_id":"r"}"#,
        ] {
            assert!(
                serde_json::from_str::<DisarmRequest>(body).is_err(),
                "{body}"
            );
            assert!(
                serde_json::from_str::<SignalRequest>(body).is_err(),
                "{body}"
            );
        }
    }
}
