//! Persistence port. [`crate::adapters::store::memory::MemoryStore`] is the embedded store of
//! the local stack; [`crate::adapters::store::dynamodb::DynamoStore`] is production's
//! single-table DynamoDB design (docs/dynamodb.md). Both pass the same conformance suite
//! (tests/it/store_conformance.rs).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::voice_codes::{Profile, Throttle};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HouseholdSnapshot {
    pub profile: Profile,
    pub throttle: Throttle,
    /// Panels the panel cloud confirmed in this account, with when it last did (panel id →
    /// time). Only a panel confirmed here, or by the cloud in the same request, may get an
    /// outbox record: see crate::domain::skill::OWNERSHIP_TTL.
    pub panels_seen: BTreeMap<String, DateTime<Utc>>,
    /// The monitoring center of each confirmed panel that has one (panel id → link), as the
    /// panel cloud last reported it: what the second path sends to while the cloud is down.
    pub monitoring: BTreeMap<String, crate::domain::ports::monitoring::MonitoringLink>,
}

/// A panel the cloud confirmed in an account, with the monitoring center it reported for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedPanel {
    pub id: String,
    /// `Some(None)` when the cloud reported the panel without a link: a link stored before is
    /// dropped. `None` when the confirmation came without the panel's details (a webhook
    /// naming only the panel's id): the stored link stays as it is.
    pub monitoring: Option<Option<crate::domain::ports::monitoring::MonitoringLink>>,
}

impl ConfirmedPanel {
    /// A confirmation that says nothing of the panel's monitoring link.
    pub fn id_only(id: &str) -> Self {
        ConfirmedPanel {
            id: id.to_string(),
            monitoring: None,
        }
    }
}

impl From<&crate::domain::ports::panel::Panel> for ConfirmedPanel {
    fn from(p: &crate::domain::ports::panel::Panel) -> Self {
        ConfirmedPanel {
            id: p.id.clone(),
            monitoring: Some(p.monitoring.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// The panel has not acknowledged yet; the re-delivery worker owns it.
    Pending,
    /// The panel cloud acknowledged the request.
    Delivered,
    /// Held for a panel the cloud then said is not in the account: never sent (see
    /// [`Lane::Held`]).
    Dropped,
}

/// Where a pending record waits (docs/dynamodb.md, "The outbox lanes"). A kind-independent
/// property of the record: duress and normal records move through the lanes alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// The shard's shared queue, oldest due first: what the worker drains every pass.
    #[default]
    Due,
    /// Past its household's quota: waits, oldest first, in the household's own queue until one
    /// of the household's records in [`Lane::Due`] settles. Never dropped.
    Waiting,
    /// Its panel left the account (the cloud's `panel_not_found`): retried on a slow cadence of
    /// its own, counted and alarmed apart from the backlog, never dropped.
    Gone,
    /// Spoken for a panel whose confirmation had run out ([`crate::domain::skill::OWNERSHIP_TTL`]) while
    /// the cloud could not be asked: nothing goes to the cloud for it until the cloud confirms
    /// the panel is the account's, then it is signalled like any other record; if the cloud
    /// says the panel is not the account's it is [`OutboxStatus::Dropped`], never sent. At most
    /// [`HELD_PER_HOUSEHOLD`] per household, so no account can fill the store through it.
    Held,
}

/// Pending [`Lane::Held`] records one household may have. A household says a few codes during
/// one outage; a token holder naming panels that are not its own gets no more than this.
pub const HELD_PER_HOUSEHOLD: u32 = 16;

/// How the pending outbox is spread and bounded. The same for every function of a deployment
/// (`OUTBOX_SHARDS`, `OUTBOX_HOUSEHOLD_QUOTA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPolicy {
    /// Partitions of the pending index. A household's records all live in one shard, picked by
    /// a stable hash of the household. May only ever grow: the worker drains shards
    /// `0..shards`, so records in a shard past a smaller count would wait for good.
    pub shards: u16,
    /// Records of one household that may be in its shard's [`Lane::Due`] queue once they have
    /// failed once; past it they wait in [`Lane::Waiting`]. This is what keeps one household
    /// from delaying another's duress by more than one worker pass.
    pub household_quota: u32,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        OutboxPolicy {
            shards: 8,
            household_quota: 8,
        }
    }
}

