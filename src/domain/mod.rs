//! The assistant-neutral core: what a disarm, an arm or a state report does, voice codes and
//! the duress PIN, the duress outbox, household members from the panel cloud, metrics; and the
//! [`ports`] it needs from the world. Adapters implement the ports; nothing here depends on an
//! adapter, an edge or local-only code.

pub mod echo_alerts;
pub mod google_devices;
pub mod metrics;
pub mod ports;
pub mod provisioning;
pub mod redelivery;
pub mod skill;
pub mod voice_codes;
