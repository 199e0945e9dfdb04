//! `alarm-skill say ...`: talks to a running local stack as Alexa (or, with `--assistant
//! google`, Google Assistant) would. It gets an account-linking token from the dev issuer, sends
//! a directive to the Lambda invoke endpoint (or an intent to the Google fulfillment URL), and
//! prints what the assistant would say.

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

/// The arm modes as the console and `alarm-skill say` name them, and as Alexa's directive does.
pub const MODES: [(&str, &str); 3] = [
    ("away", "ARMED_AWAY"),
    ("stay", "ARMED_STAY"),
    ("night", "ARMED_NIGHT"),
];

/// The console's word for an Alexa arm state (`ARMED_AWAY` → `away`).
fn mode_word(alexa: &str) -> &str {
    MODES
        .iter()
        .find(|(_, a)| *a == alexa)
        .map_or(alexa, |(word, _)| word)
}

impl Utterance {
    /// What was said, for the console's transcript: whether a code was said, never the code,
    /// so a duress and a normal disarm read alike there too.
    pub fn words(&self) -> String {
        match self {
            Utterance::Discover => "discover my devices".to_string(),
            Utterance::Status { endpoint } => format!("status of {endpoint}"),
            Utterance::Arm {
                endpoint,
                mode,
                bypass,
            } => {
                let mode = mode_word(mode);
                let bypass = if *bypass {
                    ", bypassing open zones"
                } else {
                    ""
                };
                format!("arm {endpoint} {mode}{bypass}")
            }
            Utterance::Disarm { endpoint, pin } => {
                let code = if pin.is_some() { " (with a code)" } else { "" };
                format!("disarm {endpoint}{code}")
            }
        }
    }

    /// The body of `POST /dev/say` (the console's and `alarm-skill say`'s) for this utterance.
    pub fn dev_say_body(&self, assistant: Assistant, account: &str) -> Value {
        let mut body = match self {
            Utterance::Discover => json!({ "command": "discover" }),
            Utterance::Status { endpoint } => json!({ "command": "status", "endpoint": endpoint }),
            Utterance::Arm {
                endpoint,
                mode,
                bypass,
            } => json!({
                "command": "arm", "endpoint": endpoint, "mode": mode_word(mode), "bypass": bypass
            }),
            // No code is `null`, which `/dev/say` reads as none.
            Utterance::Disarm { endpoint, pin } => {
                json!({ "command": "disarm", "endpoint": endpoint, "pin": pin })
            }
        };
        body["account"] = json!(account);
        body["assistant"] = json!(assistant.id());
        body
    }
}

/// `alarm-skill say`: asks the running stack to speak (`POST /dev/say`) rather than sending
/// the directive itself, so the stack serves it as it serves the console's form, and the
/// console's transcript shows it. Returns the assistant's words and its raw reply.
pub async fn say_through_stack(
    base_url: &str,
    account: &str,
    assistant: Assistant,
    u: &Utterance,
) -> Result<(String, Value), SayError> {
    let base = base_url.trim_end_matches('/');
    let resp = reqwest::Client::new()
        .post(format!("{base}/dev/say"))
        .json(&u.dev_say_body(assistant, account))
        .send()
        .await
        .map_err(|e| SayError::Unreachable(base.to_string(), e.to_string()))?;
    let ok = resp.status().is_success();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| SayError::Protocol(e.to_string()))?;
    match body["speech"].as_str() {
        Some(speech) if ok => Ok((speech.to_string(), body["reply"].clone())),
        _ => Err(SayError::Protocol(
            body["message"]
                .as_str()
                .unwrap_or("no speech from /dev/say")
                .to_string(),
        )),
    }
}

/// Which assistant `say` plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Assistant {
    #[default]
    Alexa,
    Google,
}

impl Assistant {
    pub fn name(self) -> &'static str {
        match self {
            Assistant::Alexa => "Alexa",
            Assistant::Google => "Google",
        }
    }

    /// How `POST /dev/say` names it.
    pub fn id(self) -> &'static str {
        match self {
            Assistant::Alexa => "alexa",
            Assistant::Google => "google",
        }
    }
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

/// What either assistant says after a discovery: each device of `devices` (a JSON array) by
/// the name and kind `describe` finds in it.
fn found_devices(
    devices: &Value,
    describe: impl Fn(&Value) -> (Option<&str>, &'static str),
) -> String {
    let names: Vec<String> = devices
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let (name, kind) = describe(d);
            format!("{} ({kind})", name.unwrap_or("?"))
        })
        .collect();
    match names.len() {
        0 => "I didn't find any devices.".to_string(),
        n => format!("I found {n} devices: {}.", list(&names)),
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
        Utterance::Discover => found_devices(&payload["endpoints"], |e| {
            let kind = match e["displayCategories"][0].as_str().unwrap_or("") {
                "SECURITY_PANEL" => "security panel",
                "CONTACT_SENSOR" => "contact sensor",
                "MOTION_SENSOR" => "motion sensor",
                _ => "device",
            };
            (e["friendlyName"].as_str(), kind)
        }),
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

/// Google's ArmDisarm level for an Alexa arm state.
fn google_level(mode: &str) -> &'static str {
    match mode {
        "ARMED_STAY" => "stay",
        "ARMED_NIGHT" => "night",
        _ => "away",
    }
}

