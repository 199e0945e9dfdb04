//! Requests Google sends to the fulfillment URL, parsed into typed values.
//!
//! As for Alexa (crate::wire::alexa::directive), parsing walks `serde_json::Value` by hand: serde's
//! messages quote the offending value, and an ill-typed `challenge.pin` must never reach an error
//! message or a log line. Every message here names the field path only.

use serde_json::Value;

use crate::common::json_fields::Obj;

use crate::common::secret::Pin;

pub const SYNC: &str = "action.devices.SYNC";
pub const QUERY: &str = "action.devices.QUERY";
pub const EXECUTE: &str = "action.devices.EXECUTE";
pub const DISCONNECT: &str = "action.devices.DISCONNECT";
pub const ARM_DISARM: &str = "action.devices.commands.ArmDisarm";

#[derive(Debug, Clone)]
pub struct Request {
    pub request_id: String,
    pub intent: Intent,
}

#[derive(Debug, Clone)]
pub enum Intent {
    Sync,
    Query { devices: Vec<String> },
    Execute { commands: Vec<Command> },
    Disconnect,
}

impl Intent {
    /// The intent's short name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Intent::Sync => "SYNC",
            Intent::Query { .. } => "QUERY",
            Intent::Execute { .. } => "EXECUTE",
            Intent::Disconnect => "DISCONNECT",
        }
    }
}

/// One entry of `payload.commands`: the devices and what to do with them, in order.
#[derive(Debug, Clone)]
pub struct Command {
    pub devices: Vec<String>,
    pub executions: Vec<Execution>,
}

#[derive(Debug, Clone)]
pub enum Execution {
    ArmDisarm(ArmDisarm),
    /// A command this integration has no trait for; answered `functionNotSupported`.
    Other {
        command: String,
    },
}

/// `action.devices.commands.ArmDisarm` with its secondary-user-verification challenge.
#[derive(Debug, Clone)]
pub struct ArmDisarm {
    pub arm: bool,
    pub cancel: bool,
    pub level: Option<String>,
    /// `challenge.pin`, exactly as the user said or typed it.
    pub pin: Option<Pin>,
}

impl ArmDisarm {
    /// Disarming and cancelling an arming both end with the panel disarmed: both need the PIN.
    pub fn disarms(&self) -> bool {
        !self.arm || self.cancel
    }
}

/// Why a request could not be used. Keeps the requestId (when there was one) for the reply.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub request_id: String,
    pub message: String,
}

pub fn parse_bytes(raw: &[u8]) -> Result<Request, ParseError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(v) => parse(&v),
        // serde_json's syntax errors only carry line and column, never content.
        Err(e) => Err(ParseError {
            request_id: String::new(),
            message: format!("body is not JSON ({e})"),
        }),
    }
}

pub fn parse(value: &Value) -> Result<Request, ParseError> {
    let salvaged = value["requestId"].as_str().unwrap_or_default().to_string();
    let fail = |message: String| ParseError {
        request_id: salvaged.clone(),
        message,
    };
    let root = Obj::root(value, "the request").map_err(fail)?;
    let request_id = root.string("requestId").map_err(fail)?;
    let inputs = root.array("inputs").map_err(fail)?;
    // Google sends exactly one input per request.
    let input = match inputs.first() {
        Some(first) => Obj::at("inputs[0]".to_string(), first).map_err(fail)?,
        None => return Err(fail("inputs must not be empty".to_string())),
    };
    let intent = match input.string("intent").map_err(fail)?.as_str() {
        SYNC => Intent::Sync,
        DISCONNECT => Intent::Disconnect,
        QUERY => {
            let payload = input.obj("payload").map_err(fail)?;
            Intent::Query {
                devices: device_ids(&payload).map_err(fail)?,
            }
        }
        EXECUTE => {
            let payload = input.obj("payload").map_err(fail)?;
            let mut commands = vec![];
            for (i, c) in payload.array("commands").map_err(fail)?.iter().enumerate() {
                let c = Obj::at(format!("{}[{i}]", payload.path("commands")), c).map_err(fail)?;
                let mut executions = vec![];
                for (j, e) in c.array("execution").map_err(fail)?.iter().enumerate() {
                    let e = Obj::at(format!("{}[{j}]", c.path("execution")), e).map_err(fail)?;
                    executions.push(execution(&e).map_err(fail)?);
                }
                commands.push(Command {
                    devices: device_ids(&c).map_err(fail)?,
                    executions,
                });
            }
            Intent::Execute { commands }
        }
        other => return Err(fail(format!("unsupported intent {other}"))),
    };
    Ok(Request { request_id, intent })
}

