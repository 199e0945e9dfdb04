//! The ports: traits the core calls, with their data types and errors. Their production
//! implementations are in [`crate::adapters`]; the local stack's fakes in `crate::local`.

pub mod account_link;
pub mod echo_alerts;
pub mod event_gateway;
pub mod lwa;
pub mod monitoring;
pub mod panel;
pub mod store;
