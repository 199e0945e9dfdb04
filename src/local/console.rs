//! The local console at `http://127.0.0.1:9000/`: the simulated panel, a box to speak to Alexa
//! or Google, what the household sees (the assistant's replies, the panel state, the
//! notifications) and what the monitoring center receives and dispatches, side by side, and
//! what the household's Echo devices play (`echo.js`, from `GET /dev/echo`). It
//! polls the `/sim/*` endpoints; speaking goes through `POST /dev/say`, which runs the same
//! client as `alarm-skill say` against this stack. Local only.

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::BANNER;
use super::say::{Assistant, Say, Utterance};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const ECHO_SCRIPT: &str = include_str!("console/echo.js");
const STYLE: &str = include_str!("console/console.css");

fn csp() -> String {
    crate::edges::webapp::app_csp(None)
}

/// `/`: the console for a browser, the stack's banner for anything else (curl, scripts).
async fn root(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        crate::edges::webapp::page(INDEX, "text/html; charset=utf-8", &csp())
    } else {
        Json(json!({ "service": BANNER, "docs": "README.md", "console": "open / in a browser" }))
            .into_response()
    }
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

/// `POST /dev/say`: speaks to the stack as an assistant and returns what it would say.
async fn say(
    State(base): State<String>,
    body: Result<Json<SayRequest>, JsonRejection>,
) -> Response {
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
            mode: match req.mode.as_deref() {
                None | Some("away") => "ARMED_AWAY",
                Some("stay") => "ARMED_STAY",
                Some("night") => "ARMED_NIGHT",
                Some(_) => return bad("mode must be away, stay or night"),
            },
            bypass: req.bypass,
        },
        Command::Disarm => Utterance::Disarm {
            endpoint: req.endpoint,
            pin: req.pin.filter(|p| !p.is_empty()),
        },
    };
    let client = Say::new(&base, &req.account).with_assistant(assistant);
    match client.say(&utterance).await {
        Ok((speech, _)) => {
            Json(json!({ "assistant": assistant.name(), "speech": speech })).into_response()
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": "unreachable", "message": e.to_string()})),
        )
            .into_response(),
    }
}

/// `/`, `/console/console.js`, `/console/echo.js`, `/console/console.css`, `POST /dev/say`.
pub fn routes(base_url: String) -> Router {
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
        .with_state(base_url)
}
