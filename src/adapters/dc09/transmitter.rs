//! The panel cloud's DC-09 transmitter: a queue of Contact ID events, sent one at a time over
//! one TCP connection, each re-sent (same sequence number, fresh timestamp) until the receiver
//! answers ACK. Nothing is dropped: a receiver that is down, refuses (NAK), or loses its answer
//! only delays delivery, and the order of events is kept.
//!
//! With a queue directory ([`LinkConfig::queue_dir`]) the queue and each account's next sequence
//! number live in an append-only journal, written and fsynced before [`Transmitter::send`]
//! returns: a transmitter that crashes and starts again re-sends what was not yet ACKed, with
//! the same sequence number and time of occurrence, and goes on numbering where it stopped
//! (a receiver that remembers recent sequence numbers never takes a new event for a re-send).
//!
//! The journal is also the cloud's record of the `disarm`/`signals` request ids whose duress
//! question it has settled ([`Transmitter::decide`]): one `decision` record per request id,
//! whatever its kind, written and synced in one step. A duress's record is its queued 121 as
//! well, so after a crash at any point "121 queued" and "request id handled" never disagree, and
//! a re-sent request id (the skill's worker is at-least-once) never queues a second 121. Ids are
//! kept for [`HANDLED_WINDOW_DAYS`].
//!
//! Equal work: a normal and a duress decision write one record each, of one length (the kind is
//! a field inside, and request-path lines are padded to [`RECORD_LEN`]), with one sync; and a
//! request holds the sending task back ([`Transmitter::hold`]) until its answer is on its way
//! (over HTTP: until hyper has taken the body's last byte, src/local/simulator/http.rs), then
//! the task waits [`AFTER_ANSWER`], the same for every wake, so the 121 travels after the
//! answer, from the durable queue. ACK records are not synced (losing one only re-sends an
//! event the receiver takes for a re-send), and the task touches its state (whose lock a
//! request's sync may hold, and where a journal rewrite is synced) only from a blocking thread,
//! as the in-process receiver syncs its journal: delivering a 121 never blocks a runtime worker
//! the next request needs.
//!
//! Constant cost: the journal is rewritten once the records appended since the last rewrite
//! outnumber both [`COMPACT_AFTER`] and the records that rewrite kept (the live set: pending
//! events, sequence numbers, handled ids). Each rewrite of n live records thus follows at least
//! n appends: O(1) per request, however many ids the window holds. [`JournalStats`] counts the
//! writes, for the tests that prove both and the bench (benches/refcloud_cost.rs).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::common::clock::Clock;
use crate::wire::dc09::frame::{self, Cid, Key, MessageId, Route};

use super::link::{self, Connection, Expect, SendError};

/// Where and how the cloud sends.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub receiver: SocketAddr,
    /// `R` in the frame header (hex), if the receiver wants one.
    pub receiver_number: Option<String>,
    /// `L`: the account prefix (hex).
    pub account_prefix: String,
    pub key: Option<Key>,
    /// How long to wait for an answer before re-sending.
    pub ack_timeout: Duration,
    /// The longest pause between re-sends.
    pub max_backoff: Duration,
    /// Where the durable queue lives (created if missing); None keeps it in memory only.
    pub queue_dir: Option<PathBuf>,
}

