//! Household voice codes: keyed-hash storage, constant-time verification, enrolment rules and
//! throttling.
//!
//! Which codes work where: Alexa only ever sends FOUR_DIGIT_PIN, so Alexa matches 4-digit codes
//! only. Google's PIN challenge carries any code, so a household that enables Google
//! ([`HouseholdSettings::google_enabled`]) may enrol codes of 4 to 8 digits; the longer ones
//! work through Google only. Keypad codes stay the panel's own and never pass through here.

pub mod enrol;
pub mod household;
pub mod keyring;
pub mod reload;
pub mod throttle;
pub mod verify;

pub use enrol::{EnrolError, SPACING_RULE, check_new_code};
pub use household::{
    CodeHash, CodeKind, HouseholdSettings, Member, NameError, PinlessPolicy, Profile, member_name,
};
pub use keyring::{Keyring, KeyringError};
pub use reload::{KeyringSource, LoadKeyring};
pub use throttle::{Gate, Lockout, Throttle, ThrottlePolicy};
pub use verify::{Verified, verify};

use crate::common::secret::Pin;

const CODE_DOMAIN: &[u8] = b"alarm-skill/voice-code/v1";

/// The shortest voice code, and the only length Alexa can carry.
pub const ALEXA_CODE_LEN: usize = 4;
/// The longest voice code (Google's challenge only).
pub const MAX_CODE_LEN: usize = 8;

/// 4 to 8 digits: a code some assistant can carry.
pub fn is_well_formed(pin: &Pin) -> bool {
    let p = pin.expose().as_bytes();
    (ALEXA_CODE_LEN..=MAX_CODE_LEN).contains(&p.len()) && p.iter().all(u8::is_ascii_digit)
}

/// The keyed hash of a code under pepper `pepper_id`, bound to its household and member so a
/// hash can't be moved to another member. The `Option` is `None` for an unknown pepper (the
/// work is done anyway).
pub(crate) fn code_mac(
    keyring: &Keyring,
    pepper_id: &str,
    household: &str,
    member: &str,
    pin: &Pin,
) -> (Option<()>, [u8; keyring::MAC_LEN]) {
    keyring.mac(
        pepper_id,
        &[
            CODE_DOMAIN,
            household.as_bytes(),
            member.as_bytes(),
            pin.expose().as_bytes(),
        ],
    )
}

/// How many prefix hashes a stored code carries: one per code length shorter than the longest.
pub const PREFIX_SLOTS: usize = MAX_CODE_LEN - ALEXA_CODE_LEN;

/// Hashes a new code under the current pepper, with the hashes of its prefixes that are codes
/// themselves (see [`CodeHash::prefixes`]).
pub fn hash_code(keyring: &Keyring, household: &str, member: &str, pin: &Pin) -> CodeHash {
    let id = keyring.current_id().to_string();
    let (_, mac) = code_mac(keyring, &id, household, member, pin);
    let code = pin.expose();
    let prefixes = (ALEXA_CODE_LEN..MAX_CODE_LEN)
        .map(|len| match code.get(..len) {
            Some(prefix) if len < code.len() => {
                code_mac(keyring, &id, household, member, &Pin::new(prefix)).1
            }
            _ => rand::random(),
        })
        .collect();
    CodeHash {
        pepper_id: id,
        mac,
        prefixes,
    }
}
