//! The household's monitoring center, and the skill's own line to it: the second path that
//! carries an attempt's Contact ID event over SIA DC-09 when the panel cloud can't take it
//! (docs/panel-api.md, "Monitoring details"). [`AlarmReceiver`] is the port;
//! `crate::adapters::dc09` sends the frames.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::common::deadline::Deadline;

/// Where a panel's monitoring center receives, as the panel cloud reports it. Never the key
/// itself: `key_ref` names the secret that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringLink {
    /// The receiver's address, `host:port`.
    pub receiver: String,
    /// The DC-09 account number (`#acct`: 3–16 hex digits).
    pub account: String,
    /// `L`: the account prefix (line number), 1–6 hex digits.
    pub line: String,
    /// `R`: the receiver number (1–6 hex digits), if the receiver wants one. Absent, not null,
    /// when none (the contract's schema: a string when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_number: Option<String>,
    /// The name of the secret holding the center's AES-128 key (32 hex digits); `None` for a
    /// line the center runs unencrypted (absent, not null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<String>,
}

/// What the second path reports for an attempt the panel cloud could not take. Both kinds are
/// one Contact ID event with the member's user number, of one length on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverEventKind {
    /// Contact ID 121, duress.
    Duress,
    /// A normal attempt: a communication trouble (the panel cloud could not be reached), which
    /// a center wants to know about too, and which reports no disarm.
    CommunicationTrouble,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverEvent {
    pub kind: ReceiverEventKind,
    /// The member's user number at the panel (Contact ID CCC).
    pub user: u16,
    pub partition: u8,
    /// When the code was spoken: DC-09's time of occurrence (`[H...]`), the same on every
    /// re-send and on the panel cloud's path, so the center can tell one attempt from another.
    pub occurred: DateTime<Utc>,
    /// DC-09's sequence number (1–9999): the same on every re-send of one attempt.
    pub sequence: u16,
}

impl ReceiverEvent {
    /// The event of one voice attempt: its kind from the attempt's duress flag, the member's
    /// user number (0 when no member was recognised), spoken at `occurred`. The sequence number
    /// comes from the request id, so every re-send of the attempt (the directive's, the
    /// worker's) carries the same one.
    pub fn of_attempt(
        duress: bool,
        member: Option<u16>,
        occurred: DateTime<Utc>,
        request_id: &str,
    ) -> ReceiverEvent {
        // FNV-1a: a stable spread of request ids over DC-09's 1–9999.
        let hash = request_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        ReceiverEvent {
            kind: if duress {
                ReceiverEventKind::Duress
            } else {
                ReceiverEventKind::CommunicationTrouble
            },
            user: member.unwrap_or(0),
            partition: 1,
            occurred,
            sequence: u16::try_from(hash % 9999 + 1).unwrap_or(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("receiver unreachable: {0}")]
    Unreachable(String),
    #[error("no answer from the receiver in time")]
    Timeout,
    /// NAK or DUH: the receiver would not take the frame as sent.
    #[error("receiver refused the frame: {0}")]
    Refused(String),
    /// The link names a key that could not be read, or the details are unusable.
    #[error("monitoring link misconfigured: {0}")]
    Config(String),
}

#[async_trait]
pub trait AlarmReceiver: Send + Sync {
    /// Sends `event` to the center of `link` and waits for its ACK, all before `deadline`.
    async fn transmit(
        &self,
        link: &MonitoringLink,
        event: &ReceiverEvent,
        deadline: Deadline,
    ) -> Result<(), ReceiverError>;
}

impl MonitoringLink {
    /// The first field whose value breaks the contract's formats (docs/panel-api.md,
    /// "Monitoring details"), by name only: `key_ref` may be a secret's name someone wants kept
    /// out of logs, and a value pasted by mistake could be the key itself.
    pub fn off_format(&self) -> Option<&'static str> {
        use crate::wire::dc09::frame::{valid_account, valid_prefix};
        if !valid_receiver(&self.receiver) {
            Some("receiver")
        } else if !valid_account(&self.account) {
            Some("account")
        } else if !valid_prefix(&self.line) {
            Some("line")
        } else if self
            .receiver_number
            .as_deref()
            .is_some_and(|r| !valid_prefix(r))
        {
            Some("receiver_number")
        } else if self.key_ref.as_deref().is_some_and(|k| !valid_key_ref(k)) {
            Some("key_ref")
        } else {
            None
        }
    }
}

/// `host:port`: a DNS name or IPv4 address, or an IPv6 address in brackets; a port 1–65535.
pub fn valid_receiver(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            (1..=253).contains(&host.len())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }
    };
    port_ok && host_ok
}

/// The name of a secret (1–512 characters, no spaces or controls), never the key: 32 hex digits
/// are what an AES-128 key looks like, and a link carrying one is refused rather than trusted.
pub fn valid_key_ref(s: &str) -> bool {
    let looks_like_a_key = s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (1..=512).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) && !looks_like_a_key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> MonitoringLink {
        MonitoringLink {
            receiver: "receiver.example.net:9000".into(),
            account: "1234".into(),
            line: "2".into(),
            receiver_number: Some("1".into()),
            key_ref: Some("arn:aws:secretsmanager:eu-west-1:1:secret:dc09-1234".into()),
        }
    }

    #[test]
    fn details_off_the_formats_name_the_field() {
        assert_eq!(link().off_format(), None);
        let v6 = MonitoringLink {
            receiver: "[::1]:9000".into(),
            receiver_number: None,
            key_ref: None,
            ..link()
        };
        assert_eq!(v6.off_format(), None);
        type Edit = fn(&mut MonitoringLink);
        let cases: [(&str, Edit); 11] = [
            ("receiver", |l| l.receiver = "receiver.example.net".into()),
            ("receiver", |l| l.receiver = "receiver.example.net:0".into()),
            ("receiver", |l| {
                l.receiver = "receiver.example.net:70000".into()
            }),
            ("receiver", |l| l.receiver = "::1:9000".into()),
            ("receiver", |l| l.receiver = "a b:9000".into()),
            ("account", |l| l.account = "12".into()),
            ("account", |l| l.account = "12345678901234567".into()),
            ("account", |l| l.account = "12G4".into()),
            ("line", |l| l.line = "1234567".into()),
            ("receiver_number", |l| {
                l.receiver_number = Some(String::new())
            }),
            ("key_ref", |l| {
                l.key_ref = Some("30313233343536373839414243444546".into())
            }),
        ];
        for (field, edit) in cases {
            let mut l = link();
            edit(&mut l);
            assert_eq!(l.off_format(), Some(field), "{l:?}");
        }
    }
}
