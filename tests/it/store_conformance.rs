//! One conformance suite for every [`Store`]: each case is written once and runs against the
//! embedded `MemoryStore` and against `DynamoStore` on DynamoDB Local (a fresh table per test).
//! `scripts/test` starts DynamoDB Local and sets `DYNAMODB_ENDPOINT`.
//!
//! `dynamodb_layout` below also checks the table layout the SAM template and docs/dynamodb.md
//! promise (keys, sparse index, TTL attributes), which the trait alone can't observe.

use alarm_skill::adapters::store::dynamodb::{DynamoStore, create_table, local_client};
use alarm_skill::domain::ports::monitoring::MonitoringLink;
use alarm_skill::domain::ports::store::{
    AuditEntry, Breaker, ConfirmedPanel, HELD_PER_HOUSEHOLD, HouseholdSnapshot, Lane, OutboxCounts,
    OutboxPolicy, OutboxRecord, OutboxStatus, Settlement, Store, StoreError, StoredGrant,
    ThrottleWrite,
};
use alarm_skill::domain::voice_codes::{
    CodeHash, HouseholdSettings, Member, PinlessPolicy, Profile, Throttle,
};
use chrono::{DateTime, Duration, Utc};

const NO_ENDPOINT: &str =
    "DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local";

fn endpoint() -> String {
    match std::env::var("DYNAMODB_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => panic!("{NO_ENDPOINT}"),
    }
}

async fn dynamo_store(case: &str) -> DynamoStore {
    let client = local_client(&endpoint());
    let table = format!(
        "conformance-{}-{}",
        case.replace('_', "-"),
        uuid::Uuid::new_v4().simple()
    );
    create_table(&client, &table).await.expect("create table");
    DynamoStore::new(client, table).with_outbox_policy(POLICY)
}

/// Every case runs with several shards and a small quota, so both are exercised throughout.
const POLICY: OutboxPolicy = OutboxPolicy {
    shards: 4,
    household_quota: 2,
};

macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let store =
                        alarm_skill::adapters::store::memory::MemoryStore::with_outbox_policy(super::POLICY);
                    super::$case(&store).await;
                }
            )+
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = super::dynamo_store(stringify!($case)).await;
                    super::$case(&store).await;
                }
            )+
        }
    };
}

conformance!(
    empty_household_reads_as_version_zero,
    save_profile_bumps_version_and_rejects_stale_versions,
    household_reads_profile_and_throttle_together,
    record_attempt_writes_throttle_outbox_and_audit,
    record_attempt_with_stale_throttle_writes_nothing,
    record_attempt_with_duplicate_request_id_writes_nothing,
    concurrent_writers_exactly_one_wins,
    settle_delivered_then_double_settle_conflicts,
    settle_retry_keeps_record_pending,
    a_handed_over_disarm_is_due_at_once_marked_and_uncounted,
    settle_unknown_record_conflicts_and_writes_nothing,
    outbox_due_is_pending_and_due_oldest_first_with_limit,
    audit_is_newest_first_with_limit,
    audit_reads_past_a_page,
    repeated_refusals_count_on_one_audit_line_per_window,
    rate_tokens_per_window_and_rollover,
    grants_put_replace_list_delete_per_region,
    grants_per_alexa_user_beside_one_from_before,
    claim_event_first_true_then_false,
    put_outbox_inserts_a_new_record_with_its_audit_line_once,
    lease_is_exclusive_until_released_or_expired,
    concurrent_lease_takers_exactly_one_wins,
    throttle_checks_keep_the_version_and_fail_after_a_change,
    google_link_is_linked_until_disconnected_and_again_after_sync,
    first_failures_count_up_to_the_quota_then_wait_and_move_up_oldest_first,
    a_pass_takes_at_most_its_share_of_one_household,
    a_record_whose_panel_left_goes_to_its_own_lane_and_count,
    confirmed_panels_are_read_with_the_household_and_forgotten,
    monitoring_links_come_and_go_with_the_confirmations,
    the_centers_ack_is_kept_with_a_retry,
    a_stale_read_settles_nothing,
    held_attempts_are_capped_per_household_and_leave_the_lane_when_settled,
    racing_held_attempts_never_pass_the_cap,
    breaker_reads_closed_until_saved_and_a_stale_save_changes_nothing,
    concurrent_probe_claims_exactly_one_wins,
);

// ---- fixtures ----

fn t0() -> DateTime<Utc> {
    // Sub-microsecond digits check that timestamps round-trip exactly.
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00.123456789Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn profile() -> Profile {
    Profile {
        version: 0,
        members: vec![
            Member {
                id: "alex".into(),
                name: "Alex".into(),
                user_number: 3,
                panel_user_id: Some("u-7f3a".into()),
                voice_pin: Some(CodeHash {
                    pepper_id: "p1".into(),
                    mac: [7; 32],
                    prefixes: vec![[1; 32], [2; 32], [3; 32], [4; 32]],
                }),
                duress_pin: Some(CodeHash {
                    pepper_id: "p2".into(),
                    mac: [9; 32],
                    prefixes: vec![],
                }),
            },
            Member {
                id: "sam".into(),
                name: "Sam".into(),
                user_number: 4,
                panel_user_id: None,
                voice_pin: None,
                duress_pin: None,
            },
        ],
        settings: HouseholdSettings {
            pinless_disarm: PinlessPolicy::Allow,
            google_enabled: true,
        },
        members_synced_at: Some(t0()),
        members_revision: Some(41),
        deletions: vec![t0(), t0() + Duration::seconds(1)],
    }
}

fn throttle(version: u64, failures: u32) -> Throttle {
    Throttle {
        version,
        consecutive_failures: failures,
        locked_until: Some(t0() + Duration::seconds(90)),
        hard_locked: failures >= 10,
    }
}

fn record(request_id: &str, household: &str, next_attempt_at: DateTime<Utc>) -> OutboxRecord {
    OutboxRecord::pending(
        request_id.into(),
        household,
        "panel-1",
        format!("p1.{}", "ab".repeat(32)),
        t0(),
        next_attempt_at,
    )
}

fn entry(at: DateTime<Utc>, message: &str) -> AuditEntry {
    AuditEntry {
        at,
        actor: "Alex".into(),
        message: message.into(),
    }
}

fn grant(token: &str) -> StoredGrant {
    StoredGrant {
        access_token: format!("sealed-access-{token}"),
        refresh_token: format!("sealed-refresh-{token}"),
        expires_at: t0() + Duration::hours(1),
    }
}

/// Inserts an outbox record through the only path that creates one, with no audit lines.
async fn insert_outbox(store: &dyn Store, rec: &OutboxRecord) {
    let snapshot = store.household(&rec.household).await.unwrap();
    store
        .record_attempt(
            &rec.household,
            ThrottleWrite::Set(&snapshot.throttle),
            Some(rec),
            &[],
        )
        .await
        .unwrap();
}

/// The due queue of every shard together, oldest first, as one queue would read.
async fn due(store: &dyn Store, now: DateTime<Utc>, limit: usize) -> Vec<OutboxRecord> {
    let mut all = Vec::new();
    for shard in 0..store.outbox_policy().shards {
        let got = store
            .outbox_due(Lane::Due, shard, now, limit, usize::MAX)
            .await
            .unwrap();
        assert!(got.records.len() <= limit);
        all.extend(got.records);
    }
    all.sort_by(|a, b| (a.next_attempt_at, &a.request_id).cmp(&(b.next_attempt_at, &b.request_id)));
    all.truncate(limit);
    all
}

async fn due_ids(store: &dyn Store, now: DateTime<Utc>, limit: usize) -> Vec<String> {
    due(store, now, limit)
        .await
        .into_iter()
        .map(|r| r.request_id)
        .collect()
}

async fn counts(store: &dyn Store) -> OutboxCounts {
    alarm_skill::domain::ports::store::outbox_totals(store)
        .await
        .unwrap()
}

async fn messages(store: &dyn Store, household: &str) -> Vec<String> {
    store
        .audit(household, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect()
}

// ---- cases ----

async fn empty_household_reads_as_version_zero(store: &dyn Store) {
    let snapshot = store.household("hh-empty").await.unwrap();
    assert_eq!(snapshot, HouseholdSnapshot::default());
    assert_eq!(snapshot.profile.version, 0);
    assert_eq!(snapshot.throttle.version, 0);
    assert!(store.audit("hh-empty", 10).await.unwrap().is_empty());
    assert!(store.grants("acct-empty").await.unwrap().is_empty());
    assert_eq!(store.outbox_record("req-none").await.unwrap(), None);
    assert!(due(store, t0(), 10).await.is_empty());
}

async fn save_profile_bumps_version_and_rejects_stale_versions(store: &dyn Store) {
    let p = profile();
    assert_eq!(store.save_profile("hh", &p).await, Ok(1));
    let saved = store.household("hh").await.unwrap().profile;
    assert_eq!(
        saved,
        Profile {
            version: 1,
            ..p.clone()
        }
    );

    // Another writer still holding version 0 loses, and changes nothing.
    let mut stale = p.clone();
    stale.members.clear();
    assert_conflict(store.save_profile("hh", &stale).await);
    // A version from the future is just as wrong.
    let ahead = Profile {
        version: 7,
        ..p.clone()
    };
    assert_conflict(store.save_profile("hh", &ahead).await);
    assert_eq!(store.household("hh").await.unwrap().profile, saved);

    let mut next = saved.clone();
    next.members.pop();
    next.settings.pinless_disarm = PinlessPolicy::Refuse;
    assert_eq!(store.save_profile("hh", &next).await, Ok(2));
    assert_eq!(
        store.household("hh").await.unwrap().profile,
        Profile {
            version: 2,
            ..next.clone()
        }
    );
    assert_conflict(store.save_profile("hh", &next).await);

    // Versions are per household, and the profile write left the throttle alone.
    assert_eq!(
        store.household("hh-other").await.unwrap(),
        HouseholdSnapshot::default()
    );
    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        Throttle::default()
    );
}

/// `result` is the optimistic-concurrency refusal.
#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
}

