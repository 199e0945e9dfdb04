//! A small W3C WebDriver client over HTTP (reqwest + serde_json, which the project already has)
//! for Debian's `chromium-driver` driving headless `chromium`. Each [`Browser`] starts its own
//! chromedriver on a free port, with a fresh profile directory, and quits both when done.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Where `scripts/axe-core` installs the pinned axe-core, under the repository.
const AXE_SCRIPT: &str = ".cache/axe-core/node_modules/axe-core/axe.min.js";
/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
static PROFILES: AtomicUsize = AtomicUsize::new(0);

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    profile: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Headless Chromium with a window of `width` × `height` CSS pixels, logging every network
    /// event (for [`Browser::network`]) and the console.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_bin = which("chromedriver").expect(
            "chromedriver not found: apt-get install chromium chromium-driver (scripts/test does)",
        );
        let chromium = which("chromium").expect("chromium not found (Debian package chromium)");
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n = PROFILES.fetch_add(1, Ordering::Relaxed);
        let profile = std::env::temp_dir().join(format!(
            "alarm-skill-chromium-{}-{n}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "perfLoggingPrefs": {"enableNetwork": true, "enablePage": false},
            },
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session json");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_string();
        let browser = Browser {
            driver,
            http,
            session,
            base,
            profile,
        };
        // Headless windows ignore --window-size on some versions: set the viewport explicitly.
        browser.set_viewport(width, height).await;
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn set_viewport(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Polls `script` until it returns something truthy; panics with `what` after 20 s.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script, json!([])).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let body = self
                    .js(
                        "return document.body ? document.body.innerText : ''",
                        json!([]),
                    )
                    .await;
                panic!("timed out waiting for {what}; page text:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Clicks the element `css` selects (scrolled into view, as a user would). A page that
    /// re-renders between the lookup and the click gets a fresh lookup (3 tries).
    pub async fn click(&self, css: &str) {
        for attempt in 0.. {
            let id = self.find(css).await;
            let url = format!("{}/session/{}/element/{id}/click", self.base, self.session);
            let resp = self.http.post(&url).json(&json!({})).send().await;
            let resp = resp.unwrap_or_else(|e| panic!("click {css}: {e}"));
            if resp.status().is_success() {
                return;
            }
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let stale = v["value"]["error"] == "stale element reference";
            assert!(stale && attempt < 2, "click {css}: {v}");
        }
    }

    /// Types `text` into the element `css` selects, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    /// Presses keys on whatever has the focus (WebDriver Actions): `\u{E004}` is Tab,
    /// `\u{E007}` Enter, `\u{E00D}` Space.
    pub async fn keys(&self, keys: &str) {
        let mut actions = vec![];
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
        self.call(reqwest::Method::DELETE, "/actions", None).await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.element_string(css, "text").await
    }

    pub async fn value(&self, css: &str) -> String {
        self.element_string(css, "property/value").await
    }

    /// `GET /element/{id}/{what}` of the element `css` finds, as a string ("" if none).
    async fn element_string(&self, css: &str, what: &str) -> String {
        let id = self.find(css).await;
        self.get(&format!("/element/{id}/{what}"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG of the viewport (or of the full page with `full`), saved under
    /// `target/screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str, full: bool) -> PathBuf {
        let png = if full {
            let v = self
                .cdp(
                    "Page.captureScreenshot",
                    json!({"format": "png", "captureBeyondViewport": true}),
                )
                .await;
            v["data"].as_str().unwrap_or_default().to_string()
        } else {
            self.get("/screenshot")
                .await
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png)
            .expect("screenshot is base64");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Log entries of `kind` ("performance", "browser") since the last call.
    pub async fn log(&self, kind: &str) -> Vec<Value> {
        self.post("/se/log", json!({ "type": kind }))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every HTTP exchange the page made since the last call, in order: method, url, request
    /// headers and body, status, response headers and body (bodies as text, when Chromium
    /// still holds them).
    pub async fn network(&self) -> Vec<Exchange> {
        // Chromium logs a response a moment after the page has it: read until every request
        // has its answer (5 s at most).
        let mut entries = vec![];
        let started = Instant::now();
        loop {
            entries.extend(self.log("performance").await);
            let out = Self::exchanges(&entries);
            if out.iter().all(|x| x.status != 0) || started.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut out = Self::exchanges(&entries);
        for x in out.iter_mut() {
            if x.id.ends_with("-redirected") {
                continue;
            }
            let url = format!("{}/session/{}/goog/cdp/execute", self.base, self.session);
            let body = json!({"cmd": "Network.getResponseBody", "params": {"requestId": x.id}});
            if let Ok(r) = self.http.post(&url).json(&body).send().await
                && r.status().is_success()
            {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let v = &v["value"];
                x.response_body = match (v["body"].as_str(), v["base64Encoded"] == true) {
                    (Some(b), false) => Some(b.to_string()),
                    (Some(b), true) => base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .ok()
                        .map(|d| String::from_utf8_lossy(&d).into_owned()),
                    _ => None,
                };
            }
        }
        out
    }

    fn exchanges(entries: &[Value]) -> Vec<Exchange> {
        let mut out: Vec<Exchange> = vec![];
        for entry in entries {
            let Some(msg) = entry["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            else {
                continue;
            };
            let m = &msg["message"];
            let p = &m["params"];
            let rid = p["requestId"].as_str().unwrap_or_default().to_string();
            match m["method"].as_str().unwrap_or_default() {
                "Network.requestWillBeSent" => {
                    // A redirect re-uses the request id: close the previous hop first.
                    if let Some(prev) = out.iter_mut().rev().find(|x| x.id == rid)
                        && let Some(r) = p.get("redirectResponse")
                    {
                        prev.status = r["status"].as_u64().unwrap_or(0) as u16;
                        prev.response_headers = r["headers"].clone();
                        prev.id = format!("{rid}-redirected");
                    }
                    out.push(Exchange {
                        id: rid,
                        method: p["request"]["method"].as_str().unwrap_or_default().into(),
                        url: p["request"]["url"].as_str().unwrap_or_default().into(),
                        request_headers: p["request"]["headers"].clone(),
                        request_body: p["request"]["postData"].as_str().map(str::to_string),
                        status: 0,
                        response_headers: Value::Null,
                        response_body: None,
                    });
                }
                "Network.responseReceived" => {
                    if let Some(x) = out.iter_mut().rev().find(|x| x.id == rid) {
                        x.status = p["response"]["status"].as_u64().unwrap_or(0) as u16;
                        x.response_headers = p["response"]["headers"].clone();
                    }
                }
                _ => {}
            }
        }
        // Chromium's own pages (chrome://, data:) are not the page's requests.
        out.retain(|x| x.url.starts_with("http://") || x.url.starts_with("https://"));
        out
    }

    /// Runs axe-core (the pinned npm package `scripts/axe-core` installs) on the page as it is
    /// now, with every rule it has on, and panics on any violation, naming each rule, its impact
    /// and the elements it found.
    pub async fn assert_axe_clean(&self, page: &str) {
        let report = self.axe_violations(page).await;
        assert!(
            report.is_empty(),
            "{page}: axe-core found {} violation(s):\n{}",
            report.len(),
            report.join("\n")
        );
    }

    /// axe-core's violations on the page as it is now, one line each: rule id, impact, what it
    /// asks, and the elements (CSS selectors). Panics if axe did not run, or checked nothing.
    pub async fn axe_violations(&self, page: &str) -> Vec<String> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(AXE_SCRIPT);
        let engine = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: `scripts/axe-core ensure` installs it (scripts/test does)",
                path.display()
            )
        });
        // The engine goes in as WebDriver's script itself: a page's Content-Security-Policy
        // governs the page's scripts, not the driver's, so no page has to allow it.
        let script = format!(
            "{engine}\n;const done = arguments[arguments.length - 1];
             window.axe.run(document, {{ resultTypes: ['violations'] }})
               .then((r) => done({{
                 passed: r.passes.length,
                 violations: r.violations.map((v) => ({{
                   id: v.id, impact: v.impact, help: v.help,
                   targets: v.nodes.map((n) => n.target.join(' ')),
                 }})),
               }}))
               .catch((e) => done({{ error: String(e) }}));"
        );
        // Generous: axe takes well under a second here, a loaded machine much longer.
        self.post("/timeouts", json!({ "script": 120_000 })).await;
        let found = self
            .post("/execute/async", json!({ "script": script, "args": [] }))
            .await;
        let (Some(violations), Some(passed)) =
            (found["violations"].as_array(), found["passed"].as_u64())
        else {
            panic!("{page}: axe-core did not run: {found}");
        };
        assert!(passed > 0, "{page}: axe-core checked nothing: {found}");
        violations
            .iter()
            .map(|v| {
                format!(
                    "{} ({}): {}; at {}",
                    v["id"].as_str().unwrap_or("?"),
                    v["impact"].as_str().unwrap_or("?"),
                    v["help"].as_str().unwrap_or(""),
                    v["targets"]
                )
            })
            .collect()
    }

    /// `localStorage` and `sessionStorage` as `{"local": {...}, "session": {...}}`.
    pub async fn storage(&self) -> Value {
        self.js(
            "const d = (s) => Object.fromEntries(Object.keys(s).map((k) => [k, s.getItem(k)]));
             return {local: d(localStorage), session: d(sessionStorage)};",
            json!([]),
        )
        .await
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill().await;
        kill_browser(&self.profile);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One request the page made and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    id: String,
    pub method: String,
    pub url: String,
    pub request_headers: Value,
    pub request_body: Option<String>,
    pub status: u16,
    pub response_headers: Value,
    pub response_body: Option<String>,
}

/// Kills the Chromium processes started with `profile` as their `--user-data-dir`: only ours,
/// found by that unique path. A chromedriver killed by a panicking test leaves them orphaned.
fn kill_browser(profile: &std::path::Path) {
    let flag = format!("--user-data-dir={}", profile.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|arg| arg == flag.as_bytes()) {
            // SAFETY: kill(2) with a pid we just read and a valid signal number.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a panic too: kill_on_drop stops chromedriver; Chromium goes by its profile.
        kill_browser(&self.profile);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
