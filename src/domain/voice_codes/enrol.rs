//! Enrolment rules for voice codes.
//!
//! Stored codes are keyed hashes, so "how close is this candidate to an existing code" is
//! answered by hashing the candidate, every code one edit from it (89 for a 4-digit code) and
//! its own prefixes under each stored code's pepper and member, and comparing; whether the
//! candidate is a prefix of a stored code, by comparing its hash with the stored code's prefix
//! hashes ([`super::CodeHash::prefixes`]). The rules hold across lengths: `4729` and `47290`
//! are one insertion apart, `4729` and `472913` one a prefix of the other.
//!
//! Every conflict gets the same error, whether the candidate equals another code or is one digit
//! away, and whichever member holds it, so a rejection names neither a member nor a code. And
//! every check does the same work whichever codes exist (see [`check_new_code`]).

use chrono::{DateTime, Duration, Utc};
use subtle::{Choice, ConstantTimeEq};

use super::household::{CodeKind, Profile};
use super::keyring::{Keyring, MAC_LEN};
use super::{ALEXA_CODE_LEN, MAX_CODE_LEN, PREFIX_SLOTS, code_mac, is_well_formed};
use crate::common::secret::Pin;

/// Default: 10 code changes per household per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrolLimit {
    pub max: u32,
    pub window: Duration,
}

impl Default for EnrolLimit {
    fn default() -> Self {
        EnrolLimit {
            max: 10,
            window: Duration::hours(1),
        }
    }
}

/// What a voice-code change asks of the admin beyond being signed in as the admin: a recent
/// sign-in, and for deletions a limit of their own. A phone taken from the admin (unlocked, with
/// the app signed in for days) can then not wipe the household's codes, duress ones included,
/// nor weaken how a disarm is checked, without the admin's password; and even with it, only a
/// few deletions a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepUp {
    /// The sign-in (`auth_time`) must be at most this old to set, replace or delete a code,
    /// remove a member (by hand or by a sync), reset the lockout or weaken the PIN-less
    /// setting. Setting is included: asking only when a code is replaced would tell whether a
    /// duress code exists.
    pub max_age: Duration,
    /// Deletions of a code or a member, per household, in any rolling `window` (not a calendar
    /// day, whose end would allow twice `max` in a few minutes): tighter than [`EnrolLimit`].
    pub deletions: EnrolLimit,
}

impl StepUp {
    /// Counts `n` deletions at `now` in the household's rolling log
    /// ([`super::Profile::deletions`]) if fewer than `deletions.max` would then fall within any
    /// `deletions.window`; `false`, nothing counted, when they would not. The caller saves the
    /// profile with the deletion, so the count and the deletion are one write.
    pub fn take_deletions(&self, profile: &mut Profile, now: DateTime<Utc>, n: usize) -> bool {
        let since = now - self.deletions.window;
        // Times ahead of `now` (another instance's clock) still count.
        profile.deletions.retain(|at| *at > since);
        let max = usize::try_from(self.deletions.max).unwrap_or(usize::MAX);
        if profile.deletions.len().saturating_add(n) > max {
            return false;
        }
        profile.deletions.extend(std::iter::repeat_n(now, n));
        true
    }
}

