//! The skill's second path: one Contact ID event sent straight to a household's monitoring
//! center ([`AlarmReceiver`]), when the panel cloud could not take a voice attempt. One TCP
//! connection per event, one frame, one answer, all within the caller's deadline; what it
//! can't deliver stays with the caller (the outbox record), which sends it again later with
//! the same sequence number and time of occurrence.
//!
//! Equal work: a duress (121) and a normal attempt (350, communication trouble) are one frame
//! each, of one length (both `1EEE PP CCC`, the member's user number in CCC; encrypted frames
//! pad both alike), sent the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::adapters::secrets::{self, SecretRef};
use crate::common::clock::Clock;
use crate::common::deadline::Deadline;
use crate::common::secret::Secret;
use crate::domain::ports::monitoring::{
    AlarmReceiver, MonitoringLink, ReceiverError, ReceiverEvent, ReceiverEventKind,
};
use crate::wire::dc09::contact_id::{NEW_EVENT, codes};
use crate::wire::dc09::frame::{self, Cid, Key, MessageId, Route};

use super::link::{self, Expect, SendError};
use super::transmitter::SentFrame;

/// Frames kept for inspection at most (tests, CI's decoding of captured frames).
const SENT_LOG_MAX: usize = 10_000;

/// The only Secrets Manager names a link's `key_ref` may give (docs/deploy.md): the panel
/// cloud names the key, so without a fence a cloud (or whoever took it over) could have the
/// skill read any secret its role can, the pepper included, and use it on the wire. The
/// template grants the functions these names and no others.
pub const KEY_PREFIX: &str = "alarm-skill/dc09/";

/// Whether `key_ref` names a secret under [`KEY_PREFIX`]: the name itself, or an ARN of one.
pub fn key_ref_allowed(key_ref: &str) -> bool {
    let name = match key_ref.split_once(":secret:") {
        Some((arn, name)) if arn.starts_with("arn:") => name,
        _ => key_ref,
    };
    name.starts_with(KEY_PREFIX) && name.len() > KEY_PREFIX.len()
}

/// Sends [`ReceiverEvent`]s over SIA DC-09. Keys are read through the function's secrets
/// machinery by the link's `key_ref` (a Secrets Manager id in production, a name given with
/// [`Dc09Sender::with_key`] locally) and kept for the life of the process.
pub struct Dc09Sender {
    clock: Arc<dyn Clock>,
    secrets: Option<aws_sdk_secretsmanager::Client>,
    named: HashMap<String, Secret>,
    keys: Mutex<HashMap<String, Key>>,
    sent: Option<Mutex<Vec<SentFrame>>>,
}

impl Dc09Sender {
    /// `secrets` reads the keys links name; without it only [`Dc09Sender::with_key`]'s are known.
    pub fn new(clock: Arc<dyn Clock>, secrets: Option<aws_sdk_secretsmanager::Client>) -> Self {
        Dc09Sender {
            clock,
            secrets,
            named: HashMap::new(),
            keys: Mutex::new(HashMap::new()),
            sent: None,
        }
    }

    /// Knows the key `key_ref` names without asking Secrets Manager (the local stack's center).
    pub fn with_key(mut self, key_ref: &str, hex_key: Secret) -> Self {
        self.named.insert(key_ref.to_string(), hex_key);
        self
    }

    /// Keeps every frame sent, for inspection ([`Dc09Sender::sent`]).
    pub fn recording(mut self) -> Self {
        self.sent = Some(Mutex::new(vec![]));
        self
    }

    /// The frames sent so far, when recording.
    pub fn sent(&self) -> Vec<SentFrame> {
        self.sent
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    async fn key(&self, key_ref: &str) -> Result<Key, ReceiverError> {
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_ref)
        {
            return Ok(k.clone());
        }
        let source = match self.named.get(key_ref) {
            Some(v) => SecretRef::Value(v.clone()),
            None if key_ref_allowed(key_ref) => SecretRef::Aws(key_ref.to_string()),
            None => {
                return Err(ReceiverError::Config(format!(
                    "key {key_ref}: not a secret under {KEY_PREFIX}"
                )));
            }
        };
        let hex_key = secrets::resolve("DC09_KEY", &source, self.secrets.as_ref())
            .await
            .map_err(|e| ReceiverError::Config(e.to_string()))?;
        let key = Key::from_hex(&hex_key)
            .map_err(|e| ReceiverError::Config(format!("key {key_ref}: {e}")))?;
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_ref.to_string(), key.clone());
        Ok(key)
    }

    async fn send(
        &self,
        link: &MonitoringLink,
        event: &ReceiverEvent,
        deadline: Deadline,
    ) -> Result<(), ReceiverError> {
        let key = match &link.key_ref {
            Some(r) => Some(self.key(r).await?),
            None => None,
        };
        let route = route(link)?;
        let cid = cid(event);
        let built = frame::encode_event(
            event.sequence,
            &route,
            Some(&cid),
            event.occurred,
            self.clock.now(),
            key.as_ref(),
        )
        .map_err(|e| ReceiverError::Config(e.to_string()))?;
        let expect = Expect {
            seq: event.sequence,
            account: &link.account,
            key: key.as_ref(),
        };
        let answer = async {
            let mut conn = link::connect(link.receiver.as_str(), deadline.remaining()).await?;
            link::exchange(&mut conn, &built, &expect, deadline.remaining()).await
        }
        .await;
        self.record(link, event, &cid, &built, key.is_some(), &answer);
        match answer {
            Ok(MessageId::Ack) => Ok(()),
            Ok(other) => Err(ReceiverError::Refused(format!("{other:?}"))),
            Err(SendError::Timeout) => Err(ReceiverError::Timeout),
            Err(e) => Err(ReceiverError::Unreachable(e.to_string())),
        }
    }

    fn record(
        &self,
        link: &MonitoringLink,
        event: &ReceiverEvent,
        cid: &Cid,
        built: &str,
        encrypted: bool,
        answer: &Result<MessageId, SendError>,
    ) {
        let Some(sent) = &self.sent else { return };
        let mut sent = sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() >= SENT_LOG_MAX {
            return;
        }
        sent.push(SentFrame {
            account: link.account.clone(),
            seq: event.sequence,
            attempt: 1,
            encrypted,
            frame: built.trim_matches(['\n', '\r']).to_string(),
            answer: match answer {
                Ok(id) => format!("{id:?}").to_uppercase(),
                Err(e) => e.to_string(),
            },
            qualifier: cid.qualifier,
            code: format!("{:03}", cid.event),
            partition: cid.partition,
            number: cid.number,
        });
    }
}

