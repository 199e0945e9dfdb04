//! A DC-09 transmitter of the tests' own: one Contact ID frame, built with the crate's codec,
//! over a TCP connection of its own to a real receiver, and the receiver's answer. What a
//! second transmitter on another line of an account (the skill's second path) sends.

use std::net::SocketAddr;

use alarm_skill::wire::dc09::frame::{self, Cid, Frame, Key, Route};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A new event (qualifier 1) of `code` with user number `user`, partition 1.
pub fn event(code: u16, user: u16) -> Cid {
    Cid {
        qualifier: 1,
        event: code,
        partition: 1,
        number: user,
    }
}

/// `L<line>#<account>` with receiver number 1.
pub fn route(account: &str, line: &str) -> Route {
    Route {
        receiver: Some("1".into()),
        prefix: line.into(),
        account: account.into(),
    }
}

/// Sends `cid` that occurred at `occurred` as message `seq`, stamped `now` (the receiver's
/// clock): the frame sent, and the answer decoded.
pub async fn send(
    receiver: SocketAddr,
    route: &Route,
    seq: u16,
    cid: &Cid,
    occurred: DateTime<Utc>,
    now: DateTime<Utc>,
    key: Option<&Key>,
) -> (String, Frame) {
    let f = frame::encode_event(seq, route, Some(cid), occurred, now, key).expect("frame");
    let mut conn = TcpStream::connect(receiver).await.expect("receiver");
    conn.write_all(f.as_bytes()).await.expect("frame sent");
    let mut answer = vec![];
    BufReader::new(conn)
        .read_until(b'\r', &mut answer)
        .await
        .expect("answer");
    let answer = frame::decode(&answer, |_| key.cloned()).expect("an answer frame");
    (f, answer)
}
