//! The one Lambda binary: every function of the stack deploys this zip, and the function's
//! `Handler` setting (infra/template.yaml), which Lambda hands a custom runtime as `_HANDLER`,
//! picks what it serves: `directive` (Alexa's directives), `http-api` (the household API, the
//! panel webhook, Google's fulfillment, the web app) or `redelivery` (the duress re-delivery
//! worker). One binary instead of three: one fat-LTO link in the release build instead of three
//! (minutes on 2 cores), one zip to build, check and upload, and every function runs the code
//! the tests ran. Each function still starts only its own part: the others' set-up never runs.

mod directive;
mod http_api;
mod redelivery;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    alarm_skill::edges::telemetry::init_lambda();
    // Crash points for the crash tests (nothing without the `failpoints` feature); Google's
    // EXECUTE in http-api runs the same disarm as directive, through the same points.
    alarm_skill::common::crash::setup();
    let handler = std::env::var("_HANDLER").unwrap_or_default();
    match handler.as_str() {
        "directive" => directive::run().await,
        "http-api" => http_api::run().await,
        "redelivery" => redelivery::run().await,
        other => Err(format!(
            "_HANDLER is '{other}': the function's Handler must be directive, http-api or \
             redelivery"
        )
        .into()),
    }
}
