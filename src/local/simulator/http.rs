//! The simulator over HTTP: the panel API contract (what the skill's client calls), the `/sim`
//! control routes (what people and tests call), and the webhook sender.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::machine::ZoneConfig;
use super::monitoring::receiver::{Dc09Receiver, ReceiverMode};
use super::{Fault, FaultMode, SimError, Simulator};
use crate::common::clock::Clock;
use crate::common::http_errors::{JsonBody, JsonPath};
use crate::common::secret::Secret;
use crate::domain::ports::panel::{
    ArmRequest, ArmState, DisarmRequest, Notice, PanelError, SignalRequest, Source,
};
use crate::edges::webhook::{PanelEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};

fn panel_error(e: PanelError) -> Response {
    let (status, body) = match e {
        PanelError::NotFound => (StatusCode::NOT_FOUND, json!({"error":"panel_not_found"})),
        PanelError::Offline => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error":"panel_offline"}),
        ),
        PanelError::Refused(r) => (
            StatusCode::CONFLICT,
            serde_json::to_value(&r).unwrap_or_else(|_| json!({"error":"refused"})),
        ),
        PanelError::Busy => (StatusCode::CONFLICT, json!({"error":"busy"})),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error":"internal","message": other.to_string()}),
        ),
    };
    (status, Json(body)).into_response()
}

fn result<T: serde::Serialize>(r: Result<T, PanelError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => panel_error(e),
    }
}

/// A response body that keeps the DC-09 link held ([`Transmitter::hold`]) until hyper has taken
/// its last byte (and dropped it), for every answer alike: what a request queued for the
/// monitoring center (a duress's 121, the panel's reports) starts travelling only once the
/// answer is on its way, so the sending, and the receiver's work on it, cannot land inside the
/// request's own time. Releasing the hold when the handler returns was too early: the reply
/// was still to be serialized and written while the link and the receiver already ran.
///
/// [`Transmitter::hold`]: crate::adapters::dc09::transmitter::Transmitter::hold
struct HeldBody {
    inner: axum::body::Body,
    _sent_after: Option<crate::adapters::dc09::transmitter::Hold>,
}

impl http_body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn held_until_sent(
    response: Response,
    sent_after: Option<crate::adapters::dc09::transmitter::Hold>,
) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        axum::body::Body::new(HeldBody {
            inner: body,
            _sent_after: sent_after,
        }),
    )
}

/// Bearer API key, compared in constant time; then injected faults.
async fn guard(State(sim): State<Arc<Simulator>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = given
        .as_bytes()
        .ct_eq(sim.api_key().expose().as_bytes())
        .into();
    let defects = sim.defects();
    if !ok && !defects.accept_any_key {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error":"unauthorized"})),
        )
            .into_response();
    }
    let fault = sim.fault();
    let delay = Duration::from_millis(fault.delay_ms);
    match fault.mode {
        FaultMode::Error => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error":"injected"})),
        )
            .into_response(),
        FaultMode::Timeout => {
            tokio::time::sleep(delay).await;
            (
                StatusCode::GATEWAY_TIMEOUT,
                Json(json!({"error":"injected_timeout"})),
            )
                .into_response()
        }
        FaultMode::Slow => {
            let resp = next.run(req).await;
            tokio::time::sleep(delay).await;
            resp
        }
        FaultMode::Hold if req.method() == axum::http::Method::POST => {
            let resp = next.run(req).await;
            let since = std::time::Instant::now();
            // Polled, not signalled: the fault is a plain value the control API overwrites.
            while sim.fault().mode == FaultMode::Hold && since.elapsed() < delay {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            resp
        }
        FaultMode::Hold => with_defects(defects, req, next).await,
        FaultMode::NotFound => {
            (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response()
        }
        FaultMode::None | FaultMode::Down => with_defects(defects, req, next).await,
    }
}

/// The contract violations of [`super::defects::Defects`] that live at the HTTP edge.
async fn with_defects(d: super::defects::Defects, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if d.no_users_route && path.ends_with("/users") {
        return (StatusCode::NOT_FOUND, Json(json!({"error":"not_found"}))).into_response();
    }
    if d.slow_list_ms > 0 && path.ends_with("/panels") {
        tokio::time::sleep(d.slow_list()).await;
    }
    let one_panel = path.split('/').filter(|s| !s.is_empty()).count() == 5;
    let resp = next.run(req).await;
    if d.wrong_not_found && resp.status() == StatusCode::NOT_FOUND {
        return (StatusCode::NOT_FOUND, Json(json!({"error":"not_found"}))).into_response();
    }
    if d.bad_monitoring && one_panel && resp.status() == StatusCode::OK {
        return edit_object(resp, |o| {
            o.insert(
                "monitoring".into(),
                json!({"receiver": "127.0.0.1:7000", "account": "not-hex", "line": "2"}),
            );
        })
        .await;
    }
    if d.missing_field && one_panel && resp.status() == StatusCode::OK {
        return edit_object(resp, |o| {
            o.remove("supported_arm_states");
        })
        .await;
    }
    resp
}

