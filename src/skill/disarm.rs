//! Disarm, with the voice duress PIN.
//!
//! What a duress disarm must share with a normal disarm by the same member (duress-domain.md D4):
//! the reply, the work done and its order, the store writes, the panel call (where `duress: true`
//! is the only difference), the audit entry and the throttle change. To keep it that way, both
//! kinds go through one path below; the kind only ever becomes a boolean inside the panel
//! request and a sealed tag in the outbox record.
//!
//! Order of work:
//! 1. Verify the account token; resolve the panel within the account (a foreign or unknown
//!    panel ends here with NO_SUCH_ENDPOINT, before any code is evaluated).
//! 2. Read the household's codes and throttle state (one store read).
//! 3. Verify the PIN against every code, in constant time, even during a lockout.
//! 4. Decide, and write the decision in one conditional transaction: the throttle change, and
//!    for every attempt that goes to the panel an outbox record of fixed shape. The disarm
//!    intent is durable before the panel is called.
//! 5. Call the panel cloud: `disarm` for an accepted code; `signal` during a lockout, where
//!    every code gets the same refusal but a duress PIN still raises its silent alarm.
//! 6. Settle the outbox record and write the audit entry (one transaction), then reply.
//!
//! If the panel call fails, the record stays pending; the re-delivery worker
//! (crate::redelivery) delivers a duress flag later and closes a normal one.

use chrono::Duration;

use crate::alexa::{Context, ErrorType, Message, PinAuthorization};
use crate::deadline::Deadline;
use crate::panel::{DisarmRequest, Notice, PanelError, SignalRequest, Source};
use crate::secret::BearerToken;
use crate::store::{
    AuditEntry, HouseholdSnapshot, OutboxRecord, OutboxStatus, Settlement, StoreError,
};
use crate::voice_codes::{CodeKind, Gate, Keyring, Lockout, Throttle, verify};

use super::endpoints::panel_properties;
use super::{Fail, Skill, no_such_endpoint, panel_failure, panel_target};

/// How long a pending outbox record belongs to the invocation that wrote it. Longer than any
/// directive can run, so the worker never races an in-flight panel call.
pub const OUTBOX_GRACE: Duration = Duration::seconds(10);

const SEAL_DOMAIN: &[u8] = b"alarm-skill/outbox/v1";
const ATTEMPTS: usize = 3;
/// Every UNAUTHORIZED reply carries this same message, lockout or not.
const NOT_ACCEPTED: &str = "the voice code was not accepted";

fn seal_tag(
    keyring: &Keyring,
    pepper_id: &str,
    request_id: &str,
    kind: Option<CodeKind>,
) -> (Option<()>, [u8; 32]) {
    let k: &[u8] = match kind {
        Some(CodeKind::Normal) => b"normal",
        Some(CodeKind::Duress) => b"duress",
        None => b"nomatch",
    };
    keyring.mac(pepper_id, &[SEAL_DOMAIN, request_id.as_bytes(), k])
}

/// `{pepper_id}.{hex tag}`: the same length whatever the kind, and unreadable without the pepper.
pub fn outbox_seal(keyring: &Keyring, request_id: &str, kind: Option<CodeKind>) -> String {
    let id = keyring.current_id();
    let (_, tag) = seal_tag(keyring, id, request_id, kind);
    format!("{id}.{}", hex::encode(tag))
}

/// Whether a seal marks a duress attempt. `None` if the seal can't be read (unknown pepper).
pub fn seal_is_duress(keyring: &Keyring, request_id: &str, seal: &str) -> Option<bool> {
    let (pepper_id, tag) = seal.split_once('.')?;
    let (known, duress) = seal_tag(keyring, pepper_id, request_id, Some(CodeKind::Duress));
    known?;
    Some(hex::encode(duress) == tag)
}

/// What the read-decide-write step concluded.
enum Plan {
    /// Refused (wrong code, or no code where one is required); maybe a lockout just started.
    Refused { lockout: Option<Lockout> },
    /// Relay a disarm. `who` is the member's name for the audit log.
    Disarm {
        record: OutboxRecord,
        who: String,
        duress: bool,
    },
    /// Locked out: refuse, but tell the panel cloud (which raises a duress silently).
    Locked { record: OutboxRecord, duress: bool },
}

fn audit(at: chrono::DateTime<chrono::Utc>, actor: &str, message: String) -> AuditEntry {
    AuditEntry {
        at,
        actor: actor.to_string(),
        message,
    }
}

