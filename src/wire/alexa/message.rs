//! Messages the skill sends: synchronous responses, error responses and proactive events.
//! Shapes follow Amazon's schema (`../shared/alexa/alexa_smart_home_message_schema.json`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::discovery::DiscoveryEndpoint;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub event: Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub header: OutHeader,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<OutEndpoint>,
    pub payload: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutHeader {
    pub namespace: &'static str,
    pub name: &'static str,
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_token: Option<String>,
    pub payload_version: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutEndpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<OutScope>,
    pub endpoint_id: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutScope {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub token: String,
}

impl OutScope {
    pub fn bearer(token: impl Into<String>) -> Self {
        OutScope {
            kind: "BearerToken",
            token: token.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Context {
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    pub namespace: &'static str,
    pub name: &'static str,
    pub value: Value,
    pub time_of_sample: String,
    pub uncertainty_in_milliseconds: u64,
}

/// `timeOfSample` as the schema wants it: UTC, `Z`, at most three fractional digits.
pub fn time_of_sample(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Property {
    pub fn new(
        namespace: &'static str,
        name: &'static str,
        value: Value,
        at: DateTime<Utc>,
    ) -> Self {
        Property {
            namespace,
            name,
            value,
            time_of_sample: time_of_sample(at),
            uncertainty_in_milliseconds: 0,
        }
    }

    pub fn arm_state(value: &'static str, at: DateTime<Utc>) -> Self {
        Self::new(
            "Alexa.SecurityPanelController",
            "armState",
            json!(value),
            at,
        )
    }

    /// `name` is one of burglaryAlarm, fireAlarm, carbonMonoxideAlarm, waterAlarm.
    pub fn alarm(name: &'static str, active: bool, at: DateTime<Utc>) -> Self {
        let v = if active { "ALARM" } else { "OK" };
        Self::new(
            "Alexa.SecurityPanelController",
            name,
            json!({ "value": v }),
            at,
        )
    }

    pub fn connectivity(reachable: bool, at: DateTime<Utc>) -> Self {
        let v = if reachable { "OK" } else { "UNREACHABLE" };
        Self::new(
            "Alexa.EndpointHealth",
            "connectivity",
            json!({ "value": v }),
            at,
        )
    }

    pub fn detection(namespace: &'static str, detected: bool, at: DateTime<Utc>) -> Self {
        let v = if detected { "DETECTED" } else { "NOT_DETECTED" };
        Self::new(namespace, "detectionState", json!(v), at)
    }

    /// Namespace and name, the identity of a property inside one endpoint.
    pub fn key(&self) -> (&'static str, &'static str) {
        (self.namespace, self.name)
    }
}

/// Every error type this skill sends, with the namespace the schema requires for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    // Alexa.SecurityPanelController
    AuthorizationRequired,
    BypassNeeded(Vec<NamedEndpoint>),
    NotReady,
    Unauthorized,
    UnclearedAlarm,
    UnclearedTrouble,
    // Alexa
    BridgeUnreachable,
    EndpointBusy,
    EndpointUnreachable,
    ExpiredAuthorizationCredential,
    InvalidAuthorizationCredential,
    InternalError,
    InvalidDirective,
    InvalidValue,
    NoSuchEndpoint,
    RateLimitExceeded,
    // Alexa.Authorization
    AcceptGrantFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedEndpoint {
    pub friendly_name: String,
    pub endpoint_id: String,
}

impl ErrorType {
    pub fn namespace(&self) -> &'static str {
        use ErrorType::*;
        match self {
            AuthorizationRequired
            | BypassNeeded(_)
            | NotReady
            | Unauthorized
            | UnclearedAlarm
            | UnclearedTrouble => "Alexa.SecurityPanelController",
            AcceptGrantFailed => "Alexa.Authorization",
            _ => "Alexa",
        }
    }

    pub fn code(&self) -> &'static str {
        use ErrorType::*;
        match self {
            AuthorizationRequired => "AUTHORIZATION_REQUIRED",
            BypassNeeded(_) => "BYPASS_NEEDED",
            NotReady => "NOT_READY",
            Unauthorized => "UNAUTHORIZED",
            UnclearedAlarm => "UNCLEARED_ALARM",
            UnclearedTrouble => "UNCLEARED_TROUBLE",
            BridgeUnreachable => "BRIDGE_UNREACHABLE",
            EndpointBusy => "ENDPOINT_BUSY",
            EndpointUnreachable => "ENDPOINT_UNREACHABLE",
            ExpiredAuthorizationCredential => "EXPIRED_AUTHORIZATION_CREDENTIAL",
            InvalidAuthorizationCredential => "INVALID_AUTHORIZATION_CREDENTIAL",
            InternalError => "INTERNAL_ERROR",
            InvalidDirective => "INVALID_DIRECTIVE",
            InvalidValue => "INVALID_VALUE",
            NoSuchEndpoint => "NO_SUCH_ENDPOINT",
            RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            AcceptGrantFailed => "ACCEPT_GRANT_FAILED",
        }
    }
}

fn header(
    namespace: &'static str,
    name: &'static str,
    correlation_token: Option<&str>,
) -> OutHeader {
    OutHeader {
        namespace,
        name,
        message_id: new_message_id(),
        correlation_token: correlation_token.map(str::to_string),
        payload_version: "3",
    }
}

fn endpoint(endpoint_id: &str) -> Option<OutEndpoint> {
    Some(OutEndpoint {
        scope: None,
        endpoint_id: endpoint_id.to_string(),
    })
}

impl Message {
    /// `Alexa`/`Response`: the success reply to Disarm (there is no Disarm.Response).
    pub fn response(correlation: Option<&str>, endpoint_id: &str, context: Context) -> Self {
        Message {
            event: Event {
                header: header("Alexa", "Response", correlation),
                endpoint: endpoint(endpoint_id),
                payload: json!({}),
            },
            context: Some(context),
        }
    }

    pub fn arm_response(
        correlation: Option<&str>,
        endpoint_id: &str,
        exit_delay_s: u32,
        bypassed: &[NamedEndpoint],
        context: Context,
    ) -> Self {
        let mut payload = json!({ "exitDelayInSeconds": exit_delay_s.min(255) });
        if !bypassed.is_empty() {
            payload["bypassedEndpoints"] = json!(bypassed);
        }
        Message {
            event: Event {
                header: header("Alexa.SecurityPanelController", "Arm.Response", correlation),
                endpoint: endpoint(endpoint_id),
                payload,
            },
            context: Some(context),
        }
    }

    pub fn state_report(correlation: Option<&str>, endpoint_id: &str, context: Context) -> Self {
        Message {
            event: Event {
                header: header("Alexa", "StateReport", correlation),
                endpoint: endpoint(endpoint_id),
                payload: json!({}),
            },
            context: Some(context),
        }
    }

    /// An ErrorResponse. The schema forbids `context` on every error response.
    /// `message` is logged by Alexa and never spoken; it must never contain a PIN or token.
    pub fn error(
        kind: &ErrorType,
        message: &str,
        correlation: Option<&str>,
        endpoint_id: Option<&str>,
    ) -> Self {
        let mut payload = json!({ "type": kind.code(), "message": message });
        if let ErrorType::BypassNeeded(zones) = kind {
            payload["endpointsNeedingBypass"] = json!(zones);
        }
        Message {
            event: Event {
                header: header(kind.namespace(), "ErrorResponse", correlation),
                endpoint: endpoint_id.and_then(endpoint),
                payload,
            },
            context: None,
        }
    }

    pub fn discover_response(endpoints: Vec<DiscoveryEndpoint>) -> Self {
        Message {
            event: Event {
                header: header("Alexa.Discovery", "Discover.Response", None),
                endpoint: None,
                payload: json!({ "endpoints": endpoints }),
            },
            context: None,
        }
    }

    pub fn accept_grant_response() -> Self {
        Message {
            event: Event {
                header: header("Alexa.Authorization", "AcceptGrant.Response", None),
                endpoint: None,
                payload: json!({}),
            },
            context: None,
        }
    }

    /// A ChangeReport: `changed` are the properties that changed, `context` all the others.
    pub fn change_report(
        endpoint_id: &str,
        token: &str,
        cause: &'static str,
        changed: Vec<Property>,
        context: Vec<Property>,
    ) -> Self {
        Message {
            event: Event {
                header: header("Alexa", "ChangeReport", None),
                endpoint: Some(OutEndpoint {
                    scope: Some(OutScope::bearer(token)),
                    endpoint_id: endpoint_id.to_string(),
                }),
                payload: json!({ "change": { "cause": { "type": cause }, "properties": changed } }),
            },
            context: Some(Context {
                properties: context,
            }),
        }
    }

    pub fn add_or_update_report(endpoints: Vec<DiscoveryEndpoint>, token: &str) -> Self {
        Message {
            event: Event {
                header: header("Alexa.Discovery", "AddOrUpdateReport", None),
                endpoint: None,
                payload: json!({ "endpoints": endpoints, "scope": OutScope::bearer(token) }),
            },
            context: None,
        }
    }

    /// Not in Amazon's schema; shape from the Alexa.Discovery docs (header, endpoints, scope).
    pub fn delete_report(endpoint_ids: &[String], token: &str) -> Self {
        let endpoints: Vec<Value> = endpoint_ids
            .iter()
            .map(|id| json!({ "endpointId": id }))
            .collect();
        Message {
            event: Event {
                header: header("Alexa.Discovery", "DeleteReport", None),
                endpoint: None,
                payload: json!({ "endpoints": endpoints, "scope": OutScope::bearer(token) }),
            },
            context: None,
        }
    }

    pub fn to_value(&self) -> Value {
        // Serialising these plain structs can't fail: every key is a string and no value is a
        // float NaN; the fallback keeps the no-panic rule without an expect().
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_of_sample_has_millis_and_z() {
        let at = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .unwrap();
        assert_eq!(time_of_sample(at), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn security_panel_errors_use_their_namespace_and_never_carry_context() {
        let m = Message::error(
            &ErrorType::BypassNeeded(vec![NamedEndpoint {
                friendly_name: "Back door".into(),
                endpoint_id: "home:back-door".into(),
            }]),
            "open zones",
            Some("corr"),
            Some("home"),
        )
        .to_value();
        assert_eq!(
            m["event"]["header"]["namespace"],
            "Alexa.SecurityPanelController"
        );
        assert_eq!(m["event"]["header"]["correlationToken"], "corr");
        assert_eq!(
            m["event"]["payload"]["endpointsNeedingBypass"][0]["endpointId"],
            "home:back-door"
        );
        assert!(m.get("context").is_none());
        let generic =
            Message::error(&ErrorType::NoSuchEndpoint, "gone", None, Some("x")).to_value();
        assert_eq!(generic["event"]["header"]["namespace"], "Alexa");
        assert!(generic["event"]["header"].get("correlationToken").is_none());
    }

    #[test]
    fn exit_delay_is_clamped_to_the_schema_range() {
        let m = Message::arm_response(None, "home", 300, &[], Context { properties: vec![] })
            .to_value();
        assert_eq!(m["event"]["payload"]["exitDelayInSeconds"], 255);
        assert!(m["event"]["payload"].get("bypassedEndpoints").is_none());
    }
}
