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
//! Receipt is exactly once per event, across restarts of either end. DC-09 keeps two things of
//! a message on every re-send: its sequence number and (in the `[H...]` extended data) the time
//! the event occurred; only the message timestamp is new each time, and it must fall inside the
//! time window (+20/−40 s) or the frame gets a NAK. So:
//!
//! - a frame with the sequence number *and* time of occurrence of an event already acted on,
//!   for the same account, is a re-send: ACKed again, not acted on;
//! - a frame without a time of occurrence is a re-send only if the same sequence number came
//!   within one time window before (an older one could be a new event after a transmitter
//!   restart or a wrap at 9999);
//! - with a journal ([`MonitoringCenter::with_journal`]) every event is written and synced
//!   before it is acted on and ACKed, and a restarted center rebuilds what it acted on, and
//!   what it remembers for de-duplication, from it.
//!
//! A bare sequence-number memory is wrong both ways: a transmitter that restarts its numbering
//! has its new events (a 121 among them) ACKed and dropped, and a receiver that forgets on
//! restart acts twice on an event whose ACK it never sent.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{ContactIdEvent, codes};
use crate::common::clock::Clock;
use crate::wire::dc09::frame::{self, Frame, Key, MessageId};

/// How far a frame's timestamp may be from the receiver's clock (DC-09 practice: 20 s ahead,
/// 40 s behind); outside it the frame may be a replay and gets a NAK.
const WINDOW_AHEAD_S: i64 = 20;
const WINDOW_BEHIND_S: i64 = 40;
/// Events remembered per account for de-duplication (sequence number, time of occurrence).
const SEEN_PER_ACCOUNT: usize = 256;
const JOURNAL: &str = "dc09-received.jsonl";
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

fn remember(st: &mut State, acct: &str, seen: Seen) {
    let list = st.seen.entry(acct.to_string()).or_default();
    list.push_back(seen);
    if list.len() > SEEN_PER_ACCOUNT {
        list.pop_front();
    }
}

fn journal(
    st: &mut State,
    acct: &str,
    f: &Frame,
    now: DateTime<Utc>,
    event: &ContactIdEvent,
) -> std::io::Result<()> {
    let Some(file) = st.journal.as_mut() else {
        return Ok(());
    };
    let record = Accepted {
        monitoring_account: acct.to_string(),
        seq: f.seq,
        occurred: f.occurred,
        received: now,
        code: event.code.clone(),
        qualifier: event.qualifier,
        partition: event.partition,
        user: event.user,
        zone: event.zone,
        at: event.at,
    };
    let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()
}

/// Past a supervision deadline, in whole seconds: DC-09 carries times to the second.
fn late(t: DateTime<Utc>, deadline: DateTime<Utc>) -> bool {
    t.timestamp() > deadline.timestamp()
}

/// What identifies an event on the link: see the module comment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    seq: u16,
    occurred: Option<DateTime<Utc>>,
    /// When that sequence number last came (receiver's clock).
    last: DateTime<Utc>,
}

impl Seen {
    fn is_resend_of(&self, seq: u16, occurred: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        if self.seq != seq || self.occurred != occurred {
            return false;
        }
        occurred.is_some() || (now - self.last).num_seconds() <= WINDOW_AHEAD_S + WINDOW_BEHIND_S
    }
}

/// One journal line: an event the center accepted, with what identifies it on the link.
#[derive(Debug, Serialize, Deserialize)]
struct Accepted {
    /// The DC-09 account number.
    monitoring_account: String,
    seq: u16,
    occurred: Option<DateTime<Utc>>,
    received: DateTime<Utc>,
    code: String,
    qualifier: u8,
    partition: u8,
    user: Option<u16>,
    zone: Option<u16>,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    events: Vec<ContactIdEvent>,
    dispatches: Vec<Dispatch>,
    frames: Vec<ReceivedFrame>,
    seen: HashMap<String, VecDeque<Seen>>,
    pending: HashMap<String, PendingEntry>,
    journal: Option<File>,
}

pub struct MonitoringCenter {
    subscribers: HashMap<String, Subscriber>,
    /// By (household account, panel id), for events handed over in-process.
    by_panel: HashMap<(String, String), String>,
    key: Option<Key>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    journal_dir: Option<PathBuf>,
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
            journal_dir: None,
        }
    }

    /// Keeps a journal in `dir` (created if missing) and starts from what it holds: every event
    /// is synced to it before it is acted on and ACKed.
    pub fn with_journal(mut self, dir: &Path) -> std::io::Result<Self> {
        self.journal_dir = Some(dir.to_path_buf());
        let st = self.load()?;
        *self.lock() = st;
        Ok(self)
    }

    /// A crash and a start again: everything in memory is forgotten and rebuilt from the
    /// journal (without one, the center starts empty, as the reference one did).
    pub fn crash_and_restart(&self) -> std::io::Result<()> {
        let fresh = self.load()?;
        let mut st = self.lock();
        let frames = std::mem::take(&mut st.frames);
        *st = fresh;
        // The frame log is for inspection, not the center's state: kept for tests.
        st.frames = frames;
        Ok(())
    }

    fn load(&self) -> std::io::Result<State> {
        let mut st = State::default();
        let Some(dir) = &self.journal_dir else {
            return Ok(st);
        };
        std::fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL);
        if let Ok(file) = File::open(&path) {
            for line in std::io::BufReader::new(file).lines() {
                let line = line?;
                // A torn last line is an event that was never ACKed: it comes again.
                let Ok(a) = serde_json::from_str::<Accepted>(&line) else {
                    tracing::warn!("monitoring journal: unreadable line skipped");
                    continue;
                };
                let acct = a.monitoring_account.to_uppercase();
                let Some(sub) = self.subscribers.get(&acct) else {
                    continue;
                };
                remember(
                    &mut st,
                    &acct,
                    Seen {
                        seq: a.seq,
                        occurred: a.occurred,
                        last: a.received,
                    },
                );
                let event = ContactIdEvent {
                    account: sub.account.clone(),
                    panel: sub.panel.clone(),
                    code: a.code,
                    qualifier: a.qualifier,
                    partition: a.partition,
                    user: a.user,
                    zone: a.zone,
                    at: a.at,
                };
                self.act(&mut st, &acct, event);
            }
        }
        st.journal = Some(OpenOptions::new().create(true).append(true).open(&path)?);
        Ok(st)
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
                if let Some(s) = seen
                    .iter_mut()
                    .find(|s| s.is_resend_of(f.seq, f.occurred, now))
                {
                    s.last = now;
                    return (reply(MessageId::Ack), Ok((true, f.clone())));
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
                // On disk before it is acted on and ACKed: a NAK (it comes again) rather than
                // an ACK for an event a restart would forget.
                if let Err(e) = journal(st, &acct, f, now, &event) {
                    tracing::error!(error = %e, "monitoring journal write failed; frame refused");
                    return (self.nak(now), Err(format!("journal: {e}")));
                }
                remember(
                    st,
                    &acct,
                    Seen {
                        seq: f.seq,
                        occurred: f.occurred,
                        last: now,
                    },
                );
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