/// `resp` with its JSON object body changed by `edit` (a defect's shape off the contract).
async fn edit_object(
    resp: Response,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Response {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        edit(o);
    }
    (status, Json(v)).into_response()
}

/// The panel API contract, parsed once: the reference cloud takes only the request bodies its
/// schemas allow (stricter than serde: unknown fields, lengths, ranges), as a vendor's cloud may.
static CONTRACT: LazyLock<Value> = LazyLock::new(crate::local::conformance::schema::panel_api);

/// A request body type and the name of its schema in docs/openapi/panel-api.json.
trait Documented: DeserializeOwned {
    const SCHEMA: &'static str;
}

impl Documented for ArmRequest {
    const SCHEMA: &'static str = "ArmRequest";
}
impl Documented for DisarmRequest {
    const SCHEMA: &'static str = "DisarmRequest";
}
impl Documented for SignalRequest {
    const SCHEMA: &'static str = "SignalRequest";
}
impl Documented for Notice {
    const SCHEMA: &'static str = "Notice";
}
impl Documented for TestWebhook {
    const SCHEMA: &'static str = "TestWebhook";
}

/// A body its schema allows, or the contract's 400 `bad_request` (413 over the body limit).
/// The message is fixed: the body may carry a member's number.
struct Checked<T>(T);

impl<T: Documented, S: Send + Sync> FromRequest<S> for Checked<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let JsonBody(mut v) = JsonBody::<Value>::from_request(req, state).await?;
        let valid = crate::local::conformance::schema::validate_named(&CONTRACT, T::SCHEMA, &v);
        // What the schema calls an integer (134.0 too), as serde's integers take it; the bodies
        // are flat, so their fields are all there is to look at.
        if let Some(fields) = v.as_object_mut() {
            for field in fields.values_mut() {
                if field.is_f64()
                    && let Some(n) = field.as_f64().filter(|f| f.fract() == 0.0)
                    && let Some(i) = serde_json::Number::from_i128(n as i128)
                {
                    *field = Value::Number(i);
                }
            }
        }
        valid
            .ok()
            .and_then(|()| serde_json::from_value(v).ok())
            .map(Checked)
            .ok_or_else(|| {
                crate::common::http_errors::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the body is not of the documented shape",
                )
            })
    }
}

#[derive(Deserialize)]
struct TestWebhook {
    url: String,
    secret: String,
}

/// Test mode (docs/panel-api.md, "Test mode"): what the conformance kit observes from outside.
fn test_mode_routes() -> Router<Arc<Simulator>> {
    Router::new()
        .route(
            "/v1/test/accounts/{account}/monitoring",
            get(
                |State(s): State<Arc<Simulator>>, JsonPath(a): JsonPath<String>| async move {
                    Json(json!({ "events": s.monitoring_for(&a) }))
                },
            ),
        )
        .route(
            "/v1/test/accounts/{account}/notifications",
            get(
                |State(s): State<Arc<Simulator>>, JsonPath(a): JsonPath<String>| async move {
                    Json(json!({ "notifications": s.notifications_for(&a) }))
                },
            ),
        )
        .route(
            "/v1/test/accounts/{account}/webhook",
            put(
                |State(s): State<Arc<Simulator>>,
                 JsonPath(a): JsonPath<String>,
                 Checked(w): Checked<TestWebhook>| async move {
                    if url::Url::parse(&w.url).is_err() {
                        return (
                            StatusCode::BAD_REQUEST,
                            Json(json!({"error": "bad_request", "message": "url must be a URI"})),
                        )
                            .into_response();
                    }
                    s.set_test_webhook(&a, w.url, Secret::new(w.secret));
                    StatusCode::NO_CONTENT.into_response()
                },
            )
            .delete(
                |State(s): State<Arc<Simulator>>, JsonPath(a): JsonPath<String>| async move {
                    s.clear_test_webhook(&a);
                    StatusCode::NO_CONTENT
                },
            ),
        )
}