impl LinkConfig {
    pub fn new(receiver: SocketAddr) -> Self {
        LinkConfig {
            receiver,
            receiver_number: Some("1".into()),
            account_prefix: "1".into(),
            key: None,
            ack_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(1),
            queue_dir: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Queued {
    id: u64,
    account: String,
    seq: u16,
    cid: Cid,
    occurred: DateTime<Utc>,
    /// The request id whose decision queued it (a duress), if any.
    request: Option<String>,
}

/// How long the cloud remembers a handled request id. The skill re-sends an id the cloud has
/// already acknowledged only when its worker could not settle the record: at its next pass,
/// minutes later (retries back off to 5 minutes, a gone panel's to an hour), or once the store
/// or the worker is back from an outage. A week covers that with room; an id re-sent later
/// still would raise a second 121, a duplicate alarm and never a lost one.
pub const HANDLED_WINDOW_DAYS: i64 = 7;

/// One send attempt, for inspection (`GET /sim/monitoring/link`) and for the CI's independent
/// decoding of captured frames.
#[derive(Debug, Clone, Serialize)]
pub struct SentFrame {
    pub account: String,
    pub seq: u16,
    pub attempt: u32,
    pub encrypted: bool,
    /// The frame without its LF and CR.
    pub frame: String,
    /// ACK, NAK, DUH, or what went wrong.
    pub answer: String,
    /// The Contact ID event it carries: qualifier, event code, partition, zone or user.
    pub qualifier: u8,
    pub code: String,
    pub partition: u8,
    pub number: u16,
}

/// Writes of one kind: how many records, bytes and syncs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Writes {
    pub records: u64,
    pub bytes: u64,
    pub syncs: u64,
}

/// What the journal has written since the transmitter started, by purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// On a request's path, before the cloud answers: decisions and queued panel reports.
    pub requests: Writes,
    /// By the sending task after the receiver answered: ACK records.
    pub acks: Writes,
    /// Journal rewrites: the records they kept, and the rewrites themselves as `syncs`.
    pub rewrites: Writes,
    /// Decision records by kind.
    pub normal_decisions: u64,
    pub duress_decisions: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    next_seq: HashMap<String, u16>,
    next_id: u64,
    sent: Vec<SentFrame>,
    delivered: u64,
    /// The open journal, when the queue is durable.
    journal: Option<File>,
    /// Records appended since the journal was last rewritten.
    journal_records: usize,
    /// Records the last rewrite kept: the live set the next rewrite waits to be outnumbered by.
    live_records: usize,
    stats: JournalStats,
    /// Request ids whose decision is recorded, with when: pruned to [`HANDLED_WINDOW_DAYS`].
    handled: HashMap<String, DateTime<Utc>>,
    /// Prune `handled` once it has this many entries (doubling, so pruning is amortised).
    prune_at: usize,
    /// Which start of the sending task owns the state: bumped by a crash and restart, so work
    /// of the dead task still running on a blocking thread changes nothing.
    generation: u64,
}

/// One line of the queue journal (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    /// An event queued under its sequence number.
    Queued {
        #[serde(flatten)]
        entry: Entry,
        /// The request id of the decision that queued it: handled from this record on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// The settled duress question of `request`, either kind, with the 121 it queues under
    /// `id`/`seq` if it is a duress. A normal decision carries the 121 it would have been (the
    /// numbers it would have taken, which it does not use), so both kinds serialize to one
    /// length and cost one write and one sync.
    Decision {
        kind: DecisionKind,
        request: String,
        #[serde(flatten)]
        entry: Entry,
        /// When the request came: the handled window counts from it, not from `occurred` (the
        /// time the code was spoken, which a request delayed by an outage carries from days
        /// before). Absent in journals from before it, where `occurred` stands in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<DateTime<Utc>>,
    },
    /// Journals before `Decision`: a decision that queued nothing (still read).
    Decided {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<DateTime<Utc>>,
    },
    /// A request id handled at `at` (written when the journal is rewritten).
    Handled { request: String, at: DateTime<Utc> },
    /// The receiver ACKed event `id`.
    Acked { id: u64 },
    /// The next sequence number of an account (written when the journal is rewritten).
    Next { account: String, seq: u16 },
}

/// An event with its numbers, as a `Queued` or a `Decision` record writes it (one list of
/// fields, in one order, for both).
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    id: u64,
    account: String,
    seq: u16,
    qualifier: u8,
    event: u16,
    partition: u8,
    number: u16,
    occurred: DateTime<Utc>,
}

impl Entry {
    fn new(id: u64, account: &str, seq: u16, cid: Cid, occurred: DateTime<Utc>) -> Entry {
        Entry {
            id,
            account: account.to_string(),
            seq,
            qualifier: cid.qualifier,
            event: cid.event,
            partition: cid.partition,
            number: cid.number,
            occurred,
        }
    }

    fn queued(self, request: Option<String>) -> Queued {
        Queued {
            id: self.id,
            account: self.account,
            seq: self.seq,
            cid: Cid {
                qualifier: self.qualifier,
                event: self.event,
                partition: self.partition,
                number: self.number,
            },
            occurred: self.occurred,
            request,
        }
    }
}

/// The kind of a settled duress question: both names have one length, like the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Normal,
    Duress,
}

