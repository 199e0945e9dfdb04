//! The skill package templates (skill-manifest/) and scripts/fill-manifest.
//!
//! - The templates carry everything certification and SMAPI require of a smart home skill:
//!   protocol version 3, the Send Alexa Events permission, one Lambda endpoint per Alexa region,
//!   complete store text and legal links per locale, an AUTH_CODE account-linking resource.
//! - fill-manifest, run on the committed example stack outputs, leaves no placeholder and puts
//!   each region's directive function ARN into that region (NA us-east-1, EU eu-west-1,
//!   FE us-west-2), prunes regions the deployment does not serve, and refuses to write anything
//!   while a value is missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const REGIONS: [(&str, &str); 3] = [
    ("NA", "us-east-1"),
    ("EU", "eu-west-1"),
    ("FE", "us-west-2"),
];
/// Environment-only values of fill-manifest (secrets never come from the values file).
const SECRETS: [(&str, &str); 3] = [
    ("ACCOUNT_LINKING_CLIENT_SECRET", "example-client-secret"),
    ("TEST_ACCOUNT_PASSWORD", "example-password"),
    ("TEST_VOICE_PIN", "4729"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn non_empty_str<'a>(v: &'a Value, what: &str) -> &'a str {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => s,
        _ => panic!("{what} must be a non-empty string, got {v}"),
    }
}

fn object_keys(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} must be an object, got {v}"))
        .keys()
        .cloned()
        .collect()
}

fn skill_template() -> Value {
    read_json(&root().join("skill-manifest/skill.json"))
}

fn account_linking_template() -> Value {
    read_json(&root().join("skill-manifest/accountLinking.json"))
}

#[test]
fn skill_manifest_is_a_certifiable_smart_home_manifest() {
    let skill = skill_template();
    let m = &skill["manifest"];
    assert_eq!(m["manifestVersion"], "1.0");

    let smart_home = &m["apis"]["smartHome"];
    assert_eq!(
        smart_home["protocolVersion"], "3",
        "only protocol version 3 certifies"
    );
    assert_eq!(
        smart_home["endpoint"]["uri"], "{{DIRECTIVE_FUNCTION_ARN_NA}}",
        "default endpoint"
    );
    let regions = object_keys(&smart_home["regions"], "apis.smartHome.regions");
    assert_eq!(
        regions,
        BTreeSet::from(["EU".into(), "FE".into(), "NA".into()])
    );
    for (region, _) in REGIONS {
        assert_eq!(
            smart_home["regions"][region]["endpoint"]["uri"],
            format!("{{{{DIRECTIVE_FUNCTION_ARN_{region}}}}}"),
            "{region} endpoint placeholder"
        );
    }

    // Skill events: disabling the skill (which unlinks) deletes the grant at once.
    assert_eq!(
        m["events"]["endpoint"]["uri"], "{{DIRECTIVE_FUNCTION_ARN_NA}}",
        "skill events reach the directive function"
    );
    let events: Vec<&str> = m["events"]["subscriptions"]
        .as_array()
        .expect("events.subscriptions")
        .iter()
        .map(|s| non_empty_str(&s["eventName"], "eventName"))
        .collect();
    assert_eq!(events, ["SKILL_DISABLED", "SKILL_ACCOUNT_LINKED"]);

    let permissions: Vec<&str> = m["permissions"]
        .as_array()
        .expect("permissions is an array")
        .iter()
        .map(|p| non_empty_str(&p["name"], "permission name"))
        .collect();
    assert!(
        permissions.contains(&"alexa::async_event:write"),
        "Send Alexa Events (AcceptGrant, ChangeReports) needs alexa::async_event:write: {permissions:?}"
    );

    let publishing = &m["publishingInformation"];
    assert_eq!(publishing["category"], "SMART_HOME");
    let countries = publishing["distributionCountries"]
        .as_array()
        .expect("distributionCountries");
    assert!(!countries.is_empty());
    let locales = object_keys(&publishing["locales"], "publishingInformation.locales");
    assert!(!locales.is_empty());
    for locale in &locales {
        let l = &publishing["locales"][locale];
        let name = non_empty_str(&l["name"], &format!("{locale} name"));
        assert!(
            name.chars().count() <= 50,
            "{locale} name is over 50 characters"
        );
        let summary = non_empty_str(&l["summary"], &format!("{locale} summary"));
        assert!(
            summary.chars().count() <= 160,
            "{locale} summary is over 160 characters"
        );
        let description = non_empty_str(&l["description"], &format!("{locale} description"));
        assert!(
            description.chars().count() <= 4000,
            "{locale} description is too long"
        );
        let phrases = l["examplePhrases"]
            .as_array()
            .unwrap_or_else(|| panic!("{locale} examplePhrases must be an array"));
        assert!(
            (1..=3).contains(&phrases.len()),
            "{locale}: 1 to 3 example phrases"
        );
        for p in phrases {
            // Certification testers say the phrases to the test account's panel: they must
            // name it, as the testing instructions do.
            assert!(
                non_empty_str(p, &format!("{locale} example phrase"))
                    .contains("{{TEST_PANEL_NAME}}"),
                "{locale}: example phrase {p} does not name the test panel"
            );
        }
        assert!(
            non_empty_str(&phrases[0], "first phrase").starts_with("Alexa, "),
            "{locale}: the first example phrase starts with the wake word"
        );
        non_empty_str(&l["smallIconUri"], &format!("{locale} smallIconUri"));
        non_empty_str(&l["largeIconUri"], &format!("{locale} largeIconUri"));
    }

    let privacy = &m["privacyAndCompliance"];
    assert_eq!(
        object_keys(&privacy["locales"], "privacyAndCompliance.locales"),
        locales,
        "privacy and terms links for exactly the published locales"
    );
    for locale in &locales {
        non_empty_str(
            &privacy["locales"][locale]["privacyPolicyUrl"],
            &format!("{locale} privacyPolicyUrl"),
        );
        non_empty_str(
            &privacy["locales"][locale]["termsOfUseUrl"],
            &format!("{locale} termsOfUseUrl"),
        );
    }
    for flag in [
        "allowsPurchases",
        "usesPersonalInfo",
        "isChildDirected",
        "isExportCompliant",
        "containsAds",
    ] {
        assert!(privacy[flag].is_boolean(), "privacyAndCompliance.{flag}");
    }

    // What certification reviewers need (alexa-security-panel.md §7, gotcha 18).
    let testing = non_empty_str(&publishing["testingInstructions"], "testingInstructions");
    for needle in [
        "{{TEST_ACCOUNT_USERNAME}}",
        "{{TEST_ACCOUNT_PASSWORD}}",
        "Two-step verification is disabled",
        "online 24/7",
        "every locale",
        "use the existing PIN",
        "{{TEST_VOICE_PIN}}",
    ] {
        assert!(
            testing.contains(needle),
            "testingInstructions lack {needle:?}"
        );
    }
}

