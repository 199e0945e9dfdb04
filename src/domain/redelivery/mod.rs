//! Re-delivery of voice attempts whose panel call was not acknowledged.
//!
//! Every voice disarm that goes to the panel leaves a pending outbox record. The directive
//! settles it when the panel cloud answers; otherwise this worker does, the same way for every
//! record: it re-sends the attempt as a `signal` carrying the sealed duress flag and member, with
//! the original request id, until the panel cloud acknowledges it.
//! - For a duress the signal raises the silent alarm. The cloud deduplicates by request id,
//!   shared with the original disarm, so the monitoring center gets exactly one Contact ID 121
//!   even if the first call did reach it.
//! - For a normal attempt the signal (`duress: false`) changes nothing: a failed disarm is never
//!   replayed, since a panel that disarms by itself minutes later would be a surprise. It is sent
//!   anyway so that both kinds leave the same calls and the same outbox history.
//! - The one exception is a disarm *handed over*: Google must hear back within its quality bar,
//!   so a disarm the cloud has not answered by then is answered `PENDING`, and its record marked
//!   to be carried out ([`Settlement::HandedOver`], `disarm_until`). Until that window ends the
//!   worker sends it as the `disarm` it was (same request id: the cloud carries it out once,
//!   whether or not the first call reached it), and the panel's webhook becomes Report State.
//!   Which records are handed over depends on the cloud's speed, never on the kind of code.
//! - Nothing pending is ever given up on. A record whose panel has left the account, or whose
//!   seal can't be opened, stays pending, backs off to one attempt per 5 minutes, and keeps the
//!   backlog alarm raised until an operator acts (docs/panel-api.md, "Signals").
//!
//! **Shards and fairness** (docs/dynamodb.md, "The outbox lanes"). Pending records live in S
//! shards of the index, a household's all in one. [`run_once`] drains every shard in parallel,
//! each under a lease of its own, so passes of two workers never overlap on a shard and a slow
//! shard holds up no other. Within a shard a household has at most its quota of failed records
//! in the queue (the rest wait in its own queue, oldest first, never dropped) and a pass takes at
//! most that many of one household: so one household's records, however many, delay another
//! household's duress by at most one pass. A record whose panel left the account moves to its
//! own lane, retried hourly at a bounded rate and counted apart (`OutboxPanelGone`).
//!
//! **Pepper rotation.** A directive function that knows a newer pepper seals under it. The
//! deployed worker gets the keyring through a [`KeyringSource`] ([`Keys::Reloading`]): a seal
//! naming a pepper id its keyring lacks makes it re-read the pepper secret (rate-limited and
//! time-boxed by the source) before the record counts as unreadable, so a warm worker never
//! holds back a duress sealed under a pepper added after it started.
//!
//! **Held attempts.** An attempt spoken while the panel's confirmation had run out and the cloud
//! could not be asked waits in its household's held lane ([`Lane::Held`]). Before anything is
//! sent for it the worker asks the cloud whether the panel is the account's: yes renews the
//! confirmation and signals it like any other record; "not in this account" drops it unsent,
//! with a neutral audit line; anything else leaves it held, backing off.
//!
//! **Breaker** (one per panel cloud, docs/capacity.md "Recovery after an outage"). A failure
//! of the cloud itself (unreachable, timeout, 5xx, 429, a foreign 404, a reply it can't have
//! meant) is not the record's fault, so it doesn't back the record off: the record is retried
//! [`CLOUD_RETRY`] later, and the cloud is protected by the breaker instead. After
//! [`BREAKER_THRESHOLD`] cloud failures in a row with no success the breaker opens: passes send
//! the cloud nothing but one probe (a real pending record) per [`PROBE_INTERVAL`], claimed by a
//! conditional write so that concurrent workers send one between them. When a probe is
//! answered the breaker closes and that pass takes every pending record of the due lane as due,
//! whatever its backoff: the whole backlog goes at once, with the usual bounded concurrency and
//! per-household quota (a household's records, however many, don't hold up another's). The
//! state is a store item per cloud ([`crate::domain::ports::store::Breaker`]): each Lambda invocation may be a
//! fresh process, and all of them must agree on who probes. Answers about one panel (offline,
//! busy, not in the account) prove the cloud is up and back off only that record.
//!
//! [`run_once`] is one pass. The local stack calls it every 2 s; on AWS a schedule invokes the
//! `redelivery` Lambda once a minute, which [`Worker::poll`]s: passes every few seconds while
//! anything is pending, until near its timeout, so recovery is noticed within seconds.

pub mod seal;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;

use crate::common::clock::Clock;
use crate::common::deadline::Deadline;
use crate::domain::ports::monitoring::{AlarmReceiver, MonitoringLink, ReceiverEvent};
use crate::domain::ports::panel::{
    AttemptKind, DisarmRequest, PanelCloud, PanelError, SignalRequest, Source,
};
use crate::domain::ports::store::{
    AuditEntry, Breaker, ConfirmedPanel, Lane, OutboxRecord, Settlement, Store, StoreError,
};
use crate::domain::voice_codes::{Keyring, KeyringSource};

