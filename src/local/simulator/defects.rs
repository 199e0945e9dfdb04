//! Deliberate contract violations, for the conformance kit's own tests: each one breaks one rule
//! of docs/panel-api.md's vendor checklist, so the test can show that the kit's check for that
//! rule fails. All off by default; `POST /sim/defects` or [`super::Simulator::set_defects`]
//! turns them on. Local stack only, like the whole simulator.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::monitoring::{ContactIdEvent, NEW_EVENT, codes};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defects {
    /// Acts on any account's panel: a foreign panel is found instead of 404.
    pub ignore_account: bool,
    /// Forgets request ids: a repeated arm or disarm acts again.
    pub no_idempotency: bool,
    /// Raises a 121 on every duress call instead of once per request id.
    pub duress_every_time: bool,
    /// Sends a cancel (406) after a duress disarm.
    pub cancel_duress: bool,
    /// Extra work for a duress disarm, in milliseconds.
    pub duress_delay_ms: u64,
    /// Extra durable writes for a duress decision: each one more journal record, written and
    /// synced before the answer (the regression of a cloud that queues its 121 in a write a
    /// normal disarm doesn't make).
    pub duress_extra_syncs: u32,
    /// The household's notification for a duress disarm differs.
    pub duress_notice: bool,
    /// Answers an unknown panel with `404 {"error":"not_found"}` instead of `panel_not_found`.
    pub wrong_not_found: bool,
    /// Accepts any API key.
    pub accept_any_key: bool,
    /// The users route is missing (404).
    pub no_users_route: bool,
    /// The users route answers the contract from before stable user ids and revisions.
    pub users_without_ids: bool,
    /// Answers the panel list this many milliseconds late.
    pub slow_list_ms: u64,
    /// Signs test-mode webhook deliveries with the wrong key.
    pub bad_signatures: bool,
    /// Sends every webhook event with the same event id.
    pub reused_event_ids: bool,
    /// `GET .../panels/{panel}` replies lack `supported_arm_states` (a shape off the contract).
    pub missing_field: bool,
    /// Stamps a duress's 121 with when the request came instead of its `occurred_at`.
    pub stale_occurrence: bool,
    /// `GET .../panels/{panel}` replies carry monitoring details off the formats (an account
    /// that is not hex).
    pub bad_monitoring: bool,
}

/// The event id every event gets under [`Defects::reused_event_ids`].
pub const REUSED_EVENT_ID: &str = "00000000-0000-0000-0000-000000000001";

impl Defects {
    pub fn duress_delay(&self) -> Duration {
        Duration::from_millis(self.duress_delay_ms)
    }

    pub fn slow_list(&self) -> Duration {
        Duration::from_millis(self.slow_list_ms)
    }

    /// The cancel a broken cloud sends after a duress disarm.
    pub fn cancel_after_duress(
        &self,
        account: &str,
        panel: &str,
        user: Option<u16>,
        at: DateTime<Utc>,
    ) -> Option<ContactIdEvent> {
        self.cancel_duress.then(|| ContactIdEvent {
            account: account.to_string(),
            panel: panel.to_string(),
            code: codes::CANCEL.to_string(),
            qualifier: NEW_EVENT,
            partition: 1,
            user,
            zone: None,
            at,
        })
    }
}
