//! Login with Amazon, the event gateway and the panel webhook, against real HTTP servers on
//! 127.0.0.1: a fake LWA token endpoint and a fake event gateway written here, which check the
//! format of every request they get (form encoding and the messaging client's credentials at
//! LWA; JSON, and a Bearer header equal to the message's scope token, at the gateway).

use crate::support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alarm_skill::adapters::event_gateway::HttpEventGateway;
use alarm_skill::adapters::lwa::{LwaClient, LwaError};
use alarm_skill::adapters::store::memory::MemoryStore;
use alarm_skill::common::clock::{AdjustableClock, Clock};
use alarm_skill::common::deadline::Deadline;
use alarm_skill::common::secret::{BearerToken, Secret};
use alarm_skill::domain::ports::event_gateway::{Delivery, EventGateway, GatewayError};
use alarm_skill::domain::ports::lwa::{GrantError, GrantExchange};
use alarm_skill::domain::ports::panel::{Alarms, ArmState, Panel, Phase, Source, Zone, ZoneKind};
use alarm_skill::domain::ports::store::{Store, StoredGrant};
use alarm_skill::domain::voice_codes::Keyring;
use alarm_skill::edges::config::AlexaRegion;
use alarm_skill::edges::webhook::{
    self, Changed, EventKind, PanelEvent, WebhookService, signature,
};
use alarm_skill::wire::alexa::Message;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde_json::{Value, json};

const CLIENT_ID: &str = "amzn1.application-oa2-client.messaging";
const CLIENT_SECRET: &str = "messaging-secret";
const ACCOUNT: &str = "acct-1";
const WEBHOOK_SECRET: &str = "whsec-test";

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// Fake Login with Amazon
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum RefreshMode {
    /// New access token, and a new refresh token too when `true`.
    Ok {
        rotate_refresh: bool,
    },
    InvalidGrant,
    Unavailable,
}

#[derive(Debug, Clone)]
struct LwaRequest {
    content_type: String,
    form: HashMap<String, String>,
}

struct LwaState {
    requests: Vec<LwaRequest>,
    violations: Vec<String>,
    bad_client: usize,
    used_codes: HashSet<String>,
    refresh_tokens: HashSet<String>,
    access_tokens: Vec<String>,
    refresh_mode: RefreshMode,
    exchange_unavailable: bool,
    counter: usize,
}

struct FakeLwa {
    state: Mutex<LwaState>,
}

impl FakeLwa {
    fn new() -> Arc<Self> {
        Arc::new(FakeLwa {
            state: Mutex::new(LwaState {
                requests: vec![],
                violations: vec![],
                bad_client: 0,
                used_codes: HashSet::new(),
                refresh_tokens: HashSet::new(),
                access_tokens: vec![],
                refresh_mode: RefreshMode::Ok {
                    rotate_refresh: false,
                },
                exchange_unavailable: false,
                counter: 0,
            }),
        })
    }

    fn st(&self) -> std::sync::MutexGuard<'_, LwaState> {
        self.state.lock().unwrap()
    }

    fn requests(&self, grant_type: &str) -> Vec<LwaRequest> {
        self.st()
            .requests
            .iter()
            .filter(|r| r.form.get("grant_type").map(String::as_str) == Some(grant_type))
            .cloned()
            .collect()
    }

    /// The one request of `grant_type` LWA got, checked to be form-encoded.
    fn the_one_form_request(&self, grant_type: &str) -> LwaRequest {
        let requests = self.requests(grant_type);
        assert_eq!(requests.len(), 1);
        let req = requests[0].clone();
        assert!(
            req.content_type
                .starts_with("application/x-www-form-urlencoded")
        );
        req
    }

    fn refreshes(&self) -> usize {
        self.requests("refresh_token").len()
    }

    fn last_access(&self) -> String {
        self.st().access_tokens.last().cloned().unwrap()
    }

    fn issued(&self, token: &str) -> bool {
        self.st().access_tokens.iter().any(|t| t == token)
    }

    fn set_refresh(&self, mode: RefreshMode) {
        self.st().refresh_mode = mode;
    }

    fn assert_clean(&self) {
        let st = self.st();
        assert_no_violations("LWA", &st.violations);
        assert_eq!(
            st.bad_client, 0,
            "LWA saw requests without the messaging client"
        );
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": "fake" })),
    )
        .into_response()
}

async fn lwa_token(State(lwa): State<Arc<FakeLwa>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut st = lwa.st();
    st.requests.push(LwaRequest {
        content_type: content_type.clone(),
        form: form.clone(),
    });
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        st.violations.push(format!("content-type {content_type:?}"));
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if serde_json::from_slice::<Value>(&body).is_ok() {
        st.violations.push("JSON body".into());
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        st.bad_client += 1;
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    st.counter += 1;
    let n = st.counter;
    let access = format!("Atza|access-{n}-{}", uuid::Uuid::new_v4());
    match get("grant_type").as_str() {
        "authorization_code" => {
            if st.exchange_unavailable {
                return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "server_error");
            }
            let code = get("code");
            if code.is_empty() || !st.used_codes.insert(code) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let refresh = format!("Atzr|refresh-{n}-{}", uuid::Uuid::new_v4());
            st.refresh_tokens.insert(refresh.clone());
            st.access_tokens.push(access.clone());
            axum::Json(json!({"access_token": access, "refresh_token": refresh,
                              "token_type": "bearer", "expires_in": 3600}))
            .into_response()
        }
        "refresh_token" => {
            if !st.refresh_tokens.contains(&get("refresh_token")) {
                st.violations.push("unknown refresh token".into());
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            match st.refresh_mode {
                RefreshMode::InvalidGrant => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                RefreshMode::Unavailable => {
                    oauth_error(StatusCode::SERVICE_UNAVAILABLE, "server_error")
                }
                RefreshMode::Ok { rotate_refresh } => {
                    st.access_tokens.push(access.clone());
                    let mut body = json!({"access_token": access, "token_type": "bearer",
                                          "expires_in": 3600});
                    if rotate_refresh {
                        let refresh = format!("Atzr|refresh-{n}-{}", uuid::Uuid::new_v4());
                        st.refresh_tokens.insert(refresh.clone());
                        body["refresh_token"] = json!(refresh);
                    }
                    axum::Json(body).into_response()
                }
            }
        }
        other => {
            st.violations.push(format!("grant_type {other:?}"));
            oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fake event gateway
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Hit {
    bearer: String,
    body: Value,
    at: Instant,
}

struct GatewayState {
    script: VecDeque<(u16, Value)>,
    default: (u16, Value),
    hits: Vec<Hit>,
    violations: Vec<String>,
}

struct FakeGateway {
    lwa: Arc<FakeLwa>,
    state: Mutex<GatewayState>,
}

impl FakeGateway {
    fn st(&self) -> std::sync::MutexGuard<'_, GatewayState> {
        self.state.lock().unwrap()
    }

    fn script(&self, responses: &[(u16, Value)]) {
        self.st().script.extend(responses.iter().cloned());
    }

    fn set_default(&self, status: u16, body: Value) {
        self.st().default = (status, body);
    }

    fn hits(&self) -> Vec<Hit> {
        self.st().hits.clone()
    }

    fn assert_clean(&self) {
        assert_no_violations("gateway", &self.st().violations);
    }
}

/// What a fake (`who`) found wrong with the requests it was sent: nothing.
fn assert_no_violations(who: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{who} format violations: {violations:?}"
    );
}

fn gateway_error(code: &str) -> Value {
    json!({"header": {"namespace": "System", "name": "Exception", "messageId": "m-1"},
           "payload": {"code": code, "description": "fake gateway"}})
}

async fn gateway_events(
    State(gw): State<Arc<FakeGateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut violations = vec![];
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        violations.push(format!("content-type {content_type:?}"));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        violations.push("body is not JSON".into());
        Value::Null
    });
    let event = &body["event"];
    let scope = if event["header"]["name"] == "ChangeReport" {
        &event["endpoint"]["scope"]
    } else {
        &event["payload"]["scope"]
    };
    if scope["type"] != "BearerToken" {
        violations.push(format!("scope type {}", scope["type"]));
    }
    if scope["token"].as_str() != Some(bearer.as_str()) {
        violations.push("Authorization header differs from the scope token".into());
    }
    if !gw.lwa.issued(&bearer) {
        violations.push("Bearer token not issued by LWA".into());
    }
    let mut st = gw.st();
    st.violations.extend(violations);
    st.hits.push(Hit {
        bearer,
        body,
        at: Instant::now(),
    });
    let (status, reply) = st.script.pop_front().unwrap_or_else(|| st.default.clone());
    let status = StatusCode::from_u16(status).unwrap();
    if reply.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(reply)).into_response()
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    lwa: Arc<FakeLwa>,
    gw: Arc<FakeGateway>,
    lwa_url: String,
    store: Arc<MemoryStore>,
    keyring: Arc<Keyring>,
    clock: Arc<AdjustableClock>,
    client: Arc<LwaClient>,
    gateway: Arc<HttpEventGateway>,
    http: reqwest::Client,
}

