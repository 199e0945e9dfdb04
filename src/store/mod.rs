//! Persistence port. [`memory::MemoryStore`] is the embedded store of the local stack;
//! [`dynamodb::DynamoStore`] is production's single-table DynamoDB design (docs/dynamodb.md).
//! Both pass the same conformance suite (tests/store_conformance.rs).

pub mod dynamodb;
pub mod memory;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::voice_codes::{Profile, Throttle};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HouseholdSnapshot {
    pub profile: Profile,
    pub throttle: Throttle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// The panel has not acknowledged yet; the re-delivery worker owns it.
    Pending,
    /// The panel cloud acknowledged the request.
    Delivered,
}

/// One voice disarm attempt that reached (or tried to reach) the panel cloud.
///
/// Normal and duress attempts write records of identical shape and size at the same point of
/// the flow, and the re-delivery worker treats them alike, so their status and attempts stay
/// alike too. Which kind it was, and for which member, is only recoverable with the pepper, from
/// `seal` (crate::redelivery::seal).
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Delivered,
    /// Still pending: try again at `next_attempt_at`.
    Retry {
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
    },
}

/// A line of the household's audit log, as the household sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub message: String,
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

    /// Inserts a record that [`Store::record_attempt`] could not write, with `audit`, atomically.
    /// [`StoreError::Conflict`] if a record with its request id already exists.
    async fn put_outbox(
        &self,
        record: &OutboxRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError>;

    /// Pending records due at `now`, oldest first: up to `limit` readable ones, plus every
    /// unreadable item met on the way.
    async fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<DueRecords, StoreError>;

    async fn outbox_record(&self, request_id: &str) -> Result<Option<OutboxRecord>, StoreError>;

    async fn append_audit(&self, household: &str, entry: &AuditEntry) -> Result<(), StoreError>;

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
}

/// The fixed window `[start, start + window)` that contains `now`.
pub fn window_start(now: DateTime<Utc>, window: Duration) -> i64 {
    let w = window.num_seconds().max(1);
    now.timestamp().div_euclid(w) * w
}
