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
//! id only) open only for a record written before the configured cutoff
//! (`OUTBOX_V2_SEALS_BEFORE`, the time the deployment moved to v3; unset: never), so records
//! pending across the upgrade are delivered, while a v2 seal on a record written since, which
//! only a copy of an old seal can be, is refused ([`Unopened::V2AfterCutoff`]).

use chrono::{DateTime, Utc};

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

/// Which seals of the former format (AAD v2, bound to the request id only) still open: those of
/// records written before this time. `None`: none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V2Cutoff(pub Option<DateTime<Utc>>);

impl V2Cutoff {
    fn admits(self, written: DateTime<Utc>) -> bool {
        self.0.is_some_and(|cutoff| written < cutoff)
    }
}

/// Why a seal did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unopened {
    /// Its pepper is gone from the keyring, or it was altered or moved from another record,
    /// household or panel.
    Unreadable,
    /// A v2 seal on a record written at or after the [`V2Cutoff`].
    V2AfterCutoff,
}

/// Opens the seal of the record `to`, written at `written` (its `created_at`).
pub fn open(
    keyring: &Keyring,
    to: Binding<'_>,
    written: DateTime<Utc>,
    v2: V2Cutoff,
    seal: &str,
) -> Result<Sealed, Unopened> {
    let plain = match keyring.open(seal, &aad_v3(to)) {
        Some(plain) => plain,
        None => {
            let plain = keyring
                .open(seal, &aad_v2(to.request_id))
                .ok_or(Unopened::Unreadable)?;
            if !v2.admits(written) {
                return Err(Unopened::V2AfterCutoff);
            }
            plain
        }
    };
    match plain.as_slice() {
        [kind @ (0 | 1), hi, lo] => {
            let member = u16::from_be_bytes([*hi, *lo]);
            Ok(Sealed {
                duress: *kind == 1,
                member: (member != 0).then_some(member),
            })
        }
        _ => Err(Unopened::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// When the test records were written.
    fn written() -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    /// [`open`] of a record written at [`written`], with v2 seals admitted.
    fn open(keyring: &Keyring, to: Binding<'_>, seal: &str) -> Option<Sealed> {
        let v2 = V2Cutoff(Some(written() + chrono::Duration::seconds(1)));
        super::open(keyring, to, written(), v2, seal).ok()
    }

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
    fn v2_seals_open_only_for_records_written_before_the_cutoff() {
        let k = ring("p1", &[("p1", 3)]);
        let v2 = k.seal(&[1, 0, 1], &aad_v2("req-1"));
        let v3 = seal(&k, to("req-1"), DURESS);
        let cutoff = written() + chrono::Duration::hours(1);
        let at = |written, cutoff| super::open(&k, to("req-1"), written, V2Cutoff(cutoff), &v2);
        assert_eq!(at(written(), Some(cutoff)), Ok(DURESS));
        // Written at the cutoff or after it, or with no cutoff configured: refused, and told
        // apart from a seal that doesn't open at all.
        assert_eq!(at(cutoff, Some(cutoff)), Err(Unopened::V2AfterCutoff));
        assert_eq!(at(written(), None), Err(Unopened::V2AfterCutoff));
        // Current seals don't care about the cutoff; a moved v2 seal is still just unreadable.
        for cutoff in [None, Some(cutoff)] {
            let current = super::open(
                &k,
                to("req-1"),
                cutoff.unwrap_or(written()),
                V2Cutoff(cutoff),
                &v3,
            );
            assert_eq!(current, Ok(DURESS));
            let moved = super::open(&k, to("req-2"), written(), V2Cutoff(cutoff), &v2);
            assert_eq!(moved, Err(Unopened::Unreadable));
        }
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
