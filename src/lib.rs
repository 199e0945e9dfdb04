//! alarm-skill: an Alexa Smart Home (and Google Smart Home) security-panel skill backend with a
//! voice duress PIN.
//!
//! The crate is in layers, lower to higher; a module uses its own layer and the lower ones only
//! (scripts/check-layers, run by CI, holds every file to it):
//! - [`common`]: helpers with no domain knowledge (clock, deadlines, secrets in memory, typed
//!   JSON fields, HTTP error bodies, crash points).
//! - [`wire`]: the assistants' wire formats, pure data with no I/O: Alexa Smart Home API v3,
//!   Google Smart Home, and the device ids both use.
//! - [`domain`]: the assistant-neutral core (disarm with the duress PIN, arm, state), voice
//!   codes, the duress outbox, household members, metrics, and the [`domain::ports`]: the traits
//!   (and their data) the core needs from the world: store, panel cloud, token verifier, Login
//!   with Amazon, event gateway, the Echo devices' alerts. The core is written against these and nothing below them.
//! - [`adapters`]: the ports' production implementations: DynamoDB (and the in-memory store),
//!   the panel cloud's HTTP API, JWT/JWKS, Login with Amazon, the Alexa event gateway,
//!   HomeGraph, AWS and Secrets Manager.
//! - [`edges`]: what receives requests and wires the rest together: the Lambda handlers,
//!   configuration, the panel webhook, the household management API and web app, Google
//!   fulfillment, telemetry.
//! - `local` (feature `local`, on top): everything local-only: the local stack, the reference
//!   panel cloud (simulator), the panel-cloud conformance kit, the dev token issuer and the dev
//!   Alexa/Google fakes. Nothing outside it may use it, and the Lambda binaries are built
//!   without the feature, so they cannot depend on it.

pub mod adapters;
pub mod common;
pub mod domain;
pub mod edges;
pub mod wire;

#[cfg(feature = "local")]
pub mod local;
