//! Production's store: one DynamoDB table, designed in docs/dynamodb.md.
//!
//! Every semantic of [`Store`] is the one [`super::memory::MemoryStore`] shows; both run the
//! same conformance suite (tests/store_conformance.rs) against DynamoDB Local.
//!
//! Conditional writes are never retried here: on [`StoreError::Conflict`] the caller re-reads.
//! The SDK's standard retry mode already retries throttling and transient errors, and it fills
//! in `TransactWriteItems`' idempotency token itself, so a retried transaction that had in fact
//! committed succeeds instead of failing its own conditions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, GlobalSecondaryIndex,
    IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    Select, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::{
    AuditEntry, Breaker, DueRecords, HELD_PER_HOUSEHOLD, HouseholdSnapshot, Lane, OutboxCounts,
    OutboxPolicy, OutboxRecord, OutboxStatus, Settlement, Store, StoreError, StoredGrant,
    ThrottleWrite, Unreadable, window_start,
};
use crate::voice_codes::{Profile, Throttle};

/// Attribute and index names shared with the SAM template: change them together.
pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
/// The table's TTL attribute, epoch seconds.
pub const TTL: &str = "expires_at";

pub(crate) const PROFILE_SK: &str = "PROFILE";
const THROTTLE_SK: &str = "THROTTLE";
const AUDIT_PREFIX: &str = "AUDIT#";
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

/// Why a settle's transaction was refused.
enum TxRefusal {
    /// The outbox record was not as read: settled or moved meanwhile.
    Record,
    /// The household's quota counter refused the increment: it is full.
    QuotaFull,
    Other(StoreError),
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

    fn outbox_item(&self, record: &OutboxRecord, now: DateTime<Utc>) -> Item {
        outbox_item(record, self.shard(&record.household), now)
    }

