//! A local stack started in-process on free ports, driven over HTTP exactly as a user or
//! Alexa would drive it. Every reply to a directive is recorded for schema validation.
#![allow(dead_code)]

use std::time::Duration;

use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::{INVOKE_PATH, LocalStack, Options};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{record_google_message, record_message};

pub struct Harness {
    pub stack: LocalStack,
    pub http: reqwest::Client,
    pub base: String,
}

/// Every Report State body the local HomeGraph accepted during the test, for CI's validation
/// against Google's schemas (a test that panics still leaves what it produced).
impl Drop for Harness {
    fn drop(&mut self) {
        for body in self.stack.dev_google.reports() {
            record_google_message("report-state", "report-state", &body);
        }
    }
}

/// Extra zones and a neighbouring account, for the tests that need them.
pub const RICH_CONFIG: &str = r#"{
  "accounts": [
    {"id": "demo", "users": [{"number": 1, "name": "Alex"}, {"number": 2, "name": "Sam"}],
     "panels": [{"id": "home", "name": "Home", "exit_delay_s": 60, "entry_delay_s": 30,
       "zones": [
         {"id": "front-door", "number": 1, "name": "Front door", "kind": "contact", "entry": true},
         {"id": "back-door", "number": 2, "name": "Back door", "kind": "contact"},
         {"id": "hallway", "number": 3, "name": "Hallway", "kind": "motion"},
         {"id": "garage", "number": 4, "name": "Garage", "kind": "contact", "bypassable": false}
       ]}]},
    {"id": "neighbor", "users": [{"number": 1, "name": "Nia"}],
     "panels": [{"id": "cabin", "name": "Cabin", "zones": [
         {"id": "door", "number": 1, "name": "Door", "kind": "contact", "entry": true}]}]}
  ],
  "households": [
    {"account": "demo", "members": [
      {"id": "alex", "name": "Alex", "user_number": 1, "voice_pin": "4729", "duress_pin": "8361"},
      {"id": "sam", "name": "Sam", "user_number": 2, "voice_pin": "5183"}]},
    {"account": "neighbor", "members": [
      {"id": "nia", "name": "Nia", "user_number": 1, "voice_pin": "6052"}]}
  ]
}"#;

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options {
            config: DemoConfig::demo(),
            ..test_options()
        })
        .await
    }

    pub async fn rich() -> Self {
        Self::start_with(Options {
            config: DemoConfig::parse(RICH_CONFIG).expect("rich config"),
            ..test_options()
        })
        .await
    }

    pub async fn start_with(opts: Options) -> Self {
        let stack = LocalStack::start(opts).await.expect("local stack starts");
        let base = stack.base_url.clone();
        Harness {
            stack,
            http: reqwest::Client::new(),
            base,
        }
    }

    /// Alexa's account-linking token: drives directives, manages nothing.
    pub async fn token(&self, sub: &str) -> String {
        self.token_for(sub, false).await
    }

    /// A household admin's management-API token (not valid for directives).
    pub async fn admin_token(&self, sub: &str) -> String {
        self.token_for(sub, true).await
    }

    async fn token_for(&self, sub: &str, admin: bool) -> String {
        self.token_with(json!({ "sub": sub, "admin": admin })).await
    }

    /// A dev-issuer token for any `/dev/token` body, e.g. `{"sub","use":"management"}`: a
    /// household member's management token without the admin group.
    pub async fn token_with(&self, body: Value) -> String {
        dev_token(&self.http, &self.base, body).await
    }

    /// Sends a directive through the Lambda invoke endpoint; records the reply.
    pub async fn invoke(&self, directive: &Value) -> Value {
        self.invoke_raw(&directive.to_string()).await
    }

    pub async fn invoke_raw(&self, body: &str) -> Value {
        let resp = self
            .http
            .post(format!("{}{INVOKE_PATH}", self.base))
            .body(body.to_string())
            .send()
            .await
            .expect("invoke");
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "the invoke endpoint always answers 200"
        );
        let reply: Value = resp.json().await.expect("reply is JSON");
        let name = format!(
            "{}-{}",
            reply["event"]["header"]["namespace"]
                .as_str()
                .unwrap_or("x"),
            reply["event"]["header"]["name"].as_str().unwrap_or("x")
        );
        record_message(&name, &reply);
        reply
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("GET json")
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.post_raw(path, body).await;
        assert!(status.is_success(), "POST {path}: {status}");
        body
    }

    /// POSTs `body` to the stack at `path`: (status, JSON body or Null), whatever the status.
    pub async fn post_raw(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The stack of `RICH_CONFIG`, and its household admin's token.
    pub async fn rich_admin() -> (Harness, String) {
        let h = Harness::rich().await;
        let admin = h.admin_token("demo").await;
        (h, admin)
    }

    /// The demo stack, and a token of the demo household.
    pub async fn demo() -> (Harness, String) {
        let h = Harness::start().await;
        let t = h.token("demo").await;
        (h, t)
    }

    /// The demo stack armed by voice in `mode` (`ARMED_AWAY`, ...), the exit delay over.
    pub async fn armed(mode: &str) -> (Harness, String) {
        let (h, t) = Harness::demo().await;
        h.invoke(&arm(&t, "home", mode)).await;
        h.advance(60).await;
        (h, t)
    }

    /// `PUT /v1/household/members/{member}/{slot}` (`voice-pin` or `duress-pin`) with `pin`.
    pub async fn set_pin(
        &self,
        token: &str,
        member: &str,
        slot: &str,
        pin: Value,
    ) -> (StatusCode, Value) {
        self.api(
            "PUT",
            &format!("/v1/household/members/{member}/{slot}"),
            Some(token),
            Some(json!({ "pin": pin })),
        )
        .await
    }

    /// The 121s (duress) the monitoring center received, as `121/<user>/<partition>`.
    pub async fn duress_signals(&self) -> Vec<String> {
        self.signals()
            .await
            .into_iter()
            .filter(|s| s.starts_with("121/"))
            .collect()
    }

    /// Management API call: (status, JSON body or Null).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("api call");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Every event the dev Alexa gateway accepted, once deliveries have stopped arriving.
    /// "Stopped" means no new event for 300 ms (up to 5 s in all): a webhook, its ChangeReport and
    /// the event gateway's reply take a few milliseconds each, but a loaded CI machine can stall
    /// one for far longer than a single poll interval.
    pub async fn settled_gateway_events(&self) -> Vec<Value> {
        settled(|| self.stack.dev_alexa.events()).await
    }

    /// The household's audit log as the admin sees it, normalized for comparison.
    pub async fn audit_log(&self) -> Value {
        let admin = self.admin_token("demo").await;
        let (status, body) = self.audit_as(&admin).await;
        assert_eq!(status, 200);
        normalize(&body)
    }

    /// `GET /v1/household/audit?limit=100` as `token`: (status, body), as it came.
    pub async fn audit_as(&self, token: &str) -> (StatusCode, Value) {
        self.api("GET", "/v1/household/audit?limit=100", Some(token), None)
            .await
    }

    /// Asserts that the audit log `token` reads mentions `text`.
    pub async fn assert_audit_mentions(&self, token: &str, text: &str) {
        let (_, audit) = self.audit_as(token).await;
        assert!(audit.to_string().contains(text), "{audit}");
    }

    /// A directive token for `sub` that expired ten minutes ago.
    pub fn expired_token(&self, sub: &str) -> String {
        self.stack
            .issuer
            .mint(sub, false, chrono::Duration::seconds(-600))
            .unwrap()
    }

    /// `GET /v1/household/lockout` as `token`: (status, body), as it came.
    pub async fn lockout_as(&self, token: &str) -> (StatusCode, Value) {
        self.api("GET", "/v1/household/lockout", Some(token), None)
            .await
    }

    /// `PUT /v1/household/settings` with `settings` as `token`: (status, body).
    pub async fn put_settings(&self, token: &str, settings: Value) -> (StatusCode, Value) {
        self.api("PUT", "/v1/household/settings", Some(token), Some(settings))
            .await
    }

    pub async fn monitoring(&self) -> Vec<Value> {
        self.get("/sim/monitoring")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Contact ID codes received, in order, as "code/qualifier/user-or-zone".
    pub async fn signals(&self) -> Vec<String> {
        self.monitoring()
            .await
            .iter()
            .map(|e| {
                let who = e["user"]
                    .as_u64()
                    .or(e["zone"].as_u64())
                    .map_or("-".to_string(), |n| n.to_string());
                format!(
                    "{}/{}/{}",
                    e["code"].as_str().unwrap_or("?"),
                    e["qualifier"],
                    who
                )
            })
            .collect()
    }

    pub async fn advance(&self, seconds: i64) {
        self.post("/sim/clock/advance", json!({ "seconds": seconds }))
            .await;
    }

    pub async fn fault(&self, mode: &str, delay_ms: u64) {
        self.post("/sim/faults", json!({ "mode": mode, "delay_ms": delay_ms }))
            .await;
    }

    pub async fn panel(&self, id: &str) -> Value {
        let all = self.get("/sim/panels").await;
        all["panels"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["panel"]["id"] == id))
            .map(|p| p["panel"].clone())
            .expect("panel in simulator")
    }

    /// Panel API calls the simulator received for `panel` (ops: list, get, arm, disarm, signal).
    pub async fn requests_for(&self, panel: &str) -> Vec<String> {
        self.get("/sim/requests")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|r| r["panel"] == panel)
            .map(|r| r["op"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// Set to `dynamodb` (scripts/test does, for a second pass) to run the suites on DynamoDB
/// Local at `DYNAMODB_ENDPOINT` instead of the embedded store, each stack on its own table.
pub const STORE_VAR: &str = "ALARM_SKILL_TEST_STORE";

pub fn on_dynamodb() -> bool {
    std::env::var(STORE_VAR).is_ok_and(|v| v == "dynamodb")
}

pub fn test_options() -> Options {
    let dynamodb_endpoint = on_dynamodb().then(dynamodb_endpoint);
    Options {
        port: 0,
        panel_port: 0,
        receiver_port: 0,
        frozen_clock: true,
        redelivery_interval: None,
        directive_budget: Some(Duration::from_millis(1_500)),
        dynamodb_endpoint,
        table: format!("t-{}", uuid::Uuid::new_v4().simple()),
        ..Options::default()
    }
}

/// Everything the stack's store holds, as JSON: the embedded store's dump, or every item of the
/// DynamoDB table (a Scan: fine in a test, never on a request path).
pub async fn store_dump(h: &Harness) -> Value {
    if let Some(m) = &h.stack.memory {
        return m.dump();
    }
    let endpoint = std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT");
    let client = alarm_skill::adapters::store::dynamodb::local_client(&endpoint);
    let items: Vec<Value> = client
        .scan()
        .table_name(&h.stack.table)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("scan")
        .iter()
        .map(|item| {
            Value::Object(
                item.iter()
                    .map(|(k, v)| (k.clone(), attribute_json(v)))
                    .collect(),
            )
        })
        .collect();
    json!({ "items": items })
}

fn attribute_json(v: &aws_sdk_dynamodb::types::AttributeValue) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => json!(s),
        A::N(n) => json!(n),
        A::Bool(b) => json!(b),
        A::Null(_) => Value::Null,
        A::M(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), attribute_json(v)))
                .collect(),
        ),
        A::L(l) => Value::Array(l.iter().map(attribute_json).collect()),
        A::Ss(ss) => json!(ss),
        A::Ns(ns) => json!(ns),
        other => json!(format!("{other:?}")),
    }
}

