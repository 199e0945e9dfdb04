use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::wire::alexa::{Context, EndpointRef, Message};

use super::endpoints::{panel_properties, zone_properties};
use super::{Fail, Skill, find_zone, no_such_endpoint, panel_failure};

impl Skill {
    /// StateReport with every property of the endpoint. An offline panel still gets a report,
    /// with its last known state and connectivity UNREACHABLE, as Amazon suggests.
    pub(super) async fn report_state(
        &self,
        correlation: Option<&str>,
        endpoint_id: &str,
        token: &BearerToken,
        deadline: Deadline,
    ) -> Result<Message, Fail> {
        let identity = self.identify(token).await?;
        let target =
            EndpointRef::parse(endpoint_id).ok_or_else(|| no_such_endpoint(endpoint_id))?;
        let panel = self
            .read_panel(&identity.account, target.panel_id(), deadline)
            .await
            .map_err(|e| panel_failure(endpoint_id, target.panel_id(), &e))?;
        let properties = match &target {
            EndpointRef::Panel { .. } => panel_properties(&panel),
            EndpointRef::Zone { zone, .. } => {
                let z = find_zone(&panel, zone).ok_or_else(|| no_such_endpoint(endpoint_id))?;
                zone_properties(&panel, z)
            }
        };
        Ok(Message::state_report(
            correlation,
            endpoint_id,
            Context { properties },
        ))
    }
}