/// The durable queue could not be written: the event is not queued, and whoever asked must
/// not be told it was.
#[derive(Debug, thiserror::Error)]
#[error("DC-09 queue journal: {0}")]
pub struct QueueError(#[from] std::io::Error);

const JOURNAL: &str = "dc09-queue.jsonl";
/// Rewrite the journal once this many records were appended since the last rewrite, and at
/// least as many as that rewrite kept (see the module docs).
pub const COMPACT_AFTER: usize = 1_000;
/// Request-path lines are padded with spaces (which JSON ignores) to a multiple of this, so
/// their length tells neither the kind nor how many numbers came before.
pub const RECORD_LEN: usize = 512;

struct Inner {
    /// Open [`Hold`]s: while any is open, queuing an event does not wake the sending task.
    holds: std::sync::atomic::AtomicUsize,
    config: LinkConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    wake: Notify,
    idle: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// See [`Transmitter::hold`].
pub struct Hold {
    inner: Arc<Inner>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.inner
            .holds
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        // Whether or not anything was queued meanwhile: the same work for every request.
        self.inner.wake.notify_one();
    }
}

/// Handle to the transmitter; its task runs as long as the Tokio runtime.
#[derive(Clone)]
pub struct Transmitter {
    inner: Arc<Inner>,
}

const SENT_LOG_MAX: usize = 10_000;

impl Transmitter {
    /// Starts the sending task, after loading the durable queue if there is one. Needs a
    /// Tokio runtime.
    pub fn start(config: LinkConfig, clock: Arc<dyn Clock>) -> Result<Transmitter, QueueError> {
        let state = match &config.queue_dir {
            Some(dir) => load(dir, clock.now())?,
            None => State::default(),
        };
        let inner = Arc::new(Inner {
            holds: std::sync::atomic::AtomicUsize::new(0),
            config,
            clock,
            state: Mutex::new(state),
            wake: Notify::new(),
            idle: Notify::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(inner.clone(), 0));
        *inner.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(Transmitter { inner })
    }

    /// A crash and a start again: the sending task dies where it is (an attempt in flight is
    /// abandoned, its ACK unread), everything in memory is forgotten, and the queue and
    /// sequence numbers are whatever the journal holds. Without a queue directory the queue is
    /// simply lost, as the reference transmitter's was.
    pub fn crash_and_restart(&self) -> Result<(), QueueError> {
        let mut task = self.inner.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = task.take() {
            t.abort();
        }
        let fresh = match &self.inner.config.queue_dir {
            Some(dir) => load(dir, self.inner.clock.now())?,
            None => State::default(),
        };
        let generation = {
            let mut st = self.lock();
            let sent = std::mem::take(&mut st.sent);
            let delivered = st.delivered;
            let generation = st.generation + 1;
            *st = fresh;
            // The inspection log and counter are not the transmitter's state: kept for tests.
            st.sent = sent;
            st.delivered = delivered;
            st.generation = generation;
            generation
        };
        *task = Some(tokio::spawn(run(self.inner.clone(), generation)));
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one event for `account` (the DC-09 account number) and gives it the next sequence
    /// number: 0001–9999, then 0001 again. With a queue directory the event is on disk (written
    /// and fsynced) when this returns Ok; on Err it is not queued at all.
    pub fn send(&self, account: &str, cid: Cid, occurred: DateTime<Utc>) -> Result<(), QueueError> {
        self.enqueue(account, cid, occurred, None)
    }

    /// Settles the duress question of `request_id`: one `decision` record, of one length for
    /// both kinds, written and synced. A duress's record is also its 121, queued for `account`
    /// under the next sequence number; a normal one queues nothing. From Ok on, and after any
    /// restart, [`Self::handled`] is true for `request_id`; on Err nothing is recorded or
    /// queued. Callers answering a request hold [`Self::hold`] around it, so the 121 travels
    /// after the answer and costs the request nothing more.
    pub fn decide(
        &self,
        request_id: &str,
        account: &str,
        cid: Cid,
        occurred: DateTime<Utc>,
        kind: DecisionKind,
    ) -> Result<(), QueueError> {
        let mut st = self.lock();
        let seq = st.next_seq.get(account).copied().unwrap_or(1);
        let id = st.next_id;
        let arrived = self.inner.clock.now();
        let record = Record::Decision {
            kind,
            request: request_id.to_string(),
            entry: Entry::new(id, account, seq, cid, occurred),
            at: Some(arrived),
        };
        append(&mut st, &record, Purpose::Request)?;
        match kind {
            DecisionKind::Normal => st.stats.normal_decisions += 1,
            DecisionKind::Duress => {
                st.stats.duress_decisions += 1;
                take_numbers(&mut st, account, seq);
                st.queue.push_back(Queued {
                    id,
                    account: account.to_string(),
                    seq,
                    cid,
                    occurred,
                    request: Some(request_id.to_string()),
                });
            }
        }
        remember(&mut st, request_id, arrived);
        self.housekeep(&mut st);
        drop(st);
        self.wake_unless_held();
        Ok(())
    }

    fn wake_unless_held(&self) {
        if self.inner.holds.load(std::sync::atomic::Ordering::Acquire) == 0 {
            self.inner.wake.notify_one();
        }
    }

    /// A defect only (`Defects::duress_extra_syncs`): one more record, written and synced, that
    /// a restart ignores. Counted with the request path's writes, where it happens.
    pub fn extra_sync(&self) -> Result<(), QueueError> {
        let mut st = self.lock();
        append(
            &mut st,
            &Record::Decided {
                request: None,
                at: None,
            },
            Purpose::Request,
        )
    }

    fn enqueue(
        &self,
        account: &str,
        cid: Cid,
        occurred: DateTime<Utc>,
        request: Option<&str>,
    ) -> Result<(), QueueError> {
        let mut st = self.lock();
        let seq = st.next_seq.get(account).copied().unwrap_or(1);
        let id = st.next_id;
        let msg = Queued {
            id,
            account: account.to_string(),
            seq,
            cid,
            occurred,
            request: request.map(str::to_string),
        };
        append(&mut st, &queued_record(&msg), Purpose::Request)?;
        take_numbers(&mut st, account, seq);
        if let Some(r) = request {
            remember(&mut st, r, occurred);
        }
        st.queue.push_back(msg);
        self.housekeep(&mut st);
        drop(st);
        self.wake_unless_held();
        Ok(())
    }

    /// Holds the sending task back until the returned guard is dropped (which wakes it): a
    /// request's answer is produced first, and its events (a duress's 121, the panel's
    /// reports) travel after it, from the durable queue, whatever its kind.
    pub fn hold(&self) -> Hold {
        self.inner
            .holds
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Hold {
            inner: self.inner.clone(),
        }
    }

    /// Whether a [`Hold`] is open: the sending task leaves queued events alone meanwhile.
    pub fn is_held(&self) -> bool {
        self.inner.holds.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// What the journal has written so far.
    pub fn journal_stats(&self) -> JournalStats {
        self.lock().stats
    }

    /// Whether the decision on `request_id` is recorded (in the journal, when there is one),
    /// within [`HANDLED_WINDOW_DAYS`].
    pub fn handled(&self, request_id: &str) -> bool {
        self.lock().handled.contains_key(request_id)
    }

    /// Keeps the journal and the handled ids bounded.
    fn housekeep(&self, st: &mut State) {
        let now = self.inner.clock.now();
        if st.handled.len() >= st.prune_at {
            prune(st, now);
            st.prune_at = (st.handled.len() * 2).max(PRUNE_MIN);
        }
        maybe_compact(&self.inner.config, st, now);
    }

    /// Events not yet acknowledged.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }

    pub fn sent(&self) -> Vec<SentFrame> {
        self.lock().sent.clone()
    }

    /// Waits until every queued event is acknowledged, at most `limit`; true if it was.
    pub async fn settle(&self, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.inner.idle.notified();
            if self.queued() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, idle).await.is_err() {
                return self.queued() == 0;
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn queued_record(m: &Queued) -> Record {
    Record::Queued {
        entry: Entry::new(m.id, &m.account, m.seq, m.cid, m.occurred),
        request: m.request.clone(),
    }
}

const PRUNE_MIN: usize = 1_000;

/// Uses `seq` and the next event id.
fn take_numbers(st: &mut State, account: &str, seq: u16) {
    st.next_seq
        .insert(account.to_string(), if seq >= 9999 { 1 } else { seq + 1 });
    st.next_id += 1;
}

/// Why a record is written: which [`JournalStats`] counts it, whether it is padded and synced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Request,
    Ack,
}

fn remember(st: &mut State, request: &str, at: DateTime<Utc>) {
    st.handled.insert(request.to_string(), at);
}

/// Forgets request ids handled before the window.
fn prune(st: &mut State, now: DateTime<Utc>) {
    let since = now - chrono::Duration::days(HANDLED_WINDOW_DAYS);
    st.handled.retain(|_, at| *at >= since);
}

/// Appends one record (no-op without a journal): on a request's path padded to [`RECORD_LEN`]
/// and synced; an ACK only written (see the module docs).
fn append(st: &mut State, record: &Record, purpose: Purpose) -> Result<(), QueueError> {
    let Some(file) = st.journal.as_mut() else {
        return Ok(());
    };
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    if purpose == Purpose::Request {
        // The newline takes the last byte of the padded length.
        let len = (line.len() + 1).div_ceil(RECORD_LEN) * RECORD_LEN;
        line.resize(len - 1, b' ');
    }
    line.push(b'\n');
    file.write_all(&line)?;
    let synced = purpose == Purpose::Request;
    if synced {
        file.sync_data()?;
    }
    st.journal_records += 1;
    let w = match purpose {
        Purpose::Request => &mut st.stats.requests,
        Purpose::Ack => &mut st.stats.acks,
    };
    w.records += 1;
    w.bytes += line.len() as u64;
    w.syncs += u64::from(synced);
    Ok(())
}

/// Keeps the journal bounded: pending events and sequence numbers only, once it has grown.
/// A failed rewrite leaves the old journal in use, whole.
fn maybe_compact(config: &LinkConfig, st: &mut State, now: DateTime<Utc>) {
    if st.journal_records >= COMPACT_AFTER.max(st.live_records)
        && let Some(dir) = &config.queue_dir
        && let Err(e) = compact(dir, st, now)
    {
        tracing::warn!(error = %e, "DC-09 queue journal: rewrite failed");
    }
}

/// Reads the journal in `dir` (creating both if missing): the events not yet ACKed, in order,
/// each account's next sequence number, and the request ids handled within the window. A torn
/// last line (a crash mid-write: its `send` never returned Ok) is skipped: neither its event
/// nor its request id counts.
fn load(dir: &Path, now: DateTime<Utc>) -> Result<State, QueueError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(JOURNAL);
    let mut st = State::default();
    let mut pending: Vec<Queued> = vec![];
    if let Ok(file) = File::open(&path) {
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            let record = match serde_json::from_str::<Record>(&line) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "DC-09 queue journal: unreadable line skipped");
                    continue;
                }
            };
            st.journal_records += 1;
            match record {
                Record::Queued { entry, request } => {
                    if let Some(r) = &request {
                        remember(&mut st, r, entry.occurred);
                    }
                    st.next_seq.insert(
                        entry.account.clone(),
                        if entry.seq >= 9999 { 1 } else { entry.seq + 1 },
                    );
                    st.next_id = st.next_id.max(entry.id + 1);
                    pending.push(entry.queued(request));
                }
                Record::Acked { id } => pending.retain(|q| q.id != id),
                Record::Next { account, seq } => {
                    st.next_seq.insert(account, seq);
                }
                Record::Decision {
                    kind,
                    request,
                    entry,
                    at,
                } => {
                    remember(&mut st, &request, at.unwrap_or(entry.occurred));
                    if kind == DecisionKind::Duress {
                        take_numbers(&mut st, &entry.account, entry.seq);
                        st.next_id = st.next_id.max(entry.id + 1);
                        pending.push(entry.queued(Some(request)));
                    }
                }
                Record::Decided {
                    request: Some(r),
                    at,
                } => remember(&mut st, &r, at.unwrap_or(now)),
                Record::Decided { request: None, .. } => {}
                Record::Handled { request, at } => remember(&mut st, &request, at),
            }
        }
    }
    st.queue = pending.into();
    compact(dir, &mut st, now)?;
    Ok(st)
}

