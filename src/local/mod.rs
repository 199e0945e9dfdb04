//! Local stack (being written).

pub mod alexa_dev;