/// Each signal attempt gets this long.
const CALL_BUDGET: StdDuration = StdDuration::from_secs(5);
/// Time kept after a call to settle the record and write the report.
const SETTLE_MARGIN: StdDuration = StdDuration::from_secs(1);
/// Retry backoff: 5 s doubling, capped at 5 minutes. Only for answers about the record's own
/// panel (offline, busy) and unreadable seals: a failing cloud is the breaker's.
const BACKOFF_BASE_S: i64 = 5;
const BACKOFF_CAP_S: i64 = 300;
/// A record whose signal failed because the cloud did is due again this soon: it never backs
/// off while the cloud is out, so it goes as soon as the cloud answers again.
pub const CLOUD_RETRY: Duration = Duration::seconds(5);
/// Cloud failures in a row, with no success, that open the breaker.
pub const BREAKER_THRESHOLD: u32 = 3;
/// While the breaker is open, one probe per this interval, across all workers.
pub const PROBE_INTERVAL: Duration = Duration::seconds(5);
/// Pending records a probe looks at per shard and lane for one it can send.
const PROBE_CANDIDATES: usize = 3;
/// A record whose panel left the account is tried again hourly: the cloud must still take a
/// duress for it (docs/panel-api.md), but it must not cost the live queue anything.
const GONE_RETRY: Duration = Duration::hours(1);
/// Records of the gone lane one shard's pass takes at most.
const GONE_BATCH: usize = 5;
/// Records of the held lane one shard's pass takes at most, and of one household.
const HELD_BATCH: usize = 10;
const HELD_PER_PASS: usize = 4;
/// Signals of one shard in flight at once.
const SHARD_CONCURRENCY: usize = 8;
/// Shards drained at once by one worker.
const SHARD_PARALLELISM: usize = 16;
/// Waiting records one pass looks at to catch up promotions a crash left undone.
const PROMOTE_SCAN: usize = 25;
/// The lease of shard `n` is `redelivery#{n}`.
pub const LEASE: &str = "redelivery";
/// A pass's lease outlives its deadline by this much, so a pass that overran (or was frozen by
/// Lambda mid-call) is still covered, and a crashed one frees the lease soon after.
const LEASE_MARGIN: StdDuration = StdDuration::from_secs(10);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub examined: usize,
    pub delivered: usize,
    pub retrying: usize,
    /// Due records left for the next pass because this one ran out of time.
    pub deferred: usize,
    /// Pending items that could not be decoded: possibly a duress, so each is logged with its
    /// key and counted for the backlog alarm. The rest are delivered regardless.
    pub unreadable: usize,
    /// Records moved to the gone lane by this pass (their panel left the account).
    pub moved_gone: usize,
    /// Records signalled whose settle found them settled or moved meanwhile.
    pub raced: usize,
    /// Every shard was held by another pass, so this one did nothing.
    pub skipped: bool,
    /// Shards another pass held.
    pub skipped_shards: usize,
    /// Shards whose pass failed on the store (logged each).
    pub failed_shards: usize,
    pub shards: usize,
    /// After the pass: every pending record in the shards' queues and households' own queues.
    pub backlog: usize,
    /// Of `backlog`: records waiting in their household's own queue, past its quota.
    pub waiting: usize,
    /// Pending records whose panel left the account (not in `backlog`: alarmed apart).
    pub gone: usize,
    /// Held records dropped unsent by this pass: the cloud said their panel is not the account's.
    pub dropped: usize,
    /// Pending records held until the cloud confirms their panel (in `backlog`).
    pub held: usize,
    /// Due records not sent because the cloud's breaker is open (or tripped during the pass):
    /// left as they were, for the probe that finds the cloud back.
    pub breaker_held: usize,
    /// Probes sent to the cloud while its breaker was open (0 or 1 per pass).
    pub probes: usize,
    /// The cloud's breaker is open after the pass.
    pub breaker_open: bool,
}

impl Report {
    /// A later pass of the same invocation: its work adds up, its figures of what is left
    /// replace the earlier ones.
    fn followed_by(&mut self, next: &Report) {
        let work = (
            self.examined + next.examined,
            self.delivered + next.delivered,
            self.retrying + next.retrying,
            self.moved_gone + next.moved_gone,
            self.raced + next.raced,
            self.dropped + next.dropped,
            self.probes + next.probes,
        );
        *self = *next;
        (
            self.examined,
            self.delivered,
            self.retrying,
            self.moved_gone,
            self.raced,
            self.dropped,
            self.probes,
        ) = work;
    }

    /// Another shard's pass, run beside this one.
    fn add(&mut self, o: &Report) {
        self.examined += o.examined;
        self.delivered += o.delivered;
        self.retrying += o.retrying;
        self.deferred += o.deferred;
        self.unreadable += o.unreadable;
        self.moved_gone += o.moved_gone;
        self.raced += o.raced;
        self.skipped_shards += o.skipped_shards;
        self.failed_shards += o.failed_shards;
        self.shards += o.shards;
        self.backlog += o.backlog;
        self.waiting += o.waiting;
        self.gone += o.gone;
        self.dropped += o.dropped;
        self.held += o.held;
        self.breaker_held += o.breaker_held;
    }
}

pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    Duration::seconds((BACKOFF_BASE_S << exp).min(BACKOFF_CAP_S))
}

/// The keys a pass opens seals with.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'a> {
    /// One keyring for the process's life (the local stack, which holds every pepper it uses).
    Fixed(&'a Keyring),
    /// Re-read when a seal names a pepper id the loaded keyring lacks (the deployed worker).
    Reloading(&'a KeyringSource),
}

/// One pass over every shard, in parallel: at most `batch` due records per shard, stopping
/// early enough to finish before `until` (the invocation's deadline on Lambda): a record never
/// started is simply picked up by the next pass, while a pass killed mid-call would leave no
/// report. Fails only when every shard failed.
pub async fn run_once(
    store: &dyn Store,
    panels: &dyn PanelCloud,
    keyring: &Keyring,
    clock: &dyn Clock,
    batch: usize,
    until: Deadline,
) -> Result<Report, StoreError> {
    Worker {
        store,
        panels,
        keys: Keys::Fixed(keyring),
        v2_seals: seal::V2Cutoff::default(),
        clock,
        until,
        receiver: None,
    }
    .run_once(batch)
    .await
}

/// What a re-delivery pass works with, and when it must be done: every step of a pass takes
/// the same five, so they travel together.
#[derive(Clone, Copy)]
pub struct Worker<'a> {
    pub store: &'a dyn Store,
    pub panels: &'a dyn PanelCloud,
    pub keys: Keys<'a>,
    /// Which seals of the former format still open (`OUTBOX_V2_SEALS_BEFORE`).
    pub v2_seals: seal::V2Cutoff,
    pub clock: &'a dyn Clock,
    /// The invocation's deadline: nothing is started that could not be settled before it.
    pub until: Deadline,
    /// The second path (crate::domain::ports::monitoring): a pending record the center has not
    /// ACKed is sent there first when its panel has a monitoring link. `None` sends nothing.
    pub receiver: Option<&'a dyn AlarmReceiver>,
}

