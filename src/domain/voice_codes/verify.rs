//! Verification of a spoken PIN against every code of a household.
//!
//! Both code slots of every member, filled or not, are hashed and compared, in a fixed order,
//! with constant-time equality and no early exit. The work therefore depends only on how many
//! members the household has, never on which code matched, whether it was a duress code, or
//! whether any duress code exists (ASVS 11.2.4; duress-domain.md D4).

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::household::{CodeKind, Profile};
use super::keyring::{Keyring, MAC_LEN};
use super::{code_mac, is_well_formed};
use crate::common::secret::Pin;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index into `profile.members`.
    pub member: usize,
    pub kind: CodeKind,
}

pub fn verify(
    keyring: &Keyring,
    household: &str,
    profile: &Profile,
    pin: &Pin,
) -> Option<Verified> {
    let mut found = Choice::from(0);
    let mut member_idx: u32 = 0;
    let mut is_duress = Choice::from(0);
    // Normal codes first, then duress: should a PIN ever match both (enrolment forbids it), the
    // duress wins, because missing a duress is the worse failure.
    // An empty slot costs an HMAC too (under the current pepper, against a stand-in that can't
    // match): the work must not tell whether a member has a duress code.
    let stand_in = [0u8; MAC_LEN];
    for kind in [CodeKind::Normal, CodeKind::Duress] {
        for (i, member) in profile.members.iter().enumerate() {
            let stored = member.code(kind);
            let (pepper_id, target) = match stored {
                Some(c) => (c.pepper_id.as_str(), &c.mac),
                None => (keyring.current_id(), &stand_in),
            };
            let (known_pepper, mac) = code_mac(keyring, pepper_id, household, &member.id, pin);
            let eq = mac.ct_eq(target)
                & Choice::from(u8::from(known_pepper.is_some()))
                & Choice::from(u8::from(stored.is_some()));
            member_idx.conditional_assign(&(i as u32), eq);
            is_duress.conditional_assign(&Choice::from(u8::from(kind == CodeKind::Duress)), eq);
            found |= eq;
        }
    }
    let ok = found & Choice::from(u8::from(is_well_formed(pin)));
    if bool::from(ok) {
        Some(Verified {
            member: member_idx as usize,
            kind: if bool::from(is_duress) {
                CodeKind::Duress
            } else {
                CodeKind::Normal
            },
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::voice_codes::hash_code;
    use crate::domain::voice_codes::household::Member;
    use std::collections::BTreeMap;

    fn ring() -> Keyring {
        let peppers: BTreeMap<String, Vec<u8>> = [("p1".to_string(), vec![7u8; 32])].into();
        Keyring::new("p1", peppers).unwrap()
    }

    fn profile(k: &Keyring) -> Profile {
        let mut p = Profile::default();
        for (id, n, pin, duress) in [("alex", 1, "4729", Some("8361")), ("sam", 2, "5183", None)] {
            p.members.push(Member {
                id: id.into(),
                name: id.into(),
                user_number: n,
                panel_user_id: None,
                voice_pin: Some(hash_code(k, "h", id, &Pin::new(pin))),
                duress_pin: duress.map(|d| hash_code(k, "h", id, &Pin::new(d))),
            });
        }
        p
    }

    #[test]
    fn finds_member_and_kind() {
        let k = ring();
        let p = profile(&k);
        assert_eq!(
            verify(&k, "h", &p, &Pin::new("4729")),
            Some(Verified {
                member: 0,
                kind: CodeKind::Normal
            })
        );
        assert_eq!(
            verify(&k, "h", &p, &Pin::new("8361")),
            Some(Verified {
                member: 0,
                kind: CodeKind::Duress
            })
        );
        assert_eq!(
            verify(&k, "h", &p, &Pin::new("5183")),
            Some(Verified {
                member: 1,
                kind: CodeKind::Normal
            })
        );
        for wrong in ["4728", "0000", "", "47290", "47a9"] {
            assert_eq!(verify(&k, "h", &p, &Pin::new(wrong)), None, "{wrong}");
        }
    }

    #[test]
    fn verification_work_is_the_same_whichever_codes_exist() {
        use crate::domain::voice_codes::keyring::macs_in;
        let k = ring();
        let full = profile(&k);
        let mut fewer = full.clone();
        fewer.members[0].duress_pin = None;
        let mut none = full.clone();
        for m in &mut none.members {
            m.voice_pin = None;
            m.duress_pin = None;
        }
        let mut counts = std::collections::BTreeSet::new();
        for p in [&full, &fewer, &none] {
            for pin in ["4729", "8361", "5183", "0000", "47a9"] {
                counts.insert(macs_in(|| verify(&k, "h", p, &Pin::new(pin))).1);
            }
        }
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![4]);
        // The stand-in never matches: an empty slot is not a code.
        assert_eq!(verify(&k, "h", &none, &Pin::new("4729")), None);
        assert_eq!(verify(&k, "h", &fewer, &Pin::new("8361")), None);
    }

    #[test]
    fn codes_are_bound_to_household_and_pepper() {
        let k = ring();
        let p = profile(&k);
        assert_eq!(verify(&k, "other-household", &p, &Pin::new("4729")), None);
        let other: BTreeMap<String, Vec<u8>> = [("p1".to_string(), vec![8u8; 32])].into();
        let k2 = Keyring::new("p1", other).unwrap();
        assert_eq!(verify(&k2, "h", &p, &Pin::new("4729")), None);
    }
}
