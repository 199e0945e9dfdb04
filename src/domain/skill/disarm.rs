//! Disarm, with the voice duress PIN.
//!
//! What a duress disarm must share with a normal disarm by the same member (duress-domain.md D4):
//! the reply, the work done and its order, the store writes, the panel call (where `duress: true`
//! is the only difference), the audit entry and the throttle change. To keep it that way, both
//! kinds go through one path below; the kind only ever becomes a boolean inside the panel
//! request and a sealed value in the outbox record (crate::domain::redelivery::seal).
//!
//! Order of work:
//! 1. Verify the account token; resolve the panel within the account (a panel the cloud says is
//!    not in the account ends here with NO_SUCH_ENDPOINT, before any code is evaluated).
//! 2. Read the household's codes, throttle state and confirmed panels (one store read). A panel
//!    that neither the cloud confirmed in this request nor was confirmed within
//!    [`OWNERSHIP_TTL`] is *held*: the attempt is decided and written like any other, but its
//!    record goes to the household's held lane ([`Lane::Held`], at most
//!    [`crate::domain::ports::store::HELD_PER_HOUSEHOLD`]) and the panel cloud is not called. The re-delivery
//!    worker signals it once the cloud confirms the panel is the account's, and drops it if the
//!    cloud says it is not: nothing reaches the cloud for a panel not proven the account's, a
//!    token holder naming other households' (or made-up) panels fills nothing but its own few
//!    places, and a duress spoken after a week without discovery still reaches the center.
//! 3. Verify the PIN against every code, in constant time, even during a lockout.
//! 4. Decide, and write the decision in one conditional transaction: the throttle change, and
//!    for every attempt that goes to the panel an outbox record of fixed shape. The disarm
//!    intent is durable before the panel is called. A lost race re-reads and decides again.
//! 5. Call the panel cloud: `disarm` for an accepted code; `signal` during a lockout, where
//!    every code gets the same refusal but a duress PIN still raises its silent alarm.
//! 6. Settle the outbox record and write the audit entry (one transaction), then reply.
//!
//! If the panel call fails, the record stays pending and the re-delivery worker (crate::domain::redelivery)
//! re-sends it as a signal until the cloud acknowledges it. An assistant that must hear back
//! sooner than the deadline (Google's quality bar: `answer_by`) gets [`DisarmOutcome::Pending`]
//! for a disarm the cloud has not answered by then: the recorded decision is *handed over*, in
//! one write with its audit line, and the worker sends it as the same `disarm` (same request id)
//! within [`HANDOVER_WINDOW`]. Nothing is left running in the process, and the same happens for
//! every code, so a duress is neither lost nor told apart. If step 4 can't be written (the store
//! is unavailable or throttling, or racing attempts outlast the deadline), the throttle can't
//! vouch for the decision, so the attempt is handled as during a lockout ([`Plan::Unrecorded`]):
//! nothing is disarmed, every code is answered alike, and a duress still reaches the monitoring
//! center. A store fault can neither lose a duress nor open a way around the lockout.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use crate::common::deadline::Deadline;
use crate::common::secret::{BearerToken, Pin};
use crate::domain::ports::monitoring::MonitoringLink;
use crate::domain::ports::panel::{
    AttemptKind, DisarmRequest, Notice, Panel, PanelError, SignalRequest, Source,
};
use crate::domain::ports::store::{
    AuditEntry, ConfirmedPanel, HouseholdSnapshot, Lane, OutboxRecord, Settlement, StoreError,
    ThrottleWrite,
};
use crate::domain::redelivery::seal::{self, Sealed};
use crate::domain::voice_codes::{
    ALEXA_CODE_LEN, CodeKind, Gate, Keyring, Lockout, Throttle, verify,
};
use crate::wire::alexa::{Context, ErrorType, Message, PinAuthorization};

use super::endpoints::panel_properties;
use super::{Fail, Skill, no_such_endpoint, panel_failure, panel_target};

/// How long a pending outbox record belongs to the invocation that wrote it. Longer than any
/// directive can run, so the worker never races an in-flight panel call.
pub const OUTBOX_GRACE: Duration = Duration::seconds(10);

/// How long the panel cloud's word that a panel is in the account stands, when the cloud can't
/// be asked in the request itself (an outage, or a check the deadline cut short). Discovery,
/// Google's SYNC and every disarm's own check renew it. Long enough that a household that used
/// its assistant this week keeps its duress PIN through an outage; short enough that a panel
/// that left the account stops getting records within days.
pub const OWNERSHIP_TTL: Duration = Duration::days(7);
/// A confirmation older than this is written again when the cloud confirms the panel: at most
/// one extra write an hour per panel, whatever the traffic.
const OWNERSHIP_REFRESH: Duration = Duration::hours(1);
/// What a confirmation write may take at most, after the reply's work: it is best effort.
const CONFIRM_BUDGET: StdDuration = StdDuration::from_millis(300);