impl OutboxPolicy {
    pub const MAX_SHARDS: u16 = 256;
    pub const MAX_QUOTA: u32 = 1000;

    /// The shard of a household's records: FNV-1a, so every function and every release of the
    /// code agrees on it without configuration.
    pub fn shard_of(&self, household: &str) -> u16 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in household.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let shards = u64::from(self.shards.max(1));
        // The remainder is below `shards`, itself a u16.
        u16::try_from(h % shards).unwrap_or(0)
    }
}

/// Pending records of one shard, by lane: the real backlog, counted every pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub due: usize,
    pub waiting: usize,
    pub gone: usize,
    pub held: usize,
    /// A count stopped at its page budget: the figures are lower bounds.
    pub capped: bool,
}

/// One voice disarm attempt that reached (or tried to reach) the panel cloud.
///
/// Normal and duress attempts write records of identical shape and size at the same point of
/// the flow, and the re-delivery worker treats them alike, so their status and attempts stay
/// alike too. Which kind it was, and for which member, is only recoverable with the pepper, from
/// `seal` (crate::domain::redelivery::seal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub request_id: String,
    pub household: String,
    pub panel: String,
    /// `{pepper_id}.{base64}`: the attempt's kind and member, sealed to this request id.
    pub seal: String,
    pub created_at: DateTime<Utc>,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    #[serde(default)]
    pub lane: Lane,
    /// Counted in its household's quota: set when it first fails in [`Lane::Due`]. A record
    /// still in its first panel call is not counted, so the directive's own path (record, call,
    /// settle delivered) never touches the household's counter.
    #[serde(default)]
    pub counted: bool,
    /// Set when a directive handed its unanswered disarm over ([`Settlement::HandedOver`]):
    /// until then the worker sends the record as a `disarm`, after it as a `signal`. Set or not
    /// by how fast the cloud answered, never by the kind of code.
    #[serde(default)]
    pub disarm_until: Option<DateTime<Utc>>,
    /// The monitoring center acknowledged the attempt's event over the skill's second path
    /// (crate::domain::ports::monitoring): the worker then only signals the cloud. Written by
    /// the settle write of a failed panel call, for either kind; never unset.
    #[serde(default)]
    pub receiver_acked: bool,
}

impl OutboxRecord {
    /// A new pending attempt, in its shard's queue, not yet counted.
    pub fn pending(
        request_id: String,
        household: &str,
        panel: &str,
        seal: String,
        created_at: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
    ) -> Self {
        OutboxRecord {
            request_id,
            household: household.to_string(),
            panel: panel.to_string(),
            seal,
            created_at,
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at,
            lane: Lane::Due,
            counted: false,
            disarm_until: None,
            receiver_acked: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Delivered,
    /// Still pending: try again at `next_attempt_at`. A first failure in [`Lane::Due`] counts
    /// the record in its household's quota, or moves it to [`Lane::Waiting`] past it.
    Retry {
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        /// The center ACKed the second path's event: sets [`OutboxRecord::receiver_acked`]
        /// (false leaves it as it is).
        receiver_acked: bool,
    },
    /// The panel cloud says the panel is no longer in the account: still pending, in
    /// [`Lane::Gone`], next tried at `next_attempt_at`.
    Gone {
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
    },
    /// A directive's disarm the panel cloud did not answer in the assistant's time: still
    /// pending, in [`Lane::Due`] and uncounted, due at `next_attempt_at`, to be sent as a
    /// `disarm` until `disarm_until`. Only a record in [`Lane::Due`] can be handed over.
    HandedOver {
        next_attempt_at: DateTime<Utc>,
        disarm_until: DateTime<Utc>,
    },
    /// A [`Lane::Held`] record whose panel the cloud says is not the account's: never sent,
    /// out of the pending index, its place in the household's held lane freed.
    Dropped,
}

/// The re-delivery worker's circuit breaker for one panel cloud (crate::domain::redelivery, "Breaker"):
/// one store item per cloud, so every worker invocation (a fresh process on Lambda) sees the same
/// state, and one conditional write decides which worker sends the interval's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    /// Open: the cloud is failing; the worker sends it one probe per interval and holds the rest.
    pub open: bool,
    /// Cloud-wide failures in a row (closed), or failed probes since it opened.
    pub failures: u32,
    /// Open: when the next probe may go.
    pub probe_at: DateTime<Utc>,
    /// When it last opened or closed.
    pub since: DateTime<Utc>,
    /// Stored version: a save must name the version it was read at. A cloud never written
    /// reads as closed, at version 0.
    pub version: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            open: false,
            failures: 0,
            probe_at: DateTime::<Utc>::UNIX_EPOCH,
            since: DateTime::<Utc>::UNIX_EPOCH,
            version: 0,
        }
    }
}

