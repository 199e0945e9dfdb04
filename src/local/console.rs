//! The local console at `http://127.0.0.1:9000/`: the simulated panel, a box to speak to Alexa
//! or Google, what the household sees (the assistant's replies, the panel state, the
//! notifications) and what the monitoring center receives and dispatches, side by side, and
//! what the household's Echo devices play (`echo.js`, from `GET /dev/echo`). It polls the
//! `/sim/*` endpoints and `/dev/transcript`; speaking goes through `POST /dev/say`, which
//! `alarm-skill say` uses too, so the transcript holds every utterance the stack served, from
//! either. The page is served with the state already in it (the first paint shows the panel, not
//! empty boxes until the script has run); the script then renders the same JSON the same way.
//! Local only.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::BANNER;
use super::say::{Assistant, MODES, Say, Utterance};
use super::simulator::Simulator;
use crate::common::clock::Clock;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const ECHO_SCRIPT: &str = include_str!("console/echo.js");
const STYLE: &str = include_str!("console/console.css");

/// How many utterances the transcript keeps, oldest dropped first: a demo's worth, and a
/// script saying things in a loop can't grow the stack's memory.
pub const TRANSCRIPT_LEN: usize = 100;

/// The Contact ID events the console names; others show as "event".
const CONTACT_IDS: [(&str, &str); 15] = [
    ("121", "Duress"),
    ("130", "Burglary"),
    ("131", "Perimeter burglary"),
    ("132", "Interior burglary"),
    ("134", "Entry/exit burglary"),
    ("110", "Fire"),
    ("162", "Carbon monoxide"),
    ("154", "Water leak"),
    ("301", "AC power loss"),
    ("350", "Communication trouble"),
    ("401", "Open/close by user"),
    ("406", "Cancel"),
    ("570", "Zone bypass"),
    ("602", "Periodic test"),
    ("461", "Wrong code entry"),
];

/// The panel cloud API's fault modes as the console's control and its status line both word
/// them (the status line reads the control's option), so the two never disagree.
const FAULTS: [(&str, &str); 6] = [
    ("none", "working"),
    ("down", "down"),
    ("error", "answers 500"),
    ("timeout", "hangs"),
    ("slow", "slow (2 s)"),
    ("not_found", "gateway 404"),
];

fn csp() -> String {
    crate::edges::webapp::app_csp(None)
}

/// One utterance the stack served, as the transcript shows it: never the code said.
#[derive(Debug, Clone, Serialize)]
pub struct Said {
    pub at: DateTime<Utc>,
    pub account: String,
    /// "Alexa" or "Google".
    pub assistant: &'static str,
    /// What was said ([`Utterance::words`]).
    pub said: String,
    /// What the assistant answered, or `None` when the stack could not be asked.
    pub speech: Option<String>,
    pub error: Option<String>,
}

/// The last [`TRANSCRIPT_LEN`] utterances.
#[derive(Debug, Default)]
pub struct Transcript(Mutex<VecDeque<Said>>);

impl Transcript {
    pub fn push(&self, said: Said) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while q.len() >= TRANSCRIPT_LEN {
            q.pop_front();
        }
        q.push_back(said);
    }

    /// Oldest first.
    pub fn entries(&self) -> Vec<Said> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().cloned().collect()
    }
}

#[derive(Clone)]
struct Console {
    base: String,
    sim: Arc<Simulator>,
    transcript: Arc<Transcript>,
}

/// `/`: the console for a browser, the stack's banner for anything else (curl, scripts).
async fn root(State(c): State<Console>, headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        let mut resp = (StatusCode::OK, first_paint(&c)).into_response();
        crate::edges::webapp::secure(&mut resp, "text/html; charset=utf-8", &csp());
        resp
    } else {
        Json(json!({ "service": BANNER, "docs": "README.md", "console": "open / in a browser" }))
            .into_response()
    }
}

use crate::local::html_escape as esc;

