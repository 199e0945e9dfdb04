//! Redaction of directives before anything about them is logged.
//!
//! Generic redactors (Home Assistant's redacts `correlationToken` and `token`) miss the spoken
//! PIN in `payload.authorization.value`, so this one walks every object and masks values under
//! keys that carry secrets, wherever they appear.

use serde_json::Value;

const SECRET_KEYS: &[&str] = &["token", "code", "value", "access_token", "refresh_token"];

/// Returns a copy with PINs, tokens and grant codes replaced by "[redacted]".
///
/// `value` is masked only inside an `authorization` object: everywhere else it is a property
/// value such as "ARMED_AWAY" that is useful in logs.
pub fn redact(directive: &Value) -> Value {
    let mut copy = directive.clone();
    walk(&mut copy, false);
    copy
}

fn walk(v: &mut Value, in_authorization: bool) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let secret =
                    SECRET_KEYS.contains(&key.as_str()) && (key != "value" || in_authorization);
                if secret {
                    *child = Value::String("[redacted]".into());
                } else {
                    walk(child, key == "authorization");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, in_authorization)),
        _ => {}
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
        let d = json!({"directive":{"payload":{"authorization":{"value":4729}}}});
        assert!(!redact(&d).to_string().contains("4729"));
    }
}
