//! Clients and the table: retries and timeouts, local engines, and the table as the SAM template
//! creates it.

use super::*;

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
/// own deadline on top (crate::domain::skill).
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

/// The configuration of [`local_client`], for clients that add to it.
pub fn local_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
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
