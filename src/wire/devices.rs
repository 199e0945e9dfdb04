//! Device ids, the same for every assistant: a panel is `{panel}`, one of its zones
//! `{panel}:{zone}`. Alexa calls them endpointIds, Google device ids.

/// Which device an id names. A panel is `{panel}`, one of its zones `{panel}:{zone}`.
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
    crate::common::is_label(id, 100)
}
