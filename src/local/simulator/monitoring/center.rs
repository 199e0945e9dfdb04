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
//! **Two paths, one dispatch.** The panel cloud's link and the skill's second path are two lines
//! (`L`) of one account, each numbering its own messages, so re-sends are told apart per line.
//! When the panel cloud could not take an attempt, the skill sends it itself, and the cloud still
//! reports it once it is back: the same duress arrives twice. A 121 of the same account and
//! user with the same time of occurrence (`[H...]`, whole seconds) as a duress already
//! dispatched is that duress: recorded, ACKed, shown as merged, never dispatched again (see
//! `receive` for a copy without a time of occurrence). The second path's communication trouble
//! (350, for a normal attempt) stays open until the panel cloud's path reports an event of the
//! panel that occurred at or after it (the 401 of that very disarm, typically): then it shows as
//! cleared. Merging and clearing are rebuilt from the journal on a restart like the rest.
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

use super::{ContactIdEvent, EventPath, NEW_EVENT, ReceivedEvent, codes};
use crate::common::clock::Clock;
use crate::wire::dc09::frame::{self, Frame, Key, MessageId};

/// How far a frame's timestamp may be from the receiver's clock (DC-09 practice: 20 s ahead,
/// 40 s behind); outside it the frame may be a replay and gets a NAK.
const WINDOW_AHEAD_S: i64 = 20;
const WINDOW_BEHIND_S: i64 = 40;
/// Events remembered per account and line for de-duplication (sequence number, time of
/// occurrence), and duresses per account for merging the two paths' copies.
const SEEN_PER_ACCOUNT: usize = 256;
/// Communication trouble: what the skill's second path sends for a normal attempt the panel
/// cloud could not take, with the member's user number as CCC (docs/panel-api.md).
const COMMUNICATION_TROUBLE: &str = "350";
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
    pub path: Option<EventPath>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct PendingEntry {
    since: DateTime<Utc>,
    deadline: DateTime<Utc>,
    zone: Option<u16>,
}

/// De-duplication is per transmitter: each line of an account numbers its own messages, so one
/// path's event must never pass for a re-send of the other's under the same sequence number.
type LineKey = (String, String);

fn line_key(acct: &str, line: &str) -> LineKey {
    (acct.to_string(), line.to_uppercase())
}

fn remember(st: &mut State, line: LineKey, seen: Seen) {
    let list = st.seen.entry(line).or_default();
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
        line: f.route.prefix.clone(),
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
    /// `L`: which transmitter sent it. Journals from before the second path have none: their
    /// events count as the panel cloud's, on a line of their own.
    #[serde(default)]
    line: String,
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

/// A dispatched duress: user, time of occurrence in whole seconds, and the paths whose copy of
/// it has arrived (each path carries one attempt's 121 once; its re-sends are told apart by
/// sequence number before they get here).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownDuress {
    user: u16,
    at: i64,
    paths: Vec<EventPath>,
}

#[derive(Default)]
struct State {
    received: Vec<ReceivedEvent>,
    dispatches: Vec<Dispatch>,
    frames: Vec<ReceivedFrame>,
    seen: HashMap<LineKey, VecDeque<Seen>>,
    /// Per account: the duresses dispatched, each with the paths that have delivered a copy.
    duresses: HashMap<String, VecDeque<KnownDuress>>,
    /// Per account: the second path's communication troubles not yet cleared (in `received`).
    troubles: HashMap<String, Vec<usize>>,
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
                    line_key(&acct, &a.line),
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
                self.receive(
                    &mut st,
                    &acct,
                    event,
                    EventPath::of_line(&a.line),
                    a.occurred,
                );
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

    /// The events acted on: each once, whichever path carried it (merged copies left out).
    pub fn events(&self) -> Vec<ContactIdEvent> {
        self.lock()
            .received
            .iter()
            .filter(|r| !r.merged)
            .map(|r| r.event.clone())
            .collect()
    }