/// A local server answering `POST path` with `handler`: the route's URL.
async fn serve_post<H, T, S>(path: &str, handler: H, state: S) -> String
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    let app = Router::new().route(path, post(handler)).with_state(state);
    format!("{}{path}", serve(app).await)
}

/// A harness in which `ACCOUNT` has granted (code `code-1`).
async fn granted() -> Harness {
    let h = harness().await;
    h.grant(ACCOUNT, "code-1").await.unwrap();
    h
}

async fn harness() -> Harness {
    harness_with_budget(None).await
}

async fn harness_with_budget(budget: Option<Duration>) -> Harness {
    let lwa = FakeLwa::new();
    let gw = Arc::new(FakeGateway {
        lwa: Arc::clone(&lwa),
        state: Mutex::new(GatewayState {
            script: VecDeque::new(),
            default: (202, Value::Null),
            hits: vec![],
            violations: vec![],
        }),
    });
    let lwa_url = serve_post("/auth/o2/token", lwa_token, Arc::clone(&lwa)).await;
    let gw_url = serve_post("/v3/events", gateway_events, Arc::clone(&gw)).await;
    let store = Arc::new(MemoryStore::new());
    let keyring = Arc::new(Keyring::random());
    let clock = Arc::new(AdjustableClock::frozen(Utc::now()));
    let http = reqwest::Client::new();
    let client = Arc::new(lwa_client(
        &lwa_url,
        CLIENT_SECRET,
        AlexaRegion::Eu,
        &store,
        &keyring,
        &clock,
        &http,
    ));
    let mut gateway = HttpEventGateway::new(gw_url, Arc::clone(&client), http.clone());
    if let Some(b) = budget {
        gateway = gateway.with_budget(b);
    }
    Harness {
        lwa,
        gw,
        lwa_url,
        store,
        keyring,
        clock,
        client,
        gateway: Arc::new(gateway),
        http,
    }
}

/// `account`'s grant through `client`, with authorization code `code`.
async fn accept(client: &LwaClient, account: &str, code: &str) -> Result<(), GrantError> {
    client
        .accept(
            account,
            &BearerToken::new(code),
            Deadline::after(Duration::from_secs(5)),
        )
        .await
}

fn lwa_client(
    url: &str,
    secret: &str,
    region: AlexaRegion,
    store: &Arc<MemoryStore>,
    keyring: &Arc<Keyring>,
    clock: &Arc<AdjustableClock>,
    http: &reqwest::Client,
) -> LwaClient {
    LwaClient::new(
        url.to_string(),
        CLIENT_ID.to_string(),
        Secret::new(secret),
        region,
        Arc::clone(store) as Arc<dyn Store>,
        Arc::clone(keyring),
        Arc::clone(clock) as Arc<dyn Clock>,
        http.clone(),
    )
}

impl Harness {
    async fn grant(&self, account: &str, code: &str) -> Result<(), GrantError> {
        accept(&self.client, account, code).await
    }

    async fn stored(&self, account: &str) -> Vec<(String, StoredGrant)> {
        self.store.grants(account).await.unwrap()
    }

    async fn token(&self) -> Option<String> {
        self.client
            .access_token(ACCOUNT)
            .await
            .unwrap()
            .map(|t| t.expose().to_string())
    }

    async fn send_change_report(&self) -> Result<Delivery, GatewayError> {
        let at = self.clock.now();
        self.gateway
            .send(ACCOUNT, &|token| {
                Message::change_report(
                    "home",
                    token,
                    "PHYSICAL_INTERACTION",
                    vec![alarm_skill::wire::alexa::Property::arm_state(
                        "ARMED_AWAY",
                        at,
                    )],
                    vec![alarm_skill::wire::alexa::Property::connectivity(true, at)],
                )
            })
            .await
    }

    fn webhook(&self) -> WebhookService {
        WebhookService::new(
            Arc::clone(&self.store) as Arc<dyn Store>,
            Arc::clone(&self.gateway) as Arc<dyn EventGateway>,
            Secret::new(WEBHOOK_SECRET),
            Arc::clone(&self.clock) as Arc<dyn Clock>,
            "Acme Security".to_string(),
        )
    }

    async fn webhook_url(&self) -> String {
        let svc = Arc::new(self.webhook());
        format!("{}/webhooks/panel", serve(webhook::routes(svc)).await)
    }
}

// ---------------------------------------------------------------------------------------------
// AcceptGrant and tokens
// ---------------------------------------------------------------------------------------------