    /// An Update of the outbox record, conditional on it being pending in `lane` with `counted`
    /// as read: a record settled or moved meanwhile fails it.
    fn record_update(&self, rec: &OutboxRecord) -> UpdateBuilder {
        // Records from before the lanes have neither attribute: they are uncounted and due.
        let lane_cond = if rec.lane == Lane::Due {
            "(#lane = :lane OR attribute_not_exists(#lane))"
        } else {
            "#lane = :lane"
        };
        let counted_cond = if rec.counted {
            "#counted = :counted"
        } else {
            "(#counted = :counted OR attribute_not_exists(#counted))"
        };
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(outbox_pk(&rec.request_id), OUTBOX_SK)))
            .condition_expression(format!(
                "#status = :pending AND {lane_cond} AND {counted_cond}"
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#lane", "lane")
            .expression_attribute_names("#counted", "counted")
            .expression_attribute_values(":pending", s(status_str(OutboxStatus::Pending)))
            .expression_attribute_values(":lane", s(lane_str(rec.lane)))
            .expression_attribute_values(":counted", AttributeValue::Bool(rec.counted))
    }

    /// The household's quota counter moved by `delta`; an increment only below the quota.
    fn counter_update(&self, household: &str, delta: i64) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(hh_pk(household), QUEUE_SK)))
            .update_expression("ADD #n :delta")
            .expression_attribute_names("#n", "counted")
            .expression_attribute_values(":delta", n(delta));
        if delta > 0 {
            update = update
                .condition_expression("attribute_not_exists(#n) OR #n < :quota")
                .expression_attribute_values(":quota", n(self.policy.household_quota));
        }
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(build_error)?)
            .build())
    }

    /// The household's held count moved by `delta`; an increment only below
    /// [`HELD_PER_HOUSEHOLD`].
    fn held_update(&self, household: &str, delta: i64) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(hh_pk(household), HELD_SK)))
            .update_expression("ADD #n :delta")
            .expression_attribute_names("#n", "held")
            .expression_attribute_values(":delta", n(delta));
        if delta > 0 {
            update = update
                .condition_expression("attribute_not_exists(#n) OR #n < :cap")
                .expression_attribute_values(":cap", n(HELD_PER_HOUSEHOLD));
        }
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(build_error)?)
            .build())
    }

    /// Sends a settle: one UpdateItem when it is alone, else one transaction.
    async fn settle_write(
        &self,
        update: UpdateBuilder,
        counter: Option<TransactWriteItem>,
        audit: Option<(&str, &AuditEntry)>,
    ) -> Result<(), TxRefusal> {
        let update = update
            .build()
            .map_err(|e| TxRefusal::Other(build_error(e)))?;
        if counter.is_none() && audit.is_none() {
            return match self
                .client
                .update_item()
                .table_name(update.table_name)
                .set_key(Some(update.key))
                .update_expression(update.update_expression)
                .set_condition_expression(update.condition_expression)
                .set_expression_attribute_names(update.expression_attribute_names)
                .set_expression_attribute_values(update.expression_attribute_values)
                .send()
                .await
                .map_err(|e| sdk_error("UpdateItem", e))
            {
                Ok(_) => Ok(()),
                Err(StoreError::Conflict) => Err(TxRefusal::Record),
                Err(e) => Err(TxRefusal::Other(e)),
            };
        }
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build());
        let counted = counter.is_some();
        if let Some(c) = counter {
            tx = tx.transact_items(c);
        }
        if let Some((household, entry)) = audit {
            let put = self.audit_put(household, entry).map_err(TxRefusal::Other)?;
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match tx.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(e)) =
                    err.as_service_error()
                {
                    let reasons: Vec<&str> = e
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None"))
                        .collect();
                    if reasons.first() == Some(&"ConditionalCheckFailed") {
                        return Err(TxRefusal::Record);
                    }
                    if counted && reasons.get(1) == Some(&"ConditionalCheckFailed") {
                        return Err(TxRefusal::QuotaFull);
                    }
                }
                match transact_error(err) {
                    StoreError::Conflict => Err(TxRefusal::Record),
                    e => Err(TxRefusal::Other(e)),
                }
            }
        }
    }

    /// Settles `rec`, pending as it was read: each write is conditional on the record still
    /// being in that lane and count state, so a record settled or moved meanwhile is a
    /// [`StoreError::Conflict`].
    async fn settle_known(
        &self,
        rec: &OutboxRecord,
        settlement: &Settlement,
        audit: Option<(&str, &AuditEntry)>,
    ) -> Result<(), StoreError> {
        let shard = self.shard(&rec.household);
        let request_id = rec.request_id.as_str();
        match settlement {
            Settlement::Delivered => {
                let counter = if rec.counted {
                    Some(self.counter_update(&rec.household, -1)?)
                } else if rec.lane == Lane::Held {
                    Some(self.held_update(&rec.household, -1)?)
                } else {
                    None
                };
                self.settle_write(delivered(self.record_update(rec)), counter, audit)
                    .await
                    .map_err(refused)?;
                if rec.counted {
                    self.promote_after_settle(&rec.household).await;
                }
                Ok(())
            }
            Settlement::Retry {
                attempts,
                next_attempt_at,
            } => {
                let retry = |update: UpdateBuilder| {
                    update
                        .expression_attribute_names("#attempts", "attempts")
                        .expression_attribute_names("#next", "next_attempt_at")
                        .expression_attribute_values(":attempts", n(*attempts))
                        .expression_attribute_values(":next", s(timestamp(*next_attempt_at)))
                };
                let due_key = s(pending_sort_key(*next_attempt_at, request_id));
                if rec.lane == Lane::Due && !rec.counted {
                    // Its first failure: it counts in the household's quota, or past the quota
                    // it waits in the household's own queue.
                    let count = retry(self.record_update(rec))
                        .update_expression(
                            "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk, \
                             #lane = :due, #counted = :yes",
                        )
                        .expression_attribute_names("#gpk", GSI1PK)
                        .expression_attribute_names("#gsk", GSI1SK)
                        .expression_attribute_values(":gpk", s(lane_pk(Lane::Due, shard)))
                        .expression_attribute_values(":gsk", due_key)
                        .expression_attribute_values(":due", s(lane_str(Lane::Due)))
                        .expression_attribute_values(":yes", AttributeValue::Bool(true));
                    let counter = self.counter_update(&rec.household, 1)?;
                    match self.settle_write(count, Some(counter), audit).await {
                        Err(TxRefusal::QuotaFull) => {}
                        other => return other.map_err(refused),
                    }
                    let wait = retry(self.record_update(rec))
                        .update_expression(
                            "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk, \
                             #lane = :waiting",
                        )
                        .expression_attribute_names("#gpk", GSI1PK)
                        .expression_attribute_names("#gsk", GSI1SK)
                        .expression_attribute_values(":gpk", s(lane_pk(Lane::Waiting, shard)))
                        .expression_attribute_values(
                            ":gsk",
                            s(waiting_sort_key(&rec.household, rec.created_at, request_id)),
                        )
                        .expression_attribute_values(":waiting", s(lane_str(Lane::Waiting)));
                    return self.settle_write(wait, None, audit).await.map_err(refused);
                }
                let update = if rec.lane == Lane::Waiting {
                    // Its place in the household's queue is its creation time: unchanged.
                    retry(self.record_update(rec))
                        .update_expression("SET #attempts = :attempts, #next = :next")
                } else {
                    retry(self.record_update(rec))
                        .update_expression(
                            "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk",
                        )
                        .expression_attribute_names("#gpk", GSI1PK)
                        .expression_attribute_names("#gsk", GSI1SK)
                        .expression_attribute_values(":gpk", s(lane_pk(rec.lane, shard)))
                        .expression_attribute_values(":gsk", due_key)
                };
                self.settle_write(update, None, audit)
                    .await
                    .map_err(refused)
            }
            Settlement::Gone {
                attempts,
                next_attempt_at,
            } => {
                let update = self
                    .record_update(rec)
                    .update_expression(
                        "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk, \
                         #lane = :gone, #counted = :no",
                    )
                    .expression_attribute_names("#attempts", "attempts")
                    .expression_attribute_names("#next", "next_attempt_at")
                    .expression_attribute_names("#gpk", GSI1PK)
                    .expression_attribute_names("#gsk", GSI1SK)
                    .expression_attribute_values(":attempts", n(*attempts))
                    .expression_attribute_values(":next", s(timestamp(*next_attempt_at)))
                    .expression_attribute_values(":gpk", s(lane_pk(Lane::Gone, shard)))
                    .expression_attribute_values(
                        ":gsk",
                        s(pending_sort_key(*next_attempt_at, request_id)),
                    )
                    .expression_attribute_values(":gone", s(lane_str(Lane::Gone)))
                    .expression_attribute_values(":no", AttributeValue::Bool(false));
                let counter = if rec.counted {
                    Some(self.counter_update(&rec.household, -1)?)
                } else if rec.lane == Lane::Held {
                    Some(self.held_update(&rec.household, -1)?)
                } else {
                    None
                };
                self.settle_write(update, counter, audit)
                    .await
                    .map_err(refused)?;
                if rec.counted {
                    self.promote_after_settle(&rec.household).await;
                }
                Ok(())
            }
            // Only a held record can be dropped: anything else was proven the account's.
            Settlement::Dropped if rec.lane == Lane::Held => {
                let update = self
                    .record_update(rec)
                    .update_expression("SET #status = :status, #ttl = :ttl REMOVE #gpk, #gsk")
                    .expression_attribute_names("#ttl", TTL)
                    .expression_attribute_names("#gpk", GSI1PK)
                    .expression_attribute_names("#gsk", GSI1SK)
                    .expression_attribute_values(":status", s(status_str(OutboxStatus::Dropped)))
                    .expression_attribute_values(":ttl", n(settled_ttl(Utc::now())));
                let counter = self.held_update(&rec.household, -1)?;
                self.settle_write(update, Some(counter), audit)
                    .await
                    .map_err(refused)
            }
            Settlement::Dropped => Err(StoreError::Conflict),
        }
    }

    /// Moves the household's oldest waiting record into its shard's due queue, if the quota
    /// has room. `false` when nothing moved.
    async fn promote(&self, household: &str) -> Result<bool, StoreError> {
        let shard = self.shard(household);
        let resp = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#gpk = :lane AND begins_with(#gsk, :household)")
            .expression_attribute_names("#gpk", GSI1PK)
            .expression_attribute_names("#gsk", GSI1SK)
            .expression_attribute_values(":lane", s(lane_pk(Lane::Waiting, shard)))
            .expression_attribute_values(":household", s(waiting_prefix(household)))
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let Some(item) = resp.items.unwrap_or_default().into_iter().next() else {
            return Ok(false);
        };
        let rec = decode_outbox(&item)?;
        let update = self
            .record_update(&rec)
            .update_expression("SET #lane = :due, #counted = :yes, #gpk = :gpk, #gsk = :gsk")
            .expression_attribute_names("#gpk", GSI1PK)
            .expression_attribute_names("#gsk", GSI1SK)
            .expression_attribute_values(":due", s(lane_str(Lane::Due)))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":gpk", s(lane_pk(Lane::Due, shard)))
            .expression_attribute_values(
                ":gsk",
                s(pending_sort_key(rec.next_attempt_at, &rec.request_id)),
            );
        let counter = self.counter_update(household, 1)?;
        match self.settle_write(update, Some(counter), None).await {
            Ok(()) => Ok(true),
            Err(TxRefusal::Record | TxRefusal::QuotaFull) => Ok(false),
            Err(TxRefusal::Other(e)) => Err(e),
        }
    }

    /// After a counted record left the due queue: its household's next waiting one moves up.
    /// The settle stands either way; a failure here is caught up by `promote_waiting`.
    async fn promote_after_settle(&self, household: &str) {
        if let Err(e) = self.promote(household).await {
            tracing::warn!(error = %e, household, "could not promote a waiting outbox record");
        }
    }

    async fn count_lane(&self, pk: String) -> Result<(usize, bool), StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#gpk = :lane")
            .expression_attribute_names("#gpk", GSI1PK)
            .expression_attribute_values(":lane", s(pk))
            .select(Select::Count);
        let mut total = 0usize;
        let mut start: Option<Item> = None;
        for _ in 0..MAX_COUNT_PAGES {
            let resp = request
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            total += usize::try_from(resp.count).unwrap_or(0);
            match resp.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok((total, false)),
            }
        }
        Ok((total, true))
    }

    pub fn table(&self) -> &str {
        &self.table
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
        request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
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

    fn audit_put(&self, household: &str, entry: &AuditEntry) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(audit_item(household, entry)))
            .build()
            .map_err(build_error)
    }
}