impl Default for StepUp {
    fn default() -> Self {
        StepUp {
            max_age: Duration::minutes(10),
            deletions: EnrolLimit {
                max: 5,
                window: Duration::hours(24),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrolError {
    #[error("a voice code is exactly 4 digits")]
    Format,
    /// The same mistake in a household that uses Google, where longer codes are allowed.
    #[error("a voice code is 4 to 8 digits (Alexa matches 4-digit codes only)")]
    FormatLong,
    #[error("this code is among the most commonly chosen PINs; choose a less predictable one")]
    TooCommon,
    /// The same words whichever kind of code is near: the hint must not tell that a duress
    /// code exists.
    #[error(
        "this code is too close to another voice code of the household; choose another \
         (every two codes must be {SPACING_RULE})"
    )]
    TooSimilar,
}

/// How far apart every two codes of a household must be, in the words every explanation of the
/// rule uses (this error, the household app's hint, the docs): "2 digits" alone reads as two
/// positions, which a swap of neighbouring digits also changes, yet a swap is one slip.
pub const SPACING_RULE: &str = "at least 2 changes apart, where a changed, added or dropped \
     digit is one change and a swap of two neighbouring digits counts as one too";

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

/// Every code one edit from `pin` in the optimal-string-alignment (restricted Damerau)
/// distance: each digit changed to each other digit, each pair of neighbouring digits swapped,
/// each digit dropped (when what is left is still a code) and each digit inserted at each place
/// (when the result is still a code). Duplicates are kept, so the count depends on the length
/// alone: 9n + (n - 1) + n·[n > 4] + 10(n + 1)·[n < 8].
fn slips(pin: &str) -> Vec<String> {
    let b = pin.as_bytes();
    let n = b.len();
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    let mut out = Vec::with_capacity(20 * n + 10);
    for pos in 0..n {
        for digit in b'0'..=b'9' {
            if digit != b[pos] {
                let mut v = b.to_vec();
                v[pos] = digit;
                out.push(text(v));
            }
        }
    }
    for pos in 1..n {
        let mut v = b.to_vec();
        v.swap(pos - 1, pos);
        out.push(text(v));
    }
    if n > ALEXA_CODE_LEN {
        for pos in 0..n {
            let mut v = b.to_vec();
            v.remove(pos);
            out.push(text(v));
        }
    }
    if n < MAX_CODE_LEN {
        for pos in 0..=n {
            for digit in b'0'..=b'9' {
                let mut v = b.to_vec();
                v.insert(pos, digit);
                out.push(text(v));
            }
        }
    }
    out
}

/// The prefixes of `pin` that are codes themselves (4 digits or more), shortest first.
fn code_prefixes(pin: &str) -> Vec<String> {
    (ALEXA_CODE_LEN..pin.len())
        .filter_map(|len| pin.get(..len).map(str::to_string))
        .collect()
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbouring characters, each substring edited once. The reference the slip set is tested
/// against.
#[cfg(test)]
fn osa_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Checks `pin` as the new `kind` code of `member_id`. The slot being replaced is not compared.
///
/// The rules, over codes of every length: no two codes are equal or one a prefix of the other;
/// and every two codes of the household are at least two edits (insertion, deletion,
/// substitution, swap of neighbouring digits) apart, so that a dropped, extra, wrong or swapped
/// digit can neither raise a duress nor miss one. The rule is the same whatever the kinds of the
/// two codes: were only duress codes kept apart, a candidate one edit from a voice PIN accepted
/// and one edit from some other code refused would tell whoever holds the admin's phone that a
/// duress code exists, and near which digits.
///
/// The work depends only on the number of members and the candidate's length, never on which
/// codes they hold: every slot of every member, filled or empty, duress or not, the slot being
/// replaced included, costs the candidate's HMAC, its slips' and its prefixes' under that slot's
/// pepper (an empty slot under the current one, against stand-ins), compared in constant time
/// with no early exit, and the candidate's HMAC is compared with every prefix place of the
/// slot. Which comparisons count is a mask applied afterwards. Otherwise the time an enrolment
/// takes would tell whoever holds the admin's phone whether a duress code exists.
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
    let near: Vec<Pin> = slips(pin.expose()).into_iter().map(Pin::new).collect();
    let shorter: Vec<Pin> = code_prefixes(pin.expose())
        .into_iter()
        .map(Pin::new)
        .collect();
    let stand_in = [0u8; MAC_LEN];
    let stand_in_prefixes = [stand_in; PREFIX_SLOTS];
    let mut conflict = Choice::from(0);
    for member in &profile.members {
        for other_kind in [CodeKind::Normal, CodeKind::Duress] {
            let stored = member.code(other_kind);
            let (pepper_id, target, prefixes) = match stored {
                Some(c) => (c.pepper_id.as_str(), &c.mac, c.prefixes.as_slice()),
                None => (keyring.current_id(), &stand_in, &stand_in_prefixes[..]),
            };
            let replaced = member.id == member_id && other_kind == kind;
            let counts = Choice::from(u8::from(stored.is_some() && !replaced));
            let known = |candidate: &Pin| {
                let (known, mac) = code_mac(keyring, pepper_id, household, &member.id, candidate);
                (mac, Choice::from(u8::from(known.is_some())))
            };
            let (own, own_known) = known(pin);
            let mut hit = own.ct_eq(target);
            // The candidate a prefix of the stored code. Codes stored before prefixes were
            // kept have none; the comparisons are made all the same, against stand-ins.
            for i in 0..PREFIX_SLOTS {
                let place = prefixes.get(i).unwrap_or(&stand_in);
                hit |= own.ct_eq(place) & Choice::from(u8::from(!prefixes.is_empty()));
            }
            // The stored code a prefix of the candidate.
            for candidate in &shorter {
                let (mac, k) = known(candidate);
                hit |= mac.ct_eq(target) & k;
            }
            hit &= own_known;
            let mut near_hit = Choice::from(0);
            for candidate in &near {
                let (mac, k) = known(candidate);
                near_hit |= mac.ct_eq(target) & k;
            }
            conflict |= counts & (hit | near_hit);
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

    use crate::domain::voice_codes::household::Member;
    use crate::domain::voice_codes::{hash_code, keyring::macs_in};

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
                panel_user_id: None,
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
        // Two slots per member, each the candidate and its 89 slips.
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![2 * 2 * 90]);
    }

    /// [`check_new_code`] for household "h" under `k`, the code given as text.
    fn checker(k: &Keyring) -> impl Fn(&Profile, &str, CodeKind, &str) -> Result<(), EnrolError> {
        move |p, member, kind, c| check_new_code(k, "h", p, member, kind, &Pin::new(c))
    }

    #[test]
    fn the_rules_hold_whatever_the_household_holds() {
        let k = ring();
        let check = checker(&k);
        let full = household(&k, (Some("4729"), Some("8361")), (Some("5183"), None));
        use CodeKind::*;
        use EnrolError::TooSimilar;
        assert_eq!(check(&full, "sam", Normal, "4729"), Err(TooSimilar));
        assert_eq!(check(&full, "sam", Normal, "8361"), Err(TooSimilar));
        assert_eq!(check(&full, "sam", Normal, "8360"), Err(TooSimilar));
        assert_eq!(check(&full, "alex", Duress, "4728"), Err(TooSimilar));
        assert_eq!(check(&full, "alex", Duress, "5184"), Err(TooSimilar));
        // Whatever the kinds: one edit from a voice PIN is as near as one from a duress PIN,
        // so no answer tells which kind of code is near.
        assert_eq!(check(&full, "sam", Normal, "4728"), Err(TooSimilar));
        assert_eq!(check(&full, "sam", Normal, "5184"), Ok(()));
        for (member, kind) in [("sam", Normal), ("sam", Duress), ("alex", Normal)] {
            for near in ["4728", "8360", "7429", "8631"] {
                let got = check(&full, member, kind, near);
                // Alex's own voice PIN is the slot being replaced: not compared.
                let own = member == "alex" && ["4728", "7429"].contains(&near);
                let want = if own { Ok(()) } else { Err(TooSimilar) };
                assert_eq!(got, want, "{member} {kind:?} {near}");
            }
        }
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
        // One digit from a duress code is too close, and a code that starts with another one
        // collides whatever their lengths.
        let mut q = p.clone();
        q.members[1].duress_pin = Some(hash_code(&k, "h", "sam", &Pin::new("946183")));
        let alex = |kind, c: &str| check_new_code(&k, "h", &q, "alex", kind, &Pin::new(c));
        assert_eq!(alex(Normal, "946184"), Err(EnrolError::TooSimilar));
        assert_eq!(alex(Normal, "946183"), Err(EnrolError::TooSimilar));
        assert_eq!(alex(Normal, "836150"), Err(EnrolError::TooSimilar));
        assert_eq!(alex(Normal, "386150"), Ok(()));
        assert_eq!(slips("50718264").len(), 72 + 7 + 8);
        // The work still depends on nothing but the members and the candidate's length.
        let (_, with) = macs_in(|| alex(Duress, "50718264"));
        let (_, without) = macs_in(|| check(&p, Duress, "50718264"));
        assert_eq!(with, without);
        // The candidate, its 87 slips and its 4 prefixes, per slot.
        assert_eq!(with, 2 * 2 * 92);
    }

    #[test]
    fn the_deletion_limit_is_a_rolling_window_not_a_calendar_day() {
        let step_up = StepUp::default();
        let mut p = Profile::default();
        // 23:59 UTC: the whole day's 5, then none at 00:01 and none until 23:59 the next day.
        let eve = DateTime::parse_from_rfc3339("2026-12-06T23:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(step_up.take_deletions(&mut p, eve, 4));
        assert!(step_up.take_deletions(&mut p, eve, 1));
        assert!(!step_up.take_deletions(&mut p, eve + Duration::minutes(2), 1));
        let day = eve + Duration::hours(24);
        assert!(!step_up.take_deletions(&mut p, day - Duration::seconds(1), 1));
        assert_eq!(p.deletions.len(), 5, "a refusal counts nothing");
        // A batch that would pass the limit is refused whole.
        assert!(!step_up.take_deletions(&mut p, day, 6));
        assert!(step_up.take_deletions(&mut p, day, 5));
        assert_eq!(
            p.deletions,
            vec![day; 5],
            "only the window's times are kept"
        );
    }

    #[test]
    fn slips_are_exactly_the_codes_one_edit_away() {
        // Against the reference distance; and, for the shorter ones, every string of a length
        // one edit can reach over the candidate's digits and two others.
        for pin in ["4729", "4479", "50718", "5071826", "50718264"] {
            let set: std::collections::BTreeSet<String> = slips(pin).into_iter().collect();
            for s in &set {
                assert_eq!(
                    osa_distance(pin, s).min(1),
                    usize::from(s != pin),
                    "{pin} {s}"
                );
                assert!((4..=8).contains(&s.len()), "{s}");
            }
            let n = pin.len();
            if n > 6 {
                continue;
            }
            let mut digits: Vec<u8> = pin.bytes().chain([b'0', b'8']).collect();
            digits.sort_unstable();
            digits.dedup();
            let mut all = vec![String::new()];
            for len in 1..=(n + 1).min(8) {
                all = all
                    .iter()
                    .flat_map(|p| digits.iter().map(move |d| format!("{p}{}", *d as char)))
                    .collect();
                if len + 1 < n {
                    continue;
                }
                for s in &all {
                    if osa_distance(pin, s) == 1 && s.len() >= 4 {
                        assert!(set.contains(s), "{pin}: {s} is one edit away");
                    }
                }
            }
        }
        assert_eq!(osa_distance("4729", "7429"), 1);
        assert_eq!(osa_distance("4729", "47290"), 1);
        assert_eq!(osa_distance("4729", "472"), 1);
        assert_eq!(osa_distance("4729", "2749"), 2);
        assert_eq!(code_prefixes("5071826"), ["5071", "50718", "507182"]);
        assert!(code_prefixes("4729").is_empty());
    }

    #[test]
    fn the_too_similar_error_says_a_swap_is_one_change() {
        // 7429 next to 4729 is refused: an error that said "2 digits" would not explain why.
        let message = EnrolError::TooSimilar.to_string();
        assert!(message.contains("at least 2 changes apart"), "{message}");
        assert!(
            message.contains("a swap of two neighbouring digits counts as one"),
            "{message}"
        );
        let k = ring();
        let p = household(&k, (Some("4729"), None), (None, None));
        assert_eq!(
            checker(&k)(&p, "sam", CodeKind::Duress, "7429"),
            Err(EnrolError::TooSimilar)
        );
    }

    #[test]
    fn slips_across_lengths_and_prefixes_are_too_similar() {
        let k = ring();
        let mut p = household(&k, (Some("4729"), Some("8361")), (None, None));
        p.settings.google_enabled = true;
        let check = checker(&k);
        use CodeKind::*;
        use EnrolError::TooSimilar;
        // The cases: an extra digit, swapped digits, a dropped digit.
        assert_eq!(check(&p, "sam", Duress, "47290"), Err(TooSimilar));
        assert_eq!(check(&p, "sam", Duress, "7429"), Err(TooSimilar));
        assert_eq!(check(&p, "sam", Duress, "4279"), Err(TooSimilar));
        assert_eq!(check(&p, "alex", Normal, "83601"), Err(TooSimilar));
        // Alex's own voice code against a new duress code of Alex's.
        assert_eq!(check(&p, "alex", Duress, "47929"), Err(TooSimilar));
        // A prefix, either way, whatever the kinds and however far apart the lengths.
        assert_eq!(check(&p, "sam", Normal, "47291358"), Err(TooSimilar));
        let mut q = p.clone();
        q.members[1].voice_pin = Some(hash_code(&k, "h", "sam", &Pin::new("5061938")));
        assert_eq!(check(&q, "alex", Normal, "5061"), Err(TooSimilar));
        assert_eq!(check(&q, "alex", Normal, "506193"), Err(TooSimilar));
        assert_eq!(check(&q, "alex", Normal, "5062"), Ok(()));
        // Two edits apart across lengths is fine for a duress code.
        assert_eq!(check(&p, "sam", Duress, "74290"), Ok(()));
        assert_eq!(check(&p, "sam", Duress, "472"), Err(EnrolError::FormatLong));
        // Normal against normal too: equality, prefixes and slips.
        assert_eq!(check(&p, "sam", Normal, "47290"), Err(TooSimilar));
        assert_eq!(check(&p, "sam", Normal, "7429"), Err(TooSimilar));
        assert_eq!(check(&p, "sam", Normal, "74290"), Ok(()));
        // A code stored before prefix hashes were kept is still checked for every slip.
        let mut legacy = q.clone();
        for m in &mut legacy.members {
            for kind in [Normal, Duress] {
                if let Some(c) = m.code_mut(kind) {
                    c.prefixes.clear();
                }
            }
        }
        assert_eq!(check(&legacy, "alex", Duress, "50619388"), Err(TooSimilar));
        assert_eq!(check(&legacy, "sam", Duress, "4792"), Err(TooSimilar));
        let (_, old) = macs_in(|| check(&legacy, "alex", Duress, "2749"));
        let (_, new) = macs_in(|| check(&q, "alex", Duress, "2749"));
        assert_eq!(old, new);
    }

    #[test]
    fn a_stored_code_keeps_a_prefix_hash_per_shorter_length_and_hides_its_length() {
        let k = ring();
        let short = hash_code(&k, "h", "alex", &Pin::new("4729"));
        let long = hash_code(&k, "h", "alex", &Pin::new("472913"));
        assert_eq!(short.prefixes.len(), PREFIX_SLOTS);
        assert_eq!(long.prefixes.len(), PREFIX_SLOTS);
        assert_eq!(long.prefixes[0], short.mac);
        assert_eq!(
            long.prefixes[1],
            hash_code(&k, "h", "alex", &Pin::new("47291")).mac
        );
        // The places past the code's length are random, not a marker.
        assert_ne!(
            long.prefixes[2],
            hash_code(&k, "h", "alex", &Pin::new("4729")).prefixes[2]
        );
        let again = hash_code(&k, "h", "alex", &Pin::new("4729"));
        assert_ne!(short.prefixes, again.prefixes);
        assert_eq!(short.mac, again.mac);
    }
}
