//! The panel-cloud conformance kit: `alarm-skill conformance --panel-url URL --api-key-file F`
//! runs docs/panel-api.md's vendor checklist against any panel cloud over HTTP and prints a
//! pass/fail table. Local builds only (the `alarm-skill` CLI).
//!
//! It drives a test account's panel through the contract routes and watches the effects from
//! outside through the contract's test mode (docs/panel-api.md, "Test mode"): the account's
//! monitoring feed (which Contact ID events went out), its household notifications, and a
//! webhook registration that makes the kit a second webhook receiver. Nothing here trusts the
//! cloud's own account of what it did beyond those feeds.
//!
//! Prerequisites on the cloud (a test environment, never production): the test account with a
//! disarmed, online panel whose zones are closed and which has no alarm or trouble, a panel user
//! (`--member`) of that account, and a second account with its own panel (`--foreign-*`).

pub mod receiver;
pub mod schema;
pub mod stats;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde::Serialize;
use serde_json::{Value, json};

use crate::common::secret::Secret;
use crate::edges::webhook::signature;
use receiver::Receiver;

#[derive(Debug, Clone)]
pub struct KitOptions {
    /// Base URL of the panel cloud API (what the skill's `PANEL_API_URL` would be).
    pub panel_url: String,
    pub api_key: Secret,
    /// The test account and its panel.
    pub account: String,
    pub panel: String,
    /// A panel user number of the test account, used for voice disarms.
    pub member: u16,
    /// Another account and its panel: the test account must not see or touch it.
    pub foreign_account: String,
    pub foreign_panel: String,
    /// Where the kit's webhook receiver listens.
    pub webhook_listen: SocketAddr,
    /// The URL the cloud should call, if not `http://{webhook_listen}/webhook` (e.g. a tunnel).
    pub webhook_url: Option<String>,
    /// Every contract call must answer within this (docs/panel-api.md: 1-2 s).
    pub latency_budget: Duration,
    /// Normal/duress disarm pairs timed for the equal-work check (hundreds: see
    /// [`TIMING_ALPHA`]).
    pub timing_samples: usize,
    /// How long to wait for asynchronous effects (monitoring feed, webhooks) after a call.
    pub settle: Duration,
}

impl KitOptions {
    /// Defaults for the reference panel cloud's two-household example
    /// (docs/examples/two-households.json).
    pub fn new(panel_url: &str, api_key: Secret) -> Self {
        KitOptions {
            panel_url: panel_url.to_string(),
            api_key,
            account: "demo".into(),
            panel: "home".into(),
            member: 1,
            foreign_account: "neighbor".into(),
            foreign_panel: "cabin".into(),
            webhook_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_url: None,
            latency_budget: Duration::from_millis(2_000),
            timing_samples: 300,
            settle: Duration::from_millis(300),
        }
    }
}

/// Equal work, timed: normal and duress disarms, one of each per pair in random order, so that
/// whatever the machine does at a moment (other processes, frequency changes, a growing log)
/// falls on both kinds alike and the rank test's p-value holds however loaded it is. The check
/// fails when the Mann–Whitney U test finds the kinds' times differ (two-sided p below
/// [`TIMING_ALPHA`]) *and* the Hodges–Lehmann shift is at least [`TIMING_RELATIVE`] of the
/// normal median: significant and large enough to matter, in relative terms, so one threshold
/// serves a 1 ms cloud on a laptop and a 100 ms one across the internet. With 300 pairs a 10 %
/// difference in a disarm's time is found (p far below the threshold) on an idle or a busy
/// machine alike; a reference cloud doing equal work fails it about once in 1/ALPHA runs.
pub const TIMING_ALPHA: f64 = 0.001;
/// How long the kit waits for an expected 121 to reach the center before it counts none.
pub const ALARM_WAIT: Duration = Duration::from_secs(10);
pub const TIMING_RELATIVE: f64 = 0.05;
/// How long before the kit's clock the `duress_occurred_at` check says its code was spoken: far
/// more than a request takes, so a 121 stamped on arrival can't pass for the spoken time.
pub const OCCURRED_BEFORE: chrono::Duration = chrono::Duration::seconds(90);
/// Fewer pairs than this cannot show a difference at [`TIMING_ALPHA`]: the detail says so.
pub const TIMING_MIN_PAIRS: usize = 20;

