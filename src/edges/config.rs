//! Configuration of the deployed functions, read once from the environment at cold start.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TABLE_NAME` | DynamoDB table | required |
//! | `DYNAMODB_ENDPOINT` | DynamoDB endpoint override (local engines) | AWS |
//! | `PANEL_API_URL` | base URL of the vendor's panel cloud API | required |
//! | `MANUFACTURER_NAME` | `manufacturerName` shown in the Alexa app | `Alarm Skill` |
//! | `ALEXA_REGION` | `NA`, `EU` or `FE`: the event gateway for this deployment | from `AWS_REGION` |
//! | `EVENT_GATEWAY_URL` | event gateway override | the region's gateway |
//! | `LWA_TOKEN_URL` | Login with Amazon token endpoint | `https://api.amazon.com/auth/o2/token` |
//! | `LWA_CLIENT_ID` | the skill's messaging client id (Permissions page) | required |
//! | `OAUTH_ISSUER` | account-linking issuer (`iss`) | required |
//! | `OAUTH_JWKS_URL` | its JWKS | `{OAUTH_ISSUER}/.well-known/jwks.json` |
//! | `OAUTH_ISSUER_KIND` | `cognito` or `oidc` (Auth0, Keycloak, ...): how tokens name their audience and admins, below | `cognito` |
//! | `OAUTH_AUDIENCE` | comma-separated audiences of **directive** tokens: Alexa's account-linking client | required |
//! | `OAUTH_MANAGEMENT_AUDIENCE` | comma-separated audiences of **management API** tokens | `OAUTH_AUDIENCE` |
//! | `OAUTH_DIRECTIVE_SCOPE` | scope a directive token must carry | `alarm/control` |
//! | `OAUTH_MANAGEMENT_SCOPE` | scope a management token must carry, when set | none |
//! | `OAUTH_TOKEN_USE` | required `token_use` claim, empty to skip | `access` for `cognito`, none for `oidc` |
//! | `OAUTH_ACCOUNT_CLAIM` | claim naming the household account | `sub` |
//! | `OAUTH_ADMIN_CLAIM` | claim marking a household admin; a leading `/` makes it a JSON pointer (`/realm_access/roles`) | `cognito:groups` for `cognito`; **required** for `oidc` |
//! | `OAUTH_ADMIN_GROUP` | value the admin claim must hold: an element of an array claim, the whole of a string claim, or `true` for a boolean claim | `household-admin` |
//! | `GOOGLE_TOKEN_URL` | token URL the Google service account's assertion is exchanged at (http-api, with the key below) | the key file's `token_uri` |
//! | `HOMEGRAPH_URL` | base URL of Google's HomeGraph API (http-api, with the key below) | `https://homegraph.googleapis.com` |
//! | `OUTBOX_SHARDS` | shards of the pending outbox index, 1–256; the same for every function, and only ever raised (docs/dynamodb.md) | `8` |
//! | `OUTBOX_HOUSEHOLD_QUOTA` | a household's failed records in its shard's queue at most, 1–1000; past it they wait in its own queue | `8` |
//! | `PEPPER_MAX_AGE_S` | a warm function re-reads the pepper secret once its loaded keyring is this old, 1–3600 s, so it adopts a new current pepper without a recycle (docs/deploy.md, "Pepper rotation"); never more often than every 30 s | `300` |
//! | `STEP_UP_MAX_AGE_S` | the management API's recent sign-in for weakening changes, 60–86400 s | `600` |
//! | `CODE_DELETIONS_PER_DAY` | removals of codes and members in any rolling 24 hours, 1–100 | `5` |
//! | `OUTBOX_V2_SEALS_BEFORE` | RFC 3339 time: outbox seals of the former format (v2, bound to the request id only) open only for records written before it; set it to when the deployment moved to v3 if records from before may still be pending (crate::domain::redelivery::seal) | none: no v2 seal opens |
//!
//! The local stack (`alarm-skill serve`) reads the settings that mean something there from its
//! own environment, by the same rules ([`LocalSettings`]): `MANUFACTURER_NAME`,
//! `OUTBOX_SHARDS`, `OUTBOX_HOUSEHOLD_QUOTA`, `STEP_UP_MAX_AGE_S` and `CODE_DELETIONS_PER_DAY`.
//! The others have no local meaning: the stack's own fakes stand in for the issuer, Login with
//! Amazon, the gateways and the panel cloud; its keyring never changes while it runs; and it
//! never wrote a v2 seal.
//!
//! The issuer kinds (only the configured issuer's tokens are accepted, and only by its rules):
//!
//! | | audience taken from | admin |
//! |---|---|---|
//! | `cognito` | `client_id` (Cognito access tokens carry no `aud`) | `OAUTH_ADMIN_GROUP` in `cognito:groups` (the user pool group) |
//! | `oidc` | `aud`, a string or an array (`client_id` is ignored) | the named claim `OAUTH_ADMIN_CLAIM`, e.g. an Auth0 Action's `https://alarm.example.com/roles` or Keycloak's `/realm_access/roles` |
//!
//! Directive and management tokens are told apart by construction: a directive token needs an
//! `OAUTH_AUDIENCE` audience and the directive scope; a management token needs an
//! `OAUTH_MANAGEMENT_AUDIENCE` audience, must **not** carry the directive scope, and must carry
//! `OAUTH_MANAGEMENT_SCOPE` when that is set. So no token drives both, whatever the audiences
//! (Cognito: two app clients; Auth0: one API, told apart by scope). The scope is read from
//! `scope` (space-separated, or an array) or `scp`.
//!
//! Secrets, each read once per cold start: the `…_ARN` variable names a Secrets Manager secret
//! (production); without it, the plain variable holds the value itself (local runs only).
//!
//! | secret | Secrets Manager | plain value |
//! |---|---|---|
//! | pepper keyring `{"current":"p1","peppers":{"p1":"<base64, ≥32 bytes>"}}` | `PEPPER_SECRET_ARN` | `PEPPER` |
//! | Login with Amazon client secret (skill messaging) | `LWA_CLIENT_SECRET_ARN` | `LWA_CLIENT_SECRET` |
//! | panel webhook HMAC secret | `WEBHOOK_SECRET_ARN` | `WEBHOOK_SECRET` |
//! | panel cloud API key | `PANEL_API_KEY_SECRET_ARN` | `PANEL_API_KEY` |
//! | Google service-account key file (JSON), **optional**: without it the http-api function neither sends Report State nor promises it (`willReportState: false`) | `GOOGLE_SERVICE_ACCOUNT_SECRET_ARN` | `GOOGLE_SERVICE_ACCOUNT` |

