//! Local stack (being written).
