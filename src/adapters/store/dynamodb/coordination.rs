//! Items that coordinate functions rather than hold data: rate-limit windows, the worker's
//! leases and webhook event claims. Each expires by itself (TTL).

use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;

use super::*;

impl DynamoStore {
    pub(super) async fn take_rate_token(
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
        granted("UpdateItem", taken)
    }

    pub(super) async fn acquire_lease(
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
        let condition = "attribute_not_exists(#pk) OR #owner = :owner OR #until < :now";
        let taken = self
            .put_unless_held(item, condition, now)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        granted("PutItem", taken)
    }

    pub(super) async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
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

    /// A PutItem of `item` under `condition`, which may name the item's key (`#pk`), its
    /// held-until attribute (`#until`) and `now` (`:now`): the lease and the event claim, which
    /// take an item nobody holds or whose holder's time is up.
    fn put_unless_held(
        &self,
        item: Item,
        condition: &str,
        now: DateTime<Utc>,
    ) -> PutItemFluentBuilder {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", s(timestamp(now)))
    }

    pub(super) async fn claim_event(
        &self,
        event_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = key(format!("EVENT#{event_id}"), EVENT_SK);
        // TTL deletes items up to days late; `until` keeps the exact expiry, so an expired
        // claim is claimable again at once, as in the memory store.
        item.insert("until".into(), s(timestamp(expires_at)));
        item.insert(TTL.into(), n(ceil_epoch_seconds(expires_at)));
        let condition = "attribute_not_exists(#pk) OR #until <= :now";
        let claimed = self
            .put_unless_held(item, condition, Utc::now())
            .send()
            .await;
        granted("PutItem", claimed)
    }

    pub(super) async fn breaker(&self, cloud: &str) -> Result<Breaker, StoreError> {
        // Consistent: the worker that probes must see the probe another one claimed a moment ago.
        let item = self.get_consistent(breaker_pk(cloud), BREAKER_SK, false);
        let Some(item) = item.await? else {
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

    pub(super) async fn save_breaker(
        &self,
        cloud: &str,
        breaker: &Breaker,
    ) -> Result<u64, StoreError> {
        let version = next_version(breaker.version)?;
        let mut item = key(breaker_pk(cloud), BREAKER_SK);
        item.insert("open".into(), AttributeValue::Bool(breaker.open));
        item.insert("failures".into(), n(breaker.failures));
        item.insert("probe_at".into(), s(timestamp(breaker.probe_at)));
        item.insert("since".into(), s(timestamp(breaker.since)));
        item.insert("version".into(), n(version));
        self.put_versioned(item, breaker.version).await?;
        Ok(version)
    }
}
