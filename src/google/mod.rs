//! Google Smart Home (cloud-to-cloud): the fulfillment's wire format (SYNC, QUERY, EXECUTE,
//! DISCONNECT), the intents translated onto the same assistant-neutral core as Alexa's
//! directives ([`fulfillment`]), and HomeGraph's Report State and Request Sync ([`homegraph`]).
//!
//! Devices: the panel is an `action.devices.types.SECURITYSYSTEM` with the
//! `action.devices.traits.ArmDisarm` trait, its levels the panel's arm modes (stay, night, away);
//! contact zones are sensors with `OpenClose` (query only), motion zones sensors with
//! `OccupancySensing`. Device ids are the same as Alexa's endpointIds (crate::devices).

pub mod devices;
pub mod fulfillment;
pub mod homegraph;
pub mod redact;
pub mod request;
pub mod response;

pub use fulfillment::{Fulfillment, Reply};
