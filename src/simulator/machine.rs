//! One simulated panel: arm state, exit and entry delays, alarms, bypass, trouble and
//! connectivity. Pure state transitions; every method takes the current time and returns what
//! the panel reported (Contact ID events) and which Alexa-visible properties changed.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::monitoring::{CLOSING, ContactIdEvent, NEW_EVENT, codes};
use crate::panel::{Alarms, ArmMode, ArmRefusal, ArmState, Panel, Phase, Zone, ZoneKind, ZoneRef};
use crate::webhook::Changed;

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
fn default_modes() -> Vec<ArmState> {
    vec![
        ArmState::ArmedAway,
        ArmState::ArmedStay,
        ArmState::ArmedNight,
    ]
}

/// What an operation caused: signals to the monitoring center and changes Alexa can see.
#[derive(Debug, Default)]
pub struct Effects {
    pub signals: Vec<(&'static str, u8, Option<u16>, Option<u16>)>,
    pub changed: Vec<Changed>,
}

impl Effects {
    fn signal(&mut self, code: &'static str, qualifier: u8, user: Option<u16>, zone: Option<u16>) {
        self.signals.push((code, qualifier, user, zone));
    }

    pub fn events(&self, account: &str, panel: &str, at: DateTime<Utc>) -> Vec<ContactIdEvent> {
        self.signals
            .iter()
            .map(|&(code, qualifier, user, zone)| ContactIdEvent {
                account: account.to_string(),
                panel: panel.to_string(),
                code,
                qualifier,
                partition: 1,
                user,
                zone,
                at,
            })
            .collect()
    }
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
    /// A burglary (130) was reported: a disarm must send a cancel (406), unless under duress.
    alarm_reported: bool,
    armed_by: Option<u16>,
    pub as_of: DateTime<Utc>,
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
            alarm_reported: false,
            armed_by: None,
            as_of: now,
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
        }
    }

    fn report_closing(&mut self, fx: &mut Effects) {
        let code = match self.arm_state {
            ArmState::ArmedAway => codes::OPEN_CLOSE_BY_USER,
            _ => codes::ARMED_STAY,
        };
        fx.signal(code, CLOSING, Some(self.armed_by.unwrap_or(0)), None);
        self.close_reported = true;
    }

    fn start_alarm(&mut self, zone: u16, fx: &mut Effects) {
        self.phase = Phase::Alarm;
        self.phase_ends_at = None;
        if !self.alarms.burglary {
            self.alarms.burglary = true;
            fx.changed.push(Changed::BurglaryAlarm);
        }
        fx.signal(codes::BURGLARY, NEW_EVENT, None, Some(zone));
        self.alarm_reported = true;
    }

    /// Runs the timed transitions due at `now`: the end of an exit delay (armed) or of an entry
    /// delay (burglary alarm).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        if let Some(end) = self.phase_ends_at
            && now >= end
        {
            match self.phase {
                Phase::ExitDelay => {
                    self.phase = Phase::Armed;
                    self.phase_ends_at = None;
                    self.report_closing(&mut fx);
                }
                Phase::EntryDelay => {
                    let zone = self
                        .zones
                        .iter()
                        .find(|z| z.entry && z.open)
                        .or_else(|| self.zones.iter().find(|z| z.entry))
                        .map_or(0, |z| z.number);
                    self.start_alarm(zone, &mut fx);
                }
                _ => self.phase_ends_at = None,
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
        if self.config.exit_delay_s == 0 {
            self.phase = Phase::Armed;
            self.phase_ends_at = None;
            self.report_closing(&mut fx);
        } else {
            self.phase = Phase::ExitDelay;
            self.phase_ends_at = Some(now + Duration::seconds(i64::from(self.config.exit_delay_s)));
        }
        Ok((bypassed, fx))
    }

    /// Disarms. Under duress the panel behaves identically except that it sends no cancel: a
    /// coerced disarm must not call off the dispatch for an alarm. (The duress signal itself is
    /// the cloud's, sent once per request id; see Simulator::disarm.) Fire, CO and water alarms
    /// are never cleared by a voice disarm (UL 985 practice).
    pub fn disarm(&mut self, member: Option<u16>, duress: bool) -> Effects {
        let mut fx = Effects::default();
        if self.phase == Phase::Disarmed {
            return fx;
        }
        if self.close_reported {
            fx.signal(
                codes::OPEN_CLOSE_BY_USER,
                NEW_EVENT,
                Some(member.unwrap_or(0)),
                None,
            );
        }
        if self.alarm_reported && !duress {
            fx.signal(codes::CANCEL, NEW_EVENT, Some(member.unwrap_or(0)), None);
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
        self.alarm_reported = false;
        // A bypass lasts one arming period.
        for z in self.zones.iter_mut() {
            z.bypassed = false;
        }
        fx
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
            } else if !z.entry {
                self.start_alarm(z.number, &mut fx);
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
    pub fn set_alarm(&mut self, kind: &str, active: bool) -> Option<Effects> {
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
            self.phase = Phase::Alarm;
            self.phase_ends_at = None;
            fx.signal(codes::BURGLARY, NEW_EVENT, None, Some(0));
            self.alarm_reported = true;
        }
        Some(fx)
    }

    pub fn set_trouble(&mut self, condition: &str, active: bool) {
        self.trouble.retain(|c| c != condition);
        if active {
            self.trouble.push(condition.to_string());
        }
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
        fx.signals.iter().map(|s| (s.0, s.1)).collect()
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

    #[test]
    fn entry_delay_expires_into_burglary_and_disarm_cancels_unless_duress() {
        for duress in [false, true] {
            let t0 = Utc::now();
            let mut p = panel(t0);
            p.arm(ArmMode::Away, false, t0).unwrap();
            p.tick(t0 + Duration::seconds(60));
            p.set_zone("front-door", true, t0 + Duration::seconds(61))
                .unwrap();
            assert_eq!(p.phase, Phase::EntryDelay);
            let fx = p.tick(t0 + Duration::seconds(91));
            assert_eq!(codes_of(&fx), vec![("130", 1)]);
            assert!(p.alarms.burglary);
            let fx = p.disarm(Some(1), duress);
            let expected = if duress {
                vec![("401", 1)]
            } else {
                vec![("401", 1), ("406", 1)]
            };
            assert_eq!(codes_of(&fx), expected, "duress={duress}");
            assert!(!p.alarms.burglary);
        }
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
        p.disarm(Some(1), false);
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
        p.set_alarm("fire", true).unwrap();
        p.disarm(Some(1), false);
        assert!(p.alarms.fire);
        assert!(matches!(
            p.arm(ArmMode::Stay, false, t0),
            Err(ArmRefusal::AlarmActive)
        ));
    }
}
