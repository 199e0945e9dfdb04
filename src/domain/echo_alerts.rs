//! What the household's Echo devices play, derived from the panel's state changes as the panel
//! cloud reports them: the documented rules of Amazon's `Alexa.SecurityPanelController.Alert`
//! (1.1), and nothing of its wire format, which could not be confirmed (docs/echo-alerts.md).
//!
//! - **Exit delay** while the panel counts its exit delay; as long as the panel's delay.
//! - **Entry delay** while it counts its entry delay (an entry zone opened while armed); as long
//!   as the panel's delay.
//! - **Siren** while any alarm is active; Alexa plays it at most 10 minutes.
//! - **Chime** when a contact sensor opens while the panel is disarmed; about 1 s.
//!
//! Each sustained alert stops when the panel's state ends it: a disarm ends a delay, the end of
//! the alarms ends the siren, the entry delay running out into the alarm ends the entry delay.
//! The update is computed from the event alone (the panel after the change and what the change
//! says it was before), never from the skill's own memory, so a Lambda that has never seen the
//! panel derives the same, and a duress disarm, whose events are a normal disarm's, derives the
//! same alerts as a normal one.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::domain::ports::echo_alerts::{Alert, AlertChange, AlertUpdate, Playing};
use crate::domain::ports::panel::{Alarms, Panel, Phase, ZoneKind};

/// Alexa's longest siren: "The maximum play time is 10 minutes."
pub const SIREN_MAX_S: u32 = 600;
/// "Chimes last about one second."
pub const CHIME_S: u32 = 1;

/// One change of a panel: the panel after it, and the parts of before that the alerts follow.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub panel: &'a Panel,
    pub phase_before: Phase,
    pub alarms_before: Alarms,
    /// The zones the change opened.
    pub opened: Vec<&'a str>,
    pub at: DateTime<Utc>,
}

/// The alerts that sound for as long as the panel stays so.
fn sustained(phase: Phase, alarms: Alarms) -> BTreeSet<Alert> {
    let mut on = BTreeSet::new();
    if alarms.any() {
        on.insert(Alert::Siren);
    }
    match phase {
        Phase::ExitDelay => {
            on.insert(Alert::ExitDelay);
        }
        Phase::EntryDelay => {
            on.insert(Alert::EntryDelay);
        }
        Phase::Disarmed | Phase::Armed | Phase::Alarm => {}
    }
    on
}

/// How long `alert` may play: a delay lasts what the panel has left of it (at its start, the
/// panel's configured delay), or the configured delay if the panel didn't say.
fn max_play_s(alert: Alert, panel: &Panel) -> u32 {
    let delay = |phase: Phase, configured: u32| {
        if panel.phase == phase && panel.delay_remaining_s > 0 {
            panel.delay_remaining_s
        } else {
            configured
        }
    };
    match alert {
        Alert::Siren => SIREN_MAX_S,
        Alert::EntryDelay => delay(Phase::EntryDelay, panel.entry_delay_s),
        Alert::ExitDelay => delay(Phase::ExitDelay, panel.exit_delay_s),
        Alert::Chime => CHIME_S,
    }
}