/// A line of the household's audit log, as the household sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub message: String,
}

/// How the line of [`Store::append_refusal`] reads once `count` refusals are counted on it.
pub fn counted_refusal(message: &str, count: u64) -> String {
    if count <= 1 {
        return message.to_string();
    }
    format!("{message} ({count} times)")
}

/// Login-with-Amazon tokens for the event gateway, sealed with the keyring (never in clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGrant {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
}

/// What a voice attempt's decision does to the household's throttle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleWrite<'a> {
    /// Writes the new state, if the stored version is still `throttle.version`; the stored
    /// version goes up by one.
    Set(&'a Throttle),
    /// Leaves the state as it was read at version `0`: only checks that nobody changed it
    /// since. The version stays, so concurrent attempts that change nothing (parallel right
    /// codes, attempts during a lockout) don't invalidate each other; any change still does.
    Check(u64),
}

impl ThrottleWrite<'_> {
    pub fn expected_version(&self) -> u64 {
        match self {
            ThrottleWrite::Set(t) => t.version,
            ThrottleWrite::Check(v) => *v,
        }
    }
}

/// The pending records a pass found due, and the items it could not decode. An unreadable item
/// is reported (it may be a duress) but never stops the others from being delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueRecords {
    pub records: Vec<OutboxRecord>,
    pub unreadable: Vec<Unreadable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The item's key, for the operator who must look at it.
    pub key: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race: re-read and retry.
    #[error("concurrent update")]
    Conflict,
    #[error("store is throttling requests")]
    Throttled,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
}