/// The frame's route: `R` and `L` from the link, checked as DC-09 wants them.
fn route(link: &MonitoringLink) -> Result<Route, ReceiverError> {
    let numbers_ok = frame::valid_account(&link.account)
        && frame::valid_prefix(&link.line)
        && link
            .receiver_number
            .as_deref()
            .is_none_or(frame::valid_prefix);
    if !numbers_ok {
        return Err(ReceiverError::Config(
            "account, line or receiver number is not DC-09 hex".to_string(),
        ));
    }
    Ok(Route {
        receiver: link.receiver_number.clone(),
        prefix: link.line.clone(),
        account: link.account.clone(),
    })
}

/// The Contact ID event of an attempt: only the event code tells the kinds apart, and both
/// codes have three digits.
fn cid(event: &ReceiverEvent) -> Cid {
    let code = match event.kind {
        ReceiverEventKind::Duress => codes::DURESS,
        ReceiverEventKind::CommunicationTrouble => codes::COMMUNICATION_TROUBLE,
    };
    Cid {
        qualifier: NEW_EVENT,
        event: code.parse().unwrap_or_default(),
        partition: event.partition,
        number: event.user,
    }
}

#[async_trait]
impl AlarmReceiver for Dc09Sender {
    async fn transmit(
        &self,
        link: &MonitoringLink,
        event: &ReceiverEvent,
        deadline: Deadline,
    ) -> Result<(), ReceiverError> {
        tokio::time::timeout(deadline.remaining(), self.send(link, event, deadline))
            .await
            .unwrap_or(Err(ReceiverError::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(kind: ReceiverEventKind) -> ReceiverEvent {
        ReceiverEvent {
            kind,
            user: 5,
            partition: 1,
            occurred: Utc::now(),
            sequence: 42,
        }
    }

    #[test]
    fn both_kinds_are_one_event_of_one_length() {
        let link = MonitoringLink {
            receiver: "127.0.0.1:1".into(),
            account: "1234".into(),
            line: "2".into(),
            receiver_number: Some("1".into()),
            key_ref: None,
        };
        let frame_of = |kind| {
            let e = event(kind);
            frame::encode_event(
                e.sequence,
                &route(&link).unwrap(),
                Some(&cid(&e)),
                e.occurred,
                e.occurred,
                None,
            )
            .unwrap()
        };
        let duress = frame_of(ReceiverEventKind::Duress);
        let normal = frame_of(ReceiverEventKind::CommunicationTrouble);
        assert!(duress.contains("|1121 01 005]"), "{duress}");
        assert!(normal.contains("|1350 01 005]"), "{normal}");
        assert!(duress.contains("\"ADM-CID\"0042R1L2#1234["), "{duress}");
        assert_eq!(duress.len(), normal.len());
    }

    #[test]
    fn only_secrets_under_the_prefix_are_read_as_keys() {
        for ok in [
            "alarm-skill/dc09/center-1",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:alarm-skill/dc09/center-1-AbCdEf",
        ] {
            assert!(key_ref_allowed(ok), "{ok}");
        }
        for refused in [
            "alarm-skill/pepper",
            "alarm-skill/dc09/",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:alarm-skill/pepper-AbCdEf",
            "other/alarm-skill/dc09/x",
            "nowhere",
        ] {
            assert!(!key_ref_allowed(refused), "{refused}");
        }
    }

    /// A link naming a secret outside the prefix is refused before Secrets Manager is asked.
    #[tokio::test]
    async fn a_key_outside_the_prefix_is_refused_without_asking_secrets_manager() {
        let sender = Dc09Sender::new(Arc::new(crate::common::clock::SystemClock), None);
        let e = sender.key("alarm-skill/pepper").await;
        assert!(
            matches!(&e, Err(ReceiverError::Config(m)) if m.contains(KEY_PREFIX)),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn nobody_listening_is_unreachable_within_the_deadline() {
        let sender = Dc09Sender::new(Arc::new(crate::common::clock::SystemClock), None);
        let link = MonitoringLink {
            receiver: crate::adapters::dc09::unused_addr().to_string(),
            account: "1234".into(),
            line: "2".into(),
            receiver_number: None,
            key_ref: Some("nowhere".into()),
        };
        let send = |link: MonitoringLink| {
            let sender = &sender;
            async move {
                let deadline = Deadline::after(std::time::Duration::from_secs(2));
                let event = event(ReceiverEventKind::Duress);
                sender.transmit(&link, &event, deadline).await
            }
        };
        // A key nobody can read is the link's fault, said before anything is sent.
        let e = send(link.clone()).await;
        assert!(matches!(e, Err(ReceiverError::Config(_))), "{e:?}");
        let e = send(MonitoringLink {
            key_ref: None,
            ..link
        })
        .await;
        assert!(matches!(e, Err(ReceiverError::Unreachable(_))), "{e:?}");
    }
}