impl Worker<'_> {
    /// [`run_once`] with any [`Keys`].
    pub async fn run_once(self, batch: usize) -> Result<Report, StoreError> {
        let Worker {
            store,
            panels,
            clock,
            ..
        } = self;
        let cloud = panels.breaker_key();
        let now = clock.now();
        // Unreadable breaker: pass as if closed. The cloud then gets at most one pass's failures
        // more, which beats holding every duress on a store hiccup.
        let breaker = match store.breaker(&cloud).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the panel cloud's breaker; passing as if closed");
                None
            }
        };
        let mut mode = Mode {
            horizon: now,
            hold: false,
        };
        let mut probe_report = Report::default();
        let mut state = breaker.clone();
        if let Some(b) = breaker.as_ref().filter(|b| b.open) {
            mode.hold = true;
            if now >= b.probe_at {
                let claim = Breaker {
                    probe_at: now + PROBE_INTERVAL,
                    ..b.clone()
                };
                // The conditional write is the claim: of the workers that saw the probe due, one
                // wins it and the others hold, so the cloud gets one probe per interval.
                if let Ok(version) = store.save_breaker(&cloud, &claim).await {
                    probe_report.probes = 1;
                    let claimed = Breaker { version, ..claim };
                    let verdict = self.probe(&mut probe_report).await;
                    state = breaker_after_probe(store, &cloud, claimed, verdict, clock).await;
                    if verdict == Verdict::Answered {
                        // Everything pending is due at once, whatever its backoff.
                        mode = Mode {
                            horizon: now + Duration::seconds(BACKOFF_CAP_S),
                            hold: false,
                        };
                    }
                }
            }
        }
        let gate = Gate::new(state.as_ref().map_or(0, |b| b.failures));
        let shards = store.outbox_policy().shards.max(1);
        // Futures made up front, not in a stream closure: the spawned local worker needs the whole
        // pass to be `Send`, which closures returning borrowing futures can't prove.
        let passes: Vec<_> = (0..shards)
            .map(|shard| {
                self.run_shard(
                    shard,
                    Plan {
                        batch,
                        mode,
                        gate: &gate,
                    },
                )
            })
            .collect();
        let results: Vec<Result<Report, StoreError>> = futures_util::stream::iter(passes)
            .buffer_unordered(SHARD_PARALLELISM)
            .collect()
            .await;
        let mut report = Report::default();
        let mut last_error = None;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(r) => report.add(&r),
                Err(e) => {
                    tracing::error!(error = %e, "a shard's re-delivery pass failed");
                    report.failed_shards += 1;
                    report.shards += 1;
                    last_error = Some((i, e));
                }
            }
        }
        report.skipped = report.skipped_shards == report.shards;
        report.examined += probe_report.examined;
        report.delivered += probe_report.delivered;
        report.retrying += probe_report.retrying;
        report.moved_gone += probe_report.moved_gone;
        report.raced += probe_report.raced;
        report.probes = probe_report.probes;
        let state = match state {
            Some(b) if !mode.hold => breaker_after_pass(store, &cloud, b, &gate, clock).await,
            other => other,
        };
        report.breaker_open = state.is_some_and(|b| b.open);
        match last_error {
            Some((_, e)) if report.failed_shards == report.shards => Err(e),
            _ => Ok(report),
        }
    }
}

/// How a pass treats the due lane.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Records due at or before this are taken: now, or (right after the breaker closed) far
    /// enough ahead to take every pending record whatever its backoff.
    horizon: DateTime<Utc>,
    /// The breaker is open: send nothing, only count the backlog.
    hold: bool,
}

/// How each shard's pass of one run goes: at most `batch` due records, the due lane as `mode`
/// says, the cloud's failures counted in the run's one `gate`.
#[derive(Clone, Copy)]
struct Plan<'g> {
    batch: usize,
    mode: Mode,
    gate: &'g Gate,
}

/// What a call told about the cloud itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It answered (even "offline" or "not in the account"): the cloud is up.
    Answered,
    /// It failed as a whole: unreachable, timeout, 5xx, 429, credentials, a reply it can't
    /// have meant.
    Failed,
    /// No call was made (an unreadable seal, or nothing to send).
    NoCall,
}

impl Verdict {
    fn of(e: &PanelError) -> Verdict {
        match e {
            PanelError::NotFound
            | PanelError::Offline
            | PanelError::Busy
            | PanelError::Refused(_) => Verdict::Answered,
            PanelError::Unreachable(_)
            | PanelError::Timeout
            | PanelError::Server(_)
            | PanelError::RateLimited
            | PanelError::Unauthorized
            | PanelError::Protocol(_) => Verdict::Failed,
        }
    }
}

/// The breaker as one invocation sees it during a closed pass: once the cloud has failed
/// [`BREAKER_THRESHOLD`] times in a row (counting the stored failures) with no success, the
/// rest of the pass holds its records instead of waiting out a call budget on each.
struct Gate {
    prior: u32,
    failures: AtomicU32,
    successes: AtomicU32,
}

impl Gate {
    fn new(prior: u32) -> Gate {
        Gate {
            prior,
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
        }
    }

    fn tripped(&self) -> bool {
        self.successes.load(Ordering::SeqCst) == 0
            && self
                .prior
                .saturating_add(self.failures.load(Ordering::SeqCst))
                >= BREAKER_THRESHOLD
    }

