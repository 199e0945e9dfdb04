//! Google Smart Home requests, sent to the local stack's fulfillment URL as Google sends them,
//! and a check of every reply against the shapes Google documents for SYNC, QUERY, EXECUTE and
//! DISCONNECT responses (developers.home.google.com/cloud-to-cloud/intents).
#![allow(dead_code)]

use serde_json::{Value, json};

use super::stack::Harness;
use super::{record_google_message, record_google_unschematized};

pub const PATH: &str = "/google/fulfillment";
pub const ARM_DISARM: &str = "action.devices.commands.ArmDisarm";

fn request(intent: &str, payload: Option<Value>) -> Value {
    let mut input = json!({ "intent": intent });
    if let Some(p) = payload {
        input["payload"] = p;
    }
    json!({ "requestId": uuid::Uuid::new_v4().to_string(), "inputs": [input] })
}

pub fn sync() -> Value {
    request("action.devices.SYNC", None)
}

pub fn disconnect() -> Value {
    request("action.devices.DISCONNECT", None)
}

pub fn query(ids: &[&str]) -> Value {
    let devices: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
    request("action.devices.QUERY", Some(json!({ "devices": devices })))
}

/// An EXECUTE of ArmDisarm on `device` with `params`, and `challenge.pin` when given.
pub fn execute(device: &str, params: Value, pin: Option<&str>) -> Value {
    let mut execution = json!({ "command": ARM_DISARM, "params": params });
    if let Some(p) = pin {
        execution["challenge"] = json!({ "pin": p });
    }
    request(
        "action.devices.EXECUTE",
        Some(json!({ "commands": [{
            "devices": [{ "id": device, "customData": {} }],
            "execution": [execution]
        }]})),
    )
}

pub fn disarm(device: &str, pin: Option<&str>) -> Value {
    execute(device, json!({ "arm": false }), pin)
}

pub fn arm(device: &str, level: &str) -> Value {
    execute(device, json!({ "arm": true, "armLevel": level }), None)
}

impl Harness {
    /// POSTs `body` to the fulfillment URL with `token` as the bearer; checks the reply's shape
    /// (and that it echoes the requestId) and returns (HTTP status, reply).
    pub async fn google_as(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{PATH}", self.base))
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("fulfillment");
        let status = resp.status().as_u16();
        let reply: Value = resp.json().await.expect("reply is JSON");
        let intent = body["inputs"][0]["intent"].as_str().unwrap_or("");
        check_shape(intent, &reply);
        if let Some(kind) = message_kind(intent) {
            if reply["payload"].get("errorCode").is_some() {
                // A whole-request error: Google documents it as `payload.errorCode` alone, which
                // its SYNC and QUERY schemas (needing devices) don't model; checked by
                // check_shape above, counted apart in CI.
                record_google_unschematized(kind, kind, &reply);
            } else {
                record_google_message(kind, kind, &reply);
            }
        }
        if intent != "action.devices.DISCONNECT" && body["requestId"].is_string() {
            assert_eq!(reply["requestId"], body["requestId"], "{reply}");
        }
        (status, reply)
    }

    /// As Google sends it for `sub`'s linked account; expects HTTP 200.
    pub async fn google(&self, sub: &str, body: &Value) -> Value {
        let t = self.token(sub).await;
        let (status, reply) = self.google_as(Some(&t), body).await;
        assert_eq!(status, 200, "{reply}");
        reply
    }
}

/// The folder of `target/google-messages` a reply to `intent` is validated in.
pub fn message_kind(intent: &str) -> Option<&'static str> {
    match intent {
        "action.devices.SYNC" => Some("sync"),
        "action.devices.QUERY" => Some("query"),
        "action.devices.EXECUTE" => Some("execute"),
        "action.devices.DISCONNECT" => Some("disconnect"),
        _ => None,
    }
}

/// The one EXECUTE result of a single-device command.
pub fn result(reply: &Value) -> &Value {
    let commands = reply["payload"]["commands"].as_array().expect("commands");
    assert_eq!(commands.len(), 1, "{reply}");
    &commands[0]
}

/// "SUCCESS", or the error code with the challenge type: "challengeNeeded/pinNeeded".
pub fn outcome(reply: &Value) -> String {
    let r = result(reply);
    match (
        r["errorCode"].as_str(),
        r["challengeNeeded"]["type"].as_str(),
    ) {
        (Some(code), Some(kind)) => format!("{code}/{kind}"),
        (Some(code), None) => code.to_string(),
        _ => r["status"].as_str().unwrap_or("?").to_string(),
    }
}

/// The reply without its requestId, which differs on every request.
pub fn normalize(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("requestId");
    }
    v
}

