//! Management API (being written).
