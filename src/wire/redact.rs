//! The walk both assistants' redactors share: every object at any depth, each key's value either
//! masked by the assistant's rule or walked into. The rules (which keys carry a PIN or a token)
//! are each assistant's own: crate::wire::alexa::redact, crate::wire::google::redact.

use serde_json::Value;

/// What a masked value becomes.
pub const MASK: &str = "[redacted]";

/// A copy of `message` in which `rule(key, value)` has masked what it must, returning `true`
/// for a value it took care of (masked, whole or in part); the others are walked into.
pub fn redacted(message: &Value, rule: &dyn Fn(&str, &mut Value) -> bool) -> Value {
    let mut copy = message.clone();
    walk(&mut copy, rule);
    copy
}

fn walk(v: &mut Value, rule: &dyn Fn(&str, &mut Value) -> bool) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !rule(key, child) {
                    walk(child, rule);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, rule)),
        _ => {}
    }
}
