//! The embedded in-process store: the local stack's default. Same semantics as DynamoDB,
//! including the conditional writes, behind one mutex.
//!
//! It shares no code with the DynamoDB store on purpose, though their method signatures (and
//! the port's) repeat each other line for line: two independent implementations of one port
//! are what lets tests/it/store_conformance.rs catch a mistake in either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::domain::ports::monitoring::MonitoringLink;
use crate::domain::ports::store::{
    AuditEntry, Breaker, ConfirmedPanel, DueRecords, HELD_PER_HOUSEHOLD, HouseholdSnapshot, Lane,
    OutboxCounts, OutboxPolicy, OutboxRecord, OutboxStatus, Settlement, Store, StoreError,
    StoredGrant, ThrottleWrite, counted_refusal, window_start,
};
use crate::domain::voice_codes::{Profile, Throttle};

#[derive(Default)]
struct Inner {
    profiles: HashMap<String, Profile>,
    throttles: HashMap<String, Throttle>,
    outbox: HashMap<String, OutboxRecord>,
    audit: HashMap<String, Vec<AuditEntry>>,
    rates: HashMap<(String, i64), u32>,
    /// (household, window start, message) → (the refusal line's index in `audit`, its count).
    refusals: HashMap<(String, i64, String), (usize, u64)>,
    grants: HashMap<String, Vec<(String, StoredGrant)>>,
    events: HashMap<String, DateTime<Utc>>,
    /// Lease name → (owner, until).
    leases: HashMap<String, (String, DateTime<Utc>)>,
    /// Accounts whose Google link is gone (DISCONNECT, no SYNC since).
    google_unlinked: HashSet<String>,
    /// Household → panel → when the panel cloud last confirmed it in the account.
    panels_seen: HashMap<String, BTreeMap<String, DateTime<Utc>>>,
    /// Household → panel → the monitoring link the cloud reported with its last confirmation.
    monitoring: HashMap<String, BTreeMap<String, MonitoringLink>>,
    /// Panel cloud → its re-delivery breaker.
    breakers: HashMap<String, Breaker>,
}

impl Inner {
    /// The household's records counted in its quota: derived, where DynamoDB keeps a counter.
    fn counted(&self, household: &str) -> u32 {
        self.pending_where(household, |r| r.lane == Lane::Due && r.counted)
    }

    /// The household's pending records in [`Lane::Held`].
    fn held(&self, household: &str) -> u32 {
        self.pending_where(household, |r| r.lane == Lane::Held)
    }

