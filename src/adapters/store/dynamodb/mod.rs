//! Production's store: one DynamoDB table, designed in docs/dynamodb.md.
//!
//! Every semantic of [`Store`] is the one [`crate::adapters::store::memory::MemoryStore`] shows; both run the
//! same conformance suite (tests/it/store_conformance.rs) against DynamoDB Local.
//!
//! Conditional writes are never retried here: on [`StoreError::Conflict`] the caller re-reads.
//! The SDK's standard retry mode already retries throttling and transient errors, and it fills
//! in `TransactWriteItems`' idempotency token itself, so a retried transaction that had in fact
//! committed succeeds instead of failing its own conditions.

mod accounts;
mod client;
mod codec;
mod coordination;
mod households;
mod outbox;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, GlobalSecondaryIndex,
    IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    Select, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::domain::ports::store::{
    AuditEntry, Breaker, ConfirmedPanel, DueRecords, HELD_PER_HOUSEHOLD, HouseholdSnapshot, Lane,
    OutboxCounts, OutboxPolicy, OutboxRecord, OutboxStatus, Settlement, Store, StoreError,
    StoredGrant, ThrottleWrite, Unreadable, counted_refusal, window_start,
};
use crate::domain::voice_codes::{Profile, Throttle};

pub use client::{AttemptTimeout, create_table, local_client, local_config, tune};
use codec::*;
use outbox::TxRefusal;

/// Attribute and index names shared with the SAM template: change them together.
pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
/// The table's TTL attribute, epoch seconds.
pub const TTL: &str = "expires_at";

/// Partition-key prefixes, shared with crate::adapters::store::pepper_usage, which scans for them.
pub(crate) const HH_PREFIX: &str = "HH#";
pub(crate) const OUTBOX_PREFIX: &str = "OUTBOX#";
pub(crate) const GRANT_PREFIX: &str = "GRANT#";

pub(crate) const PROFILE_SK: &str = "PROFILE";
const THROTTLE_SK: &str = "THROTTLE";
const AUDIT_PREFIX: &str = "AUDIT#";
/// `REFUSED#{window start}#{digest of the message}`: which audit line counts a window's refusals
/// ([`Store::append_refusal`]); expires after its window. Sorts after THROTTLE, outside the
/// range `household` reads.
const REFUSED_PREFIX: &str = "REFUSED#";
pub(crate) const OUTBOX_SK: &str = "OUTBOX";
/// The one pending partition of releases before the sharded lanes: still drained (with shard 0),
/// so records written before an upgrade are delivered. Nothing new is written to it.
const OUTBOX_PENDING_LEGACY: &str = "OUTBOX#PENDING";
/// A household's counter of records counted in its quota. Sorts between PROFILE and THROTTLE,
/// so `household` reads it along (and skips it).
const QUEUE_SK: &str = "QUEUE";
/// The household's count of pending [`Lane::Held`] records (`held`), kept below
/// [`HELD_PER_HOUSEHOLD`] by a conditional increment in the attempt's own transaction.
const HELD_SK: &str = "HELD";
/// Panels the cloud confirmed in the account: `SEEN#{panel}`, also inside the `household` range.
const SEEN_PREFIX: &str = "SEEN#";
/// Pages one backlog count reads per lane and shard at most; past it the count is a lower bound.
const MAX_COUNT_PAGES: usize = 16;
/// Panels recorded per `confirm_panels` call at most: a household has a few.
const MAX_CONFIRMED_PANELS: usize = 32;
const EVENT_SK: &str = "EVENT";
const LEASE_SK: &str = "LEASE";
const GOOGLE_LINK_SK: &str = "LINK";
/// A panel cloud's re-delivery breaker: `BREAKER#{cloud}` / `BREAKER`, one small item per cloud.
const BREAKER_SK: &str = "BREAKER";
/// Pages of the pending index one `outbox_due` reads at most while skipping unreadable items,
/// so a pile of them can't make a pass read the whole backlog.
const MAX_DUE_PAGES: usize = 10;

/// How long a settled outbox record stays readable (investigations) before TTL removes it.
const SETTLED_RETENTION_DAYS: i64 = 30;
/// Rate-window items outlive their window by this much, so clock skew between Lambdas can't
/// make a window's counter vanish while it is still in use.
const RATE_GRACE_S: i64 = 3600;
/// DynamoDB's limit on the actions of one TransactWriteItems.
const MAX_TRANSACT_ITEMS: usize = 100;

const TABLE_ACTIVE_TIMEOUT: StdDuration = StdDuration::from_secs(120);

type Item = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    table: String,
    policy: OutboxPolicy,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            policy: OutboxPolicy::default(),
        }
    }

    pub fn with_outbox_policy(mut self, policy: OutboxPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn shard(&self, household: &str) -> u16 {
        self.policy.shard_of(household)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Puts `item` if the stored version is still `expected` (or, for version 0, there is
    /// none): optimistic concurrency for the items a caller read, changed and writes back.
    async fn put_versioned(&self, item: Item, expected: u64) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        versioned!(put, expected)
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    /// One item by its key, read strongly consistent: each caller must see a write another
    /// function made a moment ago (a probe claimed, a DISCONNECT, a record settled).
    /// `keys_only` projects the key alone, for callers that only ask whether it exists.
    async fn get_consistent(
        &self,
        pk: String,
        sk: &str,
        keys_only: bool,
    ) -> Result<Option<Item>, StoreError> {
        let mut get = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true);
        if keys_only {
            get = get
                .projection_expression("#pk")
                .expression_attribute_names("#pk", PK);
        }
        let resp = get.send().await.map_err(|e| sdk_error("GetItem", e))?;
        Ok(resp.item)
    }

    /// A strongly consistent Query of one partition: `#pk = :pk`, and what the caller adds.
    fn query_partition(&self, pk: String) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
    }

    /// A Query of one partition of the pending index (GSI1): `#gpk = :lane`, and what the
    /// caller adds.
    fn query_lane(&self, lane: String) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .expression_attribute_names("#gpk", GSI1PK)
            .expression_attribute_values(":lane", s(lane))
    }

    /// Deletes the item at `key`, with no condition.
    async fn delete(&self, key: Item) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }

    /// Writes `item` whole, with no condition: for items only their own writer ever changes.
    async fn put(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    async fn query_all(
        &self,
        request: QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        // Query pages stop at 1 MB, so a limit (or everything) may take more than one page.
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut page = request.clone().set_exclusive_start_key(start.take());
            if let Some(limit) = limit {
                let remaining = limit.saturating_sub(out.len());
                page = page.limit(i32::try_from(remaining).unwrap_or(i32::MAX));
            }
            let resp = page.send().await.map_err(|e| sdk_error("Query", e))?;
            out.extend(resp.items.unwrap_or_default());
            match resp.last_evaluated_key {
                Some(key) if !key.is_empty() && limit.is_none_or(|l| out.len() < l) => {
                    start = Some(key);
                }
                _ => break,
            }
        }
        if let Some(limit) = limit {
            out.truncate(limit);
        }
        Ok(out)
    }
}

// The port's methods are written beside their aggregate's other writes (households.rs,
// outbox.rs, accounts.rs, coordination.rs) as inherent methods of the same names; this
// implements the trait with them, one line a method.
macro_rules! store_methods {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for DynamoStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                    DynamoStore::$name(self, $($arg),*).await
                }
            )*

            fn outbox_policy(&self) -> OutboxPolicy {
                self.policy
            }
        }
    };
}

crate::domain::ports::store::with_store_methods!(store_methods);
