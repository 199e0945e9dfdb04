//! What the fulfillment sends back: device types and traits, error codes, and the SYNC, QUERY and
//! EXECUTE envelopes. The panel's devices and states in these terms are
//! crate::domain::google_devices's, shared with HomeGraph's Report State.

use serde_json::{Map, Value, json};

pub const SECURITY_SYSTEM: &str = "action.devices.types.SECURITYSYSTEM";
pub const SENSOR: &str = "action.devices.types.SENSOR";
pub const ARM_DISARM: &str = "action.devices.traits.ArmDisarm";
pub const OPEN_CLOSE: &str = "action.devices.traits.OpenClose";
pub const OCCUPANCY: &str = "action.devices.traits.OccupancySensing";
pub const STATUS_REPORT: &str = "action.devices.traits.StatusReport";

/// Error codes this integration sends (Google's documented names).
pub mod code {
    pub const AUTH_FAILURE: &str = "authFailure";
    pub const PROTOCOL_ERROR: &str = "protocolError";
    pub const TRANSIENT_ERROR: &str = "transientError";
    pub const DEVICE_NOT_FOUND: &str = "deviceNotFound";
    pub const DEVICE_OFFLINE: &str = "deviceOffline";
    pub const DEVICE_NOT_READY: &str = "deviceNotReady";
    pub const DEVICE_BUSY: &str = "deviceBusy";
    pub const FUNCTION_NOT_SUPPORTED: &str = "functionNotSupported";
    pub const NOT_SUPPORTED: &str = "notSupported";
    pub const ALREADY_ARMED: &str = "alreadyArmed";
    pub const ALREADY_DISARMED: &str = "alreadyDisarmed";
    pub const ARM_FAILURE: &str = "armFailure";
    pub const ACTION_NOT_AVAILABLE: &str = "actionNotAvailable";
    pub const CHALLENGE_NEEDED: &str = "challengeNeeded";
    /// Voice codes are locked: a plain error code, not a challenge, so Google asks no more.
    pub const TOO_MANY_FAILED_ATTEMPTS: &str = "tooManyFailedAttempts";
}

/// The `challengeNeeded.type` values of secondary user verification.
pub mod challenge {
    pub const PIN_NEEDED: &str = "pinNeeded";
    pub const FAILED_PIN_NEEDED: &str = "challengeFailedPinNeeded";
}

/// A QUERY entry: the states, with `status` as the documented shape asks.
pub fn query_entry(mut states: Map<String, Value>) -> Value {
    let online = states
        .get("online")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if online {
        states.insert("status".into(), json!("SUCCESS"));
    } else {
        states.insert("status".into(), json!("OFFLINE"));
        states.insert("errorCode".into(), json!(code::DEVICE_OFFLINE));
    }
    Value::Object(states)
}

/// A device QUERY could not answer for. `online: false` too: Google's schema requires `online` on
/// every device, and the device is not reachable through us (missing, or the cloud failing).
pub fn query_error(error_code: &str) -> Value {
    json!({ "status": "ERROR", "online": false, "errorCode": error_code })
}

/// One EXECUTE result: the devices it is about and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success(Map<String, Value>),
    Error {
        code: &'static str,
        /// `challengeNeeded.type`, for `challengeNeeded`.
        challenge: Option<&'static str>,
    },
    Offline,
    /// Under way: the result follows by Report State (Google's "enqueued but expected to
    /// succeed"). No states: nothing has changed yet that the reply could vouch for.
    Pending,
}

impl Outcome {
    pub fn error(code: &'static str) -> Self {
        Outcome::Error {
            code,
            challenge: None,
        }
    }

    pub fn challenge(kind: &'static str) -> Self {
        Outcome::Error {
            code: code::CHALLENGE_NEEDED,
            challenge: Some(kind),
        }
    }

    /// The short label for logs and metrics: "SUCCESS", or the error code (and challenge).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success(_) => "SUCCESS",
            Outcome::Offline => code::DEVICE_OFFLINE,
            Outcome::Pending => "PENDING",
            Outcome::Error {
                challenge: Some(c), ..
            } => c,
            Outcome::Error { code, .. } => code,
        }
    }
}

pub fn command_result(ids: &[String], outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Success(states) => json!({ "ids": ids, "status": "SUCCESS", "states": states }),
        Outcome::Offline => {
            json!({ "ids": ids, "status": "OFFLINE", "errorCode": code::DEVICE_OFFLINE })
        }
        Outcome::Pending => json!({ "ids": ids, "status": "PENDING" }),
        Outcome::Error { code, challenge } => {
            let mut v = json!({ "ids": ids, "status": "ERROR", "errorCode": code });
            if let Some(kind) = challenge {
                v["challengeNeeded"] = json!({ "type": kind });
            }
            v
        }
    }
}

pub fn sync(request_id: &str, agent_user_id: &str, devices: Vec<Value>) -> Value {
    json!({ "requestId": request_id, "payload": { "agentUserId": agent_user_id, "devices": devices } })
}

pub fn query(request_id: &str, devices: Map<String, Value>) -> Value {
    json!({ "requestId": request_id, "payload": { "devices": devices } })
}

pub fn execute(request_id: &str, commands: Vec<Value>) -> Value {
    json!({ "requestId": request_id, "payload": { "commands": commands } })
}

/// A whole-request error (every device alike), e.g. `authFailure` or `protocolError`.
pub fn error(request_id: &str, error_code: &str) -> Value {
    json!({ "requestId": request_id, "payload": { "errorCode": error_code } })
}
