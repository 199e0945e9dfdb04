//! Account mapping (docs/deploy.md section 9): the Cognito pre-token-generation trigger in
//! infra/template.yaml copies the user's `custom:panel_account` into the tokens as
//! `panel_account`, and the functions take the household from that claim
//! (`OAUTH_ACCOUNT_CLAIM=panel_account`). The trigger's own Python code is run here, on Cognito's
//! V2 event shape, and its claims go through the production verifier.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use alarm_skill::adapters::account_link::JwksVerifier;
use alarm_skill::common::secret::BearerToken;
use alarm_skill::domain::ports::account_link::{TokenError, TokenUse, TokenVerifier};
use alarm_skill::edges::config::OAuthConfig;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The trigger's inline code, exactly as the template deploys it.
fn trigger_code() -> String {
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/template.yaml"))
            .expect("template");
    let start = template
        .find("  PreTokenFunction:")
        .expect("PreTokenFunction");
    let zip = start + template[start..].find("ZipFile: |").expect("inline code");
    let body = &template[zip..];
    let mut lines = body.lines().skip(1);
    let first = lines.next().expect("code");
    let indent = first.len() - first.trim_start().len();
    let mut code = vec![first[indent..].to_string()];
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        code.push(line.get(indent..).unwrap_or("").to_string());
    }
    code.join("\n")
}