/// The ownership check gets at most this share of the deadline (and [`OWNERSHIP_CAP`]): a hung
/// panel cloud must leave the store its time to record the attempt, or a duress would be lost.
const OWNERSHIP_SHARE: u32 = 3;
const OWNERSHIP_CAP: StdDuration = StdDuration::from_secs(2);
/// Lost races (concurrent attempts for one household) retried before giving up on recording.
const CONFLICT_RETRIES: u32 = 8;
/// Left of the directive's deadline for the panel call (or a third of the deadline, if less):
/// store calls before it stop in time.
const PANEL_RESERVE: StdDuration = StdDuration::from_millis(800);
/// The least a write after the panel call gets, even when the deadline is (nearly) spent: it is
/// what keeps the audit line. Taken from the reply margin, never past the invocation's end
/// ([`Deadline::grace`]).
const SETTLE_FLOOR: StdDuration = StdDuration::from_millis(250);
/// Below this much time left a lockout notice is skipped (and logged): the panel client makes
/// no attempt in less, and the notice must not push the reply past the function's timeout.
const NOTICE_MIN: StdDuration = StdDuration::from_millis(250);
/// With an answer time (`answer_by`), what the ownership check leaves of it: the decision's
/// write and the start of the disarm call.
const ANSWER_AFTER_CHECK: StdDuration = StdDuration::from_millis(300);
/// The least the disarm call gets under an answer time, even when the work before it ran late
/// (a cold start, a loaded store): a healthy cloud answers in milliseconds, and a call made
/// beats a hand-over that waits for the worker. Within the deadline, and within Google's bar.
const ANSWER_CALL_FLOOR: StdDuration = StdDuration::from_millis(400);
/// How long after a handed-over disarm was spoken the worker may still carry it out; past it,
/// the worker only signals (a duress still reaches the center). Longer than the worker takes
/// to start on AWS (the schedule's minute), short enough that nobody is surprised by a panel
/// disarming long after they asked.
pub const HANDOVER_WINDOW: Duration = Duration::seconds(120);
/// Left of the directive's deadline for the second path when the panel cloud fails (or a third
/// of the deadline, if less): the panel call ends this much earlier for a panel with a
/// monitoring link, whatever the kind of code, so a hung cloud still leaves the center its time.
const RECEIVER_RESERVE: StdDuration = StdDuration::from_millis(1000);
/// Every UNAUTHORIZED reply carries this same message, lockout or not.
const NOT_ACCEPTED: &str = "the voice code was not accepted";

/// One voice attempt as the panel cloud hears of it, and the outbox record it leaves.
struct Attempt {
    record: OutboxRecord,
    member: Option<u16>,
    duress: bool,
}

/// How a decided plan is carried out: whether its decision was written, the reserve left for
/// the panel call, the deadlines, and the panel's monitoring link (the second path).
struct Carry<'a> {
    recorded: bool,
    reserve: StdDuration,
    deadline: Deadline,
    answer_by: Option<Deadline>,
    link: Option<&'a MonitoringLink>,
}

/// What the read-decide-write step concluded.
enum Plan {
    /// Refused (wrong code, or no code where one is required); maybe a lockout just started at
    /// `at`, the decision's own time (the notice must not read the clock again). `attempt` is
    /// what a spoken code turns into should the decision not be recorded (none without a code).
    Refused {
        lockout: Option<Lockout>,
        at: DateTime<Utc>,
        attempt: Option<Attempt>,
    },
    /// Relay a disarm. `who` is the member's name for the audit log.
    Disarm { attempt: Attempt, who: String },
    /// Locked out: refuse, but tell the panel cloud (which raises a duress silently).
    Locked { attempt: Attempt },
    /// The decision could not be written (store failing, or racing attempts outlasting the
    /// deadline), so the throttle can't vouch for it: treated like a lockout. Nothing is
    /// disarmed, every code (right, wrong, duress) gets the same reply and the same signal to
    /// the panel cloud, and a duress still raises its silent alarm. A store fault never opens
    /// a way around the throttle, and never loses a duress.
    Unrecorded { attempt: Attempt },
}

/// A plan, whether its decision was written before the panel call, whether the panel's
/// confirmation is due to be written again, and whether the attempt was held (module docs,
/// step 2): then the panel cloud is not called.
struct Decided {
    plan: Plan,
    recorded: bool,
    reconfirm: bool,
    held: bool,
    /// The panel's monitoring link, as the household's snapshot had it: the second path.
    link: Option<MonitoringLink>,
}

