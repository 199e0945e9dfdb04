//! `Handler: redelivery`, the duress re-delivery worker. A schedule invokes it once a minute; each invocation drains
//! every shard of the pending outbox, in parallel, each under a lease of its own in the table, so
//! two passes never overlap on a shard. With `REDELIVERY_POLL_SECONDS` (the template sets 2) it
//! then keeps polling at that interval while anything is pending, until near its timeout: the
//! panel cloud's breaker is probed every few seconds, so a recovery is noticed within seconds,
//! not at the next schedule tick (docs/capacity.md, "Recovery after an outage"). Nothing pending:
//! it returns at once.

use std::sync::Arc;
use std::time::Duration;

use alarm_skill::domain::redelivery;
use alarm_skill::edges::lambda::{Production, invocation_deadline};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

/// Records handled per shard per pass; the schedule runs again soon after.
const BATCH: usize = 100;
/// Passes one invocation runs at most while records keep coming due (a backlog after an outage).
const ROUNDS: usize = 10;
/// Polls one invocation runs at most (60 s of 2 s polls, with room).
const MAX_POLLS: usize = 60;
/// The poll interval's bounds: a faster one would hammer the table, a slower one is the
/// schedule's job.
const POLL_SECONDS_MAX: u64 = 30;

/// `REDELIVERY_POLL_SECONDS`: unset or 0 runs one drain per invocation.
fn poll_interval() -> Result<Option<Duration>, lambda_runtime::Error> {
    match std::env::var("REDELIVERY_POLL_SECONDS") {
        Err(_) => Ok(None),
        Ok(v) => {
            let secs: u64 = v
                .trim()
                .parse()
                .map_err(|e| format!("REDELIVERY_POLL_SECONDS={v:?}: {e}"))?;
            if secs > POLL_SECONDS_MAX {
                return Err(
                    format!("REDELIVERY_POLL_SECONDS={secs}: at most {POLL_SECONDS_MAX}").into(),
                );
            }
            Ok((secs > 0).then(|| Duration::from_secs(secs)))
        }
    }
}

pub async fn run() -> Result<(), lambda_runtime::Error> {
    let poll = poll_interval()?;
    let prod =
        Arc::new(Production::from_env(alarm_skill::adapters::secrets::needs::REDELIVERY).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let prod = prod.clone();
        async move {
            // Seals naming a pepper this container doesn't know yet make it re-read the secret.
            let (every, polls) = match poll {
                Some(every) => (every, MAX_POLLS),
                None => (Duration::ZERO, 1),
            };
            let worker = redelivery::Worker {
                store: prod.store.as_ref(),
                panels: prod.panels.as_ref(),
                keys: redelivery::Keys::Reloading(&prod.keyring_source),
                v2_seals: prod.config.outbox_v2_seals,
                clock: prod.clock.as_ref(),
                until: invocation_deadline(&event.context),
                receiver: Some(prod.receiver.as_ref()),
            };
            let report = worker.poll(BATCH, ROUNDS, every, polls).await?;
            // The alarms' metric filters read `retrying`, `unreadable`, `backlog` and `gone`
            // from this line.
            tracing::info!(
                examined = report.examined,
                delivered = report.delivered,
                retrying = report.retrying,
                deferred = report.deferred,
                unreadable = report.unreadable,
                moved_gone = report.moved_gone,
                raced = report.raced,
                skipped = report.skipped,
                skipped_shards = report.skipped_shards,
                failed_shards = report.failed_shards,
                shards = report.shards,
                backlog = report.backlog,
                waiting = report.waiting,
                gone = report.gone,
                held = report.held,
                dropped = report.dropped,
                breaker_held = report.breaker_held,
                probes = report.probes,
                breaker_open = report.breaker_open,
                "redelivery pass"
            );
            prod.metrics
                .redelivery_pass(report.examined, report.backlog, report.gone);
            Ok::<Value, lambda_runtime::Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
