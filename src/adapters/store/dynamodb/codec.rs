//! Keys, item encoding and decoding, and what DynamoDB's errors mean to callers.

use super::*;

/// A missing item is version 0, so the first save's expected version 0 matches it.
pub(super) const VERSION_CONDITION: &str = "attribute_not_exists(#pk) OR #v = :v";

/// The optimistic lock on builders of different types (PutItem, Put, ConditionCheck): the item
/// is still at version `$expected` (or missing, for 0).
macro_rules! versioned {
    ($builder:expr, $expected:expr) => {
        $builder
            .condition_expression(VERSION_CONDITION)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n($expected))
    };
}
pub(super) use versioned;

/// A conditional write's outcome: `false` when its condition failed, which is an answer here
/// (a token not taken, a lease or a claim held by someone else), not an error.
pub(super) fn granted<T, E>(op: &str, result: Result<T, SdkError<E>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) => match sdk_error(op, e) {
            StoreError::Conflict => Ok(false),
            other => Err(other),
        },
    }
}

pub(super) fn next_version(version: u64) -> Result<u64, StoreError> {
    version
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("version overflow".into()))
}

// ---- keys and encoding ----

pub(super) fn hh_pk(household: &str) -> String {
    format!("{HH_PREFIX}{household}")
}

pub(super) fn outbox_pk(request_id: &str) -> String {
    format!("{OUTBOX_PREFIX}{request_id}")
}

pub(super) fn grant_pk(account: &str) -> String {
    format!("{GRANT_PREFIX}{account}")
}

pub(super) fn breaker_pk(cloud: &str) -> String {
    format!("BREAKER#{cloud}")
}

pub(super) fn google_pk(account: &str) -> String {
    format!("GOOGLE#{account}")
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

/// RFC 3339 UTC with nanoseconds: fixed width, so string order is time order (years 0–9999),
/// and lossless, so records read back equal to what was written.
pub(super) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(super) fn ceil_epoch_seconds(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

pub(super) fn settled_ttl(now: DateTime<Utc>) -> i64 {
    (now + Duration::days(SETTLED_RETENTION_DAYS)).timestamp()
}

pub(super) fn pending_sort_key(next_attempt_at: DateTime<Utc>, request_id: &str) -> String {
    format!("{}#{request_id}", timestamp(next_attempt_at))
}

/// The index partition of a lane's records in a shard.
pub(super) fn refused(r: TxRefusal) -> StoreError {
    match r {
        TxRefusal::Record | TxRefusal::QuotaFull => StoreError::Conflict,
        TxRefusal::Other(e) => e,
    }
}

/// Dropping the GSI1 keys takes a settled record out of the sparse pending index.
pub(super) fn delivered(update: UpdateBuilder) -> UpdateBuilder {
    update
        .update_expression("SET #status = :status, #ttl = :ttl REMOVE #gpk, #gsk")
        .expression_attribute_names("#ttl", TTL)
        .expression_attribute_names("#gpk", GSI1PK)
        .expression_attribute_names("#gsk", GSI1SK)
        .expression_attribute_values(":status", s(status_str(OutboxStatus::Delivered)))
        .expression_attribute_values(":ttl", n(settled_ttl(Utc::now())))
}

pub(super) fn lane_pk(lane: Lane, shard: u16) -> String {
    let name = match lane {
        Lane::Due => "PENDING",
        Lane::Waiting => "WAIT",
        Lane::Gone => "GONE",
        Lane::Held => "HELD",
    };
    format!("OUTBOX#{name}#{shard:03}")
}

pub(super) fn lane_str(lane: Lane) -> &'static str {
    match lane {
        Lane::Due => "due",
        Lane::Waiting => "waiting",
        Lane::Gone => "gone",
        Lane::Held => "held",
    }
}

/// Waiting records sort by household, then age: a household's queue is one key range. The
/// unit separator can't end a shorter household id's prefix inside a longer one's.
pub(super) fn waiting_prefix(household: &str) -> String {
    format!("{household}\u{1f}")
}

pub(super) fn waiting_sort_key(
    household: &str,
    created_at: DateTime<Utc>,
    request_id: &str,
) -> String {
    format!(
        "{}{}#{request_id}",
        waiting_prefix(household),
        timestamp(created_at)
    )
}

pub(super) fn status_str(status: OutboxStatus) -> &'static str {
    match status {
        OutboxStatus::Pending => "pending",
        OutboxStatus::Delivered => "delivered",
        OutboxStatus::Dropped => "dropped",
    }
}

