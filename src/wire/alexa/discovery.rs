//! Endpoint descriptions for Discover.Response and AddOrUpdateReport.

use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryEndpoint {
    pub endpoint_id: String,
    pub manufacturer_name: String,
    pub friendly_name: String,
    pub description: String,
    pub display_categories: Vec<&'static str>,
    pub additional_attributes: AdditionalAttributes,
    pub capabilities: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdditionalAttributes {
    pub manufacturer: String,
    pub model: String,
}

/// The `Alexa` interface itself: implicit, but Amazon asks skills to list it explicitly.
pub fn alexa_capability() -> Value {
    json!({"type":"AlexaInterface","interface":"Alexa","version":"3"})
}

fn reportable(interface: &str, names: &[&str]) -> Value {
    let supported: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    json!({
        "type": "AlexaInterface",
        "interface": interface,
        "version": "3",
        "properties": { "supported": supported, "proactivelyReported": true, "retrievable": true }
    })
}

/// Interface version stays "3": the docs call EndpointHealth 3.1, but the schema rejects it.
pub fn endpoint_health_capability() -> Value {
    reportable("Alexa.EndpointHealth", &["connectivity"])
}

/// `arm_states` are Alexa names (ARMED_AWAY, ..., DISARMED), in the order to advertise them.
pub fn security_panel_capability(arm_states: &[&'static str]) -> Value {
    let mut cap = reportable(
        "Alexa.SecurityPanelController",
        &[
            "armState",
            "burglaryAlarm",
            "fireAlarm",
            "carbonMonoxideAlarm",
            "waterAlarm",
        ],
    );
    let states: Vec<Value> = arm_states.iter().map(|s| json!({ "value": s })).collect();
    cap["configuration"] = json!({
        "supportedArmStates": states,
        "supportedAuthorizationTypes": [{ "type": "FOUR_DIGIT_PIN" }]
    });
    cap
}

/// `interface` is Alexa.ContactSensor or Alexa.MotionSensor.
pub fn sensor_capability(interface: &str) -> Value {
    reportable(interface, &["detectionState"])
}

/// Friendly names and descriptions are limited to 128 characters by the schema.
pub fn clip(text: &str) -> String {
    text.chars().take(128).collect()
}
