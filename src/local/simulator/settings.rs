//! The simulated accounts and their users, what the simulator records (notifications, API
//! requests), and the failures injected into the panel API.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserConfig {
    /// The person's stable id. Given to the control route, it renames that person; without it
    /// a new name on a taken number is a new person on a reused slot, with a new id. The
    /// config's users get one each at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub number: u16,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountConfig {
    pub id: String,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    pub panels: Vec<PanelConfig>,
}

/// A notification the panel cloud shows in the household's own app: what the household (and
/// anyone holding their phone) can see. Duress never appears here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub account: String,
    pub kind: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A panel API call as the simulator received it, for asserting what was (not) touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub op: &'static str,
    pub account: String,
    pub panel: Option<String>,
    pub at: DateTime<Utc>,
}

/// Injected failures of the panel API (HTTP only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    #[default]
    None,
    /// Reply 500 without processing.
    Error,
    /// Hang for `delay_ms` without processing, then 504.
    Timeout,
    /// Process, then wait `delay_ms` before replying.
    Slow,
    /// Process a request that changes something (POST: arm, disarm, signals), then hold its
    /// reply until the fault is changed, `delay_ms` at most; reads pass. A test can kill a
    /// process while its call is in flight without racing a timer.
    Hold,
    /// Stop listening: connections are refused.
    Down,
    /// Reply 404 without processing, without the contract's `panel_not_found` body: what a
    /// gateway in front of a half-deployed or mis-routed cloud answers. An outage, not an answer.
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fault {
    pub mode: FaultMode,
    #[serde(default)]
    pub delay_ms: u64,
}
