//! The reference panel cloud (alarm-skill local stack only): implements the panel API contract
//! (docs/panel-api.md) over simulated panels, and reports to a monitoring center.
//!
//! - In-process it implements [`PanelCloud`] directly (benchmarks); over HTTP it serves the same
//!   contract ([`http::panel_api_routes`]) for the skill's real HTTP client.
//! - Every state change goes to the skill's webhook, signed, like a vendor cloud would send it.
//! - Every Contact ID event goes to the monitoring center ([`monitoring`]): over SIA DC-09
//!   ([`crate::adapters::dc09`]) when a link is set up (the local stack), else handed over in-process.
//! - Time comes from an [`AdjustableClock`], so tests jump over exit and entry delays.

pub mod defects;
pub mod http;
pub mod machine;
pub mod monitoring;

mod cloud;
mod controls;
mod settings;
mod users;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::adapters::dc09::transmitter::{DecisionKind, Transmitter};
use crate::common::clock::{AdjustableClock, Clock};
use crate::common::deadline::Deadline;
use crate::common::secret::Secret;
use crate::domain::ports::panel::{
    ArmOutcome, ArmRequest, DisarmRequest, Notice, Panel, PanelCloud, PanelError, PanelUser,
    SignalRequest, Source, UserList,
};
use crate::edges::webhook::{Changed, EventKind, PanelEvent};
use crate::wire::dc09::frame::Cid;
use defects::Defects;
use machine::{CancelOutcome, Effects, PanelConfig, SimPanel, ZoneConfig};
use monitoring::{
    ContactIdEvent, Dispatch, MonitoringCenter, NEW_EVENT, ReceivedEvent, SecondPath, Subscriber,
    codes,
};

/// Crash point: `signals` decided durably, not yet acknowledged.
pub use crate::common::crash::SIM_SIGNAL_DECIDED as SIGNAL_DECIDED;
pub use settings::{AccountConfig, Fault, FaultMode, Notification, RequestRecord, UserConfig};

/// How far ahead of the cloud's clock a request's `occurred_at` may be: skills' clocks drift a
/// little, and one further off is broken, not late.
pub const OCCURRED_AT_AHEAD: chrono::Duration = chrono::Duration::minutes(1);

#[derive(Debug, Clone)]
enum Completed {
    Arm(ArmOutcome),
    Disarm(Panel),
}

#[derive(Default)]
struct State {
    panels: Vec<SimPanel>,
    users: HashMap<String, Vec<UserConfig>>,
    /// Each account's user-list revision: the cloud's own sequence, one up per change.
    users_revision: HashMap<String, u64>,
    notifications: Vec<Notification>,
    requests: Vec<RequestRecord>,
    completed: HashMap<String, Completed>,
    /// Without a DC-09 link only: request ids whose duress question is settled. With a link the
    /// link's journal holds them ([`Transmitter::handled`]), written with the 121 itself.
    signalled: HashSet<String>,
}

pub struct Simulator {
    state: Mutex<State>,
    clock: Arc<AdjustableClock>,
    api_key: Secret,
    fault: Mutex<Fault>,
    webhook: Option<mpsc::UnboundedSender<PanelEvent>>,
    center: Arc<MonitoringCenter>,
    /// The DC-09 link to `center`'s receiver; without it events are handed over in-process.
    link: Option<Transmitter>,
    /// What this cloud reports as each panel's monitoring details, for the skill's second path.
    second_path: Option<SecondPath>,
    /// In-process only: events not yet handed to `center`. A disarm only pushes here, so a
    /// duress costs the same as before a link existed (one push), off the reply's path.
    inbox: Mutex<Vec<ContactIdEvent>>,
    /// Test mode: further webhook receivers per account (`PUT /v1/test/accounts/{a}/webhook`).
    test_hooks: Mutex<HashMap<String, mpsc::UnboundedSender<PanelEvent>>>,
    defects: Mutex<Defects>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("no panel {0}")]
    NoPanel(String),
    #[error("no zone {0}")]
    NoZone(String),
    #[error("unknown alarm kind {0}")]
    NoAlarmKind(String),
    #[error("zone {0} already exists")]
    ZoneExists(String),
    #[error("panel is offline")]
    Offline,
    #[error("arming refused")]
    Refused,
    #[error("no user {0} on this panel's account")]
    NoUser(u16),
    #[error("no alarm was reported in this arming period")]
    NothingToCancel,
    #[error("the cancel window has closed")]
    CancelWindowClosed,
}

