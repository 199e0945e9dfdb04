//! The HTTP Lambda (API Gateway HTTP API or Function URL): the household management API, the
//! panel cloud's webhook, and the Google Smart Home fulfillment (`POST /google/fulfillment`).

use std::sync::Arc;

use alarm_skill::lambda::Production;
use axum::Router;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    alarm_skill::telemetry::init_lambda();
    let prod = Production::from_env(alarm_skill::secrets::needs::HTTP_API).await?;
    prod.warm_up().await;
    // SYNC promises Report State only when this function can send it.
    let google =
        alarm_skill::google::Fulfillment::new(Arc::new(prod.skill()?), prod.homegraph.is_some());
    let app = Router::new()
        .merge(alarm_skill::management::routes(Arc::new(prod.management())))
        .merge(alarm_skill::webhook::handler::routes(Arc::new(
            prod.webhook()?,
        )))
        .merge(alarm_skill::google::fulfillment::routes(
            Arc::new(google),
            None,
        ));
    lambda_http::run(app).await
}
