use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::domain::ports::panel::{
    ArmMode, ArmRequest, ArmState, Panel, PanelError, Phase, Source, ZoneRef,
};
use crate::wire::alexa::{ArmTarget, Context, ErrorType, Message};

use super::endpoints::panel_properties;
use super::{Fail, Skill, named, panel_failure, panel_target};

/// Below this much time the panel client makes no attempt at all (its own floor is 250 ms): an
/// arm that was never sent must not be answered [`ArmFailure::Unanswered`].
const ARM_CALL_MIN: std::time::Duration = std::time::Duration::from_millis(300);

fn mode(target: ArmTarget) -> ArmMode {
    match target {
        ArmTarget::Away => ArmMode::Away,
        ArmTarget::Stay => ArmMode::Stay,
        ArmTarget::Night => ArmMode::Night,
    }
}

/// Seconds until the panel is armed: what `exitDelayInSeconds` (Alexa) and `exitAllowance`
/// (Google) mean.
pub fn exit_delay(p: &Panel) -> u32 {
    if p.phase == Phase::ExitDelay {
        p.delay_remaining_s
    } else {
        0
    }
}

/// Why an arm request was not carried out, whichever assistant asked.
#[derive(Debug)]
pub enum ArmFailure {
    /// The panel cloud reports the panel offline.
    Offline,
    /// Armed away: leaving it for another mode needs a disarm (with a code) first.
    AwayNeedsDisarm,
    /// The panel has no such mode.
    Unsupported(ArmMode),
    /// The arm request went to the cloud, which did not answer it before the deadline: it may
    /// be under way (the cloud deduplicates its request id), its result is the webhook's.
    Unanswered,
    Panel(PanelError),
}

/// The panel after an arm request: `already` when it was in that mode and nothing was sent.
#[derive(Debug)]
pub struct Armed {
    pub panel: Panel,
    pub bypassed: Vec<ZoneRef>,
    pub already: bool,
}

impl Skill {
    /// Alexa's Arm: the assistant-neutral [`Skill::arm_panel`], translated.
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
        let armed = self
            .arm_panel(
                &identity.account,
                &panel_id,
                mode(target),
                bypass_all,
                deadline,
            )
            .await
            .map_err(|f| match f {
                ArmFailure::Offline => (
                    ErrorType::EndpointUnreachable,
                    "the panel is offline".to_string(),
                ),
                ArmFailure::AwayNeedsDisarm => (
                    ErrorType::AuthorizationRequired,
                    "the system is armed away; disarm before arming in another mode".to_string(),
                ),
                ArmFailure::Unsupported(_) => (
                    ErrorType::InvalidValue,
                    format!("the panel does not support {}", target.alexa_name()),
                ),
                ArmFailure::Unanswered => {
                    panel_failure(endpoint_id, &panel_id, &PanelError::Timeout)
                }
                ArmFailure::Panel(e) => panel_failure(endpoint_id, &panel_id, &e),
            })?;
        Ok(Message::arm_response(
            correlation,
            endpoint_id,
            exit_delay(&armed.panel),
            &named(&panel_id, &armed.bypassed),
            Context {
                properties: panel_properties(&armed.panel),
            },
        ))
    }

    /// Arm, for every assistant. Rules (alexa-security-panel.md §1.7, gotcha 4):
    /// - arming into the current state succeeds without touching the panel;
    /// - ARMED_AWAY → STAY or NIGHT needs a disarm first;
    /// - every other armed → armed change is allowed;
    /// - open zones, alarms and trouble are refused by the panel (as [`ArmFailure::Panel`]).
    pub async fn arm_panel(
        &self,
        account: &str,
        panel_id: &str,
        mode: ArmMode,
        bypass_open_zones: bool,
        deadline: Deadline,
    ) -> Result<Armed, ArmFailure> {
        let panels = &self.deps.panels;
        let current = self
            .read_panel(account, panel_id, deadline)
            .await
            .map_err(ArmFailure::Panel)?;
        if !current.online {
            return Err(ArmFailure::Offline);
        }
        let wanted = mode.state();
        if current.arm_state == wanted {
            return Ok(Armed {
                panel: current,
                bypassed: vec![],
                already: true,
            });
        }
        if current.arm_state == ArmState::ArmedAway && wanted != ArmState::ArmedAway {
            return Err(ArmFailure::AwayNeedsDisarm);
        }
        if !current.supported_arm_states.contains(&wanted) {
            return Err(ArmFailure::Unsupported(mode));
        }
        if deadline.remaining() < ARM_CALL_MIN {
            // Not even sent: no answer may say it is under way.
            return Err(ArmFailure::Panel(PanelError::Timeout));
        }
        let request = ArmRequest {
            mode,
            bypass_open_zones,
            source: Source::Voice,
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let outcome = panels
            .arm(account, panel_id, &request, deadline)
            .await
            .map_err(|e| match e {
                PanelError::Timeout => ArmFailure::Unanswered,
                e => ArmFailure::Panel(e),
            })?;
        Ok(Armed {
            panel: outcome.panel,
            bypassed: outcome.bypassed,
            already: false,
        })
    }
}