fn device_ids(parent: &Obj<'_>) -> Result<Vec<String>, String> {
    let mut ids = vec![];
    for (i, d) in parent.array("devices")?.iter().enumerate() {
        let d = Obj::at(format!("{}[{i}]", parent.path("devices")), d)?;
        ids.push(d.string("id")?);
    }
    Ok(ids)
}

fn execution(e: &Obj<'_>) -> Result<Execution, String> {
    let command = e.string("command")?;
    if command != ARM_DISARM {
        return Ok(Execution::Other { command });
    }
    let params = e.obj("params")?;
    let pin = match e.opt_obj("challenge")? {
        None => None,
        Some(c) => c.opt_string("pin")?.map(Pin::new),
    };
    Ok(Execution::ArmDisarm(ArmDisarm {
        arm: params.bool("arm")?,
        cancel: params.opt_bool("cancel")?.unwrap_or(false),
        level: params.opt_string("armLevel")?,
        pin,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn execute(challenge: Value) -> Value {
        json!({"requestId": "r1", "inputs": [{"intent": EXECUTE, "payload": {"commands": [{
            "devices": [{"id": "home", "customData": {}}],
            "execution": [{"command": ARM_DISARM, "params": {"arm": false}, "challenge": challenge}]
        }]}}]})
    }

    #[test]
    fn a_pin_keeps_its_digits_and_debug_hides_it() {
        let r = parse(&execute(json!({"pin": "04729183"}))).unwrap();
        let Intent::Execute { commands } = &r.intent else {
            panic!("not an execute")
        };
        let Execution::ArmDisarm(a) = &commands[0].executions[0] else {
            panic!("not ArmDisarm")
        };
        assert_eq!(a.pin.as_ref().unwrap().expose(), "04729183");
        assert!(a.disarms());
        assert_eq!(commands[0].devices, ["home"]);
        assert!(!format!("{r:?}").contains("04729183"));
    }

    #[test]
    fn an_ill_typed_pin_is_named_by_path_never_by_value() {
        for pin in [json!(4729), json!(["4729"]), json!({"digits": "4729"})] {
            let err = parse(&execute(json!({ "pin": pin }))).unwrap_err();
            assert_eq!(
                err.message,
                "inputs[0].payload.commands[0].execution[0].challenge.pin must be a string"
            );
            assert!(!format!("{err:?}").contains("4729"));
            assert_eq!(err.request_id, "r1");
        }
    }

    #[test]
    fn unknown_intents_and_bad_shapes_are_errors_with_the_request_id() {
        let e = parse(&json!({"requestId": "r2", "inputs": [{"intent": "action.devices.X"}]}))
            .unwrap_err();
        assert_eq!(e.message, "unsupported intent action.devices.X");
        assert_eq!(e.request_id, "r2");
        let e = parse(&json!({"requestId": "r3", "inputs": []})).unwrap_err();
        assert_eq!(e.message, "inputs must not be empty");
        let e = parse(&json!([1])).unwrap_err();
        assert_eq!(e.request_id, "");
        assert!(
            parse_bytes(b"{")
                .unwrap_err()
                .message
                .starts_with("body is not JSON")
        );
        let mut bad = execute(json!(null));
        bad["inputs"][0]["payload"]["commands"][0]["execution"][0]["params"]["arm"] = json!("no");
        assert!(
            parse(&bad)
                .unwrap_err()
                .message
                .ends_with("params.arm must be a boolean")
        );
    }

    #[test]
    fn other_commands_and_query_devices_parse() {
        let mut other = execute(json!(null));
        other["inputs"][0]["payload"]["commands"][0]["execution"][0]["command"] =
            json!("action.devices.commands.OnOff");
        let Intent::Execute { commands } = parse(&other).unwrap().intent else {
            panic!()
        };
        assert!(
            matches!(&commands[0].executions[0], Execution::Other { command } if command == "action.devices.commands.OnOff")
        );
        let q = json!({"requestId": "q", "inputs": [{"intent": QUERY, "payload": {"devices": [{"id": "home"}, {"id": "home:door"}]}}]});
        let Intent::Query { devices } = parse(&q).unwrap().intent else {
            panic!()
        };
        assert_eq!(devices, ["home", "home:door"]);
    }
}