/// The checks, in the order the table prints them.
pub const CHECKS: [&str; 13] = [
    "users_route",
    "error_statuses",
    "account_scoping",
    "idempotency",
    "duress_once",
    "duress_not_cancelled",
    "duress_occurred_at",
    "monitoring_details",
    "duress_equal_work",
    "schema",
    "latency",
    "webhook_signatures",
    "webhook_event_ids",
];

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: &'static str,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KitReport {
    pub checks: Vec<CheckResult>,
}

impl KitReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == name)
    }

    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.check)
            .collect()
    }

    pub fn table(&self) -> String {
        let mut out = format!("{:<22} {:<6} detail\n", "check", "result");
        for c in &self.checks {
            let result = if c.passed { "PASS" } else { "FAIL" };
            out.push_str(&format!("{:<22} {:<6} {}\n", c.check, result, c.detail));
        }
        let passed = self.checks.iter().filter(|c| c.passed).count();
        out.push_str(&format!(
            "conformance: {passed} of {} checks passed\n",
            self.checks.len()
        ));
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("setup: {0}")]
    Setup(String),
}

type Outcome = Result<String, String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn need<T>(o: Option<T>, what: &str) -> Result<T, String> {
    o.ok_or_else(|| what.to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Right,
    Wrong,
    Missing,
}

struct Call {
    op: String,
    elapsed: Duration,
    test_mode: bool,
}

struct Reply {
    status: u16,
    body: Value,
    elapsed: Duration,
}

struct Kit {
    opts: KitOptions,
    http: reqwest::Client,
    base: Url,
    calls: Mutex<Vec<Call>>,
    /// Response bodies with the OpenAPI schema they must match (the `schema` check).
    shapes: Mutex<Vec<(String, &'static str, Value)>>,
    receiver: Receiver,
    webhook_secret: Secret,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The contract's `kind` of a disarm or signal (docs/panel-api.md): both values have one length.
fn kind(duress: bool) -> &'static str {
    if duress { "duress" } else { "normal" }
}

/// `occurred_at` as the skill sends it (docs/panel-api.md, the `disarm` route).
fn occurred_at(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Removes what differs between any two calls: ids and timestamps.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match k.as_str() {
                    "as_of" | "at" | "event_id" | "occurred_at" => (k.clone(), json!("-")),
                    _ => (k.clone(), normalize(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// The equal-work timing verdict on disarm times in ms (see [`TIMING_ALPHA`]): Ok with the
/// figures, or Err saying which kind is slower.
pub fn timing_verdict(normal: &[f64], duress: &[f64]) -> Result<String, String> {
    let pairs = normal.len().min(duress.len());
    if pairs < TIMING_MIN_PAIRS {
        // Below this even a total separation of the kinds cannot reach TIMING_ALPHA.
        return Ok(format!(
            "timing not judged: {pairs} pairs, the rank test needs at least {TIMING_MIN_PAIRS}"
        ));
    }
    let test = stats::mann_whitney(normal, duress)
        .ok_or_else(|| "every disarm took the same time: nothing to rank".to_string())?;
    let (mn, md) = (
        stats::median(&mut normal.to_vec()),
        stats::median(&mut duress.to_vec()),
    );
    let shift = stats::hodges_lehmann(normal, duress);
    let relative = if mn > 0.0 { shift / mn } else { 0.0 };
    let figures = format!(
        "median disarm {mn:.2} ms normal, {md:.2} ms duress ({} each, random order); \
         shift {:+.1} %, Mann–Whitney p = {:.2e}",
        normal.len(),
        relative * 100.0,
        test.p
    );
    if test.p < TIMING_ALPHA && relative.abs() >= TIMING_RELATIVE {
        let which = if relative > 0.0 { "slower" } else { "faster" };
        return Err(format!(
            "duress disarms are {which}: {figures}; the limit is {:.0} % at p < {TIMING_ALPHA}",
            TIMING_RELATIVE * 100.0
        ));
    }
    Ok(figures)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Kit {
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            segs.extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        key: Key,
    ) -> Result<Reply, String> {
        let url = self.url(segments);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .timeout(Duration::from_secs(10));
        match key {
            Key::Right => req = req.bearer_auth(self.opts.api_key.expose()),
            Key::Wrong => req = req.bearer_auth("conformance-kit-wrong-key"),
            Key::Missing => {}
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let started = Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {}: {e}", url.path()))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        if key == Key::Right {
            lock(&self.calls).push(Call {
                op: format!("{method} {}", url.path()),
                elapsed,
                test_mode: segments.get(1) == Some(&"test"),
            });
        }
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            elapsed,
        })
    }

    /// Remembers a reply's body for the `schema` check.
    fn shape(&self, what: &str, schema: &'static str, r: &Reply) {
        lock(&self.shapes).push((what.to_string(), schema, r.body.clone()));
    }

    async fn get(&self, segments: &[&str]) -> Result<Reply, String> {
        self.send(Method::GET, segments, None, Key::Right).await
    }

    async fn post(&self, segments: &[&str], body: Value) -> Result<Reply, String> {
        self.send(Method::POST, segments, Some(&body), Key::Right)
            .await
    }

    /// Posts `body`, which the contract says is invalid: the answer must be 400 or 422.
    async fn expect_rejected(
        &self,
        segments: &[&str],
        body: Value,
        what: &str,
    ) -> Result<(), String> {
        let r = self.post(segments, body).await?;
        ensure!(
            r.status == 400 || r.status == 422,
            "{what} got {} instead of 400 or 422",
            r.status
        );
        Ok(())
    }

    async fn panel_of(&self, account: &str, panel: &str) -> Result<Reply, String> {
        self.get(&["v1", "accounts", account, "panels", panel])
            .await
    }

    async fn arm(&self, account: &str, panel: &str, id: &str) -> Result<Reply, String> {
        let body = json!({"mode": "away", "bypass_open_zones": false, "source": "voice", "request_id": id});
        self.post(&["v1", "accounts", account, "panels", panel, "arm"], body)
            .await
    }

    async fn disarm(
        &self,
        account: &str,
        panel: &str,
        id: &str,
        member: Option<u16>,
        duress: bool,
    ) -> Result<Reply, String> {
        let body = json!({"member": member, "source": "voice", "kind": kind(duress), "request_id": id,
                          "occurred_at": occurred_at(chrono::Utc::now())});
        self.post(
            &["v1", "accounts", account, "panels", panel, "disarm"],
            body,
        )
        .await
    }

    async fn signal(
        &self,
        account: &str,
        panel: &str,
        id: &str,
        duress: bool,
    ) -> Result<Reply, String> {
        self.signal_at(account, panel, id, duress, chrono::Utc::now())
            .await
    }

    /// A signal for a code spoken at `spoken`.
    async fn signal_at(
        &self,
        account: &str,
        panel: &str,
        id: &str,
        duress: bool,
        spoken: chrono::DateTime<chrono::Utc>,
    ) -> Result<Reply, String> {
        let body = json!({"member": self.opts.member, "source": "voice", "kind": kind(duress),
                          "request_id": id, "occurred_at": occurred_at(spoken)});
        self.post(
            &["v1", "accounts", account, "panels", panel, "signals"],
            body,
        )
        .await
    }

    async fn feed(&self, account: &str, what: &str) -> Result<Vec<Value>, String> {
        let r = self.get(&["v1", "test", "accounts", account, what]).await?;
        ensure!(
            r.status == 200,
            "test mode GET {what} for {account} answered {} (docs/panel-api.md, Test mode)",
            r.status
        );
        let key = if what == "monitoring" {
            "events"
        } else {
            "notifications"
        };
        need(
            r.body[key].as_array().cloned(),
            &format!("{what}: no {key} array"),
        )
    }

    async fn monitoring(&self, account: &str) -> Result<Vec<Value>, String> {
        self.feed(account, "monitoring").await
    }

    async fn settle(&self) {
        tokio::time::sleep(self.opts.settle).await;
    }

    /// The monitoring feed once at least `want` 121s stand in it after `from`, or as it is after
    /// [`ALARM_WAIT`]: a cloud may hand its 121 to the center after it answered the disarm (the
    /// reference cloud's DC-09 link does), so a busy machine must not read "none" too early.
    /// Then one more settle, for a duplicate that would come after the first.
    async fn monitoring_with_121s(
        &self,
        account: &str,
        from: usize,
        want: usize,
    ) -> Result<Vec<Value>, String> {
        let until = tokio::time::Instant::now() + ALARM_WAIT;
        loop {
            let events = self.monitoring(account).await?;
            if count_121s(&events, from) >= want || tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.settle().await;
        self.monitoring(account).await
    }

    fn ours(&self) -> (&str, &str) {
        (&self.opts.account, &self.opts.panel)
    }

    /// Brings the test panel back to disarmed (a disarm without a code).
    async fn ensure_disarmed(&self) -> Result<(), String> {
        let (a, p) = self.ours();
        let r = self.panel_of(a, p).await?;
        ensure!(r.status == 200, "the test panel answered {}", r.status);
        if r.body["arm_state"] != "disarmed" {
            let d = self.disarm(a, p, &new_id(), None, false).await?;
            ensure!(
                d.status == 200,
                "disarming the test panel answered {}",
                d.status
            );
            self.settle().await;
        }
        Ok(())
    }

    async fn armed(&self) -> Result<Reply, String> {
        let (a, p) = self.ours();
        let r = self.arm(a, p, &new_id()).await?;
        ensure!(
            r.status == 200,
            "arming the test panel answered {} {} (are its zones closed, no alarm or trouble?)",
            r.status,
            r.body
        );
        Ok(r)
    }

    // ---- the checks --------------------------------------------------------------------------

    async fn users_route(&self) -> Outcome {
        let r = self
            .get(&["v1", "accounts", &self.opts.account, "users"])
            .await?;
        ensure!(r.status == 200, "GET users answered {}", r.status);
        self.shape("GET users", "UserList", &r);
        let users = need(r.body["users"].as_array(), "no users array")?;
        // Without them the skill can't tell a reused slot from a rename, nor order lists.
        ensure!(
            r.body["revision"].as_u64().is_some(),
            "the list has no revision (the cloud's sequence number of the user list)"
        );
        let mut seen = HashSet::new();
        let mut ids = HashSet::new();
        for u in users {
            let n = need(u["number"].as_u64(), "a user without a number")?;
            ensure!((1..=999).contains(&n), "user number {n} is outside 1-999");
            ensure!(seen.insert(n), "user number {n} is listed twice");
            ensure!(
                u["name"].as_str().is_some_and(|s| !s.trim().is_empty()),
                "user {n} has no name"
            );
            let id = u["id"].as_str().unwrap_or("");
            ensure!(
                (1..=64).contains(&id.len()),
                "user {n} has no stable id (1-64 characters)"
            );
            ensure!(
                ids.insert(id.to_string()),
                "user id of user {n} is listed twice"
            );
        }
        ensure!(
            seen.contains(&u64::from(self.opts.member)),
            "the member user number {} is not a user of the account",
            self.opts.member
        );
        Ok(format!("{} users, numbers and ids unique", users.len()))
    }

    async fn error_statuses(&self) -> Outcome {
        let (a, p) = self.ours();
        let path = ["v1", "accounts", a, "panels", p];
        for key in [Key::Wrong, Key::Missing] {
            let r = self.send(Method::GET, &path, None, key).await?;
            ensure!(
                r.status == 401,
                "a {} API key got {} instead of 401",
                if key == Key::Wrong {
                    "wrong"
                } else {
                    "missing"
                },
                r.status
            );
        }
        let unknown = format!("conformance-none-{}", &new_id()[..8]);
        let r = self.panel_of(a, &unknown).await?;
        ensure!(
            r.status == 404 && r.body["error"] == "panel_not_found",
            "an unknown panel got {} {} instead of 404 {{\"error\":\"panel_not_found\"}}",
            r.status,
            r.body
        );
        self.shape("404 unknown panel", "Error", &r);
        let bad = json!({"mode": "sideways", "bypass_open_zones": false, "source": "voice", "request_id": new_id()});
        self.expect_rejected(
            &["v1", "accounts", a, "panels", p, "arm"],
            bad,
            "an arm with an unknown mode",
        )
        .await?;
        // The boolean `duress` of earlier contract versions in place of `kind`: a cloud that
        // takes it (or a missing kind) for a normal attempt would drop a duress silently.
        let old = json!({"member": self.opts.member, "source": "voice", "duress": true, "request_id": new_id()});
        self.expect_rejected(
            &["v1", "accounts", a, "panels", p, "signals"],
            old,
            "a signal with the old `duress` flag and no `kind`",
        )
        .await?;
        let r = self.signal(a, p, &new_id(), false).await?;
        ensure!(
            r.status == 200 && r.body == json!({"acknowledged": true}),
            "a signal got {} {} instead of 200 {{\"acknowledged\":true}}",
            r.status,
            r.body
        );
        self.shape("signals", "Ack", &r);
        Ok("401 wrong/missing key, 404 panel_not_found, 4xx bad body, 4xx without kind, signal ack".into())
    }

    async fn account_scoping(&self) -> Outcome {
        let o = &self.opts;
        let (fa, fp) = (o.foreign_account.as_str(), o.foreign_panel.as_str());
        ensure!(
            fa != o.account,
            "--foreign-account must differ from --account"
        );
        let before = self.panel_of(fa, fp).await?;
        ensure!(
            before.status == 200,
            "the foreign panel {fp} answered {} from its own account {fa}",
            before.status
        );
        let foreign_events = self.monitoring(fa).await?.len();
        let own_events = self.monitoring(&o.account).await?.len();
        let list = self.get(&["v1", "accounts", &o.account, "panels"]).await?;
        ensure!(list.status == 200, "GET panels answered {}", list.status);
        self.shape("GET panels", "PanelList", &list);
        let listed = list.body["panels"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["id"] == fp));
        ensure!(
            !listed,
            "the account's panel list shows the foreign panel {fp}"
        );
        let a = o.account.as_str();
        let tries = [
            ("GET", self.panel_of(a, fp).await?),
            ("arm", self.arm(a, fp, &new_id()).await?),
            (
                "disarm",
                self.disarm(a, fp, &new_id(), Some(o.member), true).await?,
            ),
            ("signals", self.signal(a, fp, &new_id(), true).await?),
        ];
        for (op, r) in &tries {
            ensure!(
                r.status == 404 && r.body["error"] == "panel_not_found",
                "{op} on the foreign panel got {} {} instead of 404 panel_not_found",
                r.status,
                r.body
            );
        }
        self.settle().await;
        let after = self.panel_of(fa, fp).await?;
        for field in ["arm_state", "phase"] {
            ensure!(
                after.body[field] == before.body[field],
                "the foreign panel's {field} changed: {} -> {}",
                before.body[field],
                after.body[field]
            );
        }
        ensure!(
            self.monitoring(fa).await?.len() == foreign_events,
            "the foreign account's monitoring feed got events"
        );
        ensure!(
            self.monitoring(a).await?.len() == own_events,
            "calls on a foreign panel produced monitoring events"
        );
        Ok("foreign panel: 404 on GET, arm, disarm, signals; untouched".into())
    }

    async fn idempotency(&self) -> Outcome {
        let (a, p) = self.ours();
        self.ensure_disarmed().await?;
        let arm_id = new_id();
        let first = self.arm(a, p, &arm_id).await?;
        ensure!(
            first.status == 200,
            "arm answered {} {}",
            first.status,
            first.body
        );
        self.shape("arm", "ArmOutcome", &first);
        let again = self.arm(a, p, &arm_id).await?;
        ensure!(
            again.status == 200 && again.body == first.body,
            "a repeated arm request id did not return the first result"
        );
        let disarm_id = new_id();
        let d = self
            .disarm(a, p, &disarm_id, Some(self.opts.member), false)
            .await?;
        ensure!(d.status == 200, "disarm answered {} {}", d.status, d.body);
        self.shape("disarm", "Panel", &d);
        ensure!(
            d.body["arm_state"] == "disarmed",
            "the disarm left {}",
            d.body["arm_state"]
        );
        let d2 = self
            .disarm(a, p, &disarm_id, Some(self.opts.member), false)
            .await?;
        ensure!(
            d2.status == 200 && d2.body == d.body,
            "a repeated disarm request id did not return the first result"
        );
        let replay = self.arm(a, p, &arm_id).await?;
        ensure!(
            replay.status == 200,
            "a replayed arm answered {}",
            replay.status
        );
        let now = self.panel_of(a, p).await?;
        self.shape("GET panel", "Panel", &now);
        ensure!(
            now.body["arm_state"] == "disarmed",
            "replaying an old arm request id armed the panel again ({})",
            now.body["arm_state"]
        );
        Ok("repeated arm and disarm ids return the first result, act once".into())
    }

    /// `duress_once` and `duress_not_cancelled`.
    async fn duress(&self) -> (Outcome, Outcome) {
        match self.duress_inner().await {
            Ok((once, cancelled)) => (once, cancelled),
            Err(e) => (Err(e.clone()), Err(e)),
        }
    }

    async fn duress_inner(&self) -> Result<(Outcome, Outcome), String> {
        let (a, p) = self.ours();
        let member = self.opts.member;
        self.ensure_disarmed().await?;
        self.armed().await?;
        self.settle().await;
        let start = self.monitoring(a).await?.len();
        let x = new_id();
        let d = self.disarm(a, p, &x, Some(member), true).await?;
        if d.status != 200 {
            return Err(format!("a duress disarm answered {} {}", d.status, d.body));
        }
        let count = count_121s;
        let events = self.monitoring_with_121s(a, start, 1).await?;
        let once = (|| {
            let new = &events[start.min(events.len())..];
            ensure!(
                count(&events, start) == 1,
                "a duress disarm raised {} 121s",
                count(&events, start)
            );
            ensure!(
                new[0]["code"] == "121",
                "the 121 was not the disarm's first event: {}",
                new[0]["code"]
            );
            ensure!(
                new[0]["user"] == json!(member),
                "the 121 carries user {} instead of {member}",
                new[0]["user"]
            );
            Ok(())
        })();
        let mut once = once.map(|()| String::new());
        let mark = events.len();
        let _ = self.disarm(a, p, &x, Some(member), true).await?;
        let ack = self.signal(a, p, &x, true).await?;
        self.settle().await;
        let events = self.monitoring(a).await?;
        if once.is_ok() && (ack.status != 200 || count(&events, mark) != 0) {
            once = Err(format!(
                "repeating the duress request id raised {} more 121s (signal answered {})",
                count(&events, mark),
                ack.status
            ));
        }
        let y = new_id();
        let mark = events.len();
        let _ = self.signal(a, p, &y, true).await?;
        self.settle().await;
        let _ = self.signal(a, p, &y, true).await?;
        let events = self.monitoring_with_121s(a, mark, 1).await?;
        if once.is_ok() && count(&events, mark) != 1 {
            once = Err(format!(
                "a duress signal sent twice with one request id raised {} 121s",
                count(&events, mark)
            ));
        }
        let once = once.map(|_| "one 121 per request id, first, with the user number".to_string());
        let cancels = events[start.min(events.len())..]
            .iter()
            .filter(|e| e["code"] == "406")
            .count();
        let cancelled = if cancels == 0 {
            Ok("no 406 after a duress disarm".to_string())
        } else {
            Err(format!("{cancels} cancel (406) sent after a duress disarm"))
        };
        Ok((once, cancelled))
    }

    /// A duress signal for a code spoken [`OCCURRED_BEFORE`] ago, as the skill's worker sends one
    /// after an outage: its 121 must carry that time, to the second, as its time of occurrence
    /// (the test-mode feed's `at`), not the time the signal came.
    async fn duress_occurred_at(&self) -> Outcome {
        let (a, p) = self.ours();
        let start = self.monitoring(a).await?.len();
        let spoken = chrono::Utc::now() - OCCURRED_BEFORE;
        let spoken =
            spoken - chrono::Duration::nanoseconds(i64::from(spoken.timestamp_subsec_nanos()));
        let r = self.signal_at(a, p, &new_id(), true, spoken).await?;
        ensure!(
            r.status == 200,
            "a duress signal with occurred_at answered {} {}",
            r.status,
            r.body
        );
        let events = self.monitoring_with_121s(a, start, 1).await?;
        let alarm = need(
            events[start.min(events.len())..]
                .iter()
                .find(|e| e["code"] == "121"),
            "the duress signal raised no 121",
        )?;
        let at = need(alarm["at"].as_str(), "the 121 has no `at`")?;
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|_| format!("the 121's `at` is not RFC 3339: {at}"))?
            .with_timezone(&chrono::Utc);
        ensure!(
            at.timestamp() == spoken.timestamp(),
            "the 121 occurred at {at}, not at the request's occurred_at {}",
            occurred_at(spoken)
        );
        Ok(format!(
            "the 121 carries the request's occurred_at ({}s before the signal)",
            OCCURRED_BEFORE.num_seconds()
        ))
    }

    /// Every panel the cloud lists for the test account, and the test panel itself: their
    /// `monitoring`, where present, in the contract's formats (docs/panel-api.md, "Monitoring
    /// details"). A panel without it passes: it keeps the one path.
    async fn monitoring_details(&self) -> Outcome {
        let (a, p) = self.ours();
        let list = self.get(&["v1", "accounts", a, "panels"]).await?;
        ensure!(list.status == 200, "GET panels answered {}", list.status);
        let one = self.panel_of(a, p).await?;
        ensure!(
            one.status == 200,
            "GET the test panel answered {}",
            one.status
        );
        let mut panels = need(list.body["panels"].as_array().cloned(), "no panels array")?;
        panels.push(one.body);
        let doc = schema::panel_api();
        let mut with = 0;
        for panel in &panels {
            let Some(details) = panel.get("monitoring") else {
                continue;
            };
            let id = panel["id"].as_str().unwrap_or("?");
            let link_schema = &doc["components"]["schemas"]["MonitoringLink"];
            schema::validate(&doc, link_schema, details, "monitoring")
                .map_err(|e| format!("panel {id}: {e}"))?;
            let link: crate::domain::ports::monitoring::MonitoringLink =
                serde_json::from_value(details.clone())
                    .map_err(|e| format!("panel {id}: monitoring: {e}"))?;
            if let Some(field) = link.off_format() {
                return Err(format!("panel {id}: monitoring.{field} is off its format"));
            }
            with += 1;
        }
        Ok(format!(
            "{with} of {} panel replies carry monitoring details, all in the contract's formats",
            panels.len()
        ))
    }

    async fn equal_work(&self) -> Outcome {
        let (a, p) = self.ours();
        let member = Some(self.opts.member);
        // What Alexa, the household's app and the webhook see, for one disarm of each kind.
        let mut seen: Vec<(Value, Vec<Value>, Vec<Value>)> = Vec::new();
        for duress in [false, true] {
            self.ensure_disarmed().await?;
            self.armed().await?;
            self.settle().await;
            let notes = self.feed(a, "notifications").await?.len();
            let hooks = self.receiver.received().len();
            let d = self.disarm(a, p, &new_id(), member, duress).await?;
            ensure!(d.status == 200, "disarm answered {} {}", d.status, d.body);
            self.settle().await;
            let n: Vec<Value> = self.feed(a, "notifications").await?[notes..]
                .iter()
                .map(normalize)
                .collect();
            let w: Vec<Value> = self.receiver.received()[hooks..]
                .iter()
                .map(|r| normalize(&serde_json::from_slice(&r.body).unwrap_or(Value::Null)))
                .collect();
            seen.push((normalize(&d.body), n, w));
        }
        ensure!(
            seen[0].0 == seen[1].0,
            "the duress disarm's reply differs: {} vs {}",
            seen[0].0,
            seen[1].0
        );
        ensure!(
            seen[0].1 == seen[1].1,
            "the household's notifications differ: {:?} vs {:?}",
            seen[0].1,
            seen[1].1
        );
        ensure!(seen[0].2 == seen[1].2, "the webhook events differ");
        let (mut normal, mut duress) = (Vec::new(), Vec::new());
        for _ in 0..self.opts.timing_samples {
            let first = rand::random::<bool>();
            for kind in [first, !first] {
                self.armed().await?;
                let d = self.disarm(a, p, &new_id(), member, kind).await?;
                ensure!(d.status == 200, "disarm answered {}", d.status);
                let t = d.elapsed.as_secs_f64() * 1000.0;
                if kind { duress.push(t) } else { normal.push(t) }
            }
        }
        timing_verdict(&normal, &duress)
            .map(|figures| format!("same reply, notifications, webhooks; {figures}"))
    }

    fn latency(&self) -> Outcome {
        let calls = lock(&self.calls);
        let mut times: Vec<(Duration, &str)> = calls
            .iter()
            .filter(|c| !c.test_mode)
            .map(|c| (c.elapsed, c.op.as_str()))
            .collect();
        ensure!(!times.is_empty(), "no contract call was made");
        times.sort_by_key(|t| t.0);
        let (max, op) = times[times.len() - 1];
        let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)].0;
        let figures = format!(
            "{} calls, p95 {:.1} ms, max {:.1} ms",
            times.len(),
            ms(p95),
            ms(max)
        );
        ensure!(
            max <= self.opts.latency_budget,
            "{op} took {:.0} ms, over the {} ms budget ({figures})",
            ms(max),
            self.opts.latency_budget.as_millis()
        );
        Ok(figures)
    }

    fn schema(&self) -> Outcome {
        let doc = schema::panel_api();
        let shapes = lock(&self.shapes);
        ensure!(!shapes.is_empty(), "no reply was collected");
        for (what, name, body) in shapes.iter() {
            if let Err(e) = schema::validate_named(&doc, name, body) {
                return Err(format!("{what}: {e}"));
            }
        }
        Ok(format!(
            "{} replies match docs/openapi/panel-api.json",
            shapes.len()
        ))
    }

    fn webhook_checks(&self, registered: &Result<(), String>) -> (Outcome, Outcome) {
        if let Err(e) = registered {
            return (Err(e.clone()), Err(e.clone()));
        }
        let received = self.receiver.received();
        if received.is_empty() {
            let e = "no webhook event arrived at the kit's receiver".to_string();
            return (Err(e.clone()), Err(e));
        }
        let signatures = (|| {
            for r in &received {
                signature::verify(
                    &self.webhook_secret,
                    r.timestamp.as_deref(),
                    r.signature.as_deref(),
                    &r.body,
                    r.received_at,
                )
                .map_err(|e| format!("an event failed verification: {e}"))?;
            }
            Ok(format!("{} events signed and fresh", received.len()))
        })();
        let ids = (|| {
            let mut seen = HashSet::new();
            for r in &received {
                let v: Value = serde_json::from_slice(&r.body)
                    .map_err(|_| "an event body is not JSON".to_string())?;
                let id = need(v["event_id"].as_str(), "an event without event_id")?;
                ensure!(seen.insert(id.to_string()), "event id {id} was sent twice");
            }
            Ok(format!("{} events, ids unique", received.len()))
        })();
        (signatures, ids)
    }
}

async fn register(kit: &Kit, url: &str) -> Result<(), String> {
    let body = json!({"url": url, "secret": kit.webhook_secret.expose()});
    let r = kit
        .send(
            Method::PUT,
            &["v1", "test", "accounts", &kit.opts.account, "webhook"],
            Some(&body),
            Key::Right,
        )
        .await?;
    ensure!(
        r.status == 204 || r.status == 200,
        "registering the kit as webhook receiver answered {} (docs/panel-api.md, Test mode)",
        r.status
    );
    Ok(())
}

/// Runs every check once, against the cloud at `opts.panel_url`.
pub async fn run(opts: KitOptions) -> Result<KitReport, KitError> {
    let base =
        Url::parse(&opts.panel_url).map_err(|e| KitError::Setup(format!("--panel-url: {e}")))?;
    let receiver = Receiver::start(opts.webhook_listen)
        .await
        .map_err(|e| KitError::Setup(format!("webhook receiver: {e}")))?;
    let url = opts
        .webhook_url
        .clone()
        .unwrap_or_else(|| format!("http://{}/webhook", receiver.addr()));
    let mut secret = [0u8; 24];
    rand::fill(&mut secret);
    let kit = Kit {
        http: reqwest::Client::new(),
        base,
        calls: Mutex::new(Vec::new()),
        shapes: Mutex::new(Vec::new()),
        receiver,
        webhook_secret: Secret::new(hex::encode(secret)),
        opts,
    };
    let (a, p) = kit.ours();
    match kit.panel_of(a, p).await {
        Ok(r) if r.status == 200 => {}
        Ok(r) => {
            return Err(KitError::Setup(format!(
                "the test panel {p} of account {a} answered {} {}",
                r.status, r.body
            )));
        }
        Err(e) => return Err(KitError::Setup(format!("the panel cloud: {e}"))),
    }
    let registered = register(&kit, &url).await;
    let mut results: Vec<(&'static str, Outcome)> = Vec::new();
    results.push(("users_route", kit.users_route().await));
    results.push(("error_statuses", kit.error_statuses().await));
    results.push(("account_scoping", kit.account_scoping().await));
    results.push(("idempotency", kit.idempotency().await));
    let (once, cancelled) = kit.duress().await;
    results.push(("duress_once", once));
    results.push(("duress_not_cancelled", cancelled));
    results.push(("duress_occurred_at", kit.duress_occurred_at().await));
    results.push(("monitoring_details", kit.monitoring_details().await));
    results.push(("duress_equal_work", kit.equal_work().await));
    let _ = kit.ensure_disarmed().await;
    kit.settle().await;
    results.push(("schema", kit.schema()));
    results.push(("latency", kit.latency()));
    let (signatures, ids) = kit.webhook_checks(&registered);
    results.push(("webhook_signatures", signatures));
    results.push(("webhook_event_ids", ids));
    let _ = kit
        .send(
            Method::DELETE,
            &["v1", "test", "accounts", &kit.opts.account, "webhook"],
            None,
            Key::Right,
        )
        .await;
    Ok(KitReport {
        checks: results
            .into_iter()
            .map(|(check, outcome)| CheckResult {
                check,
                passed: outcome.is_ok(),
                detail: match outcome {
                    Ok(d) | Err(d) => d,
                },
            })
            .collect(),
    })
}

/// The 121s of `events` after the first `from`.
fn count_121s(events: &[Value], from: usize) -> usize {
    events[from.min(events.len())..]
        .iter()
        .filter(|e| e["code"] == "121")
        .count()
}
