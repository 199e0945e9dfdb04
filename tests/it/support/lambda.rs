//! The Lambda binaries as processes under a fake Lambda Runtime API (the HTTP interface Lambda
//! uses to hand a function its events), configured from the environment as the SAM template
//! configures them, against real local dependencies: DynamoDB Local, and the local stack for the
//! account-linking JWKS and the panel cloud.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alarm_skill::common::secret::Secret;
use alarm_skill::local::Options;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, mpsc};

use super::stack::{Harness, test_options};

/// What the function posted back: ("response" | "error", request id, body), or ("timeout",
/// request id, the runtime's error) when the runtime killed it at the invocation's deadline.
pub type Outcome = (String, String, Value);

/// The invocation budget the fake runtime hands out: the directive function's `Timeout` in
/// infra/template.yaml (7 s), the shortest of the three; the HTTP function has a longer one
/// (10 s), so it is held here to a stricter limit than Lambda's (the worker: [`WORKER_BUDGET`]).
pub const BUDGET: Duration = Duration::from_secs(7);

/// The functions the one Lambda binary serves, by the Handler each sets (infra/template.yaml).
pub const DIRECTIVE: &str = "directive";
pub const HTTP_API: &str = "http-api";
pub const REDELIVERY: &str = "redelivery";

/// The re-delivery worker's budget here: its Lambda timeout is 60 s; it starts a record only with
/// a signal call's budget (5 s) and a margin left, so under [`BUDGET`] a slow start on a loaded
/// machine left it no room and it deferred the record the test expected it to send.
pub const WORKER_BUDGET: Duration = Duration::from_secs(20);

/// How long past the invocation's deadline the fake runtime waits before it kills the function.
/// The function is told the deadline (`lambda-runtime-deadline-ms`) and plans its work against
/// it; what it does after its last check (a store write, the reply) takes milliseconds idle but
/// seconds on a loaded machine with DynamoDB Local, which is the machine's doing, not the
/// function's. A function that really ignores its deadline (waits on a call slower than the
/// budget, or stalls at a crash point) still runs far past this and is killed.
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct FakeRuntime {
    queue: Arc<Mutex<VecDeque<(String, Value)>>>,
    ready: Arc<Notify>,
    results: mpsc::UnboundedSender<Outcome>,
    /// Invocations answered, or ended by the deadline's watchdog: whichever comes first wins.
    answered: Arc<Mutex<std::collections::HashSet<String>>>,
    /// The function's process id, for the watchdog's SIGKILL.
    pid: Arc<Mutex<Option<u32>>>,
    budget: Duration,
}

/// As Lambda does when a function runs past its timeout: the process is killed (SIGKILL; the
/// execution environment is reset) and the caller gets a timeout error. A timeout is a crash.
/// The kill comes [`GRACE`] after the deadline the function was told.
fn enforce_deadline(rt: FakeRuntime, id: String) {
    tokio::spawn(async move {
        tokio::time::sleep(rt.budget + GRACE).await;
        // Checked and marked under one lock with `posted`: an answer either came in time or
        // is refused as late, never both.
        if !rt.answered.lock().unwrap().insert(id.clone()) {
            return;
        }
        if let Some(pid) = *rt.pid.lock().unwrap() {
            let pid = libc::pid_t::try_from(pid).expect("pid fits");
            // SAFETY: kill(2) with a pid this runtime spawned and has not reaped yet (the
            // Child is held by its `Function`).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let error = json!({"errorType": "Sandbox.Timedout",
            "errorMessage": format!("Task timed out after {:.2} seconds", rt.budget.as_secs_f64())});
        let _ = rt.results.send(("timeout".into(), id, error));
    });
}

async fn next(State(rt): State<FakeRuntime>) -> impl IntoResponse {
    let (id, event) = loop {
        if let Some(item) = rt.queue.lock().unwrap().pop_front() {
            break item;
        }
        rt.ready.notified().await;
    };
    let deadline = chrono::Utc::now().timestamp_millis()
        + i64::try_from(rt.budget.as_millis()).expect("budget fits");
    enforce_deadline(rt.clone(), id.clone());
    let mut h = HeaderMap::new();
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    h.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.to_string()).unwrap(),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:test"),
    );
    h.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-0-0"),
    );
    (h, Json(event))
}

