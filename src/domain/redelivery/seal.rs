//! The secret part of an outbox record: whether the attempt was a duress, and the panel user it
//! was for.
//!
//! Both are sealed together (AES-256-GCM under the pepper keyring), so a store dump shows records
//! of one shape and one size whatever the attempt was: a duress, a normal code, or a wrong code
//! during a lockout (which has no member). Only a holder of the pepper learns which.
//!
//! The seal is bound to the record's request id, household and panel: whoever can write the
//! table can't move a sealed duress to another record, household or panel, where it would raise
//! a 121 for someone else's premises. Seals written before that binding (AAD domain v2, request
//! id only) still open, so records pending across the upgrade are delivered.

use crate::domain::voice_codes::Keyring;

/// Binds request id, household and panel (current format).
const AAD_V3: &[u8] = b"alarm-skill/outbox/v3|";
/// Binds the request id only: seals written before v3. Read, never written.
const AAD_V2: &[u8] = b"alarm-skill/outbox/v2|";

/// What a seal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    pub duress: bool,
    /// The panel user number (Contact ID CCC); `None` for an attempt that matched no member.
    pub member: Option<u16>,
}

/// The record a seal belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    pub request_id: &'a str,
    pub household: &'a str,
    pub panel: &'a str,
}

fn aad_v3(to: Binding<'_>) -> Vec<u8> {
    // Length-prefixed, so no choice of ids can make two bindings read the same.
    let mut aad = AAD_V3.to_vec();
    for field in [to.request_id, to.household, to.panel] {
        aad.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad
}

fn aad_v2(request_id: &str) -> Vec<u8> {
    [AAD_V2, request_id.as_bytes()].concat()
}

/// Seals `what` for the record `to`. The output has the same length for every `what`.
pub fn seal(keyring: &Keyring, to: Binding<'_>, what: Sealed) -> String {
    // User numbers are 1–999 (management API), so 0 can stand for "no member".
    let [hi, lo] = what.member.unwrap_or(0).to_be_bytes();
    keyring.seal(&[u8::from(what.duress), hi, lo], &aad_v3(to))
}

/// `None` when the seal can't be opened: its pepper is gone from the keyring, or it was altered
/// or moved from another record, household or panel.
pub fn open(keyring: &Keyring, to: Binding<'_>, seal: &str) -> Option<Sealed> {
    let plain = keyring
        .open(seal, &aad_v3(to))
        .or_else(|| keyring.open(seal, &aad_v2(to.request_id)))?;
    match plain.as_slice() {
        [kind @ (0 | 1), hi, lo] => {
            let member = u16::from_be_bytes([*hi, *lo]);
            Some(Sealed {
                duress: *kind == 1,
                member: (member != 0).then_some(member),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ring(current: &str, ids: &[(&str, u8)]) -> Keyring {
        let peppers: BTreeMap<String, Vec<u8>> = ids
            .iter()
            .map(|(id, b)| (id.to_string(), vec![*b; 32]))
            .collect();
        Keyring::new(current, peppers).unwrap()
    }

    fn to(request_id: &str) -> Binding<'_> {
        Binding {
            request_id,
            household: "h1",
            panel: "home",
        }
    }

    const DURESS: Sealed = Sealed {
        duress: true,
        member: Some(1),
    };

    #[test]
    fn a_seal_moved_to_another_household_or_panel_does_not_open() {
        let k = ring("p1", &[("p1", 3)]);
        let s = seal(&k, to("req-1"), DURESS);
        assert_eq!(open(&k, to("req-1"), &s), Some(DURESS));
        for moved in [
            Binding {
                household: "h2",
                ..to("req-1")
            },
            Binding {
                panel: "cabin",
                ..to("req-1")
            },
            // The same characters split differently between the fields.
            Binding {
                request_id: "req-1",
                household: "h1h",
                panel: "ome",
            },
        ] {
            assert_eq!(open(&k, moved, &s), None, "{moved:?}");
        }
    }

    #[test]
    fn seals_of_the_former_format_still_open_but_new_ones_never_fall_back() {
        let k = ring("p1", &[("p1", 3)]);
        // Written by the release before v3: bound to the request id only.
        let v2 = k.seal(&[1, 0, 1], &aad_v2("req-1"));
        assert_eq!(open(&k, to("req-1"), &v2), Some(DURESS));
        assert_eq!(open(&k, to("req-2"), &v2), None);
        // A current seal doesn't open under the old domain: stripping the binding is no way in.
        let v3 = seal(&k, to("req-1"), DURESS);
        assert_eq!(k.open(&v3, &aad_v2("req-1")), None);
    }

    #[test]
    fn seals_hide_kind_and_member_but_the_keyring_reads_them() {
        let k = ring("p1", &[("p1", 3)]);
        let kinds = [
            Sealed {
                duress: true,
                member: Some(1),
            },
            Sealed {
                duress: false,
                member: Some(1),
            },
            Sealed {
                duress: false,
                member: None,
            },
            Sealed {
                duress: true,
                member: Some(999),
            },
        ];
        let seals: Vec<String> = kinds.iter().map(|w| seal(&k, to("req-1"), *w)).collect();
        assert!(seals.iter().all(|s| s.len() == seals[0].len()), "{seals:?}");
        for (w, s) in kinds.iter().zip(&seals) {
            assert_eq!(open(&k, to("req-1"), s), Some(*w));
        }
        // Two seals of the same content differ (random nonce): equal seals reveal nothing.
        assert_ne!(seal(&k, to("req-1"), kinds[0]), seals[0]);
        // A seal can't be moved to another request, opened without its pepper, or altered.
        assert_eq!(open(&k, to("req-2"), &seals[0]), None);
        assert_eq!(
            open(&ring("p1", &[("p1", 4)]), to("req-1"), &seals[0]),
            None
        );
        let mut altered = seals[0].clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&k, to("req-1"), &String::from_utf8(altered).unwrap()),
            None
        );
        assert_eq!(open(&k, to("req-1"), "gone.AAAA"), None);
    }

    #[test]
    fn seals_open_after_pepper_rotation() {
        let old = ring("p1", &[("p1", 1)]);
        let s = seal(
            &old,
            to("r"),
            Sealed {
                duress: true,
                member: Some(2),
            },
        );
        let rotated = ring("p2", &[("p1", 1), ("p2", 2)]);
        assert_eq!(
            open(&rotated, to("r"), &s),
            Some(Sealed {
                duress: true,
                member: Some(2)
            })
        );
    }
}
