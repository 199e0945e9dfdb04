//! What the household's Echo devices play: the port through which the skill reports the alerts
//! of Amazon's `Alexa.SecurityPanelController.Alert` interface (1.1) as they start and stop.
//!
//! Only the interface's documented rules are modelled ([`crate::domain::echo_alerts`],
//! docs/echo-alerts.md). The messages Alexa takes them in (discovery capability, event names,
//! payload fields) could not be confirmed from Amazon's docs, so production's adapter
//! ([`crate::adapters::echo_alerts::Unannounced`]) sends nothing yet; the local stack's records
//! them for its console.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// An alert an Echo device plays. Declared in Amazon's order of precedence, lowest first, so
/// `Ord` ranks them: when several are reported, Alexa plays the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alert {
    /// A sensor's tone (about 1 s, expires after 5 s); plays only when nothing else does.
    Chime,
    /// Reminder chirps to leave before the panel arms.
    ExitDelay,
    /// Reminder chirps to disarm before the siren sounds.
    EntryDelay,
    /// Looping while the panel sounds an alarm, at most 10 minutes.
    Siren,
}

impl Alert {
    /// How the console and the docs name it.
    pub fn label(self) -> &'static str {
        match self {
            Alert::Chime => "chime",
            Alert::ExitDelay => "exit delay",
            Alert::EntryDelay => "entry delay",
            Alert::Siren => "siren",
        }
    }
}

/// One alert starting or stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AlertChange {
    /// Starts, to play for at most `max_play_s` seconds.
    Start { alert: Alert, max_play_s: u32 },
    /// The panel's state ended it before its maximum play time.
    Stop { alert: Alert },
}

/// What plays once an update is applied, with Amazon's precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Playing {
    pub alert: Alert,
    pub max_play_s: u32,
}

/// The alerts one panel event starts and stops on the household's Echo devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertUpdate {
    pub panel: String,
    /// When the panel changed (the event's `occurred_at`).
    pub at: DateTime<Utc>,
    /// Stops first, then starts, each in order of precedence, highest first.
    pub changes: Vec<AlertChange>,
    /// What the Echo devices play after the changes; `None`: silent.
    pub playing: Option<Playing>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EchoAlertError {
    /// The update could not be delivered; alerts are best effort, like ChangeReports.
    #[error("echo alerts not delivered: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait EchoAlerts: Send + Sync {
    /// Reports one update for `account`'s Echo devices.
    async fn report(&self, account: &str, update: &AlertUpdate) -> Result<(), EchoAlertError>;
}
