//! The duress outbox: one item per record, listed through the sparse GSI1 by lane and shard
//! (due, waiting past the household's quota, gone), with a per-household quota counter
//! (docs/dynamodb.md).

use super::*;

/// Why a settle's transaction was refused.
pub(super) enum TxRefusal {
    /// The outbox record was not as read: settled or moved meanwhile.
    Record,
    /// The household's quota counter refused the increment: it is full.
    QuotaFull,
    Other(StoreError),
}

impl DynamoStore {
    pub(super) async fn settle_outbox(
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

    pub(super) async fn settle_outbox_read(
        &self,
        record: &OutboxRecord,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
        if record.status != OutboxStatus::Pending {
            return Err(StoreError::Conflict);
        }
        self.settle_known(record, settlement, None).await
    }

    pub(super) async fn put_outbox(
        &self,
        record: &OutboxRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(self.new_outbox_write(record)?);
        if let Some(entry) = audit {
            tx = tx.transact_items(self.audit_write(&record.household, entry)?);
        }
        tx.send().await.map_err(transact_error)?;
        Ok(())
    }

    pub(super) async fn outbox_due(
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
                .query_lane(partition)
                .key_condition_expression("#gpk = :lane AND #gsk < :upper")
                .expression_attribute_names("#gsk", GSI1SK)
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

    pub(super) async fn promote_waiting(
        &self,
        shard: u16,
        max: usize,
    ) -> Result<usize, StoreError> {
        let resp = self
            .query_lane(lane_pk(Lane::Waiting, shard))
            .key_condition_expression("#gpk = :lane")
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

    pub(super) async fn outbox_counts(&self, shard: u16) -> Result<OutboxCounts, StoreError> {
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

    pub(super) async fn outbox_record(
        &self,
        request_id: &str,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        let item = self
            .get_consistent(outbox_pk(request_id), OUTBOX_SK, false)
            .await?;
        item.as_ref().map(decode_outbox).transpose()
    }

    pub(super) fn outbox_item(&self, record: &OutboxRecord, now: DateTime<Utc>) -> Item {
        outbox_item(record, self.shard(&record.household), now)
    }

    /// A new outbox record, as one action of a transaction: it must not exist yet.
    pub(super) fn new_outbox_write(
        &self,
        record: &OutboxRecord,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.outbox_item(record, Utc::now())))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// An Update of the outbox record, conditional on it being pending in `lane` with `counted`
    /// as read: a record settled or moved meanwhile fails it.
    pub(super) fn record_update(&self, rec: &OutboxRecord) -> UpdateBuilder {
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
    pub(super) fn counter_update(
        &self,
        household: &str,
        delta: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let cap = (":quota", self.policy.household_quota);
        self.capped_counter_update(household, (QUEUE_SK, "counted"), cap, delta)
    }

    /// Sends a settle: one UpdateItem when it is alone, else one transaction.
    pub(super) async fn settle_write(
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
            let write = self
                .audit_write(household, entry)
                .map_err(TxRefusal::Other)?;
            tx = tx.transact_items(write);
        }
        match tx.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons = cancellation_codes(&err);
                if reasons.first() == Some(&"ConditionalCheckFailed") {
                    return Err(TxRefusal::Record);
                }
                if counted && reasons.get(1) == Some(&"ConditionalCheckFailed") {
                    return Err(TxRefusal::QuotaFull);
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
    pub(super) async fn settle_known(
        &self,
        rec: &OutboxRecord,
        settlement: &Settlement,
        audit: Option<(&str, &AuditEntry)>,
    ) -> Result<(), StoreError> {
        let shard = self.shard(&rec.household);
        let request_id = rec.request_id.as_str();
        match settlement {
            Settlement::Delivered => {
                self.settle_uncounting(rec, delivered(self.record_update(rec)), audit)
                    .await
            }
            Settlement::Retry {
                attempts,
                next_attempt_at,
                receiver_acked,
            } => {
                let acked = rec.receiver_acked || *receiver_acked;
                let retry = || {
                    attempted(self.record_update(rec), *attempts, *next_attempt_at)
                        .expression_attribute_names("#racked", "receiver_acked")
                        .expression_attribute_values(":racked", AttributeValue::Bool(acked))
                };
                let due_key = pending_sort_key(*next_attempt_at, request_id);
                if rec.lane == Lane::Due && !rec.counted {
                    // Its first failure: it counts in the household's quota, or past the quota
                    // it waits in the household's own queue.
                    let count = indexed(retry(), lane_pk(Lane::Due, shard), due_key)
                        .update_expression(
                            "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk, \
                             #lane = :due, #counted = :yes, #racked = :racked",
                        )
                        .expression_attribute_values(":due", s(lane_str(Lane::Due)))
                        .expression_attribute_values(":yes", AttributeValue::Bool(true));
                    let counter = self.counter_update(&rec.household, 1)?;
                    match self.settle_write(count, Some(counter), audit).await {
                        Err(TxRefusal::QuotaFull) => {}
                        other => return other.map_err(refused),
                    }
                    let wait = indexed(
                        retry(),
                        lane_pk(Lane::Waiting, shard),
                        waiting_sort_key(&rec.household, rec.created_at, request_id),
                    )
                    .update_expression(
                        "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk, \
                         #lane = :waiting, #racked = :racked",
                    )
                    .expression_attribute_values(":waiting", s(lane_str(Lane::Waiting)));
                    return self.settle_write(wait, None, audit).await.map_err(refused);
                }
                let update = if rec.lane == Lane::Waiting {
                    // Its place in the household's queue is its creation time: unchanged.
                    retry().update_expression(
                        "SET #attempts = :attempts, #next = :next, #racked = :racked",
                    )
                } else {
                    indexed(retry(), lane_pk(rec.lane, shard), due_key).update_expression(
                        "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk, \
                         #racked = :racked",
                    )
                };
                self.settle_write(update, None, audit)
                    .await
                    .map_err(refused)
            }
            Settlement::Gone {
                attempts,
                next_attempt_at,
            } => {
                let update = indexed(
                    attempted(self.record_update(rec), *attempts, *next_attempt_at),
                    lane_pk(Lane::Gone, shard),
                    pending_sort_key(*next_attempt_at, request_id),
                )
                .update_expression(
                    "SET #attempts = :attempts, #next = :next, #gpk = :gpk, #gsk = :gsk, \
                     #lane = :gone, #counted = :no",
                )
                .expression_attribute_values(":gone", s(lane_str(Lane::Gone)))
                .expression_attribute_values(":no", AttributeValue::Bool(false));
                self.settle_uncounting(rec, update, audit).await
            }
            Settlement::HandedOver {
                next_attempt_at,
                disarm_until,
            } if rec.lane == Lane::Due => {
                // Uncounted as before: the quota counts records that failed, and this one has
                // not yet been answered at all.
                let update = indexed(
                    self.record_update(rec),
                    lane_pk(Lane::Due, shard),
                    pending_sort_key(*next_attempt_at, request_id),
                )
                .update_expression("SET #next = :next, #gpk = :gpk, #gsk = :gsk, #disarm = :disarm")
                .expression_attribute_names("#next", "next_attempt_at")
                .expression_attribute_names("#disarm", "disarm_until")
                .expression_attribute_values(":next", s(timestamp(*next_attempt_at)))
                .expression_attribute_values(":disarm", s(timestamp(*disarm_until)));
                self.settle_write(update, None, audit)
                    .await
                    .map_err(refused)
            }
            Settlement::HandedOver { .. } => Err(StoreError::Conflict),
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

    /// Settles `rec` out of the household's quota: its counter goes down with the write, and
    /// the household's next waiting record moves up.
    async fn settle_uncounting(
        &self,
        rec: &OutboxRecord,
        update: UpdateBuilder,
        audit: Option<(&str, &AuditEntry)>,
    ) -> Result<(), StoreError> {
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

    /// Moves the household's oldest waiting record into its shard's due queue, if the quota
    /// has room. `false` when nothing moved.
    pub(super) async fn promote(&self, household: &str) -> Result<bool, StoreError> {
        let shard = self.shard(household);
        let resp = self
            .query_lane(lane_pk(Lane::Waiting, shard))
            .key_condition_expression("#gpk = :lane AND begins_with(#gsk, :household)")
            .expression_attribute_names("#gsk", GSI1SK)
            .expression_attribute_values(":household", s(waiting_prefix(household)))
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let Some(item) = resp.items.unwrap_or_default().into_iter().next() else {
            return Ok(false);
        };
        let rec = decode_outbox(&item)?;
        let update = indexed(
            self.record_update(&rec),
            lane_pk(Lane::Due, shard),
            pending_sort_key(rec.next_attempt_at, &rec.request_id),
        )
        .update_expression("SET #lane = :due, #counted = :yes, #gpk = :gpk, #gsk = :gsk")
        .expression_attribute_values(":due", s(lane_str(Lane::Due)))
        .expression_attribute_values(":yes", AttributeValue::Bool(true));
        let counter = self.counter_update(household, 1)?;
        match self.settle_write(update, Some(counter), None).await {
            Ok(()) => Ok(true),
            Err(TxRefusal::Record | TxRefusal::QuotaFull) => Ok(false),
            Err(TxRefusal::Other(e)) => Err(e),
        }
    }

    /// After a counted record left the due queue: its household's next waiting one moves up.
    /// The settle stands either way; a failure here is caught up by `promote_waiting`.
    pub(super) async fn promote_after_settle(&self, household: &str) {
        if let Err(e) = self.promote(household).await {
            tracing::warn!(error = %e, household, "could not promote a waiting outbox record");
        }
    }

    pub(super) async fn count_lane(&self, pk: String) -> Result<(usize, bool), StoreError> {
        let request = self
            .query_lane(pk)
            .key_condition_expression("#gpk = :lane")
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
}

/// The record's place in the pending index: the expression sets `#gpk = :gpk, #gsk = :gsk`.
fn indexed(update: UpdateBuilder, partition: String, sort_key: String) -> UpdateBuilder {
    update
        .expression_attribute_names("#gpk", GSI1PK)
        .expression_attribute_names("#gsk", GSI1SK)
        .expression_attribute_values(":gpk", s(partition))
        .expression_attribute_values(":gsk", s(sort_key))
}

/// A failed attempt's count and next time: the expression sets `#attempts` and `#next`.
fn attempted(
    update: UpdateBuilder,
    attempts: u32,
    next_attempt_at: DateTime<Utc>,
) -> UpdateBuilder {
    update
        .expression_attribute_names("#attempts", "attempts")
        .expression_attribute_names("#next", "next_attempt_at")
        .expression_attribute_values(":attempts", n(attempts))
        .expression_attribute_values(":next", s(timestamp(next_attempt_at)))
}
