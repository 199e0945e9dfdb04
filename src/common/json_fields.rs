//! Typed fields out of untrusted JSON, for the assistants' wire formats (crate::wire::alexa,
//! crate::wire::google).
//!
//! Parsing walks `serde_json::Value` by hand instead of deriving `Deserialize`: serde's messages
//! quote the offending value ("invalid type: integer `4729`"), and an ill-typed PIN must never
//! reach an error message or a log line. Every message here names the field path only.

use serde_json::{Map, Value};

/// A JSON object with the path that led to it, for messages like
/// "directive.payload.armState must be a string" or
/// "inputs[0].payload.commands[0].execution[0].params.arm must be a boolean".
pub struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// The top of a message; `what` names it in the error ("the request", "the message").
    pub fn root(value: &'a Value, what: &str) -> Result<Self, String> {
        Self::at(String::new(), value).map_err(|_| format!("{what} must be a JSON object"))
    }

    pub fn at(path: String, value: &'a Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Obj { path, map }),
            _ => Err(format!("{path} must be an object")),
        }
    }

    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn obj(&self, key: &str) -> Result<Obj<'a>, String> {
        self.required(key, self.opt_obj(key)?)
    }

    pub fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Self::at(self.path(key), v).map(Some),
        }
    }

    pub fn array(&self, key: &str) -> Result<&'a Vec<Value>, String> {
        match self.map.get(key) {
            Some(Value::Array(items)) => Ok(items),
            None | Some(Value::Null) => Err(format!("missing field {}", self.path(key))),
            Some(_) => Err(format!("{} must be an array", self.path(key))),
        }
    }

    pub fn string(&self, key: &str) -> Result<String, String> {
        self.required(key, self.opt_string(key)?)
    }

    pub fn opt_string(&self, key: &str) -> Result<Option<String>, String> {
        self.opt_typed(key, "a string", |v| v.as_str().map(str::to_owned))
    }

    pub fn bool(&self, key: &str) -> Result<bool, String> {
        self.required(key, self.opt_bool(key)?)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        self.opt_typed(key, "a boolean", Value::as_bool)
    }

    fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, String> {
        value.ok_or_else(|| format!("missing field {}", self.path(key)))
    }

    /// `None` for a missing or null field; `what` names the type `get` takes in the error.
    fn opt_typed<T>(
        &self,
        key: &str,
        what: &str,
        get: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => get(v)
                .map(Some)
                .ok_or_else(|| format!("{} must be {what}", self.path(key))),
        }
    }
}
