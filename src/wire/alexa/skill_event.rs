//! Alexa skill events: what Alexa sends when a customer enables or disables the skill, or links
//! their account (`request.type` `AlexaSkillEvent.*`, delivered to the skill's Lambda once the
//! manifest's `events.subscriptions` names them). They are not directives: the reply is ignored.
//!
//! ```json
//! { "version": "1.0",
//!   "context": { "System": { "application": { "applicationId": "amzn1.ask.skill.…" },
//!                            "user": { "userId": "amzn1.ask.account.…", "accessToken": "…" } } },
//!   "request": { "type": "AlexaSkillEvent.SkillDisabled", "requestId": "…", "timestamp": "…",
//!                "eventCreationTime": "…", "eventPublishingTime": "…",
//!                "body": { "userInformationPersistenceStatus": "NOT_PERSISTED" } } }
//! ```
//!
//! `user.accessToken` is the account-linking token Alexa holds for the customer, present when
//! they had linked: it names our account. Disabling the skill also unlinks the account, and no
//! separate event exists for an unlink.

use serde_json::Value;

use crate::common::secret::BearerToken;

pub const PREFIX: &str = "AlexaSkillEvent.";
pub const SKILL_DISABLED: &str = "AlexaSkillEvent.SkillDisabled";
pub const SKILL_ACCOUNT_LINKED: &str = "AlexaSkillEvent.SkillAccountLinked";
pub const SKILL_ENABLED: &str = "AlexaSkillEvent.SkillEnabled";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The customer disabled the skill (which unlinks the account too).
    Disabled,
    /// The customer linked their account (again).
    AccountLinked,
    /// Enabled, permission changes, or an event type this skill never subscribed to.
    Other(String),
}

#[derive(Debug)]
pub struct SkillEvent {
    pub kind: Kind,
    pub request_id: String,
    /// The skill the event is for (`context.System.application.applicationId`).
    pub application_id: Option<String>,
    /// The account-linking token, when the customer had linked.
    pub access_token: Option<BearerToken>,
}

/// Whether `v` is a skill event rather than a Smart Home directive.
pub fn is_skill_event(v: &Value) -> bool {
    v["request"]["type"]
        .as_str()
        .is_some_and(|t| t.starts_with(PREFIX))
}

/// The event's fields this skill uses; `None` when `v` is not a skill event.
pub fn parse(v: &Value) -> Option<SkillEvent> {
    let kind = v["request"]["type"]
        .as_str()
        .filter(|t| t.starts_with(PREFIX))?;
    let system = &v["context"]["System"];
    // The short field cap keeps a hostile body's junk out of the logs.
    let short = |s: &Value| {
        s.as_str()
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .map(str::to_string)
    };
    Some(SkillEvent {
        kind: match kind {
            SKILL_DISABLED => Kind::Disabled,
            SKILL_ACCOUNT_LINKED => Kind::AccountLinked,
            other => Kind::Other(other.chars().take(64).collect()),
        },
        request_id: short(&v["request"]["requestId"]).unwrap_or_default(),
        application_id: short(&system["application"]["applicationId"]),
        access_token: system["user"]["accessToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(BearerToken::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_skill_disabled_event_is_told_from_a_directive() {
        let e = json!({
            "version": "1.0",
            "context": {"System": {"application": {"applicationId": "amzn1.ask.skill.1"},
                                   "user": {"userId": "amzn1.ask.account.X", "accessToken": "tok"}}},
            "request": {"type": SKILL_DISABLED, "requestId": "r1", "timestamp": "2026-01-01T00:00:00Z",
                        "body": {"userInformationPersistenceStatus": "NOT_PERSISTED"}}
        });
        assert!(is_skill_event(&e));
        let p = parse(&e).unwrap();
        assert_eq!(p.kind, Kind::Disabled);
        assert_eq!(p.request_id, "r1");
        assert_eq!(p.application_id.as_deref(), Some("amzn1.ask.skill.1"));
        assert_eq!(p.access_token.unwrap().expose(), "tok");
        let directive =
            json!({"directive": {"header": {"namespace": "Alexa", "name": "ReportState"}}});
        assert!(!is_skill_event(&directive));
        assert!(parse(&directive).is_none());
        let custom = json!({"request": {"type": "IntentRequest"}});
        assert!(!is_skill_event(&custom));
    }
}
