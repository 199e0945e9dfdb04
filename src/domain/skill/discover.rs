use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::domain::ports::panel::PanelError;
use crate::wire::alexa::{ErrorType, Message};

use super::Skill;
use super::endpoints::{MAX_ENDPOINTS, endpoints_of};

impl Skill {
    /// Discover.Response. A token or account problem gives an empty list, never an error:
    /// Amazon's rule for discovery, and an error here could get the account unlinked. A panel
    /// cloud outage is not an account problem and is reported as BRIDGE_UNREACHABLE, so Alexa
    /// doesn't conclude the household has no devices.
    pub(super) async fn discover(&self, token: &BearerToken, deadline: Deadline) -> Message {
        let identity = match self.identify(token).await {
            Ok(i) => i,
            Err((kind, why)) => {
                tracing::warn!(error_type = kind.code(), %why, "discovery without a usable token");
                return Message::discover_response(vec![]);
            }
        };
        let panels = match self.deps.panels.panels(&identity.account, deadline).await {
            Ok(p) => p,
            Err(PanelError::NotFound) => vec![],
            Err(e) => {
                tracing::error!(error = %e, "discovery: panel cloud failed");
                let (kind, text) = match e {
                    PanelError::Unauthorized | PanelError::Protocol(_) => {
                        (ErrorType::InternalError, e.to_string())
                    }
                    _ => (ErrorType::BridgeUnreachable, e.to_string()),
                };
                return Message::error(&kind, &text, None, None);
            }
        };
        self.confirm_owned(&identity.account, &panels).await;
        let mut endpoints: Vec<_> = panels
            .iter()
            .flat_map(|p| endpoints_of(p, &self.settings.manufacturer_name))
            .collect();
        if endpoints.len() > MAX_ENDPOINTS {
            tracing::warn!(
                count = endpoints.len(),
                "more endpoints than Alexa allows; truncated"
            );
            endpoints.truncate(MAX_ENDPOINTS);
        }
        Message::discover_response(endpoints)
    }
}