    /// How many of the household's pending records satisfy `also`.
    fn pending_where(&self, household: &str, also: impl Fn(&OutboxRecord) -> bool) -> u32 {
        let n = self
            .outbox
            .values()
            .filter(|r| r.household == household && r.status == OutboxStatus::Pending && also(r))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Moves the household's oldest waiting record into the due queue, if below its quota.
    fn promote(&mut self, household: &str, quota: u32) -> bool {
        if self.counted(household) >= quota {
            return false;
        }
        let next = self
            .outbox
            .values_mut()
            .filter(|r| {
                r.household == household
                    && r.status == OutboxStatus::Pending
                    && r.lane == Lane::Waiting
            })
            .min_by(|a, b| (a.created_at, &a.request_id).cmp(&(b.created_at, &b.request_id)));
        match next {
            Some(r) => {
                r.lane = Lane::Due;
                r.counted = true;
                true
            }
            None => false,
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    policy: OutboxPolicy,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_outbox_policy(policy: OutboxPolicy) -> Self {
        MemoryStore {
            inner: Mutex::default(),
            policy,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves data that is still consistent (every method
        // checks before it mutates), so recovering from poisoning is safe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Settles a pending record. With `as_read`, only if it is still as the worker read it
    /// (pending, same lane, same counted flag), as DynamoDB's conditional update: a stale copy
    /// settles nothing. One lock for the check and the change.
    fn settle(
        &self,
        request_id: &str,
        settlement: &Settlement,
        audit: Option<(&str, &AuditEntry)>,
        as_read: Option<&OutboxRecord>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let quota = self.policy.household_quota;
        let Some(rec) = inner.outbox.get(request_id) else {
            return Err(StoreError::Conflict);
        };
        if rec.status != OutboxStatus::Pending {
            return Err(StoreError::Conflict);
        }
        if as_read.is_some_and(|read| {
            read.status != OutboxStatus::Pending
                || read.lane != rec.lane
                || read.counted != rec.counted
        }) {
            return Err(StoreError::Conflict);
        }
        let household = rec.household.clone();
        let (was_counted, lane) = (rec.counted, rec.lane);
        let first_failure = lane == Lane::Due && !was_counted;
        let room = inner.counted(&household) < quota;
        let Some(rec) = inner.outbox.get_mut(request_id) else {
            return Err(StoreError::Conflict);
        };
        let mut freed = false;
        match settlement {
            Settlement::Delivered => {
                rec.status = OutboxStatus::Delivered;
                freed = was_counted;
            }
            Settlement::Retry {
                attempts,
                next_attempt_at,
                receiver_acked,
            } => {
                rec.receiver_acked |= *receiver_acked;
                rec.attempts = *attempts;
                rec.next_attempt_at = *next_attempt_at;
                if first_failure {
                    if room {
                        rec.counted = true;
                    } else {
                        rec.lane = Lane::Waiting;
                    }
                }
            }
            Settlement::Gone {
                attempts,
                next_attempt_at,
            } => {
                rec.attempts = *attempts;
                rec.next_attempt_at = *next_attempt_at;
                rec.lane = Lane::Gone;
                rec.counted = false;
                freed = was_counted;
            }
            Settlement::HandedOver {
                next_attempt_at,
                disarm_until,
            } if lane == Lane::Due => {
                rec.next_attempt_at = *next_attempt_at;
                rec.disarm_until = Some(*disarm_until);
            }
            Settlement::HandedOver { .. } => return Err(StoreError::Conflict),
            // Only a held record can be dropped: anything else was proven the account's.
            Settlement::Dropped if lane == Lane::Held => rec.status = OutboxStatus::Dropped,
            Settlement::Dropped => return Err(StoreError::Conflict),
        }
        if freed {
            inner.promote(&household, quota);
        }
        if let Some((household, entry)) = audit {
            push_audit(&mut inner, household, std::slice::from_ref(entry));
        }
        Ok(())
    }

    /// Everything stored, as JSON: what an attacker with a full dump would hold.
    pub fn dump(&self) -> serde_json::Value {
        let inner = self.lock();
        let outbox: Vec<&OutboxRecord> = inner.outbox.values().collect();
        let grants: HashMap<&String, &Vec<(String, StoredGrant)>> = inner.grants.iter().collect();
        serde_json::json!({
            "profiles": inner.profiles,
            "throttles": inner.throttles,
            "outbox": outbox,
            "audit": inner.audit,
            "grants": grants,
        })
    }
}

/// [`Store::record_attempt`], under the caller's lock.
fn record(
    inner: &mut Inner,
    household: &str,
    throttle: ThrottleWrite<'_>,
    outbox: Option<&OutboxRecord>,
    audit: &[AuditEntry],
) -> Result<(), StoreError> {
    let stored = inner.throttles.get(household).map_or(0, |t| t.version);
    if stored != throttle.expected_version() {
        return Err(StoreError::Conflict);
    }
    if let Some(o) = outbox
        && inner.outbox.contains_key(&o.request_id)
    {
        return Err(StoreError::Conflict);
    }
    if let ThrottleWrite::Set(t) = throttle {
        let mut saved = t.clone();
        saved.version = stored + 1;
        inner.throttles.insert(household.to_string(), saved);
    }
    if let Some(o) = outbox {
        inner.outbox.insert(o.request_id.clone(), o.clone());
    }
    push_audit(inner, household, audit);
    Ok(())
}

fn push_audit(inner: &mut Inner, household: &str, entries: &[AuditEntry]) {
    inner
        .audit
        .entry(household.to_string())
        .or_default()
        .extend(entries.iter().cloned());
}

#[async_trait]
impl Store for MemoryStore {
    async fn household(&self, household: &str) -> Result<HouseholdSnapshot, StoreError> {
        let inner = self.lock();
        Ok(HouseholdSnapshot {
            profile: inner.profiles.get(household).cloned().unwrap_or_default(),
            throttle: inner.throttles.get(household).cloned().unwrap_or_default(),
            panels_seen: inner
                .panels_seen
                .get(household)
                .cloned()
                .unwrap_or_default(),
            monitoring: inner.monitoring.get(household).cloned().unwrap_or_default(),
        })
    }

    async fn save_profile(&self, household: &str, profile: &Profile) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let stored = inner.profiles.get(household).map_or(0, |p| p.version);
        if stored != profile.version {
            return Err(StoreError::Conflict);
        }
        let mut saved = profile.clone();
        saved.version = stored + 1;
        inner.profiles.insert(household.to_string(), saved);
        Ok(stored + 1)
    }

    async fn record_attempt(
        &self,
        household: &str,
        throttle: ThrottleWrite<'_>,
        outbox: Option<&OutboxRecord>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        record(&mut self.lock(), household, throttle, outbox, audit)
    }

    async fn settle_outbox(
        &self,
        request_id: &str,
        settlement: &Settlement,
        audit: Option<(&str, &AuditEntry)>,
    ) -> Result<(), StoreError> {
        self.settle(request_id, settlement, audit, None)
    }

    async fn settle_outbox_read(
        &self,
        record: &OutboxRecord,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
        self.settle(&record.request_id, settlement, None, Some(record))
    }

    async fn hold_attempt(
        &self,
        household: &str,
        throttle: ThrottleWrite<'_>,
        outbox: &OutboxRecord,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        let held = OutboxRecord {
            lane: Lane::Held,
            counted: false,
            ..outbox.clone()
        };
        // Counted and written under one lock: two attempts can't both take the last place.
        let mut inner = self.lock();
        if inner.held(household) >= HELD_PER_HOUSEHOLD {
            record(&mut inner, household, throttle, None, audit)?;
            return Ok(false);
        }
        record(&mut inner, household, throttle, Some(&held), audit)?;
        Ok(true)
    }

    async fn put_outbox(
        &self,
        record: &OutboxRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.outbox.contains_key(&record.request_id) {
            return Err(StoreError::Conflict);
        }
        inner
            .outbox
            .insert(record.request_id.clone(), record.clone());
        if let Some(entry) = audit {
            push_audit(&mut inner, &record.household, std::slice::from_ref(entry));
        }
        Ok(())
    }

    fn outbox_policy(&self) -> OutboxPolicy {
        self.policy
    }

    async fn outbox_due(
        &self,
        lane: Lane,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
        per_household: usize,
    ) -> Result<DueRecords, StoreError> {
        let inner = self.lock();
        let mut due: Vec<&OutboxRecord> = inner
            .outbox
            .values()
            .filter(|r| {
                r.status == OutboxStatus::Pending
                    && r.lane == lane
                    && r.next_attempt_at <= now
                    && self.policy.shard_of(&r.household) == shard
            })
            .collect();
        due.sort_by(|a, b| {
            (a.next_attempt_at, &a.request_id).cmp(&(b.next_attempt_at, &b.request_id))
        });
        let mut taken: HashMap<&str, usize> = HashMap::new();
        let mut records = Vec::new();
        for r in due {
            if records.len() >= limit {
                break;
            }
            let n = taken.entry(r.household.as_str()).or_default();
            if *n < per_household {
                *n += 1;
                records.push(r.clone());
            }
        }
        // Records are held typed here, so none can be unreadable.
        Ok(DueRecords {
            records,
            unreadable: Vec::new(),
        })
    }

    async fn promote_waiting(&self, shard: u16, max: usize) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let mut waiting: Vec<(DateTime<Utc>, String, String)> = inner
            .outbox
            .values()
            .filter(|r| {
                r.status == OutboxStatus::Pending
                    && r.lane == Lane::Waiting
                    && self.policy.shard_of(&r.household) == shard
            })
            .map(|r| (r.created_at, r.request_id.clone(), r.household.clone()))
            .collect();
        waiting.sort();
        waiting.truncate(max);
        let mut moved = 0;
        for (_, _, household) in waiting {
            while inner.promote(&household, self.policy.household_quota) {
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn outbox_counts(&self, shard: u16) -> Result<OutboxCounts, StoreError> {
        let inner = self.lock();
        let mut counts = OutboxCounts::default();
        for r in inner.outbox.values().filter(|r| {
            r.status == OutboxStatus::Pending && self.policy.shard_of(&r.household) == shard
        }) {
            match r.lane {
                Lane::Due => counts.due += 1,
                Lane::Waiting => counts.waiting += 1,
                Lane::Gone => counts.gone += 1,
                Lane::Held => counts.held += 1,
            }
        }
        Ok(counts)
    }

    async fn confirm_panels(
        &self,
        household: &str,
        panels: &[ConfirmedPanel],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let seen = inner.panels_seen.entry(household.to_string()).or_default();
        for p in panels {
            seen.insert(p.id.clone(), at);
        }
        let links = inner.monitoring.entry(household.to_string()).or_default();
        for p in panels {
            match &p.monitoring {
                Some(Some(link)) => links.insert(p.id.clone(), link.clone()),
                Some(None) => links.remove(&p.id),
                None => None,
            };
        }
        Ok(())
    }

    async fn forget_panel(&self, household: &str, panel: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(seen) = inner.panels_seen.get_mut(household) {
            seen.remove(panel);
        }
        if let Some(links) = inner.monitoring.get_mut(household) {
            links.remove(panel);
        }
        Ok(())
    }

    async fn outbox_record(&self, request_id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        Ok(self.lock().outbox.get(request_id).cloned())
    }

    async fn append_audit(&self, household: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        push_audit(&mut self.lock(), household, std::slice::from_ref(entry));
        Ok(())
    }

    async fn append_refusal(
        &self,
        household: &str,
        entry: &AuditEntry,
        window: Duration,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let start = window_start(entry.at, window);
        // Windows that ended go, as DynamoDB's TTL removes their markers.
        inner.refusals.retain(|(_, s, _), _| *s >= start);
        let key = (household.to_string(), start, entry.message.clone());
        if let Some((line, count)) = inner.refusals.get_mut(&key) {
            *count += 1;
            let (line, count) = (*line, *count);
            if let Some(l) = inner.audit.get_mut(household).and_then(|a| a.get_mut(line)) {
                l.message = counted_refusal(&entry.message, count);
            }
            return Ok(());
        }
        let lines = inner.audit.entry(household.to_string()).or_default();
        lines.push(entry.clone());
        let line = lines.len() - 1;
        inner.refusals.insert(key, (line, 1));
        Ok(())
    }

    async fn audit(&self, household: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock();
        let mut entries = inner.audit.get(household).cloned().unwrap_or_default();
        // Stable sort keeps insertion order among equal timestamps, then newest first.
        entries.sort_by_key(|e| e.at);
        entries.reverse();
        entries.truncate(limit);
        Ok(entries)
    }

    async fn take_rate_token(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: Duration,
        max: u32,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let slot = inner
            .rates
            .entry((key.to_string(), window_start(now, window)))
            .or_insert(0);
        if *slot >= max {
            return Ok(false);
        }
        *slot += 1;
        Ok(true)
    }

    async fn put_grant(
        &self,
        account: &str,
        region: &str,
        grant: &StoredGrant,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let list = inner.grants.entry(account.to_string()).or_default();
        list.retain(|(r, _)| r != region);
        list.push((region.to_string(), grant.clone()));
        Ok(())
    }

    async fn grants(&self, account: &str) -> Result<Vec<(String, StoredGrant)>, StoreError> {
        let mut list = self.lock().grants.get(account).cloned().unwrap_or_default();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(list)
    }

    async fn delete_grant(&self, account: &str, region: &str) -> Result<(), StoreError> {
        if let Some(list) = self.lock().grants.get_mut(account) {
            list.retain(|(r, _)| r != region);
        }
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let free = inner
            .leases
            .get(name)
            .is_none_or(|(holder, end)| holder == owner || *end < now);
        if free {
            inner
                .leases
                .insert(name.to_string(), (owner.to_string(), until));
        }
        Ok(free)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner
            .leases
            .get(name)
            .is_some_and(|(holder, _)| holder == owner)
        {
            inner.leases.remove(name);
        }
        Ok(())
    }

    async fn claim_event(
        &self,
        event_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let now = Utc::now();
        // Expire like DynamoDB's TTL would, so the map doesn't grow without bound.
        inner.events.retain(|_, exp| *exp > now);
        if inner.events.contains_key(event_id) {
            return Ok(false);
        }
        inner.events.insert(event_id.to_string(), expires_at);
        Ok(true)
    }

    async fn set_google_linked(&self, account: &str, linked: bool) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if linked {
            inner.google_unlinked.remove(account);
        } else {
            inner.google_unlinked.insert(account.to_string());
        }
        Ok(())
    }

    async fn google_linked(&self, account: &str) -> Result<bool, StoreError> {
        Ok(!self.lock().google_unlinked.contains(account))
    }

    async fn breaker(&self, cloud: &str) -> Result<Breaker, StoreError> {
        Ok(self.lock().breakers.get(cloud).cloned().unwrap_or_default())
    }

    async fn save_breaker(&self, cloud: &str, breaker: &Breaker) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let stored = inner.breakers.get(cloud).map_or(0, |b| b.version);
        if stored != breaker.version {
            return Err(StoreError::Conflict);
        }
        let version = stored
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("version overflow".into()))?;
        inner.breakers.insert(
            cloud.to_string(),
            Breaker {
                version,
                ..breaker.clone()
            },
        );
        Ok(version)
    }
}