fn audit(at: DateTime<Utc>, actor: &str, message: String) -> AuditEntry {
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

fn lockout_text(l: &Lockout, now: DateTime<Utc>) -> String {
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

/// Why no decision was made: nothing is written, and every code gets the same reply.
enum NotDecided {
    /// The household's codes could not be read: no PIN can be checked.
    NotRead,
    /// The panel is not positively known to be the account's ([`OWNERSHIP_TTL`]) and the store
    /// could not hold the attempt either.
    Unconfirmed,
}

fn store_failure(e: StoreError) -> NotDecided {
    tracing::error!(error = %e, "store failed during disarm");
    NotDecided::NotRead
}

fn store_failure_reply() -> Fail {
    (
        ErrorType::InternalError,
        "the skill could not record the request".to_string(),
    )
}

/// Runs a store call within `budget`; running out of time is an unavailable store.
async fn within<T>(
    budget: StdDuration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(budget, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "no answer within the deadline".into(),
            ))
        })
}

/// A store call before the panel call, which must end by `until`.
async fn before_panel<T>(
    until: Deadline,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    within(until.remaining(), call).await
}

/// Full jitter, 5 ms doubling to 80 ms: concurrent attempts spread out instead of colliding again.
fn conflict_backoff(retry: u32) -> StdDuration {
    let cap = 5u64 << retry.min(4);
    StdDuration::from_millis(rand::rng().random_range(0..=cap))
}

/// What a voice disarm came to, whichever assistant carried it. Each assistant only translates
/// this into its own reply: the work behind it is the same for all of them.
#[derive(Debug)]
pub enum DisarmOutcome {
    /// The panel disarmed; its state afterwards.
    Disarmed(Box<Panel>),
    /// A wrong code, or no code where one is required.
    NotAccepted,
    /// Voice codes are locked, by this attempt (the wrong code that started the lockout) or
    /// before it: one outcome for every code, right, wrong or duress, so no reply can tell them
    /// apart. An assistant without a lockout answer of its own says [`DisarmOutcome::NotAccepted`]'s.
    LockedOut,
    /// The panel cloud did not answer by the assistant's answer time (`answer_by` of
    /// [`Skill::disarm_panel`]): the disarm was handed to the re-delivery worker, which sends it
    /// again with the same request id. Nothing is claimed about the panel yet.
    Pending,
    /// The attempt could not be recorded (or the codes could not be read): nothing disarmed.
    NotRecorded,
    /// The panel cloud says the panel is not in this account; no code was evaluated.
    NoSuchPanel,
    /// An accepted code, but the panel cloud failed to disarm.
    PanelFailed(PanelError),
}

