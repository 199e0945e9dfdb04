//! The panel and its zones as Google devices: the descriptions and states that SYNC, QUERY,
//! EXECUTE and HomeGraph's Report State share, one place so they never disagree.

use serde_json::{Map, Value, json};

use crate::domain::ports::panel::{ArmState, Panel, Phase, Zone, ZoneKind};
use crate::wire::devices::{is_valid_device_id, panel_endpoint_id, zone_endpoint_id};
use crate::wire::google::response::{
    ARM_DISARM, OCCUPANCY, OPEN_CLOSE, SECURITY_SYSTEM, SENSOR, STATUS_REPORT,
};

/// The ArmDisarm level name of an armed state (`None` for disarmed), and its English synonyms.
pub fn level(state: ArmState) -> Option<(&'static str, &'static [&'static str])> {
    match state {
        ArmState::Disarmed => None,
        ArmState::ArmedStay => Some(("stay", &["home", "stay", "armed stay"])),
        ArmState::ArmedNight => Some(("night", &["night", "armed night"])),
        ArmState::ArmedAway => Some(("away", &["away", "armed away"])),
    }
}

/// The armed state a level name stands for.
pub fn level_state(name: &str) -> Option<ArmState> {
    [
        ArmState::ArmedStay,
        ArmState::ArmedNight,
        ArmState::ArmedAway,
    ]
    .into_iter()
    .find(|s| level(*s).is_some_and(|(n, _)| n == name))
}

/// The panel's levels, least to most secure (stay, night, away): `ordered` lets users say
/// "raise the security level".
pub fn levels(p: &Panel) -> Vec<ArmState> {
    [
        ArmState::ArmedStay,
        ArmState::ArmedNight,
        ArmState::ArmedAway,
    ]
    .into_iter()
    .filter(|s| p.supported_arm_states.contains(s))
    .collect()
}

fn names(name: &str, manufacturer: &str) -> Value {
    json!({ "name": name, "defaultNames": [format!("{manufacturer} security system")] })
}

fn device_info(p: &Panel) -> Value {
    json!({ "manufacturer": p.manufacturer, "model": p.model })
}

pub fn panel_device(p: &Panel, manufacturer_name: &str, will_report_state: bool) -> Value {
    let levels: Vec<Value> = levels(p)
        .into_iter()
        .filter_map(level)
        .map(|(name, synonyms)| {
            json!({ "level_name": name, "level_values": [{ "level_synonym": synonyms, "lang": "en" }] })
        })
        .collect();
    json!({
        "id": panel_endpoint_id(&p.id),
        "type": SECURITY_SYSTEM,
        "traits": [ARM_DISARM, STATUS_REPORT],
        "name": names(&p.name, manufacturer_name),
        "willReportState": will_report_state,
        "attributes": { "availableArmLevels": { "levels": levels, "ordered": true } },
        "deviceInfo": device_info(p),
    })
}

pub fn zone_device(p: &Panel, z: &Zone, will_report_state: bool) -> Value {
    let (trait_name, attributes) = match z.kind {
        ZoneKind::Contact => (
            OPEN_CLOSE,
            json!({ "discreteOnlyOpenClose": true, "queryOnlyOpenClose": true }),
        ),
        ZoneKind::Motion => (
            OCCUPANCY,
            json!({ "occupancySensorConfiguration": [{ "occupancySensorType": "PIR" }] }),
        ),
    };
    json!({
        "id": zone_endpoint_id(&p.id, &z.id),
        "type": SENSOR,
        "traits": [trait_name],
        "name": { "name": z.name },
        "willReportState": will_report_state,
        "attributes": attributes,
        "deviceInfo": device_info(p),
    })
}

/// The panel and each of its zones, leaving out (and logging) ids no device id can carry.
pub fn devices_of(p: &Panel, manufacturer_name: &str, will_report_state: bool) -> Vec<Value> {
    if !is_valid_device_id(&p.id) {
        tracing::warn!(panel = %p.id, "panel id not usable as a Google device id; skipped");
        return vec![];
    }
    let mut out = vec![panel_device(p, manufacturer_name, will_report_state)];
    out.extend(
        p.zones
            .iter()
            .filter(|z| is_valid_device_id(&z.id))
            .map(|z| zone_device(p, z, will_report_state)),
    );
    out
}

/// Every ArmDisarm and StatusReport state of the panel, and `online`: the complete state,
/// every time.
pub fn panel_states(p: &Panel) -> Map<String, Value> {
    let mut s = Map::new();
    s.insert("online".into(), json!(p.online));
    s.insert("isArmed".into(), json!(p.arm_state != ArmState::Disarmed));
    s.insert("currentArmLevel".into(), json!(current_level(p)));
    // The exit delay the arming gave, not a countdown: a state that changed every second could
    // never equal the last Report State (Google's Test Suite compares them); the webhook's event
    // at the end of the delay reports 0.
    let exit = if p.phase == Phase::ExitDelay {
        p.exit_delay_s
    } else {
        0
    };
    s.insert("exitAllowance".into(), json!(exit));
    s.insert("currentStatusReport".into(), Value::Array(status_report(p)));
    s
}

/// `currentArmLevel`, which Google requires whenever `availableArmLevels` is declared, disarmed
/// included (with `isArmed: false` saying it is not in force). Disarmed reports the panel's least
/// secure level: a fixed choice, so it carries no history (not even which level was last used).
fn current_level(p: &Panel) -> &'static str {
    level(p.arm_state)
        .or_else(|| levels(p).into_iter().find_map(level))
        .map_or("away", |(name, _)| name)
}

/// StatusReport's `currentStatusReport`: what stands in the way of arming, so "is the alarm
/// ready?" gets an answer. Open zones (`deviceOpen`, blocking: Google never asks to bypass them),
/// bypassed zones (`isBypassed`), and each trouble condition, which the panel refuses to arm
/// with. Only household-visible panel state goes in, so it is the same after a duress PIN.
pub fn status_report(p: &Panel) -> Vec<Value> {
    let panel_id = panel_endpoint_id(&p.id);
    let mut out: Vec<Value> = p
        .trouble
        .iter()
        .map(|t| {
            json!({ "blocking": true, "deviceTarget": panel_id, "priority": 0,
                    "statusCode": trouble_code(t) })
        })
        .collect();
    for z in p.zones.iter().filter(|z| is_valid_device_id(&z.id)) {
        let code = if z.bypassed {
            "isBypassed"
        } else if z.open {
            "deviceOpen"
        } else {
            continue;
        };
        out.push(json!({
            "blocking": code == "deviceOpen",
            "deviceTarget": zone_endpoint_id(&p.id, &z.id),
            "priority": 1,
            "statusCode": code,
        }));
    }
    out
}

/// A panel trouble condition as the nearest of Google's documented exception codes.
fn trouble_code(condition: &str) -> &'static str {
    match condition {
        "low_battery" => "lowBattery",
        "ac_power" | "ac_loss" => "deviceUnplugged",
        "tamper" => "deviceTampered",
        _ => "hardwareFailure",
    }
}

/// The sensor's state and `online`; a zone is reachable exactly when its panel is.
pub fn zone_states(p: &Panel, z: &Zone) -> Map<String, Value> {
    let mut s = Map::new();
    s.insert("online".into(), json!(p.online));
    match z.kind {
        ZoneKind::Contact => {
            s.insert("openPercent".into(), json!(if z.open { 100 } else { 0 }));
        }
        ZoneKind::Motion => {
            let v = if z.open { "OCCUPIED" } else { "UNOCCUPIED" };
            s.insert("occupancy".into(), json!(v));
        }
    }
    s
}
