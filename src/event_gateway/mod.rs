//! Alexa event gateway (being written).
