//! A household's voice-code profile: its members, their hashed codes, and its settings.

use serde::{Deserialize, Serialize};

use super::keyring::MAC_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    /// The member's voice PIN.
    Normal,
    /// The member's voice duress PIN: disarms like the normal one and silently raises duress.
    Duress,
}

/// A code as stored: the keyed hash and the id of the pepper that made it. Never the PIN.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeHash {
    pub pepper_id: String,
    #[serde(with = "hex_mac")]
    pub mac: [u8; MAC_LEN],
    /// The keyed hashes of the code's first 4, 5, 6 and 7 digits, where the code is longer than
    /// that; random bytes in the other places, so a dump does not tell a code's length. Only
    /// enrolment reads them: a new code may not be a prefix of a stored one
    /// (crate::domain::voice_codes::enrol). Empty for codes enrolled before they were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex_macs")]
    pub prefixes: Vec<[u8; MAC_LEN]>,
}

impl std::fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CodeHash({})", self.pepper_id)
    }
}

mod hex_mac {
    use super::MAC_LEN;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(mac: &[u8; MAC_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; MAC_LEN], D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("mac must be 32 bytes"))
    }
}

mod hex_macs {
    use super::MAC_LEN;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(macs: &[[u8; MAC_LEN]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(macs.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; MAC_LEN]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                hex::decode(s)
                    .map_err(D::Error::custom)?
                    .try_into()
                    .map_err(|_| D::Error::custom("mac must be 32 bytes"))
            })
            .collect()
    }
}

/// The longest member name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a member name can't be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a member name must be 1 to 64 characters")]
    Length,
    #[error(
        "a member name must not contain control characters (NUL, line breaks, ...) or bidirectional formatting characters (U+202E, ...)"
    )]
    Characters,
}

/// Whether `c` may not appear in a member name. Names are shown in audit lines and household
/// notices: a control character (NUL, a line break) could forge a line of its own, and a
/// bidirectional override or isolate (U+202E, U+2066...) could make a name read as other text.
fn forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// A member name as it is kept: trimmed, 1 to [`MAX_NAME_CHARS`] characters, none of them
/// [`forbidden_in_name`]. The one rule for every way a name comes in (the management API, the
/// panel cloud's users). Checked before trimming, so a trailing line break is refused, not hidden.
pub fn member_name(raw: &str) -> Result<String, NameError> {
    if raw.chars().any(forbidden_in_name) {
        return Err(NameError::Characters);
    }
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::Length);
    }
    Ok(name.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable id used by the management API (e.g. "alex").
    pub id: String,
    pub name: String,
    /// The member's user number at the panel, reported to the monitoring center (Contact ID CCC).
    pub user_number: u16,
    /// The panel cloud's stable id of the person (crate::domain::ports::panel::PanelUser::id), when the cloud
    /// gives one: a different id on the same user number is a different person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panel_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_pin: Option<CodeHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duress_pin: Option<CodeHash>,
}

impl Member {
    pub fn code(&self, kind: CodeKind) -> Option<&CodeHash> {
        match kind {
            CodeKind::Normal => self.voice_pin.as_ref(),
            CodeKind::Duress => self.duress_pin.as_ref(),
        }
    }

    pub fn code_mut(&mut self, kind: CodeKind) -> &mut Option<CodeHash> {
        match kind {
            CodeKind::Normal => &mut self.voice_pin,
            CodeKind::Duress => &mut self.duress_pin,
        }
    }
}

/// What to do with a Disarm that carries no PIN. That happens when the user chose an
/// Alexa-managed voice PIN in the Alexa app: Alexa checked its own PIN and the skill never sees
/// a code, so a duress PIN can't work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinlessPolicy {
    /// Refuse with UNAUTHORIZED while any member has a voice PIN (the default). Duress PINs
    /// are not counted: the app shows whether members have a voice PIN and never whether they
    /// have a duress PIN, so a refusal where it shows none would tell that one exists.
    #[default]
    RefuseWhenCodesEnrolled,
    /// Always refuse.
    Refuse,
    /// Trust Alexa's own voice PIN.
    Allow,
}

impl PinlessPolicy {
    /// Whether `self` lets through a PIN-less disarm that `than` would refuse: a change that
    /// weakens disarming, which the management API asks a recent sign-in for.
    pub fn weaker_than(self, than: PinlessPolicy) -> bool {
        let strictness = |p| match p {
            PinlessPolicy::Allow => 0,
            PinlessPolicy::RefuseWhenCodesEnrolled => 1,
            PinlessPolicy::Refuse => 2,
        };
        strictness(self) < strictness(than)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdSettings {
    #[serde(default)]
    pub pinless_disarm: PinlessPolicy,
    /// The household uses Google Assistant: codes of 4 to 8 digits may be enrolled. Alexa only
    /// matches the 4-digit ones. Turning it off keeps longer codes already enrolled.
    #[serde(default)]
    pub google_enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Optimistic-concurrency version; 0 means never saved.
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub settings: HouseholdSettings,
    /// When the members were last taken from the panel cloud's user list (crate::domain::provisioning);
    /// `None` until the first sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_synced_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The revision, in the panel cloud's own sequence, of the last user list applied
    /// (crate::domain::ports::panel::UserList::revision). Lists are ordered by it, not by any clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_revision: Option<u64>,
    /// When codes and members were deleted through the management API, oldest first: the
    /// rolling window of the deletion limit (crate::domain::voice_codes::enrol::StepUp), kept
    /// with the codes so a deletion and its count are one conditional write. Holds only the
    /// times still inside the window, at most the limit's `max`; never what was deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletions: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Profile {
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// Whether any member has a voice PIN: what the app shows (`has_voice_pin`), and nothing
    /// about duress PINs.
    pub fn has_voice_pins(&self) -> bool {
        self.members.iter().any(|m| m.voice_pin.is_some())
    }

    pub fn pinless_disarm_allowed(&self) -> bool {
        match self.settings.pinless_disarm {
            PinlessPolicy::Allow => true,
            PinlessPolicy::Refuse => false,
            PinlessPolicy::RefuseWhenCodesEnrolled => !self.has_voice_pins(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_trimmed_and_refuse_control_and_bidi_characters() {
        assert_eq!(member_name("  Zoë Ng ").as_deref(), Ok("Zoë Ng"));
        assert_eq!(member_name("عائشة").as_deref(), Ok("عائشة"));
        for bad in [
            "Sam\0",
            "Sam\nAdmin reset the lockout",
            "Sam\r",
            "Sam\t",
            "Sam\u{7f}",
            "Sam\u{85}",
            "Sam\u{2028}",
            "\u{202E}maS",
            "Sam\u{2066}x\u{2069}",
            "Sam\u{200F}",
            "Sam\u{061C}",
        ] {
            assert_eq!(member_name(bad), Err(NameError::Characters), "{bad:?}");
        }
        assert_eq!(member_name("   "), Err(NameError::Length));
        assert_eq!(member_name(&"a".repeat(65)), Err(NameError::Length));
        assert!(member_name(&"ä".repeat(64)).is_ok());
    }
}
