//! The monitoring center: a SIA DC-09 receiver ([`receiver`]) in front of the operator's logic
//! ([`center`]): every Contact ID event it accepted (`GET /sim/monitoring`), what it dispatched
//! and why, and its supervision of pending alarms (crash-and-smash).
//!
//! Contact ID (SIA DC-05): event code, qualifier, partition, user or zone number.

pub mod center;
pub mod receiver;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use center::{Dispatch, DispatchReason, MonitoringCenter, Subscriber};

/// Contact ID event codes the reference panel cloud reports.
pub mod codes {
    /// Duress, with the user number.
    pub const DURESS: &str = "121";
    /// Burglary, with the zone number.
    pub const BURGLARY: &str = "130";
    /// Burglary "near alarm", with the zone number: an armed entry zone opened and the entry
    /// delay runs. Sent at once so the receiver can supervise the entry (crash-and-smash):
    /// Contact ID has no dedicated "pending alarm" event, and 138 is the burglary event a
    /// receiver already treats as "may become an alarm".
    pub const NEAR_ALARM: &str = "138";
    /// Open/close by user: qualifier 1 = open (disarm), 3 = close (arm away).
    pub const OPEN_CLOSE_BY_USER: &str = "401";
    /// Cancel by user: an alarm that was transmitted is called off by a user code.
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
    /// The household's account at the panel cloud (the receiver's subscriber record maps the
    /// DC-09 account number to it).
    pub account: String,
    pub panel: String,
    pub code: String,
    pub qualifier: u8,
    pub partition: u8,
    /// The user number for user events (CCC), else null.
    pub user: Option<u16>,
    /// The zone number for zone events (CCC), else null.
    pub zone: Option<u16>,
    /// When the event occurred at the premises.
    pub at: DateTime<Utc>,
}

impl ContactIdEvent {
    /// Whether CCC is a user number (open/close, cancel, duress) rather than a zone.
    pub fn is_user_event(code: &str) -> bool {
        code == codes::DURESS || code.starts_with('4')
    }
}