/// Runs the trigger on a Cognito V2 `TokenGeneration_HostedAuth` event: the event it returns,
/// or the error it raised.
fn run_trigger(attributes: Value) -> Result<Value, String> {
    let dir = std::env::temp_dir().join(format!("pretoken-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.py"), trigger_code()).unwrap();
    let event = json!({
        "version": "2",
        "triggerSource": "TokenGeneration_HostedAuth",
        "region": "us-east-1",
        "userPoolId": "us-east-1_Example",
        "userName": "4f1c0d9e-8b7a-4f5e-9d3c-2b1a0f9e8d7c",
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown", "clientId": "alexa-client"},
        "request": {"userAttributes": attributes, "groupConfiguration": {"groupsToOverride": []},
                    "scopes": ["alarm/control"]},
        "response": {"claimsAndScopeOverrideDetails": null}
    });
    let out = Command::new("python3")
        .current_dir(&dir)
        .args([
            "-c",
            "import json, sys, index\nprint(json.dumps(index.handler(json.loads(sys.argv[1]), None)))",
        ])
        .arg(event.to_string())
        .output()
        .expect("python3");
    std::fs::remove_dir_all(&dir).ok();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the trigger returns JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[test]
fn the_trigger_adds_the_panel_account_claim_and_refuses_users_without_one() {
    let attrs = json!({"sub": "4f1c0d9e-8b7a-4f5e-9d3c-2b1a0f9e8d7c", "email": "alex@example.com",
                       "custom:panel_account": " acct-1042 "});
    let out = run_trigger(attrs).expect("a mapped user signs in");
    let details = &out["response"]["claimsAndScopeOverrideDetails"];
    assert_eq!(
        details["accessTokenGeneration"]["claimsToAddOrOverride"],
        json!({"panel_account": "acct-1042"})
    );
    assert_eq!(
        details["idTokenGeneration"]["claimsToAddOrOverride"],
        json!({"panel_account": "acct-1042"})
    );
    for attrs in [
        json!({"sub": "x", "email": "new@example.com"}),
        json!({"sub": "x", "custom:panel_account": "  "}),
        json!({"sub": "x", "custom:panel_account": "a".repeat(129)}),
    ] {
        let err = run_trigger(attrs).expect_err("an unmapped user gets no token");
        assert!(err.contains("not linked to a household"), "{err}");
    }
}

struct Issuer {
    url: String,
    key: EncodingKey,
}

async fn issuer() -> Issuer {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = kp.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [{"kty": "EC", "kid": "k1", "use": "sig", "crv": "P-256",
        "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..65])}]});
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Issuer {
        url: format!("http://{addr}"),
        key: EncodingKey::from_ec_der(kp.to_pkcs8v1().unwrap().as_ref()),
    }
}

impl Issuer {
    /// A Cognito-shaped access token, with the claims the trigger added.
    fn token(&self, added: &Value) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut claims = json!({
            "iss": self.url, "sub": "4f1c0d9e-8b7a-4f5e-9d3c-2b1a0f9e8d7c",
            "client_id": "alexa-client", "token_use": "access", "scope": "alarm/control",
            "iat": now, "exp": now + 600,
        });
        for (k, v) in added.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    fn verifier(&self) -> Arc<JwksVerifier> {
        alarm_skill::adapters::account_link::install_crypto_provider();
        Arc::new(JwksVerifier::new(
            &OAuthConfig {
                // What the template sets with CreateCognito=true.
                account_claim: "panel_account".into(),
                ..OAuthConfig::cognito(
                    &self.url,
                    &format!("{}/.well-known/jwks.json", self.url),
                    "alexa-client",
                )
            },
            reqwest::Client::new(),
        ))
    }
}

#[tokio::test]
async fn the_login_reaches_the_panel_account_the_trigger_names_and_nothing_else() {
    let iss = issuer().await;
    let v = iss.verifier();
    let attrs = json!({"sub": "4f1c0d9e-8b7a-4f5e-9d3c-2b1a0f9e8d7c",
                       "custom:panel_account": "acct-1042"});
    let added = run_trigger(attrs).unwrap()["response"]["claimsAndScopeOverrideDetails"]
        ["accessTokenGeneration"]["claimsToAddOrOverride"]
        .clone();
    let id = v
        .verify(&BearerToken::new(iss.token(&added)), TokenUse::Directives)
        .await
        .expect("a mapped token verifies");
    assert_eq!(
        id.account, "acct-1042",
        "the household is the panel account"
    );
    assert_eq!(id.subject, "4f1c0d9e-8b7a-4f5e-9d3c-2b1a0f9e8d7c");
    // A token without the claim (issued before the trigger, or by another client) reaches no
    // household: the Cognito user id is never taken for a panel account.
    let err = v
        .verify(
            &BearerToken::new(iss.token(&json!({}))),
            TokenUse::Directives,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

/// Where several logins share one household (`OAUTH_ACCOUNT_CLAIM`), each has their own Alexa
/// grant: one member disabling the skill deletes their own grants (every region's), never the
/// other members' nor the one from before grants were per user. On the store the suite runs on
/// (scripts/test runs it on both).
#[tokio::test]
async fn one_member_disabling_the_skill_keeps_the_other_members_grants() {
    use alarm_skill::adapters::lwa::{AlexaRegion, LwaClient};
    use alarm_skill::adapters::panel::HttpPanelCloud;
    use alarm_skill::adapters::store::dynamodb::DynamoStore;
    use alarm_skill::adapters::store::memory::MemoryStore;
    use alarm_skill::common::clock::{Clock, SystemClock};
    use alarm_skill::common::secret::Secret;
    use alarm_skill::domain::ports::store::{Store, StoredGrant};
    use alarm_skill::domain::skill::{Skill, SkillDeps, SkillSettings};
    use alarm_skill::domain::voice_codes::Keyring;

    const ACCOUNT: &str = "acct-1042";
    let iss = issuer().await;
    let store: Arc<dyn Store> = if crate::support::stack::on_dynamodb() {
        let (client, table) = crate::support::stack::dynamodb_table("grants").await;
        Arc::new(DynamoStore::new(client, table))
    } else {
        Arc::new(MemoryStore::new())
    };
    let keyring = Arc::new(Keyring::random());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // LWA is never called: disabling the skill only deletes stored grants.
    let lwa = |region| {
        LwaClient::new(
            "http://127.0.0.1:9/auth/o2/token".into(),
            "messaging-client".into(),
            Secret::new("unused"),
            region,
            Arc::clone(&store),
            Arc::clone(&keyring),
            Arc::clone(&clock),
            reqwest::Client::new(),
        )
    };
    let (na, eu) = (Arc::new(lwa(AlexaRegion::Na)), lwa(AlexaRegion::Eu));
    let grant = StoredGrant {
        access_token: "sealed-access".into(),
        refresh_token: "sealed-refresh".into(),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let (alex, sam) = ("alex-login", "sam-login");
    let keys = [
        "NA".to_string(),
        na.user_key(alex),
        eu.user_key(alex),
        na.user_key(sam),
    ];
    for key in &keys {
        store.put_grant(ACCOUNT, key, &grant).await.unwrap();
    }
    let skill = Skill::new(
        SkillDeps {
            store: Arc::clone(&store),
            panels: Arc::new(HttpPanelCloud::new("http://127.0.0.1:9", Secret::new("k")).unwrap()),
            tokens: iss.verifier(),
            grants: na.clone(),
            keyring: Arc::clone(&keyring),
            clock: Arc::clone(&clock),
        },
        SkillSettings::default(),
    );
    let token = iss.token(&json!({"sub": alex, "panel_account": ACCOUNT}));
    let disabled = crate::support::stack::skill_event("SkillDisabled", Some(&token));
    assert_eq!(skill.skill_event(&disabled).await, json!({}));
    let mut left: Vec<String> = store
        .grants(ACCOUNT)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    left.sort();
    let mut want = vec![keys[0].clone(), keys[3].clone()];
    want.sort();
    assert_eq!(left, want, "Sam's grant and the one from before stay");
}
