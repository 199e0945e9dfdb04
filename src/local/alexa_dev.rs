//! placeholder until the events branch lands
