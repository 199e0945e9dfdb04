//! The monitoring-center receiver: every signal the simulated panels send, as Contact ID events
//! (SIA DC-05: event code, qualifier, partition, user or zone number).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Contact ID event codes the simulator reports.
pub mod codes {
    /// Duress, with the user number.
    pub const DURESS: &str = "121";
    pub const BURGLARY: &str = "130";
    /// Open/close by user: qualifier 1 = open (disarm), 3 = close (arm away).
    pub const OPEN_CLOSE_BY_USER: &str = "401";
    /// Cancel by user: a disarm after an alarm was transmitted.
    pub const CANCEL: &str = "406";
    /// Armed stay (and night), qualifier 3.
    pub const ARMED_STAY: &str = "441";
    pub const ZONE_BYPASS: &str = "570";
}

/// Qualifier 1: new event or opening. Qualifier 3: restore or closing.
pub const NEW_EVENT: u8 = 1;
pub const CLOSING: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactIdEvent {
    /// The panel's monitoring account: the simulator uses the account id.
    pub account: String,
    pub panel: String,
    pub code: &'static str,
    pub qualifier: u8,
    pub partition: u8,
    /// The user number for user events (CCC), else null.
    pub user: Option<u16>,
    /// The zone number for zone events (CCC), else null.
    pub zone: Option<u16>,
    pub at: DateTime<Utc>,
}
