//! The README's commands, run as a newcomer runs them, so the front door can't drift from what
//! the code does:
//! - every ```text block is a terminal session: each `$ alarm-skill say ...` and `$ curl ...`
//!   line runs, in order, against one `alarm-skill serve` process, and must print exactly the
//!   lines below it (JSON may elide fields and elements with `...`);
//! - every command of a ```sh block is one CI runs (`.ci/run`), or this test fails until it is;
//! - every link and image of README.md, ARCHITECTURE.md and docs/*.md leads to a file, and an
//!   anchor to a heading of that file; every repository path README.md, ARCHITECTURE.md and
//!   docs/*.md name in code exists;
//! - no `aws lambda update-function-configuration` of README.md and docs/*.md aims at an alias
//!   ARN (infra/template.yaml says which outputs are), nor restarts the directive function
//!   without publishing a version and moving `live`: it would recycle nothing Alexa calls.
//! - `alarm-skill serve` honours the functions' settings as docs/local-stack.md says.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The commands of the README's ```sh blocks, and where CI runs each.
const CI_RUNS: &[(&str, &str)] = &[
    (
        "cargo run -- serve",
        "this test: the binary `cargo run` builds, as `alarm-skill serve`",
    ),
    ("scripts/test", ".ci/run, step \"tests\""),
];

/// Long enough for a debug build's start on a busy 2-core machine; only a broken stack waits it.
const START_WAIT: Duration = Duration::from_secs(60);
/// A `say` waits for at most Alexa's budget (7 s) plus its own connection set-up.
const COMMAND_WAIT: Duration = Duration::from_secs(30);

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One fenced block: its info string and its lines.
struct Block {
    lang: String,
    first_line: usize,
    lines: Vec<String>,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in markdown.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("```") {
            match open.take() {
                Some(b) => out.push(b),
                None => {
                    open = Some(Block {
                        lang: rest.trim().to_string(),
                        first_line: n + 2,
                        lines: Vec::new(),
                    })
                }
            }
        } else if let Some(b) = open.as_mut() {
            b.lines.push(line.to_string());
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// A command line split into words as a POSIX shell would for the forms the README uses
/// (single and double quotes, backslash escapes in double quotes), up to a `#` comment.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_none() => break,
            c if c.is_whitespace() => out.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

/// Expected output in which `...` stands for more fields (in an object) or more elements (at
/// the end of an array), made into JSON: `"…": null` in an object, `"…"` in an array.
fn elided_json(text: &str) -> Value {
    let mut json = String::new();
    let mut stack = Vec::new();
    let mut in_string = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            json.push(c);
            match c {
                '\\' => json.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => stack.push(c),
            '}' | ']' => {
                stack.pop();
            }
            '.' if chars.peek() == Some(&'.') => {
                chars.next();
                assert_eq!(chars.next(), Some('.'), "`..` in expected output: {text}");
                json.push_str(if stack.last() == Some(&'{') {
                    "\"…\": null"
                } else {
                    "\"…\""
                });
                continue;
            }
            _ => {}
        }
        json.push(c);
    }
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("expected output {text}: {e}"))
}

/// Whether `actual` is what `expected` (from [`elided_json`]) shows.
fn shows(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let open = e.contains_key("…");
            let listed = e.iter().filter(|(k, _)| k.as_str() != "…");
            listed
                .clone()
                .all(|(k, v)| a.get(k).is_some_and(|av| shows(v, av)))
                && (open || listed.count() == a.len())
        }
        (Value::Array(e), Value::Array(a)) => {
            let open = e.last().is_some_and(|v| v == "…");
            let listed = &e[..e.len() - usize::from(open)];
            let length_ok = if open {
                a.len() >= listed.len()
            } else {
                a.len() == listed.len()
            };
            length_ok && listed.iter().zip(a).all(|(ev, av)| shows(ev, av))
        }
        (e, a) => e == a,
    }
}

/// The HTTP client of the commands run against the served stack.
fn command_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(COMMAND_WAIT)
        .build()
        .expect("HTTP client")
}

/// `alarm-skill serve` on free ports, as its own process, and its base URL.
struct Served {
    _child: Child,
    base: String,
    stderr: PathBuf,
}

impl Served {
    async fn start() -> Served {
        Self::start_with(&[]).await
    }