/// Rewrites the journal with only what a restart needs (sequence numbers, request ids handled
/// within the window, pending events): written to a new file, synced, then renamed over the
/// old one, so a crash leaves one or the other whole.
fn compact(dir: &Path, st: &mut State, now: DateTime<Utc>) -> Result<(), QueueError> {
    prune(st, now);
    st.prune_at = (st.handled.len() * 2).max(PRUNE_MIN);
    let tmp = dir.join(format!("{JOURNAL}.new"));
    let mut out = File::create(&tmp)?;
    let mut records: Vec<Record> = st
        .next_seq
        .iter()
        .map(|(account, seq)| Record::Next {
            account: account.clone(),
            seq: *seq,
        })
        .collect();
    // A pending event's own record names its request id.
    let pending: std::collections::HashSet<&str> = st
        .queue
        .iter()
        .filter_map(|q| q.request.as_deref())
        .collect();
    records.extend(
        st.handled
            .iter()
            .filter(|(r, _)| !pending.contains(r.as_str()))
            .map(|(r, at)| Record::Handled {
                request: r.clone(),
                at: *at,
            }),
    );
    records.extend(st.queue.iter().map(queued_record));
    let mut bytes = 0u64;
    {
        // One write per buffer-full, not per record: a rewrite of the whole window is the one
        // big write, and it is amortised over as many appends as it keeps records.
        let mut buf = std::io::BufWriter::with_capacity(1 << 16, &mut out);
        for r in &records {
            let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
            line.push(b'\n');
            buf.write_all(&line)?;
            bytes += line.len() as u64;
        }
        buf.flush()?;
    }
    out.sync_all()?;
    // `out` stays the journal: its handle follows the file through the rename, and until the
    // rename succeeds the old journal stays in use.
    std::fs::rename(&tmp, dir.join(JOURNAL))?;
    st.journal = Some(out);
    st.journal_records = 0;
    st.live_records = records.len();
    File::open(dir)?.sync_all()?;
    let w = &mut st.stats.rewrites;
    w.records += records.len() as u64;
    w.bytes += bytes;
    w.syncs += 2;
    Ok(())
}