/// Tie-breaker for audit lines with equal timestamps: strictly increasing within the process,
/// so lines of one call (and of later calls) read back newest-first in insertion order, as the
/// memory store's stable sort does. Across processes it follows the wall clock.
pub(super) fn audit_sequence() -> u64 {
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

pub(super) fn audit_item(household: &str, entry: &AuditEntry) -> Item {
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

pub(super) fn throttle_item(household: &str, throttle: &Throttle, version: u64) -> Item {
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

pub(super) fn outbox_item(record: &OutboxRecord, shard: u16, now: DateTime<Utc>) -> Item {
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
    if let Some(until) = record.disarm_until {
        item.insert("disarm_until".into(), s(timestamp(until)));
    }
    if record.receiver_acked {
        item.insert("receiver_acked".into(), AttributeValue::Bool(true));
    }
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

pub(super) fn item_key(item: &Item) -> String {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "?",
    };
    format!("{}/{}", part(PK), part(SK))
}

pub(super) fn corrupt(item: &Item, what: String) -> StoreError {
    StoreError::Corrupt(format!("{}: {what}", item_key(item)))
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(item, format!("missing string attribute {name}"))),
    }
}

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt(item, format!("attribute {name} out of range: {v}"))),
        _ => Err(corrupt(item, format!("missing number attribute {name}"))),
    }
}

pub(super) fn get_bool(item: &Item, name: &str) -> Result<bool, StoreError> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        _ => Err(corrupt(item, format!("missing boolean attribute {name}"))),
    }
}

pub(super) fn get_time(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let v = get_s(item, name)?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(item, format!("attribute {name} is not a timestamp: {e}")))
}

pub(super) fn get_opt_time(item: &Item, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    if item.contains_key(name) {
        get_time(item, name).map(Some)
    } else {
        Ok(None)
    }
}

pub(super) fn decode_profile(item: &Item) -> Result<Profile, StoreError> {
    let mut profile: Profile = serde_json::from_str(get_s(item, "data")?)
        .map_err(|e| corrupt(item, format!("profile data: {e}")))?;
    // The top-level attribute is what the conditional writes check, so it is the truth.
    profile.version = get_n(item, "version")?;
    Ok(profile)
}

pub(super) fn decode_throttle(item: &Item) -> Result<Throttle, StoreError> {
    Ok(Throttle {
        version: get_n(item, "version")?,
        consecutive_failures: get_n(item, "consecutive_failures")?,
        locked_until: get_opt_time(item, "locked_until")?,
        hard_locked: get_bool(item, "hard_locked")?,
    })
}

pub(super) fn decode_outbox(item: &Item) -> Result<OutboxRecord, StoreError> {
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
        disarm_until: get_opt_time(item, "disarm_until")?,
        receiver_acked: match item.get("receiver_acked") {
            None => false,
            Some(AttributeValue::Bool(b)) => *b,
            Some(_) => return Err(corrupt(item, "receiver_acked is not a boolean".to_string())),
        },
    })
}

pub(super) fn decode_audit(item: &Item) -> Result<AuditEntry, StoreError> {
    let message = get_s(item, "message")?;
    // Only a refusal line has a count: the refusals counted on it after the first.
    let more = match item.get("more") {
        None => 0,
        Some(_) => get_n::<u64>(item, "more")?,
    };
    Ok(AuditEntry {
        at: get_time(item, "at")?,
        actor: get_s(item, "actor")?.to_string(),
        message: counted_refusal(message, more.saturating_add(1)),
    })
}

// ---- errors ----

pub(super) fn build_error(e: BuildError) -> StoreError {
    StoreError::Unavailable(format!("building request: {e}"))
}

/// What a DynamoDB error code means to callers, if anything beyond "unavailable".
pub(super) fn classify_code(code: &str) -> Option<StoreError> {
    match code {
        "ConditionalCheckFailedException" => Some(StoreError::Conflict),
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded" => Some(StoreError::Throttled),
        _ => None,
    }
}

/// A cancelled transaction by its per-action reasons ("None" for the actions that were fine).
pub(super) fn classify_cancellation<'a>(
    reasons: impl IntoIterator<Item = &'a str>,
) -> Option<StoreError> {
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

pub(super) fn sdk_error<E>(op: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    err.code()
        .and_then(classify_code)
        .unwrap_or_else(|| StoreError::Unavailable(format!("{op}: {}", DisplayErrorContext(&err))))
}

/// Each action's cancellation reason ("None" for an action that passed) when a transaction was
/// cancelled; empty for any other error.
pub(super) fn cancellation_codes(err: &SdkError<TransactWriteItemsError>) -> Vec<&str> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None"))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn transact_error(err: SdkError<TransactWriteItemsError>) -> StoreError {
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
        use StoreError::{Conflict, Throttled};
        for (reasons, want) in [
            (&["None", "ConditionalCheckFailed"][..], Some(Conflict)),
            (&["TransactionConflict", "None"], Some(Conflict)),
            // A failed condition wins: the caller must re-read whatever else went wrong.
            (
                &["ThrottlingError", "ConditionalCheckFailed"],
                Some(Conflict),
            ),
            (&["None", "ThrottlingError"], Some(Throttled)),
            (&["ProvisionedThroughputExceeded"], Some(Throttled)),
            (&["ValidationError", "None"], None),
        ] {
            assert_eq!(
                classify_cancellation(reasons.iter().copied()),
                want,
                "{reasons:?}"
            );
        }
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