    fn note(&self, verdict: Verdict) {
        match verdict {
            Verdict::Answered => self.successes.fetch_add(1, Ordering::SeqCst),
            Verdict::Failed => self.failures.fetch_add(1, Ordering::SeqCst),
            Verdict::NoCall => 0,
        };
    }
}

/// Saves what a closed pass learnt: a success clears the failures, failures with no success
/// add up and open the breaker at the threshold. A lost race leaves the other worker's word.
async fn breaker_after_pass(
    store: &dyn Store,
    cloud: &str,
    b: Breaker,
    gate: &Gate,
    clock: &dyn Clock,
) -> Option<Breaker> {
    let (successes, failures) = (
        gate.successes.load(Ordering::SeqCst),
        gate.failures.load(Ordering::SeqCst),
    );
    let now = clock.now();
    let next = if successes > 0 {
        if b.failures == 0 {
            return Some(b);
        }
        Breaker { failures: 0, ..b }
    } else if failures > 0 {
        let failures = b.failures.saturating_add(failures);
        if failures >= BREAKER_THRESHOLD {
            tracing::warn!(
                marker = "panel_cloud_breaker_open",
                cloud,
                failures,
                "panel cloud failing: re-delivery holds its records and probes it"
            );
            Breaker {
                open: true,
                failures,
                probe_at: now + PROBE_INTERVAL,
                since: now,
                ..b
            }
        } else {
            Breaker { failures, ..b }
        }
    } else {
        return Some(b);
    };
    save(store, cloud, next).await
}

/// Saves what the probe found: answered closes the breaker, failed counts it.
async fn breaker_after_probe(
    store: &dyn Store,
    cloud: &str,
    claimed: Breaker,
    verdict: Verdict,
    clock: &dyn Clock,
) -> Option<Breaker> {
    let now = clock.now();
    let next = match verdict {
        Verdict::Answered => {
            tracing::info!(
                marker = "panel_cloud_breaker_closed",
                cloud,
                "panel cloud answered a probe: every pending record is due"
            );
            Breaker {
                open: false,
                failures: 0,
                since: now,
                ..claimed
            }
        }
        Verdict::Failed => Breaker {
            failures: claimed.failures.saturating_add(1),
            ..claimed
        },
        Verdict::NoCall => return Some(claimed),
    };
    save(store, cloud, next).await
}

async fn save(store: &dyn Store, cloud: &str, b: Breaker) -> Option<Breaker> {
    match store.save_breaker(cloud, &b).await {
        Ok(version) => Some(Breaker { version, ..b }),
        Err(StoreError::Conflict) => store.breaker(cloud).await.ok(),
        Err(e) => {
            tracing::warn!(error = %e, "could not save the panel cloud's breaker");
            None
        }
    }
}

/// One probe: the oldest pending record found (due lane first, whatever its backoff, then the
/// gone lane's due ones), sent and settled like any other. A store error skips a shard.
impl Worker<'_> {
    async fn probe(self, report: &mut Report) -> Verdict {
        let Worker {
            store,
            clock,
            until,
            ..
        } = self;
        let now = clock.now();
        let shards = store.outbox_policy().shards.max(1);
        for (lane, horizon) in [
            (Lane::Due, now + Duration::seconds(BACKOFF_CAP_S)),
            (Lane::Gone, now),
        ] {
            for shard in 0..shards {
                let found = match store
                    .outbox_due(lane, shard, horizon, PROBE_CANDIDATES, 1)
                    .await
                {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(error = %e, shard, "probe could not read a shard");
                        continue;
                    }
                };
                for record in &found.records {
                    if until.remaining() < CALL_BUDGET + SETTLE_MARGIN {
                        return Verdict::NoCall;
                    }
                    // The probe is a record like any other: the center first, if it lacks it.
                    let links = self.monitoring_links(&[record]).await;
                    let second = self
                        .receiver
                        .zip(links.get(&record.panel))
                        .filter(|_| !record.receiver_acked);
                    let (settlement, verdict) =
                        process(record, self.panels, self.keys, self.v2_seals, clock, second).await;
                    report.examined += 1;
                    match store.settle_outbox_read(record, &settlement).await {
                        Ok(()) => match settlement {
                            Settlement::Delivered => report.delivered += 1,
                            // The worker never hands over: that is a directive's.
                            Settlement::Retry { .. } | Settlement::HandedOver { .. } => {
                                report.retrying += 1
                            }
                            Settlement::Gone { .. } => report.moved_gone += 1,
                            Settlement::Dropped => report.dropped += 1,
                        },
                        Err(StoreError::Conflict) => report.raced += 1,
                        Err(e) => tracing::warn!(error = %e, "could not settle a probe's record"),
                    }
                    if verdict != Verdict::NoCall {
                        return verdict;
                    }
                }
            }
        }
        Verdict::NoCall
    }
}

