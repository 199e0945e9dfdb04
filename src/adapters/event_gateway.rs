//! reqwest adapter for the event gateway (`POST /v3/events`).
//!
//! Status handling (docs §3.3, gotcha 11):
//! - 2xx (202, some report 200): delivered.
//! - 403 `SKILL_DISABLED_EXCEPTION`: the customer disabled the skill; the grant is deleted.
//! - Any other 401/403: the token may be stale, or the skill disabled (that has been seen
//!   answered with a bare 401). One forced LWA refresh settles it: `invalid_grant` means
//!   revoked, a new token gets exactly one more attempt.
//! - 429/5xx and transport failures: exponential backoff with jitter, within the budget.
//! - Anything else (400, 404, 413): a problem with this message; logged, not retried.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;

use crate::adapters::lwa::{LwaClient, transport};
use crate::common::deadline::Deadline;
use crate::common::secret::BearerToken;
use crate::domain::ports::event_gateway::{Delivery, EventGateway, GatewayError};
use crate::wire::alexa::Message;

/// ChangeReports are due within 3 s of the change; a send that can't finish in that window
/// gives up rather than holding up the webhook that triggered it.
pub const SEND_BUDGET: Duration = Duration::from_millis(3_000);
/// No single attempt may take more than this, so one hung connection leaves time to retry.
const ATTEMPT_CAP: Duration = Duration::from_millis(2_000);
/// Below this much remaining time another attempt can't finish.
const MIN_ATTEMPT: Duration = Duration::from_millis(200);
const BACKOFF_BASE: Duration = Duration::from_millis(100);

pub struct HttpEventGateway {
    url: String,
    lwa: Arc<LwaClient>,
    http: reqwest::Client,
    budget: Duration,
}

crate::common::secret::debug_without_secrets!(HttpEventGateway { url, budget });

/// How one POST went.
enum Outcome {
    Accepted,
    SkillDisabled,
    Unauthorized {
        status: u16,
        code: String,
    },
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Rejected {
        status: u16,
        code: String,
    },
}

impl HttpEventGateway {
    /// `url` is the region's gateway, e.g. [`crate::adapters::lwa::AlexaRegion::event_gateway_url`];
    /// it must belong to the same region as `lwa`'s tokens.
    pub fn new(url: String, lwa: Arc<LwaClient>, http: reqwest::Client) -> Self {
        HttpEventGateway {
            url,
            lwa,
            http,
            budget: SEND_BUDGET,
        }
    }

    /// Overrides the per-message budget (default [`SEND_BUDGET`]), token fetch included.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    async fn post(&self, token: &BearerToken, body: &Value, timeout: Duration) -> Outcome {
        let sent = self
            .http
            .post(&self.url)
            .bearer_auth(token.expose())
            .json(body)
            .timeout(timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    why: transport(&e),
                    after: None,
                };
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.is_success() {
            return Outcome::Accepted;
        }
        // A body that can't be read is treated as empty: the status decides on its own.
        let bytes = resp.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = error_code(&body["payload"]["code"]);
        match status {
            StatusCode::FORBIDDEN if code == "SKILL_DISABLED_EXCEPTION" => Outcome::SkillDisabled,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::Unauthorized {
                status: status.as_u16(),
                code,
            },
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Outcome::Retry {
                why: format!("HTTP {} {code}", status.as_u16()),
                after: retry_after,
            },
            _ => {
                let description = body["payload"]["description"]
                    .as_str()
                    .map(|d| scrub(d, token))
                    .unwrap_or_default();
                tracing::warn!(
                    status = status.as_u16(),
                    %code,
                    %description,
                    "event gateway rejected the message; not retrying"
                );
                Outcome::Rejected {
                    status: status.as_u16(),
                    code,
                }
            }
        }
    }
}

#[async_trait]
impl EventGateway for HttpEventGateway {
    /// Sends to every grant of the account in this region: one per household member who linked
    /// their own Alexa, so each one's Alexa app shows the change. Sent when at least one
    /// gateway call was accepted; otherwise the first failure.
    async fn send(
        &self,
        account: &str,
        build: &(dyn for<'t> Fn(&'t str) -> Message + Send + Sync),
    ) -> Result<Delivery, GatewayError> {
        let deadline = Deadline::after(self.budget);
        let keys = tokio::time::timeout_at(deadline.instant(), self.lwa.grant_keys(account))
            .await
            .map_err(|_| GatewayError::Unavailable("timed out reading the grants".into()))??;
        let mut outcome: Option<Result<Delivery, GatewayError>> = None;
        for key in &keys {
            let one = self.send_to(account, key, build, deadline).await;
            outcome = match (outcome, one) {
                (Some(Ok(Delivery::Sent)), _) | (_, Ok(Delivery::Sent)) => Some(Ok(Delivery::Sent)),
                (Some(Err(e)), _) => Some(Err(e)),
                (_, other) => Some(other),
            };
        }
        outcome.unwrap_or(Ok(Delivery::NoGrant))
    }
}