use std::time::Duration;

use crate::common::secret::Secret;
use crate::domain::ports::store::OutboxPolicy;

// The settings each adapter reads are defined beside it; they are re-exported here so the
// configuration reads as one place.
pub use crate::adapters::account_link::issuer::{
    COGNITO_GROUPS_CLAIM, DEFAULT_ADMIN_GROUP, DEFAULT_DIRECTIVE_SCOPE, IssuerKind,
    JWKS_MIN_REFETCH, OAuthConfig,
};
pub use crate::adapters::lwa::AlexaRegion;
pub use crate::adapters::secrets::{SecretRef, SecretRefs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub dynamodb_endpoint: Option<String>,
    pub panel_api_url: String,
    pub manufacturer_name: String,
    pub alexa_region: AlexaRegion,
    pub event_gateway_url: String,
    pub lwa_token_url: String,
    pub lwa_client_id: String,
    pub oauth: OAuthConfig,
    /// Overrides the service-account key file's `token_uri`.
    pub google_token_url: Option<String>,
    pub homegraph_url: String,
    pub outbox: OutboxPolicy,
    pub secrets: SecretRefs,
    /// `STEP_UP_MAX_AGE_S` (60-86400, default 600) and `CODE_DELETIONS_PER_DAY` (1-100,
    /// default 5): the management API's step-up for code changes.
    pub step_up: crate::domain::voice_codes::enrol::StepUp,
    /// `PEPPER_MAX_AGE_S`: the age past which a warm function re-reads the pepper keyring.
    pub pepper_max_age: Duration,
    /// `OUTBOX_V2_SEALS_BEFORE`: which outbox seals of the former format still open.
    pub outbox_v2_seals: crate::domain::redelivery::seal::V2Cutoff,
}

