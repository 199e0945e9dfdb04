//! Directives Alexa sends to the skill, parsed into typed values.
//!
//! Parsing walks `serde_json::Value` by hand instead of deriving `Deserialize`: serde's messages
//! quote the offending value ("invalid type: integer `4729`"), and an ill-typed PIN must never
//! reach an error message or a log line. Every message here names the field path only.

use serde_json::Value;

use crate::common::json_fields::Obj;

use crate::common::secret::{BearerToken, Pin};

/// The header fields a reply needs, kept even when the rest of the directive is unusable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub namespace: String,
    pub name: String,
    pub message_id: String,
    pub correlation_token: Option<String>,
    pub payload_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmTarget {
    Away,
    Stay,
    Night,
}

impl ArmTarget {
    pub fn alexa_name(self) -> &'static str {
        match self {
            ArmTarget::Away => "ARMED_AWAY",
            ArmTarget::Stay => "ARMED_STAY",
            ArmTarget::Night => "ARMED_NIGHT",
        }
    }
}

/// The spoken code from `payload.authorization`. Alexa only defines `FOUR_DIGIT_PIN`.
#[derive(Debug, Clone)]
pub struct PinAuthorization {
    pub pin: Pin,
}

#[derive(Debug, Clone)]
pub enum Directive {
    Discover {
        token: BearerToken,
    },
    ReportState {
        endpoint_id: String,
        token: BearerToken,
    },
    Arm {
        endpoint_id: String,
        token: BearerToken,
        target: ArmTarget,
        bypass_all: bool,
    },
    Disarm {
        endpoint_id: String,
        token: BearerToken,
        authorization: Option<PinAuthorization>,
    },
    AcceptGrant {
        code: BearerToken,
        grantee: BearerToken,
    },
}

#[derive(Debug, Clone)]
pub struct Parsed {
    pub header: Header,
    pub directive: Directive,
}

/// Why a directive could not be used. Carries whatever header and endpoint could be recovered so
/// the INVALID_DIRECTIVE reply still echoes the correlation token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Boxed: the error travels through every `?` of the parser, and a small `Err` keeps
    /// those results cheap (clippy::result_large_err).
    pub header: Box<Header>,
    pub endpoint_id: Option<String>,
    pub message: String,
}

pub fn parse_bytes(raw: &[u8]) -> Result<Parsed, ParseError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(value) => parse(&value),
        // serde_json's syntax errors only carry line and column, never content.
        Err(e) => Err(ParseError {
            header: Box::default(),
            endpoint_id: None,
            message: format!("body is not JSON ({e})"),
        }),
    }
}

pub fn parse(value: &Value) -> Result<Parsed, ParseError> {
    let fail = |header: &Header, endpoint_id: Option<String>, message: String| ParseError {
        header: Box::new(header.clone()),
        endpoint_id,
        message,
    };
    let best_effort = salvage_header(value);
    let root = Obj::root(value, "the message").map_err(|m| fail(&best_effort, None, m))?;
    let directive = root
        .obj("directive")
        .map_err(|m| fail(&best_effort, None, m))?;
    let h = directive
        .obj("header")
        .map_err(|m| fail(&best_effort, None, m))?;
    let header = Header {
        namespace: h
            .string("namespace")
            .map_err(|m| fail(&best_effort, None, m))?,
        name: h.string("name").map_err(|m| fail(&best_effort, None, m))?,
        message_id: h
            .string("messageId")
            .map_err(|m| fail(&best_effort, None, m))?,
        correlation_token: h
            .opt_string("correlationToken")
            .map_err(|m| fail(&best_effort, None, m))?,
        payload_version: h
            .string("payloadVersion")
            .map_err(|m| fail(&best_effort, None, m))?,
    };
    let endpoint_id = salvage_endpoint_id(value);
    let err = |m: String| fail(&header, endpoint_id.clone(), m);
    if header.payload_version != "3" {
        return Err(err(
            "directive.header.payloadVersion must be \"3\"".to_string()
        ));
    }
    let payload = directive.obj("payload").map_err(err)?;
    let parsed = match (header.namespace.as_str(), header.name.as_str()) {
        ("Alexa.Discovery", "Discover") => Directive::Discover {
            token: bearer(&payload.obj("scope").map_err(err)?).map_err(err)?,
        },
        ("Alexa", "ReportState") => {
            let (endpoint_id, token) = endpoint(&directive).map_err(err)?;
            Directive::ReportState { endpoint_id, token }
        }
        ("Alexa.SecurityPanelController", "Arm") => {
            let (endpoint_id, token) = endpoint(&directive).map_err(err)?;
            let target = match payload.string("armState").map_err(err)?.as_str() {
                "ARMED_AWAY" => ArmTarget::Away,
                "ARMED_STAY" => ArmTarget::Stay,
                "ARMED_NIGHT" => ArmTarget::Night,
                _ => {
                    return Err(err(format!(
                        "{} must be ARMED_AWAY, ARMED_STAY or ARMED_NIGHT",
                        payload.path("armState")
                    )));
                }
            };
            let bypass_all = match payload.opt_string("bypassType").map_err(err)? {
                None => false,
                Some(t) if t == "BYPASS_ALL" => true,
                Some(_) => {
                    return Err(err(format!(
                        "{} must be BYPASS_ALL",
                        payload.path("bypassType")
                    )));
                }
            };
            Directive::Arm {
                endpoint_id,
                token,
                target,
                bypass_all,
            }
        }
        ("Alexa.SecurityPanelController", "Disarm") => {
            let (endpoint_id, token) = endpoint(&directive).map_err(err)?;
            let authorization = match payload.opt_obj("authorization").map_err(err)? {
                None => None,
                Some(auth) => {
                    let kind = auth.string("type").map_err(err)?;
                    if kind != "FOUR_DIGIT_PIN" {
                        return Err(err(format!("{} must be FOUR_DIGIT_PIN", auth.path("type"))));
                    }
                    Some(PinAuthorization {
                        pin: Pin::new(auth.string("value").map_err(err)?),
                    })
                }
            };
            Directive::Disarm {
                endpoint_id,
                token,
                authorization,
            }
        }
        ("Alexa.Authorization", "AcceptGrant") => {
            let grant = payload.obj("grant").map_err(err)?;
            if grant.string("type").map_err(err)? != "OAuth2.AuthorizationCode" {
                return Err(err(format!(
                    "{} must be OAuth2.AuthorizationCode",
                    grant.path("type")
                )));
            }
            Directive::AcceptGrant {
                code: BearerToken::new(grant.string("code").map_err(err)?),
                grantee: bearer(&payload.obj("grantee").map_err(err)?).map_err(err)?,
            }
        }
        (ns, name) => {
            return Err(err(format!("unsupported directive {ns}.{name}")));
        }
    };
    Ok(Parsed {
        header,
        directive: parsed,
    })
}