    /// `alarm-skill serve` with `env` added to its environment.
    async fn start_with(env: &[(&str, &str)]) -> Served {
        let stderr = std::env::temp_dir().join(format!(
            "readme-serve-{}-{}.log",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let log = std::fs::File::create(&stderr).expect("stderr log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_alarm-skill"))
            .args(crate::support::SERVE_ON_FREE_PORTS)
            .env("RUST_LOG", "warn")
            .env_remove("FAILPOINTS")
            .env_remove("DC09_KEY")
            .env_remove("PANEL_API_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("alarm-skill serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let banner = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.split(" listening on ").nth(1) {
                    return Some(url.trim().to_string());
                }
            }
            None
        };
        let base = tokio::time::timeout(START_WAIT, banner)
            .await
            .ok()
            .flatten();
        let Some(base) = base else {
            panic!(
                "alarm-skill serve printed no address: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        // Read to the end: a closed pipe would kill the stack at its next line of output.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Served {
            _child: child,
            base,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The README's address of the stack, replaced by the test stack's.
fn local_url(url: &str, base: &str) -> String {
    let path = [
        "http://localhost:9000",
        "localhost:9000",
        "http://127.0.0.1:9000",
        "127.0.0.1:9000",
    ]
    .iter()
    .find_map(|prefix| url.strip_prefix(prefix))
    .unwrap_or_else(|| panic!("a curl line to somewhere else than the local stack: {url}"));
    format!("{base}{path}")
}

/// Runs one `curl` line with the options the README uses; prints what curl would (the body).
async fn curl(args: &[String], base: &str, http: &reqwest::Client) -> String {
    let (mut method, mut url, mut body, mut headers) = (None, None, None, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-s" | "--silent" => {}
            "-X" | "--request" => method = it.next().cloned(),
            "-d" | "--data" => body = it.next().cloned(),
            "-H" | "--header" => headers.extend(it.next().cloned()),
            a if a.starts_with('-') => {
                panic!("curl option {a} is new to the README test: teach tests/it/readme.rs")
            }
            a => url = Some(local_url(a, base)),
        }
    }
    let url = url.expect("a curl line without a URL");
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let mut req = http.request(method.parse().expect("an HTTP method"), &url);
    for h in headers {
        let (name, value) = h.split_once(':').expect("a header `name: value`");
        req = req.header(name.trim(), value.trim());
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("curl {url}: {e}"));
    resp.text().await.expect("a body")
}

/// Runs `alarm-skill` with `args`, and `env` added to its environment, waiting at most `wait`
/// for it to end; its output.
async fn run_alarm_skill(
    args: &[&str],
    env: &[(&str, &str)],
    wait: Duration,
) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_alarm-skill"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(wait, out)
        .await
        .expect("alarm-skill ends in time")
        .expect("alarm-skill runs")
}

/// Runs one `alarm-skill say` line against the test stack; its stdout.
async fn say(args: &[String], base: &str) -> String {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--url", base]);
    let out = run_alarm_skill(&args, &[], COMMAND_WAIT).await;
    assert!(
        out.status.success(),
        "alarm-skill {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sessions_print_what_the_readme_shows() {
    let readme = read("README.md");
    let sessions: Vec<Block> = blocks(&readme)
        .into_iter()
        .filter(|b| b.lang == "text")
        .collect();
    assert!(
        sessions.len() >= 2,
        "the README shows an Alexa and a Google session"
    );
    let stack = Served::start().await;
    let http = command_client();
    let mut ran = 0;
    // One stack for every block, in order: the Google session starts where the Alexa one ended,
    // as it does for a reader who runs them one after the other.
    for block in &sessions {
        let mut lines = block.lines.iter().enumerate().peekable();
        while let Some((i, line)) = lines.next() {
            let at = block.first_line + i;
            let command = line
                .strip_prefix("$ ")
                .unwrap_or_else(|| panic!("README.md:{at}: output without a command: {line}"));
            let mut expected = Vec::new();
            while let Some((_, next)) = lines.next_if(|(_, l)| !l.starts_with("$ ")) {
                expected.push(next.as_str());
            }
            let args = words(command);
            let printed = match args.first().map(String::as_str) {
                Some("alarm-skill") if args.get(1).map(String::as_str) == Some("say") => {
                    say(&args[1..], &stack.base).await
                }
                Some("curl") => curl(&args[1..], &stack.base, &http).await,
                _ => panic!("README.md:{at}: a command the README test can't run: {command}"),
            };
            let printed = printed.trim_end();
            let wanted = expected.join("\n");
            let same = if wanted.starts_with(['{', '[']) {
                let actual: Value = serde_json::from_str(printed).unwrap_or_else(|e| {
                    panic!("README.md:{at}: `{command}` printed no JSON ({e}): {printed}")
                });
                shows(&elided_json(&wanted), &actual)
            } else {
                printed == wanted
            };
            assert!(
                same,
                "README.md:{at}: `{command}`\nthe README shows:\n{wanted}\nit printed:\n{printed}\n\
                 stack log:\n{}",
                stack.log()
            );
            ran += 1;
        }
    }
    assert!(ran >= 15, "only {ran} session commands found in README.md");
}

#[test]
fn every_command_of_the_readme_runs_in_ci() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    for block in blocks(&readme).iter().filter(|b| b.lang == "sh") {
        for (i, line) in block.lines.iter().enumerate() {
            let command = words(line).join(" ");
            if command.is_empty() {
                continue;
            }
            let Some((_, where_)) = CI_RUNS.iter().find(|(c, _)| *c == command) else {
                panic!(
                    "README.md:{}: `{command}` is run by nothing in CI: run it in .ci/run or \
                     this test, and list it in CI_RUNS",
                    block.first_line + i
                );
            };
            assert!(!where_.is_empty());
        }
    }
    assert!(
        ci.lines()
            .any(|l| l.trim_start().starts_with("scripts/test")),
        ".ci/run runs scripts/test, as CI_RUNS says"
    );
    for block in blocks(&readme) {
        assert!(
            matches!(block.lang.as_str(), "sh" | "text"),
            "README.md:{}: a ```{} block: neither a command (sh) nor a session (text) that \
             this test runs",
            block.first_line - 1,
            block.lang
        );
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of `[text](target)` and `<img src="target">` outside code, with their lines.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut in_code = false;
    let mut out = Vec::new();
    for (n, line) in markdown.lines().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Inline code spans hold examples, not links.
        let text: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        for part in text.split("](").skip(1) {
            if let Some(end) = part.find(')') {
                out.push((n + 1, part[..end].to_string()));
            }
        }
        for part in text.split("src=\"").skip(1) {
            if let Some(end) = part.find('"') {
                out.push((n + 1, part[..end].to_string()));
            }
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_architecture_and_docs_leads_somewhere() {
    let pages = pages_with(&["README.md", "ARCHITECTURE.md"]);
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = read(&page.to_string_lossy());
        let dir = page.parent().unwrap_or(Path::new(""));
        for (line, target) in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            let full = Path::new(ROOT).join(&path);
            if !full.exists() {
                broken.push(format!("{}:{line}: {target}: no such file", page.display()));
                continue;
            }
            if let Some(fragment) = fragment.filter(|_| full.is_file()) {
                let is_markdown = path.extension().is_some_and(|x| x == "md");
                let target_text = std::fs::read_to_string(&full).unwrap_or_default();
                if is_markdown && !anchors(&target_text).iter().any(|a| a == fragment) {
                    broken.push(format!(
                        "{}:{line}: {target}: no such heading",
                        page.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 30,
        "only {checked} links found: is the parser still right?"
    );
}

/// The repository paths a page names in code spans (`src/...`, `tests/...`, ...), with their
/// lines; paths with placeholders (`{panel}`, `*`, `...`) and `path::item` suffixes trimmed.
fn named_paths(markdown: &str) -> Vec<(usize, String)> {
    const ROOTS: [&str; 7] = [
        "src/",
        "tests/",
        "scripts/",
        "benches/",
        "infra/",
        "docs/",
        "skill-manifest/",
    ];
    let mut out = Vec::new();
    for (n, line) in markdown.lines().enumerate() {
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 0 || !ROOTS.iter().any(|r| span.starts_with(r)) || span.contains(' ') {
                continue;
            }
            if span.contains(['{', '*', '<']) || span.contains("...") {
                continue;
            }
            let path = span.split("::").next().unwrap_or(span);
            let path = path.split('#').next().unwrap_or(path);
            out.push((n + 1, path.trim_end_matches('/').to_string()));
        }
    }
    out
}

/// `first`, then every page of docs/, as paths relative to the repository.
fn pages_with(first: &[&str]) -> Vec<PathBuf> {
    let docs = std::fs::read_dir(Path::new(ROOT).join("docs")).expect("docs/");
    let mut found: Vec<PathBuf> = docs
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .filter_map(|p| p.strip_prefix(ROOT).ok().map(Path::to_path_buf))
        .collect();
    found.sort();
    first.iter().map(PathBuf::from).chain(found).collect()
}

#[test]
fn every_path_the_readme_architecture_and_docs_name_exists() {
    let pages = pages_with(&["README.md", "ARCHITECTURE.md"]);
    let mut missing = Vec::new();
    let mut checked = 0;
    for page in &pages {
        for (line, path) in named_paths(&read(&page.to_string_lossy())) {
            checked += 1;
            if !Path::new(ROOT).join(&path).exists() {
                missing.push(format!("{}:{line}: `{path}`", page.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "paths named in the docs that don't exist (moved? renamed?):\n{}",
        missing.join("\n")
    );
    assert!(
        checked > 50,
        "only {checked} paths found: is the parser still right?"
    );
}

#[test]
fn the_checkers_own_rules() {
    assert_eq!(
        words(r#"curl -X POST 'a b' "c \"d\"" e   # comment"#),
        ["curl", "-X", "POST", "a b", "c \"d\"", "e"]
    );
    let e = elided_json(r#"[{"code":"570",...}, {"code":"121","user":1,...}]"#);
    let a: Value =
        serde_json::from_str(r#"[{"code":"570","zone":2},{"code":"121","user":1,"zone":null}]"#)
            .expect("JSON");
    assert!(shows(&e, &a));
    let more: Value =
        serde_json::from_str(r#"[{"code":"570"},{"code":"121","user":1},{"code":"121","user":1}]"#)
            .expect("JSON");
    assert!(!shows(&e, &more), "an array without `...` has its length");
    assert!(!shows(
        &elided_json(r#"{"a":1}"#),
        &serde_json::json!({"a": 1, "b": 2})
    ));
    assert!(shows(
        &elided_json(r#"[{"a":1}, ...]"#),
        &serde_json::json!([{"a": 1}, 2])
    ));
    assert!(!shows(
        &elided_json(r#"{"code":"121",...}"#),
        &serde_json::json!({"code": "570"})
    ));
    assert_eq!(anchor(" The outbox lanes"), "the-outbox-lanes");
    assert_eq!(
        anchor(" Webhook: the cloud calls the skill on every state change"),
        "webhook-the-cloud-calls-the-skill-on-every-state-change"
    );
    assert_eq!(
        named_paths("`src/a.rs` `tests/b.rs::f` `src/{x}/y` `docs/c.md#d` `not/this` `src/d/`"),
        [
            (1, "src/a.rs".to_string()),
            (1, "tests/b.rs".to_string()),
            (1, "docs/c.md".to_string()),
            (1, "src/d".to_string())
        ]
    );
    assert_eq!(
        links(r#"see [x](a.md#b) and `[not](this)` <img src="i.png">"#),
        [(1, "a.md#b".to_string()), (1, "i.png".to_string())]
    );
}

/// What infra/template.yaml says of the stack's outputs that name Lambda functions: the outputs
/// that are alias ARNs (`!Ref` of an `AWS::Lambda::Alias`, or of a SAM function's `.Alias`), and
/// those that name a function that is called through an alias (`AutoPublishAlias`, or the
/// `FunctionName` of an alias).
struct StackOutputs {
    aliases: std::collections::BTreeSet<String>,
    aliased_functions: std::collections::BTreeSet<String>,
}

fn stack_outputs(template: &str) -> StackOutputs {
    use std::collections::{BTreeMap, BTreeSet};
    let (mut section, mut current) = (String::new(), String::new());
    let mut types = BTreeMap::new();
    let mut aliased = BTreeSet::new();
    let mut refs = BTreeMap::new();
    for line in template.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':').to_string();
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 2 && text.ends_with(':') && !text.starts_with('#') {
            current = text.trim_end_matches(':').to_string();
            continue;
        }
        let reference = |key: &str| {
            text.strip_prefix(key)
                .and_then(|v| v.trim().strip_prefix("!Ref "))
                .map(|v| v.trim().to_string())
        };
        match section.as_str() {
            "Resources" if indent == 4 => {
                if let Some(t) = text.strip_prefix("Type:") {
                    types.insert(current.clone(), t.trim().to_string());
                }
            }
            "Resources" if text.starts_with("AutoPublishAlias:") => {
                aliased.insert(current.clone());
            }
            "Resources"
                if types
                    .get(&current)
                    .is_some_and(|t| t == "AWS::Lambda::Alias") =>
            {
                if let Some(f) = reference("FunctionName:") {
                    aliased.insert(f);
                }
            }
            "Outputs" => {
                if let Some(target) = reference("Value:") {
                    refs.insert(current.clone(), target);
                }
            }
            _ => {}
        }
    }
    let is_alias = |t: &String| {
        t.ends_with(".Alias") || types.get(t).is_some_and(|t| t == "AWS::Lambda::Alias")
    };
    StackOutputs {
        aliases: refs
            .iter()
            .filter(|(_, t)| is_alias(t))
            .map(|(o, _)| o.clone())
            .collect(),
        aliased_functions: refs
            .iter()
            .filter(|(_, t)| aliased.contains(*t))
            .map(|(o, _)| o.clone())
            .collect(),
    }
}

/// What a shell word of the docs stands for, as far as naming a Lambda function goes.
#[derive(Debug, Clone, PartialEq)]
enum FunctionRef {
    /// A stack output, by name: `$(out Name)`, or `<Name>` in prose-like commands.
    Output(String),
    /// An alias ARN with its qualifier cut off (`${FN%:live}`): the function itself.
    Unqualified,
    Literal(String),
    /// A variable the block never set: it could be anything.
    Unknown(String),
}

fn resolve(
    word: &str,
    vars: &std::collections::HashMap<String, Vec<FunctionRef>>,
) -> Vec<FunctionRef> {
    let w = word.trim().trim_matches('"');
    let unknown = || vec![FunctionRef::Unknown(w.to_string())];
    if let Some(inner) = w.strip_prefix("$(out ").and_then(|r| r.strip_suffix(')')) {
        return resolve(inner, vars)
            .into_iter()
            .map(|r| match r {
                FunctionRef::Literal(name) => FunctionRef::Output(name),
                other => other,
            })
            .collect();
    }
    if let Some(inner) = w.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        return match inner.split_once('%') {
            Some((_, suffix)) if suffix.starts_with(':') => vec![FunctionRef::Unqualified],
            Some(_) => unknown(),
            None => vars.get(inner).cloned().unwrap_or_else(unknown),
        };
    }
    if let Some(name) = w.strip_prefix('$') {
        return vars.get(name).cloned().unwrap_or_else(unknown);
    }
    if let Some(name) = w.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        return vec![FunctionRef::Output(name.to_string())];
    }
    vec![FunctionRef::Literal(w.to_string())]
}

/// Every `aws lambda update-function-configuration` of `markdown`'s code blocks that may aim at
/// an alias ARN, or at a function called through an alias in a block that doesn't then publish a
/// version and move `live` to it: `(line, why)`. A configuration change reaches `$LATEST` only;
/// an alias points to an immutable published version, so such a "restart" recycles nothing that
/// Alexa calls.
fn restarts_that_miss_an_alias(markdown: &str, outputs: &StackOutputs) -> Vec<(usize, String)> {
    use std::collections::HashMap;
    let mut out = Vec::new();
    for block in blocks(markdown) {
        let mut vars: HashMap<String, Vec<FunctionRef>> = HashMap::new();
        let text = block.lines.join("\n").replace("\\\n", " ");
        let publishes = text.contains("publish-version")
            && text
                .lines()
                .any(|l| l.contains("update-alias") && l.contains("--name live"));
        for (n, line) in text.lines().enumerate() {
            for segment in line.split(';').flat_map(|s| s.split("&&")) {
                let segment = segment.trim();
                let segment = segment.strip_prefix("do ").unwrap_or(segment).trim();
                let w = words(segment);
                if w.first().is_some_and(|f| f == "for") && w.get(2).is_some_and(|i| i == "in") {
                    let items = w[3..].iter().take_while(|i| *i != "do");
                    let items = items.map(|i| FunctionRef::Literal(i.to_string())).collect();
                    vars.insert(w[1].clone(), items);
                    continue;
                }
                if let Some((name, value)) = segment.split_once('=')
                    && !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    let value = resolve(value, &vars);
                    vars.insert(name.to_string(), value);
                    continue;
                }
                if !w.iter().any(|x| x == "update-function-configuration") {
                    continue;
                }
                let at = block.first_line + n;
                let Some(target) = w
                    .iter()
                    .position(|x| x == "--function-name")
                    .and_then(|i| w.get(i + 1))
                else {
                    out.push((at, "no --function-name".to_string()));
                    continue;
                };
                for r in resolve(target, &vars) {
                    let why = match &r {
                        FunctionRef::Output(o) if outputs.aliases.contains(o) => {
                            Some(format!("{o} is an alias ARN"))
                        }
                        FunctionRef::Output(o) if outputs.aliased_functions.contains(o) && !publishes => {
                            Some(format!("{o} is called through an alias: publish a version and move `live`"))
                        }
                        FunctionRef::Unqualified if !publishes => Some(
                            "the function is called through an alias: publish a version and move `live`".into(),
                        ),
                        FunctionRef::Literal(l) if l.matches(':').count() > 6 => {
                            Some(format!("{l} is a qualified ARN"))
                        }
                        FunctionRef::Unknown(u) => Some(format!("{u}: can't tell what it names")),
                        _ => None,
                    };
                    out.extend(why.map(|why| (at, why)));
                }
            }
        }
    }
    out
}

#[test]
fn every_restart_in_the_docs_recycles_what_alexa_and_google_call() {
    let outputs = stack_outputs(&read("infra/template.yaml"));
    assert!(
        outputs.aliases.contains("DirectiveFunctionArn"),
        "the live alias: the skill's endpoint"
    );
    assert!(outputs.aliases.contains("DirectiveCandidateArn"));
    assert!(outputs.aliased_functions.contains("DirectiveFunctionName"));
    assert!(
        !outputs.aliases.contains("HttpApiFunctionArn"),
        "called unqualified"
    );
    // The checker catches the loop docs/deploy.md section 6 had, and passes its fixes.
    let old = "```bash\nfor F in DirectiveFunctionArn HttpApiFunctionArn RedeliveryFunctionArn; do\n  \
               aws lambda update-function-configuration --region $REGION --function-name \"$(out $F)\" \\\n    \
               --description \"x\" >/dev/null\ndone\n```\n";
    assert_eq!(restarts_that_miss_an_alias(old, &outputs).len(), 1);
    let bare = "```bash\nFN=$(out DirectiveFunctionName)\naws lambda update-function-configuration --function-name \"$FN\"\n```\n";
    assert_eq!(
        restarts_that_miss_an_alias(bare, &outputs).len(),
        1,
        "no publish, no alias move"
    );
    let fixed = "```bash\nFN=$(out DirectiveFunctionArn); FN=${FN%:live}\n\
                 aws lambda update-function-configuration --function-name \"$FN\"\n\
                 V=$(aws lambda publish-version --function-name \"$FN\")\n\
                 aws lambda update-alias --function-name \"$FN\" --name live --function-version \"$V\"\n```\n";
    assert!(restarts_that_miss_an_alias(fixed, &outputs).is_empty());
    let literal = "```bash\naws lambda update-function-configuration --function-name arn:aws:lambda:us-east-1:1:function:f:live\n```\n";
    assert_eq!(restarts_that_miss_an_alias(literal, &outputs).len(), 1);

    let pages = pages_with(&["README.md"]);
    let mut wrong = Vec::new();
    for page in &pages {
        for (line, why) in restarts_that_miss_an_alias(&read(&page.to_string_lossy()), &outputs) {
            wrong.push(format!("{}:{line}: {why}", page.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "update-function-configuration changes $LATEST only; what Alexa calls is a version behind \
         an alias:\n{}",
        wrong.join("\n")
    );
}

/// docs/local-stack.md: `alarm-skill serve` takes the functions' settings that mean something
/// locally from its environment, by their rules: with `CODE_DELETIONS_PER_DAY=2` the third
/// deletion is refused, where the default (5) would allow it; a value the functions refuse
/// stops the stack at start, naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_honours_the_functions_settings() {
    let stack = Served::start_with(&[("CODE_DELETIONS_PER_DAY", "2")]).await;
    let http = command_client();
    let admin_body = serde_json::json!({"sub": "demo", "admin": true});
    let admin = crate::support::stack::dev_token(&http, &stack.base, admin_body).await;
    let mut statuses = vec![];
    for slot in ["voice-pin", "duress-pin", "voice-pin"] {
        let resp = http
            .delete(format!("{}/v1/household/members/alex/{slot}", stack.base))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("delete");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [204, 204, 429], "{}", stack.log());

    let refused = [("CODE_DELETIONS_PER_DAY", "0")];
    let out = run_alarm_skill(&crate::support::SERVE_ON_FREE_PORTS, &refused, START_WAIT).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CODE_DELETIONS_PER_DAY"), "{stderr}");
}