/// Pepper rotation on a warm function (issue 15): a grant sealed under a pepper added after the
/// client started (by a function that knows it) opens after one re-read of the keyring, where a
/// client without a source can't open it; and once the loaded keyring is past its max age, a
/// refresh re-seals the grant under the new current pepper.
#[tokio::test]
async fn a_warm_lwa_client_opens_and_reseals_grants_across_a_pepper_rotation() {
    use alarm_skill::domain::voice_codes::{KeyringSource, LoadKeyring};
    use std::sync::atomic::{AtomicUsize, Ordering};
    fn ring(current: &str, ids: &[(&str, u8)]) -> Keyring {
        let peppers = ids.iter().map(|(id, b)| (id.to_string(), vec![*b; 32]));
        Keyring::new(current, peppers.collect()).unwrap()
    }
    let old = || Arc::new(ring("p1", &[("p1", 1)]));
    let rotated = || Arc::new(ring("p2", &[("p1", 1), ("p2", 2)]));
    let h = harness().await;
    let client = |k: &Arc<Keyring>| {
        lwa_client(
            &h.lwa_url,
            CLIENT_SECRET,
            AlexaRegion::Eu,
            &h.store,
            k,
            &h.clock,
            &h.http,
        )
    };
    let loads = Arc::new(AtomicUsize::new(0));
    let source = |max_age: Duration| {
        let loads = loads.clone();
        let load: LoadKeyring = Arc::new(move || {
            loads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(ring("p2", &[("p1", 1), ("p2", 2)])) })
        });
        Arc::new(
            KeyringSource::new(old(), load, Duration::ZERO, Duration::from_secs(1))
                .with_max_age(max_age),
        )
    };
    let sealed_under = |g: &StoredGrant| {
        let a = Keyring::sealed_pepper_id(&g.access_token)
            .unwrap()
            .to_string();
        let r = Keyring::sealed_pepper_id(&g.refresh_token)
            .unwrap()
            .to_string();
        (a, r)
    };

    // A function started after the rotation takes the grant: sealed under p2.
    accept(&client(&rotated()), ACCOUNT, "code-1")
        .await
        .unwrap();
    let issued = h.lwa.last_access();
    assert_eq!(
        sealed_under(&h.stored(ACCOUNT).await[0].1),
        ("p2".into(), "p2".into())
    );

    // A warm one that knows p1 only: unreadable without a source, read after one re-read with.
    assert!(matches!(
        client(&old()).access_token(ACCOUNT).await,
        Err(LwaError::Unreadable)
    ));
    let warm = client(&old()).with_keyring_source(source(Duration::from_secs(3600)));
    let token = warm.access_token(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(token.expose(), issued);
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // A grant sealed under p1 by a function that doesn't know p2 yet...
    accept(&client(&old()), ACCOUNT, "code-2").await.unwrap();
    assert_eq!(
        sealed_under(&h.stored(ACCOUNT).await[0].1),
        ("p1".into(), "p1".into())
    );
    // ...is re-sealed under p2 at the next refresh by a warm function past its max age.
    let aging = client(&old()).with_keyring_source(source(Duration::ZERO));
    let refreshed = aging.force_refresh(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(refreshed.expose(), h.lwa.last_access());
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(
        sealed_under(&h.stored(ACCOUNT).await[0].1),
        ("p2".into(), "p2".into())
    );
}

#[tokio::test]
async fn accept_grant_exchanges_the_code_form_encoded_and_stores_sealed_tokens() {
    let h = granted().await;

    let req = h.lwa.the_one_form_request("authorization_code");
    assert_eq!(req.form["code"], "code-1");
    assert_eq!(req.form["client_id"], CLIENT_ID);
    assert_eq!(req.form["client_secret"], CLIENT_SECRET);
    h.lwa.assert_clean();

    let stored = h.stored(ACCOUNT).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "EU");
    assert_eq!(
        stored[0].1.expires_at,
        h.clock.now() + chrono::Duration::seconds(3600)
    );
    let issued_access = h.lwa.last_access();
    let issued_refresh = h.lwa.st().refresh_tokens.iter().next().cloned().unwrap();
    let dump = h.store.dump().to_string();
    assert!(
        dump.contains(h.keyring.current_id()),
        "sealed under the keyring: {dump}"
    );
    for plain in [&issued_access, &issued_refresh] {
        assert!(
            !dump.contains(plain.as_str()),
            "plaintext token in the store"
        );
    }
    assert!(!dump.contains("Atza|") && !dump.contains("Atzr|"));

    // The sealed token opens to what LWA issued, without a refresh.
    assert_eq!(h.token().await.as_deref(), Some(issued_access.as_str()));
    assert_eq!(h.lwa.refreshes(), 0);

    // Tokens are per region: the NA client has no grant for this account.
    let na = lwa_client(
        &h.lwa_url,
        CLIENT_SECRET,
        AlexaRegion::Na,
        &h.store,
        &h.keyring,
        &h.clock,
        &h.http,
    );
    assert!(na.access_token(ACCOUNT).await.unwrap().is_none());

    // The AAD binds a sealed token to its account: a row copied to another account won't open.
    h.store
        .put_grant("acct-2", "EU", &stored[0].1)
        .await
        .unwrap();
    assert_eq!(
        h.client.access_token("acct-2").await.unwrap_err(),
        LwaError::Unreadable
    );
}

#[tokio::test]
async fn accept_grant_with_a_rejected_code_fails_and_stores_nothing() {
    let h = granted().await;
    // Codes are single-use: LWA answers invalid_grant.
    let err = h.grant("acct-2", "code-1").await.unwrap_err();
    let GrantError::Rejected(msg) = &err else {
        panic!("expected Rejected, got {err:?}")
    };
    assert!(
        !msg.contains("code-1"),
        "the code leaked into the error: {msg}"
    );
    assert!(h.stored("acct-2").await.is_empty());

    // A wrong client secret is invalid_client, reported without the secret.
    let wrong = lwa_client(
        &h.lwa_url,
        "not-the-secret",
        AlexaRegion::Eu,
        &h.store,
        &h.keyring,
        &h.clock,
        &h.http,
    );
    let err = accept(&wrong, "acct-3", "code-3").await.unwrap_err();
    let GrantError::Rejected(msg) = &err else {
        panic!("expected Rejected, got {err:?}")
    };
    assert!(
        msg.contains("invalid_client") && !msg.contains("not-the-secret"),
        "{msg}"
    );
    assert!(h.stored("acct-3").await.is_empty());
}

#[tokio::test]
async fn accept_grant_when_lwa_is_down_is_unavailable() {
    let h = harness().await;
    h.lwa.st().exchange_unavailable = true;
    assert!(matches!(
        h.grant(ACCOUNT, "code-1").await,
        Err(GrantError::Unavailable(_))
    ));

    // Nothing listens on the port of a dropped listener.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/auth/o2/token", l.local_addr().unwrap())
    };
    let down = lwa_client(
        &closed,
        CLIENT_SECRET,
        AlexaRegion::Eu,
        &h.store,
        &h.keyring,
        &h.clock,
        &h.http,
    );
    let err = accept(&down, ACCOUNT, "code-2").await.unwrap_err();
    assert!(matches!(err, GrantError::Unavailable(_)), "{err:?}");
    assert!(h.stored(ACCOUNT).await.is_empty());
}