impl Worker<'_> {
    /// Passes one after another, while the last one found records due and time is left: how one
    /// scheduled invocation drains a backlog (after a cloud outage) faster than one batch per shard
    /// per minute. At most `rounds` passes. The backlog figures are the last pass's.
    pub async fn drain(self, batch: usize, rounds: usize) -> Result<Report, StoreError> {
        let until = self.until;
        let mut total = Report::default();
        for _ in 0..rounds.max(1) {
            let r = self.run_once(batch).await?;
            total.followed_by(&r);
            if r.examined == 0
                || r.deferred > 0
                || r.breaker_held > 0
                || until.remaining() < CALL_BUDGET * 2
            {
                break;
            }
        }
        Ok(total)
    }

    /// Drains, then keeps polling every `every` while anything is pending, until `until` is near or
    /// `max_polls` drains have run: how one scheduled invocation a minute notices within seconds
    /// that the cloud is back (docs/capacity.md, "Recovery after an outage"). Returns at once when
    /// nothing is pending, so an idle minute costs one short invocation. The work figures add up
    /// over the polls; what is left is the last one's.
    pub async fn poll(
        self,
        batch: usize,
        rounds: usize,
        every: StdDuration,
        max_polls: usize,
    ) -> Result<Report, StoreError> {
        let until = self.until;
        let mut total = Report::default();
        for poll in 0..max_polls.max(1) {
            let r = match self.drain(batch, rounds).await {
                Ok(r) => r,
                // A later poll's failure leaves the earlier polls' work reported; the schedule's
                // next invocation carries on.
                Err(e) if poll > 0 => {
                    tracing::warn!(error = %e, "a re-delivery poll failed; stopping early");
                    break;
                }
                Err(e) => return Err(e),
            };
            total.followed_by(&r);
            let pending = r.backlog > 0 || r.breaker_open || r.deferred > 0;
            if !pending || until.remaining() < every + CALL_BUDGET * 2 {
                break;
            }
            tokio::time::sleep(every).await;
        }
        Ok(total)
    }

    /// One shard's pass under the shard's lease.
    async fn run_shard(self, shard: u16, plan: Plan<'_>) -> Result<Report, StoreError> {
        let Worker {
            store,
            clock,
            until,
            ..
        } = self;
        let owner = uuid::Uuid::new_v4().to_string();
        let name = format!("{LEASE}#{shard}");
        let now = clock.now();
        let lease_end = now
            + Duration::from_std(until.remaining() + LEASE_MARGIN).unwrap_or(Duration::seconds(60));
        if !store.acquire_lease(&name, &owner, now, lease_end).await? {
            tracing::debug!(
                shard,
                "another re-delivery pass holds the shard's lease; skipped"
            );
            return Ok(Report {
                skipped_shards: 1,
                shards: 1,
                ..Report::default()
            });
        }
        crate::common::crash::crash_point!(crate::common::crash::REDELIVERY_LEASE_HELD);
        let result = self.pass(shard, plan).await;
        // If this fails the lease simply runs out at `lease_end`.
        if let Err(e) = store.release_lease(&name, &owner).await {
            tracing::warn!(error = %e, shard, "could not release a re-delivery lease");
        }
        result
    }

    async fn pass(self, shard: u16, plan: Plan<'_>) -> Result<Report, StoreError> {
        let Worker { store, clock, .. } = self;
        let Plan { batch, mode, gate } = plan;
        let quota = usize::try_from(store.outbox_policy().household_quota).unwrap_or(usize::MAX);
        let mut report = Report {
            shards: 1,
            ..Report::default()
        };
        // Promotions a crash left undone, before the queue is read, so they count this pass.
        store.promote_waiting(shard, PROMOTE_SCAN).await?;
        if mode.hold {
            // The breaker is open: nothing goes to the cloud, and the backlog is counted (its
            // alarm must stay raised through the outage). It holds the cloud's calls, not the
            // center's: records the center has not ACKed still go there.
            if self.receiver.is_some() {
                let due = store
                    .outbox_due(Lane::Due, shard, clock.now(), batch, quota.max(1))
                    .await?;
                self.center_only(&due.records).await;
            }
            return count_backlog(store, shard, report).await;
        }
        let now = clock.now();
        // The lanes side by side: each query is a round trip the pass's deadline pays once.
        let (due, gone, held) = futures_util::future::try_join3(
            store.outbox_due(Lane::Due, shard, mode.horizon, batch, quota.max(1)),
            store.outbox_due(Lane::Gone, shard, now, GONE_BATCH, 1),
            store.outbox_due(Lane::Held, shard, now, HELD_BATCH, HELD_PER_PASS),
        )
        .await?;
        report.unreadable = due.unreadable.len() + gone.unreadable.len() + held.unreadable.len();
        for bad in due
            .unreadable
            .iter()
            .chain(&gone.unreadable)
            .chain(&held.unreadable)
        {
            tracing::error!(
                marker = "outbox_item_unreadable",
                key = %bad.key,
                error = %bad.error,
                "pending outbox item cannot be decoded; skipped, left pending for an operator"
            );
        }
        let records: Vec<&OutboxRecord> = due
            .records
            .iter()
            .chain(&gone.records)
            .chain(&held.records)
            .collect();
        let total = records.len();
        // One household's records one after another (they share its quota counter, and racing
        // transactions on one item would cancel each other); households side by side.
        let households = by_household(records);
        let deliveries: Vec<_> = households
            .iter()
            .map(|group| self.deliver_in_turn(group, gate))
            .collect();
        let outcomes: Vec<Outcome> = futures_util::stream::iter(deliveries)
            .buffer_unordered(SHARD_CONCURRENCY)
            .collect::<Vec<Vec<Outcome>>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut failure = None;
        for outcome in outcomes {
            match outcome {
                Outcome::NotStarted => report.deferred += 1,
                Outcome::Held => report.breaker_held += 1,
                Outcome::Settled(settlement) => {
                    report.examined += 1;
                    match settlement {
                        Settlement::Delivered => report.delivered += 1,
                        // The worker never hands over: that is a directive's.
                        Settlement::Retry { .. } | Settlement::HandedOver { .. } => {
                            report.retrying += 1
                        }
                        Settlement::Gone { .. } => report.moved_gone += 1,
                        Settlement::Dropped => report.dropped += 1,
                    }
                }
                Outcome::Raced => {
                    report.examined += 1;
                    report.raced += 1;
                }
                Outcome::Failed(e) => {
                    report.examined += 1;
                    failure = Some(e);
                }
            }
        }
        debug_assert_eq!(
            report.examined + report.deferred + report.breaker_held,
            total
        );
        if let Some(e) = failure {
            return Err(e);
        }
        count_backlog(store, shard, report).await
    }
}

