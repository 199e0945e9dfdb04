//! One simulated panel: arm state, exit and entry delays, alarms, bypass, trouble and
//! connectivity, and its alarm reporting policy (abort window, cancel window, cancel by code).
//! Pure state transitions; every method takes the current time and returns what the panel
//! reported (Contact ID events) and which Alexa-visible properties changed.
//!
//! Reporting rules (docs/panel-api.md, "Alarm reporting"):
//! - A burglary alarm is held for `abort_window_s` (CP-01 abort window); a disarm inside it
//!   aborts the report. `0` reports at once.
//! - Once reported, only a cancel by a user code within `cancel_window_s` sends 406; with
//!   `cancel_requires_code: false` a disarm within the window sends it too.
//! - An armed entry zone opening is reported at once (138, pending alarm), so the receiver can
//!   raise the alarm itself if the panel goes silent (crash-and-smash).
//! - After a duress nothing is aborted and no cancel is transmitted. What the household sees
//!   (replies, state) is computed as if there had been no duress.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::monitoring::{CLOSING, ContactIdEvent, NEW_EVENT, codes};
use crate::domain::ports::panel::{
    Alarms, ArmMode, ArmRefusal, ArmState, Panel, Phase, Zone, ZoneKind, ZoneRef,
};
use crate::edges::webhook::Changed;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoneConfig {
    pub id: String,
    pub number: u16,
    pub name: String,
    pub kind: ZoneKind,
    #[serde(default)]
    pub entry: bool,
    #[serde(default = "yes")]
    pub bypassable: bool,
}

fn yes() -> bool {
    true
}

