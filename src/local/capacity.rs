//! What each DynamoDB call consumed, in DynamoDB's own words: an SDK interceptor asks every
//! call for `ReturnConsumedCapacity = INDEXES` and adds up the answers. Local only (the local
//! stack's `capacity` option, tests/it/hostile.rs): the figures of docs/capacity.md, pinned by a
//! test so a change that adds a round trip or an index write shows up.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};

/// Calls and capacity units, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Consumed {
    /// Calls answered, successful or not (a failed condition consumes capacity too, but
    /// DynamoDB reports it only on success: such calls count here with no units).
    pub calls: u32,
    /// Of `calls`, the ones that failed (a condition, a cancelled transaction).
    pub failed: u32,
    pub read_units: f64,
    pub write_units: f64,
    /// Of `write_units`, what the pending index (GSI1) took.
    pub index_write_units: f64,
}

impl Consumed {
    fn add(&mut self, c: &ConsumedCapacity, read: bool) {
        let split = if read {
            c.read_capacity_units()
        } else {
            c.write_capacity_units()
        };
        // DynamoDB Local reports only the total; a call here is all reads or all writes.
        let units = split.or(c.capacity_units()).unwrap_or(0.0);
        if read {
            self.read_units += units;
        } else {
            self.write_units += units;
        }
        for gsi in c
            .global_secondary_indexes()
            .into_iter()
            .flat_map(|m| m.values())
        {
            self.index_write_units += gsi.write_capacity_units().unwrap_or(0.0);
        }
    }
}

/// A local client whose every call reports the capacity it consumed to `meter`.
pub fn local_client_metered(endpoint: &str, meter: CapacityMeter) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        crate::adapters::store::dynamodb::local_config(endpoint)
            .interceptor(meter)
            .build(),
    )
}

/// The interceptor; clones share one tally.
#[derive(Debug, Clone, Default)]
pub struct CapacityMeter(Arc<Mutex<Consumed>>);

impl CapacityMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// What was consumed since the last `take`, and starts again from zero.
    pub fn take(&self) -> Consumed {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Calls answered since the last `take`, without starting again: for waiting until the
    /// calls a request set off in the background have stopped.
    pub fn calls(&self) -> u32 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).calls
    }

    fn record(&self, f: impl FnOnce(&mut Consumed)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let want = Some(ReturnConsumedCapacity::Indexes);
        if let Some(i) = input.downcast_mut::<QueryInput>() {
            i.return_consumed_capacity = want;
        } else if let Some(i) = input.downcast_mut::<GetItemInput>() {
            i.return_consumed_capacity = want;
        } else if let Some(i) = input.downcast_mut::<PutItemInput>() {
            i.return_consumed_capacity = want;
        } else if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            i.return_consumed_capacity = want;
        } else if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            i.return_consumed_capacity = want;
        } else if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            i.return_consumed_capacity = want;
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(out) = context.output_or_error() else {
            self.record(|c| {
                c.calls += 1;
                c.failed += 1;
            });
            return Ok(());
        };
        let mut seen: Vec<ConsumedCapacity> = Vec::new();
        let mut read = false;
        if let Some(o) = out.downcast_ref::<QueryOutput>() {
            seen.extend(o.consumed_capacity().cloned());
            read = true;
        } else if let Some(o) = out.downcast_ref::<GetItemOutput>() {
            seen.extend(o.consumed_capacity().cloned());
            read = true;
        } else if let Some(o) = out.downcast_ref::<PutItemOutput>() {
            seen.extend(o.consumed_capacity().cloned());
        } else if let Some(o) = out.downcast_ref::<UpdateItemOutput>() {
            seen.extend(o.consumed_capacity().cloned());
        } else if let Some(o) = out.downcast_ref::<DeleteItemOutput>() {
            seen.extend(o.consumed_capacity().cloned());
        } else if let Some(o) = out.downcast_ref::<TransactWriteItemsOutput>() {
            seen.extend(o.consumed_capacity().iter().cloned());
        }
        self.record(|c| {
            c.calls += 1;
            for s in &seen {
                c.add(s, read);
            }
        });
        Ok(())
    }
}
