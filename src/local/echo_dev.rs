//! The household's Echo devices, for the local stack: the sink of the alerts the webhook
//! derives ([`crate::domain::ports::echo_alerts`]), recording what every Echo of the household
//! would play, for the console and the tests. Production sends these nowhere yet
//! (`crate::adapters::echo_alerts`, docs/echo-alerts.md).
//!
//! - `GET /dev/echo`: `{"updates": [...]}`, oldest first: each update with its `account`,
//!   `panel`, `at`, `changes`, `playing`, and `says`, the lines the console shows ("exit delay,
//!   60 s", "siren", "entry delay stopped").

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::domain::ports::echo_alerts::{
    Alert, AlertChange, AlertUpdate, EchoAlertError, EchoAlerts,
};

/// Updates kept; the oldest give way, so a stack left running doesn't grow without bound.
const KEPT: usize = 1_000;

#[derive(Debug, Default)]
pub struct DevEcho {
    updates: Mutex<VecDeque<(String, AlertUpdate)>>,
}

/// How the console names an alert starting: a delay with its length, the others by name.
fn started(alert: Alert, max_play_s: u32) -> String {
    match alert {
        Alert::EntryDelay | Alert::ExitDelay => format!("{}, {max_play_s} s", alert.label()),
        Alert::Siren | Alert::Chime => alert.label().to_string(),
    }
}

/// The lines the console shows for one update.
pub fn says(update: &AlertUpdate) -> Vec<String> {
    update
        .changes
        .iter()
        .map(|c| match *c {
            AlertChange::Start { alert, max_play_s } => started(alert, max_play_s),
            AlertChange::Stop { alert } => format!("{} stopped", alert.label()),
        })
        .collect()
}

impl DevEcho {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every update reported, oldest first, as `GET /dev/echo` serves them.
    pub fn updates(&self) -> Vec<Value> {
        self.updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(account, u)| {
                json!({
                    "account": account,
                    "panel": u.panel,
                    "at": u.at,
                    "changes": u.changes,
                    "playing": u.playing.map(|p| started(p.alert, p.max_play_s)),
                    "says": says(u),
                })
            })
            .collect()
    }
}

#[async_trait]
impl EchoAlerts for DevEcho {
    async fn report(&self, account: &str, update: &AlertUpdate) -> Result<(), EchoAlertError> {
        let mut kept = self.updates.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((account.to_string(), update.clone()));
        Ok(())
    }
}

async fn updates(State(echo): State<Arc<DevEcho>>) -> axum::Json<Value> {
    axum::Json(json!({ "updates": echo.updates() }))
}

/// `GET /dev/echo`.
pub fn routes(echo: Arc<DevEcho>) -> Router {
    Router::new()
        .route("/dev/echo", get(updates))
        .with_state(echo)
}
