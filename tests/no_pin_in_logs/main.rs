//! No PIN and no bearer token in any log line, at any level, from any crate.
//!
//! In-process: a global TRACE subscriber (JSON, like Lambda's) captures everything while a
//! session runs through every path a PIN touches: enrolment (accepted and rejected), disarm with
//! the normal, duress and wrong codes, lockout, ill-typed and malformed directives, a panel
//! outage with re-delivery, and Google's PIN challenge (`challenge.pin`) with every kind of
//! code, ill-typed and in a malformed body. Only one test here installs that subscriber, since it
//! is process-wide: hence a test binary of its own (see Cargo.toml), not a suite of tests/it,
//! where a capture per test runtime (support::logs) missed most other crates' lines while a
//! neighbouring test ran (cause not pinned down; the global subscriber misses none).
//!
//! As deployed: the `bootstrap` and `http-api` binaries run as processes at
//! `AWS_LAMBDA_LOG_LEVEL=TRACE` (and `RUST_LOG` asking for every crate's TRACE), and everything
//! they print is searched the same way, secrets of their environment included.
//!
//! The PINs start with 0 on purpose: no number in a log line (elapsed times, ports, counts)
//! prints with a leading zero, so a match can only be a leak. UUIDs are blanked before
//! matching, since one of their 4-hex-digit groups could spell a PIN by chance.

#[path = "../it/support/mod.rs"]
mod support;

use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use serde_json::json;
use support::google as g;
use support::lambda::{Function, http_event, world_with};
use support::logs::Capture;
use support::stack::*;

const CONFIG: &str = r#"{
  "accounts": [{"id": "demo", "users": [{"number": 1, "name": "Alex"}, {"number": 2, "name": "Sam"}],
    "panels": [{"id": "home", "name": "Home", "zones": [
      {"id": "front-door", "number": 1, "name": "Front door", "kind": "contact", "entry": true}]}]}],
  "households": [{"account": "demo", "members": [
    {"id": "alex", "name": "Alex", "user_number": 1, "voice_pin": "0472", "duress_pin": "0815"},
    {"id": "sam", "name": "Sam", "user_number": 2}]}]
}"#;

const PINS: [&str; 7] = ["0472", "0815", "0913", "0246", "0591", "0123", "0814"];

/// Fails if any PIN or any of `secrets` occurs in `logs`.
fn assert_clean(logs: &str, secrets: &[&str]) {
    for pin in PINS {
        let line = logs.lines().find(|l| l.contains(pin)).unwrap_or_default();
        assert!(
            !support::holds_pin(logs, pin),
            "PIN {pin} appears in the logs: {line}"
        );
    }
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret appears in the logs: {secret:.6}..."
        );
    }
}

