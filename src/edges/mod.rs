//! Where requests come in and everything is wired together: the Lambda handlers and their
//! configuration, the panel cloud's webhook, the household management API and web app, Google
//! fulfillment, telemetry.

pub mod config;
pub mod google_fulfillment;
pub mod lambda;
pub mod management;
pub mod telemetry;
pub mod webapp;
pub mod webhook;
