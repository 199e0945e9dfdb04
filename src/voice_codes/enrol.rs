//! Enrolment rules for voice codes.
//!
//! Stored codes are keyed hashes, so "how close is this candidate to an existing code" is
//! answered by hashing the candidate and its one-digit neighbours (9 per digit: 36 for a 4-digit
//! code) under each stored code's pepper and member, and comparing. Codes of different lengths
//! never match, so every rule applies among codes of one length.
//!
//! Every conflict gets the same error, whether the candidate equals another code or is one digit
//! away, and whichever member holds it, so a rejection names neither a member nor a code. And
//! every check does the same work whichever codes exist (see [`check_new_code`]).

use subtle::{Choice, ConstantTimeEq};

use super::household::{CodeKind, Profile};
use super::keyring::{Keyring, MAC_LEN};
use super::{code_mac, is_well_formed};
use crate::secret::Pin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrolError {
    #[error("a voice code is exactly 4 digits")]
    Format,
    /// The same mistake in a household that uses Google, where longer codes are allowed.
    #[error("a voice code is 4 to 8 digits (Alexa matches 4-digit codes only)")]
    FormatLong,
    #[error("this code is among the most commonly chosen PINs; choose a less predictable one")]
    TooCommon,
    #[error(
        "this code is too close to another voice code of the household; choose another \
         (a duress code must differ from every other code in at least two digits)"
    )]
    TooSimilar,
}

/// The most common 4-digit PINs (DataGenetics' PIN frequency study) and patterns derived from
/// them, and the most common longer ones; the rule-based checks in [`is_blocklisted`] cover the
/// rest of each family.
const COMMON: &[&str] = &[
    "1234", "1111", "0000", "1212", "7777", "1004", "2000", "4444", "2222", "6969", "9999", "3333",
    "5555", "6666", "1122", "1313", "8888", "4321", "2001", "1010", "2580", "0852", "1470", "0741",
    "3690", "0963", "7410", "9630", "1230", "0987", "1357", "2468", "1590", "5683", "0007", "1000",
    "123456", "654321", "123123", "112233", "159753", "147258", "258369", "123321", "101010",
    "696969", "121212", "131313", "1234567", "12345678", "87654321", "11223344", "12341234",
];

pub fn is_blocklisted(pin: &str) -> bool {
    let d: Vec<i8> = pin.bytes().map(|b| b.wrapping_sub(b'0') as i8).collect();
    let n = d.len();
    if !(4..=8).contains(&n) {
        return false;
    }
    let steps: Vec<i8> = d.windows(2).map(|w| w[1] - w[0]).collect();
    let same_step = steps.iter().all(|s| *s == steps[0]);
    let run = same_step && (steps[0].abs() <= 1); // 0000, 1234, 9876, 456789
    // Repeats of a shorter block: 1212, 12121, 123123, 12341234 (period 2 or half the length).
    let periodic = |p: usize| (p..n).all(|i| d[i] == d[i - p]);
    let even = n.is_multiple_of(2);
    let repeated = periodic(2) || (even && periodic(n / 2));
    // Doubled digits: 1122, 9900, 112233, 11223344.
    let doubled = even && d.chunks(2).all(|c| c[0] == c[1]);
    let year = n == 4 && matches!(&pin[..2], "19" | "20"); // 1950..2029: birth and anniversary years
    let year_like = year && {
        let v: u16 = pin.parse().unwrap_or(0);
        (1950..=2029).contains(&v)
    };
    run || repeated || doubled || year_like || COMMON.contains(&pin)
}