impl HttpEventGateway {
    /// One grant's delivery, with its refresh and retries, within the shared `deadline`.
    async fn send_to(
        &self,
        account: &str,
        key: &str,
        build: &(dyn for<'t> Fn(&'t str) -> Message + Send + Sync),
        deadline: Deadline,
    ) -> Result<Delivery, GatewayError> {
        let token =
            tokio::time::timeout_at(deadline.instant(), self.lwa.access_token_at(account, key))
                .await
                .map_err(|_| GatewayError::Unavailable("timed out getting a token".into()))??;
        let Some(mut token) = token else {
            return Ok(Delivery::NoGrant);
        };
        let mut refreshed = false;
        let mut failures: u32 = 0;
        let mut last = String::from("budget exhausted before the first attempt");
        loop {
            let remaining = deadline.remaining();
            if remaining < MIN_ATTEMPT {
                return Err(GatewayError::Unavailable(last));
            }
            let body = build(token.expose()).to_value();
            match self.post(&token, &body, remaining.min(ATTEMPT_CAP)).await {
                Outcome::Accepted => return Ok(Delivery::Sent),
                Outcome::SkillDisabled => {
                    tracing::info!(%account, "event gateway: skill disabled; deleting the grant");
                    self.lwa.revoke_at(account, key).await?;
                    return Err(GatewayError::Revoked);
                }
                Outcome::Unauthorized { status, code } if !refreshed => {
                    refreshed = true;
                    tracing::info!(%account, status, %code, "event gateway refused the token; refreshing it");
                    let fresh = tokio::time::timeout_at(
                        deadline.instant(),
                        self.lwa.force_refresh_at(account, key),
                    )
                    .await
                    .map_err(|_| {
                        GatewayError::Unavailable("timed out refreshing the token".into())
                    })??;
                    match fresh {
                        Some(t) => token = t,
                        None => return Err(GatewayError::Revoked),
                    }
                }
                Outcome::Unauthorized { status, code } => {
                    tracing::warn!(%account, status, %code, "event gateway refused a freshly refreshed token");
                    return Err(GatewayError::Unauthorized { status, code });
                }
                Outcome::Rejected { status, code } => {
                    return Err(GatewayError::Rejected { status, code });
                }
                Outcome::Retry { why, after } => {
                    failures += 1;
                    let wait = backoff(failures).max(after.unwrap_or_default());
                    if deadline.remaining() < wait + MIN_ATTEMPT {
                        tracing::warn!(%account, attempts = failures, %why, "event gateway: giving up within the budget");
                        return Err(GatewayError::Unavailable(why));
                    }
                    tracing::debug!(%account, attempt = failures, %why, "event gateway: retrying");
                    last = why;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Exponential backoff with "equal jitter": half the step fixed, half random, so concurrent
/// senders spread out but every wait still grows.
fn backoff(failures: u32) -> Duration {
    let step = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(6));
    let half = step / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

/// Gateway error codes are UPPER_SNAKE words; anything else is not echoed into errors or logs.
fn error_code(v: &Value) -> String {
    match v.as_str() {
        Some(c)
            if !c.is_empty()
                && c.len() <= 64
                && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            c.to_string()
        }
        _ => "(no code)".to_string(),
    }
}

/// The description is for the log: clipped, and with our own token removed should the gateway
/// ever quote it back.
fn scrub(description: &str, token: &BearerToken) -> String {
    let clipped: String = description.chars().take(300).collect();
    if token.expose().is_empty() {
        clipped
    } else {
        clipped.replace(token.expose(), "[token]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_jittered() {
        for n in 1..=4u32 {
            let step = BACKOFF_BASE * (1 << (n - 1));
            for _ in 0..50 {
                let b = backoff(n);
                assert!(b >= step / 2 && b <= step, "{n}: {b:?}");
            }
        }
    }

    #[test]
    fn error_codes_are_only_echoed_when_plain() {
        assert_eq!(
            error_code(&Value::from("SKILL_DISABLED_EXCEPTION")),
            "SKILL_DISABLED_EXCEPTION"
        );
        assert_eq!(error_code(&Value::from("Atza|x")), "(no code)");
        assert_eq!(error_code(&Value::Null), "(no code)");
        let t = BearerToken::new("Atza|abc");
        assert_eq!(scrub("bad token Atza|abc", &t), "bad token [token]");
    }
}
