//! What the control route and the tests do to the simulated world: sensors, troubles, alarms,
//! keypad actions and cancels, zones and panels added or removed.

use super::*;

impl Simulator {
    pub(super) fn control(
        &self,
        panel: &str,
        source: Source,
        f: impl FnOnce(&mut SimPanel, DateTime<Utc>) -> Result<Effects, SimError>,
    ) -> Result<Panel, SimError> {
        let mut st = self.lock();
        self.tick_locked(&mut st);
        let now = self.clock.now();
        let i = Self::find(&st, None, panel).ok_or_else(|| SimError::NoPanel(panel.to_string()))?;
        let fx = f(&mut st.panels[i], now)?;
        self.apply(&mut st, i, fx, source, now);
        Ok(st.panels[i].view(now))
    }

    pub fn set_zone(&self, panel: &str, zone: &str, open: bool) -> Result<Panel, SimError> {
        self.control(panel, Source::Sensor, |p, now| {
            p.set_zone(zone, open, now)
                .ok_or_else(|| SimError::NoZone(zone.to_string()))
        })
    }

    pub fn set_online(&self, panel: &str, online: bool) -> Result<Panel, SimError> {
        self.control(
            panel,
            Source::System,
            |p, now| Ok(p.set_online(online, now)),
        )
    }

    pub fn set_alarm(&self, panel: &str, kind: &str, active: bool) -> Result<Panel, SimError> {
        self.control(panel, Source::Sensor, |p, now| {
            p.set_alarm(kind, active, now)
                .ok_or_else(|| SimError::NoAlarmKind(kind.to_string()))
        })
    }

    pub fn set_trouble(
        &self,
        panel: &str,
        condition: &str,
        active: bool,
    ) -> Result<Panel, SimError> {
        self.control(panel, Source::System, |p, _| {
            Ok(Effects {
                touched: p.set_trouble(condition, active),
                ..Effects::default()
            })
        })
    }

    /// A keypad or app action by a panel user: source keypad/app, as the webhook reports it.
    pub fn local_action(
        &self,
        panel: &str,
        action: crate::domain::ports::panel::ArmState,
        user: Option<u16>,
        source: Source,
    ) -> Result<Panel, SimError> {
        self.control(panel, source, |p, now| match action.mode() {
            Some(mode) => p
                .arm(mode, false, now)
                .map(|(_, fx)| fx)
                .map_err(|_| SimError::Refused),
            None if p.online => Ok(p.disarm(user, false, now)),
            None => Err(SimError::Offline),
        })
    }

    /// An explicit cancel of a reported alarm by a user code, at the keypad or in the app
    /// (`source`). It also disarms a panel that is not disarmed yet. The reply and the
    /// household's notification are the same whether or not a duress was raised; only whether
    /// a 406 reaches the monitoring center differs.
    pub fn cancel(&self, panel: &str, user: u16, source: Source) -> Result<Cancelled, SimError> {
        let mut st = self.lock();
        self.tick_locked(&mut st);
        let now = self.clock.now();
        let i = Self::find(&st, None, panel).ok_or_else(|| SimError::NoPanel(panel.to_string()))?;
        let account = st.panels[i].account.clone();
        let known = st
            .users
            .get(&account)
            .is_some_and(|us| us.iter().any(|u| u.number == user));
        if !known {
            return Err(SimError::NoUser(user));
        }
        if !st.panels[i].online {
            return Err(SimError::Offline);
        }
        let (outcome, fx) = st.panels[i].cancel(user, now);
        self.apply(&mut st, i, fx, source, now);
        let view = st.panels[i].view(now);
        match outcome {
            CancelOutcome::NothingToCancel => return Err(SimError::NothingToCancel),
            CancelOutcome::WindowClosed => return Err(SimError::CancelWindowClosed),
            CancelOutcome::Cancelled | CancelOutcome::Aborted | CancelOutcome::AlreadyCancelled => {
            }
        }
        let who = Self::user_name(&st, &account, Some(user));
        Self::notify_household(
            &mut st,
            &account,
            "alarm_cancelled",
            format!(
                "{} alarm cancelled by {who} ({})",
                view.name,
                source_label(source)
            ),
            now,
        );
        Ok(Cancelled {
            outcome,
            panel: view,
        })
    }

    pub fn add_zone(&self, panel: &str, zone: ZoneConfig) -> Result<Panel, SimError> {
        let mut st = self.lock();
        let now = self.clock.now();
        let i = Self::find(&st, None, panel).ok_or_else(|| SimError::NoPanel(panel.to_string()))?;
        let zone_id = zone.id.clone();
        if !st.panels[i].add_zone(zone) {
            return Err(SimError::ZoneExists(zone_id));
        }
        let view = st.panels[i].view(now);
        self.emit_app(
            st.panels[i].account.clone(),
            now,
            EventKind::ZoneAdded {
                panel: view.clone(),
                zone_id,
            },
        );
        Ok(view)
    }

    /// The panel leaves its account (service cancelled, panel moved to another account): from
    /// now on the contract answers `panel_not_found` for it.
    pub fn remove_panel(&self, panel: &str) -> Result<(), SimError> {
        let mut st = self.lock();
        let i = Self::find(&st, None, panel).ok_or_else(|| SimError::NoPanel(panel.to_string()))?;
        st.panels.remove(i);
        Ok(())
    }

    pub fn remove_zone(&self, panel: &str, zone: &str) -> Result<Panel, SimError> {
        let mut st = self.lock();
        let now = self.clock.now();
        let i = Self::find(&st, None, panel).ok_or_else(|| SimError::NoPanel(panel.to_string()))?;
        if !st.panels[i].remove_zone(zone) {
            return Err(SimError::NoZone(zone.to_string()));
        }
        self.emit_app(
            st.panels[i].account.clone(),
            now,
            EventKind::ZoneRemoved {
                panel_id: panel.to_string(),
                zone_id: zone.to_string(),
            },
        );
        Ok(st.panels[i].view(now))
    }
}
