//! A household's items: its profile (members and codes), its throttle, the panels it has been
//! seen with, and its audit log. A disarm's attempt writes the throttle, the outbox record and
//! the audit lines in one transaction ([`DynamoStore::record_attempt`]).

use super::*;

impl DynamoStore {
    pub(super) async fn household(&self, household: &str) -> Result<HouseholdSnapshot, StoreError> {
        // PROFILE and THROTTLE are the only sort keys of the household's partition in this
        // range (audit lines sort before it, under AUDIT#), so one Query reads both.
        let request = self
            .query_partition(hh_pk(household))
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :profile AND :throttle")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":profile", s(PROFILE_SK))
            .expression_attribute_values(":throttle", s(THROTTLE_SK));
        let mut snapshot = HouseholdSnapshot::default();
        for item in self.query_all(request, None).await? {
            match get_s(&item, SK)? {
                PROFILE_SK => snapshot.profile = decode_profile(&item)?,
                THROTTLE_SK => snapshot.throttle = decode_throttle(&item)?,
                sk if sk.starts_with(SEEN_PREFIX) => {
                    let panel = sk.trim_start_matches(SEEN_PREFIX).to_string();
                    if let Some(AttributeValue::S(link)) = item.get("monitoring") {
                        let link = serde_json::from_str(link)
                            .map_err(|e| corrupt(&item, format!("monitoring link: {e}")))?;
                        snapshot.monitoring.insert(panel.clone(), link);
                    }
                    snapshot.panels_seen.insert(panel, get_time(&item, "at")?);
                }
                // QUEUE, and a future item type that happens to sort inside the range.
                _ => {}
            }
        }
        Ok(snapshot)
    }

    pub(super) async fn save_profile(
        &self,
        household: &str,
        profile: &Profile,
    ) -> Result<u64, StoreError> {
        let version = next_version(profile.version)?;
        let mut saved = profile.clone();
        saved.version = version;
        let data = serde_json::to_string(&saved)
            .map_err(|e| StoreError::Unavailable(format!("encoding profile: {e}")))?;
        let mut item = key(hh_pk(household), PROFILE_SK);
        item.insert("version".into(), n(version));
        item.insert("data".into(), s(data));
        self.put_versioned(item, profile.version).await?;
        Ok(version)
    }

