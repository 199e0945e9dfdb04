//! Metrics (src/domain/metrics.rs) through the same handler the Lambda runs: one embedded-metric-format
//! line per directive, outcomes and port failures counted, and nothing that could tell a duress
//! disarm from a normal one or name a household.

use crate::support;

use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use serde_json::Value;
use support::stack::*;

async fn metered() -> Harness {
    Harness::start_with(Options {
        config: DemoConfig::demo(),
        metrics: true,
        ..test_options()
    })
    .await
}

fn lines(h: &Harness) -> Vec<Value> {
    h.stack
        .metrics
        .as_ref()
        .expect("metrics on")
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).expect("a metrics line is JSON"))
        .collect()
}

/// Every metric a line declares is a number at its root; every dimension a string there.
fn assert_emf(v: &Value) {
    let directives = v["_aws"]["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(v["_aws"]["Timestamp"].is_i64());
    for d in directives {
        assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
        for m in d["Metrics"].as_array().expect("Metrics") {
            assert!(v[m["Name"].as_str().expect("Name")].is_number(), "{v}");
        }
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            for dim in set.as_array().expect("dimension set") {
                assert!(v[dim.as_str().expect("dimension")].is_string(), "{v}");
            }
        }
    }
}

/// The line without what differs between any two directives.
/// An EMF line's keys, strings and whole numbers: where a PIN could leak. Fractional numbers
/// are measurements (durations), whose digits hold any four now and then.
fn words(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {}", words(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Array(a) => a.iter().map(words).collect::<Vec<_>>().join(" "),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => String::new(),
        other => other.to_string(),
    }
}

fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    v["_aws"]["Timestamp"] = Value::Null;
    v["DirectiveDuration"] = Value::Null;
    v
}

#[tokio::test]
async fn one_line_per_directive_with_its_outcome_and_port_failures() {
    let h = metered().await;
    let token = h.token("demo").await;
    h.invoke(&discover(&token)).await;
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    h.invoke(&disarm(&token, "home", Some("1111"))).await;
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    h.fault("error", 0).await;
    let reply = h.invoke(&disarm(&token, "home", Some("4729"))).await;
    assert_eq!(error_type(&reply), Some("BRIDGE_UNREACHABLE"));
    h.fault("none", 0).await;

    let l = lines(&h);
    assert_eq!(l.len(), 5, "one line per directive");
    l.iter().for_each(assert_emf);
    let outcomes: Vec<(&str, &str)> = l
        .iter()
        .map(|v| {
            (
                v["Directive"].as_str().unwrap(),
                v["Outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("Discover", "ok"),
            ("Arm", "ok"),
            ("Disarm", "UNAUTHORIZED"),
            ("Arm", "ok"),
            ("Disarm", "BRIDGE_UNREACHABLE"),
        ]
    );
    let last = &l[4];
    assert!(last["PanelServerError"].as_f64().unwrap() >= 1.0, "{last}");
    assert!(last["PanelCalls"].as_f64().unwrap() >= 2.0, "{last}");
    assert!(last["StoreCalls"].as_f64().unwrap() >= 1.0, "{last}");
    assert_eq!(l[0]["PanelServerError"], 0.0);
    assert!(
        l.iter()
            .all(|v| v["DirectiveDuration"].as_f64().unwrap() >= 0.0)
    );
}

#[tokio::test]
async fn a_duress_disarm_writes_the_same_line_as_a_normal_one_and_no_line_names_the_household() {
    let h = metered().await;
    let token = h.token("demo").await;
    let mut disarms = Vec::new();
    for pin in ["4729", "8361", "4729", "8361"] {
        h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
        let reply = h.invoke(&disarm(&token, "home", Some(pin))).await;
        assert_eq!(reply["event"]["header"]["name"], "Response");
        disarms.push(lines(&h).last().cloned().unwrap());
    }
    assert_eq!(comparable(&disarms[0]), comparable(&disarms[1]));
    assert_eq!(comparable(&disarms[2]), comparable(&disarms[3]));
    // Also during a lockout: three wrong codes, then the duress and the right code.
    for _ in 0..3 {
        h.invoke(&disarm(&token, "home", Some("1111"))).await;
    }
    let mut locked = Vec::new();
    for pin in ["8361", "4729"] {
        h.invoke(&disarm(&token, "home", Some(pin))).await;
        locked.push(comparable(lines(&h).last().unwrap()));
    }
    assert_eq!(locked[0], locked[1]);
    assert!(h.signals().await.iter().any(|s| s.starts_with("121/")));
    for line in h.stack.metrics.as_ref().unwrap().lock().unwrap().iter() {
        for id in ["demo", "home", "alex", "Alex", "duress", &token] {
            assert!(!line.contains(id), "{id} in {line}");
        }
        let words = words(&serde_json::from_str(line).unwrap());
        for pin in ["8361", "4729"] {
            assert!(!support::holds_pin(&words, pin), "{pin} in {line}");
        }
    }
}