/// The settings of the functions that mean something on a developer's machine too: the local
/// stack takes them from its environment, with the names, bounds and defaults of [`Config`],
/// so an operator can try their values locally. `None` leaves the stack's own default (the demo's
/// manufacturer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    pub manufacturer_name: Option<String>,
    pub outbox: OutboxPolicy,
    pub step_up: crate::domain::voice_codes::enrol::StepUp,
}

impl LocalSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// `env` looks a variable up; empty values count as unset.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = trimmed(&env);
        Ok(LocalSettings {
            manufacturer_name: get("MANUFACTURER_NAME"),
            outbox: outbox_policy(&get)?,
            step_up: step_up(&get)?,
        })
    }
}

/// `env`'s values trimmed, empty ones as unset.
fn trimmed(env: &impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

/// `STEP_UP_MAX_AGE_S` and `CODE_DELETIONS_PER_DAY` over the defaults.
fn step_up(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<crate::domain::voice_codes::enrol::StepUp, ConfigError> {
    let mut step_up = crate::domain::voice_codes::enrol::StepUp::default();
    let step_up_s = "must be 60 to 86400 seconds";
    if let Some(s) = ranged::<i64>(get, "STEP_UP_MAX_AGE_S", 60..=86_400, step_up_s)? {
        step_up.max_age = chrono::Duration::seconds(s);
    }
    if let Some(n) = ranged(get, "CODE_DELETIONS_PER_DAY", 1..=100, "must be 1 to 100")? {
        step_up.deletions.max = n;
    }
    Ok(step_up)
}

/// `OUTBOX_V2_SEALS_BEFORE`, an RFC 3339 time.
fn outbox_v2_seals(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<crate::domain::redelivery::seal::V2Cutoff, ConfigError> {
    let var = "OUTBOX_V2_SEALS_BEFORE";
    let before = get(var)
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    ConfigError::Invalid(
                        var,
                        "must be an RFC 3339 time, e.g. 2026-12-06T06:00:00Z".into(),
                    )
                })
        })
        .transpose()?;
    Ok(crate::domain::redelivery::seal::V2Cutoff(before))
}

/// A warm function adopts a new current pepper within this long by default.
pub const DEFAULT_PEPPER_MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
    #[error("neither {0} nor {1} is set")]
    MissingSecret(&'static str, &'static str),
}