    pub(super) async fn record_attempt(
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
            items.push(self.new_outbox_write(record)?);
        }
        for entry in audit {
            items.push(self.audit_write(household, entry)?);
        }

        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(transact_error)?;
        Ok(())
    }

    pub(super) async fn hold_attempt(
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
        let mut items = vec![
            throttle_write(&self.table, household, throttle)?,
            self.new_outbox_write(&held)?,
            self.held_update(household, 1)?,
        ];
        for entry in audit {
            items.push(self.audit_write(household, entry)?);
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
                let reasons = cancellation_codes(&err);
                if reasons.get(2) == Some(&"ConditionalCheckFailed")
                    && reasons.iter().take(2).all(|r| *r == "None")
                {
                    self.record_attempt(household, throttle, None, audit)
                        .await?;
                    return Ok(false);
                }
                Err(transact_error(err))
            }
        }
    }

    /// The household's held count moved by `delta`; an increment only below
    /// [`HELD_PER_HOUSEHOLD`].
    pub(super) fn held_update(
        &self,
        household: &str,
        delta: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let cap = (":cap", HELD_PER_HOUSEHOLD);
        self.capped_counter_update(household, (HELD_SK, "held"), cap, delta)
    }

    /// Moves the counter attribute `item.1` of the household's item `item.0` by `delta`; an
    /// increment only while the counter stays below `cap.1` (bound in the condition as `cap.0`).
    /// Shared by the held count and the quota counter, which differ only in these names.
    pub(super) fn capped_counter_update(
        &self,
        household: &str,
        item: (&str, &str),
        cap: (&str, u32),
        delta: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(hh_pk(household), item.0)))
            .update_expression("ADD #n :delta")
            .expression_attribute_names("#n", item.1)
            .expression_attribute_values(":delta", n(delta));
        if delta > 0 {
            update = update
                .condition_expression(format!("attribute_not_exists(#n) OR #n < {}", cap.0))
                .expression_attribute_values(cap.0, n(cap.1));
        }
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(build_error)?)
            .build())
    }

    pub(super) async fn confirm_panels(
        &self,
        household: &str,
        panels: &[ConfirmedPanel],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for panel in panels.iter().take(MAX_CONFIRMED_PANELS) {
            let mut item = key(hh_pk(household), format!("{SEEN_PREFIX}{}", panel.id));
            let Some(reported) = &panel.monitoring else {
                // Nothing said of the link: only the time changes.
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(item))
                    .update_expression("SET #at = :at")
                    .expression_attribute_names("#at", "at")
                    .expression_attribute_values(":at", s(timestamp(at)))
                    .send()
                    .await
                    .map_err(|e| sdk_error("UpdateItem", e))?;
                continue;
            };
            item.insert("at".into(), s(timestamp(at)));
            // The whole item is replaced: a panel reported without a link loses the old one.
            if let Some(link) = reported {
                let link = serde_json::to_string(link)
                    .map_err(|e| StoreError::Unavailable(format!("encoding link: {e}")))?;
                item.insert("monitoring".into(), s(link));
            }
            self.put(item).await?;
        }
        Ok(())
    }

    pub(super) async fn forget_panel(
        &self,
        household: &str,
        panel: &str,
    ) -> Result<(), StoreError> {
        self.delete(key(hh_pk(household), format!("{SEEN_PREFIX}{panel}")))
            .await
    }

    pub(super) async fn append_audit(
        &self,
        household: &str,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.put(audit_item(household, entry)).await
    }

    pub(super) async fn audit(
        &self,
        household: &str,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = self
            .query_partition(hh_pk(household))
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :audit)")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":audit", s(AUDIT_PREFIX))
            .scan_index_forward(false);
        self.query_all(request, Some(limit))
            .await?
            .iter()
            .map(decode_audit)
            .collect()
    }

    pub(super) async fn append_refusal(
        &self,
        household: &str,
        entry: &AuditEntry,
        window: Duration,
    ) -> Result<(), StoreError> {
        use sha2::Digest;
        let start = window_start(entry.at, window);
        let digest = hex::encode(sha2::Sha256::digest(entry.message.as_bytes()));
        let marker_sk = format!("{REFUSED_PREFIX}{start}#{}", &digest[..32]);
        let line = audit_item(household, entry);
        let line_sk = get_s(&line, SK)?.to_string();
        // The window's first refusal: the marker, naming its line, and the line, at once.
        let mut marker = key(hh_pk(household), marker_sk.as_str());
        marker.insert("line".into(), s(&line_sk));
        let ends = start.saturating_add(window.num_seconds().max(1));
        marker.insert(TTL.into(), n(ends.saturating_add(RATE_GRACE_S)));
        let first = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        let put_line = Put::builder()
            .table_name(&self.table)
            .set_item(Some(line))
            .build()
            .map_err(build_error)?;
        let created = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(first).build())
            .transact_items(TransactWriteItem::builder().put(put_line).build())
            .send()
            .await
            .map_err(transact_error);
        match created {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
        // A later one: counted on the window's line.
        let Some(marker) = self
            .get_consistent(hh_pk(household), &marker_sk, false)
            .await?
        else {
            // Expired since, or the first write lost to a concurrent transaction: retried by
            // the caller like any conflict.
            return Err(StoreError::Conflict);
        };
        let line_sk = get_s(&marker, "line")?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(hh_pk(household), line_sk)))
            .update_expression("ADD #more :one")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#more", "more")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        Ok(())
    }

    /// An audit line, as one action of a transaction.
    pub(super) fn audit_write(
        &self,
        household: &str,
        entry: &AuditEntry,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(audit_item(household, entry)))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// The throttle part of an attempt's transaction (see [`ThrottleWrite`]).
fn throttle_write(
    table: &str,
    household: &str,
    throttle: ThrottleWrite<'_>,
) -> Result<TransactWriteItem, StoreError> {
    Ok(match throttle {
        ThrottleWrite::Set(t) => {
            let put = versioned!(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(throttle_item(household, t, next_version(t.version)?))),
                t.version
            )
            .build()
            .map_err(build_error)?;
            TransactWriteItem::builder().put(put).build()
        }
        ThrottleWrite::Check(version) => {
            let check = versioned!(
                ConditionCheck::builder()
                    .table_name(table)
                    .set_key(Some(key(hh_pk(household), THROTTLE_SK))),
                version
            )
            .build()
            .map_err(build_error)?;
            TransactWriteItem::builder().condition_check(check).build()
        }
    })
}