/// An attempt on household `hh` that sets its throttle to `throttle` and writes one audit
/// `line`, with no outbox record.
async fn attempt_without_record(store: &dyn Store, throttle: Throttle, line: &str) {
    store
        .record_attempt(
            "hh",
            ThrottleWrite::Set(&throttle),
            None,
            &[entry(t0(), line)],
        )
        .await
        .unwrap();
}

async fn household_reads_profile_and_throttle_together(store: &dyn Store) {
    store.save_profile("hh", &profile()).await.unwrap();
    attempt_without_record(store, throttle(0, 3), "locked").await;
    // Audit lines live next to the household's state (one partition in DynamoDB) and must
    // not leak into it.
    store
        .append_audit("hh", &entry(t0(), "more"))
        .await
        .unwrap();

    let snapshot = store.household("hh").await.unwrap();
    assert_eq!(
        snapshot.profile,
        Profile {
            version: 1,
            ..profile()
        }
    );
    assert_eq!(snapshot.throttle, throttle(1, 3));

    // Absent optional fields round-trip as absent.
    let plain = Throttle {
        version: 1,
        consecutive_failures: 0,
        locked_until: None,
        hard_locked: true,
    };
    store
        .record_attempt("hh", ThrottleWrite::Set(&plain), None, &[])
        .await
        .unwrap();
    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        Throttle {
            version: 2,
            ..plain
        }
    );
}

async fn record_attempt_writes_throttle_outbox_and_audit(store: &dyn Store) {
    let rec = record("req-1", "hh", t0());
    let lines = [
        entry(t0(), "first"),
        entry(t0() + Duration::seconds(1), "second"),
    ];
    store
        .record_attempt(
            "hh",
            ThrottleWrite::Set(&throttle(0, 1)),
            Some(&rec),
            &lines,
        )
        .await
        .unwrap();

    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        throttle(1, 1)
    );
    assert_eq!(
        store.outbox_record("req-1").await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(
        store.audit("hh", 10).await.unwrap(),
        vec![lines[1].clone(), lines[0].clone()]
    );

    // A record sealed under another pepper round-trips too.
    let mut pinless = record("req-2", "hh", t0());
    pinless.seal = format!("p2.{}", "cd".repeat(32));
    store
        .record_attempt(
            "hh",
            ThrottleWrite::Set(&throttle(1, 0)),
            Some(&pinless),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.outbox_record("req-2").await.unwrap(), Some(pinless));
    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        throttle(2, 0)
    );
    assert_eq!(messages(store, "hh").await, ["second", "first"]);
}

async fn record_attempt_with_stale_throttle_writes_nothing(store: &dyn Store) {
    attempt_without_record(store, throttle(0, 1), "one").await;

    for stale in [throttle(0, 2), throttle(4, 2)] {
        let rec = record("req-lost", "hh", t0());
        let result = store
            .record_attempt(
                "hh",
                ThrottleWrite::Set(&stale),
                Some(&rec),
                &[entry(t0(), "lost")],
            )
            .await;
        assert_eq!(result, Err(StoreError::Conflict));
    }
    assert_eq!(store.outbox_record("req-lost").await.unwrap(), None);
    assert!(due(store, t0() + Duration::days(1), 10).await.is_empty());
    assert_eq!(messages(store, "hh").await, ["one"]);
    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        throttle(1, 1)
    );
}

async fn record_attempt_with_duplicate_request_id_writes_nothing(store: &dyn Store) {
    let original = record("req-dup", "hh", t0());
    store
        .record_attempt(
            "hh",
            ThrottleWrite::Set(&throttle(0, 0)),
            Some(&original),
            &[entry(t0(), "original")],
        )
        .await
        .unwrap();

    let mut duplicate = record("req-dup", "hh", t0() + Duration::minutes(5));
    duplicate.panel = "panel-2".into();
    let result = store
        .record_attempt(
            "hh",
            ThrottleWrite::Set(&throttle(1, 5)),
            Some(&duplicate),
            &[entry(t0(), "duplicate")],
        )
        .await;
    assert_eq!(result, Err(StoreError::Conflict));
    assert_eq!(
        store.outbox_record("req-dup").await.unwrap(),
        Some(original.clone())
    );
    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        throttle(1, 0)
    );
    assert_eq!(messages(store, "hh").await, ["original"]);

    // Still a conflict once the record is settled: a request id is never reused.
    store
        .settle_outbox("req-dup", &Settlement::Delivered, None)
        .await
        .unwrap();
    let result = store
        .record_attempt(
            "hh",
            ThrottleWrite::Set(&throttle(1, 0)),
            Some(&duplicate),
            &[],
        )
        .await;
    assert_eq!(result, Err(StoreError::Conflict));
    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        throttle(1, 0)
    );
}

async fn concurrent_writers_exactly_one_wins(store: &dyn Store) {
    let attempt = |n: u32| async move {
        let rec = record(&format!("req-race-{n}"), "hh", t0());
        let line = entry(t0(), &format!("attempt {n}"));
        store
            .record_attempt(
                "hh",
                ThrottleWrite::Set(&throttle(0, n)),
                Some(&rec),
                std::slice::from_ref(&line),
            )
            .await
    };
    let results = tokio::join!(attempt(1), attempt(2), attempt(3), attempt(4));
    let results = [results.0, results.1, results.2, results.3];
    let winners: Vec<u32> = (1..=4)
        .filter(|n| results[*n as usize - 1].is_ok())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || *r == Err(StoreError::Conflict)),
        "{results:?}"
    );
    let winner = winners[0];
    assert_eq!(
        store.household("hh").await.unwrap().throttle,
        throttle(1, winner)
    );
    for n in 1..=4 {
        let stored = store.outbox_record(&format!("req-race-{n}")).await.unwrap();
        assert_eq!(stored.is_some(), n == winner, "request {n}");
    }
    assert_eq!(messages(store, "hh").await, [format!("attempt {winner}")]);

    let (full, empty) = (profile(), Profile::default());
    let saves = tokio::join!(
        store.save_profile("hh", &full),
        store.save_profile("hh", &empty),
    );
    assert!(
        matches!(
            saves,
            (Ok(1), Err(StoreError::Conflict)) | (Err(StoreError::Conflict), Ok(1))
        ),
        "{saves:?}"
    );
}

async fn settle_delivered_then_double_settle_conflicts(store: &dyn Store) {
    let a = record("req-a", "hh", t0());
    let b = record("req-b", "hh", t0());
    insert_outbox(store, &a).await;
    insert_outbox(store, &b).await;

    store
        .settle_outbox(
            "req-a",
            &Settlement::Delivered,
            Some(("hh", &entry(t0(), "delivered"))),
        )
        .await
        .unwrap();
    let settled = OutboxRecord {
        status: OutboxStatus::Delivered,
        ..a.clone()
    };
    assert_eq!(
        store.outbox_record("req-a").await.unwrap(),
        Some(settled.clone())
    );
    assert_eq!(messages(store, "hh").await, ["delivered"]);

    // Settling again, in any way, is a conflict and writes nothing, the audit line included.
    let retry = Settlement::Retry {
        attempts: 3,
        next_attempt_at: t0(),
        receiver_acked: false,
    };
    for again in [Settlement::Delivered, retry] {
        let result = store
            .settle_outbox("req-a", &again, Some(("hh", &entry(t0(), "again"))))
            .await;
        assert_eq!(result, Err(StoreError::Conflict), "{again:?}");
        assert_conflict(store.settle_outbox("req-a", &again, None).await);
    }
    assert_eq!(store.outbox_record("req-a").await.unwrap(), Some(settled));
    assert_eq!(messages(store, "hh").await, ["delivered"]);

    // The other record is untouched, still pending and due.
    assert_eq!(store.outbox_record("req-b").await.unwrap(), Some(b.clone()));
    assert_eq!(
        due_ids(store, t0() + Duration::days(1), 10).await,
        ["req-b"]
    );
    store
        .settle_outbox("req-b", &Settlement::Delivered, None)
        .await
        .unwrap();

    assert!(due(store, t0() + Duration::days(1), 10).await.is_empty());
}

