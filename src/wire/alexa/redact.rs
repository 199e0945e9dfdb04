//! Redaction of directives before anything about them is logged.
//!
//! Generic redactors (Home Assistant's redacts `correlationToken` and `token`) miss the spoken
//! PIN in `payload.authorization.value`, so this one walks every object and masks values under
//! keys that carry secrets, wherever they appear.

use serde_json::Value;

use crate::wire::redact::{MASK, redacted};

const SECRET_KEYS: &[&str] = &["token", "code", "access_token", "refresh_token"];

/// Returns a copy with PINs, tokens and grant codes replaced by "[redacted]".
///
/// Inside `authorization` (where Alexa puts the spoken PIN) everything is masked but a string
/// `type`, whatever shape a malformed directive gives it: an array, a number, a nested object.
/// Everywhere else only the secret keys are: a `value` there is a property value such as
/// "ARMED_AWAY" that is useful in logs.
pub fn redact(directive: &Value) -> Value {
    redacted(directive, &|key, child| {
        if key == "authorization" {
            mask_authorization(child);
        } else if SECRET_KEYS.contains(&key) {
            *child = Value::String(MASK.into());
        } else {
            return false;
        }
        true
    })
}

fn mask_authorization(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !(key == "type" && child.is_string()) {
                    *child = Value::String(MASK.into());
                }
            }
        }
        other => *other = Value::String(MASK.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_pin_tokens_and_codes_but_keeps_arm_state() {
        let d = json!({"directive":{
            "header":{"namespace":"Alexa.SecurityPanelController","name":"Disarm"},
            "endpoint":{"scope":{"type":"BearerToken","token":"eyJ.secret"},"endpointId":"home"},
            "payload":{"authorization":{"type":"FOUR_DIGIT_PIN","value":"4729"},
                       "grant":{"code":"ANxyz"},"armState":"ARMED_AWAY"}}});
        let r = redact(&d).to_string();
        for secret in ["4729", "eyJ.secret", "ANxyz"] {
            assert!(!r.contains(secret), "{secret} leaked in {r}");
        }
        assert!(r.contains("ARMED_AWAY"));
        assert!(r.contains("FOUR_DIGIT_PIN"));
    }

    #[test]
    fn masks_pin_even_when_ill_typed() {
        for auth in [
            json!({"value": 4729}),
            json!(["4729"]),
            json!("4729"),
            json!(4729),
            json!({"type": {"type": "4729"}, "pin": "4729"}),
            json!({"type": "FOUR_DIGIT_PIN", "value": {"digits": ["4729"]}}),
        ] {
            let d = json!({"directive":{"payload":{"authorization": auth}}});
            let r = redact(&d).to_string();
            assert!(!r.contains("4729"), "{r}");
        }
        // Nested deeper, as in an AcceptGrant's grant or a malformed endpoint.
        let d = json!({"a":[{"authorization":["4729"]}, {"grant":{"code":"4729"}}]});
        assert!(!redact(&d).to_string().contains("4729"));
    }
}
