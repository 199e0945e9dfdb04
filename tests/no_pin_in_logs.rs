//! No PIN and no bearer token in any log line, at any level, from any crate.
//!
//! A global TRACE subscriber (JSON, like Lambda's) captures everything while a session runs
//! through every path a PIN touches: enrolment (accepted and rejected), disarm with the normal,
//! duress and wrong codes, lockout, ill-typed and malformed directives, and a panel outage with
//! re-delivery. This file holds a single test because the subscriber is process-wide.
//!
//! The PINs start with 0 on purpose: no number in a log line (elapsed times, ports, counts)
//! prints with a leading zero, so a match can only be a leak. UUIDs are blanked before
//! matching, since one of their 4-hex-digit groups could spell a PIN by chance.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use serde_json::json;
use support::stack::*;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

const CONFIG: &str = r#"{
  "accounts": [{"id": "demo", "users": [{"number": 1, "name": "Alex"}, {"number": 2, "name": "Sam"}],
    "panels": [{"id": "home", "name": "Home", "zones": [
      {"id": "front-door", "number": 1, "name": "Front door", "kind": "contact", "entry": true}]}]}],
  "households": [{"account": "demo", "members": [
    {"id": "alex", "name": "Alex", "user_number": 1, "voice_pin": "0472", "duress_pin": "0815"},
    {"id": "sam", "name": "Sam", "user_number": 2}]}]
}"#;

const PINS: [&str; 7] = ["0472", "0815", "0913", "0246", "0591", "0123", "0814"];

/// Replaces every 8-4-4-4-12 hex UUID with a placeholder.
fn blank_uuids(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < b.len() {
        if i + 36 <= b.len() {
            let cand = &b[i..i + 36];
            let shape_ok = cand.iter().enumerate().all(|(j, c)| match j {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            });
            if shape_ok {
                out.push_str("<uuid>");
                i += 36;
                continue 'outer;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
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
        h.api(
            "PUT",
            "/v1/household/members/sam/voice-pin",
            Some(&admin),
            Some(json!({"pin": pin})),
        )
        .await;
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
    // Give the webhook sender and the ChangeReports time to be logged too.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines = logs.lines().count();
    assert!(lines > 200, "the capture works ({lines} lines)");
    assert!(
        logs.contains("\"error_type\":\"UNAUTHORIZED\""),
        "directive outcomes are logged"
    );
    assert!(logs.contains("TRACE"), "trace-level lines were captured");

    let blanked = blank_uuids(&logs);
    let tokens: std::collections::HashSet<&str> = blanked
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect();
    for pin in PINS {
        assert!(!tokens.contains(pin), "PIN {pin} appears in the logs");
    }
    for token in [&t, &admin] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "a bearer token appears in the logs"
        );
    }
    assert!(h.signals().await.contains(&"121/1/1".to_string()));
}