async fn a_handed_over_disarm_is_due_at_once_marked_and_uncounted(store: &dyn Store) {
    // As a directive writes it: due only after the directive's own grace.
    let rec = record("req-h", "hh", t0() + Duration::seconds(10));
    insert_outbox(store, &rec).await;
    let until = t0() + Duration::seconds(120);
    let hand_over = Settlement::HandedOver {
        next_attempt_at: t0(),
        disarm_until: until,
    };
    store
        .settle_outbox("req-h", &hand_over, Some(("hh", &entry(t0(), "under way"))))
        .await
        .unwrap();
    let handed = OutboxRecord {
        next_attempt_at: t0(),
        disarm_until: Some(until),
        ..rec.clone()
    };
    assert_eq!(
        store.outbox_record("req-h").await.unwrap(),
        Some(handed.clone())
    );
    assert_eq!(messages(store, "hh").await, ["under way"]);
    // Due at once, for the worker, and still outside the household's quota.
    assert_eq!(due(store, t0(), 10).await, vec![handed]);
    store
        .settle_outbox("req-h", &Settlement::Delivered, None)
        .await
        .unwrap();
    // Only a pending record can be handed over.
    assert_conflict(store.settle_outbox("req-h", &hand_over, None).await);
    assert_eq!(messages(store, "hh").await, ["under way"]);
}

async fn settle_retry_keeps_record_pending(store: &dyn Store) {
    let rec = record("req-r", "hh", t0());
    insert_outbox(store, &rec).await;
    let later = t0() + Duration::minutes(10);

    store
        .settle_outbox(
            "req-r",
            &Settlement::Retry {
                attempts: 2,
                next_attempt_at: later,
                receiver_acked: false,
            },
            Some(("hh", &entry(t0(), "retrying"))),
        )
        .await
        .unwrap();
    // Its first failure counts it in the household's quota (of 2 here).
    let retried = OutboxRecord {
        attempts: 2,
        next_attempt_at: later,
        counted: true,
        ..rec.clone()
    };
    assert_eq!(
        store.outbox_record("req-r").await.unwrap(),
        Some(retried.clone())
    );
    assert_eq!(messages(store, "hh").await, ["retrying"]);

    // Due again only at the new time (inclusive), and then it is the whole record.
    assert!(
        due_ids(store, t0() + Duration::minutes(1), 10)
            .await
            .is_empty()
    );
    assert!(
        due_ids(store, later - Duration::nanoseconds(1), 10)
            .await
            .is_empty()
    );
    assert_eq!(due(store, later, 10).await, vec![retried]);

    // Still pending, so it can be retried again and then settled.
    store
        .settle_outbox(
            "req-r",
            &Settlement::Retry {
                attempts: 3,
                next_attempt_at: t0(),
                receiver_acked: false,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(due_ids(store, t0(), 10).await, ["req-r"]);
    store
        .settle_outbox("req-r", &Settlement::Delivered, None)
        .await
        .unwrap();
    let stored = store.outbox_record("req-r").await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.attempts),
        (OutboxStatus::Delivered, 3)
    );
    assert!(due_ids(store, later, 10).await.is_empty());
}

async fn settle_unknown_record_conflicts_and_writes_nothing(store: &dyn Store) {
    let retry = Settlement::Retry {
        attempts: 1,
        next_attempt_at: t0(),
        receiver_acked: false,
    };
    for settlement in [Settlement::Delivered, retry] {
        assert_conflict(store.settle_outbox("req-missing", &settlement, None).await);
        assert_eq!(
            store
                .settle_outbox("req-missing", &settlement, Some(("hh", &entry(t0(), "x"))))
                .await,
            Err(StoreError::Conflict)
        );
    }
    // An update that fails its condition must not have created the record.
    assert_eq!(store.outbox_record("req-missing").await.unwrap(), None);
    assert!(due(store, t0() + Duration::days(1), 10).await.is_empty());
    assert!(store.audit("hh", 10).await.unwrap().is_empty());
}

async fn outbox_due_is_pending_and_due_oldest_first_with_limit(store: &dyn Store) {
    let now = t0() + Duration::seconds(5);
    // Equal times order by request id; a nanosecond still orders times.
    insert_outbox(store, &record("req-c", "hh-1", t0() + Duration::seconds(3))).await;
    insert_outbox(store, &record("req-b", "hh-2", t0() + Duration::seconds(1))).await;
    insert_outbox(store, &record("req-a", "hh-1", t0() + Duration::seconds(1))).await;
    insert_outbox(
        store,
        &record(
            "req-0",
            "hh-2",
            t0() + Duration::seconds(1) + Duration::nanoseconds(1),
        ),
    )
    .await;
    insert_outbox(store, &record("req-now", "hh-1", now)).await;
    // Not due yet.
    insert_outbox(
        store,
        &record("req-future", "hh-1", now + Duration::nanoseconds(1)),
    )
    .await;
    // Due, but settled.
    insert_outbox(store, &record("req-settled", "hh-2", t0())).await;
    store
        .settle_outbox("req-settled", &Settlement::Delivered, None)
        .await
        .unwrap();
    // Due, but inserted already delivered.
    let mut done = record("req-done", "hh-2", t0());
    done.status = OutboxStatus::Delivered;
    insert_outbox(store, &done).await;

    assert_eq!(
        due_ids(store, now, 100).await,
        ["req-a", "req-b", "req-0", "req-c", "req-now"]
    );
    assert_eq!(due_ids(store, now, 2).await, ["req-a", "req-b"]);
    assert_eq!(due_ids(store, now, 0).await, Vec::<String>::new());
    assert_eq!(due_ids(store, t0(), 100).await, Vec::<String>::new());
    assert_eq!(
        due_ids(store, now + Duration::days(1), 100).await,
        ["req-a", "req-b", "req-0", "req-c", "req-now", "req-future"]
    );
    assert_eq!(
        due(store, now, 1).await,
        vec![record("req-a", "hh-1", t0() + Duration::seconds(1))]
    );
    assert_eq!(store.outbox_record("req-done").await.unwrap(), Some(done));
}

async fn audit_is_newest_first_with_limit(store: &dyn Store) {
    let at = |ms: i64| t0() + Duration::milliseconds(ms);
    store
        .append_audit("hh", &entry(at(2000), "2s"))
        .await
        .unwrap();
    store.append_audit("hh", &entry(at(0), "0s")).await.unwrap();
    store
        .append_audit("hh", &entry(at(1000), "1s"))
        .await
        .unwrap();
    // Less than a millisecond apart still orders by time.
    store
        .append_audit("hh", &entry(at(1000) + Duration::microseconds(1), "1s+1us"))
        .await
        .unwrap();
    // Equal times read back newest-inserted first, within one write and across writes.
    store
        .record_attempt(
            "hh",
            ThrottleWrite::Set(&Throttle::default()),
            None,
            &[entry(at(3000), "3s x"), entry(at(3000), "3s y")],
        )
        .await
        .unwrap();
    store
        .append_audit("hh", &entry(at(3000), "3s z"))
        .await
        .unwrap();
    store
        .append_audit("hh-other", &entry(at(9000), "other"))
        .await
        .unwrap();

    assert_eq!(
        messages(store, "hh").await,
        ["3s z", "3s y", "3s x", "2s", "1s+1us", "1s", "0s"]
    );
    assert_eq!(
        store.audit("hh", 2).await.unwrap(),
        vec![entry(at(3000), "3s z"), entry(at(3000), "3s y")]
    );
    assert_eq!(
        store.audit("hh", 4).await.unwrap()[3],
        entry(at(2000), "2s")
    );
    assert!(store.audit("hh", 0).await.unwrap().is_empty());
    assert_eq!(messages(store, "hh-other").await, ["other"]);
    // The household's state next to its audit lines is untouched by them.
    assert_eq!(
        store.household("hh").await.unwrap(),
        HouseholdSnapshot {
            profile: Profile::default(),
            throttle: Throttle {
                version: 1,
                ..Throttle::default()
            },
            ..HouseholdSnapshot::default()
        }
    );
}

/// A refused request asked again and again takes one audit line per message and window, with
/// its count: the log can't be grown by repeating it.
async fn repeated_refusals_count_on_one_audit_line_per_window(store: &dyn Store) {
    // t0 is 12:00:00.123: every time below is inside the 12:00 window but the last two.
    let at = |s: i64| t0() + Duration::seconds(s);
    let refuse = |household: &'static str, s: i64, message: &'static str| async move {
        let line = entry(at(s), message);
        store
            .append_refusal(household, &line, Duration::hours(1))
            .await
            .unwrap();
    };
    let (refused, other) = ("Voice code deletion refused", "Voice code change refused");
    store
        .append_audit("hh", &entry(at(0), "before"))
        .await
        .unwrap();
    for s in 1..=30 {
        refuse("hh", s, refused).await;
    }
    store
        .append_audit("hh", &entry(at(40), "between"))
        .await
        .unwrap();
    refuse("hh", 50, other).await;
    refuse("hh-2", 60, refused).await;
    // The first line of a window keeps the first refusal's time, where it sorts.
    assert_eq!(
        store.audit("hh", 10).await.unwrap(),
        vec![
            entry(at(50), other),
            entry(at(40), "between"),
            entry(at(1), &format!("{refused} (30 times)")),
            entry(at(0), "before"),
        ]
    );
    assert_eq!(messages(store, "hh-2").await, [refused]);
    // The next window starts a line of its own.
    refuse("hh", 3600, refused).await;
    refuse("hh", 3601, refused).await;
    assert_eq!(
        messages(store, "hh").await,
        [
            format!("{refused} (2 times)"),
            other.to_string(),
            "between".to_string(),
            format!("{refused} (30 times)"),
            "before".to_string(),
        ]
    );
}

