//! AWS SDK configuration for the Lambda binaries.
//!
//! Lambda hands every function its region (`AWS_REGION`) and its role's credentials
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) as environment variables,
//! and refreshes them by starting new sandboxes. So the configuration reads exactly those and
//! nothing else. The SDK's default chains would, when a variable is missing, go on to profile
//! files, SSO, the ECS container endpoint and IMDS: network probes that cost cold-start time,
//! can hang until a timeout, and on a developer's machine could pick up unrelated real
//! credentials. With the environment as the only source, a misconfiguration fails fast and
//! visibly instead.

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::{BehaviorVersion, SdkConfig};

/// Shared SDK configuration: region from `AWS_REGION` (or `AWS_DEFAULT_REGION`), credentials
/// only from the environment. Endpoint overrides (local engines) belong on the one client that
/// needs them, e.g. [`dynamodb_client`], never here: they would redirect every client.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .load()
        .await
}

/// The DynamoDB client, optionally at a local engine's `endpoint` (`DYNAMODB_ENDPOINT`; there,
/// export dummy `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`: DynamoDB Local accepts any).
pub fn dynamodb_client(sdk: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    use crate::adapters::store::dynamodb::{AttemptTimeout, tune};
    let attempt = match endpoint {
        Some(_) => AttemptTimeout::LOCAL_ENGINE,
        None => AttemptTimeout::DYNAMODB,
    };
    let mut builder = tune(aws_sdk_dynamodb::config::Builder::from(sdk), attempt);
    if let Some(e) = endpoint {
        builder = builder.endpoint_url(e);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}
