//! What the monitoring center does with the events it accepts: the operator's rules.
//!
//! - **121 duress**: dispatch the police at once; nothing ever cancels it.
//! - **130 burglary**: dispatch (one per incident), unless a user cancels it (406).
//! - **406 cancel**: calls off the open burglary and crash-and-smash dispatches of the panel,
//!   except while a duress of that panel is open: a cancel can be coerced too.
//! - **138 pending alarm** (an armed entry zone opened): supervise. An all-clear (401 opening)
//!   or the alarm itself (130) must occur within entry delay + abort window + grace; otherwise
//!   the panel was probably smashed before it could report, and the center raises the alarm
//!   itself, recording why (crash-and-smash).
//! - A closing (401/441 qualifier 3) starts a new arming period: earlier dispatches are no
//!   longer open for cancels.
//!
//! Receipt is exactly once by DC-09 sequence number per account: a re-sent frame (its ACK was
//! lost) is acknowledged again but not acted on twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{ContactIdEvent, codes};
use crate::clock::Clock;
use crate::simulator::dc09::frame::{self, Frame, Key, MessageId};

/// How far a frame's timestamp may be from the receiver's clock (DC-09 practice: 20 s ahead,
/// 40 s behind); outside it the frame may be a replay and gets a NAK.
const WINDOW_AHEAD_S: i64 = 20;
const WINDOW_BEHIND_S: i64 = 40;
/// Sequence numbers remembered per account for de-duplication.
const SEEN_PER_ACCOUNT: usize = 256;
const FRAME_LOG_MAX: usize = 10_000;

/// The center's record of one monitored panel (its account database).
#[derive(Debug, Clone, Serialize)]
pub struct Subscriber {
    /// The DC-09 account number (hex, 3–16 digits).
    pub monitoring_account: String,
    pub account: String,
    pub panel: String,
    pub entry_delay_s: u32,
    pub abort_window_s: u32,
    /// Added to entry delay + abort window before a pending alarm counts as crash-and-smash.
    pub supervision_grace_s: u32,
}

