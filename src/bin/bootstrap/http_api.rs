//! `Handler: http-api`, the HTTP function (API Gateway HTTP API or Function URL): the household management API, the
//! panel cloud's webhook, the Google Smart Home fulfillment (`POST /google/fulfillment`), and the
//! household web app (`/app/`).

use std::sync::Arc;

use alarm_skill::edges::lambda::Production;
use axum::Router;

pub async fn run() -> Result<(), lambda_http::Error> {
    let prod = Production::from_env(alarm_skill::adapters::secrets::needs::HTTP_API).await?;
    prod.warm_up().await;
    // SYNC promises Report State only when this function can send it.
    let google = alarm_skill::edges::google_fulfillment::Fulfillment::new(
        Arc::new(prod.skill()?),
        prod.homegraph.is_some(),
    );
    // The household web app; without APP_OAUTH_CLIENT_ID it says sign-in is not configured.
    let app_config = alarm_skill::edges::webapp::AppConfig::from_env()?;
    let app = Router::new()
        .merge(alarm_skill::edges::webapp::routes(app_config))
        .merge(alarm_skill::edges::management::routes(Arc::new(
            prod.management(),
        )))
        .merge(alarm_skill::edges::webhook::handler::routes(Arc::new(
            prod.webhook()?,
        )))
        .merge(alarm_skill::edges::google_fulfillment::routes(
            Arc::new(google),
            None,
        ));
    lambda_http::run(alarm_skill::common::http_errors::json_errors(app)).await
}