/// The documented 400 for an `occurred_at` the cloud can't take as a time of occurrence
/// ([`Simulator::occurred_at_in_bounds`]); absent, from a skill that predates it, is fine.
fn occurred_at_refused(
    s: &Simulator,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<Response> {
    at.filter(|at| !s.occurred_at_in_bounds(*at)).map(|_| {
        crate::common::http_errors::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "occurred_at is more than a minute ahead of the cloud's clock",
        )
    })
}

/// `POST .../disarm`; `signal` below is `POST .../signals`.
async fn disarm(
    State(s): State<Arc<Simulator>>,
    JsonPath((a, p)): JsonPath<(String, String)>,
    Checked(r): Checked<DisarmRequest>,
) -> Response {
    if let Some(refused) = occurred_at_refused(&s, r.occurred_at) {
        return refused;
    }
    // Read for every disarm alike, so the clean simulator's work stays equal.
    let d = s.defects();
    if d.duress_delay_ms > 0 && r.duress() {
        tokio::time::sleep(d.duress_delay()).await;
    }
    let sent_after = s.hold_link();
    held_until_sent(result(s.disarm(&a, &p, &r)), sent_after)
}

async fn signal(
    JsonPath((a, p)): JsonPath<(String, String)>,
    State(s): State<Arc<Simulator>>,
    Checked(r): Checked<SignalRequest>,
) -> Response {
    if let Some(refused) = occurred_at_refused(&s, r.occurred_at) {
        return refused;
    }
    let sent_after = s.hold_link();
    let answer = result(s.signal(&a, &p, &r).map(|()| json!({"acknowledged": true})));
    held_until_sent(answer, sent_after)
}

async fn notify(
    JsonPath(a): JsonPath<String>,
    State(s): State<Arc<Simulator>>,
    Checked(n): Checked<Notice>,
) -> Json<Value> {
    s.notify(&a, &n);
    Json(json!({"acknowledged": true}))
}

/// The panel cloud API (docs/panel-api.md), served by the simulator.
pub fn panel_api_routes(sim: Arc<Simulator>) -> Router {
    let api =
        Router::new()
            .route(
                "/v1/accounts/{account}/panels",
                get(
                    |State(s): State<Arc<Simulator>>, JsonPath(a): JsonPath<String>| async move {
                        Json(json!({ "panels": s.list(&a) })).into_response()
                    },
                ),
            )
            .route(
                "/v1/accounts/{account}/panels/{panel}",
                get(
                    |State(s): State<Arc<Simulator>>,
                     JsonPath((a, p)): JsonPath<(String, String)>| async move {
                        result(s.get(&a, &p))
                    },
                ),
            )
            .route(
                "/v1/accounts/{account}/panels/{panel}/arm",
                post(
                    |State(s): State<Arc<Simulator>>,
                     JsonPath((a, p)): JsonPath<(String, String)>,
                     Checked(r): Checked<ArmRequest>| async move {
                        result(s.arm(&a, &p, &r))
                    },
                ),
            )
            .route("/v1/accounts/{account}/panels/{panel}/disarm", post(disarm))
            .route(
                "/v1/accounts/{account}/panels/{panel}/signals",
                post(signal),
            )
            .route(
                "/v1/accounts/{account}/users",
                get(
                    |State(s): State<Arc<Simulator>>, JsonPath(a): JsonPath<String>| async move {
                        Json(s.users(&a)).into_response()
                    },
                ),
            )
            .route("/v1/accounts/{account}/notifications", post(notify))
            .merge(test_mode_routes())
            .layer(middleware::from_fn_with_state(sim.clone(), guard))
            .with_state(sim);
    // Every error in the contract's JSON shape, a body it can't take included (JsonBody).
    crate::common::http_errors::json_errors(api)
}

/// A listener that can be stopped and started again on the same address, so tests can take the
/// panel cloud down (connections refused) and bring it back.
pub struct RestartableServer {
    addr: SocketAddr,
    router: Router,
    running: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

/// Serves `router` on `listener` until `stop` fires (or its sender is dropped); an error of
/// the server is logged under `what`.
pub(crate) fn serve_until(
    listener: TcpListener,
    router: Router,
    stop: oneshot::Receiver<()>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stop.await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "{what} stopped");
        }
    })
}