/// How long one attempt of a call may take before the SDK retries it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeout(pub StdDuration);

impl AttemptTimeout {
    /// DynamoDB answers in milliseconds; two seconds is an outage.
    pub const DYNAMODB: AttemptTimeout = AttemptTimeout(StdDuration::from_secs(2));
    /// A local engine on a busy 2-core machine can take seconds (a JVM warming up). A retried
    /// conditional write that had in fact committed fails its own condition, so a local engine
    /// gets time rather than retries.
    pub const LOCAL_ENGINE: AttemptTimeout = AttemptTimeout(StdDuration::from_secs(15));
}

/// Retries and timeouts for a store that answers within a directive. The SDK's defaults back off
/// from 1 s and never time out a call: a hung connection or two retries would outlast Alexa's
/// 8 s. These keep a failing call within a few seconds; the directive bounds each call by its
/// own deadline on top (crate::skill).
pub fn tune(
    builder: aws_sdk_dynamodb::config::Builder,
    attempt: AttemptTimeout,
) -> aws_sdk_dynamodb::config::Builder {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    builder
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(StdDuration::from_millis(50))
                .with_max_backoff(StdDuration::from_secs(1)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(StdDuration::from_secs(1))
                .operation_attempt_timeout(attempt.0)
                .operation_timeout(attempt.0 * 3)
                .build(),
        )
}

/// A client for DynamoDB Local and other local engines: static dummy credentials and a fixed
/// region, so building it never consults the environment, profiles or a credential endpoint.
pub fn local_client(endpoint: &str) -> Client {
    Client::from_conf(local_config(endpoint).build())
}

/// A local client whose every call reports the capacity it consumed to `meter`.
#[cfg(feature = "local")]
pub fn local_client_metered(endpoint: &str, meter: super::capacity::CapacityMeter) -> Client {
    Client::from_conf(local_config(endpoint).interceptor(meter).build())
}

fn local_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    tune(
        aws_sdk_dynamodb::Config::builder(),
        AttemptTimeout::LOCAL_ENGINE,
    )
    .behavior_version(BehaviorVersion::latest())
    .region(Region::new("us-east-1"))
    .credentials_provider(Credentials::new(
        "local",
        "local",
        None,
        None,
        "alarm-skill-local",
    ))
    .endpoint_url(endpoint)
}

/// Creates the table as the SAM template does (keys, GSI1, TTL), for the local stack and tests.
/// An existing table is fine; returns once the table and its index are ACTIVE and TTL is on.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_error)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(build_error)
    };
    let gsi1 = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key(GSI1PK, KeyType::Hash)?)
        .key_schema(key(GSI1SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build_error)?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK)?)
        .attribute_definitions(attr(SK)?)
        .attribute_definitions(attr(GSI1PK)?)
        .attribute_definitions(attr(GSI1SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(gsi1)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) => {}
        Err(e) => return Err(sdk_error("CreateTable", e)),
    }
    wait_until_active(client, table).await?;

    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTimeToLive", e))?;
    let ttl_on = ttl.time_to_live_description().is_some_and(|d| {
        matches!(
            d.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) && d.attribute_name() == Some(TTL)
    });
    if !ttl_on {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL)
                    .enabled(true)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
    }
    Ok(())
}