/// A bearer token's signature: unique to it, and what a leak of the token would contain.
fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_or_token_reaches_any_log_line() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_current_span(true)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    let h = Harness::start_with(Options {
        config: DemoConfig::parse(CONFIG).unwrap(),
        ..test_options()
    })
    .await;
    let t = h.token("demo").await;
    let admin = h.admin_token("demo").await;
    h.invoke(&accept_grant(&t, "code")).await;

    // Enrolment: accepted, too common, too similar, ill-typed.
    for pin in [json!("0913"), json!("0123"), json!("0814"), json!(913)] {
        h.set_pin(&admin, "sam", "voice-pin", json!(pin)).await;
    }
    // Disarms: normal, duress, wrong, through a lockout.
    for pin in ["0472", "0815", "0246", "0591", "0246", "0472", "0815"] {
        h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
        h.invoke(&disarm(&t, "home", Some(pin))).await;
    }
    h.api("POST", "/v1/household/lockout/reset", Some(&admin), None)
        .await;
    // Ill-typed and malformed directives carrying a PIN.
    let mut typed = disarm(&t, "home", Some("0472"));
    typed["directive"]["payload"]["authorization"]["type"] = json!("SIX_DIGIT_PIN");
    h.invoke(&typed).await;
    let body = disarm(&t, "home", Some("0815")).to_string();
    h.invoke_raw(&body[..body.len() - 3]).await;
    // A duress during an outage, then re-delivery.
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    h.fault("error", 0).await;
    h.invoke(&disarm(&t, "home", Some("0815"))).await;
    h.fault("none", 0).await;
    h.stack.redeliver().await.unwrap();
    // Google: the challenge with the normal, duress and wrong codes, an ill-typed PIN, a PIN
    // where none belongs, and a malformed body.
    for pin in ["0472", "0815", "0246"] {
        h.google("demo", &g::arm("home", "away")).await;
        h.google("demo", &g::disarm("home", None)).await;
        h.google("demo", &g::disarm("home", Some(pin))).await;
    }
    let mut ill = g::disarm("home", None);
    ill["inputs"][0]["payload"]["commands"][0]["execution"][0]["challenge"] =
        json!({"pin": ["0591"]});
    h.google("demo", &ill).await;
    let mut stray = g::query(&["home"]);
    stray["inputs"][0]["payload"]["pin"] = json!("0591");
    h.google("demo", &stray).await;
    let body = g::disarm("home", Some("0815")).to_string();
    h.http
        .post(format!("{}{}", h.base, g::PATH))
        .bearer_auth(&t)
        .body(body[..body.len() - 4].to_string())
        .send()
        .await
        .unwrap();
    // The webhook sender's and the ChangeReports' lines come after the replies: read once the
    // log has stopped growing, however slowly a loaded machine writes it.
    support::stack::settled(|| capture.text().lines().map(str::to_owned).collect()).await;

    let logs = capture.text();
    let lines = logs.lines().count();
    assert!(lines > 200, "the capture works ({lines} lines)");
    assert!(
        logs.contains("\"error_type\":\"UNAUTHORIZED\""),
        "directive outcomes are logged"
    );
    assert!(logs.contains("TRACE"), "trace-level lines were captured");

    assert!(
        logs.contains("directive received") && logs.contains("[redacted]"),
        "directives are traced, redacted"
    );
    assert!(
        logs.contains("google request received") && logs.contains("challengeFailedPinNeeded"),
        "google requests are traced and their outcomes logged"
    );
    assert_clean(&logs, &[signature(&t), signature(&admin)]);
    assert!(h.signals().await.contains(&"121/1/1".to_string()));
}

