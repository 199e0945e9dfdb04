//! Re-delivery of duress signals whose panel call failed.
//!
//! Every voice disarm that goes to the panel leaves a pending outbox record. The directive
//! settles it when the panel cloud answers; otherwise this worker does:
//! - a duress record is re-sent as a `signal` with `duress: true` until the panel cloud
//!   acknowledges it. The cloud deduplicates by request id, shared with the original disarm,
//!   so the monitoring center gets exactly one Contact ID 121 even if the first call did
//!   reach it;
//! - a normal record is closed. A failed normal disarm is never replayed: a panel that disarms
//!   by itself minutes later would be a surprise, and would differ from the duress case.
//!
//! [`run_once`] is the whole worker. The local stack calls it in a loop; on AWS a schedule (or
//! the table's stream) invokes the `redelivery` Lambda, which calls it once.

use std::time::Duration as StdDuration;

use chrono::Duration;

use crate::clock::Clock;
use crate::deadline::Deadline;
use crate::panel::{PanelCloud, PanelError, SignalRequest, Source};
use crate::skill::seal_is_duress;
use crate::store::{OutboxRecord, Settlement, Store, StoreError};
use crate::voice_codes::Keyring;

/// Each signal attempt gets this long.
const CALL_BUDGET: StdDuration = StdDuration::from_secs(5);
/// Time kept after a call to settle the record and write the report.
const SETTLE_MARGIN: StdDuration = StdDuration::from_secs(1);
/// Retry backoff: 5 s doubling, capped at 5 minutes; a duress is never given up on.
const BACKOFF_BASE_S: i64 = 5;
const BACKOFF_CAP_S: i64 = 300;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub examined: usize,
    pub delivered: usize,
    pub closed: usize,
    pub retrying: usize,
    /// Due records left for the next pass because this one ran out of time.
    pub deferred: usize,
}

pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    Duration::seconds((BACKOFF_BASE_S << exp).min(BACKOFF_CAP_S))
}

/// One pass over the due records, at most `batch` of them, stopping early enough to finish
/// before `until` (the invocation's deadline on Lambda): a record never started is simply
/// picked up by the next pass, while a pass killed mid-call would leave no report.
pub async fn run_once(
    store: &dyn Store,
    panels: &dyn PanelCloud,
    keyring: &Keyring,
    clock: &dyn Clock,
    batch: usize,
    until: Deadline,
) -> Result<Report, StoreError> {
    let due = store.outbox_due(clock.now(), batch).await?;
    let mut report = Report::default();
    for (i, record) in due.iter().enumerate() {
        if until.remaining() < CALL_BUDGET + SETTLE_MARGIN {
            report.deferred = due.len() - i;
            break;
        }
        report.examined += 1;
        let settlement = process(record, panels, keyring, clock).await;
        match &settlement {
            Settlement::Delivered => report.delivered += 1,
            Settlement::Closed => report.closed += 1,
            Settlement::Retry { .. } => report.retrying += 1,
        }
        match store
            .settle_outbox(&record.request_id, &settlement, None)
            .await
        {
            // Another worker settled it first; the cloud's request-id dedup made that safe.
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

async fn process(
    record: &OutboxRecord,
    panels: &dyn PanelCloud,
    keyring: &Keyring,
    clock: &dyn Clock,
) -> Settlement {
    let retry = || Settlement::Retry {
        attempts: record.attempts + 1,
        next_attempt_at: clock.now() + backoff(record.attempts + 1),
    };
    match seal_is_duress(keyring, &record.request_id, &record.seal) {
        Some(false) => Settlement::Closed,
        None => {
            // The pepper that sealed it is gone from the keyring. Keep it pending (and visible
            // in the backlog alarm) rather than drop what may be a duress.
            tracing::error!(request_id = %record.request_id, "outbox seal unreadable: pepper missing from keyring");
            retry()
        }
        Some(true) => {
            let request = SignalRequest {
                member: record.member,
                source: Source::Voice,
                duress: true,
                request_id: record.request_id.clone(),
            };
            let deadline = Deadline::after(CALL_BUDGET);
            match panels
                .signal(&record.household, &record.panel, &request, deadline)
                .await
            {
                Ok(()) => {
                    tracing::info!(request_id = %record.request_id, "pending signal delivered");
                    Settlement::Delivered
                }
                Err(PanelError::NotFound) => {
                    tracing::error!(request_id = %record.request_id, panel = %record.panel, "pending signal for a panel no longer in the account; closed");
                    Settlement::Closed
                }
                Err(e) => {
                    tracing::warn!(request_id = %record.request_id, attempts = record.attempts + 1, error = %e, "pending signal not delivered yet");
                    retry()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<i64> = (1..=9).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
