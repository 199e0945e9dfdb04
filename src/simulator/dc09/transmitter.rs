//! The panel cloud's DC-09 transmitter: a queue of Contact ID events, sent one at a time over
//! one TCP connection, each re-sent (same sequence number, fresh timestamp) until the receiver
//! answers ACK. Nothing is dropped: a receiver that is down, refuses (NAK), or loses its answer
//! only delays delivery, and the order of events is kept.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::frame::{self, Cid, FrameError, Key, MessageId, Route};
use crate::clock::Clock;

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
        }
    }
}

#[derive(Debug, Clone)]
struct Queued {
    account: String,
    seq: u16,
    cid: Cid,
    occurred: DateTime<Utc>,
}

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

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    next_seq: HashMap<String, u16>,
    sent: Vec<SentFrame>,
    delivered: u64,
}

struct Inner {
    config: LinkConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    wake: Notify,
    idle: Notify,
}

/// Handle to the transmitter; its task runs as long as the Tokio runtime.
#[derive(Clone)]
pub struct Transmitter {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("I/O: {0}")]
    Io(std::io::Error),
    #[error("no answer within the ACK timeout")]
    Timeout,
    #[error("connection closed without an answer")]
    Closed,
    #[error("answer: {0}")]
    Answer(FrameError),
    #[error("frame: {0}")]
    Frame(FrameError),
}

const SENT_LOG_MAX: usize = 10_000;

impl Transmitter {
    /// Starts the sending task. Needs a Tokio runtime.
    pub fn start(config: LinkConfig, clock: Arc<dyn Clock>) -> Transmitter {
        let inner = Arc::new(Inner {
            config,
            clock,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            idle: Notify::new(),
        });
        tokio::spawn(run(inner.clone()));
        Transmitter { inner }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one event for `account` (the DC-09 account number) and gives it the next sequence
    /// number: 0001–9999, then 0001 again.
    pub fn send(&self, account: &str, cid: Cid, occurred: DateTime<Utc>) {
        let mut st = self.lock();
        if !st.next_seq.contains_key(account) {
            st.next_seq.insert(account.to_string(), 1);
        }
        let next = st.next_seq.get_mut(account).map_or(1, |n| {
            let seq = *n;
            *n = if seq >= 9999 { 1 } else { seq + 1 };
            seq
        });
        let seq = next;
        st.queue.push_back(Queued {
            account: account.to_string(),
            seq,
            cid,
            occurred,
        });
        drop(st);
        self.inner.wake.notify_one();
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

type Connection = (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
);

async fn run(me: Arc<Inner>) {
    let mut conn: Option<Connection> = None;
    let mut backoff = Duration::from_millis(25);
    let mut attempt = 0u32;
    loop {
        let wake = me.wake.notified();
        let front = me.lock().queue.front().cloned();
        let Some(msg) = front else {
            me.idle.notify_waiters();
            wake.await;
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
        {
            let mut st = me.lock();
            if let Ok(frame) = &built
                && st.sent.len() < SENT_LOG_MAX
            {
                st.sent.push(SentFrame {
                    account: msg.account.clone(),
                    seq: msg.seq,
                    attempt,
                    encrypted: me.config.key.is_some(),
                    frame: frame.trim_matches(['\n', '\r']).to_string(),
                    answer: answer.clone(),
                    qualifier: msg.cid.qualifier,
                    code: format!("{:03}", msg.cid.event),
                    partition: msg.cid.partition,
                    number: msg.cid.number,
                });
            }
            if acked {
                st.queue.pop_front();
                st.delivered += 1;
            }
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

/// One attempt: the answer's type.
async fn send_once(
    me: &Inner,
    conn: &mut Option<Connection>,
    msg: &Queued,
    frame: &str,
) -> Result<MessageId, SendError> {
    let cfg = &me.config;
    if conn.is_none() {
        let stream = tokio::time::timeout(cfg.ack_timeout, TcpStream::connect(cfg.receiver))
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        *conn = Some((BufReader::new(r), w));
    }
    let Some((read, write)) = conn.as_mut() else {
        return Err(SendError::Closed);
    };
    write
        .write_all(frame.as_bytes())
        .await
        .map_err(SendError::Io)?;
    let mut answer = Vec::with_capacity(128);
    let n = tokio::time::timeout(cfg.ack_timeout, read.read_until(b'\r', &mut answer))
        .await
        .map_err(|_| SendError::Timeout)?
        .map_err(SendError::Io)?;
    if n == 0 {
        return Err(SendError::Closed);
    }
    let decoded = frame::decode(&answer, |_| cfg.key.clone()).map_err(SendError::Answer)?;
    // An ACK counts only for this frame, and (when encrypted) only if it decrypts with our
    // key: anything else could be an answer to another frame, or forged.
    let id = match decoded.id {
        MessageId::Ack
            if decoded.seq == msg.seq
                && decoded.route.account.eq_ignore_ascii_case(&msg.account)
                && decoded.encrypted == cfg.key.is_some() =>
        {
            MessageId::Ack
        }
        MessageId::Ack => {
            return Err(SendError::Answer(FrameError::Format(
                "ACK for another frame",
            )));
        }
        other => other,
    };
    Ok(id)
}