impl ZoneConfig {
    /// The zone as a new panel has it: closed and not bypassed.
    fn closed_zone(&self) -> Zone {
        Zone {
            id: self.id.clone(),
            number: self.number,
            name: self.name.clone(),
            kind: self.kind,
            open: false,
            bypassable: self.bypassable,
            bypassed: false,
            entry: self.entry,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PanelConfig {
    pub id: String,
    pub name: String,
    #[serde(default = "default_manufacturer")]
    pub manufacturer: String,
    #[serde(default = "default_model")]
    pub model: String,
    /// CP-01's default exit delay is 60 s; Alexa can report at most 255.
    #[serde(default = "default_exit")]
    pub exit_delay_s: u32,
    #[serde(default = "default_entry")]
    pub entry_delay_s: u32,
    #[serde(default = "default_modes")]
    pub supported_arm_states: Vec<ArmState>,
    pub zones: Vec<ZoneConfig>,
    /// CP-01 abort window (communicator delay) for burglary alarms: 15–45 s, 30 s by default;
    /// 0 reports at once. UL: entry delay + abort window at most 60 s.
    #[serde(default = "default_abort")]
    pub abort_window_s: u32,
    /// After an alarm was reported, a disarm does not send a cancel (406): only an explicit
    /// cancel by a user code does.
    #[serde(default = "yes")]
    pub cancel_requires_code: bool,
    /// How long after the alarm report a cancel is still sent (CP-01: at least 5 minutes).
    #[serde(default = "default_cancel_window")]
    pub cancel_window_s: u32,
    /// The DC-09 account number (3–16 hex digits); assigned from the panel's position if absent.
    #[serde(default)]
    pub monitoring_account: Option<String>,
    /// The receiver's grace after entry delay + abort window before it treats a pending alarm
    /// as crash-and-smash.
    #[serde(default = "default_grace")]
    pub supervision_grace_s: u32,
}

fn default_manufacturer() -> String {
    "Acme Security".into()
}
fn default_model() -> String {
    "AP-100".into()
}
fn default_exit() -> u32 {
    60
}
fn default_entry() -> u32 {
    30
}
fn default_abort() -> u32 {
    30
}
fn default_cancel_window() -> u32 {
    300
}
fn default_grace() -> u32 {
    30
}
fn default_modes() -> Vec<ArmState> {
    vec![
        ArmState::ArmedAway,
        ArmState::ArmedStay,
        ArmState::ArmedNight,
    ]
}

/// One Contact ID report; `at` is when it occurred if not "now" (a delay that ended earlier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub code: &'static str,
    pub qualifier: u8,
    pub user: Option<u16>,
    pub zone: Option<u16>,
    pub at: Option<DateTime<Utc>>,
}

/// What an operation caused: signals to the monitoring center and changes Alexa can see.
#[derive(Debug, Default)]
pub struct Effects {
    pub signals: Vec<Signal>,
    pub changed: Vec<Changed>,
    /// The panel changed in a way no Alexa property shows (the exit delay ended, a trouble came
    /// or went): the webhook still hears of it (with `changed` empty but for a phase change),
    /// so Google's Report State, which carries the phase and the troubles, stays equal to what
    /// QUERY answers.
    pub touched: bool,
}

impl Effects {
    fn signal(&mut self, code: &'static str, qualifier: u8, user: Option<u16>, zone: Option<u16>) {
        self.signals.push(Signal {
            code,
            qualifier,
            user,
            zone,
            at: None,
        });
    }

    pub fn events(&self, account: &str, panel: &str, now: DateTime<Utc>) -> Vec<ContactIdEvent> {
        self.signals
            .iter()
            .map(|s| ContactIdEvent {
                account: account.to_string(),
                panel: panel.to_string(),
                code: s.code.to_string(),
                qualifier: s.qualifier,
                partition: 1,
                user: s.user,
                zone: s.zone,
                at: s.at.unwrap_or(now),
            })
            .collect()
    }
}

/// What an explicit cancel did, as the household sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The alarm was reported; the cancel went out (406).
    Cancelled,
    /// Already cancelled in this arming period.
    AlreadyCancelled,
    /// The alarm was still inside the abort window: it is not reported at all.
    Aborted,
    /// No alarm was reported in this arming period.
    NothingToCancel,
    /// The cancel window has closed: the dispatch stands.
    WindowClosed,
}

#[derive(Debug, Clone)]
pub struct SimPanel {
    pub account: String,
    pub config: PanelConfig,
    pub arm_state: ArmState,
    pub phase: Phase,
    pub phase_ends_at: Option<DateTime<Utc>>,
    pub alarms: Alarms,
    pub trouble: Vec<String>,
    pub online: bool,
    pub zones: Vec<Zone>,
    /// A closing (401/441 qualifier 3) was reported for the current arming period.
    close_reported: bool,
    /// Burglary reports held back by the abort window, and when it ends.
    held: Vec<Signal>,
    held_until: Option<DateTime<Utc>>,
    /// When this arming period's alarm was reported, as the household's view has it (a duress
    /// that forced the report out early does not change it): the cancel window runs from here.
    alarm_sent_at: Option<DateTime<Utc>>,
    cancelled: bool,
    /// A duress was raised in this arming period: no abort, and no cancel is transmitted.
    duress: bool,
    armed_by: Option<u16>,
    /// The phase the last webhook event left the panel in: the next event names the one before
    /// when it changed, for the Echo devices' alerts.
    reported_phase: Phase,
    pub as_of: DateTime<Utc>,
    /// Reports the panel made while its communicator was offline; sent when it reconnects.
    pub unsent: Vec<ContactIdEvent>,
}

impl SimPanel {
    pub fn new(account: &str, config: PanelConfig, now: DateTime<Utc>) -> Self {
        let zones = config.zones.iter().map(ZoneConfig::closed_zone).collect();
        SimPanel {
            account: account.to_string(),
            config,
            arm_state: ArmState::Disarmed,
            phase: Phase::Disarmed,
            phase_ends_at: None,
            alarms: Alarms::default(),
            trouble: vec![],
            online: true,
            zones,
            close_reported: false,
            held: vec![],
            held_until: None,
            alarm_sent_at: None,
            cancelled: false,
            duress: false,
            armed_by: None,
            reported_phase: Phase::Disarmed,
            as_of: now,
            unsent: vec![],
        }
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn view(&self, now: DateTime<Utc>) -> Panel {
        let delay_remaining_s = match (self.phase, self.phase_ends_at) {
            (Phase::ExitDelay | Phase::EntryDelay, Some(end)) => {
                let ms = (end - now).num_milliseconds().max(0);
                // Round up: "1 second left" until the delay has really ended.
                ((ms + 999) / 1000) as u32
            }
            _ => 0,
        };
        Panel {
            id: self.config.id.clone(),
            name: self.config.name.clone(),
            manufacturer: self.config.manufacturer.clone(),
            model: self.config.model.clone(),
            arm_state: self.arm_state,
            phase: self.phase,
            delay_remaining_s,
            supported_arm_states: self.config.supported_arm_states.clone(),
            exit_delay_s: self.config.exit_delay_s,
            entry_delay_s: self.config.entry_delay_s,
            alarms: self.alarms,
            trouble: self.trouble.clone(),
            online: self.online,
            zones: self.zones.clone(),
            // A connected panel reports continuously; an offline one last reported when it
            // dropped, so Alexa sees its last known state with an honest timestamp.
            as_of: if self.online { now } else { self.as_of },
            // Filled in by the cloud, which knows the household's center (the panel does not).
            monitoring: None,
        }
    }

    /// The phase the webhook last reported, if the panel has left it since; from now on the
    /// current one counts as reported.
    pub fn unreported_phase_change(&mut self) -> Option<Phase> {
        let from = std::mem::replace(&mut self.reported_phase, self.phase);
        (from != self.phase).then_some(from)
    }

    fn report_closing(&mut self, at: DateTime<Utc>, fx: &mut Effects) {
        let code = match self.arm_state {
            ArmState::ArmedAway => codes::OPEN_CLOSE_BY_USER,
            _ => codes::ARMED_STAY,
        };
        fx.signal(code, CLOSING, Some(self.armed_by.unwrap_or(0)), None);
        if let Some(s) = fx.signals.last_mut() {
            s.at = Some(at);
        }
        self.close_reported = true;
    }

    /// The siren sounds at once; the report waits for the abort window, unless the period's
    /// alarm was already reported or there is no window.
    fn start_alarm(&mut self, zone: u16, at: DateTime<Utc>, fx: &mut Effects) {
        self.phase = Phase::Alarm;
        self.phase_ends_at = None;
        if !self.alarms.burglary {
            self.alarms.burglary = true;
            fx.changed.push(Changed::BurglaryAlarm);
        }
        let report = Signal {
            code: codes::BURGLARY,
            qualifier: NEW_EVENT,
            user: None,
            zone: Some(zone),
            at: Some(at),
        };
        let window = i64::from(self.config.abort_window_s);
        if self.held_until.is_some() {
            self.held.push(report);
        } else if self.alarm_sent_at.is_some() || window == 0 {
            self.alarm_sent_at.get_or_insert(at);
            fx.signals.push(report);
        } else {
            self.held.push(report);
            self.held_until = Some(at + Duration::seconds(window));
        }
    }

    /// Sends the held burglary reports.
    fn release_held(&mut self, fx: &mut Effects) {
        self.held_until = None;
        fx.signals.append(&mut self.held);
    }

    /// Runs the timed transitions due at `now`, in the order they fell due: the end of an exit
    /// delay (armed), of an entry delay (burglary alarm), of an abort window (alarm reported).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        // Each pass ends one delay; a clock jump can cross several.
        for _ in 0..4 {
            let delay = self.phase_ends_at.filter(|end| *end <= now);
            let abort = self.held_until.filter(|end| *end <= now);
            let delay_first = match (delay, abort) {
                (Some(d), Some(a)) => d <= a,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            match (delay, abort) {
                (Some(end), _) if delay_first => match self.phase {
                    Phase::ExitDelay => {
                        self.phase = Phase::Armed;
                        self.phase_ends_at = None;
                        fx.touched = true;
                        self.report_closing(end, &mut fx);
                    }
                    Phase::EntryDelay => {
                        let zone = self
                            .zones
                            .iter()
                            .find(|z| z.entry && z.open)
                            .or_else(|| self.zones.iter().find(|z| z.entry))
                            .map_or(0, |z| z.number);
                        self.start_alarm(zone, end, &mut fx);
                    }
                    _ => self.phase_ends_at = None,
                },
                (_, Some(end)) => {
                    self.alarm_sent_at.get_or_insert(end);
                    self.release_held(&mut fx);
                }
                _ => break,
            }
        }
        fx
    }

    /// Whether an open zone matters for `mode`: in stay and night modes interior motion zones
    /// are ignored, as on real panels.
    fn guards(mode: ArmState, z: &Zone) -> bool {
        !(matches!(mode, ArmState::ArmedStay | ArmState::ArmedNight) && z.kind == ZoneKind::Motion)
    }

    pub fn arm(
        &mut self,
        mode: ArmMode,
        bypass_open_zones: bool,
        now: DateTime<Utc>,
    ) -> Result<(Vec<ZoneRef>, Effects), ArmRefusal> {
        let target = mode.state();
        if self.alarms.any() {
            return Err(ArmRefusal::AlarmActive);
        }
        if !self.trouble.is_empty() {
            return Err(ArmRefusal::Trouble {
                conditions: self.trouble.clone(),
            });
        }
        if !self.config.supported_arm_states.contains(&target) {
            return Err(ArmRefusal::UnsupportedMode);
        }
        let open: Vec<&Zone> = self
            .zones
            .iter()
            .filter(|z| z.open && !z.bypassed && Self::guards(target, z))
            .collect();
        let refs = |zs: &[&Zone]| {
            zs.iter()
                .map(|z| ZoneRef {
                    id: z.id.clone(),
                    name: z.name.clone(),
                })
                .collect::<Vec<_>>()
        };
        let stuck: Vec<&Zone> = open.iter().copied().filter(|z| !z.bypassable).collect();
        if !stuck.is_empty() {
            return Err(ArmRefusal::NotReady {
                zones: refs(&stuck),
            });
        }
        if !open.is_empty() && !bypass_open_zones {
            return Err(ArmRefusal::ZonesOpen { zones: refs(&open) });
        }
        let bypassed = refs(&open);
        let mut fx = Effects::default();
        for z in self.zones.iter_mut() {
            if bypassed.iter().any(|b| b.id == z.id) {
                z.bypassed = true;
                fx.signal(codes::ZONE_BYPASS, NEW_EVENT, None, Some(z.number));
            }
        }
        if self.arm_state != target {
            fx.changed.push(Changed::ArmState);
        }
        self.arm_state = target;
        self.armed_by = None;
        self.close_reported = false;
        // A new arming period: a new incident for abort, cancel and duress.
        self.held.clear();
        self.held_until = None;
        self.alarm_sent_at = None;
        self.cancelled = false;
        self.duress = false;
        if self.config.exit_delay_s == 0 {
            self.phase = Phase::Armed;
            self.phase_ends_at = None;
            self.report_closing(now, &mut fx);
        } else {
            self.phase = Phase::ExitDelay;
            self.phase_ends_at = Some(now + Duration::seconds(i64::from(self.config.exit_delay_s)));
        }
        Ok((bypassed, fx))
    }

    /// A duress was raised for this panel (by the cloud, on a disarm or a lockout signal).
    pub fn note_duress(&mut self, duress: bool) {
        self.duress |= duress;
    }

    /// Disarms. Inside the abort window this aborts the alarm report; a disarm after the report
    /// sends a cancel (406) only when the panel's policy lets a disarm cancel
    /// (`cancel_requires_code: false`) and the cancel window is open. Under duress the panel
    /// behaves identically to the household, but aborts nothing and transmits no cancel: a
    /// coerced disarm must not call off anything. (The duress signal itself is the cloud's,
    /// sent once per request id; see Simulator::disarm.) Fire, CO and water alarms are never
    /// cleared by a voice disarm (UL 985 practice).
    pub fn disarm(&mut self, member: Option<u16>, duress: bool, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        if self.phase == Phase::Disarmed {
            return fx;
        }
        self.note_duress(duress);
        if self.held_until.is_some() {
            if self.duress {
                self.release_held(&mut fx);
            } else {
                self.held.clear();
                self.held_until = None;
            }
        }
        if self.close_reported {
            fx.signal(
                codes::OPEN_CLOSE_BY_USER,
                NEW_EVENT,
                Some(member.unwrap_or(0)),
                None,
            );
        }
        if !self.config.cancel_requires_code {
            self.cancel_report(member.unwrap_or(0), now, &mut fx);
        }
        if self.alarms.burglary {
            self.alarms.burglary = false;
            fx.changed.push(Changed::BurglaryAlarm);
        }
        if self.arm_state != ArmState::Disarmed {
            fx.changed.push(Changed::ArmState);
        }
        self.arm_state = ArmState::Disarmed;
        self.phase = Phase::Disarmed;
        self.phase_ends_at = None;
        self.close_reported = false;
        // A bypass lasts one arming period.
        for z in self.zones.iter_mut() {
            z.bypassed = false;
        }
        fx
    }

    /// Sends the cancel for this period's alarm if one was reported, not yet cancelled, and the
    /// cancel window is open. After a duress the outcome is the same but nothing is sent.
    fn cancel_report(&mut self, user: u16, now: DateTime<Utc>, fx: &mut Effects) -> CancelOutcome {
        let Some(sent) = self.alarm_sent_at else {
            return CancelOutcome::NothingToCancel;
        };
        if self.cancelled {
            return CancelOutcome::AlreadyCancelled;
        }
        if now > sent + Duration::seconds(i64::from(self.config.cancel_window_s)) {
            return CancelOutcome::WindowClosed;
        }
        self.cancelled = true;
        if !self.duress {
            fx.signal(codes::CANCEL, NEW_EVENT, Some(user), None);
        }
        CancelOutcome::Cancelled
    }

    /// An explicit cancel by a user code (keypad or app). Entering the code also disarms a
    /// panel that is not disarmed yet, as a keypad does.
    pub fn cancel(&mut self, user: u16, now: DateTime<Utc>) -> (CancelOutcome, Effects) {
        let was_cancelled = self.cancelled;
        // Inside the abort window: what the household sees is an abort, duress or not.
        let aborting = self.held_until.is_some() && self.alarm_sent_at.is_none();
        let mut fx = self.disarm(Some(user), false, now);
        if aborting {
            return (CancelOutcome::Aborted, fx);
        }
        let outcome = match self.cancel_report(user, now, &mut fx) {
            // The disarm above already cancelled (cancel_requires_code: false).
            CancelOutcome::AlreadyCancelled if !was_cancelled => CancelOutcome::Cancelled,
            o => o,
        };
        (outcome, fx)
    }

    /// A zone opens or closes. While armed, an opening starts the entry delay (entry zones) or
    /// the alarm (others); bypassed zones and, in stay/night, interior motion are ignored.
    pub fn set_zone(&mut self, zone_id: &str, open: bool, now: DateTime<Utc>) -> Option<Effects> {
        let idx = self.zones.iter().position(|z| z.id == zone_id)?;
        let mut fx = Effects::default();
        if self.zones[idx].open == open {
            return Some(fx);
        }
        self.zones[idx].open = open;
        fx.changed.push(Changed::ZoneOpen {
            zone: zone_id.to_string(),
        });
        let z = self.zones[idx].clone();
        let armed = matches!(self.phase, Phase::Armed | Phase::EntryDelay);
        if open && armed && !z.bypassed && Self::guards(self.arm_state, &z) {
            if z.entry && self.phase == Phase::Armed {
                self.phase = Phase::EntryDelay;
                self.phase_ends_at =
                    Some(now + Duration::seconds(i64::from(self.config.entry_delay_s)));
                // Reported at once: if the panel is destroyed during the entry delay, the
                // receiver still knows an alarm was pending (crash-and-smash).
                fx.signal(codes::NEAR_ALARM, NEW_EVENT, None, Some(z.number));
            } else if !z.entry {
                self.start_alarm(z.number, now, &mut fx);
            }
        }
        Some(fx)
    }

    pub fn set_online(&mut self, online: bool, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        if self.online != online {
            if !online {
                self.as_of = now;
            }
            self.online = online;
            fx.changed.push(Changed::Connectivity);
        }
        fx
    }

    /// Raises or clears an alarm of `kind` (burglary, fire, carbon_monoxide, water).
    pub fn set_alarm(&mut self, kind: &str, active: bool, now: DateTime<Utc>) -> Option<Effects> {
        let mut fx = Effects::default();
        let (flag, change) = match kind {
            "burglary" => (&mut self.alarms.burglary, Changed::BurglaryAlarm),
            "fire" => (&mut self.alarms.fire, Changed::FireAlarm),
            "carbon_monoxide" => (
                &mut self.alarms.carbon_monoxide,
                Changed::CarbonMonoxideAlarm,
            ),
            "water" => (&mut self.alarms.water, Changed::WaterAlarm),
            _ => return None,
        };
        if *flag != active {
            *flag = active;
            fx.changed.push(change);
        }
        if active && kind == "burglary" {
            self.start_alarm(0, now, &mut fx);
        }
        Some(fx)
    }

    /// Whether the troubles changed.
    pub fn set_trouble(&mut self, condition: &str, active: bool) -> bool {
        let before = self.trouble.clone();
        self.trouble.retain(|c| c != condition);
        if active {
            self.trouble.push(condition.to_string());
        }
        self.trouble != before
    }

    pub fn add_zone(&mut self, z: ZoneConfig) -> bool {
        if self.zones.iter().any(|x| x.id == z.id) {
            return false;
        }
        self.zones.push(z.closed_zone());
        self.config.zones.push(z);
        true
    }

    pub fn remove_zone(&mut self, zone_id: &str) -> bool {
        let before = self.zones.len();
        self.zones.retain(|z| z.id != zone_id);
        self.config.zones.retain(|z| z.id != zone_id);
        before != self.zones.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(now: DateTime<Utc>) -> SimPanel {
        let cfg: PanelConfig = serde_json::from_value(serde_json::json!({
            "id": "home", "name": "Home",
            "zones": [
                {"id":"front-door","number":1,"name":"Front door","kind":"contact","entry":true},
                {"id":"back-door","number":2,"name":"Back door","kind":"contact"},
                {"id":"hallway","number":3,"name":"Hallway","kind":"motion"},
                {"id":"garage","number":4,"name":"Garage","kind":"contact","bypassable":false}
            ]
        }))
        .unwrap();
        SimPanel::new("demo", cfg, now)
    }

    fn codes_of(fx: &Effects) -> Vec<(&'static str, u8)> {
        fx.signals.iter().map(|s| (s.code, s.qualifier)).collect()
    }

    #[test]
    fn a_phase_change_is_reported_once_with_the_phase_before() {
        let t0 = Utc::now();
        let mut p = panel(t0);
        assert_eq!(p.unreported_phase_change(), None);
        p.arm(ArmMode::Away, false, t0).unwrap();
        assert_eq!(p.unreported_phase_change(), Some(Phase::Disarmed));
        assert_eq!(p.unreported_phase_change(), None);
        p.tick(t0 + Duration::seconds(60));
        assert_eq!(p.unreported_phase_change(), Some(Phase::ExitDelay));
    }

    #[test]
    fn exit_delay_then_armed_reports_closing() {
        let t0 = Utc::now();
        let mut p = panel(t0);
        let (_, fx) = p.arm(ArmMode::Away, false, t0).unwrap();
        assert!(fx.signals.is_empty());
        assert_eq!(p.view(t0).delay_remaining_s, 60);
        assert!(codes_of(&p.tick(t0 + Duration::seconds(59))).is_empty());
        assert_eq!(
            codes_of(&p.tick(t0 + Duration::seconds(60))),
            vec![("401", 3)]
        );
        assert_eq!(p.phase, Phase::Armed);
    }

    fn policy(abort: u32, cancel_requires_code: bool) -> impl Fn(DateTime<Utc>) -> SimPanel {
        move |now| {
            let mut p = panel(now);
            p.config.abort_window_s = abort;
            p.config.cancel_requires_code = cancel_requires_code;
            p
        }
    }

    /// Armed away at t0+60, front door opened at t0+61: entry delay until t0+91.
    fn intruded(make: &dyn Fn(DateTime<Utc>) -> SimPanel, t0: DateTime<Utc>) -> SimPanel {
        let mut p = make(t0);
        p.arm(ArmMode::Away, false, t0).unwrap();
        p.tick(t0 + Duration::seconds(60));
        let fx = p
            .set_zone("front-door", true, t0 + Duration::seconds(61))
            .unwrap();
        assert_eq!(
            codes_of(&fx),
            vec![("138", 1)],
            "pending alarm reported at once"
        );
        assert_eq!(p.phase, Phase::EntryDelay);
        p
    }

    #[test]
    fn without_abort_window_the_alarm_is_reported_when_the_entry_delay_ends() {
        let t0 = Utc::now();
        let mut p = intruded(&policy(0, true), t0);
        let fx = p.tick(t0 + Duration::seconds(91));
        assert_eq!(codes_of(&fx), vec![("130", 1)]);
        assert_eq!(fx.signals[0].at, Some(t0 + Duration::seconds(91)));
        assert!(p.alarms.burglary);
    }

    #[test]
    fn the_abort_window_holds_the_report_and_a_disarm_inside_it_aborts_unless_duress() {
        for duress in [false, true] {
            let t0 = Utc::now();
            let mut p = intruded(&policy(30, true), t0);
            let fx = p.tick(t0 + Duration::seconds(91));
            assert!(codes_of(&fx).is_empty(), "held by the abort window");
            assert!(p.alarms.burglary, "the siren sounds at once");
            let fx = p.disarm(Some(1), duress, t0 + Duration::seconds(100));
            let expected = if duress {
                vec![("130", 1), ("401", 1)]
            } else {
                vec![("401", 1)]
            };
            assert_eq!(codes_of(&fx), expected, "duress={duress}");
            assert!(codes_of(&p.tick(t0 + Duration::seconds(200))).is_empty());
            // What the household sees is the same either way: nothing was reported.
            let (outcome, _) = p.cancel(1, t0 + Duration::seconds(110));
            assert_eq!(outcome, CancelOutcome::NothingToCancel, "duress={duress}");
        }
    }

    #[test]
    fn one_clock_jump_crosses_entry_delay_and_abort_window_in_order() {
        let t0 = Utc::now();
        let mut p = intruded(&policy(30, true), t0);
        let fx = p.tick(t0 + Duration::seconds(500));
        assert_eq!(codes_of(&fx), vec![("130", 1)]);
        // Stamped with when it happened: the entry delay's end.
        assert_eq!(fx.signals[0].at, Some(t0 + Duration::seconds(91)));
        assert_eq!(p.alarm_sent_at, Some(t0 + Duration::seconds(121)));
    }

    #[test]
    fn cancel_requires_code_a_disarm_after_the_report_sends_no_406() {
        for duress in [false, true] {
            let t0 = Utc::now();
            let mut p = intruded(&policy(0, true), t0);
            p.tick(t0 + Duration::seconds(91));
            let fx = p.disarm(Some(1), duress, t0 + Duration::seconds(95));
            assert_eq!(codes_of(&fx), vec![("401", 1)], "duress={duress}");
            let (outcome, fx) = p.cancel(1, t0 + Duration::seconds(120));
            assert_eq!(outcome, CancelOutcome::Cancelled, "duress={duress}");
            let sent = if duress { vec![] } else { vec![("406", 1)] };
            assert_eq!(codes_of(&fx), sent, "a cancel after a duress is never sent");
            let (again, fx) = p.cancel(1, t0 + Duration::seconds(130));
            assert_eq!(again, CancelOutcome::AlreadyCancelled);
            assert!(fx.signals.is_empty());
        }
    }

    #[test]
    fn a_disarm_cancels_only_when_the_policy_allows_and_never_under_duress() {
        for duress in [false, true] {
            let t0 = Utc::now();
            let mut p = intruded(&policy(0, false), t0);
            p.tick(t0 + Duration::seconds(91));
            let fx = p.disarm(Some(1), duress, t0 + Duration::seconds(95));
            let expected = if duress {
                vec![("401", 1)]
            } else {
                vec![("401", 1), ("406", 1)]
            };
            assert_eq!(codes_of(&fx), expected, "duress={duress}");
        }
    }

    #[test]
    fn the_cancel_window_closes() {
        for cancel_requires_code in [true, false] {
            let t0 = Utc::now();
            let mut p = intruded(&policy(0, cancel_requires_code), t0);
            p.tick(t0 + Duration::seconds(91));
            let late = t0 + Duration::seconds(91 + 301);
            let fx = p.disarm(Some(1), false, late);
            assert_eq!(codes_of(&fx), vec![("401", 1)]);
            let (outcome, fx) = p.cancel(1, late);
            assert_eq!(outcome, CancelOutcome::WindowClosed);
            assert!(fx.signals.is_empty());
        }
    }

    #[test]
    fn a_cancel_by_code_during_the_alarm_disarms_and_cancels() {
        let t0 = Utc::now();
        let mut p = intruded(&policy(0, true), t0);
        p.tick(t0 + Duration::seconds(91));
        let (outcome, fx) = p.cancel(2, t0 + Duration::seconds(100));
        assert_eq!(outcome, CancelOutcome::Cancelled);
        assert_eq!(codes_of(&fx), vec![("401", 1), ("406", 1)]);
        assert_eq!(fx.signals[1].user, Some(2));
        assert_eq!(p.phase, Phase::Disarmed);
        // Inside the abort window the same cancel is an abort: nothing is reported.
        let mut p = intruded(&policy(30, true), t0);
        p.tick(t0 + Duration::seconds(91));
        let (outcome, fx) = p.cancel(2, t0 + Duration::seconds(100));
        assert_eq!(outcome, CancelOutcome::Aborted);
        assert_eq!(codes_of(&fx), vec![("401", 1)]);
    }

    #[test]
    fn open_zones_need_bypass_and_unbypassable_ones_block() {
        let t0 = Utc::now();
        let mut p = panel(t0);
        p.set_zone("back-door", true, t0);
        assert!(matches!(
            p.arm(ArmMode::Away, false, t0),
            Err(ArmRefusal::ZonesOpen { .. })
        ));
        let (bypassed, fx) = p.arm(ArmMode::Away, true, t0).unwrap();
        assert_eq!(bypassed[0].id, "back-door");
        assert_eq!(codes_of(&fx), vec![("570", 1)]);
        p.disarm(Some(1), false, t0);
        p.set_zone("garage", true, t0);
        assert!(matches!(
            p.arm(ArmMode::Stay, true, t0),
            Err(ArmRefusal::NotReady { .. })
        ));
    }

    #[test]
    fn stay_ignores_interior_motion_and_fire_survives_voice_disarm() {
        let t0 = Utc::now();
        let mut p = panel(t0);
        p.set_zone("hallway", true, t0);
        assert!(p.arm(ArmMode::Stay, false, t0).is_ok());
        p.set_alarm("fire", true, t0).unwrap();
        p.disarm(Some(1), false, t0);
        assert!(p.alarms.fire);
        assert!(matches!(
            p.arm(ArmMode::Stay, false, t0),
            Err(ArmRefusal::AlarmActive)
        ));
    }
}