async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        // The GSI must be ACTIVE too: outbox_due queries it right away.
        let active = described.table().is_some_and(|t| {
            t.table_status() == Some(&TableStatus::Active)
                && t.global_secondary_indexes()
                    .iter()
                    .all(|g| g.index_status() == Some(&IndexStatus::Active))
        });
        if active {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {table} not ACTIVE after {}s",
                TABLE_ACTIVE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn household(&self, household: &str) -> Result<HouseholdSnapshot, StoreError> {
        // PROFILE and THROTTLE are the only sort keys of the household's partition in this
        // range (audit lines sort before it, under AUDIT#), so one Query reads both.
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :profile AND :throttle")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(hh_pk(household)))
            .expression_attribute_values(":profile", s(PROFILE_SK))
            .expression_attribute_values(":throttle", s(THROTTLE_SK));
        let mut snapshot = HouseholdSnapshot::default();
        for item in self.query_all(request, None).await? {
            match get_s(&item, SK)? {
                PROFILE_SK => snapshot.profile = decode_profile(&item)?,
                THROTTLE_SK => snapshot.throttle = decode_throttle(&item)?,
                sk if sk.starts_with(SEEN_PREFIX) => {
                    let panel = sk.trim_start_matches(SEEN_PREFIX).to_string();
                    snapshot.panels_seen.insert(panel, get_time(&item, "at")?);
                }
                // QUEUE, and a future item type that happens to sort inside the range.
                _ => {}
            }
        }
        Ok(snapshot)
    }

    async fn save_profile(&self, household: &str, profile: &Profile) -> Result<u64, StoreError> {
        let version = next_version(profile.version)?;
        let mut saved = profile.clone();
        saved.version = version;
        let data = serde_json::to_string(&saved)
            .map_err(|e| StoreError::Unavailable(format!("encoding profile: {e}")))?;
        let mut item = key(hh_pk(household), PROFILE_SK);
        item.insert("version".into(), n(version));
        item.insert("data".into(), s(data));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(VERSION_CONDITION)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(profile.version))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(version)
    }

    async fn record_attempt(
        &self,
        household: &str,
        throttle: ThrottleWrite<'_>,
        outbox: Option<&OutboxRecord>,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let actions = 1 + usize::from(outbox.is_some()) + audit.len();
        if actions > MAX_TRANSACT_ITEMS {
            return Err(StoreError::Unavailable(format!(
                "record_attempt needs {actions} writes; one transaction takes {MAX_TRANSACT_ITEMS}"
            )));
        }
        let mut items = Vec::with_capacity(actions);

        items.push(throttle_write(&self.table, household, throttle)?);

        if let Some(record) = outbox {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.outbox_item(record, Utc::now())))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for entry in audit {
            let put = self.audit_put(household, entry)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }

        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(transact_error)?;
        Ok(())
    }

    async fn hold_attempt(
        &self,
        household: &str,
        throttle: ThrottleWrite<'_>,
        outbox: &OutboxRecord,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        let actions = 3 + audit.len();
        if actions > MAX_TRANSACT_ITEMS {
            return Err(StoreError::Unavailable(format!(
                "hold_attempt needs {actions} writes; one transaction takes {MAX_TRANSACT_ITEMS}"
            )));
        }
        let held = OutboxRecord {
            lane: Lane::Held,
            counted: false,
            ..outbox.clone()
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.outbox_item(&held, Utc::now())))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        let mut items = vec![
            throttle_write(&self.table, household, throttle)?,
            TransactWriteItem::builder().put(put).build(),
            self.held_update(household, 1)?,
        ];
        for entry in audit {
            let put = self.audit_put(household, entry)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => {
                // Only the count refused: the household's held lane is full. The decision
                // stands without the record.
                if let Some(TransactWriteItemsError::TransactionCanceledException(e)) =
                    err.as_service_error()
                {
                    let reasons: Vec<&str> = e
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None"))
                        .collect();
                    if reasons.get(2) == Some(&"ConditionalCheckFailed")
                        && reasons.iter().take(2).all(|r| *r == "None")
                    {
                        self.record_attempt(household, throttle, None, audit)
                            .await?;
                        return Ok(false);
                    }
                }
                Err(transact_error(err))
            }
        }
    }

    async fn settle_outbox(
        &self,
        request_id: &str,
        settlement: &Settlement,
        audit: Option<(&str, &AuditEntry)>,
    ) -> Result<(), StoreError> {
        if let Settlement::Delivered = settlement {
            // The directive's own path: its record, never counted, settled at once, with one
            // write and no read. Anything else fails the condition and is read first below.
            let fresh = OutboxRecord::pending(
                request_id.to_string(),
                "",
                "",
                String::new(),
                Utc::now(),
                Utc::now(),
            );
            match self
                .settle_write(delivered(self.record_update(&fresh)), None, audit)
                .await
            {
                Err(TxRefusal::Record) => {}
                other => return other.map_err(refused),
            }
        }
        let rec = match self.outbox_record(request_id).await? {
            Some(r) if r.status == OutboxStatus::Pending => r,
            _ => return Err(StoreError::Conflict),
        };
        self.settle_known(&rec, settlement, audit).await
    }

    async fn settle_outbox_read(
        &self,
        record: &OutboxRecord,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
        if record.status != OutboxStatus::Pending {
            return Err(StoreError::Conflict);
        }
        self.settle_known(record, settlement, None).await
    }

    async fn put_outbox(
        &self,
        record: &OutboxRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.outbox_item(record, Utc::now())))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build());
        if let Some(entry) = audit {
            let put = self.audit_put(&record.household, entry)?;
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        tx.send().await.map_err(transact_error)?;
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
        let mut due = DueRecords::default();
        if limit == 0 {
            return Ok(due);
        }
        let mut partitions = vec![lane_pk(lane, shard)];
        if lane == Lane::Due && shard == 0 {
            partitions.insert(0, OUTBOX_PENDING_LEGACY.to_string());
        }
        let mut taken: HashMap<String, usize> = HashMap::new();
        for partition in partitions {
            // Sort keys are `{next_attempt_at}#{request_id}` with fixed-width timestamps, so
            // every record due at or before `now` sorts below `{now}$` ('$' follows '#').
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("#gpk = :lane AND #gsk < :upper")
                .expression_attribute_names("#gpk", GSI1PK)
                .expression_attribute_names("#gsk", GSI1SK)
                .expression_attribute_values(":lane", s(partition))
                .expression_attribute_values(":upper", s(format!("{}$", timestamp(now))))
                .scan_index_forward(true);
            // The index is eventually consistent: a record settled a moment ago may still be
            // listed, as it was. Settling it again is a Conflict, which the worker tolerates.
            // Unreadable items stay in the index (they may be a duress: never dropped) and
            // don't count toward `limit`, so they can't crowd out the readable records behind
            // them; neither do a household's records past `per_household`.
            let mut start: Option<Item> = None;
            for _ in 0..MAX_DUE_PAGES {
                let wanted = limit - due.records.len();
                let resp = request
                    .clone()
                    .set_exclusive_start_key(start.take())
                    .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query", e))?;
                for item in resp.items.unwrap_or_default() {
                    match decode_outbox(&item) {
                        Ok(r) if due.records.len() < limit => {
                            let n = taken.entry(r.household.clone()).or_default();
                            if *n < per_household {
                                *n += 1;
                                due.records.push(r);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => due.unreadable.push(Unreadable {
                            key: item_key(&item),
                            error: e.to_string(),
                        }),
                    }
                }
                match resp.last_evaluated_key {
                    Some(key) if !key.is_empty() && due.records.len() < limit => {
                        start = Some(key);
                    }
                    _ => break,
                }
            }
            if due.records.len() >= limit {
                break;
            }
        }
        Ok(due)
    }

    async fn promote_waiting(&self, shard: u16, max: usize) -> Result<usize, StoreError> {
        let resp = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#gpk = :lane")
            .expression_attribute_names("#gpk", GSI1PK)
            .expression_attribute_values(":lane", s(lane_pk(Lane::Waiting, shard)))
            .limit(i32::try_from(max).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let mut households: Vec<String> = Vec::new();
        for item in resp.items.unwrap_or_default() {
            if let Ok(h) = get_s(&item, "household")
                && !households.iter().any(|x| x == h)
            {
                households.push(h.to_string());
            }
        }
        let mut moved = 0;
        for household in households {
            // Bounded by the quota: each move takes one of its places.
            for _ in 0..self.policy.household_quota {
                if !self.promote(&household).await? {
                    break;
                }
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn outbox_counts(&self, shard: u16) -> Result<OutboxCounts, StoreError> {
        // Side by side: a pass's report waits for one round trip, not one per lane.
        let ((mut due, mut capped), (waiting, c1), (gone, c2), (held, c3)) =
            futures_util::future::try_join4(
                self.count_lane(lane_pk(Lane::Due, shard)),
                self.count_lane(lane_pk(Lane::Waiting, shard)),
                self.count_lane(lane_pk(Lane::Gone, shard)),
                self.count_lane(lane_pk(Lane::Held, shard)),
            )
            .await?;
        if shard == 0 {
            let (legacy, c) = self.count_lane(OUTBOX_PENDING_LEGACY.to_string()).await?;
            due += legacy;
            capped |= c;
        }
        Ok(OutboxCounts {
            due,
            waiting,
            gone,
            held,
            capped: capped || c1 || c2 || c3,
        })
    }

    async fn confirm_panels(
        &self,
        household: &str,
        panels: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for panel in panels.iter().take(MAX_CONFIRMED_PANELS) {
            let mut item = key(hh_pk(household), format!("{SEEN_PREFIX}{panel}"));
            item.insert("at".into(), s(timestamp(at)));
            self.put(item).await?;
        }
        Ok(())
    }

    async fn forget_panel(&self, household: &str, panel: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(hh_pk(household), format!("{SEEN_PREFIX}{panel}"))))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }

    async fn outbox_record(&self, request_id: &str) -> Result<Option<OutboxRecord>, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(outbox_pk(request_id), OUTBOX_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        resp.item.as_ref().map(decode_outbox).transpose()
    }

    async fn append_audit(&self, household: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        self.put(audit_item(household, entry)).await
    }

    async fn audit(&self, household: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :audit)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(hh_pk(household)))
            .expression_attribute_values(":audit", s(AUDIT_PREFIX))
            .scan_index_forward(false);
        self.query_all(request, Some(limit))
            .await?
            .iter()
            .map(decode_audit)
            .collect()
    }

    async fn take_rate_token(
        &self,
        key_name: &str,
        now: DateTime<Utc>,
        window: Duration,
        max: u32,
    ) -> Result<bool, StoreError> {
        // `attribute_not_exists(n)` would hand out a first token even when none exist.
        if max == 0 {
            return Ok(false);
        }
        let start = window_start(now, window);
        let window_s = window.num_seconds().max(1);
        let expires = start.saturating_add(window_s).saturating_add(RATE_GRACE_S);
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("RATE#{key_name}"), start.to_string())))
            .update_expression("ADD #n :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#n) OR #n < :max")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":ttl", n(expires))
            .send()
            .await;
        match taken {
            Ok(_) => Ok(true),
            Err(e) => match sdk_error("UpdateItem", e) {
                StoreError::Conflict => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn put_grant(
        &self,
        account: &str,
        region: &str,
        grant: &StoredGrant,
    ) -> Result<(), StoreError> {
        let mut item = key(grant_pk(account), region);
        item.insert("access_token".into(), s(&grant.access_token));
        item.insert("refresh_token".into(), s(&grant.refresh_token));
        // Not `expires_at`: that is the table's TTL attribute, and DynamoDB would delete the
        // grant (refresh token included) when its access token expires.
        item.insert("token_expires_at".into(), s(timestamp(grant.expires_at)));
        self.put(item).await
    }

    async fn grants(&self, account: &str) -> Result<Vec<(String, StoredGrant)>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(grant_pk(account)));
        // Sort keys are the regions, so the Query returns them in region order.
        self.query_all(request, None)
            .await?
            .iter()
            .map(|item| {
                Ok((
                    get_s(item, SK)?.to_string(),
                    StoredGrant {
                        access_token: get_s(item, "access_token")?.to_string(),
                        refresh_token: get_s(item, "refresh_token")?.to_string(),
                        expires_at: get_time(item, "token_expires_at")?,
                    },
                ))
            })
            .collect()
    }

    async fn delete_grant(&self, account: &str, region: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(grant_pk(account), region)))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = key(format!("LEASE#{name}"), LEASE_SK);
        item.insert("owner".into(), s(owner));
        item.insert("until".into(), s(timestamp(until)));
        // Only reclaims space: the condition decides on `until`, never on TTL deletion.
        item.insert(TTL.into(), n(ceil_epoch_seconds(until) + RATE_GRACE_S));
        let taken = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #owner = :owner OR #until < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", s(timestamp(now)))
            .send()
            .await;
        match taken {
            Ok(_) => Ok(true),
            Err(e) => match sdk_error("PutItem", e) {
                StoreError::Conflict => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let released = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("LEASE#{name}"), LEASE_SK)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match released {
            // Someone else holds it now (ours had expired): theirs to release.
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("DeleteItem", e) {
                StoreError::Conflict => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn claim_event(
        &self,
        event_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = key(format!("EVENT#{event_id}"), EVENT_SK);
        // TTL deletes items up to days late; `until` keeps the exact expiry, so an expired
        // claim is claimable again at once, as in the memory store.
        item.insert("until".into(), s(timestamp(expires_at)));
        item.insert(TTL.into(), n(ceil_epoch_seconds(expires_at)));
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #until <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", s(timestamp(Utc::now())))
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(e) => match sdk_error("PutItem", e) {
                StoreError::Conflict => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn set_google_linked(&self, account: &str, linked: bool) -> Result<(), StoreError> {
        // Only the unlinked state is an item: a linked account (the normal case, and every
        // account from before DISCONNECT was stored) costs nothing.
        let key = key(google_pk(account), GOOGLE_LINK_SK);
        if linked {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .send()
                .await
                .map_err(|e| sdk_error("DeleteItem", e))?;
        } else {
            let mut item = key;
            item.insert("unlinked_at".into(), s(timestamp(Utc::now())));
            self.put(item).await?;
        }
        Ok(())
    }

    async fn google_linked(&self, account: &str) -> Result<bool, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(google_pk(account), GOOGLE_LINK_SK)))
            // A report right after a DISCONNECT must see it.
            .consistent_read(true)
            .projection_expression("#pk")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(resp.item.is_none())
    }

    async fn breaker(&self, cloud: &str) -> Result<Breaker, StoreError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(breaker_pk(cloud), BREAKER_SK)))
            // The worker that probes must see the probe another one claimed a moment ago.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let Some(item) = resp.item else {
            return Ok(Breaker::default());
        };
        Ok(Breaker {
            open: get_bool(&item, "open")?,
            failures: get_n(&item, "failures")?,
            probe_at: get_time(&item, "probe_at")?,
            since: get_time(&item, "since")?,
            version: get_n(&item, "version")?,
        })
    }

    async fn save_breaker(&self, cloud: &str, breaker: &Breaker) -> Result<u64, StoreError> {
        let version = next_version(breaker.version)?;
        let mut item = key(breaker_pk(cloud), BREAKER_SK);
        item.insert("open".into(), AttributeValue::Bool(breaker.open));
        item.insert("failures".into(), n(breaker.failures));
        item.insert("probe_at".into(), s(timestamp(breaker.probe_at)));
        item.insert("since".into(), s(timestamp(breaker.since)));
        item.insert("version".into(), n(version));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(VERSION_CONDITION)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(breaker.version))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(version)
    }
}

