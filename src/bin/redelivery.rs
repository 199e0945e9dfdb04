//! The duress re-delivery worker. A schedule (and optionally the table's stream) invokes it
//! with any event; each invocation runs one pass over the due outbox records.

use std::sync::Arc;

use alarm_skill::lambda::{Production, invocation_deadline};
use alarm_skill::redelivery;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

/// Records handled per invocation; the schedule runs again soon after.
const BATCH: usize = 100;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    alarm_skill::telemetry::init_lambda();
    let prod = Arc::new(Production::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let prod = prod.clone();
        async move {
            let report = redelivery::run_once(
                prod.store.as_ref(),
                prod.panels.as_ref(),
                &prod.keyring,
                prod.clock.as_ref(),
                BATCH,
                invocation_deadline(&event.context),
            )
            .await?;
            // The backlog alarm's metric filter reads `retrying` from this line.
            tracing::info!(
                examined = report.examined,
                delivered = report.delivered,
                closed = report.closed,
                retrying = report.retrying,
                deferred = report.deferred,
                "redelivery pass"
            );
            Ok::<Value, lambda_runtime::Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