    /// Every event received, merged copies included, with the path that carried it.
    pub fn received(&self) -> Vec<ReceivedEvent> {
        self.lock().received.clone()
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
        let occurred = Some(event.at);
        self.receive(&mut st, &acct, event, EventPath::PanelCloud, occurred);
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
        let (duplicate, error, seq, account, path) = match &log {
            Ok((dup, f)) => (
                *dup,
                None,
                Some(f.seq),
                Some(f.route.account.clone()),
                Some(EventPath::of_line(&f.route.prefix)),
            ),
            Err(e) => (false, Some(e.clone()), None, None, None),
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
                path,
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
                let line = line_key(&acct, &f.route.prefix);
                let path = EventPath::of_line(&f.route.prefix);
                let seen = st.seen.entry(line.clone()).or_default();
                if let Some(s) = seen
                    .iter_mut()
                    .find(|s| s.is_resend_of(f.seq, f.occurred, now))
                {
                    s.last = now;
                    return (reply(MessageId::Ack), Ok((true, f.clone())));
                }
                let code = format!("{:03}", cid.event);
                let user_event = ContactIdEvent::is_user_event(&code)
                    || (path == EventPath::SecondPath && code == COMMUNICATION_TROUBLE);
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
                    line,
                    Seen {
                        seq: f.seq,
                        occurred: f.occurred,
                        last: now,
                    },
                );
                self.receive(st, &acct, event, path, f.occurred);
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

    /// Takes one accepted event, from either path: a copy of a duress already dispatched is
    /// merged (recorded, never dispatched again), the panel cloud's path clears the second
    /// path's troubles it answers, and everything else is acted on.
    ///
    /// The same duress = same account, user, event 121 and time of occurrence (`[H...]`, whole
    /// seconds). Without a time of occurrence a copy is never merged: the two paths deliver
    /// minutes apart after an outage, and nothing else tells one coerced disarm from two; a
    /// second police run is the lesser harm than a duress swallowed.
    fn receive(
        &self,
        st: &mut State,
        acct: &str,
        event: ContactIdEvent,
        path: EventPath,
        occurred: Option<DateTime<Utc>>,
    ) {
        // Any report of the cloud's, a merged copy included, shows its path works again.
        if path == EventPath::PanelCloud
            && let Some(open) = st.troubles.get_mut(acct)
        {
            let received = &mut st.received;
            open.retain(|&i| match received.get_mut(i) {
                Some(r) if r.event.at <= event.at => {
                    r.cleared_at = Some(event.at);
                    false
                }
                Some(_) => true,
                None => false,
            });
        }
        let duress = (event.code == codes::DURESS && event.qualifier == NEW_EVENT)
            .then(|| event.user.zip(occurred))
            .flatten()
            .map(|(user, t)| (user, t.timestamp()));
        if let Some((user, at)) = duress {
            let known = st.duresses.entry(acct.to_string()).or_default();
            // A copy is merged only into a duress no copy from its own path has reached yet:
            // one path never carries one attempt twice, so two 121s of one user in the same
            // second on one path are two duresses (and a third copy, from the other path,
            // merges into just one of them).
            if let Some(same) = known
                .iter_mut()
                .find(|k| k.user == user && k.at == at && !k.paths.contains(&path))
            {
                same.paths.push(path);
                st.received.push(ReceivedEvent {
                    event,
                    path,
                    merged: true,
                    cleared_at: None,
                });
                return;
            }
            known.push_back(KnownDuress {
                user,
                at,
                paths: vec![path],
            });
            if known.len() > SEEN_PER_ACCOUNT {
                known.pop_front();
            }
        }
        if path == EventPath::SecondPath
            && event.code == COMMUNICATION_TROUBLE
            && event.qualifier == NEW_EVENT
        {
            let at = st.received.len();
            st.troubles.entry(acct.to_string()).or_default().push(at);
        }
        self.act(st, acct, &event);
        st.received.push(ReceivedEvent {
            event,
            path,
            merged: false,
            cleared_at: None,
        });
    }

    fn act(&self, st: &mut State, acct: &str, event: &ContactIdEvent) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::clock::AdjustableClock;
    use crate::local::simulator::monitoring::SECOND_PATH_LINE;
    use crate::wire::dc09::frame::{Cid, Route};

    /// The panel cloud's line (its `LinkConfig.account_prefix`).
    const CLOUD: &str = "1";

    struct Bench {
        clock: Arc<AdjustableClock>,
        dir: PathBuf,
        center: MonitoringCenter,
    }

    impl Bench {
        fn new() -> Bench {
            let clock = Arc::new(AdjustableClock::frozen(
                DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
                    .unwrap()
                    .to_utc(),
            ));
            let dir =
                std::env::temp_dir().join(format!("center-{}", uuid::Uuid::new_v4().simple()));
            let center = Self::start(&clock, &dir);
            Bench { clock, dir, center }
        }

        fn start(clock: &Arc<AdjustableClock>, dir: &Path) -> MonitoringCenter {
            let sub = |acct: &str, account: &str| Subscriber {
                monitoring_account: acct.into(),
                account: account.into(),
                panel: "home".into(),
                entry_delay_s: 30,
                abort_window_s: 0,
                supervision_grace_s: 30,
            };
            MonitoringCenter::new(
                vec![sub("1234", "demo"), sub("5678", "other")],
                None,
                clock.clone(),
            )
            .with_journal(dir)
            .unwrap()
        }

        /// Sends one ADM-CID and returns whether the center took it as a re-send.
        fn send(
            &self,
            acct: &str,
            line: &str,
            seq: u16,
            cid: Cid,
            occurred: DateTime<Utc>,
        ) -> bool {
            let route = Route {
                receiver: Some("1".into()),
                prefix: line.into(),
                account: acct.into(),
            };
            let f = frame::encode_event(seq, &route, Some(&cid), occurred, self.clock.now(), None)
                .unwrap();
            let answer = self.center.handle_frame(f.as_bytes(), false);
            assert_eq!(answer.id, MessageId::Ack, "{f}");
            self.center.frames().last().unwrap().duplicate
        }

        fn duresses(&self) -> Vec<Option<u16>> {
            self.center
                .dispatches()
                .iter()
                .filter(|d| d.reason == DispatchReason::Duress)
                .map(|d| d.user)
                .collect()
        }

        fn at(&self, ago_s: i64) -> DateTime<Utc> {
            self.clock.now() - Duration::seconds(ago_s)
        }
    }

    impl Drop for Bench {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn cid(event: u16, user: u16) -> Cid {
        Cid {
            qualifier: 1,
            event,
            partition: 1,
            number: user,
        }
    }

    #[test]
    fn two_copies_of_one_duress_from_two_paths_make_one_dispatch() {
        let b = Bench::new();
        let t = b.at(0);
        assert!(!b.send("1234", SECOND_PATH_LINE, 1, cid(121, 1), t));
        // The cloud's copy, after its outage, under its own sequence number.
        b.clock.advance(Duration::minutes(30));
        assert!(!b.send("1234", CLOUD, 17, cid(121, 1), t), "not a re-send");
        assert_eq!(b.duresses(), vec![Some(1)]);
        let r = b.center.received();
        let seen: Vec<_> = r.iter().map(|r| (r.path, r.merged)).collect();
        assert_eq!(
            seen,
            vec![
                (EventPath::SecondPath, false),
                (EventPath::PanelCloud, true)
            ]
        );
        assert_eq!(
            b.center.events().len(),
            1,
            "the operator's events: one duress"
        );
    }

    #[test]
    fn a_duress_is_never_merged_with_another_duress() {
        let b = Bench::new();
        let t = b.at(10);
        b.send("1234", SECOND_PATH_LINE, 1, cid(121, 1), t);
        // The same user later, another user at the same second, another account.
        b.send("1234", CLOUD, 1, cid(121, 1), t + Duration::seconds(1));
        b.send("1234", CLOUD, 2, cid(121, 2), t);
        b.send("5678", CLOUD, 3, cid(121, 1), t);
        assert_eq!(b.duresses(), vec![Some(1), Some(1), Some(2), Some(1)]);
        assert!(b.center.received().iter().all(|r| !r.merged));
    }

    /// Two attempts of one member in one second, each carried by both paths: two dispatches,
    /// each absorbing one copy from the other path. One path never carries an attempt twice,
    /// so copies on one path are never merged with each other.
    #[test]
    fn copies_on_one_path_are_never_merged_and_each_absorbs_one_from_the_other() {
        let b = Bench::new();
        let t = b.at(10);
        b.send("1234", CLOUD, 1, cid(121, 1), t);
        b.send("1234", CLOUD, 2, cid(121, 1), t);
        assert_eq!(
            b.duresses(),
            vec![Some(1), Some(1)],
            "two on one path: two duresses"
        );
        b.send("1234", SECOND_PATH_LINE, 1, cid(121, 1), t);
        b.send("1234", SECOND_PATH_LINE, 2, cid(121, 1), t);
        assert_eq!(
            b.duresses(),
            vec![Some(1), Some(1)],
            "their copies merged, one each"
        );
        b.send("1234", SECOND_PATH_LINE, 3, cid(121, 1), t);
        assert_eq!(
            b.duresses(),
            vec![Some(1), Some(1), Some(1)],
            "a third on the second path has no copy left to merge with"
        );
        let merged: Vec<bool> = b.center.received().iter().map(|r| r.merged).collect();
        assert_eq!(merged, vec![false, false, true, true, false]);
    }

    #[test]
    fn a_copy_without_a_time_of_occurrence_is_never_merged() {
        let b = Bench::new();
        let t = b.at(0);
        b.send("1234", CLOUD, 1, cid(121, 1), t);
        // What a transmitter without `[H...]` sends: the same duress, as far as anyone can say.
        let body = format!(
            "\"ADM-CID\"0001R1L{SECOND_PATH_LINE}#1234[#1234|1121 01 001]_{}",
            t.format("%H:%M:%S,%m-%d-%Y")
        );
        let raw = format!(
            "\n{:04X}0{:03X}{body}\r",
            frame::crc16_arc(body.as_bytes()),
            body.len()
        );
        assert_eq!(
            b.center.handle_frame(raw.as_bytes(), false).id,
            MessageId::Ack
        );
        assert_eq!(b.duresses(), vec![Some(1), Some(1)]);
    }

    #[test]
    fn the_merge_survives_a_crash_and_restart_between_the_copies() {
        let b = Bench::new();
        let t = b.at(0);
        b.send("1234", SECOND_PATH_LINE, 1, cid(121, 1), t);
        b.center.crash_and_restart().unwrap();
        b.clock.advance(Duration::minutes(10));
        b.send("1234", CLOUD, 9, cid(121, 1), t);
        assert_eq!(b.duresses(), vec![Some(1)]);
        // And a center started afresh on the journal rebuilds the same view.
        let again = Bench::start(&b.clock, &b.dir);
        let merged: Vec<_> = again.received().iter().map(|r| r.merged).collect();
        assert_eq!(merged, vec![false, true]);
        assert_eq!(again.dispatches().len(), 1);
    }

    #[test]
    fn the_clouds_merged_copy_of_a_duress_clears_an_earlier_trouble() {
        let b = Bench::new();
        let t = b.at(9);
        let duress = t + Duration::seconds(9);
        b.send("1234", SECOND_PATH_LINE, 1, cid(350, 1), t);
        b.send("1234", SECOND_PATH_LINE, 2, cid(121, 1), duress);
        b.send("1234", CLOUD, 1, cid(121, 1), duress);
        let r = b.center.received();
        assert!(r[2].merged);
        assert_eq!(r[0].cleared_at, Some(duress));
    }

    #[test]
    fn re_sends_are_told_apart_per_line() {
        let b = Bench::new();
        let t = b.at(0);
        let trouble = cid(350, 1);
        // A normal attempt the cloud could not take: the skill's trouble, then (the cloud back)
        // the cloud's opening of that disarm, under the same sequence number and time.
        assert!(!b.send("1234", SECOND_PATH_LINE, 1, trouble, t));
        b.clock.advance(Duration::seconds(5));
        assert!(
            !b.send("1234", CLOUD, 1, cid(401, 1), t),
            "another line's event"
        );
        let r = b.center.received();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].event.user,
            Some(1),
            "the trouble carries the user number"
        );
        assert_eq!(
            r[0].cleared_at,
            Some(t),
            "the cloud's path answered the trouble"
        );
        // Re-sends on either line are still re-sends, and change nothing.
        assert!(b.send("1234", SECOND_PATH_LINE, 1, trouble, t));
        assert!(b.send("1234", CLOUD, 1, cid(401, 1), t));
        b.center.crash_and_restart().unwrap();
        assert!(b.send("1234", SECOND_PATH_LINE, 1, trouble, t));
        assert_eq!(b.center.received().len(), 2);
    }

    #[test]
    fn a_trouble_stays_open_until_the_cloud_reports_something_as_recent() {
        let b = Bench::new();
        let t = b.at(0);
        b.send("1234", SECOND_PATH_LINE, 1, cid(350, 1), t);
        // An older event of the backlog, another account's report, another trouble.
        b.send("1234", CLOUD, 1, cid(441, 1), t - Duration::seconds(60));
        b.send("5678", CLOUD, 1, cid(401, 1), t);
        b.send(
            "1234",
            SECOND_PATH_LINE,
            2,
            cid(350, 1),
            t + Duration::seconds(1),
        );
        assert!(b.center.received().iter().all(|r| r.cleared_at.is_none()));
        b.send("1234", CLOUD, 2, cid(401, 1), t + Duration::seconds(2));
        let cleared: Vec<_> = b.center.received().iter().map(|r| r.cleared_at).collect();
        let done = Some(t + Duration::seconds(2));
        assert_eq!(cleared, vec![done, None, None, done, None]);
    }
}
