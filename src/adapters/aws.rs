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
//!
//! Built from `aws-types` directly rather than with `aws-config`'s loader: with every provider
//! but the environment's turned off, the loader only added crates to build (the STS client among
//! them: about a minute of the release build's CPU on 2 cores) and to every cold start. The
//! clients fill in the rest (HTTP client, sleep, retries, identity cache) from their defaults.

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_types::SdkConfig;
use aws_types::region::Region;

/// Shared SDK configuration: region from `AWS_REGION` (or `AWS_DEFAULT_REGION`), credentials
/// only from the environment. Endpoint overrides (local engines) belong on the one client that
/// needs them, e.g. [`dynamodb_client`], never here: they would redirect every client.
pub fn sdk_config() -> SdkConfig {
    let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|name| non_empty(name))
        .map(Region::new);
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(SharedCredentialsProvider::new(EnvironmentCredentials))
        .build()
}

/// The role's credentials as Lambda sets them, read when a client first needs them (so a
/// missing variable is a clear error on the first call, not a panic at start-up).
#[derive(Debug)]
struct EnvironmentCredentials;

impl ProvideCredentials for EnvironmentCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(environment_credentials())
    }
}

fn environment_credentials() -> Result<Credentials, CredentialsError> {
    let (Some(key), Some(secret)) = (
        non_empty("AWS_ACCESS_KEY_ID"),
        non_empty("AWS_SECRET_ACCESS_KEY"),
    ) else {
        return Err(CredentialsError::not_loaded(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set",
        ));
    };
    Ok(Credentials::new(
        key,
        secret,
        non_empty("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

fn non_empty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A service's endpoint as the SDKs' own variable names it (`AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER`: VPC or FIPS endpoints, a local fake), as aws-config's
/// loader honoured it. Only the service's own variable: a global `AWS_ENDPOINT_URL` would send
/// every client to one place.
pub fn configured_endpoint(service: &str) -> Option<String> {
    non_empty(&format!("AWS_ENDPOINT_URL_{service}"))
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
    if let Some(e) = endpoint
        .map(str::to_string)
        .or_else(|| configured_endpoint("DYNAMODB"))
    {
        builder = builder.endpoint_url(e);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}