/// How long the sending task waits, once woken, before it looks at the queue (see the module
/// docs): a hold released with the answer's last byte still leaves that byte to be flushed and
/// read.
/// Short next to any delivery deadline (NFPA 72 allows 90 s to the receiver), long next to a
/// reply's last write.
const AFTER_ANSWER: Duration = Duration::from_millis(2);

/// Runs `f` on the state from a blocking thread, never on a runtime worker: the state's lock is
/// held across journal syncs. A blocking thread cannot be aborted, so `f` runs only if the task
/// of `generation` still owns the state (no crash and restart since). None when it does not, or
/// the runtime is shutting down: the task ends.
async fn off_runtime<T: Send + 'static>(
    me: &Arc<Inner>,
    generation: u64,
    f: impl FnOnce(&mut State) -> T + Send + 'static,
) -> Option<T> {
    let me = me.clone();
    tokio::task::spawn_blocking(move || {
        let mut st = me.lock();
        (st.generation == generation).then(|| f(&mut st))
    })
    .await
    .ok()
    .flatten()
}

async fn run(me: Arc<Inner>, generation: u64) {
    let mut conn: Option<Connection> = None;
    let mut backoff = Duration::from_millis(25);
    let mut attempt = 0u32;
    loop {
        let wake = me.wake.notified();
        // Off the runtime's worker threads: the lock may wait out a request's journal sync.
        let Some(front) = off_runtime(&me, generation, |st| st.queue.front().cloned()).await else {
            return;
        };
        let Some(msg) = front else {
            me.idle.notify_waiters();
            wake.await;
            // Woken when a request's answer has been handed over (its hold released) or an
            // unheld event was queued: the same pause every time, whatever was queued, so the
            // answer's last bytes reach the client before the link and the receiver start work.
            tokio::time::sleep(AFTER_ANSWER).await;
            continue;
        };
        attempt += 1;
        let route = Route {
            receiver: me.config.receiver_number.clone(),
            prefix: me.config.account_prefix.clone(),
            account: msg.account.clone(),
        };
        // Built afresh for every attempt: same sequence number, current timestamp.
        let built = frame::encode_event(
            msg.seq,
            &route,
            Some(&msg.cid),
            msg.occurred,
            me.clock.now(),
            me.config.key.as_ref(),
        );
        let outcome = match &built {
            Ok(frame) => send_once(&me, &mut conn, &msg, frame).await,
            Err(e) => Err(SendError::Frame(e.clone())),
        };
        let (answer, acked) = match &outcome {
            Ok(MessageId::Ack) => ("ACK".to_string(), true),
            Ok(MessageId::Nak) => ("NAK".to_string(), false),
            Ok(MessageId::Duh) => ("DUH".to_string(), false),
            Ok(other) => (format!("{other:?}"), false),
            Err(e) => (e.to_string(), false),
        };
        // The ACK record, and now and then a rewrite of the journal (synced), off the runtime's
        // worker threads too: a worker blocked here would delay whatever request runs meanwhile.
        let logged = {
            let (me2, msg, answer) = (me.clone(), msg.clone(), answer.clone());
            let frame = built.ok();
            off_runtime(&me, generation, move |st| {
                if let Some(frame) = &frame
                    && st.sent.len() < SENT_LOG_MAX
                {
                    st.sent.push(SentFrame {
                        account: msg.account.clone(),
                        seq: msg.seq,
                        attempt,
                        encrypted: me2.config.key.is_some(),
                        frame: frame.trim_matches(['\n', '\r']).to_string(),
                        answer,
                        qualifier: msg.cid.qualifier,
                        code: format!("{:03}", msg.cid.event),
                        partition: msg.cid.partition,
                        number: msg.cid.number,
                    });
                }
                if acked && st.queue.front().is_some_and(|q| q.id == msg.id) {
                    st.queue.pop_front();
                    st.delivered += 1;
                    // If this record is lost the event is re-sent after a restart with its own
                    // sequence number and time of occurrence, and the receiver takes it for the
                    // re-send it is.
                    if let Err(e) = append(st, &Record::Acked { id: msg.id }, Purpose::Ack) {
                        tracing::warn!(error = %e, "DC-09 queue journal: ACK not recorded");
                    }
                    maybe_compact(&me2.config, st, me2.clock.now());
                }
            })
            .await
        };
        if logged.is_none() {
            return;
        }
        if acked {
            attempt = 0;
            backoff = Duration::from_millis(25);
            continue;
        }
        if attempt == 1 || attempt.is_multiple_of(20) {
            tracing::warn!(seq = msg.seq, attempt, %answer, "DC-09 frame not acknowledged; re-sending");
        }
        // Any doubt about the connection: start a fresh one.
        conn = None;
        let pause = backoff;
        backoff = (backoff * 2).min(me.config.max_backoff);
        tokio::time::sleep(pause).await;
    }
}