/// Records grouped by household, in the order each household first appears.
fn by_household<'r>(
    records: impl IntoIterator<Item = &'r OutboxRecord>,
) -> Vec<Vec<&'r OutboxRecord>> {
    let mut households: Vec<Vec<&OutboxRecord>> = Vec::new();
    for r in records {
        match households
            .iter_mut()
            .find(|g| g[0].household == r.household)
        {
            Some(group) => group.push(r),
            None => households.push(vec![r]),
        }
    }
    households
}

impl Worker<'_> {
    /// While the breaker holds the cloud's calls: the second path alone, for the due records the
    /// center has not ACKed, one household's after another; an ACK is written as the record's
    /// retry with its attempts and due time unchanged. Bounded by the batch and the deadline.
    async fn center_only(self, records: &[OutboxRecord]) {
        let Some(receiver) = self.receiver else {
            return;
        };
        for group in by_household(records.iter().filter(|r| !r.receiver_acked)) {
            let links = self.monitoring_links(&group).await;
            for record in group {
                let Some(link) = links.get(&record.panel) else {
                    continue;
                };
                if self.until.remaining() < CALL_BUDGET + SETTLE_MARGIN {
                    return;
                }
                // An unopened seal is the full pass's to report, once the cloud is back.
                let Ok(sealed) = open_seal(record, self.keys, self.v2_seals).await else {
                    continue;
                };
                let deadline = Deadline::after(CALL_BUDGET);
                if !second_path(receiver, link, record, sealed, deadline).await {
                    continue;
                }
                let acked = Settlement::Retry {
                    attempts: record.attempts,
                    next_attempt_at: record.next_attempt_at,
                    receiver_acked: true,
                };
                if let Err(e) = self.store.settle_outbox_read(record, &acked).await {
                    tracing::warn!(error = %e, "could not record the center's ACK; sent again later");
                }
            }
        }
    }
}

async fn count_backlog(
    store: &dyn Store,
    shard: u16,
    mut report: Report,
) -> Result<Report, StoreError> {
    let counts = store.outbox_counts(shard).await?;
    report.backlog = counts.due + counts.waiting + counts.held;
    report.waiting = counts.waiting;
    report.gone = counts.gone;
    report.held = counts.held;
    if counts.capped {
        tracing::warn!(
            shard,
            "outbox backlog count stopped at its page budget: a lower bound"
        );
    }
    Ok(report)
}

/// What became of one due record in a pass.
enum Outcome {
    /// Too little time was left to start it: the next pass picks it up.
    NotStarted,
    /// The cloud failed enough in this pass to trip the breaker: left untouched.
    Held,
    Settled(Settlement),
    /// Signalled, but the record had been settled or moved meanwhile (the index lags behind a
    /// settle); the cloud's request-id dedup made the extra signal harmless.
    Raced,
    Failed(StoreError),
}