/// The alerts a change starts and stops; `None` when it changes nothing the Echo devices play.
pub fn derive(t: &Transition<'_>) -> Option<AlertUpdate> {
    let panel = t.panel;
    let before = sustained(t.phase_before, t.alarms_before);
    let after = sustained(panel.phase, panel.alarms);
    // Highest precedence first: a set iterates lowest first.
    let mut changes: Vec<AlertChange> = before
        .iter()
        .rev()
        .filter(|a| !after.contains(a))
        .map(|&alert| AlertChange::Stop { alert })
        .collect();
    changes.extend(
        after
            .iter()
            .rev()
            .filter(|a| !before.contains(a))
            .map(|&alert| AlertChange::Start {
                alert,
                max_play_s: max_play_s(alert, panel),
            }),
    );
    let disarmed = t.phase_before == Phase::Disarmed && panel.phase == Phase::Disarmed;
    let contact_opened = t.opened.iter().any(|id| {
        panel
            .zone(id)
            .is_some_and(|z| z.open && z.kind == ZoneKind::Contact)
    });
    // One tone however many doors opened in the one change: it is one sound.
    let chime = disarmed && contact_opened;
    if chime {
        changes.push(AlertChange::Start {
            alert: Alert::Chime,
            max_play_s: CHIME_S,
        });
    }
    if changes.is_empty() {
        return None;
    }
    // The chime is reported either way; Alexa plays it only over silence.
    let top = after.last().copied().or(chime.then_some(Alert::Chime));
    Some(AlertUpdate {
        panel: panel.id.clone(),
        at: t.at,
        changes,
        playing: top.map(|alert| Playing {
            alert,
            max_play_s: max_play_s(alert, panel),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::panel::{ArmState, Zone};

    fn zone(id: &str, kind: ZoneKind, entry: bool, open: bool) -> Zone {
        Zone {
            id: id.into(),
            number: 1,
            name: id.into(),
            kind,
            open,
            bypassable: true,
            bypassed: false,
            entry,
        }
    }

    /// A panel with an exit delay of 45 s and an entry delay of 20 s (not the defaults, so a
    /// duration can only come from the panel), in `phase`.
    fn panel(phase: Phase, remaining: u32, alarms: Alarms, front_open: bool) -> Panel {
        Panel {
            id: "home".into(),
            name: "Home".into(),
            manufacturer: "Acme".into(),
            model: "AP-1".into(),
            arm_state: match phase {
                Phase::Disarmed => ArmState::Disarmed,
                _ => ArmState::ArmedAway,
            },
            phase,
            delay_remaining_s: remaining,
            supported_arm_states: vec![ArmState::ArmedAway],
            exit_delay_s: 45,
            entry_delay_s: 20,
            alarms,
            trouble: vec![],
            online: true,
            zones: vec![
                zone("front", ZoneKind::Contact, true, front_open),
                zone("hall", ZoneKind::Motion, false, false),
            ],
            as_of: Utc::now(),
            monitoring: None,
        }
    }

    fn burglary() -> Alarms {
        Alarms {
            burglary: true,
            ..Alarms::default()
        }
    }

    fn fire() -> Alarms {
        Alarms {
            fire: true,
            ..Alarms::default()
        }
    }

    fn update(
        p: &Panel,
        phase_before: Phase,
        alarms_before: Alarms,
        opened: &[&'static str],
    ) -> Option<AlertUpdate> {
        derive(&Transition {
            panel: p,
            phase_before,
            alarms_before,
            opened: opened.to_vec(),
            at: p.as_of,
        })
    }

    fn start(alert: Alert, max_play_s: u32) -> AlertChange {
        AlertChange::Start { alert, max_play_s }
    }

    fn stop(alert: Alert) -> AlertChange {
        AlertChange::Stop { alert }
    }

    fn playing(u: &AlertUpdate) -> Option<(Alert, u32)> {
        u.playing.map(|p| (p.alert, p.max_play_s))
    }

    #[test]
    fn arming_starts_the_exit_delay_for_the_panels_own_delay() {
        let p = panel(Phase::ExitDelay, 45, Alarms::default(), false);
        let u = update(&p, Phase::Disarmed, Alarms::default(), &[]).unwrap();
        assert_eq!(u.changes, vec![start(Alert::ExitDelay, 45)]);
        assert_eq!(playing(&u), Some((Alert::ExitDelay, 45)));
        assert_eq!(u.panel, "home");
    }

    #[test]
    fn the_exit_delay_stops_when_the_panel_arms_or_disarms() {
        for phase in [Phase::Armed, Phase::Disarmed] {
            let p = panel(phase, 0, Alarms::default(), false);
            let u = update(&p, Phase::ExitDelay, Alarms::default(), &[]).unwrap();
            assert_eq!(u.changes, vec![stop(Alert::ExitDelay)], "{phase:?}");
            assert_eq!(u.playing, None);
        }
    }

    #[test]
    fn an_entry_zone_opening_while_armed_starts_the_entry_delay_and_no_chime() {
        let p = panel(Phase::EntryDelay, 20, Alarms::default(), true);
        let u = update(&p, Phase::Armed, Alarms::default(), &["front"]).unwrap();
        assert_eq!(u.changes, vec![start(Alert::EntryDelay, 20)]);
        assert_eq!(playing(&u), Some((Alert::EntryDelay, 20)));
    }

    #[test]
    fn a_disarm_ends_the_entry_delay() {
        let p = panel(Phase::Disarmed, 0, Alarms::default(), true);
        let u = update(&p, Phase::EntryDelay, Alarms::default(), &[]).unwrap();
        assert_eq!(u.changes, vec![stop(Alert::EntryDelay)]);
        assert_eq!(u.playing, None);
    }

    #[test]
    fn the_entry_delay_running_out_stops_its_chirps_and_starts_the_capped_siren() {
        let p = panel(Phase::Alarm, 0, burglary(), true);
        let u = update(&p, Phase::EntryDelay, Alarms::default(), &[]).unwrap();
        assert_eq!(
            u.changes,
            vec![stop(Alert::EntryDelay), start(Alert::Siren, SIREN_MAX_S)]
        );
        assert_eq!(playing(&u), Some((Alert::Siren, 600)));
    }

    #[test]
    fn the_end_of_the_alarm_ends_the_siren_whether_by_disarm_or_by_clearing() {
        let disarmed = panel(Phase::Disarmed, 0, Alarms::default(), false);
        let cleared = panel(Phase::Alarm, 0, Alarms::default(), false);
        for p in [disarmed, cleared] {
            let u = update(&p, Phase::Alarm, burglary(), &[]).unwrap();
            assert_eq!(u.changes, vec![stop(Alert::Siren)]);
            assert_eq!(u.playing, None);
        }
    }

    #[test]
    fn a_siren_goes_on_while_another_alarm_still_sounds() {
        // A voice disarm never clears a fire alarm: the Echo devices go on sounding it.
        let p = panel(Phase::Disarmed, 0, fire(), false);
        let both = Alarms {
            burglary: true,
            fire: true,
            ..Alarms::default()
        };
        assert_eq!(update(&p, Phase::Alarm, both, &[]), None);
    }

    #[test]
    fn only_a_contact_sensor_opening_while_disarmed_chimes_for_a_second() {
        let door = panel(Phase::Disarmed, 0, Alarms::default(), true);
        let chimed = update(&door, Phase::Disarmed, Alarms::default(), &["front"]);
        let u = chimed.unwrap();
        assert_eq!(
            (u.changes.as_slice(), playing(&u)),
            (&[start(Alert::Chime, 1)][..], Some((Alert::Chime, 1)))
        );
        // Not for motion, a closing, or an armed panel.
        let mut motion = panel(Phase::Disarmed, 0, Alarms::default(), false);
        motion.zones[1].open = true;
        assert_eq!(
            update(&motion, Phase::Disarmed, Alarms::default(), &["hall"]),
            None
        );
        let closed = panel(Phase::Disarmed, 0, Alarms::default(), false);
        assert_eq!(
            update(&closed, Phase::Disarmed, Alarms::default(), &["front"]),
            None
        );
        let mut armed = panel(Phase::Armed, 0, Alarms::default(), false);
        armed.zones[1].open = true;
        assert_eq!(
            update(&armed, Phase::Armed, Alarms::default(), &["hall"]),
            None
        );
    }

    #[test]
    fn precedence_the_siren_plays_over_the_exit_delay_and_the_delay_resumes_after_it() {
        // A fire alarm raised during the exit delay: both are reported, the siren plays.
        let p = panel(Phase::ExitDelay, 30, fire(), false);
        let u = update(&p, Phase::ExitDelay, Alarms::default(), &[]).unwrap();
        assert_eq!(u.changes, vec![start(Alert::Siren, SIREN_MAX_S)]);
        assert_eq!(playing(&u), Some((Alert::Siren, 600)));
        // Cleared with 12 s of the delay left: the chirps play again, for what is left.
        let p = panel(Phase::ExitDelay, 12, Alarms::default(), false);
        let u = update(&p, Phase::ExitDelay, fire(), &[]).unwrap();
        assert_eq!(u.changes, vec![stop(Alert::Siren)]);
        assert_eq!(playing(&u), Some((Alert::ExitDelay, 12)));
    }

    #[test]
    fn precedence_a_chime_is_reported_but_never_plays_over_a_siren() {
        let p = panel(Phase::Disarmed, 0, fire(), true);
        let u = update(&p, Phase::Disarmed, fire(), &["front"]).unwrap();
        assert_eq!(u.changes, vec![start(Alert::Chime, 1)]);
        assert_eq!(playing(&u), Some((Alert::Siren, 600)));
    }

    #[test]
    fn precedence_orders_the_alerts_siren_entry_exit_chime() {
        let mut all = vec![
            Alert::Chime,
            Alert::Siren,
            Alert::ExitDelay,
            Alert::EntryDelay,
        ];
        all.sort();
        all.reverse();
        assert_eq!(
            all,
            vec![
                Alert::Siren,
                Alert::EntryDelay,
                Alert::ExitDelay,
                Alert::Chime
            ]
        );
    }

    #[test]
    fn a_change_the_echo_devices_do_not_follow_derives_nothing() {
        let p = panel(Phase::Armed, 0, Alarms::default(), false);
        assert_eq!(update(&p, Phase::Armed, Alarms::default(), &[]), None);
    }
}