impl Subscriber {
    fn supervision(&self) -> Duration {
        Duration::seconds(
            i64::from(self.entry_delay_s)
                + i64::from(self.abort_window_s)
                + i64::from(self.supervision_grace_s),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchReason {
    Duress,
    Burglary,
    CrashAndSmash,
}

/// A dispatch the operator made, and whether it was called off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    pub account: String,
    pub panel: String,
    pub reason: DispatchReason,
    pub user: Option<u16>,
    pub zone: Option<u16>,
    pub at: DateTime<Utc>,
    pub why: String,
    pub cancelled: bool,
    pub cancelled_by: Option<u16>,
    /// Still part of the current arming period (a cancel can reach it).
    #[serde(skip)]
    open: bool,
}

/// One frame as the receiver got it, and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedFrame {
    pub frame: String,
    pub answer: &'static str,
    /// A re-send of a sequence number already acted on.
    pub duplicate: bool,
    pub seq: Option<u16>,
    pub account: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct PendingEntry {
    since: DateTime<Utc>,
    deadline: DateTime<Utc>,
    zone: Option<u16>,
}

/// Past a supervision deadline, in whole seconds: DC-09 carries times to the second.
fn late(t: DateTime<Utc>, deadline: DateTime<Utc>) -> bool {
    t.timestamp() > deadline.timestamp()
}

#[derive(Default)]
struct State {
    events: Vec<ContactIdEvent>,
    dispatches: Vec<Dispatch>,
    frames: Vec<ReceivedFrame>,
    seen: HashMap<String, VecDeque<u16>>,
    pending: HashMap<String, PendingEntry>,
}

pub struct MonitoringCenter {
    subscribers: HashMap<String, Subscriber>,
    /// By (household account, panel id), for events handed over in-process.
    by_panel: HashMap<(String, String), String>,
    key: Option<Key>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// The answer to a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: MessageId,
    /// The encoded answer frame.
    pub frame: Option<String>,
}

impl MonitoringCenter {
    pub fn new(subscribers: Vec<Subscriber>, key: Option<Key>, clock: Arc<dyn Clock>) -> Self {
        let by_panel = subscribers
            .iter()
            .map(|s| {
                (
                    (s.account.clone(), s.panel.clone()),
                    s.monitoring_account.to_uppercase(),
                )
            })
            .collect();
        MonitoringCenter {
            subscribers: subscribers
                .into_iter()
                .map(|s| (s.monitoring_account.to_uppercase(), s))
                .collect(),
            by_panel,
            key,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The DC-09 account number of a panel.
    pub fn monitoring_account(&self, account: &str, panel: &str) -> Option<&str> {
        self.by_panel
            .get(&(account.to_string(), panel.to_string()))
            .map(String::as_str)
    }

    pub fn events(&self) -> Vec<ContactIdEvent> {
        self.lock().events.clone()
    }

    pub fn dispatches(&self) -> Vec<Dispatch> {
        self.lock().dispatches.clone()
    }

    pub fn frames(&self) -> Vec<ReceivedFrame> {
        self.lock().frames.clone()
    }

    /// Accepts an event handed over in-process (no DC-09 link: benchmarks, unit tests).
    pub fn accept(&self, event: ContactIdEvent) {
        let Some(acct) = self.monitoring_account(&event.account, &event.panel) else {
            tracing::warn!(panel = %event.panel, "event for a panel the center does not monitor");
            return;
        };
        let acct = acct.to_string();
        let mut st = self.lock();
        self.act(&mut st, &acct, event);
    }

    /// Handles one DC-09 frame off the wire and returns the answer to send. With `refuse`
    /// (a receiver fault) every frame gets a NAK and nothing is acted on.
    pub fn handle_frame(&self, raw: &[u8], refuse: bool) -> Answer {
        let now = self.clock.now();
        let text = String::from_utf8_lossy(raw)
            .trim_matches(['\n', '\r'])
            .to_string();
        let key_for = |acct: &str| {
            self.subscribers
                .contains_key(&acct.to_uppercase())
                .then(|| self.key.clone())
                .flatten()
        };
        let mut st = self.lock();
        let (answer, log) = match frame::decode(raw, key_for) {
            _ if refuse => (
                self.nak(now),
                Err("receiver refusing every frame (fault)".into()),
            ),
            Err(e) => (self.nak(now), Err(e.to_string())),
            Ok(f) => self.judge(&mut st, &f, now),
        };
        let (duplicate, error, seq, account) = match &log {
            Ok((dup, f)) => (*dup, None, Some(f.seq), Some(f.route.account.clone())),
            Err(e) => (false, Some(e.clone()), None, None),
        };
        if st.frames.len() < FRAME_LOG_MAX {
            st.frames.push(ReceivedFrame {
                frame: text,
                answer: match answer.id {
                    MessageId::Ack => "ACK",
                    MessageId::Duh => "DUH",
                    _ => "NAK",
                },
                duplicate,
                seq,
                account,
                error,
                at: now,
            });
        }
        answer
    }

    fn nak(&self, now: DateTime<Utc>) -> Answer {
        let route = frame::Route {
            receiver: None,
            prefix: "0".into(),
            account: String::new(),
        };
        Answer {
            id: MessageId::Nak,
            frame: frame::encode_answer(MessageId::Nak, 0, &route, now, None).ok(),
        }
    }

    /// Checks an intact frame and acts on it: (answer, Ok((duplicate, frame)) or Err(why)).
    fn judge(
        &self,
        st: &mut State,
        f: &Frame,
        now: DateTime<Utc>,
    ) -> (Answer, Result<(bool, Frame), String>) {
        let acct = f.route.account.to_uppercase();
        let Some(sub) = self.subscribers.get(&acct) else {
            return (self.nak(now), Err(format!("unknown account {acct}")));
        };
        if self.key.is_some() && !f.encrypted {
            return (self.nak(now), Err("account requires encryption".into()));
        }
        if let Some(ts) = f.timestamp {
            let skew = (ts - now).num_seconds();
            if !(-WINDOW_BEHIND_S..=WINDOW_AHEAD_S).contains(&skew) {
                return (self.nak(now), Err(format!("timestamp off by {skew} s")));
            }
        }
        let key = if f.encrypted { self.key.as_ref() } else { None };
        let reply = |id| Answer {
            id,
            frame: frame::encode_answer(id, f.seq, &f.route, now, key).ok(),
        };
        match f.id {
            MessageId::Null => (reply(MessageId::Ack), Ok((false, f.clone()))),
            MessageId::AdmCid => {
                let Some(cid) = f.cid else {
                    return (reply(MessageId::Duh), Err("no Contact ID payload".into()));
                };
                let seen = st.seen.entry(acct.clone()).or_default();
                if seen.contains(&f.seq) {
                    return (reply(MessageId::Ack), Ok((true, f.clone())));
                }
                seen.push_back(f.seq);
                if seen.len() > SEEN_PER_ACCOUNT {
                    seen.pop_front();
                }
                let code = format!("{:03}", cid.event);
                let user_event = ContactIdEvent::is_user_event(&code);
                let number = Some(cid.number);
                let event = ContactIdEvent {
                    account: sub.account.clone(),
                    panel: sub.panel.clone(),
                    code,
                    qualifier: cid.qualifier,
                    partition: cid.partition,
                    user: if user_event { number } else { None },
                    zone: if user_event { None } else { number },
                    at: f.occurred.or(f.timestamp).unwrap_or(now),
                };
                self.act(st, &acct, event);
                (reply(MessageId::Ack), Ok((false, f.clone())))
            }
            _ => (
                reply(MessageId::Duh),
                Err("not a message a receiver takes".into()),
            ),
        }
    }

    /// Raises the crash-and-smash alarms whose supervision ran out.
    pub fn tick(&self) {
        let now = self.clock.now();
        let mut st = self.lock();
        let expired: Vec<String> = st
            .pending
            .iter()
            .filter(|(_, p)| late(now, p.deadline))
            .map(|(a, _)| a.clone())
            .collect();
        for acct in expired {
            self.crash_and_smash(&mut st, &acct);
        }
    }

    fn crash_and_smash(&self, st: &mut State, acct: &str) {
        let (Some(p), Some(sub)) = (st.pending.remove(acct), self.subscribers.get(acct)) else {
            return;
        };
        let why = format!(
            "pending alarm (138, zone {}) at {}; neither a disarm nor the alarm occurred within \
             entry delay {} s + abort window {} s + grace {} s: the panel stopped reporting \
             (crash-and-smash)",
            p.zone.map_or("?".into(), |z| z.to_string()),
            p.since.to_rfc3339(),
            sub.entry_delay_s,
            sub.abort_window_s,
            sub.supervision_grace_s
        );
        tracing::warn!(panel = %sub.panel, "crash-and-smash: alarm raised by the receiver");
        st.dispatches.push(Dispatch {
            account: sub.account.clone(),
            panel: sub.panel.clone(),
            reason: DispatchReason::CrashAndSmash,
            user: None,
            zone: p.zone,
            at: p.deadline,
            why,
            cancelled: false,
            cancelled_by: None,
            open: true,
        });
    }

    fn act(&self, st: &mut State, acct: &str, event: ContactIdEvent) {
        let Some(sub) = self.subscribers.get(acct) else {
            return;
        };
        // A late all-clear does not undo a supervision that had already run out.
        let clears = matches!(
            (event.code.as_str(), event.qualifier),
            (codes::OPEN_CLOSE_BY_USER, 1) | (codes::BURGLARY, 1)
        );
        if clears
            && st
                .pending
                .get(acct)
                .is_some_and(|p| late(event.at, p.deadline))
        {
            self.crash_and_smash(st, acct);
        }
        if clears {
            st.pending.remove(acct);
        }
        let mine = |d: &Dispatch| d.panel == sub.panel && d.account == sub.account && d.open;
        match (event.code.as_str(), event.qualifier) {
            (codes::DURESS, 1) => st.dispatches.push(Dispatch {
                account: sub.account.clone(),
                panel: sub.panel.clone(),
                reason: DispatchReason::Duress,
                user: event.user,
                zone: None,
                at: event.at,
                why: "duress code entered: police first, no call to the premises".into(),
                cancelled: false,
                cancelled_by: None,
                open: true,
            }),
            (codes::BURGLARY, 1) => {
                // One dispatch per incident: the alarm of a panel the center already raised
                // itself (crash-and-smash, the report arriving late) joins that one.
                let already = st.dispatches.iter().any(|d| {
                    mine(d)
                        && matches!(
                            d.reason,
                            DispatchReason::Burglary | DispatchReason::CrashAndSmash
                        )
                        && !d.cancelled
                });
                if !already {
                    st.dispatches.push(Dispatch {
                        account: sub.account.clone(),
                        panel: sub.panel.clone(),
                        reason: DispatchReason::Burglary,
                        user: None,
                        zone: event.zone,
                        at: event.at,
                        why: "burglary alarm".into(),
                        cancelled: false,
                        cancelled_by: None,
                        open: true,
                    });
                }
            }
            (codes::NEAR_ALARM, 1) => {
                st.pending.insert(
                    acct.to_string(),
                    PendingEntry {
                        since: event.at,
                        deadline: event.at + sub.supervision(),
                        zone: event.zone,
                    },
                );
            }
            (codes::CANCEL, _) => {
                let duress = st
                    .dispatches
                    .iter()
                    .any(|d| mine(d) && d.reason == DispatchReason::Duress);
                if duress {
                    tracing::warn!(panel = %sub.panel, "cancel ignored: a duress is open");
                } else {
                    for d in st.dispatches.iter_mut() {
                        if mine(d) && d.reason != DispatchReason::Duress && !d.cancelled {
                            d.cancelled = true;
                            d.cancelled_by = event.user;
                        }
                    }
                }
            }
            (codes::OPEN_CLOSE_BY_USER | codes::ARMED_STAY, 3) => {
                for d in st.dispatches.iter_mut() {
                    if mine(d) {
                        d.open = false;
                    }
                }
            }
            _ => {}
        }
        st.events.push(event);
    }
}