/// Calls `$m!` with every async method of [`Store`] as `fn name(arg: Type, ...) -> Ok type;`
/// (`outbox_policy`, the one synchronous method, is left out): the one list that the
/// delegating implementations (DynamoStore's inherent methods, the metered wrapper) expand,
/// so a method added to the port is added to them in one place.
macro_rules! with_store_methods {
    ($m:ident) => {
        $m! {
            fn household(household: &str) -> crate::domain::ports::store::HouseholdSnapshot;
            fn save_profile(household: &str, profile: &crate::domain::voice_codes::Profile) -> u64;
            fn record_attempt(household: &str, throttle: crate::domain::ports::store::ThrottleWrite<'_>, outbox: Option<&crate::domain::ports::store::OutboxRecord>, audit: &[crate::domain::ports::store::AuditEntry]) -> ();
            fn hold_attempt(household: &str, throttle: crate::domain::ports::store::ThrottleWrite<'_>, outbox: &crate::domain::ports::store::OutboxRecord, audit: &[crate::domain::ports::store::AuditEntry]) -> bool;
            fn settle_outbox(request_id: &str, settlement: &crate::domain::ports::store::Settlement, audit: Option<(&str, &crate::domain::ports::store::AuditEntry)>) -> ();
            fn settle_outbox_read(record: &crate::domain::ports::store::OutboxRecord, settlement: &crate::domain::ports::store::Settlement) -> ();
            fn put_outbox(record: &crate::domain::ports::store::OutboxRecord, audit: Option<&crate::domain::ports::store::AuditEntry>) -> ();
            fn outbox_due(lane: crate::domain::ports::store::Lane, shard: u16, now: chrono::DateTime<chrono::Utc>, limit: usize, per_household: usize) -> crate::domain::ports::store::DueRecords;
            fn promote_waiting(shard: u16, max: usize) -> usize;
            fn outbox_counts(shard: u16) -> crate::domain::ports::store::OutboxCounts;
            fn confirm_panels(household: &str, panels: &[crate::domain::ports::store::ConfirmedPanel], at: chrono::DateTime<chrono::Utc>) -> ();
            fn forget_panel(household: &str, panel: &str) -> ();
            fn outbox_record(request_id: &str) -> Option<crate::domain::ports::store::OutboxRecord>;
            fn append_audit(household: &str, entry: &crate::domain::ports::store::AuditEntry) -> ();
            fn append_refusal(household: &str, entry: &crate::domain::ports::store::AuditEntry, window: chrono::Duration) -> ();
            fn audit(household: &str, limit: usize) -> Vec<crate::domain::ports::store::AuditEntry>;
            fn take_rate_token(key_name: &str, now: chrono::DateTime<chrono::Utc>, window: chrono::Duration, max: u32) -> bool;
            fn put_grant(account: &str, region: &str, grant: &crate::domain::ports::store::StoredGrant) -> ();
            fn grants(account: &str) -> Vec<(String, crate::domain::ports::store::StoredGrant)>;
            fn delete_grant(account: &str, region: &str) -> ();
            fn acquire_lease(name: &str, owner: &str, now: chrono::DateTime<chrono::Utc>, until: chrono::DateTime<chrono::Utc>) -> bool;
            fn release_lease(name: &str, owner: &str) -> ();
            fn claim_event(event_id: &str, expires_at: chrono::DateTime<chrono::Utc>) -> bool;
            fn set_google_linked(account: &str, linked: bool) -> ();
            fn google_linked(account: &str) -> bool;
            fn breaker(cloud: &str) -> crate::domain::ports::store::Breaker;
            fn save_breaker(cloud: &str, breaker: &crate::domain::ports::store::Breaker) -> u64;
        }
    };
}
pub(crate) use with_store_methods;

#[async_trait]
pub trait Store: Send + Sync {
    /// The profile and throttle state of a household, in one read. A household never written
    /// reads as empty, with versions 0.
    async fn household(&self, household: &str) -> Result<HouseholdSnapshot, StoreError>;

    /// Saves the profile if its stored version still equals `profile.version`; returns the new
    /// version. [`StoreError::Conflict`] otherwise.
    async fn save_profile(&self, household: &str, profile: &Profile) -> Result<u64, StoreError>;

    /// Atomically: applies `throttle` (see [`ThrottleWrite`]), inserts `outbox` (which must be
    /// new), and appends `audit`. [`StoreError::Conflict`] if the stored throttle version is no
    /// longer the one the decision was made on, or the record exists.
    async fn record_attempt(
        &self,
        household: &str,
        throttle: ThrottleWrite<'_>,
        outbox: Option<&OutboxRecord>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError>;

    /// Settles a pending outbox record and appends `audit`, atomically. Settling a record that
    /// is no longer pending is a [`StoreError::Conflict`].
    async fn settle_outbox(
        &self,
        request_id: &str,
        settlement: &Settlement,
        audit: Option<(&str, &AuditEntry)>,
    ) -> Result<(), StoreError>;

    /// Settles a record as the worker read it from the pending index, without reading it
    /// again: [`StoreError::Conflict`] if it was settled or moved since.
    async fn settle_outbox_read(
        &self,
        record: &OutboxRecord,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
        self.settle_outbox(&record.request_id, settlement, None)
            .await
    }

    /// [`Store::record_attempt`] for an attempt on a panel not confirmed lately: `outbox` goes
    /// to [`Lane::Held`] (whatever its `lane` says) if the household has fewer than
    /// [`HELD_PER_HOUSEHOLD`] pending there. Past that, the throttle and `audit` are written
    /// without it and the result is `Ok(false)`. The same errors as `record_attempt`.
    async fn hold_attempt(
        &self,
        household: &str,
        throttle: ThrottleWrite<'_>,
        outbox: &OutboxRecord,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError>;

    /// Inserts a record that [`Store::record_attempt`] could not write, with `audit`, atomically.
    /// [`StoreError::Conflict`] if a record with its request id already exists.
    async fn put_outbox(
        &self,
        record: &OutboxRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError>;

    /// The shards and quota this store lays the pending outbox out with.
    fn outbox_policy(&self) -> OutboxPolicy;

    /// Pending records of `lane` ([`Lane::Due`], [`Lane::Gone`] or [`Lane::Held`]) in `shard`, due at `now`,
    /// oldest first: up to `limit` readable ones, at most `per_household` of any one household
    /// (the rest are passed over, left for the next pass), plus every unreadable item met on
    /// the way. Reads a bounded number of pages.
    async fn outbox_due(
        &self,
        lane: Lane,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        per_household: usize,
    ) -> Result<DueRecords, StoreError>;

    /// Moves waiting records of `shard` into the due queue for households below their quota,
    /// looking at most at `max` waiting records. Settling a counted record promotes its
    /// household's next one already; this catches up after a crash between the two steps.
    /// Returns how many moved.
    async fn promote_waiting(&self, shard: u16, max: usize) -> Result<usize, StoreError>;

    /// The pending records of `shard`, by lane.
    async fn outbox_counts(&self, shard: u16) -> Result<OutboxCounts, StoreError>;

    /// Records that the panel cloud confirmed these panels in the account at `at`, each with
    /// the monitoring link it reported (or none), which [`HouseholdSnapshot::monitoring`]
    /// returns from then on.
    async fn confirm_panels(
        &self,
        household: &str,
        panels: &[ConfirmedPanel],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Forgets a panel the cloud says is not in the account. Idempotent.
    async fn forget_panel(&self, household: &str, panel: &str) -> Result<(), StoreError>;

    async fn outbox_record(&self, request_id: &str) -> Result<Option<OutboxRecord>, StoreError>;

    async fn append_audit(&self, household: &str, entry: &AuditEntry) -> Result<(), StoreError>;

    /// Audits a refused request so that repeating it can't grow the log: the first refusal
    /// with `entry.message` in the fixed window of `window` containing `entry.at` appends
    /// `entry`; each later one in that window counts on that line instead
    /// ([`counted_refusal`] is how it then reads). One line per message and window, however
    /// many requests.
    async fn append_refusal(
        &self,
        household: &str,
        entry: &AuditEntry,
        window: Duration,
    ) -> Result<(), StoreError>;

    /// Newest first.
    async fn audit(&self, household: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Takes one of `max` tokens of the fixed window containing `now`. `false` when none left.
    async fn take_rate_token(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: Duration,
        max: u32,
    ) -> Result<bool, StoreError>;

    async fn put_grant(
        &self,
        account: &str,
        region: &str,
        grant: &StoredGrant,
    ) -> Result<(), StoreError>;

    /// Every region's grant for the account.
    async fn grants(&self, account: &str) -> Result<Vec<(String, StoredGrant)>, StoreError>;

    async fn delete_grant(&self, account: &str, region: &str) -> Result<(), StoreError>;

    /// Takes the lease `name` for `owner` until `until`, if nobody holds it or the holder's lease
    /// ended before `now`. `false` when someone else holds it. Taking a lease one already holds
    /// extends it.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Gives the lease back, if `owner` still holds it.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError>;

    /// Records whether the account's Google link stands: `false` when Google sent DISCONNECT,
    /// `true` again on its next SYNC (a relink starts with one). Idempotent.
    async fn set_google_linked(&self, account: &str, linked: bool) -> Result<(), StoreError>;

    /// `false` while the account is recorded as unlinked from Google. An account never recorded
    /// reads as linked: households linked before this was stored must keep getting reports, and
    /// HomeGraph itself refuses (404) a user that never linked.
    async fn google_linked(&self, account: &str) -> Result<bool, StoreError>;

    /// Records a webhook event id until `expires_at`. `false` if it was already recorded, which
    /// makes a replayed event a no-op.
    async fn claim_event(
        &self,
        event_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The re-delivery breaker of panel cloud `cloud`, read consistently.
    async fn breaker(&self, cloud: &str) -> Result<Breaker, StoreError>;

    /// Saves the breaker if its stored version still equals `breaker.version`; returns the new
    /// version. [`StoreError::Conflict`] otherwise (another worker changed it first).
    async fn save_breaker(&self, cloud: &str, breaker: &Breaker) -> Result<u64, StoreError>;
}

/// The pending records of every shard, by lane.
pub async fn outbox_totals(store: &dyn Store) -> Result<OutboxCounts, StoreError> {
    let mut total = OutboxCounts::default();
    for shard in 0..store.outbox_policy().shards {
        let c = store.outbox_counts(shard).await?;
        total.due += c.due;
        total.waiting += c.waiting;
        total.gone += c.gone;
        total.held += c.held;
        total.capped |= c.capped;
    }
    Ok(total)
}

/// The fixed window `[start, start + window)` that contains `now`.
pub fn window_start(now: DateTime<Utc>, window: Duration) -> i64 {
    let w = window.num_seconds().max(1);
    now.timestamp().div_euclid(w) * w
}
