//! The store port's implementations ([`crate::domain::ports::store::Store`]): DynamoDB in
//! production, and the in-memory store that defines every semantic both share.

pub mod dynamodb;
pub mod memory;
pub mod pepper_usage;