const DEVICE_TYPES: &[&str] = &[
    "action.devices.types.SECURITYSYSTEM",
    "action.devices.types.SENSOR",
];
const TRAITS: &[&str] = &[
    "action.devices.traits.ArmDisarm",
    "action.devices.traits.OpenClose",
    "action.devices.traits.OccupancySensing",
    "action.devices.traits.StatusReport",
];
const STATUSES: &[&str] = &["SUCCESS", "PENDING", "OFFLINE", "EXCEPTIONS", "ERROR"];
const CHALLENGES: &[&str] = &["ackNeeded", "pinNeeded", "challengeFailedPinNeeded"];
/// The error codes this integration may send, all from Google's errors-and-exceptions list.
const ERROR_CODES: &[&str] = &[
    "authFailure",
    "protocolError",
    "transientError",
    "deviceNotFound",
    "deviceOffline",
    "deviceNotReady",
    "deviceBusy",
    "functionNotSupported",
    "notSupported",
    "alreadyArmed",
    "alreadyDisarmed",
    "armFailure",
    "actionNotAvailable",
    "challengeNeeded",
    "tooManyFailedAttempts",
];

fn is_str(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

/// Asserts `reply` has the documented shape of a response to `intent`.
pub fn check_shape(intent: &str, reply: &Value) {
    let ctx = format!("{intent} reply {reply}");
    if intent == "action.devices.DISCONNECT" && reply == &json!({}) {
        return;
    }
    assert!(reply["requestId"].is_string(), "requestId: {ctx}");
    let payload = reply["payload"].as_object().expect(&ctx);
    if let Some(code) = payload.get("errorCode") {
        // A whole-request error: just the code (and optionally debugString).
        assert!(ERROR_CODES.contains(&code.as_str().expect(&ctx)), "{ctx}");
        assert!(
            payload
                .keys()
                .all(|k| k == "errorCode" || k == "debugString"),
            "{ctx}"
        );
        return;
    }
    match intent {
        "action.devices.SYNC" => {
            assert!(is_str(&payload["agentUserId"]), "{ctx}");
            for d in payload["devices"].as_array().expect(&ctx) {
                assert!(is_str(&d["id"]), "{ctx}");
                assert!(
                    DEVICE_TYPES.contains(&d["type"].as_str().expect(&ctx)),
                    "{ctx}"
                );
                let traits = d["traits"].as_array().expect(&ctx);
                assert!(!traits.is_empty(), "{ctx}");
                assert!(
                    traits
                        .iter()
                        .all(|t| TRAITS.contains(&t.as_str().unwrap_or("")))
                );
                assert!(is_str(&d["name"]["name"]), "{ctx}");
                assert!(d["willReportState"].is_boolean(), "{ctx}");
                if let Some(levels) = d["attributes"].get("availableArmLevels") {
                    assert!(levels["ordered"].is_boolean(), "{ctx}");
                    for l in levels["levels"].as_array().expect(&ctx) {
                        assert!(is_str(&l["level_name"]), "{ctx}");
                        let values = l["level_values"].as_array().expect(&ctx);
                        assert!(
                            values.iter().any(|v| v["lang"] == "en"),
                            "an en synonym: {ctx}"
                        );
                        for v in values {
                            assert!(!v["level_synonym"].as_array().expect(&ctx).is_empty());
                        }
                    }
                }
            }
        }
        "action.devices.QUERY" => {
            for (_, d) in payload["devices"].as_object().expect(&ctx) {
                let status = d["status"].as_str().expect(&ctx);
                assert!(STATUSES.contains(&status), "{ctx}");
                if status == "ERROR" || status == "OFFLINE" {
                    assert!(ERROR_CODES.contains(&d["errorCode"].as_str().expect(&ctx)));
                }
                if status == "SUCCESS" {
                    assert!(d["online"].is_boolean(), "{ctx}");
                }
                if let Some(armed) = d.get("isArmed") {
                    assert!(armed.is_boolean() && d["exitAllowance"].is_u64(), "{ctx}");
                }
            }
        }
        "action.devices.EXECUTE" => {
            for c in payload["commands"].as_array().expect(&ctx) {
                assert!(
                    c["ids"].as_array().is_some_and(|i| i.iter().all(is_str)),
                    "{ctx}"
                );
                let status = c["status"].as_str().expect(&ctx);
                assert!(STATUSES.contains(&status), "{ctx}");
                if status == "ERROR" || status == "OFFLINE" {
                    let code = c["errorCode"].as_str().expect(&ctx);
                    assert!(ERROR_CODES.contains(&code), "{ctx}");
                    if code == "challengeNeeded" {
                        let kind = c["challengeNeeded"]["type"].as_str().expect(&ctx);
                        assert!(CHALLENGES.contains(&kind), "{ctx}");
                    }
                } else {
                    assert!(c.get("errorCode").is_none(), "{ctx}");
                }
                if status == "SUCCESS" {
                    assert!(c["states"].is_object(), "{ctx}");
                }
            }
        }
        other => panic!("unexpected intent {other}: {ctx}"),
    }
}
