use crate::alexa::{ArmTarget, Context, ErrorType, Message};
use crate::deadline::Deadline;
use crate::panel::{ArmMode, ArmRequest, ArmState, Panel, Phase, Source};
use crate::secret::BearerToken;

use super::endpoints::panel_properties;
use super::{Fail, Skill, named, panel_failure, panel_target};

fn mode(target: ArmTarget) -> ArmMode {
    match target {
        ArmTarget::Away => ArmMode::Away,
        ArmTarget::Stay => ArmMode::Stay,
        ArmTarget::Night => ArmMode::Night,
    }
}

/// Seconds until the panel is armed: what `exitDelayInSeconds` means.
fn exit_delay(p: &Panel) -> u32 {
    if p.phase == Phase::ExitDelay {
        p.delay_remaining_s
    } else {
        0
    }
}

impl Skill {
    /// Arm. Rules (alexa-security-panel.md §1.7, gotcha 4):
    /// - arming into the current state succeeds without touching the panel;
    /// - ARMED_AWAY → STAY or NIGHT needs a disarm first (AUTHORIZATION_REQUIRED);
    /// - every other armed → armed change is allowed;
    /// - open zones, alarms and trouble are refused by the panel and mapped to Alexa's types.
    ///
    /// Alexa never sends a PIN with Arm, so none is asked for.
    pub(super) async fn arm(
        &self,
        correlation: Option<&str>,
        endpoint_id: &str,
        token: &BearerToken,
        target: ArmTarget,
        bypass_all: bool,
        deadline: Deadline,
    ) -> Result<Message, Fail> {
        let identity = self.identify(token).await?;
        let panel_id = panel_target(endpoint_id)?;
        let panels = &self.deps.panels;
        let fail = |e| panel_failure(endpoint_id, &panel_id, &e);
        let current = panels
            .panel(&identity.account, &panel_id, deadline)
            .await
            .map_err(fail)?;
        if !current.online {
            return Err((
                ErrorType::EndpointUnreachable,
                "the panel is offline".to_string(),
            ));
        }
        let wanted = mode(target).state();
        if current.arm_state == wanted {
            return Ok(Message::arm_response(
                correlation,
                endpoint_id,
                exit_delay(&current),
                &[],
                Context {
                    properties: panel_properties(&current),
                },
            ));
        }
        if current.arm_state == ArmState::ArmedAway && wanted != ArmState::ArmedAway {
            return Err((
                ErrorType::AuthorizationRequired,
                "the system is armed away; disarm before arming in another mode".to_string(),
            ));
        }
        if !current.supported_arm_states.contains(&wanted) {
            return Err((
                ErrorType::InvalidValue,
                format!("the panel does not support {}", target.alexa_name()),
            ));
        }
        let request = ArmRequest {
            mode: mode(target),
            bypass_open_zones: bypass_all,
            source: Source::Voice,
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let outcome = panels
            .arm(&identity.account, &panel_id, &request, deadline)
            .await
            .map_err(fail)?;
        Ok(Message::arm_response(
            correlation,
            endpoint_id,
            exit_delay(&outcome.panel),
            &named(&panel_id, &outcome.bypassed),
            Context {
                properties: panel_properties(&outcome.panel),
            },
        ))
    }
}
