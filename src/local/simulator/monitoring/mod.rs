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

pub use crate::wire::dc09::contact_id::{CLOSING, NEW_EVENT, codes};

/// The DC-09 line (`L`) of a household's account that the skill's second path transmits on.
/// The two paths are two lines of one dual-path account, as a dual-path communicator has: the
/// panel cloud's transmitter keeps its own line (`LinkConfig.account_prefix`), the reference
/// cloud reports this one for the skill, and the center tells the paths apart by `L`.
pub const SECOND_PATH_LINE: &str = "2";

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
        crate::wire::dc09::contact_id::is_user_event(code)
    }
}
