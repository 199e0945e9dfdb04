//! The secret part of an outbox record: whether the attempt was a duress, and the panel user it
//! was for.
//!
//! Both are sealed together (AES-256-GCM under the pepper keyring, bound to the request id), so a
//! store dump shows records of one shape and one size whatever the attempt was: a duress, a
//! normal code, or a wrong code during a lockout (which has no member). Only a holder of the
//! pepper learns which, and a seal moved to another record no longer opens.

use crate::voice_codes::Keyring;

const AAD_DOMAIN: &[u8] = b"alarm-skill/outbox/v2|";

/// What a seal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    pub duress: bool,
    /// The panel user number (Contact ID CCC); `None` for an attempt that matched no member.
    pub member: Option<u16>,
}

fn aad(request_id: &str) -> Vec<u8> {
    [AAD_DOMAIN, request_id.as_bytes()].concat()
}

/// Seals `what` for the record `request_id`. The output has the same length for every input.
pub fn seal(keyring: &Keyring, request_id: &str, what: Sealed) -> String {
    // User numbers are 1–999 (management API), so 0 can stand for "no member".
    let [hi, lo] = what.member.unwrap_or(0).to_be_bytes();
    keyring.seal(&[u8::from(what.duress), hi, lo], &aad(request_id))
}

/// `None` when the seal can't be opened: its pepper is gone from the keyring, or it was altered
/// or moved from another record.
pub fn open(keyring: &Keyring, request_id: &str, seal: &str) -> Option<Sealed> {
    match keyring.open(seal, &aad(request_id))?.as_slice() {
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
        let seals: Vec<String> = kinds.iter().map(|w| seal(&k, "req-1", *w)).collect();
        assert!(seals.iter().all(|s| s.len() == seals[0].len()), "{seals:?}");
        for (w, s) in kinds.iter().zip(&seals) {
            assert_eq!(open(&k, "req-1", s), Some(*w));
        }
        // Two seals of the same content differ (random nonce): equal seals reveal nothing.
        assert_ne!(seal(&k, "req-1", kinds[0]), seals[0]);
        // A seal can't be moved to another request, opened without its pepper, or altered.
        assert_eq!(open(&k, "req-2", &seals[0]), None);
        assert_eq!(open(&ring("p1", &[("p1", 4)]), "req-1", &seals[0]), None);
        let mut altered = seals[0].clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&k, "req-1", &String::from_utf8(altered).unwrap()),
            None
        );
        assert_eq!(open(&k, "req-1", "gone.AAAA"), None);
    }

    #[test]
    fn seals_open_after_pepper_rotation() {
        let old = ring("p1", &[("p1", 1)]);
        let s = seal(
            &old,
            "r",
            Sealed {
                duress: true,
                member: Some(2),
            },
        );
        let rotated = ring("p2", &[("p1", 1), ("p2", 2)]);
        assert_eq!(
            open(&rotated, "r", &s),
            Some(Sealed {
                duress: true,
                member: Some(2)
            })
        );
    }
}