fn words(s: &str) -> String {
    s.replace('_', " ")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The time of day of one of the stack's UTC times (`2026-01-05T09:30:00.123Z`), read off the
/// text as console.js reads it.
fn time_of_day(v: &Value) -> String {
    v.as_str()
        .and_then(|s| s.get(11..19))
        .unwrap_or_default()
        .to_string()
}

/// A list item as console.js's `item` makes it: the class first, then the data attributes in
/// the order the script sets them, so the first paint and the script's first render are the
/// same markup.
fn li(text: &str, class: &str, data: &[(&str, &str)]) -> String {
    let class = match class {
        "" => String::new(),
        c => format!(" class=\"{}\"", esc(c)),
    };
    let data: String = data
        .iter()
        .map(|(k, v)| format!(" data-{k}=\"{}\"", esc(v)))
        .collect();
    format!("<li{class}{data}>{}</li>", esc(text))
}

fn panel_html(p: &Value) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        (
            "Panel",
            format!("{} ({})", text(&p["name"]), text(&p["id"])),
        ),
        ("State", words(&text(&p["arm_state"]))),
    ];
    let mut phase = words(&text(&p["phase"]));
    if let Value::Number(n) = &p["delay_remaining_s"]
        && n.as_f64() != Some(0.0)
    {
        let _ = write!(phase, " · {n} s left");
    }
    rows.push(("Phase", phase));
    rows.push((
        "Delays",
        format!(
            "exit {} s, entry {} s",
            text(&p["exit_delay_s"]),
            text(&p["entry_delay_s"])
        ),
    ));
    // Sorted here and in console.js: a JSON object's order is not the same on both sides.
    let mut alarms: Vec<String> = p["alarms"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| **v == Value::Bool(true))
                .map(|(k, _)| words(k))
                .collect()
        })
        .unwrap_or_default();
    alarms.sort();
    rows.push((
        "Siren",
        match alarms.is_empty() {
            true => "off".to_string(),
            false => format!("sounding: {}", alarms.join(", ")),
        },
    ));
    let trouble: Vec<String> = p["trouble"]
        .as_array()
        .map(|a| a.iter().map(|t| words(&text(t))).collect())
        .unwrap_or_default();
    rows.push((
        "Trouble",
        match trouble.is_empty() {
            true => "none".to_string(),
            false => trouble.join(", "),
        },
    ));
    rows.push((
        "Online",
        if p["online"] == true { "yes" } else { "no" }.to_string(),
    ));
    let mut dl = String::from("<dl>");
    for (k, v) in rows {
        let _ = write!(dl, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    dl.push_str("</dl>");
    dl
}

fn zones_html(p: &Value) -> String {
    let mut out = String::new();
    for z in p["zones"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = text(&z["name"]);
        let open = z["open"] == true;
        let label = format!(
            "{name} (#{}, {}): {}{}",
            text(&z["number"]),
            words(&text(&z["kind"])),
            if open { "open" } else { "closed" },
            if z["bypassed"] == true {
                ", bypassed"
            } else {
                ""
            },
        );
        let verb = if open { "Close" } else { "Open" };
        let _ = write!(
            out,
            "<li data-zone=\"{}\"><span>{}</span> <button type=\"button\" aria-label=\"{}\">{verb}</button></li>",
            esc(&text(&z["id"])),
            esc(&label),
            esc(&format!("{verb} {name}")),
        );
    }
    out
}

fn event_html(e: &Value) -> String {
    let code = text(&e["code"]);
    let name = CONTACT_IDS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("event", |(_, n)| n);
    let mut s = format!("{} · {code} {name}", time_of_day(&e["at"]));
    if e["qualifier"] == 3 {
        s.push_str(" (restore)");
    }
    if !e["user"].is_null() {
        let _ = write!(s, " · user {}", text(&e["user"]));
    }
    if !e["zone"].is_null() {
        let _ = write!(s, " · zone {}", text(&e["zone"]));
    }
    // Which transmitter's line carried it (docs/panel-api.md, "Merging the two paths").
    let path = text(&e["path"]);
    let _ = write!(s, " · via {}", words(&path));
    let merged = e["merged"] == true;
    if merged {
        s.push_str(" · merged: already dispatched");
    }
    if !e["cleared_at"].is_null() {
        let _ = write!(
            s,
            " · cleared: the panel cloud reported at {}",
            time_of_day(&e["cleared_at"])
        );
    }
    let class = match (code.as_str(), merged) {
        (_, true) => "merged",
        ("121", false) => "alert",
        _ => "",
    };
    li(
        &s,
        class,
        &[("code", code.as_str()), ("path", path.as_str())],
    )
}

fn dispatch_html(d: &Value) -> String {
    let reason = text(&d["reason"]);
    let mut s = format!("{} · {}", time_of_day(&d["at"]), words(&reason));
    if !d["user"].is_null() {
        let _ = write!(s, " · user {}", text(&d["user"]));
    }
    let _ = write!(s, " · {}", text(&d["why"]));
    if d["cancelled"] == true {
        s.push_str(" (cancelled)");
    }
    let class = if reason == "duress" { "alert" } else { "" };
    li(&s, class, &[("reason", reason.as_str())])
}

fn said_html(s: &Value) -> String {
    let assistant = text(&s["assistant"]);
    let reply = match s["speech"].as_str() {
        Some(speech) => format!("{assistant}: {speech}"),
        None => format!("Error: {}", text(&s["error"])),
    };
    let you = format!("You: {assistant}, {}.", text(&s["said"]));
    li(&reply, "reply", &[]) + &li(&you, "you", &[])
}

/// `items` of `account`, newest first, each rendered by `one`.
fn newest_first(items: &Value, account: &str, one: impl Fn(&Value) -> String) -> String {
    items
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|v| v["account"] == account)
        .rev()
        .map(one)
        .collect()
}