async fn posted(
    State(rt): State<FakeRuntime>,
    Path((id, kind)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> &'static str {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // A late answer, after the watchdog killed the invocation, is not delivered: Lambda has
    // already reported the timeout.
    if !rt.answered.lock().unwrap().insert(id.clone()) {
        return "accepted";
    }
    let _ = rt.results.send((kind, id, v));
    "accepted"
}

pub struct Function {
    rt: FakeRuntime,
    results: mpsc::UnboundedReceiver<Outcome>,
    child: tokio::process::Child,
    /// Everything the process wrote, stdout and stderr, read as it comes: an undrained pipe
    /// would block a chatty process (TRACE logging) on its next write.
    output: Arc<Mutex<Vec<u8>>>,
    drains: Vec<tokio::task::JoinHandle<()>>,
}

fn drain(
    mut from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Function {
    /// Starts the Lambda binary as the function `handler` ([`DIRECTIVE`], [`HTTP_API`],
    /// [`REDELIVERY`]: the `_HANDLER` Lambda sets from the function's Handler) with `env`, fed by
    /// a fresh fake runtime API that kills it when an invocation runs past [`BUDGET`]
    /// ([`WORKER_BUDGET`] for the re-delivery worker).
    pub async fn start(handler: &str, env: &[(String, String)]) -> Function {
        let budget = if handler == REDELIVERY {
            WORKER_BUDGET
        } else {
            BUDGET
        };
        Function::start_with_budget(handler, env, budget).await
    }

    /// [`Function::start`] with another invocation budget (the function's timeout).
    pub async fn start_with_budget(
        handler: &str,
        env: &[(String, String)],
        budget: Duration,
    ) -> Function {
        let (tx, results) = mpsc::unbounded_channel();
        let rt = FakeRuntime {
            queue: Arc::default(),
            ready: Arc::default(),
            results: tx,
            answered: Arc::default(),
            pid: Arc::default(),
            budget,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(posted))
            .with_state(rt.clone());
        let addr = super::serve(app).await;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .env_clear()
            .envs(env.iter().cloned())
            .env("_HANDLER", handler)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the Lambda binary");
        let mut child = child;
        *rt.pid.lock().unwrap() = child.id();
        let output = Arc::new(Mutex::new(Vec::new()));
        let drains = vec![
            drain(child.stdout.take().expect("piped stdout"), output.clone()),
            drain(child.stderr.take().expect("piped stderr"), output.clone()),
        ];
        Function {
            rt,
            results,
            child,
            output,
            drains,
        }
    }

    pub async fn invoke(&mut self, event: Value) -> Outcome {
        let id = uuid::Uuid::new_v4().to_string();
        self.rt.queue.lock().unwrap().push_back((id.clone(), event));
        self.rt.ready.notify_waiters();
        self.rt.ready.notify_one();
        let out = tokio::time::timeout(self.answer_wait(), self.results.recv())
            .await
            .expect("the function answered")
            .expect("runtime channel open");
        assert_eq!(out.1, id, "the answer is for this invocation");
        out
    }

    /// How long an answer can take: the watchdog reports a timeout by the budget and its grace;
    /// the rest is room for a loaded machine.
    fn answer_wait(&self) -> Duration {
        self.rt.budget + GRACE + Duration::from_secs(30)
    }

    /// The next outcome, in whatever order: after [`Function::enqueue`].
    pub async fn outcome(&mut self) -> Outcome {
        tokio::time::timeout(self.answer_wait(), self.results.recv())
            .await
            .expect("an outcome")
            .expect("runtime channel open")
    }

    /// The next outcome, or `None` if the process exits first (killed at a crash point).
    pub async fn outcome_or_exit(&mut self) -> Option<Outcome> {
        let wait = self.answer_wait();
        tokio::select! {
            out = tokio::time::timeout(wait, self.results.recv()) => {
                Some(out.expect("an outcome or an exit").expect("runtime channel open"))
            }
            // The runtime's watchdog kills a process that ran past its deadline, then posts the
            // timeout: the exit can be seen first. A process dead at a crash point posts nothing.
            _ = self.child.wait() => tokio::time::timeout(Duration::from_secs(2), self.results.recv())
                .await
                .ok()
                .flatten(),
        }
    }

    /// An outcome already posted, if any (without waiting).
    pub fn try_outcome(&mut self) -> Option<Outcome> {
        self.results.try_recv().ok()
    }

    /// Hands the function an event without waiting for its answer (it may never come: the
    /// crash tests kill the process mid-invocation).
    pub fn enqueue(&self, event: Value) {
        let id = uuid::Uuid::new_v4().to_string();
        self.rt.queue.lock().unwrap().push_back((id, event));
        self.rt.ready.notify_waiters();
        self.rt.ready.notify_one();
    }

    /// Stops the process and returns everything it wrote (stdout and stderr).
    pub async fn logs(mut self) -> String {
        let _ = self.child.kill().await;
        self.collected().await
    }

    /// Waits (up to 20 s) for the process to exit by itself: its status and everything it wrote.
    pub async fn exit(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits")
            .expect("wait");
        (status, self.collected().await)
    }

    async fn collected(&mut self) -> String {
        for d in self.drains.drain(..) {
            let _ = d.await;
        }
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

/// The environment without the secrets a function does not load (least privilege: the template
/// gives each function only its own, and the function must start with just those).
pub fn only(
    env: &[(String, String)],
    needs: &[alarm_skill::adapters::secrets::SecretName],
) -> Vec<(String, String)> {
    use alarm_skill::adapters::secrets::SecretName;
    let all = [
        (SecretName::Pepper, "PEPPER"),
        (SecretName::LwaClientSecret, "LWA_CLIENT_SECRET"),
        (SecretName::WebhookSecret, "WEBHOOK_SECRET"),
        (SecretName::PanelApiKey, "PANEL_API_KEY"),
    ];
    env.iter()
        .filter(|(k, _)| {
            all.iter()
                .all(|(name, var)| k != var || needs.contains(name))
        })
        .cloned()
        .collect()
}

pub fn pepper() -> Secret {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    Secret::new(json!({"current": "t1", "peppers": {"t1": key}}).to_string())
}

/// A local stack on DynamoDB Local, and the environment the SAM template gives the functions.
pub async fn world() -> (Harness, Vec<(String, String)>) {
    world_with(alarm_skill::local::demo::DemoConfig::demo()).await
}

/// [`world`] with another household and panel configuration.
pub async fn world_with(
    config: alarm_skill::local::demo::DemoConfig,
) -> (Harness, Vec<(String, String)>) {
    let endpoint = super::stack::dynamodb_endpoint();
    let h = Harness::start_with(Options {
        config,
        pepper: Some(pepper()),
        dynamodb_endpoint: Some(endpoint.clone()),
        // The in-process stack only sets the scene (arms the panel) and checks it: Alexa's whole
        // budget, so a loaded machine's DynamoDB Local can't cut a set-up short unnoticed.
        directive_budget: Some(alarm_skill::common::deadline::ALEXA_BUDGET),
        ..test_options()
    })
    .await;
    let env = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "local".into()),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("TABLE_NAME", h.stack.table.clone()),
        ("DYNAMODB_ENDPOINT", endpoint),
        (
            "PANEL_API_URL",
            format!("http://{}", h.stack.panel_api.addr()),
        ),
        ("LWA_CLIENT_ID", "amzn1.application-oa2-client.test".into()),
        ("LWA_CLIENT_SECRET", "test-lwa-secret".into()),
        ("OAUTH_ISSUER", h.base.clone()),
        ("OAUTH_AUDIENCE", alarm_skill::local::AUDIENCE.into()),
        ("PEPPER", pepper().expose().to_string()),
        ("WEBHOOK_SECRET", "test-webhook-secret".into()),
        ("PANEL_API_KEY", h.stack.sim.api_key().expose().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (h, env)
}

pub fn http_event(method: &str, path: &str, headers: Value, body: Option<&str>) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default", "stage": "$default", "time": "25/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_764_064_800_000u64,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "test"}
        },
        "body": body, "isBase64Encoded": false
    })
}
