//! A JSON Schema validator for exactly the subset docs/openapi/*.json uses, so the kit can check
//! reply shapes against the contract and the tests can check the files' examples. A keyword
//! outside the subset is an error, never silently ignored.

use serde_json::{Map, Value};

pub const PANEL_API_JSON: &str = include_str!("../../../docs/openapi/panel-api.json");
pub const MANAGEMENT_API_JSON: &str = include_str!("../../../docs/openapi/management-api.json");

/// Annotations: no effect on validation. (`format` is one too, but for `uuid`, which the
/// request ids' contract needs: [`is_uuid`], and `date-time`: [`is_date_time`].)
const ANNOTATIONS: [&str; 6] = [
    "description",
    "title",
    "examples",
    "example",
    "format",
    "default",
];

/// The hyphenated form `8-4-4-4-12` of hex digits, as JSON Schema's `uuid` format reads it.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A format's check: whether a string keeps to it.
type Check = fn(&str) -> bool;

/// The `pattern`s the contracts use, each checked by the function that states the same format
/// in the code that relies on it (no regex engine here): the file and the code can't drift
/// apart without this table failing to know a pattern.
const PATTERNS: [(&str, Check); 4] = [
    (
        "^[0-9A-Fa-f]{3,16}$",
        crate::wire::dc09::frame::valid_account,
    ),
    ("^[0-9A-Fa-f]{1,6}$", crate::wire::dc09::frame::valid_prefix),
    (
        "^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$",
        crate::domain::ports::monitoring::valid_receiver,
    ),
    (
        "^(?![0-9A-Fa-f]{32}$)[!-~]{1,512}$",
        crate::domain::ports::monitoring::valid_key_ref,
    ),
];

/// An RFC 3339 date-time, as JSON Schema's `date-time` format reads it.
fn is_date_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

pub fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Null)
}

pub fn panel_api() -> Value {
    parse(PANEL_API_JSON)
}

pub fn management_api() -> Value {
    parse(MANAGEMENT_API_JSON)
}

/// Validates `value` against `#/components/schemas/{name}` of `doc`.
pub fn validate_named(doc: &Value, name: &str, value: &Value) -> Result<(), String> {
    let schema = doc["components"]["schemas"]
        .get(name)
        .ok_or_else(|| format!("no schema {name}"))?;
    validate(doc, schema, value, "$")
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Result<&'a Value, String> {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .ok_or_else(|| format!("unsupported $ref {reference}"))?;
    doc["components"]["schemas"]
        .get(name)
        .ok_or_else(|| format!("dangling $ref {reference}"))
}

fn type_matches(t: &str, v: &Value) -> Result<bool, String> {
    Ok(match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        // JSON Schema's integer is a number without a fraction: 134.0 is one.
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => return Err(format!("unsupported type {other}")),
    })
}

