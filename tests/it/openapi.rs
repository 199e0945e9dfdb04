//! docs/openapi/*.json against the code and the prose:
//! - every route the code registers (axum `.route(...)` calls, read from the source) is in the
//!   OpenAPI file, and every OpenAPI operation is a registered route;
//! - every operation, called on a running local stack, answers a status the file documents, and
//!   its 2xx body matches the documented schema;
//! - every example in the files matches its schema; every `$ref` resolves;
//! - docs/panel-api.md has a heading for exactly the panel API's operations.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;

use alarm_skill::local::conformance::schema::{self, validate, validate_named};
use serde_json::{Value, json};
use support::stack::*;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn source(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// (METHOD, path) of every `.route("path", method(..).method(..))` call in `src`: the methods
/// are the calls at the top level of the route's argument list, not those inside handlers.
fn routes_in(src: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let bytes = src.as_bytes();
    let mut from = 0;
    while let Some(i) = src[from..].find(".route(") {
        let start = from + i + ".route(".len();
        from = start;
        let rest = &src[start..];
        let Some(q1) = rest.find('"') else { break };
        let Some(q2) = rest[q1 + 1..].find('"') else {
            break;
        };
        let path = rest[q1 + 1..q1 + 1 + q2].to_string();
        // Walk the argument list at depth 0 (relative to the route's parenthesis).
        let mut depth = 0i32;
        let mut j = start + q1 + q2 + 2;
        let mut in_str = false;
        while j < bytes.len() {
            let c = bytes[j] as char;
            if in_str {
                if c == '\\' {
                    j += 1;
                } else if c == '"' {
                    in_str = false;
                }
            } else if c == '"' {
                in_str = true;
            } else if c == '(' {
                if depth == 0 {
                    let word: String = src[..j]
                        .chars()
                        .rev()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    if METHODS.contains(&word.as_str()) {
                        out.insert((word.to_uppercase(), path.clone()));
                    }
                }
                depth += 1;
            } else if c == ')' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            j += 1;
        }
    }
    out
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// A source route path matches an OpenAPI path when every segment is equal, or the source has
/// a parameter there (axum's `{slot}` serves several documented paths).
fn matches(source: &str, documented: &str) -> bool {
    let s: Vec<&str> = source.split('/').collect();
    let d: Vec<&str> = documented.split('/').collect();
    s.len() == d.len()
        && s.iter().zip(&d).all(|(a, b)| {
            let param = |x: &str| x.starts_with('{') && x.ends_with('}');
            a == b || (param(a) && (param(b) || !b.is_empty()))
        })
}

fn compare(name: &str, code: &BTreeSet<(String, String)>, doc: &BTreeSet<(String, String)>) {
    assert!(!code.is_empty(), "{name}: no routes found in the source");
    for (m, p) in code {
        assert!(
            doc.iter().any(|(dm, dp)| dm == m && matches(p, dp)),
            "{name}: the code serves {m} {p}, which the OpenAPI file lacks"
        );
    }
    for (m, p) in doc {
        assert!(
            code.iter().any(|(cm, cp)| cm == m && matches(cp, p)),
            "{name}: the OpenAPI file documents {m} {p}, which no route serves"
        );
    }
}

#[test]
fn openapi_operations_are_exactly_the_routes_the_code_registers() {
    let panel = schema::panel_api();
    let management = schema::management_api();
    for doc in [&panel, &management] {
        assert_eq!(doc["openapi"], "3.1.0");
    }
    let sim: BTreeSet<_> = routes_in(&source("src/local/simulator/http.rs"))
        .into_iter()
        .filter(|(_, p)| p.starts_with("/v1/"))
        .collect();
    compare("panel API", &sim, &operations(&panel));
    let mut skill = routes_in(&source("src/edges/management/mod.rs"));
    skill.extend(routes_in(&source("src/edges/webhook/handler.rs")));
    compare("management API", &skill, &operations(&management));
    // The webhook the panel cloud sends is the skill's webhook route, with the same body.
    assert_eq!(
        panel["webhooks"]["panelEvent"]["post"]["requestBody"],
        management["paths"]["/webhooks/panel"]["post"]["requestBody"]
    );
}

#[test]
fn the_route_scan_sees_methods_but_not_calls_inside_handlers() {
    let src = r#"Router::new().route("/a/{x}", get(|s| async move { s.get(1).post(2) }).put(h))
        .route("/b", delete(remove))"#;
    let found = routes_in(src);
    let want: BTreeSet<(String, String)> = [("GET", "/a/{x}"), ("PUT", "/a/{x}"), ("DELETE", "/b")]
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(found, want);
    assert!(matches("/m/{id}/{slot}", "/m/{id}/voice-pin"));
    assert!(!matches("/m/{id}", "/m/{id}/voice-pin"));
    assert!(!matches("/m/sync", "/m/{id}"));
}

#[test]
fn panel_api_md_has_a_heading_for_each_panel_api_operation() {
    let md = source("docs/panel-api.md");
    let mut documented = BTreeSet::new();
    for line in md.lines().filter(|l| l.starts_with("### `")) {
        for part in line.split('`').skip(1).step_by(2) {
            if let Some((m, p)) = part.split_once(' ')
                && METHODS.contains(&m.to_lowercase().as_str())
                && p.starts_with("/v1/")
            {
                documented.insert((m.to_string(), p.to_string()));
            }
        }
    }
    assert_eq!(documented, operations(&schema::panel_api()));
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_example_matches_its_schema_and_every_ref_resolves() {
    for doc in [schema::panel_api(), schema::management_api()] {
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in &all {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            assert!(doc["components"]["schemas"].get(name).is_some(), "{r}");
        }
        let mut checked = 0;
        for (name, s) in doc["components"]["schemas"].as_object().expect("schemas") {
            for ex in s["examples"].as_array().into_iter().flatten() {
                validate_named(&doc, name, ex).unwrap_or_else(|e| panic!("{name} example: {e}"));
                checked += 1;
            }
        }
        for item in doc["paths"].as_object().expect("paths").values() {
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let bodies = std::iter::once(&op["requestBody"]).chain(
                    op["responses"]
                        .as_object()
                        .into_iter()
                        .flat_map(|r| r.values()),
                );
                for b in bodies {
                    if let Some(media) = b["content"]["application/json"].as_object()
                        && let Some(ex) = media.get("example")
                    {
                        validate(&doc, &media["schema"], ex, "example").expect("media example");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 10, "only {checked} examples");
    }
}

/// A concrete path for a documented one.
fn concrete(path: &str, values: &[(&str, &str)]) -> String {
    let mut p = path.to_string();
    for (k, v) in values {
        p = p.replace(&format!("{{{k}}}"), v);
    }
    p
}

fn example_body(doc: &Value, op: &Value) -> Option<Value> {
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    let name = schema["$ref"].as_str()?.rsplit('/').next()?;
    doc["components"]["schemas"][name]["examples"][0]
        .clone()
        .as_object()
        .map(|o| Value::Object(o.clone()))
}

/// Calls every documented operation on a running stack: the status must be documented and a
/// 2xx body must match the documented schema.
async fn probe(
    h: &Harness,
    doc: &Value,
    base: &str,
    token: &str,
    params: &dyn Fn(&str) -> Vec<(&'static str, &'static str)>,
) {
    let mut calls = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let url = format!("{base}{}", concrete(path, &params(path)));
            let mut req = h
                .http
                .request(m.to_uppercase().parse().expect("method"), &url)
                .bearer_auth(token);
            if let Some(body) = example_body(doc, op) {
                req = req.json(&body);
            } else if op.get("requestBody").is_some() {
                req = req.json(&json!({}));
            }
            let resp = req.send().await.expect("call");
            let status = resp.status().as_u16().to_string();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let documented = &op["responses"][&status];
            assert!(
                documented.is_object(),
                "{} {path} answered {status}, which the OpenAPI file does not document: {body}",
                m.to_uppercase()
            );
            if status.starts_with('2')
                && let Some(s) = documented["content"]["application/json"]["schema"].as_object()
            {
                validate(doc, &Value::Object(s.clone()), &body, "$")
                    .unwrap_or_else(|e| panic!("{} {path}: {e}", m.to_uppercase()));
            }
            calls += 1;
        }
    }
    assert!(calls >= 10);
}

#[tokio::test]
async fn every_operation_answers_as_documented_on_the_local_stack() {
    // As `alarm-skill serve` runs it: the second path on, so panels carry monitoring details
    // (without a key: `key_ref` absent, never null).
    let h = Harness::start_with(alarm_skill::local::Options {
        second_path: true,
        ..crate::support::stack::test_options()
    })
    .await;
    let panel_base = format!("http://{}", h.stack.panel_api.addr());
    let key = h.stack.sim.api_key().expose().to_string();
    probe(&h, &schema::panel_api(), &panel_base, &key, &|_| {
        vec![("account", "demo"), ("panel", "home")]
    })
    .await;
    let admin = h.admin_token("demo").await;
    probe(
        &h,
        &schema::management_api(),
        &h.base.clone(),
        &admin,
        &|path| {
            let id = if path == "/v1/household/members/{id}" {
                "sam"
            } else {
                "alex"
            };
            vec![("id", id)]
        },
    )
    .await;
}