impl RestartableServer {
    pub async fn start(addr: SocketAddr, router: Router) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = Arc::new(RestartableServer {
            addr,
            router,
            running: Mutex::new(None),
        });
        server.serve(listener);
        Ok(server)
    }

    fn serve(&self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let task = serve_until(listener, self.router.clone(), rx, "panel API server");
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some((tx, task));
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections without waiting (usable from `Drop`).
    pub fn signal_stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((tx, _)) = running {
            let _ = tx.send(());
        }
    }

    pub async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((tx, task)) = running {
            let _ = tx.send(());
            // Graceful shutdown waits for in-flight requests; don't wait forever on a hung one.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    pub async fn restart(&self) -> std::io::Result<()> {
        if self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

#[derive(Clone)]
struct Control {
    sim: Arc<Simulator>,
    panel_api: Arc<RestartableServer>,
}

fn sim_error(e: SimError) -> Response {
    let status = match e {
        SimError::NoPanel(_) | SimError::NoZone(_) => StatusCode::NOT_FOUND,
        SimError::NoAlarmKind(_) => StatusCode::BAD_REQUEST,
        SimError::NoUser(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SimError::ZoneExists(_)
        | SimError::Offline
        | SimError::Refused
        | SimError::NothingToCancel
        | SimError::CancelWindowClosed => StatusCode::CONFLICT,
    };
    (status, Json(json!({"error": e.to_string()}))).into_response()
}

fn sim_result(r: Result<crate::domain::ports::panel::Panel, SimError>) -> Response {
    match r {
        Ok(p) => Json(p).into_response(),
        Err(e) => sim_error(e),
    }
}

#[derive(Deserialize)]
struct Online {
    online: bool,
}

#[derive(Deserialize)]
struct AlarmBody {
    kind: String,
    #[serde(default = "yes")]
    active: bool,
}

#[derive(Deserialize)]
struct TroubleBody {
    condition: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

#[derive(Deserialize)]
struct LocalAction {
    /// disarmed, armed_away, armed_stay, armed_night
    state: ArmState,
    #[serde(default)]
    user: Option<u16>,
    /// keypad (default) or app
    #[serde(default)]
    source: Option<Source>,
}

#[derive(Deserialize)]
struct CancelBody {
    /// The panel user whose code was entered.
    user: u16,
    /// keypad (default) or app
    #[serde(default)]
    source: Option<Source>,
}

/// `POST /sim/clock/advance`: a bad value is a 400 that leaves the clock alone; an unchecked
/// one would overflow chrono and make every later clock read panic.
fn advance_clock(sim: &Simulator, seconds: i64) -> Response {
    use crate::common::clock::{ClockError, MAX_OFFSET};
    let too_far = ClockError::TooFar {
        max_days: MAX_OFFSET.num_days(),
    };
    let moved = chrono::Duration::try_seconds(seconds)
        .ok_or(too_far)
        .and_then(|by| sim.clock().try_advance(by));
    match moved {
        Ok(now) => {
            sim.tick();
            Json(json!({ "now": now })).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "bad_request",
                "message": format!("cannot advance the clock by {seconds} s: {e}"),
            })),
        )
            .into_response(),
    }
}