fn endpoint(directive: &Obj<'_>) -> Result<(String, BearerToken), String> {
    let endpoint = directive.obj("endpoint")?;
    let id = endpoint.string("endpointId")?;
    let token = bearer(&endpoint.obj("scope")?)?;
    Ok((id, token))
}

fn bearer(scope: &Obj<'_>) -> Result<BearerToken, String> {
    let kind = scope.string("type")?;
    if kind != "BearerToken" {
        return Err(format!("{} must be BearerToken", scope.path("type")));
    }
    Ok(BearerToken::new(scope.string("token")?))
}

/// Recovers header fields from a directive that failed to parse, so its error reply can still be
/// correlated. Only plain strings are taken; anything else is left out.
fn salvage_header(value: &Value) -> Header {
    let h = &value["directive"]["header"];
    let s = |k: &str| h[k].as_str().map(str::to_string);
    Header {
        namespace: s("namespace").unwrap_or_default(),
        name: s("name").unwrap_or_default(),
        message_id: s("messageId").unwrap_or_default(),
        correlation_token: s("correlationToken").filter(|t| !t.is_empty()),
        payload_version: s("payloadVersion").unwrap_or_default(),
    }
}

fn salvage_endpoint_id(value: &Value) -> Option<String> {
    value["directive"]["endpoint"]["endpointId"]
        .as_str()
        .filter(|id| super::is_valid_endpoint_id(id))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disarm(auth: Value) -> Value {
        json!({"directive":{
            "header":{"namespace":"Alexa.SecurityPanelController","name":"Disarm","messageId":"m1",
                      "correlationToken":"c1","payloadVersion":"3"},
            "endpoint":{"scope":{"type":"BearerToken","token":"t"},"endpointId":"home","cookie":{}},
            "payload":{"authorization":auth}}})
    }

    #[test]
    fn ill_typed_pin_error_names_the_path_not_the_value() {
        let err = parse(&disarm(json!({"type":"FOUR_DIGIT_PIN","value":4729}))).unwrap_err();
        assert_eq!(
            err.message,
            "directive.payload.authorization.value must be a string"
        );
        assert!(!format!("{err:?}").contains("4729"));
        assert_eq!(err.header.correlation_token.as_deref(), Some("c1"));
        assert_eq!(err.endpoint_id.as_deref(), Some("home"));
    }

    #[test]
    fn pin_keeps_leading_zeros_and_debug_hides_it() {
        let parsed = parse(&disarm(json!({"type":"FOUR_DIGIT_PIN","value":"0472"}))).unwrap();
        let Directive::Disarm { authorization, .. } = &parsed.directive else {
            panic!("not a disarm")
        };
        let auth = authorization.as_ref().unwrap();
        assert_eq!(auth.pin.expose(), "0472");
        assert!(!format!("{parsed:?}").contains("0472"));
        assert!(!format!("{parsed:?}").contains("\"t\""));
    }

    #[test]
    fn disarm_without_authorization_is_allowed() {
        let mut d = disarm(json!(null));
        d["directive"]["payload"] = json!({});
        let parsed = parse(&d).unwrap();
        assert!(matches!(
            parsed.directive,
            Directive::Disarm {
                authorization: None,
                ..
            }
        ));
    }

    #[test]
    fn wrong_payload_version_and_unknown_names_are_rejected() {
        let mut d = disarm(json!({"type":"FOUR_DIGIT_PIN","value":"1111"}));
        d["directive"]["header"]["payloadVersion"] = json!("3.0");
        assert!(parse(&d).unwrap_err().message.contains("payloadVersion"));
        d["directive"]["header"]["payloadVersion"] = json!("3");
        d["directive"]["header"]["name"] = json!("SelfDestruct");
        assert_eq!(
            parse(&d).unwrap_err().message,
            "unsupported directive Alexa.SecurityPanelController.SelfDestruct"
        );
    }

    #[test]
    fn malformed_json_is_a_parse_error() {
        let err = parse_bytes(b"{\"directive\": ").unwrap_err();
        assert!(err.message.starts_with("body is not JSON"));
        assert_eq!(*err.header, Header::default());
    }
}
