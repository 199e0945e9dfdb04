//! `Handler: directive`, the Alexa directive function. Alexa invokes it with the raw directive;
//! the reply is the raw response. Every directive gets a schema-valid reply: the handler never
//! returns an error.

use std::sync::Arc;

use alarm_skill::edges::lambda::{Production, deadline};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

pub async fn run() -> Result<(), lambda_runtime::Error> {
    let prod = Production::from_env(alarm_skill::adapters::secrets::needs::DIRECTIVE).await?;
    prod.warm_up().await;
    let skill = Arc::new(prod.skill()?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let skill = skill.clone();
        async move {
            let deadline = deadline(&event.context);
            Ok::<Value, lambda_runtime::Error>(skill.handle(&event.payload, deadline).await)
        }
    }))
    .await
}
