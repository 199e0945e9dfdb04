//! The monitoring center: a SIA DC-09 receiver ([`receiver`]) in front of the operator's logic
//! ([`center`]): every Contact ID event it accepted (`GET /sim/monitoring`), what it dispatched
//! and why, and its supervision of pending alarms (crash-and-smash).
//!
//! Contact ID (SIA DC-05): event code, qualifier, partition, user or zone number.

pub mod center;
pub mod receiver;

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::ports::monitoring::MonitoringLink;

pub use center::{Dispatch, DispatchReason, MonitoringCenter, Subscriber};

pub use crate::wire::dc09::contact_id::{CLOSING, NEW_EVENT, codes};

/// The DC-09 line (`L`) of a household's account that the skill's second path transmits on.
/// The two paths are two lines of one dual-path account, as a dual-path communicator has: the
/// panel cloud's transmitter keeps its own line (`LinkConfig.account_prefix`), the reference
/// cloud reports this one for the skill, and the center tells the paths apart by `L`.
pub const SECOND_PATH_LINE: &str = "2";

/// The name the local stack's DC-09 key (`--dc09-key`) goes by as a monitoring link's `key_ref`:
/// the skill reads the key under this name, never from a response body.
pub const SECOND_PATH_KEY_REF: &str = "dc09-key";

/// The second path as the reference cloud reports it for every panel this center monitors
/// (`Panel.monitoring`): the local stack's setting `Options::second_path` (docs/local-stack.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecondPath {
    /// This center's DC-09 receiver.
    pub receiver: SocketAddr,
    pub receiver_number: Option<String>,
    /// [`SECOND_PATH_KEY_REF`] when the link is encrypted.
    pub key_ref: Option<String>,
}

impl SecondPath {
    /// The monitoring details of the panel whose DC-09 account is `account`: this receiver, on
    /// [`SECOND_PATH_LINE`].
    pub fn link(&self, account: &str) -> MonitoringLink {
        MonitoringLink {
            receiver: self.receiver.to_string(),
            account: account.to_string(),
            line: SECOND_PATH_LINE.to_string(),
            receiver_number: self.receiver_number.clone(),
            key_ref: self.key_ref.clone(),
        }
    }
}

/// Which transmitter carried an event to the center, told apart by the frame's line (`L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventPath {
    /// The panel cloud's link (its own line, `LinkConfig.account_prefix`; any line other than
    /// [`SECOND_PATH_LINE`], and events handed over in-process).
    PanelCloud,
    /// The skill's second path ([`SECOND_PATH_LINE`]).
    SecondPath,
}

impl EventPath {
    pub fn of_line(line: &str) -> EventPath {
        if line.eq_ignore_ascii_case(SECOND_PATH_LINE) {
            EventPath::SecondPath
        } else {
            EventPath::PanelCloud
        }
    }
}

/// One event as the center received it: `GET /sim/monitoring` and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedEvent {
    #[serde(flatten)]
    pub event: ContactIdEvent,
    pub path: EventPath,
    /// The other path's copy of a duress already dispatched: received and ACKed, never
    /// dispatched again (docs/panel-api.md, "Merging the two paths").
    pub merged: bool,
    /// For the second path's communication trouble (350): the time of occurrence of the panel
    /// cloud's first later report for the panel (its path works again), else null.
    pub cleared_at: Option<DateTime<Utc>>,
}

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