#[tokio::test]
async fn the_deployed_binaries_log_no_pin_token_or_secret_at_trace() {
    let (h, mut env) = world_with(DemoConfig::parse(CONFIG).unwrap()).await;
    for (k, v) in env.iter_mut() {
        if k == "AWS_LAMBDA_LOG_LEVEL" {
            *v = "TRACE".into();
        }
    }
    // The runtime's own variable wins; RUST_LOG asking for every crate must not matter either.
    env.push(("RUST_LOG".into(), "trace".into()));
    let secret_values: Vec<String> = env
        .iter()
        .filter(|(k, _)| {
            [
                "PEPPER",
                "LWA_CLIENT_SECRET",
                "WEBHOOK_SECRET",
                "PANEL_API_KEY",
            ]
            .contains(&k.as_str())
        })
        .map(|(_, v)| v.clone())
        .collect();
    let t = h.token("demo").await;
    let admin = h.admin_token("demo").await;

    let mut f = Function::start(support::lambda::DIRECTIVE, &env).await;
    f.invoke(discover(&t)).await;
    f.invoke(accept_grant(&t, "grant-code-0591")).await;
    for pin in ["0472", "0815", "0246", "0591", "0246", "0472", "0815"] {
        h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
        let (kind, _, _) = f.invoke(disarm(&t, "home", Some(pin))).await;
        assert_eq!(kind, "response");
    }
    let mut typed = disarm(&t, "home", Some("0472"));
    typed["directive"]["payload"]["authorization"]["type"] = json!("SIX_DIGIT_PIN");
    f.invoke(typed).await;
    let mut misplaced = disarm(&t, "home", Some("0815"));
    misplaced["directive"]["payload"]["authorization"] = json!(["0815"]);
    f.invoke(misplaced).await;
    let bootstrap_logs = f.logs().await;

    let mut f = Function::start(support::lambda::HTTP_API, &env).await;
    let bearer =
        json!({"authorization": format!("Bearer {admin}"), "content-type": "application/json"});
    for (path, body) in [
        ("/v1/household/members/sam/voice-pin", r#"{"pin":"0913"}"#),
        ("/v1/household/members/sam/voice-pin", r#"{"pin":"0123"}"#),
        ("/v1/household/members/sam/duress-pin", r#"{"pin":"0814"}"#),
        ("/v1/household/members/sam/voice-pin", r#"{"pin":"0246""#),
    ] {
        let (kind, _, r) = f
            .invoke(http_event("PUT", path, bearer.clone(), Some(body)))
            .await;
        assert_eq!(kind, "response", "{r}");
    }
    let (_, _, r) = f
        .invoke(http_event(
            "GET",
            "/v1/household/members",
            bearer.clone(),
            None,
        ))
        .await;
    assert_eq!(r["statusCode"], 200, "{r}");
    // Google's fulfillment, in the same function: every kind of code through the challenge.
    let google =
        json!({"authorization": format!("Bearer {t}"), "content-type": "application/json"});
    for pin in ["0472", "0815", "0246", "0591"] {
        h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
        let body = g::disarm("home", Some(pin)).to_string();
        let (kind, _, r) = f
            .invoke(http_event("POST", g::PATH, google.clone(), Some(&body)))
            .await;
        assert_eq!(kind, "response", "{r}");
        assert_eq!(r["statusCode"], 200, "{r}");
    }
    let body = g::disarm("home", Some("0815")).to_string();
    f.invoke(http_event(
        "POST",
        g::PATH,
        google.clone(),
        Some(&body[..body.len() - 4]),
    ))
    .await;
    let http_logs = f.logs().await;
    assert!(
        http_logs.contains("google intent handled")
            // The directive function's wrong codes above locked voice codes out.
            && http_logs.contains("tooManyFailedAttempts"),
        "the http-api function ran the Google intents:\n{http_logs}"
    );

    for (name, logs) in [("bootstrap", &bootstrap_logs), ("http-api", &http_logs)] {
        let lines: Vec<serde_json::Value> = logs
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(lines.len() >= 5, "{name} logged JSON lines:\n{logs}");
        // TRACE is in effect for the skill's own code...
        assert!(
            lines
                .iter()
                .any(|l| l["level"] == "TRACE" || l["level"] == "DEBUG"),
            "{name}: no line below INFO, so the test would prove nothing:\n{logs}"
        );
        // ...and for no other crate: what lambda_runtime logs at TRACE is the raw event.
        assert!(!logs.contains("lambda_runtime"), "{name}:\n{logs}");
        let mut secrets: Vec<&str> = vec![signature(&t), signature(&admin), "grant-code-0591"];
        secrets.extend(secret_values.iter().map(String::as_str));
        assert_clean(logs, &secrets);
    }
}

/// The check every PIN-leak assertion uses: a leaked PIN is found in each form it can take,
/// while its four digits inside a timestamp, a duration, a port or a UUID are not (that once
/// failed tests/it/metrics.rs at random: an EMF line's `"Timestamp":1796589547297`).
#[test]
fn a_pin_is_found_as_a_token_not_as_digits_inside_another_number() {
    for leak in [
        r#"{"pin":"4729"}"#,
        r#"{"value":4729}"#,
        "code=4729 rejected",
        "4729",
        "PIN 4729.",
    ] {
        assert!(support::holds_pin(leak, "4729"), "{leak}");
    }
    for noise in [
        r#"{"Timestamp":1796589547297}"#,
        r#"{"DirectiveDuration":5.6047290001}"#,
        "http://127.0.0.1:34729/v1/household",
        "request 1b4d4729-4729-4a1e-8c2f-9e0b4729aa01 done",
        "at 2026-12-06T20:47:29.847291Z",
    ] {
        assert!(!support::holds_pin(noise, "4729"), "{noise}");
    }
}