impl Skill {
    /// Alexa's Disarm: the assistant-neutral [`Skill::disarm_panel`], translated.
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
        // Alexa matches 4-digit codes only: anything else it carries is a wrong code, checked
        // (and counted) like one, so the work is the same.
        let pin = authorization.as_ref().map(|a| {
            if a.pin.expose().len() == ALEXA_CODE_LEN {
                a.pin.clone()
            } else {
                Pin::new("")
            }
        });
        match self
            .disarm_panel(&identity.account, &panel_id, pin.as_ref(), deadline, None)
            .await
        {
            DisarmOutcome::Disarmed(panel) => Ok(Message::response(
                correlation,
                endpoint_id,
                Context {
                    properties: panel_properties(&panel),
                },
            )),
            // Alexa has no lockout error: its one UNAUTHORIZED stands for both.
            DisarmOutcome::NotAccepted | DisarmOutcome::LockedOut => Err(unauthorized()),
            // Alexa's call gives no answer time of its own: never handed over.
            DisarmOutcome::Pending => {
                Err(panel_failure(endpoint_id, &panel_id, &PanelError::Timeout))
            }
            DisarmOutcome::NotRecorded => Err(store_failure_reply()),
            DisarmOutcome::NoSuchPanel => Err(no_such_endpoint(endpoint_id)),
            DisarmOutcome::PanelFailed(e) => Err(panel_failure(endpoint_id, &panel_id, &e)),
        }
    }

    /// The one disarm path every assistant runs (module docs: steps 1–6, after the token).
    /// `pin` is the spoken code, `None` when the assistant sent none. `answer_by`, when the
    /// assistant must hear back before `deadline` (Google's quality bar): the ownership check
    /// and the disarm call end by then, and a disarm call the cloud has not answered by then is
    /// handed to the re-delivery worker ([`DisarmOutcome::Pending`]), whatever the kind of code.
    pub async fn disarm_panel(
        &self,
        account: &str,
        panel_id: &str,
        pin: Option<&Pin>,
        deadline: Deadline,
        answer_by: Option<Deadline>,
    ) -> DisarmOutcome {
        // Ownership first. Only the cloud's definite "not in this account" stops here: during
        // an outage a duress PIN must still be recorded and relayed, so the check gets only a
        // share of the time.
        let reserve = PANEL_RESERVE.min(deadline.remaining() / 3);
        let mut check_cap = (deadline.remaining() / OWNERSHIP_SHARE).min(OWNERSHIP_CAP);
        if let Some(by) = answer_by {
            check_cap = check_cap.min(by.leaving(ANSWER_AFTER_CHECK).remaining());
        }
        let check = deadline.capped(check_cap);
        let (checked, check_error) = match self.deps.panels.panel(account, panel_id, check).await {
            Err(PanelError::NotFound) => {
                // Its confirmation must not outlive the cloud's word that it left.
                self.forget_renewal(account, panel_id);
                let forget = self.deps.store.forget_panel(account, panel_id);
                let budget = CONFIRM_BUDGET.min(deadline.remaining());
                if let Err(e) = within(budget, forget).await {
                    tracing::warn!(error = %e, "could not forget a panel that left the account");
                }
                return DisarmOutcome::NoSuchPanel;
            }
            Ok(panel) => (Some(panel), None),
            Err(e) => (None, Some(e)),
        };
        let Decided {
            plan,
            recorded,
            reconfirm,
            held,
            link,
        } = match self
            .decide_and_record(
                account,
                panel_id,
                pin,
                checked.as_ref(),
                deadline.leaving(reserve),
            )
            .await
        {
            Ok(d) => d,
            Err(NotDecided::NotRead) => return DisarmOutcome::NotRecorded,
            Err(NotDecided::Unconfirmed) => {
                tracing::error!(
                    marker = "disarm_panel_unconfirmed",
                    household = %account,
                    panel = %panel_id,
                    "the panel cloud could not confirm the panel, no recent confirmation is \
                     stored, and the attempt could not be held: nothing sent"
                );
                return DisarmOutcome::NotRecorded;
            }
        };
        if held {
            // Nothing goes to the panel cloud for a panel it has not confirmed lately: the
            // worker signals the held record once it does. The reply is the cloud's failure,
            // the same for every code that would have reached it.
            return match plan {
                Plan::Disarm { .. } => {
                    DisarmOutcome::PanelFailed(check_error.unwrap_or(PanelError::Timeout))
                }
                // A refusal calls no panel (a lockout notice goes to the account's admin).
                Plan::Refused { .. } => {
                    let to = Carry {
                        recorded,
                        reserve,
                        deadline,
                        answer_by: None,
                        link: None,
                    };
                    self.carry_out(account, panel_id, plan, to).await
                }
                Plan::Locked { .. } => DisarmOutcome::LockedOut,
                Plan::Unrecorded { .. } => DisarmOutcome::NotRecorded,
            };
        }
        crate::common::crash::crash_point!(crate::common::crash::DISARM_DECISION_WRITTEN, if recorded);
        let to = Carry {
            recorded,
            reserve,
            deadline,
            answer_by,
            link: link.as_ref(),
        };
        let outcome = self.carry_out(account, panel_id, plan, to).await;
        if reconfirm && let Some(panel) = &checked {
            let now = self.deps.clock.now();
            let panels = [ConfirmedPanel::from(panel)];
            let write = self.deps.store.confirm_panels(account, &panels, now);
            // Never past the directive's deadline: the next confirmation writes it instead.
            let budget = CONFIRM_BUDGET.min(deadline.remaining());
            if let Err(e) = within(budget, write).await {
                tracing::warn!(error = %e, "could not record the panel's confirmation");
            }
        }
        outcome
    }

    /// Steps 5 and 6: the decided plan, carried out.
    async fn carry_out(
        &self,
        account: &str,
        panel_id: &str,
        plan: Plan,
        to: Carry<'_>,
    ) -> DisarmOutcome {
        let Carry {
            recorded,
            reserve,
            deadline,
            answer_by,
            link,
        } = to;
        match plan {
            Plan::Refused { lockout, at, .. } => {
                // A lockout that could not be written is not in force: nothing to announce.
                let lockout = lockout.filter(|_| recorded);
                let outcome = if lockout.is_some() {
                    DisarmOutcome::LockedOut
                } else {
                    DisarmOutcome::NotAccepted
                };
                if let Some(l) = lockout {
                    let notice = Notice {
                        kind: "voice_pin_lockout".to_string(),
                        message: lockout_text(&l, at),
                    };
                    // The refusal stands whether or not the admin could be told right now, and
                    // the reply must arrive: the notice gets only what is left of the deadline.
                    // (The lockout stays visible in the household's app.)
                    if deadline.remaining() < NOTICE_MIN {
                        tracing::warn!(
                            marker = "lockout_notice_skipped",
                            household = %account,
                            "no time left in the directive for the lockout notice"
                        );
                    } else if let Err(e) = self.deps.panels.notify(account, &notice, deadline).await
                    {
                        tracing::warn!(error = %e, "could not notify the household admin of a lockout");
                    }
                }
                outcome
            }
            Plan::Locked { attempt } => {
                self.signal_and_settle(account, panel_id, &attempt, recorded, deadline, link)
                    .await;
                DisarmOutcome::LockedOut
            }
            Plan::Unrecorded { attempt } => {
                self.unrecorded_attempt(
                    account,
                    panel_id,
                    attempt,
                    deadline.leaving(reserve),
                    deadline,
                    link,
                )
                .await;
                DisarmOutcome::NotRecorded
            }
            Plan::Disarm { attempt, who } => {
                let record = &attempt.record;
                let request = DisarmRequest {
                    member: attempt.member,
                    source: Source::Voice,
                    kind: AttemptKind::of(attempt.duress),
                    request_id: record.request_id.clone(),
                    occurred_at: Some(record.created_at),
                };
                let call_by = answer_by.map_or_else(
                    || self.before_second_path(deadline, link),
                    |by| deadline.capped(by.grace(ANSWER_CALL_FLOOR).remaining()),
                );
                let result = self
                    .deps
                    .panels
                    .disarm(account, panel_id, &request, call_by)
                    .await;
                crate::common::crash::crash_point!(crate::common::crash::DISARM_PANEL_ANSWERED);
                let now = self.deps.clock.now();
                match result {
                    // No answer in the assistant's time: maybe disarmed, maybe never received.
                    // The recorded decision goes to the worker, which finishes it.
                    Err(PanelError::Timeout) if answer_by.is_some() && recorded => {
                        self.hand_over(record, &who, panel_id, deadline).await
                    }
                    Ok(panel) => {
                        let entry =
                            audit(now, &who, format!("{who} disarmed {} by voice", panel.name));
                        self.settle(record, recorded, None, false, Some(entry), deadline)
                            .await;
                        DisarmOutcome::Disarmed(Box::new(panel))
                    }
                    Err(e) => {
                        let entry = audit(
                            now,
                            &who,
                            format!("{who}'s voice disarm of {panel_id} failed: {e}"),
                        );
                        let acked = self
                            .second_path(link, &attempt, answer_by.unwrap_or(deadline))
                            .await;
                        self.settle(record, recorded, Some(&e), acked, Some(entry), deadline)
                            .await;
                        DisarmOutcome::PanelFailed(e)
                    }
                }
            }
        }
    }

    /// Steps 2–4: read, decide, write; re-read and decide again when a concurrent attempt won
    /// the write. Fails only when nothing could be read: without the codes no PIN can be checked.
    /// Every store call ends by `until`, which leaves the panel call its time.
    async fn decide_and_record(
        &self,
        account: &str,
        panel_id: &str,
        pin: Option<&Pin>,
        checked: Option<&Panel>,
        until: Deadline,
    ) -> Result<Decided, NotDecided> {
        let store = &self.deps.store;
        let mut retries = 0;
        let mut stale: Option<(Decision, bool)> = None;
        let mut link = None;
        loop {
            let snapshot = match before_panel(until, store.household(account)).await {
                Ok(s) => s,
                Err(e) => {
                    return match stale {
                        Some((d, true)) => Err(unheld(account, &d, &e)),
                        Some((d, false)) => Ok(unrecorded(account, d, &e, link)),
                        None => Err(store_failure(e)),
                    };
                }
            };
            let stored = snapshot.monitoring.get(panel_id);
            let now = self.deps.clock.now();
            let seen = snapshot.panels_seen.get(panel_id).copied();
            let fresh = |ttl: Duration| seen.is_some_and(|at| now - at < ttl);
            let held = checked.is_none() && !fresh(OWNERSHIP_TTL);
            // Also when the cloud now reports another monitoring link (or none) than stored:
            // the second path must send where the cloud says, not where it said last.
            let reconfirm = checked
                .is_some_and(|p| !fresh(OWNERSHIP_REFRESH) || p.monitoring.as_ref() != stored);
            // The cloud's word in this request is newer than the stored one.
            link = match checked {
                Some(p) => p.monitoring.clone(),
                None => stored.cloned(),
            };
            // Before any PIN is looked at: the reload depends on the stored codes only.
            let keyring = match &self.keyring_source {
                Some(source) => source.for_profile(&snapshot.profile).await,
                None => self.deps.keyring.clone(),
            };
            let d = self.decide(&keyring, account, panel_id, &snapshot, pin, now);
            crate::common::crash::crash_point!(crate::common::crash::DISARM_CODE_VERIFIED);
            let written = before_panel(until, async {
                match &d.throttle {
                    Some(t) => {
                        // Unchanged (a right code with no failures to clear, any attempt during
                        // a lockout): check the version instead of bumping it, so parallel
                        // attempts don't all collide on it. Both kinds of code take the same
                        // branch, held or not.
                        let write = if *t == snapshot.throttle {
                            ThrottleWrite::Check(t.version)
                        } else {
                            ThrottleWrite::Set(t)
                        };
                        match d.record() {
                            Some(record) if held => {
                                let kept =
                                    store.hold_attempt(account, write, record, &d.audit).await?;
                                if !kept {
                                    tracing::error!(
                                        marker = "held_lane_full",
                                        household = %account,
                                        panel = %panel_id,
                                        "the household's held attempts are at their limit: \
                                         this one is not kept"
                                    );
                                }
                                Ok(())
                            }
                            record => store.record_attempt(account, write, record, &d.audit).await,
                        }
                    }
                    None => {
                        for entry in &d.audit {
                            store.append_audit(account, entry).await?;
                        }
                        Ok(())
                    }
                }
            })
            .await;
            match written {
                Ok(()) => {
                    if held {
                        tracing::warn!(
                            marker = "disarm_attempt_held",
                            household = %account,
                            panel = %panel_id,
                            "the panel cloud could not confirm the panel and no recent \
                             confirmation is stored: the attempt is held until it does"
                        );
                    }
                    return Ok(Decided {
                        plan: d.plan,
                        recorded: true,
                        reconfirm,
                        held,
                        link,
                    });
                }
                Err(StoreError::Conflict) if retries < CONFLICT_RETRIES && !until.expired() => {
                    retries += 1;
                    tokio::time::sleep(conflict_backoff(retries)).await;
                    stale = Some((d, held));
                }
                // Unheld, it must not go to a cloud that has not confirmed the panel.
                Err(e) if held => return Err(unheld(account, &d, &e)),
                Err(e) => return Ok(unrecorded(account, d, &e, link)),
            }
        }
    }

    fn decide(
        &self,
        keyring: &Keyring,
        account: &str,
        panel_id: &str,
        snap: &HouseholdSnapshot,
        pin: Option<&Pin>,
        now: DateTime<Utc>,
    ) -> Decision {
        let policy = &self.settings.throttle;
        let attempt = |member: Option<u16>, duress: bool| {
            let request_id = uuid::Uuid::new_v4().to_string();
            let to = seal::Binding {
                request_id: &request_id,
                household: account,
                panel: panel_id,
            };
            let sealed = seal::seal(keyring, to, Sealed { duress, member });
            Attempt {
                record: OutboxRecord::pending(
                    request_id,
                    account,
                    panel_id,
                    sealed,
                    now,
                    now + OUTBOX_GRACE,
                ),
                member,
                duress,
            }
        };
        let Some(pin) = pin else {
            if snap.profile.pinless_disarm_allowed() {
                return Decision {
                    plan: Plan::Disarm {
                        attempt: attempt(None, false),
                        who: "Alexa voice PIN".to_string(),
                    },
                    throttle: Some(snap.throttle.clone()),
                    audit: vec![],
                };
            }
            return Decision {
                plan: Plan::Refused {
                    lockout: None,
                    at: now,
                    attempt: None,
                },
                throttle: None,
                // Neutral: says nothing of which codes exist (the rule counts voice PINs
                // only, which the app shows anyway).
                audit: vec![audit(
                    now,
                    "voice",
                    "Voice disarm refused: no voice code was given, and the household's \
                     settings refuse a disarm without one"
                        .to_string(),
                )],
            };
        };
        // Computed on every path, lockout included, so the work never depends on the state.
        let verified = verify(keyring, account, &snap.profile, pin);
        let member = verified.map(|v| &snap.profile.members[v.member]);
        let number = member.map(|m| m.user_number);
        let duress = verified.is_some_and(|v| v.kind == CodeKind::Duress);
        match policy.gate(&snap.throttle, now) {
            Gate::Locked { .. } => Decision {
                plan: Plan::Locked {
                    attempt: attempt(number, duress),
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
                        plan: Plan::Refused {
                            lockout,
                            at: now,
                            attempt: Some(attempt(None, false)),
                        },
                        throttle: Some(next),
                        audit: entries,
                    }
                }
                Some(m) => Decision {
                    plan: Plan::Disarm {
                        attempt: attempt(number, duress),
                        who: m.name.clone(),
                    },
                    throttle: Some(policy.after_success(&snap.throttle)),
                    audit: vec![],
                },
            },
        }
    }

    /// [`Plan::Unrecorded`]: store the record on its own (no throttle item, so no race to lose),
    /// signal the panel cloud, settle. The same work for every code.
    async fn unrecorded_attempt(
        &self,
        account: &str,
        panel_id: &str,
        attempt: Attempt,
        until: Deadline,
        deadline: Deadline,
        link: Option<&MonitoringLink>,
    ) {
        let entry = audit(
            self.deps.clock.now(),
            "voice",
            "Voice disarm not carried out: it could not be recorded".to_string(),
        );
        // Only in the time left before the panel's reserve: the signal is what must not be
        // late. Not stored now, the record is written after the call instead (settle).
        let stored = within(
            until.remaining(),
            self.deps.store.put_outbox(&attempt.record, Some(&entry)),
        )
        .await
        .is_ok();
        self.signal_and_settle(account, panel_id, &attempt, stored, deadline, link)
            .await;
    }

    /// A disarm the panel cloud has not answered in the assistant's time, given to the
    /// re-delivery worker: its recorded decision is marked to be sent as a `disarm` (same
    /// request id, so the cloud carries it out once) until [`HANDOVER_WINDOW`] after it was
    /// spoken, and due at once. Nothing runs on in this process after the reply (a Lambda is
    /// frozen then): the store holds all that is left to do. The same write for every code.
    async fn hand_over(
        &self,
        record: &OutboxRecord,
        who: &str,
        panel_id: &str,
        deadline: Deadline,
    ) -> DisarmOutcome {
        let now = self.deps.clock.now();
        let settlement = Settlement::HandedOver {
            next_attempt_at: now,
            disarm_until: record.created_at + HANDOVER_WINDOW,
        };
        let entry = audit(
            now,
            who,
            format!("{who}'s voice disarm of {panel_id} is under way: the panel cloud is slow"),
        );
        let budget = deadline.grace(SETTLE_FLOOR).remaining();
        let written = within(
            budget,
            self.deps.store.settle_outbox(
                &record.request_id,
                &settlement,
                Some((record.household.as_str(), &entry)),
            ),
        )
        .await;
        match written {
            Ok(()) => DisarmOutcome::Pending,
            // Still pending as decided: the worker signals it (a duress still reaches the
            // center) but disarms nothing, so the reply can't promise the disarm.
            Err(e) => {
                tracing::error!(
                    marker = "disarm_handover_failed",
                    error = %e,
                    household = %record.household,
                    request_id = %record.request_id,
                    "could not hand the slow disarm to the re-delivery worker"
                );
                DisarmOutcome::PanelFailed(PanelError::Timeout)
            }
        }
    }

    /// Step 5 and 6 for an attempt that disarms nothing: the panel cloud hears of it as a
    /// signal (raising the silent alarm for a duress), then the record is settled.
    async fn signal_and_settle(
        &self,
        account: &str,
        panel_id: &str,
        attempt: &Attempt,
        recorded: bool,
        deadline: Deadline,
        link: Option<&MonitoringLink>,
    ) {
        let request = SignalRequest {
            member: attempt.member,
            source: Source::Voice,
            kind: AttemptKind::of(attempt.duress),
            request_id: attempt.record.request_id.clone(),
            occurred_at: Some(attempt.record.created_at),
        };
        let result = self
            .deps
            .panels
            .signal(
                account,
                panel_id,
                &request,
                self.before_second_path(deadline, link),
            )
            .await;
        crate::common::crash::crash_point!(crate::common::crash::DISARM_PANEL_ANSWERED);
        let acked = match &result {
            Ok(()) => false,
            Err(_) => self.second_path(link, attempt, deadline).await,
        };
        self.settle(
            &attempt.record,
            recorded,
            result.as_ref().err(),
            acked,
            None,
            deadline,
        )
        .await;
    }

    /// What the panel call gets: the whole deadline, or for a panel with a monitoring link
    /// (and a second path wired) all but [`RECEIVER_RESERVE`], whatever the kind of code.
    fn before_second_path(&self, deadline: Deadline, link: Option<&MonitoringLink>) -> Deadline {
        match (&self.receiver, link) {
            (Some(_), Some(_)) => deadline.leaving(RECEIVER_RESERVE.min(deadline.remaining() / 3)),
            _ => deadline,
        }
    }

    /// The second path: an attempt the panel cloud could not take goes to the panel's
    /// monitoring center straight away, a duress as its 121 and a normal attempt as a
    /// communication trouble, each with the member's user number; the same work, bytes and log
    /// lines for both kinds. Whether the center ACKed is written with the settle write; what
    /// it could not finish by `deadline` the worker sends again (same sequence number and time
    /// of occurrence).
    async fn second_path(
        &self,
        link: Option<&MonitoringLink>,
        attempt: &Attempt,
        deadline: Deadline,
    ) -> bool {
        let (Some(receiver), Some(link)) = (&self.receiver, link) else {
            return false;
        };
        let sealed = Sealed {
            duress: attempt.duress,
            member: attempt.member,
        };
        crate::domain::redelivery::second_path(
            receiver.as_ref(),
            link,
            &attempt.record,
            sealed,
            deadline,
        )
        .await
    }

    /// Step 6. A failure here doesn't change the reply: a pending record is re-sent by the
    /// worker (deduplicated by request id). An attempt that step 4 could not write is written
    /// now, pending if the panel call failed, so the worker still delivers it.
    async fn settle(
        &self,
        record: &OutboxRecord,
        recorded: bool,
        error: Option<&PanelError>,
        receiver_acked: bool,
        entry: Option<AuditEntry>,
        deadline: Deadline,
    ) {
        let store = &self.deps.store;
        // Every failure is retried, "not in the account" included: the record may be a duress
        // for a panel that left the account mid-call, and must not look different if not.
        let settlement = match error {
            None => Settlement::Delivered,
            Some(_) => Settlement::Retry {
                attempts: 1,
                next_attempt_at: self.deps.clock.now(),
                receiver_acked,
            },
        };
        let audit = entry.as_ref().map(|e| (record.household.as_str(), e));
        let budget = deadline.grace(SETTLE_FLOOR).remaining();
        let written = within(budget, async {
            match (&settlement, recorded) {
                // Never made here: only the worker drops a held record, and a hand-over is
                // written by hand_over.
                (Settlement::Dropped | Settlement::HandedOver { .. }, _) => Ok(()),
                (_, true) => {
                    store
                        .settle_outbox(&record.request_id, &settlement, audit)
                        .await
                }
                // Step 4 did not write the record, or did without hearing back: insert it,
                // else settle the one that is there.
                (
                    Settlement::Retry {
                        attempts,
                        next_attempt_at,
                        ..
                    }
                    | Settlement::Gone {
                        attempts,
                        next_attempt_at,
                    },
                    false,
                ) => {
                    let pending = OutboxRecord {
                        attempts: *attempts,
                        next_attempt_at: *next_attempt_at,
                        receiver_acked,
                        ..record.clone()
                    };
                    match store.put_outbox(&pending, entry.as_ref()).await {
                        Err(StoreError::Conflict) => {
                            store
                                .settle_outbox(&record.request_id, &settlement, audit)
                                .await
                        }
                        other => other,
                    }
                }
                (Settlement::Delivered, false) => {
                    match store
                        .settle_outbox(&record.request_id, &settlement, audit)
                        .await
                    {
                        // Delivered and never stored: only the audit line is left to write.
                        Err(StoreError::Conflict) => match &entry {
                            Some(e) => store.append_audit(&record.household, e).await,
                            None => Ok(()),
                        },
                        other => other,
                    }
                }
            }
        })
        .await;
        match written {
            Ok(()) => {}
            // Neither before nor after the panel call could the store take the attempt, and
            // the panel did not acknowledge it: nothing will re-send it. The record goes to the
            // log instead, sealed as in the store (no code, no kind in clear), so an operator
            // can restore it into the table and the worker delivers it.
            Err(e) if !recorded && error.is_some() => {
                let pending = serde_json::to_string(&OutboxRecord {
                    attempts: 1,
                    receiver_acked,
                    ..record.clone()
                })
                .unwrap_or_default();
                tracing::error!(
                    marker = "outbox_record_unsaved",
                    error = %e,
                    household = %record.household,
                    request_id = %record.request_id,
                    record = %pending,
                    "the store took neither the attempt nor its failure: restore this record"
                );
            }
            Err(e) => tracing::error!(
                marker = "outbox_settle_failed",
                error = %e,
                household = %record.household,
                request_id = %record.request_id,
                recorded,
                "could not settle the outbox record"
            ),
        }
    }
}