/// The request Google sends for an utterance (QUERY, SYNC, EXECUTE ArmDisarm).
pub fn google_request(u: &Utterance) -> Value {
    let input = match u {
        Utterance::Discover => json!({ "intent": "action.devices.SYNC" }),
        Utterance::Status { endpoint } => json!({ "intent": "action.devices.QUERY",
            "payload": { "devices": [{ "id": endpoint }] } }),
        Utterance::Arm { endpoint, mode, .. } => google_execute(
            endpoint,
            json!({ "arm": true, "armLevel": google_level(mode) }),
            None,
        ),
        Utterance::Disarm { endpoint, pin } => {
            google_execute(endpoint, json!({ "arm": false }), pin.as_deref())
        }
    };
    json!({ "requestId": uuid::Uuid::new_v4().to_string(), "inputs": [input] })
}

fn google_execute(endpoint: &str, params: Value, pin: Option<&str>) -> Value {
    let mut execution = json!({ "command": "action.devices.commands.ArmDisarm", "params": params });
    if let Some(p) = pin {
        execution["challenge"] = json!({ "pin": p });
    }
    json!({ "intent": "action.devices.EXECUTE", "payload": { "commands": [{
        "devices": [{ "id": endpoint }], "execution": [execution] }] } })
}

fn google_level_words(level: Option<&str>) -> &'static str {
    match level {
        Some("stay") => "armed in home mode",
        Some("night") => "armed in night mode",
        Some("away") => "armed in away mode",
        _ => "armed",
    }
}

/// What Google Assistant would say for `reply`. `name` is the device's name.
pub fn google_speech(u: &Utterance, reply: &Value, name: &str) -> String {
    let payload = &reply["payload"];
    let error = |code: &str, challenge: Option<&str>| match (code, challenge) {
        ("challengeNeeded", Some("pinNeeded")) => {
            "What's your security code? (repeat with --pin)".to_string()
        }
        ("challengeNeeded", _) => "Sorry, that security code isn't right.".to_string(),
        ("tooManyFailedAttempts", _) => {
            "Too many wrong security codes: voice disarm is locked for now.".to_string()
        }
        ("alreadyArmed", _) => format!("{name} is already armed."),
        ("alreadyDisarmed", _) => format!("{name} is already disarmed."),
        ("deviceOffline", _) => format!("Sorry, it looks like {name} isn't available right now."),
        ("deviceNotReady", _) => format!("{name} isn't ready. Close the open doors first."),
        ("actionNotAvailable", _) => format!("{name} is armed in away mode. Disarm it first."),
        ("authFailure", _) => "Your account link has expired. Relink it in Google Home.".into(),
        ("deviceNotFound", _) => "I couldn't find that device.".to_string(),
        (other, _) => format!("Sorry, something went wrong ({other})."),
    };
    if let Some(code) = payload["errorCode"].as_str() {
        return error(code, None);
    }
    match u {
        Utterance::Discover => found_devices(&payload["devices"], |d| {
            let kind = match d["type"].as_str().unwrap_or("") {
                "action.devices.types.SECURITYSYSTEM" => "security system",
                "action.devices.types.SENSOR" => "sensor",
                _ => "device",
            };
            (d["name"]["name"].as_str(), kind)
        }),
        Utterance::Status { endpoint } => {
            let s = &payload["devices"][endpoint.as_str()];
            if let Some(code) = s["errorCode"].as_str() {
                return error(code, None);
            }
            if let Some(armed) = s["isArmed"].as_bool() {
                if armed {
                    format!(
                        "{name} is {}.",
                        google_level_words(s["currentArmLevel"].as_str())
                    )
                } else {
                    format!("{name} is disarmed.")
                }
            } else if let Some(p) = s["openPercent"].as_u64() {
                format!("{name} is {}.", if p > 0 { "open" } else { "closed" })
            } else if let Some(o) = s["occupancy"].as_str() {
                let seen = if o == "OCCUPIED" {
                    "detects motion"
                } else {
                    "detects no motion"
                };
                format!("{name} {seen}.")
            } else {
                format!("I couldn't get the state of {name}.")
            }
        }
        Utterance::Arm { .. } | Utterance::Disarm { .. } => {
            let c = &payload["commands"][0];
            if let Some(code) = c["errorCode"].as_str() {
                return error(code, c["challengeNeeded"]["type"].as_str());
            }
            if c["status"] == "PENDING" {
                let doing = if matches!(u, Utterance::Arm { .. }) {
                    "Arming"
                } else {
                    "Disarming"
                };
                return format!("{doing} {name}. It's taking a moment.");
            }
            let states = &c["states"];
            if states["isArmed"] == true {
                let mut words = format!(
                    "Arming {name}: {}.",
                    google_level_words(states["currentArmLevel"].as_str())
                );
                if let Some(n) = states["exitAllowance"].as_u64().filter(|n| *n > 0) {
                    words.push_str(&format!(" You have {n} seconds to leave."));
                }
                words
            } else {
                format!("{name} is disarmed.")
            }
        }
    }
}