/// The outbox records in the dump, whichever store.
pub fn outbox_records(dump: &Value) -> Vec<Value> {
    if let Some(o) = dump["outbox"].as_array() {
        return o.clone();
    }
    dump["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["PK"].as_str().is_some_and(|pk| pk.starts_with("OUTBOX#")))
        .cloned()
        .collect()
}

fn header(namespace: &str, name: &str) -> Value {
    json!({
        "namespace": namespace, "name": name,
        "messageId": uuid::Uuid::new_v4().to_string(),
        "correlationToken": format!("corr-{}", uuid::Uuid::new_v4()),
        "payloadVersion": "3"
    })
}

pub fn discover(token: &str) -> Value {
    let mut h = header("Alexa.Discovery", "Discover");
    h.as_object_mut()
        .expect("header")
        .remove("correlationToken");
    json!({"directive": {"header": h, "payload": {"scope": {"type": "BearerToken", "token": token}}}})
}

fn control(namespace: &str, name: &str, token: &str, endpoint: &str, payload: Value) -> Value {
    json!({"directive": {
        "header": header(namespace, name),
        "endpoint": {"scope": {"type": "BearerToken", "token": token}, "endpointId": endpoint, "cookie": {}},
        "payload": payload
    }})
}

pub fn report_state(token: &str, endpoint: &str) -> Value {
    control("Alexa", "ReportState", token, endpoint, json!({}))
}

pub fn arm(token: &str, endpoint: &str, state: &str) -> Value {
    control(
        "Alexa.SecurityPanelController",
        "Arm",
        token,
        endpoint,
        json!({"armState": state}),
    )
}

pub fn arm_bypass(token: &str, endpoint: &str, state: &str) -> Value {
    control(
        "Alexa.SecurityPanelController",
        "Arm",
        token,
        endpoint,
        json!({"armState": state, "bypassType": "BYPASS_ALL"}),
    )
}

pub fn disarm(token: &str, endpoint: &str, pin: Option<&str>) -> Value {
    let payload = match pin {
        Some(p) => json!({"authorization": {"type": "FOUR_DIGIT_PIN", "value": p}}),
        None => json!({}),
    };
    control(
        "Alexa.SecurityPanelController",
        "Disarm",
        token,
        endpoint,
        payload,
    )
}

pub fn accept_grant(grantee: &str, code: &str) -> Value {
    let mut h = header("Alexa.Authorization", "AcceptGrant");
    h.as_object_mut()
        .expect("header")
        .remove("correlationToken");
    json!({"directive": {"header": h, "payload": {
        "grant": {"type": "OAuth2.AuthorizationCode", "code": code},
        "grantee": {"type": "BearerToken", "token": grantee}}}})
}

/// The reply without the fields that differ on every message: messageId, correlationToken and
/// every timeOfSample. What remains must be identical for a normal and a duress disarm.
pub fn normalize(v: &Value) -> Value {
    let mut v = v.clone();
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for key in [
                    "messageId",
                    "correlationToken",
                    "timeOfSample",
                    "at",
                    "event_id",
                    "occurred_at",
                    "as_of",
                    // Each stack's own event-gateway token.
                    "token",
                ] {
                    if m.contains_key(key) {
                        m.insert(key.to_string(), json!("<normalized>"));
                    }
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Two identical demo stacks, each with an Alexa event-gateway grant so ChangeReports flow: one
/// for a normal code, one for the duress code, compared.
pub async fn pair() -> (Harness, Harness) {
    let (a, b) = tokio::join!(Harness::start(), Harness::start());
    for h in [&a, &b] {
        let t = h.token("demo").await;
        let r = h.invoke(&accept_grant(&t, "grant-code")).await;
        assert_eq!(r["event"]["header"]["name"], "AcceptGrant.Response");
    }
    (a, b)
}

/// How many of the signals the monitoring center received start with `prefix` (`"121/"`).
/// An Alexa skill event as Alexa delivers it to the skill's Lambda.
pub fn skill_event(kind: &str, token: Option<&str>) -> Value {
    let mut user = json!({ "userId": "amzn1.ask.account.TEST" });
    if let Some(t) = token {
        user["accessToken"] = json!(t);
    }
    json!({
        "version": "1.0",
        "context": { "System": {
            "application": { "applicationId": "amzn1.ask.skill.00000000-0000-0000-0000-000000000000" },
            "user": user
        }},
        "request": {
            "type": format!("AlexaSkillEvent.{kind}"),
            "requestId": uuid::Uuid::new_v4().to_string(),
            "timestamp": "2026-12-06T04:00:00Z",
            "eventCreationTime": "2026-12-06T04:00:00Z",
            "eventPublishingTime": "2026-12-06T04:00:00Z",
            "body": { "userInformationPersistenceStatus": "NOT_PERSISTED" }
        }
    })
}

/// Writes a pending duress of user 1 for the demo's `home`, written at `written` and due at `due`,
/// sealed as releases before v3 sealed (AAD v2, bound to the request id only); its request id.
pub async fn pending_v2_duress(
    h: &Harness,
    written: chrono::DateTime<chrono::Utc>,
    due: chrono::DateTime<chrono::Utc>,
) -> String {
    let request_id = uuid::Uuid::new_v4().to_string();
    let aad = format!("alarm-skill/outbox/v2|{request_id}");
    let seal = h.stack.keyring.seal(&[1, 0, 1], aad.as_bytes());
    let record = alarm_skill::domain::ports::store::OutboxRecord::pending(
        request_id.clone(),
        "demo",
        "home",
        seal,
        written,
        due,
    );
    h.stack.store.put_outbox(&record, None).await.unwrap();
    request_id
}

/// The status of outbox record `request_id`, which must exist.
pub async fn outbox_status(
    h: &Harness,
    request_id: &str,
) -> alarm_skill::domain::ports::store::OutboxStatus {
    let record = h.stack.store.outbox_record(request_id).await.unwrap();
    record.expect("the outbox record").status
}

/// A dev-issuer token for the `/dev/token` body `body` from the stack at `base` (an in-process
/// one, or `alarm-skill serve` run as a process).
pub async fn dev_token(http: &reqwest::Client, base: &str, body: Value) -> String {
    let sent = http.post(format!("{base}/dev/token")).json(&body).send();
    let minted = sent.await.expect("dev token").json::<Value>().await;
    let minted = minted.expect("dev token json");
    minted["access_token"]
        .as_str()
        .expect("access_token")
        .into()
}

pub fn count(signals: &[String], prefix: &str) -> usize {
    signals.iter().filter(|s| s.starts_with(prefix)).count()
}

/// Puts a panel just armed away in `state` (`exit_delay`, `armed_away`, `entry_delay` or
/// `alarm`): the exit delay run out, the front door opened, the entry delay run out, as needed.
pub async fn after_arming_away(h: &Harness, state: &str) {
    let steps = match state {
        "exit_delay" => 0,
        "armed_away" => 1,
        "entry_delay" => 2,
        "alarm" => 3,
        other => panic!("unknown state {other}"),
    };
    if steps >= 1 {
        h.advance(60).await;
    }
    if steps >= 2 {
        h.post("/sim/panels/home/zones/front-door/open", json!({}))
            .await;
    }
    if steps >= 3 {
        h.advance(31).await;
    }
}

/// The panel cloud's fault cleared, and the re-delivery worker run twice.
pub async fn recover_and_redeliver_twice(h: &Harness) {
    h.fault("none", 0).await;
    h.stack.redeliver().await.unwrap();
    h.stack.redeliver().await.unwrap();
}

/// The two stacks' first replies (normal code, duress code) are the same `error`, to the byte.
pub fn assert_same_error_reply(replies: &[Value], error: &str) {
    assert_eq!(error_type(&replies[0]), Some(error), "{}", replies[0]);
    assert_eq!(normalize(&replies[0]), normalize(&replies[1]));
}

/// Nothing is left in the stack's outbox, in any lane.
pub async fn assert_nothing_pending(h: &Harness) {
    let pending = alarm_skill::domain::ports::store::outbox_totals(h.stack.store.as_ref())
        .await
        .unwrap();
    assert_eq!(
        pending,
        alarm_skill::domain::ports::store::OutboxCounts::default()
    );
}

/// The monitoring center of the normal stack `n` got no 121; that of the duress stack `d`
/// exactly one, for Alex (user 1).
pub async fn assert_one_duress_signal(n: &Harness, d: &Harness) {
    assert_eq!(count(&n.signals().await, "121/"), 0);
    let sig = d.signals().await;
    assert_eq!(count(&sig, "121/"), 1, "{sig:?}");
    assert!(sig.contains(&"121/1/1".to_string()), "{sig:?}");
}

/// After three wrong codes then the code during the lockout, on the normal stack `n` and the
/// duress stack `d`: the same three failures, audit and notifications, both panels still armed
/// away, and only `d`'s monitoring center got more than the lockout's 401: the duress, for Alex.
pub async fn assert_locked_out_alike_but_for_the_duress(n: &Harness, d: &Harness) {
    assert_eq!(lockout(n).await["consecutive_failures"], 3);
    assert_eq!(n.audit_log().await, d.audit_log().await);
    assert_eq!(notifications(n).await, notifications(d).await);
    assert_eq!(n.panel("home").await["arm_state"], "armed_away");
    assert_eq!(d.panel("home").await["arm_state"], "armed_away");
    assert_eq!(count(&n.signals().await, "121/"), 0);
    assert_eq!(d.signals().await, ["401/3/0", "121/1/1"]);
}

/// The messages of the voice-PIN lockout notices the household got, oldest first.
pub async fn lockout_notices(h: &Harness) -> Vec<String> {
    h.get("/sim/notifications")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "voice_pin_lockout")
        .map(|n| n["message"].as_str().unwrap().to_string())
        .collect()
}

/// The panel cloud's calls for `panel` other than reads: what could carry an attempt.
pub async fn sent_for(h: &Harness, panel: &str) -> Vec<String> {
    h.requests_for(panel)
        .await
        .into_iter()
        .filter(|op| op != "get" && op != "list")
        .collect()
}

/// The lockout state of the demo household, with `locked_until` as seconds from the stack's own
/// (frozen) now, so two stacks started moments apart compare equal.
pub async fn lockout(h: &Harness) -> Value {
    let admin = h.admin_token("demo").await;
    let (status, mut body) = h.lockout_as(&admin).await;
    assert_eq!(status, 200);
    if let Some(until) = body["locked_until"].as_str() {
        let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
        let now = alarm_skill::common::clock::Clock::now(h.stack.clock.as_ref());
        body["locked_until"] = json!((until.with_timezone(&chrono::Utc) - now).num_seconds());
    }
    body
}

/// The household notifications the panel cloud sent, normalised.
pub async fn notifications(h: &Harness) -> Value {
    normalize(&h.get("/sim/notifications").await)
}

pub fn error_type(reply: &Value) -> Option<&str> {
    reply["event"]["payload"]["type"].as_str()
}

/// The reply's `event.header.namespace`.
pub fn namespace(reply: &Value) -> &Value {
    &reply["event"]["header"]["namespace"]
}

pub fn property<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["context"]["properties"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .map(|p| &p["value"])
        .unwrap_or(&Value::Null)
}

/// DynamoDB Local's endpoint, which scripts/test starts and exports.
pub fn dynamodb_endpoint() -> String {
    std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local")
}

/// A client of DynamoDB Local and a fresh table named `{prefix}-{uuid}` in it.
pub async fn dynamodb_table(prefix: &str) -> (aws_sdk_dynamodb::Client, String) {
    use alarm_skill::adapters::store::dynamodb::{create_table, local_client};
    let client = local_client(&dynamodb_endpoint());
    let table = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    create_table(&client, &table).await.expect("table");
    (client, table)
}

/// Polls `read` every 50 ms until it has stopped growing for 300 ms (up to 5 s in all), then
/// returns its last value: a delivery and its reply take milliseconds each, but a loaded CI
/// machine can stall one for far longer than a single poll interval.
pub async fn settled<T>(read: impl Fn() -> Vec<T>) -> Vec<T> {
    let (mut last, mut quiet) = (usize::MAX, 0);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = read().len();
        quiet = if n == last { quiet + 1 } else { 0 };
        if quiet == 6 {
            break;
        }
        last = n;
    }
    read()
}

/// Hex of the 16 ASCII characters "0123456789ABCDEF": pysiaalarm (Home Assistant's SIA
/// integration) takes a key as characters, so CI can decode frames under it too.
pub const DC09_KEY: &str = "30313233343536373839414243444546";

/// A stack whose reference cloud reports the demo panel's monitoring link (line 2, the center's
/// key by name) and whose skill sends there what the cloud can't take, with `budget_ms` for a
/// directive. The link is stored by the discovery that returns the token.
pub async fn second_path_stack(budget_ms: u64) -> (Harness, String) {
    let h = Harness::start_with(Options {
        second_path: true,
        dc09_key: Some(alarm_skill::common::secret::Secret::new(DC09_KEY)),
        directive_budget: Some(Duration::from_millis(budget_ms)),
        ..test_options()
    })
    .await;
    let t = h.token("demo").await;
    h.invoke(&discover(&t)).await;
    (h, t)
}

/// The frames the skill's second path sent, as `record_dc09_frames` takes them.
pub fn second_path_frames(h: &Harness) -> Vec<Value> {
    h.stack
        .second_path
        .sent()
        .iter()
        .map(|f| serde_json::to_value(f).expect("frame as JSON"))
        .collect()
}
