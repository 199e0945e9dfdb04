//! Enrolment rules for voice codes.
//!
//! Stored codes are keyed hashes, so "how close is this candidate to an existing code" is
//! answered by hashing the candidate and its 36 one-digit neighbours under each stored code's
//! pepper and member, and comparing.
//!
//! Every conflict gets the same error, whether the candidate equals another code or is one digit
//! away, and whichever member holds it, so a rejection names neither a member nor a code.

use super::household::{CodeKind, Profile};
use super::keyring::Keyring;
use super::{code_mac, is_well_formed};
use crate::secret::Pin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrolError {
    #[error("a voice code is exactly 4 digits")]
    Format,
    #[error("this code is among the most commonly chosen PINs; choose a less predictable one")]
    TooCommon,
    #[error(
        "this code is too close to another voice code of the household; choose another \
         (a duress code must differ from every other code in at least two digits)"
    )]
    TooSimilar,
}

/// The most common 4-digit PINs (DataGenetics' PIN frequency study) and patterns derived from
/// them; the rule-based checks in [`is_blocklisted`] cover the rest of each family.
const COMMON: &[&str] = &[
    "1234", "1111", "0000", "1212", "7777", "1004", "2000", "4444", "2222", "6969", "9999", "3333",
    "5555", "6666", "1122", "1313", "8888", "4321", "2001", "1010", "2580", "0852", "1470", "0741",
    "3690", "0963", "7410", "9630", "1230", "0987", "1357", "2468", "1590", "5683", "0007", "1000",
];

pub fn is_blocklisted(pin: &str) -> bool {
    let d: Vec<i8> = pin.bytes().map(|b| (b - b'0') as i8).collect();
    if d.len() != 4 {
        return false;
    }
    let steps: Vec<i8> = d.windows(2).map(|w| w[1] - w[0]).collect();
    let same_step = steps.iter().all(|s| *s == steps[0]);
    let run = same_step && (steps[0].abs() <= 1); // 0000, 1234, 9876
    let abab = d[0] == d[2] && d[1] == d[3]; // 1212, 4747
    let aabb = d[0] == d[1] && d[2] == d[3]; // 1122, 9900
    let year = matches!(&pin[..2], "19" | "20"); // 1950..2029: birth and anniversary years
    let year_like = year && {
        let n: u16 = pin.parse().unwrap_or(0);
        (1950..=2029).contains(&n)
    };
    run || abab || aabb || year_like || COMMON.contains(&pin)
}

/// The 36 codes one digit away from `pin` (each position changed to each other digit).
fn neighbours(pin: &str) -> Vec<String> {
    let bytes = pin.as_bytes();
    let mut out = Vec::with_capacity(36);
    for pos in 0..bytes.len() {
        for digit in b'0'..=b'9' {
            if digit != bytes[pos] {
                let mut b = bytes.to_vec();
                b[pos] = digit;
                out.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
    }
    out
}

/// Checks `pin` as the new `kind` code of `member_id`. The slot being replaced is not compared.
pub fn check_new_code(
    keyring: &Keyring,
    household: &str,
    profile: &Profile,
    member_id: &str,
    kind: CodeKind,
    pin: &Pin,
) -> Result<(), EnrolError> {
    if !is_well_formed(pin) {
        return Err(EnrolError::Format);
    }
    if is_blocklisted(pin.expose()) {
        return Err(EnrolError::TooCommon);
    }
    let near: Vec<Pin> = neighbours(pin.expose()).into_iter().map(Pin::new).collect();
    let mut conflict = false;
    for member in &profile.members {
        for other_kind in [CodeKind::Normal, CodeKind::Duress] {
            if member.id == member_id && other_kind == kind {
                continue;
            }
            let Some(stored) = member.code(other_kind) else {
                continue;
            };
            let hit = |candidate: &Pin| {
                let (known, mac) =
                    code_mac(keyring, &stored.pepper_id, household, &member.id, candidate);
                known.is_some() && mac == stored.mac
            };
            conflict |= hit(pin);
            // A one-digit slip must never turn a normal disarm into a duress or the reverse.
            if kind == CodeKind::Duress || other_kind == CodeKind::Duress {
                conflict |= near.iter().any(hit);
            }
        }
    }
    if conflict {
        Err(EnrolError::TooSimilar)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklist_covers_common_pins_and_patterns() {
        for pin in [
            "1234", "0000", "7777", "2580", "6789", "9876", "1212", "4747", "1122", "1987", "2024",
            "6969",
        ] {
            assert!(is_blocklisted(pin), "{pin} should be blocked");
        }
        for pin in ["4729", "8361", "5183", "2749", "1357x"] {
            assert!(
                !is_blocklisted(pin) || pin == "1357x",
                "{pin} should be allowed"
            );
        }
    }

    #[test]
    fn neighbours_are_exactly_distance_one() {
        let n = neighbours("4729");
        assert_eq!(n.len(), 36);
        assert!(n.contains(&"4728".to_string()));
        assert!(n.contains(&"0729".to_string()));
        assert!(!n.contains(&"4729".to_string()));
        assert!(!n.contains(&"4718".to_string()));
    }
}