/// One attempt on the link's connection (opened first if there is none): the answer's type.
async fn send_once(
    me: &Inner,
    conn: &mut Option<Connection>,
    msg: &Queued,
    frame: &str,
) -> Result<MessageId, SendError> {
    let cfg = &me.config;
    let open = match conn.take() {
        Some(open) => open,
        None => link::connect(cfg.receiver, cfg.ack_timeout).await?,
    };
    let expect = Expect {
        seq: msg.seq,
        account: &msg.account,
        key: cfg.key.as_ref(),
    };
    let open = conn.insert(open);
    link::exchange(open, frame, &expect, cfg.ack_timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::clock::SystemClock;
    use std::fs::OpenOptions;

    fn cid(number: u16) -> Cid {
        Cid {
            qualifier: 1,
            event: 121,
            partition: 1,
            number,
        }
    }

    fn decided(t: &Transmitter, request: &str) -> Result<(), QueueError> {
        t.decide(request, "1234", cid(0), Utc::now(), DecisionKind::Normal)
    }

    /// A durable queue in a new directory, sent to a port nobody listens on: every attempt
    /// fails, the queue stays as it is.
    fn durable_to_nobody(prefix: &str) -> (std::path::PathBuf, LinkConfig) {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        let cfg = LinkConfig {
            queue_dir: Some(dir.clone()),
            ..LinkConfig::new(crate::adapters::dc09::unused_addr())
        };
        (dir, cfg)
    }

    fn seqs(t: &Transmitter) -> Vec<u16> {
        t.lock().queue.iter().map(|q| q.seq).collect()
    }

    /// The journal's lines, letter for letter: a restart of an older build reads them, and the
    /// two kinds of decision must stay one length.
    #[test]
    fn journal_records_keep_their_fields_order_and_length() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let line = |r: &Record| serde_json::to_string(r).unwrap();
        let decision = |kind| Record::Decision {
            kind,
            request: "req-1".to_string(),
            entry: Entry::new(7, "1234", 2, cid(3), at),
            at: Some(at),
        };
        let duress = line(&decision(DecisionKind::Duress));
        assert_eq!(
            duress,
            r#"{"op":"decision","kind":"duress","request":"req-1","id":7,"account":"1234","seq":2,"qualifier":1,"event":121,"partition":1,"number":3,"occurred":"2026-01-01T00:00:00Z","at":"2026-01-01T00:00:00Z"}"#
        );
        assert_eq!(line(&decision(DecisionKind::Normal)).len(), duress.len());
        let queued = Entry::new(7, "1234", 2, cid(3), at).queued(Some("req-1".to_string()));
        let written = line(&queued_record(&queued));
        assert_eq!(
            written,
            r#"{"op":"queued","id":7,"account":"1234","seq":2,"qualifier":1,"event":121,"partition":1,"number":3,"occurred":"2026-01-01T00:00:00Z","request":"req-1"}"#
        );
        let Record::Queued { entry, request } = serde_json::from_str(&written).unwrap() else {
            panic!("not read back as queued: {written}");
        };
        let back = entry.queued(request);
        assert_eq!(
            (back.id, back.account, back.seq, back.cid, back.request),
            (7, "1234".to_string(), 2, cid(3), Some("req-1".to_string()))
        );
        let Record::Decision { kind, entry, .. } = serde_json::from_str(&duress).unwrap() else {
            panic!("not read back as a decision: {duress}");
        };
        assert_eq!(
            (kind, entry.seq, entry.number),
            (DecisionKind::Duress, 2, 3)
        );
    }

    /// A request delayed by a long outage carries a time of occurrence from long ago: its id is
    /// still remembered for the whole window from when it came, before and after a restart, so
    /// a re-send of it never raises a second 121.
    #[tokio::test]
    async fn a_request_id_is_remembered_from_when_it_came_not_from_when_its_code_was_spoken() {
        use crate::common::clock::AdjustableClock;
        let (_dir, cfg) = durable_to_nobody("dc09-late");
        let clock = Arc::new(AdjustableClock::frozen(Utc::now()));
        let t = Transmitter::start(cfg, clock.clone()).unwrap();
        let spoken = clock.now() - chrono::Duration::days(HANDLED_WINDOW_DAYS * 4);
        t.decide("late-1", "1234", cid(1), spoken, DecisionKind::Duress)
            .unwrap();
        prune(&mut t.lock(), clock.now());
        assert!(t.handled("late-1"), "kept for the window from its arrival");
        t.crash_and_restart().unwrap();
        prune(&mut t.lock(), clock.now());
        assert!(t.handled("late-1"), "and so after a restart");
        clock.advance(chrono::Duration::days(HANDLED_WINDOW_DAYS) + chrono::Duration::minutes(1));
        prune(&mut t.lock(), clock.now());
        assert!(
            !t.handled("late-1"),
            "forgotten once the window from its arrival is over"
        );
    }

    #[tokio::test]
    async fn the_queue_survives_a_crash_numbering_goes_on_and_a_failed_write_queues_nothing() {
        let (dir, cfg) = durable_to_nobody("dc09-q");
        let t = Transmitter::start(cfg, Arc::new(SystemClock)).unwrap();
        for n in 1..=3 {
            t.send("1234", cid(n), Utc::now()).unwrap();
        }
        t.crash_and_restart().unwrap();
        assert_eq!(seqs(&t), [1, 2, 3]);
        // A crash in the middle of a write leaves a torn last line: its send never returned Ok.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(JOURNAL))
            .unwrap();
        f.write_all(br#"{"op":"queued","id":7,"acc"#).unwrap();
        drop(f);
        t.crash_and_restart().unwrap();
        assert_eq!(seqs(&t), [1, 2, 3]);
        t.send("1234", cid(4), Utc::now()).unwrap();
        assert_eq!(seqs(&t), [1, 2, 3, 4], "numbering goes on after restarts");

        // The disk refuses the write (a full device): Err, nothing queued, no number used.
        t.lock().journal = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        assert!(t.send("1234", cid(5), Utc::now()).is_err());
        assert!(decided(&t, "r-full").is_err());
        assert!(!t.handled("r-full"), "not written: not handled");
        assert_eq!(seqs(&t), [1, 2, 3, 4]);
        assert_eq!(t.lock().next_seq.get("1234"), Some(&5));
        // What is on disk is what a restart finds.
        t.crash_and_restart().unwrap();
        assert_eq!(seqs(&t), [1, 2, 3, 4]);

        // The journal stays bounded: rewritten with the pending events and numbers only.
        for _ in 0..COMPACT_AFTER + 5 {
            decided(&t, "r-again").unwrap();
        }
        let lines = std::fs::read_to_string(dir.join(JOURNAL))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 20, "{lines} lines");
        t.crash_and_restart().unwrap();
        assert_eq!(seqs(&t), [1, 2, 3, 4]);
        t.send("1234", cid(5), Utc::now()).unwrap();
        assert_eq!(seqs(&t), [1, 2, 3, 4, 5]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The cloud's record of handled request ids is the queue journal: a 121 and its request id
    /// are one record, so after a crash both are there or neither; an ACK takes the event off
    /// the queue but not the id; the window bounds what is kept.
    #[tokio::test]
    async fn a_121_and_its_request_id_are_recorded_together_and_kept_for_the_window() {
        use crate::common::clock::AdjustableClock;
        let (dir, cfg) = durable_to_nobody("dc09-h");
        let clock = Arc::new(AdjustableClock::frozen(Utc::now()));
        let t = Transmitter::start(cfg, clock.clone()).unwrap();
        t.decide(
            "duress-1",
            "1234",
            cid(1),
            clock.now(),
            DecisionKind::Duress,
        )
        .unwrap();
        decided(&t, "normal-1").unwrap();
        assert!(t.handled("duress-1") && t.handled("normal-1"));
        assert!(!t.handled("unknown"));
        t.crash_and_restart().unwrap();
        assert!(t.handled("duress-1") && t.handled("normal-1"), "from disk");
        assert_eq!(seqs(&t), [1]);

        // Killed mid-write: the torn line holds the 121 and its id, and neither counts.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(JOURNAL))
            .unwrap();
        f.write_all(br#"{"op":"queued","id":1,"account":"1234","seq":2,"qualifier":1,"event":121,"partition":1,"number":1,"occurred":"2026-01-01T00:00:00Z","request":"duress-2""#)
            .unwrap();
        drop(f);
        t.crash_and_restart().unwrap();
        assert!(!t.handled("duress-2"));
        assert_eq!(seqs(&t), [1]);

        // The disk refuses the write: not queued, not handled, before or after a restart.
        t.lock().journal = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        assert!(
            t.decide(
                "duress-3",
                "1234",
                cid(1),
                clock.now(),
                DecisionKind::Duress
            )
            .is_err()
        );
        assert!(!t.handled("duress-3"));
        t.crash_and_restart().unwrap();
        assert!(!t.handled("duress-3"));
        assert_eq!(seqs(&t), [1]);

        // The receiver ACKed the 121: off the queue, and its id still handled after a restart.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(JOURNAL))
            .unwrap();
        f.write_all(b"{\"op\":\"acked\",\"id\":0}\n").unwrap();
        drop(f);
        t.crash_and_restart().unwrap();
        assert_eq!(seqs(&t), [0u16; 0]);
        assert!(t.handled("duress-1") && t.handled("normal-1"));

        // Inside the window they stay; past it the next rewrite forgets them.
        clock.advance(chrono::Duration::days(HANDLED_WINDOW_DAYS) - chrono::Duration::minutes(1));
        t.crash_and_restart().unwrap();
        assert!(t.handled("duress-1") && t.handled("normal-1"));
        clock.advance(chrono::Duration::minutes(2));
        t.crash_and_restart().unwrap();
        assert!(!t.handled("duress-1") && !t.handled("normal-1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn without_a_queue_directory_a_crash_loses_the_queue() {
        let addr = crate::adapters::dc09::unused_addr();
        let t = Transmitter::start(LinkConfig::new(addr), Arc::new(SystemClock)).unwrap();
        t.send("1234", cid(1), Utc::now()).unwrap();
        t.crash_and_restart().unwrap();
        assert_eq!(
            t.queued(),
            0,
            "the reference transmitter's behaviour, for contrast"
        );
    }
}
