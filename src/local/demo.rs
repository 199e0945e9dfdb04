//! The local stack's household: simulated panels and the voice codes seeded at start-up.
//! The default is `demo.json` next to this file; `alarm-skill serve --config FILE` replaces it.
//!
//! Codes appear here in clear because this is a development fixture: they are hashed with the
//! stack's pepper before they reach the store, and never logged.

use serde::Deserialize;

use crate::local::simulator::AccountConfig;

pub const DEFAULT_JSON: &str = include_str!("demo.json");

#[derive(Debug, Clone, Deserialize)]
pub struct DemoConfig {
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub households: Vec<HouseholdSeed>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HouseholdSeed {
    pub account: String,
    pub members: Vec<MemberSeed>,
    #[serde(default)]
    pub pinless_disarm: Option<crate::domain::voice_codes::PinlessPolicy>,
}

#[derive(Clone, Deserialize)]
pub struct MemberSeed {
    pub id: String,
    pub name: String,
    pub user_number: u16,
    #[serde(default)]
    pub voice_pin: Option<String>,
    #[serde(default)]
    pub duress_pin: Option<String>,
}

crate::common::secret::debug_without_secrets!(MemberSeed {
    id,
    name,
    user_number
});

impl DemoConfig {
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn demo() -> Self {
        // The embedded file is checked by the `default_demo_parses` test below.
        match Self::parse(DEFAULT_JSON) {
            Ok(c) => c,
            Err(e) => unreachable!("embedded demo.json is valid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_demo_parses() {
        let d = DemoConfig::demo();
        assert_eq!(d.accounts[0].id, "demo");
        assert_eq!(d.accounts[0].panels[0].zones.len(), 3);
        assert_eq!(
            d.households[0].members[0].voice_pin.as_deref(),
            Some("4729")
        );
        assert!(!format!("{:?}", d.households[0].members[0]).contains("4729"));
    }
}
