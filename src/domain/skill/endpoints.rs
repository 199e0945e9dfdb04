//! How a panel and its zones appear to Alexa: endpoints for discovery and the properties that
//! responses, StateReports and ChangeReports carry. One place, so the three never disagree.

use crate::domain::ports::panel::{ArmState, Panel, Zone, ZoneKind};
use crate::wire::alexa::discovery::{
    AdditionalAttributes, DiscoveryEndpoint, alexa_capability, clip, endpoint_health_capability,
    security_panel_capability, sensor_capability,
};
use crate::wire::alexa::{Property, is_valid_device_id, panel_endpoint_id, zone_endpoint_id};

/// Alexa allows at most 300 endpoints per customer.
pub const MAX_ENDPOINTS: usize = 300;

pub fn sensor_namespace(kind: ZoneKind) -> &'static str {
    match kind {
        ZoneKind::Contact => "Alexa.ContactSensor",
        ZoneKind::Motion => "Alexa.MotionSensor",
    }
}

/// armState, the four alarms, and connectivity: every property of a panel endpoint.
pub fn panel_properties(p: &Panel) -> Vec<Property> {
    let at = p.as_of;
    vec![
        Property::arm_state(p.arm_state.alexa_name(), at),
        Property::alarm("burglaryAlarm", p.alarms.burglary, at),
        Property::alarm("fireAlarm", p.alarms.fire, at),
        Property::alarm("carbonMonoxideAlarm", p.alarms.carbon_monoxide, at),
        Property::alarm("waterAlarm", p.alarms.water, at),
        Property::connectivity(p.online, at),
    ]
}

/// detectionState and connectivity: every property of a zone endpoint. A zone is reachable
/// exactly when its panel is.
pub fn zone_properties(p: &Panel, z: &Zone) -> Vec<Property> {
    vec![
        Property::detection(sensor_namespace(z.kind), z.open, p.as_of),
        Property::connectivity(p.online, p.as_of),
    ]
}

/// Alexa names of the arm states the panel supports, DISARMED last, without duplicates.
fn supported_states(p: &Panel) -> Vec<&'static str> {
    let mut states: Vec<&'static str> = Vec::new();
    for s in p
        .supported_arm_states
        .iter()
        .copied()
        .filter(|s| *s != ArmState::Disarmed)
        .chain([ArmState::Disarmed])
    {
        if !states.contains(&s.alexa_name()) {
            states.push(s.alexa_name());
        }
    }
    states
}

pub fn panel_endpoint(p: &Panel, manufacturer_name: &str) -> DiscoveryEndpoint {
    DiscoveryEndpoint {
        endpoint_id: panel_endpoint_id(&p.id),
        manufacturer_name: clip(manufacturer_name),
        friendly_name: clip(&p.name),
        description: clip(&format!("{} {} security panel", p.manufacturer, p.model)),
        display_categories: vec!["SECURITY_PANEL"],
        additional_attributes: AdditionalAttributes {
            manufacturer: clip(&p.manufacturer),
            model: clip(&p.model),
        },
        capabilities: vec![
            alexa_capability(),
            security_panel_capability(&supported_states(p)),
            endpoint_health_capability(),
        ],
    }
}

pub fn zone_endpoint(p: &Panel, z: &Zone, manufacturer_name: &str) -> DiscoveryEndpoint {
    let (category, what) = match z.kind {
        ZoneKind::Contact => ("CONTACT_SENSOR", "contact sensor"),
        ZoneKind::Motion => ("MOTION_SENSOR", "motion sensor"),
    };
    DiscoveryEndpoint {
        endpoint_id: zone_endpoint_id(&p.id, &z.id),
        manufacturer_name: clip(manufacturer_name),
        friendly_name: clip(&z.name),
        description: clip(&format!("{what} on {} ({})", p.name, p.model)),
        display_categories: vec![category],
        additional_attributes: AdditionalAttributes {
            manufacturer: clip(&p.manufacturer),
            model: clip(&p.model),
        },
        capabilities: vec![
            alexa_capability(),
            sensor_capability(sensor_namespace(z.kind)),
            endpoint_health_capability(),
        ],
    }
}

/// The panel and each of its zones. Panels or zones whose ids can't form a valid endpointId
/// are left out (and logged): Alexa would reject the whole response otherwise.
pub fn endpoints_of(p: &Panel, manufacturer_name: &str) -> Vec<DiscoveryEndpoint> {
    if !is_valid_device_id(&p.id) {
        tracing::warn!(panel = %p.id, "panel id not usable as an Alexa endpointId; skipped");
        return vec![];
    }
    let mut out = vec![panel_endpoint(p, manufacturer_name)];
    for z in &p.zones {
        if is_valid_device_id(&z.id) {
            out.push(zone_endpoint(p, z, manufacturer_name));
        } else {
            tracing::warn!(panel = %p.id, zone = %z.id, "zone id not usable as an Alexa endpointId; skipped");
        }
    }
    out
}
