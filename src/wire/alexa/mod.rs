//! The Alexa Smart Home API v3 wire format: what Alexa sends (directives) and what the skill
//! sends back (responses, error responses, reports). Pure data, no I/O.

pub mod directive;
pub mod discovery;
pub mod message;
pub mod redact;
pub mod skill_event;

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

// Device ids are the same for every assistant: they live in crate::wire::devices.
pub use crate::wire::devices::{
    EndpointRef, is_valid_device_id, panel_endpoint_id, zone_endpoint_id,
};

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