fn to_json<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The page with the state the script's first poll would show: the same JSON documents its
/// endpoints serve, rendered the same way, for the first account (the one the script picks).
fn first_paint(c: &Console) -> String {
    let panels: Vec<(String, Value)> = c
        .sim
        .snapshot()
        .into_iter()
        .map(|(account, p)| (account, to_json(p)))
        .collect();
    let mut accounts: Vec<&str> = vec![];
    for (a, _) in &panels {
        if !accounts.contains(&a.as_str()) {
            accounts.push(a);
        }
    }
    let account = accounts.first().copied().unwrap_or_default();
    let mine: Vec<&Value> = panels
        .iter()
        .filter(|(a, _)| a == account)
        .map(|(_, p)| p)
        .collect();
    let options: String = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let selected = if i == 0 { " selected" } else { "" };
            format!("<option value=\"{0}\"{selected}>{0}</option>", esc(a))
        })
        .collect();
    let fault_mode = text(&to_json(c.sim.fault())["mode"]);
    let fault_options: String = FAULTS
        .iter()
        .map(|(mode, label)| {
            let selected = if *mode == fault_mode { " selected" } else { "" };
            format!("<option value=\"{mode}\"{selected}>{label}</option>")
        })
        .collect();
    let fault_words = FAULTS
        .iter()
        .find(|(m, _)| *m == fault_mode)
        .map_or_else(|| words(&fault_mode), |(_, w)| w.to_string());
    let names: serde_json::Map<String, Value> = CONTACT_IDS
        .iter()
        .map(|(c, n)| (c.to_string(), json!(n)))
        .collect();
    let state = mine
        .last()
        .map(|p| text(&p["arm_state"]))
        .unwrap_or_default();
    INDEX
        .replace("{{accounts}}", &options)
        .replace("{{panel-state}}", &esc(&state))
        .replace(
            "{{panel}}",
            &mine.iter().map(|p| panel_html(p)).collect::<String>(),
        )
        .replace(
            "{{zones}}",
            &mine.iter().map(|p| zones_html(p)).collect::<String>(),
        )
        .replace("{{fault-options}}", &fault_options)
        .replace(
            "{{fault-state}}",
            &esc(&format!("Panel cloud API now: {fault_words}")),
        )
        .replace(
            "{{transcript}}",
            &newest_first(&to_json(c.transcript.entries()), account, said_html),
        )
        .replace(
            "{{notifications}}",
            &newest_first(&to_json(c.sim.notifications()), account, |n| {
                li(
                    &format!("{} · {}", time_of_day(&n["at"]), text(&n["message"])),
                    "",
                    &[],
                )
            }),
        )
        .replace("{{contact-ids}}", &esc(&Value::Object(names).to_string()))
        .replace(
            "{{events}}",
            &newest_first(&to_json(c.sim.received()), account, event_html),
        )
        .replace(
            "{{dispatches}}",
            &newest_first(&to_json(c.sim.dispatches()), account, dispatch_html),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Discover,
    Status,
    Arm,
    Disarm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SayRequest {
    #[serde(default = "demo")]
    account: String,
    #[serde(default)]
    assistant: Option<String>,
    command: Command,
    #[serde(default = "home")]
    endpoint: String,
    #[serde(default)]
    mode: Option<String>,
    /// Never echoed: a malformed body gets a fixed message, not serde's (which quotes values).
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    bypass: bool,
}

fn demo() -> String {
    "demo".to_string()
}

fn home() -> String {
    "home".to_string()
}

fn bad(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "bad_request", "message": message})),
    )
        .into_response()
}