#[tokio::test]
async fn access_token_is_refreshed_within_five_minutes_of_expiry_and_not_before() {
    let h = granted().await;
    let first = h.lwa.last_access();
    let refresh_token = h.lwa.st().refresh_tokens.iter().next().cloned().unwrap();

    h.clock.advance(chrono::Duration::seconds(3600 - 301));
    assert_eq!(
        h.token().await.as_deref(),
        Some(first.as_str()),
        "301 s left: no refresh"
    );
    assert_eq!(h.lwa.refreshes(), 0);

    h.clock.advance(chrono::Duration::seconds(2));
    let second = h.token().await.unwrap();
    assert_ne!(second, first, "299 s left: refreshed");
    assert_eq!(second, h.lwa.last_access());
    let req = h.lwa.the_one_form_request("refresh_token");
    assert_eq!(req.form["refresh_token"], refresh_token);
    assert_eq!(req.form["client_id"], CLIENT_ID);
    assert_eq!(req.form["client_secret"], CLIENT_SECRET);
    let stored = h.stored(ACCOUNT).await;
    assert_eq!(
        stored[0].1.expires_at,
        h.clock.now() + chrono::Duration::seconds(3600)
    );

    // The new token is used as is until it too nears expiry.
    assert_eq!(h.token().await, Some(second.clone()));
    assert_eq!(h.lwa.refreshes(), 1);

    // LWA returned no refresh token: the one held is kept and used for the next refresh.
    h.clock.advance(chrono::Duration::seconds(3600));
    let third = h.token().await.unwrap();
    assert_ne!(third, second);
    let refreshes = h.lwa.requests("refresh_token");
    assert_eq!(refreshes.len(), 2);
    assert_eq!(refreshes[1].form["refresh_token"], refresh_token);
    h.lwa.assert_clean();
}

#[tokio::test]
async fn a_rotated_refresh_token_replaces_the_stored_one() {
    let h = granted().await;
    let original = h.lwa.st().refresh_tokens.iter().next().cloned().unwrap();
    h.lwa.set_refresh(RefreshMode::Ok {
        rotate_refresh: true,
    });
    h.clock.advance(chrono::Duration::seconds(3600));
    h.token().await.unwrap();
    h.clock.advance(chrono::Duration::seconds(3600));
    h.token().await.unwrap();
    let refreshes = h.lwa.requests("refresh_token");
    assert_eq!(refreshes[0].form["refresh_token"], original);
    assert_ne!(refreshes[1].form["refresh_token"], original);
    h.lwa.assert_clean();
}

#[tokio::test]
async fn invalid_grant_on_refresh_deletes_the_grant() {
    let h = granted().await;
    h.lwa.set_refresh(RefreshMode::InvalidGrant);
    h.clock.advance(chrono::Duration::seconds(3600));
    assert_eq!(h.token().await, None);
    assert!(h.stored(ACCOUNT).await.is_empty());
    // Without a grant nothing is sent at all.
    assert_eq!(h.send_change_report().await, Ok(Delivery::NoGrant));
    assert!(h.gw.hits().is_empty());
    assert_eq!(h.lwa.refreshes(), 1);
}

#[tokio::test]
async fn an_lwa_outage_keeps_using_the_token_until_it_actually_expires() {
    let h = granted().await;
    let first = h.lwa.last_access();
    h.lwa.set_refresh(RefreshMode::Unavailable);
    h.clock.advance(chrono::Duration::seconds(3600 - 100));
    assert_eq!(h.token().await, Some(first));
    h.clock.advance(chrono::Duration::seconds(101));
    let err = h.client.access_token(ACCOUNT).await.unwrap_err();
    assert!(matches!(err, LwaError::Unavailable(_)), "{err:?}");
    assert_eq!(
        h.stored(ACCOUNT).await.len(),
        1,
        "an outage is not a revocation"
    );
}

// ---------------------------------------------------------------------------------------------
// Event gateway
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn change_report_is_posted_as_json_with_the_scope_token_as_bearer() {
    let h = granted().await;
    assert_eq!(h.send_change_report().await, Ok(Delivery::Sent));
    let hits = h.gw.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].bearer, h.lwa.last_access());
    assert_eq!(
        hits[0].body["event"]["endpoint"]["scope"]["token"],
        hits[0].bearer
    );
    h.gw.assert_clean();
    support::record_message("events-gateway-ChangeReport", &hits[0].body);
}

#[tokio::test]
async fn no_grant_means_nothing_is_sent() {
    let h = harness().await;
    assert_eq!(h.send_change_report().await, Ok(Delivery::NoGrant));
    assert!(h.gw.hits().is_empty());
}

#[tokio::test]
async fn gateway_401_refreshes_the_token_and_retries_exactly_once() {
    let h = granted().await;
    let first = h.lwa.last_access();
    h.gw.script(&[(401, gateway_error("INVALID_ACCESS_TOKEN_EXCEPTION"))]);
    assert_eq!(h.send_change_report().await, Ok(Delivery::Sent));
    let hits = h.gw.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].bearer, first);
    let second = h.lwa.last_access();
    assert_ne!(second, first);
    assert_eq!(
        hits[1].bearer, second,
        "the retry carries the refreshed token"
    );
    assert_eq!(
        hits[1].body["event"]["endpoint"]["scope"]["token"], second,
        "and a rebuilt message"
    );
    assert_eq!(h.lwa.refreshes(), 1);

    // A 401 that persists after the refresh: one retry only, then an error; the grant stays
    // (LWA just confirmed it).
    h.gw.set_default(401, gateway_error("INVALID_ACCESS_TOKEN_EXCEPTION"));
    let err = h.send_change_report().await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(h.gw.hits().len(), 4);
    assert_eq!(h.lwa.refreshes(), 2);
    assert_eq!(h.stored(ACCOUNT).await.len(), 1);
    h.gw.assert_clean();
    h.lwa.assert_clean();
}

#[tokio::test]
async fn gateway_403_skill_disabled_deletes_the_grant() {
    let h = granted().await;
    h.gw.set_default(403, gateway_error("SKILL_DISABLED_EXCEPTION"));
    assert_eq!(h.send_change_report().await, Err(GatewayError::Revoked));
    assert!(h.stored(ACCOUNT).await.is_empty());
    assert_eq!(h.gw.hits().len(), 1, "no retry");
    assert_eq!(h.lwa.refreshes(), 0, "no confirmation needed");
    assert_eq!(h.send_change_report().await, Ok(Delivery::NoGrant));
    assert_eq!(h.gw.hits().len(), 1);
}

#[tokio::test]
async fn a_bare_403_confirmed_by_invalid_grant_on_refresh_deletes_the_grant() {
    let h = granted().await;
    h.gw.set_default(403, Value::Null);
    h.lwa.set_refresh(RefreshMode::InvalidGrant);
    assert_eq!(h.send_change_report().await, Err(GatewayError::Revoked));
    assert!(h.stored(ACCOUNT).await.is_empty());
    assert_eq!(h.gw.hits().len(), 1);
    assert_eq!(h.lwa.refreshes(), 1);
}