/// A missing item is version 0, so the first save's expected version 0 matches it.
const VERSION_CONDITION: &str = "attribute_not_exists(#pk) OR #v = :v";

fn next_version(version: u64) -> Result<u64, StoreError> {
    version
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("version overflow".into()))
}

// ---- keys and encoding ----

/// Partition-key prefixes, shared with crate::store::pepper_usage, which scans for them.
pub(crate) const HH_PREFIX: &str = "HH#";
pub(crate) const OUTBOX_PREFIX: &str = "OUTBOX#";
pub(crate) const GRANT_PREFIX: &str = "GRANT#";

fn hh_pk(household: &str) -> String {
    format!("{HH_PREFIX}{household}")
}

fn outbox_pk(request_id: &str) -> String {
    format!("{OUTBOX_PREFIX}{request_id}")
}

fn grant_pk(account: &str) -> String {
    format!("{GRANT_PREFIX}{account}")
}

fn breaker_pk(cloud: &str) -> String {
    format!("BREAKER#{cloud}")
}

fn google_pk(account: &str) -> String {
    format!("GOOGLE#{account}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

/// RFC 3339 UTC with nanoseconds: fixed width, so string order is time order (years 0–9999),
/// and lossless, so records read back equal to what was written.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn ceil_epoch_seconds(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

fn settled_ttl(now: DateTime<Utc>) -> i64 {
    (now + Duration::days(SETTLED_RETENTION_DAYS)).timestamp()
}

fn pending_sort_key(next_attempt_at: DateTime<Utc>, request_id: &str) -> String {
    format!("{}#{request_id}", timestamp(next_attempt_at))
}

/// The index partition of a lane's records in a shard.
fn refused(r: TxRefusal) -> StoreError {
    match r {
        TxRefusal::Record | TxRefusal::QuotaFull => StoreError::Conflict,
        TxRefusal::Other(e) => e,
    }
}

/// Dropping the GSI1 keys takes a settled record out of the sparse pending index.
fn delivered(update: UpdateBuilder) -> UpdateBuilder {
    update
        .update_expression("SET #status = :status, #ttl = :ttl REMOVE #gpk, #gsk")
        .expression_attribute_names("#ttl", TTL)
        .expression_attribute_names("#gpk", GSI1PK)
        .expression_attribute_names("#gsk", GSI1SK)
        .expression_attribute_values(":status", s(status_str(OutboxStatus::Delivered)))
        .expression_attribute_values(":ttl", n(settled_ttl(Utc::now())))
}

fn lane_pk(lane: Lane, shard: u16) -> String {
    let name = match lane {
        Lane::Due => "PENDING",
        Lane::Waiting => "WAIT",
        Lane::Gone => "GONE",
        Lane::Held => "HELD",
    };
    format!("OUTBOX#{name}#{shard:03}")
}

fn lane_str(lane: Lane) -> &'static str {
    match lane {
        Lane::Due => "due",
        Lane::Waiting => "waiting",
        Lane::Gone => "gone",
        Lane::Held => "held",
    }
}

/// Waiting records sort by household, then age: a household's queue is one key range. The
/// unit separator can't end a shorter household id's prefix inside a longer one's.
fn waiting_prefix(household: &str) -> String {
    format!("{household}\u{1f}")
}

fn waiting_sort_key(household: &str, created_at: DateTime<Utc>, request_id: &str) -> String {
    format!(
        "{}{}#{request_id}",
        waiting_prefix(household),
        timestamp(created_at)
    )
}

fn status_str(status: OutboxStatus) -> &'static str {
    match status {
        OutboxStatus::Pending => "pending",
        OutboxStatus::Delivered => "delivered",
        OutboxStatus::Dropped => "dropped",
    }
}

