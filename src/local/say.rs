//! `alarm-skill say ...`: talks to a running local stack as Alexa would. It gets an
//! account-linking token from the dev issuer, sends a directive to the Lambda invoke endpoint,
//! and prints what Alexa would say.

use serde_json::{Value, json};

use super::INVOKE_PATH;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Utterance {
    /// "Alexa, discover my devices."
    Discover,
    /// "Alexa, is Home armed?" (or the state of a sensor endpoint).
    Status { endpoint: String },
    /// "Alexa, arm Home in away mode." With `bypass`, the user agreed to bypass open zones.
    Arm {
        endpoint: String,
        mode: &'static str,
        bypass: bool,
    },
    /// "Alexa, disarm Home." followed by the spoken PIN, if any.
    Disarm {
        endpoint: String,
        pin: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SayError {
    #[error("cannot reach the local stack at {0}: {1} (is `alarm-skill serve` running?)")]
    Unreachable(String, String),
    #[error("unexpected reply from the local stack: {0}")]
    Protocol(String),
}

fn header(namespace: &str, name: &str, correlated: bool) -> Value {
    let mut h = json!({
        "namespace": namespace,
        "name": name,
        "messageId": uuid::Uuid::new_v4().to_string(),
        "payloadVersion": "3"
    });
    if correlated {
        h["correlationToken"] = json!(uuid::Uuid::new_v4().to_string());
    }
    h
}

fn endpoint(id: &str, token: &str) -> Value {
    json!({ "scope": { "type": "BearerToken", "token": token }, "endpointId": id, "cookie": {} })
}

/// The directive Alexa sends for an utterance.
pub fn directive(u: &Utterance, token: &str) -> Value {
    match u {
        Utterance::Discover => json!({ "directive": {
            "header": header("Alexa.Discovery", "Discover", false),
            "payload": { "scope": { "type": "BearerToken", "token": token } }
        }}),
        Utterance::Status { endpoint: id } => json!({ "directive": {
            "header": header("Alexa", "ReportState", true),
            "endpoint": endpoint(id, token),
            "payload": {}
        }}),
        Utterance::Arm {
            endpoint: id,
            mode,
            bypass,
        } => {
            let mut payload = json!({ "armState": mode });
            if *bypass {
                payload["bypassType"] = json!("BYPASS_ALL");
            }
            json!({ "directive": {
                "header": header("Alexa.SecurityPanelController", "Arm", true),
                "endpoint": endpoint(id, token),
                "payload": payload
            }})
        }
        Utterance::Disarm { endpoint: id, pin } => {
            let payload = match pin {
                Some(p) => json!({ "authorization": { "type": "FOUR_DIGIT_PIN", "value": p } }),
                None => json!({}),
            };
            json!({ "directive": {
                "header": header("Alexa.SecurityPanelController", "Disarm", true),
                "endpoint": endpoint(id, token),
                "payload": payload
            }})
        }
    }
}

fn prop<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    reply["context"]["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| &p["value"])
}

fn mode_words(state: &str) -> &'static str {
    match state {
        "ARMED_AWAY" => "armed in away mode",
        "ARMED_STAY" => "armed in home mode",
        "ARMED_NIGHT" => "armed in night mode",
        "DISARMED" => "disarmed",
        _ => "in an unknown state",
    }
}

fn list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What Alexa would say for `reply`. `name` is the device's friendly name.
pub fn speech(u: &Utterance, reply: &Value, name: &str) -> String {
    let header = &reply["event"]["header"];
    let payload = &reply["event"]["payload"];
    if header["name"] == "ErrorResponse" {
        let names = |key: &str| -> Vec<String> {
            payload[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e["friendlyName"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        return match payload["type"].as_str().unwrap_or("") {
            "BYPASS_NEEDED" => {
                let open = names("endpointsNeedingBypass");
                let verb = if open.len() == 1 { "is" } else { "are" };
                format!(
                    "{} {verb} open. Do you want to bypass and arm? (repeat with --bypass)",
                    list(&open)
                )
            }
            "AUTHORIZATION_REQUIRED" => {
                format!("{name} is armed in away mode. Disarm it first to change the mode.")
            }
            "NOT_READY" => {
                format!("{name} isn't ready to arm. Close the open doors and windows first.")
            }
            "UNAUTHORIZED" => "Sorry, that voice code isn't right.".to_string(),
            "UNCLEARED_ALARM" => format!("{name} has an alarm that hasn't been cleared."),
            "UNCLEARED_TROUBLE" => format!("{name} has a trouble condition. Check your panel."),
            "ENDPOINT_UNREACHABLE" => format!(
                "{name} isn't responding. Please check its network connection and power supply."
            ),
            "BRIDGE_UNREACHABLE" => format!("The hub for {name} isn't responding."),
            "NO_SUCH_ENDPOINT" => "I couldn't find that device.".to_string(),
            "EXPIRED_AUTHORIZATION_CREDENTIAL" | "INVALID_AUTHORIZATION_CREDENTIAL" => {
                "Your account link has expired. Relink the skill in the Alexa app.".to_string()
            }
            other => format!("Sorry, something went wrong ({other})."),
        };
    }
    match u {
        Utterance::Discover => {
            let endpoints = payload["endpoints"].as_array().cloned().unwrap_or_default();
            let names: Vec<String> = endpoints
                .iter()
                .map(|e| {
                    let kind = match e["displayCategories"][0].as_str().unwrap_or("") {
                        "SECURITY_PANEL" => "security panel",
                        "CONTACT_SENSOR" => "contact sensor",
                        "MOTION_SENSOR" => "motion sensor",
                        _ => "device",
                    };
                    format!("{} ({kind})", e["friendlyName"].as_str().unwrap_or("?"))
                })
                .collect();
            match names.len() {
                0 => "I didn't find any devices.".to_string(),
                n => format!("I found {n} devices: {}.", list(&names)),
            }
        }
        Utterance::Status { .. } => {
            let reachable = prop(reply, "connectivity").is_none_or(|c| c["value"] == "OK");
            let mut words = Vec::new();
            if let Some(state) = prop(reply, "armState").and_then(Value::as_str) {
                words.push(format!("{name} is {}.", mode_words(state)));
                for (key, what) in [
                    ("burglaryAlarm", "burglary"),
                    ("fireAlarm", "fire"),
                    ("carbonMonoxideAlarm", "carbon monoxide"),
                    ("waterAlarm", "water"),
                ] {
                    if prop(reply, key).is_some_and(|v| v["value"] == "ALARM") {
                        words.push(format!("The {what} alarm is going off."));
                    }
                }
            } else if let Some(d) = prop(reply, "detectionState").and_then(Value::as_str) {
                let open = d == "DETECTED";
                words.push(format!(
                    "{name} is {}.",
                    if open { "open" } else { "closed" }
                ));
            }
            if !reachable {
                words.push(format!("{name} isn't responding right now."));
            }
            words.join(" ")
        }
        Utterance::Arm { .. } => {
            let state = prop(reply, "armState")
                .and_then(Value::as_str)
                .unwrap_or("");
            let delay = payload["exitDelayInSeconds"].as_u64().unwrap_or(0);
            let bypassed: Vec<String> = payload["bypassedEndpoints"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e["friendlyName"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut words = vec![format!("{name} is {}.", mode_words(state))];
            if !bypassed.is_empty() {
                words.push(format!("I bypassed {}.", list(&bypassed)));
            }
            if delay > 0 {
                words.push(format!("You have {delay} seconds to leave."));
            }
            words.join(" ")
        }
        Utterance::Disarm { .. } => format!("{name} is disarmed."),
    }
}

pub struct Say {
    base: String,
    account: String,
    http: reqwest::Client,
}

impl Say {
    pub fn new(base_url: &str, account: &str) -> Self {
        Say {
            base: base_url.trim_end_matches('/').to_string(),
            account: account.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, SayError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| SayError::Unreachable(self.base.clone(), e.to_string()))?;
        resp.json::<Value>()
            .await
            .map_err(|e| SayError::Protocol(e.to_string()))
    }

    pub async fn token(&self) -> Result<String, SayError> {
        let reply = self
            .post("/dev/token", &json!({ "sub": self.account }))
            .await?;
        reply["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SayError::Protocol("no access_token from /dev/token".into()))
    }

    /// Sends the utterance's directive; returns Alexa's words and the raw reply.
    pub async fn say(&self, u: &Utterance) -> Result<(String, Value), SayError> {
        let token = self.token().await?;
        let reply = self.post(INVOKE_PATH, &directive(u, &token)).await?;
        let name = match u {
            Utterance::Discover => String::new(),
            Utterance::Status { endpoint }
            | Utterance::Arm { endpoint, .. }
            | Utterance::Disarm { endpoint, .. } => self.friendly_name(&token, endpoint).await,
        };
        Ok((speech(u, &reply, &name), reply))
    }

    /// The endpoint's friendly name, as Alexa knows it from discovery.
    async fn friendly_name(&self, token: &str, endpoint: &str) -> String {
        let found = self
            .post(INVOKE_PATH, &directive(&Utterance::Discover, token))
            .await
            .ok()
            .and_then(|d| {
                d["event"]["payload"]["endpoints"]
                    .as_array()?
                    .iter()
                    .find(|e| e["endpointId"] == endpoint)
                    .and_then(|e| e["friendlyName"].as_str().map(str::to_string))
            });
        found.unwrap_or_else(|| endpoint.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_needed_lists_the_open_zones() {
        let reply = json!({"event":{"header":{"namespace":"Alexa.SecurityPanelController","name":"ErrorResponse"},
            "payload":{"type":"BYPASS_NEEDED","endpointsNeedingBypass":[
                {"friendlyName":"Back door","endpointId":"home:back-door"},
                {"friendlyName":"Hallway","endpointId":"home:hallway"}]}}});
        let u = Utterance::Arm {
            endpoint: "home".into(),
            mode: "ARMED_AWAY",
            bypass: false,
        };
        assert_eq!(
            speech(&u, &reply, "Home"),
            "Back door and Hallway are open. Do you want to bypass and arm? (repeat with --bypass)"
        );
    }

    #[test]
    fn disarm_directive_carries_the_pin_only_in_authorization() {
        let d = directive(
            &Utterance::Disarm {
                endpoint: "home".into(),
                pin: Some("0472".into()),
            },
            "tok",
        );
        assert_eq!(d["directive"]["payload"]["authorization"]["value"], "0472");
        assert_eq!(d["directive"]["endpoint"]["scope"]["token"], "tok");
        let d = directive(
            &Utterance::Disarm {
                endpoint: "home".into(),
                pin: None,
            },
            "tok",
        );
        assert_eq!(d["directive"]["payload"], json!({}));
    }
}