async fn audit_reads_past_a_page(store: &dyn Store) {
    // DynamoDB returns at most 1 MB per Query page; five 300 KB lines need two pages.
    let big = "x".repeat(300 * 1024);
    for i in 0..5 {
        let line = entry(t0() + Duration::seconds(i), &format!("{i}{big}"));
        store.append_audit("hh", &line).await.unwrap();
    }
    let first = |entries: Vec<AuditEntry>| -> Vec<char> {
        entries
            .iter()
            .map(|e| e.message.chars().next().unwrap())
            .collect()
    };
    assert_eq!(
        first(store.audit("hh", 10).await.unwrap()),
        ['4', '3', '2', '1', '0']
    );
    assert_eq!(
        first(store.audit("hh", 4).await.unwrap()),
        ['4', '3', '2', '1']
    );
}

async fn rate_tokens_per_window_and_rollover(store: &dyn Store) {
    let window = Duration::seconds(60);
    let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    assert_eq!(start.timestamp() % 60, 0);
    let take = |key: &'static str, offset_ms: i64, max: u32| async move {
        store
            .take_rate_token(key, start + Duration::milliseconds(offset_ms), window, max)
            .await
            .unwrap()
    };

    assert!(take("ip:1", 10_000, 3).await);
    assert!(take("ip:1", 20_000, 3).await);
    assert!(take("ip:1", 0, 3).await);
    assert!(!take("ip:1", 59_999, 3).await);
    assert!(!take("ip:1", 30_000, 3).await);
    // Keys are independent.
    assert!(take("ip:2", 30_000, 3).await);

    // The next window starts full, and the exhausted one stays exhausted.
    assert!(take("ip:1", 60_000, 3).await);
    assert!(take("ip:1", 61_000, 3).await);
    assert!(take("ip:1", 119_999, 3).await);
    assert!(!take("ip:1", 90_000, 3).await);
    assert!(!take("ip:1", 45_000, 3).await);

    // A smaller max applies to the same counter.
    assert!(!take("ip:2", 30_000, 1).await);
    assert!(take("ip:2", 30_000, 2).await);
    assert!(!take("ip:2", 30_000, 2).await);

    // No tokens at all.
    assert!(!take("ip:3", 0, 0).await);
    assert!(take("ip:3", 0, 1).await);
}

async fn grants_put_replace_list_delete_per_region(store: &dyn Store) {
    assert!(store.grants("acct").await.unwrap().is_empty());
    store.put_grant("acct", "NA", &grant("na-1")).await.unwrap();
    store.put_grant("acct", "EU", &grant("eu-1")).await.unwrap();
    store
        .put_grant("acct-2", "FE", &grant("fe-x"))
        .await
        .unwrap();
    assert_eq!(
        store.grants("acct").await.unwrap(),
        vec![
            ("EU".to_string(), grant("eu-1")),
            ("NA".to_string(), grant("na-1"))
        ]
    );

    // Replacing one region leaves the others.
    let mut renewed = grant("na-2");
    renewed.expires_at = t0() + Duration::hours(2);
    store.put_grant("acct", "NA", &renewed).await.unwrap();
    assert_eq!(
        store.grants("acct").await.unwrap(),
        vec![
            ("EU".to_string(), grant("eu-1")),
            ("NA".to_string(), renewed.clone())
        ]
    );

    store.delete_grant("acct", "EU").await.unwrap();
    // Deleting what isn't there is fine.
    store.delete_grant("acct", "EU").await.unwrap();
    store.delete_grant("acct-none", "NA").await.unwrap();
    assert_eq!(
        store.grants("acct").await.unwrap(),
        vec![("NA".to_string(), renewed)]
    );
    assert_eq!(
        store.grants("acct-2").await.unwrap(),
        vec![("FE".to_string(), grant("fe-x"))]
    );
}

/// One grant per linked Alexa user (`{region}#{user}`, crate::adapters::lwa), next to a grant
/// stored before grants were per user (`{region}` alone), which stays readable as it was.
async fn grants_per_alexa_user_beside_one_from_before(store: &dyn Store) {
    store
        .put_grant("acct", "NA", &grant("legacy"))
        .await
        .unwrap();
    for (key, token) in [("NA#u1", "u1"), ("NA#u2", "u2"), ("EU#u1", "eu-u1")] {
        store.put_grant("acct", key, &grant(token)).await.unwrap();
    }
    let keys = |g: Vec<(String, StoredGrant)>| g.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(store.grants("acct").await.unwrap()),
        ["EU#u1", "NA", "NA#u1", "NA#u2"]
    );
    // Each user's grant is replaced and deleted on its own.
    store
        .put_grant("acct", "NA#u2", &grant("u2-b"))
        .await
        .unwrap();
    store.delete_grant("acct", "NA#u1").await.unwrap();
    assert_eq!(
        store.grants("acct").await.unwrap(),
        vec![
            ("EU#u1".to_string(), grant("eu-u1")),
            ("NA".to_string(), grant("legacy")),
            ("NA#u2".to_string(), grant("u2-b")),
        ]
    );
}

async fn claim_event_first_true_then_false(store: &dyn Store) {
    let later = Utc::now() + Duration::hours(1);
    assert!(store.claim_event("evt-1", later).await.unwrap());
    assert!(!store.claim_event("evt-1", later).await.unwrap());
    assert!(
        !store
            .claim_event("evt-1", later + Duration::hours(1))
            .await
            .unwrap()
    );
    assert!(store.claim_event("evt-2", later).await.unwrap());
    assert!(!store.claim_event("evt-1", later).await.unwrap());

    // A claim that has expired no longer blocks the id.
    let past = Utc::now() - Duration::seconds(1);
    assert!(store.claim_event("evt-old", past).await.unwrap());
    assert!(store.claim_event("evt-old", later).await.unwrap());
    assert!(!store.claim_event("evt-old", later).await.unwrap());
}

async fn google_link_is_linked_until_disconnected_and_again_after_sync(store: &dyn Store) {
    // Never recorded: linked (households linked before DISCONNECT was stored keep reporting).
    assert!(store.google_linked("acct-g").await.unwrap());
    // Relinking an account that never unlinked is a no-op.
    store.set_google_linked("acct-g", true).await.unwrap();
    assert!(store.google_linked("acct-g").await.unwrap());
    store.set_google_linked("acct-g", false).await.unwrap();
    assert!(!store.google_linked("acct-g").await.unwrap());
    // Idempotent, and per account.
    store.set_google_linked("acct-g", false).await.unwrap();
    assert!(!store.google_linked("acct-g").await.unwrap());
    assert!(store.google_linked("acct-other").await.unwrap());
    store.set_google_linked("acct-g", true).await.unwrap();
    assert!(store.google_linked("acct-g").await.unwrap());
    store.set_google_linked("acct-g", true).await.unwrap();
    assert!(store.google_linked("acct-g").await.unwrap());
}

// ---- DynamoDB layout ----

mod dynamodb_layout {
    use std::collections::HashMap;

    use alarm_skill::adapters::store::dynamodb::{DynamoStore, create_table, local_client};
    use alarm_skill::domain::ports::store::{Lane, OutboxPolicy, Settlement, Store, StoreError};
    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::types::{
        AttributeValue, BillingMode, KeyType, ProjectionType, TimeToLiveStatus,
    };
    use chrono::{Duration, Utc};

    use super::{endpoint, grant, insert_outbox, profile, record, t0};

    type Item = HashMap<String, AttributeValue>;

    async fn fresh(case: &str) -> (Client, String, DynamoStore) {
        let client = local_client(&endpoint());
        let table = format!("layout-{case}-{}", uuid::Uuid::new_v4().simple());
        create_table(&client, &table).await.expect("create table");
        let store =
            DynamoStore::new(client.clone(), table.clone()).with_outbox_policy(OutboxPolicy {
                shards: 1,
                household_quota: 2,
            });
        (client, table, store)
    }

