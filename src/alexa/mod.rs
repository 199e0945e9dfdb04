//! The Alexa Smart Home API v3 wire format: what Alexa sends (directives) and what the skill
//! sends back (responses, error responses, reports). Pure data, no I/O.

pub mod directive;
pub mod discovery;
pub mod message;
pub mod redact;

pub use directive::{ArmTarget, Directive, Header, ParseError, Parsed, PinAuthorization};
pub use message::{Context, ErrorType, Message, NamedEndpoint, Property};

/// The schema's endpointId pattern: 1–256 of `[a-zA-Z0-9_\-=#;:?@&]`.
pub fn is_valid_endpoint_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=#;:?@&".contains(&b))
}

/// Which device an endpointId names. A panel is `{panel}`, one of its zones `{panel}:{zone}`.
/// Panel and zone ids from the panel cloud never contain `:` (see [`is_valid_device_id`]), so the
/// split is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointRef {
    Panel { panel: String },
    Zone { panel: String, zone: String },
}

impl EndpointRef {
    pub fn parse(endpoint_id: &str) -> Option<Self> {
        let mut parts = endpoint_id.split(':');
        let panel = parts.next()?;
        let zone = parts.next();
        if parts.next().is_some() || !is_valid_device_id(panel) {
            return None;
        }
        match zone {
            None => Some(EndpointRef::Panel {
                panel: panel.to_string(),
            }),
            Some(z) if is_valid_device_id(z) => Some(EndpointRef::Zone {
                panel: panel.to_string(),
                zone: z.to_string(),
            }),
            Some(_) => None,
        }
    }

    pub fn panel_id(&self) -> &str {
        match self {
            EndpointRef::Panel { panel } | EndpointRef::Zone { panel, .. } => panel,
        }
    }
}

pub fn panel_endpoint_id(panel: &str) -> String {
    panel.to_string()
}

pub fn zone_endpoint_id(panel: &str, zone: &str) -> String {
    format!("{panel}:{zone}")
}

/// Ids the panel cloud may use for panels and zones: 1–100 of `[A-Za-z0-9_-]`.
pub fn is_valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_round_trip() {
        assert_eq!(
            EndpointRef::parse(&zone_endpoint_id("home", "front-door")),
            Some(EndpointRef::Zone {
                panel: "home".into(),
                zone: "front-door".into()
            })
        );
        assert_eq!(
            EndpointRef::parse("home"),
            Some(EndpointRef::Panel {
                panel: "home".into()
            })
        );
        for bad in ["", "home:", ":z", "a:b:c", "home/x", "h.me"] {
            assert_eq!(EndpointRef::parse(bad), None, "{bad}");
        }
        assert!(is_valid_endpoint_id("home:front-door"));
        assert!(!is_valid_endpoint_id("home/front-door"));
    }
}