#[tokio::test]
async fn a_bare_401_with_a_valid_grant_is_retried_and_keeps_the_grant() {
    let h = granted().await;
    h.gw.script(&[(401, Value::Null)]);
    assert_eq!(h.send_change_report().await, Ok(Delivery::Sent));
    assert_eq!(h.gw.hits().len(), 2);
    assert_eq!(h.stored(ACCOUNT).await.len(), 1);
}

#[tokio::test]
async fn throttled_then_accepted_is_delivered_after_a_backoff() {
    let h = granted().await;
    h.gw.script(&[(429, gateway_error("THROTTLING_EXCEPTION"))]);
    assert_eq!(h.send_change_report().await, Ok(Delivery::Sent));
    let hits = h.gw.hits();
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(50),
        "retried without backing off: {gap:?}"
    );
    assert_eq!(h.lwa.refreshes(), 0);
    h.gw.assert_clean();
}

#[tokio::test]
async fn server_errors_are_retried_with_growing_backoff_and_given_up_within_the_budget() {
    let h = granted().await;
    h.gw.set_default(500, gateway_error("INTERNAL_SERVICE_EXCEPTION"));
    let started = Instant::now();
    let err = h.send_change_report().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    // Bounded by the 3 s budget: without one the retries would go on. The room above it is
    // for a loaded machine's slow attempts, not for another backoff.
    assert!(
        elapsed < Duration::from_secs(8),
        "far over the 3 s budget: {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1_000),
        "gave up early: {elapsed:?}"
    );
    let hits = h.gw.hits();
    assert!(hits.len() >= 4, "only {} attempts", hits.len());
    let gaps: Vec<Duration> = hits.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps.last() > gaps.first(), "backoff did not grow: {gaps:?}");
    assert_eq!(h.stored(ACCOUNT).await.len(), 1);
}

/// A change report the gateway refused for good with `status` and `code`.
fn rejected(status: u16, code: &str) -> Result<Delivery, GatewayError> {
    Err(GatewayError::Rejected {
        status,
        code: code.into(),
    })
}

#[tokio::test]
async fn bad_request_and_too_large_are_not_retried() {
    let h = granted().await;
    h.gw.script(&[
        (400, gateway_error("INVALID_REQUEST_EXCEPTION")),
        (413, gateway_error("REQUEST_ENTITY_TOO_LARGE_EXCEPTION")),
    ]);
    assert_eq!(
        h.send_change_report().await,
        rejected(400, "INVALID_REQUEST_EXCEPTION")
    );
    assert_eq!(h.gw.hits().len(), 1);
    assert_eq!(
        h.send_change_report().await,
        rejected(413, "REQUEST_ENTITY_TOO_LARGE_EXCEPTION")
    );
    assert_eq!(h.gw.hits().len(), 2);
    assert_eq!(h.stored(ACCOUNT).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Webhook
// ---------------------------------------------------------------------------------------------

fn zone(id: &str, name: &str, kind: ZoneKind, open: bool) -> Zone {
    Zone {
        id: id.into(),
        number: 1,
        name: name.into(),
        kind,
        open,
        bypassable: true,
        bypassed: false,
        entry: false,
    }
}

fn panel(h: &Harness) -> Panel {
    Panel {
        id: "home".into(),
        name: "Home".into(),
        manufacturer: "Acme".into(),
        model: "AP-100".into(),
        arm_state: ArmState::ArmedAway,
        phase: Phase::Armed,
        delay_remaining_s: 0,
        supported_arm_states: vec![ArmState::ArmedAway, ArmState::ArmedStay, ArmState::Disarmed],
        exit_delay_s: 30,
        entry_delay_s: 30,
        alarms: Alarms::default(),
        trouble: vec![],
        online: true,
        zones: vec![
            zone("front-door", "Front Door", ZoneKind::Contact, false),
            zone("hall", "Hall", ZoneKind::Motion, false),
            zone("garage", "Garage Door", ZoneKind::Contact, false),
        ],
        as_of: h.clock.now(),
        monitoring: None,
    }
}

fn event(id: &str, source: Source, kind: EventKind) -> PanelEvent {
    PanelEvent {
        event_id: id.into(),
        account: ACCOUNT.into(),
        occurred_at: Utc::now(),
        source,
        kind,
    }
}

async fn post_raw(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    timestamp: Option<String>,
    sig: Option<String>,
) -> (u16, Value) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(t) = timestamp {
        req = req.header(webhook::TIMESTAMP_HEADER, t);
    }
    if let Some(s) = sig {
        req = req.header(webhook::SIGNATURE_HEADER, s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn post_signed(h: &Harness, url: &str, body: &[u8]) -> (u16, Value) {
    let ts = h.clock.now().timestamp();
    let sig = signature::sign(&Secret::new(WEBHOOK_SECRET), ts, body);
    post_raw(&h.http, url, body, Some(ts.to_string()), Some(sig)).await
}

async fn post_event(h: &Harness, url: &str, e: &PanelEvent) -> (u16, Value) {
    post_signed(h, url, &serde_json::to_vec(e).unwrap()).await
}

/// A harness whose account has granted (`code-1`), and its webhook's URL.
async fn webhook_harness() -> (Harness, String) {
    let h = granted().await;
    let url = h.webhook_url().await;
    (h, url)
}

/// The panel's arm state changed, by `source`.
fn arm_changed(h: &Harness, id: &str, source: Source) -> PanelEvent {
    event(
        id,
        source,
        EventKind::PanelChanged {
            panel: panel(h),
            changed: vec![Changed::ArmState],
        },
    )
}

/// Posts `e`, which the webhook accepts, sending `sent` reports.
async fn accepted(h: &Harness, url: &str, e: &PanelEvent, sent: u64) {
    assert_eq!(
        post_event(h, url, e).await,
        (202, json!({"status": "accepted", "sent": sent}))
    );
}

fn names(props: &Value) -> Vec<String> {
    props
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}.{}",
                p["namespace"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            )
        })
        .collect()
}

const PANEL_CONTEXT: [&str; 4] = [
    "Alexa.SecurityPanelController.burglaryAlarm",
    "Alexa.SecurityPanelController.fireAlarm",
    "Alexa.SecurityPanelController.carbonMonoxideAlarm",
    "Alexa.SecurityPanelController.waterAlarm",
];

/// The messages of hits from `from` on, keyed by endpointId; checks the common ChangeReport
/// envelope and records each for schema validation.
fn change_reports(h: &Harness, from: usize, label: &str) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for hit in &h.gw.hits()[from..] {
        let m = &hit.body;
        let header = &m["event"]["header"];
        assert_eq!(header["namespace"], "Alexa");
        assert_eq!(header["name"], "ChangeReport");
        assert_eq!(header["payloadVersion"], "3");
        assert!(header.get("correlationToken").is_none());
        assert_eq!(m["event"]["endpoint"]["scope"]["token"], hit.bearer);
        support::record_message(&format!("events-{label}-ChangeReport"), m);
        let id = m["event"]["endpoint"]["endpointId"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            out.insert(id, m.clone()).is_none(),
            "two reports for one endpoint"
        );
    }
    out
}

