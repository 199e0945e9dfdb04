//! The ports' production implementations ([`crate::domain::ports`]), and the AWS clients they
//! use. Adapters depend on the domain, never the reverse.

pub mod account_link;
pub mod aws;
pub mod dc09;
pub mod echo_alerts;
pub mod event_gateway;
pub mod homegraph;
pub mod lwa;
pub mod panel;
pub mod secrets;
pub mod store;