/// The reply to an explicit cancel.
#[derive(Debug, Clone, Serialize)]
pub struct Cancelled {
    pub outcome: CancelOutcome,
    pub panel: Panel,
}

/// The DC-09 account number of each configured panel, in order: its own, or 1001, 1002, ...
pub fn subscribers(accounts: &[AccountConfig]) -> Vec<Subscriber> {
    let mut n = 0x1000u32;
    let mut out = vec![];
    for a in accounts {
        for p in &a.panels {
            n += 1;
            let given = p.monitoring_account.as_deref().map(str::to_uppercase);
            let monitoring_account = match given {
                Some(acct) if crate::wire::dc09::frame::valid_account(&acct) => acct,
                Some(bad) => {
                    tracing::warn!(panel = %p.id, account = %bad, "monitoring_account must be 3-16 hex digits; using a default");
                    format!("{n:04X}")
                }
                None => format!("{n:04X}"),
            };
            out.push(Subscriber {
                monitoring_account,
                account: a.id.clone(),
                panel: p.id.clone(),
                entry_delay_s: p.entry_delay_s,
                abort_window_s: p.abort_window_s,
                supervision_grace_s: p.supervision_grace_s,
            });
        }
    }
    out
}

/// A fresh, opaque panel user id, as a vendor's cloud would mint one.
fn new_user_id() -> String {
    format!("u-{}", uuid::Uuid::new_v4().simple())
}

impl Simulator {
    pub fn new(accounts: &[AccountConfig], clock: Arc<AdjustableClock>, api_key: Secret) -> Self {
        let now = clock.now();
        let mut state = State::default();
        let numbers = subscribers(accounts);
        for a in accounts {
            let users = a
                .users
                .iter()
                .map(|u| UserConfig {
                    id: Some(u.id.clone().unwrap_or_else(new_user_id)),
                    ..u.clone()
                })
                .collect();
            state.users.insert(a.id.clone(), users);
            state.users_revision.insert(a.id.clone(), 1);
            for p in &a.panels {
                let mut p = p.clone();
                // Resolved once, so reporting never has to look it up.
                p.monitoring_account = numbers
                    .iter()
                    .find(|s| s.account == a.id && s.panel == p.id)
                    .map(|s| s.monitoring_account.clone());
                state.panels.push(SimPanel::new(&a.id, p, now));
            }
        }
        let center = Arc::new(MonitoringCenter::new(
            subscribers(accounts),
            None,
            clock.clone(),
        ));
        Simulator {
            state: Mutex::new(state),
            clock,
            api_key,
            fault: Mutex::new(Fault::default()),
            webhook: None,
            center,
            link: None,
            second_path: None,
            inbox: Mutex::new(vec![]),
            test_hooks: Mutex::new(HashMap::new()),
            defects: Mutex::new(Defects::default()),
        }
    }

    /// Reports to `center` over `link` (SIA DC-09) instead of in-process. `center` must know
    /// the same panels ([`subscribers`]).
    pub fn with_monitoring(mut self, center: Arc<MonitoringCenter>, link: Transmitter) -> Self {
        self.center = center;
        self.link = Some(link);
        self
    }

    /// Reports `second_path` as the monitoring details of every panel `center` monitors.
    pub fn with_second_path(mut self, second_path: Option<SecondPath>) -> Self {
        self.second_path = second_path;
        self
    }

    pub fn second_path(&self) -> Option<&SecondPath> {
        self.second_path.as_ref()
    }

