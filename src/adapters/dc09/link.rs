//! One DC-09 exchange with a receiver over TCP: connect, send a frame, read the answer and tell
//! whether it acknowledges that frame. Shared by the durable [`super::transmitter`] (one
//! connection kept across many frames) and the one-shot [`super::sender`] (a connection per
//! event), so both read and check answers the same way.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::wire::dc09::frame::{self, FrameError, Key, MessageId};

/// An open connection to a receiver.
pub(crate) type Connection = (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
);

#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
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

/// Opens a connection within `timeout`.
pub(crate) async fn connect(
    receiver: impl ToSocketAddrs,
    timeout: Duration,
) -> Result<Connection, SendError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(receiver))
        .await
        .map_err(|_| SendError::Timeout)?
        .map_err(SendError::Connect)?;
    // A frame is one small write that waits for its answer: Nagle would only delay it.
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    Ok((BufReader::new(r), w))
}

/// What a frame is expected to be answered as: the answer must echo these, or it is an answer
/// to another frame (or forged).
pub(crate) struct Expect<'a> {
    pub seq: u16,
    pub account: &'a str,
    pub key: Option<&'a Key>,
}

/// Sends `frame` on `conn` and reads one answer within `timeout`: its type, an ACK only if it
/// answers this very frame.
pub(crate) async fn exchange(
    conn: &mut Connection,
    frame: &str,
    expect: &Expect<'_>,
    timeout: Duration,
) -> Result<MessageId, SendError> {
    let (read, write) = conn;
    write
        .write_all(frame.as_bytes())
        .await
        .map_err(SendError::Io)?;
    let mut answer = Vec::with_capacity(128);
    let n = tokio::time::timeout(timeout, read.read_until(b'\r', &mut answer))
        .await
        .map_err(|_| SendError::Timeout)?
        .map_err(SendError::Io)?;
    if n == 0 {
        return Err(SendError::Closed);
    }
    let decoded = frame::decode(&answer, |_| expect.key.cloned()).map_err(SendError::Answer)?;
    // An ACK counts only for this frame, and (when encrypted) only if it decrypts with our
    // key: anything else could be an answer to another frame, or forged.
    match decoded.id {
        MessageId::Ack
            if decoded.seq == expect.seq
                && decoded.route.account.eq_ignore_ascii_case(expect.account)
                && decoded.encrypted == expect.key.is_some() =>
        {
            Ok(MessageId::Ack)
        }
        MessageId::Ack => Err(SendError::Answer(FrameError::Format(
            "ACK for another frame",
        ))),
        other => Ok(other),
    }
}