fn number(schema: &Map<String, Value>, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

/// Validates `value` against `schema`; `at` names the place for the error message.
pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let s = schema
        .as_object()
        .ok_or_else(|| format!("{at}: schema is not an object"))?;
    for key in s.keys() {
        let known = ANNOTATIONS.contains(&key.as_str())
            || [
                "$ref",
                "type",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "enum",
                "const",
                "oneOf",
                "minimum",
                "maximum",
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
                "pattern",
            ]
            .contains(&key.as_str());
        if !known {
            return Err(format!("{at}: unsupported schema keyword {key}"));
        }
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        validate(doc, resolve(doc, r)?, value, at)?;
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, value)?,
            Value::Array(ts) => {
                let mut any = false;
                for t in ts {
                    any |= type_matches(t.as_str().unwrap_or("?"), value)?;
                }
                any
            }
            _ => return Err(format!("{at}: type must be a string or list")),
        };
        if !ok {
            return Err(format!("{at}: expected {t}, got {value}"));
        }
    }
    if s.get("format").and_then(Value::as_str) == Some("uuid")
        && value.as_str().is_some_and(|v| !is_uuid(v))
    {
        return Err(format!("{at}: not a UUID"));
    }
    if s.get("format").and_then(Value::as_str) == Some("date-time")
        && value.as_str().is_some_and(|v| !is_date_time(v))
    {
        return Err(format!("{at}: not an RFC 3339 date-time"));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        let check = PATTERNS
            .iter()
            .find(|(known, _)| *known == p)
            .map(|(_, check)| check)
            .ok_or_else(|| format!("{at}: unsupported pattern {p}"))?;
        if value.as_str().is_some_and(|v| !check(v)) {
            return Err(format!("{at}: does not match {p}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        return Err(format!(
            "{at}: {value} is not one of {}",
            Value::Array(e.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return Err(format!("{at}: expected {c}, got {value}"));
    }
    if let Some(n) = value.as_f64()
        && (number(s, "minimum").is_some_and(|m| n < m)
            || number(s, "maximum").is_some_and(|m| n > m))
    {
        return Err(format!("{at}: {n} is out of range"));
    }
    if let Some(text) = value.as_str() {
        let len = text.chars().count() as f64;
        if number(s, "minLength").is_some_and(|m| len < m)
            || number(s, "maxLength").is_some_and(|m| len > m)
        {
            return Err(format!("{at}: length {len} is out of range"));
        }
    }
    if let Some(obj) = value.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = req.as_str().unwrap_or("");
            if !obj.contains_key(name) {
                return Err(format!("{at}: missing required {name}"));
            }
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(doc, ps, v, &format!("{at}.{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{at}: unexpected property {k}"));
                    }
                    Some(extra @ Value::Object(_)) => {
                        validate(doc, extra, v, &format!("{at}.{k}"))?
                    }
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as f64;
        if number(s, "minItems").is_some_and(|m| len < m)
            || number(s, "maxItems").is_some_and(|m| len > m)
        {
            return Err(format!("{at}: {len} items is out of range"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(doc, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(options) = s.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|o| validate(doc, o, value, at).is_ok())
            .count();
        if matching != 1 {
            return Err(format!(
                "{at}: matches {matching} of the oneOf schemas, not exactly one"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subset_is_enforced() {
        let doc = json!({"components": {"schemas": {
            "P": {"type": "object", "required": ["n"], "additionalProperties": false,
                  "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9},
                                 "s": {"type": ["string", "null"], "maxLength": 2}}}}}});
        let ok = |v: Value| validate_named(&doc, "P", &v);
        assert!(ok(json!({"n": 3, "s": null})).is_ok());
        assert!(ok(json!({"n": 0})).is_err());
        assert!(ok(json!({"n": 3, "x": 1})).is_err());
        assert!(ok(json!({"s": "a"})).is_err());
        assert!(ok(json!({"n": 3, "s": "abc"})).is_err());
        // JSON Schema's integer: a number without a fraction, however it is written.
        assert!(ok(json!({"n": 3.0})).is_ok());
        assert!(ok(json!({"n": 3.5})).is_err());
        let ids = json!({"components": {"schemas": {"R": {"type": "string", "format": "uuid"}}}});
        let id = |v: &str| validate_named(&ids, "R", &json!(v));
        assert!(id("0b7f2c1e-5d9a-4b8e-a7c3-2f6d1e9b0a44").is_ok());
        for bad in [
            "0",
            "req-1",
            "0b7f2c1e5d9a4b8ea7c32f6d1e9b0a44",
            "0b7f2c1e-5d9a-4b8e-a7c3-2f6d1e9b0a4g",
        ] {
            assert!(id(bad).is_err(), "{bad}");
        }
        let formats = json!({"components": {"schemas": {
            "T": {"type": "string", "format": "date-time"},
            "A": {"type": "string", "pattern": "^[0-9A-Fa-f]{3,16}$"}}}});
        let check = |name: &str, v: &str| validate_named(&formats, name, &json!(v));
        assert!(check("T", "2026-11-25T10:00:00.123Z").is_ok());
        assert!(check("T", "2026-11-25 10:00").is_err());
        assert!(check("A", "1234").is_ok());
        assert!(check("A", "12G4").is_err());
        let odd = json!({"components": {"schemas": {"Q": {"pattern": "^a$"}}}});
        assert!(
            validate_named(&odd, "Q", &json!("a"))
                .unwrap_err()
                .contains("unsupported")
        );
    }
}
