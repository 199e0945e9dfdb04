//! The Alexa event gateway: where ChangeReports, AddOrUpdateReports and DeleteReports go.
//!
//! [`EventGateway`] is the port; [`crate::adapters::event_gateway::HttpEventGateway`] posts to
//! Amazon's regional gateway (or the local stack's fake) with the account's Login-with-Amazon
//! token from [`crate::adapters::lwa`].

use async_trait::async_trait;

use crate::domain::ports::lwa::LwaError;
use crate::wire::alexa::Message;

/// What happened to a message that didn't fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The gateway accepted it (202).
    Sent,
    /// Skipped: the account has no event-gateway grant in this region (it never accepted the
    /// permission, or disabled the skill).
    NoGrant,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no event-gateway token: {0}")]
    Token(#[from] LwaError),
    /// The customer disabled the skill (403 SKILL_DISABLED_EXCEPTION, or a refused token whose
    /// refresh returned invalid_grant). The grant has been deleted.
    #[error("the skill is disabled for this account; its grant was deleted")]
    Revoked,
    /// 401/403 even with a freshly refreshed token (e.g. INSUFFICIENT_PERMISSION_EXCEPTION).
    #[error("event gateway refused the token: HTTP {status} {code}")]
    Unauthorized { status: u16, code: String },
    /// The message itself was refused (400, 404, 413, ...). Retrying the same message won't help.
    #[error("event gateway rejected the message: HTTP {status} {code}")]
    Rejected { status: u16, code: String },
    /// 429/5xx or transport failures until the budget ran out.
    #[error("event gateway unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait EventGateway: Send + Sync {
    /// Sends the message `build` makes for `account`. `build` receives the LWA access token and
    /// must put it in the message's scope (`endpoint.scope` for a ChangeReport, `payload.scope`
    /// for AddOrUpdateReport and DeleteReport); it may be called more than once, because a
    /// refreshed token needs a rebuilt message.
    ///
    /// The `for<'t>` is spelled out because `#[async_trait]` would otherwise tie the `&str` to
    /// one of its generated lifetimes, and the token passed in couldn't be replaced.
    async fn send(
        &self,
        account: &str,
        build: &(dyn for<'t> Fn(&'t str) -> Message + Send + Sync),
    ) -> Result<Delivery, GatewayError>;
}