pub const DEFAULT_LWA_TOKEN_URL: &str = "https://api.amazon.com/auth/o2/token";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// `env` looks a variable up; empty values count as unset.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = trimmed(&env);
        let required = |k: &'static str| get(k).ok_or(ConfigError::Missing(k));
        // `arn_var` names a Secrets Manager secret (production); `value_var` holds the value
        // itself (local runs).
        let secret =
            |value_var: &'static str, arn_var: &'static str| -> Result<SecretRef, ConfigError> {
                if let Some(arn) = get(arn_var) {
                    return Ok(SecretRef::Aws(arn));
                }
                Ok(get(value_var)
                    .map(|v| SecretRef::Value(Secret::new(v)))
                    .unwrap_or(SecretRef::Unset { arn_var, value_var }))
            };
        let alexa_region = match get("ALEXA_REGION") {
            Some(r) => AlexaRegion::parse(&r).ok_or_else(|| {
                ConfigError::Invalid("ALEXA_REGION", format!("{r:?} is not NA, EU or FE"))
            })?,
            None => {
                let aws = get("AWS_REGION").unwrap_or_default();
                AlexaRegion::for_aws_region(&aws).ok_or_else(|| {
                    ConfigError::Invalid(
                        "AWS_REGION",
                        format!("{aws:?} serves no Alexa region; set ALEXA_REGION"),
                    )
                })?
            }
        };
        let oauth = oauth_from(&get, &env)?;
        let outbox = outbox_policy(&get)?;
        let panel_api_url = required("PANEL_API_URL")?;
        url::Url::parse(&panel_api_url)
            .map_err(|e| ConfigError::Invalid("PANEL_API_URL", e.to_string()))?;
        let step_up = step_up(&get)?;
        let pepper_s = "must be 1 to 3600 seconds";
        let pepper_max_age = ranged::<u64>(&get, "PEPPER_MAX_AGE_S", 1..=3_600, pepper_s)?
            .map_or(DEFAULT_PEPPER_MAX_AGE, Duration::from_secs);
        Ok(Config {
            pepper_max_age,
            step_up,
            outbox_v2_seals: outbox_v2_seals(&get)?,
            table_name: required("TABLE_NAME")?,
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
            panel_api_url,
            manufacturer_name: get("MANUFACTURER_NAME").unwrap_or_else(|| "Alarm Skill".into()),
            event_gateway_url: get("EVENT_GATEWAY_URL")
                .unwrap_or_else(|| alexa_region.event_gateway_url().to_string()),
            alexa_region,
            lwa_token_url: get("LWA_TOKEN_URL").unwrap_or_else(|| DEFAULT_LWA_TOKEN_URL.into()),
            lwa_client_id: required("LWA_CLIENT_ID")?,
            oauth,
            google_token_url: get("GOOGLE_TOKEN_URL"),
            homegraph_url: get("HOMEGRAPH_URL")
                .unwrap_or_else(|| crate::adapters::homegraph::DEFAULT_BASE_URL.into()),
            outbox,
            secrets: SecretRefs {
                pepper: secret("PEPPER", "PEPPER_SECRET_ARN")?,
                lwa_client_secret: secret("LWA_CLIENT_SECRET", "LWA_CLIENT_SECRET_ARN")?,
                webhook_secret: secret("WEBHOOK_SECRET", "WEBHOOK_SECRET_ARN")?,
                panel_api_key: secret("PANEL_API_KEY", "PANEL_API_KEY_SECRET_ARN")?,
                google_service_account: secret(
                    "GOOGLE_SERVICE_ACCOUNT",
                    "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN",
                )?,
            },
        })
    }
}

/// `OUTBOX_SHARDS` and `OUTBOX_HOUSEHOLD_QUOTA`, each within its bounds.
/// `var`'s value if it is set: a number within `range`, else `Invalid(var, message)`.
fn ranged<T: std::str::FromStr + PartialOrd>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    range: std::ops::RangeInclusive<T>,
    message: &str,
) -> Result<Option<T>, ConfigError> {
    get(var)
        .map(|v| {
            v.parse()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| ConfigError::Invalid(var, message.to_string()))
        })
        .transpose()
}

fn outbox_policy(get: &impl Fn(&str) -> Option<String>) -> Result<OutboxPolicy, ConfigError> {
    fn bounded(
        var: &'static str,
        v: Option<String>,
        max: u32,
        default: u32,
    ) -> Result<u32, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        match v.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid(
                var,
                format!("{v:?} is not a whole number from 1 to {max}"),
            )),
        }
    }
    let default = OutboxPolicy::default();
    let shards = bounded(
        "OUTBOX_SHARDS",
        get("OUTBOX_SHARDS"),
        u32::from(OutboxPolicy::MAX_SHARDS),
        u32::from(default.shards),
    )?;
    Ok(OutboxPolicy {
        shards: u16::try_from(shards).unwrap_or(default.shards),
        household_quota: bounded(
            "OUTBOX_HOUSEHOLD_QUOTA",
            get("OUTBOX_HOUSEHOLD_QUOTA"),
            OutboxPolicy::MAX_QUOTA,
            default.household_quota,
        )?,
    })
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// One scope name, as OAuth scopes are space-separated tokens.
fn scope_name(var: &'static str, v: String) -> Result<String, ConfigError> {
    if v.chars().any(char::is_whitespace) || v.contains('"') {
        return Err(ConfigError::Invalid(
            var,
            "must be a single scope name".into(),
        ));
    }
    Ok(v)
}