/// The codes one digit away from `pin` (each position changed to each other digit): 9 per digit.
fn neighbours(pin: &str) -> Vec<String> {
    let bytes = pin.as_bytes();
    let mut out = Vec::with_capacity(9 * bytes.len());
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
///
/// The work depends only on the number of members and the candidate's length, never on which
/// codes they hold: every slot of every member, filled or empty, duress or not, the slot being
/// replaced included, costs the candidate's HMAC and its neighbours' under that slot's pepper (an empty slot under the
/// current one, against a stand-in), compared in constant time with no early exit. Which
/// comparisons count is a mask applied afterwards. Otherwise the time an enrolment takes would
/// tell whoever holds the admin's phone whether a duress code exists.
pub fn check_new_code(
    keyring: &Keyring,
    household: &str,
    profile: &Profile,
    member_id: &str,
    kind: CodeKind,
    pin: &Pin,
) -> Result<(), EnrolError> {
    // Alexa carries 4 digits only; longer codes are for households that use Google.
    let long = pin.expose().len() != super::ALEXA_CODE_LEN;
    if profile.settings.google_enabled {
        if !is_well_formed(pin) {
            return Err(EnrolError::FormatLong);
        }
    } else if !is_well_formed(pin) || long {
        return Err(EnrolError::Format);
    }
    if is_blocklisted(pin.expose()) {
        return Err(EnrolError::TooCommon);
    }
    let near: Vec<Pin> = neighbours(pin.expose()).into_iter().map(Pin::new).collect();
    let stand_in = [0u8; MAC_LEN];
    let mut conflict = Choice::from(0);
    for member in &profile.members {
        for other_kind in [CodeKind::Normal, CodeKind::Duress] {
            let stored = member.code(other_kind);
            let (pepper_id, target) = match stored {
                Some(c) => (c.pepper_id.as_str(), &c.mac),
                None => (keyring.current_id(), &stand_in),
            };
            let replaced = member.id == member_id && other_kind == kind;
            let counts = Choice::from(u8::from(stored.is_some() && !replaced));
            // A one-digit slip must never turn a normal disarm into a duress or the reverse.
            let near_counts = Choice::from(u8::from(
                kind == CodeKind::Duress || other_kind == CodeKind::Duress,
            ));
            let hit = |candidate: &Pin| {
                let (known, mac) = code_mac(keyring, pepper_id, household, &member.id, candidate);
                mac.ct_eq(target) & Choice::from(u8::from(known.is_some()))
            };
            let mut near_hit = Choice::from(0);
            for candidate in &near {
                near_hit |= hit(candidate);
            }
            conflict |= counts & (hit(pin) | (near_counts & near_hit));
        }
    }
    if bool::from(conflict) {
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

    use crate::voice_codes::household::Member;
    use crate::voice_codes::{hash_code, keyring::macs_in};

    fn ring() -> Keyring {
        let peppers = [("p1".to_string(), vec![7u8; 32])].into();
        Keyring::new("p1", peppers).unwrap()
    }

    /// Alex and Sam, each with the given (voice, duress) codes.
    fn household(
        k: &Keyring,
        alex: (Option<&str>, Option<&str>),
        sam: (Option<&str>, Option<&str>),
    ) -> Profile {
        let mut p = Profile::default();
        for (id, n, (voice, duress)) in [("alex", 1, alex), ("sam", 2, sam)] {
            let hash = |c: Option<&str>| c.map(|c| hash_code(k, "h", id, &Pin::new(c)));
            p.members.push(Member {
                id: id.into(),
                name: id.into(),
                user_number: n,
                voice_pin: hash(voice),
                duress_pin: hash(duress),
            });
        }
        p
    }

    #[test]
    fn enrolment_work_is_the_same_whichever_codes_exist() {
        let k = ring();
        let households = [
            household(
                &k,
                (Some("4729"), Some("8361")),
                (Some("5183"), Some("6052")),
            ),
            household(&k, (Some("4729"), Some("8361")), (Some("5183"), None)),
            household(&k, (Some("4729"), None), (Some("5183"), None)),
            household(&k, (None, None), (Some("5183"), None)),
            household(&k, (None, None), (None, None)),
        ];
        // Accepted, equal to a code, one digit from a code, one digit from a duress code.
        let candidates = ["2749", "4729", "4728", "8360"];
        let mut counts = std::collections::BTreeSet::new();
        for p in &households {
            for member in ["alex", "sam"] {
                for kind in [CodeKind::Normal, CodeKind::Duress] {
                    for c in candidates {
                        let (_, n) =
                            macs_in(|| check_new_code(&k, "h", p, member, kind, &Pin::new(c)));
                        counts.insert(n);
                    }
                }
            }
        }
        // Two slots per member, each the candidate and its 36 neighbours.
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![2 * 2 * 37]);
    }

    #[test]
    fn the_rules_hold_whatever_the_household_holds() {
        let k = ring();
        let full = household(&k, (Some("4729"), Some("8361")), (Some("5183"), None));
        let check = |p: &Profile, member: &str, kind: CodeKind, c: &str| {
            check_new_code(&k, "h", p, member, kind, &Pin::new(c))
        };
        use CodeKind::*;
        use EnrolError::TooSimilar;
        assert_eq!(check(&full, "sam", Normal, "4729"), Err(TooSimilar));
        assert_eq!(check(&full, "sam", Normal, "8361"), Err(TooSimilar));
        assert_eq!(check(&full, "sam", Normal, "8360"), Err(TooSimilar));
        assert_eq!(check(&full, "alex", Duress, "4728"), Err(TooSimilar));
        assert_eq!(check(&full, "alex", Duress, "5184"), Err(TooSimilar));
        // Normal against normal: only equality conflicts.
        assert_eq!(check(&full, "sam", Normal, "4728"), Ok(()));
        // The slot being replaced is not compared, for either kind.
        assert_eq!(check(&full, "alex", Duress, "8361"), Ok(()));
        assert_eq!(check(&full, "alex", Duress, "8360"), Ok(()));
        assert_eq!(check(&full, "sam", Normal, "5183"), Ok(()));
        // Empty slots never conflict, whatever the stand-in compares against.
        let empty = household(&k, (None, None), (None, None));
        for c in ["4729", "8361", "5183", "2749"] {
            for kind in [Normal, Duress] {
                assert_eq!(check(&empty, "alex", kind, c), Ok(()), "{c}");
            }
        }
        assert_eq!(
            check(&full, "sam", Duress, "1234"),
            Err(EnrolError::TooCommon)
        );
        assert_eq!(check(&full, "sam", Duress, "123"), Err(EnrolError::Format));
    }

    #[test]
    fn longer_codes_need_google_and_follow_the_same_rules_per_length() {
        let k = ring();
        let mut p = household(&k, (Some("4729"), Some("8361")), (None, None));
        let check = |p: &Profile, kind: CodeKind, c: &str| {
            check_new_code(&k, "h", p, "sam", kind, &Pin::new(c))
        };
        use CodeKind::*;
        // Without Google, 4 digits only.
        assert_eq!(check(&p, Normal, "507182"), Err(EnrolError::Format));
        p.settings.google_enabled = true;
        assert_eq!(check(&p, Normal, "507182"), Ok(()));
        assert_eq!(check(&p, Normal, "50718264"), Ok(()));
        for bad in ["507", "507182649", "5071a2", ""] {
            assert_eq!(check(&p, Normal, bad), Err(EnrolError::FormatLong), "{bad}");
        }
        for common in [
            "123456", "111111", "456789", "987654", "121212", "123123", "11223344",
        ] {
            assert_eq!(
                check(&p, Normal, common),
                Err(EnrolError::TooCommon),
                "{common}"
            );
        }
        // One digit from a duress code of the same length is too close; other lengths never
        // collide (a 6-digit code starting with the 4-digit duress code is fine).
        let mut q = p.clone();
        q.members[1].duress_pin = Some(hash_code(&k, "h", "sam", &Pin::new("946183")));
        let alex = |kind, c: &str| check_new_code(&k, "h", &q, "alex", kind, &Pin::new(c));
        assert_eq!(alex(Normal, "946184"), Err(EnrolError::TooSimilar));
        assert_eq!(alex(Normal, "946183"), Err(EnrolError::TooSimilar));
        assert_eq!(alex(Normal, "836150"), Ok(()));
        assert_eq!(neighbours("50718264").len(), 72);
        // The work still depends on nothing but the members and the candidate's length.
        let (_, with) = macs_in(|| alex(Duress, "50718264"));
        let (_, without) = macs_in(|| check(&p, Duress, "50718264"));
        assert_eq!(with, without);
        assert_eq!(with, 2 * 2 * 73);
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