/// An app's event `id` that adds zone `zone` to the demo panel.
fn zone_added(h: &Harness, id: &str, zone: &str) -> PanelEvent {
    event(
        id,
        Source::App,
        EventKind::ZoneAdded {
            panel: panel(h),
            zone_id: zone.into(),
        },
    )
}

#[tokio::test]
async fn webhook_refuses_bad_signatures_without_claiming_the_event() {
    let (h, url) = webhook_harness().await;
    let body = serde_json::to_vec(&arm_changed(&h, "evt-sig", Source::Keypad)).unwrap();
    let ts = h.clock.now().timestamp();
    let wrong_key = signature::sign(&Secret::new("not-the-secret"), ts, &body);
    let tampered = {
        let mut b = body.clone();
        b.extend_from_slice(b" ");
        b
    };
    let good = signature::sign(&Secret::new(WEBHOOK_SECRET), ts, &body);
    for (b, t, s) in [
        (&body, Some(ts.to_string()), Some(wrong_key)),
        (&tampered, Some(ts.to_string()), Some(good.clone())),
        (&body, Some(ts.to_string()), Some("v1=zz".to_string())),
        (&body, Some(ts.to_string()), None),
        (&body, None, Some(good.clone())),
    ] {
        let (status, reply) = post_raw(&h.http, &url, b, t, s).await;
        assert_eq!(status, 401, "{reply}");
        assert_eq!(reply["error"], "unauthorized");
        assert!(reply["reason"].as_str().unwrap().len() < 40);
    }
    assert!(h.gw.hits().is_empty());
    // None of those claimed the id: the genuine request still goes through.
    let (status, reply) = post_raw(&h.http, &url, &body, Some(ts.to_string()), Some(good)).await;
    assert_eq!((status, reply["sent"].as_u64()), (202, Some(1)), "{reply}");
}

#[tokio::test]
async fn webhook_refuses_stale_and_future_timestamps() {
    let (h, url) = webhook_harness().await;
    let body = serde_json::to_vec(&arm_changed(&h, "evt-stale", Source::Keypad)).unwrap();
    let now = h.clock.now().timestamp();
    for ts in [
        now - webhook::TOLERANCE_S - 1,
        now + webhook::TOLERANCE_S + 1,
    ] {
        let sig = signature::sign(&Secret::new(WEBHOOK_SECRET), ts, &body);
        let (status, reply) = post_raw(&h.http, &url, &body, Some(ts.to_string()), Some(sig)).await;
        assert_eq!(status, 401);
        assert_eq!(reply["reason"], "stale timestamp");
    }
    assert!(h.gw.hits().is_empty());
}

#[tokio::test]
async fn webhook_refuses_malformed_events() {
    let (h, url) = webhook_harness().await;
    let missing_fields = br#"{"event_id":"e","type":"panel_changed"}"#;
    let unknown_type = format!(
        r#"{{"event_id":"e","account":"{ACCOUNT}","occurred_at":"2025-01-15T10:00:00Z","source":"app","type":"exploded"}}"#
    );
    for body in [&b"not json"[..], missing_fields, unknown_type.as_bytes()] {
        let (status, reply) = post_signed(&h, &url, body).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["error"], "bad_request");
    }
    // A well-formed event naming a zone the panel doesn't have.
    let e = zone_added(&h, "evt-bad-zone", "attic");
    assert_eq!(post_event(&h, &url, &e).await.0, 400);
    assert!(h.gw.hits().is_empty());
}

#[tokio::test]
async fn a_replayed_event_id_sends_nothing() {
    let (h, url) = webhook_harness().await;
    let e = arm_changed(&h, "evt-replay", Source::App);
    let body = serde_json::to_vec(&e).unwrap();
    let ts = h.clock.now().timestamp();
    let sig = signature::sign(&Secret::new(WEBHOOK_SECRET), ts, &body);
    let first = post_raw(
        &h.http,
        &url,
        &body,
        Some(ts.to_string()),
        Some(sig.clone()),
    )
    .await;
    assert_eq!(first, (202, json!({"status": "accepted", "sent": 1})));
    // The identical request again, then the same event re-signed later.
    let second = post_raw(&h.http, &url, &body, Some(ts.to_string()), Some(sig)).await;
    assert_eq!(second, (200, json!({"status": "duplicate"})));
    h.clock.advance(chrono::Duration::seconds(60));
    assert_eq!(
        post_event(&h, &url, &e).await,
        (200, json!({"status": "duplicate"}))
    );
    assert_eq!(h.gw.hits().len(), 1);
}

#[tokio::test]
async fn arm_state_change_reports_only_armstate_as_changed_with_the_mapped_cause() {
    let (h, url) = webhook_harness().await;
    let cases = [
        (Source::Keypad, "PHYSICAL_INTERACTION"),
        (Source::App, "APP_INTERACTION"),
        (Source::Voice, "VOICE_INTERACTION"),
        (Source::Automation, "RULE_TRIGGER"),
    ];
    for (i, (source, cause)) in cases.into_iter().enumerate() {
        let before = h.gw.hits().len();
        let e = arm_changed(&h, &format!("evt-arm-{i}"), source);
        accepted(&h, &url, &e, 1).await;
        let reports = change_reports(&h, before, &format!("arm-{cause}"));
        assert_eq!(reports.len(), 1);
        let m = &reports["home"];
        let change = &m["event"]["payload"]["change"];
        assert_eq!(change["cause"]["type"], cause, "{source:?}");
        assert_eq!(
            names(&change["properties"]),
            vec!["Alexa.SecurityPanelController.armState"]
        );
        assert_eq!(change["properties"][0]["value"], "ARMED_AWAY");
        let mut expected_context: Vec<String> =
            PANEL_CONTEXT.iter().map(|s| s.to_string()).collect();
        expected_context.push("Alexa.EndpointHealth.connectivity".into());
        assert_eq!(names(&m["context"]["properties"]), expected_context);
        assert_eq!(
            m["context"]["properties"][4]["value"],
            json!({"value": "OK"})
        );
    }
    h.gw.assert_clean();
}