/// `/sim/...`: simulator state and control (see docs/local-stack.md's endpoint table).
pub fn control_routes(sim: Arc<Simulator>, panel_api: Arc<RestartableServer>) -> Router {
    Router::new()
        .route(
            "/sim/panels",
            get(|State(c): State<Control>| async move {
                let panels: Vec<Value> = c
                    .sim
                    .snapshot()
                    .into_iter()
                    .map(|(account, p)| json!({"account": account, "panel": p}))
                    .collect();
                Json(json!({ "panels": panels, "now": c.sim.clock().now() }))
            }),
        )
        .route(
            "/sim/panels/{panel}",
            delete(|State(c): State<Control>, Path(p): Path<String>| async move {
                match c.sim.remove_panel(&p) {
                    Ok(()) => Json(json!({"removed": p})).into_response(),
                    Err(e) => sim_error(e),
                }
            }),
        )
        .route(
            "/sim/panels/{panel}/zones/{zone}/{action}",
            post(
                |State(c): State<Control>, Path((p, z, action)): Path<(String, String, String)>| async move {
                    match action.as_str() {
                        "open" => sim_result(c.sim.set_zone(&p, &z, true)),
                        "close" => sim_result(c.sim.set_zone(&p, &z, false)),
                        _ => (StatusCode::NOT_FOUND, Json(json!({"error":"use open or close"}))).into_response(),
                    }
                },
            ),
        )
        .route(
            "/sim/panels/{panel}/zones",
            post(
                |State(c): State<Control>, Path(p): Path<String>, Json(z): Json<ZoneConfig>| async move {
                    sim_result(c.sim.add_zone(&p, z))
                },
            ),
        )
        .route(
            "/sim/panels/{panel}/zones/{zone}",
            delete(
                |State(c): State<Control>, Path((p, z)): Path<(String, String)>| async move {
                    sim_result(c.sim.remove_zone(&p, &z))
                },
            ),
        )
        .route(
            "/sim/panels/{panel}/connectivity",
            post(
                |State(c): State<Control>, Path(p): Path<String>, Json(b): Json<Online>| async move {
                    sim_result(c.sim.set_online(&p, b.online))
                },
            ),
        )
        .route(
            "/sim/panels/{panel}/alarm",
            post(
                |State(c): State<Control>, Path(p): Path<String>, Json(b): Json<AlarmBody>| async move {
                    sim_result(c.sim.set_alarm(&p, &b.kind, b.active))
                },
            ),
        )
        .route(
            "/sim/panels/{panel}/trouble",
            post(
                |State(c): State<Control>, Path(p): Path<String>, Json(b): Json<TroubleBody>| async move {
                    sim_result(c.sim.set_trouble(&p, &b.condition, b.active))
                },
            ),
        )
        .route(
            "/sim/panels/{panel}/keypad",
            post(
                |State(c): State<Control>, Path(p): Path<String>, Json(b): Json<LocalAction>| async move {
                    let source = b.source.unwrap_or(Source::Keypad);
                    sim_result(c.sim.local_action(&p, b.state, b.user, source))
                },
            ),
        )
        .route(
            "/sim/panels/{panel}/cancel",
            post(
                |State(c): State<Control>, Path(p): Path<String>, Json(b): Json<CancelBody>| async move {
                    let source = b.source.unwrap_or(Source::Keypad);
                    match c.sim.cancel(&p, b.user, source) {
                        Ok(done) => Json(done).into_response(),
                        Err(e) => sim_error(e),
                    }
                },
            ),
        )
        .route(
            "/sim/accounts/{account}/users",
            post(
                |State(c): State<Control>, Path(a): Path<String>, Json(u): Json<super::UserConfig>| async move {
                    Json(c.sim.put_user(&a, u))
                },
            ),
        )
        .route(
            "/sim/accounts/{account}/users/{number}",
            delete(
                |State(c): State<Control>, Path((a, n)): Path<(String, u16)>| async move {
                    match c.sim.remove_user(&a, n) {
                        Some(users) => Json(users).into_response(),
                        None => (StatusCode::NOT_FOUND, Json(json!({"error": "no such user"}))).into_response(),
                    }
                },
            ),
        )
        .route(
            "/sim/clock/advance",
            post(|State(c): State<Control>, Json(b): Json<Advance>| async move {
                advance_clock(&c.sim, b.seconds)
            }),
        )
        .route(
            "/sim/faults",
            get(|State(c): State<Control>| async move { Json(c.sim.fault()) }).post(
                |State(c): State<Control>, Json(f): Json<Fault>| async move {
                    c.sim.set_fault(f);
                    let outcome = if f.mode == FaultMode::Down {
                        c.panel_api.stop().await;
                        Ok(())
                    } else {
                        c.panel_api.restart().await
                    };
                    match outcome {
                        Ok(()) => Json(json!({"fault": f, "panel_api_listening": c.panel_api.is_running()})).into_response(),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()}))).into_response(),
                    }
                },
            ),
        )
        .route(
            "/sim/defects",
            get(|State(c): State<Control>| async move { Json(c.sim.defects()) }).post(
                |State(c): State<Control>, Json(d): Json<super::defects::Defects>| async move {
                    c.sim.set_defects(d);
                    Json(d)
                },
            ),
        )
        .route(
            "/sim/notifications",
            get(|State(c): State<Control>| async move { Json(c.sim.notifications()) }),
        )
        .route(
            "/sim/requests",
            get(|State(c): State<Control>| async move { Json(c.sim.requests()) }),
        )
        .with_state(Control { sim, panel_api })
}

#[derive(Clone)]
struct Monitoring {
    sim: Arc<Simulator>,
    receiver: Arc<Dc09Receiver>,
}

impl Monitoring {
    /// Lets frames on their way arrive first, unless the receiver is faulted (they would not).
    async fn settle(&self) {
        if self.receiver.mode() == ReceiverMode::None {
            self.sim.settle_monitoring(SETTLE).await;
        }
    }
}