/// The account-linking issuer's rules (module docs). `get` trims and drops empty values; `env`
/// is the raw lookup, where an empty `OAUTH_TOKEN_USE` means "don't require one".
fn oauth_from(
    get: &impl Fn(&str) -> Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<OAuthConfig, ConfigError> {
    let issuer = get("OAUTH_ISSUER").ok_or(ConfigError::Missing("OAUTH_ISSUER"))?;
    let kind = match get("OAUTH_ISSUER_KIND") {
        None => IssuerKind::Cognito,
        Some(k) => IssuerKind::parse(&k).ok_or_else(|| {
            ConfigError::Invalid("OAUTH_ISSUER_KIND", format!("{k:?} is not cognito or oidc"))
        })?,
    };
    let audiences = list(&get("OAUTH_AUDIENCE").ok_or(ConfigError::Missing("OAUTH_AUDIENCE"))?);
    if audiences.is_empty() {
        return Err(ConfigError::Invalid(
            "OAUTH_AUDIENCE",
            "no audience given".into(),
        ));
    }
    let management_audiences = match get("OAUTH_MANAGEMENT_AUDIENCE") {
        None => audiences.clone(),
        Some(v) => {
            let l = list(&v);
            if l.is_empty() {
                return Err(ConfigError::Invalid(
                    "OAUTH_MANAGEMENT_AUDIENCE",
                    "no audience given".into(),
                ));
            }
            l
        }
    };
    let directive_scope = scope_name(
        "OAUTH_DIRECTIVE_SCOPE",
        get("OAUTH_DIRECTIVE_SCOPE").unwrap_or_else(|| DEFAULT_DIRECTIVE_SCOPE.into()),
    )?;
    let management_scope = get("OAUTH_MANAGEMENT_SCOPE")
        .map(|v| scope_name("OAUTH_MANAGEMENT_SCOPE", v))
        .transpose()?;
    if management_scope.as_deref() == Some(directive_scope.as_str()) {
        // A management token must not carry the directive scope: nobody could manage.
        return Err(ConfigError::Invalid(
            "OAUTH_MANAGEMENT_SCOPE",
            "must differ from OAUTH_DIRECTIVE_SCOPE".into(),
        ));
    }
    let admin_claim = match (get("OAUTH_ADMIN_CLAIM"), kind) {
        (Some(c), _) => c,
        (None, IssuerKind::Cognito) => COGNITO_GROUPS_CLAIM.to_string(),
        // No safe default: honouring a claim the issuer never meant as a role is how
        // `admin: true` from anywhere became an admin.
        (None, IssuerKind::Oidc) => {
            return Err(ConfigError::Invalid(
                "OAUTH_ADMIN_CLAIM",
                "required when OAUTH_ISSUER_KIND is oidc (the claim naming household admins)"
                    .into(),
            ));
        }
    };
    Ok(OAuthConfig {
        jwks_url: get("OAUTH_JWKS_URL")
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))),
        issuer,
        kind,
        audiences,
        management_audiences,
        directive_scope,
        management_scope,
        // Cognito access tokens carry token_use=access; ID tokens must not link. OIDC
        // providers have no such claim.
        token_use: match env("OAUTH_TOKEN_USE") {
            None if kind == IssuerKind::Cognito => Some("access".to_string()),
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(v.trim().to_string()),
        },
        account_claim: get("OAUTH_ACCOUNT_CLAIM").unwrap_or_else(|| "sub".into()),
        admin_claim,
        admin_group: get("OAUTH_ADMIN_GROUP").unwrap_or_else(|| DEFAULT_ADMIN_GROUP.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("TABLE_NAME", "alarm"),
            ("PANEL_API_URL", "https://panels.example.com/api"),
            ("AWS_REGION", "eu-west-1"),
            ("LWA_CLIENT_ID", "amzn1.application-oa2-client.x"),
            (
                "OAUTH_ISSUER",
                "https://cognito-idp.eu-west-1.amazonaws.com/pool/",
            ),
            ("OAUTH_AUDIENCE", "client-a, client-b"),
            (
                "PEPPER_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:pepper",
            ),
            ("LWA_CLIENT_SECRET", "local-lwa"),
            ("WEBHOOK_SECRET", "whsec"),
            ("PANEL_API_KEY", "key"),
        ])
    }

    fn load(env: &HashMap<&str, &str>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
    }

    /// The base settings with `var=value` are refused, and the error names `var`.
    fn assert_rejected(var: &'static str, value: &'static str) {
        let mut env = base();
        env.insert(var, value);
        assert!(
            matches!(load(&env), Err(ConfigError::Invalid(name, _)) if name == var),
            "{var}={value}"
        );
    }

    #[test]
    fn reads_the_step_up_for_code_changes() {
        let c = load(&base()).unwrap();
        assert_eq!(
            c.step_up,
            crate::domain::voice_codes::enrol::StepUp::default()
        );
        assert_eq!(c.step_up.max_age, chrono::Duration::minutes(10));
        let mut env = base();
        env.insert("STEP_UP_MAX_AGE_S", "300");
        env.insert("CODE_DELETIONS_PER_DAY", "2");
        let c = load(&env).unwrap();
        assert_eq!(c.step_up.max_age, chrono::Duration::seconds(300));
        assert_eq!(c.step_up.deletions.max, 2);
        assert_eq!(c.step_up.deletions.window, chrono::Duration::hours(24));
        for (k, v) in [
            ("STEP_UP_MAX_AGE_S", "5"),
            ("STEP_UP_MAX_AGE_S", "ten"),
            ("CODE_DELETIONS_PER_DAY", "0"),
        ] {
            assert_rejected(k, v);
        }
    }

    #[test]
    fn reads_the_cutoff_of_v2_outbox_seals() {
        use crate::domain::redelivery::seal::V2Cutoff;
        assert_eq!(load(&base()).unwrap().outbox_v2_seals, V2Cutoff(None));
        let mut env = base();
        env.insert("OUTBOX_V2_SEALS_BEFORE", "2026-12-06T07:00:00+01:00");
        let cutoff = "2026-12-06T06:00:00Z".parse().ok();
        assert_eq!(load(&env).unwrap().outbox_v2_seals, V2Cutoff(cutoff));
        assert_rejected("OUTBOX_V2_SEALS_BEFORE", "2026-12-06");
    }

    #[test]
    fn the_local_stack_reads_the_settings_that_mean_something_there_by_the_same_rules() {
        let local = |pairs: &[(&str, &str)]| {
            let env: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            LocalSettings::from_lookup(|k| env.get(k).cloned())
        };
        // Nothing set: the functions' defaults, and the stack's own manufacturer.
        let none = local(&[]).unwrap();
        assert_eq!(none.manufacturer_name, None);
        assert_eq!(
            none.step_up,
            crate::domain::voice_codes::enrol::StepUp::default()
        );
        assert_eq!(none.outbox, OutboxPolicy::default());
        let set = local(&[
            ("MANUFACTURER_NAME", "Zenith"),
            ("STEP_UP_MAX_AGE_S", "120"),
            ("CODE_DELETIONS_PER_DAY", "1"),
            ("OUTBOX_SHARDS", "2"),
            ("OUTBOX_HOUSEHOLD_QUOTA", "3"),
        ])
        .unwrap();
        assert_eq!(set.manufacturer_name.as_deref(), Some("Zenith"));
        assert_eq!(set.step_up.max_age, chrono::Duration::seconds(120));
        assert_eq!(set.step_up.deletions.max, 1);
        assert_eq!((set.outbox.shards, set.outbox.household_quota), (2, 3));
        for (k, v) in [
            ("STEP_UP_MAX_AGE_S", "5"),
            ("CODE_DELETIONS_PER_DAY", "0"),
            ("OUTBOX_SHARDS", "0"),
        ] {
            assert!(
                matches!(local(&[(k, v)]), Err(ConfigError::Invalid(var, _)) if var == k),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn reads_the_pepper_max_age() {
        assert_eq!(
            load(&base()).unwrap().pepper_max_age,
            Duration::from_secs(300)
        );
        let mut env = base();
        env.insert("PEPPER_MAX_AGE_S", "60");
        assert_eq!(load(&env).unwrap().pepper_max_age, Duration::from_secs(60));
        for v in ["0", "3601", "5m"] {
            env.insert("PEPPER_MAX_AGE_S", v);
            assert!(
                matches!(load(&env), Err(ConfigError::Invalid("PEPPER_MAX_AGE_S", _))),
                "{v}"
            );
        }
    }

    #[test]
    fn reads_defaults_and_secret_sources() {
        let c = load(&base()).unwrap();
        assert_eq!(c.alexa_region, AlexaRegion::Eu);
        assert_eq!(
            c.event_gateway_url,
            "https://api.eu.amazonalexa.com/v3/events"
        );
        assert_eq!(c.oauth.audiences, vec!["client-a", "client-b"]);
        assert_eq!(
            c.oauth.jwks_url,
            "https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json"
        );
        assert_eq!(c.oauth.token_use.as_deref(), Some("access"));
        assert!(matches!(c.secrets.pepper, SecretRef::Aws(_)));
        assert_eq!(
            c.secrets.webhook_secret,
            SecretRef::Value(Secret::new("whsec"))
        );
    }

    #[test]
    fn explains_what_is_missing_or_wrong() {
        let mut env = base();
        env.remove("WEBHOOK_SECRET");
        // A function that needs it says so when loading secrets (crate::adapters::secrets::load_for).
        assert_eq!(
            load(&env).unwrap().secrets.webhook_secret,
            SecretRef::Unset {
                arn_var: "WEBHOOK_SECRET_ARN",
                value_var: "WEBHOOK_SECRET"
            }
        );
        env.insert(
            "WEBHOOK_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:wh",
        );
        assert!(matches!(
            load(&env).unwrap().secrets.webhook_secret,
            SecretRef::Aws(_)
        ));
        let mut env = base();
        env.insert("AWS_REGION", "ap-south-2");
        assert!(matches!(
            load(&env).unwrap_err(),
            ConfigError::Invalid("AWS_REGION", _)
        ));
        env.insert("ALEXA_REGION", "fe");
        assert_eq!(load(&env).unwrap().alexa_region, AlexaRegion::Fe);
        let mut env = base();
        env.insert("OAUTH_TOKEN_USE", "");
        assert_eq!(load(&env).unwrap().oauth.token_use, None);
    }

    #[test]
    fn the_google_service_account_is_optional_and_its_urls_overridable() {
        let c = load(&base()).unwrap();
        assert_eq!(
            c.secrets.google_service_account,
            SecretRef::Unset {
                arn_var: "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN",
                value_var: "GOOGLE_SERVICE_ACCOUNT"
            }
        );
        assert_eq!(c.google_token_url, None);
        assert_eq!(c.homegraph_url, "https://homegraph.googleapis.com");
        let mut env = base();
        // The template passes an empty ARN when its parameter is empty: that is unset too.
        env.insert("GOOGLE_SERVICE_ACCOUNT_SECRET_ARN", "");
        assert!(matches!(
            load(&env).unwrap().secrets.google_service_account,
            SecretRef::Unset { .. }
        ));
        env.insert(
            "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:google",
        );
        env.insert("GOOGLE_TOKEN_URL", "http://127.0.0.1:9/token");
        env.insert("HOMEGRAPH_URL", "http://127.0.0.1:9/hg");
        let c = load(&env).unwrap();
        assert!(matches!(
            c.secrets.google_service_account,
            SecretRef::Aws(_)
        ));
        assert_eq!(
            c.google_token_url.as_deref(),
            Some("http://127.0.0.1:9/token")
        );
        assert_eq!(c.homegraph_url, "http://127.0.0.1:9/hg");
    }

    #[test]
    fn cognito_is_the_default_issuer_kind() {
        let o = load(&base()).unwrap().oauth;
        assert_eq!(o.kind, IssuerKind::Cognito);
        assert_eq!(o.admin_claim, "cognito:groups");
        assert_eq!(o.admin_group, "household-admin");
        assert_eq!(o.directive_scope, "alarm/control");
        assert_eq!(o.management_scope, None);
        assert_eq!(
            o.management_audiences, o.audiences,
            "one client, told apart by scope"
        );
        let mut env = base();
        env.insert("OAUTH_AUDIENCE", "linking-client");
        env.insert("OAUTH_MANAGEMENT_AUDIENCE", "management-client,app-client");
        let o = load(&env).unwrap().oauth;
        assert_eq!(o.audiences, vec!["linking-client"]);
        assert_eq!(
            o.management_audiences,
            vec!["management-client", "app-client"]
        );
    }

    #[test]
    fn oidc_issuers_name_their_admin_claim_and_need_no_token_use() {
        let mut env = base();
        env.insert("OAUTH_ISSUER_KIND", "oidc");
        assert_eq!(
            load(&env).unwrap_err(),
            ConfigError::Invalid(
                "OAUTH_ADMIN_CLAIM",
                "required when OAUTH_ISSUER_KIND is oidc (the claim naming household admins)"
                    .into()
            )
        );
        env.insert("OAUTH_ADMIN_CLAIM", "/realm_access/roles");
        env.insert("OAUTH_DIRECTIVE_SCOPE", "alarm:control");
        env.insert("OAUTH_MANAGEMENT_SCOPE", "alarm:manage");
        let o = load(&env).unwrap().oauth;
        assert_eq!(o.kind, IssuerKind::Oidc);
        assert_eq!(o.admin_claim, "/realm_access/roles");
        assert_eq!(o.token_use, None);
        assert_eq!(o.management_scope.as_deref(), Some("alarm:manage"));
        env.insert("OAUTH_TOKEN_USE", "access");
        assert_eq!(
            load(&env).unwrap().oauth.token_use.as_deref(),
            Some("access")
        );
        env.insert("OAUTH_ISSUER_KIND", "okta-ish");
        assert!(matches!(
            load(&env).unwrap_err(),
            ConfigError::Invalid("OAUTH_ISSUER_KIND", _)
        ));
    }

    #[test]
    fn the_template_sets_exactly_the_documented_oauth_variables() {
        use std::collections::BTreeSet;
        let is_name = |n: &str| {
            n.starts_with("OAUTH_") && n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        };
        let set: BTreeSet<&str> = include_str!("../../infra/template.yaml")
            .lines()
            .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
            .filter(|k| is_name(k))
            .collect();
        let documented: BTreeSet<&str> = include_str!("config.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .filter_map(|l| l.split_once('`').map(|(k, _)| k))
            .filter(|k| is_name(k))
            .collect();
        assert_eq!(set, documented);
    }

    #[test]
    fn outbox_shards_and_quota_are_read_within_bounds() {
        let mut env = base();
        assert_eq!(load(&env).unwrap().outbox, OutboxPolicy::default());
        env.insert("OUTBOX_SHARDS", "32");
        env.insert("OUTBOX_HOUSEHOLD_QUOTA", "4");
        let outbox = load(&env).unwrap().outbox;
        assert_eq!((outbox.shards, outbox.household_quota), (32, 4));
        for (var, bad) in [
            ("OUTBOX_SHARDS", "0"),
            ("OUTBOX_SHARDS", "257"),
            ("OUTBOX_SHARDS", "-1"),
            ("OUTBOX_HOUSEHOLD_QUOTA", "1001"),
            ("OUTBOX_HOUSEHOLD_QUOTA", "many"),
        ] {
            assert_rejected(var, bad);
        }
    }

    #[test]
    fn scopes_are_single_names_and_the_two_uses_differ() {
        let mut env = base();
        env.insert("OAUTH_DIRECTIVE_SCOPE", "alarm/control openid");
        assert!(matches!(
            load(&env).unwrap_err(),
            ConfigError::Invalid("OAUTH_DIRECTIVE_SCOPE", _)
        ));
        let mut env = base();
        env.insert("OAUTH_MANAGEMENT_SCOPE", "alarm/control");
        assert!(matches!(
            load(&env).unwrap_err(),
            ConfigError::Invalid("OAUTH_MANAGEMENT_SCOPE", _)
        ));
        let mut env = base();
        env.insert("OAUTH_MANAGEMENT_AUDIENCE", " , ");
        assert!(matches!(
            load(&env).unwrap_err(),
            ConfigError::Invalid("OAUTH_MANAGEMENT_AUDIENCE", _)
        ));
    }
}
