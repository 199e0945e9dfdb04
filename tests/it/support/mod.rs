//! Shared helpers for the integration tests (`crate::support` in every suite of tests/it).
#![allow(dead_code)]

#[cfg(feature = "local")]
pub mod dc09;
pub mod google;
#[cfg(feature = "local")]
pub mod lambda;
pub mod logs;
pub mod proxy;
#[cfg(feature = "local")]
pub mod stack;
#[cfg(feature = "local")]
pub mod webdriver;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(default))
}

fn write(dir: PathBuf, name: &str, message: &Value) {
    std::fs::create_dir_all(&dir).expect("create message dir");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = dir.join(format!("{safe}-{}-{n}.json", std::process::id()));
    std::fs::write(file, serde_json::to_vec_pretty(message).expect("json")).expect("write message");
}

/// `alarm-skill serve` with every listener on a free port (the process prints the addresses).
pub const SERVE_ON_FREE_PORTS: [&str; 7] = [
    "serve",
    "--port",
    "0",
    "--panel-port",
    "0",
    "--receiver-port",
    "0",
];

/// Records a message the skill sent (response, error, report, event) for CI, which validates
/// every file in `target/alexa-messages` against Amazon's schema.
pub fn record_message(name: &str, message: &Value) {
    write(
        dir("ALEXA_MESSAGES_DIR", "target/alexa-messages"),
        name,
        message,
    );
}

/// Records a message the skill sent to Google (a fulfillment reply, or a HomeGraph body) for CI,
/// which validates every file in `target/google-messages/{kind}` against Google's schemas
/// (`../shared/tools/validate-google-json`). `kind` is one of `sync`, `query`, `execute`,
/// `disconnect`, `report-state`.
pub fn record_google_message(kind: &str, name: &str, message: &Value) {
    write(
        dir("GOOGLE_MESSAGES_DIR", "target/google-messages").join(kind),
        name,
        message,
    );
}

/// Records a whole-request error reply to Google (`payload.errorCode` only, as Google documents
/// it), which its SYNC and QUERY schemas don't model: checked by `google::check_shape`.
pub fn record_google_unschematized(kind: &str, name: &str, message: &Value) {
    write(
        dir("GOOGLE_EXTRA_MESSAGES_DIR", "target/google-messages-extra").join(kind),
        name,
        message,
    );
}

/// Records a message the schema doesn't cover (DeleteReport), checked by hand in its test.
pub fn record_unschematized(name: &str, message: &Value) {
    write(
        dir("ALEXA_EXTRA_MESSAGES_DIR", "target/alexa-messages-extra"),
        name,
        message,
    );
}

/// Records DC-09 frames the panel cloud sent (`GET /sim/monitoring/link` → `sent`), one JSON
/// file per test, for CI, which decodes every one of them with an independent implementation
/// (pysiaalarm, scripts/check-dc09-frames). `key` is the link's AES key (hex), if encrypted.
pub fn record_dc09_frames(name: &str, sent: &[Value], key: Option<&str>) {
    let frames: Vec<Value> = sent
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f["key"] = key.map_or(Value::Null, |k| Value::String(k.to_string()));
            f
        })
        .collect();
    write(
        dir("DC09_FRAMES_DIR", "target/dc09-frames"),
        name,
        &Value::Array(frames),
    );
}

/// Replaces every 8-4-4-4-12 hex UUID with a placeholder.
pub fn blank_uuids(text: &str) -> String {
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

/// Whether `pin` occurs in `text` as a token of its own (a run of letters and digits), UUIDs
/// left out. A plain substring test is wrong both ways round: a millisecond timestamp, a
/// duration or a request id holds any four digits now and then (a test then fails at random),
/// while a PIN that leaks is always a token: `"pin":"4729"`, `pin=4729`, `4729 rejected`.
pub fn holds_pin(text: &str, pin: &str) -> bool {
    blank_uuids(text)
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| t == pin)
}

/// Serves `app` on a fresh local port until the test ends; its address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The string `field` of each element of the JSON array `array`; panics where one is missing.
pub fn strings<'a>(array: &'a Value, field: &str) -> Vec<&'a str> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap())
        .collect()
}