impl Worker<'_> {
    /// A household's due records, one after another.
    async fn deliver_in_turn(self, records: &[&OutboxRecord], gate: &Gate) -> Vec<Outcome> {
        let links = self.monitoring_links(records).await;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let second = self
                .receiver
                .zip(links.get(&record.panel))
                .filter(|_| !record.receiver_acked);
            out.push(self.deliver(record, gate, second).await);
        }
        out
    }

    /// The monitoring links of one household's panels, read once for all its records, when any
    /// of them still waits for the center's ACK (the household's quota bounds them per pass).
    /// Unreadable: no second path this pass, the cloud is still signalled.
    async fn monitoring_links(
        self,
        records: &[&OutboxRecord],
    ) -> std::collections::BTreeMap<String, MonitoringLink> {
        let Some(first) = records.first() else {
            return Default::default();
        };
        if self.receiver.is_none() || records.iter().all(|r| r.receiver_acked) {
            return Default::default();
        }
        match self.store.household(&first.household).await {
            Ok(snapshot) => snapshot.monitoring,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the household's monitoring links");
                Default::default()
            }
        }
    }

    async fn deliver(
        self,
        record: &OutboxRecord,
        gate: &Gate,
        second: Option<(&dyn AlarmReceiver, &MonitoringLink)>,
    ) -> Outcome {
        let Worker {
            store,
            panels,
            keys,
            v2_seals,
            clock,
            until,
            ..
        } = self;
        let calls = u32::from(record.lane == Lane::Held) + 1 + u32::from(second.is_some());
        if until.remaining() < CALL_BUDGET * calls + SETTLE_MARGIN {
            return Outcome::NotStarted;
        }
        if gate.tripped() {
            return Outcome::Held;
        }
        if record.lane == Lane::Held
            && let Some(settlement) = check_held(record, store, panels, clock, gate).await
        {
            let audit = (settlement == Settlement::Dropped).then(|| AuditEntry {
                at: clock.now(),
                actor: "system".to_string(),
                message: format!(
                    "A voice disarm attempt for {} was not sent: the panel cloud says it is not in \
                 this account",
                    record.panel
                ),
            });
            let written = match &audit {
                Some(entry) => {
                    store
                        .settle_outbox(
                            &record.request_id,
                            &settlement,
                            Some((record.household.as_str(), entry)),
                        )
                        .await
                }
                None => store.settle_outbox_read(record, &settlement).await,
            };
            return match written {
                Ok(()) => Outcome::Settled(settlement),
                Err(StoreError::Conflict) => Outcome::Raced,
                Err(e) => Outcome::Failed(e),
            };
        }
        let (settlement, verdict) = process(record, panels, keys, v2_seals, clock, second).await;
        gate.note(verdict);
        crate::common::crash::crash_point!(
            crate::common::crash::REDELIVERY_SIGNAL_ACKED,
            if settlement == Settlement::Delivered
        );
        match store.settle_outbox_read(record, &settlement).await {
            Ok(()) => Outcome::Settled(settlement),
            Err(StoreError::Conflict) => Outcome::Raced,
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// Asks the cloud whether a held record's panel is the account's, before anything is sent for
/// it. `None` when it is (the confirmation is renewed, and the record may be signalled); else how
/// the record settles: dropped unsent, or held a while longer.
async fn check_held(
    record: &OutboxRecord,
    store: &dyn Store,
    panels: &dyn PanelCloud,
    clock: &dyn Clock,
    gate: &Gate,
) -> Option<Settlement> {
    let deadline = Deadline::after(CALL_BUDGET);
    match panels
        .panel(&record.household, &record.panel, deadline)
        .await
    {
        Ok(panel) => {
            let panel = [ConfirmedPanel::from(&panel)];
            if let Err(e) = store
                .confirm_panels(&record.household, &panel, clock.now())
                .await
            {
                tracing::warn!(error = %e, "could not record the panel's confirmation");
            }
            None
        }
        Err(PanelError::NotFound) => {
            gate.note(Verdict::Answered);
            // Names the record like `outbox_seal_unreadable` below but is another event, at
            // another level: docs/deploy.md and docs/panel-api.md send operators to each marker.
            tracing::warn!(
                marker = "held_attempt_dropped",
                request_id = %record.request_id,
                household = %record.household,
                panel = %record.panel,
                "held attempt for a panel the cloud says is not in the account: dropped unsent"
            );
            Some(Settlement::Dropped)
        }
        Err(e) => {
            let attempts = record.attempts.saturating_add(1);
            tracing::warn!(request_id = %record.request_id, attempts, error = %e, "held attempt's panel not confirmed yet");
            let verdict = Verdict::of(&e);
            gate.note(verdict);
            // A failure of the whole cloud is the breaker's to pace, as for the due lane: the
            // held attempt goes within seconds of the cloud's return, not after a backoff.
            let wait = if verdict == Verdict::Failed {
                CLOUD_RETRY
            } else {
                backoff(attempts)
            };
            Some(Settlement::Retry {
                attempts,
                next_attempt_at: clock.now() + wait,
                receiver_acked: false,
            })
        }
    }
}

/// Sends the attempt of `record` (its kind and member from the seal) to the panel's monitoring
/// center over the second path, by `deadline`: true when the center ACKed. The directive and
/// the worker send it alike, and both kinds alike: one event of one length, the same log lines.
pub(crate) async fn second_path(
    receiver: &dyn AlarmReceiver,
    link: &MonitoringLink,
    record: &OutboxRecord,
    sealed: seal::Sealed,
    deadline: Deadline,
) -> bool {
    let event = ReceiverEvent::of_attempt(
        sealed.duress,
        sealed.member,
        record.created_at,
        &record.request_id,
    );
    match receiver.transmit(link, &event, deadline).await {
        Ok(()) => {
            tracing::info!(
                marker = "second_path_acked",
                household = %record.household,
                request_id = %record.request_id,
                "the monitoring center acknowledged the attempt the panel cloud could not take"
            );
            true
        }
        Err(e) => {
            tracing::warn!(
                marker = "second_path_failed",
                household = %record.household,
                request_id = %record.request_id,
                error = %e,
                "the monitoring center did not acknowledge the attempt; the worker sends it again"
            );
            false
        }
    }
}

/// Opens `record`'s seal. With a reloading source, a seal naming a pepper id the loaded keyring
/// lacks makes it re-read the pepper secret first (a pepper added after this worker started);
/// a seal naming a known pepper that doesn't open was altered or moved, and no keyring helps.
async fn open_seal(
    record: &OutboxRecord,
    keys: Keys<'_>,
    v2: seal::V2Cutoff,
) -> Result<seal::Sealed, seal::Unopened> {
    let to = seal::Binding {
        request_id: &record.request_id,
        household: &record.household,
        panel: &record.panel,
    };
    let open = |keyring: &Keyring| seal::open(keyring, to, record.created_at, v2, &record.seal);
    match keys {
        Keys::Fixed(keyring) => open(keyring),
        Keys::Reloading(source) => {
            let keyring = source.current();
            let opened = open(&keyring);
            if opened != Err(seal::Unopened::Unreadable) {
                return opened;
            }
            let id = Keyring::sealed_pepper_id(&record.seal).ok_or(seal::Unopened::Unreadable)?;
            if keyring.contains(id) {
                return opened;
            }
            let keyring = source.for_ids(&[id]).await;
            open(&keyring)
        }
    }
}

async fn process(
    record: &OutboxRecord,
    panels: &dyn PanelCloud,
    keys: Keys<'_>,
    v2: seal::V2Cutoff,
    clock: &dyn Clock,
    second: Option<(&dyn AlarmReceiver, &MonitoringLink)>,
) -> (Settlement, Verdict) {
    let attempts = record.attempts.saturating_add(1);
    let retry = |receiver_acked: bool| {
        if record.lane == Lane::Gone {
            Settlement::Gone {
                attempts,
                next_attempt_at: clock.now() + GONE_RETRY,
            }
        } else {
            Settlement::Retry {
                attempts,
                next_attempt_at: clock.now() + backoff(attempts),
                receiver_acked,
            }
        }
    };
    let sealed = match open_seal(record, keys, v2).await {
        Ok(sealed) => sealed,
        // Kept pending, and visible in the backlog alarm, rather than drop what may be a duress,
        // or deliver it for premises it wasn't spoken at; each reason under its own marker.
        Err(why) => {
            let (marker, what) = match why {
                // Its pepper is gone from the keyring (even after a re-read), or the seal was
                // altered or moved to another record, household or panel.
                seal::Unopened::Unreadable => (
                    "outbox_seal_unreadable",
                    "outbox seal cannot be opened: pepper missing from the keyring, or the record altered?",
                ),
                // A seal of the former format, bound to the request id only, on a record
                // written after the cutoff: only a seal copied from an older record can be
                // that, maybe onto other premises. A genuine record from before the upgrade goes
                // out once OUTBOX_V2_SEALS_BEFORE is set past its created_at.
                seal::Unopened::V2AfterCutoff => (
                    "outbox_seal_v2_refused",
                    "outbox seal of the former format (v2) on a record written after OUTBOX_V2_SEALS_BEFORE; not sent",
                ),
            };
            tracing::error!(
                marker,
                request_id = %record.request_id,
                household = %record.household,
                panel = %record.panel,
                created_at = %record.created_at,
                "{what}"
            );
            return (retry(false), Verdict::NoCall);
        }
    };
    // The center first: it is the path that is up when the cloud is not.
    let receiver_acked = match second {
        Some((receiver, link)) => {
            second_path(receiver, link, record, sealed, Deadline::after(CALL_BUDGET)).await
        }
        None => false,
    };
    let request = SignalRequest {
        member: sealed.member,
        source: Source::Voice,
        kind: AttemptKind::of(sealed.duress),
        request_id: record.request_id.clone(),
        occurred_at: Some(record.created_at),
    };
    let deadline = Deadline::after(CALL_BUDGET);
    // A disarm a directive handed over (the cloud had not answered it in the assistant's time)
    // is carried out, with its own request id, so the cloud does it once; past its window it is
    // only signalled, like every other record. A failed disarm is never handed over.
    let sent = if record.disarm_until.is_some_and(|until| clock.now() < until) {
        panels
            .disarm(
                &record.household,
                &record.panel,
                &DisarmRequest::from(request),
                deadline,
            )
            .await
            .map(|_| ())
    } else {
        panels
            .signal(&record.household, &record.panel, &request, deadline)
            .await
    };
    match sent {
        Ok(()) => {
            tracing::info!(request_id = %record.request_id, "pending signal delivered");
            (Settlement::Delivered, Verdict::Answered)
        }
        Err(PanelError::NotFound) => {
            // The panel left the account after the attempt. A duress still has to reach the
            // monitoring center: the cloud must take it (docs/panel-api.md); until it does, keep
            // trying, on the gone lane's own slow cadence and alarm.
            tracing::error!(
                marker = "outbox_panel_gone",
                request_id = %record.request_id,
                household = %record.household,
                panel = %record.panel,
                attempts,
                "pending signal for a panel no longer in the account; kept pending"
            );
            (
                Settlement::Gone {
                    attempts,
                    next_attempt_at: clock.now() + GONE_RETRY,
                },
                Verdict::Answered,
            )
        }
        Err(e) => {
            tracing::warn!(request_id = %record.request_id, attempts, error = %e, "pending signal not delivered yet");
            let verdict = Verdict::of(&e);
            let settlement = match (verdict, record.lane) {
                // The cloud's failure, not the record's: no backoff (the breaker guards the
                // cloud), so it goes as soon as the cloud is back.
                (Verdict::Failed, Lane::Due | Lane::Waiting) => Settlement::Retry {
                    attempts,
                    next_attempt_at: clock.now() + CLOUD_RETRY,
                    receiver_acked,
                },
                _ => retry(receiver_acked),
            };
            (settlement, verdict)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_pass_adds_its_work_and_replaces_what_is_left() {
        let mut total = Report {
            examined: 100,
            delivered: 90,
            retrying: 10,
            backlog: 500,
            shards: 8,
            ..Report::default()
        };
        total.followed_by(&Report {
            examined: 40,
            delivered: 40,
            backlog: 460,
            waiting: 3,
            shards: 8,
            ..Report::default()
        });
        assert_eq!(
            (total.examined, total.delivered, total.retrying),
            (140, 130, 10)
        );
        assert_eq!((total.backlog, total.waiting, total.shards), (460, 3, 8));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<i64> = (1..=9).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[tokio::test]
    async fn a_seal_under_an_unknown_pepper_rereads_the_keyring_and_an_altered_one_does_not() {
        use std::collections::BTreeMap;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let ring = |current: &str, ids: &[(&str, u8)]| {
            let peppers: BTreeMap<String, Vec<u8>> = ids
                .iter()
                .map(|(id, b)| (id.to_string(), vec![*b; 32]))
                .collect();
            Keyring::new(current, peppers).unwrap()
        };
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = loads.clone();
        let load: crate::domain::voice_codes::LoadKeyring = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(ring("p2", &[("p1", 1), ("p2", 2)])) })
        });
        let source = KeyringSource::new(
            Arc::new(ring("p1", &[("p1", 1)])),
            load,
            StdDuration::ZERO,
            StdDuration::from_secs(1),
        );
        let now = chrono::Utc::now();
        let record =
            |seal: String| OutboxRecord::pending("req-1".into(), "h1", "home", seal, now, now);
        let to = seal::Binding {
            request_id: "req-1",
            household: "h1",
            panel: "home",
        };
        let duress = seal::Sealed {
            duress: true,
            member: Some(1),
        };
        let no_v2 = seal::V2Cutoff(None);
        // Sealed under p1, known: opened without a read.
        let known = record(seal::seal(&ring("p1", &[("p1", 1)]), to, duress));
        assert_eq!(
            open_seal(&known, Keys::Reloading(&source), no_v2).await,
            Ok(duress)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        // Altered, naming the known p1: no keyring would open it, so no read.
        let mut altered = known.clone();
        altered.seal.push('A');
        assert_eq!(
            open_seal(&altered, Keys::Reloading(&source), no_v2).await,
            Err(seal::Unopened::Unreadable)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        // Sealed under p2 by a function that knows more: a fixed keyring can't open it, the
        // source re-reads once and opens it.
        let newer = record(seal::seal(&ring("p2", &[("p2", 2)]), to, duress));
        let fixed = ring("p1", &[("p1", 1)]);
        assert_eq!(
            open_seal(&newer, Keys::Fixed(&fixed), no_v2).await,
            Err(seal::Unopened::Unreadable)
        );
        assert_eq!(
            open_seal(&newer, Keys::Reloading(&source), no_v2).await,
            Ok(duress)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(
            open_seal(&newer, Keys::Reloading(&source), no_v2).await,
            Ok(duress)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