    /// A panel as the API reports it: its view, with its monitoring link when the cloud knows
    /// the household's center (the second path) and the panel's DC-09 account.
    fn reported(&self, p: &SimPanel, now: DateTime<Utc>) -> Panel {
        let mut view = p.view(now);
        view.monitoring = self.second_path.as_ref().and_then(|second| {
            let account = p.config.monitoring_account.as_deref()?;
            Some(second.link(account))
        });
        view
    }

    pub fn center(&self) -> &Arc<MonitoringCenter> {
        &self.center
    }

    pub fn link(&self) -> Option<&Transmitter> {
        self.link.as_ref()
    }

    /// Sends every state change to `url`, signed with `secret`, in order. Needs a Tokio runtime.
    pub fn with_webhook(mut self, url: String, secret: Secret, http: reqwest::Client) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(http::webhook_sender(
            rx,
            url,
            secret,
            http,
            self.clock.clone(),
        ));
        self.webhook = Some(tx);
        self
    }

    pub fn api_key(&self) -> &Secret {
        &self.api_key
    }

    pub fn clock(&self) -> &AdjustableClock {
        &self.clock
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }

    /// The contract violations switched on (conformance kit tests); none by default.
    pub fn defects(&self) -> Defects {
        *self.defects.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_defects(&self, d: Defects) {
        *self.defects.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    /// The attempt's time of occurrence: when the skill says the code was spoken, or, from a
    /// skill that predates `occurred_at`, when the request came.
    fn occurred(&self, given: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
        match given {
            Some(at) if !self.defects().stale_occurrence => at,
            _ => now,
        }
    }

    /// Whether the cloud takes `occurred_at` (docs/panel-api.md, the `disarm` route): not more
    /// than [`OCCURRED_AT_AHEAD`] ahead of its clock (a skill's clock that far off is broken).
    /// However old, it is taken: a duress re-sent after a long outage must still raise its 121,
    /// and the cloud remembers a handled request id from when the request came, not from when
    /// the code was spoken.
    pub fn occurred_at_in_bounds(&self, at: DateTime<Utc>) -> bool {
        at <= self.clock.now() + OCCURRED_AT_AHEAD
    }

    /// The account a request is scoped to (none under [`Defects::ignore_account`]).
    fn scope<'a>(&self, account: &'a str) -> Option<&'a str> {
        (!self.defects().ignore_account).then_some(account)
    }

    /// Test mode: also sends the account's events to `url`, signed with `secret`, as the
    /// conformance kit's receiver. Needs a Tokio runtime.
    pub fn set_test_webhook(&self, account: &str, url: String, secret: Secret) {
        let secret = if self.defects().bad_signatures {
            Secret::new(format!("{}-wrong", secret.expose()))
        } else {
            secret
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(http::webhook_sender(
            rx,
            url,
            secret,
            reqwest::Client::new(),
            self.clock.clone(),
        ));
        self.test_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account.to_string(), tx);
    }

    pub fn clear_test_webhook(&self, account: &str) {
        self.test_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account);
    }

    /// Runs due timed transitions on every panel. Called before every operation, and
    /// periodically by the local stack so entry-delay alarms fire on time.
    pub fn tick(&self) {
        let mut st = self.lock();
        self.tick_locked(&mut st);
    }

    fn tick_locked(&self, st: &mut State) {
        let now = self.clock.now();
        for i in 0..st.panels.len() {
            let fx = st.panels[i].tick(now);
            self.apply(st, i, fx, Source::Sensor, now);
        }
        // The receiver's supervision timers run only once no frame is on its way: a jump of the
        // simulated clock must not overtake a report the panel already made.
        self.deliver_inbox();
        if self.link.as_ref().is_none_or(|l| l.queued() == 0) {
            self.center.tick();
        }
    }

    fn deliver_inbox(&self) {
        let events = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        for e in events {
            self.center.accept(e);
        }
    }

    /// Hands one event of panel `idx` to the monitoring center: queued on the DC-09 link
    /// (durably, when the link has a queue directory), or for the in-process center.
    /// Err: the event is not queued.
    fn transmit(
        &self,
        st: &State,
        idx: usize,
        event: ContactIdEvent,
    ) -> Result<(), crate::adapters::dc09::transmitter::QueueError> {
        let Some(link) = &self.link else {
            self.inbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(event);
            return Ok(());
        };
        let Some(acct) = st.panels[idx].config.monitoring_account.as_deref() else {
            tracing::error!(panel = %event.panel, "no monitoring account for panel; event not sent");
            return Ok(());
        };
        link.send(acct, contact_id(&event), event.at)
    }

    /// Sends a panel report; one that cannot be queued is logged (the panel's own reports have
    /// no caller to refuse).
    fn report(&self, st: &State, idx: usize, event: ContactIdEvent) {
        if let Err(e) = self.transmit(st, idx, event) {
            tracing::error!(error = %e, "panel report not queued for the monitoring center");
        }
    }

    /// Waits (at most `limit`) until the monitoring center has every event sent so far, then
    /// runs its timers. True if nothing is left on the link.
    pub async fn settle_monitoring(&self, limit: std::time::Duration) -> bool {
        self.deliver_inbox();
        let settled = match &self.link {
            Some(link) => link.settle(limit).await,
            None => true,
        };
        if settled {
            self.center.tick();
        }
        settled
    }

    /// Raises the duress signal for a request id at most once. A real cloud must not take
    /// longer for a duress than for a normal disarm (docs/panel-api.md), so the reference one
    /// does the same work either way: one event built and one record of the request id (on a
    /// durable link, one journal record written and synced); only whether the event reaches the
    /// monitoring receiver differs. On a link the 121 and its request id are that one record,
    /// so a crash of the whole cloud at any point leaves both or neither, and a request id sent
    /// again after a restart (the skill's worker is at-least-once) finds its decision made.
    /// Err: the decision could not be made durable; nothing is settled, and the caller must
    /// not acknowledge (the same request id is decided again when it comes back).
    /// The request's `occurred_at` (when the code was spoken) is the 121's time of occurrence:
    /// a center merging the skill's own copy of the duress with this one needs both to carry
    /// the same time.
    fn decide_duress(
        &self,
        st: &mut State,
        idx: usize,
        req: &DisarmRequest,
    ) -> Result<(), PanelError> {
        let (member, duress, request_id) = (req.member, req.duress(), req.request_id.as_str());
        let occurred = self.occurred(req.occurred_at, self.clock.now());
        // Every request id whose duress question is settled, duress or not, is recorded: a
        // request id is one attempt, of one kind, for the link's window
        // (crate::adapters::dc09::transmitter::HANDLED_WINDOW_DAYS, from when the request came).
        let seen = match &self.link {
            Some(link) => link.handled(request_id),
            None => st.signalled.contains(request_id),
        };
        let first = !seen || self.defects().duress_every_time;
        let event = ContactIdEvent {
            account: st.panels[idx].account.clone(),
            panel: st.panels[idx].id().to_string(),
            code: codes::DURESS.to_string(),
            qualifier: NEW_EVENT,
            partition: 1,
            user: Some(member.unwrap_or(0)),
            zone: None,
            at: occurred,
        };
        if first {
            let decided = match &self.link {
                Some(link) => {
                    // One record either way, of one length, synced: the kind is inside it.
                    let acct = st.panels[idx].config.monitoring_account.as_deref();
                    if duress && acct.is_none() {
                        tracing::error!(panel = %event.panel, "no monitoring account for panel; 121 not sent");
                    }
                    let kind = match (duress, acct) {
                        (true, Some(_)) => DecisionKind::Duress,
                        _ => DecisionKind::Normal,
                    };
                    link.decide(
                        request_id,
                        acct.unwrap_or(""),
                        contact_id(&event),
                        event.at,
                        kind,
                    )
                }
                None if duress => self.transmit(st, idx, event),
                None => Ok(()),
            };
            let extra = self.defects().duress_extra_syncs;
            let decided = decided.and_then(|()| match &self.link {
                Some(link) if duress => (0..extra).try_for_each(|_| link.extra_sync()),
                _ => Ok(()),
            });
            if let Err(e) = decided {
                tracing::error!(error = %e, "duress decision not durable; not acknowledged");
                return Err(PanelError::Server(503));
            }
            if self.link.is_none() {
                st.signalled.insert(request_id.to_string());
            }
        }
        // After a duress the panel aborts nothing and transmits no cancel.
        st.panels[idx].note_duress(duress);
        Ok(())
    }

    /// Sends the panel's reports to the monitoring center (held by the panel while it is
    /// offline) and its changes to the webhook.
    fn apply(
        &self,
        st: &mut State,
        idx: usize,
        mut fx: Effects,
        source: Source,
        now: DateTime<Utc>,
    ) {
        let p = &mut st.panels[idx];
        if let Some(from) = p.unreported_phase_change() {
            fx.changed.push(Changed::Phase { from });
        }
        let account = p.account.clone();
        let mut events = fx.events(&account, p.id(), now);
        if p.online {
            let mut all = std::mem::take(&mut p.unsent);
            all.append(&mut events);
            for e in all {
                self.report(st, idx, e);
            }
        } else {
            p.unsent.append(&mut events);
        }
        let p = &st.panels[idx];
        if !fx.changed.is_empty() || fx.touched {
            self.emit(PanelEvent {
                event_id: uuid::Uuid::new_v4().to_string(),
                account,
                occurred_at: now,
                source,
                kind: EventKind::PanelChanged {
                    panel: p.view(now),
                    changed: fx.changed,
                },
            });
        }
    }

    /// Emits a change made through the cloud's app (or its API), not at the panel.
    fn emit_app(&self, account: String, occurred_at: DateTime<Utc>, kind: EventKind) {
        self.emit(PanelEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            account,
            occurred_at,
            source: Source::App,
            kind,
        });
    }

    fn emit(&self, mut event: PanelEvent) {
        if self.defects().reused_event_ids {
            event.event_id = defects::REUSED_EVENT_ID.to_string();
        }
        if let Some(tx) = self
            .test_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&event.account)
        {
            let _ = tx.send(event.clone());
        }
        if let Some(tx) = &self.webhook
            && tx.send(event).is_err()
        {
            tracing::warn!("simulator webhook sender stopped; event dropped");
        }
    }

    fn find(st: &State, account: Option<&str>, panel: &str) -> Option<usize> {
        st.panels
            .iter()
            .position(|p| p.id() == panel && account.is_none_or(|a| p.account == a))
    }

    fn log(
        st: &mut State,
        op: &'static str,
        account: &str,
        panel: Option<&str>,
        now: DateTime<Utc>,
    ) {
        st.requests.push(RequestRecord {
            op,
            account: account.to_string(),
            panel: panel.map(str::to_string),
            at: now,
        });
    }

    fn user_name(st: &State, account: &str, number: Option<u16>) -> String {
        number
            .and_then(|n| {
                st.users
                    .get(account)?
                    .iter()
                    .find(|u| u.number == n)
                    .map(|u| u.name.clone())
            })
            .unwrap_or_else(|| "Someone".to_string())
    }

    fn notify_household(
        st: &mut State,
        account: &str,
        kind: &str,
        message: String,
        now: DateTime<Utc>,
    ) {
        st.notifications.push(Notification {
            account: account.to_string(),
            kind: kind.to_string(),
            message,
            at: now,
        });
    }

    // ---- the panel API contract -------------------------------------------------------------

    pub fn list(&self, account: &str) -> Vec<Panel> {
        let mut st = self.lock();
        self.tick_locked(&mut st);
        let now = self.clock.now();
        Self::log(&mut st, "list", account, None, now);
        st.panels
            .iter()
            .filter(|p| p.account == account)
            .map(|p| self.reported(p, now))
            .collect()
    }

    pub fn get(&self, account: &str, panel: &str) -> Result<Panel, PanelError> {
        let mut st = self.lock();
        self.tick_locked(&mut st);
        let now = self.clock.now();
        Self::log(&mut st, "get", account, Some(panel), now);
        let i = Self::find(&st, self.scope(account), panel).ok_or(PanelError::NotFound)?;
        Ok(self.reported(&st.panels[i], now))
    }

    pub fn arm(
        &self,
        account: &str,
        panel: &str,
        req: &ArmRequest,
    ) -> Result<ArmOutcome, PanelError> {
        let mut st = self.lock();
        self.tick_locked(&mut st);
        let now = self.clock.now();
        Self::log(&mut st, "arm", account, Some(panel), now);
        let i = Self::find(&st, self.scope(account), panel).ok_or(PanelError::NotFound)?;
        if let Some(Completed::Arm(done)) = st.completed.get(&req.request_id)
            && !self.defects().no_idempotency
        {
            return Ok(done.clone());
        }
        if !st.panels[i].online {
            return Err(PanelError::Offline);
        }
        let (bypassed, fx) = st.panels[i]
            .arm(req.mode, req.bypass_open_zones, now)
            .map_err(PanelError::Refused)?;
        self.apply(&mut st, i, fx, req.source, now);
        let outcome = ArmOutcome {
            panel: st.panels[i].view(now),
            bypassed,
        };
        let name = outcome.panel.name.clone();
        let mode = outcome
            .panel
            .arm_state
            .alexa_name()
            .to_lowercase()
            .replace('_', " ");
        Self::notify_household(
            &mut st,
            account,
            "arm",
            format!("{name} {mode} ({})", source_label(req.source)),
            now,
        );
        st.completed
            .insert(req.request_id.clone(), Completed::Arm(outcome.clone()));
        Ok(outcome)
    }

    pub fn disarm(
        &self,
        account: &str,
        panel: &str,
        req: &DisarmRequest,
    ) -> Result<Panel, PanelError> {
        let _sent_after = self.hold_link();
        self.disarm_answer(account, panel, req)
    }

    /// Holds the link's sending task back until the guard is dropped, once the answer is ready
    /// (the HTTP routes keep it until the answer's body is taken), whatever the request's kind: a duress's 121 (and the panel's reports) travel after the
    /// answer, from the durable queue, so they cannot slow the request they came from.
    pub fn hold_link(&self) -> Option<crate::adapters::dc09::transmitter::Hold> {
        self.link.as_ref().map(Transmitter::hold)
    }

    fn disarm_answer(
        &self,
        account: &str,
        panel: &str,
        req: &DisarmRequest,
    ) -> Result<Panel, PanelError> {
        let mut st = self.lock();
        self.tick_locked(&mut st);
        let now = self.clock.now();
        Self::log(&mut st, "disarm", account, Some(panel), now);
        let i = Self::find(&st, self.scope(account), panel).ok_or(PanelError::NotFound)?;
        if let Some(Completed::Disarm(done)) = st.completed.get(&req.request_id)
            && !self.defects().no_idempotency
        {
            return Ok(done.clone());
        }
        // The cloud relays a duress to the monitoring center over its own link, before and
        // whatever happens to the panel: an offline panel must not swallow it.
        self.decide_duress(&mut st, i, req)?;
        if !st.panels[i].online {
            return Err(PanelError::Offline);
        }
        let fx = st.panels[i].disarm(req.member, req.duress(), now);
        self.apply(&mut st, i, fx, req.source, now);
        let view = st.panels[i].view(now);
        let who = Self::user_name(&st, account, req.member);
        let defects = self.defects();
        let under = if req.duress() && defects.duress_notice {
            " under duress"
        } else {
            ""
        };
        Self::notify_household(
            &mut st,
            account,
            "disarm",
            format!(
                "{} disarmed by {who} ({}){under}",
                view.name,
                source_label(req.source)
            ),
            now,
        );
        if req.duress()
            && let Some(cancel) = defects.cancel_after_duress(account, panel, req.member, now)
        {
            self.report(&st, i, cancel);
        }
        st.completed
            .insert(req.request_id.clone(), Completed::Disarm(view.clone()));
        Ok(view)
    }

    pub fn signal(
        &self,
        account: &str,
        panel: &str,
        req: &SignalRequest,
    ) -> Result<(), PanelError> {
        let sent_after = self.hold_link();
        let decided = {
            let mut st = self.lock();
            let now = self.clock.now();
            Self::log(&mut st, "signal", account, Some(panel), now);
            let i = Self::find(&st, self.scope(account), panel).ok_or(PanelError::NotFound)?;
            // Acknowledged only once the 121 is durably queued (or the decision recorded).
            // The same attempt as a disarm would carry it: one decision for both routes.
            self.decide_duress(&mut st, i, &DisarmRequest::from(req.clone()))
        };
        drop(sent_after);
        // The decision is on disk, the acknowledgement not sent: the restart tests kill the
        // whole cloud here, so the skill's worker sends the same request id again.
        crate::common::crash::crash_point!(SIGNAL_DECIDED, if decided.is_ok());
        decided
    }

    pub fn notify(&self, account: &str, notice: &Notice) {
        let mut st = self.lock();
        let now = self.clock.now();
        Self::log(&mut st, "notify", account, None, now);
        Self::notify_household(&mut st, account, &notice.kind, notice.message.clone(), now);
    }

    // ---- simulation control ------------------------------------------------------------------

    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
        self.tick();
    }

    /// Every panel with its account, as `GET /sim/panels` shows them.
    pub fn snapshot(&self) -> Vec<(String, Panel)> {
        let mut st = self.lock();
        self.tick_locked(&mut st);
        let now = self.clock.now();
        st.panels
            .iter()
            .map(|p| (p.account.clone(), p.view(now)))
            .collect()
    }

    /// The Contact ID events the monitoring center has accepted so far.
    pub fn monitoring(&self) -> Vec<ContactIdEvent> {
        self.deliver_inbox();
        self.center.events()
    }

    /// Every event the monitoring center received, merged copies included, with the path that
    /// carried each (`GET /sim/monitoring`, the console).
    pub fn received(&self) -> Vec<ReceivedEvent> {
        self.deliver_inbox();
        self.center.received()
    }

    /// What the monitoring center dispatched, and why.
    pub fn dispatches(&self) -> Vec<Dispatch> {
        self.deliver_inbox();
        self.center.dispatches()
    }

    /// Test mode: what the monitoring receiver got for one account, oldest first.
    pub fn monitoring_for(&self, account: &str) -> Vec<ContactIdEvent> {
        {
            let mut st = self.lock();
            let now = self.clock.now();
            Self::log(&mut st, "test_monitoring", account, None, now);
        }
        self.monitoring()
            .into_iter()
            .filter(|e| e.account == account)
            .collect()
    }

    /// Test mode: what the account's household app shows, oldest first.
    pub fn notifications_for(&self, account: &str) -> Vec<Notification> {
        self.lock()
            .notifications
            .iter()
            .filter(|n| n.account == account)
            .cloned()
            .collect()
    }

    pub fn notifications(&self) -> Vec<Notification> {
        self.lock().notifications.clone()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }
}

/// The Contact ID fields of an event, as the DC-09 link carries them.
fn contact_id(event: &ContactIdEvent) -> Cid {
    Cid {
        qualifier: event.qualifier,
        event: event.code.parse().unwrap_or(0),
        partition: event.partition,
        number: event.user.or(event.zone).unwrap_or(0),
    }
}

fn source_label(s: Source) -> &'static str {
    match s {
        Source::Voice => "voice",
        Source::Keypad => "keypad",
        Source::App => "app",
        Source::Automation => "automation",
        Source::Sensor => "sensor",
        Source::System => "system",
    }
}
