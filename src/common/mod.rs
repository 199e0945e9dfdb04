//! Helpers with no domain knowledge: time, deadlines, secrets in memory, typed fields of
//! untrusted JSON, HTTP error bodies and crash points. Depends on no other layer.

pub mod clock;
pub mod crash;
pub mod deadline;
pub mod http_errors;
pub mod json_fields;
pub mod secret;