/// Step 4 could not be written: a spoken code becomes [`Plan::Unrecorded`]. The marker is the
/// same for every kind of attempt, and names no code.
fn unrecorded(account: &str, d: Decision, e: &StoreError, link: Option<MonitoringLink>) -> Decided {
    tracing::error!(
        marker = "disarm_attempt_unrecorded",
        household = %account,
        request_id = d.record().map_or("", |r| r.request_id.as_str()),
        error = %e,
        "could not record the voice disarm attempt; signalled to the panel cloud, not disarmed"
    );
    let plan = match d.plan {
        Plan::Disarm { attempt, .. }
        | Plan::Locked { attempt }
        | Plan::Refused {
            attempt: Some(attempt),
            ..
        } => Plan::Unrecorded { attempt },
        // No code was spoken (a refused PIN-less disarm): nothing to signal.
        other @ (Plan::Refused { attempt: None, .. } | Plan::Unrecorded { .. }) => other,
    };
    Decided {
        plan,
        recorded: false,
        reconfirm: false,
        held: false,
        link,
    }
}

/// A held attempt the store could not take. Its record goes to the log, sealed as in the store
/// (no code, no kind in clear), so an operator can restore it into the table; the marker is the
/// same for every kind of attempt.
fn unheld(account: &str, d: &Decision, e: &StoreError) -> NotDecided {
    let record = d.record().map(|r| OutboxRecord {
        lane: Lane::Held,
        ..r.clone()
    });
    tracing::error!(
        marker = "held_attempt_unsaved",
        household = %account,
        error = %e,
        record = %record
            .map(|r| serde_json::to_string(&r).unwrap_or_default())
            .unwrap_or_default(),
        "could not hold the voice disarm attempt for a panel not confirmed lately: restore \
         this record"
    );
    NotDecided::Unconfirmed
}

struct Decision {
    plan: Plan,
    /// The throttle state to write (conditional on its version); `None` writes audit only.
    throttle: Option<Throttle>,
    audit: Vec<AuditEntry>,
}

impl Decision {
    /// The record written with the decision, if it leaves one.
    fn record(&self) -> Option<&OutboxRecord> {
        match &self.plan {
            Plan::Disarm { attempt, .. } | Plan::Locked { attempt } => Some(&attempt.record),
            Plan::Refused { .. } | Plan::Unrecorded { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::seconds(90)), "90 seconds");
        assert_eq!(humanize(Duration::minutes(15)), "15 minutes");
        assert_eq!(humanize(Duration::hours(1)), "1 hour");
    }
}