/// Tie-breaker for audit lines with equal timestamps: strictly increasing within the process,
/// so lines of one call (and of later calls) read back newest-first in insertion order, as the
/// memory store's stable sort does. Across processes it follows the wall clock.
fn audit_sequence() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(Utc::now().timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev.saturating_add(1));
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => prev = actual,
        }
    }
}

fn audit_item(household: &str, entry: &AuditEntry) -> Item {
    // The uuid keeps keys unique across Lambdas whose sequences collide.
    let sk = format!(
        "{AUDIT_PREFIX}{}#{:020}#{}",
        timestamp(entry.at),
        audit_sequence(),
        uuid::Uuid::new_v4().simple()
    );
    let mut item = key(hh_pk(household), sk);
    item.insert("at".into(), s(timestamp(entry.at)));
    item.insert("actor".into(), s(&entry.actor));
    item.insert("message".into(), s(&entry.message));
    item
}

/// The throttle part of an attempt's transaction (see [`ThrottleWrite`]).
fn throttle_write(
    table: &str,
    household: &str,
    throttle: ThrottleWrite<'_>,
) -> Result<TransactWriteItem, StoreError> {
    Ok(match throttle {
        ThrottleWrite::Set(t) => {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(throttle_item(household, t, next_version(t.version)?)))
                .condition_expression(VERSION_CONDITION)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", n(t.version))
                .build()
                .map_err(build_error)?;
            TransactWriteItem::builder().put(put).build()
        }
        ThrottleWrite::Check(version) => {
            let check = ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key(hh_pk(household), THROTTLE_SK)))
                .condition_expression(VERSION_CONDITION)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", n(version))
                .build()
                .map_err(build_error)?;
            TransactWriteItem::builder().condition_check(check).build()
        }
    })
}

