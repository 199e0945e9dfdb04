//! alarm-skill: an Alexa Smart Home security-panel skill backend with a voice duress PIN.
//!
//! Layout (ports and adapters):
//! - [`alexa`]: the Alexa Smart Home API v3 wire format, pure data.
//! - [`google`]: Google Smart Home fulfillment (SYNC, QUERY, EXECUTE, DISCONNECT) and HomeGraph:
//!   the wire format, and the intents translated onto the same core as Alexa's directives.
//! - [`skill`]: the assistant-neutral core (disarm with the duress PIN, arm, state) and the
//!   Alexa directive handler, written against the ports below.
//! - [`devices`]: device ids, shared by both assistants.
//! - Ports and their adapters: [`store`] (embedded, DynamoDB), [`panel`] (HTTP panel cloud),
//!   [`account_link`] (JWT/JWKS), [`lwa`] (Login with Amazon), [`event_gateway`] (Alexa events).
//! - Domain: [`voice_codes`] (codes, verification, throttling), [`redelivery`] (duress outbox).
//! - [`provisioning`]: household members from the panel cloud's users.
//! - Edges: [`webhook`] (panel cloud → ChangeReports), [`management`] (household API),
//!   [`config`] and [`secrets`] (Lambda start-up), [`telemetry`], [`metrics`] (EMF lines),
//!   [`webapp`] (the household web app at `/app/`).
//! - `local` (feature `local`): the local stack, panel simulator and dev token issuer, and the
//!   panel-cloud [`conformance`] kit.

pub mod account_link;
pub mod alexa;
pub mod aws;
pub mod clock;
pub mod config;
pub mod crash;
pub mod deadline;
pub mod devices;
pub mod event_gateway;
pub mod google;
pub mod http_errors;
pub mod json_fields;
pub mod lambda;
pub mod lwa;
pub mod management;
pub mod metrics;
pub mod panel;
pub mod provisioning;
pub mod redelivery;
pub mod secret;
pub mod secrets;
pub mod skill;
pub mod store;
pub mod telemetry;
pub mod voice_codes;
pub mod webapp;
pub mod webhook;

#[cfg(feature = "local")]
pub mod conformance;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "local")]
pub mod simulator;
