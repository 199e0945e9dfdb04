//! Redaction of Google requests before anything about them is logged.
//!
//! The PIN of secondary user verification travels in `challenge.pin` of an EXECUTE: every
//! `challenge` object is masked whole, whatever shape a malformed request gives it, and so are
//! values under keys that carry secrets anywhere else.

use serde_json::Value;

use crate::wire::redact::{MASK, redacted};

const SECRET_KEYS: &[&str] = &[
    "pin",
    "token",
    "code",
    "access_token",
    "refresh_token",
    "assertion",
    "private_key",
];

/// Returns a copy with PINs, challenges and tokens replaced by "[redacted]".
pub fn redact(request: &Value) -> Value {
    redacted(request, &|key, child| {
        let secret = key == "challenge" || SECRET_KEYS.contains(&key);
        if secret {
            *child = Value::String(MASK.into());
        }
        secret
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_the_challenge_whatever_its_shape_and_keeps_the_command() {
        for challenge in [
            json!({"pin": "47291836"}),
            json!({"pin": 47291836}),
            json!(["47291836"]),
            json!("47291836"),
            json!({"nested": {"value": "47291836"}}),
        ] {
            let r = json!({"requestId": "r", "inputs": [{"intent": "action.devices.EXECUTE",
                "payload": {"commands": [{"devices": [{"id": "home"}], "execution": [{
                    "command": "action.devices.commands.ArmDisarm",
                    "params": {"arm": false}, "challenge": challenge}]}]}}]});
            let out = redact(&r).to_string();
            assert!(!out.contains("47291836"), "{out}");
            assert!(out.contains("action.devices.commands.ArmDisarm"));
        }
        // A pin outside a challenge, as a malformed request might put it.
        let r = json!({"a": [{"pin": "5555"}], "b": {"assertion": "eyJ.x"}});
        let out = redact(&r).to_string();
        assert!(!out.contains("5555") && !out.contains("eyJ.x"), "{out}");
    }
}
