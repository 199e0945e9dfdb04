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
/// only from the environment.
///
/// `endpoint` overrides the endpoint of **every** client built from this configuration. It is
/// meant for local stacks that point the functions at local engines (`DYNAMODB_ENDPOINT`);
/// there, credentials still come from the environment, so export dummy `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (DynamoDB Local accepts any).
pub async fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
