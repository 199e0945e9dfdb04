//! Alexa skill events (crate::wire::alexa::skill_event): a customer who disables the skill (which also
//! unlinks the account) gets their own Alexa grant deleted at once (the other members of the
//! household keep theirs), so the event gateway's tokens stop being used, without waiting for a ChangeReport to be refused with SKILL_DISABLED (which
//! the event gateway handles too, as the fallback).

use serde_json::{Value, json};

use super::Skill;
use crate::wire::alexa::skill_event::{self, Kind, SkillEvent};

impl Skill {
    /// Handles a skill event. Never fails: Alexa ignores the reply, and a failure is logged (the
    /// gateway's SKILL_DISABLED handling still deletes the grant later).
    pub async fn skill_event(&self, event: &Value) -> Value {
        let Some(e) = skill_event::parse(event) else {
            return json!({});
        };
        match &e.kind {
            Kind::Disabled => self.skill_disabled(&e).await,
            Kind::AccountLinked => {
                tracing::info!(request_id = %e.request_id, "skill event: account linked")
            }
            Kind::Other(kind) => {
                tracing::info!(request_id = %e.request_id, %kind, "skill event ignored")
            }
        }
        json!({})
    }

    async fn skill_disabled(&self, e: &SkillEvent) {
        let Some(token) = &e.access_token else {
            tracing::info!(request_id = %e.request_id, "skill disabled by a customer who never linked");
            return;
        };
        let identity = match self.authenticate(token).await {
            Ok(identity) => identity,
            Err(why) => {
                tracing::warn!(request_id = %e.request_id, reason = %why, "skill disabled: the event's token names no account; the grant goes at the next refused report");
                return;
            }
        };
        let account = &identity.account;
        // That user's grants only, in every region: where several logins share one household
        // (OAUTH_ACCOUNT_CLAIM), one member disabling the skill must not stop the others'
        // ChangeReports.
        match self
            .deps()
            .grants
            .revoke_for_user(account, &identity.subject)
            .await
        {
            Ok(deleted) => {
                tracing::info!(%account, deleted, "skill disabled: the user's Alexa grant deleted")
            }
            Err(why) => {
                tracing::error!(%account, error = %why, "skill disabled: could not delete the user's grant")
            }
        }
    }
}
