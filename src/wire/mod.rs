//! The assistants' wire formats, pure data with no I/O: parsing what they send, building what
//! they are sent, and redacting both for logs. Depends on [`crate::common`] only.

pub mod alexa;
pub mod devices;
pub mod google;
pub mod redact;
