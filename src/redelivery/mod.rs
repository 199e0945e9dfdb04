//! Re-delivery of voice attempts whose panel call was not acknowledged.
//!
//! Every voice disarm that goes to the panel leaves a pending outbox record. The directive
//! settles it when the panel cloud answers; otherwise this worker does, the same way for every
//! record: it re-sends the attempt as a `signal` carrying the sealed duress flag and member, with
//! the original request id, until the panel cloud acknowledges it.
//! - For a duress the signal raises the silent alarm. The cloud deduplicates by request id,
//!   shared with the original disarm, so the monitoring center gets exactly one Contact ID 121
//!   even if the first call did reach it.
//! - For a normal attempt the signal (`duress: false`) changes nothing: a failed disarm is never
//!   replayed, since a panel that disarms by itself minutes later would be a surprise. It is sent
//!   anyway so that both kinds leave the same calls and the same outbox history.
//! - Nothing pending is ever given up on. A record whose panel has left the account, or whose
//!   seal can't be opened, stays pending, backs off to one attempt per 5 minutes, and keeps the
//!   backlog alarm raised until an operator acts (docs/panel-api.md, "Signals").
//!
//! [`run_once`] is the whole worker. The local stack calls it in a loop; on AWS a schedule
//! invokes the `redelivery` Lambda, which calls it once. A lease in the store keeps two passes
//! from ever running at once.

pub mod seal;

use std::time::Duration as StdDuration;

use chrono::Duration;

use crate::clock::Clock;
use crate::deadline::Deadline;
use crate::panel::{PanelCloud, PanelError, SignalRequest, Source};
use crate::store::{OutboxRecord, Settlement, Store, StoreError};
use crate::voice_codes::Keyring;

/// Each signal attempt gets this long.
const CALL_BUDGET: StdDuration = StdDuration::from_secs(5);
/// Time kept after a call to settle the record and write the report.
const SETTLE_MARGIN: StdDuration = StdDuration::from_secs(1);
/// Retry backoff: 5 s doubling, capped at 5 minutes.
const BACKOFF_BASE_S: i64 = 5;
const BACKOFF_CAP_S: i64 = 300;
/// The lease that serialises passes.
pub const LEASE: &str = "redelivery";
/// A pass's lease outlives its deadline by this much, so a pass that overran (or was frozen by
/// Lambda mid-call) is still covered, and a crashed one frees the lease soon after.
const LEASE_MARGIN: StdDuration = StdDuration::from_secs(10);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub examined: usize,
    pub delivered: usize,
    pub retrying: usize,
    /// Due records left for the next pass because this one ran out of time.
    pub deferred: usize,
    /// Pending items that could not be decoded: possibly a duress, so each is logged with its
    /// key and counted for the backlog alarm. The rest are delivered regardless.
    pub unreadable: usize,
    /// Another pass held the lease, so this one did nothing.
    pub skipped: bool,
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
    let owner = uuid::Uuid::new_v4().to_string();
    let now = clock.now();
    let lease_end =
        now + Duration::from_std(until.remaining() + LEASE_MARGIN).unwrap_or(Duration::seconds(60));
    if !store.acquire_lease(LEASE, &owner, now, lease_end).await? {
        tracing::info!("another re-delivery pass holds the lease; skipped");
        return Ok(Report {
            skipped: true,
            ..Report::default()
        });
    }
    let result = pass(store, panels, keyring, clock, batch, until).await;
    // If this fails the lease simply runs out at `lease_end`.
    if let Err(e) = store.release_lease(LEASE, &owner).await {
        tracing::warn!(error = %e, "could not release the re-delivery lease");
    }
    result
}

async fn pass(
    store: &dyn Store,
    panels: &dyn PanelCloud,
    keyring: &Keyring,
    clock: &dyn Clock,
    batch: usize,
    until: Deadline,
) -> Result<Report, StoreError> {
    let due = store.outbox_due(clock.now(), batch).await?;
    let mut report = Report {
        unreadable: due.unreadable.len(),
        ..Report::default()
    };
    for bad in &due.unreadable {
        tracing::error!(
            marker = "outbox_item_unreadable",
            key = %bad.key,
            error = %bad.error,
            "pending outbox item cannot be decoded; skipped, left pending for an operator"
        );
    }
    for (i, record) in due.records.iter().enumerate() {
        if until.remaining() < CALL_BUDGET + SETTLE_MARGIN {
            report.deferred = due.records.len() - i;
            break;
        }
        report.examined += 1;
        let settlement = process(record, panels, keyring, clock).await;
        match &settlement {
            Settlement::Delivered => report.delivered += 1,
            Settlement::Retry { .. } => report.retrying += 1,
        }
        match store
            .settle_outbox(&record.request_id, &settlement, None)
            .await
        {
            // Settled meanwhile (the index lags behind a settle); the cloud's request-id dedup
            // made the extra signal harmless.
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
        attempts: record.attempts.saturating_add(1),
        next_attempt_at: clock.now() + backoff(record.attempts.saturating_add(1)),
    };
    let Some(sealed) = seal::open(keyring, &record.request_id, &record.seal) else {
        // Its pepper is gone from the keyring (or the seal was altered). Keep it pending, and
        // visible in the backlog alarm, rather than drop what may be a duress.
        tracing::error!(
            marker = "outbox_seal_unreadable",
            request_id = %record.request_id,
            "outbox seal cannot be opened: pepper missing from the keyring?"
        );
        return retry();
    };
    let request = SignalRequest {
        member: sealed.member,
        source: Source::Voice,
        duress: sealed.duress,
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
            // The panel left the account after the attempt. A duress still has to reach the
            // monitoring center: the cloud must take it (docs/panel-api.md); until it does, keep
            // trying and keep the alarm raised.
            tracing::error!(
                marker = "outbox_panel_gone",
                request_id = %record.request_id,
                household = %record.household,
                panel = %record.panel,
                attempts = record.attempts.saturating_add(1),
                "pending signal for a panel no longer in the account; kept pending"
            );
            retry()
        }
        Err(e) => {
            tracing::warn!(request_id = %record.request_id, attempts = record.attempts.saturating_add(1), error = %e, "pending signal not delivered yet");
            retry()
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
