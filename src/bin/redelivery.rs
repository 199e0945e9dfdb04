//! The duress re-delivery worker. A schedule invokes it; each invocation runs one pass over every
//! shard of the pending outbox, in parallel, each under a lease of its own in the table, so two
//! passes never overlap on a shard.

use std::sync::Arc;

use alarm_skill::domain::redelivery;
use alarm_skill::edges::lambda::{Production, invocation_deadline};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

/// Records handled per shard per pass; the schedule runs again soon after.
const BATCH: usize = 100;
/// Passes one invocation runs at most while records keep coming due (a backlog after an outage).
const ROUNDS: usize = 10;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    alarm_skill::edges::telemetry::init_lambda();
    alarm_skill::common::crash::setup();
    let prod =
        Arc::new(Production::from_env(alarm_skill::adapters::secrets::needs::REDELIVERY).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let prod = prod.clone();
        async move {
            // Seals naming a pepper this container doesn't know yet make it re-read the secret.
            let report = redelivery::drain_with(
                prod.store.as_ref(),
                prod.panels.as_ref(),
                redelivery::Keys::Reloading(&prod.keyring_source),
                prod.clock.as_ref(),
                BATCH,
                invocation_deadline(&event.context),
                ROUNDS,
            )
            .await?;
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
                "redelivery pass"
            );
            prod.metrics
                .redelivery_pass(report.examined, report.backlog, report.gone);
            Ok::<Value, lambda_runtime::Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