/// `POST /dev/say`: speaks to the stack as an assistant, notes it in the transcript and returns
/// what the assistant would say, with its raw reply.
async fn say(State(c): State<Console>, body: Result<Json<SayRequest>, JsonRejection>) -> Response {
    let Ok(Json(req)) = body else {
        return bad(
            "body: {\"assistant\":\"alexa\"|\"google\",\"command\":\"discover\"|\"status\"|\"arm\"|\"disarm\",\
             \"endpoint\",\"mode\":\"away\"|\"stay\"|\"night\",\"pin\",\"bypass\",\"account\"}",
        );
    };
    let assistant = match req.assistant.as_deref() {
        None | Some("alexa") => Assistant::Alexa,
        Some("google") => Assistant::Google,
        Some(_) => return bad("assistant must be alexa or google"),
    };
    let utterance = match req.command {
        Command::Discover => Utterance::Discover,
        Command::Status => Utterance::Status {
            endpoint: req.endpoint,
        },
        Command::Arm => Utterance::Arm {
            endpoint: req.endpoint,
            mode: {
                let mode = req.mode.as_deref().unwrap_or("away");
                match MODES.iter().find(|(word, _)| *word == mode) {
                    Some((_, alexa)) => alexa,
                    None => return bad("mode must be away, stay or night"),
                }
            },
            bypass: req.bypass,
        },
        Command::Disarm => Utterance::Disarm {
            endpoint: req.endpoint,
            pin: req.pin.filter(|p| !p.is_empty()),
        },
    };
    let client = Say::new(&c.base, &req.account).with_assistant(assistant);
    let outcome = client.say(&utterance).await;
    let mut said = Said {
        at: c.sim.clock().now(),
        account: req.account,
        assistant: assistant.name(),
        said: utterance.words(),
        speech: None,
        error: None,
    };
    let resp = match outcome {
        Ok((speech, reply)) => {
            said.speech = Some(speech.clone());
            Json(json!({ "assistant": assistant.name(), "speech": speech, "reply": reply }))
                .into_response()
        }
        Err(e) => {
            said.error = Some(e.to_string());
            (
                StatusCode::BAD_GATEWAY,
                Json(json!({"error": "unreachable", "message": e.to_string()})),
            )
                .into_response()
        }
    };
    c.transcript.push(said);
    resp
}

/// `/`, `/console/console.js`, `/console/echo.js`, `/console/console.css`, `POST /dev/say`,
/// `GET /dev/transcript`.
pub fn routes(base_url: String, sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/", get(root))
        .route(
            "/console/console.js",
            get(|| async {
                crate::edges::webapp::page(SCRIPT, "text/javascript; charset=utf-8", &csp())
            }),
        )
        .route(
            "/console/echo.js",
            get(|| async {
                crate::edges::webapp::page(ECHO_SCRIPT, "text/javascript; charset=utf-8", &csp())
            }),
        )
        .route(
            "/console/console.css",
            get(|| async { crate::edges::webapp::page(STYLE, "text/css; charset=utf-8", &csp()) }),
        )
        .route("/dev/say", post(say))
        .route(
            "/dev/transcript",
            get(|State(c): State<Console>| async move {
                Json(json!({ "entries": c.transcript.entries() }))
            }),
        )
        .with_state(Console {
            base: base_url,
            sim,
            transcript: Arc::new(Transcript::default()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(n: usize) -> Said {
        Said {
            at: Utc::now(),
            account: "demo".into(),
            assistant: "Alexa",
            said: format!("status of zone-{n}"),
            speech: Some("Home is disarmed.".into()),
            error: None,
        }
    }

    #[test]
    fn the_transcript_keeps_the_latest_utterances_only() {
        let t = Transcript::default();
        for n in 0..TRANSCRIPT_LEN + 7 {
            t.push(said(n));
        }
        let kept = t.entries();
        assert_eq!(kept.len(), TRANSCRIPT_LEN);
        assert_eq!(kept[0].said, "status of zone-7", "the oldest went first");
        assert_eq!(
            kept[TRANSCRIPT_LEN - 1].said,
            format!("status of zone-{}", TRANSCRIPT_LEN + 6)
        );
    }

    #[test]
    fn a_disarm_reads_alike_in_the_transcript_whatever_the_code() {
        let words = |pin: &str| {
            Utterance::Disarm {
                endpoint: "home".into(),
                pin: Some(pin.into()),
            }
            .words()
        };
        assert_eq!(words("4729"), "disarm home (with a code)");
        assert_eq!(words("8361"), words("4729"));
    }
}