fn throttle_item(household: &str, throttle: &Throttle, version: u64) -> Item {
    let mut item = key(hh_pk(household), THROTTLE_SK);
    item.insert("version".into(), n(version));
    item.insert(
        "consecutive_failures".into(),
        n(throttle.consecutive_failures),
    );
    item.insert(
        "hard_locked".into(),
        AttributeValue::Bool(throttle.hard_locked),
    );
    if let Some(until) = throttle.locked_until {
        item.insert("locked_until".into(), s(timestamp(until)));
    }
    item
}

fn outbox_item(record: &OutboxRecord, shard: u16, now: DateTime<Utc>) -> Item {
    let mut item = key(outbox_pk(&record.request_id), OUTBOX_SK);
    item.insert("request_id".into(), s(&record.request_id));
    item.insert("household".into(), s(&record.household));
    item.insert("panel".into(), s(&record.panel));
    item.insert("seal".into(), s(&record.seal));
    item.insert("created_at".into(), s(timestamp(record.created_at)));
    item.insert("status".into(), s(status_str(record.status)));
    item.insert("attempts".into(), n(record.attempts));
    item.insert(
        "next_attempt_at".into(),
        s(timestamp(record.next_attempt_at)),
    );
    item.insert("lane".into(), s(lane_str(record.lane)));
    item.insert("counted".into(), AttributeValue::Bool(record.counted));
    if record.status == OutboxStatus::Pending {
        item.insert(GSI1PK.into(), s(lane_pk(record.lane, shard)));
        let sort_key = match record.lane {
            Lane::Waiting => {
                waiting_sort_key(&record.household, record.created_at, &record.request_id)
            }
            Lane::Due | Lane::Gone | Lane::Held => {
                pending_sort_key(record.next_attempt_at, &record.request_id)
            }
        };
        item.insert(GSI1SK.into(), s(sort_key));
    } else {
        item.insert(TTL.into(), n(settled_ttl(now)));
    }
    item
}

// ---- decoding ----

fn item_key(item: &Item) -> String {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "?",
    };
    format!("{}/{}", part(PK), part(SK))
}

fn corrupt(item: &Item, what: String) -> StoreError {
    StoreError::Corrupt(format!("{}: {what}", item_key(item)))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(item, format!("missing string attribute {name}"))),
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt(item, format!("attribute {name} out of range: {v}"))),
        _ => Err(corrupt(item, format!("missing number attribute {name}"))),
    }
}

fn get_bool(item: &Item, name: &str) -> Result<bool, StoreError> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        _ => Err(corrupt(item, format!("missing boolean attribute {name}"))),
    }
}

fn get_time(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let v = get_s(item, name)?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(item, format!("attribute {name} is not a timestamp: {e}")))
}

fn get_opt_time(item: &Item, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    if item.contains_key(name) {
        get_time(item, name).map(Some)
    } else {
        Ok(None)
    }
}

fn decode_profile(item: &Item) -> Result<Profile, StoreError> {
    let mut profile: Profile = serde_json::from_str(get_s(item, "data")?)
        .map_err(|e| corrupt(item, format!("profile data: {e}")))?;
    // The top-level attribute is what the conditional writes check, so it is the truth.
    profile.version = get_n(item, "version")?;
    Ok(profile)
}

fn decode_throttle(item: &Item) -> Result<Throttle, StoreError> {
    Ok(Throttle {
        version: get_n(item, "version")?,
        consecutive_failures: get_n(item, "consecutive_failures")?,
        locked_until: get_opt_time(item, "locked_until")?,
        hard_locked: get_bool(item, "hard_locked")?,
    })
}