#[tokio::test]
async fn an_alarm_and_a_zone_opening_report_the_panel_and_that_zone() {
    let (h, url) = webhook_harness().await;
    let mut p = panel(&h);
    p.zones[0].open = true;
    p.zones[1].open = true;
    p.alarms.burglary = true;
    let e = event(
        "evt-zone",
        Source::Sensor,
        EventKind::PanelChanged {
            panel: p,
            changed: vec![
                Changed::BurglaryAlarm,
                Changed::ZoneOpen {
                    zone: "front-door".into(),
                },
                Changed::ZoneOpen {
                    zone: "hall".into(),
                },
            ],
        },
    );
    accepted(&h, &url, &e, 3).await;
    let reports = change_reports(&h, 0, "zone-open");
    assert_eq!(reports.len(), 3);

    let panel_change = &reports["home"]["event"]["payload"]["change"];
    assert_eq!(panel_change["cause"]["type"], "PHYSICAL_INTERACTION");
    assert_eq!(
        names(&panel_change["properties"]),
        vec!["Alexa.SecurityPanelController.burglaryAlarm"]
    );
    assert_eq!(
        panel_change["properties"][0]["value"],
        json!({"value": "ALARM"})
    );
    assert_eq!(
        reports["home"]["context"]["properties"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    for (id, namespace) in [
        ("home:front-door", "Alexa.ContactSensor"),
        ("home:hall", "Alexa.MotionSensor"),
    ] {
        let m = &reports[id];
        let change = &m["event"]["payload"]["change"];
        assert_eq!(
            names(&change["properties"]),
            vec![format!("{namespace}.detectionState")]
        );
        assert_eq!(change["properties"][0]["value"], "DETECTED");
        assert_eq!(
            names(&m["context"]["properties"]),
            vec!["Alexa.EndpointHealth.connectivity"]
        );
    }
    assert!(
        !reports.contains_key("home:garage"),
        "an unchanged zone gets no report"
    );
    h.gw.assert_clean();
}

#[tokio::test]
async fn connectivity_loss_reports_the_panel_and_every_zone() {
    let (h, url) = webhook_harness().await;
    let mut p = panel(&h);
    p.online = false;
    p.zones[1].open = true;
    let e = event(
        "evt-offline",
        Source::System,
        EventKind::PanelChanged {
            panel: p,
            // The hall zone also changed: its report carries both, not two reports.
            changed: vec![
                Changed::Connectivity,
                Changed::ZoneOpen {
                    zone: "hall".into(),
                },
            ],
        },
    );
    accepted(&h, &url, &e, 4).await;
    let reports = change_reports(&h, 0, "offline");
    let mut ids: Vec<&String> = reports.keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        vec!["home", "home:front-door", "home:garage", "home:hall"]
    );

    let unreachable = json!({"value": "UNREACHABLE"});
    let panel_m = &reports["home"];
    let change = &panel_m["event"]["payload"]["change"];
    assert_eq!(change["cause"]["type"], "PERIODIC_POLL");
    assert_eq!(
        names(&change["properties"]),
        vec!["Alexa.EndpointHealth.connectivity"]
    );
    assert_eq!(change["properties"][0]["value"], unreachable);
    let mut expected = vec!["Alexa.SecurityPanelController.armState".to_string()];
    expected.extend(PANEL_CONTEXT.iter().map(|s| s.to_string()));
    assert_eq!(names(&panel_m["context"]["properties"]), expected);

    for id in ["home:front-door", "home:garage"] {
        let m = &reports[id];
        let change = &m["event"]["payload"]["change"];
        assert_eq!(
            names(&change["properties"]),
            vec!["Alexa.EndpointHealth.connectivity"]
        );
        assert_eq!(change["properties"][0]["value"], unreachable);
        assert_eq!(
            names(&m["context"]["properties"]),
            vec!["Alexa.ContactSensor.detectionState"]
        );
        assert_eq!(m["context"]["properties"][0]["value"], "NOT_DETECTED");
    }
    let hall = &reports["home:hall"];
    assert_eq!(
        names(&hall["event"]["payload"]["change"]["properties"]),
        vec![
            "Alexa.MotionSensor.detectionState",
            "Alexa.EndpointHealth.connectivity"
        ]
    );
    assert_eq!(hall["context"]["properties"], json!([]));
    h.gw.assert_clean();
}

#[tokio::test]
async fn a_new_zone_is_announced_with_add_or_update_report() {
    let (h, url) = webhook_harness().await;
    let e = zone_added(&h, "evt-add", "garage");
    accepted(&h, &url, &e, 1).await;
    let hits = h.gw.hits();
    assert_eq!(hits.len(), 1);
    let m = &hits[0].body;
    assert_eq!(m["event"]["header"]["namespace"], "Alexa.Discovery");
    assert_eq!(m["event"]["header"]["name"], "AddOrUpdateReport");
    assert!(m["event"].get("endpoint").is_none());
    let payload = &m["event"]["payload"];
    assert_eq!(
        payload["scope"],
        json!({"type": "BearerToken", "token": hits[0].bearer})
    );
    let endpoints = payload["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["endpointId"], "home:garage");
    assert_eq!(endpoints[0]["friendlyName"], "Garage Door");
    assert_eq!(endpoints[0]["manufacturerName"], "Acme Security");
    assert_eq!(endpoints[0]["displayCategories"], json!(["CONTACT_SENSOR"]));
    h.gw.assert_clean();
    support::record_message("events-AddOrUpdateReport", m);
}

#[tokio::test]
async fn a_removed_zone_is_withdrawn_with_delete_report() {
    let (h, url) = webhook_harness().await;
    let e = event(
        "evt-del",
        Source::App,
        EventKind::ZoneRemoved {
            panel_id: "home".into(),
            zone_id: "garage".into(),
        },
    );
    accepted(&h, &url, &e, 1).await;
    let hits = h.gw.hits();
    assert_eq!(hits.len(), 1);
    let m = &hits[0].body;
    support::record_unschematized("events-DeleteReport", m);
    // Not in Amazon's schema: checked by hand against the Alexa.Discovery docs.
    let header = &m["event"]["header"];
    assert_eq!(header["namespace"], "Alexa.Discovery");
    assert_eq!(header["name"], "DeleteReport");
    assert_eq!(header["payloadVersion"], "3");
    let id = header["messageId"].as_str().unwrap();
    assert!(
        !id.is_empty()
            && id.len() <= 127
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    );
    assert_eq!(
        m["event"]["payload"],
        json!({"endpoints": [{"endpointId": "home:garage"}],
               "scope": {"type": "BearerToken", "token": hits[0].bearer}})
    );
    assert!(m["event"].get("endpoint").is_none() && m.get("context").is_none());
    h.gw.assert_clean();
}

#[tokio::test]
async fn an_account_without_a_grant_is_answered_no_grant() {
    let h = harness().await;
    let url = h.webhook_url().await;
    let e = arm_changed(&h, "evt-nogrant", Source::App);
    assert_eq!(
        post_event(&h, &url, &e).await,
        (200, json!({"status": "no_grant"}))
    );
    assert!(h.gw.hits().is_empty());
}

#[tokio::test]
async fn a_failed_delivery_is_still_accepted_and_the_event_stays_claimed() {
    let h = harness_with_budget(Some(Duration::from_millis(600))).await;
    h.grant(ACCOUNT, "code-1").await.unwrap();
    h.gw.set_default(503, gateway_error("SERVICE_UNAVAILABLE_EXCEPTION"));
    let url = h.webhook_url().await;
    let mut p = panel(&h);
    p.online = false;
    let e = event(
        "evt-fail",
        Source::System,
        EventKind::PanelChanged {
            panel: p,
            changed: vec![Changed::Connectivity],
        },
    );
    accepted(&h, &url, &e, 0).await;
    let attempts = h.gw.hits().len();
    assert!(attempts >= 2, "retried within the budget");
    assert!(
        h.gw.hits()
            .iter()
            .all(|hit| hit.body["event"]["endpoint"]["endpointId"] == "home"),
        "after the first report failed on a gateway outage, the zone reports were not attempted"
    );
    assert_eq!(
        post_event(&h, &url, &e).await,
        (200, json!({"status": "duplicate"}))
    );
    assert_eq!(h.gw.hits().len(), attempts);
}

// ---------------------------------------------------------------------------------------------
// The local stack's dev fakes, driven by the real clients
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "local")]
#[tokio::test]
async fn dev_alexa_fakes_work_with_the_real_clients() {
    use alarm_skill::local::alexa_dev::{self, DevAlexa};

    let dev = Arc::new(DevAlexa::new(CLIENT_ID, Secret::new(CLIENT_SECRET)));
    let base = serve(alexa_dev::routes(Arc::clone(&dev))).await;
    let store = Arc::new(MemoryStore::new());
    let keyring = Arc::new(Keyring::random());
    let clock = Arc::new(AdjustableClock::frozen(Utc::now()));
    let http = reqwest::Client::new();
    let token_url = format!("{base}/dev/lwa/token");
    let lwa = Arc::new(lwa_client(
        &token_url,
        CLIENT_SECRET,
        AlexaRegion::Na,
        &store,
        &keyring,
        &clock,
        &http,
    ));
    let gateway = HttpEventGateway::new(
        format!("{base}/dev/gateway/v3/events"),
        Arc::clone(&lwa),
        http.clone(),
    );
    let deadline = || Deadline::after(Duration::from_secs(5));

    lwa.accept(ACCOUNT, &BearerToken::new("dev-code"), deadline())
        .await
        .unwrap();
    assert!(matches!(
        lwa.accept("acct-2", &BearerToken::new("dev-code"), deadline())
            .await,
        Err(GrantError::Rejected(_))
    ));
    let wrong = lwa_client(
        &token_url,
        "wrong",
        AlexaRegion::Na,
        &store,
        &keyring,
        &clock,
        &http,
    );
    let err = wrong
        .accept("acct-3", &BearerToken::new("other"), deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GrantError::Rejected(m) if m.contains("invalid_client")),
        "{err:?}"
    );
    // JSON instead of a form: refused like the real LWA.
    let resp = http
        .post(&token_url)
        .json(&json!({"grant_type": "authorization_code", "code": "c", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let token = lwa.access_token(ACCOUNT).await.unwrap().unwrap();
    assert!(token.expose().starts_with("Atza|"));
    let at = clock.now();
    let build = |t: &str| {
        Message::change_report(
            "home",
            t,
            "APP_INTERACTION",
            vec![alarm_skill::wire::alexa::Property::arm_state(
                "DISARMED", at,
            )],
            vec![alarm_skill::wire::alexa::Property::connectivity(true, at)],
        )
    };
    assert_eq!(gateway.send(ACCOUNT, &build).await, Ok(Delivery::Sent));
    assert_eq!(dev.events().len(), 1);
    let listed: Value = http
        .get(format!("{base}/dev/gateway/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, Value::Array(dev.events()));
    assert_eq!(
        listed[0]["event"]["endpoint"]["scope"]["token"],
        token.expose()
    );

    // The fake gateway refuses tokens it didn't issue, and a scope that differs from the header.
    let post = |bearer: String, msg: Value| {
        http.post(format!("{base}/dev/gateway/v3/events"))
            .bearer_auth(bearer)
            .json(&msg)
            .send()
    };
    let resp = post("Atza|forged".into(), build("Atza|forged").to_value())
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = post(token.expose().into(), build("Atza|other").to_value())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(dev.events().len(), 1);

    // Refresh through the fake, then a revocation seen as invalid_grant.
    clock.advance(chrono::Duration::seconds(3600));
    let refreshed = lwa.access_token(ACCOUNT).await.unwrap().unwrap();
    assert_ne!(refreshed.expose(), token.expose());
    assert_eq!(gateway.send(ACCOUNT, &build).await, Ok(Delivery::Sent));
    assert_eq!(dev.events().len(), 2);
    dev.revoke_all();
    assert!(lwa.force_refresh(ACCOUNT).await.unwrap().is_none());
    assert!(store.grants(ACCOUNT).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_linked_alexa_user_gets_the_report_and_keeps_a_grant_of_their_own() {
    let h = harness().await;
    // A grant stored before grants were per user: under the region alone.
    h.grant(ACCOUNT, "code-old").await.unwrap();
    let link = |user: &'static str, code: &'static str| {
        let client = Arc::clone(&h.client);
        async move {
            client
                .accept_for_user(
                    ACCOUNT,
                    user,
                    &BearerToken::new(code),
                    Deadline::after(Duration::from_secs(5)),
                )
                .await
        }
    };
    // Two household members link their own Alexa accounts to the same household.
    link("alex", "code-alex").await.unwrap();
    link("sam", "code-sam").await.unwrap();
    let keys = h.client.grant_keys(ACCOUNT).await.unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[0], "EU");
    assert!(keys[1..].iter().all(|k| k.starts_with("EU#")), "{keys:?}");
    // Sam linking again replaces Sam's grant only.
    link("sam", "code-sam-2").await.unwrap();
    assert_eq!(h.client.grant_keys(ACCOUNT).await.unwrap(), keys);

    let before = h.gw.hits().len();
    assert_eq!(h.send_change_report().await.unwrap(), Delivery::Sent);
    let hits = h.gw.hits()[before..].to_vec();
    let bearers: HashSet<String> = hits.iter().map(|hit| hit.bearer.clone()).collect();
    assert_eq!(
        (hits.len(), bearers.len()),
        (3, 3),
        "one report per linked user"
    );
    assert!(bearers.iter().all(|b| h.lwa.issued(b)));

    // The member from before disables the skill: their grant goes, the others stay and still
    // get the report.
    h.gw.script(&[(403, gateway_error("SKILL_DISABLED_EXCEPTION"))]);
    let before = h.gw.hits().len();
    assert_eq!(h.send_change_report().await.unwrap(), Delivery::Sent);
    assert_eq!(h.gw.hits().len() - before, 3);
    assert_eq!(
        h.client.grant_keys(ACCOUNT).await.unwrap(),
        keys[1..].to_vec()
    );
    let before = h.gw.hits().len();
    assert_eq!(h.send_change_report().await.unwrap(), Delivery::Sent);
    assert_eq!(h.gw.hits().len() - before, 2);
    h.gw.assert_clean();
    h.lwa.assert_clean();
}