fn humanize(d: Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s % 3600 == 0 && s >= 3600 => plural(s / 3600, "hour"),
        s if s % 60 == 0 && s >= 120 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn lockout_text(l: &Lockout, now: chrono::DateTime<chrono::Utc>) -> String {
    match l.until {
        Some(until) => format!(
            "Voice disarm locked for {} after {} wrong voice codes in a row",
            humanize(until - now),
            l.failures
        ),
        None => format!(
            "Voice disarm locked after {} wrong voice codes in a row; the household admin must reset it",
            l.failures
        ),
    }
}

fn unauthorized() -> Fail {
    (ErrorType::Unauthorized, NOT_ACCEPTED.to_string())
}

fn store_failure(e: StoreError) -> Fail {
    tracing::error!(error = %e, "store failed during disarm");
    (
        ErrorType::InternalError,
        "the skill could not record the request".to_string(),
    )
}

impl Skill {
    pub(super) async fn disarm(
        &self,
        correlation: Option<&str>,
        endpoint_id: &str,
        token: &BearerToken,
        authorization: Option<PinAuthorization>,
        deadline: Deadline,
    ) -> Result<Message, Fail> {
        let identity = self.identify(token).await?;
        let panel_id = panel_target(endpoint_id)?;
        let account = identity.account.as_str();
        // Ownership first. Only a definite "not in this account" stops here: during an outage a
        // duress PIN must still be recorded and relayed.
        if let Err(PanelError::NotFound) =
            self.deps.panels.panel(account, &panel_id, deadline).await
        {
            return Err(no_such_endpoint(endpoint_id));
        }
        match self
            .decide_and_record(account, &panel_id, authorization.as_ref())
            .await?
        {
            Plan::Refused { lockout } => {
                if let Some(l) = lockout {
                    let notice = Notice {
                        kind: "voice_pin_lockout".to_string(),
                        message: lockout_text(&l, self.deps.clock.now()),
                    };
                    // The refusal stands whether or not the admin could be told right now.
                    if let Err(e) = self.deps.panels.notify(account, &notice, deadline).await {
                        tracing::warn!(error = %e, "could not notify the household admin of a lockout");
                    }
                }
                Err(unauthorized())
            }
            Plan::Locked { record, duress } => {
                let request = SignalRequest {
                    member: record.member,
                    source: Source::Voice,
                    duress,
                    request_id: record.request_id.clone(),
                };
                let result = self
                    .deps
                    .panels
                    .signal(account, &panel_id, &request, deadline)
                    .await;
                self.settle(&record, result.as_ref().err(), None).await;
                Err(unauthorized())
            }
            Plan::Disarm {
                record,
                who,
                duress,
            } => {
                let request = DisarmRequest {
                    member: record.member,
                    source: Source::Voice,
                    duress,
                    request_id: record.request_id.clone(),
                };
                let result = self
                    .deps
                    .panels
                    .disarm(account, &panel_id, &request, deadline)
                    .await;
                let now = self.deps.clock.now();
                match result {
                    Ok(panel) => {
                        let entry =
                            audit(now, &who, format!("{who} disarmed {} by voice", panel.name));
                        self.settle(&record, None, Some(entry)).await;
                        Ok(Message::response(
                            correlation,
                            endpoint_id,
                            Context {
                                properties: panel_properties(&panel),
                            },
                        ))
                    }
                    Err(e) => {
                        let entry = audit(
                            now,
                            &who,
                            format!("{who}'s voice disarm of {panel_id} failed: {e}"),
                        );
                        self.settle(&record, Some(&e), Some(entry)).await;
                        Err(panel_failure(endpoint_id, &panel_id, &e))
                    }
                }
            }
        }
    }

    /// Steps 2–4: read, decide, write; re-read when a concurrent attempt won the write.
    async fn decide_and_record(
        &self,
        account: &str,
        panel_id: &str,
        authorization: Option<&PinAuthorization>,
    ) -> Result<Plan, Fail> {
        let store = &self.deps.store;
        for _ in 0..ATTEMPTS {
            let snapshot = store.household(account).await.map_err(store_failure)?;
            let now = self.deps.clock.now();
            let d = self.decide(account, panel_id, &snapshot, authorization, now);
            let written = match &d.throttle {
                Some(t) => store.record_attempt(account, t, d.record(), &d.audit).await,
                None => {
                    let mut r = Ok(());
                    for entry in &d.audit {
                        r = r.and(store.append_audit(account, entry).await);
                    }
                    r
                }
            };
            match written {
                Ok(()) => return Ok(d.plan),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(store_failure(e)),
            }
        }
        Err(store_failure(StoreError::Conflict))
    }

    fn decide(
        &self,
        account: &str,
        panel_id: &str,
        snap: &HouseholdSnapshot,
        authorization: Option<&PinAuthorization>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Decision {
        let policy = &self.settings.throttle;
        let keyring = &self.deps.keyring;
        let record = |member: Option<u16>, kind: Option<CodeKind>| {
            let request_id = uuid::Uuid::new_v4().to_string();
            OutboxRecord {
                seal: outbox_seal(keyring, &request_id, kind),
                request_id,
                household: account.to_string(),
                panel: panel_id.to_string(),
                member,
                created_at: now,
                status: OutboxStatus::Pending,
                attempts: 0,
                next_attempt_at: now + OUTBOX_GRACE,
            }
        };
        let Some(auth) = authorization else {
            if snap.profile.pinless_disarm_allowed() {
                return Decision {
                    plan: Plan::Disarm {
                        record: record(None, Some(CodeKind::Normal)),
                        who: "Alexa voice PIN".to_string(),
                        duress: false,
                    },
                    throttle: Some(snap.throttle.clone()),
                    audit: vec![],
                };
            }
            return Decision {
                plan: Plan::Refused { lockout: None },
                throttle: None,
                audit: vec![audit(
                    now,
                    "voice",
                    "Voice disarm refused: no voice code was given (set the Alexa app to use \
                     the existing PIN)"
                        .to_string(),
                )],
            };
        };
        // Computed on every path, lockout included, so the work never depends on the state.
        let verified = verify(keyring, account, &snap.profile, &auth.pin);
        let member = verified.map(|v| &snap.profile.members[v.member]);
        let kind = verified.map(|v| v.kind);
        let duress = kind == Some(CodeKind::Duress);
        match policy.gate(&snap.throttle, now) {
            Gate::Locked { .. } => Decision {
                plan: Plan::Locked {
                    record: record(member.map(|m| m.user_number), kind),
                    duress,
                },
                throttle: Some(snap.throttle.clone()),
                audit: vec![audit(
                    now,
                    "voice",
                    "Voice disarm refused: voice codes are locked".to_string(),
                )],
            },
            Gate::Open => match member {
                None => {
                    let (next, lockout) = policy.after_failure(&snap.throttle, now);
                    let mut entries = vec![audit(
                        now,
                        "voice",
                        "Voice disarm refused: wrong voice code".to_string(),
                    )];
                    if let Some(l) = &lockout {
                        entries.push(audit(now, "system", lockout_text(l, now)));
                    }
                    Decision {
                        plan: Plan::Refused { lockout },
                        throttle: Some(next),
                        audit: entries,
                    }
                }
                Some(m) => Decision {
                    plan: Plan::Disarm {
                        record: record(Some(m.user_number), kind),
                        who: m.name.clone(),
                        duress,
                    },
                    throttle: Some(policy.after_success(&snap.throttle)),
                    audit: vec![],
                },
            },
        }
    }

    /// Step 6. A failure here doesn't change the reply: the record stays pending and the
    /// re-delivery worker settles it (re-sending a duress flag is deduplicated by request id).
    async fn settle(
        &self,
        record: &OutboxRecord,
        error: Option<&PanelError>,
        entry: Option<AuditEntry>,
    ) {
        let settlement = match error {
            None => Settlement::Delivered,
            // Not in this account: there is nothing to deliver to, now or later.
            Some(PanelError::NotFound) => Settlement::Closed,
            Some(_) => Settlement::Retry {
                attempts: 1,
                next_attempt_at: self.deps.clock.now(),
            },
        };
        let audit = entry.as_ref().map(|e| (record.household.as_str(), e));
        if let Err(e) = self
            .deps
            .store
            .settle_outbox(&record.request_id, &settlement, audit)
            .await
        {
            tracing::error!(error = %e, request_id = %record.request_id, "could not settle outbox record");
        }
    }
}

struct Decision {
    plan: Plan,
    /// The throttle state to write (conditional on its version); `None` writes audit only.
    throttle: Option<Throttle>,
    audit: Vec<AuditEntry>,
}

impl Decision {
    fn record(&self) -> Option<&OutboxRecord> {
        match &self.plan {
            Plan::Disarm { record, .. } | Plan::Locked { record, .. } => Some(record),
            Plan::Refused { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn seals_hide_the_kind_but_the_keyring_reads_it() {
        let peppers: BTreeMap<String, Vec<u8>> = [("p1".to_string(), vec![3u8; 32])].into();
        let k = Keyring::new("p1", peppers).unwrap();
        let d = outbox_seal(&k, "req-1", Some(CodeKind::Duress));
        let n = outbox_seal(&k, "req-1", Some(CodeKind::Normal));
        let x = outbox_seal(&k, "req-1", None);
        assert_eq!(d.len(), n.len());
        assert_eq!(d.len(), x.len());
        assert_eq!(seal_is_duress(&k, "req-1", &d), Some(true));
        assert_eq!(seal_is_duress(&k, "req-1", &n), Some(false));
        assert_eq!(seal_is_duress(&k, "req-1", &x), Some(false));
        // A seal can't be moved to another request.
        assert_eq!(seal_is_duress(&k, "req-2", &d), Some(false));
        assert_eq!(seal_is_duress(&k, "req-1", "gone.00"), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::seconds(90)), "90 seconds");
        assert_eq!(humanize(Duration::minutes(15)), "15 minutes");
        assert_eq!(humanize(Duration::hours(1)), "1 hour");
    }
}
