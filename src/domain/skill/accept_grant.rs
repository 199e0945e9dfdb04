use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::wire::alexa::{ErrorType, Message};

use super::Skill;

impl Skill {
    /// AcceptGrant: exchange the code for event-gateway tokens of the grantee's account. Every
    /// failure is ACCEPT_GRANT_FAILED, the only error type Alexa.Authorization defines.
    pub(super) async fn accept_grant(
        &self,
        code: &BearerToken,
        grantee: &BearerToken,
        deadline: Deadline,
    ) -> Message {
        let failed = |why: String| {
            tracing::warn!(%why, "AcceptGrant failed");
            Message::error(&ErrorType::AcceptGrantFailed, &why, None, None)
        };
        let identity = match self.identify(grantee).await {
            Ok(i) => i,
            Err((_, why)) => return failed(format!("grantee token rejected: {why}")),
        };
        match self
            .deps
            .grants
            .accept_for_user(&identity.account, &identity.subject, code, deadline)
            .await
        {
            Ok(()) => Message::accept_grant_response(),
            Err(e) => failed(e.to_string()),
        }
    }
}
