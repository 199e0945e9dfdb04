//! Google Smart Home (cloud-to-cloud): the fulfillment's wire format (SYNC, QUERY, EXECUTE,
//! DISCONNECT). The intents are translated onto the same assistant-neutral core as Alexa's
//! directives in crate::edges::google_fulfillment; the panel's devices and states in Google's
//! terms are crate::domain::google_devices, shared with HomeGraph's Report State and Request Sync
//! (crate::adapters::homegraph).
//!
//! Devices: the panel is an `action.devices.types.SECURITYSYSTEM` with the
//! `action.devices.traits.ArmDisarm` trait, its levels the panel's arm modes (stay, night, away);
//! contact zones are sensors with `OpenClose` (query only), motion zones sensors with
//! `OccupancySensing`. Device ids are the same as Alexa's endpointIds (crate::wire::devices).

pub mod redact;
pub mod request;
pub mod response;