#[test]
fn account_linking_resource_is_auth_code() {
    let doc = account_linking_template();
    let req = &doc["accountLinkingRequest"];
    assert_eq!(
        req["type"], "AUTH_CODE",
        "smart home skills must use the authorization code grant"
    );
    for field in [
        "authorizationUrl",
        "accessTokenUrl",
        "clientId",
        "clientSecret",
    ] {
        non_empty_str(&req[field], field);
    }
    let scheme = non_empty_str(&req["accessTokenScheme"], "accessTokenScheme");
    assert!(
        ["HTTP_BASIC", "REQUEST_BODY_CREDENTIALS"].contains(&scheme),
        "accessTokenScheme {scheme}"
    );
    let scopes = req["scopes"].as_array().expect("scopes is an array");
    assert!(
        !scopes.is_empty() && scopes.len() <= 15,
        "smart home account linking needs 1 to 15 scopes"
    );
    for s in scopes {
        non_empty_str(s, "scope");
    }
}

/// Runs scripts/fill-manifest with a clean environment: only PATH plus `env`.
fn fill_manifest(out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let script = root().join("scripts/fill-manifest");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args([
            "--outputs",
            root()
                .join("skill-manifest/example-stack-outputs.json")
                .to_str()
                .unwrap(),
            "--values",
            root()
                .join("skill-manifest/example-values.json")
                .to_str()
                .unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("manifest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The example outputs' directive ARN and account-linking client id per Alexa region.
fn example_outputs() -> Vec<(String, String, Option<String>)> {
    let doc = read_json(&root().join("skill-manifest/example-stack-outputs.json"));
    doc["Stacks"]
        .as_array()
        .expect("Stacks")
        .iter()
        .map(|s| {
            let get = |key: &str| {
                s["Outputs"]
                    .as_array()
                    .expect("Outputs")
                    .iter()
                    .find(|o| o["OutputKey"] == key)
                    .map(|o| non_empty_str(&o["OutputValue"], key).to_string())
            };
            (
                get("AlexaRegion").expect("AlexaRegion output"),
                get("DirectiveFunctionArn").expect("DirectiveFunctionArn output"),
                get("AccountLinkingClientId"),
            )
        })
        .collect()
}

#[test]
fn fill_manifest_places_each_regions_arn_and_leaves_no_placeholder() {
    let out = scratch("all");
    let run = fill_manifest(&out, &[], &SECRETS);
    assert!(
        run.status.success(),
        "fill-manifest failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    for name in ["skill.json", "accountLinking.json"] {
        let text = std::fs::read_to_string(out.join(name)).expect("written");
        assert!(
            !text.contains("{{"),
            "{name} still holds a placeholder:\n{text}"
        );
        serde_json::from_str::<Value>(&text).expect("valid JSON");
    }

    let skill = read_json(&out.join("skill.json"));
    let smart_home = &skill["manifest"]["apis"]["smartHome"];
    let examples = example_outputs();
    for (region, aws_region) in REGIONS {
        let uri = non_empty_str(
            &smart_home["regions"][region]["endpoint"]["uri"],
            &format!("{region} uri"),
        );
        assert!(
            uri.starts_with(&format!("arn:aws:lambda:{aws_region}:")),
            "{region} must point at a Lambda in {aws_region}, got {uri}"
        );
        let (_, expected, _) = examples
            .iter()
            .find(|(r, _, _)| r == region)
            .expect("example stack per region");
        assert_eq!(uri, expected, "{region} endpoint");
        assert!(
            uri.ends_with(":live"),
            "{region}: the endpoint is the live alias, so a deploy reaches certified users only once promoted: {uri}"
        );
    }
    for (locale, l) in skill["manifest"]["publishingInformation"]["locales"]
        .as_object()
        .unwrap()
    {
        for p in l["examplePhrases"].as_array().unwrap() {
            assert!(
                p.as_str().unwrap().contains("Home Alarm"),
                "{locale}: {p} must name the test panel (TEST_PANEL_NAME)"
            );
        }
    }
    assert_eq!(
        smart_home["endpoint"]["uri"], smart_home["regions"]["NA"]["endpoint"]["uri"],
        "the default endpoint is the NA one"
    );
    assert_eq!(
        skill["manifest"]["events"]["endpoint"]["uri"], smart_home["endpoint"]["uri"],
        "skill events go to the default endpoint"
    );
    let testing = skill["manifest"]["publishingInformation"]["testingInstructions"]
        .as_str()
        .unwrap();
    assert!(testing.contains("example-password") && testing.contains("4729"));
    assert!(testing.contains("us-east-1 for NA, eu-west-1 for EU, us-west-2 for FE"));

    let linking = read_json(&out.join("accountLinking.json"));
    let req = &linking["accountLinkingRequest"];
    let client_id = examples
        .iter()
        .find_map(|(_, _, id)| id.clone())
        .expect("one example stack created the Cognito pool");
    assert_eq!(req["clientId"], client_id.as_str());
    assert_eq!(req["clientSecret"], "example-client-secret");
    assert_eq!(req["scopes"], serde_json::json!(["alarm/control"]));
    assert!(
        non_empty_str(&req["authorizationUrl"], "authorizationUrl").starts_with("https://")
            && non_empty_str(&req["accessTokenUrl"], "accessTokenUrl").starts_with("https://")
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("accountLinking.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "files holding credentials are private to the owner"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn fill_manifest_drops_regions_that_are_not_deployed() {
    let out = scratch("na");
    let run = fill_manifest(&out, &["--regions", "NA"], &SECRETS);
    assert!(
        run.status.success(),
        "fill-manifest failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let skill = read_json(&out.join("skill.json"));
    let m = &skill["manifest"];
    assert_eq!(
        object_keys(&m["apis"]["smartHome"]["regions"], "regions"),
        BTreeSet::from(["NA".to_string()])
    );
    // en-GB (EU) or en-AU (FE) must not be published when only the NA Lambda exists: Alexa
    // would route them to a region without an endpoint.
    let locales = object_keys(&m["publishingInformation"]["locales"], "locales");
    assert_eq!(
        locales,
        BTreeSet::from(["en-CA".to_string(), "en-US".to_string()])
    );
    assert_eq!(
        object_keys(&m["privacyAndCompliance"]["locales"], "privacy locales"),
        locales
    );
    assert_eq!(
        m["publishingInformation"]["distributionCountries"],
        serde_json::json!(["US", "CA"])
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn fill_manifest_refuses_to_write_with_a_value_missing() {
    let out = scratch("missing");
    // No TEST_VOICE_PIN in the environment.
    let run = fill_manifest(&out, &[], &SECRETS[..2]);
    assert!(!run.status.success(), "must fail without TEST_VOICE_PIN");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("{{TEST_VOICE_PIN}}"),
        "names the missing value: {stderr}"
    );
    assert!(!out.exists(), "nothing may be written");
}