/// How long a read of the monitoring center waits for frames still on the DC-09 link.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
struct ReceiverFault {
    mode: ReceiverMode,
}

/// `/sim/monitoring...`: the monitoring center behind its DC-09 receiver, and the link to it.
pub fn monitoring_routes(sim: Arc<Simulator>, receiver: Arc<Dc09Receiver>) -> Router {
    Router::new()
        .route(
            "/sim/monitoring",
            get(|State(m): State<Monitoring>| async move {
                m.settle().await;
                Json(m.sim.received())
            }),
        )
        .route(
            "/sim/monitoring/dispatches",
            get(|State(m): State<Monitoring>| async move {
                m.settle().await;
                Json(m.sim.dispatches())
            }),
        )
        .route(
            "/sim/monitoring/link",
            get(|State(m): State<Monitoring>| async move {
                let link = m.sim.link();
                Json(json!({
                    "receiver": m.receiver.addr().to_string(),
                    "receiver_mode": m.receiver.mode(),
                    "receiver_listening": m.receiver.is_listening(),
                    "queued": link.map_or(0, |l| l.queued()),
                    "delivered": link.map_or(0, |l| l.delivered()),
                    "sent": link.map(|l| l.sent()).unwrap_or_default(),
                    "received": m.receiver.center().frames(),
                    "second_path": m.sim.second_path(),
                }))
            }),
        )
        .route(
            "/sim/monitoring/receiver",
            post(
                |State(m): State<Monitoring>, Json(f): Json<ReceiverFault>| async move {
                    match m.receiver.set_mode(f.mode).await {
                        Ok(()) => Json(json!({
                            "receiver_mode": m.receiver.mode(),
                            "receiver_listening": m.receiver.is_listening(),
                        }))
                        .into_response(),
                        Err(e) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            Json(json!({"error": e.to_string()})),
                        )
                            .into_response(),
                    }
                },
            ),
        )
        .with_state(Monitoring { sim, receiver })
}

/// Posts each event to the skill's webhook, in order, signed; retries briefly on failure like
/// a vendor cloud's delivery queue would. Signs with `clock`, the simulated time the skill's
/// webhook checks against: with the wall clock, moving the simulated clock past the webhook's
/// tolerance would make every event stale.
pub async fn webhook_sender(
    mut rx: mpsc::UnboundedReceiver<PanelEvent>,
    url: String,
    secret: Secret,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
) {
    while let Some(event) = rx.recv().await {
        let Ok(body) = serde_json::to_vec(&event) else {
            continue;
        };
        for attempt in 0..3u64 {
            let ts = clock.now().timestamp();
            let mut headers = HeaderMap::new();
            if let (Ok(t), Ok(s)) = (
                ts.to_string().parse(),
                signature::sign(&secret, ts, &body).parse(),
            ) {
                headers.insert(TIMESTAMP_HEADER, t);
                headers.insert(SIGNATURE_HEADER, s);
            }
            let sent = http
                .post(&url)
                .headers(headers)
                .header(header::CONTENT_TYPE, "application/json")
                .timeout(Duration::from_secs(5))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => tracing::warn!(status = %r.status(), attempt, "webhook rejected an event"),
                Err(e) => tracing::warn!(error = %e, attempt, "webhook unreachable"),
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::dc09::transmitter::{LinkConfig, Transmitter};
    use crate::common::clock::SystemClock;
    use http_body::Body as _;

    /// The hold that keeps a request's events (a duress's 121) off the link ends only when the
    /// answer's body has been taken to its last byte, not when the handler returns; and the
    /// answer keeps its length (a Content-Length, not a chunked body).
    #[tokio::test]
    async fn the_link_stays_held_until_the_answer_body_has_been_taken() {
        let nobody = crate::adapters::dc09::unused_addr();
        let link = Transmitter::start(LinkConfig::new(nobody), Arc::new(SystemClock)).unwrap();
        let answer = held_until_sent(
            Json(json!({"state": "disarmed"})).into_response(),
            Some(link.hold()),
        );
        assert!(link.is_held(), "the handler has returned: still held");
        let (_, body) = answer.into_parts();
        assert_eq!(body.size_hint().exact(), Some(20));
        assert!(link.is_held());
        let bytes = axum::body::to_bytes(body, 1024).await.unwrap();
        assert_eq!(&bytes[..], br#"{"state":"disarmed"}"#);
        assert!(!link.is_held(), "the body is taken: the link may send");
    }
}
