//! Wire formats, pure data with no I/O: the assistants' (parsing what they send, building what
//! they are sent, and redacting both for logs) and the monitoring centers' (SIA DC-09 carrying
//! Contact ID). Depends on [`crate::common`] only.

pub mod alexa;
pub mod dc09;
pub mod devices;
pub mod google;
pub mod redact;