pub struct Say {
    base: String,
    account: String,
    assistant: Assistant,
    http: reqwest::Client,
}

impl Say {
    pub fn new(base_url: &str, account: &str) -> Self {
        Say {
            base: base_url.trim_end_matches('/').to_string(),
            account: account.to_string(),
            assistant: Assistant::Alexa,
            http: reqwest::Client::new(),
        }
    }

    /// Plays `assistant` instead of Alexa.
    pub fn with_assistant(mut self, assistant: Assistant) -> Self {
        self.assistant = assistant;
        self
    }

    pub fn assistant(&self) -> Assistant {
        self.assistant
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, SayError> {
        self.post_as(path, body, None).await
    }

    async fn post_as(
        &self,
        path: &str,
        body: &Value,
        bearer: Option<&str>,
    ) -> Result<Value, SayError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.post(&url).json(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req
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
        if self.assistant == Assistant::Google {
            let path = crate::edges::google_fulfillment::PATH;
            let reply = self.post_as(path, &google_request(u), Some(&token)).await?;
            let name = match u {
                Utterance::Discover => String::new(),
                Utterance::Status { endpoint }
                | Utterance::Arm { endpoint, .. }
                | Utterance::Disarm { endpoint, .. } => {
                    let sync = self
                        .post_as(path, &google_request(&Utterance::Discover), Some(&token))
                        .await
                        .ok();
                    sync.and_then(|s| {
                        s["payload"]["devices"]
                            .as_array()?
                            .iter()
                            .find(|d| d["id"] == endpoint.as_str())
                            .and_then(|d| d["name"]["name"].as_str().map(str::to_string))
                    })
                    .unwrap_or_else(|| endpoint.clone())
                }
            };
            return Ok((google_speech(u, &reply, &name), reply));
        }
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
    fn discovery_names_each_device_and_its_kind_for_either_assistant() {
        let alexa = json!({ "event": { "header": { "name": "Discover.Response" }, "payload": { "endpoints": [
            { "friendlyName": "Home", "displayCategories": ["SECURITY_PANEL"] },
            { "friendlyName": "Front door", "displayCategories": ["CONTACT_SENSOR"] },
            { "displayCategories": ["OTHER"] },
        ] } } });
        assert_eq!(
            speech(&Utterance::Discover, &alexa, "Home"),
            "I found 3 devices: Home (security panel), Front door (contact sensor) and ? (device)."
        );
        let google = json!({ "payload": { "devices": [
            { "name": { "name": "Home" }, "type": "action.devices.types.SECURITYSYSTEM" },
            { "name": { "name": "Hall" }, "type": "action.devices.types.SENSOR" },
        ] } });
        assert_eq!(
            google_speech(&Utterance::Discover, &google, "Home"),
            "I found 2 devices: Home (security system) and Hall (sensor)."
        );
        let none = json!({ "payload": {} });
        assert_eq!(
            google_speech(&Utterance::Discover, &none, "Home"),
            "I didn't find any devices."
        );
    }

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
    fn google_asks_for_the_code_and_tells_a_wrong_one() {
        let u = Utterance::Disarm {
            endpoint: "home".into(),
            pin: None,
        };
        let r = google_request(&u);
        let e = &r["inputs"][0]["payload"]["commands"][0]["execution"][0];
        assert_eq!(e["params"], json!({"arm": false}));
        assert!(e.get("challenge").is_none());
        let reply = |kind: &str| {
            json!({"requestId": "r", "payload": {"commands": [{"ids": ["home"], "status": "ERROR",
                "errorCode": "challengeNeeded", "challengeNeeded": {"type": kind}}]}})
        };
        assert_eq!(
            google_speech(&u, &reply("pinNeeded"), "Home"),
            "What's your security code? (repeat with --pin)"
        );
        assert_eq!(
            google_speech(&u, &reply("challengeFailedPinNeeded"), "Home"),
            "Sorry, that security code isn't right."
        );
        let locked = json!({"requestId": "r", "payload": {"commands": [{"ids": ["home"],
            "status": "ERROR", "errorCode": "tooManyFailedAttempts"}]}});
        assert_eq!(
            google_speech(&u, &locked, "Home"),
            "Too many wrong security codes: voice disarm is locked for now."
        );
        let pending = json!({"requestId": "r", "payload": {"commands": [{"ids": ["home"],
            "status": "PENDING"}]}});
        assert_eq!(
            google_speech(&u, &pending, "Home"),
            "Disarming Home. It's taking a moment."
        );
        let with_pin = google_request(&Utterance::Disarm {
            endpoint: "home".into(),
            pin: Some("04729183".into()),
        });
        assert_eq!(
            with_pin["inputs"][0]["payload"]["commands"][0]["execution"][0]["challenge"]["pin"],
            "04729183"
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