fn decode_outbox(item: &Item) -> Result<OutboxRecord, StoreError> {
    let status = match get_s(item, "status")? {
        "pending" => OutboxStatus::Pending,
        "delivered" => OutboxStatus::Delivered,
        "dropped" => OutboxStatus::Dropped,
        other => return Err(corrupt(item, format!("unknown outbox status {other}"))),
    };
    Ok(OutboxRecord {
        request_id: get_s(item, "request_id")?.to_string(),
        household: get_s(item, "household")?.to_string(),
        panel: get_s(item, "panel")?.to_string(),
        seal: get_s(item, "seal")?.to_string(),
        created_at: get_time(item, "created_at")?,
        status,
        attempts: get_n(item, "attempts")?,
        next_attempt_at: get_time(item, "next_attempt_at")?,
        // Records from before the lanes have neither: due and uncounted.
        lane: match item.get("lane") {
            None => Lane::Due,
            Some(AttributeValue::S(v)) => match v.as_str() {
                "due" => Lane::Due,
                "waiting" => Lane::Waiting,
                "gone" => Lane::Gone,
                "held" => Lane::Held,
                other => return Err(corrupt(item, format!("unknown outbox lane {other}"))),
            },
            Some(_) => return Err(corrupt(item, "lane is not a string".to_string())),
        },
        counted: match item.get("counted") {
            None => false,
            Some(AttributeValue::Bool(b)) => *b,
            Some(_) => return Err(corrupt(item, "counted is not a boolean".to_string())),
        },
    })
}

fn decode_audit(item: &Item) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        at: get_time(item, "at")?,
        actor: get_s(item, "actor")?.to_string(),
        message: get_s(item, "message")?.to_string(),
    })
}

// ---- errors ----

fn build_error(e: BuildError) -> StoreError {
    StoreError::Unavailable(format!("building request: {e}"))
}

/// What a DynamoDB error code means to callers, if anything beyond "unavailable".
fn classify_code(code: &str) -> Option<StoreError> {
    match code {
        "ConditionalCheckFailedException" => Some(StoreError::Conflict),
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded" => Some(StoreError::Throttled),
        _ => None,
    }
}

/// A cancelled transaction by its per-action reasons ("None" for the actions that were fine).
fn classify_cancellation<'a>(reasons: impl IntoIterator<Item = &'a str>) -> Option<StoreError> {
    let reasons: Vec<&str> = reasons.into_iter().collect();
    let any = |codes: &[&str]| reasons.iter().any(|r| codes.contains(r));
    if any(&["ConditionalCheckFailed", "TransactionConflict"]) {
        // TransactionConflict: a concurrent transaction held one of our items. Like a failed
        // condition it means "someone else wrote first": re-read and decide again.
        Some(StoreError::Conflict)
    } else if any(&[
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    ]) {
        Some(StoreError::Throttled)
    } else {
        None
    }
}

fn sdk_error<E>(op: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    err.code()
        .and_then(classify_code)
        .unwrap_or_else(|| StoreError::Unavailable(format!("{op}: {}", DisplayErrorContext(&err))))
}

fn transact_error(err: SdkError<TransactWriteItemsError>) -> StoreError {
    if let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error()
        && let Some(mapped) =
            classify_cancellation(e.cancellation_reasons().iter().filter_map(|r| r.code()))
    {
        return mapped;
    }
    sdk_error("TransactWriteItems", err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_store_errors() {
        assert_eq!(
            classify_code("ConditionalCheckFailedException"),
            Some(StoreError::Conflict)
        );
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert_eq!(classify_code(code), Some(StoreError::Throttled), "{code}");
        }
        assert_eq!(classify_code("ResourceNotFoundException"), None);
        assert_eq!(classify_code("ValidationException"), None);
    }

    #[test]
    fn cancellation_reasons_map_to_store_errors() {
        assert_eq!(
            classify_cancellation(["None", "ConditionalCheckFailed"]),
            Some(StoreError::Conflict)
        );
        assert_eq!(
            classify_cancellation(["TransactionConflict", "None"]),
            Some(StoreError::Conflict)
        );
        // A failed condition wins: the caller must re-read whatever else went wrong.
        assert_eq!(
            classify_cancellation(["ThrottlingError", "ConditionalCheckFailed"]),
            Some(StoreError::Conflict)
        );
        assert_eq!(
            classify_cancellation(["None", "ThrottlingError"]),
            Some(StoreError::Throttled)
        );
        assert_eq!(
            classify_cancellation(["ProvisionedThroughputExceeded"]),
            Some(StoreError::Throttled)
        );
        assert_eq!(classify_cancellation(["ValidationError", "None"]), None);
    }

    #[test]
    fn timestamps_sort_like_times_and_round_trip() {
        let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000000009Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + Duration::nanoseconds(1);
        let c = a + Duration::days(400);
        let (ta, tb, tc) = (timestamp(a), timestamp(b), timestamp(c));
        assert!(ta < tb && tb < tc, "{ta} {tb} {tc}");
        assert_eq!(ta.len(), tc.len());
        let item = HashMap::from([("t".to_string(), s(tb.clone()))]);
        assert_eq!(get_time(&item, "t").unwrap(), b);
    }

    #[test]
    fn pending_sort_keys_order_by_time_then_request_id() {
        let t = Utc::now();
        let later = t + Duration::milliseconds(1);
        assert!(pending_sort_key(t, "b") < pending_sort_key(later, "a"));
        assert!(pending_sort_key(t, "a") < pending_sort_key(t, "b"));
        let upper = format!("{}$", timestamp(t));
        assert!(pending_sort_key(t, "~~~~") < upper);
        assert!(pending_sort_key(t + Duration::nanoseconds(1), "") > upper);
    }

    #[test]
    fn audit_sequence_is_strictly_increasing() {
        let seqs: Vec<u64> = (0..1000).map(|_| audit_sequence()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn event_ttl_never_precedes_the_claim_expiry() {
        let t = DateTime::from_timestamp(100, 1).unwrap();
        assert_eq!(ceil_epoch_seconds(t), 101);
        let whole = DateTime::from_timestamp(100, 0).unwrap();
        assert_eq!(ceil_epoch_seconds(whole), 100);
    }
}
