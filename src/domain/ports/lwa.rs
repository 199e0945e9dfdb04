//! Login with Amazon: AcceptGrant's code exchange and the refresh of event-gateway tokens.

use async_trait::async_trait;

use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::domain::ports::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// LWA refused the code (`invalid_grant`: bad, expired or already used).
    #[error("grant rejected: {0}")]
    Rejected(String),
    #[error("Login with Amazon unreachable: {0}")]
    Unavailable(String),
    #[error("could not store the tokens: {0}")]
    Store(String),
}

/// Turns AcceptGrant's authorization code into stored event-gateway tokens for `account`.
#[async_trait]
pub trait GrantExchange: Send + Sync {
    async fn accept(
        &self,
        account: &str,
        code: &BearerToken,
        deadline: Deadline,
    ) -> Result<(), GrantError>;

    /// The same, kept as the grant of `user` (the account-linking subject of the Alexa user
    /// who linked): every member who links their own Alexa to the household gets their own
    /// grant, so each one's Alexa gets the ChangeReports.
    async fn accept_for_user(
        &self,
        account: &str,
        user: &str,
        code: &BearerToken,
        deadline: Deadline,
    ) -> Result<(), GrantError> {
        let _ = user;
        self.accept(account, code, deadline).await
    }

    /// Deletes the grants of `user` (the account-linking subject of the Alexa user who disabled
    /// the skill) in every region: the other members' grants, and their ChangeReports, stay. A
    /// grant from before grants were per user names no user and stays too; if it was this
    /// user's, the next refused report deletes it. The number deleted.
    async fn revoke_for_user(&self, account: &str, user: &str) -> Result<usize, LwaError>;
}

/// Why a stored grant gave no access token; the event gateway's reason too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LwaError {
    /// Network failure, timeout, 429 or 5xx: worth trying again later.
    #[error("Login with Amazon unreachable: {0}")]
    Unavailable(String),
    /// LWA refused the request for a reason other than `invalid_grant` (e.g. `invalid_client`:
    /// a configuration error), or answered with something that isn't a token response.
    #[error("Login with Amazon refused the request: {0}")]
    Refused(String),
    #[error("token store: {0}")]
    Store(#[from] StoreError),
    /// The sealed tokens don't open (their pepper left the keyring, or the row was tampered
    /// with). Not deleted automatically: a keyring misconfiguration must not wipe every grant.
    #[error("stored tokens cannot be opened with the current keyring")]
    Unreadable,
}