    async fn raw(client: &Client, table: &str, pk: &str, sk: &str) -> Item {
        client
            .get_item()
            .table_name(table)
            .key("PK", AttributeValue::S(pk.into()))
            .key("SK", AttributeValue::S(sk.into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_else(|| panic!("no item {pk}/{sk}"))
    }

    fn number(item: &Item, name: &str) -> i64 {
        item.get(name)
            .unwrap_or_else(|| panic!("no {name} in {item:?}"))
            .as_n()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn create_table_is_idempotent_and_matches_the_template() {
        let (client, table, _) = fresh("table").await;
        create_table(&client, &table).await.unwrap();

        let described = client
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .unwrap();
        let t = described.table().unwrap();
        let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
            schema
                .iter()
                .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(t.key_schema()),
            [("PK".into(), KeyType::Hash), ("SK".into(), KeyType::Range)]
        );
        assert_eq!(
            t.billing_mode_summary().and_then(|b| b.billing_mode()),
            Some(&BillingMode::PayPerRequest)
        );
        let gsis = t.global_secondary_indexes();
        assert_eq!(gsis.len(), 1);
        assert_eq!(gsis[0].index_name(), Some("GSI1"));
        assert_eq!(
            keys(gsis[0].key_schema()),
            [
                ("GSI1PK".into(), KeyType::Hash),
                ("GSI1SK".into(), KeyType::Range)
            ]
        );
        assert_eq!(
            gsis[0].projection().and_then(|p| p.projection_type()),
            Some(&ProjectionType::All)
        );

        let ttl = client
            .describe_time_to_live()
            .table_name(&table)
            .send()
            .await
            .expect("the table's TTL is described");
        let ttl = ttl.time_to_live_description().unwrap();
        assert_eq!(ttl.attribute_name(), Some("expires_at"));
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    }

    #[tokio::test]
    async fn only_pending_outbox_records_are_in_the_index_and_settled_ones_expire() {
        let (client, table, store) = fresh("outbox").await;
        insert_outbox(&store, &record("req-1", "hh", t0())).await;
        let pending = raw(&client, &table, "OUTBOX#req-1", "OUTBOX").await;
        assert_eq!(pending["GSI1PK"].as_s().unwrap(), "OUTBOX#PENDING#000");
        assert_eq!(pending["lane"].as_s().unwrap(), "due");
        assert_eq!(pending["counted"].as_bool().unwrap(), &false);
        assert!(pending["GSI1SK"].as_s().unwrap().ends_with("#req-1"));
        assert!(!pending.contains_key("expires_at"));

        let later = t0() + Duration::minutes(3);
        store
            .settle_outbox(
                "req-1",
                &Settlement::Retry {
                    attempts: 1,
                    next_attempt_at: later,
                    receiver_acked: false,
                },
                None,
            )
            .await
            .unwrap();
        let retried = raw(&client, &table, "OUTBOX#req-1", "OUTBOX").await;
        assert!(retried["GSI1SK"].as_s().unwrap() > pending["GSI1SK"].as_s().unwrap());
        // Counted in the household's quota, on the counter read along with the household.
        assert_eq!(retried["counted"].as_bool().unwrap(), &true);
        assert_eq!(
            number(&raw(&client, &table, "HH#hh", "QUEUE").await, "counted"),
            1
        );

        store
            .settle_outbox("req-1", &Settlement::Delivered, None)
            .await
            .unwrap();
        let settled = raw(&client, &table, "OUTBOX#req-1", "OUTBOX").await;
        assert!(!settled.contains_key("GSI1PK") && !settled.contains_key("GSI1SK"));
        assert_eq!(
            number(&raw(&client, &table, "HH#hh", "QUEUE").await, "counted"),
            0
        );
        let expected = (Utc::now() + Duration::days(30)).timestamp();
        assert!((number(&settled, "expires_at") - expected).abs() <= 5);
    }

    #[tokio::test]
    async fn rate_and_event_items_expire_grants_and_household_state_do_not() {
        let (client, table, store) = fresh("ttl").await;
        let now = chrono::DateTime::from_timestamp(1_800_000_030, 0).unwrap();
        assert!(
            store
                .take_rate_token("k", now, Duration::seconds(60), 5)
                .await
                .unwrap()
        );
        let rate = raw(&client, &table, "RATE#k", "1800000000").await;
        assert_eq!(number(&rate, "n"), 1);
        assert_eq!(number(&rate, "expires_at"), 1_800_000_060 + 3600);

        let until = chrono::DateTime::from_timestamp(1_900_000_000, 5).unwrap();
        assert!(store.claim_event("e", until).await.unwrap());
        let event = raw(&client, &table, "EVENT#e", "EVENT").await;
        assert_eq!(number(&event, "expires_at"), 1_900_000_001);

        // A grant's token expiry must not land in the TTL attribute: DynamoDB would delete the
        // grant, refresh token and all, an hour after every refresh.
        store.put_grant("acct", "NA", &grant("g")).await.unwrap();
        let stored = raw(&client, &table, "GRANT#acct", "NA").await;
        assert!(!stored.contains_key("expires_at"), "{stored:?}");

        store.save_profile("hh", &profile()).await.unwrap();
        assert!(
            !raw(&client, &table, "HH#hh", "PROFILE")
                .await
                .contains_key("expires_at")
        );

        // The unlink marker stays until a SYNC deletes it: no TTL.
        store.set_google_linked("acct", false).await.unwrap();
        let link = raw(&client, &table, "GOOGLE#acct", "LINK").await;
        assert!(!link.contains_key("expires_at"), "{link:?}");
        assert!(
            link.get("unlinked_at")
                .and_then(|v| v.as_s().ok())
                .is_some(),
            "{link:?}"
        );
    }

    #[tokio::test]
    async fn undecodable_items_are_corrupt() {
        let (client, table, store) = fresh("corrupt").await;
        let put = |pk: &str, sk: &str, extra: &[(&str, AttributeValue)]| {
            let mut req = client
                .put_item()
                .table_name(&table)
                .item("PK", AttributeValue::S(pk.into()))
                .item("SK", AttributeValue::S(sk.into()));
            for (name, value) in extra {
                req = req.item(*name, value.clone());
            }
            req.send()
        };
        put(
            "HH#hh",
            "PROFILE",
            &[
                ("version", AttributeValue::N("1".into())),
                ("data", AttributeValue::S("not json".into())),
            ],
        )
        .await
        .unwrap();
        assert!(matches!(
            store.household("hh").await,
            Err(StoreError::Corrupt(_))
        ));

        put(
            "OUTBOX#req",
            "OUTBOX",
            &[("status", AttributeValue::S("pending".into()))],
        )
        .await
        .unwrap();
        assert!(matches!(
            store.outbox_record("req").await,
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn an_unreadable_pending_item_is_reported_and_the_others_still_come_due() {
        let (client, table, store) = fresh("unreadable").await;
        // Pending items in the index that can't be decoded, due before the readable ones.
        for (pk, status) in [("OUTBOX#bad-1", "pending"), ("OUTBOX#bad-2", "weird")] {
            client
                .put_item()
                .table_name(&table)
                .item("PK", AttributeValue::S(pk.into()))
                .item("SK", AttributeValue::S("OUTBOX".into()))
                .item("status", AttributeValue::S(status.into()))
                .item("GSI1PK", AttributeValue::S("OUTBOX#PENDING".into()))
                .item(
                    "GSI1SK",
                    AttributeValue::S(format!("2000-01-01T00:00:00.000000000Z#{pk}")),
                )
                .send()
                .await
                .unwrap();
        }
        for id in ["req-1", "req-2", "req-3"] {
            insert_outbox(&store, &record(id, "hh", t0())).await;
        }
        // Records of releases before the lanes, in the one old partition, are still drained
        // (with shard 0); this store has one shard.
        let due = store
            .outbox_due(Lane::Due, 0, t0(), 2, usize::MAX)
            .await
            .unwrap();
        let ids: Vec<&str> = due.records.iter().map(|r| r.request_id.as_str()).collect();
        // The limit counts readable records only: bad items can't crowd them out.
        assert_eq!(ids, ["req-1", "req-2"]);
        let keys: Vec<&str> = due.unreadable.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["OUTBOX#bad-1/OUTBOX", "OUTBOX#bad-2/OUTBOX"]);
        assert!(
            due.unreadable[1].error.contains("weird"),
            "{:?}",
            due.unreadable
        );
    }

    #[tokio::test]
    async fn a_missing_table_is_unavailable() {
        let store = DynamoStore::new(local_client(&endpoint()), "no-such-table");
        assert!(matches!(
            store.household("hh").await,
            Err(StoreError::Unavailable(_))
        ));
    }
}

async fn put_outbox_inserts_a_new_record_with_its_audit_line_once(store: &dyn Store) {
    let rec = OutboxRecord {
        attempts: 1,
        ..record("req-p", "hh", t0())
    };
    store
        .put_outbox(&rec, Some(&entry(t0(), "disarm failed")))
        .await
        .unwrap();
    assert_eq!(
        store.outbox_record("req-p").await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(due_ids(store, t0(), 10).await, ["req-p"]);
    assert_eq!(messages(store, "hh").await, ["disarm failed"]);
    // The throttle is not part of it.
    assert_eq!(store.household("hh").await.unwrap().throttle.version, 0);

    // Again, or over a record record_attempt wrote: a conflict that writes nothing.
    let other = record("req-q", "hh", t0());
    insert_outbox(store, &other).await;
    for existing in [&rec, &other] {
        let changed = OutboxRecord {
            attempts: 7,
            ..existing.clone()
        };
        assert_eq!(
            store
                .put_outbox(&changed, Some(&entry(t0(), "again")))
                .await,
            Err(StoreError::Conflict)
        );
        assert_eq!(
            store
                .outbox_record(&existing.request_id)
                .await
                .unwrap()
                .as_ref(),
            Some(existing)
        );
    }
    assert_eq!(messages(store, "hh").await, ["disarm failed"]);
    // Without an audit line.
    let bare = record("req-r", "hh", t0());
    store.put_outbox(&bare, None).await.unwrap();
    assert_eq!(store.outbox_record("req-r").await.unwrap(), Some(bare));
    assert_eq!(messages(store, "hh").await, ["disarm failed"]);
}

async fn lease_is_exclusive_until_released_or_expired(store: &dyn Store) {
    let until = t0() + Duration::seconds(60);
    assert!(store.acquire_lease("pass", "a", t0(), until).await.unwrap());
    // Held: nobody else gets it, up to and including its last instant.
    for now in [t0(), until - Duration::nanoseconds(1), until] {
        assert!(
            !store
                .acquire_lease("pass", "b", now, now + Duration::seconds(60))
                .await
                .unwrap(),
            "{now}"
        );
    }
    // Other names are independent; the holder may extend its own.
    assert!(
        store
            .acquire_lease("other", "b", t0(), until)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease("pass", "a", t0(), until + Duration::seconds(30))
            .await
            .unwrap()
    );
    assert!(
        !store
            .acquire_lease("pass", "b", until, until)
            .await
            .unwrap()
    );

    // Released by its holder only.
    store.release_lease("pass", "b").await.unwrap();
    assert!(!store.acquire_lease("pass", "b", t0(), until).await.unwrap());
    store.release_lease("pass", "a").await.unwrap();
    assert!(store.acquire_lease("pass", "b", t0(), until).await.unwrap());

    // Expired: a crashed holder's lease is taken over once it has ended.
    let after = until + Duration::nanoseconds(1);
    assert!(
        !store
            .acquire_lease("pass", "c", until, after)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease("pass", "c", after, after + Duration::seconds(5))
            .await
            .unwrap()
    );
    // The old holder's late release doesn't free the new holder's lease.
    store.release_lease("pass", "b").await.unwrap();
    assert!(
        !store
            .acquire_lease("pass", "d", after, after)
            .await
            .unwrap()
    );
}

async fn concurrent_lease_takers_exactly_one_wins(store: &dyn Store) {
    let until = t0() + Duration::seconds(60);
    let owners: Vec<String> = (0..8).map(|i| format!("owner-{i}")).collect();
    let takes = futures::future::join_all(
        owners
            .iter()
            .map(|o| store.acquire_lease("pass", o, t0(), until)),
    )
    .await;
    let won: Vec<&String> = owners
        .iter()
        .zip(&takes)
        .filter(|(_, t)| *t.as_ref().unwrap())
        .map(|(o, _)| o)
        .collect();
    assert_eq!(won.len(), 1, "{takes:?}");
}

async fn throttle_checks_keep_the_version_and_fail_after_a_change(store: &dyn Store) {
    // On a household never written (version 0), then on one at version 1.
    for (version, label) in [(0, "fresh"), (1, "written")] {
        let hh = format!("hh-{label}");
        if version == 1 {
            store
                .record_attempt(&hh, ThrottleWrite::Set(&throttle(0, 2)), None, &[])
                .await
                .unwrap();
        }
        let before = store.household(&hh).await.unwrap().throttle;
        // Checks of the same version keep succeeding, each with its record: none bumps it.
        // (Real DynamoDB may still refuse two overlapping transactions on one item with
        // TransactionConflict, a Conflict the caller retries; what matters is that a check
        // never invalidates the next one.)
        for i in 0..6 {
            let r = record(&format!("req-{label}-{i}"), &hh, t0());
            store
                .record_attempt(&hh, ThrottleWrite::Check(version), Some(&r), &[])
                .await
                .unwrap();
        }
        assert_eq!(
            store.household(&hh).await.unwrap().throttle,
            before,
            "{label}"
        );
        assert_eq!(
            due_ids(store, t0(), 100)
                .await
                .iter()
                .filter(|id| id.contains(label))
                .count(),
            6
        );
        // Once the state changed, a check of the old version conflicts and writes nothing.
        let mut next = before.clone();
        next.consecutive_failures += 1;
        store
            .record_attempt(&hh, ThrottleWrite::Set(&next), None, &[])
            .await
            .unwrap();
        let late = record(&format!("req-{label}-late"), &hh, t0());
        assert_eq!(
            store
                .record_attempt(
                    &hh,
                    ThrottleWrite::Check(version),
                    Some(&late),
                    &[entry(t0(), "late")]
                )
                .await,
            Err(StoreError::Conflict)
        );
        assert_eq!(store.outbox_record(&late.request_id).await.unwrap(), None);
        assert!(messages(store, &hh).await.is_empty());
    }
}

// ---- the outbox lanes ----

fn retry_at(attempts: u32, at: DateTime<Utc>) -> Settlement {
    Settlement::Retry {
        attempts,
        next_attempt_at: at,
        receiver_acked: false,
    }
}

async fn first_failures_count_up_to_the_quota_then_wait_and_move_up_oldest_first(
    store: &dyn Store,
) {
    // Four attempts of one household, created a second apart, each failing once.
    for i in 0..4 {
        let rec = OutboxRecord {
            created_at: t0() + Duration::seconds(i),
            ..record(&format!("req-{i}"), "hh", t0())
        };
        insert_outbox(store, &rec).await;
    }
    // Another household's, in whatever shard it falls.
    insert_outbox(store, &record("req-other", "hh-other", t0())).await;
    for id in ["req-2", "req-0", "req-3", "req-1", "req-other"] {
        store
            .settle_outbox(id, &retry_at(1, t0()), None)
            .await
            .unwrap();
    }
    let lane = |r: Option<OutboxRecord>| {
        let r = r.unwrap();
        (r.lane, r.counted, r.attempts)
    };
    // The quota is 2: the first two to fail are counted, the others wait. Nothing is dropped.
    for (id, expected) in [
        ("req-2", (Lane::Due, true, 1)),
        ("req-0", (Lane::Due, true, 1)),
        ("req-3", (Lane::Waiting, false, 1)),
        ("req-1", (Lane::Waiting, false, 1)),
        ("req-other", (Lane::Due, true, 1)),
    ] {
        assert_eq!(
            lane(store.outbox_record(id).await.unwrap()),
            expected,
            "{id}"
        );
    }
    assert_eq!(
        due_ids(store, t0(), 10).await,
        ["req-0", "req-2", "req-other"]
    );
    assert_eq!(
        counts(store).await,
        OutboxCounts {
            due: 3,
            waiting: 2,
            gone: 0,
            held: 0,
            capped: false
        }
    );
    // A counted record delivered: the household's oldest waiting one (req-1, created before
    // req-3) takes its place, counted.
    store
        .settle_outbox("req-2", &Settlement::Delivered, None)
        .await
        .unwrap();
    assert_eq!(
        lane(store.outbox_record("req-1").await.unwrap()),
        (Lane::Due, true, 1)
    );
    assert_eq!(
        due_ids(store, t0(), 10).await,
        ["req-0", "req-1", "req-other"]
    );
    // A waiting record retried keeps its place; a counted one retried stays counted.
    store
        .settle_outbox("req-0", &retry_at(2, t0()), None)
        .await
        .unwrap();
    assert_eq!(
        lane(store.outbox_record("req-0").await.unwrap()),
        (Lane::Due, true, 2)
    );
    // Both counted ones delivered: req-3 moves up, then nothing is left waiting.
    for id in ["req-0", "req-1"] {
        store
            .settle_outbox(id, &Settlement::Delivered, None)
            .await
            .unwrap();
    }
    assert_eq!(due_ids(store, t0(), 10).await, ["req-3", "req-other"]);
    assert_eq!(counts(store).await.waiting, 0);
    // Nothing was waiting to move up: promoting finds nothing.
    for shard in 0..store.outbox_policy().shards {
        assert_eq!(store.promote_waiting(shard, 10).await.unwrap(), 0);
    }
}

async fn a_pass_takes_at_most_its_share_of_one_household(store: &dyn Store) {
    let policy = store.outbox_policy();
    let shard = policy.shard_of("big");
    let small = (0..1000)
        .map(|i| format!("small-{i}"))
        .find(|h| policy.shard_of(h) == shard)
        .unwrap();
    // Five records of one household, all due before the other household's one.
    for i in 0..5 {
        insert_outbox(store, &record(&format!("big-{i}"), "big", t0())).await;
    }
    insert_outbox(store, &record("small", &small, t0() + Duration::seconds(1))).await;
    let now = t0() + Duration::seconds(1);
    let due = store
        .outbox_due(Lane::Due, shard, now, 10, 2)
        .await
        .unwrap();
    let ids: Vec<&str> = due.records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["big-0", "big-1", "small"]);
    // With a limit of 3, the other household still gets in: the passed-over records of the
    // first don't take the places.
    let due = store.outbox_due(Lane::Due, shard, now, 3, 2).await.unwrap();
    assert_eq!(due.records.len(), 3);
    assert_eq!(due.records[2].request_id, "small");
    // Another shard holds none of them.
    let other = (shard + 1) % policy.shards;
    assert!(
        store
            .outbox_due(Lane::Due, other, now, 10, 2)
            .await
            .unwrap()
            .records
            .is_empty()
    );
}

async fn a_record_whose_panel_left_goes_to_its_own_lane_and_count(store: &dyn Store) {
    for id in ["req-a", "req-b", "req-c"] {
        insert_outbox(store, &record(id, "hh", t0())).await;
        store
            .settle_outbox(id, &retry_at(1, t0()), None)
            .await
            .unwrap();
    }
    // a and b are counted (quota 2), c waits. a's panel left the account: it moves to the gone
    // lane, uncounted, and c moves up in its place.
    let later = t0() + Duration::hours(1);
    store
        .settle_outbox(
            "req-a",
            &Settlement::Gone {
                attempts: 2,
                next_attempt_at: later,
            },
            None,
        )
        .await
        .unwrap();
    let a = store.outbox_record("req-a").await.unwrap().unwrap();
    assert_eq!(
        (a.status, a.lane, a.counted, a.attempts, a.next_attempt_at),
        (OutboxStatus::Pending, Lane::Gone, false, 2, later)
    );
    assert_eq!(due_ids(store, later, 10).await, ["req-b", "req-c"]);
    assert_eq!(
        counts(store).await,
        OutboxCounts {
            due: 2,
            waiting: 0,
            gone: 1,
            held: 0,
            capped: false
        }
    );
    let shard = store.outbox_policy().shard_of("hh");
    let gone_due = |at| store.outbox_due(Lane::Gone, shard, at, 10, 10);
    assert!(gone_due(t0()).await.unwrap().records.is_empty());
    assert_eq!(gone_due(later).await.unwrap().records, vec![a.clone()]);
    // Retried on its own lane, then delivered: it leaves every count.
    store
        .settle_outbox(
            "req-a",
            &Settlement::Gone {
                attempts: 3,
                next_attempt_at: later,
            },
            None,
        )
        .await
        .unwrap();
    store
        .settle_outbox("req-a", &Settlement::Delivered, None)
        .await
        .unwrap();
    assert_eq!(counts(store).await.gone, 0);
    assert!(gone_due(later).await.unwrap().records.is_empty());
}

async fn confirmed_panels_are_read_with_the_household_and_forgotten(store: &dyn Store) {
    assert!(store.household("hh").await.unwrap().panels_seen.is_empty());
    store
        .confirm_panels("hh", &[id_only("home"), id_only("cabin")], t0())
        .await
        .unwrap();
    let later = t0() + Duration::minutes(5);
    store
        .confirm_panels("hh", &[id_only("home")], later)
        .await
        .unwrap();
    store.save_profile("hh", &profile()).await.unwrap();
    let snapshot = store.household("hh").await.unwrap();
    assert_eq!(
        snapshot.panels_seen.into_iter().collect::<Vec<_>>(),
        [("cabin".to_string(), t0()), ("home".to_string(), later)]
    );
    assert_eq!(snapshot.profile.members, profile().members);
    // Another household sees none of them.
    assert!(
        store
            .household("hh-2")
            .await
            .unwrap()
            .panels_seen
            .is_empty()
    );
    store.forget_panel("hh", "home").await.unwrap();
    store.forget_panel("hh", "never-seen").await.unwrap();
    let seen: Vec<String> = store
        .household("hh")
        .await
        .unwrap()
        .panels_seen
        .into_keys()
        .collect();
    assert_eq!(seen, ["cabin"]);
}

fn id_only(panel: &str) -> ConfirmedPanel {
    ConfirmedPanel::id_only(panel)
}

fn link(account: &str) -> MonitoringLink {
    MonitoringLink {
        receiver: "center.example:9002".into(),
        account: account.into(),
        line: "2".into(),
        receiver_number: Some("1".into()),
        key_ref: Some("dc09/center".into()),
    }
}

fn reported(panel: &str, monitoring: Option<MonitoringLink>) -> ConfirmedPanel {
    ConfirmedPanel {
        id: panel.into(),
        monitoring: Some(monitoring),
    }
}

/// The link the cloud reported with a panel is read with the household, per panel; a
/// confirmation that says nothing of it keeps it; one that reports none drops it, and so does
/// forgetting the panel.
async fn monitoring_links_come_and_go_with_the_confirmations(store: &dyn Store) {
    let links = |s: HouseholdSnapshot| s.monitoring.into_iter().collect::<Vec<_>>();
    store
        .confirm_panels(
            "hh",
            &[
                reported("home", Some(link("1234"))),
                reported("cabin", None),
            ],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(
        links(store.household("hh").await.unwrap()),
        [("home".to_string(), link("1234"))]
    );
    assert!(store.household("hh-2").await.unwrap().monitoring.is_empty());
    let later = t0() + Duration::minutes(5);
    store
        .confirm_panels("hh", &[id_only("home")], later)
        .await
        .unwrap();
    let snapshot = store.household("hh").await.unwrap();
    assert_eq!(snapshot.panels_seen.get("home"), Some(&later));
    assert_eq!(links(snapshot), [("home".to_string(), link("1234"))]);
    store
        .confirm_panels(
            "hh",
            &[
                reported("home", Some(link("ABCD"))),
                reported("cabin", Some(link("1235"))),
            ],
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        links(store.household("hh").await.unwrap()),
        [
            ("cabin".to_string(), link("1235")),
            ("home".to_string(), link("ABCD"))
        ]
    );
    store
        .confirm_panels("hh", &[reported("home", None)], later)
        .await
        .unwrap();
    store.forget_panel("hh", "cabin").await.unwrap();
    assert!(store.household("hh").await.unwrap().monitoring.is_empty());
}

/// Whether the center ACKed the second path's event is written with a retry, in every lane,
/// and a later retry that did not reach the center leaves it set.
async fn the_centers_ack_is_kept_with_a_retry(store: &dyn Store) {
    let acked = |attempts| Settlement::Retry {
        attempts,
        next_attempt_at: t0(),
        receiver_acked: true,
    };
    let rec = record("req-ack", "hh", t0());
    store.put_outbox(&rec, None).await.unwrap();
    let read_acked = || async {
        let read = store.outbox_record("req-ack").await.unwrap();
        read.map(|r| r.receiver_acked)
    };
    assert_eq!(read_acked().await, Some(false));
    store
        .settle_outbox("req-ack", &acked(1), None)
        .await
        .unwrap();
    assert_eq!(read_acked().await, Some(true));
    store
        .settle_outbox("req-ack", &retry_at(2, t0()), None)
        .await
        .unwrap();
    let read = store.outbox_record("req-ack").await.unwrap().unwrap();
    assert_eq!((read.attempts, read.receiver_acked), (2, true));
    // Read back from the queue as well: what the worker sees.
    let read = due(store, t0() + Duration::hours(1), 10).await;
    assert!(
        read.iter()
            .any(|r| r.request_id == "req-ack" && r.receiver_acked)
    );
}

/// The worker settles a record as it read it from the index (no second read): if the record
/// was settled, counted or moved to another lane since, settling the stale copy is a conflict
/// and changes nothing, on every store (the embedded one used to settle it anyway).
async fn a_stale_read_settles_nothing(store: &dyn Store) {
    let later = t0() + Duration::minutes(1);
    let attempt = |r: Option<OutboxRecord>| {
        let r = r.unwrap();
        (r.status, r.lane, r.counted, r.attempts, r.next_attempt_at)
    };
    insert_outbox(store, &record("req-a", "hh", t0())).await;
    insert_outbox(store, &record("req-b", "hh", t0())).await;
    let stale = due(store, t0(), 10).await;
    assert_eq!(stale.len(), 2);
    // req-a failed once elsewhere (now counted), req-b's panel left the account (gone lane).
    store
        .settle_outbox("req-a", &retry_at(1, t0()), None)
        .await
        .unwrap();
    let gone = Settlement::Gone {
        attempts: 1,
        next_attempt_at: later,
    };
    store.settle_outbox("req-b", &gone, None).await.unwrap();
    let before = (
        attempt(store.outbox_record("req-a").await.unwrap()),
        attempt(store.outbox_record("req-b").await.unwrap()),
    );
    assert_eq!(before.0, (OutboxStatus::Pending, Lane::Due, true, 1, t0()));
    assert_eq!(
        before.1,
        (OutboxStatus::Pending, Lane::Gone, false, 1, later)
    );
    for rec in &stale {
        for settlement in [Settlement::Delivered, retry_at(2, later)] {
            assert!(
                matches!(
                    store.settle_outbox_read(rec, &settlement).await,
                    Err(StoreError::Conflict)
                ),
                "{} settled from a stale read: {settlement:?}",
                rec.request_id
            );
        }
    }
    let after = (
        attempt(store.outbox_record("req-a").await.unwrap()),
        attempt(store.outbox_record("req-b").await.unwrap()),
    );
    assert_eq!(after, before);
    assert_eq!(
        counts(store).await,
        OutboxCounts {
            due: 1,
            waiting: 0,
            gone: 1,
            held: 0,
            capped: false
        }
    );
    // Read again, the same settlement goes through: the quota slot is freed with it.
    let fresh = due(store, t0(), 10).await;
    assert_eq!(fresh.len(), 1);
    store
        .settle_outbox_read(&fresh[0], &Settlement::Delivered)
        .await
        .unwrap();
    assert_eq!(
        attempt(store.outbox_record("req-a").await.unwrap()).0,
        OutboxStatus::Delivered
    );
    assert_eq!(counts(store).await.due, 0);
}

/// Holds `id` for `household` with the throttle as stored (a right code: nothing to change).
async fn hold(store: &dyn Store, id: &str, household: &str, message: &str) -> bool {
    let version = store.household(household).await.unwrap().throttle.version;
    store
        .hold_attempt(
            household,
            ThrottleWrite::Check(version),
            &record(id, household, t0()),
            &[entry(t0(), message)],
        )
        .await
        .unwrap()
}

async fn held(store: &dyn Store, household: &str, now: DateTime<Utc>) -> Vec<String> {
    let shard = store.outbox_policy().shard_of(household);
    let mut ids: Vec<String> = store
        .outbox_due(Lane::Held, shard, now, 1000, 1000)
        .await
        .unwrap()
        .records
        .into_iter()
        .filter(|r| r.household == household)
        .map(|r| r.request_id)
        .collect();
    ids.sort();
    ids
}

async fn held_attempts_are_capped_per_household_and_leave_the_lane_when_settled(store: &dyn Store) {
    let cap = usize::try_from(HELD_PER_HOUSEHOLD).unwrap();
    for i in 0..cap {
        assert!(
            hold(store, &format!("req-{i:02}"), "hh", "held").await,
            "{i}"
        );
    }
    // Held, whatever lane the record named: pending, uncounted, never in the due queue.
    let r = store.outbox_record("req-00").await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.lane, r.counted),
        (OutboxStatus::Pending, Lane::Held, false)
    );
    assert!(due_ids(store, t0(), 100).await.is_empty());
    assert_eq!(held(store, "hh", t0()).await.len(), cap);
    // Past the cap: the decision (throttle, audit) is written, the record is not.
    let snapshot = store.household("hh").await.unwrap();
    let next = Throttle {
        version: snapshot.throttle.version,
        consecutive_failures: 1,
        locked_until: None,
        hard_locked: false,
    };
    let kept = store
        .hold_attempt(
            "hh",
            ThrottleWrite::Set(&next),
            &record("req-over", "hh", t0()),
            &[entry(t0(), "over the cap")],
        )
        .await
        .unwrap();
    assert!(!kept);
    assert!(store.outbox_record("req-over").await.unwrap().is_none());
    let after = store.household("hh").await.unwrap().throttle;
    assert_eq!(
        (after.version, after.consecutive_failures),
        (snapshot.throttle.version + 1, 1)
    );
    assert_eq!(messages(store, "hh").await[0], "over the cap");
    // Another household's places are its own.
    assert!(hold(store, "req-other", "other", "held").await);
    assert_eq!(counts(store).await.held, cap + 1);

    // Retried: still held, due later.
    let later = t0() + Duration::minutes(5);
    store
        .settle_outbox("req-00", &retry_at(1, later), None)
        .await
        .unwrap();
    let r = store.outbox_record("req-00").await.unwrap().unwrap();
    assert_eq!((r.lane, r.attempts), (Lane::Held, 1));
    assert!(
        !held(store, "hh", t0())
            .await
            .contains(&"req-00".to_string())
    );
    assert!(
        held(store, "hh", later)
            .await
            .contains(&"req-00".to_string())
    );
    // Dropped (the panel is not the account's), with its audit line: out of every count and
    // index, and its place is free again.
    let dropped = entry(later, "not sent");
    store
        .settle_outbox("req-01", &Settlement::Dropped, Some(("hh", &dropped)))
        .await
        .unwrap();
    let r = store.outbox_record("req-01").await.unwrap().unwrap();
    assert_eq!(r.status, OutboxStatus::Dropped);
    assert_eq!(messages(store, "hh").await[0], "not sent");
    assert!(
        !held(store, "hh", later)
            .await
            .contains(&"req-01".to_string())
    );
    assert!(hold(store, "req-new", "hh", "held").await);
    assert!(!hold(store, "req-new2", "hh", "held").await);
    // Delivered (the cloud confirmed the panel): a place is freed too.
    store
        .settle_outbox("req-02", &Settlement::Delivered, None)
        .await
        .unwrap();
    assert!(hold(store, "req-new3", "hh", "held").await);
    assert_eq!(counts(store).await.held, cap + 1);
    // Only a held record can be dropped.
    insert_outbox(store, &record("req-due", "hh", t0())).await;
    assert_eq!(
        store
            .settle_outbox("req-due", &Settlement::Dropped, None)
            .await,
        Err(StoreError::Conflict)
    );
    assert_eq!(
        store
            .outbox_record("req-due")
            .await
            .unwrap()
            .unwrap()
            .status,
        OutboxStatus::Pending
    );
}

async fn racing_held_attempts_never_pass_the_cap(store: &dyn Store) {
    let cap = usize::try_from(HELD_PER_HOUSEHOLD).unwrap();
    let mut kept = 0;
    // Waves of racing attempts: a lost race is a Conflict (the directive re-reads and tries
    // again), never a place past the cap.
    for wave in 0..4 {
        let attempts: Vec<_> = (0..cap / 2)
            .map(|i| async move {
                let id = format!("req-{wave}-{i:02}");
                store
                    .hold_attempt("hh", ThrottleWrite::Check(0), &record(&id, "hh", t0()), &[])
                    .await
            })
            .collect();
        for r in futures_util::future::join_all(attempts).await {
            match r {
                Ok(true) => kept += 1,
                Ok(false) | Err(StoreError::Conflict) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(kept > 0 && kept <= cap, "{kept}");
    assert_eq!(counts(store).await.held, kept);
    assert_eq!(held(store, "hh", t0()).await.len(), kept);
    // Sequentially, the rest of the places fill and no more.
    for i in 0..2 * cap {
        hold(store, &format!("req-seq-{i:02}"), "hh", "held").await;
    }
    assert_eq!(counts(store).await.held, cap);
}

/// The re-delivery worker's breaker (crate::domain::redelivery, "Breaker"): one item per panel cloud,
/// closed until saved, guarded by its version like a profile.
async fn breaker_reads_closed_until_saved_and_a_stale_save_changes_nothing(store: &dyn Store) {
    let closed = store.breaker("https://cloud-a.example").await.unwrap();
    assert_eq!(closed, Breaker::default());
    assert!(!closed.open);
    let open = Breaker {
        open: true,
        failures: 3,
        probe_at: t0() + Duration::seconds(5),
        since: t0(),
        version: 0,
    };
    assert_eq!(
        store
            .save_breaker("https://cloud-a.example", &open)
            .await
            .unwrap(),
        1
    );
    let read = store.breaker("https://cloud-a.example").await.unwrap();
    assert_eq!(
        read,
        Breaker {
            version: 1,
            ..open.clone()
        }
    );
    // Another cloud has its own.
    assert_eq!(
        store.breaker("https://cloud-b.example").await.unwrap(),
        Breaker::default()
    );
    // A save at a version another worker already moved past changes nothing.
    let stale = Breaker {
        open: false,
        ..open.clone()
    };
    assert_conflict(store.save_breaker("https://cloud-a.example", &stale).await);
    assert_eq!(
        store.breaker("https://cloud-a.example").await.unwrap(),
        read
    );
    let closed_again = Breaker {
        open: false,
        failures: 0,
        since: t0() + Duration::seconds(7),
        ..read
    };
    assert_eq!(
        store
            .save_breaker("https://cloud-a.example", &closed_again)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.breaker("https://cloud-a.example").await.unwrap(),
        Breaker {
            version: 2,
            ..closed_again
        }
    );
}

/// Workers claim the interval's probe by saving the breaker at the version they read: of many
/// at once, one sends the probe.
async fn concurrent_probe_claims_exactly_one_wins(store: &dyn Store) {
    let open = Breaker {
        open: true,
        failures: 3,
        probe_at: t0(),
        since: t0(),
        version: 0,
    };
    let v = store.save_breaker("cloud", &open).await.unwrap();
    let read = store.breaker("cloud").await.unwrap();
    assert_eq!(read.version, v);
    let claim = Breaker {
        probe_at: t0() + Duration::seconds(5),
        ..read
    };
    let claims =
        futures::future::join_all((0..8).map(|_| store.save_breaker("cloud", &claim))).await;
    let won = claims.iter().filter(|c| c.is_ok()).count();
    assert_eq!(won, 1, "{claims:?}");
    assert!(
        claims
            .iter()
            .all(|c| c.is_ok() || *c == Err(StoreError::Conflict)),
        "{claims:?}"
    );
    assert_eq!(
        store.breaker("cloud").await.unwrap().probe_at,
        t0() + Duration::seconds(5)
    );
}
