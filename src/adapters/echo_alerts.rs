//! The Echo devices' alerts ([`crate::domain::ports::echo_alerts`]) towards Alexa.
//!
//! **This is where the adapter for `Alexa.SecurityPanelController.Alert` (1.1) goes** once
//! Amazon's message format is confirmed: the discovery capability (and its configuration), the
//! names of the events or properties that report an alert, and their payload fields. None of
//! them could be confirmed from Amazon's docs (docs/echo-alerts.md says what was and wasn't), so
//! nothing is sent, discovery does not advertise the interface, and no field is guessed. The
//! adapter will build its messages in `crate::wire::alexa` and send them through the
//! [`crate::domain::ports::event_gateway::EventGateway`], as ChangeReports are.

use async_trait::async_trait;

use crate::domain::ports::echo_alerts::{AlertUpdate, EchoAlertError, EchoAlerts};

/// Production's sink until the wire format is confirmed: the updates are derived and dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unannounced;

#[async_trait]
impl EchoAlerts for Unannounced {
    async fn report(&self, _account: &str, _update: &AlertUpdate) -> Result<(), EchoAlertError> {
        Ok(())
    }
}
