//! SIA DC-09 (alarm transmission over IP) and the Contact ID events it carries: what goes on
//! the wire between a transmitter (the panel cloud, or the skill's own second path) and a
//! monitoring center's receiver. Pure encoding and decoding; the sending is
//! [`crate::adapters::dc09`].

pub mod contact_id;
pub mod frame;
